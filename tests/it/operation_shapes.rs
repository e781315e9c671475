//! Operations that give a column a new shape through a second column kept in step — a type
//! change, a split, a move to another table — each through the lifecycle harness with an
//! old-version workload writing through the old shape and, once the read switch is applied, a
//! new-version one through the new shape.

use cutover::plan::Phase;

use crate::common::lifecycle::{Lifecycle, LifecycleDb, Stage};
use crate::common::workload::Workloads;
use crate::operation_kinds::{plan, seeded_rows_kept};

/// `name:type:nullable` of every column of `table`, in order.
async fn columns(db: &LifecycleDb, table: &str) -> String {
    db.scalar(&format!(
        "SELECT string_agg(attname || ':' || format_type(atttypid, atttypmod) || ':' || NOT attnotnull, ',' ORDER BY attnum)
           FROM pg_attribute WHERE attrelid = '{table}'::regclass AND attnum > 0 AND NOT attisdropped"
    ))
    .await
}

/// numeric dollars → bigint cents (`up`/`down`) and int → bigint (the cast alone), both NOT
/// NULL; an update of another column on a row the backfill has not reached yet must not break
/// the NOT VALID not-null checks of the new columns.
#[tokio::test]
async fn alter_column_type_change_keeps_both_types_in_step() {
    let ops = r#"
[[operations]]
op = "alter_column"
table = "public.orders"
column = "total"
type = "bigint"
up = "round(total * 100)::bigint"
down = "total / 100.0"

[[operations]]
op = "alter_column"
table = "public.orders"
column = "qty"
type = "bigint"
"#;
    let expanded = async |db: &LifecycleDb| {
        assert_eq!(
            columns(db, "public.orders").await,
            "id:bigint:false,total:numeric(12,2):false,qty:integer:false,status:text:true,total_new:bigint:true,qty_new:bigint:true"
        );
        seeded_rows_kept(db, "public.orders", 60).await;
    };
    let db = Lifecycle::of(plan(ops))
        .schema(
            "CREATE TABLE public.orders (id bigserial PRIMARY KEY, total numeric(12,2) NOT NULL,
                 qty int NOT NULL, status text);
             INSERT INTO public.orders (total, qty) SELECT g * 1.25, g FROM generate_series(1, 60) g;",
        )
        .workloads(Workloads {
            old: "INSERT INTO public.orders (total, qty, status) VALUES (12.34, 3, 'old') RETURNING id;
                  UPDATE public.orders SET total = total + 1, qty = qty + 1 WHERE id = 11 + (random() * 49)::int;
                  UPDATE public.orders SET status = 'touched' WHERE id = 11 + (random() * 49)::int;",
            new: "INSERT INTO public.orders (total_new, qty_new, status) VALUES (5555, 7, 'new') RETURNING id;
                  UPDATE public.orders SET total_new = total_new + 100 WHERE id = 11 + (random() * 49)::int;
                  UPDATE public.orders SET status = 'touched' WHERE id = 11 + (random() * 49)::int;",
            old_table: "public.orders",
            new_table: "public.orders",
            parity: "SELECT count(*) FROM public.orders
                      WHERE total_new IS DISTINCT FROM round(total * 100)::bigint
                         OR qty_new IS DISTINCT FROM qty",
        })
        .after(Stage::Applied(Phase::Expand), expanded)
        .after(Stage::RolledBack(Phase::Expand), async |db: &LifecycleDb| {
            assert_eq!(
                columns(db, "public.orders").await,
                "id:bigint:false,total:numeric(12,2):false,qty:integer:false,status:text:true"
            );
            seeded_rows_kept(db, "public.orders", 60).await;
        })
        .after(
            Stage::RolledBack(Phase::ReadSwitch),
            async |db: &LifecycleDb| {
                let off: i64 = db
                    .scalar("SELECT count(*) FROM public.orders WHERE status = 'new' AND (total, qty) <> (55.55, 7)")
                    .await;
                assert_eq!(off, 0, "the new version's writes read back in the old shape");
            },
        )
        .run_with_rollbacks()
        .await;
    assert_eq!(
        columns(&db, "public.orders").await,
        "id:bigint:false,status:text:true,total:bigint:false,qty:bigint:false"
    );
    let new_rows: (i64, i64) = (
        db.scalar("SELECT count(*) FROM public.orders WHERE status = 'new'")
            .await,
        db.scalar(
            "SELECT count(*) FROM public.orders WHERE status = 'new' AND total = 5555 AND qty = 7",
        )
        .await,
    );
    assert!(new_rows.0 > 0, "the new version wrote");
    assert_eq!(new_rows.0, new_rows.1, "its values are the final ones");
    seeded_rows_kept(&db, "public.orders", 60).await;
}

