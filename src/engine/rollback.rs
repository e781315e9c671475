//! Rolling back: the current phase, or several applied phases in reverse order. Each phase's
//! rollback script runs through the same lock-safe runner and commits with its state change and
//! audit entry. The read switch flips its flag OFF first, in its own transaction, so reads move
//! back at once; rolling back the backfill phase stops the backfill. Irreversible phases refuse.

use serde::Serialize;
use serde_json::json;
use tokio_postgres::Client;

use super::apply::{record_failure, run_script, start, Completion};
use super::ddl::{Blocker, Direction, LockPolicy, Runner};
use super::{EngineError, EngineEvent, RunOptions};
use crate::control::audit::{self, Actor, AuditAction, NewEntry};
use crate::control::facts::Facts;
use crate::control::phases::{self as state, PhaseState, PlanLock};
use crate::control::Refusal;
use crate::plan::{Phase, Plan};
use crate::rules::{irreversible_reason, rollback_targets};

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
}

/// Rolls back the current phase (`phase = None`) or every applied phase from the last down to
/// `phase`. Refuses, before touching anything, when one of them is irreversible.
pub async fn rollback(
    client: &mut Client,
    plan: &Plan,
    actor: &Actor,
    phase: Option<Phase>,
    opts: &RunOptions,
) -> Result<RollbackOutcome, EngineError> {
    crate::control::anchors::authorize(&*client, plan, actor, crate::plan::Action::Rollback)
        .await?;
    if let Some(reason) = phase.and_then(|p| irreversible_reason(plan, p)) {
        return Err(EngineError::Refused(Refusal::Irreversible(reason)));
    }
    state::ensure_registered(client, plan, actor).await?;
    let st = state::load(client, plan.id()).await?;
    let partial = Facts::load(&*client, plan.id()).await?.partially_applied;
    let targets = match rollback_targets(&st.phases, phase, partial) {
        Ok(t) => t,
        Err(message) => {
            return Ok(RollbackOutcome {
                rolled_back: Vec::new(),
                changed: false,
                message,
            })
        }
    };
    if let Some(reason) = targets.iter().find_map(|p| irreversible_reason(plan, *p)) {
        return Err(EngineError::Refused(Refusal::Irreversible(reason)));
    }
    if targets.contains(&Phase::ReadSwitch) {
        // Reads go back at once, even if another process holds the plan's action lock.
        flip_read_switch_off(client, plan, actor).await?;
    }
    let lock = PlanLock::acquire(client, plan.id()).await?;
    let mut done = Vec::new();
    let mut failure = None;
    for target in &targets {
        let previous = st.phase(*target).state;
        match rollback_one(client, plan, actor, *target, previous, opts).await {
            Ok(r) => done.push(r),
            Err(e) => {
                failure = Some(e);
                break;
            }
        }
    }
    lock.release(client).await?;
    if let Some(e) = failure {
        return Err(e);
    }
    let names: Vec<&str> = done.iter().map(|d| d.phase.as_str()).collect();
    Ok(RollbackOutcome {
        message: format!("rolled back {}", names.join(", then ")),
        rolled_back: done,
        changed: true,
    })
}

async fn rollback_one(
    client: &mut Client,
    plan: &Plan,
    actor: &Actor,
    phase: Phase,
    previous: PhaseState,
    opts: &RunOptions,
) -> Result<PhaseRolledBack, EngineError> {
    let resume = start(client, plan, actor, phase, Direction::Rollback).await?;
    opts.emit(EngineEvent::Transition {
        phase,
        state: PhaseState::RollingBack,
    });
    let script = plan.phase(phase).rollback.clone().unwrap_or_default();
    let completion = Completion {
        plan,
        actor,
        phase,
        from: PhaseState::RollingBack,
        to: PhaseState::RolledBack,
        action: AuditAction::PhaseRollback,
        flag: (phase == Phase::ReadSwitch).then_some(false),
        stop_backfill: (phase == Phase::Backfill)
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
async fn flip_read_switch_off(
    client: &mut Client,
    plan: &Plan,
    actor: &Actor,
) -> Result<(), EngineError> {
    let Some(rs) = &plan.spec.read_switch else {
        return Ok(());
    };
    let tx = client.transaction().await?;
    tx.batch_execute("SET LOCAL lock_timeout = 5000").await?;
    if crate::control::flags::turn_off(&tx, &rs.flag).await? {
        audit::append(
            &tx,
            NewEntry {
                actor,
                plan_id: plan.id(),
                plan_sha256: &plan.sha256(),
                action: AuditAction::FlagSet,
                phase: Some(Phase::ReadSwitch),
                details: json!({ "flag": rs.flag, "enabled": false, "was": true, "reason": "read_switch rollback" }),
            },
        )
        .await?;
    }
    tx.commit().await?;
    Ok(())
}
