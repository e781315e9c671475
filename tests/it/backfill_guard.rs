//! The backfill under its throttle signals against a real PostgreSQL: the latency guard
//! measuring the application (from `pg_stat_activity`, from `pg_stat_statements` with the
//! backfill's own statements left out), no baseline taken while another signal holds, and a
//! replication slot that stops consuming.

use std::time::Duration;

use cutover::backfill::{self, RunOptions, RunOutcome};
use cutover::control::schema;
use cutover::db::{self, DbConfig, SessionSettings};
use tokio::sync::watch;

use crate::backfill::{chunks, plan, scalar_i64, setup, spawn_run, state, wait_for, PLAN_ID};
use crate::common::TestDb;

/// The latency guard on a server without `pg_stat_statements`: it measures the application's
/// baseline from `pg_stat_activity`, yields (naming its signal) when the application's
/// statements take several times longer, and clears once they are fast again.
#[tokio::test]
async fn latency_guard_yields_when_the_app_slows_and_names_its_signal() {
    use cutover::backfill::guard::{Advice, Guard};
    use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
    use std::sync::Arc;

    let db = TestDb::new().await;
    let cfg = DbConfig::from_url(&db.url).expect("url");
    let monitor = db::connect(&cfg, &SessionSettings::new("backfill/throttle"))
        .await
        .expect("monitor");
    let sleep_ms = Arc::new(AtomicU64::new(100));
    let stop = Arc::new(AtomicBool::new(false));
    // Five application sessions whose statements last the given time ± 25 % at random, so
    // that the guard's 250-ms samples do not fall into step with them.
    let mut app = Vec::new();
    for _ in 0..5 {
        let (sleep_ms, stop, url) = (sleep_ms.clone(), stop.clone(), db.url.clone());
        let mut client = db.client().await;
        app.push(tokio::spawn(async move {
            // The application is not under test: a statement that fails (a loaded CI machine)
            // is reported and the session opened again, as an application would.
            let mut failures = 0;
            while !stop.load(Ordering::Relaxed) {
                let jitter = 0.75 + rand::random::<f64>() / 2.0;
                let secs = sleep_ms.load(Ordering::Relaxed) as f64 * jitter / 1000.0;
                if let Err(e) = client.execute("SELECT pg_sleep($1)", &[&secs]).await {
                    failures += 1;
                    eprintln!("app statement failed ({failures}): {e:?}");
                    assert!(failures < 5, "the application keeps failing: {e:?}");
                    client = crate::common::connect(&url).await;
                }
            }
        }));
    }
    let mut guard = Guard::new("public.items", 1.25);
    let tick = Duration::from_millis(250);
    tokio::time::sleep(Duration::from_millis(300)).await;
    // No chunk has run (quiet): the guard measures the application's baseline.
    let quiet = Duration::from_secs(10);
    for _ in 0..20 {
        guard.tick(&monitor, quiet).await.expect("tick");
        if guard.baseline().is_some() {
            break;
        }
        tokio::time::sleep(tick).await;
    }
    let baseline = guard.baseline().expect("a baseline within 5 s");
    assert!(baseline.ms < 400.0, "{baseline:?}");
    // The application is there: a slow start, easing off while the latency stays in budget.
    match guard.tick(&monitor, Duration::ZERO).await.expect("tick") {
        Advice::Yield { pause, reason } => {
            let start = cutover::backfill::guard::DutyCycle::free()
                .at_most(
                    cutover::backfill::guard::START_DUTY,
                    std::time::Instant::now(),
                )
                .pause();
            assert!(pause >= start - 1e-9, "{pause}");
            assert!(reason.contains("easing off"), "{reason}");
        }
        other => panic!("a slow start: {other:?}"),
    }
    // The application's statements now take 10× longer while the backfill runs.
    sleep_ms.store(1000, Ordering::Relaxed);
    let mut reason = None;
    for _ in 0..24 {
        tokio::time::sleep(tick).await;
        if let Advice::Yield { pause, reason: r } =
            guard.tick(&monitor, Duration::ZERO).await.expect("tick")
        {
            if r.contains("baseline > 1.25×") {
                assert!(pause > 0.0);
                reason = Some(r);
                break;
            }
        }
    }
    let reason = reason.expect("the guard must yield within 6 s");
    assert!(guard.pause() > 0.0);
    assert!(reason.starts_with("yielding: app latency"), "{reason}");
    assert!(reason.contains("pg_stat_activity sampling"), "{reason}");
    // Fast again: the duty steps back up once a 4-s window (slowly for 30 s near the duty it was
    // cut from), to full speed in about 80 s from the minimum; a loaded machine gets 150 s.
    sleep_ms.store(100, Ordering::Relaxed);
    let mut cleared = false;
    for _ in 0..600 {
        tokio::time::sleep(tick).await;
        if guard.tick(&monitor, Duration::ZERO).await.expect("tick") == Advice::Clear {
            cleared = true;
            break;
        }
    }
    assert!(cleared, "the guard must clear once the app is fast again");
    stop.store(true, Ordering::Relaxed);
    for task in app {
        task.await.expect("app task");
    }
}

