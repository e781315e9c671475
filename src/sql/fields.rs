//! Fields that hold one query, one expression or one relation: each is checked to be exactly
//! that, so nothing can be appended to the SQL Cutover builds around it.

use squawk_syntax::{SyntaxKind, SyntaxNode};

use super::forbidden::{check_script, meta_commands, Forbidden};
use super::parse::{is_statement, nul, parse, too_deep, SqlIssue};

/// What a single-statement field must be.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum QueryKind {
    /// A read-only query (`SELECT`, `VALUES`, `TABLE`, set operations) returning rows.
    ReadOnly,
    /// A statement `PREPARE` accepts: a query, `INSERT`, `UPDATE`, `DELETE` or `MERGE`.
    Preparable,
}

/// Checks that `sql` is exactly one statement of `kind` (a trailing `;` is allowed).
pub fn check_query(sql: &str, kind: QueryKind) -> Vec<SqlIssue> {
    if sql.trim().is_empty() {
        return vec![SqlIssue::new(0, "the query is empty", None)];
    }
    let mut out = check_script(sql);
    if !out.is_empty() {
        return out;
    }
    let Some((root, _)) = parse(sql) else {
        return vec![too_deep()];
    };
    let stmts: Vec<SyntaxNode> = root.children().filter(is_statement).collect();
    let Some(first) = stmts.first() else {
        return vec![SqlIssue::new(0, "the query has no statement", None)];
    };
    if let Some(second) = stmts.get(1) {
        out.push(SqlIssue::new(
            usize::from(second.text_range().start()),
            "only one statement is allowed here; this is a second one",
            Some("remove everything after the first statement's `;`"),
        ));
        return out;
    }
    let at = usize::from(first.text_range().start());
    let read_only = matches!(
        first.kind(),
        SyntaxKind::SELECT
            | SyntaxKind::COMPOUND_SELECT
            | SyntaxKind::PAREN_SELECT
            | SyntaxKind::VALUES
            | SyntaxKind::TABLE
    );
    let writes = matches!(
        first.kind(),
        SyntaxKind::INSERT | SyntaxKind::UPDATE | SyntaxKind::DELETE | SyntaxKind::MERGE
    );
    match kind {
        QueryKind::ReadOnly if !read_only => out.push(SqlIssue::new(
            at,
            "this must be a read-only query (SELECT, VALUES, TABLE)",
            Some("checks and probes only read; put changes in a phase's apply script"),
        )),
        QueryKind::Preparable if !(read_only || writes) => out.push(SqlIssue::new(
            at,
            "this must be a SELECT, VALUES, TABLE, INSERT, UPDATE, DELETE or MERGE statement (what PREPARE accepts)",
            None,
        )),
        _ => {}
    }
    if kind == QueryKind::ReadOnly && read_only {
        let modifying = first.descendants().find(|n| {
            n != first
                && matches!(
                    n.kind(),
                    SyntaxKind::INSERT
                        | SyntaxKind::UPDATE
                        | SyntaxKind::DELETE
                        | SyntaxKind::MERGE
                        | SyntaxKind::SELECT_INTO
                )
        });
        if let Some(n) = modifying {
            out.push(SqlIssue::new(
                usize::from(n.text_range().start()),
                "a read-only query may not change data (data-modifying WITH or SELECT INTO)",
                None,
            ));
        }
    }
    out.extend(trailing_comment_issue(sql));
    out
}

/// The offset of a `--` comment that runs to the end of `text` without a newline.
fn trailing_line_comment(root: &SyntaxNode, text: &str) -> Option<usize> {
    let last = root
        .descendants_with_tokens()
        .filter_map(|e| e.into_token())
        .filter(|t| t.kind() != SyntaxKind::WHITESPACE || t.text().contains('\n'))
        .last()?;
    (last.kind() == SyntaxKind::COMMENT && last.text().starts_with("--") && !text.ends_with('\n'))
        .then(|| usize::from(last.text_range().start()))
}

/// Checks that `expr` is exactly one SQL expression (a column, a predicate, a value): it is
/// parsed as `SELECT (<expr>)` and must be the whole of the parenthesized target, so no `)`,
/// `;` or comment can carry anything past it.
pub fn check_expression(expr: &str) -> Vec<SqlIssue> {
    const PREFIX: &str = "SELECT (";
    if expr.trim().is_empty() {
        return vec![SqlIssue::new(0, "the expression is empty", None)];
    }
    if expr.contains('\0') {
        return vec![nul(expr)];
    }
    if let Some(at) = first_unbalanced_close(expr) {
        return vec![SqlIssue::new(
            at,
            "not a single SQL expression: this `)` closes a parenthesis the expression did not open",
            Some("write one SQL expression; a `)` may not close what Cutover wraps it in"),
        )];
    }
    let wrapped = format!("{PREFIX}{expr}\n)");
    let Some((root, errors)) = parse(&wrapped) else {
        return vec![too_deep()];
    };
    let back = |at: usize| at.saturating_sub(PREFIX.len()).min(expr.len());
    let metas = meta_commands(&root);
    if let Some(&at) = metas.first() {
        return vec![SqlIssue::new(
            back(at),
            Forbidden::MetaCommand.reason(),
            Some(Forbidden::MetaCommand.hint()),
        )];
    }
    let stmts: Vec<SyntaxNode> = root.children().filter(is_statement).collect();
    let mut out: Vec<SqlIssue> = Vec::new();
    if stmts.len() > 1 {
        let semicolon = root
            .descendants_with_tokens()
            .find(|e| e.kind() == SyntaxKind::SEMICOLON)
            .map_or(stmts[1].text_range().start(), |e| e.text_range().start());
        out.push(SqlIssue::new(
            back(usize::from(semicolon)),
            "an expression may not contain `;` or further statements",
            Some("write one SQL expression, e.g. `round(balance * 100)::bigint`"),
        ));
    } else if let Some(&(at, ref message)) = errors.first() {
        out.push(SqlIssue::new(
            back(at),
            format!("not a valid SQL expression: {message}"),
            Some("write one SQL expression, e.g. `round(balance * 100)::bigint`"),
        ));
    }
    if !out.is_empty() {
        return out;
    }
    let whole = stmts.len() == 1
        && stmts[0].kind() == SyntaxKind::SELECT
        && single_target_spans(&stmts[0], PREFIX.len() - 1, wrapped.len());
    if !whole {
        return vec![SqlIssue::new(
            0,
            "not a single SQL expression: its parentheses or quotes do not balance, or it continues past the expression",
            Some("write one SQL expression; a `)` or comment may not close what Cutover wraps it in"),
        )];
    }
    trailing_comment_issue(expr)
}

