//! Error budget after the read switch: the present compared with the baseline taken just
//! before it — transaction rollback ratio and deadlocks (`pg_stat_database`), mean execution
//! time of the app's statements on the migrated tables (`pg_stat_statements`), lock waiters,
//! replication lag, and the plan's own metric query — against `[probes.error_budget]`.
//!
//! The transaction counters are the application's: Cutover's own transactions (rehearsal, lint
//! simulation, compatibility probe, checks, control writes, monitoring — every connection it
//! opens) are counted on the wire by [`crate::db::tally`] and left out. A window without any
//! application transaction holds the budget.
//!
//! A part that cannot be measured (no baseline, no `pg_stat_statements`, a statistics reset)
//! is Inconclusive with its reason; any part over its threshold fails the probe.

use std::collections::BTreeMap;

use tokio_postgres::Client;

use super::scratch::Scope;
use super::snapshot::{self, Snapshot, StatementStat};
use super::{Probe, ProbeContext, ProbeFuture, ProbeResult};
use crate::db::describe_error;
use crate::db::tally::Counts;
use crate::outcome::Outcome;
use crate::plan::{ErrorBudgetSpec, Phase, Plan, ThrottleSpec};

/// One judged part of the budget.
#[derive(Debug, Clone)]
pub(crate) struct Part {
    /// Pass / Fail / Inconclusive.
    pub outcome: Outcome,
    /// What was measured against what.
    pub text: String,
}

fn part(outcome: Outcome, text: impl Into<String>) -> Part {
    Part {
        outcome,
        text: text.into(),
    }
}

/// The error-budget probe.
pub(crate) struct ErrorBudgetProbe;

impl Probe for ErrorBudgetProbe {
    fn name(&self) -> &'static str {
        "error_budget"
    }

    fn evaluate<'a>(&'a self, ctx: &'a ProbeContext<'a>) -> ProbeFuture<'a> {
        Box::pin(async move {
            match measure(ctx.client, ctx.plan).await {
                Ok(Some((before, now))) => judge(
                    &ctx.plan.spec.probes.error_budget,
                    ctx.plan.spec.backfill.as_ref().map(|b| &b.throttle),
                    &before,
                    &now,
                ),
                Ok(None) => ProbeResult::inconclusive(
                    "error_budget",
                    "no baseline: the read switch was not applied through Cutover (the baseline is taken just before it), so there is nothing to compare with",
                ),
                Err(e) => ProbeResult::inconclusive(
                    "error_budget",
                    format!("could not read the health counters: {}", describe_error(&e)),
                ),
            }
        })
    }
}

async fn measure(
    client: &Client,
    plan: &Plan,
) -> Result<Option<(Snapshot, Snapshot)>, tokio_postgres::Error> {
    snapshot::publish_own_statistics(client).await?;
    let scope = Scope::enter(client).await?;
    let result = async {
        let Some(before) = snapshot::latest(client, plan.id(), Phase::ReadSwitch).await? else {
            return Ok(None);
        };
        let now = snapshot::capture(client, plan).await?;
        Ok(Some((before, now)))
    }
    .await;
    let end = scope.rollback(client).await;
    let out = result?;
    end?;
    Ok(out)
}

