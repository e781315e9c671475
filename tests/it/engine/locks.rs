//! Locks and crashes: lock-timeout retries that name the blocker, a lock that never clears, a
//! deadlock with the application, a process killed mid-apply, and two operators advancing at
//! once.

use std::time::{Duration, Instant};

use cutover::control::audit::Actor;
use cutover::db::DbConfig;
use cutover::engine::{self, DdlError, EngineError, EngineEvent, LockLoss, PhaseState, RunOptions};
use cutover::plan::{Phase, Plan};
use tokio_postgres::Client;

use super::demo_db;
use crate::common::catalog::Catalog;
use crate::common::plans::{demo_variant, demo_with, DEMO_PLAN};
use crate::common::{self, code, cutover, ok, override_gate, status_json, text};

/// Holds `LOCK TABLE accounts IN ACCESS SHARE MODE` in its own transaction; returns the client and its pid.
async fn hold_lock(url: &str) -> (Client, i32) {
    let blocker = common::connect(url).await;
    let pid: i32 = blocker
        .query_one("SELECT pg_backend_pid()", &[])
        .await
        .unwrap()
        .get(0);
    blocker
        .batch_execute("SET application_name = 'lock-holder-test'; BEGIN; LOCK TABLE public.accounts IN ACCESS SHARE MODE")
        .await
        .unwrap();
    (blocker, pid)
}

/// The demo plan with a 300 ms lock timeout and the given retry bounds.
fn fast_lock_plan(max_attempts: u32, max_wait: &str) -> Plan {
    let source = demo_with(&[
        ("lock_timeout = \"2s\"", "lock_timeout = \"300ms\""),
        (
            "ddl_max_attempts = 8",
            &format!("ddl_max_attempts = {max_attempts}"),
        ),
        (
            "ddl_max_wait = \"2m\"",
            &format!("ddl_max_wait = \"{max_wait}\""),
        ),
    ]);
    Plan::parse("fast-lock.toml", &source).unwrap()
}

#[tokio::test]
async fn lock_timeout_retries_name_the_blocker_and_succeed_once_released() {
    let db = demo_db().await;
    let plan = fast_lock_plan(50, "30s");
    let mut c = db.control_client().await;
    let actor = Actor::current(&c).await.unwrap();
    engine::override_gate(&mut c, &plan, &actor, Phase::Expand, "test: lock behaviour")
        .await
        .unwrap();
    let (blocker, blocker_pid) = hold_lock(&db.url).await;

    let (tx, mut events) = tokio::sync::mpsc::unbounded_channel();
    let opts = RunOptions {
        monitor: Some(DbConfig::from_url(&db.url).unwrap()),
        events: Some(tx),
    };
    let task = tokio::spawn({
        let plan = plan.clone();
        let actor = actor.clone();
        async move { engine::apply_phase(&mut c, &plan, &actor, Phase::Expand, &opts).await }
    });
    // The runner reports who blocks it, and retries after lock timeouts.
    let mut named = false;
    let mut retries = 0;
    let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
    while !(named && retries >= 2) {
        let ev = tokio::time::timeout_at(deadline, events.recv())
            .await
            .expect("no blocker report / retry within 20 s")
            .expect("event channel closed early");
        match ev {
            EngineEvent::Blocked { blockers } => {
                named |= blockers.iter().any(|b| {
                    b.pid == blocker_pid
                        && b.application_name == "lock-holder-test"
                        && b.query.contains("LOCK TABLE")
                });
            }
            EngineEvent::Retry {
                loss: LockLoss::Timeout,
                ..
            } => retries += 1,
            _ => {}
        }
    }
    blocker.batch_execute("COMMIT").await.unwrap();
    let applied = task.await.unwrap().unwrap();
    assert!(applied.changed);
    assert!(applied.attempts >= 3, "attempts {}", applied.attempts);
    assert!(
        applied.blockers.iter().any(|b| b.pid == blocker_pid),
        "{:?}",
        applied.blockers
    );
    let check = db.client().await;
    let has: bool = check
        .query_one("SELECT EXISTS (SELECT 1 FROM pg_attribute WHERE attrelid = 'public.accounts'::regclass AND attname = 'balance_cents')", &[])
        .await
        .unwrap()
        .get(0);
    assert!(has);
    let audited: String = check
        .query_one(
            "SELECT details::text FROM cutover.audit_log WHERE action = 'phase.apply'",
            &[],
        )
        .await
        .unwrap()
        .get(0);
    assert!(
        audited.contains("lock-holder-test") && audited.contains("\"attempts\""),
        "{audited}"
    );
}

