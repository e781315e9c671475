//! Phase-engine commands: status, advance, signoff, override, rollback, rehearse, flag, note,
//! report, audit. Each is a thin shell around `crate::engine` / `crate::control::audit`, the same code the
//! TUI calls.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use clap::{Subcommand, ValueEnum};

use super::{exit, Context};
use crate::control::audit::{self, Actor, Verification};
use crate::engine::{self, EngineError, RunOptions};
use crate::outcome::Outcome;
use crate::plan::{Phase, Plan, Role};

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

/// Export formats.
#[derive(Debug, Clone, Copy, ValueEnum)]
pub enum ExportFormat {
    /// One JSON object per line.
    Jsonl,
}

/// `audit` subcommands.
#[derive(Debug, Subcommand)]
pub enum AuditAction {
    /// Recompute the hash chain, cross-check it against the control state and against
    /// externally kept heads; exit 2 naming what is wrong.
    Verify {
        /// A head hash kept outside the database (ticket, chat): it must be in the chain.
        #[arg(long)]
        expect_head: Vec<String>,
        /// A file of head hashes, one per line: each must be in the chain; the current head is
        /// appended when it is new.
        #[arg(long)]
        head_file: Option<PathBuf>,
    },
    /// Export every entry.
    Export {
        /// Format.
        #[arg(long, value_enum, default_value = "jsonl")]
        format: ExportFormat,
        /// Only this plan id.
        #[arg(long)]
        plan_id: Option<String>,
        /// Write to this file instead of stdout.
        #[arg(long)]
        output: Option<PathBuf>,
    },
    /// Print the last entries; with --follow, keep printing new ones.
    Tail {
        /// How many to print first.
        #[arg(short = 'n', long, default_value_t = 20)]
        lines: i64,
        /// Keep following (LISTEN cutover_events, polling as a fallback).
        #[arg(long)]
        follow: bool,
        /// JSON lines instead of text.
        #[arg(long)]
        json: bool,
    },
}

/// Runs an engine command.
pub async fn run(cmd: Command, ctx: &Context) -> anyhow::Result<ExitCode> {
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
            | Command::Rollback { plan, .. } => Some(plan),
            _ => None,
        }
    }
}

async fn run_command(cmd: Command, ctx: &Context) -> anyhow::Result<ExitCode> {
    match cmd {
        Command::Status { plan, json } => status(ctx, &plan, json).await,
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
        Command::Rollback { plan, phase, yes } => rollback(ctx, &plan, phase, yes).await,
        Command::Rehearse { plan, json } => rehearse(ctx, &plan, json).await,
        Command::Flag { action } => flag(ctx, action).await,
        Command::Note { plan, text } => note(ctx, &plan, &text).await,
        Command::Report { plan, out } => report(ctx, &plan, &out).await,
        Command::Audit { action } => audit_cmd(ctx, action).await,
    }
}

fn load(path: &Path) -> anyhow::Result<Plan> {
    Ok(Plan::load(path)?)
}

/// Prints a refusal or a blocked gate and returns its exit code; other errors propagate.
fn engine_failure(e: EngineError) -> anyhow::Result<ExitCode> {
    match &e {
        EngineError::Blocked(gate) => {
            eprintln!(
                "blocked: the gate of {} is {} — nothing was applied",
                gate.phase, gate.outcome
            );
            for b in &gate.blockers {
                eprintln!("  ✗ {b}");
            }
            Ok(ExitCode::from(exit::BLOCKED))
        }
        EngineError::Refused(_) => {
            eprintln!("{e}");
            Ok(ExitCode::from(exit::REFUSED))
        }
        EngineError::Hook { .. } => {
            eprintln!("blocked: {e} — nothing was applied");
            Ok(ExitCode::from(exit::BLOCKED))
        }
        _ => Err(e.into()),
    }
}

async fn status(ctx: &Context, path: &Path, json: bool) -> anyhow::Result<ExitCode> {
    let plan = load(path)?;
    let (client, security) = ctx.connect_viewer_with_security("status").await?;
    let st = match engine::status(&client, &plan).await {
        Ok(s) => s,
        Err(e) => return engine_failure(e),
    };
    if json {
        let mut value = serde_json::to_value(&st)?;
        if let Some(map) = value.as_object_mut() {
            map.insert("connection".into(), serde_json::to_value(&security)?);
        }
        println!("{}", serde_json::to_string_pretty(&value)?);
    } else {
        print!("{}", render_status(&st));
        println!("connection: {} — {}", security.server, security.summary());
    }
    Ok(ExitCode::from(exit::OK))
}

