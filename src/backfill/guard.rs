//! The latency guard: the backfill yields when the application's latency rises above
//! `max_app_latency_ratio` × its baseline.
//!
//! Signals, read every throttle tick on the monitoring connection:
//! - `pg_stat_statements` (when the extension is installed and loaded): the mean execution
//!   time over the last second of this database's statements that name the backfilled table,
//!   excluding Cutover's own — statements tagged `/* cutover */` and every query id seen in a
//!   `cutover/%` session.
//! - `pg_stat_activity` sampling: the mean age of the active application backends (not
//!   `cutover/%`) over the last two seconds. It also sees time outside statements on the table
//!   (commits waiting on WAL flushes, lock waits anywhere).
//!
//! - the tail signals ([`super::tail`]): the commit probe's p95, lock waits on the backfill's
//!   sessions, the WAL rate — counted only while application traffic has been seen lately.
//! - the application's transaction time: twice the median age of its open transactions
//!   (`xact_start`), sampled with the activity.
//!
//! Each signal is compared with its own baseline, on the application's scale where its
//! transaction time is known: a signal Δ ms above its baseline counts as `(t + Δ) / t` for
//! transactions of `t` ms (a probe commit 0.3 ms slower is 1.6× its own 0.5 ms, but 1.15× for
//! 2-ms transactions). The worst ratio counts (and is named).
//!
//! Baseline: measured before the first chunk, and again whenever no chunk has run for a whole
//! window — never while another throttle signal holds the backfill back ([`Guard::observe`]).
//! Each signal's baseline is the lowest of its quiet windows over the last
//! [`BASELINE_HORIZON`]: the server's write-back of the backfill's dirty pages goes on for
//! seconds after the chunks stop, and a window measured inside such a stall must not raise the
//! baseline and blind the guard. A forced quiet window, when the guard has yielded at its
//! maximum for a while, starts the history afresh (so a baseline taken at a fast moment cannot
//! hold the backfill back for ever).
//!
//! Slow start: when the application is there, the backfill starts at [`START_DUTY`] (chunks
//! run a tenth of the time) and speeds up window by window while the latency stays within
//! budget.
//!
//! Control law ([`law`]): after each chunk a worker pauses `pause × chunk time` (the pause
//! follows from the duty, the share of the time chunks run) and aims its chunks at
//! `target / (1 + pause)` (shorter lock holds, less WAL at a time). Over budget the duty is cut,
//! at most once per [`law::CUT_HOLD`]; within budget it steps back up at most once per window,
//! slowly near the duty it was last cut from. The duty is at least [`MIN_DUTY`] (pause
//! [`MAX_PAUSE`]: chunks run about 5 % of the time).

use std::collections::{HashSet, VecDeque};
use std::time::{Duration, Instant};

use tokio_postgres::Client;

use super::tail::{GuardError, Tail, TailSignal, BASELINE_HORIZON};
use crate::db::describe_error;

mod law;
pub use law::{DutyCycle, MAX_PAUSE, MIN_DUTY, START_DUTY};
/// Window of the `pg_stat_statements` mean.
const STATEMENTS_WINDOW: Duration = Duration::from_secs(1);
/// Window of the activity sampling.
const ACTIVITY_WINDOW: Duration = Duration::from_secs(2);
/// Fewest statement calls in a window for a reading.
const MIN_CALLS: f64 = 20.0;
/// Window of the application's transaction time.
const XACT_WINDOW: Duration = Duration::from_secs(60);
/// Fewest open transactions sampled for the application's transaction time.
const MIN_XACTS: usize = 20;
/// Fewest sampled active backends in a window for a reading.
const MIN_SAMPLED: f64 = 6.0;
/// How long the first baseline may take before the backfill starts without one.
const FIRST_BASELINE: Duration = Duration::from_millis(2500);
/// Yielding at [`MAX_PAUSE`] this long forces a quiet window to re-measure the baseline.
const REMEASURE_AFTER: Duration = Duration::from_secs(15);
/// Gap between the first two statement samples.
const SETTLE_GAP: Duration = Duration::from_millis(50);
/// How often the watched query ids are looked up again.
const REFRESH_IDS: Duration = Duration::from_secs(5);
/// Once application traffic has been seen, how long it must stay away before the application
/// counts as idle again (light traffic shows in only some samples).
const IDLE_AFTER_TRAFFIC: Duration = Duration::from_secs(30);

