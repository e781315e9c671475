//! The tamper-evident audit log: an append-only table whose rows form a sha256 hash chain.
//!
//! Each entry's hash is `sha256(prev_hash || canonical(entry))`, where the canonical encoding
//! is the entry's fields as compact JSON with sorted keys. Appends take a transaction-level
//! advisory lock so the chain cannot fork; they run inside the caller's transaction so an
//! action and its audit entry commit together.

use chrono::{SecondsFormat, Utc};
use serde::{Deserialize, Serialize};
use serde_json::{json, Value};
use sha2::{Digest, Sha256};
use tokio_postgres::GenericClient;

use crate::db::DbError;
use crate::plan::Phase;

/// Hash of the (empty) predecessor of the first entry.
pub const GENESIS: &str = "0000000000000000000000000000000000000000000000000000000000000000";

/// Advisory-lock key serializing audit appends.
const APPEND_LOCK: i64 = 0x0061_7564_6974;

/// Who performed an action: the authenticated PostgreSQL login plus OS user and host.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Actor {
    /// `session_user` of the operator's connection.
    pub login: String,
    /// OS user running Cutover.
    pub os_user: String,
    /// Host running Cutover.
    pub host: String,
}

impl Actor {
    /// Reads `session_user` from the connection and the OS user/host from this process.
    pub async fn current(client: &impl GenericClient) -> Result<Actor, DbError> {
        let row = client.query_one("SELECT session_user::text", &[]).await?;
        Ok(Actor {
            login: row.get(0),
            os_user: crate::db::os_user(),
            host: crate::db::host_name(),
        })
    }
}

impl std::fmt::Display for Actor {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{} ({}@{})", self.login, self.os_user, self.host)
    }
}

/// What to append.
#[derive(Debug, Clone)]
pub struct NewEntry<'a> {
    /// Who.
    pub actor: &'a Actor,
    /// The migration.
    pub plan_id: &'a str,
    /// sha256 of the plan file in force.
    pub plan_sha256: &'a str,
    /// Verb, e.g. `phase.apply`, `signoff`, `backfill.pause`, `note`.
    pub action: &'a str,
    /// The phase concerned, if any.
    pub phase: Option<Phase>,
    /// Anything else, as JSON.
    pub details: Value,
}

/// A stored audit entry.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Entry {
    /// Position in the chain, from 1.
    pub seq: i64,
    /// RFC 3339 UTC time with microseconds.
    pub at: String,
    /// PostgreSQL login.
    pub login: String,
    /// OS user.
    pub os_user: String,
    /// Host.
    pub host: String,
    /// Migration.
    pub plan_id: String,
    /// Plan sha256.
    pub plan_sha256: String,
    /// Verb.
    pub action: String,
    /// Phase.
    pub phase: Option<String>,
    /// Details.
    pub details: Value,
    /// Hash of the previous entry.
    pub prev_hash: String,
    /// This entry's hash.
    pub hash: String,
}

impl Entry {
    /// The hash this entry should have, given its predecessor's hash.
    pub fn expected_hash(&self, prev_hash: &str) -> String {
        chain_hash(
            prev_hash,
            &json!({
                "seq": self.seq, "at": self.at, "login": self.login, "os_user": self.os_user,
                "host": self.host, "plan_id": self.plan_id, "plan_sha256": self.plan_sha256,
                "action": self.action, "phase": self.phase, "details": self.details,
            }),
        )
    }

    fn from_row(row: &tokio_postgres::Row) -> Entry {
        Entry {
            seq: row.get("seq"),
            at: row.get("at"),
            login: row.get("login"),
            os_user: row.get("os_user"),
            host: row.get("host"),
            plan_id: row.get("plan_id"),
            plan_sha256: row.get("plan_sha256"),
            action: row.get("action"),
            phase: row.get("phase"),
            details: row.get("details"),
            prev_hash: row.get("prev_hash"),
            hash: row.get("hash"),
        }
    }
}

fn chain_hash(prev_hash: &str, canonical: &Value) -> String {
    let mut h = Sha256::new();
    h.update(prev_hash.as_bytes());
    h.update(canonical.to_string().as_bytes());
    hex::encode(h.finalize())
}

