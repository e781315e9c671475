//! CDC projection on a throwaway cluster with `wal_level = logical`: copy and stream under
//! concurrent inserts, updates and deletes, SIGKILL of the applier mid-stream then resume, a
//! server crash mid-stream that the applier recovers from by itself (each change counted once),
//! exact parity, lag, no slot left behind; and the refusal of a server without logical WAL.

use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use cutover::backfill::{self, RunOptions, RunOutcome};
use cutover::cdc;
use cutover::db::DbConfig;
use cutover::plan::Plan;
use cutover::throwaway::ThrowawayCluster;
use tokio::sync::watch;
use tokio_postgres::Client;

use crate::common::plans::PlanToml;
use crate::common::{connect, cutover_bin, TestDb};

pub(crate) const PLAN_ID: &str = "cdc-test";

fn plan_toml() -> String {
    PlanToml::new(PLAN_ID)
        .role("data_owner", "postgres")
        .with(
            r#"[backfill]
mode = "copy"
table = "public.items"
key = ["id"]
into = "public.items_v2"
target_key = ["legacy_id"]
columns = { legacy_id = "id", n2 = "n * 2", note = "note" }
target_chunk_time = "20ms"
initial_chunk_rows = 50
max_chunk_rows = 400
max_rows_per_second = 4000

# The guard is not under test here (its own tests are): on a loaded CI machine it could slow
# the copy far beyond the deadlines below.
[backfill.throttle]
max_app_latency_ratio = 1000

[dual_write]
mode = "cdc"
max_lag = "5s"
"#,
        )
        .toml()
}

const SCHEMA: &str = "
CREATE TABLE public.items (id bigserial PRIMARY KEY, n integer NOT NULL DEFAULT 0, note text);
INSERT INTO public.items (n, note) SELECT g, 'row ' || g FROM generate_series(1, 8000) g;
CREATE TABLE public.items_v2 (uid uuid PRIMARY KEY DEFAULT gen_random_uuid(),
    legacy_id bigint NOT NULL UNIQUE, n2 integer NOT NULL, note text);";

pub(crate) async fn scalar_i64(client: &Client, sql: &str) -> i64 {
    client.query_one(sql, &[]).await.unwrap().get(0)
}

/// `schema` on `cluster`, the control schema bootstrapped and the plan registered with its
/// backfill applied: the cluster's URL, its config and a control connection.
pub(crate) async fn seeded(cluster: &ThrowawayCluster, schema: &str) -> (String, DbConfig, Client) {
    let url = cluster.url();
    connect(&url).await.batch_execute(schema).await.unwrap();
    let cfg = DbConfig::from_url(&url).unwrap();
    let mut control = cutover::db::connect(&cfg, &cutover::db::SessionSettings::new("t"))
        .await
        .unwrap();
    cutover::control::schema::bootstrap(&mut control)
        .await
        .unwrap();
    crate::common::seed_backfill_applied(&control, PLAN_ID).await;
    (url, cfg, control)
}

