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
        include_str!("../../plans/accounts-balance-cents.toml"),
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
    let mut app = App::new(plan(), DB.into(), false);
    app.on_worker(WorkerEvent::Conn(ConnState::Connected));
    app.on_worker(WorkerEvent::Snapshot(Box::new(s)));
    app
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

#[test]
fn whole_screen_gate_blocked_80x24() {
    insta::assert_snapshot!(screen(&app_with(fresh()).view(), 80, 24));
}

#[test]
fn whole_screen_backfill_running_140x42() {
    insta::assert_snapshot!(screen(&app_with(backfill_running()).view(), 140, 42));
}

#[test]
fn whole_screen_throttled_100x30() {
    insta::assert_snapshot!(screen(&app_with(throttled()).view(), 100, 30));
}

#[test]
fn rollback_confirmation_shows_the_sql_and_needs_capital_y() {
    let mut app = app_with(backfill_running());
    let t0 = Instant::now();
    assert_eq!(app.on_key(key('R'), t0), Action::None);
    insta::assert_snapshot!(screen(&app.view(), 100, 30));
    // Keys during the arming delay are ignored; afterwards any other key cancels.
    assert_eq!(
        app.on_key(key('Y'), t0 + Duration::from_millis(10)),
        Action::None
    );
    assert!(matches!(
        app.view().ui.overlay,
        Some(Overlay::ConfirmRollback(_))
    ));
    assert_eq!(app.on_key(key('y'), t0 + CONFIRM_ARMING), Action::None);
    assert!(app.view().ui.overlay.is_none());
    // Open again and confirm deliberately.
    let t1 = t0 + Duration::from_secs(2);
    app.on_key(key('R'), t1);
    let Action::Send(Command::Rollback { confirmed }) = app.on_key(key('Y'), t1 + CONFIRM_ARMING)
    else {
        panic!("Y sends the rollback it showed");
    };
    assert_eq!(confirmed.phases, [Phase::Backfill]);
    assert!(matches!(
        confirmed.steps.last(),
        Some(RollbackStep::FinishPhase {
            stop_backfill: true,
            ..
        })
    ));
}

#[test]
fn advance_with_a_blocked_gate_shows_blockers() {
    let mut app = app_with(backfill_running());
    assert_eq!(app.on_key(key('a'), Instant::now()), Action::None);
    let vm = app.view();
    let Some(Overlay::Blockers { phase, lines }) = &vm.ui.overlay else {
        panic!("expected the blockers overlay, got {:?}", vm.ui.overlay);
    };
    assert_eq!(*phase, Phase::ReadSwitch);
    assert!(
        lines.iter().any(|l| l.contains("balance-parity")),
        "{lines:?}"
    );
    assert!(
        lines.iter().any(|l| l.contains("signoff lead")),
        "{lines:?}"
    );
    insta::assert_snapshot!(screen(&vm, 100, 30));
}

#[test]
fn help_overlay() {
    let mut app = app_with(fresh());
    app.on_key(key('?'), Instant::now());
    insta::assert_snapshot!(screen(&app.view(), 100, 34));
}

#[test]
fn help_overlay_fits_80x24() {
    let mut app = app_with(fresh());
    app.on_key(key('?'), Instant::now());
    let screen = screen(&app.view(), 80, 24);
    assert!(screen.contains(":note TEXT"), "{screen}");
    insta::assert_snapshot!(screen);
}

#[test]
fn disconnected_header_and_refused_keys() {
    let mut app = app_with(backfill_running());
    app.on_worker(WorkerEvent::Conn(ConnState::Retrying {
        error: "the database did not answer within 5s".into(),
        retry_in: 2,
    }));
    assert_eq!(app.on_key(key(' '), Instant::now()), Action::None);
    let vm = app.view();
    let (status, is_error) = vm.ui.status.clone().unwrap();
    assert!(is_error && status.contains("unreachable"), "{status}");
    insta::assert_snapshot!(pane(&vm, 120, 2, super::panes::header::render));
}

