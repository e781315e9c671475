//! What the worker reads from the control schema and the server, as plain data the UI can render
//! without touching the database. The verdicts in it are the rules' own ([`Status`]), so the TUI
//! and `cutover status` cannot disagree.

use chrono::{DateTime, Utc};
use tokio_postgres::Client;

use crate::control::audit::Actor;
use crate::control::backfill::State as BackfillState;
use crate::control::facts::Facts;
use crate::control::index_builds::{self, IndexBuild};
use crate::control::outbox::DeliverySummary;
use crate::control::phases::PhaseState;
use crate::db::DbError;
use crate::engine::Status;
use crate::plan::{Phase, Plan};
use crate::rules::GateEvaluation;

/// Runs of each check the Parity pane draws.
pub const CHECK_HISTORY: i64 = 20;

/// Everything the panes need, read in one pass.
#[derive(Debug, Clone)]
pub struct Snapshot {
    /// The operator behind this worker's connection.
    pub actor: Option<Actor>,
    /// The control-schema facts, read in one consistent statement.
    pub facts: Facts,
    /// The verdicts on those facts — exactly what `cutover status` shows.
    pub status: Status,
    /// The backfill's progress, once it has started.
    pub backfill: Option<BackfillRow>,
    /// Rows done, the total and the percent as `backfill status` computes them (a plan with a
    /// backfill, started or not).
    pub share: Option<crate::backfill::Share>,
    /// The backfill's key ranges.
    pub ranges: Vec<RangeRow>,
    /// The backfill per leaf partition (empty for a plain table).
    pub partitions: Vec<crate::backfill::PartitionProgress>,
    /// The last [`CHECK_HISTORY`] runs of each check, by check name, oldest first.
    pub check_history: Vec<crate::control::checks::CheckRun>,
    /// The latency guard's readings, once the backfill has started.
    pub guard: Option<crate::backfill::progress::GuardProgress>,
    /// The CDC applier's lag (a CDC plan whose slot was created).
    pub cdc: Option<crate::cdc::Lag>,
    /// Cutover sessions connected to this database now.
    pub sessions: Vec<SessionRow>,
    /// The plan's concurrent index builds running now.
    pub index_builds: Vec<IndexBuild>,
    /// The most recent audit entries of this plan, newest first.
    pub audit: Vec<AuditRow>,
    /// Rows per second between recent snapshots, oldest first (the worker keeps the history).
    pub rate_history: Vec<u64>,
    /// How the worker's connection is protected (TLS version, what was verified).
    pub security: Option<crate::db::ConnSecurity>,
    /// The application's versions in service (the demo's app only).
    pub app: Option<super::app::AppStatus>,
    /// The plan's notification deliveries (only when it has `[[notify]]` targets).
    pub notify: Option<DeliverySummary>,
}

/// `cutover.backfill`, with the columns later versions may add read when present.
#[derive(Debug, Clone)]
pub struct BackfillRow {
    /// State.
    pub state: BackfillState,
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
    /// Workers allowed while the application is idle.
    pub idle_workers: i64,
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

impl Snapshot {
    /// A snapshot of `facts` with nothing else known yet.
    pub fn from_facts(plan: &Plan, facts: Facts) -> Snapshot {
        Snapshot {
            actor: None,
            status: crate::rules::status::build(plan, &facts),
            facts,
            backfill: None,
            share: None,
            check_history: Vec::new(),
            ranges: Vec::new(),
            partitions: Vec::new(),
            guard: None,
            cdc: None,
            sessions: Vec::new(),
            index_builds: Vec::new(),
            audit: Vec::new(),
            rate_history: Vec::new(),
            security: None,
            app: None,
            notify: None,
        }
    }

    /// The state of `phase`.
    pub fn phase_state(&self, phase: Phase) -> PhaseState {
        self.facts.state(phase)
    }

    /// The furthest phase that is applied (or being applied / rolled back / failed).
    pub fn current_phase(&self) -> Option<Phase> {
        Phase::ALL.into_iter().rev().find(|p| {
            !matches!(
                self.phase_state(*p),
                PhaseState::Pending | PhaseState::RolledBack
            )
        })
    }

