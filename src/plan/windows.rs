//! Allowed time windows for heavy work and freeze periods.

use chrono::{DateTime, NaiveTime, Utc};

use super::Windows;

/// A daily window `HH:MM-HH:MM` in UTC; it may wrap midnight.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct DailyWindow {
    /// Start (inclusive).
    pub start: NaiveTime,
    /// End (exclusive).
    pub end: NaiveTime,
}

/// A time or window that does not parse.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub(crate) enum BadTime {
    /// No `-` between two times.
    #[error("invalid window `{0}`: expected `HH:MM-HH:MM`")]
    Window(String),
    /// One side of a window is not `HH:MM`.
    #[error("invalid time `{time}` in window `{window}`: {error}")]
    Time {
        /// The side.
        time: String,
        /// The whole window.
        window: String,
        /// Why.
        error: chrono::ParseError,
    },
    /// Not an RFC 3339 timestamp.
    #[error("invalid timestamp `{text}`: {error} (write e.g. 2026-12-20T00:00:00Z)")]
    Instant {
        /// As written.
        text: String,
        /// Why.
        error: chrono::ParseError,
    },
}

impl DailyWindow {
    /// Parses `HH:MM-HH:MM`.
    pub(crate) fn parse(text: &str) -> Result<DailyWindow, BadTime> {
        let (a, b) = text
            .split_once('-')
            .ok_or_else(|| BadTime::Window(text.to_string()))?;
        let time = |t: &str| {
            NaiveTime::parse_from_str(t.trim(), "%H:%M").map_err(|error| BadTime::Time {
                time: t.trim().to_string(),
                window: text.to_string(),
                error,
            })
        };
        Ok(DailyWindow {
            start: time(a)?,
            end: time(b)?,
        })
    }

    /// True when `t` is inside the window.
    pub(crate) fn contains(&self, t: NaiveTime) -> bool {
        if self.start <= self.end {
            t >= self.start && t < self.end
        } else {
            t >= self.start || t < self.end
        }
    }
}

/// Parses an RFC 3339 timestamp of a freeze period.
pub(crate) fn parse_instant(text: &str) -> Result<DateTime<Utc>, BadTime> {
    DateTime::parse_from_rfc3339(text.trim())
        .map(|t| t.with_timezone(&Utc))
        .map_err(|error| BadTime::Instant {
            text: text.to_string(),
            error,
        })
}

impl Windows {
    /// Why heavy work may not run at `now`, or `None` when it may.
    pub fn blocked_reason(&self, now: DateTime<Utc>) -> Option<String> {
        if let Some(reason) = self.frozen_reason(now) {
            return Some(reason);
        }
        if self.heavy_work.is_empty() {
            return None;
        }
        let windows: Vec<DailyWindow> = self
            .heavy_work
            .iter()
            .filter_map(|w| DailyWindow::parse(w).ok())
            .collect();
        if windows.iter().any(|w| w.contains(now.time())) {
            None
        } else {
            Some(format!(
                "outside the allowed heavy-work windows ({} UTC)",
                self.heavy_work.join(", ")
            ))
        }
    }

    /// The reason of the freeze period covering `now`, if any.
    pub fn frozen_reason(&self, now: DateTime<Utc>) -> Option<String> {
        self.freeze.iter().find_map(|f| {
            let from = parse_instant(&f.from).ok()?;
            let to = parse_instant(&f.to).ok()?;
            (from <= now && now < to).then(|| format!("freeze period until {}: {}", f.to, f.reason))
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn window_wraps_midnight() {
        let w = DailyWindow::parse("22:00-06:00").unwrap();
        let t = |s| NaiveTime::parse_from_str(s, "%H:%M").unwrap();
        assert!(w.contains(t("23:00")));
        assert!(w.contains(t("05:59")));
        assert!(!w.contains(t("06:00")));
        assert!(!w.contains(t("12:00")));
    }
}
