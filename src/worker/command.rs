//! Actions the UI asks the worker to perform. Each runs on its own connection (purpose
//! `tui-action`) so a slow action never stalls the live view, and each change is recorded in the
//! audit log in the same transaction as the change.

use std::fmt;
use std::time::Duration;

use tokio_postgres::Client;

use super::app::{AppHandle, AppVersion};
use crate::control::audit::Actor;
use crate::db::DbConfig;
use crate::engine;
use crate::plan::{Phase, Plan, Role};
use crate::rules::{CategoryKind, RollbackPlan};

/// One action requested from the UI (or the `:` command line).
#[derive(Debug, Clone, PartialEq)]
pub enum Command {
    /// Sign off the gate of `gate` for each of `roles`.
    Signoff {
        /// The gate (entry gate of this phase).
        gate: Phase,
        /// Roles to sign for.
        roles: Vec<Role>,
        /// Free text.
        comment: String,
    },
    /// Pause the backfill.
    Pause,
    /// Resume the backfill.
    Resume,
    /// Set the backfill's target chunk time.
    Tune {
        /// New target in milliseconds.
        target_chunk_ms: u32,
    },
    /// Run the plan's checks and the gate's probes now.
    RunChecks,
    /// Apply the next phase (the engine evaluates the gate again).
    Advance,
    /// Run the rollback plan the operator confirmed (refused if it changed meanwhile).
    Rollback {
        /// The plan as the confirmation showed it.
        confirmed: RollbackPlan,
    },
    /// Set a feature flag.
    Flag {
        /// Flag name.
        name: String,
        /// On or off.
        enabled: bool,
    },
    /// Append a note to the audit log.
    Note {
        /// The note.
        text: String,
    },
    /// Rehearse the phases not yet applied (the Reversibility evidence).
    Rehearse,
    /// Attest a scorecard category by hand: where its evidence can be seen.
    Attest {
        /// The category (Observability).
        category: CategoryKind,
        /// Where it can be checked (a dashboard, an alert rule).
        url: String,
    },
    /// Scrape this process's metrics endpoint once, as Prometheus would (the endpoint records
    /// the scrape: Observability evidence).
    Scrape,
    /// Roll the demo application to a version (audited as a note first).
    App {
        /// The version to serve.
        version: AppVersion,
    },
}

impl Command {
    /// Why a read-only session refuses this action: every action writes (checks store their
    /// results, which gates read).
    pub fn read_only_refusal(&self) -> ActionError {
        ActionError::ReadOnly(match self {
            Command::RunChecks => "running checks stores their results, which gates judge; an operator's TUI or `cutover check PLAN` runs them".to_string(),
            other => format!("`{other}` changes state; a viewer changes nothing"),
        })
    }
}

impl fmt::Display for Command {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Command::Signoff { gate, roles, .. } => {
                let roles: Vec<&str> = roles.iter().map(Role::as_str).collect();
                write!(f, "sign off {gate} as {}", roles.join(", "))
            }
            Command::Pause => f.write_str("pause backfill"),
            Command::Resume => f.write_str("resume backfill"),
            Command::Tune { target_chunk_ms } => write!(f, "set chunk target {target_chunk_ms} ms"),
            Command::RunChecks => f.write_str("run checks"),
            Command::Advance => f.write_str("advance"),
            Command::Rollback { confirmed } => {
                let phases: Vec<&str> = confirmed.phases.iter().map(|p| p.as_str()).collect();
                write!(f, "roll back {}", phases.join(", "))
            }
            Command::Flag { name, enabled } => {
                write!(f, "flag {name} {}", if *enabled { "on" } else { "off" })
            }
            Command::Note { .. } => f.write_str("note"),
            Command::Rehearse => f.write_str("rehearse"),
            Command::Attest { category, .. } => write!(f, "attest {}", category.title()),
            Command::Scrape => f.write_str("scrape the metrics endpoint"),
            Command::App { version } => write!(f, "roll the app to {version}"),
        }
    }
}

/// The result of an action: what was done, in words for the status line, or why not.
pub type ActionResult = Result<String, ActionError>;