/// Appends an entry inside the caller's transaction (or as its own statement group when
/// `client` is not in a transaction — then the lock is held only for the insert).
pub async fn append(client: &impl GenericClient, entry: NewEntry<'_>) -> Result<Entry, DbError> {
    client
        .query_one("SELECT pg_advisory_xact_lock($1)", &[&APPEND_LOCK])
        .await?;
    let head = client
        .query_opt(
            "SELECT seq, hash FROM cutover.audit_log ORDER BY seq DESC LIMIT 1",
            &[],
        )
        .await?;
    let (prev_seq, prev_hash) = match head {
        Some(r) => (r.get::<_, i64>(0), r.get::<_, String>(1)),
        None => (0, GENESIS.to_string()),
    };
    let mut e = Entry {
        seq: prev_seq + 1,
        at: Utc::now().to_rfc3339_opts(SecondsFormat::Micros, true),
        login: entry.actor.login.clone(),
        os_user: entry.actor.os_user.clone(),
        host: entry.actor.host.clone(),
        plan_id: entry.plan_id.to_string(),
        plan_sha256: entry.plan_sha256.to_string(),
        action: entry.action.to_string(),
        phase: entry.phase.map(|p| p.as_str().to_string()),
        details: normalize(entry.details),
        prev_hash,
        hash: String::new(),
    };
    e.hash = e.expected_hash(&e.prev_hash);
    client
        .execute(
            "INSERT INTO cutover.audit_log
               (seq, at, login, os_user, host, plan_id, plan_sha256, action, phase, details, prev_hash, hash)
             VALUES ($1,$2,$3,$4,$5,$6,$7,$8,$9,$10,$11,$12)",
            &[
                &e.seq, &e.at, &e.login, &e.os_user, &e.host, &e.plan_id, &e.plan_sha256,
                &e.action, &e.phase, &e.details, &e.prev_hash, &e.hash,
            ],
        )
        .await?;
    tracing::info!(target: "audit", seq = e.seq, action = %e.action, actor = %entry.actor, "audit: {}", e.action);
    Ok(e)
}

/// Round-trips details through jsonb's canonical form so the stored value hashes the same.
fn normalize(details: Value) -> Value {
    match details {
        Value::Null => json!({}),
        other => other,
    }
}

/// Entries with `seq > after`, oldest first, at most `limit`.
pub async fn entries_after(
    client: &impl GenericClient,
    after: i64,
    limit: i64,
) -> Result<Vec<Entry>, DbError> {
    let rows = client
        .query(
            "SELECT * FROM cutover.audit_log WHERE seq > $1 ORDER BY seq LIMIT $2",
            &[&after, &limit],
        )
        .await?;
    Ok(rows.iter().map(Entry::from_row).collect())
}

/// The result of recomputing the chain.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Verification {
    /// Every hash matches; `entries` were checked and the head hash is given.
    Intact {
        /// Number of entries.
        entries: i64,
        /// Hash of the last entry (anchor it outside the database).
        head: String,
    },
    /// The first entry whose stored or linked hash does not match.
    Broken {
        /// Its sequence number.
        seq: i64,
        /// What does not match.
        reason: String,
    },
}

/// Recomputes the whole chain in pages and names the first broken entry.
pub async fn verify(client: &impl GenericClient) -> Result<Verification, DbError> {
    let mut prev_hash = GENESIS.to_string();
    let mut expected_seq = 1;
    loop {
        let page = entries_after(client, expected_seq - 1, 5_000).await?;
        if page.is_empty() {
            return Ok(Verification::Intact {
                entries: expected_seq - 1,
                head: prev_hash,
            });
        }
        for e in page {
            if e.seq != expected_seq {
                return Ok(Verification::Broken {
                    seq: expected_seq,
                    reason: format!("entry {expected_seq} is missing (next is {})", e.seq),
                });
            }
            if e.prev_hash != prev_hash {
                return Ok(Verification::Broken {
                    seq: e.seq,
                    reason: "prev_hash does not match the previous entry's hash".into(),
                });
            }
            if e.expected_hash(&prev_hash) != e.hash {
                return Ok(Verification::Broken {
                    seq: e.seq,
                    reason: "content does not match its hash (edited)".into(),
                });
            }
            prev_hash = e.hash;
            expected_seq += 1;
        }
    }
}

/// Control state that has no audit entry: every registered migration, every phase that left
/// `pending` (in its current state), every sign-off and every override must have theirs. A
/// chain that verifies but misses these was cut (e.g. truncated with triggers disabled).
pub async fn cross_check(client: &impl GenericClient) -> Result<Vec<String>, DbError> {
    let rows = client
        .query(
            "SELECT format('migration %s is registered but has no plan.register entry', m.plan_id)
               FROM cutover.migrations m
              WHERE NOT EXISTS (SELECT 1 FROM cutover.audit_log a
                                 WHERE a.plan_id = m.plan_id AND a.action = 'plan.register')
             UNION ALL
             SELECT format('phase %s of %s is %s but no audit entry records that transition',
                           p.phase, p.plan_id, p.state)
               FROM cutover.phases p
              WHERE p.state <> 'pending'
                AND NOT EXISTS (SELECT 1 FROM cutover.audit_log a
                                 WHERE a.plan_id = p.plan_id AND a.phase = p.phase
                                   AND a.details->>'to' = p.state)
             UNION ALL
             SELECT format('sign-off of %s gate %s as %s by %s has no audit entry',
                           s.plan_id, s.gate, s.role, s.login)
               FROM cutover.signoffs s
              WHERE NOT EXISTS (SELECT 1 FROM cutover.audit_log a
                                 WHERE a.plan_id = s.plan_id AND a.action = 'signoff'
                                   AND a.details->>'gate' = s.gate AND a.details->>'role' = s.role
                                   AND a.login = s.login)
             UNION ALL
             SELECT format('override of %s gate %s by %s has no audit entry', o.plan_id, o.gate, o.login)
               FROM cutover.overrides o
              WHERE NOT EXISTS (SELECT 1 FROM cutover.audit_log a
                                 WHERE a.plan_id = o.plan_id AND a.action = 'gate.override'
                                   AND a.details->>'gate' = o.gate AND a.login = o.login)",
            &[],
        )
        .await?;
    Ok(rows.iter().map(|r| r.get(0)).collect())
}

