//! Read-only statistics of a backfill for the CLI, the TUI, the metrics and the benchmark:
//! every range with its lease, and figures over `cutover.backfill_chunks` (percentiles, rates,
//! duration buckets, the latest chunk's contention).

use chrono::{DateTime, Utc};
use serde::Serialize;
use tokio_postgres::{Error, GenericClient};

use super::key::{key_in, Key};
use super::leases::RangeKind;

/// One key range as stored, with its lease.
#[derive(Debug, Clone, Serialize)]
pub struct RangeRow {
    /// Range id.
    pub range_id: i32,
    /// Range or sweep.
    pub kind: RangeKind,
    /// Covered completely.
    pub done: bool,
    /// Keys covered.
    pub rows_done: i64,
    /// Rows changed.
    pub rows_updated: i64,
    /// Estimated keys in the range.
    pub rows_estimate: Option<i64>,
    /// Chunks committed.
    pub chunks: i64,
    /// Last key done.
    pub checkpoint: Option<Key>,
    /// Lower bound (exclusive; `None` for the first range).
    pub lo: Option<Key>,
    /// Upper bound (inclusive).
    pub hi: Option<Key>,
    /// Lease holder.
    pub lease_owner: Option<String>,
    /// Lease holder's host.
    pub lease_host: Option<String>,
    /// Lease holder's pid.
    pub lease_pid: Option<i32>,
    /// Held since.
    pub lease_since: Option<DateTime<Utc>>,
    /// Lease valid until.
    pub lease_until: Option<DateTime<Utc>>,
    /// The lease is currently valid.
    pub lease_live: bool,
    /// The leaf partition the range covers, `None` for the whole table.
    pub partition: Option<String>,
    /// The leaf was detached before the range was finished.
    pub detached: bool,
}

impl RangeRow {
    fn from_row(r: &tokio_postgres::Row) -> RangeRow {
        RangeRow {
            range_id: r.get("range_id"),
            kind: RangeKind::stored(r.get("kind")),
            done: r.get("done"),
            rows_done: r.get("rows_done"),
            rows_updated: r.get("rows_updated"),
            rows_estimate: r.get("rows_estimate"),
            chunks: r.get("chunks"),
            checkpoint: key_in(r, "checkpoint"),
            lo: key_in(r, "lo"),
            hi: key_in(r, "hi"),
            lease_owner: r.get("lease_owner"),
            lease_host: r.get("lease_host"),
            lease_pid: r.get("lease_pid"),
            lease_since: r.get("lease_since"),
            lease_until: r.get("lease_until"),
            lease_live: r.get("lease_live"),
            partition: r.get("partition"),
            detached: r.get("detached"),
        }
    }
}

/// Every range of `plan_id`, by id.
pub(crate) async fn ranges(c: &impl GenericClient, plan_id: &str) -> Result<Vec<RangeRow>, Error> {
    let rows = c
        .query(
            "SELECT range_id, kind, done, rows_done, rows_updated, rows_estimate, chunks, \
             checkpoint, hi, lease_owner, lease_host, lease_pid, lease_since, lease_until, \
             COALESCE(lease_owner IS NOT NULL AND lease_until >= clock_timestamp(), false) \
             AS lease_live, lo, partition, detached \
             FROM cutover.backfill_ranges WHERE plan_id = $1 ORDER BY range_id",
            &[&plan_id],
        )
        .await?;
    Ok(rows.iter().map(RangeRow::from_row).collect())
}

/// Seconds since the latest checkpoint was written (`None` before the first chunk).
pub(crate) async fn checkpoint_age(
    c: &impl GenericClient,
    plan_id: &str,
) -> Result<Option<f64>, Error> {
    Ok(c.query_one(
        "SELECT extract(epoch FROM clock_timestamp() - max(updated_at))::float8 AS age \
         FROM cutover.backfill_ranges WHERE plan_id = $1 AND chunks > 0",
        &[&plan_id],
    )
    .await?
    .get("age"))
}

/// Contention seen by the latest chunk.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Contention {
    /// Sessions waiting on its row locks when it committed.
    pub blocked: i32,
    /// The target it aimed at (ms).
    pub effective_ms: Option<i32>,
}

/// The latest chunk's [`Contention`], if a chunk ran.
pub(crate) async fn latest_contention(
    c: &impl GenericClient,
    plan_id: &str,
) -> Result<Option<Contention>, Error> {
    Ok(c.query_opt(
        "SELECT blocked, effective_ms FROM cutover.backfill_chunks WHERE plan_id = $1 \
         ORDER BY id DESC LIMIT 1",
        &[&plan_id],
    )
    .await?
    .map(|r| Contention {
        blocked: r.get("blocked"),
        effective_ms: r.get("effective_ms"),
    }))
}

/// Median and 99th percentile duration (ms) of the latest 500 chunks.
pub(crate) async fn chunk_percentiles(
    c: &impl GenericClient,
    plan_id: &str,
) -> Result<(Option<f64>, Option<f64>), Error> {
    let r = c
        .query_one(
            "SELECT percentile_cont(0.5) WITHIN GROUP (ORDER BY duration_ms) AS p50, \
             percentile_cont(0.99) WITHIN GROUP (ORDER BY duration_ms) AS p99 \
             FROM (SELECT duration_ms FROM cutover.backfill_chunks WHERE plan_id = $1 \
                   ORDER BY id DESC LIMIT 500) s",
            &[&plan_id],
        )
        .await?;
    Ok((r.get("p50"), r.get("p99")))
}

