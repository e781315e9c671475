//! The per-partition rows of `cutover.backfill_ranges`: ranges planned for one leaf partition,
//! the leaves already planned, and closing the ranges of leaves detached from the table.

use tokio_postgres::{Error, GenericClient};

use super::key::{key_to_json, Key};

/// A range of one leaf partition to plan.
#[derive(Debug, Clone)]
pub(crate) struct LeafRange<'a> {
    /// The leaf (quoted, qualified name).
    pub partition: &'a str,
    /// The partitioned table the leaf belongs to (as the plan names it).
    pub root: &'a str,
    /// Lower bound (exclusive), `None` for the leaf's first range.
    pub lo: Option<&'a Key>,
    /// Upper bound (inclusive), `None` for an empty leaf (its only range covers all its keys).
    pub hi: Option<&'a Key>,
    /// Estimated keys in the range.
    pub rows_estimate: i64,
}

/// Plans range `range_id` of a leaf partition, its checkpoint at `lo`.
pub(crate) async fn insert(
    c: &impl GenericClient,
    plan_id: &str,
    range_id: i32,
    r: &LeafRange<'_>,
) -> Result<(), Error> {
    c.execute(
        "INSERT INTO cutover.backfill_ranges \
         (plan_id, range_id, lo, hi, checkpoint, rows_estimate, partition, partition_root) \
         VALUES ($1, $2, $3, $4, $3, $5, $6, $7)",
        &[
            &plan_id,
            &range_id,
            &r.lo.map(key_to_json),
            &r.hi.map(key_to_json),
            &r.rows_estimate,
            &r.partition,
            &r.root,
        ],
    )
    .await?;
    Ok(())
}

/// The next free range id of the plan.
pub(crate) async fn next_range_id(c: &impl GenericClient, plan_id: &str) -> Result<i32, Error> {
    Ok(c.query_one(
        "SELECT COALESCE(max(range_id), 0) + 1 AS range_id FROM cutover.backfill_ranges \
         WHERE plan_id = $1",
        &[&plan_id],
    )
    .await?
    .get("range_id"))
}

/// The leaves that have ranges (detached ones included), by name.
pub(crate) async fn planned(c: &impl GenericClient, plan_id: &str) -> Result<Vec<String>, Error> {
    Ok(c.query(
        "SELECT DISTINCT partition FROM cutover.backfill_ranges \
             WHERE plan_id = $1 AND partition IS NOT NULL ORDER BY partition",
        &[&plan_id],
    )
    .await?
    .iter()
    .map(|r| r.get("partition"))
    .collect())
}

/// Adds `rows` to the plan's row estimate (a leaf attached during the backfill).
pub(crate) async fn add_estimate(
    c: &impl GenericClient,
    plan_id: &str,
    rows: i64,
) -> Result<(), Error> {
    c.execute(
        "UPDATE cutover.backfill SET rows_estimate = COALESCE(rows_estimate, 0) + $2, \
         updated_at = clock_timestamp() WHERE plan_id = $1",
        &[&plan_id, &rows],
    )
    .await?;
    Ok(())
}

/// Closes the open ranges whose leaf is no longer a leaf partition of their table (detached,
/// dropped, or split further); returns the leaves closed now.
pub(crate) async fn close_detached(
    c: &impl GenericClient,
    plan_id: &str,
) -> Result<Vec<String>, Error> {
    let rows = c
        .query(
            "UPDATE cutover.backfill_ranges r SET done = true, detached = true, \
             lease_owner = NULL, lease_host = NULL, lease_pid = NULL, lease_since = NULL, \
             lease_until = NULL, updated_at = clock_timestamp() \
             WHERE r.plan_id = $1 AND NOT r.done AND r.partition IS NOT NULL \
             AND NOT EXISTS (SELECT 1 FROM pg_partition_tree(to_regclass(r.partition_root)) t \
                             WHERE t.isleaf AND t.relid = to_regclass(r.partition)) \
             RETURNING r.partition",
            &[&plan_id],
        )
        .await?;
    let mut leaves: Vec<String> = rows.iter().map(|r| r.get("partition")).collect();
    leaves.sort();
    leaves.dedup();
    Ok(leaves)
}
