//! `cutover plan import`: imported pgroll and ORM-written migrations run through the whole
//! lifecycle (apply, roll back, re-apply each phase, then contract) on real PostgreSQL; the
//! catalog afterwards is the one pgroll's `complete` (or the ORM's SQL) would leave, and no
//! row is lost.

use std::path::Path;

use cutover::plan::import::{self, Header, Item};
use cutover::plan::Plan;

use cutover::plan::Phase;

use crate::common::cli;
use crate::common::lifecycle::{Lifecycle, LifecycleDb, Stage};

fn fixture(rel: &str) -> (String, String) {
    let path = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/import")
        .join(rel);
    let text = std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{rel}: {e}"));
    (path.display().to_string(), text)
}

fn plan(items: &[Item]) -> Plan {
    let header = Header {
        id: "imported".into(),
        roster: Vec::new(),
        login: "postgres".into(),
        command: "cutover plan import".into(),
    };
    import::check_renames(items)
        .and_then(|()| import::check_backfills(items))
        .unwrap_or_else(|e| panic!("{e}"));
    let text = import::render(items, &header, "test").expect("render");
    Plan::parse("imported.toml", &text).unwrap_or_else(|e| panic!("{e}\n{text}"))
}

fn pgroll(rel: &str) -> Plan {
    let (path, text) = fixture(rel);
    plan(
        &import::pgroll::import(&path, &text)
            .unwrap_or_else(|e| panic!("{e}"))
            .items,
    )
}

fn sql(rel: &str) -> Plan {
    sql_with(rel, &[])
}

fn sql_with(rel: &str, downs: &[(&str, &str)]) -> Plan {
    let (path, text) = fixture(rel);
    let downs: Vec<(String, String)> = downs
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect();
    plan(
        &import::sql::import(&path, &text, &downs)
            .unwrap_or_else(|e| panic!("{e}"))
            .items,
    )
}

/// Rolls every reversible phase back at once (the catalog must be the one found), then on a
/// fresh database applies, rolls back and re-applies each phase in turn before contract (the
/// harness compares the catalog at every step).
async fn lifecycle(plan: impl Fn() -> Plan, schema: &str) -> LifecycleDb {
    Lifecycle::of(plan())
        .schema(schema)
        .run_and_roll_back_all()
        .await;
    Lifecycle::of(plan())
        .schema(schema)
        .run_with_rollbacks()
        .await
}

/// Row counts of `tables` (SQL names).
async fn counts(db: &LifecycleDb, tables: &[&str]) -> Vec<i64> {
    let mut out = Vec::new();
    for t in tables {
        out.push(db.scalar(&format!("SELECT count(*) FROM {t}")).await);
    }
    out
}

#[tokio::test]
async fn pgroll_create_table_leaves_constraints_identity_and_generated_columns() {
    let db = lifecycle(|| pgroll("pgroll/01_create_tables.yaml"), "SELECT 1").await;
    let cat = db.catalog();
    cat.assert_column("customers", "email", "text", false).await;
    cat.assert_column("customers", "nickname", "text", true)
        .await;
    cat.assert_column("invoices", "dollars", "numeric", true)
        .await;
    cat.assert_constraint("invoices", "invoices_pk", true).await;
    cat.assert_constraint("invoices", "invoices_customer_fk", true)
        .await;
    cat.assert_constraint("invoices", "invoices_cents_positive", true)
        .await;
    cat.assert_constraint("invoices", "invoices_note_unique", true)
        .await;
    let identity: String = db
        .scalar("SELECT attidentity::text FROM pg_attribute WHERE attrelid = 'invoices'::regclass AND attname = 'id'")
        .await;
    assert_eq!(identity, "d");
    let generated: String = db
        .scalar("SELECT attgenerated::text FROM pg_attribute WHERE attrelid = 'invoices'::regclass AND attname = 'dollars'")
        .await;
    assert_eq!(generated, "s");
}

