//! The cutover-night runbook, generated as Markdown from the plan and the live state: the
//! command sequence with expected outputs, stop conditions and rollback triggers per phase, the
//! role roster, validation queries and checks, observation windows and points of no return.

use std::fmt::Write;

use chrono::Utc;
use tokio_postgres::Client;

use super::lint;
use crate::backfill::{BackfillError, Share};
use crate::control::attestations::{self, Attestation};
use crate::control::facts::Facts;
use crate::plan::{CheckKind, CheckSpec, Phase, Plan, ProbeKind, Role};
use crate::rules::{self, scorecard, CategoryKind, GateEvaluation, ItemKind};
use crate::sql::split_statements;

/// Live state read from the control schema (absent when no database is configured).
#[derive(Debug, Clone)]
pub(crate) struct LiveState {
    /// Where it was read from (masked).
    pub source: String,
    /// The facts, judged by the same rules as `cutover status`.
    pub facts: Facts,
    /// Every attestation recorded for the plan, oldest first.
    pub attestations: Vec<Attestation>,
    /// The backfill's rows done, total and percent as `backfill status` shows them (once it
    /// has started).
    pub share: Option<Share>,
}

/// Reads the live state of `plan` (the control schema must exist).
pub(crate) async fn live_state(
    client: &Client,
    plan: &Plan,
    source: String,
) -> Result<LiveState, BackfillError> {
    Ok(LiveState {
        source,
        facts: Facts::load(client, plan.id()).await?,
        attestations: attestations::list(client, plan.id()).await?,
        share: match plan.spec.backfill {
            Some(_) => crate::backfill::share(client, plan).await?,
            None => None,
        },
    })
}

/// ` — now: **pass** …`: the rules' verdict on one gate item, when live state is known.
fn judged(gate: Option<&GateEvaluation>, kind: ItemKind, name: &str) -> String {
    gate.and_then(|g| g.items.iter().find(|i| i.kind == kind && i.name == name))
        .map_or(String::new(), |i| {
            format!(" — now: **{}** {}", i.outcome.as_str(), i.detail)
        })
}

/// Renders the runbook.
pub(crate) fn render(plan: &Plan, live: Option<&LiveState>) -> String {
    let mut md = String::new();
    let s = &plan.spec;
    let file = &plan.path;
    let _ = writeln!(md, "# Runbook: {} (`{}`)\n", s.title, s.id);
    let _ = writeln!(
        md,
        "- Plan file: `{file}` (sha256 `{}`) — sign-offs bind to this exact version",
        &plan.sha256()[..16]
    );
    let _ = writeln!(md, "- Environment: **{}**", s.environment);
    let _ = writeln!(md, "- Ticket: {} — author: {}", s.ticket, s.author);
    let _ = writeln!(
        md,
        "- Generated: {} UTC{}",
        Utc::now().format("%Y-%m-%d %H:%M:%S"),
        live.map_or(
            " from the plan only (no database configured: live state unknown)".to_string(),
            |l| format!(" with live state from {}", l.source)
        )
    );
    let _ = writeln!(
        md,
        "- Every statement runs with lock_timeout {} and statement_timeout {}; a DDL that keeps \
         timing out on its lock is retried at most {} times within {}.\n",
        fmt_secs(s.settings.lock_timeout.as_millis()),
        fmt_secs(s.settings.statement_timeout.as_millis()),
        s.settings.ddl_max_attempts,
        fmt_secs(s.settings.ddl_max_wait.as_millis()),
    );
    let _ = writeln!(md, "## Why\n\n{}\n", s.rationale.trim());
    roster(&mut md, plan);
    if let Some(l) = live {
        current_state(&mut md, plan, l);
    }
    preflight(&mut md, plan);
    observability(&mut md, plan, live);
    for phase in Phase::ALL {
        phase_section(&mut md, plan, phase, live);
    }
    points_of_no_return(&mut md, plan);
    checks_section(&mut md, plan);
    compat_section(&mut md, plan);
    emergency(&mut md, plan);
    md
}

