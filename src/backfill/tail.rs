//! The latency guard's tail signals: what the application feels beyond its statements' means.
//!
//! - **Commit latency**: every reading, the monitoring connection commits a one-row write
//!   (`cutover.guard_probe`, `synchronous_commit = on`) twice and times each. A commit waits for
//!   the WAL flush up to its own record, backfill WAL included, like the application's. Judged on
//!   the p95 over [`COMMIT_WINDOW`] against the baseline: the lowest p95 of the quiet windows
//!   within [`BASELINE_HORIZON`], or of any window faster than that.
//! - **Lock waits on the backfill**: application sessions waiting on a lock held by a backfill
//!   session (`pg_blocking_pids`), their count and the longest wait (since its statement
//!   started), the worst over [`WAIT_WINDOW`].
//! - **WAL rate** (`pg_current_wal_lsn()` deltas over [`WAL_WINDOW`]), when
//!   `max_wal_mib_per_second` is set: it counts as `limit × rate / max` so that a rate over the
//!   maximum yields like a latency over budget.
//!
//! Each gives a [`Pressure`] on the scale of the latency ratio, with its own wording. Where the
//! application's transaction time is known (the guard samples it), a commit slower by Δ ms and a
//! wait of Δ ms count as the application's transactions taking Δ ms longer: `(t + Δ) / t`; the
//! probe is a bare one-row commit, and the same Δ on its own sub-millisecond baseline would read
//! as a rise the application, whose transactions take longer, does not feel. Without it, the
//! commit counts against its own baseline and a wait against the commit baseline.

use std::collections::VecDeque;
use std::time::{Duration, Instant};

use tokio_postgres::Client;

use crate::db::describe_error;

/// Why the latency guard could not read a signal; the database's error keeps its SQLSTATE.
#[derive(Debug, thiserror::Error)]
pub enum GuardError {
    /// The activity sample or the `pg_stat_statements` lookup failed.
    #[error("{}", describe_error(.0))]
    Activity(#[source] tokio_postgres::Error),
    /// A tail signal (named) could not be read.
    #[error("{signal}: {}", describe_error(.source))]
    Signal {
        /// Which signal.
        signal: &'static str,
        /// The database's error.
        #[source]
        source: tokio_postgres::Error,
    },
    /// There is no monitoring connection to read on.
    #[error("no monitoring connection")]
    NoConnection,
}

/// How far back the quiet windows count towards a baseline (their lowest reading counts).
pub const BASELINE_HORIZON: Duration = Duration::from_secs(60);
/// Window of the commit probe's p95.
pub const COMMIT_WINDOW: Duration = Duration::from_secs(4);
/// Window of the lock-wait maximum.
pub const WAIT_WINDOW: Duration = Duration::from_secs(1);
/// Window of the WAL rate.
pub const WAL_WINDOW: Duration = Duration::from_secs(2);
/// Fewest probe commits in a window for a reading.
const MIN_COMMITS: usize = 4;
/// Probe commits per reading: at four readings a second, 32 in a window, so that its p95 is not
/// just its slowest commit.
const PROBES_PER_READING: usize = 2;
/// Smallest commit baseline (ms): below it, scheduling noise would read as a rise.
const COMMIT_FLOOR_MS: f64 = 0.3;

/// A tail signal.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TailSignal {
    /// The probe's commit latency.
    Commit,
    /// Application sessions waiting on the backfill's locks.
    LockWaits,
    /// WAL generated per second.
    WalRate,
}

impl TailSignal {
    /// Name used in reasons and in the recorded readings.
    pub fn label(self) -> &'static str {
        match self {
            TailSignal::Commit => "commit latency",
            TailSignal::LockWaits => "lock waits on the backfill",
            TailSignal::WalRate => "WAL rate",
        }
    }
}

/// One judged tail signal.
#[derive(Debug, Clone, PartialEq)]
pub struct Pressure {
    /// Which.
    pub signal: TailSignal,
    /// On the latency-ratio scale (compared with `max_app_latency_ratio`).
    pub ratio: f64,
    /// The figures behind it (`p95 2.10 ms vs 0.68 ms`).
    pub detail: String,
}

/// The tail signals' samples.
#[derive(Debug, Default)]
pub struct Tail {
    /// Probe commit times (ms).
    commits: VecDeque<(Instant, f64)>,
    /// The commit p95 of each quiet window within the baseline horizon (ms); the lowest is the
    /// baseline.
    commit_bases: VecDeque<(Instant, f64)>,
    /// (waiting sessions, longest wait ms).
    waits: VecDeque<(Instant, (f64, f64))>,
    /// Cumulative WAL position (bytes).
    wal: VecDeque<(Instant, f64)>,
    /// `max_wal_mib_per_second` (0: no limit).
    wal_limit: f64,
}

