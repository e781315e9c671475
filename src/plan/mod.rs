//! The migration plan: a TOML file that says, per phase, what to apply, how to roll it back,
//! which checks, probes and sign-offs gate it, and who holds which role.
//!
//! [`Plan::load`] parses and validates a file; every problem is reported with its
//! `file:line:col` (see [`diagnostic`]).

pub mod authorization;
pub mod diagnostic;
mod duration;
mod fields;
mod load;
mod names;
pub mod notify;
mod source;
mod strings;
mod validate;
pub mod windows;

use std::collections::BTreeMap;
use std::fmt;
use std::path::Path;

use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

pub use authorization::{Action, Authorization, Denied, Governance};
pub use diagnostic::{Diagnostic, PlanError};
pub use duration::Duration;
pub use names::{Environment, PlanId, Role, Tier};
pub use notify::{Event, NotifySpec};
pub use source::MAX_PLAN_BYTES;

/// The five phases of an expand/contract migration, in order.
#[derive(
    Debug,
    Clone,
    Copy,
    PartialEq,
    Eq,
    PartialOrd,
    Ord,
    Hash,
    Serialize,
    Deserialize,
    clap::ValueEnum,
)]
#[serde(rename_all = "snake_case")]
#[value(rename_all = "snake_case")]
pub enum Phase {
    /// Additive schema changes (new columns, tables, indexes).
    Expand,
    /// The app (or a trigger) writes both the old and the new shape.
    DualWrite,
    /// Existing rows are copied/transformed in throttled chunks.
    Backfill,
    /// Reads move to the new shape (a feature flag).
    ReadSwitch,
    /// The old shape is removed; usually irreversible.
    Contract,
}

impl Phase {
    /// All phases in execution order.
    pub const ALL: [Phase; 5] = [
        Phase::Expand,
        Phase::DualWrite,
        Phase::Backfill,
        Phase::ReadSwitch,
        Phase::Contract,
    ];

    /// The snake_case name used in plans, the database and the CLI.
    pub fn as_str(self) -> &'static str {
        match self {
            Phase::Expand => "expand",
            Phase::DualWrite => "dual_write",
            Phase::Backfill => "backfill",
            Phase::ReadSwitch => "read_switch",
            Phase::Contract => "contract",
        }
    }

    /// Parses the snake_case name.
    pub fn parse(s: &str) -> Option<Phase> {
        Phase::ALL.into_iter().find(|p| p.as_str() == s)
    }

    /// Position in [`Phase::ALL`].
    pub fn index(self) -> usize {
        self as usize
    }

    /// The phase after this one, if any.
    pub fn next(self) -> Option<Phase> {
        Phase::ALL.get(self.index() + 1).copied()
    }

    /// The phase before this one, if any.
    pub fn prev(self) -> Option<Phase> {
        self.index().checked_sub(1).map(|i| Phase::ALL[i])
    }
}

impl fmt::Display for Phase {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A parsed and validated plan, with the bytes it came from.
#[derive(Debug, Clone)]
pub struct Plan {
    /// Where the plan was read from (for messages).
    pub path: String,
    /// The exact file contents; sign-offs bind to their sha256.
    pub source: String,
    /// The plan's content.
    pub spec: PlanSpec,
}

impl Plan {
    /// Reads, parses and validates a plan file. Only regular files of at most
    /// [`MAX_PLAN_BYTES`] are read (checked before reading, and the read is bounded).
    pub fn load(path: impl AsRef<Path>) -> Result<Plan, PlanError> {
        let path = path.as_ref();
        let shown = path.display().to_string();
        let source = source::read(path, &shown)?;
        Plan::parse(&shown, &source)
    }

