//! The phase timeline: where we are, what is next, which step is irreversible, and the fastest
//! safe rollback of the current phase.

use ratatui::layout::Rect;
use ratatui::style::Modifier;
use ratatui::text::{Line, Span};
use ratatui::widgets::{Paragraph, Wrap};
use ratatui::Frame;

use super::{block, title, truncate};
use crate::control::phases::PhaseState;
use crate::outcome::Outcome;
use crate::tui::progress::human_secs;
use crate::tui::theme::Theme;
use crate::tui::view::{Focus, PhaseView, ViewModel};

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

/// `05:00:00 (2s)`: when the phase's latest run ended (or began, while it runs) and how long it
/// took.
fn when(p: &PhaseView) -> Option<String> {
    match (p.started_at, p.finished_at) {
        (Some(a), Some(z)) if p.state != PhaseState::Pending => Some(format!(
            "{} ({})",
            z.format("%H:%M:%S"),
            human_secs((z - a).num_seconds())
        )),
        (Some(a), None) if p.state != PhaseState::Pending => {
            Some(format!("since {}", a.format("%H:%M:%S")))
        }
        _ => None,
    }
}

/// The phases in order, each with when it was applied and how long it took if `timed`.
fn chain<'a>(vm: &ViewModel, theme: &Theme, timed: bool) -> Vec<Span<'a>> {
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
        if let Some(w) = when(p).filter(|_| timed) {
            chain.push(Span::styled(format!(" {w}"), theme.dim));
        }
    }
    chain
}

/// Renders the timeline pane.
pub fn render(frame: &mut Frame, area: Rect, vm: &ViewModel, theme: &Theme) {
    let t = &vm.timeline;
    let inner = area.width.saturating_sub(2) as usize;
    let timed = chain(vm, theme, true);
    let chain = if Line::from(timed.clone()).width() <= inner {
        timed
    } else {
        chain(vm, theme, false)
    };
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
    // The rollback gets the rows left under the chain and the status line (the `R` box shows
    // it whole); what does not fit is shortened at a word.
    let room = area.height.saturating_sub(2) as usize;
    let rollback_room = (room.saturating_sub(2).max(1) * inner).saturating_sub(14);
    let rollback = match &t.rollback {
        Some(r) => vec![
            Span::styled("Rollback ", theme.dim),
            Span::raw(truncate(
                &format!("{}: {}", r.phase, r.description),
                rollback_room,
            )),
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
    let rollback = Line::from(rollback);
    let rollback_h = rollback.width().div_ceil(inner.max(1)).max(1);
    let builds = super::index_builds::lines(&t.index_builds, theme);
    let builds_h = builds.len();
    let mut lines = vec![Line::from(chain), Line::from(status)];
    lines.extend(builds);
    lines.push(rollback);
    if room >= 3 + builds_h + rollback_h && !irreversible.is_empty() {
        lines.push(Line::from(Span::styled(
            format!("Point of no return: {}", irreversible.join(", ")),
            theme.dim,
        )));
    }
    let focused = vm.ui.focus == Focus::Timeline;
    frame.render_widget(
        Paragraph::new(lines)
            .wrap(Wrap { trim: false })
            .block(block(title("Phases", theme), focused, theme)),
        area,
    );
}
