//! Breaking-DDL lint of the expand and dual_write SQL, with squawk's PostgreSQL rules, plus
//! live-catalog facts (table size, row estimate, current column types, the lock each statement
//! takes).
//!
//! A finding blocks the gate unless the plan acknowledges it (`[[probes.lint.acknowledge]]`
//! rule/phase/reason) or Cutover's runner makes it moot (timeouts, CONCURRENTLY outside the
//! phase transaction) — such findings are acknowledged automatically and say so.

use std::str::FromStr;

use serde_json::json;
use squawk_linter::{Linter, Rule, Version};
use squawk_syntax::SourceFile;
use tokio_postgres::Client;
use toml::de::DeTable;

use super::scratch::{self, Scope};
use super::{Probe, ProbeContext, ProbeFuture, ProbeResult};
use crate::control::audit::{self, Actor, AuditAction, NewEntry};
use crate::outcome::Outcome;
use crate::plan::diagnostic::{line_col, offset_of, Seg};
use crate::plan::{Phase, Plan};
use crate::sql::quote_qualified;
use crate::sql::split_statements;

/// The phases whose SQL is linted.
pub(crate) const LINTED_PHASES: [Phase; 2] = [Phase::Expand, Phase::DualWrite];

/// Who accepted a finding.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum AckSource {
    /// The plan's `[[probes.lint.acknowledge]]`.
    Plan,
    /// Cutover's runner makes the finding moot.
    Runner,
}

/// Why a finding does not block.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Ack {
    /// Plan or runner.
    pub source: AckSource,
    /// The reason given.
    pub reason: String,
}

/// One lint finding.
#[derive(Debug, Clone)]
pub(crate) struct Finding {
    /// Phase whose SQL has the finding.
    pub phase: Phase,
    /// squawk rule code, e.g. `ban-drop-column`.
    pub rule: String,
    /// What is wrong.
    pub message: String,
    /// How to do it safely.
    pub help: Option<String>,
    /// Byte offset of the finding in the phase's SQL.
    pub offset: usize,
    /// The statement's text.
    pub statement: String,
    /// Set when the finding is accepted.
    pub ack: Option<Ack>,
}

impl Finding {
    /// True when the finding blocks the gate.
    pub(crate) fn blocks(&self) -> bool {
        self.ack.is_none()
    }

    /// `file:line:col: [rule] message` (the position in the plan file when it can be mapped).
    pub(crate) fn located(&self, plan: &Plan) -> String {
        let (line, col) = position_in_plan(plan, self.phase, self.offset);
        let mut s = format!(
            "{}:{line}:{col}: [{}] {} ({} SQL)",
            plan.path, self.rule, self.message, self.phase
        );
        match &self.ack {
            Some(ack) => s.push_str(&format!(
                "\n  acknowledged ({}): {}",
                match ack.source {
                    AckSource::Plan => "plan",
                    AckSource::Runner => "runner",
                },
                ack.reason
            )),
            None => {
                if let Some(help) = &self.help {
                    s.push_str(&format!("\n  help: {help}"));
                }
                s.push_str(&format!(
                    "\n  hint: fix the SQL, or accept it with [[probes.lint.acknowledge]] rule = \"{}\", phase = \"{}\", reason = \"…\"",
                    self.rule, self.phase
                ));
            }
        }
        s
    }
}

/// Rules made moot by how Cutover runs phase SQL, with the reason.
fn runner_ack(rule: Rule) -> Option<&'static str> {
    match rule {
        Rule::RequireLockTimeout | Rule::RequireStatementTimeout | Rule::RequireTimeoutSettings => {
            Some("Cutover's DDL runner sets lock_timeout and statement_timeout (plan [settings]) on every statement and retries lock timeouts with bounded backoff")
        }
        Rule::BanConcurrentIndexCreationInTransaction => Some(
            "Cutover's runner executes CONCURRENTLY statements on their own, outside the phase transaction",
        ),
        _ => None,
    }
}

/// Lints the expand and dual_write SQL of `plan` for PostgreSQL `pg_major` (15 when unknown).
pub(crate) fn lint_plan(plan: &Plan, pg_major: Option<i32>) -> Vec<Finding> {
    LINTED_PHASES
        .iter()
        .flat_map(|&phase| lint_phase(plan, phase, pg_major))
        .collect()
}

