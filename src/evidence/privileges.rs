//! Privilege parity: a new column or table must grant no broader access than the one it
//! replaces, so a migration never widens who can read a sensitive field.
//!
//! For each `[old, new]` pair of `[probes.privilege_parity] pairs`, every role's effective
//! privileges (table and column ACLs, role membership, PUBLIC — via `has_*_privilege`) are
//! compared; for tables, also row-level security and ownership. Anything the new object allows
//! that the old one did not is a blocker, named by role and privilege.

use tokio_postgres::Client;

use super::scratch::Scope;
use super::{Probe, ProbeContext, ProbeFuture, ProbeResult};
use crate::db::describe_error;
use crate::outcome::Outcome;
use crate::sql::{quote_literal, quote_qualified};

const COLUMN_PRIVILEGES: [&str; 4] = ["SELECT", "INSERT", "UPDATE", "REFERENCES"];
const TABLE_PRIVILEGES: [&str; 7] = [
    "SELECT",
    "INSERT",
    "UPDATE",
    "DELETE",
    "TRUNCATE",
    "REFERENCES",
    "TRIGGER",
];

/// A resolved side of a pair.
#[derive(Debug, Clone)]
enum Object {
    Table {
        oid: u32,
        name: String,
    },
    Column {
        oid: u32,
        table: String,
        column: String,
    },
}

impl Object {
    fn oid(&self) -> u32 {
        match self {
            Object::Table { oid, .. } | Object::Column { oid, .. } => *oid,
        }
    }

    fn label(&self) -> String {
        match self {
            Object::Table { name, .. } => format!("table {name}"),
            Object::Column { table, column, .. } => format!("column {table}.{column}"),
        }
    }
}

/// The privilege-parity probe.
pub(crate) struct PrivilegeParityProbe;

impl Probe for PrivilegeParityProbe {
    fn name(&self) -> &'static str {
        "privilege_parity"
    }

    fn evaluate<'a>(&'a self, ctx: &'a ProbeContext<'a>) -> ProbeFuture<'a> {
        Box::pin(async move {
            let pairs = &ctx.plan.spec.probes.privilege_parity.pairs;
            if pairs.is_empty() {
                return ProbeResult::inconclusive(
                    "privilege_parity",
                    "the plan lists no old/new pairs ([probes.privilege_parity] pairs)",
                );
            }
            let scope = match Scope::enter(ctx.client).await {
                Ok(s) => s,
                Err(e) => return ProbeResult::inconclusive("privilege_parity", describe_error(&e)),
            };
            let mut blockers = Vec::new();
            let mut evidence = Vec::new();
            let mut unresolved = Vec::new();
            for [old, new] in pairs {
                match compare(ctx.client, old, new).await {
                    Ok(Ok(found)) => {
                        if found.is_empty() {
                            evidence.push(format!("{old} → {new}: no access widened"));
                        }
                        blockers.extend(found);
                    }
                    Ok(Err(reason)) => unresolved.push(reason.to_string()),
                    Err(e) => unresolved.push(format!("{old} → {new}: {}", describe_error(&e))),
                }
            }
            let _ = scope.rollback(ctx.client).await;
            let (outcome, summary) = if !blockers.is_empty() {
                (
                    Outcome::Fail,
                    format!("{} privilege difference(s) widen access", blockers.len()),
                )
            } else if !unresolved.is_empty() {
                (
                    Outcome::Inconclusive,
                    format!("could not compare: {}", unresolved.join("; ")),
                )
            } else {
                (
                    Outcome::Pass,
                    "new objects grant no broader access than the ones they replace".to_string(),
                )
            };
            let mut all: Vec<String> = blockers.iter().map(|b| format!("BLOCKER {b}")).collect();
            all.extend(unresolved);
            all.extend(evidence);
            ProbeResult {
                name: "privilege_parity".to_string(),
                outcome,
                summary,
                evidence: all,
            }
        })
    }
}

/// A pair's name that resolves to no relation or column.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
enum Unresolved {
    /// Neither a relation nor a table's column.
    #[error("`{0}` does not exist")]
    Missing(String),
    /// The table exists, the column does not.
    #[error("column `{0}` does not exist")]
    NoColumn(String),
}

/// `schema.table`, `table`, `schema.table.column` or `table.column`: a relation if the whole
/// name resolves to one, otherwise the last part is a column.
async fn resolve(
    client: &Client,
    name: &str,
) -> Result<Result<Object, Unresolved>, tokio_postgres::Error> {
    if name.split('.').count() < 3 {
        let row = client
            .query_opt(
                "SELECT c.oid, format('%I.%I', n.nspname, c.relname) AS name
                   FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
                  WHERE c.oid = to_regclass($1)",
                &[&quote_qualified(name)],
            )
            .await?;
        if let Some(row) = row {
            return Ok(Ok(Object::Table {
                oid: row.get("oid"),
                name: row.get("name"),
            }));
        }
    }
    let Some((table, column)) = name.rsplit_once('.') else {
        return Ok(Err(Unresolved::Missing(name.to_string())));
    };
    let row = client
        .query_one(
            "SELECT c.oid,
                    (SELECT format('%I.%I', n.nspname, k.relname) FROM pg_class k
                       JOIN pg_namespace n ON n.oid = k.relnamespace WHERE k.oid = c.oid) AS table_name,
                    EXISTS (SELECT 1 FROM pg_attribute a
                             WHERE a.attrelid = c.oid AND a.attname = $2 AND NOT a.attisdropped
                               AND a.attnum > 0) AS has_column
               FROM (SELECT to_regclass($1)::oid AS oid) c",
            &[&quote_qualified(table), &column],
        )
        .await?;
    match (
        row.get::<_, Option<u32>>("oid"),
        row.get::<_, Option<bool>>("has_column"),
    ) {
        (Some(oid), Some(true)) => Ok(Ok(Object::Column {
            oid,
            table: row
                .get::<_, Option<String>>("table_name")
                .unwrap_or_default(),
            column: column.to_string(),
        })),
        (Some(_), _) => Ok(Err(Unresolved::NoColumn(name.to_string()))),
        (None, _) => Ok(Err(Unresolved::Missing(name.to_string()))),
    }
}