/// The `q` quantile of `values` (nearest rank); `None` when empty.
pub fn quantile(values: impl Iterator<Item = f64>, q: f64) -> Option<f64> {
    let mut v: Vec<f64> = values.collect();
    if v.is_empty() {
        return None;
    }
    v.sort_by(|a, b| a.total_cmp(b));
    let rank = ((q * v.len() as f64).ceil() as usize).clamp(1, v.len());
    Some(v[rank - 1])
}

fn within<T: Copy>(
    q: &VecDeque<(Instant, T)>,
    now: Instant,
    w: Duration,
) -> impl Iterator<Item = T> + '_ {
    q.iter()
        .filter(move |s| now.saturating_duration_since(s.0) <= w)
        .map(|s| s.1)
}

/// Drops the samples older than `w`.
pub(super) fn keep<T>(q: &mut VecDeque<(Instant, T)>, now: Instant, w: Duration) {
    while q
        .front()
        .is_some_and(|s| now.saturating_duration_since(s.0) > w)
    {
        q.pop_front();
    }
}

impl Tail {
    /// Tail signals with the WAL-rate maximum `wal_limit` (MiB/s, 0 = none).
    pub fn new(wal_limit: f64) -> Tail {
        Tail {
            wal_limit,
            ..Tail::default()
        }
    }

    /// One probe commit of `ms`.
    pub fn push_commit(&mut self, now: Instant, ms: f64) {
        self.commits.push_back((now, ms));
        keep(&mut self.commits, now, COMMIT_WINDOW * 2);
        // The probe is the same one-row commit every time, and a backfill cannot make it
        // faster: a window faster than the baseline, chunks running or not, shows the baseline
        // was taken at a slow moment (after a checkpoint, inside a write-back stall).
        let faster = self
            .commit_p95(now)
            .filter(|p| self.commit_baseline().is_some_and(|b| *p < b));
        if let Some(p) = faster {
            self.trim_bases(now);
            self.commit_bases.push_back((now, p));
        }
    }

    /// Forgets the baseline candidates older than [`BASELINE_HORIZON`].
    fn trim_bases(&mut self, now: Instant) {
        while self
            .commit_bases
            .front()
            .is_some_and(|(at, _)| now.saturating_duration_since(*at) > BASELINE_HORIZON)
        {
            self.commit_bases.pop_front();
        }
    }

    /// One lock-wait sample: `n` sessions wait on the backfill, the longest for `longest_ms`.
    pub fn push_waits(&mut self, now: Instant, n: f64, longest_ms: f64) {
        self.waits.push_back((now, (n, longest_ms)));
        keep(&mut self.waits, now, WAIT_WINDOW * 2);
    }

    /// One WAL position sample (bytes).
    pub fn push_wal(&mut self, now: Instant, bytes: f64) {
        self.wal.push_back((now, bytes));
        keep(&mut self.wal, now, WAL_WINDOW * 2);
    }

    /// The commit p95 over the window, when enough commits were timed.
    pub fn commit_p95(&self, now: Instant) -> Option<f64> {
        self.p95_within(now, COMMIT_WINDOW)
    }

    fn p95_within(&self, now: Instant, window: Duration) -> Option<f64> {
        let v: Vec<f64> = within(&self.commits, now, window).collect();
        (v.len() >= MIN_COMMITS)
            .then(|| quantile(v.into_iter(), 0.95))
            .flatten()
    }

    /// The commit baseline (ms), once measured.
    pub fn commit_baseline(&self) -> Option<f64> {
        self.commit_bases
            .iter()
            .map(|(_, p)| *p)
            .min_by(|a, b| a.total_cmp(b))
    }

    /// Adds the p95 of the commits of the last `quiet` (no chunk ran then; at most the window)
    /// to the baseline's history, when there are enough of them; `fresh` forgets the history
    /// first. The lowest p95 within [`BASELINE_HORIZON`] is the baseline.
    pub fn set_baseline(&mut self, now: Instant, quiet: Duration, fresh: bool) {
        let Some(p) = self.p95_within(now, quiet.min(COMMIT_WINDOW)) else {
            return;
        };
        if fresh {
            self.commit_bases.clear();
        }
        self.trim_bases(now);
        self.commit_bases.push_back((now, p));
    }

