//! `cutover.evidence_baselines`: the health snapshot taken just before a phase (the error budget
//! and the hidden-reader census compare against it). The snapshot's shape is the evidence
//! module's; this module stores and returns it as JSON.

use serde_json::Value;
use tokio_postgres::{Error, GenericClient};

use crate::plan::Phase;

/// Stores `snapshot` as the baseline taken before `phase`.
pub(crate) async fn store(
    client: &impl GenericClient,
    plan_id: &str,
    phase: Phase,
    snapshot: &Value,
) -> Result<(), Error> {
    client
        .execute(
            "INSERT INTO cutover.evidence_baselines (plan_id, phase, snapshot) VALUES ($1, $2, $3)",
            &[&plan_id, &phase.as_str(), snapshot],
        )
        .await?;
    Ok(())
}

/// The latest baseline taken before `phase`, if any.
pub(crate) async fn latest(
    client: &impl GenericClient,
    plan_id: &str,
    phase: Phase,
) -> Result<Option<Value>, Error> {
    let row = client
        .query_opt(
            "SELECT snapshot FROM cutover.evidence_baselines
              WHERE plan_id = $1 AND phase = $2 ORDER BY id DESC LIMIT 1",
            &[&plan_id, &phase.as_str()],
        )
        .await?;
    Ok(row.map(|r| r.get("snapshot")))
}
