//! Phase-engine commands: the subcommands (status, advance, signoff, override, rollback,
//! rehearse, flag, note, report, audit) and the small ones' handlers; status, rollback, rehearse
//! and audit have their own files. Each is a thin shell around `crate::engine` /
//! `crate::control::audit`, the same code the TUI calls.

use std::path::{Path, PathBuf};
use std::process::ExitCode;

use clap::{Subcommand, ValueEnum};

use super::audit::AuditAction;
use super::rollback::Run;
use super::shared::{engine_failure, load};
use super::{exit, Context};
use crate::control::audit::Actor;
use crate::engine::{self, RunOptions};
use crate::plan::{Phase, Role};

/// Engine commands.
#[derive(Debug, Subcommand)]
pub enum Command {
    /// Show phases, the next gate with every blocker, the scorecard, sign-offs and the fastest rollback.
    Status {
        /// Plan file.
        plan: PathBuf,
        /// Machine-readable output.
        #[arg(long)]
        json: bool,
    },
    /// Apply the next phase if its gate passes; otherwise print the blockers and exit 2.
    Advance {
        /// Plan file.
        plan: PathBuf,
        /// Apply exactly this phase (it must be the next one); a no-op when already applied.
        #[arg(long, value_enum)]
        phase: Option<Phase>,
        /// Machine-readable output.
        #[arg(long)]
        json: bool,
    },
    /// Sign off a gate in a role you hold (identity: the connection's PostgreSQL login).
    Signoff {
        /// Plan file.
        plan: PathBuf,
        /// The gate (the phase it guards).
        #[arg(long, value_enum)]
        gate: Phase,
        /// The role you sign for.
        #[arg(long)]
        role: String,
        /// Optional comment.
        #[arg(long, default_value = "")]
        comment: String,
    },
    /// Attest a scorecard category no probe can see (observability: where the dashboards and
    /// alerts are); its owner only (sre), audited, bound to the plan version.
    Attest {
        /// Plan file.
        plan: PathBuf,
        /// The category (`observability`).
        category: String,
        /// Where it can be checked, an http(s) address.
        url: String,
    },
    /// Break-glass: a lead lets a gate through despite its blockers (audited, shown forever).
    Override {
        /// Plan file.
        plan: PathBuf,
        /// The gate.
        #[arg(long, value_enum)]
        gate: Phase,
        /// Why (required).
        #[arg(long)]
        reason: String,
    },
    /// Approve a plan version that changes the roster, gates or authorization (a lead of the
    /// anchored version; audited).
    Approve {
        /// Plan file.
        plan: PathBuf,
    },
    /// Roll back the current phase, or every applied phase from the last down to --phase.
    Rollback {
        /// Plan file.
        plan: PathBuf,
        /// Roll back down to (and including) this phase; a no-op when it is not applied.
        #[arg(long, value_enum)]
        phase: Option<Phase>,
        /// Confirm (required: rollback changes the schema).
        #[arg(long)]
        yes: bool,
        /// Print every step the rollback would run, in order, and change nothing.
        #[arg(long, conflicts_with = "yes")]
        dry_run: bool,
        /// Machine-readable output (with --dry-run).
        #[arg(long, requires = "dry_run")]
        json: bool,
    },
    /// Rehearse every phase's apply and rollback in a transaction that is rolled back; timed.
    Rehearse {
        /// Plan file.
        plan: PathBuf,
        /// Machine-readable output.
        #[arg(long)]
        json: bool,
    },
    /// Read or set a feature flag (the read switch is one).
    Flag {
        /// get or set.
        #[command(subcommand)]
        action: FlagAction,
    },
    /// Add an operator note to the audit trail.
    Note {
        /// Plan file.
        plan: PathBuf,
        /// The note.
        text: String,
    },
    /// Write the post-migration record (Markdown and JSON).
    Report {
        /// Plan file.
        plan: PathBuf,
        /// Directory for `<plan-id>-report.md` and `.json`.
        #[arg(long, default_value = ".")]
        out: PathBuf,
    },
    /// The tamper-evident audit log.
    Audit {
        /// verify, export or tail.
        #[command(subcommand)]
        action: AuditAction,
    },
}

/// `flag` subcommands.
#[derive(Debug, Subcommand)]
pub enum FlagAction {
    /// Print a flag's value.
    Get {
        /// Flag name.
        name: String,
    },
    /// Turn a flag on or off (audited).
    Set {
        /// Flag name.
        name: String,
        /// on or off.
        value: OnOff,
    },
}

/// A flag value.
#[derive(Debug, Clone, Copy, ValueEnum)]
pub enum OnOff {
    /// Enabled.
    On,
    /// Disabled.
    Off,
}

/// Runs an engine command.
pub(super) async fn run(cmd: Command, ctx: &Context) -> anyhow::Result<ExitCode> {
    let notifies = cmd.notifying_plan().map(Path::to_path_buf);
    let code = run_command(cmd, ctx).await;
    if let Some(plan) = notifies {
        super::notify::after_action(ctx, &plan).await;
    }
    code
}

