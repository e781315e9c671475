//! The plan's key: column names and types from the catalog, key values, and the SQL of a chunk.
//!
//! Key values travel as text (one string per key column) and are cast back to the column's
//! type in SQL, so bigint, text, uuid, timestamp and composite keys all work the same way;
//! comparisons use row constructors, which the key's btree index serves in key order.

use tokio_postgres::GenericClient;

use super::BackfillError;
use crate::plan::BackfillSpec;
use crate::sql::{quote_ident, quote_literal, quote_qualified};

pub(super) use crate::control::backfill::key::Key;

/// Leads every statement the backfill sends against the table, so the latency guard can tell
/// them from the application's in `pg_stat_statements`.
pub(super) const TAG: &str = crate::sql::OWN_TAG;

/// The key columns of the backfilled table and the SQL built from them.
#[derive(Debug, Clone)]
pub(super) struct KeySpec {
    /// The quoted table name (a leaf partition's, for a range of one).
    pub table: String,
    /// On a leaf partition, the plan's table's own name (quoted, unqualified): the chunk reads
    /// the leaf under it, so `set`, `columns` and `pending` that name the table still resolve.
    pub alias: Option<String>,
    /// Key column names (unquoted).
    pub columns: Vec<String>,
    /// Their SQL types (`format_type`).
    pub types: Vec<String>,
    /// The chunk's write, from its first word up to the key range condition.
    write: Write,
    pending: String,
}

/// What a chunk writes.
#[derive(Debug, Clone)]
enum Write {
    /// `UPDATE table SET <assignments>`.
    Update(String),
    /// `INSERT INTO into (<columns>) SELECT <expressions>`, then `ON CONFLICT (<target key>)`.
    Copy { head: String, conflict: String },
}

impl KeySpec {
    /// Reads the key columns' types from the catalog; fails naming the table or column.
    pub(super) async fn load(
        client: &impl GenericClient,
        spec: &BackfillSpec,
    ) -> Result<KeySpec, BackfillError> {
        let rel = client
            .query_one("SELECT to_regclass($1)::oid AS oid", &[&spec.table])
            .await
            .map_err(|e| {
                BackfillError::Invalid(format!(
                    "backfill table `{}`: {}",
                    spec.table,
                    crate::db::describe_error(&e)
                ))
            })?;
        let oid: Option<u32> = rel.get("oid");
        let Some(oid) = oid else {
            return Err(BackfillError::Invalid(format!(
                "backfill table `{}` does not exist",
                spec.table
            )));
        };
        let mut types = Vec::new();
        for col in &spec.key {
            let row = client
                .query_opt(
                    "SELECT format_type(atttypid, atttypmod) AS type FROM pg_attribute \
                     WHERE attrelid = $1 AND attname = $2 AND attnum > 0 AND NOT attisdropped",
                    &[&oid, col],
                )
                .await?;
            match row {
                Some(r) => types.push(r.get::<_, String>("type")),
                None => {
                    return Err(BackfillError::Invalid(format!(
                        "backfill key column `{col}` does not exist in `{}`",
                        spec.table
                    )))
                }
            }
        }
        if spec.key.is_empty() {
            return Err(BackfillError::Invalid(format!(
                "backfill of `{}` has an empty key",
                spec.table
            )));
        }
        Ok(KeySpec {
            table: quote_qualified(&spec.table),
            alias: None,
            columns: spec.key.clone(),
            types,
            write: Write::of(spec),
            pending: spec.pending_predicate(),
        })
    }

    /// The relation a chunk reads: the table, or a leaf partition under the table's name.
    pub(super) fn from(&self) -> String {
        match &self.alias {
            Some(alias) => format!("{} AS {alias}", self.table),
            None => self.table.clone(),
        }
    }

    /// `"a", "b"`.
    pub(super) fn cols(&self) -> String {
        self.columns
            .iter()
            .map(|c| quote_ident(c))
            .collect::<Vec<_>>()
            .join(", ")
    }

    /// `"a"::text AS cutover_k0, …` — selects a key as text (aliased, so that `ORDER BY "a"`
    /// still sorts by the column and not by its text).
    pub(super) fn text_cols(&self) -> String {
        self.columns
            .iter()
            .enumerate()
            .map(|(i, c)| format!("{}::text AS cutover_k{i}", quote_ident(c)))
            .collect::<Vec<_>>()
            .join(", ")
    }

    /// `('1'::bigint, 'x'::text)` — a key as an SQL row literal.
    pub(super) fn literal(&self, key: &Key) -> String {
        let parts = key
            .iter()
            .zip(&self.types)
            .map(|(v, t)| format!("{}::{t}", quote_literal(v)))
            .collect::<Vec<_>>()
            .join(", ");
        format!("({parts})")
    }

    /// `WHERE`-ready condition `key > lo AND key <= hi` (either side optional; `TRUE` if none).
    pub(super) fn between(&self, lo: Option<&Key>, hi: Option<&Key>) -> String {
        let mut conds = Vec::new();
        if let Some(lo) = lo {
            conds.push(format!("({}) > {}", self.cols(), self.literal(lo)));
        }
        if let Some(hi) = hi {
            conds.push(format!("({}) <= {}", self.cols(), self.literal(hi)));
        }
        if conds.is_empty() {
            "TRUE".to_string()
        } else {
            conds.join(" AND ")
        }
    }

