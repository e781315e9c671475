//! The Backfill pane's per-partition list: one compact line per leaf partition of a partitioned
//! table (done, in progress with its workers, or detached during the backfill).

use ratatui::text::{Line, Span};

use super::thousands;
use crate::backfill::PartitionProgress;
use crate::tui::theme::Theme;

/// The lines of the list (none for a plain table): a count, then one line per leaf.
pub(crate) fn lines<'a>(parts: &[PartitionProgress], theme: &Theme) -> Vec<Line<'a>> {
    if parts.is_empty() {
        return Vec::new();
    }
    let done = parts
        .iter()
        .filter(|p| !p.detached && p.ranges_done == p.ranges)
        .count();
    let detached = parts.iter().filter(|p| p.detached).count();
    let mut head = vec![Span::styled(
        format!("{} partitions · {done} done", parts.len()),
        theme.dim,
    )];
    if detached > 0 {
        head.push(Span::styled(format!(" · {detached} detached"), theme.warn));
    }
    let mut lines = vec![Line::from(head)];
    for p in parts {
        let (mark, style) = if p.detached {
            ("!", theme.warn)
        } else if p.ranges_done == p.ranges {
            ("✓", theme.pass)
        } else {
            ("·", theme.accent)
        };
        let detail = if p.detached {
            "detached: not backfilled".to_string()
        } else if p.live_workers > 0 {
            format!("{} worker(s)", p.live_workers)
        } else {
            String::new()
        };
        lines.push(Line::from(vec![
            Span::styled(format!("{mark} "), style),
            Span::raw(format!("{} ", p.name)),
            Span::raw(format!("{:>5.1}% ", p.percent)),
            Span::styled(
                format!(
                    "{}/{} rows ",
                    thousands(p.rows_done),
                    thousands(p.rows_done + p.rows_remaining)
                ),
                theme.dim,
            ),
            Span::styled(detail, theme.dim),
        ]));
    }
    lines
}

#[cfg(test)]
mod tests {
    use super::*;

    fn part(name: &str, done: usize, detached: bool) -> PartitionProgress {
        PartitionProgress {
            name: name.to_string(),
            ranges: 2,
            ranges_done: done,
            rows_done: 1500,
            rows_updated: 1500,
            rows_remaining: 500,
            percent: 75.0,
            live_workers: usize::from(done < 2),
            detached,
        }
    }

    fn text(line: &Line<'_>) -> String {
        line.spans.iter().map(|s| s.content.as_ref()).collect()
    }

    #[test]
    fn one_line_per_leaf_with_detached_named() {
        let theme = Theme::mono();
        let shown = lines(
            &[
                part("public.t_p1", 2, false),
                part("public.t_p2", 1, false),
                part("public.t_p3", 1, true),
            ],
            &theme,
        );
        assert_eq!(shown.len(), 4);
        assert_eq!(text(&shown[0]), "3 partitions · 1 done · 1 detached");
        assert!(text(&shown[2]).contains("public.t_p2"));
        assert!(text(&shown[2]).contains("1 worker(s)"));
        assert!(text(&shown[3]).contains("detached: not backfilled"));
        assert!(lines(&[], &theme).is_empty());
    }
}
