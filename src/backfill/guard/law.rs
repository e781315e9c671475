//! The latency guard's control law: the share of the time chunks run (the duty), from one
//! judged reading at a time.
//!
//! What it is built against: the application feels a backfill's writes with a lag (the commit
//! probe's p95 spans [`COMMIT_WINDOW`], and the server writes dirty pages back seconds later),
//! and it feels bursts far more than a steady rate. A law that speeds up as fast as it slows
//! down oscillates against such a lag, and each swing up is a burst the application pays for at
//! p99. So:
//! - over budget, the duty is cut (×0.5 to ×0.7, by how far over) — at most once per
//!   [`CUT_HOLD`], so that one slow moment, which stays in the readings for seconds, counts once;
//!   the duty it was cut from becomes the *ceiling*, remembered for [`CEILING_MEMORY`] (a passing
//!   disturbance may have set it);
//! - comfortably under budget (below half the allowed rise) it grows one step once a whole
//!   [`COMMIT_WINDOW`] has been read at the current duty: ×1.06 from half the ceiling up, ×1.25
//!   below it or with no ceiling; near the limit it holds;
//! - it never falls below [`MIN_DUTY`]; at a duty of 1 the guard clears.

use std::time::{Duration, Instant};

use crate::backfill::tail::COMMIT_WINDOW;

/// Largest pause factor: chunks then run 1/(1+20) ≈ 5 % of the time.
pub const MAX_PAUSE: f64 = 20.0;
/// Smallest duty (the share of the time chunks run): pause [`MAX_PAUSE`].
pub const MIN_DUTY: f64 = 1.0 / (1.0 + MAX_PAUSE);
/// The duty a backfill starts at when the application is there: one tenth of the time, from
/// which it speeds up reading by reading while the latency stays within budget.
pub const START_DUTY: f64 = 0.1;
/// After a cut, readings over budget within this long do not cut again.
pub const CUT_HOLD: Duration = Duration::from_secs(2);
/// How long a ceiling is remembered after the cut that set it.
pub const CEILING_MEMORY: Duration = Duration::from_secs(30);
/// Growth per step from half the ceiling up, and otherwise.
const SLOW_GROWTH: f64 = 1.06;
const FAST_GROWTH: f64 = 1.25;

/// The law's state.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct DutyCycle {
    /// Share of the time chunks run, in [`MIN_DUTY`, 1].
    duty: f64,
    /// The duty the latency last went over budget at, and when.
    ceiling: Option<(f64, Instant)>,
    /// When the duty was last cut.
    last_cut: Option<Instant>,
    /// When the duty last changed (a step up waits for a whole window read at the new duty).
    changed: Option<Instant>,
}

impl Default for DutyCycle {
    fn default() -> DutyCycle {
        DutyCycle::free()
    }
}

impl DutyCycle {
    /// Chunks run all the time.
    pub fn free() -> DutyCycle {
        DutyCycle {
            duty: 1.0,
            ceiling: None,
            last_cut: None,
            changed: None,
        }
    }

    /// The share of the time chunks run.
    pub fn duty(&self) -> f64 {
        self.duty
    }

    /// The duty the latency last went over budget at, while remembered.
    pub fn ceiling(&self) -> Option<f64> {
        self.ceiling.map(|c| c.0)
    }

    /// The pause after each chunk, as a multiple of its time (0 when free).
    pub fn pause(&self) -> f64 {
        if self.duty >= 1.0 {
            0.0
        } else {
            1.0 / self.duty - 1.0
        }
    }

    /// True at the smallest duty.
    pub fn at_minimum(&self) -> bool {
        self.duty <= MIN_DUTY * 1.0001
    }

    /// At most `duty` (a slow start), from `now`.
    pub fn at_most(self, duty: f64, now: Instant) -> DutyCycle {
        DutyCycle {
            duty: self.duty.min(duty).max(MIN_DUTY),
            changed: Some(now),
            ..self
        }
    }

    /// Forgets the ceiling (a new baseline makes it stale).
    pub fn without_ceiling(self) -> DutyCycle {
        DutyCycle {
            ceiling: None,
            ..self
        }
    }

