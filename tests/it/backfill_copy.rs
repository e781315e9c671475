//! Copy mode against a real PostgreSQL: exact parity under concurrent inserts, updates and
//! deletes (with the trigger dual-write), no write to the source rows, SIGKILL of the real
//! binary mid-copy then resume, and the catalog validation of `into`, the mapping and the key.

use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use cutover::backfill::{self, RunOptions, RunOutcome};
use cutover::db::DbConfig;
use cutover::plan::Plan;
use tokio::sync::watch;
use tokio_postgres::Client;

use crate::common::plans::{self, PlanToml};
use crate::common::{cutover_bin, TestDb};

const PLAN_ID: &str = "copy-test";

/// A plan copying `public.items` into `public.items_v2` (`n2 = n * 2`), keyed by `legacy_id`.
fn plan_toml(extra: &str) -> String {
    PlanToml::new(PLAN_ID)
        .role("data_owner", "postgres")
        .with(&format!(
            r#"[backfill]
mode = "copy"
table = "public.items"
key = ["id"]
into = "public.items_v2"
target_key = ["legacy_id"]
columns = {{ legacy_id = "id", n2 = "n * 2", note = "note" }}
target_chunk_time = "20ms"
initial_chunk_rows = 50
min_chunk_rows = 10
max_chunk_rows = 400
{extra}"#
        ))
        .toml()
}

/// The source with `rows` rows, the target, the dual-write trigger, the control schema, and
/// the engine's record that the backfill phase is applied.
async fn setup(db: &TestDb, rows: i64) -> Client {
    db.exec(&format!(
        "CREATE TABLE public.items (id bigserial PRIMARY KEY, n integer NOT NULL DEFAULT 0,
             note text);
         INSERT INTO public.items (n, note) SELECT g, 'row ' || g FROM generate_series(1, {rows}) g;
         ANALYZE public.items;
         CREATE TABLE public.items_v2 (uid uuid PRIMARY KEY DEFAULT gen_random_uuid(),
             legacy_id bigint NOT NULL UNIQUE, n2 integer NOT NULL, note text);
         CREATE FUNCTION public.items_mirror() RETURNS trigger LANGUAGE plpgsql AS $$
         BEGIN
             IF TG_OP = 'DELETE' THEN
                 DELETE FROM public.items_v2 WHERE legacy_id = OLD.id;
                 RETURN OLD;
             END IF;
             INSERT INTO public.items_v2 (legacy_id, n2, note) VALUES (NEW.id, NEW.n * 2, NEW.note)
             ON CONFLICT (legacy_id) DO UPDATE SET n2 = EXCLUDED.n2, note = EXCLUDED.note;
             RETURN NEW;
         END $$;
         CREATE TRIGGER items_mirror AFTER INSERT OR UPDATE OR DELETE ON public.items
             FOR EACH ROW EXECUTE FUNCTION public.items_mirror();"
    ))
    .await;
    let client = db.control_client().await;
    crate::common::seed_backfill_applied(&client, PLAN_ID).await;
    client
}

async fn scalar_i64(client: &Client, sql: &str) -> i64 {
    client.query_one(sql, &[]).await.unwrap().get(0)
}

/// The target holds exactly the mapped source rows: no row missing, extra or stale.
async fn assert_parity(client: &Client) {
    let source = scalar_i64(client, "SELECT count(*) FROM public.items").await;
    let target = scalar_i64(client, "SELECT count(*) FROM public.items_v2").await;
    let differ = scalar_i64(
        client,
        "SELECT count(*) FROM public.items s FULL JOIN public.items_v2 t ON t.legacy_id = s.id
          WHERE s.id IS NULL OR t.legacy_id IS NULL
             OR t.n2 IS DISTINCT FROM s.n * 2 OR t.note IS DISTINCT FROM s.note",
    )
    .await;
    assert!(source > 0);
    assert_eq!(differ, 0, "rows differ between source and target");
    assert_eq!(source, target);
}

