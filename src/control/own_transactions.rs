//! `cutover.own_transactions`: each Cutover process's count of its own transactions on a
//! database ([`crate::db::tally`] counts them on the wire), so the error budget can leave out
//! every Cutover process's transactions — its own live count plus the last recorded counts of
//! the others.
//!
//! [`share`] is what the error budget subtracts. A process records while its counts change
//! (every [`RECORD_EVERY`], see [`Recorder`]) and once more as it exits ([`Recorder::finish`]),
//! on one connection it keeps per database. A recording is itself one transaction: the row
//! includes it.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use tokio::sync::Notify;
use tokio::task::JoinHandle;
use tokio_postgres::{Client, GenericClient, Statement};

use crate::db::tally::{self, Counters, Counts};
use crate::db::{self, DbError, SessionSettings};

/// How often a running process records its counts while they change.
pub const RECORD_EVERY: Duration = Duration::from_secs(2);

/// What the other Cutover processes recorded on a database.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Recorded {
    /// Their commits, rollbacks and deadlocks, summed.
    pub counts: Counts,
    /// How many processes recorded counts.
    pub processes: i64,
}

/// Cutover's transactions on a database so far.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Share {
    /// This process's live counts plus every other process's last recorded counts.
    pub counts: Counts,
    /// How many other processes had recorded counts.
    pub other_processes: i64,
}

/// Cutover's transactions on `client`'s database so far: this process's live count (when
/// `client` is a counted connection) plus the last recorded counts of every other Cutover
/// process. Read it in the same transaction as the database's counters it is compared with.
pub async fn share(client: &Client) -> Result<Share, DbError> {
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
pub async fn recorded_by_others(client: &impl GenericClient) -> Result<Recorded, DbError> {
    let readable: bool = client
        .query_one(
            "SELECT to_regclass('cutover.own_transactions') IS NOT NULL
                AND has_table_privilege('cutover.own_transactions', 'SELECT') AS readable",
            &[],
        )
        .await?
        .try_get("readable")?;
    if !readable {
        return Ok(Recorded::default());
    }
    let row = client
        .query_one(
            "SELECT coalesce(sum(commits), 0)::bigint AS commits,
                    coalesce(sum(rollbacks), 0)::bigint AS rollbacks,
                    coalesce(sum(deadlocks), 0)::bigint AS deadlocks, count(*) AS processes
               FROM cutover.own_transactions WHERE process <> $1",
            &[&tally::process_id()],
        )
        .await?;
    Ok(Recorded {
        counts: Counts {
            commits: row.try_get("commits")?,
            rollbacks: row.try_get("rollbacks")?,
            deadlocks: row.try_get("deadlocks")?,
        },
        processes: row.try_get("processes")?,
    })
}

/// The upsert of this process's row. Counts only grow: a row is never lowered.
const UPSERT: &str = "INSERT INTO cutover.own_transactions
        (process, host, pid, started_at, commits, rollbacks, deadlocks)
 VALUES ($1, $2, $3, $4, $5, $6, $7)
 ON CONFLICT (process) DO UPDATE SET
     commits = greatest(own_transactions.commits, excluded.commits),
     rollbacks = greatest(own_transactions.rollbacks, excluded.rollbacks),
     deadlocks = greatest(own_transactions.deadlocks, excluded.deadlocks),
     updated_at = clock_timestamp()";

/// The connection kept for recording one database's counts, with the upsert prepared on it
/// (`None`: the control schema there lacks the table).
struct Kept {
    counters: Arc<Counters>,
    client: Client,
    upsert: Option<Statement>,
}

impl Kept {
    async fn open(counters: Arc<Counters>) -> Result<Kept, DbError> {
        let client =
            db::connect_recording(counters.config(), &SessionSettings::new("tally")).await?;
        let present: bool = client
            .query_one(
                "SELECT to_regclass('cutover.own_transactions') IS NOT NULL AS present",
                &[],
            )
            .await?
            .try_get("present")?;
        let upsert = match present {
            true => Some(client.prepare(UPSERT).await?),
            false => None,
        };
        Ok(Kept {
            counters,
            client,
            upsert,
        })
    }

    /// Records the counts: one transaction, which the recorded row includes (everything the
    /// connection did before is counted already).
    async fn record(&self) -> Result<(), DbError> {
        let Some(upsert) = &self.upsert else {
            return Ok(());
        };
        let c = self.counters.counts();
        let pid = i32::try_from(std::process::id()).unwrap_or(i32::MAX);
        self.client
            .execute(
                upsert,
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
}

/// Records this process's counts on the databases whose counts changed, each over one
/// connection kept for it (opened on first use, again only after it failed).
#[derive(Default)]
pub struct Recording {
    kept: Vec<Kept>,
}

impl std::fmt::Debug for Recording {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Recording")
            .field("connections", &self.kept.len())
            .finish()
    }
}

impl Recording {
    /// Records the counts of every database whose counts changed since they were last
    /// recorded. Failures are logged: a database this login may not write to stays unrecorded.
    pub async fn record_changed(&mut self) {
        for counters in tally::changed() {
            if let Err(e) = self.record(&counters).await {
                // Recorded again at the next turn, on a new connection.
                counters.mark_changed();
                tracing::debug!(
                    target: "control",
                    "could not record Cutover's own transactions on {}: {e}",
                    counters.config().display()
                );
            }
        }
    }

    async fn record(&mut self, counters: &Arc<Counters>) -> Result<(), DbError> {
        let at = self
            .kept
            .iter()
            .position(|k| Arc::ptr_eq(&k.counters, counters) && !k.client.is_closed());
        let at = match at {
            Some(at) => at,
            None => {
                self.kept.retain(|k| !Arc::ptr_eq(&k.counters, counters));
                self.kept.push(Kept::open(counters.clone()).await?);
                self.kept.len() - 1
            }
        };
        let result = self.kept[at].record().await;
        if result.is_err() {
            self.kept.remove(at);
        }
        result
    }
}

/// The background task recording changed counts every [`RECORD_EVERY`] while `enabled` is
/// set; [`Recorder::finish`] records once more and stops it.
#[derive(Debug)]
pub struct Recorder {
    task: JoinHandle<Recording>,
    stop: Arc<Notify>,
    enabled: Arc<AtomicBool>,
}

impl Recorder {
    /// Starts recording on the current tokio runtime. `enabled` is set once the process acts as
    /// an operator (viewers write nothing, so their counts are never recorded).
    pub fn start(enabled: Arc<AtomicBool>) -> Recorder {
        let stop = Arc::new(Notify::new());
        let (flag, stopped) = (enabled.clone(), stop.clone());
        let task = tokio::spawn(async move {
            let mut recording = Recording::default();
            loop {
                tokio::select! {
                    () = tokio::time::sleep(RECORD_EVERY) => {}
                    () = stopped.notified() => return recording,
                }
                if flag.load(Ordering::SeqCst) {
                    recording.record_changed().await;
                }
            }
        });
        Recorder {
            task,
            stop,
            enabled,
        }
    }

    /// Stops the task and, when enabled, records what changed since its last recording (what
    /// this process did, for the error budget of other and later processes).
    pub async fn finish(mut self) {
        self.stop.notify_one();
        let mut recording = (&mut self.task).await.unwrap_or_default();
        if self.enabled.load(Ordering::SeqCst) {
            recording.record_changed().await;
        }
    }
}

impl Drop for Recorder {
    fn drop(&mut self) {
        self.task.abort();
    }
}