    /// Parses and validates plan text; `path` is only used in messages. Every problem is
    /// reported: all TOML syntax errors, or else every structural error (unknown keys, wrong
    /// types, missing keys) together with every semantic one found outside them.
    pub fn parse(path: &str, source: &str) -> Result<Plan, PlanError> {
        if source.len() as u64 > MAX_PLAN_BYTES {
            return Err(PlanError::Invalid(vec![source::too_large(path)]));
        }
        let syntax = diagnostic::syntax_errors(path, source);
        if !syntax.is_empty() {
            return Err(PlanError::Invalid(syntax));
        }
        let structure = load::structure(path, source);
        let mut diags = structure.diagnostics;
        if let Some(spec) = &structure.spec {
            let problems: Vec<diagnostic::Problem> = validate::validate(spec)
                .into_iter()
                .filter(|p| !structure.repaired.iter().any(|r| related(r, &p.path)))
                .collect();
            diags.extend(diagnostic::locate_all(path, source, problems));
        }
        match structure.spec {
            Some(spec) if diags.is_empty() => Ok(Plan {
                path: path.to_string(),
                source: source.to_string(),
                spec,
            }),
            _ => {
                diags.sort_by_key(|d| (d.line, d.col));
                diags.dedup();
                if diags.len() > MAX_DIAGNOSTICS {
                    let more = diags.len() - MAX_DIAGNOSTICS;
                    diags.truncate(MAX_DIAGNOSTICS);
                    let last = diags.last().map_or((1, 1), |d| (d.line, d.col));
                    diags.push(Diagnostic {
                        file: path.to_string(),
                        line: last.0,
                        col: last.1,
                        message: format!("{more} more problems are not shown"),
                        hint: Some("fix the ones above and validate again".into()),
                    });
                }
                Err(PlanError::Invalid(diags))
            }
        }
    }

    /// Hex sha256 of the plan file's bytes.
    pub fn sha256(&self) -> String {
        hex::encode(Sha256::digest(self.source.as_bytes()))
    }

    /// Who decides, per this file: roster, gates and the authorization matrix.
    pub fn governance(&self) -> Governance {
        Governance {
            roster: self.spec.roster.clone(),
            gates: self.spec.gates.clone(),
            authorization: self.spec.authorization.clone(),
        }
    }

    /// The plan id's text (the typed id is `spec.id`).
    pub fn id(&self) -> &str {
        self.spec.id.as_str()
    }

    /// The spec of one phase.
    pub fn phase(&self, phase: Phase) -> &PhaseSpec {
        self.spec.phases.get(phase)
    }

    /// The gate guarding `phase`, or an empty gate.
    pub fn gate(&self, phase: Phase) -> GateSpec {
        self.spec.gates.get(&phase).cloned().unwrap_or_default()
    }

    /// Roles held by a PostgreSQL login.
    pub fn roles_of(&self, login: &str) -> Vec<Role> {
        self.spec
            .roster
            .iter()
            .filter(|(_, logins)| logins.iter().any(|l| l == login))
            .map(|(role, _)| role.clone())
            .collect()
    }

    /// A check by name.
    pub fn check(&self, name: &str) -> Option<&CheckSpec> {
        self.spec.checks.iter().find(|c| c.name == name)
    }
}

/// At most this many problems are listed for one plan.
pub const MAX_DIAGNOSTICS: usize = 500;

/// True when one path is a prefix of the other.
fn related(a: &[diagnostic::Seg], b: &[diagnostic::Seg]) -> bool {
    let n = a.len().min(b.len());
    a[..n] == b[..n]
}

/// The TOML document of a plan.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PlanSpec {
    /// Stable identifier of the migration (one row in `cutover.migrations`).
    pub id: PlanId,
    /// One-line title.
    pub title: String,
    /// Why this migration exists.
    pub rationale: String,
    /// Who wrote the plan.
    pub author: String,
    /// Link to the ticket / change request.
    pub ticket: String,
    /// Environment banner shown in the TUI (`production` is shown in red).
    #[serde(default)]
    pub environment: Environment,
    /// Timeouts and retry bounds for every statement Cutover runs.
    #[serde(default)]
    pub settings: Settings,
    /// Role → PostgreSQL login names allowed to act in that role.
    pub roster: BTreeMap<Role, Vec<String>>,
    /// When heavy work (backfill, checks) may run.
    #[serde(default)]
    pub windows: Windows,
    /// The five phases.
    pub phases: Phases,
    /// How the backfill phase transforms existing rows.
    pub backfill: Option<BackfillSpec>,
    /// The feature flag that the read-switch phase turns on.
    pub read_switch: Option<ReadSwitchSpec>,
    /// Data-quality checks referenced by gates.
    #[serde(default)]
    pub checks: Vec<CheckSpec>,
    /// Gate per phase: what must hold before that phase is applied.
    #[serde(default)]
    pub gates: BTreeMap<Phase, GateSpec>,
    /// Configuration of the readiness probes that gates may list.
    #[serde(default)]
    pub probes: ProbesSpec,
    /// Who may do what (defaults in [`authorization`]).
    #[serde(default)]
    pub authorization: Authorization,
    /// Who hears about what: webhooks and exec hooks (see [`notify`]).
    #[serde(default)]
    pub notify: Vec<NotifySpec>,
}

