//! pgroll's `create_table`, `create_index` and `create_constraint`: Cutover's operation when it
//! expresses the request, otherwise the DDL pgroll would run as a `sql` operation.

use serde_json::Value;

use super::reader::{check, identity_rewrites, primary_key_steps, raw, Cx, Obj};
use super::ImportError;
use crate::plan::operations::idents::{ident, Table};
use crate::plan::operations::{Check, ColumnDef, ColumnItem, OperationSpec, Unique};
use crate::plan::Phase;

fn list(cols: &[String]) -> String {
    cols.iter().map(|c| ident(c)).collect::<Vec<_>>().join(", ")
}

/// `create_table`: Cutover's `create_table` when every column fits it and a key is marked,
/// otherwise `CREATE TABLE` as written (with its constraints, generated and identity columns).
pub(super) fn create_table(
    cx: &mut Cx,
    at: &str,
    name: String,
    comment: Option<String>,
    cols: Vec<Value>,
    cons: Vec<Value>,
) -> Result<(), ImportError> {
    let t = Table::parse(&name);
    let mut read = Vec::new();
    for (i, v) in cols.iter().enumerate() {
        read.push(column(cx, v, &format!("{at}.columns[{i}]"))?);
    }
    if read.is_empty() {
        return Err(cx.err(&format!("{at}.columns"), "is required"));
    }
    let mut constraints = Vec::new();
    for (i, v) in cons.iter().enumerate() {
        let mut o = Obj::new(cx, &format!("{at}.constraints[{i}]"), v)?;
        constraints.push(table_constraint(cx, &mut o)?);
        o.done(cx)?;
    }
    let plain = constraints.is_empty()
        && comment.is_none()
        && read
            .iter()
            .all(|c| c.extras.is_empty() && c.comment.is_none())
        && read.iter().any(|c| c.def.pk == Some(true));
    if plain {
        let op = OperationSpec {
            op: "create_table".into(),
            table: Some(name),
            columns: Some(
                read.into_iter()
                    .map(|c| ColumnItem::Def(Box::new(c.def)))
                    .collect(),
            ),
            ..OperationSpec::default()
        };
        cx.push(at, op, None);
        return Ok(());
    }
    let mut lines = Vec::new();
    let mut comments = Vec::new();
    let pk: Vec<String> = read
        .iter()
        .filter(|c| c.def.pk == Some(true))
        .map(|c| c.def.name.clone())
        .collect();
    for c in &read {
        let d = &c.def;
        let mut line = format!("{} {}", ident(&d.name), d.kind);
        if d.nullable == Some(false) && d.pk != Some(true) {
            line.push_str(" NOT NULL");
        }
        if let Some(def) = &d.default {
            line.push_str(&format!(" DEFAULT {def}"));
        }
        if d.unique == Some(true) {
            line.push_str(" UNIQUE");
        }
        for e in &c.extras {
            line.push(' ');
            line.push_str(e);
        }
        lines.push(line);
        if let Some(text) = &c.comment {
            comments.push(format!(
                "COMMENT ON COLUMN {}.{} IS {}",
                t.sql(),
                ident(&d.name),
                crate::sql::quote_literal(text)
            ));
        }
    }
    if !pk.is_empty() {
        lines.push(format!("PRIMARY KEY ({})", list(&pk)));
    }
    lines.extend(constraints);
    let mut up = format!("CREATE TABLE {} (\n  {}\n)", t.sql(), lines.join(",\n  "));
    if let Some(text) = comment {
        comments.push(format!(
            "COMMENT ON TABLE {} IS {}",
            t.sql(),
            crate::sql::quote_literal(&text)
        ));
    }
    for c in comments {
        up.push_str(";\n");
        up.push_str(&c);
    }
    cx.push(
        at,
        raw(up, Some(format!("DROP TABLE IF EXISTS {}", t.sql())), Phase::Expand),
        Some("written as SQL: Cutover's create_table has no table constraints, generated or identity columns, comments or keyless tables".into()),
    );
    Ok(())
}

