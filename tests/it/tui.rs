//! End to end: the real `cutover tui` in tmux against a real database. Keys go in through
//! `tmux send-keys`; the test asserts on the captured screen and on the database afterwards.

use std::process::Command;
use std::time::{Duration, Instant};

use crate::common::plans::{demo_twin, write};
use crate::common::{cutover_bin, TestDb};

const PLAN: &str = concat!(
    env!("CARGO_MANIFEST_DIR"),
    "/plans/accounts-balance-cents.toml"
);
const SCHEMA: &str = include_str!("../../assets/demo/schema.sql");

/// A tmux session running one command; killed on drop.
struct Tmux {
    name: String,
}

impl Tmux {
    fn start(cmd: &str, width: u16, height: u16) -> Tmux {
        let name = format!("cutover-it-{:08x}", rand::random::<u32>());
        let status = Command::new("tmux")
            .args(["new-session", "-d", "-s", &name])
            .args(["-x", &width.to_string(), "-y", &height.to_string()])
            .arg(cmd)
            .status()
            .expect("tmux must be installed for the TUI end-to-end test");
        assert!(status.success(), "tmux new-session failed");
        Tmux { name }
    }

    fn send(&self, keys: &[&str]) {
        let status = Command::new("tmux")
            .args(["send-keys", "-t", &self.name])
            .args(keys)
            .status()
            .unwrap();
        assert!(status.success(), "tmux send-keys failed");
    }

    fn capture(&self) -> String {
        let out = Command::new("tmux")
            .args(["capture-pane", "-p", "-t", &self.name])
            .output()
            .unwrap();
        String::from_utf8_lossy(&out.stdout).into_owned()
    }

    fn alive(&self) -> bool {
        Command::new("tmux")
            .args(["has-session", "-t", &self.name])
            .status()
            .map(|s| s.success())
            .unwrap_or(false)
    }

    /// Waits until the screen contains every needle; panics with the screen otherwise.
    fn wait_for(&self, needles: &[&str], within: Duration) -> String {
        let start = Instant::now();
        loop {
            let screen = self.capture();
            if needles.iter().all(|n| screen.contains(n)) {
                return screen;
            }
            if start.elapsed() > within {
                panic!("screen never showed {needles:?} within {within:?}:\n{screen}");
            }
            std::thread::sleep(Duration::from_millis(100));
        }
    }
}

impl Drop for Tmux {
    fn drop(&mut self) {
        let _ = Command::new("tmux")
            .args(["kill-session", "-t", &self.name])
            .status();
    }
}

