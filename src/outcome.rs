//! The three-valued result of every check, probe and gate.

use std::fmt;

use serde::{Deserialize, Serialize};

/// Pass, Fail or Inconclusive. Nothing passes by default: a probe that errors or has no
/// data is Inconclusive, which blocks like Fail.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Outcome {
    /// The condition was measured and holds.
    Pass,
    /// The condition was measured and does not hold.
    Fail,
    /// The condition could not be measured (error, no data, not yet run).
    Inconclusive,
}

impl Outcome {
    /// Lower-case name, as stored in the control schema.
    pub fn as_str(self) -> &'static str {
        match self {
            Outcome::Pass => "pass",
            Outcome::Fail => "fail",
            Outcome::Inconclusive => "inconclusive",
        }
    }

    /// Parses the stored name; anything unknown is Inconclusive.
    pub fn parse(s: &str) -> Outcome {
        match s {
            "pass" => Outcome::Pass,
            "fail" => Outcome::Fail,
            _ => Outcome::Inconclusive,
        }
    }

    /// Combines outcomes: any Fail fails, else any Inconclusive is Inconclusive, else Pass.
    /// An empty set is Pass (nothing was required).
    pub fn all(outcomes: impl IntoIterator<Item = Outcome>) -> Outcome {
        let mut result = Outcome::Pass;
        for o in outcomes {
            match o {
                Outcome::Fail => return Outcome::Fail,
                Outcome::Inconclusive => result = Outcome::Inconclusive,
                Outcome::Pass => {}
            }
        }
        result
    }
}

impl fmt::Display for Outcome {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Outcome::Pass => "PASS",
            Outcome::Fail => "FAIL",
            Outcome::Inconclusive => "INCONCLUSIVE",
        })
    }
}
