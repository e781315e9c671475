//! `[[notify]]`: who hears about what on cutover night. A target is a webhook (`url` or
//! `url_env`, Slack-compatible JSON) or an exec hook (`command`), subscribed to events (`on`,
//! default all). Webhook URLs often carry a secret (in the path or the query): they are kept in
//! a type that never prints them whole.

use std::fmt;

use serde::{Deserialize, Deserializer, Serialize, Serializer};

use super::diagnostic::Problem;
use super::Duration;
use crate::problem_at;

/// Something that happened to a migration and that a target may want to hear about.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub enum Event {
    /// A phase was applied.
    #[serde(rename = "phase.applied")]
    PhaseApplied,
    /// A phase was rolled back.
    #[serde(rename = "phase.rolled_back")]
    PhaseRolledBack,
    /// Applying or rolling back a phase failed.
    #[serde(rename = "phase.failed")]
    PhaseFailed,
    /// A phase was left applying / rolling back by a process that is gone.
    #[serde(rename = "phase.interrupted")]
    PhaseInterrupted,
    /// The next phase's gate has been blocked for longer than `blocked_after`.
    #[serde(rename = "gate.blocked")]
    GateBlocked,
    /// A role signed off a gate.
    #[serde(rename = "signoff")]
    Signoff,
    /// A lead overrode a gate (break-glass).
    #[serde(rename = "override")]
    Override,
    /// The backfill has been throttled for longer than `throttled_after`.
    #[serde(rename = "backfill.throttled")]
    BackfillThrottled,
    /// The backfill is running but no chunk finished for `stalled_after`.
    #[serde(rename = "backfill.stalled")]
    BackfillStalled,
    /// The backfill failed.
    #[serde(rename = "backfill.failed")]
    BackfillFailed,
    /// The backfill finished.
    #[serde(rename = "backfill.done")]
    BackfillDone,
    /// A check's latest result turned to fail.
    #[serde(rename = "check.failed")]
    CheckFailed,
    /// The audit log's hash chain does not verify.
    #[serde(rename = "audit.broken")]
    AuditBroken,
}

impl Event {
    /// Every event, in the order plans/README.md lists them.
    pub const ALL: [Event; 13] = [
        Event::PhaseApplied,
        Event::PhaseRolledBack,
        Event::PhaseFailed,
        Event::PhaseInterrupted,
        Event::GateBlocked,
        Event::Signoff,
        Event::Override,
        Event::BackfillThrottled,
        Event::BackfillStalled,
        Event::BackfillFailed,
        Event::BackfillDone,
        Event::CheckFailed,
        Event::AuditBroken,
    ];

    /// The name used in plans, in `cutover.outbox.event` and in `CUTOVER_EVENT`.
    pub fn as_str(self) -> &'static str {
        match self {
            Event::PhaseApplied => "phase.applied",
            Event::PhaseRolledBack => "phase.rolled_back",
            Event::PhaseFailed => "phase.failed",
            Event::PhaseInterrupted => "phase.interrupted",
            Event::GateBlocked => "gate.blocked",
            Event::Signoff => "signoff",
            Event::Override => "override",
            Event::BackfillThrottled => "backfill.throttled",
            Event::BackfillStalled => "backfill.stalled",
            Event::BackfillFailed => "backfill.failed",
            Event::BackfillDone => "backfill.done",
            Event::CheckFailed => "check.failed",
            Event::AuditBroken => "audit.broken",
        }
    }

    /// Parses a stored name.
    pub fn parse(s: &str) -> Option<Event> {
        Event::ALL.into_iter().find(|e| e.as_str() == s)
    }
}

impl fmt::Display for Event {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A webhook URL. `Debug`, `Display` and `Serialize` show only [`WebhookUrl::masked`]; the
/// whole URL is available through [`WebhookUrl::expose`], for the request alone.
#[derive(Clone, PartialEq, Eq)]
pub struct WebhookUrl(String);

impl WebhookUrl {
    /// Wraps a URL (it is validated with the plan, not here).
    pub fn new(url: impl Into<String>) -> WebhookUrl {
        WebhookUrl(url.into())
    }

    /// The whole URL, secrets included: only for sending the request.
    pub fn expose(&self) -> &str {
        &self.0
    }

