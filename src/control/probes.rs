//! `cutover.probe_results` (every evaluation of a readiness probe at a gate) and
//! `cutover.metrics_scrapes` (every scrape of the metrics endpoint, the Observability evidence).

use serde_json::json;
use tokio_postgres::{Error, GenericClient};

use crate::outcome::Outcome;
use crate::plan::Phase;

/// An evaluation to record.
#[derive(Debug, Clone, Copy)]
pub(crate) struct NewProbeResult<'a> {
    /// Plan id.
    pub plan_id: &'a str,
    /// The gate it was evaluated for.
    pub gate: Phase,
    /// Probe name.
    pub probe: &'a str,
    /// Verdict.
    pub outcome: Outcome,
    /// One line.
    pub summary: &'a str,
    /// Evidence lines.
    pub evidence: &'a [String],
    /// The plan version it judged.
    pub plan_sha256: &'a str,
    /// How long it took.
    pub duration_ms: i64,
}

/// Records one evaluation.
pub(crate) async fn record(c: &impl GenericClient, new: NewProbeResult<'_>) -> Result<(), Error> {
    c.execute(
        "INSERT INTO cutover.probe_results
             (plan_id, gate, probe, outcome, summary, evidence, plan_sha256, duration_ms)
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8)",
        &[
            &new.plan_id,
            &new.gate.as_str(),
            &new.probe,
            &new.outcome.as_str(),
            &new.summary,
            &json!(new.evidence),
            &new.plan_sha256,
            &new.duration_ms,
        ],
    )
    .await?;
    Ok(())
}

/// The latest evaluation of one probe at one gate.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct LatestProbe {
    /// The gate.
    pub gate: Phase,
    /// Probe name.
    pub probe: String,
    /// Verdict.
    pub outcome: Outcome,
    /// One line.
    pub summary: String,
}

/// The latest evaluation of each probe at each gate of `plan_id`, by gate and probe; only
/// those of plan version `plan_sha256` when given.
pub(crate) async fn latest(
    c: &impl GenericClient,
    plan_id: &str,
    plan_sha256: Option<&str>,
) -> Result<Vec<LatestProbe>, Error> {
    let rows = c
        .query(
            "SELECT DISTINCT ON (gate, probe) gate, probe, outcome, summary
               FROM cutover.probe_results
              WHERE plan_id = $1 AND ($2::text IS NULL OR plan_sha256 = $2)
              ORDER BY gate, probe, id DESC",
            &[&plan_id, &plan_sha256],
        )
        .await?;
    Ok(rows
        .iter()
        .filter_map(|r| {
            Some(LatestProbe {
                gate: Phase::parse(r.get("gate"))?,
                probe: r.get("probe"),
                outcome: Outcome::parse(r.get("outcome")),
                summary: r.get("summary"),
            })
        })
        .collect())
}

/// How many evaluations of each probe of `plan_id` ended with each outcome: (probe, outcome,
/// evaluations).
pub(crate) async fn outcome_counts(
    c: &impl GenericClient,
    plan_id: &str,
) -> Result<Vec<(String, Outcome, f64)>, Error> {
    super::outcome_counts(c, "SELECT probe AS name, outcome, count(*)::float8 AS n FROM cutover.probe_results WHERE plan_id = $1 GROUP BY 1, 2", plan_id).await
}

/// Records a scrape of the metrics endpoint by `peer` that returned `bytes`.
pub(crate) async fn record_scrape(
    c: &impl GenericClient,
    plan_id: &str,
    peer: &str,
    bytes: i32,
) -> Result<(), Error> {
    c.execute(
        "INSERT INTO cutover.metrics_scrapes (plan_id, peer, bytes) VALUES ($1, $2, $3)",
        &[&plan_id, &peer, &bytes],
    )
    .await?;
    Ok(())
}