/// Judges the window between `before` and `now`; lock waiters and replay lag are held to the
/// plan's health limits (`[backfill.throttle]`) when it has them.
pub(crate) fn judge(
    spec: &ErrorBudgetSpec,
    health: Option<&ThrottleSpec>,
    before: &Snapshot,
    now: &Snapshot,
) -> ProbeResult {
    let window = (now.taken_at - before.taken_at).num_milliseconds() as f64 / 1000.0;
    let w = app_window(before, now);
    let mut parts = vec![
        rollbacks(spec, before, &w),
        deadlocks(spec, &w),
        latency(spec, before, now, w.quiet()),
        metric(spec, now),
    ];
    if let Some(h) = health {
        parts.push(health_limits(h, now));
    }
    let outcome = Outcome::all(parts.iter().map(|p| p.outcome));
    let mut evidence: Vec<String> = parts
        .iter()
        .map(|p| format!("{}: {}", p.outcome, p.text))
        .collect();
    evidence.push(w.own_text(now));
    evidence.push(format!(
        "lock waiters: {} now ({} at the baseline)",
        now.lock_waiters, before.lock_waiters
    ));
    evidence.push(match (before.replay_lag_s, now.replay_lag_s) {
        (_, None) => "replication: no standby connected".to_string(),
        (b, Some(n)) => format!(
            "replication replay lag: {n:.2} s now ({} at the baseline)",
            b.map_or("no standby".to_string(), |b| format!("{b:.2} s"))
        ),
    });
    evidence.push(format!(
        "window: {window:.0} s since the baseline taken before the read switch ({})",
        before.taken_at.format("%Y-%m-%d %H:%M:%S UTC")
    ));
    let failing: Vec<&str> = parts
        .iter()
        .filter(|p| p.outcome == Outcome::Fail)
        .map(|p| p.text.as_str())
        .collect();
    let summary = match outcome {
        Outcome::Pass => format!("error budget holds over {window:.0} s since the read switch"),
        Outcome::Fail => format!("error budget exceeded: {}", failing.join("; ")),
        Outcome::Inconclusive => {
            let missing: Vec<&str> = parts
                .iter()
                .filter(|p| p.outcome == Outcome::Inconclusive)
                .map(|p| p.text.as_str())
                .collect();
            format!("not fully measurable: {}", missing.join("; "))
        }
    };
    ProbeResult {
        name: "error_budget".to_string(),
        outcome,
        summary,
        evidence,
    }
}

/// The application's transactions and deadlocks in the window: the database's counters minus
/// Cutover's own (every Cutover process's, see [`crate::db::tally`]).
#[derive(Debug, Clone, Copy)]
struct Window {
    /// The database's deltas (commits, rollbacks, deadlocks); negative after a statistics reset.
    all: Counts,
    /// Cutover's own deltas left out (`None`: the baseline predates the count).
    own: Option<Counts>,
    /// The application's: `all - own`, never below zero.
    app: Counts,
}

fn totals(s: &Snapshot) -> Counts {
    Counts {
        commits: s.xact_commit,
        rollbacks: s.xact_rollback,
        deadlocks: s.deadlocks,
    }
}

fn app_window(before: &Snapshot, now: &Snapshot) -> Window {
    let all = totals(now).minus(&totals(before));
    let own = match (before.cutover, now.cutover) {
        (Some(b), Some(n)) => Some(n.counts.minus(&b.counts)),
        _ => None,
    };
    let app = all.minus(&own.unwrap_or_default());
    Window {
        all,
        own,
        app: Counts {
            commits: app.commits.max(0),
            rollbacks: app.rollbacks.max(0),
            deadlocks: app.deadlocks.max(0),
        },
    }
}

impl Window {
    /// No application transaction ran in the window.
    fn quiet(&self) -> bool {
        self.app.commits + self.app.rollbacks == 0
    }

    fn own_text(&self, now: &Snapshot) -> String {
        match (self.own, now.cutover) {
            (Some(o), Some(n)) => format!(
                "the database counted {} commits, {} rollbacks, {} deadlocks in the window; left out as Cutover's own: {} commits, {} rollbacks, {} deadlocks (this process's count{})",
                self.all.commits,
                self.all.rollbacks,
                self.all.deadlocks,
                o.commits,
                o.rollbacks,
                o.deadlocks,
                match n.other_processes {
                    0 => String::new(),
                    k => format!(" and the last recorded counts of {k} other Cutover process(es)"),
                }
            ),
            _ => "Cutover's own transactions are included: their count was unknown at the baseline or now".to_string(),
        }
    }
}

