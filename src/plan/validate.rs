//! Semantic validation of a parsed plan: references, consistency, formats.
//! Every problem is collected; nothing stops at the first.

use std::collections::BTreeSet;

use super::diagnostic::Problem;
use super::windows::{parse_instant, DailyWindow};
use super::{BackfillSpec, CheckKind, Phase, PlanSpec, ProbeKind, Role};
use crate::problem_at;

/// Returns every semantic problem of `spec` (empty when it is valid).
pub(super) fn validate(spec: &PlanSpec) -> Vec<Problem> {
    let mut out = Vec::new();
    header(spec, &mut out);
    roster(spec, &mut out);
    phases(spec, &mut out);
    settings(spec, &mut out);
    windows(spec, &mut out);
    backfill(spec, &mut out);
    checks(spec, &mut out);
    gates(spec, &mut out);
    probes(spec, &mut out);
    super::fields::check(spec, &mut out);
    super::notify::validate(&spec.notify, &mut out);
    authorization(spec, &mut out);
    out
}

/// Every role the matrix names is in the roster (or `*`), and no action is left to nobody.
fn authorization(spec: &PlanSpec, out: &mut Vec<Problem>) {
    for (action, roles) in &spec.authorization.0 {
        let at = action.as_str();
        if roles.is_empty() {
            out.push(problem_at!(
                ["authorization", at],
                format!("nobody may `{at}`: the list is empty"),
                "name roles from the roster, or \"*\" for any of them"
            ));
        }
        for (i, role) in roles.iter().enumerate() {
            if role.as_str() != super::authorization::ANY_ROLE && !spec.roster.contains_key(role) {
                let known: Vec<&str> = spec.roster.keys().map(Role::as_str).collect();
                out.push(problem_at!(
                    ["authorization", at, i],
                    format!("`{at}` is allowed to role `{role}`, which is not in the roster"),
                    format!("roster roles: {} (or \"*\" for any)", known.join(", "))
                ));
            }
        }
    }
}

fn header(spec: &PlanSpec, out: &mut Vec<Problem>) {
    if !spec.id.is_well_formed() {
        out.push(problem_at!(
            ["id"],
            format!("invalid plan id `{}`", spec.id),
            "use 1-63 letters, digits, `-` or `_`"
        ));
    }
    for (key, value) in [
        ("title", &spec.title),
        ("author", &spec.author),
        ("ticket", &spec.ticket),
    ] {
        if value.trim().is_empty() {
            out.push(problem_at!([key], format!("`{key}` must not be empty")));
        }
    }
}

fn roster(spec: &PlanSpec, out: &mut Vec<Problem>) {
    if !spec.roster.contains_key(&Role(Role::LEAD.to_string())) {
        out.push(problem_at!(
            ["roster"],
            "the roster names no `lead`",
            "add `lead = [\"<postgres login>\"]` under [roster]: the lead owns the decision"
        ));
    }
    for (role, logins) in &spec.roster {
        if logins.is_empty() || logins.iter().any(|l| l.trim().is_empty()) {
            out.push(problem_at!(
                ["roster", role.as_str()],
                format!("role `{role}` needs at least one non-empty PostgreSQL login")
            ));
        }
    }
}

fn phases(spec: &PlanSpec, out: &mut Vec<Problem>) {
    for phase in Phase::ALL {
        let p = spec.phases.get(phase);
        let at = phase.as_str();
        match (&p.rollback, p.irreversible) {
            (None, false) => out.push(problem_at!(
                ["phases", at],
                format!("phase `{phase}` has no rollback"),
                "add `rollback = \"…\"` (use \"\" if there is nothing to undo) or mark it `irreversible = true`"
            )),
            (Some(_), true) => out.push(problem_at!(
                ["phases", at, "rollback"],
                format!("phase `{phase}` is marked irreversible but has a rollback"),
                "remove `rollback` or `irreversible = true`"
            )),
            _ => {}
        }
    }
    for phase in [
        Phase::Expand,
        Phase::DualWrite,
        Phase::Backfill,
        Phase::ReadSwitch,
    ] {
        if spec.phases.get(phase).irreversible {
            let later_reversible = Phase::ALL[phase.index() + 1..]
                .iter()
                .any(|p| spec.phases.get(*p).reversible());
            if later_reversible {
                out.push(problem_at!(
                    ["phases", phase.as_str(), "irreversible"],
                    format!("phase `{phase}` is irreversible but later phases are reversible"),
                    "only the last phases (usually `contract`) may be irreversible: a rollback stops at the first irreversible phase"
                ));
            }
        }
    }
    if spec.phases.read_switch.apply.trim().is_empty() && spec.read_switch.is_none() {
        out.push(problem_at!(
            ["phases", "read_switch"],
            "the read switch neither flips a flag nor runs SQL",
            "add a [read_switch] table with `flag = \"…\"`"
        ));
    }
}