    /// `scheme://host[:port]/…`: no user info, path or query (any of them may hold a token).
    pub fn masked(&self) -> String {
        mask_url(&self.0)
    }
}

/// `scheme://host[:port]` plus `/…` when a path or query was dropped; never the user info,
/// path or query, which may carry a token.
pub(crate) fn mask_url(raw: &str) -> String {
    match url::Url::parse(raw.trim()) {
        Ok(u) => {
            let host = u.host_str().unwrap_or("?");
            let port = u.port().map(|p| format!(":{p}")).unwrap_or_default();
            let rest = if (u.path().is_empty() || u.path() == "/") && u.query().is_none() {
                ""
            } else {
                "/…"
            };
            format!("{}://{host}{port}{rest}", u.scheme())
        }
        Err(_) => "<unparsable URL>".to_string(),
    }
}

impl fmt::Debug for WebhookUrl {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "WebhookUrl({})", self.masked())
    }
}

impl fmt::Display for WebhookUrl {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.masked())
    }
}

impl Serialize for WebhookUrl {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&self.masked())
    }
}

impl<'de> Deserialize<'de> for WebhookUrl {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        String::deserialize(d).map(WebhookUrl)
    }
}

/// One `[[notify]]` target.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NotifySpec {
    /// Name in logs and in `cutover.outbox_deliveries` (default: derived from the target).
    pub name: Option<String>,
    /// Webhook URL (http or https); the body is Slack-compatible JSON.
    pub url: Option<WebhookUrl>,
    /// Name of an environment variable holding the webhook URL (keeps the secret out of the
    /// plan file, which is stored in `cutover.migrations`).
    pub url_env: Option<String>,
    /// Exec hook: program and arguments, run with `CUTOVER_*` environment variables.
    pub command: Option<Vec<String>>,
    /// The events this target receives (default: all).
    pub on: Option<Vec<Event>>,
    /// `gate.blocked` fires once a gate has been blocked this long.
    #[serde(default = "default_blocked_after")]
    pub blocked_after: Duration,
    /// `backfill.throttled` fires once the backfill has been throttled this long.
    #[serde(default = "default_throttled_after")]
    pub throttled_after: Duration,
    /// `backfill.stalled` fires once a running backfill finished no chunk for this long.
    #[serde(default = "default_stalled_after")]
    pub stalled_after: Duration,
    /// Time bound of one delivery attempt.
    #[serde(default = "default_timeout")]
    pub timeout: Duration,
    /// Attempts before a delivery is given up (default: the delivery options', 10); a positive
    /// integer (validated, so it is read as any integer).
    pub max_attempts: Option<i64>,
}

fn default_blocked_after() -> Duration {
    Duration::from_millis(10 * 60_000)
}
fn default_throttled_after() -> Duration {
    Duration::from_millis(10 * 60_000)
}
fn default_stalled_after() -> Duration {
    Duration::from_millis(5 * 60_000)
}
fn default_timeout() -> Duration {
    Duration::from_millis(5_000)
}

/// Longest delivery timeout a plan may ask for.
const MAX_TIMEOUT_MS: u64 = 60_000;

