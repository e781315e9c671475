//! The throttle task of a run: evaluates the health signals, publishes the verdict to the
//! workers, and records state changes and the time spent throttled in `cutover.backfill`, and
//! the latency guard's readings in `cutover.backfill_guard` (about once a second).

use std::sync::Arc;
use std::time::{Duration, Instant};

use tokio::sync::watch;
use tokio_postgres::Client;

use super::shared::Activity;
use crate::backfill::pacing::Pace;
use crate::backfill::throttle::{Evaluator, Verdict, SIGNAL_TIMEOUT};
use crate::control::backfill::State;
use crate::control::backfill::{guard as guard_readings, transitions};
use crate::db::{self, DbConfig, SessionSettings};
use crate::plan::Plan;

/// Evaluates the health signals every `interval` (±20 %) until `stop` fires, publishing each
/// verdict on `verdict`.
pub(super) async fn throttle_loop(
    cfg: DbConfig,
    plan: Plan,
    interval: Duration,
    verdict: watch::Sender<Verdict>,
    mut stop: watch::Receiver<bool>,
    activity: Arc<Activity>,
) {
    let mut evaluator = Evaluator::new(&plan);
    let mut client: Option<Client> = None;
    let mut recorder = Recorder::new(plan.id());
    let session = SessionSettings {
        purpose: "backfill/throttle".to_string(),
        statement_timeout: SIGNAL_TIMEOUT,
    };
    loop {
        if client.as_ref().is_none_or(|c| c.is_closed()) {
            client = db::connect(&cfg, &session).await.ok();
        }
        let now = evaluator
            .evaluate(client.as_ref(), activity.quiet_for())
            .await;
        recorder.tick();
        // Published before the verdict, so that workers woken by it see both.
        activity.set_app_idle(matches!(now, Verdict::Clear) && evaluator.guard().app_idle());
        verdict.send_replace(now.clone());
        if let Some(c) = client.as_ref() {
            recorder.reading(c, &evaluator, &now).await;
            recorder.record(c, now).await;
        }
        // ±20 % at random, so that the latency guard's samples never fall into step with a
        // periodic application.
        let jittered = interval.mul_f64(0.8 + rand::random::<f64>() * 0.4);
        tokio::select! {
            _ = tokio::time::sleep(jittered) => {}
            _ = stop.changed() => break,
        }
    }
    if let Some(c) = client.as_ref() {
        recorder.finish(c).await;
    }
}

/// The verdict as recorded in the state row, and the time spent throttled not yet added to it.
struct Recorder {
    plan_id: String,
    recorded: Verdict,
    last_tick: Instant,
    unflushed: f64,
    last_flush: Instant,
    last_reading: Option<Instant>,
    /// When old readings were last deleted.
    last_trim: Option<Instant>,
}

impl Recorder {
    fn new(plan_id: &str) -> Recorder {
        Recorder {
            plan_id: plan_id.to_string(),
            recorded: Verdict::Clear,
            last_tick: Instant::now(),
            unflushed: 0.0,
            last_flush: Instant::now(),
            last_reading: None,
            last_trim: None,
        }
    }

    /// Records the latency guard's latest reading, about once a second (best effort).
    async fn reading(&mut self, c: &Client, evaluator: &Evaluator, verdict: &Verdict) {
        if self
            .last_reading
            .is_some_and(|t| t.elapsed() < Duration::from_secs(1))
        {
            return;
        }
        let guard = evaluator.guard();
        let Some(j) = guard.last() else { return };
        let reason = match verdict {
            Verdict::Throttled(r) | Verdict::Yield { reason: r, .. } => r.as_str(),
            Verdict::Clear => "",
        };
        self.last_reading = Some(Instant::now());
        let plan = self.plan_id.as_str();
        if let Err(e) = guard_readings::record(
            c,
            plan,
            j.ratio,
            guard.limit(),
            guard.pause(),
            j.signal,
            reason,
        )
        .await
        {
            tracing::warn!("cannot record the latency guard's reading: {e}");
        }
        if self
            .last_trim
            .is_none_or(|t| t.elapsed() >= Duration::from_secs(60))
        {
            self.last_trim = Some(Instant::now());
            if let Err(e) = guard_readings::trim(c, plan).await {
                tracing::warn!("cannot delete the latency guard's old readings: {e}");
            }
        }
    }

    /// Counts the time since the last tick under the recorded verdict.
    fn tick(&mut self) {
        let dt = self.last_tick.elapsed().as_secs_f64();
        self.last_tick = Instant::now();
        match &self.recorded {
            Verdict::Throttled(_) => self.unflushed += dt,
            // Count the share of the time the guard keeps chunks from running.
            Verdict::Yield { pause, .. } => self.unflushed += dt * pause / (1.0 + pause),
            Verdict::Clear => {}
        }
    }

    /// Records `now` when it changed; otherwise flushes the time throttled about once a second.
    async fn record(&mut self, c: &Client, now: Verdict) {
        let changed = match (&self.recorded, &now) {
            // A yield's reason carries live figures: record them about once a second.
            (Verdict::Yield { reason: a, .. }, Verdict::Yield { reason: b, .. }) => {
                a != b && self.last_flush.elapsed() >= Duration::from_secs(1)
            }
            (a, b) => a != b,
        };
        if changed {
            match record_verdict(c, &self.plan_id, &now, self.unflushed).await {
                Ok(()) => {
                    let plan = self.plan_id.as_str();
                    // A yield's new figures are recorded, not logged: one line per event.
                    match (&self.recorded, &now) {
                        (Verdict::Yield { .. }, Verdict::Yield { .. }) => {}
                        (_, Verdict::Throttled(r)) => {
                            tracing::warn!(plan, "backfill throttled: {r}")
                        }
                        (_, Verdict::Yield { reason, .. }) => {
                            if let Pace::Pacing(text) = Pace::of(Some(State::Pacing), reason) {
                                tracing::info!(plan, "backfill {text}")
                            }
                        }
                        (_, Verdict::Clear) => tracing::info!(plan, "backfill throttle cleared"),
                    }
                    self.recorded = now;
                    self.unflushed = 0.0;
                    self.last_flush = Instant::now();
                }
                Err(e) => tracing::warn!("cannot record the throttle state: {e}"),
            }
        } else if self.unflushed > 0.0 && self.last_flush.elapsed() >= Duration::from_secs(1) {
            if transitions::add_throttled(c, &self.plan_id, self.unflushed)
                .await
                .is_ok()
            {
                self.unflushed = 0.0;
            }
            self.last_flush = Instant::now();
        }
    }

    /// At the end of the run: flushes the time throttled and clears a recorded throttle.
    async fn finish(&self, c: &Client) {
        if self.unflushed > 0.0 {
            let _ = transitions::add_throttled(c, &self.plan_id, self.unflushed).await;
        }
        if !matches!(self.recorded, Verdict::Clear) {
            let _ = transitions::clear_throttle(c, &self.plan_id, 0.0).await;
        }
    }
}

async fn record_verdict(
    client: &Client,
    plan_id: &str,
    verdict: &Verdict,
    throttled: f64,
) -> Result<(), tokio_postgres::Error> {
    match verdict {
        Verdict::Throttled(reason) => {
            transitions::throttle(client, plan_id, reason, throttled).await?
        }
        Verdict::Yield { reason, .. } => {
            transitions::pace(client, plan_id, reason, throttled).await?
        }
        Verdict::Clear => transitions::clear_throttle(client, plan_id, throttled).await?,
    };
    Ok(())
}
