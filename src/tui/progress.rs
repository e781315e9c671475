//! The backfill's share done as every part of the screen words it (gauge, footer, picker), from
//! the computation `cutover backfill status` and the metrics use ([`crate::backfill::Share`]);
//! the pacing wording of a throttle reason; and durations as the panes word them.

pub use crate::backfill::{thousands, Share};
use crate::control::backfill::State;

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

/// `42s`, `3m05s`, `2h07m`.
pub fn human_secs(secs: i64) -> String {
    let secs = secs.max(0);
    if secs < 60 {
        format!("{secs}s")
    } else if secs < 3600 {
        format!("{}m{:02}s", secs / 60, secs % 60)
    } else {
        format!("{}h{:02}m", secs / 3600, (secs % 3600) / 60)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

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
