//! `cutover.backfill`, `cutover.backfill_ranges` and `cutover.backfill_chunks`, one file per job:
//! - [`state`] — the state row, the typed states and the sets each transition may leave;
//! - [`transitions`] — every guarded transition of the state (operator, throttle, workers,
//!   final step, rollback);
//! - [`settings`] — the live settings: retuning them, and the view a worker reads before each
//!   chunk;
//! - [`leases`] — the key ranges, their leases and the final sweep's ranges;
//! - [`checkpoint`] — the chunk's fence and checkpoint statements (the runner's hot path);
//! - [`stats`] — read-only statistics for the CLI, the TUI and the metrics;
//! - [`key`] — key values as stored;
//! - [`guard`] — the latency guard's commit probe and its readings over time.
//!
//! Row functions return [`tokio_postgres::Error`] unchanged, so the runner can still classify it
//! by SQLSTATE (a lock or statement timeout is retried, a lost connection reconnects).

pub mod checkpoint;
pub mod guard;
pub mod key;
pub mod leases;
pub mod settings;
pub mod state;
pub mod stats;
pub mod transitions;

pub use state::{load, Row, State};
pub use transitions::stop_for_rollback;
