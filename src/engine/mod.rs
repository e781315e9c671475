//! The phase engine: state machine, gates, sign-offs, lock-safe DDL, rollback, rehearsal.
//!
//! A migration moves through [`Phase::ALL`]; each phase has a [`PhaseState`] persisted in
//! `cutover.phases`, and every transition commits in one transaction together with its audit
//! entry. The library API below is shared by the headless CLI and the TUI worker:
//!
//! - [`status`] — everything an operator needs to decide: phases, the current gate with every
//!   blocker spelled out, the readiness scorecard, sign-offs (void ones marked), overrides and the
//!   fastest safe rollback;
//! - [`advance`] — apply the next phase if its gate passes (or [`apply_phase`] for an explicit one);
//! - [`signoff()`], [`override_gate`] — approvals and break-glass; [`attest()`] — an owner's word
//!   where no probe can look (Observability);
//! - [`rollback()`] — undo the current phase, or several in reverse order;
//! - [`rehearse()`] — apply and roll back every phase in a transaction that is thrown away;
//! - [`set_flag`], [`get_flag`], [`note`], [`report()`].
//!
//! Functions that change state take a [`RunOptions`]: a monitor connection configuration (so the
//! DDL runner can name who blocks it) and an optional event channel for live progress.

mod apply;
pub(crate) mod attest;
pub(crate) mod ddl;
pub(crate) mod flags;
pub(crate) mod gate;
pub(crate) mod notes;
pub(crate) mod rehearse;
pub(crate) mod report;
pub(crate) mod rollback;
pub(crate) mod signoff;

use serde::Serialize;
use tokio::sync::mpsc::UnboundedSender;

use crate::control::{ControlError, Refusal};
use crate::db::{DbConfig, DbError};
use crate::plan::Phase;

pub use crate::control::phases::{MigrationState, PhaseState};
pub use crate::rules::Status;
pub use apply::{advance, apply_phase, Applied};
pub use attest::{attest, AttestOutcome};
pub use ddl::{Blocker, DdlError, LockLoss, LockPolicy};
pub use flags::{get_flag, set_flag, Flag, FlagChange};
pub use gate::evaluate_gate;
pub use notes::{note, NoteOutcome};
pub use rehearse::{catalog_fingerprint, rehearse, Rehearsal};
pub use report::{report, Report};
pub use rollback::{plan_rollback, rollback, rollback_confirmed, RollbackOutcome};
pub use signoff::{override_gate, signoff, OverrideOutcome, SignoffOutcome};

impl From<ControlError> for EngineError {
    fn from(e: ControlError) -> Self {
        match e {
            ControlError::Db(e) => EngineError::Db(e),
            ControlError::Refused(why) => EngineError::Refused(why),
        }
    }
}

/// Reads the status of `plan`: one consistent read of the control schema, judged by the rules.
/// It writes nothing and runs no probe (probe results are the latest recorded, marked stale
/// when facts changed since). Without a control schema, nothing has started.
pub async fn status(
    client: &impl tokio_postgres::GenericClient,
    plan: &crate::plan::Plan,
) -> Result<Status, EngineError> {
    let facts = crate::control::facts::Facts::read(client, plan.id()).await?;
    Ok(crate::rules::status::build(plan, &facts))
}

/// Errors of engine actions. [`EngineError::exit_code`] maps them to the CLI's exit codes.
#[derive(Debug, thiserror::Error)]
pub enum EngineError {
    /// A database operation failed.
    #[error(transparent)]
    Db(#[from] DbError),
    /// A DDL statement failed or could not get its locks.
    #[error(transparent)]
    Ddl(#[from] DdlError),
    /// The action is not allowed (wrong role, irreversible phase, another process busy, …).
    #[error("refused: {0}")]
    Refused(Refusal),
    /// The gate of the phase did not pass.
    #[error("gate {} blocked:\n{}", .0.phase, .0.blockers.join("\n"))]
    Blocked(Box<crate::rules::GateEvaluation>),
    /// A hook of another area (checks, evidence) failed before a phase.
    #[error("before {phase}: {message}")]
    Hook {
        /// The phase about to be applied.
        phase: Phase,
        /// What failed.
        message: String,
    },
}

impl From<crate::cdc::CdcError> for EngineError {
    fn from(e: crate::cdc::CdcError) -> Self {
        match e {
            crate::cdc::CdcError::Db(e) => EngineError::Db(e),
            other => EngineError::Db(DbError::Query(other.to_string())),
        }
    }
}

impl From<tokio_postgres::Error> for EngineError {
    fn from(e: tokio_postgres::Error) -> Self {
        EngineError::Db(DbError::from(e))
    }
}

impl EngineError {
    /// The CLI exit code: 2 blocked (gate or a failing before-phase hook), 3 refused, 1 otherwise.
    pub fn exit_code(&self) -> u8 {
        match self {
            EngineError::Blocked(_) | EngineError::Hook { .. } => crate::exit::BLOCKED,
            EngineError::Refused(_) => crate::exit::REFUSED,
            _ => crate::exit::ERROR,
        }
    }
}

/// Live progress of an engine action, for the TUI (the CLI logs the same through `tracing`).
#[derive(Debug, Clone, Serialize)]
#[serde(tag = "event", rename_all = "snake_case")]
pub enum EngineEvent {
    /// A statement starts (attempt numbers start at 1).
    Statement {
        /// Phase.
        phase: Phase,
        /// `apply` or `rollback`.
        direction: String,
        /// 0-based index in the script.
        index: usize,
        /// First line of the statement.
        summary: String,
        /// Attempt number.
        attempt: u32,
    },
    /// The statement waits for a lock held by these sessions.
    Blocked {
        /// Who blocks.
        blockers: Vec<Blocker>,
    },
    /// A concurrent index build's progress changed.
    IndexBuild {
        /// Where it is.
        build: crate::control::index_builds::IndexBuild,
    },
    /// An attempt lost its lock (timed out, or aborted to break a deadlock); the runner backs
    /// off and retries.
    Retry {
        /// Attempt that lost it.
        attempt: u32,
        /// How.
        loss: LockLoss,
        /// Back-off before the next attempt, ms.
        backoff_ms: u64,
    },
    /// A phase changed state.
    Transition {
        /// Phase.
        phase: Phase,
        /// New state.
        state: PhaseState,
    },
}

/// How state-changing actions run.
#[derive(Debug, Clone, Default)]
pub struct RunOptions {
    /// Where to open a second, monitoring connection that reports who blocks a waiting statement
    /// (`pg_blocking_pids`). Without it the runner still retries but cannot name blockers.
    pub monitor: Option<DbConfig>,
    /// Receives live progress.
    pub events: Option<UnboundedSender<EngineEvent>>,
}

impl RunOptions {
    /// Options with a monitoring connection to `cfg`.
    pub fn with_monitor(cfg: DbConfig) -> RunOptions {
        RunOptions {
            monitor: Some(cfg),
            events: None,
        }
    }

    pub(crate) fn emit(&self, event: EngineEvent) {
        if let Some(tx) = &self.events {
            let _ = tx.send(event);
        }
    }
}
