//! Progress you can trust: rows covered from the checkpoints, remaining from each range's
//! estimate (interpolated over the key for integer keys), throughput over the latest chunks,
//! an ETA band, chunk-time percentiles, and who holds which range.

use chrono::{DateTime, Utc};
use serde::Serialize;
use tokio_postgres::GenericClient;

use super::pacing::Pace;
use super::partitions::{self, PartitionProgress};
use super::share::Share;
use super::{spec, BackfillError};
use crate::control::backfill::guard::{self as guard_readings, GuardReading};
use crate::control::backfill::leases::RangeKind;
use crate::control::backfill::{state, stats, State};
use crate::plan::{BackfillSpec, Plan};

pub use crate::control::backfill::stats::RangeRow as RangeProgress;

/// The backfill of one plan as the CLI, the TUI and the metrics see it.
#[derive(Debug, Clone, Serialize)]
pub struct Progress {
    /// Plan id.
    pub plan_id: String,
    /// Current state.
    pub state: State,
    /// Why it is throttled / paced / paused / stopped / failed (empty when running normally).
    pub reason: String,
    /// Held back, paced or free, from the state, worded for people.
    pub pace: Pace,
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
    /// Rows done, the total, whether it is an estimate, and the percent: the one computation
    /// every reader shows.
    pub share: Share,
    /// Throughput over the latest chunks (rows/s), measured start to start like the rate cap
    /// (so the pauses between chunks count), never above the cap; it decays while no chunk runs.
    pub rate_rows_per_sec: Option<f64>,
    /// Estimated seconds left at `rate_rows_per_sec` (shown while throttled too); `None` when
    /// done.
    pub eta_seconds: Option<f64>,
    /// Optimistic end of the ETA band (upper quartile of the recent sub-window rates).
    pub eta_low_seconds: Option<f64>,
    /// Pessimistic end of the ETA band (lower quartile of the recent sub-window rates).
    pub eta_high_seconds: Option<f64>,
    /// Live target chunk time (ms).
    pub target_chunk_ms: i32,
    /// Live rate cap (rows/s, 0 = none).
    pub max_rows_per_sec: i32,
    /// Live maximum of concurrent workers.
    pub workers: i32,
    /// Workers allowed while the application is idle (at least `workers`).
    pub idle_workers: i32,
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
    /// Share of the backfill's elapsed time spent throttled (0–1).
    pub throttled_share: Option<f64>,
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
    /// Per leaf partition of a partitioned table, by name (empty for a plain table).
    pub partitions: Vec<PartitionProgress>,
    /// The latency guard's readings and the WAL the chunks wrote.
    pub guard: GuardProgress,
    /// The cluster's replication slots: WAL retained, a logical consumer's lag, `wal_status`
    /// and `safe_wal_size`. With slot limits in `[backfill.throttle]`, those not Cutover's own
    /// hold the backfill back.
    pub slots: Vec<crate::control::slots::Slot>,
}

/// The latency guard as the status shows it.
#[derive(Debug, Clone, Default, Serialize)]
pub struct GuardProgress {
    /// The ratio allowed (`max_app_latency_ratio`).
    pub budget: f64,
    /// The latest reading: which signal counted, its ratio, the guard's reason.
    pub latest: Option<GuardReading>,
    /// The readings of the last [`GUARD_HISTORY`] seconds, oldest first (about one a second).
    pub readings: Vec<GuardReading>,
    /// WAL written per key covered, over the chunks that measured it (bytes).
    pub wal_bytes_per_row: Option<f64>,
    /// The most WAL one chunk wrote (bytes, an upper bound: other sessions' WAL included).
    pub max_chunk_wal_bytes: Option<i64>,
    /// The WAL budget of one chunk (bytes).
    pub chunk_wal_budget_bytes: f64,
}

/// How far back the status reads the guard's readings (seconds).
pub const GUARD_HISTORY: u64 = 300;

impl Progress {
    /// Rows done, the total and the percent, as every reader words them.
    pub fn share(&self) -> Share {
        self.share
    }

