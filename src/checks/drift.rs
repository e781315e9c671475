//! NULL/default and distribution drift: per partition, the new column's share of NULLs (and of
//! a default value) and its distribution — min, max, mean, distinct count, quantiles — compared
//! with the old column's, against thresholds. Catches truncation, rounding and misapplied
//! filters that row counts miss. On a partitioned table each leaf partition also counts its rows
//! whose new value is NULL where the old one is not ([`super::leaves`]).
//!
//! Numeric columns are compared as `float8`, dates and timestamps as epoch seconds; other types
//! only by NULL/default share, distinct count and (exact) min/max. One grouped statement per
//! check, bounded by the statement timeout (quantiles and distinct counts cannot be merged
//! across chunks).

use serde_json::{json, Value};

use super::keys::{column_sql, is_numeric_type, is_temporal_type, relation_sql, types_of};
use super::leaves::{self, Leaves, Picked};
use super::{CheckError, Ctx, PartitionResult, Verdict, MAX_LISTED};
use crate::plan::CheckKind;
use crate::Outcome;

/// Quantiles compared.
const QUANTILES: [f64; 3] = [0.1, 0.5, 0.9];

/// Statistics of one column in one partition.
#[derive(Debug, Clone, PartialEq)]
struct Stats {
    nulls: i64,
    defaults: i64,
    distinct: i64,
    min: Option<f64>,
    max: Option<f64>,
    mean: Option<f64>,
    quantiles: Option<Vec<Option<f64>>>,
    min_text: Option<String>,
    max_text: Option<String>,
}

pub(crate) async fn run(ctx: &mut Ctx<'_>) -> Result<Verdict, CheckError> {
    let CheckKind::NullDrift {
        table,
        old,
        new,
        partition_by,
        default_value,
        max_share_increase_pp,
        max_relative_drift,
    } = &ctx.spec.kind
    else {
        return Err(CheckError::Invalid("not a null_drift check".into()));
    };
    ctx.pacer.check()?;
    let rel = relation_sql(table);
    let (old_sql, new_sql) = (column_sql(old), column_sql(new));
    let types = types_of(ctx.client, &rel, &[old_sql.clone(), new_sql.clone()]).await?;
    let limits = Limits {
        numeric: types
            .iter()
            .all(|t| is_numeric_type(t) || is_temporal_type(t)),
        has_default: default_value.is_some(),
        max_pp: *max_share_increase_pp,
        max_rel: *max_relative_drift,
    };
    let part = partition_by
        .as_deref()
        .map(|p| format!("({})::text", column_sql(p)))
        .unwrap_or_else(|| "'all rows'::text".to_string());
    let columns = [
        (old_sql.as_str(), &types[0][..]),
        (new_sql.as_str(), &types[1][..]),
    ];
    let sql = stats_sql(
        &rel,
        &part,
        columns,
        default_value.as_deref(),
        limits.numeric,
    );
    let sql = format!("{}{sql}", crate::sql::OWN_TAG);
    let rows = ctx.ro.query(&sql, &[]).await?;
    if rows.is_empty() {
        return Ok(Verdict {
            outcome: Outcome::Inconclusive,
            summary: format!("{table} has no rows to compare"),
            rows_scanned: 0,
            details: json!({ "partitions": [] }),
        });
    }
    let Partitions {
        total,
        failing,
        passing,
        headlines,
    } = judge_partitions(&rows, &limits);
    let bad = failing.len();
    let mut summary = if bad == 0 {
        format!(
            "{new} matches {old} in {} partition(s), {total} rows (NULL share within {max_share_increase_pp} pp, statistics within {})",
            rows.len(),
            rel_pct(*max_relative_drift)
        )
    } else {
        format!(
            "{bad} of {} partition(s) drift: {}{}",
            rows.len(),
            headlines.join("; "),
            if bad > 3 { "; …" } else { "" }
        )
    };
    let mut partitions = failing;
    partitions.extend(passing);
    partitions.truncate(MAX_LISTED);
    let mut details = json!({
        "rows": total,
        "partitions_total": rows.len(),
        "partitions_drifting": bad,
        "partitions": partitions,
    });
    if let Some(leaves) = Leaves::of(ctx.client, table).await.transpose() {
        let per_leaf = went_null(ctx, leaves, &rel, &old_sql, &new_sql).await;
        leaves::attach(&mut details, &mut summary, per_leaf);
    }
    Ok(Verdict {
        outcome: if bad == 0 {
            Outcome::Pass
        } else {
            Outcome::Fail
        },
        summary,
        rows_scanned: total,
        details,
    })
}

