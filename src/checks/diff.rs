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
//! On a partitioned source the result is also given per leaf partition ([`super::leaves`]).
//!
//! Values are compared by type (`1.50 = 1.5` for numerics, NULL is distinct from every value);
//! when a target column's type differs from the source's it is cast to the source's type.

use std::collections::HashMap;
use std::time::Instant;

use serde::Serialize;
use serde_json::json;
use tokio_postgres::Client;

use super::chunk::{Range, Walker};
use super::keys::{relation_sql, Bound, Key};
use super::leaves::{self, Leaves, Picked};
use super::pace::Pacer;
use super::side::{both, row_change, sides, Agg, Side};
pub use super::side::{ChangedRow, ColumnChange, DiffSpec};
use super::{CheckError, Ctx, PartitionResult, RunOptions, Verdict, MAX_LISTED};
use crate::db::{DbConfig, SessionSettings};
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
    let mut v = verdict(&spec, &report);
    if let Some(leaves) = Leaves::of(ctx.client, &spec.source).await.transpose() {
        let per_leaf = by_leaf(&ctx.ro, leaves, &spec, &report);
        leaves::attach(&mut v.details, &mut v.summary, per_leaf.await);
    }
    Ok(v)
}

/// The diff per leaf partition of the source: rows on each side, and the differing keys kept
/// in the report (missing and changed ones placed by the source row, extra ones by the target
/// row).
async fn by_leaf(
    ro: &ReadOnly<'_>,
    leaves: Result<Leaves, CheckError>,
    spec: &DiffSpec,
    report: &DiffReport,
) -> Result<Vec<PartitionResult>, CheckError> {
    let leaves = leaves?;
    let (srel, trel) = (relation_sql(&spec.source), relation_sql(&spec.target));
    let tkey = if spec.target_key.is_empty() {
        &spec.key
    } else {
        &spec.target_key
    };
    let skey = Key::resolve(ro.client(), &srel, &spec.key).await?.text();
    let tkey = Key::resolve(ro.client(), &trel, tkey).await?.text();
    let at_source: Vec<String> = report
        .missing
        .iter()
        .cloned()
        .chain(report.changed.iter().map(|c| c.key.clone()))
        .collect();
    let s = leaves
        .count(ro, &srel, Picked::Keys(&skey, &at_source))
        .await?;
    let t = leaves
        .count(ro, &trel, Picked::Keys(&tkey, &report.extra))
        .await?;
    Ok(leaves.results(&s, &t, |s, t| s.1 + t.1))
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
        let points = bigger
            .ro
            .run(bigger.split_points(&range, step, FANOUT))
            .await?;
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