/// Where a latency reading came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Source {
    /// `pg_stat_statements` deltas of the application's statements on the table.
    Statements,
    /// Sampling of active application backends in `pg_stat_activity`.
    Activity,
}

impl Source {
    /// Name used in reasons.
    pub fn label(self) -> &'static str {
        match self {
            Source::Statements => "pg_stat_statements",
            Source::Activity => "pg_stat_activity sampling",
        }
    }
}

/// What the guard says.
#[derive(Debug, Clone, PartialEq)]
pub enum Advice {
    /// Nobody is hurt: full speed.
    Clear,
    /// Run chunks, pausing `pause` × each chunk's time after it.
    Yield {
        /// Pause factor.
        pause: f64,
        /// Why, for the status.
        reason: String,
    },
    /// Run no chunk now (measuring the baseline).
    Hold(String),
}

/// The signal that counted in a reading, on the latency-ratio scale.
#[derive(Debug, Clone, PartialEq)]
pub struct Judged {
    /// Value over its reference (compared with `max_app_latency_ratio`).
    pub ratio: f64,
    /// The signal's name (`commit latency`, `app latency`…).
    pub signal: &'static str,
    /// What the ratio is of (`baseline`, or `budget` for the WAL rate).
    pub of: &'static str,
    /// The figures behind it.
    pub detail: String,
}

/// A windowed reading: mean latency (ms) and its source.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Reading {
    /// Mean latency (ms).
    pub ms: f64,
    /// Where it came from.
    pub source: Source,
}

/// The guard of one backfill run.
pub struct Guard {
    limit: f64,
    pattern: String,
    started: Instant,
    /// `None` until known; false when the extension is missing or not loaded.
    statements: Option<bool>,
    ids: Vec<i64>,
    excluded: HashSet<i64>,
    ids_at: Option<Instant>,
    /// Cumulative (time, calls, total ms) of the watched statements.
    cumulative: VecDeque<(Instant, f64, f64)>,
    /// Activity samples (time, summed age ms, backends).
    samples: VecDeque<(Instant, f64, f64)>,
    /// The quiet windows' readings within [`BASELINE_HORIZON`] (each source's lowest is its
    /// baseline).
    baselines: VecDeque<(Instant, Reading)>,
    /// True once the first baseline window is over (with or without a baseline).
    started_chunks: bool,
    /// The control law's state.
    cycle: DutyCycle,
    at_max_since: Option<Instant>,
    /// Why the guard waits for a quiet window to measure the baseline again.
    remeasure: Option<String>,
    /// When the samples last showed application traffic.
    last_traffic: Option<Instant>,
    /// Application sessions idle inside a transaction in the latest sample.
    in_transaction: f64,
    /// Ages (ms) of the application's open transactions, sampled while no chunk ran.
    xact_ages: VecDeque<(Instant, f64)>,
    /// The application's transaction time (ms) last read from enough of them.
    xact_ms: Option<f64>,
    /// The tail signals (sampled once [`Guard::probing`] names the plan).
    tail: Tail,
    /// The plan whose probe row the commit probe writes.
    plan_id: Option<String>,
    /// The signal that counted in the latest reading.
    last: Option<Judged>,
}

impl Guard {
    /// A guard for `table` (as the plan names it) allowing `limit` × the baseline.
    pub fn new(table: &str, limit: f64) -> Guard {
        let rel = table.rsplit('.').next().unwrap_or(table).trim_matches('"');
        let escaped: String = rel
            .chars()
            .map(|c| {
                if c.is_alphanumeric() || c == '_' {
                    c.to_string()
                } else {
                    format!("\\{c}")
                }
            })
            .collect();
        Guard {
            limit,
            pattern: format!("\\m{escaped}\\M"),
            started: Instant::now(),
            statements: None,
            ids: Vec::new(),
            excluded: HashSet::new(),
            ids_at: None,
            cumulative: VecDeque::new(),
            samples: VecDeque::new(),
            baselines: VecDeque::new(),
            started_chunks: false,
            cycle: DutyCycle::free(),
            at_max_since: None,
            remeasure: None,
            last_traffic: None,
            in_transaction: 0.0,
            xact_ages: VecDeque::new(),
            xact_ms: None,
            tail: Tail::new(0.0),
            plan_id: None,
            last: None,
        }
    }

