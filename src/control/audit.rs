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
use tokio_postgres::{GenericClient, Transaction};

use crate::db::DbError;
use crate::plan::{Event, Phase};

/// Hash of the (empty) predecessor of the first entry.
pub const GENESIS: &str = "0000000000000000000000000000000000000000000000000000000000000000";

/// Advisory-lock key serializing audit appends.
const APPEND_LOCK: i64 = 0x0061_7564_6974;

/// Every verb the audit log records. The stored text ([`AuditAction::as_str`]) is hashed into
/// each entry: it must never change, or existing chains stop verifying.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum AuditAction {
    /// A plan (version) was registered.
    PlanRegister,
    /// A lead approved a plan version that changes the governance.
    PlanApprove,
    /// An action was refused by the anchored authorization.
    AuthzRefused,
    /// Applying a phase started.
    PhaseApplyStart,
    /// A phase was applied.
    PhaseApply,
    /// Applying a phase failed.
    PhaseApplyFailed,
    /// Rolling back a phase started.
    PhaseRollbackStart,
    /// A phase was rolled back.
    PhaseRollback,
    /// Rolling back a phase failed.
    PhaseRollbackFailed,
    /// A role signed off a gate.
    Signoff,
    /// A sign-off was refused.
    SignoffRefused,
    /// A lead overrode a gate.
    GateOverride,
    /// A feature flag was set.
    FlagSet,
    /// An operator note.
    Note,
    /// The plan was rehearsed.
    Rehearse,
    /// An owner attested a scorecard category.
    Attest,
    /// An attestation was refused.
    AttestRefused,
    /// Lint findings were acknowledged for a gate.
    LintAcknowledged,
    /// The backfill was paused.
    BackfillPause,
    /// The backfill was stopped.
    BackfillStop,
    /// The backfill was resumed.
    BackfillResume,
    /// The backfill finished.
    BackfillDone,
    /// The backfill's live settings changed.
    BackfillTune,
}

impl AuditAction {
    /// Every action.
    pub const ALL: [AuditAction; 23] = [
        AuditAction::PlanRegister,
        AuditAction::PlanApprove,
        AuditAction::AuthzRefused,
        AuditAction::PhaseApplyStart,
        AuditAction::PhaseApply,
        AuditAction::PhaseApplyFailed,
        AuditAction::PhaseRollbackStart,
        AuditAction::PhaseRollback,
        AuditAction::PhaseRollbackFailed,
        AuditAction::Signoff,
        AuditAction::SignoffRefused,
        AuditAction::GateOverride,
        AuditAction::FlagSet,
        AuditAction::Note,
        AuditAction::Rehearse,
        AuditAction::Attest,
        AuditAction::AttestRefused,
        AuditAction::LintAcknowledged,
        AuditAction::BackfillPause,
        AuditAction::BackfillStop,
        AuditAction::BackfillResume,
        AuditAction::BackfillDone,
        AuditAction::BackfillTune,
    ];

    /// The text stored in `cutover.audit_log.action`.
    pub fn as_str(self) -> &'static str {
        match self {
            AuditAction::PlanRegister => "plan.register",
            AuditAction::PlanApprove => "plan.approve",
            AuditAction::AuthzRefused => "authz.refused",
            AuditAction::PhaseApplyStart => "phase.apply.start",
            AuditAction::PhaseApply => "phase.apply",
            AuditAction::PhaseApplyFailed => "phase.apply.failed",
            AuditAction::PhaseRollbackStart => "phase.rollback.start",
            AuditAction::PhaseRollback => "phase.rollback",
            AuditAction::PhaseRollbackFailed => "phase.rollback.failed",
            AuditAction::Signoff => "signoff",
            AuditAction::SignoffRefused => "signoff.refused",
            AuditAction::GateOverride => "gate.override",
            AuditAction::FlagSet => "flag.set",
            AuditAction::Note => "note",
            AuditAction::Rehearse => "rehearse",
            AuditAction::Attest => "attest",
            AuditAction::AttestRefused => "attest.refused",
            AuditAction::LintAcknowledged => "lint.acknowledged",
            AuditAction::BackfillPause => "backfill.pause",
            AuditAction::BackfillStop => "backfill.stop",
            AuditAction::BackfillResume => "backfill.resume",
            AuditAction::BackfillDone => "backfill.done",
            AuditAction::BackfillTune => "backfill.tune",
        }
    }

    /// Parses stored text.
    pub fn parse(s: &str) -> Option<AuditAction> {
        AuditAction::ALL.into_iter().find(|a| a.as_str() == s)
    }

    /// The notification an entry of this action raises: the mapping the `outbox` trigger on
    /// `cutover.audit_log` implements (a database test holds the two together).
    pub fn event(self) -> Option<Event> {
        match self {
            AuditAction::PhaseApply => Some(Event::PhaseApplied),
            AuditAction::PhaseRollback => Some(Event::PhaseRolledBack),
            AuditAction::PhaseApplyFailed | AuditAction::PhaseRollbackFailed => {
                Some(Event::PhaseFailed)
            }
            AuditAction::Signoff => Some(Event::Signoff),
            AuditAction::GateOverride => Some(Event::Override),
            AuditAction::BackfillDone => Some(Event::BackfillDone),
            _ => None,
        }
    }
}

