//! Cutover's own transactions, counted on the wire.
//!
//! `pg_stat_database` counts every transaction of a database, Cutover's included, and
//! PostgreSQL 15 keeps no per-session transaction counters. So every connection [`super::connect`]
//! opens runs over a [`Tallied`] socket that reads the protocol in both directions and counts
//! the top-level transactions the server ends on it — commits, rollbacks, and deadlocks
//! reported to it — by PostgreSQL's own rules: the connection's startup transaction, each
//! simple query or Sync-terminated extended batch outside a block, explicit blocks (a
//! `COMMIT` whose tag is `ROLLBACK` rolled back; `ROLLBACK TO SAVEPOINT` ends nothing), errors,
//! and a block left open when the connection closes.
//!
//! The counts are process-wide, per database ([`Target`]). Each process records its counts in
//! `cutover.own_transactions` (every [`PERSIST_EVERY`] while they change, and at exit through
//! [`persist_dirty`]), so the error budget can leave out every Cutover process's transactions:
//! its own live counts plus the last recorded counts of the others.

use std::collections::{BTreeMap, HashMap, VecDeque};
use std::io;
use std::net::IpAddr;
use std::path::Path;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, AtomicI64, Ordering};
use std::sync::{Arc, Mutex, OnceLock};
use std::task::{Context, Poll};
use std::time::Duration;

use chrono::{DateTime, Utc};
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::{TcpStream, UnixStream};
use tokio_postgres::config::Host;
use tokio_postgres::tls::NoTlsStream;
use tokio_postgres::{Client, Config, Connection, NoTls};

use super::{quote_literal, DbConfig};

/// How often a process records its counts while they change.
pub const PERSIST_EVERY: Duration = Duration::from_secs(2);

/// Transactions ended by Cutover on one database.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Counts {
    /// Committed top-level transactions.
    pub commits: i64,
    /// Rolled-back top-level transactions.
    pub rollbacks: i64,
    /// Deadlocks the server reported to (and counted for) Cutover's sessions.
    pub deadlocks: i64,
}

impl Counts {
    /// `self - other`, field by field.
    pub fn minus(&self, other: &Counts) -> Counts {
        Counts {
            commits: self.commits - other.commits,
            rollbacks: self.rollbacks - other.rollbacks,
            deadlocks: self.deadlocks - other.deadlocks,
        }
    }

    /// `self + other`, field by field.
    pub fn plus(&self, other: &Counts) -> Counts {
        Counts {
            commits: self.commits + other.commits,
            rollbacks: self.rollbacks + other.rollbacks,
            deadlocks: self.deadlocks + other.deadlocks,
        }
    }
}

/// The counters of one database (server and database name) in this process.
#[derive(Debug)]
pub struct Target {
    cfg: DbConfig,
    commits: AtomicI64,
    rollbacks: AtomicI64,
    deadlocks: AtomicI64,
    /// Changed since it was last recorded.
    dirty: AtomicBool,
}

impl Target {
    /// The counts so far.
    pub fn counts(&self) -> Counts {
        Counts {
            commits: self.commits.load(Ordering::SeqCst),
            rollbacks: self.rollbacks.load(Ordering::SeqCst),
            deadlocks: self.deadlocks.load(Ordering::SeqCst),
        }
    }
}

struct Process {
    id: uuid::Uuid,
    started_at: DateTime<Utc>,
    targets: Mutex<BTreeMap<String, Arc<Target>>>,
    /// Backend process id of each open tallied connection → its target.
    backends: Mutex<HashMap<i32, Arc<Target>>>,
    persister: AtomicBool,
}

fn process() -> &'static Process {
    static PROCESS: OnceLock<Process> = OnceLock::new();
    PROCESS.get_or_init(|| Process {
        id: uuid::Uuid::new_v4(),
        started_at: Utc::now(),
        targets: Mutex::new(BTreeMap::new()),
        backends: Mutex::new(HashMap::new()),
        persister: AtomicBool::new(false),
    })
}

/// This process's identity in `cutover.own_transactions`.
pub fn process_id() -> uuid::Uuid {
    process().id
}

