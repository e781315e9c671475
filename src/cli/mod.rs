//! The headless command line. Each area contributes its own subcommands (flattened here), so
//! every action the TUI offers has a scriptable twin.
//!
//! Exit codes: 0 success, 1 error, 2 blocked (a gate or validation failed), 3 refused
//! (not allowed: wrong role, irreversible phase, read-only).

mod audit;
mod backfill;
mod bench;
mod cdc;
mod check;
mod engine;
mod evidence;
mod foundation;
mod import;
mod notify;
mod ops;
mod rehearse;
mod rollback;
mod shared;
mod status;
mod tui;

use std::process::ExitCode;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use clap::{Parser, Subcommand};
use tokio_postgres::Client;

use crate::control::own_transactions;
use crate::db::{self, DbConfig, SessionSettings};

pub use crate::exit;

/// Cutover — zero-downtime PostgreSQL migrations: expand → dual_write → backfill → read_switch → contract.
#[derive(Debug, Parser)]
#[command(name = "cutover", version, about, long_about = None)]
#[command(
    after_help = "Connection: --database-url / DATABASE_URL (URL or key=value string), else the libpq environment \
(PGHOST, PGPORT, PGUSER, PGDATABASE, PGSERVICE, PGSSLMODE, PGSSLROOTCERT, …), with ~/.pgpass and pg_service.conf.\n\
Exit codes: 0 ok, 1 error, 2 blocked (gate or validation), 3 refused."
)]
pub struct Cli {
    /// PostgreSQL connection URL (postgres://user:password@host:port/db?sslmode=…) or libpq
    /// key=value string (host=… sslmode=verify-full service=…); the password is never printed.
    #[arg(long, global = true, env = "DATABASE_URL", hide_env_values = true)]
    pub database_url: Option<String>,

    /// Shell command that prints the password, run for every new connection (e.g. to fetch a
    /// short-lived token); its output is never shown. Takes precedence over other passwords.
    #[arg(
        long,
        global = true,
        env = "CUTOVER_PASSWORD_COMMAND",
        hide_env_values = true
    )]
    pub password_command: Option<String>,

    /// Serve Prometheus metrics on this address (e.g. 127.0.0.1:9187) while the command runs.
    #[arg(long, global = true, env = "CUTOVER_METRICS_ADDR")]
    pub metrics_addr: Option<std::net::SocketAddr>,

    /// What to do.
    #[command(subcommand)]
    pub command: Command,
}

/// All subcommands.
#[derive(Debug, Subcommand)]
pub enum Command {
    /// Plan validation and control-schema setup.
    #[command(flatten)]
    Foundation(foundation::Command),
    /// Phase engine: status, advance, sign-off, rollback, rehearsal, flags, notes, reports, audit.
    #[command(flatten)]
    Engine(engine::Command),
    /// Backfill controls.
    #[command(flatten)]
    Backfill(backfill::Command),
    /// CDC applier.
    #[command(flatten)]
    Cdc(cdc::Command),
    /// Data checks.
    #[command(flatten)]
    Check(check::Command),
    /// Readiness evidence: lint, runbook, metrics.
    #[command(flatten)]
    Evidence(evidence::Command),
    /// Notifications: deliver, status.
    #[command(flatten)]
    Notify(notify::Command),
    /// The full-screen command center and the demo.
    #[command(flatten)]
    Tui(tui::Command),
    /// Benchmarks.
    #[command(flatten)]
    Bench(bench::Command),
    /// Plan dry run and authoring; the headless run.
    #[command(flatten)]
    Ops(ops::Command),
}

impl Command {
    /// True for commands that take over the terminal (they set up their own logging).
    pub fn is_fullscreen(&self) -> bool {
        matches!(self, Command::Tui(_))
    }
}

/// What every command gets: global options and ways to reach the database.
#[derive(Debug, Clone)]
pub struct Context {
    /// `--database-url` / `DATABASE_URL`.
    pub database_url: Option<String>,
    /// `--metrics-addr`.
    pub metrics_addr: Option<std::net::SocketAddr>,
    /// `--password-command` / `CUTOVER_PASSWORD_COMMAND`.
    pub password_command: Option<String>,
    /// Set once the command connects as an operator: from then on this process records its
    /// own transaction counts (`control::own_transactions`; viewers write nothing).
    pub records_own_transactions: Arc<AtomicBool>,
}

impl Context {
    /// The configured server, or an error saying how to configure one.
    pub fn db_config(&self) -> anyhow::Result<DbConfig> {
        Ok(DbConfig::require(self.database_url.as_deref())?
            .with_password_command(self.password_command.clone()))
    }