fn rollbacks(spec: &ErrorBudgetSpec, before: &Snapshot, w: &Window) -> Part {
    if w.all.commits < 0 || w.all.rollbacks < 0 {
        return part(
            Outcome::Inconclusive,
            "rollback ratio: the statistics were reset since the baseline",
        );
    }
    let (commits, rollbacks) = (w.app.commits, w.app.rollbacks);
    if commits + rollbacks == 0 {
        return part(
            Outcome::Pass,
            "rollback ratio: no application transactions in the window, none rolled back",
        );
    }
    // The baseline's cumulative ratio, Cutover's own left out as well.
    let own = before.cutover.map(|c| c.counts).unwrap_or_default();
    let base_commits = (before.xact_commit - own.commits).max(0);
    let base_rollbacks = (before.xact_rollback - own.rollbacks).max(0);
    let base_total = (base_commits + base_rollbacks).max(1) as f64;
    let base_ratio = base_rollbacks as f64 / base_total * 100.0;
    let ratio = rollbacks as f64 / (commits + rollbacks) as f64 * 100.0;
    let increase = ratio - base_ratio;
    let text = format!(
        "rollback ratio {ratio:.2} % in the window ({rollbacks} of {} application transactions) vs {base_ratio:.2} % before: {increase:+.2} pp (max +{} pp)",
        commits + rollbacks,
        spec.max_rollback_increase_pp
    );
    if increase > spec.max_rollback_increase_pp {
        part(Outcome::Fail, text)
    } else {
        part(Outcome::Pass, text)
    }
}

fn deadlocks(spec: &ErrorBudgetSpec, w: &Window) -> Part {
    let n = w.app.deadlocks;
    let text = format!(
        "deadlocks: {n} in the application's sessions in the window (max {})",
        spec.max_deadlocks
    );
    if n > i64::try_from(spec.max_deadlocks).unwrap_or(i64::MAX) {
        part(Outcome::Fail, text)
    } else {
        part(Outcome::Pass, text)
    }
}

/// Mean execution time of the statements that ran both before and during the window, weighted
/// by their calls in the window; when none did (the read switch changed every query), the mean
/// over all statements on the migrated tables.
fn latency(spec: &ErrorBudgetSpec, before: &Snapshot, now: &Snapshot, quiet: bool) -> Part {
    if quiet {
        // Every statement runs in a transaction: with none of the application's in the window,
        // there is no application latency to measure, and whatever pg_stat_statements saw there
        // was Cutover's own.
        return part(
            Outcome::Pass,
            "latency: no application transaction ran in the window",
        );
    }
    let (b, n) = match (&before.statements, &now.statements) {
        (Ok(b), Ok(n)) => (b, n),
        (_, Err(reason)) | (Err(reason), _) => {
            return part(Outcome::Inconclusive, format!("latency: {reason}"));
        }
    };
    let deltas = window_deltas(b, n);
    if deltas.is_empty() {
        return part(
            Outcome::Inconclusive,
            "latency: no statement on the migrated tables ran in the window",
        );
    }
    let mut expected = 0.0;
    let mut actual = 0.0;
    let mut calls_seen = 0i64;
    let mut worst: Option<(f64, String)> = None;
    for (id, (calls, ms)) in &deltas {
        let Some(base) = b.get(id).filter(|s| s.calls > 0) else {
            continue;
        };
        let base_mean = base.total_exec_ms / base.calls as f64;
        expected += base_mean * *calls as f64;
        actual += ms;
        calls_seen += calls;
        let ratio = (ms / *calls as f64) / base_mean.max(1e-6);
        if worst.as_ref().is_none_or(|(r, _)| ratio > *r) {
            worst = Some((ratio, one_line(&base.query)));
        }
    }
    // (ratio, mean ms added per statement, how it was compared)
    let (ratio, added_ms, how) = if expected > 0.0 {
        (
            actual / expected,
            (actual - expected) / calls_seen.max(1) as f64,
            "statements seen before and after",
        )
    } else {
        let (bc, bt) = b
            .values()
            .fold((0i64, 0.0), |(c, t), s| (c + s.calls, t + s.total_exec_ms));
        let (wc, wt) = deltas
            .values()
            .fold((0i64, 0.0), |(c, t), (calls, ms)| (c + calls, t + ms));
        if bc == 0 || wc == 0 {
            return part(
                Outcome::Inconclusive,
                "latency: no statement on the migrated tables ran before the switch to compare with",
            );
        }
        let (window_mean, base_mean) = (wt / wc as f64, bt / bc as f64);
        (
            window_mean / base_mean.max(1e-6),
            window_mean - base_mean,
            "all statements on the migrated tables",
        )
    };
    let mut text = format!(
        "mean statement latency {ratio:.2}× the baseline, {added_ms:+.3} ms per statement ({how}; max {}×",
        spec.max_latency_ratio
    );
    if spec.min_latency_increase_ms > 0.0 {
        text.push_str(&format!(" and {} ms more", spec.min_latency_increase_ms));
    }
    text.push(')');
    if let Some((r, q)) = worst {
        text.push_str(&format!("; slowest change {r:.2}×: {q}"));
    }
    if ratio > spec.max_latency_ratio && added_ms >= spec.min_latency_increase_ms {
        part(Outcome::Fail, text)
    } else {
        part(Outcome::Pass, text)
    }
}

