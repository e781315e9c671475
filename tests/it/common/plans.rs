//! Plan fixtures, built in one place: the demo plan and edited copies of it, and
//! [`PlanToml`], the smallest valid plan with only what a test adds.

use std::path::{Path, PathBuf};

use cutover::plan::{Phase, Plan};

/// The demo plan (`accounts.balance` dollars → `balance_cents`), run against `assets/demo/schema.sql`.
pub const DEMO_PLAN: &str = "plans/accounts-balance-cents.toml";

/// The demo plan's text.
pub fn demo_source() -> String {
    std::fs::read_to_string(DEMO_PLAN).unwrap_or_else(|e| panic!("{DEMO_PLAN}: {e}"))
}

/// The demo plan, parsed.
pub fn demo_plan() -> Plan {
    Plan::parse(DEMO_PLAN, &demo_source()).unwrap_or_else(|e| panic!("{DEMO_PLAN}: {e}"))
}

/// The demo plan's text with each `(from, to)` replaced once; panics if a `from` is missing
/// (the demo plan changed under the test).
pub fn demo_with(edits: &[(&str, &str)]) -> String {
    let mut source = demo_source();
    for (from, to) in edits {
        assert!(source.contains(from), "the demo plan has no `{from}`");
        source = source.replacen(from, to, 1);
    }
    source
}

/// The demo plan (same id) with every role of its roster held by `login` alone.
pub fn demo_held_by(login: &str) -> String {
    let held = |role: &str| format!("{role} = [\"{login}\"]");
    let roles = ["lead", "app_owner", "data_owner", "sre"];
    let edits: Vec<(String, String)> = roles
        .iter()
        .map(|r| (format!("{r} = [\"postgres\"]"), held(r)))
        .collect();
    let edits: Vec<(&str, &str)> = edits
        .iter()
        .map(|(f, t)| (f.as_str(), t.as_str()))
        .collect();
    demo_with(&edits)
}

/// A second migration on the demo schema: the demo plan under another id
/// (`accounts-cents-twin`), title and read-switch flag.
pub fn demo_twin() -> String {
    demo_with(&[
        (
            "id = \"accounts-balance-cents\"",
            "id = \"accounts-cents-twin\"",
        ),
        (
            "title = \"Store account balances as integer cents\"",
            "title = \"The twin migration\"",
        ),
        (
            "flag = \"accounts.read_balance_cents\"",
            "flag = \"accounts.read_cents_twin\"",
        ),
    ])
}

/// [`demo_with`] written to `dir/name`; returns its path.
pub fn demo_variant(dir: &Path, name: &str, edits: &[(&str, &str)]) -> PathBuf {
    write(dir, name, &demo_with(edits))
}

/// Writes `source` to `dir/name`; returns its path.
pub fn write(dir: &Path, name: &str, source: &str) -> PathBuf {
    let path = dir.join(name);
    std::fs::write(&path, source).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    path
}

/// `source` written as `plan.toml` in a new temp dir (kept while the returned dir lives).
pub fn write_temp(source: &str) -> (tempfile::TempDir, PathBuf) {
    let dir = tempfile::tempdir().expect("temp dir");
    let path = write(dir.path(), "plan.toml", source);
    (dir, path)
}

/// The smallest valid plan: every phase present and empty (contract irreversible), `lead` held
/// by `postgres`, a read-switch flag `<id>.flag`. Builders add the rest.
#[derive(Debug, Clone)]
pub struct PlanToml {
    id: String,
    title: String,
    environment: Option<String>,
    roster: Vec<(String, String)>,
    phases: Vec<(Phase, String, String)>,
    extra: Vec<String>,
}

impl PlanToml {
    /// A minimal plan named `id`.
    pub fn new(id: &str) -> PlanToml {
        PlanToml {
            id: id.to_owned(),
            title: "t".to_owned(),
            environment: None,
            roster: vec![("lead".to_owned(), "postgres".to_owned())],
            phases: Vec::new(),
            extra: Vec::new(),
        }
    }

    /// Sets the title.
    pub fn title(mut self, title: &str) -> Self {
        self.title = title.to_owned();
        self
    }

