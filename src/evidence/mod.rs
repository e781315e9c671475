//! Readiness evidence: the probes gates can require (breaking-DDL lint, old-app compatibility,
//! error budget, hidden readers, privilege parity, backfill completion), the observability
//! evidence, Prometheus metrics and the runbook.
//!
//! A probe is one small unit implementing [`Probe`]; [`probe`] maps a plan's [`ProbeKind`] to it.
//! A probe that cannot measure returns Inconclusive, never Pass.

pub mod backfill_complete;
pub mod census;
pub mod compat;
pub mod error_budget;
pub mod lint;
pub mod metrics;
pub mod privileges;
pub mod runbook;
pub mod scratch;
pub mod snapshot;

use std::future::Future;
use std::pin::Pin;
use std::time::Instant;

use serde::Serialize;
use tokio_postgres::Client;

use crate::outcome::Outcome;
use crate::plan::{Phase, Plan, ProbeKind};

/// What a probe may look at.
pub struct ProbeContext<'a> {
    /// A connection owned by the caller (the worker or a CLI command). It may be inside the
    /// caller's transaction: probes then work in savepoints and never end or abort it.
    pub client: &'a Client,
    /// The plan in force.
    pub plan: &'a Plan,
    /// The phase whose gate is being evaluated.
    pub gate: Phase,
}

/// A probe's verdict with evidence a person can read.
#[derive(Debug, Clone, Serialize)]
pub struct ProbeResult {
    /// Which probe.
    pub name: String,
    /// Pass / Fail / Inconclusive.
    pub outcome: Outcome,
    /// One line.
    pub summary: String,
    /// Details: each blocker or measurement on its own line.
    pub evidence: Vec<String>,
}

impl ProbeResult {
    /// An Inconclusive result with a reason.
    pub fn inconclusive(name: &str, reason: impl Into<String>) -> ProbeResult {
        ProbeResult {
            name: name.to_string(),
            outcome: Outcome::Inconclusive,
            summary: reason.into(),
            evidence: Vec::new(),
        }
    }
}

/// A boxed future returned by probes (keeps [`Probe`] object-safe).
pub type ProbeFuture<'a> = Pin<Box<dyn Future<Output = ProbeResult> + Send + 'a>>;

/// One readiness probe.
pub trait Probe: Send + Sync {
    /// The probe's name, as written in plans.
    fn name(&self) -> &'static str;
    /// Measures and judges. Errors become Inconclusive results, never Pass.
    fn evaluate<'a>(&'a self, ctx: &'a ProbeContext<'a>) -> ProbeFuture<'a>;
}

/// The probe implementing a plan's probe kind. Every evaluation is recorded in
/// `cutover.probe_results` (for the runbook, the metrics and the TUI).
pub fn probe(kind: ProbeKind) -> Box<dyn Probe> {
    let inner: Box<dyn Probe> = match kind {
        ProbeKind::Lint => Box::new(lint::LintProbe),
        ProbeKind::Compatibility => Box::new(compat::CompatibilityProbe),
        ProbeKind::HiddenReaders => Box::new(census::HiddenReadersProbe),
        ProbeKind::BackfillComplete => Box::new(backfill_complete::BackfillCompleteProbe),
        ProbeKind::ErrorBudget => Box::new(error_budget::ErrorBudgetProbe),
        ProbeKind::PrivilegeParity => Box::new(privileges::PrivilegeParityProbe),
    };
    Box::new(Recorded(inner))
}

/// Runs a probe and records its result.
struct Recorded(Box<dyn Probe>);

impl Probe for Recorded {
    fn name(&self) -> &'static str {
        self.0.name()
    }

    fn evaluate<'a>(&'a self, ctx: &'a ProbeContext<'a>) -> ProbeFuture<'a> {
        Box::pin(async move {
            let started = Instant::now();
            let result = self.0.evaluate(ctx).await;
            let millis = i64::try_from(started.elapsed().as_millis()).unwrap_or(i64::MAX);
            if let Err(e) = record(ctx, &result, millis).await {
                tracing::warn!(
                    probe = result.name,
                    "could not record the probe result: {}",
                    crate::db::describe_error(&e)
                );
            }
            result
        })
    }
}