fn fmt_secs(ms: u64) -> String {
    if ms.is_multiple_of(1000) {
        format!("{} s", ms / 1000)
    } else {
        format!("{} ms", ms)
    }
}

fn duties(role: &str) -> &'static str {
    match role {
        Role::LEAD => "decision owner; signs high-risk gates; may break-glass override (audited)",
        Role::APP_OWNER => "read/write path flags; confirms the old and new app versions work",
        Role::DATA_OWNER => "backfill and parity; signs data-quality gates",
        Role::SRE => "service health, metrics and alerts; executes rollbacks",
        _ => "as agreed for this migration",
    }
}

fn roster(md: &mut String, plan: &Plan) {
    let _ = writeln!(md, "## Role roster\n");
    let _ = writeln!(md, "| Role | PostgreSQL logins | Responsibility |");
    let _ = writeln!(md, "|---|---|---|");
    for (role, logins) in &plan.spec.roster {
        let _ = writeln!(
            md,
            "| {role} | {} | {} |",
            logins.join(", "),
            duties(role.as_str())
        );
    }
    let _ = writeln!(md);
}

fn current_state(md: &mut String, plan: &Plan, l: &LiveState) {
    let _ = writeln!(md, "## Current state\n");
    let _ = writeln!(md, "| Phase | State | Applied at (UTC) |");
    let _ = writeln!(md, "|---|---|---|");
    for phase in Phase::ALL {
        let row = l.facts.phase(phase);
        let _ = writeln!(
            md,
            "| {phase} | {} | {} |",
            row.state.as_str(),
            row.finished_at.map_or("—".to_string(), |t| t
                .format("%Y-%m-%d %H:%M:%S")
                .to_string())
        );
    }
    let _ = writeln!(md);
    if let Some(b) = &l.facts.backfill {
        let _ = writeln!(
            md,
            "- Backfill: **{}**{} — {}",
            b.state,
            if b.reason.is_empty() {
                String::new()
            } else {
                format!(" ({})", b.reason)
            },
            match &l.share {
                Some(s) => format!(
                    "{} done{}",
                    s.rows_text(),
                    s.percent_text()
                        .map_or(String::new(), |p| format!(" ({p})"))
                ),
                None => format!("{} rows done", crate::backfill::thousands(b.rows_done)),
            }
        );
    }
    let sha = plan.sha256();
    for o in l.facts.overrides.iter().filter(|o| o.plan_sha256 == sha) {
        let _ = writeln!(
            md,
            "- **OVERRIDE** of the {} gate by {}: {}",
            o.gate, o.login, o.reason
        );
    }
    if let Some(rs) = &plan.spec.read_switch {
        let _ = writeln!(
            md,
            "- Read-switch flag `{}`: {}",
            rs.flag,
            match l.facts.flag(&rs.flag).map(|f| f.enabled) {
                Some(true) => "**on** (reads use the new shape)",
                Some(false) => "off",
                None => "not created yet",
            }
        );
    }
    let _ = writeln!(md);
}

fn preflight(md: &mut String, plan: &Plan) {
    let f = &plan.path;
    let _ = writeln!(md, "## Before you start\n");
    let _ = writeln!(md, "1. `cutover validate {f}` — expect ``{f}: ok — plan `{}`, sha256 …`` and exit 0 (exit 2 lists each problem as `file:line:col`, lint findings included).", plan.id());
    let _ = writeln!(md, "2. `cutover rehearse {f}` — every phase's apply and rollback run in a transaction that is rolled back, timed; expect exit 0.");
    let _ = writeln!(md, "3. `cutover --metrics-addr 127.0.0.1:9187 tui {f}` (or any long-running command with `--metrics-addr`) and point Prometheus at `/metrics` — the Observability evidence is a recent scrape, or the sre's attestation of where the dashboards and alerts are (see Observability evidence below).");
    let _ = writeln!(md, "4. `cutover status {f}` — phases, the next gate with every blocker, the scorecard, sign-offs and the fastest rollback.");
    let _ = writeln!(md, "5. `cutover probe {f}` — run the readiness probes of the next gate headless; exit 0 when all pass.\n");
}

