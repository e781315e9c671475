//! `cutover.backfill`, `cutover.backfill_ranges` and `cutover.backfill_chunks`, one file per job:
//! - [`state`] — the state row, the typed states and the sets each transition may leave;
//! - [`transitions`] — every guarded transition of the state (operator, throttle, workers,
//!   final step, rollback);
//! - [`settings`] — the live settings: retuning them, and the view a worker reads before each
//!   chunk;
//! - [`leases`] — the key ranges, their leases and the final sweep's ranges;
//! - [`partitions`] — the ranges of leaf partitions, and closing those of detached leaves;
//! - [`checkpoint`] — the chunk's fence and checkpoint statements (the runner's hot path);
//! - [`stats`] — read-only statistics for the CLI, the TUI and the metrics;
//! - [`key`] — key values as stored;
//! - [`guard`] — the latency guard's commit probe and its readings over time.
//!
//! Row functions return [`tokio_postgres::Error`] unchanged, so the runner can still classify it
//! by SQLSTATE (a lock or statement timeout is retried, a lost connection reconnects).

pub(crate) mod checkpoint;
pub mod guard;
pub(crate) mod key;
pub(crate) mod leases;
pub(crate) mod partitions;
pub(crate) mod settings;
pub(crate) mod state;
pub(crate) mod stats;
pub(crate) mod transitions;

pub(crate) use state::load;
pub use state::State;
pub(crate) use transitions::stop_for_rollback;
