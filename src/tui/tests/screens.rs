//! Whole-screen snapshots of the main states at 80×24, 120×40 and 200×60, and a walk over every
//! rendered line that fails on a word cut by a pane border or an ellipsis inside a word.

use std::collections::HashSet;

use super::*;
use crate::backfill::Share;
use crate::tui::panes;

/// The backfill finished, but a check still fails: the read switch gate blocks.
fn gate_blocked() -> Snapshot {
    let mut s = backfill_running();
    backfill_done(&mut s);
    if let Some(b) = s.backfill.as_mut() {
        b.eta = None;
        b.finished_at = Some(at(5, 9, 0));
    }
    judged(s)
}

/// The latency guard slows the chunks down: pacing, not a throttle.
fn pacing() -> Snapshot {
    let mut s = backfill_running();
    if let Some(b) = s.backfill.as_mut() {
        b.state = BackfillState::Pacing;
        b.reason = "yielding: app latency 0.79× baseline (limit 1.25×, pg_stat_statements); \
                    easing off, pausing 0.3× each chunk's time"
            .into();
    }
    s
}

/// The backfill running, its checks run many times: the parity check passed, went
/// inconclusive, passed and now fails; the invariant always passed.
fn checked_often() -> Snapshot {
    use crate::control::checks::CheckRun;
    let mut s = backfill_running();
    let run = |name: &str, outcome: Outcome, minute: u32| CheckRun {
        name: name.into(),
        kind: "row_count".into(),
        outcome,
        summary: String::new(),
        started_at: at(5, minute, 0),
        duration_ms: 840,
    };
    let parity = [
        Outcome::Pass,
        Outcome::Pass,
        Outcome::Inconclusive,
        Outcome::Pass,
        Outcome::Fail,
        Outcome::Fail,
        Outcome::Fail,
    ];
    s.check_history = parity
        .iter()
        .enumerate()
        .map(|(i, o)| run("balance-parity", *o, 3 + i as u32))
        .chain((0..12).map(|i| run("no-negative-balance", Outcome::Pass, i)))
        .collect();
    s
}

fn contract_done() -> Snapshot {
    let mut done = on_v2(signed_contract(at_contract(30)), false);
    done.facts.phases[4] = applied(Phase::Contract, at(5, 20, 40));
    judged(done)
}

fn states() -> Vec<(&'static str, Snapshot)> {
    vec![
        ("not_started", fresh()),
        ("backfill_running", backfill_running()),
        ("throttled", throttled()),
        ("gate_blocked", gate_blocked()),
        ("read_switch", at_contract(30)),
        ("contract_done", contract_done()),
    ]
}

const SIZES: [(u16, u16); 3] = [(80, 24), (120, 40), (200, 60)];

/// The screen's lines, without the quotes `TestBackend` prints around them.
fn lines(screen: &str) -> Vec<Vec<char>> {
    screen
        .lines()
        .map(|l| {
            let l = l.strip_prefix('"').unwrap_or(l);
            l.strip_suffix('"').unwrap_or(l).chars().collect()
        })
        .collect()
}

const BORDERS: &[char] = &['│', '┃'];

/// Every whitespace-separated token the screen of `snap` shows when nothing is short of room:
/// the whole screen at 400×120 and each pane zoomed at that size.
fn vocabulary(snap: &Snapshot) -> HashSet<String> {
    let mut app = app_with(snap.clone());
    let mut words = HashSet::new();
    let mut add = |text: &str| {
        for line in lines(text) {
            let line: String = line
                .into_iter()
                .map(|c| if BORDERS.contains(&c) { ' ' } else { c })
                .collect();
            words.extend(line.split_whitespace().map(str::to_string));
        }
    };
    add(&screen(&app.view(), 400, 120));
    let now = Instant::now();
    app.on_key(key('z'), now);
    for _ in 0..Focus::ORDER.len() {
        app.on_key(KeyEvent::new(KeyCode::Tab, KeyModifiers::NONE), now);
        add(&screen(&app.view(), 400, 120));
    }
    words
}

/// The token that ends just before column `x` of `line`.
fn token_before(line: &[char], x: usize) -> String {
    let start = line[..x]
        .iter()
        .rposition(|c| c.is_whitespace() || BORDERS.contains(c))
        .map_or(0, |i| i + 1);
    line[start..x].iter().collect()
}