#[tokio::test]
async fn pgroll_column_changes_end_as_complete_would_leave_them() {
    let db = lifecycle(
        || pgroll("pgroll/02_columns.yaml"),
        "CREATE TABLE customers (id bigserial PRIMARY KEY, email text NOT NULL UNIQUE,
                                     nickname text DEFAULT 'anon');
             INSERT INTO customers (email, nickname)
             SELECT 'c' || g || '@example.com', repeat('n', g % 80) FROM generate_series(1, 300) g;",
    )
    .await;
    let cat = db.catalog();
    cat.assert_column("customers", "country", "text", false)
        .await;
    cat.assert_column("customers", "age", "integer", true).await;
    cat.assert_column("customers", "nickname", "character varying(64)", true)
        .await;
    cat.assert_constraint("customers", "customers_age_sane", true)
        .await;
    cat.assert_no_column("customers", "nickname_new").await;
    let rows: i64 = db.scalar("SELECT count(*) FROM customers").await;
    assert_eq!(rows, 300, "no row lost");
    let longest: i32 = db
        .scalar("SELECT max(length(nickname)) FROM customers")
        .await;
    assert!(longest <= 64);
    let unknown: i64 = db
        .scalar("SELECT count(*) FROM customers WHERE country = 'unknown'")
        .await;
    assert_eq!(unknown, 300);
}

#[tokio::test]
async fn prisma_sql_ends_with_its_schema_and_every_row() {
    let db = lifecycle(
        || sql("sql/prisma_migration.sql"),
        "CREATE TABLE \"User\" (id serial PRIMARY KEY, email text);
             CREATE TABLE \"Post\" (id serial PRIMARY KEY, \"authorId\" int NOT NULL);
             INSERT INTO \"User\" (email) SELECT 'u' || g FROM generate_series(1, 200) g;
             INSERT INTO \"Post\" (\"authorId\") SELECT 1 + g % 200 FROM generate_series(1, 400) g;",
    )
    .await;
    let cat = db.catalog();
    cat.assert_column("\"User\"", "nickname", "text", true)
        .await;
    cat.assert_column("\"User\"", "email", "text", false).await;
    cat.assert_valid_index("\"User_nickname_key\"").await;
    cat.assert_constraint("\"Post\"", "Post_authorId_fkey", true)
        .await;
    cat.assert_column(
        "\"Tag\"",
        "createdAt",
        "timestamp(3) without time zone",
        false,
    )
    .await;
    cat.assert_constraint("\"Tag\"", "Tag_pkey", true).await;
    let posts: i64 = db.scalar("SELECT count(*) FROM \"Post\"").await;
    assert_eq!(posts, 400);
}

#[tokio::test]
async fn pgroll_alterations_indexes_constraints_and_replica_identity() {
    let db = lifecycle(
        || pgroll("pgroll/03_alter.json"),
        "CREATE TABLE customers (id bigserial PRIMARY KEY, email text NOT NULL UNIQUE DEFAULT 'none',
                                 nickname varchar(64), country text);
         COMMENT ON COLUMN customers.email IS 'login';
         CREATE TABLE invoices (id bigint PRIMARY KEY, customer_id bigint REFERENCES customers (id),
                                cents bigint NOT NULL);
         INSERT INTO customers (email, nickname, country)
         SELECT 'c' || g || '@example.com', 'n' || g, CASE WHEN g % 3 = 0 THEN NULL ELSE 'se' END
           FROM generate_series(1, 300) g;
         INSERT INTO invoices SELECT g, 1 + g % 300, g * 10 FROM generate_series(1, 500) g;",
    )
    .await;
    let cat = db.catalog();
    cat.assert_column("customers", "country", "text", false)
        .await;
    cat.assert_valid_index("customers_country_idx").await;
    cat.assert_valid_index("customers_email_lower_idx").await;
    cat.assert_constraint("invoices", "invoices_cents_cap", true)
        .await;
    cat.assert_constraint("customers", "customers_nick_country_key", true)
        .await;
    let filled: i64 = db
        .scalar("SELECT count(*) FROM customers WHERE country = 'unknown'")
        .await;
    assert_eq!(filled, 100, "the `up` filled the NULL countries");
    let default: Option<String> = db
        .scalar("SELECT pg_get_expr(adbin, adrelid) FROM pg_attrdef WHERE adrelid = 'customers'::regclass AND adnum = (SELECT attnum FROM pg_attribute WHERE attrelid = 'customers'::regclass AND attname = 'email') UNION ALL SELECT NULL LIMIT 1")
        .await;
    assert_eq!(default, None, "`default: null` dropped the default");
    let comment: Option<String> = db
        .scalar("SELECT col_description('customers'::regclass, 2)")
        .await;
    assert_eq!(comment, None, "`comment: null` dropped the comment");
    let identity: String = db
        .scalar("SELECT relreplident::text FROM pg_class WHERE oid = 'customers'::regclass")
        .await;
    assert_eq!(identity, "f");
    let opclass: String = db
        .scalar("SELECT pg_get_indexdef('customers_email_lower_idx'::regclass)")
        .await;
    assert!(
        opclass.contains("text_pattern_ops DESC") && opclass.contains("fillfactor='70'"),
        "{opclass}"
    );
    assert_eq!(counts(&db, &["customers", "invoices"]).await, [300, 500]);
}

