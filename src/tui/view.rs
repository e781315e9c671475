//! The view model: everything the screen shows, as plain data. Built from the worker's latest
//! [`Snapshot`] plus the UI's own state; the panes render it and nothing else, so rendering is a
//! pure function of this struct (and tests build it by hand).

use super::next::NextStep;
use super::progress::{Pace, Share};
use super::roster::RosterView;
use crate::control::backfill::State as BackfillState;
use crate::control::facts::Facts;
use crate::control::phases::PhaseState;
use crate::outcome::Outcome;
use crate::plan::{Environment, Phase, Plan};
use crate::rules::{CategoryKind, GateEvaluation, RollbackAdvice, Verdict};
use crate::worker::snapshot::Snapshot;
use crate::worker::{AppStatus, ConnState};

/// The whole screen.
#[derive(Debug, Clone)]
pub struct ViewModel {
    /// Top line(s).
    pub header: HeaderView,
    /// Phase timeline.
    pub timeline: TimelineView,
    /// The gate of the next phase, as the rules judge it.
    pub gate: Option<GateEvaluation>,
    /// The five readiness categories.
    pub scorecard: Vec<CategoryView>,
    /// Backfill progress.
    pub backfill: BackfillView,
    /// Latest check results.
    pub parity: Vec<CheckView>,
    /// Roles, sign-offs, connected sessions.
    pub roster: RosterView,
    /// What to do next, from the gate's blockers.
    pub next: Option<NextStep>,
    /// The demo's app versions (only in the demo).
    pub app: Option<AppStatus>,
    /// Running the demo (its app can be rolled with `:app`).
    pub demo: bool,
    /// This process's metrics endpoint, if it serves one.
    pub metrics_url: Option<String>,
    /// UI state: focus, overlays, status line.
    pub ui: UiView,
    /// Which migration this is when several are open, and the picker (`m`) if it is open.
    pub switcher: Option<SwitcherView>,
}

/// Several migrations open at once (`cutover tui A B …`).
#[derive(Debug, Clone, Default, PartialEq)]
pub struct SwitcherView {
    /// The migration on screen, 0-based.
    pub active: usize,
    /// How many are open.
    pub total: usize,
    /// The migrations picker, when open.
    pub picker: Option<PickerView>,
}

/// The migrations picker: one row per open migration.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct PickerView {
    /// In the order they were opened.
    pub rows: Vec<MigrationRow>,
    /// The highlighted row (Enter switches to it).
    pub selected: usize,
}

/// One migration in the picker, from its own view model.
#[derive(Debug, Clone, PartialEq)]
pub struct MigrationRow {
    /// Plan id.
    pub plan_id: String,
    /// Plan title.
    pub title: String,
    /// The one on screen.
    pub active: bool,
    /// Its latest phase that is not pending, with that phase's state (`None`: nothing started).
    pub phase: Option<(Phase, PhaseState)>,
    /// The next gate's verdict.
    pub gate: GateVerdict,
    /// Backfill progress while it runs: its state and the percentage done (`41.2%`), if known.
    pub backfill: Option<(BackfillState, Option<String>)>,
}

/// The next gate, as the picker sums it up.
#[derive(Debug, Clone, PartialEq)]
pub enum GateVerdict {
    /// No snapshot yet, or the database is unreachable.
    Unknown(String),
    /// Every phase is applied.
    Done,
    /// The gate of `phase`, judged by the rules (the same verdict the panes and `status` show).
    Gate {
        /// The phase the gate guards.
        phase: Phase,
        /// Its verdict.
        verdict: Verdict,
        /// How many items block (not Pass).
        blockers: usize,
        /// The first of them.
        first: Option<String>,
    },
}

/// The header.
#[derive(Debug, Clone, Default)]
pub struct HeaderView {
    /// Plan id.
    pub plan_id: String,
    /// Plan title.
    pub title: String,
    /// The server, password masked.
    pub database: String,
    /// The plan's environment (`production` shows in red).
    pub environment: Environment,
    /// Connection state.
    pub conn: Option<ConnState>,
    /// Who I am (`login (os_user@host)`), once connected.
    pub whoami: Option<String>,
    /// My roles in this plan.
    pub roles: Vec<String>,
    /// `--read-only`.
    pub read_only: bool,
    /// Encrypted?, and how (`TLSv1.3 (…), certificate verified for db.example`).
    pub security: Option<(bool, String)>,
}

