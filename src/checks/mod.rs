//! Verification: parity by partition, expression parity, sampled checksums, the exact diff,
//! NULL/distribution drift, golden queries and invariants; and, before anything runs, the plan
//! against the live catalog ([`catalog`], `cutover validate`).
//!
//! Every check kind of [`crate::plan::CheckKind`] is run by [`run`], which stores one row per
//! check in `cutover.check_results` (the history kept for the contract-phase archive) and returns
//! the [`CheckRecord`]s. The engine's gates read that table (latest row per check); the TUI's
//! parity pane and `cutover check` read it through [`latest`] and [`history`].
//!
//! Checks that scan tables walk the key in short, adaptively sized chunks (each its own
//! statement, so no snapshot is held for long), pause between chunks when the plan's heavy-work
//! window closes or the database is busy, and stop when cancelled. Each statement runs under the
//! check's `timeout` (or the plan's `statement_timeout`). A check that errors, is cancelled or
//! cannot run is [`Outcome::Inconclusive`] with the reason — never Pass.
//!
//! A check changes nothing: every statement that carries plan SQL or reads the plan's relations
//! runs through [`ReadOnly`] (a read-only transaction, always rolled back). A check whose SQL
//! tries to write — say a function called from a golden query that inserts — is refused by the
//! server, and the check is Inconclusive with that reason: the condition could not be measured,
//! which blocks a gate like Fail.

pub mod catalog;
mod chunk;
pub mod diff;
mod drift;
mod expression;
mod golden;
mod invariant;
mod keys;
mod leaves;
mod pace;
mod partition_key;
mod row_count;
mod sampled;
mod side;
mod store;

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use chrono::Utc;
use serde_json::{json, Value};
use tokio_postgres::Client;

use crate::db::describe_error;
use crate::plan::{CheckKind, CheckSpec, Phase, Plan};
use crate::read_only::{ReadOnly, ReadOnlyError};
use crate::Outcome;

pub use crate::control::checks::{CheckRecord, GoldenSnapshot, PartitionResult};
pub use golden::snapshot_golden;
pub use store::{history, latest};

/// How many differing keys, partitions or samples a result lists in its details.
pub const MAX_LISTED: usize = 50;

/// Errors of the checks API itself (running a check that fails or errors is not an error: it
/// is a Fail or Inconclusive record).
#[derive(Debug, thiserror::Error)]
pub enum CheckError {
    /// A statement failed.
    #[error("{0}")]
    Db(String),
    /// `--name` named no check of the plan.
    #[error("plan `{plan}` has no check named `{name}` (defined: {known})")]
    UnknownCheck {
        /// Plan id.
        plan: String,
        /// Requested name.
        name: String,
        /// Defined names.
        known: String,
    },
    /// The run was cancelled.
    #[error("cancelled")]
    Cancelled,
    /// Heavy work may not run now (window, freeze, busy database).
    #[error("paused: {0}")]
    Blocked(String),
    /// The check's definition cannot be run as written.
    #[error("{0}")]
    Invalid(String),
    /// The login may not run checks (authorization matrix, anchored roster).
    #[error("refused: {0}")]
    Refused(String),
}

impl From<crate::control::ControlError> for CheckError {
    fn from(e: crate::control::ControlError) -> Self {
        match e {
            crate::control::ControlError::Refused(why) => CheckError::Refused(why.to_string()),
            crate::control::ControlError::Db(e) => CheckError::Db(e.to_string()),
        }
    }
}

impl From<ReadOnlyError> for CheckError {
    fn from(e: ReadOnlyError) -> Self {
        CheckError::Db(e.to_string())
    }
}

impl From<tokio_postgres::Error> for CheckError {
    fn from(e: tokio_postgres::Error) -> Self {
        CheckError::Db(describe_error(&e))
    }
}

/// A cancellation flag shared between the caller (TUI key, Ctrl-C) and a running check.
#[derive(Debug, Clone, Default)]
pub struct Cancel(Arc<AtomicBool>);

