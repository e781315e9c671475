//! Read-only is read-only.
//!
//! * Viewers: viewer commands and a `--read-only` TUI worker write nothing — no control row, no
//!   probe result, no sequence step — and refuse every action with the reason.
//! * Plan SQL meant only to read — golden queries, invariants, check expressions, the custom
//!   throttle query, probe queries — runs read-only and rolled back, so a function it calls
//!   cannot insert, step a sequence, create a table or keep an advisory lock. Each such query is
//!   refused with the reason; the database is unchanged.

use std::time::Duration;

use cutover::backfill::throttle::{Evaluator, Verdict};
use cutover::checks::{self, Cancel, CheckRecord};
use cutover::db::DbConfig;
use cutover::evidence::{self, ProbeContext};
use cutover::plan::{Phase, Plan, ProbeKind};
use cutover::read_only::{ReadOnly, ReadOnlyErrorKind};
use cutover::worker::{self, ActionError, Command, WorkerEvent, WorkerOptions};
use cutover::Outcome;
use tokio_postgres::Client;

use crate::common::catalog::data_fingerprint;
use crate::common::plans::{demo_plan, PlanToml, DEMO_PLAN};
use crate::common::{cutover, text, TestDb};

// ---- Viewers ----

/// Every row of every `cutover` and `public` table, and every sequence's position.
async fn fingerprint(db: &TestDb) -> Vec<(String, String)> {
    data_fingerprint(&db.client().await, &["cutover", "public"]).await
}

