//! The post-migration record: timeline of phases with durations, backfill throttle time, sign-offs
//! and overrides, check history, rehearsals and operator notes — as JSON and as Markdown.

use std::fmt::Write as _;

use chrono::{DateTime, Utc};
use serde::Serialize;
use serde_json::Value;
use tokio_postgres::Client;

use super::EngineError;
use crate::control::audit::{self, Actor, Verification};
use crate::control::phases::{self as state, PhaseState};
use crate::plan::{Phase, Plan};
use crate::rules::{fmt_time, short};

/// One state change.
#[derive(Debug, Clone, Serialize)]
pub struct TimelineEntry {
    /// When.
    pub at: DateTime<Utc>,
    /// Phase.
    pub phase: String,
    /// State before.
    pub from: String,
    /// State after.
    pub to: String,
    /// Login.
    pub actor: String,
    /// Details (errors, flags, resume).
    pub details: Value,
}

/// A phase's summary.
#[derive(Debug, Clone, Serialize)]
pub struct PhaseSummary {
    /// Phase.
    pub phase: Phase,
    /// Final state.
    pub state: PhaseState,
    /// When it was last applied.
    pub applied_at: Option<DateTime<Utc>>,
    /// Duration of its last apply, ms.
    pub apply_ms: Option<i64>,
    /// Times it was applied.
    pub applies: usize,
    /// Times it was rolled back.
    pub rollbacks: usize,
    /// Failed attempts.
    pub failures: usize,
}

/// Backfill figures.
#[derive(Debug, Clone, Serialize)]
pub struct BackfillSummary {
    /// Final state.
    pub state: String,
    /// Rows written.
    pub rows_done: i64,
    /// Time spent throttled, s.
    pub throttled_seconds: f64,
    /// Started.
    pub started_at: Option<DateTime<Utc>>,
    /// Finished.
    pub finished_at: Option<DateTime<Utc>>,
}

/// A sign-off or an override as it stands in the record.
#[derive(Debug, Clone, Serialize)]
pub struct Approval {
    /// `signoff` or `override`.
    pub kind: String,
    /// Gate.
    pub gate: String,
    /// Role (sign-offs).
    pub role: Option<String>,
    /// Login.
    pub login: String,
    /// When.
    pub at: DateTime<Utc>,
    /// Reason (overrides) or comment.
    pub text: String,
    /// Given for the plan version of this report.
    pub current_plan: bool,
}

/// One stored check result.
#[derive(Debug, Clone, Serialize)]
pub struct CheckRun {
    /// Check name.
    pub name: String,
    /// Kind.
    pub kind: String,
    /// pass / fail / inconclusive.
    pub outcome: String,
    /// One line.
    pub summary: String,
    /// Started.
    pub started_at: DateTime<Utc>,
    /// Duration, ms.
    pub duration_ms: i64,
}

/// An operator note.
#[derive(Debug, Clone, Serialize)]
pub struct Note {
    /// Audit sequence number.
    pub seq: i64,
    /// When (RFC 3339).
    pub at: String,
    /// Login.
    pub login: String,
    /// Text.
    pub text: String,
}

/// A stored rehearsal.
#[derive(Debug, Clone, Serialize)]
pub struct RehearsalSummary {
    /// When.
    pub at: DateTime<Utc>,
    /// By.
    pub login: String,
    /// Passed?
    pub ok: bool,
    /// Total ms.
    pub total_ms: f64,
    /// Plan version.
    pub plan_sha256: String,
}

/// The post-migration record.
#[derive(Debug, Clone, Serialize)]
pub struct Report {
    /// Plan id.
    pub plan_id: String,
    /// Title.
    pub title: String,
    /// Ticket.
    pub ticket: String,
    /// Author.
    pub author: String,
    /// Environment.
    pub environment: String,
    /// Plan sha256.
    pub plan_sha256: String,
    /// When the report was written.
    pub generated_at: DateTime<Utc>,
    /// By whom.
    pub generated_by: String,
    /// Per phase.
    pub phases: Vec<PhaseSummary>,
    /// Every state change.
    pub timeline: Vec<TimelineEntry>,
    /// From the first apply to the last applied phase, ms.
    pub total_ms: Option<i64>,
    /// Backfill figures.
    pub backfill: Option<BackfillSummary>,
    /// Sign-offs and overrides.
    pub approvals: Vec<Approval>,
    /// Every stored check result, oldest first.
    pub checks: Vec<CheckRun>,
    /// Rehearsals.
    pub rehearsals: Vec<RehearsalSummary>,
    /// Operator notes.
    pub notes: Vec<Note>,
    /// Audit chain state when the report was written.
    pub audit: String,
}