impl HeaderView {
    /// True for production environments.
    pub fn is_production(&self) -> bool {
        self.environment.is_production()
    }
}

/// One phase on the timeline.
#[derive(Debug, Clone)]
pub struct PhaseView {
    /// Which.
    pub phase: Phase,
    /// Its state.
    pub state: PhaseState,
    /// Cannot be rolled back.
    pub irreversible: bool,
    /// When its latest run started.
    pub started_at: Option<chrono::DateTime<chrono::Utc>>,
    /// When its latest run ended.
    pub finished_at: Option<chrono::DateTime<chrono::Utc>>,
}

/// The phase timeline.
#[derive(Debug, Clone, Default)]
pub struct TimelineView {
    /// All five phases, in order.
    pub phases: Vec<PhaseView>,
    /// Where we are.
    pub current: Option<Phase>,
    /// What comes next.
    pub next: Option<Phase>,
    /// The fastest safe rollback from where the migration stands.
    pub rollback: Option<RollbackAdvice>,
    /// The phase's concurrent index builds running now.
    pub index_builds: Vec<crate::control::index_builds::IndexBuild>,
}

/// One readiness category.
#[derive(Debug, Clone)]
pub struct CategoryView {
    /// Which category.
    pub kind: CategoryKind,
    /// Compatibility, Data quality, …
    pub name: &'static str,
    /// Combined outcome.
    pub outcome: Outcome,
    /// Evidence lines (each starts with its own outcome).
    pub evidence: Vec<(Outcome, String)>,
}

/// The backfill pane.
#[derive(Debug, Clone, Default)]
pub struct BackfillView {
    /// The plan has a backfill at all.
    pub configured: bool,
    /// Its state (`None`: not started).
    pub state: Option<BackfillState>,
    /// Throttle or pause reason.
    pub reason: String,
    /// Rows written.
    pub rows_done: i64,
    /// Rows in total (estimate).
    pub rows_total: Option<i64>,
    /// Rows/s history, oldest first.
    pub rates: Vec<u64>,
    /// ETA band in seconds (fast, slow), from the recent rates; `None` when done.
    pub eta: Option<(u64, u64)>,
    /// Throughput as the backfill measures it (start to start, within the rate cap).
    pub rate: Option<u64>,
    /// Share of the elapsed time spent throttled (0–1).
    pub throttled_share: Option<f64>,
    /// Last chunk rows.
    pub chunk_rows: Option<i64>,
    /// Last chunk time.
    pub chunk_ms: Option<i64>,
    /// Target chunk time.
    pub target_ms: i64,
    /// Seconds spent throttled.
    pub throttled_seconds: f64,
    /// Worker ranges.
    pub ranges: Vec<RangeView>,
    /// Per leaf partition (empty for a plain table).
    pub partitions: Vec<crate::backfill::PartitionProgress>,
    /// Seconds since the newest checkpoint.
    pub checkpoint_age: Option<i64>,
    /// Workers holding a live lease now.
    pub live_workers: i64,
    /// Maximum concurrent workers.
    pub max_workers: i64,
    /// Workers allowed while the application is idle.
    pub idle_workers: i64,
    /// Rate cap in rows/s (0 = none).
    pub rate_cap: i64,
    /// The latency guard's readings over time.
    pub latency: LatencyView,
    /// How rows reach the new shape: `copy into public.t` (`None`: updated in place).
    pub copy_into: Option<String>,
    /// The dual-write is CDC: its lag, `None` until the applier's slot exists.
    pub cdc: Option<Option<CdcLagView>>,
    /// The cluster's replication slots.
    pub slots: Vec<super::slots::SlotView>,
}

/// How far the CDC applier is behind.
#[derive(Debug, Clone, PartialEq)]
pub struct CdcLagView {
    /// WAL bytes not yet confirmed by the applier.
    pub bytes: i64,
    /// Seconds since it was last caught up (`None`: never).
    pub seconds: Option<f64>,
    /// The replication slot exists.
    pub slot_exists: bool,
}

