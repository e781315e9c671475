//! The persisted state machine: one row per migration in `cutover.migrations`, one per phase in
//! `cutover.phases`, every transition in `cutover.phase_history` and the audit log — all in the
//! caller's transaction.

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use serde_json::{json, Value};
use tokio_postgres::{Client, GenericClient, Transaction};

use super::{ControlError, Refusal};
use crate::control::audit::{self, Actor, AuditAction, NewEntry};
use crate::db::DbError;
use crate::plan::{Phase, Plan};

/// The state of one phase.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum PhaseState {
    /// Not applied yet.
    Pending,
    /// Being applied (or interrupted while being applied).
    Applying,
    /// Applied.
    Applied,
    /// Being rolled back (or interrupted while rolling back).
    RollingBack,
    /// Rolled back; may be applied again.
    RolledBack,
    /// The last attempt failed; see the error.
    Failed,
}

impl PhaseState {
    /// The stored name.
    pub fn as_str(self) -> &'static str {
        match self {
            PhaseState::Pending => "pending",
            PhaseState::Applying => "applying",
            PhaseState::Applied => "applied",
            PhaseState::RollingBack => "rolling_back",
            PhaseState::RolledBack => "rolled_back",
            PhaseState::Failed => "failed",
        }
    }

    /// Parses the stored name.
    pub fn parse(s: &str) -> Option<PhaseState> {
        [
            PhaseState::Pending,
            PhaseState::Applying,
            PhaseState::Applied,
            PhaseState::RollingBack,
            PhaseState::RolledBack,
            PhaseState::Failed,
        ]
        .into_iter()
        .find(|p| p.as_str() == s)
    }
}

impl std::fmt::Display for PhaseState {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// One phase row.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct PhaseRow {
    /// Which phase.
    pub phase: Phase,
    /// Its state.
    pub state: PhaseState,
    /// Plan sha256 of the last transition.
    pub plan_sha256: Option<String>,
    /// When the last transition started.
    pub started_at: Option<DateTime<Utc>>,
    /// When the last transition finished.
    pub finished_at: Option<DateTime<Utc>>,
    /// Error of the last failed attempt.
    pub error: Option<String>,
}

/// A registered migration and its phases.
#[derive(Debug, Clone, Serialize)]
pub struct MigrationState {
    /// Plan id.
    pub plan_id: String,
    /// The sha256 the migration was registered or last acted with.
    pub plan_sha256: String,
    /// The last applied phase.
    pub current_phase: Option<Phase>,
    /// The five phases in order.
    pub phases: Vec<PhaseRow>,
    /// When the migration was registered.
    pub created_at: DateTime<Utc>,
}

impl MigrationState {
    /// The row of `phase`.
    pub fn phase(&self, phase: Phase) -> &PhaseRow {
        &self.phases[phase.index()]
    }

    /// See [`next_phase`].
    pub fn next_phase(&self) -> Option<Phase> {
        next_phase(&self.phases)
    }

    /// See [`last_applied`].
    pub fn last_applied(&self) -> Option<Phase> {
        last_applied(&self.phases)
    }

    /// See [`previous_applied_at`].
    pub fn previous_applied_at(&self, phase: Phase) -> Option<DateTime<Utc>> {
        previous_applied_at(&self.phases, phase)
    }
}

/// The first phase that is not applied, in order (`None` when all are applied).
pub fn next_phase(rows: &[PhaseRow]) -> Option<Phase> {
    rows.iter()
        .find(|p| p.state != PhaseState::Applied)
        .map(|p| p.phase)
}

/// The last applied phase (the one a plain rollback undoes).
pub fn last_applied(rows: &[PhaseRow]) -> Option<Phase> {
    rows.iter()
        .rev()
        .find(|p| p.state == PhaseState::Applied)
        .map(|p| p.phase)
}

/// When the phase before `phase` was applied (`None` for expand or when it is not applied).
pub fn previous_applied_at(rows: &[PhaseRow], phase: Phase) -> Option<DateTime<Utc>> {
    let prev = rows.iter().find(|r| Some(r.phase) == phase.prev())?;
    (prev.state == PhaseState::Applied)
        .then_some(prev.finished_at)
        .flatten()
}

