//! Folding the statements an ORM writes one after another on one column into the operations
//! Cutover runs once per column.
//!
//! Migration files often add a column and then alter it (`ADD COLUMN c int;` then
//! `ALTER COLUMN c TYPE bigint`, `… SET NOT NULL`, `… SET DEFAULT 0`), or alter one column in
//! several statements. A plan allows one operation per column, so:
//! - a type change, `NOT NULL`/`NULL` or a comment of a column added earlier in the file becomes
//!   part of its `add_column` (the result is the same column);
//! - a `SET DEFAULT` of a column added earlier stays a statement of its own, run right after the
//!   add in expand: folded into `add_column` it would also fill the existing rows, which the
//!   original leaves NULL; the add's rollback drops the column, default and all;
//! - in-place changes (default, nullability, comment) of an existing column, written in
//!   several statements, become one `alter_column` when they change different things.
//!
//! What cannot be folded (a second type change, the same change twice, a rename in between)
//! is left as it is, and the plan's validation names both operations.

use std::collections::BTreeMap;

use super::reader::raw;
use super::Item;
use crate::plan::operations::idents::{ident, Table};
use crate::plan::operations::OperationSpec;
use crate::plan::Phase;

/// The column an `add_column` or `alter_column` works on: (table as SQL, column).
fn column_of(op: &OperationSpec) -> Option<(String, String)> {
    let table = Table::parse(op.table.as_deref()?).sql();
    Some((table, op.column.clone()?))
}

/// An `alter_column` that changes the column in place: no type, no rename, no `up`/`down`.
fn in_place(op: &OperationSpec) -> bool {
    op.op == "alter_column"
        && op.kind.is_none()
        && op.name.is_none()
        && op.up.is_none()
        && op.down.is_none()
}

/// Whether `op` ends what earlier operations on its column can absorb (a rename, a drop).
fn ends_column(op: &OperationSpec, table: &str, column: &str) -> bool {
    let same_table = op
        .table
        .as_deref()
        .is_some_and(|t| Table::parse(t).sql() == table);
    let named = |c: &Option<String>| c.as_deref() == Some(column);
    match op.op.as_str() {
        "rename_column" => same_table && named(&op.from),
        "drop_column" => same_table && named(&op.column),
        "rename_table" | "drop_table" => same_table,
        _ => false,
    }
}

/// Folds `items` as the module docs say; the order of what remains is kept.
pub(super) fn fold(items: Vec<Item>) -> Vec<Item> {
    let mut out: Vec<Item> = Vec::with_capacity(items.len());
    // (table, column) → index in `out` of the operation later statements fold into.
    let mut hosts: BTreeMap<(String, String), usize> = BTreeMap::new();
    for item in items {
        hosts.retain(|(t, c), _| !ends_column(&item.op, t, c));
        let key = match item.op.op.as_str() {
            "add_column" | "alter_column" => column_of(&item.op),
            _ => None,
        };
        let Some(key) = key else {
            out.push(item);
            continue;
        };
        let host = hosts.get(&key).copied();
        match host.map(|h| out[h].op.op.as_str()) {
            Some("add_column") if item.op.op == "alter_column" => {
                if let Some(h) = host {
                    if let Some(extra) = into_added(&mut out[h], item, &key) {
                        out.push(extra);
                    }
                }
            }
            Some("alter_column") if in_place(&item.op) => {
                if let Some(h) = host.filter(|h| disjoint(&out[*h].op, &item.op)) {
                    merge_in_place(&mut out[h], item);
                } else {
                    out.push(item);
                }
            }
            _ => {
                let hosting = item.op.op == "add_column" || in_place(&item.op);
                out.push(item);
                if hosting && host.is_none() {
                    hosts.insert(key, out.len() - 1);
                }
            }
        }
    }
    out
}

/// Folds an `alter_column` of a column `added` earlier; returns what stays a statement of its
/// own (a default), or the alteration itself when it cannot be folded.
fn into_added(added: &mut Item, alter: Item, (table, column): &(String, String)) -> Option<Item> {
    let a = &alter.op;
    let foldable = a.name.is_none()
        && a.up.is_none()
        && a.down.is_none()
        && a.unique.is_none()
        && a.check.is_none()
        && a.references.is_none()
        && added.op.up.is_none();
    if !foldable {
        return Some(alter);
    }
    if let Some(default) = &a.default {
        if a.kind.is_some() || a.nullable.is_some() || a.comment.is_some() {
            return Some(alter);
        }
        let sql = format!(
            "ALTER TABLE {table} ALTER COLUMN {} SET DEFAULT {default}",
            ident(column)
        );
        return Some(Item {
            op: raw(sql, Some(String::new()), Phase::Expand),
            at: alter.at,
            source: alter.source,
            risk: None,
            note: Some(format!(
                "the default of the column added at {} (new rows only, as written); its rollback is the add's",
                added.at
            )),
        });
    }
    if let Some(kind) = &a.kind {
        added.op.kind = Some(kind.clone());
    }
    if let Some(nullable) = a.nullable {
        added.op.nullable = Some(nullable);
    }
    if let Some(comment) = &a.comment {
        added.op.comment = Some(comment.clone());
    }
    also(added, &alter);
    None
}

/// True when two in-place alterations change different things.
fn disjoint(a: &OperationSpec, b: &OperationSpec) -> bool {
    let fields = |o: &OperationSpec| {
        [
            o.nullable.is_some(),
            o.default.is_some(),
            o.comment.is_some(),
            o.unique.is_some(),
            o.check.is_some(),
            o.references.is_some(),
        ]
    };
    fields(a).iter().zip(fields(b)).all(|(x, y)| !(*x && y))
}

fn merge_in_place(into: &mut Item, from: Item) {
    let (o, f) = (&mut into.op, &from.op);
    o.nullable = o.nullable.or(f.nullable);
    o.default = o.default.take().or_else(|| f.default.clone());
    o.comment = o.comment.take().or_else(|| f.comment.clone());
    o.unique = o.unique.take().or_else(|| f.unique.clone());
    o.check = o.check.take().or_else(|| f.check.clone());
    o.references = o.references.take().or_else(|| f.references.clone());
    also(into, &from);
}

/// Records on `into` that `from`'s statement was folded into it.
fn also(into: &mut Item, from: &Item) {
    let line = format!("also {}: {}", from.at, super::one_line(&from.source));
    into.note = Some(match into.note.take() {
        Some(n) => format!("{n}; {line}"),
        None => line,
    });
}