    /// The key `offset` rows after `lo` (exclusive) and at most `hi`, in key order.
    pub(super) fn bound_sql(&self, lo: Option<&Key>, hi: Option<&Key>, offset: i64) -> String {
        format!(
            "{TAG}SELECT {} FROM {} WHERE {} ORDER BY {} OFFSET {offset} LIMIT 1",
            self.text_cols(),
            self.from(),
            self.between(lo, hi),
            self.cols()
        )
    }

    /// Counts the keys in `(lo, hi]`.
    pub(super) fn count_sql(&self, lo: Option<&Key>, hi: Option<&Key>) -> String {
        format!(
            "{TAG}SELECT count(*) AS keys FROM {} WHERE {}",
            self.from(),
            self.between(lo, hi)
        )
    }

    /// The chunk's write on the pending rows of `(lo, hi]`: the UPDATE of the SET assignments,
    /// or in copy mode the INSERT … SELECT that key-share locks the source rows in key order.
    pub(super) fn write_sql(&self, lo: Option<&Key>, hi: Option<&Key>) -> String {
        match &self.write {
            Write::Update(set) => format!(
                "{TAG}UPDATE {} SET {set} WHERE {} AND ({})",
                self.from(),
                self.between(lo, hi),
                self.pending
            ),
            Write::Copy { head, conflict } => format!(
                "{TAG}{head} FROM {} WHERE {} AND ({}) ORDER BY {} FOR KEY SHARE \
                 ON CONFLICT ({conflict}) DO NOTHING",
                self.from(),
                self.between(lo, hi),
                self.pending,
                self.cols()
            ),
        }
    }

    /// The largest key, as text.
    pub(super) fn max_key_sql(&self) -> String {
        let desc = self
            .columns
            .iter()
            .map(|c| format!("{} DESC", quote_ident(c)))
            .collect::<Vec<_>>()
            .join(", ");
        format!(
            "{TAG}SELECT {} FROM {} ORDER BY {desc} LIMIT 1",
            self.text_cols(),
            self.from()
        )
    }

    /// Counts the pending rows (optionally only keys up to `hi`).
    pub(super) fn pending_count_sql(&self, hi: Option<&Key>) -> String {
        format!(
            "{TAG}SELECT count(*) AS pending FROM {} WHERE {} AND ({})",
            self.from(),
            self.between(None, hi),
            self.pending
        )
    }

    /// Counts the pending rows per partition of a partitioned table (`partition`, `pending`).
    pub(super) fn pending_by_partition_sql(&self) -> String {
        format!(
            "{TAG}SELECT format('%I.%I', n.nspname, c.relname) AS partition, p.pending \
             FROM (SELECT tableoid, count(*) AS pending FROM {} WHERE ({}) GROUP BY tableoid) p \
             JOIN pg_class c ON c.oid = p.tableoid JOIN pg_namespace n ON n.oid = c.relnamespace \
             ORDER BY 1",
            self.from(),
            self.pending
        )
    }

    /// Evenly spaced boundary keys from a block sample of about `percent` % of the table.
    pub(super) fn boundaries_sql(&self, parts: u32, percent: f64) -> String {
        let sample = if percent >= 100.0 {
            String::new()
        } else {
            format!(" TABLESAMPLE SYSTEM ({percent:.6})")
        };
        format!(
            "{TAG}SELECT {text} FROM (SELECT {cols}, row_number() OVER (ORDER BY {cols}) AS cutover_rn, \
             count(*) OVER () AS cutover_n FROM {from}{sample}) s \
             WHERE cutover_rn % greatest(1, cutover_n / {parts}) = 0 AND cutover_rn < cutover_n \
             ORDER BY cutover_rn LIMIT {limit}",
            text = self.text_cols(),
            cols = self.cols(),
            from = self.from(),
            limit = parts.saturating_sub(1)
        )
    }
}

impl Write {
    fn of(spec: &BackfillSpec) -> Write {
        if spec.is_copy() {
            Write::Copy {
                head: spec.copy_insert_head(),
                conflict: spec.target_key_list(),
            }
        } else {
            Write::Update(spec.assignments())
        }
    }
}

/// Reads a key from a row of text columns; `None` when any column is NULL.
pub(super) fn key_from_row(row: &tokio_postgres::Row) -> Option<Key> {
    (0..row.len())
        .map(|i| row.get::<_, Option<String>>(i))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn spec() -> KeySpec {
        KeySpec {
            table: "\"public\".\"t\"".into(),
            alias: None,
            columns: vec!["a".into(), "b".into()],
            types: vec!["bigint".into(), "text".into()],
            write: Write::Update("\"n\" = (n + 1)".into()),
            pending: "todo".into(),
        }
    }

    #[test]
    fn builds_row_comparisons() {
        let k = spec();
        let lo = vec!["1".to_string(), "o'k".to_string()];
        assert_eq!(
            k.between(Some(&lo), None),
            "(\"a\", \"b\") > ('1'::bigint, 'o''k'::text)"
        );
        assert_eq!(k.between(None, None), "TRUE");
        assert!(k
            .write_sql(None, Some(&lo))
            .ends_with("<= ('1'::bigint, 'o''k'::text) AND (todo)"));
    }
}
