//! `[[operations]]`: declarative schema changes expanded into the plan model at load time.
//!
//! Each operation (`op = "alter_column"`, …; field names follow pgroll's) contributes SQL to the
//! five phases and their rollbacks, and per table one sync trigger, one shared `[backfill]`, the
//! checks that prove it and the legacy columns for the hidden-reader census. The engine, worker
//! and TUI see an ordinary plan.
//!
//! Hand-written parts win: a key written under `[phases.<phase>]` (`apply`, `rollback`,
//! `irreversible`, `description`) replaces the generated one; a hand-written `[backfill]` or
//! `[read_switch]` replaces the generated one; a hand-written `[[checks]]` entry replaces the
//! generated check of the same name; `[gates.<phase>]` written by hand is kept as written
//! (generated checks only join gates the plan does not write). Within a phase the generated SQL
//! runs in operation order, schema changes first, then sync triggers, then constraints; rollbacks
//! run in reverse. The README's "Plans from operations" lists every operation and its phases.

mod columns;
pub(crate) mod idents;
pub mod locks;
pub(crate) mod memo;
mod moves;
mod schema;
mod sync;
pub mod template;
mod versions;

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};
use toml::de::{DeTable, DeValue};

use super::diagnostic::{Problem, Seg};
use super::{
    BackfillSpec, CheckSpec, LintAck, Phase, PhaseSpec, PlanSpec, ProbeKind, ReadSwitchSpec,
};
use crate::sql;

/// One `[[operations]]` entry. Which fields an operation needs depends on `op`; unused fields
/// are refused.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct OperationSpec {
    /// The operation: `add_column`, `alter_column`, `rename_column`, `drop_column`,
    /// `split_column`, `create_table`, `drop_table`, `rename_table`, `create_index`,
    /// `drop_index`, `create_constraint`, `drop_constraint`, `drop_multicolumn_constraint`,
    /// `rename_constraint`, `set_replica_identity` or `sql`.
    pub op: String,
    /// Table (`schema.table` or `table`; `public` by default).
    pub table: Option<String>,
    /// Column the operation works on.
    pub column: Option<String>,
    /// New name (of a column, index or constraint, depending on `op`).
    pub name: Option<String>,
    /// Column type (`add_column`, `alter_column`) or constraint type (`create_constraint`:
    /// `unique`, `check` or `foreign_key`).
    #[serde(rename = "type")]
    pub kind: Option<String>,
    /// SQL expression over the old columns that computes the new value.
    pub up: Option<String>,
    /// SQL expression over the new columns that computes the old value.
    pub down: Option<String>,
    /// Whether the column may hold NULL.
    pub nullable: Option<bool>,
    /// A unique constraint (`{ name = "…" }`), or `true` for a unique index.
    pub unique: Option<Unique>,
    /// A check constraint (`{ name, constraint }`), or its expression (`create_constraint`).
    pub check: Option<Check>,
    /// A foreign key.
    pub references: Option<References>,
    /// Column default (SQL expression).
    pub default: Option<String>,
    /// Column comment.
    pub comment: Option<String>,
    /// Key columns of the table (default `["id"]`): they must be unique and NOT NULL.
    pub key: Option<Vec<String>>,
    /// Columns: names (`create_index`, `create_constraint`) or definitions (`create_table`,
    /// `split_column`).
    pub columns: Option<Vec<ColumnItem>>,
    /// Index method (`btree`, `gin`, …).
    pub method: Option<String>,
    /// Partial index predicate.
    pub predicate: Option<String>,
    /// Old name (`rename_table`, `rename_column`, `rename_constraint`).
    pub from: Option<String>,
    /// New name (`rename_table`, `rename_column`, `rename_constraint`).
    pub to: Option<String>,
    /// Replica identity: `default`, `full`, `nothing` or `index`.
    pub identity: Option<String>,
    /// Index of the replica identity, or index to drop.
    pub index: Option<String>,
    /// Phase of a raw `sql` operation (default `expand`).
    pub phase: Option<Phase>,
    /// `move_column`: the table the column moves to.
    pub to_table: Option<String>,
    /// `move_column`: the column of `to_table` that holds the source's key.
    pub join: Option<String>,
    /// `move_column`: key columns of `to_table` (default `["id"]`).
    pub to_key: Option<Vec<String>>,
}

