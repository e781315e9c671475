//! Row-count parity by partition: counts of a source and a target relation per partition — an
//! expression's value (e.g. `date_trunc('month', created_at)`) or a key range. On a partitioned
//! source the counts are also compared per leaf partition ([`super::leaves`]).

use std::collections::BTreeMap;
use std::time::Instant;

use serde_json::json;

use super::chunk::{Range, Walker};
use super::keys::{column_sql, relation_sql, Key};
use super::leaves::{self, Leaves, Picked};
use super::{CheckError, Ctx, Verdict};
use crate::plan::CheckKind;
use crate::sql::OWN_TAG;
use crate::Outcome;

/// Largest count statement, in rows: bigger key-range partitions are counted in chunks.
const MAX_COUNT_ROWS: u32 = 200_000;

/// Counts per partition label: (source, target).
type Counts = BTreeMap<String, (i64, i64)>;

/// Partitions in display order: (label, source, target).
type Listed = Vec<(String, i64, i64)>;

pub(crate) async fn run(ctx: &mut Ctx<'_>) -> Result<Verdict, CheckError> {
    let CheckKind::RowCountParity {
        source,
        target,
        partition_by,
        key,
        partitions,
    } = &ctx.spec.kind
    else {
        return Err(CheckError::Invalid("not a row-count check".into()));
    };
    let (src, tgt) = (relation_sql(source), relation_sql(target));
    ctx.pacer.check()?;
    let counts: Listed = match (partition_by, key) {
        (Some(expr), key) => by_expression(ctx, &src, &tgt, expr, key.as_deref())
            .await?
            .into_iter()
            .map(|(label, (s, t))| (label, s, t))
            .collect(),
        (None, Some(key)) => by_key_range(ctx, &src, &tgt, key, *partitions).await?,
        (None, None) => {
            return Err(CheckError::Invalid(
                "row-count parity needs `partition_by` or `key`".into(),
            ))
        }
    };
    let mut v = verdict(source, target, &counts);
    if let Some(leaves) = Leaves::of(ctx.client, source).await.transpose() {
        let per_leaf = async {
            let leaves = leaves?;
            let s = leaves.count(&ctx.ro, &src, Picked::None).await?;
            let t = leaves.count(&ctx.ro, &tgt, Picked::None).await?;
            Ok(leaves.results(&s, &t, |s, t| (s.0 - t.0).abs()))
        };
        leaves::attach(&mut v.details, &mut v.summary, per_leaf.await);
    }
    Ok(v)
}

async fn by_expression(
    ctx: &mut Ctx<'_>,
    src: &str,
    tgt: &str,
    expr: &str,
    key: Option<&str>,
) -> Result<Counts, CheckError> {
    let mut counts = Counts::new();
    let Some(key) = key else {
        let all = Range::all();
        count_groups(ctx, src, expr, &all, None, &mut counts, true).await?;
        count_groups(ctx, tgt, expr, &all, None, &mut counts, false).await?;
        return Ok(counts);
    };
    let skey = Key::resolve(ctx.client, src, &[key.to_string()]).await?;
    let tkey = Key::resolve(ctx.client, tgt, &[key.to_string()]).await?;
    let mut walker = Walker::start(&ctx.ro, src, &skey, ctx.chunk_time, 200_000).await?;
    while let Some(range) = walker.next(&ctx.ro).await? {
        let clock = Instant::now();
        let n = count_groups(ctx, src, expr, &range, Some(&skey), &mut counts, true).await?;
        count_groups(ctx, tgt, expr, &range, Some(&tkey), &mut counts, false).await?;
        walker.record(n, clock.elapsed());
        ctx.pacer.after_chunk(ctx.client, clock.elapsed()).await?;
    }
    Ok(counts)
}

/// Adds `GROUP BY expr` counts of one side within `range`; returns the rows counted.
async fn count_groups(
    ctx: &Ctx<'_>,
    table: &str,
    expr: &str,
    range: &Range,
    key: Option<&Key>,
    counts: &mut Counts,
    source_side: bool,
) -> Result<i64, CheckError> {
    let predicate = match key {
        Some(k) => range.predicate(k),
        None => "TRUE".to_string(),
    };
    let sql = format!(
        "{OWN_TAG}SELECT ({expr})::text AS label, count(*)::int8 AS n FROM {table} WHERE {predicate} \
         GROUP BY 1",
        expr = column_sql(expr)
    );
    let rows = ctx
        .ro
        .query(&sql, &[])
        .await
        .map_err(|e| CheckError::Db(format!("on {table}: {e}")))?;
    let mut total = 0;
    for row in rows {
        let label: Option<String> = row.get("label");
        let n: i64 = row.get("n");
        total += n;
        let entry = counts
            .entry(label.unwrap_or_else(|| "NULL".into()))
            .or_default();
        if source_side {
            entry.0 += n;
        } else {
            entry.1 += n;
        }
    }
    Ok(total)
}

