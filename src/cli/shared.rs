//! What the plan-taking commands share: loading the plan, and turning an engine refusal or a
//! blocked gate into its exit code.

use std::path::Path;
use std::process::ExitCode;

use super::exit;
use crate::engine::EngineError;
use crate::plan::Plan;

/// Loads the plan at `path`.
pub(super) fn load(path: &Path) -> anyhow::Result<Plan> {
    Ok(Plan::load(path)?)
}

/// Prints a refusal or a blocked gate and returns its exit code; other errors propagate.
pub(super) fn engine_failure(e: EngineError) -> anyhow::Result<ExitCode> {
    match &e {
        EngineError::Blocked(gate) => {
            eprintln!(
                "blocked: the gate of {} is {} — nothing was applied",
                gate.phase, gate.outcome
            );
            for b in &gate.blockers {
                eprintln!("  ✗ {b}");
            }
            Ok(ExitCode::from(exit::BLOCKED))
        }
        EngineError::Refused(_) => {
            eprintln!("{e}");
            Ok(ExitCode::from(exit::REFUSED))
        }
        EngineError::Hook { .. } => {
            eprintln!("blocked: {e} — nothing was applied");
            Ok(ExitCode::from(exit::BLOCKED))
        }
        _ => Err(e.into()),
    }
}
