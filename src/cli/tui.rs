//! `cutover tui` and `cutover demo`.

use std::path::PathBuf;
use std::process::ExitCode;

use clap::Subcommand;

use super::{exit, Context};
use crate::plan::Plan;

/// Full-screen commands.
#[derive(Debug, Subcommand)]
pub enum Command {
    /// Open the command center on one or more plans (`m`, `]`, `[` switch between them); with
    /// none, on every migration registered on the database, from the plans stored there.
    Tui {
        /// Plan files (none: every registered migration).
        plans: Vec<PathBuf>,
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
pub(super) async fn run(cmd: Command, ctx: &Context) -> anyhow::Result<ExitCode> {
    match cmd {
        Command::Tui { plans, read_only } => {
            let db = ctx.db_config()?;
            // The control schema must exist before the workers read it: an operator's TUI
            // creates or upgrades it, a viewer's only checks it.
            let client = if read_only {
                ctx.connect_viewer("tui-setup").await?
            } else {
                ctx.connect("tui-setup").await?
            };
            let plans = if plans.is_empty() {
                registered_plans(&client).await?
            } else {
                load_plans(&plans)?
            };
            drop(client);
            let metrics = ctx.spawn_metrics(&plans)?;
            crate::tui::run(crate::tui::Options {
                plans,
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

/// Loads each plan file; two files with the same plan id are an error naming both.
fn load_plans(paths: &[PathBuf]) -> anyhow::Result<Vec<Plan>> {
    let mut plans: Vec<Plan> = Vec::new();
    for path in paths {
        let plan = Plan::load(path)?;
        if let Some(twin) = plans.iter().find(|p| p.id() == plan.id()) {
            anyhow::bail!(
                "{} and {} are the same migration (plan id `{}`): open each migration once",
                twin.path,
                plan.path,
                plan.id()
            );
        }
        plans.push(plan);
    }
    Ok(plans)
}

/// Every migration registered on the database, from the plan stored at registration (or at its
/// last transition).
async fn registered_plans(client: &tokio_postgres::Client) -> anyhow::Result<Vec<Plan>> {
    let stored = crate::control::phases::registered(client)
        .await
        .map_err(crate::db::DbError::from)?;
    if stored.is_empty() {
        anyhow::bail!(
            "no migration is registered on this database: give a plan file (cutover tui PLAN), \
             which registers it"
        );
    }
    stored
        .iter()
        .map(|r| {
            Plan::parse(&r.plan_path, &r.plan_source).map_err(|e| {
                anyhow::anyhow!(
                    "the stored plan of migration `{}` does not parse: {e}",
                    r.plan_id
                )
            })
        })
        .collect()
}
