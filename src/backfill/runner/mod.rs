//! The runner: a supervisor that keeps the local worker tasks at their target count, and a
//! throttle task beside them, one file per job:
//! - [`worker`] — a worker task's loop: state, concurrency, throttle, claim, chunk, pace;
//! - [`chunk`] — one chunk transaction;
//! - [`throttle_task`] — the health signals' verdict, published and recorded;
//! - [`shared`] — what the tasks of one run share.

mod chunk;
mod shared;
mod throttle_task;
mod worker;

use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::{Duration, Instant};

use tokio::sync::watch;
use tokio::task::JoinSet;
use tokio_postgres::Client;

use self::shared::{Activity, Shared, Totals};
use self::throttle_task::throttle_loop;
use self::worker::Worker;
use super::keys::KeySpec;
use super::ranges;
use super::throttle::Verdict;
use super::{spec, BackfillError, RunOptions, RunOutcome, RunSummary};
use crate::control::backfill::{settings, state, transitions, State};
use crate::control::phases::{self, PhaseState};
use crate::db::{self, DbConfig, SessionSettings};
use crate::plan::{BackfillSpec, Phase, Plan};

/// Runs (or resumes) the backfill of `plan` in this process until it is done, stopped, or
/// `shutdown` turns true. Requires the engine to have applied the backfill phase.
///
/// Safe to call from several processes at once: they share the work through
/// `cutover.backfill_ranges`, up to the `workers` setting in total.
pub async fn run(
    cfg: DbConfig,
    plan: Plan,
    opts: RunOptions,
    shutdown: watch::Receiver<bool>,
) -> Result<RunSummary, BackfillError> {
    let started = Instant::now();
    let spec = spec(&plan)?.clone();
    let mut client = db::connect(&cfg, &SessionSettings::new("backfill")).await?;
    let Some(workers) = admit(&mut client, &plan, &spec).await? else {
        return Ok(RunSummary {
            outcome: RunOutcome::Done,
            chunks: 0,
            rows_scanned: 0,
            rows_updated: 0,
            elapsed: started.elapsed(),
        });
    };
    // No chunk runs before the health signals have been read once; they are first read while
    // the ranges are planned (the latency guard's baseline window overlaps the planning).
    let (verdict_tx, verdict_rx) =
        watch::channel(Verdict::Throttled("reading the health signals".to_string()));
    let (stop_tx, stop_rx) = watch::channel(false);
    let activity = Arc::new(Activity::new());
    let throttle = tokio::spawn(throttle_loop(
        cfg.clone(),
        plan.clone(),
        opts.throttle_interval,
        verdict_tx,
        stop_rx.clone(),
        activity.clone(),
    ));
    if plan.spec.is_cdc() {
        // The slot must exist before the first chunk reads the source (LSN fencing).
        crate::cdc::ensure(&client, &plan)
            .await
            .map_err(|e| BackfillError::from_cdc(plan.id(), e))?;
    }
    let keys = KeySpec::load(&client, &spec).await?;
    ranges::plan_ranges(
        &mut client,
        &plan,
        &keys,
        workers.max(1) as u32,
        opts.ranges,
    )
    .await?;

    if opts.no_wait {
        let holders = ranges::live_holders(&client, plan.id()).await?;
        if holders.len() >= workers.max(1) as usize {
            return Err(BackfillError::Leased {
                plan: plan.id().to_string(),
                holders: holders
                    .iter()
                    .map(|h| h.to_string())
                    .collect::<Vec<_>>()
                    .join(", "),
            });
        }
    }
    let shared = Arc::new(Shared {
        cfg,
        plan,
        spec,
        keys,
        opts,
        verdict: verdict_rx,
        shutdown,
        totals: Totals::default(),
        activity,
        ended: tokio::sync::Notify::new(),
    });
    let result = supervise(&shared, &mut client).await;
    let _ = stop_tx.send(true);
    let _ = throttle.await;
    if let Ok(RunOutcome::Shutdown) = &result {
        mark_idle_if_unattended(&client, &shared.plan).await;
    }
    let outcome = result?;
    Ok(RunSummary {
        outcome,
        chunks: shared.totals.chunks.load(Ordering::Relaxed),
        rows_scanned: shared.totals.scanned.load(Ordering::Relaxed),
        rows_updated: shared.totals.updated.load(Ordering::Relaxed),
        elapsed: started.elapsed(),
    })
}

