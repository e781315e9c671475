//! Integration tests against a real PostgreSQL (DATABASE_URL or a throwaway cluster).

mod authz;
mod backfill;
mod checks;
mod common;
mod connect;
mod engine;
mod evidence;
mod foundation;
mod guard;
mod notify;
mod plan;
mod read_only;
mod rollback;
mod tally;
mod throwaway;
mod tui;