fn settings(spec: &PlanSpec, out: &mut Vec<Problem>) {
    let s = &spec.settings;
    for (key, d) in [
        ("lock_timeout", s.lock_timeout),
        ("statement_timeout", s.statement_timeout),
    ] {
        if d.as_millis() == 0 {
            out.push(problem_at!(
                ["settings", key],
                format!("`{key}` must be greater than zero"),
                "a statement without a timeout can queue every other query behind its lock"
            ));
        }
    }
    if s.ddl_max_attempts == 0 {
        out.push(problem_at!(
            ["settings", "ddl_max_attempts"],
            "`ddl_max_attempts` must be at least 1"
        ));
    }
}

fn windows(spec: &PlanSpec, out: &mut Vec<Problem>) {
    for (i, w) in spec.windows.heavy_work.iter().enumerate() {
        if let Err(e) = DailyWindow::parse(w) {
            out.push(problem_at!(
                ["windows", "heavy_work", i],
                e.to_string(),
                "write e.g. \"22:00-06:00\" (UTC)"
            ));
        }
    }
    for (i, f) in spec.windows.freeze.iter().enumerate() {
        let from = parse_instant(&f.from);
        let to = parse_instant(&f.to);
        if let Err(e) = &from {
            out.push(problem_at!(["windows", "freeze", i, "from"], e.to_string()));
        }
        if let Err(e) = &to {
            out.push(problem_at!(["windows", "freeze", i, "to"], e.to_string()));
        }
        if let (Ok(a), Ok(b)) = (from, to) {
            if a >= b {
                out.push(problem_at!(
                    ["windows", "freeze", i, "to"],
                    "freeze period ends before it starts"
                ));
            }
        }
    }
}

/// Update mode: assignments and a `pending` predicate, none of the copy mode's fields.
fn update_mode(b: &BackfillSpec, out: &mut Vec<Problem>) {
    if b.set.is_empty() {
        out.push(problem_at!(
            ["backfill", "set"],
            "the backfill sets no column",
            "add e.g. `set = { new_col = \"<expression>\" }`"
        ));
    }
    if b.pending.trim().is_empty() {
        out.push(problem_at!(
            ["backfill", "pending"],
            "missing field `pending`: update mode needs the predicate of the rows that still need work",
            "e.g. `pending = \"new_col IS NULL AND old_col IS NOT NULL\"`"
        ));
    }
    let copy_only = [
        ("into", b.into.is_some()),
        ("columns", !b.columns.is_empty()),
        ("target_key", !b.target_key.is_empty()),
    ];
    for (field, present) in copy_only {
        if present {
            out.push(problem_at!(
                ["backfill", field],
                format!("`{field}` applies to `mode = \"copy\"` only"),
                "set `mode = \"copy\"`, or remove it"
            ));
        }
    }
}

/// Copy mode: a target table, a mapping that covers the target key by bare source columns,
/// none of the update mode's fields.
fn copy_mode(b: &BackfillSpec, out: &mut Vec<Problem>) {
    if b.into.as_deref().is_none_or(|t| t.trim().is_empty()) {
        out.push(problem_at!(
            ["backfill", "mode"],
            "copy mode needs `into`, the table to copy into",
            "add e.g. `into = \"public.orders_v2\"`"
        ));
    }
    if b.columns.is_empty() {
        out.push(problem_at!(
            ["backfill", "mode"],
            "copy mode needs `columns`, the mapping target column = source expression",
            "add e.g. `columns = { legacy_id = \"id\", total_cents = \"round(total * 100)\" }`"
        ));
    }
    for (i, col) in b.target_key().iter().enumerate() {
        let at = if b.target_key.is_empty() {
            vec!["backfill".into(), "key".into(), i.into()]
        } else {
            vec!["backfill".into(), "target_key".into(), i.into()]
        };
        if !b.columns.is_empty() && b.mapped_source_column(col).is_none() {
            out.push(Problem::new(
                at,
                format!("target key column `{col}` must be mapped from a source column by name in `columns`"),
                Some(format!("add `{col} = \"<source column>\"` to `columns`")),
            ));
        }
    }
    for (field, present) in [
        ("set", !b.set.is_empty()),
        ("pending", !b.pending.trim().is_empty()),
    ] {
        if present {
            out.push(problem_at!(
                ["backfill", field],
                format!("`{field}` applies to `mode = \"update\"` only: copy mode inserts the rows not yet in `into`"),
                "map target columns in `columns` instead"
            ));
        }
    }
}

