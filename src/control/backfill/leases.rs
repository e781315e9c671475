//! `cutover.backfill_ranges`: the key ranges (and final-sweep passes) with their checkpoints,
//! and the leases through which workers in any process share them.

use std::time::Duration;

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use tokio_postgres::{Error, GenericClient, Transaction};

use super::key::{key_in, key_to_json, Key};

/// Which process and task holds a lease.
#[derive(Debug, Clone)]
pub(crate) struct Identity {
    /// Unique owner id: `host:pid:wN:random`.
    pub owner: String,
    /// Host name.
    pub host: String,
    /// Process id.
    pub pid: i32,
}

impl Identity {
    /// A fresh identity for local worker `index`.
    pub(crate) fn new(index: usize) -> Identity {
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

/// What a range row is for (`cutover.backfill_ranges.kind`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum RangeKind {
    /// A slice of the key space, planned on first start.
    Range,
    /// A final-sweep pass over the keys that existed when it started.
    Sweep,
}

impl RangeKind {
    /// The stored name.
    pub fn as_str(self) -> &'static str {
        match self {
            RangeKind::Range => "range",
            RangeKind::Sweep => "sweep",
        }
    }

    pub(super) fn stored(s: &str) -> RangeKind {
        if s == "sweep" {
            RangeKind::Sweep
        } else {
            RangeKind::Range
        }
    }
}

impl std::fmt::Display for RangeKind {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Serializes range claims and the final step of one plan for the caller's transaction.
pub(crate) async fn lock_ranges(tx: &Transaction<'_>, plan_id: &str) -> Result<(), Error> {
    tx.execute(
        "SELECT pg_advisory_xact_lock(hashtextextended('cutover.backfill:' || $1, 0))",
        &[&plan_id],
    )
    .await?;
    Ok(())
}

/// Ranges planned so far.
pub(crate) async fn range_count(c: &impl GenericClient, plan_id: &str) -> Result<i64, Error> {
    Ok(c.query_one(
        "SELECT count(*) AS ranges FROM cutover.backfill_ranges WHERE plan_id = $1",
        &[&plan_id],
    )
    .await?
    .get("ranges"))
}

/// Ranges not covered yet.
pub(crate) async fn open_count(c: &impl GenericClient, plan_id: &str) -> Result<i64, Error> {
    Ok(c.query_one(
        "SELECT count(*) AS open FROM cutover.backfill_ranges WHERE plan_id = $1 AND NOT done",
        &[&plan_id],
    )
    .await?
    .get("open"))
}

/// Plans range `range_id` over `(lo, hi]`, its checkpoint at `lo`.
pub(crate) async fn insert_range(
    c: &impl GenericClient,
    plan_id: &str,
    range_id: i32,
    lo: Option<&Key>,
    hi: &Key,
    rows_estimate: i64,
) -> Result<(), Error> {
    c.execute(
        "INSERT INTO cutover.backfill_ranges (plan_id, range_id, lo, hi, checkpoint, rows_estimate) \
         VALUES ($1, $2, $3, $4, $3, $5)",
        &[
            &plan_id,
            &range_id,
            &lo.map(key_to_json),
            &key_to_json(hi),
            &rows_estimate,
        ],
    )
    .await?;
    Ok(())
}

/// Records what the range planning found: the row estimate and the key's columns and types.
pub(crate) async fn record_planned(
    c: &impl GenericClient,
    plan_id: &str,
    rows_estimate: i64,
    key_columns: &[String],
    key_types: &[String],
) -> Result<(), Error> {
    c.execute(
        "UPDATE cutover.backfill SET rows_estimate = $2, key_columns = $3, key_types = $4, \
         started_at = COALESCE(started_at, clock_timestamp()), updated_at = clock_timestamp() \
         WHERE plan_id = $1",
        &[&plan_id, &rows_estimate, &key_columns, &key_types],
    )
    .await?;
    Ok(())
}

/// A lease as stored.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct Lease {
    /// Owner id.
    pub owner: String,
    /// Host.
    pub host: Option<String>,
    /// Process id.
    pub pid: Option<i32>,
    /// Held since.
    pub since: Option<DateTime<Utc>>,
}

/// The unexpired leases of unfinished ranges, by range.
pub(crate) async fn live_leases(
    c: &impl GenericClient,
    plan_id: &str,
) -> Result<Vec<Lease>, Error> {
    let rows = c
        .query(
            "SELECT lease_owner, lease_host, lease_pid, lease_since FROM cutover.backfill_ranges \
             WHERE plan_id = $1 AND NOT done AND lease_owner IS NOT NULL \
             AND lease_until >= clock_timestamp() ORDER BY range_id",
            &[&plan_id],
        )
        .await?;
    Ok(rows
        .iter()
        .map(|r| Lease {
            owner: r.get("lease_owner"),
            host: r.get("lease_host"),
            pid: r.get("lease_pid"),
            since: r.get("lease_since"),
        })
        .collect())
}

/// An unfinished range as a claim sees it.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct OpenRange {
    /// Range id.
    pub range_id: i32,
    /// Range or sweep.
    pub kind: RangeKind,
    /// Upper bound (inclusive).
    pub hi: Option<Key>,
    /// Last key done.
    pub checkpoint: Option<Key>,
    /// The leaf partition the range covers (quoted name), `None` for the whole table.
    pub partition: Option<String>,
    /// Lease holder, if any (live or not).
    pub lease_owner: Option<String>,
    /// Its host.
    pub lease_host: Option<String>,
    /// Its pid.
    pub lease_pid: Option<i32>,
    /// The lease has not expired (`None` without a lease).
    pub lease_live: Option<bool>,
}