impl Command {
    /// The plan of a command whose change may notify (advance, sign-off, override, rollback).
    fn notifying_plan(&self) -> Option<&Path> {
        match self {
            Command::Advance { plan, .. }
            | Command::Signoff { plan, .. }
            | Command::Override { plan, .. }
            | Command::Rollback {
                plan,
                dry_run: false,
                ..
            } => Some(plan),
            _ => None,
        }
    }
}

async fn run_command(cmd: Command, ctx: &Context) -> anyhow::Result<ExitCode> {
    match cmd {
        Command::Status { plan, json } => super::status::status(ctx, &plan, json).await,
        Command::Advance { plan, phase, json } => advance(ctx, &plan, phase, json).await,
        Command::Signoff {
            plan,
            gate,
            role,
            comment,
        } => signoff(ctx, &plan, gate, role, &comment).await,
        Command::Attest {
            plan,
            category,
            url,
        } => attest(ctx, &plan, &category, &url).await,
        Command::Override { plan, gate, reason } => override_gate(ctx, &plan, gate, &reason).await,
        Command::Approve { plan } => approve(ctx, &plan).await,
        Command::Rollback {
            plan,
            phase,
            yes,
            dry_run,
            json,
        } => {
            let run = if dry_run {
                Run::DryRun { json }
            } else {
                Run::Execute { confirmed: yes }
            };
            super::rollback::rollback(ctx, &plan, phase, run).await
        }
        Command::Rehearse { plan, json } => super::rehearse::rehearse(ctx, &plan, json).await,
        Command::Flag { action } => flag(ctx, action).await,
        Command::Note { plan, text } => note(ctx, &plan, &text).await,
        Command::Report { plan, out } => report(ctx, &plan, &out).await,
        Command::Audit { action } => super::audit::audit_cmd(ctx, action).await,
    }
}

async fn advance(
    ctx: &Context,
    path: &Path,
    phase: Option<Phase>,
    json: bool,
) -> anyhow::Result<ExitCode> {
    let plan = load(path)?;
    let mut client = ctx.connect("advance").await?;
    let actor = Actor::current(&client).await?;
    let opts = RunOptions::with_monitor(ctx.db_config()?);
    let result = match phase {
        Some(p) => engine::apply_phase(&mut client, &plan, &actor, p, &opts).await,
        None => engine::advance(&mut client, &plan, &actor, &opts).await,
    };
    match result {
        Ok(applied) => {
            if json {
                println!("{}", serde_json::to_string_pretty(&applied)?);
            } else {
                if let Some(o) = applied.gate.as_ref().and_then(|g| g.overridden.as_ref()) {
                    println!("gate overridden by {}: {}", o.login, o.reason);
                }
                println!("{}", applied.message);
                for b in &applied.blockers {
                    println!("  waited for {b}");
                }
            }
            Ok(ExitCode::from(exit::OK))
        }
        Err(e) => engine_failure(e),
    }
}

async fn signoff(
    ctx: &Context,
    path: &Path,
    gate: Phase,
    role: String,
    comment: &str,
) -> anyhow::Result<ExitCode> {
    let plan = load(path)?;
    let mut client = ctx.connect("signoff").await?;
    let actor = Actor::current(&client).await?;
    match engine::signoff(
        &mut client,
        &plan,
        &actor,
        gate,
        &Role(role.clone()),
        comment,
    )
    .await
    {
        Ok(engine::SignoffOutcome::Recorded { audit_seq }) => {
            println!(
                "signed gate {gate} as {role}: {actor}, plan sha256 {} (audit #{audit_seq})",
                &plan.sha256()[..12]
            );
            Ok(ExitCode::from(exit::OK))
        }
        Ok(engine::SignoffOutcome::AlreadySigned { login, at }) => {
            println!(
                "already signed: gate {gate} as {role} by {login} at {} for this plan version; nothing changed",
                at.format("%Y-%m-%d %H:%M:%SZ")
            );
            Ok(ExitCode::from(exit::OK))
        }
        Err(e) => engine_failure(e),
    }
}

async fn override_gate(
    ctx: &Context,
    path: &Path,
    gate: Phase,
    reason: &str,
) -> anyhow::Result<ExitCode> {
    let plan = load(path)?;
    let mut client = ctx.connect("override").await?;
    let actor = Actor::current(&client).await?;
    match engine::override_gate(&mut client, &plan, &actor, gate, reason).await {
        Ok(engine::OverrideOutcome::Recorded { audit_seq }) => {
            println!("OVERRIDE recorded for gate {gate} by {actor}: {reason} (audit #{audit_seq})");
            Ok(ExitCode::from(exit::OK))
        }
        Ok(engine::OverrideOutcome::AlreadyOverridden { at }) => {
            println!(
                "gate {gate} was already overridden with this reason at {}; nothing changed",
                at.format("%Y-%m-%d %H:%M:%SZ")
            );
            Ok(ExitCode::from(exit::OK))
        }
        Err(e) => engine_failure(e),
    }
}