impl std::fmt::Display for AuditAction {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

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
        let row = client
            .query_one("SELECT session_user::text AS login", &[])
            .await?;
        Ok(Actor {
            login: row.get("login"),
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
    /// Verb.
    pub action: AuditAction,
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
    /// Verb (as stored: an older or newer build may have written one this build does not know).
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
        Some(r) => (r.get::<_, i64>("seq"), r.get::<_, String>("hash")),
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
        action: entry.action.as_str().to_string(),
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
                    AS problem
               FROM cutover.migrations m
              WHERE NOT EXISTS (SELECT 1 FROM cutover.audit_log a
                                 WHERE a.plan_id = m.plan_id AND a.action = $1)
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
                                 WHERE a.plan_id = s.plan_id AND a.action = $2
                                   AND a.details->>'gate' = s.gate AND a.details->>'role' = s.role
                                   AND a.login = s.login)
             UNION ALL
             SELECT format('override of %s gate %s by %s has no audit entry', o.plan_id, o.gate, o.login)
               FROM cutover.overrides o
              WHERE NOT EXISTS (SELECT 1 FROM cutover.audit_log a
                                 WHERE a.plan_id = o.plan_id AND a.action = $3
                                   AND a.details->>'gate' = o.gate AND a.login = o.login)",
            &[
                &AuditAction::PlanRegister.as_str(),
                &AuditAction::Signoff.as_str(),
                &AuditAction::GateOverride.as_str(),
            ],
        )
        .await?;
    Ok(rows.iter().map(|r| r.get("problem")).collect())
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

/// True when `plan_id` has an entry of `action` for plan version `plan_sha256` and `phase`.
pub async fn recorded(
    client: &impl GenericClient,
    plan_id: &str,
    plan_sha256: &str,
    action: AuditAction,
    phase: Phase,
) -> Result<bool, tokio_postgres::Error> {
    Ok(client
        .query_opt(
            "SELECT 1 FROM cutover.audit_log
              WHERE plan_id = $1 AND plan_sha256 = $2 AND action = $3 AND phase = $4",
            &[&plan_id, &plan_sha256, &action.as_str(), &phase.as_str()],
        )
        .await?
        .is_some())
}

/// Serializes the appending of operator notes for the caller's transaction, so the same note is
/// not recorded twice by two sessions at once.
pub async fn lock_notes(tx: &Transaction<'_>) -> Result<(), tokio_postgres::Error> {
    tx.query_one(
        "SELECT pg_advisory_xact_lock(hashtext('cutover:note'))",
        &[],
    )
    .await?;
    Ok(())
}

/// An operator note (an audit entry of action `note`).
#[derive(Debug, Clone, Serialize)]
pub struct Note {
    /// Audit sequence number.
    pub seq: i64,
    /// When (RFC 3339).
    pub at: String,
    /// Login.
    pub login: String,
    /// Text.
    pub text: String,
}

/// The latest note `login` wrote on `plan_id`: its sequence number and text.
pub async fn last_note_by(
    client: &impl GenericClient,
    plan_id: &str,
    login: &str,
) -> Result<Option<(i64, Option<String>)>, tokio_postgres::Error> {
    Ok(client
        .query_opt(
            "SELECT seq, details->>'text' AS text FROM cutover.audit_log
              WHERE plan_id = $1 AND action = $3 AND login = $2 ORDER BY seq DESC LIMIT 1",
            &[&plan_id, &login, &AuditAction::Note.as_str()],
        )
        .await?
        .map(|r| (r.get("seq"), r.get("text"))))
}

/// Every note on `plan_id`, oldest first.
pub async fn notes(
    client: &impl GenericClient,
    plan_id: &str,
) -> Result<Vec<Note>, tokio_postgres::Error> {
    let rows = client
        .query(
            "SELECT seq, at, login, details->>'text' AS text FROM cutover.audit_log
              WHERE plan_id = $1 AND action = $2 ORDER BY seq",
            &[&plan_id, &AuditAction::Note.as_str()],
        )
        .await?;
    Ok(rows
        .iter()
        .map(|r| Note {
            seq: r.get("seq"),
            at: r.get("at"),
            login: r.get("login"),
            text: r.get::<_, Option<String>>("text").unwrap_or_default(),
        })
        .collect())
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

#[cfg(test)]
mod tests {
    use serde_json::{json, Value};

    /// Details are hashed as written and verified as read back from jsonb's text: every float
    /// must parse back to the very value written (a backfill's `throttled_seconds` of
    /// 2.6995906769999998 came back one unit off and the intact chain read as edited).
    #[test]
    fn floats_in_details_read_back_exactly() {
        for x in [
            2.699_590_677,
            2.699_590_676_999_999_8_f64,
            0.1 + 0.2,
            1e-7,
            123_456.789_012_345_67,
        ] {
            let written = json!({ "throttled_seconds": x });
            let read: Value = serde_json::from_str(&written.to_string()).expect("json");
            assert_eq!(read, written, "{x:?}");
        }
    }
}
