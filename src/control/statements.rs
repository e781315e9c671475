//! `cutover.statement_progress`: which statements of a phase's apply or rollback script have
//! started and completed, so an interrupted script resumes after its last completed statement.

use serde::{Deserialize, Serialize};
use tokio_postgres::{Error, GenericClient, Transaction};

use crate::plan::Phase;

/// Whether a script is being applied or rolled back.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Direction {
    /// The phase's `apply` script.
    Apply,
    /// The phase's `rollback` script.
    Rollback,
}

impl Direction {
    /// Stored name.
    pub fn as_str(self) -> &'static str {
        match self {
            Direction::Apply => "apply",
            Direction::Rollback => "rollback",
        }
    }
}

/// How far one statement got.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub(crate) enum StatementState {
    /// Started (or interrupted while running).
    Running,
    /// Completed.
    Done,
}

impl StatementState {
    /// Stored name.
    pub(crate) fn as_str(self) -> &'static str {
        match self {
            StatementState::Running => "running",
            StatementState::Done => "done",
        }
    }
}

/// One tracked statement of a script.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct StatementRow {
    /// Position in the script, from 0.
    pub idx: i32,
    /// The statement's text.
    pub statement: String,
    /// How far it got.
    pub state: StatementState,
}

/// Forgets the progress of `phase`'s `direction` script (a fresh run starts).
pub(crate) async fn clear(
    tx: &Transaction<'_>,
    plan_id: &str,
    phase: Phase,
    direction: Direction,
) -> Result<(), Error> {
    tx.execute(
        "DELETE FROM cutover.statement_progress WHERE plan_id = $1 AND phase = $2 AND direction = $3",
        &[&plan_id, &phase.as_str(), &direction.as_str()],
    )
    .await?;
    Ok(())
}

/// Where a statement is: which script, its position and text.
#[derive(Debug, Clone, Copy)]
pub(crate) struct At<'a> {
    /// Plan id.
    pub plan_id: &'a str,
    /// Phase.
    pub phase: Phase,
    /// Apply or rollback.
    pub direction: Direction,
    /// Position in the script, from 0.
    pub idx: i32,
    /// The statement's text.
    pub statement: &'a str,
}

/// Records how far the statement `at` got, after `attempts` attempts.
pub(crate) async fn mark(
    c: &impl GenericClient,
    at: At<'_>,
    state: StatementState,
    attempts: i32,
) -> Result<(), Error> {
    c.execute(
        "INSERT INTO cutover.statement_progress (plan_id, phase, direction, idx, statement, state, attempts, finished_at)
         VALUES ($1, $2, $3, $4, $5, $6, $7, CASE WHEN $8 THEN clock_timestamp() END)
         ON CONFLICT (plan_id, phase, direction, idx) DO UPDATE
            SET statement = EXCLUDED.statement, state = EXCLUDED.state,
                attempts = EXCLUDED.attempts, finished_at = EXCLUDED.finished_at",
        &[
            &at.plan_id,
            &at.phase.as_str(),
            &at.direction.as_str(),
            &at.idx,
            &at.statement,
            &state.as_str(),
            &attempts,
            &(state == StatementState::Done),
        ],
    )
    .await?;
    Ok(())
}

/// The tracked statements of `phase`'s `direction` script.
pub(crate) async fn progress(
    c: &impl GenericClient,
    plan_id: &str,
    phase: Phase,
    direction: Direction,
) -> Result<Vec<StatementRow>, Error> {
    let rows = c
        .query(
            "SELECT idx, statement, state FROM cutover.statement_progress
              WHERE plan_id = $1 AND phase = $2 AND direction = $3",
            &[&plan_id, &phase.as_str(), &direction.as_str()],
        )
        .await?;
    Ok(rows
        .iter()
        .map(|r| StatementRow {
            idx: r.get("idx"),
            statement: r.get("statement"),
            state: if r.get::<_, &str>("state") == StatementState::Done.as_str() {
                StatementState::Done
            } else {
                StatementState::Running
            },
        })
        .collect())
}