/// One entry of `create_table.constraints` as SQL.
fn table_constraint(cx: &Cx, o: &mut Obj) -> Result<String, ImportError> {
    let name = o.need(cx, "name")?;
    let kind = o.need(cx, "type")?;
    let cols = o.strings(cx, "columns")?;
    let mut sql = format!("CONSTRAINT {} ", ident(&name));
    let nulls = o.flag(cx, "nulls_not_distinct")?.unwrap_or(false);
    let params = index_parameters(cx, o)?;
    match kind.as_str() {
        "primary_key" => sql.push_str(&format!("PRIMARY KEY ({}){params}", list(&cols))),
        "unique" => sql.push_str(&format!(
            "UNIQUE{} ({}){params}",
            if nulls { " NULLS NOT DISTINCT" } else { "" },
            list(&cols)
        )),
        "check" => {
            let e = o.need(cx, "check")?;
            sql.push_str(&format!("CHECK ({e})"));
            if o.flag(cx, "no_inherit")? == Some(true) {
                sql.push_str(" NO INHERIT");
            }
        }
        "foreign_key" => {
            let r = o
                .obj(cx, "references")?
                .ok_or_else(|| cx.err(&o.field("references"), "is required"))?;
            sql.push_str(&format!("FOREIGN KEY ({}) {}", list(&cols), fk(cx, r)?));
        }
        "exclude" => {
            let mut x = o
                .obj(cx, "exclude")?
                .ok_or_else(|| cx.err(&o.field("exclude"), "is required"))?;
            let method = x
                .string(cx, "index_method")?
                .filter(|m| !m.is_empty())
                .unwrap_or_else(|| "btree".into());
            let elements = x.need(cx, "elements")?;
            let predicate = x.string(cx, "predicate")?.filter(|p| !p.is_empty());
            x.done(cx)?;
            sql.push_str(&format!("EXCLUDE USING {method} ({elements}){params}"));
            if let Some(p) = predicate {
                sql.push_str(&format!(" WHERE ({p})"));
            }
        }
        other => {
            return Err(cx.err(
                &o.field("type"),
                format!("unknown constraint type `{other}`: use primary_key, unique, check, foreign_key or exclude"),
            ))
        }
    }
    if o.flag(cx, "deferrable")? == Some(true) {
        sql.push_str(" DEFERRABLE");
    }
    if o.flag(cx, "initially_deferred")? == Some(true) {
        sql.push_str(" INITIALLY DEFERRED");
    }
    Ok(sql)
}

/// `index_parameters: { include_columns, storage_parameters, tablespace }` as SQL.
fn index_parameters(cx: &Cx, o: &mut Obj) -> Result<String, ImportError> {
    let Some(mut p) = o.obj(cx, "index_parameters")? else {
        return Ok(String::new());
    };
    let mut out = String::new();
    let include = p.strings(cx, "include_columns")?;
    if !include.is_empty() {
        out.push_str(&format!(" INCLUDE ({})", list(&include)));
    }
    if let Some(s) = p
        .string(cx, "storage_parameters")?
        .filter(|s| !s.is_empty())
    {
        out.push_str(&format!(" WITH ({s})"));
    }
    if let Some(s) = p.string(cx, "tablespace")?.filter(|s| !s.is_empty()) {
        out.push_str(&format!(" USING INDEX TABLESPACE {}", ident(&s)));
    }
    p.done(cx)?;
    Ok(out)
}

/// A column's `references` as an inline `REFERENCES …` clause.
pub(super) fn column_fk(cx: &Cx, mut r: Obj) -> Result<String, ImportError> {
    let name = r.string(cx, "name")?;
    let column = r.string(cx, "column")?;
    let body = fk_tail(cx, &mut r, column.into_iter().collect())?;
    r.done(cx)?;
    Ok(match name {
        Some(n) => format!("CONSTRAINT {} {body}", ident(&n)),
        None => body,
    })
}

/// A table constraint's `references` (`columns`) as `REFERENCES …`.
fn fk(cx: &Cx, mut r: Obj) -> Result<String, ImportError> {
    let cols = r.strings(cx, "columns")?;
    let body = fk_tail(cx, &mut r, cols)?;
    r.done(cx)?;
    Ok(body)
}

