//! The backfill pane: progress gauge, rows/s sparkline, ETA band, chunk size and time against the
//! target, throttle state and reason, workers and their ranges, checkpoint age.

use ratatui::layout::{Constraint, Layout, Rect};
use ratatui::text::{Line, Span};
use ratatui::widgets::{Gauge, Paragraph, Sparkline};
use ratatui::Frame;

use super::{block, thousands, title};
use crate::control::backfill::State;
use crate::tui::theme::Theme;
use crate::tui::view::{human_secs, BackfillView, Focus, ViewModel};

fn state_style(b: &BackfillView, theme: &Theme) -> ratatui::style::Style {
    match b.state {
        Some(State::Running | State::Done) => theme.pass,
        Some(State::Throttled | State::Paused | State::Stopped) => theme.warn,
        Some(State::Failed) => theme.fail,
        Some(State::Idle) | None => theme.dim,
    }
}

/// Renders the backfill pane.
pub fn render(frame: &mut Frame, area: Rect, vm: &ViewModel, theme: &Theme) {
    let b = &vm.backfill;
    let focused = vm.ui.focus == Focus::Backfill;
    let heading = Line::from(vec![
        title("Backfill", theme),
        Span::styled(
            format!("{} ", b.state.map_or("not started", State::as_str)),
            state_style(b, theme),
        ),
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
            Paragraph::new(vec![
                Line::from(Span::styled(
                    "starts when the backfill phase is applied",
                    theme.dim,
                )),
                Line::from(Span::styled(
                    format!("target chunk time {} ms", b.target_ms),
                    theme.dim,
                )),
            ]),
            inner,
        );
        return;
    }
    let spark_h = if inner.height >= 12 {
        3
    } else if inner.height >= 8 {
        2
    } else {
        1
    };
    let chart_h = if inner.height >= 14 {
        super::latency::height(&b.latency)
    } else {
        0
    };
    let [gauge_area, spark_area, chart_area, text_area] = Layout::vertical([
        Constraint::Length(1),
        Constraint::Length(spark_h),
        Constraint::Length(chart_h),
        Constraint::Min(0),
    ])
    .areas(inner);
    super::latency::render(frame, chart_area, &b.latency, theme);
    let ratio = b.percent().map_or(0.0, |p| p / 100.0);
    let label = match b.rows_total {
        Some(t) => format!(
            "{} / {} rows  {:.1}%",
            thousands(b.rows_done),
            thousands(t),
            ratio * 100.0
        ),
        None => format!("{} rows", thousands(b.rows_done)),
    };
    frame.render_widget(
        Gauge::default()
            .ratio(ratio)
            .label(label)
            .gauge_style(state_style(b, theme))
            .use_unicode(true),
        gauge_area,
    );
    let now_rate = b.rate.or(b.rates.last().copied()).unwrap_or(0);
    let width = spark_area.width.saturating_sub(16) as usize;
    let tail: Vec<u64> = b.rates.iter().rev().take(width).rev().copied().collect();
    let [spark_label, spark] =
        Layout::horizontal([Constraint::Length(16), Constraint::Min(0)]).areas(spark_area);
    frame.render_widget(
        Paragraph::new(Line::from(vec![
            Span::raw(format!("{:>9}", thousands(now_rate as i64))),
            Span::styled(" rows/s", theme.dim),
        ])),
        spark_label,
    );
    frame.render_widget(Sparkline::default().data(&tail).style(theme.accent), spark);
    let mut lines = Vec::new();
    let eta = match (b.state, b.eta) {
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
        (_, None) => "measuring…".to_string(),
    };
    lines.push(Line::from(vec![
        Span::styled("ETA ", theme.dim),
        Span::raw(eta),
        Span::styled("   chunk ", theme.dim),
        Span::raw(match (b.chunk_rows, b.chunk_ms) {
            (Some(r), Some(ms)) => format!("{} rows in {ms} ms", thousands(r)),
            (Some(r), None) => format!("{} rows", thousands(r)),
            _ => "–".to_string(),
        }),
        Span::styled(format!(" / target {} ms", b.target_ms), theme.dim),
    ]));
    if b.rate_cap > 0 {
        lines.push(Line::from(Span::styled(
            format!("rate cap {} rows/s", thousands(b.rate_cap)),
            theme.dim,
        )));
    }
    let reason = if b.reason.is_empty() {
        match b.state {
            Some(State::Running) => "healthy: no throttle".to_string(),
            other => other.map_or("", State::as_str).to_string(),
        }
    } else {
        b.reason.clone()
    };
    lines.push(Line::from(vec![
        Span::styled(
            match b.state {
                Some(State::Throttled) => "THROTTLED ",
                Some(State::Paused) => "PAUSED ",
                _ => "",
            },
            state_style(b, theme),
        ),
        Span::raw(reason),
        Span::styled(
            match b.throttled_share {
                Some(share) => format!(
                    "  (throttled {} total, {:.0}%)",
                    human_secs(b.throttled_seconds as i64),
                    share * 100.0
                ),
                None => format!(
                    "  (throttled {} total)",
                    human_secs(b.throttled_seconds as i64)
                ),
            },
            theme.dim,
        ),
    ]));
    lines.push(Line::from(vec![
        Span::styled("checkpoint ", theme.dim),
        Span::raw(match b.checkpoint_age {
            Some(a) => format!("{} ago", human_secs(a)),
            None => "none yet".to_string(),
        }),
        Span::styled(
            format!(
                "   workers {} live / {} max{} · {} ranges",
                b.live_workers,
                b.max_workers,
                if b.idle_workers > b.max_workers {
                    format!(" (idle: {})", b.idle_workers)
                } else {
                    String::new()
                },
                b.ranges.len()
            ),
            theme.dim,
        ),
    ]));
    for r in &b.ranges {
        lines.push(Line::from(vec![
            Span::styled(
                format!(" #{} ", r.id),
                if r.done { theme.pass } else { theme.accent },
            ),
            Span::raw(format!("{:<20} ", r.bounds)),
            Span::raw(format!("{:>10} rows ", thousands(r.rows))),
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
    let scroll = if focused { vm.ui.scroll } else { 0 };
    frame.render_widget(Paragraph::new(lines).scroll((scroll, 0)), text_area);
}
