//! `cutover.backfill`, `cutover.backfill_ranges` and `cutover.backfill_chunks`: the backfill's
//! state row and every transition of its state (each guarded by the typed set of states it may
//! leave), the live settings, the key ranges with their leases and checkpoints, the chunk
//! statements of the runner's hot path, and the chunk statistics.
//!
//! Row functions return [`tokio_postgres::Error`] unchanged, so the runner can still classify it
//! by SQLSTATE (a lock or statement timeout is retried, a lost connection reconnects).

use std::time::Duration;

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use serde_json::{json, Value};
use tokio_postgres::{Error, GenericClient, Transaction};

use super::audit::{self, Actor, AuditAction, NewEntry};
use super::phases::PhaseState;
use crate::db::DbError;
use crate::plan::{BackfillSpec, Phase, Plan};

/// The state of a plan's backfill (`cutover.backfill.state`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum State {
    /// Not started, or no worker is running.
    Idle,
    /// Workers are applying chunks.
    Running,
    /// A health signal (or a time window) holds the chunks back; see the reason.
    Throttled,
    /// An operator paused it; see `paused_by`.
    Paused,
    /// An operator (or a rollback of the backfill phase) stopped it; `run` refuses until resumed.
    Stopped,
    /// Every range is covered and the final sweep found no pending row.
    Done,
    /// A chunk failed with a non-retryable error; see the reason.
    Failed,
}

impl State {
    /// Every state.
    pub const ALL: [State; 7] = [
        State::Idle,
        State::Running,
        State::Throttled,
        State::Paused,
        State::Stopped,
        State::Done,
        State::Failed,
    ];

    /// The name stored in the database.
    pub fn as_str(self) -> &'static str {
        match self {
            State::Idle => "idle",
            State::Running => "running",
            State::Throttled => "throttled",
            State::Paused => "paused",
            State::Stopped => "stopped",
            State::Done => "done",
            State::Failed => "failed",
        }
    }

    /// Parses a stored name.
    pub fn parse(s: &str) -> Option<State> {
        State::ALL.into_iter().find(|st| st.as_str() == s)
    }

    /// Parses a stored name; the schema's CHECK admits no other, so anything else reads as idle.
    fn stored(s: &str) -> State {
        State::parse(s).unwrap_or(State::Idle)
    }
}

impl std::fmt::Display for State {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// The states an operator's pause may leave.
pub const PAUSE_FROM: &[State] = &[State::Idle, State::Running, State::Throttled, State::Paused];
/// The states an operator's stop may leave.
pub const STOP_FROM: &[State] = &[
    State::Idle,
    State::Running,
    State::Throttled,
    State::Paused,
    State::Failed,
];
/// The states an operator's resume may leave.
pub const RESUME_FROM: &[State] = &[State::Paused, State::Stopped, State::Failed];
/// The states a health signal may throttle.
pub const THROTTLE_FROM: &[State] = &[State::Idle, State::Running, State::Throttled];
/// The states a cleared health signal lets run again.
pub const CLEAR_FROM: &[State] = &[State::Throttled];
/// The states shown idle when the last worker shut down at its checkpoint.
pub const IDLE_FROM: &[State] = &[State::Running, State::Throttled];
/// The states a worker's failure, or a worker finding the phase no longer applied, may leave.
pub const WORKER_HALT_FROM: &[State] = &[
    State::Idle,
    State::Running,
    State::Throttled,
    State::Paused,
    State::Stopped,
    State::Failed,
];
/// The states the final sweep may declare done.
pub const DONE_FROM: &[State] = &[State::Idle, State::Running, State::Throttled];
/// The states a rollback of the backfill phase stops: all of them.
pub const ROLLBACK_STOP_FROM: &[State] = &State::ALL;

fn names(states: &[State]) -> Vec<&'static str> {
    states.iter().map(|s| s.as_str()).collect()
}

