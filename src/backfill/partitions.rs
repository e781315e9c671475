//! Partitioned tables: the backfill of a declaratively partitioned table (sub-partitioned too)
//! plans its ranges per leaf partition, and chunks run against the leaf itself.
//!
//! - Planning splits every leaf (`pg_partition_tree`) on its own and numbers the ranges round
//!   robin over the leaves, so workers claiming in range order work on different partitions.
//!   An empty leaf gets one range without an upper bound.
//! - A leaf attached during the backfill gets ranges in the final step, before `pending` is
//!   counted; a leaf detached (or dropped) before its ranges are done has them closed at the
//!   next claim, marked `detached`, and named in the progress and the log; a leaf dropped under
//!   a worker's range has its ranges closed the same way when the chunk finds it gone. A leaf
//!   detached (not dropped) while a worker holds one of its ranges is finished as a plain table.
//! - The final sweep runs through the parent, so it covers every leaf attached at that time.
//! - Progress is summed per leaf from its ranges ([`PartitionProgress`]).
//! - Copy mode (whose `pending` names the source table) and `set`/`pending` expressions that
//!   qualify columns by the table's name are not rewritten for a leaf: copy mode keeps backfilling
//!   through the parent, as one key space.

use std::borrow::Cow;
use std::collections::BTreeMap;

use serde::Serialize;
use tokio_postgres::GenericClient;

use super::keys::{Key, KeySpec};
use super::{BackfillError, RangeProgress};
use crate::control::backfill::leases;
use crate::control::backfill::partitions::{self as stored, LeafRange};
use crate::plan::Plan;

/// The backfill of one leaf partition as the CLI and the TUI show it.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct PartitionProgress {
    /// The leaf (qualified name, quoted where needed).
    pub name: String,
    /// Ranges planned for it.
    pub ranges: usize,
    /// Ranges covered (or closed because the leaf was detached).
    pub ranges_done: usize,
    /// Keys covered.
    pub rows_done: i64,
    /// Rows changed.
    pub rows_updated: i64,
    /// Estimated keys still to cover (the `pending` left in this leaf's range pass).
    pub rows_remaining: i64,
    /// Percent of its keys covered (100 once every range is done).
    pub percent: f64,
    /// Workers holding a lease on one of its ranges now.
    pub live_workers: usize,
    /// The leaf was detached from the table before its ranges were done: its remaining keys
    /// are not backfilled.
    pub detached: bool,
}

impl std::fmt::Display for PartitionProgress {
    /// `public.t_p1: 45.0% (1200 of ~2600 keys), 3/8 ranges done, 2 workers`.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        if self.detached {
            return write!(
                f,
                "{}: DETACHED during the backfill — {} keys done, ~{} not backfilled",
                self.name,
                self.rows_done,
                self.rows_remaining.max(0)
            );
        }
        write!(
            f,
            "{}: {:.1}% ({} of ~{} keys), {}/{} ranges done",
            self.name,
            self.percent,
            self.rows_done,
            self.rows_done + self.rows_remaining,
            self.ranges_done,
            self.ranges
        )?;
        if self.live_workers > 0 {
            write!(f, ", {} worker(s)", self.live_workers)?;
        }
        Ok(())
    }
}

/// The leaf partitions of `table` by name, `None` when it is not a partitioned table.
async fn leaves(c: &impl GenericClient, table: &str) -> Result<Option<Vec<String>>, BackfillError> {
    Ok(crate::db::partitions::leaves(c, table)
        .await?
        .map(|all| all.into_iter().map(|l| l.name).collect()))
}

/// `keys` aimed at one leaf partition instead of the table, read under the table's name.
fn on_leaf(keys: &KeySpec, leaf: &str) -> KeySpec {
    let mut k = keys.clone();
    let bare = keys.table.rsplit('.').next().unwrap_or(&keys.table);
    k.alias = Some(bare.to_string());
    k.table = leaf.to_string();
    k
}

