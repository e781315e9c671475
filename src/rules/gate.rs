//! Entry gates: before phase X is applied, `[gates.X]` must pass — the previous phase applied, no
//! freeze in force, its checks (latest result Pass, run after the previous phase was applied,
//! against this plan version), its probes (latest evaluation Pass and still fresh), its sign-offs
//! (bound to the plan's sha256 and given after the phase was last rolled back) and its
//! observation window; and no replication slot may be about to lose its WAL
//! ([`super::slots`]). Anything not measured is Inconclusive and blocks. A lead's override
//! (break-glass, with a reason) lets a gate through once and stays visible; it never skips the
//! phase order.

use chrono::{DateTime, Duration, Utc};
use serde::Serialize;

use super::{age, fmt_time, human, short};
use crate::control::backfill::State as BackfillState;
use crate::control::checks::PartitionResult;
use crate::control::facts::{Facts, ProbeFact};
use crate::control::phases::PhaseState;
use crate::outcome::Outcome;
use crate::plan::{Phase, Plan, ProbeKind, Role};

/// A probe evaluation older than this is stale whatever changed since.
pub(crate) const PROBE_MAX_AGE: Duration = Duration::minutes(10);

/// What a gate item is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum ItemKind {
    /// The previous phase must be applied.
    Order,
    /// No freeze period in force.
    Freeze,
    /// A data check's latest result.
    Check,
    /// A readiness probe.
    Probe,
    /// A role's sign-off.
    Signoff,
    /// Minimum time since the previous phase was applied.
    Observe,
    /// A replication slot about to lose the WAL its consumer needs.
    Slot,
}

impl ItemKind {
    /// snake_case name.
    pub fn as_str(self) -> &'static str {
        match self {
            ItemKind::Order => "order",
            ItemKind::Freeze => "freeze",
            ItemKind::Check => "check",
            ItemKind::Probe => "probe",
            ItemKind::Signoff => "signoff",
            ItemKind::Observe => "observe",
            ItemKind::Slot => "slot",
        }
    }
}

/// One evaluated requirement of a gate.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct GateItem {
    /// Kind.
    pub kind: ItemKind,
    /// Check name, probe name, role, …
    pub name: String,
    /// Verdict.
    pub outcome: Outcome,
    /// Why, in one line.
    pub detail: String,
    /// Extra evidence lines (probe evidence).
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub evidence: Vec<String>,
    /// A recorded result judged before the facts it depends on changed: awaiting re-evaluation.
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    pub stale: bool,
    /// A check on a partitioned table: its result per leaf partition.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub partitions: Vec<PartitionResult>,
}

/// A break-glass override in force.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct OverrideInfo {
    /// Who.
    pub login: String,
    /// Why.
    pub reason: String,
    /// When.
    pub at: DateTime<Utc>,
}

/// A gate's verdict with every item spelled out.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct GateEvaluation {
    /// The phase this gate guards.
    pub phase: Phase,
    /// Combined outcome of the items.
    pub outcome: Outcome,
    /// True when the phase may be applied: Pass, or overridden with the order respected.
    pub passed: bool,
    /// The one word shown for this gate everywhere (see [`Verdict`]).
    pub verdict: Verdict,
    /// The override in force, if any.
    pub overridden: Option<OverrideInfo>,
    /// Every item.
    pub items: Vec<GateItem>,
    /// One line per item that is not Pass.
    pub blockers: Vec<String>,
}

/// The one word a gate's verdict is shown as, everywhere (`status`, the TUI's panes and picker).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Verdict {
    /// Every item passes.
    Pass,
    /// An item fails.
    Fail,
    /// Nothing fails, but something could not be measured.
    Inconclusive,
    /// Not Pass on its own, but a lead's override lets it through.
    Overridden,
}

impl std::fmt::Display for Verdict {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Verdict::Pass => "PASS",
            Verdict::Fail => "FAIL",
            Verdict::Inconclusive => "INCONCLUSIVE",
            Verdict::Overridden => "OVERRIDDEN",
        })
    }
}

