//! Table, index and constraint operations, raw `sql` and `set_replica_identity`.

use super::columns::{foreign_key, not_valid, target, unique};
use super::idents::{ident, Table};
use super::memo::Memo;
use super::{need, Check, ColumnItem, Expansion, OperationSpec, Stage, Unique};
use crate::plan::Phase;

fn names(x: &mut Expansion, i: usize, op: &OperationSpec) -> Vec<String> {
    let mut out = Vec::new();
    for item in op.columns.iter().flatten() {
        match item {
            ColumnItem::Name(n) if !n.trim().is_empty() => out.push(n.clone()),
            _ => x.problem(i, "columns", "`columns` lists column names here"),
        }
    }
    if out.is_empty() {
        x.problem(
            i,
            "columns",
            format!("operation `{}` needs `columns`", op.op),
        );
    }
    out
}

fn list(cols: &[String]) -> String {
    cols.iter().map(|c| ident(c)).collect::<Vec<_>>().join(", ")
}

/// `create_table`: created in `expand`, dropped by its rollback.
pub(crate) fn create_table(x: &mut Expansion, i: usize, op: &OperationSpec) {
    let Some(table) = need(x, i, op, "table", &op.table) else {
        return;
    };
    let t = Table::parse(table);
    let mut lines = Vec::new();
    let mut pk = Vec::new();
    for item in op.columns.iter().flatten() {
        let ColumnItem::Def(c) = item else {
            x.problem(
                i,
                "columns",
                "each column of `create_table` is `{ name, type, … }`",
            );
            continue;
        };
        x.type_name(i, "columns", &c.kind);
        let mut line = format!("{} {}", ident(&c.name), c.kind);
        if c.nullable == Some(false) {
            line.push_str(" NOT NULL");
        }
        if let Some(d) = &c.default {
            x.expr(i, "columns", d);
            line.push_str(&format!(" DEFAULT {d}"));
        }
        if c.unique == Some(true) {
            line.push_str(" UNIQUE");
        }
        if let Some(e) = &c.check {
            x.expr(i, "columns", e);
            line.push_str(&format!(" CHECK ({e})"));
        }
        if let Some(r) = &c.references {
            let fk = foreign_key(&ident(&c.name), r);
            line.push_str(&format!(
                " REFERENCES{}",
                fk.split_once("REFERENCES").map_or("", |p| p.1)
            ));
        }
        if c.pk == Some(true) {
            pk.push(c.name.clone());
        }
        lines.push(line);
    }
    if lines.is_empty() {
        x.problem(
            i,
            "columns",
            "`create_table` needs `columns = [{ name, type, … }, …]`",
        );
        return;
    }
    if pk.is_empty() {
        x.problem(i, "columns", "the table has no primary key: mark a column `pk = true` (Cutover's backfill and checks need a key)");
    } else {
        lines.push(format!("PRIMARY KEY ({})", list(&pk)));
    }
    x.part(
        i,
        Phase::Expand,
        Stage::Schema,
        format!(
            "CREATE TABLE {} (\n    {}\n);",
            t.sql(),
            lines.join(",\n    ")
        ),
        format!("DROP TABLE IF EXISTS {};", t.sql()),
    );
}

/// `drop_table`: dropped at contract.
pub(crate) fn drop_table(x: &mut Expansion, i: usize, op: &OperationSpec) {
    let Some(table) = need(x, i, op, "table", &op.table) else {
        return;
    };
    let t = Table::parse(table);
    x.part(
        i,
        Phase::Contract,
        Stage::Schema,
        format!("DROP TABLE {};", t.sql()),
        String::new(),
    );
}

/// `rename_table`: renamed in `expand`, with an updatable view under the old name for the old
/// version (dropped at contract).
pub(crate) fn rename_table(x: &mut Expansion, i: usize, op: &OperationSpec) {
    let (Some(from), Some(to)) = (
        need(x, i, op, "from", &op.from),
        need(x, i, op, "to", &op.to),
    ) else {
        return;
    };
    let (f, t) = (Table::parse(from), Table::parse(to));
    if f.schema != t.schema {
        x.problem(i, "to", "`rename_table` stays in one schema");
        return;
    }
    x.part(
        i,
        Phase::Expand,
        Stage::Schema,
        format!(
            "ALTER TABLE {} RENAME TO {};\nCREATE VIEW {} AS SELECT * FROM {};",
            f.sql(),
            ident(&t.name),
            f.sql(),
            t.sql()
        ),
        format!(
            "DROP VIEW IF EXISTS {};\nALTER TABLE {} RENAME TO {};",
            f.sql(),
            t.sql(),
            ident(&f.name)
        ),
    );
    x.part(
        i,
        Phase::Contract,
        Stage::Schema,
        format!("DROP VIEW {};", f.sql()),
        String::new(),
    );
    x.shapes.renamed_table(&t, i, &f);
    x.acks.push(crate::plan::LintAck {
        rule: "renaming-table".into(),
        phase: Phase::Expand,
        reason: format!(
            "operation {} (`rename_table`): the old name stays as an updatable view until contract",
            i + 1
        ),
    });
}

