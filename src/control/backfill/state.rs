//! `cutover.backfill`: the plan's backfill state, the typed sets of states each transition may
//! leave, and the state row (created from the plan's settings, read whole).

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use tokio_postgres::{Error, GenericClient};

use crate::plan::BackfillSpec;

/// The state of a plan's backfill (`cutover.backfill.state`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum State {
    /// Not started, or no worker is running.
    Idle,
    /// Workers are applying chunks.
    Running,
    /// A health signal (or a time window) holds the chunks back; see the reason.
    Throttled,
    /// The latency guard slows the chunks down: each is followed by a pause (see the reason);
    /// chunks still run.
    Pacing,
    /// An operator paused it; see `paused_by`.
    Paused,
    /// An operator (or a rollback of the backfill phase) stopped it; `run` refuses until resumed.
    Stopped,
    /// Every range is covered and the final sweep found no pending row.
    Done,
    /// A chunk failed with a non-retryable error; see the reason.
    Failed,
}

impl State {
    /// Every state.
    pub const ALL: [State; 8] = [
        State::Idle,
        State::Running,
        State::Throttled,
        State::Pacing,
        State::Paused,
        State::Stopped,
        State::Done,
        State::Failed,
    ];

    /// The name stored in the database.
    pub fn as_str(self) -> &'static str {
        match self {
            State::Idle => "idle",
            State::Running => "running",
            State::Throttled => "throttled",
            State::Pacing => "pacing",
            State::Paused => "paused",
            State::Stopped => "stopped",
            State::Done => "done",
            State::Failed => "failed",
        }
    }

    /// Parses a stored name.
    pub fn parse(s: &str) -> Option<State> {
        State::ALL.into_iter().find(|st| st.as_str() == s)
    }

    /// Parses a stored name; the schema's CHECK admits no other, so anything else reads as idle.
    pub(super) fn stored(s: &str) -> State {
        State::parse(s).unwrap_or(State::Idle)
    }

    /// A run is under way: chunks run at full speed, paced, or held back by a throttle.
    pub fn under_way(self) -> bool {
        matches!(self, State::Running | State::Throttled | State::Pacing)
    }
}

