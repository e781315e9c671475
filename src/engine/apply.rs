//! Applying a phase, and the script executor shared with rollback: transactional segments commit
//! together with the phase's state change; statements that need their own transaction are tracked
//! one by one so an interrupted phase resumes correctly.

use std::collections::HashSet;
use std::time::Instant;

use serde::Serialize;
use serde_json::{json, Value};
use tokio_postgres::{Client, Transaction};

use super::ddl::{self, AttemptError, Backoff, Blocker, Direction, LockPolicy, Runner};
use super::gate::evaluate_gate;
use super::{EngineError, EngineEvent, RunOptions};
use crate::control::audit::{Actor, AuditAction};
use crate::control::phases::{self as state, PhaseState, PlanLock, Transition};
use crate::control::statements::{self, StatementState};
use crate::control::Refusal;
use crate::db::txmark::TxMark;
use crate::plan::{Phase, Plan};
use crate::rules::GateEvaluation;
use crate::sql::{self, Statement};

/// The result of [`advance`] / [`apply_phase`].
#[derive(Debug, Clone, Serialize)]
pub struct Applied {
    /// The phase concerned (`None` when every phase was already applied).
    pub phase: Option<Phase>,
    /// False for a no-op (already applied).
    pub changed: bool,
    /// One line for the operator.
    pub message: String,
    /// The audit entry of the transition.
    pub audit_seq: Option<i64>,
    /// Attempts of the last transaction (more than 1 after lock timeouts).
    pub attempts: u32,
    /// Sessions seen blocking a statement.
    pub blockers: Vec<Blocker>,
    /// Wall time of the apply, ms.
    pub duration_ms: u64,
    /// The gate evaluation that allowed it.
    pub gate: Option<GateEvaluation>,
}

/// Applies the next phase if its gate passes. Every phase applied already is a reported no-op;
/// a blocked gate is [`EngineError::Blocked`] with every blocker listed.
pub async fn advance(
    client: &mut Client,
    plan: &Plan,
    actor: &Actor,
    opts: &RunOptions,
) -> Result<Applied, EngineError> {
    state::ensure_registered(client, plan, actor).await?;
    let st = state::load(client, plan.id()).await?;
    match st.next_phase() {
        Some(next) => apply_phase(client, plan, actor, next, opts).await,
        None => Ok(Applied {
            phase: None,
            changed: false,
            message: format!(
                "nothing to do: all five phases of `{}` are applied",
                plan.id()
            ),
            audit_seq: None,
            attempts: 0,
            blockers: Vec::new(),
            duration_ms: 0,
            gate: None,
        }),
    }
}

/// Applies `phase` (which must be the next one) if its gate passes; a no-op when it is applied.
pub async fn apply_phase(
    client: &mut Client,
    plan: &Plan,
    actor: &Actor,
    phase: Phase,
    opts: &RunOptions,
) -> Result<Applied, EngineError> {
    crate::control::anchors::authorize(&*client, plan, actor, crate::plan::Action::Advance).await?;
    state::ensure_registered(client, plan, actor).await?;
    let st = state::load(client, plan.id()).await?;
    let row = st.phase(phase);
    if row.state == PhaseState::Applied {
        let at = row.finished_at.map(|t| t.to_rfc3339()).unwrap_or_default();
        return Ok(Applied {
            phase: Some(phase),
            changed: false,
            message: format!("{phase} is already applied (since {at}); nothing changed"),
            audit_seq: None,
            attempts: 0,
            blockers: Vec::new(),
            duration_ms: 0,
            gate: None,
        });
    }
    if let Some(next) = st.next_phase().filter(|n| *n != phase) {
        return Err(EngineError::Refused(Refusal::OutOfOrder(format!(
            "cannot apply {phase}: phases are applied in order and {next} is not applied yet"
        ))));
    }
    let gate = evaluate_gate(client, plan, phase).await?;
    if !gate.passed {
        // Another operator may have applied it meanwhile (and used the override).
        let now = state::load(client, plan.id()).await?;
        if now.phase(phase).state == PhaseState::Applied {
            return Ok(Applied {
                phase: Some(phase),
                changed: false,
                message: format!("{phase} was just applied by another session; nothing changed"),
                audit_seq: None,
                attempts: 0,
                blockers: Vec::new(),
                duration_ms: 0,
                gate: None,
            });
        }
        return Err(EngineError::Blocked(Box::new(gate)));
    }
    let lock = PlanLock::acquire(client, plan.id()).await?;
    let result = apply_locked(client, plan, actor, phase, opts).await;
    lock.release(client).await?;
    let (seq, run) = result?;
    if phase == Phase::Contract && plan.spec.is_cdc() {
        crate::cdc::drop(client, plan.id()).await?;
    }
    Ok(Applied {
        phase: Some(phase),
        changed: true,
        message: format!(
            "{phase} applied in {} ms ({} attempt{})",
            run.duration_ms,
            run.attempts,
            if run.attempts == 1 { "" } else { "s" }
        ),
        audit_seq: Some(seq),
        attempts: run.attempts,
        blockers: run.blockers,
        duration_ms: run.duration_ms,
        gate: Some(gate),
    })
}

