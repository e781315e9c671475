//! `[dual_write]`: how writes after the copy's start reach the new table — a trigger written in
//! the dual-write phase's SQL (the default), or CDC: a logical replication slot whose changes
//! Cutover applies, with no trigger on the source table (module `cdc`).

use serde::{Deserialize, Serialize};

use super::Duration;

/// How concurrent writes reach the new table.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum DualWriteMode {
    /// A trigger from the dual-write phase's SQL.
    #[default]
    Trigger,
    /// A logical replication slot, applied by `cutover cdc run`.
    Cdc,
}

/// The `[dual_write]` section.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DualWriteSpec {
    /// `trigger` or `cdc`.
    #[serde(default)]
    pub mode: DualWriteMode,
    /// CDC: the read switch waits until the applier is at most this many WAL bytes behind.
    #[serde(default = "default_max_lag_bytes")]
    pub max_lag_bytes: u64,
    /// CDC: … and was caught up at most this long ago.
    #[serde(default = "default_max_lag")]
    pub max_lag: Duration,
}

fn default_max_lag_bytes() -> u64 {
    1024 * 1024
}

fn default_max_lag() -> Duration {
    Duration::from_millis(10_000)
}

impl super::PlanSpec {
    /// True when the plan's dual-write is CDC.
    pub fn is_cdc(&self) -> bool {
        self.dual_write
            .as_ref()
            .is_some_and(|d| d.mode == DualWriteMode::Cdc)
    }
}
