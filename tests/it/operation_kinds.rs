//! One operation kind per test, through the lifecycle harness ([`Lifecycle`]): apply each
//! reversible phase, roll it back (the harness proves the catalog is as it was — defaults,
//! comments and replica identities included), apply it again, then contract. Hooks assert the
//! catalog the operation must leave after every stage and that no seeded row is lost.

use cutover::plan::{Phase, Plan};

use crate::common::lifecycle::{Lifecycle, LifecycleDb, Stage};
use crate::common::workload::Workloads;

pub(crate) const HEAD: &str = r#"
id = "op-kind"
title = "one operation kind"
rationale = "test"
author = "tests"
ticket = "T-1"
[roster]
lead = ["postgres"]
"#;

/// The reversible phases.
pub(crate) const REVERSIBLE: [Phase; 4] = [
    Phase::Expand,
    Phase::DualWrite,
    Phase::Backfill,
    Phase::ReadSwitch,
];

pub(crate) fn plan(ops: &str) -> Plan {
    let source = format!("{HEAD}{ops}");
    Plan::parse("ops.toml", &source).unwrap_or_else(|e| panic!("{e}\n---\n{source}"))
}

/// Panics unless every seeded row (ids 1..=`n`) of `table` is there.
pub(crate) async fn seeded_rows_kept(db: &LifecycleDb, table: &str, n: i64) {
    let found: i64 = db
        .scalar(&format!(
            "SELECT count(*) FROM {table} WHERE id BETWEEN 1 AND {n}"
        ))
        .await;
    assert_eq!(found, n, "seeded rows of {table}");
}

async fn relkind(db: &LifecycleDb, name: &str) -> Option<String> {
    db.client
        .query_opt(
            "SELECT relkind::text AS relkind FROM pg_class WHERE oid = to_regclass($1)",
            &[&name],
        )
        .await
        .unwrap_or_else(|e| panic!("relkind of {name}: {e}"))
        .map(|r| r.get("relkind"))
}

async fn memos(db: &LifecycleDb) -> i64 {
    db.scalar("SELECT count(*) FROM pg_proc WHERE proname LIKE '%cutover_prev%'")
        .await
}

#[tokio::test]
async fn drop_table_keeps_the_table_until_contract() {
    let stays = async |db: &LifecycleDb| {
        db.catalog().assert_table("public.audit_log").await;
        seeded_rows_kept(db, "public.audit_log", 100).await;
        db.exec("INSERT INTO public.audit_log (msg) VALUES ('still written')")
            .await;
    };
    let mut lc = Lifecycle::of(plan(
        "[[operations]]\nop = \"drop_table\"\ntable = \"public.audit_log\"\n",
    ))
    .schema(
        "CREATE TABLE public.audit_log (id bigserial PRIMARY KEY, msg text);
         INSERT INTO public.audit_log (msg) SELECT 'm' || g FROM generate_series(1, 100) g;",
    );
    for phase in REVERSIBLE {
        lc = lc
            .after(Stage::Applied(phase), stays)
            .after(Stage::RolledBack(phase), stays);
    }
    let db = lc.run_with_rollbacks().await;
    db.catalog().assert_no_table("public.audit_log").await;
}

