//! The readiness probes a gate may require, and the plan's `[probes]` settings for them.

use std::fmt;

use serde::{Deserialize, Serialize};

use super::Phase;

/// Built-in readiness probes a gate may require.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ProbeKind {
    /// Breaking-DDL lint of expand/dual_write SQL.
    Lint,
    /// The old app version's queries still run.
    Compatibility,
    /// Error budget stable since the read switch.
    ErrorBudget,
    /// No readers of the legacy columns.
    HiddenReaders,
    /// New columns grant no broader access than the old.
    PrivilegeParity,
    /// The backfill finished and its final sweep is empty.
    BackfillComplete,
}

impl ProbeKind {
    /// snake_case name.
    pub fn as_str(self) -> &'static str {
        match self {
            ProbeKind::Lint => "lint",
            ProbeKind::Compatibility => "compatibility",
            ProbeKind::ErrorBudget => "error_budget",
            ProbeKind::HiddenReaders => "hidden_readers",
            ProbeKind::PrivilegeParity => "privilege_parity",
            ProbeKind::BackfillComplete => "backfill_complete",
        }
    }
}

impl fmt::Display for ProbeKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Configuration of the readiness probes.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ProbesSpec {
    /// Lint acknowledgements.
    #[serde(default)]
    pub lint: LintSpec,
    /// The old app version's queries.
    #[serde(default)]
    pub compatibility: CompatibilitySpec,
    /// Error-budget thresholds for the read switch.
    #[serde(default)]
    pub error_budget: ErrorBudgetSpec,
    /// Legacy columns that must have no readers before contract.
    #[serde(default)]
    pub hidden_readers: HiddenReadersSpec,
    /// Old/new column pairs whose privileges must match.
    #[serde(default)]
    pub privilege_parity: PrivilegeParitySpec,
}

/// Lint acknowledgements.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LintSpec {
    /// Findings accepted on purpose.
    #[serde(default)]
    pub acknowledge: Vec<LintAck>,
}

/// One acknowledged lint finding.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LintAck {
    /// Rule code (as the linter names it).
    pub rule: String,
    /// Phase whose SQL the finding is in.
    pub phase: Phase,
    /// Why it is safe.
    pub reason: String,
}

/// The old app version's queries.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CompatibilitySpec {
    /// Queries run inside a rolled-back transaction.
    #[serde(default)]
    pub queries: Vec<CompatQuery>,
}

/// One query of the old app.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CompatQuery {
    /// Label.
    pub name: String,
    /// SQL with `$1…` placeholders.
    pub sql: String,
    /// Sample parameters, as text.
    #[serde(default)]
    pub params: Vec<String>,
}

/// Error-budget thresholds.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ErrorBudgetSpec {
    /// Mean latency of statements on the migrated table may be at most this × baseline.
    pub max_latency_ratio: f64,
    /// A mean slower by less than this many milliseconds per statement holds the budget
    /// whatever its ratio (sub-millisecond statements vary more than that with the host's load).
    pub min_latency_increase_ms: f64,
    /// Rollback ratio may rise at most this many percentage points.
    pub max_rollback_increase_pp: f64,
    /// Maximum new deadlocks during the window.
    pub max_deadlocks: u64,
    /// SQL returning an application metric (e.g. p95 ms).
    pub metric_query: Option<String>,
    /// Upper bound for `metric_query`.
    pub metric_max: Option<f64>,
}

impl Default for ErrorBudgetSpec {
    fn default() -> Self {
        ErrorBudgetSpec {
            max_latency_ratio: 1.2,
            min_latency_increase_ms: 0.0,
            max_rollback_increase_pp: 0.5,
            max_deadlocks: 0,
            metric_query: None,
            metric_max: None,
        }
    }
}

/// Legacy columns checked by the hidden-reader census.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct HiddenReadersSpec {
    /// `schema.table.column` or `table.column`.
    #[serde(default)]
    pub columns: Vec<String>,
}

/// Old/new pairs for privilege parity.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PrivilegeParitySpec {
    /// Pairs of `[old, new]`, each `table.column` or a table.
    #[serde(default)]
    pub pairs: Vec<[String; 2]>,
}
