//! The lock-safe DDL runner.
//!
//! Every statement runs under `lock_timeout` and `statement_timeout` (set with `SET LOCAL` inside
//! a transaction, per session for statements that cannot run in one). When the lock timeout fires
//! (SQLSTATE 55P03), or the server breaks a deadlock with an application's transaction by aborting
//! ours (40P01: the app took the same tables in another order), the whole transaction is rolled
//! back — so no lock is held while waiting — and retried after a jittered exponential back-off, bounded in attempts and in total time; every
//! attempt has the timeout, the last one included. While a statement waits, a second connection
//! polls `pg_blocking_pids` and reports who blocks it.
//!
//! Statements that cannot run in a transaction (`CREATE INDEX CONCURRENTLY`, …) run one by one and
//! are tracked in `cutover.statement_progress`, so an interrupted phase resumes where it stopped;
//! an INVALID index left by an interrupted concurrent build is dropped and rebuilt.

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use serde::Serialize;
use tokio_postgres::error::SqlState;
use tokio_postgres::{Client, GenericClient, Transaction};

use super::{EngineError, EngineEvent, RunOptions};
use crate::control::index_builds::{self, of_backend, IndexBuild};
use crate::db::txmark::TxMark;
use crate::db::{self, DbError, SessionSettings};
use crate::plan::operations::OperationRef;
use crate::plan::{Phase, Plan};
use crate::sql::Statement;

/// Timeouts and retry bounds of the runner (from the plan's `[settings]`).
#[derive(Debug, Clone, Copy, Serialize)]
pub struct LockPolicy {
    /// `lock_timeout` of every attempt.
    pub lock_timeout: Duration,
    /// `statement_timeout` of every statement.
    pub statement_timeout: Duration,
    /// Maximum attempts.
    pub max_attempts: u32,
    /// Maximum total time, waits included.
    pub max_wait: Duration,
}

impl LockPolicy {
    /// The plan's policy.
    pub fn from_plan(plan: &Plan) -> LockPolicy {
        let s = &plan.spec.settings;
        LockPolicy {
            lock_timeout: s.lock_timeout.std().max(Duration::from_millis(1)),
            statement_timeout: s.statement_timeout.std().max(Duration::from_millis(1)),
            max_attempts: s.ddl_max_attempts.max(1),
            max_wait: s.ddl_max_wait.std(),
        }
    }
}

/// A session blocking one of our statements.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Blocker {
    /// Backend pid.
    pub pid: i32,
    /// Its login.
    pub login: String,
    /// Its `application_name`.
    pub application_name: String,
    /// Its state (`active`, `idle in transaction`, …).
    pub state: String,
    /// Its current or last query (shortened).
    pub query: String,
}

impl std::fmt::Display for Blocker {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "pid {} (login {}, application `{}`, {}): {}",
            self.pid, self.login, self.application_name, self.state, self.query
        )
    }
}

pub(crate) use crate::control::statements::Direction;

/// A statement that failed for good.
#[derive(Debug, Clone, thiserror::Error)]
pub enum DdlError {
    /// The lock could not be obtained within the retry bounds.
    #[error("{phase} {}: statement {} (`{summary}`){} could not get its lock: {attempts} attempts over {waited_ms} ms ({}), lock_timeout {lock_timeout_ms} ms each; {blocked_by}", direction.as_str(), index + 1, of(operation.as_ref()), losses(*attempts, *deadlocks))]
    LockTimeout {
        /// Phase.
        phase: Phase,
        /// Direction.
        direction: Direction,
        /// 0-based index in the script.
        index: usize,
        /// First line of the statement.
        summary: String,
        /// The operation that generated the statement (`None`: hand-written).
        operation: Option<OperationRef>,
        /// Attempts made.
        attempts: u32,
        /// How many of them the server aborted to break a deadlock (the others timed out).
        deadlocks: u32,
        /// Total time spent.
        waited_ms: u64,
        /// The lock timeout of each attempt.
        lock_timeout_ms: u64,
        /// Sessions seen blocking it.
        blockers: Vec<Blocker>,
        /// Human summary of the blockers.
        blocked_by: String,
    },
    /// The statement failed for another reason (syntax, constraint, statement timeout, …).
    #[error("{phase} {}: statement {} (`{summary}`){} failed: {message}", direction.as_str(), index + 1, of(operation.as_ref()))]
    Statement {
        /// Phase.
        phase: Phase,
        /// Direction.
        direction: Direction,
        /// 0-based index.
        index: usize,
        /// First line of the statement.
        summary: String,
        /// The operation that generated the statement (`None`: hand-written).
        operation: Option<OperationRef>,
        /// The database's message.
        message: String,
    },
}

