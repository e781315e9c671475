//! Cutover's own transactions, counted on the wire.
//!
//! `pg_stat_database` counts every transaction of a database, Cutover's included, and
//! PostgreSQL 15 keeps no per-session transaction counters. So every connection Cutover opens
//! for itself (`db::connect` and its variants; not `db::connect_app`, which stands
//! for an application) reads the protocol in both directions through a [`Tallied`] wrapper and
//! counts the top-level transactions the server ends on it — commits, rollbacks, and deadlocks
//! reported to it — by PostgreSQL's own rules: the connection's startup transaction, each
//! simple query or Sync-terminated extended batch outside a block, explicit blocks (a
//! `COMMIT` whose tag is `ROLLBACK` rolled back; `ROLLBACK TO SAVEPOINT` ends nothing), errors,
//! and a block left open when the connection closes.
//!
//! The wrapper sits on the socket (plaintext TCP and unix sockets) and, when the connection is
//! encrypted, on the decrypted TLS stream ([`TallyingConnector`]): the socket's wrapper stops
//! reading once the server accepts TLS, and the one above the TLS session counts instead.
//!
//! The counts are kept per server and database ([`Counters`]) in a [`Tally`]; this process's
//! connections count into [`process`]. Recording them where other Cutover processes can read
//! them is the control layer's job (`control::own_transactions`); [`changed`] hands it the
//! counters that changed since.

use std::collections::{BTreeMap, HashSet};
use std::future::Future;
use std::io;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, AtomicI64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, OnceLock};
use std::task::{Context, Poll};

use chrono::{DateTime, Utc};
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio_postgres::tls::{ChannelBinding, TlsConnect, TlsStream};
use tokio_postgres::Client;

use super::DbConfig;
use model::Model;

mod model;

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
    /// Changed since it was last handed out by [`Tally::changed`].
    dirty: AtomicBool,
    /// Backend process ids of the open connections counted here.
    backends: Mutex<HashSet<i32>>,
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

    fn backends(&self) -> MutexGuard<'_, HashSet<i32>> {
        self.backends.lock().unwrap_or_else(|e| e.into_inner())
    }
}

/// One Cutover process's counters, per server and database: a cloneable handle.
#[derive(Debug, Clone)]
pub struct Tally(Arc<TallyInner>);

#[derive(Debug)]
struct TallyInner {
    id: uuid::Uuid,
    started_at: DateTime<Utc>,
    counters: Mutex<BTreeMap<String, Arc<Counters>>>,
}

impl Default for Tally {
    fn default() -> Self {
        Tally::new()
    }
}

impl Tally {
    /// A new, empty set of counters with a fresh process identity.
    pub fn new() -> Tally {
        Tally(Arc::new(TallyInner {
            id: uuid::Uuid::new_v4(),
            started_at: Utc::now(),
            counters: Mutex::new(BTreeMap::new()),
        }))
    }

    /// This process's identity among Cutover processes.
    pub fn id(&self) -> uuid::Uuid {
        self.0.id
    }

    /// When this process started counting.
    pub fn started_at(&self) -> DateTime<Utc> {
        self.0.started_at
    }

    fn all(&self) -> MutexGuard<'_, BTreeMap<String, Arc<Counters>>> {
        self.0.counters.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// The counters for `key` (`server/dbname`), created on first use with `cfg()`.
    pub(crate) fn counters_at(&self, key: String, cfg: impl FnOnce() -> DbConfig) -> Arc<Counters> {
        self.all()
            .entry(key)
            .or_insert_with(|| {
                Arc::new(Counters {
                    cfg: cfg(),
                    commits: AtomicI64::new(0),
                    rollbacks: AtomicI64::new(0),
                    deadlocks: AtomicI64::new(0),
                    dirty: AtomicBool::new(false),
                    backends: Mutex::new(HashSet::new()),
                })
            })
            .clone()
    }

    /// The counters for `cfg`'s database on its first server.
    pub fn counters(&self, cfg: &DbConfig) -> Arc<Counters> {
        let (key, pinned) = cfg.first_server();
        self.counters_at(key, || pinned)
    }

    /// The counters of the database `client` is connected to, if it is a counted connection.
    pub async fn counters_of(
        &self,
        client: &Client,
    ) -> Result<Option<Arc<Counters>>, tokio_postgres::Error> {
        let pid: i32 = client
            .query_one("SELECT pg_backend_pid() AS pid", &[])
            .await?
            .try_get("pid")?;
        Ok(self
            .all()
            .values()
            .find(|c| c.backends().contains(&pid))
            .cloned())
    }

    /// The counters that changed since the last call, each handed out once per change.
    pub fn changed(&self) -> Vec<Arc<Counters>> {
        self.all()
            .values()
            .filter(|c| c.dirty.swap(false, Ordering::SeqCst))
            .cloned()
            .collect()
    }
}

/// The tally of this process's connections.
pub fn process() -> &'static Tally {
    static PROCESS: OnceLock<Tally> = OnceLock::new();
    PROCESS.get_or_init(Tally::new)
}

/// This process's identity among Cutover processes.
pub fn process_id() -> uuid::Uuid {
    process().id()
}

/// When this process started counting.
pub fn process_started_at() -> DateTime<Utc> {
    process().started_at()
}

/// The counters for `key` (`server/dbname`) in this process's tally.
pub(crate) fn counters_at(key: String, cfg: impl FnOnce() -> DbConfig) -> Arc<Counters> {
    process().counters_at(key, cfg)
}

/// The counters for `cfg`'s database on its first server, in this process's tally.
pub fn counters(cfg: &DbConfig) -> Arc<Counters> {
    process().counters(cfg)
}

/// The counters of the database `client` is connected to, in this process's tally.
pub async fn counters_of(client: &Client) -> Result<Option<Arc<Counters>>, tokio_postgres::Error> {
    process().counters_of(client).await
}

/// The counters in this process's tally that changed since the last call.
pub fn changed() -> Vec<Arc<Counters>> {
    process().changed()
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

#[cfg(test)]
mod tests {
    use super::*;

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
