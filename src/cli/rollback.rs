//! `cutover rollback`: runs the rollback plan, or with `--dry-run` prints it (text or JSON) and
//! changes nothing. The plan is the engine's own value, the one the TUI's red box shows.

use std::path::Path;
use std::process::ExitCode;

use serde_json::json;

use super::shared::{engine_failure, load};
use super::{exit, Context};
use crate::control::audit::Actor;
use crate::engine::{self, RunOptions};
use crate::plan::Phase;
use crate::rules::{NoRollback, RollbackPlan};

/// How `rollback` runs.
#[derive(Debug, Clone, Copy)]
pub(super) enum Run {
    /// Roll back; refused unless `confirmed` (`--yes`).
    Execute {
        /// `--yes` was given.
        confirmed: bool,
    },
    /// Print the plan and change nothing.
    DryRun {
        /// As JSON.
        json: bool,
    },
}

/// `cutover rollback`.
pub(super) async fn rollback(
    ctx: &Context,
    path: &Path,
    phase: Option<Phase>,
    run: Run,
) -> anyhow::Result<ExitCode> {
    let plan = load(path)?;
    let json = match run {
        Run::DryRun { json } => json,
        Run::Execute { confirmed: false } => {
            eprintln!("refused: rollback changes the schema; re-run with --yes to confirm (or --dry-run to see what it runs)");
            return Ok(ExitCode::from(exit::REFUSED));
        }
        Run::Execute { confirmed: true } => return execute(ctx, &plan, phase).await,
    };
    let (client, _) = ctx.connect_reader("rollback --dry-run").await?;
    let planned = match engine::plan_rollback(&client, &plan, phase).await {
        Ok(p) => p,
        Err(e) => return engine_failure(e),
    };
    if json {
        let value = match &planned {
            Ok(p) => json!({ "possible": true, "plan": p }),
            Err(NoRollback::Nothing(why)) => {
                json!({ "possible": false, "nothing_to_do": true, "reason": why })
            }
            Err(NoRollback::Irreversible(why)) => {
                json!({ "possible": false, "nothing_to_do": false, "reason": why })
            }
        };
        println!("{}", serde_json::to_string_pretty(&value)?);
    } else {
        match &planned {
            Ok(p) => print!("{}", render_plan(p)),
            Err(NoRollback::Nothing(why) | NoRollback::Irreversible(why)) => println!("{why}"),
        }
    }
    Ok(ExitCode::from(exit::OK))
}

async fn execute(
    ctx: &Context,
    plan: &crate::plan::Plan,
    phase: Option<Phase>,
) -> anyhow::Result<ExitCode> {
    let mut client = ctx.connect("rollback").await?;
    let actor = Actor::current(&client).await?;
    let opts = RunOptions::with_monitor(ctx.db_config()?);
    match engine::rollback(&mut client, plan, &actor, phase, &opts).await {
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

/// The dry run's text: each step on its own line(s), numbered, in order.
fn render_plan(p: &RollbackPlan) -> String {
    let names: Vec<&str> = p.phases.iter().map(|p| p.as_str()).collect();
    let mut out = format!(
        "dry run: rolling back {} would run these {} steps, in order (nothing was changed):\n",
        names.join(", then "),
        p.steps.len()
    );
    for (i, step) in p.steps.iter().enumerate() {
        let text = step.to_string();
        let mut lines = text.lines();
        out.push_str(&format!(
            "{:>3}. {}\n",
            i + 1,
            lines.next().unwrap_or_default()
        ));
        for l in lines {
            out.push_str(&format!("     {l}\n"));
        }
    }
    out
}