/// The unfinished ranges no other transaction has locked, locked for the caller's transaction.
pub(crate) async fn lock_open_ranges(
    tx: &Transaction<'_>,
    plan_id: &str,
) -> Result<Vec<OpenRange>, Error> {
    let rows = tx
        .query(
            "SELECT range_id, kind, hi, checkpoint, partition, lease_owner, lease_host, lease_pid, \
             lease_until >= clock_timestamp() AS live \
             FROM cutover.backfill_ranges WHERE plan_id = $1 AND NOT done \
             ORDER BY range_id FOR UPDATE SKIP LOCKED",
            &[&plan_id],
        )
        .await?;
    Ok(rows
        .iter()
        .map(|r| OpenRange {
            range_id: r.get("range_id"),
            kind: RangeKind::stored(r.get("kind")),
            hi: key_in(r, "hi"),
            checkpoint: key_in(r, "checkpoint"),
            partition: r.get("partition"),
            lease_owner: r.get("lease_owner"),
            lease_host: r.get("lease_host"),
            lease_pid: r.get("lease_pid"),
            lease_live: r.get("live"),
        })
        .collect())
}

/// Gives `me` the lease of range `range_id` for `lease`.
pub(crate) async fn take_lease(
    tx: &Transaction<'_>,
    plan_id: &str,
    range_id: i32,
    me: &Identity,
    lease: Duration,
) -> Result<(), Error> {
    let lease_ms = lease.as_millis() as f64;
    tx.execute(
        "UPDATE cutover.backfill_ranges SET lease_owner = $3, lease_host = $4, lease_pid = $5, \
         lease_since = clock_timestamp(), \
         lease_until = clock_timestamp() + $6 * interval '1 millisecond', \
         updated_at = clock_timestamp() WHERE plan_id = $1 AND range_id = $2",
        &[&plan_id, &range_id, &me.owner, &me.host, &me.pid, &lease_ms],
    )
    .await?;
    Ok(())
}

/// Renews `owner`'s leases for `lease`; returns how many unfinished ranges it holds.
pub(crate) async fn renew_leases(
    c: &impl GenericClient,
    plan_id: &str,
    owner: &str,
    lease: Duration,
) -> Result<u64, Error> {
    let lease_ms = lease.as_millis() as f64;
    c.execute(
        "UPDATE cutover.backfill_ranges \
         SET lease_until = clock_timestamp() + $3 * interval '1 millisecond' \
         WHERE plan_id = $1 AND lease_owner = $2 AND NOT done",
        &[&plan_id, &owner, &lease_ms],
    )
    .await
}

/// Releases `owner`'s leases (the checkpoints stay).
pub(crate) async fn release_leases(
    c: &impl GenericClient,
    plan_id: &str,
    owner: &str,
) -> Result<(), Error> {
    c.execute(
        "UPDATE cutover.backfill_ranges SET lease_owner = NULL, lease_host = NULL, \
         lease_pid = NULL, lease_since = NULL, lease_until = NULL, \
         updated_at = clock_timestamp() WHERE plan_id = $1 AND lease_owner = $2",
        &[&plan_id, &owner],
    )
    .await?;
    Ok(())
}

/// Plans a sweep range over `(start, hi]` of `pending` rows, leased to `me`, counts the pass
/// and adds the rows to the estimate; returns the new range's id.
pub(crate) async fn start_sweep(
    tx: &Transaction<'_>,
    plan_id: &str,
    hi: Option<&Key>,
    pending: i64,
    me: &Identity,
    lease: Duration,
) -> Result<i32, Error> {
    let range_id: i32 = tx
        .query_one(
            "SELECT COALESCE(max(range_id), 0) + 1 AS range_id FROM cutover.backfill_ranges \
             WHERE plan_id = $1",
            &[&plan_id],
        )
        .await?
        .get("range_id");
    let lease_ms = lease.as_millis() as f64;
    tx.execute(
        "INSERT INTO cutover.backfill_ranges (plan_id, range_id, kind, lo, hi, checkpoint, \
         rows_estimate, lease_owner, lease_host, lease_pid, lease_since, lease_until) \
         VALUES ($1, $2, $9, NULL, $3, NULL, $4, $5, $6, $7, clock_timestamp(), \
         clock_timestamp() + $8 * interval '1 millisecond')",
        &[
            &plan_id,
            &range_id,
            &hi.map(key_to_json),
            &pending,
            &me.owner,
            &me.host,
            &me.pid,
            &lease_ms,
            &RangeKind::Sweep.as_str(),
        ],
    )
    .await?;
    tx.execute(
        "UPDATE cutover.backfill SET sweep_passes = sweep_passes + 1, \
         rows_estimate = COALESCE(rows_estimate, 0) + $2, updated_at = clock_timestamp() \
         WHERE plan_id = $1",
        &[&plan_id, &pending],
    )
    .await?;
    Ok(range_id)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn kinds_round_trip() {
        for k in [RangeKind::Range, RangeKind::Sweep] {
            assert_eq!(RangeKind::stored(k.as_str()), k);
        }
    }
}