#[test]
fn production_and_read_only_header() {
    let mut p = plan();
    p.spec.environment = "production".into();
    let mut app = App::new(p, DB.into(), true);
    app.on_worker(WorkerEvent::Conn(ConnState::Connected));
    app.on_worker(WorkerEvent::Snapshot(Box::new(fresh())));
    assert_eq!(app.on_key(key('s'), Instant::now()), Action::None);
    let vm = app.view();
    assert!(vm.header.is_production());
    assert!(vm.ui.status.as_ref().unwrap().0.contains("read-only"));
    insta::assert_snapshot!(pane(&vm, 120, 2, super::panes::header::render));
}

#[test]
fn panes_backfill_running() {
    let vm = app_with(backfill_running()).view();
    insta::assert_snapshot!(
        "timeline",
        pane(&vm, 100, 6, super::panes::timeline::render)
    );
    insta::assert_snapshot!(
        "scorecard",
        pane(&vm, 70, 22, super::panes::scorecard::render)
    );
    insta::assert_snapshot!(
        "backfill",
        pane(&vm, 70, 12, super::panes::backfill::render)
    );
    insta::assert_snapshot!("parity", pane(&vm, 100, 7, super::panes::parity::render));
    insta::assert_snapshot!("roster", pane(&vm, 70, 12, super::panes::roster::render));
}

#[test]
fn pane_backfill_throttled() {
    let vm = app_with(throttled()).view();
    insta::assert_snapshot!(pane(&vm, 70, 10, super::panes::backfill::render));
}

/// A copy into a new table with CDC names both and how far the applier is behind.
#[test]
fn backfill_pane_shows_the_mode_and_the_cdc_lag() {
    let mut vm = app_with(backfill_running()).view();
    let plain = pane(&vm, 90, 12, super::panes::backfill::render);
    assert!(
        !plain.contains("CDC") && !plain.contains("copy into"),
        "{plain}"
    );
    vm.backfill.copy_into = Some("public.orders_v2".into());
    vm.backfill.cdc = Some(Some(super::view::CdcLagView {
        bytes: 12_288,
        seconds: Some(0.4),
        slot_exists: true,
    }));
    let text = pane(&vm, 90, 12, super::panes::backfill::render);
    assert!(
        text.contains("copy into public.orders_v2 · CDC 12.0 KiB behind, caught up 0.4s ago"),
        "{text}"
    );
    vm.backfill.cdc = Some(None);
    let text = pane(&vm, 90, 12, super::panes::backfill::render);
    assert!(text.contains("CDC no slot yet"), "{text}");
}

/// "done" only when the state is done; never 100 % before; the rate never above the cap.
#[test]
fn backfill_pane_says_done_only_when_done() {
    let mut s = backfill_running();
    if let Some(b) = s.backfill.as_mut() {
        b.rows_done = 999_999;
        b.rows_estimate = Some(1_000_000);
        b.eta = Some((0.2, 0.4));
        b.rate = Some(22_804.0);
        b.max_rows_per_sec = 20_000;
    }
    let text = pane(
        &app_with(s.clone()).view(),
        70,
        10,
        super::panes::backfill::render,
    );
    assert!(!text.contains("done"), "{text}");
    assert!(text.contains("99.9%") && !text.contains("100.0%"), "{text}");
    assert!(
        text.contains("20,000 rows/s") && !text.contains("22,804"),
        "{text}"
    );
    if let Some(b) = s.backfill.as_mut() {
        b.state = BackfillState::Done;
        b.rows_done = 1_000_000;
        b.eta = None;
    }
    let text = pane(&app_with(s).view(), 70, 10, super::panes::backfill::render);
    assert!(
        text.contains("ETA done") && text.contains("100.0%"),
        "{text}"
    );
}

#[test]
fn signoff_key_signs_only_my_open_roles() {
    let mut app = app_with(backfill_running());
    let action = app.on_key(key('s'), Instant::now());
    assert_eq!(
        action,
        Action::Send(Command::Signoff {
            gate: Phase::ReadSwitch,
            roles: vec![Role("data_owner".into()), Role("lead".into())],
            comment: String::new(),
        })
    );
}

#[test]
fn space_pauses_and_plus_retunes() {
    let mut app = app_with(backfill_running());
    assert_eq!(
        app.on_key(key(' '), Instant::now()),
        Action::Send(Command::Pause)
    );
    assert_eq!(
        app.on_key(key('+'), Instant::now()),
        Action::Send(Command::Tune {
            target_chunk_ms: 375
        })
    );
    assert_eq!(
        app.on_key(key('-'), Instant::now()),
        Action::Send(Command::Tune {
            target_chunk_ms: 240
        })
    );
}

