//! `cutover bench backfill`: the backfill measured side by side with the alternatives, in one run.
//!
//! On a throwaway cluster (or in a fresh database on `DATABASE_URL`), builds a 2 M-row
//! `pgbench_accounts` (pgbench scale 20) and four identical copies, then prints: (a) the
//! unthrottled backfill's throughput vs one set-based `UPDATE` of the same rows (each method
//! twice, on its own identical copies, in the order U B B U); (b) the p50/p99 chunk time vs the
//! 300 ms target; (c) for three workloads ([`super::workloads`]) at a fixed rate, the
//! application's p95 and p99 latency during a default-throttled backfill of the table it writes
//! vs before it (and after it, the load running throughout), the backfill's time under load
//! vs unthrottled, the WAL it wrote per row and the time each signal held it.

use std::process::{ExitCode, Stdio};
use std::time::{Duration, Instant};

use anyhow::{bail, Context as _};
use tokio_postgres::Client;

use super::workloads::{self, percentile, Measured, WorkloadName, CLIENTS, RATE, WORKLOADS};

use crate::backfill::{self, RunOptions};
use crate::control;
use crate::db::{self, DbConfig, SessionSettings};
use crate::exit;
use crate::plan::{Phase, Plan};
use crate::throwaway::{ClusterOptions, ThrowawayCluster};

/// pgbench scale: 100 000 accounts per unit.
const SCALE: u32 = 20;
/// Target chunk time of every backfill here (the plan default).
const TARGET_MS: f64 = 300.0;

/// Runs the backfill benchmark.
/// With `only` given, runs part (c) for those workloads alone.
pub(crate) async fn run(
    server: Option<DbConfig>,
    only: &[WorkloadName],
    timeline: bool,
) -> anyhow::Result<ExitCode> {
    let (cluster, server) = match server {
        Some(cfg) => (None, cfg),
        None => {
            eprintln!(
                "starting a throwaway PostgreSQL cluster with production durability \
                 (fsync, synchronous_commit, full_page_writes on)…"
            );
            let cluster = ThrowawayCluster::start_with(&ClusterOptions {
                durable: true,
                ..ClusterOptions::default()
            })
            .await?;
            let cfg = DbConfig::from_url(&cluster.url())?;
            (Some(cluster), cfg)
        }
    };
    let name = format!("cutover_bench_{:08x}", rand::random::<u32>());
    let admin = db::connect(&server, &SessionSettings::new("bench")).await?;
    admin
        .batch_execute(&format!(
            "CREATE DATABASE {}",
            crate::sql::quote_ident(&name)
        ))
        .await?;
    let cfg = server.with_dbname(&name);
    let result = bench(&cfg, only, timeline).await;
    let _ = admin
        .batch_execute(&format!(
            "DROP DATABASE IF EXISTS {} WITH (FORCE)",
            crate::sql::quote_ident(&name)
        ))
        .await;
    drop(admin);
    if let Some(c) = cluster {
        let _ = tokio::task::spawn_blocking(move || c.stop()).await;
    }
    result?;
    Ok(ExitCode::from(exit::OK))
}

/// Copies of the table for (a), in the order they are processed: U = single UPDATE, B = backfill.
/// The ABBA order cancels a steady drift of the machine's load between the two methods.
const COPIES: [(&str, bool); 4] = [
    ("copy_u1", false),
    ("copy_b1", true),
    ("copy_b2", true),
    ("copy_u2", false),
];

