//! The one-line **next step** hint: what to do (or wait for) now, derived from the gate the
//! rules judged, the phase states and — in the demo — the app's versions. A pure function, so
//! every phase of the walk-through is unit-tested by hand-built snapshots.

use super::progress::Share;
use crate::control::backfill::State as BackfillState;
use crate::control::phases::PhaseState;
use crate::outcome::Outcome;
use crate::plan::{Phase, Plan, ProbeKind};
use crate::rules::{CategoryKind, GateItem, ItemKind};
use crate::worker::{AppVersion, Snapshot};

/// Whether the step is something to do or something to wait for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StepKind {
    /// A key or command does it.
    Act,
    /// Time or another process does it.
    Wait,
    /// Nothing is left.
    Done,
}

/// A phase applying for less than this long is not called interrupted (its lock may not show
/// in the snapshot yet).
const INTERRUPTED_AFTER_SECS: i64 = 5;

/// A hint longer than this is not given a "meanwhile" (it must fit an 80-column footer).
const MAX_WIDTH: usize = 76;

/// Who reads the hint.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Viewer {
    /// An operator: the hint names the key that does it.
    Operator,
    /// A read-only session: the hint tells what the operators' next step is.
    ReadOnly,
}

impl Viewer {
    fn prefix(self) -> &'static str {
        match self {
            Viewer::Operator => "next: ",
            Viewer::ReadOnly => "next (an operator's): ",
        }
    }
}

/// The hint.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NextStep {
    /// Act, wait or done.
    pub kind: StepKind,
    /// `next: run checks (c)`.
    pub text: String,
}

fn act(text: impl Into<String>) -> NextStep {
    NextStep {
        kind: StepKind::Act,
        text: text.into(),
    }
}

fn wait(text: impl Into<String>) -> NextStep {
    NextStep {
        kind: StepKind::Wait,
        text: text.into(),
    }
}

/// The next step for `me` (the roles I hold) on `snap`, worded for `viewer`. `None` before the
/// first snapshot.
pub(crate) fn next_step(
    plan: &Plan,
    snap: Option<&Snapshot>,
    me: &[String],
    viewer: Viewer,
) -> Option<NextStep> {
    let s = snap?;
    let step = step(plan, s, me);
    Some(match step.kind {
        StepKind::Wait => meanwhile(s, worded(step, viewer)),
        StepKind::Act => worded(step, viewer),
        StepKind::Done => step,
    })
}

/// While the UI's own action `label` runs.
pub(crate) fn running(label: &str, viewer: Viewer) -> NextStep {
    worded(wait(format!("wait: {label} is running")), viewer)
}

fn worded(step: NextStep, viewer: Viewer) -> NextStep {
    NextStep {
        text: format!("{}{}", viewer.prefix(), step.text),
        ..step
    }
}