#[tokio::test]
async fn viewers_and_a_read_only_worker_change_nothing() {
    let db = TestDb::demo(200, 10, 10).await;
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
    let plan = demo_plan();
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

// ---- Plan SQL ----

/// The table the backfill and checks read, the canaries, and functions that write to them.
const SCHEMA: &str = r#"
CREATE TABLE public.acc (id int PRIMARY KEY, a int, b int);
INSERT INTO public.acc SELECT g, g, g FROM generate_series(1, 50) g;
CREATE TABLE public.canary (n int);
CREATE SEQUENCE public.canary_seq;
SELECT nextval('public.canary_seq');
CREATE FUNCTION public.canary_insert() RETURNS int LANGUAGE plpgsql AS
  $$ BEGIN INSERT INTO public.canary VALUES (1); RETURN 0; END $$;
CREATE FUNCTION public.canary_nextval() RETURNS bigint LANGUAGE plpgsql AS
  $$ BEGIN RETURN nextval('public.canary_seq') * 0; END $$;
CREATE FUNCTION public.canary_create() RETURNS int LANGUAGE plpgsql AS
  $$ BEGIN CREATE TABLE public.canary_made (x int); RETURN 0; END $$;
CREATE FUNCTION public.canary_lock() RETURNS int LANGUAGE plpgsql AS
  $$ BEGIN PERFORM pg_advisory_lock(4242); RETURN 0; END $$;
CREATE FUNCTION public.canary_immutable() RETURNS bigint LANGUAGE plpgsql IMMUTABLE AS
  $$ BEGIN RETURN nextval('public.canary_seq') * 0; END $$;
CREATE FUNCTION public.canary_temp() RETURNS int LANGUAGE plpgsql AS
  $$ BEGIN INSERT INTO pg_temp.scratch VALUES (1); RETURN 0; END $$;
"#;

/// The plan whose SQL the checks, probes and backfill run: `set` is the backfill's assignments.
fn plan_toml(set: &str) -> PlanToml {
    PlanToml::new("ro-sql").with(&format!(
        "[backfill]\ntable = \"public.acc\"\nkey = [\"id\"]\nset = {{ {set} }}\npending = \"public.canary_insert() = 0\"\n"
    ))
}

/// Checks whose SQL writes (through a function), and two that only read.
const CHECKS: &str = r#"
[backfill.throttle]
custom_query = "SELECT public.canary_insert()"
custom_limit = 1
[probes.error_budget]
metric_query = "SELECT public.canary_nextval()"
metric_max = 1

[[checks]]
name = "golden-ok"
kind = "golden_query"
query = "SELECT id, a FROM public.acc"
[[checks]]
name = "invariant-ok"
kind = "invariant"
sql = "SELECT count(*) FROM public.acc WHERE a <> b"
[[checks]]
name = "golden-insert"
kind = "golden_query"
query = "SELECT id, public.canary_insert() FROM public.acc"
[[checks]]
name = "invariant-nextval"
kind = "invariant"
sql = "SELECT public.canary_nextval()"
[[checks]]
name = "invariant-create"
kind = "invariant"
sql = "SELECT public.canary_create()"
[[checks]]
name = "parity-filter"
kind = "expression_parity"
table = "public.acc"
key = ["id"]
column = "a"
expression = "b"
filter = "public.canary_insert() = 0"
[[checks]]
name = "count-partition"
kind = "row_count_parity"
source = "public.acc"
target = "public.acc"
partition_by = "public.canary_nextval()"
[[checks]]
name = "diff-columns"
kind = "full_diff"
source = "public.acc"
target = "public.acc"
key = ["id"]
columns = ["a + public.canary_insert()"]
[[checks]]
name = "drift-new"
kind = "null_drift"
table = "public.acc"
old = "a"
new = "b + public.canary_create()"
"#;

/// The checks that must be refused, and what their summary must say.
const REFUSED: &[(&str, &str)] = &[
    (
        "golden-insert",
        "check `golden-insert` query: cannot execute INSERT in a read-only transaction",
    ),
    (
        "invariant-nextval",
        "check `invariant-nextval` sql: cannot execute nextval() in a read-only transaction",
    ),
    (
        "invariant-create",
        "check `invariant-create` sql: cannot execute CREATE TABLE in a read-only transaction",
    ),
    (
        "parity-filter",
        "cannot execute INSERT in a read-only transaction",
    ),
    (
        "count-partition",
        "cannot execute nextval() in a read-only transaction",
    ),
    (
        "diff-columns",
        "cannot execute INSERT in a read-only transaction",
    ),
    (
        "drift-new",
        "cannot execute CREATE TABLE in a read-only transaction",
    ),
];

fn plan(extra: &str) -> Plan {
    plan_toml("a = \"b\"").with(extra).plan()
}

async fn setup() -> (TestDb, Client) {
    let db = TestDb::new().await;
    db.exec(SCHEMA).await;
    let client = db.control_client().await;
    (db, client)
}

/// What a write would change: the canary's rows, the sequence's position, whether the made
/// table exists, and the advisory locks any session holds.
#[derive(Debug, PartialEq)]
struct Canaries {
    rows: i64,
    last_value: i64,
    made_table: bool,
    advisory_locks: i64,
}

async fn canaries(db: &TestDb) -> Canaries {
    let c = db.client().await;
    let r = c
        .query_one(
            "SELECT (SELECT count(*) FROM public.canary),
                    (SELECT last_value FROM public.canary_seq),
                    to_regclass('public.canary_made') IS NOT NULL,
                    (SELECT count(*) FROM pg_locks WHERE locktype = 'advisory'
                        AND database = (SELECT oid FROM pg_database WHERE datname = current_database()))",
            &[],
        )
        .await
        .unwrap();
    Canaries {
        rows: r.get(0),
        last_value: r.get(1),
        made_table: r.get(2),
        advisory_locks: r.get(3),
    }
}

fn untouched() -> Canaries {
    Canaries {
        rows: 0,
        last_value: 1,
        made_table: false,
        advisory_locks: 0,
    }
}

fn by_name<'a>(records: &'a [CheckRecord], name: &str) -> &'a CheckRecord {
    records
        .iter()
        .find(|r| r.name == name)
        .unwrap_or_else(|| panic!("no record for `{name}`"))
}

