//! The backfill pane: progress bar with its figures beside it, rows/s over time (a
//! chart with its scale when there is room, else a sparkline), ETA band, chunk size and time
//! against the target, whether it is held back or pacing, workers and their ranges, checkpoint
//! age, the cluster's replication slots; on wide screens a slot for the application's latency beside it. Text wraps at words.

use ratatui::layout::{Constraint, Layout, Rect};
use ratatui::style::Style;
use ratatui::symbols::Marker;
use ratatui::text::{Line, Span};
use ratatui::widgets::{Axis, Chart, Dataset, GraphType, Paragraph, Sparkline, Wrap};
use ratatui::Frame;

use super::{block, thousands, title};
use crate::control::backfill::State;
use crate::tui::progress::human_secs;
use crate::tui::progress::Pace;
use crate::tui::theme::Theme;
use crate::tui::view::{BackfillView, Focus, ViewModel};

/// Inner width from which the latency slot sits beside the backfill's own figures.
const LATENCY_SLOT_FROM: u16 = 96;

/// Inner size from which rows/s is drawn as a chart with axes rather than a sparkline.
const CHART_FROM: (u16, u16) = (50, 14);

fn state_style(b: &BackfillView, theme: &Theme) -> Style {
    match b.state {
        Some(State::Running | State::Pacing | State::Done) => theme.pass,
        Some(State::Throttled | State::Paused | State::Stopped) => theme.warn,
        Some(State::Failed) => theme.fail,
        Some(State::Idle) | None => theme.dim,
    }
}

/// The state as the heading names it.
fn state_word(b: &BackfillView) -> &'static str {
    b.state.map_or("not started", State::as_str)
}

/// Renders the backfill pane.
pub(crate) fn render(frame: &mut Frame, area: Rect, vm: &ViewModel, theme: &Theme) {
    let b = &vm.backfill;
    let focused = vm.ui.focus == Focus::Backfill;
    let heading = Line::from(vec![
        title("Backfill", theme),
        Span::styled(format!("{} ", state_word(b)), state_style(b, theme)),
    ]);
    let outer = block(heading, focused, theme);
    let inner = outer.inner(area);
    frame.render_widget(outer, area);
    if !b.configured {
        frame.render_widget(
            Paragraph::new(Span::styled("this plan has no backfill", theme.dim)),
            inner,
        );
        return;
    }
    if b.state.is_none() {
        frame.render_widget(
            Paragraph::new(
                vec![
                    Line::from(Span::styled(
                        "starts when the backfill phase is applied",
                        theme.dim,
                    )),
                    Line::from(Span::styled(
                        format!("target chunk time {} ms", b.target_ms),
                        theme.dim,
                    )),
                ]
                .into_iter()
                .chain(super::slots::lines(&b.slots, theme))
                .collect::<Vec<_>>(),
            )
            .wrap(Wrap { trim: false }),
            inner,
        );
        return;
    }
    let main = if inner.width >= LATENCY_SLOT_FROM && inner.height >= 8 {
        let [main, slot] =
            Layout::horizontal([Constraint::Percentage(58), Constraint::Percentage(42)])
                .areas(inner);
        latency_slot(frame, slot, vm, theme);
        main
    } else {
        inner
    };
    let chart = main.width >= CHART_FROM.0 && main.height >= CHART_FROM.1;
    let rate_h = if chart {
        (main.height / 3).clamp(6, 12)
    } else {
        1
    };
    // Without the side slot, a tall pane plots the latency ratio under the rate.
    let latency_h = if inner.width < LATENCY_SLOT_FROM && main.height >= 16 {
        super::latency::height(&b.latency)
    } else {
        0
    };
    let [gauge_area, rate_area, latency_area, text_area] = Layout::vertical([
        Constraint::Length(1),
        Constraint::Length(rate_h),
        Constraint::Length(latency_h),
        Constraint::Min(0),
    ])
    .areas(main);
    super::latency::render(frame, latency_area, &b.latency, theme);
    gauge(frame, gauge_area, b, theme);
    if chart {
        rate_chart(frame, rate_area, b, theme);
    } else {
        rate_line(frame, rate_area, b, theme);
    }
    frame.render_widget(
        super::scrolled(Paragraph::new(text_lines(b, theme)), vm, focused),
        text_area,
    );
}

/// The bar, and beside it `412,000 / ~1.0M rows · 41.2%` (only the percentage when narrow).
fn gauge(frame: &mut Frame, area: Rect, b: &BackfillView, theme: &Theme) {
    let share = b.share();
    let percent = share.percent_text().unwrap_or_else(|| "–".to_string());
    let full = format!(" {} · {percent}", share.rows_text());
    let label = if full.chars().count() + 8 <= area.width as usize {
        full
    } else {
        format!(" {percent}")
    };
    let [bar, text] = Layout::horizontal([
        Constraint::Min(0),
        Constraint::Length(label.chars().count() as u16),
    ])
    .areas(area);
    let ratio = share.percent.map_or(0.0, |p| p / 100.0);
    frame.render_widget(
        Paragraph::new(Span::styled(
            bar_text(ratio, bar.width),
            state_style(b, theme),
        )),
        bar,
    );
    frame.render_widget(Paragraph::new(label), text);
}