/// `unique = true` or `unique = { name = "…" }`.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(untagged)]
pub enum Unique {
    /// A unique index (`create_index`) or an unnamed unique constraint.
    Flag(bool),
    /// A named unique constraint.
    Named {
        /// Constraint name.
        name: String,
    },
}

/// `check = "expr"` or `check = { name, constraint }`.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(untagged)]
pub enum Check {
    /// The expression alone.
    Expr(String),
    /// A named check.
    Named {
        /// Constraint name.
        name: String,
        /// The expression.
        constraint: String,
    },
}

/// A foreign key.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct References {
    /// Constraint name.
    pub name: Option<String>,
    /// Referenced table.
    pub table: String,
    /// Referenced column.
    pub column: Option<String>,
    /// Referenced columns (multi-column keys).
    pub columns: Option<Vec<String>>,
    /// `ON DELETE` action (`CASCADE`, `SET NULL`, …).
    pub on_delete: Option<String>,
}

/// A column name or a column definition.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(untagged)]
pub enum ColumnItem {
    /// A column name.
    Name(String),
    /// A column definition.
    Def(Box<ColumnDef>),
}

/// A column of `create_table` or `split_column`.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ColumnDef {
    /// Name.
    pub name: String,
    /// Type.
    #[serde(rename = "type")]
    pub kind: String,
    /// Nullable (default true).
    pub nullable: Option<bool>,
    /// Default expression.
    pub default: Option<String>,
    /// Part of the primary key.
    pub pk: Option<bool>,
    /// Unique.
    pub unique: Option<bool>,
    /// Check expression.
    pub check: Option<String>,
    /// Foreign key.
    pub references: Option<References>,
    /// `split_column`: expression over the old column giving this column's value.
    pub up: Option<String>,
}

/// Where generated parts of a plan came from, to point problems in them at their operation.
#[derive(Debug, Clone, Default)]
pub struct Origins {
    /// Generated plan paths (prefixes) and the operation that produced each.
    pub paths: Vec<(Vec<Seg>, usize)>,
    /// Phases whose `apply` was generated (not written by hand).
    pub phases: Vec<Phase>,
    /// Byte ranges of generated phase scripts and the operation that wrote each.
    pub spans: Vec<Span>,
}

/// A range of a generated phase script written by one operation.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Span {
    /// The phase.
    pub phase: Phase,
    /// In the `rollback` script (else `apply`).
    pub rollback: bool,
    /// Byte range in the script.
    pub range: std::ops::Range<usize>,
    /// 0-based index of the operation.
    pub op: usize,
}

impl Origins {
    /// True when `phase`'s SQL was generated from operations.
    pub fn generated(&self, phase: Phase) -> bool {
        self.phases.contains(&phase)
    }
}

/// The operation a statement of a phase script was generated from, and where the plan declares
/// it: what a failure at apply or rollback time names besides the SQL.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct OperationRef {
    /// 1-based, as `plan show` and validation number operations.
    pub number: usize,
    /// `op` (`alter_column`, …).
    pub kind: String,
    /// The plan file.
    pub file: String,
    /// 1-based line of the `[[operations]]` entry.
    pub line: usize,
    /// 1-based column.
    pub col: usize,
}

impl std::fmt::Display for OperationRef {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "operation {} (`{}`) at {}:{}:{}",
            self.number, self.kind, self.file, self.line, self.col
        )
    }
}

