//! The model of one connection's transaction state, fed the protocol messages [`super::Tallied`]
//! sees in both directions; it counts each top-level transaction the server ends.

use std::collections::{HashMap, VecDeque};
use std::sync::atomic::{AtomicI64, Ordering};
use std::sync::Arc;

use squawk_lexer::TokenKind;

use super::Counters;

/// The transaction state the server is in, as far as the model knows.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Tx {
    /// No transaction.
    Idle,
    /// A transaction that ends with the current query or Sync (not an explicit block).
    Implicit,
    /// An explicit block, possibly failed.
    Block,
}

/// What a statement means for the transaction beyond its command tag.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Kind {
    /// Nothing special.
    Plain,
    /// `ROLLBACK TO SAVEPOINT`: its tag is `ROLLBACK`, but the block goes on.
    RollbackTo,
    /// `COMMIT AND CHAIN` / `ROLLBACK AND CHAIN`: a new block starts at once.
    Chain,
}

/// The requests sent and not yet answered by ReadyForQuery, in order.
#[derive(Debug)]
enum Group {
    /// A simple query: the kind of each of its statements.
    Simple(VecDeque<Kind>),
    /// An extended-protocol batch up to Sync: the kind of each Execute.
    Extended(VecDeque<Kind>),
}

/// One connection's transaction state and where its ends are counted.
#[derive(Debug)]
pub(super) struct Model {
    counters: Arc<Counters>,
    marks_dirty: bool,
    /// Startup finished (the first ReadyForQuery arrived).
    ready: bool,
    tx: Tx,
    groups: VecDeque<Group>,
    open: VecDeque<Kind>,
    statements: HashMap<String, Kind>,
    portals: HashMap<String, Kind>,
    backend_pid: Option<i32>,
    pub(super) ssl_reply_pending: bool,
    /// Encrypted below this wrapper: the wrapper above the TLS session counts instead.
    pub(super) opaque: bool,
    closed: bool,
}

impl Model {
    pub(super) fn new(counters: Arc<Counters>, marks_dirty: bool) -> Model {
        Model {
            counters,
            marks_dirty,
            ready: false,
            tx: Tx::Idle,
            groups: VecDeque::new(),
            open: VecDeque::new(),
            statements: HashMap::new(),
            portals: HashMap::new(),
            backend_pid: None,
            ssl_reply_pending: false,
            opaque: false,
            closed: false,
        }
    }

    fn count(&self, counter: &AtomicI64) {
        counter.fetch_add(1, Ordering::SeqCst);
        if self.marks_dirty {
            self.counters.dirty.store(true, Ordering::SeqCst);
        }
    }

    fn end(&mut self, committed: bool, then: Tx) {
        let t = self.counters.clone();
        self.count(if committed { &t.commits } else { &t.rollbacks });
        self.tx = then;
    }

    fn started(&mut self) {
        if self.tx == Tx::Idle {
            self.tx = Tx::Implicit;
        }
    }

    pub(super) fn ssl_reply(&mut self, byte: u8) {
        self.ssl_reply_pending = false;
        // `S`: TLS follows; the stream above the TLS session is counted by its own wrapper.
        if byte != b'N' {
            self.opaque = true;
        }
    }

    /// A frontend message; returns whether the following messages are typed.
    pub(super) fn frontend(&mut self, kind: u8, body: &[u8]) -> bool {
        match kind {
            0 => {
                let code = body
                    .get(..4)
                    .map_or(0, |b| u32::from_be_bytes([b[0], b[1], b[2], b[3]]));
                if code == 80_877_103 {
                    self.ssl_reply_pending = true;
                }
                // After the startup message proper (protocol 3.0), messages are typed.
                return code >> 16 == 3;
            }
            b'Q' => {
                let sql = cstr(body, 0).0;
                self.groups
                    .push_back(Group::Simple(statement_kinds(&sql).into()));
            }
            b'P' => {
                let (name, rest) = cstr(body, 0);
                let (sql, _) = cstr(body, rest);
                let kind = statement_kinds(&sql)
                    .first()
                    .copied()
                    .unwrap_or(Kind::Plain);
                self.statements.insert(name, kind);
            }
            b'B' => {
                let (portal, rest) = cstr(body, 0);
                let (statement, _) = cstr(body, rest);
                let kind = self
                    .statements
                    .get(&statement)
                    .copied()
                    .unwrap_or(Kind::Plain);
                self.portals.insert(portal, kind);
            }
            b'E' => {
                let portal = cstr(body, 0).0;
                let kind = self.portals.get(&portal).copied().unwrap_or(Kind::Plain);
                self.open.push_back(kind);
            }
            b'S' => {
                let batch = std::mem::take(&mut self.open);
                self.groups.push_back(Group::Extended(batch));
            }
            b'C' => {
                let name = cstr(body, 1).0;
                match body.first() {
                    Some(b'S') => self.statements.remove(&name),
                    Some(b'P') => self.portals.remove(&name),
                    _ => None,
                };
            }
            b'F' => self.groups.push_back(Group::Simple(VecDeque::new())),
            _ => {}
        }
        true
    }

