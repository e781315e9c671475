//! Health snapshots of the database: transaction and deadlock counters, statement statistics
//! for the migrated tables, lock waiters, replication lag, index scans. One is stored as the
//! baseline just before the read switch; the error budget and the hidden-reader census compare
//! the present against it.

use std::collections::BTreeMap;

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use tokio_postgres::Client;

use super::scratch;
use crate::control::own_transactions;
use crate::db::describe_error;
use crate::db::tally::Counts;
use crate::plan::{Phase, Plan};
use crate::read_only::{ReadOnly, ReadOnlyError};
use crate::sql::quote_qualified;

/// Cumulative statistics of one normalized statement (`pg_stat_statements`).
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct StatementStat {
    /// Calls so far.
    pub calls: i64,
    /// Total execution time so far, in ms.
    pub total_exec_ms: f64,
    /// The statement text (truncated).
    pub query: String,
}

/// A point-in-time reading of the database's health counters.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct Snapshot {
    /// When it was taken (server clock).
    pub taken_at: DateTime<Utc>,
    /// `pg_stat_database.xact_commit` of the current database.
    pub xact_commit: i64,
    /// `pg_stat_database.xact_rollback`.
    pub xact_rollback: i64,
    /// `pg_stat_database.deadlocks`.
    pub deadlocks: i64,
    /// Statements touching the plan's tables, by queryid; `Err` says why they are unavailable.
    pub statements: Result<BTreeMap<String, StatementStat>, String>,
    /// Sessions waiting on a lock in this database.
    pub lock_waiters: i64,
    /// Maximum replay lag of any standby in seconds (`None`: no standby).
    pub replay_lag_s: Option<f64>,
    /// `idx_scan` of each index on the plan's tables, by qualified index name.
    pub index_scans: BTreeMap<String, i64>,
    /// The plan's `metric_query` value, if configured and readable.
    pub metric: Option<f64>,
    /// Why the configured `metric_query` gave no value (failed, refused for writing, NULL).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub metric_error: Option<String>,
    /// Cutover's own share of the transaction and deadlock counters at that moment (`None` in
    /// baselines stored before Cutover counted its own transactions).
    #[serde(default)]
    pub cutover: Option<OwnShare>,
}

/// Cutover's own transactions in the database's counters (see [`crate::db::tally`]).
#[derive(Debug, Clone, Copy, Serialize, Deserialize, PartialEq)]
pub struct OwnShare {
    /// Every Cutover process's commits, rollbacks and deadlocks so far.
    pub counts: Counts,
    /// How many other Cutover processes had recorded counts.
    pub other_processes: i64,
}

/// Makes this session's statistics visible to others before a snapshot: PostgreSQL 15
/// publishes a session's counters when it goes idle, at most once a second and sometimes much
/// later; `pg_stat_force_next_flush()` makes the next idle moment publish them. Without effect
/// when the caller is inside a transaction, or before PostgreSQL 15.
pub async fn publish_own_statistics(client: &Client) -> Result<(), tokio_postgres::Error> {
    let scope = scratch::Scope::enter(client).await?;
    let _ = scratch::optional_query(client, "SELECT pg_stat_force_next_flush()", &[]).await;
    scope.rollback(client).await
}

/// How to make `pg_stat_statements` available.
pub const ENABLE_PG_STAT_STATEMENTS: &str = "add pg_stat_statements to shared_preload_libraries in postgresql.conf, restart the server, then run CREATE EXTENSION pg_stat_statements in this database";

/// Tables the plan migrates: the backfill table and the tables of legacy and parity columns.
pub fn plan_tables(plan: &Plan) -> Vec<String> {
    let mut tables: Vec<String> = Vec::new();
    if let Some(b) = &plan.spec.backfill {
        tables.push(b.table.clone());
    }
    for c in &plan.spec.probes.hidden_readers.columns {
        if let Some((t, _)) = c.rsplit_once('.') {
            tables.push(t.to_string());
        }
    }
    tables.sort();
    tables.dedup();
    tables
}

/// The unqualified name of a possibly qualified table.
pub fn bare(table: &str) -> &str {
    table.rsplit('.').next().unwrap_or(table)
}

