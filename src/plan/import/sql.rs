//! DDL as an ORM writes it (Django's `sqlmigrate`, Alembic's `--sql`, Rails, Prisma, Flyway),
//! read with squawk's PostgreSQL grammar and mapped to lock-safe operations.
//!
//! Transaction control and session settings are left out (Cutover owns both). A statement no
//! operation expresses becomes a raw `sql` operation whose comment says why it is risky.

use squawk_syntax::ast::{self, AstNode};
use squawk_syntax::SourceFile;

use super::reader::{primary_key_steps, raw};
use super::sql_syntax::{columns, name, on_delete_only, text_of};
use super::{ImportError, Item};
use crate::plan::operations::idents::{ident, Table};
use crate::plan::operations::memo::Memo;
use crate::plan::operations::{Check, ColumnItem, OperationSpec, References, Unique};
use crate::plan::Phase;

/// What one SQL file became: operations, and the statements left out (`file:line: why`).
#[derive(Debug, Default)]
pub struct Imported {
    /// Operations in statement order.
    pub items: Vec<Item>,
    /// Statements left out, with why.
    pub skipped: Vec<String>,
}

/// Why a statement cannot become an operation.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
enum Unmappable {
    /// The statement lacks a part the mapping needs.
    #[error("{0}")]
    Incomplete(&'static str),
    /// A NOT NULL column with no value for existing rows.
    #[error("ADD COLUMN … NOT NULL without DEFAULT: existing rows have no value; give a DEFAULT")]
    NotNullWithoutDefault,
    /// A type change with `USING` and no `--down` for it.
    #[error(
        "ALTER COLUMN {column} TYPE … USING …: give the way back, e.g. --down '{table}.{column}=<SQL over the new column>'"
    )]
    UsingWithoutDown { table: String, column: String },
}

/// `down` expressions for type changes with `USING`, as `table.column` (or `column`) → SQL.
pub type Downs = [(String, String)];

/// Reads one SQL file (`path` is shown in messages).
pub fn import(path: &str, text: &str, downs: &Downs) -> Result<Imported, ImportError> {
    let parsed = std::panic::catch_unwind(|| {
        let p = SourceFile::parse(text);
        (p.tree(), p.errors())
    })
    .map_err(|_| ImportError {
        at: path.to_string(),
        message: "the SQL parser gave up on this file".into(),
    })?;
    let (file, errors) = parsed;
    if let Some(e) = errors.first() {
        let (line, col) = crate::sql::line_col(text, usize::from(e.range().start()));
        return Err(ImportError {
            at: format!("{path}:{line}:{col}"),
            message: format!("SQL does not parse: {}", e.message()),
        });
    }
    let mut cx = Cx {
        downs,
        out: Imported::default(),
        at: String::new(),
        source: String::new(),
    };
    for stmt in file.stmts() {
        let start = usize::from(stmt.syntax().text_range().start());
        let (line, col) = crate::sql::line_col(text, start);
        cx.at = format!("{path}:{line}");
        cx.source = stmt
            .syntax()
            .text()
            .to_string()
            .trim()
            .trim_end_matches(';')
            .to_string();
        statement(&mut cx, stmt).map_err(|e| ImportError {
            at: format!("{path}:{line}:{col}"),
            message: e.to_string(),
        })?;
    }
    cx.out.items = super::fold::fold(cx.out.items);
    Ok(cx.out)
}

struct Cx<'a> {
    downs: &'a Downs,
    out: Imported,
    at: String,
    source: String,
}

impl Cx<'_> {
    fn push(&mut self, op: OperationSpec, note: Option<&str>) {
        self.out.items.push(Item {
            op,
            at: self.at.clone(),
            source: self.source.clone(),
            risk: None,
            note: note.map(str::to_string),
        });
    }

    /// The statement as a raw operation in `expand` with an empty `down`, and why it is risky.
    fn risky(&mut self, sql: String, why: &str) {
        self.out.items.push(Item {
            op: raw(sql, Some(String::new()), Phase::Expand),
            at: self.at.clone(),
            source: self.source.clone(),
            risk: Some(format!(
                "{why}; its rollback does nothing (write `down` by hand)"
            )),
            note: None,
        });
    }

    fn skip(&mut self, why: &str) {
        let line = format!("{}: `{}` — {why}", self.at, super::one_line(&self.source));
        self.out.skipped.push(line);
    }

    fn down_for(&self, table: &str, column: &str) -> Option<String> {
        let bare = table.rsplit('.').next().unwrap_or(table);
        self.downs
            .iter()
            .find(|(k, _)| {
                k == column || *k == format!("{table}.{column}") || *k == format!("{bare}.{column}")
            })
            .map(|(_, v)| v.clone())
    }
}

