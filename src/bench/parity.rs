//! `cutover bench parity`: the exact diff vs one full-scan hash query over both tables.
//!
//! Two tables of `ROWS` rows (a key, ints, a nullable int, text, numeric, timestamp) identical
//! but for planted differences; the benchmark times, alternately in one run, the exact diff
//! ([`crate::checks::diff::compare`]) and the single query hashing every row of both tables (the
//! least any verification must read), and checks that exactly the planted keys were found.

use std::process::ExitCode;
use std::time::{Duration, Instant};

use anyhow::Context as _;
use tokio_postgres::Client;

use crate::checks::diff::{self, DiffReport, DiffSpec};
use crate::checks::RunOptions;
use crate::db::{self, DbConfig, SessionSettings};
use crate::exit;
use crate::sql::quote_ident;

/// Rows per table in the benchmark.
pub const ROWS: i64 = 1_000_000;
/// Ratio the exact diff must stay within, against the single full scan.
pub const TARGET_RATIO: f64 = 1.5;
/// Timed rounds (the median is reported).
const ROUNDS: usize = 5;

/// The compared columns of the generated tables (besides the key `id`).
pub const COLUMNS: [&str; 6] = ["a", "b", "maybe", "label", "amount", "at"];

/// The keys where the generated target differs from the source.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Planted {
    /// Keys deleted from the target.
    pub missing: Vec<String>,
    /// Keys only in the target.
    pub extra: Vec<String>,
    /// Keys whose values differ, with the changed column.
    pub changed: Vec<(String, &'static str)>,
}

impl Planted {
    /// Number of planted differences.
    pub fn len(&self) -> usize {
        self.missing.len() + self.extra.len() + self.changed.len()
    }

    /// True when nothing was planted.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// True when `report` found exactly these keys (and columns), nothing more.
    pub fn matches(&self, report: &DiffReport) -> bool {
        let sorted = |v: &[String]| {
            let mut v = v.to_vec();
            v.sort();
            v
        };
        let mut want_changed: Vec<(String, String)> = self
            .changed
            .iter()
            .map(|(k, c)| (k.clone(), c.to_string()))
            .collect();
        want_changed.sort();
        let mut got_changed: Vec<(String, String)> = report
            .changed
            .iter()
            .flat_map(|c| {
                c.columns
                    .iter()
                    .map(|col| (c.key.clone(), col.column.clone()))
            })
            .collect();
        got_changed.sort();
        sorted(&self.missing) == sorted(&report.missing)
            && sorted(&self.extra) == sorted(&report.extra)
            && want_changed == got_changed
            && report.duplicate_keys.is_empty()
            && report.null_keys == (0, 0)
    }
}

/// The [`DiffSpec`] comparing the two generated tables.
pub fn spec(source: &str, target: &str) -> DiffSpec {
    DiffSpec {
        source: source.to_string(),
        target: target.to_string(),
        key: vec!["id".into()],
        target_key: vec![],
        columns: COLUMNS.iter().map(|c| c.to_string()).collect(),
        target_columns: vec![],
    }
}

