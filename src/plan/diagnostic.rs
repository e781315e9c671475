//! Plan errors with their place: `file:line:col: message` plus a hint.

use std::fmt;

use toml::de::{DeTable, DeValue};
use toml::Spanned;

/// Everything that can go wrong loading a plan.
#[derive(Debug, thiserror::Error)]
pub enum PlanError {
    /// The file could not be read.
    #[error("{path}:1:1: error: cannot read plan: {message}")]
    Io {
        /// The path given.
        path: String,
        /// The OS error.
        message: String,
    },
    /// The plan is malformed or inconsistent; every problem found is listed.
    #[error("{}", render(.0))]
    Invalid(Vec<Diagnostic>),
}

fn render(diags: &[Diagnostic]) -> String {
    diags
        .iter()
        .map(ToString::to_string)
        .collect::<Vec<_>>()
        .join("\n")
}

/// One problem in a plan, with its position (1-based line and column).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Diagnostic {
    /// The plan file.
    pub file: String,
    /// 1-based line.
    pub line: usize,
    /// 1-based column (in characters).
    pub col: usize,
    /// What is wrong.
    pub message: String,
    /// How to fix it.
    pub hint: Option<String>,
}

impl fmt::Display for Diagnostic {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{}:{}:{}: error: {}",
            printable(&self.file),
            self.line,
            self.col,
            printable(&self.message)
        )?;
        if let Some(hint) = &self.hint {
            write!(f, "\n  hint: {}", printable(hint))?;
        }
        Ok(())
    }
}

/// `text` with control characters escaped, so a message quoting plan content cannot drive
/// the terminal.
fn printable(text: &str) -> std::borrow::Cow<'_, str> {
    if text.chars().any(char::is_control) {
        text.chars()
            .map(|c| {
                if c.is_control() {
                    c.escape_unicode().to_string()
                } else {
                    c.to_string()
                }
            })
            .collect::<String>()
            .into()
    } else {
        text.into()
    }
}

/// One step of a path into the TOML document.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Seg {
    /// A table key.
    Key(String),
    /// An array index.
    Index(usize),
}

impl From<&str> for Seg {
    fn from(s: &str) -> Self {
        Seg::Key(s.to_string())
    }
}

impl From<usize> for Seg {
    fn from(i: usize) -> Self {
        Seg::Index(i)
    }
}

/// A semantic problem found by validation, located by its path in the document.
#[derive(Debug, Clone)]
pub struct Problem {
    /// Where: the deepest existing prefix of this path is reported.
    pub path: Vec<Seg>,
    /// Byte offset inside the (decoded) string value at `path`, when the problem is inside it.
    pub at: Option<usize>,
    /// What is wrong.
    pub message: String,
    /// How to fix it.
    pub hint: Option<String>,
}

impl Problem {
    /// A problem at `path`.
    pub fn new(path: Vec<Seg>, message: impl Into<String>, hint: Option<String>) -> Problem {
        Problem {
            path,
            at: None,
            message: message.into(),
            hint,
        }
    }

    /// The same problem, located at byte `offset` of the string value at its path.
    pub fn inside(mut self, offset: usize) -> Problem {
        self.at = Some(offset);
        self
    }
}

/// Builds a [`Problem`] at a path written as a list of keys/indexes.
#[macro_export]
#[doc(hidden)]
macro_rules! problem_at {
    ([$($seg:expr),* $(,)?], $msg:expr) => {
        $crate::plan::diagnostic::Problem::new(vec![$($crate::plan::diagnostic::Seg::from($seg)),*], $msg, None)
    };
    ([$($seg:expr),* $(,)?], $msg:expr, $hint:expr) => {
        $crate::plan::diagnostic::Problem::new(vec![$($crate::plan::diagnostic::Seg::from($seg)),*], $msg, Some($hint.into()))
    };
}

pub(crate) use crate::sql::line_col;

/// Line starts of a text, for converting many offsets to (line, column) cheaply, even on a
/// single very long line.
pub(crate) struct LineIndex<'s> {
    source: &'s str,
    starts: Vec<usize>,
    /// Characters before each 1 KiB block of the text.
    blocks: Vec<usize>,
}

