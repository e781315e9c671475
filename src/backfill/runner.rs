//! The runner: a supervisor that spawns worker tasks, a throttle task, and the chunk loop.

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use chrono::Utc;
use tokio::sync::watch;
use tokio::task::JoinSet;
use tokio_postgres::Client;

use super::keys::{self, Key, KeySpec};
use super::ranges::{self, Claim, Claimed, Finish, Identity};
use super::sizer::Sizer;
use super::throttle::{Evaluator, Verdict, SIGNAL_TIMEOUT};
use super::{control, BackfillError, RunOptions, RunOutcome, RunSummary};
use crate::control::backfill::{self as state, State, CHECKPOINT_SQL, FENCE_SQL};
use crate::control::phases::{self, PhaseState};
use crate::db::{self, DbConfig, SessionSettings};
use crate::plan::{BackfillSpec, Phase, Plan};

/// Consecutive retryable failures of one worker before the backfill fails.
const MAX_RETRIES: u32 = 30;
/// Smallest share of the target chunk time a worker aims at while its chunks block sessions.
const MIN_CONTENTION_FACTOR: f64 = 0.15;
/// Share of the (effective) target chunk time the sizer aims at: chunk times scatter around
/// their aim, and the headroom keeps the slow tail (p99) within about 1.5× the target.
const AIM: f64 = 0.75;
/// Shortest effective target chunk time under contention.
const MIN_EFFECTIVE_TARGET: Duration = Duration::from_millis(50);

/// Runs (or resumes) the backfill of `plan` in this process until it is done, stopped, or
/// `shutdown` turns true. Requires the engine to have applied the backfill phase.
///
/// Safe to call from several processes at once: they share the work through
/// `cutover.backfill_ranges`, up to the `workers` setting in total.
pub async fn run(
    cfg: DbConfig,
    plan: Plan,
    opts: RunOptions,
    shutdown: watch::Receiver<bool>,
) -> Result<RunSummary, BackfillError> {
    let started = Instant::now();
    let spec = control::spec(&plan)?.clone();
    let mut client = db::connect(&cfg, &SessionSettings::new("backfill")).await?;
    crate::control::schema::bootstrap(&mut client).await?;
    let actor = crate::control::audit::Actor::current(&client).await?;
    crate::control::anchors::authorize(&client, &plan, &actor, crate::plan::Action::BackfillRun)
        .await?;
    check_phase(&client, &plan).await?;
    control::ensure_row(&client, &plan).await?;
    let row = state::load(&client, plan.id()).await?.ok_or_else(|| {
        BackfillError::Db(db::DbError::Query(format!(
            "the backfill row of `{}` vanished",
            plan.id()
        )))
    })?;
    let workers = row.workers;
    match row.state {
        State::Stopped => {
            return Err(BackfillError::Stopped {
                plan: plan.id().to_string(),
                by: row
                    .paused_by
                    .map(|b| format!(" by {b}"))
                    .unwrap_or_default(),
            });
        }
        State::Failed => {
            return Err(BackfillError::Failed {
                plan: plan.id().to_string(),
                message: format!(
                    "{} (fix the cause, then `cutover backfill resume` and run again)",
                    row.reason
                ),
            });
        }
        State::Done => {
            return Ok(RunSummary {
                outcome: RunOutcome::Done,
                chunks: 0,
                rows_scanned: 0,
                rows_updated: 0,
                elapsed: started.elapsed(),
            })
        }
        _ => {}
    }
    // No chunk runs before the health signals have been read once; they are first read while
    // the ranges are planned (the latency guard's baseline window overlaps the planning).
    let (verdict_tx, verdict_rx) =
        watch::channel(Verdict::Throttled("reading the health signals".to_string()));
    let (stop_tx, stop_rx) = watch::channel(false);
    let activity = Arc::new(Activity::new());
    let throttle = tokio::spawn(throttle_loop(
        cfg.clone(),
        plan.clone(),
        opts.throttle_interval,
        verdict_tx,
        stop_rx.clone(),
        activity.clone(),
    ));
    let keys = KeySpec::load(&client, &spec).await?;
    ranges::plan_ranges(
        &mut client,
        &plan,
        &keys,
        workers.max(1) as u32,
        opts.ranges,
    )
    .await?;

    if opts.no_wait {
        let holders = ranges::live_holders(&client, plan.id()).await?;
        if holders.len() >= workers.max(1) as usize {
            return Err(BackfillError::Leased {
                plan: plan.id().to_string(),
                holders: holders
                    .iter()
                    .map(|h| h.to_string())
                    .collect::<Vec<_>>()
                    .join(", "),
            });
        }
    }
    let shared = Arc::new(Shared {
        cfg,
        plan,
        spec,
        keys,
        opts,
        verdict: verdict_rx,
        shutdown,
        totals: Totals::default(),
        activity,
        ended: tokio::sync::Notify::new(),
    });
    let result = supervise(&shared, &mut client).await;
    let _ = stop_tx.send(true);
    let _ = throttle.await;
    if let Ok(RunOutcome::Shutdown) = &result {
        mark_idle_if_unattended(&client, &shared.plan).await;
    }
    let outcome = result?;
    Ok(RunSummary {
        outcome,
        chunks: shared.totals.chunks.load(Ordering::Relaxed),
        rows_scanned: shared.totals.scanned.load(Ordering::Relaxed),
        rows_updated: shared.totals.updated.load(Ordering::Relaxed),
        elapsed: started.elapsed(),
    })
}

