//! [`Facts`]: everything the gate, scorecard and rollback rules judge, loaded by ONE statement
//! (so it is one consistent snapshot of the control schema, inside or outside a transaction, and
//! on a read-only connection). The rules (the `rules` module) are pure functions of this value.

use std::sync::LazyLock;

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use tokio_postgres::GenericClient;

use super::backfill::State as BackfillState;
use super::phases::{PhaseRow, PhaseState};
use super::slots::{Slot, KEEP_SIZE_SQL, SLOTS_JSON};
use super::statements::Direction;
use crate::db::DbError;
use crate::outcome::Outcome;
use crate::plan::Phase;

/// The registration row (`cutover.migrations`).
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct Registration {
    /// The plan version registered or last acted with.
    pub plan_sha256: String,
    /// When it was registered.
    pub created_at: DateTime<Utc>,
}

/// A recorded sign-off (`cutover.signoffs`).
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct SignoffFact {
    /// The gate (phase) signed.
    pub gate: Phase,
    /// The role signed for.
    pub role: String,
    /// PostgreSQL login.
    pub login: String,
    /// OS user.
    pub os_user: String,
    /// Host.
    pub host: String,
    /// The plan version signed.
    pub plan_sha256: String,
    /// When.
    pub signed_at: DateTime<Utc>,
}

/// A recorded break-glass override (`cutover.overrides`).
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct OverrideFact {
    /// The gate let through.
    pub gate: Phase,
    /// The lead's login.
    pub login: String,
    /// The written reason.
    pub reason: String,
    /// The plan version it was given for.
    pub plan_sha256: String,
    /// When.
    pub at: DateTime<Utc>,
}

/// The latest result of one check (`cutover.check_results`).
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct CheckFact {
    /// Check name.
    pub name: String,
    /// Check kind.
    pub kind: String,
    /// Verdict.
    pub outcome: Outcome,
    /// One line.
    pub summary: String,
    /// When it started.
    pub started_at: DateTime<Utc>,
    /// How long it took.
    pub duration_ms: i64,
    /// Rows scanned.
    pub rows_scanned: i64,
    /// Mismatching rows, when the check reports them.
    pub mismatches: Option<i64>,
    /// One entry per leaf partition when the checked table is partitioned.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub partitions: Vec<crate::control::checks::PartitionResult>,
    /// The plan version it ran against.
    pub plan_sha256: String,
}

/// The latest recorded evaluation of one probe at one gate (`cutover.probe_results`).
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct ProbeFact {
    /// The gate it was evaluated for.
    pub gate: Phase,
    /// Probe name.
    pub probe: String,
    /// Verdict.
    pub outcome: Outcome,
    /// One line.
    pub summary: String,
    /// Evidence lines.
    pub evidence: Vec<String>,
    /// The plan version it judged.
    pub plan_sha256: String,
    /// When it was judged.
    pub at: DateTime<Utc>,
}

/// The backfill's state row (`cutover.backfill`).
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct BackfillFact {
    /// State.
    pub state: BackfillState,
    /// Why (throttle reason, pause, error).
    pub reason: String,
    /// Who paused or stopped it.
    pub paused_by: Option<String>,
    /// Rows covered so far.
    pub rows_done: i64,
    /// Estimated rows in total.
    pub rows_estimate: Option<i64>,
    /// Seconds spent throttled.
    pub throttled_seconds: f64,
    /// When the state last changed.
    pub state_changed_at: Option<DateTime<Utc>>,
}

/// A feature flag (`cutover.flags`).
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct FlagFact {
    /// Flag name.
    pub name: String,
    /// On or off.
    pub enabled: bool,
    /// Who set it last.
    pub updated_by: String,
    /// When.
    pub updated_at: DateTime<Utc>,
    /// The plan whose read switch it is, if any.
    pub plan_id: Option<String>,
}

/// The last completed statement of an apply or rollback run (`cutover.statement_progress`).
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct StatementFact {
    /// Phase.
    pub phase: Phase,
    /// Apply or rollback.
    pub direction: Direction,
    /// Position in the script, from 0.
    pub idx: i32,
    /// The statement.
    pub statement: String,
}

/// The latest rehearsal (`cutover.rehearsals`).
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct RehearsalFact {
    /// Every step passed.
    pub ok: bool,
    /// Total time of the rehearsed rollbacks and re-applies.
    pub total_ms: f64,
    /// The plan version rehearsed.
    pub plan_sha256: String,
    /// When.
    pub at: DateTime<Utc>,
}

