//! Application workloads for the lifecycle harness: SQL run in a loop on a connection of its
//! own while phases are applied and rolled back, as an application of each version would.
//!
//! A [`Workloads`] names the old version's SQL (written against the old shape, at work from
//! before expand until contract), the new version's (against the new shape, at work while the
//! read switch is applied), where their rows live, and an exact parity query written by the
//! test. Each iteration is one implicit transaction (a simple-query batch); every row it returns
//! with an `id` column counts as a row written, which must be found afterwards — in the old
//! shape until contract, in the new shape after it. An iteration that fails fails the test: the
//! point of the lifecycle is that neither version notices it (a deadlock against the engine's
//! DDL is retried, as an application retries one).

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::sync::{watch, RwLock};
use tokio::task::JoinHandle;
use tokio_postgres::{Client, SimpleQueryMessage};

/// The workloads of both versions and what proves they kept working.
#[derive(Debug, Clone)]
pub struct Workloads {
    /// The old version's SQL, through the old shape.
    pub old: &'static str,
    /// The new version's SQL, through the new shape.
    pub new: &'static str,
    /// The relation holding the written rows (by `id`) in the old shape.
    pub old_table: &'static str,
    /// The relation holding them in the new shape (after contract).
    pub new_table: &'static str,
    /// Counts rows where the new shape disagrees with the old: must be 0 whenever the backfill
    /// is applied, the writers being at work.
    pub parity: &'static str,
}

/// Pause between two iterations: a lifecycle of a few seconds runs a few hundred of them.
const PAUSE: Duration = Duration::from_millis(8);

/// One workload at work.
pub struct Runner {
    what: &'static str,
    stop: watch::Sender<bool>,
    task: JoinHandle<Result<(), String>>,
    iterations: Arc<AtomicU64>,
    ids: Arc<Mutex<Vec<i64>>>,
}

impl Runner {
    /// Starts `sql` in a loop on `client`. Each iteration holds `gate` for reading: whoever
    /// holds it for writing has the database quiet.
    pub fn start(
        what: &'static str,
        sql: &'static str,
        client: Client,
        gate: Arc<RwLock<()>>,
    ) -> Runner {
        let (stop, mut stopped) = watch::channel(false);
        let iterations = Arc::new(AtomicU64::new(0));
        let ids = Arc::new(Mutex::new(Vec::new()));
        let (count, written) = (iterations.clone(), ids.clone());
        let task = tokio::spawn(async move {
            while !*stopped.borrow() {
                {
                    let _running = gate.read().await;
                    match client.simple_query(sql).await {
                        Ok(messages) => {
                            let mut new_ids = returned_ids(&messages)?;
                            written
                                .lock()
                                .unwrap_or_else(|e| e.into_inner())
                                .append(&mut new_ids);
                            count.fetch_add(1, Ordering::SeqCst);
                        }
                        Err(e) if retried(&e) => {}
                        Err(e) => {
                            return Err(format!(
                                "iteration {}: {}",
                                count.load(Ordering::SeqCst) + 1,
                                super::describe(&e)
                            ))
                        }
                    }
                }
                tokio::select! {
                    _ = tokio::time::sleep(PAUSE) => {}
                    _ = stopped.changed() => {}
                }
            }
            Ok(())
        });
        Runner {
            what,
            stop,
            task,
            iterations,
            ids,
        }
    }

    /// Iterations done so far.
    pub fn iterations(&self) -> u64 {
        self.iterations.load(Ordering::SeqCst)
    }

    /// True once the loop ended: it failed ([`Runner::stop`] says how).
    pub fn is_finished(&self) -> bool {
        self.task.is_finished()
    }

    /// Waits until `n` more iterations than `from` are done (or the workload failed).
    pub async fn settle(&self, from: u64, n: u64) {
        while self.iterations() < from + n && !self.task.is_finished() {
            tokio::time::sleep(Duration::from_millis(2)).await;
        }
    }

    /// The ids written so far.
    pub fn ids(&self) -> Vec<i64> {
        self.ids.lock().unwrap_or_else(|e| e.into_inner()).clone()
    }

    /// Stops the loop after its iteration; panics with its error if it failed. Returns the ids
    /// it wrote and how many iterations it ran.
    pub async fn stop(self, at: &str) -> (Vec<i64>, u64) {
        let _ = self.stop.send(true);
        let (count, written) = (self.iterations, self.ids);
        let outcome = self
            .task
            .await
            .unwrap_or_else(|e| panic!("the {} workload panicked: {e}", self.what));
        if let Err(e) = outcome {
            panic!("the {} workload failed before {at}: {e}", self.what);
        }
        let ids = written.lock().unwrap_or_else(|e| e.into_inner()).clone();
        (ids, count.load(Ordering::SeqCst))
    }
}

/// Errors an application retries: a deadlock or serialization failure against the DDL.
fn retried(e: &tokio_postgres::Error) -> bool {
    use tokio_postgres::error::SqlState;
    matches!(
        e.code(),
        Some(c) if *c == SqlState::T_R_DEADLOCK_DETECTED || *c == SqlState::T_R_SERIALIZATION_FAILURE
    )
}

/// The `id` of every returned row that has one.
fn returned_ids(messages: &[SimpleQueryMessage]) -> Result<Vec<i64>, String> {
    let mut ids = Vec::new();
    for m in messages {
        if let SimpleQueryMessage::Row(row) = m {
            if row.columns().iter().any(|c| c.name() == "id") {
                let id = row.get("id").ok_or("a returned id is NULL")?;
                ids.push(id.parse().map_err(|e| format!("returned id {id}: {e}"))?);
            }
        }
    }
    Ok(ids)
}

/// Panics unless every id of `ids` is a row of `table` (`what` says when).
pub async fn assert_rows_kept(client: &Client, table: &str, ids: &[i64], what: &str) {
    let mut distinct = ids.to_vec();
    distinct.sort_unstable();
    distinct.dedup();
    let sql = format!("SELECT count(DISTINCT id) AS found FROM {table} WHERE id = ANY($1)");
    let found: i64 = client
        .query_one(&sql, &[&distinct])
        .await
        .unwrap_or_else(|e| panic!("{sql}: {}", super::describe(&e)))
        .get("found");
    assert_eq!(
        found,
        i64::try_from(distinct.len()).unwrap_or(i64::MAX),
        "rows written by the workloads missing from {table} {what}"
    );
}