/// Refuses unless the engine applied the backfill phase.
async fn check_phase(client: &Client, plan: &Plan) -> Result<(), BackfillError> {
    match phases::state_of(client, plan.id(), Phase::Backfill).await? {
        Some(PhaseState::Applied) => Ok(()),
        state => Err(BackfillError::PhaseNotApplied {
            plan: plan.id().to_string(),
            state,
        }),
    }
}

/// After a shutdown, says so in the state when no worker anywhere still holds a lease.
async fn mark_idle_if_unattended(client: &Client, plan: &Plan) {
    let holders = ranges::live_holders(client, plan.id())
        .await
        .unwrap_or_default();
    if holders.is_empty() {
        let reason = format!(
            "no worker running: {} (pid {}) shut down at its checkpoint; run again to resume",
            crate::db::host_name(),
            std::process::id()
        );
        let _ = state::mark_idle(client, plan.id(), &reason).await;
    }
}

/// When this process last ran a chunk (the latency guard measures its baseline while quiet).
struct Activity {
    base: Instant,
    in_flight: AtomicU64,
    /// Milliseconds after `base` when the latest chunk ended.
    last_end_ms: AtomicU64,
    /// The throttle's latest reading: chunks may run and the application is idle, so the
    /// `idle_workers` may run too.
    app_idle: AtomicBool,
}

impl Activity {
    fn new() -> Activity {
        Activity {
            base: Instant::now(),
            in_flight: AtomicU64::new(0),
            last_end_ms: AtomicU64::new(0),
            app_idle: AtomicBool::new(false),
        }
    }

    fn begin(&self) {
        self.in_flight.fetch_add(1, Ordering::Relaxed);
    }

    fn end(&self) {
        let ms = self.base.elapsed().as_millis() as u64;
        self.last_end_ms.fetch_max(ms, Ordering::Relaxed);
        self.in_flight.fetch_sub(1, Ordering::Relaxed);
    }

    fn app_idle(&self) -> bool {
        self.app_idle.load(Ordering::Relaxed)
    }

    /// How long no chunk has run in this process.
    fn quiet_for(&self) -> Duration {
        if self.in_flight.load(Ordering::Relaxed) > 0 {
            return Duration::ZERO;
        }
        let last = Duration::from_millis(self.last_end_ms.load(Ordering::Relaxed));
        self.base.elapsed().saturating_sub(last)
    }
}

