//! The backfill's two modes: `update` rewrites the rows of the table in place, `copy` inserts
//! them into another table through a column mapping, and never writes the source rows.
//!
//! A copy chunk is `INSERT INTO into (…) SELECT … FROM table WHERE <key range> AND <not yet
//! copied> ORDER BY key FOR KEY SHARE ON CONFLICT (target_key) DO NOTHING`. It needs a
//! dual-write (a trigger) that keeps the rows already in `into` current; then it is exact under
//! concurrent writes:
//! - a row the dual-write inserted first is left alone (`DO NOTHING`), and one it inserts while
//!   the chunk runs makes the chunk's insert wait for it, then do nothing;
//! - `FOR KEY SHARE` (a tuple lock, no new row version, not in the way of the application's
//!   non-key updates) makes a concurrent DELETE wait for the chunk, or the chunk skip the row
//!   the DELETE removed, so no deleted row is resurrected in `into`;
//! - a concurrent non-key UPDATE either commits first (the chunk reads the new version, or the
//!   trigger's row makes it do nothing) or runs its trigger after the chunk's insert, and the
//!   trigger's upsert overwrites it.

use serde::{Deserialize, Serialize};

use super::BackfillSpec;
use crate::sql::{quote_ident, quote_qualified};

/// How the backfill brings existing rows to the new shape.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum BackfillMode {
    /// UPDATE the pending rows of `table` with the `set` assignments.
    #[default]
    Update,
    /// INSERT the rows of `table` not yet in `into`, through the `columns` mapping.
    Copy,
}

impl BackfillMode {
    /// The mode's name in the plan.
    pub fn as_str(self) -> &'static str {
        match self {
            BackfillMode::Update => "update",
            BackfillMode::Copy => "copy",
        }
    }
}

impl BackfillSpec {
    /// True in copy mode.
    pub fn is_copy(&self) -> bool {
        self.mode == BackfillMode::Copy
    }

    /// The target's conflict key: `target_key`, or `key` when it is empty.
    pub fn target_key(&self) -> &[String] {
        if self.target_key.is_empty() {
            &self.key
        } else {
            &self.target_key
        }
    }

    /// Update mode: the `set` assignments as SQL (`"c" = (expr), …`).
    pub fn assignments(&self) -> String {
        self.set
            .iter()
            .map(|(col, expr)| format!("{} = ({expr})", quote_ident(col)))
            .collect::<Vec<_>>()
            .join(", ")
    }

    /// Copy mode: `INSERT INTO into ("c", …) SELECT (expr), …` — the mapping's insert, up to its
    /// `FROM`.
    pub fn copy_insert_head(&self) -> String {
        let targets = self
            .columns
            .keys()
            .map(|c| quote_ident(c))
            .collect::<Vec<_>>()
            .join(", ");
        let exprs = self
            .columns
            .values()
            .map(|e| format!("({e})"))
            .collect::<Vec<_>>()
            .join(", ");
        format!(
            "INSERT INTO {} ({targets}) SELECT {exprs}",
            quote_qualified(self.into.as_deref().unwrap_or_default())
        )
    }

    /// Copy mode: the target key's columns, quoted (`ON CONFLICT (…)`).
    pub fn target_key_list(&self) -> String {
        self.target_key()
            .iter()
            .map(|c| quote_ident(c))
            .collect::<Vec<_>>()
            .join(", ")
    }

    /// The source column a target key column is mapped from, when its expression is a bare
    /// column name (`id` or `"Id"`).
    pub fn mapped_source_column(&self, target: &str) -> Option<String> {
        bare_column(self.columns.get(target)?)
    }

    /// The SQL predicate, over the rows of `table`, true for rows that still need work: the
    /// plan's `pending` in update mode; in copy mode, no row with the same key in `into`.
    pub fn pending_predicate(&self) -> String {
        if !self.is_copy() {
            return self.pending.trim().trim_end_matches(';').to_string();
        }
        // By its bare name: a chunk on a leaf partition reads the leaf under that name.
        let source = quote_ident(
            self.table
                .rsplit('.')
                .next()
                .unwrap_or(&self.table)
                .trim_matches('"'),
        );
        let into = quote_qualified(self.into.as_deref().unwrap_or_default());
        let on = self
            .target_key()
            .iter()
            .map(|t| {
                let src = self
                    .mapped_source_column(t)
                    .unwrap_or_else(|| t.to_string());
                format!(
                    "cutover_t.{} = {source}.{}",
                    quote_ident(t),
                    quote_ident(&src)
                )
            })
            .collect::<Vec<_>>()
            .join(" AND ");
        format!("NOT EXISTS (SELECT 1 FROM {into} cutover_t WHERE {on})")
    }
}

/// The column a bare name refers to: lower-cased when unquoted, verbatim when double-quoted.
fn bare_column(expr: &str) -> Option<String> {
    let e = expr.trim();
    if let Some(inner) = e.strip_prefix('"').and_then(|r| r.strip_suffix('"')) {
        return (!inner.is_empty() && !inner.contains('"')).then(|| inner.to_string());
    }
    let mut chars = e.chars();
    let first = chars.next()?;
    let ok = (first.is_ascii_alphabetic() || first == '_')
        && chars.all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '$');
    ok.then(|| e.to_ascii_lowercase())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bare_columns_are_recognized() {
        assert_eq!(bare_column(" id ").as_deref(), Some("id"));
        assert_eq!(bare_column("Id").as_deref(), Some("id"));
        assert_eq!(bare_column("\"Id\"").as_deref(), Some("Id"));
        assert_eq!(bare_column("id + 1"), None);
        assert_eq!(bare_column("round(total)"), None);
        assert_eq!(bare_column(""), None);
    }
}