/// The key spec a chunk runs with: the leaf's for a range of leaf `partition`.
pub(super) fn keys_for<'a>(keys: &'a KeySpec, partition: Option<&str>) -> Cow<'a, KeySpec> {
    match partition {
        Some(leaf) => Cow::Owned(on_leaf(keys, leaf)),
        None => Cow::Borrowed(keys),
    }
}

/// A range to insert: lower bound (exclusive), upper bound (inclusive), estimated keys.
type Planned = (Option<Key>, Option<Key>, i64);

/// Plans the ranges of `leaves`, numbered from `first_id` round robin over the leaves; returns
/// the rows estimated and the ranges planned.
async fn plan_leaves(
    c: &impl GenericClient,
    plan: &Plan,
    keys: &KeySpec,
    leaves: &[String],
    first_id: i32,
    workers: u32,
    parts: Option<u32>,
) -> Result<(i64, i32), BackfillError> {
    let n = leaves.len().max(1) as u32;
    let parts = parts.map(|p| p.div_ceil(n).max(1));
    let mut per_leaf: Vec<Vec<Planned>> = Vec::new();
    let mut total = 0;
    for leaf in leaves {
        let (estimate, bounds) =
            super::split::split(c, &on_leaf(keys, leaf), workers.div_ceil(n), parts).await?;
        total += estimate;
        let per_range = estimate / (bounds.len().max(1) as i64);
        let mut list = Vec::new();
        let mut lo: Option<Key> = None;
        for hi in bounds {
            list.push((lo.clone(), Some(hi.clone()), per_range));
            lo = Some(hi);
        }
        if list.is_empty() {
            list.push((None, None, 0));
        }
        per_leaf.push(list);
    }
    let rounds = per_leaf.iter().map(Vec::len).max().unwrap_or(0);
    let mut id = first_id;
    for round in 0..rounds {
        for (leaf, list) in leaves.iter().zip(&per_leaf) {
            if let Some((lo, hi, estimate)) = list.get(round) {
                let range = LeafRange {
                    partition: leaf,
                    root: &keys.table,
                    lo: lo.as_ref(),
                    hi: hi.as_ref(),
                    rows_estimate: *estimate,
                };
                stored::insert(c, plan.id(), id, &range).await?;
                id += 1;
            }
        }
    }
    Ok((total, id - first_id))
}

/// Plans the ranges per leaf when the table is partitioned (the caller holds the range lock
/// and found no ranges); `false` for a plain table.
pub(super) async fn plan(
    c: &impl GenericClient,
    plan: &Plan,
    keys: &KeySpec,
    workers: u32,
    parts: Option<u32>,
) -> Result<bool, BackfillError> {
    let Some(leaves) = leaves(c, &keys.table).await? else {
        return Ok(false);
    };
    let (estimate, planned) = plan_leaves(c, plan, keys, &leaves, 1, workers, parts).await?;
    leases::record_planned(c, plan.id(), estimate, &keys.columns, &keys.types).await?;
    tracing::info!(
        plan = plan.id(),
        partitions = leaves.len(),
        ranges = planned,
        rows = estimate,
        "backfill ranges planned per partition"
    );
    Ok(true)
}

/// Plans ranges for the leaves attached since planning (the caller holds the range lock);
/// returns how many leaves got ranges.
pub(super) async fn plan_new_leaves(
    c: &impl GenericClient,
    plan: &Plan,
    keys: &KeySpec,
) -> Result<usize, BackfillError> {
    let Some(current) = leaves(c, &keys.table).await? else {
        return Ok(0);
    };
    let known = stored::planned(c, plan.id()).await?;
    if known.is_empty() {
        // Planned as a plain table (partitioned later, or before this release): the sweep
        // through the parent covers it.
        return Ok(0);
    }
    let new: Vec<String> = current.into_iter().filter(|l| !known.contains(l)).collect();
    if new.is_empty() {
        return Ok(0);
    }
    let first = stored::next_range_id(c, plan.id()).await?;
    let (estimate, planned) = plan_leaves(c, plan, keys, &new, first, 1, None).await?;
    stored::add_estimate(c, plan.id(), estimate).await?;
    tracing::warn!(
        plan = plan.id(),
        ranges = planned,
        rows = estimate,
        "partitions attached during the backfill get ranges: {}",
        new.join(", ")
    );
    Ok(new.len())
}

