//! Sign-offs and break-glass overrides. Identity is the `session_user` of the operator's
//! connection, checked against the plan's roster; OS user and host are recorded too. A sign-off
//! binds to the plan's sha256: when the file changes, earlier sign-offs stop counting.

use chrono::{DateTime, Utc};
use serde::Serialize;
use serde_json::json;
use tokio_postgres::Client;

use super::EngineError;
use crate::control::anchors::authorize;
use crate::control::audit::{self, Actor, AuditAction, NewEntry};
use crate::control::facts::Facts;
use crate::control::phases as state;
use crate::control::signoffs::{self, Signed};
use crate::control::Refusal;
use crate::plan::Action;
use crate::plan::{Phase, Plan, Role};
use crate::rules::{self, fmt_time};

/// The result of [`signoff`].
#[derive(Debug, Clone, Serialize)]
#[serde(tag = "result", rename_all = "snake_case")]
pub enum SignoffOutcome {
    /// Recorded now.
    Recorded {
        /// Audit entry.
        audit_seq: i64,
    },
    /// The same login already signed this gate for this role and this plan version: no-op.
    AlreadySigned {
        /// Who signed.
        login: String,
        /// When.
        at: DateTime<Utc>,
    },
}

/// Records `actor`'s sign-off of `gate` in `role`. Refused when the login does not hold the role
/// in the (anchored) roster, or the gate does not ask for that role.
pub async fn signoff(
    client: &mut Client,
    plan: &Plan,
    actor: &Actor,
    gate: Phase,
    role: &Role,
    comment: &str,
) -> Result<SignoffOutcome, EngineError> {
    if let Err(refusal) = may_sign(plan, actor, gate, role) {
        record_refusal(client, plan, actor, gate, role, &refusal.to_string()).await;
        return Err(EngineError::Refused(refusal));
    }
    // The file's roster may not be the anchored one: that one decides.
    authorize(&*client, plan, actor, Action::Signoff).await?;
    state::ensure_registered(client, plan, actor).await?;
    let sha = plan.sha256();
    let tx = client.transaction().await?;
    let signed = signoffs::sign(&tx, plan.id(), gate, role.as_str(), actor, &sha, comment).await?;
    if let Signed::Existing { login, at } = signed {
        tx.commit().await?;
        return Ok(SignoffOutcome::AlreadySigned { login, at });
    }
    let entry = audit::append(
        &tx,
        NewEntry {
            actor,
            plan_id: plan.id(),
            plan_sha256: &sha,
            action: AuditAction::Signoff,
            phase: Some(gate),
            details: json!({ "gate": gate.as_str(), "role": role.as_str(), "comment": comment }),
        },
    )
    .await?;
    tx.commit().await?;
    Ok(SignoffOutcome::Recorded {
        audit_seq: entry.seq,
    })
}

fn may_sign(plan: &Plan, actor: &Actor, gate: Phase, role: &Role) -> Result<(), Refusal> {
    let Some(logins) = plan.spec.roster.get(role) else {
        return Err(Refusal::WrongRole(format!(
            "role `{role}` is not in the roster of plan `{}`",
            plan.id()
        )));
    };
    if !logins.iter().any(|l| l == &actor.login) {
        let held = plan.roles_of(&actor.login);
        let held = if held.is_empty() {
            "no role".to_string()
        } else {
            held.iter()
                .map(|r| r.as_str())
                .collect::<Vec<_>>()
                .join(", ")
        };
        return Err(Refusal::WrongRole(format!(
            "login `{}` does not hold role `{role}` (holders: {}; `{}` holds {held}); nobody signs for a role they do not hold",
            actor.login,
            logins.join(", "),
            actor.login
        )));
    }
    if !plan.gate(gate).signoffs.contains(role) {
        return Err(Refusal::WrongRole(format!(
            "gate {gate} does not ask for a sign-off by `{role}` (it asks for: {})",
            plan.gate(gate)
                .signoffs
                .iter()
                .map(|r| r.as_str())
                .collect::<Vec<_>>()
                .join(", ")
        )));
    }
    Ok(())
}

/// Best effort: a refused sign-off is worth an audit entry, but an outsider may lack the
/// privileges to write one; the refusal stands either way.
async fn record_refusal(
    client: &mut Client,
    plan: &Plan,
    actor: &Actor,
    gate: Phase,
    role: &Role,
    reason: &str,
) {
    // A refused action never registers (and so never anchors) a plan: it is only audited.
    let result: Result<(), EngineError> = async {
        let tx = client.transaction().await?;
        audit::append(
            &tx,
            NewEntry {
                actor,
                plan_id: plan.id(),
                plan_sha256: &plan.sha256(),
                action: AuditAction::SignoffRefused,
                phase: Some(gate),
                details: json!({ "gate": gate.as_str(), "role": role.as_str(), "reason": reason }),
            },
        )
        .await?;
        tx.commit().await?;
        Ok(())
    }
    .await;
    if let Err(e) = result {
        tracing::warn!("the refused sign-off could not be audited: {e}");
    }
}

/// The result of [`override_gate`].
#[derive(Debug, Clone, Serialize)]
#[serde(tag = "result", rename_all = "snake_case")]
pub enum OverrideOutcome {
    /// Recorded now.
    Recorded {
        /// Audit entry.
        audit_seq: i64,
    },
    /// The same override (gate, plan version, reason) exists and is not used yet: no-op.
    AlreadyOverridden {
        /// When it was recorded.
        at: DateTime<Utc>,
    },
}

/// Break-glass: a lead lets `gate` through despite its blockers, with a written reason. Audited
/// with the blockers at that moment, and shown as an override from then on. It lets one apply of
/// the phase through (for this plan version); after a rollback, re-applying needs a new one.
pub async fn override_gate(
    client: &mut Client,
    plan: &Plan,
    actor: &Actor,
    gate: Phase,
    reason: &str,
) -> Result<OverrideOutcome, EngineError> {
    let reason = reason.trim();
    if reason.is_empty() {
        return Err(EngineError::Refused(Refusal::BadRequest(
            "an override needs a written reason (--reason \"…\")".into(),
        )));
    }
    authorize(&*client, plan, actor, Action::Override).await?;
    state::ensure_registered(client, plan, actor).await?;
    let sha = plan.sha256();
    let facts = Facts::load(&*client, plan.id()).await?;
    if let Some(o) = facts.overrides.iter().find(|o| {
        o.gate == gate
            && o.plan_sha256 == sha
            && o.reason == reason
            && rules::gate::override_unconsumed(&facts, gate, o.at)
    }) {
        return Ok(OverrideOutcome::AlreadyOverridden { at: o.at });
    }
    let eval = super::gate::evaluate_gate(client, plan, gate).await?;
    let tx = client.transaction().await?;
    signoffs::record_override(&tx, plan.id(), gate, &actor.login, reason, &sha).await?;
    let entry = audit::append(
        &tx,
        NewEntry {
            actor,
            plan_id: plan.id(),
            plan_sha256: &sha,
            action: AuditAction::GateOverride,
            phase: Some(gate),
            details: json!({
                "gate": gate.as_str(),
                "reason": reason,
                "outcome_at_override": eval.outcome,
                "blockers_at_override": eval.blockers,
            }),
        },
    )
    .await?;
    tx.commit().await?;
    tracing::warn!(
        "gate {gate} overridden by {} at {}: {reason}",
        actor.login,
        fmt_time(Utc::now())
    );
    Ok(OverrideOutcome::Recorded {
        audit_seq: entry.seq,
    })
}
