//! Live-catalog validation of a plan: do its tables, columns, keys, expressions and flag exist
//! on the server? Runs the plan's expand SQL first inside a transaction that is rolled back, so
//! columns the plan itself adds are seen — and an expand that fails on the live schema is reported.

use tokio_postgres::{Client, Transaction};

use crate::control::phases::ControlState;
use crate::db::txmark::TxMark;
use crate::db::{describe_error, DbError};
use crate::plan::diagnostic::{Problem, Seg};
use crate::plan::{BackfillSpec, CheckKind, Phase, Plan};
use crate::sql::{quote_ident, quote_qualified, split_statements};

/// Checks `plan` against the live catalog; returns the problems found (empty when all is well).
/// Nothing is changed: the work happens in a transaction that is rolled back.
pub async fn check_plan(
    client: &mut Client,
    plan: &Plan,
    control: ControlState,
) -> Result<Vec<Problem>, DbError> {
    let tx = client.transaction().await?;
    tx.batch_execute("SET LOCAL lock_timeout = '2s'; SET LOCAL statement_timeout = '30s'")
        .await?;
    let mark = TxMark::take(&tx).await?;
    let mut out = Vec::new();
    if !control.expand_applied {
        simulate(&tx, &mark, plan, Phase::Expand, &mut out).await?;
        simulate(&tx, &mark, plan, Phase::DualWrite, &mut out).await?;
    }
    // From here on only reads: expressions are planned (`EXPLAIN`), and planning may run an
    // immutable function; whatever it would write is refused.
    tx.batch_execute("SET LOCAL transaction_read_only = on")
        .await?;
    backfill(&tx, plan, &mut out).await?;
    if plan.spec.is_cdc() {
        cdc(&tx, &mut out).await?;
    }
    checks(&tx, plan, &mut out).await?;
    flag(plan, control, &mut out);
    tx.rollback().await?;
    Ok(out)
}

/// Runs the phase's transactional statements, one at a time and each checked before it is
/// sent; a statement that ended the transaction (see [`TxMark`]) aborts the check.
async fn simulate(
    tx: &Transaction<'_>,
    mark: &TxMark,
    plan: &Plan,
    phase: Phase,
    out: &mut Vec<Problem>,
) -> Result<(), DbError> {
    for stmt in split_statements(&plan.phase(phase).apply) {
        if stmt.needs_own_transaction() {
            continue;
        }
        if let Err(why) = crate::sql::guard(&stmt.text) {
            out.push(problem(
                &["phases", phase.as_str(), "apply"],
                format!(
                    "`{phase}` SQL: {why} (statement: {})",
                    first_line(&stmt.text)
                ),
            ));
            continue;
        }
        tx.batch_execute("SAVEPOINT cutover_sim").await?;
        let result = tx.execute(stmt.text.as_str(), &[]).await;
        // A statement that failed ended nothing; one that succeeded must have stayed inside.
        if result.is_ok() {
            if let Err(ids) = mark.verify(tx).await? {
                return Err(DbError::Query(format!(
                "validation aborted: `{phase}` statement `{}` ended the validation transaction ({ids})",
                first_line(&stmt.text)
            )));
            }
        }
        if let Err(e) = result {
            tx.batch_execute("ROLLBACK TO SAVEPOINT cutover_sim")
                .await?;
            out.push(problem(
                &["phases", phase.as_str(), "apply"],
                format!(
                    "`{phase}` SQL fails on the live schema: {} (statement: {})",
                    describe_error(&e),
                    first_line(&stmt.text)
                ),
            ));
        }
    }
    Ok(())
}

fn first_line(s: &str) -> String {
    let line = s.lines().next().unwrap_or("");
    if line.len() > 80 {
        format!("{}…", line.chars().take(80).collect::<String>())
    } else {
        line.to_string()
    }
}

fn problem(path: &[&str], message: String) -> Problem {
    Problem::new(path.iter().map(|s| Seg::from(*s)).collect(), message, None)
}

async fn relation_exists(tx: &Transaction<'_>, name: &str) -> Result<bool, DbError> {
    let row = tx
        .query_one(
            "SELECT to_regclass($1) IS NOT NULL AS present",
            &[&quote_qualified(name)],
        )
        .await?;
    Ok(row.get("present"))
}

async fn missing_columns(
    tx: &Transaction<'_>,
    table: &str,
    columns: &[String],
) -> Result<Vec<String>, DbError> {
    let rows = tx
        .query(
            "SELECT attname::text AS name FROM pg_attribute
              WHERE attrelid = to_regclass($1) AND attnum > 0 AND NOT attisdropped",
            &[&quote_qualified(table)],
        )
        .await?;
    let have: Vec<String> = rows.iter().map(|r| r.get("name")).collect();
    Ok(columns
        .iter()
        .filter(|c| !have.contains(c))
        .cloned()
        .collect())
}

