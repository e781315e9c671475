//! Verification toolkit: every check kind passes on equal data and fails, naming the right
//! keys/partitions, on planted differences; errors are Inconclusive.

use std::process::Command;

use cutover::checks::{self, Cancel, CheckRecord};
use cutover::plan::{CheckKind, Plan};
use cutover::Outcome;
use serde_json::Value;

use crate::common::plans::PlanToml;
use crate::common::{cutover_bin, TestDb};

fn plan(checks_toml: &str) -> Plan {
    PlanToml::new("checks-test").with(checks_toml).plan()
}

async fn connect(db: &TestDb) -> tokio_postgres::Client {
    db.control_client().await
}

/// Runs the one check of `plan` named `name`.
async fn run(client: &tokio_postgres::Client, plan: &Plan, name: &str) -> CheckRecord {
    let mut records = checks::run(client, plan, Some(name), &Cancel::new())
        .await
        .unwrap();
    assert_eq!(records.len(), 1);
    records.remove(0)
}

fn listed(details: &Value, field: &str, inner: &str) -> Vec<String> {
    details[field]
        .as_array()
        .unwrap_or_else(|| panic!("no `{field}` in {details}"))
        .iter()
        .map(|v| match &v[inner] {
            Value::String(s) => s.clone(),
            other => other.to_string(),
        })
        .collect()
}

#[tokio::test]
async fn invariant_counts_violations_and_bounds() {
    let db = TestDb::new().await;
    db.exec("CREATE TABLE acc (id int PRIMARY KEY, bal int); INSERT INTO acc SELECT g, g FROM generate_series(1, 100) g;").await;
    let client = connect(&db).await;
    let p = plan(
        r#"
[[checks]]
name = "no-negative"
kind = "invariant"
sql = "SELECT count(*) FROM acc WHERE bal < 0;"
[[checks]]
name = "total-range"
kind = "invariant"
sql = "SELECT sum(bal) FROM acc"
min = 5045
max = 5050
"#,
    );
    assert_eq!(run(&client, &p, "no-negative").await.outcome, Outcome::Pass);
    assert_eq!(run(&client, &p, "total-range").await.outcome, Outcome::Pass);
    db.exec("UPDATE acc SET bal = -1 WHERE id IN (3, 4)").await;
    let r = run(&client, &p, "no-negative").await;
    assert_eq!(r.outcome, Outcome::Fail, "{}", r.summary);
    assert_eq!(r.details["value"], 2.0);
    let r = run(&client, &p, "total-range").await;
    assert_eq!(r.outcome, Outcome::Fail, "{}", r.summary);
}

#[tokio::test]
async fn errors_and_missing_tables_are_inconclusive_with_the_error() {
    let db = TestDb::new().await;
    db.exec("CREATE TABLE t (id int PRIMARY KEY, v int)").await;
    let client = connect(&db).await;
    let mut p = plan(
        r#"
[[checks]]
name = "bad-sql"
kind = "invariant"
sql = "SELECT count(*) FROM t"
[[checks]]
name = "missing-table"
kind = "expression_parity"
table = "public.nope"
key = ["id"]
column = "v"
expression = "v"
[[checks]]
name = "missing-target"
kind = "full_diff"
source = "t"
target = "t_missing"
key = ["id"]
columns = ["v"]
[[checks]]
name = "missing-count"
kind = "row_count_parity"
source = "t"
target = "t_missing"
key = "id"
[[checks]]
name = "timeout"
kind = "invariant"
timeout = "50ms"
sql = "SELECT count(*) FROM pg_sleep(2)"
"#,
    );
    // Validation refuses SQL with a syntax error; bypass it to see the check's own handling.
    if let CheckKind::Invariant { sql, .. } = &mut p.spec.checks[0].kind {
        *sql = "SELEC count(*) FROM t".into();
    }
    for (name, needle) in [
        ("bad-sql", "syntax error"),
        ("missing-table", "does not exist"),
        ("missing-target", "does not exist"),
        ("missing-count", "does not exist"),
        ("timeout", "statement timeout"),
    ] {
        let r = run(&client, &p, name).await;
        assert_eq!(r.outcome, Outcome::Inconclusive, "{name}: {}", r.summary);
        assert!(r.summary.contains(needle), "{name}: {}", r.summary);
        assert!(r.details["error"].as_str().unwrap().contains(needle));
    }
    // The statement timeout was restored for later work on the same connection.
    let t: String = client
        .query_one("SHOW statement_timeout", &[])
        .await
        .unwrap()
        .get(0);
    assert_eq!(t, "30s");
}