/// Why an action did not happen.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ActionError {
    /// This session is read-only.
    #[error("read-only mode: {0}")]
    ReadOnly(String),
    /// The worker has no connection right now.
    #[error("the database is unreachable (reconnecting); nothing was done")]
    Unreachable,
    /// The gate does not pass.
    #[error("the {phase} gate blocks: {}", blockers.join("; "))]
    Blocked {
        /// The gate.
        phase: Phase,
        /// Every blocker.
        blockers: Vec<String>,
    },
    /// A guard refused it (role, state, another session busy, …).
    #[error("{0}")]
    Refused(String),
    /// It was tried and failed.
    #[error("{0}")]
    Failed(String),
}

impl From<engine::EngineError> for ActionError {
    fn from(e: engine::EngineError) -> Self {
        match e {
            engine::EngineError::Blocked(g) => ActionError::Blocked {
                phase: g.phase,
                blockers: g.blockers,
            },
            engine::EngineError::Refused(why) => ActionError::Refused(why.to_string()),
            other => ActionError::Failed(other.to_string()),
        }
    }
}

impl From<crate::backfill::BackfillError> for ActionError {
    fn from(e: crate::backfill::BackfillError) -> Self {
        if e.is_refusal() {
            ActionError::Refused(e.to_string())
        } else {
            ActionError::Failed(e.to_string())
        }
    }
}

/// What commands may reach besides the database.
#[derive(Debug, Clone, Default)]
pub struct Env {
    /// The application `:app` steers (the demo's).
    pub app: Option<AppHandle>,
    /// The URL of this plan's series on this process's metrics endpoint (`--metrics-addr`, or
    /// the demo's).
    pub metrics: Option<String>,
}

/// How long `:scrape` waits for the metrics endpoint.
const SCRAPE_TIMEOUT: Duration = Duration::from_secs(10);

/// Runs `cmd` on `client` for `plan`; `cfg` is the server (the engine opens a monitoring
/// connection there to name whoever blocks its DDL).
pub async fn execute(
    client: &mut Client,
    cfg: &DbConfig,
    plan: &Plan,
    env: &Env,
    cmd: &Command,
) -> ActionResult {
    let actor = Actor::current(&*client)
        .await
        .map_err(|e| ActionError::Failed(e.to_string()))?;
    let result = match cmd {
        Command::Signoff {
            gate,
            roles,
            comment,
        } => signoff(client, plan, &actor, *gate, roles, comment).await,
        Command::Pause => set_backfill_paused(client, plan, &actor, true).await,
        Command::Resume => set_backfill_paused(client, plan, &actor, false).await,
        Command::Tune { target_chunk_ms } => tune(client, plan, &actor, *target_chunk_ms).await,
        Command::RunChecks => run_checks(client, plan).await,
        Command::Advance => advance(client, cfg, plan, &actor).await,
        Command::Rollback { confirmed } => rollback(client, cfg, plan, &actor, confirmed).await,
        Command::Flag { name, enabled } => flag(client, &actor, name, *enabled).await,
        Command::Note { text } => note(client, plan, &actor, text).await,
        Command::Rehearse => rehearse(client, plan, &actor).await,
        Command::Attest { category, url } => attest(client, plan, &actor, *category, url).await,
        Command::Scrape => scrape(client, plan, &actor, env.metrics.as_deref()).await,
        Command::App { version } => {
            roll_app(client, plan, &actor, env.app.as_ref(), *version).await
        }
    };
    match &result {
        Ok(msg) => tracing::info!(target: "action", "{cmd}: {msg}"),
        Err(msg) => tracing::warn!(target: "action", "{cmd} refused: {msg}"),
    }
    result
}

