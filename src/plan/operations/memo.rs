//! What an in-place change overwrote, kept where its rollback finds it.
//!
//! An in-place change (a column's default, nullability or comment, a table's replica identity)
//! must be undone to the value it found, not to a fixed one. The plan is loaded without a
//! database, and the catalog may change between `validate` and `apply`, so the value is read when
//! the phase runs: the generated apply first saves it in a *memo*, a tiny SQL function in the
//! table's schema (`<table>_cutover_prev_<what>()` returning the old value as text, or NULL for
//! none), in the same transaction as the change. The rollback reads the memo, restores the value
//! and drops the memo; contract drops it. A memo already present is kept: the first value seen
//! is the one restored.

use super::idents::{limit, Table};

/// A memo of one value of `table`.
pub(crate) struct Memo {
    table: Table,
    /// `schema.function`, quoted as needed.
    function: String,
}

impl Memo {
    /// The memo `<table>_cutover_prev_<what>` of `table`.
    pub(crate) fn new(table: &Table, what: &str) -> Memo {
        let name = limit(format!("{}_cutover_prev_{what}", table.name));
        Memo {
            table: table.clone(),
            function: table.sibling(&name),
        }
    }

    /// Saves the text `read` (a scalar SQL query or expression, NULL for "none") unless a memo
    /// is there already.
    pub(crate) fn save(&self, read: &str) -> String {
        format!(
            "DO $cutover$ BEGIN IF to_regprocedure({sig}) IS NULL THEN EXECUTE format('CREATE FUNCTION %s() RETURNS text LANGUAGE sql IMMUTABLE AS %L', {func}, format('SELECT %L::text', ({read}))); END IF; END $cutover$;",
            sig = literal(&format!("{}()", self.function)),
            func = literal(&self.function),
        )
    }

    /// Restores the saved value: `body` is PL/pgSQL that sees it as `prev` (text, NULL for
    /// none) and the table as `tbl` (its name as SQL). Nothing happens without a memo: the change
    /// it records did not run.
    pub(crate) fn restore(&self, body: &str) -> String {
        format!(
            "DO $cutover$ DECLARE prev text; tbl text := {tbl}; BEGIN IF to_regprocedure({sig}) IS NULL THEN RETURN; END IF; EXECUTE format('SELECT %s()', {func}) INTO prev; {body} EXECUTE format('DROP FUNCTION %s()', {func}); END $cutover$;",
            tbl = literal(&self.table.sql()),
            sig = literal(&format!("{}()", self.function)),
            func = literal(&self.function),
        )
    }

    /// Drops the memo (contract: the change stays).
    pub(crate) fn forget(&self) -> String {
        format!("DROP FUNCTION IF EXISTS {}();", self.function)
    }

    /// The table as a string literal (for `'…'::regclass` in `read`).
    pub(crate) fn table_literal(&self) -> String {
        literal(&self.table.sql())
    }
}

/// `text` as a SQL string literal.
pub(crate) fn literal(text: &str) -> String {
    format!("'{}'", text.replace('\'', "''"))
}
