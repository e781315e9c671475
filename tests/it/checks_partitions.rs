//! Checks on a partitioned table (row counts, the exact diff, NULL drift) report one entry per
//! leaf partition: a planted difference in one (sub-partitioned) leaf is named there, and only
//! there, in the check's details, in `cutover check`, in `cutover status` and in `status --json`.

use cutover::checks::{self, Cancel, CheckRecord, PartitionResult};
use cutover::Outcome;

use crate::common::cli::{cutover, ok, status_json};
use crate::common::plans::PlanToml;
use crate::common::TestDb;

/// Four range partitions of `orders`, the last split by region; `orders_copy` holds the same
/// rows in one plain table.
const SCHEMA: &str = "
CREATE TABLE orders (id int NOT NULL, region text NOT NULL, v int, w int, PRIMARY KEY (id, region))
  PARTITION BY RANGE (id);
CREATE TABLE orders_p0 PARTITION OF orders FOR VALUES FROM (MINVALUE) TO (101);
CREATE TABLE orders_p1 PARTITION OF orders FOR VALUES FROM (101) TO (201);
CREATE TABLE orders_p2 PARTITION OF orders FOR VALUES FROM (201) TO (301);
CREATE TABLE orders_p3 PARTITION OF orders FOR VALUES FROM (301) TO (MAXVALUE)
  PARTITION BY LIST (region);
CREATE TABLE orders_p3_eu PARTITION OF orders_p3 FOR VALUES IN ('eu');
CREATE TABLE orders_p3_us PARTITION OF orders_p3 DEFAULT;
INSERT INTO orders SELECT g, CASE WHEN g % 2 = 0 THEN 'eu' ELSE 'us' END, g * 10, g * 10
  FROM generate_series(1, 400) g;
CREATE TABLE orders_copy AS SELECT * FROM orders;
";

const LEAVES: [&str; 5] = [
    "public.orders_p0",
    "public.orders_p1",
    "public.orders_p2",
    "public.orders_p3_eu",
    "public.orders_p3_us",
];

fn plan() -> PlanToml {
    PlanToml::new("parts-test").with(
        r#"
[[checks]]
name = "counts"
kind = "row_count_parity"
source = "public.orders"
target = "public.orders_copy"
key = "id"
partitions = 3
[[checks]]
name = "diff"
kind = "full_diff"
source = "public.orders"
target = "public.orders_copy"
key = ["id"]
columns = ["region", "v"]
[[checks]]
name = "drift"
kind = "null_drift"
table = "public.orders"
old = "v"
new = "w"
[gates.expand]
checks = ["counts", "diff"]
"#,
    )
}

async fn run(client: &tokio_postgres::Client, name: &str) -> CheckRecord {
    let mut records = checks::run(client, &plan().plan(), Some(name), &Cancel::new())
        .await
        .unwrap();
    records.remove(0)
}

/// (leaf, mismatches) of every leaf partition, in name order.
fn by_leaf(r: &CheckRecord) -> Vec<(String, i64)> {
    let mut all: Vec<(String, i64)> = PartitionResult::from_details(&r.details)
        .into_iter()
        .map(|p| (p.partition, p.mismatches))
        .collect();
    all.sort();
    all
}

fn expected(differing: i64) -> Vec<(String, i64)> {
    LEAVES
        .iter()
        .map(|l| {
            let n = if *l == "public.orders_p3_us" {
                differing
            } else {
                0
            };
            ((*l).to_string(), n)
        })
        .collect()
}

#[tokio::test]
async fn a_difference_in_one_leaf_partition_is_named_there_and_only_there() {
    let db = TestDb::new().await;
    db.exec(SCHEMA).await;
    let client = db.control_client().await;
    for name in ["counts", "diff", "drift"] {
        let r = run(&client, name).await;
        assert_eq!(r.outcome, Outcome::Pass, "{}", r.summary);
        assert_eq!(by_leaf(&r), expected(0), "{name}: {}", r.details);
    }

    // Two rows missing, one extra and one changed, all in the sub-partition of odd ids ≥ 301;
    // there too, one new value went NULL.
    db.exec(
        "DELETE FROM orders_copy WHERE id IN (301, 303);
         UPDATE orders_copy SET v = -1 WHERE id = 305;
         INSERT INTO orders_copy VALUES (1001, 'us', 1, 1);
         UPDATE orders SET w = NULL WHERE id = 307;",
    )
    .await;
    let counts = run(&client, "counts").await;
    assert_eq!(counts.outcome, Outcome::Fail, "{}", counts.summary);
    assert_eq!(by_leaf(&counts), expected(1), "{}", counts.details);
    let diff = run(&client, "diff").await;
    assert_eq!(diff.outcome, Outcome::Fail, "{}", diff.summary);
    assert_eq!(by_leaf(&diff), expected(4), "{}", diff.details);
    let drift = run(&client, "drift").await;
    assert_eq!(by_leaf(&drift), expected(1), "{}", drift.details);
    let us = PartitionResult::from_details(&diff.details)
        .into_iter()
        .find(|p| p.partition == "public.orders_p3_us")
        .unwrap();
    assert_eq!((us.source_rows, us.target_rows), (50, 49), "{us:?}");
    assert!(
        diff.summary
            .ends_with("leaf partitions that differ: public.orders_p3_us"),
        "{}",
        diff.summary
    );

    // The gate's items carry them into `status --json` and `status`; `check` prints them.
    let dir = tempfile::tempdir().unwrap();
    let path = plan().write(dir.path());
    let path = path.to_str().unwrap();
    let status = status_json(&db.url, path).await;
    let items = status["gate"]["items"].as_array().unwrap();
    for name in ["counts", "diff"] {
        let item = items.iter().find(|i| i["name"] == name).unwrap();
        let differing: Vec<&str> = item["partitions"]
            .as_array()
            .unwrap_or_else(|| panic!("no partitions in {item}"))
            .iter()
            .filter(|p| p["mismatches"] != 0)
            .map(|p| p["partition"].as_str().unwrap())
            .collect();
        assert_eq!(differing, ["public.orders_p3_us"], "{item}");
    }
    let text = ok(&cutover(&db.url, &["status", path]).await);
    assert!(
        text.contains(
            "partition public.orders_p3_us: 4 mismatches (50 source rows, 49 target rows)"
        ),
        "{text}"
    );
    assert!(text.contains("4 other leaf partition(s) agree"), "{text}");
    let out = cutover(&db.url, &["check", path, "--name", "counts"]).await;
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        text.contains("partition public.orders_p3_us: 1 mismatch (50 source rows, 49 target rows)"),
        "{text}"
    );
}