/// `create_index`: built `CONCURRENTLY` in `expand` (an INVALID leftover of an interrupted build
/// is dropped and rebuilt by the engine).
pub(crate) fn create_index(x: &mut Expansion, i: usize, op: &OperationSpec) {
    let Some((t, _)) = target(x, i, op) else {
        return;
    };
    let Some(name) = need(x, i, op, "name", &op.name) else {
        return;
    };
    let cols = names(x, i, op);
    let is_unique = matches!(op.unique, Some(Unique::Flag(true)));
    let method = op
        .method
        .as_deref()
        .map(|m| format!(" USING {m}"))
        .unwrap_or_default();
    let predicate = match op.predicate.as_deref() {
        Some(p) => {
            x.expr(i, "predicate", p);
            format!(" WHERE {p}")
        }
        None => String::new(),
    };
    x.part(
        i,
        Phase::Expand,
        Stage::Constraint,
        format!(
            "CREATE {}INDEX CONCURRENTLY IF NOT EXISTS {} ON {}{method} ({}){predicate};",
            if is_unique { "UNIQUE " } else { "" },
            ident(name),
            t.sql(),
            list(&cols)
        ),
        format!("DROP INDEX CONCURRENTLY IF EXISTS {};", t.sibling(name)),
    );
}

/// `drop_index`: dropped `CONCURRENTLY` at contract.
pub(crate) fn drop_index(x: &mut Expansion, i: usize, op: &OperationSpec) {
    let Some(name) = need(x, i, op, "name", &op.name) else {
        return;
    };
    let schema = op
        .table
        .as_deref()
        .map_or_else(|| "public".to_string(), |t| Table::parse(t).schema);
    x.part(
        i,
        Phase::Contract,
        Stage::Schema,
        format!(
            "DROP INDEX CONCURRENTLY IF EXISTS {}.{};",
            ident(&schema),
            ident(name)
        ),
        String::new(),
    );
}

/// `create_constraint`: `unique`, `check` or `foreign_key` over `columns`, lock-safe.
pub(crate) fn create_constraint(x: &mut Expansion, i: usize, op: &OperationSpec) {
    let Some((t, _)) = target(x, i, op) else {
        return;
    };
    let (Some(name), Some(kind)) = (
        need(x, i, op, "name", &op.name),
        need(x, i, op, "type", &op.kind),
    ) else {
        return;
    };
    let cols = if kind == "check" {
        Vec::new()
    } else {
        names(x, i, op)
    };
    match kind {
        "unique" => unique(x, i, &t, name, &list(&cols)),
        "check" => {
            let expr = match &op.check {
                Some(Check::Expr(e)) => e.clone(),
                Some(Check::Named { constraint, .. }) => constraint.clone(),
                None => {
                    x.problem(i, "", "a check constraint needs `check = \"<expression>\"`");
                    return;
                }
            };
            x.expr(i, "check", &expr);
            not_valid(x, i, &t, &ident(name), &format!("CHECK ({expr})"));
        }
        "foreign_key" => {
            let Some(r) = &op.references else {
                x.problem(
                    i,
                    "",
                    "a foreign key needs `references = { table, columns }`",
                );
                return;
            };
            not_valid(x, i, &t, &ident(name), &foreign_key(&list(&cols), r));
        }
        other => x.problem(
            i,
            "type",
            format!("unknown constraint type `{other}`: use unique, check or foreign_key"),
        ),
    }
}

/// `drop_constraint` / `drop_multicolumn_constraint`: dropped at contract.
pub(crate) fn drop_constraint(x: &mut Expansion, i: usize, op: &OperationSpec) {
    let Some((t, _)) = target(x, i, op) else {
        return;
    };
    let Some(name) = need(x, i, op, "name", &op.name) else {
        return;
    };
    x.part(
        i,
        Phase::Contract,
        Stage::Constraint,
        format!("ALTER TABLE {} DROP CONSTRAINT {};", t.sql(), ident(name)),
        String::new(),
    );
}

