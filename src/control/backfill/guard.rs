//! `cutover.guard_probe` and `cutover.backfill_guard`: the latency guard's commit probe (a
//! one-row write per plan that the throttle's monitoring connection commits and times) and its
//! readings over time, for the status, the metrics and the Backfill pane's chart.

use std::time::{Duration, Instant};

use chrono::{DateTime, Utc};
use serde::Serialize;
use tokio_postgres::{Client, Error, GenericClient};

/// Commits the plan's probe row once with `synchronous_commit = on` (the application's commits
/// wait for the WAL flush; so does this one) and returns how long the write and its commit took.
pub async fn commit_probe(c: &Client, plan_id: &str) -> Result<Duration, Error> {
    c.batch_execute("SET synchronous_commit = on").await?;
    let t = Instant::now();
    c.execute(
        "INSERT INTO cutover.guard_probe AS p (plan_id) VALUES ($1) \
         ON CONFLICT (plan_id) DO UPDATE SET n = p.n + 1, at = clock_timestamp()",
        &[&plan_id],
    )
    .await?;
    Ok(t.elapsed())
}

/// One reading of the guard, as recorded.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct GuardReading {
    /// When it was taken.
    pub at: DateTime<Utc>,
    /// The worst signal's value over its reference (a latency ratio to its baseline).
    pub ratio: f64,
    /// The ratio allowed (`max_app_latency_ratio`).
    pub budget: f64,
    /// The pause factor then (0 = full speed).
    pub pause: f64,
    /// The signal that counted (e.g. `commit latency`), empty when none read.
    pub signal: String,
    /// The guard's reason (`yielding: commit latency 3.10× baseline > 1.25× …`).
    pub reason: String,
}

/// Records one reading.
pub async fn record(
    c: &impl GenericClient,
    plan_id: &str,
    ratio: f64,
    budget: f64,
    pause: f64,
    signal: &str,
    reason: &str,
) -> Result<(), Error> {
    c.execute(
        "INSERT INTO cutover.backfill_guard (plan_id, ratio, budget, pause, signal, reason) \
         VALUES ($1, $2, $3, $4, $5, $6)",
        &[&plan_id, &ratio, &budget, &pause, &signal, &reason],
    )
    .await?;
    Ok(())
}

/// How long readings are kept: the chart shows minutes, a day covers any post-mortem.
pub const KEEP_READINGS: Duration = Duration::from_secs(24 * 3600);

/// Deletes the plan's readings older than [`KEEP_READINGS`]; returns how many.
pub async fn trim(c: &impl GenericClient, plan_id: &str) -> Result<u64, Error> {
    c.execute(
        "DELETE FROM cutover.backfill_guard WHERE plan_id = $1 \
         AND at < clock_timestamp() - $2 * interval '1 second'",
        &[&plan_id, &KEEP_READINGS.as_secs_f64()],
    )
    .await
}

/// The readings of the last `window`, oldest first (at most 600).
pub async fn recent(
    c: &impl GenericClient,
    plan_id: &str,
    window: Duration,
) -> Result<Vec<GuardReading>, Error> {
    let secs = window.as_secs_f64();
    let rows = c
        .query(
            "SELECT at, ratio, budget, pause, signal, reason FROM ( \
               SELECT * FROM cutover.backfill_guard WHERE plan_id = $1 \
               AND at >= clock_timestamp() - $2 * interval '1 second' \
               ORDER BY at DESC LIMIT 600) r ORDER BY at",
            &[&plan_id, &secs],
        )
        .await?;
    rows.iter()
        .map(|r| {
            Ok(GuardReading {
                at: r.try_get("at")?,
                ratio: r.try_get("ratio")?,
                budget: r.try_get("budget")?,
                pause: r.try_get("pause")?,
                signal: r.try_get("signal")?,
                reason: r.try_get("reason")?,
            })
        })
        .collect()
}

/// WAL written while the plan's chunks ran (bytes, summed) and the rows they covered.
pub async fn wal_per_chunk(
    c: &impl GenericClient,
    plan_id: &str,
) -> Result<(i64, i64, i64), Error> {
    let r = c
        .query_one(
            "SELECT coalesce(sum(wal_bytes), 0)::int8 AS wal, \
             coalesce(sum(rows_scanned) FILTER (WHERE wal_bytes IS NOT NULL), 0)::int8 AS rows, \
             coalesce(max(wal_bytes), 0)::int8 AS max_wal \
             FROM cutover.backfill_chunks WHERE plan_id = $1",
            &[&plan_id],
        )
        .await?;
    Ok((r.try_get("wal")?, r.try_get("rows")?, r.try_get("max_wal")?))
}
