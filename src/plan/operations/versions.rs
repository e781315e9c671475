//! Version schemas (opt-in, `version_schemas = true`): for apps that choose their version with
//! `search_path`, pgroll-style. For every table whose columns the operations change, dual_write
//! creates a view of the old shape in `<schema>_<id>_old` and one of the new shape in
//! `<schema>_<id>_new` (id with `-` as `_`): the old view hides the columns the operations add,
//! the new view hides the columns they drop or replace and shows duplicates under their final
//! names; a column moved to another table shows in the old view of its source and the new view
//! of its target; a renamed table's old view has its old name. Both are simple views, so PostgreSQL updates through them, and every write reaches the
//! table and its sync trigger. The column lists are read from the catalog when the phase runs
//! (the plan does not know the table's other columns). dual_write's rollback and contract (before
//! any column goes) drop the views and the schemas; a schema holding anything else makes that
//! fail rather than lose it.

use std::collections::{BTreeMap, BTreeSet};

use super::idents::{ident, limit, Table};
use super::locks::declare_as;
use super::memo::literal;
use super::{Expansion, Stage};
use crate::plan::Phase;

/// How one table's two shapes differ.
#[derive(Debug, Clone, Default)]
pub(crate) struct Shape {
    /// Columns only the new version sees.
    new_only: Vec<String>,
    /// Columns only the old version sees.
    old_only: Vec<String>,
    /// (physical column, name the new version sees it by).
    renamed: Vec<(String, String)>,
    /// The table's name in the old version, when the operations rename it.
    old_name: Option<String>,
    /// The first operation on the table.
    op: usize,
}

/// The shapes of every table the operations change.
#[derive(Debug, Clone, Default)]
pub(crate) struct Shapes(BTreeMap<Table, Shape>);

impl Shapes {
    fn shape(&mut self, t: &Table, op: usize) -> &mut Shape {
        self.0.entry(t.clone()).or_insert_with(|| Shape {
            op,
            ..Shape::default()
        })
    }

    /// `col` is added: only the new version sees it.
    pub(crate) fn added(&mut self, t: &Table, op: usize, col: &str) {
        self.shape(t, op).new_only.push(col.to_string());
    }

    /// `col` goes at contract: only the old version sees it.
    pub(crate) fn dropped(&mut self, t: &Table, op: usize, col: &str) {
        self.shape(t, op).old_only.push(col.to_string());
    }

    /// `col` is replaced by the duplicate `dup`, which the new version calls `finale`.
    pub(crate) fn replaced(&mut self, t: &Table, op: usize, col: &str, dup: &str, finale: &str) {
        let s = self.shape(t, op);
        s.old_only.push(col.to_string());
        s.new_only.push(dup.to_string());
        if dup != finale {
            s.renamed.push((dup.to_string(), finale.to_string()));
        }
    }

    /// The table `to` was called `from` (same schema): the old version sees it by that name.
    pub(crate) fn renamed_table(&mut self, to: &Table, op: usize, from: &Table) {
        self.shape(to, op).old_name = Some(from.name.clone());
    }

    /// The views and schemas, in dual_write and contract.
    pub(crate) fn generate(self, x: &mut Expansion, id: &str) {
        let tag = crate::plan::identifier_tag(id);
        let (Some(first), Some(last)) = (
            self.0.values().map(|s| s.op).min(),
            self.0.values().map(|s| s.op).max(),
        ) else {
            return;
        };
        // Tables of one schema share its version schemas: created before any view, dropped
        // after every view (a rollback runs parts last first; contract in order).
        let mut schemas = BTreeSet::new();
        let mut views = Vec::new();
        for (t, shape) in self.0 {
            let mut apply = Vec::new();
            let mut drop = Vec::new();
            let old_name = shape.old_name.as_deref().unwrap_or(&t.name);
            for (version, name, hidden, renamed) in [
                ("old", old_name, &shape.new_only, &[][..]),
                ("new", t.name.as_str(), &shape.old_only, &shape.renamed[..]),
            ] {
                let schema = ident(&limit(format!("{}_{tag}_{version}", t.schema)));
                let view = format!("{schema}.{}", ident(name));
                apply.push(create_view(&t, &view, hidden, renamed));
                drop.push(format!("DROP VIEW IF EXISTS {view};"));
                schemas.insert(schema);
            }
            views.push((shape.op, apply.join("\n"), drop.join("\n")));
        }
        let create: Vec<String> = schemas
            .iter()
            .map(|s| format!("CREATE SCHEMA IF NOT EXISTS {s};"))
            .collect();
        let drop: Vec<String> = schemas
            .iter()
            .map(|s| format!("DROP SCHEMA IF EXISTS {s};"))
            .collect();
        let (create, drop) = (create.join("\n"), drop.join("\n"));
        x.part(first, Phase::DualWrite, Stage::Sync, create, drop.clone());
        for (op, apply, drop) in views {
            x.part(op, Phase::DualWrite, Stage::Sync, apply, drop.clone());
            x.part(op, Phase::Contract, Stage::Unsync, drop, String::new());
        }
        x.part(last, Phase::Contract, Stage::Unsync, drop, String::new());
    }
}

/// `CREATE VIEW view AS SELECT <every column of t but hidden, renamed as given> FROM t`, the
/// list read from the catalog when it runs.
fn create_view(t: &Table, view: &str, hidden: &[String], renamed: &[(String, String)]) -> String {
    let array = |names: &[String]| {
        format!(
            "ARRAY[{}]::name[]",
            names
                .iter()
                .map(|n| literal(n))
                .collect::<Vec<_>>()
                .join(", ")
        )
    };
    let cases: String = renamed
        .iter()
        .map(|(from, to)| {
            format!(
                " WHEN {} THEN format('%I AS %I', attname, {})",
                literal(from),
                literal(to)
            )
        })
        .collect();
    let column = if cases.is_empty() {
        "quote_ident(attname)".to_string()
    } else {
        format!("CASE attname{cases} ELSE quote_ident(attname) END")
    };
    format!(
        "DO $cutover$\n{declares}\nDECLARE cols text; BEGIN SELECT string_agg({column}, ', ' ORDER BY attnum) INTO cols FROM pg_attribute WHERE attrelid = {table}::regclass AND attnum > 0 AND NOT attisdropped AND attname <> ALL ({hidden}); EXECUTE format('CREATE VIEW %s AS SELECT %s FROM %s', {view}, cols, {table}); END $cutover$;",
        declares = declare_as(&format!("CREATE VIEW {view} AS SELECT * FROM {}", t.sql())),
        table = literal(&t.sql()),
        hidden = array(hidden),
        view = literal(view),
    )
}