fn lint_phase(plan: &Plan, phase: Phase, pg_major: Option<i32>) -> Vec<Finding> {
    let sql = &plan.phase(phase).apply;
    if sql.trim().is_empty() {
        return Vec::new();
    }
    let parse = SourceFile::parse(sql);
    let mut linter = Linter::from(
        Linter::with_default_rules()
            .rules
            .into_iter()
            .chain([Rule::RequireTimeoutSettings]),
    );
    // The runner applies a phase's statements in one transaction.
    linter.settings.assume_in_transaction = true;
    if let Some(v) = pg_major.and_then(|m| Version::from_str(&m.to_string()).ok()) {
        linter.settings.pg_version = v;
    }
    let statements = split_statements(sql);
    linter
        .lint(&parse, sql)
        .into_iter()
        .map(|v| {
            let offset = usize::from(v.text_range.start());
            let rule = v.code.to_string();
            let statement = statements
                .iter()
                .rev()
                .find(|s| s.offset <= offset)
                .map(|s| s.text.clone())
                .unwrap_or_default();
            let ack = plan
                .spec
                .probes
                .lint
                .acknowledge
                .iter()
                .find(|a| a.phase == phase && a.rule == rule)
                .map(|a| Ack {
                    source: AckSource::Plan,
                    reason: a.reason.clone(),
                })
                .or_else(|| {
                    runner_ack(v.code).map(|r| Ack {
                        source: AckSource::Runner,
                        reason: r.to_string(),
                    })
                });
            Finding {
                phase,
                rule,
                message: v.message,
                help: v.help,
                offset,
                statement,
                ack,
            }
        })
        .collect()
}

/// What `cutover validate` prints about a plan's SQL.
#[derive(Debug, Default)]
pub struct ValidateReport {
    /// Lines to print: blocking findings, plan-acknowledged findings, stale acknowledgements.
    pub lines: Vec<String>,
    /// Findings nobody acknowledged.
    pub blocking: usize,
}

/// Lints `plan` for `cutover validate`: blocking findings located as `file:line:col: [rule]
/// message`, plan-acknowledged ones with their reason (runner-acknowledged ones are left to the
/// probe's evidence), and acknowledgements that match nothing.
pub fn validate_report(plan: &Plan) -> ValidateReport {
    let findings = lint_plan(plan, None);
    let mut report = ValidateReport::default();
    for f in &findings {
        match &f.ack {
            Some(a) if a.source == AckSource::Runner => {}
            _ => report.lines.push(f.located(plan)),
        }
        if f.blocks() {
            report.blocking += 1;
        }
    }
    report.lines.extend(
        unused_acks(plan, &findings)
            .into_iter()
            .map(|w| format!("warning: {w}")),
    );
    report
}

/// Acknowledgements in the plan that match no finding (stale or misspelt), as messages.
pub(crate) fn unused_acks(plan: &Plan, findings: &[Finding]) -> Vec<String> {
    plan.spec
        .probes
        .lint
        .acknowledge
        .iter()
        .filter(|a| {
            !findings
                .iter()
                .any(|f| f.phase == a.phase && f.rule == a.rule)
        })
        .map(|a| {
            let known = Rule::from_str(&a.rule).is_ok();
            format!(
                "{}: lint acknowledgement `{}` for {} matches no finding{}",
                plan.path,
                a.rule,
                a.phase,
                if known {
                    ""
                } else {
                    " (not a squawk rule name)"
                }
            )
        })
        .collect()
}

/// Maps an offset in a phase's SQL to (line, col) in the plan file, through the TOML string's
/// quoting and escapes.
pub(crate) fn position_in_plan(plan: &Plan, phase: Phase, offset: usize) -> (usize, usize) {
    let Ok(root) = DeTable::parse(&plan.source) else {
        return (1, 1);
    };
    let path = [
        Seg::from("phases"),
        Seg::from(phase.as_str()),
        Seg::from("apply"),
    ];
    line_col(
        &plan.source,
        offset_of(&plan.source, &root, &path, Some(offset)),
    )
}

