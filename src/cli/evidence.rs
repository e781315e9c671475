//! Readiness-evidence commands: `runbook` and `probe` (lint output lives inside `validate`).

use std::path::PathBuf;
use std::process::ExitCode;

use clap::Subcommand;

use super::{exit, Context};
use crate::control::phases::PhaseState;
use crate::evidence::{self, runbook, ProbeContext, ProbeResult};
use crate::outcome::Outcome;
use crate::plan::{Phase, Plan, ProbeKind};

/// Evidence commands.
#[derive(Debug, Subcommand)]
pub enum Command {
    /// Print the Markdown runbook generated from the plan and (with a database) the live state.
    Runbook {
        /// Plan file.
        plan: PathBuf,
    },
    /// Run readiness probes headless and print their evidence. Exit 0 when all pass, 2 when any
    /// fails or is inconclusive.
    Probe {
        /// Plan file.
        plan: PathBuf,
        /// The gate whose probes to run (default: the next phase's gate).
        #[arg(long, value_enum)]
        gate: Option<Phase>,
        /// Run only these probes (repeatable), whatever the gate lists.
        #[arg(long = "probe", value_enum)]
        probes: Vec<ProbeArg>,
        /// Also show the Observability evidence (was the metrics endpoint scraped recently?).
        #[arg(long)]
        observability: bool,
        /// Machine-readable output.
        #[arg(long)]
        json: bool,
    },
}

/// A probe name on the command line.
#[derive(Debug, Clone, Copy, clap::ValueEnum)]
#[value(rename_all = "snake_case")]
pub enum ProbeArg {
    /// Breaking-DDL lint.
    Lint,
    /// Old-app compatibility.
    Compatibility,
    /// Error budget since the read switch.
    ErrorBudget,
    /// Hidden-reader census.
    HiddenReaders,
    /// Privilege parity.
    PrivilegeParity,
    /// Backfill completion.
    BackfillComplete,
}

impl From<ProbeArg> for ProbeKind {
    fn from(p: ProbeArg) -> ProbeKind {
        match p {
            ProbeArg::Lint => ProbeKind::Lint,
            ProbeArg::Compatibility => ProbeKind::Compatibility,
            ProbeArg::ErrorBudget => ProbeKind::ErrorBudget,
            ProbeArg::HiddenReaders => ProbeKind::HiddenReaders,
            ProbeArg::PrivilegeParity => ProbeKind::PrivilegeParity,
            ProbeArg::BackfillComplete => ProbeKind::BackfillComplete,
        }
    }
}

/// Runs an evidence command.
pub(super) async fn run(cmd: Command, ctx: &Context) -> anyhow::Result<ExitCode> {
    match cmd {
        Command::Runbook { plan } => {
            let plan = Plan::load(&plan)?;
            let live = match ctx.db_config_opt()? {
                Some(cfg) => {
                    let client = ctx.connect_viewer("runbook").await?;
                    Some(runbook::live_state(&client, &plan, cfg.display()).await?)
                }
                None => None,
            };
            print!("{}", runbook::render(&plan, live.as_ref()));
            Ok(ExitCode::from(exit::OK))
        }
        Command::Probe {
            plan,
            gate,
            probes,
            observability,
            json,
        } => {
            let plan = Plan::load(&plan)?;
            let client = ctx.connect("probe").await?;
            let actor = crate::control::audit::Actor::current(&client).await?;
            if let Err(e) = crate::control::anchors::authorize(
                &client,
                &plan,
                &actor,
                crate::plan::Action::Probe,
            )
            .await
            {
                eprintln!("cutover probe: {e}");
                return Ok(ExitCode::from(exit::REFUSED));
            }
            let gate = match gate {
                Some(g) => g,
                None => next_gate(&client, &plan).await?,
            };
            let kinds: Vec<ProbeKind> = if probes.is_empty() {
                plan.gate(gate).probes
            } else {
                probes.into_iter().map(ProbeKind::from).collect()
            };
            let mut results = Vec::new();
            let pctx = ProbeContext {
                client: &client,
                plan: &plan,
                gate,
            };
            for kind in kinds {
                results.push(evidence::probe(kind).evaluate(&pctx).await);
            }
            if observability {
                results.push(evidence::observability(&client, &plan).await);
            }
            if json {
                println!("{}", serde_json::to_string_pretty(&results)?);
            } else {
                print_results(&plan, gate, &results);
            }
            let all = Outcome::all(results.iter().map(|r| r.outcome));
            Ok(ExitCode::from(if all == Outcome::Pass {
                exit::OK
            } else {
                exit::BLOCKED
            }))
        }
    }
}

/// The first phase not yet applied (its gate is the next to pass); contract when all are.
async fn next_gate(client: &tokio_postgres::Client, plan: &Plan) -> anyhow::Result<Phase> {
    Ok(crate::control::phases::rows(client, plan.id())
        .await?
        .iter()
        .find(|r| r.state != PhaseState::Applied)
        .map_or(Phase::Contract, |r| r.phase))
}

fn print_results(plan: &Plan, gate: Phase, results: &[ProbeResult]) {
    println!("probes for the {gate} gate of `{}`:", plan.id());
    if results.is_empty() {
        println!("  (the gate lists no probes)");
    }
    for r in results {
        println!("{:<12} {}: {}", r.outcome.to_string(), r.name, r.summary);
        for e in &r.evidence {
            println!("    {e}");
        }
    }
}
