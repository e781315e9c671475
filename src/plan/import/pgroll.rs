//! pgroll migrations (YAML or JSON) as Cutover operations.
//!
//! Every field pgroll documents is read; one Cutover cannot honour is an error at the field's
//! `file:line:col`, naming its path (`operations[2].alter_column.references.deferrable`), never
//! dropped.
//! What Cutover's operations cannot express but plain DDL can (generated and identity columns,
//! table constraints, index options, primary keys) becomes a `sql` operation with the DDL
//! pgroll would run, noted beside it.

use serde_json::Value;

use super::reader::{check, identity_rewrites, raw, Cx, Obj};
use super::ImportError;
use super::Item;
use crate::plan::operations::idents::{ident, Table};
use crate::plan::operations::{OperationSpec, References, Unique};
use crate::plan::Phase;

/// A pgroll file read into operations, and the migration's `name` if it has one.
#[derive(Debug)]
pub struct Migration {
    /// The operations, in file order.
    pub items: Vec<Item>,
    /// The migration's `name`.
    pub name: Option<String>,
}

/// Reads one pgroll file (`path` is shown in messages).
pub fn import(path: &str, text: &str) -> Result<Migration, ImportError> {
    let json = path.ends_with(".json") || text.trim_start().starts_with('{');
    let value = parse(path, text, json)?;
    let mut cx = Cx {
        path: path.to_string(),
        text: text.to_string(),
        json,
        items: Vec::new(),
        line: 1,
    };
    let mut root = Obj::new(&cx, "", &value)?;
    let name = root.string(&cx, "name")?;
    root.forbid(
        &cx,
        "version_schema",
        "Cutover keeps one schema; versions are not schemas of views here",
    )?;
    let ops = root
        .take("operations")
        .ok_or_else(|| cx.err("", "needs `operations`"))?;
    root.done(&cx)?;
    let Value::Array(list) = ops else {
        return Err(cx.err("operations", "must be a list"));
    };
    for (i, op) in list.iter().enumerate() {
        let at = format!("operations[{i}]");
        let Some(map) = op.as_object().filter(|m| m.len() == 1) else {
            return Err(cx.err(
                &at,
                "must hold exactly one operation, e.g. `alter_column: {…}`",
            ));
        };
        for (kind, body) in map {
            cx.line = cx
                .place(&format!("{at}.{kind}"))
                .map_or(1, |(line, _)| line);
            let mut o = Obj::new(&cx, &format!("{at}.{kind}"), body)?;
            operation(&mut cx, kind, &mut o)?;
            o.done(&cx)?;
        }
    }
    let not_alone = list.iter().position(|o| {
        o.get("sql").is_some() && o.pointer("/sql/onComplete") != Some(&Value::Bool(true))
    });
    if let Some(i) = not_alone.filter(|_| list.len() > 1) {
        return Err(cx.err(
            &format!("operations[{i}].sql"),
            "must be alone in its migration unless it has `onComplete: true` (pgroll's rule): move it to a file of its own",
        ));
    }
    if cx.items.is_empty() {
        return Err(cx.err("operations", "is empty"));
    }
    Ok(Migration {
        items: cx.items,
        name,
    })
}

fn parse(path: &str, text: &str, json: bool) -> Result<Value, ImportError> {
    if json {
        serde_json::from_str(text).map_err(|e| ImportError {
            at: format!("{path}:{}:{}", e.line(), e.column()),
            message: format!("malformed JSON: {e}"),
        })
    } else {
        serde_yaml_ng::from_str(text).map_err(|e| {
            let at = e.location().map_or_else(
                || path.to_string(),
                |l| format!("{path}:{}:{}", l.line(), l.column()),
            );
            ImportError {
                at,
                message: format!("malformed YAML: {e}"),
            }
        })
    }
}

