//! Operator notes on the audit trail.

use serde::Serialize;
use serde_json::json;
use tokio_postgres::Client;

use super::EngineError;
use crate::control::audit::{self, Actor, NewEntry};
use crate::control::phases as state;
use crate::plan::Plan;

/// The result of [`note`].
#[derive(Debug, Clone, Serialize)]
#[serde(tag = "result", rename_all = "snake_case")]
pub enum NoteOutcome {
    /// Appended.
    Recorded {
        /// Audit entry.
        audit_seq: i64,
    },
    /// The same login's latest note on this plan has the same text: not repeated.
    Duplicate {
        /// The existing entry.
        audit_seq: i64,
    },
}

/// Adds an operator note to the audit trail of `plan`.
pub async fn note(
    client: &mut Client,
    plan: &Plan,
    actor: &Actor,
    text: &str,
) -> Result<NoteOutcome, EngineError> {
    let text = text.trim();
    crate::control::anchors::authorize(&*client, plan, actor, crate::plan::Action::Note).await?;
    if text.is_empty() {
        return Err(EngineError::Refused("a note needs some text".into()));
    }
    state::ensure_registered(client, plan, actor).await?;
    let tx = client.transaction().await?;
    tx.query_one(
        "SELECT pg_advisory_xact_lock(hashtext('cutover:note'))",
        &[],
    )
    .await?;
    let last = tx
        .query_opt(
            "SELECT seq, details->>'text' FROM cutover.audit_log
              WHERE plan_id = $1 AND action = 'note' AND login = $2 ORDER BY seq DESC LIMIT 1",
            &[&plan.id(), &actor.login],
        )
        .await?;
    if let Some(r) = last {
        if r.get::<_, Option<String>>(1).as_deref() == Some(text) {
            tx.commit().await?;
            return Ok(NoteOutcome::Duplicate {
                audit_seq: r.get(0),
            });
        }
    }
    let entry = audit::append(
        &tx,
        NewEntry {
            actor,
            plan_id: plan.id(),
            plan_sha256: &plan.sha256(),
            action: "note",
            phase: None,
            details: json!({ "text": text }),
        },
    )
    .await?;
    tx.commit().await?;
    Ok(NoteOutcome::Recorded {
        audit_seq: entry.seq,
    })
}