/// The counters for `cfg`'s database, created on first use.
pub fn target(cfg: &DbConfig) -> Arc<Target> {
    let key = cfg.target_key();
    let mut targets = process().targets.lock().unwrap_or_else(|e| e.into_inner());
    targets
        .entry(key)
        .or_insert_with(|| {
            Arc::new(Target {
                cfg: cfg.clone(),
                commits: AtomicI64::new(0),
                rollbacks: AtomicI64::new(0),
                deadlocks: AtomicI64::new(0),
                dirty: AtomicBool::new(false),
            })
        })
        .clone()
}

/// The counters of the database `client` is connected to, if it is a tallied connection.
pub async fn target_of(client: &Client) -> Result<Option<Arc<Target>>, tokio_postgres::Error> {
    let pid: i32 = client
        .query_one("SELECT pg_backend_pid()", &[])
        .await?
        .get(0);
    let backends = process().backends.lock().unwrap_or_else(|e| e.into_inner());
    Ok(backends.get(&pid).cloned())
}

/// The connection's socket: TCP or a Unix-domain socket.
#[derive(Debug)]
pub enum Socket {
    /// TCP.
    Tcp(TcpStream),
    /// A Unix-domain socket.
    Unix(UnixStream),
}

impl AsyncRead for Socket {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        match self.get_mut() {
            Socket::Tcp(s) => Pin::new(s).poll_read(cx, buf),
            Socket::Unix(s) => Pin::new(s).poll_read(cx, buf),
        }
    }
}

impl AsyncWrite for Socket {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        match self.get_mut() {
            Socket::Tcp(s) => Pin::new(s).poll_write(cx, buf),
            Socket::Unix(s) => Pin::new(s).poll_write(cx, buf),
        }
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        match self.get_mut() {
            Socket::Tcp(s) => Pin::new(s).poll_flush(cx),
            Socket::Unix(s) => Pin::new(s).poll_flush(cx),
        }
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        match self.get_mut() {
            Socket::Tcp(s) => Pin::new(s).poll_shutdown(cx),
            Socket::Unix(s) => Pin::new(s).poll_shutdown(cx),
        }
    }
}

