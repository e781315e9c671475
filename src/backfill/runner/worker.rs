//! A worker task: claims a range under a lease, runs its chunks one transaction at a time,
//! follows the state row, the live settings and the throttle's verdict before each chunk, and
//! reconnects or retries smaller when a chunk fails for a passing reason.

use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Duration;

use tokio_postgres::Client;

use super::chunk::{ChunkDone, ChunkJob};
use super::shared::Shared;
use crate::backfill::ranges::{self, Claim, Claimed, Finish, Identity};
use crate::backfill::sizer::Sizer;
use crate::backfill::throttle::Verdict;
use crate::backfill::{BackfillError, RunOutcome};
use crate::control::backfill::checkpoint::{self, ChunkStatements};
use crate::control::backfill::settings::{self, WorkerView};
use crate::control::backfill::transitions;
use crate::control::backfill::State;
use crate::control::phases::PhaseState;
use crate::db::{self, SessionSettings};

/// Consecutive retryable failures of one worker before the backfill fails.
const MAX_RETRIES: u32 = 30;
/// Smallest share of the target chunk time a worker aims at while its chunks block sessions.
const MIN_CONTENTION_FACTOR: f64 = 0.15;
/// Share of the (effective) target chunk time the sizer aims at: chunk times scatter around
/// their aim, and the headroom keeps the slow tail (p99) within about 1.5× the target.
const AIM: f64 = 0.75;
/// Shortest effective target chunk time under contention.
const MIN_EFFECTIVE_TARGET: Duration = Duration::from_millis(50);

/// What one step of the worker loop decided.
enum Step {
    /// A chunk ran; go on.
    Chunk,
    /// Nothing to do right now; sleep one poll interval.
    Wait,
    /// Leave the loop.
    Exit(RunOutcome),
}

/// Why a step failed.
enum StepError {
    /// The connection broke: reconnect and go on from the checkpoint.
    Connection(String),
    /// The chunk hit its time cap or a lock conflict: retry smaller.
    Retry(String),
    /// Not retryable.
    Fatal(BackfillError),
}

impl From<tokio_postgres::Error> for StepError {
    fn from(e: tokio_postgres::Error) -> Self {
        let e = crate::db::DbError::from(e);
        if e.is_connection_lost() {
            StepError::Connection(e.to_string())
        } else if e.is_statement_timeout() || e.is_lock_timeout() || e.is_serialization() {
            StepError::Retry(e.to_string())
        } else {
            StepError::Fatal(BackfillError::Db(e))
        }
    }
}

impl From<BackfillError> for StepError {
    fn from(e: BackfillError) -> Self {
        match e {
            BackfillError::Db(e) if e.is_connection_lost() => StepError::Connection(e.to_string()),
            other => StepError::Fatal(other),
        }
    }
}

/// What [`Worker::acquire`] found.
enum Acquired {
    /// A range to work on.
    Range,
    /// Nothing to take now.
    Nothing,
    /// The backfill is done.
    Done,
}

/// One local worker task.
pub(super) struct Worker {
    shared: Arc<Shared>,
    /// Local task index: task `i` runs chunks only while the concurrency limit exceeds `i`.
    index: usize,
    me: Identity,
    client: Option<Client>,
    sizer: Sizer,
    range: Option<Claimed>,
    waiting_on: String,
    retries: u32,
    /// Share of the target chunk time aimed at (below 1 while chunks block other sessions).
    contention: f64,
    /// The chunk's statements, prepared on the current connection.
    statements: Option<ChunkStatements>,
}

impl Worker {
    pub(super) fn new(shared: Arc<Shared>, index: usize) -> Worker {
        let s = &shared.spec;
        let sizer = Sizer::new(s.initial_chunk_rows, s.min_chunk_rows, s.max_chunk_rows)
            .with_wal_budget(s.throttle.max_chunk_wal_mib * 1_048_576.0);
        Worker {
            shared,
            index,
            me: Identity::new(index),
            client: None,
            sizer,
            range: None,
            waiting_on: String::new(),
            retries: 0,
            contention: 1.0,
            statements: None,
        }
    }

