//! Benchmarks: each prints ratios measured side by side in one run.

pub(crate) mod backfill;
mod host;
pub mod parity;
pub mod patterns;
mod timeline;
pub mod workloads;

/// The part every benchmark plan shares: its changelog, a `postgres` lead, phases that roll back to
/// nothing and a contract that cannot, and a read-switch flag.
fn plan_head(id: &str) -> String {
    format!(
        r#"id = "{id}"
title = "bench"
rationale = "benchmark"
author = "cutover bench"
ticket = "BENCH"
[roster]
lead = ["postgres"]
[phases.expand]
rollback = ""
[phases.dual_write]
rollback = ""
[phases.backfill]
rollback = ""
[phases.read_switch]
rollback = ""
[phases.contract]
irreversible = true
[read_switch]
flag = "bench.flag""#
    )
}

#[cfg(test)]
mod tests {
    use crate::plan::Plan;

    #[test]
    fn the_shared_head_makes_a_plan_with_a_backfill() {
        let toml = format!(
            "{}\n[backfill]\ntable = \"public.t\"\nkey = [\"aid\"]\nset = {{ c = \"1\" }}\npending = \"c IS NULL\"\n",
            super::plan_head("bench-x")
        );
        let plan = Plan::parse("bench-x.toml", &toml).unwrap();
        assert_eq!(plan.id(), "bench-x");
        assert!(plan.spec.backfill.is_some());
    }
}
