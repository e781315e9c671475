//! `cutover backfill run|pause|resume|stop|tune|status PLAN`.

use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::Duration;

use clap::Subcommand;

use super::{exit, Context};
use crate::backfill::{self, progress::fmt_secs, BackfillError, RunOptions, RunOutcome, Tuning};
use crate::control::audit::Actor;
use crate::plan::Plan;

/// Backfill commands.
#[derive(Debug, Subcommand)]
pub enum Command {
    /// The throttled, checkpointed backfill: run it, control it, watch it.
    Backfill {
        /// What to do.
        #[command(subcommand)]
        action: Action,
    },
}

/// Backfill actions.
#[derive(Debug, Subcommand)]
pub enum Action {
    /// Run (or resume from the checkpoint) the backfill in this process until it is done,
    /// stopped, or interrupted (Ctrl-C keeps the checkpoint). Exit 3 when the backfill phase is
    /// not applied or the backfill was stopped.
    Run {
        /// Plan file.
        plan: PathBuf,
        /// Worker tasks in this process (default: follow the live `workers` setting).
        #[arg(long)]
        local_workers: Option<u32>,
        /// Lease of a claimed range; another process reclaims it after this long without renewal.
        #[arg(long, default_value = "30s", value_parser = humantime::parse_duration)]
        lease: Duration,
        /// Key ranges to plan on first start (default: from the table size).
        #[arg(long)]
        ranges: Option<u32>,
        /// Exit 2 instead of waiting when other processes hold all the work.
        #[arg(long)]
        no_wait: bool,
        /// Seconds between progress lines on stderr (0 = none).
        #[arg(long, default_value_t = 5)]
        report_every: u64,
    },
    /// Pause: no chunk starts until `resume` (running workers keep their ranges).
    Pause {
        /// Plan file.
        plan: PathBuf,
        /// Why (recorded in the audit log and shown in status).
        #[arg(long, default_value = "")]
        reason: String,
    },
    /// Resume a paused or stopped backfill.
    Resume {
        /// Plan file.
        plan: PathBuf,
    },
    /// Stop: workers finish their chunk and exit; `run` refuses until `resume`.
    Stop {
        /// Plan file.
        plan: PathBuf,
        /// Why (recorded in the audit log and shown in status).
        #[arg(long, default_value = "")]
        reason: String,
    },
    /// Retune live; running workers follow from their next chunk.
    Tune {
        /// Plan file.
        plan: PathBuf,
        /// Target chunk time, e.g. 200ms.
        #[arg(long, value_parser = humantime::parse_duration)]
        target_chunk_time: Option<Duration>,
        /// Rate cap in rows per second (0 = none).
        #[arg(long)]
        max_rows_per_second: Option<u32>,
        /// Maximum concurrent workers across all processes.
        #[arg(long)]
        workers: Option<u32>,
    },
    /// Show state, reason, progress, ETA, chunk times and leases.
    Status {
        /// Plan file.
        plan: PathBuf,
        /// Print JSON (the `Progress` structure).
        #[arg(long)]
        json: bool,
    },
}

fn load(path: &Path) -> anyhow::Result<Plan> {
    Ok(Plan::load(path)?)
}

fn refusal(e: BackfillError) -> anyhow::Result<ExitCode> {
    if e.is_refusal() {
        eprintln!("refused: {e}");
        Ok(ExitCode::from(exit::REFUSED))
    } else if matches!(e, BackfillError::Leased { .. } | BackfillError::Invalid(_)) {
        eprintln!("blocked: {e}");
        Ok(ExitCode::from(exit::BLOCKED))
    } else {
        Err(e.into())
    }
}