/// Where on `screen` a word runs into a pane's right border without being one of `words` (so
/// it was cut, not wrapped), or an ellipsis stands right after a letter or digit (a word,
/// number, time or name cut short; `connecting…` is not cut).
fn cuts(screen: &str, words: &HashSet<String>) -> Vec<String> {
    let mut found = Vec::new();
    for (y, line) in lines(screen).iter().enumerate() {
        let text: String = line.iter().collect();
        for (x, c) in line.iter().enumerate() {
            let word = x > 0 && line[x - 1].is_alphanumeric();
            // A right border: text inside it, a border, a space or the screen's edge after it.
            let right_border = BORDERS.contains(c)
                && line
                    .get(x + 1)
                    .is_none_or(|n| BORDERS.contains(n) || *n == ' ');
            if right_border && word {
                let token = token_before(line, x);
                if !words.contains(&token) {
                    found.push(format!("line {y}: `{token}` is cut by the border: {text}"));
                }
            }
            // The screen's right edge cuts like a border.
            if x + 1 == line.len() && c.is_alphanumeric() {
                let token = token_before(line, x + 1);
                if !words.contains(&token) {
                    found.push(format!("line {y}: `{token}` is cut by the edge: {text}"));
                }
            }
            if *c == '…' && word {
                let token = token_before(line, x);
                if !token.ends_with("ing") {
                    found.push(format!("line {y}: `{token}…` is cut: {text}"));
                }
            }
        }
    }
    found
}

#[test]
fn main_states_at_three_sizes() {
    for (name, snap) in states() {
        let vm = app_with(snap).view();
        for (w, h) in SIZES {
            let text = screen(&vm, w, h);
            insta::assert_snapshot!(format!("screen_{name}_{w}x{h}"), text);
        }
    }
}

#[test]
fn no_word_is_cut_at_any_size() {
    let mut all = Vec::new();
    let extra = [("pacing", pacing()), ("checked_often", checked_often())];
    for (name, snap) in states().into_iter().chain(extra) {
        let words = vocabulary(&snap);
        let mut app = app_with(snap);
        for (w, h) in SIZES {
            all.extend(
                cuts(&screen(&app.view(), w, h), &words)
                    .into_iter()
                    .map(|c| format!("{name} {w}x{h} {c}")),
            );
        }
        // Zoomed, each pane is shown whole at the smallest size.
        let now = Instant::now();
        app.on_key(key('z'), now);
        for _ in 0..Focus::ORDER.len() {
            app.on_key(KeyEvent::new(KeyCode::Tab, KeyModifiers::NONE), now);
            let vm = app.view();
            all.extend(
                cuts(&screen(&vm, 80, 24), &words)
                    .into_iter()
                    .map(|c| format!("{name} zoomed {:?} {c}", vm.ui.focus)),
            );
        }
    }
    assert!(all.is_empty(), "{}", all.join("\n"));
}

#[test]
fn the_walk_finds_cut_words() {
    let words: HashSet<String> = ["412,000", "rows", "differ", "05:01:00", "signed"]
        .iter()
        .map(|w| w.to_string())
        .collect();
    let cut = "\"│412,000 rows di…│\"\n\"│signed at 05:01:0│\"\n\"│412,000 rows│\"";
    assert_eq!(cuts(cut, &words).len(), 2, "{:?}", cuts(cut, &words));
    assert!(cuts("\"│◌ connecting…   │\"", &words).is_empty());
}

/// Pacing under budget reads as pacing; the heading and the state line never say throttled.
#[test]
fn pacing_is_not_called_throttled() {
    let vm = app_with(pacing()).view();
    let text = screen(&vm, 120, 40);
    assert!(!text.contains("THROTTLED"), "{text}");
    assert!(text.contains("Backfill pacing"), "{text}");
    assert!(
        matches!(vm.backfill.pace(), crate::tui::progress::Pace::Pacing(t)
            if t.starts_with("pacing: easing off — app 0.79× baseline, budget 1.25×")),
        "{:?}",
        vm.backfill.pace()
    );
    let text = screen(&app_with(throttled()).view(), 120, 40);
    assert!(text.contains("THROTTLED replay lag 6.2s"), "{text}");
    // The state decides, not the wording: the guard's re-measuring holds the chunks back.
    let mut held = pacing();
    if let Some(b) = held.backfill.as_mut() {
        b.state = BackfillState::Throttled;
        b.reason = "yielding: re-measuring the application's latency without the backfill".into();
    }
    let text = screen(&app_with(held).view(), 120, 40);
    assert!(text.contains("Backfill throttled"), "{text}");
    assert!(text.contains("THROTTLED re-measuring"), "{text}");
}

/// Before its first chunk, the footer takes the share `backfill status` computed, not the
/// plan's estimate in the control row.
#[test]
fn the_footer_falls_back_on_the_computed_share() {
    let mut s = backfill_running();
    s.backfill = None;
    if let Some(b) = s.facts.backfill.as_mut() {
        b.rows_estimate = Some(900_000);
    }
    s.share = Some(Share::new(
        Some(BackfillState::Idle),
        412_000,
        Some(1_000_000),
    ));
    let text = screen(&app_with(judged(s)).view(), 120, 40);
    assert!(
        text.contains("wait for the backfill to finish (41.2%)"),
        "{text}"
    );
}