/// Where a target delivers.
#[derive(Debug, Clone, Copy)]
pub enum Destination<'a> {
    /// A webhook at this URL.
    Webhook(&'a WebhookUrl),
    /// A webhook whose URL is read from this environment variable at delivery.
    WebhookEnv(&'a str),
    /// An exec hook: program and arguments.
    Exec(&'a [String]),
}

impl NotifySpec {
    /// The target's name: `name`, or one derived from the destination.
    pub fn name(&self) -> String {
        if let Some(n) = &self.name {
            return n.clone();
        }
        match self.destination() {
            Some(Destination::Webhook(u)) => match url::Url::parse(u.expose().trim()) {
                Ok(p) => format!("webhook-{}", p.host_str().unwrap_or("unknown")),
                Err(_) => "webhook".to_string(),
            },
            Some(Destination::WebhookEnv(var)) => format!("webhook-{}", var.to_lowercase()),
            Some(Destination::Exec(cmd)) => {
                let program = cmd.first().map(String::as_str).unwrap_or("");
                let base = std::path::Path::new(program)
                    .file_name()
                    .and_then(|s| s.to_str())
                    .unwrap_or(program);
                format!("exec-{base}")
            }
            None => "unconfigured".to_string(),
        }
    }

    /// The destination, when exactly one of `url`, `url_env`, `command` is given.
    pub fn destination(&self) -> Option<Destination<'_>> {
        match (&self.url, &self.url_env, &self.command) {
            (Some(u), None, None) => Some(Destination::Webhook(u)),
            (None, Some(v), None) => Some(Destination::WebhookEnv(v)),
            (None, None, Some(c)) => Some(Destination::Exec(c)),
            _ => None,
        }
    }

    /// True when this target receives `event`.
    pub fn wants(&self, event: Event) -> bool {
        self.on.as_ref().is_none_or(|on| on.contains(&event))
    }

    /// Attempts before a delivery to this target is given up: `max_attempts`, else `default`.
    pub fn attempts_limit(&self, default: u32) -> u32 {
        self.max_attempts
            .map_or(default, |n| u32::try_from(n.max(1)).unwrap_or(u32::MAX))
    }

    /// For events that fire after a time (`gate.blocked`, `backfill.throttled`,
    /// `backfill.stalled`): this target's threshold.
    pub fn threshold(&self, event: Event) -> Option<std::time::Duration> {
        match event {
            Event::GateBlocked => Some(self.blocked_after.std()),
            Event::BackfillThrottled => Some(self.throttled_after.std()),
            Event::BackfillStalled => Some(self.stalled_after.std()),
            _ => None,
        }
    }
}

/// Validates every `[[notify]]` target.
pub(super) fn validate(targets: &[NotifySpec], out: &mut Vec<Problem>) {
    let mut names: Vec<String> = Vec::new();
    for (i, t) in targets.iter().enumerate() {
        destination(t, i, out);
        if let Some(on) = &t.on {
            if on.is_empty() {
                out.push(problem_at!(
                    ["notify", i, "on"],
                    "`on = []` subscribes this target to nothing",
                    "list events, or remove `on` to receive every event"
                ));
            }
        }
        for (key, d) in [
            ("blocked_after", t.blocked_after),
            ("throttled_after", t.throttled_after),
            ("stalled_after", t.stalled_after),
            ("timeout", t.timeout),
        ] {
            if d.std().is_zero() {
                out.push(problem_at!(
                    ["notify", i, key],
                    format!("`{key}` must be greater than zero")
                ));
            }
        }
        if t.timeout.as_millis() > MAX_TIMEOUT_MS {
            out.push(problem_at!(
                ["notify", i, "timeout"],
                format!("`timeout` is {}, at most 60s is allowed", t.timeout),
                "a slow receiver must not hold up the other notifications"
            ));
        }
        if let Some(n) = t.max_attempts.filter(|n| *n < 1) {
            out.push(problem_at!(
                ["notify", i, "max_attempts"],
                format!("`max_attempts` must be a positive integer, not {n}"),
                "e.g. `max_attempts = 5`; remove it to keep the default (10 attempts)"
            ));
        }
        if let Some(n) = &t.name {
            if n.trim().is_empty() || n.len() > 64 {
                out.push(problem_at!(
                    ["notify", i, "name"],
                    "a target's `name` must have 1 to 64 characters"
                ));
            }
        }
        let name = t.name();
        if names.contains(&name) {
            let message = format!("two [[notify]] targets are named `{name}`");
            let hint = "give each target a distinct `name = \"…\"`";
            out.push(if t.name.is_some() {
                problem_at!(["notify", i, "name"], message, hint)
            } else {
                problem_at!(["notify", i], message, hint)
            });
        }
        names.push(name);
    }
}

fn destination(t: &NotifySpec, i: usize, out: &mut Vec<Problem>) {
    let given = [t.url.is_some(), t.url_env.is_some(), t.command.is_some()]
        .iter()
        .filter(|g| **g)
        .count();
    if given != 1 {
        out.push(problem_at!(
            ["notify", i],
            "a [[notify]] target needs exactly one of `url`, `url_env` or `command`",
            "e.g. `url = \"https://hooks.example.com/…\"` or `command = [\"/usr/local/bin/page\", \"--team\", \"db\"]`"
        ));
        return;
    }
    if let Some(u) = &t.url {
        if let Err(why) = check_url(u.expose()) {
            out.push(problem_at!(
                ["notify", i, "url"],
                why.to_string(),
                "write the full address, e.g. \"https://hooks.slack.com/services/…\""
            ));
        }
    }
    if let Some(v) = &t.url_env {
        let ok = v
            .chars()
            .next()
            .is_some_and(|c| c.is_ascii_alphabetic() || c == '_')
            && v.chars().all(|c| c.is_ascii_alphanumeric() || c == '_');
        if !ok {
            out.push(problem_at!(
                ["notify", i, "url_env"],
                format!("`url_env` must name an environment variable, not `{v}`"),
                "e.g. `url_env = \"SLACK_WEBHOOK_URL\"`"
            ));
        }
    }
    if let Some(cmd) = &t.command {
        if cmd.first().is_none_or(|p| p.trim().is_empty()) {
            out.push(problem_at!(
                ["notify", i, "command"],
                "`command` must name a program",
                "e.g. `command = [\"/usr/local/bin/page\", \"--team\", \"db\"]`"
            ));
        }
    }
}

/// What is wrong with a webhook URL (never the URL itself: it may hold a token).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub(crate) enum BadUrl {
    /// Nothing but blanks.
    #[error("the webhook `url` is empty")]
    Empty,
    /// Not parsable.
    #[error("the webhook `url` is not a valid URL: {0}")]
    Unparsable(url::ParseError),
    /// Neither http nor https.
    #[error("the webhook `url` must use http or https, not `{0}`")]
    Scheme(String),
    /// No host.
    #[error("the webhook `url` names no host")]
    NoHost,
}

