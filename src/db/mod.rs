//! Connections to PostgreSQL: configuration from flags and the libpq environment,
//! password masking, and the per-connection session settings every Cutover connection uses.

pub mod catalog;
pub mod schema;
pub mod tally;
pub mod throwaway;

use std::fmt;
use std::str::FromStr;
use std::time::Duration;

use tokio_postgres::config::{Host, SslMode};
use tokio_postgres::{Client, Config};

/// Errors opening or configuring a connection.
#[derive(Debug, thiserror::Error)]
pub enum DbError {
    /// No server was configured.
    #[error(
        "no database configured: pass --database-url, set DATABASE_URL, or set PGHOST/PGDATABASE"
    )]
    NotConfigured,
    /// The URL or an environment variable is malformed.
    #[error("invalid connection setting {what}: {message}")]
    InvalidConfig {
        /// Which setting.
        what: String,
        /// Why.
        message: String,
    },
    /// The server could not be reached or refused us.
    #[error("cannot connect to {target}: {message}")]
    Connect {
        /// Masked description of the server.
        target: String,
        /// What went wrong, with a hint.
        message: String,
    },
    /// A statement failed.
    #[error("{0}")]
    Query(String),
}

impl From<tokio_postgres::Error> for DbError {
    fn from(e: tokio_postgres::Error) -> Self {
        DbError::Query(describe_error(&e))
    }
}

/// Where to connect, resolved from `--database-url`/`DATABASE_URL` or the `PG*` variables.
#[derive(Clone)]
pub struct DbConfig {
    config: Config,
}

impl fmt::Debug for DbConfig {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "DbConfig({})", self.display())
    }
}

impl DbConfig {
    /// Parses a `postgres://` URL or a libpq key=value string.
    pub fn from_url(url: &str) -> Result<DbConfig, DbError> {
        let config = Config::from_str(url).map_err(|e| DbError::InvalidConfig {
            what: format!("`{}`", mask_url(url)),
            message: e.to_string(),
        })?;
        Ok(DbConfig::finish(config))
    }

    /// Resolves the configuration: an explicit URL wins, then `DATABASE_URL`, then the libpq
    /// variables (`PGHOST`, `PGPORT`, `PGUSER`, `PGDATABASE`, `PGPASSWORD`, `PGSSLMODE`).
    /// Returns `Ok(None)` when none of them is set.
    pub fn resolve(explicit: Option<&str>) -> Result<Option<DbConfig>, DbError> {
        if let Some(url) = explicit.filter(|u| !u.is_empty()) {
            return DbConfig::from_url(url).map(Some);
        }
        if let Some(url) = env("DATABASE_URL") {
            return DbConfig::from_url(&url).map(Some);
        }
        if env("PGHOST").is_none() && env("PGDATABASE").is_none() && env("PGPORT").is_none() {
            return Ok(None);
        }
        DbConfig::from_pg_env().map(Some)
    }

    /// Like [`DbConfig::resolve`] but fails when nothing is configured.
    pub fn require(explicit: Option<&str>) -> Result<DbConfig, DbError> {
        DbConfig::resolve(explicit)?.ok_or(DbError::NotConfigured)
    }

    fn from_pg_env() -> Result<DbConfig, DbError> {
        let mut config = Config::new();
        config.host(env("PGHOST").unwrap_or_else(|| "localhost".to_string()));
        if let Some(port) = env("PGPORT") {
            let port = port.parse::<u16>().map_err(|e| DbError::InvalidConfig {
                what: "PGPORT".into(),
                message: e.to_string(),
            })?;
            config.port(port);
        }
        let user = env("PGUSER").unwrap_or_else(os_user);
        config.user(&user);
        config.dbname(env("PGDATABASE").unwrap_or(user));
        if let Some(pw) = env("PGPASSWORD") {
            config.password(pw);
        }
        if let Some(mode) = env("PGSSLMODE") {
            config.ssl_mode(match mode.as_str() {
                "disable" => SslMode::Disable,
                "allow" | "prefer" => SslMode::Prefer,
                other => {
                    return Err(DbError::InvalidConfig {
                        what: "PGSSLMODE".into(),
                        message: format!("`{other}` needs TLS, which this build does not include; use disable or prefer"),
                    })
                }
            });
        }
        Ok(DbConfig::finish(config))
    }

