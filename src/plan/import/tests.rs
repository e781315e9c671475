use std::path::Path;

use super::*;
use crate::plan::operations;
use crate::plan::{Phase, Plan};

fn header() -> Header {
    Header {
        id: "imported".into(),
        roster: Vec::new(),
        login: "postgres".into(),
        command: "cutover plan import".into(),
    }
}

fn fixtures(kind: &str) -> Vec<(String, String)> {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/import")
        .join(kind);
    let mut files: Vec<_> = std::fs::read_dir(&dir)
        .expect("fixture dir")
        .map(|e| e.expect("entry").path())
        .collect();
    files.sort();
    files
        .into_iter()
        .map(|p| {
            let text = std::fs::read_to_string(&p).expect("fixture");
            (p.display().to_string(), text)
        })
        .collect()
}

fn plan_of(items: &[Item]) -> Plan {
    let text = render(items, &header(), "test").expect("render");
    Plan::parse("imported.toml", &text).unwrap_or_else(|e| panic!("{e}\n{text}"))
}

#[test]
fn every_pgroll_fixture_imports_into_a_plan_that_validates() {
    let mut kinds = std::collections::BTreeSet::new();
    for (path, text) in fixtures("pgroll") {
        let m = pgroll::import(&path, &text).unwrap_or_else(|e| panic!("{e}"));
        for item in &m.items {
            kinds.insert(item.source.rsplit('.').next().unwrap_or("").to_string());
        }
        plan_of(&m.items);
    }
    for op in [
        "add_column",
        "alter_column",
        "create_constraint",
        "create_index",
        "create_table",
        "drop_column",
        "drop_index",
        "drop_multicolumn_constraint",
        "drop_table",
        "rename_column",
        "rename_constraint",
        "rename_table",
        "set_replica_identity",
        "sql",
    ] {
        assert!(kinds.contains(op), "no fixture covers `{op}`: {kinds:?}");
    }
}

#[test]
fn every_sql_fixture_imports_into_a_plan_that_validates() {
    let downs = vec![("accounts.balance".to_string(), "balance / 100".to_string())];
    for (path, text) in fixtures("sql") {
        let i = sql::import(&path, &text, &downs).unwrap_or_else(|e| panic!("{e}"));
        assert!(!i.items.is_empty(), "{path}");
        plan_of(&i.items);
    }
}

#[test]
fn sql_maps_to_lock_safe_operations_and_flags_the_rest() {
    let text = "BEGIN;\nSET lock_timeout = 0;\n\
        ALTER TABLE \"Orders\" ADD COLUMN status text NOT NULL DEFAULT 'new';\n\
        CREATE INDEX orders_status ON \"Orders\" (status);\n\
        ALTER TABLE \"Orders\" ADD CONSTRAINT fk FOREIGN KEY (customer_id) REFERENCES customers (id);\n\
        ALTER TABLE \"Orders\" ALTER COLUMN total TYPE bigint;\n\
        ALTER TABLE \"Orders\" SET UNLOGGED;\n\
        UPDATE \"Orders\" SET status = 'old';\nCOMMIT;\n";
    let i = sql::import("m.sql", text, &[]).expect("imports");
    let ops: Vec<&str> = i.items.iter().map(|x| x.op.op.as_str()).collect();
    assert_eq!(
        ops,
        [
            "add_column",
            "create_index",
            "create_constraint",
            "alter_column",
            "sql",
            "sql",
            "sql"
        ]
    );
    assert_eq!(i.items[0].op.table.as_deref(), Some("Orders"));
    assert_eq!(i.items[0].at, "m.sql:3");
    // SET UNLOGGED with its memo and the rollback it reads, then the memo's drop at contract.
    assert!(i.items[4].risk.is_some() && i.items[6].risk.is_some());
    assert!(i.items[4]
        .op
        .down
        .as_deref()
        .is_some_and(|d| d.contains("SET LOGGED")));
    assert_eq!(i.items[5].op.phase, Some(Phase::Contract));
    assert_eq!(i.skipped.len(), 3, "{:?}", i.skipped);
    let plan = plan_of(&i.items);
    let expand = &plan.spec.phases.expand.apply;
    assert!(expand.contains("CREATE INDEX CONCURRENTLY"), "{expand}");
    let dual = &plan.spec.phases.dual_write.apply;
    assert!(dual.contains("NOT VALID"), "{dual}");
    assert!(plan
        .spec
        .phases
        .read_switch
        .apply
        .contains("VALIDATE CONSTRAINT"));
}