/// Why a guarded transition did not happen.
#[derive(Debug, thiserror::Error)]
pub enum TransitionError {
    /// The backfill is in a state the transition may not leave.
    #[error("the backfill is {0}")]
    Refused(State),
    /// A statement failed.
    #[error(transparent)]
    Db(#[from] DbError),
}

impl From<Error> for TransitionError {
    fn from(e: Error) -> Self {
        TransitionError::Db(e.into())
    }
}

/// A key value of the backfilled table: the text form of each key column.
pub type Key = Vec<String>;

/// A key as stored (a JSON array of strings).
pub fn key_to_json(key: &Key) -> Value {
    Value::Array(key.iter().map(|s| Value::String(s.clone())).collect())
}

/// A stored key; `None` for JSON null or anything that is not an array of strings.
pub fn key_from_json(value: Option<&Value>) -> Option<Key> {
    value?
        .as_array()?
        .iter()
        .map(|v| v.as_str().map(str::to_string))
        .collect()
}

fn key_at(row: &tokio_postgres::Row, i: usize) -> Option<Key> {
    key_from_json(row.get::<_, Option<Value>>(i).as_ref())
}

/// The plan's state row (`cutover.backfill`).
#[derive(Debug, Clone, PartialEq)]
pub struct Row {
    /// State.
    pub state: State,
    /// Why it is throttled, paused, stopped or failed.
    pub reason: String,
    /// Who paused or stopped it.
    pub paused_by: Option<String>,
    /// Live target chunk time (ms).
    pub target_chunk_ms: i32,
    /// Live rate cap (rows/s, 0 = none).
    pub max_rows_per_sec: i32,
    /// Live maximum of concurrent workers across all processes.
    pub workers: i32,
    /// Keys covered by the range pass plus rows fixed by sweeps.
    pub rows_done: i64,
    /// Rows changed.
    pub rows_updated: i64,
    /// Estimated rows in total.
    pub rows_estimate: Option<i64>,
    /// Seconds spent throttled.
    pub throttled_seconds: f64,
    /// Size limit of the latest chunk.
    pub chunk_rows: Option<i32>,
    /// Duration of the latest chunk (ms).
    pub last_chunk_ms: Option<f64>,
    /// Final-sweep passes started.
    pub sweep_passes: i32,
    /// Chunks rolled back and retried smaller.
    pub chunk_retries: i64,
    /// SQL types of the key columns, once ranges are planned.
    pub key_types: Option<Vec<String>>,
    /// When the first chunk ran (or ranges were planned).
    pub started_at: Option<DateTime<Utc>>,
    /// When it was found done.
    pub finished_at: Option<DateTime<Utc>>,
    /// When the state last changed.
    pub state_changed_at: Option<DateTime<Utc>>,
    /// Seconds from `started_at` to `finished_at` (or to now while unfinished).
    pub elapsed_seconds: Option<f64>,
}

/// Reads the plan's state row, if it exists.
pub async fn load(c: &impl GenericClient, plan_id: &str) -> Result<Option<Row>, Error> {
    let row = c
        .query_opt(
            "SELECT state, reason, paused_by, target_chunk_ms, max_rows_per_sec, workers, \
             rows_done, rows_updated, rows_estimate, throttled_seconds, chunk_rows, last_chunk_ms, \
             sweep_passes, chunk_retries, key_types, started_at, finished_at, state_changed_at, \
             extract(epoch FROM coalesce(finished_at, clock_timestamp()) - started_at)::float8 \
             FROM cutover.backfill WHERE plan_id = $1",
            &[&plan_id],
        )
        .await?;
    Ok(row.map(|r| Row {
        state: State::stored(r.get(0)),
        reason: r.get(1),
        paused_by: r.get(2),
        target_chunk_ms: r.get(3),
        max_rows_per_sec: r.get(4),
        workers: r.get(5),
        rows_done: r.get(6),
        rows_updated: r.get(7),
        rows_estimate: r.get(8),
        throttled_seconds: r.get(9),
        chunk_rows: r.get(10),
        last_chunk_ms: r.get(11),
        sweep_passes: r.get(12),
        chunk_retries: r.get(13),
        key_types: r.get(14),
        started_at: r.get(15),
        finished_at: r.get(16),
        state_changed_at: r.get(17),
        elapsed_seconds: r.get(18),
    }))
}

/// Creates the plan's state row from the plan's settings if it does not exist.
pub async fn ensure_row(
    c: &impl GenericClient,
    plan_id: &str,
    spec: &BackfillSpec,
) -> Result<(), Error> {
    let target = i32::try_from(spec.target_chunk_time.as_millis()).unwrap_or(i32::MAX);
    let rate = i32::try_from(spec.max_rows_per_second).unwrap_or(i32::MAX);
    let workers = i32::try_from(spec.workers.max(1)).unwrap_or(i32::MAX);
    c.execute(
        "INSERT INTO cutover.backfill (plan_id, target_chunk_ms, max_rows_per_sec, workers) \
         VALUES ($1, $2, $3, $4) ON CONFLICT (plan_id) DO NOTHING",
        &[&plan_id, &target, &rate, &workers],
    )
    .await?;
    Ok(())
}

/// Creates the row if needed and locks it for the caller's transaction; returns its state.
async fn lock(tx: &Transaction<'_>, plan_id: &str, spec: &BackfillSpec) -> Result<State, Error> {
    ensure_row(tx, plan_id, spec).await?;
    let row = tx
        .query_one(
            "SELECT state FROM cutover.backfill WHERE plan_id = $1 FOR UPDATE",
            &[&plan_id],
        )
        .await?;
    Ok(State::stored(row.get(0)))
}

async fn audit_backfill(
    tx: &Transaction<'_>,
    plan: &Plan,
    actor: &Actor,
    action: AuditAction,
    details: Value,
) -> Result<(), DbError> {
    audit::append(
        tx,
        NewEntry {
            actor,
            plan_id: plan.id(),
            plan_sha256: &plan.sha256(),
            action,
            phase: Some(Phase::Backfill),
            details,
        },
    )
    .await?;
    Ok(())
}

/// Pauses the backfill (from [`PAUSE_FROM`]): no chunk starts until [`resume`]. Audited in the
/// caller's transaction; returns the state it left.
pub async fn pause(
    tx: &Transaction<'_>,
    plan: &Plan,
    spec: &BackfillSpec,
    by: &Actor,
    reason: &str,
) -> Result<State, TransitionError> {
    halt(tx, plan, spec, by, reason, State::Paused, PAUSE_FROM).await
}

/// Stops the backfill (from [`STOP_FROM`]): workers finish their chunk and exit; `run` refuses
/// until [`resume`]. Audited in the caller's transaction; returns the state it left.
pub async fn stop(
    tx: &Transaction<'_>,
    plan: &Plan,
    spec: &BackfillSpec,
    by: &Actor,
    reason: &str,
) -> Result<State, TransitionError> {
    halt(tx, plan, spec, by, reason, State::Stopped, STOP_FROM).await
}

async fn halt(
    tx: &Transaction<'_>,
    plan: &Plan,
    spec: &BackfillSpec,
    by: &Actor,
    reason: &str,
    to: State,
    from: &[State],
) -> Result<State, TransitionError> {
    let (action, verb) = match to {
        State::Stopped => (AuditAction::BackfillStop, "stopped"),
        _ => (AuditAction::BackfillPause, "paused"),
    };
    let state = lock(tx, plan.id(), spec).await?;
    if !from.contains(&state) {
        return Err(TransitionError::Refused(state));
    }
    let text = if reason.trim().is_empty() {
        format!("{verb} by {by}")
    } else {
        format!("{verb} by {by}: {}", reason.trim())
    };
    set_halted(tx, plan.id(), from, to, &text, &by.to_string()).await?;
    audit_backfill(
        tx,
        plan,
        by,
        action,
        json!({ "from": state.as_str(), "reason": reason }),
    )
    .await?;
    Ok(state)
}

/// Moves the state to `to` (paused or stopped) with the reason and who did it.
async fn set_halted(
    c: &impl GenericClient,
    plan_id: &str,
    from: &[State],
    to: State,
    reason: &str,
    by: &str,
) -> Result<bool, Error> {
    let n = c
        .execute(
            "UPDATE cutover.backfill SET state = $4, reason = $2, paused_by = $3, \
             updated_at = clock_timestamp() WHERE plan_id = $1 AND state = ANY($5)",
            &[&plan_id, &reason, &by, &to.as_str(), &names(from)],
        )
        .await?;
    Ok(n > 0)
}

/// Resumes the backfill (from [`RESUME_FROM`]): to running when paused under live workers,
/// else to idle (a new `run` continues from the checkpoint). Audited in the caller's
/// transaction; returns the state it left.
pub async fn resume(
    tx: &Transaction<'_>,
    plan: &Plan,
    spec: &BackfillSpec,
    by: &Actor,
) -> Result<State, TransitionError> {
    let state = lock(tx, plan.id(), spec).await?;
    if !RESUME_FROM.contains(&state) {
        return Err(TransitionError::Refused(state));
    }
    let live: i64 = tx
        .query_one(
            "SELECT count(*) FROM cutover.backfill_ranges WHERE plan_id = $1 AND NOT done \
             AND lease_owner IS NOT NULL AND lease_until >= clock_timestamp()",
            &[&plan.id()],
        )
        .await?
        .get(0);
    let next = if live > 0 && state == State::Paused {
        State::Running
    } else {
        State::Idle
    };
    tx.execute(
        "UPDATE cutover.backfill SET state = $2, reason = $3, paused_by = NULL, \
         finished_at = NULL, updated_at = clock_timestamp() \
         WHERE plan_id = $1 AND state = ANY($4)",
        &[
            &plan.id(),
            &next.as_str(),
            &format!("resumed by {by}"),
            &names(RESUME_FROM),
        ],
    )
    .await?;
    audit_backfill(
        tx,
        plan,
        by,
        AuditAction::BackfillResume,
        json!({ "from": state.as_str() }),
    )
    .await?;
    Ok(state)
}

/// Moves the state to `to` when it is one of `from`, with the reason, adding `throttled`
/// seconds to the time spent throttled; true when it moved.
async fn move_to(
    c: &impl GenericClient,
    plan_id: &str,
    from: &[State],
    to: State,
    reason: &str,
    throttled: f64,
) -> Result<bool, Error> {
    let n = c
        .execute(
            "UPDATE cutover.backfill SET state = $2, reason = $3, \
             throttled_seconds = throttled_seconds + $4, updated_at = clock_timestamp() \
             WHERE plan_id = $1 AND state = ANY($5)",
            &[&plan_id, &to.as_str(), &reason, &throttled, &names(from)],
        )
        .await?;
    Ok(n > 0)
}

/// A health signal holds the backfill back (from [`THROTTLE_FROM`]); `throttled` seconds are
/// added to the time spent throttled.
pub async fn throttle(
    c: &impl GenericClient,
    plan_id: &str,
    reason: &str,
    throttled: f64,
) -> Result<bool, Error> {
    move_to(
        c,
        plan_id,
        THROTTLE_FROM,
        State::Throttled,
        reason,
        throttled,
    )
    .await
}

/// The health signals cleared (from [`CLEAR_FROM`]): running again.
pub async fn clear_throttle(
    c: &impl GenericClient,
    plan_id: &str,
    throttled: f64,
) -> Result<bool, Error> {
    move_to(c, plan_id, CLEAR_FROM, State::Running, "", throttled).await
}

/// The last worker shut down at its checkpoint (from [`IDLE_FROM`]).
pub async fn mark_idle(c: &impl GenericClient, plan_id: &str, reason: &str) -> Result<bool, Error> {
    move_to(c, plan_id, IDLE_FROM, State::Idle, reason, 0.0).await
}

/// A worker hit a non-retryable error, or the sweeps never converge (from [`WORKER_HALT_FROM`]).
pub async fn fail(c: &impl GenericClient, plan_id: &str, reason: &str) -> Result<bool, Error> {
    move_to(c, plan_id, WORKER_HALT_FROM, State::Failed, reason, 0.0).await
}

/// A worker found the backfill phase no longer applied (from [`WORKER_HALT_FROM`]).
pub async fn stop_unapplied(
    c: &impl GenericClient,
    plan_id: &str,
    reason: &str,
) -> Result<bool, Error> {
    move_to(c, plan_id, WORKER_HALT_FROM, State::Stopped, reason, 0.0).await
}

/// A rollback of the backfill phase stops the backfill, whatever its state
/// ([`ROLLBACK_STOP_FROM`]); `by` is the login. False when the plan has no backfill row.
pub async fn stop_for_rollback(
    c: &impl GenericClient,
    plan_id: &str,
    reason: &str,
    by: &str,
) -> Result<bool, Error> {
    set_halted(c, plan_id, ROLLBACK_STOP_FROM, State::Stopped, reason, by).await
}

/// Locks the state row for the final step: its state and the sweep passes started.
pub async fn lock_for_finish(tx: &Transaction<'_>, plan_id: &str) -> Result<(State, i32), Error> {
    let row = tx
        .query_one(
            "SELECT state, sweep_passes FROM cutover.backfill WHERE plan_id = $1 FOR UPDATE",
            &[&plan_id],
        )
        .await?;
    Ok((State::stored(row.get(0)), row.get(1)))
}

/// The final sweep found no pending row: done (from [`DONE_FROM`]), audited as `backfill.done`
/// with the totals, by the session's login, in the caller's transaction.
pub async fn complete(tx: &Transaction<'_>, plan: &Plan) -> Result<(), DbError> {
    tx.execute(
        "UPDATE cutover.backfill SET state = $2, reason = '', \
         finished_at = clock_timestamp(), updated_at = clock_timestamp() \
         WHERE plan_id = $1 AND state = ANY($3)",
        &[&plan.id(), &State::Done.as_str(), &names(DONE_FROM)],
    )
    .await?;
    let totals = tx
        .query_one(
            "SELECT rows_done, rows_updated, sweep_passes, throttled_seconds \
             FROM cutover.backfill WHERE plan_id = $1",
            &[&plan.id()],
        )
        .await?;
    let actor = Actor::current(tx).await?;
    audit_backfill(
        tx,
        plan,
        &actor,
        AuditAction::BackfillDone,
        json!({
            "rows_done": totals.get::<_, i64>(0),
            "rows_updated": totals.get::<_, i64>(1),
            "sweep_passes": totals.get::<_, i32>(2),
            "throttled_seconds": totals.get::<_, f64>(3),
        }),
    )
    .await
}

/// Live settings to change; `None` leaves a setting as it is.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Settings {
    /// Target chunk time (ms).
    pub target_chunk_ms: Option<i32>,
    /// Rate cap (rows/s, 0 = none).
    pub max_rows_per_sec: Option<i32>,
    /// Maximum concurrent workers across all processes.
    pub workers: Option<i32>,
}

