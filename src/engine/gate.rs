//! Evaluating a gate live, for `advance`, `override` and `cutover probe`: run the gate's probes
//! now (each result is recorded), load the [`Facts`] and judge them with
//! [`crate::rules::gate::evaluate`] — the same rule every view uses.

use chrono::Utc;
use tokio_postgres::Client;

use super::EngineError;
use crate::control::facts::{Facts, ProbeFact};
use crate::evidence::{self, ProbeContext};
use crate::plan::{Phase, Plan};
use crate::rules::{self, GateEvaluation};

/// Runs the probes of `phase`'s gate against the live database and judges the gate.
pub async fn evaluate_gate(
    client: &Client,
    plan: &Plan,
    phase: Phase,
) -> Result<GateEvaluation, EngineError> {
    let live = run_probes(client, plan, phase).await;
    let mut facts = Facts::load(client, plan.id()).await?;
    overlay(&mut facts, live);
    Ok(rules::gate::evaluate(plan, &facts, phase))
}

/// Runs (and records) every probe of `phase`'s gate; returns their results as facts.
pub(crate) async fn run_probes(client: &Client, plan: &Plan, phase: Phase) -> Vec<ProbeFact> {
    let mut out = Vec::new();
    for kind in plan.gate(phase).probes {
        let ctx = ProbeContext {
            client,
            plan,
            gate: phase,
        };
        let r = evidence::probe(kind).evaluate(&ctx).await;
        out.push(ProbeFact {
            gate: phase,
            probe: kind.as_str().to_string(),
            outcome: r.outcome,
            summary: r.summary,
            evidence: r.evidence,
            plan_sha256: plan.sha256(),
            at: Utc::now(),
        });
    }
    out
}

/// Results just measured replace whatever was recorded for the same probe and gate (recording
/// may have failed, and they are the newest facts there are).
fn overlay(facts: &mut Facts, live: Vec<ProbeFact>) {
    for p in live {
        facts.probes.retain(|f| {
            !(f.gate == p.gate && f.probe == p.probe && f.plan_sha256 == p.plan_sha256)
        });
        facts.probes.push(ProbeFact { at: facts.now, ..p });
    }
}
