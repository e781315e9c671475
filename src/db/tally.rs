//! Cutover's own transactions, counted on the wire.
//!
//! `pg_stat_database` counts every transaction of a database, Cutover's included, and
//! PostgreSQL 15 keeps no per-session transaction counters. So every connection Cutover opens
//! for itself ([`super::connect()`] and its variants; not [`super::connect_app`], which stands
//! for an application) reads the protocol in both directions through a [`Tallied`] wrapper and
//! counts the top-level transactions the server ends on it — commits, rollbacks, and deadlocks
//! reported to it — by PostgreSQL's own rules: the connection's startup transaction, each
//! simple query or Sync-terminated extended batch outside a block, explicit blocks (a
//! `COMMIT` whose tag is `ROLLBACK` rolled back; `ROLLBACK TO SAVEPOINT` ends nothing), errors,
//! and a block left open when the connection closes.
//!
//! The wrapper sits on the socket (plaintext TCP and unix sockets) and, when the connection is
//! encrypted, on the decrypted TLS stream (`TallyingConnector`): the socket's wrapper stops
//! reading once the server accepts TLS, and the one above the TLS session counts instead.
//!
//! The counts are process-wide, per server and database ([`Counters`]). Recording them where
//! other Cutover processes can read them is the control layer's job
//! (`control::own_transactions`); [`changed`] hands it the counters that changed since.

use std::collections::{BTreeMap, HashMap, VecDeque};
use std::future::Future;
use std::io;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, AtomicI64, Ordering};
use std::sync::{Arc, Mutex, OnceLock};
use std::task::{Context, Poll};

use chrono::{DateTime, Utc};
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio_postgres::tls::{ChannelBinding, TlsConnect, TlsStream};
use tokio_postgres::Client;

use super::DbConfig;

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

/// Whether a connection's transactions are counted as Cutover's own.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Counting {
    /// Not counted: the connection stands for an application.
    Off,
    /// Counted; a change calls for the counts to be recorded again.
    On,
    /// Counted, but the connection is the one recording the counts: its own transactions do
    /// not call for another recording (the recording includes them).
    Recording,
}

/// The counters of one database (server and database name) in this process.
#[derive(Debug)]
pub struct Counters {
    cfg: DbConfig,
    commits: AtomicI64,
    rollbacks: AtomicI64,
    deadlocks: AtomicI64,
    /// Changed since it was last handed out by [`changed`].
    dirty: AtomicBool,
}

impl Counters {
    /// The counts so far.
    pub fn counts(&self) -> Counts {
        Counts {
            commits: self.commits.load(Ordering::SeqCst),
            rollbacks: self.rollbacks.load(Ordering::SeqCst),
            deadlocks: self.deadlocks.load(Ordering::SeqCst),
        }
    }

    /// How to reach the database these counters belong to (that one server only).
    pub fn config(&self) -> &DbConfig {
        &self.cfg
    }

    /// Calls for another recording (after a recording failed).
    pub fn mark_changed(&self) {
        self.dirty.store(true, Ordering::SeqCst);
    }
}

struct Process {
    id: uuid::Uuid,
    started_at: DateTime<Utc>,
    counters: Mutex<BTreeMap<String, Arc<Counters>>>,
    /// Backend process id of each open tallied connection → its counters.
    backends: Mutex<HashMap<i32, Arc<Counters>>>,
}

fn process() -> &'static Process {
    static PROCESS: OnceLock<Process> = OnceLock::new();
    PROCESS.get_or_init(|| Process {
        id: uuid::Uuid::new_v4(),
        started_at: Utc::now(),
        counters: Mutex::new(BTreeMap::new()),
        backends: Mutex::new(HashMap::new()),
    })
}

/// This process's identity among Cutover processes.
pub fn process_id() -> uuid::Uuid {
    process().id
}

/// When this process started counting.
pub fn process_started_at() -> DateTime<Utc> {
    process().started_at
}

