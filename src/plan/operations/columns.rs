//! Column operations: `add_column`, `alter_column`, `rename_column`, `drop_column`,
//! `split_column`.
//!
//! A change of type or name duplicates the column (the new one is named `name`, or
//! `<column>_new` when the name stays and is renamed back at contract) and syncs both with the
//! table's trigger; constraint-only changes work on the column in place. Constraints go in
//! lock-safe steps: `NOT VALID` in `dual_write`, `VALIDATE` in `read_switch`; NOT NULL through a
//! validated `CHECK`, then `SET NOT NULL` at contract; unique through
//! `CREATE UNIQUE INDEX CONCURRENTLY` in `expand`, then `UNIQUE USING INDEX` at contract.

use super::idents::{ident, is_constant, limit, Table};
use super::locks::declare_as;
use super::memo::{self, Memo};
use super::sync::{over_duplicates, Group};
use super::{need, Check, ColumnItem, Expansion, OperationSpec, References, Stage, Unique};
use crate::plan::Phase;

/// The table, its key and the column an operation names.
pub(crate) fn target(
    x: &mut Expansion,
    i: usize,
    op: &OperationSpec,
) -> Option<(Table, Vec<String>)> {
    let table = need(x, i, op, "table", &op.table)?;
    for issue in crate::sql::check_relation(table) {
        x.problem(i, "table", format!("`table`: {}", issue.message));
    }
    let key = op.key.clone().unwrap_or_else(|| vec!["id".to_string()]);
    if key.is_empty() {
        x.problem(i, "key", "`key` must name at least one column");
    }
    Some((Table::parse(table), key))
}

/// `add_column`: a new column, filled by `up` (or its default) for rows and writes of the old
/// version.
pub(crate) fn add_column(x: &mut Expansion, i: usize, op: &OperationSpec) {
    let Some((t, key)) = target(x, i, op) else {
        return;
    };
    let (Some(col), Some(ty)) = (
        need(x, i, op, "column", &op.column),
        need(x, i, op, "type", &op.kind),
    ) else {
        return;
    };
    x.type_name(i, "type", ty);
    x.touch(i, "column", &t.plain(), col);
    x.shapes.added(&t, i, col);
    let c = ident(col);
    let constant = op.default.as_deref().filter(|d| is_constant(d));
    let inline = constant
        .map(|d| format!(" DEFAULT {d}"))
        .unwrap_or_default();
    let mut apply = format!("ALTER TABLE {} ADD COLUMN {c} {ty}{inline};", t.sql());
    if let Some(d) = op.default.as_deref().filter(|d| !is_constant(d)) {
        x.expr(i, "default", d);
        apply.push_str(&format!(
            "\nALTER TABLE {} ALTER COLUMN {c} SET DEFAULT {d};",
            t.sql()
        ));
        if op.up.is_none() {
            x.syncs.add(&t, &key, fill(col, d, false, i));
        }
    }
    let rollback = format!("ALTER TABLE {} DROP COLUMN IF EXISTS {c};", t.sql());
    x.part(i, Phase::Expand, Stage::Schema, apply, rollback);
    if let Some(up) = op.up.as_deref() {
        x.expr(i, "up", up);
        x.syncs.add(&t, &key, fill(col, up, true, i));
    }
    if op.nullable == Some(false) && op.up.is_none() && op.default.is_none() {
        x.problem(
            i,
            "nullable",
            "a NOT NULL column needs `up` or `default` to fill existing rows and the old version's writes",
        );
    }
    constraints(x, i, op, &t, col, &[]);
    comment(x, i, op, &t, col);
}

fn fill(col: &str, expr: &str, trigger: bool, op: usize) -> Group {
    Group::Fill {
        col: col.to_string(),
        expr: expr.to_string(),
        backfill: true,
        trigger,
        op,
    }
}