/// Statement and lock timeouts, and how long the lock-safe DDL runner retries.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Settings {
    /// `lock_timeout` for each DDL statement attempt.
    pub lock_timeout: Duration,
    /// `statement_timeout` for each statement.
    pub statement_timeout: Duration,
    /// Maximum attempts of one statement that keeps hitting its lock timeout.
    pub ddl_max_attempts: u32,
    /// Maximum total time spent retrying one statement.
    pub ddl_max_wait: Duration,
}

impl Default for Settings {
    fn default() -> Self {
        Settings {
            lock_timeout: Duration::from_millis(2_000),
            statement_timeout: Duration::from_millis(60_000),
            ddl_max_attempts: 8,
            ddl_max_wait: Duration::from_millis(120_000),
        }
    }
}

/// Allowed windows for heavy work and freeze periods.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Windows {
    /// Daily windows `HH:MM-HH:MM` (UTC) in which the backfill and heavy checks may run;
    /// empty means any time. A window may wrap midnight (`22:00-06:00`).
    #[serde(default)]
    pub heavy_work: Vec<String>,
    /// Periods in which no phase may be applied and heavy work pauses.
    #[serde(default)]
    pub freeze: Vec<Freeze>,
}

/// A freeze period.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Freeze {
    /// Start, RFC 3339 (e.g. `2026-12-20T00:00:00Z`).
    pub from: String,
    /// End, RFC 3339.
    pub to: String,
    /// Why (shown as the throttle/blocked reason).
    pub reason: String,
}

/// The five phase specs.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Phases {
    /// Additive DDL.
    pub expand: PhaseSpec,
    /// Dual-write path (trigger or app flag).
    pub dual_write: PhaseSpec,
    /// SQL around the backfill (the backfill itself is `[backfill]`).
    pub backfill: PhaseSpec,
    /// SQL around the read switch (the flag itself is `[read_switch]`).
    pub read_switch: PhaseSpec,
    /// Removal of the old shape.
    pub contract: PhaseSpec,
}

impl Phases {
    /// The spec of one phase.
    pub fn get(&self, phase: Phase) -> &PhaseSpec {
        match phase {
            Phase::Expand => &self.expand,
            Phase::DualWrite => &self.dual_write,
            Phase::Backfill => &self.backfill,
            Phase::ReadSwitch => &self.read_switch,
            Phase::Contract => &self.contract,
        }
    }
}

/// What one phase applies and how it is undone.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PhaseSpec {
    /// SQL script applied by the phase (may be empty).
    #[serde(default)]
    pub apply: String,
    /// SQL script that undoes `apply`. Required unless `irreversible`; `""` means nothing to undo.
    pub rollback: Option<String>,
    /// The phase cannot be rolled back (e.g. contract drops data).
    #[serde(default)]
    pub irreversible: bool,
    /// Human description shown in the timeline and runbook.
    #[serde(default)]
    pub description: String,
}

impl PhaseSpec {
    /// True when the phase can be rolled back.
    pub fn reversible(&self) -> bool {
        !self.irreversible && self.rollback.is_some()
    }
}

/// How existing rows are brought to the new shape.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct BackfillSpec {
    /// Table to update (`schema.table` or `table`).
    pub table: String,
    /// Key column(s) used for keyset chunking; must be unique and not null.
    pub key: Vec<String>,
    /// Column → SQL expression assignments applied to pending rows.
    pub set: BTreeMap<String, String>,
    /// SQL predicate true for rows that still need work.
    pub pending: String,
    /// Target duration of one chunk (adaptive sizing aims for it).
    #[serde(default = "default_chunk_time")]
    pub target_chunk_time: Duration,
    /// First chunk size in rows.
    #[serde(default = "default_initial_rows")]
    pub initial_chunk_rows: u32,
    /// Smallest chunk in rows.
    #[serde(default = "default_min_rows")]
    pub min_chunk_rows: u32,
    /// Largest chunk in rows.
    #[serde(default = "default_max_rows")]
    pub max_chunk_rows: u32,
    /// Rate cap in rows per second (0 = none).
    #[serde(default)]
    pub max_rows_per_second: u32,
    /// Parallel workers claiming disjoint key ranges.
    #[serde(default = "default_workers")]
    pub workers: u32,
    /// Workers while the application is idle (no application traffic on the database): the
    /// extra ones release their ranges as soon as traffic appears. At least `workers`.
    #[serde(default = "default_idle_workers")]
    pub idle_workers: u32,
    /// Health signals that pause the backfill.
    #[serde(default)]
    pub throttle: ThrottleSpec,
}

