//! What a notification says: one short line for people (Slack's `text`) and the JSON body with
//! every detail.

use serde_json::{json, Value};

use crate::control::outbox::OutboxEvent;
use crate::plan::{Event, Plan};

/// Longest excerpt of an error, reason or summary in the line.
const EXCERPT: usize = 300;

/// `[environment] plan-id: what happened`.
pub(crate) fn line(plan: &Plan, ev: &OutboxEvent) -> String {
    let d = &ev.details;
    let s = |key: &str| excerpt(d.get(key).and_then(Value::as_str).unwrap_or(""));
    let phase = ev.phase.map_or("?", |p| p.as_str());
    let who = &ev.login;
    let held = d
        .get("held_ms")
        .and_then(Value::as_u64)
        .map(|ms| humantime::format_duration(std::time::Duration::from_secs(ms / 1000)).to_string())
        .unwrap_or_else(|| "a while".into());
    let body = match ev.event {
        Event::PhaseApplied => {
            let attempts = d
                .get("attempts")
                .and_then(Value::as_u64)
                .map(|n| format!(" after {n} attempts"))
                .unwrap_or_default();
            format!("{phase} applied by {who}{attempts}")
        }
        Event::PhaseRolledBack => format!("{phase} rolled back by {who}"),
        Event::PhaseFailed => {
            let doing = if s("action") == "phase.rollback.failed" {
                "rolling back"
            } else {
                "applying"
            };
            format!("{phase} FAILED {doing} (run by {who}): {}", s("error"))
        }
        Event::PhaseInterrupted => format!(
            "{phase} was interrupted while {} and no process is running it: `cutover advance` resumes it, `cutover rollback` undoes it",
            s("state").replace('_', " ")
        ),
        Event::GateBlocked => {
            let blockers: Vec<&str> = d
                .get("blockers")
                .and_then(Value::as_array)
                .map(|a| a.iter().filter_map(Value::as_str).collect())
                .unwrap_or_default();
            let more = match blockers.len() {
                0 | 1 => String::new(),
                n => format!(" (+{} more)", n - 1),
            };
            format!(
                "gate {phase} blocked for {held}: {}{more}",
                excerpt(blockers.first().copied().unwrap_or("see `cutover status`"))
            )
        }
        Event::Signoff => format!(
            "{who} signed off gate {} as {}",
            s("gate"),
            s("role")
        ),
        Event::Override => format!(
            "OVERRIDE: {who} let gate {} through despite its blockers: {}",
            s("gate"),
            s("reason")
        ),
        Event::BackfillThrottled => format!("backfill throttled for {held}: {}", s("reason")),
        Event::BackfillStalled => format!("backfill stalled: no chunk finished for {held}"),
        Event::BackfillFailed => format!("backfill FAILED: {}", s("reason")),
        Event::BackfillDone => {
            let rows = d.get("rows_updated").and_then(Value::as_i64).unwrap_or(0);
            format!("backfill done: {rows} rows updated")
        }
        Event::CheckFailed => format!("check {} FAILED: {}", s("check"), s("summary")),
        Event::AuditBroken => format!(
            "audit chain BROKEN at entry #{}: {}",
            d.get("seq").and_then(Value::as_i64).unwrap_or(0),
            s("reason")
        ),
    };
    format!("[{}] {}: {body}", plan.spec.environment, plan.id())
}

/// The webhook body: Slack's `text` plus the event's fields.
pub(crate) fn payload(plan: &Plan, ev: &OutboxEvent, target: &str, attempt: u32) -> Value {
    json!({
        "text": line(plan, ev),
        "event": ev.event.as_str(),
        "event_id": ev.id,
        "plan_id": ev.plan_id,
        "plan_title": plan.spec.title,
        "environment": plan.spec.environment,
        "phase": ev.phase.map(|p| p.as_str()),
        "login": ev.login,
        "occurred_at": ev.occurred_at.to_rfc3339(),
        "target": target,
        "attempt": attempt,
        "details": ev.details,
    })
}

fn excerpt(s: &str) -> String {
    let one_line = s.split_whitespace().collect::<Vec<_>>().join(" ");
    if one_line.chars().count() <= EXCERPT {
        return one_line;
    }
    let cut: String = one_line.chars().take(EXCERPT).collect();
    format!("{cut}…")
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::plan::Phase;

    fn plan() -> Plan {
        Plan::parse(
            "plans/accounts-balance-cents.toml",
            include_str!("../../plans/accounts-balance-cents.toml"),
        )
        .expect("demo plan")
    }

    fn event(event: Event, phase: Option<Phase>, details: Value) -> OutboxEvent {
        OutboxEvent {
            id: 7,
            plan_id: "p".into(),
            event,
            phase,
            login: "alice".into(),
            threshold_ms: None,
            details,
            audit_seq: None,
            occurred_at: chrono::Utc::now(),
        }
    }

    #[test]
    fn lines_name_the_phase_and_who() {
        let p = plan();
        let l = line(
            &p,
            &event(
                Event::PhaseApplied,
                Some(Phase::Expand),
                json!({"attempts": 3}),
            ),
        );
        assert!(
            l.ends_with(": expand applied by alice after 3 attempts"),
            "{l}"
        );
        assert!(
            l.starts_with(&format!("[{}] {}", p.spec.environment, p.id())),
            "{l}"
        );
        let l = line(
            &p,
            &event(
                Event::PhaseFailed,
                Some(Phase::Backfill),
                json!({"action": "phase.rollback.failed", "error": "boom\nat line 2"}),
            ),
        );
        assert!(
            l.contains("backfill FAILED rolling back (run by alice): boom at line 2"),
            "{l}"
        );
        let l = line(
            &p,
            &event(
                Event::GateBlocked,
                Some(Phase::DualWrite),
                json!({"held_ms": 600_500, "blockers": ["sign-off sre missing", "check x"]}),
            ),
        );
        assert!(
            l.contains("gate dual_write blocked for 10m: sign-off sre missing (+1 more)"),
            "{l}"
        );
    }

    #[test]
    fn long_reasons_are_cut() {
        let long = "x".repeat(1000);
        let l = line(
            &plan(),
            &event(Event::BackfillFailed, None, json!({"reason": long})),
        );
        assert!(l.chars().count() < 400, "{}", l.len());
        assert!(l.ends_with('…'));
    }
}