/// The application's latency ratio against its budget, as the latency guard read it.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct LatencyView {
    /// The ratio allowed (`max_app_latency_ratio`).
    pub budget: f64,
    /// (seconds before now, ratio), oldest first.
    pub ratios: Vec<(f64, f64)>,
    /// The signal of the latest reading (`commit latency`).
    pub signal: Option<String>,
}

impl BackfillView {
    /// Rows done, the total and the percentage: the one computation every pane shows.
    pub fn share(&self) -> Share {
        Share::new(self.state, self.rows_done, self.rows_total)
    }

    /// Percent done as `cutover backfill status` computes it (100 only once done); `None`
    /// while the total is unknown.
    pub fn percent(&self) -> Option<f64> {
        self.share().percent
    }

    /// Held back, pacing, or free.
    pub fn pace(&self) -> Pace {
        Pace::of(self.state, &self.reason)
    }
}

/// One worker range.
#[derive(Debug, Clone)]
pub struct RangeView {
    /// Range number.
    pub id: i64,
    /// `lo..hi`.
    pub bounds: String,
    /// Rows done.
    pub rows: i64,
    /// Finished.
    pub done: bool,
    /// Lease holder.
    pub lease: Option<String>,
}

/// One check's latest result.
#[derive(Debug, Clone)]
pub struct CheckView {
    /// Check name.
    pub name: String,
    /// Kind.
    pub kind: String,
    /// Outcome, if it ever ran.
    pub outcome: Option<Outcome>,
    /// Mismatching rows.
    pub mismatches: Option<i64>,
    /// Summary.
    pub summary: String,
    /// `HH:MM:SS (age)` of the last run.
    pub last_run: Option<String>,
    /// The outcomes of its recent runs, oldest first.
    pub recent: Vec<Outcome>,
}

/// Which pane has focus.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Focus {
    /// Readiness scorecard.
    #[default]
    Scorecard,
    /// Phase timeline.
    Timeline,
    /// Backfill.
    Backfill,
    /// Parity.
    Parity,
    /// Roster.
    Roster,
    /// Log.
    Log,
}

impl Focus {
    /// Tab order.
    pub const ORDER: [Focus; 6] = [
        Focus::Timeline,
        Focus::Scorecard,
        Focus::Backfill,
        Focus::Parity,
        Focus::Roster,
        Focus::Log,
    ];

    /// The next pane in tab order (`forward`) or the previous one.
    pub fn step(self, forward: bool) -> Focus {
        let i = Focus::ORDER.iter().position(|f| *f == self).unwrap_or(0);
        let n = Focus::ORDER.len();
        Focus::ORDER[if forward {
            (i + 1) % n
        } else {
            (i + n - 1) % n
        }]
    }
}

/// An overlay over the panes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Overlay {
    /// The key help.
    Help,
    /// Red rollback confirmation.
    ConfirmRollback(RollbackAdvice),
    /// Confirmation before applying an irreversible phase.
    ConfirmAdvance {
        /// The phase to apply.
        phase: Phase,
    },
    /// Why the gate blocks.
    Blockers {
        /// The gate.
        phase: Phase,
        /// One line each.
        lines: Vec<String>,
    },
    /// Ctrl-C: really quit?
    ConfirmQuit,
}

/// The UI's own state, as rendered.
#[derive(Debug, Clone, Default)]
pub struct UiView {
    /// Focused pane.
    pub focus: Focus,
    /// Open overlay.
    pub overlay: Option<Overlay>,
    /// `:` command line being typed.
    pub command_line: Option<String>,
    /// `/` search being typed (Some while typing).
    pub search_input: Option<String>,
    /// Active search term for the log.
    pub search: String,
    /// Log level filter name.
    pub log_level: String,
    /// Last status message and whether it is an error.
    pub status: Option<(String, bool)>,
    /// Actions in flight.
    pub pending: Vec<String>,
    /// Scroll offset of the focused list pane.
    pub scroll: u16,
    /// Columns the focused pane's text is scrolled sideways (`<` `>`); 0: its lines wrap.
    pub hscroll: u16,
    /// The focused pane fills the body (`z`).
    pub zoom: bool,
}

