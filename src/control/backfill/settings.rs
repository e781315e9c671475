//! The backfill's live settings in `cutover.backfill` (target chunk time, rate cap, workers):
//! retuning them, and the view of them (with the phase and the live leases) that a worker reads
//! before each chunk.

use std::time::Duration;

use serde_json::json;
use tokio_postgres::{Error, GenericClient, Transaction};

use super::state::State;
use super::transitions::{audit_backfill, lock};
use crate::control::audit::{Actor, AuditAction};
use crate::control::phases::PhaseState;
use crate::db::DbError;
use crate::plan::{BackfillSpec, Phase, Plan};

/// Live settings to change; `None` leaves a setting as it is.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Tuning {
    /// Target chunk time.
    pub target_chunk_time: Option<Duration>,
    /// Rate cap in rows per second (0 = none).
    pub max_rows_per_second: Option<u32>,
    /// Maximum concurrent workers across all processes.
    pub workers: Option<u32>,
}

/// A setting as stored (`int4`), saturating.
fn stored(value: impl TryInto<i32>) -> i32 {
    value.try_into().unwrap_or(i32::MAX)
}

/// Changes live settings, audited as `backfill.tune` with the old and new values, in the
/// caller's transaction.
pub(crate) async fn tune(
    tx: &Transaction<'_>,
    plan: &Plan,
    spec: &BackfillSpec,
    by: &Actor,
    to: &Tuning,
) -> Result<(), DbError> {
    let target = to.target_chunk_time.map(|d| stored(d.as_millis()));
    let rate = to.max_rows_per_second.map(stored);
    let workers = to.workers.map(stored);
    lock(tx, plan.id(), spec).await?;
    let before = tx
        .query_one(
            "SELECT target_chunk_ms, max_rows_per_sec, workers FROM cutover.backfill \
             WHERE plan_id = $1",
            &[&plan.id()],
        )
        .await?;
    let old: (i32, i32, i32) = (
        before.get("target_chunk_ms"),
        before.get("max_rows_per_sec"),
        before.get("workers"),
    );
    tx.execute(
        "UPDATE cutover.backfill SET target_chunk_ms = COALESCE($2, target_chunk_ms), \
         max_rows_per_sec = COALESCE($3, max_rows_per_sec), workers = COALESCE($4, workers), \
         updated_at = clock_timestamp() WHERE plan_id = $1",
        &[&plan.id(), &target, &rate, &workers],
    )
    .await?;
    audit_backfill(
        tx,
        plan,
        by,
        AuditAction::BackfillTune,
        json!({
            "target_chunk_ms": { "from": old.0, "to": target.unwrap_or(old.0) },
            "max_rows_per_sec": { "from": old.1, "to": rate.unwrap_or(old.1) },
            "workers": { "from": old.2, "to": workers.unwrap_or(old.2) },
        }),
    )
    .await
}

/// The live maximum of concurrent workers.
pub(crate) async fn workers(c: &impl GenericClient, plan_id: &str) -> Result<i32, Error> {
    Ok(c.query_one(
        "SELECT workers FROM cutover.backfill WHERE plan_id = $1",
        &[&plan_id],
    )
    .await?
    .get("workers"))
}

/// What a worker reads before each chunk, in one statement.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct WorkerView {
    /// The backfill's state.
    pub state: State,
    /// Live target chunk time (at least 1 ms).
    pub target_chunk_time: Duration,
    /// Live rate cap (rows/s, 0 = none).
    pub max_rows_per_sec: u32,
    /// Live maximum of concurrent workers (at least 1).
    pub workers: i64,
    /// The backfill phase's state (`None` when the migration is not registered).
    pub phase: Option<PhaseState>,
    /// Live leases of unfinished ranges.
    pub live_leases: i64,
    /// The owner of the newest live lease.
    pub newest_lease: Option<String>,
}

impl WorkerView {
    fn from_row(row: &tokio_postgres::Row) -> WorkerView {
        let target_ms: i32 = row.get("target_chunk_ms");
        let rate: i32 = row.get("max_rows_per_sec");
        let workers: i32 = row.get("workers");
        WorkerView {
            state: State::stored(row.get("state")),
            target_chunk_time: Duration::from_millis(target_ms.max(1) as u64),
            max_rows_per_sec: rate.max(0) as u32,
            workers: i64::from(workers.max(1)),
            phase: row
                .get::<_, Option<&str>>("phase")
                .map(|s| PhaseState::parse(s).unwrap_or(PhaseState::Failed)),
            live_leases: row.get("live_leases"),
            newest_lease: row.get("newest_lease"),
        }
    }
}

/// Reads the [`WorkerView`] of `plan_id`.
pub(crate) async fn worker_view(
    c: &impl GenericClient,
    plan_id: &str,
) -> Result<WorkerView, Error> {
    let row = c
        .query_one(
            "SELECT b.state, b.target_chunk_ms, b.max_rows_per_sec, b.workers, \
             (SELECT p.state FROM cutover.phases p \
              WHERE p.plan_id = b.plan_id AND p.phase = $2) AS phase, \
             (SELECT count(*) FROM cutover.backfill_ranges r WHERE r.plan_id = b.plan_id \
              AND NOT r.done AND r.lease_owner IS NOT NULL \
              AND r.lease_until >= clock_timestamp()) AS live_leases, \
             (SELECT r.lease_owner FROM cutover.backfill_ranges r WHERE r.plan_id = b.plan_id \
              AND NOT r.done AND r.lease_owner IS NOT NULL \
              AND r.lease_until >= clock_timestamp() \
              ORDER BY r.lease_since DESC, r.lease_owner DESC LIMIT 1) AS newest_lease \
             FROM cutover.backfill b WHERE b.plan_id = $1",
            &[&plan_id, &Phase::Backfill.as_str()],
        )
        .await?;
    Ok(WorkerView::from_row(&row))
}