impl Cancel {
    /// A fresh, not-cancelled flag.
    pub fn new() -> Cancel {
        Cancel::default()
    }

    /// Asks the running check to stop after its current statement.
    pub fn cancel(&self) {
        self.0.store(true, Ordering::SeqCst);
    }

    /// True once [`Cancel::cancel`] was called.
    pub fn is_cancelled(&self) -> bool {
        self.0.load(Ordering::SeqCst)
    }
}

/// Tuning of a run. [`RunOptions::default`] is what `cutover check` and the worker use.
#[derive(Debug, Clone)]
pub struct RunOptions {
    /// Cancellation flag, checked between chunks.
    pub cancel: Cancel,
    /// Target duration of one chunk statement; chunk sizes adapt toward it.
    pub chunk_time: Duration,
    /// Sleep this fraction of each chunk's duration after it (0 = no pause), to leave room for
    /// production traffic.
    pub nice_ratio: f64,
    /// When set, the exact diff reads the target on a second connection to this server, so
    /// both sides are scanned concurrently (about twice as fast on an idle server, twice the
    /// load while it runs). `cutover check` sets it; the default is one connection.
    pub second_connection: Option<crate::db::DbConfig>,
}

impl Default for RunOptions {
    fn default() -> Self {
        RunOptions {
            cancel: Cancel::new(),
            chunk_time: Duration::from_millis(200),
            nice_ratio: 0.0,
            second_connection: None,
        }
    }
}

/// What a check kind measured.
#[derive(Debug, Clone)]
pub(crate) struct Verdict {
    pub outcome: Outcome,
    pub summary: String,
    pub rows_scanned: i64,
    pub details: Value,
}

/// Everything a check kind needs while it runs.
pub(crate) struct Ctx<'a> {
    pub client: &'a Client,
    /// `client` for statements that carry plan SQL (or read the plan's relations): each runs
    /// read-only and is rolled back.
    pub ro: ReadOnly<'a>,
    pub plan: &'a Plan,
    pub spec: &'a CheckSpec,
    pub pacer: pace::Pacer<'a>,
    pub chunk_time: Duration,
    pub second_connection: Option<&'a crate::db::DbConfig>,
}

/// Runs the plan's checks (or only the one named `filter`), stores each result in
/// `cutover.check_results` and returns them in plan order.
///
/// Uses `client`'s session: each check sets its `statement_timeout` there and restores the
/// previous value afterwards, so give it a connection nothing else uses meanwhile. Errors only
/// when the run itself cannot proceed (unknown check name, results cannot be stored).
pub async fn run(
    client: &Client,
    plan: &Plan,
    filter: Option<&str>,
    cancel: &Cancel,
) -> Result<Vec<CheckRecord>, CheckError> {
    let options = RunOptions {
        cancel: cancel.clone(),
        ..RunOptions::default()
    };
    run_with(client, plan, filter, &options).await
}

/// [`run`] with explicit [`RunOptions`].
pub async fn run_with(
    client: &Client,
    plan: &Plan,
    filter: Option<&str>,
    options: &RunOptions,
) -> Result<Vec<CheckRecord>, CheckError> {
    let specs = select(plan, filter)?;
    let actor = crate::control::audit::Actor::current(client)
        .await
        .map_err(|e| CheckError::Db(e.to_string()))?;
    crate::control::anchors::authorize(client, plan, &actor, crate::plan::Action::Checks).await?;
    let mut records = Vec::with_capacity(specs.len());
    for spec in specs {
        let started_at = Utc::now();
        let clock = Instant::now();
        let verdict = run_one(client, plan, spec, options).await;
        let duration_ms = i64::try_from(clock.elapsed().as_millis()).unwrap_or(i64::MAX);
        let record = store::insert(client, plan, spec, &verdict, started_at, duration_ms).await?;
        tracing::info!(
            check = %record.name,
            outcome = %record.outcome,
            "check finished: {}",
            record.summary
        );
        records.push(record);
    }
    Ok(records)
}

