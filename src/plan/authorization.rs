//! Who may do what: the authorization matrix (`[authorization]` in a plan) and the plan's
//! governance — roster, gates and matrix — which the first registered version anchors.
//!
//! | Action | Default roles |
//! |---|---|
//! | `advance`, `override`, `approve` | lead |
//! | `rollback`, `flag`, `rehearse` | lead, sre |
//! | `backfill_run`, `stop`, `tune` | lead, data_owner, sre |
//! | `signoff`, `checks`, `probe`, `note`, `pause`, `resume` | any role in the roster (`*`) |
//!
//! A sign-off additionally needs the role it signs for.

use std::collections::BTreeMap;
use std::fmt;

use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use super::{GateSpec, Phase, Role};

/// Every state-changing action.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Action {
    /// Apply the next phase.
    Advance,
    /// Roll back phases.
    Rollback,
    /// Break-glass a gate.
    Override,
    /// Approve a plan version that changes the governance.
    Approve,
    /// Sign off a gate (for a role the login holds).
    Signoff,
    /// Set a feature flag.
    Flag,
    /// Rehearse the plan (records the Reversibility evidence).
    Rehearse,
    /// Run checks (their results feed gates).
    Checks,
    /// Run probes (their results feed gates).
    Probe,
    /// Add a note to the audit log.
    Note,
    /// Run the backfill.
    BackfillRun,
    /// Pause the backfill.
    Pause,
    /// Resume the backfill.
    Resume,
    /// Stop the backfill.
    Stop,
    /// Change the backfill's live settings.
    Tune,
}

impl Action {
    /// Every action, in matrix order.
    pub const ALL: [Action; 15] = [
        Action::Advance,
        Action::Rollback,
        Action::Override,
        Action::Approve,
        Action::Signoff,
        Action::Flag,
        Action::Rehearse,
        Action::Checks,
        Action::Probe,
        Action::Note,
        Action::BackfillRun,
        Action::Pause,
        Action::Resume,
        Action::Stop,
        Action::Tune,
    ];

    /// The name used in plans.
    pub fn as_str(self) -> &'static str {
        match self {
            Action::Advance => "advance",
            Action::Rollback => "rollback",
            Action::Override => "override",
            Action::Approve => "approve",
            Action::Signoff => "signoff",
            Action::Flag => "flag",
            Action::Rehearse => "rehearse",
            Action::Checks => "checks",
            Action::Probe => "probe",
            Action::Note => "note",
            Action::BackfillRun => "backfill_run",
            Action::Pause => "pause",
            Action::Resume => "resume",
            Action::Stop => "stop",
            Action::Tune => "tune",
        }
    }

    /// The roles allowed when the plan says nothing (`*` is any role in the roster).
    pub fn default_roles(self) -> &'static [&'static str] {
        match self {
            Action::Advance | Action::Override | Action::Approve => &[Role::LEAD],
            Action::Rollback | Action::Flag | Action::Rehearse => &[Role::LEAD, Role::SRE],
            Action::BackfillRun | Action::Stop | Action::Tune => {
                &[Role::LEAD, Role::DATA_OWNER, Role::SRE]
            }
            Action::Signoff
            | Action::Checks
            | Action::Probe
            | Action::Note
            | Action::Pause
            | Action::Resume => &[ANY_ROLE],
        }
    }
}

impl fmt::Display for Action {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// In the matrix: any role of the roster.
pub(crate) const ANY_ROLE: &str = "*";

/// `[authorization]`: action → roles allowed; actions not listed keep their default.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(transparent)]
pub struct Authorization(pub BTreeMap<Action, Vec<Role>>);

impl Authorization {
    /// The roles allowed to do `action`.
    pub fn roles_for(&self, action: Action) -> Vec<Role> {
        match self.0.get(&action) {
            Some(roles) => roles.clone(),
            None => action
                .default_roles()
                .iter()
                .map(|r| Role((*r).to_string()))
                .collect(),
        }
    }
}

/// What a plan version fixes about who decides: the roster, the gates and the matrix. The
/// first registered version anchors it; a version that changes it needs a lead's approval.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Governance {
    /// Role → logins.
    pub roster: BTreeMap<Role, Vec<String>>,
    /// Phase → gate.
    pub gates: BTreeMap<Phase, GateSpec>,
    /// Action → roles.
    pub authorization: Authorization,
}

