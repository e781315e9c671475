//! Rolling back: the current phase, or several applied phases in reverse order. Each phase's
//! rollback script runs through the same lock-safe runner and commits with its state change and
//! audit entry. The read switch flips its flag OFF first, in its own transaction, so reads move
//! back at once; rolling back the backfill phase stops the backfill. Irreversible phases refuse.
//! What runs is the [`RollbackPlan`] the rules derive from the facts: the confirmation box and
//! `rollback --dry-run` show that same value.

use serde::Serialize;
use serde_json::json;
use tokio_postgres::{Client, GenericClient};

use super::apply::{record_failure, run_script, start, Completion};
use super::ddl::{Blocker, Direction, LockPolicy, Runner};
use super::{EngineError, EngineEvent, RunOptions};
use crate::control::audit::{self, Actor, AuditAction, NewEntry};
use crate::control::facts::Facts;
use crate::control::phases::{self as state, PhaseState, PlanLock};
use crate::control::Refusal;
use crate::plan::{Phase, Plan};
use crate::rules::{rollback_plan, NoRollback, RollbackPlan, RollbackStep};
use crate::sql::Statement;

/// One phase rolled back.
#[derive(Debug, Clone, Serialize)]
pub struct PhaseRolledBack {
    /// Which.
    pub phase: Phase,
    /// Audit entry of the transition.
    pub audit_seq: i64,
    /// Wall time, ms.
    pub duration_ms: u64,
    /// Attempts of the last transaction.
    pub attempts: u32,
    /// Sessions seen blocking.
    pub blockers: Vec<Blocker>,
}

/// The result of [`rollback`].
#[derive(Debug, Clone, Serialize)]
pub struct RollbackOutcome {
    /// Phases rolled back, in the order it happened.
    pub rolled_back: Vec<PhaseRolledBack>,
    /// False for a no-op.
    pub changed: bool,
    /// One line for the operator.
    pub message: String,
    /// The plan that ran (`None` for a no-op).
    pub plan: Option<RollbackPlan>,
}

/// What [`rollback`] would run now, read without changing anything: `Err` says why nothing
/// would (no phase applied, or an irreversible one). A database where nothing has run yet
/// has nothing to roll back.
pub async fn plan_rollback(
    client: &impl GenericClient,
    plan: &Plan,
    phase: Option<Phase>,
) -> Result<Result<RollbackPlan, NoRollback>, EngineError> {
    let facts = Facts::read(client, plan.id()).await?;
    Ok(rollback_plan(plan, &facts, phase))
}

/// Rolls back the current phase (`phase = None`) or every applied phase from the last down to
/// `phase`, running exactly the steps of [`rollback_plan`]. Refuses, before touching anything,
/// when a phase it would undo is irreversible.
pub async fn rollback(
    client: &mut Client,
    plan: &Plan,
    actor: &Actor,
    phase: Option<Phase>,
    opts: &RunOptions,
) -> Result<RollbackOutcome, EngineError> {
    run(client, plan, actor, phase, None, opts).await
}

/// Runs `confirmed`, the plan an operator saw and confirmed; refuses when the rollback would
/// now run anything else (another session acted meanwhile).
pub async fn rollback_confirmed(
    client: &mut Client,
    plan: &Plan,
    actor: &Actor,
    confirmed: &RollbackPlan,
    opts: &RunOptions,
) -> Result<RollbackOutcome, EngineError> {
    let phase = confirmed.phases.last().copied();
    run(client, plan, actor, phase, Some(confirmed), opts).await
}

