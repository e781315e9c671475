//! Feature flags (the read switch is one), stored through [`crate::control::flags`]. Every change is audited; setting a
//! flag to the value it has is a reported no-op. A plan's read-switch flag may be turned ON only
//! while its read_switch phase is applied; turning it OFF is always allowed (it is the fastest
//! rollback there is).

use serde::Serialize;
use serde_json::json;
use tokio_postgres::{Client, GenericClient};

use super::EngineError;
use crate::control::audit::{self, Actor, AuditAction, NewEntry};
use crate::control::flags;
use crate::control::phases::{self as state, PhaseState};
use crate::control::Refusal;
use crate::plan::{Action, Phase};

pub use crate::control::flags::Flag;

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
    Ok(flags::get(client, name).await?)
}

/// Sets a flag (creating it if needed), audited, in one transaction.
pub async fn set_flag(
    client: &mut Client,
    actor: &Actor,
    name: &str,
    enabled: bool,
) -> Result<FlagChange, EngineError> {
    let owner = flags::get(&*client, name).await?.and_then(|f| f.plan_id);
    if let Some(plan_id) = &owner {
        crate::control::anchors::authorize_anchored(&*client, plan_id, actor, Action::Flag).await?;
    }
    let tx = client.transaction().await?;
    let (current, plan_id) = flags::lock(&tx, name).await?;
    if current == enabled {
        let flag = get_flag(&tx, name).await?;
        tx.commit().await?;
        return match flag {
            Some(flag) => Ok(FlagChange {
                flag,
                changed: false,
                audit_seq: None,
            }),
            None => Err(EngineError::Refused(Refusal::WrongState(format!(
                "flag `{name}` vanished"
            )))),
        };
    }
    let mut sha = String::new();
    if let Some(pid) = &plan_id {
        let st = state::load(&tx, pid).await?;
        sha = st.plan_sha256.clone();
        let rs = st.phase(Phase::ReadSwitch).state;
        if enabled && rs != PhaseState::Applied {
            return Err(EngineError::Refused(Refusal::WrongState(format!(
                "flag `{name}` is the read switch of plan `{pid}`, whose read_switch phase is {rs}; \
                 turn it on with `cutover advance` so the gate is checked"
            ))));
        }
        if !enabled && rs == PhaseState::Applied {
            tracing::warn!(
                "flag `{name}` turned OFF while read_switch of `{pid}` is applied: reads go back to the old shape; \
                 run `cutover rollback --phase read_switch` to record the rollback"
            );
        }
    }
    flags::set(&tx, name, enabled).await?;
    let entry = audit::append(
        &tx,
        NewEntry {
            actor,
            plan_id: plan_id.as_deref().unwrap_or(""),
            plan_sha256: &sha,
            action: AuditAction::FlagSet,
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
        None => Err(EngineError::Refused(Refusal::WrongState(format!(
            "flag `{name}` vanished"
        )))),
    }
}
