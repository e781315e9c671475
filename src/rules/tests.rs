//! The rules judged on hand-built facts: no database.

use chrono::{DateTime, Duration, TimeZone, Utc};

use super::advice::{rollback_advice, rollback_plan, NoRollback, RollbackStep};
use super::gate::{evaluate, ItemKind, Verdict, PROBE_MAX_AGE};
use super::scorecard::{scorecard, CategoryKind};
use crate::control::backfill::State as BackfillState;
use crate::control::facts::{
    BackfillFact, CheckFact, Facts, OverrideFact, ProbeFact, Registration, RehearsalFact,
    ScrapeFact, SignoffFact, TransitionFact,
};
use crate::control::phases::PhaseState;
use crate::outcome::Outcome;
use crate::plan::{Freeze, Phase, Plan};

fn t(min: i64) -> DateTime<Utc> {
    Utc.with_ymd_and_hms(2026, 11, 22, 5, 0, 0)
        .single()
        .expect("a valid time")
        + Duration::minutes(min)
}

fn plan() -> Plan {
    Plan::parse(
        "plans/accounts-balance-cents.toml",
        include_str!("../../plans/accounts-balance-cents.toml"),
    )
    .expect("the demo plan parses")
}

/// Facts at t(60) of a registered plan where every phase before `upto` is applied, each
/// phase i applied at minute i*10.
fn facts(plan: &Plan, upto: Phase) -> Facts {
    let mut f = Facts::unregistered(plan.id(), t(60));
    f.registration = Some(Registration {
        plan_sha256: plan.sha256(),
        created_at: t(0),
    });
    for p in Phase::ALL.iter().filter(|p| **p < upto) {
        let at = t(p.index() as i64 * 10);
        let row = &mut f.phases[p.index()];
        row.state = PhaseState::Applied;
        row.finished_at = Some(at);
        f.transitions.push(TransitionFact {
            phase: *p,
            to_state: PhaseState::Applied,
            at,
        });
    }
    f
}

fn sign(f: &mut Facts, gate: Phase, role: &str, sha: &str, at: DateTime<Utc>) {
    f.signoffs.push(SignoffFact {
        gate,
        role: role.into(),
        login: "dana".into(),
        os_user: "dana".into(),
        host: "ops-1".into(),
        plan_sha256: sha.into(),
        signed_at: at,
    });
}

fn probe(f: &mut Facts, gate: Phase, name: &str, outcome: Outcome, sha: &str, at: DateTime<Utc>) {
    f.probes.push(ProbeFact {
        gate,
        probe: name.into(),
        outcome,
        summary: format!("{name} said {outcome}"),
        evidence: vec!["a line".into()],
        plan_sha256: sha.into(),
        at,
    });
}

fn check(f: &mut Facts, name: &str, outcome: Outcome, sha: &str, at: DateTime<Utc>) {
    f.checks.push(CheckFact {
        name: name.into(),
        kind: "invariant".into(),
        outcome,
        summary: format!("{name}: {outcome}"),
        started_at: at,
        duration_ms: 10,
        rows_scanned: 100,
        mismatches: None,
        partitions: Vec::new(),
        plan_sha256: sha.into(),
    });
}

fn item<'a>(g: &'a super::GateEvaluation, kind: ItemKind, name: &str) -> &'a super::GateItem {
    g.items
        .iter()
        .find(|i| i.kind == kind && i.name == name)
        .unwrap_or_else(|| panic!("no {kind:?} {name} in {:?}", g.items))
}

/// The expand gate with its lint probe fresh and the lead signed passes.
fn expand_ready(plan: &Plan) -> Facts {
    let sha = plan.sha256();
    let mut f = facts(plan, Phase::Expand);
    probe(&mut f, Phase::Expand, "lint", Outcome::Pass, &sha, t(59));
    sign(&mut f, Phase::Expand, "lead", &sha, t(58));
    f
}

#[test]
fn a_complete_gate_passes() {
    let plan = plan();
    let g = evaluate(&plan, &expand_ready(&plan), Phase::Expand);
    assert_eq!(g.outcome, Outcome::Pass, "{:?}", g.blockers);
    assert!(g.passed);
    assert!(g.blockers.is_empty());
    assert_eq!(g.verdict(), Verdict::Pass);
}