/// Why a tallied connection could not be opened.
#[derive(Debug, thiserror::Error)]
pub enum ConnectError {
    /// No host could be reached.
    #[error("{0}")]
    Socket(io::Error),
    /// The server refused the session.
    #[error("{0}")]
    Postgres(#[from] tokio_postgres::Error),
}

/// A connection whose transactions are counted.
pub type TalliedConnection = Connection<Tallied<Socket>, NoTlsStream>;

/// Opens a tallied connection to `cfg`'s server with `config`'s session parameters. Hosts are
/// tried in order (TCP, or a Unix socket directory), each within the connect timeout.
pub async fn connect(
    cfg: &DbConfig,
    config: &Config,
) -> Result<(Client, TalliedConnection), ConnectError> {
    connect_counted(cfg, config, true).await
}

async fn connect_counted(
    cfg: &DbConfig,
    config: &Config,
    marks_dirty: bool,
) -> Result<(Client, TalliedConnection), ConnectError> {
    let socket = open_socket(config).await.map_err(ConnectError::Socket)?;
    let stream = Tallied::new(socket, target(cfg), marks_dirty);
    let (client, connection) = config.connect_raw(stream, NoTls).await?;
    ensure_persister();
    Ok((client, connection))
}

async fn open_socket(config: &Config) -> io::Result<Socket> {
    let hosts = config.get_hosts();
    if hosts.is_empty() {
        return Err(io::Error::new(io::ErrorKind::InvalidInput, "host missing"));
    }
    let ports = config.get_ports();
    let addrs = config.get_hostaddrs();
    let timeout = config.get_connect_timeout().copied();
    let mut last = None;
    for (i, host) in hosts.iter().enumerate() {
        let port = ports.get(i).or(ports.first()).copied().unwrap_or(5432);
        let attempt = async {
            match host {
                Host::Tcp(name) => {
                    let stream = match addrs.get(i) {
                        Some(ip) => TcpStream::connect((*ip, port)).await?,
                        None => connect_tcp(name, port).await?,
                    };
                    stream.set_nodelay(true)?;
                    if config.get_keepalives() {
                        let keepalive =
                            socket2::TcpKeepalive::new().with_time(config.get_keepalives_idle());
                        socket2::SockRef::from(&stream).set_tcp_keepalive(&keepalive)?;
                    }
                    Ok(Socket::Tcp(stream))
                }
                Host::Unix(dir) => {
                    let path = Path::new(dir).join(format!(".s.PGSQL.{port}"));
                    Ok(Socket::Unix(UnixStream::connect(path).await?))
                }
            }
        };
        let result = match timeout {
            Some(t) => tokio::time::timeout(t, attempt).await.unwrap_or_else(|_| {
                Err(io::Error::new(
                    io::ErrorKind::TimedOut,
                    "connection timed out",
                ))
            }),
            None => attempt.await,
        };
        match result {
            Ok(s) => return Ok(s),
            Err(e) => last = Some(e),
        }
    }
    Err(last.unwrap_or_else(|| io::Error::other("no host to connect to")))
}

async fn connect_tcp(name: &str, port: u16) -> io::Result<TcpStream> {
    if let Ok(ip) = name.parse::<IpAddr>() {
        return TcpStream::connect((ip, port)).await;
    }
    let mut last = None;
    for addr in tokio::net::lookup_host((name, port)).await? {
        match TcpStream::connect(addr).await {
            Ok(s) => return Ok(s),
            Err(e) => last = Some(e),
        }
    }
    Err(last.unwrap_or_else(|| {
        io::Error::new(
            io::ErrorKind::NotFound,
            format!("{name} resolves to no address"),
        )
    }))
}

/// A socket wrapper that counts the transactions the server ends on it (see the module docs).
/// It only observes: every byte passes through unchanged.
#[derive(Debug)]
pub struct Tallied<S> {
    inner: S,
    front: Frames,
    back: Frames,
    model: Model,
}

impl<S> Tallied<S> {
    /// Wraps `inner`; counts go to `target`, which is marked for recording when `marks_dirty`.
    pub fn new(inner: S, target: Arc<Target>, marks_dirty: bool) -> Tallied<S> {
        Tallied {
            inner,
            front: Frames::new(false),
            back: Frames::new(true),
            model: Model::new(target, marks_dirty),
        }
    }
}

impl<S> Drop for Tallied<S> {
    fn drop(&mut self) {
        self.model.closed();
    }
}

impl<S: AsyncRead + Unpin> AsyncRead for Tallied<S> {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        let before = buf.filled().len();
        let poll = Pin::new(&mut this.inner).poll_read(cx, buf);
        if let Poll::Ready(Ok(())) = &poll {
            let model = &mut this.model;
            let mut data = &buf.filled()[before..];
            if model.ssl_reply_pending && !data.is_empty() {
                model.ssl_reply(data[0]);
                data = &data[1..];
            }
            if !model.opaque {
                this.back.feed(data, back_keep, |kind, body| {
                    model.backend(kind, body);
                    true
                });
            }
        }
        poll
    }
}

impl<S: AsyncWrite + Unpin> AsyncWrite for Tallied<S> {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        let this = self.get_mut();
        let poll = Pin::new(&mut this.inner).poll_write(cx, buf);
        if let Poll::Ready(Ok(n)) = &poll {
            let model = &mut this.model;
            if !model.opaque {
                this.front.feed(&buf[..*n], front_keep, |kind, body| {
                    model.frontend(kind, body)
                });
            }
        }
        poll
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().inner).poll_flush(cx)
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().inner).poll_shutdown(cx)
    }
}

/// Splits a byte stream into protocol messages, keeping only the first bytes of each body that
/// the model needs.
#[derive(Debug)]
struct Frames {
    /// Messages start with a type byte (all but the frontend's startup-phase messages).
    typed: bool,
    header: Vec<u8>,
    kind: u8,
    body: Vec<u8>,
    keep: usize,
    remaining: usize,
    in_body: bool,
}

impl Frames {
    fn new(typed: bool) -> Frames {
        Frames {
            typed,
            header: Vec::with_capacity(5),
            kind: 0,
            body: Vec::new(),
            keep: 0,
            remaining: 0,
            in_body: false,
        }
    }