async fn signoff(
    client: &mut Client,
    plan: &Plan,
    actor: &Actor,
    gate: Phase,
    roles: &[Role],
    comment: &str,
) -> ActionResult {
    let mut signed = Vec::new();
    let mut already = Vec::new();
    for role in roles {
        match engine::signoff(client, plan, actor, gate, role, comment).await {
            Ok(engine::SignoffOutcome::Recorded { .. }) => signed.push(role.as_str()),
            Ok(engine::SignoffOutcome::AlreadySigned { login, .. }) => {
                already.push(format!("{} (by {login})", role.as_str()))
            }
            Err(e) => return Err(e.into()),
        }
    }
    match (signed.is_empty(), already.is_empty()) {
        (false, _) => Ok(format!("signed the {gate} gate as {}", signed.join(", "))),
        (true, false) => Ok(format!(
            "the {gate} gate was already signed: {}",
            already.join(", ")
        )),
        (true, true) => Err(ActionError::Refused(format!(
            "nothing to sign on the {gate} gate"
        ))),
    }
}

async fn set_backfill_paused(
    client: &mut Client,
    plan: &Plan,
    actor: &Actor,
    pause: bool,
) -> ActionResult {
    if pause {
        crate::backfill::pause(client, plan, actor, "")
            .await
            .map(|()| "backfill paused".to_string())
    } else {
        crate::backfill::resume(client, plan, actor)
            .await
            .map(|()| "backfill resumed".to_string())
    }
    .map_err(ActionError::from)
}

async fn tune(client: &mut Client, plan: &Plan, actor: &Actor, target_ms: u32) -> ActionResult {
    let tuning = crate::backfill::Tuning {
        target_chunk_time: Some(std::time::Duration::from_millis(u64::from(target_ms))),
        ..crate::backfill::Tuning::default()
    };
    crate::backfill::tune(client, plan, actor, &tuning)
        .await
        .map(|()| format!("chunk target {target_ms} ms"))
        .map_err(ActionError::from)
}

async fn flag(client: &mut Client, actor: &Actor, name: &str, enabled: bool) -> ActionResult {
    let change = engine::set_flag(client, actor, name, enabled).await?;
    let state = if enabled { "on" } else { "off" };
    Ok(if change.changed {
        format!("flag {name} {state}")
    } else {
        format!("flag {name} was already {state}")
    })
}

async fn note(client: &mut Client, plan: &Plan, actor: &Actor, text: &str) -> ActionResult {
    match engine::note(client, plan, actor, text).await {
        Ok(engine::NoteOutcome::Recorded { audit_seq }) => {
            Ok(format!("note added to the audit log (#{audit_seq})"))
        }
        Ok(engine::NoteOutcome::Duplicate { audit_seq }) => Ok(format!(
            "the same note is already in the audit log (#{audit_seq})"
        )),
        Err(e) => Err(e.into()),
    }
}

async fn run_checks(client: &mut Client, plan: &Plan) -> ActionResult {
    let cancel = crate::checks::Cancel::new();
    let records = crate::checks::run(client, plan, None, &cancel)
        .await
        .map_err(|e| ActionError::Failed(e.to_string()))?;
    let failed: Vec<&str> = records
        .iter()
        .filter(|r| r.outcome != crate::outcome::Outcome::Pass)
        .map(|r| r.name.as_str())
        .collect();
    if failed.is_empty() {
        Ok(format!("{} checks passed", records.len()))
    } else {
        Ok(format!(
            "{} checks ran; not passing: {}",
            records.len(),
            failed.join(", ")
        ))
    }
}

async fn advance(client: &mut Client, cfg: &DbConfig, plan: &Plan, actor: &Actor) -> ActionResult {
    let opts = engine::RunOptions::with_monitor(cfg.clone());
    Ok(engine::advance(client, plan, actor, &opts).await?.message)
}

async fn rollback(
    client: &mut Client,
    cfg: &DbConfig,
    plan: &Plan,
    actor: &Actor,
    confirmed: &RollbackPlan,
) -> ActionResult {
    let opts = engine::RunOptions::with_monitor(cfg.clone());
    engine::rollback_confirmed(client, plan, actor, confirmed, &opts)
        .await
        .map(|o| o.message)
        .map_err(ActionError::from)
}