/// Registers the migration on first use: its row, five phase rows, its read-switch flag (OFF)
/// and a `plan.register` audit entry, in one transaction. Returns true when it was new.
pub async fn ensure_registered(
    client: &mut Client,
    plan: &Plan,
    actor: &Actor,
) -> Result<bool, ControlError> {
    if is_registered(client, plan.id()).await? {
        return Ok(false);
    }
    let tx = client.transaction().await?;
    let sha = plan.sha256();
    let inserted = tx
        .execute(
            "INSERT INTO cutover.migrations (plan_id, title, plan_sha256, plan_source, plan_path)
             VALUES ($1, $2, $3, $4, $5) ON CONFLICT (plan_id) DO NOTHING",
            &[&plan.id(), &plan.spec.title, &sha, &plan.source, &plan.path],
        )
        .await?;
    if inserted == 0 {
        tx.commit().await?;
        return Ok(false);
    }
    for phase in Phase::ALL {
        tx.execute(
            "INSERT INTO cutover.phases (plan_id, phase) VALUES ($1, $2)",
            &[&plan.id(), &phase.as_str()],
        )
        .await?;
    }
    super::anchors::anchor(&tx, plan, &actor.login).await?;
    let flag = plan.spec.read_switch.as_ref().map(|r| r.flag.clone());
    if let Some(flag) = &flag {
        super::flags::register_read_switch(&tx, flag, plan.id()).await?;
    }
    audit::append(
        &tx,
        NewEntry {
            actor,
            plan_id: plan.id(),
            plan_sha256: &sha,
            action: AuditAction::PlanRegister,
            phase: None,
            details: json!({ "title": plan.spec.title, "path": plan.path, "flag": flag }),
        },
    )
    .await?;
    tx.commit().await?;
    Ok(true)
}

/// Registers `plan` with only `phase`, marked applied, and nothing audited: a shortcut for
/// benchmarks that exercise one phase's machinery on a throwaway cluster.
pub async fn seed_applied(
    client: &impl GenericClient,
    plan: &Plan,
    phase: Phase,
) -> Result<(), tokio_postgres::Error> {
    client
        .execute(
            "INSERT INTO cutover.migrations (plan_id, title, plan_sha256, plan_source, plan_path) \
             VALUES ($1, $2, $3, $4, $5)",
            &[
                &plan.id(),
                &plan.spec.title,
                &plan.sha256(),
                &plan.source,
                &plan.path,
            ],
        )
        .await?;
    client
        .execute(
            "INSERT INTO cutover.phases (plan_id, phase, state) VALUES ($1, $2, $3)",
            &[&plan.id(), &phase.as_str(), &PhaseState::Applied.as_str()],
        )
        .await?;
    Ok(())
}

/// When `phase` was applied (its latest successful application), if it is applied now.
pub async fn applied_at(
    client: &impl GenericClient,
    plan_id: &str,
    phase: Phase,
) -> Result<Option<DateTime<Utc>>, tokio_postgres::Error> {
    let row = client
        .query_opt(
            "SELECT finished_at FROM cutover.phases
              WHERE plan_id = $1 AND phase = $2 AND state = 'applied'",
            &[&plan_id, &phase.as_str()],
        )
        .await?;
    Ok(row.and_then(|r| r.get("finished_at")))
}

/// Five `pending` rows, one per phase in order.
pub fn pending_rows() -> Vec<PhaseRow> {
    Phase::ALL
        .iter()
        .map(|&phase| PhaseRow {
            phase,
            state: PhaseState::Pending,
            plan_sha256: None,
            started_at: None,
            finished_at: None,
            error: None,
        })
        .collect()
}

/// The text whose `hashtext` keys the plan's action lock.
pub fn lock_key(plan_id: &str) -> String {
    format!("cutover:{plan_id}")
}

/// Loads the migration's state (it must be registered).
pub async fn load(client: &impl GenericClient, plan_id: &str) -> Result<MigrationState, DbError> {
    let m = client
        .query_opt(
            "SELECT plan_sha256, current_phase, created_at FROM cutover.migrations WHERE plan_id = $1",
            &[&plan_id],
        )
        .await?
        .ok_or_else(|| DbError::Query(format!("migration `{plan_id}` is not registered")))?;
    let phases = rows(client, plan_id).await?;
    let current: Option<String> = m.get("current_phase");
    Ok(MigrationState {
        plan_id: plan_id.to_string(),
        plan_sha256: m.get("plan_sha256"),
        current_phase: current.as_deref().and_then(Phase::parse),
        phases,
        created_at: m.get("created_at"),
    })
}