fn statement(cx: &mut Cx, stmt: ast::Stmt) -> Result<(), Unmappable> {
    use ast::Stmt as S;
    match stmt {
        S::Begin(_) | S::Commit(_) | S::Rollback(_) | S::SetTransaction(_) => {
            cx.skip("transaction control: Cutover runs each phase in its own transaction");
        }
        S::Set(_) | S::Reset(_) => {
            cx.skip("session setting: Cutover sets its own timeouts and search path per phase");
        }
        S::Select(ref s) if text_of(s).contains("set_config(") => {
            cx.skip("session setting (pg_dump header)");
        }
        S::AlterTable(a) => alter_table(cx, a)?,
        S::CreateIndex(c) => create_index(cx, c)?,
        S::DropIndex(d) => {
            for r in d.index_refs() {
                let n = name(&text_of(&r));
                let (schema, index) = n.split_once('.').unwrap_or(("public", n.as_str()));
                let op = OperationSpec {
                    op: "drop_index".into(),
                    name: Some(index.to_string()),
                    table: Some(format!("{schema}.{index}")),
                    ..OperationSpec::default()
                };
                cx.push(op, Some("dropped CONCURRENTLY at contract"));
            }
        }
        S::CreateTable(c) => create_table(cx, &c)?,
        S::DropTable(d) => {
            for r in d.table_name_refs() {
                let op = OperationSpec {
                    op: "drop_table".into(),
                    table: Some(name(&text_of(&r))),
                    ..OperationSpec::default()
                };
                cx.push(
                    op,
                    Some("dropped at contract; the old version keeps it until then"),
                );
            }
        }
        S::Insert(_) | S::Update(_) | S::Delete(_) if bookkeeping(&stmt) => {
            let sql = cx.source.clone();
            cx.push(
                raw(sql, None, Phase::Contract),
                Some("the ORM's record of applied migrations: written at contract, once the change is complete and can no longer be rolled back"),
            );
        }
        S::Insert(_) | S::Update(_) | S::Delete(_) | S::Merge(_) | S::Truncate(_) => {
            let sql = cx.source.clone();
            cx.risky(sql, "changes rows in one transaction: every row it touches stays locked until the phase commits, with no progress or throttle (a [backfill] does it in chunks)");
        }
        S::CommentOn(_) => {
            let sql = cx.source.clone();
            cx.push(
                raw(sql, Some(String::new()), Phase::Expand),
                Some("metadata only"),
            );
        }
        other => match super::sql_creates::inverse(&other) {
            Some((down, note)) => {
                let sql = cx.source.clone();
                cx.push(raw(sql, Some(down), Phase::Expand), Some(note));
            }
            None => {
                let sql = cx.source.clone();
                cx.risky(sql, "no Cutover operation expresses this statement, so nothing keeps the old and new versions working across it and its locks are not checked");
            }
        },
    }
    Ok(())
}

