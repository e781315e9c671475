//! Which lock a statement takes on which object: a small pure classifier over the syntax tree
//! squawk's PostgreSQL parser builds for each statement of a script (see
//! [`crate::sql::split_statements`] and [`crate::sql::statement_tree`]), following the lock
//! levels PostgreSQL's documentation gives each command and `ALTER TABLE` form; an `ALTER TABLE`
//! with several actions takes the strongest of their locks. A `DO` block runs dynamic SQL no
//! parser sees: it is classified by the lock it declares in a line of its body,
//! `-- lock: <mode>[ on <table>]` (what the generator writes for the blocks it emits, see
//! [`declaration`]). What it cannot tell it says so (`unknown`): a statement that does not
//! parse, a `DO` block that declares nothing, commands outside the table.

use serde::Serialize;
use squawk_syntax::ast::{self, AstNode};

/// A statement and the lock it takes.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Lock {
    /// The lock mode (`ACCESS EXCLUSIVE`, `SHARE UPDATE EXCLUSIVE`, …), `none` or `unknown`.
    pub mode: &'static str,
    /// The object it is taken on, when the statement names one.
    pub object: Option<String>,
    /// What else to know: held briefly, rewrites the table, scans it, …
    pub note: &'static str,
}

/// The statements of `script` with their locks.
pub fn classify_script(script: &str) -> Vec<(String, Lock)> {
    crate::sql::split_statements(script)
        .into_iter()
        .map(|s| {
            let lock = classify(&s.text);
            (s.text, lock)
        })
        .collect()
}

const ACCESS_EXCLUSIVE: &str = "ACCESS EXCLUSIVE";
const SHARE_ROW_EXCLUSIVE: &str = "SHARE ROW EXCLUSIVE";
const SHARE: &str = "SHARE";
const SHARE_UPDATE_EXCLUSIVE: &str = "SHARE UPDATE EXCLUSIVE";
const ROW_EXCLUSIVE: &str = "ROW EXCLUSIVE";
const ACCESS_SHARE: &str = "ACCESS SHARE";
const BRIEF: &str =
    "held briefly (queued behind long transactions; lock_timeout and retries apply)";

/// Rank of a table lock mode (higher conflicts with more).
fn strength(mode: &str) -> u8 {
    match mode {
        ACCESS_EXCLUSIVE => 8,
        SHARE_ROW_EXCLUSIVE => 6,
        SHARE => 5,
        SHARE_UPDATE_EXCLUSIVE => 4,
        ROW_EXCLUSIVE => 3,
        ACCESS_SHARE => 1,
        _ => 0,
    }
}

fn lock(mode: &'static str, object: Option<String>, note: &'static str) -> Lock {
    Lock { mode, object, note }
}

fn text_of(n: &impl AstNode) -> String {
    n.syntax().text().to_string().trim().to_string()
}

/// The lock one statement takes.
pub fn classify(stmt: &str) -> Lock {
    use ast::Stmt as S;
    let Some(tree) = crate::sql::statement_tree(stmt) else {
        return lock("unknown", None, "does not parse as one statement");
    };
    match tree {
        S::CreateIndex(c) => {
            let table = c.table_relation_name().map(|r| text_of(&r));
            if c.concurrently_token().is_some() {
                lock(
                    SHARE_UPDATE_EXCLUSIVE,
                    table,
                    "writes go on while the index builds; runs outside a transaction",
                )
            } else {
                lock(SHARE, table, "blocks writes while the index builds")
            }
        }
        S::DropIndex(d) => {
            let index = d.index_refs().last().map(|r| text_of(&r));
            if d.concurrently_token().is_some() {
                lock(SHARE_UPDATE_EXCLUSIVE, index, "runs outside a transaction")
            } else {
                lock(ACCESS_EXCLUSIVE, index, BRIEF)
            }
        }
        S::AlterTable(a) => alter_table(&a),
        S::CreateTrigger(t) => lock(
            SHARE_ROW_EXCLUSIVE,
            t.on_relation()
                .and_then(|r| r.relation_name_ref())
                .map(|r| text_of(&r)),
            "blocks writes briefly",
        ),
        S::DropTrigger(t) => lock(
            ACCESS_EXCLUSIVE,
            t.on_relation()
                .and_then(|r| r.relation_name_ref())
                .map(|r| text_of(&r)),
            BRIEF,
        ),
        S::DropTable(d) => lock(
            ACCESS_EXCLUSIVE,
            d.table_name_refs().last().map(|r| text_of(&r)),
            BRIEF,
        ),
        S::DropView(d) => lock(
            ACCESS_EXCLUSIVE,
            d.view_refs().last().map(|r| text_of(&r)),
            BRIEF,
        ),
        S::Truncate(t) => lock(
            ACCESS_EXCLUSIVE,
            name_after_keyword(&text_of(&t)),
            "empties the table; blocks reads and writes",
        ),
        S::CommentOn(c) => lock(
            SHARE_UPDATE_EXCLUSIVE,
            c.comment_object().and_then(|o| match o {
                ast::CommentObject::ObjectColumn(_) | ast::CommentObject::ObjectTable(_) => {
                    name_after_keyword(&text_of(&o))
                }
                _ => None,
            }),
            "metadata only",
        ),
        S::CreateFunction(_)
        | S::DropFunction(_)
        | S::CreateTable(_)
        | S::CreateView(_)
        | S::CreateSchema(_)
        | S::CreateSequence(_)
        | S::CreateType(_) => lock("none", None, "a new or unused object: no table is locked"),
        S::DropSchema(d) => drop_schema(&d),
        S::Update(u) => lock(
            ROW_EXCLUSIVE,
            u.relation_name().map(|r| text_of(&r)),
            "row locks on the rows it changes",
        ),
        S::Delete(d) => lock(
            ROW_EXCLUSIVE,
            d.relation_name().map(|r| text_of(&r)),
            "row locks on the rows it changes",
        ),
        S::Insert(i) => lock(
            ROW_EXCLUSIVE,
            i.relation_name_ref().map(|r| text_of(&r)),
            "row locks on the rows it changes",
        ),
        S::Merge(_) => lock(ROW_EXCLUSIVE, None, "row locks on the rows it changes"),
        S::Select(_) | S::CompoundSelect(_) | S::ParenSelect(_) => lock(
            ACCESS_SHARE,
            None,
            "reads only; conflicts with ACCESS EXCLUSIVE alone",
        ),
        S::Do(d) => do_block(&d),
        _ => lock("unknown", None, "not classified"),
    }
}

