//! The application whose schema is being migrated, as far as the command center can steer it.
//! Only the demo has one (its workload, `demo::workload`): two versions and a rolling deploy
//! from one to the other. The worker runs `:app` commands through [`AppControl`] and puts the
//! app's [`AppStatus`] in every snapshot.

use std::fmt;
use std::str::FromStr;

use serde::Serialize;

use crate::control::phases::PhaseState;
use crate::plan::Phase;

/// A version of the demo application.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum AppVersion {
    /// Reads and writes `balance` (dollars).
    V1,
    /// Writes `balance_cents` only; reads it while the read-switch flag is on.
    V2,
}

impl AppVersion {
    /// `v1` / `v2`.
    pub fn as_str(self) -> &'static str {
        match self {
            AppVersion::V1 => "v1",
            AppVersion::V2 => "v2",
        }
    }

    /// Why this version cannot serve while the migration stands as `state` says, if it cannot.
    pub fn refusal(self, state: impl Fn(Phase) -> PhaseState) -> Option<String> {
        match self {
            AppVersion::V2 if state(Phase::ReadSwitch) != PhaseState::Applied => Some(
                "v2 uses balance_cents only: roll it out once the read switch is applied (every row has cents by then)"
                    .to_string(),
            ),
            AppVersion::V1 if state(Phase::Contract) == PhaseState::Applied => {
                Some("v1 uses balance, which the contract phase dropped".to_string())
            }
            _ => None,
        }
    }
}

impl fmt::Display for AppVersion {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// `v1`, `v2` (case-insensitive).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("unknown app version `{0}`: the demo app has v1 and v2")]
pub struct UnknownVersion(pub String);

impl FromStr for AppVersion {
    type Err = UnknownVersion;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s.to_ascii_lowercase().as_str() {
            "v1" | "1" => Ok(AppVersion::V1),
            "v2" | "2" => Ok(AppVersion::V2),
            _ => Err(UnknownVersion(s.to_string())),
        }
    }
}

/// Which versions serve traffic now.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct AppStatus {
    /// The version new work goes to.
    pub serving: AppVersion,
    /// The version finishing its last requests during a rollout, if any.
    pub draining: Option<AppVersion>,
}

impl fmt::Display for AppStatus {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.draining {
            Some(old) => write!(f, "{} serving, {old} draining", self.serving),
            None => write!(f, "{} serving", self.serving),
        }
    }
}

/// Steers the application (implemented by the demo's workload).
pub trait AppControl: Send + Sync {
    /// The versions serving now.
    fn status(&self) -> AppStatus;
    /// Starts a rolling deploy to `to`: it serves new work at once, the old version drains.
    /// Returns what happened in words.
    fn roll(&self, to: AppVersion) -> Result<String, RollError>;
}

/// Why a rolling deploy did not start.
#[derive(Debug, Clone, thiserror::Error)]
pub enum RollError {
    /// The previous rollout still drains.
    #[error("a rollout is under way ({0}): wait for it to finish")]
    UnderWay(AppStatus),
    /// The app is gone.
    #[error("the demo app has stopped")]
    Stopped,
}

/// A shared [`AppControl`], as the worker's options carry it.
#[derive(Clone)]
pub struct AppHandle(pub std::sync::Arc<dyn AppControl>);

impl fmt::Debug for AppHandle {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "AppHandle({})", self.0.status())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn versions_parse_and_guard_the_schema_they_need() {
        assert_eq!("V2".parse::<AppVersion>(), Ok(AppVersion::V2));
        assert!("v3".parse::<AppVersion>().is_err());
        let before_switch = |p: Phase| {
            if p.index() < Phase::ReadSwitch.index() {
                PhaseState::Applied
            } else {
                PhaseState::Pending
            }
        };
        assert!(AppVersion::V2.refusal(before_switch).is_some());
        assert!(AppVersion::V1.refusal(before_switch).is_none());
        let all = |_: Phase| PhaseState::Applied;
        assert!(AppVersion::V2.refusal(all).is_none());
        assert!(AppVersion::V1
            .refusal(all)
            .is_some_and(|r| r.contains("dropped")));
    }
}
