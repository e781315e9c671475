//! `cutover bench backfill --timeline`: one workload's run second by second — the application's
//! p95 and p99, how much of the time chunks ran, and the guard's reading — to see which signal held the
//! backfill when, and what the application felt meanwhile.

use anyhow::Context as _;
use tokio_postgres::Client;

use crate::backfill::tail::quantile;

/// Width of one line's bucket (s).
const BUCKET: f64 = 2.0;

/// The lines of the timeline from `from` to `to` (epoch seconds) of plan `plan_id`, given every
/// transaction's (end epoch s, latency ms).
pub async fn lines(
    client: &Client,
    plan_id: &str,
    all: &[(f64, f64)],
    dirty: &[(f64, f64)],
    from: f64,
    to: f64,
) -> anyhow::Result<Vec<String>> {
    let chunks: Vec<(f64, f64, i64)> = client
        .query(
            "SELECT extract(epoch FROM started_at)::float8 AS at, duration_ms, rows_scanned \
             FROM cutover.backfill_chunks WHERE plan_id = $1 ORDER BY id",
            &[&plan_id],
        )
        .await
        .context("reading the chunks")?
        .iter()
        .map(|r| {
            Ok((
                r.try_get("at")?,
                r.try_get("duration_ms")?,
                r.try_get("rows_scanned")?,
            ))
        })
        .collect::<Result<_, tokio_postgres::Error>>()?;
    let readings: Vec<(f64, f64, f64, String)> = client
        .query(
            "SELECT extract(epoch FROM at)::float8 AS at, ratio, pause, reason \
             FROM cutover.backfill_guard WHERE plan_id = $1 ORDER BY at",
            &[&plan_id],
        )
        .await
        .context("reading the guard's readings")?
        .iter()
        .map(|r| {
            Ok((
                r.try_get("at")?,
                r.try_get("ratio")?,
                r.try_get("pause")?,
                r.try_get("reason")?,
            ))
        })
        .collect::<Result<_, tokio_postgres::Error>>()?;
    let mut out = vec![format!(
        "      {:>5} {:>5} {:>8} {:>8} {:>6} {:>7} {:>6} {:>6} {:>6}  reason",
        "t (s)", "txns", "p95 ms", "p99 ms", "busy", "rows", "ratio", "pause", "dirty"
    )];
    let mut t = from;
    while t < to {
        let end = t + BUCKET;
        let lat: Vec<f64> = all
            .iter()
            .filter(|(e, _)| *e >= t && *e < end)
            .map(|(_, ms)| *ms)
            .collect();
        let (mut busy, mut rows) = (0.0, 0);
        for (at, ms, n) in &chunks {
            let (a, b) = (*at, at + ms / 1000.0);
            let overlap = b.min(end) - a.max(t);
            if overlap > 0.0 {
                busy += overlap;
                rows += if a >= t { *n } else { 0 };
            }
        }
        let last = readings.iter().rev().find(|r| r.0 >= t && r.0 < end);
        let (ratio, pause, reason) = last.map_or(("–".to_string(), "–".to_string(), ""), |r| {
            (format!("{:.2}", r.1), format!("{:.2}", r.2), r.3.as_str())
        });
        out.push(format!(
            "      {:>5.0} {:>5} {:>8.2} {:>8.2} {:>5.0}% {:>7} {:>6} {:>6} {:>6}  {}",
            t - from,
            lat.len(),
            quantile(lat.iter().copied(), 0.95).unwrap_or(0.0),
            quantile(lat.iter().copied(), 0.99).unwrap_or(0.0),
            100.0 * busy / BUCKET,
            rows,
            ratio,
            pause,
            dirty
                .iter()
                .filter(|(at, _)| *at >= t && *at < end)
                .map(|(_, mib)| *mib)
                .max_by(f64::total_cmp)
                .map_or("–".to_string(), |m| format!("{m:.0}M")),
            reason.chars().take(90).collect::<String>()
        ));
        t = end;
    }
    Ok(out)
}