/// `alter_column`: type, name, nullability, unique, check, references, default, comment.
pub(crate) fn alter_column(x: &mut Expansion, i: usize, op: &OperationSpec) {
    let Some((t, key)) = target(x, i, op) else {
        return;
    };
    let Some(col) = need(x, i, op, "column", &op.column) else {
        return;
    };
    let renamed = op.name.as_deref().filter(|n| *n != col);
    if op.kind.is_some() || renamed.is_some() {
        duplicate(x, i, op, &t, &key, col, renamed);
        return;
    }
    x.touch(i, "column", &t.plain(), col);
    let c = ident(col);
    let nothing = op.nullable.is_none()
        && op.unique.is_none()
        && op.check.is_none()
        && op.references.is_none()
        && op.default.is_none()
        && op.comment.is_none();
    if nothing {
        x.problem(i, "", "`alter_column` changes nothing: give `type`, `name`, `nullable`, `unique`, `check`, `references`, `default` or `comment`");
        return;
    }
    if let Some(up) = op.up.as_deref() {
        x.expr(i, "up", up);
        if op.nullable == Some(false) {
            x.syncs.add(&t, &key, fill(col, up, true, i));
        }
    }
    if op.nullable == Some(true) {
        // NULLs the new version wrote would make the rollback's SET NOT NULL fail: `down`
        // fills them first.
        let fill = match op.down.as_deref() {
            Some(down) => {
                x.expr(i, "down", down);
                format!(
                    "EXECUTE format('UPDATE %s SET %I = ({}) WHERE %I IS NULL', tbl, {{col}}, {{col}}); ",
                    down.replace('\'', "''").replace('%', "%%")
                )
            }
            None => String::new(),
        };
        in_place(
            x,
            i,
            &t,
            col,
            "not_null",
            "attnotnull::text",
            format!("ALTER TABLE {} ALTER COLUMN {c} DROP NOT NULL;", t.sql()),
            &format!("IF prev = 'true' THEN {fill}EXECUTE format('ALTER TABLE %s ALTER COLUMN %I SET NOT NULL', tbl, {{col}}); END IF;"),
        );
    }
    if let Some(d) = op.default.as_deref() {
        x.expr(i, "default", d);
        in_place(
            x,
            i,
            &t,
            col,
            "default",
            "pg_get_expr((SELECT adbin FROM pg_attrdef WHERE adrelid = attrelid AND adnum = attnum), attrelid)",
            format!("ALTER TABLE {} ALTER COLUMN {c} SET DEFAULT {d};", t.sql()),
            "IF prev IS NULL THEN EXECUTE format('ALTER TABLE %s ALTER COLUMN %I DROP DEFAULT', tbl, {col}); ELSE EXECUTE format('ALTER TABLE %s ALTER COLUMN %I SET DEFAULT %s', tbl, {col}, prev); END IF;",
        );
    }
    constraints(x, i, op, &t, col, &[]);
    if let Some(text) = &op.comment {
        in_place(
            x,
            i,
            &t,
            col,
            "comment",
            "col_description(attrelid, attnum)",
            format!(
                "COMMENT ON COLUMN {}.{c} IS {};",
                t.sql(),
                memo::literal(text)
            ),
            "EXECUTE format('COMMENT ON COLUMN %s.%I IS %L', tbl, {col}, prev);",
        );
    }
}

/// An in-place change of `col` in `expand` whose rollback restores what it found: `read` is
/// the old value as text over `pg_attribute` of the column, `restore` the PL/pgSQL that puts
/// `prev` back (`{col}` stands for the column name as a literal). See [`memo`].
#[expect(
    clippy::too_many_arguments,
    reason = "each caller names one attribute: what, how to read it, change and restore"
)]
fn in_place(
    x: &mut Expansion,
    i: usize,
    t: &Table,
    col: &str,
    what: &str,
    read: &str,
    change: String,
    restore: &str,
) {
    let m = Memo::new(t, &format!("{col}_{what}"));
    let name = memo::literal(col);
    let read = format!(
        "SELECT {read} FROM pg_attribute WHERE attrelid = {}::regclass AND attname = {name} AND NOT attisdropped",
        m.table_literal()
    );
    x.part(
        i,
        Phase::Expand,
        Stage::Schema,
        format!("{}\n{change}", m.save(&read)),
        m.restore(&restore.replace("{col}", &name), &change),
    );
    x.part(i, Phase::Contract, Stage::Schema, m.forget(), String::new());
}

