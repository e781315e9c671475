//! The control layer: sole owner of the `cutover` schema. Every read and write of a `cutover.*`
//! table, and every state transition with its guard, lives here, one module per table family:
//! - [`schema`] — the versioned bootstrap and its migrations (`migrations/*.sql`);
//! - [`audit`] — the hash-chained, append-only audit log;
//! - [`phases`] — migrations, phases and their history: the phase state machine;
//! - [`facts`] — everything the rules judge, loaded in one consistent read;
//! - [`attestations`] — scorecard categories attested by hand;
//! - [`census`] — call counts of legacy-column readers between hidden-reader censuses.

pub mod anchors;
pub mod attestations;
pub mod audit;
pub mod backfill;
pub mod census;
pub mod facts;
pub mod grants;
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
