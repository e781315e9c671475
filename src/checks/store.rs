//! `cutover.check_results`: one row per check run, kept as history.

use chrono::{DateTime, Utc};
use serde_json::Value;
use tokio_postgres::{Client, Row};

use super::{CheckError, CheckRecord, Verdict, MAX_LISTED};
use crate::plan::{CheckSpec, Plan};
use crate::Outcome;

/// Largest details document stored, in bytes of JSON; larger lists are cut.
const MAX_DETAILS_BYTES: usize = 64 * 1024;

const COLUMNS: &str = "id, plan_id, check_name, kind, outcome, summary, started_at, duration_ms, \
                       rows_scanned, details, plan_sha256";

pub(crate) async fn insert(
    client: &Client,
    plan: &Plan,
    spec: &CheckSpec,
    verdict: &Verdict,
    started_at: DateTime<Utc>,
    duration_ms: i64,
) -> Result<CheckRecord, CheckError> {
    let details = cap(verdict.details.clone());
    let row = client
        .query_one(
            &format!(
                "INSERT INTO cutover.check_results \
                 (plan_id, check_name, kind, outcome, summary, started_at, duration_ms, \
                  rows_scanned, details, plan_sha256) \
                 VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10) RETURNING {COLUMNS}"
            ),
            &[
                &plan.id(),
                &spec.name,
                &spec.kind.name(),
                &verdict.outcome.as_str(),
                &verdict.summary,
                &started_at,
                &duration_ms,
                &verdict.rows_scanned,
                &details,
                &plan.sha256(),
            ],
        )
        .await?;
    Ok(record(&row))
}

/// The latest result of each check of `plan_id`, by check name.
pub async fn latest(client: &Client, plan_id: &str) -> Result<Vec<CheckRecord>, CheckError> {
    let rows = client
        .query(
            &format!(
                "SELECT DISTINCT ON (check_name) {COLUMNS} FROM cutover.check_results \
                 WHERE plan_id = $1 ORDER BY check_name, id DESC"
            ),
            &[&plan_id],
        )
        .await?;
    Ok(rows.iter().map(record).collect())
}

/// Past results of `plan_id` (only check `name` when given), newest first, at most `limit`.
pub async fn history(
    client: &Client,
    plan_id: &str,
    name: Option<&str>,
    limit: i64,
) -> Result<Vec<CheckRecord>, CheckError> {
    let rows = client
        .query(
            &format!(
                "SELECT {COLUMNS} FROM cutover.check_results \
                 WHERE plan_id = $1 AND ($2::text IS NULL OR check_name = $2) \
                 ORDER BY id DESC LIMIT $3"
            ),
            &[&plan_id, &name, &limit],
        )
        .await?;
    Ok(rows.iter().map(record).collect())
}

fn record(row: &Row) -> CheckRecord {
    CheckRecord {
        id: row.get(0),
        plan_id: row.get(1),
        name: row.get(2),
        kind: row.get(3),
        outcome: Outcome::parse(row.get(4)),
        summary: row.get(5),
        started_at: row.get(6),
        duration_ms: row.get(7),
        rows_scanned: row.get(8),
        details: row.get(9),
        plan_sha256: row.get(10),
    }
}

/// Cuts arrays to [`MAX_LISTED`] entries (recording how many were dropped) and, if the document
/// is still too large, replaces it with a note.
fn cap(details: Value) -> Value {
    let capped = cap_arrays(details);
    let size = serde_json::to_string(&capped).map(|s| s.len()).unwrap_or(0);
    if size > MAX_DETAILS_BYTES {
        serde_json::json!({
            "truncated": format!("details were {size} bytes, over the {MAX_DETAILS_BYTES}-byte cap"),
        })
    } else {
        capped
    }
}

fn cap_arrays(value: Value) -> Value {
    match value {
        Value::Array(items) => {
            Value::Array(items.into_iter().take(MAX_LISTED).map(cap_arrays).collect())
        }
        Value::Object(map) => {
            Value::Object(map.into_iter().map(|(k, v)| (k, cap_arrays(v))).collect())
        }
        other => other,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn caps_lists() {
        let long: Vec<i64> = (0..500).collect();
        let v = cap(serde_json::json!({ "keys": long, "n": 500 }));
        assert_eq!(v["keys"].as_array().unwrap().len(), MAX_LISTED);
        assert_eq!(v["n"], 500);
    }
}