impl super::Plan {
    /// The operation that generated the statement starting at byte `offset` of `phase`'s
    /// `apply` (or `rollback`) script; `None` for hand-written SQL.
    pub fn operation_at(
        &self,
        phase: Phase,
        rollback: bool,
        offset: usize,
    ) -> Option<OperationRef> {
        let spec = self.phase(phase);
        let script = if rollback {
            spec.rollback.as_deref().unwrap_or("")
        } else {
            spec.apply.as_str()
        };
        // A statement's range may start at the whitespace before it.
        let rest = script.get(offset..)?;
        let at = offset + (rest.len() - rest.trim_start().len());
        let span = self
            .spec
            .origins
            .spans
            .iter()
            .find(|s| s.phase == phase && s.rollback == rollback && s.range.contains(&at))?;
        let kind = self.spec.operations.get(span.op)?.op.clone();
        let d = super::diagnostic::locate(
            &self.path,
            &self.source,
            Problem::new(vec![Seg::from("operations"), Seg::Index(span.op)], "", None),
        );
        Some(OperationRef {
            number: span.op + 1,
            kind,
            file: d.file,
            line: d.line,
            col: d.col,
        })
    }
}

/// A piece of SQL an operation adds to a phase.
#[derive(Debug, Clone)]
pub(crate) struct Part {
    pub(crate) phase: Phase,
    pub(crate) stage: Stage,
    pub(crate) apply: String,
    pub(crate) rollback: String,
    pub(crate) op: usize,
}

/// Order inside a phase: sync triggers removed, schema changes, sync triggers added,
/// constraints.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub(crate) enum Stage {
    Unsync,
    Schema,
    Sync,
    Constraint,
}

/// Everything the operations of one plan generate.
#[derive(Debug, Default)]
pub(crate) struct Expansion {
    pub(crate) parts: Vec<Part>,
    pub(crate) syncs: sync::Syncs,
    pub(crate) checks: Vec<(CheckSpec, usize)>,
    pub(crate) hidden: Vec<String>,
    pub(crate) backfill: Option<(BackfillSpec, usize)>,
    /// Lint findings an operation asks for by its nature (a rename renames).
    pub(crate) acks: Vec<LintAck>,
    pub(crate) problems: Vec<Problem>,
    /// (table, column) → the operation that changes it.
    touched: BTreeMap<(String, String), usize>,
    /// How each table's old and new shapes differ, for version schemas.
    pub(crate) shapes: versions::Shapes,
}

impl Expansion {
    pub(crate) fn part(
        &mut self,
        op: usize,
        phase: Phase,
        stage: Stage,
        apply: String,
        rollback: String,
    ) {
        self.parts.push(Part {
            phase,
            stage,
            apply,
            rollback,
            op,
        });
    }

    pub(crate) fn problem(&mut self, op: usize, field: &str, message: impl Into<String>) {
        let mut path = vec![Seg::from("operations"), Seg::Index(op)];
        if !field.is_empty() {
            path.push(Seg::from(field));
        }
        self.problems.push(Problem::new(path, message, None));
    }

    /// Records that `op` changes `table.column`; a second operation on it is a conflict.
    pub(crate) fn touch(&mut self, op: usize, field: &str, table: &str, column: &str) {
        let k = (table.to_string(), column.to_string());
        if let Some(first) = self.touched.get(&k) {
            let first = *first;
            self.problem(
                op,
                field,
                format!(
                    "conflicts with operation {} on column `{table}.{column}`",
                    first + 1
                ),
            );
        } else {
            self.touched.insert(k, op);
        }
    }

    /// An expression field: present and a single SQL expression.
    pub(crate) fn expr(&mut self, op: usize, field: &str, text: &str) {
        for issue in sql::check_expression(text).into_iter().take(5) {
            let path = vec![Seg::from("operations"), Seg::Index(op), Seg::from(field)];
            self.problems.push(
                Problem::new(path, format!("`{field}`: {}", issue.message), issue.hint)
                    .inside(issue.offset),
            );
        }
    }

    /// A type name that parses as one.
    pub(crate) fn type_name(&mut self, op: usize, field: &str, text: &str) {
        let prefix = "NULL::";
        let issues = sql::check_expression(&format!("{prefix}{text}"));
        if let Some(issue) = issues.into_iter().next() {
            let path = vec![Seg::from("operations"), Seg::Index(op), Seg::from(field)];
            self.problems.push(
                Problem::new(
                    path,
                    format!("`{field}`: `{text}` is not a type name ({})", issue.message),
                    None,
                )
                .inside(issue.offset.saturating_sub(prefix.len())),
            );
        }
    }
}

