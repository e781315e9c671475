//! Opening connections: every connection Cutover makes goes through [`open`], so each one gets
//! the same TLS, credentials, keepalives, time bound and count of its transactions
//! ([`super::tally`]: on the socket, and on the decrypted stream when encrypted).
//!
//! Per host (libpq's multi-host lists are tried in order), the whole startup — password
//! command, TCP connect, TLS negotiation and handshake, authentication and the first
//! statement — runs under `connect_timeout`; a time-out names the stage that hung.

use std::io;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};

use rustls_pki_types::ServerName;
use serde::Serialize;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::{TcpStream, UnixStream};
use tokio::sync::mpsc;
use tokio_postgres::config::SslMode as PgSslMode;
use tokio_postgres::{AsyncMessage, Client, Notification};

use super::error::{Stage, StageCell};
use super::tally::{self, Counting, Tallied, TallyingConnector};
use super::tls::{self, SslMode, TlsInfo, Verification};
use super::{DbError, HostKind, SessionAttrs, Settings, Target};

/// A TCP or unix-domain socket.
#[derive(Debug)]
enum RawSocket {
    Tcp(TcpStream),
    Unix(UnixStream),
}

/// The socket under a connection. While the SSL request is pending it watches the server's
/// one-byte answer, so a plaintext fallback (`prefer`) moves the stage on to authentication.
#[derive(Debug)]
pub(super) struct Socket {
    inner: RawSocket,
    stage: StageCell,
    watch_answer: bool,
}

impl AsyncRead for Socket {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let before = buf.filled().len();
        let this = &mut *self;
        let poll = match &mut this.inner {
            RawSocket::Tcp(s) => Pin::new(s).poll_read(cx, buf),
            RawSocket::Unix(s) => Pin::new(s).poll_read(cx, buf),
        };
        if this.watch_answer {
            if let Some(&answer) = buf.filled().get(before) {
                this.watch_answer = false;
                if answer != b'S' {
                    this.stage.set(Stage::Authentication);
                }
            }
        }
        poll
    }
}

impl AsyncWrite for Socket {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        match &mut self.inner {
            RawSocket::Tcp(s) => Pin::new(s).poll_write(cx, buf),
            RawSocket::Unix(s) => Pin::new(s).poll_write(cx, buf),
        }
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        match &mut self.inner {
            RawSocket::Tcp(s) => Pin::new(s).poll_flush(cx),
            RawSocket::Unix(s) => Pin::new(s).poll_flush(cx),
        }
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        match &mut self.inner {
            RawSocket::Tcp(s) => Pin::new(s).poll_shutdown(cx),
            RawSocket::Unix(s) => Pin::new(s).poll_shutdown(cx),
        }
    }
}

/// The counted socket under a connection.
type CountedSocket = Tallied<Socket>;

/// A connection's driver, as returned by tokio-postgres for our socket and TLS types.
pub(crate) type Connection =
    tokio_postgres::Connection<CountedSocket, Tallied<tls::TlsStream<CountedSocket>>>;

/// How a connection is protected: shown by `cutover status` and the TUI header.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ConnSecurity {
    /// `host:port`, or the unix-socket directory.
    pub server: String,
    /// True over a unix-domain socket (never encrypted, as in libpq).
    pub unix_socket: bool,
    /// The configured `sslmode`.
    pub sslmode: SslMode,
    /// The TLS session, when encrypted.
    pub tls: Option<TlsInfo>,
    /// What was checked about the server's certificate (`none` when not encrypted).
    pub verification: Verification,
    /// The host name the certificate was verified for (`verify-full` only).
    pub verified_host: Option<String>,
}

impl ConnSecurity {
    /// True when the connection is encrypted.
    pub fn encrypted(&self) -> bool {
        self.tls.is_some()
    }

    /// One line for people, e.g. `TLSv1.3 (TLS13_AES_256_GCM_SHA384), certificate verified
    /// for db.example` or `not encrypted (sslmode=prefer: the server offered no TLS)`.
    pub fn summary(&self) -> String {
        match &self.tls {
            None if self.unix_socket => "unix socket (not encrypted)".to_string(),
            None => match self.sslmode {
                SslMode::Disable => "not encrypted (sslmode=disable)".to_string(),
                SslMode::Allow => {
                    "not encrypted (sslmode=allow: the server accepted plaintext)".to_string()
                }
                m => format!("not encrypted (sslmode={m}: the server offered no TLS)"),
            },
            Some(t) => {
                let checked = match (&self.verification, &self.verified_host) {
                    (Verification::Full, Some(h)) => format!("certificate verified for {h}"),
                    (Verification::Full, None) | (Verification::Ca, _) => {
                        "CA verified, host name not checked".to_string()
                    }
                    (Verification::None, _) => "server certificate not verified".to_string(),
                };
                format!("{} ({}), {checked}", t.protocol, t.cipher)
            }
        }
    }
}

