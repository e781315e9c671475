//! Connections to PostgreSQL, configured and opened the way libpq does it: URLs and
//! `keyword=value` strings, service files, the `PG*` environment, `.pgpass`, `sslmode` with
//! certificate verification, `connect_timeout` — plus `--password-command`, typed errors, and
//! the per-connection session settings every Cutover connection uses.

pub mod catalog;
mod connect;
mod conninfo;
pub mod error;
mod pgpass;
pub mod read_only;
mod service;
pub mod tally;
pub mod throwaway;
pub mod tls;
pub mod txmark;

use std::fmt;
use std::net::IpAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use tokio::sync::mpsc;
use tokio_postgres::config::ChannelBinding;
use tokio_postgres::{Client, Notification};

pub use connect::ConnSecurity;
pub use error::{describe_error, DbError, Stage};
pub use tls::{RootCert, SslMode, TlsSettings, Verification};

use conninfo::{Origin, Params};

/// `connect_timeout` when none is configured.
pub const DEFAULT_CONNECT_TIMEOUT: Duration = Duration::from_secs(10);

/// Where settings come from: the process environment, or a fixed map (tests, throwaway
/// clusters).
#[derive(Clone, Debug)]
pub(crate) enum Env {
    Process,
    Fixed(Vec<(String, String)>),
}

impl Env {
    /// A non-empty variable.
    pub(crate) fn var(&self, name: &str) -> Option<String> {
        match self {
            Env::Process => std::env::var(name).ok(),
            Env::Fixed(vars) => vars.iter().find(|(k, _)| k == name).map(|(_, v)| v.clone()),
        }
        .filter(|v| !v.is_empty())
    }

    /// `$HOME`, else the user's home directory from the password database.
    pub(crate) fn home(&self) -> Option<PathBuf> {
        if let Some(h) = self.var("HOME") {
            return Some(PathBuf::from(h));
        }
        match self {
            Env::Process => nix::unistd::User::from_uid(nix::unistd::geteuid())
                .ok()
                .flatten()
                .map(|u| u.dir),
            Env::Fixed(_) => None,
        }
    }
}

/// A password: never printed, not even by `Debug`.
#[derive(Clone)]
pub(crate) struct Secret(String);

impl Secret {
    pub(crate) fn expose(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("***")
    }
}

/// What a host entry names.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) enum HostKind {
    /// A host name or IP address.
    Tcp(String),
    /// A unix-socket directory.
    Unix(PathBuf),
    /// Nothing: only `hostaddr` is given.
    None,
}

/// One server of the (libpq multi-host) list.
#[derive(Clone, Debug)]
pub(crate) struct Target {
    pub(crate) host: HostKind,
    pub(crate) hostaddr: Option<IpAddr>,
    pub(crate) port: u16,
}

/// TCP keepalive settings (libpq's `keepalives*`).
#[derive(Clone, Debug)]
pub(crate) struct Keepalives {
    pub(crate) enabled: bool,
    pub(crate) idle: Duration,
    pub(crate) interval: Duration,
    pub(crate) count: u32,
}

/// libpq's `target_session_attrs`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum SessionAttrs {
    Any,
    ReadWrite,
    ReadOnly,
    Primary,
    Standby,
}

impl SessionAttrs {
    pub(crate) fn as_str(self) -> &'static str {
        match self {
            SessionAttrs::Any => "any",
            SessionAttrs::ReadWrite => "read-write",
            SessionAttrs::ReadOnly => "read-only",
            SessionAttrs::Primary => "primary",
            SessionAttrs::Standby => "standby",
        }
    }
}

/// Where to connect and how, resolved like libpq: the connection string first, then the
/// service file (`service=` / `PGSERVICE`), then the `PG*` variables, then defaults.
/// Cheap to clone.
#[derive(Clone)]
pub struct DbConfig {
    s: Arc<Settings>,
}

