//! SQL `CREATE TABLE` as Cutover's `create_table` operation, when every part of it maps; else
//! what does not, so the statement can stay SQL with that said beside it.

use squawk_syntax::ast::{self, AstNode};

use super::sql_syntax::{columns, name, on_delete_only, text_of};
use crate::plan::operations::idents::limit;
use crate::plan::operations::{ColumnDef, ColumnItem, OperationSpec, References};

/// Whether a constraint written with `given` name is the one PostgreSQL would name `default`
/// (Cutover's `create_table` names its constraints the way PostgreSQL does).
fn default_name(given: Option<ast::ConstraintNameClause>, default: &str) -> bool {
    given
        .and_then(|n| n.constraint_name())
        .is_none_or(|n| name(&text_of(&n)) == limit(default.to_string()))
}

/// The `create_table` operation for `c` on `table` (`schema.name` or `name`), or every part of
/// the statement it cannot express.
pub(super) fn create_table(c: &ast::CreateTable, table: &str) -> Result<OperationSpec, String> {
    let bare = table.rsplit('.').next().unwrap_or(table).to_string();
    let mut missing = Vec::new();
    let options: [(bool, &str); 10] = [
        (c.if_not_exists().is_some(), "IF NOT EXISTS"),
        (c.inherits().is_some(), "INHERITS"),
        (c.of_type().is_some(), "OF type"),
        (c.partition_by().is_some(), "PARTITION BY"),
        (c.partition_of().is_some(), "PARTITION OF"),
        (c.persistence().is_some(), "TEMPORARY/UNLOGGED"),
        (c.table_params().is_some(), "WITH (storage parameters)"),
        (c.tablespace_clause().is_some(), "TABLESPACE"),
        (c.using_method().is_some(), "USING (access method)"),
        (c.on_commit().is_some(), "ON COMMIT"),
    ];
    missing.extend(
        options
            .iter()
            .filter(|(set, _)| *set)
            .map(|(_, w)| w.to_string()),
    );
    let mut defs: Vec<ColumnDef> = Vec::new();
    let mut keys: Vec<Vec<String>> = Vec::new();
    for arg in c.table_arg_list().iter().flat_map(|l| l.args()) {
        match arg {
            ast::TableArg::Column(col) => match column(&col, &bare) {
                Ok(def) => defs.push(def),
                Err(why) => missing.push(why),
            },
            ast::TableArg::TableConstraint(ast::TableConstraint::PrimaryKeyConstraint(pk))
                if default_name(pk.constraint_name_clause(), &format!("{bare}_pkey"))
                    && plain_index(pk.constraint_options().count(), pk.index_parameters())
                    && pk.using_index().is_none() =>
            {
                keys.push(columns(pk.syntax(), 0));
            }
            other => missing.push(format!("`{}`", super::one_line(&text_of(&other)))),
        }
    }
    for key in keys.iter().flatten() {
        match defs.iter_mut().find(|d| d.name == *key) {
            Some(d) => d.pk = Some(true),
            None => missing.push(format!("a primary key on `{key}`, not a column here")),
        }
    }
    if defs.is_empty() {
        missing.push("a table without columns".into());
    }
    if missing.is_empty() && !defs.iter().any(|d| d.pk == Some(true)) {
        missing.push("a table without a primary key".into());
    }
    if !missing.is_empty() {
        return Err(missing.join(", "));
    }
    Ok(OperationSpec {
        op: "create_table".into(),
        table: Some(table.to_string()),
        columns: Some(
            defs.into_iter()
                .map(|d| ColumnItem::Def(Box::new(d)))
                .collect(),
        ),
        ..OperationSpec::default()
    })
}

/// No `DEFERRABLE`-style options and no `INCLUDE`, `WITH` or `USING INDEX TABLESPACE`.
fn plain_index(options: usize, params: Option<ast::IndexParameters>) -> bool {
    options == 0
        && params.is_none_or(|p| {
            let t = text_of(&p).to_uppercase();
            !(t.contains("INCLUDE") || t.contains("WITH") || t.contains("TABLESPACE"))
        })
}

/// One column definition, or what in it does not map.
fn column(col: &ast::Column, table: &str) -> Result<ColumnDef, String> {
    let n = col
        .name()
        .map(|n| name(&text_of(&n)))
        .ok_or("a column without a name")?;
    let kind = col
        .ty()
        .map(|t| text_of(&t))
        .ok_or_else(|| format!("column `{n}` without a type"))?;
    let mut def = ColumnDef {
        name: n.clone(),
        kind,
        nullable: None,
        default: None,
        pk: None,
        unique: None,
        check: None,
        references: None,
        up: None,
    };
    let unmapped = |what: &str| format!("column `{n}`: {what}");
    for clause in col.clauses() {
        use ast::ColumnConstraint as C;
        let ast::ColumnClause::ColumnConstraint(cc) = clause else {
            return Err(unmapped(&format!("`{}`", text_of(&clause))));
        };
        match cc {
            C::NotNullConstraint(_) => def.nullable = Some(false),
            C::NullConstraint(_) => def.nullable = Some(true),
            C::DefaultConstraint(d) => def.default = d.expr().map(|e| text_of(&e)),
            C::PrimaryKeyConstraint(pk)
                if default_name(pk.constraint_name_clause(), &format!("{table}_pkey"))
                    && plain_index(pk.constraint_options().count(), pk.index_parameters()) =>
            {
                def.pk = Some(true);
            }
            C::UniqueConstraint(u)
                if default_name(u.constraint_name_clause(), &format!("{table}_{n}_key"))
                    && plain_index(u.constraint_options().count(), u.index_parameters()) =>
            {
                def.unique = Some(true);
            }
            C::CheckConstraint(k)
                if def.check.is_none()
                    && default_name(k.constraint_name_clause(), &format!("{table}_{n}_check"))
                    && k.constraint_options().count() == 0 =>
            {
                def.check = k.expr().map(|e| text_of(&e));
            }
            C::ReferencesConstraint(r)
                if default_name(r.constraint_name_clause(), &format!("{table}_{n}_fkey")) =>
            {
                let target = r.table().map(|t| name(&text_of(&t)));
                let on_delete = on_delete_only(
                    r.referential_actions(),
                    r.match_type(),
                    r.constraint_options().count(),
                );
                let (Some(target), Some(on_delete)) = (target, on_delete) else {
                    return Err(unmapped(
                        "a foreign key with ON UPDATE, MATCH or DEFERRABLE",
                    ));
                };
                def.references = Some(References {
                    name: None,
                    table: target,
                    column: r.column().map(|c| name(&text_of(&c))),
                    columns: None,
                    on_delete,
                });
            }
            C::GeneratedConstraint(_) => {
                return Err(unmapped("a generated or identity column"));
            }
            other => {
                return Err(unmapped(&format!(
                    "`{}` (a named or optioned constraint)",
                    super::one_line(&text_of(&other))
                )));
            }
        }
    }
    Ok(def)
}
