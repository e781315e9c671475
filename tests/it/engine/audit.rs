//! The audit trail: an edited entry named, a follow that prints new entries, a cross-check
//! against the control state and kept heads; and re-runs that change nothing the second time.

use std::time::Duration;

use serde_json::Value;
use tokio_postgres::Client;

use super::demo_db;
use crate::common::catalog::Catalog;
use crate::common::plans::DEMO_PLAN;
use crate::common::{self, code, cutover, ok, signoff, text};

#[tokio::test]
async fn audit_verify_names_the_edited_entry() {
    let db = demo_db().await;
    let url = db.url.as_str();
    for n in 1..=4 {
        ok(&cutover(url, &["note", DEMO_PLAN, &format!("note number {n}")]).await);
    }
    let admin = db.client().await;
    let err = admin
        .batch_execute(
            "UPDATE cutover.audit_log SET details = '{\"text\": \"forged\"}' WHERE seq = 3",
        )
        .await
        .unwrap_err();
    assert!(
        err.to_string().contains("append-only") || common::describe(&err).contains("append-only"),
        "{}",
        common::describe(&err)
    );
    let o = cutover(url, &["audit", "verify"]).await;
    assert!(ok(&o).contains("intact: 5 entries"), "{}", text(&o));

    let o = cutover(url, &["audit", "export", "--format", "jsonl"]).await;
    ok(&o);
    let lines: Vec<Value> = String::from_utf8_lossy(&o.stdout)
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(lines.len(), 5);
    assert_eq!(lines[0]["action"], "plan.register");
    assert_eq!(lines[3]["details"]["text"], "note number 3");

    admin
        .batch_execute(
            "ALTER TABLE cutover.audit_log DISABLE TRIGGER audit_log_no_update_delete;
             UPDATE cutover.audit_log SET details = '{\"text\": \"forged\"}' WHERE seq = 3;
             ALTER TABLE cutover.audit_log ENABLE TRIGGER audit_log_no_update_delete;",
        )
        .await
        .unwrap();
    let o = cutover(url, &["audit", "verify"]).await;
    assert_eq!(code(&o), 2, "{}", text(&o));
    assert!(text(&o).contains("BROKEN at entry #3"), "{}", text(&o));
}

/// Everything a re-run could change: catalog, control tables, flags, audit length.
async fn snapshot(c: &Client) -> String {
    let control: String = c
        .query_one(
            "SELECT concat_ws(E'\\n',
               (SELECT string_agg(phase || '=' || state || '@' || coalesce(finished_at::text, ''), ',' ORDER BY phase) FROM cutover.phases),
               (SELECT string_agg(gate || '/' || role || '/' || login, ',' ORDER BY id) FROM cutover.signoffs),
               (SELECT string_agg(gate || ':' || reason, ',' ORDER BY id) FROM cutover.overrides),
               (SELECT string_agg(name || '=' || enabled || '@' || updated_at::text, ',' ORDER BY name) FROM cutover.flags),
               (SELECT count(*)::text FROM cutover.audit_log),
               (SELECT count(*)::text FROM cutover.phase_history))",
            &[],
        )
        .await
        .unwrap()
        .get(0);
    format!("{control}\n{}", Catalog(c).fingerprint().await)
}

#[tokio::test]
async fn rerunning_a_command_changes_nothing_the_second_time() {
    let db = demo_db().await;
    let url = db.url.as_str();
    let c = db.control_client().await;
    let p = DEMO_PLAN;
    let commands: Vec<Vec<&str>> = vec![
        vec!["status", p],
        vec!["signoff", p, "--gate", "expand", "--role", "lead"],
        vec![
            "override",
            p,
            "--gate",
            "expand",
            "--reason",
            "lint probe unavailable in this test",
        ],
        vec!["advance", p, "--phase", "expand"],
        vec![
            "override",
            p,
            "--gate",
            "dual_write",
            "--reason",
            "compatibility probe unavailable in this test",
        ],
        vec!["advance", p, "--phase", "dual_write"],
        vec!["rollback", p, "--phase", "dual_write", "--yes"],
        vec!["flag", "set", "some.other.flag", "on"],
        vec!["flag", "set", "accounts.read_balance_cents", "off"],
        vec!["note", p, "checked dashboards"],
        vec!["rollback", p, "--phase", "expand", "--yes"],
        vec!["audit", "verify"],
    ];
    for args in commands {
        let first = cutover(url, &args).await;
        ok(&first);
        let after_first = snapshot(&c).await;
        let second = cutover(url, &args).await;
        let out = ok(&second);
        assert_eq!(
            snapshot(&c).await,
            after_first,
            "second `{}` changed something:\n{out}",
            args.join(" ")
        );
    }
}

