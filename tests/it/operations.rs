//! `[[operations]]` through the whole lifecycle on real PostgreSQL, with one harness for every
//! case: an old-version writer works through the old shape before the read switch, a
//! new-version writer through the new one after it; the generated checks pass and an exact
//! parity query written here agrees; rollback from every reversible phase restores the catalog
//! and loses no row nor any write of the new version; contract leaves the final shape.

use std::path::{Path, PathBuf};
use std::process::Output;

use cutover::plan::{Phase, Plan};
use tokio_postgres::Client;

use crate::common::{cutover, text, TestDb};

const HEAD: &str = r#"
id = "ops-it"
title = "operations lifecycle"
rationale = "test"
author = "tests"
ticket = "T-1"
[roster]
lead = ["postgres"]
"#;

/// One operation-based migration and what proves it.
struct Case {
    /// Creates and seeds the tables.
    schema: &'static str,
    /// The `[[operations]]` of the plan.
    ops: &'static str,
    /// Writes through the old shape (before the read switch).
    old_writer: &'static str,
    /// Writes through the new shape (after the read switch).
    new_writer: &'static str,
    /// Rows where the new shape disagrees with the old (written independently of Cutover's
    /// checks); must be 0 from the backfill on.
    parity: &'static str,
    /// After a rollback from the read switch: true when the new version's writes are in the old
    /// shape.
    kept: &'static str,
    /// After contract: true when the final shape is right.
    final_shape: &'static str,
    /// The table whose rows are counted.
    table: &'static str,
}

fn code(o: &Output) -> i32 {
    o.status.code().unwrap_or(-1)
}

#[track_caller]
fn ok(o: &Output, what: &str) {
    assert_eq!(code(o), 0, "{what}:\n{}", text(o));
}

async fn scalar_i64(c: &Client, sql: &str) -> i64 {
    c.query_one(sql, &[])
        .await
        .unwrap_or_else(|e| panic!("{sql}: {e}"))
        .get(0)
}

async fn truth(c: &Client, sql: &str) -> bool {
    c.query_one(sql, &[])
        .await
        .unwrap_or_else(|e| panic!("{sql}: {e}"))
        .get(0)
}

/// Columns, relations, triggers, functions, constraints and indexes of `public`, one line each.
async fn fingerprint(c: &Client) -> String {
    let sql = "SELECT coalesce(string_agg(x, E'\\n' ORDER BY x), '') FROM (
        SELECT 'col ' || c.relname || '.' || a.attname || ' ' || format_type(a.atttypid, a.atttypmod)
               || CASE WHEN a.attnotnull THEN ' not null' ELSE '' END
               || coalesce(' default ' || pg_get_expr(d.adbin, d.adrelid), '') AS x
          FROM pg_attribute a JOIN pg_class c ON c.oid = a.attrelid
          LEFT JOIN pg_attrdef d ON d.adrelid = a.attrelid AND d.adnum = a.attnum
         WHERE c.relnamespace = 'public'::regnamespace AND a.attnum > 0 AND NOT a.attisdropped
        UNION ALL SELECT 'rel ' || relname || ' ' || relkind::text FROM pg_class
         WHERE relnamespace = 'public'::regnamespace
        UNION ALL SELECT 'trigger ' || tgname FROM pg_trigger t JOIN pg_class c ON c.oid = t.tgrelid
         WHERE NOT tgisinternal AND c.relnamespace = 'public'::regnamespace
        UNION ALL SELECT 'function ' || proname FROM pg_proc WHERE pronamespace = 'public'::regnamespace
        UNION ALL SELECT 'constraint ' || conname || ' ' || pg_get_constraintdef(oid) || ' ' || convalidated::text
          FROM pg_constraint WHERE connamespace = 'public'::regnamespace
        UNION ALL SELECT 'index ' || pg_get_indexdef(i.indexrelid) || ' ' || i.indisvalid::text
          FROM pg_index i JOIN pg_class c ON c.oid = i.indrelid WHERE c.relnamespace = 'public'::regnamespace
      ) t";
    c.query_one(sql, &[]).await.expect("fingerprint").get(0)
}

fn write_plan(dir: &Path, ops: &str) -> PathBuf {
    let path = dir.join("ops.toml");
    std::fs::write(&path, format!("{HEAD}{ops}")).expect("write plan");
    let plan = Plan::load(&path).unwrap_or_else(|e| panic!("{e}"));
    // The linter reads generated SQL like hand-written SQL; the generator gives it nothing to block.
    let lint = cutover::evidence::lint::validate_report(&plan);
    assert_eq!(lint.blocking, 0, "{:#?}", lint.lines);
    path
}

