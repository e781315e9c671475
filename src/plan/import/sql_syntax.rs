//! Names, column lists and foreign-key actions read out of squawk's syntax tree, for the SQL
//! importer: its statements and its `CREATE TABLE` mapping.

use squawk_syntax::ast::{self, AstNode};
use squawk_syntax::{SyntaxKind, SyntaxNode};

/// A name as written in SQL, as operations take it: quotes removed, unquoted parts lower-cased.
pub(super) fn name(text: &str) -> String {
    let mut parts = Vec::new();
    let mut cur = String::new();
    let mut quoted = false;
    let mut chars = text.trim().chars().peekable();
    let mut was_quoted = false;
    while let Some(c) = chars.next() {
        match c {
            '"' if quoted && chars.peek() == Some(&'"') => {
                cur.push('"');
                chars.next();
            }
            '"' => {
                quoted = !quoted;
                was_quoted = true;
            }
            '.' if !quoted => {
                parts.push(std::mem::take(&mut cur));
                was_quoted = false;
            }
            c if !quoted && c.is_whitespace() => {}
            c if quoted || was_quoted => cur.push(c),
            c => cur.push(c.to_ascii_lowercase()),
        }
    }
    parts.push(cur);
    parts.join(".")
}

/// The node's text, trimmed.
pub(super) fn text_of(n: &impl AstNode) -> String {
    n.syntax().text().to_string().trim().to_string()
}

/// Column names of the first (or `nth`) column list under `node`.
pub(super) fn columns(node: &SyntaxNode, nth: usize) -> Vec<String> {
    node.descendants()
        .filter(|n| {
            matches!(
                n.kind(),
                SyntaxKind::COLUMN_LIST
                    | SyntaxKind::CONSTRAINT_COLUMN_REF_LIST
                    | SyntaxKind::FOREIGN_KEY_COLUMN_LIST
            )
        })
        .nth(nth)
        .map(|list| {
            list.children()
                .map(|c| name(&c.text().to_string()))
                .filter(|c| !c.is_empty())
                .collect()
        })
        .unwrap_or_default()
}

/// `Some(on_delete)` when a foreign key has no options but `ON DELETE`; `None` otherwise.
pub(super) fn on_delete_only(
    actions: impl Iterator<Item = ast::ReferentialAction>,
    match_type: Option<ast::MatchType>,
    options: usize,
) -> Option<Option<String>> {
    if match_type.is_some() || options > 0 {
        return None;
    }
    let mut on_delete = None;
    for a in actions {
        match a {
            ast::ReferentialAction::OnDeleteAction(d) => {
                let words: Vec<String> = text_of(&d)
                    .split_whitespace()
                    .skip(2)
                    .map(str::to_uppercase)
                    .collect();
                on_delete = Some(words.join(" "));
            }
            ast::ReferentialAction::OnUpdateAction(_) => return None,
        }
    }
    Some(on_delete)
}
