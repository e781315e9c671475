//! Confirmation boxes: the red rollback confirmation (every step of the rollback plan the engine
//! runs, SQL exactly as sent; only `Y` confirms, any other key cancels), the irreversible-advance
//! confirmation, the gate blockers, and the Ctrl-C quit question.

use ratatui::layout::Rect;
use ratatui::style::{Modifier, Style};
use ratatui::text::{Line, Span};
use ratatui::widgets::{Block, BorderType, Clear, Paragraph, Wrap};
use ratatui::Frame;

use super::centered;
use crate::plan::Phase;
use crate::rules::{RollbackAdvice, RollbackStep};
use crate::tui::theme::Theme;

fn red_box<'a>(title: String, theme: &Theme) -> Block<'a> {
    Block::bordered()
        .border_type(BorderType::Double)
        .border_style(theme.fail)
        .title(Span::styled(
            format!(" {title} "),
            theme.fail.add_modifier(Modifier::REVERSED),
        ))
}

/// The rollback confirmation.
pub(crate) fn rollback(frame: &mut Frame, area: Rect, r: &RollbackAdvice, theme: &Theme) {
    let mut lines = vec![
        Line::from(Span::styled(
            format!("Roll back the {} phase: {}", r.phase, r.description),
            theme.fail,
        )),
        Line::default(),
        Line::from(Span::styled(
            "These steps run, in order (SQL exactly as sent):",
            theme.dim,
        )),
    ];
    for step in &r.plan.steps {
        let style = match step {
            RollbackStep::Sql { .. } => Style::default(),
            _ => theme.dim,
        };
        for l in step.to_string().lines() {
            lines.push(Line::from(Span::styled(format!("  {l}"), style)));
        }
    }
    lines.push(Line::default());
    lines.push(Line::from(vec![
        Span::raw("Press "),
        Span::styled(" Y ", theme.fail.add_modifier(Modifier::REVERSED)),
        Span::raw(" (shift-y) to roll back.  Any other key cancels."),
    ]));
    show(
        frame,
        area,
        red_box(
            format!("ROLL BACK {}", r.phase.as_str().to_uppercase()),
            theme,
        ),
        lines,
    );
}

/// The confirmation before applying an irreversible phase.
pub(crate) fn advance(frame: &mut Frame, area: Rect, phase: Phase, theme: &Theme) {
    let lines = vec![
        Line::from(Span::styled(
            format!("{phase} is IRREVERSIBLE: once applied it cannot be rolled back."),
            theme.fail,
        )),
        Line::default(),
        Line::from(vec![
            Span::raw("Press "),
            Span::styled(" Y ", theme.fail.add_modifier(Modifier::REVERSED)),
            Span::raw(format!(
                " (shift-y) to apply {phase}.  Any other key cancels."
            )),
        ]),
    ];
    show(
        frame,
        area,
        red_box(format!("APPLY {}", phase.as_str().to_uppercase()), theme),
        lines,
    );
}

/// Why the gate blocks.
pub(crate) fn blockers(
    frame: &mut Frame,
    area: Rect,
    phase: Phase,
    items: &[String],
    theme: &Theme,
) {
    let mut lines = vec![Line::from(Span::styled(
        format!("The {phase} gate does not pass; advancing is blocked by:"),
        theme.warn,
    ))];
    for b in items {
        lines.push(Line::from(vec![
            Span::styled(" • ", theme.fail),
            Span::raw(b.clone()),
        ]));
    }
    lines.push(Line::default());
    lines.push(Line::from(Span::styled("Esc closes", theme.dim)));
    let block = Block::bordered()
        .border_style(theme.warn)
        .title(Span::styled(
            format!(" GATE {} BLOCKED ", phase.as_str().to_uppercase()),
            theme.warn,
        ));
    show(frame, area, block, lines);
}

/// The Ctrl-C question.
pub(crate) fn quit(frame: &mut Frame, area: Rect, theme: &Theme) {
    let lines = vec![
        Line::from("Quit Cutover? A backfill this process runs will stop at a checkpoint."),
        Line::default(),
        Line::from(vec![
            Span::styled(" y ", theme.key),
            Span::raw("quit   "),
            Span::styled(" any other key ", theme.key),
            Span::raw("stay"),
        ]),
    ];
    let block = Block::bordered().border_style(theme.warn).title(" Quit? ");
    show(frame, area, block, lines);
}

fn show(frame: &mut Frame, area: Rect, block: Block, lines: Vec<Line>) {
    let width = area.width.saturating_sub(4).min(90);
    let inner_w = width.saturating_sub(2).max(1) as usize;
    let height: usize = lines
        .iter()
        .map(|l| l.width().max(1).div_ceil(inner_w))
        .sum::<usize>()
        + 2;
    let r = centered(area, width, height as u16);
    frame.render_widget(Clear, r);
    frame.render_widget(
        Paragraph::new(lines)
            .wrap(Wrap { trim: false })
            .block(block),
        r,
    );
}