/// How the opened connection is driven.
pub(crate) enum Driver {
    /// Spawn the connection; log its end.
    Plain,
    /// Spawn the connection and forward notifications (`LISTEN`) to this channel; the channel
    /// closes when the connection ends.
    Listen(mpsc::UnboundedSender<Notification>),
}

/// Opens a connection with `application_name` and, if given, runs `first` as the first
/// statement (under the same time bound); its transactions are counted as `counting` says.
pub(crate) async fn open(
    cfg: &Settings,
    application_name: &str,
    first: Option<&str>,
    driver: &Driver,
    counting: Counting,
) -> Result<(Client, ConnSecurity), DbError> {
    let mut last = None;
    let count = cfg.targets.len();
    for (i, target) in cfg.targets.iter().enumerate() {
        let modes: &[PgSslMode] = match (&target.host, cfg.tls.mode) {
            (HostKind::Unix(_), _) | (_, SslMode::Disable) => &[PgSslMode::Disable],
            (_, SslMode::Allow) => &[PgSslMode::Disable, PgSslMode::Require],
            (_, SslMode::Prefer) => &[PgSslMode::Prefer],
            _ => &[PgSslMode::Require],
        };
        for (j, mode) in modes.iter().enumerate() {
            let how = Attempt {
                mode: *mode,
                application_name,
                first,
                driver,
                counting,
            };
            match attempt(cfg, target, &how).await {
                Ok(done) => return Ok(done),
                Err(e) => {
                    // `allow`: a server that refuses plaintext (pg_hba.conf class 28) gets TLS.
                    let refused = e.sqlstate().is_some_and(|c| c.code().starts_with("28"));
                    let retry = j + 1 < modes.len() && refused;
                    if !retry && i + 1 < count {
                        tracing::warn!(target: "db", "{e}; trying the next host");
                    }
                    last = Some(e);
                    if !retry {
                        break;
                    }
                }
            }
        }
    }
    Err(last.unwrap_or(DbError::NotConfigured))
}

/// How one host is tried.
struct Attempt<'a> {
    mode: PgSslMode,
    application_name: &'a str,
    first: Option<&'a str>,
    driver: &'a Driver,
    counting: Counting,
}

async fn attempt(
    cfg: &Settings,
    target: &Target,
    how: &Attempt<'_>,
) -> Result<(Client, ConnSecurity), DbError> {
    let stage = StageCell::new(if cfg.password_command.is_some() {
        Stage::PasswordCommand
    } else {
        Stage::Tcp
    });
    let outcome = Arc::new(Mutex::new(tls::Outcome::default()));
    let work = startup(cfg, target, how, &stage, &outcome);
    let result = match cfg.connect_timeout {
        Some(limit) => tokio::time::timeout(limit, work)
            .await
            .unwrap_or(Err(DbError::Timeout { after: limit })),
        None => work.await,
    };
    result.map_err(|cause| DbError::Connect {
        target: cfg.display_target(target),
        stage: stage.get(),
        cause: Box::new(cause),
    })
}