    fn next_kind(&mut self) -> Kind {
        match self.groups.front_mut() {
            Some(Group::Simple(kinds)) | Some(Group::Extended(kinds)) => {
                kinds.pop_front().unwrap_or(Kind::Plain)
            }
            None => Kind::Plain,
        }
    }

    pub(super) fn backend(&mut self, kind: u8, body: &[u8]) {
        match kind {
            b'K' if body.len() >= 4 => {
                let pid = i32::from_be_bytes([body[0], body[1], body[2], body[3]]);
                self.backend_pid = Some(pid);
                self.counters.backends().insert(pid);
            }
            b'Z' => {
                let status = body.first().copied().unwrap_or(b'I');
                if !self.ready {
                    // The session's startup transaction reads the catalogs and commits.
                    self.ready = true;
                    self.end(true, Tx::Idle);
                } else {
                    self.groups.pop_front();
                    if self.tx == Tx::Implicit {
                        self.end(true, Tx::Idle);
                    }
                }
                self.reconcile(status);
            }
            b'E' => {
                if field(body, b'C') == Some("40P01") {
                    let t = self.counters.clone();
                    self.count(&t.deadlocks);
                }
                // Before startup ends, or unasked (a FATAL to an idle session), an error ends no
                // transaction the server counts; a block still open is rolled back at close.
                if !self.ready || self.groups.is_empty() {
                    return;
                }
                // A FATAL before any answer to the pending request may have come before the
                // server read it (a session terminated while idle): no transaction is assumed,
                // so an application rollback is never hidden.
                let fatal = matches!(
                    field(body, b'V').or(field(body, b'S')),
                    Some("FATAL" | "PANIC")
                );
                if !(fatal && self.tx == Tx::Idle) {
                    self.started();
                }
                if self.tx == Tx::Implicit {
                    self.end(false, Tx::Idle);
                }
                // The server skips the rest of the query, or everything up to Sync.
                if let Some(Group::Simple(k) | Group::Extended(k)) = self.groups.front_mut() {
                    k.clear();
                }
            }
            b'C' => {
                let statement = self.next_kind();
                self.started();
                let tag = String::from_utf8_lossy(body.split(|b| *b == 0).next().unwrap_or(&[]))
                    .into_owned();
                self.completed(&tag, statement);
            }
            b'I' | b's' => {
                self.next_kind();
                self.started();
            }
            b'1' | b'2' | b't' | b'T' | b'n' | b'D' | b'G' | b'H' | b'W' | b'V' => self.started(),
            _ => {}
        }
    }

    fn completed(&mut self, tag: &str, statement: Kind) {
        let chained = if statement == Kind::Chain {
            Tx::Block
        } else {
            Tx::Idle
        };
        match tag {
            "BEGIN" | "START TRANSACTION" => self.tx = Tx::Block,
            "COMMIT" => self.end(true, chained),
            "ROLLBACK" if statement == Kind::RollbackTo => self.tx = Tx::Block,
            "ROLLBACK" => self.end(false, chained),
            "PREPARE TRANSACTION" => self.tx = Tx::Idle,
            _ => {}
        }
    }

    /// Aligns the model with the status ReadyForQuery reports.
    fn reconcile(&mut self, status: u8) {
        match status {
            b'I' if self.tx != Tx::Idle => {
                // A block ended in a way the model did not follow; its outcome is unknown,
                // and counting it as a commit never hides an application rollback.
                tracing::debug!("tally: a transaction block ended unseen; counted as a commit");
                self.end(true, Tx::Idle);
            }
            b'T' | b'E' => self.tx = Tx::Block,
            _ => {}
        }
    }

    /// The connection is gone: a block still open is rolled back by the server.
    pub(super) fn closed(&mut self) {
        if self.closed {
            return;
        }
        self.closed = true;
        if self.ready && !self.opaque && self.tx == Tx::Block {
            self.end(false, Tx::Idle);
        }
        if let Some(pid) = self.backend_pid {
            self.counters.backends().remove(&pid);
        }
    }
}

/// The NUL-terminated string at `from` and the offset after it.
fn cstr(body: &[u8], from: usize) -> (String, usize) {
    let rest = body.get(from..).unwrap_or(&[]);
    let end = rest.iter().position(|b| *b == 0).unwrap_or(rest.len());
    (
        String::from_utf8_lossy(&rest[..end]).into_owned(),
        from + end + 1,
    )
}

/// The field `code` of an ErrorResponse body (`C`: SQLSTATE, `V`: severity).
fn field(body: &[u8], code: u8) -> Option<&str> {
    let mut at = 0;
    while at < body.len() && body[at] != 0 {
        let kind = body[at];
        let rest = &body[at + 1..];
        let end = rest.iter().position(|b| *b == 0)?;
        if kind == code {
            return std::str::from_utf8(&rest[..end]).ok();
        }
        at += end + 2;
    }
    None
}

