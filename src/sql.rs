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

use squawk_syntax::{SourceFile, SyntaxKind, SyntaxNode};

mod quote;
pub use quote::{quote_ident, quote_literal, quote_qualified};

/// Deeper bracket nesting than this is refused before parsing (it bounds the parser's stack).
pub const MAX_NESTING: usize = 128;

/// Syntax errors kept per parse (the first ones, in text order).
const MAX_ERRORS: usize = 50;

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
    fn new(offset: usize, message: impl Into<String>, hint: Option<&str>) -> SqlIssue {
        SqlIssue {
            offset,
            message: message.into(),
            hint: hint.map(str::to_string),
        }
    }
}

/// Why a statement may not come from a plan.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Forbidden {
    /// `BEGIN`, `COMMIT`, `ROLLBACK`, savepoints, two-phase commit, `SET TRANSACTION`.
    TransactionControl,
    /// `SET ROLE`, `SET SESSION AUTHORIZATION` and their `RESET`s.
    SessionIdentity,
    /// `SET`/`RESET` of a setting Cutover relies on (timeouts, role), or `RESET ALL`.
    ProtectedSetting,
    /// `DISCARD`, `DEALLOCATE`: drop the session state Cutover's connection relies on.
    SessionState,
    /// `COPY … PROGRAM`: runs a shell command on the database server.
    CopyProgram,
    /// `COPY` to or from a file on the database server.
    CopyFile,
    /// `COPY … STDIN/STDOUT`: plan SQL has no client data stream.
    CopyStream,
    /// A `DO` block that commits or rolls back.
    DoTransactionControl,
    /// A psql meta-command (`\connect`, `\i`, `\!`, …).
    MetaCommand,
}

impl Forbidden {
    /// Why the statement is refused.
    pub fn reason(self) -> &'static str {
        match self {
            Forbidden::TransactionControl => {
                "transaction control is not allowed in plan SQL: Cutover runs each phase in its own transaction, and this would end or split it"
            }
            Forbidden::SessionIdentity => {
                "changing the session's role is not allowed in plan SQL: the audit trail records who acts, and later statements would run as someone else"
            }
            Forbidden::ProtectedSetting => {
                "this setting is Cutover's: plan SQL may not change or reset the timeouts or role it runs under"
            }
            Forbidden::SessionState => {
                "DISCARD and DEALLOCATE drop session state Cutover's connection relies on"
            }
            Forbidden::CopyProgram => {
                "COPY … PROGRAM runs a shell command on the database server and is not allowed in plan SQL"
            }
            Forbidden::CopyFile => {
                "COPY to or from a server file is not allowed in plan SQL: it reaches outside the database"
            }
            Forbidden::CopyStream => {
                "COPY … STDIN/STDOUT needs a client data stream, which plan SQL does not have"
            }
            Forbidden::DoTransactionControl => {
                "a DO block may not COMMIT or ROLLBACK: Cutover runs each phase in its own transaction"
            }
            Forbidden::MetaCommand => {
                "psql meta-commands (\\connect, \\i, \\!, …) are not SQL: the server never sees them, and plan SQL may not contain them"
            }
        }
    }

    /// How to fix it.
    pub fn hint(self) -> &'static str {
        match self {
            Forbidden::TransactionControl | Forbidden::DoTransactionControl => {
                "remove it: statements that need their own transaction (CREATE INDEX CONCURRENTLY, …) are detected and run on their own"
            }
            Forbidden::SessionIdentity => "connect as the login that should run the migration",
            Forbidden::ProtectedSetting => {
                "set timeouts in the plan's [settings] (lock_timeout, statement_timeout)"
            }
            Forbidden::SessionState => "remove it",
            Forbidden::CopyProgram | Forbidden::CopyFile | Forbidden::CopyStream => {
                "load data with INSERT … SELECT, or in the backfill"
            }
            Forbidden::MetaCommand => "write plain SQL statements",
        }
    }
}

/// Settings that plan SQL may not `SET` or `RESET`.
const PROTECTED_SETTINGS: &[&str] = &[
    "role",
    "session_authorization",
    "statement_timeout",
    "lock_timeout",
    "idle_in_transaction_session_timeout",
    "transaction_isolation",
    "transaction_read_only",
    "transaction_deferrable",
    "default_transaction_isolation",
    "default_transaction_read_only",
    "default_transaction_deferrable",
];