    fn feed(
        &mut self,
        mut data: &[u8],
        keep_for: fn(u8) -> usize,
        mut on_message: impl FnMut(u8, &[u8]) -> bool,
    ) {
        while !data.is_empty() {
            if self.in_body {
                let take = self.remaining.min(data.len());
                let room = self.keep.saturating_sub(self.body.len()).min(take);
                self.body.extend_from_slice(&data[..room]);
                self.remaining -= take;
                data = &data[take..];
            } else {
                let size = if self.typed { 5 } else { 4 };
                let take = (size - self.header.len()).min(data.len());
                self.header.extend_from_slice(&data[..take]);
                data = &data[take..];
                if self.header.len() < size {
                    return;
                }
                let at = size - 4;
                let len = u32::from_be_bytes([
                    self.header[at],
                    self.header[at + 1],
                    self.header[at + 2],
                    self.header[at + 3],
                ]) as usize;
                self.kind = if self.typed { self.header[0] } else { 0 };
                self.keep = keep_for(self.kind);
                self.remaining = len.saturating_sub(4);
                self.header.clear();
                self.in_body = true;
            }
            if self.in_body && self.remaining == 0 {
                self.in_body = false;
                let body = std::mem::take(&mut self.body);
                self.typed = on_message(self.kind, &body);
                self.body = body;
                self.body.clear();
            }
        }
    }
}

fn front_keep(kind: u8) -> usize {
    match kind {
        0 => 4,
        b'Q' | b'P' => usize::MAX,
        b'B' | b'E' | b'C' => 512,
        _ => 0,
    }
}

fn back_keep(kind: u8) -> usize {
    match kind {
        b'C' => 256,
        b'E' => 4096,
        b'Z' => 1,
        b'K' => 4,
        _ => 0,
    }
}

/// The transaction state the server is in, as far as the model knows.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Tx {
    /// No transaction.
    Idle,
    /// A transaction that ends with the current query or Sync (not an explicit block).
    Implicit,
    /// An explicit block, possibly failed.
    Block,
}

/// What a statement means for the transaction beyond its command tag.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Kind {
    /// Nothing special.
    Plain,
    /// `ROLLBACK TO SAVEPOINT`: its tag is `ROLLBACK`, but the block goes on.
    RollbackTo,
    /// `COMMIT AND CHAIN` / `ROLLBACK AND CHAIN`: a new block starts at once.
    Chain,
}

/// The requests sent and not yet answered by ReadyForQuery, in order.
#[derive(Debug)]
enum Group {
    /// A simple query: the kind of each of its statements.
    Simple(VecDeque<Kind>),
    /// An extended-protocol batch up to Sync: the kind of each Execute.
    Extended(VecDeque<Kind>),
}

#[derive(Debug)]
struct Model {
    target: Arc<Target>,
    marks_dirty: bool,
    /// Startup finished (the first ReadyForQuery arrived).
    ready: bool,
    tx: Tx,
    groups: VecDeque<Group>,
    open: VecDeque<Kind>,
    statements: HashMap<String, Kind>,
    portals: HashMap<String, Kind>,
    backend_pid: Option<i32>,
    ssl_reply_pending: bool,
    /// Encrypted or otherwise unreadable: counting stopped.
    opaque: bool,
    closed: bool,
}

impl Model {
    fn new(target: Arc<Target>, marks_dirty: bool) -> Model {
        Model {
            target,
            marks_dirty,
            ready: false,
            tx: Tx::Idle,
            groups: VecDeque::new(),
            open: VecDeque::new(),
            statements: HashMap::new(),
            portals: HashMap::new(),
            backend_pid: None,
            ssl_reply_pending: false,
            opaque: false,
            closed: false,
        }
    }

    fn count(&self, counter: &AtomicI64) {
        counter.fetch_add(1, Ordering::SeqCst);
        if self.marks_dirty {
            self.target.dirty.store(true, Ordering::SeqCst);
        }
    }

    fn end(&mut self, committed: bool, then: Tx) {
        let t = self.target.clone();
        self.count(if committed { &t.commits } else { &t.rollbacks });
        self.tx = then;
    }

    fn started(&mut self) {
        if self.tx == Tx::Idle {
            self.tx = Tx::Implicit;
        }
    }

    fn ssl_reply(&mut self, byte: u8) {
        self.ssl_reply_pending = false;
        if byte != b'N' {
            tracing::debug!(
                "encrypted connection: Cutover's own transactions on it are not counted"
            );
            self.opaque = true;
        }
    }

