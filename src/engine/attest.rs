//! Attestations: the owner of a scorecard category that no probe can see (Observability: the
//! dashboards and alerts live outside the database) says where it can be checked. Recorded and
//! audited like a sign-off: the anchored roster decides who may, and it binds to the plan version.

use serde::Serialize;
use serde_json::json;

use super::EngineError;
use crate::control::anchors::authorize;
use crate::control::attestations::{self, NewAttestation};
use crate::control::audit::{self, Actor, AuditAction, NewEntry};
use crate::control::phases as state;
use crate::control::Refusal;
use crate::plan::{Action, Plan, Role};
use crate::rules::CategoryKind;

/// The result of [`attest`].
#[derive(Debug, Clone, Serialize)]
#[serde(tag = "result", rename_all = "snake_case")]
pub enum AttestOutcome {
    /// Recorded now.
    Recorded {
        /// Audit entry.
        audit_seq: i64,
    },
}

/// Records `actor`'s attestation of `category` at `url`. Refused for a category with automated
/// evidence only, a `url` that is not an http(s) address, or a login that does not hold the
/// category's owner role in the anchored roster (audited).
pub async fn attest(
    client: &mut tokio_postgres::Client,
    plan: &Plan,
    actor: &Actor,
    category: CategoryKind,
    url: &str,
) -> Result<AttestOutcome, EngineError> {
    let url = url.trim();
    check(category, url).map_err(EngineError::Refused)?;
    authorize(&*client, plan, actor, Action::Signoff).await?;
    let anchored = crate::control::anchors::load(&*client, plan.id()).await?;
    let owner = Role(category.owner().to_string());
    let holds = anchored
        .map(|a| a.governance.roles_of(&actor.login))
        .unwrap_or_else(|| plan.roles_of(&actor.login))
        .contains(&owner);
    if !holds {
        let why = format!(
            "login `{}` does not hold `{owner}` in the anchored roster; {} is attested by its owner",
            actor.login,
            category.title()
        );
        record_refusal(client, plan, actor, category, &why).await;
        return Err(EngineError::Refused(Refusal::WrongRole(why)));
    }
    state::ensure_registered(client, plan, actor).await?;
    let audit_seq = attestations::record(
        client,
        plan,
        actor,
        &NewAttestation {
            category: category.key(),
            role: owner.as_str(),
            url,
        },
    )
    .await?;
    Ok(AttestOutcome::Recorded { audit_seq })
}

/// The checks that need no database.
fn check(category: CategoryKind, url: &str) -> Result<(), Refusal> {
    if !category.attestable() {
        return Err(Refusal::BadRequest(format!(
            "{} is judged from automated evidence only; attest observability instead",
            category.title()
        )));
    }
    let scheme_ok = url.starts_with("https://") || url.starts_with("http://");
    if !scheme_ok || url.len() <= "https://".len() || url.chars().any(char::is_whitespace) {
        return Err(Refusal::BadRequest(format!(
            "`{url}` is not an http(s) address: attest where the dashboards and alerts can be seen, e.g. https://grafana.example.com/d/ledger"
        )));
    }
    Ok(())
}

/// Best effort, like a refused sign-off: audited when the login may write the audit log.
async fn record_refusal(
    client: &mut tokio_postgres::Client,
    plan: &Plan,
    actor: &Actor,
    category: CategoryKind,
    why: &str,
) {
    let result: Result<(), EngineError> = async {
        let tx = client.transaction().await?;
        audit::append(
            &tx,
            NewEntry {
                actor,
                plan_id: plan.id(),
                plan_sha256: &plan.sha256(),
                action: AuditAction::AttestRefused,
                phase: None,
                details: json!({ "category": category.key(), "reason": why }),
            },
        )
        .await?;
        tx.commit().await?;
        Ok(())
    }
    .await;
    if let Err(e) = result {
        tracing::warn!("the refused attestation could not be audited: {e}");
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_observability_at_an_http_address() {
        let ok = "https://grafana.example.com/d/ledger";
        assert!(check(CategoryKind::Observability, ok).is_ok());
        let why = check(CategoryKind::DataQuality, ok)
            .unwrap_err()
            .to_string();
        assert!(why.contains("automated evidence only"), "{why}");
        for bad in ["", "grafana", "https://", "https://a b"] {
            let why = check(CategoryKind::Observability, bad)
                .unwrap_err()
                .to_string();
            assert!(why.contains("not an http(s) address"), "{bad}: {why}");
        }
    }
}