    /// Runs chunks until done, stopped, failed or shut down.
    pub(super) async fn run(mut self) -> Result<RunOutcome, BackfillError> {
        let mut backoff = Duration::from_millis(200);
        let mut shutdown = self.shared.shutdown.clone();
        let mut verdict = self.shared.verdict.clone();
        // A dropped sender makes `changed()` return at once: stop selecting on it then.
        let (mut shutdown_open, mut verdict_open) = (true, true);
        loop {
            if *shutdown.borrow() {
                self.release().await;
                return Ok(RunOutcome::Shutdown);
            }
            let wait = match self.step().await {
                Ok(Step::Chunk) => {
                    backoff = Duration::from_millis(200);
                    continue;
                }
                Ok(Step::Wait) => self.shared.opts.poll,
                Ok(Step::Exit(o)) => {
                    self.release().await;
                    return Ok(o);
                }
                Err(StepError::Connection(m)) => {
                    tracing::warn!(worker = %self.me.owner, "connection lost ({m}); reconnecting in {backoff:?}");
                    self.client = None;
                    let w = backoff;
                    backoff = (backoff * 2).min(Duration::from_secs(5));
                    w
                }
                Err(StepError::Retry(m)) => {
                    self.retries += 1;
                    self.sizer.timed_out();
                    self.count_retry().await;
                    tracing::warn!(worker = %self.me.owner, "chunk rolled back, retrying with {} rows: {m}", self.sizer.size());
                    if self.retries >= MAX_RETRIES && self.sizer.at_floor() {
                        let e = BackfillError::Failed {
                            plan: self.shared.plan.id().to_string(),
                            message: format!(
                                "a chunk of {} rows keeps failing after {} attempts: {m}",
                                self.sizer.size(),
                                self.retries
                            ),
                        };
                        self.fail(&e).await;
                        return Err(e);
                    }
                    Duration::from_millis(50 * u64::from(self.retries.min(20)))
                }
                Err(StepError::Fatal(e)) => {
                    self.fail(&e).await;
                    return Err(e);
                }
            };
            tokio::select! {
                _ = tokio::time::sleep(wait) => {}
                r = shutdown.changed(), if shutdown_open => shutdown_open = r.is_ok(),
                r = verdict.changed(), if verdict_open => verdict_open = r.is_ok(),
                _ = self.shared.ended.notified() => {}
            }
        }
    }

    /// Records a failure in the state row (best effort) and releases the lease.
    async fn fail(&mut self, e: &BackfillError) {
        tracing::error!(worker = %self.me.owner, "backfill failed: {e}");
        if let Some(c) = self.client.as_ref() {
            let _ = transitions::fail(c, self.shared.plan.id(), &e.to_string()).await;
        }
        self.release().await;
    }

    /// Counts a rolled-back chunk in the state row (best effort).
    async fn count_retry(&mut self) {
        if let Some(c) = self.client.as_ref() {
            let _ = checkpoint::count_retry(c, self.shared.plan.id()).await;
        }
    }

    async fn release(&mut self) {
        if let Some(c) = self.client.as_ref() {
            let _ = ranges::release(c, self.shared.plan.id(), &self.me).await;
        }
        self.range = None;
    }

    async fn connect(&mut self) -> Result<(), StepError> {
        if self.client.as_ref().is_some_and(|c| !c.is_closed()) {
            return Ok(());
        }
        let session = SessionSettings {
            purpose: format!("backfill/{}", self.me.owner),
            statement_timeout: self.shared.plan.spec.settings.statement_timeout.std(),
        };
        let client = match db::connect(&self.shared.cfg, &session).await {
            Ok(c) => c,
            Err(e) => return Err(StepError::Connection(e.to_string())),
        };
        self.statements = Some(ChunkStatements::prepare(&client).await?);
        self.client = Some(client);
        Ok(())
    }

