//! The readiness scorecard: five categories, each with automated evidence and an explicit
//! sign-off by the role that owns it. A category is ready only when both hold.
//!
//! | Category | Automated evidence | Owner |
//! |---|---|---|
//! | Compatibility | latest lint and old-app compatibility probe results (fresh) | app_owner |
//! | Data quality | latest result of every check in the plan | data_owner |
//! | Observability | the metrics endpoint (`--metrics-addr`) scraped recently, or the owner's attestation of where dashboards and alerts are | sre |
//! | Reversibility | every reversible phase has a rollback; a rehearsal of this plan version passed | sre |
//! | Stakeholder alignment | every role a gate asks for is staffed in the roster | lead |
//!
//! The owner's sign-off is any valid sign-off by that role on one of the plan's gates: same plan
//! sha256, and not given before its gate's phase was rolled back.

use serde::Serialize;

use super::gate::stale_reason;
use super::{age, fmt_time, short};
use crate::control::facts::Facts;
use crate::control::phases::PhaseState;
use crate::outcome::Outcome;
use crate::plan::{Phase, Plan, ProbeKind, Role};

/// How recent the last scrape must be for the Observability evidence to hold, in seconds.
pub(crate) const SCRAPE_FRESHNESS_SECONDS: i64 = 300;

/// The five categories.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum CategoryKind {
    /// The old app keeps working.
    Compatibility,
    /// Old and new shape agree.
    DataQuality,
    /// Someone is watching.
    Observability,
    /// There is a tested way back.
    Reversibility,
    /// Everyone who must approve is there.
    StakeholderAlignment,
}

impl CategoryKind {
    /// All five, in display order.
    pub const ALL: [CategoryKind; 5] = [
        CategoryKind::Compatibility,
        CategoryKind::DataQuality,
        CategoryKind::Observability,
        CategoryKind::Reversibility,
        CategoryKind::StakeholderAlignment,
    ];

    /// The title shown to people.
    pub fn title(self) -> &'static str {
        match self {
            CategoryKind::Compatibility => "Compatibility",
            CategoryKind::DataQuality => "Data quality",
            CategoryKind::Observability => "Observability",
            CategoryKind::Reversibility => "Reversibility",
            CategoryKind::StakeholderAlignment => "Stakeholder alignment",
        }
    }

    /// The snake_case key (as stored and typed: `:attest observability URL`).
    pub fn key(self) -> &'static str {
        match self {
            CategoryKind::Compatibility => "compatibility",
            CategoryKind::DataQuality => "data_quality",
            CategoryKind::Observability => "observability",
            CategoryKind::Reversibility => "reversibility",
            CategoryKind::StakeholderAlignment => "stakeholder_alignment",
        }
    }

    /// The category whose key is `key`.
    pub fn from_key(key: &str) -> Option<CategoryKind> {
        CategoryKind::ALL.into_iter().find(|c| c.key() == key)
    }

    /// Whether an owner's attestation can stand in for its automated evidence (only where
    /// no probe can see the thing itself: dashboards and alerts live outside the database).
    pub fn attestable(self) -> bool {
        self == CategoryKind::Observability
    }

    /// The role that signs it.
    pub fn owner(self) -> &'static str {
        match self {
            CategoryKind::Compatibility => Role::APP_OWNER,
            CategoryKind::DataQuality => Role::DATA_OWNER,
            CategoryKind::Observability | CategoryKind::Reversibility => Role::SRE,
            CategoryKind::StakeholderAlignment => Role::LEAD,
        }
    }
}

/// One piece of evidence.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Evidence {
    /// What was measured.
    pub name: String,
    /// Verdict.
    pub outcome: Outcome,
    /// Why.
    pub detail: String,
}

/// One scorecard category.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Category {
    /// Which.
    pub kind: CategoryKind,
    /// Its title.
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
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Scorecard {
    /// In [`CategoryKind::ALL`] order.
    pub categories: Vec<Category>,
    /// All five Pass.
    pub ready: bool,
}

