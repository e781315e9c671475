//! The rules: pure functions over [`Facts`](crate::control::facts::Facts) and the plan. Every
//! verdict an operator sees — a gate, the readiness scorecard, the rollback advice — is computed
//! here, once, and shown unchanged by `status`, `advance`, the TUI, the metrics and the runbook.
//! Nothing in this module touches a database.

pub(crate) mod advice;
pub(crate) mod gate;
pub(crate) mod scorecard;
pub(crate) mod slots;
pub(crate) mod status;

use chrono::{DateTime, Utc};

pub use advice::{
    irreversible_reason, rollback_advice, rollback_plan, rollback_targets, NoRollback,
    RollbackAdvice, RollbackPlan, RollbackStep,
};
pub use gate::{evaluate, GateEvaluation, GateItem, ItemKind, OverrideInfo, Verdict};
pub use scorecard::{scorecard, Category, CategoryKind, Evidence, Scorecard};
pub use status::Status;

/// `2026-11-22 05:01:02Z`.
pub fn fmt_time(t: DateTime<Utc>) -> String {
    t.format("%Y-%m-%d %H:%M:%SZ").to_string()
}

/// First 12 hex digits of a sha256.
pub fn short(sha: &str) -> &str {
    sha.get(..12).unwrap_or(sha)
}

/// A duration rounded to 0.1 s.
pub fn human(d: std::time::Duration) -> String {
    format!("{:.1}s", d.as_secs_f64())
}

/// An age in words: `42s`, `3m12s`, `2h05m`.
pub fn age(from: DateTime<Utc>, now: DateTime<Utc>) -> String {
    let s = (now - from).num_seconds().max(0);
    match s {
        0..=59 => format!("{s}s"),
        60..=3599 => format!("{}m{:02}s", s / 60, s % 60),
        _ => format!("{}h{:02}m", s / 3600, (s % 3600) / 60),
    }
}

#[cfg(test)]
mod tests;
