//! `cutover validate`, `cutover bootstrap` and `cutover grants`.

use std::path::PathBuf;
use std::process::ExitCode;

use clap::Subcommand;

use super::{exit, Context};
use crate::checks::catalog;
use crate::db::{self, SessionSettings};
use crate::plan::{diagnostic, Plan, PlanError};

/// Foundation commands.
#[derive(Debug, Subcommand)]
pub enum Command {
    /// Parse and validate plan files; with a database configured, also check the live catalog.
    ///
    /// Every problem is reported as `file:line:col: message` with a hint. Exit 0 when all plans
    /// are valid, 2 when any is not, 1 on other errors.
    Validate {
        /// Plan files (TOML).
        #[arg(required = true)]
        plans: Vec<PathBuf>,
        /// Do not contact the database even if one is configured.
        #[arg(long)]
        offline: bool,
    },
    /// Create or upgrade the `cutover` control schema (idempotent; every operator command does
    /// it too, viewers never do).
    Bootstrap,
    /// Print the least-privilege GRANT script for an operator and a viewer login (run it as the
    /// database owner after the control schema exists).
    Grants {
        /// Plan file.
        plan: PathBuf,
        /// The login that runs phases and backfills.
        #[arg(long)]
        operator: String,
        /// The login that only looks (status, audit, runbook, TUI --read-only).
        #[arg(long)]
        viewer: String,
        /// The database (default: the configured connection's).
        #[arg(long)]
        database: Option<String>,
    },
}

/// Runs a foundation command.
pub(super) async fn run(cmd: Command, ctx: &Context) -> anyhow::Result<ExitCode> {
    match cmd {
        Command::Validate { plans, offline } => validate(&plans, offline, ctx).await,
        Command::Grants {
            plan,
            operator,
            viewer,
            database,
        } => {
            let plan = match Plan::load(&plan) {
                Ok(p) => p,
                Err(e) => {
                    report(&e);
                    return Ok(ExitCode::from(exit::BLOCKED));
                }
            };
            let database = match database {
                Some(d) => d,
                None => match ctx.db_config_opt()? {
                    Some(cfg) => cfg.dbname(),
                    None => anyhow::bail!(
                        "which database? pass --database NAME or configure a connection"
                    ),
                },
            };
            print!(
                "{}",
                crate::control::grants::script(&plan, &database, &operator, &viewer)
            );
            Ok(ExitCode::from(exit::OK))
        }
        Command::Bootstrap => {
            let cfg = ctx.db_config()?;
            let mut client = db::connect(&cfg, &SessionSettings::new("bootstrap")).await?;
            let applied = crate::control::schema::bootstrap(&mut client).await?;
            if applied.is_empty() {
                println!("control schema on {} is up to date", cfg.display());
            } else {
                println!(
                    "control schema on {}: applied versions {applied:?}",
                    cfg.display()
                );
            }
            Ok(ExitCode::from(exit::OK))
        }
    }
}

async fn validate(paths: &[PathBuf], offline: bool, ctx: &Context) -> anyhow::Result<ExitCode> {
    let db = if offline { None } else { ctx.db_config_opt()? };
    let mut client = match &db {
        Some(cfg) => Some(db::connect(cfg, &SessionSettings::new("validate")).await?),
        None => None,
    };
    let mut failed = 0usize;
    for path in paths {
        let plan = match Plan::load(path) {
            Ok(plan) => plan,
            Err(e) => {
                failed += 1;
                report(&e);
                continue;
            }
        };
        let lint = crate::evidence::lint::validate_report(&plan);
        for line in &lint.lines {
            eprintln!("{line}");
        }
        if lint.blocking > 0 {
            failed += 1;
            continue;
        }
        if let Some(client) = client.as_mut() {
            let control = crate::control::phases::catalog_state(&*client, &plan).await?;
            let problems = catalog::check_plan(client, &plan, control).await?;
            if !problems.is_empty() {
                failed += 1;
                for p in crate::plan::operations::attribute(&plan.spec, problems, &[]) {
                    eprintln!("{}", diagnostic::locate(&plan.path, &plan.source, p));
                }
                continue;
            }
        }
        let against = db
            .as_ref()
            .map(|c| format!(" (catalog checked on {})", c.display()))
            .unwrap_or_default();
        println!(
            "{}: ok — plan `{}`, sha256 {}{against}",
            plan.path,
            plan.id(),
            &plan.sha256()[..12]
        );
    }
    Ok(ExitCode::from(if failed == 0 {
        exit::OK
    } else {
        exit::BLOCKED
    }))
}

fn report(e: &PlanError) {
    eprintln!("{e}");
}
