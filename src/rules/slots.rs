//! Replication slots near the end of their WAL. With `max_slot_wal_keep_size` set, the server
//! invalidates a slot that retains more WAL than that: its consumer (a standby, a CDC pipeline,
//! Cutover's own applier) can then never resume. A slot that has little of that allowance left,
//! is `unreserved` (over it: the next checkpoint invalidates it) or `lost` blocks every gate —
//! applying a phase writes more WAL and would push it over. "Little" is under
//! `[backfill.throttle]`'s `min_slot_safe_wal_percent` (25 by default).

use crate::control::slots::{bytes, Slot};
use crate::plan::{Plan, DEFAULT_MIN_SLOT_SAFE_WAL_PERCENT};

/// The share of `max_slot_wal_keep_size` (percent) a slot must have left under `plan`.
pub fn min_percent(plan: &Plan) -> f64 {
    plan.spec
        .backfill
        .as_ref()
        .map_or(DEFAULT_MIN_SLOT_SAFE_WAL_PERCENT, |b| {
            b.throttle.min_slot_safe_wal_percent
        })
}

/// Why `slot` blocks the gates, if it does; `keep_size` is `max_slot_wal_keep_size` in bytes
/// (`None`: unlimited, and no slot is ever invalidated); a slot with less than `min_percent` of
/// it left blocks.
pub fn at_risk(slot: &Slot, keep_size: Option<i64>, min_percent: f64) -> Option<String> {
    let keep = keep_size.map_or_else(|| "unlimited".to_string(), bytes);
    let retained = bytes(slot.retained_bytes);
    match slot.wal_status.as_deref() {
        Some("lost") => {
            return Some(format!(
                "{} slot `{}` is lost: the WAL its consumer needs was removed \
                 (max_slot_wal_keep_size {keep}); the consumer cannot resume — drop the slot \
                 (pg_drop_replication_slot) and rebuild its consumer",
                slot.kind, slot.name
            ))
        }
        Some("unreserved") => {
            return Some(format!(
                "{} slot `{}` retains {retained} of WAL, more than max_slot_wal_keep_size \
                 {keep}: the next checkpoint invalidates it unless its consumer catches up now",
                slot.kind, slot.name
            ))
        }
        _ => {}
    }
    let (keep_size, safe) = (keep_size?, slot.safe_wal_size?);
    (safe as f64 * 100.0 < keep_size as f64 * min_percent).then(|| {
        format!(
            "{} slot `{}` is {} of WAL away from being lost ({retained} retained, \
             max_slot_wal_keep_size {keep}, under {min_percent}% left): let its \
             consumer catch up, or raise max_slot_wal_keep_size",
            slot.kind,
            slot.name,
            bytes(safe)
        )
    })
}

/// Every slot at risk, by name, with why (arguments as for [`at_risk`]).
pub fn blockers(slots: &[Slot], keep_size: Option<i64>, min_percent: f64) -> Vec<(String, String)> {
    slots
        .iter()
        .filter_map(|s| at_risk(s, keep_size, min_percent).map(|why| (s.name.clone(), why)))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    const MB: i64 = 1 << 20;
    const QUARTER: f64 = 25.0;

    fn slot(status: &str, retained: i64, safe: Option<i64>) -> Slot {
        Slot {
            name: "analytics".into(),
            kind: "logical".into(),
            active: false,
            retained_bytes: retained,
            lag_bytes: Some(retained),
            wal_status: Some(status.into()),
            safe_wal_size: safe,
        }
    }

    #[test]
    fn a_slot_with_most_of_its_allowance_left_does_not_block() {
        assert_eq!(
            at_risk(
                &slot("reserved", 10 * MB, Some(54 * MB)),
                Some(64 * MB),
                QUARTER
            ),
            None
        );
        // Exactly a quarter left is still enough.
        assert_eq!(
            at_risk(
                &slot("extended", 48 * MB, Some(16 * MB)),
                Some(64 * MB),
                QUARTER
            ),
            None
        );
    }

    #[test]
    fn a_slot_under_a_quarter_of_its_allowance_left_blocks() {
        let why = at_risk(
            &slot("extended", 50 * MB, Some(14 * MB)),
            Some(64 * MB),
            QUARTER,
        )
        .unwrap();
        assert_eq!(
            why,
            "logical slot `analytics` is 14MB of WAL away from being lost (50MB retained, \
             max_slot_wal_keep_size 64MB, under 25% left): let its consumer catch up, or raise \
             max_slot_wal_keep_size"
        );
    }

    #[test]
    fn unreserved_and_lost_slots_block_whatever_is_left() {
        let unreserved = at_risk(
            &slot("unreserved", 70 * MB, Some(-6 * MB)),
            Some(64 * MB),
            QUARTER,
        );
        assert!(
            unreserved
                .as_deref()
                .is_some_and(|w| w.contains("retains 70MB")
                    && w.contains("the next checkpoint invalidates it")),
            "{unreserved:?}"
        );
        let lost = at_risk(&slot("lost", 0, None), Some(64 * MB), QUARTER);
        assert!(
            lost.as_deref()
                .is_some_and(|w| w.contains("`analytics` is lost")),
            "{lost:?}"
        );
    }

    #[test]
    fn without_a_limit_no_slot_is_at_risk_by_size() {
        assert_eq!(
            at_risk(&slot("reserved", 1 << 40, None), None, QUARTER),
            None
        );
        let slots = [
            slot("reserved", MB, Some(63 * MB)),
            Slot {
                name: "standby_1".into(),
                kind: "physical".into(),
                lag_bytes: None,
                ..slot("extended", 60 * MB, Some(4 * MB))
            },
        ];
        let found = blockers(&slots, Some(64 * MB), QUARTER);
        assert_eq!(found.len(), 1, "{found:?}");
        assert_eq!(found[0].0, "standby_1");
        assert!(
            found[0].1.starts_with("physical slot `standby_1` is 4MB"),
            "{found:?}"
        );
    }

    #[test]
    fn the_share_left_that_blocks_is_the_plans() {
        let s = slot("extended", 40 * MB, Some(24 * MB));
        // 24 of 64 MB left is 37.5 %: enough for the default quarter, not for a half.
        assert_eq!(at_risk(&s, Some(64 * MB), QUARTER), None);
        let why = at_risk(&s, Some(64 * MB), 50.0).unwrap();
        assert!(why.contains("under 50% left"), "{why}");
        // A share below the default lets a slot with less left pass.
        let low = slot("extended", 56 * MB, Some(8 * MB));
        assert!(at_risk(&low, Some(64 * MB), QUARTER).is_some());
        assert_eq!(at_risk(&low, Some(64 * MB), 10.0), None);
        assert_eq!(blockers(&[s, low], Some(64 * MB), 12.5).len(), 0);
    }
}