    /// The configured server, if any.
    pub fn db_config_opt(&self) -> anyhow::Result<Option<DbConfig>> {
        Ok(DbConfig::resolve(self.database_url.as_deref())?
            .map(|c| c.with_password_command(self.password_command.clone())))
    }

    /// Connects for `purpose` and makes sure the control schema is up to date.
    pub async fn connect(&self, purpose: &str) -> anyhow::Result<Client> {
        Ok(self.connect_with_security(purpose).await?.0)
    }

    /// Like [`Context::connect`], also telling how the connection is protected.
    pub async fn connect_with_security(
        &self,
        purpose: &str,
    ) -> anyhow::Result<(Client, db::ConnSecurity)> {
        let cfg = self.db_config()?;
        let (mut client, security) =
            db::connect_with_security(&cfg, &SessionSettings::new(purpose)).await?;
        crate::control::schema::bootstrap(&mut client).await?;
        self.records_own_transactions.store(true, Ordering::SeqCst);
        Ok((client, security))
    }

    /// Connects a viewer for `purpose`: the session is read-only (`default_transaction_read_only`)
    /// and the control schema is read, never created or upgraded.
    pub async fn connect_viewer(&self, purpose: &str) -> anyhow::Result<Client> {
        Ok(self.connect_viewer_with_security(purpose).await?.0)
    }

    /// Like [`Context::connect_viewer`], also telling how the connection is protected.
    pub async fn connect_viewer_with_security(
        &self,
        purpose: &str,
    ) -> anyhow::Result<(Client, db::ConnSecurity)> {
        let (client, security) = self.read_only_session(purpose).await?;
        crate::control::schema::require_readable(&client).await?;
        Ok((client, security))
    }

    /// Like [`Context::connect_viewer_with_security`] for reads that answer "not started": a
    /// database without the control schema is one where nothing has run yet, not an error.
    pub async fn connect_reader(
        &self,
        purpose: &str,
    ) -> anyhow::Result<(Client, db::ConnSecurity)> {
        use crate::control::schema::{self, SchemaState};
        let (client, security) = self.read_only_session(purpose).await?;
        if schema::state(&client).await? != SchemaState::Missing {
            schema::require_readable(&client).await?;
        }
        Ok((client, security))
    }

    async fn read_only_session(&self, purpose: &str) -> anyhow::Result<(Client, db::ConnSecurity)> {
        let cfg = self.db_config()?;
        let (client, security) =
            db::connect_with_security(&cfg, &SessionSettings::new(purpose)).await?;
        client
            .batch_execute("SET default_transaction_read_only = on")
            .await
            .map_err(db::DbError::from)?;
        Ok((client, security))
    }
}

impl Context {
    /// Starts the metrics endpoint for `plans` when `--metrics-addr` was given; returns the
    /// address it listens on. Long-running commands (backfill, tui, demo) call this.
    pub fn spawn_metrics(
        &self,
        plans: &[crate::plan::Plan],
    ) -> anyhow::Result<Option<std::net::SocketAddr>> {
        match self.metrics_addr {
            Some(addr) => {
                crate::evidence::metrics::spawn(addr, self.db_config()?, plans.to_vec()).map(Some)
            }
            None => Ok(None),
        }
    }
}

/// Parses the command line and runs it.
pub async fn run(cli: Cli) -> anyhow::Result<ExitCode> {
    let ctx = Context {
        database_url: cli.database_url,
        metrics_addr: cli.metrics_addr,
        password_command: cli.password_command,
        records_own_transactions: Arc::new(AtomicBool::new(false)),
    };
    let recorder = own_transactions::Recorder::start(ctx.records_own_transactions.clone());
    let result = match cli.command {
        Command::Foundation(c) => foundation::run(c, &ctx).await,
        Command::Engine(c) => engine::run(c, &ctx).await,
        Command::Backfill(c) => backfill::run(c, &ctx).await,
        Command::Check(c) => check::run(c, &ctx).await,
        Command::Cdc(c) => cdc::run(c, &ctx).await,
        Command::Evidence(c) => evidence::run(c, &ctx).await,
        Command::Notify(c) => notify::run(c, &ctx).await,
        Command::Tui(c) => tui::run(c, &ctx).await,
        Command::Bench(c) => bench::run(c, &ctx).await,
        Command::Ops(c) => ops::run(c, &ctx).await,
    };
    recorder.finish().await;
    result
}