async fn apply_locked(
    client: &mut Client,
    plan: &Plan,
    actor: &Actor,
    phase: Phase,
    opts: &RunOptions,
) -> Result<(i64, ScriptRun), EngineError> {
    crate::checks::before_phase(client, plan, phase)
        .await
        .map_err(|e| EngineError::Hook {
            phase,
            message: format!("{e:#}"),
        })?;
    crate::evidence::before_phase(client, plan, phase)
        .await
        .map_err(|e| EngineError::Hook {
            phase,
            message: format!("{e:#}"),
        })?;
    let resume = start(client, plan, actor, phase, Direction::Apply).await?;
    opts.emit(EngineEvent::Transition {
        phase,
        state: PhaseState::Applying,
    });
    let script = &sql::split_statements(&plan.phase(phase).apply);
    let completion = Completion {
        plan,
        actor,
        phase,
        from: PhaseState::Applying,
        to: PhaseState::Applied,
        action: AuditAction::PhaseApply,
        flag: (phase == Phase::ReadSwitch).then_some(true),
        stop_backfill: None,
    };
    let mut runner = Runner::new(
        client,
        plan,
        LockPolicy::from_plan(plan),
        opts,
        phase,
        Direction::Apply,
    )
    .await?;
    match run_script(client, &mut runner, script, &completion, resume).await {
        Ok(run) => {
            opts.emit(EngineEvent::Transition {
                phase,
                state: PhaseState::Applied,
            });
            Ok((run.seq, run))
        }
        Err(e) => {
            record_failure(
                client,
                plan,
                actor,
                phase,
                Direction::Apply,
                script,
                PhaseState::Failed,
                &e,
            )
            .await?;
            Err(e)
        }
    }
}