/// Gathers the record of `plan`.
pub async fn report(
    client: &mut Client,
    plan: &Plan,
    actor: &Actor,
) -> Result<Report, EngineError> {
    state::ensure_registered(client, plan, actor).await?;
    let client: &Client = client;
    let st = state::load(client, plan.id()).await?;
    let id = plan.id();
    let timeline: Vec<TimelineEntry> = client
        .query(
            "SELECT at, phase, from_state, to_state, actor, details FROM cutover.phase_history
              WHERE plan_id = $1 ORDER BY id",
            &[&id],
        )
        .await?
        .iter()
        .map(|r| TimelineEntry {
            at: r.get(0),
            phase: r.get(1),
            from: r.get(2),
            to: r.get(3),
            actor: r.get(4),
            details: r.get(5),
        })
        .collect();
    let phases = Phase::ALL
        .iter()
        .map(|&p| summarize(p, st.phase(p).state, &timeline))
        .collect::<Vec<_>>();
    let first_start = timeline
        .iter()
        .find(|t| t.to == PhaseState::Applying.as_str())
        .map(|t| t.at);
    let last_applied = timeline
        .iter()
        .rev()
        .find(|t| t.to == PhaseState::Applied.as_str())
        .map(|t| t.at);
    let total_ms = match (first_start, last_applied) {
        (Some(a), Some(b)) => Some((b - a).num_milliseconds()),
        _ => None,
    };
    let backfill = client
        .query_opt(
            "SELECT state, rows_done, throttled_seconds, started_at, finished_at
               FROM cutover.backfill WHERE plan_id = $1",
            &[&id],
        )
        .await?
        .map(|r| BackfillSummary {
            state: r.get(0),
            rows_done: r.get(1),
            throttled_seconds: r.get(2),
            started_at: r.get(3),
            finished_at: r.get(4),
        });
    let sha = plan.sha256();
    let mut approvals: Vec<Approval> = client
        .query(
            "SELECT gate, role, login, signed_at, comment, plan_sha256 FROM cutover.signoffs WHERE plan_id = $1",
            &[&id],
        )
        .await?
        .iter()
        .map(|r| Approval {
            kind: "signoff".into(),
            gate: r.get(0),
            role: Some(r.get(1)),
            login: r.get(2),
            at: r.get(3),
            text: r.get(4),
            current_plan: r.get::<_, String>(5) == sha,
        })
        .collect();
    approvals.extend(
        client
            .query(
                "SELECT gate, login, at, reason, plan_sha256 FROM cutover.overrides WHERE plan_id = $1",
                &[&id],
            )
            .await?
            .iter()
            .map(|r| Approval {
                kind: "override".into(),
                gate: r.get(0),
                role: None,
                login: r.get(1),
                at: r.get(2),
                text: r.get(3),
                current_plan: r.get::<_, String>(4) == sha,
            }),
    );
    approvals.sort_by_key(|a| a.at);
    let checks = client
        .query(
            "SELECT check_name, kind, outcome, summary, started_at, duration_ms
               FROM cutover.check_results WHERE plan_id = $1 ORDER BY id",
            &[&id],
        )
        .await?
        .iter()
        .map(|r| CheckRun {
            name: r.get(0),
            kind: r.get(1),
            outcome: r.get(2),
            summary: r.get(3),
            started_at: r.get(4),
            duration_ms: r.get(5),
        })
        .collect();
    let rehearsals = client
        .query(
            "SELECT at, login, ok, total_ms, plan_sha256 FROM cutover.rehearsals WHERE plan_id = $1 ORDER BY id",
            &[&id],
        )
        .await?
        .iter()
        .map(|r| RehearsalSummary {
            at: r.get(0),
            login: r.get(1),
            ok: r.get(2),
            total_ms: r.get(3),
            plan_sha256: r.get(4),
        })
        .collect();
    let notes = client
        .query(
            "SELECT seq, at, login, details->>'text' FROM cutover.audit_log
              WHERE plan_id = $1 AND action = 'note' ORDER BY seq",
            &[&id],
        )
        .await?
        .iter()
        .map(|r| Note {
            seq: r.get(0),
            at: r.get(1),
            login: r.get(2),
            text: r.get::<_, Option<String>>(3).unwrap_or_default(),
        })
        .collect();
    let audit = match audit::verify(client).await? {
        Verification::Intact { entries, head } => {
            format!("intact: {entries} entries, head hash {head}")
        }
        Verification::Broken { seq, reason } => format!("BROKEN at entry #{seq}: {reason}"),
    };
    Ok(Report {
        plan_id: id.to_string(),
        title: plan.spec.title.clone(),
        ticket: plan.spec.ticket.clone(),
        author: plan.spec.author.clone(),
        environment: plan.spec.environment.clone(),
        plan_sha256: sha,
        generated_at: Utc::now(),
        generated_by: actor.to_string(),
        phases,
        timeline,
        total_ms,
        backfill,
        approvals,
        checks,
        rehearsals,
        notes,
        audit,
    })
}

