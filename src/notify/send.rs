//! Sending one notification: a webhook POST (blocking `ureq` in a blocking task, one time bound
//! for the whole exchange, redirects not followed) or an exec hook (killed at the time bound).
//! Error texts never contain the webhook URL's user info, path or query.

use std::sync::{Arc, OnceLock};
use std::time::Duration;

use crate::control::outbox::OutboxEvent;
use crate::plan::notify::{mask_url, BadUrl, Destination};
use crate::plan::{NotifySpec, Plan};

use super::text;

/// Environment variables a hook does not inherit: connection secrets of this process.
const WITHHELD_ENV: [&str; 3] = ["DATABASE_URL", "PGPASSWORD", "CUTOVER_PASSWORD_COMMAND"];

/// Why a notification was not delivered; its text is kept as the delivery's last error and
/// never holds the webhook URL's secret-bearing parts.
#[derive(Debug, thiserror::Error)]
pub(crate) enum SendError {
    /// `url_env` names an unset variable.
    #[error("environment variable {0} (url_env) is not set")]
    UrlEnvUnset(String),
    /// `url_env` holds no usable URL.
    #[error("{var}: {problem}")]
    UrlEnvBad {
        /// The variable.
        var: String,
        /// What is wrong.
        problem: BadUrl,
    },
    /// The target names neither a URL nor a command.
    #[error("the target has no destination")]
    NoDestination,
    /// The POST failed or was answered with a non-2xx status.
    #[error("POST {url}: {reason}")]
    Post {
        /// The masked URL.
        url: String,
        /// Why, scrubbed of the URL.
        reason: String,
    },
    /// The hook's command is empty.
    #[error("the hook has no program")]
    NoProgram,
    /// The hook could not be started.
    #[error("cannot start hook `{program}`: {error}")]
    HookStart {
        /// The program.
        program: String,
        /// Why.
        error: std::io::Error,
    },
    /// The hook ran longer than the target's timeout and was killed.
    #[error("hook `{program}` did not finish within {} (killed)", humantime::format_duration(*.timeout))]
    HookTimeout {
        /// The program.
        program: String,
        /// The time bound.
        timeout: Duration,
    },
    /// Waiting for the hook failed.
    #[error("hook `{program}`: {error}")]
    HookWait {
        /// The program.
        program: String,
        /// Why.
        error: std::io::Error,
    },
    /// The hook exited unsuccessfully.
    #[error("hook `{program}` exited with {status}{}", .last_line.as_ref().map(|l| format!(": {l}")).unwrap_or_default())]
    HookFailed {
        /// The program.
        program: String,
        /// Its exit status.
        status: std::process::ExitStatus,
        /// The last non-blank line of its stderr (at most 200 characters).
        last_line: Option<String>,
    },
}

/// Delivers `ev` to `target` (attempt number `attempt`, from 1); the error says why not.
pub(crate) async fn deliver(
    plan: &Plan,
    target: &NotifySpec,
    ev: &OutboxEvent,
    attempt: u32,
) -> Result<(), SendError> {
    let timeout = target.timeout.std();
    let name = target.name();
    match target.destination() {
        Some(Destination::Webhook(url)) => {
            let body = text::payload(plan, ev, &name, attempt).to_string();
            post(url.expose().to_string(), body, ev.id, timeout).await
        }
        Some(Destination::WebhookEnv(var)) => {
            let url = std::env::var(var).map_err(|_| SendError::UrlEnvUnset(var.to_string()))?;
            crate::plan::notify::check_url(&url).map_err(|problem| SendError::UrlEnvBad {
                var: var.to_string(),
                problem,
            })?;
            let body = text::payload(plan, ev, &name, attempt).to_string();
            post(url, body, ev.id, timeout).await
        }
        Some(Destination::Exec(argv)) => exec(plan, ev, &name, argv, attempt, timeout).await,
        None => Err(SendError::NoDestination),
    }
}

