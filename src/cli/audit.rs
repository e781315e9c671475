//! `cutover audit`: verify, export and tail the tamper-evident audit log.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use clap::{Subcommand, ValueEnum};

use super::{exit, Context};
use crate::control::audit::{self, Verification};

/// Export formats.
#[derive(Debug, Clone, Copy, ValueEnum)]
pub enum ExportFormat {
    /// One JSON object per line.
    Jsonl,
}

/// `audit` subcommands.
#[derive(Debug, Subcommand)]
pub enum AuditAction {
    /// Recompute the hash chain, cross-check it against the control state and against
    /// externally kept heads; exit 2 naming what is wrong.
    Verify {
        /// A head hash kept outside the database (ticket, chat): it must be in the chain.
        #[arg(long)]
        expect_head: Vec<String>,
        /// A file of head hashes, one per line: each must be in the chain; the current head is
        /// appended when it is new.
        #[arg(long)]
        head_file: Option<PathBuf>,
    },
    /// Export every entry.
    Export {
        /// Format.
        #[arg(long, value_enum, default_value = "jsonl")]
        format: ExportFormat,
        /// Only this plan id.
        #[arg(long)]
        plan_id: Option<String>,
        /// Write to this file instead of stdout.
        #[arg(long)]
        output: Option<PathBuf>,
    },
    /// Print the last entries; with --follow, keep printing new ones.
    Tail {
        /// How many to print first.
        #[arg(short = 'n', long, default_value_t = 20)]
        lines: i64,
        /// Keep following (LISTEN cutover_events, polling as a fallback).
        #[arg(long)]
        follow: bool,
        /// JSON lines instead of text.
        #[arg(long)]
        json: bool,
    },
}

async fn audit_verify(
    client: &tokio_postgres::Client,
    mut expected: Vec<String>,
    head_file: Option<&Path>,
) -> anyhow::Result<ExitCode> {
    let (entries, head) = match audit::verify(client).await? {
        Verification::Intact { entries, head } => (entries, head),
        Verification::Broken { seq, reason } => {
            println!("audit log BROKEN at entry #{seq}: {reason}");
            return Ok(ExitCode::from(exit::BLOCKED));
        }
    };
    if let Some(path) = head_file {
        match std::fs::read_to_string(path) {
            Ok(text) => expected.extend(
                text.lines()
                    .map(str::trim)
                    .filter(|l| !l.is_empty())
                    .map(str::to_string),
            ),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(e) => anyhow::bail!("cannot read the head file {}: {e}", path.display()),
        }
    }
    let mut problems = Vec::new();
    for h in &expected {
        if !audit::contains_hash(client, h).await? {
            problems.push(format!(
                "the externally kept head {h} is not in the chain: entries were removed or rewritten"
            ));
        }
    }
    problems.extend(audit::cross_check(client).await?);
    if !problems.is_empty() {
        println!("audit log BROKEN: the chain ({entries} entries) verifies, but:");
        for p in &problems {
            println!("  ✗ {p}");
        }
        return Ok(ExitCode::from(exit::BLOCKED));
    }
    if let Some(path) = head_file {
        if expected.last() != Some(&head) && entries > 0 {
            let mut f = std::fs::OpenOptions::new()
                .create(true)
                .append(true)
                .open(path)
                .map_err(|e| anyhow::anyhow!("cannot append to {}: {e}", path.display()))?;
            writeln!(f, "{head}")?;
        }
    }
    println!(
        "audit log intact: {entries} entries, head hash {head}; control state cross-checked{}",
        if expected.is_empty() {
            String::new()
        } else {
            format!(", {} kept head(s) found", expected.len())
        }
    );
    Ok(ExitCode::from(exit::OK))
}

pub(super) async fn audit_cmd(ctx: &Context, action: AuditAction) -> anyhow::Result<ExitCode> {
    let client = ctx.connect_viewer("audit").await?;
    match action {
        AuditAction::Verify {
            expect_head,
            head_file,
        } => audit_verify(&client, expect_head, head_file.as_deref()).await,
        AuditAction::Export {
            format: ExportFormat::Jsonl,
            plan_id,
            output,
        } => {
            let mut writer: Box<dyn Write> = match &output {
                Some(p) => Box::new(std::io::BufWriter::new(
                    std::fs::File::create(p)
                        .map_err(|e| anyhow::anyhow!("cannot create {}: {e}", p.display()))?,
                )),
                None => Box::new(std::io::BufWriter::new(std::io::stdout().lock())),
            };
            let n = audit::export(&client, plan_id.as_deref(), |e| {
                let line = serde_json::to_string(e).map_err(std::io::Error::other)?;
                writeln!(writer, "{line}")
            })
            .await?;
            writer.flush()?;
            if let Some(p) = output {
                eprintln!("exported {n} entries to {}", p.display());
            }
            Ok(ExitCode::from(exit::OK))
        }
        AuditAction::Tail {
            lines,
            follow,
            json,
        } => {
            let print = |e: &audit::Entry| {
                if json {
                    println!("{}", serde_json::to_string(e).unwrap_or_default());
                } else {
                    println!("{}", e.line());
                }
            };
            let last = audit::last_entries(&client, lines.max(0)).await?;
            let mut after = 0;
            for e in &last {
                print(e);
                after = e.seq;
            }
            if after == 0 {
                after = audit::last_entries(&client, 1)
                    .await?
                    .last()
                    .map(|e| e.seq)
                    .unwrap_or(0);
            }
            if follow {
                audit::follow(
                    &ctx.db_config()?,
                    after,
                    std::time::Duration::from_secs(2),
                    |e| {
                        print(e);
                        true
                    },
                )
                .await?;
            }
            Ok(ExitCode::from(exit::OK))
        }
    }
}