/// Reads a required string field, reporting it when missing.
pub(crate) fn need<'a>(
    x: &mut Expansion,
    i: usize,
    op: &OperationSpec,
    field: &str,
    value: &'a Option<String>,
) -> Option<&'a str> {
    match value.as_deref().map(str::trim) {
        Some(v) if !v.is_empty() => Some(v),
        _ => {
            x.problem(i, "", format!("operation `{}` needs `{field}`", op.op));
            None
        }
    }
}

/// Every operation name, for messages.
pub const OPERATIONS: [&str; 17] = [
    "add_column",
    "alter_column",
    "rename_column",
    "drop_column",
    "split_column",
    "create_table",
    "drop_table",
    "rename_table",
    "create_index",
    "drop_index",
    "create_constraint",
    "drop_constraint",
    "drop_multicolumn_constraint",
    "rename_constraint",
    "set_replica_identity",
    "sql",
    "move_column",
];

/// Generates everything the plan's operations describe.
pub(crate) fn generate(spec: &PlanSpec) -> Expansion {
    let mut x = Expansion::default();
    for (i, op) in spec.operations.iter().enumerate() {
        match op.op.as_str() {
            "add_column" => columns::add_column(&mut x, i, op),
            "alter_column" => columns::alter_column(&mut x, i, op),
            "rename_column" => columns::rename_column(&mut x, i, op),
            "drop_column" => columns::drop_column(&mut x, i, op),
            "split_column" => columns::split_column(&mut x, i, op),
            "create_table" => schema::create_table(&mut x, i, op),
            "drop_table" => schema::drop_table(&mut x, i, op),
            "rename_table" => schema::rename_table(&mut x, i, op),
            "create_index" => schema::create_index(&mut x, i, op),
            "drop_index" => schema::drop_index(&mut x, i, op),
            "create_constraint" => schema::create_constraint(&mut x, i, op),
            "drop_constraint" | "drop_multicolumn_constraint" => {
                schema::drop_constraint(&mut x, i, op)
            }
            "rename_constraint" => schema::rename_constraint(&mut x, i, op),
            "set_replica_identity" => schema::set_replica_identity(&mut x, i, op),
            "sql" => schema::raw_sql(&mut x, i, op),
            "move_column" => moves::move_column(&mut x, i, op),
            other => {
                let path = vec![Seg::from("operations"), Seg::Index(i), Seg::from("op")];
                x.problems.push(Problem::new(
                    path,
                    format!("unknown operation `{other}`"),
                    Some(format!("use one of {}", OPERATIONS.join(", "))),
                ));
            }
        }
    }
    let syncs = std::mem::take(&mut x.syncs);
    syncs.generate(&mut x);
    if spec.version_schemas {
        let shapes = std::mem::take(&mut x.shapes);
        shapes.generate(&mut x, spec.id.as_str());
    }
    x
}

/// Which keys the plan writes by hand, read from the document.
#[derive(Debug, Default)]
pub(crate) struct Written {
    phases: BTreeMap<String, Vec<String>>,
    backfill: bool,
    read_switch: bool,
    gates: Vec<String>,
}

impl Written {
    fn phase_key(&self, phase: Phase, key: &str) -> bool {
        self.phases
            .get(phase.as_str())
            .is_some_and(|keys| keys.iter().any(|k| k == key))
    }
}

fn written(source: &str) -> Written {
    let mut w = Written::default();
    let Ok(root) = DeTable::parse(source) else {
        return w;
    };
    let root = root.get_ref();
    w.backfill = root.contains_key("backfill");
    w.read_switch = root.contains_key("read_switch");
    if let Some(DeValue::Table(phases)) = root.get("phases").map(|v| v.get_ref()) {
        for (name, table) in phases.iter() {
            if let DeValue::Table(t) = table.get_ref() {
                w.phases.insert(
                    name.get_ref().to_string(),
                    t.iter().map(|(k, _)| k.get_ref().to_string()).collect(),
                );
            }
        }
    }
    if let Some(DeValue::Table(gates)) = root.get("gates").map(|v| v.get_ref()) {
        w.gates = gates.iter().map(|(k, _)| k.get_ref().to_string()).collect();
    }
    w
}

