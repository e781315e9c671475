//! The status: everything an operator needs to decide the next step, in one serializable value,
//! judged from the facts. `cutover status`, the TUI and the runbook show this same value.

use crate::control::backfill::State as BackfillState;
use crate::control::facts::Facts;
use crate::control::facts::FlagFact;
use crate::control::phases::PhaseState;
use crate::control::statements::Direction;
use crate::plan::{Environment, Phase, Plan};
use crate::rules::{self, fmt_time, GateEvaluation, RollbackAdvice, Scorecard};
use chrono::{DateTime, Utc};
use serde::Serialize;

/// One phase in the status.
#[derive(Debug, Clone, Serialize)]
pub struct PhaseStatus {
    /// Phase.
    pub phase: Phase,
    /// State.
    pub state: PhaseState,
    /// Can it be rolled back?
    pub reversible: bool,
    /// The plan's description.
    pub description: String,
    /// When its last transition started.
    pub started_at: Option<DateTime<Utc>>,
    /// When its last transition finished.
    pub finished_at: Option<DateTime<Utc>>,
    /// Duration of the last transition, ms.
    pub duration_ms: Option<i64>,
    /// Error of the last failed attempt.
    pub error: Option<String>,
    /// For `applying` / `rolling_back`: what is going on (in progress elsewhere, or interrupted).
    pub note: Option<String>,
}

/// A sign-off, valid or void.
#[derive(Debug, Clone, Serialize)]
pub struct SignoffView {
    /// Gate (phase).
    pub gate: String,
    /// Role.
    pub role: String,
    /// PostgreSQL login.
    pub login: String,
    /// OS user.
    pub os_user: String,
    /// Host.
    pub host: String,
    /// When.
    pub signed_at: DateTime<Utc>,
    /// The plan sha256 it binds to.
    pub plan_sha256: String,
    /// True when it binds to the current plan file.
    pub valid: bool,
    /// `void: plan changed since sign-off` for void ones.
    pub note: Option<String>,
}

/// A break-glass override, shown forever.
#[derive(Debug, Clone, Serialize)]
pub struct OverrideView {
    /// Gate.
    pub gate: String,
    /// Lead's login.
    pub login: String,
    /// Written reason.
    pub reason: String,
    /// When.
    pub at: DateTime<Utc>,
    /// True when it was given for the current plan version.
    pub current_plan: bool,
    /// True when it still lets its gate through (current plan version, not used by an apply yet).
    pub in_force: bool,
}

/// Backfill progress as the backfill runner records it.
#[derive(Debug, Clone, Serialize)]
pub struct BackfillView {
    /// The backfill's state.
    pub state: BackfillState,
    /// Why (throttle or pause reason).
    pub reason: String,
    /// Rows written.
    pub rows_done: i64,
    /// Estimated total.
    pub rows_estimate: Option<i64>,
    /// Time spent throttled.
    pub throttled_seconds: f64,
}

/// The whole picture of one migration.
#[derive(Debug, Clone, Serialize)]
pub struct Status {
    /// Plan id.
    pub plan_id: String,
    /// Title.
    pub title: String,
    /// Environment banner.
    pub environment: Environment,
    /// Plan file.
    pub plan_path: String,
    /// sha256 of the plan file now.
    pub plan_sha256: String,
    /// sha256 the migration was registered or last acted with (empty when not registered).
    pub recorded_sha256: String,
    /// The migration is registered (an operator's first action registers it).
    pub registered: bool,
    /// Some phase has left `pending`; false is "not started" (also where no control schema
    /// exists yet).
    pub started: bool,
    /// The file differs from the last acted-on version.
    pub plan_changed: bool,
    /// The five phases.
    pub phases: Vec<PhaseStatus>,
    /// The last applied phase.
    pub current_phase: Option<Phase>,
    /// The phase `advance` would apply.
    pub next_phase: Option<Phase>,
    /// The gate of the next phase, judged from the recorded facts.
    pub gate: Option<GateEvaluation>,
    /// Readiness scorecard.
    pub scorecard: Scorecard,
    /// Every sign-off, void ones marked.
    pub signoffs: Vec<SignoffView>,
    /// Every override.
    pub overrides: Vec<OverrideView>,
    /// Fastest safe rollback for the current phase.
    pub rollback: Option<RollbackAdvice>,
    /// The read-switch flag.
    pub flag: Option<FlagFact>,
    /// Backfill progress.
    pub backfill: Option<BackfillView>,
    /// The cluster's replication slots (one about to lose its WAL blocks the gate).
    pub slots: Vec<crate::control::slots::Slot>,
    /// `max_slot_wal_keep_size` in bytes (`None`: unlimited).
    pub max_slot_wal_keep_size: Option<i64>,
}