/// `, generated by operation N (`kind`) at file:line:col` for a generated statement.
fn of(operation: Option<&OperationRef>) -> String {
    operation.map_or_else(String::new, |o| format!(", generated by {o},"))
}

/// `3 timed out` / `2 timed out, 1 aborted by the server to break a deadlock`.
fn losses(attempts: u32, deadlocks: u32) -> String {
    let timed_out = attempts.saturating_sub(deadlocks);
    match (timed_out, deadlocks) {
        (_, 0) => format!("{timed_out} timed out"),
        (0, d) => format!("{d} aborted by the server to break a deadlock"),
        (t, d) => format!("{t} timed out, {d} aborted by the server to break a deadlock"),
    }
}

/// How an attempt lost the lock it waited for.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum LockLoss {
    /// SQLSTATE 55P03: `lock_timeout` fired.
    Timeout,
    /// SQLSTATE 40P01: the server broke a deadlock by aborting this side.
    Deadlock,
}

impl LockLoss {
    /// The loss of a failed statement, if it was one.
    fn of(e: &tokio_postgres::Error) -> Option<LockLoss> {
        match e.code() {
            Some(c) if *c == SqlState::LOCK_NOT_AVAILABLE => Some(LockLoss::Timeout),
            Some(c) if *c == SqlState::T_R_DEADLOCK_DETECTED => Some(LockLoss::Deadlock),
            _ => None,
        }
    }
}

/// Why one attempt of a statement failed.
pub(crate) enum AttemptError {
    /// The lock was lost (timed out, or a deadlock aborted this side): retry.
    Lock { index: usize, loss: LockLoss },
    /// Anything from the statement itself: give up.
    Statement {
        index: usize,
        error: tokio_postgres::Error,
    },
    /// Cutover's own bookkeeping failed.
    Engine(EngineError),
}

impl From<EngineError> for AttemptError {
    fn from(e: EngineError) -> Self {
        AttemptError::Engine(e)
    }
}

impl From<tokio_postgres::Error> for AttemptError {
    fn from(e: tokio_postgres::Error) -> Self {
        AttemptError::Engine(e.into())
    }
}

/// The first line of a statement, shortened, for messages.
pub(crate) fn summary(stmt: &str) -> String {
    let line = stmt.lines().next().unwrap_or("").trim();
    if line.chars().count() > 80 {
        format!("{}…", line.chars().take(79).collect::<String>())
    } else if stmt.lines().nth(1).is_some() {
        format!("{line} …")
    } else {
        line.to_string()
    }
}

/// Jittered exponential back-off bounded by attempts and total time.
pub(crate) struct Backoff {
    policy: LockPolicy,
    started: Instant,
    /// Attempts started so far.
    pub attempt: u32,
    /// Attempts the server aborted to break a deadlock.
    pub deadlocks: u32,
}

impl Backoff {
    pub(crate) fn new(policy: LockPolicy) -> Backoff {
        Backoff {
            policy,
            started: Instant::now(),
            attempt: 0,
            deadlocks: 0,
        }
    }

    /// Counts a new attempt.
    pub(crate) fn start_attempt(&mut self) -> u32 {
        self.attempt += 1;
        self.attempt
    }

    /// The wait before the next attempt, or `None` when the bounds are exhausted (the next
    /// attempt, with its own lock timeout, would not fit in `max_wait`).
    pub(crate) fn next_delay(&self) -> Option<Duration> {
        if self.attempt >= self.policy.max_attempts {
            return None;
        }
        let base_ms = 200u64.saturating_mul(1u64 << self.attempt.min(16).saturating_sub(1));
        let capped = base_ms.min(10_000);
        let jittered = rand::random_range(capped / 2..=capped.max(1));
        let delay = Duration::from_millis(jittered);
        let next_end = self.started.elapsed() + delay + self.policy.lock_timeout;
        (next_end <= self.policy.max_wait).then_some(delay)
    }