fn mark(o: Outcome) -> &'static str {
    match o {
        Outcome::Pass => "✓",
        Outcome::Fail => "✗",
        Outcome::Inconclusive => "?",
    }
}

/// The human rendering of `status`.
pub fn render_status(st: &engine::Status) -> String {
    let mut out = String::new();
    let mut line = |s: String| {
        out.push_str(&s);
        out.push('\n');
    };
    line(format!(
        "{} — {}  [{}]",
        st.plan_id, st.title, st.environment
    ));
    line(format!(
        "plan {} sha256 {}",
        st.plan_path,
        &st.plan_sha256[..12.min(st.plan_sha256.len())]
    ));
    if !st.registered {
        line("  not registered yet: an operator's first command (advance, signoff, probe) registers it".into());
    }
    if st.plan_changed {
        line(format!(
            "  ! plan changed since it was last acted on (was {}): earlier sign-offs are void",
            &st.recorded_sha256[..12.min(st.recorded_sha256.len())]
        ));
    }
    line("phases:".into());
    for p in &st.phases {
        let when = p
            .finished_at
            .map(|t| format!(" {}", t.format("%Y-%m-%d %H:%M:%SZ")))
            .unwrap_or_default();
        let dur = p
            .duration_ms
            .map(|d| format!(" ({d} ms)"))
            .unwrap_or_default();
        let err = p
            .error
            .as_ref()
            .map(|e| format!("  error: {e}"))
            .unwrap_or_default();
        let irr = if p.reversible { "" } else { "  (irreversible)" };
        line(format!(
            "  {:<12} {:<12}{when}{dur}{irr}{err}",
            p.phase.as_str(),
            p.state.as_str()
        ));
        if let Some(note) = &p.note {
            line(format!("               {note}"));
        }
    }
    match &st.gate {
        Some(g) => {
            line(format!("next: {} — gate {}", g.phase, g.verdict()));
            for i in &g.items {
                line(format!(
                    "  {} {} {}: {}",
                    mark(i.outcome),
                    i.kind.as_str(),
                    i.name,
                    i.detail
                ));
                for e in &i.evidence {
                    line(format!("      {e}"));
                }
            }
            if let Some(o) = &g.overridden {
                line(format!(
                    "  ! override by {} at {}: {}",
                    o.login,
                    o.at.format("%Y-%m-%d %H:%M:%SZ"),
                    o.reason
                ));
            }
        }
        None => line("next: nothing — all phases applied".into()),
    }
    line(format!(
        "scorecard: {}",
        if st.scorecard.ready {
            "READY"
        } else {
            "not ready"
        }
    ));
    for c in &st.scorecard.categories {
        line(format!(
            "  {} {} ({}): {}",
            mark(c.outcome),
            c.name,
            c.owner,
            c.outcome
        ));
        for e in c.evidence.iter().chain([&c.signoff]) {
            line(format!(
                "      {} {}: {}",
                mark(e.outcome),
                e.name,
                e.detail
            ));
        }
    }
    if !st.signoffs.is_empty() {
        line("sign-offs:".into());
        for s in &st.signoffs {
            let void = s
                .note
                .as_ref()
                .map(|n| format!("  [{n}]"))
                .unwrap_or_default();
            line(format!(
                "  {} / {} by {} ({}@{}) at {}{void}",
                s.gate,
                s.role,
                s.login,
                s.os_user,
                s.host,
                s.signed_at.format("%Y-%m-%d %H:%M:%SZ")
            ));
        }
    }
    if !st.overrides.is_empty() {
        line("overrides (break-glass):".into());
        for o in &st.overrides {
            let old = if o.current_plan {
                ""
            } else {
                "  [older plan version]"
            };
            line(format!(
                "  OVERRIDE {} by {} at {}: {}{old}",
                o.gate,
                o.login,
                o.at.format("%Y-%m-%d %H:%M:%SZ"),
                o.reason
            ));
        }
    }
    if let Some(f) = &st.flag {
        line(format!(
            "flag {}: {} (by {} at {})",
            f.name,
            if f.enabled { "ON" } else { "OFF" },
            f.updated_by,
            f.updated_at.format("%Y-%m-%d %H:%M:%SZ")
        ));
    }
    if let Some(b) = &st.backfill {
        let est = b
            .rows_estimate
            .map(|e| format!(" of ~{e}"))
            .unwrap_or_default();
        let why = if b.reason.is_empty() {
            String::new()
        } else {
            format!(" — {}", b.reason)
        };
        line(format!(
            "backfill: {} {} rows{est}, throttled {:.1}s{why}",
            b.state, b.rows_done, b.throttled_seconds
        ));
    }
    match &st.rollback {
        Some(r) if r.possible => line(format!(
            "fastest safe rollback ({}): {} — `{}`",
            r.phase, r.description, r.command
        )),
        Some(r) => line(format!(
            "rollback of {}: impossible — {}",
            r.phase, r.description
        )),
        None => line("rollback: nothing applied".into()),
    }
    out
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

async fn rollback(
    ctx: &Context,
    path: &Path,
    phase: Option<Phase>,
    yes: bool,
) -> anyhow::Result<ExitCode> {
    let plan = load(path)?;
    if !yes {
        eprintln!("refused: rollback changes the schema; re-run with --yes to confirm");
        return Ok(ExitCode::from(exit::REFUSED));
    }
    let mut client = ctx.connect("rollback").await?;
    let actor = Actor::current(&client).await?;
    let opts = RunOptions::with_monitor(ctx.db_config()?);
    match engine::rollback(&mut client, &plan, &actor, phase, &opts).await {
        Ok(r) => {
            println!("{}", r.message);
            for p in &r.rolled_back {
                println!(
                    "  {} rolled back in {} ms ({} attempt{}, audit #{})",
                    p.phase,
                    p.duration_ms,
                    p.attempts,
                    if p.attempts == 1 { "" } else { "s" },
                    p.audit_seq
                );
            }
            Ok(ExitCode::from(exit::OK))
        }
        Err(e) => engine_failure(e),
    }
}

async fn rehearse(ctx: &Context, path: &Path, json: bool) -> anyhow::Result<ExitCode> {
    let plan = load(path)?;
    let mut client = ctx.connect("rehearse").await?;
    let actor = Actor::current(&client).await?;
    let r = match engine::rehearse(&mut client, &plan, &actor).await {
        Ok(r) => r,
        Err(e) => return engine_failure(e),
    };
    if json {
        println!("{}", serde_json::to_string_pretty(&r)?);
    } else {
        print!("{}", render_rehearsal(&r));
    }
    Ok(ExitCode::from(if r.ok { exit::OK } else { exit::BLOCKED }))
}

fn render_locks(step: &engine::rehearse::Step) -> String {
    let list = |locks: &[&engine::rehearse::LockTaken]| {
        locks
            .iter()
            .map(|l| format!("{} {}", l.relation, l.mode))
            .collect::<Vec<_>>()
            .join(", ")
    };
    let new: Vec<_> = step.locks.iter().collect();
    let old: Vec<_> = step
        .held
        .iter()
        .filter(|l| !step.locks.contains(l))
        .collect();
    let mut out = if new.is_empty() {
        "takes no new lock".to_string()
    } else {
        format!("takes {}", list(&new))
    };
    if !old.is_empty() {
        out.push_str(&format!(" (already held in the rehearsal: {})", list(&old)));
    }
    out
}

/// The human rendering of a rehearsal.
pub fn render_rehearsal(r: &engine::Rehearsal) -> String {
    let mut out = format!(
        "rehearsal of {} (plan sha256 {}): every change was rolled back\n",
        r.plan_id,
        &r.plan_sha256[..12.min(r.plan_sha256.len())]
    );
    for p in &r.phases {
        if let Some(why) = &p.skipped {
            out.push_str(&format!("  {:<12} skipped: {why}\n", p.phase.as_str()));
            continue;
        }
        if let Some(a) = &p.apply {
            match &a.error {
                None => out.push_str(&format!(
                    "  {:<12} apply    {:>8.1} ms  {} statement(s), {}\n",
                    p.phase.as_str(),
                    a.ms,
                    a.statements,
                    render_locks(a)
                )),
                Some(e) => out.push_str(&format!(
                    "  {:<12} apply    FAILED: {e}\n",
                    p.phase.as_str()
                )),
            }
        }
        if let Some(b) = &p.rollback {
            let restored = match p.restored {
                Some(true) => "  catalog restored",
                Some(false) => "  CATALOG NOT RESTORED",
                None => "",
            };
            match &b.error {
                None => out.push_str(&format!(
                    "  {:<12} rollback {:>8.1} ms  {} statement(s), {}{restored}\n",
                    "",
                    b.ms,
                    b.statements,
                    render_locks(b)
                )),
                Some(e) => out.push_str(&format!("  {:<12} rollback FAILED: {e}\n", "")),
            }
        }
        if let Some(n) = &p.rollback_note {
            out.push_str(&format!("  {:<12} rollback: {n}\n", ""));
        }
        for n in &p.not_rehearsable {
            out.push_str(&format!("  {:<12} {n}\n", ""));
        }
    }
    out.push_str(&format!(
        "{}: {:.1} ms in total; stored as Reversibility evidence (rehearsal #{}, audit #{})\n",
        if r.ok { "PASSED" } else { "FAILED" },
        r.total_ms,
        r.id,
        r.audit_seq
    ));
    out
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

async fn audit_verify(
    client: &tokio_postgres::Client,
    mut expected: Vec<String>,
    head_file: Option<&Path>,
) -> anyhow::Result<ExitCode> {
    let (entries, head) = match audit::verify(client).await? {
        Verification::Intact { entries, head } => (entries, head),
        Verification::Broken { seq, reason } => {
            println!("audit log BROKEN at entry #{seq}: {reason}");
            return Ok(ExitCode::from(exit::BLOCKED));
        }
    };
    if let Some(path) = head_file {
        match std::fs::read_to_string(path) {
            Ok(text) => expected.extend(
                text.lines()
                    .map(str::trim)
                    .filter(|l| !l.is_empty())
                    .map(str::to_string),
            ),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(e) => anyhow::bail!("cannot read the head file {}: {e}", path.display()),
        }
    }
    let mut problems = Vec::new();
    for h in &expected {
        if !audit::contains_hash(client, h).await? {
            problems.push(format!(
                "the externally kept head {h} is not in the chain: entries were removed or rewritten"
            ));
        }
    }
    problems.extend(audit::cross_check(client).await?);
    if !problems.is_empty() {
        println!("audit log BROKEN: the chain ({entries} entries) verifies, but:");
        for p in &problems {
            println!("  ✗ {p}");
        }
        return Ok(ExitCode::from(exit::BLOCKED));
    }
    if let Some(path) = head_file {
        if expected.last() != Some(&head) && entries > 0 {
            let mut f = std::fs::OpenOptions::new()
                .create(true)
                .append(true)
                .open(path)
                .map_err(|e| anyhow::anyhow!("cannot append to {}: {e}", path.display()))?;
            writeln!(f, "{head}")?;
        }
    }
    println!(
        "audit log intact: {entries} entries, head hash {head}; control state cross-checked{}",
        if expected.is_empty() {
            String::new()
        } else {
            format!(", {} kept head(s) found", expected.len())
        }
    );
    Ok(ExitCode::from(exit::OK))
}

async fn audit_cmd(ctx: &Context, action: AuditAction) -> anyhow::Result<ExitCode> {
    let client = ctx.connect_viewer("audit").await?;
    match action {
        AuditAction::Verify {
            expect_head,
            head_file,
        } => audit_verify(&client, expect_head, head_file.as_deref()).await,
        AuditAction::Export {
            format: ExportFormat::Jsonl,
            plan_id,
            output,
        } => {
            let mut writer: Box<dyn Write> = match &output {
                Some(p) => Box::new(std::io::BufWriter::new(
                    std::fs::File::create(p)
                        .map_err(|e| anyhow::anyhow!("cannot create {}: {e}", p.display()))?,
                )),
                None => Box::new(std::io::BufWriter::new(std::io::stdout().lock())),
            };
            let n = audit::export(&client, plan_id.as_deref(), |e| {
                let line = serde_json::to_string(e).map_err(std::io::Error::other)?;
                writeln!(writer, "{line}")
            })
            .await?;
            writer.flush()?;
            if let Some(p) = output {
                eprintln!("exported {n} entries to {}", p.display());
            }
            Ok(ExitCode::from(exit::OK))
        }
        AuditAction::Tail {
            lines,
            follow,
            json,
        } => {
            let print = |e: &audit::Entry| {
                if json {
                    println!("{}", serde_json::to_string(e).unwrap_or_default());
                } else {
                    println!("{}", e.line());
                }
            };
            let last = audit::last_entries(&client, lines.max(0)).await?;
            let mut after = 0;
            for e in &last {
                print(e);
                after = e.seq;
            }
            if after == 0 {
                after = audit::last_entries(&client, 1)
                    .await?
                    .last()
                    .map(|e| e.seq)
                    .unwrap_or(0);
            }
            if follow {
                audit::follow(
                    &ctx.db_config()?,
                    after,
                    std::time::Duration::from_secs(2),
                    |e| {
                        print(e);
                        true
                    },
                )
                .await?;
            }
            Ok(ExitCode::from(exit::OK))
        }
    }
}