async fn run(
    client: &mut Client,
    plan: &Plan,
    actor: &Actor,
    phase: Option<Phase>,
    confirmed: Option<&RollbackPlan>,
    opts: &RunOptions,
) -> Result<RollbackOutcome, EngineError> {
    crate::control::anchors::authorize(&*client, plan, actor, crate::plan::Action::Rollback)
        .await?;
    if let Some(reason) = phase.and_then(|p| crate::rules::irreversible_reason(plan, p)) {
        return Err(EngineError::Refused(Refusal::Irreversible(reason)));
    }
    state::ensure_registered(client, plan, actor).await?;
    let facts = Facts::load(&*client, plan.id()).await?;
    let steps = match rollback_plan(plan, &facts, phase) {
        Ok(p) => p,
        Err(NoRollback::Irreversible(reason)) => {
            return Err(EngineError::Refused(Refusal::Irreversible(reason)))
        }
        Err(NoRollback::Nothing(message)) => {
            return Ok(RollbackOutcome {
                rolled_back: Vec::new(),
                changed: false,
                message,
                plan: None,
            })
        }
    };
    if confirmed.is_some_and(|c| *c != steps) {
        return Err(EngineError::Refused(Refusal::OutOfOrder(
            "the rollback changed since it was confirmed (another session acted): nothing was done; look again and confirm the new one".into(),
        )));
    }
    if let Some(RollbackStep::FlagOff { flag }) = steps.steps.first() {
        // Reads go back at once, even if another process holds the plan's action lock.
        flip_flag_off(client, plan, actor, flag).await?;
    }
    let lock = PlanLock::acquire(client, plan.id()).await?;
    let mut done = Vec::new();
    let mut failure = None;
    for target in &steps.phases {
        let previous = facts.state(*target);
        match rollback_one(client, plan, actor, &steps, *target, previous, opts).await {
            Ok(r) => done.push(r),
            Err(e) => {
                failure = Some(e);
                break;
            }
        }
    }
    lock.release(client).await?;
    if plan.spec.is_cdc() && done.iter().any(|r| r.phase == Phase::DualWrite) {
        crate::cdc::drop(client, plan.id()).await?;
    }
    if let Some(e) = failure {
        return Err(e);
    }
    let names: Vec<&str> = done.iter().map(|d| d.phase.as_str()).collect();
    Ok(RollbackOutcome {
        message: format!("rolled back {}", names.join(", then ")),
        rolled_back: done,
        changed: true,
        plan: Some(steps),
    })
}

/// Runs the steps of `phase` in `steps`: its statements, then its finishing transaction.
async fn rollback_one(
    client: &mut Client,
    plan: &Plan,
    actor: &Actor,
    steps: &RollbackPlan,
    phase: Phase,
    previous: PhaseState,
    opts: &RunOptions,
) -> Result<PhaseRolledBack, EngineError> {
    let mut script = Vec::new();
    let mut finish = None;
    for step in steps.steps_of(phase) {
        match step {
            RollbackStep::Sql { sql, offset, .. } => script.push(Statement {
                text: sql.clone(),
                offset: *offset,
            }),
            RollbackStep::FinishPhase {
                flag_off,
                stop_backfill,
                ..
            } => finish = Some((flag_off.is_some(), *stop_backfill)),
            RollbackStep::FlagOff { .. } | RollbackStep::StartPhase { .. } => {}
        }
    }
    let (flag_off, stop_backfill) = finish.unwrap_or_default();
    let resume = start(client, plan, actor, phase, Direction::Rollback).await?;
    opts.emit(EngineEvent::Transition {
        phase,
        state: PhaseState::RollingBack,
    });
    let completion = Completion {
        plan,
        actor,
        phase,
        from: PhaseState::RollingBack,
        to: PhaseState::RolledBack,
        action: AuditAction::PhaseRollback,
        flag: flag_off.then_some(false),
        stop_backfill: stop_backfill
            .then(|| format!("backfill phase rolled back by {}", actor.login)),
    };
    let mut runner = Runner::new(
        client,
        plan,
        LockPolicy::from_plan(plan),
        opts,
        phase,
        Direction::Rollback,
    )
    .await?;
    match run_script(client, &mut runner, &script, &completion, resume).await {
        Ok(run) => {
            opts.emit(EngineEvent::Transition {
                phase,
                state: PhaseState::RolledBack,
            });
            Ok(PhaseRolledBack {
                phase,
                audit_seq: run.seq,
                duration_ms: run.duration_ms,
                attempts: run.attempts,
                blockers: run.blockers,
            })
        }
        Err(e) => {
            record_failure(
                client,
                plan,
                actor,
                phase,
                Direction::Rollback,
                &script,
                previous,
                &e,
            )
            .await?;
            Err(e)
        }
    }
}

/// Turns the read-switch flag OFF at once, before any DDL may wait for locks.
async fn flip_flag_off(
    client: &mut Client,
    plan: &Plan,
    actor: &Actor,
    flag: &str,
) -> Result<(), EngineError> {
    let tx = client.transaction().await?;
    tx.batch_execute("SET LOCAL lock_timeout = 5000").await?;
    if crate::control::flags::turn_off(&tx, flag).await? {
        audit::append(
            &tx,
            NewEntry {
                actor,
                plan_id: plan.id(),
                plan_sha256: &plan.sha256(),
                action: AuditAction::FlagSet,
                phase: Some(Phase::ReadSwitch),
                details: json!({ "flag": flag, "enabled": false, "was": true, "reason": "read_switch rollback" }),
            },
        )
        .await?;
    }
    tx.commit().await?;
    Ok(())
}
