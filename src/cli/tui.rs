//! `cutover tui` and `cutover demo`.

use std::path::PathBuf;
use std::process::ExitCode;

use clap::Subcommand;

use super::Context;

/// Full-screen commands.
#[derive(Debug, Subcommand)]
pub enum Command {
    /// Open the command center on a plan.
    Tui {
        /// Plan file.
        plan: PathBuf,
        /// Block every change (viewer only).
        #[arg(long)]
        read_only: bool,
    },
    /// Start a throwaway PostgreSQL with a seeded demo database and a live workload, and open the TUI.
    Demo,
}

/// Runs a full-screen command.
pub async fn run(cmd: Command, _ctx: &Context) -> anyhow::Result<ExitCode> {
    match cmd {
        Command::Tui { .. } | Command::Demo => anyhow::bail!("the TUI is not implemented yet"),
    }
}
