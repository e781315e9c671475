//! Plan SQL that is meant only to read (golden queries, invariants, check expressions, the custom
//! throttle query, probe queries) runs through [`ReadOnly`], so it cannot change the database
//! even when it calls a function that writes.
//!
//! Each statement (or group of statements, [`ReadOnly::run`]) runs in a `READ ONLY` savepoint
//! that is always rolled back to — inside a transaction of its own on an idle connection
//! ([`ReadOnly::own`]), which then commits with nothing in it (so Cutover's reads add no
//! rollbacks to the database's counters; a plain `ROLLBACK` if the savepoint is gone), or
//! inside the caller's transaction, made read-only for the savepoint ([`ReadOnly::nested`]).
//! PostgreSQL then refuses `INSERT`/`UPDATE`/`DELETE`, DDL, `nextval`
//! and `setval` even inside functions (SQLSTATE 25006), and session settings changed with
//! `set_config` are undone. Two further defences follow the query: it must not have been given
//! a transaction id (only a write — to a temporary table — takes one), and session-level
//! advisory locks it took are released (they survive a rollback). Locks are told apart by
//! comparing the session's advisory locks before and after, so locks Cutover itself holds on
//! the connection (the plan's action lock during an apply) are kept — a second acquisition of
//! a key the session already held cannot be seen and is not released.
//!
//! [`ReadOnly::own`] first makes sure no transaction block is open on the connection (one open by
//! mistake is refused, untouched: `START TRANSACTION` inside it would only warn, and the closing
//! `COMMIT` would end it). A run costs three round trips besides the query (two nested).
//!
//! The plan SQL itself still goes over the extended protocol, one statement at a time; only the
//! fixed statements around it use the simple protocol.

use std::collections::BTreeSet;
use std::fmt;
use std::future::Future;

use tokio_postgres::types::ToSql;
use tokio_postgres::{Client, Row, SimpleQueryMessage, ToStatement};

use crate::db::describe_error;

/// The session's advisory locks, one `classid:objid:objsubid:mode` text each.
const LOCKS: &str =
    "SELECT coalesce(string_agg(format('%s:%s:%s:%s', classid, objid, objsubid, mode), \
     ',' ORDER BY classid, objid, objsubid, mode), '') \
     FROM pg_locks WHERE locktype = 'advisory' AND pid = pg_backend_pid() AND granted";

/// The savepoint of [`ReadOnly::nested`].
const SAVEPOINT: &str = "cutover_read_only";

/// How often one advisory lock is released at most (a session can take a key many times).
const MAX_UNLOCKS: usize = 10_000;

/// Where the read-only transaction comes from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Scope {
    /// The connection is idle: `START TRANSACTION READ ONLY` and a savepoint, rolled back to;
    /// then `COMMIT` of the empty transaction.
    Own,
    /// The caller's transaction is open: a savepoint with `SET LOCAL transaction_read_only`,
    /// rolled back to and released.
    Nested,
}

/// A connection on which plan SQL only reads; `what` names the plan field in errors.
#[derive(Debug, Clone)]
pub struct ReadOnly<'a> {
    client: &'a Client,
    scope: Scope,
    what: String,
}

/// Why a read-only query did not return its rows.
#[derive(Debug, thiserror::Error)]
#[error("{what}: {kind}")]
pub struct ReadOnlyError {
    /// The plan field (e.g. ``check `x` query``).
    pub what: String,
    /// What happened.
    pub kind: ReadOnlyErrorKind,
}

/// What went wrong with a read-only query.
#[derive(Debug)]
pub enum ReadOnlyErrorKind {
    /// The query failed; a write it tried is refused with SQLSTATE 25006.
    Query(tokio_postgres::Error),
    /// The query was given a transaction id: it wrote (rolled back).
    Wrote(String),
    /// The query took session-level advisory locks (released).
    AdvisoryLocks(Vec<String>),
    /// The connection was already inside a transaction block (a caller's mistake).
    InTransaction,
    /// A statement Cutover runs around the query failed.
    Bracket(tokio_postgres::Error),
}

impl fmt::Display for ReadOnlyErrorKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ReadOnlyErrorKind::Query(e) => f.write_str(&describe_error(e)),
            ReadOnlyErrorKind::Wrote(xid) => write!(
                f,
                "refused: the query wrote (it was given transaction id {xid}); it was rolled back"
            ),
            ReadOnlyErrorKind::AdvisoryLocks(keys) => write!(
                f,
                "refused: the query took session-level advisory locks ({}); they were released",
                keys.join(", ")
            ),
            ReadOnlyErrorKind::InTransaction => {
                f.write_str("the connection is already inside a transaction block; it must be idle")
            }
            ReadOnlyErrorKind::Bracket(e) => {
                write!(f, "around the read-only query: {}", describe_error(e))
            }
        }
    }
}

