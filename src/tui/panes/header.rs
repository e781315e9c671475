//! The header: plan, environment (production in red), which migration of several is on screen,
//! database (password masked), connection state, and who I am.

use ratatui::layout::Rect;
use ratatui::style::{Modifier, Style};
use ratatui::text::Span;
use ratatui::widgets::Paragraph;
use ratatui::Frame;

use super::fit;
use crate::tui::theme::Theme;
use crate::tui::view::ViewModel;
use crate::worker::ConnState;

/// Renders the two header lines.
pub(crate) fn render(frame: &mut Frame, area: Rect, vm: &ViewModel, theme: &Theme) {
    let h = &vm.header;
    let env_style = if h.is_production() {
        theme.production
    } else {
        theme.accent.add_modifier(Modifier::REVERSED)
    };
    let mut first = vec![
        Span::styled(" CUTOVER ", theme.accent.add_modifier(Modifier::REVERSED)),
        Span::raw(" "),
        Span::styled(
            format!(" {} ", h.environment.as_str().to_uppercase()),
            env_style,
        ),
        Span::raw(" "),
    ];
    if h.read_only {
        first.push(Span::styled(
            " READ-ONLY ",
            theme.warn.add_modifier(Modifier::REVERSED),
        ));
        first.push(Span::raw(" "));
    }
    if let Some(sw) = &vm.switcher {
        first.push(Span::styled(
            format!(" migration {}/{} (m: switch) ", sw.active + 1, sw.total),
            theme.key.add_modifier(Modifier::REVERSED),
        ));
        first.push(Span::raw(" "));
    }
    first.extend([
        Span::styled(h.plan_id.clone(), theme.accent),
        Span::raw(" — "),
        Span::raw(h.title.clone()),
    ]);
    let (conn_text, conn_style) = match &h.conn {
        None | Some(ConnState::Connecting { attempt: 0 | 1 }) => {
            ("◌ connecting…".to_string(), theme.warn)
        }
        Some(ConnState::Connecting { attempt }) => {
            (format!("◌ reconnecting (attempt {attempt})…"), theme.warn)
        }
        Some(ConnState::Connected) => ("● live".to_string(), theme.pass),
        Some(ConnState::Retrying { error, retry_in }) => (
            format!("✗ DISCONNECTED, retry in {retry_in}s: {error}"),
            theme.fail,
        ),
    };
    let mut second = vec![
        Span::styled(" db ", theme.dim),
        Span::raw(h.database.clone()),
        Span::styled("  │  ", theme.dim),
        Span::styled(conn_text, conn_style),
    ];
    if let Some((encrypted, how)) = &h.security {
        second.push(Span::styled("  │  ", theme.dim));
        second.push(if *encrypted {
            Span::styled(format!("encrypted {how}"), theme.pass)
        } else {
            Span::styled(how.clone(), theme.warn)
        });
    }
    second.push(Span::styled("  │  ", theme.dim));
    match &h.whoami {
        Some(me) => {
            // One span, so that a narrow screen drops the label with the name.
            second.push(Span::raw(format!("me {me}")));
            let roles = if h.roles.is_empty() {
                "no role in this plan".to_string()
            } else {
                h.roles.join(", ")
            };
            second.push(Span::styled(format!(" [{roles}]"), Style::new()));
        }
        None => second.push(Span::styled("me: unknown until connected", theme.dim)),
    }
    frame.render_widget(
        Paragraph::new(vec![
            fit(first, area.width as usize),
            fit(second, area.width as usize),
        ]),
        area,
    );
}