/// Runs a backfill command.
pub(super) async fn run(cmd: Command, ctx: &Context) -> anyhow::Result<ExitCode> {
    let Command::Backfill { action } = cmd;
    match action {
        Action::Run {
            plan,
            local_workers,
            lease,
            ranges,
            no_wait,
            report_every,
        } => {
            let plan = load(&plan)?;
            let opts = RunOptions {
                local_workers,
                lease,
                ranges,
                no_wait,
                ..RunOptions::default()
            };
            run_backfill(ctx, plan, opts, report_every).await
        }
        Action::Pause { plan, reason } => {
            let plan = load(&plan)?;
            let mut client = ctx.connect("backfill-control").await?;
            let actor = Actor::current(&client).await?;
            match backfill::pause(&mut client, &plan, &actor, &reason).await {
                Ok(()) => {
                    println!("backfill of {} paused by {actor}", plan.id());
                    Ok(ExitCode::from(exit::OK))
                }
                Err(e) => refusal(e),
            }
        }
        Action::Resume { plan } => {
            let plan = load(&plan)?;
            let mut client = ctx.connect("backfill-control").await?;
            let actor = Actor::current(&client).await?;
            match backfill::resume(&mut client, &plan, &actor).await {
                Ok(()) => {
                    println!("backfill of {} resumed by {actor}", plan.id());
                    Ok(ExitCode::from(exit::OK))
                }
                Err(e) => refusal(e),
            }
        }
        Action::Stop { plan, reason } => {
            let plan = load(&plan)?;
            let mut client = ctx.connect("backfill-control").await?;
            let actor = Actor::current(&client).await?;
            match backfill::stop(&mut client, &plan, &actor, &reason).await {
                Ok(()) => {
                    println!(
                        "backfill of {} stopped by {actor}; the checkpoint is kept (resume, then run, to continue)",
                        plan.id()
                    );
                    Ok(ExitCode::from(exit::OK))
                }
                Err(e) => refusal(e),
            }
        }
        Action::Tune {
            plan,
            target_chunk_time,
            max_rows_per_second,
            workers,
        } => {
            let tuning = Tuning {
                target_chunk_time,
                max_rows_per_second,
                workers,
            };
            tune(ctx, &plan, &tuning).await
        }
        Action::Status { plan, json } => status(ctx, &plan, json).await,
    }
}

/// `backfill tune`: records the new settings and prints them as the workers will read them.
async fn tune(ctx: &Context, plan: &Path, tuning: &Tuning) -> anyhow::Result<ExitCode> {
    let plan = load(plan)?;
    let mut client = ctx.connect("backfill-control").await?;
    let actor = Actor::current(&client).await?;
    match backfill::tune(&mut client, &plan, &actor, tuning).await {
        Ok(()) => {
            let p = backfill::progress(&client, &plan).await?;
            println!(
                "backfill of {} tuned by {actor}: target chunk time {} ms, max {} rows/s, {} workers",
                plan.id(),
                p.target_chunk_ms,
                p.max_rows_per_sec,
                p.workers
            );
            Ok(ExitCode::from(exit::OK))
        }
        Err(e) => refusal(e),
    }
}

/// `backfill status`: the progress, as text or JSON.
async fn status(ctx: &Context, plan: &Path, json: bool) -> anyhow::Result<ExitCode> {
    let plan = load(plan)?;
    let client = ctx.connect_viewer("backfill-status").await?;
    let p = match backfill::progress(&client, &plan).await {
        Ok(p) => p,
        Err(e) => return refusal(e),
    };
    if json {
        println!("{}", serde_json::to_string_pretty(&p)?);
    } else {
        print_status(&p);
    }
    Ok(ExitCode::from(exit::OK))
}

async fn run_backfill(
    ctx: &Context,
    plan: Plan,
    opts: RunOptions,
    report_every: u64,
) -> anyhow::Result<ExitCode> {
    ctx.spawn_metrics(std::slice::from_ref(&plan))?;
    let cfg = ctx.db_config()?;
    let notifier = crate::notify::spawn(cfg.clone(), plan.clone());
    let (tx, rx) = tokio::sync::watch::channel(false);
    let mut task = tokio::spawn(backfill::run(cfg, plan.clone(), opts, rx));
    let reporter = ctx.connect("backfill-report").await.ok();
    let mut last_line = String::new();
    let mut tick = tokio::time::interval(Duration::from_secs(report_every.max(1)));
    tick.tick().await;
    eprintln!(
        "backfill of {}: running (Ctrl-C stops at the checkpoint)",
        plan.id()
    );
    let result = loop {
        tokio::select! {
            r = &mut task => break r,
            _ = tokio::signal::ctrl_c() => {
                eprintln!("interrupted: finishing the current chunk, then exiting at the checkpoint");
                let _ = tx.send(true);
            }
            _ = tick.tick(), if report_every > 0 => {
                if let Some(c) = reporter.as_ref() {
                    if let Ok(p) = backfill::progress(c, &plan).await {
                        let line = p.summary_line();
                        if line != last_line {
                            eprintln!("{line}");
                            last_line = line;
                        }
                    }
                }
            }
        }
    };
    drop(notifier);
    super::notify::deliver_now(ctx, &plan).await;
    let result = result.map_err(|e| anyhow::anyhow!("the backfill task ended abnormally: {e}"))?;
    match result {
        Ok(summary) => {
            let what = match summary.outcome {
                RunOutcome::Done => "done",
                RunOutcome::Stopped => "stopped (the checkpoint is kept)",
                RunOutcome::Shutdown => "interrupted (the checkpoint is kept; run again to resume)",
            };
            println!(
                "backfill of {}: {what}; this run: {} chunks, {} keys covered, {} rows updated in {}",
                plan.id(),
                summary.chunks,
                summary.rows_scanned,
                summary.rows_updated,
                fmt_secs(summary.elapsed.as_secs_f64())
            );
            Ok(ExitCode::from(exit::OK))
        }
        Err(e) => refusal(e),
    }
}

