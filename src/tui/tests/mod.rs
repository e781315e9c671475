//! Snapshot tests of each pane and the whole screen in key states, rendered with `TestBackend`
//! from hand-built snapshots (no database, no global log buffer).

use std::time::{Duration, Instant};

use chrono::{DateTime, TimeZone, Utc};
use crossterm::event::{KeyCode, KeyEvent, KeyModifiers};
use ratatui::backend::TestBackend;
use ratatui::layout::Rect;
use ratatui::Terminal;

use super::app::{Action, App, CONFIRM_ARMING};
use super::panes::log::LogSource;
use super::switcher::{Routed, Switcher};
use super::theme::Theme;
use super::view::{Focus, GateVerdict, Overlay, ViewModel};
use crate::control::audit::Actor;
use crate::control::backfill::State as BackfillState;
use crate::control::facts::{
    BackfillFact, CheckFact, Facts, OverrideFact, ProbeFact, Registration, SignoffFact,
    TransitionFact,
};
use crate::control::outbox::{DeliveryState, DeliverySummary, FailedDelivery};
use crate::control::phases::{PhaseRow, PhaseState};
use crate::outcome::Outcome;
use crate::plan::{Phase, Plan, Role};
use crate::rules::{RollbackStep, Verdict};
use crate::worker::snapshot::{AuditRow, BackfillRow, RangeRow, SessionRow, Snapshot};
use crate::worker::{AppStatus, AppVersion, Command, ConnState, WorkerEvent};

fn at(h: u32, m: u32, s: u32) -> DateTime<Utc> {
    Utc.with_ymd_and_hms(2026, 11, 22, h, m, s)
        .single()
        .unwrap()
}

fn plan() -> Plan {
    Plan::parse(
        "plans/accounts-balance-cents.toml",
        include_str!("../../../plans/accounts-balance-cents.toml"),
    )
    .unwrap()
}

const DB: &str = "postgres://postgres:***@db.example.com:5432/bank";

fn applied(phase: Phase, finished: DateTime<Utc>) -> PhaseRow {
    PhaseRow {
        phase,
        state: PhaseState::Applied,
        plan_sha256: None,
        started_at: Some(finished - chrono::Duration::seconds(2)),
        finished_at: Some(finished),
        error: None,
    }
}

fn signoff(gate: Phase, role: &str, t: DateTime<Utc>, sha: &str) -> SignoffFact {
    SignoffFact {
        gate,
        role: role.into(),
        login: "postgres".into(),
        os_user: "dana".into(),
        host: "ops-1".into(),
        plan_sha256: sha.into(),
        signed_at: t,
    }
}

fn check(name: &str, kind: &str, outcome: Outcome, summary: &str, sha: &str) -> CheckFact {
    CheckFact {
        name: name.into(),
        kind: kind.into(),
        outcome,
        summary: summary.into(),
        started_at: at(5, 10, 0),
        duration_ms: 840,
        rows_scanned: 1_000_000,
        mismatches: if kind == "expression_parity" {
            Some(if outcome == Outcome::Pass { 0 } else { 412_000 })
        } else {
            None
        },
        partitions: Vec::new(),
        plan_sha256: sha.into(),
    }
}

fn probe(gate: Phase, name: &str, outcome: Outcome, summary: &str, t: DateTime<Utc>) -> ProbeFact {
    ProbeFact {
        gate,
        probe: name.into(),
        outcome,
        summary: summary.into(),
        evidence: Vec::new(),
        plan_sha256: plan().sha256(),
        at: t,
    }
}

/// Re-judges the snapshot's facts, as the worker does on every read.
fn judged(mut s: Snapshot) -> Snapshot {
    s.status = crate::rules::status::build(&plan(), &s.facts);
    s
}