/// Changes live settings, audited as `backfill.tune` with the old and new values, in the
/// caller's transaction.
pub async fn tune(
    tx: &Transaction<'_>,
    plan: &Plan,
    spec: &BackfillSpec,
    by: &Actor,
    to: Settings,
) -> Result<(), DbError> {
    lock(tx, plan.id(), spec).await?;
    let before = tx
        .query_one(
            "SELECT target_chunk_ms, max_rows_per_sec, workers FROM cutover.backfill \
             WHERE plan_id = $1",
            &[&plan.id()],
        )
        .await?;
    let old = (
        before.get::<_, i32>(0),
        before.get::<_, i32>(1),
        before.get::<_, i32>(2),
    );
    tx.execute(
        "UPDATE cutover.backfill SET target_chunk_ms = COALESCE($2, target_chunk_ms), \
         max_rows_per_sec = COALESCE($3, max_rows_per_sec), workers = COALESCE($4, workers), \
         updated_at = clock_timestamp() WHERE plan_id = $1",
        &[
            &plan.id(),
            &to.target_chunk_ms,
            &to.max_rows_per_sec,
            &to.workers,
        ],
    )
    .await?;
    audit_backfill(
        tx,
        plan,
        by,
        AuditAction::BackfillTune,
        json!({
            "target_chunk_ms": { "from": old.0, "to": to.target_chunk_ms.unwrap_or(old.0) },
            "max_rows_per_sec": { "from": old.1, "to": to.max_rows_per_sec.unwrap_or(old.1) },
            "workers": { "from": old.2, "to": to.workers.unwrap_or(old.2) },
        }),
    )
    .await
}

