//! One number per fact: rows done, the total and the percent of a backfill as every reader
//! words them — `cutover status`, `backfill status`, the metrics and the TUI's gauge, footer and
//! picker. An estimated total reads as one (`~300k`) until the backfill is done.

use serde::ser::{Serialize, SerializeStruct, Serializer};

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
        let percent = total.map(|t| percent(state.unwrap_or(State::Idle), done, (t - done).max(0)));
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

/// As JSON: `{"percent": 41.2, "rows_done": 412000, "total": 1000000, "estimate": true}`
/// (`percent` rounded as [`Share::percent_text`] shows it; `total` null while unknown).
impl Serialize for Share {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        let mut st = s.serialize_struct("Share", 4)?;
        st.serialize_field("percent", &self.percent.map(|p| (p * 10.0).round() / 10.0))?;
        st.serialize_field("rows_done", &self.done)?;
        st.serialize_field("total", &self.total)?;
        st.serialize_field("estimate", &(self.total.is_some() && !self.exact))?;
        st.end()
    }
}

/// Percent done from the keys covered and the keys still pending: 100 only when done, else at
/// most 99.9 (rounded down, so it never reads 100.0 early).
fn percent(state: State, done: i64, remaining: i64) -> f64 {
    if state == State::Done {
        return 100.0;
    }
    let total = done.max(0) + remaining.max(0);
    if total == 0 {
        return 0.0;
    }
    ((done.max(0) as f64 / total as f64 * 1000.0).floor() / 10.0).min(99.9)
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn percent_reaches_100_only_when_done() {
        assert_eq!(percent(State::Running, 1_999_999, 1), 99.9);
        assert_eq!(percent(State::Running, 10, 0), 99.9);
        assert_eq!(percent(State::Running, 94, 6), 94.0);
        assert_eq!(percent(State::Done, 10, 5), 100.0);
        assert_eq!(percent(State::Idle, 0, 0), 0.0);
    }

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
    fn json_carries_what_the_gauge_shows() {
        let s = Share::new(Some(State::Running), 187_000, Some(300_085));
        assert_eq!(
            serde_json::to_value(s).unwrap(),
            serde_json::json!({
                "percent": 62.3, "rows_done": 187_000, "total": 300_085, "estimate": true
            })
        );
        let done = Share::new(Some(State::Done), 300_085, Some(300_000));
        assert_eq!(serde_json::to_value(done).unwrap()["estimate"], false);
        let unknown = serde_json::to_value(Share::new(None, 0, None)).unwrap();
        assert!(unknown["total"].is_null() && unknown["percent"].is_null());
    }
}
