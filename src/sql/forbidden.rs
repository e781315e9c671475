//! What plan SQL may never do: end Cutover's transaction, change the session's identity or
//! protected settings, reach outside the database, or be a psql meta-command.

use squawk_syntax::{SyntaxKind, SyntaxNode};

use super::parse::{is_statement, nul, parse, syntax_issue, too_deep, SqlIssue, MAX_NESTING};

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
pub(super) fn meta_commands(root: &SyntaxNode) -> Vec<usize> {
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

/// Why [`guard`] refused a statement.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum Refused {
    /// The parser's nesting limit was hit.
    #[error("refused: the statement nests more than {} brackets deep", MAX_NESTING)]
    TooDeep,
    /// More than one statement in one text.
    #[error("refused: the text holds more than one statement")]
    SeveralStatements,
    /// A statement a plan may never send.
    #[error("refused: {}", .0.reason())]
    Forbidden(Forbidden),
}

/// Refuses, at run time, a statement that must never reach the server from a plan: more than
/// one statement in the text, or a forbidden one (see [`Forbidden`]).
pub fn guard(text: &str) -> Result<(), Refused> {
    let Some((root, _)) = parse(text) else {
        return Err(Refused::TooDeep);
    };
    if !meta_commands(&root).is_empty() {
        return Err(Refused::Forbidden(Forbidden::MetaCommand));
    }
    let stmts: Vec<SyntaxNode> = root.children().filter(is_statement).collect();
    if stmts.len() > 1 {
        return Err(Refused::SeveralStatements);
    }
    for stmt in &stmts {
        if let Some((why, _)) = forbidden_in(stmt) {
            return Err(Refused::Forbidden(why));
        }
    }
    Ok(())
}
