//! A real logical slot that stops consuming while WAL is written, on a cluster with
//! `wal_level = logical` and a small `max_slot_wal_keep_size`: `status` (text and JSON),
//! `backfill status --json` and the TUI's readiness gate show the slot, and once it nears the limit
//! it blocks the gate, until it is lost.

use std::process::Command;

use cutover::rules::ItemKind;
use tokio_postgres::Client;

use crate::common::plans::PlanToml;
use crate::common::{connect, cutover_bin};

const MB: i64 = 1 << 20;

fn plan() -> PlanToml {
    PlanToml::new("slot-gate").with(
        r#"[backfill]
table = "public.items"
key = ["id"]
set = { n = "n + 1" }
pending = "n < 0"
"#,
    )
}

/// Writes about one WAL segment (16MB) of WAL: a row, then a switch to the next segment.
async fn write_segments(client: &Client, n: usize) {
    for _ in 0..n {
        client
            .batch_execute("INSERT INTO public.items (n) VALUES (1); SELECT pg_switch_wal();")
            .await
            .unwrap();
    }
}

async fn safe_wal_size(client: &Client) -> i64 {
    client
        .query_one("SELECT safe_wal_size FROM pg_replication_slots", &[])
        .await
        .unwrap()
        .get(0)
}

async fn wal_status(client: &Client) -> String {
    client
        .query_one("SELECT wal_status FROM pg_replication_slots", &[])
        .await
        .unwrap()
        .get(0)
}