async fn approve(ctx: &Context, path: &Path) -> anyhow::Result<ExitCode> {
    let plan = load(path)?;
    let mut client = ctx.connect("approve").await?;
    let actor = Actor::current(&client).await?;
    match crate::control::anchors::approve(&mut client, &plan, &actor).await {
        Ok(crate::control::anchors::Approval::Approved { audit_seq }) => {
            println!(
                "APPROVED: the roster, gates and authorization of {} are anchored now, by {actor} (audit #{audit_seq})",
                plan.path
            );
            Ok(ExitCode::from(exit::OK))
        }
        Ok(crate::control::anchors::Approval::Unchanged) => {
            println!(
                "nothing to approve: {} keeps the anchored roster, gates and authorization",
                plan.path
            );
            Ok(ExitCode::from(exit::OK))
        }
        Err(e) => engine_failure(e.into()),
    }
}

async fn report(ctx: &Context, path: &Path, out: &Path) -> anyhow::Result<ExitCode> {
    let plan = load(path)?;
    let mut client = ctx.connect("report").await?;
    let actor = Actor::current(&client).await?;
    let r = match engine::report(&mut client, &plan, &actor).await {
        Ok(r) => r,
        Err(e) => return engine_failure(e),
    };
    std::fs::create_dir_all(out)
        .map_err(|e| anyhow::anyhow!("cannot create {}: {e}", out.display()))?;
    let md = out.join(format!("{}-report.md", plan.id()));
    let js = out.join(format!("{}-report.json", plan.id()));
    std::fs::write(&md, r.markdown())
        .map_err(|e| anyhow::anyhow!("cannot write {}: {e}", md.display()))?;
    std::fs::write(&js, serde_json::to_string_pretty(&r)?)
        .map_err(|e| anyhow::anyhow!("cannot write {}: {e}", js.display()))?;
    println!("wrote {} and {}", md.display(), js.display());
    Ok(ExitCode::from(exit::OK))
}

async fn flag(ctx: &Context, action: FlagAction) -> anyhow::Result<ExitCode> {
    let mut client = ctx.connect("flag").await?;
    match action {
        FlagAction::Get { name } => match engine::get_flag(&client, &name).await? {
            Some(f) => {
                println!("{}", if f.enabled { "on" } else { "off" });
                Ok(ExitCode::from(exit::OK))
            }
            None => {
                eprintln!("error: no flag named `{name}` in cutover.flags");
                Ok(ExitCode::from(exit::ERROR))
            }
        },
        FlagAction::Set { name, value } => {
            let actor = Actor::current(&client).await?;
            let on = matches!(value, OnOff::On);
            match engine::set_flag(&mut client, &actor, &name, on).await {
                Ok(c) if c.changed => {
                    println!("flag {name} is now {}", if on { "on" } else { "off" });
                    Ok(ExitCode::from(exit::OK))
                }
                Ok(_) => {
                    println!(
                        "flag {name} is already {}; nothing changed",
                        if on { "on" } else { "off" }
                    );
                    Ok(ExitCode::from(exit::OK))
                }
                Err(e) => engine_failure(e),
            }
        }
    }
}

async fn attest(ctx: &Context, path: &Path, category: &str, url: &str) -> anyhow::Result<ExitCode> {
    let plan = load(path)?;
    let Some(kind) = crate::rules::CategoryKind::from_key(&category.to_ascii_lowercase()) else {
        eprintln!("refused: unknown category `{category}`: attest takes observability");
        return Ok(ExitCode::from(exit::REFUSED));
    };
    let mut client = ctx.connect("attest").await?;
    let actor = Actor::current(&client).await?;
    match engine::attest(&mut client, &plan, &actor, kind, url).await {
        Ok(engine::AttestOutcome::Recorded { audit_seq }) => {
            println!(
                "{} attested by {} at {url} (audit #{audit_seq})",
                kind.title(),
                actor.login
            );
            Ok(ExitCode::from(exit::OK))
        }
        Err(e) => engine_failure(e),
    }
}

async fn note(ctx: &Context, path: &Path, text: &str) -> anyhow::Result<ExitCode> {
    let plan = load(path)?;
    let mut client = ctx.connect("note").await?;
    let actor = Actor::current(&client).await?;
    match engine::note(&mut client, &plan, &actor, text).await {
        Ok(engine::NoteOutcome::Recorded { audit_seq }) => {
            println!("note added (audit #{audit_seq})");
            Ok(ExitCode::from(exit::OK))
        }
        Ok(engine::NoteOutcome::Duplicate { audit_seq }) => {
            println!("the same note is already your latest (audit #{audit_seq}); nothing changed");
            Ok(ExitCode::from(exit::OK))
        }
        Err(e) => engine_failure(e),
    }
}
