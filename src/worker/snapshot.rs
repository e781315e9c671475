//! What the worker reads from the control schema and the server, as plain data the UI can render
//! without touching the database.
//!
//! Rows are read through `to_jsonb(row)` so columns that other areas add in later control-schema
//! versions show up without breaking older builds (and missing ones read as absent).

use chrono::{DateTime, Utc};
use serde_json::Value;
use tokio_postgres::Client;

use crate::audit::Actor;
use crate::db::DbError;
use crate::outcome::Outcome;
use crate::plan::{Phase, Plan};

/// Everything the panes need, read in one pass.
#[derive(Debug, Clone, Default)]
pub struct Snapshot {
    /// When the snapshot was read (server clock).
    pub taken_at: Option<DateTime<Utc>>,
    /// The operator behind this worker's connection.
    pub actor: Option<Actor>,
    /// The `cutover.migrations` row, if the plan was registered.
    pub migration: Option<MigrationRow>,
    /// One row per phase that has a state.
    pub phases: Vec<PhaseRow>,
    /// Sign-offs for this plan (all gates, all plan versions).
    pub signoffs: Vec<SignoffRow>,
    /// The latest result of each check.
    pub checks: Vec<CheckRow>,
    /// The backfill's state row.
    pub backfill: Option<BackfillRow>,
    /// The backfill's key ranges.
    pub ranges: Vec<RangeRow>,
    /// Cutover sessions connected to this database now.
    pub sessions: Vec<SessionRow>,
    /// Feature flags.
    pub flags: Vec<(String, bool)>,
    /// The most recent audit entries of this plan, newest first.
    pub audit: Vec<AuditRow>,
    /// The gate of the next phase, evaluated.
    pub gate: Option<GateEval>,
    /// The engine's latest evaluation of the next gate (checks, probes, order, freeze, …).
    pub engine_gate: Option<crate::engine::GateEvaluation>,
    /// The engine's readiness scorecard for the next gate.
    pub scorecard: Option<crate::engine::Scorecard>,
    /// Rows per second between recent snapshots, oldest first (the worker keeps the history).
    pub rate_history: Vec<u64>,
}

/// `cutover.migrations`.
#[derive(Debug, Clone, Default)]
pub struct MigrationRow {
    /// The last phase acted on.
    pub current_phase: Option<Phase>,
    /// Its state.
    pub state: String,
    /// The plan version registered.
    pub plan_sha256: String,
}

/// `cutover.phases`.
#[derive(Debug, Clone)]
pub struct PhaseRow {
    /// Which phase.
    pub phase: Phase,
    /// pending / applying / applied / rolling_back / rolled_back / failed.
    pub state: String,
    /// When it started.
    pub started_at: Option<DateTime<Utc>>,
    /// When it finished.
    pub finished_at: Option<DateTime<Utc>>,
    /// The failure, if any.
    pub error: Option<String>,
}

