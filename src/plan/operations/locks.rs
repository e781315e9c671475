//! Which lock a statement takes on which object: a small pure classifier over the statements
//! squawk's parser splits a script into (see [`crate::sql::split_statements`]). It reads the
//! statement's leading keywords, as PostgreSQL's documentation tables them; what it cannot tell
//! it says so (`unknown`).

use serde::Serialize;

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

/// The lock one statement takes.
#[expect(
    clippy::too_many_lines,
    reason = "one table of statement shapes to lock levels reads best as one match"
)]
pub fn classify(stmt: &str) -> Lock {
    let words: Vec<String> = stmt
        .split_whitespace()
        .map(|w| w.trim_end_matches([';', '(']).to_string())
        .collect();
    let up: Vec<String> = words.iter().map(|w| w.to_uppercase()).collect();
    let has = |w: &str| up.iter().any(|u| u == w);
    let starts = |p: &[&str]| up.len() >= p.len() && p.iter().zip(&up).all(|(a, b)| a == b);
    let after = |kw: &str| object_after(&words, &up, kw);
    let lock = |mode, object, note| Lock { mode, object, note };
    let brief = "held briefly (queued behind long transactions; lock_timeout and retries apply)";
    if starts(&["CREATE"]) && has("INDEX") {
        return if has("CONCURRENTLY") {
            lock(
                "SHARE UPDATE EXCLUSIVE",
                after("ON"),
                "writes go on while the index builds; runs outside a transaction",
            )
        } else {
            lock("SHARE", after("ON"), "blocks writes while the index builds")
        };
    }
    if starts(&["DROP", "INDEX"]) {
        return if has("CONCURRENTLY") {
            lock(
                "SHARE UPDATE EXCLUSIVE",
                last_name(&words),
                "runs outside a transaction",
            )
        } else {
            lock("ACCESS EXCLUSIVE", last_name(&words), brief)
        };
    }
    if starts(&["ALTER", "TABLE"]) {
        let table = after("TABLE");
        if has("VALIDATE") {
            return lock(
                "SHARE UPDATE EXCLUSIVE",
                table,
                "scans the table; reads and writes go on",
            );
        }
        if has("FOREIGN") {
            return lock(
                "SHARE ROW EXCLUSIVE",
                table,
                "on both tables; NOT VALID skips the scan",
            );
        }
        if has("TYPE") && has("ALTER") && !has("ADD") {
            return lock(
                "ACCESS EXCLUSIVE",
                table,
                "rewrites the table unless the types are binary-coercible",
            );
        }
        if has("SET") && has("NOT") && has("NULL") {
            return lock(
                "ACCESS EXCLUSIVE",
                table,
                "scans the table unless a validated CHECK (col IS NOT NULL) exists",
            );
        }
        if has("ADD") && has("COLUMN") && has("DEFAULT") {
            return lock(
                "ACCESS EXCLUSIVE",
                table,
                "brief with a constant default; a volatile default rewrites the table",
            );
        }
        if has("ADD") && (has("CHECK") || has("CONSTRAINT")) && !has("VALID") && !has("USING") {
            return lock(
                "ACCESS EXCLUSIVE",
                table,
                "validates every row while held: add it NOT VALID",
            );
        }
        return lock("ACCESS EXCLUSIVE", table, brief);
    }
    if starts(&["CREATE", "TRIGGER"]) || (starts(&["CREATE", "OR", "REPLACE", "TRIGGER"])) {
        return lock("SHARE ROW EXCLUSIVE", after("ON"), "blocks writes briefly");
    }
    if starts(&["DROP", "TRIGGER"]) {
        return lock("ACCESS EXCLUSIVE", after("ON"), brief);
    }
    if starts(&["DROP", "TABLE"]) || starts(&["DROP", "VIEW"]) {
        return lock("ACCESS EXCLUSIVE", last_name(&words), brief);
    }
    if starts(&["COMMENT", "ON"]) {
        return lock(
            "SHARE UPDATE EXCLUSIVE",
            after("COLUMN").or_else(|| after("TABLE")),
            "metadata only",
        );
    }
    if starts(&["CREATE", "FUNCTION"])
        || starts(&["CREATE", "OR", "REPLACE", "FUNCTION"])
        || starts(&["DROP", "FUNCTION"])
        || starts(&["CREATE", "TABLE"])
        || starts(&["CREATE", "VIEW"])
    {
        return lock("none", None, "a new or unused object: no table is locked");
    }
    if starts(&["UPDATE"]) || starts(&["INSERT"]) || starts(&["DELETE"]) {
        let object = if starts(&["UPDATE"]) {
            words.get(1).cloned()
        } else {
            after("INTO").or_else(|| after("FROM"))
        };
        return lock("ROW EXCLUSIVE", object, "row locks on the rows it changes");
    }
    if starts(&["DO"]) {
        return lock(
            "unknown",
            None,
            "dynamic SQL: the lock depends on what it runs",
        );
    }
    lock("unknown", None, "not classified")
}

fn object_after(words: &[String], up: &[String], kw: &str) -> Option<String> {
    let at = up.iter().position(|u| u == kw)?;
    words[at + 1..]
        .iter()
        .zip(&up[at + 1..])
        .find(|(_, u)| {
            !matches!(
                u.as_str(),
                "IF" | "EXISTS" | "NOT" | "ONLY" | "CONCURRENTLY"
            )
        })
        .map(|(w, _)| w.trim_end_matches(',').to_string())
}

fn last_name(words: &[String]) -> Option<String> {
    words
        .iter()
        .rev()
        .find(|w| !matches!(w.to_uppercase().as_str(), "CASCADE" | "RESTRICT"))
        .cloned()
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
}