/// Builds the data part of the view model (the UI part is filled by the app).
pub fn build(
    plan: &Plan,
    database: &str,
    read_only: bool,
    conn: Option<&ConnState>,
    snap: Option<&Snapshot>,
) -> ViewModel {
    let empty;
    let s = match snap {
        Some(s) => s,
        None => {
            empty = Snapshot::from_facts(plan, Facts::unregistered(plan.id(), chrono::Utc::now()));
            &empty
        }
    };
    let login = s.actor.as_ref().map(|a| a.login.clone());
    let header = HeaderView {
        plan_id: plan.id().to_string(),
        title: plan.spec.title.clone(),
        database: database.to_string(),
        environment: plan.spec.environment.clone(),
        conn: conn.cloned(),
        whoami: s.actor.as_ref().map(|a| a.to_string()),
        roles: login
            .as_deref()
            .map(|l| {
                plan.roles_of(l)
                    .iter()
                    .map(|r| r.as_str().to_string())
                    .collect()
            })
            .unwrap_or_default(),
        read_only,
        security: s.security.as_ref().map(|c| (c.encrypted(), c.summary())),
    };
    let timeline = TimelineView {
        phases: Phase::ALL
            .iter()
            .map(|p| PhaseView {
                phase: *p,
                state: s.phase_state(*p),
                irreversible: !plan.phase(*p).reversible(),
                started_at: s.facts.phase(*p).started_at,
                finished_at: s.facts.phase(*p).finished_at,
            })
            .collect(),
        current: s.current_phase(),
        next: if snap.is_some() { s.next_phase() } else { None },
        rollback: s.status.rollback.clone(),
        index_builds: s.index_builds.clone(),
    };
    ViewModel {
        scorecard: scorecard(s, snap.is_some()),
        backfill: backfill(plan, s),
        parity: parity(plan, s),
        roster: super::roster::roster(plan, s),
        gate: if snap.is_some() {
            s.gate().cloned()
        } else {
            None
        },
        header,
        timeline,
        next: None,
        app: s.app,
        demo: false,
        metrics_url: None,
        ui: UiView::default(),
        switcher: None,
    }
}

/// The rules' scorecard, one category per line group: its evidence, then its owner's sign-off.
fn scorecard(s: &Snapshot, loaded: bool) -> Vec<CategoryView> {
    s.status
        .scorecard
        .categories
        .iter()
        .map(|c| {
            let evidence = if loaded {
                c.evidence
                    .iter()
                    .chain([&c.signoff])
                    .map(|e| (e.outcome, format!("{}: {}", e.name, e.detail)))
                    .collect()
            } else {
                vec![(
                    Outcome::Inconclusive,
                    "waiting for the first snapshot".to_string(),
                )]
            };
            CategoryView {
                kind: c.kind,
                name: c.kind.title(),
                outcome: if loaded {
                    c.outcome
                } else {
                    Outcome::Inconclusive
                },
                evidence,
            }
        })
        .collect()
}

