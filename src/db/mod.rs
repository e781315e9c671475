//! Connections to PostgreSQL, configured and opened the way libpq does it: URLs and
//! `keyword=value` strings, service files, the `PG*` environment, `.pgpass`, `sslmode` with
//! certificate verification, `connect_timeout` — plus `--password-command`, typed errors, and
//! the per-connection session settings every Cutover connection uses.

mod config;
mod connect;
mod conninfo;
mod env;
pub(crate) mod error;
pub mod partitions;
mod pgpass;
mod resolve;
mod service;
mod settings;
pub mod tally;
pub(crate) mod tls;
pub mod txmark;

use std::time::Duration;

use tokio::sync::mpsc;
use tokio_postgres::{Client, Notification};

pub use config::DbConfig;
pub use connect::ConnSecurity;
pub use env::{host_name, os_user};
pub use error::{describe_error, DbError, Stage};
pub use tls::{RootCert, SslMode, TlsSettings, Verification};

pub(crate) use env::Env;
use settings::{HostKind, SessionAttrs, Settings, Target};

/// `connect_timeout` when none is configured.
pub const DEFAULT_CONNECT_TIMEOUT: Duration = Duration::from_secs(10);

/// Session settings applied to every connection Cutover opens.
#[derive(Debug, Clone)]
pub struct SessionSettings {
    /// Suffix of `application_name` (`cutover/<purpose>`), visible in pg_stat_activity.
    pub purpose: String,
    /// The connection's default `statement_timeout`.
    pub statement_timeout: Duration,
}

impl SessionSettings {
    /// Settings for a given purpose with the default 30 s statement timeout.
    pub fn new(purpose: &str) -> SessionSettings {
        SessionSettings {
            purpose: purpose.to_string(),
            statement_timeout: Duration::from_secs(30),
        }
    }

    fn first_statement(&self) -> String {
        format!(
            "SET statement_timeout = {}",
            self.statement_timeout.as_millis()
        )
    }
}

/// Opens a connection, spawns its driver task, and applies the session settings.
pub async fn connect(cfg: &DbConfig, session: &SessionSettings) -> Result<Client, DbError> {
    connect_with_security(cfg, session).await.map(|(c, _)| c)
}

/// Like [`connect()`], also telling how the connection is protected.
pub async fn connect_with_security(
    cfg: &DbConfig,
    session: &SessionSettings,
) -> Result<(Client, ConnSecurity), DbError> {
    connect::open(
        &cfg.s,
        &cfg.application_name(&session.purpose),
        Some(&session.first_statement()),
        &connect::Driver::Plain,
        tally::Counting::On,
    )
    .await
}

/// Like [`connect_with_security`], forwarding the connection's notifications (`LISTEN`); the
/// receiver yields `None` once the connection has ended.
pub async fn connect_listening(
    cfg: &DbConfig,
    session: &SessionSettings,
) -> Result<(Client, mpsc::UnboundedReceiver<Notification>, ConnSecurity), DbError> {
    let (tx, rx) = mpsc::unbounded_channel();
    let (client, security) = connect::open(
        &cfg.s,
        &cfg.application_name(&session.purpose),
        Some(&session.first_statement()),
        &connect::Driver::Listen(tx),
        tally::Counting::On,
    )
    .await?;
    Ok((client, rx, security))
}

/// Opens a connection that stands for an application (the demo's workload): exactly this
/// `application_name`, no session settings.
pub async fn connect_app(cfg: &DbConfig, application_name: &str) -> Result<Client, DbError> {
    connect::open(
        &cfg.s,
        application_name,
        None,
        &connect::Driver::Plain,
        tally::Counting::Off,
    )
    .await
    .map(|(c, _)| c)
}

/// Opens the connection that records Cutover's own transaction counts ([`tally`]): counted
/// like any other, but its transactions do not call for another recording.
pub async fn connect_recording(
    cfg: &DbConfig,
    session: &SessionSettings,
) -> Result<Client, DbError> {
    connect::open(
        &cfg.s,
        &cfg.application_name(&session.purpose),
        Some(&session.first_statement()),
        &connect::Driver::Plain,
        tally::Counting::Recording,
    )
    .await
    .map(|(c, _)| c)
}

#[cfg(test)]
mod tests;
