//! The `?` overlay: every key and command.

use ratatui::layout::Rect;
use ratatui::text::{Line, Span};
use ratatui::widgets::{Clear, Paragraph};
use ratatui::Frame;

use super::{block, centered, title};
use crate::tui::theme::Theme;

const KEYS: &[(&str, &str)] = &[
    ("s", "sign off the next gate for my role(s)"),
    (
        "a",
        "advance: apply the next phase when its gate passes (else show blockers)",
    ),
    (
        "R",
        "roll back the current phase (red confirmation, then Y)",
    ),
    ("Space", "pause / resume the backfill"),
    ("+ / -", "raise / lower the target chunk time"),
    ("c", "run checks and probes now"),
    ("Tab / ← →", "move focus between panes"),
    (
        "z",
        "zoom: the focused pane fills the screen (z again restores)",
    ),
    (
        "↑ ↓ PgUp PgDn",
        "scroll the focused pane; < > sideways (long lines whole)",
    ),
    ("l", "log: cycle the level filter"),
    ("/", "log: search (Enter keeps, Esc clears)"),
    (":", "command line (below)"),
    (
        "m  ] [",
        "several migrations open: the picker / next / previous",
    ),
    ("Esc", "close an overlay / cancel"),
    ("q", "quit (Ctrl-C asks first)"),
];

const COMMANDS: &[(&str, &str)] = &[
    (":signoff [comment]", "sign off, with a comment"),
    (":rollback", "open the rollback confirmation"),
    (":advance", "apply the next phase"),
    (":flag NAME on|off", "set a feature flag"),
    (":note TEXT", "write a note to the audit log"),
    (":pause  :resume", "the backfill"),
    (":tune MS", "set the target chunk time"),
    (":checks", "run checks now"),
    (":rehearse", "rehearse apply + rollback of the phases ahead"),
    (":scrape", "scrape this process's metrics endpoint once"),
    (":attest observability URL", "sre: where the dashboards are"),
    (":app v1|v2", "demo: roll the app to a version"),
    (":level LEVEL", "log filter: error warn info debug trace"),
    (":q", "quit"),
];

/// Renders the help overlay.
pub(crate) fn render(frame: &mut Frame, area: Rect, read_only: bool, theme: &Theme) {
    let mut lines = Vec::new();
    for (k, what) in KEYS {
        lines.push(Line::from(vec![
            Span::styled(format!("{k:>14}  "), theme.key),
            Span::raw(*what),
        ]));
    }
    lines.push(Line::default());
    let room = area.height.saturating_sub(2) as usize;
    if lines.len() + COMMANDS.len() + 2 <= room {
        for (k, what) in COMMANDS {
            lines.push(Line::from(vec![
                Span::styled(format!("{k:<26}  "), theme.key),
                Span::raw(*what),
            ]));
        }
    } else {
        // Small screens: the commands on two lines.
        lines.push(Line::from(vec![Span::styled(
            ":signoff [comment]  :rollback  :advance  :flag NAME on|off",
            theme.key,
        )]));
        lines.push(Line::from(vec![Span::styled(
            ":note TEXT  :pause  :resume  :tune MS  :checks  :level L  :q",
            theme.key,
        )]));
        lines.push(Line::from(vec![Span::styled(
            ":rehearse  :scrape  :attest observability URL  :app v1|v2 (demo)",
            theme.key,
        )]));
    }
    if read_only {
        lines.push(Line::default());
        lines.push(Line::from(Span::styled(
            "READ-ONLY: every change is refused.",
            theme.warn,
        )));
    }
    let h = lines.len() as u16 + 2;
    let r = centered(area, 78, h);
    frame.render_widget(Clear, r);
    frame.render_widget(
        Paragraph::new(lines).block(block(title("Keys — Esc closes", theme), true, theme)),
        r,
    );
}