#[tokio::test]
async fn pgroll_renames_and_drops_contract_to_the_final_names() {
    let db = lifecycle(
        || pgroll("pgroll/04_contract.yaml"),
        "CREATE TABLE customers (id bigserial PRIMARY KEY, email text NOT NULL,
                                 nickname varchar(64), country text NOT NULL DEFAULT 'unknown', age integer,
                                 CONSTRAINT customers_nick_country_key UNIQUE (nickname, country));
         CREATE INDEX customers_country_idx ON customers (country);
         CREATE TABLE invoices (id bigint PRIMARY KEY, cents bigint NOT NULL, note text,
                                CONSTRAINT invoices_cents_cap CHECK (cents < 100000000));
         INSERT INTO customers (email, nickname, age)
         SELECT 'c' || g, 'n' || g, g % 90 FROM generate_series(1, 300) g;
         INSERT INTO invoices SELECT g, g * 10, 'note ' || g FROM generate_series(1, 500) g;",
    )
    .await;
    let cat = db.catalog();
    cat.assert_column("invoices", "memo", "text", true).await;
    cat.assert_no_column("invoices", "note").await;
    cat.assert_no_column("customers", "age").await;
    cat.assert_no_index("customers_country_idx").await;
    cat.assert_constraint("invoices", "invoices_cents_upper_bound", true)
        .await;
    cat.assert_no_constraint("invoices", "invoices_cents_cap")
        .await;
    cat.assert_no_constraint("customers", "customers_nick_country_key")
        .await;
    let notes: i64 = db
        .scalar("SELECT count(*) FROM invoices WHERE memo = 'note ' || id")
        .await;
    assert_eq!(notes, 500, "every note kept under its new name");
    assert_eq!(counts(&db, &["customers", "invoices"]).await, [300, 500]);
}

#[tokio::test]
async fn pgroll_table_rename_keeps_the_old_name_until_contract() {
    let db = Lifecycle::of(pgroll("pgroll/07_rename_table.yaml"))
        .schema(
            "CREATE TABLE invoices (id bigint PRIMARY KEY, memo text);
             INSERT INTO invoices SELECT g, 'm' || g FROM generate_series(1, 500) g;",
        )
        .after(Stage::Applied(Phase::ReadSwitch), async |db| {
            db.exec(
                "INSERT INTO invoices SELECT max(id) + 1, 'through the old name' FROM invoices",
            )
            .await;
            let (rows, last): (i64, i64) = (
                db.scalar("SELECT count(*) FROM bills").await,
                db.scalar("SELECT max(id) FROM bills").await,
            );
            assert_eq!(rows, last, "the old name writes into the renamed table");
        })
        .run_with_rollbacks()
        .await;
    let cat = db.catalog();
    cat.assert_no_table("invoices").await;
    cat.assert_valid_index("bills_memo_idx").await;
    assert_eq!(
        counts(&db, &["bills"]).await,
        [502],
        "no row lost (one write per read switch)"
    );
}

#[tokio::test]
async fn pgroll_raw_sql_runs_and_rolls_back_with_its_down() {
    let db = lifecycle(|| pgroll("pgroll/05_raw.yaml"), "SELECT 1").await;
    db.catalog()
        .assert_column("audit_log", "at", "timestamp with time zone", false)
        .await;
    db.exec("INSERT INTO audit_log DEFAULT VALUES").await;
}

#[tokio::test]
async fn pgroll_primary_key_attaches_at_contract_and_a_table_drops() {
    let db = lifecycle(
        || pgroll("pgroll/06_drop.yaml"),
        "CREATE TABLE customers (id bigint NOT NULL, email text);
         INSERT INTO customers SELECT g, 'c' || g FROM generate_series(1, 300) g;
         CREATE TABLE audit_log (id bigserial PRIMARY KEY, at timestamptz NOT NULL DEFAULT now());
         INSERT INTO audit_log DEFAULT VALUES;",
    )
    .await;
    let cat = db.catalog();
    cat.assert_no_table("audit_log").await;
    let pk: String = db
        .scalar("SELECT contype::text FROM pg_constraint WHERE conname = 'customers_email_pk_candidate'")
        .await;
    assert_eq!(pk, "p");
    assert_eq!(counts(&db, &["customers"]).await, [300]);
}

