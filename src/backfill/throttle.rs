//! Health throttle: signals with plan thresholds (`[backfill.throttle]`), evaluated on their own
//! connection and consulted by every worker before each chunk.
//!
//! Signals: replication replay lag, active backends, lock waiters, (auto)vacuum on the table, a
//! custom query, the plan's time windows / freeze periods, and the application's latency against
//! its baseline ([`super::guard`]: statement and activity means, commit latency, lock waits on
//! the backfill, WAL rate). The first signal over its limit is the reason shown;
//! the latency guard slows the chunks down (a duty cycle) rather than holding them back. Fail
//! closed: a signal that cannot be read for `fail_closed_after` holds the backfill back until it
//! can be read again. The custom query runs read-only ([`ReadOnly`]); one that tries to change
//! the database is refused and holds the backfill back at once, with the reason.

use std::time::{Duration, Instant};

use chrono::Utc;
use tokio_postgres::Client;

use super::guard::{Advice, Guard};
use crate::db::describe_error;
use crate::plan::{Plan, ThrottleSpec};
use crate::read_only::ReadOnly;

/// What the throttle says about the next chunk.
#[derive(Debug, Clone, PartialEq)]
pub enum Verdict {
    /// Chunks may run.
    Clear,
    /// Chunks may run, each followed by a pause of `pause` × its time (the latency guard).
    Yield {
        /// Pause factor.
        pause: f64,
        /// Why (e.g. `yielding: app latency 1.41× baseline > 1.25× …`).
        reason: String,
    },
    /// Chunks must wait, for this reason (e.g. `replica replay lag 7.1s > limit 5s`).
    Throttled(String),
}

/// The health signals.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Signal {
    /// `pg_stat_replication.replay_lag`, the largest of all standbys (seconds).
    ReplayLag,
    /// Active client backends in this database, Cutover's own excluded.
    ActiveBackends,
    /// Sessions of this database waiting on a lock.
    LockWaiters,
    /// A (auto)vacuum running on the backfilled table.
    Vacuum,
    /// The plan's custom throttle query.
    Custom,
    /// The application's latency (the latency guard's samples).
    AppLatency,
}

impl Signal {
    /// Human name used in reasons.
    pub fn label(self) -> &'static str {
        match self {
            Signal::ReplayLag => "replica replay lag",
            Signal::ActiveBackends => "active backends",
            Signal::LockWaiters => "lock waiters",
            Signal::Vacuum => "vacuum running on the table",
            Signal::Custom => "custom throttle query",
            Signal::AppLatency => "application latency",
        }
    }
}

/// Evaluates the signals of one plan; keeps the state fail-closed and WAL-rate need.
pub struct Evaluator {
    spec: ThrottleSpec,
    table: String,
    windows: crate::plan::Windows,
    /// Per signal: when it was last read, and its last value.
    last_ok: Vec<(Signal, Instant, Option<f64>)>,
    guard: Guard,
    slots: super::slots::SlotWatch,
}

impl Evaluator {
    /// An evaluator for `plan`'s throttle settings.
    pub fn new(plan: &Plan) -> Evaluator {
        let (spec, table) = match &plan.spec.backfill {
            Some(b) => (b.throttle.clone(), b.table.clone()),
            None => (ThrottleSpec::default(), String::new()),
        };
        let now = Instant::now();
        let last_ok = Self::signals_of(&spec)
            .into_iter()
            .map(|s| (s, now, None))
            .collect();
        Evaluator {
            guard: Guard::new(&table, spec.max_app_latency_ratio)
                .probing(plan.id(), spec.max_wal_mib_per_second),
            spec,
            table,
            windows: plan.spec.windows.clone(),
            last_ok,
            slots: Default::default(),
        }
    }

    fn signals_of(spec: &ThrottleSpec) -> Vec<Signal> {
        let mut v = vec![
            Signal::ReplayLag,
            Signal::ActiveBackends,
            Signal::LockWaiters,
        ];
        if spec.pause_on_vacuum {
            v.push(Signal::Vacuum);
        }
        if spec.custom_query.is_some() {
            v.push(Signal::Custom);
        }
        v.push(Signal::AppLatency);
        v
    }

    /// The latency guard.
    pub fn guard(&self) -> &Guard {
        &self.guard
    }