/// The lock a statement takes on the table it names, from PostgreSQL's documented lock levels.
pub(crate) fn lock_level(statement: &str) -> Option<&'static str> {
    let up = format!(
        " {} ",
        statement
            .split_whitespace()
            .collect::<Vec<_>>()
            .join(" ")
            .to_uppercase()
    );
    let level = if up.starts_with(" CREATE INDEX CONCURRENTLY")
        || up.starts_with(" CREATE UNIQUE INDEX CONCURRENTLY")
        || up.starts_with(" DROP INDEX CONCURRENTLY")
        || up.starts_with(" REINDEX") && up.contains(" CONCURRENTLY ")
    {
        "SHARE UPDATE EXCLUSIVE"
    } else if up.starts_with(" CREATE INDEX") || up.starts_with(" CREATE UNIQUE INDEX") {
        "SHARE (blocks writes for the whole build)"
    } else if up.starts_with(" ALTER TABLE") {
        if up.contains(" VALIDATE CONSTRAINT ") {
            "SHARE UPDATE EXCLUSIVE"
        } else if (up.contains(" FOREIGN KEY ") || up.contains(" REFERENCES "))
            && !up.contains(" DROP ")
        {
            "SHARE ROW EXCLUSIVE (on both tables)"
        } else if (up.contains(" ADD COLUMN ") || up.contains(" DROP COLUMN "))
            && !up.contains(" DEFAULT ")
            && !up.contains(" GENERATED ")
            && !up.contains(" TYPE ")
        {
            "ACCESS EXCLUSIVE (held briefly: a catalog-only change, no table rewrite)"
        } else {
            "ACCESS EXCLUSIVE (blocks reads and writes)"
        }
    } else if up.starts_with(" CREATE TRIGGER") || up.starts_with(" CREATE OR REPLACE TRIGGER") {
        "SHARE ROW EXCLUSIVE"
    } else if up.starts_with(" DROP TRIGGER")
        || up.starts_with(" DROP TABLE")
        || up.starts_with(" DROP INDEX")
        || up.starts_with(" TRUNCATE")
        || up.starts_with(" VACUUM FULL")
        || up.starts_with(" CLUSTER")
    {
        "ACCESS EXCLUSIVE (blocks reads and writes)"
    } else if up.starts_with(" UPDATE") || up.starts_with(" DELETE") || up.starts_with(" INSERT") {
        "ROW EXCLUSIVE (plus row locks)"
    } else {
        return None;
    };
    Some(level)
}

/// The existing table a statement acts on (`ALTER TABLE t`, `… ON t`), as written.
pub(crate) fn target_table(statement: &str) -> Option<String> {
    let words: Vec<&str> = statement.split_whitespace().collect();
    let upper: Vec<String> = words.iter().map(|w| w.to_uppercase()).collect();
    let skip = ["IF", "EXISTS", "ONLY", "NOT"];
    let after = |i: usize| -> Option<String> {
        words
            .iter()
            .zip(&upper)
            .skip(i)
            .find(|(_, u)| !skip.contains(&u.as_str()))
            .map(|(w, _)| w.trim_end_matches(['(', ';']).to_string())
    };
    if upper.len() > 2 && upper[0] == "ALTER" && upper[1] == "TABLE" {
        return after(2);
    }
    if upper.first().is_some_and(|w| w == "CREATE" || w == "DROP") {
        if let Some(i) = upper.iter().position(|w| w == "ON") {
            return after(i + 1);
        }
    }
    None
}

/// Facts from the live catalog about the tables the linted SQL touches.
async fn catalog_facts(client: &Client, plan: &Plan) -> Vec<String> {
    let mut out = Vec::new();
    for phase in LINTED_PHASES {
        for stmt in split_statements(&plan.phase(phase).apply) {
            let Some(lock) = lock_level(&stmt.text) else {
                continue;
            };
            let head = first_line(&stmt.text);
            let Some(table) = target_table(&stmt.text) else {
                out.push(format!("{phase}: `{head}` takes {lock}"));
                continue;
            };
            let facts = table_facts(client, &table, &stmt.text).await;
            out.push(format!("{phase}: `{head}` takes {lock} on {table}{facts}"));
        }
    }
    out
}

async fn table_facts(client: &Client, table: &str, statement: &str) -> String {
    let name = if table.contains('"') {
        table.to_string()
    } else {
        quote_qualified(table)
    };
    let rows = scratch::optional_query(
        client,
        "SELECT c.reltuples::bigint AS estimate,
                pg_size_pretty(pg_total_relation_size(c.oid)) AS size,
                coalesce((SELECT string_agg(a.attname || ' ' || format_type(a.atttypid, a.atttypmod)
                                            || CASE WHEN a.attnotnull THEN ' NOT NULL' ELSE '' END,
                                            ', ' ORDER BY a.attnum)
                            FROM pg_attribute a
                           WHERE a.attrelid = c.oid AND a.attnum > 0 AND NOT a.attisdropped
                             AND position(lower(a.attname) IN lower($2)) > 0), '') AS columns
           FROM pg_class c WHERE c.oid = to_regclass($1)",
        &[&name, &statement],
    )
    .await;
    match rows.as_deref() {
        Ok([row]) => {
            let estimate: i64 = row.get("estimate");
            let size: String = row.get("size");
            let cols: String = row.get("columns");
            let estimate = if estimate < 0 {
                "never analyzed".to_string()
            } else {
                format!("~{estimate} rows")
            };
            let cols = if cols.is_empty() {
                String::new()
            } else {
                format!("; current columns: {cols}")
            };
            format!(" ({estimate}, {size}{cols})")
        }
        Ok(_) => " (the table does not exist yet)".to_string(),
        Err(e) => format!(
            " (catalog facts unavailable: {})",
            crate::db::describe_error(e)
        ),
    }
}