/// The latency guard with `pg_stat_statements` (its own throwaway cluster, which preloads it):
/// the backfill's statements keep their `/* cutover */` tag in the extension's view (so the
/// guard leaves them out), and the application's statements on the table give the baseline
/// and make the guard yield when they slow down.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn latency_guard_reads_pg_stat_statements_and_leaves_the_backfill_out() {
    use cutover::backfill::guard::{Advice, Guard, Source};
    use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
    use std::sync::Arc;

    let cluster = cutover::throwaway::ThrowawayCluster::start()
        .await
        .expect("a throwaway cluster (with pg_stat_statements)");
    let url = cluster.url();
    let cfg = DbConfig::from_url(&url).expect("url");
    let mut client = db::connect(&cfg, &SessionSettings::new("test"))
        .await
        .expect("connect");
    client
        .batch_execute(
            "CREATE EXTENSION pg_stat_statements;
             CREATE TABLE public.items (id bigserial PRIMARY KEY, n integer NOT NULL DEFAULT 0, \
             todo boolean NOT NULL DEFAULT true, v integer NOT NULL DEFAULT 0);
             INSERT INTO public.items (n, todo) SELECT 0, true FROM generate_series(1, 3000);
             ANALYZE public.items;",
        )
        .await
        .expect("setup");
    schema::bootstrap(&mut client).await.expect("bootstrap");
    crate::common::seed_backfill_applied(&client, PLAN_ID).await;
    let plan = plan("", "");
    let (_tx, rx) = watch::channel(false);
    let summary = backfill::run(cfg.clone(), plan.clone(), RunOptions::default(), rx)
        .await
        .expect("backfill");
    assert_eq!(summary.outcome, RunOutcome::Done);
    let tagged = scalar_i64(
        &client,
        "SELECT count(*) FROM pg_stat_statements \
         WHERE query LIKE '/* cutover */ UPDATE \"public\".\"items\"%'",
    )
    .await;
    assert!(
        tagged >= 1,
        "the backfill's UPDATE keeps its tag in pg_stat_statements"
    );

    let monitor = db::connect(&cfg, &SessionSettings::new("backfill/throttle"))
        .await
        .expect("monitor");
    let sleep_ms = Arc::new(AtomicU64::new(2));
    let stop = Arc::new(AtomicBool::new(false));
    let app = {
        let (sleep_ms, stop) = (sleep_ms.clone(), stop.clone());
        let app = crate::common::connect(&url).await;
        tokio::spawn(async move {
            while !stop.load(Ordering::Relaxed) {
                let secs = sleep_ms.load(Ordering::Relaxed) as f64 / 1000.0;
                app.execute(
                    "SELECT pg_sleep($1) FROM public.items WHERE id = 1",
                    &[&secs],
                )
                .await
                .expect("app statement");
            }
        })
    };
    let mut guard = Guard::new("public.items", 1.25);
    let tick = Duration::from_millis(250);
    let quiet = Duration::from_secs(10);
    let mut baseline = None;
    for _ in 0..40 {
        tokio::time::sleep(tick).await;
        guard.tick(&monitor, quiet).await.expect("tick");
        baseline = guard.baseline().filter(|b| b.source == Source::Statements);
        if baseline.is_some() {
            break;
        }
    }
    let baseline = baseline.expect("a pg_stat_statements baseline within 10 s");
    assert!(baseline.ms < 50.0, "{baseline:?}");
    sleep_ms.store(25, Ordering::Relaxed);
    let mut yielded = None;
    for _ in 0..40 {
        tokio::time::sleep(tick).await;
        if let Advice::Yield { reason, .. } =
            guard.tick(&monitor, Duration::ZERO).await.expect("tick")
        {
            if reason.contains("baseline > 1.25×") {
                yielded = Some(reason);
                break;
            }
        }
    }
    let reason = yielded.expect("the guard must yield within 10 s");
    assert!(reason.starts_with("yielding: app latency"), "{reason}");
    stop.store(true, Ordering::Relaxed);
    app.await.expect("app task");
}