#[test]
fn ctrl_c_asks_and_q_quits() {
    let mut app = app_with(fresh());
    let ctrl_c = KeyEvent::new(KeyCode::Char('c'), KeyModifiers::CONTROL);
    assert_eq!(app.on_key(ctrl_c, Instant::now()), Action::None);
    assert_eq!(app.view().ui.overlay, Some(Overlay::ConfirmQuit));
    assert_eq!(app.on_key(key('n'), Instant::now()), Action::None);
    assert_eq!(app.view().ui.overlay, None);
    assert_eq!(app.on_key(key('q'), Instant::now()), Action::Quit);
}

#[test]
fn command_line_parses_commands() {
    let mut app = app_with(fresh());
    let now = Instant::now();
    assert_eq!(
        app.run_command_line("flag accounts.read_balance_cents off", now),
        Action::Send(Command::Flag {
            name: "accounts.read_balance_cents".into(),
            enabled: false
        })
    );
    assert_eq!(
        app.run_command_line("note paused for the batch job", now),
        Action::Send(Command::Note {
            text: "paused for the batch job".into()
        })
    );
    assert_eq!(app.run_command_line("flag x maybe", now), Action::None);
    assert!(app.view().ui.status.unwrap().1);
    assert_eq!(app.run_command_line("q", now), Action::Quit);
    for c in ":note hi".chars() {
        app.on_key(key(c), now);
    }
    assert_eq!(app.view().ui.command_line.as_deref(), Some("note hi"));
    let enter = KeyEvent::new(KeyCode::Enter, KeyModifiers::NONE);
    assert_eq!(
        app.on_key(enter, now),
        Action::Send(Command::Note { text: "hi".into() })
    );
}