/// CDC projects the source through the backfill's mapping: into the copy's target (whose key
/// must be mapped from the source key column by column: the applier deletes by key), or in
/// update mode into the new columns of the same rows.
fn cdc(spec: &PlanSpec, out: &mut Vec<Problem>) {
    if !spec.is_cdc() {
        return;
    }
    let Some(b) = spec.backfill.as_ref() else {
        out.push(problem_at!(
            ["dual_write", "mode"],
            "CDC projects changes through the backfill's mapping: it needs a `[backfill]`",
            "add a `[backfill]` section: `mode = \"copy\"` with `into` and `columns` for a new table, or `set` and `pending` for new columns of the same table"
        ));
        return;
    };
    if !b.is_copy() {
        return;
    }
    let key = &b.key;
    let target = b.target_key();
    let aligned = key.len() == target.len()
        && key
            .iter()
            .zip(target)
            .all(|(k, t)| b.mapped_source_column(t).as_deref() == Some(k.as_str()));
    if !aligned {
        out.push(problem_at!(
            ["dual_write", "mode"],
            format!(
                "CDC needs the target key ({}) mapped from the source key ({}) column by column",
                target.join(", "),
                key.join(", ")
            ),
            "map each target key column from the source key column in `[backfill] columns`"
        ));
    }
}

fn backfill(spec: &PlanSpec, out: &mut Vec<Problem>) {
    cdc(spec, out);
    let Some(b) = &spec.backfill else { return };
    if b.key.is_empty() {
        out.push(problem_at!(
            ["backfill", "key"],
            "the backfill key must name at least one column"
        ));
    }
    if b.is_copy() {
        copy_mode(b, out);
    } else {
        update_mode(b, out);
    }
    if !(b.min_chunk_rows >= 1
        && b.min_chunk_rows <= b.initial_chunk_rows
        && b.initial_chunk_rows <= b.max_chunk_rows)
    {
        out.push(problem_at!(
            ["backfill"],
            format!(
                "chunk sizes must satisfy 1 ≤ min_chunk_rows ({}) ≤ initial_chunk_rows ({}) ≤ max_chunk_rows ({})",
                b.min_chunk_rows, b.initial_chunk_rows, b.max_chunk_rows
            )
        ));
    }
    if b.workers == 0 || b.workers > 64 {
        out.push(problem_at!(
            ["backfill", "workers"],
            "`workers` must be between 1 and 64"
        ));
    }
    if b.idle_workers == 0 || b.idle_workers > 64 {
        out.push(problem_at!(
            ["backfill", "idle_workers"],
            "`idle_workers` must be between 1 and 64"
        ));
    }
    if b.target_chunk_time.as_millis() == 0 {
        out.push(problem_at!(
            ["backfill", "target_chunk_time"],
            "`target_chunk_time` must be greater than zero"
        ));
    }
    let t = &b.throttle;
    if t.custom_query
        .as_deref()
        .is_some_and(|q| q.trim().is_empty())
    {
        out.push(problem_at!(
            ["backfill", "throttle", "custom_query"],
            "`custom_query` is empty"
        ));
    }
}