#[tokio::test]
async fn expression_parity_names_keys_null_safely() {
    let db = TestDb::new().await;
    db.exec(
        "CREATE TABLE acc (id bigint PRIMARY KEY, balance numeric(14,2), balance_cents bigint);
         INSERT INTO acc SELECT g, g * 1.25, round(g * 125) FROM generate_series(1, 3000) g;
         INSERT INTO acc VALUES (3001, NULL, NULL);",
    )
    .await;
    let client = connect(&db).await;
    let p = plan(
        r#"
[[checks]]
name = "cents"
kind = "expression_parity"
table = "acc"
key = ["id"]
column = "balance_cents"
expression = "round(balance * 100)::bigint"
"#,
    );
    let r = run(&client, &p, "cents").await;
    assert_eq!(r.outcome, Outcome::Pass, "{}", r.summary);
    assert_eq!(r.rows_scanned, 3001);
    // value → NULL, NULL → value, value → other value
    db.exec(
        "UPDATE acc SET balance_cents = NULL WHERE id = 17;
         UPDATE acc SET balance_cents = 5 WHERE id = 3001;
         UPDATE acc SET balance_cents = balance_cents + 1 WHERE id = 2500;",
    )
    .await;
    let r = run(&client, &p, "cents").await;
    assert_eq!(r.outcome, Outcome::Fail, "{}", r.summary);
    assert_eq!(r.details["mismatches"], 3);
    let mut keys = listed(&r.details, "samples", "key");
    keys.sort();
    assert_eq!(keys, ["17", "2500", "3001"]);
    assert!(r.summary.contains("3 of 3001"), "{}", r.summary);
    // history keeps both runs, latest returns the newest
    let latest = checks::latest(&client, "checks-test").await.unwrap();
    assert_eq!(latest.len(), 1);
    assert_eq!(latest[0].id, r.id);
    let hist = checks::history(&client, "checks-test", Some("cents"), 10)
        .await
        .unwrap();
    assert_eq!(hist.len(), 2);
}

#[tokio::test]
async fn expression_parity_with_text_keys_and_filter() {
    let db = TestDb::new().await;
    db.exec(
        "CREATE TABLE cust (code text PRIMARY KEY, full_name text, display_name text);
         INSERT INTO cust SELECT 'c-' || g, 'Name ' || g, 'Name ' || g FROM generate_series(1, 1500) g;
         UPDATE cust SET display_name = NULL WHERE code = 'c-77';
         UPDATE cust SET full_name = NULL WHERE code = 'c-1200';",
    )
    .await;
    let client = connect(&db).await;
    let p = plan(
        r#"
[[checks]]
name = "names"
kind = "expression_parity"
table = "public.cust"
key = ["code"]
column = "display_name"
expression = "full_name"
[[checks]]
name = "names-filtered"
kind = "expression_parity"
table = "public.cust"
key = ["code"]
column = "display_name"
expression = "full_name"
filter = "code NOT IN ('c-77', 'c-1200')"
"#,
    );
    let r = run(&client, &p, "names").await;
    assert_eq!(r.outcome, Outcome::Fail);
    let mut keys = listed(&r.details, "samples", "key");
    keys.sort();
    assert_eq!(keys, ["c-1200", "c-77"]);
    let r = run(&client, &p, "names-filtered").await;
    assert_eq!(r.outcome, Outcome::Pass, "{}", r.summary);
}