#[tokio::test]
async fn rename_table_serves_both_names_until_contract() {
    let both = async |db: &LifecycleDb| {
        assert_eq!(relkind(db, "public.memos").await.as_deref(), Some("r"));
        assert_eq!(relkind(db, "public.notes").await.as_deref(), Some("v"));
        seeded_rows_kept(db, "public.memos", 50).await;
        db.exec("INSERT INTO public.notes (body) VALUES ('old name')")
            .await;
        db.exec("INSERT INTO public.memos (body) VALUES ('new name')")
            .await;
        let (old, new): (i64, i64) = (
            db.scalar("SELECT count(*) FROM public.notes").await,
            db.scalar("SELECT count(*) FROM public.memos").await,
        );
        assert_eq!(old, new, "both names show the same rows");
    };
    let undone = async |db: &LifecycleDb| {
        assert_eq!(relkind(db, "public.notes").await.as_deref(), Some("r"));
        assert_eq!(relkind(db, "public.memos").await, None);
        seeded_rows_kept(db, "public.notes", 50).await;
        let written: i64 = db
            .scalar("SELECT count(*) FROM public.notes WHERE body IN ('old name', 'new name')")
            .await;
        assert!(
            written >= 2,
            "writes through both names survive the rollback"
        );
    };
    let mut lc = Lifecycle::of(plan(
        "[[operations]]\nop = \"rename_table\"\nfrom = \"public.notes\"\nto = \"public.memos\"\n",
    ))
    .schema(
        "CREATE TABLE public.notes (id bigserial PRIMARY KEY, body text);
         INSERT INTO public.notes (body) SELECT 'n' || g FROM generate_series(1, 50) g;",
    )
    .workloads(Workloads {
        old: "INSERT INTO public.notes (body) VALUES ('old app') RETURNING id;
              UPDATE public.notes SET body = body || '.' WHERE id = 1 + (random() * 49)::int;",
        new: "INSERT INTO public.memos (body) VALUES ('new app') RETURNING id;
              UPDATE public.memos SET body = body || ':' WHERE id = 1 + (random() * 49)::int;",
        old_table: "public.notes",
        new_table: "public.memos",
        parity: "SELECT count(*) FROM public.memos m FULL JOIN public.notes n USING (id)
                  WHERE m IS NULL OR n IS NULL OR m.body IS DISTINCT FROM n.body",
    });
    for phase in REVERSIBLE {
        lc = lc.after(Stage::Applied(phase), both);
    }
    let db = lc
        .after(Stage::RolledBack(Phase::Expand), undone)
        .run_with_rollbacks()
        .await;
    assert_eq!(relkind(&db, "public.memos").await.as_deref(), Some("r"));
    assert_eq!(relkind(&db, "public.notes").await, None);
    seeded_rows_kept(&db, "public.memos", 50).await;
}

#[tokio::test]
async fn rename_constraint_renames_and_rolls_back() {
    let renamed = async |db: &LifecycleDb| {
        let c = db.catalog();
        let new = c.constraint("public.items", "items_qty_positive").await;
        assert_eq!(
            new.map(|k| k.definition).as_deref(),
            Some("CHECK ((qty > 0))")
        );
        assert!(c
            .constraint("public.items", "items_qty_check")
            .await
            .is_none());
        seeded_rows_kept(db, "public.items", 30).await;
    };
    let original = async |db: &LifecycleDb| {
        let c = db.catalog();
        assert!(c
            .constraint("public.items", "items_qty_check")
            .await
            .is_some());
        assert!(c
            .constraint("public.items", "items_qty_positive")
            .await
            .is_none());
        seeded_rows_kept(db, "public.items", 30).await;
    };
    let mut lc = Lifecycle::of(plan(
        "[[operations]]\nop = \"rename_constraint\"\ntable = \"public.items\"\nfrom = \"items_qty_check\"\nto = \"items_qty_positive\"\n",
    ))
    .schema(
        "CREATE TABLE public.items (id bigserial PRIMARY KEY, qty int CONSTRAINT items_qty_check CHECK (qty > 0));
         INSERT INTO public.items (qty) SELECT g FROM generate_series(1, 30) g;",
    );
    for phase in REVERSIBLE {
        lc = lc.after(Stage::Applied(phase), renamed);
    }
    let db = lc
        .after(Stage::RolledBack(Phase::Expand), original)
        .run_with_rollbacks()
        .await;
    assert!(db
        .catalog()
        .constraint("public.items", "items_qty_positive")
        .await
        .is_some());
}

/// The replica identity of `table`, as `relreplident` plus the identity index when there is one.
async fn identity(db: &LifecycleDb, table: &str) -> String {
    db.scalar(&format!(
        "SELECT relreplident::text || coalesce(' ' || (SELECT indexrelid::regclass::text FROM pg_index
                 WHERE indrelid = c.oid AND indisreplident), '')
           FROM pg_class c WHERE oid = '{table}'::regclass"
    ))
    .await
}