/// A changed column as a duplicate kept in step by the trigger.
fn duplicate(
    x: &mut Expansion,
    i: usize,
    op: &OperationSpec,
    t: &Table,
    key: &[String],
    col: &str,
    renamed: Option<&str>,
) {
    let finale = renamed.unwrap_or(col);
    let dup = renamed.map_or_else(|| limit(format!("{col}_new")), str::to_string);
    x.touch(i, "column", &t.plain(), col);
    x.shapes.replaced(t, i, col, &dup, finale);
    if renamed.is_some() {
        x.touch(i, "name", &t.plain(), finale);
    }
    let (c, d) = (ident(col), ident(&dup));
    let add = match op.kind.as_deref() {
        Some(ty) => {
            x.type_name(i, "type", ty);
            format!("ALTER TABLE {} ADD COLUMN {d} {ty};", t.sql())
        }
        None => same_type(t, col, &dup),
    };
    x.part(
        i,
        Phase::Expand,
        Stage::Schema,
        add,
        format!("ALTER TABLE {} DROP COLUMN IF EXISTS {d};", t.sql()),
    );
    let up = op.up.clone().unwrap_or_else(|| c.clone());
    let down = op.down.clone().unwrap_or_else(|| ident(finale));
    for (field, e) in [("up", &op.up), ("down", &op.down)] {
        if let Some(e) = e {
            x.expr(i, field, e);
        }
    }
    let renames = vec![(finale.to_string(), dup.clone())];
    x.syncs.add(
        t,
        key,
        Group::Pair {
            olds: vec![col.to_string()],
            news: vec![(dup.clone(), up)],
            downs: vec![(col.to_string(), over_duplicates(&down, &renames))],
            op: i,
        },
    );
    let mut contract = format!("ALTER TABLE {} DROP COLUMN {c};", t.sql());
    if dup != finale {
        contract.push_str(&format!(
            "\nALTER TABLE {} RENAME COLUMN {d} TO {};",
            t.sql(),
            ident(finale)
        ));
    }
    // The default joins at contract: before, a new column that holds a value on INSERT marks
    // a new-version writer.
    if let Some(default) = op.default.as_deref() {
        x.expr(i, "default", default);
        contract.push_str(&format!(
            "\nALTER TABLE {} ALTER COLUMN {} SET DEFAULT {default};",
            t.sql(),
            ident(finale)
        ));
    }
    x.part(i, Phase::Contract, Stage::Schema, contract, String::new());
    x.hidden.push(format!("{}.{col}", t.plain()));
    if op.nullable.is_none() {
        keep_not_null(x, i, t, col, &dup, finale);
    }
    constraints(x, i, op, t, &dup, &renames);
    comment(x, i, op, t, &dup);
}