/// The latest 60 chunks, newest first: (rows scanned, start, end) in epoch seconds.
pub(crate) async fn recent_chunks(
    c: &impl GenericClient,
    plan_id: &str,
) -> Result<Vec<(f64, f64, f64)>, Error> {
    let rows = c
        .query(
            "SELECT rows_scanned, extract(epoch FROM started_at)::float8 AS started, \
             extract(epoch FROM finished_at)::float8 AS finished FROM cutover.backfill_chunks \
             WHERE plan_id = $1 ORDER BY id DESC LIMIT 60",
            &[&plan_id],
        )
        .await?;
    Ok(rows
        .iter()
        .map(|r| {
            let scanned: i64 = r.get("rows_scanned");
            (scanned as f64, r.get("started"), r.get("finished"))
        })
        .collect())
}

/// The server's clock (epoch seconds), the time base of the chunk stats.
pub(crate) async fn db_now(c: &impl GenericClient) -> Result<f64, Error> {
    Ok(c.query_one(
        "SELECT extract(epoch FROM clock_timestamp())::float8 AS now",
        &[],
    )
    .await?
    .get("now"))
}

/// Rows scanned per 5-second bucket of the last 2 minutes: (buckets ago, rows).
pub(crate) async fn rate_buckets(
    c: &impl GenericClient,
    plan_id: &str,
) -> Result<Vec<(i32, f64)>, Error> {
    let rows = c
        .query(
            "SELECT floor(extract(epoch FROM clock_timestamp() - finished_at) / 5)::int AS ago, \
             sum(rows_scanned)::float8 AS rows FROM cutover.backfill_chunks \
             WHERE plan_id = $1 AND finished_at > clock_timestamp() - interval '120 seconds' \
             GROUP BY 1",
            &[&plan_id],
        )
        .await?;
    Ok(rows.iter().map(|r| (r.get("ago"), r.get("rows"))).collect())
}

/// Rows changed by the chunks of the last minute, and the seconds they span (`None` without
/// chunks).
pub(crate) async fn last_minute(
    c: &impl GenericClient,
    plan_id: &str,
) -> Result<(f64, Option<f64>), Error> {
    let r = c
        .query_one(
            "SELECT coalesce(sum(rows_updated), 0)::float8 AS updated,
                    extract(epoch FROM max(finished_at) - min(started_at))::float8 AS span
               FROM cutover.backfill_chunks
              WHERE plan_id = $1 AND finished_at > clock_timestamp() - interval '60 seconds'",
            &[&plan_id],
        )
        .await?;
    Ok((r.get("updated"), r.get("span")))
}

/// Chunks grouped by the first of `bounds` (seconds) their duration fits under: (1-based
/// bucket, or `None` above every bound; chunks; total seconds).
pub(crate) async fn duration_buckets(
    c: &impl GenericClient,
    plan_id: &str,
    bounds: &[f64],
) -> Result<Vec<(Option<i32>, i64, f64)>, Error> {
    let rows = c
        .query(
            "SELECT (SELECT min(u.i) FROM unnest($2::float8[]) WITH ORDINALITY u(b, i)
                      WHERE c.duration_ms / 1000.0 <= u.b)::int4 AS bucket,
                    count(*) AS chunks, sum(c.duration_ms)::float8 / 1000.0 AS seconds
               FROM cutover.backfill_chunks c WHERE c.plan_id = $1 GROUP BY 1",
            &[&plan_id, &bounds],
        )
        .await?;
    Ok(rows
        .iter()
        .map(|r| (r.get("bucket"), r.get("chunks"), r.get("seconds")))
        .collect())
}

/// Chunk statistics over several plans' backfills (the benchmark's figures).
#[derive(Debug, Clone, Copy, PartialEq)]
pub(crate) struct ChunkSummary {
    /// Chunks.
    pub chunks: i64,
    /// Sum of the chunks' own durations (s).
    pub work_seconds: f64,
    /// Sum over plans of last chunk end − first chunk start (s).
    pub span_seconds: f64,
    /// Median chunk duration (ms).
    pub p50_ms: f64,
    /// 99th percentile chunk duration (ms).
    pub p99_ms: f64,
    /// Longest chunk (ms).
    pub max_ms: f64,
}

/// The [`ChunkSummary`] of the backfills of `plan_ids`.
pub(crate) async fn chunk_summary(
    c: &impl GenericClient,
    plan_ids: &[String],
) -> Result<ChunkSummary, Error> {
    let row = c
        .query_one(
            "SELECT COALESCE(percentile_cont(0.5) WITHIN GROUP (ORDER BY duration_ms), 0) AS p50_ms,
                    COALESCE(percentile_cont(0.99) WITHIN GROUP (ORDER BY duration_ms), 0) AS p99_ms,
                    COALESCE(max(duration_ms), 0) AS max_ms, count(*) AS chunks,
                    COALESCE(sum(duration_ms), 0) / 1000 AS work_seconds,
                    (SELECT COALESCE(sum(extract(epoch FROM e - b)), 0)::float8 FROM
                       (SELECT min(started_at) b, max(finished_at) e FROM cutover.backfill_chunks
                         WHERE plan_id = ANY($1) GROUP BY plan_id) s) AS span_seconds
               FROM cutover.backfill_chunks WHERE plan_id = ANY($1)",
            &[&plan_ids],
        )
        .await?;
    Ok(ChunkSummary {
        p50_ms: row.get("p50_ms"),
        p99_ms: row.get("p99_ms"),
        max_ms: row.get("max_ms"),
        chunks: row.get("chunks"),
        work_seconds: row.get("work_seconds"),
        span_seconds: row.get("span_seconds"),
    })
}
