//! The `:` command line and the `/` search prompt, drawn over the footer.

use ratatui::layout::Rect;
use ratatui::text::{Line, Span};
use ratatui::widgets::{Clear, Paragraph};
use ratatui::Frame;

use crate::tui::theme::Theme;

/// Renders a prompt (`:` or `/`) with the text typed so far and a cursor.
pub(crate) fn render(frame: &mut Frame, area: Rect, prompt: char, text: &str, theme: &Theme) {
    let line = Line::from(vec![
        Span::styled(prompt.to_string(), theme.key),
        Span::raw(text.to_string()),
        Span::styled("█", theme.accent),
        Span::styled(
            if prompt == ':' {
                "   Enter runs · Esc cancels · :help lists commands"
            } else {
                "   Enter keeps the search · Esc clears it"
            },
            theme.dim,
        ),
    ]);
    frame.render_widget(Clear, area);
    frame.render_widget(Paragraph::new(line), area);
}