#[expect(
    clippy::too_many_lines,
    reason = "one line per fact of `backfill status`, in the order printed"
)]
fn print_status(p: &backfill::Progress) {
    println!("backfill {}: {}", p.plan_id, p.state);
    for s in &p.slots {
        println!("  {s}");
    }
    match &p.pace {
        backfill::Pace::Pacing(text) => println!("  reason:     {text}"),
        backfill::Pace::Held(why) => println!("  reason:     {why}"),
        backfill::Pace::Free if !p.reason.is_empty() => println!("  reason:     {}", p.reason),
        backfill::Pace::Free => {}
    }
    if let Some(by) = &p.paused_by {
        println!("  by:         {by}");
    }
    let share = p.share();
    println!(
        "  progress:   {}  {} ({} rows updated)",
        share.percent_text().unwrap_or_else(|| "0.0%".into()),
        share.rows_text(),
        backfill::thousands(p.rows_updated)
    );
    match (p.rate_rows_per_sec, p.eta_low_seconds, p.eta_high_seconds) {
        (Some(rate), Some(lo), Some(hi)) => println!(
            "  rate:       {rate:.0} rows/s   ETA {}–{}{}",
            fmt_secs(lo),
            fmt_secs(hi),
            if p.state == backfill::State::Throttled {
                " (once the throttle clears)"
            } else {
                ""
            }
        ),
        (Some(rate), _, _) => println!("  rate:       {rate:.0} rows/s"),
        _ => {}
    }
    let ms = |v: Option<f64>| v.map_or("-".to_string(), |v| format!("{v:.0} ms"));
    println!(
        "  chunks:     {} (latest {} rows in {}; p50 {}, p99 {}; target {} ms)",
        p.chunks,
        p.chunk_rows.map_or("-".to_string(), |r| r.to_string()),
        ms(p.last_chunk_ms),
        ms(p.p50_chunk_ms),
        ms(p.p99_chunk_ms),
        p.target_chunk_ms
    );
    if let Some(eff) = p.effective_target_ms.filter(|e| *e < p.target_chunk_ms) {
        println!(
            "  yielding:   the latest chunk blocked {} session(s); chunks aim at {eff} ms instead of {} ms",
            p.blocked_sessions, p.target_chunk_ms
        );
    }
    let g = &p.guard;
    if let Some(r) = &g.latest {
        println!(
            "  guard:      {} {:.2}× (budget {:.2}×), pause {:.1}×{}",
            r.signal,
            r.ratio,
            g.budget,
            r.pause,
            g.wal_bytes_per_row
                .map_or(String::new(), |b| format!("; WAL {b:.0} B/row"))
        );
    }
    if p.chunk_retries > 0 {
        println!(
            "  retries:    {} chunks rolled back (time cap or lock conflict) and retried smaller",
            p.chunk_retries
        );
    }
    println!(
        "  settings:   max {} rows/s (0 = none), workers {}{} ({} live)",
        p.max_rows_per_sec,
        p.workers,
        if p.idle_workers > p.workers {
            format!(", {} while the application is idle", p.idle_workers)
        } else {
            String::new()
        },
        p.live_workers
    );
    println!(
        "  held or paced: {}   sweeps: {}   checkpoint age: {}",
        fmt_secs(p.throttled_seconds),
        p.sweep_passes,
        p.checkpoint_age_seconds.map_or("-".to_string(), fmt_secs)
    );
    if p.state.under_way() && p.live_workers == 0 {
        println!("  warning:    no worker holds a live lease: is `cutover backfill run` running?");
    }
    for part in &p.partitions {
        println!("  partition  {part}");
    }
    for r in &p.ranges {
        let lease = match (&r.lease_owner, r.lease_live) {
            (Some(o), true) => format!(
                "leased by {o} (host {}, pid {}, since {})",
                r.lease_host.as_deref().unwrap_or("?"),
                r.lease_pid.unwrap_or_default(),
                r.lease_since
                    .map_or("?".to_string(), |s| s.format("%H:%M:%S").to_string())
            ),
            (Some(o), false) => format!("lease of {o} expired"),
            (None, _) => String::new(),
        };
        println!(
            "  {} {:>3}: {}{} keys, checkpoint {}  {lease}",
            r.kind,
            r.range_id,
            if r.done { "done, " } else { "" },
            r.rows_done,
            r.checkpoint
                .as_ref()
                .map_or("-".to_string(), |c| c.join(","))
        );
    }
}
