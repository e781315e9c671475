//! `cutover.check_results` (one row per check run, kept as history) and
//! `cutover.golden_snapshots` (the baseline of each golden query).

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use serde_json::Value;
use tokio_postgres::{Error, GenericClient, Row};

use crate::outcome::Outcome;

/// One stored result of one check.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct CheckRecord {
    /// Row id in `cutover.check_results`.
    pub id: i64,
    /// Plan id.
    pub plan_id: String,
    /// Check name (from the plan).
    pub name: String,
    /// Kind name (`full_diff`, …).
    pub kind: String,
    /// Pass, Fail or Inconclusive.
    pub outcome: Outcome,
    /// One line for humans.
    pub summary: String,
    /// When the check started.
    pub started_at: DateTime<Utc>,
    /// How long it ran, in milliseconds.
    pub duration_ms: i64,
    /// Rows read on all sides.
    pub rows_scanned: i64,
    /// Kind-specific details: differing keys, partitions, statistics (lists capped by the
    /// checks); `{"error": …}` when Inconclusive because of an error.
    pub details: Value,
    /// sha256 of the plan file the check ran under.
    pub plan_sha256: String,
}

/// One leaf partition's share of a check on a partitioned table (`details.leaf_partitions`).
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct PartitionResult {
    /// The leaf (qualified name, quoted where needed); `(no partition)` for target rows that
    /// fall in none of the source's leaves.
    pub partition: String,
    /// Rows of the checked (source) side in it.
    pub source_rows: i64,
    /// Rows of the target side that fall in it (same as `source_rows` for one-table checks).
    pub target_rows: i64,
    /// Rows in it that disagree (missing, extra or changed keys; the count difference for row
    /// counts).
    pub mismatches: i64,
}

impl PartitionResult {
    /// The leaf partitions recorded in a check's details (none for an unpartitioned table).
    pub fn from_details(details: &Value) -> Vec<PartitionResult> {
        details
            .get("leaf_partitions")
            .and_then(|v| serde_json::from_value(v.clone()).ok())
            .unwrap_or_default()
    }
}

impl std::fmt::Display for PartitionResult {
    /// `public.orders_p2: 3 mismatches (250 source rows, 247 target rows)`.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "{}: {} ({} source rows, {} target rows)",
            self.partition,
            match self.mismatches {
                0 => "matches".to_string(),
                1 => "1 mismatch".to_string(),
                n => format!("{n} mismatches"),
            },
            self.source_rows,
            self.target_rows
        )
    }
}

/// A check result to store.
#[derive(Debug, Clone, Copy)]
pub(crate) struct NewResult<'a> {
    /// Plan id.
    pub plan_id: &'a str,
    /// Check name.
    pub name: &'a str,
    /// Kind name.
    pub kind: &'a str,
    /// Verdict.
    pub outcome: Outcome,
    /// One line.
    pub summary: &'a str,
    /// When it started.
    pub started_at: DateTime<Utc>,
    /// How long it ran.
    pub duration_ms: i64,
    /// Rows read.
    pub rows_scanned: i64,
    /// Details, already capped.
    pub details: &'a Value,
    /// The plan version it ran under.
    pub plan_sha256: &'a str,
}

const COLUMNS: &str = "id, plan_id, check_name, kind, outcome, summary, started_at, duration_ms, \
                       rows_scanned, details, plan_sha256";

fn record(row: &Row) -> CheckRecord {
    CheckRecord {
        id: row.get("id"),
        plan_id: row.get("plan_id"),
        name: row.get("check_name"),
        kind: row.get("kind"),
        outcome: Outcome::parse(row.get("outcome")),
        summary: row.get("summary"),
        started_at: row.get("started_at"),
        duration_ms: row.get("duration_ms"),
        rows_scanned: row.get("rows_scanned"),
        details: row.get("details"),
        plan_sha256: row.get("plan_sha256"),
    }
}

/// Stores a result; returns it as stored.
pub(crate) async fn insert(
    c: &impl GenericClient,
    new: NewResult<'_>,
) -> Result<CheckRecord, Error> {
    let row = c
        .query_one(
            &format!(
                "INSERT INTO cutover.check_results \
                 (plan_id, check_name, kind, outcome, summary, started_at, duration_ms, \
                  rows_scanned, details, plan_sha256) \
                 VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10) RETURNING {COLUMNS}"
            ),
            &[
                &new.plan_id,
                &new.name,
                &new.kind,
                &new.outcome.as_str(),
                &new.summary,
                &new.started_at,
                &new.duration_ms,
                &new.rows_scanned,
                new.details,
                &new.plan_sha256,
            ],
        )
        .await?;
    Ok(record(&row))
}