#[tokio::test]
async fn set_replica_identity_rolls_back_to_the_identity_it_found() {
    // Each table starts with another identity; each goes to another one.
    let tables = [
        ("public.ri_index", "i ri_index_key", "f"),
        ("public.ri_full", "f", "i ri_full_key"),
        ("public.ri_nothing", "n", "d"),
        ("public.ri_default", "d", "n"),
    ];
    let found = async move |db: &LifecycleDb| {
        for (t, before, _) in tables {
            assert_eq!(identity(db, t).await, before, "{t} rolled back");
            seeded_rows_kept(db, t, 20).await;
        }
        assert_eq!(memos(db).await, 0, "memos dropped by the rollback");
    };
    let set = async move |db: &LifecycleDb| {
        for (t, _, after) in tables {
            assert_eq!(identity(db, t).await, after, "{t} applied");
            seeded_rows_kept(db, t, 20).await;
        }
    };
    let ops = r#"
[[operations]]
op = "set_replica_identity"
table = "public.ri_index"
identity = "full"

[[operations]]
op = "set_replica_identity"
table = "public.ri_full"
identity = "index"
index = "ri_full_key"

[[operations]]
op = "set_replica_identity"
table = "public.ri_nothing"
identity = "default"

[[operations]]
op = "set_replica_identity"
table = "public.ri_default"
identity = "nothing"
"#;
    let mut schema = String::new();
    for (t, _, _) in tables {
        schema.push_str(&format!(
            "CREATE TABLE {t} (id bigserial PRIMARY KEY, k int NOT NULL);
             CREATE UNIQUE INDEX {}_key ON {t} (k);
             INSERT INTO {t} (k) SELECT g FROM generate_series(1, 20) g;",
            t.trim_start_matches("public.")
        ));
    }
    schema.push_str(
        "ALTER TABLE public.ri_index REPLICA IDENTITY USING INDEX ri_index_key;
         ALTER TABLE public.ri_full REPLICA IDENTITY FULL;
         ALTER TABLE public.ri_nothing REPLICA IDENTITY NOTHING;",
    );
    let mut lc = Lifecycle::of(plan(ops))
        .schema(&schema)
        .after(Stage::RolledBack(Phase::Expand), found);
    for phase in REVERSIBLE {
        lc = lc.after(Stage::Applied(phase), set);
    }
    let db = lc.run_with_rollbacks().await;
    for (t, _, after) in tables {
        assert_eq!(identity(&db, t).await, after, "{t} after contract");
    }
    assert_eq!(memos(&db).await, 0, "contract drops the memos");
}

/// The default, nullability and comment of `public.orders.<col>`.
async fn column_state(db: &LifecycleDb, col: &str) -> (Option<String>, bool, Option<String>) {
    let r = db
        .client
        .query_one(
            "SELECT pg_get_expr(d.adbin, d.adrelid) AS def, a.attnotnull AS not_null,
                    col_description(a.attrelid, a.attnum) AS comment
               FROM pg_attribute a LEFT JOIN pg_attrdef d ON d.adrelid = a.attrelid AND d.adnum = a.attnum
              WHERE a.attrelid = 'public.orders'::regclass AND a.attname = $1",
            &[&col],
        )
        .await
        .unwrap_or_else(|e| panic!("column {col}: {e}"));
    (r.get("def"), r.get("not_null"), r.get("comment"))
}

