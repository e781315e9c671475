//! Storing check results (details capped) and reading them back, through
//! [`crate::control::checks`].

use chrono::{DateTime, Utc};
use serde_json::Value;
use tokio_postgres::Client;

use super::{CheckError, CheckRecord, Verdict, MAX_LISTED};
use crate::control::checks;
use crate::plan::{CheckSpec, Plan};

/// Largest details document stored, in bytes of JSON; larger lists are cut.
const MAX_DETAILS_BYTES: usize = 64 * 1024;

pub(crate) async fn insert(
    client: &Client,
    plan: &Plan,
    spec: &CheckSpec,
    verdict: &Verdict,
    started_at: DateTime<Utc>,
    duration_ms: i64,
) -> Result<CheckRecord, CheckError> {
    let details = cap(verdict.details.clone());
    let sha = plan.sha256();
    let new = checks::NewResult {
        plan_id: plan.id(),
        name: &spec.name,
        kind: spec.kind.name(),
        outcome: verdict.outcome,
        summary: &verdict.summary,
        started_at,
        duration_ms,
        rows_scanned: verdict.rows_scanned,
        details: &details,
        plan_sha256: &sha,
    };
    Ok(checks::insert(client, new).await?)
}

/// The latest result of each check of `plan_id`, by check name.
pub async fn latest(client: &Client, plan_id: &str) -> Result<Vec<CheckRecord>, CheckError> {
    Ok(checks::latest(client, plan_id).await?)
}

/// Past results of `plan_id` (only check `name` when given), newest first, at most `limit`.
pub async fn history(
    client: &Client,
    plan_id: &str,
    name: Option<&str>,
    limit: i64,
) -> Result<Vec<CheckRecord>, CheckError> {
    Ok(checks::history(client, plan_id, name, limit).await?)
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
