//! Golden queries: a query's result is snapshotted (row count + an order-insensitive checksum)
//! before expand and compared after, proving historical queries still return what they did.

use chrono::{DateTime, Utc};
use serde::Serialize;
use serde_json::json;
use sha2::{Digest, Sha256};
use tokio_postgres::Client;

use super::{CheckError, Ctx, Verdict};
use crate::plan::{CheckKind, Plan};
use crate::Outcome;

/// A stored baseline of one golden query.
#[derive(Debug, Clone, Serialize, PartialEq, Eq)]
pub struct GoldenSnapshot {
    /// Check name.
    pub check_name: String,
    /// Rows the query returned.
    pub row_count: i64,
    /// Sum of the rows' 64-bit hashes (order-insensitive), as text.
    pub checksum: String,
    /// When it was taken.
    pub taken_at: DateTime<Utc>,
}

/// Takes the baseline of every golden query of `plan` that has none yet for its current text
/// (or of all of them when `retake`), and returns the baselines now stored.
pub async fn snapshot_golden(
    client: &Client,
    plan: &Plan,
    retake: bool,
) -> Result<Vec<GoldenSnapshot>, CheckError> {
    let mut out = Vec::new();
    for spec in &plan.spec.checks {
        let CheckKind::GoldenQuery { query } = &spec.kind else {
            continue;
        };
        let sha = query_sha(query);
        if !retake {
            if let Some(s) = stored(client, plan.id(), &spec.name, &sha).await? {
                out.push(s);
                continue;
            }
        }
        let (rows, checksum) = measure(client, query)
            .await
            .map_err(|e| CheckError::Db(format!("golden query `{}`: {e}", spec.name)))?;
        let row = client
            .query_one(
                "INSERT INTO cutover.golden_snapshots \
                 (plan_id, check_name, query_sha256, row_count, checksum) \
                 VALUES ($1, $2, $3, $4, $5) \
                 ON CONFLICT (plan_id, check_name, query_sha256) DO UPDATE \
                 SET row_count = EXCLUDED.row_count, checksum = EXCLUDED.checksum, \
                     taken_at = clock_timestamp() \
                 RETURNING taken_at",
                &[&plan.id(), &spec.name, &sha, &rows, &checksum],
            )
            .await?;
        tracing::info!(check = %spec.name, rows, "golden query baseline taken");
        out.push(GoldenSnapshot {
            check_name: spec.name.clone(),
            row_count: rows,
            checksum,
            taken_at: row.get(0),
        });
    }
    Ok(out)
}

pub(crate) async fn run(ctx: &mut Ctx<'_>) -> Result<Verdict, CheckError> {
    let CheckKind::GoldenQuery { query } = &ctx.spec.kind else {
        return Err(CheckError::Invalid("not a golden query check".into()));
    };
    ctx.pacer.check()?;
    let sha = query_sha(query);
    let baseline = stored(ctx.client, ctx.plan.id(), &ctx.spec.name, &sha).await?;
    let (rows, checksum) = measure(ctx.client, query).await?;
    let Some(base) = baseline else {
        return Ok(Verdict {
            outcome: Outcome::Inconclusive,
            summary: format!(
                "no baseline: the query was never snapshotted (taken before expand, or with \
                 `cutover check --baseline`); it now returns {rows} rows"
            ),
            rows_scanned: rows,
            details: json!({ "baseline": null, "now": { "rows": rows, "checksum": checksum } }),
        });
    };
    let same = base.row_count == rows && base.checksum == checksum;
    let summary = if same {
        format!(
            "same result as the baseline of {} ({rows} rows)",
            base.taken_at.format("%Y-%m-%d %H:%M:%S UTC")
        )
    } else if base.row_count != rows {
        format!(
            "result changed: {rows} rows now vs {} at the baseline",
            base.row_count
        )
    } else {
        format!("result changed: same {rows} rows but different content (checksum)")
    };
    Ok(Verdict {
        outcome: if same { Outcome::Pass } else { Outcome::Fail },
        summary,
        rows_scanned: rows,
        details: json!({
            "baseline": { "rows": base.row_count, "checksum": base.checksum, "taken_at": base.taken_at },
            "now": { "rows": rows, "checksum": checksum },
        }),
    })
}

fn query_sha(query: &str) -> String {
    hex::encode(Sha256::digest(query.trim().as_bytes()))
}

async fn stored(
    client: &Client,
    plan_id: &str,
    name: &str,
    sha: &str,
) -> Result<Option<GoldenSnapshot>, CheckError> {
    let row = client
        .query_opt(
            "SELECT row_count, checksum, taken_at FROM cutover.golden_snapshots \
             WHERE plan_id = $1 AND check_name = $2 AND query_sha256 = $3",
            &[&plan_id, &name, &sha],
        )
        .await?;
    Ok(row.map(|r| GoldenSnapshot {
        check_name: name.to_string(),
        row_count: r.get(0),
        checksum: r.get(1),
        taken_at: r.get(2),
    }))
}

/// Row count and order-insensitive checksum of a query's result.
async fn measure(client: &Client, query: &str) -> Result<(i64, String), CheckError> {
    let body = query.trim().trim_end_matches(';').trim_end();
    let sql = format!(
        "SELECT count(*)::int8, coalesce(sum(hashtextextended(golden::text, 0)), 0)::text \
         FROM ({body}) AS golden"
    );
    let row = client.query_one(&sql, &[]).await?;
    Ok((row.get(0), row.get(1)))
}
