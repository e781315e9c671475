//! Backfill of a partitioned table: ranges per leaf partition (sub-partitions too), progress
//! per leaf, exactly once under concurrent writes, leaves attached or detached mid-run, and a
//! partitioned source copied per leaf.

use std::time::Duration;

use cutover::backfill::{self, RunOptions, RunOutcome, State};
use cutover::plan::Plan;
use tokio_postgres::Client;

use crate::backfill::{assert_exactly_once, spawn_run, wait_for, PLAN_ID};
use crate::common::plans::PlanToml;
use crate::common::TestDb;

/// The backfill of `tests/it/backfill.rs` (`n = n + 1` on rows flagged `todo`), keyed by
/// `(id, region)` — the partition keys are part of the backfill key.
fn plan(extra: &str) -> Plan {
    let toml = PlanToml::new(PLAN_ID)
        .role("data_owner", "postgres")
        .with(&format!(
            r#"[backfill]
table = "public.items"
key = ["id", "region"]
set = {{ n = "n + 1", todo = "false" }}
pending = "todo"
target_chunk_time = "20ms"
initial_chunk_rows = 50
min_chunk_rows = 10
max_chunk_rows = 400
{extra}"#
        ))
        .toml();
    Plan::parse("bf-test.toml", &toml).unwrap()
}

/// The leaves of `public.items`: four LIST partitions by `region`, the last one split by RANGE
/// of `id` into two.
const LEAVES: [&str; 5] = [
    "public.items_r0",
    "public.items_r1",
    "public.items_r2",
    "public.items_r3a",
    "public.items_r3b",
];

/// Creates the partitioned `items` with `rows` old-shape rows spread over the regions, the
/// control schema, and the engine's record that the backfill phase is applied.
async fn setup(db: &TestDb, rows: i64) -> Client {
    db.exec(&format!(
        "CREATE TABLE public.items (id bigserial, region integer NOT NULL, \
         n integer NOT NULL DEFAULT 0, todo boolean NOT NULL DEFAULT true, \
         v integer NOT NULL DEFAULT 0, PRIMARY KEY (id, region)) PARTITION BY LIST (region);
         CREATE TABLE public.items_r0 PARTITION OF public.items FOR VALUES IN (0);
         CREATE TABLE public.items_r1 PARTITION OF public.items FOR VALUES IN (1);
         CREATE TABLE public.items_r2 PARTITION OF public.items FOR VALUES IN (2);
         CREATE TABLE public.items_r3 PARTITION OF public.items FOR VALUES IN (3) \
             PARTITION BY RANGE (id);
         CREATE TABLE public.items_r3a PARTITION OF public.items_r3 FOR VALUES FROM (MINVALUE) TO (2000);
         CREATE TABLE public.items_r3b PARTITION OF public.items_r3 FOR VALUES FROM (2000) TO (MAXVALUE);
         INSERT INTO public.items (region, n, todo) SELECT g % 4, 0, true FROM generate_series(1, {rows}) g;
         ANALYZE public.items;"
    ))
    .await;
    let client = db.control_client().await;
    crate::common::seed_backfill_applied(&client, PLAN_ID).await;
    client
}

