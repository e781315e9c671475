//! Hidden-reader census for the contract gate: who still uses each legacy column?
//!
//! Signals, combined because none alone is complete: catalog dependents (`pg_depend`: views,
//! materialized views, indexes, constraints, triggers, generated columns, policies; plus
//! `information_schema.view_column_usage`), functions whose source mentions the column
//! (`pg_proc.prosrc`), `pg_stat_statements` query texts that ran since the read switch, and the
//! scan counters of indexes on the column. Objects the plan itself creates in expand/dual_write
//! and drops in contract (its sync trigger and function) are not readers. A statement that ran
//! since the read switch but whose call count has not moved for the contract gate's
//! observation window has drained (an old app version rolled away) and no longer blocks; each
//! census stores the counts it saw (`cutover.census_samples`) for the next one to compare with.

use std::collections::BTreeMap;

use chrono::{DateTime, Utc};
use tokio_postgres::Client;

use super::scratch::{self, Scope};
use super::snapshot::{self, Snapshot};
use super::{Probe, ProbeContext, ProbeFuture, ProbeResult};
use crate::control::census::Sample;
use crate::db::{describe_error, DbError};
use crate::outcome::Outcome;
use crate::plan::{Phase, Plan};
use crate::sql::quote_qualified;
use crate::sql::split_statements;

/// What the census found for one legacy column.
#[derive(Debug, Clone, Default)]
pub(crate) struct ColumnCensus {
    /// The column as written in the plan.
    pub column: String,
    /// Each dependent, by name, that blocks contract.
    pub blockers: Vec<String>,
    /// Measurements and notes that do not block.
    pub notes: Vec<String>,
}

/// The hidden-reader probe.
pub(crate) struct HiddenReadersProbe;

impl Probe for HiddenReadersProbe {
    fn name(&self) -> &'static str {
        "hidden_readers"
    }

    fn evaluate<'a>(&'a self, ctx: &'a ProbeContext<'a>) -> ProbeFuture<'a> {
        Box::pin(async move {
            let columns = &ctx.plan.spec.probes.hidden_readers.columns;
            if columns.is_empty() {
                return ProbeResult::inconclusive(
                    "hidden_readers",
                    "the plan lists no legacy columns ([probes.hidden_readers] columns)",
                );
            }
            let scope = match Scope::enter(ctx.client).await {
                Ok(s) => s,
                Err(e) => {
                    return ProbeResult::inconclusive("hidden_readers", describe_error(&e));
                }
            };
            let result = census(ctx.client, ctx.plan).await;
            let _ = scope.rollback(ctx.client).await;
            match result {
                Ok(done) => {
                    if let Some((sample, keep_after)) = &done.sample {
                        if let Err(e) =
                            store_sample(ctx.client, ctx.plan, sample, *keep_after).await
                        {
                            tracing::warn!("could not record the census sample: {e}");
                        }
                    }
                    judge(done.found, done.window)
                }
                Err(e) => {
                    ProbeResult::inconclusive("hidden_readers", format!("census failed: {e}"))
                }
            }
        })
    }
}

/// Names of functions and triggers the plan creates (expand/dual_write) and its contract drops.
fn plan_owned(plan: &Plan) -> Vec<String> {
    let created = [Phase::Expand, Phase::DualWrite]
        .iter()
        .flat_map(|p| split_statements(&plan.phase(*p).apply))
        .filter_map(|s| object_name(&s.text, "CREATE"));
    let dropped: Vec<String> = split_statements(&plan.phase(Phase::Contract).apply)
        .iter()
        .filter_map(|s| object_name(&s.text, "DROP"))
        .collect();
    created.filter(|n| dropped.contains(n)).collect()
}