/// (calls, total ms) of each statement during the window.
fn window_deltas(
    before: &BTreeMap<String, StatementStat>,
    now: &BTreeMap<String, StatementStat>,
) -> BTreeMap<String, (i64, f64)> {
    now.iter()
        .filter_map(|(id, s)| {
            let (c, t) = before
                .get(id)
                .map_or((0, 0.0), |b| (b.calls, b.total_exec_ms));
            let calls = s.calls - c;
            (calls > 0).then(|| (id.clone(), (calls, (s.total_exec_ms - t).max(0.0))))
        })
        .collect()
}

fn health_limits(h: &ThrottleSpec, now: &Snapshot) -> Part {
    let max_lag = h.max_replay_lag.as_millis() as f64 / 1000.0;
    let mut over = Vec::new();
    if now.lock_waiters > i64::from(h.max_lock_waiters) {
        over.push(format!(
            "{} sessions wait on locks (limit {})",
            now.lock_waiters, h.max_lock_waiters
        ));
    }
    if let Some(lag) = now.replay_lag_s.filter(|l| *l > max_lag) {
        over.push(format!("replay lag {lag:.1} s (limit {max_lag} s)"));
    }
    if over.is_empty() {
        part(
            Outcome::Pass,
            format!(
                "health now: lock waiters ≤ {}, replay lag ≤ {max_lag} s",
                h.max_lock_waiters
            ),
        )
    } else {
        part(Outcome::Fail, format!("health now: {}", over.join(", ")))
    }
}

fn metric(spec: &ErrorBudgetSpec, now: &Snapshot) -> Part {
    match (&spec.metric_query, spec.metric_max) {
        (None, _) => part(Outcome::Pass, "app metric: none configured (metric_query)"),
        (Some(_), None) => part(
            Outcome::Inconclusive,
            "app metric: metric_query is set but metric_max is not",
        ),
        (Some(_), Some(max)) => match now.metric {
            None => part(
                Outcome::Inconclusive,
                match &now.metric_error {
                    Some(e) => format!("app metric: {e}"),
                    None => "app metric: the metric query failed or returned no value".to_string(),
                },
            ),
            Some(v) if v > max => part(Outcome::Fail, format!("app metric {v} > max {max}")),
            Some(v) => part(Outcome::Pass, format!("app metric {v} ≤ max {max}")),
        },
    }
}

