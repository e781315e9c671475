//! Readiness evidence: the probes gates can require (breaking-DDL lint, old-app compatibility,
//! error budget, hidden readers, privilege parity, backfill completion), the observability
//! evidence, Prometheus metrics and the runbook.
//!
//! A probe is one small unit implementing [`Probe`]; [`probe`] maps a plan's [`ProbeKind`] to it.
//! A probe that cannot measure returns Inconclusive, never Pass.

pub mod metrics;

use std::future::Future;
use std::pin::Pin;

use serde::Serialize;
use tokio_postgres::Client;

use crate::outcome::Outcome;
use crate::plan::{Phase, Plan, ProbeKind};

/// What a probe may look at.
pub struct ProbeContext<'a> {
    /// A connection owned by the caller (the worker or a CLI command).
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

/// The probe implementing a plan's probe kind.
pub fn probe(kind: ProbeKind) -> Box<dyn Probe> {
    Box::new(NotYetAvailable(kind))
}

struct NotYetAvailable(ProbeKind);

impl Probe for NotYetAvailable {
    fn name(&self) -> &'static str {
        self.0.as_str()
    }

    fn evaluate<'a>(&'a self, _ctx: &'a ProbeContext<'a>) -> ProbeFuture<'a> {
        Box::pin(async move {
            ProbeResult::inconclusive(self.0.as_str(), "this probe is not available in this build")
        })
    }
}

/// The Observability category's automated evidence: was the metrics endpoint scraped recently?
pub async fn observability(_client: &Client, _plan: &Plan) -> ProbeResult {
    ProbeResult::inconclusive(
        "observability",
        "the metrics endpoint has never been scraped",
    )
}

/// Called by the engine just before `phase` is applied (e.g. to take the error-budget baseline
/// before the read switch). Failing here blocks the phase.
pub async fn before_phase(_client: &Client, _plan: &Plan, _phase: Phase) -> anyhow::Result<()> {
    Ok(())
}