#[test]
fn a_slot_about_to_lose_its_wal_blocks_an_otherwise_complete_gate() {
    let plan = plan();
    let mut f = expand_ready(&plan);
    let mb = 1i64 << 20;
    let slot = |name: &str, safe: i64| crate::control::slots::Slot {
        name: name.into(),
        kind: "logical".into(),
        active: false,
        retained_bytes: 64 * mb - safe,
        lag_bytes: Some(64 * mb - safe),
        wal_status: Some("extended".into()),
        safe_wal_size: Some(safe),
    };
    f.slots = vec![slot("healthy", 40 * mb), slot("stalled", 3 * mb)];
    f.max_slot_wal_keep_size = Some(64 * mb);
    let g = evaluate(&plan, &f, Phase::Expand);
    assert_eq!(item(&g, ItemKind::Slot, "stalled").outcome, Outcome::Fail);
    assert!(
        !g.items.iter().any(|i| i.name == "healthy"),
        "{:?}",
        g.items
    );
    assert!(!g.passed);
    assert_eq!(g.verdict(), Verdict::Fail);
    assert_eq!(g.blockers.len(), 1, "{:?}", g.blockers);
    assert!(
        g.blockers[0].starts_with("slot stalled: FAIL — logical slot `stalled` is 3MB of WAL away"),
        "{:?}",
        g.blockers
    );
    f.max_slot_wal_keep_size = None;
    f.slots = vec![slot("stalled", 3 * mb)];
    assert!(
        evaluate(&plan, &f, Phase::Expand).passed,
        "no limit, no slot is lost"
    );
}

#[test]
fn the_gate_blocks_on_the_slot_share_the_plan_sets() {
    let mut plan = plan();
    let mut f = expand_ready(&plan);
    let mb = 1i64 << 20;
    f.slots = vec![crate::control::slots::Slot {
        name: "analytics".into(),
        kind: "logical".into(),
        active: true,
        retained_bytes: 40 * mb,
        lag_bytes: Some(40 * mb),
        wal_status: Some("extended".into()),
        safe_wal_size: Some(24 * mb),
    }];
    f.max_slot_wal_keep_size = Some(64 * mb);
    assert!(evaluate(&plan, &f, Phase::Expand).passed, "37.5 % left");
    let backfill = plan
        .spec
        .backfill
        .as_mut()
        .expect("the demo plan backfills");
    backfill.throttle.min_slot_safe_wal_percent = 50.0;
    let g = evaluate(&plan, &f, Phase::Expand);
    assert_eq!(item(&g, ItemKind::Slot, "analytics").outcome, Outcome::Fail);
    assert!(g.blockers[0].contains("under 50% left"), "{:?}", g.blockers);
}

#[test]
fn the_previous_phase_must_be_applied_and_an_override_does_not_skip_it() {
    let plan = plan();
    let sha = plan.sha256();
    let mut f = facts(&plan, Phase::Expand);
    f.overrides.push(OverrideFact {
        gate: Phase::DualWrite,
        login: "dana".into(),
        reason: "testing".into(),
        plan_sha256: sha,
        at: t(59),
    });
    let g = evaluate(&plan, &f, Phase::DualWrite);
    assert_eq!(item(&g, ItemKind::Order, "expand").outcome, Outcome::Fail);
    assert!(g.overridden.is_some());
    assert!(!g.passed, "an override never skips the phase order");
    assert_eq!(
        g.verdict(),
        Verdict::Fail,
        "an override in force but unused"
    );
}

#[test]
fn a_freeze_in_force_fails_the_gate() {
    let mut plan = plan();
    plan.spec.windows.freeze.push(Freeze {
        from: "2026-11-22T00:00:00Z".into(),
        to: "2026-11-23T00:00:00Z".into(),
        reason: "Black Friday".into(),
    });
    let g = evaluate(&plan, &expand_ready(&plan), Phase::Expand);
    let freeze = item(&g, ItemKind::Freeze, "freeze");
    assert_eq!(freeze.outcome, Outcome::Fail);
    assert!(freeze.detail.contains("Black Friday"), "{}", freeze.detail);
    assert!(!g.passed);
}

