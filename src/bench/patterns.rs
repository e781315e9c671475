//! The large-table patterns side by side, part of `cutover bench backfill` (alone:
//! `cutover bench patterns`), on a throwaway cluster with `wal_level = logical`:
//! (a) filling a new table from a 300 000-row source: copy mode (`INSERT … SELECT` chunks) vs
//!     the no-op-UPDATE approach (an in-place backfill whose UPDATE fires a mirror trigger) —
//!     wall time and WAL bytes of each;
//! (b) the application's write latency (single-row UPDATEs at a fixed rate from two clients)
//!     with no dual-write, with a trigger dual-write, and with CDC (slot + applier running),
//!     in the order none, trigger, CDC, none.

use std::process::ExitCode;
use std::time::{Duration, Instant};

use anyhow::bail;
use tokio_postgres::Client;

use crate::backfill::{self, RunOptions};
use crate::control;
use crate::db::{self, DbConfig, SessionSettings};
use crate::exit;
use crate::plan::{Phase, Plan};
use crate::throwaway::{ClusterOptions, ThrowawayCluster};

/// Rows of the source table.
const ROWS: i64 = 300_000;
/// Length of each latency run.
const RUN: Duration = Duration::from_secs(8);
/// Writes per second per client.
const RATE: u64 = 100;
/// Clients writing.
const CLIENTS: usize = 2;

/// Runs the patterns benchmark on its own throwaway cluster (it needs logical WAL).
pub async fn run() -> anyhow::Result<ExitCode> {
    eprintln!(
        "starting a throwaway PostgreSQL cluster with wal_level = logical and production \
         durability (fsync, synchronous_commit, full_page_writes on)…"
    );
    let cluster = ThrowawayCluster::start_with(&ClusterOptions {
        logical_decoding: true,
        without_stat_statements: true,
        durable: true,
        ..ClusterOptions::default()
    })
    .await?;
    let cfg = DbConfig::from_url(&cluster.url())?;
    let result = bench(&cfg).await;
    let _ = tokio::task::spawn_blocking(move || cluster.stop()).await;
    result?;
    Ok(ExitCode::from(exit::OK))
}

async fn connect(cfg: &DbConfig) -> anyhow::Result<Client> {
    let session = SessionSettings {
        purpose: "bench".to_string(),
        statement_timeout: Duration::from_secs(3600),
    };
    Ok(db::connect(cfg, &session).await?)
}

const MIRROR: &str = "
CREATE FUNCTION mirror() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    IF TG_OP = 'DELETE' THEN
        DELETE FROM dst WHERE legacy_id = OLD.aid;
        RETURN OLD;
    END IF;
    INSERT INTO dst (legacy_id, bid, cents, filler)
    VALUES (NEW.aid, NEW.bid, NEW.abalance::bigint * 100, NEW.filler)
    ON CONFLICT (legacy_id) DO UPDATE
       SET bid = EXCLUDED.bid, cents = EXCLUDED.cents, filler = EXCLUDED.filler;
    RETURN NEW;
END $$;";

async fn bench(cfg: &DbConfig) -> anyhow::Result<()> {
    let mut client = connect(cfg).await?;
    eprintln!("preparing {ROWS} source rows…");
    client
        .batch_execute(&format!(
            "CREATE TABLE src (aid bigint PRIMARY KEY, bid integer NOT NULL,
                 abalance integer NOT NULL, filler character(84));
             INSERT INTO src SELECT g, g % 10, 0, '' FROM generate_series(1, {ROWS}) g;
             CREATE TABLE dst (uid uuid PRIMARY KEY DEFAULT gen_random_uuid(),
                 legacy_id bigint NOT NULL UNIQUE, bid integer NOT NULL, cents bigint NOT NULL,
                 filler character(84));
             {MIRROR}"
        ))
        .await?;
    client.batch_execute("VACUUM ANALYZE src").await?;
    control::schema::bootstrap(&mut client).await?;

    println!("(a) filling a new table from {ROWS} rows (same chunking, unthrottled)");
    let copy = plan(&client, "bench-copy", true).await?;
    let (copy_s, copy_wal) = fill(cfg, &client, &copy).await?;
    client.batch_execute("TRUNCATE dst").await?;
    client.batch_execute("VACUUM ANALYZE src").await?;
    client
        .batch_execute(
            "CREATE TRIGGER mirror AFTER INSERT OR UPDATE OR DELETE ON src
                 FOR EACH ROW EXECUTE FUNCTION mirror()",
        )
        .await?;
    let update = plan(&client, "bench-update", false).await?;
    let (update_s, update_wal) = fill(cfg, &client, &update).await?;
    let mib = |b: i64| b as f64 / (1024.0 * 1024.0);
    println!(
        "    copy mode (INSERT … SELECT)        {copy_s:>7.2} s  {:>8.1} MiB WAL",
        mib(copy_wal)
    );
    println!(
        "    no-op UPDATE + mirror trigger      {update_s:>7.2} s  {:>8.1} MiB WAL",
        mib(update_wal)
    );
    println!(
        "    copy / no-op UPDATE: time {:.2}×, WAL {:.2}×",
        copy_s / update_s.max(1e-9),
        copy_wal as f64 / (update_wal as f64).max(1.0)
    );

    println!(
        "(b) application writes: single-row UPDATEs, {CLIENTS} clients × {RATE}/s, {}s each",
        RUN.as_secs()
    );
    client.batch_execute("DROP TRIGGER mirror ON src").await?;
    client.batch_execute("VACUUM ANALYZE src").await?;
    let none1 = latency(cfg).await?;
    client
        .batch_execute(
            "CREATE TRIGGER mirror AFTER INSERT OR UPDATE OR DELETE ON src
                 FOR EACH ROW EXECUTE FUNCTION mirror()",
        )
        .await?;
    let trigger = latency(cfg).await?;
    client.batch_execute("DROP TRIGGER mirror ON src").await?;
    let cdc_plan = plan(&client, "bench-cdc", true).await?;
    crate::cdc::ensure(&client, &cdc_plan).await?;
    let (stop, rx) = tokio::sync::watch::channel(false);
    let applier = tokio::spawn(crate::cdc::apply::run(
        cfg.clone(),
        cdc_plan.clone(),
        crate::cdc::apply::ApplyOptions::default(),
        rx,
    ));
    let cdc = latency(cfg).await?;
    let lag = crate::cdc::lag(&client, cdc_plan.id()).await?;
    let _ = stop.send(true);
    let applied = applier.await??;
    crate::cdc::drop(&client, cdc_plan.id()).await?;
    let none2 = latency(cfg).await?;
    let row = |name: &str, l: &[f64]| {
        println!(
            "    {name:<34} p50 {:>6.2} ms  p95 {:>6.2} ms  p99 {:>6.2} ms  ({} writes)",
            percentile(l, 0.50),
            percentile(l, 0.95),
            percentile(l, 0.99),
            l.len()
        )
    };
    row("no dual-write (first)", &none1);
    row("trigger dual-write", &trigger);
    row("CDC (slot + applier)", &cdc);
    row("no dual-write (last)", &none2);
    println!(
        "    CDC applier: {} changes applied in {} batches; lag at the end {}",
        applied.changes,
        applied.batches,
        lag.map_or("unknown".into(), |l| format!(
            "{} bytes, caught up {} ago",
            l.bytes,
            l.seconds.map_or("never".into(), |s| format!("{s:.1}s"))
        ))
    );
    Ok(())
}