/// For `CREATE [OR REPLACE] FUNCTION|TRIGGER name` / `DROP FUNCTION|TRIGGER [IF EXISTS] name`,
/// the unqualified lower-case name.
fn object_name(statement: &str, verb: &str) -> Option<String> {
    let words: Vec<String> = statement
        .split_whitespace()
        .map(|w| w.to_string())
        .collect();
    let upper: Vec<String> = words.iter().map(|w| w.to_uppercase()).collect();
    if upper.first().map(String::as_str) != Some(verb) {
        return None;
    }
    let kind = upper
        .iter()
        .position(|w| w == "FUNCTION" || w == "TRIGGER" || w == "PROCEDURE")?;
    let name = words
        .iter()
        .zip(&upper)
        .skip(kind + 1)
        .find(|(_, u)| !matches!(u.as_str(), "IF" | "EXISTS"))?
        .0;
    let name = name.split('(').next().unwrap_or(name);
    let name = name.rsplit('.').next().unwrap_or(name);
    Some(name.trim_matches('"').to_lowercase())
}

/// What one census found, and the call counts to remember for the next one.
struct Census {
    found: Vec<ColumnCensus>,
    window: String,
    /// The reader statements' call counts now, and the time before which older samples can go.
    sample: Option<(Sample, DateTime<Utc>)>,
}

/// Records `sample` (its own savepoint, committed: the census itself is rolled back).
async fn store_sample(
    client: &Client,
    plan: &Plan,
    sample: &Sample,
    keep_after: DateTime<Utc>,
) -> Result<(), DbError> {
    let scope = Scope::enter(client).await?;
    match crate::control::census::store(client, plan.id(), sample, keep_after).await {
        Ok(()) => Ok(scope.commit(client).await?),
        Err(e) => {
            scope.rollback(client).await?;
            Err(e)
        }
    }
}

async fn census(client: &Client, plan: &Plan) -> Result<Census, DbError> {
    let owned = plan_owned(plan);
    let own_sql = snapshot::own_shapes(plan);
    let baseline = snapshot::latest(client, plan.id(), Phase::ReadSwitch).await?;
    let switched = snapshot::applied_at(client, plan.id(), Phase::ReadSwitch).await?;
    let window = match switched {
        Some(at) => format!(
            "observation window: {} s since the read switch ({})",
            (Utc::now() - at).num_seconds().max(0),
            at.format("%Y-%m-%d %H:%M:%S UTC")
        ),
        None => "observation window: the read switch is not applied, so no readers can be attributed to the time since it".to_string(),
    };
    let now = snapshot::capture(client, plan).await?;
    // A reader that ran since the switch has drained once its call count has not moved for the
    // contract gate's observation window (without a window, any call since the switch blocks).
    let drain = plan.gate(Phase::Contract).observe.map(|d| d.std());
    let earlier = match (drain, switched) {
        (Some(w), Some(since)) => {
            let cutoff = chrono::Duration::from_std(w)
                .ok()
                .and_then(|w| now.taken_at.checked_sub_signed(w));
            match cutoff {
                Some(at) => {
                    crate::control::census::newest_before(client, plan.id(), since, at).await?
                }
                None => None,
            }
        }
        _ => None,
    };
    let mut out = Vec::new();
    let mut calls = BTreeMap::new();
    for column in &plan.spec.probes.hidden_readers.columns {
        let seen = Seen {
            baseline: baseline.as_ref(),
            now: &now,
            switched,
            own_sql: &own_sql,
            earlier: earlier.as_ref(),
        };
        out.push(one_column(client, column, &owned, &seen, &mut calls).await?);
    }
    let sample = switched.map(|since| {
        let keep_after = earlier.as_ref().map_or(since, |e| e.taken_at);
        (
            Sample {
                taken_at: now.taken_at,
                calls,
            },
            keep_after,
        )
    });
    Ok(Census {
        found: out,
        window,
        sample,
    })
}

/// What the census compares against.
struct Seen<'a> {
    baseline: Option<&'a Snapshot>,
    now: &'a Snapshot,
    switched: Option<DateTime<Utc>>,
    own_sql: &'a [String],
    /// The newest earlier census at least the drain window ago.
    earlier: Option<&'a Sample>,
}

