//! How the backfill's throttle stands, from its typed state ([`State::Throttled`] holds chunks
//! back, [`State::Pacing`] slows them down), worded the same by `backfill status`, the TUI and
//! the log: `pacing: easing off — app 0.79× baseline, budget 1.25×`.

use serde::Serialize;

use crate::control::backfill::State;

/// The latency guard words its reasons so (`yielding: app latency 0.79× …`).
const YIELD_PREFIX: &str = "yielding: ";

/// How the throttle stands.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(tag = "pace", content = "text", rename_all = "snake_case")]
pub enum Pace {
    /// Chunks run at full speed (or none runs for another reason: paused, stopped, …).
    Free,
    /// Chunks run, each followed by a pause (`pacing: easing off — …`).
    Pacing(String),
    /// Chunks are held back, for this reason.
    Held(String),
}

impl Pace {
    /// The pace of a backfill in `state` recorded with `reason`.
    pub fn of(state: Option<State>, reason: &str) -> Pace {
        match state {
            Some(State::Pacing) => Pace::Pacing(pacing_text(reason)),
            // A hold does not yield: it holds (the guard's re-measuring wording included).
            Some(State::Throttled) => Pace::Held(
                reason
                    .strip_prefix(YIELD_PREFIX)
                    .unwrap_or(reason)
                    .to_string(),
            ),
            _ => Pace::Free,
        }
    }
}

/// `pacing: easing off — app 0.79× baseline, budget 1.25×, pause 0.3× per chunk` from the
/// guard's own wording; `pacing: …` with the reason as it is when its figures are not there.
fn pacing_text(reason: &str) -> String {
    let rest = reason.strip_prefix(YIELD_PREFIX).unwrap_or(reason);
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
        _ if rest.is_empty() => "pacing".to_string(),
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
    fn the_state_decides_and_the_reason_words_it() {
        let easing = "yielding: app latency 0.79× baseline (limit 1.25×, pg_stat_statements); \
                      easing off, pausing 0.3× each chunk's time";
        assert_eq!(
            Pace::of(Some(State::Pacing), easing),
            Pace::Pacing(
                "pacing: easing off — app 0.79× baseline, budget 1.25×, pause 0.3× per chunk"
                    .into()
            )
        );
        let over = "yielding: app latency 1.50× baseline > 1.25× (probe: 3.00 ms vs 2.00 ms); \
                    pausing 2.0× each chunk's time";
        assert!(matches!(
            Pace::of(Some(State::Pacing), over),
            Pace::Pacing(t) if t.starts_with("pacing: slowing down — app 1.50× baseline")
        ));
        let held = "replay lag 6.2s > max 5s on replica r1";
        assert_eq!(
            Pace::of(Some(State::Throttled), held),
            Pace::Held(held.into())
        );
        // The guard's re-measuring holds the chunks: recorded as throttled, it is a hold.
        let remeasure = "yielding: re-measuring the application's latency without the backfill";
        assert_eq!(
            Pace::of(Some(State::Throttled), remeasure),
            Pace::Held("re-measuring the application's latency without the backfill".into())
        );
        // A running backfill's old reason text does not make it paced.
        assert_eq!(Pace::of(Some(State::Running), easing), Pace::Free);
        assert_eq!(Pace::of(None, ""), Pace::Free);
    }
}
