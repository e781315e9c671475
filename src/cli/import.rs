//! `cutover plan import pgroll|sql FILE…`: migrations written for other tools as a plan.

use std::path::PathBuf;
use std::process::ExitCode;

use clap::Subcommand;

use super::{exit, Context};
use crate::plan::import::{self, Header, ImportError, Item};
use crate::plan::{show, Plan};

/// What to import.
#[derive(Debug, Subcommand)]
pub enum ImportCmd {
    /// pgroll migrations (YAML or JSON), in order, as one plan.
    Pgroll {
        /// Migration files.
        #[arg(required = true)]
        files: Vec<PathBuf>,
        /// Plan id (default: the first migration's `name`, else its file name).
        #[arg(long)]
        id: Option<String>,
        #[command(flatten)]
        out: Output,
    },
    /// DDL files (Django `sqlmigrate`, Alembic `--sql`, Rails, Prisma, Flyway), in order.
    Sql {
        /// SQL files.
        #[arg(required = true)]
        files: Vec<PathBuf>,
        /// Plan id (default: the first file's name).
        #[arg(long)]
        id: Option<String>,
        /// The way back of a type change with `USING`: `TABLE.COLUMN=EXPR` over the new column
        /// (repeatable).
        #[arg(long = "down", value_name = "TABLE.COLUMN=EXPR")]
        downs: Vec<String>,
        #[command(flatten)]
        out: Output,
    },
}

/// Where the plan goes and who holds its roles.
#[derive(Debug, clap::Args)]
pub struct Output {
    /// Write the plan here (refuses to overwrite); default: standard output.
    #[arg(long)]
    out: Option<PathBuf>,
    /// Print what `plan show` would for the imported plan; write nothing.
    #[arg(long)]
    show: bool,
    /// `ROLE=LOGIN,…` (default: every role held by the login Cutover connects as).
    #[arg(long)]
    roster: Option<String>,
}

fn read(path: &PathBuf) -> Result<(String, String), ImportError> {
    let shown = path.display().to_string();
    let text = std::fs::read_to_string(path).map_err(|e| ImportError {
        at: shown.clone(),
        message: e.to_string(),
    })?;
    Ok((shown, text))
}

fn stem(path: &std::path::Path) -> String {
    path.file_stem()
        .map_or_else(|| "imported".into(), |s| s.to_string_lossy().into_owned())
}