async fn wait_db(db: &TestDb, sql: &str, want: &str, within: Duration) {
    let client = db.client().await;
    let start = Instant::now();
    loop {
        let got: Option<String> = client
            .query_opt(sql, &[])
            .await
            .unwrap()
            .and_then(|r| r.get(0));
        if got.as_deref() == Some(want) {
            return;
        }
        if start.elapsed() > within {
            panic!("`{sql}` returned {got:?}, wanted {want:?}");
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// A migration whose expand, dual-write and backfill phases are applied, with a backfill capped
/// at 400 rows/s (20,000 rows: it outlasts the test) that the TUI runs in-process, and the
/// read-switch gate waiting on sign-offs and checks.
async fn migration_in_backfill(db: &TestDb) {
    db.exec(SCHEMA).await;
    db.exec("SELECT cutover_demo_seed(20000, 100, 200)").await;
    let mut client = db.client().await;
    cutover::control::schema::bootstrap(&mut client)
        .await
        .unwrap();
    let plan = cutover::plan::Plan::load(PLAN).unwrap();
    let apply = |p: cutover::plan::Phase| plan.phase(p).apply.clone();
    db.exec(&apply(cutover::plan::Phase::Expand)).await;
    db.exec(&apply(cutover::plan::Phase::DualWrite)).await;
    client
        .execute(
            "INSERT INTO cutover.migrations (plan_id, title, plan_sha256, plan_source, plan_path, current_phase, state)
             VALUES ($1, $2, $3, $4, $5, 'backfill', 'applied')",
            &[&plan.id(), &plan.spec.title, &plan.sha256(), &plan.source, &PLAN],
        )
        .await
        .unwrap();
    for phase in ["expand", "dual_write", "backfill"] {
        client
            .execute(
                "INSERT INTO cutover.phases (plan_id, phase, state, plan_sha256, started_at, finished_at)
                 VALUES ($1, $2, 'applied', $3, now(), now())",
                &[&plan.id(), &phase, &plan.sha256()],
            )
            .await
            .unwrap();
    }
    client
        .execute(
            "INSERT INTO cutover.backfill (plan_id, target_chunk_ms, max_rows_per_sec, workers)
             VALUES ($1, 300, 400, 1)",
            &[&plan.id()],
        )
        .await
        .unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tui_in_tmux_signs_off_pauses_and_rolls_back() {
    let db = TestDb::new().await;
    migration_in_backfill(&db).await;
    let cmd = format!(
        "env DATABASE_URL='{}' NO_COLOR=1 {} tui {PLAN}",
        db.url,
        cutover_bin().display()
    );
    let tmux = Tmux::start(&cmd, 120, 40);
    let long = Duration::from_secs(15);
    tmux.wait_for(&["● live", "Backfill running", "Next read_switch"], long);
    // A second terminal: a read-only viewer at 80×24.
    let viewer = Tmux::start(&format!("{} --read-only", cmd), 80, 24);
    viewer.wait_for(&["● live", "READ-ONLY", "Backfill running"], long);

    // s: sign off the read-switch gate for every role I hold that it needs.
    tmux.send(&["s"]);
    wait_db(
        &db,
        "SELECT string_agg(role, ',' ORDER BY role) FROM cutover.signoffs WHERE gate = 'read_switch'",
        "data_owner,lead",
        long,
    )
    .await;
    tmux.wait_for(&["signed the read_switch gate"], long);
    // The viewer sees the sign-off; its own keys are refused and change nothing.
    // (At 80×24 the roster shares its slot with parity: Tab to it.)
    viewer.send(&["Tab", "Tab", "Tab"]);
    viewer.wait_for(
        &["Roster", "data_owner postgres  signed", "┃read_switch "],
        long,
    );
    viewer.send(&["Space"]);
    viewer.wait_for(&["read-only mode"], long);
    wait_db(&db, "SELECT state FROM cutover.backfill", "running", long).await;

    // A CLI command in a third "terminal" shows up in the TUI's log (audit entry from the database).
    let out = Command::new(cutover_bin())
        .args([
            "--database-url",
            &db.url,
            "note",
            PLAN,
            "cli-note-from-elsewhere",
        ])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    tmux.wait_for(&["postgres note"], long);

    // The TUI runs the backfill itself (it holds the lease).
    wait_db(
        &db,
        "SELECT (count(*) > 0)::text FROM cutover.backfill_ranges WHERE lease_pid IS NOT NULL",
        "true",
        long,
    )
    .await;

    // The monitoring connection dies: the TUI says so and reconnects by itself.
    let admin = db.client().await;
    admin
        .execute(
            "SELECT pg_terminate_backend(pid) FROM pg_stat_activity
              WHERE application_name = 'cutover/tui' AND datname = current_database()",
            &[],
        )
        .await
        .unwrap();
    tmux.wait_for(&["lost the database"], long);
    tmux.wait_for(&["● live"], long);

    // Space: pause the backfill; the header of its pane follows the database.
    tmux.send(&["Space"]);
    wait_db(&db, "SELECT state FROM cutover.backfill", "paused", long).await;
    tmux.wait_for(&["Backfill paused"], long);
    viewer.wait_for(&["Backfill paused"], long);

    // R opens the red confirmation with the SQL; a stray key cancels it.
    tmux.send(&["R"]);
    tmux.wait_for(&["ROLL BACK BACKFILL", "These steps run, in order"], long);
    tokio::time::sleep(Duration::from_millis(400)).await;
    tmux.send(&["x"]);
    tmux.wait_for(&["rollback cancelled"], long);
    wait_db(
        &db,
        "SELECT state FROM cutover.phases WHERE phase = 'backfill'",
        "applied",
        long,
    )
    .await;

    // R then a deliberate Y rolls back the backfill phase.
    tmux.send(&["R"]);
    tmux.wait_for(&["ROLL BACK BACKFILL"], long);
    tokio::time::sleep(Duration::from_millis(400)).await;
    tmux.send(&["Y"]);
    wait_db(
        &db,
        "SELECT state FROM cutover.phases WHERE phase = 'backfill'",
        "rolled_back",
        long,
    )
    .await;
    wait_db(&db, "SELECT state FROM cutover.backfill", "stopped", long).await;
    tmux.wait_for(&["↺ backfill"], long);

    // Every action is in the audit log.
    wait_db(
        &db,
        "SELECT (count(*) FILTER (WHERE action = 'signoff') = 2
                 AND count(*) FILTER (WHERE action IN ('backfill_pause', 'backfill.pause')) = 1)::text
           FROM cutover.audit_log",
        "true",
        long,
    )
    .await;

    // q quits and gives the terminal back.
    tmux.send(&["q"]);
    let start = Instant::now();
    while tmux.alive() && start.elapsed() < long {
        let screen = tmux.capture();
        if !screen.contains("CUTOVER") {
            break;
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    assert!(
        !tmux.capture().contains("CUTOVER"),
        "the TUI did not leave the screen"
    );
}

/// The demo plan under another id, title and read-switch flag: a second migration on the same
/// schema, written into `dir`.
fn twin_plan(dir: &std::path::Path) -> std::path::PathBuf {
    write(dir, "twin.toml", &demo_twin())
}

/// Quits with q and waits until the session is gone.
fn quit(tmux: &Tmux, within: Duration) {
    tmux.send(&["q"]);
    let start = Instant::now();
    while tmux.alive() && start.elapsed() < within {
        std::thread::sleep(Duration::from_millis(100));
    }
    assert!(!tmux.alive(), "the TUI did not exit after q");
}

/// Two migrations on one database: `cutover tui a b` opens both, `]` and the `m` picker switch,
/// and `cutover tui` with no plan opens every registered migration from the stored plans.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tui_in_tmux_switches_between_two_migrations() {
    let started = Instant::now();
    let db = TestDb::new().await;
    migration_in_backfill(&db).await;
    let dir = tempfile::tempdir().unwrap();
    let twin = twin_plan(dir.path());
    {
        let mut client = db.client().await;
        let plan = cutover::plan::Plan::load(&twin).unwrap();
        let actor = cutover::control::audit::Actor::current(&client)
            .await
            .unwrap();
        cutover::control::phases::ensure_registered(&mut client, &plan, &actor)
            .await
            .unwrap();
    }
    let bin = cutover_bin();
    let env = format!("env DATABASE_URL='{}' NO_COLOR=1 CUTOVER_LOG=warn", db.url);
    let long = Duration::from_secs(20);
    // One metrics endpoint for both: each plan's `:scrape` reaches its own path.
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let tmux = Tmux::start(
        &format!(
            "{env} {} --metrics-addr 127.0.0.1:{port} tui {PLAN} {}",
            bin.display(),
            twin.display()
        ),
        120,
        40,
    );
    tmux.wait_for(
        &[
            "● live",
            "migration 1/2 (m: switch)  accounts-balance-cents — ",
            "m ] [ switch",
        ],
        long,
    );
    tmux.send(&["]"]);
    tmux.wait_for(
        &["migration 2/2 (m: switch)  accounts-cents-twin — The twin migration"],
        long,
    );
    tmux.send(&[":"]);
    tmux.send(&["-l", "scrape"]);
    tmux.send(&["Enter"]);
    tmux.wait_for(
        &[&format!(
            "scraped http://127.0.0.1:{port}/metrics/accounts-cents-twin"
        )],
        long,
    );
    wait_db(
        &db,
        "SELECT string_agg(DISTINCT plan_id, ',') FROM cutover.metrics_scrapes",
        "accounts-cents-twin",
        long,
    )
    .await;
    tmux.send(&["m"]);
    tmux.wait_for(
        &[
            "Migrations (2)",
            "1  accounts-balance-cents — Store account balances",
            "backfill applied",
            "› ● 2  accounts-cents-twin — The twin migration",
            "not started  ·  expand gate",
        ],
        long,
    );
    // Enter on the first row switches back.
    tmux.send(&["Up"]);
    tmux.send(&["Enter"]);
    tmux.wait_for(
        &["migration 1/2 (m: switch)  accounts-balance-cents — "],
        long,
    );
    eprintln!(
        "two plan files, switched both ways: {:?}",
        started.elapsed()
    );
    quit(&tmux, long);

    // No plan: every migration registered on the database, oldest first.
    let all = Tmux::start(&format!("{env} {} tui", bin.display()), 120, 40);
    all.wait_for(
        &[
            "● live",
            "migration 1/2 (m: switch)  accounts-balance-cents — ",
        ],
        long,
    );
    all.send(&["m"]);
    all.wait_for(
        &[
            "Migrations (2)",
            "› ● 1  accounts-balance-cents",
            "backfill applied",
            "2  accounts-cents-twin — The twin migration",
            "not started",
        ],
        long,
    );
    // Esc closes the picker (wait for it: an Esc and a q sent together read as Alt-q).
    all.send(&["Escape"]);
    let start = Instant::now();
    while all.capture().contains("Migrations (2)") {
        assert!(start.elapsed() < long, "Esc did not close the picker");
        std::thread::sleep(Duration::from_millis(100));
    }
    quit(&all, long);
    eprintln!("two migrations in tmux: {:?}", started.elapsed());
}

/// `cutover tui` refuses two files of one migration, and a database with none registered.
#[tokio::test]
async fn tui_refuses_a_duplicate_plan_and_an_empty_database() {
    let db = TestDb::new().await;
    let dir = tempfile::tempdir().unwrap();
    let copy = dir.path().join("copy.toml");
    std::fs::copy(PLAN, &copy).unwrap();
    let copy_s = copy.display().to_string();
    let out = crate::common::cutover(&db.url, &["tui", PLAN, &copy_s]).await;
    let msg = crate::common::text(&out);
    assert!(!out.status.success(), "{msg}");
    assert!(
        msg.contains(PLAN) && msg.contains(&copy_s) && msg.contains("accounts-balance-cents"),
        "{msg}"
    );
    let out = crate::common::cutover(&db.url, &["tui"]).await;
    let msg = crate::common::text(&out);
    assert!(!out.status.success(), "{msg}");
    assert!(msg.contains("no migration is registered"), "{msg}");
}

/// The hint line of a captured screen (`▶ next: …` / `▶ done: …`), without the arrow.
fn hint_of(screen: &str) -> Option<String> {
    screen
        .lines()
        .find_map(|l| l.split_once("▶ ").map(|(_, h)| h.trim().to_string()))
}

/// The database URL the header shows (`db postgres://…  │`).
fn url_of(screen: &str) -> Option<String> {
    let line = screen.lines().find(|l| l.trim_start().starts_with("db "))?;
    let url = line
        .trim_start()
        .strip_prefix("db ")?
        .split_whitespace()
        .next()?;
    Some(url.to_string())
}

/// `cutover demo` itself (its own throwaway cluster, with pg_stat_statements), driven from
/// start to "contract applied" by nothing but the keys its next-step hint names — a newcomer's
/// walk-through. The database must then hold all five phases applied, the old column gone, the
/// app on v2, a rehearsal and a scrape (the scorecard's Reversibility and Observability).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn demo_in_tmux_follows_the_hint_to_contract_applied() {
    let started = Instant::now();
    let cmd = format!(
        "env -u DATABASE_URL NO_COLOR=1 {} demo --accounts 3000",
        cutover_bin().display()
    );
    let tmux = Tmux::start(&cmd, 120, 40);
    let screen = tmux.wait_for(
        &["● live", "▶ next: sign off expand"],
        Duration::from_secs(60),
    );
    let url = url_of(&screen).unwrap_or_else(|| panic!("no database URL in the header:\n{screen}"));
    let mut done_extra: Vec<&str> = Vec::new();
    let mut followed: Vec<String> = Vec::new();
    let mut unfollowable: Option<Instant> = None;
    let deadline = Instant::now() + Duration::from_secs(90);
    loop {
        let screen = tmux.capture();
        let Some(hint) = hint_of(&screen) else {
            assert!(Instant::now() < deadline, "no hint on screen:\n{screen}");
            std::thread::sleep(Duration::from_millis(200));
            continue;
        };
        if hint.starts_with("done:") {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "the hint did not lead to contract within 90 s; followed {followed:?}; now:\n{screen}"
        );
        // "… · meanwhile :rehearse": complete the scorecard while waiting, once each.
        if let Some((_, extra)) = hint.split_once(" · meanwhile ") {
            if !done_extra.contains(&extra) {
                done_extra.push(if extra == ":rehearse" {
                    ":rehearse"
                } else {
                    ":scrape"
                });
                tmux.send(&[":"]);
                tmux.send(&["-l", extra.trim_start_matches(':')]);
                tmux.send(&["Enter"]);
                followed.push(extra.to_string());
                std::thread::sleep(Duration::from_millis(800));
                continue;
            }
        }
        let keys: &[&str] = if hint.starts_with("next: wait") || hint.contains(" must sign off ") {
            &[]
        } else if hint.ends_with("(a, then Y)") {
            &["a", "Y"]
        } else if hint.ends_with("(:app v2)") {
            &[":app v2"]
        } else if hint.ends_with("(s)") {
            &["s"]
        } else if hint.ends_with("(a)") {
            &["a"]
        } else if hint.ends_with("(c)") {
            &["c"]
        } else {
            // A hint no key answers: it must pass by itself (within 20 s on a loaded machine).
            if unfollowable.get_or_insert_with(Instant::now).elapsed() > Duration::from_secs(20) {
                panic!("a hint the walk-through cannot follow: {hint}\n{screen}");
            }
            std::thread::sleep(Duration::from_millis(200));
            continue;
        };
        unfollowable = None;
        for k in keys {
            if let Some(cmd) = k.strip_prefix(':') {
                tmux.send(&[":"]);
                tmux.send(&["-l", cmd]);
                tmux.send(&["Enter"]);
            } else {
                if *k == "Y" {
                    // The irreversible confirmation arms after 250 ms.
                    tmux.wait_for(&["Y"], Duration::from_secs(5));
                    std::thread::sleep(Duration::from_millis(400));
                }
                tmux.send(&[k]);
            }
        }
        if !keys.is_empty() {
            followed.push(hint.clone());
        }
        // Let the action land before reading the hint again.
        let before = hint;
        let settle = Instant::now();
        while settle.elapsed() < Duration::from_secs(5) {
            std::thread::sleep(Duration::from_millis(200));
            if hint_of(&tmux.capture()).is_some_and(|h| h != before) {
                break;
            }
        }
    }
    let took = started.elapsed();
    eprintln!("demo walk-through: {took:?}, followed {followed:?}");
    for needed in [":app v2", ":rehearse", ":scrape"] {
        assert!(
            followed.iter().any(|f| f.contains(needed)),
            "the hint never asked for {needed}: {followed:?}"
        );
    }

    // The demo's database, while the demo still runs (quitting removes it).
    let db = crate::common::connect(&url).await;
    let phases: Vec<(String, String)> = db
        .query(
            "SELECT phase, state FROM cutover.phases ORDER BY array_position(
                 ARRAY['expand','dual_write','backfill','read_switch','contract'], phase)",
            &[],
        )
        .await
        .unwrap()
        .iter()
        .map(|r| (r.get(0), r.get(1)))
        .collect();
    assert_eq!(
        phases,
        [
            "expand",
            "dual_write",
            "backfill",
            "read_switch",
            "contract"
        ]
        .iter()
        .map(|p| (p.to_string(), "applied".to_string()))
        .collect::<Vec<_>>()
    );
    let columns: Vec<String> = db
        .query(
            "SELECT attname::text FROM pg_attribute
              WHERE attrelid = 'public.accounts'::regclass AND attnum > 0 AND NOT attisdropped",
            &[],
        )
        .await
        .unwrap()
        .iter()
        .map(|r| r.get(0))
        .collect();
    assert!(
        columns.contains(&"balance_cents".to_string()) && !columns.contains(&"balance".to_string()),
        "{columns:?}"
    );
    let evidence: (i64, i64, i64, i64) = db
        .query_one(
            "SELECT (SELECT count(*) FROM cutover.overrides),
                    (SELECT count(*) FROM cutover.rehearsals WHERE ok),
                    (SELECT count(*) FROM cutover.metrics_scrapes),
                    (SELECT count(*) FROM cutover.audit_log
                      WHERE action = 'note' AND details->>'text' LIKE 'demo app: rolling from v1 to v2%')",
            &[],
        )
        .await
        .map(|r| (r.get(0), r.get(1), r.get(2), r.get(3)))
        .unwrap();
    assert_eq!(
        evidence,
        (0, 1, 1, 1),
        "no override; one rehearsal, one scrape, the audited rollout"
    );
    // The app on v2 keeps working after contract: its writes land in balance_cents.
    let before: i64 = db
        .query_one("SELECT count(*) FROM public.accounts", &[])
        .await
        .unwrap()
        .get(0);
    tokio::time::sleep(Duration::from_secs(2)).await;
    let after: i64 = db
        .query_one("SELECT count(*) FROM public.accounts", &[])
        .await
        .unwrap()
        .get(0);
    assert!(after > before, "v2 stopped opening accounts after contract");
    drop(db);

    tmux.send(&["q"]);
    let quit = Instant::now();
    while tmux.alive() && quit.elapsed() < Duration::from_secs(30) {
        std::thread::sleep(Duration::from_millis(200));
    }
    assert!(!tmux.alive(), "the demo did not exit after q");
    let cfg = cutover::db::DbConfig::from_url(&url).unwrap();
    assert!(
        cutover::db::connect_app(&cfg, "cutover-tests")
            .await
            .is_err(),
        "the demo left its cluster running at {url}"
    );
    eprintln!("demo end to end, cleanup included: {:?}", started.elapsed());
}

/// The text between `start` and the next `%` after it on `screen`, if any.
fn percent_after<'a>(screen: &'a str, start: &str) -> Option<&'a str> {
    let rest = &screen[screen.find(start)? + start.len()..];
    Some(&rest[..rest.find('%')?])
}

