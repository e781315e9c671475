//! The parity pane: the latest result of each check, its outcome, mismatches and last run.

use ratatui::layout::{Constraint, Rect};
use ratatui::text::{Line, Span};
use ratatui::widgets::{Cell, Row, Table};
use ratatui::Frame;

use super::{block, thousands, title};
use crate::outcome::Outcome;
use crate::tui::theme::Theme;
use crate::tui::view::{Focus, ViewModel};

/// Renders the parity pane.
pub(crate) fn render(frame: &mut Frame, area: Rect, vm: &ViewModel, theme: &Theme) {
    let focused = vm.ui.focus == Focus::Parity;
    let wide = area.width >= 70;
    let rows: Vec<Row> = vm
        .parity
        .iter()
        .skip(if focused { vm.ui.scroll as usize } else { 0 })
        .map(|c| {
            let (sym, outcome, style) = match c.outcome {
                Some(Outcome::Pass) => ("✓", "pass", theme.pass),
                Some(Outcome::Fail) => ("✗", "FAIL", theme.fail),
                Some(Outcome::Inconclusive) => ("?", "incon.", theme.warn),
                None => ("·", "never", theme.dim),
            };
            let mut cells = vec![
                Cell::from(Span::styled(format!("{sym} {outcome}"), style)),
                Cell::from(c.name.clone()),
                Cell::from(
                    c.mismatches
                        .map(thousands)
                        .unwrap_or_else(|| "–".to_string()),
                ),
                Cell::from(Span::styled(
                    c.last_run.clone().unwrap_or_else(|| "–".to_string()),
                    theme.dim,
                )),
            ];
            if wide {
                cells.push(Cell::from(Span::styled(c.summary.clone(), theme.dim)));
            }
            Row::new(cells)
        })
        .collect();
    let mut widths = vec![
        Constraint::Length(8),
        Constraint::Min(12),
        Constraint::Length(8),
        Constraint::Length(if wide { 20 } else { 8 }),
    ];
    let mut header = vec!["result", "check", "mismatch", "last run"];
    if wide {
        widths[1] = Constraint::Length(20);
        widths.push(Constraint::Min(10));
        header.push("summary");
    }
    let table = Table::new(rows, widths)
        .header(Row::new(header).style(theme.dim))
        .block(block(
            Line::from(vec![
                title("Parity", theme),
                Span::styled("c: run now ", theme.dim),
            ]),
            focused,
            theme,
        ));
    frame.render_widget(table, area);
}
