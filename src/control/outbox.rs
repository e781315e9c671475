//! `cutover.outbox`, `cutover.outbox_deliveries` and `cutover.notify_watch`: the transactional
//! outbox of notifications.
//!
//! Events of audited changes, failed checks and a failed backfill are enqueued by triggers, in
//! the transaction of the change (`migrations/v070_notify.sql`); time-based events are enqueued
//! by a watcher through [`enqueue`]. `dedup_key` is unique: each event instance is enqueued once
//! however many processes notice it. A delivering process fans an event out to its plan's
//! targets ([`fan_out`]), then claims one delivery at a time with `FOR UPDATE SKIP LOCKED`
//! ([`claim_next`]) and records the outcome in the same transaction ([`mark_delivered`],
//! [`mark_failed`]): two processes never send the same delivery at once, and a delivery is
//! marked delivered exactly once.

use chrono::{DateTime, Utc};
use serde::Serialize;
use serde_json::Value;
use tokio_postgres::{Client, GenericClient, Row, Transaction};

use super::ControlError;
use crate::db::DbError;
use crate::plan::{Event, Phase};

/// An event to enqueue.
#[derive(Debug, Clone)]
pub struct NewEvent<'a> {
    /// The migration.
    pub plan_id: &'a str,
    /// What happened.
    pub event: Event,
    /// Unique per event instance: a second enqueue of the same key is a no-op.
    pub dedup_key: String,
    /// The phase concerned.
    pub phase: Option<Phase>,
    /// For time-based events: the threshold that was exceeded.
    pub threshold_ms: Option<i64>,
    /// Anything else, as a JSON object.
    pub details: Value,
    /// When it happened (default: now).
    pub occurred_at: Option<DateTime<Utc>>,
}

/// Enqueues an event; returns its id, or `None` when that instance was already enqueued.
pub async fn enqueue(
    client: &impl GenericClient,
    e: &NewEvent<'_>,
) -> Result<Option<i64>, DbError> {
    let row = client
        .query_opt(
            "INSERT INTO cutover.outbox
                    (plan_id, event, dedup_key, phase, threshold_ms, details, occurred_at)
             VALUES ($1, $2, $3, $4, $5, $6, coalesce($7, clock_timestamp()))
             ON CONFLICT (dedup_key) DO NOTHING
             RETURNING id",
            &[
                &e.plan_id,
                &e.event.as_str(),
                &e.dedup_key,
                &e.phase.map(Phase::as_str),
                &e.threshold_ms,
                &e.details,
                &e.occurred_at,
            ],
        )
        .await?;
    Ok(row.map(|r| r.get("id")))
}

/// A stored event.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct OutboxEvent {
    /// Id (increasing).
    pub id: i64,
    /// The migration.
    pub plan_id: String,
    /// What happened.
    pub event: Event,
    /// The phase concerned.
    pub phase: Option<Phase>,
    /// Who caused it (the watcher's login for time-based events).
    pub login: String,
    /// For time-based events: the threshold that was exceeded.
    pub threshold_ms: Option<i64>,
    /// Details (audit details for audited changes).
    pub details: Value,
    /// The audit entry that caused it, if any.
    pub audit_seq: Option<i64>,
    /// When it happened.
    pub occurred_at: DateTime<Utc>,
}

const EVENT_COLUMNS: &str =
    "o.id, o.plan_id, o.event, o.phase, o.login, o.threshold_ms, o.details, o.audit_seq, o.occurred_at";

impl OutboxEvent {
    /// Reads the [`EVENT_COLUMNS`] of `row`; `None` for an event name this build does not know
    /// (a newer Cutover enqueued it).
    fn from_row(row: &Row) -> Option<OutboxEvent> {
        let event = Event::parse(row.get("event"))?;
        let phase: Option<String> = row.get("phase");
        Some(OutboxEvent {
            id: row.get("id"),
            plan_id: row.get("plan_id"),
            event,
            phase: phase.as_deref().and_then(Phase::parse),
            login: row.get("login"),
            threshold_ms: row.get("threshold_ms"),
            details: row.get("details"),
            audit_seq: row.get("audit_seq"),
            occurred_at: row.get("occurred_at"),
        })
    }
}