fn first_line(s: &str) -> String {
    let line = s.lines().next().unwrap_or("").trim();
    if line.chars().count() > 90 {
        format!("{}…", line.chars().take(90).collect::<String>())
    } else {
        line.to_string()
    }
}

/// The server's major version.
async fn server_major(client: &Client) -> Option<i32> {
    let row = client
        .query_one(
            "SELECT current_setting('server_version_num')::int AS version",
            &[],
        )
        .await
        .ok()?;
    Some(row.get::<_, i32>("version") / 10_000)
}

/// Appends one audit entry per acknowledged finding, once per plan version and gate.
async fn audit_acknowledged(
    client: &Client,
    plan: &Plan,
    gate: Phase,
    findings: &[Finding],
) -> Result<(), tokio_postgres::Error> {
    let acked: Vec<serde_json::Value> = findings
        .iter()
        .filter_map(|f| {
            f.ack.as_ref().map(|a| {
                json!({
                    "rule": f.rule,
                    "phase": f.phase.as_str(),
                    "by": match a.source { AckSource::Plan => "plan", AckSource::Runner => "runner" },
                    "reason": a.reason,
                    "statement": first_line(&f.statement),
                })
            })
        })
        .collect();
    if acked.is_empty() {
        return Ok(());
    }
    let scope = Scope::enter(client).await?;
    let already = audit::recorded(
        client,
        plan.id(),
        &plan.sha256(),
        AuditAction::LintAcknowledged,
        gate,
    )
    .await?;
    if !already {
        let actor = match Actor::current(client).await {
            Ok(a) => a,
            Err(_) => {
                return scope.rollback(client).await;
            }
        };
        let entry = NewEntry {
            actor: &actor,
            plan_id: plan.id(),
            plan_sha256: &plan.sha256(),
            action: AuditAction::LintAcknowledged,
            phase: Some(gate),
            details: json!({ "findings": acked }),
        };
        if audit::append(client, entry).await.is_err() {
            return scope.rollback(client).await;
        }
    }
    scope.commit(client).await
}

/// The lint probe.
pub(crate) struct LintProbe;

impl Probe for LintProbe {
    fn name(&self) -> &'static str {
        "lint"
    }

    fn evaluate<'a>(&'a self, ctx: &'a ProbeContext<'a>) -> ProbeFuture<'a> {
        Box::pin(async move {
            let findings = lint_plan(ctx.plan, server_major(ctx.client).await);
            let facts = match Scope::enter(ctx.client).await {
                Ok(scope) => {
                    let facts = catalog_facts(ctx.client, ctx.plan).await;
                    let _ = scope.rollback(ctx.client).await;
                    facts
                }
                Err(e) => vec![format!(
                    "catalog facts unavailable: {}",
                    crate::db::describe_error(&e)
                )],
            };
            let audit_note =
                match audit_acknowledged(ctx.client, ctx.plan, ctx.gate, &findings).await {
                    Ok(()) => None,
                    Err(e) => Some(format!(
                        "could not audit the acknowledged findings: {}",
                        crate::db::describe_error(&e)
                    )),
                };
            judge(ctx.plan, &findings, facts, audit_note)
        })
    }
}

