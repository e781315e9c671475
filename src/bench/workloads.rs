//! Part (c) of `cutover bench backfill`: the application's p95 and p99 latency during a
//! default-throttled backfill vs before it, for three pgbench workloads on the same table —
//! pgbench's default TPC-B-like script, its simple-update script (`-N`), and a skewed mix
//! (zipfian-hot accounts, two reads and a short range read per write). Each workload runs at a
//! fixed rate from [`BEFORE`] before its backfill until [`AFTER`] after it, in one pgbench
//! process; each backfills its own column, so that every workload meets the same data.

use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::{Duration, Instant};

use anyhow::{bail, Context as _};
use tokio::process::{Child, Command};
use tokio_postgres::Client;

use crate::backfill::{self, RunOptions, RunOutcome};
use crate::control;
use crate::db::DbConfig;
use crate::plan::Plan;

use super::host::epoch_now;

/// Fixed transaction rate of the load (transactions per second).
pub const RATE: u32 = 200;
/// pgbench clients.
pub const CLIENTS: u32 = 4;
/// Load before each backfill: the reference of the targets. 12 s (about 2,000 transactions)
/// gave TPC-B "before" p95s of 2.1–3.2 ms in four runs of the same workload, a spread as large
/// as the budget; 30 s, as in the issue's own runs, steadies it.
const BEFORE: Duration = Duration::from_secs(30);
/// Quiet time after the checkpoint that precedes each workload.
const SETTLE: Duration = Duration::from_secs(3);
/// Load after each backfill.
const AFTER: Duration = Duration::from_secs(10);
/// A backfill under load still running after this is stopped (and reported unfinished).
const GIVE_UP: Duration = Duration::from_secs(480);

/// A workload's name on the command line.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum WorkloadName {
    /// pgbench's default TPC-B-like script.
    Tpcb,
    /// pgbench -N.
    Simple,
    /// The skewed read-write mix.
    Skewed,
}

/// One workload.
#[derive(Debug, Clone, Copy)]
pub struct Workload {
    /// Which.
    pub id: WorkloadName,
    /// Short name (also the suffix of its backfilled column).
    pub name: &'static str,
    /// What it runs.
    pub label: &'static str,
    /// pgbench arguments selecting the script (`None`: the skewed script file).
    pub builtin: Option<&'static str>,
}

/// The three workloads, in the order they run.
pub const WORKLOADS: [Workload; 3] = [
    Workload {
        id: WorkloadName::Tpcb,
        name: "tpcb",
        label: "pgbench default (TPC-B-like)",
        builtin: Some("tpcb-like"),
    },
    Workload {
        id: WorkloadName::Simple,
        name: "simple",
        label: "pgbench -N (simple update)",
        builtin: Some("simple-update"),
    },
    Workload {
        id: WorkloadName::Skewed,
        name: "skewed",
        label: "skewed: zipfian accounts, 2 reads + range read per write",
        builtin: None,
    },
];

/// The skewed read-write script (`rows` accounts).
pub fn skewed_script(rows: u64) -> String {
    format!(
        "\\set aid random_zipfian(1, {rows}, 1.1)\n\
         \\set other random_zipfian(1, {rows}, 1.1)\n\
         \\set delta random(-5000, 5000)\n\
         BEGIN;\n\
         SELECT abalance FROM pgbench_accounts WHERE aid = :aid;\n\
         SELECT abalance FROM pgbench_accounts WHERE aid = :other;\n\
         SELECT sum(abalance) FROM pgbench_accounts WHERE aid BETWEEN :aid AND :aid + 20;\n\
         UPDATE pgbench_accounts SET abalance = abalance + :delta WHERE aid = :aid;\n\
         END;\n"
    )
}

/// What one workload measured.
#[derive(Debug, Clone)]
pub struct Measured {
    /// The workload.
    pub workload: Workload,
    /// Latencies (ms) before the backfill (the reference of the targets).
    pub before: Vec<f64>,
    /// Latencies (ms) after it (the checkpoint writing its pages back falls here).
    pub after: Vec<f64>,
    /// Latencies (ms) during it.
    pub during: Vec<f64>,
    /// How long the backfill took under load.
    pub took: Duration,
    /// It finished (within [`GIVE_UP`]).
    pub finished: bool,
    /// Keys covered.
    pub keys: u64,
    /// WAL written per key (bytes, upper bound).
    pub wal_per_row: Option<f64>,
    /// The most WAL one chunk wrote (bytes).
    pub max_chunk_wal: Option<i64>,
    /// How much of the time chunks ran, against what finishing needed ([`ChunkPace`]).
    pub pace: ChunkPace,
    /// Time held per signal (seconds, from the guard's readings: pause share per reading).
    pub held: Vec<(String, f64)>,
    /// Time throttled or yielded in total (s), as the state row counts it.
    pub throttled: f64,
    /// Rows of the column set to something else than abalance × 100 afterwards.
    pub wrong: i64,
    /// Rows of the column not set afterwards (a backfill that did not finish).
    pub unset: i64,
    /// What the server wrote back during the backfill ([`super::host::Writes::since`]).
    pub written: String,
    /// The run second by second, from the load's start to its end ([`super::timeline`]).
    pub timeline: Vec<String>,
}