#[test]
fn search_highlights_and_tab_moves_focus() {
    let mut app = app_with(fresh());
    let now = Instant::now();
    for c in "/throttled".chars() {
        app.on_key(key(c), now);
    }
    app.on_key(KeyEvent::new(KeyCode::Enter, KeyModifiers::NONE), now);
    let vm = app.view();
    assert_eq!(vm.ui.search, "throttled");
    assert_eq!(vm.ui.focus, Focus::Log);
    app.on_key(KeyEvent::new(KeyCode::Tab, KeyModifiers::NONE), now);
    assert_eq!(app.view().ui.focus, Focus::Timeline);
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
    if let Some(b) = s.facts.backfill.as_mut() {
        b.state = BackfillState::Done;
        b.rows_done = 1_000_000;
    }
    if let Some(b) = s.backfill.as_mut() {
        b.state = BackfillState::Done;
        b.rows_done = 1_000_000;
    }
    s.facts
        .signoffs
        .push(signoff(Phase::ReadSwitch, "data_owner", at(5, 19, 0), &sha));
    s.facts
        .signoffs
        .push(signoff(Phase::ReadSwitch, "lead", at(5, 19, 0), &sha));
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

fn signed_contract(mut s: Snapshot) -> Snapshot {
    let sha = plan().sha256();
    s.facts
        .signoffs
        .push(signoff(Phase::Contract, "lead", at(5, 20, 1), &sha));
    s.facts
        .signoffs
        .push(signoff(Phase::Contract, "sre", at(5, 20, 1), &sha));
    judged(s)
}

fn on_v2(mut s: Snapshot, draining: bool) -> Snapshot {
    s.app = Some(AppStatus {
        serving: AppVersion::V2,
        draining: draining.then_some(AppVersion::V1),
    });
    s
}

#[test]
fn next_step_hint_in_each_phase() {
    let plan = plan();
    let sha = plan.sha256();
    let mut expand_signed = fresh();
    expand_signed
        .facts
        .signoffs
        .push(signoff(Phase::Expand, "lead", at(5, 11, 0), &sha));
    let expand_signed = judged(expand_signed);
    let mut lint_pending = fresh();
    lint_pending.facts.probes.clear();
    let lint_pending = judged(lint_pending);
    let mut checks_needed = at_contract(30);
    checks_needed.facts.phases[3] = PhaseRow {
        state: PhaseState::Pending,
        ..checks_needed.facts.phases[3].clone()
    };
    checks_needed.facts.checks.clear();
    checks_needed
        .facts
        .signoffs
        .retain(|x| x.gate != Phase::ReadSwitch);
    checks_needed.app = None;
    let checks_needed = judged(checks_needed);
    let mut signoffs_needed = checks_needed.clone();
    signoffs_needed.facts.checks = at_contract(30).facts.checks;
    signoffs_needed.facts.probes.extend([
        probe(
            Phase::ReadSwitch,
            "backfill_complete",
            Outcome::Pass,
            "done",
            at(5, 20, 0),
        ),
        probe(
            Phase::ReadSwitch,
            "privilege_parity",
            Outcome::Pass,
            "same",
            at(5, 20, 0),
        ),
    ]);
    for c in signoffs_needed.facts.checks.iter_mut() {
        c.started_at = at(5, 19, 0);
    }
    let signoffs_needed = judged(signoffs_needed);
    let mut done = signed_contract(at_contract(30));
    done.facts.phases[4] = applied(Phase::Contract, at(5, 20, 40));
    let done = on_v2(judged(done), false);
    let states: Vec<(&str, Snapshot)> = vec![
        ("expand, lint not evaluated yet", lint_pending),
        ("expand, unsigned", fresh()),
        ("expand, signed", expand_signed),
        ("backfill running", backfill_running()),
        ("backfill done, checks not run", checks_needed),
        ("read_switch checks pass", signoffs_needed),
        ("read switch applied, app on v1", at_contract(30)),
        ("app rollout draining", on_v2(at_contract(30), true)),
        (
            "v2 serving, v1 reads not yet silent",
            on_v2(
                with_probe(at_contract(30), "hidden_readers", Outcome::Fail),
                false,
            ),
        ),
        ("contract gate unsigned", on_v2(at_contract(30), false)),
        (
            "signed, observation window running",
            on_v2(signed_contract(at_contract(1)), false),
        ),
        (
            "contract gate passes",
            on_v2(signed_contract(at_contract(30)), false),
        ),
        ("all applied", done),
    ];
    let mut out = String::new();
    for (label, s) in states {
        let mut app = app_with(s);
        app.set_environment(true, None);
        let vm = app.view();
        out.push_str(&format!(
            "{label}:\n{}\n",
            pane(&vm, 80, 2, super::panes::footer::render)
        ));
    }
    insta::assert_snapshot!(out);
}

#[test]
fn next_step_puts_a_slot_about_to_lose_its_wal_first() {
    let mut s = fresh();
    s.facts.slots = vec![crate::control::slots::Slot {
        name: "analytics".into(),
        kind: "logical".into(),
        active: false,
        retained_bytes: 61 << 20,
        lag_bytes: Some(61 << 20),
        wal_status: Some("extended".into()),
        safe_wal_size: Some(3 << 20),
    }];
    s.facts.max_slot_wal_keep_size = Some(64 << 20);
    let mut app = App::new(plan(), DB.into(), false);
    app.on_worker(WorkerEvent::Conn(ConnState::Connected));
    app.on_worker(WorkerEvent::Snapshot(Box::new(judged(s))));
    let next = app.view().next.unwrap();
    assert!(
        next.text
            .starts_with("next: logical slot `analytics` is 3MB of WAL away from being lost"),
        "{next:?}"
    );
}

#[test]
fn next_step_names_whoever_must_sign_when_it_is_not_me() {
    let mut s = on_v2(at_contract(30), false);
    s.actor = Some(Actor {
        login: "lee".into(),
        os_user: "lee".into(),
        host: "ops-2".into(),
    });
    let mut p = plan();
    p.spec
        .roster
        .insert(Role("lead".into()), vec!["lee".into(), "postgres".into()]);
    let mut app = App::new(p, DB.into(), false);
    app.on_worker(WorkerEvent::Conn(ConnState::Connected));
    app.on_worker(WorkerEvent::Snapshot(Box::new(s)));
    let next = app.view().next.unwrap();
    assert_eq!(next.text, "next: sign off contract as lead (s)");
    let mut s = on_v2(at_contract(30), false);
    s.facts.signoffs.push(signoff(
        Phase::Contract,
        "lead",
        at(5, 20, 1),
        &plan().sha256(),
    ));
    s.actor = Some(Actor {
        login: "lee".into(),
        os_user: "lee".into(),
        host: "ops-2".into(),
    });
    let mut p = plan();
    p.spec
        .roster
        .insert(Role("lead".into()), vec!["lee".into()]);
    let mut app = App::new(p, DB.into(), false);
    app.on_worker(WorkerEvent::Conn(ConnState::Connected));
    app.on_worker(WorkerEvent::Snapshot(Box::new(judged(s))));
    let next = app.view().next.unwrap();
    assert!(
        next.text
            .starts_with("next: sre must sign off contract (postgres)"),
        "{next:?}"
    );
}

#[test]
fn zoom_at_80x24_reaches_every_pane() {
    let mut app = app_with(backfill_running());
    let now = Instant::now();
    app.on_key(key('z'), now);
    let mut titles = Vec::new();
    for _ in 0..Focus::ORDER.len() {
        app.on_key(KeyEvent::new(KeyCode::Tab, KeyModifiers::NONE), now);
        let vm = app.view();
        let screen = screen(&vm, 80, 24);
        let title = match vm.ui.focus {
            Focus::Timeline => "Phases",
            Focus::Scorecard => "Readiness",
            Focus::Backfill => "Backfill",
            Focus::Parity => "Parity",
            Focus::Roster => "Roster",
            Focus::Log => "Log",
        };
        assert!(screen.contains(title), "{title} not shown:\n{screen}");
        titles.push(title);
        if vm.ui.focus == Focus::Roster {
            // The whole roster fits when zoomed: every role, who is connected, what was done.
            for needle in [
                "sre",
                "Connected now (1)",
                "Recent actions",
                "advance backfill",
            ] {
                assert!(screen.contains(needle), "{needle}:\n{screen}");
            }
            insta::assert_snapshot!("zoom_roster_80x24", screen);
        }
    }
    assert_eq!(titles.len(), 6);
    app.on_key(key('z'), now);
    assert!(!app.view().ui.zoom);
}

/// Wide, the backfill pane takes half the row; readiness shortens its evidence at a word, and
/// zoomed it shows it whole.
#[test]
fn wide_layout_shortens_readiness_at_words_and_zoom_shows_it_whole() {
    let mut app = app_with(on_v2(
        with_probe(at_contract(30), "hidden_readers", Outcome::Fail),
        false,
    ));
    let screen_text = screen(&app.view(), 200, 44);
    let observability = screen_text
        .lines()
        .find(|l| l.contains("Observability"))
        .unwrap_or_default();
    assert!(observability.contains("or the …"), "{observability}");
    insta::assert_snapshot!(screen_text);
    app.on_key(key('z'), Instant::now());
    let zoomed = screen(&app.view(), 200, 44);
    assert!(zoomed.contains("(`:attest observability URL`)"), "{zoomed}");
}

#[test]
fn observability_says_where_the_endpoint_is_until_it_is_scraped() {
    let mut app = app_with(fresh());
    app.set_environment(true, Some("http://127.0.0.1:40123/metrics".into()));
    let vm = app.view();
    let obs = vm
        .scorecard
        .iter()
        .find(|c| c.name == "Observability")
        .unwrap();
    assert!(
        obs.evidence
            .iter()
            .any(|e| e.1 == "endpoint http://127.0.0.1:40123/metrics: :scrape (or curl) scrapes it"),
        "{obs:?}"
    );
    assert_eq!(
        app.run_command_line("scrape", Instant::now()),
        Action::Send(Command::Scrape)
    );
    assert_eq!(
        app.run_command_line(
            "attest observability https://grafana.example.com/d/1",
            Instant::now()
        ),
        Action::Send(Command::Attest {
            category: crate::rules::CategoryKind::Observability,
            url: "https://grafana.example.com/d/1".into()
        })
    );
    assert_eq!(
        app.run_command_line("attest data_quality https://x.example", Instant::now()),
        Action::None
    );
    // Before the read switch v2 cannot serve: refused locally, with the reason.
    assert_eq!(app.run_command_line("app v2", Instant::now()), Action::None);
    let (status, error) = app.view().ui.status.unwrap();
    assert!(
        error && status.contains("once the read switch is applied"),
        "{status}"
    );
    let mut demo = app_with(on_v2(at_contract(30), false));
    demo.set_environment(true, None);
    assert_eq!(
        demo.run_command_line("app v1", Instant::now()),
        Action::Send(Command::App {
            version: AppVersion::V1
        })
    );
    // Outside the demo there is no app to roll.
    let mut plain = app_with(at_contract(30));
    assert_eq!(
        plain.run_command_line("app v2", Instant::now()),
        Action::None
    );
}

#[test]
fn a_command_in_flight_is_not_sent_twice_and_the_hint_waits_for_it() {
    let mut app = app_with(backfill_running());
    let now = Instant::now();
    assert_eq!(app.on_key(key('c'), now), Action::Send(Command::RunChecks));
    assert_eq!(app.on_key(key('c'), now), Action::None);
    let vm = app.view();
    assert_eq!(
        vm.next.map(|n| n.text).as_deref(),
        Some("next: wait: run checks is running")
    );
    app.on_worker(WorkerEvent::Action {
        command: Command::RunChecks,
        result: Ok("4 checks passed".into()),
    });
    assert_eq!(app.on_key(key('c'), now), Action::Send(Command::RunChecks));
}

fn other_plan(path: &str, source: &str) -> Plan {
    Plan::parse(path, source).unwrap()
}

/// Three migrations in three states: the demo's backfill running (on screen), a second one not
/// started (its expand gate passes: it needs no sign-off), a third whose database is unreachable.
fn three_migrations() -> Switcher {
    let customers = other_plan(
        "plans/customers-rename-full-name.toml",
        include_str!("../../plans/customers-rename-full-name.toml"),
    );
    let orders = other_plan(
        "plans/orders-rekey-uuid.toml",
        include_str!("../../plans/orders-rekey-uuid.toml"),
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

#[test]
fn migrations_picker_lists_each_with_phase_gate_and_backfill() {
    let mut sw = three_migrations();
    let now = Instant::now();
    sw.on_key(key(']'), now);
    sw.on_key(key('m'), now);
    let vm = sw.view();
    let picker = vm.switcher.as_ref().and_then(|s| s.picker.clone()).unwrap();
    let rows = &picker.rows;
    assert_eq!(
        picker.selected, 1,
        "the picker opens on the migration on screen"
    );
    assert_eq!(
        rows.iter().map(|r| r.active).collect::<Vec<_>>(),
        [false, true, false]
    );
    assert_eq!(rows[0].phase, Some((Phase::Backfill, PhaseState::Applied)));
    assert_eq!(
        rows[0].backfill,
        Some((BackfillState::Running, Some("41.2%".to_string())))
    );
    // The picker shows the verdict the rules computed for the panes and `status`, word for word.
    let first = app_with(backfill_running()).view();
    let gate = first.gate.as_ref().unwrap();
    assert_eq!(
        rows[0].gate,
        GateVerdict::Gate {
            phase: Phase::ReadSwitch,
            verdict: gate.verdict(),
            blockers: gate.blockers.len(),
            first: gate.blockers.first().cloned(),
        }
    );
    assert!(gate.blockers.len() > 1 && gate.verdict() != Verdict::Pass);
    assert_eq!(rows[1].phase, None);
    assert_eq!(
        rows[1].gate,
        GateVerdict::Gate {
            phase: Phase::Expand,
            verdict: Verdict::Pass,
            blockers: 0,
            first: None,
        }
    );
    assert_eq!(rows[1].backfill, None);
    assert!(matches!(&rows[2].gate, GateVerdict::Unknown(_)));
    let screen = screen(&vm, 100, 30);
    assert!(screen.contains("migration 2/3 (m: switch)"), "{screen}");
    insta::assert_snapshot!(screen);
}

#[test]
fn a_passing_gate_and_a_finished_migration_in_the_picker() {
    let vm = app_with(on_v2(signed_contract(at_contract(30)), false)).view();
    let row = super::switcher::row(&vm, false);
    assert_eq!(row.phase, Some((Phase::ReadSwitch, PhaseState::Applied)));
    assert_eq!(row.backfill, None, "a finished backfill shows no progress");
    assert_eq!(
        row.gate,
        GateVerdict::Gate {
            phase: Phase::Contract,
            verdict: Verdict::Pass,
            blockers: 0,
            first: None,
        },
        "{:?}",
        vm.gate.map(|g| g.blockers)
    );
    let mut done = signed_contract(at_contract(30));
    done.facts.phases[4] = applied(Phase::Contract, at(5, 20, 40));
    let row = super::switcher::row(&app_with(judged(done)).view(), true);
    assert_eq!(row.phase, Some((Phase::Contract, PhaseState::Applied)));
    assert_eq!(row.gate, GateVerdict::Done);
    assert!(row.active);
}

#[test]
fn an_overridden_gate_reads_overridden_in_the_panes_and_the_picker() {
    let mut s = backfill_running();
    s.facts.overrides.push(OverrideFact {
        gate: Phase::ReadSwitch,
        login: "postgres".into(),
        reason: "lag probe flaps; checked by hand".into(),
        plan_sha256: plan().sha256(),
        at: at(5, 11, 0),
    });
    let vm = app_with(judged(s)).view();
    let gate = vm.gate.clone().unwrap();
    assert!(gate.passed && gate.outcome != Outcome::Pass);
    assert_eq!(gate.verdict(), Verdict::Overridden);
    assert_eq!(
        super::switcher::row(&vm, true).gate,
        GateVerdict::Gate {
            phase: Phase::ReadSwitch,
            verdict: Verdict::Overridden,
            blockers: gate.blockers.len(),
            first: gate.blockers.first().cloned(),
        }
    );
    let screen = screen(&vm, 140, 42);
    assert!(
        screen.contains("Next read_switch — gate OVERRIDDEN"),
        "{screen}"
    );
    assert!(
        screen.contains("Readiness gate read_switch OVERRIDDEN"),
        "{screen}"
    );
    assert!(
        !screen.contains("gate FAIL") && !screen.contains("gate INCONCLUSIVE"),
        "{screen}"
    );
}

/// The demo plan with two `[[notify]]` targets: a webhook whose URL carries a token, a hook.
fn plan_with_targets() -> Plan {
    Plan::parse(
        "plans/accounts-balance-cents.toml",
        &format!(
            "{}\n[[notify]]\nname = \"slack-oncall\"\nurl = \"https://hooks.slack.com/services/T0/B0/s3cret\"\n\n[[notify]]\ncommand = [\"/usr/local/bin/page\"]\n",
            include_str!("../../plans/accounts-balance-cents.toml")
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

#[test]
fn roster_shows_the_notifications_of_a_plan_with_targets() {
    let mut app = App::new(plan_with_targets(), DB.into(), false);
    app.on_worker(WorkerEvent::Conn(ConnState::Connected));
    app.on_worker(WorkerEvent::Snapshot(Box::new(notifying())));
    let vm = app.view();
    let roster = pane(&vm, 100, 10, super::panes::roster::render);
    assert!(
        roster.contains(
            "notify: 12 sent · 1 retrying (slack-oncall, attempt 3, next in 40s: HTTP 500)"
        ),
        "{roster}"
    );
    assert!(!roster.contains("s3cret"), "{roster}");
    insta::assert_snapshot!(roster);

    // Given up: no next attempt, the failure under "gave up".
    let mut s = notifying();
    if let Some(n) = &mut s.notify {
        n.retrying = 0;
        n.gave_up = 1;
        n.pending = 2;
        if let Some(f) = &mut n.latest_failure {
            f.state = DeliveryState::GaveUp;
            f.attempts = 10;
            f.next_attempt_at = None;
        }
    }
    app.on_worker(WorkerEvent::Snapshot(Box::new(s)));
    let roster = pane(&app.view(), 100, 10, super::panes::roster::render);
    assert!(
        roster.contains(
            "notify: 12 sent · 2 pending · 1 gave up (slack-oncall, attempt 10: HTTP 500)"
        ),
        "{roster}"
    );

    // A plan without targets shows no notification line.
    let roster = pane(
        &app_with(notifying()).view(),
        100,
        10,
        super::panes::roster::render,
    );
    assert!(!roster.contains("notify:"), "{roster}");
}

#[test]
fn switch_keys_change_the_migration_on_screen() {
    let mut sw = three_migrations();
    let now = Instant::now();
    let id = |sw: &Switcher| sw.view().header.plan_id;
    assert_eq!(id(&sw), "accounts-balance-cents");
    assert_eq!(sw.on_key(key(']'), now).index, 1);
    assert_eq!(id(&sw), "customers-rename-full-name");
    sw.on_key(key(']'), now);
    assert_eq!(sw.on_key(key(']'), now).index, 0, "] wraps around");
    assert_eq!(sw.on_key(key('['), now).index, 2, "[ wraps around");
    assert_eq!(id(&sw), "orders-rekey-uuid");
    // m, ↓ (wraps to the first), Enter.
    sw.on_key(key('m'), now);
    sw.on_key(special(KeyCode::Down), now);
    assert_eq!(sw.on_key(special(KeyCode::Enter), now).index, 0);
    assert!(sw.view().switcher.unwrap().picker.is_none());
    // m, then a digit jumps; a digit past the end does nothing; Esc closes unchanged.
    sw.on_key(key('m'), now);
    sw.on_key(key('9'), now);
    assert!(sw.view().switcher.unwrap().picker.is_some());
    sw.on_key(key('2'), now);
    assert_eq!(sw.active(), 1);
    sw.on_key(key('m'), now);
    sw.on_key(special(KeyCode::Up), now);
    sw.on_key(special(KeyCode::Esc), now);
    assert_eq!(sw.active(), 1);
    assert!(sw.view().switcher.unwrap().picker.is_none());
    // Keys for the app on screen go to it, and its commands to its own worker.
    sw.on_key(key('['), now);
    assert_eq!(
        sw.on_key(key('c'), now),
        Routed {
            index: 0,
            action: Action::Send(Command::RunChecks)
        }
    );
    // While the picker is open, q closes it rather than quitting.
    sw.on_key(key('m'), now);
    assert_eq!(sw.on_key(key('q'), now).action, Action::None);
    assert_eq!(sw.on_key(key('q'), now).action, Action::Quit);
}

#[test]
fn a_pending_confirmation_is_not_interrupted_by_a_switch() {
    let mut sw = three_migrations();
    let t0 = Instant::now();
    sw.on_key(key('R'), t0);
    assert!(matches!(
        sw.view().ui.overlay,
        Some(Overlay::ConfirmRollback(_))
    ));
    // Within the arming delay every key is ignored by the confirmation, and none switches.
    for k in [']', '[', 'm'] {
        assert_eq!(sw.on_key(key(k), t0).index, 0);
    }
    assert_eq!(sw.active(), 0);
    assert!(matches!(
        sw.view().ui.overlay,
        Some(Overlay::ConfirmRollback(_))
    ));
    assert!(sw.view().switcher.unwrap().picker.is_none());
    // Once armed, `]` is "any other key": it cancels the rollback, and still does not switch.
    let armed = t0 + CONFIRM_ARMING;
    sw.on_key(key(']'), armed);
    assert_eq!(sw.active(), 0);
    let vm = sw.view();
    assert_eq!(vm.ui.overlay, None);
    assert!(vm.ui.status.unwrap().0.contains("rollback cancelled"));
    // A command line being typed takes `]` as text.
    sw.on_key(key(':'), armed);
    sw.on_key(key(']'), armed);
    assert_eq!(sw.active(), 0);
    assert_eq!(sw.view().ui.command_line.as_deref(), Some("]"));
    // Ctrl-C asks once, whichever migration is on screen; y quits them all.
    sw.on_key(special(KeyCode::Esc), armed);
    sw.on_key(key(']'), armed);
    let ctrl_c = KeyEvent::new(KeyCode::Char('c'), KeyModifiers::CONTROL);
    sw.on_key(ctrl_c, armed);
    assert_eq!(sw.view().ui.overlay, Some(Overlay::ConfirmQuit));
    assert_eq!(sw.on_key(key(']'), armed).action, Action::None);
    assert_eq!(
        sw.active(),
        1,
        "the quit question is answered, not switched past"
    );
    sw.on_key(ctrl_c, armed);
    assert_eq!(sw.on_key(key('y'), armed).action, Action::Quit);
}

#[test]
fn one_migration_has_no_switcher() {
    let mut sw = Switcher::new(vec![app_with(fresh())]).unwrap();
    let now = Instant::now();
    assert_eq!(sw.on_key(key(']'), now).index, 0);
    sw.on_key(key('m'), now);
    let vm = sw.view();
    assert!(vm.switcher.is_none());
    let screen = screen(&vm, 100, 30);
    assert!(
        !screen.contains("m: switch") && !screen.contains("m ] ["),
        "{screen}"
    );
}

mod screens;
mod slots;