#[tokio::test]
async fn row_count_parity_by_expression_and_by_key_range() {
    let db = TestDb::new().await;
    db.exec(
        "CREATE TABLE o1 (id bigint PRIMARY KEY, created_at timestamptz NOT NULL);
         INSERT INTO o1 SELECT g, timestamptz '2025-01-01 00:00+00' + (g % 90) * interval '1 day' FROM generate_series(1, 9000) g;
         CREATE TABLE o2 AS SELECT * FROM o1; ALTER TABLE o2 ADD PRIMARY KEY (id);
         ANALYZE o1; ANALYZE o2;",
    )
    .await;
    let client = connect(&db).await;
    let p = plan(
        r#"
[[checks]]
name = "by-month"
kind = "row_count_parity"
source = "o1"
target = "o2"
partition_by = "date_trunc('month', created_at AT TIME ZONE 'UTC')"
[[checks]]
name = "by-month-chunked"
kind = "row_count_parity"
source = "o1"
target = "o2"
key = "id"
partition_by = "to_char(created_at AT TIME ZONE 'UTC', 'YYYY-MM')"
[[checks]]
name = "by-range"
kind = "row_count_parity"
source = "o1"
target = "o2"
key = "id"
partitions = 9
"#,
    );
    for name in ["by-month", "by-month-chunked", "by-range"] {
        let r = run(&client, &p, name).await;
        assert_eq!(r.outcome, Outcome::Pass, "{name}: {}", r.summary);
        assert_eq!(r.rows_scanned, 18_000, "{name}");
    }
    let r = run(&client, &p, "by-range").await;
    assert_eq!(r.details["partitions_total"], 9, "{}", r.details);
    // A missing February row and an extra row beyond the source's key span.
    db.exec(
        "DELETE FROM o2 WHERE id = (SELECT min(id) FROM o2 WHERE created_at >= '2025-02-01' AND created_at < '2025-03-01');
         INSERT INTO o2 VALUES (20000, '2025-03-15 00:00+00');",
    )
    .await;
    let r = run(&client, &p, "by-month-chunked").await;
    assert_eq!(r.outcome, Outcome::Fail);
    let mut parts = listed(&r.details, "partitions", "partition");
    parts.truncate(r.details["partitions_mismatched"].as_u64().unwrap() as usize);
    parts.sort();
    assert_eq!(parts, ["2025-02", "2025-03"], "{}", r.summary);
    let r = run(&client, &p, "by-range").await;
    assert_eq!(r.outcome, Outcome::Fail);
    assert_eq!(r.details["partitions_mismatched"], 2, "{}", r.details);
    assert_eq!(r.details["target_rows"], 9000);
    let last = &r.details["partitions"][1];
    assert!(
        last["partition"].as_str().unwrap().ends_with("+∞]"),
        "{last}"
    );
    assert_eq!(last["diff"], 1);
}

#[tokio::test]
async fn golden_query_needs_a_baseline_then_detects_changes() {
    let db = TestDb::new().await;
    db.exec("CREATE TABLE acc (id int PRIMARY KEY, owner text, created_at date); INSERT INTO acc SELECT g, 'o' || g, date '2025-01-01' + g FROM generate_series(1, 500) g;").await;
    let client = connect(&db).await;
    let p = plan(
        r#"
[[checks]]
name = "old-accounts"
kind = "golden_query"
query = "SELECT id, owner FROM acc WHERE created_at < '2026-01-01'"
"#,
    );
    let r = run(&client, &p, "old-accounts").await;
    assert_eq!(r.outcome, Outcome::Inconclusive);
    assert!(r.summary.contains("no baseline"), "{}", r.summary);
    checks::before_phase(&client, &p, cutover::plan::Phase::Expand)
        .await
        .unwrap();
    assert_eq!(
        run(&client, &p, "old-accounts").await.outcome,
        Outcome::Pass
    );
    // New rows outside the query's range do not matter; an edited row does.
    db.exec("INSERT INTO acc VALUES (1000, 'new', '2026-06-01')")
        .await;
    assert_eq!(
        run(&client, &p, "old-accounts").await.outcome,
        Outcome::Pass
    );
    db.exec("UPDATE acc SET owner = 'changed' WHERE id = 10")
        .await;
    let r = run(&client, &p, "old-accounts").await;
    assert_eq!(r.outcome, Outcome::Fail);
    assert!(r.summary.contains("different content"), "{}", r.summary);
    // A second before_phase keeps the original baseline.
    checks::before_phase(&client, &p, cutover::plan::Phase::Expand)
        .await
        .unwrap();
    assert_eq!(
        run(&client, &p, "old-accounts").await.outcome,
        Outcome::Fail
    );
}