/// `CREATE TABLE`: the `create_table` operation, or raw SQL with a finding naming what the
/// operation cannot express.
fn create_table(cx: &mut Cx, c: &ast::CreateTable) -> Result<(), Unmappable> {
    let t = c
        .table_name()
        .map(|n| name(&text_of(&n)))
        .ok_or(Unmappable::Incomplete("CREATE TABLE names no table"))?;
    match super::sql_table::create_table(c, &t) {
        Ok(op) => cx.push(
            op,
            Some("a new table: created in expand (no reader waits on it), dropped by the rollback"),
        ),
        Err(unmapped) => {
            let t = Table::parse(&t);
            let sql = cx.source.clone();
            let memo = c.if_not_exists().map(|_| Memo::new(&t, "existed"));
            let (op, dropped) = match &memo {
                // The table may predate the migration: the rollback drops it only if
                // this expand created it (recorded in a memo as it runs).
                Some(memo) => {
                    let existed = format!("to_regclass({}) IS NOT NULL", memo.table_literal());
                    let undo = memo.restore(
                        "IF NOT prev::boolean THEN EXECUTE format('DROP TABLE IF EXISTS %s', tbl); END IF;",
                        &format!("DROP TABLE IF EXISTS {}", t.sql()),
                    );
                    (
                        raw(format!("{}\n{sql}", memo.save(&existed)), Some(undo), Phase::Expand),
                        "dropped by the rollback only if expand created it (a memo records whether it existed)",
                    )
                }
                None => (
                    raw(
                        sql,
                        Some(format!("DROP TABLE IF EXISTS {}", t.sql())),
                        Phase::Expand,
                    ),
                    "dropped by the rollback",
                ),
            };
            cx.out.items.push(Item {
                op,
                at: cx.at.clone(),
                source: cx.source.clone(),
                risk: Some(format!(
                    "CREATE TABLE kept as SQL: Cutover's create_table does not express {unmapped}; created in expand, {dropped}"
                )),
                note: None,
            });
            if let Some(memo) = memo {
                cx.out.items.push(Item {
                    op: raw(memo.forget(), None, Phase::Contract),
                    at: cx.at.clone(),
                    source: cx.source.clone(),
                    risk: None,
                    note: Some(
                        "drops the memo of whether the table existed before expand".to_string(),
                    ),
                });
            }
        }
    }
    Ok(())
}

/// The tables where ORMs record applied migrations (Rails, Alembic, Django, Flyway, Prisma,
/// Knex, Sequelize, TypeORM).
const BOOKKEEPING: [&str; 8] = [
    "schema_migrations",
    "alembic_version",
    "django_migrations",
    "flyway_schema_history",
    "_prisma_migrations",
    "knex_migrations",
    "SequelizeMeta",
    "migrations",
];

/// Whether an `INSERT`, `UPDATE` or `DELETE` writes to an ORM's migration history.
fn bookkeeping(stmt: &ast::Stmt) -> bool {
    let target = match stmt {
        ast::Stmt::Insert(i) => i.relation_name_ref().map(|r| text_of(&r)),
        ast::Stmt::Update(u) => u.relation_name().map(|r| text_of(&r)),
        ast::Stmt::Delete(d) => d.relation_name().map(|r| text_of(&r)),
        _ => None,
    };
    target.is_some_and(|t| {
        let t = t.trim();
        let t = t
            .strip_prefix("ONLY ")
            .or_else(|| t.strip_prefix("only "))
            .unwrap_or(t);
        let n = name(t);
        let bare = n.rsplit('.').next().unwrap_or(&n);
        BOOKKEEPING.contains(&bare)
    })
}