/// True when `key` is exactly covered by a unique index and every column is NOT NULL.
async fn key_is_unique_not_null(
    tx: &Transaction<'_>,
    table: &str,
    key: &[String],
) -> Result<bool, DbError> {
    let row = tx
        .query_one(
            "SELECT EXISTS (
                 SELECT 1 FROM pg_index i
                  WHERE i.indrelid = to_regclass($1) AND i.indisunique AND i.indisvalid
                    AND i.indpred IS NULL AND i.indexprs IS NULL
                    AND (SELECT array_agg(a.attname::text ORDER BY a.attname)
                           FROM pg_attribute a
                          WHERE a.attrelid = i.indrelid AND a.attnum = ANY (i.indkey))
                        = (SELECT array_agg(k ORDER BY k) FROM unnest($2::text[]) k))
             AND NOT EXISTS (
                 SELECT 1 FROM pg_attribute a
                  WHERE a.attrelid = to_regclass($1) AND a.attname = ANY ($2) AND NOT a.attnotnull)
             AS unique_not_null",
            &[&quote_qualified(table), &key],
        )
        .await?;
    Ok(row.get("unique_not_null"))
}

async fn compiles(tx: &Transaction<'_>, sql: &str) -> Result<Option<String>, DbError> {
    tx.batch_execute("SAVEPOINT cutover_expr").await?;
    // The extended protocol refuses a second statement smuggled into the expression.
    match tx.execute(format!("EXPLAIN {sql}").as_str(), &[]).await {
        Ok(_) => Ok(None),
        Err(e) => {
            tx.batch_execute("ROLLBACK TO SAVEPOINT cutover_expr")
                .await?;
            Ok(Some(describe_error(&e)))
        }
    }
}

async fn backfill(
    tx: &Transaction<'_>,
    plan: &Plan,
    out: &mut Vec<Problem>,
) -> Result<(), DbError> {
    let Some(b) = &plan.spec.backfill else {
        return Ok(());
    };
    if !relation_exists(tx, &b.table).await? {
        out.push(problem(
            &["backfill", "table"],
            format!("table `{}` does not exist", b.table),
        ));
        return Ok(());
    }
    let missing = missing_columns(tx, &b.table, &b.key).await?;
    if !missing.is_empty() {
        out.push(problem(
            &["backfill", "key"],
            format!(
                "key column(s) {} not found in `{}`",
                missing.join(", "),
                b.table
            ),
        ));
    } else if !key_is_unique_not_null(tx, &b.table, &b.key).await? {
        out.push(Problem::new(
            vec!["backfill".into(), "key".into()],
            format!(
                "key ({}) of `{}` is not unique and NOT NULL",
                b.key.join(", "),
                b.table
            ),
            Some(
                "keyset chunking needs a primary key or a unique index on NOT NULL columns".into(),
            ),
        ));
    }
    if missing.is_empty() {
        out.extend(super::partition_key::check(tx, &b.table, &b.key).await?);
    }
    if b.is_copy() {
        return copy_target(tx, b, out).await;
    }
    let targets: Vec<String> = b.set.keys().cloned().collect();
    for col in missing_columns(tx, &b.table, &targets).await? {
        out.push(problem(
            &["backfill", "set", &col],
            format!(
                "column `{col}` does not exist in `{}` (even after expand)",
                b.table
            ),
        ));
    }
    let table = quote_qualified(&b.table);
    if let Some(err) = compiles(tx, &format!("SELECT 1 FROM {table} WHERE {}", b.pending)).await? {
        out.push(problem(
            &["backfill", "pending"],
            format!("`pending` does not compile: {err}"),
        ));
    }
    for (col, expr) in &b.set {
        let sql = format!("SELECT ({expr}) AS {} FROM {table}", quote_ident(col));
        if let Some(err) = compiles(tx, &sql).await? {
            out.push(problem(
                &["backfill", "set", col],
                format!("expression for `{col}` does not compile: {err}"),
            ));
        }
    }
    Ok(())
}