#[tokio::test]
async fn cli_runs_exports_and_exits_by_outcome() {
    let db = TestDb::new().await;
    db.exec("CREATE TABLE acc (id int PRIMARY KEY, bal int); INSERT INTO acc SELECT g, g FROM generate_series(1, 10) g;").await;
    db.exec("CREATE TABLE acc2 AS SELECT * FROM acc; UPDATE acc2 SET bal = NULL WHERE id = 4;")
        .await;
    let dir = tempfile::tempdir().unwrap();
    let path = PlanToml::new("checks-test")
        .with(
            r#"
[[checks]]
name = "ok"
kind = "invariant"
sql = "SELECT count(*) FROM acc WHERE bal < 0"
[[checks]]
name = "bad"
kind = "invariant"
sql = "SELECT count(*) FROM acc WHERE bal > 5"
[[checks]]
name = "copy"
kind = "full_diff"
source = "acc"
target = "acc2"
key = ["id"]
columns = ["bal"]
"#,
        )
        .write(dir.path());
    let cli = |args: &[&str]| {
        Command::new(cutover_bin())
            .args(args)
            .env("DATABASE_URL", &db.url)
            .output()
            .unwrap()
    };
    let p = path.to_str().unwrap();
    let out = cli(&["check", p, "--name", "ok"]);
    assert_eq!(
        out.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(String::from_utf8_lossy(&out.stdout).contains("PASS"));
    let out = cli(&["check", p, "--json"]);
    assert_eq!(out.status.code(), Some(2));
    let records: Vec<CheckRecord> = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(records.len(), 3);
    assert_eq!(records[1].name, "bad");
    assert_eq!(records[1].outcome, Outcome::Fail);
    // The exact diff ran with its target side on a second connection.
    assert_eq!(records[2].outcome, Outcome::Fail, "{}", records[2].summary);
    assert_eq!(records[2].details["changed"][0]["key"], "4");
    let out = cli(&["check", p, "--history", "--json", "--name", "ok"]);
    assert_eq!(out.status.code(), Some(0));
    let records: Vec<CheckRecord> = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(records.len(), 2, "two runs of `ok` are in the history");
    let out = cli(&["check", p, "--name", "nope"]);
    assert_eq!(out.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&out.stderr).contains("no check named `nope`"));
}

#[tokio::test]
async fn exact_diff_finds_exactly_the_benchmark_plants() {
    use cutover::bench::parity;
    let db = TestDb::new().await;
    let client = connect(&db).await;
    let planted = parity::create_tables(&client, "bench_src", "bench_tgt", 30_000)
        .await
        .unwrap();
    assert_eq!(planted.len(), 13);
    let options = checks::RunOptions {
        chunk_time: std::time::Duration::from_millis(20),
        ..Default::default()
    };
    let spec = parity::spec("bench_src", "bench_tgt");
    let report = checks::diff::compare(&client, &spec, &options)
        .await
        .unwrap();
    assert!(
        planted.matches(&report),
        "planted {planted:?}\nfound {report:?}"
    );
    assert!(report.chunks > 1, "the diff was chunked");
    // Only the differing ranges were fetched row by row.
    assert!(
        report.rows_fetched < (report.source_rows + report.target_rows) / 2,
        "{report:?}"
    );
    // value → NULL and NULL → value are both reported with the NULL side as null.
    let maybe: Vec<_> = report
        .changed
        .iter()
        .flat_map(|c| c.columns.iter())
        .filter(|c| c.column == "maybe")
        .collect();
    assert_eq!(maybe.len(), 2);
    assert!(maybe
        .iter()
        .any(|c| c.source.is_some() && c.target.is_none()));
    assert!(maybe
        .iter()
        .any(|c| c.source.is_none() && c.target.as_deref() == Some("42")));
    // The same tables through a plan check: Fail, keys in the stored details.
    let p = plan(
        r#"
[[checks]]
name = "exact"
kind = "full_diff"
source = "bench_src"
target = "bench_tgt"
key = ["id"]
columns = ["a", "b", "maybe", "label", "amount", "at"]
"#,
    );
    let r = run(&client, &p, "exact").await;
    assert_eq!(r.outcome, Outcome::Fail);
    assert_eq!(r.details["missing_count"], 3);
    assert_eq!(r.details["extra_count"], 3);
    assert_eq!(r.details["changed_count"], 7);
    let mut missing: Vec<String> = r.details["missing"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v.as_str().unwrap().to_string())
        .collect();
    missing.sort();
    let mut want = planted.missing.clone();
    want.sort();
    assert_eq!(missing, want);
    // Equal tables pass.
    db.exec("CREATE TABLE bench_copy AS SELECT * FROM bench_src")
        .await;
    let same = parity::spec("bench_src", "bench_copy");
    let report = checks::diff::compare(&client, &same, &options)
        .await
        .unwrap();
    assert!(report.is_equal(), "{report:?}");
    assert_eq!(report.source_rows, 30_000);
    assert_eq!(report.rows_fetched, 0);
}

