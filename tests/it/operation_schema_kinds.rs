//! One operation kind per test, continued ([`super::operation_kinds`]): indexes, constraints,
//! tables, columns and raw SQL, each through the lifecycle harness with the catalog asserted
//! after every stage and every seeded row kept. Operations that change a shape the application
//! writes through run with both versions' workloads at work.

use cutover::plan::Phase;

use crate::common::lifecycle::{Lifecycle, LifecycleDb, Stage};
use crate::common::workload::Workloads;
use crate::operation_kinds::{plan, seeded_rows_kept, HEAD, REVERSIBLE};

const ITEMS: &str = "CREATE TABLE public.items (id bigserial PRIMARY KEY, sku text, qty int, owner_id bigint);
     CREATE TABLE public.owners (id bigint PRIMARY KEY);
     INSERT INTO public.owners SELECT generate_series(1, 5);
     INSERT INTO public.items (sku, qty, owner_id) SELECT 's' || g, g, g % 5 + 1 FROM generate_series(1, 60) g;";

/// Registers `hook` after applying every reversible phase from `from` on.
fn applied_from(
    mut lc: Lifecycle,
    from: Phase,
    hook: impl AsyncFn(&LifecycleDb) + Copy + 'static,
) -> Lifecycle {
    for phase in REVERSIBLE.into_iter().filter(|p| *p >= from) {
        lc = lc.after(Stage::Applied(phase), hook);
    }
    lc
}

#[tokio::test]
async fn create_table_exists_from_expand_and_rollback_drops_it() {
    let there = async |db: &LifecycleDb| {
        let c = db.catalog();
        c.assert_column("public.labels", "id", "bigint", false)
            .await;
        c.assert_column("public.labels", "name", "text", false)
            .await;
        c.assert_constraint("public.labels", "labels_pkey", true)
            .await;
        db.exec("INSERT INTO public.labels (id, name) VALUES ((SELECT least(min(id), 0) - 1 FROM public.labels), 'x')")
            .await;
    };
    let lc = Lifecycle::of(plan(
        r#"
[[operations]]
op = "create_table"
table = "public.labels"
columns = [{ name = "id", type = "bigint", pk = true }, { name = "name", type = "text", nullable = false }]
"#,
    ))
    .schema(ITEMS)
    .workloads(Workloads {
        old: "INSERT INTO public.items (sku, qty) VALUES ('old', 1) RETURNING id",
        new: "WITH i AS (INSERT INTO public.items (sku, qty) VALUES ('new', 2) RETURNING id)
              INSERT INTO public.labels (id, name) SELECT id, 'label ' || id FROM i RETURNING id",
        old_table: "public.items",
        new_table: "public.items",
        parity: "SELECT count(*) FROM public.items i JOIN public.labels l USING (id)
                  WHERE l.name IS DISTINCT FROM 'label ' || i.id",
    })
    .after(Stage::RolledBack(Phase::Expand), async |db: &LifecycleDb| {
        db.catalog().assert_no_table("public.labels").await;
    });
    let db = applied_from(lc, Phase::Expand, there)
        .run_with_rollbacks()
        .await;
    db.catalog().assert_table("public.labels").await;
}

#[tokio::test]
async fn create_index_builds_concurrently_and_rollback_drops_it() {
    let built = async |db: &LifecycleDb| {
        db.catalog()
            .assert_valid_index("public.items_sku_idx")
            .await;
        seeded_rows_kept(db, "public.items", 60).await;
    };
    let lc = Lifecycle::of(plan(
        "[[operations]]\nop = \"create_index\"\ntable = \"public.items\"\nname = \"items_sku_idx\"\ncolumns = [\"sku\"]\n",
    ))
    .schema(ITEMS)
    .after(Stage::RolledBack(Phase::Expand), async |db: &LifecycleDb| {
        db.catalog().assert_no_index("public.items_sku_idx").await;
        seeded_rows_kept(db, "public.items", 60).await;
    });
    let db = applied_from(lc, Phase::Expand, built)
        .run_with_rollbacks()
        .await;
    db.catalog()
        .assert_valid_index("public.items_sku_idx")
        .await;
}

