//! The roster: who holds each role, who signed what and when, who is connected now, and the most
//! recent audited actions.

use ratatui::layout::Rect;
use ratatui::text::{Line, Span};
use ratatui::widgets::Paragraph;
use ratatui::Frame;

use super::{block, title};
use crate::tui::theme::Theme;
use crate::tui::view::{Focus, ViewModel};

/// Renders the roster pane.
pub fn render(frame: &mut Frame, area: Rect, vm: &ViewModel, theme: &Theme) {
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
