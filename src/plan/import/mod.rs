//! `cutover plan import`: migrations written for other tools — pgroll files and the DDL an ORM
//! emits — turned into a plan of `[[operations]]`.
//!
//! Each importer reads its files into [`Item`]s: one operation, where it came from and what it
//! became (or why it is risky). [`render`] writes them as a commented plan; the caller parses
//! the text with [`Plan::parse`](crate::plan::Plan::parse), so an import that does not validate
//! is never written.

mod fold;
mod locate;
pub mod pgroll;
mod pgroll_table;
mod reader;
pub mod sql;
mod sql_creates;
mod sql_syntax;
mod sql_table;

use super::operations::OperationSpec;

/// One imported operation.
#[derive(Debug, Clone)]
pub struct Item {
    /// The operation.
    pub op: OperationSpec,
    /// `file:line` of its source.
    pub at: String,
    /// The source (a statement, or a pgroll operation's path), one line.
    pub source: String,
    /// Why the operation is risky (raw SQL Cutover could not map); shown beside it and as a
    /// finding.
    pub risk: Option<String>,
    /// Anything else the reader should know about the mapping.
    pub note: Option<String>,
}

/// A problem in an input file: `file:line:col: message`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ImportError {
    /// `file:line:col` (or `file` when the file cannot be read).
    pub at: String,
    /// What is wrong (for pgroll files, after the field's path).
    pub message: String,
}

impl std::fmt::Display for ImportError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}: error: {}", self.at, self.message)
    }
}

/// Who holds the plan's roles and what the plan is called.
#[derive(Debug, Clone)]
pub struct Header {
    /// Plan id.
    pub id: String,
    /// `role → logins` from `--roster`; empty: every usual role held by `login`.
    pub roster: Vec<(String, Vec<String>)>,
    /// The login Cutover would connect as.
    pub login: String,
    /// The command line, for the header comment.
    pub command: String,
}

/// The usual roles, each held by the connecting login when `--roster` is not given.
const ROLES: [&str; 4] = ["lead", "app_owner", "data_owner", "sre"];

/// Parses `ROLE=LOGIN,ROLE=LOGIN,…` (a role may repeat to add logins).
pub fn parse_roster(text: &str) -> Result<Vec<(String, Vec<String>)>, String> {
    let mut out: Vec<(String, Vec<String>)> = Vec::new();
    for pair in text.split(',').map(str::trim).filter(|p| !p.is_empty()) {
        let Some((role, login)) = pair.split_once('=') else {
            return Err(format!("--roster: `{pair}` is not ROLE=LOGIN"));
        };
        let (role, login) = (role.trim(), login.trim());
        if role.is_empty() || login.is_empty() {
            return Err(format!("--roster: `{pair}` needs a role and a login"));
        }
        match out.iter_mut().find(|(r, _)| r == role) {
            Some((_, logins)) => logins.push(login.to_string()),
            None => out.push((role.to_string(), vec![login.to_string()])),
        }
    }
    if !out.iter().any(|(r, _)| r == "lead") {
        return Err("--roster: name a `lead` (e.g. lead=alice)".into());
    }
    Ok(out)
}

/// A plan id from a file or migration name: letters, digits, `-` and `_`, at most 63.
pub fn id_from(name: &str) -> String {
    let id: String = name
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || c == '-' || c == '_' {
                c
            } else {
                '-'
            }
        })
        .take(63)
        .collect();
    let id = id.trim_matches('-').to_string();
    if id.is_empty() {
        "imported".to_string()
    } else {
        id
    }
}

fn q(s: &str) -> String {
    toml::Value::String(s.to_string()).to_string()
}

/// One line of a comment: control characters and line breaks become spaces, long text is cut.
fn one_line(text: &str) -> String {
    let flat: String = text
        .chars()
        .map(|c| if c.is_control() { ' ' } else { c })
        .collect();
    let flat = flat.split_whitespace().collect::<Vec<_>>().join(" ");
    if flat.chars().count() > 160 {
        format!("{}…", flat.chars().take(160).collect::<String>())
    } else {
        flat
    }
}

/// Refuses a `rename_table` that shares the plan with other operations on the same table: the
/// old name is a view until contract, so those would act on the view (or on a name that does
/// not exist yet). The error names both places and how to split the import.
pub fn check_renames(items: &[Item]) -> Result<(), ImportError> {
    use super::operations::idents::Table;
    let plain = |t: &str| Table::parse(t).plain();
    for (n, rename) in items.iter().enumerate() {
        if rename.op.op != "rename_table" {
            continue;
        }
        let names: Vec<String> = [&rename.op.from, &rename.op.to]
            .into_iter()
            .flatten()
            .map(|t| plain(t))
            .collect();
        let other = items.iter().enumerate().find(|(m, item)| {
            *m != n
                && item
                    .op
                    .table
                    .as_deref()
                    .is_some_and(|t| names.contains(&plain(t)))
        });
        if let Some((m, item)) = other {
            return Err(ImportError {
                at: rename.at.clone(),
                message: format!(
                    "rename_table {} → {} shares the plan with operation {} on the same table ({}: {}); \
                     the old name stays a view until contract, so that operation cannot run beside the rename. \
                     Import the rename as a plan of its own (its own file and run), before or after the rest",
                    names.first().map_or("", String::as_str),
                    names.get(1).map_or("", String::as_str),
                    m + 1,
                    item.at,
                    item.op.op,
                ),
            });
        }
    }
    Ok(())
}

