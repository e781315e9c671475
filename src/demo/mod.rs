//! `cutover demo`: a throwaway PostgreSQL (or a fresh database on `DATABASE_URL`), the demo
//! schema seeded, a synthetic application workload, and the command center on the demo plan.
//! Quitting stops everything it started.

pub mod workload;

use crate::cli::Context;

/// Knobs of the demo.
#[derive(Debug, Clone)]
pub struct DemoOptions {
    /// Accounts to seed.
    pub accounts: i32,
    /// Synthetic writes per second.
    pub writes_per_sec: u32,
}

/// Runs the demo until the user quits.
pub async fn run(_ctx: &Context, _opts: DemoOptions) -> anyhow::Result<()> {
    anyhow::bail!("the demo is not ready yet")
}