    /// Also samples the tail signals: commits a probe row of `plan_id` each reading, and
    /// judges the WAL rate against `wal_limit` MiB/s (0 = none).
    pub fn probing(mut self, plan_id: &str, wal_limit: f64) -> Guard {
        self.plan_id = Some(plan_id.to_string());
        self.tail = Tail::new(wal_limit);
        self
    }

    /// The signal that counted in the latest reading, if any had a baseline.
    pub fn last(&self) -> Option<&Judged> {
        self.last.as_ref()
    }

    /// The limit (`max_app_latency_ratio`).
    pub fn limit(&self) -> f64 {
        self.limit
    }

    /// The tail signals' samples.
    pub fn tail(&self) -> &Tail {
        &self.tail
    }

    /// The current pause factor.
    pub fn pause(&self) -> f64 {
        self.cycle.pause()
    }

    /// True when the samples show no application traffic at all (no active application
    /// backend, none idle inside a transaction, no application statement on the table) in the
    /// last window — and, once traffic has been seen, for `IDLE_AFTER_TRAFFIC`: nobody to hurt.
    pub fn app_idle(&self) -> bool {
        self.idle_at(Instant::now())
    }

    fn idle_at(&self, now: Instant) -> bool {
        self.started_chunks
            && self.remeasure.is_none()
            && self.settled()
            && !self.traffic(now)
            && self
                .last_traffic
                .is_none_or(|t| now.duration_since(t) >= IDLE_AFTER_TRAFFIC)
    }

    /// The baseline, once measured (`pg_stat_statements`' when there is one).
    pub fn baseline(&self) -> Option<Reading> {
        self.base_of(Source::Statements)
            .or_else(|| self.base_of(Source::Activity))
    }

    /// The baseline of `source`: its lowest quiet reading within the horizon.
    fn base_of(&self, source: Source) -> Option<Reading> {
        self.baselines
            .iter()
            .map(|(_, r)| *r)
            .filter(|r| r.source == source)
            .min_by(|a, b| a.ms.total_cmp(&b.ms))
    }

    /// Reads the signals once and advises. `quiet_for`: how long no chunk has run (in this
    /// process and, as far as `pg_stat_activity` shows, in any). An error means the activity
    /// sample could not be read (the caller counts it toward `fail_closed_after`).
    pub async fn tick(
        &mut self,
        client: &Client,
        quiet_for: Duration,
    ) -> Result<Advice, GuardError> {
        let now = Instant::now();
        let busy_elsewhere = self.sample(client, now).await?;
        if self.statements != Some(false) && !self.started_chunks && !self.settled() {
            // Before the first chunk: a second sample shortly after the first tells an idle
            // application at once (nothing to protect, so no reason to wait a whole tick).
            tokio::time::sleep(SETTLE_GAP).await;
            self.sample_statements(client, Instant::now()).await;
        }
        let quiet_for = if busy_elsewhere {
            Duration::ZERO
        } else {
            quiet_for
        };
        Ok(self.advise(Instant::now(), quiet_for))
    }

    /// Reads the signals without judging them, while another signal holds the backfill back:
    /// the windows stay current, but no baseline is taken from them (the hold — a vacuum,
    /// replica lag — may be what slows the application) and the pause stays as it is.
    pub async fn observe(&mut self, client: &Client) -> Result<(), GuardError> {
        let now = Instant::now();
        self.sample(client, now).await?;
        if self.traffic(now) {
            self.last_traffic = Some(now);
        }
        Ok(())
    }