fn checks(spec: &PlanSpec, out: &mut Vec<Problem>) {
    let mut seen = BTreeSet::new();
    for (i, c) in spec.checks.iter().enumerate() {
        if c.name.trim().is_empty() {
            out.push(problem_at!(["checks", i, "name"], "a check needs a name"));
        } else if !seen.insert(c.name.as_str()) {
            out.push(problem_at!(
                ["checks", i, "name"],
                format!("duplicate check name `{}`", c.name)
            ));
        }
        match &c.kind {
            CheckKind::Invariant { expect, max, min, .. }
                if expect.is_some() && (max.is_some() || min.is_some()) => {
                    out.push(problem_at!(
                        ["checks", i],
                        format!("invariant `{}` mixes `expect` with `min`/`max`", c.name),
                        "use either `expect = N` or bounds `min`/`max`"
                    ));
                }
            CheckKind::RowCountParity { partition_by: None, key: None, .. } => out.push(problem_at!(
                ["checks", i],
                format!("row-count check `{}` needs `partition_by` or `key`", c.name),
                "partition by an expression (e.g. \"date_trunc('month', created_at)\") or by key ranges (`key = \"id\"`)"
            )),
            CheckKind::SampledChecksum { key, columns, target_columns, .. }
            | CheckKind::FullDiff { key, columns, target_columns, .. } => {
                if key.is_empty() || columns.is_empty() {
                    out.push(problem_at!(["checks", i], format!("check `{}` needs `key` and `columns`", c.name)));
                }
                if !target_columns.is_empty() && target_columns.len() != columns.len() {
                    out.push(problem_at!(
                        ["checks", i, "target_columns"],
                        format!("check `{}`: `target_columns` must have as many entries as `columns`", c.name)
                    ));
                }
            }
            CheckKind::ExpressionParity { key, .. } if key.is_empty() => {
                out.push(problem_at!(["checks", i, "key"], format!("check `{}` needs a key", c.name)));
            }
            _ => {}
        }
    }
}

fn gates(spec: &PlanSpec, out: &mut Vec<Problem>) {
    for (phase, gate) in &spec.gates {
        let at = phase.as_str();
        for (i, name) in gate.checks.iter().enumerate() {
            if !spec.checks.iter().any(|c| &c.name == name) {
                let known: Vec<&str> = spec.checks.iter().map(|c| c.name.as_str()).collect();
                out.push(problem_at!(
                    ["gates", at, "checks", i],
                    format!("gate `{at}` references unknown check `{name}`"),
                    format!(
                        "defined checks: {}",
                        if known.is_empty() {
                            "none".to_string()
                        } else {
                            known.join(", ")
                        }
                    )
                ));
            }
        }
        for (i, role) in gate.signoffs.iter().enumerate() {
            if !spec.roster.contains_key(role) {
                let known: Vec<&str> = spec.roster.keys().map(Role::as_str).collect();
                out.push(problem_at!(
                    ["gates", at, "signoffs", i],
                    format!("gate `{at}` needs a sign-off from role `{role}`, which is not in the roster"),
                    format!("roster roles: {}", known.join(", "))
                ));
            }
        }
        for (i, probe) in gate.probes.iter().enumerate() {
            if let Some(why) = probe_unconfigured(spec, *probe) {
                out.push(problem_at!(
                    ["gates", at, "probes", i],
                    format!("gate `{at}` uses probe `{probe}` but {why}")
                ));
            }
        }
    }
}

fn probe_unconfigured(spec: &PlanSpec, probe: ProbeKind) -> Option<&'static str> {
    let p = &spec.probes;
    match probe {
        ProbeKind::Compatibility if p.compatibility.queries.is_empty() => {
            Some("[[probes.compatibility.queries]] lists no query")
        }
        ProbeKind::HiddenReaders if p.hidden_readers.columns.is_empty() => {
            Some("[probes.hidden_readers] lists no legacy column")
        }
        ProbeKind::PrivilegeParity if p.privilege_parity.pairs.is_empty() => {
            Some("[probes.privilege_parity] lists no column pair")
        }
        ProbeKind::BackfillComplete if spec.backfill.is_none() => {
            Some("the plan has no [backfill]")
        }
        _ => None,
    }
}

fn probes(spec: &PlanSpec, out: &mut Vec<Problem>) {
    for (i, ack) in spec.probes.lint.acknowledge.iter().enumerate() {
        if !matches!(ack.phase, Phase::Expand | Phase::DualWrite) {
            out.push(problem_at!(
                ["probes", "lint", "acknowledge", i, "phase"],
                "lint covers only `expand` and `dual_write`"
            ));
        }
        if ack.reason.trim().is_empty() {
            out.push(problem_at!(
                ["probes", "lint", "acknowledge", i, "reason"],
                "an acknowledgement needs a reason"
            ));
        }
    }
    for (i, c) in spec.probes.hidden_readers.columns.iter().enumerate() {
        if c.split('.').count() < 2 {
            out.push(problem_at!(
                ["probes", "hidden_readers", "columns", i],
                format!(
                    "legacy column `{c}` must be written `table.column` or `schema.table.column`"
                )
            ));
        }
    }
}