    /// Time since the first attempt.
    pub(crate) fn elapsed(&self) -> Duration {
        self.started.elapsed()
    }
}

/// Executes statements for one phase and direction, watching for blockers.
pub(crate) struct Runner<'o> {
    pub(crate) policy: LockPolicy,
    pub(crate) opts: &'o RunOptions,
    pub(crate) phase: Phase,
    pub(crate) direction: Direction,
    pub(crate) plan_id: String,
    monitor: Option<Client>,
    pid: i32,
    /// Every distinct blocker seen.
    pub(crate) blockers: Vec<Blocker>,
    /// Statement offset in the script → the operation that generated it.
    operations: BTreeMap<usize, OperationRef>,
}

impl<'o> Runner<'o> {
    /// A runner for `client`'s session; opens the monitoring connection when configured.
    pub(crate) async fn new(
        client: &Client,
        plan: &Plan,
        policy: LockPolicy,
        opts: &'o RunOptions,
        phase: Phase,
        direction: Direction,
    ) -> Result<Runner<'o>, EngineError> {
        let pid: i32 = client
            .query_one("SELECT pg_backend_pid() AS pid", &[])
            .await?
            .get("pid");
        let monitor = match &opts.monitor {
            Some(cfg) => {
                match db::connect(cfg, &SessionSettings::new("engine-monitor")).await {
                    Ok(c) => Some(c),
                    Err(e) => {
                        tracing::warn!("cannot open the lock monitor connection ({e}); blockers will not be named");
                        None
                    }
                }
            }
            None => None,
        };
        let rollback = direction == Direction::Rollback;
        let script = if rollback {
            plan.phase(phase).rollback.as_deref().unwrap_or("")
        } else {
            plan.phase(phase).apply.as_str()
        };
        let operations = crate::sql::split_statements(script)
            .iter()
            .filter_map(|s| Some((s.offset, plan.operation_at(phase, rollback, s.offset)?)))
            .collect();
        Ok(Runner {
            operations,
            policy,
            opts,
            phase,
            direction,
            plan_id: plan.id().to_string(),
            monitor,
            pid,
            blockers: Vec::new(),
        })
    }

    /// Begins a transaction with this runner's `lock_timeout` and `statement_timeout`.
    pub(crate) async fn begin<'c>(
        &self,
        client: &'c mut Client,
    ) -> Result<Transaction<'c>, tokio_postgres::Error> {
        let tx = client.transaction().await?;
        tx.batch_execute(&format!(
            "SET LOCAL lock_timeout = {}; SET LOCAL statement_timeout = {}",
            self.policy.lock_timeout.as_millis(),
            self.policy.statement_timeout.as_millis()
        ))
        .await?;
        Ok(tx)
    }

    /// Runs one statement on `client` (a transaction or a bare session) while polling blockers.
    pub(crate) async fn exec(
        &mut self,
        client: &impl GenericClient,
        index: usize,
        stmt: &Statement,
        attempt: u32,
    ) -> Result<(), AttemptError> {
        self.opts.emit(EngineEvent::Statement {
            phase: self.phase,
            direction: self.direction.as_str().into(),
            index,
            summary: summary(&stmt.text),
            attempt,
        });
        tracing::info!(
            phase = %self.phase,
            "{} statement {} (attempt {attempt}): {}",
            self.direction.as_str(),
            index + 1,
            summary(&stmt.text)
        );
        if let Err(why) = crate::sql::guard(&stmt.text) {
            return Err(AttemptError::Engine(self.refusal(
                index,
                stmt,
                why.to_string(),
            )));
        }
        // The extended protocol runs exactly one statement: nothing can be appended to it.
        let exec = client.execute(stmt.text.as_str(), &[]);
        tokio::pin!(exec);
        let poll = (self.policy.lock_timeout / 3)
            .clamp(Duration::from_millis(20), Duration::from_millis(200));
        let mut ticker = tokio::time::interval_at(tokio::time::Instant::now() + poll, poll);
        let mut last_seen: Vec<i32> = Vec::new();
        let watch_build = index_builds::is_index_build(&stmt.text);
        let mut last_build = None;
        let result = loop {
            tokio::select! {
                r = &mut exec => break r,
                _ = ticker.tick() => {
                    let Some(monitor) = &self.monitor else { continue };
                    match blockers_of(monitor, self.pid).await {
                        Ok(found) => {
                            let pids: Vec<i32> = found.iter().map(|b| b.pid).collect();
                            if !found.is_empty() && pids != last_seen {
                                for b in &found {
                                    tracing::warn!(phase = %self.phase, "statement {} waits for a lock held by {b}", index + 1);
                                    if !self.blockers.iter().any(|x| x.pid == b.pid) {
                                        self.blockers.push(b.clone());
                                    }
                                }
                                self.opts.emit(EngineEvent::Blocked { blockers: found.clone() });
                            }
                            last_seen = pids;
                        }
                        Err(e) => tracing::debug!("lock monitor query failed: {e}"),
                    }
                    if watch_build {
                        report_build(monitor, self.pid, &mut last_build, self.opts).await;
                    }
                }
            }
        };
        match result {
            Ok(_) => Ok(()),
            Err(error) => match LockLoss::of(&error) {
                Some(loss) => Err(AttemptError::Lock { index, loss }),
                None => Err(AttemptError::Statement { index, error }),
            },
        }
    }

    /// The error for a statement that was not sent, or that left its transaction.
    fn refusal(&self, index: usize, stmt: &Statement, message: String) -> EngineError {
        EngineError::Ddl(DdlError::Statement {
            phase: self.phase,
            direction: self.direction,
            index,
            summary: summary(&stmt.text),
            operation: self.operation_of(stmt),
            message,
        })
    }

    /// The operation that generated `stmt`, if one did.
    fn operation_of(&self, stmt: &Statement) -> Option<OperationRef> {
        self.operations.get(&stmt.offset).cloned()
    }

    /// Fails when statement `index` ended the transaction marked by `mark`: the phase must
    /// not go on.
    pub(crate) async fn verify_transaction(
        &self,
        client: &impl GenericClient,
        mark: &TxMark,
        index: usize,
        stmt: &Statement,
    ) -> Result<(), AttemptError> {
        match mark.verify(client).await? {
            Ok(()) => Ok(()),
            Err(ids) => Err(AttemptError::Engine(self.refusal(
                index,
                stmt,
                format!(
                    "the statement ended the phase's transaction ({ids}); nothing after it ran, and the phase is failed"
                ),
            ))),
        }
    }

    /// Runs a statement that cannot run in a transaction, with session-level timeouts.
    pub(crate) async fn exec_own(
        &mut self,
        client: &Client,
        index: usize,
        stmt: &Statement,
        attempt: u32,
    ) -> Result<(), AttemptError> {
        let previous: String = client
            .query_one(
                "SELECT current_setting('statement_timeout') AS statement_timeout",
                &[],
            )
            .await?
            .get("statement_timeout");
        client
            .batch_execute(&format!(
                "SET lock_timeout = {}; SET statement_timeout = {}",
                self.policy.lock_timeout.as_millis(),
                self.policy.statement_timeout.as_millis()
            ))
            .await?;
        let result = self.exec(client, index, stmt, attempt).await;
        client
            .batch_execute(&format!(
                "RESET lock_timeout; SET statement_timeout = {}",
                crate::sql::quote_literal(&previous)
            ))
            .await?;
        result
    }

    /// Turns a final attempt error into an engine error.
    pub(crate) fn fail(
        &self,
        err: AttemptError,
        stmts: &[(usize, Statement)],
        backoff: &Backoff,
    ) -> EngineError {
        let stmt_of = |index: usize| stmts.iter().find(|(i, _)| *i == index).map(|(_, s)| s);
        let text_of = |index: usize| stmt_of(index).map(|s| summary(&s.text)).unwrap_or_default();
        let operation_of = |index: usize| stmt_of(index).and_then(|s| self.operation_of(s));
        match err {
            AttemptError::Engine(e) => e,
            AttemptError::Statement { index, error } => EngineError::Ddl(DdlError::Statement {
                phase: self.phase,
                direction: self.direction,
                index,
                summary: text_of(index),
                operation: operation_of(index),
                message: db::describe_error(&error),
            }),
            AttemptError::Lock { index, .. } => {
                let blocked_by = if self.blockers.is_empty() {
                    "no blocker was identified (it may have gone; try again)".to_string()
                } else {
                    format!(
                        "blocked by {}",
                        self.blockers
                            .iter()
                            .map(|b| b.to_string())
                            .collect::<Vec<_>>()
                            .join("; ")
                    )
                };
                EngineError::Ddl(DdlError::LockTimeout {
                    phase: self.phase,
                    direction: self.direction,
                    index,
                    summary: text_of(index),
                    operation: operation_of(index),
                    attempts: backoff.attempt,
                    deadlocks: backoff.deadlocks,
                    waited_ms: u64::try_from(backoff.elapsed().as_millis()).unwrap_or(u64::MAX),
                    lock_timeout_ms: u64::try_from(self.policy.lock_timeout.as_millis())
                        .unwrap_or(u64::MAX),
                    blockers: self.blockers.clone(),
                    blocked_by,
                })
            }
        }
    }

    /// After an attempt lost its lock (`loss`): counts it, waits the back-off and returns true
    /// to retry, or false when the bounds are exhausted.
    pub(crate) async fn back_off(&self, backoff: &mut Backoff, loss: LockLoss) -> bool {
        if loss == LockLoss::Deadlock {
            backoff.deadlocks += 1;
        }
        match backoff.next_delay() {
            Some(delay) => {
                let ms = u64::try_from(delay.as_millis()).unwrap_or(u64::MAX);
                let why = match loss {
                    LockLoss::Timeout => {
                        format!("lock timeout ({} ms)", self.policy.lock_timeout.as_millis())
                    }
                    LockLoss::Deadlock => {
                        "deadlock (the server aborted this side to break it)".to_string()
                    }
                };
                tracing::warn!(
                    phase = %self.phase,
                    "{why} on attempt {}; retrying in {ms} ms",
                    backoff.attempt
                );
                self.opts.emit(EngineEvent::Retry {
                    attempt: backoff.attempt,
                    loss,
                    backoff_ms: ms,
                });
                tokio::time::sleep(delay).await;
                true
            }
            None => false,
        }
    }
}

