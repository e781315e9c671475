//! The applier: peeks committed transactions from the slot, refreshes the target rows of the
//! keys they touched, records the last commit LSN in the same transaction, then advances the
//! slot (see the module docs of [`crate::cdc`] for why this converges).

use std::collections::{BTreeSet, HashMap};
use std::time::Duration;

use serde::Serialize;
use tokio::sync::watch;
use tokio_postgres::Client;

use super::decode::{decode, key_of, Message};
use super::{dropped, ensure, slot_name, sweep_orphans, CdcError};
use crate::db::{self, DbConfig, SessionSettings};
use crate::plan::{BackfillSpec, Plan};
use crate::sql::{quote_ident, quote_literal, quote_qualified};

/// A key's values as text, one per key column.
type Key = Vec<String>;

/// Options of [`run`].
#[derive(Debug, Clone)]
pub struct ApplyOptions {
    /// Messages peeked per batch (whole transactions: a batch may hold more).
    pub batch: i32,
    /// Pause between batches once caught up.
    pub poll: Duration,
    /// How long to keep reconnecting after the connection is lost (a server restart, a
    /// failover) before giving up.
    pub reconnect_within: Duration,
}

impl Default for ApplyOptions {
    fn default() -> Self {
        ApplyOptions {
            batch: 2_000,
            poll: Duration::from_millis(200),
            reconnect_within: Duration::from_secs(300),
        }
    }
}

/// What [`run`] did.
#[derive(Debug, Clone, Default, Serialize)]
pub struct ApplySummary {
    /// Batches committed.
    pub batches: u64,
    /// Row changes applied (one delivered again after a crash is not counted twice).
    pub changes: u64,
    /// Distinct keys refreshed (per batch).
    pub keys: u64,
    /// Slots of other plans dropped at start (left behind by a crash).
    pub orphans_dropped: Vec<String>,
    /// Times the connection was lost and made again.
    pub reconnects: u64,
    /// The applier stopped because contract or rollback dropped the slot.
    pub slot_dropped: bool,
}

/// One batch's outcome.
#[derive(Debug, Clone, Copy, Default)]
pub struct Step {
    /// Row changes applied.
    pub changes: u64,
    /// Distinct keys refreshed.
    pub keys: u64,
    /// Nothing was left to apply.
    pub caught_up: bool,
}

/// Applies the plan's slot until `shutdown` turns true, or until the slot is dropped by contract
/// or rollback. Drops orphaned slots first, and creates the plan's slot when the copy has not
/// (nothing to catch up then). A lost connection is made again (for up to
/// `opts.reconnect_within`) and the stream resumes from the slot: a batch whose outcome was
/// unknown is either applied already (then skipped by its LSN) or delivered again.
pub async fn run(
    cfg: DbConfig,
    plan: Plan,
    opts: ApplyOptions,
    mut shutdown: watch::Receiver<bool>,
) -> Result<ApplySummary, CdcError> {
    let mut client = db::connect(&cfg, &SessionSettings::new("cdc")).await?;
    crate::control::schema::bootstrap(&mut client)
        .await
        .map_err(|e| CdcError::Failed(e.to_string()))?;
    let mut summary = ApplySummary {
        orphans_dropped: sweep_orphans(&client).await?,
        ..ApplySummary::default()
    };
    ensure(&client, &plan).await?;
    let applier = Applier::load(&client, &plan).await?;
    while !*shutdown.borrow() {
        let step = match applier.step(&mut client, opts.batch).await {
            Ok(step) => step,
            Err(e) if e.is_connection_lost() => {
                tracing::warn!(plan = plan.id(), "CDC applier lost its connection: {e}");
                match reconnect(&cfg, &opts, &mut shutdown).await? {
                    Some(c) => {
                        client = c;
                        summary.reconnects += 1;
                        tracing::info!(plan = plan.id(), "CDC applier reconnected");
                        continue;
                    }
                    None => break,
                }
            }
            Err(e) if dropped(&client, plan.id()).await.unwrap_or(false) => {
                tracing::info!(
                    plan = plan.id(),
                    "CDC slot dropped (contract or rollback): {e}"
                );
                summary.slot_dropped = true;
                break;
            }
            Err(e) => return Err(e),
        };
        if step.changes > 0 {
            summary.batches += 1;
            summary.changes += step.changes;
            summary.keys += step.keys;
        }
        if step.caught_up {
            tokio::select! {
                _ = tokio::time::sleep(opts.poll) => {}
                _ = shutdown.changed() => {}
            }
        }
    }
    Ok(summary)
}

