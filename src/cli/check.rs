//! `cutover check`: run data checks and export their results.

use std::path::PathBuf;
use std::process::ExitCode;

use clap::Subcommand;

use super::Context;

/// Check commands.
#[derive(Debug, Subcommand)]
pub enum Command {
    /// Run the plan's checks (or one) and print/export the results.
    Check {
        /// Plan file.
        plan: PathBuf,
        /// Only this check.
        #[arg(long)]
        name: Option<String>,
        /// JSON output.
        #[arg(long)]
        json: bool,
    },
}

/// Runs a check command.
pub async fn run(cmd: Command, _ctx: &Context) -> anyhow::Result<ExitCode> {
    match cmd {
        Command::Check { .. } => anyhow::bail!("`check` is not implemented yet"),
    }
}