#[test]
fn a_type_change_with_using_needs_its_way_back() {
    let text = "ALTER TABLE t ALTER COLUMN c TYPE bigint USING c::bigint * 100;";
    let e = sql::import("m.sql", text, &[]).expect_err("needs down");
    assert_eq!(e.at, "m.sql:1:1");
    assert!(e.message.contains("--down"), "{e}");
    let downs = vec![("t.c".to_string(), "c / 100".to_string())];
    let i = sql::import("m.sql", text, &downs).expect("with down");
    assert_eq!(i.items[0].op.up.as_deref(), Some("c::bigint * 100"));
    assert_eq!(i.items[0].op.down.as_deref(), Some("c / 100"));
}

#[test]
fn bad_input_is_an_error_at_its_place() {
    let e = sql::import("m.sql", "ALTER TABLE t ADD COLUMN;\n", &[]).expect_err("parse");
    assert!(e.at.starts_with("m.sql:1:"), "{e}");
    let e = pgroll::import("m.yaml", "operations:\n  - add_column: [\n").expect_err("yaml");
    assert!(e.at.starts_with("m.yaml:"), "{e}");
    assert!(e.message.contains("malformed YAML"), "{e}");
    let e = pgroll::import("m.json", "{\"operations\": [}").expect_err("json");
    assert_eq!(e.at, "m.json:1:17", "{e}");
    let unknown =
        "operations:\n  - alter_column:\n      table: t\n      column: c\n      nulable: true\n";
    let e = pgroll::import("m.yaml", unknown).expect_err("unknown field");
    assert_eq!(e.at, "m.yaml:5:7", "{e}");
    assert!(
        e.message
            .starts_with("operations[0].alter_column.nulable: unknown field"),
        "{e}"
    );
    let e = pgroll::import("m.yaml", "operations:\n  - alter_table: {}\n").expect_err("op");
    assert_eq!(e.at, "m.yaml:2:5", "{e}");
    assert!(e.message.contains("unknown operation `alter_table`"), "{e}");
    let alone = "operations:\n  - drop_table: {name: t}\n  - sql: {up: SELECT 1}\n";
    let e = pgroll::import("m.yaml", alone).expect_err("sql alone");
    assert_eq!(e.at, "m.yaml:3:5", "{e}");
    assert!(e.message.contains("alone"), "{e}");
    let deferrable = "operations:\n  - add_column:\n      table: t\n      column: {name: c, type: int, nullable: true, references: {name: f, table: u, column: id, deferrable: true}}\n";
    let e = pgroll::import("m.yaml", deferrable).expect_err("deferrable");
    assert_eq!(e.at, "m.yaml:4:96", "{e}");
    assert!(
        e.message.starts_with(
            "operations[0].add_column.column.references.deferrable: cannot be honoured"
        ),
        "{e}"
    );
    let versioned = "version_schema: v2\noperations:\n  - drop_table: {name: t}\n";
    let e = pgroll::import("m.yaml", versioned).expect_err("version_schema");
    assert_eq!(e.at, "m.yaml:1:1", "{e}");
}

