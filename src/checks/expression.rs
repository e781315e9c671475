//! Expression parity inside one table: the new column must equal the expression computed from
//! the old columns (NULL-safe: `IS DISTINCT FROM`), checked per key range.

use std::time::Instant;

use serde_json::{json, Value};

use super::chunk::Walker;
use super::keys::{column_sql, relation_sql, Key};
use super::{CheckError, Ctx, Verdict, MAX_LISTED};
use crate::plan::CheckKind;
use crate::sql::OWN_TAG;
use crate::Outcome;

pub(crate) async fn run(ctx: &mut Ctx<'_>) -> Result<Verdict, CheckError> {
    let CheckKind::ExpressionParity {
        table,
        key,
        column,
        expression,
        filter,
    } = &ctx.spec.kind
    else {
        return Err(CheckError::Invalid("not an expression-parity check".into()));
    };
    ctx.pacer.check()?;
    let rel = relation_sql(table);
    let key = Key::resolve(ctx.client, &rel, key).await?;
    let col = column_sql(column);
    // Fails early, naming the table, when the column or expression does not exist.
    super::keys::types_of(ctx.client, &rel, &[col.clone(), format!("({expression})")]).await?;
    let filter = filter
        .as_deref()
        .map(|f| format!(" AND ({f})"))
        .unwrap_or_default();
    let mut walker = Walker::start(&ctx.ro, &rel, &key, ctx.chunk_time, 200_000).await?;
    let (mut rows, mut mismatches) = (0i64, 0i64);
    let mut samples: Vec<Value> = Vec::new();
    let mut ranges: Vec<Value> = Vec::new();
    while let Some(range) = walker.next(&ctx.ro).await? {
        let clock = Instant::now();
        let sql = format!(
            "{OWN_TAG}SELECT count(*)::int8 AS n, count(*) FILTER (WHERE bad)::int8 AS bad, \
                    (array_agg(jsonb_build_array(k, new_value, expected)) FILTER (WHERE bad))[1:{MAX_LISTED}] \
                    AS found \
             FROM (SELECT {ktext} AS k, ({col}) IS DISTINCT FROM ({expression}) AS bad, \
                          ({col})::text AS new_value, ({expression})::text AS expected \
                   FROM {rel} WHERE {pred}{filter}) AS chunk",
            ktext = key.text(),
            pred = range.predicate(&key),
        );
        let row = ctx.ro.query_one(&sql, &[]).await?;
        let n: i64 = row.get("n");
        let bad: i64 = row.get("bad");
        rows += n;
        mismatches += bad;
        if bad > 0 {
            ranges.push(json!({ "range": range.label(), "rows": n, "mismatches": bad }));
            let found: Option<Vec<Value>> = row.get("found");
            for s in found.unwrap_or_default() {
                if samples.len() < MAX_LISTED {
                    samples.push(json!({ "key": s[0], "new": s[1], "expected": s[2] }));
                }
            }
        }
        walker.record(n, clock.elapsed());
        ctx.pacer.after_chunk(ctx.client, clock.elapsed()).await?;
    }
    let keys: Vec<String> = samples
        .iter()
        .take(5)
        .map(|s| s["key"].as_str().unwrap_or("").to_string())
        .collect();
    let (outcome, summary) = if mismatches == 0 {
        (
            Outcome::Pass,
            format!("{column} = {expression} on all {rows} rows"),
        )
    } else {
        (
            Outcome::Fail,
            format!(
                "{mismatches} of {rows} rows have {column} ≠ {expression} ({:.3}%), in {} key ranges; e.g. keys {}",
                super::pct(mismatches, rows),
                ranges.len(),
                keys.join(", ")
            ),
        )
    };
    Ok(Verdict {
        outcome,
        summary,
        rows_scanned: rows,
        details: json!({
            "rows": rows,
            "mismatches": mismatches,
            "ranges": ranges,
            "samples": samples,
        }),
    })
}
