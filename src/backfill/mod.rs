//! The backfill: keyset chunks, per-chunk checkpoints, adaptive size, health throttle, workers.
//!
//! How it works:
//! - The plan's key range is split into ranges (`cutover.backfill_ranges`). Workers — tasks in
//!   one process or in several processes on several machines — claim ranges with
//!   `FOR UPDATE SKIP LOCKED` and hold a lease that every chunk renews; an expired lease (or one
//!   held by a process of this host that no longer runs) is reclaimed.
//! - A partitioned table (sub-partitioned too) is split per leaf partition, and its chunks run
//!   against the leaf ([`partitions`]); leaves attached later get ranges, detached ones are
//!   reported.
//! - A chunk is ONE transaction: it locks its range row (the lease fence), finds the chunk's upper
//!   key by keyset, applies the plan's SET assignments to the rows of `(checkpoint, upper]` that
//!   satisfy `pending` (walking the key index, so row locks are taken in key order, under a
//!   `statement_timeout` cap), and writes the checkpoint and the chunk's stats. A crash at any
//!   instant therefore neither loses nor repeats a chunk, even for a non-idempotent transform.
//! - Chunk size adapts toward the target chunk time ([`sizer`]). Just before committing, a chunk
//!   counts the sessions waiting on its row locks; while chunks keep blocking the application,
//!   the worker halves its effective target (down to 15 %, at least 50 ms) so locks are held
//!   for less time, and lets it grow back by 20 % per unblocking chunk. Health signals are evaluated
//!   continuously and consulted before every chunk ([`throttle`]); operator controls in
//!   `cutover.backfill` take effect before the next chunk ([`operator`]).
//! - When every range is covered, a final sweep counts `pending`; rows still pending are swept
//!   again by keyset up to the largest key that existed when the sweep started, until the count
//!   is 0 (new rows are written right by dual-write, so this terminates under inserts).
//!
//! Tables (control schema, read by the TUI and `cutover status`):
//! - `cutover.backfill` — one row per plan: `state`
//!   (idle/running/throttled/pacing/paused/stopped/done/failed), `reason` (why throttled, paced,
//!   paused or failed),
//!   `paused_by` (actor of the last pause/stop), live settings (`target_chunk_ms`,
//!   `max_rows_per_sec`, `workers` = the maximum number of concurrent leases across all
//!   processes), `rows_done` (keys covered by the range pass + rows fixed by sweeps),
//!   `rows_updated`, `rows_estimate`, `throttled_seconds`, `chunk_rows`/`last_chunk_ms` (latest
//!   chunk), `chunk_retries` (chunks rolled back by their time cap or a lock conflict and retried
//!   smaller), `sweep_passes`, `key_columns`/`key_types`.
//! - `cutover.backfill_ranges` — one row per key range (`kind` range or sweep): `lo` (exclusive)
//!   and `hi` (inclusive) as JSON arrays of the key's text values, `checkpoint` (last key done),
//!   `rows_done`, `rows_updated`, `rows_estimate`, `chunks`, `done`, and the lease
//!   (`lease_owner`, `lease_host`, `lease_pid`, `lease_since`, `lease_until`).
//! - `cutover.backfill_chunks` — one row per committed chunk (written in the chunk's
//!   transaction): duration, size limit, rows scanned/updated, target: percentiles, rates,
//!   sparklines.

pub mod guard;
mod keys;
pub(crate) mod operator;
mod pacing;
mod partitions;
pub(crate) mod progress;
mod ranges;
mod runner;
mod share;
pub(crate) mod sizer;
pub mod slots;
mod split;
pub mod tail;
pub mod throttle;

use std::time::Duration;

use serde::Serialize;

pub use crate::control::backfill::settings::Tuning;
pub use crate::control::backfill::State;
use crate::control::phases::PhaseState;
use crate::plan::{BackfillSpec, Plan};
pub use operator::{pause, resume, stop, tune};
pub use pacing::Pace;
pub use partitions::PartitionProgress;
pub use progress::{progress, share, Progress, RangeProgress};
pub use runner::run;
pub use share::{thousands, Share};