    fn finish(mut config: Config) -> DbConfig {
        if config.get_user().is_none() {
            config.user(os_user());
        }
        if config.get_connect_timeout().is_none() {
            config.connect_timeout(Duration::from_secs(5));
        }
        DbConfig { config }
    }

    /// The same server with another database name.
    pub fn with_dbname(&self, dbname: &str) -> DbConfig {
        let mut config = self.config.clone();
        config.dbname(dbname);
        DbConfig { config }
    }

    /// The database name (defaults to the user name, as libpq does).
    pub fn dbname(&self) -> String {
        self.config
            .get_dbname()
            .or(self.config.get_user())
            .unwrap_or("postgres")
            .to_string()
    }

    /// A URL-like description with the password masked: `postgres://user:***@host:port/db`.
    pub fn display(&self) -> String {
        let c = &self.config;
        let user = c.get_user().unwrap_or("");
        let pw = if c.get_password().is_some() {
            ":***"
        } else {
            ""
        };
        let host = match c.get_hosts().first() {
            Some(Host::Tcp(h)) => h.clone(),
            Some(Host::Unix(p)) => p.display().to_string(),
            None => "localhost".to_string(),
        };
        let port = c.get_ports().first().copied().unwrap_or(5432);
        format!("postgres://{user}{pw}@{host}:{port}/{}", self.dbname())
    }

    /// The underlying tokio-postgres configuration.
    pub fn config(&self) -> &Config {
        &self.config
    }

    /// `host:port/dbname`: which database's statistics a connection's transactions land in.
    pub fn target_key(&self) -> String {
        let c = &self.config;
        let host = match c.get_hosts().first() {
            Some(Host::Tcp(h)) => h.clone(),
            Some(Host::Unix(p)) => p.display().to_string(),
            None => "localhost".to_string(),
        };
        let port = c.get_ports().first().copied().unwrap_or(5432);
        format!("{host}:{port}/{}", self.dbname())
    }
}

fn env(name: &str) -> Option<String> {
    std::env::var(name).ok().filter(|v| !v.is_empty())
}

/// The operating-system user running this process.
pub fn os_user() -> String {
    nix::unistd::User::from_uid(nix::unistd::geteuid())
        .ok()
        .flatten()
        .map(|u| u.name)
        .or_else(|| env("USER"))
        .unwrap_or_else(|| "unknown".to_string())
}

/// This machine's host name.
pub fn host_name() -> String {
    nix::unistd::gethostname()
        .ok()
        .and_then(|h| h.into_string().ok())
        .unwrap_or_else(|| "unknown".to_string())
}

/// Replaces the password of a `postgres://` URL (or a `password=` key) with `***`.
pub fn mask_url(url: &str) -> String {
    if let Some((scheme, rest)) = url.split_once("://") {
        let (authority, tail) = match rest.find(['/', '?']) {
            Some(i) => rest.split_at(i),
            None => (rest, ""),
        };
        let masked_tail = mask_kv(tail);
        if let Some((userinfo, hostpart)) = authority.rsplit_once('@') {
            if let Some((user, _)) = userinfo.split_once(':') {
                return format!("{scheme}://{user}:***@{hostpart}{masked_tail}");
            }
        }
        return format!("{scheme}://{authority}{masked_tail}");
    }
    mask_kv(url)
}

fn mask_kv(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    let mut rest = text;
    while let Some(i) = rest.find("password=") {
        let (head, tail) = rest.split_at(i + "password=".len());
        out.push_str(head);
        out.push_str("***");
        let end = tail.find([' ', '&']).unwrap_or(tail.len());
        rest = &tail[end..];
    }
    out.push_str(rest);
    out
}

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
}