/// Checks a webhook URL without ever echoing it (it may hold a token).
pub(crate) fn check_url(raw: &str) -> Result<(), BadUrl> {
    if raw.trim().is_empty() {
        return Err(BadUrl::Empty);
    }
    let u = url::Url::parse(raw.trim()).map_err(BadUrl::Unparsable)?;
    if !matches!(u.scheme(), "http" | "https") {
        return Err(BadUrl::Scheme(u.scheme().to_string()));
    }
    if u.host_str().is_none_or(str::is_empty) {
        return Err(BadUrl::NoHost);
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn masking_drops_userinfo_path_and_query() {
        assert_eq!(
            mask_url("https://user:pw@hooks.example.com:8443/services/T0/B0/secret?token=x"),
            "https://hooks.example.com:8443/…"
        );
        assert_eq!(mask_url("http://127.0.0.1:9/"), "http://127.0.0.1:9");
        assert_eq!(mask_url("not a url"), "<unparsable URL>");
        let u = WebhookUrl::new("https://h.example/secret-path?k=s3cret");
        let shown = format!("{u:?} {u} {}", serde_json::to_string(&u).unwrap());
        assert!(
            !shown.contains("secret") && !shown.contains("s3cret"),
            "{shown}"
        );
    }

    #[test]
    fn event_names_round_trip() {
        for e in Event::ALL {
            assert_eq!(Event::parse(e.as_str()), Some(e));
            let json = serde_json::to_string(&e).unwrap();
            assert_eq!(json, format!("\"{}\"", e.as_str()));
        }
    }

    const HEAD: &str = r#"id = "n"
title = "t"
rationale = "r"
author = "a"
ticket = "T-1"
[roster]
lead = ["postgres"]
[phases.expand]
rollback = ""
[phases.dual_write]
rollback = ""
[phases.backfill]
rollback = ""
[phases.read_switch]
rollback = ""
[phases.contract]
irreversible = true
[read_switch]
flag = "n.flag"
"#;

    /// The first diagnostic of `HEAD` + `notify`, as `line:col: message`.
    fn first_error(notify: &str) -> String {
        let source = format!("{HEAD}{notify}");
        match crate::plan::Plan::parse("n.toml", &source) {
            Ok(_) => "valid".to_string(),
            Err(crate::plan::PlanError::Invalid(d)) => {
                format!("{}:{}: {}", d[0].line, d[0].col, d[0].message)
            }
            Err(e) => e.to_string(),
        }
    }

    #[test]
    fn bad_targets_are_reported_at_their_place() {
        let cases = [
            (
                "[[notify]]\nurl = \"https://h.example/x\"\non = [\"phase.applied\", \"phase.aplied\"]\n",
                "22:24",
                "unknown variant `phase.aplied`",
            ),
            ("[[notify]]\nurl = \"\"\n", "21:7", "the webhook `url` is empty"),
            (
                "[[notify]]\nurl = \"ftp://h.example/s3cret\"\n",
                "21:7",
                "must use http or https, not `ftp`",
            ),
            (
                "[[notify]]\nurl = \"https://h.example/x\"\nblocked_after = \"0s\"\n",
                "22:17",
                "`blocked_after` must be greater than zero",
            ),
            (
                "[[notify]]\ncommand = [\"/bin/true\"]\nstalled_after = \"-5m\"\n",
                "22:",
                "invalid duration `-5m`",
            ),
            (
                "[[notify]]\ncommand = []\n",
                "21:1",
                "`command` must name a program",
            ),
            (
                "[[notify]]\nurl = \"https://h.example/a\"\ncommand = [\"/bin/true\"]\n",
                "20:",
                "exactly one of `url`, `url_env` or `command`",
            ),
            (
                "[[notify]]\nurl = \"https://h.example/a\"\n[[notify]]\nurl = \"https://h.example/b\"\n",
                "22:",
                "two [[notify]] targets are named `webhook-h.example`",
            ),
            (
                "[[notify]]\nurl = \"https://h.example/a\"\non = []\n",
                "22:1",
                "subscribes this target to nothing",
            ),
            (
                "[[notify]]\nurl = \"https://h.example/s3cret\"\nmax_attempts = 0\n",
                "22:16",
                "`max_attempts` must be a positive integer, not 0",
            ),
            (
                "[[notify]]\ncommand = [\"/bin/true\"]\nmax_attempts = -3\n",
                "22:16",
                "`max_attempts` must be a positive integer, not -3",
            ),
            (
                "[[notify]]\ncommand = [\"/bin/true\"]\nmax_attempts = 2.5\n",
                "22:",
                "invalid type: floating point `2.5`, expected i64",
            ),
        ];
        for (notify, at, message) in cases {
            let e = first_error(notify);
            assert!(
                e.starts_with(at) && e.contains(message),
                "{notify}\nexpected {at} … {message}, got: {e}"
            );
            assert!(!e.contains("s3cret"), "{e}");
        }
    }

    #[test]
    fn a_valid_target_defaults_to_every_event() {
        let source = format!(
            "{HEAD}[[notify]]\nurl_env = \"SLACK_URL\"\n[[notify]]\nname = \"pager\"\ncommand = [\"/bin/true\"]\non = [\"phase.failed\"]\nblocked_after = \"90s\"\n"
        );
        let plan = crate::plan::Plan::parse("n.toml", &source).expect("valid");
        let [a, b] = &plan.spec.notify[..] else {
            panic!("two targets")
        };
        assert_eq!(a.name(), "webhook-slack_url");
        assert!(Event::ALL.iter().all(|e| a.wants(*e)));
        assert_eq!(b.name(), "pager");
        assert!(b.wants(Event::PhaseFailed) && !b.wants(Event::Signoff));
        assert_eq!(
            b.threshold(Event::GateBlocked),
            Some(std::time::Duration::from_secs(90))
        );
        assert_eq!(a.timeout.std(), std::time::Duration::from_secs(5));
        assert_eq!(a.attempts_limit(10), 10, "the default stays");
        let source = format!("{HEAD}[[notify]]\ncommand = [\"/bin/true\"]\nmax_attempts = 3\n");
        let plan = crate::plan::Plan::parse("n.toml", &source).expect("valid");
        assert_eq!(plan.spec.notify[0].attempts_limit(10), 3);
    }

    #[test]
    fn url_checks_never_echo_the_url() {
        for bad in [
            "",
            "ftp://h.example/s3cret",
            "http://[::1/s3cret",
            "s3cret",
            "mailto:s3cret@h.example",
        ] {
            let e = check_url(bad).unwrap_err().to_string();
            assert!(!e.contains("s3cret"), "{e}");
        }
        assert!(check_url("http://127.0.0.1:1/x?y=z").is_ok());
    }
}
