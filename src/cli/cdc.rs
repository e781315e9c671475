//! `cutover cdc run|status|drop PLAN`: the CDC applier, its lag, and its slot.

use std::path::PathBuf;
use std::process::ExitCode;

use clap::Subcommand;

use super::{exit, Context};
use crate::cdc::{self, apply, CdcError};
use crate::plan::Plan;

/// CDC commands.
#[derive(Debug, Subcommand)]
pub enum Command {
    /// The dual-write without a trigger (`[dual_write] mode = "cdc"`): apply, watch, drop.
    Cdc {
        /// What to do.
        #[command(subcommand)]
        action: Action,
    },
}

/// CDC actions.
#[derive(Debug, Subcommand)]
pub enum Action {
    /// Apply the plan's replication slot to the copy's target until interrupted (Ctrl-C).
    /// Drops slots left behind by crashed or finished plans first. Exit 3 when the server or
    /// the table cannot feed a slot.
    Run {
        /// Plan file.
        plan: PathBuf,
    },
    /// Show how far the applier is behind (bytes and seconds).
    Status {
        /// Plan file.
        plan: PathBuf,
        /// Print JSON.
        #[arg(long)]
        json: bool,
    },
    /// Drop the plan's slot and publication (contract and rollback do it on their own).
    Drop {
        /// Plan file.
        plan: PathBuf,
    },
}

fn refusal(e: CdcError) -> anyhow::Result<ExitCode> {
    match e {
        CdcError::Refused(why) => {
            eprintln!("refused: {why}");
            Ok(ExitCode::from(exit::REFUSED))
        }
        e => Err(e.into()),
    }
}

/// Runs a CDC command.
pub async fn run(cmd: Command, ctx: &Context) -> anyhow::Result<ExitCode> {
    let Command::Cdc { action } = cmd;
    match action {
        Action::Run { plan } => {
            let plan = Plan::load(&plan)?;
            let cfg = ctx.db_config()?;
            let (tx, rx) = tokio::sync::watch::channel(false);
            let mut task = tokio::spawn(apply::run(cfg, plan, apply::ApplyOptions::default(), rx));
            let result = tokio::select! {
                r = &mut task => r?,
                _ = tokio::signal::ctrl_c() => {
                    let _ = tx.send(true);
                    task.await?
                }
            };
            match result {
                Ok(s) => {
                    println!(
                        "cdc applier stopped{}: {} changes in {} batches, {} keys refreshed, {} reconnects",
                        if s.slot_dropped {
                            " (its slot was dropped by contract or rollback)"
                        } else {
                            ""
                        },
                        s.changes,
                        s.batches,
                        s.keys,
                        s.reconnects
                    );
                    Ok(ExitCode::from(exit::OK))
                }
                Err(e) => refusal(e),
            }
        }
        Action::Status { plan, json } => {
            let plan = Plan::load(&plan)?;
            let client = ctx.connect("cdc-status").await?;
            let lag = cdc::lag(&client, plan.id()).await?;
            if json {
                println!("{}", serde_json::to_string_pretty(&lag)?);
            } else {
                match lag {
                    Some(l) => println!(
                        "slot {}{}: {} bytes behind, caught up {} ago, {} changes applied (to {})",
                        l.slot,
                        if l.slot_exists { "" } else { " (MISSING)" },
                        l.bytes,
                        l.seconds
                            .map_or("never".to_string(), |s| format!("{s:.1}s")),
                        l.applied_changes,
                        l.applied_lsn
                    ),
                    None => println!("no CDC slot for {}", plan.id()),
                }
            }
            Ok(ExitCode::from(exit::OK))
        }
        Action::Drop { plan } => {
            let plan = Plan::load(&plan)?;
            let client = ctx.connect("cdc-drop").await?;
            let existed = cdc::drop(&client, plan.id()).await?;
            println!(
                "{}",
                if existed {
                    "slot dropped"
                } else {
                    "no slot to drop"
                }
            );
            Ok(ExitCode::from(exit::OK))
        }
    }
}