#[expect(
    clippy::too_many_lines,
    reason = "one arm per pgroll operation: the dispatch table reads best whole"
)]
fn operation(cx: &mut Cx, kind: &str, o: &mut Obj) -> Result<(), ImportError> {
    let at = o.at.clone();
    let base = |op: &str| OperationSpec {
        op: op.to_string(),
        ..OperationSpec::default()
    };
    match kind {
        "add_column" => {
            let table = o.need(cx, "table")?;
            let up = o.string(cx, "up")?.map(expr);
            let col = o
                .obj(cx, "column")?
                .ok_or_else(|| cx.err(&o.field("column"), "is required"))?;
            let (op, note) = add_column(cx, table, up, col)?;
            cx.push(&at, op, note);
        }
        "alter_column" => {
            let mut op = base("alter_column");
            op.table = Some(o.need(cx, "table")?);
            op.column = Some(o.need(cx, "column")?);
            op.name = o.string(cx, "name")?;
            op.kind = o.string(cx, "type")?;
            op.up = o.string(cx, "up")?.map(expr);
            op.down = o.string(cx, "down")?.map(expr);
            op.nullable = o.flag(cx, "nullable")?;
            if let Some(mut u) = o.obj(cx, "unique")? {
                op.unique = Some(Unique::Named {
                    name: u.need(cx, "name")?,
                });
                u.done(cx)?;
            }
            if let Some(c) = o.obj(cx, "check")? {
                op.check = Some(check(cx, c)?);
            }
            if let Some(r) = o.obj(cx, "references")? {
                op.references = Some(references(cx, r)?);
            }
            let mut later = Vec::new();
            match o.take("default") {
                Some(Value::Null) => later.push("ALTER COLUMN {c} DROP DEFAULT".to_string()),
                Some(Value::String(d)) => op.default = Some(d),
                None => {}
                Some(_) => return Err(cx.err(&o.field("default"), "must be a string or null")),
            }
            match o.take("comment") {
                Some(Value::Null) => later.push("COMMENT".to_string()),
                Some(Value::String(c)) => op.comment = Some(c),
                None => {}
                Some(_) => return Err(cx.err(&o.field("comment"), "must be a string or null")),
            }
            let (table, col) = (op.table.clone().unwrap_or_default(), op.column.clone().unwrap_or_default());
            let changes = op.kind.is_some()
                || op.name.is_some()
                || op.nullable.is_some()
                || op.unique.is_some()
                || op.check.is_some()
                || op.references.is_some()
                || op.default.is_some()
                || op.comment.is_some();
            if changes {
                cx.push(&at, op, None);
            }
            for what in later {
                let t = Table::parse(&table);
                let up = if what == "COMMENT" {
                    format!("COMMENT ON COLUMN {}.{} IS NULL", t.sql(), ident(&col))
                } else {
                    format!("ALTER TABLE {} {}", t.sql(), what.replace("{c}", &ident(&col)))
                };
                cx.push(
                    &at,
                    raw(up, None, Phase::Contract),
                    Some("a null `default`/`comment` is removed at contract, where losing the old value is expected".into()),
                );
            }
        }
        "rename_column" => {
            let mut op = base("rename_column");
            op.table = Some(o.need(cx, "table")?);
            op.from = Some(o.need(cx, "from")?);
            op.to = Some(o.need(cx, "to")?);
            cx.push(&at, op, None);
        }
        "drop_column" => {
            let mut op = base("drop_column");
            op.table = Some(o.need(cx, "table")?);
            op.column = Some(o.need(cx, "column")?);
            op.down = o.string(cx, "down")?.map(expr);
            cx.push(&at, op, None);
        }
        "create_table" => {
            let name = o.need(cx, "name")?;
            let comment = o.string(cx, "comment")?;
            let cols = o.list(cx, "columns")?;
            let cons = o.list(cx, "constraints")?;
            super::pgroll_table::create_table(cx, &at, name, comment, cols, cons)?;
        }
        "drop_table" => {
            let mut op = base("drop_table");
            op.table = Some(o.need(cx, "name")?);
            cx.push(&at, op, None);
        }
        "rename_table" => {
            let mut op = base("rename_table");
            op.from = Some(o.need(cx, "from")?);
            op.to = Some(o.need(cx, "to")?);
            cx.push(&at, op, None);
        }
        "create_index" => super::pgroll_table::create_index(cx, &at, o)?,
        "drop_index" => {
            let mut op = base("drop_index");
            let name = o.need(cx, "name")?;
            match name.split_once('.') {
                Some((schema, n)) => {
                    op.table = Some(format!("{schema}.{n}"));
                    op.name = Some(n.to_string());
                }
                None => op.name = Some(name),
            }
            cx.push(&at, op, None);
        }
        "create_constraint" => super::pgroll_table::create_constraint(cx, &at, o)?,
        "drop_constraint" | "drop_multicolumn_constraint" => {
            let mut op = base(kind);
            op.table = Some(o.need(cx, "table")?);
            op.name = Some(o.need(cx, "name")?);
            identity_rewrites(cx, o, "up")?;
            identity_rewrites(cx, o, "down")?;
            cx.push(&at, op, None);
        }
        "rename_constraint" => {
            let mut op = base("rename_constraint");
            op.table = Some(o.need(cx, "table")?);
            op.from = Some(o.need(cx, "from")?);
            op.to = Some(o.need(cx, "to")?);
            cx.push(&at, op, None);
        }
        "set_replica_identity" => {
            let mut op = base("set_replica_identity");
            op.table = Some(o.need(cx, "table")?);
            let mut id = o
                .obj(cx, "identity")?
                .ok_or_else(|| cx.err(&o.field("identity"), "is required"))?;
            op.identity = Some(id.need(cx, "type")?.to_lowercase());
            op.index = id.string(cx, "index")?.filter(|s| !s.is_empty());
            id.done(cx)?;
            cx.push(&at, op, None);
        }
        "sql" => {
            let up = o.need(cx, "up")?;
            let down = o.string(cx, "down")?;
            let complete = o.flag(cx, "onComplete")?.unwrap_or(false);
            if complete && down.as_deref().is_some_and(|d| !d.trim().is_empty()) {
                return Err(cx.err(
                    &o.field("down"),
                    "`onComplete` SQL runs at contract, which is irreversible: it has no `down`",
                ));
            }
            let phase = if complete { Phase::Contract } else { Phase::Expand };
            let down = if complete { None } else { Some(down.unwrap_or_default()) };
            cx.push(&at, raw(up, down, phase), None);
        }
        other => {
            return Err(cx.err(
                &at,
                format!("unknown operation `{other}`: pgroll documents add_column, alter_column, create_constraint, create_index, create_table, drop_column, drop_constraint, drop_index, drop_multicolumn_constraint, drop_table, rename_column, rename_constraint, rename_table, set_replica_identity and sql"),
            ))
        }
    }
    Ok(())
}

