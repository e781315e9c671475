//! Key ranges: planning them on first start, claiming them under a lease, reclaiming dead
//! workers' ranges, releasing them, and the final sweep that decides when the backfill is done.
//!
//! Claims and the final step run under a transaction-level advisory lock per plan, so two
//! processes never claim past the `workers` limit or plan ranges twice.

use std::fmt;
use std::time::Duration;

use chrono::{DateTime, Utc};
use tokio_postgres::{Client, GenericClient};

use super::keys::{self, Key, KeySpec};
use super::BackfillError;
use crate::control::backfill::leases::{self, RangeKind};
use crate::control::backfill::transitions;
use crate::control::backfill::State;
use crate::plan::Plan;

pub(super) use crate::control::backfill::leases::Identity;

/// At most this many sweep passes before the backfill fails (rows keep appearing pending).
pub(super) const MAX_SWEEPS: i32 = 10;

/// A range this worker holds.
#[derive(Debug, Clone)]
pub(super) struct Claimed {
    /// Range id.
    pub range_id: i32,
    /// True for a final-sweep range (counts fixed rows, not covered keys, as progress).
    pub sweep: bool,
    /// Upper bound (inclusive); `None` only for an empty table.
    pub hi: Option<Key>,
    /// Last key done (or the range's exclusive lower bound).
    pub checkpoint: Option<Key>,
    /// The leaf partition the range covers (quoted name); `None` for the whole table.
    pub partition: Option<String>,
}

/// Another worker's lease.
#[derive(Debug, Clone)]
pub(super) struct Holder {
    /// Owner id.
    pub owner: String,
    /// Host.
    pub host: String,
    /// Process id.
    pub pid: i32,
    /// Held since.
    pub since: Option<DateTime<Utc>>,
}

impl fmt::Display for Holder {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} (host {}, pid {}", self.owner, self.host, self.pid)?;
        if let Some(s) = self.since {
            write!(f, ", since {}", s.format("%Y-%m-%d %H:%M:%S UTC"))?;
        }
        f.write_str(")")
    }
}

/// Result of a claim attempt.
#[derive(Debug)]
pub(super) enum Claim {
    /// A range to work on.
    Got(Claimed),
    /// All remaining ranges are held by live workers, or the `workers` limit is reached.
    Busy(Vec<Holder>),
    /// No range is left: time for the final step.
    AllDone,
}

/// Result of the final step.
#[derive(Debug)]
pub(super) enum Finish {
    /// No pending row remains: the backfill is done.
    Done,
    /// Rows are still pending: sweep this range.
    Sweep(Claimed),
    /// Ranges are still being worked on elsewhere.
    Busy,
}

/// True when `holder` runs on this host under a pid that no longer exists.
fn is_dead_local(host: Option<&str>, pid: Option<i32>) -> bool {
    match (host, pid) {
        (Some(h), Some(p)) if h == crate::db::host_name() && p > 0 => matches!(
            nix::sys::signal::kill(nix::unistd::Pid::from_raw(p), None),
            Err(nix::errno::Errno::ESRCH)
        ),
        _ => false,
    }
}

/// Splits the key space into ranges on first start (no-op when ranges exist).
pub(super) async fn plan_ranges(
    client: &mut Client,
    plan: &Plan,
    keys: &KeySpec,
    workers: u32,
    parts: Option<u32>,
) -> Result<(), BackfillError> {
    let tx = client.transaction().await?;
    leases::lock_ranges(&tx, plan.id()).await?;
    let existing = leases::range_count(&tx, plan.id()).await?;
    if existing > 0 {
        tx.commit().await?;
        return Ok(());
    }
    if super::partitions::plan(&tx, plan, keys, workers, parts).await? {
        tx.commit().await?;
        return Ok(());
    }
    let (estimate, bounds) = super::split::split(&tx, keys, workers, parts).await?;
    let per_range = estimate / (bounds.len().max(1) as i64);
    let mut lo: Option<Key> = None;
    for (i, hi) in bounds.iter().enumerate() {
        leases::insert_range(&tx, plan.id(), i as i32 + 1, lo.as_ref(), hi, per_range).await?;
        lo = Some(hi.clone());
    }
    leases::record_planned(&tx, plan.id(), estimate, &keys.columns, &keys.types).await?;
    tx.commit().await?;
    tracing::info!(
        plan = plan.id(),
        ranges = bounds.len(),
        rows = estimate,
        "backfill ranges planned"
    );
    Ok(())
}

/// The live leases of the plan (dead local processes excluded).
pub(super) async fn live_holders(
    client: &impl GenericClient,
    plan_id: &str,
) -> Result<Vec<Holder>, BackfillError> {
    Ok(leases::live_leases(client, plan_id)
        .await?
        .into_iter()
        .filter(|l| !is_dead_local(l.host.as_deref(), l.pid))
        .map(|l| Holder {
            owner: l.owner,
            host: l.host.unwrap_or_default(),
            pid: l.pid.unwrap_or_default(),
            since: l.since,
        })
        .collect())
}

