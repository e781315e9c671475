//! The latency guard's tail signals against a real PostgreSQL: an application of short
//! committing transactions slowed by a burst of WAL makes the guard yield (the commit probe
//! reads it), and an application session waiting on a backfill session's row lock does too; a
//! probe that cannot commit names its signal.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use cutover::backfill::guard::{Advice, Guard};
use cutover::backfill::tail::TailSignal;
use cutover::db::{self, DbConfig, SessionSettings};
use tokio::task::JoinHandle;

use crate::common::TestDb;

const TICK: Duration = Duration::from_millis(250);

/// `n` application sessions running `sql` in a loop until `stop`.
async fn app(
    db: &TestDb,
    n: usize,
    sql: &'static str,
    stop: &Arc<AtomicBool>,
) -> Vec<JoinHandle<()>> {
    let mut tasks = Vec::new();
    for _ in 0..n {
        let (stop, client) = (stop.clone(), db.client().await);
        tasks.push(tokio::spawn(async move {
            while !stop.load(Ordering::Relaxed) {
                client.batch_execute(sql).await.expect("app statement");
            }
        }));
    }
    tasks
}

/// Ticks `guard` with no chunk running until it has a commit baseline (and an activity one: at
/// least six application backends caught active in two seconds, which under the whole suite's
/// load can take a while).
async fn baseline(guard: &mut Guard, monitor: &tokio_postgres::Client) {
    for _ in 0..120 {
        guard
            .tick(monitor, Duration::from_secs(10))
            .await
            .expect("tick");
        if guard.tail().commit_baseline().is_some() && guard.baseline().is_some() {
            return;
        }
        tokio::time::sleep(TICK).await;
    }
    panic!("no baseline within 30 s");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn short_committing_transactions_slowed_by_wal_make_the_guard_yield() {
    let db = TestDb::new().await;
    db.control_client().await;
    db.exec(
        "CREATE TABLE public.items (id bigserial PRIMARY KEY, v text);
         CREATE TABLE public.ledger (id bigserial PRIMARY KEY, at timestamptz DEFAULT now());",
    )
    .await;
    let cfg = DbConfig::from_url(&db.url).expect("url");
    let monitor = db::connect(&cfg, &SessionSettings::new("backfill/throttle"))
        .await
        .expect("monitor");
    let stop = Arc::new(AtomicBool::new(false));
    let tasks = app(&db, 3, "INSERT INTO public.ledger DEFAULT VALUES", &stop).await;
    let mut guard = Guard::new("public.items", 1.25).probing("guard-commit", 0.0);
    baseline(&mut guard, &monitor).await;
    // A "backfill" writing WAL in bursts, committing asynchronously as the chunks do.
    let writer = db::connect(&cfg, &SessionSettings::new("backfill/w1"))
        .await
        .expect("writer");
    let burst = tokio::spawn(async move {
        let until = Instant::now() + Duration::from_secs(20);
        while Instant::now() < until {
            let _ = writer
                .batch_execute(
                    "SET synchronous_commit = off; \
                     INSERT INTO public.items (v) SELECT repeat(md5(g::text), 30) \
                     FROM generate_series(1, 20000) g",
                )
                .await;
        }
    });
    let (mut commit_over, mut reason) = (false, None);
    for _ in 0..60 {
        tokio::time::sleep(TICK).await;
        let advice = guard.tick(&monitor, Duration::ZERO).await.expect("tick");
        commit_over |= guard
            .tail()
            .pressures(Instant::now(), 1.25, guard.app_transaction_ms())
            .iter()
            .any(|p| p.signal == TailSignal::Commit && p.ratio > 1.25);
        if let Advice::Yield { reason: r, .. } = advice {
            if r.contains("> 1.25×") {
                reason = Some(r);
            }
        }
        if commit_over && reason.is_some() {
            break;
        }
    }
    burst.abort();
    stop.store(true, Ordering::Relaxed);
    for t in tasks {
        t.await.expect("app task");
    }
    let reason = reason.expect("the guard must yield while the WAL burst slows commits");
    assert!(reason.starts_with("yielding: "), "{reason}");
    assert!(
        commit_over,
        "the commit probe must read over budget; last: {reason}"
    );
    let probes: i64 = db
        .client()
        .await
        .query_one(
            "SELECT n FROM cutover.guard_probe WHERE plan_id = 'guard-commit'",
            &[],
        )
        .await
        .expect("probe row")
        .get(0);
    assert!(probes >= 4, "{probes}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_application_waiting_on_a_backfill_lock_makes_the_guard_yield() {
    let db = TestDb::new().await;
    db.control_client().await;
    db.exec(
        "CREATE TABLE public.items (id bigint PRIMARY KEY, n integer NOT NULL DEFAULT 0);
         INSERT INTO public.items (id) SELECT generate_series(1, 100);",
    )
    .await;
    let cfg = DbConfig::from_url(&db.url).expect("url");
    let monitor = db::connect(&cfg, &SessionSettings::new("backfill/throttle"))
        .await
        .expect("monitor");
    let stop = Arc::new(AtomicBool::new(false));
    let tasks = app(
        &db,
        3,
        "SELECT pg_sleep(0.02); UPDATE public.items SET n = n + 1 WHERE id = 50",
        &stop,
    )
    .await;
    let mut guard = Guard::new("public.items", 1.25).probing("guard-locks", 0.0);
    baseline(&mut guard, &monitor).await;
    // A backfill session holds row 1; an application session waits on it.
    let holder = db::connect(&cfg, &SessionSettings::new("backfill/w1"))
        .await
        .expect("holder");
    holder
        .batch_execute("BEGIN; UPDATE public.items SET n = n WHERE id = 1")
        .await
        .expect("lock");
    let waiter = db.client().await;
    let blocked = tokio::spawn(async move {
        waiter
            .batch_execute("UPDATE public.items SET n = n + 1 WHERE id = 1")
            .await
    });
    let mut reason = None;
    for _ in 0..40 {
        tokio::time::sleep(TICK).await;
        if let Advice::Yield { reason: r, .. } =
            guard.tick(&monitor, Duration::ZERO).await.expect("tick")
        {
            if r.starts_with("yielding: lock waits on the backfill") {
                reason = Some(r);
                break;
            }
        }
    }
    holder.batch_execute("COMMIT").await.expect("commit");
    blocked.await.expect("waiter task").expect("waiter");
    stop.store(true, Ordering::Relaxed);
    for t in tasks {
        t.await.expect("app task");
    }
    let reason = reason.expect("the guard must yield on the lock wait, naming it");
    assert!(reason.contains("1 session(s), longest"), "{reason}");
}

#[tokio::test]
async fn an_unreadable_commit_probe_says_so() {
    let db = TestDb::new().await;
    let control = db.control_client().await;
    control
        .batch_execute("DROP TABLE cutover.guard_probe")
        .await
        .expect("drop the probe table");
    let cfg = DbConfig::from_url(&db.url).expect("url");
    let monitor = db::connect(&cfg, &SessionSettings::new("backfill/throttle"))
        .await
        .expect("monitor");
    let mut guard = Guard::new("public.items", 1.25).probing("guard-unreadable", 0.0);
    let err = guard
        .tick(&monitor, Duration::ZERO)
        .await
        .expect_err("the probe cannot commit");
    assert!(err.to_string().starts_with("commit latency: "), "{err}");
}

/// The guard's readings are kept a day: older ones of the plan go, other plans' stay.
#[tokio::test]
async fn readings_older_than_a_day_are_deleted() {
    use cutover::control::backfill::guard as readings;

    let db = TestDb::new().await;
    let c = db.control_client().await;
    for plan in ["p", "other"] {
        readings::record(&c, plan, 1.0, 1.25, 0.0, "commit latency", "")
            .await
            .expect("record");
    }
    c.batch_execute(
        "UPDATE cutover.backfill_guard SET at = at - interval '25 hours';
         INSERT INTO cutover.backfill_guard (plan_id, ratio, budget, pause, signal, reason)
         VALUES ('p', 2.0, 1.25, 1.0, 'commit latency', 'fresh');",
    )
    .await
    .expect("age the readings");
    assert_eq!(readings::trim(&c, "p").await.expect("trim"), 1);
    let left: Vec<(String, String)> = c
        .query(
            "SELECT plan_id, reason FROM cutover.backfill_guard ORDER BY plan_id",
            &[],
        )
        .await
        .expect("readings")
        .iter()
        .map(|r| (r.get("plan_id"), r.get("reason")))
        .collect();
    assert_eq!(
        left,
        [
            ("other".to_string(), String::new()),
            ("p".to_string(), "fresh".to_string())
        ]
    );
}
