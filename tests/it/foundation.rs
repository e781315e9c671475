//! Foundation: control-schema bootstrap, live-catalog validation, connection hygiene.

use std::process::Command;

use cutover::control::schema;
use cutover::db::{self, DbConfig, SessionSettings};

use crate::common::plans::demo_variant;
use crate::common::{cutover_bin, TestDb};

async fn demo_db() -> TestDb {
    TestDb::demo(200, 50, 100).await
}

#[tokio::test]
async fn bootstrap_is_idempotent() {
    let db = TestDb::new().await;
    let cfg = DbConfig::from_url(&db.url).unwrap();
    let mut client = db::connect(&cfg, &SessionSettings::new("test"))
        .await
        .unwrap();
    let first = schema::bootstrap(&mut client).await.unwrap();
    assert_eq!(first.len(), schema::MIGRATIONS.len());
    let second = schema::bootstrap(&mut client).await.unwrap();
    assert!(second.is_empty(), "second bootstrap applied {second:?}");
    let n: i64 = client
        .query_one("SELECT count(*) FROM cutover.schema_version", &[])
        .await
        .unwrap()
        .get(0);
    assert_eq!(n as usize, schema::MIGRATIONS.len());
}

/// Upgrading a schema from before pacing had its own state: rows the guard was pacing move to
/// `pacing`; holds (a health signal, the guard re-measuring) stay `throttled`.
#[tokio::test]
async fn the_pacing_migration_moves_only_paced_rows() {
    let db = TestDb::new().await;
    let cfg = DbConfig::from_url(&db.url).unwrap();
    let mut client = db::connect(&cfg, &SessionSettings::new("test"))
        .await
        .unwrap();
    client
        .batch_execute(
            "CREATE SCHEMA cutover;
             CREATE TABLE cutover.schema_version (version integer PRIMARY KEY, name text NOT NULL,
                 applied_at timestamptz NOT NULL DEFAULT clock_timestamp());",
        )
        .await
        .unwrap();
    for m in schema::MIGRATIONS.iter().filter(|m| m.version < 94) {
        client.batch_execute(m.sql).await.unwrap();
        client
            .execute(
                "INSERT INTO cutover.schema_version (version, name) VALUES ($1, $2)",
                &[&m.version, &m.name],
            )
            .await
            .unwrap();
    }
    client
        .batch_execute(
            "INSERT INTO cutover.backfill (plan_id, state, reason, target_chunk_ms) VALUES
               ('paced', 'throttled', 'yielding: app latency 0.79× baseline (limit 1.25×, probe); \
                easing off, pausing 0.3× each chunk''s time', 300),
               ('remeasuring', 'throttled',
                'yielding: re-measuring the application''s latency without the backfill', 300),
               ('held', 'throttled', 'replica lag 9s > 5s', 300),
               ('running', 'running', '', 300);",
        )
        .await
        .unwrap();
    assert_eq!(schema::bootstrap(&mut client).await.unwrap(), [94]);
    let rows = client
        .query(
            "SELECT plan_id, state FROM cutover.backfill ORDER BY plan_id",
            &[],
        )
        .await
        .unwrap();
    let got: Vec<(String, String)> = rows
        .iter()
        .map(|r| (r.get("plan_id"), r.get("state")))
        .collect();
    let want = [
        ("held", "throttled"),
        ("paced", "pacing"),
        ("remeasuring", "throttled"),
        ("running", "running"),
    ];
    assert_eq!(
        got,
        want.map(|(p, s)| (p.to_string(), s.to_string())).to_vec()
    );
    // The new state is admitted; an unknown one still is not.
    let bad = client
        .execute(
            "UPDATE cutover.backfill SET state = 'sleeping' WHERE plan_id = 'held'",
            &[],
        )
        .await;
    assert!(bad.is_err());
}