#[test]
fn json_errors_point_at_the_field() {
    let text = "{\n  \"operations\": [\n    {\"drop_table\": {\"name\": \"t\"}},\n    {\"create_index\": {\"table\": \"t\", \"name\": \"i\",\n      \"columns\": [{\"column\": \"a\", \"sort\": \"UP\"}]}}\n  ]\n}\n";
    let e = pgroll::import("m.json", text).expect_err("sort");
    assert_eq!(e.at, "m.json:5:35", "{e}");
    assert!(
        e.message.contains("columns[0].sort: must be ASC or DESC"),
        "{e}"
    );
    let missing =
        "{\"operations\": [{\"add_column\": {\"column\": {\"name\": \"c\", \"type\": \"int\"}}}]}";
    let e = pgroll::import("m.json", missing).expect_err("table");
    assert_eq!(e.at, "m.json:1:18", "absent: placed at its operation: {e}");
    assert!(e.message.ends_with("add_column.table: is required"), "{e}");
    let unknown = "{\"operations\": [{\"drop_index\": {\"name\": \"i\", \"cascade\": true}}]}";
    let e = pgroll::import("m.json", unknown).expect_err("unknown");
    assert_eq!(e.at, "m.json:1:46", "{e}");
    let e = pgroll::import("m.json", "{\"operations\": [{\"squash\": {}}]}").expect_err("op");
    assert_eq!(e.at, "m.json:1:18", "{e}");
}

#[test]
fn an_imported_operation_is_placed_at_its_line() {
    let text = "# header\nname: m\noperations:\n  - drop_table: {name: a}\n\n  - drop_table:\n      name: b\n";
    let m = pgroll::import("m.yaml", text).expect("imports");
    let at: Vec<&str> = m.items.iter().map(|i| i.at.as_str()).collect();
    assert_eq!(at, ["m.yaml:4", "m.yaml:6"]);
}

#[test]
fn the_roster_is_the_connecting_login_unless_given() {
    let items = pgroll::import("m.yaml", "operations:\n  - drop_table: {name: t}\n")
        .expect("imports")
        .items;
    let text = render(&items, &header(), "test").expect("render");
    assert!(text.contains("No --roster was given"), "{text}");
    assert!(text.contains("sre = [\"postgres\"]"), "{text}");
    let mut h = header();
    h.roster = parse_roster("lead=alice,sre=bob,sre=carol").expect("roster");
    let text = render(&items, &h, "test").expect("render");
    assert!(text.contains("\"sre\" = [\"bob\", \"carol\"]"), "{text}");
    assert!(parse_roster("sre=bob").is_err());
    Plan::parse("p.toml", &text).unwrap_or_else(|e| panic!("{e}"));
}

#[test]
fn a_table_rename_beside_other_operations_on_it_is_refused_naming_both() {
    let text = "operations:\n  - rename_column: {table: invoices, from: note, to: memo}\n  - rename_table: {from: invoices, to: bills}\n";
    let items = pgroll::import("m.yaml", text).expect("imports").items;
    let e = check_renames(&items).expect_err("shares the table");
    assert!(e.at.starts_with("m.yaml:3"), "{e}");
    assert!(
        e.message
            .contains("operation 1 on the same table (m.yaml:2")
            && e.message.contains("plan of its own"),
        "{e}"
    );
    let alone = "operations:\n  - rename_table: {from: invoices, to: bills}\n  - drop_table: {name: audit}\n";
    let items = pgroll::import("m.yaml", alone).expect("imports").items;
    check_renames(&items).expect("another table is fine");
}

#[test]
fn orm_bookkeeping_is_written_at_contract_and_other_rows_are_risky() {
    let text = "INSERT INTO \"schema_migrations\" (version) VALUES ('1');\n\
        UPDATE alembic_version SET version_num = '2';\n\
        DELETE FROM public.django_migrations WHERE id = 3;\n\
        INSERT INTO orders (id) VALUES (1);\n";
    let i = sql::import("m.sql", text, &[]).expect("imports");
    let phases: Vec<Option<Phase>> = i.items.iter().map(|x| x.op.phase).collect();
    assert_eq!(
        phases,
        [
            Some(Phase::Contract),
            Some(Phase::Contract),
            Some(Phase::Contract),
            None
        ]
    );
    assert!(i.items[..3].iter().all(|x| x.risk.is_none()));
    assert!(i.items[3].risk.is_some());
    plan_of(&i.items);
}

