//! The control layer: sole owner of the `cutover` schema. Every read and write of a `cutover.*`
//! table, and every state transition with its guard, lives here, one module per table family:
//! - [`schema`] — the versioned bootstrap and its migrations (`migrations/*.sql`);
//! - [`audit`] — the hash-chained, append-only audit log;
//! - [`phases`] — migrations, phases and their history: the phase state machine;
//! - [`facts`] — everything the rules judge, loaded in one consistent read;
//! - [`own_transactions`] — each Cutover process's count of its own transactions.

pub mod anchors;
pub mod audit;
pub mod backfill;
pub mod facts;
pub mod grants;
pub mod own_transactions;
pub mod phases;
pub mod schema;

use crate::db::DbError;

/// Errors of control-state operations.
#[derive(Debug, thiserror::Error)]
pub enum ControlError {
    /// A statement failed.
    #[error(transparent)]
    Db(#[from] DbError),
    /// A transition's guard refused it (another session holds the plan, wrong state, …).
    #[error("refused: {0}")]
    Refused(String),
}

impl From<tokio_postgres::Error> for ControlError {
    fn from(e: tokio_postgres::Error) -> Self {
        ControlError::Db(e.into())
    }
}
