//! `cutover.rehearsals`: each rehearsal of a plan's phases on a scratch copy, with its timings.

use chrono::{DateTime, Utc};
use serde::Serialize;
use serde_json::Value;
use tokio_postgres::{Error, GenericClient};

/// A stored rehearsal, without its per-step results.
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct RehearsalRow {
    /// When.
    pub at: DateTime<Utc>,
    /// By.
    pub login: String,
    /// Passed?
    pub ok: bool,
    /// Total ms.
    pub total_ms: f64,
    /// Plan version.
    pub plan_sha256: String,
}

/// A rehearsal to store.
#[derive(Debug, Clone, Copy)]
pub(crate) struct NewRehearsal<'a> {
    /// Plan id.
    pub plan_id: &'a str,
    /// The plan version rehearsed.
    pub plan_sha256: &'a str,
    /// Who ran it.
    pub login: &'a str,
    /// Every step passed.
    pub ok: bool,
    /// Total time of the rehearsed steps.
    pub total_ms: f64,
    /// The per-phase results.
    pub results: &'a Value,
}

/// Stores a rehearsal; returns its id.
pub(crate) async fn insert(c: &impl GenericClient, new: NewRehearsal<'_>) -> Result<i64, Error> {
    Ok(c.query_one(
        "INSERT INTO cutover.rehearsals (plan_id, plan_sha256, login, ok, total_ms, results)
         VALUES ($1, $2, $3, $4, $5, $6) RETURNING id",
        &[
            &new.plan_id,
            &new.plan_sha256,
            &new.login,
            &new.ok,
            &new.total_ms,
            new.results,
        ],
    )
    .await?
    .get("id"))
}

/// Every rehearsal of `plan_id`, oldest first.
pub(crate) async fn all(c: &impl GenericClient, plan_id: &str) -> Result<Vec<RehearsalRow>, Error> {
    let rows = c
        .query(
            "SELECT at, login, ok, total_ms, plan_sha256 FROM cutover.rehearsals WHERE plan_id = $1 ORDER BY id",
            &[&plan_id],
        )
        .await?;
    Ok(rows
        .iter()
        .map(|r| RehearsalRow {
            at: r.get("at"),
            login: r.get("login"),
            ok: r.get("ok"),
            total_ms: r.get("total_ms"),
            plan_sha256: r.get("plan_sha256"),
        })
        .collect())
}