/// Runs the checks the gate of `phase` names, then applies `phase`.
async fn advance(url: &str, plan: &str, phase: Phase) {
    let p = Plan::load(plan).expect("plan");
    for check in p.gate(phase).checks {
        ok(
            &cutover(url, &["check", plan, "--name", &check]).await,
            &format!("check {check} before {phase}"),
        );
    }
    let o = cutover(url, &["advance", plan, "--phase", phase.as_str()]).await;
    ok(&o, &format!("advance {phase}"));
    if phase == Phase::Backfill {
        // After a rollback the backfill is stopped: the operator allows it again.
        cutover(url, &["backfill", "resume", plan]).await;
        ok(
            &cutover(url, &["backfill", "run", plan, "--report-every", "0"]).await,
            "backfill run",
        );
    }
}

/// Applies the phases up to `last`, with the writers of each version at work.
async fn through(case: &Case, db: &TestDb, c: &Client, plan: &str, last: Phase) {
    for phase in Phase::ALL.into_iter().filter(|p| *p <= last) {
        advance(&db.url, plan, phase).await;
        if phase == Phase::Contract {
            break;
        }
        if phase < Phase::ReadSwitch {
            db.exec(case.old_writer).await;
        } else {
            db.exec(case.new_writer).await;
        }
        if phase >= Phase::Backfill {
            assert_eq!(scalar_i64(c, case.parity).await, 0, "parity after {phase}");
        }
    }
}

async fn lifecycle(case: Case) {
    let db = TestDb::new().await;
    db.exec(case.schema).await;
    let dir = tempfile::tempdir().expect("tempdir");
    let plan_path = write_plan(dir.path(), case.ops);
    let plan = plan_path.to_str().expect("utf-8 path");
    let c = db.client().await;
    let count = format!("SELECT count(*) FROM {}", case.table);
    let pristine = fingerprint(&c).await;
    for last in [
        Phase::Expand,
        Phase::DualWrite,
        Phase::Backfill,
        Phase::ReadSwitch,
    ] {
        through(&case, &db, &c, plan, last).await;
        let rows = scalar_i64(&c, &count).await;
        ok(
            &cutover(&db.url, &["rollback", plan, "--phase", "expand", "--yes"]).await,
            &format!("rollback from {last}"),
        );
        assert_eq!(
            fingerprint(&c).await,
            pristine,
            "catalog after rollback from {last}"
        );
        assert_eq!(
            scalar_i64(&c, &count).await,
            rows,
            "rows after rollback from {last}"
        );
        if last == Phase::ReadSwitch {
            assert!(
                truth(&c, case.kept).await,
                "new-version writes survive the rollback"
            );
        }
    }
    through(&case, &db, &c, plan, Phase::Contract).await;
    assert!(
        truth(&c, case.final_shape).await,
        "final shape:\n{}",
        fingerprint(&c).await
    );
    assert_eq!(
        scalar_i64(&c, "SELECT count(*) FROM pg_index WHERE NOT indisvalid").await,
        0
    );
}

#[tokio::test]
async fn operations_on_one_table_share_a_backfill_and_keep_both_versions_working() {
    lifecycle(Case {
        schema: "CREATE TABLE public.orders (
                     id bigserial PRIMARY KEY,
                     total numeric(12,2) NOT NULL,
                     note text,
                     status text NOT NULL DEFAULT 'new');
                 INSERT INTO public.orders (total, note)
                 SELECT g * 1.25, 'n' || g FROM generate_series(1, 500) g;",
        ops: r#"
[[operations]]
op = "alter_column"
table = "public.orders"
column = "total"
type = "bigint"
up = "round(total * 100)::bigint"
down = "total / 100.0"

[[operations]]
op = "rename_column"
table = "public.orders"
from = "note"
to = "remark"

[[operations]]
op = "add_column"
table = "public.orders"
column = "tax"
type = "bigint"
up = "0"
nullable = false

[[operations]]
op = "create_index"
table = "public.orders"
name = "orders_status_idx"
columns = ["status"]

[[operations]]
op = "create_constraint"
table = "public.orders"
name = "orders_status_set"
type = "check"
check = "status <> ''"

[[operations]]
op = "sql"
up = "CREATE TABLE public.order_events (id bigint PRIMARY KEY)"
down = "DROP TABLE public.order_events"
"#,
        old_writer: "INSERT INTO public.orders (total, note) VALUES (12.34, 'old');
                     UPDATE public.orders SET total = total + 1, note = note || '+' WHERE id % 7 = 0;",
        new_writer: "INSERT INTO public.orders (total_new, remark, tax) VALUES (5555, 'new', 3);
                     UPDATE public.orders SET total_new = 99900, remark = 'renamed' WHERE id = 1;",
        parity: "SELECT count(*) FROM public.orders
                  WHERE total_new IS DISTINCT FROM round(total * 100)::bigint
                     OR remark IS DISTINCT FROM note OR tax IS NULL",
        kept: "SELECT (SELECT total = 999.00 AND note = 'renamed' FROM public.orders WHERE id = 1)
                  AND EXISTS (SELECT 1 FROM public.orders WHERE total = 55.55 AND note = 'new')",
        final_shape: "SELECT (SELECT string_agg(column_name || ':' || data_type || ':' || is_nullable, ',' ORDER BY column_name)
                         FROM information_schema.columns WHERE table_name = 'orders')
                      = 'id:bigint:NO,remark:text:YES,status:text:NO,tax:bigint:NO,total:bigint:NO'
                  AND (SELECT convalidated FROM pg_constraint WHERE conname = 'orders_status_set')
                  AND NOT EXISTS (SELECT 1 FROM pg_trigger WHERE tgname = 'orders_cutover_sync')
                  AND (SELECT total FROM public.orders WHERE id = 1) = 99900",
        table: "public.orders",
    })
    .await;
}