impl ReadOnlyError {
    /// True when the query was stopped for trying to change the database.
    pub fn is_write_refused(&self) -> bool {
        match &self.kind {
            ReadOnlyErrorKind::Query(e) => {
                e.code() == Some(&tokio_postgres::error::SqlState::READ_ONLY_SQL_TRANSACTION)
            }
            ReadOnlyErrorKind::Wrote(_) | ReadOnlyErrorKind::AdvisoryLocks(_) => true,
            ReadOnlyErrorKind::InTransaction | ReadOnlyErrorKind::Bracket(_) => false,
        }
    }
}

impl<'a> ReadOnly<'a> {
    /// On an idle connection: each run is a savepoint in its own read-only transaction, rolled
    /// back to.
    pub fn own(client: &'a Client, what: impl Into<String>) -> ReadOnly<'a> {
        ReadOnly {
            client,
            scope: Scope::Own,
            what: what.into(),
        }
    }

    /// Inside the caller's open transaction: each run is a read-only savepoint, rolled back to.
    pub fn nested(client: &'a Client, what: impl Into<String>) -> ReadOnly<'a> {
        ReadOnly {
            client,
            scope: Scope::Nested,
            what: what.into(),
        }
    }

    /// The same connection and scope, naming another plan field.
    pub fn named(&self, what: impl Into<String>) -> ReadOnly<'a> {
        ReadOnly {
            what: what.into(),
            ..self.clone()
        }
    }

    /// The same scope and plan field on another connection.
    pub fn on<'b>(&self, client: &'b Client) -> ReadOnly<'b> {
        ReadOnly {
            client,
            scope: self.scope,
            what: self.what.clone(),
        }
    }

    /// The connection (for statements that carry no plan SQL, or only prepare it).
    pub fn client(&self) -> &'a Client {
        self.client
    }

    /// True when both run their statements on the same connection.
    pub fn same_connection(&self, other: &ReadOnly<'_>) -> bool {
        std::ptr::eq(self.client, other.client)
    }

    /// `query` inside the read-only scope.
    pub async fn query<T>(
        &self,
        statement: &T,
        params: &[&(dyn ToSql + Sync)],
    ) -> Result<Vec<Row>, ReadOnlyError>
    where
        T: ?Sized + ToStatement,
    {
        self.run(async {
            self.client
                .query(statement, params)
                .await
                .map_err(|e| self.query_error(e))
        })
        .await
    }

    /// `query_one` inside the read-only scope.
    pub async fn query_one<T>(
        &self,
        statement: &T,
        params: &[&(dyn ToSql + Sync)],
    ) -> Result<Row, ReadOnlyError>
    where
        T: ?Sized + ToStatement,
    {
        self.run(async {
            self.client
                .query_one(statement, params)
                .await
                .map_err(|e| self.query_error(e))
        })
        .await
    }

    /// `query_opt` inside the read-only scope.
    pub async fn query_opt<T>(
        &self,
        statement: &T,
        params: &[&(dyn ToSql + Sync)],
    ) -> Result<Option<Row>, ReadOnlyError>
    where
        T: ?Sized + ToStatement,
    {
        self.run(async {
            self.client
                .query_opt(statement, params)
                .await
                .map_err(|e| self.query_error(e))
        })
        .await
    }

    /// The error of a failed query, naming the plan field.
    fn query_error(&self, e: tokio_postgres::Error) -> ReadOnlyError {
        self.error(ReadOnlyErrorKind::Query(e))
    }

    fn error(&self, kind: ReadOnlyErrorKind) -> ReadOnlyError {
        ReadOnlyError {
            what: self.what.clone(),
            kind,
        }
    }

    /// Runs `work` — statements on this connection, sent only once it is polled — inside the
    /// read-only scope, then checks and undoes what it may have done. An error of `work` is
    /// returned as it is (after the rollback); a write or lock it got past the server's refusal
    /// is an error too.
    pub async fn run<T, E>(&self, work: impl Future<Output = Result<T, E>>) -> Result<T, E>
    where
        E: From<ReadOnlyError>,
    {
        let before = self.begin().await?;
        let result = work.await;
        // After a failed query the transaction is aborted: no transaction id to read then.
        let after = self.end(result.is_ok()).await;
        let taken = match &after {
            Ok((_, after)) => self.release_new(&before.locks, after).await,
            Err(_) => Ok(Vec::new()),
        };
        let value = result?;
        let (wrote, _) = after.map_err(|e| self.error(ReadOnlyErrorKind::Bracket(e)))?;
        let taken = taken?;
        if let Some(xid) = wrote.filter(|x| Some(x) != before.xid.as_ref()) {
            return Err(self.error(ReadOnlyErrorKind::Wrote(xid)).into());
        }
        if !taken.is_empty() {
            return Err(self.error(ReadOnlyErrorKind::AdvisoryLocks(taken)).into());
        }
        Ok(value)
    }

    /// Opens the scope; returns the session's advisory locks and transaction id before the query.
    async fn begin(&self) -> Result<Before, ReadOnlyError> {
        if self.scope == Scope::Own && !self.idle().await? {
            return Err(self.error(ReadOnlyErrorKind::InTransaction));
        }
        let open = match self.scope {
            Scope::Own => format!("START TRANSACTION READ ONLY; SAVEPOINT {SAVEPOINT}"),
            Scope::Nested => {
                format!("SAVEPOINT {SAVEPOINT}; SET LOCAL transaction_read_only = on")
            }
        };
        let sql = format!(
            "{open}; SELECT current_setting('transaction_read_only'), \
             pg_current_xact_id_if_assigned()::text, ({LOCKS})"
        );
        let row = match self.client.simple_query(&sql).await {
            Ok(messages) => last_row(&messages),
            Err(e) => {
                // Never leave the connection inside what was opened before the failure.
                let _ = self.end(false).await;
                return Err(self.error(ReadOnlyErrorKind::Bracket(e)));
            }
        };
        let read_only = row.as_ref().and_then(|r| r.first().cloned().flatten());
        if read_only.as_deref() != Some("on") {
            // Plan SQL never runs outside a read-only scope.
            let _ = self.end(false).await;
            return Err(self.error(ReadOnlyErrorKind::InTransaction));
        }
        let mut row = row.unwrap_or_default().into_iter();
        let _ = row.next();
        Ok(Before {
            xid: row.next().flatten(),
            locks: split_locks(row.next().flatten().as_deref()),
        })
    }

    /// True when no transaction block is open: a statement sent alone then runs in a transaction
    /// that starts with it. (`START TRANSACTION` inside an open block would only warn — and make
    /// the caller's transaction read-only, which the closing `COMMIT` would then end.)
    async fn idle(&self) -> Result<bool, ReadOnlyError> {
        let messages = self
            .client
            .simple_query("SELECT now() = statement_timestamp()")
            .await
            .map_err(|e| self.error(ReadOnlyErrorKind::Bracket(e)))?;
        Ok(last_row(&messages)
            .and_then(|r| r.into_iter().next().flatten())
            .as_deref()
            == Some("t"))
    }

    /// Rolls the scope back, in one round trip (two when the savepoint is gone); returns the
    /// transaction id the scope had before the rollback (when `read_xid`) and the session's
    /// advisory locks after it.
    async fn end(
        &self,
        read_xid: bool,
    ) -> Result<(Option<String>, BTreeSet<String>), tokio_postgres::Error> {
        let xid = if read_xid {
            "SELECT pg_current_xact_id_if_assigned()::text; "
        } else {
            ""
        };
        // Locks taken in the savepoint are released by rolling back to it, so the session's
        // locks can be read before the outer transaction ends.
        let close = match self.scope {
            Scope::Own => format!("ROLLBACK TO SAVEPOINT {SAVEPOINT}; {LOCKS}; COMMIT"),
            Scope::Nested => {
                format!("ROLLBACK TO SAVEPOINT {SAVEPOINT}; RELEASE SAVEPOINT {SAVEPOINT}; {LOCKS}")
            }
        };
        let messages = match self.client.simple_query(&format!("{xid}{close}")).await {
            Ok(messages) => messages,
            // The work ended the block or released the savepoint: end whatever is left.
            Err(_) if self.scope == Scope::Own => {
                let messages = self
                    .client
                    .simple_query(&format!("ROLLBACK; {LOCKS}"))
                    .await?;
                return Ok((None, split_locks(first(last_row(&messages)).as_deref())));
            }
            Err(e) => return Err(e),
        };
        let wrote = if read_xid {
            first(first_row(&messages))
        } else {
            None
        };
        Ok((wrote, split_locks(first(last_row(&messages)).as_deref())))
    }

    /// Releases the advisory locks held now that were not held before; returns them.
    async fn release_new(
        &self,
        before: &BTreeSet<String>,
        after: &BTreeSet<String>,
    ) -> Result<Vec<String>, ReadOnlyError> {
        let mut taken = Vec::new();
        for lock in after.difference(before) {
            let Some(unlock) = unlock_sql(lock) else {
                continue;
            };
            for _ in 0..MAX_UNLOCKS {
                let released: bool = self
                    .client
                    .query_one(unlock.as_str(), &[])
                    .await
                    .map_err(|e| self.error(ReadOnlyErrorKind::Bracket(e)))?
                    .try_get("released")
                    .map_err(|e| self.error(ReadOnlyErrorKind::Bracket(e)))?;
                if !released {
                    break;
                }
            }
            tracing::warn!(
                target: "db",
                what = %self.what,
                lock = %lock,
                "released an advisory lock a read-only query took"
            );
            taken.push(describe_lock(lock));
        }
        Ok(taken)
    }
}