/// Adds seconds spent throttled (the throttle task flushes them about once a second).
pub async fn add_throttled(c: &impl GenericClient, plan_id: &str, secs: f64) -> Result<(), Error> {
    c.execute(
        "UPDATE cutover.backfill SET throttled_seconds = throttled_seconds + $2 \
         WHERE plan_id = $1",
        &[&plan_id, &secs],
    )
    .await?;
    Ok(())
}

/// Counts a chunk rolled back by its time cap or a lock conflict.
pub async fn count_retry(c: &impl GenericClient, plan_id: &str) -> Result<(), Error> {
    c.execute(
        "UPDATE cutover.backfill SET chunk_retries = chunk_retries + 1 WHERE plan_id = $1",
        &[&plan_id],
    )
    .await?;
    Ok(())
}

/// The live maximum of concurrent workers.
pub async fn workers(c: &impl GenericClient, plan_id: &str) -> Result<i32, Error> {
    Ok(c.query_one(
        "SELECT workers FROM cutover.backfill WHERE plan_id = $1",
        &[&plan_id],
    )
    .await?
    .get(0))
}

/// What a worker reads before each chunk, in one statement.
#[derive(Debug, Clone, PartialEq)]
pub struct WorkerView {
    /// The backfill's state.
    pub state: State,
    /// Live target chunk time (ms).
    pub target_chunk_ms: i32,
    /// Live rate cap (rows/s, 0 = none).
    pub max_rows_per_sec: i32,
    /// Live maximum of concurrent workers.
    pub workers: i32,
    /// The backfill phase's state (`None` when the migration is not registered).
    pub phase: Option<PhaseState>,
    /// Live leases of unfinished ranges.
    pub live_leases: i64,
    /// The owner of the newest live lease.
    pub newest_lease: Option<String>,
}

/// Reads the [`WorkerView`] of `plan_id`.
pub async fn worker_view(c: &impl GenericClient, plan_id: &str) -> Result<WorkerView, Error> {
    let row = c
        .query_one(
            "SELECT b.state, b.target_chunk_ms, b.max_rows_per_sec, b.workers, \
             (SELECT p.state FROM cutover.phases p \
              WHERE p.plan_id = b.plan_id AND p.phase = $2), \
             (SELECT count(*) FROM cutover.backfill_ranges r WHERE r.plan_id = b.plan_id \
              AND NOT r.done AND r.lease_owner IS NOT NULL \
              AND r.lease_until >= clock_timestamp()), \
             (SELECT r.lease_owner FROM cutover.backfill_ranges r WHERE r.plan_id = b.plan_id \
              AND NOT r.done AND r.lease_owner IS NOT NULL \
              AND r.lease_until >= clock_timestamp() \
              ORDER BY r.lease_since DESC, r.lease_owner DESC LIMIT 1) \
             FROM cutover.backfill b WHERE b.plan_id = $1",
            &[&plan_id, &Phase::Backfill.as_str()],
        )
        .await?;
    Ok(WorkerView {
        state: State::stored(row.get(0)),
        target_chunk_ms: row.get(1),
        max_rows_per_sec: row.get(2),
        workers: row.get(3),
        phase: row
            .get::<_, Option<&str>>(4)
            .map(|s| PhaseState::parse(s).unwrap_or(PhaseState::Failed)),
        live_leases: row.get(5),
        newest_lease: row.get(6),
    })
}

