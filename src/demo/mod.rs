//! `cutover demo`: a throwaway PostgreSQL (or, with `DATABASE_URL`, a fresh database on that
//! server), the demo schema seeded, a synthetic application in two versions (it starts on v1;
//! `:app v2` rolls it forward after the read switch), a metrics endpoint, and the command center
//! on the demo plan. Quitting stops everything it started and removes what it created.

pub(crate) mod workload;

use std::path::Path;

use crate::db::{self, DbConfig, SessionSettings};
use crate::plan::Plan;
use crate::throwaway::ThrowawayCluster;
use crate::worker::AppVersion;

/// The demo schema (tables and the `cutover_demo_seed` function).
pub const SCHEMA_SQL: &str = include_str!("../../assets/demo/schema.sql");
/// Where the demo plan lives in the repository.
pub const PLAN_PATH: &str = "plans/accounts-balance-cents.toml";
const PLAN_SOURCE: &str = include_str!("../../plans/accounts-balance-cents.toml");

/// Knobs of the demo.
#[derive(Debug, Clone)]
pub struct DemoOptions {
    /// Accounts to seed.
    pub accounts: i32,
    /// Synthetic writes per second.
    pub writes_per_sec: u32,
    /// Backfill rate cap (rows/s, 0 = none).
    pub backfill_rate: u32,
    /// Serve Prometheus metrics here.
    pub metrics_addr: Option<std::net::SocketAddr>,
}

/// The demo plan: the repository's file when run from the checkout, else the built-in copy.
pub fn plan() -> anyhow::Result<Plan> {
    if Path::new(PLAN_PATH).is_file() {
        Ok(Plan::load(PLAN_PATH)?)
    } else {
        Ok(Plan::parse(PLAN_PATH, PLAN_SOURCE)?)
    }
}

/// Where the demo's data lives, and how to clean it up.
enum Server {
    /// A cluster started for the demo; stopped and removed on drop.
    Throwaway(ThrowawayCluster),
    /// A database created for the demo on the user's server; dropped at the end.
    Database { admin: DbConfig, name: String },
}

/// Runs the demo until the user quits.
/// `server` is the user's server (a fresh database is created there), or `None` for a
/// throwaway cluster.
pub async fn run(server: Option<DbConfig>, opts: DemoOptions) -> anyhow::Result<()> {
    let plan = plan()?;
    let (server, db) = match server {
        None => {
            eprintln!("cutover demo: starting a throwaway PostgreSQL cluster…");
            let cluster = ThrowawayCluster::start().await?;
            let db = DbConfig::from_url(&cluster.url())?;
            (Server::Throwaway(cluster), db)
        }
        Some(admin) => {
            let name = format!("cutover_demo_{}", std::process::id());
            eprintln!(
                "cutover demo: creating database {name} on {}…",
                admin.display()
            );
            let client = db::connect(&admin, &SessionSettings::new("demo-setup")).await?;
            client
                .batch_execute(&format!(
                    "CREATE DATABASE {}",
                    crate::sql::quote_ident(&name)
                ))
                .await
                .map_err(|e| {
                    anyhow::anyhow!("creating database {name}: {}", db::describe_error(&e))
                })?;
            let db = admin.with_dbname(&name);
            (Server::Database { admin, name }, db)
        }
    };
    let result = run_on(&db, &plan, &opts).await;
    cleanup(server).await;
    result
}

async fn run_on(db: &DbConfig, plan: &Plan, opts: &DemoOptions) -> anyhow::Result<()> {
    let mut client = db::connect(db, &SessionSettings::new("demo-setup")).await?;
    client
        .batch_execute("SET statement_timeout = 0")
        .await
        .map_err(|e| anyhow::anyhow!("{}", db::describe_error(&e)))?;
    let has_rows = client
        .query_opt(
            "SELECT 1 FROM pg_tables WHERE schemaname = 'public' AND tablename = 'accounts'",
            &[],
        )
        .await?
        .is_some();
    client
        .batch_execute(SCHEMA_SQL)
        .await
        .map_err(|e| anyhow::anyhow!("loading the demo schema: {}", db::describe_error(&e)))?;
    if !has_rows {
        eprintln!(
            "cutover demo: seeding {} accounts (plus customers and orders)…",
            opts.accounts
        );
        client
            .execute(
                "SELECT cutover_demo_seed($1, $2, $3)",
                &[
                    &opts.accounts,
                    &(opts.accounts / 20).max(1),
                    &(opts.accounts / 5).max(1),
                ],
            )
            .await
            .map_err(|e| anyhow::anyhow!("seeding the demo data: {}", db::describe_error(&e)))?;
    }
    // The seed function is a one-off; left in place, the hidden-reader census would rightly
    // count it as a reader of `accounts.balance` and block the contract gate.
    client
        .batch_execute("DROP FUNCTION IF EXISTS cutover_demo_seed(integer, integer, integer)")
        .await
        .map_err(|e| {
            anyhow::anyhow!(
                "dropping the demo seed function: {}",
                db::describe_error(&e)
            )
        })?;
    crate::control::schema::bootstrap(&mut client).await?;
    if opts.backfill_rate > 0 {
        let actor = crate::control::audit::Actor::current(&client).await?;
        let tuning = crate::backfill::Tuning {
            max_rows_per_second: Some(opts.backfill_rate),
            ..crate::backfill::Tuning::default()
        };
        crate::backfill::tune(&mut client, plan, &actor, &tuning).await?;
    }
    drop(client);
    let flag = plan.spec.read_switch.as_ref().map(|r| r.flag.clone());
    let workload = workload::Workload::start(db.clone(), opts.writes_per_sec, AppVersion::V1, flag);
    // The demo always serves metrics (a free local port unless `--metrics-addr` says where):
    // `:scrape` in the command center, or `curl`, scrapes it for the Observability evidence.
    let addr = opts
        .metrics_addr
        .unwrap_or_else(|| std::net::SocketAddr::from(([127, 0, 0, 1], 0)));
    let metrics = crate::evidence::metrics::spawn(addr, db.clone(), vec![plan.clone()])?;
    eprintln!("cutover demo: metrics on http://{metrics}/metrics");
    let result = crate::tui::run(crate::tui::Options {
        plans: vec![plan.clone()],
        db: db.clone(),
        read_only: false,
        hint: Some(format!(
            "demo: follow the ▶ next hint; ? lists every key; metrics on http://{metrics}/metrics"
        )),
        app: Some(workload.control()),
        metrics: Some(metrics),
    })
    .await;
    workload.stop().await;
    result
}

async fn cleanup(server: Server) {
    match server {
        Server::Throwaway(cluster) => {
            eprintln!("cutover demo: stopping and removing the throwaway cluster…");
            let stopped = tokio::task::spawn_blocking(move || cluster.stop()).await;
            if let Ok(Err(e)) = stopped {
                eprintln!("cutover demo: stopping the throwaway cluster: {e}");
            }
        }
        Server::Database { admin, name } => {
            eprintln!("cutover demo: dropping database {name}…");
            match db::connect(&admin, &SessionSettings::new("demo-setup")).await {
                Ok(client) => {
                    let sql = format!(
                        "DROP DATABASE IF EXISTS {} WITH (FORCE)",
                        crate::sql::quote_ident(&name)
                    );
                    if let Err(e) = client.batch_execute(&sql).await {
                        eprintln!(
                            "cutover demo: could not drop {name}: {}",
                            db::describe_error(&e)
                        );
                    }
                }
                Err(e) => eprintln!("cutover demo: could not drop {name}: {e}"),
            }
        }
    }
}
