//! Database errors as types: the server's SQLSTATE, message, detail and hint are kept as fields,
//! and callers classify errors by code ([`DbError::is_connection_lost`], …), never by text.

use std::fmt;
use std::sync::atomic::{AtomicU8, Ordering};
use std::sync::Arc;
use std::time::Duration;

use tokio_postgres::error::SqlState;

/// A step of opening a connection, named in errors (and in time-outs: the step that hung).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Stage {
    /// Running `--password-command`.
    PasswordCommand,
    /// Resolving the host name and opening the TCP connection (or the unix socket).
    Tcp,
    /// Sending the SSL request and waiting for the server's answer.
    TlsNegotiation,
    /// The TLS handshake, including certificate verification.
    TlsHandshake,
    /// The startup message and authentication.
    Authentication,
    /// The first statement of the session (`SET statement_timeout …`).
    FirstQuery,
}

impl Stage {
    /// Lower-case words for messages ("TLS handshake").
    pub fn as_str(self) -> &'static str {
        match self {
            Stage::PasswordCommand => "the password command",
            Stage::Tcp => "TCP connect",
            Stage::TlsNegotiation => "TLS negotiation",
            Stage::TlsHandshake => "TLS handshake",
            Stage::Authentication => "authentication",
            Stage::FirstQuery => "first query",
        }
    }

    pub(crate) fn from_u8(v: u8) -> Stage {
        match v {
            0 => Stage::PasswordCommand,
            1 => Stage::Tcp,
            2 => Stage::TlsNegotiation,
            3 => Stage::TlsHandshake,
            4 => Stage::Authentication,
            _ => Stage::FirstQuery,
        }
    }

    pub(crate) fn as_u8(self) -> u8 {
        match self {
            Stage::PasswordCommand => 0,
            Stage::Tcp => 1,
            Stage::TlsNegotiation => 2,
            Stage::TlsHandshake => 3,
            Stage::Authentication => 4,
            Stage::FirstQuery => 5,
        }
    }

    /// What to check when this stage hangs.
    fn timeout_hint(self) -> &'static str {
        match self {
            Stage::PasswordCommand => {
                "--password-command / CUTOVER_PASSWORD_COMMAND did not finish"
            }
            Stage::Tcp => "check host, port and firewalls",
            Stage::TlsNegotiation => {
                "the server accepted the TCP connection but did not answer the SSL request: \
                 is a PostgreSQL server (or pooler) listening on that port?"
            }
            Stage::TlsHandshake => "the server did not complete the TLS handshake",
            Stage::Authentication => {
                "the server did not complete the login: check pg_hba.conf, or a pooler waiting \
                 for a server connection"
            }
            Stage::FirstQuery => {
                "the login succeeded but the first statement got no answer: is the server \
                 overloaded, or a pooler out of server connections?"
            }
        }
    }
}

/// The stage a connection attempt is in, shared with the socket and the TLS connector.
#[derive(Clone, Debug)]
pub(crate) struct StageCell(Arc<AtomicU8>);

impl StageCell {
    pub(crate) fn new(stage: Stage) -> StageCell {
        StageCell(Arc::new(AtomicU8::new(stage.as_u8())))
    }

    pub(crate) fn set(&self, stage: Stage) {
        self.0.store(stage.as_u8(), Ordering::SeqCst);
    }

    pub(crate) fn get(&self) -> Stage {
        Stage::from_u8(self.0.load(Ordering::SeqCst))
    }
}

