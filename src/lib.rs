//! Cutover: a terminal command center for zero-downtime PostgreSQL schema migrations.
//!
//! The modules, in dependency order (each uses only those above it):
//! - [`outcome`] — the three-valued Pass / Fail / Inconclusive of every check, probe and gate;
//! - [`exit`] — the documented exit codes of every command;
//! - [`sql`] — plan SQL read with a PostgreSQL parser: statements, locks, quoting;
//! - [`plan`] — the TOML plan: model, validation with `file:line:col` diagnostics;
//! - [`db`] — connections: connection strings, service files, `.pgpass`, TLS, session settings;
//! - [`read_only`] — the read-only scope plan SQL that must not write runs in;
//! - [`throwaway`] — private PostgreSQL clusters for the demo, benchmarks and tests;
//! - [`control`] — sole owner of the `cutover` schema: phases, audit log, sign-offs, outbox, …;
//! - [`rules`] — pure judgements over the control facts: gates, scorecard, advice;
//! - [`checks`] — parity, checksum, diff, drift, golden-query and invariant checks;
//! - [`evidence`] — readiness probes (lint, compatibility, error budget, hidden readers, …);
//! - [`backfill`] — keyset-chunked, throttled, checkpointed, resumable backfill (update or copy);
//! - [`cdc`] — the dual-write without a trigger: a logical replication slot applied to the copy;
//! - [`notify`] — webhooks and exec hooks fed by the control schema's transactional outbox;
//! - [`engine`] — the phase state machine, gates, sign-offs, lock-safe DDL, rollback, rehearsal;
//! - [`worker`] — the async task that owns connections and feeds the TUI;
//! - [`tui`] — the full-screen command center (one file per pane);
//! - [`demo`] — `cutover demo`: throwaway cluster, seeded schema, workload, TUI;
//! - [`bench`](mod@bench) — benchmarks that print measured ratios;
//! - [`cli`] — the headless commands; every TUI action has one.

#![cfg_attr(
    test,
    allow(clippy::unwrap_used, clippy::expect_used, clippy::too_many_lines)
)]

pub mod backfill;
pub mod bench;
pub mod cdc;
pub mod checks;
pub mod cli;
pub mod control;
pub mod db;
pub mod demo;
pub mod engine;
pub mod evidence;
pub mod exit;
pub mod notify;
pub mod outcome;
pub mod plan;
pub mod read_only;
pub mod rules;
pub mod sql;
pub mod throwaway;
pub mod tui;
pub mod worker;

pub use outcome::Outcome;
