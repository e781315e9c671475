//! Replication slots as throttle signals: the WAL each slot retains (`restart_lsn` behind the
//! current WAL), how far a logical slot's consumer lags (`confirmed_flush_lsn`), `wal_status`
//! and `safe_wal_size`, held against `[backfill.throttle]`'s `max_slot_retained_wal` and
//! `max_slot_lag`. Cutover's own slots (`cutover_*`) are read and shown but never hold the
//! backfill back: they are consumed by Cutover's own applier.

use std::time::Instant;

use tokio_postgres::GenericClient;

use crate::control::slots::bytes;
pub use crate::control::slots::{read, Slot};
use crate::plan::{Size, ThrottleSpec};

/// The first slot over one of `spec`'s limits, as a throttle reason.
pub fn over_limit(spec: &ThrottleSpec, slots: &[Slot]) -> Option<String> {
    let over = |bytes: i64, limit: Option<Size>| {
        limit.filter(|l| u64::try_from(bytes).is_ok_and(|b| b > l.bytes()))
    };
    slots.iter().filter(|s| !s.is_cutover_own()).find_map(|s| {
        if let Some(limit) = over(s.retained_bytes, spec.max_slot_retained_wal) {
            return Some(format!(
                "replication slot `{}` retains {} of WAL > limit {limit}",
                s.name,
                bytes(s.retained_bytes)
            ));
        }
        let lag = s.lag_bytes?;
        over(lag, spec.max_slot_lag).map(|limit| {
            format!(
                "logical slot `{}` lags {} behind the WAL > limit {limit}",
                s.name,
                bytes(lag)
            )
        })
    })
}

/// The slot signal of one throttle evaluator: read each time, failing closed after
/// `fail_closed_after` without a reading.
pub struct SlotWatch {
    last_ok: Instant,
    last_reason: Option<String>,
}

impl Default for SlotWatch {
    fn default() -> Self {
        SlotWatch {
            last_ok: Instant::now(),
            last_reason: None,
        }
    }
}

impl SlotWatch {
    /// Why the slots hold the backfill back now, if they do. Reads nothing when `spec` sets no
    /// slot limit.
    pub async fn reason(
        &mut self,
        client: Option<&impl GenericClient>,
        spec: &ThrottleSpec,
    ) -> Option<String> {
        if spec.max_slot_retained_wal.is_none() && spec.max_slot_lag.is_none() {
            return None;
        }
        let reading = match client {
            Some(c) => read(c).await.map_err(|e| e.to_string()),
            None => Err("no monitoring connection".to_string()),
        };
        match reading {
            Ok(slots) => {
                self.last_ok = Instant::now();
                self.last_reason = over_limit(spec, &slots);
                self.last_reason.clone()
            }
            Err(err) if self.last_ok.elapsed() >= spec.fail_closed_after.std() => Some(format!(
                "fail-closed: replication slots unreadable for {:.0}s (limit {}): {err}",
                self.last_ok.elapsed().as_secs_f64(),
                spec.fail_closed_after
            )),
            Err(err) => {
                tracing::warn!("replication slots unreadable: {err}");
                self.last_reason.clone()
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn slot(name: &str, retained: i64, lag: Option<i64>) -> Slot {
        Slot {
            name: name.into(),
            kind: if lag.is_some() { "logical" } else { "physical" }.into(),
            active: false,
            retained_bytes: retained,
            lag_bytes: lag,
            wal_status: Some("reserved".into()),
            safe_wal_size: None,
        }
    }

    #[test]
    fn the_first_foreign_slot_over_a_limit_is_the_reason() {
        let spec = ThrottleSpec {
            max_slot_retained_wal: "1GB".parse().ok(),
            max_slot_lag: "100MB".parse().ok(),
            ..ThrottleSpec::default()
        };
        let own = slot("cutover_cdc", 5 << 30, Some(5 << 30));
        let lagging = slot("analytics", 10 << 20, Some(200 << 20));
        assert_eq!(over_limit(&spec, std::slice::from_ref(&own)), None);
        assert_eq!(
            over_limit(&spec, &[own, lagging]).as_deref(),
            Some("logical slot `analytics` lags 200MB behind the WAL > limit 100MB")
        );
        let standby = slot("standby_1", 3 << 30, None);
        assert_eq!(
            over_limit(&spec, &[standby]).as_deref(),
            Some("replication slot `standby_1` retains 3GB of WAL > limit 1GB")
        );
        assert_eq!(
            over_limit(&ThrottleSpec::default(), &[slot("x", 1 << 40, None)]),
            None
        );
    }
}
