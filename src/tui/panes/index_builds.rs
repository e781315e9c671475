//! The phase's concurrent index builds, as lines under the timeline's status: what the build
//! is doing, how far it got, and whom it waits for.

use ratatui::text::{Line, Span};

use crate::control::index_builds::IndexBuild;
use crate::tui::theme::Theme;

/// One line per build running now.
pub fn lines<'a>(builds: &[IndexBuild], theme: &Theme) -> Vec<Line<'a>> {
    builds
        .iter()
        .map(|b| {
            let name = if b.index.is_empty() {
                &b.table
            } else {
                &b.index
            };
            let mut spans = vec![
                Span::styled("Index ", theme.dim),
                Span::raw(format!("{name}: {}", b.phase)),
            ];
            if let Some(f) = b.fraction() {
                spans.push(Span::styled(format!(" {:.0}%", f * 100.0), theme.accent));
            }
            if let Some(l) = &b.waiting_for {
                spans.push(Span::styled(
                    format!(" — waits for pid {} ({})", l.pid, l.application_name),
                    theme.warn,
                ));
            }
            Line::from(spans)
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::control::index_builds::Locker;

    #[test]
    fn a_waiting_build_names_its_locker() {
        let build = IndexBuild {
            pid: 1,
            command: "CREATE INDEX CONCURRENTLY".into(),
            phase: "building index: scanning table".into(),
            table: "public.t".into(),
            index: "public.t_idx".into(),
            blocks_done: 1,
            blocks_total: 4,
            tuples_done: 0,
            tuples_total: 0,
            lockers_done: 0,
            lockers_total: 1,
            waiting_for: Some(Locker {
                pid: 9,
                application_name: "app".into(),
                state: "active".into(),
                query: String::new(),
            }),
        };
        let text: String = lines(&[build], &Theme::mono())[0]
            .spans
            .iter()
            .map(|s| s.content.to_string())
            .collect();
        assert_eq!(
            text,
            "Index public.t_idx: building index: scanning table 25% — waits for pid 9 (app)"
        );
    }
}