async fn rehearse(client: &mut Client, plan: &Plan, actor: &Actor) -> ActionResult {
    let r = engine::rehearse(client, plan, actor).await?;
    let rehearsed = r.phases.iter().filter(|p| p.skipped.is_none()).count();
    if r.ok {
        Ok(format!(
            "rehearsal passed: {rehearsed} phase(s) applied and rolled back in {:.0} ms, catalog restored",
            r.total_ms
        ))
    } else {
        let failed: Vec<String> = r
            .phases
            .iter()
            .filter_map(|p| {
                let error = p
                    .apply
                    .iter()
                    .chain(p.rollback.iter())
                    .find_map(|s| s.error.clone());
                match (error, p.restored) {
                    (Some(e), _) => Some(format!("{}: {e}", p.phase)),
                    (None, Some(false)) => Some(format!("{}: catalog not restored", p.phase)),
                    _ => None,
                }
            })
            .collect();
        Err(ActionError::Failed(format!(
            "rehearsal failed ({}); `cutover rehearse` prints every step",
            failed.join("; ")
        )))
    }
}

async fn attest(
    client: &mut Client,
    plan: &Plan,
    actor: &Actor,
    category: CategoryKind,
    url: &str,
) -> ActionResult {
    match engine::attest(client, plan, actor, category, url).await? {
        engine::AttestOutcome::Recorded { audit_seq } => Ok(format!(
            "{} attested by {} (audit #{audit_seq}): {url}",
            category.title(),
            actor.login
        )),
    }
}

async fn roll_app(
    client: &mut Client,
    plan: &Plan,
    actor: &Actor,
    app: Option<&AppHandle>,
    version: AppVersion,
) -> ActionResult {
    let Some(app) = app else {
        return Err(ActionError::Refused(
            "there is no application to roll here: `:app` steers the demo's app only".into(),
        ));
    };
    let facts = crate::control::facts::Facts::load(&*client, plan.id())
        .await
        .map_err(|e| ActionError::Failed(e.to_string()))?;
    if let Some(why) = version.refusal(|p| facts.state(p)) {
        return Err(ActionError::Refused(why));
    }
    let before = app.0.status();
    if before.serving == version && before.draining.is_none() {
        return Ok(format!("the app already runs {version}"));
    }
    let text = format!(
        "demo app: rolling from {} to {version} at {}",
        before.serving,
        facts.now.format("%H:%M:%S")
    );
    engine::note(client, plan, actor, &text).await?;
    app.0
        .roll(version)
        .map_err(|e| ActionError::Failed(e.to_string()))
}

async fn scrape(
    client: &mut Client,
    plan: &Plan,
    actor: &Actor,
    url: Option<&str>,
) -> ActionResult {
    let Some(url) = url else {
        return Err(ActionError::Refused(
            "this process serves no metrics endpoint: start it with --metrics-addr 127.0.0.1:9187"
                .into(),
        ));
    };
    crate::control::anchors::authorize(&*client, plan, actor, crate::plan::Action::Probe)
        .await
        .map_err(|e| ActionError::Refused(e.to_string()))?;
    let target = url.to_string();
    let body = tokio::task::spawn_blocking(move || {
        let agent: ureq::Agent = ureq::Agent::config_builder()
            .timeout_global(Some(SCRAPE_TIMEOUT))
            .build()
            .into();
        agent
            .get(&target)
            .call()
            .and_then(|mut r| r.body_mut().read_to_string())
    })
    .await
    .map_err(|e| ActionError::Failed(format!("the scrape task failed: {e}")))?
    .map_err(|e| ActionError::Failed(format!("scraping {url} failed: {e}")))?;
    let series = body
        .lines()
        .filter(|l| !l.is_empty() && !l.starts_with('#'))
        .count();
    let up = body
        .lines()
        .find(|l| l.starts_with("cutover_database_up"))
        .and_then(|l| l.rsplit(' ').next())
        .and_then(|v| v.trim().parse::<f64>().ok())
        .is_some_and(|v| v == 1.0);
    if !up {
        return Err(ActionError::Failed(format!(
            "{url} answered without the control schema's metrics ({series} series): the endpoint could not read the database"
        )));
    }
    Ok(format!(
        "scraped {url}: {series} series, {} bytes (recorded as Observability evidence)",
        body.len()
    ))
}