/// Errors of the backfill API.
#[derive(Debug, thiserror::Error)]
pub enum BackfillError {
    /// The plan has no `[backfill]` section.
    #[error("plan `{0}` has no [backfill] section: nothing to backfill")]
    NoBackfill(String),
    /// The engine has not applied the backfill phase (refusal).
    #[error("the backfill phase of `{plan}` is {}, not applied: run `cutover advance` through dual_write and backfill first", phase_name(*.state))]
    PhaseNotApplied {
        /// Plan id.
        plan: String,
        /// The phase's state (`None` when the migration is not registered).
        state: Option<PhaseState>,
    },
    /// The backfill was stopped; `run` refuses until it is resumed (refusal).
    #[error(
        "the backfill of `{plan}` was stopped{by}: run `cutover backfill resume` to allow it again"
    )]
    Stopped {
        /// Plan id.
        plan: String,
        /// ` by <actor>` or empty.
        by: String,
    },
    /// A control action does not apply in the current state (refusal).
    #[error("cannot {action} the backfill of `{plan}`: it is {state}")]
    NotApplicable {
        /// What was attempted.
        action: &'static str,
        /// Plan id.
        plan: String,
        /// The current state.
        state: State,
    },
    /// A worker hit a non-retryable error.
    #[error("backfill of `{plan}` failed: {message}")]
    Failed {
        /// Plan id.
        plan: String,
        /// What went wrong, with the key range.
        message: String,
    },
    /// Another process holds the work and the caller asked not to wait (blocked).
    #[error("the backfill of `{plan}` is leased by {holders}")]
    Leased {
        /// Plan id.
        plan: String,
        /// `owner on host pid N since T`, comma-separated.
        holders: String,
    },
    /// An invalid setting (e.g. a tuning value out of range).
    #[error("{0}")]
    Invalid(String),
    /// The login may not do this (authorization matrix, anchored roster).
    #[error("refused: {0}")]
    Refused(String),
    /// A database error.
    #[error(transparent)]
    Db(#[from] crate::db::DbError),
}

impl From<crate::control::ControlError> for BackfillError {
    fn from(e: crate::control::ControlError) -> Self {
        match e {
            crate::control::ControlError::Db(e) => BackfillError::Db(e),
            crate::control::ControlError::Refused(why) => BackfillError::Refused(why.to_string()),
        }
    }
}

impl BackfillError {
    /// A CDC setup error of `plan`'s copy: refusals stay refusals.
    pub fn from_cdc(plan: &str, e: crate::cdc::CdcError) -> Self {
        match e {
            crate::cdc::CdcError::Refused(why) => BackfillError::Refused(why),
            crate::cdc::CdcError::Failed(message) => BackfillError::Failed {
                plan: plan.to_string(),
                message,
            },
            crate::cdc::CdcError::Db(e) => BackfillError::Db(e),
        }
    }
}

impl From<tokio_postgres::Error> for BackfillError {
    fn from(e: tokio_postgres::Error) -> Self {
        BackfillError::Db(e.into())
    }
}

/// The plan's `[backfill]` section, or an error naming the plan.
pub fn spec(plan: &Plan) -> Result<&BackfillSpec, BackfillError> {
    plan.spec
        .backfill
        .as_ref()
        .ok_or_else(|| BackfillError::NoBackfill(plan.id().to_string()))
}

/// The stored name of a phase state, `missing` when the migration is not registered.
fn phase_name(state: Option<PhaseState>) -> &'static str {
    state.map_or("missing", PhaseState::as_str)
}

impl BackfillError {
    /// True for refusals (exit code 3): the phase is not applied, the backfill is stopped, or the
    /// action does not apply.
    pub fn is_refusal(&self) -> bool {
        matches!(
            self,
            BackfillError::PhaseNotApplied { .. }
                | BackfillError::Refused(_)
                | BackfillError::Stopped { .. }
                | BackfillError::NotApplicable { .. }
                | BackfillError::NoBackfill(_)
        )
    }
}

/// Options of [`run`].
#[derive(Debug, Clone)]
pub struct RunOptions {
    /// Worker tasks in this process; `None` follows `cutover.backfill.workers` (live-tunable).
    pub local_workers: Option<u32>,
    /// How long a range lease lasts without renewal.
    pub lease: Duration,
    /// Number of key ranges to plan on first start; `None` chooses from the table size.
    pub ranges: Option<u32>,
    /// Return [`BackfillError::Leased`] instead of waiting when other processes hold all the
    /// work this process could take.
    pub no_wait: bool,
    /// How often idle/paused/throttled workers poll the control row.
    pub poll: Duration,
    /// How often the health signals are evaluated.
    pub throttle_interval: Duration,
}

impl Default for RunOptions {
    fn default() -> Self {
        RunOptions {
            local_workers: None,
            lease: Duration::from_secs(30),
            ranges: None,
            no_wait: false,
            poll: Duration::from_millis(200),
            throttle_interval: Duration::from_millis(250),
        }
    }
}

/// How a [`run`] ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum RunOutcome {
    /// The backfill is done (possibly by other processes).
    Done,
    /// Stopped by an operator or a rollback; the checkpoint is kept.
    Stopped,
    /// The caller's shutdown signal fired; the checkpoint is kept and a new run resumes.
    Shutdown,
}

/// What a [`run`] did in this process.
#[derive(Debug, Clone, Serialize)]
pub struct RunSummary {
    /// How it ended.
    pub outcome: RunOutcome,
    /// Chunks committed by this process.
    pub chunks: u64,
    /// Keys covered by this process's chunks.
    pub rows_scanned: u64,
    /// Rows this process changed.
    pub rows_updated: u64,
    /// Wall time of the run.
    pub elapsed: Duration,
}