impl Governance {
    /// sha256 of the canonical JSON form (maps are ordered, so equal governance hashes equally).
    pub fn sha256(&self) -> String {
        let json = serde_json::to_string(self).unwrap_or_default();
        hex::encode(Sha256::digest(json.as_bytes()))
    }

    /// Roles held by `login`.
    pub fn roles_of(&self, login: &str) -> Vec<Role> {
        self.roster
            .iter()
            .filter(|(_, logins)| logins.iter().any(|l| l == login))
            .map(|(role, _)| role.clone())
            .collect()
    }

    /// The roles of `login` that permit `action`, or why it is refused.
    pub fn permits(&self, login: &str, action: Action) -> Result<Vec<Role>, Denied> {
        let mine = self.roles_of(login);
        let allowed = self.authorization.roles_for(action);
        let any = allowed.iter().any(|r| r.as_str() == ANY_ROLE);
        let granted: Vec<Role> = mine
            .iter()
            .filter(|r| any || allowed.contains(r))
            .cloned()
            .collect();
        if !granted.is_empty() {
            return Ok(granted);
        }
        Err(Denied {
            login: login.to_string(),
            action,
            held: mine,
            allowed: if any { Vec::new() } else { allowed },
        })
    }
}

/// Why [`Governance::permits`] refuses: the login's roles, and the roles the action needs.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub struct Denied {
    /// The login.
    pub login: String,
    /// What it tried.
    pub action: Action,
    /// The roles it holds (none: not in the roster).
    pub held: Vec<Role>,
    /// The roles that may (empty: any role in the roster).
    pub allowed: Vec<Role>,
}

impl fmt::Display for Denied {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let join = |roles: &[Role], sep: &str| {
            roles.iter().map(Role::as_str).collect::<Vec<_>>().join(sep)
        };
        let who = if self.allowed.is_empty() {
            "any role in the roster".to_string()
        } else {
            join(&self.allowed, " or ")
        };
        let (login, action) = (&self.login, self.action);
        if self.held.is_empty() {
            write!(
                f,
                "login `{login}` is not in the roster; `{action}` needs {who}"
            )
        } else {
            let held = join(&self.held, ", ");
            write!(f, "login `{login}` holds {held}; `{action}` needs {who}")
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn gov() -> Governance {
        let mut roster = BTreeMap::new();
        roster.insert(Role("lead".into()), vec!["lee".into()]);
        roster.insert(Role("sre".into()), vec!["sam".into()]);
        roster.insert(Role("data_owner".into()), vec!["dora".into()]);
        Governance {
            roster,
            gates: BTreeMap::new(),
            authorization: Authorization::default(),
        }
    }

    #[test]
    fn defaults_follow_the_matrix() {
        let g = gov();
        assert!(g.permits("lee", Action::Advance).is_ok());
        assert!(g.permits("sam", Action::Advance).is_err());
        assert!(g.permits("sam", Action::Rollback).is_ok());
        assert!(g.permits("dora", Action::Tune).is_ok());
        assert!(g.permits("dora", Action::Rollback).is_err());
        assert!(g.permits("dora", Action::Pause).is_ok());
        let outsider = g.permits("mallory", Action::Pause).unwrap_err().to_string();
        assert!(outsider.contains("not in the roster"), "{outsider}");
    }

    #[test]
    fn the_plan_can_change_the_matrix_and_that_changes_the_governance() {
        let mut g = gov();
        let before = g.sha256();
        g.authorization
            .0
            .insert(Action::Advance, vec![Role("sre".into())]);
        assert!(g.permits("sam", Action::Advance).is_ok());
        let why = g.permits("lee", Action::Advance).unwrap_err().to_string();
        assert!(why.contains("needs sre"), "{why}");
        assert_ne!(g.sha256(), before);
    }
}