/// The Observability evidence as the rules judge it now, and every recorded attestation (who
/// attested what, where, when, for which plan version), or how to record one.
fn observability(md: &mut String, plan: &Plan, live: Option<&LiveState>) {
    let f = &plan.path;
    let owner = CategoryKind::Observability.owner();
    let how = format!(
        "the {owner} records one with `cutover attest {f} observability URL` (in the TUI: \
         `:attest observability URL`), URL being where the dashboards and alerts are; it counts \
         for this plan version only."
    );
    let _ = writeln!(
        md,
        "## Observability evidence
"
    );
    let Some(l) = live else {
        let _ = writeln!(
            md,
            "- Evidence and attestations: unknown (no database configured).\n- To attest: {how}\n"
        );
        return;
    };
    let e = scorecard::observability(plan, &l.facts);
    let _ = writeln!(md, "- Now: **{}** — {}", e.outcome.as_str(), e.detail);
    if l.attestations.is_empty() {
        let _ = writeln!(md, "- Attestations: none recorded; {how}\n");
        return;
    }
    let _ = writeln!(md, "- Attestations (oldest first):");
    let sha = plan.sha256();
    for a in &l.attestations {
        let _ = writeln!(
            md,
            "  - `{}` by **{}** ({}; {}@{}) at {}: {} — {}",
            a.category,
            a.login,
            a.role,
            a.os_user,
            a.host,
            rules::fmt_time(a.at),
            a.url,
            if a.plan_sha256 == sha {
                "for this plan version".to_string()
            } else {
                format!(
                    "for an earlier plan version (sha256 `{}`): does not count now",
                    rules::short(&a.plan_sha256)
                )
            }
        );
    }
    let _ = writeln!(md, "- To attest again: {how}\n");
}

fn probe_meaning(kind: ProbeKind) -> &'static str {
    match kind {
        ProbeKind::Lint => "no breaking DDL in expand/dual_write (squawk rules) unless acknowledged with a reason",
        ProbeKind::Compatibility => "the old app version's queries still run on the live schema (rolled back)",
        ProbeKind::ErrorBudget => "rollback ratio, deadlocks, statement latency and the app metric within budget since the read switch",
        ProbeKind::HiddenReaders => "no view, function, index, constraint, trigger, policy or recent query uses the legacy columns",
        ProbeKind::PrivilegeParity => "new columns/tables grant no broader access than the ones they replace",
        ProbeKind::BackfillComplete => "backfill state is done and a fresh count of pending rows is 0",
    }
}