fn select<'p>(plan: &'p Plan, filter: Option<&str>) -> Result<Vec<&'p CheckSpec>, CheckError> {
    match filter {
        None => Ok(plan.spec.checks.iter().collect()),
        Some(name) => match plan.check(name) {
            Some(spec) => Ok(vec![spec]),
            None => Err(CheckError::UnknownCheck {
                plan: plan.id().to_string(),
                name: name.to_string(),
                known: plan
                    .spec
                    .checks
                    .iter()
                    .map(|c| c.name.as_str())
                    .collect::<Vec<_>>()
                    .join(", "),
            }),
        },
    }
}

/// Runs one check without storing it; errors become Inconclusive.
async fn run_one(client: &Client, plan: &Plan, spec: &CheckSpec, options: &RunOptions) -> Verdict {
    let timeout = spec.timeout.unwrap_or(plan.spec.settings.statement_timeout);
    let previous = match set_timeout(client, timeout.std()).await {
        Ok(previous) => previous,
        Err(e) => return inconclusive(&e),
    };
    let mut ctx = Ctx {
        client,
        ro: ReadOnly::own(client, format!("check `{}`", spec.name)),
        plan,
        spec,
        pacer: pace::Pacer::new(plan, options),
        chunk_time: options.chunk_time,
        second_connection: options.second_connection.as_ref(),
    };
    let result = match &spec.kind {
        CheckKind::RowCountParity { .. } => row_count::run(&mut ctx).await,
        CheckKind::ExpressionParity { .. } => expression::run(&mut ctx).await,
        CheckKind::SampledChecksum { .. } => sampled::run(&mut ctx).await,
        CheckKind::FullDiff { .. } => diff::run(&mut ctx).await,
        CheckKind::NullDrift { .. } => drift::run(&mut ctx).await,
        CheckKind::GoldenQuery { .. } => golden::run(&mut ctx).await,
        CheckKind::Invariant { .. } => invariant::run(&mut ctx).await,
    };
    let reset = client
        .batch_execute(&format!(
            "SET statement_timeout = {}",
            crate::sql::quote_literal(&previous)
        ))
        .await;
    match (result, reset) {
        (Ok(v), Ok(())) => v,
        (Err(e), _) => inconclusive(&e),
        (Ok(_), Err(e)) => inconclusive(&e.into()),
    }
}

async fn set_timeout(client: &Client, timeout: Duration) -> Result<String, CheckError> {
    let row = client.query_one("SHOW statement_timeout", &[]).await?;
    let previous: String = row.get("statement_timeout");
    client
        .batch_execute(&format!(
            "SET statement_timeout = {}",
            timeout.as_millis().max(1)
        ))
        .await?;
    Ok(previous)
}

fn inconclusive(e: &CheckError) -> Verdict {
    let summary = match e {
        CheckError::Cancelled => "cancelled before it finished".to_string(),
        CheckError::Blocked(reason) => format!("not run to the end: {reason}"),
        other => format!("error: {other}"),
    };
    Verdict {
        outcome: Outcome::Inconclusive,
        summary,
        rows_scanned: 0,
        details: json!({ "error": e.to_string() }),
    }
}

/// Called by the engine just before `phase` is applied: before expand, golden queries are
/// snapshotted (once per query text) as the baseline their checks compare against. Failing here
/// blocks the phase.
pub async fn before_phase(client: &Client, plan: &Plan, phase: Phase) -> anyhow::Result<()> {
    if phase == Phase::Expand {
        golden::snapshot_golden(client, plan, false).await?;
    }
    Ok(())
}

/// Percentage with one decimal, for summaries.
pub(crate) fn pct(part: i64, whole: i64) -> f64 {
    if whole == 0 {
        0.0
    } else {
        (part as f64) * 100.0 / (whole as f64)
    }
}
