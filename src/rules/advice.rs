//! Rollback advice and the rollback plan: which phases a rollback undoes, whether it can, and
//! every step it runs — one value that the confirmation, `rollback --dry-run` and the engine share.

use serde::Serialize;

use crate::control::facts::Facts;
use crate::control::phases::{PhaseRow, PhaseState};
use crate::plan::{Phase, Plan};

/// One step of a rollback, in the order the engine takes it. SQL steps hold the exact text the
/// engine sends; the others change Cutover's control state.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum RollbackStep {
    /// Turn the read-switch flag OFF in a transaction of its own (audited when it was ON), before
    /// any statement may wait for a lock: reads move back at once.
    FlagOff {
        /// The flag.
        flag: String,
    },
    /// Move `phase` to `rolling_back` (audited). On `resume`, statements an interrupted run
    /// completed are skipped.
    StartPhase {
        /// The phase.
        phase: Phase,
        /// An interrupted rollback of this phase continues.
        resume: bool,
    },
    /// One statement of `phase`'s rollback script.
    Sql {
        /// The phase.
        phase: Phase,
        /// 0-based index in the script.
        index: usize,
        /// Byte offset in the script.
        offset: usize,
        /// Exactly what is sent to the server.
        sql: String,
        /// Runs outside a transaction (`DROP INDEX CONCURRENTLY`, …).
        own_transaction: bool,
    },
    /// In the transaction of the phase's last statement: set `flag_off` OFF, stop the backfill
    /// at its checkpoint when `stop_backfill`, and record `phase` as `rolled_back` (audited).
    FinishPhase {
        /// The phase.
        phase: Phase,
        /// The read-switch flag turned OFF again with the state change.
        flag_off: Option<String>,
        /// The backfill is stopped.
        stop_backfill: bool,
    },
}

impl RollbackStep {
    /// The phase a step belongs to (`None` for the up-front flag switch).
    pub fn phase(&self) -> Option<Phase> {
        match self {
            RollbackStep::FlagOff { .. } => None,
            RollbackStep::StartPhase { phase, .. }
            | RollbackStep::Sql { phase, .. }
            | RollbackStep::FinishPhase { phase, .. } => Some(*phase),
        }
    }
}

impl std::fmt::Display for RollbackStep {
    /// SQL as it is sent; control steps as an SQL comment saying what changes.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            RollbackStep::FlagOff { flag } => {
                write!(
                    f,
                    "-- flag {flag} OFF now, in its own transaction (audited)"
                )
            }
            RollbackStep::StartPhase { phase, resume } => {
                let resume = if *resume {
                    " (resuming: completed statements are skipped)"
                } else {
                    ""
                };
                write!(f, "-- {phase}: state rolling_back (audited){resume}")
            }
            RollbackStep::Sql { sql, .. } => write!(f, "{sql};"),
            RollbackStep::FinishPhase {
                phase,
                flag_off,
                stop_backfill,
            } => {
                write!(f, "-- {phase}, in the last statement's commit: ")?;
                if let Some(flag) = flag_off {
                    write!(f, "flag {flag} OFF, ")?;
                }
                if *stop_backfill {
                    write!(f, "backfill stopped, ")?;
                }
                write!(f, "state rolled_back (audited)")
            }
        }
    }
}

/// Everything a rollback does, in order: what the confirmation shows, what `rollback --dry-run`
/// prints and what the engine executes.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct RollbackPlan {
    /// The phases rolled back, in order.
    pub phases: Vec<Phase>,
    /// The steps.
    pub steps: Vec<RollbackStep>,
}

impl RollbackPlan {
    /// The SQL statements, in the order they run.
    pub fn statements(&self) -> impl Iterator<Item = &str> {
        self.steps.iter().filter_map(|s| match s {
            RollbackStep::Sql { sql, .. } => Some(sql.as_str()),
            _ => None,
        })
    }

    /// The steps of `phase`, in order.
    pub fn steps_of(&self, phase: Phase) -> impl Iterator<Item = &RollbackStep> {
        self.steps.iter().filter(move |s| s.phase() == Some(phase))
    }
}