    /// Takes one sample of each signal; returns whether a Cutover chunk is running (see
    /// [`Guard::sample_activity`]).
    async fn sample(&mut self, client: &Client, now: Instant) -> Result<bool, GuardError> {
        let busy_elsewhere = self.sample_activity(client, now).await?;
        if self.statements != Some(false) {
            self.sample_statements(client, now).await;
        }
        if let Some(plan_id) = self.plan_id.as_deref() {
            self.tail.sample(client, plan_id, now).await?;
        }
        Ok(busy_elsewhere)
    }

    /// The advice from the samples so far.
    fn advise(&mut self, now: Instant, quiet_for: Duration) -> Advice {
        if self.traffic(now) {
            self.last_traffic = Some(now);
        }
        let readings = self.readings(now);
        let quiet = quiet_for >= ACTIVITY_WINDOW;
        if quiet {
            if readings.is_empty() && !self.traffic(now) {
                // Nobody to protect.
                self.remeasure = None;
            }
            self.tail
                .set_baseline(now, quiet_for, self.remeasure.is_some());
            if !readings.is_empty() {
                if !self.started_chunks {
                    self.cycle = self.cycle.at_most(START_DUTY, now);
                }
                let fresh = self.remeasure.is_some();
                self.set_baselines(now, quiet_for, &readings, fresh);
                self.started_chunks = true;
                if self.remeasure.take().is_some() {
                    // A new baseline: the duty the latency went over at no longer tells.
                    self.cycle = self.cycle.without_ceiling();
                    self.at_max_since = None;
                }
            }
        }
        if !self.started_chunks {
            let waited = now.duration_since(self.started);
            // Before the first chunk: measure a baseline; with no application traffic at all
            // (nothing to hurt), start at once.
            let traffic = self.traffic(now);
            // With the commit probe on, its baseline needs a few commits too.
            let probed = self.plan_id.is_none() || self.tail.commit_p95(now).is_some();
            if !readings.is_empty()
                && waited >= STATEMENTS_WINDOW
                && (probed || waited >= FIRST_BASELINE)
            {
                self.set_baselines(now, waited, &readings, false);
                self.started_chunks = true;
                self.cycle = self.cycle.at_most(START_DUTY, now);
            } else if (!traffic && self.settled()) || waited >= FIRST_BASELINE {
                self.tail.set_baseline(now, waited, false);
                self.started_chunks = true;
            } else {
                return Advice::Hold(
                    "measuring the application's latency before the backfill starts".to_string(),
                );
            }
        }
        if let Some(why) = self.remeasure.as_ref().filter(|_| !quiet) {
            return Advice::Hold(why.clone());
        }
        let unjudged = readings.iter().all(|r| self.base_of(r.source).is_none());
        if !readings.is_empty() && unjudged && !quiet {
            // Traffic appeared after an idle start: measure it without the backfill.
            let why = "measuring the application's latency without the backfill \
                       (application traffic appeared)"
                .to_string();
            self.remeasure = Some(why.clone());
            return Advice::Hold(why);
        }
        let worst = self.worst(now, &readings);
        self.last = worst.clone();
        let Some(judged) = worst else {
            self.cycle = self.cycle.step(1.0, self.limit, now);
            return self.advice(None);
        };
        if !quiet {
            self.cycle = self.cycle.step(judged.ratio, self.limit, now);
        }
        if self.cycle.at_minimum() {
            let since = *self.at_max_since.get_or_insert(now);
            if now.duration_since(since) >= REMEASURE_AFTER {
                self.remeasure = Some(format!(
                    "yielding: re-measuring the application's latency without the backfill \
                     (yielded at the maximum for {}s)",
                    REMEASURE_AFTER.as_secs()
                ));
            }
        } else {
            self.at_max_since = None;
        }
        self.advice(Some(judged))
    }

