//! The two-version mechanism: per table ONE `BEFORE INSERT OR UPDATE` row trigger that keeps old
//! and new columns in step, ONE shared backfill pass, and the checks
//! that prove it.
//!
//! For a group of old columns and their new counterparts the trigger picks the direction from
//! what the writer changed: new columns changed and old ones did not (on INSERT: a new column
//! set — the old ones may hold their defaults) means a new-version writer, and `down` fills the old columns unless the
//! new values already equal `up(old)` (the backfill writes exactly that, so it never rewrites old
//! data); every other write is an old-version writer, and `up` fills the new columns. An update
//! that changes none of them (say of another column, by either version) fills only new columns
//! still NULL: a row the backfill has not reached yet must not break a `NOT NULL` check added
//! `NOT VALID` — which is why the trigger fires on every update, not only on its columns. The trigger
//! assigns to `NEW` only and runs no statement on the table: no loops. Expressions see the row as
//! it will be written, through `(SELECT <expr> FROM (SELECT NEW.*) AS r)`.

use std::collections::BTreeMap;

use super::idents::{ident, limit, rename_column, Table};
use super::{Expansion, Stage};
use crate::plan::{BackfillSpec, CheckKind, CheckSpec, Phase, ThrottleSpec};

/// What one trigger keeps in step.
#[derive(Debug, Clone)]
pub(crate) enum Group {
    /// `col` gets `expr` whenever a write leaves it NULL (added columns, defaults for dropped
    /// ones); `backfill` when existing rows need it too.
    Fill {
        col: String,
        expr: String,
        backfill: bool,
        /// Also fill on writes (else the backfill alone, e.g. for a volatile default).
        trigger: bool,
        op: usize,
    },
    /// Old columns and new ones, kept equal both ways.
    Pair {
        olds: Vec<String>,
        /// (new column, `up` over the old columns)
        news: Vec<(String, String)>,
        /// (old column, `down` over the new columns)
        downs: Vec<(String, String)>,
        op: usize,
    },
    /// `col` holds `expr` (another table's value); kept by triggers of its own (`move_column`),
    /// here only backfilled and checked.
    Copy {
        col: String,
        expr: String,
        op: usize,
    },
}

impl Group {
    fn op(&self) -> usize {
        match self {
            Group::Fill { op, .. } | Group::Pair { op, .. } | Group::Copy { op, .. } => *op,
        }
    }
}

/// The sync work of one table.
#[derive(Debug, Clone, Default)]
pub(crate) struct TableSync {
    key: Vec<String>,
    groups: Vec<Group>,
}

/// Sync work per table.
#[derive(Debug, Clone, Default)]
pub(crate) struct Syncs(BTreeMap<Table, TableSync>);

impl Syncs {
    pub(crate) fn add(&mut self, table: &Table, key: &[String], group: Group) {
        let t = self.0.entry(table.clone()).or_default();
        if t.key.is_empty() {
            t.key = key.to_vec();
        }
        t.groups.push(group);
    }

    /// Emits triggers, the shared backfill and the parity checks into `x`.
    pub(crate) fn generate(self, x: &mut Expansion) {
        for (table, sync) in &self.0 {
            checks(x, table, sync);
            let in_trigger =
                |g: &&Group| !matches!(g, Group::Fill { trigger: false, .. } | Group::Copy { .. });
            let Some(first) = sync.groups.iter().find(in_trigger).map(Group::op) else {
                continue;
            };
            let (apply, rollback) = trigger(table, &sync.groups);
            x.part(
                first,
                Phase::DualWrite,
                Stage::Sync,
                apply,
                rollback.clone(),
            );
            x.part(
                first,
                Phase::Contract,
                Stage::Unsync,
                rollback,
                String::new(),
            );
        }
        let mut with_backfill: Vec<(&Table, &TableSync)> = self
            .0
            .iter()
            .filter(|(_, s)| s.groups.iter().any(needs_backfill))
            .collect();
        with_backfill.sort_by_key(|(_, s)| first_backfill_op(s));
        if let Some(((table, sync), rest)) = with_backfill.split_first() {
            for (other, s) in rest {
                if let Some(g) = s.groups.iter().find(|g| needs_backfill(g)) {
                    x.problem(
                        g.op(),
                        "table",
                        format!(
                            "this operation needs a backfill of `{}`, but `{}` already has the plan's one backfill pass",
                            other.plain(),
                            table.plain()
                        ),
                    );
                }
            }
            x.backfill = Some((backfill(table, sync), first_backfill_op(sync)));
        }
    }
}

fn needs_backfill(g: &Group) -> bool {
    match g {
        Group::Fill { backfill, .. } => *backfill,
        Group::Pair { .. } | Group::Copy { .. } => true,
    }
}

fn first_backfill_op(sync: &TableSync) -> usize {
    sync.groups
        .iter()
        .find(|g| needs_backfill(g))
        .map_or(0, Group::op)
}

/// `expr` evaluated over the row being written.
fn over_new(expr: &str) -> String {
    format!("(SELECT {expr} FROM (SELECT NEW.*) AS r)")
}

fn changed(cols: &[&str]) -> String {
    cols.iter()
        .map(|c| format!("NEW.{0} IS DISTINCT FROM OLD.{0}", ident(c)))
        .collect::<Vec<_>>()
        .join(" OR ")
}

