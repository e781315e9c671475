//! `cutover bench backfill`.

/// Runs the backfill benchmark.
pub async fn run(_ctx: &crate::cli::Context) -> anyhow::Result<std::process::ExitCode> {
    anyhow::bail!("the backfill benchmark is not implemented yet")
}