/// `cutover ARGS PLAN` against `url`: stdout, failing the test on a non-zero exit.
fn cutover(url: &str, args: &[&str], plan: &std::path::Path) -> String {
    let out = Command::new(cutover_bin())
        .args(args)
        .arg(plan)
        .env("DATABASE_URL", url)
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    assert!(
        out.status.success(),
        "cutover {args:?}: {stdout}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    stdout
}

/// The slot blockers of the next gate in `status --json`.
fn slot_blockers(status: &serde_json::Value) -> Vec<String> {
    status["gate"]["items"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|i| i["kind"] == "slot")
        .map(|i| format!("{} {}: {}", i["name"], i["outcome"], i["detail"]))
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_logical_slot_that_stops_consuming_is_shown_then_blocks_the_gate() {
    let cluster = crate::common::logical_cluster().await;
    let url = cluster.url();
    let client = connect(&url).await;
    client
        .batch_execute("ALTER SYSTEM SET max_slot_wal_keep_size = '160MB'")
        .await
        .unwrap();
    client
        .batch_execute(
            "SELECT pg_reload_conf();
             CREATE TABLE public.items (id bigserial PRIMARY KEY, n integer NOT NULL DEFAULT 0);
             INSERT INTO public.items (n) SELECT g FROM generate_series(1, 100) g;",
        )
        .await
        .unwrap();
    client
        .batch_execute("SELECT pg_create_logical_replication_slot('analytics', 'pgoutput')")
        .await
        .unwrap();
    let dir = tempfile::tempdir().unwrap();
    let path = plan().write(dir.path());

    // A fresh slot is shown, with its allowance, and blocks nothing.
    let status: serde_json::Value =
        serde_json::from_str(&cutover(&url, &["status", "--json"], &path)).unwrap();
    assert_eq!(status["max_slot_wal_keep_size"], 160 * MB, "{status}");
    let slot = &status["slots"][0];
    assert_eq!(slot["name"], "analytics", "{status}");
    assert_eq!(slot["kind"], "logical");
    assert!(slot["safe_wal_size"].as_i64().unwrap() > 80 * MB, "{slot}");
    assert!(slot_blockers(&status).is_empty(), "{status}");
    // Before (above) and after the control schema exists.
    let cfg = cutover::db::DbConfig::from_url(&url).unwrap();
    let mut control = cutover::db::connect(&cfg, &cutover::db::SessionSettings::new("t"))
        .await
        .unwrap();
    cutover::control::schema::bootstrap(&mut control)
        .await
        .unwrap();
    let backfill: serde_json::Value =
        serde_json::from_str(&cutover(&url, &["backfill", "status", "--json"], &path)).unwrap();
    assert_eq!(backfill["slots"][0]["name"], "analytics", "{backfill}");
    assert!(backfill["slots"][0]["retained_bytes"].as_i64().is_some());
    assert!(backfill["slots"][0]["lag_bytes"].as_i64().is_some());
    // The metrics endpoint has its series.
    let metrics = cutover::evidence::metrics::render(&control, &plan().plan())
        .await
        .unwrap();
    let series = |name: &str, tail: &str| {
        metrics
            .lines()
            .any(|l| l.starts_with(name) && l.contains("slot=\"analytics\"") && l.ends_with(tail))
    };
    assert!(series("cutover_slot_retained_wal_bytes{", ""), "{metrics}");
    assert!(series("cutover_slot_lag_bytes{", ""), "{metrics}");
    assert!(
        series("cutover_slot_wal_status{", "status=\"reserved\"} 1.0"),
        "{metrics}"
    );
    assert!(series("cutover_slot_blocks_gates{", "} 0.0"), "{metrics}");

    // The consumer is gone and WAL keeps coming: under a quarter of the allowance left.
    let mut healthy = 0;
    while safe_wal_size(&client).await >= 40 * MB {
        let blockers = slot_blockers(
            &serde_json::from_str(&cutover(&url, &["status", "--json"], &path)).unwrap(),
        );
        assert!(blockers.is_empty(), "{blockers:?}");
        healthy += 1;
        assert!(healthy < 20, "the slot's allowance does not shrink");
        write_segments(&client, 1).await;
    }
    let status: serde_json::Value =
        serde_json::from_str(&cutover(&url, &["status", "--json"], &path)).unwrap();
    let blockers = slot_blockers(&status);
    assert_eq!(blockers.len(), 1, "{status}");
    assert!(
        blockers[0].contains("logical slot `analytics` is")
            && blockers[0].contains("away from being lost"),
        "{blockers:?}"
    );
    assert_eq!(status["gate"]["verdict"], "fail", "{status}");
    assert!(
        status["gate"]["blockers"]
            .as_array()
            .unwrap()
            .iter()
            .any(|b| b.as_str().unwrap().starts_with("slot analytics: FAIL")),
        "{status}"
    );
    let text = cutover(&url, &["status"], &path);
    assert!(
        text.contains("✗ slot analytics: logical slot `analytics` is")
            && text.contains("logical slot `analytics` (inactive, "),
        "{text}"
    );

    // The TUI's readiness: the same gate item.
    let plan = plan().plan();
    let snap = cutover::worker::snapshot::load(&client, &plan)
        .await
        .unwrap();
    let view = cutover::tui::view::build(&plan, "db", true, None, Some(&snap));
    let gate = view.gate.as_ref().unwrap();
    assert!(
        gate.items
            .iter()
            .any(|i| i.kind == ItemKind::Slot && i.name == "analytics"),
        "{:?}",
        gate.items
    );
    // Its Backfill pane lists the slot, marked as the one blocking; so do the metrics.
    let listed = &view.backfill.slots;
    assert!(
        listed.len() == 1 && listed[0].slot.name == "analytics" && listed[0].at_risk.is_some(),
        "{listed:?}"
    );
    let metrics = cutover::evidence::metrics::render(&control, &plan)
        .await
        .unwrap();
    assert!(
        metrics
            .lines()
            .any(|l| l.starts_with("cutover_slot_blocks_gates{")
                && l.contains("slot=\"analytics\"")
                && l.ends_with("} 1.0")),
        "{metrics}"
    );

    // Past the allowance, a checkpoint invalidates it: lost, and still blocking.
    let mut segments = 0;
    while wal_status(&client).await != "lost" {
        segments += 1;
        assert!(segments < 20, "the slot is never lost");
        write_segments(&client, 1).await;
        client.batch_execute("CHECKPOINT").await.unwrap();
    }
    let status: serde_json::Value =
        serde_json::from_str(&cutover(&url, &["status", "--json"], &path)).unwrap();
    assert_eq!(status["slots"][0]["wal_status"], "lost", "{status}");
    let blockers = slot_blockers(&status);
    assert!(
        blockers.len() == 1 && blockers[0].contains("`analytics` is lost"),
        "{status}"
    );

    // Dropped, it blocks nothing any more.
    client
        .batch_execute("SELECT pg_drop_replication_slot('analytics')")
        .await
        .unwrap();
    let status: serde_json::Value =
        serde_json::from_str(&cutover(&url, &["status", "--json"], &path)).unwrap();
    assert!(slot_blockers(&status).is_empty(), "{status}");
    assert_eq!(status["slots"], serde_json::json!([]));
}
