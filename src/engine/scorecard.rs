//! The readiness scorecard: five categories, each with automated evidence and an explicit
//! sign-off by the role that owns it. A category is ready only when both hold.
//!
//! | Category | Automated evidence | Owner |
//! |---|---|---|
//! | Compatibility | latest recorded lint and old-app compatibility probe results | app_owner |
//! | Data quality | latest result of every check in the plan | data_owner |
//! | Observability | `evidence::observability` (metrics scraped) | sre |
//! | Reversibility | every reversible phase has a rollback; a rehearsal of this plan version passed | sre |
//! | Stakeholder alignment | every role a gate asks for is staffed in the roster | lead |
//!
//! The owner's sign-off is any valid (same plan sha256) sign-off by that role on one of the
//! plan's gates.

use serde::Serialize;
use tokio_postgres::Client;

use super::gate::{fmt_time, short};
use super::EngineError;
use crate::evidence;
use crate::outcome::Outcome;
use crate::plan::{Phase, Plan, ProbeKind, Role};

/// One piece of automated evidence.
#[derive(Debug, Clone, Serialize)]
pub struct Evidence {
    /// What was measured.
    pub name: String,
    /// Verdict.
    pub outcome: Outcome,
    /// Why.
    pub detail: String,
}

/// One scorecard category.
#[derive(Debug, Clone, Serialize)]
pub struct Category {
    /// Category name.
    pub name: String,
    /// The role that signs it.
    pub owner: Role,
    /// Automated evidence.
    pub evidence: Vec<Evidence>,
    /// The owner's sign-off.
    pub signoff: Evidence,
    /// Combined verdict.
    pub outcome: Outcome,
}

/// The five categories.
#[derive(Debug, Clone, Serialize)]
pub struct Scorecard {
    /// Compatibility, Data quality, Observability, Reversibility, Stakeholder alignment.
    pub categories: Vec<Category>,
    /// All five Pass.
    pub ready: bool,
}

/// Builds the scorecard from stored evidence (probe and check results, rehearsals, sign-offs);
/// it runs no probe itself. `_next` (the phase whose gate is next) is kept for API stability.
pub async fn scorecard(
    client: &Client,
    plan: &Plan,
    _next: Phase,
) -> Result<Scorecard, EngineError> {
    let compatibility = vec![
        recorded_probe(client, plan, ProbeKind::Lint).await?,
        recorded_probe(client, plan, ProbeKind::Compatibility).await?,
    ];
    let data_quality = check_evidence(client, plan).await?;
    let obs = evidence::observability(client, plan).await;
    let observability = vec![Evidence {
        name: "observability".into(),
        outcome: obs.outcome,
        detail: obs.summary,
    }];
    let reversibility = reversibility_evidence(client, plan).await?;
    let alignment = vec![roster_evidence(plan)];

    let mut categories = Vec::new();
    for (name, owner, evidence) in [
        ("Compatibility", Role::APP_OWNER, compatibility),
        ("Data quality", Role::DATA_OWNER, data_quality),
        ("Observability", Role::SRE, observability),
        ("Reversibility", Role::SRE, reversibility),
        ("Stakeholder alignment", Role::LEAD, alignment),
    ] {
        let owner = Role(owner.to_string());
        let signoff = owner_signoff(client, plan, &owner).await?;
        let outcome = Outcome::all(evidence.iter().map(|e| e.outcome).chain([signoff.outcome]));
        categories.push(Category {
            name: name.to_string(),
            owner,
            evidence,
            signoff,
            outcome,
        });
    }
    let ready = categories.iter().all(|c| c.outcome == Outcome::Pass);
    Ok(Scorecard { categories, ready })
}

/// The latest recorded evaluation of a probe for this plan version (gates record every
/// evaluation). Reading it rather than re-running the probe keeps `status` free of side effects
/// (the compatibility probe's rolled-back transactions would otherwise count against the error
/// budget).
async fn recorded_probe(
    client: &Client,
    plan: &Plan,
    kind: ProbeKind,
) -> Result<Evidence, EngineError> {
    let row = client
        .query_opt(
            "SELECT outcome, summary, at, gate FROM cutover.probe_results
              WHERE plan_id = $1 AND probe = $2 AND plan_sha256 = $3 ORDER BY id DESC LIMIT 1",
            &[&plan.id(), &kind.as_str(), &plan.sha256()],
        )
        .await?;
    Ok(match row {
        Some(r) => Evidence {
            name: format!("probe {kind}"),
            outcome: Outcome::parse(r.get(0)),
            detail: format!(
                "{} (gate {}, at {})",
                r.get::<_, String>(1),
                r.get::<_, String>(3),
                fmt_time(r.get(2))
            ),
        },
        None => Evidence {
            name: format!("probe {kind}"),
            outcome: Outcome::Inconclusive,
            detail: "not evaluated for this plan version yet (its gate evaluates it)".into(),
        },
    })
}

