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
