//! Backfill engine against a real PostgreSQL: exactly-once under concurrent writes (including a
//! non-idempotent transform), SIGKILL of the real binary, pause/resume/retune, throttle reasons
//! and fail-closed, two workers sharing a table, refusals.

use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use cutover::backfill::{self, BackfillError, RunOptions, RunOutcome, RunSummary, State, Tuning};
use cutover::control::audit::Actor;
use cutover::db::DbConfig;
use cutover::plan::Plan;
use tokio::sync::watch;
use tokio::task::JoinHandle;
use tokio_postgres::Client;

use crate::common::plans::PlanToml;
use crate::common::{cutover_bin, TestDb};

pub(crate) const PLAN_ID: &str = "bf-test";

/// A plan backfilling `public.items`: `n = n + 1` (not idempotent) for rows flagged `todo`.
fn plan_toml(backfill_extra: &str, throttle: &str) -> String {
    PlanToml::new(PLAN_ID)
        .role("data_owner", "postgres")
        .with(&format!(
            r#"[backfill]
table = "public.items"
key = ["id"]
set = {{ n = "n + 1", todo = "false" }}
pending = "todo"
target_chunk_time = "20ms"
initial_chunk_rows = 50
min_chunk_rows = 10
max_chunk_rows = 400
{backfill_extra}
[backfill.throttle]
{throttle}"#
        ))
        .toml()
}

pub(crate) fn plan(backfill_extra: &str, throttle: &str) -> Plan {
    Plan::parse("bf-test.toml", &plan_toml(backfill_extra, throttle)).unwrap()
}

/// A plan written to a file, for running the real binary on it against a test database.
struct PlanFile {
    _dir: tempfile::TempDir,
    path: std::path::PathBuf,
    url: String,
}

impl PlanFile {
    fn new(db: &TestDb, toml: &str) -> PlanFile {
        let (dir, path) = crate::common::plans::write_temp(toml);
        PlanFile {
            _dir: dir,
            path,
            url: db.url.clone(),
        }
    }

    /// `cutover ARGS PLAN`'s standard output.
    fn stdout(&self, args: &[&str]) -> String {
        let out = Command::new(cutover_bin())
            .args(args)
            .arg(&self.path)
            .env("DATABASE_URL", &self.url)
            .output()
            .unwrap();
        String::from_utf8_lossy(&out.stdout).into_owned()
    }
}

/// Creates `items` with `rows` old-shape rows, the control schema, and the engine's record
/// that the backfill phase is applied.
pub(crate) async fn setup(db: &TestDb, rows: i64) -> Client {
    db.exec(&format!(
        "CREATE TABLE public.items (id bigserial PRIMARY KEY, n integer NOT NULL DEFAULT 0, \
         todo boolean NOT NULL DEFAULT true, v integer NOT NULL DEFAULT 0);
         INSERT INTO public.items (n, todo) SELECT 0, true FROM generate_series(1, {rows});
         ANALYZE public.items;"
    ))
    .await;
    let client = db.control_client().await;
    crate::common::seed_backfill_applied(&client, PLAN_ID).await;
    client
}

pub(crate) fn spawn_run(
    db: &TestDb,
    plan: &Plan,
    opts: RunOptions,
) -> (
    watch::Sender<bool>,
    JoinHandle<Result<RunSummary, BackfillError>>,
) {
    let cfg = DbConfig::from_url(&db.url).unwrap();
    let (tx, rx) = watch::channel(false);
    let handle = tokio::spawn(backfill::run(cfg, plan.clone(), opts, rx));
    (tx, handle)
}

pub(crate) async fn scalar_i64(client: &Client, sql: &str) -> i64 {
    client.query_one(sql, &[]).await.unwrap().get(0)
}