fn fk_tail(cx: &Cx, r: &mut Obj, cols: Vec<String>) -> Result<String, ImportError> {
    let table = Table::parse(&r.need(cx, "table")?);
    let mut s = format!("REFERENCES {}", table.sql());
    if !cols.is_empty() {
        s.push_str(&format!(" ({})", list(&cols)));
    }
    if let Some(m) = r.string(cx, "match_type")?.filter(|m| !m.is_empty()) {
        s.push_str(&format!(" MATCH {}", action(cx, r, "match_type", &m)?));
    }
    if let Some(a) = r.string(cx, "on_delete")?.filter(|m| !m.is_empty()) {
        s.push_str(&format!(" ON DELETE {}", action(cx, r, "on_delete", &a)?));
        let set = r.strings(cx, "on_delete_set_columns")?;
        if !set.is_empty() {
            s.push_str(&format!(" ({})", list(&set)));
        }
    }
    if let Some(a) = r.string(cx, "on_update")?.filter(|m| !m.is_empty()) {
        s.push_str(&format!(" ON UPDATE {}", action(cx, r, "on_update", &a)?));
    }
    if r.flag(cx, "deferrable")? == Some(true) {
        s.push_str(" DEFERRABLE");
    }
    if r.flag(cx, "initially_deferred")? == Some(true) {
        s.push_str(" INITIALLY DEFERRED");
    }
    Ok(s)
}

/// An `ON DELETE`/`ON UPDATE` action or match type, from pgroll's closed list.
fn action(cx: &Cx, r: &Obj, key: &str, value: &str) -> Result<String, ImportError> {
    let v = value.trim().to_uppercase();
    let known = [
        "CASCADE",
        "SET NULL",
        "SET DEFAULT",
        "RESTRICT",
        "NO ACTION",
        "SIMPLE",
        "FULL",
    ];
    if known.contains(&v.as_str()) {
        Ok(v)
    } else {
        Err(cx.err(&r.field(key), format!("unknown value `{value}`")))
    }
}

/// `create_index`: Cutover's `create_index` for plain columns, otherwise
/// `CREATE INDEX CONCURRENTLY` with the collations, sort orders, operator classes and storage
/// parameters given.
#[expect(
    clippy::too_many_lines,
    reason = "every pgroll create_index field is read once, in one place, so none is dropped"
)]
pub(super) fn create_index(cx: &mut Cx, at: &str, o: &mut Obj) -> Result<(), ImportError> {
    let table = o.need(cx, "table")?;
    let name = o.need(cx, "name")?;
    let method = o.string(cx, "method")?.filter(|m| !m.is_empty());
    let predicate = o.string(cx, "predicate")?.filter(|m| !m.is_empty());
    let storage = o
        .string(cx, "storage_parameters")?
        .filter(|m| !m.is_empty());
    let unique = o.flag(cx, "unique")?.unwrap_or(false);
    let mut names = Vec::new();
    let mut elements = Vec::new();
    let mut plain = storage.is_none();
    let columns_at = o.field("columns");
    let entries: Vec<(String, Option<Value>)> = match o.take("columns") {
        Some(Value::Array(a)) => a
            .into_iter()
            .map(|v| match v {
                Value::String(s) => (s, None),
                other => (String::new(), Some(other)),
            })
            .collect(),
        Some(Value::Object(m)) => m.into_iter().map(|(k, v)| (k, Some(v))).collect(),
        _ => return Err(cx.err(&columns_at, "is required: a list of columns")),
    };
    for (i, (key, settings)) in entries.into_iter().enumerate() {
        let mut col = key;
        let mut element = String::new();
        if let Some(v) = settings.filter(|v| !v.is_null()) {
            let mut s = Obj::new(cx, &format!("{columns_at}[{i}]"), &v)?;
            if let Some(c) = s.string(cx, "column")? {
                col = c;
            }
            if let Some(c) = s.string(cx, "collate")?.filter(|c| !c.is_empty()) {
                element.push_str(&format!(" COLLATE {}", ident(&c)));
            }
            if let Some(mut oc) = s.obj(cx, "opclass")? {
                element.push_str(&format!(" {}", oc.need(cx, "name")?));
                let params = oc.strings(cx, "params")?;
                if !params.is_empty() {
                    element.push_str(&format!(" ({})", params.join(", ")));
                }
                oc.done(cx)?;
            }
            for (key, allowed) in [("sort", ["ASC", "DESC"]), ("nulls", ["FIRST", "LAST"])] {
                if let Some(v) = s.string(cx, key)?.filter(|v| !v.is_empty()) {
                    let v = v.to_uppercase();
                    if !allowed.contains(&v.as_str()) {
                        return Err(
                            cx.err(&s.field(key), format!("must be {}", allowed.join(" or ")))
                        );
                    }
                    element.push_str(&if key == "nulls" {
                        format!(" NULLS {v}")
                    } else {
                        format!(" {v}")
                    });
                }
            }
            s.done(cx)?;
        }
        if col.is_empty() {
            return Err(cx.err(&format!("{columns_at}[{i}]"), "names no column"));
        }
        plain &= element.is_empty();
        elements.push(format!("{}{element}", ident(&col)));
        names.push(col);
    }
    if plain {
        let op = OperationSpec {
            op: "create_index".into(),
            table: Some(table),
            name: Some(name),
            columns: Some(names.into_iter().map(ColumnItem::Name).collect()),
            method,
            predicate,
            unique: unique.then_some(Unique::Flag(true)),
            ..OperationSpec::default()
        };
        cx.push(at, op, None);
        return Ok(());
    }
    let t = Table::parse(&table);
    let up = format!(
        "CREATE {}INDEX CONCURRENTLY IF NOT EXISTS {} ON {}{} ({}){}{}",
        if unique { "UNIQUE " } else { "" },
        ident(&name),
        t.sql(),
        method.map(|m| format!(" USING {m}")).unwrap_or_default(),
        elements.join(", "),
        storage.map(|s| format!(" WITH ({s})")).unwrap_or_default(),
        predicate.map(|p| format!(" WHERE {p}")).unwrap_or_default(),
    );
    cx.push(
        at,
        raw(
            up,
            Some(format!("DROP INDEX CONCURRENTLY IF EXISTS {}", t.sibling(&name))),
            Phase::Expand,
        ),
        Some("written as SQL: Cutover's create_index has no collations, sort orders, operator classes or storage parameters".into()),
    );
    Ok(())
}