#[tokio::test]
async fn split_column_keeps_the_old_column_rebuilt() {
    lifecycle(Case {
        schema: "CREATE TABLE public.people (id bigserial PRIMARY KEY, full_name text);
                 INSERT INTO public.people (full_name)
                 SELECT 'first' || g || ' last' || g FROM generate_series(1, 300) g;",
        ops: r#"
[[operations]]
op = "split_column"
table = "public.people"
column = "full_name"
columns = [
  { name = "first_name", type = "text", up = "split_part(full_name, ' ', 1)" },
  { name = "last_name", type = "text", up = "split_part(full_name, ' ', 2)" },
]
down = "first_name || ' ' || last_name"
"#,
        old_writer: "INSERT INTO public.people (full_name) VALUES ('Ada Lovelace');
                     UPDATE public.people SET full_name = 'Alan Turing' WHERE id % 11 = 0;",
        new_writer: "INSERT INTO public.people (first_name, last_name) VALUES ('Grace', 'Hopper');
                     UPDATE public.people SET last_name = 'Liskov' WHERE id = 2;",
        parity: "SELECT count(*) FROM public.people
                  WHERE first_name IS DISTINCT FROM split_part(full_name, ' ', 1)
                     OR last_name IS DISTINCT FROM split_part(full_name, ' ', 2)",
        kept: "SELECT EXISTS (SELECT 1 FROM public.people WHERE full_name = 'Grace Hopper')
                  AND (SELECT full_name = 'first2 Liskov' FROM public.people WHERE id = 2)",
        final_shape: "SELECT (SELECT string_agg(column_name, ',' ORDER BY column_name)
                         FROM information_schema.columns WHERE table_name = 'people')
                      = 'first_name,id,last_name'",
        table: "public.people",
    })
    .await;
}

#[tokio::test]
async fn move_column_keeps_both_tables_in_step() {
    lifecycle(Case {
        schema: "CREATE TABLE public.users (id bigserial PRIMARY KEY, bio text);
                 CREATE TABLE public.profiles (id bigserial PRIMARY KEY,
                     user_id bigint NOT NULL REFERENCES public.users (id));
                 INSERT INTO public.users (bio) SELECT 'bio ' || g FROM generate_series(1, 200) g;
                 INSERT INTO public.profiles (user_id) SELECT id FROM public.users;",
        ops: r#"
[[operations]]
op = "move_column"
table = "public.users"
column = "bio"
type = "text"
to_table = "public.profiles"
join = "user_id"
"#,
        old_writer: "UPDATE public.users SET bio = bio || '+' WHERE id % 5 = 0;
                     INSERT INTO public.users (bio) VALUES ('old');
                     INSERT INTO public.profiles (user_id) SELECT max(id) FROM public.users;",
        new_writer: "UPDATE public.profiles SET bio = 'new bio' WHERE user_id = 1;
                     INSERT INTO public.users DEFAULT VALUES;
                     INSERT INTO public.profiles (user_id, bio) SELECT max(id), 'fresh' FROM public.users;",
        parity: "SELECT count(*) FROM public.profiles p JOIN public.users u ON u.id = p.user_id
                  WHERE p.bio IS DISTINCT FROM u.bio",
        kept: "SELECT (SELECT bio = 'new bio' FROM public.users WHERE id = 1)
                  AND EXISTS (SELECT 1 FROM public.users WHERE bio = 'fresh')",
        final_shape: "SELECT NOT EXISTS (SELECT 1 FROM information_schema.columns
                                       WHERE table_name = 'users' AND column_name = 'bio')
                  AND (SELECT bio = 'new bio' FROM public.profiles WHERE user_id = 1)",
        table: "public.profiles",
    })
    .await;
}