#[derive(Default)]
struct Totals {
    chunks: AtomicU64,
    scanned: AtomicU64,
    updated: AtomicU64,
}

struct Shared {
    cfg: DbConfig,
    plan: Plan,
    spec: BackfillSpec,
    keys: KeySpec,
    opts: RunOptions,
    verdict: watch::Receiver<Verdict>,
    shutdown: watch::Receiver<bool>,
    totals: Totals,
    activity: Arc<Activity>,
    /// Woken when a local worker ends (done, stopped, failed): the others look at the state
    /// row at once instead of after their poll interval.
    ended: tokio::sync::Notify,
}

/// Keeps the local worker count at the target and collects their exits.
async fn supervise(shared: &Arc<Shared>, client: &mut Client) -> Result<RunOutcome, BackfillError> {
    let mut set: JoinSet<Result<RunOutcome, BackfillError>> = JoinSet::new();
    let mut spawned = 0usize;
    let mut outcome: Option<RunOutcome> = None;
    let mut error: Option<BackfillError> = None;
    let mut tick = tokio::time::interval(Duration::from_millis(500));
    loop {
        if outcome.is_none() && error.is_none() {
            // Enough tasks for the idle concurrency; each runs only while its index is within
            // the limit of the moment (see `Worker::step`).
            let target = match shared.opts.local_workers {
                Some(n) => n.max(1) as usize,
                None => state::workers(&*client, shared.plan.id())
                    .await
                    .map(|w| (w.max(1) as usize).max(shared.spec.idle_concurrency() as usize))
                    .unwrap_or(spawned.max(1)),
            };
            while set.len() < target && spawned < 256 {
                let worker = Worker::new(shared.clone(), spawned);
                set.spawn(worker.run());
                spawned += 1;
            }
        }
        tokio::select! {
            joined = set.join_next() => {
                match joined {
                    None => break,
                    Some(Ok(Ok(o))) => {
                        outcome.get_or_insert(o);
                    }
                    Some(Ok(Err(e))) => {
                        error.get_or_insert(e);
                    }
                    Some(Err(join)) => {
                        error.get_or_insert(BackfillError::Failed {
                            plan: shared.plan.id().to_string(),
                            message: format!("a worker task ended abnormally: {join}"),
                        });
                    }
                }
                if outcome.is_some() || error.is_some() {
                    shared.ended.notify_waiters();
                    // Remaining local workers see the same state (done/stopped) or the shutdown;
                    // on an error they are told to stop after their current chunk.
                    if error.is_some() {
                        set.abort_all();
                    }
                }
            }
            _ = tick.tick() => {}
        }
        if (outcome.is_some() || error.is_some()) && set.is_empty() {
            break;
        }
    }
    match (error, outcome) {
        (Some(e), _) => Err(e),
        (None, Some(o)) => Ok(o),
        (None, None) => Ok(RunOutcome::Shutdown),
    }
}

