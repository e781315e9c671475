//! Turning keyword values gathered from the connection string, the service file and the
//! environment into [`Settings`], checked the way libpq checks them.

use std::net::IpAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use tokio_postgres::config::ChannelBinding;

use super::conninfo::{Origin, Params};
use super::env::{os_user, Env};
use super::settings::{HostKind, Keepalives, Secret, SessionAttrs, Settings, Target};
use super::tls::{RootCert, SslMode, TlsSettings};
use super::{DbError, DEFAULT_CONNECT_TIMEOUT};

/// Turns resolved keyword values into a [`super::DbConfig`]; errors name the setting and where it
/// came from, and never quote a password.
pub(super) struct Resolver<'a> {
    pub(super) params: Params,
    pub(super) env: &'a Env,
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

    /// The value for an error message, quoted; "the value" for a password or a URL part (an
    /// unencoded password can end up in the host or port of a URL).
    fn shown(&self, key: &str) -> String {
        match self.params.entry(key) {
            Some((v, origin)) if key != "password" && *origin != Origin::Url => {
                format!("`{}`", v.chars().take(80).collect::<String>())
            }
            _ => "the value".to_string(),
        }
    }

    fn get(&self, key: &str) -> Option<&str> {
        self.params.get(key)
    }

    fn home_file(&self, name: &str) -> Option<PathBuf> {
        self.env.home().map(|h| h.join(name))
    }

    pub(super) fn finish(self) -> Result<Settings, DbError> {
        let targets = self.targets()?;
        let connect_timeout = self.connect_timeout()?;
        let keepalives = self.keepalives()?;
        let tcp_user_timeout = self.tcp_user_timeout()?;
        let user = self.get("user").map(str::to_string).unwrap_or_else(os_user);
        let dbname = self
            .get("dbname")
            .map(str::to_string)
            .unwrap_or_else(|| user.clone());
        use ChannelBinding as Cb;
        let channel_binding = self.choice(
            "channel_binding",
            Cb::Prefer,
            &[
                ("disable", Cb::Disable),
                ("prefer", Cb::Prefer),
                ("require", Cb::Require),
            ],
        )?;
        if self.choice(
            "gssencmode",
            false,
            &[("disable", false), ("prefer", false), ("require", true)],
        )? {
            return Err(self.bad(
                "gssencmode",
                "GSSAPI encryption is not supported; use TLS (sslmode)",
            ));
        }
        use SessionAttrs as Sa;
        let target_session_attrs = self.choice(
            "target_session_attrs",
            Sa::Any,
            &[
                Sa::Any,
                Sa::ReadWrite,
                Sa::ReadOnly,
                Sa::Primary,
                Sa::Standby,
            ]
            .map(|a| (a.as_str(), a)),
        )?;
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

    /// libpq's `connect_timeout`: unset is Cutover's default, zero or less is no limit, and
    /// anything shorter than 2 s is 2 s.
    fn connect_timeout(&self) -> Result<Option<Duration>, DbError> {
        let Some(v) = self.get("connect_timeout") else {
            return Ok(Some(DEFAULT_CONNECT_TIMEOUT));
        };
        match v.trim().parse::<i64>() {
            Ok(n) if n <= 0 => Ok(None),
            Ok(n) => Ok(Some(Duration::from_secs(n.max(2).unsigned_abs()))),
            Err(_) => Err(self.bad(
                "connect_timeout",
                format!(
                    "{} is not a whole number of seconds",
                    self.shown("connect_timeout")
                ),
            )),
        }
    }

    fn keepalives(&self) -> Result<Keepalives, DbError> {
        Ok(Keepalives {
            enabled: self.flag("keepalives", true)?,
            idle: Duration::from_secs(self.number("keepalives_idle", 30)?),
            interval: Duration::from_secs(self.number("keepalives_interval", 10)?),
            count: u32::try_from(self.number("keepalives_count", 3)?)
                .map_err(|_| self.bad("keepalives_count", "too large"))?,
        })
    }

    /// libpq's `tcp_user_timeout`, in milliseconds; zero is the system default.
    fn tcp_user_timeout(&self) -> Result<Option<Duration>, DbError> {
        Ok(
            Some(Duration::from_millis(self.number("tcp_user_timeout", 0)?))
                .filter(|d| !d.is_zero()),
        )
    }

    /// One of the words in `options`, or `default` when unset.
    fn choice<T: Copy>(&self, key: &str, default: T, options: &[(&str, T)]) -> Result<T, DbError> {
        let Some(v) = self.get(key) else {
            return Ok(default);
        };
        match options.iter().find(|(word, _)| *word == v) {
            Some((_, t)) => Ok(*t),
            None => {
                let words: Vec<&str> = options.iter().map(|(w, _)| *w).collect();
                let list = match words.split_last() {
                    Some((last, rest)) if !rest.is_empty() => {
                        format!("{} or {last}", rest.join(", "))
                    }
                    _ => words.concat(),
                };
                Err(self.bad(key, format!("{} is not {list}", self.shown(key))))
            }
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
                    format!("{} is not an IP address", self.shown("hostaddr")),
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
                            self.shown("port")
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
            Some(v) => v
                .parse::<SslMode>()
                .map_err(|m| self.bad("sslmode", m.to_string()))?,
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
