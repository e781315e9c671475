//! The roster: who holds each role, who signed what and when, how the plan's notifications fare,
//! who is connected now, and the most recent audited actions.

use ratatui::layout::Rect;
use ratatui::text::{Line, Span};
use ratatui::widgets::Paragraph;
use ratatui::Frame;

use super::{block, title};
use crate::tui::theme::Theme;
use crate::tui::view::{human_secs, Focus, NotifyView, ViewModel};

/// Renders the roster pane.
pub(crate) fn render(frame: &mut Frame, area: Rect, vm: &ViewModel, theme: &Theme) {
    let r = &vm.roster;
    let mut lines = Vec::new();
    for role in &r.roles {
        let signed = if role.signed.is_empty() {
            Span::styled("no sign-off", theme.dim)
        } else {
            Span::styled(format!("signed {}", role.signed.join("; ")), theme.pass)
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
    let focused = vm.ui.focus == Focus::Roster;
    let scroll = if focused { vm.ui.scroll } else { 0 };
    frame.render_widget(
        Paragraph::new(lines).scroll((scroll, 0)).block(block(
            title("Roster", theme),
            focused,
            theme,
        )),
        area,
    );
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
