//! `cutover.plan_anchors`: the governance (roster, gates, authorization matrix) a plan's first
//! registered version fixed. Every state-changing action is authorized against it — never
//! against whatever roster the plan file on disk claims — and a plan version that changes it
//! is refused until a lead of the anchored version approves it.

use chrono::{DateTime, Utc};
use serde::Serialize;
use serde_json::json;
use tokio_postgres::{Client, GenericClient};

use super::audit::{self, Actor, AuditAction, NewEntry};
use super::{ControlError, Refusal};
use crate::db::DbError;
use crate::plan::{Action, Governance, Plan, Role};

/// The anchored governance of one plan.
#[derive(Debug, Clone, Serialize)]
pub struct Anchor {
    /// Roster, gates and matrix in force.
    pub governance: Governance,
    /// Its hash.
    pub governance_sha256: String,
    /// The plan version that set it.
    pub plan_sha256: String,
    /// Who anchored or last approved it.
    pub anchored_by: String,
    /// When.
    pub anchored_at: DateTime<Utc>,
}

/// The anchor of `plan_id`, if it has one.
pub async fn load(client: &impl GenericClient, plan_id: &str) -> Result<Option<Anchor>, DbError> {
    let row = client
        .query_opt(
            "SELECT governance, governance_sha256, plan_sha256, anchored_by, anchored_at
               FROM cutover.plan_anchors WHERE plan_id = $1",
            &[&plan_id],
        )
        .await?;
    let Some(r) = row else {
        return Ok(None);
    };
    let governance: Governance = serde_json::from_value(r.get("governance"))
        .map_err(|e| DbError::Query(format!("the anchored governance is unreadable: {e}")))?;
    Ok(Some(Anchor {
        governance,
        governance_sha256: r.get("governance_sha256"),
        plan_sha256: r.get("plan_sha256"),
        anchored_by: r.get("anchored_by"),
        anchored_at: r.get("anchored_at"),
    }))
}

/// Anchors `plan`'s governance unless the plan already has an anchor (the caller's
/// transaction registers the migration).
pub async fn anchor(client: &impl GenericClient, plan: &Plan, login: &str) -> Result<(), DbError> {
    let gov = plan.governance();
    let value = serde_json::to_value(&gov)
        .map_err(|e| DbError::Query(format!("cannot store the governance: {e}")))?;
    client
        .execute(
            "INSERT INTO cutover.plan_anchors
                 (plan_id, governance, governance_sha256, plan_sha256, anchored_by)
             VALUES ($1, $2, $3, $4, $5) ON CONFLICT (plan_id) DO NOTHING",
            &[&plan.id(), &value, &gov.sha256(), &plan.sha256(), &login],
        )
        .await?;
    Ok(())
}

/// Whether `actor` may do `action` on `plan`, judged by the anchored governance; returns the
/// roles that permit it. A refusal says why and is audited.
pub async fn authorize(
    client: &impl GenericClient,
    plan: &Plan,
    actor: &Actor,
    action: Action,
) -> Result<Vec<Role>, ControlError> {
    let anchored = match load(client, plan.id()).await? {
        Some(a) => a,
        None => {
            let registered = client
                .query_opt(
                    "SELECT 1 FROM cutover.migrations WHERE plan_id = $1",
                    &[&plan.id()],
                )
                .await?
                .is_some();
            if !registered {
                // The first registration anchors this very file's governance.
                return plan
                    .governance()
                    .permits(&actor.login, action)
                    .map_err(|d| ControlError::Refused(d.into()));
            }
            anchor(client, plan, &actor.login).await?;
            load(client, plan.id())
                .await?
                .ok_or_else(|| DbError::Query("the plan anchor vanished".into()))?
        }
    };
    let verdict = judge(&anchored, plan, &actor.login, action);
    if let Err(reason) = &verdict {
        audit_refusal(
            client,
            plan.id(),
            &plan.sha256(),
            actor,
            action,
            &reason.to_string(),
        )
        .await;
    }
    verdict.map_err(ControlError::Refused)
}

