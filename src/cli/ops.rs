//! `cutover plan show`, `cutover plan new` and `cutover run`.

use std::path::PathBuf;
use std::process::ExitCode;

use clap::Subcommand;

use super::{backfill, check, engine, exit, Context};
use crate::plan::operations::template::{self, NewPlan};
use crate::plan::{show, Phase, Plan};

/// Plan authoring and the headless run.
#[derive(Debug, Subcommand)]
pub enum Command {
    /// Show or write plans.
    Plan {
        /// What to do.
        #[command(subcommand)]
        action: PlanAction,
    },
    /// Headless (CI, staging): apply phases in order while their gates pass, running each
    /// gate's checks and the backfill to completion on the way; stop at the first gate that does
    /// not pass (exit 2, its blockers listed). Never overrides; the roster applies as always.
    Run {
        /// Plan file.
        plan: PathBuf,
        /// Stop after this phase.
        #[arg(long, value_enum)]
        through: Option<Phase>,
    },
}

/// `cutover plan …`.
#[derive(Debug, Subcommand)]
pub enum PlanAction {
    /// Dry run: every statement of every phase, the lock it takes on which object, what rolls
    /// the phase back and which checks, probes and sign-offs gate it. Touches no database.
    Show {
        /// Plan file.
        plan: PathBuf,
        /// Machine-readable output.
        #[arg(long)]
        json: bool,
    },
    /// Write a commented plan around one operation (e.g. `alter-column --table public.orders
    /// --column total --type bigint --up "round(total*100)" --down "total/100.0"`).
    New(Box<NewArgs>),
    /// Turn pgroll migrations or ORM-written SQL into a plan of operations.
    Import {
        /// What to import.
        #[command(subcommand)]
        from: super::import::ImportCmd,
    },
}

/// Flags of `plan new`; each becomes the operation field of the same name.
#[derive(Debug, clap::Args)]
pub struct NewArgs {
    /// The operation (`add-column`, `alter-column`, `rename-column`, `create-index`, …).
    pub operation: String,
    /// Table.
    #[arg(long)]
    pub table: Option<String>,
    /// Column.
    #[arg(long)]
    pub column: Option<String>,
    /// New name (column, index or constraint).
    #[arg(long)]
    pub name: Option<String>,
    /// Column type, or constraint type for `create-constraint`.
    #[arg(long = "type")]
    pub kind: Option<String>,
    /// Expression computing the new value from the old columns.
    #[arg(long)]
    pub up: Option<String>,
    /// Expression computing the old value from the new columns.
    #[arg(long)]
    pub down: Option<String>,
    /// Whether the column may hold NULL.
    #[arg(long)]
    pub nullable: Option<bool>,
    /// Column default.
    #[arg(long)]
    pub default: Option<String>,
    /// Old name (`rename-*`).
    #[arg(long)]
    pub from: Option<String>,
    /// New name (`rename-*`).
    #[arg(long)]
    pub to: Option<String>,
    /// Comma-separated column names (`create-index`, `create-constraint`).
    #[arg(long)]
    pub columns: Option<String>,
    /// Check expression (`create-constraint --type check`).
    #[arg(long)]
    pub check: Option<String>,
    /// Unique index (`create-index`).
    #[arg(long)]
    pub unique: bool,
    /// Plan id (default: from the operation, table and column).
    #[arg(long)]
    pub id: Option<String>,
    /// The lead's PostgreSQL login (default: `$USER`).
    #[arg(long)]
    pub lead: Option<String>,
    /// Write here instead of standard output (refuses to overwrite).
    #[arg(long, short)]
    pub output: Option<PathBuf>,
}

/// Runs a plan or run command.
pub async fn run(cmd: Command, ctx: &Context) -> anyhow::Result<ExitCode> {
    match cmd {
        Command::Plan {
            action: PlanAction::Show { plan, json },
        } => {
            let plan = match Plan::load(&plan) {
                Ok(p) => p,
                Err(e) => {
                    eprintln!("{e}");
                    return Ok(ExitCode::from(exit::BLOCKED));
                }
            };
            let s = show::show(&plan);
            let text = if json {
                format!("{}\n", serde_json::to_string_pretty(&s)?)
            } else {
                show::render(&s)
            };
            // A closed pipe (`| head`) ends the output, not the process with a panic.
            let _ = std::io::Write::write_all(&mut std::io::stdout().lock(), text.as_bytes());
            Ok(ExitCode::from(exit::OK))
        }
        Command::Plan {
            action: PlanAction::New(args),
        } => new_plan(*args),
        Command::Plan {
            action: PlanAction::Import { from },
        } => super::import::run(from, ctx),
        Command::Run { plan, through } => headless(ctx, plan, through).await,
    }
}