/// Locks the fence of one chunk: the range row, if `$3` still holds its lease; returns the
/// stored checkpoint. Prepared once per connection by the runner (see its `Prepared`).
pub(crate) const FENCE_SQL: &str = "SELECT checkpoint FROM cutover.backfill_ranges \
     WHERE plan_id = $1 AND range_id = $2 AND lease_owner = $3 AND NOT done FOR UPDATE";

/// Writes a chunk's checkpoint, the counters and the chunk's stats inside the chunk's
/// transaction, and counts the sessions waiting on its locks; the one transition it makes is
/// idle → running. Prepared once per connection by the runner and pipelined with COMMIT.
pub(crate) const CHECKPOINT_SQL: &str = "WITH w AS (
                SELECT count(*)::int AS n FROM pg_stat_activity
                WHERE CASE WHEN wait_event_type = 'Lock'
                           THEN pg_backend_pid() = ANY (pg_blocking_pids(pid)) ELSE false END),
             r AS (
                UPDATE cutover.backfill_ranges SET checkpoint = COALESCE($3, checkpoint),
                    rows_done = rows_done + $4, rows_updated = rows_updated + $5,
                    chunks = chunks + 1, done = $6,
                    lease_owner = CASE WHEN $6 THEN NULL ELSE lease_owner END,
                    lease_host = CASE WHEN $6 THEN NULL ELSE lease_host END,
                    lease_pid = CASE WHEN $6 THEN NULL ELSE lease_pid END,
                    lease_since = CASE WHEN $6 THEN NULL ELSE lease_since END,
                    lease_until = CASE WHEN $6 THEN NULL
                                  ELSE clock_timestamp() + $7 * interval '1 millisecond' END,
                    updated_at = clock_timestamp()
                WHERE plan_id = $1 AND range_id = $2 RETURNING 1),
             c AS (
                INSERT INTO cutover.backfill_chunks (plan_id, range_id, worker, started_at,
                    duration_ms, chunk_limit, rows_scanned, rows_updated, target_ms, lo, hi,
                    blocked, effective_ms)
                VALUES ($1, $2, $8, $9, $10, $11, $4, $5, $12, $13, $3, (SELECT n FROM w), $15)),
             b AS (
                UPDATE cutover.backfill SET rows_done = rows_done + $14,
                    rows_updated = rows_updated + $5, chunk_rows = $11, last_chunk_ms = $10,
                    state = CASE WHEN state = 'idle' THEN 'running' ELSE state END,
                    reason = CASE WHEN state = 'idle' THEN '' ELSE reason END,
                    started_at = COALESCE(started_at, clock_timestamp()),
                    updated_at = clock_timestamp()
                WHERE plan_id = $1)
             SELECT n FROM w";

/// Which process and task holds a lease.
#[derive(Debug, Clone)]
pub struct Identity {
    /// Unique owner id: `host:pid:wN:random`.
    pub owner: String,
    /// Host name.
    pub host: String,
    /// Process id.
    pub pid: i32,
}

impl Identity {
    /// A fresh identity for local worker `index`.
    pub fn new(index: usize) -> Identity {
        let host = crate::db::host_name();
        let pid = std::process::id() as i32;
        let nonce = uuid::Uuid::new_v4().simple().to_string();
        Identity {
            owner: format!("{host}:{pid}:w{index}:{}", &nonce[..8]),
            host,
            pid,
        }
    }
}

/// What a range row is for (`cutover.backfill_ranges.kind`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum RangeKind {
    /// A slice of the key space, planned on first start.
    Range,
    /// A final-sweep pass over the keys that existed when it started.
    Sweep,
}

impl RangeKind {
    /// The stored name.
    pub fn as_str(self) -> &'static str {
        match self {
            RangeKind::Range => "range",
            RangeKind::Sweep => "sweep",
        }
    }

    fn stored(s: &str) -> RangeKind {
        if s == "sweep" {
            RangeKind::Sweep
        } else {
            RangeKind::Range
        }
    }
}