/// Moves the phase into `applying` / `rolling_back` (audited) and tells whether an interrupted
/// run of the same direction is being resumed.
pub(crate) async fn start(
    client: &mut Client,
    plan: &Plan,
    actor: &Actor,
    phase: Phase,
    direction: Direction,
) -> Result<bool, EngineError> {
    let tx = client.transaction().await?;
    let from = state::lock_phase(&tx, plan.id(), phase).await?;
    // Re-check under the row lock: another operator may have acted since the gate was read.
    let startable = match direction {
        Direction::Apply => !matches!(from, PhaseState::Applied | PhaseState::RollingBack),
        Direction::Rollback => matches!(
            from,
            PhaseState::Applied | PhaseState::RollingBack | PhaseState::Failed
        ),
    };
    if !startable {
        return Err(EngineError::Refused(Refusal::OutOfOrder(format!(
            "{phase} changed meanwhile: it is now {from}; look at `cutover status` and try again"
        ))));
    }
    if let (Direction::Apply, Some(prev)) = (direction, phase.prev()) {
        let prev_state = state::lock_phase(&tx, plan.id(), prev).await?;
        if prev_state != PhaseState::Applied {
            return Err(EngineError::Refused(Refusal::OutOfOrder(format!(
                "{prev} changed meanwhile (it is now {prev_state}); {phase} needs it applied"
            ))));
        }
    }
    let (to, action, resume) = match direction {
        Direction::Apply => (
            PhaseState::Applying,
            AuditAction::PhaseApplyStart,
            matches!(from, PhaseState::Applying | PhaseState::Failed),
        ),
        Direction::Rollback => (
            PhaseState::RollingBack,
            AuditAction::PhaseRollbackStart,
            from == PhaseState::RollingBack,
        ),
    };
    if !resume {
        statements::clear(&tx, plan.id(), phase, direction).await?;
    }
    state::record(
        &tx,
        Transition {
            plan,
            actor,
            phase,
            from,
            to,
            action,
            error: None,
            details: if resume {
                json!({ "resume": true })
            } else {
                json!({})
            },
        },
    )
    .await?;
    tx.commit().await?;
    Ok(resume)
}

/// Records a failed apply or rollback. A transactional script that failed changed nothing, so a
/// failed rollback leaves the phase as it was (`applied`, or `failed` for a partly applied
/// phase); a script with tracked statements may have done part of its work: `failed`.
#[allow(clippy::too_many_arguments)]
pub(crate) async fn record_failure(
    client: &mut Client,
    plan: &Plan,
    actor: &Actor,
    phase: Phase,
    direction: Direction,
    script: &[Statement],
    previous: PhaseState,
    error: &EngineError,
) -> Result<(), EngineError> {
    let tracked = segments(script)
        .iter()
        .any(|s| matches!(s, Segment::Own(..)));
    let (from, to, action) = match direction {
        Direction::Apply => (
            PhaseState::Applying,
            PhaseState::Failed,
            AuditAction::PhaseApplyFailed,
        ),
        Direction::Rollback => (
            PhaseState::RollingBack,
            if tracked || previous == PhaseState::Failed {
                PhaseState::Failed
            } else {
                PhaseState::Applied
            },
            AuditAction::PhaseRollbackFailed,
        ),
    };
    let tx = client.transaction().await?;
    state::record(
        &tx,
        Transition {
            plan,
            actor,
            phase,
            from,
            to,
            action,
            error: Some(error.to_string()),
            details: json!({}),
        },
    )
    .await?;
    tx.commit().await?;
    Ok(())
}

/// A run of consecutive transactional statements, or one statement that needs its own.
#[derive(Debug, Clone)]
pub(crate) enum Segment {
    /// Run together in one transaction.
    Tx(Vec<(usize, Statement)>),
    /// `CREATE INDEX CONCURRENTLY` and friends.
    Own(usize, Statement),
}

/// Groups a script's statements into segments, keeping statement indexes.
pub(crate) fn segments(script: &[Statement]) -> Vec<Segment> {
    let mut out: Vec<Segment> = Vec::new();
    for (i, stmt) in script.iter().cloned().enumerate() {
        if stmt.needs_own_transaction() {
            out.push(Segment::Own(i, stmt));
        } else if let Some(Segment::Tx(run)) = out.last_mut() {
            run.push((i, stmt));
        } else {
            out.push(Segment::Tx(vec![(i, stmt)]));
        }
    }
    out
}

/// What to record in the last transaction of a script.
pub(crate) struct Completion<'a> {
    pub(crate) plan: &'a Plan,
    pub(crate) actor: &'a Actor,
    pub(crate) phase: Phase,
    pub(crate) from: PhaseState,
    pub(crate) to: PhaseState,
    pub(crate) action: AuditAction,
    /// Set the plan's read-switch flag to this value.
    pub(crate) flag: Option<bool>,
    /// Stop the backfill with this reason.
    pub(crate) stop_backfill: Option<String>,
}

