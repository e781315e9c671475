//! Parsing plan SQL with squawk's PostgreSQL parser, bounded in nesting and errors kept, and
//! the issue type every check reports.

use squawk_syntax::{SourceFile, SyntaxKind, SyntaxNode};

/// Deeper bracket nesting than this is refused before parsing (it bounds the parser's stack).
pub const MAX_NESTING: usize = 128;

/// Syntax errors kept per parse (the first ones, in text order).
const MAX_ERRORS: usize = 50;

/// A problem found in plan SQL, at a byte offset of the text that was checked.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SqlIssue {
    /// Byte offset in the checked text.
    pub offset: usize,
    /// What is wrong.
    pub message: String,
    /// How to fix it.
    pub hint: Option<String>,
}

impl SqlIssue {
    pub(super) fn new(offset: usize, message: impl Into<String>, hint: Option<&str>) -> SqlIssue {
        SqlIssue {
            offset,
            message: message.into(),
            hint: hint.map(str::to_string),
        }
    }
}

pub(super) fn is_statement(node: &SyntaxNode) -> bool {
    node.kind() != SyntaxKind::ERROR
}

/// Parses `text`; `None` when it nests deeper than [`MAX_NESTING`] or the parser failed.
pub(super) fn parse(text: &str) -> Option<(SyntaxNode, Vec<(usize, String)>)> {
    if nesting_depth(text) > MAX_NESTING {
        return None;
    }
    std::panic::catch_unwind(|| {
        let parse = SourceFile::parse(text);
        let errors = parse
            .errors()
            .iter()
            .take(MAX_ERRORS)
            .map(|e| (usize::from(e.range().start()), e.message().to_string()))
            .collect();
        (parse.syntax_node(), errors)
    })
    .ok()
}

/// The deepest bracket nesting of `text`, counted without regard to quoting (an upper bound).
fn nesting_depth(text: &str) -> usize {
    let mut depth = 0usize;
    let mut max = 0usize;
    for b in text.bytes() {
        match b {
            b'(' | b'[' => {
                depth += 1;
                max = max.max(depth);
            }
            b')' | b']' => depth = depth.saturating_sub(1),
            _ => {}
        }
    }
    max
}

pub(super) fn too_deep() -> SqlIssue {
    SqlIssue::new(
        0,
        format!("SQL nests brackets more than {MAX_NESTING} levels deep"),
        Some("simplify the statement"),
    )
}

pub(super) fn nul(text: &str) -> SqlIssue {
    SqlIssue::new(
        text.find('\0').unwrap_or(0),
        "SQL contains a NUL character, which PostgreSQL cannot accept",
        Some("remove the \\u0000 escape"),
    )
}

pub(super) fn syntax_issue(at: usize, message: &str) -> SqlIssue {
    SqlIssue::new(
        at,
        format!("SQL syntax error: {message}"),
        Some("PostgreSQL would reject this statement; fix the SQL"),
    )
}