fn create_index(cx: &mut Cx, c: ast::CreateIndex) -> Result<(), Unmappable> {
    let table = c
        .table_relation_name()
        .and_then(|r| r.table_name_ref())
        .map(|n| name(&text_of(&n)))
        .ok_or(Unmappable::Incomplete("CREATE INDEX names no table"))?;
    let items: Vec<ast::PartitionItem> = c
        .partition_item_list()
        .map(|l| l.partition_items().collect())
        .unwrap_or_default();
    let cols: Vec<String> = items.iter().map(|i| name(&text_of(i))).collect();
    let plain_cols = items.iter().all(|i| {
        i.collate().is_none()
            && i.op_class_ref().is_none()
            && i.sort_order().is_none()
            && i.nulls_order().is_none()
            && i.expr().is_some_and(|e| matches!(e, ast::Expr::NameRef(_)))
    });
    let index = c.index().map(|i| name(&text_of(&i))).unwrap_or_else(|| {
        let bare = table.rsplit('.').next().unwrap_or(&table).to_string();
        crate::plan::operations::idents::limit(format!("{bare}_{}_idx", cols.join("_")))
    });
    let extra = c.index_include_clause().is_some()
        || c.nulls_distinct_option().is_some()
        || c.tablespace_clause().is_some()
        || c.with_params().is_some();
    let unique = c.unique_token().is_some();
    if plain_cols && !extra && !cols.is_empty() {
        let op = OperationSpec {
            op: "create_index".into(),
            table: Some(table),
            name: Some(index),
            columns: Some(cols.into_iter().map(ColumnItem::Name).collect()),
            unique: unique.then_some(Unique::Flag(true)),
            method: c
                .using_method()
                .and_then(|m| m.access_method_ref())
                .map(|m| text_of(&m)),
            predicate: c.where_clause().and_then(|w| w.expr()).map(|e| text_of(&e)),
            ..OperationSpec::default()
        };
        cx.push(op, Some("built CONCURRENTLY in expand"));
        return Ok(());
    }
    // Expressions, operator classes, INCLUDE, …: the statement itself, made concurrent.
    let mut sql = cx.source.clone();
    if c.concurrently_token().is_none() {
        let at = c
            .index_token()
            .map(|t| usize::from(t.text_range().end() - c.syntax().text_range().start()))
            .ok_or(Unmappable::Incomplete("CREATE INDEX without INDEX"))?;
        sql.insert_str(at, " CONCURRENTLY");
    }
    let schema = Table::parse(&table).schema;
    cx.push(
        raw(
            sql,
            Some(format!(
                "DROP INDEX CONCURRENTLY IF EXISTS {}.{}",
                ident(&schema),
                ident(&index)
            )),
            Phase::Expand,
        ),
        Some("built CONCURRENTLY in expand (written as SQL: expressions, operator classes or options)"),
    );
    Ok(())
}

fn alter_table(cx: &mut Cx, a: ast::AlterTable) -> Result<(), Unmappable> {
    let table = a
        .table_relation_name()
        .and_then(|r| r.table_name_ref())
        .map(|n| name(&text_of(&n)))
        .ok_or(Unmappable::Incomplete("ALTER TABLE names no table"))?;
    let t = Table::parse(&table);
    for action in a.actions() {
        let action_text = text_of(&action);
        if !mapped(cx, &table, &t, &action)? {
            let sql = format!("ALTER TABLE {} {action_text}", t.sql());
            cx.risky(sql, "no Cutover operation expresses this ALTER TABLE action: it may take an ACCESS EXCLUSIVE lock or rewrite the table while both versions run");
        }
    }
    Ok(())
}

/// `SET LOGGED` / `SET UNLOGGED`: the rollback puts back the persistence the table had when
/// expand ran (kept in a memo).
fn set_persistence(cx: &mut Cx, t: &Table, action: &ast::AlterTableAction) {
    let memo = Memo::new(t, "persistence");
    let read = format!(
        "SELECT relpersistence::text FROM pg_class WHERE oid = {}::regclass",
        memo.table_literal()
    );
    let undo = memo.restore(
        "IF prev = 'p' THEN EXECUTE format('ALTER TABLE %s SET LOGGED', tbl); \
         ELSIF prev = 'u' THEN EXECUTE format('ALTER TABLE %s SET UNLOGGED', tbl); END IF;",
        &format!("ALTER TABLE {} SET LOGGED", t.sql()),
    );
    let sql = format!(
        "{}\nALTER TABLE {} {}",
        memo.save(&read),
        t.sql(),
        text_of(action)
    );
    cx.out.items.push(Item {
        op: raw(sql, Some(undo), Phase::Expand),
        at: cx.at.clone(),
        source: cx.source.clone(),
        risk: Some(
            "SET LOGGED / UNLOGGED rewrites the whole table under an ACCESS EXCLUSIVE lock \
             (reads and writes wait for the rewrite); the rollback rewrites it back"
                .to_string(),
        ),
        note: None,
    });
    cx.push(
        raw(memo.forget(), None, Phase::Contract),
        Some("drops the memo of the table's persistence before expand"),
    );
}

fn op(kind: &str, table: &str) -> OperationSpec {
    OperationSpec {
        op: kind.into(),
        table: Some(table.to_string()),
        ..OperationSpec::default()
    }
}

