//! The parity pane: the latest result of each check, its outcome, mismatches and last run.

use ratatui::layout::{Constraint, Rect};
use ratatui::text::{Line, Span};
use ratatui::widgets::{Cell, Row, Table};
use ratatui::Frame;

use super::{block, thousands, title, truncate};
use crate::outcome::Outcome;
use crate::tui::theme::Theme;
use crate::tui::view::{Focus, ViewModel};

/// Renders the parity pane. Columns get the width their values need; the last run loses its
/// age and the summary is shortened at a word when the pane is narrow.
pub fn render(frame: &mut Frame, area: Rect, vm: &ViewModel, theme: &Theme) {
    let focused = vm.ui.focus == Focus::Parity;
    let inner = area.width.saturating_sub(2) as usize;
    let name_w = vm
        .parity
        .iter()
        .map(|c| c.name.chars().count())
        .max()
        .unwrap_or(0)
        .clamp(5, 28);
    let full_run = vm
        .parity
        .iter()
        .filter_map(|c| c.last_run.as_ref())
        .map(|r| r.chars().count())
        .max()
        .unwrap_or(8)
        .max(8);
    // result, check, mismatch, then the last run and the summary if they fit (a column is
    // kept free before the border).
    let inner = inner.saturating_sub(1);
    let fixed = 8 + 1 + name_w + 1 + 8;
    let run_w = if fixed + 1 + full_run + 1 + 12 <= inner {
        full_run
    } else if fixed + 1 + 8 <= inner {
        8
    } else {
        0
    };
    let summary_w = inner.saturating_sub(fixed + 1 + run_w + 1);
    let wide = run_w > 0 && summary_w >= 12;
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
            let run = match &c.last_run {
                Some(r) if run_w < full_run => r.split(" (").next().unwrap_or(r).to_string(),
                Some(r) => r.clone(),
                None => "–".to_string(),
            };
            let mut cells = vec![
                Cell::from(Span::styled(format!("{sym} {outcome}"), style)),
                Cell::from(truncate(&c.name, name_w)),
                Cell::from(
                    c.mismatches
                        .map(thousands)
                        .unwrap_or_else(|| "–".to_string()),
                ),
            ];
            if run_w > 0 {
                cells.push(Cell::from(Span::styled(run, theme.dim)));
            }
            if wide {
                cells.push(Cell::from(Span::styled(
                    truncate(&c.summary, summary_w),
                    theme.dim,
                )));
            }
            Row::new(cells)
        })
        .collect();
    let mut widths = vec![
        Constraint::Length(8),
        Constraint::Length(name_w as u16),
        Constraint::Length(8),
    ];
    let mut header = vec!["result", "check", "mismatch"];
    if run_w > 0 {
        widths.push(Constraint::Length(run_w as u16));
        header.push("last run");
    }
    if wide {
        widths.push(Constraint::Min(0));
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