/// Connects again after a lost connection, retrying while the server is unreachable, for up to
/// `opts.reconnect_within`; `None` when `shutdown` turned true meanwhile.
async fn reconnect(
    cfg: &DbConfig,
    opts: &ApplyOptions,
    shutdown: &mut watch::Receiver<bool>,
) -> Result<Option<Client>, CdcError> {
    let since = std::time::Instant::now();
    let mut pause = Duration::from_millis(100);
    loop {
        if *shutdown.borrow() {
            return Ok(None);
        }
        match db::connect(cfg, &SessionSettings::new("cdc")).await {
            Ok(c) => return Ok(Some(c)),
            Err(e) if e.is_connection_lost() && since.elapsed() < opts.reconnect_within => {
                tracing::debug!("CDC applier reconnecting: {e}");
            }
            Err(e) => return Err(e.into()),
        }
        // A dropped sender disables the second branch: the pause still applies.
        tokio::select! {
            _ = tokio::time::sleep(pause) => {}
            Ok(()) = shutdown.changed() => {}
        }
        pause = (pause * 2).min(Duration::from_secs(2));
    }
}

/// The SQL of one plan's projection.
pub struct Applier {
    slot: String,
    plan_id: String,
    keys: SourceKey,
    refresh: Refresh,
}

/// How the rows of the keys a batch touched are refreshed.
enum Refresh {
    /// Copy mode: delete the target rows whose source row is gone, upsert the others.
    Copy {
        upsert_head: String,
        upsert_tail: String,
        delete_head: String,
        target_key: String,
    },
    /// Update mode: set the new columns of the source rows themselves, only where they differ
    /// (the applier's own update is decoded again and then changes nothing, so it ends there).
    InPlace {
        update_head: String,
        differs: String,
    },
}

impl Refresh {
    /// The statements refreshing the keys in `literals` (`(k1), (k2)…`); `cols` is the source
    /// key's column list.
    fn sql(&self, cols: &str, literals: &str) -> String {
        match self {
            Refresh::Copy {
                upsert_head,
                upsert_tail,
                delete_head,
                target_key,
            } => format!(
                "{delete_head} AND ({target_key}) IN ({literals}); \
                 {upsert_head} WHERE ({cols}) IN ({literals}) {upsert_tail}"
            ),
            Refresh::InPlace {
                update_head,
                differs,
            } => format!("{update_head} WHERE ({cols}) IN ({literals}) AND ({differs})"),
        }
    }
}

impl Applier {
    /// Builds the projection's SQL from the plan's backfill: its copy mapping, or in update
    /// mode its assignments.
    pub async fn load(client: &Client, plan: &Plan) -> Result<Applier, CdcError> {
        let b: &BackfillSpec = plan
            .spec
            .backfill
            .as_ref()
            .ok_or_else(|| CdcError::Refused("CDC needs a [backfill]".into()))?;
        let keys = SourceKey::load(client, b).await?;
        let refresh = if b.is_copy() {
            copy_refresh(b, &keys.table)
        } else {
            in_place_refresh(b, &keys.table)
        };
        Ok(Applier {
            slot: slot_name(plan.id()),
            plan_id: plan.id().to_string(),
            keys,
            refresh,
        })
    }