#[tokio::test]
async fn exact_diff_with_text_and_uuid_keys_and_mapped_columns() {
    let db = TestDb::new().await;
    db.exec(
        "CREATE TABLE s_text (code text PRIMARY KEY, v int, note text, amount numeric, at timestamptz);
         INSERT INTO s_text SELECT 'k' || lpad(g::text, 5, '0'), g, CASE WHEN g % 7 = 0 THEN NULL ELSE 'n' || g END,
                g * 1.5, timestamptz '2025-03-01 00:00+00' + g * interval '1 hour'
           FROM generate_series(1, 5000) g;
         CREATE TABLE t_text AS SELECT * FROM s_text; ALTER TABLE t_text ADD PRIMARY KEY (code);
         -- numerically equal values with another scale are not differences
         UPDATE t_text SET amount = amount::numeric(20,4) WHERE code = 'k00010';
         UPDATE t_text SET note = NULL WHERE code = 'k00100';      -- value → NULL
         UPDATE t_text SET note = 'x' WHERE code = 'k00007';       -- NULL → value
         UPDATE t_text SET note = '' WHERE code = 'k00200';        -- value → empty string
         UPDATE t_text SET at = at + interval '1 second' WHERE code = 'k04000';
         DELETE FROM t_text WHERE code = 'k02500';
         INSERT INTO t_text VALUES ('k02500a', 1, 'new', 1, now());
         CREATE TABLE s_uuid (id uuid PRIMARY KEY, v bigint);
         INSERT INTO s_uuid SELECT md5(g::text)::uuid, g FROM generate_series(1, 4000) g;
         CREATE TABLE t_uuid (new_id uuid PRIMARY KEY, v_int integer);
         INSERT INTO t_uuid SELECT id, v FROM s_uuid;
         UPDATE t_uuid SET v_int = NULL WHERE new_id = md5('77')::uuid;
         DELETE FROM t_uuid WHERE new_id = md5('3000')::uuid;",
    )
    .await;
    let client = connect(&db).await;
    let p = plan(
        r#"
[[checks]]
name = "text-keys"
kind = "full_diff"
source = "s_text"
target = "t_text"
key = ["code"]
columns = ["v", "note", "amount", "at"]
[[checks]]
name = "uuid-keys"
kind = "full_diff"
source = "s_uuid"
target = "t_uuid"
key = ["id"]
target_key = ["new_id"]
columns = ["v"]
target_columns = ["v_int"]
"#,
    );
    let r = run(&client, &p, "text-keys").await;
    assert_eq!(r.outcome, Outcome::Fail, "{}", r.summary);
    assert_eq!(r.details["missing"], serde_json::json!(["k02500"]));
    assert_eq!(r.details["extra"], serde_json::json!(["k02500a"]));
    let changed: Vec<(String, String)> = r.details["changed"]
        .as_array()
        .unwrap()
        .iter()
        .flat_map(|c| {
            let key = c["key"].as_str().unwrap().to_string();
            c["columns"]
                .as_array()
                .unwrap()
                .iter()
                .map(move |col| (key.clone(), col["column"].as_str().unwrap().to_string()))
        })
        .collect();
    assert_eq!(
        changed,
        [
            ("k00007".to_string(), "note".to_string()),
            ("k00100".into(), "note".into()),
            ("k00200".into(), "note".into()),
            ("k04000".into(), "at".into())
        ]
    );
    let r = run(&client, &p, "uuid-keys").await;
    assert_eq!(r.outcome, Outcome::Fail, "{}", r.summary);
    let gone: String = client
        .query_one("SELECT md5('3000')::uuid::text", &[])
        .await
        .unwrap()
        .get(0);
    let nulled: String = client
        .query_one("SELECT md5('77')::uuid::text", &[])
        .await
        .unwrap()
        .get(0);
    assert_eq!(r.details["missing"], serde_json::json!([gone]));
    assert_eq!(r.details["changed"][0]["key"], nulled.as_str());
    assert_eq!(r.details["changed"][0]["columns"][0]["target"], Value::Null);
    assert_eq!(r.details["changed_count"], 1);
    // Against an empty target every key is missing: counted in full, listed up to the cap.
    db.exec("CREATE TABLE t_empty (LIKE t_uuid)").await;
    let spec = checks::diff::DiffSpec {
        source: "s_uuid".into(),
        target: "t_empty".into(),
        key: vec!["id".into()],
        target_key: vec!["new_id".into()],
        columns: vec!["v".into()],
        target_columns: vec!["v_int".into()],
    };
    let report = checks::diff::compare(&client, &spec, &checks::RunOptions::default())
        .await
        .unwrap();
    assert_eq!(report.missing_count, 4000);
    assert_eq!(report.missing.len(), 4000);
    assert_eq!(report.target_rows, 0);
    // Equal content passes, even across int4/int8 and different key names.
    db.exec("UPDATE t_uuid SET v_int = 77 WHERE new_id = md5('77')::uuid; INSERT INTO t_uuid VALUES (md5('3000')::uuid, 3000);").await;
    let r = run(&client, &p, "uuid-keys").await;
    assert_eq!(r.outcome, Outcome::Pass, "{}", r.summary);
}

