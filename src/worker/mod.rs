//! The worker: owns the database connections, runs actions, and publishes snapshots to the UI.
//!
//! One monitoring connection (`cutover/tui`, short statement timeout) LISTENs on
//! [`NOTIFY_CHANNEL`](crate::control::schema::NOTIFY_CHANNEL) and re-reads a [`Snapshot`] when anything
//! changes, with a polling fallback every second. Actions run on their own connection
//! (`cutover/tui-action`) in their own task, so the view stays live while an action waits on a
//! lock. When the server is slow or gone, the worker says so and reconnects by itself with
//! backoff; actions asked for meanwhile are refused with the reason.

pub(crate) mod app;
pub mod command;
pub mod snapshot;

use std::collections::VecDeque;
use std::sync::Arc;
use std::time::{Duration, Instant};

use tokio::sync::mpsc;
use tokio::task::JoinHandle;
use tokio_postgres::{Client, Notification};

use crate::control::backfill::State as BackfillState;
use crate::control::facts::Facts;
use crate::control::phases::PhaseState;
use crate::db::{self, DbConfig, DbError, SessionSettings};
use crate::plan::{Phase, Plan};
use crate::rules::ItemKind;

pub use app::{AppControl, AppHandle, AppStatus, AppVersion, RollError};
pub use command::{ActionError, ActionResult, Command};
pub use snapshot::Snapshot;

/// How long a snapshot may take before the server counts as too slow.
const SNAPSHOT_TIMEOUT: Duration = Duration::from_secs(5);
/// Polling fallback (also refreshes `pg_stat_activity`, which does not notify).
const POLL_EVERY: Duration = Duration::from_secs(1);
/// Minimum gap between two snapshots when notifications arrive in bursts.
const MIN_REFRESH_GAP: Duration = Duration::from_millis(250);
/// A writer re-runs the next gate's probes this often …
const EVAL_EVERY: Duration = Duration::from_secs(30);
/// … and after gate-relevant changes, at most this often.
const EVAL_MIN_GAP: Duration = Duration::from_secs(1);
/// While a probe blocks the next gate, its verdict can change with time alone (a reader goes
/// silent, traffic fills the error-budget window): re-run the probes this often.
const EVAL_BLOCKED_EVERY: Duration = Duration::from_secs(5);
/// How long quitting waits for an in-process backfill to reach its checkpoint.
const RUNNER_STOP_WAIT: Duration = Duration::from_secs(10);
/// How often a viewer tries to take over the backfill lease.
const RUNNER_RETRY: Duration = Duration::from_secs(5);
/// The rows/s samples average over this window.
const RATE_WINDOW: Duration = Duration::from_secs(5);
/// Samples kept for the rows/s sparkline.
const RATE_SAMPLES: usize = 120;

/// The worker's connection to the server, as the header shows it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ConnState {
    /// Connecting (attempt number, from 1).
    Connecting {
        /// Attempt number.
        attempt: u32,
    },
    /// Connected and live.
    Connected,
    /// Lost or unreachable; retrying after a pause.
    Retrying {
        /// What went wrong.
        error: String,
        /// Seconds until the next attempt.
        retry_in: u64,
    },
}

impl ConnState {
    /// True when actions can reach the database.
    pub fn is_connected(&self) -> bool {
        matches!(self, ConnState::Connected)
    }
}

/// What the worker tells the UI.
#[derive(Debug, Clone)]
pub enum WorkerEvent {
    /// The connection state changed.
    Conn(ConnState),
    /// A fresh snapshot.
    Snapshot(Box<Snapshot>),
    /// An action finished.
    Action {
        /// What was asked.
        command: Command,
        /// What happened.
        result: ActionResult,
    },
}

/// How to start a worker.
#[derive(Debug, Clone)]
pub struct WorkerOptions {
    /// The server.
    pub db: DbConfig,
    /// The plan in force.
    pub plan: Plan,
    /// Refuse every change.
    pub read_only: bool,
    /// The application `:app` rolls (the demo's), and this process's metrics endpoint.
    pub env: command::Env,
}

