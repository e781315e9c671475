//! The footer: the status of the last action (errors in red) and the main keys.

use ratatui::layout::Rect;
use ratatui::text::{Line, Span};
use ratatui::widgets::Paragraph;
use ratatui::Frame;

use crate::tui::theme::Theme;
use crate::tui::view::ViewModel;

/// The keys the footer lists, most important first (cut from the end when narrow).
pub const KEYS: &[(&str, &str)] = &[
    ("s", "sign off"),
    ("a", "advance"),
    ("R", "rollback"),
    ("␣", "pause"),
    ("?", "help"),
    ("q", "quit"),
    ("+/-", "chunk"),
    ("c", "checks"),
    (":", "cmd"),
    ("/", "search"),
];

/// Renders the footer into `area` (1 line: status or keys; 2 lines: both).
pub fn render(frame: &mut Frame, area: Rect, vm: &ViewModel, theme: &Theme) {
    let mut lines = Vec::new();
    let status = match (&vm.ui.status, vm.ui.pending.is_empty()) {
        (_, false) => Some(Line::from(Span::styled(
            format!(" … {}", vm.ui.pending.join(", ")),
            theme.warn,
        ))),
        (Some((text, true)), _) => Some(Line::from(Span::styled(format!(" ✗ {text}"), theme.fail))),
        (Some((text, false)), _) => {
            Some(Line::from(Span::styled(format!(" ✓ {text}"), theme.pass)))
        }
        (None, _) => None,
    };
    let keys = keys_line(area.width as usize, vm.header.read_only, theme);
    match (area.height, status) {
        (0, _) => return,
        (1, Some(s)) => lines.push(s),
        (1, None) => lines.push(keys),
        (_, s) => {
            lines.push(s.unwrap_or_default());
            lines.push(keys);
        }
    }
    frame.render_widget(Paragraph::new(lines), area);
}

fn keys_line<'a>(width: usize, read_only: bool, theme: &Theme) -> Line<'a> {
    let mut spans = Vec::new();
    let mut used = 0;
    for (key, what) in KEYS {
        let changes = !matches!(*key, "c" | ":" | "/" | "?" | "q");
        if read_only && changes {
            continue;
        }
        let len = key.chars().count() + what.chars().count() + 3;
        if used + len > width {
            break;
        }
        used += len;
        spans.push(Span::styled(format!(" {key}"), theme.key));
        spans.push(Span::styled(format!(" {what} "), theme.dim));
    }
    Line::from(spans)
}