/// A bar of `width` cells filled to `ratio`, in eighths of a cell.
fn bar_text(ratio: f64, width: u16) -> String {
    const PARTS: [&str; 8] = ["", "▏", "▎", "▍", "▌", "▋", "▊", "▉"];
    let eighths = (ratio.clamp(0.0, 1.0) * f64::from(width) * 8.0).round() as usize;
    let mut s = "█".repeat(eighths / 8);
    s.push_str(PARTS[eighths % 8]);
    s
}

fn now_rate(b: &BackfillView) -> u64 {
    b.rate.or(b.rates.last().copied()).unwrap_or(0)
}

/// `34,500 rows/s` and, after it, a sparkline of the recent samples.
fn rate_line(frame: &mut Frame, area: Rect, b: &BackfillView, theme: &Theme) {
    let label = format!("{} rows/s ", thousands(now_rate(b) as i64));
    let [text, spark] = Layout::horizontal([
        Constraint::Length(label.chars().count() as u16),
        Constraint::Min(0),
    ])
    .areas(area);
    frame.render_widget(Paragraph::new(label), text);
    let tail: Vec<u64> = b
        .rates
        .iter()
        .rev()
        .take(spark.width as usize)
        .rev()
        .copied()
        .collect();
    frame.render_widget(Sparkline::default().data(&tail).style(theme.accent), spark);
}

/// Rows/s over the recent samples (one a second), with its scale on both axes.
fn rate_chart(frame: &mut Frame, area: Rect, b: &BackfillView, theme: &Theme) {
    let window = (area.width.saturating_sub(10) as usize * 2).max(2);
    let tail: Vec<u64> = b.rates.iter().rev().take(window).rev().copied().collect();
    let n = tail.len();
    let points: Vec<(f64, f64)> = tail
        .iter()
        .enumerate()
        .map(|(i, r)| (i as f64 - n as f64 + 1.0, *r as f64))
        .collect();
    let top = tail
        .iter()
        .copied()
        .max()
        .unwrap_or(0)
        .max(now_rate(b))
        .max(1);
    let top = nice_ceiling(top);
    let span = n.saturating_sub(1).max(1) as f64;
    let data = [Dataset::default()
        .marker(Marker::Braille)
        .graph_type(GraphType::Line)
        .style(theme.accent)
        .data(&points)];
    let chart = Chart::new(data.to_vec())
        .x_axis(
            Axis::default()
                .bounds([-span, 0.0])
                .labels([format!("-{}", human_secs(span as i64)), "now".to_string()])
                .style(theme.dim),
        )
        .y_axis(
            Axis::default()
                .title(Span::styled(
                    format!("rows/s, now {}", thousands(now_rate(b) as i64)),
                    theme.dim,
                ))
                .bounds([0.0, top as f64])
                .labels(["0".to_string(), thousands(top as i64)])
                .style(theme.dim),
        );
    frame.render_widget(chart, area);
}

/// The smallest 1, 2 or 5 × 10ⁿ at or above `n`: a scale that reads at a glance.
fn nice_ceiling(n: u64) -> u64 {
    let mut step = 1u64;
    loop {
        for m in [1, 2, 5] {
            if m * step >= n {
                return m * step;
            }
        }
        step = step.saturating_mul(10);
    }
}

/// The pacing in words and, below it, the latency guard's chart of the application's latency
/// ratio against its budget.
fn latency_slot(frame: &mut Frame, area: Rect, vm: &ViewModel, theme: &Theme) {
    let text = match vm.backfill.pace() {
        Pace::Pacing(t) => t,
        Pace::Held(_) => "held back: no chunk runs".to_string(),
        Pace::Free => "no pacing: chunks run at full speed".to_string(),
    };
    let outer = block(title("App latency", theme), false, theme);
    let inner = outer.inner(area);
    frame.render_widget(outer, area);
    let width = usize::from(inner.width.max(1));
    let words_h = (text.chars().count().div_ceil(width) as u16 + 1).min(inner.height);
    let words = Paragraph::new(Span::styled(text, theme.dim)).wrap(Wrap { trim: false });
    let [words_area, chart_area] =
        Layout::vertical([Constraint::Length(words_h), Constraint::Min(0)]).areas(inner);
    frame.render_widget(words, words_area);
    super::latency::render(frame, chart_area, &vm.backfill.latency, theme);
}

fn eta(b: &BackfillView) -> String {
    match (b.state, b.eta) {
        (Some(State::Done), _) => "done".to_string(),
        (_, Some((lo, hi))) => {
            let (a, z) = (human_secs(lo as i64), human_secs(hi as i64));
            if a == z {
                format!("~{a}")
            } else {
                format!("{a} – {z}")
            }
        }
        (Some(State::Paused), None) => "paused".to_string(),
        (_, None) => "still measuring".to_string(),
    }
}