#[expect(clippy::too_many_lines, reason = "the TUI helper splits this")]
fn step(plan: &Plan, s: &Snapshot, me: &[String]) -> NextStep {
    if !s.status.registered {
        return wait("wait: the migration is being registered (an operator's TUI does it)");
    }
    // Just started, a run may not show its lock yet: call it interrupted only once it is old.
    let fresh = |p: &crate::rules::status::PhaseStatus| {
        p.started_at
            .is_some_and(|t| s.facts.now - t < chrono::Duration::seconds(INTERRUPTED_AFTER_SECS))
    };
    if let Some(p) = s.status.phases.iter().find(|p| {
        matches!(p.state, PhaseState::Applying | PhaseState::RollingBack)
            && (p.note.is_none() || fresh(p))
    }) {
        let verb = if p.state == PhaseState::Applying {
            "applied"
        } else {
            "rolled back"
        };
        return wait(format!("wait: {} is being {verb}", p.phase));
    }
    if let Some(p) = s.status.phases.iter().find(|p| p.note.is_some()) {
        return act(format!(
            "{} was interrupted: re-run it (a, or R to roll back)",
            p.phase
        ));
    }
    let Some(gate) = &s.status.gate else {
        return NextStep {
            kind: StepKind::Done,
            text: "done: every phase is applied, contract included (q quits)".to_string(),
        };
    };
    let phase = gate.phase;
    if gate.passed {
        return if plan.phase(phase).reversible() {
            act(format!("advance to {phase} (a)"))
        } else {
            act(format!("apply {phase}, the point of no return (a, then Y)"))
        };
    }
    if let Some(app) = s.app {
        if app.draining.is_some() {
            return wait(format!("wait: {app}"));
        }
        if phase == Phase::Contract && app.serving == AppVersion::V1 {
            return act("roll the app to v2, which reads balance_cents (:app v2)");
        }
    }
    let open: Vec<&GateItem> = gate
        .items
        .iter()
        .filter(|i| i.outcome != Outcome::Pass)
        .collect();
    let of = |kind: ItemKind| open.iter().copied().filter(move |i| i.kind == kind);
    if let Some(i) = of(ItemKind::Slot).next() {
        return act(i.detail.clone());
    }
    if let Some(i) = of(ItemKind::Freeze).next() {
        return wait(format!("wait: {}", i.detail));
    }
    if let Some(i) = of(ItemKind::Order).next() {
        return act(i.detail.clone());
    }
    let backfilling = s.status.backfill.as_ref().filter(|b| {
        b.state != BackfillState::Done && s.facts.state(Phase::Backfill) == PhaseState::Applied
    });
    let needs_backfill = of(ItemKind::Check).any(|i| i.outcome == Outcome::Fail)
        || of(ItemKind::Probe).any(|i| i.name == ProbeKind::BackfillComplete.as_str());
    if let (Some(b), true) = (backfilling, needs_backfill) {
        return match b.state {
            BackfillState::Paused | BackfillState::Stopped => {
                act(format!("resume the backfill, it is {} (Space)", b.state))
            }
            BackfillState::Failed => act(format!("the backfill failed: {}", b.reason)),
            _ => wait(format!("wait for the backfill{}", to_finish(s))),
        };
    }
    if of(ItemKind::Check).any(|i| i.outcome == Outcome::Inconclusive) {
        return act("run checks (c)");
    }
    if let Some(i) = of(ItemKind::Check).next() {
        return act(format!(
            "check {} fails: see Parity, fix the data, then c",
            i.name
        ));
    }
    if let Some(i) = of(ItemKind::Probe).find(|i| i.outcome == Outcome::Fail && !i.stale) {
        if i.name == ProbeKind::HiddenReaders.as_str() {
            return match s.app {
                Some(_) => wait(format!(
                    "wait: old readers must stay silent for {}s (c re-checks)",
                    observe_window(plan, Phase::Contract)
                )),
                None => act("hidden readers use the old column: see Readiness (c re-checks)"),
            };
        }
        return act(format!(
            "probe {} fails: see Readiness (c re-checks)",
            i.name
        ));
    }
    if let Some(i) = of(ItemKind::Probe).next() {
        if i.name == ProbeKind::ErrorBudget.as_str() && !i.stale {
            return wait("wait: the error budget needs app traffic (c re-checks)");
        }
        return wait(format!("wait for probe {} (c runs it now)", i.name));
    }
    let missing: Vec<&str> = of(ItemKind::Signoff).map(|i| i.name.as_str()).collect();
    let mine: Vec<&str> = missing
        .iter()
        .copied()
        .filter(|r| me.iter().any(|m| m == r))
        .collect();
    if !mine.is_empty() {
        return act(format!("sign off {phase} as {} (s)", mine.join(", ")));
    }
    if let Some(role) = missing.first() {
        let holders = plan
            .spec
            .roster
            .iter()
            .find(|(r, _)| r.as_str() == *role)
            .map(|(_, l)| l.join(", "))
            .unwrap_or_default();
        return wait(format!("{role} must sign off {phase} ({holders})"));
    }
    if of(ItemKind::Observe).next().is_some() {
        let left = observe_left(plan, s, phase);
        return wait(format!("wait {left}s (observation window)"));
    }
    match gate.blockers.first() {
        Some(b) => act(b.clone()),
        None => wait(format!("wait: the {phase} gate is being judged")),
    }
}

/// `phase`'s observation window in whole seconds (0 without one).
fn observe_window(plan: &Plan, phase: Phase) -> u64 {
    plan.gate(phase).observe.map_or(0, |w| w.std().as_secs())
}

/// Seconds left of `phase`'s observation window, rounded up.
fn observe_left(plan: &Plan, s: &Snapshot, phase: Phase) -> u64 {
    let Some(window) = plan.gate(phase).observe else {
        return 0;
    };
    let Some(since) = s.facts.previous_applied_at(phase) else {
        return window.std().as_secs();
    };
    let elapsed = (s.facts.now - since).to_std().unwrap_or_default();
    let left = window.std().saturating_sub(elapsed);
    left.as_secs() + u64::from(left.subsec_nanos() > 0)
}

/// ` to finish (41.2%)`: the figures the gauge shows (the backfill's own progress, else the
/// share `backfill status` computed; never the planned estimate).
fn to_finish(s: &Snapshot) -> String {
    let share = match (&s.backfill, s.share) {
        (Some(b), _) => Share::new(Some(b.state), b.rows_done, b.rows_estimate),
        (None, Some(share)) => share,
        (None, None) => return " to finish".to_string(),
    };
    match share.percent_text() {
        Some(p) => format!(" to finish ({p})"),
        None => " to finish".to_string(),
    }
}

/// While waiting, a scorecard category the TUI can complete is worth doing.
fn meanwhile(s: &Snapshot, step: NextStep) -> NextStep {
    let open = |kind: CategoryKind| {
        s.status
            .scorecard
            .categories
            .iter()
            .find(|c| c.kind == kind)
            .is_some_and(|c| c.evidence.iter().any(|e| e.outcome != Outcome::Pass))
    };
    let extra = if open(CategoryKind::Reversibility) {
        Some(":rehearse")
    } else if open(CategoryKind::Observability) {
        Some(":scrape")
    } else {
        None
    };
    match extra.filter(|cmd| step.text.chars().count() + cmd.len() + 13 <= MAX_WIDTH) {
        Some(cmd) => NextStep {
            text: format!("{} · meanwhile {cmd}", step.text),
            ..step
        },
        None => step,
    }
}