    /// The worst of the signals that have a baseline of their own: the statement and activity
    /// means, and — while the application is there — the tail signals.
    fn worst(&self, now: Instant, readings: &[Reading]) -> Option<Judged> {
        let app_ms = self.app_transaction_ms();
        let means = readings.iter().filter_map(|r| {
            let base = self.base_of(r.source)?.ms;
            let (ratio, scale) = match app_ms.filter(|t| *t > base) {
                Some(t) => (
                    (t + (r.ms - base).max(0.0)) / t,
                    format!(" on {t:.2}-ms transactions"),
                ),
                None => (r.ms / base.max(1e-3), String::new()),
            };
            Some(Judged {
                ratio,
                signal: "app latency",
                of: "baseline",
                detail: format!(
                    "{}: {:.2} ms vs {:.2} ms{scale}",
                    r.source.label(),
                    r.ms,
                    base
                ),
            })
        });
        let present = self
            .last_traffic
            .is_some_and(|t| now.duration_since(t) < IDLE_AFTER_TRAFFIC);
        let tail = self
            .tail
            .pressures(now, self.limit, app_ms)
            .into_iter()
            .filter(|_| present)
            .map(|p| Judged {
                ratio: p.ratio,
                signal: p.signal.label(),
                of: if p.signal == TailSignal::WalRate {
                    "budget"
                } else {
                    "baseline"
                },
                detail: p.detail,
            });
        means.chain(tail).max_by(|a, b| a.ratio.total_cmp(&b.ratio))
    }

    /// Adds `readings`, taken in a quiet window, to the baselines' history (after forgetting
    /// it when `fresh`).
    fn set_baselines(&mut self, now: Instant, quiet: Duration, readings: &[Reading], fresh: bool) {
        self.tail.set_baseline(now, quiet, fresh);
        if fresh {
            self.baselines.clear();
        }
        while self
            .baselines
            .front()
            .is_some_and(|(at, _)| now.saturating_duration_since(*at) > BASELINE_HORIZON)
        {
            self.baselines.pop_front();
        }
        self.baselines.extend(readings.iter().map(|r| (now, *r)));
    }

    /// The application's transaction time (ms) — the scale on which the guard judges a rise:
    /// twice the median age of its open transactions sampled over the last [`XACT_WINDOW`] with
    /// no chunk running (a transaction caught at a random moment is, in the median, halfway
    /// through), read once [`MIN_XACTS`] were sampled and kept while fewer are.
    pub fn app_transaction_ms(&self) -> Option<f64> {
        self.xact_ms
    }

    /// Reads the application's transaction time from the sampled ages, when there are enough.
    fn read_transaction_ms(&mut self) {
        if self.xact_ages.len() >= MIN_XACTS {
            self.xact_ms =
                super::tail::quantile(self.xact_ages.iter().map(|(_, a)| *a), 0.5).map(|m| 2.0 * m);
        }
    }

    fn advice(&self, last: Option<Judged>) -> Advice {
        let pause = self.cycle.pause();
        if pause <= 0.0 {
            return Advice::Clear;
        }
        let reason = match last {
            Some(j) if j.ratio > self.limit => format!(
                "yielding: {} {:.2}× {} > {:.2}× ({}); pausing {:.1}× each chunk's time",
                j.signal, j.ratio, j.of, self.limit, j.detail, pause
            ),
            Some(j) => format!(
                "yielding: {} {:.2}× {} (limit {:.2}×, {}); easing off, pausing {:.1}× each \
                 chunk's time",
                j.signal, j.ratio, j.of, self.limit, j.detail, pause
            ),
            None => format!(
                "yielding: easing off (no application latency reading), pausing {:.1}× each \
                 chunk's time",
                pause
            ),
        };
        Advice::Yield { pause, reason }
    }

    /// True once the samples can tell whether the application runs statements: an activity
    /// sample, and two statement samples when `pg_stat_statements` watches any statement.
    fn settled(&self) -> bool {
        !self.samples.is_empty()
            && (self.statements != Some(true) || self.ids.is_empty() || self.cumulative.len() >= 2)
    }

    /// True when the latest samples show application traffic.
    fn traffic(&self, now: Instant) -> bool {
        let calls = match (self.cumulative.front(), self.cumulative.back()) {
            (Some(a), Some(b)) => b.1 - a.1,
            _ => 0.0,
        };
        let horizon = now.checked_sub(ACTIVITY_WINDOW);
        let sampled: f64 = self
            .samples
            .iter()
            .filter(|s| horizon.is_none_or(|h| s.0 >= h))
            .map(|s| s.2)
            .sum();
        calls > 0.0 || sampled > 0.0 || self.in_transaction > 0.0
    }