#[tokio::test]
async fn cutover_check_refuses_every_check_whose_sql_writes_and_changes_nothing() {
    let (db, _client) = setup().await;
    let dir = tempfile::tempdir().unwrap();
    let path = plan_toml("a = \"b\"").with(CHECKS).write(dir.path());
    let p = path.to_str().unwrap();

    // Baselines: the reading golden query's is taken, the writing one's is refused.
    let o = cutover(&db.url, &["check", p, "--baseline"]).await;
    assert_ne!(o.status.code(), Some(0), "{}", text(&o));
    assert!(
        text(&o).contains(
            "check `golden-insert` query: cannot execute INSERT in a read-only transaction"
        ) && text(&o).contains("25006"),
        "{}",
        text(&o)
    );
    assert_eq!(canaries(&db).await, untouched());

    let o = cutover(&db.url, &["check", p, "--json"]).await;
    assert_eq!(o.status.code(), Some(2), "{}", text(&o));
    let records: Vec<CheckRecord> = serde_json::from_slice(&o.stdout).unwrap();
    for name in ["golden-ok", "invariant-ok"] {
        let r = by_name(&records, name);
        assert_eq!(r.outcome, Outcome::Pass, "{name}: {}", r.summary);
    }
    for (name, reason) in REFUSED {
        let r = by_name(&records, name);
        assert_eq!(r.outcome, Outcome::Inconclusive, "{name}: {}", r.summary);
        assert!(
            r.summary.contains(reason) && r.summary.contains("SQLSTATE 25006"),
            "{name}: {}",
            r.summary
        );
    }
    assert_eq!(canaries(&db).await, untouched());
}

#[tokio::test]
async fn a_lock_taken_by_a_check_is_released_and_the_sessions_own_locks_kept() {
    let (db, client) = setup().await;
    let plan = plan(
        r#"
[[checks]]
name = "golden-lock"
kind = "golden_query"
query = "SELECT public.canary_lock()"
[[checks]]
name = "invariant-lock"
kind = "invariant"
sql = "SELECT public.canary_lock() + public.canary_lock()"
"#,
    );
    // The session already holds a lock of its own (as the engine holds its plan lock).
    client
        .execute("SELECT pg_advisory_lock(7)", &[])
        .await
        .unwrap();
    let records = checks::run(&client, &plan, None, &Cancel::new())
        .await
        .unwrap();
    for r in &records {
        assert_eq!(
            r.outcome,
            Outcome::Inconclusive,
            "{}: {}",
            r.name,
            r.summary
        );
        assert!(
            r.summary
                .contains("took session-level advisory locks (key 4242)")
                && r.summary.contains("released"),
            "{}: {}",
            r.name,
            r.summary
        );
    }
    let held: Vec<i64> = client
        .query(
            "SELECT objid::int8 FROM pg_locks WHERE locktype = 'advisory' AND pid = pg_backend_pid()",
            &[],
        )
        .await
        .unwrap()
        .iter()
        .map(|r| r.get(0))
        .collect();
    assert_eq!(held, vec![7], "4242 released (twice taken), 7 kept");
    client
        .execute("SELECT pg_advisory_unlock(7)", &[])
        .await
        .unwrap();
    assert_eq!(canaries(&db).await, untouched());
}

#[tokio::test]
async fn the_custom_throttle_query_that_writes_holds_the_backfill_with_the_reason() {
    let (db, client) = setup().await;
    let mut ev = Evaluator::new(&plan(CHECKS));
    match ev.evaluate(Some(&client), Duration::ZERO).await {
        Verdict::Throttled(reason) => assert!(
            reason.contains("custom throttle query: backfill.throttle.custom_query: cannot execute INSERT in a read-only transaction")
                && reason.contains("25006"),
            "{reason}"
        ),
        other => panic!("a writing custom query must hold the backfill: {other:?}"),
    }
    assert_eq!(canaries(&db).await, untouched());

    // A custom query that only reads still works.
    let mut ev = Evaluator::new(&plan(
        "[backfill.throttle]\ncustom_query = \"SELECT count(*) FROM public.acc\"\ncustom_limit = 10",
    ));
    match ev.evaluate(Some(&client), Duration::ZERO).await {
        Verdict::Throttled(reason) => {
            assert!(
                reason.contains("custom throttle query = 50 > limit 10"),
                "{reason}"
            )
        }
        other => panic!("50 rows are over the limit of 10: {other:?}"),
    }
}

