//! The Backfill pane lists the cluster's replication slots from the worker's facts: retained
//! WAL, lag, `wal_status` and the share of `max_slot_wal_keep_size` left, the one that blocks
//! the gates marked — whether the backfill has started or not.

use super::*;
use crate::control::slots::Slot;
use crate::tui::panes;

const MB: i64 = 1 << 20;

fn with_slots(mut s: Snapshot) -> Snapshot {
    let slot = |name: &str, kind: &str, retained: i64, safe: i64| Slot {
        name: name.into(),
        kind: kind.into(),
        active: kind == "physical",
        retained_bytes: retained,
        lag_bytes: (kind == "logical").then_some(retained),
        wal_status: Some(
            if safe < 32 * MB {
                "extended"
            } else {
                "reserved"
            }
            .into(),
        ),
        safe_wal_size: Some(safe),
    };
    s.facts.slots = vec![
        slot("analytics", "logical", 61 * MB, 3 * MB),
        slot("standby_1", "physical", 8 * MB, 56 * MB),
    ];
    s.facts.max_slot_wal_keep_size = Some(64 * MB);
    judged(s)
}

#[test]
fn backfill_pane_lists_replication_slots() {
    let vm = app_with(with_slots(backfill_running())).view();
    let text = pane(&vm, 90, 30, panes::backfill::render);
    insta::assert_snapshot!(text);
    assert!(
        text.contains("2 replication slots · 1 about to lose its WAL: gates blocked"),
        "{text}"
    );
    assert!(
        text.contains(
            "! analytics logical inactive retains 61MB · lag 61MB · extended · 5% of keep size left"
        ),
        "{text}"
    );
    assert!(
        text.contains("· standby_1 physical active retains 8MB · reserved · 88% of keep size left"),
        "{text}"
    );
    let slots = &vm.backfill.slots;
    assert!(
        slots[0].at_risk.is_some() && slots[1].at_risk.is_none(),
        "{slots:?}"
    );

    // Before the backfill starts the pane still lists them; without slots it lists none.
    let before = pane(
        &app_with(with_slots(fresh())).view(),
        90,
        12,
        panes::backfill::render,
    );
    assert!(
        before.contains("starts when the backfill phase is applied"),
        "{before}"
    );
    assert!(before.contains("! analytics logical inactive"), "{before}");
    let none = pane(&app_with(fresh()).view(), 90, 12, panes::backfill::render);
    assert!(!none.contains("replication slot"), "{none}");
}
