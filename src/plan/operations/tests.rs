//! Every expansion, on plan text alone: no database.

use crate::plan::{CheckKind, Phase, Plan, PlanError, ProbeKind};

const HEAD: &str = r#"
id = "ops"
title = "t"
rationale = "r"
author = "a"
ticket = "T"
[roster]
lead = ["postgres"]
"#;

fn plan(ops: &str) -> Plan {
    let source = format!("{HEAD}{ops}");
    Plan::parse("ops.toml", &source).unwrap_or_else(|e| panic!("{e}\n---\n{source}"))
}

fn errors(ops: &str) -> Vec<String> {
    match Plan::parse("ops.toml", &format!("{HEAD}{ops}")) {
        Ok(_) => panic!("expected errors"),
        Err(PlanError::Invalid(d)) => d.iter().map(ToString::to_string).collect(),
        Err(e) => panic!("{e}"),
    }
}

fn apply(p: &Plan, phase: Phase) -> &str {
    &p.phase(phase).apply
}

fn rollback(p: &Plan, phase: Phase) -> &str {
    p.phase(phase).rollback.as_deref().unwrap_or("<none>")
}

const TYPE_CHANGE: &str = r#"
[[operations]]
op = "alter_column"
table = "public.orders"
column = "total"
type = "bigint"
up = "round(total * 100)"
down = "total / 100.0"
"#;

#[test]
fn alter_column_type_duplicates_syncs_backfills_and_checks() {
    let p = plan(TYPE_CHANGE);
    assert!(apply(&p, Phase::Expand).contains("ADD COLUMN total_new bigint;"));
    assert!(rollback(&p, Phase::Expand).contains("DROP COLUMN IF EXISTS total_new"));
    let dw = apply(&p, Phase::DualWrite);
    assert!(
        dw.contains("BEFORE INSERT OR UPDATE ON public.orders"),
        "{dw}"
    );
    assert_eq!(dw.matches("CREATE TRIGGER").count(), 1);
    assert!(
        dw.contains("NEW.total := (SELECT total_new / 100.0 FROM (SELECT NEW.*) AS r)"),
        "{dw}"
    );
    assert!(
        dw.contains("NEW.total_new := (SELECT round(total * 100) FROM (SELECT NEW.*) AS r)"),
        "{dw}"
    );
    assert!(
        !dw.to_uppercase().contains("UPDATE PUBLIC"),
        "no statement on the table: {dw}"
    );
    assert!(rollback(&p, Phase::DualWrite).contains("DROP TRIGGER IF EXISTS orders_cutover_sync"));
    let c = apply(&p, Phase::Contract);
    let (drop_trigger, drop_col, rename) = (
        c.find("DROP TRIGGER").unwrap_or(usize::MAX),
        c.find("DROP COLUMN total;").unwrap_or(usize::MAX),
        c.find("RENAME COLUMN total_new TO total")
            .unwrap_or(usize::MAX),
    );
    assert!(drop_trigger < drop_col && drop_col < rename, "{c}");
    assert!(p.phase(Phase::Contract).irreversible);
    let b = p.spec.backfill.as_ref().expect("a backfill");
    assert_eq!(b.table, "public.orders");
    assert_eq!(b.key, vec!["id"]);
    assert_eq!(b.set["total_new"], "round(total * 100)");
    assert_eq!(b.pending, "total_new IS DISTINCT FROM (round(total * 100))");
    assert!(matches!(
        &p.check("orders-total_new-parity").expect("parity").kind,
        CheckKind::ExpressionParity { column, .. } if column == "total_new"
    ));
    let gate = p.gate(Phase::ReadSwitch);
    assert!(gate.checks.contains(&"orders-total_new-parity".to_string()));
    assert!(gate.probes.contains(&ProbeKind::BackfillComplete));
    assert_eq!(
        p.spec.probes.hidden_readers.columns,
        vec!["public.orders.total"]
    );
    assert_eq!(
        p.spec.read_switch.as_ref().map(|r| r.flag.as_str()),
        Some("ops.read_new")
    );
}