impl std::fmt::Display for RangeKind {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Serializes range claims and the final step of one plan for the caller's transaction.
pub async fn lock_ranges(tx: &Transaction<'_>, plan_id: &str) -> Result<(), Error> {
    tx.execute(
        "SELECT pg_advisory_xact_lock(hashtextextended('cutover.backfill:' || $1, 0))",
        &[&plan_id],
    )
    .await?;
    Ok(())
}

/// Ranges planned so far.
pub async fn range_count(c: &impl GenericClient, plan_id: &str) -> Result<i64, Error> {
    Ok(c.query_one(
        "SELECT count(*) FROM cutover.backfill_ranges WHERE plan_id = $1",
        &[&plan_id],
    )
    .await?
    .get(0))
}

/// Ranges not covered yet.
pub async fn open_count(c: &impl GenericClient, plan_id: &str) -> Result<i64, Error> {
    Ok(c.query_one(
        "SELECT count(*) FROM cutover.backfill_ranges WHERE plan_id = $1 AND NOT done",
        &[&plan_id],
    )
    .await?
    .get(0))
}

/// Plans range `range_id` over `(lo, hi]`, its checkpoint at `lo`.
pub async fn insert_range(
    c: &impl GenericClient,
    plan_id: &str,
    range_id: i32,
    lo: Option<&Key>,
    hi: &Key,
    rows_estimate: i64,
) -> Result<(), Error> {
    c.execute(
        "INSERT INTO cutover.backfill_ranges (plan_id, range_id, lo, hi, checkpoint, rows_estimate) \
         VALUES ($1, $2, $3, $4, $3, $5)",
        &[
            &plan_id,
            &range_id,
            &lo.map(key_to_json),
            &key_to_json(hi),
            &rows_estimate,
        ],
    )
    .await?;
    Ok(())
}

/// Records what the range planning found: the row estimate and the key's columns and types.
pub async fn record_planned(
    c: &impl GenericClient,
    plan_id: &str,
    rows_estimate: i64,
    key_columns: &[String],
    key_types: &[String],
) -> Result<(), Error> {
    c.execute(
        "UPDATE cutover.backfill SET rows_estimate = $2, key_columns = $3, key_types = $4, \
         started_at = COALESCE(started_at, clock_timestamp()), updated_at = clock_timestamp() \
         WHERE plan_id = $1",
        &[&plan_id, &rows_estimate, &key_columns, &key_types],
    )
    .await?;
    Ok(())
}

/// A lease as stored.
#[derive(Debug, Clone, PartialEq)]
pub struct Lease {
    /// Owner id.
    pub owner: String,
    /// Host.
    pub host: Option<String>,
    /// Process id.
    pub pid: Option<i32>,
    /// Held since.
    pub since: Option<DateTime<Utc>>,
}

/// The unexpired leases of unfinished ranges, by range.
pub async fn live_leases(c: &impl GenericClient, plan_id: &str) -> Result<Vec<Lease>, Error> {
    let rows = c
        .query(
            "SELECT lease_owner, lease_host, lease_pid, lease_since FROM cutover.backfill_ranges \
             WHERE plan_id = $1 AND NOT done AND lease_owner IS NOT NULL \
             AND lease_until >= clock_timestamp() ORDER BY range_id",
            &[&plan_id],
        )
        .await?;
    Ok(rows
        .iter()
        .map(|r| Lease {
            owner: r.get(0),
            host: r.get(1),
            pid: r.get(2),
            since: r.get(3),
        })
        .collect())
}

/// An unfinished range as a claim sees it.
#[derive(Debug, Clone, PartialEq)]
pub struct OpenRange {
    /// Range id.
    pub range_id: i32,
    /// Range or sweep.
    pub kind: RangeKind,
    /// Upper bound (inclusive).
    pub hi: Option<Key>,
    /// Last key done.
    pub checkpoint: Option<Key>,
    /// Lease holder, if any (live or not).
    pub lease_owner: Option<String>,
    /// Its host.
    pub lease_host: Option<String>,
    /// Its pid.
    pub lease_pid: Option<i32>,
    /// The lease has not expired (`None` without a lease).
    pub lease_live: Option<bool>,
}

/// The unfinished ranges no other transaction has locked, locked for the caller's transaction.
pub async fn lock_open_ranges(
    tx: &Transaction<'_>,
    plan_id: &str,
) -> Result<Vec<OpenRange>, Error> {
    let rows = tx
        .query(
            "SELECT range_id, kind, hi, checkpoint, lease_owner, lease_host, lease_pid, \
             lease_until >= clock_timestamp() AS live \
             FROM cutover.backfill_ranges WHERE plan_id = $1 AND NOT done \
             ORDER BY range_id FOR UPDATE SKIP LOCKED",
            &[&plan_id],
        )
        .await?;
    Ok(rows
        .iter()
        .map(|r| OpenRange {
            range_id: r.get(0),
            kind: RangeKind::stored(r.get(1)),
            hi: key_at(r, 2),
            checkpoint: key_at(r, 3),
            lease_owner: r.get(4),
            lease_host: r.get(5),
            lease_pid: r.get(6),
            lease_live: r.get(7),
        })
        .collect())
}

/// Gives `me` the lease of range `range_id` for `lease`.
pub async fn take_lease(
    tx: &Transaction<'_>,
    plan_id: &str,
    range_id: i32,
    me: &Identity,
    lease: Duration,
) -> Result<(), Error> {
    let lease_ms = lease.as_millis() as f64;
    tx.execute(
        "UPDATE cutover.backfill_ranges SET lease_owner = $3, lease_host = $4, lease_pid = $5, \
         lease_since = clock_timestamp(), \
         lease_until = clock_timestamp() + $6 * interval '1 millisecond', \
         updated_at = clock_timestamp() WHERE plan_id = $1 AND range_id = $2",
        &[&plan_id, &range_id, &me.owner, &me.host, &me.pid, &lease_ms],
    )
    .await?;
    Ok(())
}

/// Renews `owner`'s leases for `lease`; returns how many unfinished ranges it holds.
pub async fn renew_leases(
    c: &impl GenericClient,
    plan_id: &str,
    owner: &str,
    lease: Duration,
) -> Result<u64, Error> {
    let lease_ms = lease.as_millis() as f64;
    c.execute(
        "UPDATE cutover.backfill_ranges \
         SET lease_until = clock_timestamp() + $3 * interval '1 millisecond' \
         WHERE plan_id = $1 AND lease_owner = $2 AND NOT done",
        &[&plan_id, &owner, &lease_ms],
    )
    .await
}

/// Releases `owner`'s leases (the checkpoints stay).
pub async fn release_leases(
    c: &impl GenericClient,
    plan_id: &str,
    owner: &str,
) -> Result<(), Error> {
    c.execute(
        "UPDATE cutover.backfill_ranges SET lease_owner = NULL, lease_host = NULL, \
         lease_pid = NULL, lease_since = NULL, lease_until = NULL, \
         updated_at = clock_timestamp() WHERE plan_id = $1 AND lease_owner = $2",
        &[&plan_id, &owner],
    )
    .await?;
    Ok(())
}

/// Plans a sweep range over `(start, hi]` of `pending` rows, leased to `me`, counts the pass
/// and adds the rows to the estimate; returns the new range's id.
pub async fn start_sweep(
    tx: &Transaction<'_>,
    plan_id: &str,
    hi: Option<&Key>,
    pending: i64,
    me: &Identity,
    lease: Duration,
) -> Result<i32, Error> {
    let range_id: i32 = tx
        .query_one(
            "SELECT COALESCE(max(range_id), 0) + 1 FROM cutover.backfill_ranges WHERE plan_id = $1",
            &[&plan_id],
        )
        .await?
        .get(0);
    let lease_ms = lease.as_millis() as f64;
    tx.execute(
        "INSERT INTO cutover.backfill_ranges (plan_id, range_id, kind, lo, hi, checkpoint, \
         rows_estimate, lease_owner, lease_host, lease_pid, lease_since, lease_until) \
         VALUES ($1, $2, $9, NULL, $3, NULL, $4, $5, $6, $7, clock_timestamp(), \
         clock_timestamp() + $8 * interval '1 millisecond')",
        &[
            &plan_id,
            &range_id,
            &hi.map(key_to_json),
            &pending,
            &me.owner,
            &me.host,
            &me.pid,
            &lease_ms,
            &RangeKind::Sweep.as_str(),
        ],
    )
    .await?;
    tx.execute(
        "UPDATE cutover.backfill SET sweep_passes = sweep_passes + 1, \
         rows_estimate = COALESCE(rows_estimate, 0) + $2, updated_at = clock_timestamp() \
         WHERE plan_id = $1",
        &[&plan_id, &pending],
    )
    .await?;
    Ok(range_id)
}

/// One key range as stored, with its lease.
#[derive(Debug, Clone, Serialize)]
pub struct RangeRow {
    /// Range id.
    pub range_id: i32,
    /// Range or sweep.
    pub kind: RangeKind,
    /// Covered completely.
    pub done: bool,
    /// Keys covered.
    pub rows_done: i64,
    /// Rows changed.
    pub rows_updated: i64,
    /// Estimated keys in the range.
    pub rows_estimate: Option<i64>,
    /// Chunks committed.
    pub chunks: i64,
    /// Last key done.
    pub checkpoint: Option<Key>,
    /// Lower bound (exclusive; `None` for the first range).
    pub lo: Option<Key>,
    /// Upper bound (inclusive).
    pub hi: Option<Key>,
    /// Lease holder.
    pub lease_owner: Option<String>,
    /// Lease holder's host.
    pub lease_host: Option<String>,
    /// Lease holder's pid.
    pub lease_pid: Option<i32>,
    /// Held since.
    pub lease_since: Option<DateTime<Utc>>,
    /// Lease valid until.
    pub lease_until: Option<DateTime<Utc>>,
    /// The lease is currently valid.
    pub lease_live: bool,
}

/// Every range of `plan_id`, by id.
pub async fn ranges(c: &impl GenericClient, plan_id: &str) -> Result<Vec<RangeRow>, Error> {
    let rows = c
        .query(
            "SELECT range_id, kind, done, rows_done, rows_updated, rows_estimate, chunks, \
             checkpoint, hi, lease_owner, lease_host, lease_pid, lease_since, lease_until, \
             COALESCE(lease_owner IS NOT NULL AND lease_until >= clock_timestamp(), false), lo \
             FROM cutover.backfill_ranges WHERE plan_id = $1 ORDER BY range_id",
            &[&plan_id],
        )
        .await?;
    Ok(rows
        .iter()
        .map(|r| RangeRow {
            range_id: r.get(0),
            kind: RangeKind::stored(r.get(1)),
            done: r.get(2),
            rows_done: r.get(3),
            rows_updated: r.get(4),
            rows_estimate: r.get(5),
            chunks: r.get(6),
            checkpoint: key_at(r, 7),
            hi: key_at(r, 8),
            lease_owner: r.get(9),
            lease_host: r.get(10),
            lease_pid: r.get(11),
            lease_since: r.get(12),
            lease_until: r.get(13),
            lease_live: r.get(14),
            lo: key_at(r, 15),
        })
        .collect())
}

/// Seconds since the latest checkpoint was written (`None` before the first chunk).
pub async fn checkpoint_age(c: &impl GenericClient, plan_id: &str) -> Result<Option<f64>, Error> {
    Ok(c.query_one(
        "SELECT extract(epoch FROM clock_timestamp() - max(updated_at))::float8 \
         FROM cutover.backfill_ranges WHERE plan_id = $1 AND chunks > 0",
        &[&plan_id],
    )
    .await?
    .get(0))
}

/// Contention seen by the latest chunk.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Contention {
    /// Sessions waiting on its row locks when it committed.
    pub blocked: i32,
    /// The target it aimed at (ms).
    pub effective_ms: Option<i32>,
}