/// The duplicate of a `NOT NULL` column becomes `NOT NULL` too, as `ALTER COLUMN … TYPE`
/// would leave it: whether `col` is `NOT NULL` is read from the catalog when dual_write runs,
/// and only then is the check added (`NOT VALID`), validated and made `SET NOT NULL` at contract.
fn keep_not_null(x: &mut Expansion, i: usize, t: &Table, col: &str, dup: &str, finale: &str) {
    let name = limit(format!("{}_{dup}_not_null", t.name));
    let lit = |s: &str| s.replace('\'', "''");
    let (table, n) = (lit(&t.sql()), ident(&name));
    let add = format!(
        "ALTER TABLE {} ADD CONSTRAINT {n} CHECK ({} IS NOT NULL) NOT VALID;",
        t.sql(),
        ident(dup)
    );
    let validate = format!("ALTER TABLE {} VALIDATE CONSTRAINT {n};", t.sql());
    let set = format!(
        "ALTER TABLE {0} ALTER COLUMN {1} SET NOT NULL; ALTER TABLE {0} DROP CONSTRAINT {n};",
        t.sql(),
        ident(finale)
    );
    let exists = format!(
        "EXISTS (SELECT 1 FROM pg_constraint WHERE conrelid = '{table}'::regclass AND conname = '{}')",
        lit(&name)
    );
    x.part(
        i,
        Phase::DualWrite,
        Stage::Constraint,
        format!(
            "DO $cutover$\n{}\nBEGIN IF (SELECT attnotnull FROM pg_attribute WHERE attrelid = '{table}'::regclass AND attname = '{}' AND NOT attisdropped) THEN {add} END IF; END $cutover$;",
            declare_as(&add),
            lit(col),
        ),
        format!("ALTER TABLE {} DROP CONSTRAINT IF EXISTS {n};", t.sql()),
    );
    x.part(
        i,
        Phase::ReadSwitch,
        Stage::Constraint,
        format!(
            "DO $cutover$\n{}\nBEGIN IF {exists} THEN {validate} END IF; END $cutover$;",
            declare_as(&validate)
        ),
        String::new(),
    );
    x.part(
        i,
        Phase::Contract,
        Stage::Constraint,
        format!(
            "DO $cutover$\n{}\nBEGIN IF {exists} THEN {set} END IF; END $cutover$;",
            declare_as(&format!(
                "ALTER TABLE {} ALTER COLUMN {} SET NOT NULL",
                t.sql(),
                ident(finale)
            ))
        ),
        String::new(),
    );
}

/// `ADD COLUMN new` with the type of `col`, read from the catalog when the phase runs.
fn same_type(t: &Table, col: &str, new: &str) -> String {
    format!(
        "DO $cutover$\n{declares}\nBEGIN EXECUTE format('ALTER TABLE %s ADD COLUMN %I %s', '{table}', '{new}', (SELECT format_type(atttypid, atttypmod) FROM pg_attribute WHERE attrelid = '{table}'::regclass AND attname = '{col}' AND NOT attisdropped)); END $cutover$;",
        declares = declare_as(&format!("ALTER TABLE {} ADD COLUMN {} text", t.sql(), ident(new))),
        table = t.sql().replace('\'', "''"),
        new = new.replace('\'', "''"),
        col = col.replace('\'', "''"),
    )
}

/// NOT NULL, unique, check and foreign key on `col` (the physical column). Names and
/// expressions are written over the final names; `renames` maps them to the duplicates.
fn constraints(
    x: &mut Expansion,
    i: usize,
    op: &OperationSpec,
    t: &Table,
    col: &str,
    renames: &[(String, String)],
) {
    let c = ident(col);
    let base = renames.first().map_or(col, |(f, _)| f.as_str());
    if op.nullable == Some(false) {
        let name = ident(&limit(format!("{}_{col}_not_null", t.name)));
        not_valid(x, i, t, &name, &format!("CHECK ({c} IS NOT NULL)"));
        x.part(
            i,
            Phase::Contract,
            Stage::Constraint,
            format!(
                "ALTER TABLE {0} ALTER COLUMN {1} SET NOT NULL;\nALTER TABLE {0} DROP CONSTRAINT {name};",
                t.sql(),
                ident(base)
            ),
            String::new(),
        );
    }
    if let Some(u) = &op.unique {
        let name = match u {
            Unique::Named { name } => name.clone(),
            Unique::Flag(_) => limit(format!("{}_{col}_key", t.name)),
        };
        if !matches!(u, Unique::Flag(false)) {
            unique(x, i, t, &name, &c);
        }
    }
    if let Some(check) = &op.check {
        let (name, expr) = match check {
            Check::Named { name, constraint } => (name.clone(), constraint.clone()),
            Check::Expr(e) => (limit(format!("{}_{col}_check", t.name)), e.clone()),
        };
        x.expr(i, "check", &expr);
        let expr = over_duplicates(&expr, renames);
        not_valid(x, i, t, &ident(&name), &format!("CHECK ({expr})"));
    }
    if let Some(r) = &op.references {
        let name = r
            .name
            .clone()
            .unwrap_or_else(|| limit(format!("{}_{col}_fkey", t.name)));
        not_valid(x, i, t, &ident(&name), &foreign_key(&c, r));
    }
}

