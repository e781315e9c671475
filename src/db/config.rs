//! [`DbConfig`]: where to connect and how, resolved from a connection string, the service file
//! and the environment.

use std::fmt;
use std::sync::Arc;
use std::time::Duration;

use super::conninfo::{self, Origin, Params};
use super::env::Env;
use super::resolve::Resolver;
use super::settings::Settings;
use super::tls::TlsSettings;
use super::{service, DbError};

/// Where to connect and how, resolved like libpq: the connection string first, then the
/// service file (`service=` / `PGSERVICE`), then the `PG*` variables, then defaults.
/// Cheap to clone.
#[derive(Clone)]
pub struct DbConfig {
    pub(super) s: Arc<Settings>,
}

impl fmt::Debug for DbConfig {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "DbConfig({}, sslmode={})",
            self.display(),
            self.s.tls.mode
        )
    }
}

impl DbConfig {
    /// Parses a `postgres://` URL or a libpq `keyword=value` string; settings it lacks come
    /// from the service file and the `PG*` environment, as in libpq.
    pub fn from_url(url: &str) -> Result<DbConfig, DbError> {
        DbConfig::parse_with(url, &Env::Process)
    }

    pub(crate) fn parse_with(text: &str, env: &Env) -> Result<DbConfig, DbError> {
        DbConfig::build(conninfo::parse(text)?, env)
    }

    /// Resolves the configuration: an explicit URL wins, then `DATABASE_URL`, then the libpq
    /// variables (`PGHOST`, `PGHOSTADDR`, `PGPORT`, `PGDATABASE`, `PGSERVICE`, …).
    /// Returns `Ok(None)` when none of them is set.
    pub fn resolve(explicit: Option<&str>) -> Result<Option<DbConfig>, DbError> {
        DbConfig::resolve_with(explicit, &Env::Process)
    }

    pub(crate) fn resolve_with(
        explicit: Option<&str>,
        env: &Env,
    ) -> Result<Option<DbConfig>, DbError> {
        if let Some(url) = explicit.filter(|u| !u.is_empty()) {
            return DbConfig::parse_with(url, env).map(Some);
        }
        if let Some(url) = env.var("DATABASE_URL") {
            return DbConfig::parse_with(&url, env).map(Some);
        }
        let configured = ["PGHOST", "PGHOSTADDR", "PGDATABASE", "PGPORT", "PGSERVICE"]
            .iter()
            .any(|v| env.var(v).is_some());
        if !configured {
            return Ok(None);
        }
        DbConfig::build(Params::default(), env).map(Some)
    }

    /// Like [`DbConfig::resolve`] but fails when nothing is configured.
    pub fn require(explicit: Option<&str>) -> Result<DbConfig, DbError> {
        DbConfig::resolve(explicit)?.ok_or(DbError::NotConfigured)
    }

    /// Runs `command` (`sh -c`) for every new connection; its output is the password. It
    /// takes precedence over every other password source.
    pub fn with_password_command(mut self, command: Option<String>) -> DbConfig {
        Arc::make_mut(&mut self.s).password_command = command.filter(|c| !c.trim().is_empty());
        self
    }

    fn build(mut params: Params, env: &Env) -> Result<DbConfig, DbError> {
        let service = match params.remove("service") {
            Some((name, _)) => Some(name),
            None => env.var("PGSERVICE"),
        };
        if let Some(name) = service {
            let from_file = service::lookup(&name, env)?;
            for (key, _) in conninfo::KEYWORDS {
                if let Some((value, origin)) = from_file.entry(key) {
                    params.set_default(key, value.to_string(), origin.clone());
                }
            }
        }
        for (key, var) in conninfo::KEYWORDS {
            if let (Some(var), false) = (var, *key == "service") {
                if let Some(value) = env.var(var) {
                    params.set_default(key, value, Origin::Env(var));
                }
            }
        }
        Ok(DbConfig {
            s: Arc::new(Resolver { params, env }.finish()?),
        })
    }

    /// The same server with another database name.
    pub fn with_dbname(&self, dbname: &str) -> DbConfig {
        let mut cfg = self.clone();
        Arc::make_mut(&mut cfg.s).dbname = dbname.to_string();
        cfg
    }

    /// The database name (defaults to the user name, as libpq does).
    pub fn dbname(&self) -> String {
        self.s.dbname.clone()
    }

    /// The user name (defaults to the operating-system user).
    pub fn user(&self) -> &str {
        &self.s.user
    }

    /// The TLS settings.
    pub fn tls(&self) -> &TlsSettings {
        &self.s.tls
    }

    /// The same settings with another connect timeout (`None`: no limit).
    pub fn with_connect_timeout(mut self, timeout: Option<Duration>) -> DbConfig {
        Arc::make_mut(&mut self.s).connect_timeout = timeout;
        self
    }

    /// The connect timeout (`None`: wait indefinitely, libpq's `connect_timeout=0`).
    pub fn connect_timeout(&self) -> Option<Duration> {
        self.s.connect_timeout
    }

    /// A URL-like description with the password masked: `postgres://user:***@host:port/db`.
    pub fn display(&self) -> String {
        self.s.display()
    }

    /// The libpq environment that makes a child process (pgbench, psql) connect to the same
    /// server the same way. Contains the password when one is configured: pass it only in a
    /// child's environment, never on a command line.
    pub fn libpq_env(&self) -> Vec<(&'static str, String)> {
        self.s.libpq_env()
    }

    /// The `application_name` for a Cutover connection: `cutover/<purpose>`, followed by
    /// ` (<application_name or PGAPPNAME>)` when one is configured, cut to PostgreSQL's 63 bytes.
    pub fn application_name(&self, purpose: &str) -> String {
        self.s.application_name(purpose)
    }

    /// The key of the first server's database for [`super::tally`] (`host:port/dbname`), and this
    /// configuration narrowed to that server.
    pub(crate) fn first_server(&self) -> (String, DbConfig) {
        match self.s.targets.first() {
            Some(t) => (self.s.server_key(t), self.s.pinned(t)),
            None => (self.display(), self.clone()),
        }
    }
}