fn backfill(plan: &Plan, s: &Snapshot) -> BackfillView {
    let configured = plan.spec.backfill.is_some();
    let target = plan
        .spec
        .backfill
        .as_ref()
        .map(|b| b.target_chunk_time.as_millis() as i64)
        .unwrap_or(0);
    let copy_into = plan
        .spec
        .backfill
        .as_ref()
        .filter(|b| b.mode == crate::plan::BackfillMode::Copy)
        .and_then(|b| b.into.clone());
    let cdc = plan.spec.is_cdc().then(|| {
        s.cdc.as_ref().map(|l| CdcLagView {
            bytes: l.bytes,
            seconds: l.seconds,
            slot_exists: l.slot_exists,
        })
    });
    let slots = super::slots::views(plan, &s.facts);
    let Some(b) = &s.backfill else {
        return BackfillView {
            configured,
            target_ms: target,
            copy_into,
            cdc,
            slots,
            ..BackfillView::default()
        };
    };
    let remaining = b.rows_estimate.map(|t| (t - b.rows_done).max(0));
    let recent: Vec<u64> = s.rate_history.iter().rev().take(30).copied().collect();
    let done = b.state == BackfillState::Done;
    let eta = match b.eta {
        Some((lo, hi)) if !done => Some((lo.round() as u64, hi.round() as u64)),
        _ => None,
    }
    .or(match (remaining, recent.is_empty()) {
        (Some(r), false) if r > 0 && !done => {
            let mut sorted = recent.clone();
            sorted.sort_unstable();
            let slow = sorted[sorted.len() / 4] as f64;
            let fast = sorted[(sorted.len() * 3) / 4] as f64;
            (slow > 0.0).then(|| ((r as f64 / fast) as u64, (r as f64 / slow) as u64))
        }
        _ => None,
    });
    let cap = u64::try_from(b.max_rows_per_sec).unwrap_or(0);
    let capped = |r: u64| if cap > 0 { r.min(cap) } else { r };
    let elapsed = b
        .started_at
        .map(|t| (b.finished_at.unwrap_or(s.facts.now) - t).num_milliseconds() as f64 / 1000.0);
    let newest = s.ranges.iter().filter_map(|r| r.updated_at).max();
    BackfillView {
        configured,
        state: Some(b.state),
        reason: b.reason.clone(),
        rows_done: b.rows_done,
        rows_total: b.rows_estimate,
        rates: s.rate_history.iter().map(|r| capped(*r)).collect(),
        eta,
        rate: b.rate.map(|r| capped(r.max(0.0).round() as u64)),
        throttled_share: elapsed
            .filter(|e| *e > 0.0)
            .map(|e| (b.throttled_seconds / e).clamp(0.0, 1.0)),
        chunk_rows: b.chunk_rows,
        chunk_ms: b.chunk_ms,
        target_ms: b.target_chunk_ms,
        throttled_seconds: b.throttled_seconds,
        ranges: s
            .ranges
            .iter()
            .map(|r| RangeView {
                id: r.range_id,
                bounds: format!("({}, {}]", r.lo, r.hi),
                rows: r.rows_done,
                done: r.done,
                lease: r.lease.clone(),
            })
            .collect(),
        live_workers: b.live_workers,
        max_workers: b.workers,
        idle_workers: b.idle_workers,
        rate_cap: b.max_rows_per_sec,
        partitions: s.partitions.clone(),
        checkpoint_age: match (b.checkpoint_age, newest) {
            (Some(age), _) => Some(age.round() as i64),
            (None, Some(t)) => Some((s.facts.now - t).num_seconds().max(0)),
            _ => None,
        },
        latency: latency(s),
        copy_into,
        cdc,
        slots,
    }
}

/// The guard's readings relative to the snapshot's time.
fn latency(s: &Snapshot) -> LatencyView {
    let Some(g) = &s.guard else {
        return LatencyView::default();
    };
    LatencyView {
        budget: g.budget,
        ratios: g
            .readings
            .iter()
            .map(|r| {
                let ago = (s.facts.now - r.at).num_milliseconds() as f64 / 1000.0;
                (ago.max(0.0), r.ratio)
            })
            .collect(),
        signal: g.latest.as_ref().map(|r| r.signal.clone()),
    }
}

fn parity(plan: &Plan, s: &Snapshot) -> Vec<CheckView> {
    plan.spec
        .checks
        .iter()
        .map(|c| {
            let r = s.facts.checks.iter().find(|r| r.name == c.name);
            CheckView {
                name: c.name.clone(),
                kind: c.kind.name().to_string(),
                outcome: r.map(|r| r.outcome),
                mismatches: r.and_then(|r| r.mismatches),
                summary: r.map(|r| r.summary.clone()).unwrap_or_default(),
                recent: s
                    .check_history
                    .iter()
                    .filter(|h| h.name == c.name)
                    .map(|h| h.outcome)
                    .collect(),
                last_run: r.map(|r| {
                    format!(
                        "{} ({} ago)",
                        r.started_at.format("%H:%M:%S"),
                        super::progress::human_secs((s.facts.now - r.started_at).num_seconds())
                    )
                }),
            }
        })
        .collect()
}
