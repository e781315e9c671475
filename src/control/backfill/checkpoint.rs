//! The chunk's own statements on `cutover.backfill_ranges`, `cutover.backfill_chunks` and
//! `cutover.backfill`, on the runner's hot path: the lease fence that opens a chunk, the
//! checkpoint that closes it, and the count of chunks rolled back.
//!
//! The fence and the checkpoint are prepared once per connection ([`ChunkStatements`]): a
//! prepared statement is sent in the first poll of its future, so the runner can pipeline them
//! (BEGIN … fence, checkpoint … COMMIT) and keep their order. An unprepared one would first wait
//! for its Parse round trip, and COMMIT would overtake it.

use std::time::Duration;

use chrono::{DateTime, Utc};
use tokio_postgres::types::ToSql;
use tokio_postgres::{Client, Error, GenericClient, Statement};

use super::key::{key_in, key_to_json, Key};

/// Locks the fence of one chunk: the range row, if `$3` still holds its lease; returns the
/// stored checkpoint.
const FENCE_SQL: &str = "SELECT checkpoint FROM cutover.backfill_ranges \
     WHERE plan_id = $1 AND range_id = $2 AND lease_owner = $3 AND NOT done FOR UPDATE";

/// Writes a chunk's checkpoint, the counters and the chunk's stats inside the chunk's
/// transaction, counts the sessions waiting on its locks and the WAL written since the chunk
/// began (`$16`, the insert position then; other sessions' WAL included: an upper bound); the one
/// transition it makes is idle → running.
const CHECKPOINT_SQL: &str = "WITH l AS (
                SELECT (pg_current_wal_insert_lsn() - $16::text::pg_lsn)::int8 AS wal),
             w AS (
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
                    blocked, effective_ms, wal_bytes)
                VALUES ($1, $2, $8, $9, $10, $11, $4, $5, $12, $13, $3, (SELECT n FROM w), $15,
                    (SELECT wal FROM l))),
             b AS (
                UPDATE cutover.backfill SET rows_done = rows_done + $14,
                    rows_updated = rows_updated + $5, chunk_rows = $11, last_chunk_ms = $10,
                    state = CASE WHEN state = 'idle' THEN 'running' ELSE state END,
                    reason = CASE WHEN state = 'idle' THEN '' ELSE reason END,
                    started_at = COALESCE(started_at, clock_timestamp()),
                    updated_at = clock_timestamp()
                WHERE plan_id = $1)
             SELECT n AS blocked, wal FROM w, l";

/// The fence and the checkpoint, prepared on one connection.
pub(crate) struct ChunkStatements {
    fence: Statement,
    checkpoint: Statement,
}

/// What a fence found: the range row is locked and the caller still holds its lease.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct Fenced {
    /// The stored checkpoint (last key done).
    pub checkpoint: Option<Key>,
}

/// A chunk about to commit, as its checkpoint records it.
#[derive(Debug, Clone)]
pub(crate) struct ChunkRecord<'a> {
    /// Plan id.
    pub plan_id: &'a str,
    /// The range the chunk covered.
    pub range_id: i32,
    /// The worker's lease owner id.
    pub owner: &'a str,
    /// The key the chunk started after (the previous checkpoint).
    pub lo: Option<&'a Key>,
    /// The chunk's last key: the new checkpoint (`None` keeps the stored one).
    pub upper: Option<&'a Key>,
    /// Keys covered.
    pub scanned: i64,
    /// Rows changed.
    pub updated: i64,
    /// What counts towards `rows_done`: keys covered, or rows fixed by a sweep.
    pub progress: i64,
    /// The range is covered completely (its lease is released).
    pub range_done: bool,
    /// Lease renewed for this long otherwise.
    pub lease: Duration,
    /// When the chunk started.
    pub started_at: DateTime<Utc>,
    /// The chunk's duration so far.
    pub elapsed: Duration,
    /// Its size limit (rows).
    pub limit: i32,
    /// The live target chunk time.
    pub target: Duration,
    /// The target it aimed at (below `target` under contention).
    pub effective: Duration,
    /// The WAL insert position when the chunk began (`pg_current_wal_insert_lsn()` as text).
    pub wal_start: &'a str,
}

/// What the checkpoint saw as the chunk closed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Closed {
    /// Sessions waiting on the chunk's row locks.
    pub blocked: i32,
    /// WAL written since the chunk began (bytes, an upper bound).
    pub wal_bytes: i64,
}

impl ChunkStatements {
    /// Prepares both statements on `client`.
    pub(crate) async fn prepare(client: &Client) -> Result<ChunkStatements, Error> {
        Ok(ChunkStatements {
            fence: client.prepare(FENCE_SQL).await?,
            checkpoint: client.prepare(CHECKPOINT_SQL).await?,
        })
    }

    /// Locks range `range_id` for the caller's transaction if `owner` still holds its lease;
    /// `None` when it does not (or the range is done).
    pub(crate) async fn fence(
        &self,
        client: &Client,
        plan_id: &str,
        range_id: i32,
        owner: &str,
    ) -> Result<Option<Fenced>, Error> {
        let params: [&(dyn ToSql + Sync); 3] = [&plan_id, &range_id, &owner];
        let row = client.query_opt(&self.fence, &params).await?;
        Ok(row.map(|r| Fenced {
            checkpoint: key_in(&r, "checkpoint"),
        }))
    }

    /// Writes `chunk`'s checkpoint and stats in the caller's transaction.
    pub(crate) async fn checkpoint(
        &self,
        client: &Client,
        chunk: &ChunkRecord<'_>,
    ) -> Result<Closed, Error> {
        let upper = chunk.upper.map(key_to_json);
        let lo = chunk.lo.map(key_to_json);
        let lease_ms = chunk.lease.as_millis() as f64;
        let elapsed_ms = chunk.elapsed.as_secs_f64() * 1000.0;
        let target_ms = chunk.target.as_millis() as i32;
        let effective_ms = chunk.effective.as_millis() as i32;
        let params: [&(dyn ToSql + Sync); 16] = [
            &chunk.plan_id,
            &chunk.range_id,
            &upper,
            &chunk.scanned,
            &chunk.updated,
            &chunk.range_done,
            &lease_ms,
            &chunk.owner,
            &chunk.started_at,
            &elapsed_ms,
            &chunk.limit,
            &target_ms,
            &lo,
            &chunk.progress,
            &effective_ms,
            &chunk.wal_start,
        ];
        let row = client.query_one(&self.checkpoint, &params).await?;
        Ok(Closed {
            blocked: row.try_get("blocked")?,
            wal_bytes: row.try_get("wal")?,
        })
    }
}

/// Counts a chunk rolled back by its time cap or a lock conflict.
pub(crate) async fn count_retry(c: &impl GenericClient, plan_id: &str) -> Result<(), Error> {
    c.execute(
        "UPDATE cutover.backfill SET chunk_retries = chunk_retries + 1 WHERE plan_id = $1",
        &[&plan_id],
    )
    .await?;
    Ok(())
}
