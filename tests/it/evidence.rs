//! Readiness evidence: lint, compatibility, hidden-reader census, backfill completion, error
//! budget, privilege parity, metrics and runbook — against a real PostgreSQL.

use std::process::Command;

use cutover::db::{self, schema, DbConfig, SessionSettings};
use cutover::evidence::{self, ProbeContext, ProbeResult};
use cutover::plan::{Phase, Plan, ProbeKind};
use cutover::Outcome;
use tokio_postgres::Client;

use crate::common::{cutover_bin, TestDb};

const DEMO_PLAN: &str = "plans/accounts-balance-cents.toml";

fn demo_source() -> String {
    std::fs::read_to_string(DEMO_PLAN).unwrap()
}

fn demo_plan() -> Plan {
    Plan::parse(DEMO_PLAN, &demo_source()).unwrap()
}

/// The demo plan with its expand SQL replaced (and optional TOML appended).
fn plan_with_expand(expand: &str, extra: &str) -> Plan {
    let src = demo_source().replace(
        "apply = \"ALTER TABLE public.accounts ADD COLUMN balance_cents bigint;\"",
        &format!("apply = \"\"\"\n{expand}\n\"\"\""),
    );
    assert!(src.contains(expand));
    Plan::parse("expand.toml", &format!("{src}\n{extra}")).unwrap()
}

/// A demo database with the control schema, and a bootstrapped client.
async fn demo_db() -> (TestDb, Client) {
    let db = TestDb::new().await;
    db.exec(include_str!("../../assets/demo/schema.sql")).await;
    db.exec("SELECT cutover_demo_seed(200, 20, 20)").await;
    let cfg = DbConfig::from_url(&db.url).unwrap();
    let mut client = db::connect(&cfg, &SessionSettings::new("test"))
        .await
        .unwrap();
    schema::bootstrap(&mut client).await.unwrap();
    (db, client)
}

async fn run(client: &Client, plan: &Plan, kind: ProbeKind, gate: Phase) -> ProbeResult {
    let ctx = ProbeContext { client, plan, gate };
    evidence::probe(kind).evaluate(&ctx).await
}

fn text(r: &ProbeResult) -> String {
    format!("{}: {}\n{}", r.outcome, r.summary, r.evidence.join("\n"))
}

#[tokio::test]
async fn lint_flags_breaking_expand_passes_additive_and_audits_acknowledgements() {
    let (_db, client) = demo_db().await;
    let bad = plan_with_expand(
        "ALTER TABLE public.accounts DROP COLUMN updated_at;\nCREATE INDEX accounts_owner ON public.accounts (owner);",
        "",
    );
    let r = run(&client, &bad, ProbeKind::Lint, Phase::Expand).await;
    assert_eq!(r.outcome, Outcome::Fail, "{}", text(&r));
    let t = text(&r);
    assert!(
        t.contains("[ban-drop-column]") && t.contains("BLOCKS"),
        "{t}"
    );
    assert!(t.contains("[require-concurrent-index-creation]"), "{t}");
    // Live-catalog facts: lock level and the table's size and row estimate.
    assert!(
        t.contains("takes SHARE (blocks writes") && t.contains("~200 rows"),
        "{t}"
    );

    let additive = demo_plan();
    let r = run(&client, &additive, ProbeKind::Lint, Phase::Expand).await;
    assert_eq!(r.outcome, Outcome::Pass, "{}", text(&r));
    assert!(
        text(&r).contains("acknowledged by the runner"),
        "timeouts are the runner's: {}",
        text(&r)
    );

    let acked = plan_with_expand(
        "ALTER TABLE public.accounts DROP COLUMN updated_at;",
        "[[probes.lint.acknowledge]]\nrule = \"ban-drop-column\"\nphase = \"expand\"\nreason = \"updated_at has had no reader since app v41\"\n",
    );
    for _ in 0..2 {
        let r = run(&client, &acked, ProbeKind::Lint, Phase::Expand).await;
        assert_eq!(r.outcome, Outcome::Pass, "{}", text(&r));
    }
    let rows = client
        .query(
            "SELECT details::text FROM cutover.audit_log
              WHERE action = 'lint.acknowledged' AND plan_sha256 = $1",
            &[&acked.sha256()],
        )
        .await
        .unwrap();
    assert_eq!(rows.len(), 1, "audited once per plan version and gate");
    let details: String = rows[0].get(0);
    assert!(
        details.contains("ban-drop-column") && details.contains("no reader since app v41"),
        "{details}"
    );
    let recorded: i64 = client
        .query_one(
            "SELECT count(*) FROM cutover.probe_results WHERE probe = 'lint'",
            &[],
        )
        .await
        .unwrap()
        .get(0);
    assert_eq!(recorded, 4, "every evaluation is recorded");
}

