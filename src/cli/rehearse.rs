//! `cutover rehearse`: every phase's apply and rollback in a transaction that is thrown away.

use std::path::Path;
use std::process::ExitCode;

use super::shared::{engine_failure, load};
use super::{exit, Context};
use crate::control::audit::Actor;
use crate::engine;

pub(super) async fn rehearse(ctx: &Context, path: &Path, json: bool) -> anyhow::Result<ExitCode> {
    let plan = load(path)?;
    let mut client = ctx.connect("rehearse").await?;
    let actor = Actor::current(&client).await?;
    let r = match engine::rehearse(&mut client, &plan, &actor).await {
        Ok(r) => r,
        Err(e) => return engine_failure(e),
    };
    if json {
        println!("{}", serde_json::to_string_pretty(&r)?);
    } else {
        print!("{}", render_rehearsal(&r));
    }
    Ok(ExitCode::from(if r.ok { exit::OK } else { exit::BLOCKED }))
}

fn render_locks(step: &engine::rehearse::Step) -> String {
    let list = |locks: &[&engine::rehearse::LockTaken]| {
        locks
            .iter()
            .map(|l| format!("{} {}", l.relation, l.mode))
            .collect::<Vec<_>>()
            .join(", ")
    };
    let new: Vec<_> = step.locks.iter().collect();
    let old: Vec<_> = step
        .held
        .iter()
        .filter(|l| !step.locks.contains(l))
        .collect();
    let mut out = if new.is_empty() {
        "takes no new lock".to_string()
    } else {
        format!("takes {}", list(&new))
    };
    if !old.is_empty() {
        out.push_str(&format!(" (already held in the rehearsal: {})", list(&old)));
    }
    out
}

/// The human rendering of a rehearsal.
pub(super) fn render_rehearsal(r: &engine::Rehearsal) -> String {
    let mut out = format!(
        "rehearsal of {} (plan sha256 {}): every change was rolled back\n",
        r.plan_id,
        &r.plan_sha256[..12.min(r.plan_sha256.len())]
    );
    for p in &r.phases {
        if let Some(why) = &p.skipped {
            out.push_str(&format!("  {:<12} skipped: {why}\n", p.phase.as_str()));
            continue;
        }
        if let Some(a) = &p.apply {
            match &a.error {
                None => out.push_str(&format!(
                    "  {:<12} apply    {:>8.1} ms  {} statement(s), {}\n",
                    p.phase.as_str(),
                    a.ms,
                    a.statements,
                    render_locks(a)
                )),
                Some(e) => out.push_str(&format!(
                    "  {:<12} apply    FAILED: {e}\n",
                    p.phase.as_str()
                )),
            }
        }
        if let Some(b) = &p.rollback {
            let restored = match p.restored {
                Some(true) => "  catalog restored",
                Some(false) => "  CATALOG NOT RESTORED",
                None => "",
            };
            match &b.error {
                None => out.push_str(&format!(
                    "  {:<12} rollback {:>8.1} ms  {} statement(s), {}{restored}\n",
                    "",
                    b.ms,
                    b.statements,
                    render_locks(b)
                )),
                Some(e) => out.push_str(&format!("  {:<12} rollback FAILED: {e}\n", "")),
            }
        }
        if let Some(n) = &p.rollback_note {
            out.push_str(&format!("  {:<12} rollback: {n}\n", ""));
        }
        for n in &p.not_rehearsable {
            out.push_str(&format!("  {:<12} {n}\n", ""));
        }
    }
    out.push_str(&format!(
        "{}: {:.1} ms in total; stored as Reversibility evidence (rehearsal #{}, audit #{})\n",
        if r.ok { "PASSED" } else { "FAILED" },
        r.total_ms,
        r.id,
        r.audit_seq
    ));
    out
}
