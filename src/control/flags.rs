//! `cutover.flags`: feature flags (a plan's read switch is one), each changed by a login.

use chrono::{DateTime, Utc};
use serde::Serialize;
use tokio_postgres::{Error, GenericClient, Transaction};

/// A flag's current value.
#[derive(Debug, Clone, Serialize)]
pub struct Flag {
    /// Name.
    pub name: String,
    /// ON?
    pub enabled: bool,
    /// Last changed by (login).
    pub updated_by: String,
    /// Last changed at.
    pub updated_at: DateTime<Utc>,
    /// The plan whose read switch it is, if any.
    pub plan_id: Option<String>,
}

/// Reads a flag (`None` when it does not exist).
pub(crate) async fn get(c: &impl GenericClient, name: &str) -> Result<Option<Flag>, Error> {
    let row = c
        .query_opt(
            "SELECT name, enabled, updated_by, updated_at, plan_id FROM cutover.flags WHERE name = $1",
            &[&name],
        )
        .await?;
    Ok(row.map(|r| Flag {
        name: r.get("name"),
        enabled: r.get("enabled"),
        updated_by: r.get("updated_by"),
        updated_at: r.get("updated_at"),
        plan_id: r.get("plan_id"),
    }))
}

/// Creates the flag (off) if it does not exist and locks it for the caller's transaction;
/// returns whether it is on and the plan whose read switch it is.
pub(crate) async fn lock(
    tx: &Transaction<'_>,
    name: &str,
) -> Result<(bool, Option<String>), Error> {
    tx.execute(
        "INSERT INTO cutover.flags (name, enabled) VALUES ($1, false) ON CONFLICT (name) DO NOTHING",
        &[&name],
    )
    .await?;
    let row = tx
        .query_one(
            "SELECT enabled, plan_id FROM cutover.flags WHERE name = $1 FOR UPDATE",
            &[&name],
        )
        .await?;
    Ok((row.get("enabled"), row.get("plan_id")))
}

/// Sets the flag, by the session's login.
pub(crate) async fn set(tx: &Transaction<'_>, name: &str, enabled: bool) -> Result<(), Error> {
    tx.execute(
        "UPDATE cutover.flags SET enabled = $2, updated_by = session_user, updated_at = clock_timestamp()
          WHERE name = $1",
        &[&name, &enabled],
    )
    .await?;
    Ok(())
}

/// Turns the flag off if it is on, by the session's login; true when it was on.
pub(crate) async fn turn_off(tx: &Transaction<'_>, name: &str) -> Result<bool, Error> {
    let n = tx
        .execute(
            "UPDATE cutover.flags SET enabled = false, updated_by = session_user,
                    updated_at = clock_timestamp()
              WHERE name = $1 AND enabled",
            &[&name],
        )
        .await?;
    Ok(n > 0)
}

/// Sets `plan_id`'s read-switch flag as its phase transition requires (creating it if needed),
/// by the session's login.
pub(crate) async fn set_read_switch(
    tx: &Transaction<'_>,
    name: &str,
    enabled: bool,
    plan_id: &str,
) -> Result<(), Error> {
    tx.execute(
        "INSERT INTO cutover.flags (name, enabled, plan_id, updated_by, updated_at)
         VALUES ($1, $2, $3, session_user, clock_timestamp())
         ON CONFLICT (name) DO UPDATE SET enabled = EXCLUDED.enabled,
             updated_by = session_user, updated_at = clock_timestamp()",
        &[&name, &enabled, &plan_id],
    )
    .await?;
    Ok(())
}

/// Registers `name` as `plan_id`'s read switch: created off, or claimed when no plan owns it.
pub(crate) async fn register_read_switch(
    tx: &Transaction<'_>,
    name: &str,
    plan_id: &str,
) -> Result<(), Error> {
    tx.execute(
        "INSERT INTO cutover.flags (name, enabled, plan_id) VALUES ($1, false, $2)
         ON CONFLICT (name) DO UPDATE SET plan_id = EXCLUDED.plan_id
         WHERE cutover.flags.plan_id IS NULL",
        &[&name, &plan_id],
    )
    .await?;
    Ok(())
}