impl fmt::Display for Stage {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Errors opening, configuring or using a connection.
#[derive(Debug, thiserror::Error)]
pub enum DbError {
    /// No server was configured.
    #[error(
        "no database configured: pass --database-url, set DATABASE_URL, or set PGHOST/PGDATABASE/PGSERVICE"
    )]
    NotConfigured,
    /// A connection setting is malformed (the message never contains a password).
    #[error("invalid connection setting {what}: {message}")]
    InvalidConfig {
        /// Which setting, and where it came from.
        what: String,
        /// Why.
        message: String,
    },
    /// Opening a connection failed at `stage`.
    #[error("{}", render_connect(target, *stage, cause))]
    Connect {
        /// Masked description of the server.
        target: String,
        /// The step that failed.
        stage: Stage,
        /// Why.
        cause: Box<DbError>,
    },
    /// A step took longer than the connect timeout (a cause inside [`DbError::Connect`]).
    #[error("timed out after {}", humantime::format_duration(*after))]
    Timeout {
        /// The connect timeout.
        after: Duration,
    },
    /// TLS could not be set up: a certificate file, the handshake, or verification.
    #[error("{0}")]
    Tls(String),
    /// `--password-command` failed (its output is never included).
    #[error("{0}")]
    PasswordCommand(String),
    /// The server reported an error.
    #[error("{}", render_server(message, code, detail.as_deref(), hint.as_deref(), where_.as_deref()))]
    Server {
        /// SQLSTATE.
        code: SqlState,
        /// The primary message.
        message: String,
        /// DETAIL, if any.
        detail: Option<String>,
        /// HINT, if any.
        hint: Option<String>,
        /// CONTEXT (where), if any.
        where_: Option<String>,
    },
    /// The connection is closed or broke (I/O error).
    #[error("connection lost: {0}")]
    Closed(String),
    /// The server could not be reached (name resolution, refused or unreachable socket).
    #[error("{0}")]
    Network(String),
    /// Any other failure (client-side conversion errors, unexpected results, …).
    #[error("{0}")]
    Query(String),
}

fn render_server(
    message: &str,
    code: &SqlState,
    detail: Option<&str>,
    hint: Option<&str>,
    where_: Option<&str>,
) -> String {
    let mut s = format!("{message} [SQLSTATE {}]", code.code());
    if let Some(d) = detail {
        s.push_str(&format!("; detail: {d}"));
    }
    if let Some(h) = hint {
        s.push_str(&format!("; hint: {h}"));
    }
    if let Some(w) = where_ {
        s.push_str(&format!("; where: {w}"));
    }
    s
}

fn render_connect(target: &str, stage: Stage, cause: &DbError) -> String {
    match cause {
        DbError::Timeout { after } => format!(
            "cannot connect to {target}: timed out after {} during {stage} ({})",
            humantime::format_duration(*after),
            stage.timeout_hint()
        ),
        other => {
            let hint = connect_hint(stage, other);
            format!("cannot connect to {target}: {stage} failed: {other}{hint}")
        }
    }
}

/// A hint for a failed connection attempt, chosen by SQLSTATE and stage.
fn connect_hint(stage: Stage, cause: &DbError) -> &'static str {
    if let Some(code) = cause.sqlstate() {
        return match code.code() {
            "28P01" => {
                " (check the user and password: the URL, PGPASSWORD, .pgpass, the service file \
                 or --password-command)"
            }
            "28000" => {
                " (the server refused this role, database, address or encryption: check the role \
                 and pg_hba.conf)"
            }
            "3D000" => " (create the database first, or pick another with PGDATABASE / the URL)",
            "57P03" => " (the server is starting up or shutting down; retry in a moment)",
            "53300" => " (the server has no free connection slots)",
            _ => "",
        };
    }
    match (stage, cause) {
        (Stage::Authentication, DbError::Query(_)) => {
            " (give the password in the URL, PGPASSWORD, ~/.pgpass, a service file or \
             --password-command)"
        }
        (Stage::Tcp, DbError::Network(_)) => {
            " (check the host and port, and that PostgreSQL runs there; or unset DATABASE_URL to \
             let Cutover use a throwaway cluster)"
        }
        _ => "",
    }
}

impl DbError {
    /// The SQLSTATE the server sent, if this error (or its cause) came from the server.
    pub fn sqlstate(&self) -> Option<&SqlState> {
        match self {
            DbError::Server { code, .. } => Some(code),
            DbError::Connect { cause, .. } => cause.sqlstate(),
            _ => None,
        }
    }

    /// True when the connection is gone or could not be made for a reason that a retry may
    /// fix: SQLSTATE class 08, 57P01 admin shutdown, 57P02 crash shutdown, 57P03 cannot connect
    /// now, 57P05 idle session timeout, a closed connection, an I/O error or a time-out.
    /// False for a refused login (wrong password, no such database) and bad settings.
    pub fn is_connection_lost(&self) -> bool {
        match self {
            DbError::Closed(_) | DbError::Network(_) | DbError::Timeout { .. } => true,
            DbError::Server { code, .. } => {
                let c = code.code();
                c.starts_with("08") || matches!(c, "57P01" | "57P02" | "57P03" | "57P05")
            }
            DbError::Connect { cause, .. } => cause.is_connection_lost(),
            _ => false,
        }
    }