#[test]
fn a_missing_signoff_is_inconclusive_and_names_the_roster() {
    let plan = plan();
    let mut f = expand_ready(&plan);
    f.signoffs.clear();
    let g = evaluate(&plan, &f, Phase::Expand);
    let s = item(&g, ItemKind::Signoff, "lead");
    assert_eq!(s.outcome, Outcome::Inconclusive);
    assert!(
        s.detail
            .contains("missing sign-off by lead (roster: postgres)"),
        "{}",
        s.detail
    );
    assert!(!g.passed);
}

#[test]
fn a_signoff_of_another_plan_version_is_void() {
    let plan = plan();
    let mut f = expand_ready(&plan);
    f.signoffs[0].plan_sha256 = "0".repeat(64);
    let g = evaluate(&plan, &f, Phase::Expand);
    let s = item(&g, ItemKind::Signoff, "lead");
    assert_eq!(s.outcome, Outcome::Inconclusive);
    assert!(s.detail.starts_with("void: plan changed"), "{}", s.detail);
}

#[test]
fn rolling_a_phase_back_voids_the_signoffs_of_its_gate() {
    let plan = plan();
    let sha = plan.sha256();
    let mut f = facts(&plan, Phase::Backfill);
    sign(&mut f, Phase::DualWrite, "app_owner", &sha, t(5));
    probe(
        &mut f,
        Phase::DualWrite,
        "compatibility",
        Outcome::Pass,
        &sha,
        t(59),
    );
    // dual_write was applied at t(10), then rolled back at t(30).
    f.phases[Phase::DualWrite.index()].state = PhaseState::RolledBack;
    f.transitions.push(TransitionFact {
        phase: Phase::DualWrite,
        to_state: PhaseState::RolledBack,
        at: t(30),
    });
    let g = evaluate(&plan, &f, Phase::DualWrite);
    let s = item(&g, ItemKind::Signoff, "app_owner");
    assert_eq!(s.outcome, Outcome::Inconclusive);
    assert!(s.detail.contains("was rolled back"), "{}", s.detail);
    // A fresh sign-off after the rollback counts again.
    sign(&mut f, Phase::DualWrite, "app_owner", &sha, t(40));
    let g = evaluate(&plan, &f, Phase::DualWrite);
    assert_eq!(
        item(&g, ItemKind::Signoff, "app_owner").outcome,
        Outcome::Pass
    );
    // The scorecard's owner sign-off follows the same rule.
    let card = scorecard(&plan, &f);
    assert_eq!(card.categories[0].signoff.outcome, Outcome::Pass);
}

#[test]
fn checks_never_run_stale_or_of_another_version_are_inconclusive() {
    let plan = plan();
    let sha = plan.sha256();
    let mut f = facts(&plan, Phase::ReadSwitch);
    // backfill (the phase before read_switch) was applied at t(20).
    check(&mut f, "balance-parity", Outcome::Pass, &sha, t(25));
    check(&mut f, "balance-drift", Outcome::Pass, &sha, t(15));
    check(&mut f, "no-negative-balance", Outcome::Pass, "beef", t(25));
    let g = evaluate(&plan, &f, Phase::ReadSwitch);
    assert_eq!(
        item(&g, ItemKind::Check, "balance-parity").outcome,
        Outcome::Pass
    );
    let drift = item(&g, ItemKind::Check, "balance-drift");
    assert_eq!(drift.outcome, Outcome::Inconclusive);
    assert!(
        drift.detail.contains("before backfill was applied"),
        "{}",
        drift.detail
    );
    let other = item(&g, ItemKind::Check, "no-negative-balance");
    assert_eq!(other.outcome, Outcome::Inconclusive);
    assert!(other.detail.contains("plan version"), "{}", other.detail);
    f.checks.clear();
    let g = evaluate(&plan, &f, Phase::ReadSwitch);
    assert!(item(&g, ItemKind::Check, "balance-parity")
        .detail
        .starts_with("never run"));
}

#[test]
fn a_failed_check_fails_the_gate() {
    let plan = plan();
    let sha = plan.sha256();
    let mut f = facts(&plan, Phase::ReadSwitch);
    check(&mut f, "balance-parity", Outcome::Fail, &sha, t(25));
    let g = evaluate(&plan, &f, Phase::ReadSwitch);
    assert_eq!(g.outcome, Outcome::Fail);
    assert!(g
        .blockers
        .iter()
        .any(|b| b.starts_with("check balance-parity: FAIL")));
}