/// Expands `spec.operations` into `spec`, keeping what the plan writes by hand. Returns the
/// problems of the operations themselves.
pub fn expand(spec: &mut PlanSpec, source: &str) -> Vec<Problem> {
    if spec.operations.is_empty() {
        return match spec.version_schemas {
            true => vec![Problem::new(
                vec![Seg::from("version_schemas")],
                "`version_schemas = true` does nothing in a plan without `[[operations]]`: the version schemas are views of the shapes operations change",
                Some("describe the change with `[[operations]]`, or remove `version_schemas`".into()),
            )],
            false => Vec::new(),
        };
    }
    let w = written(source);
    let x = generate(spec);
    let mut origins = Origins::default();
    for phase in Phase::ALL {
        let mut parts: Vec<&Part> = x.parts.iter().filter(|p| p.phase == phase).collect();
        parts.sort_by_key(|p| (p.stage, p.op));
        let (apply, apply_spans) = join(parts.iter().map(|p| (p.apply.as_str(), p.op)));
        let (rollback, rollback_spans) =
            join(parts.iter().rev().map(|p| (p.rollback.as_str(), p.op)));
        let generated = PhaseSpec {
            apply,
            rollback: (phase != Phase::Contract).then_some(rollback),
            irreversible: phase == Phase::Contract,
            description: describe(phase, &parts, spec),
        };
        if let Some(first) = parts.first() {
            origins.paths.push((
                vec![Seg::from("phases"), Seg::from(phase.as_str())],
                first.op,
            ));
        }
        let own = phases_mut(&mut spec.phases, phase);
        let spans = |rollback: bool, spans: Vec<(std::ops::Range<usize>, usize)>| {
            spans.into_iter().map(move |(range, op)| Span {
                phase,
                rollback,
                range,
                op,
            })
        };
        if !w.phase_key(phase, "apply") {
            own.apply = generated.apply;
            origins.phases.push(phase);
            origins.spans.extend(spans(false, apply_spans));
        }
        if !w.phase_key(phase, "rollback") && !w.phase_key(phase, "irreversible") {
            own.rollback = generated.rollback;
            own.irreversible = generated.irreversible;
            origins.spans.extend(spans(true, rollback_spans));
        }
        if !w.phase_key(phase, "description") {
            own.description = generated.description;
        }
    }
    if !w.backfill {
        if let Some((b, op)) = x.backfill.clone() {
            spec.backfill = Some(b);
            origins.paths.push((vec![Seg::from("backfill")], op));
        }
    }
    if !w.read_switch && spec.read_switch.is_none() {
        spec.read_switch = Some(ReadSwitchSpec {
            flag: format!("{}.read_new", spec.id),
        });
    }
    let mut added = Vec::new();
    for (check, op) in &x.checks {
        if spec.checks.iter().any(|c| c.name == check.name) {
            continue;
        }
        origins.paths.push((
            vec![Seg::from("checks"), Seg::Index(spec.checks.len())],
            *op,
        ));
        added.push(check.name.clone());
        spec.checks.push(check.clone());
    }
    if !w.gates.iter().any(|g| g == "read_switch") {
        let gate = spec.gates.entry(Phase::ReadSwitch).or_default();
        gate.checks.extend(added);
        if spec.backfill.is_some() && !gate.probes.contains(&ProbeKind::BackfillComplete) {
            gate.probes.push(ProbeKind::BackfillComplete);
        }
    }
    for ack in &x.acks {
        let lint = &mut spec.probes.lint.acknowledge;
        if !lint
            .iter()
            .any(|a| a.rule == ack.rule && a.phase == ack.phase)
        {
            lint.push(ack.clone());
        }
    }
    for c in &x.hidden {
        if !spec.probes.hidden_readers.columns.contains(c) {
            spec.probes.hidden_readers.columns.push(c.clone());
        }
    }
    spec.origins = origins;
    x.problems
}