#[tokio::test]
async fn alter_column_in_place_rolls_back_to_what_it_found() {
    let ops = r#"
[[operations]]
op = "alter_column"
table = "public.orders"
column = "status"
default = "'pending'"
nullable = true
down = "'lost'"
comment = "lifecycle state"

[[operations]]
op = "alter_column"
table = "public.orders"
column = "qty"
default = "1"
comment = "units"
"#;
    let applied = async |db: &LifecycleDb| {
        assert_eq!(
            column_state(db, "status").await,
            (
                Some("'pending'::text".into()),
                false,
                Some("lifecycle state".into())
            )
        );
        assert_eq!(
            column_state(db, "qty").await,
            (Some("1".into()), false, Some("units".into()))
        );
        seeded_rows_kept(db, "public.orders", 40).await;
        let fresh: String = db
            .scalar("INSERT INTO public.orders DEFAULT VALUES RETURNING status")
            .await;
        assert_eq!(fresh, "pending");
    };
    let found = async |db: &LifecycleDb| {
        assert_eq!(
            column_state(db, "status").await,
            (Some("'new'::text".into()), true, Some("order state".into()))
        );
        assert_eq!(column_state(db, "qty").await, (None, false, None));
        assert_eq!(memos(db).await, 0, "memos dropped by the rollback");
        seeded_rows_kept(db, "public.orders", 40).await;
    };
    let mut lc = Lifecycle::of(plan(ops))
        .schema(
            "CREATE TABLE public.orders (id bigserial PRIMARY KEY,
                 status text NOT NULL DEFAULT 'new', qty int);
             COMMENT ON COLUMN public.orders.status IS 'order state';
             INSERT INTO public.orders (qty) SELECT g FROM generate_series(1, 40) g;",
        )
        .workloads(Workloads {
            // The old version relies on the old default; the new one on the new default, and
            // writes NULLs, which `down` fills when the rollback makes the column NOT NULL again.
            old: "INSERT INTO public.orders (qty) VALUES (2) RETURNING id;
                  UPDATE public.orders SET qty = qty + 1 WHERE id = 1 + (random() * 39)::int;",
            new: "INSERT INTO public.orders DEFAULT VALUES RETURNING id;
                  INSERT INTO public.orders (status, qty) VALUES (NULL, -1) RETURNING id;
                  UPDATE public.orders SET status = 'shipped' WHERE id = 1 + (random() * 39)::int;",
            old_table: "public.orders",
            new_table: "public.orders",
            parity: "SELECT count(*) FROM public.orders
                      WHERE status NOT IN ('new', 'pending', 'shipped', 'lost')
                         OR (status IS NULL AND qty IS DISTINCT FROM -1)",
        })
        .after(Stage::RolledBack(Phase::Expand), found);
    for phase in REVERSIBLE {
        lc = lc.after(Stage::Applied(phase), applied);
    }
    let db = lc.run_with_rollbacks().await;
    let filled: bool = db
        .scalar("SELECT EXISTS (SELECT 1 FROM public.orders WHERE status = 'lost' AND qty = -1)")
        .await;
    assert!(
        filled,
        "rolling back every phase filled the new version's NULLs with `down`"
    );
    assert_eq!(
        column_state(&db, "status").await,
        (
            Some("'pending'::text".into()),
            false,
            Some("lifecycle state".into())
        )
    );
    assert_eq!(memos(&db).await, 0, "contract drops the memos");
}

/// Applies expand of `ops` against `schema`; it must fail in the statement generated by the
/// operation `number` (`kind`), and the error must say so with the plan location.
async fn fails_in_operation(schema: &str, ops: &str, number: usize, kind: &str, line: usize) {
    use cutover::engine::{self, DdlError, EngineError, RunOptions};
    let mut run = Lifecycle::of(plan(ops)).schema(schema).start().await;
    engine::override_gate(
        &mut run.engine,
        &run.db.plan,
        &run.actor,
        Phase::Expand,
        "test: gates are not under test",
    )
    .await
    .unwrap_or_else(|e| panic!("override: {e}"));
    let err = engine::apply_phase(
        &mut run.engine,
        &run.db.plan,
        &run.actor,
        Phase::Expand,
        &RunOptions::default(),
    )
    .await
    .expect_err("the generated statement fails");
    let message = err.to_string();
    let EngineError::Ddl(DdlError::Statement {
        operation: Some(op),
        ..
    }) = &err
    else {
        panic!("not a statement failure naming its operation: {message}");
    };
    assert_eq!(
        (op.number, op.kind.as_str(), op.file.as_str(), op.line),
        (number, kind, "ops.toml", line),
        "{message}"
    );
    assert!(
        message.contains(&format!(
            "generated by operation {number} (`{kind}`) at ops.toml:{line}:"
        )),
        "{message}"
    );
}

#[tokio::test]
async fn a_failing_generated_statement_names_its_operation() {
    let schema = "CREATE TABLE public.t (id bigserial PRIMARY KEY, a int)";
    // In the phase's transaction: the constraint to rename does not exist.
    fails_in_operation(
        schema,
        r#"
[[operations]]
op = "alter_column"
table = "public.t"
column = "a"
comment = "fine"

[[operations]]
op = "rename_constraint"
table = "public.t"
from = "t_missing"
to = "t_renamed"
"#,
        2,
        "rename_constraint",
        16,
    )
    .await;
    // Outside a transaction (CONCURRENTLY): the column to index does not exist.
    fails_in_operation(
        schema,
        r#"
[[operations]]
op = "create_index"
table = "public.t"
name = "t_b_idx"
columns = ["b"]
"#,
        1,
        "create_index",
        10,
    )
    .await;
}