#[expect(clippy::too_many_lines, reason = "the bench helper splits this")]
async fn bench(cfg: &DbConfig, only: &[WorkloadName], timeline: bool) -> anyhow::Result<()> {
    let rows = u64::from(SCALE) * 100_000;
    // With workloads chosen, part (c) alone: no copies for (a).
    let copies: &[(&str, bool)] = if only.is_empty() { &COPIES } else { &[] };
    let pgbench = workloads::pgbench_path();
    let logs = tempfile::tempdir()?;
    eprintln!(
        "preparing {rows} rows on {} (pgbench -i -s {SCALE}, four copies)…",
        cfg.display()
    );
    let status = workloads::pgbench_cmd(&pgbench, cfg)
        .args(["-i", "-q", "-I", "dtGvp", "-s", &SCALE.to_string()])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .await
        .with_context(|| format!("running {}", pgbench.display()))?;
    if !status.success() {
        bail!("pgbench -i failed ({status})");
    }
    let mut client = connect(cfg).await?;
    for (table, _) in copies {
        client
            .batch_execute(&format!(
                "CREATE TABLE {table} AS SELECT aid, bid, abalance, filler FROM pgbench_accounts;
                 ALTER TABLE {table} ADD PRIMARY KEY (aid), ADD COLUMN abalance_cents bigint;"
            ))
            .await?;
    }
    // One column per workload, each kept by the dual-write trigger once the application writes.
    let cols: Vec<String> = WORKLOADS.iter().map(workloads::column).collect();
    client
        .batch_execute(&format!(
            "ALTER TABLE pgbench_accounts {};
             CREATE FUNCTION bench_dual_write() RETURNS trigger LANGUAGE plpgsql AS $$
             BEGIN {} RETURN NEW; END $$;
             CREATE TRIGGER bench_dual_write BEFORE INSERT OR UPDATE OF abalance
                 ON pgbench_accounts FOR EACH ROW EXECUTE FUNCTION bench_dual_write();",
            cols.iter()
                .map(|c| format!("ADD COLUMN {c} bigint"))
                .collect::<Vec<_>>()
                .join(", "),
            cols.iter()
                .map(|c| format!("NEW.{c} := NEW.abalance::bigint * 100;"))
                .collect::<String>()
        ))
        .await?;
    std::fs::write(
        logs.path().join("skewed.sql"),
        workloads::skewed_script(rows),
    )?;
    // VACUUM refuses a transaction block: one statement per call. Then warm every copy alike.
    for (table, _) in copies {
        client
            .batch_execute(&format!("VACUUM ANALYZE {table}"))
            .await?;
        client
            .batch_execute(&format!("SELECT count(*) FROM {table}"))
            .await?;
    }
    client
        .batch_execute("VACUUM ANALYZE pgbench_accounts")
        .await?;
    crate::control::schema::bootstrap(&mut client).await?;
    // The latency guard reads pg_stat_statements where the server has it loaded.
    let _ = client
        .batch_execute("CREATE EXTENSION IF NOT EXISTS pg_stat_statements")
        .await;
    let guard_signal = if client
        .query_one("SELECT count(*) FROM pg_stat_statements", &[])
        .await
        .is_ok()
    {
        "pg_stat_statements and pg_stat_activity sampling"
    } else {
        "pg_stat_activity sampling (pg_stat_statements not loaded)"
    };

    // (a) one set-based UPDATE vs the unthrottled backfill, each twice on identical copies.
    let mut single = (Duration::ZERO, 0u64);
    let mut chunked = (Duration::ZERO, 0u64, 0u64);
    let mut plans_a = Vec::new();
    for &(table, is_backfill) in copies {
        if is_backfill {
            eprintln!("(a) backfill of {table}…");
            let plan = bench_plan(&client, &format!("bench-{table}"), table, UNTHROTTLED).await?;
            let t = Instant::now();
            let summary = run_backfill(cfg, &plan).await?;
            chunked.0 += t.elapsed();
            chunked.1 += summary.rows_updated;
            chunked.2 += summary.chunks;
            plans_a.push(plan);
        } else {
            eprintln!("(a) single UPDATE of {table}…");
            let t = Instant::now();
            let n = client
                .execute(
                    format!(
                        "UPDATE {table} SET abalance_cents = abalance::bigint * 100 \
                         WHERE abalance_cents IS NULL"
                    )
                    .as_str(),
                    &[],
                )
                .await?;
            single.0 += t.elapsed();
            single.1 += n;
        }
    }
    let ids_a: Vec<String> = plans_a.iter().map(|p| p.id().to_string()).collect();
    let stats_a = control::backfill::stats::chunk_summary(&client, &ids_a).await?;
    let mut throttled_a = 0.0;
    for plan in &plans_a {
        throttled_a += backfill::progress(&client, plan).await?.throttled_seconds;
    }

    // (c) each workload at a fixed rate, before, during and after a default-throttled backfill.
    let mut measured = Vec::new();
    for w in WORKLOADS
        .into_iter()
        .filter(|w| only.is_empty() || only.contains(&w.id))
    {
        eprintln!(
            "(c) {}: load, then a default-throttled backfill under it…",
            w.label
        );
        let plan = bench_plan_col(
            &client,
            &format!("bench-{}", w.name),
            "pgbench_accounts",
            &workloads::column(&w),
            "",
        )
        .await?;
        measured.push(workloads::measure(&client, cfg, &pgbench, logs.path(), w, plan).await?);
    }

    let rate = |n: u64, d: Duration| n as f64 / d.as_secs_f64().max(1e-9);
    let ratio_a = rate(chunked.1, chunked.0) / rate(single.1, single.0);
    let unthrottled_one = chunked.0.as_secs_f64() / 2.0;
    let verdict = |ok: bool| if ok { "MET" } else { "MISSED" };
    println!();
    println!(
        "cutover bench backfill — {rows} rows (pgbench_accounts, scale {SCALE}); target chunk time {TARGET_MS:.0} ms"
    );
    if !copies.is_empty() {
        println!(
            "(a) throughput, each method twice on identical copies (order U B B U); default settings (workers 1, idle_workers 2: no application traffic here) but `{UNTHROTTLED}`"
        );
        println!(
            "    single set-based UPDATE          {:>7.2} s  {:>9.0} rows/s  ({} rows)",
            single.0.as_secs_f64(),
            rate(single.1, single.0),
            single.1
        );
        println!(
            "    cutover backfill, unthrottled    {:>7.2} s  {:>9.0} rows/s  ({} rows, {} chunks)",
            chunked.0.as_secs_f64(),
            rate(chunked.1, chunked.0),
            chunked.1,
            chunked.2
        );
        println!(
            "    backfill time: chunks ran {:.2} s (summed over workers, {:.2} at a time on average) within {:.2} s from the first chunk's start to the last one's end; {:.2} s before and after (planning, baseline, final pending count); throttled {:.1} s",
            stats_a.work_seconds,
            stats_a.work_seconds / stats_a.span_seconds.max(1e-9),
            stats_a.span_seconds,
            chunked.0.as_secs_f64() - stats_a.span_seconds,
            throttled_a
        );
        println!(
            "    backfill / single UPDATE throughput = {ratio_a:.2}×   (target ≥ 1.00×: {})",
            verdict(ratio_a >= 1.0)
        );
        println!(
            "(b) chunk time, unthrottled runs (all {} chunks)",
            stats_a.chunks
        );
        println!(
            "    p50 {:.0} ms   p99 {:.0} ms   max {:.0} ms   target {TARGET_MS:.0} ms   p99/target = {:.2}×   (target ≤ 1.5×: {})",
            stats_a.p50_ms,
            stats_a.p99_ms,
            stats_a.max_ms,
            stats_a.p99_ms / TARGET_MS,
            verdict(stats_a.p99_ms <= 1.5 * TARGET_MS)
        );
    }
    print_c(&measured, unthrottled_one, guard_signal);
    if timeline {
        for m in &measured {
            println!(
                "    {} second by second (from the load's start):",
                m.workload.name
            );
            for line in &m.timeline {
                println!("{line}");
            }
        }
    }
    let wrong: i64 = measured.iter().map(|m| m.wrong).sum();
    if wrong != 0 {
        bail!("{wrong} rows of pgbench_accounts are wrong after the backfills");
    }
    Ok(())
}

