//! The cluster's replication slots as the Backfill pane lists them, built from the worker's
//! facts (the TUI reads no catalog): WAL retained, a logical consumer's lag, `wal_status`, and
//! the share of `max_slot_wal_keep_size` still left, with the gates' verdict on each.

use crate::control::facts::Facts;
use crate::control::slots::Slot;
use crate::plan::Plan;
use crate::rules::slots::{at_risk, min_percent};

/// One replication slot as the pane shows it.
#[derive(Debug, Clone, PartialEq)]
pub struct SlotView {
    /// The slot as the worker read it.
    pub slot: Slot,
    /// Percent of `max_slot_wal_keep_size` left before the slot is lost (`None`: unlimited).
    pub left_percent: Option<f64>,
    /// Why it blocks every gate, if it does.
    pub at_risk: Option<String>,
}

/// The slots of `facts`, by name, judged under `plan`.
pub(crate) fn views(plan: &Plan, facts: &Facts) -> Vec<SlotView> {
    let keep = facts.max_slot_wal_keep_size;
    let min = min_percent(plan);
    facts
        .slots
        .iter()
        .map(|s| SlotView {
            slot: s.clone(),
            left_percent: keep
                .filter(|k| *k > 0)
                .zip(s.safe_wal_size)
                .map(|(k, safe)| safe.max(0) as f64 * 100.0 / k as f64),
            at_risk: at_risk(s, keep, min),
        })
        .collect()
}