/// `copy into public.t · CDC 12.0 KiB behind, caught up 0.4s ago`; nothing for an in-place
/// update without CDC.
fn mode_line<'a>(b: &BackfillView, theme: &Theme) -> Option<Line<'a>> {
    let mut spans = Vec::new();
    if let Some(into) = &b.copy_into {
        spans.push(Span::styled("copy into ", theme.dim));
        spans.push(Span::raw(into.clone()));
    }
    if let Some(lag) = &b.cdc {
        if !spans.is_empty() {
            spans.push(Span::styled(" · ", theme.dim));
        }
        spans.push(Span::styled("CDC ", theme.dim));
        spans.push(Span::raw(match lag {
            None => "no slot yet".to_string(),
            Some(l) if !l.slot_exists => "slot MISSING".to_string(),
            Some(l) => format!(
                "{} behind, caught up {}",
                human_bytes(l.bytes),
                l.seconds
                    .map_or("never".to_string(), |s| format!("{s:.1}s ago"))
            ),
        }));
    }
    (!spans.is_empty()).then(|| Line::from(spans))
}

/// `512 B`, `12.0 KiB`, `3.4 MiB`, `1.2 GiB`.
fn human_bytes(n: i64) -> String {
    let n = n.max(0) as f64;
    match n {
        n if n < 1024.0 => format!("{n} B"),
        n if n < 1024.0 * 1024.0 => format!("{:.1} KiB", n / 1024.0),
        n if n < 1024.0 * 1024.0 * 1024.0 => format!("{:.1} MiB", n / 1_048_576.0),
        n => format!("{:.1} GiB", n / 1_073_741_824.0),
    }
}

fn text_lines<'a>(b: &BackfillView, theme: &Theme) -> Vec<Line<'a>> {
    let mut lines = vec![Line::from(vec![
        Span::styled("ETA ", theme.dim),
        Span::raw(eta(b)),
        Span::styled(" · chunk ", theme.dim),
        Span::raw(match (b.chunk_rows, b.chunk_ms) {
            (Some(r), Some(ms)) => format!("{} rows in {ms} ms", thousands(r)),
            (Some(r), None) => format!("{} rows", thousands(r)),
            _ => "–".to_string(),
        }),
        Span::styled(format!(" (target {} ms)", b.target_ms), theme.dim),
    ])];
    lines.extend(mode_line(b, theme));
    if b.rate_cap > 0 {
        lines.push(Line::from(Span::styled(
            format!("rate cap {} rows/s", thousands(b.rate_cap)),
            theme.dim,
        )));
    }
    let style = state_style(b, theme);
    let mut state = match (b.pace(), b.state) {
        (Pace::Held(why), _) => vec![Span::styled("THROTTLED ", style), Span::raw(why)],
        (Pace::Pacing(text), _) => vec![Span::styled(text, style)],
        (Pace::Free, Some(State::Paused)) => {
            vec![Span::styled("PAUSED ", style), Span::raw(b.reason.clone())]
        }
        (Pace::Free, Some(State::Running)) if b.reason.is_empty() => {
            vec![Span::raw("no throttle")]
        }
        (Pace::Free, other) if b.reason.is_empty() => {
            vec![Span::raw(other.map_or("", State::as_str).to_string())]
        }
        (Pace::Free, _) => vec![Span::raw(b.reason.clone())],
    };
    state.push(Span::styled(
        match b.throttled_share {
            Some(share) => format!(
                " · held or paced {} in all ({:.0}%)",
                human_secs(b.throttled_seconds as i64),
                share * 100.0
            ),
            None => format!(
                " · held or paced {} in all",
                human_secs(b.throttled_seconds as i64)
            ),
        },
        theme.dim,
    ));
    lines.push(Line::from(state));
    lines.push(Line::from(vec![
        Span::styled("checkpoint ", theme.dim),
        Span::raw(match b.checkpoint_age {
            Some(a) => format!("{} ago", human_secs(a)),
            None => "none yet".to_string(),
        }),
        Span::styled(
            format!(
                " · workers {} live / {} max{} · {} range{}",
                b.live_workers,
                b.max_workers,
                if b.idle_workers > b.max_workers {
                    format!(" (idle: {})", b.idle_workers)
                } else {
                    String::new()
                },
                b.ranges.len(),
                if b.ranges.len() == 1 { "" } else { "s" }
            ),
            theme.dim,
        ),
    ]));
    lines.extend(super::partitions::lines(&b.partitions, theme));
    lines.extend(super::slots::lines(&b.slots, theme));
    for r in &b.ranges {
        lines.push(Line::from(vec![
            Span::styled(
                format!("#{} ", r.id),
                if r.done { theme.pass } else { theme.accent },
            ),
            Span::raw(format!("{} ", r.bounds)),
            Span::raw(format!("{} rows ", thousands(r.rows))),
            Span::styled(
                if r.done {
                    "done".to_string()
                } else {
                    r.lease.clone().unwrap_or_else(|| "no lease".to_string())
                },
                theme.dim,
            ),
        ]));
    }
    lines
}
