//! Keys and what they do, overlays, single panes, and whole screens in three states.

use super::*;
use crate::tui::panes;

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
    insta::assert_snapshot!(pane(&vm, 120, 2, panes::header::render));
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
    insta::assert_snapshot!(pane(&vm, 120, 2, panes::header::render));
}

#[test]
fn panes_backfill_running() {
    let vm = app_with(backfill_running()).view();
    insta::assert_snapshot!("timeline", pane(&vm, 100, 6, panes::timeline::render));
    insta::assert_snapshot!("scorecard", pane(&vm, 70, 22, panes::scorecard::render));
    insta::assert_snapshot!("backfill", pane(&vm, 70, 12, panes::backfill::render));
    insta::assert_snapshot!("parity", pane(&vm, 100, 7, panes::parity::render));
    insta::assert_snapshot!("roster", pane(&vm, 70, 12, panes::roster::render));
}

#[test]
fn pane_backfill_throttled() {
    let vm = app_with(throttled()).view();
    insta::assert_snapshot!(pane(&vm, 70, 10, panes::backfill::render));
}

/// A copy into a new table with CDC names both and how far the applier is behind.
#[test]
fn backfill_pane_shows_the_mode_and_the_cdc_lag() {
    let mut vm = app_with(backfill_running()).view();
    let plain = pane(&vm, 90, 12, panes::backfill::render);
    assert!(
        !plain.contains("CDC") && !plain.contains("copy into"),
        "{plain}"
    );
    vm.backfill.copy_into = Some("public.orders_v2".into());
    vm.backfill.cdc = Some(Some(crate::tui::view::CdcLagView {
        bytes: 12_288,
        seconds: Some(0.4),
        slot_exists: true,
    }));
    let text = pane(&vm, 90, 12, panes::backfill::render);
    assert!(
        text.contains("copy into public.orders_v2 · CDC 12.0 KiB behind, caught up 0.4s ago"),
        "{text}"
    );
    vm.backfill.cdc = Some(None);
    let text = pane(&vm, 90, 12, panes::backfill::render);
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
    let text = pane(&app_with(s.clone()).view(), 70, 10, panes::backfill::render);
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
    let text = pane(&app_with(s).view(), 70, 10, panes::backfill::render);
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
