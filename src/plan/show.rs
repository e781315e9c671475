//! The dry run behind `cutover plan show`: every statement of every phase (generated or
//! hand-written), the lock it takes on which object, what rolls the phase back, and what gates
//! it. Pure: nothing here touches a database.

use std::fmt::Write as _;

use serde::Serialize;

use super::operations::locks::{classify, Lock};
use super::{BackfillSpec, GateSpec, Phase, Plan};
use crate::sql::split_statements;

/// One statement and its lock.
#[derive(Debug, Clone, Serialize)]
pub struct Step {
    /// The SQL.
    pub sql: String,
    /// Runs outside a transaction (`CONCURRENTLY`, …), tracked so a retry resumes.
    pub own_transaction: bool,
    /// The lock it takes.
    pub lock: Lock,
}

/// One phase of the dry run.
#[derive(Debug, Clone, Serialize)]
pub struct PhaseShow {
    /// The phase.
    pub phase: Phase,
    /// Its description.
    pub description: String,
    /// `generated` (from `[[operations]]`) or `hand-written`.
    pub origin: &'static str,
    /// What must hold before it is applied.
    pub gate: GateSpec,
    /// The statements it applies, in order.
    pub apply: Vec<Step>,
    /// The statements that roll it back, in order; `None` when it is irreversible.
    pub rollback: Option<Vec<Step>>,
    /// The backfill this phase starts.
    pub backfill: Option<BackfillSpec>,
    /// The flag this phase turns on.
    pub flag: Option<String>,
}

/// The whole dry run.
#[derive(Debug, Clone, Serialize)]
pub struct Show {
    /// Plan id.
    pub plan: String,
    /// sha256 of the plan file.
    pub sha256: String,
    /// How many operations the plan declares.
    pub operations: usize,
    /// The five phases.
    pub phases: Vec<PhaseShow>,
}

fn steps(script: &str) -> Vec<Step> {
    split_statements(script)
        .into_iter()
        .map(|s| Step {
            own_transaction: s.needs_own_transaction(),
            lock: classify(&s.text),
            sql: s.text,
        })
        .collect()
}

/// Builds the dry run of `plan`.
pub fn show(plan: &Plan) -> Show {
    let phases = Phase::ALL
        .into_iter()
        .map(|phase| {
            let spec = plan.phase(phase);
            PhaseShow {
                phase,
                description: spec.description.clone(),
                origin: if plan.spec.origins.generated(phase) {
                    "generated"
                } else {
                    "hand-written"
                },
                gate: plan.gate(phase),
                apply: steps(&spec.apply),
                rollback: spec
                    .reversible()
                    .then(|| steps(spec.rollback.as_deref().unwrap_or(""))),
                backfill: (phase == Phase::Backfill)
                    .then(|| plan.spec.backfill.clone())
                    .flatten(),
                flag: (phase == Phase::ReadSwitch)
                    .then(|| plan.spec.read_switch.as_ref().map(|r| r.flag.clone()))
                    .flatten(),
            }
        })
        .collect();
    Show {
        plan: plan.id().to_string(),
        sha256: plan.sha256(),
        operations: plan.spec.operations.len(),
        phases,
    }
}

/// The dry run as text.
pub fn render(s: &Show) -> String {
    let mut out = format!(
        "plan {} (sha256 {})",
        s.plan,
        &s.sha256[..12.min(s.sha256.len())]
    );
    if s.operations > 0 {
        let _ = write!(out, ", {} operations", s.operations);
    }
    out.push('\n');
    for p in &s.phases {
        let _ = writeln!(out, "\n== {} ({}) {}", p.phase, p.origin, p.description);
        let g = &p.gate;
        let mut gate = Vec::new();
        if !g.checks.is_empty() {
            gate.push(format!("checks {}", g.checks.join(", ")));
        }
        if !g.probes.is_empty() {
            let probes: Vec<&str> = g.probes.iter().map(|p| p.as_str()).collect();
            gate.push(format!("probes {}", probes.join(", ")));
        }
        if !g.signoffs.is_empty() {
            let roles: Vec<&str> = g.signoffs.iter().map(|r| r.as_str()).collect();
            gate.push(format!("sign-offs {}", roles.join(", ")));
        }
        if let Some(o) = g.observe {
            gate.push(format!("observe {o}"));
        }
        let _ = writeln!(
            out,
            "   gated by: {}",
            if gate.is_empty() {
                "nothing".to_string()
            } else {
                gate.join("; ")
            }
        );
        list(&mut out, "apply", &p.apply);
        if let Some(b) = &p.backfill {
            let set: Vec<String> = b.set.iter().map(|(c, e)| format!("{c} = {e}")).collect();
            let _ = writeln!(
                out,
                "   backfill {} by ({}): SET {} WHERE {}",
                b.table,
                b.key.join(", "),
                set.join(", "),
                b.pending
            );
        }
        if let Some(f) = &p.flag {
            let _ = writeln!(out, "   flag {f} turns on");
        }
        match &p.rollback {
            Some(r) => list(&mut out, "rolled back by", r),
            None => out.push_str("   irreversible: no rollback\n"),
        }
    }
    out
}

fn list(out: &mut String, title: &str, steps: &[Step]) {
    if steps.is_empty() {
        let _ = writeln!(out, "   {title}: nothing");
        return;
    }
    let _ = writeln!(out, "   {title}:");
    for (i, s) in steps.iter().enumerate() {
        let first = s.sql.lines().next().unwrap_or("");
        let more = if s.sql.lines().count() > 1 {
            " …"
        } else {
            ""
        };
        let _ = writeln!(out, "   {:>3}. {first}{more}", i + 1);
        let on = s
            .lock
            .object
            .as_deref()
            .map(|o| format!(" on {o}"))
            .unwrap_or_default();
        let own = if s.own_transaction {
            ", own transaction"
        } else {
            ""
        };
        let _ = writeln!(
            out,
            "        lock {}{on}{own}: {}",
            s.lock.mode, s.lock.note
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_dry_run_lists_every_statement_with_its_lock() {
        let plan = Plan::parse(
            "p.ops.toml",
            include_str!("../../plans/accounts-balance-cents.ops.toml"),
        )
        .expect("plan");
        let s = show(&plan);
        let expand = &s.phases[0];
        assert_eq!(expand.origin, "generated");
        assert_eq!(expand.apply[0].lock.mode, "ACCESS EXCLUSIVE");
        assert_eq!(
            expand.apply[0].lock.object.as_deref(),
            Some("public.accounts")
        );
        assert!(s.phases[4].rollback.is_none());
        assert!(s.phases[2].backfill.is_some());
        let text = render(&s);
        assert!(
            text.contains("lock SHARE UPDATE EXCLUSIVE on public.accounts"),
            "{text}"
        );
        assert!(
            text.contains("gated by: checks accounts-balance_cents-parity"),
            "{text}"
        );
        let hand = Plan::parse(
            "p.toml",
            include_str!("../../plans/accounts-balance-cents.toml"),
        )
        .expect("plan");
        assert_eq!(show(&hand).phases[0].origin, "hand-written");
    }
}
