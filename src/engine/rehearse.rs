//! Rehearsal: every phase not yet applied is applied and then rolled back inside one transaction
//! that is finally rolled back, so nothing is kept. Each step is timed, the locks it took are read
//! from `pg_locks` for our own backend, and the catalog is compared before the apply and after the
//! rollback. Statements that cannot run in a transaction are reported as not rehearsable. The
//! result is stored in `cutover.rehearsals`: the scorecard's Reversibility evidence.

use std::collections::BTreeSet;
use std::time::Instant;

use serde::Serialize;
use serde_json::json;
use tokio_postgres::{Client, Transaction};

use super::ddl::{summary, LockPolicy};
use super::EngineError;
use crate::control::audit::{self, Actor, AuditAction, NewEntry};
use crate::control::phases::{self as state, PhaseState, PlanLock};
use crate::control::Refusal;
use crate::db;
use crate::db::txmark::TxMark;
use crate::plan::{Phase, Plan};
use crate::sql::{self, Statement};

/// A lock held by our backend.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Serialize)]
pub struct LockTaken {
    /// The relation.
    pub relation: String,
    /// The lock mode (`AccessExclusiveLock`, …).
    pub mode: String,
}

/// One timed step (apply or rollback) of a phase.
#[derive(Debug, Clone, Serialize)]
pub struct Step {
    /// Wall time of its statements, ms.
    pub ms: f64,
    /// Statements run.
    pub statements: usize,
    /// Lock modes it acquired that the rehearsal transaction did not hold before it.
    pub locks: Vec<LockTaken>,
    /// Every relation lock held once it ran (a mode already held earlier in the rehearsal is
    /// not re-acquired, so a step may need more than `locks` shows; `held` bounds it).
    pub held: Vec<LockTaken>,
    /// The error, if it failed.
    pub error: Option<String>,
}

/// The rehearsal of one phase.
#[derive(Debug, Clone, Serialize)]
pub struct PhaseRehearsal {
    /// Phase.
    pub phase: Phase,
    /// Why it was not rehearsed (already applied, an earlier phase failed).
    pub skipped: Option<String>,
    /// The apply step.
    pub apply: Option<Step>,
    /// The rollback step.
    pub rollback: Option<Step>,
    /// Why there is no rollback step (irreversible).
    pub rollback_note: Option<String>,
    /// The catalog after the rollback equals the catalog before the apply.
    pub restored: Option<bool>,
    /// Statements that need their own transaction and so were not run.
    pub not_rehearsable: Vec<String>,
}

/// The whole rehearsal.
#[derive(Debug, Clone, Serialize)]
pub struct Rehearsal {
    /// Plan id.
    pub plan_id: String,
    /// Plan version rehearsed.
    pub plan_sha256: String,
    /// Every step succeeded and every rollback restored the catalog.
    pub ok: bool,
    /// Total time of all steps, ms.
    pub total_ms: f64,
    /// Per phase.
    pub phases: Vec<PhaseRehearsal>,
    /// Row id in `cutover.rehearsals`.
    pub id: i64,
    /// Audit entry.
    pub audit_seq: i64,
}

/// Rehearses the phases not yet applied, in order, in a transaction that is rolled back.
pub async fn rehearse(
    client: &mut Client,
    plan: &Plan,
    actor: &Actor,
) -> Result<Rehearsal, EngineError> {
    crate::control::anchors::authorize(&*client, plan, actor, crate::plan::Action::Rehearse)
        .await?;
    state::ensure_registered(client, plan, actor).await?;
    let st = state::load(client, plan.id()).await?;
    let lock = PlanLock::acquire(client, plan.id()).await?;
    let result = run(client, plan, &st).await;
    lock.release(client).await?;
    let phases = result?;
    let ok = phases.iter().all(|p| {
        p.apply.as_ref().is_none_or(|s| s.error.is_none())
            && p.rollback.as_ref().is_none_or(|s| s.error.is_none())
            && p.restored != Some(false)
            && !p
                .skipped
                .as_deref()
                .is_some_and(|s| s.starts_with("not reached"))
    });
    let total_ms: f64 = phases
        .iter()
        .flat_map(|p| p.apply.iter().chain(p.rollback.iter()))
        .map(|s| s.ms)
        .sum();
    let sha = plan.sha256();
    let results = serde_json::to_value(&phases).map_err(|e| {
        EngineError::Db(db::DbError::Query(format!(
            "cannot encode the rehearsal: {e}"
        )))
    })?;
    let tx = client.transaction().await?;
    let new = crate::control::rehearsals::NewRehearsal {
        plan_id: plan.id(),
        plan_sha256: &sha,
        login: &actor.login,
        ok,
        total_ms,
        results: &results,
    };
    let id = crate::control::rehearsals::insert(&tx, new).await?;
    let per_phase: Vec<serde_json::Value> = phases
        .iter()
        .map(|p| {
            json!({
                "phase": p.phase.as_str(),
                "apply_us": p.apply.as_ref().map(|s| micros(s.ms)),
                "rollback_us": p.rollback.as_ref().map(|s| micros(s.ms)),
                "restored": p.restored,
                "not_rehearsable": p.not_rehearsable.len(),
            })
        })
        .collect();
    let entry = audit::append(
        &tx,
        NewEntry {
            actor,
            plan_id: plan.id(),
            plan_sha256: &sha,
            action: AuditAction::Rehearse,
            phase: None,
            details: json!({ "rehearsal_id": id, "ok": ok, "total_us": micros(total_ms), "phases": per_phase }),
        },
    )
    .await?;
    tx.commit().await?;
    Ok(Rehearsal {
        plan_id: plan.id().to_string(),
        plan_sha256: sha,
        ok,
        total_ms,
        phases,
        id,
        audit_seq: entry.seq,
    })
}

