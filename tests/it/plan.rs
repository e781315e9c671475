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
