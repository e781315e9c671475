//! Notifications on cutover night: the plan's `[[notify]]` targets hear about phase changes,
//! sign-offs, overrides, failed checks, the backfill, blocked gates and a broken audit chain.
//!
//! Events sit in the control schema's outbox ([`crate::control::outbox`]), enqueued in the
//! transaction of the change that caused them, or by [`watch()`] for conditions that only count
//! after a while. Any Cutover process with the plan loaded delivers them ([`deliver_due`],
//! [`spawn`]): webhooks get Slack-compatible JSON, exec hooks `CUTOVER_*` variables
//! ([`send`]). Failed attempts are retried with exponential back-off; each delivery is marked
//! delivered once, in the transaction that holds its row lock.

pub(crate) mod send;
pub(crate) mod text;
pub(crate) mod watch;

use std::time::{Duration, Instant};

use serde::Serialize;
use tokio::task::JoinHandle;
use tokio_postgres::Client;

use crate::control::outbox::{self, OutboxEvent};
use crate::control::ControlError;
use crate::db::{self, DbConfig, DbError, SessionSettings};
use crate::plan::{NotifySpec, Plan};

pub use send::scrub_error;
pub use watch::watch;

/// Errors of the notification machinery (a failed delivery is not one: it is retried).
#[derive(Debug, thiserror::Error)]
pub enum NotifyError {
    /// Reading or writing the outbox failed.
    #[error(transparent)]
    Db(#[from] DbError),
}

impl From<ControlError> for NotifyError {
    fn from(e: ControlError) -> Self {
        match e {
            ControlError::Db(e) => NotifyError::Db(e),
            ControlError::Refused(why) => NotifyError::Db(DbError::Query(why.to_string())),
        }
    }
}

impl From<tokio_postgres::Error> for NotifyError {
    fn from(e: tokio_postgres::Error) -> Self {
        NotifyError::Db(e.into())
    }
}

/// How deliveries are retried.
#[derive(Debug, Clone)]
pub struct Options {
    /// Pause after the first failed attempt; doubled after each further one.
    pub backoff_base: Duration,
    /// Longest pause between attempts.
    pub backoff_max: Duration,
    /// Attempts before a delivery is given up, for targets without `max_attempts`.
    pub max_attempts: u32,
    /// Events older than this when first routed are not delivered (nobody ran Cutover for a
    /// day: yesterday's events would only confuse).
    pub max_age: Duration,
}

impl Default for Options {
    fn default() -> Self {
        Options {
            backoff_base: Duration::from_secs(2),
            backoff_max: Duration::from_secs(300),
            max_attempts: 10,
            max_age: Duration::from_secs(24 * 3600),
        }
    }
}

impl Options {
    /// The pause after `attempts` failed attempts.
    pub fn backoff(&self, attempts: u32) -> Duration {
        let factor = 1u32 << attempts.saturating_sub(1).min(20);
        self.backoff_base
            .saturating_mul(factor)
            .min(self.backoff_max)
    }
}

/// One failed attempt in a delivery pass.
#[derive(Debug, Clone, Serialize)]
pub struct Failure {
    /// Target name.
    pub target: String,
    /// Outbox event id.
    pub event_id: i64,
    /// Attempts so far.
    pub attempts: u32,
    /// What went wrong (no secret).
    pub error: String,
    /// True when no further attempt will be made.
    pub gave_up: bool,
}

/// What a delivery pass did.
#[derive(Debug, Clone, Default, Serialize)]
pub struct Report {
    /// Deliveries sent and marked delivered.
    pub delivered: usize,
    /// Failed attempts.
    pub failed: Vec<Failure>,
    /// Events too old to deliver, closed.
    pub expired: usize,
}

/// The targets of `plan` that receive `ev` (for time-based events: only those whose threshold
/// is the one the event was enqueued for).
pub fn route(plan: &Plan, ev: &OutboxEvent) -> Vec<String> {
    plan.spec
        .notify
        .iter()
        .filter(|t| t.wants(ev.event))
        .filter(|t| match (t.threshold(ev.event), ev.threshold_ms) {
            (Some(th), Some(ms)) => millis(th) == ms,
            (None, _) => true,
            (Some(_), None) => false,
        })
        .map(NotifySpec::name)
        .collect()
}

/// A duration in whole milliseconds, as stored.
pub(crate) fn millis(d: Duration) -> i64 {
    i64::try_from(d.as_millis()).unwrap_or(i64::MAX)
}

/// Routes new events of `plan` to its targets, then delivers every due delivery, one claimed
/// row at a time. With a `budget`, no attempt starts after it is spent.
pub async fn deliver_due(
    client: &mut Client,
    plan: &Plan,
    opts: &Options,
    budget: Option<Duration>,
) -> Result<Report, NotifyError> {
    let started = Instant::now();
    let mut report = Report::default();
    if plan.spec.notify.is_empty() {
        return Ok(report);
    }
    let fan = outbox::fan_out(client, plan.id(), opts.max_age, |ev| route(plan, ev)).await?;
    if fan.expired > 0 {
        tracing::warn!(target: "notify", "{} event(s) older than {} were not delivered", fan.expired, humantime::format_duration(opts.max_age));
    }
    report.expired = fan.expired;
    let names: Vec<String> = plan.spec.notify.iter().map(NotifySpec::name).collect();
    while budget.is_none_or(|b| started.elapsed() < b) {
        let tx = client.transaction().await?;
        let Some(claim) = outbox::claim_next(&tx, plan.id(), &names).await? else {
            tx.commit().await?;
            break;
        };
        let Some(target) = plan.spec.notify.iter().find(|t| t.name() == claim.target) else {
            tx.commit().await?;
            break;
        };
        let attempts = u32::try_from(claim.attempts).unwrap_or(0) + 1;
        match send::deliver(plan, target, &claim.event, attempts).await {
            Ok(()) => {
                outbox::mark_delivered(&tx, &claim).await?;
                tx.commit().await?;
                tracing::info!(target: "notify", "{} #{} delivered to {}", claim.event.event, claim.event.id, claim.target);
                report.delivered += 1;
            }
            Err(error) => {
                let error = error.to_string();
                let gave_up = attempts >= target.attempts_limit(opts.max_attempts);
                let retry = (!gave_up).then(|| opts.backoff(attempts));
                outbox::mark_failed(&tx, &claim, &error, retry).await?;
                tx.commit().await?;
                match retry {
                    Some(r) => {
                        tracing::warn!(target: "notify", "{} #{} to {} failed (attempt {attempts}): {error}; retrying in {}", claim.event.event, claim.event.id, claim.target, humantime::format_duration(r))
                    }
                    None => {
                        tracing::error!(target: "notify", "{} #{} to {} failed (attempt {attempts}): {error}; giving up", claim.event.event, claim.event.id, claim.target)
                    }
                }
                report.failed.push(Failure {
                    target: claim.target,
                    event_id: claim.event.id,
                    attempts,
                    error,
                    gave_up,
                });
            }
        }
    }
    Ok(report)
}

/// How often a running [`Service`] does what.
#[derive(Debug, Clone)]
pub struct ServiceOptions {
    /// Delivery passes at least this often (retries come due without a notification).
    pub poll: Duration,
    /// Watcher passes (time-based events) this often.
    pub watch_every: Duration,
    /// Audit-chain verification this often.
    pub audit_every: Duration,
    /// Retry policy.
    pub delivery: Options,
}

impl Default for ServiceOptions {
    fn default() -> Self {
        ServiceOptions {
            poll: Duration::from_secs(1),
            watch_every: Duration::from_secs(5),
            audit_every: Duration::from_secs(60),
            delivery: Options::default(),
        }
    }
}

/// The background watcher and deliverer of a process; stops when dropped.
pub struct Service {
    task: Option<JoinHandle<()>>,
}

impl Service {
    /// True when the plan has targets and the service runs.
    pub fn is_running(&self) -> bool {
        self.task.as_ref().is_some_and(|t| !t.is_finished())
    }
}

impl Drop for Service {
    fn drop(&mut self) {
        // An attempt cut short leaves its row pending: the next pass of any process sends it.
        if let Some(t) = self.task.take() {
            t.abort();
        }
    }
}

/// Starts watching and delivering for `plan` in this process (nothing when it has no targets).
pub fn spawn(cfg: DbConfig, plan: Plan) -> Service {
    spawn_with(cfg, plan, ServiceOptions::default())
}

/// [`spawn`] with explicit timings.
pub fn spawn_with(cfg: DbConfig, plan: Plan, opts: ServiceOptions) -> Service {
    if plan.spec.notify.is_empty() {
        return Service { task: None };
    }
    Service {
        task: Some(tokio::spawn(serve(cfg, plan, opts))),
    }
}

/// Runs the service until the task is dropped: reconnects with back-off when the server goes.
pub async fn serve(cfg: DbConfig, plan: Plan, opts: ServiceOptions) {
    let mut failures: u32 = 0;
    loop {
        let error = serve_connected(&cfg, &plan, &opts, &mut failures).await;
        failures = failures.saturating_add(1);
        let wait = Duration::from_millis(500u64.saturating_mul(1 << failures.min(5)))
            .min(Duration::from_secs(15));
        tracing::warn!(target: "notify", "notifications paused: {error}; retrying in {}s", wait.as_secs().max(1));
        tokio::time::sleep(wait).await;
    }
}

async fn serve_connected(
    cfg: &DbConfig,
    plan: &Plan,
    opts: &ServiceOptions,
    failures: &mut u32,
) -> NotifyError {
    let (mut client, mut notes, _) =
        match db::connect_listening(cfg, &SessionSettings::new("notify")).await {
            Ok(c) => c,
            Err(e) => return e.into(),
        };
    if let Err(e) = client
        .batch_execute(&format!(
            "LISTEN {}",
            crate::control::schema::NOTIFY_CHANNEL
        ))
        .await
    {
        tracing::debug!(target: "notify", "LISTEN unavailable ({}); polling", db::describe_error(&e));
    }
    let mut last_watch: Option<Instant> = None;
    let mut last_audit: Option<Instant> = None;
    loop {
        if last_watch.is_none_or(|t| t.elapsed() >= opts.watch_every) {
            let audit = last_audit.is_none_or(|t| t.elapsed() >= opts.audit_every);
            if let Err(e) = watch(&client, plan, audit).await {
                return e;
            }
            last_watch = Some(Instant::now());
            if audit {
                last_audit = last_watch;
            }
        }
        if let Err(e) = deliver_due(&mut client, plan, &opts.delivery, None).await {
            return e;
        }
        *failures = 0;
        let sleep = tokio::time::sleep(opts.poll);
        tokio::pin!(sleep);
        loop {
            tokio::select! {
                _ = &mut sleep => break,
                note = notes.recv() => match note {
                    Some(n) if n.payload() == "outbox" => break,
                    Some(_) => {}
                    None => return NotifyError::Db(DbError::Query("the connection to the database was lost".into())),
                },
            }
        }
    }
}