    fn client(&mut self) -> Result<&mut Client, StepError> {
        self.client
            .as_mut()
            .ok_or_else(|| StepError::Connection("not connected".to_string()))
    }

    async fn read_view(&mut self) -> Result<WorkerView, StepError> {
        let plan_id = self.shared.plan.id().to_string();
        Ok(settings::worker_view(&*self.client()?, &plan_id).await?)
    }

    async fn heartbeat(&mut self) -> Result<(), StepError> {
        if self.range.is_none() {
            return Ok(());
        }
        let plan_id = self.shared.plan.id().to_string();
        let lease = self.shared.opts.lease;
        let me = self.me.clone();
        let held = ranges::heartbeat(self.client()?, &plan_id, &me, lease).await?;
        if held == 0 {
            tracing::warn!(worker = %self.me.owner, "lease lost; the range will be claimed again");
            self.range = None;
        }
        Ok(())
    }

    /// One turn of the worker loop: obey the state row, hold or hand back the range as the
    /// concurrency and the throttle say, else run one chunk.
    async fn step(&mut self) -> Result<Step, StepError> {
        self.connect().await?;
        let ctl = self.read_view().await?;
        if let Some(step) = self.obey(&ctl).await? {
            return Ok(step);
        }
        let limit = self.concurrency(&ctl);
        if self.hand_back(&ctl, limit).await? {
            return Ok(Step::Wait);
        }
        // The throttle task records the reason; keep the lease alive meanwhile.
        if matches!(&*self.shared.verdict.borrow(), Verdict::Throttled(_)) {
            self.heartbeat().await?;
            return Ok(Step::Wait);
        }
        if self.range.is_none() {
            match self.acquire(limit).await? {
                Acquired::Range => {}
                Acquired::Nothing => return Ok(Step::Wait),
                Acquired::Done => return Ok(Step::Exit(RunOutcome::Done)),
            }
        }
        let Some(range) = self.range.clone() else {
            return Ok(Step::Wait);
        };
        self.work(&ctl, limit, range).await
    }

    /// What the state row and the phase ask of this worker, if anything but to go on.
    async fn obey(&mut self, ctl: &WorkerView) -> Result<Option<Step>, StepError> {
        match ctl.state {
            State::Stopped => return Ok(Some(Step::Exit(RunOutcome::Stopped))),
            State::Done => return Ok(Some(Step::Exit(RunOutcome::Done))),
            State::Failed => {
                return Err(StepError::Fatal(BackfillError::Failed {
                    plan: self.shared.plan.id().to_string(),
                    message: "another worker failed; see `cutover backfill status`".to_string(),
                }))
            }
            State::Paused => {
                self.heartbeat().await?;
                return Ok(Some(Step::Wait));
            }
            _ => {}
        }
        if ctl.phase != Some(PhaseState::Applied) {
            let reason = format!(
                "the backfill phase is {} (rolled back?): stopped",
                crate::backfill::phase_name(ctl.phase)
            );
            let plan_id = self.shared.plan.id().to_string();
            transitions::stop_unapplied(&*self.client()?, &plan_id, &reason).await?;
            return Ok(Some(Step::Exit(RunOutcome::Stopped)));
        }
        Ok(None)
    }

    /// True when this worker may not run now (its index is beyond `limit`, or it holds the
    /// newest of too many leases); it hands its range back if it holds one.
    async fn hand_back(&mut self, ctl: &WorkerView, limit: i64) -> Result<bool, StepError> {
        let why = if self.index as i64 >= limit {
            // An idle-only worker while the application is active (or a task beyond a tuned-
            // down limit): hand the range back after the chunk it just finished.
            if self.range.is_none() {
                return Ok(true);
            }
            format!("{limit} worker(s) now")
        } else if self.range.is_some()
            && ctl.live_leases > limit
            && ctl.newest_lease.as_deref() == Some(self.me.owner.as_str())
        {
            format!("workers tuned down to {limit}")
        } else {
            return Ok(false);
        };
        tracing::info!(worker = %self.me.owner, "{why}: releasing my range");
        let plan_id = self.shared.plan.id().to_string();
        let me = self.me.clone();
        ranges::release(self.client()?, &plan_id, &me).await?;
        self.range = None;
        Ok(true)
    }