/// Timings of a script run.
#[derive(Debug, Clone)]
pub(crate) struct ScriptRun {
    pub(crate) seq: i64,
    pub(crate) attempts: u32,
    pub(crate) blockers: Vec<Blocker>,
    pub(crate) duration_ms: u64,
}

/// Runs a script's statements and records the completion in its last transaction.
pub(crate) async fn run_script(
    client: &mut Client,
    runner: &mut Runner<'_>,
    script: &[Statement],
    completion: &Completion<'_>,
    resume: bool,
) -> Result<ScriptRun, EngineError> {
    let started = Instant::now();
    let segs = segments(script);
    let tracked = segs.iter().any(|s| matches!(s, Segment::Own(..)));
    let progress = if tracked && resume {
        load_progress(client, completion, runner.direction).await?
    } else {
        Progress::default()
    };
    let mut attempts = 0;
    let mut seq = None;
    let last = segs.len().checked_sub(1);
    for (k, seg) in segs.iter().enumerate() {
        match seg {
            Segment::Tx(stmts) => {
                let pending: Vec<(usize, Statement)> = stmts
                    .iter()
                    .filter(|(i, s)| !progress.is_done(*i, s))
                    .cloned()
                    .collect();
                let is_last = Some(k) == last;
                if pending.is_empty() && !is_last {
                    continue;
                }
                let finish = is_last.then_some(completion);
                let (s, a) = run_tx(client, runner, &pending, finish, tracked).await?;
                seq = s.or(seq);
                attempts = a;
            }
            Segment::Own(i, stmt) => {
                if progress.is_done(*i, stmt) {
                    continue;
                }
                let was_running = progress.running.contains(i);
                attempts = run_own(client, runner, *i, stmt, completion, was_running).await?;
            }
        }
    }
    if !matches!(segs.last(), Some(Segment::Tx(_))) {
        let (s, a) = run_tx(client, runner, &[], Some(completion), tracked).await?;
        seq = s;
        attempts = attempts.max(a);
    }
    let seq = seq.ok_or_else(|| {
        EngineError::Db(crate::db::DbError::Query(
            "internal: the phase transition was not recorded".into(),
        ))
    })?;
    Ok(ScriptRun {
        seq,
        attempts,
        blockers: runner.blockers.clone(),
        duration_ms: u64::try_from(started.elapsed().as_millis()).unwrap_or(u64::MAX),
    })
}

async fn run_tx(
    client: &mut Client,
    runner: &mut Runner<'_>,
    stmts: &[(usize, Statement)],
    finish: Option<&Completion<'_>>,
    tracked: bool,
) -> Result<(Option<i64>, u32), EngineError> {
    let mut backoff = Backoff::new(runner.policy);
    loop {
        let attempt = backoff.start_attempt();
        let result: Result<Option<i64>, AttemptError> = async {
            let tx = runner.begin(client).await?;
            let own = TxMark::take(&tx).await?;
            for (i, stmt) in stmts {
                runner.exec(&tx, *i, stmt, attempt).await?;
                runner.verify_transaction(&tx, &own, *i, stmt).await?;
                if tracked {
                    mark(&tx, runner, *i, stmt, StatementState::Done, attempt).await?;
                }
            }
            let seq = match finish {
                Some(c) => Some(complete(&tx, c, attempt, &runner.blockers).await?),
                None => None,
            };
            tx.commit().await?;
            Ok(seq)
        }
        .await;
        match result {
            Ok(seq) => return Ok((seq, attempt)),
            Err(AttemptError::Lock { loss, .. }) if runner.back_off(&mut backoff, loss).await => {
                continue
            }
            Err(e) => return Err(runner.fail(e, stmts, &backoff)),
        }
    }
}

