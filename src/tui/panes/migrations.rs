//! The `m` overlay: every open migration with its phase, its next gate's verdict and its
//! backfill progress; the one on screen is marked ●, the highlighted one ›.

use ratatui::layout::Rect;
use ratatui::style::{Modifier, Style};
use ratatui::text::{Line, Span};
use ratatui::widgets::{Clear, Paragraph};
use ratatui::Frame;

use super::{block, centered, title, truncate};
use crate::tui::theme::Theme;
use crate::tui::view::{GateVerdict, MigrationRow, PickerView};

/// Renders the picker over `area`.
pub(crate) fn render(frame: &mut Frame, area: Rect, picker: &PickerView, theme: &Theme) {
    let width = area.width.saturating_sub(4).min(100);
    let inner = width.saturating_sub(2) as usize;
    let mut lines = Vec::new();
    for (i, row) in picker.rows.iter().enumerate() {
        let selected = i == picker.selected;
        let head = format!(
            "{} {} {}  {} — {}",
            if selected { "›" } else { " " },
            if row.active { "●" } else { " " },
            i + 1,
            row.plan_id,
            row.title
        );
        let style = if selected {
            theme.accent.add_modifier(Modifier::REVERSED)
        } else {
            theme.accent
        };
        lines.push(Line::from(Span::styled(truncate(&head, inner), style)));
        lines.push(Line::from(cut(details(row, theme), inner)));
    }
    lines.push(Line::default());
    lines.push(Line::from(vec![
        Span::styled("↑ ↓ Enter", theme.key),
        Span::styled(" switch  ", theme.dim),
        Span::styled("1–9", theme.key),
        Span::styled(" jump  ", theme.dim),
        Span::styled("Esc", theme.key),
        Span::styled(" closes  ", theme.dim),
        Span::styled("] [", theme.key),
        Span::styled(" next / previous", theme.dim),
    ]));
    let height = lines.len() as u16 + 2;
    let r = centered(area, width, height);
    frame.render_widget(Clear, r);
    frame.render_widget(
        Paragraph::new(lines).block(block(
            title(format!("Migrations ({})", picker.rows.len()), theme),
            true,
            theme,
        )),
        r,
    );
}

/// The second line of a row: phase · backfill · gate (its first blocker, the longest part, last).
fn details(row: &MigrationRow, theme: &Theme) -> Vec<(String, Style)> {
    let mut out = vec![("      ".to_string(), Style::new())];
    out.push(match row.phase {
        Some((phase, state)) => (format!("{phase} {state}"), Style::new()),
        // Without a snapshot the phases are not known yet.
        None if matches!(row.gate, GateVerdict::Unknown(_)) => {
            ("phase unknown".to_string(), theme.dim)
        }
        None => ("not started".to_string(), theme.dim),
    });
    if let Some((state, pct)) = &row.backfill {
        out.push(("  ·  ".to_string(), theme.dim));
        out.push((
            match pct {
                Some(p) => format!("backfill {p} {state}"),
                None => format!("backfill {state}"),
            },
            theme.warn,
        ));
    }
    out.push(("  ·  ".to_string(), theme.dim));
    out.push(match &row.gate {
        GateVerdict::Unknown(why) => (why.clone(), theme.warn),
        GateVerdict::Done => ("every phase applied".to_string(), theme.pass),
        GateVerdict::Gate {
            phase,
            verdict,
            blockers,
            first,
        } => (
            match first {
                Some(first) => format!("{phase} gate {verdict} ({blockers}): {first}"),
                None => format!("{phase} gate {verdict}"),
            },
            theme.verdict(*verdict),
        ),
    });
    out
}

/// Spans of at most `width` characters in all, the last cut one ending with `…`.
fn cut<'a>(parts: Vec<(String, Style)>, width: usize) -> Vec<Span<'a>> {
    let mut spans = Vec::new();
    let mut left = width;
    for (text, style) in parts {
        if left == 0 {
            break;
        }
        let n = text.chars().count();
        let text = if n > left {
            truncate(&text, left)
        } else {
            text
        };
        left = left.saturating_sub(n);
        spans.push(Span::styled(text, style));
    }
    spans
}
