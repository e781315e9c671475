//! The watcher: events that no single change causes, found by looking. Any running Cutover
//! process with the plan does this; each event instance has a unique key, so it is enqueued once
//! however many processes look:
//! - `phase.interrupted` — a phase `applying` / `rolling_back` whose plan lock nobody holds (seen
//!   twice, so a run finishing between the two reads is not mistaken for a dead one);
//! - `gate.blocked` — the next phase's gate not passing for longer than `blocked_after` (waiting
//!   only for its observation window or a freeze does not count);
//! - `backfill.throttled` — throttled for longer than `throttled_after`;
//! - `backfill.stalled` — running, but no chunk finished for `stalled_after`;
//! - `audit.broken` — the audit chain does not verify.

use std::collections::BTreeSet;
use std::time::Duration;

use chrono::{DateTime, Utc};
use serde_json::{json, Value};
use tokio_postgres::Client;

use super::{millis, NotifyError};
use crate::control::audit::{self, Verification};
use crate::control::backfill::State as BackfillState;
use crate::control::facts::Facts;
use crate::control::outbox::{self, NewEvent};
use crate::control::phases::PhaseState;
use crate::outcome::Outcome;
use crate::plan::{Event, Phase, Plan};
use crate::rules::ItemKind;

/// Looks once and enqueues what is due; `audit` also verifies the audit chain. Returns how many
/// events this call enqueued.
pub async fn watch(client: &Client, plan: &Plan, audit: bool) -> Result<usize, NotifyError> {
    if plan.spec.notify.is_empty() {
        return Ok(0);
    }
    let facts = Facts::load(client, plan.id()).await?;
    let mut enqueued = 0;
    if facts.registration.is_some() {
        enqueued += interrupted(client, plan, &facts).await?;
        enqueued += gate_blocked(client, plan, &facts).await?;
        enqueued += backfill(client, plan, &facts).await?;
    }
    if audit && wanted(plan, Event::AuditBroken) {
        enqueued += audit_chain(client, plan).await?;
    }
    Ok(enqueued)
}

fn wanted(plan: &Plan, event: Event) -> bool {
    plan.spec.notify.iter().any(|t| t.wants(event))
}

/// The distinct thresholds of the targets that want `event`.
fn thresholds(plan: &Plan, event: Event) -> BTreeSet<Duration> {
    plan.spec
        .notify
        .iter()
        .filter(|t| t.wants(event))
        .filter_map(|t| t.threshold(event))
        .collect()
}

fn micros(t: DateTime<Utc>) -> i64 {
    t.timestamp_micros()
}

fn held(now: DateTime<Utc>, since: DateTime<Utc>) -> Duration {
    (now - since).to_std().unwrap_or_default()
}

async fn put(client: &Client, e: NewEvent<'_>) -> Result<usize, NotifyError> {
    let id = outbox::enqueue(client, &e).await?;
    if let Some(id) = id {
        tracing::info!(target: "notify", "{} #{id} enqueued", e.event);
    }
    Ok(usize::from(id.is_some()))
}

/// Enqueues one event per threshold that `held` reached.
#[allow(clippy::too_many_arguments)]
async fn timed(
    client: &Client,
    plan: &Plan,
    event: Event,
    key: &str,
    phase: Option<Phase>,
    since: DateTime<Utc>,
    held_for: Duration,
    details: Value,
) -> Result<usize, NotifyError> {
    let mut n = 0;
    for th in thresholds(plan, event) {
        if held_for < th {
            continue;
        }
        let mut d = details.clone();
        if let Value::Object(m) = &mut d {
            m.insert("since".into(), json!(since.to_rfc3339()));
            m.insert("held_ms".into(), json!(millis(held_for)));
            m.insert("threshold_ms".into(), json!(millis(th)));
        }
        n += put(
            client,
            NewEvent {
                plan_id: plan.id(),
                event,
                dedup_key: format!("{key}:{}", millis(th)),
                phase,
                threshold_ms: Some(millis(th)),
                details: d,
                occurred_at: None,
            },
        )
        .await?;
    }
    Ok(n)
}

