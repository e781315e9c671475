//! One chunk: a single transaction that fences the range's lease, finds the chunk's upper key,
//! applies the plan's SET assignments and writes the checkpoint, pipelined into three round
//! trips: {BEGIN + session limits, lease fence, upper bound, WAL position}, the UPDATE,
//! {checkpoint + stats, COMMIT}.
//!
//! With nobody to protect, the chunk commits with `synchronous_commit = off`: it does not wait
//! for its WAL flush. Safe because the checkpoint commits in the same transaction: a crash loses
//! the chunk and its checkpoint together, and the chunk is redone exactly once from the stored
//! checkpoint (the fence of the next chunk sees that it moved back and the range is claimed
//! again); any later synchronous commit (a state change, a lease release) flushes the WAL before
//! it, the chunk's included. While the latency guard yields to the application, the chunk
//! commits with `synchronous_commit = local` instead ([`ChunkJob::flush`]): it flushes its own
//! WAL, rather than leaving the flush to whichever application commit comes next.

use std::time::{Duration, Instant};

use chrono::Utc;
use tokio_postgres::Client;

use crate::backfill::keys::{self, Key, KeySpec};
use crate::backfill::ranges::Claimed;
use crate::control::backfill::checkpoint::{ChunkRecord, ChunkStatements};

/// The result of one committed chunk.
pub(super) struct ChunkDone {
    /// Sessions that were waiting on this chunk's locks just before it committed.
    pub(super) blocked: i32,
    /// Keys covered.
    pub(super) scanned: u64,
    /// Rows changed.
    pub(super) updated: u64,
    /// The new checkpoint.
    pub(super) upper: Option<Key>,
    /// The range is covered.
    pub(super) range_done: bool,
    /// The chunk's duration.
    pub(super) elapsed: Duration,
    /// WAL written while it ran (bytes, an upper bound).
    pub(super) wal_bytes: i64,
}

/// One chunk transaction to run.
pub(super) struct ChunkJob<'a> {
    pub(super) statements: &'a ChunkStatements,
    pub(super) keys: &'a KeySpec,
    pub(super) plan_id: &'a str,
    pub(super) owner: &'a str,
    pub(super) range: &'a Claimed,
    /// Size limit (rows).
    pub(super) limit: u32,
    /// The live target chunk time.
    pub(super) target: Duration,
    /// The target aimed at.
    pub(super) effective: Duration,
    /// The chunk's statement timeout.
    pub(super) cap: Duration,
    /// The chunk's lock timeout.
    pub(super) lock: Duration,
    /// How long the lease lasts after the chunk.
    pub(super) lease: Duration,
    /// Commit synchronously (flush the chunk's own WAL).
    pub(super) flush: bool,
}

impl ChunkJob<'_> {
    /// Runs the chunk; `Ok(None)` when the lease was lost (the caller rolls back).
    pub(super) async fn run(
        &self,
        client: &Client,
    ) -> Result<Option<ChunkDone>, tokio_postgres::Error> {
        let keys = self.keys;
        let range = self.range;
        let limit = self.limit.max(1);
        let started_at = Utc::now();
        let started = Instant::now();
        let lo = range.checkpoint.as_ref();
        let hi = range.hi.as_ref();
        let begin = format!(
            "BEGIN; SET LOCAL statement_timeout = {}; SET LOCAL lock_timeout = {}; \
             SET LOCAL enable_seqscan = off; SET LOCAL enable_bitmapscan = off; \
             SET LOCAL synchronous_commit = {}",
            self.cap.as_millis(),
            self.lock.as_millis(),
            if self.flush { "local" } else { "off" }
        );
        let bound_sql = keys.bound_sql(lo, hi, i64::from(limit) - 1);
        // The fence locks the range row (a reclaimer skips it) and proves the lease and the
        // checkpoint this worker holds are still the stored ones.
        let (began, fence, bound, wal_start) = futures::join!(
            client.batch_execute(&begin),
            self.statements
                .fence(client, self.plan_id, range.range_id, self.owner),
            client.query_opt(bound_sql.as_str(), &[]),
            client.query_one("SELECT pg_current_wal_insert_lsn()::text AS lsn", &[]),
        );
        // Errors in the order the statements were sent: after the first failure the server
        // answers every later statement of the transaction with 25P02, which would hide it.
        began?;
        let Some(fence) = fence? else {
            return Ok(None);
        };
        let bound = bound?;
        let wal_start: String = wal_start?.try_get("lsn")?;
        if fence.checkpoint.as_ref() != lo {
            tracing::warn!(
                range = range.range_id,
                "the stored checkpoint moved under this worker: dropping the range"
            );
            return Ok(None);
        }
        let bound = bound.and_then(|r| keys::key_from_row(&r));
        let (upper, scanned, range_done) = match bound {
            Some(k) => {
                let last = Some(&k) == hi;
                (Some(k), u64::from(limit), last)
            }
            None => {
                let n: i64 = client
                    .query_one(keys.count_sql(lo, hi).as_str(), &[])
                    .await?
                    .get("keys");
                (range.hi.clone(), n.max(0) as u64, true)
            }
        };
        let updated = if scanned > 0 {
            client
                .execute(keys.write_sql(lo, upper.as_ref()).as_str(), &[])
                .await?
        } else {
            0
        };
        let record = ChunkRecord {
            plan_id: self.plan_id,
            range_id: range.range_id,
            owner: self.owner,
            lo,
            upper: upper.as_ref(),
            scanned: scanned as i64,
            updated: updated as i64,
            progress: (if range.sweep { updated } else { scanned }) as i64,
            range_done,
            lease: self.lease,
            started_at,
            elapsed: started.elapsed(),
            limit: limit as i32,
            target: self.target,
            effective: self.effective,
            wal_start: &wal_start,
        };
        let (checkpointed, committed) = futures::join!(
            self.statements.checkpoint(client, &record),
            client.batch_execute("COMMIT"),
        );
        // A failed checkpoint aborts the transaction, and COMMIT then rolls it back.
        let closed = checkpointed?;
        committed?;
        Ok(Some(ChunkDone {
            blocked: closed.blocked,
            wal_bytes: closed.wal_bytes,
            scanned,
            updated,
            upper,
            range_done,
            elapsed: started.elapsed(),
        }))
    }
}