    /// The windowed latencies: `pg_stat_statements` when it saw enough calls, and the activity
    /// sampling when it saw enough backends.
    fn readings(&self, now: Instant) -> Vec<Reading> {
        let mut out = Vec::new();
        if let Some((calls, ms)) = window_delta(&self.cumulative, now, STATEMENTS_WINDOW) {
            if calls >= MIN_CALLS {
                out.push(Reading {
                    ms: ms / calls,
                    source: Source::Statements,
                });
            }
        }
        let Some(horizon) = now.checked_sub(ACTIVITY_WINDOW) else {
            return out;
        };
        let (age, n) = self
            .samples
            .iter()
            .filter(|s| s.0 >= horizon)
            .fold((0.0, 0.0), |(a, n), s| (a + s.1, n + s.2));
        if self
            .samples
            .front()
            .is_some_and(|s| s.0 <= horizon + Duration::from_millis(300))
            && n >= MIN_SAMPLED
        {
            out.push(Reading {
                ms: age / n,
                source: Source::Activity,
            });
        }
        out
    }

    /// Samples the active application backends; returns whether a Cutover backfill session
    /// (of any process) is inside a chunk. Also learns the query ids of Cutover's sessions.
    async fn sample_activity(&mut self, client: &Client, now: Instant) -> Result<bool, GuardError> {
        let row = client
            .query_one(
                "SELECT coalesce(sum(extract(epoch FROM clock_timestamp() - query_start) * 1000) \
                   FILTER (WHERE app AND state = 'active'), 0)::float8 AS age_ms, \
                 count(*) FILTER (WHERE app AND state = 'active')::float8 AS active, \
                 count(*) FILTER (WHERE NOT app AND state <> 'idle' \
                   AND application_name LIKE 'cutover/backfill/%')::int8 AS chunking, \
                 array_remove(array_agg(DISTINCT query_id) FILTER (WHERE NOT app), NULL) AS ids, \
                 count(*) FILTER (WHERE app AND state LIKE 'idle in transaction%')::float8 \
                   AS in_transaction, \
                 coalesce(array_agg(extract(epoch FROM clock_timestamp() - xact_start)::float8 \
                   * 1000) FILTER (WHERE app AND xact_start IS NOT NULL), '{}') AS xact_ages \
                 FROM (SELECT *, application_name NOT LIKE 'cutover/%' AS app \
                       FROM pg_stat_activity WHERE datname = current_database() \
                       AND backend_type = 'client backend' AND pid <> pg_backend_pid() \
                       AND (state = 'active' OR state LIKE 'idle in transaction%' \
                            OR application_name LIKE 'cutover/%')) a",
                &[],
            )
            .await
            .map_err(GuardError::Activity)?;
        let age: f64 = row.try_get("age_ms").map_err(GuardError::Activity)?;
        let n: f64 = row.try_get("active").map_err(GuardError::Activity)?;
        let chunking: i64 = row.try_get("chunking").map_err(GuardError::Activity)?;
        let ids: Vec<i64> = row.try_get("ids").unwrap_or_default();
        self.in_transaction = row
            .try_get("in_transaction")
            .map_err(GuardError::Activity)?;
        let ages: Vec<f64> = row.try_get("xact_ages").map_err(GuardError::Activity)?;
        if chunking == 0 {
            self.xact_ages.extend(ages.into_iter().map(|a| (now, a)));
        }
        super::tail::keep(&mut self.xact_ages, now, XACT_WINDOW);
        self.read_transaction_ms();
        for id in ids {
            if self.excluded.insert(id) {
                self.ids.retain(|i| *i != id);
            }
        }
        self.samples.push_back((now, age, n));
        trim(&mut self.samples, now, ACTIVITY_WINDOW * 2);
        Ok(chunking > 0)
    }