/// POSTs `body` as JSON; 2xx is success.
async fn post(
    url: String,
    body: String,
    event_id: i64,
    timeout: Duration,
) -> Result<(), SendError> {
    let masked = mask_url(&url);
    let scrub_url = url.clone();
    let task = tokio::task::spawn_blocking(move || {
        let agent: ureq::Agent = ureq::Agent::config_builder()
            .timeout_global(Some(timeout))
            .http_status_as_error(false)
            .max_redirects(0)
            .user_agent(concat!("cutover/", env!("CARGO_PKG_VERSION")))
            .tls_config(tls_config())
            .build()
            .into();
        agent
            .post(&url)
            .header("content-type", "application/json")
            .header("x-cutover-event-id", event_id.to_string())
            .send(body.as_bytes())
            .map(|r| r.status().as_u16())
    });
    let failed = |reason: String| SendError::Post {
        url: masked.clone(),
        reason,
    };
    let status = match task.await {
        Ok(Ok(status)) => status,
        Ok(Err(e)) => return Err(failed(scrub(&describe(&e, timeout), &scrub_url))),
        Err(e) => return Err(failed(format!("the request task failed: {e}"))),
    };
    if (200..300).contains(&status) {
        Ok(())
    } else if (300..400).contains(&status) {
        Err(failed(format!(
            "HTTP {status} (redirects are not followed: configure the final URL)"
        )))
    } else {
        Err(failed(format!("HTTP {status}")))
    }
}

fn describe(e: &ureq::Error, timeout: Duration) -> String {
    match e {
        ureq::Error::Timeout(_) => {
            format!("no answer within {}", humantime::format_duration(timeout))
        }
        ureq::Error::BadUri(_) => "the URL is not usable".to_string(),
        ureq::Error::HostNotFound => "host not found".to_string(),
        ureq::Error::ConnectionFailed => "connection failed".to_string(),
        ureq::Error::Io(io) => format!("{io}"),
        other => other.to_string(),
    }
}

/// Removes every webhook URL of `plan` (and their secret-bearing parts) from `text`: a second
/// line of defence for error texts shown outside the sender (the TUI), should one ever carry one.
pub fn scrub_error(plan: &Plan, text: &str) -> String {
    plan.spec
        .notify
        .iter()
        .filter_map(|t| match t.destination() {
            Some(Destination::Webhook(url)) => Some(url.expose().to_string()),
            Some(Destination::WebhookEnv(var)) => std::env::var(var).ok(),
            _ => None,
        })
        .fold(text.to_string(), |out, url| scrub(&out, &url))
}

/// Removes the URL and its secret-bearing parts from `text`.
fn scrub(text: &str, url: &str) -> String {
    let mut out = text.replace(url, &mask_url(url));
    if let Ok(u) = url::Url::parse(url) {
        let mut secrets: Vec<String> = vec![u.username().to_string()];
        secrets.extend(u.password().map(str::to_string));
        secrets.extend(u.query().map(str::to_string));
        if u.path() != "/" {
            secrets.push(u.path().to_string());
        }
        for s in secrets.iter().filter(|s| s.len() >= 3) {
            out = out.replace(s.as_str(), "…");
        }
    }
    out
}

/// Roots from the system trust store (as for PostgreSQL's `sslrootcert=system`), else the
/// bundled Mozilla roots.
fn tls_config() -> ureq::tls::TlsConfig {
    static ROOTS: OnceLock<ureq::tls::RootCerts> = OnceLock::new();
    let roots = ROOTS
        .get_or_init(|| {
            let found = rustls_native_certs::load_native_certs();
            let certs: Vec<ureq::tls::Certificate<'static>> = found
                .certs
                .iter()
                .map(|c| ureq::tls::Certificate::from_der(c.as_ref()).to_owned())
                .collect();
            if certs.is_empty() {
                ureq::tls::RootCerts::WebPki
            } else {
                ureq::tls::RootCerts::Specific(Arc::new(certs))
            }
        })
        .clone();
    ureq::tls::TlsConfig::builder().root_certs(roots).build()
}