/// How much of a run chunks took, and how much finishing within [`GIVE_UP`] needed at the rate
/// they ran: when the second is larger than the first, the guard kept the application's budget
/// at the cost of finishing.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct ChunkPace {
    /// Time inside chunks (ms).
    pub chunk_ms: f64,
    /// Keys the chunks covered.
    pub chunk_rows: f64,
    /// How long the run took (ms).
    pub run_ms: f64,
    /// Keys the backfill had to cover in all.
    pub total_rows: f64,
}

impl ChunkPace {
    /// The chunks of plan `plan_id` in a run that took `run` and had `total_rows` to cover.
    async fn read(
        client: &Client,
        plan_id: &str,
        run: Duration,
        total_rows: f64,
    ) -> Result<ChunkPace, tokio_postgres::Error> {
        let chunks = client
            .query_one(
                "SELECT coalesce(sum(duration_ms), 0)::float8 AS ms, \
                 coalesce(sum(rows_scanned), 0)::float8 AS rows \
                 FROM cutover.backfill_chunks WHERE plan_id = $1",
                &[&plan_id],
            )
            .await?;
        Ok(ChunkPace {
            chunk_ms: chunks.try_get("ms")?,
            chunk_rows: chunks.try_get("rows")?,
            run_ms: run.as_secs_f64() * 1000.0,
            total_rows,
        })
    }

    /// `chunks ran 3.1 % of the time at 72 rows/ms; all 2000000 rows within 480 s need 5.8 %`.
    pub fn describe(&self) -> String {
        if self.chunk_ms <= 0.0 || self.run_ms <= 0.0 {
            return "no chunk ran".to_string();
        }
        let rate = self.chunk_rows / self.chunk_ms;
        let needed = self.total_rows / rate.max(1e-9) / GIVE_UP.as_millis() as f64;
        format!(
            "chunks ran {:.1} % of the time at {rate:.0} rows/ms; all {:.0} rows within {} s need {:.1} %",
            100.0 * self.chunk_ms / self.run_ms,
            self.total_rows,
            GIVE_UP.as_secs(),
            100.0 * needed
        )
    }
}

/// The column workload `w` backfills.
pub fn column(w: &Workload) -> String {
    format!("abalance_cents_{}", w.name)
}

/// Runs workload `w`: load before, a default-throttled backfill of its column under load, load
/// after.
pub async fn measure(
    client: &Client,
    cfg: &DbConfig,
    pgbench: &Path,
    logs: &Path,
    w: Workload,
    plan: Plan,
) -> anyhow::Result<Measured> {
    // Each workload starts from a clean slate: the previous backfill's dead rows vacuumed and
    // its dirty pages written by a checkpoint, so that "before" is not its aftermath.
    client
        .batch_execute("VACUUM ANALYZE pgbench_accounts")
        .await?;
    client.batch_execute("CHECKPOINT").await?;
    tokio::time::sleep(SETTLE).await;
    let prefix = logs.join(w.name);
    let mut load = spawn_load(pgbench, cfg, logs, &prefix, w, Duration::from_secs(900))?;
    let dirty = super::host::DirtySampler::start();
    let t0 = epoch_now();
    tokio::time::sleep(BEFORE).await;
    let from = epoch_now();
    let started = Instant::now();
    let writes_from = super::host::Writes::read(client).await?;
    let (tx, rx) = tokio::sync::watch::channel(false);
    let run = tokio::spawn(backfill::run(
        cfg.clone(),
        plan.clone(),
        RunOptions::default(),
        rx,
    ));
    let run = tokio::time::timeout(GIVE_UP, run).await;
    let finished = match run {
        Ok(joined) => joined??.outcome == RunOutcome::Done,
        Err(_) => {
            let _ = tx.send(true);
            false
        }
    };
    let took = started.elapsed();
    let to = epoch_now();
    let written = super::host::Writes::read(client).await?.since(&writes_from);
    tokio::time::sleep(AFTER).await;
    let t3 = epoch_now();
    stop(&mut load).await;
    let dirty = dirty.finish().await;
    let all = latencies(logs, w.name)?;
    let pick = |a: f64, b: f64| -> Vec<f64> {
        all.iter()
            .filter(|(end, _)| *end >= a && *end <= b)
            .map(|(_, ms)| *ms)
            .collect()
    };
    let before = pick(t0 + 2.0, from);
    let after = pick(to + 2.0, t3);
    let during = pick(from, to);
    let progress = backfill::progress(client, &plan).await?;
    let (wal, wal_rows, max_wal) =
        control::backfill::guard::wal_per_chunk(client, plan.id()).await?;
    let held = client
        .query(
            "SELECT signal, sum(pause / (1 + pause))::float8 AS s FROM cutover.backfill_guard \
             WHERE plan_id = $1 AND pause > 0 GROUP BY signal ORDER BY 2 DESC",
            &[&plan.id()],
        )
        .await?
        .iter()
        .map(|r| (r.get::<_, String>("signal"), r.get::<_, f64>("s")))
        .collect();
    let col = column(&w);
    let row = client
        .query_one(
            &format!(
                "SELECT count(*) FILTER (WHERE {col} <> abalance::bigint * 100) AS wrong, \
                 count(*) FILTER (WHERE {col} IS NULL) AS unset, count(*) AS rows \
                 FROM pgbench_accounts"
            ),
            &[],
        )
        .await?;
    let (wrong, unset): (i64, i64) = (row.try_get("wrong")?, row.try_get("unset")?);
    let total: i64 = row.try_get("rows")?;
    let pace = ChunkPace::read(client, plan.id(), took, total as f64).await?;
    Ok(Measured {
        workload: w,
        before,
        after,
        during,
        took,
        finished,
        keys: progress.rows_done.max(0) as u64,
        wal_per_row: (wal_rows > 0).then(|| wal as f64 / wal_rows as f64),
        max_chunk_wal: (wal_rows > 0).then_some(max_wal),
        pace,
        held,
        throttled: progress.throttled_seconds,
        wrong,
        unset,
        written,
        timeline: super::timeline::lines(client, plan.id(), &all, &dirty, t0, t3).await?,
    })
}