/// Scrapes of the metrics endpoint (`cutover.metrics_scrapes`).
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct ScrapeFact {
    /// Scrapes recorded.
    pub count: i64,
    /// The newest.
    pub last_at: DateTime<Utc>,
    /// Who scraped last.
    pub peer: Option<String>,
}

/// A scorecard category attested by hand (`cutover.attestations`, newest per category).
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct AttestationFact {
    /// Category key (`observability`).
    pub category: String,
    /// The role attesting.
    pub role: String,
    /// Who.
    pub login: String,
    /// Where the evidence can be seen.
    pub url: String,
    /// The plan version attested.
    pub plan_sha256: String,
    /// When.
    pub at: DateTime<Utc>,
}

/// One phase transition that matters to the rules (`cutover.phase_history`, newest per kind).
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct TransitionFact {
    /// Phase.
    pub phase: Phase,
    /// The state it entered.
    pub to_state: PhaseState,
    /// The newest time it entered that state.
    pub at: DateTime<Utc>,
}

/// Everything the rules need about one migration, read in one consistent snapshot.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct Facts {
    /// The server clock at the read.
    pub now: DateTime<Utc>,
    /// The plan id.
    pub plan_id: String,
    /// The registration, if the plan was registered.
    pub registration: Option<Registration>,
    /// The five phases in order (`pending` for those without a row).
    pub phases: Vec<PhaseRow>,
    /// For each (phase, entered state): the newest time.
    pub transitions: Vec<TransitionFact>,
    /// Every sign-off, oldest first.
    pub signoffs: Vec<SignoffFact>,
    /// Every override, oldest first.
    pub overrides: Vec<OverrideFact>,
    /// The latest result of each check.
    pub checks: Vec<CheckFact>,
    /// The latest evaluation of each probe at each gate, per plan version.
    pub probes: Vec<ProbeFact>,
    /// The backfill state row.
    pub backfill: Option<BackfillFact>,
    /// Feature flags.
    pub flags: Vec<FlagFact>,
    /// The last statement completed of each phase's apply and rollback runs.
    pub statements: Vec<StatementFact>,
    /// The latest rehearsal.
    pub rehearsal: Option<RehearsalFact>,
    /// Metrics scrapes of this plan.
    pub scrapes: Option<ScrapeFact>,
    /// The newest attestation of each category and role.
    #[serde(default)]
    pub attestations: Vec<AttestationFact>,
    /// A failed phase whose apply committed some statements (outside a transaction).
    pub partially_applied: Option<Phase>,
    /// The session holding the plan's action lock (`pid N (application, login L)`).
    pub lock_holder: Option<String>,
    /// The cluster's replication slots.
    #[serde(default)]
    pub slots: Vec<Slot>,
    /// `max_slot_wal_keep_size` in bytes (`None`: unlimited).
    #[serde(default)]
    pub max_slot_wal_keep_size: Option<i64>,
}

/// The one statement that reads [`Facts`]. `$1` is the plan id, `$2` its action-lock key.
static LOAD: LazyLock<String> = LazyLock::new(|| {
    LOAD_TEMPLATE
        .replace("{slots}", SLOTS_JSON)
        .replace("{keep_size}", KEEP_SIZE_SQL)
});