#[tokio::test]
async fn split_column_keeps_the_old_column_rebuilt() {
    let ops = r#"
[[operations]]
op = "split_column"
table = "public.people"
column = "full_name"
columns = [
  { name = "first_name", type = "text", up = "split_part(full_name, ' ', 1)" },
  { name = "last_name", type = "text", up = "split_part(full_name, ' ', 2)" },
]
down = "first_name || ' ' || last_name"
"#;
    let db = Lifecycle::of(plan(ops))
        .schema(
            "CREATE TABLE public.people (id bigserial PRIMARY KEY, full_name text, seen int);
             INSERT INTO public.people (full_name) SELECT 'first' || g || ' last' || g FROM generate_series(1, 60) g;",
        )
        .workloads(Workloads {
            old: "INSERT INTO public.people (full_name) VALUES ('Ada Lovelace') RETURNING id;
                  UPDATE public.people SET full_name = 'Alan Turing' WHERE id = 11 + (random() * 49)::int;
                  UPDATE public.people SET seen = 1 WHERE id = 11 + (random() * 49)::int;",
            new: "INSERT INTO public.people (first_name, last_name) VALUES ('Grace', 'Hopper') RETURNING id;
                  UPDATE public.people SET last_name = 'Liskov' WHERE id = 11 + (random() * 49)::int;
                  UPDATE public.people SET seen = 2 WHERE id = 11 + (random() * 49)::int;",
            old_table: "public.people",
            new_table: "public.people",
            parity: "SELECT count(*) FROM public.people
                      WHERE first_name IS DISTINCT FROM split_part(full_name, ' ', 1)
                         OR last_name IS DISTINCT FROM split_part(full_name, ' ', 2)",
        })
        .after(
            Stage::RolledBack(Phase::ReadSwitch),
            async |db: &LifecycleDb| {
                let hopper: bool = db
                    .scalar("SELECT EXISTS (SELECT 1 FROM public.people WHERE full_name = 'Grace Hopper')")
                    .await;
                assert!(hopper, "the new version's rows read back in the old shape");
            },
        )
        .after(Stage::RolledBack(Phase::Expand), async |db: &LifecycleDb| {
            assert_eq!(
                columns(db, "public.people").await,
                "id:bigint:false,full_name:text:true,seen:integer:true"
            );
        })
        .run_with_rollbacks()
        .await;
    assert_eq!(
        columns(&db, "public.people").await,
        "id:bigint:false,seen:integer:true,first_name:text:true,last_name:text:true"
    );
    seeded_rows_kept(&db, "public.people", 60).await;
}