/// Runs `statements` in turn on an application connection to `url`, each on a random id of
/// the seeded 8,000, until told to stop; the task returns how many it ran.
pub(crate) async fn app_writes(
    url: &str,
    statements: [&'static str; 4],
) -> (watch::Sender<bool>, tokio::task::JoinHandle<u32>) {
    let app = connect(url).await;
    let (stop, stopped) = watch::channel(false);
    let writer = tokio::spawn(async move {
        let mut ops = 0u32;
        while !*stopped.borrow() {
            let id = 1 + (rand::random::<u32>() % 8000) as i64;
            let sql = statements[ops as usize % statements.len()];
            app.execute(sql, &[&id])
                .await
                .unwrap_or_else(|e| panic!("application write {sql}: {e:?}"));
            ops += 1;
            tokio::time::sleep(Duration::from_millis(2)).await;
        }
        ops
    });
    (stop, writer)
}

/// Starts the plan's backfill and waits until it has created the CDC slot.
pub(crate) async fn run_with_slot(
    cfg: &DbConfig,
    plan: &Plan,
    control: &Client,
) -> tokio::task::JoinHandle<Result<backfill::RunSummary, backfill::BackfillError>> {
    let (stop, rx) = watch::channel(false);
    let run = tokio::spawn({
        let (cfg, plan) = (cfg.clone(), plan.clone());
        async move {
            let _stop = stop;
            backfill::run(cfg, plan, RunOptions::default(), rx).await
        }
    });
    let deadline = Instant::now() + Duration::from_secs(90);
    while cdc::lag(control, PLAN_ID).await.unwrap().is_none() {
        assert!(Instant::now() < deadline, "the backfill created no slot");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    run
}

pub(crate) fn spawn_applier(url: &str, plan: &std::path::Path) -> Child {
    Command::new(cutover_bin())
        .args(["cdc", "run"])
        .arg(plan)
        .env("DATABASE_URL", url)
        .env("CUTOVER_LOG", "warn")
        .stdout(Stdio::null())
        .stderr(
            std::fs::File::options()
                .append(true)
                .create(true)
                .open(plan.with_extension("log"))
                .unwrap(),
        )
        .spawn()
        .unwrap()
}

pub(crate) fn sigkill(child: &mut Child) {
    nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(child.id() as i32),
        nix::sys::signal::Signal::SIGKILL,
    )
    .unwrap();
    child.wait().unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn copy_and_stream_converge_under_writes_and_an_applier_killed_mid_stream() {
    let cluster = crate::common::logical_cluster().await;
    let (url, cfg, control) = seeded(&cluster, SCHEMA).await;
    let client = connect(&url).await;
    let (_dir, path) = crate::common::plans::write_temp(&plan_toml());
    let plan = Plan::parse("plan.toml", &plan_toml()).unwrap();

    // The application writes throughout: inserts, updates (some to a NULL note), deletes.
    let (stop_app, writer) = app_writes(
        &url,
        [
            "UPDATE public.items SET n = n + 1, note = note || '+' WHERE id = $1",
            "DELETE FROM public.items WHERE id = $1",
            "UPDATE public.items SET note = NULL WHERE id = $1",
            "INSERT INTO public.items (n, note) VALUES ($1::bigint::int, 'new')",
        ],
    )
    .await;

    let copy = run_with_slot(&cfg, &plan, &control).await;
    let mut applier = spawn_applier(&url, &path);
    let applied =
        || async { scalar_i64(&control, "SELECT applied_changes FROM cutover.cdc").await };
    let deadline = Instant::now() + Duration::from_secs(90);
    while applied().await == 0 {
        assert!(
            Instant::now() < deadline,
            "the applier applied nothing: {}",
            std::fs::read_to_string(path.with_extension("log")).unwrap_or_default()
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    sigkill(&mut applier);
    let after_kill = applied().await;
    tokio::time::sleep(Duration::from_millis(300)).await;
    let mut applier = spawn_applier(&url, &path);

    let summary = tokio::time::timeout(Duration::from_secs(300), copy)
        .await
        .expect("copy did not finish")
        .unwrap()
        .unwrap();
    assert_eq!(summary.outcome, RunOutcome::Done);
    tokio::time::sleep(Duration::from_millis(500)).await;
    let _ = stop_app.send(true);
    let ops = writer.await.unwrap();
    assert!(ops > 100, "the application wrote only {ops} times");

    let deadline = Instant::now() + Duration::from_secs(120);
    loop {
        let lag = cdc::lag(&control, PLAN_ID).await.unwrap().unwrap();
        if lag.within(64 * 1024, Duration::from_secs(1)) && applied().await > after_kill {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "the applier did not catch up: {lag:?}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    // Every write is committed (asynchronously: the cluster runs synchronous_commit = off, so
    // the insert position, not the flushed one, covers them): the slot must get past it.
    let target: String = client
        .query_one("SELECT pg_current_wal_lsn()::text", &[])
        .await
        .unwrap()
        .get(0);
    let deadline = Instant::now() + Duration::from_secs(120);
    loop {
        let past: bool = client
            .query_one(
                "SELECT confirmed_flush_lsn >= $1::text::pg_lsn FROM pg_replication_slots",
                &[&target],
            )
            .await
            .unwrap()
            .get(0);
        if past {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "the applier did not pass {target}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    sigkill(&mut applier);
    let differ = scalar_i64(
        &client,
        "SELECT count(*) FROM public.items s FULL JOIN public.items_v2 t ON t.legacy_id = s.id
          WHERE s.id IS NULL OR t.legacy_id IS NULL
             OR t.n2 IS DISTINCT FROM s.n * 2 OR t.note IS DISTINCT FROM s.note",
    )
    .await;
    let detail: Vec<String> = client
        .query(
            "SELECT format('%s %s %s / %s %s %s', s.id, s.n * 2, s.note, t.legacy_id, t.n2, t.note)
               FROM public.items s FULL JOIN public.items_v2 t ON t.legacy_id = s.id
              WHERE s.id IS NULL OR t.legacy_id IS NULL
                 OR t.n2 IS DISTINCT FROM s.n * 2 OR t.note IS DISTINCT FROM s.note LIMIT 10",
            &[],
        )
        .await
        .unwrap()
        .iter()
        .map(|r| r.get(0))
        .collect();
    assert_eq!(
        differ,
        0,
        "target differs from source: {detail:?}; applier log: {}",
        std::fs::read_to_string(path.with_extension("log")).unwrap_or_default()
    );
    let triggers = scalar_i64(
        &client,
        "SELECT count(*) FROM pg_trigger WHERE tgrelid = 'public.items'::regclass",
    )
    .await;
    assert_eq!(triggers, 0, "CDC needs no trigger on the source");

    // A dual-write rolled back leaves a slot that the next start sweeps away.
    control
        .batch_execute(&format!(
            "INSERT INTO cutover.phases (plan_id, phase, state) VALUES ('{PLAN_ID}', 'dual_write', 'rolled_back')"
        ))
        .await
        .unwrap();
    // The killed applier's server process lets go of the slot once it sees the disconnect.
    let deadline = Instant::now() + Duration::from_secs(90);
    while scalar_i64(
        &client,
        "SELECT count(*) FROM pg_replication_slots WHERE active",
    )
    .await
        > 0
    {
        assert!(Instant::now() < deadline, "the slot stayed active");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let dropped = cdc::sweep_orphans(&control).await.unwrap();
    assert_eq!(dropped, vec![cdc::slot_name(PLAN_ID)]);
    let slots = scalar_i64(&client, "SELECT count(*) FROM pg_replication_slots").await;
    assert_eq!(slots, 0, "a slot was left behind");
    assert!(cdc::lag(&control, PLAN_ID).await.unwrap().is_none());
}

#[tokio::test]
async fn a_server_without_logical_wal_is_refused_with_what_to_set() {
    let db = TestDb::new().await;
    let client = db.client().await;
    let level: String = client
        .query_one("SHOW wal_level", &[])
        .await
        .unwrap()
        .get(0);
    if level == "logical" {
        return;
    }
    client.batch_execute(SCHEMA).await.unwrap();
    let (_dir, path) = crate::common::plans::write_temp(&plan_toml());
    let out = Command::new(cutover_bin())
        .args(["cdc", "run"])
        .arg(&path)
        .env("DATABASE_URL", &db.url)
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(3), "{stderr}");
    assert!(stderr.contains("set wal_level = logical"), "{stderr}");

    let out = Command::new(cutover_bin())
        .args(["validate"])
        .arg(&path)
        .env("DATABASE_URL", &db.url)
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{stderr}");
    assert!(
        stderr.contains("plan.toml:") && stderr.contains("CDC needs wal_level = logical"),
        "{stderr}"
    );
}

/// The application's writes: rows changed by acknowledged statements, and statements whose
/// outcome is unknown (the connection broke before the answer).
#[derive(Debug, Default, Clone, Copy)]
struct Written {
    rows: u64,
    unknown: u64,
}

/// Writes (inserts, updates, deletes) until `stop`, reconnecting when the server goes away.
/// Commits are synchronous so that every acknowledged one survives a crash.
async fn write_until(url: String, stop: watch::Receiver<bool>) -> Written {
    let cfg = DbConfig::from_url(&url).unwrap();
    let open = || async {
        let c = cutover::db::connect_app(&cfg, "app").await?;
        c.batch_execute("SET synchronous_commit = on").await?;
        Ok::<_, cutover::db::DbError>(c)
    };
    let mut app = open().await.unwrap();
    let mut written = Written::default();
    let mut ops = 0u32;
    while !*stop.borrow() {
        let id = 1 + (rand::random::<u32>() % 8000) as i64;
        let sql = match ops % 4 {
            0 => "UPDATE public.items SET n = n + 1, note = note || '+' WHERE id = $1",
            1 => "DELETE FROM public.items WHERE id = $1",
            2 => "UPDATE public.items SET note = NULL WHERE id = $1",
            _ => "INSERT INTO public.items (n, note) VALUES ($1::bigint::int, 'new')",
        };
        ops += 1;
        match app.execute(sql, &[&id]).await {
            Ok(n) => written.rows += n,
            Err(_) => {
                written.unknown += 1;
                let deadline = Instant::now() + Duration::from_secs(60);
                app = loop {
                    match open().await {
                        Ok(c) => break c,
                        Err(e) => assert!(Instant::now() < deadline, "app cannot reconnect: {e}"),
                    }
                    tokio::time::sleep(Duration::from_millis(100)).await;
                };
            }
        }
        tokio::time::sleep(Duration::from_millis(2)).await;
    }
    written
}

async fn applied_changes(client: &Client) -> i64 {
    scalar_i64(client, "SELECT applied_changes FROM cutover.cdc").await
}

/// Polls `cond` every 100 ms until it holds, failing with `what` after `secs` seconds.
async fn wait_for<F, Fut>(secs: u64, what: &str, mut cond: F)
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    let deadline = Instant::now() + Duration::from_secs(secs);
    while !cond().await {
        assert!(Instant::now() < deadline, "{what}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn the_applier_recovers_by_itself_from_a_server_crash_mid_stream() {
    let mut cluster = crate::common::logical_cluster().await;
    let (url, cfg, control) = seeded(&cluster, SCHEMA).await;
    let plan = Plan::parse("plan.toml", &plan_toml()).unwrap();

    let (_stop_copy, rx) = watch::channel(false);
    let copy = tokio::spawn(backfill::run(
        cfg.clone(),
        plan.clone(),
        RunOptions::default(),
        rx,
    ));
    wait_for(30, "the copy created no slot", || async {
        cdc::lag(&control, PLAN_ID).await.unwrap().is_some()
    })
    .await;
    // Every write from here on is in the slot.
    let (stop_app, app_rx) = watch::channel(false);
    let writer = tokio::spawn(write_until(url.clone(), app_rx));
    let (stop_applier, applier_rx) = watch::channel(false);
    let applier = tokio::spawn(cdc::apply::run(
        cfg.clone(),
        plan.clone(),
        cdc::apply::ApplyOptions {
            poll: Duration::from_millis(50),
            ..cdc::apply::ApplyOptions::default()
        },
        applier_rx,
    ));
    let summary = tokio::time::timeout(Duration::from_secs(120), copy)
        .await
        .expect("copy did not finish")
        .unwrap()
        .unwrap();
    assert_eq!(summary.outcome, RunOutcome::Done);
    wait_for(60, "the applier applied nothing", || async {
        applied_changes(&control).await > 0
    })
    .await;

    // A crash of the server (immediate shutdown, recovery at start) in the middle of the stream.
    cluster
        .restart(cutover::throwaway::Shutdown::Immediate)
        .await
        .unwrap();
    let client = connect(&url).await;
    let after_crash = applied_changes(&client).await;
    wait_for(
        60,
        "the applier applied nothing after the crash",
        || async { applied_changes(&client).await > after_crash },
    )
    .await;
    tokio::time::sleep(Duration::from_millis(500)).await;
    let _ = stop_app.send(true);
    let written = writer.await.unwrap();

    // The application's commits were synchronous: the insert position covers them all.
    let target: String = client
        .query_one("SELECT pg_current_wal_lsn()::text", &[])
        .await
        .unwrap()
        .get(0);
    wait_for(
        60,
        "the applier did not catch up after the crash",
        || async {
            client
                .query_one(
                    "SELECT confirmed_flush_lsn >= $1::text::pg_lsn FROM pg_replication_slots",
                    &[&target],
                )
                .await
                .unwrap()
                .get::<_, bool>(0)
        },
    )
    .await;
    let _ = stop_applier.send(true);
    let summary = tokio::time::timeout(Duration::from_secs(60), applier)
        .await
        .expect("the applier did not stop")
        .unwrap()
        .unwrap();
    assert!(
        summary.reconnects >= 1,
        "the applier never lost its connection: {summary:?}"
    );

    let differ = scalar_i64(
        &client,
        "SELECT count(*) FROM public.items s FULL JOIN public.items_v2 t ON t.legacy_id = s.id
          WHERE s.id IS NULL OR t.legacy_id IS NULL
             OR t.n2 IS DISTINCT FROM s.n * 2 OR t.note IS DISTINCT FROM s.note",
    )
    .await;
    assert_eq!(differ, 0, "target differs from source after the crash");
    // Each change is counted once, when its transaction is applied: a batch delivered again
    // after the crash (the slot's position on disk may be older) must not count twice.
    let total = applied_changes(&client).await as u64;
    assert!(
        total >= written.rows && total <= written.rows + written.unknown,
        "applied {total} changes; the application changed {} rows, plus {} statements of unknown outcome",
        written.rows,
        written.unknown
    );
    assert!(written.rows > 100, "the application wrote only {written:?}");
}