/// `FOREIGN KEY (cols) REFERENCES table (cols) [ON DELETE …]`.
pub(crate) fn foreign_key(cols: &str, r: &References) -> String {
    let target = match (&r.column, &r.columns) {
        (Some(c), _) => format!(" ({})", ident(c)),
        (None, Some(cs)) => format!(
            " ({})",
            cs.iter().map(|c| ident(c)).collect::<Vec<_>>().join(", ")
        ),
        (None, None) => String::new(),
    };
    let on_delete = r
        .on_delete
        .as_deref()
        .map(|a| format!(" ON DELETE {}", a.to_uppercase()))
        .unwrap_or_default();
    format!(
        "FOREIGN KEY ({cols}) REFERENCES {}{target}{on_delete}",
        Table::parse(&r.table).sql()
    )
}

/// A constraint added `NOT VALID` in `dual_write` and validated in `read_switch`. PostgreSQL
/// cannot un-validate a constraint: the read switch's rollback puts it back `NOT VALID` by
/// dropping and re-adding it (no scan), as dual_write left it.
pub(crate) fn not_valid(x: &mut Expansion, i: usize, t: &Table, name: &str, body: &str) {
    let add = format!(
        "ALTER TABLE {} ADD CONSTRAINT {name} {body} NOT VALID;",
        t.sql()
    );
    let drop = format!("ALTER TABLE {} DROP CONSTRAINT IF EXISTS {name};", t.sql());
    x.part(
        i,
        Phase::DualWrite,
        Stage::Constraint,
        add.clone(),
        drop.clone(),
    );
    x.part(
        i,
        Phase::ReadSwitch,
        Stage::Constraint,
        format!("ALTER TABLE {} VALIDATE CONSTRAINT {name};", t.sql()),
        format!("{drop}\n{add}"),
    );
}

/// A unique index built `CONCURRENTLY` in `expand`, made a constraint at contract.
pub(crate) fn unique(x: &mut Expansion, i: usize, t: &Table, name: &str, cols: &str) {
    let index = t.sibling(name);
    x.part(
        i,
        Phase::Expand,
        Stage::Constraint,
        format!(
            "CREATE UNIQUE INDEX CONCURRENTLY IF NOT EXISTS {} ON {} ({cols});",
            ident(name),
            t.sql()
        ),
        format!("DROP INDEX CONCURRENTLY IF EXISTS {index};"),
    );
    x.part(
        i,
        Phase::Contract,
        Stage::Constraint,
        format!(
            "ALTER TABLE {} ADD CONSTRAINT {} UNIQUE USING INDEX {};",
            t.sql(),
            ident(name),
            ident(name)
        ),
        String::new(),
    );
}

fn comment(x: &mut Expansion, i: usize, op: &OperationSpec, t: &Table, col: &str) {
    if let Some(text) = &op.comment {
        let on = format!("COMMENT ON COLUMN {}.{}", t.sql(), ident(col));
        x.part(
            i,
            Phase::Expand,
            Stage::Schema,
            format!("{on} IS '{}';", text.replace('\'', "''")),
            format!("{on} IS NULL;"),
        );
    }
}