/// Copy mode: `into` exists, has every mapped column and a unique key on `target_key`, and the
/// mapping's expressions compile over the source table.
async fn copy_target(
    tx: &Transaction<'_>,
    b: &BackfillSpec,
    out: &mut Vec<Problem>,
) -> Result<(), DbError> {
    let table = quote_qualified(&b.table);
    for (col, expr) in &b.columns {
        let sql = format!("SELECT ({expr}) AS {} FROM {table}", quote_ident(col));
        if let Some(err) = compiles(tx, &sql).await? {
            out.push(problem(
                &["backfill", "columns", col],
                format!(
                    "expression for `{col}` does not compile over `{}`: {err}",
                    b.table
                ),
            ));
        }
    }
    let into = b.into.as_deref().unwrap_or_default();
    if !relation_exists(tx, into).await? {
        out.push(Problem::new(
            vec!["backfill".into(), "into".into()],
            format!("table `{into}` does not exist (even after expand)"),
            Some("create it in the expand phase".into()),
        ));
        return Ok(());
    }
    let mapped: Vec<String> = b.columns.keys().cloned().collect();
    for col in missing_columns(tx, into, &mapped).await? {
        out.push(problem(
            &["backfill", "columns", &col],
            format!("column `{col}` does not exist in `{into}`"),
        ));
    }
    let key = b.target_key().to_vec();
    let at = if b.target_key.is_empty() {
        "key"
    } else {
        "target_key"
    };
    let missing = missing_columns(tx, into, &key).await?;
    if !missing.is_empty() {
        out.push(problem(
            &["backfill", at],
            format!("key column(s) {} not found in `{into}`", missing.join(", ")),
        ));
    } else if !key_is_unique_not_null(tx, into, &key).await? {
        out.push(Problem::new(
            vec!["backfill".into(), at.into()],
            format!("key ({}) of `{into}` is not unique and NOT NULL", key.join(", ")),
            Some("copy mode's ON CONFLICT needs a primary key or a unique index on NOT NULL columns of the target".into()),
        ));
    } else {
        let pending = b.pending_predicate();
        if let Some(err) = compiles(tx, &format!("SELECT 1 FROM {table} WHERE {pending}")).await? {
            out.push(problem(
                &["backfill", at],
                format!("the copy's key match does not compile: {err}"),
            ));
        }
    }
    Ok(())
}

/// CDC: the server writes logical WAL and the login may create a replication slot. (The
/// replica identity is checked when the slot is created: expand may still add the key.)
async fn cdc(tx: &Transaction<'_>, out: &mut Vec<Problem>) -> Result<(), DbError> {
    let row = tx
        .query_one(
            "SELECT current_setting('wal_level') AS level,
                    (SELECT rolsuper OR rolreplication FROM pg_roles WHERE rolname = current_user) AS may",
            &[],
        )
        .await?;
    let level: String = row.get("level");
    if level != "logical" {
        out.push(Problem::new(
            vec!["dual_write".into(), "mode".into()],
            format!("CDC needs wal_level = logical; the server has {level}"),
            Some("set wal_level = logical in postgresql.conf and restart the server".into()),
        ));
    }
    if !row.get::<_, Option<bool>>("may").unwrap_or(false) {
        out.push(Problem::new(
            vec!["dual_write".into(), "mode".into()],
            "CDC needs a login that may create a replication slot".to_string(),
            Some("ALTER ROLE <operator> REPLICATION".into()),
        ));
    }
    Ok(())
}

async fn checks(tx: &Transaction<'_>, plan: &Plan, out: &mut Vec<Problem>) -> Result<(), DbError> {
    for (i, check) in plan.spec.checks.iter().enumerate() {
        let relations: Vec<(&str, &String)> = match &check.kind {
            CheckKind::RowCountParity { source, target, .. }
            | CheckKind::SampledChecksum { source, target, .. }
            | CheckKind::FullDiff { source, target, .. } => {
                vec![("source", source), ("target", target)]
            }
            CheckKind::ExpressionParity { table, .. } | CheckKind::NullDrift { table, .. } => {
                vec![("table", table)]
            }
            CheckKind::GoldenQuery { .. } | CheckKind::Invariant { .. } => vec![],
        };
        for (key, rel) in relations {
            if !relation_exists(tx, rel).await? {
                out.push(Problem::new(
                    vec!["checks".into(), Seg::Index(i), key.into()],
                    format!("check `{}`: relation `{rel}` does not exist", check.name),
                    None,
                ));
            }
        }
    }
    Ok(())
}

fn flag(plan: &Plan, control: ControlState, out: &mut Vec<Problem>) {
    let Some(rs) = &plan.spec.read_switch else {
        return;
    };
    if control.read_switch_flag_missing {
        out.push(Problem::new(
            vec!["read_switch".into(), "flag".into()],
            format!("feature flag `{}` does not exist in cutover.flags", rs.flag),
            Some(format!(
                "create it off with `cutover flag set {} off`",
                rs.flag
            )),
        ));
    }
}
