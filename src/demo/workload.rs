//! The synthetic application of the demo: steady credits, debits, new accounts and reads on
//! `public.accounts`, so dual-write triggers fire, the backfill competes with real traffic and
//! parity checks have moving data to verify. Connects as application `demo-app` (not `cutover/…`,
//! so it shows as the app, not as a Cutover session).

use std::time::Duration;

use rand::RngExt;
use tokio::sync::watch;
use tokio::task::JoinHandle;

use crate::db::DbConfig;

/// A running workload; [`Workload::stop`] ends it.
pub struct Workload {
    stop: watch::Sender<bool>,
    task: JoinHandle<()>,
}

impl Workload {
    /// Starts `writes_per_sec` writes (and as many reads) per second on `db`.
    pub fn start(db: DbConfig, writes_per_sec: u32) -> Workload {
        let (stop, stopped) = watch::channel(false);
        let task = tokio::spawn(run(db, writes_per_sec.max(1), stopped));
        Workload { stop, task }
    }

    /// Stops the workload and waits for it to finish its current statement.
    pub async fn stop(self) {
        let _ = self.stop.send(true);
        if tokio::time::timeout(Duration::from_secs(3), self.task)
            .await
            .is_err()
        {
            tracing::warn!(target: "demo", "the workload did not stop within 3s");
        }
    }
}

async fn run(db: DbConfig, writes_per_sec: u32, mut stopped: watch::Receiver<bool>) {
    let period = Duration::from_secs_f64(1.0 / f64::from(writes_per_sec));
    loop {
        let client = match crate::db::connect_app(&db, "demo-app").await {
            Ok(client) => client,
            Err(e) => {
                tracing::warn!(target: "demo", "workload cannot connect: {e}; retrying");
                tokio::select! {
                    _ = tokio::time::sleep(Duration::from_secs(1)) => continue,
                    _ = stopped.changed() => return,
                }
            }
        };
        let max_id: i64 = match client
            .query_one("SELECT coalesce(max(id), 1) FROM public.accounts", &[])
            .await
        {
            Ok(r) => r.get(0),
            Err(_) => 1,
        };
        let mut tick = tokio::time::interval(period);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Skip);
        tracing::info!(target: "demo", "app workload: {writes_per_sec} writes/s and reads on public.accounts");
        loop {
            tokio::select! {
                _ = tick.tick() => {}
                _ = stopped.changed() => return,
            }
            let (id, op, cents): (i64, u32, i64) = {
                let mut rng = rand::rng();
                (
                    rng.random_range(1..=max_id),
                    rng.random_range(0..100),
                    rng.random_range(1..5000),
                )
            };
            let amount = format!("{}.{:02}", cents / 100, cents % 100);
            let result = match op {
                0..=44 => client
                    .execute(
                        "UPDATE public.accounts SET balance = balance + $2::text::numeric, updated_at = now() WHERE id = $1",
                        &[&id, &amount],
                    )
                    .await
                    .map(|_| ()),
                45..=89 => client
                    .execute(
                        "UPDATE public.accounts SET balance = balance - $2::text::numeric, updated_at = now()
                          WHERE id = $1 AND balance >= $2::text::numeric",
                        &[&id, &amount],
                    )
                    .await
                    .map(|_| ()),
                _ => client
                    .execute(
                        "INSERT INTO public.accounts (owner, balance) VALUES ('owner-new-' || $1::text, $2::text::numeric)",
                        &[&id.to_string(), &amount],
                    )
                    .await
                    .map(|_| ()),
            };
            let read = client
                .query_opt(
                    "SELECT balance::text FROM public.accounts WHERE id = $1",
                    &[&id],
                )
                .await;
            if let Err(e) = result.and(read.map(|_| ())) {
                if client.is_closed() {
                    tracing::warn!(target: "demo", "workload lost its connection: {e}; reconnecting");
                    break;
                }
                tracing::debug!(target: "demo", "workload statement failed: {e}");
            }
        }
    }
}