fn rollback_trigger(plan: &Plan, phase: Phase) -> Vec<String> {
    let f = &plan.path;
    let eb = &plan.spec.probes.error_budget;
    match phase {
        Phase::Expand => vec![
            "Trigger: the compatibility probe fails (an old-app query breaks), or DDL exhausts its lock retries.".into(),
            "Action: revert the app change; keep the additive schema. Only if the schema itself must go: `cutover rollback {f} --phase expand --yes`.".replace("{f}", f),
        ],
        Phase::DualWrite => vec![
            "Trigger: write errors or latency on the table, or the compatibility probe fails after the trigger is in place.".into(),
            format!("Action: disable the new write path — `cutover rollback {f} --phase dual_write --yes` drops the sync trigger (expect its result message and exit 0)."),
        ],
        Phase::Backfill => {
            let mut v = vec![
                "Trigger: a parity check fails, or the backfill stays throttled (see its reason) longer than the window allows.".to_string(),
                format!("Action: `cutover backfill pause {f} --reason \"…\"`, then validate a parity snapshot with `cutover check {f}`; resume with `cutover backfill resume {f}`."),
            ];
            if let Some(b) = &plan.spec.backfill {
                let t = &b.throttle;
                v.push(format!(
                    "Automatic stop conditions (the backfill throttles itself): replay lag > {}, active backends > {}, lock waiters > {}{}{}; a signal unreadable for {} pauses it (fail closed).",
                    fmt_secs(t.max_replay_lag.as_millis()),
                    t.max_active_backends,
                    t.max_lock_waiters,
                    if t.pause_on_vacuum { ", (auto)vacuum on the table" } else { "" },
                    if t.max_wal_mib_per_second > 0.0 { format!(", WAL > {} MiB/s", t.max_wal_mib_per_second) } else { String::new() },
                    fmt_secs(t.fail_closed_after.as_millis()),
                ));
            }
            v
        }
        Phase::ReadSwitch => {
            let flag = plan
                .spec
                .read_switch
                .as_ref()
                .map_or("<flag>".to_string(), |r| r.flag.clone());
            vec![
                format!(
                    "Trigger: the error budget breaks — mean latency > {}× the baseline, rollback ratio up more than {} pp, more than {} deadlock(s){}.",
                    eb.max_latency_ratio,
                    eb.max_rollback_increase_pp,
                    eb.max_deadlocks,
                    match (&eb.metric_query, eb.metric_max) {
                        (Some(_), Some(max)) => format!(", or the app metric above {max}"),
                        _ => String::new(),
                    }
                ),
                format!("Action: flip reads back at once — `cutover flag set {flag} off` (expect `flag {flag} is now off`); or `cutover rollback {f} --phase read_switch --yes`."),
            ]
        }
        Phase::Contract => vec![
            "No rollback: contract is the point of no return. Stop BEFORE it if any reader of the old shape remains.".into(),
        ],
    }
}

fn phase_section(md: &mut String, plan: &Plan, phase: Phase, live: Option<&LiveState>) {
    let spec = plan.phase(phase);
    let n = phase.index() + 1;
    let _ = writeln!(
        md,
        "## {n}. {phase}{}\n",
        if spec.irreversible {
            " — POINT OF NO RETURN"
        } else {
            ""
        }
    );
    if !spec.description.is_empty() {
        let _ = writeln!(md, "{}\n", spec.description.trim());
    }
    let verdict = live.map(|l| rules::gate::evaluate(plan, &l.facts, phase));
    if let Some(l) = live {
        let _ = writeln!(md, "Live: **{}**\n", l.facts.state(phase));
    }
    gate_section(md, plan, phase, verdict.as_ref());
    apply_section(md, plan, phase);
    stop_section(md, plan, phase);
}

/// What must hold before the phase is applied, with the live result of each item when known.
fn gate_section(md: &mut String, plan: &Plan, phase: Phase, verdict: Option<&GateEvaluation>) {
    let f = &plan.path;
    let gate = plan.gate(phase);
    let _ = writeln!(md, "### Gate (must hold before applying)\n");
    let mut any = false;
    if let Some(prev) = phase.prev() {
        let _ = writeln!(md, "- {prev} is applied");
    }
    if let Some(observe) = gate.observe {
        any = true;
        let _ = writeln!(
            md,
            "- Observation window: at least {} since {} was applied",
            fmt_secs(observe.as_millis()),
            phase
                .prev()
                .map_or("the start".to_string(), |p| p.to_string())
        );
    }
    for c in &gate.checks {
        any = true;
        let desc = plan.check(c).map_or("", |c| c.description.as_str());
        let live_result = judged(verdict, ItemKind::Check, c);
        let _ = writeln!(
            md,
            "- Check `{c}`: {desc} — `cutover check {f} --name {c}` (expect PASS, exit 0){live_result}"
        );
    }
    for p in &gate.probes {
        any = true;
        let live_result = judged(verdict, ItemKind::Probe, p.as_str());
        let _ = writeln!(md, "- Probe `{p}`: {}{live_result}", probe_meaning(*p));
    }
    for role in &gate.signoffs {
        any = true;
        let signed = judged(verdict, ItemKind::Signoff, role.as_str());
        let _ = writeln!(
            md,
            "- Sign-off by **{role}**: `cutover signoff {f} --gate {phase} --role {role}`{signed}"
        );
    }
    if !gate.probes.is_empty() {
        let _ = writeln!(
            md,
            "- Run the probes now: `cutover probe {f} --gate {phase}` (exit 0 when all pass, 2 otherwise)"
        );
    }
    if !any {
        let _ = writeln!(md, "- nothing beyond phase order");
    }
    let _ = writeln!(md);
}