/// What [`fan_out`] did.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct FanOut {
    /// Events handed to targets.
    pub events: usize,
    /// Delivery rows created.
    pub deliveries: usize,
    /// Events older than the age limit, closed without delivery.
    pub expired: usize,
}

/// Hands every not-yet-routed event of `plan_id` to the targets `route` names (one delivery row
/// each), in one transaction. Events older than `max_age` are closed without delivery.
pub async fn fan_out(
    client: &mut Client,
    plan_id: &str,
    max_age: std::time::Duration,
    route: impl Fn(&OutboxEvent) -> Vec<String>,
) -> Result<FanOut, ControlError> {
    let known: Vec<&str> = Event::ALL.iter().map(|e| e.as_str()).collect();
    let max_age_s = max_age.as_secs_f64();
    let tx = client.transaction().await?;
    let rows = tx
        .query(
            &format!(
                "SELECT {EVENT_COLUMNS},
                        o.occurred_at < now() - make_interval(secs => $3) AS expired
                   FROM cutover.outbox o
                  WHERE o.plan_id = $1 AND o.fanned_out_at IS NULL AND o.event = ANY($2)
                  ORDER BY o.id
                  LIMIT 500
                    FOR UPDATE SKIP LOCKED"
            ),
            &[&plan_id, &known, &max_age_s],
        )
        .await?;
    let mut done = FanOut::default();
    for row in &rows {
        let Some(ev) = OutboxEvent::from_row(row) else {
            continue;
        };
        let expired: bool = row.get("expired");
        if expired {
            done.expired += 1;
        } else {
            let targets = route(&ev);
            for t in &targets {
                tx.execute(
                    "INSERT INTO cutover.outbox_deliveries (outbox_id, target) VALUES ($1, $2)
                     ON CONFLICT DO NOTHING",
                    &[&ev.id, t],
                )
                .await?;
            }
            done.events += 1;
            done.deliveries += targets.len();
        }
        tx.execute(
            "UPDATE cutover.outbox SET fanned_out_at = clock_timestamp() WHERE id = $1",
            &[&ev.id],
        )
        .await?;
    }
    tx.commit().await?;
    Ok(done)
}

/// A delivery claimed for this transaction.
#[derive(Debug, Clone)]
pub struct Claim {
    /// The event.
    pub event: OutboxEvent,
    /// The target's name.
    pub target: String,
    /// Attempts before this one.
    pub attempts: i32,
}

/// Locks the oldest due pending delivery of `plan_id` to one of `targets` that no other
/// session holds, or returns `None`. The lock lasts until `tx` ends.
pub async fn claim_next(
    tx: &Transaction<'_>,
    plan_id: &str,
    targets: &[String],
) -> Result<Option<Claim>, DbError> {
    let row = tx
        .query_opt(
            &format!(
                "SELECT {EVENT_COLUMNS}, d.target, d.attempts
                   FROM cutover.outbox_deliveries d JOIN cutover.outbox o ON o.id = d.outbox_id
                  WHERE o.plan_id = $1 AND d.state = 'pending' AND d.target = ANY($2)
                    AND d.next_attempt_at <= clock_timestamp()
                  ORDER BY d.next_attempt_at, o.id, d.target
                  LIMIT 1
                    FOR UPDATE OF d SKIP LOCKED"
            ),
            &[&plan_id, &targets],
        )
        .await?;
    Ok(row.and_then(|r| {
        Some(Claim {
            event: OutboxEvent::from_row(&r)?,
            target: r.get("target"),
            attempts: r.get("attempts"),
        })
    }))
}

/// Marks a claimed delivery delivered.
pub async fn mark_delivered(tx: &Transaction<'_>, claim: &Claim) -> Result<(), DbError> {
    tx.execute(
        "UPDATE cutover.outbox_deliveries
            SET state = 'delivered', attempts = attempts + 1, last_attempt_at = clock_timestamp(),
                delivered_at = clock_timestamp()
          WHERE outbox_id = $1 AND target = $2 AND state = 'pending'",
        &[&claim.event.id, &claim.target],
    )
    .await?;
    Ok(())
}