async fn by_key_range(
    ctx: &mut Ctx<'_>,
    src: &str,
    tgt: &str,
    key: &str,
    partitions: u32,
) -> Result<Listed, CheckError> {
    let skey = Key::resolve(ctx.client, src, &[key.to_string()]).await?;
    let tkey = Key::resolve(ctx.client, tgt, &[key.to_string()]).await?;
    let estimate: f64 = ctx
        .client
        .query_one(
            &format!(
                "SELECT greatest(reltuples, 0)::float8 AS estimate FROM pg_class \
                 WHERE oid = {}::regclass",
                crate::sql::quote_literal(src)
            ),
            &[],
        )
        .await?
        .get("estimate");
    let estimate = if estimate > 0.0 {
        estimate
    } else {
        let n: i64 = ctx
            .ro
            .query_one(&format!("{OWN_TAG}SELECT count(*) AS n FROM {src}"), &[])
            .await?
            .get("n");
        n as f64
    };
    let per = (estimate / f64::from(partitions.max(1))).ceil().max(1.0);
    let mut walker = Walker::start(&ctx.ro, src, &skey, ctx.chunk_time, MAX_COUNT_ROWS).await?;
    if per <= f64::from(MAX_COUNT_ROWS) {
        // One statement per partition and side is short enough.
        walker.fix_rows(per);
    }
    // Chunks (sized toward the chunk time when partitions are large) are grouped into
    // consecutive partitions of about `per` source rows.
    let mut counts = Listed::new();
    let mut open: Option<(Range, i64, i64)> = None;
    while let Some(range) = walker.next(&ctx.ro).await? {
        let clock = Instant::now();
        let s = count_range(ctx, src, &skey, &range).await?;
        let t = count_range(ctx, tgt, &tkey, &range).await?;
        walker.record(s.max(t), clock.elapsed());
        let (part, ps, pt) = match open.take() {
            Some((part, ps, pt)) => (
                Range {
                    lo: part.lo,
                    hi: range.hi.clone(),
                },
                ps + s,
                pt + t,
            ),
            None => (range.clone(), s, t),
        };
        if ps as f64 >= per || part.hi.is_none() {
            counts.push((part.label(), ps, pt));
        } else {
            open = Some((part, ps, pt));
        }
        ctx.pacer.after_chunk(ctx.client, clock.elapsed()).await?;
    }
    if let Some((part, ps, pt)) = open {
        counts.push((part.label(), ps, pt));
    }
    Ok(counts)
}

async fn count_range(
    ctx: &Ctx<'_>,
    table: &str,
    key: &Key,
    range: &Range,
) -> Result<i64, CheckError> {
    let sql = format!(
        "{}SELECT count(*)::int8 AS n FROM {table} WHERE {}",
        crate::sql::OWN_TAG,
        range.predicate(key)
    );
    Ok(ctx.ro.query_one(&sql, &[]).await?.get("n"))
}

fn verdict(source: &str, target: &str, counts: &Listed) -> Verdict {
    let (mut s_total, mut t_total) = (0i64, 0i64);
    let mut bad = Vec::new();
    let mut good = Vec::new();
    for (label, s, t) in counts {
        s_total += s;
        t_total += t;
        let entry = json!({ "partition": label, "source": s, "target": t, "diff": t - s });
        if s == t {
            good.push(entry);
        } else {
            bad.push(entry);
        }
    }
    let mismatched = bad.len();
    let names: Vec<String> = bad
        .iter()
        .take(5)
        .map(|e| {
            format!(
                "{} ({} vs {})",
                e["partition"].as_str().unwrap_or(""),
                e["source"],
                e["target"]
            )
        })
        .collect();
    let outcome = if mismatched == 0 {
        Outcome::Pass
    } else {
        Outcome::Fail
    };
    let summary = if mismatched == 0 {
        format!(
            "{} partitions match: {s_total} rows in {source} and {target}",
            counts.len()
        )
    } else {
        format!(
            "{mismatched} of {} partitions differ ({source} {s_total} rows, {target} {t_total}): {}{}",
            counts.len(),
            names.join("; "),
            if mismatched > 5 { "; …" } else { "" }
        )
    };
    let mut partitions = bad;
    partitions.extend(good);
    Verdict {
        outcome,
        summary,
        rows_scanned: s_total + t_total,
        details: json!({
            "source_rows": s_total,
            "target_rows": t_total,
            "partitions_total": counts.len(),
            "partitions_mismatched": mismatched,
            "partitions": partitions,
        }),
    }
}