#[tokio::test]
async fn sampled_checksum_is_seeded_and_names_sampled_keys() {
    let db = TestDb::new().await;
    db.exec(
        "CREATE TABLE s (code text PRIMARY KEY, v int, note text);
         INSERT INTO s SELECT 'c' || g, g, 'n' || g FROM generate_series(1, 3000) g;
         CREATE TABLE t AS SELECT * FROM s; ALTER TABLE t ADD PRIMARY KEY (code);",
    )
    .await;
    let client = connect(&db).await;
    let p = plan(
        r#"
[[checks]]
name = "sample"
kind = "sampled_checksum"
source = "s"
target = "t"
key = ["code"]
columns = ["v", "note"]
sample_size = 100
seed = 7
"#,
    );
    let r = run(&client, &p, "sample").await;
    assert_eq!(r.outcome, Outcome::Pass, "{}", r.summary);
    assert_eq!(r.details["sampled"], 100);
    // The sample is the keys with the smallest seeded hash: reproducible.
    let ranked: Vec<String> = client
        .query(
            "SELECT code FROM s ORDER BY hashtextextended(code::text, 7)",
            &[],
        )
        .await
        .unwrap()
        .iter()
        .map(|r| r.get(0))
        .collect();
    let (first, second, outside) = (&ranked[0], &ranked[1], &ranked[2999]);
    db.exec(&format!(
        "UPDATE t SET note = NULL WHERE code = '{first}';
         DELETE FROM t WHERE code = '{second}';
         UPDATE t SET v = -1 WHERE code = '{outside}';"
    ))
    .await;
    let r = run(&client, &p, "sample").await;
    assert_eq!(r.outcome, Outcome::Fail, "{}", r.summary);
    assert_eq!(r.details["missing"], serde_json::json!([second]));
    assert_eq!(r.details["changed"][0]["key"], first.as_str());
    assert_eq!(r.details["changed"][0]["columns"][0]["column"], "note");
    assert_eq!(r.details["changed"][0]["columns"][0]["target"], Value::Null);
    assert_eq!(
        r.details["changed_count"], 1,
        "the key outside the sample is not seen"
    );
    // An empty source has nothing to sample: Inconclusive, not Pass.
    db.exec("TRUNCATE s").await;
    let r = run(&client, &p, "sample").await;
    assert_eq!(r.outcome, Outcome::Inconclusive, "{}", r.summary);
}