impl std::fmt::Display for State {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// The states an operator's pause may leave.
pub(crate) const PAUSE_FROM: &[State] = &[
    State::Idle,
    State::Running,
    State::Throttled,
    State::Pacing,
    State::Paused,
];
/// The states an operator's stop may leave.
pub(crate) const STOP_FROM: &[State] = &[
    State::Idle,
    State::Running,
    State::Throttled,
    State::Pacing,
    State::Paused,
    State::Failed,
];
/// The states an operator's resume may leave.
pub(crate) const RESUME_FROM: &[State] = &[State::Paused, State::Stopped, State::Failed];
/// The states a health signal may throttle, or the latency guard pace.
pub(crate) const THROTTLE_FROM: &[State] =
    &[State::Idle, State::Running, State::Throttled, State::Pacing];
/// The states a cleared health signal (or a guard back at full speed) lets run again.
pub(crate) const CLEAR_FROM: &[State] = &[State::Throttled, State::Pacing];
/// The states shown idle when the last worker shut down at its checkpoint.
pub(crate) const IDLE_FROM: &[State] = &[State::Running, State::Throttled, State::Pacing];
/// The states a worker's failure, or a worker finding the phase no longer applied, may leave.
pub(crate) const WORKER_HALT_FROM: &[State] = &[
    State::Idle,
    State::Running,
    State::Throttled,
    State::Pacing,
    State::Paused,
    State::Stopped,
    State::Failed,
];
/// The states the final sweep may declare done.
pub(crate) const DONE_FROM: &[State] =
    &[State::Idle, State::Running, State::Throttled, State::Pacing];
/// The states a rollback of the backfill phase stops: all of them.
pub(crate) const ROLLBACK_STOP_FROM: &[State] = &State::ALL;

/// The plan's state row (`cutover.backfill`).
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct Row {
    /// State.
    pub state: State,
    /// Why it is throttled, paused, stopped or failed.
    pub reason: String,
    /// Who paused or stopped it.
    pub paused_by: Option<String>,
    /// Live target chunk time (ms).
    pub target_chunk_ms: i32,
    /// Live rate cap (rows/s, 0 = none).
    pub max_rows_per_sec: i32,
    /// Live maximum of concurrent workers across all processes.
    pub workers: i32,
    /// Keys covered by the range pass plus rows fixed by sweeps.
    pub rows_done: i64,
    /// Rows changed.
    pub rows_updated: i64,
    /// Estimated rows in total.
    pub rows_estimate: Option<i64>,
    /// Seconds spent throttled.
    pub throttled_seconds: f64,
    /// Size limit of the latest chunk.
    pub chunk_rows: Option<i32>,
    /// Duration of the latest chunk (ms).
    pub last_chunk_ms: Option<f64>,
    /// Final-sweep passes started.
    pub sweep_passes: i32,
    /// Chunks rolled back and retried smaller.
    pub chunk_retries: i64,
    /// SQL types of the key columns, once ranges are planned.
    pub key_types: Option<Vec<String>>,
    /// When the first chunk ran (or ranges were planned).
    pub started_at: Option<DateTime<Utc>>,
    /// When it was found done.
    pub finished_at: Option<DateTime<Utc>>,
    /// When the state last changed.
    pub state_changed_at: Option<DateTime<Utc>>,
    /// Seconds from `started_at` to `finished_at` (or to now while unfinished).
    pub elapsed_seconds: Option<f64>,
}

impl Row {
    fn from_row(r: &tokio_postgres::Row) -> Row {
        Row {
            state: State::stored(r.get("state")),
            reason: r.get("reason"),
            paused_by: r.get("paused_by"),
            target_chunk_ms: r.get("target_chunk_ms"),
            max_rows_per_sec: r.get("max_rows_per_sec"),
            workers: r.get("workers"),
            rows_done: r.get("rows_done"),
            rows_updated: r.get("rows_updated"),
            rows_estimate: r.get("rows_estimate"),
            throttled_seconds: r.get("throttled_seconds"),
            chunk_rows: r.get("chunk_rows"),
            last_chunk_ms: r.get("last_chunk_ms"),
            sweep_passes: r.get("sweep_passes"),
            chunk_retries: r.get("chunk_retries"),
            key_types: r.get("key_types"),
            started_at: r.get("started_at"),
            finished_at: r.get("finished_at"),
            state_changed_at: r.get("state_changed_at"),
            elapsed_seconds: r.get("elapsed_seconds"),
        }
    }
}

/// Reads the plan's state row, if it exists.
pub(crate) async fn load(c: &impl GenericClient, plan_id: &str) -> Result<Option<Row>, Error> {
    let row = c
        .query_opt(
            "SELECT state, reason, paused_by, target_chunk_ms, max_rows_per_sec, workers, \
             rows_done, rows_updated, rows_estimate, throttled_seconds, chunk_rows, last_chunk_ms, \
             sweep_passes, chunk_retries, key_types, started_at, finished_at, state_changed_at, \
             extract(epoch FROM coalesce(finished_at, clock_timestamp()) - started_at)::float8 \
             AS elapsed_seconds FROM cutover.backfill WHERE plan_id = $1",
            &[&plan_id],
        )
        .await?;
    Ok(row.as_ref().map(Row::from_row))
}

/// Creates the plan's state row from the plan's settings if it does not exist.
pub(crate) async fn ensure_row(
    c: &impl GenericClient,
    plan_id: &str,
    spec: &BackfillSpec,
) -> Result<(), Error> {
    let target = i32::try_from(spec.target_chunk_time.as_millis()).unwrap_or(i32::MAX);
    let rate = i32::try_from(spec.max_rows_per_second).unwrap_or(i32::MAX);
    let workers = i32::try_from(spec.workers.max(1)).unwrap_or(i32::MAX);
    c.execute(
        "INSERT INTO cutover.backfill (plan_id, target_chunk_ms, max_rows_per_sec, workers) \
         VALUES ($1, $2, $3, $4) ON CONFLICT (plan_id) DO NOTHING",
        &[&plan_id, &target, &rate, &workers],
    )
    .await?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn guards_keep_done_and_halts_final() {
        for (name, from) in [
            ("pause", PAUSE_FROM),
            ("stop", STOP_FROM),
            ("resume", RESUME_FROM),
            ("throttle", THROTTLE_FROM),
            ("clear", CLEAR_FROM),
            ("idle", IDLE_FROM),
            ("worker halt", WORKER_HALT_FROM),
            ("done", DONE_FROM),
        ] {
            assert!(!from.contains(&State::Done), "{name} may leave done");
        }
        for from in [THROTTLE_FROM, CLEAR_FROM, IDLE_FROM, DONE_FROM] {
            for halted in [State::Paused, State::Stopped, State::Failed] {
                assert!(!from.contains(&halted), "{halted} left by a worker");
            }
        }
        assert!(!PAUSE_FROM.contains(&State::Stopped) && !PAUSE_FROM.contains(&State::Failed));
        assert!(!STOP_FROM.contains(&State::Stopped) && STOP_FROM.contains(&State::Failed));
        assert_eq!(RESUME_FROM, [State::Paused, State::Stopped, State::Failed]);
        assert!(ROLLBACK_STOP_FROM.contains(&State::Done));
        // Pacing moves like a throttle: a worker enters and leaves it, an operator halts it.
        for from in [
            PAUSE_FROM,
            STOP_FROM,
            THROTTLE_FROM,
            CLEAR_FROM,
            IDLE_FROM,
            DONE_FROM,
        ] {
            assert!(from.contains(&State::Pacing));
        }
        assert!(State::Pacing.under_way() && !State::Paused.under_way());
    }

    #[test]
    fn states_round_trip() {
        for s in State::ALL {
            assert_eq!(State::parse(s.as_str()), Some(s));
        }
        assert_eq!(State::parse("missing"), None);
    }
}