#[test]
fn create_table_maps_to_the_operation_or_says_what_stays_sql() {
    let text = "CREATE TABLE public.\"Tag\" (\n  id bigserial,\n  name text NOT NULL UNIQUE,\n  \
        score int DEFAULT 0 CHECK (score >= 0),\n  owner_id bigint REFERENCES owners (id) ON DELETE CASCADE,\n  \
        CONSTRAINT \"Tag_pkey\" PRIMARY KEY (id)\n);\n";
    let i = sql::import("m.sql", text, &[]).expect("imports");
    let op = &i.items[0].op;
    assert_eq!(op.op, "create_table");
    assert_eq!(op.table.as_deref(), Some("public.Tag"));
    assert!(i.items[0].risk.is_none());
    let cols: Vec<&operations::ColumnDef> = op
        .columns
        .iter()
        .flatten()
        .filter_map(|c| match c {
            operations::ColumnItem::Def(d) => Some(&**d),
            operations::ColumnItem::Name(_) => None,
        })
        .collect();
    assert_eq!(cols.len(), 4);
    assert_eq!((cols[0].name.as_str(), cols[0].pk), ("id", Some(true)));
    assert_eq!(
        (cols[1].nullable, cols[1].unique),
        (Some(false), Some(true))
    );
    assert_eq!(cols[2].default.as_deref(), Some("0"));
    assert_eq!(cols[2].check.as_deref(), Some("score >= 0"));
    let r = cols[3].references.as_ref().expect("fk");
    assert_eq!(
        (r.table.as_str(), r.on_delete.as_deref()),
        ("owners", Some("CASCADE"))
    );
    let plan = plan_of(&i.items);
    assert!(plan.spec.phases.expand.apply.contains("PRIMARY KEY (id)"));

    let text = "CREATE TABLE t (\n  id bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,\n  \
        a int, b int,\n  CONSTRAINT t_ab UNIQUE (a, b)\n) WITH (fillfactor = 70);\n\
        CREATE TABLE k (a int);\n";
    let i = sql::import("m.sql", text, &[]).expect("imports");
    assert_eq!(i.items[0].op.op, "sql");
    let risk = i.items[0].risk.as_deref().expect("a finding");
    assert!(
        risk.contains("WITH (storage parameters)")
            && risk.contains("column `id`: a generated or identity column")
            && risk.contains("`CONSTRAINT t_ab UNIQUE (a, b)`"),
        "{risk}"
    );
    assert!(i.items[0]
        .op
        .down
        .as_deref()
        .is_some_and(|d| d.contains("DROP TABLE IF EXISTS")));
    let risk = i.items[1].risk.as_deref().expect("a finding");
    assert!(risk.contains("a table without a primary key"), "{risk}");
    plan_of(&i.items);
}

