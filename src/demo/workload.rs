//! The synthetic application of the demo: steady credits, debits, new accounts and reads on
//! `public.accounts`, so dual-write triggers fire, the backfill competes with real traffic and
//! parity checks have moving data to verify. Connects as application `demo-app-v1` / `demo-app-v2`
//! (not `cutover/…`, so it shows as the app, not as a Cutover session).
//!
//! Two versions, as in a real expand/contract rollout:
//! - **v1** reads and writes `balance` (dollars);
//! - **v2** writes `balance_cents` only (the plan's dual-write trigger keeps `balance` equal for
//!   whoever still reads it) and reads `balance_cents` while the read-switch flag is on,
//!   `balance` while it is off (a rolled-back read switch).
//!
//! The demo starts on v1. [`Workload::control`] rolls it: the new version serves at once, the
//! old one drains for [`DRAIN`] and stops — after which the hidden-reader census no longer sees
//! `balance` being read.

use std::sync::Arc;
use std::time::Duration;

use rand::RngExt;
use tokio::sync::watch;
use tokio::task::JoinHandle;
use tokio_postgres::Client;

use crate::db::DbConfig;
use crate::worker::{AppControl, AppHandle, AppStatus, AppVersion, RollError};

/// How long the old version keeps serving its in-flight work during a rollout.
pub(crate) const DRAIN: Duration = Duration::from_secs(2);
/// How often v2 re-reads the read-switch flag.
const FLAG_EVERY: Duration = Duration::from_secs(1);

/// A running workload; [`Workload::stop`] ends it.
pub(crate) struct Workload {
    stop: watch::Sender<bool>,
    control: Arc<Control>,
    task: JoinHandle<()>,
}

/// What `:app` talks to.
struct Control {
    desired: watch::Sender<AppVersion>,
    status: watch::Receiver<AppStatus>,
}

impl AppControl for Control {
    fn status(&self) -> AppStatus {
        *self.status.borrow()
    }

    fn roll(&self, to: AppVersion) -> Result<String, RollError> {
        let from = self.status();
        if from.draining.is_some() {
            return Err(RollError::UnderWay(from));
        }
        self.desired.send(to).map_err(|_| RollError::Stopped)?;
        Ok(format!(
            "app {to} serves new requests; {} drains within {}s",
            from.serving,
            DRAIN.as_secs()
        ))
    }
}

impl Workload {
    /// Starts `writes_per_sec` writes (and as many reads) per second on `db`, as `version`.
    /// `flag` is the plan's read-switch flag (v2 reads by it).
    pub(crate) fn start(
        db: DbConfig,
        writes_per_sec: u32,
        version: AppVersion,
        flag: Option<String>,
    ) -> Workload {
        let (stop, stopped) = watch::channel(false);
        let (desired, wanted) = watch::channel(version);
        let (status_tx, status) = watch::channel(AppStatus {
            serving: version,
            draining: None,
        });
        let app = App {
            db,
            writes_per_sec: writes_per_sec.max(1),
            flag,
        };
        let task = tokio::spawn(supervise(app, wanted, status_tx, stopped));
        Workload {
            stop,
            control: Arc::new(Control { desired, status }),
            task,
        }
    }

    /// The handle the command center rolls the app with.
    pub(crate) fn control(&self) -> AppHandle {
        AppHandle(self.control.clone())
    }

    /// Stops the workload and waits for it to finish its current statements.
    pub(crate) async fn stop(self) {
        let _ = self.stop.send(true);
        if tokio::time::timeout(Duration::from_secs(3) + DRAIN, self.task)
            .await
            .is_err()
        {
            tracing::warn!(target: "demo", "the workload did not stop within 5s");
        }
    }
}

/// What every instance of the app shares.
#[derive(Clone)]
struct App {
    db: DbConfig,
    writes_per_sec: u32,
    flag: Option<String>,
}

/// One running version.
struct Instance {
    stop: watch::Sender<bool>,
    task: JoinHandle<()>,
}

impl Instance {
    fn start(app: &App, version: AppVersion) -> Instance {
        let (stop, stopped) = watch::channel(false);
        let task = tokio::spawn(run(app.clone(), version, stopped));
        Instance { stop, task }
    }

    async fn stop(self) {
        let _ = self.stop.send(true);
        let _ = tokio::time::timeout(Duration::from_secs(3), self.task).await;
    }
}

/// Runs the wanted version; on a change, starts the new one, drains the old one.
async fn supervise(
    app: App,
    mut wanted: watch::Receiver<AppVersion>,
    status: watch::Sender<AppStatus>,
    mut stopped: watch::Receiver<bool>,
) {
    let mut current = *wanted.borrow_and_update();
    let mut instance = Instance::start(&app, current);
    loop {
        tokio::select! {
            _ = stopped.changed() => break,
            changed = wanted.changed() => {
                if changed.is_err() {
                    break;
                }
                let to = *wanted.borrow_and_update();
                if to == current {
                    continue;
                }
                let next = Instance::start(&app, to);
                let _ = status.send(AppStatus { serving: to, draining: Some(current) });
                tracing::info!(target: "demo", "app rollout: {to} serves new requests, {current} drains");
                let interrupted = tokio::select! {
                    _ = tokio::time::sleep(DRAIN) => false,
                    _ = stopped.changed() => true,
                };
                instance.stop().await;
                instance = next;
                let _ = status.send(AppStatus { serving: to, draining: None });
                tracing::info!(target: "demo", "app rollout done: {current} stopped, {to} serves alone");
                current = to;
                if interrupted {
                    break;
                }
            }
        }
    }
    instance.stop().await;
}