    /// A human one-liner: state, percent, rows, rate, ETA.
    pub fn summary_line(&self) -> String {
        let share = self.share();
        let mut s = format!(
            "{}: {} ({})",
            self.state,
            share.percent_text().unwrap_or_else(|| "0.0%".into()),
            share.rows_text()
        );
        if let Some(rate) = self.rate_rows_per_sec {
            s.push_str(&format!(", {rate:.0} rows/s"));
        }
        if self.state != State::Done {
            if let (Some(lo), Some(hi)) = (self.eta_low_seconds, self.eta_high_seconds) {
                s.push_str(&format!(", ETA {}", fmt_band(lo, hi)));
            }
            if matches!(self.state, State::Throttled | State::Pacing) {
                if let Some(share) = self.throttled_share {
                    s.push_str(&format!(
                        ", held or paced {:.0}% of the time",
                        share * 100.0
                    ));
                }
            }
        }
        match &self.pace {
            Pace::Pacing(text) => s.push_str(&format!(" — {text}")),
            _ if !self.reason.is_empty() => s.push_str(&format!(" — {}", self.reason)),
            _ => {}
        }
        s
    }
}

/// `1h02m`, `3m05s`, `12s`.
pub(crate) fn fmt_secs(secs: f64) -> String {
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
    let mut p = progress_of(client, plan).await?;
    p.slots = crate::control::slots::read(client).await?;
    Ok(p)
}

/// [`progress`] without the slots.
async fn progress_of(client: &impl GenericClient, plan: &Plan) -> Result<Progress, BackfillError> {
    let spec = spec(plan)?;
    let row = state::load(client, plan.id()).await?;
    let Some(row) = row else {
        return Ok(not_started(plan, spec));
    };
    let state = row.state;
    let integer_key = integer_key(&row);
    let ranges = stats::ranges(client, plan.id()).await?;
    let remaining = remaining_keys(&row, &ranges, integer_key);
    let rows_done = row.rows_done;
    let total = rows_done + remaining;
    let share = Share::new(Some(state), rows_done, Some(total));
    let percent = share.percent.unwrap_or(0.0);
    let latest = stats::latest_contention(client, plan.id()).await?;
    let (blocked_sessions, effective_target_ms) =
        latest.map_or((0, None), |c| (c.blocked, c.effective_ms));
    let (p50_chunk_ms, p99_chunk_ms) = stats::chunk_percentiles(client, plan.id()).await?;
    let mut samples: Vec<ChunkSample> = stats::recent_chunks(client, plan.id())
        .await?
        .into_iter()
        .map(|(rows, start, end)| ChunkSample { rows, start, end })
        .collect();
    samples.sort_by(|a, b| a.start.total_cmp(&b.start));
    let now = stats::db_now(client).await?;
    let cap = (row.max_rows_per_sec > 0).then_some(f64::from(row.max_rows_per_sec));
    let stalled = !state.under_way();
    let rates = if state == State::Done {
        Rates::default()
    } else {
        rates(&samples, now, cap, stalled)
    };
    let band = eta_band(remaining, &rates);
    let throttled_share = row
        .elapsed_seconds
        .filter(|e| *e > 0.0)
        .map(|e| (row.throttled_seconds / e).clamp(0.0, 1.0));
    let recent_rates = sparkline(stats::rate_buckets(client, plan.id()).await?);
    let age = stats::checkpoint_age(client, plan.id()).await?;
    let readings = guard_readings::recent(
        client,
        plan.id(),
        std::time::Duration::from_secs(GUARD_HISTORY),
    )
    .await?;
    let (wal, wal_rows, max_wal) = guard_readings::wal_per_chunk(client, plan.id()).await?;
    let guard = GuardProgress {
        latest: readings.last().cloned(),
        readings,
        wal_bytes_per_row: (wal_rows > 0).then(|| wal as f64 / wal_rows as f64),
        max_chunk_wal_bytes: (wal_rows > 0).then_some(max_wal),
        ..guard_defaults(spec)
    };
    Ok(Progress {
        plan_id: plan.id().to_string(),
        state,
        pace: Pace::of(Some(state), &row.reason),
        reason: row.reason,
        paused_by: row.paused_by,
        rows_done,
        rows_total: total,
        rows_remaining: remaining,
        rows_updated: row.rows_updated,
        percent,
        share,
        rate_rows_per_sec: rates.now,
        eta_seconds: band.map(|b| b.1),
        eta_low_seconds: band.map(|b| b.0),
        eta_high_seconds: band.map(|b| b.2),
        throttled_share,
        target_chunk_ms: row.target_chunk_ms,
        max_rows_per_sec: row.max_rows_per_sec,
        workers: row.workers,
        idle_workers: row.workers.max(spec.idle_concurrency() as i32),
        live_workers: ranges.iter().filter(|r| r.lease_live).count() as i64,
        chunk_rows: row.chunk_rows,
        last_chunk_ms: row.last_chunk_ms,
        p50_chunk_ms,
        p99_chunk_ms,
        chunks: ranges.iter().map(|r| r.chunks).sum(),
        chunk_retries: row.chunk_retries,
        blocked_sessions,
        effective_target_ms,
        throttled_seconds: row.throttled_seconds,
        sweep_passes: row.sweep_passes,
        checkpoint_age_seconds: age,
        started_at: row.started_at,
        finished_at: row.finished_at,
        recent_rates,
        partitions: partitions::summarize(&ranges, |r| remaining_of(r, integer_key)),
        ranges,
        guard,
        slots: Vec::new(),
    })
}