    /// Samples the watched statements' cumulative calls and time. Any failure just leaves
    /// this source out (the activity sampling still reads).
    async fn sample_statements(&mut self, client: &Client, now: Instant) {
        if self
            .ids_at
            .is_none_or(|t| now.duration_since(t) >= REFRESH_IDS)
        {
            self.ids_at = Some(now);
            match self.lookup_ids(client).await {
                Ok(Some(ids)) => {
                    self.statements = Some(true);
                    self.ids = ids
                        .into_iter()
                        .filter(|i| !self.excluded.contains(i))
                        .collect();
                }
                Ok(None) => {
                    self.statements = Some(false);
                    tracing::info!(
                        "latency guard: pg_stat_statements is not available; using {}",
                        Source::Activity.label()
                    );
                    return;
                }
                Err(e) => {
                    tracing::warn!("latency guard: pg_stat_statements unreadable: {e}");
                    return;
                }
            }
        }
        if self.ids.is_empty() {
            self.cumulative.clear();
            return;
        }
        let row = client
            .query_one(
                "SELECT coalesce(sum(calls), 0)::float8 AS calls, \
                 coalesce(sum(total_exec_time), 0)::float8 AS ms \
                 FROM pg_stat_statements(false) \
                 WHERE dbid = (SELECT oid FROM pg_database WHERE datname = current_database()) \
                 AND queryid = ANY($1)",
                &[&self.ids],
            )
            .await;
        match row {
            Ok(r) => {
                let calls: f64 = r.get("calls");
                let ms: f64 = r.get("ms");
                // A reset (or a dropped entry) makes the sums fall: start over.
                if self
                    .cumulative
                    .back()
                    .is_some_and(|b| calls < b.1 || ms < b.2)
                {
                    self.cumulative.clear();
                }
                self.cumulative.push_back((now, calls, ms));
                trim(&mut self.cumulative, now, STATEMENTS_WINDOW * 3);
            }
            Err(e) => tracing::warn!(
                "latency guard: pg_stat_statements unreadable: {}",
                describe_error(&e)
            ),
        }
    }

    /// The query ids of the application's statements on the table; `None` when
    /// `pg_stat_statements` is not installed in this database or not loaded.
    async fn lookup_ids(&self, client: &Client) -> Result<Option<Vec<i64>>, GuardError> {
        let installed: bool = client
            .query_one(
                "SELECT to_regprocedure('pg_stat_statements(boolean)') IS NOT NULL AS installed",
                &[],
            )
            .await
            .map_err(GuardError::Activity)?
            .get("installed");
        if !installed {
            return Ok(None);
        }
        let rows = client
            .query(
                "SELECT DISTINCT queryid FROM pg_stat_statements \
                 WHERE dbid = (SELECT oid FROM pg_database WHERE datname = current_database()) \
                 AND queryid IS NOT NULL AND query ~* $1 AND query NOT LIKE '%/* cutover */%'",
                &[&self.pattern],
            )
            .await;
        match rows {
            Ok(rows) => Ok(Some(rows.iter().map(|r| r.get("queryid")).collect())),
            // 55000: "pg_stat_statements must be loaded via shared_preload_libraries".
            Err(e) if e.code().is_some_and(|c| c.code() == "55000") => Ok(None),
            Err(e) => Err(GuardError::Activity(e)),
        }
    }
}

/// Drops samples older than `keep`.
fn trim<T>(q: &mut VecDeque<(Instant, T, T)>, now: Instant, keep: Duration) {
    while q.front().is_some_and(|s| now.duration_since(s.0) > keep) {
        q.pop_front();
    }
}

/// The change of cumulative (calls, ms) from the newest sample at least `window` old to the
/// latest one.
fn window_delta(
    q: &VecDeque<(Instant, f64, f64)>,
    now: Instant,
    window: Duration,
) -> Option<(f64, f64)> {
    let last = q.back()?;
    let first = q.iter().rev().find(|s| now.duration_since(s.0) >= window)?;
    Some((last.1 - first.1, last.2 - first.2))
}

#[cfg(test)]
mod tests;
