//! Attestations: the owner of a scorecard category that no probe can see (Observability: the
//! dashboards and alerts live outside the database) says where it can be checked. Recorded and
//! audited like a sign-off: the anchored roster decides who may, and it binds to the plan version.

use serde::Serialize;

use super::EngineError;
use crate::control::anchors::authorize;
use crate::control::attestations::{self, NewAttestation};
use crate::control::audit::Actor;
use crate::control::phases as state;
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
/// evidence only, a login that does not hold the category's owner role, or a `url` that is not
/// an http(s) address.
pub async fn attest(
    client: &mut tokio_postgres::Client,
    plan: &Plan,
    actor: &Actor,
    category: CategoryKind,
    url: &str,
) -> Result<AttestOutcome, EngineError> {
    let url = url.trim();
    check(plan, actor, category, url).map_err(EngineError::Refused)?;
    authorize(&*client, plan, actor, Action::Signoff).await?;
    let anchored = crate::control::anchors::load(&*client, plan.id()).await?;
    let owner = Role(category.owner().to_string());
    let holds = anchored
        .map(|a| a.governance.roles_of(&actor.login))
        .unwrap_or_else(|| plan.roles_of(&actor.login))
        .contains(&owner);
    if !holds {
        return Err(EngineError::Refused(format!(
            "login `{}` does not hold `{owner}` in the anchored roster; {} is attested by its owner",
            actor.login,
            category.title()
        )));
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
fn check(plan: &Plan, actor: &Actor, category: CategoryKind, url: &str) -> Result<(), String> {
    if !category.attestable() {
        return Err(format!(
            "{} is judged from automated evidence only; attest observability instead",
            category.title()
        ));
    }
    let scheme_ok = url.starts_with("https://") || url.starts_with("http://");
    if !scheme_ok || url.len() <= "https://".len() || url.chars().any(char::is_whitespace) {
        return Err(format!(
            "`{url}` is not an http(s) address: attest where the dashboards and alerts can be seen, e.g. https://grafana.example.com/d/ledger"
        ));
    }
    let owner = category.owner();
    if !plan
        .roles_of(&actor.login)
        .iter()
        .any(|r| r.as_str() == owner)
    {
        return Err(format!(
            "login `{}` does not hold `{owner}`; {} is attested by its owner",
            actor.login,
            category.title()
        ));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn plan() -> Plan {
        Plan::parse(
            "plans/accounts-balance-cents.toml",
            include_str!("../../plans/accounts-balance-cents.toml"),
        )
        .expect("the demo plan parses")
    }

    fn actor(login: &str) -> Actor {
        Actor {
            login: login.into(),
            os_user: "dana".into(),
            host: "ops-1".into(),
        }
    }

    #[test]
    fn only_the_owner_attests_observability_at_an_http_address() {
        let p = plan();
        let ok = "https://grafana.example.com/d/ledger";
        assert!(check(&p, &actor("postgres"), CategoryKind::Observability, ok).is_ok());
        let why = check(&p, &actor("mallory"), CategoryKind::Observability, ok).unwrap_err();
        assert!(why.contains("does not hold `sre`"), "{why}");
        let why = check(&p, &actor("postgres"), CategoryKind::DataQuality, ok).unwrap_err();
        assert!(why.contains("automated evidence only"), "{why}");
        for bad in ["", "grafana", "https://", "https://a b"] {
            let why = check(&p, &actor("postgres"), CategoryKind::Observability, bad).unwrap_err();
            assert!(why.contains("not an http(s) address"), "{bad}: {why}");
        }
    }
}