    /// Runs one chunk of `range`, learns from it, and paces the next start.
    async fn work(
        &mut self,
        ctl: &WorkerView,
        limit: i64,
        range: Claimed,
    ) -> Result<Step, StepError> {
        let pause = match &*self.shared.verdict.borrow() {
            Verdict::Yield { pause, .. } => *pause,
            _ => 0.0,
        };
        let rows = self.sizer.size_yielding(1.0 + pause);
        let target = ctl.target_chunk_time;
        let effective = target
            .mul_f64(self.contention / (1.0 + pause))
            .max(MIN_EFFECTIVE_TARGET)
            .min(target);
        self.shared.activity.begin();
        let result = self
            .chunk(&range, rows, target, effective, pause > 0.0)
            .await;
        self.shared.activity.end();
        let done = match result {
            Ok(Some(d)) => d,
            Ok(None) => {
                tracing::warn!(worker = %self.me.owner, range = range.range_id, "lease lost before the chunk; claiming again");
                self.range = None;
                return Ok(Step::Wait);
            }
            Err(StepError::Fatal(e)) => {
                let after = range
                    .checkpoint
                    .as_ref()
                    .map_or("the start".to_string(), |k| {
                        format!("key ({})", k.join(", "))
                    });
                return Err(StepError::Fatal(BackfillError::Failed {
                    plan: self.shared.plan.id().to_string(),
                    message: format!(
                        "chunk of up to {rows} rows after {after} in {} (range {}): {e}",
                        self.shared.keys.table, range.range_id
                    ),
                }));
            }
            Err(e) => return Err(e),
        };
        self.learn(&done, effective);
        if done.range_done {
            self.range = None;
        } else if let Some(r) = self.range.as_mut() {
            r.checkpoint = done.upper.clone();
        }
        self.pace(ctl, limit, &done, pause).await;
        Ok(Step::Chunk)
    }

    /// Adapts the contention factor and the chunk size to a committed chunk; counts it.
    fn learn(&mut self, done: &ChunkDone, effective: Duration) {
        self.retries = 0;
        self.contention = if done.blocked > 0 {
            (self.contention * 0.5).max(MIN_CONTENTION_FACTOR)
        } else {
            (self.contention * 1.2).min(1.0)
        };
        self.sizer
            .observe(done.scanned, done.elapsed, effective.mul_f64(AIM));
        self.sizer.observe_wal(done.scanned, done.wal_bytes);
        let t = &self.shared.totals;
        t.chunks.fetch_add(1, Ordering::Relaxed);
        t.scanned.fetch_add(done.scanned, Ordering::Relaxed);
        t.updated.fetch_add(done.updated, Ordering::Relaxed);
    }

    /// Waits before the next chunk (a shutdown cuts it short). The rate cap: this worker's rows
    /// over the time to its next start stay within its share. The latency guard: pause
    /// `pause` × the chunk's time.
    async fn pace(&self, ctl: &WorkerView, limit: i64, done: &ChunkDone, pause: f64) {
        let capped = if ctl.max_rows_per_sec > 0 {
            let share = f64::from(ctl.max_rows_per_sec) / limit.max(1) as f64;
            Duration::from_secs_f64(done.scanned as f64 / share.max(1.0))
        } else {
            Duration::ZERO
        };
        let min = capped.max(done.elapsed.mul_f64(1.0 + pause));
        if min > done.elapsed {
            let mut shutdown = self.shared.shutdown.clone();
            let interrupted = async {
                if shutdown.changed().await.is_err() {
                    std::future::pending::<()>().await;
                }
            };
            tokio::select! {
                _ = tokio::time::sleep(min - done.elapsed) => {}
                _ = interrupted => {}
            }
        }
    }