/// Per leaf partition, its rows whose new value is NULL while the old one is not: the drift a
/// leaf shows.
async fn went_null(
    ctx: &Ctx<'_>,
    leaves: Result<Leaves, CheckError>,
    rel: &str,
    old: &str,
    new: &str,
) -> Result<Vec<PartitionResult>, CheckError> {
    let leaves = leaves?;
    let predicate = format!("({new}) IS NULL AND ({old}) IS NOT NULL");
    let counts = leaves.count(&ctx.ro, rel, Picked::Rows(&predicate)).await?;
    Ok(leaves.results(&counts, &counts, |s, _| s.1))
}

/// The partitions judged: failing and passing entries for the details, the first few failures
/// as headlines, and the rows counted.
struct Partitions {
    total: i64,
    failing: Vec<Value>,
    passing: Vec<Value>,
    headlines: Vec<String>,
}

fn judge_partitions(rows: &[tokio_postgres::Row], limits: &Limits) -> Partitions {
    let mut total = 0i64;
    let mut failing = Vec::new();
    let mut passing = Vec::new();
    let mut headlines = Vec::new();
    for r in rows {
        let label: Option<String> = r.get("part");
        let label = label.unwrap_or_else(|| "NULL".into());
        let count: i64 = r.get("rows");
        total += count;
        let o = read_stats(r, "o", limits.numeric);
        let n = read_stats(r, "n", limits.numeric);
        let problems = judge(count, &o, &n, limits);
        let entry = json!({
            "partition": label,
            "rows": count,
            "old": describe(count, &o),
            "new": describe(count, &n),
            "problems": problems,
        });
        if problems.is_empty() {
            passing.push(entry);
        } else {
            if headlines.len() < 3 {
                headlines.push(format!("{label}: {}", problems.join(", ")));
            }
            failing.push(entry);
        }
    }
    Partitions {
        total,
        failing,
        passing,
        headlines,
    }
}

/// How a partition is judged: which statistics exist and how far they may move.
struct Limits {
    numeric: bool,
    has_default: bool,
    max_pp: f64,
    max_rel: f64,
}

/// The grouped statement: per partition, the statistics of the old column (`o_*`) and the new
/// one (`n_*`). `columns` are the (old, new) column expressions with their types.
fn stats_sql(
    rel: &str,
    part: &str,
    columns: [(&str, &str); 2],
    default_value: Option<&str>,
    numeric: bool,
) -> String {
    let as_number = |expr: &str, ty: &str| {
        if is_temporal_type(ty) {
            format!("extract(epoch FROM ({expr}))::float8")
        } else {
            format!("({expr})::float8")
        }
    };
    let per_column = |v: &str| {
        let mut cols = vec![
            format!("count(*) FILTER (WHERE {v} IS NULL)::int8 AS {v}_nulls"),
            match default_value {
                Some(default) => {
                    format!("count(*) FILTER (WHERE {v} = ({default}))::int8 AS {v}_defaults")
                }
                None => format!("0::int8 AS {v}_defaults"),
            },
            format!("count(DISTINCT {v})::int8 AS {v}_distinct"),
            format!("min({v})::text AS {v}_min_text"),
            format!("max({v})::text AS {v}_max_text"),
        ];
        if numeric {
            let num = format!("{v}_num");
            cols.push(format!("min({num}) AS {v}_min"));
            cols.push(format!("max({num}) AS {v}_max"));
            cols.push(format!("avg({num}) AS {v}_mean"));
            cols.push(format!(
                "percentile_cont(ARRAY[{}]::float8[]) WITHIN GROUP (ORDER BY {num}) AS {v}_quantiles",
                QUANTILES.map(|q| q.to_string()).join(", ")
            ));
        }
        cols
    };
    let [(old_sql, old_type), (new_sql, new_type)] = columns;
    let mut inner = vec![
        format!("{part} AS part"),
        format!("{old_sql} AS o"),
        format!("{new_sql} AS n"),
    ];
    if numeric {
        inner.push(format!("{} AS o_num", as_number(old_sql, old_type)));
        inner.push(format!("{} AS n_num", as_number(new_sql, new_type)));
    }
    format!(
        "SELECT part, count(*)::int8 AS rows, {}, {} FROM (SELECT {} FROM {rel}) AS s GROUP BY part ORDER BY part",
        per_column("o").join(", "),
        per_column("n").join(", "),
        inner.join(", "),
    )
}