#[tokio::test]
async fn validate_prints_located_lint_findings() {
    let plan = plan_with_expand(
        "ALTER TABLE public.accounts ADD COLUMN balance_cents bigint;\nALTER TABLE public.accounts DROP COLUMN updated_at;",
        "",
    );
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("drop.toml");
    std::fs::write(&path, &plan.source).unwrap();
    let line = plan
        .source
        .lines()
        .position(|l| l.contains("DROP COLUMN updated_at"))
        .unwrap()
        + 1;
    let out = Command::new(cutover_bin())
        .args(["validate", "--offline", path.to_str().unwrap()])
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{stderr}");
    assert!(
        stderr.contains(&format!("drop.toml:{line}:29: [ban-drop-column]")),
        "{stderr}"
    );
    let ok = Command::new(cutover_bin())
        .args(["validate", "--offline"])
        .args(
            std::fs::read_dir("plans")
                .unwrap()
                .map(|e| e.unwrap().path()),
        )
        .output()
        .unwrap();
    assert_eq!(
        ok.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&ok.stderr)
    );
}

async fn data_fingerprint(client: &Client) -> String {
    client
        .query_one(
            "SELECT count(*)::text || '/' || sum(balance)::text || '/' || max(updated_at)::text
               FROM public.accounts",
            &[],
        )
        .await
        .unwrap()
        .get(0)
}

#[tokio::test]
async fn compatibility_fails_on_a_rename_and_leaves_no_trace() {
    let (db, client) = demo_db().await;
    let plan = demo_plan();
    db.exec(&plan.phase(Phase::Expand).apply).await;
    let before = data_fingerprint(&client).await;
    let r = run(&client, &plan, ProbeKind::Compatibility, Phase::DualWrite).await;
    assert_eq!(r.outcome, Outcome::Pass, "{}", text(&r));
    assert_eq!(
        data_fingerprint(&client).await,
        before,
        "no trace in the data"
    );
    let leaked: i64 = client
        .query_one(
            "SELECT count(*) FROM pg_prepared_statements WHERE name LIKE 'cutover%'",
            &[],
        )
        .await
        .unwrap()
        .get(0);
    assert_eq!(leaked, 0);

    // Inside the caller's own transaction: the probe works in a savepoint and leaves it usable.
    client.batch_execute("BEGIN").await.unwrap();
    client
        .batch_execute("CREATE TABLE public.caller_work (x int)")
        .await
        .unwrap();
    let r = run(&client, &plan, ProbeKind::Compatibility, Phase::DualWrite).await;
    assert_eq!(r.outcome, Outcome::Pass, "{}", text(&r));
    client.batch_execute("COMMIT").await.unwrap();
    assert!(client
        .query_one("SELECT to_regclass('public.caller_work') IS NOT NULL", &[])
        .await
        .unwrap()
        .get::<_, bool>(0));

    db.exec("ALTER TABLE public.accounts RENAME COLUMN balance TO balance_dollars")
        .await;
    let r = run(&client, &plan, ProbeKind::Compatibility, Phase::DualWrite).await;
    assert_eq!(r.outcome, Outcome::Fail, "{}", text(&r));
    assert!(
        r.summary.contains("read a balance") && r.summary.contains("credit an account"),
        "{}",
        text(&r)
    );
    assert!(
        text(&r).contains("column \"balance\" does not exist"),
        "{}",
        text(&r)
    );
}