/// Checks that the backfill may run: the schema exists, the login may run it, the phase is
/// applied, and the state row is neither stopped nor failed. Returns the live `workers`
/// setting, or `None` when the backfill is done already.
async fn admit(
    client: &mut Client,
    plan: &Plan,
    spec: &BackfillSpec,
) -> Result<Option<i32>, BackfillError> {
    crate::control::schema::bootstrap(client).await?;
    let actor = crate::control::audit::Actor::current(&*client).await?;
    crate::control::anchors::authorize(&*client, plan, &actor, crate::plan::Action::BackfillRun)
        .await?;
    check_phase(client, plan).await?;
    state::ensure_row(&*client, plan.id(), spec).await?;
    let row = state::load(&*client, plan.id()).await?.ok_or_else(|| {
        BackfillError::Db(db::DbError::Query(format!(
            "the backfill row of `{}` vanished",
            plan.id()
        )))
    })?;
    match row.state {
        State::Stopped => Err(BackfillError::Stopped {
            plan: plan.id().to_string(),
            by: row
                .paused_by
                .map(|b| format!(" by {b}"))
                .unwrap_or_default(),
        }),
        State::Failed => Err(BackfillError::Failed {
            plan: plan.id().to_string(),
            message: format!(
                "{} (fix the cause, then `cutover backfill resume` and run again)",
                row.reason
            ),
        }),
        State::Done => Ok(None),
        _ => Ok(Some(row.workers)),
    }
}

/// Refuses unless the engine applied the backfill phase.
async fn check_phase(client: &Client, plan: &Plan) -> Result<(), BackfillError> {
    match phases::state_of(client, plan.id(), Phase::Backfill).await? {
        Some(PhaseState::Applied) => Ok(()),
        state => Err(BackfillError::PhaseNotApplied {
            plan: plan.id().to_string(),
            state,
        }),
    }
}

/// After a shutdown, says so in the state when no worker anywhere still holds a lease.
async fn mark_idle_if_unattended(client: &Client, plan: &Plan) {
    let holders = ranges::live_holders(client, plan.id())
        .await
        .unwrap_or_default();
    if holders.is_empty() {
        let reason = format!(
            "no worker running: {} (pid {}) shut down at its checkpoint; run again to resume",
            crate::db::host_name(),
            std::process::id()
        );
        let _ = transitions::mark_idle(client, plan.id(), &reason).await;
    }
}
/// Keeps the local worker count at the target and collects their exits.
async fn supervise(shared: &Arc<Shared>, client: &mut Client) -> Result<RunOutcome, BackfillError> {
    let mut set: JoinSet<Result<RunOutcome, BackfillError>> = JoinSet::new();
    let mut spawned = 0usize;
    let mut outcome: Option<RunOutcome> = None;
    let mut error: Option<BackfillError> = None;
    let mut tick = tokio::time::interval(Duration::from_millis(500));
    loop {
        if outcome.is_none() && error.is_none() {
            // Enough tasks for the idle concurrency; each runs only while its index is within
            // the limit of the moment (see `Worker::step`).
            let target = match shared.opts.local_workers {
                Some(n) => n.max(1) as usize,
                None => settings::workers(&*client, shared.plan.id())
                    .await
                    .map(|w| (w.max(1) as usize).max(shared.spec.idle_concurrency() as usize))
                    .unwrap_or(spawned.max(1)),
            };
            while set.len() < target && spawned < 256 {
                let worker = Worker::new(shared.clone(), spawned);
                set.spawn(worker.run());
                spawned += 1;
            }
        }
        tokio::select! {
            joined = set.join_next() => {
                match joined {
                    None => break,
                    Some(Ok(Ok(o))) => {
                        outcome.get_or_insert(o);
                    }
                    Some(Ok(Err(e))) => {
                        error.get_or_insert(e);
                    }
                    Some(Err(join)) => {
                        error.get_or_insert(BackfillError::Failed {
                            plan: shared.plan.id().to_string(),
                            message: format!("a worker task ended abnormally: {join}"),
                        });
                    }
                }
                if outcome.is_some() || error.is_some() {
                    shared.ended.notify_waiters();
                    // Remaining local workers see the same state (done/stopped) or the shutdown;
                    // on an error they are told to stop after their current chunk.
                    if error.is_some() {
                        set.abort_all();
                    }
                }
            }
            _ = tick.tick() => {}
        }
        if (outcome.is_some() || error.is_some()) && set.is_empty() {
            break;
        }
    }
    match (error, outcome) {
        (Some(e), _) => Err(e),
        (None, Some(o)) => Ok(o),
        (None, None) => Ok(RunOutcome::Shutdown),
    }
}