/// While another signal holds the backfill back, the application's latency is not taken as
/// the baseline (the hold may be what slows it, e.g. a vacuum); once the signal clears, it is.
#[tokio::test]
async fn no_latency_baseline_is_taken_while_another_signal_holds() {
    use cutover::backfill::throttle::{Evaluator, Verdict};
    use std::sync::atomic::{AtomicBool, Ordering};
    use std::sync::Arc;

    let db = TestDb::new().await;
    let _client = setup(&db, 100).await;
    db.exec("CREATE TABLE public.knob (value integer); INSERT INTO public.knob VALUES (3);")
        .await;
    let plan = plan(
        "",
        "custom_query = \"SELECT value FROM public.knob\"\ncustom_limit = 1",
    );
    let cfg = DbConfig::from_url(&db.url).expect("url");
    let monitor = db::connect(&cfg, &SessionSettings::new("backfill/throttle"))
        .await
        .expect("monitor");
    let stop = Arc::new(AtomicBool::new(false));
    let mut app = Vec::new();
    for _ in 0..4 {
        let (stop, client) = (stop.clone(), db.client().await);
        app.push(tokio::spawn(async move {
            while !stop.load(Ordering::Relaxed) {
                let secs = 0.02 + rand::random::<f64>() / 50.0;
                client
                    .execute("SELECT pg_sleep($1)", &[&secs])
                    .await
                    .expect("app statement");
            }
        }));
    }
    let mut evaluator = Evaluator::new(&plan);
    let quiet = Duration::from_secs(10);
    for _ in 0..16 {
        tokio::time::sleep(Duration::from_millis(250)).await;
        match evaluator.evaluate(Some(&monitor), quiet).await {
            Verdict::Throttled(r) => assert!(r.contains("custom throttle query"), "{r}"),
            other => panic!("the custom signal holds: {other:?}"),
        }
    }
    assert_eq!(evaluator.guard().baseline(), None, "no baseline while held");
    db.exec("UPDATE public.knob SET value = 0").await;
    let mut baseline = None;
    for _ in 0..24 {
        tokio::time::sleep(Duration::from_millis(250)).await;
        evaluator.evaluate(Some(&monitor), quiet).await;
        baseline = evaluator.guard().baseline();
        if baseline.is_some() {
            break;
        }
    }
    assert!(baseline.is_some(), "a baseline once the signal cleared");
    stop.store(true, Ordering::Relaxed);
    for task in app {
        task.await.expect("app task");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_slot_that_stops_consuming_holds_the_backfill_and_is_named() {
    let db = TestDb::new().await;
    let client = setup(&db, 2000).await;
    let foreign = format!("shapes_test_{}", db.name.to_lowercase());
    let own = format!("cutover_{foreign}");
    for slot in [&foreign, &own] {
        db.exec(&format!(
            "SELECT pg_create_physical_replication_slot('{slot}', true)"
        ))
        .await;
    }
    // WAL written after the slots reserved theirs: both retain it, nobody consumes it.
    db.exec("CREATE TABLE public.filler AS SELECT g FROM generate_series(1, 20000) g")
        .await;
    let plan = plan("", "max_slot_retained_wal = \"64kB\"");
    let opts = RunOptions {
        throttle_interval: Duration::from_millis(100),
        ..RunOptions::default()
    };
    let (_stop, handle) = spawn_run(&db, &plan, opts);
    wait_for("the slot throttle", 30, || async {
        state(&client).await.0 == "throttled"
    })
    .await;
    let (_, reason) = state(&client).await;
    assert!(
        reason.starts_with(&format!("replication slot `{foreign}` retains"))
            && reason.ends_with("of WAL > limit 64kB"),
        "{reason}"
    );
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert_eq!(
        chunks(&client).await,
        0,
        "no chunk while the slot retains WAL"
    );

    // The foreign slot goes; Cutover's own slot alone does not hold the backfill back.
    db.exec(&format!("SELECT pg_drop_replication_slot('{foreign}')"))
        .await;
    let summary = tokio::time::timeout(Duration::from_secs(60), handle)
        .await
        .expect("the backfill did not finish once the slot was dropped")
        .unwrap();
    db.exec(&format!("SELECT pg_drop_replication_slot('{own}')"))
        .await;
    let summary = summary.unwrap();
    assert_eq!(summary.outcome, RunOutcome::Done, "{summary:?}");
    let left = scalar_i64(&client, "SELECT count(*) FROM public.items WHERE todo").await;
    assert_eq!(left, 0);
}