#[tokio::test]
async fn drop_index_keeps_the_index_until_contract() {
    let kept = async |db: &LifecycleDb| {
        db.catalog()
            .assert_valid_index("public.items_qty_idx")
            .await;
        seeded_rows_kept(db, "public.items", 60).await;
    };
    let mut lc = Lifecycle::of(plan(
        "[[operations]]\nop = \"drop_index\"\nname = \"items_qty_idx\"\n",
    ))
    .schema(ITEMS)
    .schema("CREATE INDEX items_qty_idx ON public.items (qty)");
    for phase in REVERSIBLE {
        lc = lc.after(Stage::RolledBack(phase), kept);
    }
    let db = applied_from(lc, Phase::Expand, kept)
        .run_with_rollbacks()
        .await;
    db.catalog().assert_no_index("public.items_qty_idx").await;
}

#[tokio::test]
async fn create_constraint_goes_not_valid_then_validated() {
    let ops = r#"
[[operations]]
op = "create_constraint"
table = "public.items"
name = "items_qty_positive"
type = "check"
check = "qty > 0"

[[operations]]
op = "create_constraint"
table = "public.items"
name = "items_owner_fk"
type = "foreign_key"
columns = ["owner_id"]
references = { table = "public.owners", column = "id" }

[[operations]]
op = "create_constraint"
table = "public.items"
name = "items_sku_key"
type = "unique"
columns = ["sku"]
"#;
    let none_yet = async |db: &LifecycleDb| {
        let c = db.catalog();
        c.assert_valid_index("public.items_sku_key").await;
        c.assert_no_constraint("public.items", "items_qty_positive")
            .await;
        c.assert_no_constraint("public.items", "items_owner_fk")
            .await;
        seeded_rows_kept(db, "public.items", 60).await;
    };
    let not_valid = async |db: &LifecycleDb| {
        let c = db.catalog();
        c.assert_constraint("public.items", "items_qty_positive", false)
            .await;
        c.assert_constraint("public.items", "items_owner_fk", false)
            .await;
        seeded_rows_kept(db, "public.items", 60).await;
    };
    let valid = async |db: &LifecycleDb| {
        let c = db.catalog();
        c.assert_constraint("public.items", "items_qty_positive", true)
            .await;
        c.assert_constraint("public.items", "items_owner_fk", true)
            .await;
        seeded_rows_kept(db, "public.items", 60).await;
    };
    let lc = Lifecycle::of(plan(ops))
        .schema(ITEMS)
        .after(Stage::Applied(Phase::Expand), none_yet)
        .after(Stage::RolledBack(Phase::DualWrite), none_yet)
        .after(Stage::Applied(Phase::DualWrite), not_valid)
        .after(Stage::Applied(Phase::Backfill), not_valid)
        .after(Stage::RolledBack(Phase::ReadSwitch), not_valid)
        .after(Stage::Applied(Phase::ReadSwitch), valid)
        .after(
            Stage::RolledBack(Phase::Expand),
            async |db: &LifecycleDb| {
                db.catalog().assert_no_index("public.items_sku_key").await;
            },
        );
    let db = lc.run_with_rollbacks().await;
    let unique: bool = db
        .scalar("SELECT contype = 'u' FROM pg_constraint WHERE conname = 'items_sku_key'")
        .await;
    assert!(unique, "contract attaches the unique index as a constraint");
}