    /// Applies one batch of committed transactions.
    pub async fn step(&self, client: &mut Client, batch: i32) -> Result<Step, CdcError> {
        // Decoding reads WAL up to the flush position: with asynchronous commits the insert
        // position can be ahead of it, and advancing past unflushed commits would skip them.
        let now = client
            .query_one(
                "SELECT pg_current_wal_flush_lsn()::text AS flushed, clock_timestamp()::text AS at",
                &[],
            )
            .await?;
        let (current, peeked_at): (String, String) = (now.try_get("flushed")?, now.try_get("at")?);
        let rows = client
            .query(
                "SELECT lsn::text AS lsn, data FROM pg_logical_slot_peek_binary_changes($1::text::name, NULL, $2, \
                 'proto_version', '1', 'publication_names', $1::text)",
                &[&self.slot, &batch],
            )
            .await?;
        if rows.is_empty() {
            self.idle(client, &current).await?;
            return Ok(Step {
                caught_up: true,
                ..Step::default()
            });
        }
        let applied: String = client
            .query_one(
                "SELECT applied_lsn::text AS applied_lsn FROM cutover.cdc WHERE plan_id = $1",
                &[&self.plan_id],
            )
            .await?
            .try_get("applied_lsn")?;
        let Batch {
            keys,
            last,
            changes,
        } = self.collect(&rows, parse_lsn(&applied))?;
        let refreshed = keys.len() as u64;
        let tx = client.transaction().await?;
        // The commit must be durable before the slot moves past the batch: the slot's position
        // can reach the disk at once, and an asynchronous commit lost in a crash would leave
        // the batch neither applied nor delivered again.
        tx.batch_execute("SET LOCAL synchronous_commit = on")
            .await?;
        let list: Vec<Key> = keys.into_iter().collect();
        for part in list.chunks(500) {
            let literals = part
                .iter()
                .map(|k| self.keys.literal(k))
                .collect::<Vec<_>>()
                .join(", ");
            tx.batch_execute(&self.refresh.sql(&self.keys.cols(), &literals))
                .await?;
        }
        // Fewer messages than asked for: the peek drained the slot as of its start.
        let drained = rows.len() < batch.max(1) as usize;
        tx.execute(
            "UPDATE cutover.cdc SET applied_lsn = greatest(applied_lsn, $2::text::pg_lsn), \
             applied_changes = applied_changes + $3, heartbeat = clock_timestamp(), \
             caught_up_at = CASE WHEN $4 THEN $5::text::timestamptz ELSE caught_up_at END \
             WHERE plan_id = $1",
            &[
                &self.plan_id,
                &last,
                &(changes as i64),
                &drained,
                &peeked_at,
            ],
        )
        .await?;
        tx.commit().await?;
        client
            .execute(
                "SELECT pg_replication_slot_advance($1, $2::text::pg_lsn)",
                &[&self.slot, &last],
            )
            .await?;
        Ok(Step {
            changes,
            keys: refreshed,
            caught_up: false,
        })
    }

    /// Nothing to apply: moves an idle slot to the flushed WAL position (so unrelated WAL is
    /// not retained) and records that the applier is caught up.
    async fn idle(&self, client: &Client, flushed: &str) -> Result<(), CdcError> {
        client
            .execute(
                "SELECT pg_replication_slot_advance($1, $2::text::pg_lsn) FROM pg_replication_slots \
                  WHERE slot_name = $1 AND confirmed_flush_lsn < $2::text::pg_lsn",
                &[&self.slot, &flushed],
            )
            .await?;
        let recorded = client
            .execute(
                "UPDATE cutover.cdc SET caught_up_at = clock_timestamp(), \
                 heartbeat = clock_timestamp() WHERE plan_id = $1",
                &[&self.plan_id],
            )
            .await?;
        if recorded == 0 {
            return Err(CdcError::Failed(format!(
                "the CDC row of `{}` is gone (its slot {} was dropped)",
                self.plan_id, self.slot
            )));
        }
        Ok(())
    }

    /// The keys touched by the transactions committed after `applied`, in commit order, and
    /// the last commit's LSN.
    fn collect(&self, rows: &[tokio_postgres::Row], applied: u64) -> Result<Batch, CdcError> {
        let mut relations: HashMap<u32, Vec<String>> = HashMap::new();
        let mut pending: BTreeSet<Key> = BTreeSet::new();
        let mut pending_changes = 0u64;
        let mut keys: BTreeSet<Key> = BTreeSet::new();
        let mut last: Option<String> = None;
        let mut changes = 0u64;
        for row in rows {
            let lsn: String = row.try_get("lsn")?;
            let data: Vec<u8> = row.try_get("data")?;
            match decode(&data).map_err(|e| CdcError::Failed(format!("at {lsn}: {e}")))? {
                Message::Begin => {
                    pending.clear();
                    pending_changes = 0;
                }
                Message::Relation { id, columns } => {
                    relations.insert(id, columns);
                }
                Message::Row { rel, tuples } => {
                    pending_changes += 1;
                    for t in &tuples {
                        let key = key_of(&relations, rel, t, &self.keys.columns);
                        pending.insert(key.ok_or_else(|| {
                            CdcError::Failed(format!(
                                "the change at {lsn} does not carry the key ({})",
                                self.keys.columns.join(", ")
                            ))
                        })?);
                    }
                }
                Message::Truncate => {
                    return Err(CdcError::Failed(format!(
                        "the source table was truncated (at {lsn}): a TRUNCATE cannot be \
                         projected; truncate the target too, then restart the applier"
                    )))
                }
                Message::Commit => {
                    if parse_lsn(&lsn) > applied {
                        keys.append(&mut pending);
                        changes += pending_changes;
                    }
                    pending.clear();
                    pending_changes = 0;
                    last = Some(lsn);
                }
                Message::Other => {}
            }
        }
        let last = last
            .ok_or_else(|| CdcError::Failed("the slot returned changes without a commit".into()))?;
        Ok(Batch {
            keys,
            last,
            changes,
        })
    }
}

