//! Sampled record checksum: a reproducible, seeded sample of source keys; each sampled row is
//! hashed on both sides (same hashing as the exact diff) and compared.
//!
//! The sample is the `sample_size` keys with the smallest `hashtextextended(key, seed)` —
//! among a `TABLESAMPLE SYSTEM … REPEATABLE (seed)` block sample when the source is a large
//! table (cheap: only those blocks are read), among all rows otherwise. The same seed on the
//! same data gives the same sample.

use serde_json::json;

use super::keys::Bound;
use super::side::{row_change, sides, DiffSpec, RowData, Side};
use super::{CheckError, Ctx, Verdict, MAX_LISTED};
use crate::plan::CheckKind;
use crate::Outcome;

/// Keys looked up on the target per statement.
const LOOKUP_BATCH: usize = 500;

pub(crate) async fn run(ctx: &mut Ctx<'_>) -> Result<Verdict, CheckError> {
    let CheckKind::SampledChecksum {
        source,
        target,
        key,
        target_key,
        columns,
        target_columns,
        sample_size,
        seed,
    } = &ctx.spec.kind
    else {
        return Err(CheckError::Invalid("not a sampled-checksum check".into()));
    };
    ctx.pacer.check()?;
    let spec = DiffSpec {
        source: source.clone(),
        target: target.clone(),
        key: key.clone(),
        target_key: target_key.clone(),
        columns: columns.clone(),
        target_columns: target_columns.clone(),
    };
    let (src, tgt) = sides(&ctx.ro, &ctx.ro, &spec).await?;
    let n = i64::from(*sample_size).max(1);
    let sample = sample(ctx, &src, n, *seed).await?;
    if sample.is_empty() {
        return Ok(Verdict {
            outcome: Outcome::Inconclusive,
            summary: format!("nothing to sample: {source} returned no rows"),
            rows_scanned: 0,
            details: json!({ "sampled": 0 }),
        });
    }
    let mut missing = Vec::new();
    let mut changed = Vec::new();
    for batch in sample.chunks(LOOKUP_BATCH) {
        let clock = std::time::Instant::now();
        let bounds: Vec<Bound> = batch.iter().map(|(b, _)| b.clone()).collect();
        let found = tgt.ro.run(tgt.rows_for_keys(&bounds)).await?;
        for (_, (key_text, s)) in batch {
            match found.get(key_text) {
                None => missing.push(key_text.clone()),
                Some(t) => changed.extend(row_change(&src, key_text.clone(), s, t)),
            }
        }
        ctx.pacer.after_chunk(ctx.client, clock.elapsed()).await?;
    }
    let sampled = sample.len() as i64;
    let ok = missing.is_empty() && changed.is_empty();
    let summary = if ok {
        format!("{sampled} sampled rows (seed {seed}) are identical in {source} and {target}")
    } else {
        let keys: Vec<String> = missing
            .iter()
            .cloned()
            .chain(changed.iter().map(|c| c.key.clone()))
            .take(5)
            .collect();
        format!(
            "{} of {sampled} sampled rows differ (seed {seed}): {} missing in {target}, {} changed; e.g. keys {}",
            missing.len() + changed.len(),
            missing.len(),
            changed.len(),
            keys.join(", ")
        )
    };
    Ok(Verdict {
        outcome: if ok { Outcome::Pass } else { Outcome::Fail },
        summary,
        rows_scanned: 2 * sampled,
        details: json!({
            "sampled": sampled,
            "seed": seed,
            "missing_count": missing.len(),
            "changed_count": changed.len(),
            "missing": missing.iter().take(MAX_LISTED).collect::<Vec<_>>(),
            "changed": changed.iter().take(MAX_LISTED).collect::<Vec<_>>(),
        }),
    })
}

/// The sampled source rows with their key bounds.
async fn sample(
    ctx: &Ctx<'_>,
    src: &Side<'_>,
    n: i64,
    seed: u64,
) -> Result<Vec<(Bound, (String, RowData))>, CheckError> {
    let row = ctx
        .client
        .query_one(
            &format!(
                "SELECT relkind::text AS relkind, greatest(reltuples, 0)::float8 AS estimate \
                 FROM pg_class WHERE oid = {}::regclass",
                crate::sql::quote_literal(&src.rel)
            ),
            &[],
        )
        .await
        .map_err(|e| src.error(e))?;
    let relkind: String = row.get("relkind");
    let estimate: f64 = row.get("estimate");
    let hash_seed = seed as i64;
    let order = format!("ORDER BY hashtextextended({}, {hash_seed})", src.key.text());
    let width = src.key.exprs.len();
    let select = format!("{}, {}", src.row_select(), src.key.select_texts());
    let ncols = src.col_hashes.len();
    let decode = |rows: Vec<tokio_postgres::Row>| -> Vec<(Bound, (String, RowData))> {
        rows.iter()
            .map(|r| {
                let bound: Bound = (0..width)
                    .map(|i| r.get::<_, String>(2 + 2 * ncols + i))
                    .collect();
                (bound, src.row_data(r))
            })
            .collect()
    };
    let big_table = matches!(relkind.as_str(), "r" | "m" | "p") && estimate > 20.0 * n as f64;
    if big_table {
        let mut pct = (4.0 * n as f64 / estimate * 100.0).clamp(0.0001, 100.0);
        for _ in 0..3 {
            let sql = format!(
                "{}SELECT {select} FROM {} TABLESAMPLE SYSTEM ({pct}) REPEATABLE ({seed}) {order} LIMIT {n}",
                crate::sql::OWN_TAG,
                src.rel,
                seed = seed as f64
            );
            let rows = ctx
                .ro
                .run(async { ctx.client.query(&sql, &[]).await.map_err(|e| src.error(e)) })
                .await?;
            if rows.len() as i64 >= n || pct >= 100.0 {
                return Ok(decode(rows));
            }
            pct = (pct * 4.0).min(100.0);
        }
    }
    let sql = format!(
        "{}SELECT {select} FROM {} {order} LIMIT {n}",
        crate::sql::OWN_TAG,
        src.rel
    );
    let rows = ctx
        .ro
        .run(async { ctx.client.query(&sql, &[]).await.map_err(|e| src.error(e)) })
        .await?;
    Ok(decode(rows))
}
