//! `cutover plan import`: imported pgroll and ORM-written migrations run through the whole
//! lifecycle (apply, roll back, re-apply each phase, then contract) on real PostgreSQL; the
//! catalog afterwards is the one pgroll's `complete` (or the ORM's SQL) would leave, and no
//! row is lost.

use std::path::Path;

use cutover::plan::import::{self, Header, Item};
use cutover::plan::Plan;

use crate::common::lifecycle::{Lifecycle, LifecycleDb};

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
    let (path, text) = fixture(rel);
    plan(
        &import::sql::import(&path, &text, &[])
            .unwrap_or_else(|e| panic!("{e}"))
            .items,
    )
}

/// Rolls every reversible phase back at once (the catalog must be the one found), then runs the
/// plan again through contract. (Per-phase rollbacks are not compared: `VALIDATE CONSTRAINT`,
/// which the read switch runs, has no inverse.)
async fn lifecycle(plan: impl Fn() -> Plan, schema: &str) -> LifecycleDb {
    Lifecycle::of(plan())
        .schema(schema)
        .run_and_roll_back_all()
        .await;
    Lifecycle::of(plan()).schema(schema).run().await
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
    let posts: i64 = db.scalar("SELECT count(*) FROM \"Post\"").await;
    assert_eq!(posts, 400);
}