async fn run_own(
    client: &mut Client,
    runner: &mut Runner<'_>,
    index: usize,
    stmt: &Statement,
    completion: &Completion<'_>,
    was_running: bool,
) -> Result<u32, EngineError> {
    let mut backoff = Backoff::new(runner.policy);
    let one = [(index, stmt.clone())];
    loop {
        let attempt = backoff.start_attempt();
        mark(
            &*client,
            runner,
            index,
            stmt,
            StatementState::Running,
            attempt,
        )
        .await?;
        let result: Result<(), AttemptError> = async {
            let exists = ddl::clean_invalid_index(client, &stmt.text)
                .await
                .map_err(EngineError::from)?;
            if exists == Some(true) && (was_running || attempt > 1) {
                tracing::info!(
                    phase = %completion.phase,
                    "statement {} had completed before the interruption: {}",
                    index + 1,
                    ddl::summary(&stmt.text)
                );
                return Ok(());
            }
            runner.exec_own(client, index, stmt, attempt).await
        }
        .await;
        match result {
            Ok(()) => {
                mark(&*client, runner, index, stmt, StatementState::Done, attempt).await?;
                return Ok(attempt);
            }
            Err(AttemptError::Lock { loss, .. }) if runner.back_off(&mut backoff, loss).await => {
                continue
            }
            Err(e) => return Err(runner.fail(e, &one, &backoff)),
        }
    }
}

async fn mark(
    client: &impl tokio_postgres::GenericClient,
    runner: &Runner<'_>,
    index: usize,
    stmt: &Statement,
    state: StatementState,
    attempt: u32,
) -> Result<(), EngineError> {
    let at = statements::At {
        plan_id: &runner.plan_id,
        phase: runner.phase,
        direction: runner.direction,
        idx: i32::try_from(index).unwrap_or(i32::MAX),
        statement: &stmt.text,
    };
    let attempts = i32::try_from(attempt).unwrap_or(i32::MAX);
    statements::mark(client, at, state, attempts).await?;
    Ok(())
}

#[derive(Default)]
struct Progress {
    done: HashSet<(usize, String)>,
    running: HashSet<usize>,
}

impl Progress {
    fn is_done(&self, index: usize, stmt: &Statement) -> bool {
        self.done.contains(&(index, stmt.text.clone()))
    }
}

async fn load_progress(
    client: &Client,
    c: &Completion<'_>,
    direction: Direction,
) -> Result<Progress, EngineError> {
    let mut p = Progress::default();
    for r in statements::progress(client, c.plan.id(), c.phase, direction).await? {
        let idx = usize::try_from(r.idx).unwrap_or(usize::MAX);
        match r.state {
            StatementState::Done => {
                p.done.insert((idx, r.statement));
            }
            StatementState::Running => {
                p.running.insert(idx);
            }
        }
    }
    Ok(p)
}

/// Records the end of the script: flag, backfill stop, state transition with audit.
async fn complete(
    tx: &Transaction<'_>,
    c: &Completion<'_>,
    attempt: u32,
    blockers: &[Blocker],
) -> Result<i64, EngineError> {
    let mut details = serde_json::Map::new();
    if attempt > 1 {
        details.insert("attempts".into(), json!(attempt));
    }
    if !blockers.is_empty() {
        let seen: Vec<String> = blockers.iter().map(|b| b.to_string()).collect();
        details.insert("blocked_by".into(), json!(seen));
    }
    if let (Some(on), Some(rs)) = (c.flag, c.plan.spec.read_switch.as_ref()) {
        crate::control::flags::set_read_switch(tx, &rs.flag, on, c.plan.id()).await?;
        details.insert("flag".into(), json!({ "name": rs.flag, "enabled": on }));
    }
    if let Some(reason) = &c.stop_backfill {
        let stopped =
            crate::control::backfill::stop_for_rollback(tx, c.plan.id(), reason, &c.actor.login)
                .await?;
        if stopped {
            details.insert(
                "backfill".into(),
                json!({ "state": "stopped", "reason": reason }),
            );
        }
    }
    state::record(
        tx,
        Transition {
            plan: c.plan,
            actor: c.actor,
            phase: c.phase,
            from: c.from,
            to: c.to,
            action: c.action,
            error: None,
            details: Value::Object(details),
        },
    )
    .await
    .map_err(Into::into)
}