fn micros(ms: f64) -> i64 {
    (ms * 1000.0).round() as i64
}

async fn run(
    client: &mut Client,
    plan: &Plan,
    st: &state::MigrationState,
) -> Result<Vec<PhaseRehearsal>, EngineError> {
    let policy = LockPolicy::from_plan(plan);
    let tx = client.transaction().await?;
    tx.batch_execute(&format!(
        "SET LOCAL lock_timeout = {}; SET LOCAL statement_timeout = {}",
        policy.lock_timeout.as_millis(),
        policy.statement_timeout.as_millis()
    ))
    .await?;
    let mark = TxMark::take(&tx).await?;
    let mut out = Vec::new();
    let mut broken: Option<Phase> = None;
    for phase in Phase::ALL {
        let mut r = PhaseRehearsal {
            phase,
            skipped: None,
            apply: None,
            rollback: None,
            rollback_note: None,
            restored: None,
            not_rehearsable: Vec::new(),
        };
        if st.phase(phase).state == PhaseState::Applied {
            r.skipped = Some("already applied".into());
            out.push(r);
            continue;
        }
        if let Some(b) = broken {
            r.skipped = Some(format!("not reached: {b} failed"));
            out.push(r);
            continue;
        }
        let spec = plan.phase(phase);
        let (apply_stmts, own) = split(&spec.apply);
        r.not_rehearsable.extend(own);
        let before = catalog_fingerprint(&tx).await?;
        let locks_before = locks(&tx).await?;
        let apply = step(
            &tx,
            &mark,
            &apply_stmts,
            &locks_before,
            &format!("apply_{}", phase.as_str()),
        )
        .await?;
        let failed = apply.error.is_some();
        r.apply = Some(apply);
        if failed {
            broken = Some(phase);
            out.push(r);
            continue;
        }
        match (&spec.rollback, spec.irreversible) {
            (Some(script), false) => {
                let (rb_stmts, own) = split(script);
                r.not_rehearsable.extend(own);
                let held = locks(&tx).await?;
                tx.batch_execute("SAVEPOINT cutover_rehearse_rollback")
                    .await?;
                let rb = step(&tx, &mark, &rb_stmts, &held, "rollback").await?;
                if rb.error.is_none() && r.not_rehearsable.is_empty() {
                    r.restored = Some(catalog_fingerprint(&tx).await? == before);
                }
                r.rollback = Some(rb);
                tx.batch_execute("ROLLBACK TO SAVEPOINT cutover_rehearse_rollback")
                    .await?;
            }
            _ => {
                r.rollback_note = Some(format!(
                    "{phase} is irreversible: its rollback is not rehearsed"
                ));
            }
        }
        out.push(r);
    }
    tx.rollback().await?;
    Ok(out)
}

fn split(script: &str) -> (Vec<Statement>, Vec<String>) {
    let (own, tx): (Vec<Statement>, Vec<Statement>) = sql::split_statements(script)
        .into_iter()
        .partition(|s| s.needs_own_transaction());
    (
        tx,
        own.iter()
            .map(|s| {
                format!(
                    "not rehearsable (cannot run in a transaction): {}",
                    summary(&s.text)
                )
            })
            .collect(),
    )
}

