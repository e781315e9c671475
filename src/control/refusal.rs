//! Why Cutover refuses an action: one kind per reason, each with the text an operator reads
//! (its `Display`). A refusal changes nothing and exits 3.

use crate::plan::Denied;

/// Why an action is refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Refusal {
    /// The login's roles do not permit the action.
    #[error(transparent)]
    Denied(#[from] Denied),
    /// The plan file changes the anchored governance (roster, gates, authorization) and no
    /// lead approved it.
    #[error("{0}")]
    Unapproved(String),
    /// A sign-off or attestation for a role the login does not hold, or the gate does not ask for.
    #[error("{0}")]
    WrongRole(String),
    /// The phase cannot be rolled back.
    #[error("{0}")]
    Irreversible(String),
    /// Another session holds the plan's action lock.
    #[error(
        "{holder} is applying or rolling back plan `{plan_id}` right now; wait for it to finish"
    )]
    LockHeld {
        /// Who holds it (`pid N (application, login L)`).
        holder: String,
        /// The plan.
        plan_id: String,
    },
    /// Phases are applied in order, or one changed meanwhile.
    #[error("{0}")]
    OutOfOrder(String),
    /// The plan is not registered (or anchored) yet.
    #[error("{0}")]
    NotRegistered(String),
    /// The control schema is missing.
    #[error("the control schema `cutover` does not exist on this database: an operator must bootstrap it first (any operator command does, e.g. `cutover bootstrap`)")]
    SchemaMissing,
    /// The control schema is older than this build.
    #[error("the control schema is at version {have}, this Cutover needs {want}: an operator's next command upgrades it")]
    SchemaBehind {
        /// The version on the server.
        have: i32,
        /// The version this build needs.
        want: i32,
    },
    /// The request itself is incomplete or malformed (no note text, no reason, a bad URL).
    #[error("{0}")]
    BadRequest(String),
    /// The state the action works on is not what it needs (a flag vanished, the read switch is
    /// not applied, a rehearsed statement ended its transaction).
    #[error("{0}")]
    WrongState(String),
}