/// The command that applies the phase, its SQL and the locks that SQL takes.
fn apply_section(md: &mut String, plan: &Plan, phase: Phase) {
    let f = &plan.path;
    let spec = plan.phase(phase);
    let _ = writeln!(md, "### Apply\n");
    let _ = writeln!(
        md,
        "`cutover advance {f} --phase {phase}` — expect exit 0 and `{phase} applied`; exit 2 prints each blocker (`✗ …`) and changes nothing."
    );
    if phase == Phase::Backfill {
        let _ = writeln!(md, "\nThen `cutover backfill run {f}` until it reports done; watch `cutover backfill status {f}` (state, reason, progress, ETA).");
    }
    if phase == Phase::ReadSwitch {
        if let Some(rs) = &plan.spec.read_switch {
            let _ = writeln!(
                md,
                "\nThis turns on flag `{}`; the error-budget baseline is taken just before.",
                rs.flag
            );
        }
    }
    let stmts = split_statements(&spec.apply);
    if !stmts.is_empty() {
        let _ = writeln!(md, "\n```sql\n{}\n```", spec.apply.trim());
        let locks: Vec<String> = stmts
            .iter()
            .filter_map(|s| {
                lint::lock_level(&s.text).map(|l| {
                    format!(
                        "  - `{}` takes {l}",
                        s.text.lines().next().unwrap_or("").trim()
                    )
                })
            })
            .collect();
        if !locks.is_empty() {
            let _ = writeln!(md, "\nLocks:\n{}", locks.join("\n"));
        }
    }
    let _ = writeln!(md);
}

/// When to stop, and how to roll the phase back.
fn stop_section(md: &mut String, plan: &Plan, phase: Phase) {
    let spec = plan.phase(phase);
    let _ = writeln!(md, "### Stop conditions and rollback\n");
    let _ = writeln!(
        md,
        "- Stop if the gate reports any Fail or Inconclusive, or a statement exhausts its lock retries (the phase is then left unapplied)."
    );
    for line in rollback_trigger(plan, phase) {
        let _ = writeln!(md, "- {line}");
    }
    match (&spec.rollback, spec.irreversible) {
        (_, true) => {}
        (Some(sql), false) if !sql.trim().is_empty() => {
            let _ = writeln!(md, "\nRollback SQL:\n\n```sql\n{}\n```", sql.trim());
        }
        _ => {
            let _ = writeln!(
                md,
                "- Rollback SQL: none needed (nothing to undo in the schema)"
            );
        }
    }
    if let Some(next) = phase.next() {
        if let Some(observe) = plan.gate(next).observe {
            let _ = writeln!(
                md,
                "\n**Observe** for at least {} before {next}.",
                fmt_secs(observe.as_millis())
            );
        }
    }
    let _ = writeln!(md);
}