/// The UI's side of a running worker.
pub struct WorkerHandle {
    /// Send actions here.
    pub commands: mpsc::UnboundedSender<Command>,
    /// Receive snapshots and results here.
    pub events: mpsc::UnboundedReceiver<WorkerEvent>,
    /// The task (abort or await it on shutdown).
    pub task: JoinHandle<()>,
}

/// Starts the worker task.
pub fn spawn(opts: WorkerOptions) -> WorkerHandle {
    let (cmd_tx, cmd_rx) = mpsc::unbounded_channel();
    let (ev_tx, ev_rx) = mpsc::unbounded_channel();
    let task = tokio::spawn(run(opts, cmd_rx, ev_tx));
    WorkerHandle {
        commands: cmd_tx,
        events: ev_rx,
        task,
    }
}

/// Mutable state the worker keeps across snapshots and reconnects.
struct State {
    opts: WorkerOptions,
    events: mpsc::UnboundedSender<WorkerEvent>,
    rates: VecDeque<u64>,
    rate_points: VecDeque<(Instant, i64)>,
    evaluations: (mpsc::UnboundedSender<()>, mpsc::UnboundedReceiver<()>),
    evaluating: bool,
    /// The connection gate evaluations run on (`cutover/tui-gate`), kept between them.
    gate_client: Arc<tokio::sync::Mutex<Option<Client>>>,
    last_eval: Option<Instant>,
    eval_wanted: bool,
    actor: Option<crate::control::audit::Actor>,
    last_audit_seq: Option<i64>,
    last_phases: Option<Vec<(Phase, PhaseState)>>,
    last_backfill: Option<(BackfillState, String)>,
    runner: Option<JoinHandle<()>>,
    runner_stop: tokio::sync::watch::Sender<bool>,
    runner_tried: Option<Instant>,
    security: Option<db::ConnSecurity>,
}

async fn run(
    opts: WorkerOptions,
    mut commands: mpsc::UnboundedReceiver<Command>,
    events: mpsc::UnboundedSender<WorkerEvent>,
) {
    // Delivers the plan's notifications while the worker runs (a viewer writes nothing).
    let _notifier =
        (!opts.read_only).then(|| crate::notify::spawn(opts.db.clone(), opts.plan.clone()));
    let mut state = State {
        opts,
        events,
        rates: VecDeque::new(),
        rate_points: VecDeque::new(),
        evaluations: mpsc::unbounded_channel(),
        evaluating: false,
        gate_client: Arc::default(),
        last_eval: None,
        eval_wanted: true,
        actor: None,
        last_audit_seq: None,
        last_phases: None,
        last_backfill: None,
        runner: None,
        runner_stop: tokio::sync::watch::channel(false).0,
        runner_tried: None,
        security: None,
    };
    let mut attempt: u32 = 0;
    loop {
        attempt += 1;
        state.send(WorkerEvent::Conn(ConnState::Connecting { attempt }));
        let error = match connect_monitor(&state.opts.db, state.opts.read_only).await {
            Ok((client, notes, security)) => {
                attempt = 0;
                state.security = Some(security);
                state.send(WorkerEvent::Conn(ConnState::Connected));
                match connected(&mut state, &client, notes, &mut commands).await {
                    Ok(()) => return state.shutdown().await,
                    Err(e) => e,
                }
            }
            Err(e) => e,
        }
        .to_string();
        let wait = backoff(attempt);
        tracing::warn!(target: "worker", "database unavailable: {error}; retrying in {}s", wait.as_secs());
        state.send(WorkerEvent::Conn(ConnState::Retrying {
            error,
            retry_in: wait.as_secs().max(1),
        }));
        let deadline = tokio::time::sleep(wait);
        tokio::pin!(deadline);
        loop {
            tokio::select! {
                _ = &mut deadline => break,
                cmd = commands.recv() => match cmd {
                    None => return state.shutdown().await,
                    Some(command) => state.send(WorkerEvent::Action {
                        command,
                        result: Err(ActionError::Unreachable),
                    }),
                },
            }
        }
    }
}

fn backoff(attempt: u32) -> Duration {
    let ms = 250u64.saturating_mul(1 << attempt.min(5));
    Duration::from_millis(ms.min(5_000))
}