/// Rows done, the total and the percent of `plan`'s backfill, as [`progress`] computes them
/// (read-only; `None` while it has not started).
pub async fn share(
    client: &impl GenericClient,
    plan: &Plan,
) -> Result<Option<Share>, BackfillError> {
    let Some(row) = state::load(client, plan.id()).await? else {
        return Ok(None);
    };
    let ranges = stats::ranges(client, plan.id()).await?;
    let remaining = remaining_keys(&row, &ranges, integer_key(&row));
    Ok(Some(Share::new(
        Some(row.state),
        row.rows_done,
        Some(row.rows_done + remaining),
    )))
}

/// Keys still to cover: the sum over the unfinished ranges; before the ranges are planned, the
/// recorded estimate less what is done.
fn remaining_keys(row: &state::Row, ranges: &[RangeProgress], integer_key: bool) -> i64 {
    if ranges.is_empty() {
        return row.rows_estimate.map_or(0, |e| (e - row.rows_done).max(0));
    }
    ranges
        .iter()
        .filter(|r| !r.done)
        .map(|r| remaining_of(r, integer_key))
        .sum()
}

/// The key is one integer column (its density can be interpolated).
fn integer_key(row: &state::Row) -> bool {
    row.key_types
        .as_ref()
        .is_some_and(|t| t.len() == 1 && matches!(t[0].as_str(), "bigint" | "integer" | "smallint"))
}

/// The guard's settings, before any reading.
fn guard_defaults(spec: &BackfillSpec) -> GuardProgress {
    GuardProgress {
        budget: spec.throttle.max_app_latency_ratio,
        chunk_wal_budget_bytes: spec.throttle.max_chunk_wal_mib * 1_048_576.0,
        ..GuardProgress::default()
    }
}

/// The progress of a backfill whose state row does not exist yet: idle, with the plan's
/// settings.
fn not_started(plan: &Plan, spec: &BackfillSpec) -> Progress {
    Progress {
        plan_id: plan.id().to_string(),
        state: State::Idle,
        reason: "not started".to_string(),
        pace: Pace::Free,
        paused_by: None,
        rows_done: 0,
        rows_total: 0,
        rows_remaining: 0,
        rows_updated: 0,
        percent: 0.0,
        share: Share::new(None, 0, None),
        rate_rows_per_sec: None,
        eta_seconds: None,
        eta_low_seconds: None,
        eta_high_seconds: None,
        throttled_share: None,
        target_chunk_ms: spec.target_chunk_time.as_millis() as i32,
        max_rows_per_sec: spec.max_rows_per_second as i32,
        workers: spec.workers as i32,
        idle_workers: spec.idle_concurrency() as i32,
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
        partitions: Vec::new(),
        guard: guard_defaults(spec),
        slots: Vec::new(),
    }
}

/// Rows/s per 5-second bucket, oldest first, from (buckets ago, rows) of the last 2 minutes.
fn sparkline(buckets: Vec<(i32, f64)>) -> Vec<f64> {
    let mut rates = vec![0.0; 24];
    for (i, rows) in buckets {
        if (0..24).contains(&i) {
            rates[23 - i as usize] = rows / 5.0;
        }
    }
    rates
}

