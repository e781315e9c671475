//! Readiness-evidence commands: runbook (and lint output inside `validate`).

use std::path::PathBuf;
use std::process::ExitCode;

use clap::Subcommand;

use super::Context;

/// Evidence commands.
#[derive(Debug, Subcommand)]
pub enum Command {
    /// Print the Markdown runbook generated from the plan and the live state.
    Runbook {
        /// Plan file.
        plan: PathBuf,
    },
}

/// Runs an evidence command.
pub async fn run(cmd: Command, _ctx: &Context) -> anyhow::Result<ExitCode> {
    match cmd {
        Command::Runbook { .. } => anyhow::bail!("`runbook` is not implemented yet"),
    }
}