#[tokio::test]
async fn drop_constraint_and_multicolumn_keep_them_until_contract() {
    let ops = r#"
[[operations]]
op = "drop_constraint"
table = "public.items"
name = "items_qty_check"

[[operations]]
op = "drop_multicolumn_constraint"
table = "public.items"
name = "items_sku_qty_key"
"#;
    let kept = async |db: &LifecycleDb| {
        let c = db.catalog();
        c.assert_constraint("public.items", "items_qty_check", true)
            .await;
        c.assert_constraint("public.items", "items_sku_qty_key", true)
            .await;
        seeded_rows_kept(db, "public.items", 60).await;
    };
    let mut lc = Lifecycle::of(plan(ops)).schema(ITEMS).schema(
        "ALTER TABLE public.items ADD CONSTRAINT items_qty_check CHECK (qty > 0),
                                  ADD CONSTRAINT items_sku_qty_key UNIQUE (sku, qty)",
    );
    for phase in REVERSIBLE {
        lc = lc.after(Stage::RolledBack(phase), kept);
    }
    let db = applied_from(lc, Phase::Expand, kept)
        .run_with_rollbacks()
        .await;
    db.catalog()
        .assert_no_constraint("public.items", "items_qty_check")
        .await;
    db.catalog()
        .assert_no_constraint("public.items", "items_sku_qty_key")
        .await;
}

#[tokio::test]
async fn add_column_is_filled_by_the_backfill_and_the_trigger() {
    let added = async |db: &LifecycleDb| {
        db.catalog()
            .assert_column("public.items", "code", "text", true)
            .await;
        seeded_rows_kept(db, "public.items", 60).await;
    };
    let filled = async |db: &LifecycleDb| {
        db.exec("INSERT INTO public.items (sku, qty) VALUES ('late', 1)")
            .await;
        let wrong: i64 = db
            .scalar("SELECT count(*) FROM public.items WHERE code IS DISTINCT FROM 'c-' || sku")
            .await;
        assert_eq!(wrong, 0, "every row, old and new, holds up(old)");
    };
    let lc = Lifecycle::of(plan(
        "[[operations]]\nop = \"add_column\"\ntable = \"public.items\"\ncolumn = \"code\"\ntype = \"text\"\nup = \"'c-' || sku\"\nnullable = false\n",
    ))
    .schema(ITEMS)
    .schema("UPDATE public.items SET sku = 's0' WHERE sku IS NULL")
    .workloads(Workloads {
        // An update of another column on a row the backfill has not reached must not break
        // the NOT VALID `code IS NOT NULL` check (`up` fills only what is NULL, so `sku` stays).
        old: "INSERT INTO public.items (sku, qty) VALUES ('o' || clock_timestamp(), 1) RETURNING id;
              UPDATE public.items SET qty = qty + 1 WHERE id = 11 + (random() * 49)::int;",
        new: "INSERT INTO public.items (sku, qty, code) VALUES ('n', 2, 'c-n') RETURNING id;
              UPDATE public.items SET sku = 'v' || id, code = 'c-v' || id WHERE id = 11 + (random() * 49)::int;",
        old_table: "public.items",
        new_table: "public.items",
        parity: "SELECT count(*) FROM public.items WHERE code IS DISTINCT FROM 'c-' || sku",
    })
    .after(Stage::RolledBack(Phase::Expand), async |db: &LifecycleDb| {
        db.catalog().assert_no_column("public.items", "code").await;
        seeded_rows_kept(db, "public.items", 60).await;
    });
    let lc = applied_from(lc, Phase::Expand, added);
    let db = applied_from(lc, Phase::Backfill, filled)
        .run_with_rollbacks()
        .await;
    db.catalog()
        .assert_column("public.items", "code", "text", false)
        .await;
}

