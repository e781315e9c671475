//! The post-migration record: timeline of phases with durations, backfill throttle time, sign-offs
//! and overrides, attestations, check history, rehearsals and operator notes — as JSON and as
//! Markdown.

use std::fmt::Write as _;

use chrono::{DateTime, Utc};
use serde::Serialize;
use serde_json::Value;
use tokio_postgres::Client;

use super::EngineError;
use crate::control;
use crate::control::attestations::Attestation;
use crate::control::audit::{self, Actor, Note, Verification};
use crate::control::backfill::State as BackfillState;
use crate::control::checks::CheckRun;
use crate::control::phases::{self as state, HistoryRow, PhaseState};
use crate::control::rehearsals::RehearsalRow;
use crate::plan::{Environment, Phase, Plan};
use crate::rules::{fmt_time, short, CategoryKind};

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
    pub state: BackfillState,
    /// Rows written.
    pub rows_done: i64,
    /// Time spent throttled, s.
    pub throttled_seconds: f64,
    /// Started.
    pub started_at: Option<DateTime<Utc>>,
    /// Finished.
    pub finished_at: Option<DateTime<Utc>>,
}

/// Which kind of approval.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum ApprovalKind {
    /// A role's sign-off.
    Signoff,
    /// A lead's break-glass override.
    Override,
}

/// A sign-off or an override as it stands in the record.
#[derive(Debug, Clone, Serialize)]
pub struct Approval {
    /// Sign-off or override.
    pub kind: ApprovalKind,
    /// Gate.
    pub gate: Phase,
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
    pub environment: Environment,
    /// Plan sha256.
    pub plan_sha256: String,
    /// When the report was written.
    pub generated_at: DateTime<Utc>,
    /// By whom.
    pub generated_by: String,
    /// Per phase.
    pub phases: Vec<PhaseSummary>,
    /// Every state change.
    pub timeline: Vec<HistoryRow>,
    /// From the first apply to the last applied phase, ms.
    pub total_ms: Option<i64>,
    /// Backfill figures.
    pub backfill: Option<BackfillSummary>,
    /// Sign-offs and overrides.
    pub approvals: Vec<Approval>,
    /// Hand attestations of scorecard categories (Observability), oldest first.
    pub attestations: Vec<Attestation>,
    /// Every stored check result, oldest first.
    pub checks: Vec<CheckRun>,
    /// Rehearsals.
    pub rehearsals: Vec<RehearsalRow>,
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
    let timeline = state::history(client, id).await?;
    let phases = Phase::ALL
        .iter()
        .map(|&p| summarize(p, st.phase(p).state, &timeline))
        .collect::<Vec<_>>();
    let first_start = timeline
        .iter()
        .find(|t| t.to == PhaseState::Applying)
        .map(|t| t.at);
    let last_applied = timeline
        .iter()
        .rev()
        .find(|t| t.to == PhaseState::Applied)
        .map(|t| t.at);
    let total_ms = match (first_start, last_applied) {
        (Some(a), Some(b)) => Some((b - a).num_milliseconds()),
        _ => None,
    };
    let backfill = control::backfill::load(client, id)
        .await?
        .map(|b| BackfillSummary {
            state: b.state,
            rows_done: b.rows_done,
            throttled_seconds: b.throttled_seconds,
            started_at: b.started_at,
            finished_at: b.finished_at,
        });
    let sha = plan.sha256();
    let mut approvals: Vec<Approval> = control::signoffs::signoffs(client, id, None)
        .await?
        .into_iter()
        .map(|s| Approval {
            kind: ApprovalKind::Signoff,
            gate: s.gate,
            role: Some(s.role),
            login: s.login,
            at: s.signed_at,
            text: s.comment,
            current_plan: s.plan_sha256 == sha,
        })
        .collect();
    approvals.extend(
        control::signoffs::overrides(client, id, None)
            .await?
            .into_iter()
            .map(|o| Approval {
                kind: ApprovalKind::Override,
                gate: o.gate,
                role: None,
                login: o.login,
                at: o.at,
                text: o.reason,
                current_plan: o.plan_sha256 == sha,
            }),
    );
    approvals.sort_by_key(|a| a.at);
    let attestations = control::attestations::list(client, id).await?;
    let checks = control::checks::runs(client, id).await?;
    let rehearsals = control::rehearsals::all(client, id).await?;
    let notes = audit::notes(client, id).await?;
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
        attestations,
        checks,
        rehearsals,
        notes,
        audit,
    })
}