#[tokio::test]
async fn schema_operations_and_in_place_constraints() {
    lifecycle(Case {
        schema: "CREATE TABLE public.owners (id bigint PRIMARY KEY);
                 INSERT INTO public.owners SELECT generate_series(1, 10);
                 CREATE TABLE public.tickets (id bigserial PRIMARY KEY, code text,
                     owner_id bigint, legacy text NOT NULL,
                     CONSTRAINT tickets_code_chk CHECK (code <> 'bad'));
                 CREATE INDEX tickets_legacy_idx ON public.tickets (legacy);
                 INSERT INTO public.tickets (code, owner_id, legacy)
                 SELECT CASE WHEN g % 3 = 0 THEN NULL ELSE 'c' || g END, g % 10 + 1, 'l'
                   FROM generate_series(1, 300) g;
                 CREATE TABLE public.notes (id bigserial PRIMARY KEY, body text);
                 INSERT INTO public.notes (body) VALUES ('first');",
        ops: r#"
[[operations]]
op = "alter_column"
table = "public.tickets"
column = "code"
nullable = false
up = "coalesce(code, 'gen-' || id)"
unique = { name = "tickets_code_key" }

[[operations]]
op = "alter_column"
table = "public.tickets"
column = "owner_id"
references = { name = "tickets_owner_fk", table = "public.owners", column = "id" }

[[operations]]
op = "drop_column"
table = "public.tickets"
column = "legacy"
down = "'filled'"

[[operations]]
op = "create_table"
table = "public.labels"
columns = [{ name = "id", type = "bigint", pk = true }, { name = "name", type = "text" }]

[[operations]]
op = "rename_table"
from = "public.notes"
to = "public.memos"

[[operations]]
op = "set_replica_identity"
table = "public.tickets"
identity = "full"

[[operations]]
op = "rename_constraint"
table = "public.tickets"
from = "tickets_code_chk"
to = "tickets_code_not_bad"

[[operations]]
op = "drop_index"
name = "tickets_legacy_idx"

[[operations]]
op = "add_column"
table = "public.tickets"
column = "token"
type = "uuid"
default = "gen_random_uuid()"

[[operations]]
op = "create_constraint"
table = "public.tickets"
name = "tickets_owner_id_key"
type = "unique"
columns = ["owner_id", "id"]
"#,
        old_writer: "INSERT INTO public.tickets (code, owner_id, legacy)
                       SELECT NULL, 1, 'old' FROM generate_series(1, 3);
                     INSERT INTO public.notes (body) VALUES ('old');",
        new_writer: "INSERT INTO public.tickets (code, owner_id) VALUES ('new-' || clock_timestamp(), 2);
                     INSERT INTO public.memos (body) VALUES ('new');",
        parity: "SELECT count(*) FROM public.tickets WHERE code IS NULL OR token IS NULL",
        kept: "SELECT EXISTS (SELECT 1 FROM public.tickets WHERE legacy = 'filled')
                  AND EXISTS (SELECT 1 FROM public.notes WHERE body = 'new')",
        final_shape: "SELECT (SELECT string_agg(column_name || ':' || is_nullable, ',' ORDER BY column_name)
                         FROM information_schema.columns WHERE table_name = 'tickets')
                      = 'code:NO,id:NO,owner_id:YES,token:YES'
                  AND (SELECT contype = 'u' FROM pg_constraint WHERE conname = 'tickets_owner_id_key')
                  AND (SELECT convalidated FROM pg_constraint WHERE conname = 'tickets_owner_fk')
                  AND (SELECT contype = 'u' FROM pg_constraint WHERE conname = 'tickets_code_key')
                  AND EXISTS (SELECT 1 FROM pg_constraint WHERE conname = 'tickets_code_not_bad')
                  AND to_regclass('public.notes') IS NULL AND to_regclass('public.memos') IS NOT NULL
                  AND to_regclass('public.labels') IS NOT NULL
                  AND to_regclass('public.tickets_legacy_idx') IS NULL
                  AND (SELECT relreplident = 'f' FROM pg_class WHERE oid = 'public.tickets'::regclass)",
        table: "public.tickets",
    })
    .await;
}