async fn startup(
    cfg: &Settings,
    target: &Target,
    how: &Attempt<'_>,
    stage: &StageCell,
    outcome: &Arc<Mutex<tls::Outcome>>,
) -> Result<(Client, ConnSecurity), DbError> {
    let mode = how.mode;
    let password = cfg.password_for(target).await?;
    stage.set(Stage::Tcp);
    let (raw, peer) = open_socket(cfg, target).await?;
    let encrypting = mode != PgSslMode::Disable;
    stage.set(if encrypting {
        Stage::TlsNegotiation
    } else {
        Stage::Authentication
    });
    let socket = Socket {
        inner: raw,
        stage: stage.clone(),
        watch_answer: mode == PgSslMode::Prefer,
    };
    let counters = (how.counting != Counting::Off)
        .then(|| tally::counters_at(cfg.server_key(target), || cfg.pinned(target)));
    let socket = Tallied::new(socket, counters.clone(), how.counting == Counting::On);
    let mut pg = tokio_postgres::Config::new();
    pg.user(&cfg.user)
        .dbname(&cfg.dbname)
        .application_name(how.application_name)
        .ssl_mode(mode)
        .channel_binding(cfg.channel_binding);
    if let Some(p) = &password {
        pg.password(p.expose());
    }
    if let Some(o) = &cfg.options {
        pg.options(o);
    }
    let server_name = server_name(cfg, target, peer)?;
    let tls_connector = tls::Connector {
        config: if encrypting {
            Some(cfg.tls.client_config()?)
        } else {
            None
        },
        server_name: server_name.clone(),
        settings: cfg.tls.clone(),
        stage: stage.clone(),
        outcome: outcome.clone(),
    };
    let connector = TallyingConnector::new(tls_connector, counters, how.counting);
    let (client, connection) = pg.connect_raw(socket, connector).await.map_err(|e| {
        let failure = outcome
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .failure
            .take();
        match failure {
            Some(reason) => DbError::Tls(reason),
            None => {
                let err = DbError::from(e);
                match (&err, stage.get()) {
                    (DbError::Query(_), Stage::TlsNegotiation) => DbError::Tls(format!(
                        "the server does not offer TLS, and sslmode={} requires it",
                        cfg.tls.mode
                    )),
                    (DbError::Query(_), Stage::Authentication) if password.is_none() => {
                        DbError::Query(
                            "the server asks for a password, and none is configured".into(),
                        )
                    }
                    _ => err,
                }
            }
        }
    })?;
    stage.set(Stage::FirstQuery);
    spawn_driver(connection, how.driver);
    if let Some(sql) = how.first {
        client.batch_execute(sql).await?;
    }
    check_session_attrs(&client, cfg.target_session_attrs).await?;
    let session = outcome
        .lock()
        .unwrap_or_else(|p| p.into_inner())
        .session
        .take();
    let verification = if session.is_some() {
        cfg.tls.verification()
    } else {
        Verification::None
    };
    Ok((
        client,
        ConnSecurity {
            server: cfg.display_server(target),
            unix_socket: matches!(target.host, HostKind::Unix(_)),
            sslmode: cfg.tls.mode,
            verified_host: (verification == Verification::Full)
                .then(|| server_name.to_str().into_owned()),
            tls: session,
            verification,
        },
    ))
}

/// The name the certificate is checked against: the host name (not `hostaddr`), else the
/// address connected to.
fn server_name(
    cfg: &Settings,
    target: &Target,
    peer: Option<SocketAddr>,
) -> Result<ServerName<'static>, DbError> {
    let fallback = || {
        let ip = target
            .hostaddr
            .or(peer.map(|p| p.ip()))
            .unwrap_or(std::net::IpAddr::V4(std::net::Ipv4Addr::LOCALHOST));
        ServerName::IpAddress(ip.into())
    };
    match &target.host {
        HostKind::Tcp(h) => match ServerName::try_from(h.clone()) {
            Ok(n) => Ok(n),
            Err(_) if cfg.tls.mode != SslMode::VerifyFull => Ok(fallback()),
            Err(e) => Err(DbError::Tls(format!(
                "host name `{h}` cannot be verified against a certificate: {e}"
            ))),
        },
        _ => Ok(fallback()),
    }
}

fn spawn_driver(connection: Connection, driver: &Driver) {
    match driver {
        Driver::Plain => {
            tokio::spawn(async move {
                if let Err(e) = connection.await {
                    tracing::debug!(target: "db", "connection closed: {e}");
                }
            });
        }
        Driver::Listen(tx) => {
            let tx = tx.clone();
            let mut connection = connection;
            tokio::spawn(async move {
                use futures::StreamExt;
                let mut messages = futures::stream::poll_fn(move |cx| connection.poll_message(cx));
                while let Some(msg) = messages.next().await {
                    match msg {
                        Ok(AsyncMessage::Notification(n)) => {
                            if tx.send(n).is_err() {
                                break;
                            }
                        }
                        Ok(_) => {}
                        Err(e) => {
                            tracing::debug!(target: "db", "listening connection ended: {e}");
                            break;
                        }
                    }
                }
            });
        }
    }
}