#[tokio::test]
async fn drop_column_is_filled_by_down_until_contract() {
    let kept = async |db: &LifecycleDb| {
        db.catalog()
            .assert_column("public.items", "qty", "integer", true)
            .await;
        seeded_rows_kept(db, "public.items", 60).await;
    };
    let filled = async |db: &LifecycleDb| {
        db.exec("INSERT INTO public.items (sku) VALUES ('new version')")
            .await;
        let qty: i32 = db
            .scalar("SELECT qty FROM public.items WHERE sku = 'new version' LIMIT 1")
            .await;
        assert_eq!(
            qty, 7,
            "`down` fills the dropped column for the old version"
        );
    };
    let mut lc = Lifecycle::of(plan(
        "[[operations]]\nop = \"drop_column\"\ntable = \"public.items\"\ncolumn = \"qty\"\ndown = \"7\"\n",
    ))
    .schema(ITEMS)
    .workloads(Workloads {
        old: "INSERT INTO public.items (sku, qty) VALUES ('old', 3) RETURNING id;
              UPDATE public.items SET qty = qty + 1 WHERE id = 11 + (random() * 49)::int;",
        new: "INSERT INTO public.items (sku) VALUES ('new') RETURNING id;
              UPDATE public.items SET sku = 'new' WHERE id = 11 + (random() * 49)::int;",
        old_table: "public.items",
        new_table: "public.items",
        parity: "SELECT count(*) FROM public.items
                  WHERE qty IS NULL OR (sku = 'new' AND qty < 7) OR (sku = 'old' AND qty < 3)",
    });
    for phase in REVERSIBLE {
        lc = lc.after(Stage::RolledBack(phase), kept);
    }
    let lc = applied_from(lc, Phase::Expand, kept);
    let db = applied_from(lc, Phase::DualWrite, filled)
        .run_with_rollbacks()
        .await;
    db.catalog().assert_no_column("public.items", "qty").await;
    seeded_rows_kept(&db, "public.items", 60).await;
}

#[tokio::test]
async fn rename_column_keeps_both_names_in_step() {
    let both = async |db: &LifecycleDb| {
        db.catalog()
            .assert_column("public.items", "article", "text", true)
            .await;
        db.exec("UPDATE public.items SET sku = 'old-' || id WHERE id = 3")
            .await;
        let apart: i64 = db
            .scalar("SELECT count(*) FROM public.items WHERE article IS DISTINCT FROM sku")
            .await;
        assert_eq!(apart, 0, "both names hold the same value");
        seeded_rows_kept(db, "public.items", 60).await;
    };
    let lc = Lifecycle::of(plan(
        "[[operations]]\nop = \"rename_column\"\ntable = \"public.items\"\nfrom = \"sku\"\nto = \"article\"\n",
    ))
    .schema(ITEMS)
    .workloads(Workloads {
        old: "INSERT INTO public.items (sku, qty) VALUES ('o' || clock_timestamp(), 1) RETURNING id;
              UPDATE public.items SET sku = 'u' || clock_timestamp() WHERE id = 11 + (random() * 49)::int;",
        new: "INSERT INTO public.items (article, qty) VALUES ('n' || clock_timestamp(), 2) RETURNING id;
              UPDATE public.items SET article = 'v' || clock_timestamp() WHERE id = 11 + (random() * 49)::int;",
        old_table: "public.items",
        new_table: "public.items",
        parity: "SELECT count(*) FROM public.items WHERE article IS DISTINCT FROM sku",
    })
    .after(Stage::RolledBack(Phase::Expand), async |db: &LifecycleDb| {
        db.catalog().assert_no_column("public.items", "article").await;
        seeded_rows_kept(db, "public.items", 60).await;
    });
    let db = applied_from(lc, Phase::Backfill, both)
        .run_with_rollbacks()
        .await;
    db.catalog().assert_no_column("public.items", "sku").await;
    let moved: String = db
        .scalar("SELECT article FROM public.items WHERE id = 3")
        .await;
    assert_eq!(moved, "old-3");
}

#[tokio::test]
async fn sql_runs_in_its_phase_and_down_undoes_it() {
    let there = async |db: &LifecycleDb| {
        db.catalog().assert_table("public.item_events").await;
        seeded_rows_kept(db, "public.items", 60).await;
    };
    let lc = Lifecycle::of(plan(
        r#"
[[operations]]
op = "sql"
phase = "dual_write"
up = "CREATE TABLE public.item_events (id bigint PRIMARY KEY)"
down = "DROP TABLE public.item_events"
"#,
    ))
    .schema(ITEMS)
    .after(Stage::Applied(Phase::Expand), async |db: &LifecycleDb| {
        db.catalog().assert_no_table("public.item_events").await;
    })
    .after(
        Stage::RolledBack(Phase::DualWrite),
        async |db: &LifecycleDb| {
            db.catalog().assert_no_table("public.item_events").await;
            seeded_rows_kept(db, "public.items", 60).await;
        },
    );
    let db = applied_from(lc, Phase::DualWrite, there)
        .run_with_rollbacks()
        .await;
    db.catalog().assert_table("public.item_events").await;
}

