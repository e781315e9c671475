//! The resolved settings of a connection: its servers, credentials, TLS, time bounds and
//! keepalives, and what follows from them (the masked display, the libpq environment for child
//! processes, the password for one server).

use std::fmt;
use std::net::IpAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use tokio_postgres::config::ChannelBinding;

use super::tls::{RootCert, TlsSettings};
use super::{connect, pgpass, DbConfig, DbError};

/// A password: never printed, not even by `Debug`.
#[derive(Clone)]
pub(crate) struct Secret(pub(super) String);

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

impl Target {
    /// The server's name as libpq matches it in `.pgpass` and Cutover shows it: the host, the
    /// socket directory, else the address, else `localhost`.
    fn host_text(&self) -> String {
        match (&self.host, self.hostaddr) {
            (HostKind::Tcp(h), _) => h.clone(),
            (HostKind::Unix(p), _) => p.display().to_string(),
            (HostKind::None, Some(ip)) => ip.to_string(),
            (HostKind::None, None) => "localhost".to_string(),
        }
    }
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

/// The resolved settings behind a [`DbConfig`].
#[derive(Clone)]
pub(crate) struct Settings {
    pub(crate) targets: Vec<Target>,
    pub(crate) user: String,
    pub(super) password: Option<Secret>,
    pub(crate) dbname: String,
    pub(crate) options: Option<String>,
    pub(super) application_name: Option<String>,
    pub(crate) tls: TlsSettings,
    pub(crate) channel_binding: ChannelBinding,
    pub(crate) connect_timeout: Option<Duration>,
    pub(crate) keepalives: Keepalives,
    pub(crate) tcp_user_timeout: Option<Duration>,
    pub(super) passfile: Option<PathBuf>,
    pub(crate) target_session_attrs: SessionAttrs,
    pub(crate) password_command: Option<String>,
}

impl Settings {
    pub(super) fn display(&self) -> String {
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
        format!("{}:{}", t.host_text(), t.port)
    }

    pub(super) fn libpq_env(&self) -> Vec<(&'static str, String)> {
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
        let key = pgpass::Key {
            host: &target.host_text(),
            unix_socket: matches!(target.host, HostKind::Unix(_)),
            port: target.port,
            dbname: &self.dbname,
            user: &self.user,
        };
        Ok(pgpass::lookup(file, &key).map(|found| {
            tracing::debug!(target: "db", "password from {}:{}", file.display(), found.line);
            Secret(found.password)
        }))
    }

    pub(super) fn application_name(&self, purpose: &str) -> String {
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