#[tokio::test]
async fn null_drift_names_drifting_partitions() {
    let db = TestDb::new().await;
    db.exec(
        "CREATE TABLE acc (id int PRIMARY KEY, balance numeric(14,2), balance_cents bigint, status text, status_v2 text, created_at date);
         INSERT INTO acc SELECT g, (g % 5000) * 1.37, round((g % 5000) * 137), 's' || (g % 9), 's' || (g % 9),
                date '2025-01-01' + (g % 90)
           FROM generate_series(1, 9000) g;",
    )
    .await;
    let client = connect(&db).await;
    let p = plan(
        r#"
[[checks]]
name = "cents"
kind = "null_drift"
table = "acc"
old = "balance * 100"
new = "balance_cents"
partition_by = "to_char(created_at, 'YYYY-MM')"
[[checks]]
name = "status"
kind = "null_drift"
table = "acc"
old = "status"
new = "status_v2"
default_value = "'unknown'"
max_share_increase_pp = 1.0
"#,
    );
    for name in ["cents", "status"] {
        let r = run(&client, &p, name).await;
        assert_eq!(r.outcome, Outcome::Pass, "{name}: {}", r.summary);
    }
    // January: NULLs appear; March: values rounded to whole dollars (counts unchanged).
    db.exec(
        "UPDATE acc SET balance_cents = NULL WHERE created_at < '2025-02-01' AND id % 10 = 0;
         UPDATE acc SET balance_cents = round(balance) * 100 WHERE created_at >= '2025-03-01';
         UPDATE acc SET status_v2 = 'unknown' WHERE id % 50 = 0;",
    )
    .await;
    let r = run(&client, &p, "cents").await;
    assert_eq!(r.outcome, Outcome::Fail, "{}", r.summary);
    assert_eq!(r.details["partitions_drifting"], 2, "{}", r.summary);
    let jan = &r.details["partitions"][0];
    assert_eq!(jan["partition"], "2025-01");
    assert!(
        jan["problems"][0]
            .as_str()
            .unwrap()
            .starts_with("NULL share +"),
        "{jan}"
    );
    let mar = &r.details["partitions"][1];
    assert_eq!(mar["partition"], "2025-03");
    assert!(!mar["problems"].as_array().unwrap().is_empty());
    assert_eq!(r.details["partitions"][2]["partition"], "2025-02");
    assert_eq!(
        r.details["partitions"][2]["problems"],
        serde_json::json!([])
    );
    let r = run(&client, &p, "status").await;
    assert_eq!(r.outcome, Outcome::Fail, "{}", r.summary);
    assert!(
        r.summary.contains("default share +2.00 pp"),
        "{}",
        r.summary
    );
}

#[tokio::test]
async fn uuid_keys_work_for_key_ranges_and_expression_parity() {
    let db = TestDb::new().await;
    db.exec(
        "CREATE TABLE u1 (id uuid PRIMARY KEY, v int, v2 int);
         INSERT INTO u1 SELECT md5(g::text)::uuid, g, g FROM generate_series(1, 2000) g;
         CREATE TABLE u2 AS SELECT * FROM u1; ALTER TABLE u2 ADD PRIMARY KEY (id);
         ANALYZE u1; ANALYZE u2;",
    )
    .await;
    let client = connect(&db).await;
    let p = plan(
        r#"
[[checks]]
name = "ranges"
kind = "row_count_parity"
source = "u1"
target = "u2"
key = "id"
partitions = 4
[[checks]]
name = "v2"
kind = "expression_parity"
table = "u1"
key = ["id"]
column = "v2"
expression = "v"
"#,
    );
    assert_eq!(run(&client, &p, "ranges").await.outcome, Outcome::Pass);
    assert_eq!(run(&client, &p, "v2").await.outcome, Outcome::Pass);
    db.exec("DELETE FROM u2 WHERE id = md5('5')::uuid; UPDATE u1 SET v2 = NULL WHERE id = md5('9')::uuid;")
        .await;
    let r = run(&client, &p, "ranges").await;
    assert_eq!(r.outcome, Outcome::Fail);
    assert_eq!(r.details["partitions_mismatched"], 1);
    assert_eq!(r.details["partitions"][0]["diff"], -1);
    let r = run(&client, &p, "v2").await;
    assert_eq!(r.outcome, Outcome::Fail);
    let nine: String = client
        .query_one("SELECT md5('9')::uuid::text", &[])
        .await
        .unwrap()
        .get(0);
    assert_eq!(r.details["samples"][0]["key"], nine.as_str());
    assert_eq!(r.details["samples"][0]["new"], Value::Null);
    assert_eq!(r.details["samples"][0]["expected"], "9");
}