#[test]
fn backfills_of_two_tables_are_refused_naming_both_and_the_split() {
    let text = "ALTER TABLE accounts ALTER COLUMN balance TYPE bigint;\n\
        ALTER TABLE accounts ADD COLUMN note text;\n\
        ALTER TABLE orders ADD COLUMN total_cents bigint DEFAULT (0 + 0);\n\
        ALTER TABLE orders ALTER COLUMN ref TYPE varchar(40);\n";
    let i = sql::import("m.sql", text, &[]).expect("imports");
    let e = check_backfills(&i.items).expect_err("two tables");
    assert_eq!(e.at, "m.sql:3", "{e}");
    assert!(
        e.message.contains("`public.orders` needs a backfill")
            && e.message.contains("on `public.accounts` (m.sql:1)")
            && e.message
                .contains("(m.sql:3, m.sql:4) to a file of its own"),
        "{e}"
    );
    // The same plan, rendered anyway, is refused by the plan's own validation.
    let text = render(&i.items, &header(), "test").expect("render");
    assert!(Plan::parse("p.toml", &text).is_err());
    let one = "ALTER TABLE accounts ALTER COLUMN balance TYPE bigint;\n\
        ALTER TABLE orders ADD COLUMN flag boolean DEFAULT false;\n";
    let i = sql::import("m.sql", one, &[]).expect("imports");
    check_backfills(&i.items).expect("a constant default needs no backfill");
    plan_of(&i.items);
}

/// Statements on one column folded into one operation (see `fold`).
fn folded(text: &str) -> Vec<Item> {
    sql::import("m.sql", text, &[]).expect("imports").items
}

#[test]
fn a_new_columns_later_changes_join_its_add() {
    let items = folded(
        "ALTER TABLE users ADD COLUMN age integer;\n\
         ALTER TABLE users ALTER COLUMN age TYPE bigint;\n\
         ALTER TABLE public.users ALTER COLUMN age SET NOT NULL;\n\
         COMMENT ON COLUMN users.age IS 'years';\n\
         ALTER TABLE users ALTER COLUMN age SET DEFAULT 0;\n",
    );
    let kinds: Vec<&str> = items.iter().map(|i| i.op.op.as_str()).collect();
    assert_eq!(kinds, ["add_column", "sql", "sql"], "{items:#?}");
    let add = &items[0].op;
    assert_eq!(add.kind.as_deref(), Some("bigint"));
    assert_eq!(add.nullable, Some(false));
    assert_eq!(
        add.default, None,
        "existing rows are not filled by a later default"
    );
    let note = items[0].note.as_deref().unwrap_or_default();
    assert!(
        note.contains("also m.sql:2") && note.contains("also m.sql:3"),
        "{note}"
    );
    let default = items[2].op.up.as_deref().unwrap_or_default();
    assert!(default.ends_with("SET DEFAULT 0"), "{default}");
    assert_eq!(items[2].at, "m.sql:5");
}

#[test]
fn in_place_changes_of_one_column_become_one_operation() {
    let items = folded(
        "ALTER TABLE t ALTER COLUMN c SET DEFAULT 1;\n\
         ALTER TABLE t ALTER COLUMN c DROP NOT NULL;\n\
         ALTER TABLE t ALTER COLUMN d SET DEFAULT 2;\n\
         ALTER TABLE t ALTER COLUMN c SET DEFAULT 3;\n",
    );
    let kinds: Vec<&str> = items.iter().map(|i| i.op.op.as_str()).collect();
    // The second default of `c` changes what the first did: left for validation to name.
    assert_eq!(kinds, ["alter_column", "alter_column", "alter_column"]);
    assert_eq!(items[0].op.default.as_deref(), Some("1"));
    assert_eq!(items[0].op.nullable, Some(true));
    assert_eq!(items[2].op.default.as_deref(), Some("3"));
}

#[test]
fn a_rename_ends_the_fold() {
    let items = folded(
        "ALTER TABLE t ADD COLUMN c integer;\n\
         ALTER TABLE t RENAME COLUMN c TO e;\n\
         ALTER TABLE t ADD COLUMN c text;\n\
         ALTER TABLE t ALTER COLUMN c TYPE varchar(10);\n",
    );
    let kinds: Vec<&str> = items.iter().map(|i| i.op.op.as_str()).collect();
    assert_eq!(kinds, ["add_column", "rename_column", "add_column"]);
    assert_eq!(items[0].op.kind.as_deref(), Some("integer"));
    assert_eq!(items[2].op.kind.as_deref(), Some("varchar(10)"));
}
