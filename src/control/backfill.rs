//! `cutover.backfill`, `cutover.backfill_ranges` and `cutover.backfill_chunks`: the backfill's
//! control state and its transitions.

use serde::{Deserialize, Serialize};

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
    /// The name stored in the database.
    pub fn as_str(self) -> &'static str {
        match self {
            State::Idle => "idle",
            State::Running => "running",
            State::Throttled => "throttled",
            State::Paused => "paused",
            State::Stopped => "stopped",
            State::Done => "done",
            State::Failed => "failed",
        }
    }

    /// Parses a stored name.
    pub fn parse(s: &str) -> Option<State> {
        [
            State::Idle,
            State::Running,
            State::Throttled,
            State::Paused,
            State::Stopped,
            State::Done,
            State::Failed,
        ]
        .into_iter()
        .find(|st| st.as_str() == s)
    }
}

impl std::fmt::Display for State {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}