    /// A frontend message; returns whether the following messages are typed.
    fn frontend(&mut self, kind: u8, body: &[u8]) -> bool {
        match kind {
            0 => {
                let code = body
                    .get(..4)
                    .map_or(0, |b| u32::from_be_bytes([b[0], b[1], b[2], b[3]]));
                if code == 80_877_103 {
                    self.ssl_reply_pending = true;
                }
                // After the startup message proper (protocol 3.0), messages are typed.
                return code >> 16 == 3;
            }
            b'Q' => {
                let sql = cstr(body, 0).0;
                self.groups
                    .push_back(Group::Simple(statement_kinds(&sql).into()));
            }
            b'P' => {
                let (name, rest) = cstr(body, 0);
                let (sql, _) = cstr(body, rest);
                let kind = statement_kinds(&sql)
                    .first()
                    .copied()
                    .unwrap_or(Kind::Plain);
                self.statements.insert(name, kind);
            }
            b'B' => {
                let (portal, rest) = cstr(body, 0);
                let (statement, _) = cstr(body, rest);
                let kind = self
                    .statements
                    .get(&statement)
                    .copied()
                    .unwrap_or(Kind::Plain);
                self.portals.insert(portal, kind);
            }
            b'E' => {
                let portal = cstr(body, 0).0;
                let kind = self.portals.get(&portal).copied().unwrap_or(Kind::Plain);
                self.open.push_back(kind);
            }
            b'S' => {
                let batch = std::mem::take(&mut self.open);
                self.groups.push_back(Group::Extended(batch));
            }
            b'C' => {
                let name = cstr(body, 1).0;
                match body.first() {
                    Some(b'S') => self.statements.remove(&name),
                    Some(b'P') => self.portals.remove(&name),
                    _ => None,
                };
            }
            b'F' => self.groups.push_back(Group::Simple(VecDeque::new())),
            _ => {}
        }
        true
    }

    fn next_kind(&mut self) -> Kind {
        match self.groups.front_mut() {
            Some(Group::Simple(kinds)) | Some(Group::Extended(kinds)) => {
                kinds.pop_front().unwrap_or(Kind::Plain)
            }
            None => Kind::Plain,
        }
    }

    fn backend(&mut self, kind: u8, body: &[u8]) {
        match kind {
            b'K' if body.len() >= 4 => {
                let pid = i32::from_be_bytes([body[0], body[1], body[2], body[3]]);
                self.backend_pid = Some(pid);
                process()
                    .backends
                    .lock()
                    .unwrap_or_else(|e| e.into_inner())
                    .insert(pid, self.target.clone());
            }
            b'Z' => {
                let status = body.first().copied().unwrap_or(b'I');
                if !self.ready {
                    // The session's startup transaction reads the catalogs and commits.
                    self.ready = true;
                    self.end(true, Tx::Idle);
                } else {
                    self.groups.pop_front();
                    if self.tx == Tx::Implicit {
                        self.end(true, Tx::Idle);
                    }
                }
                self.reconcile(status);
            }
            b'E' => {
                if sqlstate(body) == Some("40P01") {
                    let t = self.target.clone();
                    self.count(&t.deadlocks);
                }
                // Before startup ends, or unasked (a FATAL to an idle session), an error ends no
                // transaction the server counts; a block still open is rolled back at close.
                if !self.ready || self.groups.is_empty() {
                    return;
                }
                self.started();
                if self.tx == Tx::Implicit {
                    self.end(false, Tx::Idle);
                }
                // The server skips the rest of the query, or everything up to Sync.
                if let Some(Group::Simple(k) | Group::Extended(k)) = self.groups.front_mut() {
                    k.clear();
                }
            }
            b'C' => {
                let statement = self.next_kind();
                self.started();
                let tag = String::from_utf8_lossy(body.split(|b| *b == 0).next().unwrap_or(&[]))
                    .into_owned();
                self.completed(&tag, statement);
            }
            b'I' | b's' => {
                self.next_kind();
                self.started();
            }
            b'1' | b'2' | b't' | b'T' | b'n' | b'D' | b'G' | b'H' | b'W' | b'V' => self.started(),
            _ => {}
        }
    }

