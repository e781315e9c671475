//! The migration plan: a TOML file that says, per phase, what to apply, how to roll it back,
//! which checks, probes and sign-offs gate it, and who holds which role.
//!
//! [`Plan::load`] parses and validates a file; every problem is reported with its
//! `file:line:col` (see [`diagnostic`]).

pub(crate) mod authorization;
mod backfill;
mod cdc;
mod checks;
mod copy;
pub(crate) mod diagnostic;
mod duration;
mod fields;
pub mod import;
mod load;
mod names;
pub(crate) mod notify;
pub mod operations;
mod probes;
pub mod show;
mod size;
mod source;
mod strings;
mod validate;
pub(crate) mod windows;

use std::collections::BTreeMap;
use std::fmt;
use std::path::Path;

use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

pub use authorization::{Action, Authorization, Denied, Governance};
pub use backfill::{BackfillSpec, ThrottleSpec, DEFAULT_MIN_SLOT_SAFE_WAL_PERCENT};
pub use cdc::{DualWriteMode, DualWriteSpec};
pub use checks::{CheckKind, CheckSpec};
pub use copy::BackfillMode;
pub use diagnostic::{Diagnostic, PlanError};
pub use duration::Duration;
pub use names::{identifier_tag, Environment, PlanId, Role, Tier};
pub use notify::{Event, NotifySpec};
pub use probes::{
    CompatQuery, CompatibilitySpec, ErrorBudgetSpec, HiddenReadersSpec, LintAck, LintSpec,
    PrivilegeParitySpec, ProbeKind, ProbesSpec,
};
pub use size::Size;
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
        let mut structure = load::structure(path, source);
        let mut diags = structure.diagnostics;
        if let Some(spec) = &mut structure.spec {
            let mut problems = operations::expand(spec, source);
            let generated = operations::attribute(spec, validate::validate(spec), &problems);
            problems.extend(generated);
            problems.retain(|p| !structure.repaired.iter().any(|r| related(r, &p.path)));
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
    /// How concurrent writes reach a copy's new table: trigger (default) or CDC.
    pub dual_write: Option<DualWriteSpec>,
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
    /// Declarative schema changes, expanded into the parts above at load (see [`operations`]).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub operations: Vec<operations::OperationSpec>,
    /// With `[[operations]]`: also create version schemas of views, `<schema>_<id>_old` and
    /// `<schema>_<id>_new`, for apps that pick their version with `search_path` (see
    /// [`operations`]).
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub version_schemas: bool,
    /// Which operation generated which part (filled at load).
    #[serde(skip)]
    pub origins: operations::Origins,
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

/// The read switch: a feature flag in `cutover.flags` that the app reads.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ReadSwitchSpec {
    /// Flag name (e.g. `accounts.read_balance_cents`).
    pub flag: String,
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