impl GateEvaluation {
    /// The verdict word.
    pub fn verdict(&self) -> Verdict {
        self.verdict
    }
}

/// The combined outcome, or Overridden when an override lets a gate through that does not pass
/// on its own.
fn verdict_of(outcome: Outcome, passed: bool) -> Verdict {
    match outcome {
        Outcome::Pass => Verdict::Pass,
        _ if passed => Verdict::Overridden,
        Outcome::Fail => Verdict::Fail,
        Outcome::Inconclusive => Verdict::Inconclusive,
    }
}

/// Judges the entry gate of `phase` from `facts`.
pub fn evaluate(plan: &Plan, facts: &Facts, phase: Phase) -> GateEvaluation {
    let spec = plan.gate(phase);
    let sha = plan.sha256();
    let now = facts.now;
    let prev_applied = facts.previous_applied_at(phase);
    let mut items = Vec::new();

    if let Some(prev) = phase.prev() {
        items.push(match facts.state(prev) {
            PhaseState::Applied => item(
                ItemKind::Order,
                prev.as_str(),
                Outcome::Pass,
                format!("{prev} is applied"),
            ),
            s => item(
                ItemKind::Order,
                prev.as_str(),
                Outcome::Fail,
                format!("{prev} must be applied first (it is {s})"),
            ),
        });
    }
    items.push(match plan.spec.windows.frozen_reason(now) {
        Some(reason) => item(
            ItemKind::Freeze,
            "freeze",
            Outcome::Fail,
            format!("freeze in force: {reason}"),
        ),
        None => item(
            ItemKind::Freeze,
            "freeze",
            Outcome::Pass,
            "no freeze in force".into(),
        ),
    });
    for name in &spec.checks {
        items.push(check_item(facts, &sha, name, prev_applied, phase));
    }
    for kind in &spec.probes {
        items.push(probe_item(facts, &sha, phase, *kind));
    }
    let rolled_back = facts.entered(phase, PhaseState::RolledBack);
    for role in &spec.signoffs {
        items.push(signoff_item(plan, facts, &sha, phase, role, rolled_back));
    }
    if let Some(observe) = spec.observe {
        items.push(observe_item(observe, prev_applied, now));
    }
    let min_percent = super::slots::min_percent(plan);
    for (slot, why) in
        super::slots::blockers(&facts.slots, facts.max_slot_wal_keep_size, min_percent)
    {
        items.push(item(ItemKind::Slot, &slot, Outcome::Fail, why));
    }

    let outcome = Outcome::all(items.iter().map(|i| i.outcome));
    let blockers = items
        .iter()
        .filter(|i| i.outcome != Outcome::Pass)
        .map(|i| {
            format!(
                "{} {}: {} — {}",
                i.kind.as_str(),
                i.name,
                i.outcome,
                i.detail
            )
        })
        .collect();
    let overridden = override_in_force(facts, &sha, phase);
    let order_ok = items
        .iter()
        .all(|i| i.kind != ItemKind::Order || i.outcome == Outcome::Pass);
    let passed = outcome == Outcome::Pass || (overridden.is_some() && order_ok);
    GateEvaluation {
        phase,
        outcome,
        passed,
        verdict: verdict_of(outcome, passed),
        overridden,
        items,
        blockers,
    }
}

/// The override that lets `phase` through: given for this plan version, after the phase was
/// last applied (an override lets one apply through; after a rollback, re-applying needs a new
/// one).
fn override_in_force(facts: &Facts, sha: &str, phase: Phase) -> Option<OverrideInfo> {
    let consumed_at = facts.entered(phase, PhaseState::Applied);
    facts
        .overrides
        .iter()
        .rev()
        .find(|o| o.gate == phase && o.plan_sha256 == sha && consumed_at.is_none_or(|c| o.at > c))
        .map(|o| OverrideInfo {
            login: o.login.clone(),
            reason: o.reason.clone(),
            at: o.at,
        })
}