    fn completed(&mut self, tag: &str, statement: Kind) {
        let chained = if statement == Kind::Chain {
            Tx::Block
        } else {
            Tx::Idle
        };
        match tag {
            "BEGIN" | "START TRANSACTION" => self.tx = Tx::Block,
            "COMMIT" => self.end(true, chained),
            "ROLLBACK" if statement == Kind::RollbackTo => self.tx = Tx::Block,
            "ROLLBACK" => self.end(false, chained),
            "PREPARE TRANSACTION" => self.tx = Tx::Idle,
            _ => {}
        }
    }

    /// Aligns the model with the status ReadyForQuery reports.
    fn reconcile(&mut self, status: u8) {
        match status {
            b'I' if self.tx != Tx::Idle => {
                // A block ended in a way the model did not follow; its outcome is unknown,
                // and counting it as a commit never hides an application rollback.
                tracing::debug!("tally: a transaction block ended unseen; counted as a commit");
                self.end(true, Tx::Idle);
            }
            b'T' | b'E' => self.tx = Tx::Block,
            _ => {}
        }
    }

    /// The connection is gone: a block still open is rolled back by the server.
    fn closed(&mut self) {
        if self.closed {
            return;
        }
        self.closed = true;
        if self.ready && !self.opaque && self.tx == Tx::Block {
            self.end(false, Tx::Idle);
        }
        if let Some(pid) = self.backend_pid {
            let mut backends = process().backends.lock().unwrap_or_else(|e| e.into_inner());
            if backends
                .get(&pid)
                .is_some_and(|t| Arc::ptr_eq(t, &self.target))
            {
                backends.remove(&pid);
            }
        }
    }
}

/// The NUL-terminated string at `from` and the offset after it.
fn cstr(body: &[u8], from: usize) -> (String, usize) {
    let rest = body.get(from..).unwrap_or(&[]);
    let end = rest.iter().position(|b| *b == 0).unwrap_or(rest.len());
    (
        String::from_utf8_lossy(&rest[..end]).into_owned(),
        from + end + 1,
    )
}

/// The SQLSTATE of an ErrorResponse body.
fn sqlstate(body: &[u8]) -> Option<&str> {
    let mut at = 0;
    while at < body.len() && body[at] != 0 {
        let field = body[at];
        let rest = &body[at + 1..];
        let end = rest.iter().position(|b| *b == 0)?;
        if field == b'C' {
            return std::str::from_utf8(&rest[..end]).ok();
        }
        at += end + 2;
    }
    None
}

/// The kind of each statement of a simple query, split the way PostgreSQL's scanner does:
/// semicolons outside quotes, dollar quotes and comments; empty statements dropped.
fn statement_kinds(sql: &str) -> Vec<Kind> {
    let mut kinds = Vec::new();
    let mut words: Vec<String> = Vec::new();
    let mut word = String::new();
    let mut any = false;
    let chars: Vec<char> = sql.chars().collect();
    let mut i = 0;
    let flush_word = |word: &mut String, words: &mut Vec<String>| {
        if !word.is_empty() {
            if words.len() < 8 {
                words.push(word.to_ascii_uppercase());
            }
            word.clear();
        }
    };
    while i < chars.len() {
        let c = chars[i];
        let next = chars.get(i + 1).copied();
        let prev_ident = i > 0 && is_ident(chars[i - 1]);
        if c == '-' && next == Some('-') {
            flush_word(&mut word, &mut words);
            while i < chars.len() && chars[i] != '\n' {
                i += 1;
            }
            continue;
        }
        if c == '/' && next == Some('*') {
            flush_word(&mut word, &mut words);
            let mut depth = 0;
            while i < chars.len() {
                if chars[i] == '/' && chars.get(i + 1) == Some(&'*') {
                    depth += 1;
                    i += 2;
                } else if chars[i] == '*' && chars.get(i + 1) == Some(&'/') {
                    depth -= 1;
                    i += 2;
                    if depth == 0 {
                        break;
                    }
                } else {
                    i += 1;
                }
            }
            continue;
        }
        if c == '\'' {
            let escapes = word.eq_ignore_ascii_case("e");
            flush_word(&mut word, &mut words);
            any = true;
            i += 1;
            while i < chars.len() {
                if escapes && chars[i] == '\\' {
                    i += 2;
                } else if chars[i] == '\'' {
                    if chars.get(i + 1) == Some(&'\'') {
                        i += 2;
                    } else {
                        break;
                    }
                } else {
                    i += 1;
                }
            }
            i += 1;
            continue;
        }
        if c == '"' {
            flush_word(&mut word, &mut words);
            any = true;
            i += 1;
            while i < chars.len() {
                if chars[i] == '"' {
                    if chars.get(i + 1) == Some(&'"') {
                        i += 2;
                    } else {
                        break;
                    }
                } else {
                    i += 1;
                }
            }
            i += 1;
            continue;
        }
        if c == '$' && !prev_ident {
            // A dollar quote: $tag$ … $tag$ (a tag never starts with a digit).
            let mut j = i + 1;
            while j < chars.len() && (chars[j].is_alphanumeric() || chars[j] == '_') {
                j += 1;
            }
            let tag_ok = chars.get(i + 1).is_none_or(|d| !d.is_ascii_digit());
            if tag_ok && chars.get(j) == Some(&'$') {
                flush_word(&mut word, &mut words);
                any = true;
                let delim: String = chars[i..=j].iter().collect();
                let rest: String = chars[j + 1..].iter().collect();
                match rest.find(&delim) {
                    Some(pos) => i = j + 1 + rest[..pos].chars().count() + delim.chars().count(),
                    None => i = chars.len(),
                }
                continue;
            }
        }
        if c == ';' {
            flush_word(&mut word, &mut words);
            if any {
                kinds.push(classify(&words));
            }
            words.clear();
            any = false;
            i += 1;
            continue;
        }
        if is_ident(c) {
            word.push(c);
            any = true;
        } else {
            flush_word(&mut word, &mut words);
            if !c.is_whitespace() {
                any = true;
            }
        }
        i += 1;
    }
    flush_word(&mut word, &mut words);
    if any {
        kinds.push(classify(&words));
    }
    kinds
}

