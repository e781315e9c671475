//! Index builds you can watch: a phase's `CREATE INDEX CONCURRENTLY` that waits for a writer
//! shows its phase and the writer it waits for in the runner's events, `status --json` and the
//! metrics, then completes once the writer commits.

use std::time::Duration;

use cutover::control::audit::Actor;
use cutover::control::index_builds::{self, IndexBuild};
use cutover::db::DbConfig;
use cutover::engine::{self, EngineEvent, RunOptions};
use cutover::plan::{Phase, Plan};

use super::demo_db;
use crate::common::plans::{demo_with, write};
use crate::common::{self, status_json};

#[tokio::test]
async fn a_concurrent_build_waiting_for_a_writer_shows_the_writer_everywhere() {
    let db = demo_db().await;
    let source = demo_with(&[
        ("lock_timeout = \"2s\"", "lock_timeout = \"30s\""),
        (
            "apply = \"ALTER TABLE public.accounts ADD COLUMN balance_cents bigint;\"",
            "apply = \"CREATE INDEX CONCURRENTLY accounts_owner_idx ON public.accounts (owner);\"",
        ),
        (
            "rollback = \"ALTER TABLE public.accounts DROP COLUMN balance_cents;\"",
            "rollback = \"DROP INDEX CONCURRENTLY IF EXISTS public.accounts_owner_idx;\"",
        ),
    ]);
    let dir = tempfile::tempdir().unwrap();
    let path = write(dir.path(), "cic.toml", &source);
    let plan = Plan::parse("cic.toml", &source).unwrap();
    let mut c = db.control_client().await;
    let actor = Actor::current(&c).await.unwrap();
    engine::override_gate(&mut c, &plan, &actor, Phase::Expand, "test: index build")
        .await
        .unwrap();

    let writer = common::connect(&db.url).await;
    let writer_pid: i32 = writer
        .query_one("SELECT pg_backend_pid()", &[])
        .await
        .unwrap()
        .get(0);
    writer
        .batch_execute("SET application_name = 'writer-test'; BEGIN; INSERT INTO public.accounts (owner, balance) VALUES ('late-writer', 1)")
        .await
        .unwrap();

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
    let waits_for_writer =
        |b: &IndexBuild| b.waiting_for.as_ref().is_some_and(|l| l.pid == writer_pid);
    let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
    let seen = loop {
        let ev = tokio::time::timeout_at(deadline, events.recv())
            .await
            .expect("no index build waiting for the writer within 20 s")
            .expect("event channel closed early");
        if let EngineEvent::IndexBuild { build } = ev {
            if waits_for_writer(&build) {
                break build;
            }
        }
    };
    assert_eq!(seen.command, "CREATE INDEX CONCURRENTLY");
    assert_eq!(seen.table, "accounts");
    assert!(seen.phase.starts_with("waiting for"), "{seen:?}");
    assert!(seen.lockers_total >= 1, "{seen:?}");
    assert_eq!(
        seen.waiting_for
            .as_ref()
            .map(|l| l.application_name.as_str()),
        Some("writer-test")
    );

    // Another process sees the same build: the library read, `status --json` and the metrics.
    let other = db.client().await;
    let builds = index_builds::of_plan(&other, plan.id()).await.unwrap();
    assert!(builds.iter().any(waits_for_writer), "{builds:?}");
    let st = status_json(&db.url, path.to_str().unwrap()).await;
    let shown = st["index_builds"]
        .as_array()
        .expect("index_builds in status --json");
    assert!(
        shown
            .iter()
            .any(|b| b["waiting_for"]["pid"].as_i64() == Some(i64::from(writer_pid))),
        "{st}"
    );
    let metrics = cutover::evidence::metrics::render(&other, &plan)
        .await
        .unwrap();
    let series = metrics
        .lines()
        .find(|l| l.starts_with("cutover_index_build_lockers_waiting{"))
        .unwrap_or_else(|| panic!("no lockers series:\n{metrics}"));
    assert!(
        series.contains("table=\"accounts\"") && series.ends_with(" 1.0") || series.ends_with(" 1"),
        "{series}"
    );

    writer.batch_execute("COMMIT").await.unwrap();
    let applied = tokio::time::timeout(Duration::from_secs(30), task)
        .await
        .expect("the build did not finish after the writer committed")
        .unwrap()
        .unwrap();
    assert!(applied.changed);
    let valid: bool = other
        .query_one(
            "SELECT indisvalid FROM pg_index WHERE indexrelid = 'public.accounts_owner_idx'::regclass",
            &[],
        )
        .await
        .unwrap()
        .get(0);
    assert!(valid);
    assert!(index_builds::of_plan(&other, plan.id())
        .await
        .unwrap()
        .is_empty());
}