/// Creates `source` with `rows` rows (keys `3, 6, 9, …`, leaving gaps for extra rows), copies
/// it to `target`, then plants 13 differences in `target`: seven changed values (an int, a
/// bigint, a value→NULL and a NULL→value change, text, numeric, a one-microsecond timestamp
/// shift), three missing rows (including the first and last key) and three extra rows (two
/// inside the key span, one beyond it). Needs `rows >= 100`.
pub async fn create_tables(
    client: &Client,
    source: &str,
    target: &str,
    rows: i64,
) -> anyhow::Result<Planted> {
    anyhow::ensure!(rows >= 100, "the parity tables need at least 100 rows");
    let (s, t) = (quote_ident(source), quote_ident(target));
    client
        .batch_execute(&format!(
            "CREATE TABLE {s} (
                 id     bigint PRIMARY KEY,
                 a      integer NOT NULL,
                 b      bigint NOT NULL,
                 maybe  integer,
                 label  text NOT NULL,
                 amount numeric(14,2) NOT NULL,
                 at     timestamptz NOT NULL
             );
             INSERT INTO {s}
             SELECT 3 * g::bigint, g % 1000, g::bigint * 7919, CASE WHEN g % 10 = 0 THEN NULL ELSE g % 97 END,
                    'label-' || md5(g::text), round((g * 1.37)::numeric, 2),
                    timestamptz '2025-01-01 00:00:00+00' + g * interval '37 seconds'
               FROM generate_series(1, {rows}) AS g;
             CREATE TABLE {t} (LIKE {s} INCLUDING ALL);
             INSERT INTO {t} SELECT * FROM {s} ORDER BY id;"
        ))
        .await
        .context("creating the parity tables")?;
    // Keys at fixed fractions of the table; g % 10 = 0 rows have maybe = NULL.
    let key_at = |fraction: f64, null_maybe: bool| {
        let mut g = ((rows as f64) * fraction) as i64;
        g = g.clamp(1, rows);
        if null_maybe {
            g = (g / 10).max(1) * 10;
        } else if g % 10 == 0 {
            g += 1;
        }
        3 * g.min(rows)
    };
    let changes: [(i64, &'static str, &str); 7] = [
        (key_at(0.05, false), "a", "a = a + 1"),
        (key_at(0.13, false), "b", "b = -b"),
        (key_at(0.21, false), "maybe", "maybe = NULL"),
        (key_at(0.34, true), "maybe", "maybe = 42"),
        (key_at(0.42, false), "label", "label = label || ' '"),
        (key_at(0.55, false), "amount", "amount = amount + 0.01"),
        (
            key_at(0.63, false),
            "at",
            "at = at + interval '1 microsecond'",
        ),
    ];
    let mut planted = Planted::default();
    let mut sql = String::new();
    for (id, column, set) in changes {
        sql.push_str(&format!("UPDATE {t} SET {set} WHERE id = {id};\n"));
        planted.changed.push((id.to_string(), column));
    }
    for id in [3, key_at(0.5, false), 3 * rows] {
        sql.push_str(&format!("DELETE FROM {t} WHERE id = {id};\n"));
        planted.missing.push(id.to_string());
    }
    for id in [
        key_at(0.27, false) + 1,
        key_at(0.81, false) + 2,
        3 * rows + 100,
    ] {
        sql.push_str(&format!(
            "INSERT INTO {t} VALUES ({id}, 1, 2, NULL, 'extra', 3.00, '2026-01-01 00:00+00');\n"
        ));
        planted.extra.push(id.to_string());
    }
    client
        .batch_execute(&sql)
        .await
        .context("planting differences")?;
    for table in [&s, &t] {
        client
            .batch_execute(&format!("VACUUM ANALYZE {table}"))
            .await
            .context("vacuuming the parity tables")?;
    }
    Ok(planted)
}

/// The single query hashing every row of both tables: the lower bound of any verification.
pub async fn full_scan_hash(client: &Client, source: &str, target: &str) -> anyhow::Result<()> {
    let cols = format!("id, {}", COLUMNS.join(", "));
    let sql = format!(
        "SELECT count(*), sum(h)::text FROM (
             SELECT hash_record_extended(ROW({cols}), 0) AS h FROM {s}
             UNION ALL
             SELECT hash_record_extended(ROW({cols}), 0) AS h FROM {t}) AS both_sides",
        s = quote_ident(source),
        t = quote_ident(target)
    );
    client.query_one(&sql, &[]).await?;
    Ok(())
}

/// Runs the parity benchmark.
pub async fn run(server: Option<DbConfig>) -> anyhow::Result<ExitCode> {
    let (cluster, server) = match server {
        Some(cfg) => (None, cfg),
        None => {
            println!("no DATABASE_URL: starting a throwaway PostgreSQL cluster");
            let cluster = crate::throwaway::ThrowawayCluster::start().await?;
            let cfg = DbConfig::from_url(&cluster.url())?;
            (Some(cluster), cfg)
        }
    };
    let name = format!("cutover_bench_parity_{:08x}", rand::random::<u32>());
    let admin = db::connect(&server, &SessionSettings::new("bench-parity")).await?;
    admin
        .batch_execute(&format!("CREATE DATABASE {}", quote_ident(&name)))
        .await?;
    let result = bench(&server.with_dbname(&name)).await;
    if let Err(e) = admin
        .batch_execute(&format!(
            "DROP DATABASE IF EXISTS {} WITH (FORCE)",
            quote_ident(&name)
        ))
        .await
    {
        eprintln!("warning: could not drop {name}: {}", db::describe_error(&e));
    }
    drop(cluster);
    result
}