#[tokio::test]
async fn concurrent_bootstraps_are_safe() {
    let db = TestDb::new().await;
    let cfg = DbConfig::from_url(&db.url).unwrap();
    let mut tasks = Vec::new();
    for i in 0..8 {
        let cfg = cfg.clone();
        tasks.push(tokio::spawn(async move {
            let mut c = db::connect(&cfg, &SessionSettings::new(&format!("race{i}")))
                .await
                .unwrap();
            schema::bootstrap(&mut c).await.unwrap()
        }));
    }
    let mut applied = Vec::new();
    for t in tasks {
        applied.extend(t.await.unwrap());
    }
    applied.sort();
    let expected: Vec<i32> = schema::MIGRATIONS.iter().map(|m| m.version).collect();
    assert_eq!(applied, expected, "every migration applied exactly once");
}

#[tokio::test]
async fn audit_log_rejects_update_delete_and_truncate() {
    let db = TestDb::new().await;
    let cfg = DbConfig::from_url(&db.url).unwrap();
    let mut client = db::connect(&cfg, &SessionSettings::new("test"))
        .await
        .unwrap();
    schema::bootstrap(&mut client).await.unwrap();
    let actor = cutover::control::audit::Actor::current(&client)
        .await
        .unwrap();
    for i in 0..3 {
        cutover::control::audit::append(
            &client,
            cutover::control::audit::NewEntry {
                actor: &actor,
                plan_id: "p",
                plan_sha256: "sha",
                action: cutover::control::audit::AuditAction::Note,
                phase: None,
                details: serde_json::json!({ "i": i, "text": "héllo" }),
            },
        )
        .await
        .unwrap();
    }
    for sql in [
        "UPDATE cutover.audit_log SET action = 'x'",
        "DELETE FROM cutover.audit_log",
        "TRUNCATE cutover.audit_log",
    ] {
        let err = client.batch_execute(sql).await.expect_err(sql);
        assert!(
            db::describe_error(&err).contains("append-only"),
            "{sql}: {err}"
        );
    }
    assert!(matches!(
        cutover::control::audit::verify(&client).await.unwrap(),
        cutover::control::audit::Verification::Intact { entries: 3, .. }
    ));
}

#[tokio::test]
async fn validate_checks_the_live_catalog() {
    let db = demo_db().await;
    let ok = Command::new(cutover_bin())
        .args([
            "validate",
            "plans/accounts-balance-cents.toml",
            "plans/orders-rekey-uuid.toml",
        ])
        .env("DATABASE_URL", &db.url)
        .output()
        .unwrap();
    assert_eq!(
        ok.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&ok.stderr)
    );
    assert!(String::from_utf8_lossy(&ok.stdout).contains("catalog checked"));

    let dir = tempfile::tempdir().unwrap();
    let path = demo_variant(
        dir.path(),
        "broken.toml",
        &[
            (
                "table = \"public.accounts\"\nkey = [\"id\"]",
                "table = \"public.accounts\"\nkey = [\"owner\"]",
            ),
            (
                "pending = \"balance_cents IS NULL\"",
                "pending = \"balance_centz IS NULL\"",
            ),
        ],
    );
    let out = Command::new(cutover_bin())
        .args(["validate", path.to_str().unwrap()])
        .env("DATABASE_URL", &db.url)
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{stderr}");
    assert!(stderr.contains("is not unique and NOT NULL"), "{stderr}");
    assert!(stderr.contains("`pending` does not compile"), "{stderr}");
    assert!(stderr.contains("broken.toml:"), "{stderr}");
}

#[test]
fn unreachable_database_is_a_clear_error_without_the_password() {
    let out = Command::new(cutover_bin())
        .args([
            "bootstrap",
            "--database-url",
            "postgres://bob:hunter2@127.0.0.1:1/app",
        ])
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1));
    assert!(
        stderr.contains("cannot connect to postgres://bob:***@127.0.0.1:1/app"),
        "{stderr}"
    );
    assert!(!stderr.contains("hunter2"), "{stderr}");
}

#[tokio::test]
async fn connections_announce_themselves_and_carry_a_statement_timeout() {
    let db = TestDb::new().await;
    let cfg = DbConfig::from_url(&db.url).unwrap();
    let client = db::connect(&cfg, &SessionSettings::new("probe"))
        .await
        .unwrap();
    let row = client
        .query_one(
            "SELECT current_setting('application_name'), current_setting('statement_timeout')",
            &[],
        )
        .await
        .unwrap();
    assert_eq!(row.get::<_, String>(0), "cutover/probe");
    assert_eq!(row.get::<_, String>(1), "30s");
}
