//! Only the roster acts: every state-changing command is authorized against the roster and
//! matrix anchored by the plan's first registered version; refusals exit 3 and are audited.

use std::path::Path;
use std::process::Output;

use crate::common::{self, TestDb};

const DEMO_PLAN: &str = "plans/accounts-balance-cents.toml";

async fn cutover(url: &str, args: &[&str]) -> Output {
    tokio::process::Command::new(common::cutover_bin())
        .args(args)
        .env("DATABASE_URL", url)
        .env("CUTOVER_LOG", "warn")
        .output()
        .await
        .expect("the binary runs")
}

fn text(o: &Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    )
}

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
    let db = TestDb::new().await;
    let schema = std::fs::read_to_string("assets/demo/schema.sql").expect("demo schema");
    db.exec(&schema).await;
    db.exec("SELECT cutover_demo_seed(200, 10, 10)").await;
    db
}

async fn count(db: &TestDb, sql: &str) -> i64 {
    db.client()
        .await
        .query_one(sql, &[])
        .await
        .expect("count query")
        .get(0)
}

/// The demo plan with every role held by `login` (same plan id).
fn hijacked(dir: &Path, login: &str) -> String {
    let source = std::fs::read_to_string(DEMO_PLAN).expect("demo plan");
    let start = source.find("[roster]").expect("a roster");
    let end = source[start..]
        .find("\n\n")
        .map(|i| start + i)
        .expect("roster end");
    let roster = format!(
        "[roster]\nlead = [\"{login}\"]\napp_owner = [\"{login}\"]\ndata_owner = [\"{login}\"]\nsre = [\"{login}\"]"
    );
    let path = dir.join("hijacked.toml");
    std::fs::write(
        &path,
        format!("{}{roster}{}", &source[..start], &source[end..]),
    )
    .expect("write plan");
    path.to_string_lossy().into_owned()
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
    let source = std::fs::read_to_string(DEMO_PLAN)
        .expect("demo plan")
        .replace("sre = [\"postgres\"]", &format!("sre = [\"{sam}\"]"));
    let plan = dir.path().join("plan.toml");
    std::fs::write(
        &plan,
        format!("{source}\n[authorization]\nnote = [\"lead\"]\n"),
    )
    .expect("write");
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
