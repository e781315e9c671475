//! Only the roster acts: every state-changing command is authorized against the roster and
//! matrix anchored by the plan's first registered version; refusals exit 3 and are audited.

use std::path::Path;
use std::process::Output;

use crate::common::plans::{demo_held_by, demo_with, write, DEMO_PLAN};
use crate::common::{cutover, text, TestDb};

#[track_caller]
fn refused(o: &Output, needle: &str) {
    assert_eq!(o.status.code(), Some(3), "expected a refusal: {}", text(o));
    assert!(text(o).contains(needle), "{}", text(o));
}

#[track_caller]
fn ok(o: &Output) {
    assert_eq!(o.status.code(), Some(0), "expected success: {}", text(o));
}

async fn demo_db() -> TestDb {
    TestDb::demo(200, 10, 10).await
}

async fn count(db: &TestDb, sql: &str) -> i64 {
    db.client()
        .await
        .query_one(sql, &[])
        .await
        .expect("count query")
        .get(0)
}

/// The demo plan with every role held by `login` (same plan id), written to `dir`.
fn hijacked(dir: &Path, login: &str) -> String {
    write(dir, "hijacked.toml", &demo_held_by(login))
        .to_string_lossy()
        .into_owned()
}

#[tokio::test]
async fn outsiders_are_refused_every_change_and_the_refusal_is_audited() {
    let db = demo_db().await;
    // The lead (postgres) registers the plan: its roster is anchored.
    ok(&cutover(
        &db.url,
        &["signoff", DEMO_PLAN, "--gate", "expand", "--role", "lead"],
    )
    .await);
    let (mallory, as_mallory) = db.login("mallory").await;

    refused(
        &cutover(&as_mallory, &["advance", DEMO_PLAN]).await,
        "not in the roster",
    );
    refused(
        &cutover(&as_mallory, &["rollback", DEMO_PLAN, "--yes"]).await,
        "not in the roster",
    );
    refused(
        &cutover(
            &as_mallory,
            &["override", DEMO_PLAN, "--gate", "expand", "--reason", "x"],
        )
        .await,
        "not in the roster",
    );
    refused(
        &cutover(&as_mallory, &["note", DEMO_PLAN, "hello"]).await,
        "not in the roster",
    );
    refused(
        &cutover(&as_mallory, &["check", DEMO_PLAN]).await,
        "not in the roster",
    );
    refused(
        &cutover(&as_mallory, &["probe", DEMO_PLAN]).await,
        "not in the roster",
    );
    refused(
        &cutover(
            &as_mallory,
            &["flag", "set", "accounts.read_balance_cents", "on"],
        )
        .await,
        "not in the roster",
    );
    assert_eq!(
        count(
            &db,
            "SELECT count(*) FROM cutover.phases WHERE state <> 'pending'"
        )
        .await,
        0,
        "nothing was applied"
    );
    let audited = count(
        &db,
        &format!(
            "SELECT count(*) FROM cutover.audit_log WHERE action = 'authz.refused' AND login = '{mallory}'"
        ),
    )
    .await;
    assert!(audited >= 7, "every refusal is audited, saw {audited}");

    // A copy of the plan with the same id and the outsider in every role changes nothing.
    let dir = tempfile::tempdir().expect("tempdir");
    let copy = hijacked(dir.path(), &mallory);
    refused(&cutover(&as_mallory, &["advance", &copy]).await, "approve");
    refused(
        &cutover(
            &as_mallory,
            &["signoff", &copy, "--gate", "expand", "--role", "lead"],
        )
        .await,
        "approve",
    );
    refused(
        &cutover(&as_mallory, &["approve", &copy]).await,
        "not in the roster",
    );
    assert_eq!(
        count(
            &db,
            &format!("SELECT count(*) FROM cutover.signoffs WHERE login = '{mallory}'")
        )
        .await,
        0
    );

    // A lead of the anchored version approves the new roster (audited); then it governs.
    ok(&cutover(&db.url, &["approve", &copy]).await);
    assert_eq!(
        count(
            &db,
            "SELECT count(*) FROM cutover.audit_log WHERE action = 'plan.approve'"
        )
        .await,
        1
    );
    ok(&cutover(
        &as_mallory,
        &["signoff", &copy, "--gate", "expand", "--role", "lead"],
    )
    .await);
    // … and the old file, whose roster is no longer anchored, is refused now.
    refused(&cutover(&db.url, &["advance", DEMO_PLAN]).await, "approve");
}

#[tokio::test]
async fn the_matrix_decides_per_action_and_the_plan_can_change_it() {
    let db = demo_db().await;
    ok(&cutover(&db.url, &["bootstrap"]).await);
    let (sam, as_sam) = db.login("sam").await;
    let dir = tempfile::tempdir().expect("tempdir");
    let sre = format!("sre = [\"{sam}\"]");
    let source = demo_with(&[("sre = [\"postgres\"]", &sre)]);
    let plan = write(
        dir.path(),
        "plan.toml",
        &format!("{source}\n[authorization]\nnote = [\"lead\"]\n"),
    );
    let plan = plan.to_string_lossy().into_owned();
    ok(&cutover(
        &db.url,
        &["signoff", &plan, "--gate", "expand", "--role", "lead"],
    )
    .await);
    // An sre may not advance (lead only) …
    refused(
        &cutover(&as_sam, &["advance", &plan]).await,
        "`advance` needs lead",
    );
    // … and the plan restricted notes to leads.
    refused(
        &cutover(&as_sam, &["note", &plan, "hi"]).await,
        "`note` needs lead",
    );
    // The lead advances; the sre may roll back (sam owns the table, as a real sre's team would).
    db.exec(&format!("ALTER TABLE public.accounts OWNER TO {sam}"))
        .await;
    ok(&cutover(&db.url, &["probe", &plan]).await);
    ok(&cutover(&db.url, &["advance", &plan]).await);
    ok(&cutover(&as_sam, &["rollback", &plan, "--yes"]).await);
    assert_eq!(
        count(
            &db,
            "SELECT count(*) FROM cutover.phases WHERE phase = 'expand' AND state = 'rolled_back'"
        )
        .await,
        1
    );
}

#[tokio::test]
async fn a_probe_lacking_a_privilege_is_inconclusive_and_names_the_grant() {
    let db = demo_db().await;
    ok(&cutover(&db.url, &["bootstrap"]).await);
    let (dora, as_dora) = db.login("dora").await;
    let dir = tempfile::tempdir().expect("tempdir");
    let plan = hijacked(dir.path(), &dora);
    let o = cutover(
        &as_dora,
        &[
            "probe",
            &plan,
            "--gate",
            "contract",
            "--probe",
            "hidden_readers",
            "--json",
        ],
    )
    .await;
    let out = String::from_utf8_lossy(&o.stdout).into_owned();
    let results: serde_json::Value =
        serde_json::from_str(&out).unwrap_or_else(|e| panic!("{e}: {}", text(&o)));
    let r = &results[0];
    assert_eq!(r["outcome"], "inconclusive", "{r}");
    let summary = r["summary"].as_str().unwrap_or_default();
    assert!(
        summary.contains(&format!("GRANT pg_read_all_stats TO \"{dora}\"")),
        "{summary}"
    );
}