/// Builds the scorecard from `facts`.
pub fn scorecard(plan: &Plan, facts: &Facts) -> Scorecard {
    let categories: Vec<Category> = CategoryKind::ALL
        .iter()
        .map(|&kind| {
            let evidence = match kind {
                CategoryKind::Compatibility => vec![
                    recorded_probe(plan, facts, ProbeKind::Lint),
                    recorded_probe(plan, facts, ProbeKind::Compatibility),
                ],
                CategoryKind::DataQuality => check_evidence(plan, facts),
                CategoryKind::Observability => vec![observability(plan, facts)],
                CategoryKind::Reversibility => reversibility(plan, facts),
                CategoryKind::StakeholderAlignment => vec![roster(plan)],
            };
            let owner = Role(kind.owner().to_string());
            let signoff = owner_signoff(plan, facts, &owner);
            let outcome = Outcome::all(evidence.iter().map(|e| e.outcome).chain([signoff.outcome]));
            Category {
                kind,
                name: kind.title().to_string(),
                owner,
                evidence,
                signoff,
                outcome,
            }
        })
        .collect();
    let ready = categories.iter().all(|c| c.outcome == Outcome::Pass);
    Scorecard { categories, ready }
}

/// The latest evaluation of a probe for this plan version at any gate. A Pass stays evidence
/// that its gate passed; a blocking result judged before facts changed is shown as stale.
fn recorded_probe(plan: &Plan, facts: &Facts, kind: ProbeKind) -> Evidence {
    let sha = plan.sha256();
    let name = format!("probe {kind}");
    let latest = facts
        .probes
        .iter()
        .filter(|p| p.probe == kind.as_str() && p.plan_sha256 == sha)
        .max_by_key(|p| p.at);
    match latest {
        None => Evidence {
            name,
            outcome: Outcome::Inconclusive,
            detail: "not evaluated for this plan version yet (its gate evaluates it)".into(),
        },
        Some(p) => match stale_reason(facts, p) {
            Some(why) if p.outcome != Outcome::Pass => Evidence {
                name,
                outcome: Outcome::Inconclusive,
                detail: format!(
                    "stale: judged {} ago ({}: {}), {why}",
                    age(p.at, facts.now),
                    p.outcome.as_str(),
                    p.summary
                ),
            },
            _ => Evidence {
                name,
                outcome: p.outcome,
                detail: format!("{} (gate {}, at {})", p.summary, p.gate, fmt_time(p.at)),
            },
        },
    }
}

fn check_evidence(plan: &Plan, facts: &Facts) -> Vec<Evidence> {
    if plan.spec.checks.is_empty() {
        return vec![Evidence {
            name: "checks".into(),
            outcome: Outcome::Inconclusive,
            detail: "the plan defines no checks".into(),
        }];
    }
    plan.spec
        .checks
        .iter()
        .map(|check| {
            let name = format!("check {}", check.name);
            match facts.checks.iter().find(|c| c.name == check.name) {
                Some(c) => Evidence {
                    name,
                    outcome: c.outcome,
                    detail: format!("{} (at {})", c.summary, fmt_time(c.started_at)),
                },
                None => Evidence {
                    name,
                    outcome: Outcome::Inconclusive,
                    detail: "never run".into(),
                },
            }
        })
        .collect()
}