/// The status of `plan` as the rules judge `facts`; the TUI shows the same value.
pub(crate) fn build(plan: &Plan, facts: &Facts) -> Status {
    let sha = plan.sha256();
    let next_phase = facts.next_phase();
    let gate = next_phase.map(|p| rules::gate::evaluate(plan, facts, p));
    let phases = phase_statuses(plan, facts);
    let signoffs = facts
        .signoffs
        .iter()
        .map(|s| {
            let rolled_back = facts
                .entered(s.gate, PhaseState::RolledBack)
                .filter(|rb| *rb > s.signed_at);
            let note = if s.plan_sha256 != sha {
                Some("void: plan changed since sign-off".to_string())
            } else {
                rolled_back.map(|rb| {
                    format!(
                        "void: {} was rolled back at {} after it",
                        s.gate,
                        fmt_time(rb)
                    )
                })
            };
            SignoffView {
                gate: s.gate.as_str().to_string(),
                role: s.role.clone(),
                login: s.login.clone(),
                os_user: s.os_user.clone(),
                host: s.host.clone(),
                signed_at: s.signed_at,
                plan_sha256: s.plan_sha256.clone(),
                valid: note.is_none(),
                note,
            }
        })
        .collect();
    let overrides = facts
        .overrides
        .iter()
        .map(|o| OverrideView {
            gate: o.gate.as_str().to_string(),
            login: o.login.clone(),
            reason: o.reason.clone(),
            at: o.at,
            current_plan: o.plan_sha256 == sha,
            in_force: o.plan_sha256 == sha && rules::gate::override_unconsumed(facts, o.gate, o.at),
        })
        .collect();
    let flag = plan
        .spec
        .read_switch
        .as_ref()
        .and_then(|rs| facts.flag(&rs.flag))
        .cloned();
    let backfill = facts.backfill.as_ref().map(|b| BackfillView {
        state: b.state,
        reason: b.reason.clone(),
        rows_done: b.rows_done,
        rows_estimate: b.rows_estimate,
        throttled_seconds: b.throttled_seconds,
    });
    let recorded = facts.registration.as_ref().map(|r| r.plan_sha256.clone());
    Status {
        plan_id: plan.id().to_string(),
        title: plan.spec.title.clone(),
        environment: plan.spec.environment.clone(),
        plan_path: plan.path.clone(),
        registered: facts.registration.is_some(),
        started: facts.phases.iter().any(|p| p.state != PhaseState::Pending),
        plan_changed: recorded.as_ref().is_some_and(|r| *r != sha),
        plan_sha256: sha,
        recorded_sha256: recorded.unwrap_or_default(),
        phases,
        current_phase: facts.last_applied(),
        next_phase,
        gate,
        scorecard: rules::scorecard(plan, facts),
        signoffs,
        overrides,
        rollback: rules::rollback_advice(plan, facts),
        flag,
        backfill,
        slots: facts.slots.clone(),
        max_slot_wal_keep_size: facts.max_slot_wal_keep_size,
    }
}

/// Each phase's row as the status shows it.
fn phase_statuses(plan: &Plan, facts: &Facts) -> Vec<PhaseStatus> {
    facts
        .phases
        .iter()
        .map(|r| PhaseStatus {
            note: in_flight_note(facts, r.phase, r.state),
            phase: r.phase,
            state: r.state,
            reversible: plan.phase(r.phase).reversible(),
            description: plan.phase(r.phase).description.clone(),
            started_at: r.started_at,
            finished_at: r.finished_at,
            duration_ms: match (r.started_at, r.finished_at) {
                (Some(a), Some(b)) => Some((b - a).num_milliseconds()),
                _ => None,
            },
            error: r.error.clone(),
        })
        .collect()
}

fn in_flight_note(facts: &Facts, phase: Phase, state: PhaseState) -> Option<String> {
    let (verb, direction) = match state {
        PhaseState::Applying => ("advance", Direction::Apply),
        PhaseState::RollingBack => ("rollback", Direction::Rollback),
        _ => return None,
    };
    if let Some(h) = &facts.lock_holder {
        return Some(format!("in progress: {h} is running it"));
    }
    let after = facts
        .statements
        .iter()
        .find(|s| s.phase == phase && s.direction == direction)
        .map(|s| {
            format!(
                " after statement {} (`{}`)",
                s.idx + 1,
                first_line(&s.statement)
            )
        })
        .unwrap_or_else(|| " before its first statement completed".to_string());
    Some(format!(
        "interrupted{after}: no process is running it; its transactional statements did not commit — re-run `{verb}` to resume"
    ))
}

/// The first line of a statement, at most 80 characters.
fn first_line(stmt: &str) -> String {
    let line = stmt.lines().next().unwrap_or("").trim();
    if line.chars().count() > 80 {
        format!("{}…", line.chars().take(79).collect::<String>())
    } else {
        line.to_string()
    }
}
