//! Operator controls: pause, resume, stop and live retuning. Each writes `cutover.backfill` and
//! its audit entry in one transaction; running workers (in any process) pick the change up
//! before their next chunk.

use serde_json::json;
use tokio_postgres::{Client, GenericClient};

use super::BackfillError;
use crate::control::anchors::authorize;
use crate::control::audit::{self, Actor, NewEntry};
use crate::control::backfill::State;
use crate::plan::Action;
use crate::plan::{BackfillSpec, Phase, Plan};

/// Live settings to change; `None` leaves a setting as it is.
#[derive(Debug, Clone, Default)]
pub struct Tuning {
    /// Target chunk time.
    pub target_chunk_time: Option<std::time::Duration>,
    /// Rate cap in rows per second (0 = none).
    pub max_rows_per_second: Option<u32>,
    /// Maximum concurrent workers across all processes.
    pub workers: Option<u32>,
}

/// The plan's `[backfill]` section, or an error naming the plan.
pub fn spec(plan: &Plan) -> Result<&BackfillSpec, BackfillError> {
    plan.spec
        .backfill
        .as_ref()
        .ok_or_else(|| BackfillError::NoBackfill(plan.id().to_string()))
}

/// Creates the plan's `cutover.backfill` row from the plan's settings if it does not exist.
pub async fn ensure_row(client: &impl GenericClient, plan: &Plan) -> Result<(), BackfillError> {
    let b = spec(plan)?;
    let target = i32::try_from(b.target_chunk_time.as_millis()).unwrap_or(i32::MAX);
    let rate = i32::try_from(b.max_rows_per_second).unwrap_or(i32::MAX);
    let workers = i32::try_from(b.workers.max(1)).unwrap_or(i32::MAX);
    client
        .execute(
            "INSERT INTO cutover.backfill (plan_id, target_chunk_ms, max_rows_per_sec, workers) \
             VALUES ($1, $2, $3, $4) ON CONFLICT (plan_id) DO NOTHING",
            &[&plan.id(), &target, &rate, &workers],
        )
        .await?;
    Ok(())
}

/// The stored state of the plan's backfill, locking the row for the caller's transaction.
async fn lock_state(
    client: &impl GenericClient,
    plan: &Plan,
) -> Result<(State, Option<String>), BackfillError> {
    ensure_row(client, plan).await?;
    let row = client
        .query_one(
            "SELECT state, paused_by FROM cutover.backfill WHERE plan_id = $1 FOR UPDATE",
            &[&plan.id()],
        )
        .await?;
    let state: String = row.get(0);
    Ok((State::parse(&state).unwrap_or(State::Idle), row.get(1)))
}