/// Observability evidence: the metrics endpoint scraped within [`SCRAPE_FRESHNESS_SECONDS`]
/// (never scraped is Inconclusive, a stale last scrape fails), or an SRE's attestation.
pub(crate) fn observability(plan: &Plan, facts: &Facts) -> Evidence {
    let name = "observability".to_string();
    let owner = CategoryKind::Observability.owner();
    let attested = facts
        .attestations
        .iter()
        .rev()
        .find(|a| {
            a.category == CategoryKind::Observability.key()
                && a.role == owner
                && a.plan_sha256 == plan.sha256()
        })
        .map(|a| {
            format!(
                "attested by {} ({owner}) at {}: {}",
                a.login,
                fmt_time(a.at),
                a.url
            )
        });
    let scraped = facts.scrapes.as_ref().map(|s| {
        let secs = (facts.now - s.last_at).num_seconds();
        let peer = s.peer.as_deref().unwrap_or("unknown");
        (secs, peer.to_string(), s.count)
    });
    let (outcome, detail) = match (scraped, attested) {
        (Some((secs, peer, count)), attested) if secs <= SCRAPE_FRESHNESS_SECONDS => (
            Outcome::Pass,
            format!(
                "metrics endpoint scraped {secs} s ago by {peer} ({count} scrapes){}",
                attested.map(|a| format!("; {a}")).unwrap_or_default()
            ),
        ),
        (scraped, Some(a)) => (
            Outcome::Pass,
            match scraped {
                Some((secs, ..)) => format!("{a} (last scrape {secs} s ago)"),
                None => a,
            },
        ),
        (None, None) => (
            Outcome::Inconclusive,
            "never scraped: point Prometheus at --metrics-addr, or the sre attests the dashboards (`:attest observability URL`)".into(),
        ),
        (Some((secs, ..)), None) => (
            Outcome::Fail,
            format!(
                "the last metrics scrape was {secs} s ago (needs {SCRAPE_FRESHNESS_SECONDS} s): is Prometheus still scraping?"
            ),
        ),
    };
    Evidence {
        name,
        outcome,
        detail,
    }
}

fn reversibility(plan: &Plan, facts: &Facts) -> Vec<Evidence> {
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
    let name = "rehearsal".to_string();
    let rehearsal = match &facts.rehearsal {
        None => Evidence {
            name,
            outcome: Outcome::Inconclusive,
            detail: "never rehearsed (`:rehearse` in the TUI, or `cutover rehearse`)".into(),
        },
        Some(r) if r.plan_sha256 != plan.sha256() => Evidence {
            name,
            outcome: Outcome::Inconclusive,
            detail: format!(
                "the last rehearsal ({}) was of another plan version ({}); rehearse again",
                fmt_time(r.at),
                short(&r.plan_sha256)
            ),
        },
        Some(r) if r.ok => Evidence {
            name,
            outcome: Outcome::Pass,
            detail: format!(
                "rollback tested and timed: {:.0} ms in total at {} ({} ago)",
                r.total_ms,
                fmt_time(r.at),
                age(r.at, facts.now)
            ),
        },
        Some(r) => Evidence {
            name,
            outcome: Outcome::Fail,
            detail: format!(
                "the rehearsal at {} failed (see `cutover rehearse`)",
                fmt_time(r.at)
            ),
        },
    };
    vec![scripts, rehearsal]
}

fn roster(plan: &Plan) -> Evidence {
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

fn owner_signoff(plan: &Plan, facts: &Facts, owner: &Role) -> Evidence {
    let name = format!("sign-off by {owner}");
    if !plan.spec.roster.contains_key(owner) {
        return Evidence {
            name,
            outcome: Outcome::Inconclusive,
            detail: format!("the roster has no `{owner}`"),
        };
    }
    let sha = plan.sha256();
    let valid = facts.signoffs.iter().rev().find(|s| {
        s.role == owner.0
            && s.plan_sha256 == sha
            && facts
                .entered(s.gate, PhaseState::RolledBack)
                .is_none_or(|rb| s.signed_at > rb)
    });
    match valid {
        Some(s) => Evidence {
            name,
            outcome: Outcome::Pass,
            detail: format!(
                "{} signed gate {} at {}",
                s.login,
                s.gate,
                fmt_time(s.signed_at)
            ),
        },
        None => Evidence {
            name,
            outcome: Outcome::Inconclusive,
            detail: format!("awaiting a sign-off by {owner} on this plan version"),
        },
    }
}