impl State {
    /// Stops an in-process backfill at its checkpoint (waits up to [`RUNNER_STOP_WAIT`]).
    async fn shutdown(mut self) {
        let Some(runner) = self.runner.take() else {
            return;
        };
        let _ = self.runner_stop.send(true);
        if tokio::time::timeout(RUNNER_STOP_WAIT, runner)
            .await
            .is_err()
        {
            tracing::warn!(target: "backfill", "the backfill did not stop within {}s", RUNNER_STOP_WAIT.as_secs());
        }
    }

    /// Runs the backfill in this process once its phase is applied, unless it is finished,
    /// stopped or failed, or this is a viewer. Another process holding the lease makes this one
    /// a viewer until the lease frees up (retried every [`RUNNER_RETRY`]).
    fn maybe_run_backfill(&mut self, snap: &Snapshot) {
        if self.opts.read_only || self.opts.plan.spec.backfill.is_none() {
            return;
        }
        if snap.phase_state(Phase::Backfill) != PhaseState::Applied {
            return;
        }
        let state = snap
            .backfill
            .as_ref()
            .map_or(BackfillState::Idle, |b| b.state);
        if matches!(
            state,
            BackfillState::Done | BackfillState::Stopped | BackfillState::Failed
        ) {
            return;
        }
        if self.runner.as_ref().is_some_and(|r| !r.is_finished()) {
            return;
        }
        if self
            .runner_tried
            .is_some_and(|t| t.elapsed() < RUNNER_RETRY)
        {
            return;
        }
        self.runner_tried = Some(Instant::now());
        let (stop_tx, stop_rx) = tokio::sync::watch::channel(false);
        self.runner_stop = stop_tx;
        let cfg = self.opts.db.clone();
        let plan = self.opts.plan.clone();
        self.runner = Some(tokio::spawn(async move {
            let opts = crate::backfill::RunOptions {
                no_wait: true,
                ..crate::backfill::RunOptions::default()
            };
            match crate::backfill::run(cfg, plan, opts, stop_rx).await {
                Ok(summary) => tracing::info!(
                    target: "backfill",
                    "in-process run ended ({:?}): {} chunks, {} rows updated",
                    summary.outcome,
                    summary.chunks,
                    summary.rows_updated
                ),
                Err(crate::backfill::BackfillError::Leased { .. }) => tracing::debug!(
                    target: "backfill",
                    "another process holds the backfill lease: viewing only"
                ),
                Err(e) => tracing::warn!(target: "backfill", "in-process run stopped: {e}"),
            }
        }));
        tracing::info!(target: "backfill", "running the backfill in this process");
    }

    fn send(&self, ev: WorkerEvent) {
        // The UI may already be gone on shutdown; nothing to do then.
        let _ = self.events.send(ev);
    }

    /// Logs what changed since the previous snapshot: new audit entries (from any process),
    /// phase transitions, and backfill state/throttle changes.
    fn log_changes(&mut self, snap: &Snapshot) {
        let newest = snap.audit.first().map(|a| a.seq).unwrap_or(0);
        if let Some(seen) = self.last_audit_seq {
            for a in snap.audit.iter().rev().filter(|a| a.seq > seen) {
                tracing::info!(
                    target: "trail",
                    "#{} {} {}{}",
                    a.seq,
                    a.login,
                    a.action,
                    a.phase.as_deref().map(|p| format!(" ({p})")).unwrap_or_default()
                );
            }
        }
        self.last_audit_seq = Some(newest.max(self.last_audit_seq.unwrap_or(0)));
        let phases: Vec<(Phase, PhaseState)> = snap
            .facts
            .phases
            .iter()
            .map(|p| (p.phase, p.state))
            .collect();
        if let Some(prev) = &self.last_phases {
            for (phase, st) in &phases {
                let before = prev
                    .iter()
                    .find(|(p, _)| p == phase)
                    .map_or(PhaseState::Pending, |(_, s)| *s);
                if before != *st {
                    tracing::info!(target: "phase", "{phase}: {before} → {st}");
                }
            }
        }
        self.last_phases = Some(phases);
        let bf = snap.backfill.as_ref().map(|b| (b.state, b.reason.clone()));
        // A run in this process logs its own throttle changes: one line per event.
        let runs_here = self.runner.as_ref().is_some_and(|r| !r.is_finished());
        // Pacing's figures change every second: only entering and leaving it is an event.
        let pacing = |b: &Option<(BackfillState, String)>| {
            b.as_ref().is_some_and(|(s, _)| *s == BackfillState::Pacing)
        };
        let same_pacing = pacing(&bf) && pacing(&self.last_backfill);
        if bf != self.last_backfill && self.last_backfill.is_some() && !runs_here && !same_pacing {
            if let Some((st, reason)) = &bf {
                let why = match crate::backfill::Pace::of(Some(*st), reason) {
                    crate::backfill::Pace::Pacing(text) => {
                        text.trim_start_matches("pacing").to_string()
                    }
                    crate::backfill::Pace::Held(why) => format!(": {why}"),
                    _ if reason.is_empty() => String::new(),
                    _ => format!(": {reason}"),
                };
                match st {
                    BackfillState::Throttled | BackfillState::Failed => {
                        tracing::warn!(target: "backfill", "{st}{why}")
                    }
                    _ => tracing::info!(target: "backfill", "{st}{why}"),
                }
            }
        }
        self.last_backfill = bf;
    }

