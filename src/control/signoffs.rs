//! `cutover.signoffs` (a role's sign-off of a gate, bound to a plan version) and
//! `cutover.overrides` (a lead's break-glass override of a gate, with the written reason).

use chrono::{DateTime, Utc};
use tokio_postgres::{Error, GenericClient, Transaction};

use super::audit::Actor;
use crate::plan::Phase;

/// A stored sign-off.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct SignoffRow {
    /// The gate signed.
    pub gate: Phase,
    /// The role signed for.
    pub role: String,
    /// PostgreSQL login.
    pub login: String,
    /// The comment given.
    pub comment: String,
    /// The plan version signed.
    pub plan_sha256: String,
    /// When.
    pub signed_at: DateTime<Utc>,
}

/// A stored override.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct OverrideRow {
    /// The gate let through.
    pub gate: Phase,
    /// The lead's login.
    pub login: String,
    /// The written reason.
    pub reason: String,
    /// The plan version it was given for.
    pub plan_sha256: String,
    /// When.
    pub at: DateTime<Utc>,
}

/// The result of [`sign`].
#[derive(Debug, Clone, PartialEq)]
pub(crate) enum Signed {
    /// Recorded now.
    New,
    /// This gate, role and plan version were signed already.
    Existing {
        /// Who signed.
        login: String,
        /// When.
        at: DateTime<Utc>,
    },
}

/// Records `by`'s sign-off of `gate` in `role` for plan version `plan_sha256`, unless that gate,
/// role and version are signed already.
pub(crate) async fn sign(
    tx: &Transaction<'_>,
    plan_id: &str,
    gate: Phase,
    role: &str,
    by: &Actor,
    plan_sha256: &str,
    comment: &str,
) -> Result<Signed, Error> {
    let inserted = tx
        .query_opt(
            "INSERT INTO cutover.signoffs (plan_id, gate, role, login, os_user, host, plan_sha256, comment)
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8)
             ON CONFLICT (plan_id, gate, role, plan_sha256) DO NOTHING
             RETURNING id",
            &[
                &plan_id,
                &gate.as_str(),
                &role,
                &by.login,
                &by.os_user,
                &by.host,
                &plan_sha256,
                &comment,
            ],
        )
        .await?;
    if inserted.is_some() {
        return Ok(Signed::New);
    }
    let r = tx
        .query_one(
            "SELECT login, signed_at FROM cutover.signoffs
              WHERE plan_id = $1 AND gate = $2 AND role = $3 AND plan_sha256 = $4",
            &[&plan_id, &gate.as_str(), &role, &plan_sha256],
        )
        .await?;
    Ok(Signed::Existing {
        login: r.get("login"),
        at: r.get("signed_at"),
    })
}

/// Records a lead's override of `gate` for plan version `plan_sha256`.
pub(crate) async fn record_override(
    tx: &Transaction<'_>,
    plan_id: &str,
    gate: Phase,
    login: &str,
    reason: &str,
    plan_sha256: &str,
) -> Result<(), Error> {
    tx.execute(
        "INSERT INTO cutover.overrides (plan_id, gate, login, reason, plan_sha256)
         VALUES ($1, $2, $3, $4, $5)",
        &[&plan_id, &gate.as_str(), &login, &reason, &plan_sha256],
    )
    .await?;
    Ok(())
}

/// The sign-offs of `plan_id`, oldest first; only those of plan version `plan_sha256` when
/// given.
pub(crate) async fn signoffs(
    c: &impl GenericClient,
    plan_id: &str,
    plan_sha256: Option<&str>,
) -> Result<Vec<SignoffRow>, Error> {
    let rows = c
        .query(
            "SELECT gate, role, login, comment, plan_sha256, signed_at FROM cutover.signoffs
              WHERE plan_id = $1 AND ($2::text IS NULL OR plan_sha256 = $2)
              ORDER BY signed_at, id",
            &[&plan_id, &plan_sha256],
        )
        .await?;
    Ok(rows
        .iter()
        .filter_map(|r| {
            Some(SignoffRow {
                gate: Phase::parse(r.get("gate"))?,
                role: r.get("role"),
                login: r.get("login"),
                comment: r.get("comment"),
                plan_sha256: r.get("plan_sha256"),
                signed_at: r.get("signed_at"),
            })
        })
        .collect())
}

/// The overrides of `plan_id`, oldest first; only those of plan version `plan_sha256` when
/// given.
pub(crate) async fn overrides(
    c: &impl GenericClient,
    plan_id: &str,
    plan_sha256: Option<&str>,
) -> Result<Vec<OverrideRow>, Error> {
    let rows = c
        .query(
            "SELECT gate, login, reason, plan_sha256, at FROM cutover.overrides
              WHERE plan_id = $1 AND ($2::text IS NULL OR plan_sha256 = $2)
              ORDER BY at, id",
            &[&plan_id, &plan_sha256],
        )
        .await?;
    Ok(rows
        .iter()
        .filter_map(|r| {
            Some(OverrideRow {
                gate: Phase::parse(r.get("gate"))?,
                login: r.get("login"),
                reason: r.get("reason"),
                plan_sha256: r.get("plan_sha256"),
                at: r.get("at"),
            })
        })
        .collect())
}