fn summarize(phase: Phase, state: PhaseState, timeline: &[HistoryRow]) -> PhaseSummary {
    let mine: Vec<&HistoryRow> = timeline.iter().filter(|t| t.phase == phase).collect();
    let count = |to: PhaseState| mine.iter().filter(|t| t.to == to).count();
    let mut applied_at = None;
    let mut apply_ms = None;
    let mut started: Option<DateTime<Utc>> = None;
    for t in &mine {
        if t.to == PhaseState::Applying {
            started = Some(t.at);
        } else if t.to == PhaseState::Applied && t.from == PhaseState::Applying {
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
            .filter(|t| t.to == PhaseState::Applied && t.from == PhaseState::Applying)
            .count(),
        rollbacks: count(PhaseState::RolledBack),
        failures: count(PhaseState::Failed)
            + mine
                .iter()
                .filter(|t| t.from == PhaseState::RollingBack && t.to == PhaseState::Applied)
                .count(),
    }
}

impl Report {
    /// The record as Markdown.
    pub fn markdown(&self) -> String {
        let mut md = String::new();
        self.md_header(&mut md);
        self.md_phases(&mut md);
        self.md_backfill_and_approvals(&mut md);
        self.md_attestations_and_checks(&mut md);
        self.md_rehearsals_and_notes(&mut md);
        md
    }

    /// The title and the facts of the record.
    fn md_header(&self, md: &mut String) {
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
    }

    /// Each phase's state and counts, then the timeline of transitions.
    fn md_phases(&self, md: &mut String) {
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
    }

    /// The backfill, then sign-offs and overrides.
    fn md_backfill_and_approvals(&self, md: &mut String) {
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
            match a.kind {
                ApprovalKind::Override => {
                    let _ = writeln!(
                        md,
                        "- **OVERRIDE** of gate {} by {} at {}: {}{version}",
                        a.gate,
                        a.login,
                        fmt_time(a.at),
                        a.text
                    );
                }
                ApprovalKind::Signoff => {
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
    }

    /// Attestations, then the stored check results.
    fn md_attestations_and_checks(&self, md: &mut String) {
        let _ = writeln!(md, "\n## Attestations\n");
        if self.attestations.is_empty() {
            let _ = writeln!(
                md,
                "None recorded (the {} records one with `cutover attest PLAN observability URL`, \
                 in the TUI `:attest observability URL`).",
                CategoryKind::Observability.owner()
            );
        }
        for a in &self.attestations {
            let _ = writeln!(
                md,
                "- `{}` attested by {} ({}; {}@{}) at {}: {}{}",
                a.category,
                a.login,
                a.role,
                a.os_user,
                a.host,
                fmt_time(a.at),
                a.url,
                if a.plan_sha256 == self.plan_sha256 {
                    ""
                } else {
                    " (given for an earlier plan version)"
                }
            );
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
                    c.outcome.as_str(),
                    human_ms(c.duration_ms),
                    c.summary.replace('|', "\\|")
                );
            }
        }
    }

    /// Rehearsals, then the operators' notes.
    fn md_rehearsals_and_notes(&self, md: &mut String) {
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
    }
}

fn human_ms(ms: i64) -> String {
    if ms < 1_000 {
        format!("{ms} ms")
    } else {
        format!("{:.1} s", ms as f64 / 1000.0)
    }
}