    /// Evaluates every signal once. `client` may be `None` when the monitoring connection is
    /// down: every database signal then counts as unreadable. `quiet_for`: how long this
    /// process has run no chunk (the latency guard refreshes its baseline in quiet windows).
    pub async fn evaluate(&mut self, client: Option<&Client>, quiet_for: Duration) -> Verdict {
        if let Some(reason) = self.windows.blocked_reason(Utc::now()) {
            return Verdict::Throttled(reason);
        }
        let signals: Vec<Signal> = self.last_ok.iter().map(|(s, _, _)| *s).collect();
        let mut first_reason = self.slots.reason(client, &self.spec).await;
        let mut advice = Advice::Clear;
        for signal in signals {
            if signal == Signal::AppLatency {
                // While another signal holds the backfill back (a vacuum, replica lag…) the
                // guard only observes: the application is not at its normal latency then.
                // (The latency guard is evaluated last.)
                let reading = match (client, first_reason.is_some()) {
                    (Some(c), true) => self.guard.observe(c).await.map(|()| Advice::Clear),
                    (Some(c), false) => self.guard.tick(c, quiet_for).await,
                    (None, _) => Err(super::tail::GuardError::NoConnection),
                };
                let reason = match reading {
                    Ok(a) => {
                        self.mark_ok(signal, None);
                        advice = a;
                        None
                    }
                    Err(err) => {
                        let pause = self.guard.pause();
                        if pause > 0.0 {
                            advice = Advice::Yield {
                                pause,
                                reason: format!("yielding: pausing {pause:.1}× each chunk's time (application latency unreadable)"),
                            };
                        }
                        self.unreadable(signal, &err.to_string())
                    }
                };
                if first_reason.is_none() {
                    first_reason = reason;
                }
                continue;
            }
            let reading = match client {
                Some(c) => self.read(c, signal).await,
                None => Err(Unreadable::Failed("no monitoring connection".to_string())),
            };
            let reason = match reading {
                Ok(Some(value)) => {
                    self.mark_ok(signal, Some(value));
                    self.over_limit(signal, value)
                }
                Ok(None) => {
                    self.mark_ok(signal, None);
                    None
                }
                Err(Unreadable::Failed(err)) => self.unreadable(signal, &err),
                // Not a passing fault: the query will be refused every time.
                Err(Unreadable::Refused(err)) => Some(format!("{}: {err}", signal.label())),
            };
            if first_reason.is_none() {
                first_reason = reason;
            }
        }
        match (first_reason, advice) {
            (Some(r), _) | (None, Advice::Hold(r)) => Verdict::Throttled(r),
            (None, Advice::Yield { pause, reason }) => Verdict::Yield { pause, reason },
            (None, Advice::Clear) => Verdict::Clear,
        }
    }

    fn mark_ok(&mut self, signal: Signal, value: Option<f64>) {
        if let Some(e) = self.last_ok.iter_mut().find(|(s, _, _)| *s == signal) {
            e.1 = Instant::now();
            e.2 = value;
        }
    }

    /// A signal could not be read: within `fail_closed_after` its last value still counts;
    /// beyond, it holds the backfill back.
    fn unreadable(&self, signal: Signal, err: &str) -> Option<String> {
        let (since, last) = self
            .last_ok
            .iter()
            .find(|(s, _, _)| *s == signal)
            .map(|(_, t, v)| (t.elapsed(), *v))
            .unwrap_or_default();
        let limit = self.spec.fail_closed_after.std();
        if since >= limit {
            Some(format!(
                "fail-closed: {} unreadable for {:.0}s (limit {}): {err}",
                signal.label(),
                since.as_secs_f64(),
                self.spec.fail_closed_after
            ))
        } else {
            tracing::warn!(signal = signal.label(), "throttle signal unreadable: {err}");
            last.and_then(|v| self.over_limit(signal, v))
        }
    }

    fn over_limit(&self, signal: Signal, value: f64) -> Option<String> {
        let s = &self.spec;
        match signal {
            Signal::ReplayLag => {
                let limit = s.max_replay_lag.std().as_secs_f64();
                (value > limit).then(|| {
                    format!(
                        "{} {value:.1}s > limit {}",
                        signal.label(),
                        s.max_replay_lag
                    )
                })
            }
            Signal::ActiveBackends => (value > f64::from(s.max_active_backends)).then(|| {
                format!(
                    "{} {value:.0} > limit {}",
                    signal.label(),
                    s.max_active_backends
                )
            }),
            Signal::LockWaiters => (value > f64::from(s.max_lock_waiters)).then(|| {
                format!(
                    "{} {value:.0} > limit {}",
                    signal.label(),
                    s.max_lock_waiters
                )
            }),
            Signal::Vacuum => (value > 0.0).then(|| {
                format!(
                    "{} `{}` (pause_on_vacuum = true)",
                    signal.label(),
                    self.table
                )
            }),
            Signal::Custom => (value > s.custom_limit)
                .then(|| format!("{} = {value} > limit {}", signal.label(), s.custom_limit)),
            // The guard advises on its own readings.
            Signal::AppLatency => None,
        }
    }

