//! Index builds you can watch: the progress of a phase's `CREATE INDEX CONCURRENTLY` or
//! `REINDEX … CONCURRENTLY`, read from `pg_stat_progress_create_index`.
//!
//! The engine's DDL runner polls [`of_backend`] for its own session on its monitoring
//! connection while such a statement runs and emits an event; `status --json`, the TUI and the
//! metrics read [`of_plan`]: the builds of the plan's statements that are running now,
//! whichever process runs them.

use serde::Serialize;
use tokio_postgres::{GenericClient, Row};

use crate::db::DbError;

/// One index build in progress.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct IndexBuild {
    /// Backend running the build.
    pub pid: i32,
    /// `CREATE INDEX CONCURRENTLY`, `REINDEX CONCURRENTLY`, …
    pub command: String,
    /// The build's phase (`waiting for writers before build`, `building index: scanning table`, …).
    pub phase: String,
    /// The table.
    pub table: String,
    /// The index, once it exists.
    pub index: String,
    /// Blocks processed in the current phase.
    pub blocks_done: i64,
    /// Blocks to process in the current phase (0 when the phase does not count blocks).
    pub blocks_total: i64,
    /// Tuples processed in the current phase.
    pub tuples_done: i64,
    /// Tuples to process in the current phase (0 when the phase does not count tuples).
    pub tuples_total: i64,
    /// Lockers already waited for in the current wait phase.
    pub lockers_done: i64,
    /// Lockers to wait for in the current wait phase.
    pub lockers_total: i64,
    /// The session the build waits for now, if any.
    pub waiting_for: Option<Locker>,
}

/// A session an index build waits for.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Locker {
    /// Backend pid.
    pub pid: i32,
    /// Its `application_name`.
    pub application_name: String,
    /// Its state.
    pub state: String,
    /// Its current or last query (shortened).
    pub query: String,
}

impl IndexBuild {
    /// Blocks (or else tuples) done as a fraction of the total, when the phase counts them.
    pub fn fraction(&self) -> Option<f64> {
        let (done, total) = if self.blocks_total > 0 {
            (self.blocks_done, self.blocks_total)
        } else {
            (self.tuples_done, self.tuples_total)
        };
        (total > 0).then(|| (done as f64 / total as f64).clamp(0.0, 1.0))
    }
}

impl std::fmt::Display for IndexBuild {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let name = if self.index.is_empty() {
            &self.table
        } else {
            &self.index
        };
        write!(f, "{} {name}: {}", self.command, self.phase)?;
        if self.blocks_total > 0 {
            write!(f, ", blocks {}/{}", self.blocks_done, self.blocks_total)?;
        }
        if self.tuples_total > 0 {
            write!(f, ", tuples {}/{}", self.tuples_done, self.tuples_total)?;
        }
        if self.lockers_total > 0 {
            write!(f, ", lockers {}/{}", self.lockers_done, self.lockers_total)?;
        }
        if let Some(l) = &self.waiting_for {
            write!(
                f,
                ", waiting for pid {} (`{}`, {}): {}",
                l.pid, l.application_name, l.state, l.query
            )?;
        }
        Ok(())
    }
}

const SELECT: &str = "SELECT p.pid, p.command, p.phase, p.relid::regclass::text AS table_name,
        CASE WHEN p.index_relid = 0 THEN '' ELSE p.index_relid::regclass::text END AS index_name,
        p.blocks_done, p.blocks_total, p.tuples_done, p.tuples_total,
        p.lockers_done, p.lockers_total, l.pid AS locker_pid,
        coalesce(l.application_name, '') AS locker_app, coalesce(l.state, '') AS locker_state,
        left(regexp_replace(coalesce(l.query, ''), '\\s+', ' ', 'g'), 200) AS locker_query
   FROM pg_stat_progress_create_index p
   LEFT JOIN pg_stat_activity l ON l.pid = nullif(p.current_locker_pid, 0)";