async fn connect(cfg: &DbConfig) -> anyhow::Result<Client> {
    let session = SessionSettings {
        purpose: "bench".to_string(),
        statement_timeout: Duration::from_secs(3600),
    };
    Ok(db::connect(cfg, &session).await?)
}

/// The throttle of (a): no signal pauses the backfill (by default an autovacuum of the table —
/// which the backfill's own dead rows start — would); the idle server trips none of the others.
const UNTHROTTLED: &str = "pause_on_vacuum = false";

/// A plan backfilling `abalance_cents` of `table`, registered with its backfill phase applied,
/// with `throttle` as its `[backfill.throttle]` settings.
async fn bench_plan(
    client: &Client,
    id: &str,
    table: &str,
    throttle: &str,
) -> anyhow::Result<Plan> {
    bench_plan_col(client, id, table, "abalance_cents", throttle).await
}

/// [`bench_plan`] backfilling column `col`.
async fn bench_plan_col(
    client: &Client,
    id: &str,
    table: &str,
    col: &str,
    throttle: &str,
) -> anyhow::Result<Plan> {
    let head = super::plan_head(id);
    let toml = format!(
        r#"{head}
[backfill]
table = "public.{table}"
key = ["aid"]
set = {{ {col} = "abalance::bigint * 100" }}
pending = "{col} IS NULL"
[backfill.throttle]
{throttle}
"#
    );
    let plan = Plan::parse(&format!("{id}.toml"), &toml)?;
    control::phases::seed_applied(client, &plan, Phase::Backfill).await?;
    Ok(plan)
}