/// `cutover.signoffs`.
#[derive(Debug, Clone)]
pub struct SignoffRow {
    /// The gate (phase) signed.
    pub gate: String,
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

/// The latest `cutover.check_results` row of one check.
#[derive(Debug, Clone)]
pub struct CheckRow {
    /// Check name.
    pub name: String,
    /// Check kind.
    pub kind: String,
    /// Result.
    pub outcome: Outcome,
    /// One line.
    pub summary: String,
    /// When it ran.
    pub started_at: DateTime<Utc>,
    /// How long it took.
    pub duration_ms: i64,
    /// Rows scanned.
    pub rows_scanned: i64,
    /// Mismatching rows, when the check reports them (`details.mismatches`).
    pub mismatches: Option<i64>,
    /// Whether it was run against the plan version in force.
    pub plan_sha256: String,
}

/// `cutover.backfill`, with the columns later versions may add read when present.
#[derive(Debug, Clone, Default)]
pub struct BackfillRow {
    /// idle / running / throttled / paused / stopped / done / failed.
    pub state: String,
    /// Why (throttle reason, pause, error).
    pub reason: String,
    /// Who paused it.
    pub paused_by: Option<String>,
    /// The chunk-time target.
    pub target_chunk_ms: i64,
    /// Rows written so far.
    pub rows_done: i64,
    /// Estimated rows in total.
    pub rows_estimate: Option<i64>,
    /// Time spent throttled.
    pub throttled_seconds: f64,
    /// Configured workers.
    pub workers: i64,
    /// Last chunk's rows, when recorded.
    pub chunk_rows: Option<i64>,
    /// Last chunk's duration, when recorded.
    pub chunk_ms: Option<i64>,
    /// When it started.
    pub started_at: Option<DateTime<Utc>>,
    /// When it finished.
    pub finished_at: Option<DateTime<Utc>>,
    /// Last update.
    pub updated_at: Option<DateTime<Utc>>,
    /// Throughput over the latest chunks (rows/s), as the backfill measures it.
    pub rate: Option<f64>,
    /// ETA band in seconds (optimistic, pessimistic).
    pub eta: Option<(f64, f64)>,
    /// Seconds since the newest checkpoint.
    pub checkpoint_age: Option<f64>,
    /// Workers holding a live lease.
    pub live_workers: i64,
    /// Rate cap (rows/s, 0 = none).
    pub max_rows_per_sec: i64,
}

/// `cutover.backfill_ranges`.
#[derive(Debug, Clone, Default)]
pub struct RangeRow {
    /// Range number.
    pub range_id: i64,
    /// Lower key bound (JSON text).
    pub lo: String,
    /// Upper key bound (JSON text).
    pub hi: String,
    /// Rows done in this range.
    pub rows_done: i64,
    /// Finished.
    pub done: bool,
    /// Who holds the lease (`host/pid`).
    pub lease: Option<String>,
    /// Last checkpoint write.
    pub updated_at: Option<DateTime<Utc>>,
}

/// One row of `pg_stat_activity` whose application name starts with `cutover/`.
#[derive(Debug, Clone)]
pub struct SessionRow {
    /// Backend pid.
    pub pid: i32,
    /// `cutover/<purpose>`.
    pub application_name: String,
    /// Login.
    pub login: String,
    /// Client address (or `local`).
    pub client: String,
    /// idle / active / …
    pub state: String,
}

/// One audit entry, abridged.
#[derive(Debug, Clone)]
pub struct AuditRow {
    /// Sequence number.
    pub seq: i64,
    /// RFC 3339 timestamp.
    pub at: String,
    /// Who.
    pub login: String,
    /// What.
    pub action: String,
    /// Which phase.
    pub phase: Option<String>,
}

/// A gate, evaluated: each requirement with its outcome.
#[derive(Debug, Clone)]
pub struct GateEval {
    /// The phase this gate guards (gates are entry gates).
    pub phase: Phase,
    /// The combined outcome.
    pub outcome: Outcome,
    /// Each requirement.
    pub items: Vec<GateItem>,
}

impl GateEval {
    /// Requirements that do not pass, spelled out.
    pub fn blockers(&self) -> Vec<String> {
        self.items
            .iter()
            .filter(|i| i.outcome != Outcome::Pass)
            .map(|i| format!("{} {}: {}", i.kind.label(), i.name, i.detail))
            .collect()
    }
}

/// What a gate requirement is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum GateItemKind {
    /// The previous phase must be applied.
    Order,
    /// No freeze window in force.
    Freeze,
    /// A data check.
    Check,
    /// A readiness probe.
    Probe,
    /// A role's sign-off.
    Signoff,
    /// The observation window.
    Observe,
}

impl GateItemKind {
    /// Short label.
    pub fn label(self) -> &'static str {
        match self {
            GateItemKind::Order => "order",
            GateItemKind::Freeze => "freeze",
            GateItemKind::Check => "check",
            GateItemKind::Probe => "probe",
            GateItemKind::Signoff => "sign-off",
            GateItemKind::Observe => "observe",
        }
    }
}

/// One gate requirement.
#[derive(Debug, Clone)]
pub struct GateItem {
    /// Kind.
    pub kind: GateItemKind,
    /// Name (check, probe, role).
    pub name: String,
    /// Outcome.
    pub outcome: Outcome,
    /// Why, in words.
    pub detail: String,
}

impl Snapshot {
    /// The state of `phase` (`pending` when it has no row).
    pub fn phase_state(&self, phase: Phase) -> &str {
        self.phases
            .iter()
            .find(|p| p.phase == phase)
            .map(|p| p.state.as_str())
            .unwrap_or("pending")
    }

    /// The furthest phase that is applied (or being applied / rolled back / failed).
    pub fn current_phase(&self) -> Option<Phase> {
        Phase::ALL
            .into_iter()
            .rev()
            .find(|p| !matches!(self.phase_state(*p), "pending" | "rolled_back"))
    }

    /// The phase whose entry gate comes next.
    pub fn next_phase(&self) -> Option<Phase> {
        match self.current_phase() {
            None => Some(Phase::Expand),
            Some(p) if self.phase_state(p) == "applied" => p.next(),
            Some(p) => Some(p),
        }
    }
}

