//! One number per fact: the backfill's share done as every part of the screen words it (gauge,
//! footer, picker), from the same computation `cutover backfill status` and the metrics use
//! ([`crate::backfill::progress::percent`]); and the pacing wording of a throttle reason.

use crate::control::backfill::State;

/// Rows done out of a total that stays an estimate until the backfill is done.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Share {
    /// Rows covered.
    pub done: i64,
    /// Rows in total (`None`: unknown).
    pub total: Option<i64>,
    /// The total is counted, not estimated (the backfill is done).
    pub exact: bool,
    /// Percent done, 100 only once done; `None` while the total is unknown.
    pub percent: Option<f64>,
}

impl Share {
    /// The share of a backfill in `state` with `done` rows of an estimated `total`.
    pub fn new(state: Option<State>, done: i64, total: Option<i64>) -> Share {
        let finished = state == Some(State::Done);
        let total = if finished {
            Some(done.max(total.unwrap_or(0)))
        } else {
            total.filter(|t| *t > 0)
        };
        let percent = total.map(|t| {
            crate::backfill::progress::percent(
                state.unwrap_or(State::Idle),
                done,
                (t - done).max(0),
            )
        });
        Share {
            done,
            total,
            exact: finished,
            percent,
        }
    }

    /// `41.2%`, the one wording of the percentage.
    pub fn percent_text(&self) -> Option<String> {
        self.percent.map(|p| format!("{p:.1}%"))
    }

    /// `1,000,000` once counted, `~1.0M` / `~300k` while estimated.
    pub fn total_text(&self) -> Option<String> {
        self.total.map(|t| {
            if self.exact {
                thousands(t)
            } else {
                format!("~{}", approx(t))
            }
        })
    }

    /// `412,000 / ~1.0M rows`, or `412,000 rows` without a total.
    pub fn rows_text(&self) -> String {
        match self.total_text() {
            Some(t) => format!("{} / {t} rows", thousands(self.done)),
            None => format!("{} rows", thousands(self.done)),
        }
    }
}

/// `1234567` → `1,234,567`.
pub fn thousands(n: i64) -> String {
    let digits = n.unsigned_abs().to_string();
    let mut out = String::with_capacity(digits.len() + digits.len() / 3 + 1);
    for (i, c) in digits.chars().enumerate() {
        if i > 0 && (digits.len() - i).is_multiple_of(3) {
            out.push(',');
        }
        out.push(c);
    }
    if n < 0 {
        format!("-{out}")
    } else {
        out
    }
}

/// `950`, `12k`, `300k`, `1.2M`: an estimate rounded to what it can promise.
fn approx(n: i64) -> String {
    let n = n.max(0);
    if n < 1_000 {
        n.to_string()
    } else if n < 1_000_000 {
        format!("{}k", (n + 500) / 1_000)
    } else {
        format!("{:.1}M", n as f64 / 1e6)
    }
}

/// The latency guard's reasons start so: its chunks keep running, each followed by a pause.
const YIELD_PREFIX: &str = "yielding: ";

/// How the throttle stands, from the recorded state and reason. The runner records the latency
/// guard's pacing as `throttled` too; only a reason that holds chunks back is a throttle.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Pace {
    /// Chunks run at full speed.
    Free,
    /// Chunks run, each followed by a pause (`pacing: easing off — …`).
    Pacing(String),
    /// Chunks are held back, for this reason.
    Held(String),
}

impl Pace {
    /// Classifies a backfill in `state` recorded with `reason`.
    pub fn of(state: Option<State>, reason: &str) -> Pace {
        if state != Some(State::Throttled) {
            return Pace::Free;
        }
        match reason.strip_prefix(YIELD_PREFIX) {
            // Re-measuring the application's latency holds the chunks back.
            Some(rest) if !rest.starts_with("re-measuring") => Pace::Pacing(pacing_text(rest)),
            _ => Pace::Held(reason.to_string()),
        }
    }
}

/// `pacing: easing off — app 0.79× baseline, budget 1.25×` from the guard's own wording.
fn pacing_text(rest: &str) -> String {
    let ratio = figure_after(rest, "app latency ");
    let limit = figure_after(rest, "limit ").or_else(|| figure_after(rest, "> "));
    let pause = figure_after(rest, "pausing ");
    match (ratio, limit) {
        (Some(r), Some(l)) => {
            let over = r.parse::<f64>().ok() > l.parse::<f64>().ok();
            let pause = pause
                .map(|p| format!(", pause {p}× per chunk"))
                .unwrap_or_default();
            format!(
                "pacing: {} — app {r}× baseline, budget {l}×{pause}",
                if over { "slowing down" } else { "easing off" }
            )
        }
        _ => format!("pacing: {rest}"),
    }
}

/// The number written just after `marker` and before `×` (`app latency 0.79×` → `0.79`).
fn figure_after<'a>(text: &'a str, marker: &str) -> Option<&'a str> {
    let start = text.find(marker)? + marker.len();
    let figure = text[start..].split('×').next()?;
    (!figure.is_empty() && figure.chars().all(|c| c.is_ascii_digit() || c == '.')).then_some(figure)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_estimate_reads_as_one_until_done() {
        let s = Share::new(Some(State::Running), 412_000, Some(1_000_000));
        assert_eq!(s.rows_text(), "412,000 / ~1.0M rows");
        assert_eq!(s.percent_text().as_deref(), Some("41.2%"));
        let s = Share::new(Some(State::Running), 187_000, Some(300_085));
        assert_eq!(s.total_text().as_deref(), Some("~300k"));
        let s = Share::new(Some(State::Done), 300_085, Some(300_000));
        assert_eq!(s.rows_text(), "300,085 / 300,085 rows");
        assert_eq!(s.percent_text().as_deref(), Some("100.0%"));
        let s = Share::new(Some(State::Running), 999_999, Some(1_000_000));
        assert_eq!(s.percent_text().as_deref(), Some("99.9%"));
        assert_eq!(Share::new(None, 0, None).percent_text(), None);
    }

    #[test]
    fn pacing_under_budget_is_not_a_throttle() {
        let easing = "yielding: app latency 0.79× baseline (limit 1.25×, pg_stat_statements); \
                      easing off, pausing 0.3× each chunk's time";
        assert_eq!(
            Pace::of(Some(State::Throttled), easing),
            Pace::Pacing(
                "pacing: easing off — app 0.79× baseline, budget 1.25×, pause 0.3× per chunk"
                    .into()
            )
        );
        let over = "yielding: app latency 1.50× baseline > 1.25× (probe: 3.00 ms vs 2.00 ms); \
                    pausing 2.0× each chunk's time";
        assert!(matches!(
            Pace::of(Some(State::Throttled), over),
            Pace::Pacing(t) if t.starts_with("pacing: slowing down — app 1.50× baseline")
        ));
        let held = "replay lag 6.2s > max 5s on replica r1";
        assert_eq!(
            Pace::of(Some(State::Throttled), held),
            Pace::Held(held.into())
        );
        let remeasure = "yielding: re-measuring the application's latency without the backfill";
        assert!(matches!(
            Pace::of(Some(State::Throttled), remeasure),
            Pace::Held(_)
        ));
        assert_eq!(Pace::of(Some(State::Running), ""), Pace::Free);
    }
}