#[tokio::test]
async fn move_column_keeps_both_tables_in_step() {
    let ops = r#"
[[operations]]
op = "move_column"
table = "public.users"
column = "bio"
type = "text"
to_table = "public.profiles"
join = "user_id"
"#;
    let db = Lifecycle::of(plan(ops))
        .schema(
            "CREATE TABLE public.users (id bigserial PRIMARY KEY, bio text, seen int);
             CREATE TABLE public.profiles (id bigserial PRIMARY KEY,
                 user_id bigint NOT NULL REFERENCES public.users (id));
             INSERT INTO public.users (bio) SELECT 'bio ' || g FROM generate_series(1, 60) g;
             INSERT INTO public.profiles (user_id) SELECT id FROM public.users;",
        )
        .workloads(Workloads {
            old: "INSERT INTO public.users (bio) VALUES ('old') RETURNING id;
                  INSERT INTO public.profiles (user_id) VALUES (currval('public.users_id_seq'));
                  UPDATE public.users SET bio = 'old ' || clock_timestamp() WHERE id = 11 + (random() * 49)::int;
                  UPDATE public.users SET seen = 1 WHERE id = 11 + (random() * 49)::int;",
            new: "INSERT INTO public.users DEFAULT VALUES RETURNING id;
                  INSERT INTO public.profiles (user_id, bio) VALUES (currval('public.users_id_seq'), 'fresh');
                  UPDATE public.profiles SET bio = 'new ' || clock_timestamp() WHERE user_id = 11 + (random() * 49)::int;",
            old_table: "public.users",
            new_table: "public.users",
            parity: "SELECT count(*) FROM public.profiles p JOIN public.users u ON u.id = p.user_id
                      WHERE p.bio IS DISTINCT FROM u.bio",
        })
        .after(
            Stage::RolledBack(Phase::ReadSwitch),
            async |db: &LifecycleDb| {
                let fresh: bool = db
                    .scalar("SELECT EXISTS (SELECT 1 FROM public.users WHERE bio = 'fresh')")
                    .await;
                assert!(fresh, "the new version's rows read back in the old shape");
            },
        )
        .after(Stage::RolledBack(Phase::Expand), async |db: &LifecycleDb| {
            assert_eq!(
                columns(db, "public.profiles").await,
                "id:bigint:false,user_id:bigint:false"
            );
        })
        .run_with_rollbacks()
        .await;
    assert_eq!(
        columns(&db, "public.users").await,
        "id:bigint:false,seen:integer:true"
    );
    let fresh: i64 = db
        .scalar("SELECT count(*) FROM public.profiles WHERE bio = 'fresh'")
        .await;
    assert!(fresh > 0, "the new version's rows are in the final shape");
    seeded_rows_kept(&db, "public.users", 60).await;
}