#[test]
fn operations_on_one_table_share_one_trigger_and_one_backfill() {
    let p = plan(&format!(
        r#"{TYPE_CHANGE}
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
"#
    ));
    let dw = apply(&p, Phase::DualWrite);
    assert_eq!(dw.matches("CREATE TRIGGER").count(), 1, "{dw}");
    // Every update fires it: one of another column must still fill a row not backfilled yet.
    assert!(
        dw.contains("BEFORE INSERT OR UPDATE ON public.orders"),
        "{dw}"
    );
    assert!(
        dw.contains("OR NEW.total_new IS NULL THEN") && dw.contains("OR NEW.remark IS NULL THEN"),
        "{dw}"
    );
    let b = p.spec.backfill.as_ref().expect("backfill");
    assert_eq!(b.set.len(), 3, "{:?}", b.set);
    assert_eq!(b.pending.matches(" OR ").count(), 2, "{}", b.pending);
    assert!(
        dw.contains("ADD CONSTRAINT orders_tax_not_null CHECK (tax IS NOT NULL) NOT VALID"),
        "{dw}"
    );
    assert!(apply(&p, Phase::ReadSwitch).contains("VALIDATE CONSTRAINT orders_tax_not_null"));
    let c = apply(&p, Phase::Contract);
    assert!(c.contains("ALTER COLUMN tax SET NOT NULL;\nALTER TABLE public.orders DROP CONSTRAINT orders_tax_not_null"), "{c}");
    // The rename adds the column with the old one's type, read from the catalog.
    assert!(
        apply(&p, Phase::Expand).contains("ADD COLUMN %I %s"),
        "{}",
        apply(&p, Phase::Expand)
    );
}

#[test]
fn backfills_on_two_tables_are_refused_at_the_operation() {
    let e = errors(&format!(
        r#"{TYPE_CHANGE}
[[operations]]
op = "add_column"
table = "public.customers"
column = "score"
type = "int"
up = "0"
"#
    ));
    assert!(
        e.iter()
            .any(|d| d.contains("ops.toml:20:9") && d.contains("one backfill pass")),
        "{e:?}"
    );
}

#[test]
fn bad_operations_are_reported_at_their_place() {
    let e = errors(
        r#"
[[operations]]
op = "alter_colum"
table = "t"

[[operations]]
op = "alter_column"
table = "t"
column = "a"
type = "bigint"
up = "round(a * 100"

[[operations]]
op = "drop_column"
table = "t"
column = "a"

[[operations]]
op = "add_column"
table = "t"
type = "int"
"#,
    );
    let has = |at: &str, what: &str| e.iter().any(|d| d.contains(at) && d.contains(what));
    assert!(
        has("ops.toml:11:6", "unknown operation `alter_colum`"),
        "{e:?}"
    );
    assert!(has("ops.toml:19:20", "`up`"), "{e:?}");
    assert!(!has("", "generated SQL"), "consequences stay silent: {e:?}");
    assert!(has("ops.toml:24:10", "conflicts with operation 2"), "{e:?}");
    assert!(has("ops.toml:26:1", "needs `column`"), "{e:?}");
}

#[test]
fn hand_written_parts_win() {
    let p = plan(&format!(
        r#"{TYPE_CHANGE}
[phases.contract]
irreversible = true
apply = "SELECT 1;"

[backfill]
table = "public.orders"
key = ["id"]
set = {{ total_new = "round(total * 100)" }}
pending = "total_new IS NULL"

[[checks]]
name = "orders-total_new-parity"
kind = "invariant"
sql = "SELECT 0"
"#
    ));
    assert_eq!(apply(&p, Phase::Contract), "SELECT 1;");
    assert_eq!(
        p.spec.backfill.as_ref().map(|b| b.pending.as_str()),
        Some("total_new IS NULL")
    );
    let parity: Vec<_> = p
        .spec
        .checks
        .iter()
        .filter(|c| c.name == "orders-total_new-parity")
        .collect();
    assert_eq!(parity.len(), 1);
    assert!(matches!(parity[0].kind, CheckKind::Invariant { .. }));
    assert!(apply(&p, Phase::Expand).contains("total_new"));
}

