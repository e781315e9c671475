//! The log pane: tui-logger fed by tracing (worker events, audit appends, throttle changes,
//! errors), scrollable, with a level filter and a `/` search that highlights matching lines.
//!
//! Snapshot tests render [`LogSource::Lines`] so they never depend on the global log buffer.

use ratatui::layout::Rect;
use ratatui::style::Style;
use ratatui::text::{Line, Span};
use ratatui::widgets::Paragraph;
use ratatui::Frame;
use tui_logger::{ExtLogRecord, LogFormatter, TuiLoggerWidget, TuiWidgetState};

use super::{block, title, truncate};
use crate::tui::theme::Theme;
use crate::tui::view::{Focus, ViewModel};

/// Where the log lines come from.
pub enum LogSource<'a> {
    /// tui-logger's global buffer, with the widget's scroll/level state.
    Live(&'a TuiWidgetState),
    /// Fixed lines (tests, screenshots).
    Lines(&'a [String]),
}

/// One line per event: `HH:MM:SS L target  message`, matches of the search highlighted.
struct Formatter {
    theme: Theme,
    search: String,
}

impl Formatter {
    fn level_style(&self, level: log::Level) -> (Style, &'static str) {
        match level {
            log::Level::Error => (self.theme.fail, "E"),
            log::Level::Warn => (self.theme.warn, "W"),
            log::Level::Info => (Style::new(), "I"),
            log::Level::Debug => (self.theme.dim, "D"),
            log::Level::Trace => (self.theme.dim, "T"),
        }
    }
}

/// Splits `text` into spans with every case-insensitive match of `needle` highlighted.
fn highlight<'a>(text: &str, needle: &str, base: Style, matched: Style) -> Vec<Span<'a>> {
    if needle.is_empty() {
        return vec![Span::styled(text.to_string(), base)];
    }
    let lower = text.to_lowercase();
    let needle = needle.to_lowercase();
    if lower.len() != text.len() {
        // Case folding changed byte lengths; highlight the whole line instead of slicing.
        let style = if lower.contains(&needle) {
            matched
        } else {
            base
        };
        return vec![Span::styled(text.to_string(), style)];
    }
    let mut spans = Vec::new();
    let mut pos = 0;
    while let Some(i) = lower[pos..].find(&needle) {
        let start = pos + i;
        let end = start + needle.len();
        if start > pos {
            spans.push(Span::styled(text[pos..start].to_string(), base));
        }
        spans.push(Span::styled(text[start..end].to_string(), matched));
        pos = end;
    }
    if pos < text.len() {
        spans.push(Span::styled(text[pos..].to_string(), base));
    }
    spans
}

impl LogFormatter for Formatter {
    fn min_width(&self) -> u16 {
        20
    }

    fn format(&self, width: usize, evt: &ExtLogRecord) -> Vec<Line<'_>> {
        let (style, letter) = self.level_style(evt.level);
        let text = format!(
            "{} {letter} {}: {}",
            evt.timestamp.strftime("%H:%M:%S"),
            evt.target(),
            evt.msg().trim()
        );
        vec![line_for(&text, width, &self.search, style, &self.theme)]
    }
}

fn line_for<'a>(text: &str, width: usize, search: &str, style: Style, theme: &Theme) -> Line<'a> {
    let text = truncate(text, width);
    let hit = !search.is_empty() && text.to_lowercase().contains(&search.to_lowercase());
    let base = if !search.is_empty() && !hit {
        theme.dim
    } else {
        style
    };
    Line::from(highlight(&text, search, base, theme.matched))
}

/// Renders the log pane.
pub(crate) fn render(
    frame: &mut Frame,
    area: Rect,
    vm: &ViewModel,
    theme: &Theme,
    source: LogSource,
) {
    let focused = vm.ui.focus == Focus::Log;
    let mut heading = vec![
        title("Log", theme),
        Span::styled(format!("level {} (l) ", vm.ui.log_level), theme.dim),
    ];
    if !vm.ui.search.is_empty() {
        heading.push(Span::styled(format!("/{} ", vm.ui.search), theme.matched));
    }
    let frame_block = block(Line::from(heading), focused, theme);
    match source {
        LogSource::Live(state) => {
            let widget = TuiLoggerWidget::default()
                .block(frame_block)
                .formatter(Box::new(Formatter {
                    theme: *theme,
                    search: vm.ui.search.clone(),
                }))
                .state(state);
            frame.render_widget(widget, area);
        }
        LogSource::Lines(lines) => {
            let inner_w = area.width.saturating_sub(2) as usize;
            let shown: Vec<Line> = lines
                .iter()
                .rev()
                .take(area.height.saturating_sub(2) as usize)
                .rev()
                .map(|l| line_for(l, inner_w, &vm.ui.search, Style::new(), theme))
                .collect();
            frame.render_widget(Paragraph::new(shown).block(frame_block), area);
        }
    }
}