/// Reads a full snapshot for `plan` (the gate is evaluated by [`evaluate_gate`] afterwards).
pub async fn load(client: &Client, plan: &Plan) -> Result<Snapshot, DbError> {
    let id = plan.id();
    let now: DateTime<Utc> = client.query_one("SELECT now()", &[]).await?.get(0);
    let migration = client
        .query_opt(
            "SELECT current_phase, state, plan_sha256 FROM cutover.migrations WHERE plan_id = $1",
            &[&id],
        )
        .await?
        .map(|r| MigrationRow {
            current_phase: r
                .get::<_, Option<String>>(0)
                .as_deref()
                .and_then(Phase::parse),
            state: r.get(1),
            plan_sha256: r.get(2),
        });
    let phases = client
        .query(
            "SELECT phase, state, started_at, finished_at, error FROM cutover.phases WHERE plan_id = $1",
            &[&id],
        )
        .await?
        .iter()
        .filter_map(|r| {
            Some(PhaseRow {
                phase: Phase::parse(r.get::<_, &str>(0))?,
                state: r.get(1),
                started_at: r.get(2),
                finished_at: r.get(3),
                error: r.get(4),
            })
        })
        .collect();
    let signoffs = client
        .query(
            "SELECT gate, role, login, os_user, host, plan_sha256, signed_at
               FROM cutover.signoffs WHERE plan_id = $1 ORDER BY signed_at",
            &[&id],
        )
        .await?
        .iter()
        .map(|r| SignoffRow {
            gate: r.get(0),
            role: r.get(1),
            login: r.get(2),
            os_user: r.get(3),
            host: r.get(4),
            plan_sha256: r.get(5),
            signed_at: r.get(6),
        })
        .collect();
    let checks = crate::checks::latest(client, id)
        .await
        .map_err(|e| DbError::Query(e.to_string()))?
        .into_iter()
        .map(|r| CheckRow {
            mismatches: r.details.get("mismatches").and_then(Value::as_i64),
            name: r.name,
            kind: r.kind,
            outcome: r.outcome,
            summary: r.summary,
            started_at: r.started_at,
            duration_ms: r.duration_ms,
            rows_scanned: r.rows_scanned,
            plan_sha256: r.plan_sha256,
        })
        .collect();
    let (backfill, ranges) = match plan.spec.backfill {
        Some(_) => {
            let p = crate::backfill::progress(client, plan)
                .await
                .map_err(|e| DbError::Query(e.to_string()))?;
            let started = p.started_at.is_some() || p.state != crate::backfill::State::Idle;
            let ranges = p.ranges.iter().map(range_from_progress).collect();
            (started.then(|| backfill_from_progress(&p)), ranges)
        }
        None => (None, Vec::new()),
    };
    let sessions = client
        .query(
            "SELECT pid, application_name, coalesce(usename::text, ''),
                    coalesce(host(client_addr), 'local'), coalesce(state, '')
               FROM pg_stat_activity
              WHERE application_name LIKE 'cutover/%' AND datname = current_database()
              ORDER BY backend_start",
            &[],
        )
        .await?
        .iter()
        .map(|r| SessionRow {
            pid: r.get(0),
            application_name: r.get(1),
            login: r.get(2),
            client: r.get(3),
            state: r.get(4),
        })
        .collect();
    let flags = client
        .query("SELECT name, enabled FROM cutover.flags ORDER BY name", &[])
        .await?
        .iter()
        .map(|r| (r.get(0), r.get(1)))
        .collect();
    let audit = client
        .query(
            "SELECT seq, at, login, action, phase FROM cutover.audit_log
              WHERE plan_id = $1 ORDER BY seq DESC LIMIT 50",
            &[&id],
        )
        .await?
        .iter()
        .map(|r| AuditRow {
            seq: r.get(0),
            at: r.get(1),
            login: r.get(2),
            action: r.get(3),
            phase: r.get(4),
        })
        .collect();
    Ok(Snapshot {
        taken_at: Some(now),
        migration,
        phases,
        signoffs,
        checks,
        backfill,
        ranges,
        sessions,
        flags,
        audit,
        ..Snapshot::default()
    })
}