/// Whether an override is still unused (for listings): see `override_in_force`.
pub(crate) fn override_unconsumed(facts: &Facts, gate: Phase, at: DateTime<Utc>) -> bool {
    facts
        .entered(gate, PhaseState::Applied)
        .is_none_or(|c| at > c)
}

fn item(kind: ItemKind, name: &str, outcome: Outcome, detail: String) -> GateItem {
    GateItem {
        kind,
        name: name.to_string(),
        outcome,
        detail,
        evidence: Vec::new(),
        stale: false,
        partitions: Vec::new(),
    }
}

/// The sign-off by `role`: valid only for this plan version and after the last rollback of
/// `phase`.
fn signoff_item(
    plan: &Plan,
    facts: &Facts,
    sha: &str,
    phase: Phase,
    role: &Role,
    rolled_back: Option<DateTime<Utc>>,
) -> GateItem {
    let ours = |s: &&crate::control::facts::SignoffFact| s.gate == phase && s.role == role.0;
    let valid = facts
        .signoffs
        .iter()
        .rev()
        .filter(ours)
        .find(|s| s.plan_sha256 == sha && rolled_back.is_none_or(|rb| s.signed_at > rb));
    let latest = facts.signoffs.iter().rev().find(ours);
    match (valid, latest) {
        (Some(s), _) => item(
            ItemKind::Signoff,
            role.as_str(),
            Outcome::Pass,
            format!("signed by {} at {}", s.login, fmt_time(s.signed_at)),
        ),
        (None, Some(s)) if s.plan_sha256 != sha => item(
            ItemKind::Signoff,
            role.as_str(),
            Outcome::Inconclusive,
            format!(
                "void: plan changed since sign-off by {} at {} (signed sha {}, plan now {}); sign again",
                s.login,
                fmt_time(s.signed_at),
                short(&s.plan_sha256),
                short(sha)
            ),
        ),
        (None, Some(s)) => item(
            ItemKind::Signoff,
            role.as_str(),
            Outcome::Inconclusive,
            format!(
                "void: {phase} was rolled back at {} after the sign-off by {} at {}; sign again",
                rolled_back.map(fmt_time).unwrap_or_default(),
                s.login,
                fmt_time(s.signed_at)
            ),
        ),
        (None, None) => item(
            ItemKind::Signoff,
            role.as_str(),
            Outcome::Inconclusive,
            format!(
                "missing sign-off by {role} (roster: {})",
                plan.spec
                    .roster
                    .get(role)
                    .map(|l| l.join(", "))
                    .unwrap_or_default()
            ),
        ),
    }
}

/// The observation window since the previous phase was applied.
fn observe_item(
    observe: crate::plan::Duration,
    prev_applied: Option<DateTime<Utc>>,
    now: DateTime<Utc>,
) -> GateItem {
    match prev_applied {
        Some(at) => {
            let elapsed = (now - at).to_std().unwrap_or_default();
            if elapsed >= observe.std() {
                item(
                    ItemKind::Observe,
                    "observe",
                    Outcome::Pass,
                    format!(
                        "observed {} since the previous phase (needs {observe})",
                        human(elapsed)
                    ),
                )
            } else {
                item(
                    ItemKind::Observe,
                    "observe",
                    Outcome::Inconclusive,
                    format!(
                        "observation window: {} of {observe} elapsed since the previous phase was applied ({} left)",
                        human(elapsed),
                        human(observe.std().saturating_sub(elapsed))
                    ),
                )
            }
        }
        None => item(
            ItemKind::Observe,
            "observe",
            Outcome::Inconclusive,
            "observation window starts when the previous phase is applied".into(),
        ),
    }
}

