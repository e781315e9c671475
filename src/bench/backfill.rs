//! `cutover bench backfill`: the backfill measured side by side with the alternatives, in one run.
//!
//! On a throwaway cluster (or in a fresh database on `DATABASE_URL`), builds a 1 M-row
//! `pgbench_accounts` (pgbench scale 10, so that one run stays under about 3 minutes on two
//! cores) and four identical copies, then prints: (a) the unthrottled backfill's throughput vs
//! one set-based `UPDATE` of the same rows (each method twice, on its own identical copies, in
//! the order U B B U); (b) the p50/p99 chunk time vs the 300 ms target; (c) pgbench's p95 and
//! p99 latency at a fixed rate (`pgbench -N -R 200 -c 4`: the built-in simple-update script; the full TPC-B-like one
//! saturates two shared cores at 200 tps) without
//! a backfill (before and after) and during a backfill with the default throttle (latency
//! guard included) on the table pgbench writes to, and how long that backfill took.

use std::path::{Path, PathBuf};
use std::process::{ExitCode, Stdio};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use anyhow::{bail, Context as _};
use tokio::process::{Child, Command};
use tokio_postgres::Client;

use crate::backfill::{self, RunOptions};
use crate::control;
use crate::db::{self, DbConfig, SessionSettings};
use crate::exit;
use crate::plan::{Phase, Plan};
use crate::throwaway::{self, ThrowawayCluster};

/// pgbench scale: 100 000 accounts per unit.
const SCALE: u32 = 10;
/// Fixed transaction rate of the concurrent load (transactions per second).
const RATE: u32 = 200;
/// pgbench clients.
const CLIENTS: u32 = 4;
/// Length of the baseline pgbench run.
const BASELINE: Duration = Duration::from_secs(12);
/// Target chunk time of every backfill here (the plan default).
const TARGET_MS: f64 = 300.0;