/// The operation-based example plans pass `validate` against the demo schema, catalog included.
#[tokio::test]
async fn example_operation_plans_validate_against_the_demo_schema() {
    let db = TestDb::new().await;
    db.exec(&std::fs::read_to_string("assets/demo/schema.sql").expect("demo schema"))
        .await;
    for plan in [
        "plans/accounts-balance-cents.ops.toml",
        "plans/customers-rename-full-name.ops.toml",
    ] {
        ok(&cutover(&db.url, &["validate", plan]).await, plan);
    }
    let bad = "[[operations]]\nop = \"add_column\"\ntable = \"public.accounts\"\ncolumn = \"c\"\ntype = \"bigintt\"\n";
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("bad.toml");
    std::fs::write(&path, format!("{HEAD}{bad}")).expect("write");
    let o = cutover(&db.url, &["validate", path.to_str().expect("utf-8")]).await;
    assert_eq!(code(&o), 2, "{}", text(&o));
    assert!(
        text(&o).contains("bad.toml:13:8") && text(&o).contains("type \"bigintt\" does not exist"),
        "{}",
        text(&o)
    );
}

/// `cutover run` applies phases while their gates pass (checks and the backfill run on the way)
/// and stops at the first gate that does not, exit 2 with its blocker; it never overrides.
#[tokio::test]
async fn run_goes_as_far_as_the_gates_allow() {
    let db = TestDb::new().await;
    db.exec(
        "CREATE TABLE public.items (id bigserial PRIMARY KEY, price numeric(10,2) NOT NULL);
         INSERT INTO public.items (price) SELECT g / 4.0 FROM generate_series(1, 200) g;",
    )
    .await;
    let dir = tempfile::tempdir().expect("tempdir");
    let path = write_plan(
        dir.path(),
        r#"
[[operations]]
op = "alter_column"
table = "public.items"
column = "price"
name = "price_cents"
type = "bigint"
up = "round(price * 100)::bigint"
down = "price_cents / 100.0"

[gates.contract]
signoffs = ["lead"]
"#,
    );
    let plan = path.to_str().expect("utf-8 path");
    let o = cutover(&db.url, &["run", plan, "--through", "dual_write"]).await;
    ok(&o, "run --through dual_write");
    assert!(text(&o).contains("stopped before backfill"), "{}", text(&o));
    let o = cutover(&db.url, &["run", plan]).await;
    assert_eq!(code(&o), 2, "blocked at contract:\n{}", text(&o));
    assert!(text(&o).contains("lead"), "{}", text(&o));
    let c = db.client().await;
    assert_eq!(
        scalar_i64(&c, "SELECT count(*) FROM public.items WHERE price_cents IS DISTINCT FROM round(price * 100)::bigint").await,
        0
    );
    ok(
        &cutover(
            &db.url,
            &["signoff", plan, "--gate", "contract", "--role", "lead"],
        )
        .await,
        "signoff",
    );
    ok(&cutover(&db.url, &["run", plan]).await, "run to the end");
    assert!(
        truth(
            &c,
            "SELECT NOT EXISTS (SELECT 1 FROM information_schema.columns WHERE table_name = 'items' AND column_name = 'price')"
        )
        .await
    );
}

/// `plan show` lists the generated statements with their locks; `plan new` writes a plan that
/// validates.
#[tokio::test]
async fn plan_show_and_plan_new() {
    let o = cutover(
        "",
        &["plan", "show", "plans/accounts-balance-cents.ops.toml"],
    )
    .await;
    ok(&o, "plan show");
    assert!(
        text(&o).contains("lock SHARE UPDATE EXCLUSIVE on public.accounts"),
        "{}",
        text(&o)
    );
    let o = cutover(
        "",
        &["plan", "show", "--json", "plans/orders-rekey-uuid.toml"],
    )
    .await;
    ok(&o, "plan show --json");
    let v: serde_json::Value = serde_json::from_slice(&o.stdout).expect("json");
    assert_eq!(v["phases"].as_array().map(Vec::len), Some(5));
    let dir = tempfile::tempdir().expect("tempdir");
    let out = dir.path().join("new.toml");
    let o = cutover(
        "",
        &[
            "plan",
            "new",
            "alter-column",
            "--table",
            "public.orders",
            "--column",
            "total",
            "--type",
            "bigint",
            "--up",
            "round(total*100)",
            "--down",
            "total/100.0",
            "--lead",
            "postgres",
            "--output",
            out.to_str().expect("utf-8"),
        ],
    )
    .await;
    ok(&o, "plan new");
    Plan::load(&out).unwrap_or_else(|e| panic!("{e}"));
    let o = cutover("", &["plan", "new", "alter-colum", "--table", "t"]).await;
    assert_eq!(code(&o), 2, "{}", text(&o));
}