/// The five phase rows of `plan_id` in order (`pending` for those without a row, e.g. when the
/// migration is not registered).
pub async fn rows(
    client: &impl GenericClient,
    plan_id: &str,
) -> Result<Vec<PhaseRow>, tokio_postgres::Error> {
    let mut phases = pending_rows();
    for row in stored(client, plan_id).await? {
        let i = row.phase.index();
        phases[i] = row;
    }
    Ok(phases)
}

/// The phase rows of `plan_id` that exist (none before it is registered), in phase order.
pub async fn stored(
    client: &impl GenericClient,
    plan_id: &str,
) -> Result<Vec<PhaseRow>, tokio_postgres::Error> {
    let rows = client
        .query(
            "SELECT phase, state, plan_sha256, started_at, finished_at, error
               FROM cutover.phases WHERE plan_id = $1",
            &[&plan_id],
        )
        .await?;
    let mut out: Vec<PhaseRow> = rows
        .iter()
        .filter_map(|r| {
            Some(PhaseRow {
                phase: Phase::parse(r.get("phase"))?,
                state: PhaseState::parse(r.get("state")).unwrap_or(PhaseState::Failed),
                plan_sha256: r.get("plan_sha256"),
                started_at: r.get("started_at"),
                finished_at: r.get("finished_at"),
                error: r.get("error"),
            })
        })
        .collect();
    out.sort_by_key(|r| r.phase.index());
    Ok(out)
}

/// The migration's current phase (its last applied, `None` before expand) and the state of its
/// last transition; `None` when it is not registered.
pub async fn current(
    client: &impl GenericClient,
    plan_id: &str,
) -> Result<Option<(Option<Phase>, PhaseState)>, tokio_postgres::Error> {
    Ok(client
        .query_opt(
            "SELECT current_phase, state FROM cutover.migrations WHERE plan_id = $1",
            &[&plan_id],
        )
        .await?
        .map(|r| {
            let phase: Option<&str> = r.get("current_phase");
            (
                phase.and_then(Phase::parse),
                PhaseState::parse(r.get("state")).unwrap_or(PhaseState::Failed),
            )
        }))
}

/// True when the migration is registered.
pub async fn is_registered(
    client: &impl GenericClient,
    plan_id: &str,
) -> Result<bool, tokio_postgres::Error> {
    Ok(client
        .query_opt(
            "SELECT 1 FROM cutover.migrations WHERE plan_id = $1",
            &[&plan_id],
        )
        .await?
        .is_some())
}

/// A registered migration's plan as last stored (`cutover.migrations` keeps one row per plan
/// id; every transition rewrites its source with the plan that acted).
#[derive(Debug, Clone, PartialEq)]
pub struct RegisteredPlan {
    /// Plan id.
    pub plan_id: String,
    /// Where the plan file was when it was stored (for messages).
    pub plan_path: String,
    /// The plan text.
    pub plan_source: String,
}

/// Every registered migration's stored plan, oldest registration first.
pub async fn registered(
    client: &impl GenericClient,
) -> Result<Vec<RegisteredPlan>, tokio_postgres::Error> {
    Ok(client
        .query(
            "SELECT plan_id, plan_path, plan_source FROM cutover.migrations
              ORDER BY created_at, plan_id",
            &[],
        )
        .await?
        .iter()
        .map(|r| RegisteredPlan {
            plan_id: r.get("plan_id"),
            plan_path: r.get("plan_path"),
            plan_source: r.get("plan_source"),
        })
        .collect())
}

/// One recorded transition (`cutover.phase_history`).
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct HistoryRow {
    /// When.
    pub at: DateTime<Utc>,
    /// Phase.
    pub phase: Phase,
    /// State before.
    pub from: PhaseState,
    /// State after.
    pub to: PhaseState,
    /// Login.
    pub actor: String,
    /// Details (errors, flags, resume).
    pub details: Value,
}