fn trigger(table: &Table, groups: &[Group]) -> (String, String) {
    let func = table.sibling(&limit(format!("{}_cutover_sync", table.name)));
    let name = ident(&limit(format!("{}_cutover_sync", table.name)));
    let mut body = String::new();
    for g in groups {
        match g {
            Group::Fill { trigger: false, .. } | Group::Copy { .. } => {}
            Group::Fill { col, expr, .. } => {
                let c = ident(col);
                body.push_str(&format!(
                    "    IF NEW.{c} IS NULL THEN\n        NEW.{c} := {};\n    END IF;\n",
                    over_new(expr)
                ));
            }
            Group::Pair {
                olds, news, downs, ..
            } => {
                let old: Vec<&str> = olds.iter().map(String::as_str).collect();
                let new: Vec<&str> = news.iter().map(|(c, _)| c.as_str()).collect();
                let any_set = new
                    .iter()
                    .map(|c| format!("NEW.{} IS NOT NULL", ident(c)))
                    .collect::<Vec<_>>()
                    .join(" OR ");
                let any_null = new
                    .iter()
                    .map(|c| format!("NEW.{} IS NULL", ident(c)))
                    .collect::<Vec<_>>()
                    .join(" OR ");
                let consistent = news
                    .iter()
                    .map(|(c, up)| format!("NEW.{} IS DISTINCT FROM {}", ident(c), over_new(up)))
                    .collect::<Vec<_>>()
                    .join(" OR ");
                body.push_str(&format!(
                    "    -- {} ← → {}\n    IF TG_OP = 'UPDATE' AND ({}) AND NOT ({})\n       OR TG_OP = 'INSERT' AND ({any_set}) THEN\n        IF {consistent} THEN\n",
                    old.join(", "),
                    new.join(", "),
                    changed(&new),
                    changed(&old),
                ));
                for (c, down) in downs {
                    body.push_str(&format!(
                        "            NEW.{} := {};\n",
                        ident(c),
                        over_new(down)
                    ));
                }
                body.push_str(&format!(
                    "        END IF;\n    ELSIF TG_OP = 'INSERT' OR ({}) OR {any_null} THEN\n",
                    changed(&old)
                ));
                for (c, up) in news {
                    body.push_str(&format!("        NEW.{} := {};\n", ident(c), over_new(up)));
                }
                body.push_str("    END IF;\n");
            }
        }
    }
    let apply = format!(
        "CREATE FUNCTION {func}() RETURNS trigger\nLANGUAGE plpgsql AS $cutover$\nBEGIN\n{body}    RETURN NEW;\nEND\n$cutover$;\nCREATE TRIGGER {name}\n    BEFORE INSERT OR UPDATE ON {}\n    FOR EACH ROW EXECUTE FUNCTION {func}();",
        table.sql()
    );
    let rollback = format!(
        "DROP TRIGGER IF EXISTS {name} ON {};\nDROP FUNCTION IF EXISTS {func}();",
        table.sql()
    );
    (apply, rollback)
}

fn backfill(table: &Table, sync: &TableSync) -> BackfillSpec {
    let mut set = BTreeMap::new();
    let mut pending = Vec::new();
    for g in &sync.groups {
        match g {
            Group::Fill {
                col,
                expr,
                backfill: true,
                ..
            } => {
                set.insert(col.clone(), format!("coalesce({}, {expr})", ident(col)));
                pending.push(format!("{} IS NULL", ident(col)));
            }
            Group::Pair { news, .. } => {
                for (c, up) in news {
                    set.insert(c.clone(), up.clone());
                    pending.push(format!("{} IS DISTINCT FROM ({up})", ident(c)));
                }
            }
            Group::Copy { col, expr, .. } => {
                set.insert(col.clone(), expr.clone());
                pending.push(format!("{} IS DISTINCT FROM ({expr})", ident(col)));
            }
            Group::Fill { .. } => {}
        }
    }
    BackfillSpec {
        mode: crate::plan::BackfillMode::Update,
        table: table.plain(),
        key: sync.key.clone(),
        set,
        pending: pending.join(" OR "),
        into: None,
        columns: Default::default(),
        target_key: Vec::new(),
        target_chunk_time: crate::plan::Duration::from_millis(300),
        initial_chunk_rows: 1_000,
        min_chunk_rows: 50,
        max_chunk_rows: 100_000,
        max_rows_per_second: 0,
        workers: 1,
        idle_workers: 2,
        throttle: ThrottleSpec::default(),
    }
}

fn checks(x: &mut Expansion, table: &Table, sync: &TableSync) {
    for g in &sync.groups {
        let (cols, op): (Vec<(String, String)>, usize) = match g {
            Group::Pair { news, op, .. } => (news.clone(), *op),
            Group::Copy { col, expr, op } => (vec![(col.clone(), expr.clone())], *op),
            Group::Fill {
                col,
                backfill: true,
                op,
                ..
            } => {
                let check = CheckSpec {
                    name: format!("{}-{}-not-null", table.name, col),
                    description: format!("generated: no row of {} has {col} NULL", table.plain()),
                    timeout: None,
                    kind: CheckKind::Invariant {
                        sql: format!(
                            "SELECT count(*) FROM {} WHERE {} IS NULL",
                            table.sql(),
                            ident(col)
                        ),
                        expect: Some(0.0),
                        max: None,
                        min: None,
                    },
                };
                x.checks.push((check, *op));
                continue;
            }
            Group::Fill { .. } => continue,
        };
        for (col, up) in cols {
            let check = CheckSpec {
                name: format!("{}-{}-parity", table.name, col),
                description: format!("generated: {col} equals `{up}` on every row"),
                timeout: None,
                kind: CheckKind::ExpressionParity {
                    table: table.plain(),
                    key: sync.key.clone(),
                    column: ident(&col),
                    expression: up,
                    filter: None,
                },
            };
            x.checks.push((check, op));
        }
    }
}

/// `down`, written over the final names, rewritten to the columns that hold the new values
/// while both versions run.
pub(crate) fn over_duplicates(down: &str, renames: &[(String, String)]) -> String {
    renames.iter().fold(down.to_string(), |e, (from, to)| {
        rename_column(&e, from, to)
    })
}