/// Like [`authorize`] for an action named by the anchored plan alone (a flag owned by a plan,
/// set without its file): judged by the anchor; a plan with no anchor yet permits nothing.
pub async fn authorize_anchored(
    client: &impl GenericClient,
    plan_id: &str,
    actor: &Actor,
    action: Action,
) -> Result<Vec<Role>, ControlError> {
    let Some(anchored) = load(client, plan_id).await? else {
        return Err(ControlError::Refused(Refusal::NotRegistered(format!(
            "plan `{plan_id}` has no anchored roster yet: act on it with its plan file first"
        ))));
    };
    let verdict = anchored.governance.permits(&actor.login, action);
    if let Err(reason) = &verdict {
        audit_refusal(
            client,
            plan_id,
            &anchored.plan_sha256,
            actor,
            action,
            &reason.to_string(),
        )
        .await;
    }
    verdict.map_err(|d| ControlError::Refused(d.into()))
}

/// The pure part of [`authorize`].
fn judge(
    anchored: &Anchor,
    plan: &Plan,
    login: &str,
    action: Action,
) -> Result<Vec<Role>, Refusal> {
    let file = plan.governance().sha256();
    if action != Action::Approve && file != anchored.governance_sha256 {
        return Err(Refusal::Unapproved(format!(
            "plan `{}` in {} changes the roster, gates or authorization anchored by {} at {} \
             (anchored {}, this file {}): a lead of the anchored version must approve it first \
             (`cutover approve {}`)",
            plan.id(),
            plan.path,
            anchored.anchored_by,
            anchored.anchored_at.format("%Y-%m-%d %H:%M:%SZ"),
            short(&anchored.governance_sha256),
            short(&file),
            plan.path
        )));
    }
    Ok(anchored.governance.permits(login, action)?)
}

/// Records a refusal in the audit log. Best effort: a login that may not write the control
/// schema is refused all the same.
async fn audit_refusal(
    client: &impl GenericClient,
    plan_id: &str,
    plan_sha256: &str,
    actor: &Actor,
    action: Action,
    why: &str,
) {
    let entry = NewEntry {
        actor,
        plan_id,
        plan_sha256,
        action: AuditAction::AuthzRefused,
        phase: None,
        details: json!({ "action": action.as_str(), "reason": why }),
    };
    if let Err(e) = audit::append(client, entry).await {
        tracing::warn!(
            "could not audit the refusal of {action} for {}: {e}",
            actor.login
        );
    }
}

/// The result of [`approve`].
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(tag = "result", rename_all = "snake_case")]
pub enum Approval {
    /// The file's governance is the anchored one: nothing to approve.
    Unchanged,
    /// The file's governance is anchored now.
    Approved {
        /// Audit entry.
        audit_seq: i64,
    },
}

/// A lead of the anchored version approves the governance of `plan`'s file (audited).
pub async fn approve(
    client: &mut Client,
    plan: &Plan,
    actor: &Actor,
) -> Result<Approval, ControlError> {
    authorize(&*client, plan, actor, Action::Approve).await?;
    let gov = plan.governance();
    let tx = client.transaction().await?;
    let Some(before) = load(&tx, plan.id()).await? else {
        return Err(ControlError::Refused(Refusal::NotRegistered(format!(
            "plan `{}` is not registered yet: its first registration anchors it",
            plan.id()
        ))));
    };
    if before.governance_sha256 == gov.sha256() {
        return Ok(Approval::Unchanged);
    }
    let value = serde_json::to_value(&gov)
        .map_err(|e| DbError::Query(format!("cannot store the governance: {e}")))?;
    tx.execute(
        "UPDATE cutover.plan_anchors
            SET governance = $2, governance_sha256 = $3, plan_sha256 = $4, anchored_by = $5,
                anchored_at = clock_timestamp()
          WHERE plan_id = $1",
        &[
            &plan.id(),
            &value,
            &gov.sha256(),
            &plan.sha256(),
            &actor.login,
        ],
    )
    .await?;
    let entry = audit::append(
        &tx,
        NewEntry {
            actor,
            plan_id: plan.id(),
            plan_sha256: &plan.sha256(),
            action: AuditAction::PlanApprove,
            phase: None,
            details: json!({
                "from_governance": before.governance_sha256,
                "to_governance": gov.sha256(),
                "from_plan": before.plan_sha256,
                "path": plan.path,
            }),
        },
    )
    .await?;
    tx.commit().await?;
    Ok(Approval::Approved {
        audit_seq: entry.seq,
    })
}

fn short(sha: &str) -> &str {
    sha.get(..12).unwrap_or(sha)
}