/// Runs the hook with the event in `CUTOVER_*` variables; exit status 0 is success.
async fn exec(
    plan: &Plan,
    ev: &OutboxEvent,
    name: &str,
    argv: &[String],
    attempt: u32,
    timeout: Duration,
) -> Result<(), SendError> {
    let Some((program, args)) = argv.split_first() else {
        return Err(SendError::NoProgram);
    };
    let mut cmd = tokio::process::Command::new(program);
    cmd.args(args)
        .stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::piped())
        .kill_on_drop(true);
    for var in WITHHELD_ENV {
        cmd.env_remove(var);
    }
    for (k, v) in env(plan, ev, name, attempt) {
        cmd.env(k, v);
    }
    let program = program.clone();
    let child = match cmd.spawn() {
        Ok(child) => child,
        Err(error) => return Err(SendError::HookStart { program, error }),
    };
    match tokio::time::timeout(timeout, child.wait_with_output()).await {
        Err(_) => Err(SendError::HookTimeout { program, timeout }),
        Ok(Err(error)) => Err(SendError::HookWait { program, error }),
        Ok(Ok(out)) if out.status.success() => Ok(()),
        Ok(Ok(out)) => {
            let stderr = String::from_utf8_lossy(&out.stderr);
            let last = stderr.lines().rev().find(|l| !l.trim().is_empty());
            let last: String = last.unwrap_or("").chars().take(200).collect();
            Err(SendError::HookFailed {
                program,
                status: out.status,
                last_line: (!last.is_empty()).then_some(last),
            })
        }
    }
}

/// The `CUTOVER_*` variables of a hook run.
pub(crate) fn env(
    plan: &Plan,
    ev: &OutboxEvent,
    target: &str,
    attempt: u32,
) -> Vec<(&'static str, String)> {
    vec![
        ("CUTOVER_EVENT", ev.event.as_str().to_string()),
        ("CUTOVER_EVENT_ID", ev.id.to_string()),
        ("CUTOVER_PLAN_ID", ev.plan_id.clone()),
        ("CUTOVER_PLAN_TITLE", plan.spec.title.clone()),
        ("CUTOVER_ENVIRONMENT", plan.spec.environment.to_string()),
        (
            "CUTOVER_PHASE",
            ev.phase.map(|p| p.as_str().to_string()).unwrap_or_default(),
        ),
        ("CUTOVER_LOGIN", ev.login.clone()),
        ("CUTOVER_OCCURRED_AT", ev.occurred_at.to_rfc3339()),
        ("CUTOVER_TEXT", text::line(plan, ev)),
        ("CUTOVER_DETAILS_JSON", ev.details.to_string()),
        ("CUTOVER_TARGET", target.to_string()),
        ("CUTOVER_ATTEMPT", attempt.to_string()),
    ]
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn scrubbing_removes_every_secret_part() {
        let url = "https://bot:hunter2@hooks.example.com/services/T1/B2/tok3n?sig=abcdef";
        let text =
            format!("error sending to {url}: failed at /services/T1/B2/tok3n with sig=abcdef");
        let s = scrub(&text, url);
        for secret in ["hunter2", "tok3n", "abcdef"] {
            assert!(!s.contains(secret), "{s}");
        }
        assert!(s.contains("https://hooks.example.com/…"), "{s}");
    }

    #[test]
    fn an_error_shown_elsewhere_loses_every_webhook_secret_of_the_plan() {
        let plan = Plan::parse(
            "plans/accounts-balance-cents.toml",
            &format!(
                "{}\n[[notify]]\nurl = \"https://hooks.example.com/services/T1/tok3n?sig=abcdef\"\n",
                include_str!("../../plans/accounts-balance-cents.toml")
            ),
        )
        .unwrap();
        let s = scrub_error(
            &plan,
            "POST https://hooks.example.com/services/T1/tok3n?sig=abcdef: HTTP 500",
        );
        assert_eq!(s, "POST https://hooks.example.com/…: HTTP 500");
        assert_eq!(scrub_error(&plan, "HTTP 502"), "HTTP 502");
    }
}
