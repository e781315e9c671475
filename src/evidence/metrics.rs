//! Prometheus metrics endpoint (`--metrics-addr`).

use std::net::SocketAddr;

use crate::db::DbConfig;
use crate::plan::Plan;

/// Starts serving metrics for `plan` on `addr` in the background.
pub fn spawn(addr: SocketAddr, _db: DbConfig, _plan: Plan) -> anyhow::Result<()> {
    anyhow::bail!("the metrics endpoint ({addr}) is not available in this build")
}