/// The columns of `view` (`schema.name`) in order, as `name:type`.
async fn view_columns(db: &LifecycleDb, view: &str) -> Option<String> {
    db.scalar(&format!(
        "SELECT string_agg(attname || ':' || format_type(atttypid, atttypmod), ',' ORDER BY attnum)
           FROM pg_attribute WHERE attrelid = to_regclass('{view}') AND attnum > 0"
    ))
    .await
}

async fn version_schemas(db: &LifecycleDb) -> i64 {
    db.scalar("SELECT count(*) FROM pg_namespace WHERE nspname LIKE 'public_op_kind_%'")
        .await
}

/// `version_schemas = true`: from dual_write to contract an app that sets `search_path` to
/// `public_op_kind_old` works with the old shape and one that sets `public_op_kind_new` with the
/// new, each write reaching the other shape; rollback and contract drop the schemas.
#[tokio::test]
async fn version_schemas_serve_each_version_its_shape() {
    let ops = r#"
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
"#;
    let source = format!("version_schemas = true\n{HEAD}{ops}");
    let p = cutover::plan::Plan::parse("ops.toml", &source).unwrap_or_else(|e| panic!("{e}"));
    let absent = async |db: &LifecycleDb| {
        assert_eq!(version_schemas(db).await, 0, "no version schema");
        seeded_rows_kept(db, "public.orders", 40).await;
    };
    let served = async |db: &LifecycleDb| {
        assert_eq!(
            view_columns(db, "public_op_kind_old.orders")
                .await
                .as_deref(),
            Some("id:bigint,total:numeric(12,2),note:text")
        );
        assert_eq!(
            view_columns(db, "public_op_kind_new.orders")
                .await
                .as_deref(),
            Some("id:bigint,total:bigint,remark:text")
        );
        db.exec(
            "BEGIN; SET LOCAL search_path = public_op_kind_old;
             INSERT INTO orders (total, note) VALUES (2.50, 'old-v'); COMMIT;
             BEGIN; SET LOCAL search_path = public_op_kind_new;
             INSERT INTO orders (total, remark) VALUES (777, 'new-v'); COMMIT;",
        )
        .await;
        let wrong: i64 = db
            .scalar(
                "SELECT count(*) FROM public.orders WHERE note IN ('old-v', 'new-v')
                   AND (total_new IS DISTINCT FROM round(total * 100)::bigint OR remark IS DISTINCT FROM note)",
            )
            .await;
        assert_eq!(wrong, 0, "each version's writes reach the other shape");
        let new_v: String = db
            .scalar("SELECT total::text FROM public.orders WHERE note = 'new-v' LIMIT 1")
            .await;
        assert_eq!(new_v, "7.77");
        seeded_rows_kept(db, "public.orders", 40).await;
    };
    let lc = Lifecycle::of(p)
        .schema(
            "CREATE TABLE public.orders (id bigserial PRIMARY KEY, total numeric(12,2), note text);
             INSERT INTO public.orders (total, note) SELECT g / 4.0, 'n' || g FROM generate_series(1, 40) g;",
        )
        .after(Stage::Applied(Phase::Expand), absent)
        .after(Stage::RolledBack(Phase::DualWrite), absent);
    let db = applied_from(lc, Phase::DualWrite, served)
        .run_with_rollbacks()
        .await;
    assert_eq!(version_schemas(&db).await, 0, "contract drops them");
    seeded_rows_kept(&db, "public.orders", 40).await;
}
