//! The Backfill pane's replication slots: a count (and how many block the gates), then one
//! line per slot with its retained WAL, lag, `wal_status` and the share of
//! `max_slot_wal_keep_size` ("keep size") left.

use ratatui::text::{Line, Span};

use crate::control::slots::bytes;
use crate::tui::slots::SlotView;
use crate::tui::theme::Theme;

/// The lines of the list (none without slots).
pub(crate) fn lines<'a>(slots: &[SlotView], theme: &Theme) -> Vec<Line<'a>> {
    if slots.is_empty() {
        return Vec::new();
    }
    let risky = slots.iter().filter(|s| s.at_risk.is_some()).count();
    let mut head = vec![Span::styled(
        format!(
            "{} replication slot{}",
            slots.len(),
            if slots.len() == 1 { "" } else { "s" }
        ),
        theme.dim,
    )];
    if risky > 0 {
        head.push(Span::styled(
            format!(" · {risky} about to lose its WAL: gates blocked"),
            theme.fail,
        ));
    }
    let mut lines = vec![Line::from(head)];
    for s in slots {
        let (mark, style) = if s.at_risk.is_some() {
            ("!", theme.fail)
        } else {
            ("·", theme.accent)
        };
        let mut figures = format!("retains {}", bytes(s.slot.retained_bytes));
        if let Some(lag) = s.slot.lag_bytes {
            figures.push_str(&format!(" · lag {}", bytes(lag)));
        }
        figures.push_str(&format!(
            " · {}",
            s.slot.wal_status.as_deref().unwrap_or("no wal_status")
        ));
        figures.push_str(&match s.left_percent {
            Some(p) => format!(" · {p:.0}% of keep size left"),
            None => " · no WAL limit".to_string(),
        });
        lines.push(Line::from(vec![
            Span::styled(format!("{mark} "), style),
            Span::raw(format!("{} ", s.slot.name)),
            Span::styled(
                format!(
                    "{} {} ",
                    s.slot.kind,
                    if s.slot.active { "active" } else { "inactive" }
                ),
                theme.dim,
            ),
            Span::styled(figures, style),
        ]));
    }
    lines
}
