//! SQL scripts from plans: splitting into statements (with squawk's PostgreSQL parser) and
//! telling which statements cannot run inside a transaction block.

use squawk_syntax::ast::AstNode;
use squawk_syntax::SourceFile;

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
    let parse = SourceFile::parse(script);
    let mut out = Vec::new();
    for stmt in parse.tree().stmts() {
        let range = stmt.syntax().text_range();
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

/// Syntax errors of a script, as `line:col: message` relative to the script.
pub fn syntax_errors(script: &str) -> Vec<String> {
    SourceFile::parse(script)
        .errors()
        .iter()
        .map(|e| {
            let (line, col) =
                crate::plan::diagnostic::line_col(script, usize::from(e.range().start()));
            format!("{line}:{col}: {}", e.message())
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn splits_around_dollar_quotes() {
        let script = "ALTER TABLE a ADD COLUMN b int;\nCREATE FUNCTION f() RETURNS trigger LANGUAGE plpgsql AS $$ BEGIN NEW.b := 1; RETURN NEW; END $$;\nCREATE INDEX CONCURRENTLY i ON a (b);";
        let stmts = split_statements(script);
        assert_eq!(stmts.len(), 3, "{stmts:?}");
        assert!(stmts[1].text.contains("RETURN NEW; END $$"));
        assert!(!stmts[0].needs_own_transaction());
        assert!(stmts[2].needs_own_transaction());
    }
}