const BLOCK: usize = 1024;

impl<'s> LineIndex<'s> {
    /// Indexes `source`.
    pub(crate) fn new(source: &'s str) -> LineIndex<'s> {
        let starts = std::iter::once(0)
            .chain(source.match_indices('\n').map(|(i, _)| i + 1))
            .collect();
        let mut blocks = vec![0];
        for chunk in source.as_bytes().chunks(BLOCK) {
            let last = blocks.last().copied().unwrap_or(0);
            blocks.push(last + chunk.iter().filter(|b| (**b & 0xC0) != 0x80).count());
        }
        LineIndex {
            source,
            starts,
            blocks,
        }
    }

    /// Characters in the text before byte `offset`.
    fn chars_before(&self, offset: usize) -> usize {
        let block = offset / BLOCK;
        let from = block * BLOCK;
        let tail = self.source.as_bytes().get(from..offset).unwrap_or(&[]);
        self.blocks.get(block).copied().unwrap_or(0)
            + tail.iter().filter(|b| (**b & 0xC0) != 0x80).count()
    }

    /// The 1-based (line, column in characters) of byte `offset`, like [`line_col`].
    pub(crate) fn line_col(&self, offset: usize) -> (usize, usize) {
        let mut offset = offset.min(self.source.len());
        while !self.source.is_char_boundary(offset) {
            offset -= 1;
        }
        let line = self.starts.partition_point(|&s| s <= offset).max(1);
        let start = self.starts.get(line - 1).copied().unwrap_or(0);
        (
            line,
            self.chars_before(offset) - self.chars_before(start) + 1,
        )
    }
}

fn located_toml_error(
    file: &str,
    source: &str,
    lines: &LineIndex<'_>,
    err: &toml::de::Error,
) -> Diagnostic {
    let message = err.message().trim().to_string();
    let mut offset = err.span().map(|s| s.start).unwrap_or(0);
    let key = unknown_field(&message).or_else(|| {
        message
            .contains("unknown variant")
            .then(|| "kind".to_string())
    });
    if let (Some(span), Some(key)) = (err.span(), key) {
        offset = find_key_in(source, span, &key).unwrap_or(offset);
    }
    let (line, col) = lines.line_col(offset);
    Diagnostic {
        file: file.to_string(),
        line,
        col,
        hint: hint_for(&message),
        message,
    }
}

fn unknown_field(message: &str) -> Option<String> {
    let rest = message.split("unknown field `").nth(1)?;
    rest.split('`').next().map(str::to_string)
}

/// Finds `key =` at the start of a line within the table that starts at `span`
/// (up to the next table header after the span).
fn find_key_in(source: &str, span: std::ops::Range<usize>, key: &str) -> Option<usize> {
    let region = source.get(span.start..)?;
    let mut pos = 0;
    for line in region.split_inclusive('\n') {
        let trimmed = line.trim_start();
        let indent = line.len() - trimmed.len();
        if span.start + pos >= span.end && pos > 0 && trimmed.starts_with('[') {
            return None;
        }
        if let Some(after) = trimmed.strip_prefix(key) {
            if after.trim_start().starts_with('=') {
                return Some(span.start + pos + indent);
            }
        }
        pos += line.len();
    }
    None
}

pub(crate) fn hint_for(message: &str) -> Option<String> {
    let hint = if message.contains("unknown field") {
        "remove the key or fix its spelling; plans/README.md lists every key"
    } else if message.contains("missing field") {
        "add the required key (plans/README.md lists every key)"
    } else if message.contains("invalid type") {
        "check the value's type: strings need quotes, lists use [ ]"
    } else if message.contains("invalid duration") {
        "durations are strings such as \"300ms\", \"2s\", \"10m\""
    } else if message.contains("unknown variant") {
        "use one of the listed values"
    } else if message.contains("invalid value") {
        "check the value's range: counts are non-negative integers"
    } else {
        return None;
    };
    Some(hint.to_string())
}

/// Every TOML syntax error of `source` (the parser recovers and goes on), located.
pub(crate) fn syntax_errors(file: &str, source: &str) -> Vec<Diagnostic> {
    let (_, errors) = DeTable::parse_recoverable(source);
    let lines = LineIndex::new(source);
    errors
        .iter()
        .take(crate::plan::MAX_DIAGNOSTICS + 1)
        .map(|e| located_toml_error(file, source, &lines, e))
        .collect()
}

/// Locates a semantic problem: the span of the deepest existing node on its path, or the exact
/// place inside its string value.
pub(crate) fn locate(file: &str, source: &str, problem: Problem) -> Diagnostic {
    locate_all(file, source, vec![problem])
        .pop()
        .unwrap_or_else(|| Diagnostic {
            file: file.to_string(),
            line: 1,
            col: 1,
            message: String::new(),
            hint: None,
        })
}

/// Locates every problem, parsing the document once.
pub(crate) fn locate_all(file: &str, source: &str, problems: Vec<Problem>) -> Vec<Diagnostic> {
    let root = DeTable::parse(source).ok();
    let lines = LineIndex::new(source);
    problems
        .into_iter()
        .map(|problem| {
            let offset = root
                .as_ref()
                .map(|root| offset_of(source, root, &problem.path, problem.at))
                .unwrap_or(0);
            let (line, col) = lines.line_col(offset);
            Diagnostic {
                file: file.to_string(),
                line,
                col,
                message: problem.message,
                hint: problem.hint,
            }
        })
        .collect()
}

/// Byte offset in `source` of the node at `path` (the deepest that exists), or of byte `at` of
/// its string value.
pub(crate) fn offset_of(
    source: &str,
    root: &Spanned<DeTable<'_>>,
    path: &[Seg],
    at: Option<usize>,
) -> usize {
    let (best, leaf) = deepest(root, path);
    match (leaf, at) {
        (Some(node), Some(at)) => match node.get_ref() {
            DeValue::String(decoded) => source
                .get(node.span())
                .and_then(|raw| super::strings::raw_offset(raw, decoded, at))
                .map_or(best, |o| node.span().start + o),
            _ => best,
        },
        _ => best,
    }
}

/// The offset of the deepest existing node on `path`, and that node when the whole path exists.
fn deepest<'a, 'i>(
    root: &'a Spanned<DeTable<'i>>,
    path: &[Seg],
) -> (usize, Option<&'a Spanned<DeValue<'i>>>) {
    let mut best = root.span().start;
    let mut table: Option<&DeTable<'_>> = Some(root.get_ref());
    let mut array: Option<&[Spanned<DeValue<'_>>]> = None;
    let mut leaf = None;
    for (depth, seg) in path.iter().enumerate() {
        let next: Option<&Spanned<DeValue<'_>>> = match seg {
            Seg::Key(k) => table.and_then(|t| {
                t.get_key_value(k.as_str()).map(|(key, v)| {
                    best = key.span().start;
                    v
                })
            }),
            Seg::Index(i) => array.and_then(|a| a.get(*i)),
        };
        let Some(node) = next else { break };
        if matches!(seg, Seg::Index(_)) {
            best = node.span().start;
        }
        if depth + 1 == path.len() {
            leaf = Some(node);
        }
        table = None;
        array = None;
        match node.get_ref() {
            DeValue::Table(t) => table = Some(t),
            DeValue::Array(a) => array = Some(a.as_ref()),
            _ => {
                best = node.span().start;
            }
        }
    }
    (best, leaf)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_line_index_agrees_with_line_col() {
        let long = "é".repeat(3000);
        let text = format!("a = 1\nbé = \"x\"\n\n[t]\n{long}x\nlast");
        let text = text.as_str();
        let index = LineIndex::new(text);
        for offset in 0..=text.len() + 2 {
            if text.is_char_boundary(offset.min(text.len())) {
                assert_eq!(index.line_col(offset), line_col(text, offset), "{offset}");
            }
        }
    }

    #[test]
    fn messages_never_carry_control_characters() {
        let d = Diagnostic {
            file: "p.toml".into(),
            line: 1,
            col: 1,
            message: "unknown field `\u{1b}[2J`".into(),
            hint: None,
        };
        let shown = d.to_string();
        assert!(!shown.contains('\u{1b}'), "{shown}");
        assert!(shown.contains("\\u{1b}"), "{shown}");
    }
}
