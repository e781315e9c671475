//! Benchmarks: each prints ratios measured side by side in one run.

pub(crate) mod backfill;
pub mod parity;
pub mod patterns;
pub mod workloads;
