//! Entry gates: before phase X is applied, `[gates.X]` must pass — its checks (latest result Pass
//! and run after the previous phase was applied), probes, sign-offs (bound to the plan's sha256)
//! and observation window; no freeze may be in force. Anything not measured is Inconclusive and
//! blocks. A lead's override (break-glass, with a reason) lets a gate through and stays visible.

use chrono::{DateTime, Utc};
use serde::Serialize;
use tokio_postgres::Client;

use super::state::{MigrationState, PhaseState};
use super::EngineError;
use crate::evidence::{self, ProbeContext};
use crate::outcome::Outcome;
use crate::plan::{Phase, Plan};

/// What a gate item is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum ItemKind {
    /// The previous phase must be applied.
    Order,
    /// No freeze period in force.
    Freeze,
    /// A data check's latest result.
    Check,
    /// A readiness probe.
    Probe,
    /// A role's sign-off.
    Signoff,
    /// Minimum time since the previous phase was applied.
    Observe,
}

impl ItemKind {
    /// snake_case name.
    pub fn as_str(self) -> &'static str {
        match self {
            ItemKind::Order => "order",
            ItemKind::Freeze => "freeze",
            ItemKind::Check => "check",
            ItemKind::Probe => "probe",
            ItemKind::Signoff => "signoff",
            ItemKind::Observe => "observe",
        }
    }
}

/// One evaluated requirement of a gate.
#[derive(Debug, Clone, Serialize)]
pub struct GateItem {
    /// Kind.
    pub kind: ItemKind,
    /// Check name, probe name, role, …
    pub name: String,
    /// Verdict.
    pub outcome: Outcome,
    /// Why, in one line.
    pub detail: String,
    /// Extra evidence lines (probe evidence).
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub evidence: Vec<String>,
}

/// A recorded break-glass override.
#[derive(Debug, Clone, Serialize)]
pub struct OverrideInfo {
    /// Who.
    pub login: String,
    /// Why.
    pub reason: String,
    /// When.
    pub at: DateTime<Utc>,
}

/// A gate's verdict with every item spelled out.
#[derive(Debug, Clone, Serialize)]
pub struct GateEvaluation {
    /// The phase this gate guards.
    pub phase: Phase,
    /// Combined outcome of the items.
    pub outcome: Outcome,
    /// True when the phase may be applied: Pass, or overridden.
    pub passed: bool,
    /// The override in force, if any.
    pub overridden: Option<OverrideInfo>,
    /// Every item.
    pub items: Vec<GateItem>,
    /// One line per item that is not Pass.
    pub blockers: Vec<String>,
}

/// Evaluates the entry gate of `phase` against the live database.
pub async fn evaluate_gate(
    client: &Client,
    plan: &Plan,
    st: &MigrationState,
    phase: Phase,
) -> Result<GateEvaluation, EngineError> {
    let spec = plan.gate(phase);
    let now = Utc::now();
    let prev_applied = st.previous_applied_at(phase);
    let mut items = Vec::new();

    if let Some(prev) = phase.prev() {
        let row = st.phase(prev);
        items.push(match row.state {
            PhaseState::Applied => item(
                ItemKind::Order,
                prev.as_str(),
                Outcome::Pass,
                format!("{prev} is applied"),
            ),
            s => item(
                ItemKind::Order,
                prev.as_str(),
                Outcome::Fail,
                format!("{prev} must be applied first (it is {s})"),
            ),
        });
    }
    items.push(match plan.spec.windows.frozen_reason(now) {
        Some(reason) => item(
            ItemKind::Freeze,
            "freeze",
            Outcome::Fail,
            format!("freeze in force: {reason}"),
        ),
        None => item(
            ItemKind::Freeze,
            "freeze",
            Outcome::Pass,
            "no freeze in force".into(),
        ),
    });
    for name in &spec.checks {
        items.push(check_item(client, plan, name, prev_applied, phase).await?);
    }
    for kind in &spec.probes {
        let ctx = ProbeContext {
            client,
            plan,
            gate: phase,
        };
        let r = evidence::probe(*kind).evaluate(&ctx).await;
        items.push(GateItem {
            kind: ItemKind::Probe,
            name: kind.as_str().to_string(),
            outcome: r.outcome,
            detail: r.summary,
            evidence: r.evidence,
        });
    }
    let sha = plan.sha256();
    for role in &spec.signoffs {
        let rows = client
            .query(
                "SELECT login, plan_sha256, signed_at FROM cutover.signoffs
                  WHERE plan_id = $1 AND gate = $2 AND role = $3 ORDER BY signed_at DESC",
                &[&plan.id(), &phase.as_str(), &role.as_str()],
            )
            .await?;
        let valid = rows.iter().find(|r| r.get::<_, String>(1) == sha);
        let it = match (valid, rows.first()) {
            (Some(r), _) => item(
                ItemKind::Signoff,
                role.as_str(),
                Outcome::Pass,
                format!("signed by {} at {}", r.get::<_, String>(0), fmt_time(r.get(2))),
            ),
            (None, Some(r)) => item(
                ItemKind::Signoff,
                role.as_str(),
                Outcome::Inconclusive,
                format!(
                    "void: plan changed since sign-off by {} at {} (signed sha {}, plan now {}); sign again",
                    r.get::<_, String>(0),
                    fmt_time(r.get(2)),
                    short(&r.get::<_, String>(1)),
                    short(&sha)
                ),
            ),
            (None, None) => item(
                ItemKind::Signoff,
                role.as_str(),
                Outcome::Inconclusive,
                format!(
                    "missing sign-off by {role} (roster: {})",
                    plan.spec.roster.get(role).map(|l| l.join(", ")).unwrap_or_default()
                ),
            ),
        };
        items.push(it);
    }
    if let Some(observe) = spec.observe {
        items.push(match prev_applied {
            Some(at) => {
                let elapsed = (now - at).to_std().unwrap_or_default();
                if elapsed >= observe.std() {
                    item(ItemKind::Observe, "observe", Outcome::Pass, format!("observed {} since the previous phase (needs {observe})", human(elapsed)))
                } else {
                    item(ItemKind::Observe, "observe", Outcome::Inconclusive, format!(
                        "observation window: {} of {observe} elapsed since the previous phase was applied ({} left)",
                        human(elapsed),
                        human(observe.std().saturating_sub(elapsed))
                    ))
                }
            }
            None => item(ItemKind::Observe, "observe", Outcome::Inconclusive, "observation window starts when the previous phase is applied".into()),
        });
    }

    let outcome = Outcome::all(items.iter().map(|i| i.outcome));
    let blockers: Vec<String> = items
        .iter()
        .filter(|i| i.outcome != Outcome::Pass)
        .map(|i| {
            format!(
                "{} {}: {} — {}",
                i.kind.as_str(),
                i.name,
                i.outcome,
                i.detail
            )
        })
        .collect();
    let overridden = latest_override(client, plan, phase).await?;
    let order_ok = items
        .iter()
        .all(|i| i.kind != ItemKind::Order || i.outcome == Outcome::Pass);
    let passed = outcome == Outcome::Pass || (overridden.is_some() && order_ok);
    Ok(GateEvaluation {
        phase,
        outcome,
        passed,
        overridden,
        items,
        blockers,
    })
}

