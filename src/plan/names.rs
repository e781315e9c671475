//! The names a plan gives: its id, its roles and its environment. Each is parsed once, when the
//! plan is loaded, and serialized as the plain text it was written as.

use std::fmt;
use std::ops::Deref;

use serde::{Deserialize, Serialize};

/// `s` lowercased with every character but an ASCII letter or digit made `_`: safe inside an
/// SQL identifier (a slot's or a schema's name made from a plan id).
pub fn identifier_tag(s: &str) -> String {
    s.chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() {
                c.to_ascii_lowercase()
            } else {
                '_'
            }
        })
        .collect()
}

/// A plan's stable identifier (one row in `cutover.migrations`): 1-63 letters, digits, `-`, `_`
/// once the plan validated.
#[derive(Debug, Clone, Default, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(transparent)]
pub struct PlanId(String);

impl PlanId {
    /// Wraps an id (validation reports a malformed one with its place in the file).
    pub fn new(id: impl Into<String>) -> PlanId {
        PlanId(id.into())
    }

    /// The id's text.
    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// True for 1-63 ASCII letters, digits, `-` or `_`.
    pub fn is_well_formed(&self) -> bool {
        !self.0.is_empty()
            && self.0.len() <= 63
            && self
                .0
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_')
    }
}

impl Deref for PlanId {
    type Target = str;

    fn deref(&self) -> &str {
        &self.0
    }
}

impl PartialEq<str> for PlanId {
    fn eq(&self, other: &str) -> bool {
        self.0 == other
    }
}

impl PartialEq<&str> for PlanId {
    fn eq(&self, other: &&str) -> bool {
        self.0 == *other
    }
}

impl fmt::Display for PlanId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// A role name from the roster (`lead`, `app_owner`, `data_owner`, `sre`, or any other).
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(transparent)]
pub struct Role(pub String);

impl Role {
    /// The migration lead: decision owner, may break-glass override a gate.
    pub const LEAD: &'static str = "lead";
    /// The application owner: read/write path flags.
    pub const APP_OWNER: &'static str = "app_owner";
    /// The data owner: backfill and parity.
    pub const DATA_OWNER: &'static str = "data_owner";
    /// Site reliability: service health and rollback execution.
    pub const SRE: &'static str = "sre";

    /// The role's name.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for Role {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// Whether an environment is production (shown in red, named in every notification).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum Tier {
    /// `production` or `prod`, in any case.
    Production,
    /// Anything else.
    #[default]
    Other,
}

/// The environment a plan runs in (`environment = "…"`, default `unspecified`), as written.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(from = "String", into = "String")]
pub struct Environment {
    name: String,
    tier: Tier,
}

impl Environment {
    /// The environment's name as written in the plan.
    pub fn as_str(&self) -> &str {
        &self.name
    }

    /// Production or not.
    pub fn tier(&self) -> Tier {
        self.tier
    }

    /// True for production.
    pub fn is_production(&self) -> bool {
        self.tier == Tier::Production
    }
}

impl Default for Environment {
    fn default() -> Self {
        Environment::from("unspecified".to_string())
    }
}

impl From<String> for Environment {
    fn from(name: String) -> Self {
        let tier = match name.to_ascii_lowercase().as_str() {
            "production" | "prod" => Tier::Production,
            _ => Tier::Other,
        };
        Environment { name, tier }
    }
}

impl From<&str> for Environment {
    fn from(name: &str) -> Self {
        Environment::from(name.to_string())
    }
}

impl From<Environment> for String {
    fn from(e: Environment) -> String {
        e.name
    }
}

impl fmt::Display for Environment {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.name)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn production_is_recognised_once_in_any_case() {
        for name in ["production", "PROD", "Production"] {
            assert!(Environment::from(name).is_production(), "{name}");
        }
        for name in ["staging", "unspecified", "preprod"] {
            assert_eq!(Environment::from(name).tier(), Tier::Other, "{name}");
        }
        assert_eq!(Environment::from("PROD").to_string(), "PROD");
    }

    #[test]
    fn plan_ids_are_well_formed_letters_digits_dash_underscore() {
        assert!(PlanId::new("accounts-balance_2").is_well_formed());
        for bad in ["", "a b", "é", &"x".repeat(64)] {
            assert!(!PlanId::new(bad).is_well_formed(), "{bad}");
        }
    }
}