/// `DROP SCHEMA`: an empty one locks no table; `CASCADE` drops what is in it.
fn drop_schema(d: &ast::DropSchema) -> Lock {
    match d.drop_behavior() {
        Some(ast::DropBehavior::Cascade(_)) => lock(
            ACCESS_EXCLUSIVE,
            d.schema_refs().last().map(|r| text_of(&r)),
            "drops every object in the schema, each under its own lock",
        ),
        _ => lock(
            "none",
            None,
            "an empty schema (it fails if anything is left in it): no table is locked",
        ),
    }
}

/// A `DO` block: the lock it declares, else `unknown`.
fn do_block(d: &ast::Do) -> Lock {
    declared(&text_of(d)).unwrap_or_else(|| {
        lock(
            "unknown",
            None,
            "dynamic SQL: the lock depends on what it runs (declare it with a `-- lock: <mode> on <table>` line)",
        )
    })
}

/// How a `DO` block declares its lock, as the line [`classify`] reads.
const DECLARES: &str = "-- lock: ";

/// What a `DO` block declared as it reads: its lock taken to be the dynamic SQL's.
const DECLARED_NOTE: &str = "declared by the DO block for the dynamic SQL it runs";

/// The line a generated `DO` block carries so that its lock is `lock` (mode and object).
pub(crate) fn declaration(lock: &Lock) -> String {
    match &lock.object {
        // A quoted name may hold a line break: it must not end the comment.
        Some(object) => format!(
            "{DECLARES}{} on {}",
            lock.mode,
            object.replace(['\n', '\r'], " ")
        ),
        None => format!("{DECLARES}{}", lock.mode),
    }
}

/// The line for a generated `DO` block that runs `stmt` (or a statement of its kind).
pub(crate) fn declare_as(stmt: &str) -> String {
    declaration(&classify(stmt))
}

/// The lock a `DO` block declares on a line of its own, if it names a known mode.
fn declared(block: &str) -> Option<Lock> {
    let line = block
        .lines()
        .find_map(|l| l.trim().strip_prefix(DECLARES.trim_end()))?
        .trim();
    let (mode, object) = match line.split_once(" on ") {
        Some((mode, object)) => (mode.trim(), Some(object.trim().to_string())),
        None => (line, None),
    };
    let mode = [
        ACCESS_EXCLUSIVE,
        SHARE_ROW_EXCLUSIVE,
        SHARE,
        SHARE_UPDATE_EXCLUSIVE,
        ROW_EXCLUSIVE,
        ACCESS_SHARE,
        "none",
    ]
    .into_iter()
    .find(|m| m.eq_ignore_ascii_case(mode))?;
    Some(lock(mode, object.filter(|o| !o.is_empty()), DECLARED_NOTE))
}

