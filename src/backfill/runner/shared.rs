//! What the tasks of one run share: the plan, the key, the options, the throttle's verdict, the
//! shutdown signal, this process's totals and when it last ran a chunk.

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use tokio::sync::watch;

use crate::backfill::keys::KeySpec;
use crate::backfill::throttle::Verdict;
use crate::backfill::RunOptions;
use crate::db::DbConfig;
use crate::plan::{BackfillSpec, Plan};

/// When this process last ran a chunk (the latency guard measures its baseline while quiet).
pub(super) struct Activity {
    base: Instant,
    in_flight: AtomicU64,
    /// Milliseconds after `base` when the latest chunk ended.
    last_end_ms: AtomicU64,
    /// The throttle's latest reading: chunks may run and the application is idle, so the
    /// `idle_workers` may run too.
    app_idle: AtomicBool,
}

impl Activity {
    pub(super) fn new() -> Activity {
        Activity {
            base: Instant::now(),
            in_flight: AtomicU64::new(0),
            last_end_ms: AtomicU64::new(0),
            app_idle: AtomicBool::new(false),
        }
    }

    pub(super) fn begin(&self) {
        self.in_flight.fetch_add(1, Ordering::Relaxed);
    }

    pub(super) fn end(&self) {
        let ms = self.base.elapsed().as_millis() as u64;
        self.last_end_ms.fetch_max(ms, Ordering::Relaxed);
        self.in_flight.fetch_sub(1, Ordering::Relaxed);
    }

    pub(super) fn app_idle(&self) -> bool {
        self.app_idle.load(Ordering::Relaxed)
    }

    pub(super) fn set_app_idle(&self, idle: bool) {
        self.app_idle.store(idle, Ordering::Relaxed);
    }

    /// How long no chunk has run in this process.
    pub(super) fn quiet_for(&self) -> Duration {
        if self.in_flight.load(Ordering::Relaxed) > 0 {
            return Duration::ZERO;
        }
        let last = Duration::from_millis(self.last_end_ms.load(Ordering::Relaxed));
        self.base.elapsed().saturating_sub(last)
    }
}

/// What this process's workers did, summed.
#[derive(Default)]
pub(super) struct Totals {
    pub(super) chunks: AtomicU64,
    pub(super) scanned: AtomicU64,
    pub(super) updated: AtomicU64,
}

/// What every local worker of one run shares.
pub(super) struct Shared {
    pub(super) cfg: DbConfig,
    pub(super) plan: Plan,
    pub(super) spec: BackfillSpec,
    pub(super) keys: KeySpec,
    pub(super) opts: RunOptions,
    pub(super) verdict: watch::Receiver<Verdict>,
    pub(super) shutdown: watch::Receiver<bool>,
    pub(super) totals: Totals,
    pub(super) activity: Arc<Activity>,
    /// Woken when a local worker ends (done, stopped, failed): the others look at the state
    /// row at once instead of after their poll interval.
    pub(super) ended: tokio::sync::Notify,
}