fn points_of_no_return(md: &mut String, plan: &Plan) {
    let _ = writeln!(md, "## Points of no return\n");
    let irreversible: Vec<Phase> = Phase::ALL
        .into_iter()
        .filter(|p| plan.phase(*p).irreversible)
        .collect();
    if irreversible.is_empty() {
        let _ = writeln!(md, "None: every phase can be rolled back.\n");
        return;
    }
    for p in irreversible {
        let _ = writeln!(
            md,
            "- **{p}** cannot be rolled back: {} Its gate requires: {}.",
            plan.phase(p).description.trim(),
            gate_summary(plan, p)
        );
    }
    let _ = writeln!(md);
}

fn gate_summary(plan: &Plan, phase: Phase) -> String {
    let g = plan.gate(phase);
    let mut parts: Vec<String> = Vec::new();
    parts.extend(g.checks.iter().map(|c| format!("check {c}")));
    parts.extend(g.probes.iter().map(|p| format!("probe {p}")));
    parts.extend(g.signoffs.iter().map(|r| format!("sign-off {r}")));
    if let Some(o) = g.observe {
        parts.push(format!("{} observation", fmt_secs(o.as_millis())));
    }
    if parts.is_empty() {
        "nothing".to_string()
    } else {
        parts.join(", ")
    }
}

fn check_sql(c: &CheckSpec) -> Option<String> {
    match &c.kind {
        CheckKind::Invariant { sql, .. } => Some(sql.clone()),
        CheckKind::GoldenQuery { query } => Some(query.clone()),
        CheckKind::ExpressionParity {
            table,
            column,
            expression,
            filter,
            ..
        } => Some(format!(
            "SELECT count(*) FROM {table} WHERE {column} IS DISTINCT FROM ({expression}){}",
            filter
                .as_ref()
                .map_or(String::new(), |f| format!(" AND ({f})"))
        )),
        _ => None,
    }
}

fn checks_section(md: &mut String, plan: &Plan) {
    let _ = writeln!(md, "## Validation queries and checks\n");
    if plan.spec.checks.is_empty() {
        let _ = writeln!(md, "The plan defines no checks.\n");
        return;
    }
    for c in &plan.spec.checks {
        let _ = writeln!(
            md,
            "- `{}` ({}) — {}",
            c.name,
            c.kind.name(),
            if c.description.is_empty() {
                "no description"
            } else {
                &c.description
            }
        );
        if let Some(sql) = check_sql(c) {
            let _ = writeln!(md, "\n  ```sql\n  {}\n  ```\n", sql.trim());
        }
    }
    let _ = writeln!(
        md,
        "\nRun all: `cutover check {}` (exit 0 when all pass).\n",
        plan.path
    );
}

fn compat_section(md: &mut String, plan: &Plan) {
    let queries = &plan.spec.probes.compatibility.queries;
    if queries.is_empty() {
        return;
    }
    let _ = writeln!(md, "## Old app version's queries (compatibility probe)\n");
    for q in queries {
        let _ = writeln!(
            md,
            "- {}: `{}`{}",
            q.name,
            q.sql.trim(),
            if q.params.is_empty() {
                String::new()
            } else {
                format!(" with ({})", q.params.join(", "))
            }
        );
    }
    let _ = writeln!(md);
}

fn emergency(md: &mut String, plan: &Plan) {
    let f = &plan.path;
    let _ = writeln!(md, "## Emergency\n");
    if let Some(rs) = &plan.spec.read_switch {
        let _ = writeln!(
            md,
            "- Fastest rollback after the read switch: `cutover flag set {} off` — reads go back to the old shape at once.",
            rs.flag
        );
    }
    let _ = writeln!(
        md,
        "- Pause heavy work: `cutover backfill pause {f} --reason \"…\"`."
    );
    let _ = writeln!(md, "- Roll back everything that is reversible: `cutover rollback {f} --phase expand --yes` (stops at an irreversible phase).");
    let _ = writeln!(md, "- Break-glass (lead only, audited forever): `cutover override {f} --gate <phase> --reason \"…\"`.");
    let _ = writeln!(
        md,
        "- Verify the audit trail afterwards: `cutover audit verify`."
    );
}
