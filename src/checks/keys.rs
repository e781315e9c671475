//! Keys and column lists as SQL: typed literals for key bounds, canonical key text, row hashes.

use tokio_postgres::types::Type;
use tokio_postgres::Client;

use super::CheckError;
use crate::sql::{quote_literal, quote_qualified};

/// One side's key: SQL expressions (column names or expressions) and their types.
#[derive(Debug, Clone)]
pub(crate) struct Key {
    pub exprs: Vec<String>,
    pub types: Vec<String>,
}

/// A key value, one text per key column (keys are never NULL).
pub(crate) type Bound = Vec<String>;

impl Key {
    /// Resolves the key columns' types on `table` (which also proves table and columns exist).
    pub(super) async fn resolve(
        client: &Client,
        table: &str,
        cols: &[String],
    ) -> Result<Key, CheckError> {
        let exprs: Vec<String> = cols.iter().map(|c| column_sql(c)).collect();
        let types = types_of(client, table, &exprs).await?;
        Ok(Key { exprs, types })
    }

    /// `k` or `(k1, k2)`.
    pub(super) fn tuple(&self) -> String {
        if self.exprs.len() == 1 {
            self.exprs[0].clone()
        } else {
            format!("({})", self.exprs.join(", "))
        }
    }

    /// `k1, k2` for ORDER BY.
    pub(super) fn order_by(&self) -> String {
        self.exprs.join(", ")
    }

    /// Canonical text of the key: `k::text` or `ROW(k1, k2)::text` (the same on both sides when
    /// the values are equal, whatever the types).
    pub(super) fn text(&self) -> String {
        if self.exprs.len() == 1 {
            format!("({})::text", self.exprs[0])
        } else {
            format!("ROW({})::text", self.exprs.join(", "))
        }
    }

    /// `k1::text, k2::text` to read a bound back.
    pub(super) fn select_texts(&self) -> String {
        self.exprs
            .iter()
            .map(|e| format!("({e})::text"))
            .collect::<Vec<_>>()
            .join(", ")
    }

    /// A typed literal for a bound: `'v'::t` or `('v1'::t1, 'v2'::t2)`.
    pub(super) fn literal(&self, bound: &Bound) -> String {
        let parts: Vec<String> = bound
            .iter()
            .zip(&self.types)
            .map(|(v, t)| format!("{}::{t}", quote_literal(v)))
            .collect();
        if parts.len() == 1 {
            parts[0].clone()
        } else {
            format!("({})", parts.join(", "))
        }
    }

    /// A bound as statement parameters starting at `$first`: `$1::text::t` or
    /// `($1::text::t1, $2::text::t2)`.
    pub(super) fn param_tuple(&self, first: usize) -> String {
        let parts: Vec<String> = self
            .types
            .iter()
            .enumerate()
            .map(|(i, t)| format!("${}::text::{t}", first + i))
            .collect();
        if parts.len() == 1 {
            parts[0].clone()
        } else {
            format!("({})", parts.join(", "))
        }
    }

    /// True for a single integer column (chunked by arithmetic ranges).
    pub(super) fn is_integer(&self) -> bool {
        self.types.len() == 1 && matches!(self.types[0].as_str(), "int2" | "int4" | "int8")
    }
}

/// A plain column name is quoted; anything else is taken as an SQL expression.
pub(crate) fn column_sql(col: &str) -> String {
    let plain = !col.is_empty()
        && col
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '$')
        && !col.starts_with(|c: char| c.is_ascii_digit());
    if plain {
        crate::sql::quote_ident(col)
    } else {
        col.to_string()
    }
}

/// `name` is a (qualified) table name, not a subquery or other SQL.
pub(crate) fn is_plain_name(name: &str) -> bool {
    name.split('.').all(|part| {
        !part.is_empty()
            && part
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '$')
    })
}

/// A relation name as SQL: quoted when it is `schema.table` or `table` made of plain words,
/// otherwise verbatim (so already-quoted names work).
pub(crate) fn relation_sql(name: &str) -> String {
    if is_plain_name(name) {
        quote_qualified(name)
    } else {
        name.to_string()
    }
}

/// The SQL type names of `exprs` evaluated on `table`, via a prepared `LIMIT 0` query.
pub(crate) async fn types_of(
    client: &Client,
    table: &str,
    exprs: &[String],
) -> Result<Vec<String>, CheckError> {
    let sql = format!("SELECT {} FROM {table} LIMIT 0", exprs.join(", "));
    let stmt = client
        .prepare(&sql)
        .await
        .map_err(|e| CheckError::Db(format!("on {table}: {}", crate::db::describe_error(&e))))?;
    Ok(stmt.columns().iter().map(|c| type_sql(c.type_())).collect())
}

/// A type as it can be written in a cast.
pub(crate) fn type_sql(ty: &Type) -> String {
    if ty.schema() == "pg_catalog" {
        ty.name().to_string()
    } else {
        format!(
            "{}.{}",
            crate::sql::quote_ident(ty.schema()),
            crate::sql::quote_ident(ty.name())
        )
    }
}

/// True for types whose mean and quantiles make sense.
pub(crate) fn is_numeric_type(ty: &str) -> bool {
    matches!(
        ty,
        "int2" | "int4" | "int8" | "float4" | "float8" | "numeric"
    )
}

/// True for date/time types (their statistics are compared as epoch seconds).
pub(crate) fn is_temporal_type(ty: &str) -> bool {
    matches!(ty, "date" | "timestamp" | "timestamptz")
}