/// The gauge, the footer and the picker show the same percentage.
#[test]
fn one_percentage_everywhere() {
    let mut s = backfill_running();
    // The control row's planned estimate differs from the live total: the live one wins.
    if let Some(b) = s.facts.backfill.as_mut() {
        b.rows_estimate = Some(900_000);
    }
    let s = judged(s);
    let vm = app_with(s).view();
    let text = screen(&vm, 120, 40);
    assert!(text.contains("412,000 / ~1.0M rows · 41.2%"), "{text}");
    assert!(
        text.contains("wait for the backfill to finish (41.2%)"),
        "{text}"
    );
    let row = super::super::switcher::row(&vm, true);
    assert_eq!(row.backfill.and_then(|b| b.1).as_deref(), Some("41.2%"));
}

/// Each check's recent runs are drawn as a sparkline, newest on the right: a pass full height,
/// inconclusive half, a failure at the floor.
#[test]
fn parity_draws_each_checks_recent_runs() {
    let vm = app_with(checked_often()).view();
    let text = pane(&vm, 100, 7, panes::parity::render);
    insta::assert_snapshot!("parity_recent_runs", text);
    let row = |name: &str| {
        text.lines()
            .find(|l| l.contains(name))
            .unwrap_or_else(|| panic!("no {name}: {text}"))
            .to_string()
    };
    assert!(row("balance-parity").contains(" ██▄█▁▁▁ "), "{text}");
    assert!(
        row("no-negative-balance").contains(" ████████████ "),
        "{text}"
    );
    // A check that never ran has no bar; a pane too narrow for the picture leaves it out.
    assert!(!row("balance-drift").contains('█'), "{text}");
    let narrow = pane(&vm, 44, 7, panes::parity::render);
    assert!(!narrow.contains("recent"), "{narrow}");
    insta::assert_snapshot!("screen_checked_often_120x40", screen(&vm, 120, 40));
}

/// `>` scrolls the focused pane sideways: its lines stop wrapping or being shortened, so a long
/// one reads whole by scrolling; `<` back to the left edge restores the wrapped pane.
#[test]
fn the_focused_pane_scrolls_sideways() {
    let mut app = app_with(backfill_running());
    let now = Instant::now();
    while app.view().ui.focus != Focus::Scorecard {
        app.on_key(KeyEvent::new(KeyCode::Tab, KeyModifiers::NONE), now);
    }
    let before = screen(&app.view(), 120, 40);
    let vm = app.view();
    let evidence = &vm.scorecard[0].evidence[0].1;
    let tail: String = {
        let words: Vec<&str> = evidence.split_whitespace().collect();
        words[words.len() - 2..].join(" ")
    };
    assert!(!before.contains(&tail), "shortened before: {before}");
    for _ in 0..3 {
        app.on_key(key('>'), now);
    }
    let vm = app.view();
    assert_eq!(vm.ui.hscroll, 24);
    let after = screen(&vm, 120, 40);
    insta::assert_snapshot!("screen_readiness_scrolled_sideways_120x40", after);
    assert!(
        after.contains(&tail),
        "`{tail}` whole once scrolled: {after}"
    );
    // Only the focused pane moves: the Backfill pane beside it reads as before.
    let gauge = "│███████           412,000 / ~1.0M rows · 41.2%│";
    assert!(before.contains(gauge) && after.contains(gauge), "{after}");
    for _ in 0..3 {
        app.on_key(key('<'), now);
    }
    assert_eq!(screen(&app.view(), 120, 40), before);
    // Moving the focus starts the next pane at its left edge.
    app.on_key(key('>'), now);
    app.on_key(KeyEvent::new(KeyCode::Tab, KeyModifiers::NONE), now);
    assert_eq!(app.view().ui.hscroll, 0);
}

/// The Parity table, scrolled sideways, shows each check on one line with its whole summary,
/// which the table shortens.
#[test]
fn the_parity_table_scrolls_sideways_to_a_whole_summary() {
    let mut s = backfill_running();
    let long = "412,000 rows differ: balance_cents = round(balance * 100) fails on ids 17, 42 \
                and 4,711 among others (first differing keys shown by `cutover check`)";
    s.facts.checks[0].summary = long.into();
    let mut app = app_with(judged(s));
    let now = Instant::now();
    while app.view().ui.focus != Focus::Parity {
        app.on_key(KeyEvent::new(KeyCode::Tab, KeyModifiers::NONE), now);
    }
    let table = pane(&app.view(), 100, 7, panes::parity::render);
    assert!(
        !table.contains("among others"),
        "shortened in the table: {table}"
    );
    let mut seen = String::new();
    for _ in 0..20 {
        app.on_key(key('>'), now);
        seen.push_str(&pane(&app.view(), 100, 7, panes::parity::render));
    }
    assert!(
        seen.contains("among others (first differing keys shown by `cutover check`)"),
        "{seen}"
    );
    for _ in 0..20 {
        app.on_key(key('<'), now);
    }
    assert_eq!(pane(&app.view(), 100, 7, panes::parity::render), table);
}