/// One committed chunk: keys covered, start and end (epoch seconds).
#[derive(Debug, Clone, Copy, PartialEq)]
pub(crate) struct ChunkSample {
    /// Keys the chunk covered.
    pub rows: f64,
    /// When it started.
    pub start: f64,
    /// When it committed.
    pub end: f64,
}

/// Throughput readings over a window of chunks.
#[derive(Debug, Clone, Default, PartialEq)]
pub(crate) struct Rates {
    /// Rows/s over the whole window.
    pub now: Option<f64>,
    /// Rows/s of each sub-window, oldest first.
    pub windows: Vec<f64>,
}

/// Sub-windows the recent chunks are split into for the ETA band.
const SUB_WINDOWS: usize = 6;
/// A window with no chunk start for this long (and this many typical gaps) is stalled.
const STALL_SECS: f64 = 2.0;

/// Rows/s over chunks sorted by start, measured start to start — the window the rate cap
/// enforces (a worker sleeps after a chunk so that its rows over the time to its next start
/// stay within its share) — and clamped to `cap`. The last chunk's rows count only once the
/// window reaches past it: while chunks run, the window ends at the last start; when no chunk
/// started for a while (or `stalled`: nobody runs chunks), it ends at `now` and the reading
/// decays toward 0.
pub(crate) fn rates(samples: &[ChunkSample], now: f64, cap: Option<f64>, stalled: bool) -> Rates {
    let n = samples.len();
    let clamp = |r: f64| cap.map_or(r, |c| r.min(c)).max(0.0);
    let Some((first, last)) = samples.first().zip(samples.last()) else {
        return Rates::default();
    };
    let gap = if n >= 2 {
        (last.start - first.start) / (n - 1) as f64
    } else {
        0.0
    };
    let idle = now - last.end;
    let stalled = stalled || n < 2 || idle > STALL_SECS.max(3.0 * gap);
    let span = |a: usize, b: usize| -> Option<f64> {
        // Chunks a..b (b exclusive), ending at the start of chunk b or at now.
        let end = if b < n { samples[b].start } else { now };
        let secs = end - samples[a].start;
        let rows: f64 = samples[a..b].iter().map(|s| s.rows).sum();
        (secs > 0.0).then(|| clamp(rows / secs))
    };
    let whole = if stalled { span(0, n) } else { span(0, n - 1) };
    let measured = if stalled { n } else { n - 1 };
    let per = (measured / SUB_WINDOWS).max(2);
    let mut windows = Vec::new();
    let mut a = 0;
    while a + per <= measured {
        let b = if a + 2 * per > measured {
            measured
        } else {
            a + per
        };
        windows.extend(span(a, b));
        a = b;
    }
    Rates {
        now: whole,
        windows,
    }
}

/// The ETA band `(optimistic, expected, pessimistic)` in seconds for `remaining` keys: the
/// expected value at the window's rate, the ends at the upper and lower quartile of the
/// sub-window rates (widened to include the expected one). `None` without a rate.
pub(crate) fn eta_band(remaining: i64, rates: &Rates) -> Option<(f64, f64, f64)> {
    let now = rates.now.filter(|r| *r > 0.0)?;
    let mut w: Vec<f64> = rates.windows.iter().copied().filter(|r| *r > 0.0).collect();
    w.sort_by(f64::total_cmp);
    let (q1, q3) = if w.is_empty() {
        (now, now)
    } else {
        (quantile(&w, 0.25), quantile(&w, 0.75))
    };
    let rem = remaining.max(0) as f64;
    let fast = q3.max(now);
    let slow = q1.min(now).max(f64::MIN_POSITIVE);
    Some((rem / fast, rem / now, rem / slow))
}

/// Linear-interpolated quantile of sorted values.
fn quantile(sorted: &[f64], q: f64) -> f64 {
    let pos = q * (sorted.len() - 1) as f64;
    let (lo, hi) = (pos.floor() as usize, pos.ceil() as usize);
    sorted[lo] + (sorted[hi] - sorted[lo]) * (pos - lo as f64)
}

/// `3m05s – 4m10s`, or `~35s` when both ends read the same.
pub(crate) fn fmt_band(lo: f64, hi: f64) -> String {
    let (a, b) = (fmt_secs(lo), fmt_secs(hi));
    if a == b {
        format!("~{a}")
    } else {
        format!("{a} – {b}")
    }
}

