//! The exact diff of two relations on a key.
//!
//! One pass per side computes, for each key range of a chunked walk, the row count and the sum
//! of 64-bit row hashes (`hash_record_extended` over key and compared columns, pushed down to
//! SQL; a window of chunks is aggregated by one `LATERAL` statement per side, the two sides
//! pipelined or, with [`RunOptions::second_connection`], run concurrently). Only ranges whose aggregates differ are
//! bisected: split into up to [`FANOUT`] sub-ranges (boundaries read from the key index), whose
//! aggregates are compared again, until a differing range holds at most [`LEAF_ROWS`] rows; those
//! rows are fetched from both sides (key, row hash, per-column hashes and text) and compared
//! exactly: keys only in the source are *missing*, keys only in the target *extra*, keys on both
//! sides with different hashes *changed*, with the columns that differ.
//!
//! Values are compared by type (`1.50 = 1.5` for numerics, NULL is distinct from every value);
//! when a target column's type differs from the source's it is cast to the source's type.

use std::collections::HashMap;
use std::future::Future;
use std::time::Instant;

use serde::Serialize;
use serde_json::json;
use tokio_postgres::types::ToSql;
use tokio_postgres::{Client, Statement};

use super::chunk::{Range, Shape, Walker};
use super::keys::{column_sql, relation_sql, types_of, Bound, Key};
use super::pace::Pacer;
use super::{CheckError, Ctx, RunOptions, Verdict, MAX_LISTED};
use crate::db::{DbConfig, SessionSettings};
use crate::plan::CheckKind;
use crate::read_only::ReadOnly;
use crate::Outcome;

/// A differing range is split into at most this many sub-ranges.
pub const FANOUT: i64 = 8;
/// A differing range with at most this many rows per side is fetched and compared row by row.
pub const LEAF_ROWS: i64 = 2_048;
/// Largest first-pass chunk, in rows: bounds the re-scan a single difference costs.
const MAX_CHUNK_ROWS: u32 = 10_000;
/// Bisection depth limit (a key repeated more than `LEAF_ROWS` times cannot be split).
const MAX_DEPTH: u32 = 8;
/// First-pass chunks sent to the server at once.
const WINDOW: usize = 16;
/// Differing keys kept in memory per kind (counts go on beyond it).
pub const MAX_KEPT: usize = 10_000;
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

/// Everything the exact diff found.
#[derive(Debug, Clone, Default, Serialize)]
pub struct DiffReport {
    /// Rows in the source (first pass).
    pub source_rows: i64,
    /// Rows in the target (first pass).
    pub target_rows: i64,
    /// Keys in the source but not in the target (the first [`MAX_KEPT`]).
    pub missing: Vec<String>,
    /// Keys in the target but not in the source (the first [`MAX_KEPT`]).
    pub extra: Vec<String>,
    /// Keys on both sides with different values (the first [`MAX_KEPT`]).
    pub changed: Vec<ChangedRow>,
    /// Keys appearing more than once on one side (`source:` / `target:` prefixed; capped).
    pub duplicate_keys: Vec<String>,
    /// How many keys are missing (all of them, also beyond the list).
    pub missing_count: u64,
    /// How many keys are extra.
    pub extra_count: u64,
    /// How many keys changed.
    pub changed_count: u64,
    /// How many duplicate keys were seen.
    pub duplicate_count: u64,
    /// Rows whose key is NULL (source, target): invisible to key ranges, so they fail the diff.
    pub null_keys: (i64, i64),
    /// First-pass chunks.
    pub chunks: u64,
    /// Ranges whose aggregates differed (all levels).
    pub ranges_differing: u64,
    /// Rows fetched row by row (both sides).
    pub rows_fetched: i64,
    /// Milliseconds spent bisecting differing ranges (after the first pass found them).
    pub bisect_ms: f64,
}

impl DiffReport {
    /// True when both relations hold exactly the same rows.
    pub fn is_equal(&self) -> bool {
        self.missing_count == 0
            && self.extra_count == 0
            && self.changed_count == 0
            && self.duplicate_count == 0
            && self.null_keys == (0, 0)
    }
}

/// Pushes onto a capped list and counts.
fn keep<T>(list: &mut Vec<T>, count: &mut u64, item: T) {
    *count += 1;
    if list.len() < MAX_KEPT {
        list.push(item);
    }
}

pub(crate) async fn run(ctx: &mut Ctx<'_>) -> Result<Verdict, CheckError> {
    let spec = DiffSpec::from_kind(&ctx.spec.kind)
        .ok_or_else(|| CheckError::Invalid("not a full_diff check".into()))?;
    let report = diff(
        &ctx.ro,
        ctx.second_connection,
        &spec,
        &mut ctx.pacer,
        ctx.chunk_time,
    )
    .await?;
    Ok(verdict(&spec, &report))
}