fn summarize(phase: Phase, state: PhaseState, timeline: &[TimelineEntry]) -> PhaseSummary {
    let mine: Vec<&TimelineEntry> = timeline
        .iter()
        .filter(|t| t.phase == phase.as_str())
        .collect();
    let count = |to: PhaseState| mine.iter().filter(|t| t.to == to.as_str()).count();
    let mut applied_at = None;
    let mut apply_ms = None;
    let mut started: Option<DateTime<Utc>> = None;
    for t in &mine {
        if t.to == PhaseState::Applying.as_str() {
            started = Some(t.at);
        } else if t.to == PhaseState::Applied.as_str() && t.from == PhaseState::Applying.as_str() {
            applied_at = Some(t.at);
            apply_ms = started.map(|s| (t.at - s).num_milliseconds());
        }
    }
    PhaseSummary {
        phase,
        state,
        applied_at,
        apply_ms,
        applies: mine
            .iter()
            .filter(|t| {
                t.to == PhaseState::Applied.as_str() && t.from == PhaseState::Applying.as_str()
            })
            .count(),
        rollbacks: count(PhaseState::RolledBack),
        failures: count(PhaseState::Failed)
            + mine
                .iter()
                .filter(|t| {
                    t.from == PhaseState::RollingBack.as_str()
                        && t.to == PhaseState::Applied.as_str()
                })
                .count(),
    }
}