async fn one_column(
    client: &Client,
    spec: &str,
    owned: &[String],
    seen: &Seen<'_>,
    calls: &mut BTreeMap<String, i64>,
) -> Result<ColumnCensus, tokio_postgres::Error> {
    let (baseline, now) = (seen.baseline, seen.now);
    let mut c = ColumnCensus {
        column: spec.to_string(),
        ..Default::default()
    };
    let Some((table, column)) = spec.rsplit_once('.') else {
        c.blockers.push(format!(
            "`{spec}` is not `table.column` or `schema.table.column`"
        ));
        return Ok(c);
    };
    let found = client
        .query_opt(
            "SELECT c.oid, a.attnum, n.nspname::text AS schema, c.relname::text AS relname
               FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
               JOIN pg_attribute a ON a.attrelid = c.oid
              WHERE c.oid = to_regclass($1) AND a.attname = $2 AND NOT a.attisdropped",
            &[&quote_qualified(table), &column],
        )
        .await?;
    let Some(found) = found else {
        c.notes
            .push("the column no longer exists: nothing can read it".to_string());
        return Ok(c);
    };
    let oid: u32 = found.get("oid");
    let attnum = i32::from(found.get::<_, i16>("attnum"));
    let schema: String = found.get("schema");
    let relname: String = found.get("relname");

    let mut indexes = Vec::new();
    for (kind, name, index) in dependents(client, oid, attnum).await? {
        if kind == "trigger" && owned.contains(&trigger_name(&name)) {
            c.notes.push(format!(
                "ignored: {name} (created by the plan's dual_write SQL, dropped by its contract)"
            ));
            continue;
        }
        if let Some(index) = index {
            indexes.push(index);
        }
        c.blockers.push(name);
    }
    for view in view_usage(client, &schema, &relname, column).await? {
        let label = format!("view {view}");
        if !c.blockers.iter().any(|b| b.ends_with(&view) || *b == label) {
            c.blockers.push(label);
        }
    }
    for (proc_name, proname, mentions_table) in functions(client, column, &relname).await? {
        if owned.contains(&proname) {
            c.notes.push(format!(
                "ignored: function {proc_name} (created by the plan's dual_write SQL, dropped by its contract)"
            ));
            continue;
        }
        let how = if mentions_table {
            format!("its source mentions `{column}` and `{relname}`")
        } else {
            format!("its source mentions `{column}`")
        };
        c.blockers.push(format!("function {proc_name} ({how})"));
    }
    index_scans(&indexes, baseline, now, &mut c);
    statement_readers(column, &relname, seen, calls, &mut c);
    session_readers(
        client,
        column,
        &relname,
        seen.own_sql,
        seen.switched,
        &mut c,
    )
    .await?;
    Ok(c)
}

/// Sessions (other than Cutover's) whose current or most recent statement names the table and
/// the column, since the read switch when it is known — a signal that needs no extension.
async fn session_readers(
    client: &Client,
    column: &str,
    table: &str,
    own: &[String],
    since: Option<DateTime<Utc>>,
    c: &mut ColumnCensus,
) -> Result<(), tokio_postgres::Error> {
    let rows = scratch::optional_query(
        client,
        "SELECT pid, coalesce(application_name, '') AS application,
                coalesce(usename::text, '') AS login, state,
                to_char(state_change AT TIME ZONE 'UTC', 'HH24:MI:SS') AS since, query
           FROM pg_stat_activity
          WHERE datname = current_database() AND pid <> pg_backend_pid()
            AND backend_type = 'client backend'
            AND application_name NOT LIKE 'cutover/%'
            AND query ~* $1 AND query ~* $2
            AND ($3::timestamptz IS NULL OR state_change >= $3)",
        &[
            &snapshot::word_regex(column),
            &snapshot::word_regex(table),
            &since,
        ],
    )
    .await?;
    let mut found = 0;
    for r in &rows {
        let query: String = r.get("query");
        if !snapshot::is_app_statement(&query, own) {
            continue;
        }
        found += 1;
        let (pid, app, user, state, at): (i32, String, String, String, Option<String>) = (
            r.get("pid"),
            r.get("application"),
            r.get("login"),
            r.get("state"),
            r.get("since"),
        );
        c.blockers.push(format!(
            "session pid {pid} ({user}{}) {} at {}: {}",
            if app.is_empty() {
                String::new()
            } else {
                format!(", {app}")
            },
            if state == "active" {
                "is running"
            } else {
                "last ran"
            },
            at.unwrap_or_default(),
            one_line(&query)
        ));
    }
    c.notes.push(format!(
        "pg_stat_activity: {found} session(s) reading `{column}` now or as their last statement"
    ));
    Ok(())
}