/// The kind of each statement of a simple query, split at the semicolons of squawk's lexer
/// (outside quotes, dollar quotes and comments); empty statements dropped. Only a text naming
/// `ROLLBACK`, `ABORT` or `CHAIN` can hold a statement of another kind than [`Kind::Plain`];
/// any other answers no kinds (every statement plain).
fn statement_kinds(sql: &str) -> Vec<Kind> {
    let names = |word: &[u8]| {
        sql.as_bytes()
            .windows(word.len())
            .any(|w| w.eq_ignore_ascii_case(word))
    };
    if !(names(b"rollback") || names(b"abort") || names(b"chain")) {
        return Vec::new();
    }
    let mut kinds = Vec::new();
    // The statement's first words, upper-cased; "" for a token that is not a word.
    let mut words: Vec<String> = Vec::new();
    let mut any = false;
    let mut at = 0;
    for token in squawk_lexer::tokenize(sql) {
        let text = sql.get(at..at + token.len as usize).unwrap_or("");
        at += token.len as usize;
        match token.kind {
            TokenKind::Whitespace | TokenKind::LineComment | TokenKind::BlockComment { .. } => {}
            TokenKind::Semi => {
                if any {
                    kinds.push(classify(&words));
                }
                words.clear();
                any = false;
            }
            kind => {
                any = true;
                if words.len() < 4 {
                    words.push(match kind {
                        TokenKind::Ident => text.to_ascii_uppercase(),
                        _ => String::new(),
                    });
                }
            }
        }
    }
    if any {
        kinds.push(classify(&words));
    }
    kinds
}

fn classify(words: &[String]) -> Kind {
    let w = |i: usize| words.get(i).map(String::as_str).unwrap_or("");
    let first = w(0);
    if !matches!(first, "COMMIT" | "END" | "ROLLBACK" | "ABORT") {
        return Kind::Plain;
    }
    let mut at = 1;
    if matches!(w(at), "WORK" | "TRANSACTION") {
        at += 1;
    }
    match (w(at), w(at + 1)) {
        ("TO", _) if matches!(first, "ROLLBACK" | "ABORT") => Kind::RollbackTo,
        ("AND", "CHAIN") => Kind::Chain,
        _ => Kind::Plain,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::db::tally::Tally;
    use crate::db::DbConfig;

    #[test]
    fn splits_and_classifies_statements() {
        use Kind::*;
        assert_eq!(statement_kinds(""), Vec::<Kind>::new());
        assert_eq!(statement_kinds(" ; -- c\n;"), Vec::<Kind>::new());
        assert_eq!(
            statement_kinds("ROLLBACK TO SAVEPOINT a; RELEASE SAVEPOINT a; COMMIT"),
            vec![RollbackTo, Plain, Plain]
        );
        assert_eq!(
            statement_kinds("rollback work to a; abort; commit and chain; end and no chain"),
            vec![RollbackTo, Plain, Chain, Plain]
        );
        assert_eq!(
            statement_kinds(
                "SELECT ';', $$ ; $$, $x$;$x$, E'\\';', \"a;\" /* ; /* ; */ */; ROLLBACK TO $1"
            ),
            vec![Plain, RollbackTo]
        );
        assert_eq!(
            statement_kinds(
                "CREATE FUNCTION f() RETURNS int LANGUAGE sql AS $f$ ROLLBACK; $f$; ROLLBACK"
            ),
            vec![Plain, Plain]
        );
        assert_eq!(statement_kinds("SELECT 1; COMMIT"), Vec::<Kind>::new());
    }

    #[test]
    fn a_fatal_before_any_answer_ends_no_transaction() {
        let fatal = b"SFATAL\0VFATAL\0C57P01\0Mterminating connection\0\0";
        let counters =
            Tally::new().counters(&DbConfig::from_url("postgres://u@h:1/unit_fatal").unwrap());
        let before = counters.counts();
        // Terminated while idle, the query just sent: the server never started it.
        let mut idle = Model::new(counters.clone(), false);
        idle.backend(b'Z', b"I");
        idle.frontend(b'Q', b"SELECT 1\0");
        idle.backend(b'E', fatal);
        let seen = counters.counts().minus(&before);
        assert_eq!((seen.commits, seen.rollbacks), (1, 0));
        // Terminated mid-query, after its first answer: rolled back.
        let mut busy = Model::new(counters.clone(), false);
        busy.backend(b'Z', b"I");
        busy.frontend(b'Q', b"SELECT pg_sleep(9)\0");
        busy.backend(b'T', b"\0\0");
        busy.backend(b'E', fatal);
        let seen = counters.counts().minus(&before);
        assert_eq!((seen.commits, seen.rollbacks), (2, 1));
        // An ERROR before any answer still ends the implicit transaction.
        busy.frontend(b'Q', b"SELEKT\0");
        busy.backend(b'E', b"SERROR\0VERROR\0C42601\0\0");
        assert_eq!(counters.counts().minus(&before).rollbacks, 2);
    }
}