async fn record(
    ctx: &ProbeContext<'_>,
    result: &ProbeResult,
    millis: i64,
) -> Result<(), tokio_postgres::Error> {
    let scope = scratch::Scope::enter(ctx.client).await?;
    let inserted = ctx
        .client
        .execute(
            "INSERT INTO cutover.probe_results
                 (plan_id, gate, probe, outcome, summary, evidence, plan_sha256, duration_ms)
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8)",
            &[
                &ctx.plan.id(),
                &ctx.gate.as_str(),
                &result.name,
                &result.outcome.as_str(),
                &result.summary,
                &serde_json::json!(result.evidence),
                &ctx.plan.sha256(),
                &millis,
            ],
        )
        .await;
    match inserted {
        Ok(_) => scope.commit(ctx.client).await,
        Err(e) => {
            scope.rollback(ctx.client).await?;
            Err(e)
        }
    }
}

/// How recent the last scrape must be for the Observability evidence to hold.
pub const SCRAPE_FRESHNESS_SECONDS: i64 = 300;

/// The Observability category's automated evidence: was the metrics endpoint (`--metrics-addr`)
/// scraped for this plan within the last [`SCRAPE_FRESHNESS_SECONDS`]? Never scraped is
/// Inconclusive, a stale last scrape fails.
pub async fn observability(client: &Client, plan: &Plan) -> ProbeResult {
    let read = async {
        let scope = scratch::Scope::enter(client).await?;
        let rows = scratch::optional_query(
            client,
            "SELECT count(*), max(at)::text,
                    extract(epoch FROM clock_timestamp() - max(at))::float8,
                    (SELECT peer FROM cutover.metrics_scrapes
                      WHERE plan_id = $1 ORDER BY id DESC LIMIT 1)
               FROM cutover.metrics_scrapes WHERE plan_id = $1",
            &[&plan.id()],
        )
        .await;
        scope.rollback(client).await?;
        rows
    };
    let row = match read.await.map(|rows| rows.into_iter().next()) {
        Ok(Some(r)) => r,
        Ok(None) => {
            return ProbeResult::inconclusive("observability", "the scrape log returned no row")
        }
        Err(e) => {
            return ProbeResult::inconclusive(
                "observability",
                format!(
                    "could not read the scrape log: {}",
                    crate::db::describe_error(&e)
                ),
            )
        }
    };
    let count: i64 = row.get(0);
    let (Some(last), Some(age), Some(peer)) = (
        row.get::<_, Option<String>>(1),
        row.get::<_, Option<f64>>(2),
        row.get::<_, Option<String>>(3),
    ) else {
        return ProbeResult::inconclusive(
            "observability",
            "the metrics endpoint has never been scraped: run Cutover with --metrics-addr and point Prometheus at it",
        );
    };
    let evidence = vec![
        format!("{count} scrape(s) recorded; last at {last} by {peer}"),
        format!("freshness required: within {SCRAPE_FRESHNESS_SECONDS} s"),
    ];
    let (outcome, summary) = if age <= SCRAPE_FRESHNESS_SECONDS as f64 {
        (
            Outcome::Pass,
            format!("metrics endpoint scraped {age:.0} s ago by {peer}"),
        )
    } else {
        (
            Outcome::Fail,
            format!("the last metrics scrape was {age:.0} s ago: is Prometheus still scraping?"),
        )
    };
    ProbeResult {
        name: "observability".to_string(),
        outcome,
        summary,
        evidence,
    }
}

/// Called by the engine just before `phase` is applied. Before the read switch it stores the
/// error-budget baseline (database counters, statement statistics, index scans) that the error
/// budget and the hidden-reader census compare against. Failing here blocks the phase.
pub async fn before_phase(client: &Client, plan: &Plan, phase: Phase) -> anyhow::Result<()> {
    if phase != Phase::ReadSwitch {
        return Ok(());
    }
    snapshot::publish_own_statistics(client).await?;
    let scope = scratch::Scope::enter(client).await?;
    let stored = async {
        let snap = snapshot::capture(client, plan).await?;
        snapshot::store(client, plan, phase, &snap).await
    }
    .await;
    match stored {
        Ok(()) => {
            scope.commit(client).await?;
            Ok(())
        }
        Err(e) => {
            scope.rollback(client).await?;
            anyhow::bail!(
                "could not take the error-budget baseline before {phase}: {}",
                crate::db::describe_error(&e)
            )
        }
    }
}
