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
//!
//! Saving and restoring run dynamic SQL (`DO`), so each block declares its lock for `plan show`
//! (see [`super::locks`]): saving reads the catalog and creates a function — no table lock;
//! restoring takes the lock of the change it undoes.

use super::idents::{limit, Table};
use super::locks::{self, Lock};

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
            "DO $cutover$ -- save the memo {name}\n{declares}\nBEGIN IF to_regprocedure({sig}) IS NULL THEN EXECUTE format('CREATE FUNCTION %s() RETURNS text LANGUAGE sql IMMUTABLE AS %L', {func}, format('SELECT %L::text', ({read}))); END IF; END $cutover$;",
            declares = locks::declaration(&Lock {
                mode: "none",
                object: None,
                note: "",
            }),
            name = self.function.replace(['\n', '\r'], " "),
            sig = literal(&format!("{}()", self.function)),
            func = literal(&self.function),
        )
    }

    /// Restores the saved value: `body` is PL/pgSQL that sees it as `prev` (text, NULL for
    /// none) and the table as `tbl` (its name as SQL), and undoes `change` (the statement that
    /// overwrote the value: the restore takes its lock). Nothing happens without a memo: the
    /// change it records did not run.
    pub(crate) fn restore(&self, body: &str, change: &str) -> String {
        format!(
            "DO $cutover$ -- restore from the memo {name}\n{declares}\nDECLARE prev text; tbl text := {tbl}; BEGIN IF to_regprocedure({sig}) IS NULL THEN RETURN; END IF; EXECUTE format('SELECT %s()', {func}) INTO prev; {body} EXECUTE format('DROP FUNCTION %s()', {func}); END $cutover$;",
            declares = locks::declaration(&locks::classify(change)),
            tbl = literal(&self.table.sql()),
            name = self.function.replace(['\n', '\r'], " "),
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