/// The latest result of each check of `plan_id`, by check name.
pub(crate) async fn latest(
    c: &impl GenericClient,
    plan_id: &str,
) -> Result<Vec<CheckRecord>, Error> {
    let rows = c
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
pub(crate) async fn history(
    c: &impl GenericClient,
    plan_id: &str,
    name: Option<&str>,
    limit: i64,
) -> Result<Vec<CheckRecord>, Error> {
    let rows = c
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

/// One check run without its details.
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct CheckRun {
    /// Check name.
    pub name: String,
    /// Kind.
    pub kind: String,
    /// Verdict.
    pub outcome: Outcome,
    /// One line.
    pub summary: String,
    /// Started.
    pub started_at: DateTime<Utc>,
    /// Duration, ms.
    pub duration_ms: i64,
}

const RUN_COLUMNS: &str = "check_name, kind, outcome, summary, started_at, duration_ms";

fn run(r: &Row) -> CheckRun {
    CheckRun {
        name: r.get("check_name"),
        kind: r.get("kind"),
        outcome: Outcome::parse(r.get("outcome")),
        summary: r.get("summary"),
        started_at: r.get("started_at"),
        duration_ms: r.get("duration_ms"),
    }
}

/// Every run of `plan_id`'s checks, oldest first.
pub(crate) async fn runs(c: &impl GenericClient, plan_id: &str) -> Result<Vec<CheckRun>, Error> {
    let rows = c
        .query(
            &format!(
                "SELECT {RUN_COLUMNS} FROM cutover.check_results WHERE plan_id = $1 ORDER BY id"
            ),
            &[&plan_id],
        )
        .await?;
    Ok(rows.iter().map(run).collect())
}

/// The last `per_check` runs of each check of `plan_id`, by check name, oldest first.
pub(crate) async fn recent_runs(
    c: &impl GenericClient,
    plan_id: &str,
    per_check: i64,
) -> Result<Vec<CheckRun>, Error> {
    let rows = c
        .query(
            &format!(
                "SELECT {RUN_COLUMNS} FROM ( \
                   SELECT *, row_number() OVER (PARTITION BY check_name ORDER BY id DESC) AS nth \
                   FROM cutover.check_results WHERE plan_id = $1) r \
                 WHERE nth <= $2 ORDER BY check_name, id"
            ),
            &[&plan_id, &per_check],
        )
        .await?;
    Ok(rows.iter().map(run).collect())
}

/// The latest run of each check of `plan_id`, by check name.
pub(crate) async fn latest_runs(
    c: &impl GenericClient,
    plan_id: &str,
) -> Result<Vec<CheckRun>, Error> {
    let rows = c
        .query(
            &format!(
                "SELECT DISTINCT ON (check_name) {RUN_COLUMNS} FROM cutover.check_results \
                 WHERE plan_id = $1 ORDER BY check_name, id DESC"
            ),
            &[&plan_id],
        )
        .await?;
    Ok(rows.iter().map(run).collect())
}

/// How many runs of each check of `plan_id` ended with each outcome: (check, outcome, runs).
pub(crate) async fn outcome_counts(
    c: &impl GenericClient,
    plan_id: &str,
) -> Result<Vec<(String, Outcome, f64)>, Error> {
    super::outcome_counts(c, "SELECT check_name AS name, outcome, count(*)::float8 AS n FROM cutover.check_results WHERE plan_id = $1 GROUP BY 1, 2", plan_id).await
}

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

/// The baseline of check `name` for the query text whose sha256 is `query_sha256`.
pub(crate) async fn golden(
    c: &impl GenericClient,
    plan_id: &str,
    name: &str,
    query_sha256: &str,
) -> Result<Option<GoldenSnapshot>, Error> {
    let row = c
        .query_opt(
            "SELECT row_count, checksum, taken_at FROM cutover.golden_snapshots \
             WHERE plan_id = $1 AND check_name = $2 AND query_sha256 = $3",
            &[&plan_id, &name, &query_sha256],
        )
        .await?;
    Ok(row.map(|r| GoldenSnapshot {
        check_name: name.to_string(),
        row_count: r.get("row_count"),
        checksum: r.get("checksum"),
        taken_at: r.get("taken_at"),
    }))
}

/// Stores (or retakes) the baseline of check `name` for the query text `query_sha256`.
pub(crate) async fn store_golden(
    c: &impl GenericClient,
    plan_id: &str,
    name: &str,
    query_sha256: &str,
    row_count: i64,
    checksum: &str,
) -> Result<GoldenSnapshot, Error> {
    let row = c
        .query_one(
            "INSERT INTO cutover.golden_snapshots \
             (plan_id, check_name, query_sha256, row_count, checksum) \
             VALUES ($1, $2, $3, $4, $5) \
             ON CONFLICT (plan_id, check_name, query_sha256) DO UPDATE \
             SET row_count = EXCLUDED.row_count, checksum = EXCLUDED.checksum, \
                 taken_at = clock_timestamp() \
             RETURNING taken_at",
            &[&plan_id, &name, &query_sha256, &row_count, &checksum],
        )
        .await?;
    Ok(GoldenSnapshot {
        check_name: name.to_string(),
        row_count,
        checksum: checksum.to_string(),
        taken_at: row.get("taken_at"),
    })
}