/// Estimated keys left in an unfinished range: for an integer key, the key density seen so far
/// in the range applied to the keys left before its upper bound; otherwise the range's
/// estimate minus what is done (at least 1 while unfinished).
fn remaining_of(r: &RangeProgress, integer_key: bool) -> i64 {
    let estimate = r.rows_estimate.unwrap_or(0);
    if r.kind == RangeKind::Sweep {
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

#[cfg(test)]
mod tests {
    use super::*;

    /// `n` chunks of `rows` keys, each taking `work` seconds, starting every `every` seconds.
    fn series(n: usize, rows: f64, work: f64, every: f64) -> Vec<ChunkSample> {
        (0..n)
            .map(|i| {
                let start = i as f64 * every;
                ChunkSample {
                    rows,
                    start,
                    end: start + work,
                }
            })
            .collect()
    }

    #[test]
    fn steady_chunks_read_their_rate_and_a_narrow_band() {
        let s = series(60, 1000.0, 0.1, 0.1);
        let r = rates(&s, 6.0, None, false);
        assert!((r.now.unwrap() - 10_000.0).abs() < 1e-6, "{r:?}");
        let (lo, mid, hi) = eta_band(50_000, &r).unwrap();
        assert!((mid - 5.0).abs() < 1e-6 && (lo - 5.0).abs() < 1e-6 && (hi - 5.0).abs() < 1e-6);
        assert_eq!(fmt_band(lo, hi), "~5s");
    }

    #[test]
    fn a_capped_series_never_reads_above_the_cap() {
        // Cap 20 000 rows/s, 4 workers (share 5 000): each chunk of 1 000 rows takes 50 ms and
        // sleeps until 200 ms after its start. Staggered starts.
        let mut s = Vec::new();
        for w in 0..4 {
            for i in 0..15 {
                let start = i as f64 * 0.2 + w as f64 * 0.013;
                s.push(ChunkSample {
                    rows: 1000.0,
                    start,
                    end: start + 0.05,
                });
            }
        }
        s.sort_by(|a, b| a.start.total_cmp(&b.start));
        // The old reading: rows over first start to last end (it counts the last chunks'
        // rows without their sleeps) — above the cap.
        let naive: f64 = s.iter().map(|c| c.rows).sum::<f64>() / (s[59].end - s[0].start);
        assert!(naive > 20_000.0, "{naive}");
        let r = rates(&s, s[59].end, Some(20_000.0), false);
        let now = r.now.unwrap();
        assert!(now <= 20_000.0 && now > 18_000.0, "{now}");
        assert!(r.windows.iter().all(|w| *w <= 20_000.0), "{r:?}");
    }

    #[test]
    fn a_bursty_series_gives_a_real_band() {
        // Fast stretches (10 000 rows/s) alternate with slow ones (2 500 rows/s).
        let mut s = Vec::new();
        let mut t = 0.0;
        for i in 0..60 {
            let every = if (i / 10) % 2 == 0 { 0.1 } else { 0.4 };
            s.push(ChunkSample {
                rows: 1000.0,
                start: t,
                end: t + 0.09,
            });
            t += every;
        }
        let r = rates(&s, t - 0.3, None, false);
        let (lo, mid, hi) = eta_band(100_000, &r).unwrap();
        assert!(lo < mid && mid < hi, "{lo} {mid} {hi}");
        assert!(hi / lo > 1.4, "the band reflects the variation: {lo}–{hi}");
        assert!(fmt_band(lo, hi).contains('–'));
    }

    #[test]
    fn a_stalled_series_decays_and_done_shows_no_eta() {
        let s = series(20, 1000.0, 0.1, 0.1);
        let live = rates(&s, 2.0, None, false).now.unwrap();
        let stalled = rates(&s, 60.0, None, false).now.unwrap();
        assert!(stalled < live / 20.0, "{live} → {stalled}");
        let paused = rates(&s, 2.0, None, true).now.unwrap();
        assert!(paused <= 20_000.0 / 2.0 + 1e-6, "{paused}");
        assert_eq!(rates(&[], 1.0, None, false), Rates::default());
        assert_eq!(eta_band(10, &Rates::default()), None);
    }

    #[test]
    fn formats_seconds() {
        assert_eq!(fmt_secs(3725.0), "1h02m");
        assert_eq!(fmt_secs(65.0), "1m05s");
    }
}
