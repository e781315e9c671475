//! The phase engine, by topic: the demo plan's whole lifecycle through the CLI, rollbacks that
//! restore the catalog, lock-timeout retries and crashes, gates (sign-offs, overrides, stale
//! checks, freezes, verdicts), and the audit trail.

mod audit;
mod cdc_slots;
mod cli_lifecycle;
mod gates;
mod index_builds;
mod locks;
mod rollback;

use crate::common::TestDb;

/// The demo database the engine tests run on: 300 accounts, 20 customers, 20 orders.
async fn demo_db() -> TestDb {
    TestDb::demo(300, 20, 20).await
}