/// Closes the open ranges of leaves detached from the table, naming them in the log.
pub(super) async fn close_detached(
    c: &impl GenericClient,
    plan_id: &str,
) -> Result<(), BackfillError> {
    let closed = stored::close_detached(c, plan_id).await?;
    if !closed.is_empty() {
        tracing::warn!(
            plan = plan_id,
            "partitions detached during the backfill are left as they are: {}",
            closed.join(", ")
        );
    }
    Ok(())
}

/// True when a chunk of leaf `partition` failed because the leaf was dropped: its ranges are
/// then closed as detached (and the worker claims another range).
pub(super) async fn leaf_gone(
    c: &impl GenericClient,
    plan_id: &str,
    partition: Option<&str>,
    err: &tokio_postgres::Error,
) -> Result<bool, tokio_postgres::Error> {
    let Some(leaf) = partition else {
        return Ok(false);
    };
    if err.code() != Some(&tokio_postgres::error::SqlState::UNDEFINED_TABLE) {
        return Ok(false);
    }
    let closed = stored::close_detached(c, plan_id).await?;
    if closed.iter().any(|l| l == leaf) {
        tracing::warn!(
            plan = plan_id,
            "partition {leaf} was dropped during the backfill: its remaining ranges are closed"
        );
        return Ok(true);
    }
    // Closed already (between two chunks, by a claim): gone all the same.
    let gone: bool = c
        .query_one("SELECT to_regclass($1) IS NULL AS gone", &[&leaf])
        .await?
        .try_get("gone")?;
    Ok(gone)
}

/// Where the pending rows of a partitioned table are, for the final step's messages:
/// ` (public.t_p1: 30, public.t_p2: 4)`; empty for a plain table.
pub(super) async fn pending_by_leaf(
    c: &impl GenericClient,
    keys: &KeySpec,
) -> Result<String, BackfillError> {
    if leaves(c, &keys.table).await?.is_none() {
        return Ok(String::new());
    }
    let rows = c
        .query(keys.pending_by_partition_sql().as_str(), &[])
        .await?;
    let parts: Vec<String> = rows
        .iter()
        .map(|r| {
            format!(
                "{}: {}",
                r.get::<_, String>("partition"),
                r.get::<_, i64>("pending")
            )
        })
        .collect();
    Ok(format!(" ({})", parts.join(", ")))
}

/// Progress per leaf partition from the ranges (empty for a plain table); `remaining` estimates
/// the keys left in an unfinished range.
pub(super) fn summarize(
    ranges: &[RangeProgress],
    remaining: impl Fn(&RangeProgress) -> i64,
) -> Vec<PartitionProgress> {
    let mut by_leaf: BTreeMap<&str, PartitionProgress> = BTreeMap::new();
    for r in ranges {
        let Some(leaf) = r.partition.as_deref() else {
            continue;
        };
        let p = by_leaf.entry(leaf).or_insert_with(|| PartitionProgress {
            name: leaf.to_string(),
            ranges: 0,
            ranges_done: 0,
            rows_done: 0,
            rows_updated: 0,
            rows_remaining: 0,
            percent: 0.0,
            live_workers: 0,
            detached: false,
        });
        p.ranges += 1;
        p.rows_done += r.rows_done;
        p.rows_updated += r.rows_updated;
        p.detached |= r.detached;
        if r.done {
            p.ranges_done += 1;
        } else {
            p.rows_remaining += remaining(r);
        }
        if r.lease_live {
            p.live_workers += 1;
        }
    }
    by_leaf
        .into_values()
        .map(|mut p| {
            let total = p.rows_done + p.rows_remaining;
            p.percent = if p.ranges_done == p.ranges {
                100.0
            } else if total > 0 {
                (100.0 * p.rows_done as f64 / total as f64).min(99.9)
            } else {
                0.0
            };
            p
        })
        .collect()
}
