//! Phase-engine commands: status, advance, signoff, override, rollback, rehearse, flag, note, report, audit.

use std::path::PathBuf;
use std::process::ExitCode;

use clap::Subcommand;

use super::Context;

/// Engine commands.
#[derive(Debug, Subcommand)]
pub enum Command {
    /// Show the migration's phase, gate and backfill state.
    Status {
        /// Plan file.
        plan: PathBuf,
        /// Machine-readable output.
        #[arg(long)]
        json: bool,
    },
}

/// Runs an engine command.
pub async fn run(cmd: Command, _ctx: &Context) -> anyhow::Result<ExitCode> {
    match cmd {
        Command::Status { .. } => anyhow::bail!("`status` is not implemented yet"),
    }
}