    /// The phase whose entry gate comes next.
    pub fn next_phase(&self) -> Option<Phase> {
        self.status.next_phase
    }

    /// The gate of the next phase, as the rules judge it.
    pub fn gate(&self) -> Option<&GateEvaluation> {
        self.status.gate.as_ref()
    }
}

/// Reads a full snapshot for `plan`: the facts (judged at once), backfill progress, sessions,
/// the recent audit entries and the notification deliveries. Read-only, in one transaction
/// (`client` must be idle), so a poll adds one transaction to the database's counters rather
/// than one per statement.
pub async fn load(client: &Client, plan: &Plan) -> Result<Snapshot, DbError> {
    client.batch_execute("START TRANSACTION READ ONLY").await?;
    let snap = read(client, plan).await;
    let ended = client
        .batch_execute(if snap.is_ok() { "COMMIT" } else { "ROLLBACK" })
        .await;
    let snap = snap?;
    ended?;
    Ok(snap)
}

/// The reads of [`load`], inside its transaction.
async fn read(client: &Client, plan: &Plan) -> Result<Snapshot, DbError> {
    let facts = Facts::load(client, plan.id()).await?;
    let mut snap = Snapshot::from_facts(plan, facts);
    if plan.spec.backfill.is_some() {
        let p = crate::backfill::progress(client, plan)
            .await
            .map_err(|e| DbError::Query(e.to_string()))?;
        let started = p.started_at.is_some() || p.state != BackfillState::Idle;
        snap.ranges = p.ranges.iter().map(range_from_progress).collect();
        snap.partitions = p.partitions.clone();
        snap.backfill = started.then(|| backfill_from_progress(&p));
        snap.share = Some(p.share());
        snap.guard = started.then_some(p.guard);
    }
    if plan.spec.is_cdc() {
        snap.cdc = crate::cdc::lag(client, plan.id())
            .await
            .map_err(|e| DbError::Query(e.to_string()))?;
    }
    snap.sessions = client
        .query(
            "SELECT pid, application_name, coalesce(usename::text, '') AS login,
                    coalesce(host(client_addr), 'local') AS client, coalesce(state, '') AS state
               FROM pg_stat_activity
              WHERE application_name LIKE 'cutover/%' AND datname = current_database()
              ORDER BY backend_start",
            &[],
        )
        .await?
        .iter()
        .map(|r| SessionRow {
            pid: r.get("pid"),
            application_name: r.get("application_name"),
            login: r.get("login"),
            client: r.get("client"),
            state: r.get("state"),
        })
        .collect();
    snap.index_builds = index_builds::of_plan(client, plan.id()).await?;
    snap.check_history =
        crate::control::checks::recent_runs(client, plan.id(), CHECK_HISTORY).await?;
    snap.audit = crate::control::audit::recent(client, plan.id(), 50)
        .await?
        .into_iter()
        .map(|e| AuditRow {
            seq: e.seq,
            at: e.at,
            login: e.login,
            action: e.action,
            phase: e.phase,
        })
        .collect();
    if !plan.spec.notify.is_empty() {
        let mut summary = crate::control::outbox::summary(client, plan.id()).await?;
        if let Some(f) = &mut summary.latest_failure {
            f.last_error = crate::notify::scrub_error(plan, &f.last_error);
        }
        snap.notify = Some(summary);
    }
    Ok(snap)
}

fn backfill_from_progress(p: &crate::backfill::Progress) -> BackfillRow {
    BackfillRow {
        state: p.state,
        reason: p.reason.clone(),
        paused_by: p.paused_by.clone(),
        target_chunk_ms: i64::from(p.target_chunk_ms),
        rows_done: p.rows_done,
        rows_estimate: Some(p.rows_total),
        throttled_seconds: p.throttled_seconds,
        workers: i64::from(p.workers),
        idle_workers: i64::from(p.idle_workers),
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
