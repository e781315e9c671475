//! Integration tests against a real PostgreSQL (DATABASE_URL or a throwaway cluster).

mod backfill;
mod checks;
mod common;
mod engine;
mod evidence;
mod foundation;
mod plan;
mod tally;
mod throwaway;
mod tui;