/// Every transition of `plan_id`, oldest first.
pub async fn history(
    client: &impl GenericClient,
    plan_id: &str,
) -> Result<Vec<HistoryRow>, tokio_postgres::Error> {
    let rows = client
        .query(
            "SELECT at, phase, from_state, to_state, actor, details FROM cutover.phase_history
              WHERE plan_id = $1 ORDER BY id",
            &[&plan_id],
        )
        .await?;
    Ok(rows
        .iter()
        .filter_map(|r| {
            Some(HistoryRow {
                at: r.get("at"),
                phase: Phase::parse(r.get("phase"))?,
                from: PhaseState::parse(r.get("from_state"))?,
                to: PhaseState::parse(r.get("to_state"))?,
                actor: r.get("actor"),
                details: r.get("details"),
            })
        })
        .collect())
}

/// What the control schema says about a plan, for checking it against the live catalog
/// (`cutover validate`).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct ControlState {
    /// The expand phase is applied (its SQL is not simulated again).
    pub expand_applied: bool,
    /// The plan is registered but its read-switch flag does not exist.
    pub read_switch_flag_missing: bool,
}

/// What validating a plan against the live catalog needs from the control schema, which may
/// not exist yet: whether expand is applied, and whether the registered plan's read-switch flag
/// is missing.
pub async fn catalog_state(
    client: &impl GenericClient,
    plan: &Plan,
) -> Result<ControlState, tokio_postgres::Error> {
    let row = client
        .query_one(
            "SELECT to_regclass('cutover.phases') IS NOT NULL AS phases_exist, \
                    to_regclass('cutover.flags') IS NOT NULL AS flags_exist",
            &[],
        )
        .await?;
    let (phases_exist, flags_exist): (bool, bool) =
        (row.get("phases_exist"), row.get("flags_exist"));
    let expand_applied = phases_exist
        && state_of(client, plan.id(), Phase::Expand).await? == Some(PhaseState::Applied);
    let read_switch_flag_missing = match &plan.spec.read_switch {
        Some(rs) if flags_exist => {
            super::flags::get(client, &rs.flag).await?.is_none()
                && is_registered(client, plan.id()).await?
        }
        _ => false,
    };
    Ok(ControlState {
        expand_applied,
        read_switch_flag_missing,
    })
}

/// The state of one phase (`None` when the migration is not registered).
pub async fn state_of(
    client: &impl GenericClient,
    plan_id: &str,
    phase: Phase,
) -> Result<Option<PhaseState>, tokio_postgres::Error> {
    let row = client
        .query_opt(
            "SELECT state FROM cutover.phases WHERE plan_id = $1 AND phase = $2",
            &[&plan_id, &phase.as_str()],
        )
        .await?;
    Ok(row.map(|r| PhaseState::parse(r.get("state")).unwrap_or(PhaseState::Failed)))
}

/// Locks the phase row for this transaction and returns its state.
pub async fn lock_phase(
    tx: &Transaction<'_>,
    plan_id: &str,
    phase: Phase,
) -> Result<PhaseState, ControlError> {
    let row = tx
        .query_one(
            "SELECT state FROM cutover.phases WHERE plan_id = $1 AND phase = $2 FOR UPDATE",
            &[&plan_id, &phase.as_str()],
        )
        .await?;
    let s: String = row.get("state");
    Ok(PhaseState::parse(&s).unwrap_or(PhaseState::Failed))
}

/// One state change to record.
pub struct Transition<'a> {
    /// The plan in force.
    pub plan: &'a Plan,
    /// Who.
    pub actor: &'a Actor,
    /// Which phase.
    pub phase: Phase,
    /// State before.
    pub from: PhaseState,
    /// State after.
    pub to: PhaseState,
    /// Audit verb.
    pub action: AuditAction,
    /// Error text for failed transitions.
    pub error: Option<String>,
    /// Anything else worth keeping (timings, attempts, blockers).
    pub details: Value,
}