#[tokio::test]
async fn flyway_sql_adds_drops_and_flags_what_it_cannot_map() {
    // The extension is already installed, as on most servers a Flyway history has reached:
    // `CREATE EXTENSION IF NOT EXISTS` is raw SQL whose rollback does nothing.
    let db = lifecycle(
        || sql("sql/V3__flyway_orders.sql"),
        "CREATE EXTENSION IF NOT EXISTS pg_trgm;
         CREATE TABLE orders (id bigserial PRIMARY KEY, ref text, legacy_code text, total numeric NOT NULL,
                              CONSTRAINT orders_total_check CHECK (total >= 0));
         INSERT INTO orders (ref, legacy_code, total)
         SELECT 'r' || g, 'L' || g, g FROM generate_series(1, 400) g;",
    )
    .await;
    let cat = db.catalog();
    cat.assert_column("orders", "status", "text", false).await;
    cat.assert_no_column("orders", "legacy_code").await;
    cat.assert_constraint("orders", "orders_ref_unique", true)
        .await;
    cat.assert_constraint("orders", "orders_total_positive", true)
        .await;
    let unlogged: String = db
        .scalar("SELECT relpersistence::text FROM pg_class WHERE oid = 'orders'::regclass")
        .await;
    assert_eq!(unlogged, "u");
    let new: i64 = db
        .scalar("SELECT count(*) FROM orders WHERE status = 'new'")
        .await;
    assert_eq!(new, 400);
    assert_eq!(counts(&db, &["orders"]).await, [400]);
}

#[tokio::test]
async fn alembic_sql_changes_a_type_with_its_using_and_given_down() {
    let db = lifecycle(
        || sql_with("sql/alembic_3f2a.sql", &[("accounts.balance", "balance / 100.0")]),
        "CREATE TABLE accounts (id bigserial PRIMARY KEY, email text, balance numeric(12,2) NOT NULL DEFAULT 0);
         CREATE TABLE alembic_version (version_num varchar(32) PRIMARY KEY);
         INSERT INTO alembic_version VALUES ('1a2b');
         INSERT INTO accounts (email, balance) SELECT 'a' || g, g / 4.0 FROM generate_series(1, 400) g;",
    )
    .await;
    let cat = db.catalog();
    cat.assert_column("accounts", "balance", "bigint", false)
        .await;
    cat.assert_column("accounts", "balance_cents", "bigint", true)
        .await;
    cat.assert_valid_index("ix_accounts_email").await;
    cat.assert_constraint("accounts", "ck_accounts_balance", true)
        .await;
    let wrong: i64 = db
        .scalar("SELECT count(*) FROM accounts WHERE balance <> (id * 25)")
        .await;
    assert_eq!(wrong, 0, "every balance went through USING");
    let version: String = db.scalar("SELECT version_num FROM alembic_version").await;
    assert_eq!(version, "3f2a");
    assert_eq!(counts(&db, &["accounts"]).await, [400]);
}

#[tokio::test]
async fn django_sql_adds_a_deferrable_foreign_key_and_widens_a_column() {
    let db = lifecycle(
        || sql("sql/django_0002_book.sql"),
        "CREATE TABLE library_author (id bigserial PRIMARY KEY, name text NOT NULL);
         CREATE TABLE library_book (id bigserial PRIMARY KEY, title varchar(200) NOT NULL);
         INSERT INTO library_author (name) SELECT 'a' || g FROM generate_series(1, 50) g;
         INSERT INTO library_book (title) SELECT 'book ' || g FROM generate_series(1, 400) g;",
    )
    .await;
    let cat = db.catalog();
    cat.assert_column("library_book", "pages", "integer", false)
        .await;
    cat.assert_column("library_book", "author_id", "bigint", true)
        .await;
    cat.assert_column("library_book", "title", "character varying(300)", false)
        .await;
    let fk = cat
        .constraint(
            "library_book",
            "library_book_author_id_2d7c5a1e_fk_library_author_id",
        )
        .await
        .expect("the foreign key");
    assert!(
        fk.validated && fk.definition.contains("DEFERRABLE INITIALLY DEFERRED"),
        "{fk:?}"
    );
    cat.assert_valid_index("library_book_author_id_2d7c5a1e")
        .await;
    let default: i64 = db
        .scalar("SELECT count(*) FROM pg_attrdef WHERE adrelid = 'library_book'::regclass")
        .await;
    assert_eq!(default, 1, "only the id's sequence default is left");
    let titles: i64 = db
        .scalar("SELECT count(*) FROM library_book WHERE title = 'book ' || id")
        .await;
    assert_eq!(titles, 400);
    let identity: String = db
        .scalar("SELECT attidentity::text FROM pg_attribute WHERE attrelid = 'library_review'::regclass AND attname = 'id'")
        .await;
    assert_eq!(identity, "d", "the identity column, kept as SQL");
    assert_eq!(
        counts(&db, &["library_author", "library_book"]).await,
        [50, 400]
    );
}