/// Runs `plan import …`.
#[expect(
    clippy::too_many_lines,
    reason = "the two importers' flags, output and exit codes read best in one place"
)]
pub fn run(cmd: ImportCmd, ctx: &Context) -> anyhow::Result<ExitCode> {
    let line = std::env::args().collect::<Vec<_>>().join(" ");
    let (items, skipped, id, out, what) = match cmd {
        ImportCmd::Pgroll { files, id, out } => {
            let mut items = Vec::new();
            let mut first_name = None;
            for f in &files {
                let (shown, text) = match read(f) {
                    Ok(x) => x,
                    Err(e) => return refuse(&[e]),
                };
                match import::pgroll::import(&shown, &text) {
                    Ok(m) => {
                        first_name = first_name.or(m.name);
                        items.extend(m.items);
                    }
                    Err(e) => return refuse(&[e]),
                }
            }
            let id = id.or(first_name).unwrap_or_else(|| stem(&files[0]));
            (items, Vec::new(), id, out, "pgroll migrations")
        }
        ImportCmd::Sql {
            files,
            id,
            downs,
            out,
        } => {
            let mut pairs = Vec::new();
            for d in &downs {
                match d.split_once('=') {
                    Some((k, v)) if !k.trim().is_empty() && !v.trim().is_empty() => {
                        pairs.push((k.trim().to_string(), v.trim().to_string()))
                    }
                    _ => {
                        eprintln!("--down `{d}`: write TABLE.COLUMN=EXPR");
                        return Ok(ExitCode::from(exit::BLOCKED));
                    }
                }
            }
            let (mut items, mut skipped) = (Vec::new(), Vec::new());
            for f in &files {
                let (shown, text) = match read(f) {
                    Ok(x) => x,
                    Err(e) => return refuse(&[e]),
                };
                match import::sql::import(&shown, &text, &pairs) {
                    Ok(i) => {
                        items.extend(i.items);
                        skipped.extend(i.skipped);
                    }
                    Err(e) => return refuse(&[e]),
                }
            }
            let id = id.unwrap_or_else(|| stem(&files[0]));
            (items, skipped, id, out, "SQL migrations")
        }
    };
    if let Err(e) = import::check_renames(&items).and_then(|()| import::check_backfills(&items)) {
        return refuse(&[e]);
    }
    if items.is_empty() {
        eprintln!("nothing to import: the files hold no schema change");
        return Ok(ExitCode::from(exit::BLOCKED));
    }
    let roster = match out.roster.as_deref().map(import::parse_roster) {
        Some(Ok(r)) => r,
        Some(Err(e)) => {
            eprintln!("{e}");
            return Ok(ExitCode::from(exit::BLOCKED));
        }
        None => Vec::new(),
    };
    let login = ctx
        .db_config_opt()
        .ok()
        .flatten()
        .map(|c| c.user().to_string())
        .or_else(|| std::env::var("USER").ok())
        .unwrap_or_else(|| "postgres".into());
    let header = Header {
        id: import::id_from(&id),
        roster,
        login,
        command: line,
    };
    let mut text = match import::render(&items, &header, what) {
        Ok(t) => t,
        Err(e) => {
            eprintln!("cutover plan import: {e}");
            return Ok(ExitCode::from(exit::BLOCKED));
        }
    };
    if !skipped.is_empty() {
        text.push_str("\n# Left out of the plan:\n");
        for s in &skipped {
            text.push_str(&format!("#   {s}\n"));
        }
    }
    let shown = out.out.as_ref().map_or_else(
        || "<imported plan>".to_string(),
        |p| p.display().to_string(),
    );
    let plan = match Plan::parse(&shown, &text) {
        Ok(p) => p,
        Err(e) => {
            eprintln!(
                "{text}\n{}\nthe imported plan above does not validate; nothing was written",
                with_sources(&e.to_string(), &shown, &text)
            );
            return Ok(ExitCode::from(exit::BLOCKED));
        }
    };
    report_risks(&items, &plan);
    if out.show {
        let _ = std::io::Write::write_all(
            &mut std::io::stdout().lock(),
            show::render(&show::show(&plan)).as_bytes(),
        );
        return Ok(ExitCode::from(exit::OK));
    }
    match out.out {
        Some(path) => {
            let mut file = std::fs::OpenOptions::new()
                .write(true)
                .create_new(true)
                .open(&path)
                .map_err(|e| anyhow::anyhow!("{}: {e}", path.display()))?;
            std::io::Write::write_all(&mut file, text.as_bytes())?;
            eprintln!("wrote {} ({} operations)", path.display(), items.len());
        }
        None => print!("{text}"),
    }
    Ok(ExitCode::from(exit::OK))
}

/// Unmapped statements and the linter's findings on the imported SQL, on standard error.
fn report_risks(items: &[Item], plan: &Plan) {
    for (n, item) in items.iter().enumerate() {
        if let Some(risk) = &item.risk {
            eprintln!(
                "{}: warning: [unmapped-statement] operation {} is raw SQL: {risk}",
                item.at,
                n + 1
            );
        }
    }
    for f in crate::evidence::lint::lint_plan(plan, None) {
        if f.blocks() {
            eprintln!("warning: {}", f.located(plan));
        }
    }
}

fn refuse(errors: &[ImportError]) -> anyhow::Result<ExitCode> {
    for e in errors {
        eprintln!("{e}");
    }
    eprintln!("nothing was written");
    Ok(ExitCode::from(exit::BLOCKED))
}

/// `errors` of the rendered plan `text` (shown as `shown`), each `shown:line:col:` line followed
/// by the source statement its operation comes from.
fn with_sources(errors: &str, shown: &str, text: &str) -> String {
    let prefix = format!("{shown}:");
    errors
        .lines()
        .map(|l| {
            let line = l
                .strip_prefix(&prefix)
                .and_then(|rest| rest.split(':').next())
                .and_then(|n| n.parse::<usize>().ok());
            match line.and_then(|n| import::source_of_line(text, n)) {
                Some(source) => format!("{l}\n  from: {source}"),
                None => l.to_string(),
            }
        })
        .collect::<Vec<_>>()
        .join("\n")
}