/// Records a failed attempt of a claimed delivery: retried after `retry_in`, or given up
/// (`None`).
pub async fn mark_failed(
    tx: &Transaction<'_>,
    claim: &Claim,
    error: &str,
    retry_in: Option<std::time::Duration>,
) -> Result<(), DbError> {
    let retry_s = retry_in.map(|d| d.as_secs_f64());
    tx.execute(
        "UPDATE cutover.outbox_deliveries
            SET attempts = attempts + 1, last_attempt_at = clock_timestamp(), last_error = $3,
                state = CASE WHEN $4::float8 IS NULL THEN 'gave_up' ELSE 'pending' END,
                next_attempt_at = clock_timestamp() + make_interval(secs => coalesce($4::float8, 0))
          WHERE outbox_id = $1 AND target = $2 AND state = 'pending'",
        &[&claim.event.id, &claim.target, &error, &retry_s],
    )
    .await?;
    Ok(())
}

/// The state of one delivery.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum DeliveryState {
    /// Not delivered yet (will be retried at `next_attempt_at`).
    Pending,
    /// Delivered.
    Delivered,
    /// Failed every attempt.
    GaveUp,
}

impl DeliveryState {
    fn parse(s: &str) -> DeliveryState {
        match s {
            "delivered" => DeliveryState::Delivered,
            "gave_up" => DeliveryState::GaveUp,
            _ => DeliveryState::Pending,
        }
    }

    /// The stored name.
    pub fn as_str(self) -> &'static str {
        match self {
            DeliveryState::Pending => "pending",
            DeliveryState::Delivered => "delivered",
            DeliveryState::GaveUp => "gave_up",
        }
    }
}

/// One delivery with its event, for `cutover notify status`.
#[derive(Debug, Clone, Serialize)]
pub struct Delivery {
    /// The event.
    pub event: OutboxEvent,
    /// Target name.
    pub target: String,
    /// State.
    pub state: DeliveryState,
    /// Attempts so far.
    pub attempts: i32,
    /// When the next attempt is due (pending only).
    pub next_attempt_at: DateTime<Utc>,
    /// When it was delivered.
    pub delivered_at: Option<DateTime<Utc>>,
    /// The last failure.
    pub last_error: Option<String>,
}

/// The newest `limit` deliveries of `plan_id`, newest first.
pub async fn deliveries(
    client: &impl GenericClient,
    plan_id: &str,
    limit: i64,
) -> Result<Vec<Delivery>, DbError> {
    let rows = client
        .query(
            &format!(
                "SELECT {EVENT_COLUMNS}, d.target, d.state, d.attempts, d.next_attempt_at,
                        d.delivered_at, d.last_error
                   FROM cutover.outbox_deliveries d JOIN cutover.outbox o ON o.id = d.outbox_id
                  WHERE o.plan_id = $1
                  ORDER BY o.id DESC, d.target
                  LIMIT $2"
            ),
            &[&plan_id, &limit],
        )
        .await?;
    Ok(rows
        .iter()
        .filter_map(|r| {
            Some(Delivery {
                event: OutboxEvent::from_row(r)?,
                target: r.get("target"),
                state: DeliveryState::parse(r.get("state")),
                attempts: r.get("attempts"),
                next_attempt_at: r.get("next_attempt_at"),
                delivered_at: r.get("delivered_at"),
                last_error: r.get("last_error"),
            })
        })
        .collect())
}

/// Events of `plan_id` not yet handed to targets (waiting for a process with the plan).
pub async fn unrouted(client: &impl GenericClient, plan_id: &str) -> Result<i64, DbError> {
    Ok(client
        .query_one(
            "SELECT count(*) AS unrouted FROM cutover.outbox \
             WHERE plan_id = $1 AND fanned_out_at IS NULL",
            &[&plan_id],
        )
        .await?
        .get("unrouted"))
}

/// Tracks a condition of `family` (e.g. `gate.blocked`) that must hold for a while before it
/// notifies: `current` names the instance holding now (e.g. `gate.blocked:dual_write`), or
/// `None`. Forgets the family's other instances and returns since when `current` holds (the
/// first time any process saw it).
pub async fn condition_since(
    client: &impl GenericClient,
    plan_id: &str,
    family: &str,
    current: Option<&str>,
) -> Result<Option<DateTime<Utc>>, DbError> {
    let prefix = format!("{family}:%");
    client
        .execute(
            "DELETE FROM cutover.notify_watch
              WHERE plan_id = $1 AND condition LIKE $2 AND condition IS DISTINCT FROM $3",
            &[&plan_id, &prefix, &current],
        )
        .await?;
    let Some(current) = current else {
        return Ok(None);
    };
    client
        .execute(
            "INSERT INTO cutover.notify_watch (plan_id, condition) VALUES ($1, $2)
             ON CONFLICT DO NOTHING",
            &[&plan_id, &current],
        )
        .await?;
    let row = client
        .query_one(
            "SELECT since FROM cutover.notify_watch WHERE plan_id = $1 AND condition = $2",
            &[&plan_id, &current],
        )
        .await?;
    Ok(Some(row.get("since")))
}