async fn interrupted(client: &Client, plan: &Plan, facts: &Facts) -> Result<usize, NotifyError> {
    if !wanted(plan, Event::PhaseInterrupted) || facts.lock_holder.is_some() {
        return Ok(0);
    }
    let suspects: Vec<_> = facts
        .phases
        .iter()
        .filter(|p| matches!(p.state, PhaseState::Applying | PhaseState::RollingBack))
        .map(|p| (p.phase, p.state, p.started_at))
        .collect();
    if suspects.is_empty() {
        return Ok(0);
    }
    // The first read saw no lock holder; a run alive then commits its end before it releases the
    // lock, so a phase still in the same run at this later read has been abandoned.
    let again = Facts::load(client, plan.id()).await?;
    let mut n = 0;
    for (phase, state, started_at) in suspects {
        let row = again.phase(phase);
        if row.state != state || row.started_at != started_at {
            continue;
        }
        let started = started_at.map_or(0, micros);
        n += put(
            client,
            NewEvent {
                plan_id: plan.id(),
                event: Event::PhaseInterrupted,
                dedup_key: format!("phase.interrupted:{}:{phase}:{started}", plan.id()),
                phase: Some(phase),
                threshold_ms: None,
                details: json!({
                    "state": state.as_str(),
                    "started_at": started_at.map(|t| t.to_rfc3339()),
                }),
                occurred_at: None,
            },
        )
        .await?;
    }
    Ok(n)
}

async fn gate_blocked(client: &Client, plan: &Plan, facts: &Facts) -> Result<usize, NotifyError> {
    if !wanted(plan, Event::GateBlocked) {
        return Ok(0);
    }
    let blocked = match facts.next_phase() {
        Some(next) if !facts.in_flight() => {
            let eval = crate::rules::evaluate(plan, facts, next);
            let stuck = !eval.passed
                && eval.items.iter().any(|i| {
                    i.outcome != Outcome::Pass
                        && !matches!(i.kind, ItemKind::Observe | ItemKind::Freeze)
                });
            stuck.then_some((next, eval))
        }
        _ => None,
    };
    let condition = blocked.as_ref().map(|(p, _)| format!("gate.blocked:{p}"));
    let since =
        outbox::condition_since(client, plan.id(), "gate.blocked", condition.as_deref()).await?;
    let (Some((phase, eval)), Some(since)) = (blocked, since) else {
        return Ok(0);
    };
    timed(
        client,
        plan,
        Event::GateBlocked,
        &format!("gate.blocked:{}:{phase}:{}", plan.id(), micros(since)),
        Some(phase),
        since,
        held(facts.now, since),
        json!({ "gate": phase.as_str(), "outcome": eval.outcome, "blockers": eval.blockers }),
    )
    .await
}

async fn backfill(client: &Client, plan: &Plan, facts: &Facts) -> Result<usize, NotifyError> {
    let Some(b) = &facts.backfill else {
        return Ok(0);
    };
    match b.state {
        BackfillState::Throttled if wanted(plan, Event::BackfillThrottled) => {
            let Some(since) = b.state_changed_at else {
                return Ok(0);
            };
            timed(
                client,
                plan,
                Event::BackfillThrottled,
                &format!("backfill.throttled:{}:{}", plan.id(), micros(since)),
                Some(Phase::Backfill),
                since,
                held(facts.now, since),
                json!({ "reason": b.reason, "rows_done": b.rows_done }),
            )
            .await
        }
        // A paced backfill still runs chunks: no chunk for a while is a stall there too.
        BackfillState::Running | BackfillState::Pacing if wanted(plan, Event::BackfillStalled) => {
            let last_chunk = outbox::last_chunk_at(client, plan.id()).await?;
            let Some(since) = [last_chunk, b.state_changed_at].into_iter().flatten().max() else {
                return Ok(0);
            };
            timed(
                client,
                plan,
                Event::BackfillStalled,
                &format!("backfill.stalled:{}:{}", plan.id(), micros(since)),
                Some(Phase::Backfill),
                since,
                held(facts.now, since),
                json!({ "last_chunk_at": last_chunk.map(|t| t.to_rfc3339()), "rows_done": b.rows_done }),
            )
            .await
        }
        _ => Ok(0),
    }
}

async fn audit_chain(client: &Client, plan: &Plan) -> Result<usize, NotifyError> {
    let Verification::Broken { seq, reason } = audit::verify(client).await? else {
        return Ok(0);
    };
    put(
        client,
        NewEvent {
            plan_id: plan.id(),
            event: Event::AuditBroken,
            dedup_key: format!("audit.broken:{}:{seq}", plan.id()),
            phase: None,
            threshold_ms: None,
            details: json!({ "seq": seq, "reason": reason }),
            occurred_at: None,
        },
    )
    .await
}