impl BackfillSpec {
    /// How many workers may run while the application is idle.
    pub fn idle_concurrency(&self) -> u32 {
        self.idle_workers.max(self.workers)
    }
}

fn default_chunk_time() -> Duration {
    Duration::from_millis(300)
}
fn default_initial_rows() -> u32 {
    1_000
}
fn default_min_rows() -> u32 {
    50
}
fn default_max_rows() -> u32 {
    100_000
}
fn default_workers() -> u32 {
    1
}
fn default_idle_workers() -> u32 {
    2
}

/// Throttle limits evaluated between chunks; a signal above its limit pauses the backfill.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ThrottleSpec {
    /// Maximum replication replay lag of any standby.
    pub max_replay_lag: Duration,
    /// Maximum active backends in the database (excluding Cutover's own).
    pub max_active_backends: u32,
    /// Maximum sessions waiting on a lock.
    pub max_lock_waiters: u32,
    /// Pause while (auto)vacuum runs on the table.
    pub pause_on_vacuum: bool,
    /// Maximum WAL generation rate in MiB/s (0 = no limit): above it the latency guard yields.
    pub max_wal_mib_per_second: f64,
    /// WAL budget of one chunk in MiB: the chunk size is bounded by it.
    pub max_chunk_wal_mib: f64,
    /// Custom SQL returning one number; above `custom_limit` throttles.
    pub custom_query: Option<String>,
    /// Limit for `custom_query`.
    pub custom_limit: f64,
    /// A signal unreadable for this long pauses the backfill (fail closed).
    pub fail_closed_after: Duration,
    /// The latency guard: the application's statement latency may rise to this multiple of
    /// its baseline (measured just before the backfill) before the backfill yields.
    pub max_app_latency_ratio: f64,
}

impl Default for ThrottleSpec {
    fn default() -> Self {
        ThrottleSpec {
            max_replay_lag: Duration::from_millis(5_000),
            max_active_backends: 64,
            max_lock_waiters: 8,
            pause_on_vacuum: true,
            max_wal_mib_per_second: 0.0,
            max_chunk_wal_mib: 2.0,
            custom_query: None,
            custom_limit: 0.0,
            fail_closed_after: Duration::from_millis(15_000),
            max_app_latency_ratio: 1.25,
        }
    }
}

/// The read switch: a feature flag in `cutover.flags` that the app reads.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ReadSwitchSpec {
    /// Flag name (e.g. `accounts.read_balance_cents`).
    pub flag: String,
}

/// A data-quality check: common fields plus its kind-specific parameters, all in one TOML table
/// (`kind = "…"` selects the kind). The loader reshapes the table to
/// `{ name, description, timeout, kind = { <kind> = { … } } }` before deserializing, so that every
/// key keeps its position (see `load`).
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CheckSpec {
    /// Unique name, referenced by gates.
    pub name: String,
    /// Free text shown beside results.
    #[serde(default)]
    pub description: String,
    /// Statement timeout for each query of the check.
    pub timeout: Option<Duration>,
    /// What the check does.
    pub kind: CheckKind,
}

impl Serialize for CheckSpec {
    /// Serialized flat, as written in plans: `name`, `description`, `timeout`, `kind` and the
    /// kind's parameters.
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        use serde::ser::Error;
        let mut map = serde_json::Map::new();
        map.insert("name".into(), self.name.clone().into());
        map.insert("description".into(), self.description.clone().into());
        if let Some(t) = self.timeout {
            map.insert("timeout".into(), t.to_string().into());
        }
        map.insert("kind".into(), self.kind.name().into());
        if let serde_json::Value::Object(outer) =
            serde_json::to_value(&self.kind).map_err(S::Error::custom)?
        {
            for (_, params) in outer {
                if let serde_json::Value::Object(params) = params {
                    map.extend(params);
                }
            }
        }
        map.serialize(s)
    }
}