/// Whether Cutover fills `op`'s new column for existing rows with the plan's backfill pass.
fn needs_backfill(op: &OperationSpec) -> bool {
    use super::operations::idents::is_constant;
    match op.op.as_str() {
        "alter_column" => {
            op.kind.is_some()
                || op.name.is_some()
                || (op.nullable == Some(false) && op.up.is_some())
        }
        "rename_column" | "split_column" | "move_column" => true,
        "add_column" => op.up.is_some() || op.default.as_deref().is_some_and(|d| !is_constant(d)),
        _ => false,
    }
}

/// Refuses operations that need backfills of two tables (a plan runs one backfill pass),
/// naming both tables with their operations' places and how to split the import.
pub fn check_backfills(items: &[Item]) -> Result<(), ImportError> {
    use super::operations::idents::Table;
    let mut first: Option<(String, &Item)> = None;
    for item in items.iter().filter(|i| needs_backfill(&i.op)) {
        let Some(table) = item.op.table.as_deref().map(|t| Table::parse(t).plain()) else {
            continue;
        };
        match &first {
            None => first = Some((table, item)),
            Some((t, f)) if *t != table => {
                let on = |name: &str| {
                    items
                        .iter()
                        .filter(|i| {
                            i.op.table
                                .as_deref()
                                .map(|t| Table::parse(t).plain())
                                .as_deref()
                                == Some(name)
                        })
                        .map(|i| i.at.as_str())
                        .collect::<Vec<_>>()
                        .join(", ")
                };
                return Err(ImportError {
                    at: item.at.clone(),
                    message: format!(
                        "{} on `{table}` needs a backfill, and so does {} on `{t}` ({}); a plan runs one backfill pass. \
                         Split the migration: move what changes `{table}` ({}) to a file of its own, import each file as its own plan and run them one after the other",
                        item.op.op,
                        f.op.op,
                        f.at,
                        on(&table),
                    ),
                });
            }
            Some(_) => {}
        }
    }
    Ok(())
}

/// An imported operation that does not serialize to TOML.
#[derive(Debug, thiserror::Error)]
#[error("operation {number}: {source}")]
pub struct RenderError {
    /// 1-based position among the imported operations.
    pub number: usize,
    /// The serializer's error.
    pub source: toml::ser::Error,
}

/// The plan text: header, roster, and each operation beside its source.
pub fn render(items: &[Item], h: &Header, what: &str) -> Result<String, RenderError> {
    let mut out = format!(
        "# Imported by `{}`.\n# Each [[operations]] entry below shows its source beside it; review with\n\
         # `cutover plan show <this file>`, then run it like any plan.\n\n",
        one_line(&h.command)
    );
    out.push_str(&format!("id = {}\n", q(&h.id)));
    out.push_str(&format!("title = {}\n", q(&format!("Imported {what}"))));
    out.push_str("rationale = \"TODO: why this change\"\n");
    let lead = h
        .roster
        .iter()
        .find(|(r, _)| r == "lead")
        .and_then(|(_, l)| l.first())
        .unwrap_or(&h.login);
    out.push_str(&format!("author = {}\n", q(lead)));
    out.push_str("ticket = \"TODO\"\n\n");
    if h.roster.is_empty() {
        out.push_str(&format!(
            "# No --roster was given: every role is held by {}, the login Cutover connects as\n\
             # (DATABASE_URL, --database-url or the PG* environment). Name real people before a\n\
             # production run: `--roster lead=alice,sre=bob`.\n[roster]\n",
            q(&h.login)
        ));
        for role in ROLES {
            out.push_str(&format!("{role} = [{}]\n", q(&h.login)));
        }
    } else {
        out.push_str("[roster]\n");
        for (role, logins) in &h.roster {
            let logins: Vec<String> = logins.iter().map(|l| q(l)).collect();
            out.push_str(&format!("{} = [{}]\n", q(role), logins.join(", ")));
        }
    }
    for (n, item) in items.iter().enumerate() {
        out.push_str(&format!(
            "\n# {} — operation {}\n#   from: {}\n",
            item.at,
            n + 1,
            one_line(&item.source)
        ));
        if let Some(risk) = &item.risk {
            out.push_str(&format!(
                "#   RISK (raw SQL, not mapped): {}\n",
                one_line(risk)
            ));
        }
        if let Some(note) = &item.note {
            out.push_str(&format!("#   note: {}\n", one_line(note)));
        }
        #[derive(serde::Serialize)]
        struct One<'a> {
            operations: [&'a OperationSpec; 1],
        }
        let text = toml::to_string(&One {
            operations: [&item.op],
        })
        .map_err(|source| RenderError {
            number: n + 1,
            source,
        })?;
        out.push_str(&text);
    }
    Ok(out)
}

#[cfg(test)]
mod tests;

/// The source of line `line` (1-based) of a plan written by [`render`]: the `file:line` and
/// number of the operation it belongs to, read from the comment above the operation.
pub fn source_of_line(plan: &str, line: usize) -> Option<String> {
    plan.lines()
        .take(line)
        .collect::<Vec<_>>()
        .iter()
        .rev()
        .find_map(|l| {
            let (at, n) = l.strip_prefix("# ")?.split_once(" — operation ")?;
            Some(format!("{at} (operation {n})"))
        })
}
