//! `status`: everything an operator needs to decide the next step, in one serializable value.

use chrono::{DateTime, Utc};
use serde::Serialize;
use tokio_postgres::Client;

use super::flags::{get_flag, Flag};
use super::gate::{evaluate_gate, GateEvaluation};
use super::rollback::{irreversible_reason, partially_applied, rollback_targets};
use super::scorecard::{scorecard, Scorecard};
use super::state::{self, PhaseState};
use super::EngineError;
use crate::audit::Actor;
use crate::plan::{Phase, Plan};

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

/// The fastest safe way back from where the migration stands.
#[derive(Debug, Clone, Serialize)]
pub struct RollbackAdvice {
    /// The phase a plain `rollback` undoes.
    pub phase: Phase,
    /// False for an irreversible phase.
    pub possible: bool,
    /// What it does (or why it is impossible).
    pub description: String,
    /// The command.
    pub command: String,
}

/// Backfill progress as the backfill runner records it.
#[derive(Debug, Clone, Serialize)]
pub struct BackfillView {
    /// `idle`, `running`, `throttled`, `paused`, `stopped`, `done`, `failed`.
    pub state: String,
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
    pub environment: String,
    /// Plan file.
    pub plan_path: String,
    /// sha256 of the plan file now.
    pub plan_sha256: String,
    /// sha256 the migration was registered or last acted with.
    pub recorded_sha256: String,
    /// The file differs from the last acted-on version.
    pub plan_changed: bool,
    /// The five phases.
    pub phases: Vec<PhaseStatus>,
    /// The last applied phase.
    pub current_phase: Option<Phase>,
    /// The phase `advance` would apply.
    pub next_phase: Option<Phase>,
    /// The gate of the next phase, evaluated now.
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
    pub flag: Option<Flag>,
    /// Backfill progress.
    pub backfill: Option<BackfillView>,
}

/// Gathers the status of `plan` (registering the migration on first use).
pub async fn status(client: &mut Client, plan: &Plan) -> Result<Status, EngineError> {
    let actor = Actor::current(&*client).await?;
    state::ensure_registered(client, plan, &actor).await?;
    let client: &Client = client;
    let st = state::load(client, plan.id()).await?;
    let sha = plan.sha256();
    let next_phase = st.next_phase();
    let gate = match next_phase {
        Some(p) => Some(evaluate_gate(client, plan, &st, p).await?),
        None => None,
    };
    let in_flight = st
        .phases
        .iter()
        .any(|r| matches!(r.state, PhaseState::Applying | PhaseState::RollingBack));
    let holder = if in_flight {
        state::lock_holder(client, plan.id()).await?
    } else {
        None
    };
    let phases = st
        .phases
        .iter()
        .map(|r| PhaseStatus {
            note: in_flight_note(r.state, holder.as_deref()),
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
        .collect();
    let signoffs = client
        .query(
            "SELECT gate, role, login, os_user, host, signed_at, plan_sha256
               FROM cutover.signoffs WHERE plan_id = $1 ORDER BY signed_at",
            &[&plan.id()],
        )
        .await?
        .iter()
        .map(|r| {
            let s: String = r.get(6);
            let valid = s == sha;
            SignoffView {
                gate: r.get(0),
                role: r.get(1),
                login: r.get(2),
                os_user: r.get(3),
                host: r.get(4),
                signed_at: r.get(5),
                plan_sha256: s,
                valid,
                note: (!valid).then(|| "void: plan changed since sign-off".to_string()),
            }
        })
        .collect();
    let overrides = client
        .query(
            &format!(
                "SELECT gate, login, reason, at, plan_sha256, {} FROM cutover.overrides o
                  WHERE plan_id = $1 ORDER BY at",
                super::gate::UNCONSUMED
            ),
            &[&plan.id()],
        )
        .await?
        .iter()
        .map(|r| OverrideView {
            gate: r.get(0),
            login: r.get(1),
            reason: r.get(2),
            at: r.get(3),
            current_plan: r.get::<_, String>(4) == sha,
            in_force: r.get::<_, String>(4) == sha && r.get::<_, bool>(5),
        })
        .collect();
    let partial = partially_applied(client, &st).await?;
    let rollback = rollback_targets(&st, None, partial)
        .ok()
        .and_then(|t| t.first().copied())
        .map(|p| advice(plan, p));
    let flag = match &plan.spec.read_switch {
        Some(rs) => get_flag(client, &rs.flag).await?,
        None => None,
    };
    let backfill = client
        .query_opt(
            "SELECT state, reason, rows_done, rows_estimate, throttled_seconds
               FROM cutover.backfill WHERE plan_id = $1",
            &[&plan.id()],
        )
        .await?
        .map(|r| BackfillView {
            state: r.get(0),
            reason: r.get(1),
            rows_done: r.get(2),
            rows_estimate: r.get(3),
            throttled_seconds: r.get(4),
        });
    let scorecard = scorecard(client, plan, next_phase.unwrap_or(Phase::Contract)).await?;
    Ok(Status {
        plan_id: plan.id().to_string(),
        title: plan.spec.title.clone(),
        environment: plan.spec.environment.clone(),
        plan_path: plan.path.clone(),
        plan_changed: st.plan_sha256 != sha,
        plan_sha256: sha,
        recorded_sha256: st.plan_sha256.clone(),
        phases,
        current_phase: st.last_applied(),
        next_phase,
        gate,
        scorecard,
        signoffs,
        overrides,
        rollback,
        flag,
        backfill,
    })
}

fn in_flight_note(state: PhaseState, holder: Option<&str>) -> Option<String> {
    let verb = match state {
        PhaseState::Applying => "advance",
        PhaseState::RollingBack => "rollback",
        _ => return None,
    };
    Some(match holder {
        Some(h) => format!("in progress: {h} is running it"),
        None => format!(
            "interrupted: no process is running it; its transactional statements did not commit — re-run `{verb}` to resume"
        ),
    })
}

fn advice(plan: &Plan, phase: Phase) -> RollbackAdvice {
    let command = format!("cutover rollback {} --phase {phase} --yes", plan.path);
    if let Some(reason) = irreversible_reason(plan, phase) {
        return RollbackAdvice {
            phase,
            possible: false,
            description: reason,
            command: String::new(),
        };
    }
    let description = match phase {
        Phase::Expand => "run expand's rollback script (removes what expand added); the old app never depended on it".to_string(),
        Phase::DualWrite => "run dual_write's rollback script: writes go to the old shape only".to_string(),
        Phase::Backfill => "stop the backfill and run backfill's rollback script; values already filled stay harmless while reads use the old shape".to_string(),
        Phase::ReadSwitch => match &plan.spec.read_switch {
            Some(rs) => format!("flip flag `{}` OFF (immediate: reads go back to the old shape), then run read_switch's rollback script", rs.flag),
            None => "run read_switch's rollback script".to_string(),
        },
        Phase::Contract => String::new(),
    };
    RollbackAdvice {
        phase,
        possible: true,
        description,
        command,
    }
}