/// The leaf of each of the first `n` ranges, by range id.
async fn first_range_leaves(client: &Client, n: i64) -> Vec<String> {
    client
        .query(
            "SELECT partition FROM cutover.backfill_ranges WHERE plan_id = $1 \
             ORDER BY range_id LIMIT $2",
            &[&PLAN_ID, &n],
        )
        .await
        .unwrap()
        .iter()
        .map(|r| r.get(0))
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn partitioned_table_every_row_once_per_leaf_under_concurrent_writes() {
    let db = TestDb::new().await;
    let client = setup(&db, 4000).await;
    let plan = plan("workers = 4");
    let opts = RunOptions {
        ranges: Some(12),
        ..RunOptions::default()
    };
    let (_stop, handle) = spawn_run(&db, &plan, opts);

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
                "INSERT INTO public.items (region, n, todo) \
                 VALUES ($2 % 4, CASE WHEN $1 THEN 0 ELSE 1 END, $1)",
                &[&todo, &i],
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
    assert_exactly_once(&client).await;

    // Ranges are numbered round robin over the leaves: workers claiming in order start on
    // different partitions.
    let mut first = first_range_leaves(&client, LEAVES.len() as i64).await;
    first.sort();
    assert_eq!(first, LEAVES);

    let p = backfill::progress(&client, &plan).await.unwrap();
    assert_eq!(p.state, State::Done);
    let names: Vec<&str> = p.partitions.iter().map(|l| l.name.as_str()).collect();
    assert_eq!(names, LEAVES);
    for leaf in &p.partitions {
        assert_eq!(leaf.ranges_done, leaf.ranges, "{leaf}");
        assert_eq!(leaf.percent, 100.0, "{leaf}");
        assert!(!leaf.detached);
        assert!(leaf.rows_done > 0, "{leaf}");
    }
    let json = serde_json::to_value(&p).unwrap();
    assert_eq!(json["partitions"][0]["name"], "public.items_r0");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn partitions_attached_mid_run_are_covered_and_detached_ones_reported() {
    let db = TestDb::new().await;
    let client = setup(&db, 4000).await;
    let plan = plan("workers = 1\nmax_rows_per_second = 300");
    let opts = RunOptions {
        ranges: Some(40),
        ..RunOptions::default()
    };
    let (_stop, handle) = spawn_run(&db, &plan, opts);
    wait_for("ranges planned", 30, || async {
        !first_range_leaves(&client, 1).await.is_empty()
    })
    .await;

    // A leaf dropped once its chunks have begun (usually mid-range)…
    wait_for("chunks on items_r2", 30, || async {
        client
            .query_one(
                "SELECT count(*) FROM cutover.backfill_ranges \
                 WHERE plan_id = $1 AND partition = 'public.items_r2' AND chunks > 0",
                &[&PLAN_ID],
            )
            .await
            .unwrap()
            .get::<_, i64>(0)
            > 0
    })
    .await;
    db.exec("DROP TABLE public.items_r2").await;
    // …a new leaf with old-shape rows, and a leaf detached before its turn.
    db.exec(
        "CREATE TABLE public.items_r4 (LIKE public.items INCLUDING DEFAULTS);
         INSERT INTO public.items_r4 (id, region, n, todo) SELECT g, 4, 0, true FROM generate_series(100001, 100300) g;
         ALTER TABLE public.items ATTACH PARTITION public.items_r4 FOR VALUES IN (4);
         ALTER TABLE public.items_r3 DETACH PARTITION public.items_r3b;",
    )
    .await;
    client
        .execute(
            "UPDATE cutover.backfill SET max_rows_per_sec = 0 WHERE plan_id = $1",
            &[&PLAN_ID],
        )
        .await
        .unwrap();
    let summary = tokio::time::timeout(Duration::from_secs(90), handle)
        .await
        .expect("backfill did not finish")
        .unwrap()
        .unwrap();
    assert_eq!(summary.outcome, RunOutcome::Done);
    // Everything still in the table, the attached leaf included, was transformed once.
    assert_exactly_once(&client).await;
    let r4: i64 = client
        .query_one(
            "SELECT count(*) FROM public.items_r4 WHERE n = 1 AND NOT todo",
            &[],
        )
        .await
        .unwrap()
        .get(0);
    assert_eq!(r4, 300);

    let p = backfill::progress(&client, &plan).await.unwrap();
    let by_name = |n: &str| p.partitions.iter().find(|l| l.name == n).cloned();
    let attached = by_name("public.items_r4").expect("attached leaf has ranges");
    assert_eq!(attached.rows_done, 300);
    let detached = by_name("public.items_r3b").expect("detached leaf is listed");
    assert!(detached.detached, "{detached}");
    assert!(detached.to_string().contains("DETACHED"));
    let dropped = by_name("public.items_r2").expect("dropped leaf is listed");
    assert!(dropped.detached, "{dropped}");
}

/// Copy mode from a partitioned table: ranges per leaf too, each chunk reading its leaf under
/// the table's name (the generated `pending` names `items`), every row copied once while the
/// application inserts through its dual-write trigger.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_partitioned_source_is_copied_per_leaf() {
    let db = TestDb::new().await;
    let client = setup(&db, 4000).await;
    // The dual-write path a copy needs: new rows reach the target as they are inserted.
    db.exec(
        "CREATE TABLE public.items_v2 (id bigint, region integer, n2 integer NOT NULL, \
         PRIMARY KEY (id, region));
         CREATE FUNCTION public.items_mirror() RETURNS trigger LANGUAGE plpgsql AS $$ BEGIN \
         INSERT INTO public.items_v2 VALUES (NEW.id, NEW.region, NEW.n * 2 + 1) ON CONFLICT DO NOTHING; \
         RETURN NEW; END $$;
         CREATE TRIGGER items_mirror AFTER INSERT ON public.items \
         FOR EACH ROW EXECUTE FUNCTION public.items_mirror();",
    )
    .await;
    let toml = PlanToml::new(PLAN_ID)
        .role("data_owner", "postgres")
        .with(
            r#"[backfill]
mode = "copy"
table = "public.items"
key = ["id", "region"]
into = "public.items_v2"
columns = { id = "id", region = "region", n2 = "n * 2 + 1" }
target_chunk_time = "20ms"
initial_chunk_rows = 50
max_chunk_rows = 400
workers = 4
"#,
        )
        .toml();
    let plan = Plan::parse("bf-test.toml", &toml).unwrap();
    let opts = RunOptions {
        ranges: Some(12),
        ..RunOptions::default()
    };
    let (_stop, handle) = spawn_run(&db, &plan, opts);
    let app = db.client().await;
    let writer = tokio::spawn(async move {
        for i in 0..200 {
            app.execute(
                "INSERT INTO public.items (region, n, todo) VALUES ($1 % 4, $1, false)",
                &[&i],
            )
            .await
            .unwrap();
            tokio::time::sleep(Duration::from_millis(2)).await;
        }
    });
    let summary = tokio::time::timeout(Duration::from_secs(90), handle)
        .await
        .expect("copy did not finish")
        .unwrap()
        .unwrap();
    writer.await.unwrap();
    assert_eq!(summary.outcome, RunOutcome::Done);
    let differ: i64 = client
        .query_one(
            "SELECT count(*) FROM public.items s FULL JOIN public.items_v2 t USING (id, region) \
             WHERE s.id IS NULL OR t.id IS NULL OR t.n2 <> s.n * 2 + 1",
            &[],
        )
        .await
        .unwrap()
        .get(0);
    assert_eq!(differ, 0);
    let mut first = first_range_leaves(&client, LEAVES.len() as i64).await;
    first.sort();
    assert_eq!(first, LEAVES);
    let p = backfill::progress(&client, &plan).await.unwrap();
    let names: Vec<&str> = p.partitions.iter().map(|l| l.name.as_str()).collect();
    assert_eq!(names, LEAVES);
}

#[tokio::test]
async fn validate_names_partition_keys_missing_from_the_backfill_key() {
    let db = TestDb::new().await;
    let _client = setup(&db, 10).await;
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("parts.toml");
    let source = plan("")
        .source
        .replace("key = [\"id\", \"region\"]", "key = [\"id\"]");
    std::fs::write(&path, source).unwrap();
    let out = std::process::Command::new(crate::common::cutover_bin())
        .args(["validate", path.to_str().unwrap()])
        .env("DATABASE_URL", &db.url)
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{stderr}");
    assert!(
        stderr.contains("is partitioned by `region` (of public.items)"),
        "{stderr}"
    );
    assert!(!stderr.contains("`id` (of"), "{stderr}");
    // Located at the key's line and column in the plan file.
    let key_line = plan("")
        .source
        .lines()
        .position(|l| l.starts_with("key ="))
        .unwrap()
        + 1;
    assert!(
        stderr.contains(&format!("parts.toml:{key_line}:")),
        "{stderr}"
    );
}