/// Polls `probe` every 50 ms until it returns true; panics after `secs` seconds.
pub(crate) async fn wait_for<F, Fut>(what: &str, secs: u64, mut probe: F)
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    let deadline = Instant::now() + Duration::from_secs(secs);
    while !probe().await {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

pub(crate) async fn chunks(client: &Client) -> i64 {
    scalar_i64(
        client,
        &format!("SELECT count(*) FROM cutover.backfill_chunks WHERE plan_id = '{PLAN_ID}'"),
    )
    .await
}

pub(crate) async fn state(client: &Client) -> (String, String) {
    let row = client
        .query_opt(
            "SELECT state, reason FROM cutover.backfill WHERE plan_id = $1",
            &[&PLAN_ID],
        )
        .await
        .unwrap();
    row.map_or(("none".into(), String::new()), |r| (r.get(0), r.get(1)))
}

/// Every row was transformed exactly once: n = 1 and nothing pending.
pub(crate) async fn assert_exactly_once(client: &Client) {
    let row = client
        .query_one(
            "SELECT count(*), count(*) FILTER (WHERE n = 1 AND NOT todo), \
             count(*) FILTER (WHERE n > 1), count(*) FILTER (WHERE todo) FROM public.items",
            &[],
        )
        .await
        .unwrap();
    let (total, right, twice, pending): (i64, i64, i64, i64) =
        (row.get(0), row.get(1), row.get(2), row.get(3));
    assert!(total > 0);
    assert_eq!(twice, 0, "rows transformed more than once");
    assert_eq!(pending, 0, "rows never transformed");
    assert_eq!(right, total);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn every_row_once_under_concurrent_inserts_and_updates() {
    let db = TestDb::new().await;
    let client = setup(&db, 4000).await;
    let plan = plan("", "");
    let (_stop, handle) = spawn_run(&db, &plan, RunOptions::default());

    // The app: updates existing rows (row-lock conflicts with chunks) and inserts new rows
    // written right by dual-write; early on a few old-shape rows too, for the final sweep.
    let app = db.client().await;
    let writer = tokio::spawn(async move {
        for i in 0..400 {
            app.execute(
                "UPDATE public.items SET v = v + 1 WHERE id = (random() * 3999)::bigint + 1",
                &[],
            )
            .await
            .unwrap();
            let todo = i < 40;
            app.execute(
                "INSERT INTO public.items (n, todo) VALUES (CASE WHEN $1 THEN 0 ELSE 1 END, $1)",
                &[&todo],
            )
            .await
            .unwrap();
            tokio::time::sleep(Duration::from_millis(2)).await;
        }
    });
    let summary = tokio::time::timeout(Duration::from_secs(90), handle)
        .await
        .expect("backfill did not finish")
        .unwrap()
        .unwrap();
    writer.await.unwrap();
    assert_eq!(summary.outcome, RunOutcome::Done);
    assert!(
        summary.chunks >= 10,
        "expected many chunks, got {}",
        summary.chunks
    );
    assert_exactly_once(&client).await;
    assert_eq!(state(&client).await.0, "done");
    let p = backfill::progress(&client, &plan).await.unwrap();
    assert_eq!(p.state, State::Done);
    assert_eq!(p.percent, 100.0);
    assert!(p.rows_done >= 4000, "{}", p.rows_done);
    assert!(p.p99_chunk_ms.is_some());
    let updated = scalar_i64(
        &client,
        &format!(
            "SELECT sum(rows_updated)::bigint FROM cutover.backfill_chunks WHERE plan_id = '{PLAN_ID}'"
        ),
    )
    .await;
    // 4000 initial rows plus the old-shape inserts that the final sweep (or a late range) fixed.
    let old_shape = 4000 + 40;
    assert!(
        updated <= old_shape && updated >= 4000,
        "chunks report {updated} updates"
    );
    let done_entries = scalar_i64(
        &client,
        "SELECT count(*) FROM cutover.audit_log WHERE action = 'backfill.done'",
    )
    .await;
    assert_eq!(done_entries, 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn composite_text_and_uuid_keys() {
    let db = TestDb::new().await;
    db.exec(
        "CREATE TABLE public.items (tenant text NOT NULL, id uuid NOT NULL DEFAULT gen_random_uuid(),
             n integer NOT NULL DEFAULT 0, todo boolean NOT NULL DEFAULT true,
             PRIMARY KEY (tenant, id));
         INSERT INTO public.items (tenant) SELECT 'tenant-' || (g % 7) || ' ''q''' FROM generate_series(1, 3000) g;",
    )
    .await;
    let client = db.control_client().await;
    crate::common::seed_backfill_applied(&client, PLAN_ID).await;
    let toml = plan_toml("", "").replace(r#"key = ["id"]"#, r#"key = ["tenant", "id"]"#);
    let plan = Plan::parse("t.toml", &toml).unwrap();
    let opts = RunOptions {
        ranges: Some(3),
        ..RunOptions::default()
    };
    let (_stop, handle) = spawn_run(&db, &plan, opts);
    let summary = handle.await.unwrap().unwrap();
    assert_eq!(summary.outcome, RunOutcome::Done);
    assert_eq!(summary.rows_updated, 3000);
    assert_exactly_once(&client).await;
    let ranges = scalar_i64(
        &client,
        "SELECT count(*) FROM cutover.backfill_ranges WHERE kind = 'range'",
    )
    .await;
    assert!(ranges >= 2, "expected the key space split, got {ranges}");
}

fn spawn_binary(db: &TestDb, plan_path: &std::path::Path, extra: &[&str]) -> Child {
    Command::new(cutover_bin())
        .args(["backfill", "run"])
        .arg(plan_path)
        .args(["--lease", "2s", "--report-every", "0"])
        .args(extra)
        .env("DATABASE_URL", &db.url)
        .env("CUTOVER_LOG", "warn")
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap()
}

fn sigkill(child: &mut Child) {
    nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(child.id() as i32),
        nix::sys::signal::Signal::SIGKILL,
    )
    .unwrap();
    child.wait().unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigkill_at_random_moments_loses_and_repeats_nothing() {
    let db = TestDb::new().await;
    let client = setup(&db, 12_000).await;
    let (_dir, path) =
        crate::common::plans::write_temp(&plan_toml("max_rows_per_second = 6000", ""));
    let mut kills = 0;
    for _ in 0..5 {
        let before = chunks(&client).await;
        let mut child = spawn_binary(&db, &path, &[]);
        // Wait until this process commits chunks, then kill it at a random moment.
        wait_for("the restarted binary to commit chunks", 30, || async {
            chunks(&client).await > before
        })
        .await;
        let delay = 20 + rand::random::<u64>() % 300;
        tokio::time::sleep(Duration::from_millis(delay)).await;
        if state(&client).await.0 == "done" {
            child.wait().unwrap();
            break;
        }
        sigkill(&mut child);
        kills += 1;
    }
    assert!(
        kills >= 3,
        "the backfill finished too early: only {kills} kills"
    );
    let resumed_from: i64 =
        scalar_i64(&client, "SELECT count(*) FROM public.items WHERE NOT todo").await;
    assert!(resumed_from > 0 && resumed_from < 12_000);
    let child = spawn_binary(&db, &path, &[]);
    let out = tokio::task::spawn_blocking(move || child.wait_with_output().unwrap())
        .await
        .unwrap();
    assert!(
        out.status.success(),
        "final run failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_exactly_once(&client).await;
    let updated = scalar_i64(
        &client,
        "SELECT sum(rows_updated)::bigint FROM cutover.backfill_chunks",
    )
    .await;
    assert_eq!(
        updated, 12_000,
        "chunk records must account for every row once"
    );
    assert_eq!(state(&client).await.0, "done");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pause_resume_retune_and_stop_take_effect_before_the_next_chunk() {
    let db = TestDb::new().await;
    let mut client = setup(&db, 20_000).await;
    let plan = plan("max_rows_per_second = 2000", "");
    let (_stop, handle) = spawn_run(&db, &plan, RunOptions::default());
    wait_for("first chunks", 30, || async { chunks(&client).await >= 2 }).await;
    let actor = Actor::current(&client).await.unwrap();

    backfill::pause(&mut client, &plan, &actor, "checking replicas")
        .await
        .unwrap();
    tokio::time::sleep(Duration::from_millis(400)).await; // a chunk in flight may commit
    let c1 = chunks(&client).await;
    tokio::time::sleep(Duration::from_millis(800)).await;
    assert_eq!(chunks(&client).await, c1, "a chunk started while paused");
    let p = backfill::progress(&client, &plan).await.unwrap();
    assert_eq!(p.state, State::Paused);
    assert!(p.reason.contains("checking replicas"), "{}", p.reason);
    assert!(p.paused_by.as_deref().unwrap_or("").contains("postgres"));

    // A second process finds the work leased and says by whom.
    let (_dir, path) =
        crate::common::plans::write_temp(&plan_toml("max_rows_per_second = 2000", ""));
    let out = spawn_binary(&db, &path, &["--no-wait"])
        .wait_with_output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{stderr}");
    assert!(
        stderr.contains("leased by") && stderr.contains("pid") && stderr.contains("since"),
        "{stderr}"
    );

    backfill::resume(&mut client, &plan, &actor).await.unwrap();
    wait_for("chunks after resume", 30, || async {
        chunks(&client).await > c1
    })
    .await;

    let tuning = Tuning {
        target_chunk_time: Some(Duration::from_millis(150)),
        ..Tuning::default()
    };
    backfill::tune(&mut client, &plan, &actor, &tuning)
        .await
        .unwrap();
    let tuned_at: i64 = scalar_i64(&client, "SELECT max(id) FROM cutover.backfill_chunks").await;
    wait_for("chunks after the retune", 30, || async {
        scalar_i64(
            &client,
            &format!("SELECT count(*) FROM cutover.backfill_chunks WHERE id > {tuned_at} + 1"),
        )
        .await
            >= 2
    })
    .await;
    let off_target = scalar_i64(
        &client,
        &format!(
            "SELECT count(*) FROM cutover.backfill_chunks WHERE id > {tuned_at} + 1 AND target_ms <> 150"
        ),
    )
    .await;
    assert_eq!(
        off_target, 0,
        "chunks after the retune must follow the new target"
    );

    backfill::stop(&mut client, &plan, &actor, "")
        .await
        .unwrap();
    let summary = tokio::time::timeout(Duration::from_secs(30), handle)
        .await
        .expect("the runner did not stop")
        .unwrap()
        .unwrap();
    assert_eq!(summary.outcome, RunOutcome::Stopped);
    let leases = scalar_i64(
        &client,
        "SELECT count(*) FROM cutover.backfill_ranges WHERE lease_owner IS NOT NULL",
    )
    .await;
    assert_eq!(leases, 0, "a stopped runner releases its ranges");
    let (_s, again) = spawn_run(&db, &plan, RunOptions::default());
    let refused = again.await.unwrap().unwrap_err();
    assert!(refused.is_refusal(), "{refused}");

    let actions: Vec<String> = client
        .query("SELECT action FROM cutover.audit_log ORDER BY seq", &[])
        .await
        .unwrap()
        .iter()
        .map(|r| r.get(0))
        .collect();
    assert_eq!(
        actions,
        [
            "backfill.pause",
            "backfill.resume",
            "backfill.tune",
            "backfill.stop"
        ]
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn custom_throttle_reports_its_reason_and_unreadable_signal_fails_closed() {
    let db = TestDb::new().await;
    let client = setup(&db, 2000).await;
    db.exec("CREATE TABLE public.knob (value integer); INSERT INTO public.knob VALUES (3);")
        .await;
    let plan = plan(
        "",
        "custom_query = \"SELECT value FROM public.knob\"\ncustom_limit = 1\nfail_closed_after = \"1s\"",
    );
    let opts = RunOptions {
        throttle_interval: Duration::from_millis(100),
        ..RunOptions::default()
    };
    let (_stop, handle) = spawn_run(&db, &plan, opts);
    wait_for("the custom throttle", 30, || async {
        state(&client).await.0 == "throttled"
    })
    .await;
    let (_, reason) = state(&client).await;
    assert!(
        reason.contains("custom throttle query = 3 > limit 1"),
        "{reason}"
    );
    tokio::time::sleep(Duration::from_millis(1500)).await;
    assert_eq!(chunks(&client).await, 0, "no chunk while throttled");
    let p = backfill::progress(&client, &plan).await.unwrap();
    assert_eq!(p.state, State::Throttled);
    assert!(p.throttled_seconds >= 1.0, "{}", p.throttled_seconds);

    // The signal becomes unreadable: still held back, and the reason says fail-closed.
    db.exec("DROP TABLE public.knob").await;
    wait_for("fail-closed", 30, || async {
        state(&client).await.1.contains("fail-closed")
    })
    .await;
    let (st, reason) = state(&client).await;
    assert_eq!(st, "throttled");
    assert!(
        reason.contains("custom throttle query unreadable"),
        "{reason}"
    );
    assert_eq!(chunks(&client).await, 0);

    // Readable and under the limit again: it runs to the end.
    db.exec("CREATE TABLE public.knob (value integer); INSERT INTO public.knob VALUES (0);")
        .await;
    let summary = tokio::time::timeout(Duration::from_secs(60), handle)
        .await
        .expect("backfill did not finish")
        .unwrap()
        .unwrap();
    assert_eq!(summary.outcome, RunOutcome::Done);
    assert_exactly_once(&client).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_workers_share_a_table_and_a_killed_ones_range_is_finished() {
    let db = TestDb::new().await;
    let client = setup(&db, 12_000).await;
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("plan.toml");
    std::fs::write(
        &path,
        plan_toml("workers = 2\nmax_rows_per_second = 6000", ""),
    )
    .unwrap();
    let args = ["--local-workers", "1", "--ranges", "6"];
    let mut a = spawn_binary(&db, &path, &args);
    let b = spawn_binary(&db, &path, &args);
    let a_pid = a.id() as i32;
    wait_for(
        "both processes to hold a range and commit chunks",
        30,
        || async {
            scalar_i64(
                &client,
                "SELECT count(DISTINCT split_part(worker, ':', 2)) FROM cutover.backfill_chunks",
            )
            .await
                == 2
        },
    )
    .await;
    let held_by_a = scalar_i64(
        &client,
        &format!(
            "SELECT count(*) FROM cutover.backfill_ranges WHERE lease_pid = {a_pid} AND NOT done"
        ),
    )
    .await;
    sigkill(&mut a);
    let out = tokio::task::spawn_blocking(move || b.wait_with_output().unwrap())
        .await
        .unwrap();
    assert!(
        out.status.success(),
        "the surviving worker failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_exactly_once(&client).await;
    assert_eq!(state(&client).await.0, "done");
    // No two chunks ever covered overlapping key intervals.
    let overlaps = scalar_i64(
        &client,
        "SELECT count(*) FROM cutover.backfill_chunks x JOIN cutover.backfill_chunks y ON x.id < y.id
          WHERE (x.hi->>0)::bigint > COALESCE((y.lo->>0)::bigint, 0)
            AND (y.hi->>0)::bigint > COALESCE((x.lo->>0)::bigint, 0)",
    )
    .await;
    assert_eq!(overlaps, 0, "chunks of the two workers overlapped");
    let updated = scalar_i64(
        &client,
        "SELECT sum(rows_updated)::bigint FROM cutover.backfill_chunks",
    )
    .await;
    assert_eq!(updated, 12_000);
    assert!(held_by_a <= 1, "one lease per worker, got {held_by_a}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn run_refuses_until_the_backfill_phase_is_applied() {
    let db = TestDb::new().await;
    let client = setup(&db, 10).await;
    client
        .execute(
            "UPDATE cutover.phases SET state = 'pending' WHERE plan_id = $1",
            &[&PLAN_ID],
        )
        .await
        .unwrap();
    let (_dir, path) = crate::common::plans::write_temp(&plan_toml("", ""));
    let out = spawn_binary(&db, &path, &[]).wait_with_output().unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(3), "{stderr}");
    assert!(stderr.contains("pending, not applied"), "{stderr}");
    assert_eq!(
        scalar_i64(&client, "SELECT count(*) FROM public.items WHERE NOT todo").await,
        0
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_chunk_blocked_by_a_row_lock_is_rolled_back_and_retried_smaller() {
    let db = TestDb::new().await;
    let client = setup(&db, 3000).await;
    // The app holds a row lock in the middle of the table for 1.5 s.
    let app = db.client().await;
    app.batch_execute("BEGIN; SELECT * FROM public.items WHERE id = 60 FOR UPDATE;")
        .await
        .unwrap();
    let toml =
        plan_toml("", "").replace("[roster]", "[settings]\nlock_timeout = \"100ms\"\n[roster]");
    let plan = Plan::parse("t.toml", &toml).unwrap();
    let (_stop, handle) = spawn_run(&db, &plan, RunOptions::default());
    wait_for("a rolled-back chunk", 30, || async {
        scalar_i64(
            &client,
            "SELECT COALESCE((SELECT chunk_retries FROM cutover.backfill), 0)",
        )
        .await
            >= 2
    })
    .await;
    let stuck = scalar_i64(
        &client,
        "SELECT count(*) FROM public.items WHERE id = 60 AND todo",
    )
    .await;
    assert_eq!(stuck, 1, "the locked row cannot have been updated yet");
    app.batch_execute("COMMIT").await.unwrap();
    let summary = tokio::time::timeout(Duration::from_secs(60), handle)
        .await
        .expect("backfill did not finish")
        .unwrap()
        .unwrap();
    assert_eq!(summary.outcome, RunOutcome::Done);
    assert_exactly_once(&client).await;
    // The chunk that finally covered the locked row was smaller than the first chunk.
    let limit_at_60 = scalar_i64(
        &client,
        "SELECT chunk_limit::bigint FROM cutover.backfill_chunks
          WHERE COALESCE((lo->>0)::bigint, 0) < 60 AND (hi->>0)::bigint >= 60",
    )
    .await;
    assert!(limit_at_60 < 50, "retried at {limit_at_60} rows");
    let p = backfill::progress(&client, &plan).await.unwrap();
    assert!(p.chunk_retries >= 2);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failing_transform_fails_naming_the_chunk_and_keeps_earlier_work() {
    let db = TestDb::new().await;
    let client = setup(&db, 500).await;
    let toml = plan_toml("", "").replace(r#"n = "n + 1""#, r#"n = "n + 1 / (id - 300)""#);
    let plan = Plan::parse("t.toml", &toml).unwrap();
    let (_stop, handle) = spawn_run(&db, &plan, RunOptions::default());
    let err = tokio::time::timeout(Duration::from_secs(30), handle)
        .await
        .expect("the runner did not stop")
        .unwrap()
        .unwrap_err();
    let text = err.to_string();
    assert!(text.contains("division by zero"), "{text}");
    assert!(text.contains("\"public\".\"items\""), "{text}");
    let (st, reason) = state(&client).await;
    assert_eq!(st, "failed");
    assert!(reason.contains("division by zero"), "{reason}");
    let done = scalar_i64(&client, "SELECT count(*) FROM public.items WHERE NOT todo").await;
    assert!(
        done > 0 && done < 300,
        "earlier chunks stay committed: {done}"
    );
    // `run` refuses a failed backfill until it is resumed.
    let (_s, again) = spawn_run(&db, &plan, RunOptions::default());
    assert!(matches!(
        again.await.unwrap(),
        Err(BackfillError::Failed { .. })
    ));
}

/// `backfill status --json`, `cutover status` and the TUI's view of the same snapshot show one
/// percentage and one total for a backfill stopped half-way.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn backfill_status_and_the_tui_show_one_percent() {
    let db = TestDb::new().await;
    let client = setup(&db, 500).await;
    let toml = plan_toml("", "").replace(r#"n = "n + 1""#, r#"n = "n + 1 / (id - 300)""#);
    let plan = Plan::parse("t.toml", &toml).unwrap();
    let (_stop, handle) = spawn_run(&db, &plan, RunOptions::default());
    let outcome = tokio::time::timeout(Duration::from_secs(30), handle).await;
    assert!(matches!(outcome, Ok(Ok(Err(_)))), "the transform must fail");
    let plan_file = PlanFile::new(&db, &toml);
    let run = |args: &[&str]| plan_file.stdout(args);
    let json: serde_json::Value =
        serde_json::from_str(&run(&["backfill", "status", "--json"])).unwrap();
    let cli = json["percent"].as_f64().unwrap();
    assert!(cli > 0.0 && cli < 100.0, "{json}");

    let snap = cutover::worker::snapshot::load(&client, &plan)
        .await
        .unwrap();
    let view = cutover::tui::view::build(&plan, "db", true, None, Some(&snap));
    let share = view.backfill.share();
    assert_eq!(share.percent, Some(cli));
    assert_eq!(share.total, json["rows_total"].as_i64());
    assert_eq!(share.done, json["rows_done"].as_i64().unwrap());

    // Both JSON outputs carry the gauge's share object.
    let expected = serde_json::to_value(share).unwrap();
    assert_eq!(json["share"], expected);
    assert_eq!(expected["estimate"], true, "{expected}");
    let status: serde_json::Value = serde_json::from_str(&run(&["status", "--json"])).unwrap();
    assert_eq!(status["backfill"]["share"], expected, "{status}");

    let text = run(&["status"]);
    let line = text.lines().find(|l| l.starts_with("backfill: ")).unwrap();
    let (rows, percent) = (share.rows_text(), share.percent_text().unwrap());
    assert!(line.contains(&format!("{rows} ({percent})")), "{line}");
    assert!(share.total_text().unwrap().starts_with('~'), "{rows}");
    // The runbook's live state words the same share (not the planned estimate).
    let md = run(&["runbook"]);
    let line = md.lines().find(|l| l.starts_with("- Backfill: ")).unwrap();
    assert!(
        line.ends_with(&format!("— {rows} done ({percent})")),
        "{line}"
    );
}

/// A backfill the latency guard paces reads as pacing in `backfill status` (text and JSON) and
/// the TUI's view, worded once; a hold by a health signal reads as throttled.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_paced_backfill_reads_as_pacing_everywhere() {
    let db = TestDb::new().await;
    let client = setup(&db, 100).await;
    let guard = "yielding: app latency 0.79× baseline (limit 1.25×, pg_stat_statements); \
                 easing off, pausing 0.3× each chunk's time";
    client
        .execute(
            "INSERT INTO cutover.backfill (plan_id, state, reason, target_chunk_ms, started_at) \
             VALUES ($1, 'pacing', $2, 20, now())",
            &[&PLAN_ID, &guard],
        )
        .await
        .unwrap();
    let toml = plan_toml("", "");
    let plan = Plan::parse("t.toml", &toml).unwrap();
    let plan_file = PlanFile::new(&db, &toml);
    let run = |args: &[&str]| plan_file.stdout(args);
    let wording = "pacing: easing off — app 0.79× baseline, budget 1.25×, pause 0.3× per chunk";
    let text = run(&["backfill", "status"]);
    assert!(text.starts_with("backfill bf-test: pacing\n"), "{text}");
    assert!(text.contains(&format!("reason:     {wording}\n")), "{text}");
    let json: serde_json::Value =
        serde_json::from_str(&run(&["backfill", "status", "--json"])).unwrap();
    assert_eq!(json["state"], "pacing", "{json}");
    assert_eq!(
        json["pace"],
        serde_json::json!({ "pace": "pacing", "text": wording })
    );
    let snap = cutover::worker::snapshot::load(&client, &plan)
        .await
        .unwrap();
    let view = cutover::tui::view::build(&plan, "db", true, None, Some(&snap));
    assert_eq!(view.backfill.state, Some(State::Pacing));
    assert_eq!(
        serde_json::to_value(view.backfill.pace()).unwrap(),
        json["pace"]
    );

    client
        .execute(
            "UPDATE cutover.backfill SET state = 'throttled', \
             reason = 'replica replay lag 7.1s > limit 5s' WHERE plan_id = $1",
            &[&PLAN_ID],
        )
        .await
        .unwrap();
    let json: serde_json::Value =
        serde_json::from_str(&run(&["backfill", "status", "--json"])).unwrap();
    assert_eq!(json["state"], "throttled", "{json}");
    assert_eq!(json["pace"]["pace"], "held", "{json}");
}

/// The snapshot carries the last runs of each check, oldest first, for the Parity pane.
#[tokio::test]
async fn the_snapshot_carries_each_checks_recent_runs() {
    let db = TestDb::new().await;
    let client = setup(&db, 10).await;
    // 25 runs of `a` (every third one failing), 3 of `b`; another plan's run is not read.
    client
        .batch_execute(&format!(
            "INSERT INTO cutover.check_results (plan_id, check_name, kind, outcome, summary, \
                 started_at, duration_ms, plan_sha256) \
             SELECT '{PLAN_ID}', 'a', 'row_count', \
                 CASE WHEN g % 3 = 0 THEN 'fail' ELSE 'pass' END, 'run ' || g, \
                 now() - (100 - g) * interval '1 minute', 5, 'x' FROM generate_series(1, 25) g; \
             INSERT INTO cutover.check_results (plan_id, check_name, kind, outcome, summary, \
                 started_at, duration_ms, plan_sha256) \
             SELECT '{PLAN_ID}', 'b', 'row_count', 'inconclusive', 'run ' || g, now(), 5, 'x' \
               FROM generate_series(1, 3) g; \
             INSERT INTO cutover.check_results (plan_id, check_name, kind, outcome, summary, \
                 started_at, duration_ms, plan_sha256) \
             VALUES ('other', 'a', 'row_count', 'pass', 'elsewhere', now(), 5, 'x');"
        ))
        .await
        .unwrap();
    let snap = cutover::worker::snapshot::load(&client, &plan("", ""))
        .await
        .unwrap();
    let of = |name: &str| -> Vec<String> {
        snap.check_history
            .iter()
            .filter(|r| r.name == name)
            .map(|r| r.summary.clone())
            .collect()
    };
    let want: Vec<String> = (6..=25).map(|g| format!("run {g}")).collect();
    assert_eq!(of("a"), want);
    assert_eq!(of("b"), ["run 1", "run 2", "run 3"]);
    let fails = snap
        .check_history
        .iter()
        .filter(|r| r.name == "a" && r.outcome == cutover::Outcome::Fail)
        .count();
    assert_eq!(fails, 7, "runs 6..=25 hold 7 multiples of 3");
    assert_eq!(snap.check_history.len(), 23);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn workers_retuned_live_and_killed_connections_are_survived() {
    let db = TestDb::new().await;
    let mut client = setup(&db, 12_000).await;
    // One worker even while the app is idle, so that the tuning alone adds the second.
    let plan = plan("max_rows_per_second = 4000\nidle_workers = 1", "");
    let opts = RunOptions {
        ranges: Some(6),
        ..RunOptions::default()
    };
    let (_stop, handle) = spawn_run(&db, &plan, opts);
    wait_for("first chunks", 30, || async { chunks(&client).await >= 2 }).await;
    let p = backfill::progress(&client, &plan).await.unwrap();
    assert_eq!(p.live_workers, 1);
    let actor = Actor::current(&client).await.unwrap();
    let tuning = Tuning {
        workers: Some(2),
        ..Tuning::default()
    };
    backfill::tune(&mut client, &plan, &actor, &tuning)
        .await
        .unwrap();
    wait_for("a second worker", 30, || async {
        backfill::progress(&client, &plan)
            .await
            .unwrap()
            .live_workers
            == 2
    })
    .await;

    // Every backfill connection is terminated (as a failover or restart would): the workers
    // reconnect and go on from their checkpoints.
    let before = chunks(&client).await;
    let killed = scalar_i64(
        &client,
        "SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity \
         WHERE application_name LIKE 'cutover/backfill%' AND datname = current_database()",
    )
    .await;
    assert!(killed >= 2, "terminated {killed} connections");
    let summary = tokio::time::timeout(Duration::from_secs(60), handle)
        .await
        .expect("backfill did not finish")
        .unwrap()
        .unwrap();
    assert_eq!(summary.outcome, RunOutcome::Done);
    assert!(chunks(&client).await > before);
    assert_exactly_once(&client).await;
    let workers = scalar_i64(
        &client,
        "SELECT count(DISTINCT worker) FROM cutover.backfill_chunks",
    )
    .await;
    assert!(workers >= 2, "chunks by {workers} workers");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn chunks_that_block_the_app_aim_shorter() {
    // Also proves the checkpoint runs inside the chunk's transaction: the waiter it counts
    // exists only until that transaction commits.
    let db = TestDb::new().await;
    let client = setup(&db, 2000).await;
    // The first chunk (ids 1..50) sleeps at id 20 while holding the locks of ids 1..19.
    // One worker, so that the first chunk is the one that sleeps.
    let toml = plan_toml("idle_workers = 1", "")
        .replace(
            r#"n = "n + 1""#,
            r#"n = "n + 1 + CASE WHEN id = 20 THEN (SELECT 0 FROM pg_sleep(0.8)) ELSE 0 END""#,
        )
        .replace(
            r#"target_chunk_time = "20ms""#,
            r#"target_chunk_time = "400ms""#,
        );
    let plan = Plan::parse("t.toml", &toml).unwrap();
    let (_stop, handle) = spawn_run(&db, &plan, RunOptions::default());
    wait_for("the first chunk to sleep", 30, || async {
        scalar_i64(
            &client,
            "SELECT count(*) FROM pg_stat_activity WHERE wait_event = 'PgSleep' \
             AND application_name LIKE 'cutover/backfill%'",
        )
        .await
            == 1
    })
    .await;
    let app = db.client().await;
    // Waits on the chunk's row lock until the chunk commits.
    let blocked_update = tokio::spawn(async move {
        app.execute("UPDATE public.items SET v = v + 1 WHERE id = 5", &[])
            .await
            .unwrap()
    });
    blocked_update.await.unwrap();
    let summary = tokio::time::timeout(Duration::from_secs(60), handle)
        .await
        .expect("backfill did not finish")
        .unwrap()
        .unwrap();
    assert_eq!(summary.outcome, RunOutcome::Done);
    assert_exactly_once(&client).await;
    let rows = client
        .query(
            "SELECT blocked, effective_ms FROM cutover.backfill_chunks ORDER BY id LIMIT 2",
            &[],
        )
        .await
        .unwrap();
    let first: (i32, Option<i32>) = (rows[0].get(0), rows[0].get(1));
    let second: (i32, Option<i32>) = (rows[1].get(0), rows[1].get(1));
    assert_eq!(
        first,
        (1, Some(400)),
        "the first chunk blocked the app's update"
    );
    // Half the target for the contention; the latency guard, which saw the application wait
    // on the chunk's lock, may shorten it further.
    assert!(
        second.1.is_some_and(|ms| (50..=200).contains(&ms)),
        "the next chunk aims at half the target or less: {second:?}"
    );
}

/// With no application traffic the backfill runs `idle_workers` (default 2) workers; when the
/// application comes back the extra one hands its range back and one worker goes on.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn idle_workers_run_while_the_app_is_idle_and_step_back_when_it_returns() {
    use std::sync::atomic::{AtomicBool, Ordering};
    use std::sync::Arc;

    let db = TestDb::new().await;
    let client = setup(&db, 40_000).await;
    let plan = plan("max_rows_per_second = 3000", "");
    let opts = RunOptions {
        ranges: Some(6),
        ..RunOptions::default()
    };
    let (_stop, handle) = spawn_run(&db, &plan, opts);
    let live = || async {
        backfill::progress(&client, &plan)
            .await
            .unwrap()
            .live_workers
    };
    wait_for("two workers on an idle server", 30, || async {
        live().await == 2
    })
    .await;
    // The application comes back: a session that is always inside a statement.
    let stop = Arc::new(AtomicBool::new(false));
    let app = {
        let (stop, app) = (stop.clone(), db.client().await);
        tokio::spawn(async move {
            while !stop.load(Ordering::Relaxed) {
                app.execute("SELECT pg_sleep(0.05)", &[])
                    .await
                    .expect("app statement");
            }
        })
    };
    wait_for("one worker while the app runs", 30, || async {
        live().await == 1
    })
    .await;
    for _ in 0..8 {
        tokio::time::sleep(Duration::from_millis(250)).await;
        assert!(
            live().await <= 1,
            "a second worker came back while the app ran"
        );
    }
    let p = backfill::progress(&client, &plan).await.unwrap();
    assert_eq!((p.workers, p.idle_workers), (1, 2));
    stop.store(true, Ordering::Relaxed);
    app.await.expect("app task");
    let summary = tokio::time::timeout(Duration::from_secs(90), handle)
        .await
        .expect("backfill did not finish")
        .unwrap()
        .unwrap();
    assert_eq!(summary.outcome, RunOutcome::Done);
    assert_exactly_once(&client).await;
}