/// The counters for `key` (`server/dbname`), created on first use with `cfg()`.
pub(crate) fn counters_at(key: String, cfg: impl FnOnce() -> DbConfig) -> Arc<Counters> {
    let mut all = process().counters.lock().unwrap_or_else(|e| e.into_inner());
    all.entry(key)
        .or_insert_with(|| {
            Arc::new(Counters {
                cfg: cfg(),
                commits: AtomicI64::new(0),
                rollbacks: AtomicI64::new(0),
                deadlocks: AtomicI64::new(0),
                dirty: AtomicBool::new(false),
            })
        })
        .clone()
}

/// The counters for `cfg`'s database on its first server.
pub fn counters(cfg: &DbConfig) -> Arc<Counters> {
    let (key, pinned) = cfg.first_server();
    counters_at(key, || pinned)
}

/// The counters of the database `client` is connected to, if it is a counted connection.
pub async fn counters_of(client: &Client) -> Result<Option<Arc<Counters>>, tokio_postgres::Error> {
    let pid: i32 = client
        .query_one("SELECT pg_backend_pid()", &[])
        .await?
        .get(0);
    let backends = process().backends.lock().unwrap_or_else(|e| e.into_inner());
    Ok(backends.get(&pid).cloned())
}

/// The counters that changed since the last call, each handed out once per change.
pub fn changed() -> Vec<Arc<Counters>> {
    process()
        .counters
        .lock()
        .unwrap_or_else(|e| e.into_inner())
        .values()
        .filter(|c| c.dirty.swap(false, Ordering::SeqCst))
        .cloned()
        .collect()
}

/// A TLS connector whose encrypted stream is wrapped in [`Tallied`], so the decrypted protocol
/// is counted.
pub(crate) struct TallyingConnector<C> {
    inner: C,
    counters: Option<Arc<Counters>>,
    marks_dirty: bool,
}

impl<C> TallyingConnector<C> {
    /// Wraps `inner`; `counters` is `None` for a connection that is not counted.
    pub(crate) fn new(inner: C, counters: Option<Arc<Counters>>, counting: Counting) -> Self {
        TallyingConnector {
            inner,
            counters,
            marks_dirty: counting == Counting::On,
        }
    }
}

impl<S, C> TlsConnect<S> for TallyingConnector<C>
where
    C: TlsConnect<S>,
    C::Future: Send + 'static,
{
    type Stream = Tallied<C::Stream>;
    type Error = C::Error;
    type Future = Pin<Box<dyn Future<Output = Result<Tallied<C::Stream>, C::Error>> + Send>>;

    fn connect(self, stream: S) -> Self::Future {
        let handshake = self.inner.connect(stream);
        let (counters, marks_dirty) = (self.counters, self.marks_dirty);
        Box::pin(async move {
            handshake
                .await
                .map(|s| Tallied::new(s, counters, marks_dirty))
        })
    }
}

/// A stream wrapper that counts the transactions the server ends on it (see the module docs).
/// It only observes: every byte passes through unchanged.
#[derive(Debug)]
pub struct Tallied<S> {
    inner: S,
    front: Frames,
    back: Frames,
    /// `None`: not counted.
    model: Option<Model>,
}

impl<S> Tallied<S> {
    /// Wraps `inner`; counts go to `counters` (none: not counted), which are marked changed
    /// when `marks_dirty`.
    pub(crate) fn new(inner: S, counters: Option<Arc<Counters>>, marks_dirty: bool) -> Tallied<S> {
        Tallied {
            inner,
            front: Frames::new(false),
            back: Frames::new(true),
            model: counters.map(|c| Model::new(c, marks_dirty)),
        }
    }
}

