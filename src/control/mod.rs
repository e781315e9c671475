//! The control layer: sole owner of the `cutover` schema. Every read and write of a `cutover.*`
//! table, and every state transition with its guard, lives here, one module per table family:
//! - [`schema`] — the versioned bootstrap and its migrations (`migrations/*.sql`);
//! - [`audit`] — the hash-chained, append-only audit log;
//! - [`phases`] — migrations, phases and their history: the phase state machine;
//! - [`baselines`] — health snapshots taken before a phase, for the error budget;
//! - [`backfill`] — the backfill's state row and transitions, ranges, leases, chunk statistics;
//! - [`checks`] — check results and golden-query baselines;
//! - [`flags`] — feature flags (a plan's read switch is one);
//! - [`probes`] — readiness-probe evaluations and metrics scrapes;
//! - [`rehearsals`] — rehearsals of a plan's phases and their timings;
//! - [`signoffs`] — sign-offs and break-glass overrides;
//! - [`statements`] — per-statement progress of apply and rollback scripts;
//! - [`facts`] — everything the rules judge, loaded in one consistent read;
//! - [`outbox`] — notifications enqueued with the change that caused them, and their deliveries;
//! - [`own_transactions`] — each Cutover process's count of its own transactions;
//! - [`attestations`] — scorecard categories attested by hand;
//! - [`census`] — call counts of legacy-column readers between hidden-reader censuses;
//! - [`refusal`] — why an action is refused, by kind;
//! - [`slots`] — the cluster's replication slots (read, not owned).

pub mod anchors;
pub(crate) mod attestations;
pub mod audit;
pub mod backfill;
pub(crate) mod baselines;
pub(crate) mod census;
pub(crate) mod checks;
pub(crate) mod facts;
pub(crate) mod flags;
pub(crate) mod grants;
pub mod index_builds;
pub mod outbox;
pub(crate) mod own_transactions;
pub mod phases;
pub(crate) mod probes;
pub(crate) mod refusal;
pub(crate) mod rehearsals;
pub mod schema;
pub(crate) mod signoffs;
pub mod slots;
pub(crate) mod statements;

use crate::db::DbError;
pub use refusal::Refusal;

/// Errors of control-state operations.
#[derive(Debug, thiserror::Error)]
pub enum ControlError {
    /// A statement failed.
    #[error(transparent)]
    Db(#[from] DbError),
    /// A transition's guard refused it (another session holds the plan, wrong state, …).
    #[error("refused: {0}")]
    Refused(Refusal),
}

impl From<tokio_postgres::Error> for ControlError {
    fn from(e: tokio_postgres::Error) -> Self {
        ControlError::Db(e.into())
    }
}

/// Runs `sql` (columns `name`, `outcome`, `n`; `$1` = plan id) and types its rows: the outcome tallies of
/// check results and probe results share this shape.
async fn outcome_counts(
    c: &impl tokio_postgres::GenericClient,
    sql: &str,
    plan_id: &str,
) -> Result<Vec<(String, crate::outcome::Outcome, f64)>, tokio_postgres::Error> {
    let rows = c.query(sql, &[&plan_id]).await?;
    Ok(rows
        .iter()
        .map(|r| {
            (
                r.get("name"),
                crate::outcome::Outcome::parse(r.get("outcome")),
                r.get("n"),
            )
        })
        .collect())
}
