//! The footer: the **next step** hint, the status of the last action (errors in red) and the
//! main keys (the demo's `:app v2` and, with several migrations open, `m ] [` among them).

use ratatui::layout::Rect;
use ratatui::text::{Line, Span};
use ratatui::widgets::Paragraph;
use ratatui::Frame;

use super::truncate;
use crate::tui::next::StepKind;
use crate::tui::theme::Theme;
use crate::tui::view::ViewModel;

/// The keys the footer lists, most important first (cut from the end when narrow).
pub(crate) const KEYS: &[(&str, &str)] = &[
    ("s", "sign off"),
    ("a", "advance"),
    ("R", "rollback"),
    ("␣", "pause"),
    ("?", "help"),
    ("q", "quit"),
    ("z", "zoom"),
    ("+/-", "chunk"),
    ("c", "checks"),
    (":", "cmd"),
    ("/", "search"),
];

/// The demo's own key, listed after `a` (only in the demo).
pub(crate) const DEMO_KEY: (&str, &str) = (":app v2", "roll app");

/// The switching keys, listed before `?` when several migrations are open.
pub(crate) const SWITCH_KEY: (&str, &str) = ("m ] [", "switch");

/// Renders the footer into `area`: with 2 lines, the next-step hint over the status (or, without
/// one, the keys); with 1 line, the status, else the hint.
pub(crate) fn render(frame: &mut Frame, area: Rect, vm: &ViewModel, theme: &Theme) {
    let mut lines = Vec::new();
    let hint = vm.next.as_ref().map(|n| {
        let style = match n.kind {
            StepKind::Act => theme.accent,
            StepKind::Wait => theme.warn,
            StepKind::Done => theme.pass,
        };
        Line::from(vec![
            Span::styled(" ▶ ", style),
            Span::styled(
                truncate(&n.text, (area.width as usize).saturating_sub(3)),
                style,
            ),
        ])
    });
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
    let keys = keys_line(area.width as usize, vm, theme);
    match (area.height, status, hint) {
        (0, ..) => return,
        (1, Some(s), _) => lines.push(s),
        (1, None, Some(h)) => lines.push(h),
        (1, None, None) => lines.push(keys),
        (_, s, Some(h)) => {
            lines.push(h);
            lines.push(s.unwrap_or(keys));
        }
        (_, s, None) => {
            lines.push(s.unwrap_or_default());
            lines.push(keys);
        }
    }
    frame.render_widget(Paragraph::new(lines), area);
}

fn keys_line<'a>(width: usize, vm: &ViewModel, theme: &Theme) -> Line<'a> {
    let mut spans = Vec::new();
    let mut used = 0;
    let mut keys: Vec<&(&str, &str)> = KEYS.iter().collect();
    if vm.switcher.is_some() {
        let help = keys.iter().position(|k| k.0 == "?").unwrap_or(keys.len());
        keys.insert(help, &SWITCH_KEY);
    }
    if vm.demo {
        keys.insert(2, &DEMO_KEY);
    }
    for (key, what) in keys {
        let changes = !matches!(*key, "c" | ":" | "/" | "?" | "q" | "z" | "m ] [");
        if vm.header.read_only && changes {
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