/// Records a transition in the caller's transaction: phase row, migration row, history, audit.
pub async fn record(tx: &Transaction<'_>, t: Transition<'_>) -> Result<i64, ControlError> {
    let sha = t.plan.sha256();
    let starting = matches!(t.to, PhaseState::Applying | PhaseState::RollingBack);
    tx.execute(
        "UPDATE cutover.phases
            SET state = $3, plan_sha256 = $4, error = $5,
                started_at = CASE WHEN $6 THEN clock_timestamp() ELSE started_at END,
                finished_at = CASE WHEN $6 THEN NULL ELSE clock_timestamp() END
          WHERE plan_id = $1 AND phase = $2",
        &[
            &t.plan.id(),
            &t.phase.as_str(),
            &t.to.as_str(),
            &sha,
            &t.error,
            &starting,
        ],
    )
    .await?;
    tx.execute(
        "UPDATE cutover.migrations m
            SET current_phase = (SELECT p.phase FROM cutover.phases p
                                  WHERE p.plan_id = m.plan_id AND p.state = 'applied'
                                  ORDER BY array_position(
                                      ARRAY['expand','dual_write','backfill','read_switch','contract'],
                                      p.phase) DESC
                                  LIMIT 1),
                state = $2, plan_sha256 = $3, plan_source = $4, plan_path = $5, updated_at = now()
          WHERE plan_id = $1",
        &[&t.plan.id(), &t.to.as_str(), &sha, &t.plan.source, &t.plan.path],
    )
    .await?;
    let mut details = t.details;
    if let (Some(err), Value::Object(map)) = (&t.error, &mut details) {
        map.insert("error".into(), Value::String(err.clone()));
    }
    tx.execute(
        "INSERT INTO cutover.phase_history (plan_id, phase, from_state, to_state, actor, details)
         VALUES ($1, $2, $3, $4, $5, $6)",
        &[
            &t.plan.id(),
            &t.phase.as_str(),
            &t.from.as_str(),
            &t.to.as_str(),
            &t.actor.login,
            &details,
        ],
    )
    .await?;
    let mut audit_details = json!({ "from": t.from.as_str(), "to": t.to.as_str() });
    if let (Value::Object(a), Value::Object(d)) = (&mut audit_details, details) {
        a.extend(d);
    }
    let entry = audit::append(
        tx,
        NewEntry {
            actor: t.actor,
            plan_id: t.plan.id(),
            plan_sha256: &sha,
            action: t.action,
            phase: Some(t.phase),
            details: audit_details,
        },
    )
    .await?;
    Ok(entry.seq)
}

/// A session-level advisory lock that serializes state-changing actions on one plan, so two
/// operators cannot apply or roll back at once. Released by [`PlanLock::release`] (or when the
/// connection closes, e.g. after a crash).
pub struct PlanLock {
    key: String,
}

impl PlanLock {
    /// Takes the lock or refuses, naming the session that holds it.
    pub async fn acquire(client: &Client, plan_id: &str) -> Result<PlanLock, ControlError> {
        let key = lock_key(plan_id);
        let got: bool = client
            .query_one("SELECT pg_try_advisory_lock(hashtext($1)) AS got", &[&key])
            .await?
            .get("got");
        if got {
            return Ok(PlanLock { key });
        }
        let holder = lock_holder(client, plan_id)
            .await?
            .unwrap_or_else(|| "another session".into());
        Err(ControlError::Refused(Refusal::LockHeld {
            holder,
            plan_id: plan_id.to_string(),
        }))
    }

    /// Releases the lock.
    pub async fn release(self, client: &Client) -> Result<(), ControlError> {
        client
            .query_one("SELECT pg_advisory_unlock(hashtext($1))", &[&self.key])
            .await?;
        Ok(())
    }
}

/// The session holding the plan's action lock (`pid N (application, login L)`), if any.
pub async fn lock_holder(client: &Client, plan_id: &str) -> Result<Option<String>, ControlError> {
    let key = lock_key(plan_id);
    let row = client
        .query_opt(
            "SELECT a.pid, coalesce(a.application_name, '') AS application,
                    coalesce(a.usename::text, '') AS login
               FROM pg_locks l JOIN pg_stat_activity a ON a.pid = l.pid
              WHERE l.locktype = 'advisory' AND l.granted AND l.objsubid = 1
                AND l.database = (SELECT oid FROM pg_database WHERE datname = current_database())
                AND l.objid = (hashtext($1)::bigint & 4294967295)::oid
                AND l.classid = ((hashtext($1)::bigint >> 32) & 4294967295)::oid
              LIMIT 1",
            &[&key],
        )
        .await?;
    Ok(row.map(|r| {
        format!(
            "pid {} ({}, login {})",
            r.get::<_, i32>("pid"),
            r.get::<_, String>("application"),
            r.get::<_, String>("login")
        )
    }))
}