#[test]
fn constraints_and_indexes_are_lock_safe() {
    let p = plan(
        r#"
[[operations]]
op = "create_index"
table = "public.orders"
name = "orders_placed_idx"
columns = ["placed_at"]
predicate = "placed_at IS NOT NULL"

[[operations]]
op = "create_constraint"
table = "public.orders"
name = "orders_customer_fk"
type = "foreign_key"
columns = ["customer_id"]
references = { table = "public.customers", columns = ["id"], on_delete = "cascade" }

[[operations]]
op = "alter_column"
table = "public.orders"
column = "code"
unique = { name = "orders_code_key" }
check = { name = "orders_code_len", constraint = "length(code) < 20" }
default = "'x'"
comment = "order code"
"#,
    );
    let e = apply(&p, Phase::Expand);
    assert!(e.contains("CREATE INDEX CONCURRENTLY IF NOT EXISTS orders_placed_idx ON public.orders (placed_at) WHERE placed_at IS NOT NULL;"), "{e}");
    assert!(
        e.contains("CREATE UNIQUE INDEX CONCURRENTLY IF NOT EXISTS orders_code_key ON public.orders (code);"),
        "{e}"
    );
    assert!(e.contains("SET DEFAULT 'x'"), "{e}");
    let dw = apply(&p, Phase::DualWrite);
    assert!(dw.contains("FOREIGN KEY (customer_id) REFERENCES public.customers (id) ON DELETE CASCADE NOT VALID"), "{dw}");
    assert!(dw.contains("CHECK (length(code) < 20) NOT VALID"), "{dw}");
    let rs = apply(&p, Phase::ReadSwitch);
    assert!(
        rs.contains("VALIDATE CONSTRAINT orders_customer_fk")
            && rs.contains("VALIDATE CONSTRAINT orders_code_len"),
        "{rs}"
    );
    assert!(apply(&p, Phase::Contract)
        .contains("ADD CONSTRAINT orders_code_key UNIQUE USING INDEX orders_code_key"));
    assert!(rollback(&p, Phase::Expand)
        .contains("DROP INDEX CONCURRENTLY IF EXISTS public.orders_placed_idx"));
    assert!(p.spec.backfill.is_none());
}

#[test]
fn volatile_defaults_do_not_rewrite_the_table() {
    let p = plan(
        r#"
[[operations]]
op = "add_column"
table = "public.orders"
column = "token"
type = "uuid"
default = "gen_random_uuid()"

[[operations]]
op = "add_column"
table = "public.orders"
column = "flag"
type = "boolean"
default = "false"
"#,
    );
    let e = apply(&p, Phase::Expand);
    assert!(e.contains("ADD COLUMN token uuid;\nALTER TABLE public.orders ALTER COLUMN token SET DEFAULT gen_random_uuid();"), "{e}");
    assert!(e.contains("ADD COLUMN flag boolean DEFAULT false;"), "{e}");
    let b = p.spec.backfill.as_ref().expect("backfill");
    assert_eq!(b.pending, "token IS NULL");
    assert!(
        !apply(&p, Phase::DualWrite).contains("token"),
        "no trigger for a default alone"
    );
}

