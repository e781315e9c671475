//! Integration tests against a real PostgreSQL (DATABASE_URL or a throwaway cluster).
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::too_many_lines)] // a test that unwraps fails loudly; a scenario reads best as one story

mod authz;
mod backfill;
mod backfill_copy;
mod backfill_guard;
mod backfill_partitions;
mod cdc;
mod cdc_in_place;
mod checks;
mod checks_partitions;
mod common;
mod connect;
mod engine;
mod evidence;
mod foundation;
mod guard;
mod import;
mod notify;
mod operation_kinds;
mod operation_schema_kinds;
mod operation_shapes;
mod operations;
mod plan;
mod read_only;
mod rollback;
mod slots;
mod tally;
mod throwaway;
mod tui;
