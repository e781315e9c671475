//! The readiness scorecard: the five categories with their evidence, and the gate of the next
//! phase with each blocker spelled out.

use ratatui::layout::Rect;
use ratatui::text::{Line, Span};
use ratatui::widgets::Paragraph;
use ratatui::Frame;

use super::{block, title, truncate};
use crate::outcome::Outcome;
use crate::tui::theme::{outcome_symbol, Theme};
use crate::tui::view::{Focus, ViewModel};

/// The width (borders included) at which no evidence line of the scorecard is cut, whether
/// shown beside its category (compact) or under it (expanded).
pub(crate) fn wanted_width(vm: &ViewModel) -> u16 {
    let evidence = vm
        .scorecard
        .iter()
        .flat_map(|c| c.evidence.iter())
        .map(|(_, text)| 2 + 22 + text.chars().count())
        .max()
        .unwrap_or(0);
    u16::try_from(evidence + 2).unwrap_or(u16::MAX)
}

/// Renders the scorecard pane.
pub(crate) fn render(frame: &mut Frame, area: Rect, vm: &ViewModel, theme: &Theme) {
    let inner_h = area.height.saturating_sub(2) as usize;
    let blockers = vm
        .gate
        .as_ref()
        .map(|g| g.blockers.clone())
        .unwrap_or_default();
    let evidence_lines: usize = vm.scorecard.iter().map(|c| c.evidence.len()).sum();
    let expanded = inner_h > vm.scorecard.len() + evidence_lines + blockers.len();
    let mut lines = Vec::new();
    for c in &vm.scorecard {
        let first_issue = c
            .evidence
            .iter()
            .find(|e| e.0 != Outcome::Pass)
            .or(c.evidence.first())
            .map(|e| e.1.clone())
            .unwrap_or_default();
        let mut spans = vec![
            Span::styled(
                format!("{} ", outcome_symbol(c.outcome)),
                theme.outcome(c.outcome),
            ),
            Span::styled(format!("{:<22}", c.name), theme.outcome(c.outcome)),
        ];
        let room = (area.width as usize).saturating_sub(2 + 2 + 22);
        // Scrolled sideways, the evidence reads whole; too narrow for a useful part of it,
        // `z` (or `>`) shows it.
        if !expanded && super::sideways(vm, vm.ui.focus == Focus::Scorecard) {
            spans.push(Span::styled(first_issue, theme.dim));
        } else if !expanded && room >= 20 {
            spans.push(Span::styled(truncate(&first_issue, room), theme.dim));
        }
        lines.push(Line::from(spans));
        if expanded {
            for (o, text) in &c.evidence {
                lines.push(Line::from(vec![
                    Span::raw("    "),
                    Span::styled(format!("{} ", outcome_symbol(*o)), theme.outcome(*o)),
                    Span::styled(text.clone(), theme.dim),
                ]));
            }
        }
    }
    match &vm.gate {
        Some(g) => {
            lines.push(Line::from(vec![
                Span::raw(format!("Gate {}: ", g.phase)),
                Span::styled(g.verdict().to_string(), theme.verdict(g.verdict())),
                Span::styled(
                    if blockers.is_empty() {
                        "  ready — press a to advance".to_string()
                    } else {
                        format!("  {} blocker(s):", blockers.len())
                    },
                    theme.dim,
                ),
            ]));
            for b in &blockers {
                lines.push(Line::from(vec![
                    Span::styled(" • ", theme.fail),
                    Span::raw(b.clone()),
                ]));
            }
        }
        None if vm.timeline.current.is_some() && vm.timeline.next.is_none() => lines.push(
            Line::from(Span::styled("No gate left: all phases applied", theme.pass)),
        ),
        None => lines.push(Line::from(Span::styled(
            "Gate: waiting for the first snapshot",
            theme.dim,
        ))),
    }
    let focused = vm.ui.focus == Focus::Scorecard;
    let heading = match &vm.gate {
        Some(g) => Line::from(vec![
            title("Readiness", theme),
            Span::raw("gate "),
            Span::raw(g.phase.to_string()),
            Span::raw(" "),
            Span::styled(format!("{} ", g.verdict()), theme.verdict(g.verdict())),
        ]),
        None => Line::from(title("Readiness", theme)),
    };
    frame.render_widget(
        super::scrolled(Paragraph::new(lines), vm, focused).block(block(heading, focused, theme)),
        area,
    );
}