impl Report {
    /// The record as Markdown.
    pub fn markdown(&self) -> String {
        let mut md = String::new();
        let _ = writeln!(md, "# Migration record: {}\n", self.title);
        let _ = writeln!(
            md,
            "- Plan: `{}` (sha256 `{}`)",
            self.plan_id,
            short(&self.plan_sha256)
        );
        let _ = writeln!(md, "- Environment: {}", self.environment);
        let _ = writeln!(md, "- Author: {}", self.author);
        let _ = writeln!(md, "- Ticket: {}", self.ticket);
        let _ = writeln!(
            md,
            "- Written {} by {}",
            fmt_time(self.generated_at),
            self.generated_by
        );
        if let Some(ms) = self.total_ms {
            let _ = writeln!(
                md,
                "- From the first apply to the last applied phase: {}",
                human_ms(ms)
            );
        }
        let _ = writeln!(md, "- Audit log: {}\n", self.audit);

        let _ = writeln!(md, "## Phases\n");
        let _ = writeln!(
            md,
            "| phase | state | applied at | apply took | applied | rolled back | failures |"
        );
        let _ = writeln!(md, "|---|---|---|---|---|---|---|");
        for p in &self.phases {
            let _ = writeln!(
                md,
                "| {} | {} | {} | {} | {} | {} | {} |",
                p.phase,
                p.state,
                p.applied_at.map(fmt_time).unwrap_or_else(|| "—".into()),
                p.apply_ms.map(human_ms).unwrap_or_else(|| "—".into()),
                p.applies,
                p.rollbacks,
                p.failures
            );
        }
        let _ = writeln!(md, "\n## Timeline\n");
        for t in &self.timeline {
            let extra = match &t.details {
                Value::Object(m) if !m.is_empty() => format!(" — {}", t.details),
                _ => String::new(),
            };
            let _ = writeln!(
                md,
                "- {} {}: {} → {} by {}{extra}",
                fmt_time(t.at),
                t.phase,
                t.from,
                t.to,
                t.actor
            );
        }
        let _ = writeln!(md, "\n## Backfill\n");
        match &self.backfill {
            Some(b) => {
                let _ = writeln!(
                    md,
                    "{} rows, state {}, throttled for {:.1} s{}{}",
                    b.rows_done,
                    b.state,
                    b.throttled_seconds,
                    b.started_at
                        .map(|t| format!(", started {}", fmt_time(t)))
                        .unwrap_or_default(),
                    b.finished_at
                        .map(|t| format!(", finished {}", fmt_time(t)))
                        .unwrap_or_default()
                );
            }
            None => {
                let _ = writeln!(
                    md,
                    "No backfill ran through Cutover's runner (throttle time 0 s)."
                );
            }
        }
        let _ = writeln!(md, "\n## Sign-offs and overrides\n");
        if self.approvals.is_empty() {
            let _ = writeln!(md, "None.");
        }
        for a in &self.approvals {
            let version = if a.current_plan {
                ""
            } else {
                " (given for an earlier plan version)"
            };
            match a.kind.as_str() {
                "override" => {
                    let _ = writeln!(
                        md,
                        "- **OVERRIDE** of gate {} by {} at {}: {}{version}",
                        a.gate,
                        a.login,
                        fmt_time(a.at),
                        a.text
                    );
                }
                _ => {
                    let _ = writeln!(
                        md,
                        "- gate {} signed as {} by {} at {}{}{version}",
                        a.gate,
                        a.role.as_deref().unwrap_or(""),
                        a.login,
                        fmt_time(a.at),
                        if a.text.is_empty() {
                            String::new()
                        } else {
                            format!(": {}", a.text)
                        }
                    );
                }
            }
        }
        let _ = writeln!(md, "\n## Check history\n");
        if self.checks.is_empty() {
            let _ = writeln!(md, "No check results stored.");
        } else {
            let _ = writeln!(md, "| at | check | kind | outcome | took | summary |");
            let _ = writeln!(md, "|---|---|---|---|---|---|");
            for c in &self.checks {
                let _ = writeln!(
                    md,
                    "| {} | {} | {} | {} | {} | {} |",
                    fmt_time(c.started_at),
                    c.name,
                    c.kind,
                    c.outcome,
                    human_ms(c.duration_ms),
                    c.summary.replace('|', "\\|")
                );
            }
        }
        let _ = writeln!(md, "\n## Rehearsals\n");
        if self.rehearsals.is_empty() {
            let _ = writeln!(md, "None.");
        }
        for r in &self.rehearsals {
            let _ = writeln!(
                md,
                "- {} by {}: {} in {:.1} ms (plan {})",
                fmt_time(r.at),
                r.login,
                if r.ok { "passed" } else { "FAILED" },
                r.total_ms,
                short(&r.plan_sha256)
            );
        }
        let _ = writeln!(md, "\n## Notes\n");
        if self.notes.is_empty() {
            let _ = writeln!(md, "None.");
        }
        for n in &self.notes {
            let _ = writeln!(md, "- {} {} (#{}): {}", n.at, n.login, n.seq, n.text);
        }
        md
    }
}

fn human_ms(ms: i64) -> String {
    if ms < 1_000 {
        format!("{ms} ms")
    } else {
        format!("{:.1} s", ms as f64 / 1000.0)
    }
}