fn phases_mut(p: &mut super::Phases, phase: Phase) -> &mut PhaseSpec {
    match phase {
        Phase::Expand => &mut p.expand,
        Phase::DualWrite => &mut p.dual_write,
        Phase::Backfill => &mut p.backfill,
        Phase::ReadSwitch => &mut p.read_switch,
        Phase::Contract => &mut p.contract,
    }
}

/// The pieces as one script, each ended by `;` and a newline, with the byte range and
/// operation of each.
fn join<'a>(
    pieces: impl Iterator<Item = (&'a str, usize)>,
) -> (String, Vec<(std::ops::Range<usize>, usize)>) {
    let mut script = String::new();
    let mut spans = Vec::new();
    for (piece, op) in pieces {
        let piece = piece.trim();
        if piece.is_empty() {
            continue;
        }
        let start = script.len();
        script.push_str(piece);
        if !piece.ends_with(';') {
            script.push(';');
        }
        script.push('\n');
        spans.push((start..script.len(), op));
    }
    (script, spans)
}

fn describe(phase: Phase, parts: &[&Part], spec: &PlanSpec) -> String {
    let mut ops: Vec<usize> = parts.iter().map(|p| p.op).collect();
    ops.dedup();
    if ops.is_empty() {
        return match phase {
            Phase::Backfill => "Generated: the shared backfill pass runs.".into(),
            Phase::ReadSwitch => "Generated: reads move to the new shape (flag).".into(),
            _ => String::new(),
        };
    }
    let names: Vec<String> = ops
        .iter()
        .filter_map(|i| {
            spec.operations
                .get(*i)
                .map(|o| format!("{} #{}", o.op, i + 1))
        })
        .collect();
    format!("Generated from {}.", names.join(", "))
}

/// Points problems found in generated parts at the operation that generated them; problems of
/// operations already reported (`reported`) are left out as consequences.
pub fn attribute(spec: &PlanSpec, problems: Vec<Problem>, reported: &[Problem]) -> Vec<Problem> {
    let already = |op: usize| {
        reported
            .iter()
            .any(|r| r.path.get(1) == Some(&Seg::Index(op)))
    };
    problems
        .into_iter()
        .filter_map(|mut p| {
            let hit = spec
                .origins
                .paths
                .iter()
                .filter(|(prefix, _)| p.path.starts_with(prefix))
                .max_by_key(|(prefix, _)| prefix.len());
            if let Some((_, op)) = hit {
                if already(*op) {
                    return None;
                }
                let kind = spec.operations.get(*op).map_or("", |o| o.op.as_str());
                p.message = format!(
                    "operation {} (`{kind}`), generated SQL: {}",
                    op + 1,
                    p.message
                );
                p.path = vec![Seg::from("operations"), Seg::Index(*op)];
                // An unknown type is the operation's `type`.
                if p.message.contains("type \"") && p.message.contains("does not exist") {
                    p.path.push(Seg::from("type"));
                }
                p.at = None;
            }
            Some(p)
        })
        .collect()
}

/// Adds empty `[phases]` tables a plan with operations leaves out, so it deserializes.
pub(crate) fn fill_phases(doc: &mut DeTable<'_>, at: std::ops::Range<usize>) {
    use std::borrow::Cow;
    use toml::Spanned;
    if !doc.contains_key("operations") {
        return;
    }
    if !doc.contains_key("phases") {
        doc.insert(
            Spanned::new(at.clone(), Cow::Borrowed("phases")),
            Spanned::new(at.clone(), DeValue::Table(DeTable::new())),
        );
    }
    let Some(phases) = doc.get_mut("phases") else {
        return;
    };
    let DeValue::Table(t) = phases.get_mut() else {
        return;
    };
    for phase in Phase::ALL {
        if !t.contains_key(phase.as_str()) {
            t.insert(
                Spanned::new(at.clone(), Cow::Borrowed(phase.as_str())),
                Spanned::new(at.clone(), DeValue::Table(DeTable::new())),
            );
        }
    }
}

#[cfg(test)]
mod tests;
