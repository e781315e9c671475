//! The least-privilege GRANT script for a plan's two login kinds: an **operator** (runs phases
//! and backfills) and a **viewer** (sees everything, changes nothing). Each line says what it
//! unlocks. A DBA (the database owner or a superuser) runs it after the control schema exists.

use crate::plan::Plan;

/// The tables a plan's phases and backfill act on, as written in the plan (`schema.table`).
fn plan_tables(plan: &Plan) -> Vec<String> {
    let mut tables: Vec<String> = Vec::new();
    if let Some(b) = &plan.spec.backfill {
        tables.push(b.table.clone());
    }
    tables.sort();
    tables.dedup();
    tables
}

/// `ident` quoted for SQL.
fn quote(ident: &str) -> String {
    format!("\"{}\"", ident.replace('"', "\"\""))
}

/// `name` as an SQL string literal.
fn literal(name: &str) -> String {
    format!("'{}'", name.replace('\'', "''"))
}

/// The script granting `operator` and `viewer` exactly what Cutover needs on `database`.
pub(crate) fn script(plan: &Plan, database: &str, operator: &str, viewer: &str) -> String {
    let db = quote(database);
    let op = quote(operator);
    let vw = quote(viewer);
    let mut out = String::new();
    let mut line = |s: &str| {
        out.push_str(s);
        out.push('\n');
    };
    line(&format!(
        "-- Cutover least-privilege grants for plan `{}` on database {database}.",
        plan.id()
    ));
    line("-- Run as the database owner or a superuser, after the operator's first command");
    line("-- (or `cutover bootstrap`) created the control schema `cutover`.");
    line("");
    line(&format!(
        "-- Operator `{operator}`: runs phases, backfills, checks and probes."
    ));
    line(&format!(
        "GRANT CONNECT, TEMPORARY ON DATABASE {db} TO {op};  -- connect; temporary tables of the exact diff"
    ));
    line(&format!(
        "GRANT CREATE ON DATABASE {db} TO {op};  -- create and upgrade the control schema `cutover`"
    ));
    line(&format!(
        "GRANT USAGE, CREATE ON SCHEMA cutover TO {op};  -- control state (needed when another login bootstrapped it)"
    ));
    line(&format!(
        "GRANT ALL ON ALL TABLES IN SCHEMA cutover TO {op};  -- phases, sign-offs, backfill checkpoints, audit log"
    ));
    line(&format!(
        "GRANT ALL ON ALL SEQUENCES IN SCHEMA cutover TO {op};  -- ids of audit, check and probe rows"
    ));
    line(&format!(
        "GRANT pg_monitor TO {op};  -- throttle signals (replica lag, lock waiters, vacuum, WAL rate) and pg_read_all_stats: hidden-reader and error-budget evidence from other logins' statements"
    ));
    for t in plan_tables(plan) {
        line(&format!(
            "DO $$ DECLARE owner name := (SELECT pg_get_userbyid(relowner) FROM pg_class WHERE oid = {}::regclass); \
             BEGIN IF owner <> {} THEN EXECUTE format('GRANT %I TO %I', owner, {}); END IF; END $$;  \
             -- DDL and the backfill on {t} need its owner's rights",
            literal(&t),
            literal(operator),
            literal(operator)
        ));
    }
    line("");
    line(&format!(
        "-- Viewer `{viewer}`: status, audit, runbook, backfill status, TUI --read-only."
    ));
    line(&format!(
        "GRANT CONNECT ON DATABASE {db} TO {vw};  -- connect"
    ));
    line(&format!(
        "GRANT USAGE ON SCHEMA cutover TO {vw};  -- see the control schema"
    ));
    line(&format!(
        "GRANT SELECT ON ALL TABLES IN SCHEMA cutover TO {vw};  -- phases, gates, sign-offs, checks, backfill, audit log"
    ));
    line(&format!(
        "ALTER DEFAULT PRIVILEGES FOR ROLE {op} IN SCHEMA cutover GRANT SELECT ON TABLES TO {vw};  -- tables later control-schema versions add"
    ));
    line(&format!(
        "GRANT pg_read_all_stats TO {vw};  -- which Cutover sessions are connected and who holds the plan's lock"
    ));
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_grant_says_what_it_unlocks_and_names_are_quoted() {
        let plan = Plan::parse(
            "plans/accounts-balance-cents.toml",
            include_str!("../../plans/accounts-balance-cents.toml"),
        )
        .expect("demo plan");
        let s = script(&plan, "bank", "ops\"x", "sre");
        for l in s
            .lines()
            .filter(|l| l.starts_with("GRANT") || l.starts_with("ALTER"))
        {
            assert!(l.contains("  -- "), "uncommented grant: {l}");
        }
        assert!(s.contains("TO \"ops\"\"x\""), "{s}");
        assert!(s.contains("public.accounts"), "{s}");
        assert!(!s.contains("GRANT ALL ON ALL TABLES IN SCHEMA cutover TO \"sre\""));
    }
}
