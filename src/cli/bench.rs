//! `cutover bench backfill|parity`.

use std::process::ExitCode;

use clap::{Subcommand, ValueEnum};

use super::Context;

/// Benchmark commands.
#[derive(Debug, Subcommand)]
pub enum Command {
    /// Run a benchmark on a throwaway cluster (or DATABASE_URL) and print measured ratios.
    Bench {
        /// Which benchmark.
        what: BenchKind,
        /// `backfill` only: run part (c) for these workloads alone (repeatable), skipping the
        /// throughput part and `patterns` — for studying one workload; the full run is the
        /// benchmark.
        #[arg(long = "workload", value_enum)]
        workloads: Vec<crate::bench::workloads::WorkloadName>,
        /// `backfill` only: also print each workload's run second by second (the application's
        /// p95, the chunks' share of the time, the guard's reading).
        #[arg(long)]
        timeline: bool,
    },
}

/// The benchmarks.
#[derive(Debug, Clone, Copy, ValueEnum)]
pub enum BenchKind {
    /// Backfill throughput, chunk-time percentiles and latency impact, then `patterns`.
    Backfill,
    /// Exact diff vs a single full-scan hash query.
    Parity,
    /// Copy mode vs no-op UPDATE (time, WAL); write latency with trigger, CDC or no dual-write.
    Patterns,
}

/// Runs a benchmark.
pub(super) async fn run(cmd: Command, ctx: &Context) -> anyhow::Result<ExitCode> {
    let Command::Bench {
        what,
        workloads,
        timeline,
    } = cmd;
    match what {
        BenchKind::Backfill => {
            let only = !workloads.is_empty();
            let code =
                crate::bench::backfill::run(ctx.db_config_opt()?, &workloads, timeline).await?;
            if only || code != ExitCode::from(crate::exit::OK) {
                return Ok(code);
            }
            crate::bench::patterns::run().await
        }
        BenchKind::Patterns => crate::bench::patterns::run().await,
        BenchKind::Parity => crate::bench::parity::run(ctx.db_config_opt()?).await,
    }
}