/// Runs the backfill benchmark.
pub(crate) async fn run(server: Option<DbConfig>) -> anyhow::Result<ExitCode> {
    let (cluster, server) = match server {
        Some(cfg) => (None, cfg),
        None => {
            eprintln!("starting a throwaway PostgreSQL cluster…");
            let cluster = ThrowawayCluster::start().await?;
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
    let result = bench(&cfg).await;
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
async fn bench(cfg: &DbConfig) -> anyhow::Result<()> {
    let rows = u64::from(SCALE) * 100_000;
    let pgbench = pgbench_path();
    let logs = tempfile::tempdir()?;
    eprintln!(
        "preparing {rows} rows on {} (pgbench -i -s {SCALE}, four copies)…",
        cfg.display()
    );
    let status = pgbench_cmd(&pgbench, cfg)
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
    for (table, _) in COPIES {
        client
            .batch_execute(&format!(
                "CREATE TABLE {table} AS SELECT aid, bid, abalance, filler FROM pgbench_accounts;
                 ALTER TABLE {table} ADD PRIMARY KEY (aid), ADD COLUMN abalance_cents bigint;"
            ))
            .await?;
    }
    client
        .batch_execute(
            "ALTER TABLE pgbench_accounts ADD COLUMN abalance_cents bigint;
             CREATE FUNCTION bench_dual_write() RETURNS trigger LANGUAGE plpgsql AS $$
             BEGIN NEW.abalance_cents := NEW.abalance::bigint * 100; RETURN NEW; END $$;
             CREATE TRIGGER bench_dual_write BEFORE INSERT OR UPDATE OF abalance
                 ON pgbench_accounts FOR EACH ROW EXECUTE FUNCTION bench_dual_write();",
        )
        .await?;
    // VACUUM refuses a transaction block: one statement per call. Then warm every copy alike.
    for (table, _) in COPIES {
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
    for (table, is_backfill) in COPIES {
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

    // (c) pgbench at a fixed rate: without a backfill (before and after), and during one with
    // the default throttle on the table pgbench writes to.
    eprintln!(
        "(c) pgbench baseline (before), {}s at {RATE} tps…",
        BASELINE.as_secs()
    );
    run_load(&pgbench, cfg, &logs.path().join("base1"), BASELINE).await?;
    eprintln!("(c) pgbench during the backfill…");
    let conc_prefix = logs.path().join("conc");
    let mut load = spawn_load(&pgbench, cfg, &conc_prefix, Duration::from_secs(900))?;
    tokio::time::sleep(Duration::from_secs(3)).await;
    let plan_c = bench_plan(&client, "bench-under-load", "pgbench_accounts", "").await?;
    let from = epoch_now();
    let t = Instant::now();
    let summary_c = run_backfill(cfg, &plan_c).await;
    let loaded = t.elapsed();
    let to = epoch_now();
    stop(&mut load).await;
    let summary_c = summary_c?;
    eprintln!(
        "(c) pgbench baseline (after), {}s at {RATE} tps…",
        BASELINE.as_secs()
    );
    run_load(&pgbench, cfg, &logs.path().join("base2"), BASELINE).await?;
    let base_lat = latencies(logs.path(), "base", None)?;
    let conc_lat = latencies(logs.path(), "conc", Some((from, to)))?;
    let stats_c =
        control::backfill::stats::chunk_summary(&client, &[plan_c.id().to_string()]).await?;
    let progress_c = backfill::progress(&client, &plan_c).await?;
    let wrong: i64 = client
        .query_one(
            "SELECT count(*) FROM pgbench_accounts \
             WHERE abalance_cents IS DISTINCT FROM abalance::bigint * 100",
            &[],
        )
        .await?
        .get(0);

    let rate = |n: u64, d: Duration| n as f64 / d.as_secs_f64().max(1e-9);
    let ratio_a = rate(chunked.1, chunked.0) / rate(single.1, single.0);
    let base_p95 = percentile(&base_lat, 0.95);
    let conc_p95 = percentile(&conc_lat, 0.95);
    let base_p99 = percentile(&base_lat, 0.99);
    let conc_p99 = percentile(&conc_lat, 0.99);
    let unthrottled_one = chunked.0.as_secs_f64() / 2.0;
    let verdict = |ok: bool| if ok { "MET" } else { "MISSED" };
    println!();
    println!(
        "cutover bench backfill — {rows} rows (pgbench_accounts, scale {SCALE}); target chunk time {TARGET_MS:.0} ms"
    );
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
    println!(
        "(c) pgbench -N -R {RATE} -c {CLIENTS} on pgbench_accounts (dual-write trigger on); latency guard reads {guard_signal}"
    );
    println!(
        "    without backfill (before + after)   p95 {:>6.2} ms  p99 {:>6.2} ms  ({} transactions, 2 × {}s)",
        base_p95,
        base_p99,
        base_lat.len(),
        BASELINE.as_secs()
    );
    println!(
        "    during backfill (default throttle)  p95 {:>6.2} ms  p99 {:>6.2} ms  ({} transactions, {:.1}s)",
        conc_p95,
        conc_p99,
        conc_lat.len(),
        loaded.as_secs_f64()
    );
    let ratio_95 = conc_p95 / base_p95.max(1e-9);
    let ratio_99 = conc_p99 / base_p99.max(1e-9);
    println!(
        "    p95 during / without = {ratio_95:.2}×   (target ≤ 1.25×: {})",
        verdict(ratio_95 <= 1.25)
    );
    println!(
        "    p99 during / without = {ratio_99:.2}×   (target ≤ 1.50×: {})",
        verdict(ratio_99 <= 1.5)
    );
    println!(
        "    the backfill under load: {} rows updated, {} keys in {:.2} s ({:.0} keys/s), {} chunks, p50 {:.0} ms, p99 {:.0} ms, throttled/yielded {:.1} s",
        summary_c.rows_updated,
        summary_c.rows_scanned,
        loaded.as_secs_f64(),
        rate(summary_c.rows_scanned, loaded),
        summary_c.chunks,
        stats_c.p50_ms,
        stats_c.p99_ms,
        progress_c.throttled_seconds
    );
    println!(
        "    under load it took {:.2} s vs {:.2} s unthrottled on an idle server ({:.1}× as long)",
        loaded.as_secs_f64(),
        unthrottled_one,
        loaded.as_secs_f64() / unthrottled_one.max(1e-9)
    );
    println!("    rows not equal to abalance × 100 afterwards: {wrong}");
    if wrong != 0 {
        bail!("{wrong} rows of pgbench_accounts are wrong after the backfill");
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
    let toml = format!(
        r#"
id = "{id}"
title = "bench"
rationale = "benchmark"
author = "cutover bench"
ticket = "BENCH"
[roster]
lead = ["postgres"]
[phases.expand]
rollback = ""
[phases.dual_write]
rollback = ""
[phases.backfill]
rollback = ""
[phases.read_switch]
rollback = ""
[phases.contract]
irreversible = true
[read_switch]
flag = "bench.flag"
[backfill]
table = "public.{table}"
key = ["aid"]
set = {{ abalance_cents = "abalance::bigint * 100" }}
pending = "abalance_cents IS NULL"
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

/// `pgbench` from the PostgreSQL binaries in use, else from `PATH`.
fn pgbench_path() -> PathBuf {
    throwaway::find_bindir()
        .map(|d| d.join("pgbench"))
        .ok()
        .filter(|p| p.exists())
        .unwrap_or_else(|| PathBuf::from("pgbench"))
}

/// A pgbench command connected through the libpq environment (the password never appears in
/// the process list).
fn pgbench_cmd(pgbench: &Path, cfg: &DbConfig) -> Command {
    let mut cmd = Command::new(pgbench);
    cmd.envs(cfg.libpq_env());
    cmd.stdin(Stdio::null());
    cmd
}

fn spawn_load(
    pgbench: &Path,
    cfg: &DbConfig,
    prefix: &Path,
    length: Duration,
) -> anyhow::Result<Child> {
    let mut cmd = pgbench_cmd(pgbench, cfg);
    cmd.args([
        "-n",
        "-N",
        "-R",
        &RATE.to_string(),
        "-c",
        &CLIENTS.to_string(),
        "-j",
        "2",
        "-T",
        &length.as_secs().to_string(),
        "-l",
    ])
    .arg(format!("--log-prefix={}", prefix.display()))
    .stdout(Stdio::null())
    .stderr(Stdio::null())
    .kill_on_drop(true);
    Ok(cmd.spawn()?)
}

/// Runs pgbench for `length` and waits for it.
async fn run_load(
    pgbench: &Path,
    cfg: &DbConfig,
    prefix: &Path,
    length: Duration,
) -> anyhow::Result<()> {
    let status = spawn_load(pgbench, cfg, prefix, length)?.wait().await?;
    if !status.success() {
        bail!("pgbench (baseline) failed ({status})");
    }
    Ok(())
}

/// Ends a long pgbench run (its per-transaction logs are read afterwards).
async fn stop(child: &mut Child) {
    if let Some(pid) = child.id() {
        let _ = nix::sys::signal::kill(
            nix::unistd::Pid::from_raw(pid as i32),
            nix::sys::signal::Signal::SIGINT,
        );
    }
    if tokio::time::timeout(Duration::from_secs(10), child.wait())
        .await
        .is_err()
    {
        let _ = child.kill().await;
    }
}

fn epoch_now() -> f64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs_f64())
        .unwrap_or_default()
}

/// Transaction latencies (ms) from pgbench's per-transaction logs
/// (`client txn time_us script epoch_s epoch_us [lag_us]`), optionally only those that ended
/// inside `window` (epoch seconds).
fn latencies(dir: &Path, prefix: &str, window: Option<(f64, f64)>) -> anyhow::Result<Vec<f64>> {
    let mut out = Vec::new();
    for entry in std::fs::read_dir(dir)? {
        let entry = entry?;
        if !entry.file_name().to_string_lossy().starts_with(prefix) {
            continue;
        }
        let text = std::fs::read_to_string(entry.path())?;
        for line in text.lines() {
            let f: Vec<&str> = line.split_whitespace().collect();
            if f.len() < 6 {
                continue;
            }
            let (Ok(us), Ok(s), Ok(sus)) = (
                f[2].parse::<f64>(),
                f[4].parse::<f64>(),
                f[5].parse::<f64>(),
            ) else {
                continue;
            };
            let end = s + sus / 1e6;
            if window.is_none_or(|(a, b)| end >= a && end <= b) {
                out.push(us / 1000.0);
            }
        }
    }
    if out.is_empty() {
        bail!("pgbench logged no transactions under {}", dir.display());
    }
    Ok(out)
}

/// The `q` quantile (nearest rank).
fn percentile(values: &[f64], q: f64) -> f64 {
    let mut v = values.to_vec();
    v.sort_by(|a, b| a.total_cmp(b));
    if v.is_empty() {
        return 0.0;
    }
    let rank = ((q * v.len() as f64).ceil() as usize).clamp(1, v.len());
    v[rank - 1]
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn nearest_rank_percentile() {
        let v: Vec<f64> = (1..=100).map(f64::from).collect();
        assert_eq!(percentile(&v, 0.95), 95.0);
        assert_eq!(percentile(&v, 0.5), 50.0);
        assert_eq!(percentile(&[3.0], 0.99), 3.0);
    }
}
