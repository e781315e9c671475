//! Read-only is read-only: viewer commands and a `--read-only` worker write nothing — no control
//! row, no probe result, no sequence step — and refuse every action with the reason.

use std::time::Duration;

use cutover::db::DbConfig;
use cutover::plan::Plan;
use cutover::worker::{self, ActionError, Command, WorkerEvent, WorkerOptions};

use crate::common::{cutover, TestDb};

const DEMO_PLAN: &str = "plans/accounts-balance-cents.toml";

/// Every row of every `cutover` table and every sequence's position, hashed per table.
async fn fingerprint(db: &TestDb) -> Vec<(String, String)> {
    let client = db.client().await;
    let tables: Vec<String> = client
        .query(
            "SELECT format('%I.%I', schemaname, tablename) FROM pg_tables
              WHERE schemaname IN ('cutover', 'public') ORDER BY 1",
            &[],
        )
        .await
        .expect("tables")
        .iter()
        .map(|r| r.get(0))
        .collect();
    let mut out = Vec::new();
    for t in tables {
        let sql = format!(
            "SELECT coalesce(md5(string_agg(x::text, '|' ORDER BY x::text)), '') FROM {t} x"
        );
        let h: String = client.query_one(&sql, &[]).await.expect("hash").get(0);
        out.push((t, h));
    }
    for r in client
        .query(
            "SELECT format('%I.%I', schemaname, sequencename), coalesce(last_value, 0)::text
               FROM pg_sequences ORDER BY 1",
            &[],
        )
        .await
        .expect("sequences")
    {
        out.push((r.get(0), r.get(1)));
    }
    out
}

#[tokio::test]
async fn viewers_and_a_read_only_worker_change_nothing() {
    let db = TestDb::new().await;
    let schema = std::fs::read_to_string("assets/demo/schema.sql").expect("demo schema");
    db.exec(&schema).await;
    db.exec("SELECT cutover_demo_seed(200, 10, 10)").await;
    let url = db.url.as_str();
    for args in [
        vec!["signoff", DEMO_PLAN, "--gate", "expand", "--role", "lead"],
        vec!["probe", DEMO_PLAN],
        vec!["advance", DEMO_PLAN],
    ] {
        let o = cutover(url, &args).await;
        assert_eq!(o.status.code(), Some(0), "{args:?}: {o:?}");
    }
    let before = fingerprint(&db).await;

    for args in [
        vec!["status", DEMO_PLAN],
        vec!["status", DEMO_PLAN, "--json"],
        vec!["audit", "verify"],
        vec!["audit", "tail", "-n", "5"],
        vec!["audit", "export", "--format", "jsonl"],
        vec!["runbook", DEMO_PLAN],
        vec!["backfill", "status", DEMO_PLAN],
        vec!["check", DEMO_PLAN, "--history"],
    ] {
        let o = cutover(url, &args).await;
        assert_eq!(o.status.code(), Some(0), "{args:?}: {o:?}");
    }

    // The TUI's worker in --read-only: it reads snapshots, runs no probe, and refuses actions.
    let plan = Plan::load(DEMO_PLAN).expect("plan");
    let mut w = worker::spawn(WorkerOptions {
        db: DbConfig::from_url(url).expect("config"),
        plan,
        read_only: true,
        env: worker::command::Env::default(),
    });
    let mut snapshots = 0;
    let mut refusals = Vec::new();
    w.commands.send(Command::RunChecks).expect("send");
    w.commands.send(Command::Advance).expect("send");
    let deadline = tokio::time::Instant::now() + Duration::from_secs(4);
    while let Ok(Some(ev)) = tokio::time::timeout_at(deadline, w.events.recv()).await {
        match ev {
            WorkerEvent::Snapshot(_) => snapshots += 1,
            WorkerEvent::Action { result, .. } => refusals.push(result),
            WorkerEvent::Conn(_) => {}
        }
    }
    drop(w.commands);
    let _ = tokio::time::timeout(Duration::from_secs(5), w.task).await;
    assert!(
        snapshots >= 2,
        "the viewer kept reading ({snapshots} snapshots)"
    );
    assert_eq!(refusals.len(), 2, "{refusals:?}");
    for r in &refusals {
        assert!(matches!(r, Err(ActionError::ReadOnly(_))), "{r:?}");
    }
    let checks = refusals[0].as_ref().unwrap_err().to_string();
    assert!(
        checks.contains("running checks stores their results"),
        "{checks}"
    );

    assert_eq!(before, fingerprint(&db).await, "a viewer changed something");
}