/// Polls the build of backend `pid` and emits it when it changed since `last`.
async fn report_build(
    monitor: &impl GenericClient,
    pid: i32,
    last: &mut Option<IndexBuild>,
    opts: &RunOptions,
) {
    match of_backend(monitor, pid).await {
        Ok(Some(build)) if last.as_ref() != Some(&build) => {
            if last.as_ref().is_none_or(|l| l.phase != build.phase) {
                tracing::info!("index build: {build}");
            }
            opts.emit(EngineEvent::IndexBuild {
                build: build.clone(),
            });
            *last = Some(build);
        }
        Ok(_) => {}
        Err(e) => tracing::debug!("index progress query failed: {e}"),
    }
}

/// Sessions blocking backend `pid`, with what they are doing.
pub(crate) async fn blockers_of(client: &Client, pid: i32) -> Result<Vec<Blocker>, DbError> {
    let rows = client
        .query(
            "SELECT a.pid, coalesce(a.usename::text, '') AS login,
                    coalesce(a.application_name, '') AS application_name,
                    coalesce(a.state, '') AS state,
                    left(regexp_replace(coalesce(a.query, ''), '\\s+', ' ', 'g'), 200) AS query
               FROM pg_stat_activity a
              WHERE a.pid = ANY (pg_blocking_pids($1))
              ORDER BY a.pid",
            &[&pid],
        )
        .await?;
    Ok(rows
        .iter()
        .map(|r| Blocker {
            pid: r.get("pid"),
            login: r.get("login"),
            application_name: r.get("application_name"),
            state: r.get("state"),
            query: r.get("query"),
        })
        .collect())
}