/// Evaluates the health signals and publishes the verdict; records state changes and the time
/// spent throttled in `cutover.backfill`.
async fn throttle_loop(
    cfg: DbConfig,
    plan: Plan,
    interval: Duration,
    verdict: watch::Sender<Verdict>,
    mut stop: watch::Receiver<bool>,
    activity: Arc<Activity>,
) {
    let mut evaluator = Evaluator::new(&plan);
    let mut client: Option<Client> = None;
    let mut recorded = Verdict::Clear;
    let mut last_tick = Instant::now();
    let mut unflushed = 0.0f64;
    let mut last_flush = Instant::now();
    let session = SessionSettings {
        purpose: "backfill/throttle".to_string(),
        statement_timeout: SIGNAL_TIMEOUT,
    };
    loop {
        if client.as_ref().is_none_or(|c| c.is_closed()) {
            client = db::connect(&cfg, &session).await.ok();
        }
        let now = evaluator
            .evaluate(client.as_ref(), activity.quiet_for())
            .await;
        let dt = last_tick.elapsed().as_secs_f64();
        last_tick = Instant::now();
        match &recorded {
            Verdict::Throttled(_) => unflushed += dt,
            // Count the share of the time the guard keeps chunks from running.
            Verdict::Yield { pause, .. } => unflushed += dt * pause / (1.0 + pause),
            Verdict::Clear => {}
        }
        // Published before the verdict, so that workers woken by it see both.
        let idle = matches!(now, Verdict::Clear) && evaluator.guard().app_idle();
        activity.app_idle.store(idle, Ordering::Relaxed);
        verdict.send_replace(now.clone());
        if let Some(c) = client.as_ref() {
            let changed = match (&recorded, &now) {
                // A yield's reason carries live figures: record them about once a second.
                (Verdict::Yield { reason: a, .. }, Verdict::Yield { reason: b, .. }) => {
                    a != b && last_flush.elapsed() >= Duration::from_secs(1)
                }
                (a, b) => a != b,
            };
            if changed {
                match record_verdict(c, plan.id(), &now, unflushed).await {
                    // A yield's new figures are recorded, not logged: one line per event.
                    Ok(())
                        if matches!(
                            (&recorded, &now),
                            (Verdict::Yield { .. }, Verdict::Yield { .. })
                        ) =>
                    {
                        recorded = now;
                        unflushed = 0.0;
                        last_flush = Instant::now();
                    }
                    Ok(()) => {
                        match &now {
                            Verdict::Throttled(r) => {
                                tracing::warn!(plan = plan.id(), "backfill throttled: {r}")
                            }
                            Verdict::Yield { reason, .. } => {
                                tracing::info!(plan = plan.id(), "backfill {reason}")
                            }
                            Verdict::Clear => {
                                tracing::info!(plan = plan.id(), "backfill throttle cleared")
                            }
                        }
                        recorded = now;
                        unflushed = 0.0;
                        last_flush = Instant::now();
                    }
                    Err(e) => tracing::warn!("cannot record the throttle state: {e}"),
                }
            } else if unflushed > 0.0 && last_flush.elapsed() >= Duration::from_secs(1) {
                if state::add_throttled(c, plan.id(), unflushed).await.is_ok() {
                    unflushed = 0.0;
                }
                last_flush = Instant::now();
            }
        }
        // ±20 % at random, so that the latency guard's samples never fall into step with a
        // periodic application.
        let jittered = interval.mul_f64(0.8 + rand::random::<f64>() * 0.4);
        tokio::select! {
            _ = tokio::time::sleep(jittered) => {}
            _ = stop.changed() => break,
        }
    }
    if let Some(c) = client.as_ref() {
        if unflushed > 0.0 {
            let _ = state::add_throttled(c, plan.id(), unflushed).await;
        }
        if !matches!(recorded, Verdict::Clear) {
            let _ = state::clear_throttle(c, plan.id(), 0.0).await;
        }
    }
}

async fn record_verdict(
    client: &Client,
    plan_id: &str,
    verdict: &Verdict,
    throttled: f64,
) -> Result<(), tokio_postgres::Error> {
    match verdict {
        Verdict::Throttled(reason) | Verdict::Yield { reason, .. } => {
            state::throttle(client, plan_id, reason, throttled).await?
        }
        Verdict::Clear => state::clear_throttle(client, plan_id, throttled).await?,
    };
    Ok(())
}

/// The control row as a worker sees it before a chunk.
struct ControlRow {
    state: State,
    target: Duration,
    max_rows_per_sec: u32,
    workers: i64,
    phase: Option<PhaseState>,
    live: i64,
    newest: Option<String>,
}

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

/// The result of one committed chunk.
struct ChunkDone {
    /// Sessions that were waiting on this chunk's locks just before it committed.
    blocked: i32,
    scanned: u64,
    updated: u64,
    upper: Option<Key>,
    range_done: bool,
    elapsed: Duration,
}