/// `rename_column`: `from` → `to`, both names usable until contract.
pub(crate) fn rename_column(x: &mut Expansion, i: usize, op: &OperationSpec) {
    let (Some(from), Some(to)) = (
        need(x, i, op, "from", &op.from),
        need(x, i, op, "to", &op.to),
    ) else {
        return;
    };
    let alter = OperationSpec {
        column: Some(from.to_string()),
        name: Some(to.to_string()),
        ..op.clone()
    };
    let Some((t, key)) = target(x, i, op) else {
        return;
    };
    duplicate(x, i, &alter, &t, &key, from, Some(to));
}

/// `drop_column`: dropped at contract; `down` fills it for the old version meanwhile.
pub(crate) fn drop_column(x: &mut Expansion, i: usize, op: &OperationSpec) {
    let Some((t, key)) = target(x, i, op) else {
        return;
    };
    let Some(col) = need(x, i, op, "column", &op.column) else {
        return;
    };
    x.touch(i, "column", &t.plain(), col);
    x.shapes.dropped(&t, i, col);
    if let Some(down) = op.down.as_deref() {
        x.expr(i, "down", down);
        x.syncs.add(
            &t,
            &key,
            Group::Fill {
                col: col.to_string(),
                expr: down.to_string(),
                backfill: false,
                trigger: true,
                op: i,
            },
        );
    }
    x.part(
        i,
        Phase::Contract,
        Stage::Schema,
        format!("ALTER TABLE {} DROP COLUMN {};", t.sql(), ident(col)),
        String::new(),
    );
    x.hidden.push(format!("{}.{col}", t.plain()));
}

/// `split_column`: one column into several, each with its `up`; `down` rebuilds the old one.
pub(crate) fn split_column(x: &mut Expansion, i: usize, op: &OperationSpec) {
    let Some((t, key)) = target(x, i, op) else {
        return;
    };
    let (Some(col), Some(down)) = (
        need(x, i, op, "column", &op.column),
        need(x, i, op, "down", &op.down),
    ) else {
        return;
    };
    x.expr(i, "down", down);
    x.touch(i, "column", &t.plain(), col);
    x.shapes.dropped(&t, i, col);
    let mut news = Vec::new();
    let mut adds = Vec::new();
    let mut drops = Vec::new();
    for item in op.columns.iter().flatten() {
        let ColumnItem::Def(def) = item else {
            x.problem(
                i,
                "columns",
                "each column of `split_column` is `{ name, type, up }`",
            );
            continue;
        };
        let Some(up) = def.up.as_deref() else {
            x.problem(i, "columns", format!("column `{}` needs `up`", def.name));
            continue;
        };
        x.type_name(i, "columns", &def.kind);
        x.expr(i, "columns", up);
        x.touch(i, "columns", &t.plain(), &def.name);
        x.shapes.added(&t, i, &def.name);
        adds.push(format!(
            "ALTER TABLE {} ADD COLUMN {} {};",
            t.sql(),
            ident(&def.name),
            def.kind
        ));
        drops.push(format!(
            "ALTER TABLE {} DROP COLUMN IF EXISTS {};",
            t.sql(),
            ident(&def.name)
        ));
        news.push((def.name.clone(), up.to_string()));
    }
    if news.is_empty() {
        x.problem(
            i,
            "columns",
            "`split_column` needs `columns = [{ name, type, up }, …]`",
        );
        return;
    }
    drops.reverse();
    x.part(
        i,
        Phase::Expand,
        Stage::Schema,
        adds.join("\n"),
        drops.join("\n"),
    );
    x.syncs.add(
        &t,
        &key,
        Group::Pair {
            olds: vec![col.to_string()],
            news,
            downs: vec![(col.to_string(), down.to_string())],
            op: i,
        },
    );
    x.part(
        i,
        Phase::Contract,
        Stage::Schema,
        format!("ALTER TABLE {} DROP COLUMN {};", t.sql(), ident(col)),
        String::new(),
    );
    x.hidden.push(format!("{}.{col}", t.plain()));
}
