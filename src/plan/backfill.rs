//! The plan's `[backfill]` table: which rows to bring to the new shape, in what chunks, and
//! when to throttle.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use super::Duration;
use super::Size;

/// How existing rows are brought to the new shape.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct BackfillSpec {
    /// `update` rewrites the table's rows in place; `copy` inserts them into `into`.
    #[serde(default)]
    pub mode: super::BackfillMode,
    /// Table to update, or to copy from (`schema.table` or `table`).
    pub table: String,
    /// Key column(s) used for keyset chunking; must be unique and not null.
    pub key: Vec<String>,
    /// Update mode: column → SQL expression assignments applied to pending rows.
    #[serde(default)]
    pub set: BTreeMap<String, String>,
    /// Update mode: SQL predicate true for rows that still need work.
    #[serde(default)]
    pub pending: String,
    /// Copy mode: the table rows are copied into.
    #[serde(default)]
    pub into: Option<String>,
    /// Copy mode: target column → SQL expression over the source row.
    #[serde(default)]
    pub columns: BTreeMap<String, String>,
    /// Copy mode: the target's unique key (the `ON CONFLICT` target); each column maps to a
    /// source column by name in `columns`. Defaults to `key`.
    #[serde(default)]
    pub target_key: Vec<String>,
    /// Target duration of one chunk (adaptive sizing aims for it).
    #[serde(default = "default_chunk_time")]
    pub target_chunk_time: Duration,
    /// First chunk size in rows.
    #[serde(default = "default_initial_rows")]
    pub initial_chunk_rows: u32,
    /// Smallest chunk in rows.
    #[serde(default = "default_min_rows")]
    pub min_chunk_rows: u32,
    /// Largest chunk in rows.
    #[serde(default = "default_max_rows")]
    pub max_chunk_rows: u32,
    /// Rate cap in rows per second (0 = none).
    #[serde(default)]
    pub max_rows_per_second: u32,
    /// Parallel workers claiming disjoint key ranges.
    #[serde(default = "default_workers")]
    pub workers: u32,
    /// Workers while the application is idle (no application traffic on the database): the
    /// extra ones release their ranges as soon as traffic appears. At least `workers`.
    #[serde(default = "default_idle_workers")]
    pub idle_workers: u32,
    /// Health signals that pause the backfill.
    #[serde(default)]
    pub throttle: ThrottleSpec,
}

impl BackfillSpec {
    /// How many workers may run while the application is idle.
    pub fn idle_concurrency(&self) -> u32 {
        self.idle_workers.max(self.workers)
    }
}

fn default_chunk_time() -> Duration {
    Duration::from_millis(300)
}
fn default_initial_rows() -> u32 {
    1_000
}
fn default_min_rows() -> u32 {
    50
}
fn default_max_rows() -> u32 {
    100_000
}
fn default_workers() -> u32 {
    1
}
fn default_idle_workers() -> u32 {
    2
}

/// The default of [`ThrottleSpec::min_slot_safe_wal_percent`].
pub const DEFAULT_MIN_SLOT_SAFE_WAL_PERCENT: f64 = 25.0;

/// Throttle limits evaluated between chunks; a signal above its limit pauses the backfill.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ThrottleSpec {
    /// Maximum replication replay lag of any standby.
    pub max_replay_lag: Duration,
    /// Maximum active backends in the database (excluding Cutover's own).
    pub max_active_backends: u32,
    /// Maximum sessions waiting on a lock.
    pub max_lock_waiters: u32,
    /// Pause while (auto)vacuum runs on the table.
    pub pause_on_vacuum: bool,
    /// Maximum WAL generation rate in MiB/s (0 = no limit): above it the latency guard yields.
    pub max_wal_mib_per_second: f64,
    /// WAL budget of one chunk in MiB: the chunk size is bounded by it.
    pub max_chunk_wal_mib: f64,
    /// Custom SQL returning one number; above `custom_limit` throttles.
    pub custom_query: Option<String>,
    /// Limit for `custom_query`.
    pub custom_limit: f64,
    /// A signal unreadable for this long pauses the backfill (fail closed).
    pub fail_closed_after: Duration,
    /// The latency guard: the application's statement latency may rise to this multiple of
    /// its baseline (measured just before the backfill) before the backfill yields.
    pub max_app_latency_ratio: f64,
    /// Most WAL any replication slot may retain (`restart_lsn` behind the current WAL).
    pub max_slot_retained_wal: Option<Size>,
    /// Most WAL a logical slot's consumer may lag behind (`confirmed_flush_lsn`).
    pub max_slot_lag: Option<Size>,
    /// Share of `max_slot_wal_keep_size` (in percent) a slot must have left before it is lost;
    /// a slot with less blocks every gate.
    pub min_slot_safe_wal_percent: f64,
}

impl Default for ThrottleSpec {
    fn default() -> Self {
        ThrottleSpec {
            max_replay_lag: Duration::from_millis(5_000),
            max_active_backends: 64,
            max_lock_waiters: 8,
            pause_on_vacuum: true,
            max_wal_mib_per_second: 0.0,
            max_chunk_wal_mib: 2.0,
            custom_query: None,
            custom_limit: 0.0,
            fail_closed_after: Duration::from_millis(15_000),
            max_app_latency_ratio: 1.25,
            max_slot_retained_wal: None,
            max_slot_lag: None,
            min_slot_safe_wal_percent: DEFAULT_MIN_SLOT_SAFE_WAL_PERCENT,
        }
    }
}