/// pgroll allows `up: SELECT …`; as one expression that is a scalar subquery.
pub(super) fn expr(e: String) -> String {
    let t = e.trim();
    if t.len() > 7 && t[..7].eq_ignore_ascii_case("select ") {
        format!("({t})")
    } else {
        e
    }
}

fn add_column(
    cx: &mut Cx,
    table: String,
    up: Option<String>,
    mut col: Obj,
) -> Result<(OperationSpec, Option<String>), ImportError> {
    let mut op = OperationSpec {
        op: "add_column".into(),
        table: Some(table),
        up,
        ..OperationSpec::default()
    };
    op.column = Some(col.need(cx, "name")?);
    let kind = col.need(cx, "type")?;
    // pgroll columns are NOT NULL unless `nullable: true`.
    op.nullable = Some(col.flag(cx, "nullable")?.unwrap_or(false));
    op.default = col.string(cx, "default")?;
    op.comment = col.string(cx, "comment")?;
    if col.flag(cx, "unique")? == Some(true) {
        op.unique = Some(Unique::Flag(true));
    }
    col.forbid(
        cx,
        "pk",
        "Cutover adds key columns only with a new table (create_table)",
    )?;
    col.forbid(cx, "generated", "a generated or identity column added to a table with rows rewrites it under an exclusive lock")?;
    if let Some(c) = col.obj(cx, "check")? {
        op.check = Some(check(cx, c)?);
    }
    if let Some(r) = col.obj(cx, "references")? {
        op.references = Some(references(cx, r)?);
    }
    col.done(cx)?;
    let serial = [
        "smallserial",
        "serial",
        "bigserial",
        "serial2",
        "serial4",
        "serial8",
    ];
    let mut note = None;
    if serial.contains(&kind.to_lowercase().as_str()) {
        op.nullable = None;
        note = Some("a serial column is filled by its sequence".into());
    }
    op.kind = Some(kind);
    Ok((op, note))
}

pub(super) fn references(cx: &Cx, mut r: Obj) -> Result<References, ImportError> {
    let out = References {
        name: r.string(cx, "name")?,
        table: r.need(cx, "table")?,
        column: r.string(cx, "column")?,
        columns: None,
        on_delete: r.string(cx, "on_delete")?,
    };
    for key in ["on_update", "match_type"] {
        if let Some(v) = r.string(cx, key)? {
            let default = matches!(v.to_uppercase().as_str(), "NO ACTION" | "SIMPLE" | "");
            if !default {
                return Err(cx.err(&r.field(key), format!("cannot be honoured: Cutover's foreign keys take `on_delete` only (`{v}` here)")));
            }
        }
    }
    r.forbid(
        cx,
        "deferrable",
        "Cutover's foreign keys are not deferrable",
    )?;
    r.forbid(
        cx,
        "initially_deferred",
        "Cutover's foreign keys are not deferrable",
    )?;
    r.done(cx)?;
    Ok(out)
}