/// The statements of one version.
struct Statements {
    credit: &'static str,
    debit: &'static str,
    open: &'static str,
    /// Reads by the read-switch flag: (flag on, flag off).
    read: (&'static str, &'static str),
}

impl Statements {
    fn of(version: AppVersion) -> Statements {
        match version {
            AppVersion::V1 => Statements {
                credit: "UPDATE public.accounts SET balance = balance + $2::text::numeric, updated_at = now() WHERE id = $1",
                debit: "UPDATE public.accounts SET balance = balance - $2::text::numeric, updated_at = now()
                         WHERE id = $1 AND balance >= $2::text::numeric",
                open: "INSERT INTO public.accounts (owner, balance) VALUES ('owner-new-' || $1::text, $2::text::numeric)",
                read: (
                    "SELECT balance::text FROM public.accounts WHERE id = $1",
                    "SELECT balance::text FROM public.accounts WHERE id = $1",
                ),
            },
            AppVersion::V2 => Statements {
                credit: "UPDATE public.accounts SET balance_cents = balance_cents + $2::text::bigint, updated_at = now() WHERE id = $1",
                debit: "UPDATE public.accounts SET balance_cents = balance_cents - $2::text::bigint, updated_at = now()
                         WHERE id = $1 AND balance_cents >= $2::text::bigint",
                open: "INSERT INTO public.accounts (owner, balance_cents) VALUES ('owner-new-' || $1::text, $2::text::bigint)",
                read: (
                    "SELECT balance_cents::text FROM public.accounts WHERE id = $1",
                    "SELECT balance::text FROM public.accounts WHERE id = $1",
                ),
            },
        }
    }
}

async fn run(app: App, version: AppVersion, mut stopped: watch::Receiver<bool>) {
    let period = Duration::from_secs_f64(1.0 / f64::from(app.writes_per_sec));
    let sql = Statements::of(version);
    let name = format!("demo-app-{version}");
    loop {
        let client = match crate::db::connect_app(&app.db, &name).await {
            Ok(client) => client,
            Err(e) => {
                tracing::warn!(target: "demo", "app {version} cannot connect: {e}; retrying");
                tokio::select! {
                    _ = tokio::time::sleep(Duration::from_secs(1)) => continue,
                    _ = stopped.changed() => return,
                }
            }
        };
        let max_id: i64 = match client
            .query_one(
                "SELECT coalesce(max(id), 1) AS max_id FROM public.accounts",
                &[],
            )
            .await
        {
            Ok(r) => r.get("max_id"),
            Err(_) => 1,
        };
        let mut tick = tokio::time::interval(period);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Skip);
        let mut flag_on = false;
        let mut flag_read: Option<tokio::time::Instant> = None;
        tracing::info!(target: "demo", "app {version}: {} writes/s and reads on public.accounts", app.writes_per_sec);
        loop {
            tokio::select! {
                _ = tick.tick() => {}
                _ = stopped.changed() => return,
            }
            if version == AppVersion::V2 && flag_read.is_none_or(|t| t.elapsed() >= FLAG_EVERY) {
                flag_on = read_flag(&client, app.flag.as_deref()).await;
                flag_read = Some(tokio::time::Instant::now());
            }
            let (id, op, cents): (i64, u32, i64) = {
                let mut rng = rand::rng();
                (
                    rng.random_range(1..=max_id),
                    rng.random_range(0..100),
                    rng.random_range(1..5000),
                )
            };
            let amount = match version {
                AppVersion::V1 => format!("{}.{:02}", cents / 100, cents % 100),
                AppVersion::V2 => cents.to_string(),
            };
            let write = match op {
                0..=44 => sql.credit,
                45..=89 => sql.debit,
                _ => sql.open,
            };
            let result = if op < 90 {
                client.execute(write, &[&id, &amount]).await
            } else {
                client.execute(write, &[&id.to_string(), &amount]).await
            };
            let read = if flag_on { sql.read.0 } else { sql.read.1 };
            let read = client.query_opt(read, &[&id]).await;
            if let Err(e) = result.and(read.map(|_| 0)) {
                if client.is_closed() {
                    tracing::warn!(target: "demo", "app {version} lost its connection: {e}; reconnecting");
                    break;
                }
                tracing::debug!(target: "demo", "app {version} statement failed: {e}");
            }
        }
    }
}

/// The read-switch flag as the app sees it (off when unset or unreadable).
async fn read_flag(client: &Client, flag: Option<&str>) -> bool {
    let Some(name) = flag else {
        return false;
    };
    matches!(crate::engine::get_flag(client, name).await, Ok(Some(f)) if f.enabled)
}