/// Runs the exact diff outside of any plan (no windows or load throttle; cancellation and
/// chunk timing from `options`). Used by the benchmark.
pub async fn compare(
    client: &Client,
    spec: &DiffSpec,
    options: &RunOptions,
) -> Result<DiffReport, CheckError> {
    let mut pacer = Pacer::unthrottled(options);
    diff(
        &ReadOnly::own(client, "full diff"),
        options.second_connection.as_ref(),
        spec,
        &mut pacer,
        options.chunk_time,
    )
    .await
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

#[derive(Debug, Clone, PartialEq, Eq)]
struct Agg {
    rows: i64,
    sum: String,
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
                "SELECT count(*)::int8 AS rows, coalesce(sum({}), 0)::text AS sum FROM {} WHERE {}",
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
            "SELECT agg.rows, agg.sum FROM unnest({arrays}) WITH ORDINALITY AS cutover_bounds({cols}, ord) \
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
    async fn agg_many(&self, ranges: &[Range]) -> Result<Vec<Agg>, CheckError> {
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

    /// Up to `FANOUT - 1` key values splitting `range` into parts of about `step` rows.
    async fn split_points(&self, range: &Range, step: i64) -> Result<Vec<Bound>, CheckError> {
        if let Some(points) = self.arithmetic_split(range) {
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
            "SELECT {outer} FROM (SELECT {inner}, row_number() OVER (ORDER BY {order}) AS rn \
             FROM {rel} WHERE {pred}) AS s WHERE rn % {step} = 0 ORDER BY rn LIMIT {limit}",
            outer = outer.join(", "),
            inner = inner.join(", "),
            order = self.key.order_by(),
            rel = self.rel,
            pred = range.predicate(&self.key),
            limit = FANOUT - 1,
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

    /// Splits a closed integer range into `FANOUT` equal parts without a query.
    fn arithmetic_split(&self, range: &Range) -> Option<Vec<Bound>> {
        if !self.key.is_integer() {
            return None;
        }
        let lo: i128 = range.lo.as_ref()?.first()?.parse().ok()?;
        let hi: i128 = range.hi.as_ref()?.first()?.parse().ok()?;
        let parts = i128::from(FANOUT);
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
    async fn light_rows(&self, range: &Range) -> Result<Vec<(String, i64, Bound)>, CheckError> {
        let width = self.key.exprs.len();
        // A single-column key's canonical text is its bound; composite keys read both.
        let bound_texts = if width == 1 {
            String::new()
        } else {
            format!(", {}", self.key.select_texts())
        };
        let sql = format!(
            "SELECT {} AS row_key, {} AS row_hash{bound_texts} FROM {} WHERE {}",
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
    pub async fn rows_for_keys(
        &self,
        keys: &[Bound],
    ) -> Result<HashMap<String, RowData>, CheckError> {
        if keys.is_empty() {
            return Ok(HashMap::new());
        }
        let rows = if self.key.exprs.len() == 1 {
            let values: Vec<String> = keys.iter().map(|b| b[0].clone()).collect();
            let sql = format!(
                "SELECT {} FROM {} WHERE {} = ANY($1::text[]::{}[])",
                self.row_select(),
                self.rel,
                self.key.exprs[0],
                self.key.types[0]
            );
            self.client().query(&sql, &[&values]).await
        } else {
            let list: Vec<String> = keys.iter().map(|b| self.key.literal(b)).collect();
            let sql = format!(
                "SELECT {} FROM {} WHERE {} IN ({})",
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
    pub fn row_select(&self) -> String {
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
    pub fn row_data(&self, r: &tokio_postgres::Row) -> (String, RowData) {
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

    async fn null_keys(&self) -> Result<i64, CheckError> {
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

    pub fn error(&self, e: tokio_postgres::Error) -> CheckError {
        CheckError::Db(format!(
            "on {}: {}",
            self.rel,
            crate::db::describe_error(&e)
        ))
    }
}

async fn diff(
    ro: &ReadOnly<'_>,
    second_connection: Option<&DbConfig>,
    spec: &DiffSpec,
    pacer: &mut Pacer<'_>,
    chunk_time: std::time::Duration,
) -> Result<DiffReport, CheckError> {
    pacer.check()?;
    let client = ro.client();
    let second = match second_connection {
        Some(cfg) => Some(open_second(client, cfg).await?),
        None => None,
    };
    let tro = second.as_ref().map(|c| ro.on(c));
    let (src, tgt) = sides(ro, tro.as_ref().unwrap_or(ro), spec).await?;
    let mut report = DiffReport::default();
    let mut walker = Walker::start(ro, &src.rel, &src.key, chunk_time, MAX_CHUNK_ROWS).await?;
    let mut done = false;
    while !done {
        // A window of chunks is sent at once (pipelined on the connection), so the server never
        // waits for a round trip between two chunk statements.
        let mut ranges = Vec::with_capacity(WINDOW);
        while ranges.len() < WINDOW {
            match walker.next(ro).await? {
                Some(r) => ranges.push(r),
                None => {
                    done = true;
                    break;
                }
            }
        }
        if ranges.is_empty() {
            break;
        }
        let clock = Instant::now();
        let (src, tgt) = (&src, &tgt);
        let (sa, ta) = both(src, tgt, src.agg_many(&ranges), tgt.agg_many(&ranges)).await?;
        let aggs: Vec<(Agg, Agg)> = sa.into_iter().zip(ta).collect();
        let elapsed = clock.elapsed();
        let rows: i64 = aggs.iter().map(|(a, b)| a.rows.max(b.rows)).sum();
        walker.record(rows / ranges.len() as i64, elapsed / ranges.len() as u32);
        for (range, (a, b)) in ranges.into_iter().zip(aggs) {
            report.chunks += 1;
            report.source_rows += a.rows;
            report.target_rows += b.rows;
            if a != b {
                let t = Instant::now();
                narrow(src, tgt, range, a, b, &mut report).await?;
                report.bisect_ms += t.elapsed().as_secs_f64() * 1000.0;
            }
        }
        pacer.after_chunk(client, elapsed).await?;
    }
    let (sn, tn) = both(&src, &tgt, src.null_keys(), tgt.null_keys()).await?;
    report.null_keys = (sn, tn);
    Ok(report)
}

/// A second connection for the target side, with the same statement timeout as `client`.
async fn open_second(client: &Client, cfg: &DbConfig) -> Result<Client, CheckError> {
    let timeout: String = client
        .query_one("SHOW statement_timeout", &[])
        .await?
        .get("statement_timeout");
    let second = crate::db::connect(cfg, &SessionSettings::new("check-diff-target"))
        .await
        .map_err(|e| CheckError::Db(e.to_string()))?;
    second
        .batch_execute(&format!(
            "SET statement_timeout = {}",
            crate::sql::quote_literal(&timeout)
        ))
        .await?;
    Ok(second)
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

/// Bisects a differing range down to rows and records the differences.
async fn narrow(
    src: &Side<'_>,
    tgt: &Side<'_>,
    range: Range,
    a: Agg,
    b: Agg,
    report: &mut DiffReport,
) -> Result<(), CheckError> {
    let mut stack = vec![(range, a, b, 0u32)];
    while let Some((range, a, b, depth)) = stack.pop() {
        report.ranges_differing += 1;
        let rows = a.rows.max(b.rows);
        if rows <= LEAF_ROWS || depth >= MAX_DEPTH {
            compare_rows(src, tgt, &range, report).await?;
            continue;
        }
        let step = (rows + FANOUT - 1) / FANOUT;
        let bigger = if a.rows >= b.rows { src } else { tgt };
        let points = bigger.ro.run(bigger.split_points(&range, step)).await?;
        let mut parts = Vec::with_capacity(points.len() + 1);
        let mut lo = range.lo.clone();
        for p in points {
            parts.push(Range {
                lo: lo.clone(),
                hi: Some(p.clone()),
            });
            lo = Some(p);
        }
        parts.push(Range {
            lo,
            hi: range.hi.clone(),
        });
        let (sa, ta) = both(src, tgt, src.agg_many(&parts), tgt.agg_many(&parts)).await?;
        let aggs: Vec<(Agg, Agg)> = sa.into_iter().zip(ta).collect();
        for (part, (pa, pb)) in parts.into_iter().zip(aggs) {
            if pa != pb {
                stack.push((part, pa, pb, depth + 1));
            }
        }
    }
    Ok(())
}

async fn compare_rows(
    src: &Side<'_>,
    tgt: &Side<'_>,
    range: &Range,
    report: &mut DiffReport,
) -> Result<(), CheckError> {
    // Keys and row hashes first; full rows only for keys on both sides whose hashes differ.
    let (srows, trows) = both(src, tgt, src.light_rows(range), tgt.light_rows(range)).await?;
    report.rows_fetched += (srows.len() + trows.len()) as i64;
    let mut source: HashMap<String, (i64, Bound)> = HashMap::with_capacity(srows.len());
    for (key, hash, bound) in srows {
        match source.entry(key) {
            std::collections::hash_map::Entry::Occupied(e) => {
                keep(
                    &mut report.duplicate_keys,
                    &mut report.duplicate_count,
                    format!("source:{}", e.key()),
                );
            }
            std::collections::hash_map::Entry::Vacant(e) => {
                e.insert((hash, bound));
            }
        }
    }
    let mut seen: HashMap<String, ()> = HashMap::with_capacity(trows.len());
    let mut suspects: Vec<Bound> = Vec::new();
    for (key, hash, _) in trows {
        if seen.insert(key.clone(), ()).is_some() {
            keep(
                &mut report.duplicate_keys,
                &mut report.duplicate_count,
                format!("target:{key}"),
            );
            continue;
        }
        match source.remove(&key) {
            None => keep(&mut report.extra, &mut report.extra_count, key),
            Some((h, bound)) if h != hash => suspects.push(bound),
            Some(_) => {}
        }
    }
    for key in source.into_keys() {
        keep(&mut report.missing, &mut report.missing_count, key);
    }
    if suspects.is_empty() {
        return Ok(());
    }
    let (full_s, full_t) = both(
        src,
        tgt,
        src.rows_for_keys(&suspects),
        tgt.rows_for_keys(&suspects),
    )
    .await?;
    let mut keys: Vec<&String> = full_s.keys().collect();
    keys.sort();
    for key in keys {
        if let (Some(s), Some(t)) = (full_s.get(key), full_t.get(key)) {
            if let Some(change) = row_change(src, key.clone(), s, t) {
                keep(&mut report.changed, &mut report.changed_count, change);
            }
        }
    }
    Ok(())
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

fn verdict(spec: &DiffSpec, r: &DiffReport) -> Verdict {
    let mut missing = r.missing.clone();
    let mut extra = r.extra.clone();
    let mut changed = r.changed.clone();
    missing.sort();
    extra.sort();
    changed.sort_by(|x, y| x.key.cmp(&y.key));
    let equal = r.is_equal();
    let summary = if equal {
        format!(
            "{} and {} are identical: {} rows",
            spec.source, spec.target, r.source_rows
        )
    } else {
        let mut parts = Vec::new();
        let show = |keys: &[String]| {
            let head: Vec<&str> = keys.iter().take(5).map(String::as_str).collect();
            let more = if keys.len() > 5 { ", …" } else { "" };
            format!("{}{more}", head.join(", "))
        };
        if !missing.is_empty() {
            parts.push(format!("{} missing ({})", r.missing_count, show(&missing)));
        }
        if !extra.is_empty() {
            parts.push(format!("{} extra ({})", r.extra_count, show(&extra)));
        }
        if !changed.is_empty() {
            let keys: Vec<String> = changed.iter().map(|c| c.key.clone()).collect();
            parts.push(format!("{} changed ({})", r.changed_count, show(&keys)));
        }
        if r.duplicate_count > 0 {
            parts.push(format!("{} duplicate keys", r.duplicate_count));
        }
        if r.null_keys != (0, 0) {
            parts.push(format!(
                "NULL keys: {} in source, {} in target",
                r.null_keys.0, r.null_keys.1
            ));
        }
        format!(
            "{} vs {}: {} ({} vs {} rows)",
            spec.source,
            spec.target,
            parts.join("; "),
            r.source_rows,
            r.target_rows
        )
    };
    Verdict {
        outcome: if equal { Outcome::Pass } else { Outcome::Fail },
        summary,
        rows_scanned: r.source_rows + r.target_rows,
        details: json!({
            "source_rows": r.source_rows,
            "target_rows": r.target_rows,
            "missing_count": r.missing_count,
            "extra_count": r.extra_count,
            "changed_count": r.changed_count,
            "duplicate_count": r.duplicate_count,
            "missing": missing.iter().take(MAX_LISTED).collect::<Vec<_>>(),
            "extra": extra.iter().take(MAX_LISTED).collect::<Vec<_>>(),
            "changed": changed.iter().take(MAX_LISTED).collect::<Vec<_>>(),
            "duplicate_keys": r.duplicate_keys.iter().take(MAX_LISTED).collect::<Vec<_>>(),
            "null_keys": { "source": r.null_keys.0, "target": r.null_keys.1 },
            "chunks": r.chunks,
            "ranges_differing": r.ranges_differing,
            "rows_fetched": r.rows_fetched,
        }),
    }
}