/// Maps one action; false when no operation expresses it.
fn mapped(
    cx: &mut Cx,
    table: &str,
    t: &Table,
    action: &ast::AlterTableAction,
) -> Result<bool, Unmappable> {
    use ast::AlterTableAction as A;
    match action {
        A::AddColumn(add) => return add_column(cx, table, add),
        A::AlterColumn(alter) => return alter_column(cx, table, t, alter),
        A::DropColumn(d) => {
            let mut o = op("drop_column", table);
            o.column = d.column_name_ref().map(|c| name(&text_of(&c)));
            cx.push(
                o,
                Some("dropped at contract, after the hidden-reader census finds no reader"),
            );
        }
        A::AddConstraint(add) => return add_constraint(cx, table, t, add),
        A::SetLogged(_) | A::SetUnlogged(_) => set_persistence(cx, t, action),
        A::ValidateConstraint(_) => {
            let sql = format!("ALTER TABLE {} {}", t.sql(), text_of(action));
            cx.push(
                raw(sql, Some(String::new()), Phase::ReadSwitch),
                Some("validated in read_switch (SHARE UPDATE EXCLUSIVE: reads and writes go on)"),
            );
        }
        A::RenameColumn(r) => {
            let mut o = op("rename_column", table);
            o.from = r.column_name_ref().map(|c| name(&text_of(&c)));
            o.to = r.column_name().map(|c| name(&text_of(&c)));
            cx.push(o, Some("both names work until contract"));
        }
        A::TableRenameTo(r) => {
            let to = r
                .table_name()
                .map(|n| name(&text_of(&n)))
                .ok_or(Unmappable::Incomplete("RENAME TO names no table"))?;
            let o = OperationSpec {
                op: "rename_table".into(),
                from: Some(t.plain()),
                to: Some(format!("{}.{to}", t.schema)),
                ..OperationSpec::default()
            };
            cx.push(
                o,
                Some("the old name stays as an updatable view until contract"),
            );
        }
        A::RenameConstraint(r) => {
            let mut o = op("rename_constraint", table);
            o.from = r.constraint_name_ref().map(|c| name(&text_of(&c)));
            o.to = r.constraint_name().map(|c| name(&text_of(&c)));
            cx.push(o, None);
        }
        A::DropConstraint(d) => {
            let mut o = op("drop_constraint", table);
            o.name = d.constraint_name_ref().map(|c| name(&text_of(&c)));
            cx.push(o, Some("dropped at contract"));
        }
        A::ReplicaIdentity(r) => {
            let mut o = op("set_replica_identity", table);
            let text = r
                .replica_identity_option()
                .map(|x| text_of(&x))
                .unwrap_or_default();
            let upper = text.to_uppercase();
            if let Some(ix) = upper.strip_prefix("USING INDEX") {
                o.identity = Some("index".into());
                o.index = Some(name(&text[text.len() - ix.len()..]));
            } else {
                o.identity = Some(upper.to_lowercase());
            }
            cx.push(o, None);
        }
        _ => return Ok(false),
    }
    Ok(true)
}

fn add_column(cx: &mut Cx, table: &str, add: &ast::AddColumn) -> Result<bool, Unmappable> {
    let mut o = op("add_column", table);
    o.column = add.column_name().map(|c| name(&text_of(&c)));
    o.kind = add.ty().map(|t| text_of(&t));
    if o.column.is_none() || o.kind.is_none() || add.collate().is_some() {
        return Ok(false);
    }
    for c in add.constraints() {
        use ast::Constraint as C;
        match c {
            C::NotNullConstraint(_) => o.nullable = Some(false),
            C::NullConstraint(_) => o.nullable = Some(true),
            C::DefaultConstraint(d) => o.default = d.expr().map(|e| text_of(&e)),
            C::CheckConstraint(k) => {
                let e = k.expr().map(|e| text_of(&e)).unwrap_or_default();
                o.check = Some(
                    match k.constraint_name_clause().and_then(|n| n.constraint_name()) {
                        Some(n) => Check::Named {
                            name: name(&text_of(&n)),
                            constraint: e,
                        },
                        None => Check::Expr(e),
                    },
                );
            }
            C::UniqueConstraint(u) => {
                o.unique = Some(
                    match u.constraint_name_clause().and_then(|n| n.constraint_name()) {
                        Some(n) => Unique::Named {
                            name: name(&text_of(&n)),
                        },
                        None => Unique::Flag(true),
                    },
                );
            }
            C::ReferencesConstraint(r) => {
                let Some(target) = r.table().map(|t| name(&text_of(&t))) else {
                    return Ok(false);
                };
                let Some(on_delete) = on_delete_only(
                    r.referential_actions(),
                    r.match_type(),
                    r.constraint_options().count(),
                ) else {
                    return Ok(false);
                };
                o.references = Some(References {
                    name: r
                        .constraint_name_clause()
                        .and_then(|n| n.constraint_name())
                        .map(|n| name(&text_of(&n))),
                    table: target,
                    column: r.column().map(|c| name(&text_of(&c))),
                    columns: None,
                    on_delete,
                });
            }
            _ => return Ok(false),
        }
    }
    if o.nullable == Some(false) && o.default.is_none() {
        return Err(Unmappable::NotNullWithoutDefault);
    }
    cx.push(
        o,
        Some("added in expand; constraints NOT VALID in dual_write, validated in read_switch"),
    );
    Ok(true)
}

