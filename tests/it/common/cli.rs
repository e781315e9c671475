//! Running the `cutover` binary under test, and reading what it printed.

use std::path::PathBuf;
use std::process::Output;

use serde_json::Value;

/// The `cutover` binary built for these tests.
pub fn cutover_bin() -> PathBuf {
    PathBuf::from(env!("CARGO_BIN_EXE_cutover"))
}

/// Runs the `cutover` binary against `url` (quiet logging) and returns its output.
pub async fn cutover(url: &str, args: &[&str]) -> std::process::Output {
    tokio::process::Command::new(cutover_bin())
        .args(args)
        .env("DATABASE_URL", url)
        .env("CUTOVER_LOG", "warn")
        .output()
        .await
        .expect("the cutover binary runs")
}

/// A command's stdout and stderr, for messages.
pub fn text(o: &std::process::Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    )
}

/// A command's exit code (-1 when killed by a signal).
pub fn code(o: &Output) -> i32 {
    o.status.code().unwrap_or(-1)
}

/// Panics unless the command succeeded; returns its stdout and stderr.
#[track_caller]
pub fn ok(o: &Output) -> String {
    assert_eq!(code(o), 0, "expected success, got:\n{}", text(o));
    text(o)
}

/// `cutover status PLAN --json` against `url`, which must succeed.
pub async fn status_json(url: &str, plan: &str) -> Value {
    let o = cutover(url, &["status", plan, "--json"]).await;
    ok(&o);
    serde_json::from_slice(&o.stdout)
        .unwrap_or_else(|e| panic!("status --json printed no JSON ({e}):\n{}", text(&o)))
}

/// `cutover signoff PLAN --gate GATE --role ROLE` against `url`.
pub async fn signoff(url: &str, plan: &str, gate: &str, role: &str) -> Output {
    cutover(url, &["signoff", plan, "--gate", gate, "--role", role]).await
}

/// `cutover override PLAN --gate GATE --reason REASON` against `url`.
pub async fn override_gate(url: &str, plan: &str, gate: &str, reason: &str) -> Output {
    cutover(url, &["override", plan, "--gate", gate, "--reason", reason]).await
}
