//! The leaf partitions of a declaratively partitioned table (sub-partitioned too), read from the
//! catalog: the backfill plans its ranges per leaf, and checks report their results per leaf.

use tokio_postgres::{Error, GenericClient};

/// One leaf partition.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Leaf {
    /// Qualified name, quoted where needed (`public.orders_2024`).
    pub name: String,
    /// Its `pg_class` oid (the `tableoid` of its rows).
    pub oid: u32,
    /// The partition constraint (its ancestors' included) as a boolean SQL expression over the
    /// table's columns, unqualified (`pg_get_partition_constraintdef`).
    pub constraint: String,
}

/// The leaf partitions of `table` by name, `None` when it is not a partitioned table.
pub async fn leaves(c: &impl GenericClient, table: &str) -> Result<Option<Vec<Leaf>>, Error> {
    let partitioned: bool = c
        .query_one(
            "SELECT COALESCE((SELECT relkind = 'p' FROM pg_class WHERE oid = to_regclass($1)), \
             false) AS partitioned",
            &[&table],
        )
        .await?
        .get("partitioned");
    if !partitioned {
        return Ok(None);
    }
    let rows = c
        .query(
            "SELECT format('%I.%I', n.nspname, c.relname) AS leaf, c.oid, \
             coalesce(pg_get_partition_constraintdef(c.oid), 'true') AS constraint_sql \
             FROM pg_partition_tree(to_regclass($1)) t JOIN pg_class c ON c.oid = t.relid \
             JOIN pg_namespace n ON n.oid = c.relnamespace \
             WHERE t.isleaf AND c.relkind <> 'p' ORDER BY 1",
            &[&table],
        )
        .await?;
    Ok(Some(
        rows.iter()
            .map(|r| Leaf {
                name: r.get("leaf"),
                oid: r.get("oid"),
                constraint: r.get("constraint_sql"),
            })
            .collect(),
    ))
}
