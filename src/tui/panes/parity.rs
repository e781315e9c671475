//! The parity pane: the latest result of each check, its outcome, mismatches, its recent runs
//! as a sparkline (a pass full height, inconclusive half, a failure at the floor; newest on the
//! right) and its last run.

use ratatui::layout::{Constraint, Rect};
use ratatui::style::Style;
use ratatui::text::{Line, Span};
use ratatui::widgets::{Cell, Paragraph, Row, Table};
use ratatui::Frame;

use super::{block, thousands, title, truncate};
use crate::outcome::Outcome;
use crate::tui::theme::Theme;
use crate::tui::view::{Focus, ViewModel};

/// One run as a bar of the sparkline, and its style.
fn bar(o: Outcome, theme: &Theme) -> Span<'static> {
    match o {
        Outcome::Pass => Span::styled("█", theme.pass),
        Outcome::Inconclusive => Span::styled("▄", theme.warn),
        Outcome::Fail => Span::styled("▁", theme.fail),
    }
}

/// A check's symbol, word and style.
fn verdict(o: Option<Outcome>, theme: &Theme) -> (&'static str, &'static str, Style) {
    match o {
        Some(Outcome::Pass) => ("✓", "pass", theme.pass),
        Some(Outcome::Fail) => ("✗", "FAIL", theme.fail),
        Some(Outcome::Inconclusive) => ("?", "incon.", theme.warn),
        None => ("·", "never", theme.dim),
    }
}

/// The recent runs right-aligned in `width` columns (the newest at the right edge).
fn sparkline(recent: &[Outcome], width: usize, theme: &Theme) -> Line<'static> {
    let shown = &recent[recent.len().saturating_sub(width)..];
    let mut spans = vec![Span::raw(" ".repeat(width - shown.len()))];
    spans.extend(shown.iter().map(|o| bar(*o, theme)));
    Line::from(spans)
}

/// The columns' widths within `inner` columns.
struct Columns {
    name_w: usize,
    hist_w: usize,
    full_run: usize,
    run_w: usize,
    summary_w: usize,
    wide: bool,
}

fn columns(vm: &ViewModel, inner: usize) -> Columns {
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
    let runs = vm.parity.iter().map(|c| c.recent.len()).max().unwrap_or(0);
    let mut fixed = 8 + 1 + name_w + 1 + 8;
    // The recent runs (at least the header's width) when they fit beside a short last run,
    // leaving a summary its 12 columns when there is room for both.
    let room = inner.saturating_sub(fixed + 1 + 8 + 1);
    let hist_w = if runs >= 2 && room >= 6 {
        let summary = if room >= 6 + 13 { 13 } else { 0 };
        runs.max(6).min(room - summary)
    } else {
        0
    };
    if hist_w > 0 {
        fixed += 1 + hist_w;
    }
    let run_w = if fixed + 1 + full_run + 1 + 12 <= inner {
        full_run
    } else if fixed + 1 + 8 <= inner {
        8
    } else {
        0
    };
    let summary_w = inner.saturating_sub(fixed + 1 + run_w + 1);
    let wide = run_w > 0 && summary_w >= 12;
    Columns {
        name_w,
        hist_w,
        full_run,
        run_w,
        summary_w,
        wide,
    }
}

/// Renders the parity pane. Columns get the width their values need; the recent runs are
/// drawn when a check has run more than once, the last run loses its age and the summary is
/// shortened at a word when the pane is narrow.
pub fn render(frame: &mut Frame, area: Rect, vm: &ViewModel, theme: &Theme) {
    let focused = vm.ui.focus == Focus::Parity;
    if super::sideways(vm, focused) {
        render_whole(frame, area, vm, theme);
        return;
    }
    let Columns {
        name_w,
        hist_w,
        full_run,
        run_w,
        summary_w,
        wide,
    } = columns(vm, area.width.saturating_sub(2) as usize);
    let rows: Vec<Row> = vm
        .parity
        .iter()
        .skip(if focused { vm.ui.scroll as usize } else { 0 })
        .map(|c| {
            let (sym, outcome, style) = verdict(c.outcome, theme);
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
            if hist_w > 0 {
                cells.push(Cell::from(sparkline(&c.recent, hist_w, theme)));
            }
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
    if hist_w > 0 {
        widths.push(Constraint::Length(hist_w as u16));
        header.push("recent");
    }
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

/// Scrolled sideways (`<` `>`): each check on one line, whole — its last run with its age and
/// its full summary.
fn render_whole(frame: &mut Frame, area: Rect, vm: &ViewModel, theme: &Theme) {
    let name_w = vm
        .parity
        .iter()
        .map(|c| c.name.chars().count())
        .max()
        .unwrap_or(0);
    let lines: Vec<Line> = vm
        .parity
        .iter()
        .map(|c| {
            let (sym, outcome, style) = verdict(c.outcome, theme);
            let mismatches = c
                .mismatches
                .map(thousands)
                .unwrap_or_else(|| "–".to_string());
            Line::from(vec![
                Span::styled(format!("{sym} {outcome:<7}"), style),
                Span::raw(format!("{:<name_w$}  {mismatches:>8}  ", c.name)),
                Span::styled(
                    format!("{}  {}", c.last_run.as_deref().unwrap_or("–"), c.summary),
                    theme.dim,
                ),
            ])
        })
        .collect();
    let pane = Paragraph::new(lines).block(block(
        Line::from(vec![
            title("Parity", theme),
            Span::styled("c: run now · < > sideways ", theme.dim),
        ]),
        true,
        theme,
    ));
    frame.render_widget(super::scrolled(pane, vm, true), area);
}
