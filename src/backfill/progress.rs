//! Progress you can trust: rows covered from the checkpoints, remaining from each range's
//! estimate (interpolated over the key for integer keys), throughput over the latest chunks,
//! an ETA band, chunk-time percentiles, and who holds which range.

use chrono::{DateTime, Utc};
use serde::Serialize;
use tokio_postgres::GenericClient;

use super::{control, keys, BackfillError};
use crate::control::backfill::State;
use crate::plan::Plan;

/// The backfill of one plan as the CLI, the TUI and the metrics see it.
#[derive(Debug, Clone, Serialize)]
pub struct Progress {
    /// Plan id.
    pub plan_id: String,
    /// Current state.
    pub state: State,
    /// Why it is throttled / paused / stopped / failed (empty when running normally).
    pub reason: String,
    /// Who paused or stopped it.
    pub paused_by: Option<String>,
    /// Keys covered so far (plus rows fixed by final sweeps).
    pub rows_done: i64,
    /// `rows_done + rows_remaining`.
    pub rows_total: i64,
    /// Estimated keys still to cover.
    pub rows_remaining: i64,
    /// Rows actually changed.
    pub rows_updated: i64,
    /// Percent done, never above 100 (and 100 only when done).
    pub percent: f64,
    /// Throughput over the latest chunks (rows/s), including time throttled between them.
    pub rate_rows_per_sec: Option<f64>,
    /// Estimated seconds left at `rate_rows_per_sec` (shown while throttled too).
    pub eta_seconds: Option<f64>,
    /// Optimistic end of the ETA band (fastest recent window).
    pub eta_low_seconds: Option<f64>,
    /// Pessimistic end of the ETA band (slowest recent window).
    pub eta_high_seconds: Option<f64>,
    /// Live target chunk time (ms).
    pub target_chunk_ms: i32,
    /// Live rate cap (rows/s, 0 = none).
    pub max_rows_per_sec: i32,
    /// Live maximum of concurrent workers.
    pub workers: i32,
    /// Workers holding a live lease now.
    pub live_workers: i64,
    /// Size limit of the latest chunk (rows).
    pub chunk_rows: Option<i32>,
    /// Duration of the latest chunk (ms).
    pub last_chunk_ms: Option<f64>,
    /// Median chunk duration over the latest 500 chunks (ms).
    pub p50_chunk_ms: Option<f64>,
    /// 99th percentile chunk duration over the latest 500 chunks (ms).
    pub p99_chunk_ms: Option<f64>,
    /// Chunks committed.
    pub chunks: i64,
    /// Chunks rolled back by their time cap or a lock conflict and retried smaller.
    pub chunk_retries: i64,
    /// Sessions that were waiting on the latest chunk's row locks when it committed.
    pub blocked_sessions: i32,
    /// Target the latest chunk aimed at: below `target_chunk_ms` while chunks block sessions.
    pub effective_target_ms: Option<i32>,
    /// Seconds spent throttled.
    pub throttled_seconds: f64,
    /// Final-sweep passes started.
    pub sweep_passes: i32,
    /// Seconds since the latest checkpoint was written.
    pub checkpoint_age_seconds: Option<f64>,
    /// When the first chunk ran.
    pub started_at: Option<DateTime<Utc>>,
    /// When it was found done.
    pub finished_at: Option<DateTime<Utc>>,
    /// Rows/s per 5-second bucket over the last 2 minutes, oldest first (a sparkline).
    pub recent_rates: Vec<f64>,
    /// The key ranges.
    pub ranges: Vec<RangeProgress>,
}

/// One key range.
#[derive(Debug, Clone, Serialize)]
pub struct RangeProgress {
    /// Range id.
    pub range_id: i32,
    /// `range` or `sweep`.
    pub kind: String,
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
    pub checkpoint: Option<Vec<String>>,
    /// Lower bound (exclusive; `None` for the first range).
    pub lo: Option<Vec<String>>,
    /// Upper bound (inclusive).
    pub hi: Option<Vec<String>>,
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
}

impl Progress {
    /// A human one-liner: state, percent, rows, rate, ETA.
    pub fn summary_line(&self) -> String {
        let mut s = format!(
            "{}: {:.1}% ({}/{} rows)",
            self.state, self.percent, self.rows_done, self.rows_total
        );
        if let Some(rate) = self.rate_rows_per_sec {
            s.push_str(&format!(", {rate:.0} rows/s"));
        }
        if self.state != State::Done {
            if let (Some(lo), Some(hi)) = (self.eta_low_seconds, self.eta_high_seconds) {
                s.push_str(&format!(", ETA {}–{}", fmt_secs(lo), fmt_secs(hi)));
            }
        }
        if !self.reason.is_empty() {
            s.push_str(&format!(" — {}", self.reason));
        }
        s
    }
}

/// `1h02m`, `3m05s`, `12s`.
pub fn fmt_secs(secs: f64) -> String {
    let s = secs.max(0.0).round() as u64;
    if s >= 3600 {
        format!("{}h{:02}m", s / 3600, (s % 3600) / 60)
    } else if s >= 60 {
        format!("{}m{:02}s", s / 60, s % 60)
    } else {
        format!("{s}s")
    }
}