/// The resolved settings behind a [`DbConfig`].
#[derive(Clone)]
pub(crate) struct Settings {
    pub(crate) targets: Vec<Target>,
    pub(crate) user: String,
    password: Option<Secret>,
    pub(crate) dbname: String,
    pub(crate) options: Option<String>,
    application_name: Option<String>,
    pub(crate) tls: TlsSettings,
    pub(crate) channel_binding: ChannelBinding,
    pub(crate) connect_timeout: Option<Duration>,
    pub(crate) keepalives: Keepalives,
    pub(crate) tcp_user_timeout: Option<Duration>,
    passfile: Option<PathBuf>,
    pub(crate) target_session_attrs: SessionAttrs,
    pub(crate) password_command: Option<String>,
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
        let params = conninfo::parse(text).map_err(|message| DbError::InvalidConfig {
            what: if conninfo_is_url(text) {
                "in the connection URL".to_string()
            } else {
                "in the connection string".to_string()
            },
            message,
        })?;
        DbConfig::build(params, env)
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

    /// The key of the first server's database for [`tally`] (`host:port/dbname`), and this
    /// configuration narrowed to that server.
    pub(crate) fn first_server(&self) -> (String, DbConfig) {
        match self.s.targets.first() {
            Some(t) => (self.s.server_key(t), self.s.pinned(t)),
            None => (self.display(), self.clone()),
        }
    }
}

impl Settings {
    fn display(&self) -> String {
        let servers = self
            .targets
            .iter()
            .map(|t| self.display_server(t))
            .collect::<Vec<_>>()
            .join(",");
        self.url_like(&servers)
    }

    pub(crate) fn display_target(&self, target: &Target) -> String {
        self.url_like(&self.display_server(target))
    }

    fn url_like(&self, servers: &str) -> String {
        let pw = if self.password.is_some() || self.password_command.is_some() {
            ":***"
        } else {
            ""
        };
        format!("postgres://{}{pw}@{servers}/{}", self.user, self.dbname)
    }

    /// Which database's statistics a connection to `t` lands in: `host:port/dbname`.
    pub(crate) fn server_key(&self, t: &Target) -> String {
        format!("{}/{}", self.display_server(t), self.dbname)
    }

    /// These settings narrowed to the one server `t`.
    pub(crate) fn pinned(&self, t: &Target) -> DbConfig {
        DbConfig {
            s: Arc::new(Settings {
                targets: vec![t.clone()],
                ..self.clone()
            }),
        }
    }

    pub(crate) fn display_server(&self, t: &Target) -> String {
        let host = match (&t.host, t.hostaddr) {
            (HostKind::Tcp(h), _) => h.clone(),
            (HostKind::Unix(p), _) => p.display().to_string(),
            (HostKind::None, Some(ip)) => ip.to_string(),
            (HostKind::None, None) => "localhost".to_string(),
        };
        format!("{host}:{}", t.port)
    }

    fn libpq_env(&self) -> Vec<(&'static str, String)> {
        let join = |f: &dyn Fn(&Target) -> String| {
            self.targets.iter().map(f).collect::<Vec<_>>().join(",")
        };
        let mut env = vec![
            (
                "PGHOST",
                join(&|t| match &t.host {
                    HostKind::Tcp(h) => h.clone(),
                    HostKind::Unix(p) => p.display().to_string(),
                    HostKind::None => String::new(),
                }),
            ),
            ("PGPORT", join(&|t| t.port.to_string())),
            ("PGUSER", self.user.clone()),
            ("PGDATABASE", self.dbname.clone()),
            ("PGSSLMODE", self.tls.mode.as_str().to_string()),
        ];
        if self.targets.iter().any(|t| t.hostaddr.is_some()) {
            env.push((
                "PGHOSTADDR",
                join(&|t| t.hostaddr.map(|a| a.to_string()).unwrap_or_default()),
            ));
        }
        if let Some(p) = &self.password {
            env.push(("PGPASSWORD", p.expose().to_string()));
        }
        if let Some(f) = &self.passfile {
            env.push(("PGPASSFILE", f.display().to_string()));
        }
        match &self.tls.rootcert {
            Some(RootCert::File(p)) => env.push(("PGSSLROOTCERT", p.display().to_string())),
            Some(RootCert::System) => env.push(("PGSSLROOTCERT", "system".to_string())),
            None => {}
        }
        for (var, path) in [
            ("PGSSLCERT", &self.tls.cert),
            ("PGSSLKEY", &self.tls.key),
            ("PGSSLCRL", &self.tls.crl),
        ] {
            if let Some(p) = path {
                env.push((var, p.display().to_string()));
            }
        }
        if let Some(o) = &self.options {
            env.push(("PGOPTIONS", o.clone()));
        }
        if let Some(t) = self.connect_timeout {
            env.push(("PGCONNECT_TIMEOUT", t.as_secs().max(2).to_string()));
        }
        env
    }

