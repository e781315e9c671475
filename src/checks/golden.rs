//! Golden queries: a query's result is snapshotted (row count + an order-insensitive checksum)
//! before expand and compared after, proving historical queries still return what they did.

use serde_json::json;
use sha2::{Digest, Sha256};
use tokio_postgres::Client;

use super::{CheckError, Ctx, GoldenSnapshot, Verdict};
use crate::control::checks;
use crate::plan::{CheckKind, Plan};
use crate::read_only::ReadOnly;
use crate::sql::OWN_TAG;
use crate::Outcome;

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
        let ro = ReadOnly::own(client, format!("check `{}` query", spec.name));
        let (rows, checksum) = measure(&ro, query).await?;
        let taken =
            checks::store_golden(client, plan.id(), &spec.name, &sha, rows, &checksum).await?;
        tracing::info!(check = %spec.name, rows, "golden query baseline taken");
        out.push(taken);
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
    let (rows, checksum) = measure(
        &ctx.ro.named(format!("check `{}` query", ctx.spec.name)),
        query,
    )
    .await?;
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
    Ok(checks::golden(client, plan_id, name, sha).await?)
}

/// Row count and order-insensitive checksum of a query's result.
async fn measure(ro: &ReadOnly<'_>, query: &str) -> Result<(i64, String), CheckError> {
    let body = query.trim().trim_end_matches(';').trim_end();
    let sql = format!(
        "{OWN_TAG}SELECT count(*)::int8 AS row_count, \
         coalesce(sum(hashtextextended(golden::text, 0)), 0)::text AS checksum \
         FROM ({body}) AS golden"
    );
    let row = ro.query_one(&sql, &[]).await?;
    Ok((row.get("row_count"), row.get("checksum")))
}