#[tokio::test]
async fn lock_timeout_that_never_clears_fails_cleanly_within_bounds() {
    let db = demo_db().await;
    let plan = fast_lock_plan(4, "10s");
    let mut c = db.control_client().await;
    let actor = Actor::current(&c).await.unwrap();
    engine::override_gate(&mut c, &plan, &actor, Phase::Expand, "test: lock behaviour")
        .await
        .unwrap();
    let (blocker, blocker_pid) = hold_lock(&db.url).await;
    let before = Catalog(&c).fingerprint().await;
    let started = Instant::now();
    let opts = RunOptions::with_monitor(DbConfig::from_url(&db.url).unwrap());
    let err = engine::apply_phase(&mut c, &plan, &actor, Phase::Expand, &opts)
        .await
        .unwrap_err();
    let took = started.elapsed();
    match &err {
        EngineError::Ddl(DdlError::LockTimeout {
            attempts,
            blockers,
            lock_timeout_ms,
            ..
        }) => {
            assert_eq!(*attempts, 4);
            assert_eq!(*lock_timeout_ms, 300);
            assert!(
                blockers.iter().any(|b| b.pid == blocker_pid),
                "{blockers:?}"
            );
        }
        other => panic!("expected a lock timeout, got {other}"),
    }
    assert!(err.to_string().contains("lock-holder-test"), "{err}");
    assert!(took < Duration::from_secs(10), "took {took:?}");
    assert_eq!(
        Catalog(&c).fingerprint().await,
        before,
        "a failed phase must leave nothing behind"
    );
    let st = cutover::control::phases::load(&c, plan.id()).await.unwrap();
    assert_eq!(st.phase(Phase::Expand).state, PhaseState::Failed);
    assert!(st
        .phase(Phase::Expand)
        .error
        .as_deref()
        .unwrap_or("")
        .contains("could not get its lock: 4 attempts over"));
    assert!(err.to_string().contains("(4 timed out)"), "{err}");
    blocker.batch_execute("ROLLBACK").await.unwrap();

    // Once the lock is free, advance retries the failed phase.
    let r = engine::advance(&mut c, &plan, &actor, &opts).await.unwrap();
    assert_eq!(r.phase, Some(Phase::Expand));
    assert!(r.changed);
}