async fn compare(
    client: &Client,
    old: &str,
    new: &str,
) -> Result<Result<Vec<String>, Unresolved>, tokio_postgres::Error> {
    let old = match resolve(client, old).await? {
        Ok(o) => o,
        Err(e) => return Ok(Err(e)),
    };
    let new = match resolve(client, new).await? {
        Ok(o) => o,
        Err(e) => return Ok(Err(e)),
    };
    let mut out = widened_privileges(client, &old, &new).await?;
    if old.oid() != new.oid() {
        out.extend(table_differences(client, &old, &new).await?);
    }
    Ok(Ok(out))
}

/// Role × privilege combinations the new object allows and the old one does not.
/// Superusers are left out (they bypass every check on both).
async fn widened_privileges(
    client: &Client,
    old: &Object,
    new: &Object,
) -> Result<Vec<String>, tokio_postgres::Error> {
    let privileges: Vec<&str> = match (old, new) {
        (Object::Table { .. }, Object::Table { .. }) => TABLE_PRIVILEGES.to_vec(),
        _ => COLUMN_PRIVILEGES.to_vec(),
    };
    let sql = format!(
        "SELECT r.rolname::text AS role, p AS privilege
           FROM pg_roles r CROSS JOIN unnest($1::text[]) p
          WHERE NOT r.rolsuper AND {} AND NOT {}
          ORDER BY 1, 2",
        privilege_test(new),
        privilege_test(old),
    );
    let privs: Vec<String> = privileges.iter().map(|p| p.to_string()).collect();
    let rows = client.query(&sql, &[&privs]).await?;
    Ok(rows
        .iter()
        .map(|r| {
            let role: String = r.get("role");
            let privilege: String = r.get("privilege");
            format!(
                "role {role} has {privilege} on the new {} but not on the old {}",
                new.label(),
                old.label()
            )
        })
        .collect())
}

/// The SQL test "role `r` has privilege `p` on `o`" (oids are numbers, the column a literal).
fn privilege_test(o: &Object) -> String {
    match o {
        Object::Table { oid, .. } => format!("has_table_privilege(r.oid, {oid}::oid, p)"),
        Object::Column { oid, column, .. } => format!(
            "has_column_privilege(r.oid, {oid}::oid, {}, p)",
            quote_literal(column)
        ),
    }
}

/// Row-level security and ownership of two different tables.
async fn table_differences(
    client: &Client,
    old: &Object,
    new: &Object,
) -> Result<Vec<String>, tokio_postgres::Error> {
    let row = client
        .query_one(
            "SELECT o.relrowsecurity AS o_rls, o.relforcerowsecurity AS o_force,
                    pg_get_userbyid(o.relowner)::text AS o_owner,
                    (SELECT count(*) FROM pg_policy WHERE polrelid = o.oid) AS o_policies,
                    n.relrowsecurity AS n_rls, n.relforcerowsecurity AS n_force,
                    pg_get_userbyid(n.relowner)::text AS n_owner,
                    (SELECT count(*) FROM pg_policy WHERE polrelid = n.oid) AS n_policies,
                    o.oid::regclass::text AS o_name, n.oid::regclass::text AS n_name
               FROM pg_class o, pg_class n WHERE o.oid = $1 AND n.oid = $2",
            &[&old.oid(), &new.oid()],
        )
        .await?;
    let (o_rls, o_force, o_owner, o_pol): (bool, bool, String, i64) = (
        row.get("o_rls"),
        row.get("o_force"),
        row.get("o_owner"),
        row.get("o_policies"),
    );
    let (n_rls, n_force, n_owner, n_pol): (bool, bool, String, i64) = (
        row.get("n_rls"),
        row.get("n_force"),
        row.get("n_owner"),
        row.get("n_policies"),
    );
    let (o_name, n_name): (String, String) = (row.get("o_name"), row.get("n_name"));
    let mut out = Vec::new();
    if o_rls && !n_rls {
        out.push(format!(
            "row-level security is enabled on {o_name} but not on {n_name}: every row becomes visible to whoever can read it"
        ));
    }
    if o_force && !n_force {
        out.push(format!(
            "FORCE ROW LEVEL SECURITY is set on {o_name} but not on {n_name}: its owner bypasses the policies"
        ));
    }
    if o_rls && n_rls && n_pol != o_pol {
        out.push(format!(
            "{o_name} has {o_pol} row-level policies, {n_name} has {n_pol}: review that they restrict the same rows"
        ));
    }
    if o_owner != n_owner {
        out.push(format!(
            "{n_name} is owned by {n_owner}, {o_name} by {o_owner}: the owner bypasses grants (and RLS unless forced)"
        ));
    }
    Ok(out)
}
