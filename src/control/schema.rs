//! The control schema `cutover`: Cutover's own state, created and upgraded by a versioned
//! bootstrap. Each migration runs in its own transaction; a session advisory lock serializes
//! concurrent bootstraps so two processes starting at once are safe.
//!
//! To extend the schema, append a [`Migration`] with a new version to [`MIGRATIONS`]; never edit
//! one that has shipped.

use tokio_postgres::{Client, GenericClient};

use super::{ControlError, Refusal};

use crate::db::{describe_error, DbError};

/// One versioned change of the control schema.
#[derive(Debug, Clone, Copy)]
pub struct Migration {
    /// Unique, increasing version.
    pub version: i32,
    /// Short name.
    pub name: &'static str,
    /// SQL run inside one transaction.
    pub sql: &'static str,
}

/// Advisory-lock key that serializes bootstraps ("cutover" in ASCII).
const BOOTSTRAP_LOCK: i64 = 0x0063_7574_6f76_6572;

/// The control schema's migrations, in order (the SQL lives in `migrations/`).
pub const MIGRATIONS: &[Migration] = &[
    Migration {
        version: 1,
        name: "core",
        sql: include_str!("migrations/v001_core.sql"),
    },
    Migration {
        version: 10,
        name: "engine",
        sql: include_str!("migrations/v010_engine.sql"),
    },
    Migration {
        version: 20,
        name: "backfill",
        sql: include_str!("migrations/v020_backfill.sql"),
    },
    Migration {
        version: 21,
        name: "backfill_retries",
        sql: include_str!("migrations/v021_backfill_retries.sql"),
    },
    Migration {
        version: 22,
        name: "backfill_contention",
        sql: include_str!("migrations/v022_backfill_contention.sql"),
    },
    Migration {
        version: 30,
        name: "checks_golden_snapshots",
        sql: include_str!("migrations/v030_checks_golden_snapshots.sql"),
    },
    Migration {
        version: 40,
        name: "evidence",
        sql: include_str!("migrations/v040_evidence.sql"),
    },
    Migration {
        version: 41,
        name: "evidence_own_transactions",
        sql: include_str!("migrations/v041_own_transactions.sql"),
    },
    Migration {
        version: 50,
        name: "backfill_state_changed_at",
        sql: include_str!("migrations/v050_backfill_state_changed_at.sql"),
    },
    Migration {
        version: 60,
        name: "plan_anchors",
        sql: include_str!("migrations/v060_plan_anchors.sql"),
    },
    Migration {
        version: 70,
        name: "notify",
        sql: include_str!("migrations/v070_notify.sql"),
    },
    Migration {
        version: 80,
        name: "attestations_census",
        sql: include_str!("migrations/v080_attestations_census.sql"),
    },
    Migration {
        version: 90,
        name: "cdc",
        sql: include_str!("migrations/v090_cdc.sql"),
    },
    Migration {
        version: 91,
        name: "backfill_partitions",
        sql: include_str!("migrations/v091_backfill_partitions.sql"),
    },
    Migration {
        version: 93,
        name: "backfill_guard",
        sql: include_str!("migrations/v093_backfill_guard.sql"),
    },
    Migration {
        version: 94,
        name: "backfill_pacing",
        sql: include_str!("migrations/v094_backfill_pacing.sql"),
    },
];

/// The channel on which every change of the control schema is announced (`LISTEN cutover_events`).
pub const NOTIFY_CHANNEL: &str = "cutover_events";

/// The control schema on a server, compared with this build's.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SchemaState {
    /// No `cutover` schema (or no version table) yet.
    Missing,
    /// Up to date: the newest version this build knows.
    Current(i32),
    /// Older than this build: an operator's next command upgrades it.
    Behind {
        /// The version on the server.
        have: i32,
        /// The version this build needs.
        want: i32,
    },
    /// Newer than this build (a newer Cutover bootstrapped it): reading is still safe.
    Ahead {
        /// The version on the server.
        have: i32,
        /// The newest version this build knows.
        want: i32,
    },
}

/// The newest version in [`MIGRATIONS`].
pub fn latest_version() -> i32 {
    MIGRATIONS.iter().map(|m| m.version).max().unwrap_or(0)
}

/// Reads the schema version without changing anything (works for a read-only login).
pub async fn state(client: &impl GenericClient) -> Result<SchemaState, DbError> {
    let exists: bool = client
        .query_one(
            "SELECT to_regclass('cutover.schema_version') IS NOT NULL AS exists",
            &[],
        )
        .await?
        .get("exists");
    let have: Option<i32> = if exists {
        client
            .query_one(
                "SELECT max(version) AS version FROM cutover.schema_version",
                &[],
            )
            .await?
            .get("version")
    } else {
        None
    };
    let want = latest_version();
    Ok(match have {
        None => SchemaState::Missing,
        Some(v) if v == want => SchemaState::Current(v),
        Some(v) if v < want => SchemaState::Behind { have: v, want },
        Some(v) => SchemaState::Ahead { have: v, want },
    })
}

/// For read-only commands: the schema must exist and hold everything this build reads.
pub async fn require_readable(client: &impl GenericClient) -> Result<SchemaState, ControlError> {
    let st = state(client).await?;
    match st {
        SchemaState::Missing => Err(ControlError::Refused(Refusal::SchemaMissing)),
        SchemaState::Behind { have, want } => {
            Err(ControlError::Refused(Refusal::SchemaBehind { have, want }))
        }
        SchemaState::Current(_) | SchemaState::Ahead { .. } => Ok(st),
    }
}

/// Creates or upgrades the control schema. Idempotent and safe under concurrency.
/// Returns the versions it applied (empty when already up to date).
pub async fn bootstrap(client: &mut Client) -> Result<Vec<i32>, DbError> {
    client
        .query_one("SELECT pg_advisory_lock($1)", &[&BOOTSTRAP_LOCK])
        .await?;
    let result = apply_missing(client).await;
    let unlock = client
        .query_one("SELECT pg_advisory_unlock($1)", &[&BOOTSTRAP_LOCK])
        .await;
    let applied = result?;
    unlock?;
    Ok(applied)
}

async fn apply_missing(client: &mut Client) -> Result<Vec<i32>, DbError> {
    client
        .batch_execute(
            "CREATE SCHEMA IF NOT EXISTS cutover;
             CREATE TABLE IF NOT EXISTS cutover.schema_version (
                 version    integer PRIMARY KEY,
                 name       text NOT NULL,
                 applied_at timestamptz NOT NULL DEFAULT clock_timestamp()
             );",
        )
        .await?;
    let rows = client
        .query("SELECT version FROM cutover.schema_version", &[])
        .await?;
    let done: Vec<i32> = rows.iter().map(|r| r.get("version")).collect();
    let mut applied = Vec::new();
    for m in MIGRATIONS.iter().filter(|m| !done.contains(&m.version)) {
        let tx = client.transaction().await?;
        tx.batch_execute(m.sql).await.map_err(|e| {
            DbError::Query(format!(
                "control schema migration {} ({}) failed: {}",
                m.version,
                m.name,
                describe_error(&e)
            ))
        })?;
        tx.execute(
            "INSERT INTO cutover.schema_version (version, name) VALUES ($1, $2)",
            &[&m.version, &m.name],
        )
        .await?;
        tx.commit().await?;
        tracing::info!(
            version = m.version,
            name = m.name,
            "control schema migrated"
        );
        applied.push(m.version);
    }
    Ok(applied)
}