#[expect(clippy::too_many_lines, reason = "the bench helper splits this")]
async fn bench(cfg: &DbConfig) -> anyhow::Result<ExitCode> {
    let mut session = SessionSettings::new("bench-parity");
    session.statement_timeout = Duration::from_secs(600);
    let client = db::connect(cfg, &session).await?;
    println!("database: {}", cfg.display());
    let clock = Instant::now();
    let planted = create_tables(&client, "parity_source", "parity_target", ROWS).await?;
    println!(
        "generated 2 × {ROWS} rows with {} planted differences in {:.1}s",
        planted.len(),
        clock.elapsed().as_secs_f64()
    );
    let spec = spec("parity_source", "parity_target");
    let one = RunOptions::default();
    let two = RunOptions {
        second_connection: Some(cfg.clone()),
        ..RunOptions::default()
    };
    // Warm both tables into the cache, then time the variants alternately.
    full_scan_hash(&client, "parity_source", "parity_target").await?;
    let (mut serial, mut parallel, mut diff1, mut diff2) = (vec![], vec![], vec![], vec![]);
    let mut reports = (DiffReport::default(), DiffReport::default());
    for _ in 0..ROUNDS {
        client
            .batch_execute("SET max_parallel_workers_per_gather = 0")
            .await?;
        let t = Instant::now();
        full_scan_hash(&client, "parity_source", "parity_target").await?;
        serial.push(t.elapsed());
        client
            .batch_execute("RESET max_parallel_workers_per_gather")
            .await?;
        let t = Instant::now();
        full_scan_hash(&client, "parity_source", "parity_target").await?;
        parallel.push(t.elapsed());
        let t = Instant::now();
        reports.0 = diff::compare(&client, &spec, &one).await?;
        diff1.push(t.elapsed());
        let t = Instant::now();
        reports.1 = diff::compare(&client, &spec, &two).await?;
        diff2.push(t.elapsed());
    }
    let (serial, parallel) = (median(serial), median(parallel));
    let (diff1, diff2) = (median(diff1), median(diff2));
    let ratio1 = diff1.as_secs_f64() / serial.as_secs_f64();
    let ratio2 = diff2.as_secs_f64() / parallel.as_secs_f64();
    let found = planted.matches(&reports.0) && planted.matches(&reports.1);
    let verdict = |r: f64| if r <= TARGET_RATIO { "OK" } else { "OVER" };
    let r = &reports.0;
    println!();
    println!("median of {ROUNDS} alternating rounds; every variant reads all 2 × {ROWS} rows:");
    println!(
        "  A  one full-scan hash query over both tables, serial         {:>7.0} ms",
        ms(serial)
    );
    println!(
        "  B  the same query with parallel workers (PostgreSQL default) {:>7.0} ms",
        ms(parallel)
    );
    println!(
        "  C  exact diff, one connection                                {:>7.0} ms   {} chunks, {} differing ranges bisected in {:.0} ms, {} rows fetched",
        ms(diff1),
        r.chunks,
        r.ranges_differing,
        r.bisect_ms,
        r.rows_fetched
    );
    println!(
        "  D  exact diff, source and target on two connections          {:>7.0} ms",
        ms(diff2)
    );
    println!(
        "  C / A  (one backend each)      {ratio1:>5.2}×   target ≤ {TARGET_RATIO}×  {}",
        verdict(ratio1)
    );
    println!(
        "  D / B  (several backends each) {ratio2:>5.2}×   target ≤ {TARGET_RATIO}×  {}",
        verdict(ratio2)
    );
    println!(
        "  D / A                          {:>5.2}×",
        diff2.as_secs_f64() / serial.as_secs_f64()
    );
    println!(
        "  planted: {} missing, {} extra, {} changed; found: {} missing, {} extra, {} changed → {}",
        planted.missing.len(),
        planted.extra.len(),
        planted.changed.len(),
        r.missing.len(),
        r.extra.len(),
        r.changed.len(),
        if found {
            "exactly the planted keys (both variants)"
        } else {
            "MISMATCH"
        }
    );
    if !found {
        println!("  planted: {planted:?}");
        println!("  found (one connection): {:?}", reports.0);
        println!("  found (two connections): {:?}", reports.1);
    }
    Ok(ExitCode::from(
        if found && ratio1 <= TARGET_RATIO && ratio2 <= TARGET_RATIO {
            exit::OK
        } else {
            exit::BLOCKED
        },
    ))
}

fn median(mut v: Vec<Duration>) -> Duration {
    v.sort();
    v.get(v.len() / 2).copied().unwrap_or_default()
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1000.0
}
