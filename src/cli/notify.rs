//! `cutover notify deliver|status PLAN`, and the delivery pass that state-changing commands run
//! before they exit.

use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::Duration;

use clap::Subcommand;

use super::{exit, Context};
use crate::control::outbox::{self, DeliveryState};
use crate::notify::{self, Options, ServiceOptions};
use crate::plan::Plan;

/// How long a one-shot command spends delivering before it exits.
const AFTER_ACTION_BUDGET: Duration = Duration::from_secs(10);

/// Notification commands.
#[derive(Debug, Subcommand)]
pub enum Command {
    /// Notifications of the plan's `[[notify]]` targets: deliver them, see their state.
    Notify {
        /// What to do.
        #[command(subcommand)]
        action: Action,
    },
}

/// Notification actions.
#[derive(Debug, Subcommand)]
pub enum Action {
    /// Watch for time-based events and deliver pending notifications until Ctrl-C (with
    /// `--once`: one pass, then exit 0 when every attempt succeeded, 1 otherwise).
    Deliver {
        /// Plan file.
        plan: PathBuf,
        /// One watcher and delivery pass, then exit.
        #[arg(long)]
        once: bool,
    },
    /// The newest deliveries: event, target, state, attempts, last error.
    Status {
        /// Plan file.
        plan: PathBuf,
        /// How many.
        #[arg(short = 'n', long, default_value_t = 20)]
        limit: i64,
        /// Print JSON.
        #[arg(long)]
        json: bool,
    },
}

/// Runs a notification command.
pub(super) async fn run(cmd: Command, ctx: &Context) -> anyhow::Result<ExitCode> {
    let Command::Notify { action } = cmd;
    match action {
        Action::Deliver { plan, once } => deliver(ctx, &plan, once).await,
        Action::Status { plan, limit, json } => status(ctx, &plan, limit, json).await,
    }
}

fn load_with_targets(path: &Path) -> anyhow::Result<Option<Plan>> {
    let plan = Plan::load(path)?;
    if plan.spec.notify.is_empty() {
        eprintln!("{}: the plan has no [[notify]] target", plan.path);
        return Ok(None);
    }
    Ok(Some(plan))
}

async fn deliver(ctx: &Context, path: &Path, once: bool) -> anyhow::Result<ExitCode> {
    let Some(plan) = load_with_targets(path)? else {
        return Ok(ExitCode::from(exit::OK));
    };
    let mut client = ctx.connect("notify").await?;
    if !once {
        drop(client);
        eprintln!(
            "notifications of {}: delivering to {} target(s) (Ctrl-C stops)",
            plan.id(),
            plan.spec.notify.len()
        );
        let service = notify::spawn_with(ctx.db_config()?, plan, ServiceOptions::default());
        tokio::signal::ctrl_c().await?;
        drop(service);
        return Ok(ExitCode::from(exit::OK));
    }
    let watched = notify::watch(&client, &plan, true).await?;
    let report = notify::deliver_due(&mut client, &plan, &Options::default(), None).await?;
    let waiting = outbox::deliveries(&client, plan.id(), 1_000)
        .await?
        .iter()
        .filter(|d| d.state == DeliveryState::Pending)
        .count();
    println!(
        "{}: {watched} event(s) found by the watcher, {} delivered, {} failed attempt(s), {waiting} pending",
        plan.id(),
        report.delivered,
        report.failed.len()
    );
    for f in &report.failed {
        println!(
            "  ✗ #{} to {} (attempt {}{}): {}",
            f.event_id,
            f.target,
            f.attempts,
            if f.gave_up { ", gave up" } else { "" },
            notify::scrub_error(&plan, &f.error)
        );
    }
    Ok(ExitCode::from(if report.failed.is_empty() {
        exit::OK
    } else {
        exit::ERROR
    }))
}

async fn status(ctx: &Context, path: &Path, limit: i64, json: bool) -> anyhow::Result<ExitCode> {
    let plan = Plan::load(path)?;
    let client = ctx.connect_viewer("notify-status").await?;
    // Errors are stored masked; scrub them again against every webhook URL the plan names.
    let mut rows = outbox::deliveries(&client, plan.id(), limit).await?;
    for d in &mut rows {
        d.last_error = d.last_error.take().map(|e| notify::scrub_error(&plan, &e));
    }
    let unrouted = outbox::unrouted(&client, plan.id()).await?;
    if json {
        println!(
            "{}",
            serde_json::to_string_pretty(&serde_json::json!({
                "plan_id": plan.id(),
                "unrouted": unrouted,
                "deliveries": rows,
            }))?
        );
        return Ok(ExitCode::from(exit::OK));
    }
    println!(
        "notifications of {}: {} target(s), {unrouted} event(s) not yet routed",
        plan.id(),
        plan.spec.notify.len()
    );
    for d in &rows {
        let when = match d.state {
            DeliveryState::Delivered => d
                .delivered_at
                .map(|t| format!(" at {}", crate::rules::fmt_time(t)))
                .unwrap_or_default(),
            DeliveryState::Pending => {
                format!(" next {}", crate::rules::fmt_time(d.next_attempt_at))
            }
            DeliveryState::GaveUp => String::new(),
        };
        println!(
            "  #{} {} → {}: {}{when}, {} attempt(s){}",
            d.event.id,
            d.event.event,
            d.target,
            d.state.as_str(),
            d.attempts,
            d.last_error
                .as_deref()
                .map(|e| format!(" — last error: {e}"))
                .unwrap_or_default()
        );
    }
    Ok(ExitCode::from(exit::OK))
}

/// After a state-changing command: delivers what is due for the plan, for at most
/// [`AFTER_ACTION_BUDGET`]; what fails stays queued for any running Cutover process.
pub(super) async fn after_action(ctx: &Context, path: &Path) {
    if let Ok(plan) = Plan::load(path) {
        deliver_now(ctx, &plan).await;
    }
}

/// Like [`after_action`], for a plan already loaded.
pub(super) async fn deliver_now(ctx: &Context, plan: &Plan) {
    if plan.spec.notify.is_empty() {
        return;
    }
    let result = async {
        let mut client = ctx.connect("notify").await?;
        notify::deliver_due(
            &mut client,
            plan,
            &Options::default(),
            Some(AFTER_ACTION_BUDGET),
        )
        .await
        .map_err(anyhow::Error::from)
    }
    .await;
    match result {
        Ok(r) if r.failed.is_empty() => {}
        Ok(r) => eprintln!(
            "notifications: {} failed attempt(s) (first: {}); they stay queued — any running Cutover process or `cutover notify deliver` retries them",
            r.failed.len(),
            notify::scrub_error(plan, &r.failed[0].error)
        ),
        Err(e) => eprintln!("notifications not delivered now ({e}); they stay queued"),
    }
}