/// [`LOAD`] before the slot fragments of [`super::slots`] are put in.
const LOAD_TEMPLATE: &str = r#"
SELECT json_build_object(
  'now', now(),
  'slots', {slots},
  'max_slot_wal_keep_size', {keep_size},
  'plan_id', $1::text,
  'registration', (SELECT json_build_object('plan_sha256', plan_sha256, 'created_at', created_at)
                     FROM cutover.migrations WHERE plan_id = $1),
  'phases', coalesce((SELECT json_agg(json_build_object(
                 'phase', phase, 'state', state, 'plan_sha256', plan_sha256,
                 'started_at', started_at, 'finished_at', finished_at, 'error', error))
               FROM cutover.phases WHERE plan_id = $1), '[]'),
  'transitions', coalesce((SELECT json_agg(json_build_object('phase', phase, 'to_state', to_state, 'at', at))
               FROM (SELECT phase, to_state, max(at) AS at FROM cutover.phase_history
                      WHERE plan_id = $1 GROUP BY phase, to_state) t), '[]'),
  'signoffs', coalesce((SELECT json_agg(json_build_object(
                 'gate', gate, 'role', role, 'login', login, 'os_user', os_user, 'host', host,
                 'plan_sha256', plan_sha256, 'signed_at', signed_at) ORDER BY signed_at, id)
               FROM cutover.signoffs WHERE plan_id = $1), '[]'),
  'overrides', coalesce((SELECT json_agg(json_build_object(
                 'gate', gate, 'login', login, 'reason', reason, 'plan_sha256', plan_sha256,
                 'at', at) ORDER BY at, id)
               FROM cutover.overrides WHERE plan_id = $1), '[]'),
  'checks', coalesce((SELECT json_agg(json_build_object(
                 'name', check_name, 'kind', kind, 'outcome', outcome, 'summary', summary,
                 'started_at', started_at, 'duration_ms', duration_ms,
                 'rows_scanned', rows_scanned, 'plan_sha256', plan_sha256,
                 'mismatches', CASE WHEN jsonb_typeof(details->'mismatches') = 'number'
                                    THEN (details->>'mismatches')::numeric::bigint END,
                 'partitions', CASE WHEN jsonb_typeof(details->'leaf_partitions') = 'array'
                                    THEN details->'leaf_partitions' ELSE '[]' END))
               FROM (SELECT DISTINCT ON (check_name) * FROM cutover.check_results
                      WHERE plan_id = $1 ORDER BY check_name, id DESC) c), '[]'),
  'probes', coalesce((SELECT json_agg(json_build_object(
                 'gate', gate, 'probe', probe, 'outcome', outcome, 'summary', summary,
                 'evidence', CASE WHEN jsonb_typeof(evidence) = 'array' THEN evidence ELSE '[]' END,
                 'plan_sha256', plan_sha256, 'at', at))
               FROM (SELECT DISTINCT ON (gate, probe, plan_sha256) * FROM cutover.probe_results
                      WHERE plan_id = $1 ORDER BY gate, probe, plan_sha256, id DESC) p), '[]'),
  'backfill', (SELECT json_build_object(
                 'state', state, 'reason', reason, 'paused_by', paused_by, 'rows_done', rows_done,
                 'rows_estimate', rows_estimate, 'throttled_seconds', throttled_seconds,
                 'state_changed_at', state_changed_at)
               FROM cutover.backfill WHERE plan_id = $1),
  'flags', coalesce((SELECT json_agg(json_build_object(
                 'name', name, 'enabled', enabled, 'updated_by', updated_by,
                 'updated_at', updated_at, 'plan_id', plan_id) ORDER BY name)
               FROM cutover.flags), '[]'),
  'statements', coalesce((SELECT json_agg(json_build_object(
                 'phase', phase, 'direction', direction, 'idx', idx, 'statement', statement))
               FROM (SELECT DISTINCT ON (phase, direction) * FROM cutover.statement_progress
                      WHERE plan_id = $1 AND state = 'done'
                      ORDER BY phase, direction, idx DESC) s), '[]'),
  'rehearsal', (SELECT json_build_object('ok', ok, 'total_ms', total_ms,
                 'plan_sha256', plan_sha256, 'at', at)
               FROM cutover.rehearsals WHERE plan_id = $1 ORDER BY id DESC LIMIT 1),
  'scrapes', (SELECT json_build_object('count', count(*), 'last_at', max(at),
                 'peer', (SELECT peer FROM cutover.metrics_scrapes
                           WHERE plan_id = $1 ORDER BY id DESC LIMIT 1))
               FROM cutover.metrics_scrapes WHERE plan_id = $1 HAVING count(*) > 0),
  'attestations', coalesce((SELECT json_agg(json_build_object(
                 'category', category, 'role', role, 'login', login, 'url', url,
                 'plan_sha256', plan_sha256, 'at', at) ORDER BY at, id)
               FROM (SELECT DISTINCT ON (category, role) * FROM cutover.attestations
                      WHERE plan_id = $1 ORDER BY category, role, id DESC) a), '[]'),
  'partially_applied', (SELECT p.phase FROM cutover.phases p
               WHERE p.plan_id = $1 AND p.state = 'failed'
                 AND EXISTS (SELECT 1 FROM cutover.statement_progress s
                              WHERE s.plan_id = p.plan_id AND s.phase = p.phase
                                AND s.direction = 'apply' AND s.state = 'done')
               LIMIT 1),
  'lock_holder', (SELECT format('pid %s (%s, login %s)', a.pid, coalesce(a.application_name, ''),
                                coalesce(a.usename::text, ''))
               FROM pg_locks l JOIN pg_stat_activity a ON a.pid = l.pid
              WHERE l.locktype = 'advisory' AND l.granted AND l.objsubid = 1
                AND l.database = (SELECT oid FROM pg_database WHERE datname = current_database())
                AND l.objid = (hashtext($2)::bigint & 4294967295)::oid
                AND l.classid = ((hashtext($2)::bigint >> 32) & 4294967295)::oid
              LIMIT 1)
)::text AS facts
"#;

