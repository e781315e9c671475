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
    },
}

/// The benchmarks.
#[derive(Debug, Clone, Copy, ValueEnum)]
pub enum BenchKind {
    /// Backfill throughput, chunk-time percentiles and latency impact.
    Backfill,
    /// Exact diff vs a single full-scan hash query.
    Parity,
}

/// Runs a benchmark.
pub(super) async fn run(cmd: Command, ctx: &Context) -> anyhow::Result<ExitCode> {
    let Command::Bench { what } = cmd;
    match what {
        BenchKind::Backfill => crate::bench::backfill::run(ctx.db_config_opt()?).await,
        BenchKind::Parity => crate::bench::parity::run(ctx.db_config_opt()?).await,
    }
}
