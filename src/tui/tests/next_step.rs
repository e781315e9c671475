//! The next-step hint in each phase, zoom at 80×24, and the wide layout.

use super::*;
use crate::tui::panes;

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
            pane(&vm, 80, 2, panes::footer::render)
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
    let app = app_of(plan(), judged(s));
    let next = app.view().next.unwrap();
    assert!(
        next.text
            .starts_with("next: logical slot `analytics` is 3MB of WAL away from being lost"),
        "{next:?}"
    );
}

/// The app of `lee` (on host ops-2) showing `s`, with `leads` holding the lead role.
fn lee_leading(mut s: Snapshot, leads: &[&str]) -> App {
    s.actor = Some(Actor {
        login: "lee".into(),
        os_user: "lee".into(),
        host: "ops-2".into(),
    });
    let mut p = plan();
    p.spec.roster.insert(
        Role("lead".into()),
        leads.iter().map(|l| l.to_string()).collect(),
    );
    app_of(p, s)
}

#[test]
fn next_step_names_whoever_must_sign_when_it_is_not_me() {
    let s = on_v2(at_contract(30), false);
    let app = lee_leading(s, &["lee", "postgres"]);
    let next = app.view().next.unwrap();
    assert_eq!(next.text, "next: sign off contract as lead (s)");
    let mut s = on_v2(at_contract(30), false);
    s.facts.signoffs.push(signoff(
        Phase::Contract,
        "lead",
        at(5, 20, 1),
        &plan().sha256(),
    ));
    let app = lee_leading(judged(s), &["lee"]);
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