/// True for statements `pg_stat_progress_create_index` reports on while they run.
pub fn is_index_build(stmt: &str) -> bool {
    let upper = stmt.trim_start().to_uppercase();
    upper.starts_with("REINDEX ") || upper.starts_with("CREATE ") && upper.contains(" INDEX ")
}

/// The build backend `pid` is running now, if any.
pub async fn of_backend(
    client: &impl GenericClient,
    pid: i32,
) -> Result<Option<IndexBuild>, DbError> {
    let sql = format!("{SELECT} WHERE p.pid = $1");
    let row = client.query_opt(sql.as_str(), &[&pid]).await?;
    Ok(row.as_ref().map(build_of))
}

/// The builds running now for statements of `plan_id` that the runner has marked running
/// (`cutover.statement_progress`), oldest backend first.
pub async fn of_plan(
    client: &impl GenericClient,
    plan_id: &str,
) -> Result<Vec<IndexBuild>, DbError> {
    let sql = format!(
        "{SELECT}
   JOIN pg_stat_activity a ON a.pid = p.pid
  WHERE a.query IN (SELECT statement FROM cutover.statement_progress
                     WHERE plan_id = $1 AND state = 'running')
  ORDER BY a.backend_start"
    );
    let rows = client.query(sql.as_str(), &[&plan_id]).await?;
    Ok(rows.iter().map(build_of).collect())
}

fn build_of(r: &Row) -> IndexBuild {
    IndexBuild {
        pid: r.get("pid"),
        command: r.get("command"),
        phase: r.get("phase"),
        table: r.get("table_name"),
        index: r.get("index_name"),
        blocks_done: r.get("blocks_done"),
        blocks_total: r.get("blocks_total"),
        tuples_done: r.get("tuples_done"),
        tuples_total: r.get("tuples_total"),
        lockers_done: r.get("lockers_done"),
        lockers_total: r.get("lockers_total"),
        waiting_for: r.get::<_, Option<i32>>("locker_pid").map(|pid| Locker {
            pid,
            application_name: r.get("locker_app"),
            state: r.get("locker_state"),
            query: r.get("locker_query"),
        }),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn build() -> IndexBuild {
        IndexBuild {
            pid: 7,
            command: "CREATE INDEX CONCURRENTLY".into(),
            phase: "building index: scanning table".into(),
            table: "public.t".into(),
            index: "public.t_idx".into(),
            blocks_done: 25,
            blocks_total: 100,
            tuples_done: 0,
            tuples_total: 0,
            lockers_done: 0,
            lockers_total: 0,
            waiting_for: None,
        }
    }

    #[test]
    fn index_builds_are_recognised() {
        assert!(is_index_build(
            "CREATE UNIQUE INDEX CONCURRENTLY i ON t (a)"
        ));
        assert!(is_index_build("reindex index concurrently i"));
        assert!(!is_index_build("DROP INDEX CONCURRENTLY i"));
        assert!(!is_index_build("VACUUM t"));
    }

    #[test]
    fn fraction_prefers_blocks_then_tuples() {
        let mut b = build();
        assert_eq!(b.fraction(), Some(0.25));
        b.blocks_total = 0;
        assert_eq!(b.fraction(), None);
        b.tuples_done = 3;
        b.tuples_total = 4;
        assert_eq!(b.fraction(), Some(0.75));
    }

    #[test]
    fn display_names_the_locker() {
        let mut b = build();
        b.phase = "waiting for writers before build".into();
        b.lockers_total = 1;
        b.waiting_for = Some(Locker {
            pid: 42,
            application_name: "app".into(),
            state: "idle in transaction".into(),
            query: "INSERT INTO t VALUES (1)".into(),
        });
        let text = b.to_string();
        assert!(text.contains("public.t_idx: waiting for writers"), "{text}");
        assert!(
            text.contains("lockers 0/1, waiting for pid 42 (`app`"),
            "{text}"
        );
    }
}