fn trigger_name(description: &str) -> String {
    // "trigger NAME on table T"
    description
        .split_whitespace()
        .nth(1)
        .unwrap_or("")
        .trim_matches('"')
        .to_lowercase()
}

/// Catalog objects depending on the column: (kind, readable name, index name if an index).
async fn dependents(
    client: &Client,
    table: u32,
    attnum: i32,
) -> Result<Vec<(String, String, Option<String>)>, tokio_postgres::Error> {
    let rows = client
        .query(
            "SELECT CASE
                      WHEN d.classid = 'pg_rewrite'::regclass THEN
                           CASE v.relkind WHEN 'm' THEN 'materialized view' ELSE 'view' END
                      WHEN d.classid = 'pg_class'::regclass THEN
                           CASE k.relkind WHEN 'i' THEN 'index' WHEN 'I' THEN 'index'
                                          WHEN 'S' THEN 'sequence' ELSE 'relation' END
                      WHEN d.classid = 'pg_trigger'::regclass THEN 'trigger'
                      WHEN d.classid = 'pg_constraint'::regclass THEN 'constraint'
                      WHEN d.classid = 'pg_policy'::regclass THEN 'policy'
                      WHEN d.classid = 'pg_attrdef'::regclass THEN 'generated column'
                      ELSE 'object' END AS kind,
                    CASE
                      WHEN d.classid = 'pg_rewrite'::regclass THEN
                           CASE v.relkind WHEN 'm' THEN 'materialized view ' ELSE 'view ' END
                           || v.oid::regclass::text
                      WHEN d.classid = 'pg_attrdef'::regclass THEN
                           'generated column ' || ad.adrelid::regclass::text || '.'
                           || (SELECT quote_ident(attname) FROM pg_attribute
                                WHERE attrelid = ad.adrelid AND attnum = ad.adnum)
                      ELSE pg_describe_object(d.classid, d.objid, d.objsubid) END AS object,
                    CASE WHEN k.relkind IN ('i', 'I') THEN k.oid::regclass::text END AS index
               FROM pg_depend d
               LEFT JOIN pg_rewrite r ON d.classid = 'pg_rewrite'::regclass AND r.oid = d.objid
               LEFT JOIN pg_class v ON v.oid = r.ev_class
               LEFT JOIN pg_class k ON d.classid = 'pg_class'::regclass AND k.oid = d.objid
               LEFT JOIN pg_attrdef ad ON d.classid = 'pg_attrdef'::regclass AND ad.oid = d.objid
              WHERE d.refclassid = 'pg_class'::regclass AND d.refobjid = $1 AND d.refobjsubid = $2
                AND d.deptype IN ('n', 'a')
                AND NOT (d.classid = 'pg_class'::regclass AND k.relkind = 'S')
                AND NOT (d.classid = 'pg_attrdef'::regclass AND ad.adrelid = $1 AND ad.adnum = $2)
                AND NOT (d.classid = 'pg_rewrite'::regclass AND r.ev_class = $1)
              ORDER BY 2",
            &[&table, &attnum],
        )
        .await?;
    let mut out: Vec<(String, String, Option<String>)> = rows
        .iter()
        .map(|r| (r.get("kind"), r.get("object"), r.get("index")))
        .collect();
    out.dedup_by(|a, b| a.1 == b.1);
    Ok(out)
}