/// The statistics of column `v` (`o` or `n`) from one row of [`stats_sql`].
fn read_stats(r: &tokio_postgres::Row, v: &str, numeric: bool) -> Stats {
    let col = |name: &str| format!("{v}_{name}");
    let numeric_col = |name: &str| numeric.then(|| col(name));
    Stats {
        nulls: r.get(col("nulls").as_str()),
        defaults: r.get(col("defaults").as_str()),
        distinct: r.get(col("distinct").as_str()),
        min_text: r.get(col("min_text").as_str()),
        max_text: r.get(col("max_text").as_str()),
        min: numeric_col("min").and_then(|c| r.get(c.as_str())),
        max: numeric_col("max").and_then(|c| r.get(c.as_str())),
        mean: numeric_col("mean").and_then(|c| r.get(c.as_str())),
        quantiles: numeric_col("quantiles").and_then(|c| r.get(c.as_str())),
    }
}

fn rel_pct(x: f64) -> String {
    format!("{}%", x * 100.0)
}

fn share_pp(part: i64, whole: i64) -> f64 {
    super::pct(part, whole)
}

fn describe(rows: i64, s: &Stats) -> Value {
    json!({
        "null_share_pct": share_pp(s.nulls, rows),
        "default_share_pct": share_pp(s.defaults, rows),
        "distinct": s.distinct,
        "min": s.min.map(Value::from).unwrap_or_else(|| s.min_text.clone().map(Value::from).unwrap_or(Value::Null)),
        "max": s.max.map(Value::from).unwrap_or_else(|| s.max_text.clone().map(Value::from).unwrap_or(Value::Null)),
        "mean": s.mean,
        "quantiles": s.quantiles.as_ref().map(|q| {
            QUANTILES.iter().zip(q).map(|(p, v)| json!({ "p": p, "value": v })).collect::<Vec<_>>()
        }),
    })
}

/// The problems of one partition (empty when it passes).
fn judge(rows: i64, o: &Stats, n: &Stats, limits: &Limits) -> Vec<String> {
    let Limits {
        numeric,
        has_default,
        max_pp,
        max_rel,
    } = *limits;
    let mut out = Vec::new();
    let null_rise = share_pp(n.nulls, rows) - share_pp(o.nulls, rows);
    if null_rise > max_pp {
        out.push(format!("NULL share +{null_rise:.2} pp"));
    }
    if has_default {
        let rise = share_pp(n.defaults, rows) - share_pp(o.defaults, rows);
        if rise > max_pp {
            out.push(format!("default share +{rise:.2} pp"));
        }
    }
    if drifted(Some(o.distinct as f64), Some(n.distinct as f64), max_rel) {
        out.push(format!("distinct {} → {}", o.distinct, n.distinct));
    }
    if numeric {
        let pairs = [
            ("min", o.min, n.min),
            ("max", o.max, n.max),
            ("mean", o.mean, n.mean),
        ];
        for (name, a, b) in pairs {
            if drifted(a, b, max_rel) {
                out.push(format!("{name} {} → {}", show(a), show(b)));
            }
        }
        let oq = o.quantiles.clone().unwrap_or_default();
        let nq = n.quantiles.clone().unwrap_or_default();
        for (i, p) in QUANTILES.iter().enumerate() {
            let a = oq.get(i).copied().flatten();
            let b = nq.get(i).copied().flatten();
            if drifted(a, b, max_rel) {
                out.push(format!("p{} {} → {}", (p * 100.0) as i64, show(a), show(b)));
            }
        }
    } else {
        if o.min_text != n.min_text {
            out.push(format!("min {:?} → {:?}", o.min_text, n.min_text));
        }
        if o.max_text != n.max_text {
            out.push(format!("max {:?} → {:?}", o.max_text, n.max_text));
        }
    }
    out
}

fn show(v: Option<f64>) -> String {
    v.map(|x| format!("{x}")).unwrap_or_else(|| "NULL".into())
}

/// True when `new` differs from `old` by more than `max_rel` (relative); one side missing is a
/// drift, both missing is not.
fn drifted(old: Option<f64>, new: Option<f64>, max_rel: f64) -> bool {
    match (old, new) {
        (None, None) => false,
        (Some(a), Some(b)) => {
            let scale = a.abs().max(b.abs());
            if scale == 0.0 {
                false
            } else {
                (a - b).abs() / scale > max_rel
            }
        }
        _ => true,
    }
}

#[cfg(test)]
mod tests {
    use super::drifted;

    #[test]
    fn relative_drift() {
        assert!(!drifted(None, None, 0.001));
        assert!(drifted(Some(1.0), None, 0.001));
        assert!(!drifted(Some(100.0), Some(100.05), 0.001));
        assert!(drifted(Some(100.0), Some(100.2), 0.001));
        assert!(!drifted(Some(0.0), Some(0.0), 0.001));
    }
}