impl<S> Drop for Tallied<S> {
    fn drop(&mut self) {
        if let Some(model) = &mut self.model {
            model.closed();
        }
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
        if let (Poll::Ready(Ok(())), Some(model)) = (&poll, &mut this.model) {
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
        if let (Poll::Ready(Ok(n)), Some(model)) = (&poll, &mut this.model) {
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

impl<S: TlsStream + Unpin> TlsStream for Tallied<S> {
    fn channel_binding(&self) -> ChannelBinding {
        self.inner.channel_binding()
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
    counters: Arc<Counters>,
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
    /// Encrypted below this wrapper: the wrapper above the TLS session counts instead.
    opaque: bool,
    closed: bool,
}

impl Model {
    fn new(counters: Arc<Counters>, marks_dirty: bool) -> Model {
        Model {
            counters,
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
            self.counters.dirty.store(true, Ordering::SeqCst);
        }
    }

    fn end(&mut self, committed: bool, then: Tx) {
        let t = self.counters.clone();
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
        // `S`: TLS follows; the stream above the TLS session is counted by its own wrapper.
        if byte != b'N' {
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
                    .insert(pid, self.counters.clone());
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
                if field(body, b'C') == Some("40P01") {
                    let t = self.counters.clone();
                    self.count(&t.deadlocks);
                }
                // Before startup ends, or unasked (a FATAL to an idle session), an error ends no
                // transaction the server counts; a block still open is rolled back at close.
                if !self.ready || self.groups.is_empty() {
                    return;
                }
                // A FATAL before any answer to the pending request may have come before the
                // server read it (a session terminated while idle): no transaction is assumed,
                // so an application rollback is never hidden.
                let fatal = matches!(
                    field(body, b'V').or(field(body, b'S')),
                    Some("FATAL" | "PANIC")
                );
                if !(fatal && self.tx == Tx::Idle) {
                    self.started();
                }
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
                .is_some_and(|t| Arc::ptr_eq(t, &self.counters))
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

/// The field `code` of an ErrorResponse body (`C`: SQLSTATE, `V`: severity).
fn field(body: &[u8], code: u8) -> Option<&str> {
    let mut at = 0;
    while at < body.len() && body[at] != 0 {
        let kind = body[at];
        let rest = &body[at + 1..];
        let end = rest.iter().position(|b| *b == 0)?;
        if kind == code {
            return std::str::from_utf8(&rest[..end]).ok();
        }
        at += end + 2;
    }
    None
}

/// The kind of each statement of a simple query, split the way PostgreSQL's scanner does:
/// semicolons outside quotes, dollar quotes and comments; empty statements dropped.
#[expect(clippy::too_many_lines, reason = "the tally helper splits this")]
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
    fn a_fatal_before_any_answer_ends_no_transaction() {
        let fatal = b"SFATAL\0VFATAL\0C57P01\0Mterminating connection\0\0";
        let counters = counters(&DbConfig::from_url("postgres://u@h:1/unit_fatal").unwrap());
        let before = counters.counts();
        // Terminated while idle, the query just sent: the server never started it.
        let mut idle = Model::new(counters.clone(), false);
        idle.backend(b'Z', b"I");
        idle.frontend(b'Q', b"SELECT 1\0");
        idle.backend(b'E', fatal);
        let seen = counters.counts().minus(&before);
        assert_eq!((seen.commits, seen.rollbacks), (1, 0));
        // Terminated mid-query, after its first answer: rolled back.
        let mut busy = Model::new(counters.clone(), false);
        busy.backend(b'Z', b"I");
        busy.frontend(b'Q', b"SELECT pg_sleep(9)\0");
        busy.backend(b'T', b"\0\0");
        busy.backend(b'E', fatal);
        let seen = counters.counts().minus(&before);
        assert_eq!((seen.commits, seen.rollbacks), (2, 1));
        // An ERROR before any answer still ends the implicit transaction.
        busy.frontend(b'Q', b"SELEKT\0");
        busy.backend(b'E', b"SERROR\0VERROR\0C42601\0\0");
        assert_eq!(counters.counts().minus(&before).rollbacks, 2);
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
