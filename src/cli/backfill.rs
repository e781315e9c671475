//! Backfill commands: run, pause, resume, stop, tune.

use std::path::PathBuf;
use std::process::ExitCode;

use clap::Subcommand;

use super::Context;

/// Backfill commands.
#[derive(Debug, Subcommand)]
pub enum Command {
    /// Run (or resume) the backfill of a plan in this process.
    #[command(name = "backfill")]
    Backfill {
        /// Plan file.
        plan: PathBuf,
    },
}

/// Runs a backfill command.
pub async fn run(cmd: Command, _ctx: &Context) -> anyhow::Result<ExitCode> {
    match cmd {
        Command::Backfill { .. } => anyhow::bail!("`backfill` is not implemented yet"),
    }
}
