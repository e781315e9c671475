//! The migrations picker: several plans in several states.

use super::*;

#[test]
fn migrations_picker_lists_each_with_phase_gate_and_backfill() {
    let mut sw = three_migrations();
    let now = Instant::now();
    sw.on_key(key(']'), now);
    sw.on_key(key('m'), now);
    let vm = sw.view();
    let picker = vm.switcher.as_ref().and_then(|s| s.picker.clone()).unwrap();
    let rows = &picker.rows;
    assert_eq!(
        picker.selected, 1,
        "the picker opens on the migration on screen"
    );
    assert_eq!(
        rows.iter().map(|r| r.active).collect::<Vec<_>>(),
        [false, true, false]
    );
    assert_eq!(rows[0].phase, Some((Phase::Backfill, PhaseState::Applied)));
    assert_eq!(
        rows[0].backfill,
        Some((BackfillState::Running, Some("41.2%".to_string())))
    );
    // The picker shows the verdict the rules computed for the panes and `status`, word for word.
    let first = app_with(backfill_running()).view();
    let gate = first.gate.as_ref().unwrap();
    assert_eq!(
        rows[0].gate,
        GateVerdict::Gate {
            phase: Phase::ReadSwitch,
            verdict: gate.verdict(),
            blockers: gate.blockers.len(),
            first: gate.blockers.first().cloned(),
        }
    );
    assert!(gate.blockers.len() > 1 && gate.verdict() != Verdict::Pass);
    assert_eq!(rows[1].phase, None);
    assert_eq!(
        rows[1].gate,
        GateVerdict::Gate {
            phase: Phase::Expand,
            verdict: Verdict::Pass,
            blockers: 0,
            first: None,
        }
    );
    assert_eq!(rows[1].backfill, None);
    assert!(matches!(&rows[2].gate, GateVerdict::Unknown(_)));
    let screen = screen(&vm, 100, 30);
    assert!(screen.contains("migration 2/3 (m: switch)"), "{screen}");
    insta::assert_snapshot!(screen);
}

#[test]
fn a_passing_gate_and_a_finished_migration_in_the_picker() {
    let vm = app_with(on_v2(signed_contract(at_contract(30)), false)).view();
    let row = crate::tui::switcher::row(&vm, false);
    assert_eq!(row.phase, Some((Phase::ReadSwitch, PhaseState::Applied)));
    assert_eq!(row.backfill, None, "a finished backfill shows no progress");
    assert_eq!(
        row.gate,
        GateVerdict::Gate {
            phase: Phase::Contract,
            verdict: Verdict::Pass,
            blockers: 0,
            first: None,
        },
        "{:?}",
        vm.gate.map(|g| g.blockers)
    );
    let mut done = signed_contract(at_contract(30));
    done.facts.phases[4] = applied(Phase::Contract, at(5, 20, 40));
    let row = crate::tui::switcher::row(&app_with(judged(done)).view(), true);
    assert_eq!(row.phase, Some((Phase::Contract, PhaseState::Applied)));
    assert_eq!(row.gate, GateVerdict::Done);
    assert!(row.active);
}

#[test]
fn an_overridden_gate_reads_overridden_in_the_panes_and_the_picker() {
    let mut s = backfill_running();
    s.facts.overrides.push(OverrideFact {
        gate: Phase::ReadSwitch,
        login: "postgres".into(),
        reason: "lag probe flaps; checked by hand".into(),
        plan_sha256: plan().sha256(),
        at: at(5, 11, 0),
    });
    let vm = app_with(judged(s)).view();
    let gate = vm.gate.clone().unwrap();
    assert!(gate.passed && gate.outcome != Outcome::Pass);
    assert_eq!(gate.verdict(), Verdict::Overridden);
    assert_eq!(
        crate::tui::switcher::row(&vm, true).gate,
        GateVerdict::Gate {
            phase: Phase::ReadSwitch,
            verdict: Verdict::Overridden,
            blockers: gate.blockers.len(),
            first: gate.blockers.first().cloned(),
        }
    );
    let screen = screen(&vm, 140, 42);
    assert!(
        screen.contains("Next read_switch — gate OVERRIDDEN"),
        "{screen}"
    );
    assert!(
        screen.contains("Readiness gate read_switch OVERRIDDEN"),
        "{screen}"
    );
    assert!(
        !screen.contains("gate FAIL") && !screen.contains("gate INCONCLUSIVE"),
        "{screen}"
    );
}