async fn record(
    tx: &impl GenericClient,
    plan: &Plan,
    actor: &Actor,
    action: &str,
    details: serde_json::Value,
) -> Result<(), BackfillError> {
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

/// Pauses the backfill: no chunk starts until [`resume`]. Refused when done or stopped.
pub async fn pause(
    client: &mut Client,
    plan: &Plan,
    actor: &Actor,
    reason: &str,
) -> Result<(), BackfillError> {
    authorize(&*client, plan, actor, Action::Pause).await?;
    halt(
        client,
        plan,
        actor,
        reason,
        State::Paused,
        &[State::Done, State::Stopped, State::Failed],
    )
    .await
}

/// Resumes a paused or stopped backfill. A running worker continues at once; after a stop, a
/// new `cutover backfill run` continues from the checkpoint. A failed backfill may be resumed
/// once its cause is fixed.
pub async fn resume(client: &mut Client, plan: &Plan, actor: &Actor) -> Result<(), BackfillError> {
    authorize(&*client, plan, actor, Action::Resume).await?;
    let tx = client.transaction().await?;
    let (state, _) = lock_state(&tx, plan).await?;
    if !matches!(state, State::Paused | State::Stopped | State::Failed) {
        return Err(BackfillError::NotApplicable {
            action: "resume",
            plan: plan.id().to_string(),
            state,
        });
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
         finished_at = NULL, updated_at = clock_timestamp() WHERE plan_id = $1",
        &[&plan.id(), &next.as_str(), &format!("resumed by {actor}")],
    )
    .await?;
    record(
        &tx,
        plan,
        actor,
        "backfill.resume",
        json!({ "from": state.as_str() }),
    )
    .await?;
    tx.commit().await?;
    Ok(())
}

/// Stops the backfill: workers finish their current chunk, release their ranges and exit. The
/// checkpoint is kept; `run` refuses until [`resume`].
pub async fn stop(
    client: &mut Client,
    plan: &Plan,
    actor: &Actor,
    reason: &str,
) -> Result<(), BackfillError> {
    authorize(&*client, plan, actor, Action::Stop).await?;
    halt(
        client,
        plan,
        actor,
        reason,
        State::Stopped,
        &[State::Done, State::Stopped],
    )
    .await
}

/// Moves the backfill to `target` (paused or stopped) with the actor and reason, audited in the
/// same transaction; refused from any state in `refused_from`.
async fn halt(
    client: &mut Client,
    plan: &Plan,
    actor: &Actor,
    reason: &str,
    target: State,
    refused_from: &[State],
) -> Result<(), BackfillError> {
    let (action, verb) = match target {
        State::Stopped => ("stop", "stopped"),
        _ => ("pause", "paused"),
    };
    let tx = client.transaction().await?;
    let (state, _) = lock_state(&tx, plan).await?;
    if refused_from.contains(&state) {
        return Err(BackfillError::NotApplicable {
            action,
            plan: plan.id().to_string(),
            state,
        });
    }
    let text = if reason.trim().is_empty() {
        format!("{verb} by {actor}")
    } else {
        format!("{verb} by {actor}: {}", reason.trim())
    };
    tx.execute(
        "UPDATE cutover.backfill SET state = $4, reason = $2, paused_by = $3, \
         updated_at = clock_timestamp() WHERE plan_id = $1",
        &[&plan.id(), &text, &actor.to_string(), &target.as_str()],
    )
    .await?;
    record(
        &tx,
        plan,
        actor,
        &format!("backfill.{action}"),
        json!({ "from": state.as_str(), "reason": reason }),
    )
    .await?;
    tx.commit().await?;
    Ok(())
}

/// Changes live settings; running workers follow them from their next chunk.
pub async fn tune(
    client: &mut Client,
    plan: &Plan,
    actor: &Actor,
    tuning: &Tuning,
) -> Result<(), BackfillError> {
    authorize(&*client, plan, actor, Action::Tune).await?;
    let target = match tuning.target_chunk_time {
        Some(d) => {
            let ms = d.as_millis();
            if !(10..=600_000).contains(&ms) {
                return Err(BackfillError::Invalid(format!(
                    "target chunk time {} is out of range: use 10ms to 10m",
                    humantime::format_duration(d)
                )));
            }
            Some(ms as i32)
        }
        None => None,
    };
    let rate = tuning
        .max_rows_per_second
        .map(|r| i32::try_from(r).unwrap_or(i32::MAX));
    let workers = match tuning.workers {
        Some(w) if !(1..=256).contains(&w) => {
            return Err(BackfillError::Invalid(format!(
                "workers = {w} is out of range: use 1 to 256"
            )))
        }
        Some(w) => Some(w as i32),
        None => None,
    };
    if target.is_none() && rate.is_none() && workers.is_none() {
        return Err(BackfillError::Invalid(
            "nothing to tune: give --target-chunk-time, --max-rows-per-second or --workers"
                .to_string(),
        ));
    }
    let tx = client.transaction().await?;
    lock_state(&tx, plan).await?;
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
        &[&plan.id(), &target, &rate, &workers],
    )
    .await?;
    record(
        &tx,
        plan,
        actor,
        "backfill.tune",
        json!({
            "target_chunk_ms": { "from": old.0, "to": target.unwrap_or(old.0) },
            "max_rows_per_sec": { "from": old.1, "to": rate.unwrap_or(old.1) },
            "workers": { "from": old.2, "to": workers.unwrap_or(old.2) },
        }),
    )
    .await?;
    tx.commit().await?;
    Ok(())
}
