//! `cutover status`: the whole picture of one migration, as text or JSON. A read: it answers
//! "not started" where nothing has run yet and never creates anything.

use std::path::Path;
use std::process::ExitCode;

use super::shared::{engine_failure, load};
use super::{exit, Context};
use crate::engine;
use crate::outcome::Outcome;

pub(super) async fn status(ctx: &Context, path: &Path, json: bool) -> anyhow::Result<ExitCode> {
    let plan = load(path)?;
    let (client, security) = ctx.connect_reader("status").await?;
    let st = match engine::status(&client, &plan).await {
        Ok(s) => s,
        Err(e) => return engine_failure(e),
    };
    let cdc = if plan.spec.is_cdc() {
        Some(crate::cdc::lag(&client, plan.id()).await?)
    } else {
        None
    };
    let share = match &st.backfill {
        Some(_) if plan.spec.backfill.is_some() => crate::backfill::share(&client, &plan).await?,
        _ => None,
    };
    let builds = if st.started {
        crate::control::index_builds::of_plan(&client, plan.id())
            .await
            .unwrap_or_else(|e| {
                tracing::warn!("index build progress unavailable: {e}");
                Vec::new()
            })
    } else {
        Vec::new()
    };
    if json {
        let mut value = serde_json::to_value(&st)?;
        if let Some(map) = value.as_object_mut() {
            map.insert("connection".into(), serde_json::to_value(&security)?);
            if let Some(lag) = &cdc {
                map.insert("cdc".into(), serde_json::json!({ "lag": lag }));
            }
            map.insert("index_builds".into(), serde_json::to_value(&builds)?);
            // The share `backfill status` and the TUI's gauge show, beside the recorded row.
            if let (Some(b), Some(s)) = (map.get_mut("backfill"), &share) {
                if let Some(b) = b.as_object_mut() {
                    b.insert("share".into(), serde_json::to_value(s)?);
                }
            }
        }
        println!("{}", serde_json::to_string_pretty(&value)?);
    } else {
        print!("{}", render_status(&st, share.as_ref()));
        match &cdc {
            Some(Some(l)) => println!(
                "cdc: slot {}{}, {} bytes behind, caught up {} ago",
                l.slot,
                if l.slot_exists { "" } else { " MISSING" },
                l.bytes,
                l.seconds.map_or("never".into(), |s| format!("{s:.1}s"))
            ),
            Some(None) => println!("cdc: no slot yet (the copy creates it)"),
            None => {}
        }
        for b in &builds {
            println!("index build (pid {}): {b}", b.pid);
        }
        for s in &st.slots {
            println!("{s}");
        }
        println!("connection: {} — {}", security.server, security.summary());
    }
    Ok(ExitCode::from(exit::OK))
}

fn mark(o: Outcome) -> &'static str {
    match o {
        Outcome::Pass => "✓",
        Outcome::Fail => "✗",
        Outcome::Inconclusive => "?",
    }
}

/// The human rendering of `status`.
/// `share`: the backfill's progress as `backfill status` computes it.
pub(super) fn render_status(st: &engine::Status, share: Option<&crate::backfill::Share>) -> String {
    let mut out = String::new();
    header(&mut out, st);
    phases(&mut out, st);
    gate(&mut out, st);
    scorecard(&mut out, st);
    signoffs(&mut out, st);
    tail(&mut out, st, share);
    out
}

/// The plan, its fingerprint and whether it has started, registered or changed.
fn header(out: &mut String, st: &engine::Status) {
    push(
        out,
        format!("{} — {}  [{}]", st.plan_id, st.title, st.environment),
    );
    push(
        out,
        format!(
            "plan {} sha256 {}",
            st.plan_path,
            &st.plan_sha256[..12.min(st.plan_sha256.len())]
        ),
    );
    if !st.started {
        push(
            out,
            "  not started: no phase has been applied or rolled back here yet".into(),
        );
    }
    if !st.registered {
        push(out, "  not registered yet: an operator's first command (advance, signoff, probe) registers it".into());
    }
    if st.plan_changed {
        push(
            out,
            format!(
                "  ! plan changed since it was last acted on (was {}): earlier sign-offs are void",
                &st.recorded_sha256[..12.min(st.recorded_sha256.len())]
            ),
        );
    }
}

/// Each phase's state, timing and note.
fn phases(out: &mut String, st: &engine::Status) {
    push(out, "phases:".into());
    for p in &st.phases {
        let when = p
            .finished_at
            .map(|t| format!(" {}", t.format("%Y-%m-%d %H:%M:%SZ")))
            .unwrap_or_default();
        let dur = p
            .duration_ms
            .map(|d| format!(" ({d} ms)"))
            .unwrap_or_default();
        let err = p
            .error
            .as_ref()
            .map(|e| format!("  error: {e}"))
            .unwrap_or_default();
        let irr = if p.reversible { "" } else { "  (irreversible)" };
        push(
            out,
            format!(
                "  {:<12} {:<12}{when}{dur}{irr}{err}",
                p.phase.as_str(),
                p.state.as_str()
            ),
        );
        if let Some(note) = &p.note {
            push(out, format!("               {note}"));
        }
    }
}