/// Nothing applied yet: the expand gate waits for the lead's sign-off.
fn fresh() -> Snapshot {
    let plan = plan();
    let mut facts = Facts::unregistered(plan.id(), at(5, 12, 0));
    facts.registration = Some(Registration {
        plan_sha256: plan.sha256(),
        created_at: at(4, 50, 0),
    });
    facts.probes = vec![
        probe(
            Phase::Expand,
            "lint",
            Outcome::Pass,
            "no breaking DDL",
            at(5, 11, 50),
        ),
        probe(
            Phase::Expand,
            "compatibility",
            Outcome::Pass,
            "3 old-app queries ran",
            at(5, 11, 50),
        ),
    ];
    let mut s = Snapshot::from_facts(&plan, facts);
    s.actor = Some(Actor {
        login: "postgres".into(),
        os_user: "dana".into(),
        host: "ops-1".into(),
    });
    s.sessions = vec![SessionRow {
        pid: 4242,
        application_name: "cutover/tui".into(),
        login: "postgres".into(),
        client: "10.0.0.7".into(),
        state: "idle".into(),
    }];
    s
}

/// Expand, dual-write and backfill applied; the backfill is running with a worker range.
fn backfill_running() -> Snapshot {
    let plan = plan();
    let sha = plan.sha256();
    let mut s = fresh();
    s.facts.phases[0] = applied(Phase::Expand, at(5, 0, 0));
    s.facts.phases[1] = applied(Phase::DualWrite, at(5, 2, 0));
    s.facts.phases[2] = applied(Phase::Backfill, at(5, 3, 0));
    s.facts.transitions = vec![TransitionFact {
        phase: Phase::Backfill,
        to_state: PhaseState::Applied,
        at: at(5, 3, 0),
    }];
    s.facts.signoffs = vec![
        signoff(Phase::Expand, "lead", at(4, 59, 0), &sha),
        signoff(Phase::DualWrite, "app_owner", at(5, 1, 0), &sha),
        signoff(Phase::Backfill, "data_owner", at(5, 2, 30), &sha),
    ];
    s.facts.backfill = Some(BackfillFact {
        state: BackfillState::Running,
        reason: String::new(),
        paused_by: None,
        rows_done: 412_000,
        rows_estimate: Some(1_000_000),
        throttled_seconds: 12.0,
        state_changed_at: Some(at(5, 3, 0)),
    });
    s.backfill = Some(BackfillRow {
        state: BackfillState::Running,
        reason: String::new(),
        paused_by: None,
        target_chunk_ms: 300,
        rows_done: 412_000,
        rows_estimate: Some(1_000_000),
        throttled_seconds: 12.0,
        workers: 1,
        idle_workers: 2,
        chunk_rows: Some(9_500),
        chunk_ms: Some(281),
        started_at: Some(at(5, 3, 0)),
        finished_at: None,
        updated_at: Some(at(5, 11, 59)),
        rate: Some(34_500.0),
        eta: Some((15.0, 19.0)),
        checkpoint_age: Some(1.0),
        live_workers: 1,
        max_rows_per_sec: 0,
    });
    s.ranges = vec![RangeRow {
        range_id: 0,
        lo: "1".into(),
        hi: "1000000".into(),
        rows_done: 412_000,
        done: false,
        lease: Some("ops-1/4242".into()),
        updated_at: Some(at(5, 11, 59)),
    }];
    s.rate_history = (0..60).map(|i| 30_000 + (i % 7) * 1_500).collect();
    s.facts.checks = vec![
        check(
            "balance-parity",
            "expression_parity",
            Outcome::Fail,
            "412,000 rows differ",
            &sha,
        ),
        check(
            "no-negative-balance",
            "invariant",
            Outcome::Pass,
            "0 = 0",
            &sha,
        ),
    ];
    s.audit = vec![AuditRow {
        seq: 7,
        at: "2026-11-22T05:03:00.000000Z".into(),
        login: "postgres".into(),
        action: "advance".into(),
        phase: Some("backfill".into()),
    }];
    judged(s)
}

