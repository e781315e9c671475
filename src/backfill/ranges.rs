//! Key ranges: planning them on first start, claiming them under a lease, reclaiming dead
//! workers' ranges, releasing them, and the final sweep that decides when the backfill is done.
//!
//! Claims and the final step run under a transaction-level advisory lock per plan, so two
//! processes never claim past the `workers` limit or plan ranges twice.

use std::fmt;
use std::time::Duration;

use chrono::{DateTime, Utc};
use serde_json::json;
use tokio_postgres::{Client, GenericClient};

use super::keys::{self, Key, KeySpec};
use super::BackfillError;
use crate::control::audit::{self, Actor, NewEntry};
use crate::plan::{Phase, Plan};

/// At most this many sweep passes before the backfill fails (rows keep appearing pending).
pub const MAX_SWEEPS: i32 = 10;

/// Which process and task holds a lease.
#[derive(Debug, Clone)]
pub struct Identity {
    /// Unique owner id: `host:pid:wN:random`.
    pub owner: String,
    /// Host name.
    pub host: String,
    /// Process id.
    pub pid: i32,
}

impl Identity {
    /// A fresh identity for local worker `index`.
    pub fn new(index: usize) -> Identity {
        let host = crate::db::host_name();
        let pid = std::process::id() as i32;
        let nonce = uuid::Uuid::new_v4().simple().to_string();
        Identity {
            owner: format!("{host}:{pid}:w{index}:{}", &nonce[..8]),
            host,
            pid,
        }
    }
}

/// A range this worker holds.
#[derive(Debug, Clone)]
pub struct Claimed {
    /// Range id.
    pub range_id: i32,
    /// True for a final-sweep range (counts fixed rows, not covered keys, as progress).
    pub sweep: bool,
    /// Upper bound (inclusive); `None` only for an empty table.
    pub hi: Option<Key>,
    /// Last key done (or the range's exclusive lower bound).
    pub checkpoint: Option<Key>,
}