/// When the backfill of `plan_id` last finished a chunk.
pub async fn last_chunk_at(
    client: &impl GenericClient,
    plan_id: &str,
) -> Result<Option<DateTime<Utc>>, DbError> {
    let row = client
        .query_opt(
            "SELECT finished_at FROM cutover.backfill_chunks WHERE plan_id = $1
              ORDER BY id DESC LIMIT 1",
            &[&plan_id],
        )
        .await?;
    Ok(row.map(|r| r.get("finished_at")))
}

/// The deliveries of one plan in a few numbers, for the TUI.
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct DeliverySummary {
    /// Delivered.
    pub delivered: i64,
    /// Waiting for their first attempt.
    pub pending: i64,
    /// Failed at least once, to be retried.
    pub retrying: i64,
    /// Failed every attempt, given up.
    pub gave_up: i64,
    /// Events not yet handed to targets (waiting for a process with the plan).
    pub unrouted: i64,
    /// The most recent failed attempt of a delivery not delivered since.
    pub latest_failure: Option<FailedDelivery>,
}

/// A delivery whose last attempt failed.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct FailedDelivery {
    /// Target name.
    pub target: String,
    /// Pending (retried at `next_attempt_at`) or given up.
    pub state: DeliveryState,
    /// Attempts so far.
    pub attempts: i32,
    /// When the next attempt is due (`None`: given up).
    pub next_attempt_at: Option<DateTime<Utc>>,
    /// What went wrong, as recorded by the sender (it never records a webhook URL's secrets).
    pub last_error: String,
}

/// Counts the deliveries of `plan_id` by state, with the latest failure.
pub async fn summary(
    client: &impl GenericClient,
    plan_id: &str,
) -> Result<DeliverySummary, DbError> {
    let counts = client
        .query_one(
            "SELECT count(*) FILTER (WHERE d.state = 'delivered') AS delivered,
                    count(*) FILTER (WHERE d.state = 'pending' AND d.attempts = 0) AS pending,
                    count(*) FILTER (WHERE d.state = 'pending' AND d.attempts > 0) AS retrying,
                    count(*) FILTER (WHERE d.state = 'gave_up') AS gave_up,
                    (SELECT count(*) FROM cutover.outbox
                      WHERE plan_id = $1 AND fanned_out_at IS NULL) AS unrouted
               FROM cutover.outbox_deliveries d JOIN cutover.outbox o ON o.id = d.outbox_id
              WHERE o.plan_id = $1",
            &[&plan_id],
        )
        .await?;
    let latest = client
        .query_opt(
            "SELECT d.target, d.state, d.attempts, d.next_attempt_at, d.last_error
               FROM cutover.outbox_deliveries d JOIN cutover.outbox o ON o.id = d.outbox_id
              WHERE o.plan_id = $1 AND d.state <> 'delivered' AND d.last_error IS NOT NULL
              ORDER BY d.last_attempt_at DESC NULLS LAST, o.id DESC, d.target
              LIMIT 1",
            &[&plan_id],
        )
        .await?;
    Ok(DeliverySummary {
        delivered: counts.get("delivered"),
        pending: counts.get("pending"),
        retrying: counts.get("retrying"),
        gave_up: counts.get("gave_up"),
        unrouted: counts.get("unrouted"),
        latest_failure: latest.map(|r| {
            let state = DeliveryState::parse(r.get("state"));
            FailedDelivery {
                target: r.get("target"),
                state,
                attempts: r.get("attempts"),
                next_attempt_at: (state == DeliveryState::Pending)
                    .then(|| r.get("next_attempt_at")),
                last_error: r.get("last_error"),
            }
        }),
    })
}