#[test]
fn an_unevaluated_or_inconclusive_probe_blocks() {
    let plan = plan();
    let sha = plan.sha256();
    let mut f = expand_ready(&plan);
    f.probes.clear();
    let g = evaluate(&plan, &f, Phase::Expand);
    assert_eq!(
        item(&g, ItemKind::Probe, "lint").outcome,
        Outcome::Inconclusive
    );
    assert!(!g.passed);
    probe(
        &mut f,
        Phase::Expand,
        "lint",
        Outcome::Inconclusive,
        &sha,
        t(59),
    );
    let g = evaluate(&plan, &f, Phase::Expand);
    assert_eq!(g.outcome, Outcome::Inconclusive);
    assert!(!g.passed);
}

#[test]
fn a_probe_judged_before_a_phase_change_is_stale_not_current() {
    let plan = plan();
    let sha = plan.sha256();
    let mut f = facts(&plan, Phase::ReadSwitch);
    probe(
        &mut f,
        Phase::ReadSwitch,
        "privilege_parity",
        Outcome::Pass,
        &sha,
        t(15),
    );
    let g = evaluate(&plan, &f, Phase::ReadSwitch);
    let p = item(&g, ItemKind::Probe, "privilege_parity");
    assert_eq!(p.outcome, Outcome::Inconclusive);
    assert!(p.stale);
    assert!(
        p.detail.starts_with("stale: judged 45m00s ago"),
        "{}",
        p.detail
    );
}

#[test]
fn backfill_complete_judged_while_running_is_stale_once_the_backfill_is_done() {
    let plan = plan();
    let sha = plan.sha256();
    let mut f = facts(&plan, Phase::ReadSwitch);
    probe(
        &mut f,
        Phase::ReadSwitch,
        "backfill_complete",
        Outcome::Fail,
        &sha,
        t(50),
    );
    f.backfill = Some(BackfillFact {
        state: BackfillState::Done,
        reason: String::new(),
        paused_by: None,
        rows_done: 10,
        rows_estimate: Some(10),
        throttled_seconds: 0.0,
        state_changed_at: Some(t(55)),
    });
    let g = evaluate(&plan, &f, Phase::ReadSwitch);
    let p = item(&g, ItemKind::Probe, "backfill_complete");
    assert!(p.stale, "{p:?}");
    assert_eq!(p.outcome, Outcome::Inconclusive);
    assert!(
        p.detail.contains("the backfill became done"),
        "{}",
        p.detail
    );
    assert!(
        g.blockers
            .iter()
            .any(|b| b.starts_with("probe backfill_complete: INCONCLUSIVE — stale")),
        "a stale result is never shown as a current failure: {:?}",
        g.blockers
    );
    // Judged again after the change: current.
    probe(
        &mut f,
        Phase::ReadSwitch,
        "backfill_complete",
        Outcome::Pass,
        &sha,
        t(56),
    );
    let g = evaluate(&plan, &f, Phase::ReadSwitch);
    assert_eq!(
        item(&g, ItemKind::Probe, "backfill_complete").outcome,
        Outcome::Pass
    );
}

#[test]
fn an_old_probe_result_is_stale() {
    let plan = plan();
    let sha = plan.sha256();
    let mut f = expand_ready(&plan);
    f.probes.clear();
    probe(
        &mut f,
        Phase::Expand,
        "lint",
        Outcome::Pass,
        &sha,
        t(60) - PROBE_MAX_AGE - Duration::seconds(1),
    );
    let g = evaluate(&plan, &f, Phase::Expand);
    let p = item(&g, ItemKind::Probe, "lint");
    assert!(p.stale);
    assert!(p.detail.contains("older than 10 min"), "{}", p.detail);
}

#[test]
fn the_observation_window_must_elapse() {
    let plan = plan();
    let mut f = facts(&plan, Phase::Contract);
    // read_switch applied at t(30); contract observes 5 s.
    f.now = t(30) + Duration::seconds(2);
    let g = evaluate(&plan, &f, Phase::Contract);
    let o = item(&g, ItemKind::Observe, "observe");
    assert_eq!(o.outcome, Outcome::Inconclusive);
    assert!(o.detail.contains("2.0s of 5s elapsed"), "{}", o.detail);
    f.now = t(30) + Duration::seconds(6);
    let g = evaluate(&plan, &f, Phase::Contract);
    assert_eq!(
        item(&g, ItemKind::Observe, "observe").outcome,
        Outcome::Pass
    );
}