fn is_statement(node: &SyntaxNode) -> bool {
    node.kind() != SyntaxKind::ERROR
}

/// Parses `text`; `None` when it nests deeper than [`MAX_NESTING`] or the parser failed.
fn parse(text: &str) -> Option<(SyntaxNode, Vec<(usize, String)>)> {
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

fn too_deep() -> SqlIssue {
    SqlIssue::new(
        0,
        format!("SQL nests brackets more than {MAX_NESTING} levels deep"),
        Some("simplify the statement"),
    )
}

/// Why `stmt` (a statement node) may not come from a plan, and where in the text.
fn forbidden_in(stmt: &SyntaxNode) -> Option<(Forbidden, usize)> {
    let at = usize::from(stmt.text_range().start());
    let kind = stmt.kind();
    let found = match kind {
        SyntaxKind::BEGIN
        | SyntaxKind::COMMIT_TRANSACTION
        | SyntaxKind::ROLLBACK_TRANSACTION
        | SyntaxKind::SAVEPOINT_CREATE
        | SyntaxKind::RELEASE_SAVEPOINT
        | SyntaxKind::ROLLBACK_TO_SAVEPOINT
        | SyntaxKind::PREPARE_TRANSACTION
        | SyntaxKind::COMMIT_PREPARED
        | SyntaxKind::ROLLBACK_PREPARED
        | SyntaxKind::SET_TRANSACTION => Some(Forbidden::TransactionControl),
        SyntaxKind::SET_ROLE
        | SyntaxKind::SET_SESSION_AUTH
        | SyntaxKind::RESET_ROLE
        | SyntaxKind::RESET_SESSION_AUTH => Some(Forbidden::SessionIdentity),
        SyntaxKind::DISCARD | SyntaxKind::DEALLOCATE => Some(Forbidden::SessionState),
        SyntaxKind::SET | SyntaxKind::RESET => protected_setting(stmt),
        SyntaxKind::COPY => Some(copy_kind(stmt)),
        SyntaxKind::DO => return do_commits(stmt).map(|o| (Forbidden::DoTransactionControl, o)),
        _ => None,
    };
    found.map(|f| (f, at))
}

fn protected_setting(stmt: &SyntaxNode) -> Option<Forbidden> {
    for child in stmt.children() {
        match child.kind() {
            SyntaxKind::ALL => return Some(Forbidden::ProtectedSetting),
            SyntaxKind::SET_CONFIG | SyntaxKind::CONFIG_PARAMETER_REF => {
                let name_node = if child.kind() == SyntaxKind::SET_CONFIG {
                    child
                        .children()
                        .find(|c| c.kind() == SyntaxKind::CONFIG_PARAMETER_REF)
                } else {
                    Some(child.clone())
                };
                if let Some(name) = name_node {
                    let name = name
                        .text()
                        .to_string()
                        .trim()
                        .trim_matches('"')
                        .to_lowercase();
                    if PROTECTED_SETTINGS.contains(&name.as_str()) {
                        return Some(Forbidden::ProtectedSetting);
                    }
                }
            }
            _ => {}
        }
    }
    None
}

fn copy_kind(stmt: &SyntaxNode) -> Forbidden {
    let kinds: Vec<SyntaxKind> = stmt.descendants().map(|n| n.kind()).collect();
    let program = stmt
        .descendants_with_tokens()
        .any(|e| e.kind() == SyntaxKind::PROGRAM_KW);
    if program {
        Forbidden::CopyProgram
    } else if kinds.contains(&SyntaxKind::COPY_PROGRAM) {
        Forbidden::CopyFile
    } else {
        Forbidden::CopyStream
    }
}

/// The offset of a COMMIT or ROLLBACK inside a DO block's body, if any.
fn do_commits(stmt: &SyntaxNode) -> Option<usize> {
    let literal = stmt.children().find(|c| c.kind() == SyntaxKind::LITERAL)?;
    let token = literal.first_token()?;
    let raw = token.text();
    let start = usize::from(token.text_range().start());
    let (body, body_offset) = match token.kind() {
        SyntaxKind::DOLLAR_QUOTED_STRING => {
            let tag_len = raw.get(1..)?.find('$')? + 2;
            let inner = raw.get(tag_len..raw.len().checked_sub(tag_len)?)?;
            (inner.to_string(), Some(start + tag_len))
        }
        _ => {
            let inner = raw.trim_start_matches(['E', 'e']).trim_matches('\'');
            (inner.replace("''", "'"), None)
        }
    };
    let (root, _) = parse(&body)?;
    let hit = root
        .descendants_with_tokens()
        .find(|e| matches!(e.kind(), SyntaxKind::COMMIT_KW | SyntaxKind::ROLLBACK_KW))?;
    let inner = usize::from(hit.text_range().start());
    Some(body_offset.map_or(start, |o| o + inner))
}

/// Offsets of psql meta-commands: a backslash outside strings, identifiers and comments.
fn meta_commands(root: &SyntaxNode) -> Vec<usize> {
    root.descendants_with_tokens()
        .filter_map(|e| e.into_token())
        .filter(|t| t.kind() == SyntaxKind::ERROR && t.text().starts_with('\\'))
        .map(|t| usize::from(t.text_range().start()))
        .collect()
}

/// Every problem of a plan script (apply/rollback): syntax errors and forbidden statements.
pub fn check_script(script: &str) -> Vec<SqlIssue> {
    if script.contains('\0') {
        return vec![nul(script)];
    }
    let Some((root, errors)) = parse(script) else {
        return vec![too_deep()];
    };
    let mut out = Vec::new();
    let metas = meta_commands(&root);
    for &at in &metas {
        out.push(SqlIssue::new(
            at,
            Forbidden::MetaCommand.reason(),
            Some(Forbidden::MetaCommand.hint()),
        ));
    }
    let line_end = |at: usize| {
        script
            .get(at..)
            .and_then(|s| s.find('\n'))
            .map_or(script.len(), |n| at + n)
    };
    // One syntax error per statement: the parser's follow-on errors only repeat the first.
    let semicolons: Vec<usize> = root
        .descendants_with_tokens()
        .filter(|e| e.kind() == SyntaxKind::SEMICOLON)
        .map(|e| usize::from(e.text_range().start()))
        .collect();
    let mut last: Option<usize> = None;
    for (at, message) in errors {
        if metas.iter().any(|&m| at >= m && at <= line_end(m)) {
            continue;
        }
        if last.is_some_and(|prev| !semicolons.iter().any(|&s| s >= prev && s < at)) {
            continue;
        }
        last = Some(at);
        out.push(syntax_issue(at, &message));
    }
    for stmt in root.children().filter(is_statement) {
        if let Some((why, at)) = forbidden_in(&stmt) {
            out.push(SqlIssue::new(at, why.reason(), Some(why.hint())));
        }
    }
    out.sort_by_key(|i| i.offset);
    out
}

fn nul(text: &str) -> SqlIssue {
    SqlIssue::new(
        text.find('\0').unwrap_or(0),
        "SQL contains a NUL character, which PostgreSQL cannot accept",
        Some("remove the \\u0000 escape"),
    )
}

fn syntax_issue(at: usize, message: &str) -> SqlIssue {
    SqlIssue::new(
        at,
        format!("SQL syntax error: {message}"),
        Some("PostgreSQL would reject this statement; fix the SQL"),
    )
}

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

/// Refuses, at run time, a statement that must never reach the server from a plan: more than
/// one statement in the text, or a forbidden one (see [`Forbidden`]).
pub fn guard(text: &str) -> Result<(), String> {
    let Some((root, _)) = parse(text) else {
        return Err(format!(
            "refused: the statement nests more than {MAX_NESTING} brackets deep"
        ));
    };
    if !meta_commands(&root).is_empty() {
        return Err(format!("refused: {}", Forbidden::MetaCommand.reason()));
    }
    let stmts: Vec<SyntaxNode> = root.children().filter(is_statement).collect();
    if stmts.len() > 1 {
        return Err("refused: the text holds more than one statement".to_string());
    }
    for stmt in &stmts {
        if let Some((why, _)) = forbidden_in(stmt) {
            return Err(format!("refused: {}", why.reason()));
        }
    }
    Ok(())
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

    fn refused(script: &str) -> Vec<SqlIssue> {
        let issues = check_script(script);
        assert!(!issues.is_empty(), "`{script}` should be refused");
        issues
    }

    #[test]
    fn transaction_control_is_refused_everywhere_in_a_script() {
        for stmt in [
            "BEGIN",
            "START TRANSACTION",
            "COMMIT",
            "END",
            "ROLLBACK",
            "ABORT",
            "SAVEPOINT a",
            "RELEASE a",
            "RELEASE SAVEPOINT a",
            "ROLLBACK TO a",
            "ROLLBACK TO SAVEPOINT a",
            "PREPARE TRANSACTION 'x'",
            "COMMIT PREPARED 'x'",
            "ROLLBACK PREPARED 'x'",
            "SET TRANSACTION ISOLATION LEVEL SERIALIZABLE",
            "SET SESSION CHARACTERISTICS AS TRANSACTION READ ONLY",
            "commit and chain",
        ] {
            let script = format!("ALTER TABLE t ADD COLUMN c int;\n  {stmt};\nDROP TABLE canary;");
            let issues = refused(&script);
            let at = script.find(stmt).expect("statement in script");
            assert!(
                issues
                    .iter()
                    .any(|i| i.offset == at && i.message.contains("transaction control")),
                "{stmt}: {issues:?}"
            );
            assert!(guard(stmt).is_err(), "{stmt}");
        }
    }

    #[test]
    fn session_identity_settings_copy_and_meta_commands_are_refused() {
        for (stmt, fragment) in [
            ("SET SESSION AUTHORIZATION bob", "role"),
            ("SET ROLE bob", "role"),
            ("SET LOCAL ROLE bob", "role"),
            ("RESET ROLE", "role"),
            ("RESET SESSION AUTHORIZATION", "role"),
            ("RESET ALL", "Cutover's"),
            ("SET statement_timeout = 0", "Cutover's"),
            ("SET LOCAL lock_timeout TO '1h'", "Cutover's"),
            ("RESET lock_timeout", "Cutover's"),
            ("SET session_authorization = bob", "Cutover's"),
            ("DISCARD ALL", "DISCARD"),
            ("DEALLOCATE ALL", "DEALLOCATE"),
            ("COPY t TO PROGRAM 'rm -rf /'", "shell command"),
            ("COPY t FROM PROGRAM 'id'", "shell command"),
            ("COPY t FROM '/etc/passwd'", "server file"),
            ("COPY (SELECT 1) TO '/tmp/x'", "server file"),
            ("COPY t FROM STDIN", "data stream"),
            ("DO $$ BEGIN COMMIT; END $$", "DO block"),
            ("DO $x$ BEGIN PERFORM 1; ROLLBACK; END $x$", "DO block"),
            ("DO LANGUAGE plpgsql 'BEGIN COMMIT; END'", "DO block"),
            ("\\connect other", "meta-command"),
            ("\\! rm -rf /", "meta-command"),
        ] {
            let issues = refused(stmt);
            assert!(
                issues.iter().any(|i| i.message.contains(fragment)),
                "{stmt}: {issues:?}"
            );
            assert!(guard(stmt).is_err(), "{stmt}");
        }
    }

    #[test]
    fn ordinary_migration_sql_passes() {
        for script in [
            "ALTER TABLE public.accounts ADD COLUMN balance_cents bigint;",
            "CREATE FUNCTION f() RETURNS trigger LANGUAGE plpgsql AS $$ BEGIN NEW.b := 1; RETURN NEW; END $$;",
            "DO $$ BEGIN PERFORM 1; END $$;",
            "CREATE PROCEDURE p() LANGUAGE plpgsql AS $$ BEGIN COMMIT; END $$;",
            "SET LOCAL search_path TO public; CREATE INDEX CONCURRENTLY i ON t (c);",
            "SELECT E'\\\\connect is only text';",
            "",
        ] {
            assert_eq!(check_script(script), Vec::new(), "{script}");
        }
        assert!(guard("ALTER TABLE t ADD COLUMN c int").is_ok());
    }

    #[test]
    fn syntax_errors_are_positioned() {
        let script = "ALTER TABLE t ADD COLUMN c int;\nALTER TABLE t ADD COLUM;";
        let issues = check_script(script);
        assert!(!issues.is_empty());
        let two = check_script("SELEC count(*) FROM t;\nSELEC 1;");
        assert_eq!(two.len(), 2, "one error per statement: {two:?}");
        assert!(
            issues[0].offset > script.find('\n').unwrap_or(0),
            "{issues:?}"
        );
        assert!(syntax_errors(script)[0].starts_with("2:"));
    }

    #[test]
    fn an_expression_is_exactly_one_expression() {
        for ok in [
            "round(balance * 100)::bigint",
            "balance_cents IS NULL",
            "NOT EXISTS (SELECT 1 FROM public.orders_v2 v WHERE v.legacy_id = orders.id)",
            "date_trunc('month', created_at)",
            "x -- trailing comment\n",
            "'it''s )'",
            "(a)",
            "x -- a comment with a ) in it\n",
            "$q$)$q$",
        ] {
            assert_eq!(check_expression(ok), Vec::new(), "{ok}");
        }
        for bad in [
            "x IS NULL; COMMIT; DROP TABLE t; --",
            "x IS NULL) OR (true",
            "1) FROM t; --",
            "1) FROM t WHERE (1",
            "x /*",
            "a, b",
            "x -- swallows the closing parenthesis",
            "round(balance * 100)::bigint) FROM x; --",
            "",
            "   ",
            "x IS NULL;",
            "'unterminated",
            "\\connect x",
            "x\0",
        ] {
            assert!(
                !check_expression(bad).is_empty(),
                "`{bad}` should be refused"
            );
        }
        let issues = check_expression("x IS NULL; COMMIT");
        assert_eq!(issues[0].offset, 9, "{issues:?}");
    }

    #[test]
    fn a_relation_is_exactly_one_relation() {
        for ok in ["public.accounts", "accounts", "\"Odd Name\".t"] {
            assert_eq!(check_relation(ok), Vec::new(), "{ok}");
        }
        for bad in [
            "t WHERE false",
            "t; DROP TABLE x",
            "t, u",
            "",
            "t ORDER BY 1",
        ] {
            assert!(!check_relation(bad).is_empty(), "`{bad}` should be refused");
        }
    }

    #[test]
    fn a_query_is_one_statement_of_the_right_kind() {
        assert_eq!(
            check_query("SELECT count(*) FROM t WHERE x < 0;", QueryKind::ReadOnly),
            Vec::new()
        );
        assert_eq!(
            check_query("UPDATE t SET x = 1 WHERE id = $1", QueryKind::Preparable),
            Vec::new()
        );
        for (bad, kind) in [
            ("SELECT 1; COMMIT; DROP TABLE canary", QueryKind::ReadOnly),
            ("SELECT 1; DROP TABLE canary", QueryKind::Preparable),
            ("DELETE FROM t", QueryKind::ReadOnly),
            (
                "WITH d AS (DELETE FROM t RETURNING 1) SELECT count(*) FROM d",
                QueryKind::ReadOnly,
            ),
            ("COMMIT", QueryKind::Preparable),
            ("DROP TABLE canary", QueryKind::Preparable),
            ("SELECT 1 --", QueryKind::ReadOnly),
            ("", QueryKind::ReadOnly),
        ] {
            assert!(
                !check_query(bad, kind).is_empty(),
                "`{bad}` should be refused"
            );
        }
    }

    #[test]
    fn deep_nesting_is_refused_without_parsing() {
        let deep = format!("{}1{}", "(".repeat(100_000), ")".repeat(100_000));
        assert!(!check_expression(&deep).is_empty());
        assert!(!check_script(&format!("SELECT {deep}")).is_empty());
        assert!(guard(&format!("SELECT {deep}")).is_err());
        let ok = format!("{}1{}", "(".repeat(100), ")".repeat(100));
        assert_eq!(check_expression(&ok), Vec::new());
    }
}