/// `create_constraint`: unique, check and foreign keys through Cutover's operation (lock-safe
/// steps); a primary key as a unique index built concurrently, attached at contract.
pub(super) fn create_constraint(cx: &mut Cx, at: &str, o: &mut Obj) -> Result<(), ImportError> {
    let table = o.need(cx, "table")?;
    let name = o.need(cx, "name")?;
    let kind = o.need(cx, "type")?;
    let cols = o.strings(cx, "columns")?;
    identity_rewrites(cx, o, "up")?;
    identity_rewrites(cx, o, "down")?;
    o.forbid(
        cx,
        "no_inherit",
        "Cutover's check constraints are inherited",
    )?;
    o.forbid(
        cx,
        "index_parameters",
        "Cutover builds the constraint's index with defaults",
    )?;
    let mut op = OperationSpec {
        op: "create_constraint".into(),
        table: Some(table.clone()),
        name: Some(name.clone()),
        kind: Some(kind.clone()),
        columns: (!cols.is_empty()).then(|| cols.iter().cloned().map(ColumnItem::Name).collect()),
        ..OperationSpec::default()
    };
    match kind.as_str() {
        "unique" => {}
        "check" => {
            op.check = Some(Check::Expr(o.need(cx, "check")?));
            op.columns = None;
        }
        "foreign_key" => {
            let mut r = o
                .obj(cx, "references")?
                .ok_or_else(|| cx.err(&o.field("references"), "is required"))?;
            let target = r.need(cx, "table")?;
            let columns = r.strings(cx, "columns")?;
            let on_delete = r.string(cx, "on_delete")?.filter(|s| !s.is_empty());
            r.forbid(
                cx,
                "on_delete_set_columns",
                "Cutover's foreign keys take `on_delete` only",
            )?;
            for key in ["on_update", "match_type"] {
                if let Some(v) = r.string(cx, key)? {
                    if !matches!(v.to_uppercase().as_str(), "" | "NO ACTION" | "SIMPLE") {
                        return Err(cx.err(
                            &r.field(key),
                            "cannot be honoured: Cutover's foreign keys take `on_delete` only",
                        ));
                    }
                }
            }
            r.done(cx)?;
            op.references = Some(crate::plan::operations::References {
                name: None,
                table: target,
                column: None,
                columns: Some(columns),
                on_delete,
            });
        }
        "primary_key" => {
            for (step, note) in primary_key_steps(&Table::parse(&table), &name, &cols) {
                cx.push(at, step, Some(note.into()));
            }
            return Ok(());
        }
        other => {
            return Err(cx.err(
                &o.field("type"),
                format!(
                "unknown constraint type `{other}`: use unique, check, foreign_key or primary_key"
            ),
            ))
        }
    }
    cx.push(at, op, None);
    Ok(())
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
        extras.push(column_fk(cx, r)?);
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