    /// The WAL rate over the window (MiB/s).
    pub fn wal_rate(&self, now: Instant) -> Option<f64> {
        let last = self.wal.back()?;
        let first = self
            .wal
            .iter()
            .find(|s| now.saturating_duration_since(s.0) <= WAL_WINDOW)?;
        let secs = last.0.saturating_duration_since(first.0).as_secs_f64();
        (secs >= 0.5).then(|| (last.1 - first.1).max(0.0) / secs / 1_048_576.0)
    }

    /// The tail signals judged against `limit` (only those with a reading); `app_ms`: the
    /// application's transaction time (ms), when known.
    pub fn pressures(&self, now: Instant, limit: f64, app_ms: Option<f64>) -> Vec<Pressure> {
        let mut out = Vec::new();
        let measured = self.commit_baseline();
        let base = measured.map(|b| b.max(COMMIT_FLOOR_MS));
        if let (Some(p95), Some(base)) = (self.commit_p95(now), base) {
            let shown = measured.unwrap_or(base);
            let (ratio, detail) = match app_ms.filter(|t| *t > base) {
                Some(t) => {
                    let added = (p95 - base).max(0.0);
                    (
                        (t + added) / t,
                        format!(
                            "p95 {p95:.2} ms vs {shown:.2} ms: +{added:.2} ms on {t:.2}-ms \
                             transactions"
                        ),
                    )
                }
                None => (p95 / base, format!("p95 {p95:.2} ms vs {shown:.2} ms")),
            };
            out.push(Pressure {
                signal: TailSignal::Commit,
                ratio,
                detail,
            });
        }
        let (n, longest) = within(&self.waits, now, WAIT_WINDOW)
            .fold((0.0f64, 0.0f64), |(n, l), (a, b)| (n.max(a), l.max(b)));
        if n > 0.0 {
            let base = app_ms.or(base).unwrap_or(1.0);
            out.push(Pressure {
                signal: TailSignal::LockWaits,
                ratio: (base + longest) / base,
                detail: format!("{n:.0} session(s), longest {longest:.0} ms"),
            });
        }
        if self.wal_limit > 0.0 {
            if let Some(rate) = self.wal_rate(now) {
                out.push(Pressure {
                    signal: TailSignal::WalRate,
                    ratio: limit * rate / self.wal_limit,
                    detail: format!("{rate:.1} MiB/s vs max {} MiB/s", self.wal_limit),
                });
            }
        }
        out
    }