/// The latest chunk's [`Contention`], if a chunk ran.
pub async fn latest_contention(
    c: &impl GenericClient,
    plan_id: &str,
) -> Result<Option<Contention>, Error> {
    Ok(c.query_opt(
        "SELECT blocked, effective_ms FROM cutover.backfill_chunks WHERE plan_id = $1 \
         ORDER BY id DESC LIMIT 1",
        &[&plan_id],
    )
    .await?
    .map(|r| Contention {
        blocked: r.get(0),
        effective_ms: r.get(1),
    }))
}

/// Median and 99th percentile duration (ms) of the latest 500 chunks.
pub async fn chunk_percentiles(
    c: &impl GenericClient,
    plan_id: &str,
) -> Result<(Option<f64>, Option<f64>), Error> {
    let r = c
        .query_one(
            "SELECT percentile_cont(0.5) WITHIN GROUP (ORDER BY duration_ms), \
             percentile_cont(0.99) WITHIN GROUP (ORDER BY duration_ms) \
             FROM (SELECT duration_ms FROM cutover.backfill_chunks WHERE plan_id = $1 \
                   ORDER BY id DESC LIMIT 500) s",
            &[&plan_id],
        )
        .await?;
    Ok((r.get(0), r.get(1)))
}

/// The latest 60 chunks, newest first: (rows scanned, start, end) in epoch seconds.
pub async fn recent_chunks(
    c: &impl GenericClient,
    plan_id: &str,
) -> Result<Vec<(f64, f64, f64)>, Error> {
    let rows = c
        .query(
            "SELECT rows_scanned, extract(epoch FROM started_at)::float8, \
             extract(epoch FROM finished_at)::float8 FROM cutover.backfill_chunks \
             WHERE plan_id = $1 ORDER BY id DESC LIMIT 60",
            &[&plan_id],
        )
        .await?;
    Ok(rows
        .iter()
        .map(|r| (r.get::<_, i64>(0) as f64, r.get(1), r.get(2)))
        .collect())
}

/// The server's clock (epoch seconds), the time base of the chunk stats.
pub async fn db_now(c: &impl GenericClient) -> Result<f64, Error> {
    Ok(
        c.query_one("SELECT extract(epoch FROM clock_timestamp())::float8", &[])
            .await?
            .get(0),
    )
}

