//! Live-catalog check of a backfill on a partitioned table: every column the table (or one of
//! its sub-partitioned partitions) is partitioned by must be part of the backfill key.
//!
//! The backfill plans its ranges per leaf partition and pages each leaf by the key, so the key
//! must be unique in every leaf; PostgreSQL only guarantees that for a unique index of the
//! partitioned table, which has to include the partition keys. Partitioning by an expression
//! is not checked here (its columns are not listed in the catalog).

use tokio_postgres::Transaction;

use crate::db::DbError;
use crate::plan::diagnostic::{Problem, Seg};
use crate::sql::quote_qualified;

/// The problem at `backfill.key` when partition key columns of `table` are missing from `key`.
pub(super) async fn check(
    tx: &Transaction<'_>,
    table: &str,
    key: &[String],
) -> Result<Option<Problem>, DbError> {
    let rows = tx
        .query(
            "SELECT DISTINCT a.attname::text AS col, format('%I.%I', n.nspname, c.relname) AS rel \
             FROM pg_partition_tree(to_regclass($1)) t \
             JOIN pg_partitioned_table p ON p.partrelid = t.relid \
             JOIN pg_class c ON c.oid = t.relid JOIN pg_namespace n ON n.oid = c.relnamespace \
             CROSS JOIN LATERAL unnest(p.partattrs::int2[]) AS k(attnum) \
             JOIN pg_attribute a ON a.attrelid = t.relid AND a.attnum = k.attnum \
             WHERE k.attnum <> 0 AND NOT (a.attname::text = ANY ($2)) ORDER BY 2, 1",
            &[&quote_qualified(table), &key],
        )
        .await?;
    if rows.is_empty() {
        return Ok(None);
    }
    let missing: Vec<String> = rows
        .iter()
        .map(|r| {
            format!(
                "`{}` (of {})",
                r.get::<_, String>("col"),
                r.get::<_, String>("rel")
            )
        })
        .collect();
    Ok(Some(Problem::new(
        vec![Seg::from("backfill"), Seg::from("key")],
        format!(
            "`{table}` is partitioned by {} which the backfill key ({}) does not include",
            missing.join(", "),
            key.join(", ")
        ),
        Some(
            "the backfill pages each leaf partition by its key, which must be unique there: \
             add the partition key columns to `key` (the table's primary key includes them)"
                .into(),
        ),
    )))
}
