//! `cutover.attestations`: a scorecard category attested by hand — who looked, where, when —
//! recorded with its audit entry in one transaction, like a sign-off.

use serde_json::json;
use tokio_postgres::Client;

use super::audit::{self, Actor, NewEntry};
use super::ControlError;
use crate::plan::Plan;

/// What is attested.
#[derive(Debug, Clone)]
pub struct NewAttestation<'a> {
    /// Category key (`observability`).
    pub category: &'a str,
    /// The role attesting (the category's owner).
    pub role: &'a str,
    /// Where the evidence can be seen.
    pub url: &'a str,
}

/// Records `actor`'s attestation for `plan`'s current version; returns its audit sequence.
pub async fn record(
    client: &mut Client,
    plan: &Plan,
    actor: &Actor,
    a: &NewAttestation<'_>,
) -> Result<i64, ControlError> {
    let sha = plan.sha256();
    let tx = client.transaction().await?;
    tx.execute(
        "INSERT INTO cutover.attestations
             (plan_id, category, role, login, os_user, host, url, plan_sha256)
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8)",
        &[
            &plan.id(),
            &a.category,
            &a.role,
            &actor.login,
            &actor.os_user,
            &actor.host,
            &a.url,
            &sha,
        ],
    )
    .await?;
    let entry = audit::append(
        &tx,
        NewEntry {
            actor,
            plan_id: plan.id(),
            plan_sha256: &sha,
            action: "attest",
            phase: None,
            details: json!({ "category": a.category, "role": a.role, "url": a.url }),
        },
    )
    .await?;
    tx.commit().await?;
    Ok(entry.seq)
}