/// Reads the progress of `plan`'s backfill (read-only; a never-started backfill shows idle).
pub async fn progress(client: &impl GenericClient, plan: &Plan) -> Result<Progress, BackfillError> {
    let spec = control::spec(plan)?;
    let row = client
        .query_opt(
            "SELECT state, reason, paused_by, target_chunk_ms, max_rows_per_sec, workers, \
             rows_done, rows_updated, rows_estimate, throttled_seconds, chunk_rows, last_chunk_ms, \
             sweep_passes, started_at, finished_at, key_types, chunk_retries \
             FROM cutover.backfill WHERE plan_id = $1",
            &[&plan.id()],
        )
        .await?;
    let Some(row) = row else {
        return Ok(Progress {
            plan_id: plan.id().to_string(),
            state: State::Idle,
            reason: "not started".to_string(),
            paused_by: None,
            rows_done: 0,
            rows_total: 0,
            rows_remaining: 0,
            rows_updated: 0,
            percent: 0.0,
            rate_rows_per_sec: None,
            eta_seconds: None,
            eta_low_seconds: None,
            eta_high_seconds: None,
            target_chunk_ms: spec.target_chunk_time.as_millis() as i32,
            max_rows_per_sec: spec.max_rows_per_second as i32,
            workers: spec.workers as i32,
            live_workers: 0,
            chunk_rows: None,
            last_chunk_ms: None,
            p50_chunk_ms: None,
            p99_chunk_ms: None,
            chunks: 0,
            chunk_retries: 0,
            blocked_sessions: 0,
            effective_target_ms: None,
            throttled_seconds: 0.0,
            sweep_passes: 0,
            checkpoint_age_seconds: None,
            started_at: None,
            finished_at: None,
            recent_rates: Vec::new(),
            ranges: Vec::new(),
        });
    };
    let state = State::parse(row.get(0)).unwrap_or(State::Idle);
    let key_types: Option<Vec<String>> = row.get(15);
    let integer_key = key_types.as_ref().is_some_and(|t| {
        t.len() == 1 && matches!(t[0].as_str(), "bigint" | "integer" | "smallint")
    });
    let ranges = read_ranges(client, plan.id()).await?;
    let remaining: i64 = ranges
        .iter()
        .filter(|r| !r.done)
        .map(|r| remaining_of(r, integer_key))
        .sum();
    let rows_done: i64 = row.get(6);
    let total = rows_done + remaining;
    let percent = if state == State::Done {
        100.0
    } else if total > 0 {
        (rows_done as f64 / total as f64 * 100.0).min(99.9)
    } else {
        0.0
    };
    let latest = client
        .query_opt(
            "SELECT blocked, effective_ms FROM cutover.backfill_chunks WHERE plan_id = $1 \
             ORDER BY id DESC LIMIT 1",
            &[&plan.id()],
        )
        .await?;
    let (blocked_sessions, effective_target_ms) =
        latest.map_or((0, None), |r| (r.get(0), r.get(1)));
    let stats = client
        .query_one(
            "SELECT percentile_cont(0.5) WITHIN GROUP (ORDER BY duration_ms), \
             percentile_cont(0.99) WITHIN GROUP (ORDER BY duration_ms) \
             FROM (SELECT duration_ms FROM cutover.backfill_chunks WHERE plan_id = $1 \
                   ORDER BY id DESC LIMIT 500) s",
            &[&plan.id()],
        )
        .await?;
    let recent = client
        .query(
            "SELECT rows_scanned, extract(epoch FROM started_at)::float8, \
             extract(epoch FROM finished_at)::float8 FROM cutover.backfill_chunks \
             WHERE plan_id = $1 ORDER BY id DESC LIMIT 60",
            &[&plan.id()],
        )
        .await?;
    let samples: Vec<(f64, f64, f64)> = recent
        .iter()
        .map(|r| (r.get::<_, i64>(0) as f64, r.get(1), r.get(2)))
        .collect();
    let rate = window_rate(&samples);
    let band: Vec<f64> = samples.chunks(10).filter_map(window_rate).collect();
    let (fast, slow) = band.iter().fold((None::<f64>, None::<f64>), |(hi, lo), r| {
        (
            Some(hi.map_or(*r, |h| h.max(*r))),
            Some(lo.map_or(*r, |l| l.min(*r))),
        )
    });
    let eta = |r: Option<f64>| {
        r.filter(|r| *r > 0.0 && state != State::Done)
            .map(|r| remaining as f64 / r)
    };
    let buckets = client
        .query(
            "SELECT floor(extract(epoch FROM clock_timestamp() - finished_at) / 5)::int, \
             sum(rows_scanned)::float8 FROM cutover.backfill_chunks \
             WHERE plan_id = $1 AND finished_at > clock_timestamp() - interval '120 seconds' \
             GROUP BY 1",
            &[&plan.id()],
        )
        .await?;
    let mut recent_rates = vec![0.0; 24];
    for b in buckets {
        let i: i32 = b.get(0);
        if (0..24).contains(&i) {
            recent_rates[23 - i as usize] = b.get::<_, f64>(1) / 5.0;
        }
    }
    let age: Option<f64> = client
        .query_one(
            "SELECT extract(epoch FROM clock_timestamp() - max(updated_at))::float8 \
             FROM cutover.backfill_ranges WHERE plan_id = $1 AND chunks > 0",
            &[&plan.id()],
        )
        .await?
        .get(0);
    Ok(Progress {
        plan_id: plan.id().to_string(),
        state,
        reason: row.get(1),
        paused_by: row.get(2),
        rows_done,
        rows_total: total,
        rows_remaining: remaining,
        rows_updated: row.get(7),
        percent,
        rate_rows_per_sec: rate,
        eta_seconds: eta(rate),
        eta_low_seconds: eta(fast),
        eta_high_seconds: eta(slow),
        target_chunk_ms: row.get(3),
        max_rows_per_sec: row.get(4),
        workers: row.get(5),
        live_workers: ranges.iter().filter(|r| r.lease_live).count() as i64,
        chunk_rows: row.get(10),
        last_chunk_ms: row.get(11),
        p50_chunk_ms: stats.get(0),
        p99_chunk_ms: stats.get(1),
        chunks: ranges.iter().map(|r| r.chunks).sum(),
        chunk_retries: row.get(16),
        blocked_sessions,
        effective_target_ms,
        throttled_seconds: row.get(9),
        sweep_passes: row.get(12),
        checkpoint_age_seconds: age,
        started_at: row.get(13),
        finished_at: row.get(14),
        recent_rates,
        ranges,
    })
}