/// The state before the query.
struct Before {
    xid: Option<String>,
    locks: BTreeSet<String>,
}

/// The values of a simple-query result row, if `m` is one.
fn row_values(m: &SimpleQueryMessage) -> Option<Vec<Option<String>>> {
    match m {
        SimpleQueryMessage::Row(r) => {
            Some((0..r.len()).map(|i| r.get(i).map(str::to_string)).collect())
        }
        _ => None,
    }
}

/// The first value of a row.
fn first(row: Option<Vec<Option<String>>>) -> Option<String> {
    row.and_then(|r| r.into_iter().next().flatten())
}

/// The values of the first row among simple-query results.
fn first_row(messages: &[SimpleQueryMessage]) -> Option<Vec<Option<String>>> {
    messages.iter().find_map(row_values)
}

/// The values of the last row among simple-query results.
fn last_row(messages: &[SimpleQueryMessage]) -> Option<Vec<Option<String>>> {
    messages.iter().rev().find_map(row_values)
}

fn split_locks(text: Option<&str>) -> BTreeSet<String> {
    text.unwrap_or("")
        .split(',')
        .filter(|s| !s.is_empty())
        .map(str::to_string)
        .collect()
}

/// `classid:objid:objsubid:mode` as the parts of a lock.
fn lock_parts(lock: &str) -> Option<(u32, u32, u8, bool)> {
    let mut p = lock.split(':');
    let classid = p.next()?.parse().ok()?;
    let objid = p.next()?.parse().ok()?;
    let sub = p.next()?.parse().ok()?;
    let shared = match p.next()? {
        "ShareLock" => true,
        "ExclusiveLock" => false,
        _ => return None,
    };
    Some((classid, objid, sub, shared))
}