/// For `CREATE [UNIQUE] INDEX CONCURRENTLY [IF NOT EXISTS] name ON [ONLY] table …`: the index name
/// and the table, so an INVALID leftover of an interrupted build can be found.
pub(crate) fn concurrent_index_target(stmt: &str) -> Option<(String, String)> {
    let words: Vec<&str> = stmt.split_whitespace().collect();
    let upper: Vec<String> = words.iter().map(|w| w.to_uppercase()).collect();
    let mut i = 0;
    let expect = |i: &mut usize, w: &str| -> bool {
        if upper.get(*i).map(String::as_str) == Some(w) {
            *i += 1;
            true
        } else {
            false
        }
    };
    if !expect(&mut i, "CREATE") {
        return None;
    }
    expect(&mut i, "UNIQUE");
    if !expect(&mut i, "INDEX") || !expect(&mut i, "CONCURRENTLY") {
        return None;
    }
    if expect(&mut i, "IF") && !(expect(&mut i, "NOT") && expect(&mut i, "EXISTS")) {
        return None;
    }
    let name = words.get(i)?.trim_matches('"').to_string();
    i += 1;
    if !expect(&mut i, "ON") {
        return None;
    }
    expect(&mut i, "ONLY");
    let table = words.get(i)?;
    let table = table.split('(').next().unwrap_or(table).to_string();
    Some((name, table))
}