#[tokio::test]
async fn census_names_view_function_and_index_then_passes() {
    let (db, client) = demo_db().await;
    let plan = demo_plan();
    db.exec(&plan.phase(Phase::Expand).apply).await;
    db.exec(&plan.phase(Phase::DualWrite).apply).await;
    db.exec(
        "CREATE VIEW public.rich_accounts AS SELECT id, owner FROM public.accounts WHERE balance > 1000;
         CREATE FUNCTION public.total_balance() RETURNS numeric LANGUAGE sql
             AS $$ SELECT sum(balance) FROM public.accounts $$;
         CREATE INDEX accounts_balance_idx ON public.accounts (balance);",
    )
    .await;
    // The engine takes this baseline just before the read switch.
    evidence::before_phase(&client, &plan, Phase::ReadSwitch)
        .await
        .unwrap();
    let r = run(&client, &plan, ProbeKind::HiddenReaders, Phase::Contract).await;
    let t = text(&r);
    assert_eq!(r.outcome, Outcome::Fail, "{t}");
    for name in [
        "view public.rich_accounts",
        "function total_balance()",
        "index accounts_balance_idx",
        // The demo's seed function writes the legacy column: a genuine hidden dependency.
        "function cutover_demo_seed(",
    ] {
        assert!(
            t.contains(&format!("BLOCKER {name}")),
            "{name} missing:\n{t}"
        );
    }
    assert!(
        t.contains("ignored: trigger accounts_balance_cents_sync")
            && t.contains("ignored: function accounts_balance_cents_sync()"),
        "the plan's own sync trigger and function are not readers:\n{t}"
    );

    db.exec(
        "DROP VIEW public.rich_accounts; DROP FUNCTION public.total_balance();
         DROP INDEX public.accounts_balance_idx;
         DROP FUNCTION public.cutover_demo_seed(integer, integer, integer);",
    )
    .await;
    let r = run(&client, &plan, ProbeKind::HiddenReaders, Phase::Contract).await;
    assert_eq!(r.outcome, Outcome::Pass, "{}", text(&r));

    // An app query reading the legacy column after the switch.
    db.exec("SELECT sum(balance) FROM public.accounts WHERE id > 0")
        .await;
    let r = run(&client, &plan, ProbeKind::HiddenReaders, Phase::Contract).await;
    if has_pg_stat_statements(&client).await {
        assert_eq!(r.outcome, Outcome::Fail, "{}", text(&r));
        assert!(
            r.summary
                .contains("SELECT sum(balance) FROM public.accounts"),
            "{}",
            text(&r)
        );
    } else {
        assert!(text(&r).contains("query log not measured"), "{}", text(&r));
    }
}

async fn has_pg_stat_statements(client: &Client) -> bool {
    client
        .query("SELECT 1 FROM pg_stat_statements LIMIT 1", &[])
        .await
        .is_ok()
}

#[tokio::test]
async fn backfill_complete_needs_done_state_and_zero_pending() {
    let (db, client) = demo_db().await;
    let plan = demo_plan();
    db.exec(&plan.phase(Phase::Expand).apply).await;
    let r = run(
        &client,
        &plan,
        ProbeKind::BackfillComplete,
        Phase::ReadSwitch,
    )
    .await;
    assert_eq!(r.outcome, Outcome::Fail, "{}", text(&r));
    assert!(text(&r).contains("never started"), "{}", text(&r));

    client
        .execute(
            "INSERT INTO cutover.backfill (plan_id, state, target_chunk_ms, rows_done)
             VALUES ($1, 'done', 300, 200)",
            &[&plan.id()],
        )
        .await
        .unwrap();
    let r = run(
        &client,
        &plan,
        ProbeKind::BackfillComplete,
        Phase::ReadSwitch,
    )
    .await;
    assert_eq!(
        r.outcome,
        Outcome::Fail,
        "done but rows pending: {}",
        text(&r)
    );
    assert!(text(&r).contains(": 200"), "{}", text(&r));

    db.exec("UPDATE public.accounts SET balance_cents = round(balance * 100)::bigint")
        .await;
    let r = run(
        &client,
        &plan,
        ProbeKind::BackfillComplete,
        Phase::ReadSwitch,
    )
    .await;
    assert_eq!(r.outcome, Outcome::Pass, "{}", text(&r));
}