async fn run_backfill(cfg: &DbConfig, plan: &Plan) -> anyhow::Result<backfill::RunSummary> {
    let (_tx, rx) = tokio::sync::watch::channel(false);
    let summary = backfill::run(cfg.clone(), plan.clone(), RunOptions::default(), rx).await?;
    if summary.outcome != backfill::RunOutcome::Done {
        bail!("the backfill of {} ended {:?}", plan.id(), summary.outcome);
    }
    Ok(summary)
}

/// Prints part (c): per workload, the latencies without and during the backfill side by side,
/// then the backfill's own figures.
fn print_c(measured: &[Measured], unthrottled: f64, guard_signal: &str) {
    let verdict = |ok: bool| if ok { "MET" } else { "MISSED" };
    println!(
        "(c) application latency, pgbench -R {RATE} -c {CLIENTS} -j 2 on pgbench_accounts (dual-write trigger on), load running before, during and after a default-throttled backfill; the latency guard also reads {guard_signal}"
    );
    println!(
        "    {:<58} {:>15} {:>15} {:>7} {:>15} {:>15} {:>7}",
        "workload", "p95 before", "p95 during", "ratio", "p99 before", "p99 during", "ratio"
    );
    for m in measured {
        let (b95, d95) = (percentile(&m.before, 0.95), percentile(&m.during, 0.95));
        let (b99, d99) = (percentile(&m.before, 0.99), percentile(&m.during, 0.99));
        let (r95, r99) = (d95 / b95.max(1e-9), d99 / b99.max(1e-9));
        println!(
            "    {:<58} {:>12.2} ms {:>12.2} ms {:>6.2}× {:>12.2} ms {:>12.2} ms {:>6.2}×   p95 ≤ 1.25×: {}, p99 ≤ 1.50×: {}",
            m.workload.label,
            b95,
            d95,
            r95,
            b99,
            d99,
            r99,
            verdict(r95 <= 1.25),
            verdict(r99 <= 1.5)
        );
    }
    for m in measured {
        let held = if m.held.is_empty() {
            "none".to_string()
        } else {
            m.held
                .iter()
                .map(|(s, t)| format!("{s} {t:.1} s"))
                .collect::<Vec<_>>()
                .join(", ")
        };
        println!(
            "    {}: backfill {} in {:.1} s under load{}, {} keys; {} / {} transactions before / during; WAL {} per row, at most {} per chunk; {}; held by signal: {held}; throttled/yielded {:.1} s; after it: p95 {:.2}× p99 {:.2}× before; wrong rows {}, unset {}; {}",
            m.workload.name,
            if m.finished { "finished" } else { "DID NOT FINISH" },
            m.took.as_secs_f64(),
            if unthrottled > 0.0 {
                format!(
                    " vs {unthrottled:.1} s unthrottled ({:.1}×)",
                    m.took.as_secs_f64() / unthrottled
                )
            } else {
                String::new()
            },
            m.keys,
            m.before.len(),
            m.during.len(),
            m.wal_per_row.map_or("–".to_string(), |b| format!("{b:.0} B")),
            m.max_chunk_wal.map_or("–".to_string(), |b| format!("{:.2} MiB", b as f64 / 1_048_576.0)),
            m.pace.describe(),
            m.throttled,
            percentile(&m.after, 0.95) / percentile(&m.before, 0.95).max(1e-9),
            percentile(&m.after, 0.99) / percentile(&m.before, 0.99).max(1e-9),
            m.wrong,
            m.unset,
            m.written
        );
    }
}