fn throttled() -> Snapshot {
    let mut s = backfill_running();
    if let Some(b) = s.backfill.as_mut() {
        b.state = BackfillState::Throttled;
        b.reason = "replay lag 6.2s > max 5s on replica r1".into();
    }
    s.rate_history.extend([0, 0, 0]);
    s
}

fn app_with(s: Snapshot) -> App {
    app_of(plan(), s)
}

/// A connected app of `plan` showing `s`.
fn app_of(plan: Plan, s: Snapshot) -> App {
    let mut app = App::new(plan, DB.into(), false);
    app.on_worker(WorkerEvent::Conn(ConnState::Connected));
    app.on_worker(WorkerEvent::Snapshot(Box::new(s)));
    app
}

/// Marks the backfill done (all 1,000,000 rows), in the facts and in its row.
fn backfill_done(s: &mut Snapshot) {
    if let Some(b) = s.facts.backfill.as_mut() {
        b.state = BackfillState::Done;
        b.rows_done = 1_000_000;
    }
    if let Some(b) = s.backfill.as_mut() {
        b.state = BackfillState::Done;
        b.rows_done = 1_000_000;
    }
}

const LOG: &[&str] = &[
    "05:11:58 I worker: change notified: backfill",
    "05:11:59 I audit: signoff by postgres",
    "05:12:00 W backfill: throttled: replay lag 6.2s",
];

fn screen(vm: &ViewModel, w: u16, h: u16) -> String {
    let lines: Vec<String> = LOG.iter().map(|s| s.to_string()).collect();
    let mut t = Terminal::new(TestBackend::new(w, h)).unwrap();
    t.draw(|f| super::draw(f, vm, &Theme::mono(), LogSource::Lines(&lines)))
        .unwrap();
    format!("{}", t.backend())
}

fn pane(
    vm: &ViewModel,
    w: u16,
    h: u16,
    f: fn(&mut ratatui::Frame, Rect, &ViewModel, &Theme),
) -> String {
    let mut t = Terminal::new(TestBackend::new(w, h)).unwrap();
    t.draw(|fr| f(fr, fr.area(), vm, &Theme::mono())).unwrap();
    format!("{}", t.backend())
}

fn key(c: char) -> KeyEvent {
    KeyEvent::new(KeyCode::Char(c), KeyModifiers::NONE)
}

/// The backfill finished and the read switch applied `secs` seconds ago; the contract gate's
/// checks and probes passed after it, the lead and sre have not signed yet; the app runs v1.
fn at_contract(secs: i64) -> Snapshot {
    let plan = plan();
    let sha = plan.sha256();
    let mut s = backfill_running();
    let switched = at(5, 20, 0);
    s.facts.now = switched + chrono::Duration::seconds(secs);
    s.facts.phases[3] = applied(Phase::ReadSwitch, switched);
    s.facts.transitions.push(TransitionFact {
        phase: Phase::ReadSwitch,
        to_state: PhaseState::Applied,
        at: switched,
    });
    backfill_done(&mut s);
    sign(
        &mut s,
        Phase::ReadSwitch,
        &["data_owner", "lead"],
        at(5, 19, 0),
    );
    s.facts.checks = [
        "balance-parity",
        "balance-drift",
        "no-negative-balance",
        "ledger-total",
    ]
    .iter()
    .map(|name| CheckFact {
        started_at: switched + chrono::Duration::milliseconds(500),
        ..check(name, "invariant", Outcome::Pass, "ok", &sha)
    })
    .collect();
    let after = switched + chrono::Duration::milliseconds(800);
    s.facts.probes.extend([
        probe(
            Phase::Contract,
            "error_budget",
            Outcome::Pass,
            "error budget holds",
            after,
        ),
        probe(
            Phase::Contract,
            "hidden_readers",
            Outcome::Pass,
            "no readers",
            after,
        ),
    ]);
    s.app = Some(AppStatus {
        serving: AppVersion::V1,
        draining: None,
    });
    judged(s)
}