#[test]
fn an_override_lets_one_apply_through_and_is_used_up_by_it() {
    let plan = plan();
    let sha = plan.sha256();
    let mut f = facts(&plan, Phase::Expand);
    f.overrides.push(OverrideFact {
        gate: Phase::Expand,
        login: "dana".into(),
        reason: "lint is wrong here".into(),
        plan_sha256: sha,
        at: t(50),
    });
    let g = evaluate(&plan, &f, Phase::Expand);
    assert_ne!(g.outcome, Outcome::Pass);
    assert!(g.passed, "overridden");
    assert_eq!(
        g.overridden.as_ref().map(|o| o.login.as_str()),
        Some("dana")
    );
    // Expand applied after the override (then rolled back): the override is used up.
    f.transitions.push(TransitionFact {
        phase: Phase::Expand,
        to_state: PhaseState::Applied,
        at: t(55),
    });
    let g = evaluate(&plan, &f, Phase::Expand);
    assert!(g.overridden.is_none());
    assert!(!g.passed);
}

#[test]
fn an_override_for_another_plan_version_does_not_count() {
    let plan = plan();
    let mut f = facts(&plan, Phase::Expand);
    f.overrides.push(OverrideFact {
        gate: Phase::Expand,
        login: "dana".into(),
        reason: "old plan".into(),
        plan_sha256: "0".repeat(64),
        at: t(50),
    });
    assert!(!evaluate(&plan, &f, Phase::Expand).passed);
}

#[test]
fn observability_needs_a_recent_scrape() {
    let plan = plan();
    let mut f = facts(&plan, Phase::Expand);
    let obs = |f: &Facts| {
        scorecard(&plan, f).categories[CategoryKind::Observability as usize].evidence[0].clone()
    };
    assert_eq!(obs(&f).outcome, Outcome::Inconclusive);
    f.scrapes = Some(ScrapeFact {
        count: 3,
        last_at: t(59),
        peer: Some("10.0.0.9".into()),
    });
    assert_eq!(obs(&f).outcome, Outcome::Pass);
    f.scrapes = Some(ScrapeFact {
        count: 3,
        last_at: t(50),
        peer: None,
    });
    assert_eq!(obs(&f).outcome, Outcome::Fail);
}

#[test]
fn observability_can_be_attested_by_its_owner_for_this_plan_version() {
    use crate::control::facts::AttestationFact;
    let plan = plan();
    let mut f = facts(&plan, Phase::Expand);
    let obs = |f: &Facts| {
        scorecard(&plan, f).categories[CategoryKind::Observability as usize].evidence[0].clone()
    };
    let attestation = |role: &str, sha: String| AttestationFact {
        category: "observability".into(),
        role: role.into(),
        login: "sam".into(),
        url: "https://grafana.example.com/d/ledger".into(),
        plan_sha256: sha,
        at: t(40),
    };
    // Another role's word, or one given for another plan version, is no evidence.
    f.attestations = vec![
        attestation("lead", plan.sha256()),
        attestation("sre", "0".repeat(64)),
    ];
    assert_eq!(obs(&f).outcome, Outcome::Inconclusive);
    f.attestations.push(attestation("sre", plan.sha256()));
    let e = obs(&f);
    assert_eq!(e.outcome, Outcome::Pass, "{e:?}");
    assert!(
        e.detail.starts_with("attested by sam (sre) at ")
            && e.detail.ends_with(": https://grafana.example.com/d/ledger"),
        "{e:?}"
    );
    // A stale scrape does not fail what the owner attested, and says how old it is.
    f.scrapes = Some(ScrapeFact {
        count: 3,
        last_at: t(50) - chrono::Duration::minutes(10),
        peer: None,
    });
    let e = obs(&f);
    assert_eq!(e.outcome, Outcome::Pass, "{e:?}");
    assert!(e.detail.contains("last scrape"), "{e:?}");
}