/// Whether an entry with `hash` is in the chain (an externally kept head must be).
pub async fn contains_hash(client: &impl GenericClient, hash: &str) -> Result<bool, DbError> {
    Ok(client
        .query_opt("SELECT 1 FROM cutover.audit_log WHERE hash = $1", &[&hash])
        .await?
        .is_some())
}

/// Every entry (optionally only those of one plan), oldest first, streamed page by page to `sink`.
pub async fn export(
    client: &impl GenericClient,
    plan_id: Option<&str>,
    mut sink: impl FnMut(&Entry) -> std::io::Result<()>,
) -> Result<i64, DbError> {
    let mut after = 0;
    let mut count = 0;
    loop {
        let page = entries_after(client, after, 5_000).await?;
        let Some(last) = page.last() else {
            return Ok(count);
        };
        after = last.seq;
        for e in page
            .iter()
            .filter(|e| plan_id.is_none_or(|p| e.plan_id == p))
        {
            sink(e).map_err(|err| DbError::Query(format!("cannot write the export: {err}")))?;
            count += 1;
        }
    }
}

/// The last `n` entries of one plan, newest first.
pub async fn recent(
    client: &impl GenericClient,
    plan_id: &str,
    n: i64,
) -> Result<Vec<Entry>, DbError> {
    let rows = client
        .query(
            "SELECT * FROM cutover.audit_log WHERE plan_id = $1 ORDER BY seq DESC LIMIT $2",
            &[&plan_id, &n],
        )
        .await?;
    Ok(rows.iter().map(Entry::from_row).collect())
}

/// The last `n` entries, oldest first.
pub async fn last_entries(client: &impl GenericClient, n: i64) -> Result<Vec<Entry>, DbError> {
    let rows = client
        .query(
            "SELECT * FROM (SELECT * FROM cutover.audit_log ORDER BY seq DESC LIMIT $1) t ORDER BY seq",
            &[&n],
        )
        .await?;
    Ok(rows.iter().map(Entry::from_row).collect())
}

/// Follows the log: calls `sink` for every entry after `after` as it is appended, until `sink`
/// returns false. Wakes on `LISTEN cutover_events` and also polls every `poll` (the fallback
/// when notifications are lost or LISTEN is unavailable, e.g. behind a transaction pooler).
pub async fn follow(
    cfg: &crate::db::DbConfig,
    mut after: i64,
    poll: std::time::Duration,
    mut sink: impl FnMut(&Entry) -> bool,
) -> Result<(), DbError> {
    let (client, mut notes, _) =
        crate::db::connect_listening(cfg, &crate::db::SessionSettings::new("audit-tail")).await?;
    if let Err(e) = client
        .batch_execute(&format!(
            "LISTEN {}",
            crate::control::schema::NOTIFY_CHANNEL
        ))
        .await
    {
        tracing::warn!(
            "LISTEN unavailable ({}); polling every {} ms",
            crate::db::describe_error(&e),
            poll.as_millis()
        );
    }
    loop {
        for e in entries_after(&client, after, 1_000).await? {
            after = e.seq;
            if !sink(&e) {
                return Ok(());
            }
        }
        tokio::select! {
            Some(_) = notes.recv() => {}
            _ = tokio::time::sleep(poll) => {}
        }
    }
}

impl Entry {
    /// One line for people: `#seq at login (os@host) action [phase] details`.
    pub fn line(&self) -> String {
        let phase = self
            .phase
            .as_deref()
            .map(|p| format!(" [{p}]"))
            .unwrap_or_default();
        format!(
            "#{} {} {} ({}@{}) {} {}{} {}",
            self.seq,
            self.at,
            self.login,
            self.os_user,
            self.host,
            self.plan_id,
            self.action,
            phase,
            self.details
        )
    }
}