#[tokio::test]
async fn a_crash_mid_apply_leaves_the_phase_unapplied_and_advance_resumes() {
    let db = demo_db().await;
    let url = db.url.as_str();
    let dir = tempfile::tempdir().unwrap();
    let plan = demo_variant(
        dir.path(),
        "crash.toml",
        &[
            ("lock_timeout = \"2s\"", "lock_timeout = \"300ms\""),
            ("ddl_max_attempts = 8", "ddl_max_attempts = 100"),
        ],
    );
    let plan = plan.to_str().unwrap();
    ok(&override_gate(url, plan, "expand", "test: crash").await);
    let c = db.client().await;
    let before = Catalog(&c).fingerprint().await;
    let (blocker, _) = hold_lock(url).await;
    let mut child = tokio::process::Command::new(common::cutover_bin())
        .args(["advance", plan])
        .env("DATABASE_URL", url)
        .stderr(std::process::Stdio::null())
        .kill_on_drop(true)
        .spawn()
        .unwrap();
    // Wait until it is applying and retrying its lock, then kill it (SIGKILL: no clean-up).
    let deadline = Instant::now() + Duration::from_secs(15);
    loop {
        let state: String = c
            .query_one(
                "SELECT state FROM cutover.phases WHERE phase = 'expand'",
                &[],
            )
            .await
            .unwrap()
            .get(0);
        if state == "applying" {
            break;
        }
        assert!(Instant::now() < deadline, "advance never started applying");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    tokio::time::sleep(Duration::from_millis(700)).await;
    child.kill().await.unwrap();
    // Its backend notices the dead client at its next lock timeout and goes away.
    let deadline = Instant::now() + Duration::from_secs(15);
    loop {
        let n: i64 = c
            .query_one(
                "SELECT count(*) FROM pg_stat_activity WHERE application_name = 'cutover/advance'",
                &[],
            )
            .await
            .unwrap()
            .get(0);
        if n == 0 {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "the killed advance's backend lingers"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert_eq!(
        Catalog(&c).fingerprint().await,
        before,
        "a crash must not leave a half-applied phase"
    );
    let st = status_json(url, plan).await;
    assert_eq!(st["phases"][0]["state"], "applying");
    assert!(
        st["phases"][0]["note"]
            .as_str()
            .unwrap()
            .starts_with("interrupted"),
        "{}",
        st["phases"][0]
    );

    blocker.batch_execute("ROLLBACK").await.unwrap();
    let o = cutover(url, &["advance", plan]).await;
    assert!(ok(&o).contains("expand applied"), "{}", text(&o));
    assert_ne!(Catalog(&c).fingerprint().await, before);
    let o = cutover(url, &["audit", "verify"]).await;
    assert!(ok(&o).contains("intact"));
}

#[tokio::test]
async fn two_operators_advancing_at_once_apply_the_phase_once() {
    let db = demo_db().await;
    let url = db.url.as_str();
    ok(&override_gate(url, DEMO_PLAN, "expand", "test: race").await);
    let (a, b) = tokio::join!(
        cutover(url, &["advance", DEMO_PLAN, "--phase", "expand"]),
        cutover(url, &["advance", DEMO_PLAN, "--phase", "expand"])
    );
    let outcomes = [(code(&a), text(&a)), (code(&b), text(&b))];
    let applied = outcomes
        .iter()
        .filter(|(c, t)| *c == 0 && t.contains("expand applied"))
        .count();
    assert_eq!(applied, 1, "{outcomes:?}");
    for (c, t) in &outcomes {
        assert!(
            (*c == 0
                && (t.contains("expand applied")
                    || t.contains("already applied")
                    || t.contains("just applied by another session")))
                || (*c == 3 && (t.contains("right now") || t.contains("changed meanwhile"))),
            "{outcomes:?}"
        );
    }
    let client = db.client().await;
    let applies: i64 = client
        .query_one(
            "SELECT count(*) FROM cutover.audit_log WHERE action = 'phase.apply'",
            &[],
        )
        .await
        .unwrap()
        .get(0);
    assert_eq!(applies, 1);
}

/// Applies expand while an application transaction takes the two tables in the other order
/// than the phase's statements: the server breaks the deadlock by aborting the phase's
/// transaction (its wait began first), and the application's commit goes through. Returns the
/// phase's outcome, the engine's events and the run.
async fn deadlock_with_the_application(
    max_attempts: u32,
) -> (
    Result<engine::Applied, EngineError>,
    Vec<EngineEvent>,
    crate::common::lifecycle::LifecycleRun,
) {
    use crate::common::lifecycle::Lifecycle;
    let source = format!(
        "{}[settings]\nlock_timeout = \"5s\"\nddl_max_attempts = {max_attempts}\n{}",
        crate::operation_kinds::HEAD,
        r#"
[[operations]]
op = "sql"
up = "ALTER TABLE public.a ADD COLUMN x int; ALTER TABLE public.b ADD COLUMN x int"
down = "ALTER TABLE public.b DROP COLUMN x; ALTER TABLE public.a DROP COLUMN x"
"#
    );
    let plan = Plan::parse("ops.toml", &source).unwrap_or_else(|e| panic!("{e}"));
    let mut run = Lifecycle::of(plan)
        .schema("CREATE TABLE public.a (id int); CREATE TABLE public.b (id int)")
        .start()
        .await;
    let app = run.db.db.client().await;
    app.batch_execute("BEGIN; INSERT INTO public.b VALUES (1)")
        .await
        .unwrap();
    let watcher = run.db.db.client().await;
    let application = async {
        // Once the phase holds `a` and waits for `b` (which the app holds), the app wants `a`:
        // the phase's wait began first, so its deadlock check fires first.
        loop {
            let held: bool = watcher
                .query_one(
                    "SELECT EXISTS (SELECT 1 FROM pg_locks WHERE relation = 'public.a'::regclass
                        AND mode = 'AccessExclusiveLock' AND granted)
                        AND EXISTS (SELECT 1 FROM pg_locks WHERE relation = 'public.b'::regclass
                        AND mode = 'AccessExclusiveLock' AND NOT granted) AS held",
                    &[],
                )
                .await
                .unwrap()
                .get("held");
            if held {
                break;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        app.batch_execute("INSERT INTO public.a VALUES (1); COMMIT")
            .await
            .unwrap_or_else(|e| panic!("the application's transaction: {e}"));
    };
    let (tx, mut events) = tokio::sync::mpsc::unbounded_channel();
    let opts = RunOptions {
        monitor: None,
        events: Some(tx),
    };
    let plan = run.db.plan.clone();
    engine::override_gate(
        &mut run.engine,
        &plan,
        &run.actor,
        Phase::Expand,
        "test: locks",
    )
    .await
    .unwrap();
    let started = Instant::now();
    let (applied, ()) = tokio::join!(
        engine::apply_phase(&mut run.engine, &plan, &run.actor, Phase::Expand, &opts),
        application
    );
    assert!(started.elapsed() < Duration::from_secs(30));
    let rows: i64 = run
        .db
        .scalar("SELECT (SELECT count(*) FROM public.a) + (SELECT count(*) FROM public.b)")
        .await;
    assert_eq!(rows, 2, "the application's transaction committed");
    let mut seen = Vec::new();
    while let Ok(ev) = events.try_recv() {
        seen.push(ev);
    }
    (applied, seen, run)
}

/// The deadlock is retried like a lock timeout, and the retry says it was a deadlock.
#[tokio::test]
async fn a_deadlock_with_the_application_is_retried() {
    let (applied, events, run) = deadlock_with_the_application(8).await;
    let applied = applied.unwrap_or_else(|e| panic!("{e}"));
    assert!(applied.changed);
    assert!(
        events.iter().any(|e| matches!(
            e,
            EngineEvent::Retry {
                loss: LockLoss::Deadlock,
                ..
            }
        )),
        "{events:?}"
    );
    run.db
        .catalog()
        .assert_column("public.b", "x", "integer", true)
        .await;
}

/// A deadlock on the last attempt fails the phase, named as a deadlock (not a lock timeout).
#[tokio::test]
async fn a_deadlock_on_the_last_attempt_is_named() {
    let (applied, _, run) = deadlock_with_the_application(1).await;
    let err = applied.map(|a| a.message).unwrap_err();
    assert!(
        matches!(
            err,
            EngineError::Ddl(DdlError::LockTimeout { deadlocks: 1, .. })
        ),
        "{err}"
    );
    assert!(
        err.to_string().contains("1 attempts over")
            && err
                .to_string()
                .contains("(1 aborted by the server to break a deadlock)"),
        "{err}"
    );
    run.assert_state(Phase::Expand, PhaseState::Failed).await;
    run.db.catalog().assert_no_column("public.a", "x").await;
}