/// Reads a snapshot, with Cutover's own share of the counters read at the same moment. Must be
/// called inside a [`scratch::Scope`] (optional parts use savepoints); call
/// [`publish_own_statistics`] before opening that scope.
pub async fn capture(client: &Client, plan: &Plan) -> Result<Snapshot, tokio_postgres::Error> {
    client
        .batch_execute("SELECT pg_stat_clear_snapshot()")
        .await?;
    let db = client
        .query_one(
            "SELECT clock_timestamp() AS taken_at, xact_commit, xact_rollback, deadlocks
               FROM pg_stat_database WHERE datname = current_database()",
            &[],
        )
        .await?;
    // The reading checks first that its table is there and readable, so only a broken
    // connection fails it (and the next statement reports that); without it nothing is left out.
    let cutover = match own_transactions::share(client).await {
        Ok(s) => Some(OwnShare {
            counts: s.counts,
            other_processes: s.other_processes,
        }),
        Err(e) => {
            tracing::warn!(target: "evidence", "Cutover's own transactions unknown: {e}");
            None
        }
    };
    let waiters = client
        .query_one(
            "SELECT count(*) AS lock_waiters FROM pg_stat_activity
              WHERE datname = current_database() AND wait_event_type = 'Lock'",
            &[],
        )
        .await?;
    let lag = scratch::optional_query(
        client,
        "SELECT max(extract(epoch FROM replay_lag))::float8 AS lag FROM pg_stat_replication",
        &[],
    )
    .await
    .ok()
    .and_then(|rows| rows.first().and_then(|r| r.get::<_, Option<f64>>("lag")));
    let tables = plan_tables(plan);
    let qualified: Vec<String> = tables.iter().map(|t| quote_qualified(t)).collect();
    let index_scans = scratch::optional_query(
        client,
        "SELECT s.indexrelid::regclass::text AS index, s.idx_scan
           FROM pg_stat_user_indexes s
          WHERE s.relid = ANY (SELECT to_regclass(t) FROM unnest($1::text[]) t)",
        &[&qualified],
    )
    .await
    .map(|rows| {
        rows.iter()
            .map(|r| (r.get("index"), r.get("idx_scan")))
            .collect()
    })
    .unwrap_or_default();
    let statements = statements(client, plan, &tables).await;
    let (metric, metric_error) = match &plan.spec.probes.error_budget.metric_query {
        Some(sql) => match metric_value(client, sql).await {
            Ok(v) => (Some(v), None),
            Err(e) => (None, Some(e.to_string())),
        },
        None => (None, None),
    };
    Ok(Snapshot {
        taken_at: db.get("taken_at"),
        xact_commit: db.get("xact_commit"),
        xact_rollback: db.get("xact_rollback"),
        deadlocks: db.get("deadlocks"),
        statements,
        lock_waiters: waiters.get("lock_waiters"),
        replay_lag_s: lag,
        index_scans,
        metric,
        metric_error,
        cutover,
    })
}

/// The app's data statements mentioning the plan's tables (Cutover's own are left out).
async fn statements(
    client: &Client,
    plan: &Plan,
    tables: &[String],
) -> Result<BTreeMap<String, StatementStat>, String> {
    let words: Vec<String> = tables.iter().map(|t| bare(t).to_string()).collect();
    let pattern = words
        .iter()
        .map(|w| word_regex(w))
        .collect::<Vec<_>>()
        .join("|");
    if pattern.is_empty() {
        return Ok(BTreeMap::new());
    }
    let rows = scratch::optional_query(
        client,
        "SELECT queryid::text AS queryid, calls, total_exec_time, left(query, 300) AS query
           FROM pg_stat_statements
          WHERE dbid = (SELECT oid FROM pg_database WHERE datname = current_database())
            AND query ~* $1 AND query !~* 'cutover'",
        &[&pattern],
    )
    .await
    .map_err(|e| {
        format!(
            "pg_stat_statements is not available ({}); to enable it: {ENABLE_PG_STAT_STATEMENTS}",
            describe_error(&e)
        )
    })?;
    let own = own_shapes(plan);
    Ok(rows
        .iter()
        .filter(|r| is_app_statement(r.get("query"), &own))
        .map(|r| {
            (
                r.get::<_, String>("queryid"),
                StatementStat {
                    calls: r.get("calls"),
                    total_exec_ms: r.get("total_exec_time"),
                    query: r.get("query"),
                },
            )
        })
        .collect())
}

/// Normalized shapes of the SQL Cutover itself runs for this plan (backfill assignments and
/// predicate, check expressions and queries), so its own statements are not mistaken for the
/// app's. Shapes shorter than 16 characters (e.g. `balance*?`) are too generic: excluding them
/// could hide a real reader, and a missed reader is worse than a false alarm.
pub fn own_shapes(plan: &Plan) -> Vec<String> {
    use crate::plan::CheckKind;
    let mut texts: Vec<&str> = Vec::new();
    if let Some(b) = &plan.spec.backfill {
        texts.push(&b.pending);
        texts.extend(b.set.values().map(String::as_str));
        texts.extend(b.columns.values().map(String::as_str));
    }
    for c in &plan.spec.checks {
        match &c.kind {
            CheckKind::ExpressionParity { expression, .. } => texts.push(expression),
            CheckKind::NullDrift { old, new, .. } => {
                texts.push(old);
                texts.push(new);
            }
            CheckKind::Invariant { sql, .. } => texts.push(sql),
            CheckKind::GoldenQuery { query } => texts.push(query),
            CheckKind::RowCountParity { .. }
            | CheckKind::SampledChecksum { .. }
            | CheckKind::FullDiff { .. } => {}
        }
    }
    texts
        .into_iter()
        .map(shape)
        .filter(|s| s.len() >= 16)
        .collect()
}