/// `rename_constraint`: renamed in `expand`, renamed back by its rollback.
pub(crate) fn rename_constraint(x: &mut Expansion, i: usize, op: &OperationSpec) {
    let Some((t, _)) = target(x, i, op) else {
        return;
    };
    let (Some(from), Some(to)) = (
        need(x, i, op, "from", &op.from),
        need(x, i, op, "to", &op.to),
    ) else {
        return;
    };
    let rename = |a: &str, b: &str| {
        format!(
            "ALTER TABLE {} RENAME CONSTRAINT {} TO {};",
            t.sql(),
            ident(a),
            ident(b)
        )
    };
    x.part(
        i,
        Phase::Expand,
        Stage::Constraint,
        rename(from, to),
        rename(to, from),
    );
    x.acks.push(crate::plan::LintAck {
        rule: "renaming-object".into(),
        phase: Phase::Expand,
        reason: format!("operation {} (`rename_constraint`) asks for it", i + 1),
    });
}

/// `set_replica_identity`: set in `expand`; the rollback restores the identity the table had
/// when the phase ran (kept in a [`Memo`]).
pub(crate) fn set_replica_identity(x: &mut Expansion, i: usize, op: &OperationSpec) {
    let Some((t, _)) = target(x, i, op) else {
        return;
    };
    let Some(identity) = need(x, i, op, "identity", &op.identity) else {
        return;
    };
    let clause = match identity.to_lowercase().as_str() {
        "default" => "DEFAULT".to_string(),
        "full" => "FULL".to_string(),
        "nothing" => "NOTHING".to_string(),
        "index" => match need(x, i, op, "index", &op.index) {
            Some(ix) => format!("USING INDEX {}", ident(ix)),
            None => return,
        },
        other => {
            x.problem(
                i,
                "identity",
                format!("unknown replica identity `{other}`: use default, full, nothing or index"),
            );
            return;
        }
    };
    let m = Memo::new(&t, "identity");
    let read = format!(
        "SELECT CASE c.relreplident WHEN 'd' THEN 'DEFAULT' WHEN 'f' THEN 'FULL' WHEN 'n' THEN 'NOTHING' \
         ELSE 'USING INDEX ' || (SELECT quote_ident(ic.relname) FROM pg_index ix JOIN pg_class ic ON ic.oid = ix.indexrelid \
         WHERE ix.indrelid = c.oid AND ix.indisreplident) END FROM pg_class c WHERE c.oid = {}::regclass",
        m.table_literal()
    );
    let change = format!("ALTER TABLE {} REPLICA IDENTITY {clause};", t.sql());
    x.part(
        i,
        Phase::Expand,
        Stage::Schema,
        format!("{}\n{change}", m.save(&read)),
        m.restore(
            "EXECUTE format('ALTER TABLE %s REPLICA IDENTITY %s', tbl, prev);",
            &change,
        ),
    );
    x.part(i, Phase::Contract, Stage::Schema, m.forget(), String::new());
}

/// `sql`: raw `up` (and `down`, its rollback) in `phase` (default `expand`).
pub(crate) fn raw_sql(x: &mut Expansion, i: usize, op: &OperationSpec) {
    let Some(up) = need(x, i, op, "up", &op.up) else {
        return;
    };
    let phase = op.phase.unwrap_or(Phase::Expand);
    if phase != Phase::Contract && op.down.is_none() {
        x.problem(
            i,
            "",
            format!("a `sql` operation in `{phase}` needs `down` (use \"\" when there is nothing to undo)"),
        );
    }
    if phase == Phase::Contract && op.down.as_deref().is_some_and(|d| !d.trim().is_empty()) {
        x.problem(
            i,
            "down",
            "contract is irreversible: a `sql` operation there has no `down`",
        );
    }
    for (field, script) in [("up", Some(up)), ("down", op.down.as_deref())] {
        for issue in crate::sql::check_script(script.unwrap_or(""))
            .into_iter()
            .take(5)
        {
            let path = vec![
                super::Seg::from("operations"),
                super::Seg::Index(i),
                super::Seg::from(field),
            ];
            x.problems.push(
                super::Problem::new(path, format!("`{field}`: {}", issue.message), issue.hint)
                    .inside(issue.offset),
            );
        }
    }
    x.part(
        i,
        phase,
        Stage::Schema,
        up.to_string(),
        op.down.clone().unwrap_or_default(),
    );
}
