//! `cutover.census_samples`: the call counts of legacy-column readers at each hidden-reader
//! census, so a later census can tell a reader that stopped (drained) from one still running.

use std::collections::BTreeMap;

use chrono::{DateTime, Utc};
use tokio_postgres::GenericClient;

use crate::db::DbError;

/// One census's call counts, by statement id.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct Sample {
    /// When the counts were read (server clock).
    pub taken_at: DateTime<Utc>,
    /// Calls of each reader statement.
    pub calls: BTreeMap<String, i64>,
}

/// The newest sample of `plan_id` taken at or before `at` and after `since`.
pub(crate) async fn newest_before(
    client: &impl GenericClient,
    plan_id: &str,
    since: DateTime<Utc>,
    at: DateTime<Utc>,
) -> Result<Option<Sample>, DbError> {
    let row = client
        .query_opt(
            "SELECT taken_at, calls FROM cutover.census_samples
              WHERE plan_id = $1 AND taken_at > $2 AND taken_at <= $3
              ORDER BY taken_at DESC LIMIT 1",
            &[&plan_id, &since, &at],
        )
        .await?;
    Ok(row.map(|r| Sample {
        taken_at: r.get("taken_at"),
        calls: serde_json::from_value(r.get("calls")).unwrap_or_default(),
    }))
}

/// Stores `sample` and forgets samples older than `keep_after` (the one a later census may
/// still compare with is kept by the caller's choice of `keep_after`).
pub(crate) async fn store(
    client: &impl GenericClient,
    plan_id: &str,
    sample: &Sample,
    keep_after: DateTime<Utc>,
) -> Result<(), DbError> {
    let calls = serde_json::to_value(&sample.calls)
        .map_err(|e| DbError::Query(format!("cannot encode a census sample: {e}")))?;
    client
        .execute(
            "INSERT INTO cutover.census_samples (plan_id, taken_at, calls) VALUES ($1, $2, $3)",
            &[&plan_id, &sample.taken_at, &calls],
        )
        .await?;
    client
        .execute(
            "DELETE FROM cutover.census_samples WHERE plan_id = $1 AND taken_at < $2",
            &[&plan_id, &keep_after],
        )
        .await?;
    Ok(())
}