async fn view_usage(
    client: &Client,
    schema: &str,
    table: &str,
    column: &str,
) -> Result<Vec<String>, tokio_postgres::Error> {
    let rows = scratch::optional_query(
        client,
        "SELECT DISTINCT format('%I.%I', view_schema, view_name) AS view
           FROM information_schema.view_column_usage
          WHERE table_schema = $1 AND table_name = $2 AND column_name = $3",
        &[&schema, &table, &column],
    )
    .await?;
    Ok(rows.iter().map(|r| r.get("view")).collect())
}

/// Functions (outside system schemas and extensions) whose source mentions the column:
/// (signature, lower-case name, whether the source also mentions the table).
async fn functions(
    client: &Client,
    column: &str,
    table: &str,
) -> Result<Vec<(String, String, bool)>, tokio_postgres::Error> {
    let rows = client
        .query(
            "SELECT p.oid::regprocedure::text AS signature, lower(p.proname::text) AS name,
                    position(lower($2) IN lower(p.prosrc)) > 0 AS mentions_table
               FROM pg_proc p
               JOIN pg_namespace n ON n.oid = p.pronamespace
               JOIN pg_language l ON l.oid = p.prolang
              WHERE n.nspname NOT IN ('pg_catalog', 'information_schema', 'cutover')
                AND n.nspname NOT LIKE 'pg\\_%'
                AND l.lanname NOT IN ('c', 'internal')
                AND NOT EXISTS (SELECT 1 FROM pg_depend e
                                 WHERE e.classid = 'pg_proc'::regclass AND e.objid = p.oid
                                   AND e.deptype = 'e')
                AND p.prosrc ~* $1
              ORDER BY 1",
            &[&snapshot::word_regex(column), &table],
        )
        .await?;
    Ok(rows
        .iter()
        .map(|r| (r.get("signature"), r.get("name"), r.get("mentions_table")))
        .collect())
}

fn index_scans(
    indexes: &[String],
    baseline: Option<&Snapshot>,
    now: &Snapshot,
    c: &mut ColumnCensus,
) {
    for index in indexes {
        let Some(&current) = now.index_scans.get(index) else {
            continue;
        };
        match baseline.and_then(|b| b.index_scans.get(index)) {
            Some(&before) => c.notes.push(format!(
                "index {index}: {} scan(s) since the read switch",
                current - before
            )),
            None => c.notes.push(format!(
                "index {index}: {current} scan(s) in total (no read-switch baseline to tell recent ones apart)"
            )),
        }
    }
}

/// Statements that name both the table and the column and ran since the baseline; those silent
/// since the earlier census (at least the drain window ago) are drained, not blockers. Their
/// call counts go into `calls` for the next census.
fn statement_readers(
    column: &str,
    table: &str,
    seen: &Seen<'_>,
    calls: &mut BTreeMap<String, i64>,
    c: &mut ColumnCensus,
) {
    let names_column = regex_words(column);
    let names_table = regex_words(table);
    let pattern = |q: &str| names_column(q) && names_table(q);
    match &seen.now.statements {
        Err(reason) => c.notes.push(format!("query log not measured: {reason}")),
        Ok(stats) => {
            let before: BTreeMap<String, i64> = match seen.baseline.map(|b| &b.statements) {
                Some(Ok(b)) => b.iter().map(|(k, v)| (k.clone(), v.calls)).collect(),
                _ => BTreeMap::new(),
            };
            let has_baseline = matches!(seen.baseline.map(|b| &b.statements), Some(Ok(_)));
            let mut readers = 0;
            for (id, stat) in stats {
                if !pattern(&stat.query) {
                    continue;
                }
                calls.insert(id.clone(), stat.calls);
                let new_calls = stat.calls - before.get(id).copied().unwrap_or(0);
                if new_calls <= 0 {
                    continue;
                }
                let when = if has_baseline {
                    "since the read switch"
                } else {
                    "in total (no read-switch baseline)"
                };
                let silent_since = seen
                    .earlier
                    .filter(|e| has_baseline && e.calls.get(id) == Some(&stat.calls))
                    .map(|e| e.taken_at);
                if let Some(since) = silent_since {
                    c.notes.push(format!(
                        "drained: query {id} ran {new_calls} time(s) {when}, none since {} ({} s): {}",
                        since.format("%H:%M:%S UTC"),
                        (seen.now.taken_at - since).num_seconds().max(0),
                        one_line(&stat.query)
                    ));
                    continue;
                }
                readers += 1;
                c.blockers.push(format!(
                    "query {id} ran {new_calls} time(s) {when}: {}",
                    one_line(&stat.query)
                ));
            }
            c.notes.push(format!(
                "pg_stat_statements: {readers} statement(s) mentioning `{column}` ran in the window"
            ));
        }
    }
}

