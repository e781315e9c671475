//! Every transition of `cutover.backfill.state`, each guarded by the typed set of states it may
//! leave: the operator's pause, stop and resume (audited in the caller's transaction), the
//! throttle's and the workers' moves, the final step, and a rollback's stop.

use serde_json::{json, Value};
use tokio_postgres::{Error, GenericClient, Transaction};

use super::state::{
    ensure_row, State, CLEAR_FROM, DONE_FROM, IDLE_FROM, PAUSE_FROM, RESUME_FROM,
    ROLLBACK_STOP_FROM, STOP_FROM, THROTTLE_FROM, WORKER_HALT_FROM,
};
use crate::control::audit::{self, Actor, AuditAction, NewEntry};
use crate::db::DbError;
use crate::plan::{BackfillSpec, Phase, Plan};

fn names(states: &[State]) -> Vec<&'static str> {
    states.iter().map(|s| s.as_str()).collect()
}

/// Why a guarded transition did not happen.
#[derive(Debug, thiserror::Error)]
pub(crate) enum TransitionError {
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

/// Creates the row if needed and locks it for the caller's transaction; returns its state.
pub(super) async fn lock(
    tx: &Transaction<'_>,
    plan_id: &str,
    spec: &BackfillSpec,
) -> Result<State, Error> {
    ensure_row(tx, plan_id, spec).await?;
    let row = tx
        .query_one(
            "SELECT state FROM cutover.backfill WHERE plan_id = $1 FOR UPDATE",
            &[&plan_id],
        )
        .await?;
    Ok(State::stored(row.get("state")))
}

pub(super) async fn audit_backfill(
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
pub(crate) async fn pause(
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
pub(crate) async fn stop(
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
pub(crate) async fn resume(
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
            "SELECT count(*) AS live FROM cutover.backfill_ranges WHERE plan_id = $1 \
             AND NOT done AND lease_owner IS NOT NULL AND lease_until >= clock_timestamp()",
            &[&plan.id()],
        )
        .await?
        .get("live");
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
pub(crate) async fn throttle(
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

/// The latency guard slows the chunks down (from [`THROTTLE_FROM`]): they run, each followed by
/// a pause; `throttled` seconds (the share of time the pauses take) are added to the time spent
/// throttled.
pub(crate) async fn pace(
    c: &impl GenericClient,
    plan_id: &str,
    reason: &str,
    throttled: f64,
) -> Result<bool, Error> {
    move_to(c, plan_id, THROTTLE_FROM, State::Pacing, reason, throttled).await
}

/// The health signals cleared, and the guard paces no more (from [`CLEAR_FROM`]): running
/// again.
pub(crate) async fn clear_throttle(
    c: &impl GenericClient,
    plan_id: &str,
    throttled: f64,
) -> Result<bool, Error> {
    move_to(c, plan_id, CLEAR_FROM, State::Running, "", throttled).await
}

/// The last worker shut down at its checkpoint (from [`IDLE_FROM`]).
pub(crate) async fn mark_idle(
    c: &impl GenericClient,
    plan_id: &str,
    reason: &str,
) -> Result<bool, Error> {
    move_to(c, plan_id, IDLE_FROM, State::Idle, reason, 0.0).await
}

/// A worker hit a non-retryable error, or the sweeps never converge (from [`WORKER_HALT_FROM`]).
pub(crate) async fn fail(
    c: &impl GenericClient,
    plan_id: &str,
    reason: &str,
) -> Result<bool, Error> {
    move_to(c, plan_id, WORKER_HALT_FROM, State::Failed, reason, 0.0).await
}

/// A worker found the backfill phase no longer applied (from [`WORKER_HALT_FROM`]).
pub(crate) async fn stop_unapplied(
    c: &impl GenericClient,
    plan_id: &str,
    reason: &str,
) -> Result<bool, Error> {
    move_to(c, plan_id, WORKER_HALT_FROM, State::Stopped, reason, 0.0).await
}

/// A rollback of the backfill phase stops the backfill, whatever its state
/// ([`ROLLBACK_STOP_FROM`]); `by` is the login. False when the plan has no backfill row.
pub(crate) async fn stop_for_rollback(
    c: &impl GenericClient,
    plan_id: &str,
    reason: &str,
    by: &str,
) -> Result<bool, Error> {
    set_halted(c, plan_id, ROLLBACK_STOP_FROM, State::Stopped, reason, by).await
}

/// Locks the state row for the final step: its state and the sweep passes started.
pub(crate) async fn lock_for_finish(
    tx: &Transaction<'_>,
    plan_id: &str,
) -> Result<(State, i32), Error> {
    let row = tx
        .query_one(
            "SELECT state, sweep_passes FROM cutover.backfill WHERE plan_id = $1 FOR UPDATE",
            &[&plan_id],
        )
        .await?;
    Ok((State::stored(row.get("state")), row.get("sweep_passes")))
}

/// The final sweep found no pending row: done (from [`DONE_FROM`]), audited as `backfill.done`
/// with the totals, by the session's login, in the caller's transaction.
pub(crate) async fn complete(tx: &Transaction<'_>, plan: &Plan) -> Result<(), DbError> {
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
            "rows_done": totals.get::<_, i64>("rows_done"),
            "rows_updated": totals.get::<_, i64>("rows_updated"),
            "sweep_passes": totals.get::<_, i32>("sweep_passes"),
            "throttled_seconds": totals.get::<_, f64>("throttled_seconds"),
        }),
    )
    .await
}

/// Adds seconds spent throttled (the throttle task flushes them about once a second).
pub(crate) async fn add_throttled(
    c: &impl GenericClient,
    plan_id: &str,
    secs: f64,
) -> Result<(), Error> {
    c.execute(
        "UPDATE cutover.backfill SET throttled_seconds = throttled_seconds + $2 \
         WHERE plan_id = $1",
        &[&plan_id, &secs],
    )
    .await?;
    Ok(())
}
