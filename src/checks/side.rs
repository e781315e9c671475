//! The two sides of a row comparison, as SQL: what is compared ([`DiffSpec`]), each side's key,
//! row hash and per-column hashes (cast to the source's types), and the prepared statements that
//! aggregate ranges and fetch rows. Shared by the exact diff and the sampled checksum.

use std::collections::HashMap;
use std::future::Future;

use serde::Serialize;
use tokio_postgres::types::ToSql;
use tokio_postgres::{Client, Statement};

use super::chunk::{Range, Shape};
use super::keys::{column_sql, relation_sql, types_of, Bound, Key};
use super::CheckError;
use crate::plan::CheckKind;
use crate::read_only::ReadOnly;
use crate::sql::OWN_TAG;

/// Hash seed of row hashes.
const SEED: i64 = 0x6375_746f;

/// What to compare: the fields of a `full_diff` check.
#[derive(Debug, Clone)]
pub struct DiffSpec {
    /// Source relation.
    pub source: String,
    /// Target relation.
    pub target: String,
    /// Source key columns.
    pub key: Vec<String>,
    /// Target key columns (empty: same as `key`).
    pub target_key: Vec<String>,
    /// Source column expressions.
    pub columns: Vec<String>,
    /// Target column expressions (empty: same as `columns`).
    pub target_columns: Vec<String>,
}

impl DiffSpec {
    /// The diff described by a `full_diff` check kind.
    pub fn from_kind(kind: &CheckKind) -> Option<DiffSpec> {
        match kind {
            CheckKind::FullDiff {
                source,
                target,
                key,
                target_key,
                columns,
                target_columns,
            } => Some(DiffSpec {
                source: source.clone(),
                target: target.clone(),
                key: key.clone(),
                target_key: target_key.clone(),
                columns: columns.clone(),
                target_columns: target_columns.clone(),
            }),
            _ => None,
        }
    }
}

/// One column that differs for a key present on both sides.
#[derive(Debug, Clone, Serialize, PartialEq, Eq)]
pub struct ColumnChange {
    /// The source-side column expression.
    pub column: String,
    /// Source value as text (`None` = NULL).
    pub source: Option<String>,
    /// Target value as text (`None` = NULL).
    pub target: Option<String>,
}

/// A key present on both sides whose rows differ.
#[derive(Debug, Clone, Serialize, PartialEq, Eq)]
pub struct ChangedRow {
    /// Canonical key text.
    pub key: String,
    /// The differing columns.
    pub columns: Vec<ColumnChange>,
}

/// One side of the comparison, as SQL.
pub(crate) struct Side<'c> {
    /// This side's connection, read-only (its statements are prepared on `ro.client()`). They
    /// carry plan SQL: run them inside `ro` ([`ReadOnly::run`], or [`both`] for the two sides
    /// at once).
    pub ro: ReadOnly<'c>,
    pub rel: String,
    pub key: Key,
    /// Row hash over key and columns (cast to the source's types).
    pub hash: String,
    /// Per-column hash and text expressions.
    pub col_hashes: Vec<String>,
    pub col_texts: Vec<String>,
    /// Column names as written in the plan (source side).
    labels: Vec<String>,
    /// The aggregate statement, prepared once per range shape.
    agg_stmts: HashMap<Shape, Statement>,
    /// Aggregates of many closed ranges in one statement (arrays of bounds, `LATERAL`).
    batch_stmt: Option<Statement>,
}

/// Row count and hash sum of one key range.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) struct Agg {
    pub(super) rows: i64,
    pub(super) sum: String,
}

impl Agg {
    fn from_row(r: &tokio_postgres::Row) -> Agg {
        Agg {
            rows: r.get("rows"),
            sum: r.get("sum"),
        }
    }
}

pub(crate) struct RowData {
    hash: i64,
    col_hashes: Vec<i64>,
    col_texts: Vec<Option<String>>,
}