fn is_ident(c: char) -> bool {
    c.is_alphanumeric() || c == '_' || c == '$'
}

fn classify(words: &[String]) -> Kind {
    let w = |i: usize| words.get(i).map(String::as_str).unwrap_or("");
    let first = w(0);
    if !matches!(first, "COMMIT" | "END" | "ROLLBACK" | "ABORT") {
        return Kind::Plain;
    }
    let mut at = 1;
    if matches!(w(at), "WORK" | "TRANSACTION") {
        at += 1;
    }
    match (w(at), w(at + 1)) {
        ("TO", _) if matches!(first, "ROLLBACK" | "ABORT") => Kind::RollbackTo,
        ("AND", "CHAIN") => Kind::Chain,
        _ => Kind::Plain,
    }
}

/// Records the counts of every database that changed since they were last recorded.
pub async fn persist_dirty() {
    let targets: Vec<Arc<Target>> = process()
        .targets
        .lock()
        .unwrap_or_else(|e| e.into_inner())
        .values()
        .cloned()
        .collect();
    for t in targets {
        if t.dirty.swap(false, Ordering::SeqCst) {
            if let Err(e) = persist(&t).await {
                tracing::debug!(
                    "could not record Cutover's own transactions on {}: {e}",
                    t.cfg.display()
                );
            }
        }
    }
}

/// Records this process's counts for `target` in its `cutover.own_transactions` (a no-op where
/// the control schema lacks the table). The recording is itself a transaction: the row
/// includes it.
pub async fn persist(target: &Target) -> Result<(), String> {
    let mut config = target.cfg.config().clone();
    config.application_name("cutover/tally");
    let (client, connection) = connect_counted(&target.cfg, &config, false)
        .await
        .map_err(|e| e.to_string())?;
    let driver = tokio::spawn(connection);
    let p = process();
    let c = target.counts();
    let sql = format!(
        "DO $cutover$ BEGIN
           IF to_regclass('cutover.own_transactions') IS NOT NULL THEN
             INSERT INTO cutover.own_transactions
                    (process, host, pid, started_at, commits, rollbacks, deadlocks)
             VALUES ('{id}', {host}, {pid}, {started}, {commits}, {rollbacks}, {deadlocks})
             ON CONFLICT (process) DO UPDATE SET
                 commits = greatest(own_transactions.commits, excluded.commits),
                 rollbacks = greatest(own_transactions.rollbacks, excluded.rollbacks),
                 deadlocks = greatest(own_transactions.deadlocks, excluded.deadlocks),
                 updated_at = clock_timestamp();
           END IF;
         END $cutover$",
        id = p.id,
        host = quote_literal(&super::host_name()),
        pid = std::process::id(),
        started = quote_literal(&p.started_at.to_rfc3339()),
        commits = c.commits + 1,
        rollbacks = c.rollbacks,
        deadlocks = c.deadlocks,
    );
    let result = client
        .batch_execute(&sql)
        .await
        .map_err(|e| super::describe_error(&e));
    drop(client);
    let _ = driver.await;
    result
}

