//! One file per pane. Each pane renders a part of the [`ViewModel`](super::view::ViewModel)
//! into an area; none of them touches the database or global state (except the live log pane,
//! which reads tui-logger's buffer when asked to).

pub mod backfill;
pub mod command_line;
pub mod confirm;
pub mod footer;
pub mod header;
pub mod help;
pub mod latency;
pub mod log;
pub mod migrations;
pub mod parity;
pub mod roster;
pub mod scorecard;
pub mod timeline;

use ratatui::layout::{Constraint, Flex, Layout, Rect};
use ratatui::text::{Line, Span};
use ratatui::widgets::{Block, BorderType};

use super::theme::Theme;

/// A pane's frame: a title, and a highlighted border when focused.
pub fn block<'a>(title: impl Into<Line<'a>>, focused: bool, theme: &Theme) -> Block<'a> {
    let block = Block::bordered().title(title);
    if focused {
        block
            .border_type(BorderType::Thick)
            .border_style(theme.focus)
    } else {
        block.border_style(theme.border)
    }
}

/// A title span styled as a heading.
pub fn title<'a>(text: impl Into<String>, theme: &Theme) -> Span<'a> {
    Span::styled(format!(" {} ", text.into()), theme.accent)
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

/// A rectangle of at most `width` × `height`, centred in `area`.
pub fn centered(area: Rect, width: u16, height: u16) -> Rect {
    let [row] = Layout::vertical([Constraint::Length(height.min(area.height))])
        .flex(Flex::Center)
        .areas(area);
    let [cell] = Layout::horizontal([Constraint::Length(width.min(area.width))])
        .flex(Flex::Center)
        .areas(row);
    cell
}

/// Cuts `text` to `width` characters, ending with `…` when cut.
pub fn truncate(text: &str, width: usize) -> String {
    if text.chars().count() <= width {
        return text.to_string();
    }
    let mut s: String = text.chars().take(width.saturating_sub(1)).collect();
    s.push('…');
    s
}
