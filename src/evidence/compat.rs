//! Old-app compatibility: the plan's `[[probes.compatibility.queries]]` (the previous app
//! version's statements) run against the live schema inside a transaction that is rolled back.
//! Every query that fails is a blocker — proof that "the old app version still works".
//!
//! Parameters are given as text and bound server-side (`PREPARE` / `EXECUTE`), so PostgreSQL
//! infers each parameter's type exactly as it would for the app. Sequence values consumed by
//! INSERTs are not returned (sequences are not transactional); rows, triggers' effects and
//! notifications are.

use std::time::Instant;

use super::scratch::Scope;
use super::{Probe, ProbeContext, ProbeFuture, ProbeResult};
use crate::db::describe_error;
use crate::outcome::Outcome;
use crate::plan::CompatQuery;
use crate::sql::{quote_literal, Refused};

const STATEMENT: &str = "cutover_compat_probe";

/// Why an old-app query failed.
#[derive(Debug, thiserror::Error)]
pub enum QueryFailure {
    /// Cutover refused to send it.
    #[error(transparent)]
    Refused(#[from] Refused),
    /// The server rejected it.
    #[error("{}", describe_error(.0))]
    Database(#[source] tokio_postgres::Error),
}

/// What happened to one old-app query.
#[derive(Debug)]
pub struct QueryOutcome {
    /// The query's label.
    pub name: String,
    /// `Ok(rows affected or returned)` or why it failed.
    pub result: Result<u64, QueryFailure>,
    /// Execution time in milliseconds.
    pub millis: f64,
}

/// The compatibility probe.
pub struct CompatibilityProbe;

impl Probe for CompatibilityProbe {
    fn name(&self) -> &'static str {
        "compatibility"
    }

    fn evaluate<'a>(&'a self, ctx: &'a ProbeContext<'a>) -> ProbeFuture<'a> {
        Box::pin(async move {
            let queries = &ctx.plan.spec.probes.compatibility.queries;
            if queries.is_empty() {
                return ProbeResult::inconclusive(
                    "compatibility",
                    "the plan lists no old-app queries ([[probes.compatibility.queries]] name/sql/params): nothing proves the old version still works",
                );
            }
            let settings = &ctx.plan.spec.settings;
            let timeouts = (
                settings.statement_timeout.as_millis(),
                settings.lock_timeout.as_millis(),
            );
            match run_queries(ctx.client, queries, timeouts).await {
                Ok(outcomes) => judge(&outcomes),
                Err(e) => ProbeResult::inconclusive(
                    "compatibility",
                    format!("could not run the old-app queries: {}", describe_error(&e)),
                ),
            }
        })
    }
}

/// Runs every query in its own savepoint of one transaction that is rolled back at the end,
/// under (statement_timeout, lock_timeout) in milliseconds.
pub async fn run_queries(
    client: &tokio_postgres::Client,
    queries: &[CompatQuery],
    timeouts_ms: (u64, u64),
) -> Result<Vec<QueryOutcome>, tokio_postgres::Error> {
    let scope = Scope::enter(client).await?;
    let result = run_in_scope(client, queries, timeouts_ms).await;
    let end = scope.rollback(client).await;
    let outcomes = result?;
    end?;
    Ok(outcomes)
}

async fn run_in_scope(
    client: &tokio_postgres::Client,
    queries: &[CompatQuery],
    (statement_ms, lock_ms): (u64, u64),
) -> Result<Vec<QueryOutcome>, tokio_postgres::Error> {
    client
        .batch_execute(&format!(
            "SET LOCAL statement_timeout = {statement_ms}; SET LOCAL lock_timeout = {lock_ms}"
        ))
        .await?;
    let mut out = Vec::new();
    for q in queries {
        client.batch_execute("SAVEPOINT cutover_compat").await?;
        let started = Instant::now();
        let (prepared, result) = execute(client, q).await;
        let millis = started.elapsed().as_secs_f64() * 1000.0;
        client
            .batch_execute("ROLLBACK TO SAVEPOINT cutover_compat; RELEASE SAVEPOINT cutover_compat")
            .await?;
        // Prepared statements outlive rollbacks: drop ours.
        if prepared {
            client
                .batch_execute(&format!("DEALLOCATE {STATEMENT}"))
                .await?;
        }
        out.push(QueryOutcome {
            name: q.name.clone(),
            result,
            millis,
        });
    }
    Ok(out)
}

/// Prepares and executes one query; returns whether a prepared statement was left behind.
async fn execute(
    client: &tokio_postgres::Client,
    q: &CompatQuery,
) -> (bool, Result<u64, QueryFailure>) {
    let sql = q.sql.trim().trim_end_matches(';');
    if let Err(why) = crate::sql::guard(sql) {
        // Never sent; reported as the query's failure.
        return (false, Err(why.into()));
    }
    // The extended protocol runs exactly one statement: nothing can follow the PREPARE.
    if let Err(e) = client
        .execute(format!("PREPARE {STATEMENT} AS {sql}").as_str(), &[])
        .await
    {
        return (false, Err(QueryFailure::Database(e)));
    }
    let args = if q.params.is_empty() {
        String::new()
    } else {
        let quoted: Vec<String> = q.params.iter().map(|p| quote_literal(p)).collect();
        format!("({})", quoted.join(", "))
    };
    let result = client
        .execute(&format!("EXECUTE {STATEMENT}{args}"), &[])
        .await
        .map_err(QueryFailure::Database);
    (true, result)
}

fn judge(outcomes: &[QueryOutcome]) -> ProbeResult {
    let failed: Vec<&QueryOutcome> = outcomes.iter().filter(|o| o.result.is_err()).collect();
    let evidence = outcomes
        .iter()
        .map(|o| match &o.result {
            Ok(rows) => format!("ok   `{}` — {rows} row(s), {:.1} ms", o.name, o.millis),
            Err(e) => format!("FAIL `{}` — {e}", o.name),
        })
        .chain(std::iter::once(
            "all queries ran in a transaction that was rolled back".to_string(),
        ))
        .collect();
    let (outcome, summary) = if failed.is_empty() {
        (
            Outcome::Pass,
            format!(
                "all {} old-app queries run on the live schema",
                outcomes.len()
            ),
        )
    } else {
        (
            Outcome::Fail,
            format!(
                "{} of {} old-app queries fail on the live schema: {}",
                failed.len(),
                outcomes.len(),
                failed
                    .iter()
                    .map(|o| o.name.as_str())
                    .collect::<Vec<_>>()
                    .join(", ")
            ),
        )
    };
    ProbeResult {
        name: "compatibility".to_string(),
        outcome,
        summary,
        evidence,
    }
}
