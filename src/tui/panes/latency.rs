//! The latency chart of the Backfill pane: the application's latency ratio as the latency
//! guard read it over the last minutes against its budget (a flat line), and the signal that
//! counted (the pane's reason line says what holds the backfill and by how much).

use ratatui::layout::{Constraint, Layout, Rect};
use ratatui::symbols::Marker;
use ratatui::text::{Line, Span};
use ratatui::widgets::{Axis, Chart, Dataset, GraphType, Paragraph};
use ratatui::Frame;

use crate::tui::theme::Theme;
use crate::tui::view::LatencyView;

/// Rows the chart wants (0 when there is nothing to plot).
pub fn height(l: &LatencyView) -> u16 {
    if l.ratios.is_empty() {
        0
    } else {
        5
    }
}

/// Renders the chart into `area` (one heading line, the plot below).
pub fn render(frame: &mut Frame, area: Rect, l: &LatencyView, theme: &Theme) {
    if l.ratios.is_empty() || area.height < 2 {
        return;
    }
    let [head, plot] = Layout::vertical([Constraint::Length(1), Constraint::Min(0)]).areas(area);
    let now = l.ratios.last().map_or(0.0, |r| r.1);
    let over = now > l.budget;
    let mut spans = vec![
        Span::styled("app latency ", theme.dim),
        Span::styled(
            format!("{now:.2}×"),
            if over { theme.warn } else { theme.pass },
        ),
        Span::styled(format!(" / budget {:.2}×", l.budget), theme.dim),
    ];
    if let Some(signal) = &l.signal {
        spans.push(Span::styled(format!("  ({signal})"), theme.dim));
    }
    frame.render_widget(Paragraph::new(Line::from(spans)), head);
    let points: Vec<(f64, f64)> = l.ratios.iter().map(|(ago, r)| (-ago, *r)).collect();
    let span = points.first().map_or(60.0, |p| (-p.0).max(60.0));
    let top = points
        .iter()
        .map(|p| p.1)
        .fold(l.budget * 1.2, f64::max)
        .min(l.budget * 8.0);
    let budget = [(-span, l.budget), (0.0, l.budget)];
    let datasets = vec![
        Dataset::default()
            .marker(Marker::Braille)
            .graph_type(GraphType::Line)
            .style(theme.warn)
            .data(&budget),
        Dataset::default()
            .marker(Marker::Braille)
            .graph_type(GraphType::Line)
            .style(theme.accent)
            .data(&points),
    ];
    let chart = Chart::new(datasets)
        .x_axis(Axis::default().bounds([-span, 0.0]))
        .y_axis(
            Axis::default()
                .bounds([0.0, top])
                .labels([Span::raw("0"), Span::raw(format!("{top:.1}×"))])
                .style(theme.dim),
        );
    frame.render_widget(chart, plot);
}

#[cfg(test)]
mod tests {
    use ratatui::backend::TestBackend;
    use ratatui::Terminal;

    use super::*;

    #[test]
    fn plots_the_ratio_against_the_budget_and_names_the_signal() {
        let l = LatencyView {
            budget: 1.25,
            ratios: (0..60)
                .map(|i| (f64::from(59 - i), if i > 40 { 1.6 } else { 1.0 }))
                .collect(),
            signal: Some("commit latency".to_string()),
        };
        assert_eq!(height(&l), 5);
        assert_eq!(height(&LatencyView::default()), 0);
        let mut t = Terminal::new(TestBackend::new(70, 5)).expect("terminal");
        t.draw(|f| render(f, f.area(), &l, &Theme::mono()))
            .expect("draw");
        let text: String = t
            .backend()
            .buffer()
            .content()
            .iter()
            .map(|c| c.symbol())
            .collect();
        assert!(
            text.contains("app latency 1.60× / budget 1.25×  (commit latency)"),
            "{text}"
        );
        assert!(
            text.contains("1.6×"),
            "the axis tops at the highest ratio: {text}"
        );
    }
}