#[test]
fn split_drop_and_schema_operations_expand() {
    let p = plan(
        r#"
[[operations]]
op = "split_column"
table = "public.customers"
column = "full_name"
columns = [
  { name = "first_name", type = "text", up = "split_part(full_name, ' ', 1)" },
  { name = "last_name", type = "text", up = "split_part(full_name, ' ', 2)" },
]
down = "first_name || ' ' || last_name"

[[operations]]
op = "drop_column"
table = "public.customers"
column = "legacy"
down = "''"

[[operations]]
op = "create_table"
table = "public.tags"
columns = [
  { name = "id", type = "bigint", pk = true },
  { name = "label", type = "text", nullable = false, unique = true },
]

[[operations]]
op = "rename_table"
from = "public.notes"
to = "public.memos"

[[operations]]
op = "sql"
phase = "dual_write"
up = "SELECT 1"
down = "SELECT 2"

[[operations]]
op = "set_replica_identity"
table = "public.tags"
identity = "full"

[[operations]]
op = "drop_index"
name = "old_idx"

[[operations]]
op = "rename_constraint"
table = "public.tags"
from = "tags_label_key"
to = "tags_label_unique"
"#,
    );
    let dw = apply(&p, Phase::DualWrite);
    assert!(
        dw.contains("NEW.full_name := (SELECT first_name || ' ' || last_name"),
        "{dw}"
    );
    assert!(dw.contains("IF NEW.legacy IS NULL THEN"), "{dw}");
    assert!(dw.contains("SELECT 1"), "{dw}");
    let e = apply(&p, Phase::Expand);
    assert!(e.contains("CREATE TABLE public.tags"), "{e}");
    assert!(e.contains("PRIMARY KEY (id)"), "{e}");
    assert!(e.contains("ALTER TABLE public.notes RENAME TO memos;\nCREATE VIEW public.notes AS SELECT * FROM public.memos;"), "{e}");
    assert!(e.contains("REPLICA IDENTITY FULL"), "{e}");
    assert!(
        e.contains("RENAME CONSTRAINT tags_label_key TO tags_label_unique"),
        "{e}"
    );
    let c = apply(&p, Phase::Contract);
    for s in [
        "DROP COLUMN full_name",
        "DROP COLUMN legacy",
        "DROP VIEW public.notes",
        "DROP INDEX CONCURRENTLY IF EXISTS public.old_idx",
    ] {
        assert!(c.contains(s), "{s}: {c}");
    }
    assert_eq!(p.spec.backfill.as_ref().map(|b| b.set.len()), Some(2));
}

#[test]
fn a_table_without_a_key_is_refused() {
    let e = errors(
        r#"
[[operations]]
op = "create_table"
table = "public.log"
columns = [{ name = "line", type = "text" }]
"#,
    );
    assert!(e.iter().any(|d| d.contains("no primary key")), "{e:?}");
}

#[test]
fn a_bad_type_is_reported_in_the_field() {
    let e = errors(
        r#"
[[operations]]
op = "add_column"
table = "t"
column = "c"
type = "big int)"
"#,
    );
    assert!(
        e.iter()
            .any(|d| d.contains("ops.toml:14:") && d.contains("type")),
        "{e:?}"
    );
}

#[test]
fn move_column_syncs_across_tables_without_loops() {
    let p = plan(
        r#"
[[operations]]
op = "move_column"
table = "public.users"
column = "bio"
type = "text"
to_table = "public.profiles"
join = "user_id"
"#,
    );
    let dw = apply(&p, Phase::DualWrite);
    assert_eq!(dw.matches("pg_trigger_depth()").count(), 2, "{dw}");
    assert!(
        dw.contains("AFTER INSERT OR UPDATE OF bio ON public.users"),
        "{dw}"
    );
    assert!(
        dw.contains("BEFORE INSERT OR UPDATE OF bio, user_id ON public.profiles"),
        "{dw}"
    );
    let b = p.spec.backfill.as_ref().expect("backfill");
    assert_eq!(b.table, "public.profiles");
    assert_eq!(
        b.set["bio"],
        "(SELECT s.bio FROM public.users AS s WHERE s.id = profiles.user_id)"
    );
    assert!(apply(&p, Phase::Contract).contains("ALTER TABLE public.users DROP COLUMN bio;"));
}