fn backfill_from_progress(p: &crate::backfill::Progress) -> BackfillRow {
    BackfillRow {
        state: p.state.as_str().to_string(),
        reason: p.reason.clone(),
        paused_by: p.paused_by.clone(),
        target_chunk_ms: i64::from(p.target_chunk_ms),
        rows_done: p.rows_done,
        rows_estimate: Some(p.rows_total),
        throttled_seconds: p.throttled_seconds,
        workers: i64::from(p.workers),
        chunk_rows: p.chunk_rows.map(i64::from),
        chunk_ms: p.last_chunk_ms.map(|ms| ms.round() as i64),
        started_at: p.started_at,
        finished_at: p.finished_at,
        updated_at: None,
        rate: p.rate_rows_per_sec,
        eta: match (p.eta_low_seconds, p.eta_high_seconds) {
            (Some(lo), Some(hi)) => Some((lo, hi)),
            _ => p.eta_seconds.map(|e| (e, e)),
        },
        checkpoint_age: p.checkpoint_age_seconds,
        live_workers: p.live_workers,
        max_rows_per_sec: i64::from(p.max_rows_per_sec),
    }
}

fn range_from_progress(r: &crate::backfill::RangeProgress) -> RangeRow {
    let bound = |b: &Option<Vec<String>>| match b {
        None => "…".to_string(),
        Some(parts) => parts.join(","),
    };
    RangeRow {
        range_id: i64::from(r.range_id),
        lo: bound(&r.lo),
        hi: bound(&r.hi),
        rows_done: r.rows_done,
        done: r.done,
        lease: if r.lease_live {
            match (&r.lease_host, r.lease_pid) {
                (Some(h), Some(p)) => Some(format!("{h}/{p}")),
                _ => r.lease_owner.clone(),
            }
        } else {
            None
        },
        updated_at: None,
    }
}

/// The entry gate of the next phase: the engine's latest evaluation (checks, probes, order,
/// freeze, observation window), with sign-offs brought up to date from this snapshot so a
/// sign-off made anywhere shows at once. Before the engine has evaluated it, sign-offs, checks and
/// the observation window are judged from the snapshot and probes show as not evaluated yet.
pub fn evaluate_gate(snap: &Snapshot, plan: &Plan, sha: &str) -> Option<GateEval> {
    let phase = snap.next_phase()?;
    let mut items = match snap.engine_gate.as_ref().filter(|g| g.phase == phase) {
        Some(g) => g
            .items
            .iter()
            .map(|i| GateItem {
                kind: match i.kind {
                    crate::engine::ItemKind::Order => GateItemKind::Order,
                    crate::engine::ItemKind::Freeze => GateItemKind::Freeze,
                    crate::engine::ItemKind::Check => GateItemKind::Check,
                    crate::engine::ItemKind::Probe => GateItemKind::Probe,
                    crate::engine::ItemKind::Signoff => GateItemKind::Signoff,
                    crate::engine::ItemKind::Observe => GateItemKind::Observe,
                },
                name: i.name.clone(),
                outcome: i.outcome,
                detail: i.detail.clone(),
            })
            .filter(|i| i.kind != GateItemKind::Signoff)
            .collect(),
        None => local_items(snap, plan, sha, phase),
    };
    items.extend(signoff_items(snap, plan, sha, phase));
    let overridden = snap
        .engine_gate
        .as_ref()
        .filter(|g| g.phase == phase)
        .is_some_and(|g| g.overridden.is_some());
    let outcome = if overridden {
        Outcome::Pass
    } else {
        Outcome::all(items.iter().map(|i| i.outcome))
    };
    Some(GateEval {
        phase,
        outcome,
        items,
    })
}

fn signoff_items(snap: &Snapshot, plan: &Plan, sha: &str, phase: Phase) -> Vec<GateItem> {
    plan.gate(phase)
        .signoffs
        .iter()
        .map(|role| {
            let signed = snap.signoffs.iter().find(|s| {
                s.gate == phase.as_str() && s.role == role.as_str() && s.plan_sha256 == sha
            });
            GateItem {
                kind: GateItemKind::Signoff,
                name: role.as_str().to_string(),
                outcome: if signed.is_some() {
                    Outcome::Pass
                } else {
                    Outcome::Fail
                },
                detail: match signed {
                    Some(s) => {
                        format!(
                            "signed by {} at {}",
                            s.login,
                            s.signed_at.format("%H:%M:%S")
                        )
                    }
                    None => "awaiting sign-off".to_string(),
                },
            }
        })
        .collect()
}