async fn open_socket(
    cfg: &Settings,
    target: &Target,
) -> Result<(RawSocket, Option<SocketAddr>), DbError> {
    if let HostKind::Unix(dir) = &target.host {
        let path = dir.join(format!(".s.PGSQL.{}", target.port));
        return UnixStream::connect(&path)
            .await
            .map(|s| (RawSocket::Unix(s), None))
            .map_err(|e| DbError::Network(format!("unix socket {}: {e}", path.display())));
    }
    let addrs: Vec<SocketAddr> = match (target.hostaddr, &target.host) {
        (Some(ip), _) => vec![SocketAddr::new(ip, target.port)],
        (None, HostKind::Tcp(h)) => tokio::net::lookup_host((h.as_str(), target.port))
            .await
            .map_err(|e| {
                DbError::Network(format!(
                    "could not translate host name `{h}` to an address: {e}"
                ))
            })?
            .collect(),
        (None, _) => Vec::new(),
    };
    let mut last = None;
    for addr in addrs {
        match TcpStream::connect(addr).await {
            Ok(stream) => {
                configure_tcp(cfg, &stream);
                return Ok((RawSocket::Tcp(stream), Some(addr)));
            }
            Err(e) => last = Some(format!("{addr}: {e}")),
        }
    }
    Err(DbError::Network(last.unwrap_or_else(|| {
        "the host name has no address".to_string()
    })))
}

/// TCP_NODELAY, keepalives and `tcp_user_timeout`; failures are logged, not fatal.
fn configure_tcp(cfg: &Settings, stream: &TcpStream) {
    if let Err(e) = stream.set_nodelay(true) {
        tracing::debug!(target: "db", "TCP_NODELAY: {e}");
    }
    let sock = socket2::SockRef::from(stream);
    if cfg.keepalives.enabled {
        let mut ka = socket2::TcpKeepalive::new().with_time(cfg.keepalives.idle);
        ka = ka.with_interval(cfg.keepalives.interval);
        ka = ka.with_retries(cfg.keepalives.count);
        if let Err(e) = sock.set_tcp_keepalive(&ka) {
            tracing::debug!(target: "db", "TCP keepalives: {e}");
        }
    }
    if let Some(t) = cfg.tcp_user_timeout {
        if let Err(e) = sock.set_tcp_user_timeout(Some(t)) {
            tracing::debug!(target: "db", "TCP_USER_TIMEOUT: {e}");
        }
    }
}

/// libpq's `target_session_attrs`: rejects a server of the wrong kind.
async fn check_session_attrs(client: &Client, attrs: SessionAttrs) -> Result<(), DbError> {
    if attrs == SessionAttrs::Any {
        return Ok(());
    }
    let row = client
        .query_one(
            "SELECT pg_is_in_recovery() AS standby,
                    current_setting('transaction_read_only') = 'on' AS read_only",
            &[],
        )
        .await?;
    let (standby, read_only): (bool, bool) = (row.get("standby"), row.get("read_only"));
    let ok = match attrs {
        SessionAttrs::Any => true,
        SessionAttrs::ReadWrite => !read_only,
        SessionAttrs::ReadOnly => read_only,
        SessionAttrs::Primary => !standby,
        SessionAttrs::Standby => standby,
    };
    if ok {
        Ok(())
    } else {
        Err(DbError::Query(format!(
            "the server does not match target_session_attrs={} (in recovery: {standby}, read-only: {read_only})",
            attrs.as_str()
        )))
    }
}

/// Runs `--password-command` (`sh -c`), returning its standard output without the trailing
/// newline. Neither its output nor its error stream is ever shown.
pub(crate) async fn run_password_command(command: &str) -> Result<String, DbError> {
    let output = tokio::process::Command::new("/bin/sh")
        .arg("-c")
        .arg(command)
        .stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::null())
        .kill_on_drop(true)
        .output()
        .await
        .map_err(|e| DbError::PasswordCommand(format!("cannot run /bin/sh: {e}")))?;
    if !output.status.success() {
        return Err(DbError::PasswordCommand(format!(
            "{} (its output is not shown: run it by hand to see its messages)",
            output.status
        )));
    }
    let mut text = String::from_utf8(output.stdout)
        .map_err(|_| DbError::PasswordCommand("it printed text that is not UTF-8".into()))?;
    if text.ends_with('\n') {
        text.pop();
        if text.ends_with('\r') {
            text.pop();
        }
    }
    if text.is_empty() {
        return Err(DbError::PasswordCommand("it printed nothing".into()));
    }
    Ok(text)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn password_command_output_and_failures() {
        assert_eq!(run_password_command("printf 'pw\\n'").await.unwrap(), "pw");
        assert_eq!(
            run_password_command("printf 'a b\\r\\n'").await.unwrap(),
            "a b"
        );
        let e = run_password_command("echo SeCrEt; echo oops >&2; exit 3")
            .await
            .unwrap_err()
            .to_string();
        assert!(e.contains("exit status: 3"), "{e}");
        assert!(!e.contains("SeCrEt") && !e.contains("oops"), "{e}");
        let e = run_password_command("true").await.unwrap_err().to_string();
        assert!(e.contains("printed nothing"), "{e}");
    }
}