    /// Reads every tail signal once: the probe commit of `plan_id`, the lock waits on the
    /// backfill's sessions, the WAL position. An error names the signal that could not be read.
    pub async fn sample(
        &mut self,
        client: &Client,
        plan_id: &str,
        now: Instant,
    ) -> Result<(), GuardError> {
        for _ in 0..PROBES_PER_READING {
            let took = crate::control::backfill::guard::commit_probe(client, plan_id)
                .await
                .map_err(|e| GuardError::Signal {
                    signal: TailSignal::Commit.label(),
                    source: e,
                })?;
            self.push_commit(now, took.as_secs_f64() * 1000.0);
        }
        let row = client
            .query_one(
                "SELECT count(DISTINCT a.pid)::float8 AS n, coalesce(max(extract(epoch FROM \
                   clock_timestamp() - a.query_start) * 1000), 0)::float8 AS longest_ms, \
                 (pg_current_wal_lsn() - '0/0'::pg_lsn)::float8 AS wal \
                 FROM pg_stat_activity a \
                 WHERE a.wait_event_type = 'Lock' AND a.datname = current_database() \
                 AND a.application_name NOT LIKE 'cutover/%' \
                 AND EXISTS (SELECT 1 FROM pg_stat_activity w \
                   WHERE w.pid = ANY (pg_blocking_pids(a.pid)) \
                   AND w.application_name LIKE 'cutover/backfill/%')",
                &[],
            )
            .await
            .map_err(|e| GuardError::Signal {
                signal: TailSignal::LockWaits.label(),
                source: e,
            })?;
        let read = |c: &str| -> Result<f64, GuardError> {
            row.try_get(c).map_err(|e| GuardError::Signal {
                signal: TailSignal::LockWaits.label(),
                source: e,
            })
        };
        self.push_waits(now, read("n")?, read("longest_ms")?);
        self.push_wal(now, read("wal")?);
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(t0: Instant, ms: u64) -> Instant {
        t0 + Duration::from_millis(ms)
    }

    /// Four quiet seconds of probe commits of `ms` from `t0`, then the baseline.
    fn quiet(t: &mut Tail, t0: Instant, ms: f64) {
        for i in 0..16 {
            t.push_commit(at(t0, 250 * i), ms);
        }
        t.set_baseline(at(t0, 3750), COMMIT_WINDOW, false);
    }

    #[test]
    fn a_commit_spike_in_the_tail_reads_while_the_mean_hardly_moves() {
        let t0 = Instant::now();
        let mut t = Tail::new(0.0);
        quiet(&mut t, t0, 1.0);
        // Three slow commits in sixteen: the mean rises 40 %, the p95 5×.
        for i in 16..32 {
            t.push_commit(at(t0, 250 * i), if i % 5 == 0 { 5.0 } else { 0.9 });
        }
        let p = t.pressures(at(t0, 7750), 1.25, None);
        assert_eq!(p.len(), 1);
        assert_eq!(p[0].signal, TailSignal::Commit);
        assert!((p[0].ratio - 5.0).abs() < 1e-9, "{p:?}");
    }

    #[test]
    fn on_the_applications_scale_a_small_commit_rise_on_a_fast_probe_counts_as_small() {
        let t0 = Instant::now();
        let mut t = Tail::new(0.0);
        quiet(&mut t, t0, 0.5);
        for i in 16..32 {
            t.push_commit(at(t0, 250 * i), 0.8);
        }
        let now = at(t0, 7750);
        // +0.3 ms is 1.6× a 0.5-ms probe, but 1.15× 2-ms transactions.
        let own = t.pressures(now, 1.25, None);
        assert!((own[0].ratio - 1.6).abs() < 1e-9, "{own:?}");
        let app = t.pressures(now, 1.25, Some(2.0));
        assert!((app[0].ratio - 1.15).abs() < 1e-9, "{app:?}");
        assert!(
            app[0].detail.ends_with("+0.30 ms on 2.00-ms transactions"),
            "{app:?}"
        );
        // A wait counts on the same scale: 8 ms on 2-ms transactions is 5×.
        t.push_waits(now, 1.0, 8.0);
        let w = t.pressures(now, 1.25, Some(2.0));
        assert_eq!(w[1].signal, TailSignal::LockWaits);
        assert!((w[1].ratio - 5.0).abs() < 1e-9, "{w:?}");
    }

    #[test]
    fn lock_waits_count_against_the_commit_baseline_and_fade_after_the_window() {
        let t0 = Instant::now();
        let mut t = Tail::new(0.0);
        for i in 0..8 {
            t.push_commit(at(t0, 250 * i), 2.0);
        }
        t.set_baseline(at(t0, 1750), COMMIT_WINDOW, false);
        t.push_waits(at(t0, 2000), 3.0, 8.0);
        let p = t.pressures(at(t0, 2000), 1.25, None);
        let w = p.iter().find(|p| p.signal == TailSignal::LockWaits);
        assert_eq!(w.map(|w| w.ratio), Some(5.0), "{p:?}");
        t.push_waits(at(t0, 3500), 0.0, 0.0);
        let p = t.pressures(at(t0, 3500), 1.25, None);
        assert!(p.iter().all(|p| p.signal != TailSignal::LockWaits), "{p:?}");
    }

    #[test]
    fn a_wal_surge_reads_only_against_a_maximum() {
        let t0 = Instant::now();
        let mut free = Tail::new(0.0);
        let mut capped = Tail::new(8.0);
        for i in 0..9u32 {
            // 16 MiB/s.
            let bytes = f64::from(i) * 4.0 * 1_048_576.0;
            free.push_wal(at(t0, 250 * u64::from(i)), bytes);
            capped.push_wal(at(t0, 250 * u64::from(i)), bytes);
        }
        let now = at(t0, 2000);
        assert!(free.pressures(now, 1.25, None).is_empty());
        let p = capped.pressures(now, 1.25, None);
        assert_eq!(p[0].signal, TailSignal::WalRate);
        assert!((p[0].ratio - 2.5).abs() < 1e-9, "{p:?}");
    }

    #[test]
    fn a_quiet_server_reads_at_its_baseline() {
        let t0 = Instant::now();
        let mut t = Tail::new(8.0);
        for i in 0..32u64 {
            t.push_commit(at(t0, 250 * i), 0.8 + (i % 3) as f64 * 0.05);
            t.push_waits(at(t0, 250 * i), 0.0, 0.0);
            t.push_wal(at(t0, 250 * i), i as f64 * 1000.0);
            if i == 15 {
                t.set_baseline(at(t0, 250 * i), COMMIT_WINDOW, false);
            }
        }
        for p in t.pressures(at(t0, 7750), 1.25, None) {
            assert!(p.ratio <= 1.01, "{p:?}");
        }
        assert_eq!(quantile([3.0, 1.0, 2.0].into_iter(), 0.95), Some(3.0));
    }
}