fn alter_column(
    cx: &mut Cx,
    table: &str,
    t: &Table,
    alter: &ast::AlterColumn,
) -> Result<bool, Unmappable> {
    use ast::AlterColumnOption as O;
    let col = alter
        .column_name_ref()
        .map(|c| name(&text_of(&c)))
        .ok_or(Unmappable::Incomplete("ALTER COLUMN names no column"))?;
    let mut o = op("alter_column", table);
    o.column = Some(col.clone());
    match alter.option() {
        Some(O::SetType(s)) => {
            if s.collate().is_some() {
                return Ok(false);
            }
            o.kind = s.ty().map(|t| text_of(&t));
            let using = s.using_expr().and_then(|u| u.expr()).map(|e| text_of(&e));
            let given = cx.down_for(table, &col);
            let note = match (&using, &given) {
                (Some(_), None) => {
                    return Err(Unmappable::UsingWithoutDown {
                        table: t.name.clone(),
                        column: col,
                    })
                }
                (None, None) => "a duplicate column kept in step by the sync trigger; down inferred: the new value cast back to the old type",
                _ => "a duplicate column kept in step by the sync trigger (USING is `up`)",
            };
            o.up = using;
            o.down = given;
            cx.push(o, Some(note));
        }
        Some(O::SetNotNull(_)) => {
            o.nullable = Some(false);
            cx.push(o, Some("CHECK (… IS NOT NULL) NOT VALID, validated in read_switch; SET NOT NULL at contract"));
        }
        Some(O::DropNotNull(_)) => {
            o.nullable = Some(true);
            cx.push(o, None);
        }
        Some(O::SetDefault(d)) => {
            o.default = d.expr().map(|e| text_of(&e));
            cx.push(o, None);
        }
        Some(O::DropDefault(_)) => {
            let sql = format!(
                "ALTER TABLE {} ALTER COLUMN {} DROP DEFAULT",
                t.sql(),
                ident(&col)
            );
            cx.push(
                raw(sql, None, Phase::Contract),
                Some("the default goes at contract, once the old version is gone"),
            );
        }
        _ => return Ok(false),
    }
    Ok(true)
}

/// `ADD PRIMARY KEY (…)`: its unique index built concurrently, attached at contract; false
/// for `USING INDEX` or no columns.
fn primary_key(cx: &mut Cx, t: &Table, name: &str, p: &ast::PrimaryKeyConstraint) -> bool {
    let cols = columns(p.syntax(), 0);
    if p.using_index().is_some() || cols.is_empty() {
        return false;
    }
    for (step, note) in primary_key_steps(t, name, &cols) {
        cx.push(step, Some(note));
    }
    true
}