struct Worker {
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
    /// Statements prepared on the current connection.
    prepared: Option<Prepared>,
}

/// The chunk's fixed statements, prepared once per connection: a prepared statement is sent
/// in the first poll of its future, so pipelining keeps the order BEGIN … checkpoint, COMMIT.
/// (An unprepared one would first wait for its Parse round trip, and COMMIT would overtake it.)
struct Prepared {
    fence: tokio_postgres::Statement,
    checkpoint: tokio_postgres::Statement,
}

impl Worker {
    fn new(shared: Arc<Shared>, index: usize) -> Worker {
        let s = &shared.spec;
        let sizer = Sizer::new(s.initial_chunk_rows, s.min_chunk_rows, s.max_chunk_rows);
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
            prepared: None,
        }
    }

    async fn run(mut self) -> Result<RunOutcome, BackfillError> {
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
            let _ = state::fail(c, self.shared.plan.id(), &e.to_string()).await;
        }
        self.release().await;
    }

    /// Counts a rolled-back chunk in the state row (best effort).
    async fn count_retry(&mut self) {
        if let Some(c) = self.client.as_ref() {
            let _ = state::count_retry(c, self.shared.plan.id()).await;
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
        let fence = client.prepare(FENCE_SQL).await?;
        let checkpoint = client.prepare(CHECKPOINT_SQL).await?;
        self.prepared = Some(Prepared { fence, checkpoint });
        self.client = Some(client);
        Ok(())
    }

    fn client(&mut self) -> Result<&mut Client, StepError> {
        self.client
            .as_mut()
            .ok_or_else(|| StepError::Connection("not connected".to_string()))
    }

    async fn read_control(&mut self) -> Result<ControlRow, StepError> {
        let plan_id = self.shared.plan.id().to_string();
        let v = state::worker_view(&*self.client()?, &plan_id).await?;
        Ok(ControlRow {
            state: v.state,
            target: Duration::from_millis(v.target_chunk_ms.max(1) as u64),
            max_rows_per_sec: v.max_rows_per_sec.max(0) as u32,
            workers: i64::from(v.workers.max(1)),
            phase: v.phase,
            live: v.live_leases,
            newest: v.newest_lease,
        })
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

    async fn step(&mut self) -> Result<Step, StepError> {
        self.connect().await?;
        let ctl = self.read_control().await?;
        match ctl.state {
            State::Stopped => return Ok(Step::Exit(RunOutcome::Stopped)),
            State::Done => return Ok(Step::Exit(RunOutcome::Done)),
            State::Failed => {
                return Err(StepError::Fatal(BackfillError::Failed {
                    plan: self.shared.plan.id().to_string(),
                    message: "another worker failed; see `cutover backfill status`".to_string(),
                }))
            }
            State::Paused => {
                self.heartbeat().await?;
                return Ok(Step::Wait);
            }
            _ => {}
        }
        if ctl.phase != Some(PhaseState::Applied) {
            let reason = format!(
                "the backfill phase is {} (rolled back?): stopped",
                super::phase_name(ctl.phase)
            );
            let plan_id = self.shared.plan.id().to_string();
            state::stop_unapplied(&*self.client()?, &plan_id, &reason).await?;
            return Ok(Step::Exit(RunOutcome::Stopped));
        }
        let limit = self.concurrency(&ctl);
        if self.index as i64 >= limit {
            // An idle-only worker while the application is active (or a task beyond a tuned-
            // down limit): hand the range back after the chunk it just finished.
            if self.range.is_some() {
                tracing::info!(worker = %self.me.owner, "{limit} worker(s) now: releasing my range");
                let plan_id = self.shared.plan.id().to_string();
                let me = self.me.clone();
                ranges::release(self.client()?, &plan_id, &me).await?;
                self.range = None;
            }
            return Ok(Step::Wait);
        }
        if self.range.is_some()
            && ctl.live > limit
            && ctl.newest.as_deref() == Some(self.me.owner.as_str())
        {
            tracing::info!(worker = %self.me.owner, "workers tuned down to {limit}: releasing my range");
            let plan_id = self.shared.plan.id().to_string();
            let me = self.me.clone();
            ranges::release(self.client()?, &plan_id, &me).await?;
            self.range = None;
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
        let pause = match &*self.shared.verdict.borrow() {
            Verdict::Yield { pause, .. } => *pause,
            _ => 0.0,
        };
        let rows = self.sizer.size();
        let effective = ctl
            .target
            .mul_f64(self.contention / (1.0 + pause))
            .max(MIN_EFFECTIVE_TARGET)
            .min(ctl.target);
        self.shared.activity.begin();
        let result = self.chunk(&range, rows, ctl.target, effective).await;
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
        self.retries = 0;
        self.contention = if done.blocked > 0 {
            (self.contention * 0.5).max(MIN_CONTENTION_FACTOR)
        } else {
            (self.contention * 1.2).min(1.0)
        };
        self.sizer
            .observe(done.scanned, done.elapsed, effective.mul_f64(AIM));
        let t = &self.shared.totals;
        t.chunks.fetch_add(1, Ordering::Relaxed);
        t.scanned.fetch_add(done.scanned, Ordering::Relaxed);
        t.updated.fetch_add(done.updated, Ordering::Relaxed);
        if done.range_done {
            self.range = None;
        } else if let Some(r) = self.range.as_mut() {
            r.checkpoint = done.upper;
        }
        // The rate cap: this worker's rows over the time to its next start stay within its
        // share. The latency guard: pause `pause` × the chunk's time.
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
        Ok(Step::Chunk)
    }

    /// How many workers may run now, across all processes: `workers`, or the idle
    /// concurrency while the application is idle.
    fn concurrency(&self, ctl: &ControlRow) -> i64 {
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

    /// Runs one chunk transaction. `Ok(None)` when the lease was lost.
    async fn chunk(
        &mut self,
        range: &Claimed,
        limit: u32,
        target: Duration,
        effective: Duration,
    ) -> Result<Option<ChunkDone>, StepError> {
        let settings = &self.shared.plan.spec.settings;
        let cap = (target * 5)
            .max(Duration::from_secs(1))
            .min(settings.statement_timeout.std().max(Duration::from_secs(1)));
        let lock = settings.lock_timeout.std().min(cap);
        let keys = self.shared.keys.clone();
        let plan_id = self.shared.plan.id().to_string();
        let owner = self.me.owner.clone();
        let lease_ms = self.shared.opts.lease.as_millis() as f64;
        let Some(prepared) = self.prepared.as_ref() else {
            return Err(StepError::Connection("not connected".to_string()));
        };
        let Some(client) = self.client.as_ref() else {
            return Err(StepError::Connection("not connected".to_string()));
        };
        let job = ChunkJob {
            prepared,
            keys: &keys,
            plan_id: &plan_id,
            owner: &owner,
            range,
            limit,
            target,
            effective,
            cap,
            lock,
            lease_ms,
        };
        let result = job.run(client).await;
        if !matches!(result, Ok(Some(_))) && !client.is_closed() {
            // Leave no transaction open (lease lost, or a failed statement).
            let _ = client.batch_execute("ROLLBACK").await;
        }
        Ok(result?)
    }
}

/// One chunk transaction, pipelined into three round trips: {BEGIN + session limits, lease
/// fence, upper bound}, the UPDATE, {checkpoint + stats, COMMIT}.
struct ChunkJob<'a> {
    prepared: &'a Prepared,
    keys: &'a KeySpec,
    plan_id: &'a str,
    owner: &'a str,
    range: &'a Claimed,
    limit: u32,
    target: Duration,
    effective: Duration,
    cap: Duration,
    lock: Duration,
    lease_ms: f64,
}

impl ChunkJob<'_> {
    /// Runs the chunk; `Ok(None)` when the lease was lost (the caller rolls back).
    async fn run(&self, client: &Client) -> Result<Option<ChunkDone>, tokio_postgres::Error> {
        let keys = self.keys;
        let range = self.range;
        let limit = self.limit.max(1);
        let started_at = Utc::now();
        let started = Instant::now();
        let lo = range.checkpoint.as_ref();
        let hi = range.hi.as_ref();
        let begin = format!(
            "BEGIN; SET LOCAL statement_timeout = {}; SET LOCAL lock_timeout = {}; \
             SET LOCAL enable_seqscan = off; SET LOCAL enable_bitmapscan = off",
            self.cap.as_millis(),
            self.lock.as_millis()
        );
        let bound_sql = keys.bound_sql(lo, hi, i64::from(limit) - 1);
        // The fence locks the range row (a reclaimer skips it) and proves the lease and the
        // checkpoint this worker holds are still the stored ones.
        let fence_params: [&(dyn tokio_postgres::types::ToSql + Sync); 3] =
            [&self.plan_id, &range.range_id, &self.owner];
        let (began, fence, bound) = futures::join!(
            client.batch_execute(&begin),
            client.query_opt(&self.prepared.fence, &fence_params),
            client.query_opt(bound_sql.as_str(), &[]),
        );
        began?;
        let Some(fence) = fence? else {
            return Ok(None);
        };
        let stored = state::key_from_json(fence.get::<_, Option<serde_json::Value>>(0).as_ref());
        if stored.as_ref() != lo {
            tracing::warn!(
                range = range.range_id,
                "the stored checkpoint moved under this worker: dropping the range"
            );
            return Ok(None);
        }
        let bound = bound?.and_then(|r| keys::key_from_row(&r));
        let (upper, scanned, range_done) = match bound {
            Some(k) => {
                let last = Some(&k) == hi;
                (Some(k), u64::from(limit), last)
            }
            None => {
                let n: i64 = client
                    .query_one(keys.count_sql(lo, hi).as_str(), &[])
                    .await?
                    .get(0);
                (range.hi.clone(), n.max(0) as u64, true)
            }
        };
        let updated = if scanned > 0 {
            client
                .execute(keys.update_sql(lo, upper.as_ref()).as_str(), &[])
                .await?
        } else {
            0
        };
        let elapsed = started.elapsed();
        let scanned_i = scanned as i64;
        let updated_i = updated as i64;
        let progress = if range.sweep { updated_i } else { scanned_i };
        let upper_json = upper.as_ref().map(state::key_to_json);
        let lo_json = lo.map(state::key_to_json);
        let target_ms = self.target.as_millis() as i32;
        let elapsed_ms = elapsed.as_secs_f64() * 1000.0;
        let limit_i = limit as i32;
        let effective_ms = self.effective.as_millis() as i32;
        let params: [&(dyn tokio_postgres::types::ToSql + Sync); 15] = [
            &self.plan_id,
            &range.range_id,
            &upper_json,
            &scanned_i,
            &updated_i,
            &range_done,
            &self.lease_ms,
            &self.owner,
            &started_at,
            &elapsed_ms,
            &limit_i,
            &target_ms,
            &lo_json,
            &progress,
            &effective_ms,
        ];
        let (checkpointed, committed) = futures::join!(
            client.query_one(&self.prepared.checkpoint, &params),
            client.batch_execute("COMMIT"),
        );
        // A failed checkpoint aborts the transaction, and COMMIT then rolls it back.
        let blocked: i32 = checkpointed?.get(0);
        committed?;
        Ok(Some(ChunkDone {
            blocked,
            scanned,
            updated,
            upper,
            range_done,
            elapsed: started.elapsed(),
        }))
    }
}