pub(crate) async fn sides<'c>(
    sro: &ReadOnly<'c>,
    tro: &ReadOnly<'c>,
    spec: &DiffSpec,
) -> Result<(Side<'c>, Side<'c>), CheckError> {
    let (sclient, tclient) = (sro.client(), tro.client());
    if spec.key.is_empty() || spec.columns.is_empty() {
        return Err(CheckError::Invalid(
            "full_diff needs `key` and `columns`".into(),
        ));
    }
    let tkey_cols = if spec.target_key.is_empty() {
        &spec.key
    } else {
        &spec.target_key
    };
    let tcols = if spec.target_columns.is_empty() {
        &spec.columns
    } else {
        &spec.target_columns
    };
    if tkey_cols.len() != spec.key.len() || tcols.len() != spec.columns.len() {
        return Err(CheckError::Invalid(
            "source and target need as many key columns and columns".into(),
        ));
    }
    let (srel, trel) = (relation_sql(&spec.source), relation_sql(&spec.target));
    let skey = Key::resolve(sclient, &srel, &spec.key).await?;
    let tkey = Key::resolve(tclient, &trel, tkey_cols).await?;
    let scols: Vec<String> = spec.columns.iter().map(|c| column_sql(c)).collect();
    let tcols: Vec<String> = tcols.iter().map(|c| column_sql(c)).collect();
    let stypes = types_of(sclient, &srel, &scols).await?;
    let ttypes = types_of(tclient, &trel, &tcols).await?;
    let cast = |exprs: &[String], types: &[String], to: &[String]| -> Vec<String> {
        exprs
            .iter()
            .zip(types.iter().zip(to))
            .map(|(e, (t, want))| {
                if t == want {
                    hashable(e, t)
                } else {
                    hashable(&format!("({e})::{want}"), want)
                }
            })
            .collect()
    };
    let s_key_h = cast(&skey.exprs, &skey.types, &skey.types);
    let t_key_h = cast(&tkey.exprs, &tkey.types, &skey.types);
    let s_cols_h = cast(&scols, &stypes, &stypes);
    let t_cols_h = cast(&tcols, &ttypes, &stypes);
    let side =
        |ro: &ReadOnly<'c>, rel: String, key: Key, key_h: Vec<String>, cols_h: Vec<String>| {
            let all: Vec<String> = key_h.iter().chain(&cols_h).cloned().collect();
            Side {
                ro: ro.clone(),
                rel,
                key,
                hash: format!("hash_record_extended(ROW({}), {SEED})", all.join(", ")),
                col_hashes: cols_h
                    .iter()
                    .map(|c| format!("hash_record_extended(ROW({c}), {SEED})"))
                    .collect(),
                col_texts: cols_h.iter().map(|c| format!("({c})::text")).collect(),
                labels: spec.columns.clone(),
                agg_stmts: HashMap::new(),
                batch_stmt: None,
            }
        };
    let mut src = side(sro, srel, skey, s_key_h, s_cols_h);
    let mut tgt = side(tro, trel, tkey, t_key_h, t_cols_h);
    src.prepare().await?;
    tgt.prepare().await?;
    Ok((src, tgt))
}

/// Types without a hash function are compared by their text.
fn hashable(expr: &str, ty: &str) -> String {
    if matches!(
        ty,
        "json" | "xml" | "point" | "line" | "lseg" | "box" | "path" | "polygon" | "circle"
    ) {
        format!("({expr})::text")
    } else {
        expr.to_string()
    }
}