/// Rows scanned per 5-second bucket of the last 2 minutes: (buckets ago, rows).
pub async fn rate_buckets(c: &impl GenericClient, plan_id: &str) -> Result<Vec<(i32, f64)>, Error> {
    let rows = c
        .query(
            "SELECT floor(extract(epoch FROM clock_timestamp() - finished_at) / 5)::int, \
             sum(rows_scanned)::float8 FROM cutover.backfill_chunks \
             WHERE plan_id = $1 AND finished_at > clock_timestamp() - interval '120 seconds' \
             GROUP BY 1",
            &[&plan_id],
        )
        .await?;
    Ok(rows.iter().map(|r| (r.get(0), r.get(1))).collect())
}

/// Rows changed by the chunks of the last minute, and the seconds they span (`None` without
/// chunks).
pub async fn last_minute(
    c: &impl GenericClient,
    plan_id: &str,
) -> Result<(f64, Option<f64>), Error> {
    let r = c
        .query_one(
            "SELECT coalesce(sum(rows_updated), 0)::float8,
                    extract(epoch FROM max(finished_at) - min(started_at))::float8
               FROM cutover.backfill_chunks
              WHERE plan_id = $1 AND finished_at > clock_timestamp() - interval '60 seconds'",
            &[&plan_id],
        )
        .await?;
    Ok((r.get(0), r.get(1)))
}

/// Chunks grouped by the first of `bounds` (seconds) their duration fits under: (1-based
/// bucket, or `None` above every bound; chunks; total seconds).
pub async fn duration_buckets(
    c: &impl GenericClient,
    plan_id: &str,
    bounds: &[f64],
) -> Result<Vec<(Option<i32>, i64, f64)>, Error> {
    let rows = c
        .query(
            "SELECT (SELECT min(u.i) FROM unnest($2::float8[]) WITH ORDINALITY u(b, i)
                      WHERE c.duration_ms / 1000.0 <= u.b)::int4,
                    count(*), sum(c.duration_ms)::float8 / 1000.0
               FROM cutover.backfill_chunks c WHERE c.plan_id = $1 GROUP BY 1",
            &[&plan_id, &bounds],
        )
        .await?;
    Ok(rows
        .iter()
        .map(|r| (r.get(0), r.get(1), r.get(2)))
        .collect())
}

/// Chunk statistics over several plans' backfills (the benchmark's figures).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct ChunkSummary {
    /// Chunks.
    pub chunks: i64,
    /// Sum of the chunks' own durations (s).
    pub work_seconds: f64,
    /// Sum over plans of last chunk end − first chunk start (s).
    pub span_seconds: f64,
    /// Median chunk duration (ms).
    pub p50_ms: f64,
    /// 99th percentile chunk duration (ms).
    pub p99_ms: f64,
    /// Longest chunk (ms).
    pub max_ms: f64,
}

/// The [`ChunkSummary`] of the backfills of `plan_ids`.
pub async fn chunk_summary(
    c: &impl GenericClient,
    plan_ids: &[String],
) -> Result<ChunkSummary, Error> {
    let row = c
        .query_one(
            "SELECT COALESCE(percentile_cont(0.5) WITHIN GROUP (ORDER BY duration_ms), 0),
                    COALESCE(percentile_cont(0.99) WITHIN GROUP (ORDER BY duration_ms), 0),
                    COALESCE(max(duration_ms), 0), count(*),
                    COALESCE(sum(duration_ms), 0) / 1000,
                    (SELECT COALESCE(sum(extract(epoch FROM e - b)), 0)::float8 FROM
                       (SELECT min(started_at) b, max(finished_at) e FROM cutover.backfill_chunks
                         WHERE plan_id = ANY($1) GROUP BY plan_id) s)
               FROM cutover.backfill_chunks WHERE plan_id = ANY($1)",
            &[&plan_ids],
        )
        .await?;
    Ok(ChunkSummary {
        p50_ms: row.get(0),
        p99_ms: row.get(1),
        max_ms: row.get(2),
        chunks: row.get(3),
        work_seconds: row.get(4),
        span_seconds: row.get(5),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn guards_keep_done_and_halts_final() {
        for (name, from) in [
            ("pause", PAUSE_FROM),
            ("stop", STOP_FROM),
            ("resume", RESUME_FROM),
            ("throttle", THROTTLE_FROM),
            ("clear", CLEAR_FROM),
            ("idle", IDLE_FROM),
            ("worker halt", WORKER_HALT_FROM),
            ("done", DONE_FROM),
        ] {
            assert!(!from.contains(&State::Done), "{name} may leave done");
        }
        for from in [THROTTLE_FROM, CLEAR_FROM, IDLE_FROM, DONE_FROM] {
            for halted in [State::Paused, State::Stopped, State::Failed] {
                assert!(!from.contains(&halted), "{halted} left by a worker");
            }
        }
        assert!(!PAUSE_FROM.contains(&State::Stopped) && !PAUSE_FROM.contains(&State::Failed));
        assert!(!STOP_FROM.contains(&State::Stopped) && STOP_FROM.contains(&State::Failed));
        assert_eq!(RESUME_FROM, [State::Paused, State::Stopped, State::Failed]);
        assert!(ROLLBACK_STOP_FROM.contains(&State::Done));
    }

    #[test]
    fn states_and_kinds_round_trip() {
        for s in State::ALL {
            assert_eq!(State::parse(s.as_str()), Some(s));
        }
        assert_eq!(State::parse("missing"), None);
        for k in [RangeKind::Range, RangeKind::Sweep] {
            assert_eq!(RangeKind::stored(k.as_str()), k);
        }
    }

    #[test]
    fn keys_round_trip_through_json() {
        let key = vec!["7".to_string(), "x".to_string()];
        assert_eq!(key_from_json(Some(&key_to_json(&key))), Some(key));
        assert_eq!(key_from_json(Some(&Value::Null)), None);
        assert_eq!(key_from_json(Some(&json!([1, 2]))), None);
    }
}