/// Starts the task that records changed counts every [`PERSIST_EVERY`] (once per runtime).
fn ensure_persister() {
    let Ok(handle) = tokio::runtime::Handle::try_current() else {
        return;
    };
    if process().persister.swap(true, Ordering::SeqCst) {
        return;
    }
    struct Running;
    impl Drop for Running {
        fn drop(&mut self) {
            process().persister.store(false, Ordering::SeqCst);
        }
    }
    handle.spawn(async {
        let _running = Running;
        loop {
            tokio::time::sleep(PERSIST_EVERY).await;
            persist_dirty().await;
        }
    });
}

/// Cutover's transactions on `client`'s database so far: this process's live counts plus the
/// last recorded counts of every other Cutover process, and how many other processes those are.
/// Must run inside a `Scope` (the table may be missing: then only this process counts).
pub async fn all_processes(
    client: &Client,
    others: Result<Vec<tokio_postgres::Row>, tokio_postgres::Error>,
) -> Result<(Counts, i64), tokio_postgres::Error> {
    let own = target_of(client)
        .await?
        .map(|t| t.counts())
        .unwrap_or_default();
    let (rest, n) = match others {
        Ok(rows) => rows.first().map_or((Counts::default(), 0), |r| {
            (
                Counts {
                    commits: r.get(0),
                    rollbacks: r.get(1),
                    deadlocks: r.get(2),
                },
                r.get(3),
            )
        }),
        Err(_) => (Counts::default(), 0),
    };
    Ok((own.plus(&rest), n))
}

/// SQL summing the recorded counts of the other processes (`$1`: this process's id, text).
pub const OTHERS_SQL: &str =
    "SELECT coalesce(sum(commits), 0)::bigint, coalesce(sum(rollbacks), 0)::bigint,
        coalesce(sum(deadlocks), 0)::bigint, count(*)
   FROM cutover.own_transactions WHERE process::text <> $1";

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn splits_and_classifies_statements() {
        use Kind::*;
        assert_eq!(statement_kinds(""), Vec::<Kind>::new());
        assert_eq!(statement_kinds(" ; -- c\n;"), Vec::<Kind>::new());
        assert_eq!(
            statement_kinds("ROLLBACK TO SAVEPOINT a; RELEASE SAVEPOINT a; COMMIT"),
            vec![RollbackTo, Plain, Plain]
        );
        assert_eq!(
            statement_kinds("rollback work to a; abort; commit and chain; end and no chain"),
            vec![RollbackTo, Plain, Chain, Plain]
        );
        assert_eq!(
            statement_kinds(
                "SELECT ';', $$ ; $$, $x$;$x$, E'\\';', \"a;\" /* ; /* ; */ */; SELECT $1"
            ),
            vec![Plain, Plain]
        );
        assert_eq!(
            statement_kinds(
                "CREATE FUNCTION f() RETURNS int LANGUAGE sql AS $f$ SELECT 1; $f$; ROLLBACK"
            ),
            vec![Plain, Plain]
        );
    }

    #[test]
    fn frames_split_across_reads() {
        let mut f = Frames::new(true);
        let mut seen = Vec::new();
        let msg = [
            b'Z', 0, 0, 0, 5, b'T', b'C', 0, 0, 0, 11, b'C', b'O', b'M', b'M', b'I', b'T', 0,
        ];
        for chunk in msg.chunks(3) {
            f.feed(chunk, back_keep, |k, b| {
                seen.push((k, b.to_vec()));
                true
            });
        }
        assert_eq!(seen[0], (b'Z', vec![b'T']));
        assert_eq!(seen[1].0, b'C');
        assert_eq!(&seen[1].1[..6], b"COMMIT");
    }
}