    /// The state after one reading of `ratio` (latency over baseline) against `limit` at `now`.
    pub fn step(self, ratio: f64, limit: f64, now: Instant) -> DutyCycle {
        let ceiling = self
            .ceiling
            .filter(|(_, at)| now.saturating_duration_since(*at) < CEILING_MEMORY);
        if ratio > limit {
            let held = self
                .last_cut
                .is_some_and(|t| now.saturating_duration_since(t) < CUT_HOLD);
            if held {
                return DutyCycle { ceiling, ..self };
            }
            let over = ((ratio - limit) / (limit - 1.0).max(0.01)).clamp(0.0, 1.0);
            return DutyCycle {
                duty: (self.duty * (0.7 - 0.2 * over)).max(MIN_DUTY),
                ceiling: Some((self.duty, now)),
                last_cut: Some(now),
                changed: Some(now),
            };
        }
        let comfortable = ratio < 1.0 + (limit - 1.0) / 2.0;
        let read_whole = self
            .changed
            .is_none_or(|t| now.saturating_duration_since(t) >= COMMIT_WINDOW);
        if !comfortable || !read_whole || self.duty >= 1.0 {
            return DutyCycle { ceiling, ..self };
        }
        let growth = match ceiling {
            Some((c, _)) if self.duty >= c / 2.0 => SLOW_GROWTH,
            _ => FAST_GROWTH,
        };
        DutyCycle {
            duty: (self.duty * growth).min(1.0),
            ceiling,
            last_cut: self.last_cut,
            changed: Some(now),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// `n` readings of `ratio`, 250 ms apart.
    fn steps(mut c: DutyCycle, n: usize, ratio: f64, t: &mut Instant) -> DutyCycle {
        for _ in 0..n {
            *t += Duration::from_millis(250);
            c = c.step(ratio, 1.25, *t);
        }
        c
    }

    #[test]
    fn one_slow_moment_cuts_once_and_further_over_cuts_deeper() {
        let t0 = Instant::now();
        let c = DutyCycle::free().at_most(0.4, t0);
        let mild = c.step(1.3, 1.25, t0);
        let far = c.step(3.0, 1.25, t0);
        assert!((mild.duty() - 0.4 * 0.66).abs() < 1e-9, "{mild:?}");
        assert!((far.duty() - 0.4 * 0.5).abs() < 1e-9, "{far:?}");
        assert_eq!(far.ceiling(), Some(0.4));
        // The same slow moment read again within the hold: no second cut.
        let again = far.step(3.0, 1.25, t0 + Duration::from_millis(1500));
        assert_eq!(again.duty(), far.duty());
        let later = far.step(3.0, 1.25, t0 + CUT_HOLD);
        assert!(later.duty() < far.duty());
    }

    #[test]
    fn it_steps_up_once_a_window_slowly_near_the_ceiling_and_holds_near_the_limit() {
        let t_cut = Instant::now();
        let mut t = t_cut;
        let cut = DutyCycle::free().at_most(0.4, t).step(1.3, 1.25, t);
        assert!((cut.duty() - 0.264).abs() < 1e-9, "{cut:?}");
        // No step up until a whole window has been read at the new duty.
        let early = steps(cut, 15, 1.0, &mut t);
        assert_eq!(early.duty(), cut.duty());
        let stepped = steps(early, 1, 1.0, &mut t);
        assert!((stepped.duty() - 0.264 * 1.06).abs() < 1e-9, "{stepped:?}");
        // Far below the ceiling, bigger steps.
        let low = stepped.at_most(0.1, t);
        let fast = steps(low, 16, 1.0, &mut t);
        assert!((fast.duty() - 0.125).abs() < 1e-9, "{fast:?}");
        // Within the budget but above half the allowed rise: it holds.
        let near = steps(stepped, 40, 1.2, &mut t);
        assert_eq!(near.duty(), stepped.duty());
        // Twenty seconds of comfortable readings after the cut: still below the duty it was cut
        // from.
        let mut t = t_cut;
        let later = steps(cut, 80, 1.0, &mut t);
        assert!(later.duty() < 0.4, "{later:?}");
    }

    #[test]
    fn it_stays_within_its_bounds_and_clears_at_full_duty() {
        let mut t = Instant::now();
        let low = steps(DutyCycle::free(), 200, 9.0, &mut t);
        assert!(low.at_minimum());
        assert!((low.pause() - MAX_PAUSE).abs() < 1e-9, "{low:?}");
        let high = steps(low.without_ceiling(), 4000, 1.0, &mut t);
        assert_eq!(high.duty(), 1.0);
        assert_eq!(high.pause(), 0.0);
        assert_eq!(DutyCycle::free().at_most(START_DUTY, t).pause(), 9.0);
    }
}