async fn check_evidence(client: &Client, plan: &Plan) -> Result<Vec<Evidence>, EngineError> {
    if plan.spec.checks.is_empty() {
        return Ok(vec![Evidence {
            name: "checks".into(),
            outcome: Outcome::Inconclusive,
            detail: "the plan defines no checks".into(),
        }]);
    }
    let mut out = Vec::new();
    for check in &plan.spec.checks {
        let row = client
            .query_opt(
                "SELECT outcome, summary, started_at FROM cutover.check_results
                  WHERE plan_id = $1 AND check_name = $2 ORDER BY id DESC LIMIT 1",
                &[&plan.id(), &check.name],
            )
            .await?;
        out.push(match row {
            Some(r) => Evidence {
                name: format!("check {}", check.name),
                outcome: Outcome::parse(r.get(0)),
                detail: format!("{} (at {})", r.get::<_, String>(1), fmt_time(r.get(2))),
            },
            None => Evidence {
                name: format!("check {}", check.name),
                outcome: Outcome::Inconclusive,
                detail: "never run".into(),
            },
        });
    }
    Ok(out)
}

async fn reversibility_evidence(
    client: &Client,
    plan: &Plan,
) -> Result<Vec<Evidence>, EngineError> {
    let missing: Vec<&str> = Phase::ALL
        .iter()
        .filter(|p| **p != Phase::Contract && !plan.phase(**p).reversible())
        .map(|p| p.as_str())
        .collect();
    let scripts = if missing.is_empty() {
        Evidence {
            name: "rollback scripts".into(),
            outcome: Outcome::Pass,
            detail: "every phase before contract has a rollback".into(),
        }
    } else {
        Evidence {
            name: "rollback scripts".into(),
            outcome: Outcome::Fail,
            detail: format!("no rollback for: {}", missing.join(", ")),
        }
    };
    let row = client
        .query_opt(
            "SELECT ok, total_ms, plan_sha256, at FROM cutover.rehearsals
              WHERE plan_id = $1 ORDER BY id DESC LIMIT 1",
            &[&plan.id()],
        )
        .await?;
    let rehearsal = match row {
        None => Evidence {
            name: "rehearsal".into(),
            outcome: Outcome::Inconclusive,
            detail: "never rehearsed (run `cutover rehearse`)".into(),
        },
        Some(r) => {
            let ok: bool = r.get(0);
            let total: f64 = r.get(1);
            let sha: String = r.get(2);
            let at = fmt_time(r.get(3));
            if sha != plan.sha256() {
                Evidence {
                    name: "rehearsal".into(),
                    outcome: Outcome::Inconclusive,
                    detail: format!("the last rehearsal ({at}) was of another plan version ({}); rehearse again", short(&sha)),
                }
            } else if ok {
                Evidence {
                    name: "rehearsal".into(),
                    outcome: Outcome::Pass,
                    detail: format!("rollback tested and timed: {total:.0} ms in total at {at}"),
                }
            } else {
                Evidence {
                    name: "rehearsal".into(),
                    outcome: Outcome::Fail,
                    detail: format!("the rehearsal at {at} failed (see `cutover rehearse`)"),
                }
            }
        }
    };
    Ok(vec![scripts, rehearsal])
}

fn roster_evidence(plan: &Plan) -> Evidence {
    let mut missing: Vec<String> = Vec::new();
    for gate in plan.spec.gates.values() {
        for role in &gate.signoffs {
            let staffed = plan.spec.roster.get(role).is_some_and(|l| !l.is_empty());
            if !staffed && !missing.contains(&role.0) {
                missing.push(role.0.clone());
            }
        }
    }
    if missing.is_empty() {
        Evidence {
            name: "roster".into(),
            outcome: Outcome::Pass,
            detail: format!(
                "{} roles staffed for every gate sign-off",
                plan.spec.roster.len()
            ),
        }
    } else {
        Evidence {
            name: "roster".into(),
            outcome: Outcome::Fail,
            detail: format!("no login holds: {}", missing.join(", ")),
        }
    }
}

async fn owner_signoff(
    client: &Client,
    plan: &Plan,
    owner: &Role,
) -> Result<Evidence, EngineError> {
    let name = format!("sign-off by {owner}");
    if !plan.spec.roster.contains_key(owner) {
        return Ok(Evidence {
            name,
            outcome: Outcome::Inconclusive,
            detail: format!("the roster has no `{owner}`"),
        });
    }
    let row = client
        .query_opt(
            "SELECT login, gate, signed_at FROM cutover.signoffs
              WHERE plan_id = $1 AND role = $2 AND plan_sha256 = $3 ORDER BY signed_at DESC LIMIT 1",
            &[&plan.id(), &owner.as_str(), &plan.sha256()],
        )
        .await?;
    Ok(match row {
        Some(r) => Evidence {
            name,
            outcome: Outcome::Pass,
            detail: format!(
                "{} signed gate {} at {}",
                r.get::<_, String>(0),
                r.get::<_, String>(1),
                fmt_time(r.get(2))
            ),
        },
        None => Evidence {
            name,
            outcome: Outcome::Inconclusive,
            detail: format!("awaiting a sign-off by {owner} on this plan version"),
        },
    })
}