/// Drops an INVALID index left by an interrupted `CREATE INDEX CONCURRENTLY`. Returns
/// `Some(true)` when a valid index of that name already exists (the build had completed).
pub(crate) async fn clean_invalid_index(
    client: &Client,
    stmt: &str,
) -> Result<Option<bool>, DbError> {
    let Some((name, table)) = concurrent_index_target(stmt) else {
        return Ok(None);
    };
    let row = client
        .query_opt(
            "SELECT format('%I.%I', n.nspname, c.relname) AS qualified, i.indisvalid AS valid
               FROM pg_index i
               JOIN pg_class c ON c.oid = i.indexrelid
               JOIN pg_namespace n ON n.oid = c.relnamespace
              WHERE c.relname = $1 AND i.indrelid = to_regclass($2)",
            &[&name, &table],
        )
        .await?;
    match row {
        None => Ok(Some(false)),
        Some(r) => {
            let qualified: String = r.get("qualified");
            let valid: bool = r.get("valid");
            if valid {
                return Ok(Some(true));
            }
            tracing::warn!("dropping INVALID index {qualified} left by an interrupted concurrent build; it will be rebuilt");
            client
                .batch_execute(&format!("DROP INDEX CONCURRENTLY IF EXISTS {qualified}"))
                .await?;
            Ok(Some(false))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lost_attempts_are_told_apart() {
        assert_eq!(losses(4, 0), "4 timed out");
        assert_eq!(losses(1, 1), "1 aborted by the server to break a deadlock");
        assert_eq!(
            losses(5, 2),
            "3 timed out, 2 aborted by the server to break a deadlock"
        );
    }

    #[test]
    fn finds_concurrent_index_targets() {
        assert_eq!(
            concurrent_index_target(
                "CREATE UNIQUE INDEX CONCURRENTLY IF NOT EXISTS acc_idx ON public.accounts (balance_cents)"
            ),
            Some(("acc_idx".into(), "public.accounts".into()))
        );
        assert_eq!(
            concurrent_index_target("create index concurrently i on only t(x)"),
            Some(("i".into(), "t".into()))
        );
        assert_eq!(concurrent_index_target("CREATE INDEX i ON t (x)"), None);
    }

    #[test]
    fn backoff_is_bounded() {
        let policy = LockPolicy {
            lock_timeout: Duration::from_millis(100),
            statement_timeout: Duration::from_secs(1),
            max_attempts: 3,
            max_wait: Duration::from_secs(60),
        };
        let mut b = Backoff::new(policy);
        b.start_attempt();
        let d1 = b.next_delay().unwrap();
        assert!(d1 >= Duration::from_millis(100) && d1 <= Duration::from_millis(200));
        b.start_attempt();
        assert!(b.next_delay().unwrap() <= Duration::from_millis(400));
        b.start_attempt();
        assert_eq!(b.next_delay(), None, "max_attempts reached");
        let tight = LockPolicy {
            max_wait: Duration::from_millis(50),
            ..policy
        };
        let mut b = Backoff::new(tight);
        b.start_attempt();
        assert_eq!(
            b.next_delay(),
            None,
            "the next attempt would not fit in max_wait"
        );
    }
}