    /// The password for a connection to `target`: `--password-command` if set, else the
    /// configured password, else the password file.
    pub(crate) async fn password_for(&self, target: &Target) -> Result<Option<Secret>, DbError> {
        if let Some(cmd) = &self.password_command {
            return connect::run_password_command(cmd)
                .await
                .map(|p| Some(Secret(p)));
        }
        if let Some(p) = &self.password {
            return Ok(Some(p.clone()));
        }
        let Some(file) = &self.passfile else {
            return Ok(None);
        };
        let (host, unix) = match (&target.host, target.hostaddr) {
            (HostKind::Tcp(h), _) => (h.clone(), false),
            (HostKind::Unix(p), _) => (p.display().to_string(), true),
            (HostKind::None, Some(ip)) => (ip.to_string(), false),
            (HostKind::None, None) => ("localhost".to_string(), false),
        };
        let key = pgpass::Key {
            host: &host,
            unix_socket: unix,
            port: target.port,
            dbname: &self.dbname,
            user: &self.user,
        };
        Ok(pgpass::lookup(file, &key).map(|found| {
            tracing::debug!(target: "db", "password from {}:{}", file.display(), found.line);
            Secret(found.password)
        }))
    }

    fn application_name(&self, purpose: &str) -> String {
        let full = match &self.application_name {
            Some(user) => format!("cutover/{purpose} ({user})"),
            None => format!("cutover/{purpose}"),
        };
        let mut out = String::new();
        for c in full.chars() {
            if out.len() + c.len_utf8() > 63 {
                break;
            }
            out.push(c);
        }
        out
    }
}

fn conninfo_is_url(text: &str) -> bool {
    let t = text.trim_start();
    t.starts_with("postgres://") || t.starts_with("postgresql://")
}

/// Turns resolved keyword values into a [`DbConfig`]; errors name the setting and where it
/// came from, and never quote a password.
struct Resolver<'a> {
    params: Params,
    env: &'a Env,
}

