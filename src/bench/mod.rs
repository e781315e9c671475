//! Benchmarks: each prints ratios measured side by side in one run.

pub mod backfill;
pub mod parity;
pub mod workloads;