/// Runs statements under a savepoint; on error rolls back to it and reports the error. Each
/// statement is checked before it is sent ([`sql::guard`]) and sent alone; after it, the
/// transaction must still be the rehearsal's (`mark`), or the rehearsal is aborted.
async fn step(
    tx: &Transaction<'_>,
    mark: &TxMark,
    stmts: &[Statement],
    held_before: &BTreeSet<LockTaken>,
    savepoint: &str,
) -> Result<Step, EngineError> {
    let sp = crate::sql::quote_ident(&format!("cutover_rehearse_{savepoint}"));
    tx.batch_execute(&format!("SAVEPOINT {sp}")).await?;
    let started = Instant::now();
    let mut error = None;
    for (i, s) in stmts.iter().enumerate() {
        if let Err(why) = sql::guard(&s.text) {
            error = Some(format!(
                "statement {} (`{}`): {why}",
                i + 1,
                summary(&s.text)
            ));
            break;
        }
        let result = tx.execute(s.text.as_str(), &[]).await;
        // A statement that failed ended nothing; one that succeeded must have stayed inside.
        if result.is_ok() {
            if let Err(ids) = mark.verify(tx).await? {
                return Err(EngineError::Refused(Refusal::WrongState(format!(
                    "rehearsal aborted: statement {} (`{}`) ended the rehearsal's transaction ({ids})",
                    i + 1,
                    summary(&s.text)
                ))));
            }
        }
        if let Err(e) = result {
            error = Some(format!(
                "statement {} (`{}`): {}",
                i + 1,
                summary(&s.text),
                db::describe_error(&e)
            ));
            break;
        }
    }
    let ms = started.elapsed().as_secs_f64() * 1000.0;
    let (taken, held) = if error.is_none() {
        let now = locks(tx).await?;
        (
            now.difference(held_before).cloned().collect(),
            now.into_iter().collect(),
        )
    } else {
        tx.batch_execute(&format!("ROLLBACK TO SAVEPOINT {sp}"))
            .await?;
        (Vec::new(), Vec::new())
    };
    Ok(Step {
        ms,
        statements: stmts.len(),
        locks: taken,
        held,
        error,
    })
}

/// Relation locks held by our own backend, outside the system catalogs and the control schema.
async fn locks(tx: &Transaction<'_>) -> Result<BTreeSet<LockTaken>, EngineError> {
    let rows = tx
        .query(
            "SELECT coalesce(format('%I.%I', n.nspname, c.relname), l.relation::text) AS relation,
                    l.mode
               FROM pg_locks l
               LEFT JOIN pg_class c ON c.oid = l.relation
               LEFT JOIN pg_namespace n ON n.oid = c.relnamespace
              WHERE l.pid = pg_backend_pid() AND l.granted AND l.locktype = 'relation'
                AND coalesce(n.nspname, '') NOT IN ('pg_catalog', 'information_schema', 'pg_toast', 'cutover')",
            &[],
        )
        .await?;
    Ok(rows
        .iter()
        .map(|r| LockTaken {
            relation: r.get("relation"),
            mode: r.get("mode"),
        })
        .collect())
}

/// A digest of the user-visible catalog (columns, relations, triggers, functions, constraints,
/// indexes outside the system schemas and the control schema).
pub async fn catalog_fingerprint(
    client: &impl tokio_postgres::GenericClient,
) -> Result<String, EngineError> {
    let row = client
        .query_one(
            "SELECT md5(coalesce(string_agg(x, E'\\n' ORDER BY x), '')) AS fingerprint FROM (
               SELECT 'col ' || c.oid::regclass::text || '.' || a.attname || ' '
                      || format_type(a.atttypid, a.atttypmod) || ' ' || a.attnotnull::text AS x
                 FROM pg_attribute a
                 JOIN pg_class c ON c.oid = a.attrelid
                 JOIN pg_namespace n ON n.oid = c.relnamespace
                WHERE a.attnum > 0 AND NOT a.attisdropped
                  AND n.nspname NOT IN ('pg_catalog', 'information_schema', 'pg_toast', 'cutover')
               UNION ALL
               SELECT 'rel ' || c.oid::regclass::text || ' ' || c.relkind::text
                 FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
                WHERE n.nspname NOT IN ('pg_catalog', 'information_schema', 'pg_toast', 'cutover')
               UNION ALL
               SELECT 'trigger ' || t.tgname || ' ' || t.tgrelid::regclass::text
                 FROM pg_trigger t JOIN pg_class c ON c.oid = t.tgrelid
                 JOIN pg_namespace n ON n.oid = c.relnamespace
                WHERE NOT t.tgisinternal AND n.nspname <> 'cutover'
               UNION ALL
               SELECT 'function ' || p.oid::regprocedure::text || ' ' || md5(coalesce(p.prosrc, ''))
                 FROM pg_proc p JOIN pg_namespace n ON n.oid = p.pronamespace
                WHERE n.nspname NOT IN ('pg_catalog', 'information_schema', 'cutover')
               UNION ALL
               SELECT 'constraint ' || co.conname || ' ' || pg_get_constraintdef(co.oid)
                 FROM pg_constraint co JOIN pg_namespace n ON n.oid = co.connamespace
                WHERE n.nspname NOT IN ('pg_catalog', 'information_schema', 'cutover')
             ) t",
            &[],
        )
        .await?;
    Ok(row.get("fingerprint"))
}