impl Side<'_> {
    /// The connection this side's statements run on.
    fn client(&self) -> &Client {
        self.ro.client()
    }

    async fn prepare(&mut self) -> Result<(), CheckError> {
        for shape in Shape::ALL {
            let sql = format!(
                "{OWN_TAG}SELECT count(*)::int8 AS rows, coalesce(sum({}), 0)::text AS sum FROM {} WHERE {}",
                self.hash,
                self.rel,
                shape.predicate(&self.key)
            );
            let stmt = self
                .client()
                .prepare(&sql)
                .await
                .map_err(|e| self.error(e))?;
            self.agg_stmts.insert(shape, stmt);
        }
        let w = self.key.exprs.len();
        let cols: Vec<String> = (0..w)
            .map(|i| format!("lo{i}"))
            .chain((0..w).map(|i| format!("hi{i}")))
            .collect();
        let arrays: Vec<String> = (1..=2 * w).map(|i| format!("${i}::text[]")).collect();
        let bound = |prefix: &str| {
            let parts: Vec<String> = self
                .key
                .types
                .iter()
                .enumerate()
                .map(|(i, t)| format!("cutover_bounds.{prefix}{i}::{t}"))
                .collect();
            if w == 1 {
                parts[0].clone()
            } else {
                format!("({})", parts.join(", "))
            }
        };
        let sql = format!(
            "{OWN_TAG}SELECT agg.rows, agg.sum FROM unnest({arrays}) WITH ORDINALITY AS cutover_bounds({cols}, ord) \
             CROSS JOIN LATERAL (SELECT count(*)::int8 AS rows, coalesce(sum({hash}), 0)::text AS sum \
                                 FROM {rel} WHERE {k} > {lo} AND {k} <= {hi}) AS agg \
             ORDER BY cutover_bounds.ord",
            arrays = arrays.join(", "),
            cols = cols.join(", "),
            hash = self.hash,
            rel = self.rel,
            k = self.key.tuple(),
            lo = bound("lo"),
            hi = bound("hi"),
        );
        self.batch_stmt = Some(
            self.client()
                .prepare(&sql)
                .await
                .map_err(|e| self.error(e))?,
        );
        Ok(())
    }

    /// Aggregates of `ranges`, in order: closed ranges in one statement, open ones alone.
    pub(super) async fn agg_many(&self, ranges: &[Range]) -> Result<Vec<Agg>, CheckError> {
        let closed: Vec<&Range> = ranges
            .iter()
            .filter(|r| r.lo.is_some() && r.hi.is_some())
            .collect();
        let mut batch = Vec::new();
        if let (Some(stmt), false) = (&self.batch_stmt, closed.is_empty()) {
            let w = self.key.exprs.len();
            let mut arrays: Vec<Vec<String>> = vec![Vec::with_capacity(closed.len()); 2 * w];
            for r in &closed {
                for (i, v) in
                    r.lo.iter()
                        .flatten()
                        .chain(r.hi.iter().flatten())
                        .enumerate()
                {
                    arrays[i].push(v.clone());
                }
            }
            let params: Vec<&(dyn ToSql + Sync)> =
                arrays.iter().map(|a| a as &(dyn ToSql + Sync)).collect();
            let rows = self
                .client()
                .query(stmt, &params)
                .await
                .map_err(|e| self.error(e))?;
            batch = rows.iter().map(Agg::from_row).collect();
        }
        let mut batch = batch.into_iter();
        let mut out = Vec::with_capacity(ranges.len());
        for r in ranges {
            if r.lo.is_some() && r.hi.is_some() {
                out.push(batch.next().ok_or_else(|| {
                    CheckError::Invalid("batched aggregate returned too few rows".into())
                })?);
            } else {
                out.push(self.agg(r).await?);
            }
        }
        Ok(out)
    }

    async fn agg(&self, range: &Range) -> Result<Agg, CheckError> {
        let stmt = self
            .agg_stmts
            .get(&range.shape())
            .ok_or_else(|| CheckError::Invalid("aggregate statement not prepared".into()))?;
        let values = range.params();
        let params: Vec<&(dyn ToSql + Sync)> =
            values.iter().map(|v| v as &(dyn ToSql + Sync)).collect();
        let row = self
            .client()
            .query_one(stmt, &params)
            .await
            .map_err(|e| self.error(e))?;
        Ok(Agg::from_row(&row))
    }

    /// Up to `parts - 1` key values splitting `range` into parts of about `step` rows.
    pub(super) async fn split_points(
        &self,
        range: &Range,
        step: i64,
        parts: i64,
    ) -> Result<Vec<Bound>, CheckError> {
        if let Some(points) = self.arithmetic_split(range, parts) {
            return Ok(points);
        }
        let names: Vec<String> = (0..self.key.exprs.len()).map(|i| format!("b{i}")).collect();
        let inner: Vec<String> = self
            .key
            .exprs
            .iter()
            .zip(&names)
            .map(|(e, n)| format!("{e} AS {n}"))
            .collect();
        let outer: Vec<String> = names.iter().map(|n| format!("{n}::text AS {n}")).collect();
        let sql = format!(
            "{OWN_TAG}SELECT {outer} FROM (SELECT {inner}, row_number() OVER (ORDER BY {order}) AS rn \
             FROM {rel} WHERE {pred}) AS s WHERE rn % {step} = 0 ORDER BY rn LIMIT {limit}",
            outer = outer.join(", "),
            inner = inner.join(", "),
            order = self.key.order_by(),
            rel = self.rel,
            pred = range.predicate(&self.key),
            limit = parts - 1,
        );
        let rows = self
            .client()
            .query(&sql, &[])
            .await
            .map_err(|e| self.error(e))?;
        Ok(rows
            .iter()
            .map(|r| {
                names
                    .iter()
                    .map(|n| r.get::<_, String>(n.as_str()))
                    .collect()
            })
            .collect())
    }

    /// Splits a closed integer range into `parts` equal parts without a query.
    fn arithmetic_split(&self, range: &Range, parts: i64) -> Option<Vec<Bound>> {
        if !self.key.is_integer() {
            return None;
        }
        let lo: i128 = range.lo.as_ref()?.first()?.parse().ok()?;
        let hi: i128 = range.hi.as_ref()?.first()?.parse().ok()?;
        let parts = i128::from(parts);
        if hi - lo < parts {
            return None;
        }
        Some(
            (1..parts)
                .map(|i| vec![(lo + (hi - lo) * i / parts).to_string()])
                .collect(),
        )
    }

    /// Canonical key text, row hash and key bound of the rows in `range`.
    pub(super) async fn light_rows(
        &self,
        range: &Range,
    ) -> Result<Vec<(String, i64, Bound)>, CheckError> {
        let width = self.key.exprs.len();
        // A single-column key's canonical text is its bound; composite keys read both.
        let bound_texts = if width == 1 {
            String::new()
        } else {
            format!(", {}", self.key.select_texts())
        };
        let sql = format!(
            "{OWN_TAG}SELECT {} AS row_key, {} AS row_hash{bound_texts} FROM {} WHERE {}",
            self.key.text(),
            self.hash,
            self.rel,
            range.predicate(&self.key)
        );
        let rows = self
            .client()
            .query(&sql, &[])
            .await
            .map_err(|e| self.error(e))?;
        Ok(rows
            .iter()
            .map(|r| {
                let key: String = r.get("row_key");
                let bound = if width == 1 {
                    vec![key.clone()]
                } else {
                    // The key's columns follow the two named ones, in key order.
                    (0..width).map(|i| r.get::<_, String>(2 + i)).collect()
                };
                (key, r.get("row_hash"), bound)
            })
            .collect())
    }

    /// The full rows (hashes and texts) of the given keys, by canonical key text.
    pub(super) async fn rows_for_keys(
        &self,
        keys: &[Bound],
    ) -> Result<HashMap<String, RowData>, CheckError> {
        if keys.is_empty() {
            return Ok(HashMap::new());
        }
        let rows = if self.key.exprs.len() == 1 {
            let values: Vec<String> = keys.iter().map(|b| b[0].clone()).collect();
            let sql = format!(
                "{OWN_TAG}SELECT {} FROM {} WHERE {} = ANY($1::text[]::{}[])",
                self.row_select(),
                self.rel,
                self.key.exprs[0],
                self.key.types[0]
            );
            self.client().query(&sql, &[&values]).await
        } else {
            let list: Vec<String> = keys.iter().map(|b| self.key.literal(b)).collect();
            let sql = format!(
                "{OWN_TAG}SELECT {} FROM {} WHERE {} IN ({})",
                self.row_select(),
                self.rel,
                self.key.tuple(),
                list.join(", ")
            );
            self.client().query(&sql, &[]).await
        }
        .map_err(|e| self.error(e))?;
        Ok(rows.iter().map(|r| self.row_data(r)).collect())
    }

    /// `SELECT` list reading a row: canonical key text (`row_key`), row hash (`row_hash`), then
    /// the column hashes and the column texts in column order.
    pub(super) fn row_select(&self) -> String {
        format!(
            "{} AS row_key, {} AS row_hash, {}, {}",
            self.key.text(),
            self.hash,
            self.col_hashes.join(", "),
            self.col_texts.join(", ")
        )
    }

    /// Decodes a row read with [`Side::row_select`] (starting at column 0): the two named
    /// columns, then the per-column lists by position (their width is the table's).
    pub(super) fn row_data(&self, r: &tokio_postgres::Row) -> (String, RowData) {
        let n = self.col_hashes.len();
        let key: String = r.get("row_key");
        let data = RowData {
            hash: r.get("row_hash"),
            col_hashes: (0..n).map(|i| r.get::<_, i64>(2 + i)).collect(),
            col_texts: (0..n)
                .map(|i| r.get::<_, Option<String>>(2 + n + i))
                .collect(),
        };
        (key, data)
    }

    pub(super) async fn null_keys(&self) -> Result<i64, CheckError> {
        let cond: Vec<String> = self
            .key
            .exprs
            .iter()
            .map(|e| format!("({e}) IS NULL"))
            .collect();
        let sql = format!(
            "SELECT count(*)::int8 AS null_keys FROM {} WHERE {}",
            self.rel,
            cond.join(" OR ")
        );
        Ok(self
            .client()
            .query_one(&sql, &[])
            .await
            .map_err(|e| self.error(e))?
            .get("null_keys"))
    }

    pub(super) fn error(&self, e: tokio_postgres::Error) -> CheckError {
        CheckError::Db(format!(
            "on {}: {}",
            self.rel,
            crate::db::describe_error(&e)
        ))
    }
}