fn judge(
    plan: &Plan,
    findings: &[Finding],
    facts: Vec<String>,
    audit_note: Option<String>,
) -> ProbeResult {
    let blocking = findings.iter().filter(|f| f.blocks()).count();
    let acked = findings.len() - blocking;
    let mut evidence = Vec::new();
    for f in findings {
        let (line, col) = position_in_plan(plan, f.phase, f.offset);
        let status = match &f.ack {
            None => "BLOCKS".to_string(),
            Some(a) => format!(
                "acknowledged by {}: {}",
                match a.source {
                    AckSource::Plan => "the plan",
                    AckSource::Runner => "the runner",
                },
                a.reason
            ),
        };
        evidence.push(format!(
            "[{}] {} — {} SQL, line {line}:{col}: `{}` — {status}",
            f.rule,
            f.message,
            f.phase,
            first_line(&f.statement)
        ));
    }
    evidence.extend(facts);
    // An unaudited acknowledgement must not pass silently.
    let outcome = if blocking > 0 {
        Outcome::Fail
    } else if audit_note.is_some() && acked > 0 {
        Outcome::Inconclusive
    } else {
        Outcome::Pass
    };
    evidence.extend(audit_note);
    let summary = match outcome {
        Outcome::Fail => {
            format!("{blocking} breaking-DDL finding(s) not acknowledged ({acked} acknowledged)")
        }
        Outcome::Pass if findings.is_empty() => {
            "no breaking DDL in the expand and dual_write SQL".to_string()
        }
        Outcome::Pass => format!("{acked} finding(s), all acknowledged and audited"),
        Outcome::Inconclusive => "acknowledged findings could not be audited".to_string(),
    };
    ProbeResult {
        name: "lint".to_string(),
        outcome,
        summary,
        evidence,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn plan_with(expand: &str, extra: &str) -> Plan {
        let src = format!(
            r#"id = "t"
title = "t"
rationale = "r"
author = "a"
ticket = "x"
[roster]
lead = ["postgres"]
[phases.expand]
apply = """
{expand}"""
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
flag = "f"
{extra}
"#
        );
        Plan::parse("t.toml", &src).unwrap()
    }

    #[test]
    fn flags_drop_column_and_plain_index_with_positions() {
        let plan = plan_with(
            "ALTER TABLE accounts DROP COLUMN balance;\nCREATE INDEX accounts_owner ON accounts (owner);\n",
            "",
        );
        let findings = lint_plan(&plan, Some(15));
        let blocking: Vec<&str> = findings
            .iter()
            .filter(|f| f.blocks())
            .map(|f| f.rule.as_str())
            .collect();
        assert!(blocking.contains(&"ban-drop-column"), "{findings:?}");
        assert!(
            blocking.contains(&"require-concurrent-index-creation"),
            "{findings:?}"
        );
        let index = findings
            .iter()
            .find(|f| f.rule == "require-concurrent-index-creation")
            .unwrap();
        // expand SQL starts on line 10 of the generated plan; the index is its second line.
        assert_eq!(position_in_plan(&plan, Phase::Expand, index.offset).0, 11);
        assert!(index.located(&plan).starts_with("t.toml:11:"));
    }

    #[test]
    fn additive_expand_passes_and_timeouts_are_runner_acknowledged() {
        let plan = plan_with(
            "ALTER TABLE accounts ADD COLUMN balance_cents bigint;\n",
            "",
        );
        let findings = lint_plan(&plan, Some(15));
        assert!(findings.iter().all(|f| !f.blocks()), "{findings:?}");
        assert!(findings
            .iter()
            .all(|f| f.ack.as_ref().unwrap().source == AckSource::Runner));
    }

    #[test]
    fn plan_acknowledgement_stops_blocking() {
        let plan = plan_with(
            "ALTER TABLE accounts DROP COLUMN balance;\n",
            "[[probes.lint.acknowledge]]\nrule = \"ban-drop-column\"\nphase = \"expand\"\nreason = \"column unused since v3\"\n",
        );
        let findings = lint_plan(&plan, Some(15));
        let f = findings
            .iter()
            .find(|f| f.rule == "ban-drop-column")
            .unwrap();
        assert_eq!(f.ack.as_ref().unwrap().source, AckSource::Plan);
        assert!(unused_acks(&plan, &findings).is_empty());
    }

    #[test]
    fn lock_levels_and_targets() {
        assert_eq!(
            lock_level("create index concurrently i on t (a)"),
            Some("SHARE UPDATE EXCLUSIVE")
        );
        assert!(lock_level("ALTER TABLE t ADD COLUMN a int")
            .unwrap()
            .starts_with("ACCESS EXCLUSIVE"));
        assert_eq!(
            target_table("ALTER TABLE IF EXISTS ONLY public.t ADD COLUMN a int").as_deref(),
            Some("public.t")
        );
        assert_eq!(
            target_table("CREATE TRIGGER x BEFORE INSERT ON public.accounts FOR EACH ROW")
                .as_deref(),
            Some("public.accounts")
        );
    }
}
