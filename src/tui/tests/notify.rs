//! The roster's notifications of a plan with `[[notify]]` targets.

use super::*;
use crate::tui::panes;

#[test]
fn roster_shows_the_notifications_of_a_plan_with_targets() {
    let mut app = app_of(plan_with_targets(), notifying());
    let vm = app.view();
    let roster = pane(&vm, 100, 10, panes::roster::render);
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
    let roster = pane(&app.view(), 100, 10, panes::roster::render);
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
        panes::roster::render,
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