    /// 55P03 lock_not_available (`lock_timeout` expired, or `NOWAIT`).
    pub fn is_lock_timeout(&self) -> bool {
        self.sqlstate() == Some(&SqlState::LOCK_NOT_AVAILABLE)
    }

    /// 40001 serialization_failure or 40P01 deadlock_detected: retry the transaction.
    pub fn is_serialization(&self) -> bool {
        matches!(
            self.sqlstate(),
            Some(c) if *c == SqlState::T_R_SERIALIZATION_FAILURE || *c == SqlState::T_R_DEADLOCK_DETECTED
        )
    }

    /// 57014 query_canceled (`statement_timeout` expired, or a cancel request).
    pub fn is_statement_timeout(&self) -> bool {
        self.sqlstate() == Some(&SqlState::QUERY_CANCELED)
    }

    /// Converts without consuming (for callers holding a reference).
    pub fn from_ref(e: &tokio_postgres::Error) -> DbError {
        if let Some(db) = e.as_db_error() {
            return DbError::Server {
                code: db.code().clone(),
                message: db.message().to_string(),
                detail: db.detail().map(str::to_string),
                hint: db.hint().map(str::to_string),
                where_: db.where_().map(str::to_string),
            };
        }
        let text = describe_error(e);
        if e.is_closed() || has_io_source(e) {
            DbError::Closed(text)
        } else {
            DbError::Query(text)
        }
    }
}

fn has_io_source(e: &tokio_postgres::Error) -> bool {
    let mut source = std::error::Error::source(e);
    while let Some(inner) = source {
        if inner.is::<std::io::Error>() {
            return true;
        }
        source = inner.source();
    }
    false
}

impl From<tokio_postgres::Error> for DbError {
    fn from(e: tokio_postgres::Error) -> Self {
        DbError::from_ref(&e)
    }
}

/// A one-line description of a PostgreSQL error: message, SQLSTATE, detail, hint, where.
pub fn describe_error(e: &tokio_postgres::Error) -> String {
    match e.as_db_error() {
        Some(db) => render_server(db.message(), db.code(), db.detail(), db.hint(), db.where_()),
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

#[cfg(test)]
mod tests {
    use super::*;

    fn server(code: &str) -> DbError {
        DbError::Server {
            code: SqlState::from_code(code),
            message: "m".into(),
            detail: Some("d".into()),
            hint: None,
            where_: None,
        }
    }

    #[test]
    fn classification_uses_the_code() {
        for c in ["08006", "08001", "57P01", "57P02", "57P03"] {
            assert!(server(c).is_connection_lost(), "{c}");
        }
        for c in ["57014", "55P03", "40001", "23505", "28P01"] {
            assert!(!server(c).is_connection_lost(), "{c}");
        }
        assert!(server("55P03").is_lock_timeout());
        assert!(server("40001").is_serialization());
        assert!(server("40P01").is_serialization());
        assert!(!server("23505").is_serialization());
        assert!(server("57014").is_statement_timeout());
        assert!(DbError::Closed("x".into()).is_connection_lost());
        assert!(!DbError::Query("sqlstate 08006".into()).is_connection_lost());
        let wrapped = DbError::Connect {
            target: "t".into(),
            stage: Stage::Authentication,
            cause: Box::new(server("28P01")),
        };
        assert_eq!(wrapped.sqlstate().map(|c| c.code()), Some("28P01"));
        assert!(!wrapped.is_connection_lost());
        let hung = DbError::Connect {
            target: "t".into(),
            stage: Stage::TlsNegotiation,
            cause: Box::new(DbError::Timeout {
                after: Duration::from_secs(10),
            }),
        };
        assert!(hung.is_connection_lost());
        let text = hung.to_string();
        assert!(
            text.contains("timed out after 10s during TLS negotiation"),
            "{text}"
        );
    }

    #[test]
    fn server_errors_render_like_before() {
        assert_eq!(server("23505").to_string(), "m [SQLSTATE 23505]; detail: d");
    }
}