/// Why there is no rollback to run.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum NoRollback {
    /// Nothing is applied (a no-op, not an error).
    Nothing(String),
    /// A phase it would undo is irreversible.
    Irreversible(String),
}

/// The rollback of the current phase (`phase = None`) or of every applied phase from the last
/// down to `phase`, as the engine will run it on `facts`.
pub fn rollback_plan(
    plan: &Plan,
    facts: &Facts,
    phase: Option<Phase>,
) -> Result<RollbackPlan, NoRollback> {
    if let Some(reason) = phase.and_then(|p| irreversible_reason(plan, p)) {
        return Err(NoRollback::Irreversible(reason));
    }
    let targets = rollback_targets(&facts.phases, phase, facts.partially_applied)
        .map_err(NoRollback::Nothing)?;
    if let Some(reason) = targets.iter().find_map(|p| irreversible_reason(plan, *p)) {
        return Err(NoRollback::Irreversible(reason));
    }
    let flag = plan.spec.read_switch.as_ref().map(|rs| rs.flag.clone());
    let mut steps = Vec::new();
    if let (true, Some(flag)) = (targets.contains(&Phase::ReadSwitch), &flag) {
        steps.push(RollbackStep::FlagOff { flag: flag.clone() });
    }
    for &target in &targets {
        steps.push(RollbackStep::StartPhase {
            phase: target,
            resume: facts.state(target) == PhaseState::RollingBack,
        });
        let script = plan.phase(target).rollback.as_deref().unwrap_or_default();
        steps.extend(
            crate::sql::split_statements(script)
                .into_iter()
                .enumerate()
                .map(|(index, stmt)| RollbackStep::Sql {
                    phase: target,
                    index,
                    offset: stmt.offset,
                    own_transaction: stmt.needs_own_transaction(),
                    sql: stmt.text,
                }),
        );
        steps.push(RollbackStep::FinishPhase {
            phase: target,
            flag_off: flag.clone().filter(|_| target == Phase::ReadSwitch),
            stop_backfill: target == Phase::Backfill,
        });
    }
    Ok(RollbackPlan {
        phases: targets,
        steps,
    })
}

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
    /// Exactly what `command` runs (no steps when impossible).
    pub plan: RollbackPlan,
}

/// The advice for the phase a plain `rollback` would undo now, if any.
pub fn rollback_advice(plan: &Plan, facts: &Facts) -> Option<RollbackAdvice> {
    let phase = *rollback_targets(&facts.phases, None, facts.partially_applied)
        .ok()?
        .first()?;
    let (possible, description, steps) = match rollback_plan(plan, facts, Some(phase)) {
        Ok(p) => (true, describe(plan, phase), p),
        Err(NoRollback::Irreversible(why) | NoRollback::Nothing(why)) => (
            false,
            why,
            RollbackPlan {
                phases: Vec::new(),
                steps: Vec::new(),
            },
        ),
    };
    Some(RollbackAdvice {
        phase,
        possible,
        description,
        command: if possible {
            format!("cutover rollback {} --phase {phase} --yes", plan.path)
        } else {
            String::new()
        },
        plan: steps,
    })
}

/// What rolling back `phase` does, in a sentence.
fn describe(plan: &Plan, phase: Phase) -> String {
    match phase {
        Phase::Expand => "run expand's rollback script (removes what expand added); the old app never depended on it".to_string(),
        Phase::DualWrite => "run dual_write's rollback script: writes go to the old shape only".to_string(),
        Phase::Backfill => "stop the backfill at its checkpoint and run backfill's rollback script; values already filled stay harmless while reads use the old shape".to_string(),
        Phase::ReadSwitch => match &plan.spec.read_switch {
            Some(rs) => format!("flip flag `{}` OFF (immediate: reads go back to the old shape), then run read_switch's rollback script", rs.flag),
            None => "run read_switch's rollback script".to_string(),
        },
        Phase::Contract => "run contract's rollback script".to_string(),
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