#[tokio::test]
async fn audit_tail_follow_prints_new_entries_as_they_are_appended() {
    let db = demo_db().await;
    let url = db.url.as_str();
    ok(&cutover(url, &["note", DEMO_PLAN, "before the tail"]).await);
    let mut child = tokio::process::Command::new(common::cutover_bin())
        .args(["audit", "tail", "-n", "1", "--follow"])
        .env("DATABASE_URL", url)
        .stdout(std::process::Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .unwrap();
    let stdout = child.stdout.take().unwrap();
    let mut lines = tokio::io::AsyncBufReadExt::lines(tokio::io::BufReader::new(stdout));
    let first = tokio::time::timeout(Duration::from_secs(10), lines.next_line())
        .await
        .unwrap()
        .unwrap()
        .unwrap();
    assert!(first.contains("before the tail"), "{first}");
    ok(&cutover(url, &["note", DEMO_PLAN, "while tailing"]).await);
    let next = tokio::time::timeout(Duration::from_secs(10), lines.next_line())
        .await
        .expect("the appended entry did not show up within 10 s")
        .unwrap()
        .unwrap();
    assert!(
        next.contains("while tailing") && next.contains(" note "),
        "{next}"
    );
    child.kill().await.unwrap();
}

#[tokio::test]
async fn audit_verify_cross_checks_the_control_state_and_kept_heads() {
    let db = demo_db().await;
    let url = db.url.as_str();
    ok(&signoff(url, DEMO_PLAN, "expand", "lead").await);
    cutover(url, &["probe", DEMO_PLAN]).await;
    ok(&cutover(url, &["advance", DEMO_PLAN]).await);
    let dir = tempfile::tempdir().unwrap();
    let heads = dir.path().join("heads.txt");
    let heads_arg = heads.to_string_lossy().into_owned();
    let out = ok(&cutover(url, &["audit", "verify", "--head-file", &heads_arg]).await);
    assert!(out.contains("control state cross-checked"), "{out}");
    let kept = std::fs::read_to_string(&heads).unwrap();
    assert_eq!(kept.lines().count(), 1, "the head is kept: {kept}");

    // Someone with table rights removes the newest entries behind the triggers' back: the rest
    // of the chain still links, but the kept head and the applied phase give it away.
    let client = db.client().await;
    client
        .batch_execute(
            "ALTER TABLE cutover.audit_log DISABLE TRIGGER USER;
             DELETE FROM cutover.audit_log WHERE seq > 1;
             ALTER TABLE cutover.audit_log ENABLE TRIGGER USER;",
        )
        .await
        .unwrap();
    let o = cutover(url, &["audit", "verify", "--head-file", &heads_arg]).await;
    assert_eq!(code(&o), 2, "{}", text(&o));
    let out = text(&o);
    assert!(out.contains("is not in the chain"), "{out}");
    assert!(
        out.contains("phase expand of accounts-balance-cents is applied but no audit entry"),
        "{out}"
    );
    assert!(
        out.contains("sign-off of accounts-balance-cents gate expand"),
        "{out}"
    );

    // Truncated entirely: "intact: 0 entries" is never the answer while phases are applied.
    client
        .batch_execute(
            "ALTER TABLE cutover.audit_log DISABLE TRIGGER USER;
             TRUNCATE cutover.audit_log;
             ALTER TABLE cutover.audit_log ENABLE TRIGGER USER;",
        )
        .await
        .unwrap();
    let o = cutover(url, &["audit", "verify"]).await;
    assert_eq!(code(&o), 2, "{}", text(&o));
    assert!(
        text(&o).contains("has no plan.register entry"),
        "{}",
        text(&o)
    );
}