    /// Samples rows/s once a second, averaged over the last [`RATE_WINDOW`] so a rate-capped or
    /// bursty backfill draws a readable sparkline.
    fn sample_rate(&mut self, rows: i64) {
        let now = Instant::now();
        if self
            .rate_points
            .back()
            .is_some_and(|(t, _)| now.duration_since(*t) < Duration::from_millis(900))
        {
            return;
        }
        self.rate_points.push_back((now, rows));
        while self
            .rate_points
            .front()
            .is_some_and(|(t, _)| now.duration_since(*t) > RATE_WINDOW)
        {
            self.rate_points.pop_front();
        }
        if let (Some((t0, r0)), Some((t1, r1))) =
            (self.rate_points.front(), self.rate_points.back())
        {
            let secs = t1.duration_since(*t0).as_secs_f64();
            if secs > 0.5 {
                self.rates
                    .push_back(((r1 - r0).max(0) as f64 / secs).round() as u64);
                while self.rates.len() > RATE_SAMPLES {
                    self.rates.pop_front();
                }
            }
        }
    }
}

/// Connects the monitoring session and forwards its notifications.
async fn connect_monitor(
    cfg: &DbConfig,
    read_only: bool,
) -> Result<
    (
        Client,
        mpsc::UnboundedReceiver<Notification>,
        db::ConnSecurity,
    ),
    SessionLost,
> {
    let session = SessionSettings {
        purpose: "tui".to_string(),
        statement_timeout: SNAPSHOT_TIMEOUT,
    };
    let (client, notes, security) = db::connect_listening(cfg, &session)
        .await
        .map_err(SessionLost::Connect)?;
    let mut setup = format!("LISTEN {}", crate::control::schema::NOTIFY_CHANNEL);
    if read_only {
        setup.push_str("; SET default_transaction_read_only = on");
    }
    client
        .batch_execute(&setup)
        .await
        .map_err(SessionLost::Setup)?;
    Ok((client, notes, security))
}