    /// Reads one signal (`Ok(None)`: the latency guard, which reads its own).
    async fn read(&mut self, client: &Client, signal: Signal) -> Result<Option<f64>, Unreadable> {
        let sql = match signal {
            Signal::ReplayLag => {
                "SELECT COALESCE(max(extract(epoch FROM replay_lag)), 0)::float8 AS value \
                 FROM pg_stat_replication"
                    .to_string()
            }
            Signal::ActiveBackends => "SELECT count(*)::float8 AS value FROM pg_stat_activity \
                 WHERE state = 'active' AND datname = current_database() \
                 AND backend_type = 'client backend' AND pid <> pg_backend_pid() \
                 AND application_name NOT LIKE 'cutover/%'"
                .to_string(),
            Signal::LockWaiters => "SELECT count(*)::float8 AS value FROM pg_stat_activity \
                 WHERE wait_event_type = 'Lock' AND datname = current_database()"
                .to_string(),
            Signal::Vacuum => "SELECT count(*)::float8 AS value FROM pg_stat_progress_vacuum \
                 WHERE relid = to_regclass($1)"
                .to_string(),
            Signal::AppLatency => return Ok(None),
            Signal::Custom => {
                let q = self.spec.custom_query.clone().unwrap_or_default();
                format!(
                    "SELECT (({}))::float8 AS value",
                    q.trim().trim_end_matches(';')
                )
            }
        };
        let failed = |e: tokio_postgres::Error| Unreadable::Failed(describe_error(&e));
        let row = match signal {
            Signal::Vacuum => client
                .query_one(sql.as_str(), &[&self.table])
                .await
                .map_err(failed)?,
            Signal::Custom => ReadOnly::own(client, "backfill.throttle.custom_query")
                .query_one(sql.as_str(), &[])
                .await
                .map_err(|e| {
                    if e.is_write_refused() {
                        Unreadable::Refused(e.to_string())
                    } else {
                        Unreadable::Failed(e.to_string())
                    }
                })?,
            _ => client.query_one(sql.as_str(), &[]).await.map_err(failed)?,
        };
        let value: Option<f64> = row
            .try_get("value")
            .map_err(|e| Unreadable::Failed(e.to_string()))?;
        let value = match (signal, value) {
            (Signal::Custom, None) => {
                return Err(Unreadable::Failed("the query returned NULL".to_string()))
            }
            (_, v) => v.unwrap_or(0.0),
        };
        Ok(Some(value))
    }
}

/// Why a signal has no reading.
enum Unreadable {
    /// The reading failed; within `fail_closed_after` the last value still counts.
    Failed(String),
    /// The custom query tried to change the database and was refused: it holds the backfill
    /// back at once.
    Refused(String),
}

/// How long a monitoring statement may run.
pub const SIGNAL_TIMEOUT: Duration = Duration::from_secs(2);

#[cfg(test)]
mod tests {
    use super::*;

    fn plan(extra: &str) -> Plan {
        let toml = format!(
            r#"
id = "p"
title = "t"
rationale = "r"
author = "a"
ticket = "T"
[roster]
lead = ["postgres"]
{extra}
[phases.expand]
rollback = ""
[phases.dual_write]
rollback = ""
[phases.backfill]
rollback = ""
[phases.read_switch]
rollback = ""
[phases.contract]
irreversible = true
[read_switch]
flag = "f"
[backfill]
table = "t"
key = ["id"]
set = {{ a = "b" }}
pending = "a IS NULL"
[backfill.throttle]
fail_closed_after = "1h"
"#
        );
        Plan::parse("p.toml", &toml).unwrap()
    }

    #[tokio::test]
    async fn a_freeze_period_throttles_with_its_reason() {
        let mut ev = Evaluator::new(&plan(
            "[[windows.freeze]]\nfrom = \"2000-01-01T00:00:00Z\"\nto = \"2999-01-01T00:00:00Z\"\nreason = \"year-end close\"",
        ));
        match ev.evaluate(None, Duration::ZERO).await {
            Verdict::Throttled(r) => assert!(r.contains("year-end close"), "{r}"),
            other => panic!("a freeze must throttle: {other:?}"),
        }
    }

    #[tokio::test]
    async fn an_unreadable_signal_counts_only_after_fail_closed_after() {
        let mut ev = Evaluator::new(&plan(""));
        assert_eq!(ev.evaluate(None, Duration::ZERO).await, Verdict::Clear);
        ev.spec.fail_closed_after = crate::plan::Duration::from_millis(0);
        match ev.evaluate(None, Duration::ZERO).await {
            Verdict::Throttled(r) => assert!(
                r.starts_with("fail-closed: replica replay lag unreadable"),
                "{r}"
            ),
            other => panic!("must fail closed: {other:?}"),
        }
    }
}