/// Opens a connection tagged `application_name = cutover/<purpose>` whose transactions are
/// counted as Cutover's own ([`tally`]); the caller drives the returned connection.
pub async fn open(
    cfg: &DbConfig,
    purpose: &str,
) -> Result<(Client, tally::TalliedConnection), DbError> {
    let mut config = cfg.config.clone();
    let app_name: String = format!("cutover/{purpose}").chars().take(63).collect();
    config.application_name(&app_name);
    tally::connect(cfg, &config)
        .await
        .map_err(|e| DbError::Connect {
            target: cfg.display(),
            message: match &e {
                tally::ConnectError::Postgres(pg) => connect_hint(&describe_error(pg)),
                tally::ConnectError::Socket(io) => connect_hint(&io.to_string()),
            },
        })
}

/// Opens a connection ([`open`]), spawns its driver task, and applies the session settings.
pub async fn connect(cfg: &DbConfig, session: &SessionSettings) -> Result<Client, DbError> {
    let (client, connection) = open(cfg, &session.purpose).await?;
    tokio::spawn(async move {
        if let Err(e) = connection.await {
            tracing::debug!("connection closed: {e}");
        }
    });
    let ms = session.statement_timeout.as_millis();
    client
        .batch_execute(&format!("SET statement_timeout = {ms}"))
        .await?;
    Ok(client)
}

fn connect_hint(text: &str) -> String {
    let lower = text.to_lowercase();
    let hint = if lower.contains("refused") || lower.contains("no such file") {
        " (is PostgreSQL running there? start it, or unset DATABASE_URL to let Cutover use a throwaway cluster)"
    } else if lower.contains("password") || lower.contains("authentication") {
        " (check the user and password: PGUSER/PGPASSWORD or the URL)"
    } else if lower.contains("does not exist") {
        " (create the database first, or pick another with PGDATABASE / the URL)"
    } else if lower.contains("timed out") || lower.contains("timeout") {
        " (the server did not answer within 5 s: check host, port and firewalls)"
    } else {
        ""
    };
    format!("{text}{hint}")
}

/// A one-line description of a PostgreSQL error: message, SQLSTATE, detail, hint, position.
pub fn describe_error(e: &tokio_postgres::Error) -> String {
    match e.as_db_error() {
        Some(db) => {
            let mut s = format!("{} [SQLSTATE {}]", db.message(), db.code().code());
            if let Some(d) = db.detail() {
                s.push_str(&format!("; detail: {d}"));
            }
            if let Some(h) = db.hint() {
                s.push_str(&format!("; hint: {h}"));
            }
            if let Some(w) = db.where_() {
                s.push_str(&format!("; where: {w}"));
            }
            s
        }
        None => {
            let mut s = e.to_string();
            let mut source = std::error::Error::source(e);
            while let Some(inner) = source {
                s.push_str(&format!(": {inner}"));
                source = inner.source();
            }
            s
        }
    }
}

/// Quotes an SQL identifier.
pub fn quote_ident(name: &str) -> String {
    format!("\"{}\"", name.replace('"', "\"\""))
}

/// Quotes a possibly schema-qualified name (`schema.table` → `"schema"."table"`).
pub fn quote_qualified(name: &str) -> String {
    name.split('.')
        .map(quote_ident)
        .collect::<Vec<_>>()
        .join(".")
}

/// Quotes an SQL string literal.
pub fn quote_literal(value: &str) -> String {
    format!("'{}'", value.replace('\'', "''"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn masks_passwords() {
        assert_eq!(
            mask_url("postgres://bob:s3cret@db:5432/app"),
            "postgres://bob:***@db:5432/app"
        );
        assert_eq!(mask_url("postgres://bob@db/app"), "postgres://bob@db/app");
        assert_eq!(
            mask_url("postgres://bob:p@ss@db/app?password=x&sslmode=disable"),
            "postgres://bob:***@db/app?password=***&sslmode=disable"
        );
        assert_eq!(
            mask_url("host=db password=hunter2 user=bob"),
            "host=db password=*** user=bob"
        );
        let cfg = DbConfig::from_url("postgres://bob:s3cret@db:6543/app").unwrap();
        assert_eq!(cfg.display(), "postgres://bob:***@db:6543/app");
        assert!(!format!("{cfg:?}").contains("s3cret"));
    }
}