async fn state(client: &Client) -> String {
    client
        .query_opt(
            "SELECT state FROM cutover.backfill WHERE plan_id = $1",
            &[&PLAN_ID],
        )
        .await
        .unwrap()
        .map_or("none".into(), |r| r.get(0))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn copy_is_exact_under_concurrent_inserts_updates_and_deletes() {
    let db = TestDb::new().await;
    let client = setup(&db, 6000).await;
    let plan = Plan::parse("copy.toml", &plan_toml("workers = 2")).unwrap();
    let cfg = DbConfig::from_url(&db.url).unwrap();
    let (_stop, rx) = watch::channel(false);
    let handle = tokio::spawn(backfill::run(cfg, plan.clone(), RunOptions::default(), rx));

    let app = db.client().await;
    let writer = tokio::spawn(async move {
        let mut ops = 0u32;
        let deadline = Instant::now() + Duration::from_secs(60);
        while ops < 1500 && Instant::now() < deadline {
            let id = 1 + (rand::random::<u32>() % 6000) as i64;
            let sql = match ops % 4 {
                0 => "UPDATE public.items SET n = n + 1, note = note || '+' WHERE id = $1",
                1 => "DELETE FROM public.items WHERE id = $1",
                2 => "UPDATE public.items SET note = NULL WHERE id = $1",
                _ => "INSERT INTO public.items (n, note) VALUES ($1::bigint::int, 'new')",
            };
            app.execute(sql, &[&id]).await.unwrap();
            ops += 1;
            if ops.is_multiple_of(8) {
                tokio::time::sleep(Duration::from_millis(1)).await;
            }
        }
        ops
    });
    let summary = tokio::time::timeout(Duration::from_secs(120), handle)
        .await
        .expect("copy did not finish")
        .unwrap()
        .unwrap();
    let ops = writer.await.unwrap();
    assert!(ops > 100, "the application wrote only {ops} times");
    assert_eq!(summary.outcome, RunOutcome::Done);
    assert!(summary.chunks >= 10, "{} chunks", summary.chunks);
    assert_parity(&client).await;
    assert_eq!(state(&client).await, "done");
    let p = backfill::progress(&client, &plan).await.unwrap();
    assert_eq!(p.percent, 100.0);
}

fn spawn_binary(db: &TestDb, plan_path: &std::path::Path) -> Child {
    Command::new(cutover_bin())
        .args(["backfill", "run"])
        .arg(plan_path)
        .args(["--lease", "2s", "--report-every", "0"])
        .env("DATABASE_URL", &db.url)
        .env("CUTOVER_LOG", "warn")
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigkill_mid_copy_then_resume_copies_every_row_once_and_writes_no_source_row() {
    let db = TestDb::new().await;
    let client = setup(&db, 12_000).await;
    client
        .batch_execute(
            "CREATE TABLE public.before AS SELECT id, xmin::text AS x FROM public.items;",
        )
        .await
        .unwrap();
    let (_dir, path) = crate::common::plans::write_temp(&plan_toml("max_rows_per_second = 6000"));
    let copied = || scalar_i64(&client, "SELECT count(*) FROM public.items_v2");
    let mut kills = 0;
    for _ in 0..4 {
        let before = copied().await;
        let mut child = spawn_binary(&db, &path);
        let deadline = Instant::now() + Duration::from_secs(30);
        while copied().await == before {
            assert!(Instant::now() < deadline, "the binary copied nothing");
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        tokio::time::sleep(Duration::from_millis(20 + rand::random::<u64>() % 300)).await;
        if state(&client).await == "done" {
            child.wait().unwrap();
            break;
        }
        nix::sys::signal::kill(
            nix::unistd::Pid::from_raw(child.id() as i32),
            nix::sys::signal::Signal::SIGKILL,
        )
        .unwrap();
        child.wait().unwrap();
        kills += 1;
    }
    assert!(kills >= 2, "the copy finished too early: {kills} kills");
    let partial = copied().await;
    assert!(partial > 0 && partial < 12_000, "{partial} rows copied");
    let child = spawn_binary(&db, &path);
    let out = tokio::task::spawn_blocking(move || child.wait_with_output().unwrap())
        .await
        .unwrap();
    assert!(
        out.status.success(),
        "final run failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_parity(&client).await;
    let inserted = scalar_i64(
        &client,
        "SELECT sum(rows_updated)::bigint FROM cutover.backfill_chunks",
    )
    .await;
    assert_eq!(
        inserted, 12_000,
        "chunk records must account for every row once"
    );
    let rewritten = scalar_i64(
        &client,
        "SELECT count(*) FROM public.items i JOIN public.before b USING (id) WHERE i.xmin::text <> b.x",
    )
    .await;
    assert_eq!(rewritten, 0, "the copy wrote source rows");
}

#[tokio::test]
async fn validation_names_a_missing_target_unknown_columns_and_a_non_unique_key() {
    let db = TestDb::new().await;
    db.exec(
        "CREATE TABLE public.items (id bigint PRIMARY KEY, n integer);
         CREATE TABLE public.loose (legacy_id bigint, n2 integer);",
    )
    .await;
    let dir = tempfile::tempdir().unwrap();
    let validate = |source: String, name: &str| {
        let path = plans::write(dir.path(), name, &source);
        let out = Command::new(cutover_bin())
            .args(["validate", path.to_str().unwrap()])
            .env("DATABASE_URL", &db.url)
            .output()
            .unwrap();
        (
            out.status.code(),
            String::from_utf8_lossy(&out.stderr).to_string(),
        )
    };
    let base = PlanToml::new(PLAN_ID)
        .role("data_owner", "postgres")
        .phase(
            cutover::plan::Phase::Expand,
            "CREATE TABLE public.items_v2 (legacy_id bigint PRIMARY KEY, n2 bigint);",
            "DROP TABLE public.items_v2;",
        )
        .with(
            r#"[backfill]
mode = "copy"
table = "public.items"
key = ["id"]
into = "public.items_v2"
target_key = ["legacy_id"]
columns = { legacy_id = "id", n2 = "n * 2" }
"#,
        )
        .toml();
    let (code, err) = validate(base.clone(), "ok.toml");
    assert_eq!(code, Some(0), "{err}");

    let (code, err) = validate(
        base.replace("into = \"public.items_v2\"", "into = \"public.nope\""),
        "missing.toml",
    );
    assert_eq!(code, Some(2), "{err}");
    assert!(err.contains("table `public.nope` does not exist"), "{err}");
    assert!(err.contains("missing.toml:"), "{err}");

    let (code, err) = validate(
        base.replace("n2 = \"n * 2\"", "n3 = \"n * 2\""),
        "unknown.toml",
    );
    assert_eq!(code, Some(2), "{err}");
    assert!(
        err.contains("column `n3` does not exist in `public.items_v2`"),
        "{err}"
    );

    let (code, err) = validate(
        base.replace("into = \"public.items_v2\"", "into = \"public.loose\""),
        "loose.toml",
    );
    assert_eq!(code, Some(2), "{err}");
    assert!(
        err.contains("key (legacy_id) of `public.loose` is not unique"),
        "{err}"
    );
}

#[tokio::test]
async fn the_orders_example_copies_every_order_and_rolls_back_cleanly() {
    use crate::common::lifecycle::{Lifecycle, LifecycleDb, Stage};
    use cutover::plan::Phase;

    let source = std::fs::read_to_string("plans/orders-rekey-uuid.toml").unwrap();
    let plan = Plan::parse("plans/orders-rekey-uuid.toml", &source).unwrap();
    let parity = async |db: &LifecycleDb| {
        let missing_or_stale: i64 = db
            .scalar(
                "SELECT count(*) FROM public.orders o FULL JOIN public.orders_v2 v
                    ON v.legacy_id = o.id
                  WHERE o.id IS NULL OR v.legacy_id IS NULL
                     OR (v.customer_id, v.total_cents, v.status, v.created_at)
                        IS DISTINCT FROM
                        (o.customer_id, round(o.total * 100)::bigint, o.status, o.created_at)",
            )
            .await;
        let copied: i64 = db.scalar("SELECT count(*) FROM public.orders_v2").await;
        assert_eq!(copied, 200);
        assert_eq!(missing_or_stale, 0);
    };
    Lifecycle::of(plan)
        .schema(include_str!("../../assets/demo/schema.sql"))
        .schema("SELECT cutover_demo_seed(50, 20, 200)")
        .after(Stage::Applied(Phase::Backfill), parity)
        .run_with_rollbacks()
        .await;
}