#[tokio::test]
async fn rails_structure_creates_a_table_renames_and_links_it() {
    let db = lifecycle(
        || sql("sql/rails_structure.sql"),
        "CREATE TABLE public.posts (id bigserial PRIMARY KEY, headline text);
         CREATE TABLE public.schema_migrations (version varchar PRIMARY KEY);
         INSERT INTO public.posts (headline) SELECT 'post ' || g FROM generate_series(1, 300) g;",
    )
    .await;
    let cat = db.catalog();
    cat.assert_column("comments", "id", "bigint", false).await;
    cat.assert_column("comments", "body", "text", true).await;
    cat.assert_constraint("comments", "comments_pkey", true)
        .await;
    cat.assert_constraint("comments", "fk_rails_2fd19c0db7", true)
        .await;
    cat.assert_valid_index("index_comments_on_post_id").await;
    cat.assert_column("posts", "title", "text", true).await;
    cat.assert_no_column("posts", "headline").await;
    let titles: i64 = db
        .scalar("SELECT count(*) FROM posts WHERE title = 'post ' || id")
        .await;
    assert_eq!(titles, 300);
    let version: i64 = db
        .scalar("SELECT count(*) FROM schema_migrations WHERE version = '20261201120000'")
        .await;
    assert_eq!(version, 1);
}

/// `CREATE TABLE IF NOT EXISTS` of a table that is already there: its rollback must not drop
/// it (nor its rows); the new one is dropped by the rollback and kept by contract.
#[tokio::test]
async fn create_table_if_not_exists_rolls_back_only_what_it_created() {
    let db = lifecycle(
        || sql("sql/if_not_exists.sql"),
        "CREATE TABLE public.events (id bigint PRIMARY KEY, at timestamptz);
         INSERT INTO public.events SELECT g, now() FROM generate_series(1, 300) g;",
    )
    .await;
    let cat = db.catalog();
    cat.assert_column("audit", "note", "text", true).await;
    assert_eq!(
        counts(&db, &["public.events", "public.audit"]).await,
        [300, 0]
    );
    let memos: i64 = db
        .scalar("SELECT count(*) FROM pg_proc WHERE proname LIKE '%cutover_prev%'")
        .await;
    assert_eq!(memos, 0, "contract drops the memos");
}

/// `SET UNLOGGED` / `SET LOGGED`: every rollback puts back the persistence found (the harness
/// compares it), contract keeps the new one.
#[tokio::test]
async fn set_logged_and_unlogged_roll_back_to_the_persistence_found() {
    let db = lifecycle(
        || sql("sql/unlogged.sql"),
        "CREATE TABLE public.staging (id bigint PRIMARY KEY);
         CREATE UNLOGGED TABLE public.loaded (id bigint PRIMARY KEY);
         INSERT INTO public.staging SELECT generate_series(1, 300);
         INSERT INTO public.loaded SELECT generate_series(1, 300);",
    )
    .await;
    let persistence: String = db
        .scalar(
            "SELECT string_agg(relname || ' ' || relpersistence::text, ', ' ORDER BY relname) \
             FROM pg_class WHERE relname IN ('staging', 'loaded')",
        )
        .await;
    assert_eq!(persistence, "loaded p, staging u");
    assert_eq!(
        counts(&db, &["public.staging", "public.loaded"]).await,
        [300, 300]
    );
}