/// Why a monitoring session ended (the worker reconnects).
#[derive(Debug, thiserror::Error)]
enum SessionLost {
    /// Connecting failed.
    #[error(transparent)]
    Connect(DbError),
    /// `LISTEN` (and the read-only setting) failed.
    #[error("{}", db::describe_error(.0))]
    Setup(#[source] tokio_postgres::Error),
    /// The notification stream ended.
    #[error("the connection to the database was lost")]
    Closed,
    /// Reading the snapshot failed on a closed connection.
    #[error("the connection to the database was lost: {0}")]
    Lost(#[source] DbError),
    /// Reading the snapshot failed.
    #[error("reading the control schema failed: {0}")]
    Read(#[source] DbError),
    /// The snapshot took longer than its timeout.
    #[error("the database did not answer within {}s", .0.as_secs())]
    Timeout(Duration),
}

/// Serves one connected session; returns Ok when the UI went away, Err when the connection did.
async fn connected(
    state: &mut State,
    client: &Client,
    mut notes: mpsc::UnboundedReceiver<Notification>,
    commands: &mut mpsc::UnboundedReceiver<Command>,
) -> Result<(), SessionLost> {
    let mut poll = tokio::time::interval(POLL_EVERY);
    poll.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut dirty = true;
    let mut last_refresh: Option<Instant> = None;
    let (done_tx, mut done_rx) = mpsc::unbounded_channel::<(Command, ActionResult)>();
    if !state.opts.read_only {
        register(&state.opts.db, &state.opts.plan).await;
    }
    loop {
        if dirty {
            let wait = last_refresh
                .map(|t| MIN_REFRESH_GAP.saturating_sub(t.elapsed()))
                .unwrap_or_default();
            if wait.is_zero() {
                refresh(state, client).await?;
                last_refresh = Some(Instant::now());
                dirty = false;
            }
        }
        let gap = tokio::time::sleep(if dirty {
            MIN_REFRESH_GAP
        } else {
            Duration::from_secs(3600)
        });
        tokio::select! {
            _ = gap => {}
            _ = poll.tick() => dirty = true,
            note = notes.recv() => match note {
                Some(note) => {
                    let table = note.payload();
                    tracing::trace!(target: "worker", "change notified: {table}");
                    if matches!(
                        table,
                        "signoffs" | "check_results" | "phases" | "migrations" | "flags"
                    ) {
                        state.eval_wanted = true;
                    }
                    dirty = true;
                }
                None => return Err(SessionLost::Closed),
            },
            result = state.evaluations.1.recv() => {
                if result.is_some() {
                    state.evaluating = false;
                    dirty = true;
                }
            }
            done = done_rx.recv() => {
                if let Some((command, result)) = done {
                    state.send(WorkerEvent::Action { command, result });
                    state.eval_wanted = true;
                    dirty = true;
                }
            }
            cmd = commands.recv() => match cmd {
                None => return Ok(()),
                Some(command) => {
                    if state.opts.read_only {
                        let result = Err(command.read_only_refusal());
                        state.send(WorkerEvent::Action { command, result });
                        continue;
                    }
                    let cfg = state.opts.db.clone();
                    let plan = state.opts.plan.clone();
                    let env = state.opts.env.clone();
                    let done = done_tx.clone();
                    tokio::spawn(async move {
                        let result = match db::connect(&cfg, &SessionSettings::new("tui-action")).await {
                            Ok(mut c) => command::execute(&mut c, &cfg, &plan, &env, &command).await,
                            Err(e) => Err(ActionError::Failed(e.to_string())),
                        };
                        let _ = done.send((command, result));
                    });
                }
            },
        }
    }
}

/// Registers the migration with the engine (a no-op when it already is), so the gate and the
/// scorecard can be evaluated from the start. Viewers (`--read-only`) never write.
async fn register(cfg: &DbConfig, plan: &Plan) {
    let result = async {
        let mut client = db::connect(cfg, &SessionSettings::new("tui-setup")).await?;
        let actor = crate::control::audit::Actor::current(&client).await?;
        crate::control::phases::ensure_registered(&mut client, plan, &actor)
            .await
            .map_err(|e| crate::db::DbError::Query(e.to_string()))
    }
    .await;
    match result {
        Ok(true) => tracing::info!(target: "worker", "registered migration {}", plan.id()),
        Ok(false) => {}
        Err(e) => {
            tracing::warn!(target: "worker", "registering migration {} failed: {e}", plan.id())
        }
    }
}

/// Reads a snapshot, evaluates the gate, and publishes it. Starts an engine evaluation of the gate
/// and scorecard when one is due (something gate-relevant changed, or every [`EVAL_EVERY`]).
async fn refresh(state: &mut State, client: &Client) -> Result<(), SessionLost> {
    let mut snap = match tokio::time::timeout(
        SNAPSHOT_TIMEOUT,
        snapshot::load(client, &state.opts.plan),
    )
    .await
    {
        Ok(Ok(s)) => s,
        Ok(Err(e)) => {
            if client.is_closed() {
                return Err(SessionLost::Lost(e));
            }
            return Err(SessionLost::Read(e));
        }
        Err(_) => return Err(SessionLost::Timeout(SNAPSHOT_TIMEOUT)),
    };
    if state.actor.is_none() {
        state.actor = crate::control::audit::Actor::current(client).await.ok();
    }
    snap.actor = state.actor.clone();
    if let Some(b) = &snap.backfill {
        state.sample_rate(b.rows_done);
    }
    state.log_changes(&snap);
    state.maybe_run_backfill(&snap);
    snap.rate_history = state.rates.iter().copied().collect();
    snap.security = state.security.clone();
    snap.app = state.opts.env.app.as_ref().map(|a| a.0.status());
    if has_stale_probe(&snap) {
        state.eval_wanted = true;
    }
    let since = state.last_eval.map(|t| t.elapsed());
    let every = if has_blocking_probe(&snap) {
        EVAL_BLOCKED_EVERY
    } else {
        EVAL_EVERY
    };
    let due = match since {
        None => true,
        Some(e) => e >= every || (state.eval_wanted && e >= EVAL_MIN_GAP),
    };
    let writer = !state.opts.read_only;
    if writer && due && !state.evaluating && snap.facts.registration.is_some() {
        state.evaluating = true;
        state.eval_wanted = false;
        state.last_eval = Some(Instant::now());
        spawn_evaluation(state);
    }
    state.send(WorkerEvent::Snapshot(Box::new(snap)));
    Ok(())
}

fn spawn_evaluation(state: &State) {
    let cfg = state.opts.db.clone();
    let plan = state.opts.plan.clone();
    let tx = state.evaluations.0.clone();
    let kept = state.gate_client.clone();
    tokio::spawn(async move {
        let mut kept = kept.lock().await;
        run_next_probes(&cfg, &plan, &mut kept).await;
        let _ = tx.send(());
    });
}

/// A probe of the next gate does not pass (time alone may change that).
fn has_blocking_probe(snap: &Snapshot) -> bool {
    snap.gate().is_some_and(|g| {
        g.items
            .iter()
            .any(|i| i.kind == ItemKind::Probe && i.outcome != crate::outcome::Outcome::Pass)
    })
}

/// A probe result of the next gate is shown as stale: it is worth re-running.
fn has_stale_probe(snap: &Snapshot) -> bool {
    snap.gate()
        .is_some_and(|g| g.items.iter().any(|i| i.kind == ItemKind::Probe && i.stale))
}

/// Runs (and records) the probes of the next gate, so every view judges fresh results. Only
/// writers do this: a viewer runs no probe. Runs on the `kept` connection, opened when there is
/// none (or it closed) and dropped after a failure or when left inside a transaction block.
async fn run_next_probes(cfg: &DbConfig, plan: &Plan, kept: &mut Option<Client>) {
    if kept.as_ref().is_some_and(Client::is_closed) {
        *kept = None;
    }
    let client = match kept.take() {
        Some(c) => c,
        None => match db::connect(cfg, &SessionSettings::new("tui-gate")).await {
            Ok(c) => c,
            Err(e) => {
                tracing::warn!(target: "worker", "gate evaluation skipped: {e}");
                return;
            }
        },
    };
    let next = match Facts::load(&client, plan.id()).await {
        Ok(f) => f.next_phase(),
        Err(e) => {
            tracing::debug!(target: "worker", "gate evaluation skipped: {e}");
            return;
        }
    };
    let allowed = match crate::control::audit::Actor::current(&client).await {
        Ok(actor) => {
            crate::control::anchors::authorize(&client, plan, &actor, crate::plan::Action::Probe)
                .await
        }
        Err(e) => Err(e.into()),
    };
    match (allowed, next) {
        (Ok(_), Some(next)) => {
            crate::engine::gate::run_probes(&client, plan, next).await;
        }
        (Err(e), _) => tracing::warn!(target: "worker", "gate probes not run: {e}"),
        (Ok(_), None) => {}
    }
    // Kept only when no transaction block was left open on it (a statement sent alone then
    // starts its own transaction).
    let idle = client
        .simple_query("SELECT now() = statement_timestamp() AS idle")
        .await
        .map(|m| {
            m.iter().any(|m| {
                matches!(m, tokio_postgres::SimpleQueryMessage::Row(r) if r.get("idle") == Some("t"))
            })
        });
    if matches!(idle, Ok(true)) {
        *kept = Some(client);
    }
}
