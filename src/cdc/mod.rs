//! CDC projection: the dual-write without a trigger. A logical replication slot (`pgoutput`,
//! through a publication of the source table alone) records every change of the source; the
//! applier ([`apply`]) refreshes the copy's target row by row from it.
//!
//! Why the handover from the copy to the stream has no gap and no double (LSN fencing):
//! - the slot is created before the copy's first chunk (`cutover backfill run` creates it), so
//!   every change that commits after any chunk read the source is in the slot;
//! - the applier does not replay a change's values: for every key a committed transaction
//!   touched, it re-reads the source row and upserts it into the target, or deletes the target
//!   row when the source row is gone. That is idempotent, and it converges: the last change of a
//!   key is decoded only after it commits, so the refresh it triggers reads the final row;
//! - the copy inserts only keys absent from the target (`ON CONFLICT DO NOTHING`) under a
//!   `KEY SHARE` lock, so it never overwrites a refreshed row nor resurrects a deleted one.
//!
//! Crash safety: the refreshes of a batch of transactions and the batch's last commit LSN
//! (`cutover.cdc.applied_lsn`) commit together, synchronously; only then is the slot advanced. A
//! crash between the two, or a server crash that loses the slot's latest position, re-delivers
//! the batch, which is skipped by its LSN (and would be harmless anyway). A lost connection is
//! made again by the applier itself.
//!
//! The slot retains WAL until it is dropped: it is dropped when contract is applied and when
//! the dual-write phase is rolled back; a slot left behind by a crash (no plan row, or a plan
//! rolled back or contracted) is reported and dropped by [`sweep_orphans`] at the next start.

pub mod apply;
pub mod decode;

use serde::Serialize;
use tokio_postgres::Client;

use crate::plan::Plan;
use crate::sql::quote_ident;

