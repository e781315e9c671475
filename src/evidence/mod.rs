//! Readiness evidence: the probes gates can require (breaking-DDL lint, old-app compatibility,
//! error budget, hidden readers, privilege parity, backfill completion), the observability
//! evidence, Prometheus metrics and the runbook.
//!
//! A probe is one small unit implementing [`Probe`]; [`probe`] maps a plan's [`ProbeKind`] to it.
//! A probe that cannot measure returns Inconclusive, never Pass.

pub(crate) mod backfill_complete;
pub(crate) mod census;
pub mod compat;
pub(crate) mod error_budget;
pub mod lint;
pub mod metrics;
pub(crate) mod privileges;
pub(crate) mod runbook;
pub(crate) mod scratch;
pub mod snapshot;

use std::future::Future;
use std::pin::Pin;
use std::time::Instant;

use serde::Serialize;
use tokio_postgres::Client;

use crate::control::facts::Facts;
use crate::control::probes;
use crate::outcome::Outcome;
use crate::plan::{Phase, Plan, ProbeKind};
use crate::rules;

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
    Box::new(Recorded(kind, inner))
}

/// Runs a probe and records its result.
struct Recorded(ProbeKind, Box<dyn Probe>);

impl Probe for Recorded {
    fn name(&self) -> &'static str {
        self.1.name()
    }

    fn evaluate<'a>(&'a self, ctx: &'a ProbeContext<'a>) -> ProbeFuture<'a> {
        Box::pin(async move {
            let started = Instant::now();
            let result = match missing_privilege(ctx, self.0).await {
                Some(grant) => ProbeResult::inconclusive(
                    self.1.name(),
                    format!("this login lacks a privilege the probe needs (it would see too little to judge): {grant}"),
                ),
                None => self.1.evaluate(ctx).await,
            };
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

/// The GRANT a probe needs and the login lacks, if any. A probe that cannot see what it judges
/// (other logins' statements, the migrated table) must not pass on what it cannot see.
async fn missing_privilege(ctx: &ProbeContext<'_>, kind: ProbeKind) -> Option<String> {
    let (check, grant): (String, String) = match kind {
        ProbeKind::HiddenReaders | ProbeKind::ErrorBudget => (
            "SELECT pg_has_role(current_user, 'pg_read_all_stats', 'USAGE')".into(),
            "GRANT pg_read_all_stats TO {login};  -- other logins' statements in pg_stat_statements"
                .into(),
        ),
        ProbeKind::BackfillComplete => {
            let table = ctx.plan.spec.backfill.as_ref()?.table.clone();
            (
                format!(
                    "SELECT has_table_privilege(current_user, {}, 'SELECT')",
                    crate::sql::quote_literal(&table)
                ),
                format!("GRANT SELECT ON {table} TO {{login}};  -- count the rows still pending"),
            )
        }
        ProbeKind::Lint | ProbeKind::Compatibility | ProbeKind::PrivilegeParity => return None,
    };
    let row = ctx
        .client
        .query_one(
            &format!("SELECT ({check}) AS allowed, current_user::text AS login"),
            &[],
        )
        .await
        .ok()?;
    let allowed: bool = row.get("allowed");
    let login: String = row.get("login");
    (!allowed).then(|| grant.replace("{login}", &crate::sql::quote_ident(&login)))
}

async fn record(
    ctx: &ProbeContext<'_>,
    result: &ProbeResult,
    millis: i64,
) -> Result<(), tokio_postgres::Error> {
    let scope = scratch::Scope::enter(ctx.client).await?;
    let sha = ctx.plan.sha256();
    let new = probes::NewProbeResult {
        plan_id: ctx.plan.id(),
        gate: ctx.gate,
        probe: &result.name,
        outcome: result.outcome,
        summary: &result.summary,
        evidence: &result.evidence,
        plan_sha256: &sha,
        duration_ms: millis,
    };
    let inserted = probes::record(ctx.client, new).await;
    match inserted {
        Ok(_) => scope.commit(ctx.client).await,
        Err(e) => {
            scope.rollback(ctx.client).await?;
            Err(e)
        }
    }
}

/// The Observability category's automated evidence, as the scorecard judges it (see
/// [`rules::scorecard::observability`]): was the metrics endpoint scraped for this plan
/// recently?
pub async fn observability(client: &Client, plan: &Plan) -> ProbeResult {
    match Facts::load(client, plan.id()).await {
        Ok(facts) => {
            let e = rules::scorecard::observability(plan, &facts);
            ProbeResult {
                name: e.name,
                outcome: e.outcome,
                summary: e.detail,
                evidence: Vec::new(),
            }
        }
        Err(e) => ProbeResult::inconclusive(
            "observability",
            format!("could not read the scrape log: {e}"),
        ),
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
