//! Adaptive chunk size: aims each chunk at the target chunk time.
//!
//! The throughput estimate is a decayed ratio of rows to seconds over recent chunks
//! (`rows ← 0.75·rows + n`, `secs ← 0.75·secs + t`), so one odd chunk moves it only a little.
//! The next size is `throughput × target`, growing at most 1.5× per chunk, within
//! `[floor, ceiling]`. A chunk that ran more than [`FAR_OVER`]× the target cuts the size to a
//! tenth at once, and a chunk that hit its time cap (statement timeout, lock timeout) is retried
//! at a quarter of its size.
//!
//! A WAL byte budget bounds the size too: with `b` the decayed WAL bytes per row of recent
//! chunks, a chunk covers at most `budget / b` rows (never below the floor); while the latency
//! guard yields with pause `p`, at most `budget / (1 + p) / b`.

use std::time::Duration;

/// Decay of the smoothed rows/seconds sums per chunk.
const DECAY: f64 = 0.75;
/// Largest growth factor from one chunk to the next.
const MAX_GROWTH: f64 = 1.5;
/// A chunk slower than this multiple of the target cuts the size at once.
pub(crate) const FAR_OVER: f64 = 4.0;

/// The adaptive chunk sizer of one worker.
#[derive(Debug, Clone)]
pub(crate) struct Sizer {
    size: f64,
    floor: f64,
    ceiling: f64,
    rows: f64,
    secs: f64,
    /// Decayed (WAL bytes, rows) of recent chunks.
    wal: (f64, f64),
    /// The WAL budget per chunk (bytes; 0 = none).
    wal_budget: f64,
}

impl Sizer {
    /// A sizer starting at `initial` rows, kept within `[floor, ceiling]`.
    pub(crate) fn new(initial: u32, floor: u32, ceiling: u32) -> Sizer {
        let floor = f64::from(floor.max(1));
        let ceiling = f64::from(ceiling).max(floor);
        Sizer {
            size: f64::from(initial).clamp(floor, ceiling),
            floor,
            ceiling,
            rows: 0.0,
            secs: 0.0,
            wal: (0.0, 0.0),
            wal_budget: 0.0,
        }
    }

    /// Bounds each chunk's WAL to `bytes` (0 = no bound).
    pub fn with_wal_budget(mut self, bytes: f64) -> Sizer {
        self.wal_budget = bytes.max(0.0);
        self
    }

    /// The next chunk's size in rows.
    pub fn size(&self) -> u32 {
        self.size_yielding(1.0)
    }

    /// The next chunk's size in rows while the latency guard yields: the WAL budget shrinks by
    /// `1 + pause` like the chunk time, so that an application commit waiting for the WAL flush
    /// behind a chunk waits for a small one.
    pub fn size_yielding(&self, one_plus_pause: f64) -> u32 {
        let mut size = self.size;
        if self.wal_budget > 0.0 && self.wal.0 > 0.0 && self.wal.1 > 0.0 {
            let per_row = self.wal.0 / self.wal.1;
            let budget = self.wal_budget / one_plus_pause.max(1.0);
            size = size.min((budget / per_row).max(self.floor));
        }
        size.round() as u32
    }

    /// Feeds the WAL a committed chunk of `rows` keys wrote.
    pub fn observe_wal(&mut self, rows: u64, bytes: i64) {
        if rows > 0 && bytes > 0 {
            self.wal = (
                DECAY * self.wal.0 + bytes as f64,
                DECAY * self.wal.1 + rows as f64,
            );
        }
    }

    /// Feeds one committed chunk: `rows` keys covered in `elapsed`, aiming at `target`.
    pub(crate) fn observe(&mut self, rows: u64, elapsed: Duration, target: Duration) {
        let t = elapsed.as_secs_f64().max(1e-4);
        let target = target.as_secs_f64().max(1e-3);
        if rows == 0 {
            return;
        }
        if t > FAR_OVER * target {
            self.size = (self.size / 10.0).clamp(self.floor, self.ceiling);
            self.rows = 0.0;
            self.secs = 0.0;
            return;
        }
        self.rows = DECAY * self.rows + rows as f64;
        self.secs = DECAY * self.secs + t;
        let ideal = self.rows / self.secs * target;
        self.size = ideal
            .min(self.size * MAX_GROWTH)
            .clamp(self.floor, self.ceiling);
    }

    /// A chunk hit its time cap and was rolled back: retry at a quarter of the size.
    pub(crate) fn timed_out(&mut self) {
        self.size = (self.size / 4.0).clamp(self.floor, self.ceiling);
        self.rows = 0.0;
        self.secs = 0.0;
    }

    /// True when the size is at its floor.
    pub(crate) fn at_floor(&self) -> bool {
        self.size <= self.floor
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const MS: fn(u64) -> Duration = Duration::from_millis;

    #[test]
    fn converges_toward_the_target_with_bounded_growth() {
        let mut s = Sizer::new(1000, 50, 100_000);
        // 10 000 rows/s: the ideal at 300 ms is 3000 rows.
        s.observe(1000, MS(100), MS(300));
        assert_eq!(s.size(), 1500, "growth is capped at 1.5x");
        for _ in 0..20 {
            let n = s.size() as u64;
            s.observe(n, Duration::from_secs_f64(n as f64 / 10_000.0), MS(300));
        }
        assert!((2900..=3100).contains(&s.size()), "{}", s.size());
    }

    #[test]
    fn shrinks_when_slow_and_cuts_when_far_over() {
        let mut s = Sizer::new(4000, 50, 100_000);
        s.observe(4000, MS(600), MS(300));
        assert_eq!(s.size(), 2000);
        s.observe(2000, MS(2000), MS(300));
        assert_eq!(s.size(), 200, "far over target: a tenth at once");
        s.timed_out();
        assert_eq!(s.size(), 50);
        assert!(s.at_floor());
    }

    #[test]
    fn the_wal_budget_bounds_the_size() {
        let mut s = Sizer::new(4000, 50, 100_000).with_wal_budget(1_048_576.0);
        assert_eq!(s.size(), 4000, "no WAL seen yet");
        // 512 bytes a row: a 1 MiB budget allows 2048 rows.
        s.observe_wal(4000, 4000 * 512);
        assert_eq!(s.size(), 2048);
        // A WAL surge (full-page images after a checkpoint): 8 KiB a row.
        for _ in 0..20 {
            s.observe_wal(100, 100 * 8192);
        }
        assert!((128..=140).contains(&s.size()), "{}", s.size());
        for _ in 0..20 {
            s.observe_wal(100, 100 * 1_000_000);
        }
        assert_eq!(s.size(), 50, "never below the floor");
    }

    #[test]
    fn respects_floor_and_ceiling() {
        let mut s = Sizer::new(10, 50, 100);
        assert_eq!(s.size(), 50);
        for _ in 0..10 {
            s.observe(100, MS(1), MS(300));
        }
        assert_eq!(s.size(), 100);
    }

    #[test]
    fn a_yielding_guard_shrinks_the_wal_budget_with_its_pause() {
        let mut s = Sizer::new(10_000, 10, 100_000).with_wal_budget(1_000_000.0);
        s.observe_wal(1000, 500_000);
        assert_eq!(s.size(), 2000, "1 MB at 500 B per row");
        assert_eq!(s.size_yielding(4.0), 500);
        assert_eq!(s.size_yielding(1_000.0), 10, "never below the floor");
    }
}