/// Copy mode: the target rows of the touched keys are deleted when their source row is gone
/// and upserted from it otherwise.
fn copy_refresh(b: &BackfillSpec, source: &str) -> Refresh {
    let into = quote_qualified(b.into.as_deref().unwrap_or_default());
    let target_key = b.target_key_list();
    let updates: Vec<String> = b
        .columns
        .keys()
        .filter(|c| !b.target_key().contains(c))
        .map(|c| format!("{0} = EXCLUDED.{0}", quote_ident(c)))
        .collect();
    let upsert_tail = if updates.is_empty() {
        format!("ON CONFLICT ({target_key}) DO NOTHING")
    } else {
        format!(
            "ON CONFLICT ({target_key}) DO UPDATE SET {}",
            updates.join(", ")
        )
    };
    let matches = b
        .target_key()
        .iter()
        .zip(&b.key)
        .map(|(t, k)| format!("{source}.{} = cutover_t.{}", quote_ident(k), quote_ident(t)))
        .collect::<Vec<_>>()
        .join(" AND ");
    Refresh::Copy {
        upsert_head: format!("{} FROM {source}", b.copy_insert_head()),
        upsert_tail,
        delete_head: format!(
            "DELETE FROM {into} cutover_t WHERE NOT EXISTS (SELECT 1 FROM {source} WHERE {matches})"
        ),
        target_key: b
            .target_key()
            .iter()
            .map(|c| format!("cutover_t.{}", quote_ident(c)))
            .collect::<Vec<_>>()
            .join(", "),
    }
}

/// Update mode: the backfill's assignments, on the touched rows whose new columns differ.
fn in_place_refresh(b: &BackfillSpec, source: &str) -> Refresh {
    let differs: Vec<String> = b
        .set
        .iter()
        .map(|(c, e)| format!("{} IS DISTINCT FROM ({e})", quote_ident(c)))
        .collect();
    Refresh::InPlace {
        update_head: format!("UPDATE {source} SET {}", b.assignments()),
        differs: differs.join(" OR "),
    }
}

/// What one peek holds: the keys to refresh, the last commit LSN, the row changes to apply
/// (those of transactions already applied are not counted).
struct Batch {
    keys: BTreeSet<Key>,
    last: String,
    changes: u64,
}

/// The source table's key: quoted name, column names and their SQL types.
struct SourceKey {
    table: String,
    columns: Vec<String>,
    types: Vec<String>,
}

impl SourceKey {
    async fn load(client: &Client, b: &BackfillSpec) -> Result<SourceKey, CdcError> {
        let table = quote_qualified(&b.table);
        let mut types = Vec::new();
        for col in &b.key {
            let row = client
                .query_opt(
                    "SELECT format_type(atttypid, atttypmod) AS type FROM pg_attribute \
                     WHERE attrelid = to_regclass($1) AND attname = $2 AND attnum > 0 \
                       AND NOT attisdropped",
                    &[&table, col],
                )
                .await?
                .ok_or_else(|| {
                    CdcError::Refused(format!("key column `{col}` not found in `{}`", b.table))
                })?;
            types.push(row.try_get::<_, String>("type")?);
        }
        Ok(SourceKey {
            table,
            columns: b.key.clone(),
            types,
        })
    }

    /// `"a", "b"`.
    fn cols(&self) -> String {
        self.columns
            .iter()
            .map(|c| quote_ident(c))
            .collect::<Vec<_>>()
            .join(", ")
    }

    /// `('1'::bigint, 'x'::text)`.
    fn literal(&self, key: &Key) -> String {
        let parts = key
            .iter()
            .zip(&self.types)
            .map(|(v, t)| format!("{}::{t}", quote_literal(v)))
            .collect::<Vec<_>>()
            .join(", ");
        format!("({parts})")
    }
}

/// `X/Y` as a number (0 when malformed: it then compares as the oldest position).
fn parse_lsn(lsn: &str) -> u64 {
    let Some((hi, lo)) = lsn.split_once('/') else {
        return 0;
    };
    match (u64::from_str_radix(hi, 16), u64::from_str_radix(lo, 16)) {
        (Ok(h), Ok(l)) => (h << 32) | l,
        _ => 0,
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn lsns_compare_as_numbers() {
        assert!(super::parse_lsn("1/0") > super::parse_lsn("0/FFFFFFFF"));
        assert_eq!(super::parse_lsn("0/16B3748"), 0x16B3748);
        assert_eq!(super::parse_lsn("junk"), 0);
    }
}