/// A plan filling `dst` from `src`: copy mode, or a no-op UPDATE whose trigger copies the row.
async fn plan(client: &Client, id: &str, copy: bool) -> anyhow::Result<Plan> {
    let backfill = if copy {
        r#"mode = "copy"
into = "public.dst"
target_key = ["legacy_id"]
columns = { legacy_id = "aid", bid = "bid", cents = "abalance::bigint * 100", filler = "filler" }"#
    } else {
        r#"set = { abalance = "abalance" }
pending = "NOT EXISTS (SELECT 1 FROM public.dst d WHERE d.legacy_id = src.aid)""#
    };
    let head = super::plan_head(id);
    let toml = format!(
        r#"{head}
[backfill]
table = "public.src"
key = ["aid"]
{backfill}
[backfill.throttle]
pause_on_vacuum = false
"#
    );
    let plan = Plan::parse(&format!("{id}.toml"), &toml)?;
    control::phases::seed_applied(client, &plan, Phase::Backfill).await?;
    Ok(plan)
}

/// Runs the backfill to done; returns its wall time (s) and the WAL it wrote (bytes).
async fn fill(cfg: &DbConfig, client: &Client, plan: &Plan) -> anyhow::Result<(f64, i64)> {
    let start: String = client
        .query_one("SELECT pg_current_wal_lsn()::text AS lsn", &[])
        .await?
        .try_get("lsn")?;
    let began = Instant::now();
    let (_tx, rx) = tokio::sync::watch::channel(false);
    let summary = backfill::run(cfg.clone(), plan.clone(), RunOptions::default(), rx).await?;
    let elapsed = began.elapsed().as_secs_f64();
    if summary.outcome != backfill::RunOutcome::Done {
        bail!("the backfill of {} ended {:?}", plan.id(), summary.outcome);
    }
    let wal: i64 = client
        .query_one(
            "SELECT pg_wal_lsn_diff(pg_current_wal_lsn(), $1::text::pg_lsn)::bigint AS wal",
            &[&start],
        )
        .await?
        .try_get("wal")?;
    let copied: i64 = client
        .query_one("SELECT count(*) AS n FROM dst", &[])
        .await?
        .try_get("n")?;
    if copied != ROWS {
        bail!("{} filled {copied} rows of {ROWS}", plan.id());
    }
    Ok((elapsed, wal))
}

/// Single-row UPDATE latencies (ms) of `CLIENTS` clients writing at `RATE` per second.
async fn latency(cfg: &DbConfig) -> anyhow::Result<Vec<f64>> {
    let mut tasks = Vec::new();
    for _ in 0..CLIENTS {
        let client = connect(cfg).await?;
        tasks.push(tokio::spawn(async move {
            let mut out = Vec::new();
            let mut tick = tokio::time::interval(Duration::from_micros(1_000_000 / RATE));
            let end = Instant::now() + RUN;
            while Instant::now() < end {
                tick.tick().await;
                let aid = 1 + i64::from(rand::random::<u32>()) % ROWS;
                let t = Instant::now();
                client
                    .execute(
                        "UPDATE src SET abalance = abalance + 1 WHERE aid = $1",
                        &[&aid],
                    )
                    .await?;
                out.push(t.elapsed().as_secs_f64() * 1000.0);
            }
            Ok::<_, tokio_postgres::Error>(out)
        }));
    }
    let mut all = Vec::new();
    for t in tasks {
        all.extend(t.await??);
    }
    Ok(all)
}

/// The nearest-rank percentile of `values` (0 when empty).
fn percentile(values: &[f64], q: f64) -> f64 {
    let mut v = values.to_vec();
    v.sort_by(f64::total_cmp);
    if v.is_empty() {
        return 0.0;
    }
    let rank = ((q * v.len() as f64).ceil() as usize).clamp(1, v.len());
    v[rank - 1]
}