/// Claims a range for `me`, unless `workers` live leases exist already.
pub(super) async fn claim(
    client: &mut Client,
    plan_id: &str,
    me: &Identity,
    lease: Duration,
    workers: i64,
) -> Result<Claim, BackfillError> {
    let tx = client.transaction().await?;
    leases::lock_ranges(&tx, plan_id).await?;
    let holders: Vec<Holder> = live_holders(&tx, plan_id)
        .await?
        .into_iter()
        .filter(|h| h.owner != me.owner)
        .collect();
    super::partitions::close_detached(&tx, plan_id).await?;
    let rows = leases::lock_open_ranges(&tx, plan_id).await?;
    let open = leases::open_count(&tx, plan_id).await?;
    if open == 0 {
        tx.commit().await?;
        return Ok(Claim::AllDone);
    }
    if holders.len() as i64 >= workers.max(1) {
        tx.commit().await?;
        return Ok(Claim::Busy(holders));
    }
    let free = rows.into_iter().find(|r| match &r.lease_owner {
        None => true,
        Some(o) if *o == me.owner => true,
        Some(_) => {
            !r.lease_live.unwrap_or(false) || is_dead_local(r.lease_host.as_deref(), r.lease_pid)
        }
    });
    let Some(row) = free else {
        tx.commit().await?;
        return Ok(Claim::Busy(holders));
    };
    let range_id = row.range_id;
    if let Some(prev) = &row.lease_owner {
        if *prev != me.owner {
            tracing::warn!(
                range = range_id,
                "reclaimed range {range_id} from {prev} (lease expired or process gone)"
            );
        }
    }
    leases::take_lease(&tx, plan_id, range_id, me, lease).await?;
    tx.commit().await?;
    Ok(Claim::Got(Claimed {
        range_id,
        sweep: row.kind == RangeKind::Sweep,
        hi: row.hi,
        checkpoint: row.checkpoint,
        partition: row.partition,
    }))
}

/// Renews `me`'s leases; returns how many ranges it still holds.
pub(super) async fn heartbeat(
    client: &impl GenericClient,
    plan_id: &str,
    me: &Identity,
    lease: Duration,
) -> Result<u64, BackfillError> {
    Ok(leases::renew_leases(client, plan_id, &me.owner, lease).await?)
}

/// Releases `me`'s leases (the checkpoints stay).
pub(super) async fn release(
    client: &impl GenericClient,
    plan_id: &str,
    me: &Identity,
) -> Result<(), BackfillError> {
    leases::release_leases(client, plan_id, &me.owner).await?;
    Ok(())
}

/// The final step once every range is covered: count `pending`; done when 0, otherwise plan and
/// claim a sweep over the keys that exist now.
pub(super) async fn finish(
    client: &mut Client,
    plan: &Plan,
    keys: &KeySpec,
    me: &Identity,
    lease: Duration,
) -> Result<Finish, BackfillError> {
    let tx = client.transaction().await?;
    leases::lock_ranges(&tx, plan.id()).await?;
    let open = leases::open_count(&tx, plan.id()).await?;
    if open > 0 {
        tx.commit().await?;
        return Ok(Finish::Busy);
    }
    let (current, passes) = transitions::lock_for_finish(&tx, plan.id()).await?;
    if current == State::Done {
        tx.commit().await?;
        return Ok(Finish::Done);
    }
    if super::partitions::plan_new_leaves(&tx, plan, keys).await? > 0 {
        tx.commit().await?;
        return Ok(Finish::Busy);
    }
    let timeout = plan.spec.settings.statement_timeout.as_millis();
    tx.batch_execute(&format!("SET LOCAL statement_timeout = {timeout}"))
        .await?;
    // With CDC the copy covers the rows that existed when the slot began, and the stream every
    // change since: rows not yet in the target are the applier's, not a sweep's.
    let pending: i64 = if plan.spec.is_cdc() {
        0
    } else {
        tx.query_one(keys.pending_count_sql(None).as_str(), &[])
            .await?
            .get("pending")
    };
    if pending == 0 {
        transitions::complete(&tx, plan).await?;
        tx.commit().await?;
        return Ok(Finish::Done);
    }
    let by_leaf = super::partitions::pending_by_leaf(&tx, keys).await?;
    if passes >= MAX_SWEEPS {
        let message = format!(
            "{pending} rows{by_leaf} are still pending after {passes} sweep passes: rows keep arriving in \
             the old shape — is the dual-write path (phase dual_write) active?"
        );
        transitions::fail(&tx, plan.id(), &message).await?;
        tx.commit().await?;
        return Err(BackfillError::Failed {
            plan: plan.id().to_string(),
            message,
        });
    }
    let max = tx
        .query_opt(keys.max_key_sql().as_str(), &[])
        .await?
        .and_then(|r| keys::key_from_row(&r));
    let range_id = leases::start_sweep(&tx, plan.id(), max.as_ref(), pending, me, lease).await?;
    tx.commit().await?;
    tracing::info!(
        plan = plan.id(),
        pending,
        pass = passes + 1,
        "final sweep: rows still pending{by_leaf}"
    );
    Ok(Finish::Sweep(Claimed {
        range_id,
        sweep: true,
        hi: max,
        checkpoint: None,
        partition: None,
    }))
}