/// Runs `a` on the source side and `b` on the target side, read-only: in one scope when both
/// sides share a connection (their statements are pipelined on it), else each in its own.
pub(crate) async fn both<A, B>(
    src: &Side<'_>,
    tgt: &Side<'_>,
    a: impl Future<Output = Result<A, CheckError>>,
    b: impl Future<Output = Result<B, CheckError>>,
) -> Result<(A, B), CheckError> {
    if src.ro.same_connection(&tgt.ro) {
        src.ro.run(async { tokio::try_join!(a, b) }).await
    } else {
        tokio::try_join!(src.ro.run(a), tgt.ro.run(b))
    }
}

/// How the rows of one key differ, if they do.
pub(crate) fn row_change(
    src: &Side<'_>,
    key: String,
    s: &RowData,
    t: &RowData,
) -> Option<ChangedRow> {
    if s.hash == t.hash && s.col_hashes == t.col_hashes {
        return None;
    }
    let columns = (0..s.col_hashes.len())
        .filter(|&i| {
            s.col_hashes[i] != t.col_hashes[i]
                || s.col_texts[i].is_none() != t.col_texts[i].is_none()
        })
        .map(|i| ColumnChange {
            column: src.labels[i].clone(),
            source: s.col_texts[i].clone(),
            target: t.col_texts[i].clone(),
        })
        .collect();
    Some(ChangedRow { key, columns })
}