/// A case-insensitive whole-word matcher.
fn regex_words(word: &str) -> impl Fn(&str) -> bool {
    let word = word.to_lowercase();
    move |text: &str| {
        let lower = text.to_lowercase();
        lower.match_indices(&word).any(|(i, _)| {
            let before = lower[..i].chars().next_back();
            let after = lower[i + word.len()..].chars().next();
            let is_word = |c: Option<char>| c.is_some_and(|c| c.is_alphanumeric() || c == '_');
            !is_word(before) && !is_word(after)
        })
    }
}

fn one_line(s: &str) -> String {
    let s = s.split_whitespace().collect::<Vec<_>>().join(" ");
    if s.chars().count() > 120 {
        format!("{}…", s.chars().take(120).collect::<String>())
    } else {
        s
    }
}

fn judge(found: Vec<ColumnCensus>, window: String) -> ProbeResult {
    let blockers: usize = found.iter().map(|c| c.blockers.len()).sum();
    let mut evidence = Vec::new();
    for c in &found {
        if c.blockers.is_empty() {
            evidence.push(format!("{}: no readers found", c.column));
        }
        for b in &c.blockers {
            evidence.push(format!("{}: BLOCKER {b}", c.column));
        }
        for n in &c.notes {
            evidence.push(format!("{}: {n}", c.column));
        }
    }
    evidence.push(window);
    let query_log_missing = found.iter().any(|c| {
        c.notes
            .iter()
            .any(|n| n.starts_with("query log not measured"))
    });
    let (outcome, summary) = if blockers > 0 {
        let names: Vec<String> = found
            .iter()
            .flat_map(|c| {
                c.blockers
                    .iter()
                    .map(move |b| format!("{} ← {b}", c.column))
            })
            .collect();
        (
            Outcome::Fail,
            format!("{blockers} hidden reader(s): {}", names.join("; ")),
        )
    } else if query_log_missing {
        (
            Outcome::Pass,
            "no catalog dependents, functions or index readers of the legacy columns; query log not measured (pg_stat_statements unavailable)".to_string(),
        )
    } else {
        (
            Outcome::Pass,
            "no readers of the legacy columns in the catalog, functions, indexes or query log"
                .to_string(),
        )
    };
    ProbeResult {
        name: "hidden_readers".to_string(),
        outcome,
        summary,
        evidence,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn object_names() {
        assert_eq!(
            object_name(
                "CREATE OR REPLACE FUNCTION public.f_x() RETURNS trigger",
                "CREATE"
            )
            .as_deref(),
            Some("f_x")
        );
        assert_eq!(
            object_name("DROP TRIGGER IF EXISTS t_sync ON public.accounts", "DROP").as_deref(),
            Some("t_sync")
        );
        assert_eq!(object_name("ALTER TABLE x DROP COLUMN y", "DROP"), None);
    }

    #[test]
    fn whole_words() {
        let m = regex_words("balance");
        assert!(m("SELECT balance FROM accounts"));
        assert!(m("select a.BALANCE+1"));
        assert!(!m("SELECT balance_cents FROM accounts"));
    }
}
