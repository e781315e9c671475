//! One file per pane. Each pane renders a part of the [`ViewModel`](super::view::ViewModel)
//! into an area; none of them touches the database or global state (except the live log pane,
//! which reads tui-logger's buffer when asked to).

pub mod backfill;
pub mod command_line;
pub mod confirm;
pub mod footer;
pub mod header;
pub mod help;
pub mod index_builds;
pub mod latency;
pub mod log;
pub mod migrations;
pub mod parity;
pub mod partitions;
pub mod roster;
pub mod scorecard;
pub mod slots;
pub mod timeline;

use ratatui::layout::{Constraint, Flex, Layout, Rect};
use ratatui::text::{Line, Span};
use ratatui::widgets::{Block, BorderType, Paragraph, Wrap};

pub use super::progress::thousands;
use super::theme::Theme;
use super::view::ViewModel;

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

/// A pane's text scrolled as the operator asked when it is `focused`: down by the vertical
/// scroll; sideways by the horizontal one, and then its lines are not wrapped (a long line
/// reads whole by scrolling); otherwise wrapped at the pane's width.
pub fn scrolled<'a>(text: Paragraph<'a>, vm: &ViewModel, focused: bool) -> Paragraph<'a> {
    match (focused, vm.ui.hscroll) {
        (true, 0) => text.wrap(Wrap { trim: false }).scroll((vm.ui.scroll, 0)),
        (true, x) => text.scroll((vm.ui.scroll, x)),
        (false, _) => text.wrap(Wrap { trim: false }),
    }
}

/// True when the focused pane is scrolled sideways (its long lines are shown whole).
pub fn sideways(vm: &ViewModel, focused: bool) -> bool {
    focused && vm.ui.hscroll > 0
}

/// A title span styled as a heading.
pub fn title<'a>(text: impl Into<String>, theme: &Theme) -> Span<'a> {
    Span::styled(format!(" {} ", text.into()), theme.accent)
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

/// The spans of one line, shortened from the end at a word so they fit `width` columns.
pub fn fit<'a>(spans: Vec<Span<'a>>, width: usize) -> Line<'a> {
    let mut out = Vec::new();
    let mut used = 0;
    for span in spans {
        let w = span.width();
        if used + w <= width {
            used += w;
            out.push(span);
            continue;
        }
        if let Some(text) = shorten(span.content.trim_end(), width - used) {
            out.push(Span::styled(text, span.style));
        }
        break;
    }
    Line::from(out)
}

/// Shortens `text` to at most `width` characters, ending with ` …` when cut (so an ellipsis
/// never sits inside a number, a time or a name). A single word longer than the width is cut
/// where it must be.
pub fn truncate(text: &str, width: usize) -> String {
    shorten(text, width).unwrap_or_else(|| {
        let mut s: String = text.chars().take(width.saturating_sub(1)).collect();
        s.push('…');
        s
    })
}

/// `text` whole if it fits `width`, else cut before the last space that leaves room for ` …`;
/// `None` when not even one word fits.
pub fn shorten(text: &str, width: usize) -> Option<String> {
    if text.chars().count() <= width {
        return Some(text.to_string());
    }
    let chars: Vec<char> = text.chars().collect();
    (1..=width.saturating_sub(2).min(chars.len()))
        .rev()
        .find(|&i| chars[i].is_whitespace())
        .map(|i| {
            let head: String = chars[..i].iter().collect();
            format!("{} …", head.trim_end())
        })
        .filter(|s| s.chars().any(char::is_alphanumeric))
}
