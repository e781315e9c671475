//! Operator notes on the audit trail.

use serde::Serialize;
use serde_json::json;
use tokio_postgres::Client;

use super::EngineError;
use crate::control::audit::{self, Actor, AuditAction, NewEntry};
use crate::control::phases as state;
use crate::control::Refusal;
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
        return Err(EngineError::Refused(Refusal::BadRequest(
            "a note needs some text".into(),
        )));
    }
    state::ensure_registered(client, plan, actor).await?;
    let tx = client.transaction().await?;
    audit::lock_notes(&tx).await?;
    if let Some((seq, last)) = audit::last_note_by(&tx, plan.id(), &actor.login).await? {
        if last.as_deref() == Some(text) {
            tx.commit().await?;
            return Ok(NoteOutcome::Duplicate { audit_seq: seq });
        }
    }
    let entry = audit::append(
        &tx,
        NewEntry {
            actor,
            plan_id: plan.id(),
            plan_sha256: &plan.sha256(),
            action: AuditAction::Note,
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