fn one_line(s: &str) -> String {
    let s = s.split_whitespace().collect::<Vec<_>>().join(" ");
    if s.chars().count() > 100 {
        format!("{}…", s.chars().take(100).collect::<String>())
    } else {
        s
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::{Duration, Utc};

    fn snap(commit: i64, rollback: i64, stmts: &[(&str, i64, f64)]) -> Snapshot {
        Snapshot {
            taken_at: Utc::now(),
            xact_commit: commit,
            xact_rollback: rollback,
            deadlocks: 0,
            statements: Ok(stmts
                .iter()
                .map(|(id, calls, ms)| {
                    (
                        id.to_string(),
                        StatementStat {
                            calls: *calls,
                            total_exec_ms: *ms,
                            query: format!("SELECT {id}"),
                        },
                    )
                })
                .collect()),
            lock_waiters: 0,
            replay_lag_s: None,
            index_scans: BTreeMap::new(),
            metric: None,
            metric_error: None,
            cutover: None,
        }
    }

    #[test]
    fn judges_latency_and_rollbacks_against_the_baseline() {
        let spec = ErrorBudgetSpec::default();
        let before = snap(1000, 10, &[("a", 100, 100.0), ("b", 10, 50.0)]);
        let mut steady = snap(1100, 11, &[("a", 200, 205.0), ("b", 20, 100.0)]);
        steady.taken_at = before.taken_at + Duration::seconds(60);
        let r = judge(&spec, None, &before, &steady);
        assert_eq!(r.outcome, Outcome::Pass, "{r:?}");

        // "a" becomes 3× slower: 100 calls took 300 ms instead of 100 ms.
        let slow = snap(1100, 11, &[("a", 200, 400.0), ("b", 20, 100.0)]);
        let r = judge(&spec, None, &before, &slow);
        assert_eq!(r.outcome, Outcome::Fail, "{r:?}");
        assert!(r.summary.contains("latency"), "{r:?}");

        // The same slowdown adds 200 ms over 110 statements: under a 2 ms allowance it holds,
        // under 1.5 ms it does not.
        let allowing = |ms| ErrorBudgetSpec {
            min_latency_increase_ms: ms,
            ..ErrorBudgetSpec::default()
        };
        let r = judge(&allowing(2.0), None, &before, &slow);
        assert_eq!(r.outcome, Outcome::Pass, "{r:?}");
        assert!(r.evidence[2].contains("+1.818 ms per statement"), "{r:?}");
        let r = judge(&allowing(1.5), None, &before, &slow);
        assert_eq!(r.outcome, Outcome::Fail, "{r:?}");

        // 10 rollbacks out of 110 transactions vs ~1 % before.
        let rolling = snap(1100, 20, &[("a", 200, 200.0)]);
        let r = judge(&spec, None, &before, &rolling);
        assert_eq!(r.outcome, Outcome::Fail, "{r:?}");
        assert!(r.summary.contains("rollback ratio"), "{r:?}");
    }

    fn own(s: &mut Snapshot, commits: i64, rollbacks: i64) {
        s.cutover = Some(snapshot::OwnShare {
            counts: Counts {
                commits,
                rollbacks,
                deadlocks: 0,
            },
            other_processes: 0,
        });
    }

    #[test]
    fn cutovers_own_transactions_are_left_out() {
        let spec = ErrorBudgetSpec::default();
        let mut before = snap(1000, 10, &[]);
        own(&mut before, 300, 5);
        // Only Cutover ran: 200 commits and 20 rollbacks, all its own.
        let mut now = snap(1200, 30, &[("a", 50, 50.0)]);
        own(&mut now, 500, 25);
        let r = judge(&spec, None, &before, &now);
        assert_eq!(r.outcome, Outcome::Pass, "{r:?}");
        assert!(
            r.evidence[0].contains("no application transactions"),
            "{r:?}"
        );

        // The application adds 100 transactions, 10 of them rolled back.
        let mut now = snap(1290, 40, &[]);
        own(&mut now, 500, 25);
        let r = judge(&spec, None, &before, &now);
        assert_eq!(r.outcome, Outcome::Fail, "{r:?}");
        assert!(
            r.summary.contains("10 of 100 application transactions"),
            "{r:?}"
        );
    }

    #[test]
    fn without_statement_statistics_latency_is_inconclusive() {
        let spec = ErrorBudgetSpec::default();
        let mut before = snap(1000, 10, &[]);
        before.statements = Err("pg_stat_statements is not available".into());
        let mut now = snap(1100, 11, &[]);
        now.statements = before.statements.clone();
        let r = judge(&spec, None, &before, &now);
        assert_eq!(r.outcome, Outcome::Inconclusive, "{r:?}");
    }
}