fn local_items(snap: &Snapshot, plan: &Plan, sha: &str, phase: Phase) -> Vec<GateItem> {
    let spec = plan.gate(phase);
    let mut items = Vec::new();
    for name in &spec.checks {
        let (outcome, detail) = match snap.checks.iter().find(|c| &c.name == name) {
            None => (Outcome::Inconclusive, "never run".to_string()),
            Some(c) if c.plan_sha256 != sha => (
                Outcome::Inconclusive,
                "last run was against another plan version".to_string(),
            ),
            Some(c) => (c.outcome, c.summary.clone()),
        };
        items.push(GateItem {
            kind: GateItemKind::Check,
            name: name.clone(),
            outcome,
            detail,
        });
    }
    for kind in &spec.probes {
        items.push(GateItem {
            kind: GateItemKind::Probe,
            name: kind.as_str().to_string(),
            outcome: Outcome::Inconclusive,
            detail: "not evaluated yet".to_string(),
        });
    }
    if let Some(observe) = spec.observe {
        let since = phase.prev().and_then(|p| {
            snap.phases
                .iter()
                .find(|r| r.phase == p && r.state == "applied")
                .and_then(|r| r.finished_at)
        });
        let need = chrono::Duration::from_std(observe.0).unwrap_or_default();
        let (outcome, detail) = match (since, snap.taken_at) {
            (Some(s), Some(now)) if now - s >= need => (
                Outcome::Pass,
                format!("observed for {}s", (now - s).num_seconds()),
            ),
            (Some(s), Some(now)) => (
                Outcome::Fail,
                format!(
                    "observed {}s of {}s",
                    (now - s).num_seconds(),
                    need.num_seconds()
                ),
            ),
            _ => (
                Outcome::Inconclusive,
                "the previous phase is not applied".to_string(),
            ),
        };
        items.push(GateItem {
            kind: GateItemKind::Observe,
            name: "window".to_string(),
            outcome,
            detail,
        });
    }
    items
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::engine::{GateEvaluation, GateItem as EngineItem, ItemKind};

    fn plan() -> Plan {
        Plan::parse(
            "plans/accounts-balance-cents.toml",
            include_str!("../../plans/accounts-balance-cents.toml"),
        )
        .unwrap()
    }

    fn applied(phase: Phase) -> PhaseRow {
        PhaseRow {
            phase,
            state: "applied".into(),
            started_at: None,
            finished_at: None,
            error: None,
        }
    }

    #[test]
    fn a_signoff_made_elsewhere_passes_its_gate_item_before_the_engine_reevaluates() {
        let plan = plan();
        let sha = plan.sha256();
        let item = |kind, name: &str, outcome| EngineItem {
            kind,
            name: name.into(),
            outcome,
            detail: "from the engine".into(),
            evidence: vec![],
        };
        let mut snap = Snapshot {
            phases: vec![applied(Phase::Expand)],
            engine_gate: Some(GateEvaluation {
                phase: Phase::DualWrite,
                outcome: Outcome::Fail,
                passed: false,
                overridden: None,
                items: vec![
                    item(ItemKind::Probe, "compatibility", Outcome::Pass),
                    item(ItemKind::Signoff, "app_owner", Outcome::Fail),
                ],
                blockers: vec!["sign-off app_owner".into()],
            }),
            ..Snapshot::default()
        };
        let gate = evaluate_gate(&snap, &plan, &sha).unwrap();
        assert_eq!(gate.phase, Phase::DualWrite);
        assert_eq!(gate.outcome, Outcome::Fail);
        snap.signoffs.push(SignoffRow {
            gate: "dual_write".into(),
            role: "app_owner".into(),
            login: "postgres".into(),
            os_user: "dana".into(),
            host: "ops-1".into(),
            plan_sha256: sha.clone(),
            signed_at: chrono::Utc::now(),
        });
        let gate = evaluate_gate(&snap, &plan, &sha).unwrap();
        assert_eq!(gate.outcome, Outcome::Pass, "{:?}", gate.items);
        // A sign-off of another plan version does not count.
        snap.signoffs[0].plan_sha256 = "0".repeat(64);
        assert_eq!(
            evaluate_gate(&snap, &plan, &sha).unwrap().outcome,
            Outcome::Fail
        );
    }

    #[test]
    fn without_an_engine_evaluation_probes_are_not_evaluated_yet() {
        let plan = plan();
        let gate = evaluate_gate(&Snapshot::default(), &plan, &plan.sha256()).unwrap();
        assert_eq!(gate.phase, Phase::Expand);
        let lint = gate.items.iter().find(|i| i.name == "lint").unwrap();
        assert_eq!(lint.outcome, Outcome::Inconclusive);
        assert_eq!(gate.outcome, Outcome::Fail, "the lead has not signed");
    }
}