/// In-place changes roll back to what the phase found, kept in a memo; contract drops the memo.
#[test]
fn in_place_changes_roll_back_to_the_value_found() {
    let p = plan(
        r#"
[[operations]]
op = "alter_column"
table = "public.orders"
column = "code"
default = "'x'"

[[operations]]
op = "set_replica_identity"
table = "public.orders"
identity = "full"
"#,
    );
    let e = apply(&p, Phase::Expand);
    let save = e
        .find("CREATE FUNCTION %s() RETURNS text")
        .unwrap_or_else(|| panic!("{e}"));
    let set = e.find("SET DEFAULT 'x'").unwrap_or_else(|| panic!("{e}"));
    assert!(
        save < set,
        "the old default is saved before it changes: {e}"
    );
    assert!(
        e.contains("'public.orders_cutover_prev_code_default'"),
        "{e}"
    );
    assert!(e.contains("'public.orders_cutover_prev_identity'"), "{e}");
    let r = rollback(&p, Phase::Expand);
    assert!(!r.contains("REPLICA IDENTITY DEFAULT"), "{r}");
    assert!(
        r.contains(
            "IF prev IS NULL THEN EXECUTE format('ALTER TABLE %s ALTER COLUMN %I DROP DEFAULT'"
        ),
        "{r}"
    );
    assert!(r.contains("REPLICA IDENTITY %s', tbl, prev"), "{r}");
    let c = apply(&p, Phase::Contract);
    assert!(
        c.contains("DROP FUNCTION IF EXISTS public.orders_cutover_prev_code_default();")
            && c.contains("DROP FUNCTION IF EXISTS public.orders_cutover_prev_identity();"),
        "{c}"
    );
}

/// `version_schemas = true` adds a view per version in dual_write, dropped by its rollback and
/// at contract before any column goes; without it there is none.
#[test]
fn version_schemas_are_opt_in_and_dropped_before_columns() {
    assert!(!apply(&plan(TYPE_CHANGE), Phase::DualWrite).contains("CREATE VIEW"));
    let p = Plan::parse(
        "ops.toml",
        &format!("version_schemas = true\n{HEAD}{TYPE_CHANGE}"),
    )
    .unwrap_or_else(|e| panic!("{e}"));
    let dw = apply(&p, Phase::DualWrite);
    assert!(
        dw.contains("CREATE SCHEMA IF NOT EXISTS public_ops_old;")
            && dw.contains("CREATE SCHEMA IF NOT EXISTS public_ops_new;"),
        "{dw}"
    );
    assert!(
        dw.contains("WHEN 'total_new' THEN format('%I AS %I', attname, 'total')"),
        "{dw}"
    );
    assert!(
        dw.find("CREATE TRIGGER") < dw.find("CREATE SCHEMA"),
        "views come after the sync trigger: {dw}"
    );
    let rb = rollback(&p, Phase::DualWrite);
    let view = rb.find("DROP VIEW IF EXISTS public_ops_old.orders;");
    assert!(
        view.is_some() && view < rb.find("DROP TRIGGER"),
        "the views go before the trigger: {rb}"
    );
    let c = apply(&p, Phase::Contract);
    let views = c
        .find("DROP VIEW IF EXISTS")
        .unwrap_or_else(|| panic!("{c}"));
    let column = c.find("DROP COLUMN total").unwrap_or_else(|| panic!("{c}"));
    assert!(views < column, "{c}");
}

/// `version_schemas = true` without `[[operations]]` would be ignored: it is an error at the key.
#[test]
fn version_schemas_without_operations_is_an_error_at_its_key() {
    let source = std::fs::read_to_string("plans/accounts-balance-cents.toml").expect("plan");
    assert!(Plan::parse("hand.toml", &source).is_ok());
    let line = source.lines().take_while(|l| !l.starts_with('[')).count() + 1;
    let with = source.replacen("\n[", "\nversion_schemas = true\n[", 1);
    let diags: Vec<String> = match Plan::parse("hand.toml", &with) {
        Err(PlanError::Invalid(d)) => d.iter().map(ToString::to_string).collect(),
        other => panic!("expected an error, got {other:?}"),
    };
    assert_eq!(diags.len(), 1, "{diags:?}");
    assert!(
        diags[0].starts_with(&format!("hand.toml:{line}:19: error: "))
            && diags[0].contains("without `[[operations]]`")
            && diags[0].contains("remove `version_schemas`"),
        "{diags:?}"
    );
}