fn check_item(
    facts: &Facts,
    sha: &str,
    name: &str,
    prev_applied: Option<DateTime<Utc>>,
    phase: Phase,
) -> GateItem {
    let Some(c) = facts.checks.iter().find(|c| c.name == name) else {
        return item(
            ItemKind::Check,
            name,
            Outcome::Inconclusive,
            "never run (run `cutover check`)".into(),
        );
    };
    if let Some(prev) = prev_applied.filter(|p| c.started_at < *p) {
        let prev_phase = phase
            .prev()
            .map(|p| p.as_str())
            .unwrap_or("the previous phase");
        return item(
            ItemKind::Check,
            name,
            Outcome::Inconclusive,
            format!(
                "stale: last run at {} is before {prev_phase} was applied at {}; run it again",
                fmt_time(c.started_at),
                fmt_time(prev)
            ),
        );
    }
    if c.plan_sha256 != sha {
        return item(
            ItemKind::Check,
            name,
            Outcome::Inconclusive,
            format!(
                "stale: last run at {} was against plan version {} (plan now {}); run it again",
                fmt_time(c.started_at),
                short(&c.plan_sha256),
                short(sha)
            ),
        );
    }
    GateItem {
        partitions: c.partitions.clone(),
        ..item(
            ItemKind::Check,
            name,
            c.outcome,
            format!("{} (at {})", c.summary, fmt_time(c.started_at)),
        )
    }
}

/// The latest evaluation of `kind` at gate `phase` for plan version `sha`.
pub(crate) fn latest_probe<'a>(
    facts: &'a Facts,
    sha: &str,
    phase: Phase,
    kind: ProbeKind,
) -> Option<&'a ProbeFact> {
    facts
        .probes
        .iter()
        .filter(|p| p.gate == phase && p.probe == kind.as_str() && p.plan_sha256 == sha)
        .max_by_key(|p| p.at)
}

/// Why a recorded probe result no longer describes the present, if it does not: a phase
/// changed state after it was judged, the backfill changed state after a backfill-complete
/// judgement, or it is older than [`PROBE_MAX_AGE`].
pub(crate) fn stale_reason(facts: &Facts, probe: &ProbeFact) -> Option<String> {
    if let Some(t) = facts.last_transition_at().filter(|t| *t > probe.at) {
        return Some(format!("a phase changed state at {} after it", fmt_time(t)));
    }
    if probe.probe == ProbeKind::BackfillComplete.as_str() {
        if let Some(b) = &facts.backfill {
            if let Some(t) = b.state_changed_at.filter(|t| *t > probe.at) {
                let now = match b.state {
                    BackfillState::Done => "done".to_string(),
                    s => s.as_str().to_string(),
                };
                return Some(format!(
                    "the backfill became {now} at {} after it",
                    fmt_time(t)
                ));
            }
        }
    }
    (facts.now - probe.at > PROBE_MAX_AGE)
        .then(|| format!("older than {} min", PROBE_MAX_AGE.num_minutes()))
}

fn probe_item(facts: &Facts, sha: &str, phase: Phase, kind: ProbeKind) -> GateItem {
    let Some(p) = latest_probe(facts, sha, phase, kind) else {
        return item(
            ItemKind::Probe,
            kind.as_str(),
            Outcome::Inconclusive,
            "not evaluated for this plan version yet (`cutover probe PLAN` or an operator's TUI evaluates it)"
                .into(),
        );
    };
    match stale_reason(facts, p) {
        Some(why) => GateItem {
            kind: ItemKind::Probe,
            name: kind.as_str().to_string(),
            outcome: Outcome::Inconclusive,
            detail: format!(
                "stale: judged {} ago ({}: {}), {why}; awaiting re-evaluation",
                age(p.at, facts.now),
                p.outcome.as_str(),
                p.summary
            ),
            evidence: Vec::new(),
            stale: true,
            partitions: Vec::new(),
        },
        None => GateItem {
            kind: ItemKind::Probe,
            name: kind.as_str().to_string(),
            outcome: p.outcome,
            detail: p.summary.clone(),
            evidence: p.evidence.clone(),
            stale: false,
            partitions: Vec::new(),
        },
    }
}