/// One release of `lock` while the session still holds it (`false` once it does not, so no
/// warning is raised for a lock not held).
fn unlock_sql(lock: &str) -> Option<String> {
    let (classid, objid, sub, shared) = lock_parts(lock)?;
    let suffix = if shared { "_shared" } else { "" };
    let args = match sub {
        1 => format!("{}", (i64::from(classid) << 32) | i64::from(objid)),
        2 => format!("{}, {}", classid as i32, objid as i32),
        _ => return None,
    };
    let mode = if shared { "ShareLock" } else { "ExclusiveLock" };
    Some(format!(
        "SELECT CASE WHEN EXISTS (SELECT 1 FROM pg_locks WHERE locktype = 'advisory' \
           AND pid = pg_backend_pid() AND granted AND classid = {classid} AND objid = {objid} \
           AND objsubid = {sub} AND mode = '{mode}') \
         THEN pg_advisory_unlock{suffix}({args}) ELSE false END AS released"
    ))
}

/// A lock as the key the query passed: `pg_advisory_lock(42)` or `(1, 2)`, and its mode.
fn describe_lock(lock: &str) -> String {
    match lock_parts(lock) {
        Some((classid, objid, 1, shared)) => format!(
            "key {}{}",
            (i64::from(classid) << 32) | i64::from(objid),
            if shared { " shared" } else { "" }
        ),
        Some((classid, objid, _, shared)) => format!(
            "key ({}, {}){}",
            classid as i32,
            objid as i32,
            if shared { " shared" } else { "" }
        ),
        None => lock.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn locks_are_released_by_the_key_they_were_taken_with() {
        assert_eq!(describe_lock("0:42:1:ExclusiveLock"), "key 42");
        assert_eq!(describe_lock("1:0:1:ShareLock"), "key 4294967296 shared");
        assert_eq!(describe_lock("4294967295:7:2:ExclusiveLock"), "key (-1, 7)");
        let sql = unlock_sql("0:42:1:ShareLock").unwrap_or_default();
        assert!(sql.contains("pg_advisory_unlock_shared(42)"), "{sql}");
        let sql = unlock_sql("4294967295:7:2:ExclusiveLock").unwrap_or_default();
        assert!(sql.contains("pg_advisory_unlock(-1, 7)"), "{sql}");
        assert!(unlock_sql("garbage").is_none());
    }
}