/// The name after the first keyword of `COLUMN a.b.c` / `TABLE a.b` / `TRUNCATE [TABLE] t`.
fn name_after_keyword(text: &str) -> Option<String> {
    text.split_whitespace()
        .skip(1)
        .find(|w| !w.eq_ignore_ascii_case("TABLE") && !w.eq_ignore_ascii_case("ONLY"))
        .map(|w| w.trim_end_matches([',', ';']).to_string())
}

/// The strongest lock of an `ALTER TABLE`'s actions.
fn alter_table(a: &ast::AlterTable) -> Lock {
    let table = a
        .table_relation_name()
        .and_then(|r| r.table_name_ref())
        .map(|n| text_of(&n));
    let mut strongest: Option<(&'static str, &'static str)> = None;
    for action in a.actions() {
        let (mode, note) = action_lock(&action);
        if strongest.is_none_or(|(m, _)| strength(mode) > strength(m)) {
            strongest = Some((mode, note));
        }
    }
    let (mode, note) = strongest.unwrap_or((ACCESS_EXCLUSIVE, BRIEF));
    lock(mode, table, note)
}

fn action_lock(action: &ast::AlterTableAction) -> (&'static str, &'static str) {
    use ast::AlterTableAction as A;
    match action {
        A::ValidateConstraint(_) => (
            SHARE_UPDATE_EXCLUSIVE,
            "scans the table; reads and writes go on",
        ),
        A::AddConstraint(add) => match add.constraint() {
            Some(ast::Constraint::ForeignKeyConstraint(_)) => (
                SHARE_ROW_EXCLUSIVE,
                "on both tables; NOT VALID skips the scan",
            ),
            Some(c) if c.is_not_valid() => (ACCESS_EXCLUSIVE, BRIEF),
            Some(ast::Constraint::UniqueConstraint(u)) if u.using_index().is_some() => {
                (ACCESS_EXCLUSIVE, BRIEF)
            }
            Some(ast::Constraint::PrimaryKeyConstraint(p))
                if p.syntax()
                    .descendants()
                    .any(|n| ast::UsingIndexName::can_cast(n.kind())) =>
            {
                (ACCESS_EXCLUSIVE, BRIEF)
            }
            Some(
                ast::Constraint::UniqueConstraint(_) | ast::Constraint::PrimaryKeyConstraint(_),
            ) => (
                ACCESS_EXCLUSIVE,
                "builds an index while held: build it CONCURRENTLY, then add it USING INDEX",
            ),
            _ => (
                ACCESS_EXCLUSIVE,
                "validates every row while held: add it NOT VALID",
            ),
        },
        A::AlterColumn(c) => match c.option() {
            Some(ast::AlterColumnOption::SetType(_)) => (
                ACCESS_EXCLUSIVE,
                "rewrites the table unless the types are binary-coercible",
            ),
            Some(ast::AlterColumnOption::SetNotNull(_)) => (
                ACCESS_EXCLUSIVE,
                "scans the table unless a validated CHECK (col IS NOT NULL) exists",
            ),
            Some(
                ast::AlterColumnOption::SetStatistics(_)
                | ast::AlterColumnOption::SetOptions(_)
                | ast::AlterColumnOption::ResetOptions(_),
            ) => (SHARE_UPDATE_EXCLUSIVE, "metadata only"),
            _ => (ACCESS_EXCLUSIVE, BRIEF),
        },
        A::AddColumn(add)
            if add
                .constraints()
                .any(|c| matches!(c, ast::Constraint::DefaultConstraint(_))) =>
        {
            (
                ACCESS_EXCLUSIVE,
                "brief with a constant default; a volatile default rewrites the table",
            )
        }
        A::SetTablespace(_) | A::SetLogged(_) | A::SetUnlogged(_) | A::SetAccessMethod(_) => {
            (ACCESS_EXCLUSIVE, "rewrites the table while held")
        }
        A::ClusterOn(_) | A::SetWithoutCluster(_) | A::SetOptions(_) | A::ResetOptions(_) => {
            (SHARE_UPDATE_EXCLUSIVE, "metadata only")
        }
        A::EnableTrigger(_)
        | A::DisableTrigger(_)
        | A::EnableAlwaysTrigger(_)
        | A::EnableReplicaTrigger(_) => (SHARE_ROW_EXCLUSIVE, "blocks writes briefly"),
        _ => (ACCESS_EXCLUSIVE, BRIEF),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn locks_follow_the_documentation() {
        let cases = [
            (
                "CREATE INDEX CONCURRENTLY i ON public.t (x)",
                "SHARE UPDATE EXCLUSIVE",
                Some("public.t"),
            ),
            (
                "ALTER TABLE public.t ADD COLUMN c bigint",
                "ACCESS EXCLUSIVE",
                Some("public.t"),
            ),
            (
                "ALTER TABLE public.t VALIDATE CONSTRAINT c",
                "SHARE UPDATE EXCLUSIVE",
                Some("public.t"),
            ),
            (
                "ALTER TABLE t ADD CONSTRAINT f FOREIGN KEY (a) REFERENCES u (id) NOT VALID",
                "SHARE ROW EXCLUSIVE",
                Some("t"),
            ),
            (
                "CREATE TRIGGER s BEFORE INSERT ON public.t FOR EACH ROW EXECUTE FUNCTION f()",
                "SHARE ROW EXCLUSIVE",
                Some("public.t"),
            ),
            (
                "CREATE FUNCTION f() RETURNS trigger LANGUAGE plpgsql AS $$ BEGIN END $$",
                "none",
                None,
            ),
            (
                "DROP INDEX CONCURRENTLY IF EXISTS public.i",
                "SHARE UPDATE EXCLUSIVE",
                Some("public.i"),
            ),
        ];
        for (stmt, mode, object) in cases {
            let l = classify(stmt);
            assert_eq!(l.mode, mode, "{stmt}");
            assert_eq!(l.object.as_deref(), object, "{stmt}");
        }
        assert!(classify("ALTER TABLE t ADD CONSTRAINT c CHECK (x > 0)")
            .note
            .contains("NOT VALID"));
    }

    /// The parser, not the words, decides: keywords inside names, strings, comments or a later
    /// clause do not mislead it.
    #[test]
    fn the_grammar_not_the_words_decides() {
        let cases = [
            // A column named `concurrently`: not a concurrent build.
            (
                "CREATE INDEX i ON public.t (\"concurrently\")",
                "SHARE",
                Some("public.t"),
            ),
            // `VALIDATE` in a comment and a string: the statement is a type change.
            (
                "ALTER TABLE t /* VALIDATE */ ALTER COLUMN c TYPE text USING 'VALIDATE'",
                "ACCESS EXCLUSIVE",
                Some("t"),
            ),
            // Several actions: the strongest lock wins, whatever their order.
            (
                "ALTER TABLE t VALIDATE CONSTRAINT a, ADD CONSTRAINT f FOREIGN KEY (x) REFERENCES u (id) NOT VALID",
                "SHARE ROW EXCLUSIVE",
                Some("t"),
            ),
            (
                "ALTER TABLE ONLY public.t ALTER COLUMN c SET STATISTICS 500",
                "SHARE UPDATE EXCLUSIVE",
                Some("public.t"),
            ),
            (
                "UPDATE public.t SET note = 'DROP TABLE x' WHERE id = 1",
                "ROW EXCLUSIVE",
                Some("public.t"),
            ),
            (
                "INSERT INTO public.t (id) VALUES (1)",
                "ROW EXCLUSIVE",
                Some("public.t"),
            ),
            ("DROP TABLE IF EXISTS public.a, public.b", "ACCESS EXCLUSIVE", Some("public.b")),
            (
                "DROP TRIGGER s ON public.t",
                "ACCESS EXCLUSIVE",
                Some("public.t"),
            ),
            (
                "COMMENT ON COLUMN public.t.c IS 'x'",
                "SHARE UPDATE EXCLUSIVE",
                Some("public.t.c"),
            ),
            ("SELECT 1", "ACCESS SHARE", None),
            ("DROP SCHEMA IF EXISTS s_old", "none", None),
            ("DROP SCHEMA s_old CASCADE", "ACCESS EXCLUSIVE", Some("s_old")),
            ("DO $$ BEGIN END $$", "unknown", None),
            // A DO block is taken at its declared word, when the mode is one it knows.
            (
                "DO $$\n-- lock: SHARE UPDATE EXCLUSIVE on public.t\nBEGIN EXECUTE 'COMMENT ON TABLE public.t IS NULL'; END $$",
                "SHARE UPDATE EXCLUSIVE",
                Some("public.t"),
            ),
            ("DO $$\n-- lock: none\nBEGIN END $$", "none", None),
            ("DO $$\n-- lock: a little\nBEGIN END $$", "unknown", None),
            ("ALTER TABLE t ADD COLUMN", "unknown", None),
        ];
        for (stmt, mode, object) in cases {
            let l = classify(stmt);
            assert_eq!(l.mode, mode, "{stmt}");
            assert_eq!(l.object.as_deref(), object, "{stmt}");
        }
        assert!(
            classify("ALTER TABLE t ADD CONSTRAINT k UNIQUE USING INDEX k")
                .note
                .starts_with("held briefly")
        );
        assert!(classify("ALTER TABLE t ADD CONSTRAINT k UNIQUE (a)")
            .note
            .contains("CONCURRENTLY"));
        assert_eq!(
            classify("ALTER TABLE t ADD CONSTRAINT c CHECK (x > 0) NOT VALID").note,
            BRIEF
        );
    }
}
