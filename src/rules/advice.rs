//! Rollback advice: which phases a rollback undoes, whether it can, and exactly what it runs.

use serde::Serialize;

use crate::control::facts::Facts;
use crate::control::phases::{PhaseRow, PhaseState};
use crate::plan::{Phase, Plan};

/// The fastest safe way back from where the migration stands.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct RollbackAdvice {
    /// The phase a plain `rollback` undoes.
    pub phase: Phase,
    /// False for an irreversible phase.
    pub possible: bool,
    /// What it does (or why it is impossible).
    pub description: String,
    /// The command (empty when impossible).
    pub command: String,
    /// Exactly what will run, as SQL (empty when impossible).
    pub sql: String,
}

/// The advice for the phase a plain `rollback` would undo now, if any.
pub fn rollback_advice(plan: &Plan, facts: &Facts) -> Option<RollbackAdvice> {
    let phase = *rollback_targets(&facts.phases, None, facts.partially_applied)
        .ok()?
        .first()?;
    Some(advice_for(plan, phase))
}

/// The advice for rolling back `phase`.
pub fn advice_for(plan: &Plan, phase: Phase) -> RollbackAdvice {
    if let Some(reason) = irreversible_reason(plan, phase) {
        return RollbackAdvice {
            phase,
            possible: false,
            description: reason,
            command: String::new(),
            sql: String::new(),
        };
    }
    let script = plan
        .phase(phase)
        .rollback
        .as_deref()
        .unwrap_or_default()
        .trim()
        .to_string();
    let with_script = |first: String| {
        if script.is_empty() {
            first
        } else {
            format!("{first}\n{script}")
        }
    };
    let (description, sql) = match phase {
        Phase::Expand => (
            "run expand's rollback script (removes what expand added); the old app never depended on it".to_string(),
            script.clone(),
        ),
        Phase::DualWrite => (
            "run dual_write's rollback script: writes go to the old shape only".to_string(),
            script.clone(),
        ),
        Phase::Backfill => (
            "stop the backfill at its checkpoint and run backfill's rollback script; values already filled stay harmless while reads use the old shape".to_string(),
            with_script(format!(
                "UPDATE cutover.backfill SET state = 'stopped' WHERE plan_id = '{}';",
                plan.id()
            )),
        ),
        Phase::ReadSwitch => match &plan.spec.read_switch {
            Some(rs) => (
                format!("flip flag `{}` OFF (immediate: reads go back to the old shape), then run read_switch's rollback script", rs.flag),
                with_script(format!(
                    "UPDATE cutover.flags SET enabled = false WHERE name = '{}';",
                    rs.flag
                )),
            ),
            None => ("run read_switch's rollback script".to_string(), script.clone()),
        },
        Phase::Contract => ("run contract's rollback script".to_string(), script.clone()),
    };
    RollbackAdvice {
        phase,
        possible: true,
        description,
        command: format!("cutover rollback {} --phase {phase} --yes", plan.path),
        sql: if sql.is_empty() {
            "-- nothing to run: the phase has no rollback SQL".to_string()
        } else {
            sql
        },
    }
}

/// Why a phase cannot be rolled back, if it cannot.
pub fn irreversible_reason(plan: &Plan, phase: Phase) -> Option<String> {
    let spec = plan.phase(phase);
    if spec.irreversible {
        let what = if spec.description.is_empty() {
            String::new()
        } else {
            format!(" ({})", spec.description.trim_end_matches('.'))
        };
        return Some(format!(
            "{phase} is marked irreversible in the plan{what}: it removes the old shape and its data, \
             so there is nothing to roll back to — recovery means restoring from a backup"
        ));
    }
    if spec.rollback.is_none() {
        return Some(format!("{phase} has no rollback script in the plan"));
    }
    None
}

/// The phases a rollback would undo, in order, or a no-op message. `partial` is a failed phase
/// whose apply committed some statements (see [`Facts::partially_applied`]): it is undone first.
pub fn rollback_targets(
    phases: &[PhaseRow],
    phase: Option<Phase>,
    partial: Option<Phase>,
) -> Result<Vec<Phase>, String> {
    let undoable = |s: PhaseState| matches!(s, PhaseState::Applied | PhaseState::RollingBack);
    match phase {
        None => {
            if let Some(p) = phases.iter().find(|p| p.state == PhaseState::RollingBack) {
                return Ok(vec![p.phase]);
            }
            partial
                .or(phases
                    .iter()
                    .rev()
                    .find(|p| p.state == PhaseState::Applied)
                    .map(|p| p.phase))
                .map(|p| vec![p])
                .ok_or_else(|| "nothing to roll back: no phase is applied".to_string())
        }
        Some(p) => {
            let state = phases
                .iter()
                .find(|r| r.phase == p)
                .map_or(PhaseState::Pending, |r| r.state);
            if !undoable(state) && partial != Some(p) {
                return Err(format!(
                    "nothing to roll back: {p} is {state} (not applied)"
                ));
            }
            Ok(phases
                .iter()
                .rev()
                .filter(|r| r.phase >= p && (undoable(r.state) || partial == Some(r.phase)))
                .map(|r| r.phase)
                .collect())
        }
    }
}