/// `pgbench` from the PostgreSQL binaries in use, else from `PATH`.
pub fn pgbench_path() -> PathBuf {
    crate::throwaway::find_bindir()
        .map(|d| d.join("pgbench"))
        .ok()
        .filter(|p| p.exists())
        .unwrap_or_else(|| PathBuf::from("pgbench"))
}

/// A pgbench command connected through the libpq environment (the password never appears in
/// the process list).
pub fn pgbench_cmd(pgbench: &Path, cfg: &DbConfig) -> Command {
    let mut cmd = Command::new(pgbench);
    cmd.envs(cfg.libpq_env());
    cmd.stdin(Stdio::null());
    cmd
}

fn spawn_load(
    pgbench: &Path,
    cfg: &DbConfig,
    logs: &Path,
    prefix: &Path,
    w: Workload,
    length: Duration,
) -> anyhow::Result<Child> {
    let mut cmd = pgbench_cmd(pgbench, cfg);
    cmd.arg("-n");
    match w.builtin {
        Some(b) => {
            cmd.args(["-b", b]);
        }
        None => {
            cmd.arg("-f").arg(logs.join("skewed.sql"));
        }
    }
    cmd.args([
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
    cmd.spawn()
        .with_context(|| format!("running {}", pgbench.display()))
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

/// (end epoch s, latency ms) of every transaction in pgbench's per-transaction logs under
/// `dir` whose name starts with `prefix` (`client txn time_us script epoch_s epoch_us [lag]`).
fn latencies(dir: &Path, prefix: &str) -> anyhow::Result<Vec<(f64, f64)>> {
    let mut out = Vec::new();
    for entry in std::fs::read_dir(dir)? {
        let entry = entry?;
        if !entry.file_name().to_string_lossy().starts_with(prefix)
            || entry.file_name().to_string_lossy().ends_with(".sql")
        {
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
            out.push((s + sus / 1e6, us / 1000.0));
        }
    }
    if out.is_empty() {
        bail!("pgbench logged no transactions under {}", dir.display());
    }
    Ok(out)
}

/// The `q` quantile (nearest rank); 0 when empty.
pub fn percentile(values: &[f64], q: f64) -> f64 {
    crate::backfill::tail::quantile(values.iter().copied(), q).unwrap_or(0.0)
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

    #[test]
    fn the_pace_says_what_finishing_needed() {
        // 14.4 s of chunks covering 1,036,800 keys in 480 s; 2,000,000 to cover.
        let p = ChunkPace {
            chunk_ms: 14_400.0,
            chunk_rows: 1_036_800.0,
            run_ms: 480_000.0,
            total_rows: 2_000_000.0,
        };
        assert_eq!(
            p.describe(),
            "chunks ran 3.0 % of the time at 72 rows/ms; all 2000000 rows within 480 s need 5.8 %"
        );
        let none = ChunkPace { chunk_ms: 0.0, ..p };
        assert_eq!(none.describe(), "no chunk ran");
    }

    #[test]
    fn the_skewed_script_reads_twice_and_a_range_per_write() {
        let s = skewed_script(2_000_000);
        assert_eq!(s.matches("random_zipfian(1, 2000000, 1.1)").count(), 2);
        assert_eq!(s.matches("SELECT").count(), 3);
        assert_eq!(s.matches("UPDATE").count(), 1);
    }
}
