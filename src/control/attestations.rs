//! `cutover.attestations`: a scorecard category attested by hand — who looked, where, when —
//! recorded with its audit entry in one transaction, like a sign-off.

use chrono::{DateTime, Utc};
use serde::Serialize;
use serde_json::json;
use tokio_postgres::{Client, GenericClient};

use super::audit::{self, Actor, AuditAction, NewEntry};
use super::ControlError;
use crate::db::DbError;
use crate::plan::Plan;

/// What is attested.
#[derive(Debug, Clone)]
pub(crate) struct NewAttestation<'a> {
    /// Category key (`observability`).
    pub category: &'a str,
    /// The role attesting (the category's owner).
    pub role: &'a str,
    /// Where the evidence can be seen.
    pub url: &'a str,
}

/// Records `actor`'s attestation for `plan`'s current version; returns its audit sequence.
pub(crate) async fn record(
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
            action: AuditAction::Attest,
            phase: None,
            details: json!({ "category": a.category, "role": a.role, "url": a.url }),
        },
    )
    .await?;
    tx.commit().await?;
    Ok(entry.seq)
}

/// One recorded attestation.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Attestation {
    /// Category key (`observability`).
    pub category: String,
    /// The role attesting.
    pub role: String,
    /// Who (PostgreSQL login).
    pub login: String,
    /// The operator's OS user.
    pub os_user: String,
    /// The operator's host.
    pub host: String,
    /// Where the evidence can be seen.
    pub url: String,
    /// The plan version attested (an attestation counts only for it).
    pub plan_sha256: String,
    /// When.
    pub at: DateTime<Utc>,
}

/// Every attestation recorded for `plan_id`, oldest first.
pub(crate) async fn list(
    client: &impl GenericClient,
    plan_id: &str,
) -> Result<Vec<Attestation>, DbError> {
    Ok(client
        .query(
            "SELECT category, role, login, os_user, host, url, plan_sha256, at
               FROM cutover.attestations WHERE plan_id = $1 ORDER BY id",
            &[&plan_id],
        )
        .await?
        .iter()
        .map(|r| Attestation {
            category: r.get("category"),
            role: r.get("role"),
            login: r.get("login"),
            os_user: r.get("os_user"),
            host: r.get("host"),
            url: r.get("url"),
            plan_sha256: r.get("plan_sha256"),
            at: r.get("at"),
        })
        .collect())
}