/// The CLI writes a plan only when the whole import succeeds, and never over an existing file.
#[tokio::test]
async fn a_refused_import_writes_nothing_and_an_existing_plan_is_kept() {
    let db = crate::common::TestDb::new().await;
    let dir = tempfile::tempdir().expect("temp dir");
    let file = |name: &str, text: &str| {
        let p = dir.path().join(name);
        std::fs::write(&p, text).expect("write");
        p.display().to_string()
    };
    let good = file("good.sql", "ALTER TABLE t ADD COLUMN note text;\n");
    let bad = file(
        "bad.sql",
        "ALTER TABLE t ADD COLUMN note text;\nALTER TABLE t ALTER COLUMN c TYPE bigint USING c::bigint * 100;\n",
    );
    let out = dir.path().join("plan.toml");
    let out_arg = out.display().to_string();
    let run = |args: Vec<String>| {
        let url = db.url.clone();
        async move {
            let args: Vec<&str> = args.iter().map(String::as_str).collect();
            cli::cutover(&url, &args).await
        }
    };
    let import = |input: &str| {
        ["plan", "import", "sql", input, "--out", &out_arg]
            .map(String::from)
            .to_vec()
    };

    let refused = run(import(&bad)).await;
    assert_ne!(cli::code(&refused), 0, "{}", cli::text(&refused));
    assert!(
        cli::text(&refused).contains(&format!("{bad}:2:1")),
        "{}",
        cli::text(&refused)
    );
    assert!(!out.exists(), "a refused import wrote {out_arg}");
    // A plan that does not validate names the statement each error comes from.
    let invalid = file(
        "invalid.sql",
        "ALTER TABLE t ADD COLUMN c integer;\nALTER TABLE t ALTER COLUMN c SET NOT NULL;\n",
    );
    let refused = run(import(&invalid)).await;
    assert_ne!(cli::code(&refused), 0, "{}", cli::text(&refused));
    assert!(
        cli::text(&refused).contains(&format!("from: {invalid}:1 (operation 1)")),
        "{}",
        cli::text(&refused)
    );
    assert!(!out.exists(), "a refused import wrote {out_arg}");

    std::fs::write(&out, "kept\n").expect("write");
    let over = run(import(&good)).await;
    assert_ne!(cli::code(&over), 0, "{}", cli::text(&over));
    assert_eq!(std::fs::read_to_string(&out).expect("read"), "kept\n");

    std::fs::remove_file(&out).expect("remove");
    cli::ok(&run(import(&good)).await);
    Plan::load(&out).unwrap_or_else(|e| panic!("{e}"));
}

/// Several statements on one column fold into one operation per column, and the result is the
/// one the statements leave: the added column with its final type, the existing rows filled by
/// the add's default and new rows by the later one; two in-place changes of another column.
#[tokio::test]
async fn statements_on_one_column_fold_and_end_as_written() {
    let db = lifecycle(
        || sql("sql/knex_columns.sql"),
        "CREATE TABLE public.users (id bigint PRIMARY KEY, name text NOT NULL);
         INSERT INTO public.users SELECT g, 'u' || g FROM generate_series(1, 300) g;",
    )
    .await;
    let cat = db.catalog();
    cat.assert_column("users", "age", "bigint", false).await;
    cat.assert_column("users", "name", "text", true).await;
    db.exec("INSERT INTO public.users (id) VALUES (1000)").await;
    let rows: String = db
        .scalar(
            "SELECT format('%s %s %s', count(*) FILTER (WHERE age = 0), \
             (SELECT age FROM public.users WHERE id = 1000), \
             (SELECT name FROM public.users WHERE id = 1000)) FROM public.users",
        )
        .await;
    assert_eq!(rows, "300 18 anon");
}

/// A type, a sequence, a function, a trigger and a view created beside a column: every
/// rollback drops them (the harness compares the catalog, types and functions included).
#[tokio::test]
async fn created_objects_are_dropped_by_the_rollback() {
    let db = lifecycle(
        || sql("sql/objects.sql"),
        "CREATE TABLE public.users (id bigint PRIMARY KEY, seen timestamptz);
         INSERT INTO public.users SELECT g, NULL FROM generate_series(1, 300) g;",
    )
    .await;
    db.catalog()
        .assert_column("users", "role", "\"Role\"", false)
        .await;
    db.exec("UPDATE public.users SET id = id WHERE id = 1")
        .await;
    let seen: i64 = db.scalar("SELECT count(*) FROM public.active_users").await;
    assert_eq!(seen, 1, "the trigger ran");
}