impl Facts {
    /// Reads the facts of `plan_id` in one statement.
    pub async fn load(client: &impl GenericClient, plan_id: &str) -> Result<Facts, DbError> {
        let key = super::phases::lock_key(plan_id);
        let row = client.query_one(LOAD.as_str(), &[&plan_id, &key]).await?;
        let text: String = row.get("facts");
        let mut facts: Facts = serde_json::from_str(&text).map_err(|e| {
            DbError::Query(format!("the control schema returned unreadable facts: {e}"))
        })?;
        let mut phases = super::phases::pending_rows();
        for row in facts.phases.drain(..) {
            let i = row.phase.index();
            phases[i] = row;
        }
        facts.phases = phases;
        Ok(facts)
    }

    /// Like [`Facts::load`], for reads: where the control schema does not exist yet, nothing
    /// has run, and the facts are those of an unregistered plan and the cluster's slots
    /// (nothing is created).
    pub async fn read(client: &impl GenericClient, plan_id: &str) -> Result<Facts, DbError> {
        if super::schema::state(client).await? != super::schema::SchemaState::Missing {
            return Facts::load(client, plan_id).await;
        }
        let row = client
            .query_one(
                &format!(
                    "SELECT now() AS now, {SLOTS_JSON}::text AS slots, {KEEP_SIZE_SQL} AS keep_size"
                ),
                &[],
            )
            .await?;
        Ok(Facts {
            slots: super::slots::parse(&row.get::<_, String>("slots"))?,
            max_slot_wal_keep_size: row.get("keep_size"),
            ..Facts::unregistered(plan_id, row.get("now"))
        })
    }

    /// The row of `phase`.
    pub fn phase(&self, phase: Phase) -> &PhaseRow {
        &self.phases[phase.index()]
    }

    /// The state of `phase`.
    pub fn state(&self, phase: Phase) -> PhaseState {
        self.phase(phase).state
    }

    /// The newest time `phase` entered `state`, if ever.
    pub fn entered(&self, phase: Phase, state: PhaseState) -> Option<DateTime<Utc>> {
        self.transitions
            .iter()
            .find(|t| t.phase == phase && t.to_state == state)
            .map(|t| t.at)
    }

    /// The newest phase transition of any kind.
    pub fn last_transition_at(&self) -> Option<DateTime<Utc>> {
        self.transitions.iter().map(|t| t.at).max()
    }

    /// The first phase that is not applied, in order (`None` when all are applied).
    pub fn next_phase(&self) -> Option<Phase> {
        super::phases::next_phase(&self.phases)
    }

    /// The last applied phase (the one a plain rollback undoes).
    pub fn last_applied(&self) -> Option<Phase> {
        super::phases::last_applied(&self.phases)
    }

    /// When the phase before `phase` was applied (`None` for expand or when it is not applied).
    pub fn previous_applied_at(&self, phase: Phase) -> Option<DateTime<Utc>> {
        super::phases::previous_applied_at(&self.phases, phase)
    }

    /// A phase is being applied or rolled back (or was interrupted doing so).
    pub fn in_flight(&self) -> bool {
        self.phases
            .iter()
            .any(|r| matches!(r.state, PhaseState::Applying | PhaseState::RollingBack))
    }

    /// The flag named `name`.
    pub fn flag(&self, name: &str) -> Option<&FlagFact> {
        self.flags.iter().find(|f| f.name == name)
    }

    /// Empty facts of an unregistered plan at `now` (tests and the first frame of the TUI).
    pub fn unregistered(plan_id: &str, now: DateTime<Utc>) -> Facts {
        Facts {
            now,
            plan_id: plan_id.to_string(),
            registration: None,
            phases: super::phases::pending_rows(),
            transitions: Vec::new(),
            signoffs: Vec::new(),
            overrides: Vec::new(),
            checks: Vec::new(),
            probes: Vec::new(),
            backfill: None,
            flags: Vec::new(),
            statements: Vec::new(),
            rehearsal: None,
            scrapes: None,
            attestations: Vec::new(),
            partially_applied: None,
            lock_holder: None,
            slots: Vec::new(),
            max_slot_wal_keep_size: None,
        }
    }
}