impl Resolver<'_> {
    fn bad(&self, key: &str, message: impl Into<String>) -> DbError {
        let origin = self
            .params
            .entry(key)
            .map(|(_, o)| format!(" (from {o})"))
            .unwrap_or_default();
        DbError::InvalidConfig {
            what: format!("{key}{origin}"),
            message: message.into(),
        }
    }

    /// The value for an error message: not for passwords, nor for URL parts (an unencoded
    /// password can end up in the host or port of a URL).
    fn shown(&self, key: &str) -> String {
        match self.params.entry(key) {
            Some((_, Origin::Url)) | None => String::new(),
            Some(_) if key == "password" => String::new(),
            Some((v, _)) => format!(" `{}`", v.chars().take(80).collect::<String>()),
        }
    }

    fn get(&self, key: &str) -> Option<&str> {
        self.params.get(key)
    }

    fn home_file(&self, name: &str) -> Option<PathBuf> {
        self.env.home().map(|h| h.join(name))
    }

    fn finish(self) -> Result<Settings, DbError> {
        let targets = self.targets()?;
        let user = self.get("user").map(str::to_string).unwrap_or_else(os_user);
        let dbname = self
            .get("dbname")
            .map(str::to_string)
            .unwrap_or_else(|| user.clone());
        let connect_timeout = match self.get("connect_timeout") {
            None => Some(DEFAULT_CONNECT_TIMEOUT),
            Some(v) => match v.trim().parse::<i64>() {
                Ok(n) if n <= 0 => None,
                Ok(n) => Some(Duration::from_secs(n.max(2) as u64)),
                Err(_) => {
                    return Err(self.bad(
                        "connect_timeout",
                        format!(
                            "{} is not a whole number of seconds",
                            self.shown_or("connect_timeout", "the value")
                        ),
                    ))
                }
            },
        };
        let keepalives = Keepalives {
            enabled: self.flag("keepalives", true)?,
            idle: Duration::from_secs(self.number("keepalives_idle", 30)?),
            interval: Duration::from_secs(self.number("keepalives_interval", 10)?),
            count: u32::try_from(self.number("keepalives_count", 3)?)
                .map_err(|_| self.bad("keepalives_count", "too large"))?,
        };
        let tcp_user_timeout = match self.get("tcp_user_timeout") {
            None => None,
            Some(_) => Some(Duration::from_millis(self.number("tcp_user_timeout", 0)?))
                .filter(|d| !d.is_zero()),
        };
        let channel_binding = match self.get("channel_binding") {
            None | Some("prefer") => ChannelBinding::Prefer,
            Some("disable") => ChannelBinding::Disable,
            Some("require") => ChannelBinding::Require,
            Some(_) => {
                return Err(self.bad(
                    "channel_binding",
                    format!(
                        "{} is not disable, prefer or require",
                        self.shown_or("channel_binding", "the value")
                    ),
                ))
            }
        };
        match self.get("gssencmode") {
            None | Some("disable") | Some("prefer") => {}
            Some("require") => {
                return Err(self.bad(
                    "gssencmode",
                    "GSSAPI encryption is not supported; use TLS (sslmode)",
                ))
            }
            Some(_) => return Err(self.bad("gssencmode", "expected disable, prefer or require")),
        }
        let target_session_attrs = match self.get("target_session_attrs") {
            None | Some("any") => SessionAttrs::Any,
            Some("read-write") => SessionAttrs::ReadWrite,
            Some("read-only") => SessionAttrs::ReadOnly,
            Some("primary") => SessionAttrs::Primary,
            Some("standby") => SessionAttrs::Standby,
            Some(_) => {
                return Err(self.bad(
                    "target_session_attrs",
                    "expected any, read-write, read-only, primary or standby",
                ))
            }
        };
        let passfile = self
            .get("passfile")
            .map(PathBuf::from)
            .or_else(|| self.home_file(".pgpass"));
        Ok(Settings {
            targets,
            password: self.get("password").map(|p| Secret(p.to_string())),
            dbname,
            options: self.get("options").map(str::to_string),
            application_name: self.get("application_name").map(str::to_string),
            tls: self.tls()?,
            channel_binding,
            connect_timeout,
            keepalives,
            tcp_user_timeout,
            passfile,
            target_session_attrs,
            password_command: None,
            user,
        })
    }

    fn shown_or(&self, key: &str, fallback: &str) -> String {
        let s = self.shown(key);
        if s.is_empty() {
            fallback.to_string()
        } else {
            s.trim_start().to_string()
        }
    }

    fn flag(&self, key: &str, default: bool) -> Result<bool, DbError> {
        match self.get(key) {
            None => Ok(default),
            Some("1") => Ok(true),
            Some("0") => Ok(false),
            Some(_) => Err(self.bad(key, "expected 0 or 1")),
        }
    }

    fn number(&self, key: &str, default: u64) -> Result<u64, DbError> {
        match self.get(key) {
            None => Ok(default),
            Some(v) => v
                .trim()
                .parse::<u64>()
                .map_err(|_| self.bad(key, "expected a non-negative whole number")),
        }
    }

    fn targets(&self) -> Result<Vec<Target>, DbError> {
        let split = |key: &str| -> Vec<String> {
            self.get(key)
                .map(|v| v.split(',').map(|s| s.trim().to_string()).collect())
                .unwrap_or_default()
        };
        let hosts = split("host");
        let addrs = split("hostaddr");
        let ports = split("port");
        let mut hostaddrs = Vec::with_capacity(addrs.len());
        for a in &addrs {
            if a.is_empty() {
                hostaddrs.push(None);
                continue;
            }
            let ip = a.parse::<IpAddr>().map_err(|_| {
                self.bad(
                    "hostaddr",
                    format!(
                        "{} is not an IP address",
                        self.shown_or("hostaddr", "the value")
                    ),
                )
            })?;
            hostaddrs.push(Some(ip));
        }
        if !hosts.is_empty() && !hostaddrs.is_empty() && hosts.len() != hostaddrs.len() {
            return Err(self.bad(
                "hostaddr",
                format!(
                    "lists {} addresses for {} hosts",
                    hostaddrs.len(),
                    hosts.len()
                ),
            ));
        }
        let count = hosts.len().max(hostaddrs.len()).max(1);
        if ports.len() > 1 && ports.len() != count {
            return Err(self.bad(
                "port",
                format!("lists {} ports for {count} hosts", ports.len()),
            ));
        }
        let mut parsed_ports = Vec::with_capacity(ports.len());
        for p in &ports {
            if p.is_empty() {
                parsed_ports.push(5432);
                continue;
            }
            match p.parse::<u16>() {
                Ok(n) if n > 0 => parsed_ports.push(n),
                _ => {
                    return Err(self.bad(
                        "port",
                        format!(
                            "{} is not a port number from 1 to 65535",
                            self.shown_or("port", "the value")
                        ),
                    ))
                }
            }
        }
        let mut targets = Vec::with_capacity(count);
        for i in 0..count {
            let port = match parsed_ports.len() {
                0 => 5432,
                1 => parsed_ports[0],
                _ => parsed_ports[i],
            };
            let hostaddr = hostaddrs.get(i).copied().flatten();
            let host = match hosts.get(i).map(String::as_str) {
                Some(h) if h.starts_with('/') => HostKind::Unix(PathBuf::from(h)),
                Some(h) if !h.is_empty() => HostKind::Tcp(h.to_string()),
                _ if hostaddr.is_some() => HostKind::None,
                _ => default_host(port),
            };
            targets.push(Target {
                host,
                hostaddr,
                port,
            });
        }
        Ok(targets)
    }

    fn tls(&self) -> Result<TlsSettings, DbError> {
        let rootcert = match self.get("sslrootcert") {
            Some("system") => Some(RootCert::System),
            Some(p) => Some(RootCert::File(PathBuf::from(p))),
            None => self
                .home_file(".postgresql/root.crt")
                .filter(|p| p.is_file())
                .map(RootCert::File),
        };
        let mode = match self.get("sslmode") {
            Some(v) => v.parse::<SslMode>().map_err(|m| self.bad("sslmode", m))?,
            None if rootcert == Some(RootCert::System) => SslMode::VerifyFull,
            None => SslMode::Prefer,
        };
        if rootcert == Some(RootCert::System) && mode != SslMode::VerifyFull {
            return Err(self.bad(
                "sslmode",
                format!("weak sslmode `{mode}` may not be used with sslrootcert=system (use verify-full)"),
            ));
        }
        if matches!(mode, SslMode::VerifyCa | SslMode::VerifyFull) && rootcert.is_none() {
            return Err(self.bad(
                "sslmode",
                format!(
                    "sslmode={mode} needs trusted CA certificates: set sslrootcert to a file (or \
                     to `system`), or create ~/.postgresql/root.crt; sslmode=require encrypts \
                     without verifying the server"
                ),
            ));
        }
        let cert = match self.get("sslcert") {
            Some(p) => Some(PathBuf::from(p)),
            None => self
                .home_file(".postgresql/postgresql.crt")
                .filter(|p| p.is_file()),
        };
        let key = match self.get("sslkey") {
            Some(p) => Some(PathBuf::from(p)),
            None if cert.is_some() => self.home_file(".postgresql/postgresql.key"),
            None => None,
        };
        let crl = match self.get("sslcrl") {
            Some(p) => Some(PathBuf::from(p)),
            None => self
                .home_file(".postgresql/root.crl")
                .filter(|p| p.is_file()),
        };
        Ok(TlsSettings {
            mode,
            rootcert,
            cert,
            key,
            crl,
            sni: self.flag("sslsni", true)?,
        })
    }
}

/// libpq's default server: the unix socket where the local server has one, else localhost.
fn default_host(port: u16) -> HostKind {
    for dir in ["/var/run/postgresql", "/tmp"] {
        if Path::new(dir).join(format!(".s.PGSQL.{port}")).exists() {
            return HostKind::Unix(PathBuf::from(dir));
        }
    }
    HostKind::Tcp("localhost".to_string())
}

/// The operating-system user running this process.
pub fn os_user() -> String {
    nix::unistd::User::from_uid(nix::unistd::geteuid())
        .ok()
        .flatten()
        .map(|u| u.name)
        .or_else(|| std::env::var("USER").ok().filter(|u| !u.is_empty()))
        .unwrap_or_else(|| "unknown".to_string())
}

/// This machine's host name.
pub fn host_name() -> String {
    nix::unistd::gethostname()
        .ok()
        .and_then(|h| h.into_string().ok())
        .unwrap_or_else(|| "unknown".to_string())
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

/// Like [`connect`], also telling how the connection is protected.
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
mod tests;