/// Errors of the CDC projection.
#[derive(Debug, thiserror::Error)]
pub enum CdcError {
    /// The server or the table cannot feed a slot; the message says what to set.
    #[error("{0}")]
    Refused(String),
    /// The slot or the stream is in a state the applier cannot continue from.
    #[error("{0}")]
    Failed(String),
    /// A database error.
    #[error(transparent)]
    Db(#[from] crate::db::DbError),
}

impl CdcError {
    /// The connection was lost (or could not be made) for a reason a retry may fix.
    pub fn is_connection_lost(&self) -> bool {
        matches!(self, CdcError::Db(e) if e.is_connection_lost())
    }
}

impl From<tokio_postgres::Error> for CdcError {
    fn from(e: tokio_postgres::Error) -> Self {
        CdcError::Db(e.into())
    }
}

/// The slot's (and the publication's) name for a plan.
pub fn slot_name(plan_id: &str) -> String {
    let clean = crate::plan::identifier_tag(plan_id);
    let mut name = format!("cutover_cdc_{clean}");
    name.truncate(63);
    name
}

/// Refuses unless the server has `wal_level = logical` and the source table a replica
/// identity that carries the plan's key.
pub async fn preflight(client: &Client, plan: &Plan) -> Result<(), CdcError> {
    let level: String = client
        .query_one("SELECT current_setting('wal_level') AS wal_level", &[])
        .await?
        .try_get("wal_level")?;
    if level != "logical" {
        return Err(CdcError::Refused(format!(
            "CDC needs wal_level = logical, and the server has {level}: set wal_level = logical \
             in postgresql.conf (ALTER SYSTEM SET wal_level = logical) and restart the server, \
             or use a trigger dual-write"
        )));
    }
    let Some(b) = plan.spec.backfill.as_ref() else {
        return Err(CdcError::Refused("CDC needs a copy-mode [backfill]".into()));
    };
    let row = client
        .query_opt(
            "SELECT c.relreplident::text AS ident,
                    (SELECT array_agg(a.attname::text) FROM pg_index i
                       JOIN pg_attribute a ON a.attrelid = i.indrelid AND a.attnum = ANY (i.indkey)
                      WHERE i.indrelid = c.oid
                        AND ((c.relreplident = 'd' AND i.indisprimary)
                          OR (c.relreplident = 'i' AND i.indisreplident))) AS cols
               FROM pg_class c WHERE c.oid = to_regclass($1)",
            &[&crate::sql::quote_qualified(&b.table)],
        )
        .await?
        .ok_or_else(|| CdcError::Refused(format!("table `{}` does not exist", b.table)))?;
    let ident: String = row.get("ident");
    let cols: Vec<String> = row
        .get::<_, Option<Vec<String>>>("cols")
        .unwrap_or_default();
    let usable = ident == "f" || b.key.iter().all(|k| cols.contains(k));
    if !usable {
        return Err(CdcError::Refused(format!(
            "table `{}` has no replica identity that carries the key ({}): a DELETE would not \
             say which row went; give it a primary key on the key, or run \
             ALTER TABLE {} REPLICA IDENTITY FULL",
            b.table,
            b.key.join(", "),
            b.table
        )));
    }
    Ok(())
}

/// Creates the publication and the slot of `plan` unless its `cutover.cdc` row exists; refuses
/// when the row exists but the slot is gone (changes may have been lost).
pub async fn ensure(client: &Client, plan: &Plan) -> Result<(), CdcError> {
    preflight(client, plan).await?;
    let slot = slot_name(plan.id());
    let has_row = client
        .query_opt(
            "SELECT 1 FROM cutover.cdc WHERE plan_id = $1",
            &[&plan.id()],
        )
        .await?
        .is_some();
    let has_slot = slot_exists(client, &slot).await?;
    if has_row {
        return if has_slot {
            Ok(())
        } else {
            Err(CdcError::Failed(format!(
                "the replication slot {slot} of `{}` is gone: changes since the copy began may \
                 be lost; roll back to dual_write and run the copy again",
                plan.id()
            )))
        };
    }
    // A crash between creating the slot and recording it leaves a slot no chunk relied on.
    drop_objects(client, &slot).await?;
    let table = plan
        .spec
        .backfill
        .as_ref()
        .map(|b| crate::sql::quote_qualified(&b.table))
        .unwrap_or_default();
    client
        .batch_execute(&format!(
            "CREATE PUBLICATION {} FOR TABLE {table}",
            quote_ident(&slot)
        ))
        .await?;
    let lsn: String = client
        .query_one(
            "SELECT lsn::text AS lsn FROM pg_create_logical_replication_slot($1, 'pgoutput')",
            &[&slot],
        )
        .await?
        .try_get("lsn")?;
    client
        .execute(
            "INSERT INTO cutover.cdc (plan_id, slot, start_lsn, applied_lsn)
             VALUES ($1, $2, $3::text::pg_lsn, $3::text::pg_lsn)",
            &[&plan.id(), &slot, &lsn],
        )
        .await?;
    tracing::info!(plan = plan.id(), slot, lsn, "CDC slot created");
    Ok(())
}

async fn slot_exists(client: &Client, slot: &str) -> Result<bool, CdcError> {
    Ok(client
        .query_opt(
            "SELECT 1 FROM pg_replication_slots WHERE slot_name = $1",
            &[&slot],
        )
        .await?
        .is_some())
}

/// How long [`drop`] waits for a running applier to let go of the slot between two calls.
const DROP_WAIT: std::time::Duration = std::time::Duration::from_secs(30);

/// Drops the slot and the publication named `slot`, when they exist. A running applier holds
/// the slot only during each call: the drop is retried while it is in use, for up to
/// [`DROP_WAIT`].
async fn drop_objects(client: &Client, slot: &str) -> Result<(), CdcError> {
    let since = std::time::Instant::now();
    while slot_exists(client, slot).await? {
        match client
            .execute("SELECT pg_drop_replication_slot($1)", &[&slot])
            .await
        {
            Ok(_) => break,
            Err(e)
                if e.code() == Some(&tokio_postgres::error::SqlState::OBJECT_IN_USE)
                    && since.elapsed() < DROP_WAIT =>
            {
                tokio::time::sleep(std::time::Duration::from_millis(50)).await;
            }
            Err(e) => return Err(e.into()),
        }
    }
    client
        .batch_execute(&format!("DROP PUBLICATION IF EXISTS {}", quote_ident(slot)))
        .await?;
    Ok(())
}

/// Drops the `cutover.cdc` row, the slot and the publication of `plan` (contract, rollback).
/// The row goes first: a running applier then knows the slot was dropped on purpose and stops,
/// and a crash in between leaves a slot without a row, which [`sweep_orphans`] drops.
pub async fn drop(client: &Client, plan_id: &str) -> Result<bool, CdcError> {
    let slot = slot_name(plan_id);
    client
        .execute("DELETE FROM cutover.cdc WHERE plan_id = $1", &[&plan_id])
        .await?;
    let existed = slot_exists(client, &slot).await?;
    drop_objects(client, &slot).await?;
    Ok(existed)
}

/// True when `plan`'s `cutover.cdc` row is gone: its slot was dropped (contract, rollback).
pub async fn dropped(client: &Client, plan_id: &str) -> Result<bool, CdcError> {
    Ok(client
        .query_opt("SELECT 1 FROM cutover.cdc WHERE plan_id = $1", &[&plan_id])
        .await?
        .is_none())
}

/// Drops Cutover's slots that no live plan needs: no `cutover.cdc` row, or a plan whose
/// dual-write phase is rolled back or whose contract is applied. Returns their names.
pub async fn sweep_orphans(client: &Client) -> Result<Vec<String>, CdcError> {
    let rows = client
        .query(
            "SELECT s.slot_name::text AS slot_name, c.plan_id FROM pg_replication_slots s
               LEFT JOIN cutover.cdc c ON c.slot = s.slot_name
              WHERE s.slot_name LIKE 'cutover\\_cdc\\_%' AND NOT s.active
                AND (c.plan_id IS NULL OR EXISTS (
                     SELECT 1 FROM cutover.phases p WHERE p.plan_id = c.plan_id
                        AND ((p.phase = 'dual_write' AND p.state = 'rolled_back')
                          OR (p.phase = 'contract' AND p.state = 'applied'))))",
            &[],
        )
        .await?;
    let mut dropped = Vec::new();
    for r in rows {
        let slot: String = r.try_get("slot_name")?;
        let plan: Option<String> = r.try_get("plan_id")?;
        tracing::warn!(slot, plan, "dropping a CDC slot left behind");
        match plan {
            Some(p) => {
                drop(client, &p).await?;
            }
            None => drop_objects(client, &slot).await?,
        }
        dropped.push(slot);
    }
    Ok(dropped)
}

/// How far the applier is behind.
#[derive(Debug, Clone, Serialize)]
pub struct Lag {
    /// The slot.
    pub slot: String,
    /// The slot exists.
    pub slot_exists: bool,
    /// WAL bytes between the server's current LSN and the slot's confirmed position.
    pub bytes: i64,
    /// Seconds since the applier last drained the slot: every change committed before then is
    /// applied (`None`: never).
    pub seconds: Option<f64>,
    /// Changes applied so far.
    pub applied_changes: i64,
    /// The last applied commit LSN.
    pub applied_lsn: String,
}

/// The lag of `plan`'s applier; `None` when its slot was never created.
pub async fn lag(client: &Client, plan_id: &str) -> Result<Option<Lag>, CdcError> {
    let row = client
        .query_opt(
            "SELECT c.slot, s.slot_name IS NOT NULL AS slot_exists,
                    coalesce(pg_wal_lsn_diff(pg_current_wal_lsn(), s.confirmed_flush_lsn), 0)::bigint AS bytes,
                    extract(epoch FROM clock_timestamp() - c.caught_up_at)::float8 AS seconds,
                    c.applied_changes, c.applied_lsn::text AS applied_lsn
               FROM cutover.cdc c LEFT JOIN pg_replication_slots s ON s.slot_name = c.slot
              WHERE c.plan_id = $1",
            &[&plan_id],
        )
        .await?;
    Ok(row.map(|r| Lag {
        slot: r.get("slot"),
        slot_exists: r.get("slot_exists"),
        bytes: r.get("bytes"),
        seconds: r.get("seconds"),
        applied_changes: r.get("applied_changes"),
        applied_lsn: r.get("applied_lsn"),
    }))
}

impl Lag {
    /// True when within the plan's bounds (and the slot exists).
    pub fn within(&self, max_bytes: u64, max: std::time::Duration) -> bool {
        self.slot_exists
            && self.bytes <= max_bytes as i64
            && self.seconds.is_some_and(|s| s <= max.as_secs_f64())
    }
}
