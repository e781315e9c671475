//! `cutover check`: run data checks, store and print their results, or export their history.

use std::path::PathBuf;
use std::process::ExitCode;

use clap::Subcommand;

use super::{exit, Context};
use crate::checks::{self, Cancel, CheckRecord, PartitionResult, RunOptions};
use crate::plan::Plan;
use crate::Outcome;

/// Check commands.
#[derive(Debug, Subcommand)]
pub enum Command {
    /// Run the plan's checks (or one), store the results in `cutover.check_results` and print
    /// them. Exit 0 when all pass, 2 when any fails or is inconclusive.
    Check {
        /// Plan file.
        plan: PathBuf,
        /// Only this check.
        #[arg(long)]
        name: Option<String>,
        /// JSON output (an array of results, with details).
        #[arg(long)]
        json: bool,
        /// Do not run anything: print the stored results, newest first.
        #[arg(long)]
        history: bool,
        /// Most results printed by `--history`.
        #[arg(long, default_value_t = 100)]
        limit: i64,
        /// (Re)take the golden-query baselines now instead of running the checks.
        #[arg(long, conflicts_with = "history")]
        baseline: bool,
    },
}

/// Runs a check command.
pub(super) async fn run(cmd: Command, ctx: &Context) -> anyhow::Result<ExitCode> {
    let Command::Check {
        plan,
        name,
        json,
        history,
        limit,
        baseline,
    } = cmd;
    let plan = Plan::load(&plan)?;
    if let Some(n) = &name {
        if plan.check(n).is_none() {
            anyhow::bail!(
                "{}: no check named `{n}` (defined: {})",
                plan.path,
                plan.spec
                    .checks
                    .iter()
                    .map(|c| c.name.as_str())
                    .collect::<Vec<_>>()
                    .join(", ")
            );
        }
    }
    let client = if history {
        ctx.connect_viewer("check-history").await?
    } else {
        ctx.connect("check").await?
    };
    if baseline {
        let snaps = checks::snapshot_golden(&client, &plan, true).await?;
        if json {
            println!("{}", serde_json::to_string_pretty(&snaps)?);
        } else if snaps.is_empty() {
            println!("plan `{}` has no golden_query checks", plan.id());
        } else {
            for s in snaps {
                println!(
                    "baseline {}: {} rows, checksum {}",
                    s.check_name, s.row_count, s.checksum
                );
            }
        }
        return Ok(ExitCode::from(exit::OK));
    }
    if history {
        let records = checks::history(&client, plan.id(), name.as_deref(), limit).await?;
        print(&records, json)?;
        return Ok(ExitCode::from(exit::OK));
    }
    let cancel = Cancel::new();
    let on_interrupt = cancel.clone();
    tokio::spawn(async move {
        if tokio::signal::ctrl_c().await.is_ok() {
            eprintln!("interrupted: stopping after the current statement");
            on_interrupt.cancel();
        }
    });
    let options = RunOptions {
        cancel,
        second_connection: Some(ctx.db_config()?),
        ..RunOptions::default()
    };
    let records = match checks::run_with(&client, &plan, name.as_deref(), &options).await {
        Ok(r) => r,
        Err(e @ checks::CheckError::Refused(_)) => {
            eprintln!("cutover check: {e}");
            return Ok(ExitCode::from(exit::REFUSED));
        }
        Err(e) => return Err(e.into()),
    };
    print(&records, json)?;
    let all = Outcome::all(records.iter().map(|r| r.outcome));
    Ok(ExitCode::from(if all == Outcome::Pass {
        exit::OK
    } else {
        exit::BLOCKED
    }))
}

fn print(records: &[CheckRecord], json: bool) -> anyhow::Result<()> {
    if json {
        println!("{}", serde_json::to_string_pretty(records)?);
        return Ok(());
    }
    if records.is_empty() {
        println!("no check results");
        return Ok(());
    }
    let width = records
        .iter()
        .map(|r| r.name.len())
        .max()
        .unwrap_or(4)
        .max(4);
    for r in records {
        println!(
            "{:<12} {:<width$}  {:<17} {:>8}  {:>10} rows  {}  {}",
            r.outcome.to_string(),
            r.name,
            r.kind,
            format!("{}ms", r.duration_ms),
            r.rows_scanned,
            r.started_at.format("%Y-%m-%d %H:%M:%S"),
            r.summary
        );
        let mut leaves = String::new();
        super::status::partitions(&mut leaves, &PartitionResult::from_details(&r.details));
        print!("{leaves}");
    }
    Ok(())
}