/// The real binary's gauge and footer show the same percentage of one running backfill.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn gauge_and_footer_show_the_same_percent() {
    let db = TestDb::new().await;
    migration_in_backfill(&db).await;
    let cmd = format!(
        "env DATABASE_URL='{}' NO_COLOR=1 {} tui {PLAN}",
        db.url,
        cutover_bin().display()
    );
    let tmux = Tmux::start(&cmd, 120, 40);
    let long = Duration::from_secs(20);
    tmux.wait_for(
        &["● live", "rows · ", "wait for the backfill to finish ("],
        long,
    );
    let start = Instant::now();
    let mut compared = 0;
    let mut previous = String::new();
    while compared < 3 && start.elapsed() < long {
        let screen = tmux.capture();
        // Only a screen that two captures agree on is a whole frame.
        if screen == previous {
            let gauge = percent_after(&screen, "rows · ");
            let footer = percent_after(&screen, "wait for the backfill to finish (");
            if let (Some(g), Some(f)) = (gauge, footer) {
                assert_eq!(g, f, "gauge and footer differ:\n{screen}");
                compared += 1;
            }
        }
        previous = screen;
        std::thread::sleep(Duration::from_millis(300));
    }
    assert_eq!(compared, 3, "never saw both percentages:\n{previous}");
}