/// The memo blocks are dynamic SQL; each declares its lock, so `plan show` names it: saving
/// locks no table, restoring takes the lock of the change it undoes.
#[test]
fn memo_blocks_show_the_lock_they_take() {
    use super::locks::classify_script;
    let p = plan(
        r#"
[[operations]]
op = "alter_column"
table = "public.orders"
column = "code"
default = "'x'"
nullable = true
comment = "c"

[[operations]]
op = "set_replica_identity"
table = "public.orders"
identity = "full"
"#,
    );
    let locks = |script: &str| -> Vec<(String, &'static str, Option<String>)> {
        classify_script(script)
            .into_iter()
            .filter(|(text, _)| text.starts_with("DO "))
            .map(|(text, l)| (text, l.mode, l.object))
            .collect()
    };
    let saves = locks(apply(&p, Phase::Expand));
    assert_eq!(saves.len(), 4, "{saves:?}");
    assert!(
        saves
            .iter()
            .all(|(_, mode, object)| *mode == "none" && object.is_none()),
        "{saves:?}"
    );
    let restores = locks(rollback(&p, Phase::Expand));
    let modes: Vec<(&str, Option<&str>)> = restores
        .iter()
        .map(|(_, mode, object)| (*mode, object.as_deref()))
        .collect();
    assert_eq!(
        modes,
        vec![
            ("ACCESS EXCLUSIVE", Some("public.orders")),
            ("SHARE UPDATE EXCLUSIVE", Some("public.orders.code")),
            ("ACCESS EXCLUSIVE", Some("public.orders")),
            ("ACCESS EXCLUSIVE", Some("public.orders")),
        ],
        "{restores:?}"
    );
}

/// No statement any operation generates shows an `unknown` lock in `plan show`: the dynamic
/// SQL blocks (memos, NOT NULL kept through a type change, a duplicate of the same type,
/// version-schema views) each declare theirs.
#[test]
fn every_generated_statement_has_a_known_lock() {
    let source = format!(
        "version_schemas = true\n{HEAD}{TYPE_CHANGE}{}",
        r#"
[[operations]]
op = "alter_column"
table = "public.orders"
column = "qty"
name = "quantity"

[[operations]]
op = "alter_column"
table = "public.orders"
column = "code"
default = "'x'"
nullable = true
comment = "c"

[[operations]]
op = "set_replica_identity"
table = "public.orders"
identity = "full"

[[operations]]
op = "add_column"
table = "public.orders"
column = "tax"
type = "bigint"
up = "0"
nullable = false
"#
    );
    let p = Plan::parse("ops.toml", &source).unwrap_or_else(|e| panic!("{e}"));
    for phase in Phase::ALL {
        for script in [apply(&p, phase), rollback(&p, phase)] {
            for (text, lock) in super::locks::classify_script(script) {
                assert_ne!(lock.mode, "unknown", "{phase}: {text}");
            }
        }
    }
}

/// `nullable = true` in place with `down`: the rollback fills the NULLs written meanwhile
/// before it restores NOT NULL (quotes and `%` survive the dynamic SQL).
#[test]
fn relaxed_not_null_rolls_back_through_down() {
    let p = plan(
        r#"
[[operations]]
op = "alter_column"
table = "public.orders"
column = "status"
nullable = true
down = "'100% lost'"
"#,
    );
    let r = rollback(&p, Phase::Expand);
    let fill = r
        .find("EXECUTE format('UPDATE %s SET %I = (''100%% lost'') WHERE %I IS NULL', tbl, 'status', 'status');")
        .unwrap_or_else(|| panic!("{r}"));
    let set = r.find("SET NOT NULL").unwrap_or_else(|| panic!("{r}"));
    assert!(fill < set, "{r}");
}
