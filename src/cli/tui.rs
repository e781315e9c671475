//! `cutover tui` and `cutover demo`.

use std::path::PathBuf;
use std::process::ExitCode;

use clap::Subcommand;

use super::{exit, Context};
use crate::plan::Plan;

/// Full-screen commands.
#[derive(Debug, Subcommand)]
pub enum Command {
    /// Open the command center on a plan.
    Tui {
        /// Plan file.
        plan: PathBuf,
        /// Block every change (viewer only).
        #[arg(long)]
        read_only: bool,
    },
    /// Start a throwaway PostgreSQL with a seeded demo database and a live workload, and open the TUI.
    Demo {
        /// Accounts to seed.
        #[arg(long, default_value_t = 1_000_000)]
        accounts: i32,
        /// Synthetic application writes per second.
        #[arg(long, default_value_t = 50)]
        writes_per_sec: u32,
        /// Backfill rate cap in rows/s, so the backfill lasts long enough to watch (0 = none).
        #[arg(long, default_value_t = 20_000)]
        backfill_rate: u32,
    },
}

/// Runs a full-screen command.
pub async fn run(cmd: Command, ctx: &Context) -> anyhow::Result<ExitCode> {
    match cmd {
        Command::Tui { plan, read_only } => {
            let plan = Plan::load(&plan)?;
            let db = ctx.db_config()?;
            // The control schema must exist before the worker reads it: an operator's TUI
            // creates or upgrades it, a viewer's only checks it.
            if read_only {
                ctx.connect_viewer("tui-setup").await?;
            } else {
                ctx.connect("tui-setup").await?;
            }
            let metrics = ctx.spawn_metrics(&plan)?;
            crate::tui::run(crate::tui::Options {
                plan,
                db,
                read_only,
                hint: None,
                app: None,
                metrics,
            })
            .await?;
            Ok(ExitCode::from(exit::OK))
        }
        Command::Demo {
            accounts,
            writes_per_sec,
            backfill_rate,
        } => {
            crate::demo::run(
                ctx.db_config_opt()?,
                crate::demo::DemoOptions {
                    accounts,
                    writes_per_sec,
                    backfill_rate,
                    metrics_addr: ctx.metrics_addr,
                },
            )
            .await?;
            Ok(ExitCode::from(exit::OK))
        }
    }
}