/// `version_schemas = true` with a moved column and a renamed table: from dual_write on, an app
/// on `public_op_kind_old` sees the old names and shapes, one on `public_op_kind_new` the new;
/// each one's writes through its views reach the other's.
#[tokio::test]
async fn version_schemas_cover_moved_columns_and_renamed_tables() {
    let ops = r#"
[[operations]]
op = "move_column"
table = "public.users"
column = "bio"
type = "text"
to_table = "public.profiles"
join = "user_id"

[[operations]]
op = "rename_table"
from = "public.notes"
to = "public.memos"
"#;
    let source = format!(
        "version_schemas = true\n{}{ops}",
        crate::operation_kinds::HEAD
    );
    let p = cutover::plan::Plan::parse("ops.toml", &source).unwrap_or_else(|e| panic!("{e}"));
    let views = async |db: &LifecycleDb| -> Vec<String> {
        db.scalar::<Option<String>>(
            "SELECT string_agg(n.nspname || '.' || c.relname || '(' ||
                       (SELECT string_agg(attname, ',' ORDER BY attnum) FROM pg_attribute
                         WHERE attrelid = c.oid AND attnum > 0) || ')', ' ')
               FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
              WHERE n.nspname LIKE 'public_op_kind_%'",
        )
        .await
        .map(|s| {
            let mut views: Vec<String> = s.split(' ').map(str::to_string).collect();
            views.sort_unstable();
            views
        })
        .unwrap_or_default()
    };
    let served = async move |db: &LifecycleDb| {
        assert_eq!(
            views(db).await,
            [
                "public_op_kind_new.memos(id,body)",
                "public_op_kind_new.profiles(id,user_id,bio)",
                "public_op_kind_new.users(id)",
                "public_op_kind_old.notes(id,body)",
                "public_op_kind_old.profiles(id,user_id)",
                "public_op_kind_old.users(id,bio)",
            ]
        );
        db.exec(
            "BEGIN; SET LOCAL search_path = public_op_kind_old;
             INSERT INTO notes (body) VALUES ('old-v');
             UPDATE users SET bio = 'old-v' WHERE id = 1; COMMIT;
             BEGIN; SET LOCAL search_path = public_op_kind_new;
             INSERT INTO memos (body) VALUES ('new-v');
             UPDATE profiles SET bio = 'new-v' WHERE user_id = 2; COMMIT;",
        )
        .await;
        let reached: bool = db
            .scalar(
                "SELECT (SELECT count(*) FROM public.memos WHERE body IN ('old-v', 'new-v')) >= 2
                    AND (SELECT bio FROM public.profiles WHERE user_id = 1) = 'old-v'
                    AND (SELECT bio FROM public.users WHERE id = 2) = 'new-v'",
            )
            .await;
        assert!(reached, "each version's writes reach the other shape");
    };
    let none = async move |db: &LifecycleDb| {
        assert_eq!(views(db).await, Vec::<String>::new(), "no version schema");
    };
    let mut lc = Lifecycle::of(p)
        .schema(
            "CREATE TABLE public.users (id bigserial PRIMARY KEY, bio text);
             CREATE TABLE public.profiles (id bigserial PRIMARY KEY,
                 user_id bigint NOT NULL REFERENCES public.users (id));
             INSERT INTO public.users (bio) SELECT 'bio ' || g FROM generate_series(1, 20) g;
             INSERT INTO public.profiles (user_id) SELECT id FROM public.users;
             CREATE TABLE public.notes (id bigserial PRIMARY KEY, body text);
             INSERT INTO public.notes (body) SELECT 'n' || g FROM generate_series(1, 20) g;",
        )
        .after(Stage::Applied(Phase::Expand), none)
        .after(Stage::RolledBack(Phase::DualWrite), none);
    for phase in [Phase::DualWrite, Phase::Backfill, Phase::ReadSwitch] {
        lc = lc.after(Stage::Applied(phase), served);
    }
    let db = lc.run_with_rollbacks().await;
    assert_eq!(
        views(&db).await,
        Vec::<String>::new(),
        "contract drops them"
    );
    seeded_rows_kept(&db, "public.memos", 20).await;
}

/// The harness itself: a rollback that deletes what the old version wrote is caught.
#[tokio::test]
#[should_panic(expected = "rows written by the workloads missing from public.items")]
async fn the_harness_catches_a_rollback_that_loses_writes() {
    Lifecycle::of(plan(
        r#"
[[operations]]
op = "sql"
phase = "dual_write"
up = "SELECT 1"
down = "DELETE FROM public.items WHERE id > 10"
"#,
    ))
    .schema("CREATE TABLE public.items (id bigserial PRIMARY KEY, sku text)")
    .workloads(Workloads {
        old: "INSERT INTO public.items (sku) VALUES ('old') RETURNING id",
        new: "INSERT INTO public.items (sku) VALUES ('new') RETURNING id",
        old_table: "public.items",
        new_table: "public.items",
        parity: "SELECT 0::bigint",
    })
    .run_with_rollbacks()
    .await;
}

/// The harness itself: a parity query that finds a row fails the lifecycle from the backfill on.
#[tokio::test]
#[should_panic(expected = "parity at Applied(Backfill)")]
async fn the_harness_catches_broken_parity() {
    Lifecycle::of(plan(
        "[[operations]]\nop = \"add_column\"\ntable = \"public.items\"\ncolumn = \"code\"\ntype = \"text\"\nup = \"'c-' || sku\"\n",
    ))
    .schema("CREATE TABLE public.items (id bigserial PRIMARY KEY, sku text)")
    .workloads(Workloads {
        old: "INSERT INTO public.items (sku) VALUES ('old') RETURNING id",
        new: "INSERT INTO public.items (sku, code) VALUES ('new', 'c-new') RETURNING id",
        old_table: "public.items",
        new_table: "public.items",
        parity: "SELECT count(*) FROM public.items WHERE code IS DISTINCT FROM 'wrong'",
    })
    .run_with_rollbacks()
    .await;
}
