//! SQL from plans, read with squawk's PostgreSQL parser: splitting scripts into statements,
//! telling which statements cannot run inside a transaction block, and refusing what must never
//! reach the server from a plan.
//!
//! Cutover owns the transaction of every phase, rehearsal and probe, so plan SQL may not end it
//! (`COMMIT`, `ROLLBACK`, savepoints, …), change who the session is (`SET ROLE`, `SET SESSION
//! AUTHORIZATION`), undo Cutover's own limits (`SET statement_timeout`, `RESET ALL`), reach
//! outside the database (`COPY … PROGRAM`, server files) or be a psql meta-command. Fields that
//! hold one expression, one relation or one query are checked to be exactly that, so nothing can
//! be appended to the SQL Cutover builds around them.

/// The comment that starts the statements Cutover generates for itself (backfill chunks, checks),
/// kept by `pg_stat_statements`: the latency guard and the error budget leave them out.
pub const OWN_TAG: &str = "/* cutover */ ";

mod fields;
mod forbidden;
mod parse;
mod quote;

pub use fields::{check_expression, check_query, check_relation, QueryKind};
pub use forbidden::{check_script, guard, Forbidden, Refused};
use parse::{is_statement, parse};
pub use parse::{SqlIssue, MAX_NESTING};
pub use quote::{quote_ident, quote_literal, quote_qualified};

/// One statement of a script, with its byte range in the script.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Statement {
    /// The statement text, trimmed, without the trailing semicolon.
    pub text: String,
    /// Byte offset in the script.
    pub offset: usize,
}

impl Statement {
    /// True for statements PostgreSQL refuses inside a transaction block
    /// (`CREATE/DROP INDEX CONCURRENTLY`, `REINDEX … CONCURRENTLY`, `VACUUM`, `ALTER TYPE … ADD VALUE` before PG12, …).
    pub fn needs_own_transaction(&self) -> bool {
        let upper = normalize(&self.text);
        upper.contains(" CONCURRENTLY ")
            || upper.starts_with("VACUUM ")
            || upper.starts_with("CREATE DATABASE ")
            || upper.starts_with("DROP DATABASE ")
            || upper.starts_with("ALTER SYSTEM ")
    }
}

fn normalize(text: &str) -> String {
    let words: Vec<&str> = text.split_whitespace().collect();
    format!(" {} ", words.join(" "))
        .to_uppercase()
        .trim_start()
        .to_string()
}

/// Splits a script into statements; dollar-quoted bodies, strings and comments are respected.
pub fn split_statements(script: &str) -> Vec<Statement> {
    let Some(root) = parse(script).map(|p| p.0) else {
        // Unparseable as a whole: one statement, which `guard` then refuses.
        let text = script.trim();
        return if text.is_empty() {
            Vec::new()
        } else {
            vec![Statement {
                text: text.to_string(),
                offset: 0,
            }]
        };
    };
    let mut out = Vec::new();
    for stmt in root.children().filter(is_statement) {
        let range = stmt.text_range();
        let start = usize::from(range.start());
        let end = usize::from(range.end());
        let Some(text) = script.get(start..end) else {
            continue;
        };
        let text = text.trim().trim_end_matches(';').trim_end();
        if !text.is_empty() {
            out.push(Statement {
                text: text.to_string(),
                offset: start,
            });
        }
    }
    out
}

/// The syntax tree of one statement, read with the same bounds as every parse here; `None` when
/// `text` does not parse cleanly or holds no statement.
pub fn statement_tree(text: &str) -> Option<squawk_syntax::ast::Stmt> {
    use squawk_syntax::ast::{AstNode, SourceFile};
    let (root, errors) = parse(text)?;
    if !errors.is_empty() {
        return None;
    }
    SourceFile::cast(root)?.stmts().next()
}

/// Converts a byte offset into a 1-based (line, column).
pub fn line_col(source: &str, offset: usize) -> (usize, usize) {
    let offset = offset.min(source.len());
    let before = source.get(..offset).unwrap_or(source);
    let line = before.matches('\n').count() + 1;
    let line_start = before.rfind('\n').map(|i| i + 1).unwrap_or(0);
    let col = before.get(line_start..).map_or(0, |s| s.chars().count()) + 1;
    (line, col)
}

/// Syntax errors of a script, as `line:col: message` relative to the script.
pub fn syntax_errors(script: &str) -> Vec<String> {
    check_script(script)
        .iter()
        .map(|issue| {
            let (line, col) = line_col(script, issue.offset);
            format!("{line}:{col}: {}", issue.message)
        })
        .collect()
}

#[cfg(test)]
mod tests;