    /// Sets the `environment` key.
    pub fn environment(mut self, environment: &str) -> Self {
        self.environment = Some(environment.to_owned());
        self
    }

    /// Gives `role` to `login` (in addition to `lead = ["postgres"]`).
    pub fn role(mut self, role: &str, login: &str) -> Self {
        self.roster.push((role.to_owned(), login.to_owned()));
        self
    }

    /// The SQL `phase` applies and the SQL that undoes it (for the contract, `rollback` is
    /// ignored: it stays irreversible).
    pub fn phase(mut self, phase: Phase, apply: &str, rollback: &str) -> Self {
        self.phases.retain(|(p, _, _)| *p != phase);
        self.phases
            .push((phase, apply.to_owned(), rollback.to_owned()));
        self
    }

    /// Appends TOML (`[backfill]`, `[[checks]]`, `[gates.*]`, `[probes.*]`, …).
    pub fn with(mut self, toml: &str) -> Self {
        self.extra.push(toml.to_owned());
        self
    }

    /// The plan's TOML text.
    pub fn toml(&self) -> String {
        let mut out = format!(
            "id = {}\ntitle = {}\nrationale = \"r\"\nauthor = \"a\"\nticket = \"T-1\"\n",
            quote(&self.id),
            quote(&self.title)
        );
        if let Some(env) = &self.environment {
            out.push_str(&format!("environment = {}\n", quote(env)));
        }
        out.push_str("[roster]\n");
        let mut roles: Vec<&str> = Vec::new();
        for (role, _) in &self.roster {
            if !roles.contains(&role.as_str()) {
                roles.push(role);
            }
        }
        for role in roles {
            let logins: Vec<String> = self
                .roster
                .iter()
                .filter(|(r, _)| r == role)
                .map(|(_, l)| quote(l))
                .collect();
            out.push_str(&format!("{role} = [{}]\n", logins.join(", ")));
        }
        for phase in Phase::ALL {
            let (apply, rollback) = self
                .phases
                .iter()
                .find(|(p, _, _)| *p == phase)
                .map(|(_, a, r)| (a.as_str(), r.as_str()))
                .unwrap_or(("", ""));
            out.push_str(&format!("[phases.{phase}]\n"));
            if !apply.is_empty() {
                out.push_str(&format!("apply = {}\n", quote(apply)));
            }
            if phase == Phase::Contract {
                out.push_str("irreversible = true\n");
            } else {
                out.push_str(&format!("rollback = {}\n", quote(rollback)));
            }
        }
        out.push_str(&format!(
            "[read_switch]\nflag = {}\n",
            quote(&format!("{}.flag", self.id.replace('-', "_")))
        ));
        for extra in &self.extra {
            out.push_str(extra);
            out.push('\n');
        }
        out
    }

    /// The plan, parsed; panics (with the TOML) if it is invalid.
    pub fn plan(&self) -> Plan {
        let toml = self.toml();
        Plan::parse(&format!("{}.toml", self.id), &toml)
            .unwrap_or_else(|e| panic!("{e}\n--- plan ---\n{toml}"))
    }

    /// Writes the plan to `dir/<id>.toml`; returns its path.
    pub fn write(&self, dir: &Path) -> PathBuf {
        write(dir, &format!("{}.toml", self.id), &self.toml())
    }
}

/// A TOML basic string (multi-line SQL included).
fn quote(s: &str) -> String {
    let mut out = String::with_capacity(s.len() + 2);
    out.push('"');
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '\t' => out.push_str("\\t"),
            c if c.is_control() => out.push_str(&format!("\\u{:04X}", c as u32)),
            c => out.push(c),
        }
    }
    out.push('"');
    out
}

/// The example plans shipped in `plans/` (every `*.toml`, sorted; `plans/README.md` is not one).
pub fn example_plan_paths() -> Vec<std::path::PathBuf> {
    let mut paths: Vec<_> = std::fs::read_dir("plans")
        .expect("plans/ exists")
        .map(|e| e.expect("dir entry").path())
        .filter(|p| p.extension().is_some_and(|x| x == "toml"))
        .collect();
    paths.sort();
    paths
}
