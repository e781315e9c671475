//! pgroll migrations (YAML or JSON) as Cutover operations.
//!
//! Every field pgroll documents is read; one Cutover cannot honour is an error naming the file
//! and the field's path (`operations[2].alter_column.references.deferrable`), never dropped.
//! What Cutover's operations cannot express but plain DDL can (generated and identity columns,
//! table constraints, index options, primary keys) becomes a `sql` operation with the DDL
//! pgroll would run, noted beside it.

use serde_json::{Map, Value};

use super::{ImportError, Item};
use crate::plan::operations::idents::{ident, Table};
use crate::plan::operations::{Check, ColumnDef, OperationSpec, References, Unique};
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
    let value = parse(path, text)?;
    let mut cx = Cx {
        path: path.to_string(),
        text: text.to_string(),
        items: Vec::new(),
        cursor: 0,
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
            cx.line = cx.line_of(kind);
            let mut o = Obj::new(&cx, &format!("{at}.{kind}"), body)?;
            operation(&mut cx, kind, &mut o)?;
            o.done(&cx)?;
        }
    }
    let raw = list.iter().filter(|o| o.get("sql").is_some()).count();
    let on_complete = list
        .iter()
        .filter(|o| o.pointer("/sql/onComplete") == Some(&Value::Bool(true)))
        .count();
    if raw > on_complete && list.len() > 1 {
        return Err(cx.err(
            "operations",
            "a `sql` operation must be alone in its migration unless it has `onComplete: true` (pgroll's rule)",
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

fn parse(path: &str, text: &str) -> Result<Value, ImportError> {
    let json = path.ends_with(".json") || text.trim_start().starts_with('{');
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

pub(super) struct Cx {
    path: String,
    text: String,
    items: Vec<Item>,
    cursor: usize,
    line: usize,
}

impl Cx {
    pub(super) fn err(&self, field: &str, message: impl Into<String>) -> ImportError {
        let field = field.trim_start_matches('.');
        ImportError {
            at: if field.is_empty() {
                self.path.clone()
            } else {
                format!("{}: {field}", self.path)
            },
            message: message.into(),
        }
    }

    /// The line of the next `key:` (or `"key"`) from the previous operation's line on.
    fn line_of(&mut self, key: &str) -> usize {
        let needles = [format!("{key}:"), format!("\"{key}\"")];
        let found = self
            .text
            .lines()
            .enumerate()
            .skip(self.cursor)
            .find(|(_, l)| {
                let l = l.trim_start().trim_start_matches(['-', '{', ' ']);
                needles.iter().any(|n| l.starts_with(n.as_str()))
            })
            .map(|(n, _)| n);
        match found {
            Some(n) => {
                self.cursor = n + 1;
                n + 1
            }
            None => self.cursor.max(1),
        }
    }

    pub(super) fn push(&mut self, at: &str, op: OperationSpec, note: Option<String>) {
        self.items.push(Item {
            op,
            at: format!("{}:{}", self.path, self.line),
            source: format!("pgroll {at}"),
            risk: None,
            note,
        });
    }
}

/// An object whose fields are taken one by one; what is left at the end is unknown.
pub(super) struct Obj {
    pub(super) at: String,
    map: Map<String, Value>,
}

impl Obj {
    pub(super) fn new(cx: &Cx, at: &str, v: &Value) -> Result<Obj, ImportError> {
        match v {
            Value::Object(m) => Ok(Obj {
                at: at.to_string(),
                map: m.clone(),
            }),
            _ => Err(cx.err(at, "must be a mapping of fields")),
        }
    }

    pub(super) fn field(&self, key: &str) -> String {
        format!("{}.{key}", self.at)
    }

    pub(super) fn take(&mut self, key: &str) -> Option<Value> {
        self.map.remove(key)
    }

    pub(super) fn string(&mut self, cx: &Cx, key: &str) -> Result<Option<String>, ImportError> {
        match self.take(key) {
            None | Some(Value::Null) => Ok(None),
            Some(Value::String(s)) => Ok(Some(s)),
            Some(Value::Number(n)) => Ok(Some(n.to_string())),
            Some(_) => Err(cx.err(&self.field(key), "must be a string")),
        }
    }

    pub(super) fn need(&mut self, cx: &Cx, key: &str) -> Result<String, ImportError> {
        self.string(cx, key)?
            .filter(|s| !s.trim().is_empty())
            .ok_or_else(|| cx.err(&self.field(key), "is required"))
    }

    pub(super) fn flag(&mut self, cx: &Cx, key: &str) -> Result<Option<bool>, ImportError> {
        match self.take(key) {
            None | Some(Value::Null) => Ok(None),
            Some(Value::Bool(b)) => Ok(Some(b)),
            Some(Value::String(s)) if s == "true" || s == "false" => Ok(Some(s == "true")),
            Some(_) => Err(cx.err(&self.field(key), "must be true or false")),
        }
    }

    pub(super) fn obj(&mut self, cx: &Cx, key: &str) -> Result<Option<Obj>, ImportError> {
        match self.take(key) {
            None | Some(Value::Null) => Ok(None),
            Some(v) => Obj::new(cx, &self.field(key), &v).map(Some),
        }
    }

    pub(super) fn list(&mut self, cx: &Cx, key: &str) -> Result<Vec<Value>, ImportError> {
        match self.take(key) {
            None | Some(Value::Null) => Ok(Vec::new()),
            Some(Value::Array(a)) => Ok(a),
            Some(_) => Err(cx.err(&self.field(key), "must be a list")),
        }
    }

    pub(super) fn strings(&mut self, cx: &Cx, key: &str) -> Result<Vec<String>, ImportError> {
        let at = self.field(key);
        self.list(cx, key)?
            .into_iter()
            .enumerate()
            .map(|(i, v)| match v {
                Value::String(s) => Ok(s),
                _ => Err(cx.err(&format!("{at}[{i}]"), "must be a name")),
            })
            .collect()
    }

    /// A field Cutover cannot honour: an error when it is set.
    pub(super) fn forbid(&mut self, cx: &Cx, key: &str, why: &str) -> Result<(), ImportError> {
        match self.take(key) {
            None | Some(Value::Null) | Some(Value::Bool(false)) => Ok(()),
            Some(Value::String(s)) if s.is_empty() => Ok(()),
            Some(_) => Err(cx.err(&self.field(key), format!("cannot be honoured: {why}"))),
        }
    }

    pub(super) fn done(self, cx: &Cx) -> Result<(), ImportError> {
        match self.map.keys().next() {
            Some(k) => Err(cx.err(&self.field(k), format!("unknown field `{k}`"))),
            None => Ok(()),
        }
    }
}

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

/// A raw `sql` operation.
pub(super) fn raw(up: String, down: Option<String>, phase: Phase) -> OperationSpec {
    OperationSpec {
        op: "sql".into(),
        up: Some(up),
        down,
        phase: (phase != Phase::Expand).then_some(phase),
        ..OperationSpec::default()
    }
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

/// `up`/`down` maps of the multi-column operations: Cutover does not rewrite the column, so only
/// the identity (`col: col`) is accepted.
pub(super) fn identity_rewrites(cx: &Cx, o: &mut Obj, key: &str) -> Result<(), ImportError> {
    let at = o.field(key);
    match o.take(key) {
        None | Some(Value::Null) => Ok(()),
        Some(Value::String(s)) if s.trim().is_empty() => Ok(()),
        Some(Value::Object(m)) => {
            for (col, v) in m {
                let same = v
                    .as_str()
                    .is_some_and(|s| s.trim().trim_matches('"') == col || s.trim().is_empty());
                if !same {
                    return Err(cx.err(
                        &format!("{at}.{col}"),
                        "cannot be honoured: Cutover changes constraints in place and does not rewrite the column (fix the rows first, or use alter_column with `up`/`down`)",
                    ));
                }
            }
            Ok(())
        }
        Some(_) => Err(cx.err(&at, "must map column names to SQL")),
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

pub(super) fn check(cx: &Cx, mut c: Obj) -> Result<Check, ImportError> {
    let name = c.need(cx, "name")?;
    let constraint = c.need(cx, "constraint")?;
    c.forbid(
        cx,
        "no_inherit",
        "Cutover's check constraints are inherited",
    )?;
    c.done(cx)?;
    Ok(Check::Named { name, constraint })
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

/// A pgroll column: the Cutover definition, the SQL it needs beyond one (after the type) and
/// its comment.
pub(super) struct Col {
    pub(super) def: ColumnDef,
    pub(super) extras: Vec<String>,
    pub(super) comment: Option<String>,
}

/// Reads one column of `create_table`.
pub(super) fn column(cx: &Cx, v: &Value, at: &str) -> Result<Col, ImportError> {
    let mut c = Obj::new(cx, at, v)?;
    let mut extras = Vec::new();
    let name = c.need(cx, "name")?;
    let def = ColumnDef {
        kind: c.need(cx, "type")?,
        // pgroll columns are NOT NULL unless `nullable: true`.
        nullable: Some(c.flag(cx, "nullable")?.unwrap_or(false)),
        default: c.string(cx, "default")?.filter(|d| !d.is_empty()),
        pk: c.flag(cx, "pk")?,
        unique: c.flag(cx, "unique")?,
        check: None,
        references: None,
        up: None,
        name,
    };
    if let Some(chk) = c.obj(cx, "check")? {
        if let Check::Named { name, constraint } = check(cx, chk)? {
            extras.push(format!("CONSTRAINT {} CHECK ({constraint})", ident(&name)));
        }
    }
    if let Some(r) = c.obj(cx, "references")? {
        extras.push(super::pgroll_table::column_fk(cx, r)?);
    }
    let comment = c.string(cx, "comment")?;
    if let Some(mut g) = c.obj(cx, "generated")? {
        let expression = g.string(cx, "expression")?.filter(|e| !e.is_empty());
        let identity = g.obj(cx, "identity")?;
        let gat = g.at.clone();
        g.done(cx)?;
        match (expression, identity) {
            (Some(e), None) => extras.push(format!("GENERATED ALWAYS AS ({e}) STORED")),
            (None, Some(mut id)) => {
                let how = id
                    .string(cx, "user_specified_values")?
                    .unwrap_or_else(|| "ALWAYS".into())
                    .to_uppercase();
                if how != "ALWAYS" && how != "BY DEFAULT" {
                    return Err(cx.err(
                        &id.field("user_specified_values"),
                        "must be ALWAYS or BY DEFAULT",
                    ));
                }
                let seq = id.string(cx, "sequence_options")?.filter(|s| !s.is_empty());
                id.done(cx)?;
                extras.push(format!(
                    "GENERATED {how} AS IDENTITY{}",
                    seq.map(|s| format!(" ({s})")).unwrap_or_default()
                ));
            }
            _ => return Err(cx.err(&gat, "needs either `expression` or `identity`")),
        }
    }
    c.done(cx)?;
    Ok(Col {
        def,
        extras,
        comment,
    })
}