fn add_constraint(
    cx: &mut Cx,
    table: &str,
    t: &Table,
    add: &ast::AddConstraint,
) -> Result<bool, Unmappable> {
    use ast::Constraint as C;
    let Some(c) = add.constraint() else {
        return Ok(false);
    };
    let given = |n: Option<ast::ConstraintNameClause>| {
        n.and_then(|n| n.constraint_name())
            .map(|n| name(&text_of(&n)))
    };
    let bare = t.name.clone();
    match c {
        C::CheckConstraint(k) => {
            let mut o = op("create_constraint", table);
            o.name =
                Some(given(k.constraint_name_clause()).unwrap_or_else(|| format!("{bare}_check")));
            o.kind = Some("check".into());
            o.check = k.expr().map(|e| Check::Expr(text_of(&e)));
            cx.push(o, Some("NOT VALID in dual_write, VALIDATE in read_switch"));
        }
        C::PrimaryKeyConstraint(p) => {
            let name = given(p.constraint_name_clause()).unwrap_or_else(|| format!("{bare}_pkey"));
            return Ok(primary_key(cx, t, &name, &p));
        }
        C::UniqueConstraint(u) => {
            let cols = columns(u.syntax(), 0);
            if u.using_index().is_some() || cols.is_empty() {
                return Ok(false);
            }
            let mut o = op("create_constraint", table);
            o.name = Some(
                given(u.constraint_name_clause())
                    .unwrap_or_else(|| format!("{bare}_{}_key", cols.join("_"))),
            );
            o.kind = Some("unique".into());
            o.columns = Some(cols.into_iter().map(ColumnItem::Name).collect());
            cx.push(o, Some("unique index built CONCURRENTLY in expand, attached as the constraint at contract"));
        }
        C::ForeignKeyConstraint(f) => {
            let from = columns(f.syntax(), 0);
            let to = columns(f.syntax(), 1);
            let target = f
                .table_name_ref()
                .map(|n| name(&text_of(&n)))
                .ok_or(Unmappable::Incomplete("FOREIGN KEY references no table"))?;
            let fk_name = given(f.constraint_name_clause())
                .unwrap_or_else(|| format!("{bare}_{}_fkey", from.join("_")));
            match on_delete_only(
                f.referential_actions(),
                f.match_type(),
                f.constraint_options().count(),
            ) {
                Some(on_delete) if !from.is_empty() => {
                    let mut o = op("create_constraint", table);
                    o.name = Some(fk_name);
                    o.kind = Some("foreign_key".into());
                    o.columns = Some(from.into_iter().map(ColumnItem::Name).collect());
                    o.references = Some(References {
                        name: None,
                        table: target,
                        column: None,
                        columns: (!to.is_empty()).then_some(to),
                        on_delete,
                    });
                    cx.push(o, Some("NOT VALID in dual_write, VALIDATE in read_switch"));
                }
                _ => {
                    // Options Cutover's operation does not take (ON UPDATE, DEFERRABLE, MATCH):
                    // the same two lock-safe steps, as SQL.
                    let body = text_of(&f);
                    let body = body.trim_end_matches(|c: char| c.is_whitespace());
                    let body = strip_not_valid(body);
                    let name_sql = ident(&fk_name);
                    let body = match f.constraint_name_clause() {
                        Some(_) => body,
                        None => format!("CONSTRAINT {name_sql} {body}"),
                    };
                    cx.push(
                        raw(
                            format!("ALTER TABLE {} ADD {body} NOT VALID", t.sql()),
                            Some(format!("ALTER TABLE {} DROP CONSTRAINT IF EXISTS {name_sql}", t.sql())),
                            Phase::DualWrite,
                        ),
                        Some("foreign key, step 1: NOT VALID in dual_write (written as SQL for its ON UPDATE/DEFERRABLE/MATCH options)"),
                    );
                    cx.push(
                        raw(
                            format!("ALTER TABLE {} VALIDATE CONSTRAINT {name_sql}", t.sql()),
                            Some(String::new()),
                            Phase::ReadSwitch,
                        ),
                        Some("foreign key, step 2: VALIDATE in read_switch"),
                    );
                }
            }
        }
        _ => return Ok(false),
    }
    Ok(true)
}

/// The constraint text without a trailing `NOT VALID` (the import adds it).
fn strip_not_valid(body: &str) -> String {
    let upper = body.to_uppercase();
    match upper.rfind("NOT VALID") {
        Some(i) if upper[i..].trim() == "NOT VALID" => body[..i].trim_end().to_string(),
        _ => body.to_string(),
    }
}