fn item(kind: ItemKind, name: &str, outcome: Outcome, detail: String) -> GateItem {
    GateItem {
        kind,
        name: name.to_string(),
        outcome,
        detail,
        evidence: Vec::new(),
    }
}

async fn check_item(
    client: &Client,
    plan: &Plan,
    name: &str,
    prev_applied: Option<DateTime<Utc>>,
    phase: Phase,
) -> Result<GateItem, EngineError> {
    let row = client
        .query_opt(
            "SELECT outcome, summary, started_at FROM cutover.check_results
              WHERE plan_id = $1 AND check_name = $2 ORDER BY id DESC LIMIT 1",
            &[&plan.id(), &name],
        )
        .await?;
    let Some(r) = row else {
        return Ok(item(
            ItemKind::Check,
            name,
            Outcome::Inconclusive,
            "never run (run `cutover check`)".into(),
        ));
    };
    let outcome = Outcome::parse(r.get(0));
    let summary: String = r.get(1);
    let started: DateTime<Utc> = r.get(2);
    if let Some(prev) = prev_applied.filter(|p| started < *p) {
        let prev_phase = phase
            .prev()
            .map(|p| p.as_str())
            .unwrap_or("the previous phase");
        return Ok(item(
            ItemKind::Check,
            name,
            Outcome::Inconclusive,
            format!(
                "stale: last run at {} is before {prev_phase} was applied at {}; run it again",
                fmt_time(started),
                fmt_time(prev)
            ),
        ));
    }
    Ok(item(
        ItemKind::Check,
        name,
        outcome,
        format!("{summary} (at {})", fmt_time(started)),
    ))
}

/// SQL condition on `cutover.overrides o`: the override has not been used yet — it was given
/// after the last time its phase was applied. An override lets one apply through; after a
/// rollback, re-applying needs a new one.
pub(crate) const UNCONSUMED: &str = "o.at > coalesce((SELECT max(h.at) FROM cutover.phase_history h
      WHERE h.plan_id = o.plan_id AND h.phase = o.gate AND h.to_state = 'applied'), '-infinity')";

async fn latest_override(
    client: &Client,
    plan: &Plan,
    phase: Phase,
) -> Result<Option<OverrideInfo>, EngineError> {
    let row = client
        .query_opt(
            &format!(
                "SELECT login, reason, at FROM cutover.overrides o
                  WHERE plan_id = $1 AND gate = $2 AND plan_sha256 = $3 AND {UNCONSUMED}
                  ORDER BY id DESC LIMIT 1"
            ),
            &[&plan.id(), &phase.as_str(), &plan.sha256()],
        )
        .await?;
    Ok(row.map(|r| OverrideInfo {
        login: r.get(0),
        reason: r.get(1),
        at: r.get(2),
    }))
}

/// `2026-11-22 05:01:02Z`.
pub(crate) fn fmt_time(t: DateTime<Utc>) -> String {
    t.format("%Y-%m-%d %H:%M:%SZ").to_string()
}

/// First 12 hex digits of a sha256.
pub(crate) fn short(sha: &str) -> &str {
    sha.get(..12).unwrap_or(sha)
}

/// A duration rounded to 0.1 s.
pub(crate) fn human(d: std::time::Duration) -> String {
    format!("{:.1}s", d.as_secs_f64())
}