    /// How many workers may run now, across all processes: `workers`, or the idle
    /// concurrency while the application is idle.
    fn concurrency(&self, ctl: &WorkerView) -> i64 {
        if self.shared.activity.app_idle() {
            ctl.workers
                .max(i64::from(self.shared.spec.idle_concurrency()))
        } else {
            ctl.workers
        }
    }

    /// Claims a range (or runs the final step) while fewer than `workers` leases are live.
    async fn acquire(&mut self, workers: i64) -> Result<Acquired, StepError> {
        let plan_id = self.shared.plan.id().to_string();
        let me = self.me.clone();
        let lease = self.shared.opts.lease;
        let claim = ranges::claim(self.client()?, &plan_id, &me, lease, workers).await?;
        match claim {
            Claim::Got(r) => {
                tracing::info!(worker = %self.me.owner, range = r.range_id, "claimed range");
                self.waiting_on.clear();
                self.range = Some(r);
                Ok(Acquired::Range)
            }
            Claim::Busy(holders) => {
                let text = holders
                    .iter()
                    .map(|h| h.to_string())
                    .collect::<Vec<_>>()
                    .join(", ");
                if self.shared.opts.no_wait {
                    return Err(StepError::Fatal(BackfillError::Leased {
                        plan: plan_id,
                        holders: text,
                    }));
                }
                if text != self.waiting_on {
                    tracing::info!(worker = %self.me.owner, "waiting: the backfill is leased by {text}");
                    self.waiting_on = text;
                }
                Ok(Acquired::Nothing)
            }
            Claim::AllDone => {
                let plan = self.shared.plan.clone();
                let keys = self.shared.keys.clone();
                let finish = ranges::finish(self.client()?, &plan, &keys, &me, lease).await?;
                match finish {
                    Finish::Done => Ok(Acquired::Done),
                    Finish::Busy => Ok(Acquired::Nothing),
                    Finish::Sweep(r) => {
                        self.range = Some(r);
                        Ok(Acquired::Range)
                    }
                }
            }
        }
    }

    /// Runs one chunk transaction (committing synchronously when `yielding`). `Ok(None)` when
    /// the lease was lost.
    async fn chunk(
        &mut self,
        range: &Claimed,
        limit: u32,
        target: Duration,
        effective: Duration,
        yielding: bool,
    ) -> Result<Option<ChunkDone>, StepError> {
        let settings = &self.shared.plan.spec.settings;
        let cap = (target * 5)
            .max(Duration::from_secs(1))
            .min(settings.statement_timeout.std().max(Duration::from_secs(1)));
        let lock = settings.lock_timeout.std().min(cap);
        let Some(statements) = self.statements.as_ref() else {
            return Err(StepError::Connection("not connected".to_string()));
        };
        let Some(client) = self.client.as_ref() else {
            return Err(StepError::Connection("not connected".to_string()));
        };
        let keys =
            crate::backfill::partitions::keys_for(&self.shared.keys, range.partition.as_deref());
        let job = ChunkJob {
            statements,
            keys: &keys,
            plan_id: self.shared.plan.id(),
            owner: &self.me.owner,
            range,
            limit,
            target,
            effective,
            cap,
            lock,
            lease: self.shared.opts.lease,
            flush: yielding,
        };
        let result = job.run(client).await;
        if !matches!(result, Ok(Some(_))) && !client.is_closed() {
            // Leave no transaction open (lease lost, or a failed statement).
            let _ = client.batch_execute("ROLLBACK").await;
        }
        if let Err(e) = &result {
            let leaf = range.partition.as_deref();
            if crate::backfill::partitions::leaf_gone(client, job.plan_id, leaf, e).await? {
                return Ok(None);
            }
        }
        Ok(result?)
    }
}