/// A check's leaf partitions: each that disagrees, then how many agree.
pub(super) fn partitions(out: &mut String, all: &[crate::checks::PartitionResult]) {
    let differing: Vec<_> = all.iter().filter(|p| p.mismatches != 0).collect();
    for p in &differing {
        push(out, format!("      partition {p}"));
    }
    let agreeing = all.len() - differing.len();
    if agreeing > 0 {
        push(
            out,
            format!("      {agreeing} other leaf partition(s) agree"),
        );
    }
}

/// The next phase's gate, item by item, and any override of it.
fn gate(out: &mut String, st: &engine::Status) {
    match &st.gate {
        Some(g) => {
            push(out, format!("next: {} — gate {}", g.phase, g.verdict()));
            for i in &g.items {
                push(
                    out,
                    format!(
                        "  {} {} {}: {}",
                        mark(i.outcome),
                        i.kind.as_str(),
                        i.name,
                        i.detail
                    ),
                );
                for e in &i.evidence {
                    push(out, format!("      {e}"));
                }
                partitions(out, &i.partitions);
            }
            if let Some(o) = &g.overridden {
                push(
                    out,
                    format!(
                        "  ! override by {} at {}: {}",
                        o.login,
                        o.at.format("%Y-%m-%d %H:%M:%SZ"),
                        o.reason
                    ),
                );
            }
        }
        None => push(out, "next: nothing — all phases applied".into()),
    }
}

/// The readiness scorecard by category.
fn scorecard(out: &mut String, st: &engine::Status) {
    push(
        out,
        format!(
            "scorecard: {}",
            if st.scorecard.ready {
                "READY"
            } else {
                "not ready"
            }
        ),
    );
    for c in &st.scorecard.categories {
        push(
            out,
            format!(
                "  {} {} ({}): {}",
                mark(c.outcome),
                c.name,
                c.owner,
                c.outcome
            ),
        );
        for e in c.evidence.iter().chain([&c.signoff]) {
            push(
                out,
                format!("      {} {}: {}", mark(e.outcome), e.name, e.detail),
            );
        }
    }
}

/// Sign-offs and break-glass overrides.
fn signoffs(out: &mut String, st: &engine::Status) {
    if !st.signoffs.is_empty() {
        push(out, "sign-offs:".into());
        for s in &st.signoffs {
            let void = s
                .note
                .as_ref()
                .map(|n| format!("  [{n}]"))
                .unwrap_or_default();
            push(
                out,
                format!(
                    "  {} / {} by {} ({}@{}) at {}{void}",
                    s.gate,
                    s.role,
                    s.login,
                    s.os_user,
                    s.host,
                    s.signed_at.format("%Y-%m-%d %H:%M:%SZ")
                ),
            );
        }
    }
    if !st.overrides.is_empty() {
        push(out, "overrides (break-glass):".into());
        for o in &st.overrides {
            let old = if o.current_plan {
                ""
            } else {
                "  [older plan version]"
            };
            push(
                out,
                format!(
                    "  OVERRIDE {} by {} at {}: {}{old}",
                    o.gate,
                    o.login,
                    o.at.format("%Y-%m-%d %H:%M:%SZ"),
                    o.reason
                ),
            );
        }
    }
}

/// The feature flag, the backfill and the fastest safe rollback.
fn tail(out: &mut String, st: &engine::Status, share: Option<&crate::backfill::Share>) {
    if let Some(f) = &st.flag {
        push(
            out,
            format!(
                "flag {}: {} (by {} at {})",
                f.name,
                if f.enabled { "ON" } else { "OFF" },
                f.updated_by,
                f.updated_at.format("%Y-%m-%d %H:%M:%SZ")
            ),
        );
    }
    if let Some(b) = &st.backfill {
        let rows = match share {
            Some(s) => match s.percent_text() {
                Some(p) => format!("{} ({p})", s.rows_text()),
                None => s.rows_text(),
            },
            None => format!("{} rows", crate::backfill::thousands(b.rows_done)),
        };
        let why = if b.reason.is_empty() {
            String::new()
        } else {
            format!(" — {}", b.reason)
        };
        push(
            out,
            format!(
                "backfill: {} {rows}, throttled {:.1}s{why}",
                b.state, b.throttled_seconds
            ),
        );
    }
    match &st.rollback {
        Some(r) if r.possible => push(
            out,
            format!(
                "fastest safe rollback ({}): {} — `{}`",
                r.phase, r.description, r.command
            ),
        ),
        Some(r) => push(
            out,
            format!("rollback of {}: impossible — {}", r.phase, r.description),
        ),
        None => push(out, "rollback: nothing applied".into()),
    }
}

fn push(out: &mut String, line: String) {
    out.push_str(&line);
    out.push('\n');
}
