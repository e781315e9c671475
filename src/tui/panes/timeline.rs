//! The phase timeline: where we are, what is next, which step is irreversible, and the fastest
//! safe rollback of the current phase.

use ratatui::layout::Rect;
use ratatui::style::Modifier;
use ratatui::text::{Line, Span};
use ratatui::widgets::Paragraph;
use ratatui::Frame;

use super::{block, title};
use crate::control::phases::PhaseState;
use crate::outcome::Outcome;
use crate::tui::theme::Theme;
use crate::tui::view::{Focus, ViewModel};

fn symbol(state: PhaseState) -> &'static str {
    match state {
        PhaseState::Applied => "✓",
        PhaseState::Applying => "⟳",
        PhaseState::RollingBack => "⟲",
        PhaseState::RolledBack => "↺",
        PhaseState::Failed => "✗",
        PhaseState::Pending => "·",
    }
}

/// Renders the timeline pane.
pub fn render(frame: &mut Frame, area: Rect, vm: &ViewModel, theme: &Theme) {
    let t = &vm.timeline;
    let mut chain = Vec::new();
    for (i, p) in t.phases.iter().enumerate() {
        if i > 0 {
            chain.push(Span::styled(" → ", theme.dim));
        }
        let mut style = match p.state {
            PhaseState::Applied => theme.pass,
            PhaseState::Failed => theme.fail,
            PhaseState::Applying | PhaseState::RollingBack => theme.warn,
            PhaseState::Pending | PhaseState::RolledBack => ratatui::style::Style::new(),
        };
        if Some(p.phase) == t.current {
            style = style.add_modifier(Modifier::REVERSED | Modifier::BOLD);
        } else if Some(p.phase) == t.next {
            style = style.add_modifier(Modifier::UNDERLINED);
        }
        chain.push(Span::styled(
            format!("{} {}", symbol(p.state), p.phase),
            style,
        ));
        if p.irreversible {
            chain.push(Span::styled(" ⚠", theme.fail));
        }
    }
    let now = match t.current {
        Some(p) => {
            let state = t
                .phases
                .iter()
                .find(|x| x.phase == p)
                .map_or(PhaseState::Pending, |x| x.state);
            format!("{p} ({state})")
        }
        None => "not started".to_string(),
    };
    let mut status = vec![Span::styled("Now ", theme.dim), Span::raw(now)];
    match (t.next, &vm.gate) {
        (Some(next), gate) => {
            status.push(Span::styled("   Next ", theme.dim));
            status.push(Span::raw(next.to_string()));
            if let Some(g) = gate.as_ref().filter(|g| g.phase == next) {
                let n = g
                    .items
                    .iter()
                    .filter(|i| i.outcome != Outcome::Pass)
                    .count();
                status.push(Span::raw(" — gate "));
                status.push(Span::styled(
                    g.verdict().to_string(),
                    theme.verdict(g.verdict()),
                ));
                if n > 0 {
                    status.push(Span::raw(format!(
                        " ({n} blocker{})",
                        if n == 1 { "" } else { "s" }
                    )));
                }
            }
            if t.phases.iter().any(|p| p.phase == next && p.irreversible) {
                status.push(Span::styled("  ⚠ IRREVERSIBLE", theme.fail));
            }
        }
        (None, _) if t.current.is_some() => {
            status.push(Span::styled("   all phases applied", theme.pass));
        }
        _ => {}
    }
    let rollback = match &t.rollback {
        Some(r) => vec![
            Span::styled("Rollback ", theme.dim),
            Span::raw(format!("{}: {}", r.phase, r.description)),
            Span::styled("  [R]", theme.key),
        ],
        None => match t.current {
            Some(p) => vec![Span::styled(
                format!("Rollback: none — {p} is irreversible"),
                theme.fail,
            )],
            None => vec![Span::styled("Rollback: nothing applied yet", theme.dim)],
        },
    };
    let irreversible: Vec<String> = t
        .phases
        .iter()
        .filter(|p| p.irreversible)
        .map(|p| p.phase.to_string())
        .collect();
    let mut lines = vec![Line::from(chain), Line::from(status)];
    lines.extend(super::index_builds::lines(&t.index_builds, theme));
    lines.push(Line::from(rollback));
    if area.height > 5 && !irreversible.is_empty() {
        lines.push(Line::from(Span::styled(
            format!("Point of no return: {}", irreversible.join(", ")),
            theme.dim,
        )));
    }
    let focused = vm.ui.focus == Focus::Timeline;
    frame.render_widget(
        Paragraph::new(lines).block(block(title("Phases", theme), focused, theme)),
        area,
    );
}