/// Rows per second across a window of chunks `(rows, started, finished)` (epoch seconds).
fn window_rate(samples: &[(f64, f64, f64)]) -> Option<f64> {
    let rows: f64 = samples.iter().map(|s| s.0).sum();
    let start = samples.iter().map(|s| s.1).fold(f64::INFINITY, f64::min);
    let end = samples
        .iter()
        .map(|s| s.2)
        .fold(f64::NEG_INFINITY, f64::max);
    let span = end - start;
    (samples.len() >= 2 && span > 0.0 && rows > 0.0).then(|| rows / span)
}

/// Estimated keys left in an unfinished range: for an integer key, the key density seen so far
/// in the range applied to the keys left before its upper bound; otherwise the range's
/// estimate minus what is done (at least 1 while unfinished).
fn remaining_of(r: &RangeProgress, integer_key: bool) -> i64 {
    let estimate = r.rows_estimate.unwrap_or(0);
    if r.kind == "sweep" {
        return (estimate - r.rows_updated).max(1);
    }
    let num = |k: &Option<Vec<String>>| {
        k.as_ref()
            .and_then(|v| v.first())
            .and_then(|s| s.parse::<f64>().ok())
    };
    if integer_key {
        if let (Some(lo), Some(cp), Some(hi)) = (num(&r.lo), num(&r.checkpoint), num(&r.hi)) {
            if cp > lo && hi >= cp && r.rows_done > 0 {
                let density = r.rows_done as f64 / (cp - lo);
                return ((hi - cp) * density).round().max(1.0) as i64;
            }
        }
    }
    (estimate - r.rows_done).max(1)
}

async fn read_ranges(
    client: &impl GenericClient,
    plan_id: &str,
) -> Result<Vec<RangeProgress>, BackfillError> {
    let rows = client
        .query(
            "SELECT range_id, kind, done, rows_done, rows_updated, rows_estimate, chunks, \
             checkpoint, hi, lease_owner, lease_host, lease_pid, lease_since, lease_until, \
             COALESCE(lease_owner IS NOT NULL AND lease_until >= clock_timestamp(), false), lo \
             FROM cutover.backfill_ranges WHERE plan_id = $1 ORDER BY range_id",
            &[&plan_id],
        )
        .await?;
    Ok(rows
        .iter()
        .map(|r| RangeProgress {
            range_id: r.get(0),
            kind: r.get(1),
            done: r.get(2),
            rows_done: r.get(3),
            rows_updated: r.get(4),
            rows_estimate: r.get(5),
            chunks: r.get(6),
            checkpoint: keys::from_json(r.get::<_, Option<serde_json::Value>>(7).as_ref()),
            hi: keys::from_json(r.get::<_, Option<serde_json::Value>>(8).as_ref()),
            lease_owner: r.get(9),
            lease_host: r.get(10),
            lease_pid: r.get(11),
            lease_since: r.get(12),
            lease_until: r.get(13),
            lease_live: r.get(14),
            lo: keys::from_json(r.get::<_, Option<serde_json::Value>>(15).as_ref()),
        })
        .collect())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rate_spans_the_window() {
        let s = [(100.0, 0.0, 1.0), (100.0, 1.0, 2.0)];
        assert_eq!(window_rate(&s), Some(100.0));
        assert_eq!(window_rate(&s[..1]), None);
        assert_eq!(fmt_secs(3725.0), "1h02m");
        assert_eq!(fmt_secs(65.0), "1m05s");
    }
}