#[test]
fn reversibility_needs_a_passing_rehearsal_of_this_plan_version() {
    let plan = plan();
    let mut f = facts(&plan, Phase::Expand);
    let rehearsal = |f: &Facts| {
        scorecard(&plan, f).categories[CategoryKind::Reversibility as usize].evidence[1].clone()
    };
    assert_eq!(rehearsal(&f).outcome, Outcome::Inconclusive);
    f.rehearsal = Some(RehearsalFact {
        ok: true,
        total_ms: 41.0,
        plan_sha256: "0".repeat(64),
        at: t(50),
    });
    assert_eq!(rehearsal(&f).outcome, Outcome::Inconclusive);
    f.rehearsal = Some(RehearsalFact {
        ok: false,
        total_ms: 41.0,
        plan_sha256: plan.sha256(),
        at: t(50),
    });
    assert_eq!(rehearsal(&f).outcome, Outcome::Fail);
    if let Some(r) = f.rehearsal.as_mut() {
        r.ok = true;
    }
    assert_eq!(rehearsal(&f).outcome, Outcome::Pass);
}

#[test]
fn the_scorecard_is_ready_only_when_every_category_passes() {
    let plan = plan();
    let f = facts(&plan, Phase::Expand);
    let card = scorecard(&plan, &f);
    assert_eq!(card.categories.len(), 5);
    assert!(!card.ready);
    let kinds: Vec<CategoryKind> = card.categories.iter().map(|c| c.kind).collect();
    assert_eq!(kinds, CategoryKind::ALL);
}

#[test]
fn rollback_advice_undoes_the_last_applied_phase() {
    let plan = plan();
    let f = facts(&plan, Phase::ReadSwitch);
    let a = rollback_advice(&plan, &f).expect("backfill is applied");
    assert_eq!(a.phase, Phase::Backfill);
    assert!(a.possible);
    assert_eq!(
        a.plan.steps.last(),
        Some(&RollbackStep::FinishPhase {
            phase: Phase::Backfill,
            flag_off: None,
            stop_backfill: true,
        })
    );
    assert!(rollback_advice(&plan, &facts(&plan, Phase::Expand)).is_none());
}

#[test]
fn rollback_advice_resumes_an_interrupted_rollback_and_undoes_a_partial_apply_first() {
    let plan = plan();
    let mut f = facts(&plan, Phase::ReadSwitch);
    f.phases[Phase::DualWrite.index()].state = PhaseState::RollingBack;
    assert_eq!(
        rollback_advice(&plan, &f).map(|a| a.phase),
        Some(Phase::DualWrite)
    );
    let mut f = facts(&plan, Phase::ReadSwitch);
    f.phases[Phase::ReadSwitch.index()].state = PhaseState::Failed;
    f.partially_applied = Some(Phase::ReadSwitch);
    assert_eq!(
        rollback_advice(&plan, &f).map(|a| a.phase),
        Some(Phase::ReadSwitch)
    );
}

#[test]
fn the_rollback_plan_lists_each_statement_and_control_step_in_order() {
    let plan = plan();
    let expand = rollback_plan(&plan, &facts(&plan, Phase::DualWrite), None).expect("expand");
    let sql: Vec<&str> = expand.statements().collect();
    assert_eq!(
        sql,
        ["ALTER TABLE public.accounts DROP COLUMN balance_cents"]
    );
    let rs = rollback_plan(&plan, &facts(&plan, Phase::Contract), Some(Phase::Backfill))
        .expect("read_switch and backfill");
    assert_eq!(rs.phases, [Phase::ReadSwitch, Phase::Backfill]);
    let flag = "accounts.read_balance_cents".to_string();
    assert_eq!(rs.steps[0], RollbackStep::FlagOff { flag: flag.clone() });
    assert!(rs.steps.contains(&RollbackStep::FinishPhase {
        phase: Phase::ReadSwitch,
        flag_off: Some(flag),
        stop_backfill: false,
    }));
    let mut f = facts(&plan, Phase::Contract);
    f.phases[Phase::Contract.index()].state = PhaseState::Applied;
    assert!(matches!(
        rollback_plan(&plan, &f, None),
        Err(NoRollback::Irreversible(why)) if why.contains("irreversible")
    ));
    let contract = rollback_advice(&plan, &f).expect("contract is applied");
    assert!(!contract.possible && contract.plan.steps.is_empty());
}