/// The kinds of checks, with their parameters.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(rename_all = "snake_case", deny_unknown_fields)]
pub enum CheckKind {
    /// Row counts of source vs target per partition.
    RowCountParity {
        /// Source relation.
        source: String,
        /// Target relation.
        target: String,
        /// Partition expression evaluated on both sides (e.g. `date_trunc('month', created_at)`).
        partition_by: Option<String>,
        /// Key column for key-range partitions when `partition_by` is absent.
        key: Option<String>,
        /// Number of key-range partitions.
        #[serde(default = "default_partitions")]
        partitions: u32,
    },
    /// New column vs the expression computed from the old, NULL-safe, inside one table.
    ExpressionParity {
        /// Table.
        table: String,
        /// Key column(s).
        key: Vec<String>,
        /// New column.
        column: String,
        /// Expression over the old columns that the new column must equal.
        expression: String,
        /// Optional filter.
        filter: Option<String>,
    },
    /// A seeded sample of keys hashed on both sides.
    SampledChecksum {
        /// Source relation.
        source: String,
        /// Target relation.
        target: String,
        /// Key column(s).
        key: Vec<String>,
        /// Target-side key column(s), when they differ from `key`.
        #[serde(default)]
        target_key: Vec<String>,
        /// Compared column expressions (same on both sides unless `target_columns`).
        columns: Vec<String>,
        /// Target-side column expressions, when they differ.
        #[serde(default)]
        target_columns: Vec<String>,
        /// Sample size in rows.
        #[serde(default = "default_sample")]
        sample_size: u32,
        /// Seed for a reproducible sample.
        #[serde(default)]
        seed: u64,
    },
    /// Exact diff of two relations on a key (hash segments and bisection).
    FullDiff {
        /// Source relation.
        source: String,
        /// Target relation.
        target: String,
        /// Key column(s).
        key: Vec<String>,
        /// Target-side key column(s), when they differ from `key`.
        #[serde(default)]
        target_key: Vec<String>,
        /// Compared column expressions (same on both sides unless `target_columns`).
        columns: Vec<String>,
        /// Target-side column expressions, when they differ.
        #[serde(default)]
        target_columns: Vec<String>,
    },
    /// NULL/default share and distribution of a new column vs the old one.
    NullDrift {
        /// Table.
        table: String,
        /// Old column or expression.
        old: String,
        /// New column or expression (compared on the same scale).
        new: String,
        /// Partition expression.
        partition_by: Option<String>,
        /// Value treated like a default (its share is compared too).
        default_value: Option<String>,
        /// Maximum allowed increase of the NULL/default share, in percentage points.
        #[serde(default = "default_drift_pp")]
        max_share_increase_pp: f64,
        /// Maximum allowed relative difference of mean/min/max/quantiles.
        #[serde(default = "default_drift_rel")]
        max_relative_drift: f64,
    },
    /// A query snapshotted before the migration and compared after.
    GoldenQuery {
        /// The query.
        query: String,
    },
    /// SQL returning one number compared to an expectation.
    Invariant {
        /// The query (returns one row, one numeric column).
        sql: String,
        /// Exact expected value (default 0: count of violations).
        expect: Option<f64>,
        /// Upper bound instead of an exact value.
        max: Option<f64>,
        /// Lower bound instead of an exact value.
        min: Option<f64>,
    },
}

fn default_partitions() -> u32 {
    16
}
fn default_sample() -> u32 {
    1_000
}
fn default_drift_pp() -> f64 {
    0.1
}
fn default_drift_rel() -> f64 {
    0.001
}

impl CheckKind {
    /// snake_case kind name.
    pub fn name(&self) -> &'static str {
        match self {
            CheckKind::RowCountParity { .. } => "row_count_parity",
            CheckKind::ExpressionParity { .. } => "expression_parity",
            CheckKind::SampledChecksum { .. } => "sampled_checksum",
            CheckKind::FullDiff { .. } => "full_diff",
            CheckKind::NullDrift { .. } => "null_drift",
            CheckKind::GoldenQuery { .. } => "golden_query",
            CheckKind::Invariant { .. } => "invariant",
        }
    }
}

/// What must hold before a phase is applied.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct GateSpec {
    /// Names of checks whose latest result must be Pass.
    #[serde(default)]
    pub checks: Vec<String>,
    /// Roles that must each sign off.
    #[serde(default)]
    pub signoffs: Vec<Role>,
    /// Readiness probes that must Pass.
    #[serde(default)]
    pub probes: Vec<ProbeKind>,
    /// Minimum time since the previous phase was applied.
    pub observe: Option<Duration>,
}

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