/// Lower case, no whitespace, every literal and `$n` placeholder replaced by `?` (the way
/// `pg_stat_statements` normalizes constants, so a plan expression matches its recorded text).
pub fn shape(sql: &str) -> String {
    let mut out = String::new();
    let mut chars = sql.chars().peekable();
    while let Some(c) = chars.next() {
        if c.is_whitespace() {
            continue;
        }
        if c == '\'' {
            for n in chars.by_ref() {
                if n == '\'' {
                    break;
                }
            }
            out.push('?');
        } else if c == '$'
            || c.is_ascii_digit() && !out.ends_with(|p: char| p.is_alphanumeric() || p == '_')
        {
            while chars
                .peek()
                .is_some_and(|n| n.is_ascii_digit() || *n == '.')
            {
                chars.next();
            }
            out.push('?');
        } else {
            out.extend(c.to_lowercase());
        }
    }
    out
}

/// True for the app's data statements (not DDL, not Cutover's own).
pub fn is_app_statement(query: &str, own: &[String]) -> bool {
    let first = strip_comments(query)
        .split(|c: char| !c.is_alphanumeric())
        .find(|w| !w.is_empty())
        .unwrap_or("")
        .to_uppercase();
    let dml = matches!(
        first.as_str(),
        "SELECT" | "INSERT" | "UPDATE" | "DELETE" | "WITH" | "MERGE" | "COPY" | "TABLE" | "VALUES"
    );
    let shaped = shape(query);
    dml && !reads_catalog(&shaped) && !own.iter().any(|o| shaped.contains(o.as_str()))
}

/// Statements that also read the system catalogs: Cutover's check and backfill planners size
/// their work from `pg_class` in the same statement; an application's data statements do not.
fn reads_catalog(shaped: &str) -> bool {
    ["pg_class", "pg_catalog.", "reltuples", "::regclass"]
        .iter()
        .any(|w| shaped.contains(w))
}

fn strip_comments(sql: &str) -> &str {
    let mut rest = sql.trim_start();
    loop {
        if let Some(after) = rest.strip_prefix("--") {
            rest = after.split_once('\n').map_or("", |(_, r)| r).trim_start();
        } else if let Some(after) = rest.strip_prefix("/*") {
            rest = after.split_once("*/").map_or("", |(_, r)| r).trim_start();
        } else {
            return rest;
        }
    }
}

/// A PostgreSQL regular expression matching `word` as a whole word, case-insensitively.
pub fn word_regex(word: &str) -> String {
    let escaped: String = word
        .chars()
        .flat_map(|c| {
            if c.is_alphanumeric() || c == '_' {
                vec![c]
            } else {
                vec!['\\', c]
            }
        })
        .collect();
    format!("\\m{escaped}\\M")
}

/// Why the plan's metric query gave no number.
#[derive(Debug, thiserror::Error)]
pub enum MetricError {
    /// The query failed or was refused.
    #[error(transparent)]
    Query(#[from] ReadOnlyError),
    /// No row, or a NULL.
    #[error("the metric query returned no value")]
    NoValue,
}

/// Runs the plan's metric query (one row, one numeric column).
pub async fn metric_value(client: &Client, sql: &str) -> Result<f64, MetricError> {
    let rows = ReadOnly::nested(client, "probes.error_budget.metric_query")
        .query(&format!("SELECT ({sql})::float8 AS value"), &[])
        .await?;
    rows.first()
        .and_then(|r| r.get::<_, Option<f64>>("value"))
        .ok_or(MetricError::NoValue)
}

/// Stores `snap` as the baseline taken before `phase`.
pub async fn store(
    client: &Client,
    plan: &Plan,
    phase: Phase,
    snap: &Snapshot,
) -> Result<(), tokio_postgres::Error> {
    let json = serde_json::to_value(snap).unwrap_or_default();
    crate::control::baselines::store(client, plan.id(), phase, &json).await
}

/// The latest baseline taken before `phase`, if any.
pub async fn latest(
    client: &Client,
    plan_id: &str,
    phase: Phase,
) -> Result<Option<Snapshot>, tokio_postgres::Error> {
    let value = crate::control::baselines::latest(client, plan_id, phase).await?;
    Ok(value.and_then(|v| serde_json::from_value(v).ok()))
}

/// When `phase` was applied (its latest successful application), if it is applied now.
pub async fn applied_at(
    client: &Client,
    plan_id: &str,
    phase: Phase,
) -> Result<Option<DateTime<Utc>>, tokio_postgres::Error> {
    crate::control::phases::applied_at(client, plan_id, phase).await
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn shapes_match_normalized_statements() {
        let own = vec![shape("round(balance * 100)::bigint")];
        assert!(!is_app_statement(
            "SELECT count(*) FROM public.accounts WHERE balance_cents IS DISTINCT FROM round(balance * $1)::bigint",
            &own
        ));
        assert!(is_app_statement(
            "/* app */ SELECT balance FROM public.accounts WHERE id = $1",
            &own
        ));
        assert!(!is_app_statement(
            "CREATE INDEX i ON public.accounts (balance)",
            &own
        ));
        assert!(!is_app_statement(
            "SELECT min(\"id\")::int8, (SELECT greatest(reltuples, $1)::float8 FROM pg_class WHERE oid = $2::regclass) FROM public.accounts",
            &own
        ));
    }
}
