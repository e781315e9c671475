//! The roster: who holds each role, who signed what and when, how the plan's notifications fare,
//! who is connected now, and the most recent audited actions.

use ratatui::layout::Rect;
use ratatui::text::{Line, Span};
use ratatui::widgets::Paragraph;
use ratatui::Frame;

use super::{block, title};
use crate::tui::progress::human_secs;
use crate::tui::roster::{NotifyView, RoleView};
use crate::tui::theme::Theme;
use crate::tui::view::{Focus, ViewModel};

/// Renders the roster pane.
pub(crate) fn render(frame: &mut Frame, area: Rect, vm: &ViewModel, theme: &Theme) {
    let r = &vm.roster;
    let width = area.width.saturating_sub(2) as usize;
    let focused = vm.ui.focus == Focus::Roster;
    // Scrolled sideways, each line reads whole.
    let whole = super::sideways(vm, focused);
    let mut lines = Vec::new();
    for role in &r.roles {
        let head = format!("{:<11}{}  ", role.role, role.holders.join(", "));
        let signed = if role.signed.is_empty() {
            Span::styled("no sign-off", theme.dim)
        } else {
            let full = signed_text(role, true);
            let text = if whole || head.chars().count() + full.chars().count() <= width {
                full
            } else {
                signed_text(role, false)
            };
            Span::styled(text, theme.pass)
        };
        lines.push(Line::from(vec![
            Span::styled(format!("{:<11}", role.role), theme.accent),
            Span::raw(format!("{}  ", role.holders.join(", "))),
            signed,
        ]));
    }
    if let Some(n) = &r.notify {
        lines.push(notify_line(n, theme));
    }
    lines.push(Line::from(Span::styled(
        format!("Connected now ({})", r.connected.len()),
        theme.accent,
    )));
    for c in &r.connected {
        lines.push(Line::from(format!("  {c}")));
    }
    if !r.activity.is_empty() {
        lines.push(Line::from(Span::styled("Recent actions", theme.accent)));
        for a in &r.activity {
            lines.push(Line::from(Span::styled(format!("  {a}"), theme.dim)));
        }
    }
    frame.render_widget(
        super::scrolled(Paragraph::new(lines), vm, focused).block(block(
            title("Roster", theme),
            focused,
            theme,
        )),
        area,
    );
}

/// `signed dual_write by postgres at 05:01:00`, or by meaning when narrow: `signed dual_write
/// 05:01` (the signer is one of the holders listed before it).
fn signed_text(role: &RoleView, full: bool) -> String {
    let each: Vec<String> = role
        .signed
        .iter()
        .map(|x| {
            if full {
                format!("{} by {} at {}", x.gate, x.login, x.at.format("%H:%M:%S"))
            } else if role.holders.contains(&x.login) {
                format!("{} {}", x.gate, x.at.format("%H:%M"))
            } else {
                format!("{} by {} {}", x.gate, x.login, x.at.format("%H:%M"))
            }
        })
        .collect();
    format!("signed {}", each.join("; "))
}

/// `notify: 12 sent · 1 retrying (slack-oncall, attempt 3, next in 40s: HTTP 500)`.
fn notify_line<'a>(n: &NotifyView, theme: &Theme) -> Line<'a> {
    let mut spans = vec![
        Span::styled("notify: ", theme.accent),
        Span::styled(format!("{} sent", n.sent), theme.dim),
    ];
    let failure = |gave_up: bool| {
        n.failure
            .as_ref()
            .filter(|f| f.next_in.is_none() == gave_up)
            .map(|f| {
                let when = match f.next_in {
                    Some(0) => ", retry due".to_string(),
                    Some(s) => format!(", next in {}", human_secs(s)),
                    None => String::new(),
                };
                format!(" ({}, attempt {}{when}: {})", f.target, f.attempts, f.error)
            })
            .unwrap_or_default()
    };
    for (count, what, style, detail) in [
        (n.pending, "pending", theme.dim, String::new()),
        (n.queued, "queued", theme.dim, String::new()),
        (n.retrying, "retrying", theme.warn, failure(false)),
        (n.gave_up, "gave up", theme.fail, failure(true)),
    ] {
        if count > 0 {
            spans.push(Span::styled(" · ", theme.dim));
            spans.push(Span::styled(format!("{count} {what}{detail}"), style));
        }
    }
    Line::from(spans)
}