/// A `--` comment at the very end of a field would swallow the SQL Cutover writes after it.
fn trailing_comment_issue(text: &str) -> Vec<SqlIssue> {
    parse(text)
        .and_then(|(root, _)| trailing_line_comment(&root, text))
        .map(|at| {
            vec![SqlIssue::new(
                at,
                "the SQL ends inside a `--` comment, which would swallow what Cutover appends",
                Some("end the field with a newline or use /* … */"),
            )]
        })
        .unwrap_or_default()
}

/// True when the select's only clause is a target list with one target spanning `start..end`.
fn single_target_spans(select: &SyntaxNode, start: usize, end: usize) -> bool {
    let clauses: Vec<SyntaxNode> = select.children().collect();
    let [clause] = clauses.as_slice() else {
        return false;
    };
    if clause.kind() != SyntaxKind::SELECT_CLAUSE {
        return false;
    }
    let Some(list) = clause
        .children()
        .find(|c| c.kind() == SyntaxKind::TARGET_LIST)
    else {
        return false;
    };
    let targets: Vec<SyntaxNode> = list.children().collect();
    let [target] = targets.as_slice() else {
        return false;
    };
    let inner: Vec<SyntaxNode> = target.children().collect();
    let [paren] = inner.as_slice() else {
        return false;
    };
    let range = paren.text_range();
    paren.kind() == SyntaxKind::PAREN_EXPR
        && usize::from(range.start()) == start
        && usize::from(range.end()) == end
}

/// The offset of the first `)` token of `text` that closes nothing (parentheses inside strings,
/// quoted names and comments are not tokens), if any.
fn first_unbalanced_close(text: &str) -> Option<usize> {
    let (root, _) = parse(text)?;
    let mut depth = 0usize;
    for token in root
        .descendants_with_tokens()
        .filter_map(|e| e.into_token())
    {
        match token.kind() {
            SyntaxKind::L_PAREN => depth += 1,
            SyntaxKind::R_PAREN if depth == 0 => {
                return Some(usize::from(token.text_range().start()))
            }
            SyntaxKind::R_PAREN => depth -= 1,
            _ => {}
        }
    }
    None
}

/// Checks that `rel` is exactly one relation for a `FROM` clause (a name, or a parenthesized
/// subquery with an alias): it is parsed as `SELECT 1 FROM <rel>` and must be the only FROM item
/// with no clause after it.
pub fn check_relation(rel: &str) -> Vec<SqlIssue> {
    const PREFIX: &str = "SELECT 1 FROM ";
    if rel.trim().is_empty() {
        return vec![SqlIssue::new(0, "the relation name is empty", None)];
    }
    if rel.contains('\0') {
        return vec![nul(rel)];
    }
    let wrapped = format!("{PREFIX}{rel}\n");
    let Some((root, errors)) = parse(&wrapped) else {
        return vec![too_deep()];
    };
    let back = |at: usize| at.saturating_sub(PREFIX.len()).min(rel.len());
    if let Some(&(at, ref message)) = errors.first() {
        return vec![SqlIssue::new(
            back(at),
            format!("not a valid relation: {message}"),
            Some("write `schema.table`, `table`, or a quoted name"),
        )];
    }
    let stmts: Vec<SyntaxNode> = root.children().filter(is_statement).collect();
    let only_from = match stmts.as_slice() {
        [select] if select.kind() == SyntaxKind::SELECT => {
            let clauses: Vec<SyntaxKind> = select.children().map(|c| c.kind()).collect();
            clauses == [SyntaxKind::SELECT_CLAUSE, SyntaxKind::FROM_CLAUSE]
                && select
                    .children()
                    .find(|c| c.kind() == SyntaxKind::FROM_CLAUSE)
                    .is_some_and(|f| f.children().count() == 1)
        }
        _ => false,
    };
    if !only_from {
        let at = stmts
            .get(1)
            .map_or(0, |s| back(usize::from(s.text_range().start())));
        return vec![SqlIssue::new(
            at,
            "not a single relation: it continues past the relation name (another clause, `;`, or a second statement)",
            Some("write `schema.table` or `table`"),
        )];
    }
    trailing_comment_issue(rel)
}
