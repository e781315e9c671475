//! Operator controls: pause, resume, stop and live retuning. Each is one guarded transition of
//! [`crate::control::backfill`] and its audit entry in one transaction; running workers (in any
//! process) pick the change up before their next chunk.

use tokio_postgres::{Client, GenericClient};

use super::BackfillError;
use crate::control::anchors::authorize;
use crate::control::audit::Actor;
use crate::control::backfill::{self as state, TransitionError};
use crate::plan::{Action, BackfillSpec, Plan};

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
    state::ensure_row(client, plan.id(), spec(plan)?).await?;
    Ok(())
}

/// The refusal of `action` when the backfill is in a state the transition may not leave.
fn refusal(action: &'static str, plan: &Plan) -> impl FnOnce(TransitionError) -> BackfillError {
    let plan = plan.id().to_string();
    move |e| match e {
        TransitionError::Refused(state) => BackfillError::NotApplicable {
            action,
            plan,
            state,
        },
        TransitionError::Db(e) => BackfillError::Db(e),
    }
}

/// Pauses the backfill: no chunk starts until [`resume`]. Refused when done, stopped or failed.
pub async fn pause(
    client: &mut Client,
    plan: &Plan,
    actor: &Actor,
    reason: &str,
) -> Result<(), BackfillError> {
    authorize(&*client, plan, actor, Action::Pause).await?;
    let spec = spec(plan)?;
    let tx = client.transaction().await?;
    state::pause(&tx, plan, spec, actor, reason)
        .await
        .map_err(refusal("pause", plan))?;
    tx.commit().await?;
    Ok(())
}

/// Resumes a paused or stopped backfill. A running worker continues at once; after a stop, a
/// new `cutover backfill run` continues from the checkpoint. A failed backfill may be resumed
/// once its cause is fixed.
pub async fn resume(client: &mut Client, plan: &Plan, actor: &Actor) -> Result<(), BackfillError> {
    authorize(&*client, plan, actor, Action::Resume).await?;
    let spec = spec(plan)?;
    let tx = client.transaction().await?;
    state::resume(&tx, plan, spec, actor)
        .await
        .map_err(refusal("resume", plan))?;
    tx.commit().await?;
    Ok(())
}

/// Stops the backfill: workers finish their current chunk, release their ranges and exit. The
/// checkpoint is kept; `run` refuses until [`resume`]. Refused when done or stopped.
pub async fn stop(
    client: &mut Client,
    plan: &Plan,
    actor: &Actor,
    reason: &str,
) -> Result<(), BackfillError> {
    authorize(&*client, plan, actor, Action::Stop).await?;
    let spec = spec(plan)?;
    let tx = client.transaction().await?;
    state::stop(&tx, plan, spec, actor, reason)
        .await
        .map_err(refusal("stop", plan))?;
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
    let settings = state::Settings {
        target_chunk_ms: target,
        max_rows_per_sec: rate,
        workers,
    };
    state::tune(&tx, plan, spec(plan)?, actor, settings).await?;
    tx.commit().await?;
    Ok(())
}
