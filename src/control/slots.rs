//! The cluster's replication slots as the rules and the throttle see them: retained WAL, a
//! logical consumer's lag, `wal_status` and `safe_wal_size`, with `max_slot_wal_keep_size`. One
//! SQL fragment reads them, for [`read`] and inside the one statement that loads the facts.

use serde::{Deserialize, Serialize};
use tokio_postgres::GenericClient;

use crate::db::DbError;

/// One replication slot.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Slot {
    /// Slot name.
    pub name: String,
    /// `physical` or `logical`.
    pub kind: String,
    /// A consumer is connected.
    pub active: bool,
    /// WAL retained for it, in bytes.
    pub retained_bytes: i64,
    /// For logical slots: WAL its consumer has not confirmed, in bytes.
    pub lag_bytes: Option<i64>,
    /// `reserved`, `extended`, `unreserved` or `lost`.
    pub wal_status: Option<String>,
    /// Bytes of WAL that can still be written before the slot is lost
    /// (with `max_slot_wal_keep_size` set).
    pub safe_wal_size: Option<i64>,
}

impl Slot {
    /// Cutover's own slot (its CDC applier consumes it).
    pub fn is_cutover_own(&self) -> bool {
        self.name.starts_with("cutover_")
    }
}

impl std::fmt::Display for Slot {
    /// `logical slot `x` (inactive, extended): retains 12MB, lags 12MB, 40MB before it is lost`.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "{} slot `{}` ({}, {}): retains {}",
            self.kind,
            self.name,
            if self.active { "active" } else { "inactive" },
            self.wal_status.as_deref().unwrap_or("-"),
            bytes(self.retained_bytes)
        )?;
        if let Some(lag) = self.lag_bytes {
            write!(f, ", lags {}", bytes(lag))?;
        }
        if let Some(safe) = self.safe_wal_size {
            write!(f, ", {} before it is lost", bytes(safe))?;
        }
        Ok(())
    }
}

/// `64MB`, `0B`, `-3MB`.
pub fn bytes(n: i64) -> String {
    let size = |b: u64| {
        crate::plan::Size::from_bytes(b).map_or_else(|| "0B".to_string(), |s| s.to_string())
    };
    if n < 0 {
        format!("-{}", size(n.unsigned_abs()))
    } else {
        size(n.unsigned_abs())
    }
}

/// Every slot as a JSON array (`[]` without any). On a standby the replayed position stands in
/// for the current one.
pub(crate) const SLOTS_JSON: &str = "coalesce((SELECT json_agg(json_build_object(
       'name', slot_name, 'kind', slot_type, 'active', active,
       'retained_bytes', coalesce(pg_wal_lsn_diff(w.lsn, restart_lsn), 0)::int8,
       'lag_bytes', pg_wal_lsn_diff(w.lsn, confirmed_flush_lsn)::int8,
       'wal_status', wal_status, 'safe_wal_size', safe_wal_size) ORDER BY slot_name)
     FROM pg_replication_slots,
          (SELECT CASE WHEN pg_is_in_recovery() THEN pg_last_wal_replay_lsn()
                       ELSE pg_current_wal_lsn() END AS lsn) w), '[]')";

/// `max_slot_wal_keep_size` in bytes, null when unlimited (-1).
pub(crate) const KEEP_SIZE_SQL: &str = "(SELECT CASE WHEN b >= 0 THEN b END
     FROM pg_size_bytes(current_setting('max_slot_wal_keep_size')) b)";

/// Every replication slot of the cluster.
pub async fn read(client: &impl GenericClient) -> Result<Vec<Slot>, DbError> {
    let row = client
        .query_one(&format!("SELECT {SLOTS_JSON}::text AS slots"), &[])
        .await?;
    parse(&row.get::<_, String>("slots"))
}

/// The slots from the text of [`SLOTS_JSON`].
pub(crate) fn parse(text: &str) -> Result<Vec<Slot>, DbError> {
    serde_json::from_str(text).map_err(|e| {
        DbError::Query(format!(
            "pg_replication_slots returned unreadable rows: {e}"
        ))
    })
}
