//! The Roster pane's view model: who holds each role and what they signed, the plan's
//! notification deliveries, the Cutover sessions connected now and the recent audited actions,
//! built from the worker's snapshot.

use crate::plan::{Phase, Plan};
use crate::worker::snapshot::Snapshot;

/// The roster pane.
#[derive(Debug, Clone, Default)]
pub struct RosterView {
    /// One line per role.
    pub roles: Vec<RoleView>,
    /// Connected Cutover sessions (`app login@client state`).
    pub connected: Vec<String>,
    /// Recent audit entries, newest first (`HH:MM:SS login action phase`).
    pub activity: Vec<String>,
    /// Notification deliveries, when the plan has `[[notify]]` targets and they were read.
    pub notify: Option<NotifyView>,
}

/// The plan's notification deliveries (delivered by any running Cutover process).
#[derive(Debug, Clone, Default, PartialEq)]
pub struct NotifyView {
    /// Delivered.
    pub sent: i64,
    /// Waiting for their first attempt.
    pub pending: i64,
    /// Events not yet handed to targets (no process with the plan has seen them yet).
    pub queued: i64,
    /// Failed at least once, to be retried.
    pub retrying: i64,
    /// Given up after failing every attempt.
    pub gave_up: i64,
    /// The most recent failure of a delivery not delivered since.
    pub failure: Option<NotifyFailureView>,
}

/// A delivery whose last attempt failed.
#[derive(Debug, Clone, PartialEq)]
pub struct NotifyFailureView {
    /// Target name.
    pub target: String,
    /// Attempts so far.
    pub attempts: i32,
    /// Seconds until the next attempt (`None`: given up).
    pub next_in: Option<i64>,
    /// What went wrong, secrets removed, without the `POST scheme://host: ` prefix the target's
    /// name makes redundant.
    pub error: String,
}

/// One role.
#[derive(Debug, Clone)]
pub struct RoleView {
    /// Role name.
    pub role: String,
    /// Logins holding it.
    pub holders: Vec<String>,
    /// What it signed, oldest first.
    pub signed: Vec<SignView>,
}

/// One sign-off of a role.
#[derive(Debug, Clone)]
pub struct SignView {
    /// The gate signed.
    pub gate: Phase,
    /// Who signed.
    pub login: String,
    /// When.
    pub at: chrono::DateTime<chrono::Utc>,
}

fn short_time(rfc3339: &str) -> String {
    chrono::DateTime::parse_from_rfc3339(rfc3339)
        .map(|t| t.format("%H:%M:%S").to_string())
        .unwrap_or_else(|_| rfc3339.to_string())
}

/// The deliveries' summary, only for a plan with targets.
fn notify(plan: &Plan, s: &Snapshot) -> Option<NotifyView> {
    if plan.spec.notify.is_empty() {
        return None;
    }
    let n = s.notify.as_ref()?;
    Some(NotifyView {
        sent: n.delivered,
        pending: n.pending,
        queued: n.unrouted,
        retrying: n.retrying,
        gave_up: n.gave_up,
        failure: n.latest_failure.as_ref().map(|f| NotifyFailureView {
            target: f.target.clone(),
            attempts: f.attempts,
            next_in: f
                .next_attempt_at
                .map(|t| (t - s.facts.now).num_seconds().max(0)),
            error: match f.last_error.strip_prefix("POST ") {
                Some(rest) => rest
                    .split_once(": ")
                    .map_or(rest, |(_, why)| why)
                    .to_string(),
                None => f.last_error.clone(),
            },
        }),
    })
}

pub(crate) fn roster(plan: &Plan, s: &Snapshot) -> RosterView {
    RosterView {
        notify: notify(plan, s),
        roles: plan
            .spec
            .roster
            .iter()
            .map(|(role, logins)| RoleView {
                role: role.as_str().to_string(),
                holders: logins.clone(),
                signed: s
                    .facts
                    .signoffs
                    .iter()
                    .filter(|x| x.role == role.as_str())
                    .map(|x| SignView {
                        gate: x.gate,
                        login: x.login.clone(),
                        at: x.signed_at,
                    })
                    .collect(),
            })
            .collect(),
        connected: s
            .sessions
            .iter()
            .map(|x| {
                format!(
                    "{} {}@{} {}",
                    x.application_name.trim_start_matches("cutover/"),
                    x.login,
                    x.client,
                    x.state
                )
            })
            .collect(),
        activity: s
            .audit
            .iter()
            .take(20)
            .map(|a| {
                format!(
                    "{} {} {}{}",
                    short_time(&a.at),
                    a.login,
                    a.action,
                    a.phase
                        .as_deref()
                        .map(|p| format!(" {p}"))
                        .unwrap_or_default()
                )
            })
            .collect(),
    }
}
