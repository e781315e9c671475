//! `cutover.own_transactions`: each Cutover process's count of its own transactions on a
//! database ([`crate::db::tally`] counts them on the wire), so the error budget can leave out
//! every Cutover process's transactions — its own live count plus the last recorded counts of
//! the others.
//!
//! [`share`] is what the error budget subtracts. A process records while its counts change (every [`RECORD_EVERY`], see [`Recorder`]) and
//! once more as it exits ([`record_changed`]). The recording is itself a transaction: the row
//! includes it.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use tokio::task::JoinHandle;
use tokio_postgres::{Client, GenericClient};

use crate::db::tally::{self, Counters, Counts};
use crate::db::{self, DbError, SessionSettings};

/// How often a running process records its counts while they change.
pub(crate) const RECORD_EVERY: Duration = Duration::from_secs(2);

/// What the other Cutover processes recorded on a database.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub(crate) struct Recorded {
    /// Their commits, rollbacks and deadlocks, summed.
    pub counts: Counts,
    /// How many processes recorded counts.
    pub processes: i64,
}

/// Cutover's transactions on a database so far.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub(crate) struct Share {
    /// This process's live counts plus every other process's last recorded counts.
    pub counts: Counts,
    /// How many other processes had recorded counts.
    pub other_processes: i64,
}

/// Cutover's transactions on `client`'s database so far: this process's live count (when
/// `client` is a counted connection) plus the last recorded counts of every other Cutover
/// process. Read it in the same transaction as the database's counters it is compared with.
pub(crate) async fn share(client: &Client) -> Result<Share, DbError> {
    let own = tally::counters_of(client)
        .await?
        .map(|c| c.counts())
        .unwrap_or_default();
    let others = recorded_by_others(client).await?;
    Ok(Share {
        counts: own.plus(&others.counts),
        other_processes: others.processes,
    })
}

/// The counts every other Cutover process recorded on `client`'s database. Nothing when the
/// table is missing (a control schema older than migration 41, or none) or unreadable to this
/// login; never fails the caller's transaction on that account.
pub(crate) async fn recorded_by_others(client: &impl GenericClient) -> Result<Recorded, DbError> {
    let readable: bool = client
        .query_one(
            "SELECT to_regclass('cutover.own_transactions') IS NOT NULL
                AND has_table_privilege('cutover.own_transactions', 'SELECT')",
            &[],
        )
        .await?
        .get(0);
    if !readable {
        return Ok(Recorded::default());
    }
    let row = client
        .query_one(
            "SELECT coalesce(sum(commits), 0)::bigint, coalesce(sum(rollbacks), 0)::bigint,
                    coalesce(sum(deadlocks), 0)::bigint, count(*)
               FROM cutover.own_transactions WHERE process <> $1",
            &[&tally::process_id()],
        )
        .await?;
    Ok(Recorded {
        counts: Counts {
            commits: row.get(0),
            rollbacks: row.get(1),
            deadlocks: row.get(2),
        },
        processes: row.get(3),
    })
}

/// Records this process's counts for `counters`' database (a no-op where the control schema
/// lacks the table). Counts only grow: a row is never lowered.
pub(crate) async fn record(counters: &Counters) -> Result<(), DbError> {
    let client = db::connect_recording(counters.config(), &SessionSettings::new("tally")).await?;
    let present: bool = client
        .query_one(
            "SELECT to_regclass('cutover.own_transactions') IS NOT NULL",
            &[],
        )
        .await?
        .get(0);
    if !present {
        return Ok(());
    }
    let upsert = client
        .prepare(
            "INSERT INTO cutover.own_transactions
                    (process, host, pid, started_at, commits, rollbacks, deadlocks)
             VALUES ($1, $2, $3, $4, $5, $6, $7)
             ON CONFLICT (process) DO UPDATE SET
                 commits = greatest(own_transactions.commits, excluded.commits),
                 rollbacks = greatest(own_transactions.rollbacks, excluded.rollbacks),
                 deadlocks = greatest(own_transactions.deadlocks, excluded.deadlocks),
                 updated_at = clock_timestamp()",
        )
        .await?;
    // Everything this connection did so far (preparing included) is counted; executing the
    // prepared upsert adds exactly one commit.
    let c = counters.counts();
    let pid = i32::try_from(std::process::id()).unwrap_or(i32::MAX);
    client
        .execute(
            &upsert,
            &[
                &tally::process_id(),
                &db::host_name(),
                &pid,
                &tally::process_started_at(),
                &(c.commits + 1),
                &c.rollbacks,
                &c.deadlocks,
            ],
        )
        .await?;
    Ok(())
}

/// Records the counts of every database whose counts changed since they were last recorded.
/// Failures are logged: a database this login may not write to stays unrecorded.
pub(crate) async fn record_changed() {
    for counters in tally::changed() {
        if let Err(e) = record(&counters).await {
            tracing::debug!(
                target: "control",
                "could not record Cutover's own transactions on {}: {e}",
                counters.config().display()
            );
        }
    }
}

/// The background task recording changed counts every [`RECORD_EVERY`] while `enabled` is
/// set; it stops when dropped.
#[derive(Debug)]
pub(crate) struct Recorder {
    task: JoinHandle<()>,
}

impl Recorder {
    /// Starts recording on the current tokio runtime. `enabled` is set once the process acts as
    /// an operator (viewers write nothing, so their counts are never recorded).
    pub(crate) fn start(enabled: Arc<AtomicBool>) -> Recorder {
        let task = tokio::spawn(async move {
            loop {
                tokio::time::sleep(RECORD_EVERY).await;
                if enabled.load(Ordering::SeqCst) {
                    record_changed().await;
                }
            }
        });
        Recorder { task }
    }
}

impl Drop for Recorder {
    fn drop(&mut self) {
        self.task.abort();
    }
}
