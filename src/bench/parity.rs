//! `cutover bench parity`.

/// Runs the parity benchmark.
pub async fn run(_ctx: &crate::cli::Context) -> anyhow::Result<std::process::ExitCode> {
    anyhow::bail!("the parity benchmark is not implemented yet")
}