fn with_probe(mut s: Snapshot, name: &str, outcome: Outcome) -> Snapshot {
    for p in s.facts.probes.iter_mut().filter(|p| p.probe == name) {
        p.outcome = outcome;
    }
    judged(s)
}

/// Sign-offs of `gate` by `roles` at `t`, on the demo plan's hash.
fn sign(s: &mut Snapshot, gate: Phase, roles: &[&str], t: DateTime<Utc>) {
    let sha = plan().sha256();
    for role in roles {
        s.facts.signoffs.push(signoff(gate, role, t, &sha));
    }
}

fn signed_contract(mut s: Snapshot) -> Snapshot {
    sign(&mut s, Phase::Contract, &["lead", "sre"], at(5, 20, 1));
    judged(s)
}

fn on_v2(mut s: Snapshot, draining: bool) -> Snapshot {
    s.app = Some(AppStatus {
        serving: AppVersion::V2,
        draining: draining.then_some(AppVersion::V1),
    });
    s
}

fn other_plan(path: &str, source: &str) -> Plan {
    Plan::parse(path, source).unwrap()
}

/// Three migrations in three states: the demo's backfill running (on screen), a second one not
/// started (its expand gate passes: it needs no sign-off), a third whose database is unreachable.
fn three_migrations() -> Switcher {
    let customers = other_plan(
        "plans/customers-rename-full-name.toml",
        include_str!("../../../plans/customers-rename-full-name.toml"),
    );
    let orders = other_plan(
        "plans/orders-rekey-uuid.toml",
        include_str!("../../../plans/orders-rekey-uuid.toml"),
    );
    let mut second = App::new(customers.clone(), DB.into(), false);
    second.on_worker(WorkerEvent::Conn(ConnState::Connected));
    let mut facts = Facts::unregistered(customers.id(), at(5, 12, 0));
    facts.registration = Some(Registration {
        plan_sha256: customers.sha256(),
        created_at: at(4, 55, 0),
    });
    let mut snap = Snapshot::from_facts(&customers, facts);
    snap.actor = fresh().actor;
    second.on_worker(WorkerEvent::Snapshot(Box::new(snap)));
    let mut third = App::new(orders, DB.into(), false);
    third.on_worker(WorkerEvent::Conn(ConnState::Retrying {
        error: "connection refused".into(),
        retry_in: 4,
    }));
    Switcher::new(vec![app_with(backfill_running()), second, third]).unwrap()
}

fn special(code: KeyCode) -> KeyEvent {
    KeyEvent::new(code, KeyModifiers::NONE)
}

/// The demo plan with two `[[notify]]` targets: a webhook whose URL carries a token, a hook.
fn plan_with_targets() -> Plan {
    Plan::parse(
        "plans/accounts-balance-cents.toml",
        &format!(
            "{}\n[[notify]]\nname = \"slack-oncall\"\nurl = \"https://hooks.slack.com/services/T0/B0/s3cret\"\n\n[[notify]]\ncommand = [\"/usr/local/bin/page\"]\n",
            include_str!("../../../plans/accounts-balance-cents.toml")
        ),
    )
    .unwrap()
}

/// 12 deliveries sent, one to slack-oncall failed three times and is due again at 05:12:40.
fn notifying() -> Snapshot {
    let mut s = fresh();
    s.notify = Some(DeliverySummary {
        delivered: 12,
        pending: 0,
        retrying: 1,
        gave_up: 0,
        unrouted: 0,
        latest_failure: Some(FailedDelivery {
            target: "slack-oncall".into(),
            state: DeliveryState::Pending,
            attempts: 3,
            next_attempt_at: Some(at(5, 12, 40)),
            last_error: "POST https://hooks.slack.com/…: HTTP 500".into(),
        }),
    });
    s
}

mod interaction;
mod next_step;
mod notify;
mod screens;
mod slots;
mod switcher;