fn new_plan(a: NewArgs) -> anyhow::Result<ExitCode> {
    let mut fields: Vec<(&'static str, String)> = Vec::new();
    for (k, v) in [
        ("table", a.table),
        ("column", a.column),
        ("name", a.name),
        ("type", a.kind),
        ("up", a.up),
        ("down", a.down),
        ("nullable", a.nullable.map(|b| b.to_string())),
        ("default", a.default),
        ("from", a.from),
        ("to", a.to),
        ("columns", a.columns),
        ("check", a.check),
        ("unique", a.unique.then(|| "true".to_string())),
    ] {
        if let Some(v) = v {
            fields.push((k, v));
        }
    }
    let lead = a
        .lead
        .or_else(|| std::env::var("USER").ok())
        .unwrap_or_else(|| "postgres".to_string());
    let new = NewPlan {
        op: a.operation,
        id: a.id,
        lead,
        fields,
    };
    let text = match template::render(&new) {
        Ok(t) => t,
        Err(e) => {
            eprintln!("cutover plan new: {e}");
            return Ok(ExitCode::from(exit::BLOCKED));
        }
    };
    let shown = a
        .output
        .as_ref()
        .map_or_else(|| "<new plan>".to_string(), |p| p.display().to_string());
    if let Err(e) = Plan::parse(&shown, &text) {
        eprintln!(
            "{text}\n{e}\nthe plan above does not validate: give the fields the operation needs"
        );
        return Ok(ExitCode::from(exit::BLOCKED));
    }
    match a.output {
        Some(path) => {
            let mut file = std::fs::OpenOptions::new()
                .write(true)
                .create_new(true)
                .open(&path)
                .map_err(|e| anyhow::anyhow!("{}: {e}", path.display()))?;
            std::io::Write::write_all(&mut file, text.as_bytes())?;
            eprintln!("wrote {}", path.display());
        }
        None => print!("{text}"),
    }
    Ok(ExitCode::from(exit::OK))
}

/// `cutover run`: the existing advance, check and backfill commands, in order.
async fn headless(
    ctx: &Context,
    path: PathBuf,
    through: Option<Phase>,
) -> anyhow::Result<ExitCode> {
    let plan = Plan::load(&path)?;
    let ok = ExitCode::from(exit::OK);
    loop {
        let next = {
            let client = ctx.connect("run").await?;
            crate::engine::status(&client, &plan).await?.next_phase
        };
        let Some(next) = next else {
            println!("run: every phase of `{}` is applied", plan.id());
            return Ok(ok);
        };
        if through.is_some_and(|t| next > t) {
            println!(
                "run: stopped before {next} (--through {})",
                through.map_or("", Phase::as_str)
            );
            return Ok(ok);
        }
        if next == Phase::ReadSwitch && plan.spec.backfill.is_some() {
            println!("run: backfill to completion");
            let code = backfill::run(
                backfill::Command::Backfill {
                    action: backfill::Action::Run {
                        plan: path.clone(),
                        local_workers: None,
                        lease: std::time::Duration::from_secs(30),
                        ranges: None,
                        no_wait: false,
                        report_every: 0,
                    },
                },
                ctx,
            )
            .await?;
            if code != ok {
                return Ok(code);
            }
        }
        for name in plan.gate(next).checks {
            println!("run: check {name} (gate of {next})");
            // A failing check is a blocker that `advance` reports with the others.
            check::run(
                check::Command::Check {
                    plan: path.clone(),
                    name: Some(name),
                    json: false,
                    history: false,
                    limit: 100,
                    baseline: false,
                },
                ctx,
            )
            .await?;
        }
        println!("run: advance to {next}");
        let code = engine::run(
            engine::Command::Advance {
                plan: path.clone(),
                phase: Some(next),
                json: false,
            },
            ctx,
        )
        .await?;
        if code != ok {
            return Ok(code);
        }
    }
}