#[tokio::test]
async fn cancelled_or_outside_the_window_is_inconclusive() {
    let db = TestDb::new().await;
    db.exec("CREATE TABLE t (id int PRIMARY KEY, v int); INSERT INTO t SELECT g, g FROM generate_series(1, 100) g;")
        .await;
    let client = connect(&db).await;
    let check = r#"
[[checks]]
name = "same"
kind = "expression_parity"
table = "t"
key = ["id"]
column = "v"
expression = "id"
"#;
    let p = plan(check);
    let cancel = Cancel::new();
    cancel.cancel();
    let r = checks::run(&client, &p, None, &cancel).await.unwrap();
    assert_eq!(r[0].outcome, Outcome::Inconclusive);
    assert!(r[0].summary.contains("cancelled"), "{}", r[0].summary);
    // A heavy-work window that is closed now: the check does not run.
    let now = chrono::Utc::now();
    let from = (now + chrono::Duration::hours(2)).format("%H:%M");
    let to = (now + chrono::Duration::hours(3)).format("%H:%M");
    let windowed = PlanToml::new("checks-test")
        .with(&format!(
            "[windows]\nheavy_work = [\"{from}-{to}\"]\n{check}"
        ))
        .plan();
    let r = run(&client, &windowed, "same").await;
    assert_eq!(r.outcome, Outcome::Inconclusive);
    assert!(r.summary.contains("heavy-work"), "{}", r.summary);
    assert_eq!(run(&client, &p, "same").await.outcome, Outcome::Pass);
}

#[tokio::test]
async fn composite_keys_work_for_the_exact_diff_and_expression_parity() {
    let db = TestDb::new().await;
    db.exec(
        "CREATE TABLE c1 (region text, n int, v int, w int, PRIMARY KEY (region, n));
         INSERT INTO c1 SELECT r, g, g, g FROM unnest(ARRAY['eu', 'us', 'ap']) r, generate_series(1, 3000) g;
         CREATE TABLE c2 AS SELECT * FROM c1; ALTER TABLE c2 ADD PRIMARY KEY (region, n);
         UPDATE c2 SET v = 0 WHERE region = 'us' AND n = 1234;
         DELETE FROM c2 WHERE region = 'ap' AND n = 7;
         UPDATE c1 SET w = NULL WHERE region = 'eu' AND n = 2999;",
    )
    .await;
    let client = connect(&db).await;
    let p = plan(
        r#"
[[checks]]
name = "diff"
kind = "full_diff"
source = "c1"
target = "c2"
key = ["region", "n"]
columns = ["v"]
[[checks]]
name = "w"
kind = "expression_parity"
table = "c1"
key = ["region", "n"]
column = "w"
expression = "v"
"#,
    );
    let options = checks::RunOptions {
        chunk_time: std::time::Duration::from_millis(5),
        ..Default::default()
    };
    let r = checks::run_with(&client, &p, Some("diff"), &options)
        .await
        .unwrap()
        .remove(0);
    assert_eq!(r.outcome, Outcome::Fail, "{}", r.summary);
    assert_eq!(r.details["missing"], serde_json::json!(["(ap,7)"]));
    assert_eq!(r.details["changed"][0]["key"], "(us,1234)");
    assert_eq!(r.details["extra_count"], 0);
    let r = checks::run_with(&client, &p, Some("w"), &options)
        .await
        .unwrap()
        .remove(0);
    assert_eq!(r.outcome, Outcome::Fail, "{}", r.summary);
    assert_eq!(r.details["samples"][0]["key"], "(eu,2999)");
    assert_eq!(r.rows_scanned, 9000);
}
