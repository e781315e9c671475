//! Colours. Named ANSI colours only (the terminal's palette decides the exact shade), so text
//! stays readable on dark and light backgrounds; `NO_COLOR` turns colour off and keeps meaning
//! through symbols and bold/reverse; `CUTOVER_THEME=light` picks darker accents.

use ratatui::style::{Color, Modifier, Style};

use crate::outcome::Outcome;
use crate::rules::Verdict;

/// The styles every pane uses.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Theme {
    /// Good news.
    pub pass: Style,
    /// Bad news, refusals, destructive actions.
    pub fail: Style,
    /// Not measured, throttled, waiting.
    pub warn: Style,
    /// Titles and highlights.
    pub accent: Style,
    /// Secondary text.
    pub dim: Style,
    /// The border of the focused pane.
    pub focus: Style,
    /// Borders of other panes.
    pub border: Style,
    /// The production banner.
    pub production: Style,
    /// Key names in the footer and help.
    pub key: Style,
    /// Search matches.
    pub matched: Style,
}

impl Theme {
    /// Picks the theme from the environment: `NO_COLOR` (any value) → [`Theme::mono`],
    /// `CUTOVER_THEME=light` → [`Theme::light`], else [`Theme::dark`].
    pub fn from_env() -> Theme {
        if std::env::var_os("NO_COLOR").is_some_and(|v| !v.is_empty()) {
            return Theme::mono();
        }
        match std::env::var("CUTOVER_THEME").as_deref() {
            Ok("light") => Theme::light(),
            _ => Theme::dark(),
        }
    }

    /// For dark terminal backgrounds.
    pub fn dark() -> Theme {
        Theme {
            pass: Style::new().fg(Color::Green),
            fail: Style::new().fg(Color::Red).add_modifier(Modifier::BOLD),
            warn: Style::new().fg(Color::Yellow),
            accent: Style::new().fg(Color::Cyan).add_modifier(Modifier::BOLD),
            dim: Style::new().add_modifier(Modifier::DIM),
            focus: Style::new().fg(Color::Cyan).add_modifier(Modifier::BOLD),
            border: Style::new(),
            production: Style::new()
                .fg(Color::White)
                .bg(Color::Red)
                .add_modifier(Modifier::BOLD),
            key: Style::new().fg(Color::Cyan).add_modifier(Modifier::BOLD),
            matched: Style::new().add_modifier(Modifier::REVERSED),
        }
    }

    /// For light terminal backgrounds (no yellow or cyan text, which wash out on white).
    pub fn light() -> Theme {
        Theme {
            warn: Style::new().fg(Color::Magenta),
            accent: Style::new().fg(Color::Blue).add_modifier(Modifier::BOLD),
            focus: Style::new().fg(Color::Blue).add_modifier(Modifier::BOLD),
            key: Style::new().fg(Color::Blue).add_modifier(Modifier::BOLD),
            ..Theme::dark()
        }
    }

    /// No colour at all (`NO_COLOR`): emphasis through bold and reverse video.
    pub fn mono() -> Theme {
        let plain = Style::new();
        Theme {
            pass: plain,
            fail: plain.add_modifier(Modifier::BOLD),
            warn: plain,
            accent: plain.add_modifier(Modifier::BOLD),
            dim: plain,
            focus: plain.add_modifier(Modifier::BOLD),
            border: plain,
            production: plain.add_modifier(Modifier::REVERSED | Modifier::BOLD),
            key: plain.add_modifier(Modifier::BOLD),
            matched: plain.add_modifier(Modifier::REVERSED),
        }
    }

    /// The style of an outcome.
    pub fn outcome(&self, o: Outcome) -> Style {
        match o {
            Outcome::Pass => self.pass,
            Outcome::Fail => self.fail,
            Outcome::Inconclusive => self.warn,
        }
    }

    /// The style of a gate's verdict (an override warns: the gate does not pass on its own).
    pub fn verdict(&self, v: Verdict) -> Style {
        match v {
            Verdict::Pass => self.pass,
            Verdict::Fail => self.fail,
            Verdict::Inconclusive | Verdict::Overridden => self.warn,
        }
    }
}

/// A symbol that carries an outcome's meaning without colour.
pub(crate) fn outcome_symbol(o: Outcome) -> &'static str {
    match o {
        Outcome::Pass => "✓",
        Outcome::Fail => "✗",
        Outcome::Inconclusive => "?",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn no_color_turns_every_colour_off() {
        std::env::set_var("NO_COLOR", "1");
        let theme = Theme::from_env();
        std::env::remove_var("NO_COLOR");
        assert_eq!(theme, Theme::mono());
        for style in [
            theme.pass,
            theme.fail,
            theme.warn,
            theme.accent,
            theme.production,
        ] {
            assert_eq!(style.fg, None);
            assert_eq!(style.bg, None);
        }
        assert_ne!(
            Theme::dark().production.bg,
            None,
            "production is red when colour is on"
        );
    }
}
