//! Operator controls: pause, resume, stop and live retuning. Each is one guarded transition of
//! [`crate::control::backfill::transitions`] (or a retuning of its
//! [`crate::control::backfill::settings`]) and its audit entry in one transaction;
//! running workers (in any process) pick the change up before their next chunk.

use tokio_postgres::Client;

use super::{spec, BackfillError};
use crate::control::anchors::authorize;
use crate::control::audit::Actor;
use crate::control::backfill::settings::{self, Tuning};
use crate::control::backfill::transitions::{self, TransitionError};
use crate::plan::{Action, Plan};

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
    transitions::pause(&tx, plan, spec, actor, reason)
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
    transitions::resume(&tx, plan, spec, actor)
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
    transitions::stop(&tx, plan, spec, actor, reason)
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
    if let Some(d) = tuning.target_chunk_time {
        if !(10..=600_000).contains(&d.as_millis()) {
            return Err(BackfillError::Invalid(format!(
                "target chunk time {} is out of range: use 10ms to 10m",
                humantime::format_duration(d)
            )));
        }
    }
    if let Some(w) = tuning.workers.filter(|w| !(1..=256).contains(w)) {
        return Err(BackfillError::Invalid(format!(
            "workers = {w} is out of range: use 1 to 256"
        )));
    }
    if *tuning == Tuning::default() {
        return Err(BackfillError::Invalid(
            "nothing to tune: give --target-chunk-time, --max-rows-per-second or --workers"
                .to_string(),
        ));
    }
    let tx = client.transaction().await?;
    settings::tune(&tx, plan, spec(plan)?, actor, tuning).await?;
    tx.commit().await?;
    Ok(())
}