#[tokio::test]
async fn probes_that_run_plan_sql_refuse_writes() {
    let (db, client) = setup().await;
    let plan = plan(CHECKS);
    let ctx = ProbeContext {
        client: &client,
        plan: &plan,
        gate: Phase::ReadSwitch,
    };
    let r = evidence::probe(ProbeKind::BackfillComplete)
        .evaluate(&ctx)
        .await;
    assert_eq!(r.outcome, Outcome::Inconclusive, "{}", r.summary);
    assert!(
        r.summary
            .contains("backfill.pending: cannot execute INSERT in a read-only transaction"),
        "{}",
        r.summary
    );

    // The metric query, inside a caller's transaction that has written: refused, and the
    // caller's transaction stays usable and keeps its work.
    client
        .batch_execute("BEGIN; CREATE TABLE public.caller_work (x int)")
        .await
        .unwrap();
    let err = evidence::snapshot::metric_value(&client, "SELECT public.canary_nextval()")
        .await
        .unwrap_err()
        .to_string();
    assert!(
        err.contains(
            "probes.error_budget.metric_query: cannot execute nextval() in a read-only transaction"
        ),
        "{err}"
    );
    let v = evidence::snapshot::metric_value(&client, "SELECT count(*) FROM public.acc")
        .await
        .unwrap();
    assert_eq!(v, 50.0);
    client.batch_execute("COMMIT").await.unwrap();
    assert!(client
        .query_one("SELECT to_regclass('public.caller_work') IS NOT NULL", &[])
        .await
        .unwrap()
        .get::<_, bool>(0));
    assert_eq!(canaries(&db).await, untouched());
}

#[tokio::test]
async fn a_write_past_the_server_refusal_is_caught_by_its_transaction_id() {
    let (db, client) = setup().await;
    // Temporary tables may be written in a read-only transaction: the transaction id shows it.
    client
        .batch_execute("CREATE TEMP TABLE scratch (x int)")
        .await
        .unwrap();
    let ro = ReadOnly::own(&client, "a temp-table writer");
    let err = ro
        .query_one("SELECT public.canary_temp()", &[])
        .await
        .unwrap_err();
    assert!(
        matches!(err.kind, ReadOnlyErrorKind::Wrote(_)) && err.is_write_refused(),
        "{err}"
    );
    assert!(
        err.to_string()
            .starts_with("a temp-table writer: refused: the query wrote"),
        "{err}"
    );
    let rows: i64 = client
        .query_one("SELECT count(*) FROM pg_temp.scratch", &[])
        .await
        .unwrap()
        .get(0);
    assert_eq!(rows, 0, "the write was rolled back");
    // The connection is idle again and reads as before.
    let n: i64 = ro
        .query_one("SELECT count(*) FROM public.acc", &[])
        .await
        .unwrap()
        .get(0);
    assert_eq!(n, 50);

    // Used on a connection inside a read-write transaction by mistake: refused, and the caller's
    // transaction is neither ended nor made read-only.
    client
        .batch_execute("BEGIN; INSERT INTO pg_temp.scratch VALUES (2)")
        .await
        .unwrap();
    let err = ro.query_one("SELECT 1", &[]).await.unwrap_err();
    assert!(
        matches!(err.kind, ReadOnlyErrorKind::InTransaction),
        "{err}"
    );
    client
        .batch_execute("INSERT INTO pg_temp.scratch VALUES (3); COMMIT")
        .await
        .unwrap();
    let rows: i64 = client
        .query_one("SELECT count(*) FROM pg_temp.scratch", &[])
        .await
        .unwrap()
        .get(0);
    assert_eq!(rows, 2, "the caller's transaction kept both of its writes");
    assert_eq!(canaries(&db).await, untouched());
}

#[tokio::test]
async fn validating_against_the_live_catalog_plans_expressions_read_only() {
    let (db, _client) = setup().await;
    // Planning folds an immutable function with constant arguments: it would run here.
    let dir = tempfile::tempdir().unwrap();
    let path = plan_toml("a = \"b + public.canary_immutable()\"").write(dir.path());
    let o = cutover(&db.url, &["validate", path.to_str().unwrap()]).await;
    assert_ne!(o.status.code(), Some(0), "{}", text(&o));
    assert!(
        text(&o).contains("cannot execute nextval() in a read-only transaction"),
        "{}",
        text(&o)
    );
    assert_eq!(canaries(&db).await, untouched());
}
