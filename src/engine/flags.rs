//! Feature flags in `cutover.flags` (the read switch is one). Every change is audited; setting a
//! flag to the value it has is a reported no-op. A plan's read-switch flag may be turned ON only
//! while its read_switch phase is applied; turning it OFF is always allowed (it is the fastest
//! rollback there is).

use chrono::{DateTime, Utc};
use serde::Serialize;
use serde_json::json;
use tokio_postgres::{Client, GenericClient};

use super::EngineError;
use crate::control::audit::{self, Actor, NewEntry};
use crate::control::phases::{self as state, PhaseState};
use crate::plan::{Action, Phase};

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

/// The result of [`set_flag`].
#[derive(Debug, Clone, Serialize)]
pub struct FlagChange {
    /// The flag after the call.
    pub flag: Flag,
    /// False when it already had the value.
    pub changed: bool,
    /// Audit entry of the change.
    pub audit_seq: Option<i64>,
}

/// Reads a flag (`None` when it does not exist).
pub async fn get_flag(
    client: &impl GenericClient,
    name: &str,
) -> Result<Option<Flag>, EngineError> {
    let row = client
        .query_opt(
            "SELECT name, enabled, updated_by, updated_at, plan_id FROM cutover.flags WHERE name = $1",
            &[&name],
        )
        .await?;
    Ok(row.map(|r| Flag {
        name: r.get(0),
        enabled: r.get(1),
        updated_by: r.get(2),
        updated_at: r.get(3),
        plan_id: r.get(4),
    }))
}

/// Sets a flag (creating it if needed), audited, in one transaction.
pub async fn set_flag(
    client: &mut Client,
    actor: &Actor,
    name: &str,
    enabled: bool,
) -> Result<FlagChange, EngineError> {
    let owner: Option<String> = client
        .query_opt(
            "SELECT plan_id FROM cutover.flags WHERE name = $1",
            &[&name],
        )
        .await?
        .and_then(|r| r.get(0));
    if let Some(plan_id) = &owner {
        crate::control::anchors::authorize_anchored(&*client, plan_id, actor, Action::Flag).await?;
    }
    let tx = client.transaction().await?;
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
    let current: bool = row.get(0);
    let plan_id: Option<String> = row.get(1);
    if current == enabled {
        let flag = get_flag(&tx, name).await?;
        tx.commit().await?;
        return match flag {
            Some(flag) => Ok(FlagChange {
                flag,
                changed: false,
                audit_seq: None,
            }),
            None => Err(EngineError::Refused(format!("flag `{name}` vanished"))),
        };
    }
    let mut sha = String::new();
    if let Some(pid) = &plan_id {
        let st = state::load(&tx, pid).await?;
        sha = st.plan_sha256.clone();
        let rs = st.phase(Phase::ReadSwitch).state;
        if enabled && rs != PhaseState::Applied {
            return Err(EngineError::Refused(format!(
                "flag `{name}` is the read switch of plan `{pid}`, whose read_switch phase is {rs}; \
                 turn it on with `cutover advance` so the gate is checked"
            )));
        }
        if !enabled && rs == PhaseState::Applied {
            tracing::warn!(
                "flag `{name}` turned OFF while read_switch of `{pid}` is applied: reads go back to the old shape; \
                 run `cutover rollback --phase read_switch` to record the rollback"
            );
        }
    }
    tx.execute(
        "UPDATE cutover.flags SET enabled = $2, updated_by = session_user, updated_at = clock_timestamp()
          WHERE name = $1",
        &[&name, &enabled],
    )
    .await?;
    let entry = audit::append(
        &tx,
        NewEntry {
            actor,
            plan_id: plan_id.as_deref().unwrap_or(""),
            plan_sha256: &sha,
            action: "flag.set",
            phase: plan_id.as_ref().map(|_| Phase::ReadSwitch),
            details: json!({ "flag": name, "enabled": enabled, "was": current }),
        },
    )
    .await?;
    let flag = get_flag(&tx, name).await?;
    tx.commit().await?;
    match flag {
        Some(flag) => Ok(FlagChange {
            flag,
            changed: true,
            audit_seq: Some(entry.seq),
        }),
        None => Err(EngineError::Refused(format!("flag `{name}` vanished"))),
    }
}
