//! Verification: parity by partition, expression parity, checksums, exact diff, drift, golden
//! queries and invariants. Results are stored in `cutover.check_results`.

use tokio_postgres::Client;

use crate::plan::{Phase, Plan};

/// Called by the engine just before `phase` is applied (e.g. to snapshot golden queries before
/// expand). Failing here blocks the phase.
pub async fn before_phase(_client: &Client, _plan: &Plan, _phase: Phase) -> anyhow::Result<()> {
    Ok(())
}