/// Another worker's lease.
#[derive(Debug, Clone)]
pub struct Holder {
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
pub enum Claim {
    /// A range to work on.
    Got(Claimed),
    /// All remaining ranges are held by live workers, or the `workers` limit is reached.
    Busy(Vec<Holder>),
    /// No range is left: time for the final step.
    AllDone,
}

/// Result of the final step.
#[derive(Debug)]
pub enum Finish {
    /// No pending row remains: the backfill is done.
    Done,
    /// Rows are still pending: sweep this range.
    Sweep(Claimed),
    /// Ranges are still being worked on elsewhere.
    Busy,
}

async fn lock_plan(tx: &impl GenericClient, plan_id: &str) -> Result<(), BackfillError> {
    tx.execute(
        "SELECT pg_advisory_xact_lock(hashtextextended('cutover.backfill:' || $1, 0))",
        &[&plan_id],
    )
    .await?;
    Ok(())
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
pub async fn plan_ranges(
    client: &mut Client,
    plan: &Plan,
    keys: &KeySpec,
    workers: u32,
    parts: Option<u32>,
) -> Result<(), BackfillError> {
    let tx = client.transaction().await?;
    lock_plan(&tx, plan.id()).await?;
    let existing: i64 = tx
        .query_one(
            "SELECT count(*) FROM cutover.backfill_ranges WHERE plan_id = $1",
            &[&plan.id()],
        )
        .await?
        .get(0);
    if existing > 0 {
        tx.commit().await?;
        return Ok(());
    }
    let max = tx
        .query_opt(keys.max_key_sql().as_str(), &[])
        .await?
        .and_then(|r| keys::key_from_row(&r));
    let reltuples: f64 = tx
        .query_one(
            "SELECT COALESCE((SELECT reltuples::float8 FROM pg_class WHERE oid = to_regclass($1)), -1)",
            &[&plan.spec.backfill.as_ref().map(|b| b.table.clone()).unwrap_or_default()],
        )
        .await?
        .get(0);
    let estimate: i64 = if max.is_none() {
        0
    } else if reltuples < 1_000_000.0 {
        tx.query_one(keys.count_sql(None, None).as_str(), &[])
            .await?
            .get(0)
    } else {
        reltuples as i64
    };
    let mut bounds: Vec<Key> = Vec::new();
    if let Some(max) = &max {
        let parts = parts
            .unwrap_or_else(|| default_parts(estimate, workers))
            .max(1);
        if parts > 1 && estimate > i64::from(parts) {
            let percent = (100.0 * f64::from(parts) * 500.0 / estimate as f64).min(100.0);
            let rows = tx
                .query(keys.boundaries_sql(parts, percent).as_str(), &[])
                .await?;
            for r in rows {
                if let Some(k) = keys::key_from_row(&r) {
                    if bounds.last() != Some(&k) {
                        bounds.push(k);
                    }
                }
            }
        }
        bounds.push(max.clone());
    }
    let per_range = estimate / (bounds.len().max(1) as i64);
    let mut lo: Option<Key> = None;
    for (i, hi) in bounds.iter().enumerate() {
        let lo_json = lo.as_ref().map(keys::to_json);
        tx.execute(
            "INSERT INTO cutover.backfill_ranges (plan_id, range_id, lo, hi, checkpoint, rows_estimate) \
             VALUES ($1, $2, $3, $4, $3, $5)",
            &[
                &plan.id(),
                &(i as i32 + 1),
                &lo_json,
                &keys::to_json(hi),
                &per_range,
            ],
        )
        .await?;
        lo = Some(hi.clone());
    }
    tx.execute(
        "UPDATE cutover.backfill SET rows_estimate = $2, key_columns = $3, key_types = $4, \
         started_at = COALESCE(started_at, clock_timestamp()), updated_at = clock_timestamp() \
         WHERE plan_id = $1",
        &[&plan.id(), &estimate, &keys.columns, &keys.types],
    )
    .await?;
    tx.commit().await?;
    tracing::info!(
        plan = plan.id(),
        ranges = bounds.len(),
        rows = estimate,
        "backfill ranges planned"
    );
    Ok(())
}

/// Ranges to plan for `estimate` rows: about one per 500 000 rows (1–64), at least four per
/// worker when the table is big enough to split (so that workers tuned up later find work).
/// Fewer ranges mean fewer partial chunks at range ends.
fn default_parts(estimate: i64, workers: u32) -> u32 {
    let by_size = (estimate / 500_000).clamp(1, 64) as u32;
    let by_workers = (workers.max(1) * 4).min((estimate / 1_000).clamp(1, 64) as u32);
    by_size.max(by_workers)
}

/// The live leases of the plan (dead local processes excluded).
pub async fn live_holders(
    client: &impl GenericClient,
    plan_id: &str,
) -> Result<Vec<Holder>, BackfillError> {
    let rows = client
        .query(
            "SELECT lease_owner, lease_host, lease_pid, lease_since FROM cutover.backfill_ranges \
             WHERE plan_id = $1 AND NOT done AND lease_owner IS NOT NULL \
             AND lease_until >= clock_timestamp() ORDER BY range_id",
            &[&plan_id],
        )
        .await?;
    Ok(rows
        .iter()
        .filter(|r| !is_dead_local(r.get(1), r.get(2)))
        .map(|r| Holder {
            owner: r.get(0),
            host: r.get::<_, Option<String>>(1).unwrap_or_default(),
            pid: r.get::<_, Option<i32>>(2).unwrap_or_default(),
            since: r.get(3),
        })
        .collect())
}

/// Claims a range for `me`, unless `workers` live leases exist already.
pub async fn claim(
    client: &mut Client,
    plan_id: &str,
    me: &Identity,
    lease: Duration,
    workers: i64,
) -> Result<Claim, BackfillError> {
    let tx = client.transaction().await?;
    lock_plan(&tx, plan_id).await?;
    let holders: Vec<Holder> = live_holders(&tx, plan_id)
        .await?
        .into_iter()
        .filter(|h| h.owner != me.owner)
        .collect();
    let rows = tx
        .query(
            "SELECT range_id, kind, hi, checkpoint, lease_owner, lease_host, lease_pid, \
             lease_until >= clock_timestamp() AS live \
             FROM cutover.backfill_ranges WHERE plan_id = $1 AND NOT done \
             ORDER BY range_id FOR UPDATE SKIP LOCKED",
            &[&plan_id],
        )
        .await?;
    let open: i64 = tx
        .query_one(
            "SELECT count(*) FROM cutover.backfill_ranges WHERE plan_id = $1 AND NOT done",
            &[&plan_id],
        )
        .await?
        .get(0);
    if open == 0 {
        tx.commit().await?;
        return Ok(Claim::AllDone);
    }
    if holders.len() as i64 >= workers.max(1) {
        tx.commit().await?;
        return Ok(Claim::Busy(holders));
    }
    let free = rows.iter().find(|r| {
        let owner: Option<String> = r.get(4);
        let live: Option<bool> = r.get(7);
        match owner {
            None => true,
            Some(o) if o == me.owner => true,
            Some(_) => !live.unwrap_or(false) || is_dead_local(r.get(5), r.get(6)),
        }
    });
    let Some(row) = free else {
        tx.commit().await?;
        return Ok(Claim::Busy(holders));
    };
    let range_id: i32 = row.get(0);
    if let Some(prev) = row.get::<_, Option<String>>(4) {
        if prev != me.owner {
            tracing::warn!(
                range = range_id,
                "reclaimed range {range_id} from {prev} (lease expired or process gone)"
            );
        }
    }
    let lease_ms = lease.as_millis() as f64;
    tx.execute(
        "UPDATE cutover.backfill_ranges SET lease_owner = $3, lease_host = $4, lease_pid = $5, \
         lease_since = clock_timestamp(), \
         lease_until = clock_timestamp() + $6 * interval '1 millisecond', \
         updated_at = clock_timestamp() WHERE plan_id = $1 AND range_id = $2",
        &[&plan_id, &range_id, &me.owner, &me.host, &me.pid, &lease_ms],
    )
    .await?;
    tx.commit().await?;
    let kind: String = row.get(1);
    Ok(Claim::Got(Claimed {
        range_id,
        sweep: kind == "sweep",
        hi: keys::from_json(row.get::<_, Option<serde_json::Value>>(2).as_ref()),
        checkpoint: keys::from_json(row.get::<_, Option<serde_json::Value>>(3).as_ref()),
    }))
}

/// Renews `me`'s leases; returns how many ranges it still holds.
pub async fn heartbeat(
    client: &impl GenericClient,
    plan_id: &str,
    me: &Identity,
    lease: Duration,
) -> Result<u64, BackfillError> {
    let lease_ms = lease.as_millis() as f64;
    Ok(client
        .execute(
            "UPDATE cutover.backfill_ranges \
             SET lease_until = clock_timestamp() + $3 * interval '1 millisecond' \
             WHERE plan_id = $1 AND lease_owner = $2 AND NOT done",
            &[&plan_id, &me.owner, &lease_ms],
        )
        .await?)
}

/// Releases `me`'s leases (the checkpoints stay).
pub async fn release(
    client: &impl GenericClient,
    plan_id: &str,
    me: &Identity,
) -> Result<(), BackfillError> {
    client
        .execute(
            "UPDATE cutover.backfill_ranges SET lease_owner = NULL, lease_host = NULL, \
             lease_pid = NULL, lease_since = NULL, lease_until = NULL, \
             updated_at = clock_timestamp() WHERE plan_id = $1 AND lease_owner = $2",
            &[&plan_id, &me.owner],
        )
        .await?;
    Ok(())
}

/// The final step once every range is covered: count `pending`; done when 0, otherwise plan and
/// claim a sweep over the keys that exist now.
pub async fn finish(
    client: &mut Client,
    plan: &Plan,
    keys: &KeySpec,
    me: &Identity,
    lease: Duration,
) -> Result<Finish, BackfillError> {
    let tx = client.transaction().await?;
    lock_plan(&tx, plan.id()).await?;
    let open: i64 = tx
        .query_one(
            "SELECT count(*) FROM cutover.backfill_ranges WHERE plan_id = $1 AND NOT done",
            &[&plan.id()],
        )
        .await?
        .get(0);
    if open > 0 {
        tx.commit().await?;
        return Ok(Finish::Busy);
    }
    let row = tx
        .query_one(
            "SELECT state, sweep_passes FROM cutover.backfill WHERE plan_id = $1 FOR UPDATE",
            &[&plan.id()],
        )
        .await?;
    let state: String = row.get(0);
    let passes: i32 = row.get(1);
    if state == "done" {
        tx.commit().await?;
        return Ok(Finish::Done);
    }
    let timeout = plan.spec.settings.statement_timeout.as_millis();
    tx.batch_execute(&format!("SET LOCAL statement_timeout = {timeout}"))
        .await?;
    let pending: i64 = tx
        .query_one(keys.pending_count_sql(None).as_str(), &[])
        .await?
        .get(0);
    if pending == 0 {
        tx.execute(
            "UPDATE cutover.backfill SET state = 'done', reason = '', \
             finished_at = clock_timestamp(), updated_at = clock_timestamp() \
             WHERE plan_id = $1 AND state IN ('idle','running','throttled')",
            &[&plan.id()],
        )
        .await?;
        let totals = tx
            .query_one(
                "SELECT rows_done, rows_updated, sweep_passes, throttled_seconds \
                 FROM cutover.backfill WHERE plan_id = $1",
                &[&plan.id()],
            )
            .await?;
        let actor = Actor::current(&tx).await?;
        audit::append(
            &tx,
            NewEntry {
                actor: &actor,
                plan_id: plan.id(),
                plan_sha256: &plan.sha256(),
                action: "backfill.done",
                phase: Some(Phase::Backfill),
                details: json!({
                    "rows_done": totals.get::<_, i64>(0),
                    "rows_updated": totals.get::<_, i64>(1),
                    "sweep_passes": totals.get::<_, i32>(2),
                    "throttled_seconds": totals.get::<_, f64>(3),
                }),
            },
        )
        .await?;
        tx.commit().await?;
        return Ok(Finish::Done);
    }
    if passes >= MAX_SWEEPS {
        let message = format!(
            "{pending} rows are still pending after {passes} sweep passes: rows keep arriving in \
             the old shape — is the dual-write path (phase dual_write) active?"
        );
        tx.execute(
            "UPDATE cutover.backfill SET state = 'failed', reason = $2, \
             updated_at = clock_timestamp() WHERE plan_id = $1",
            &[&plan.id(), &message],
        )
        .await?;
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
    let range_id: i32 = tx
        .query_one(
            "SELECT COALESCE(max(range_id), 0) + 1 FROM cutover.backfill_ranges WHERE plan_id = $1",
            &[&plan.id()],
        )
        .await?
        .get(0);
    let lease_ms = lease.as_millis() as f64;
    tx.execute(
        "INSERT INTO cutover.backfill_ranges (plan_id, range_id, kind, lo, hi, checkpoint, \
         rows_estimate, lease_owner, lease_host, lease_pid, lease_since, lease_until) \
         VALUES ($1, $2, 'sweep', NULL, $3, NULL, $4, $5, $6, $7, clock_timestamp(), \
         clock_timestamp() + $8 * interval '1 millisecond')",
        &[
            &plan.id(),
            &range_id,
            &max.as_ref().map(keys::to_json),
            &pending,
            &me.owner,
            &me.host,
            &me.pid,
            &lease_ms,
        ],
    )
    .await?;
    tx.execute(
        "UPDATE cutover.backfill SET sweep_passes = sweep_passes + 1, \
         rows_estimate = COALESCE(rows_estimate, 0) + $2, updated_at = clock_timestamp() \
         WHERE plan_id = $1",
        &[&plan.id(), &pending],
    )
    .await?;
    tx.commit().await?;
    tracing::info!(
        plan = plan.id(),
        pending,
        pass = passes + 1,
        "final sweep: rows still pending"
    );
    Ok(Finish::Sweep(Claimed {
        range_id,
        sweep: true,
        hi: max,
        checkpoint: None,
    }))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parts_follow_size_and_workers() {
        assert_eq!(default_parts(500, 1), 1);
        assert_eq!(default_parts(2_000_000, 1), 4);
        assert_eq!(default_parts(20_000_000, 1), 40);
        assert_eq!(default_parts(5_000, 2), 5);
        assert_eq!(default_parts(50_000, 4), 16);
        assert_eq!(default_parts(1_000_000_000, 1), 64);
    }
}
