//! Field-level validation: the SQL in every SQL field (scripts, queries, expressions,
//! relations), names and free text (no NUL or control characters), durations within
//! PostgreSQL's limits, and numbers that are finite and in range. Problems inside a string are
//! located at the offending character.

use super::diagnostic::{Problem, Seg};
use super::{CheckKind, Duration, Phase, PlanSpec};
use crate::sql::{self, QueryKind, SqlIssue};

/// The largest timeout PostgreSQL accepts, in milliseconds (`INT_MAX`).
pub(super) const MAX_TIMEOUT_MS: u64 = i32::MAX as u64;

/// At most this many SQL problems are reported per field.
const MAX_SQL_ISSUES: usize = 20;

/// A path written as segments.
macro_rules! path {
    ($($seg:expr),* $(,)?) => { vec![$(Seg::from($seg)),*] };
}

struct Out<'a>(&'a mut Vec<Problem>);

impl Out<'_> {
    fn push(&mut self, path: Vec<Seg>, message: impl Into<String>, hint: Option<&str>) {
        self.0
            .push(Problem::new(path, message, hint.map(str::to_string)));
    }

    fn push_at(
        &mut self,
        path: Vec<Seg>,
        at: usize,
        message: impl Into<String>,
        hint: Option<&str>,
    ) {
        self.0
            .push(Problem::new(path, message, hint.map(str::to_string)).inside(at));
    }

    fn sql(&mut self, path: Vec<Seg>, what: &str, issues: Vec<SqlIssue>) {
        for issue in issues.into_iter().take(MAX_SQL_ISSUES) {
            self.0.push(
                Problem::new(
                    path.clone(),
                    format!("{what}: {}", issue.message),
                    issue.hint,
                )
                .inside(issue.offset),
            );
        }
    }

    fn script(&mut self, path: Vec<Seg>, what: &str, script: &str) {
        self.sql(path, what, sql::check_script(script));
    }

    fn query(&mut self, path: Vec<Seg>, what: &str, text: &str, kind: QueryKind) {
        self.sql(path, what, sql::check_query(text, kind));
    }

    fn expr(&mut self, path: Vec<Seg>, what: &str, text: &str) {
        self.sql(path, what, sql::check_expression(text));
    }

    fn relation(&mut self, path: Vec<Seg>, what: &str, text: &str) {
        self.sql(path, what, sql::check_relation(text));
    }

    /// A name: not blank, no control characters.
    fn name(&mut self, path: Vec<Seg>, what: &str, value: &str) {
        if value.trim().is_empty() {
            self.push(path, format!("{what} must not be empty"), None);
            return;
        }
        if let Some((at, c)) = value.char_indices().find(|(_, c)| c.is_control()) {
            self.push_at(
                path,
                at,
                format!(
                    "{what} contains the control character U+{:04X}",
                    u32::from(c)
                ),
                Some("names may not contain NUL, newlines, tabs or other control characters"),
            );
        }
    }

    /// A dotted name with `min..=max` non-empty parts.
    fn dotted(
        &mut self,
        path: Vec<Seg>,
        what: &str,
        value: &str,
        parts: std::ops::RangeInclusive<usize>,
    ) {
        let before = self.0.len();
        self.name(path.clone(), what, value);
        if self.0.len() > before {
            return;
        }
        let split: Vec<&str> = value.split('.').collect();
        if !parts.contains(&split.len()) || split.iter().any(|p| p.trim().is_empty()) {
            self.push(
                path,
                format!(
                    "{what} `{value}` must have {}–{} non-empty dot-separated parts",
                    parts.start(),
                    parts.end()
                ),
                None,
            );
        }
    }

    /// Free text: no NUL, and no control characters but tab and line breaks (when `lines`).
    fn text(&mut self, path: Vec<Seg>, what: &str, value: &str, lines: bool) {
        let bad = value
            .char_indices()
            .find(|(_, c)| c.is_control() && !(*c == '\t' || (lines && matches!(c, '\n' | '\r'))));
        if let Some((at, c)) = bad {
            self.push_at(
                path,
                at,
                format!(
                    "{what} contains the control character U+{:04X}",
                    u32::from(c)
                ),
                Some("remove it: control characters corrupt terminals, logs and the audit trail"),
            );
        }
    }

    /// A duration PostgreSQL (or a timer) can take: at most `INT_MAX` milliseconds.
    fn duration(&mut self, path: Vec<Seg>, what: &str, d: Duration) {
        if d.as_millis() > MAX_TIMEOUT_MS {
            self.push(
                path,
                format!(
                    "{what} is too long: {} ms, at most {MAX_TIMEOUT_MS} ms (about 24.8 days) is allowed",
                    d.as_millis()
                ),
                Some("PostgreSQL's statement_timeout and lock_timeout take at most 2147483647 ms; use a shorter duration"),
            );
        }
    }

    /// A finite number within `lo..=hi`.
    fn number(&mut self, path: Vec<Seg>, what: &str, v: f64, lo: f64, hi: f64) {
        if !v.is_finite() {
            self.push(
                path,
                format!("{what} must be a finite number, not {v}"),
                Some("nan and inf are not allowed"),
            );
        } else if v < lo || v > hi {
            let range = if hi == f64::MAX {
                format!("at least {lo}")
            } else {
                format!("between {lo} and {hi}")
            };
            self.push(path, format!("{what} is {v}; it must be {range}"), None);
        }
    }
}

/// Appends every field-level problem of `spec`.
pub(super) fn check(spec: &PlanSpec, out: &mut Vec<Problem>) {
    let mut o = Out(out);
    header(spec, &mut o);
    phases(spec, &mut o);
    settings(spec, &mut o);
    backfill(spec, &mut o);
    checks(spec, &mut o);
    gates(spec, &mut o);
    probes(spec, &mut o);
}

fn header(spec: &PlanSpec, o: &mut Out<'_>) {
    o.text(path!["title"], "`title`", &spec.title, false);
    o.text(path!["rationale"], "`rationale`", &spec.rationale, true);
    o.text(path!["author"], "`author`", &spec.author, false);
    o.text(path!["ticket"], "`ticket`", &spec.ticket, false);
    o.name(
        path!["environment"],
        "`environment`",
        spec.environment.as_str(),
    );
    for (role, logins) in &spec.roster {
        o.name(
            path!["roster", role.as_str()],
            "a roster role",
            role.as_str(),
        );
        for (i, login) in logins.iter().enumerate() {
            o.name(
                path!["roster", role.as_str(), i],
                "a PostgreSQL login",
                login,
            );
        }
    }
    for (i, f) in spec.windows.freeze.iter().enumerate() {
        o.text(
            path!["windows", "freeze", i, "reason"],
            "a freeze reason",
            &f.reason,
            true,
        );
    }
}

fn phases(spec: &PlanSpec, o: &mut Out<'_>) {
    for phase in Phase::ALL {
        let p = spec.phases.get(phase);
        let at = phase.as_str();
        o.script(
            path!["phases", at, "apply"],
            &format!("`{phase}` apply"),
            &p.apply,
        );
        if let Some(rb) = &p.rollback {
            o.script(
                path!["phases", at, "rollback"],
                &format!("`{phase}` rollback"),
                rb,
            );
        }
        o.text(
            path!["phases", at, "description"],
            "a description",
            &p.description,
            true,
        );
    }
}

fn settings(spec: &PlanSpec, o: &mut Out<'_>) {
    let s = &spec.settings;
    o.duration(
        path!["settings", "lock_timeout"],
        "`lock_timeout`",
        s.lock_timeout,
    );
    o.duration(
        path!["settings", "statement_timeout"],
        "`statement_timeout`",
        s.statement_timeout,
    );
    o.duration(
        path!["settings", "ddl_max_wait"],
        "`ddl_max_wait`",
        s.ddl_max_wait,
    );
    if s.ddl_max_attempts > 1000 {
        o.push(
            path!["settings", "ddl_max_attempts"],
            "`ddl_max_attempts` must be at most 1000",
            None,
        );
    }
}

#[expect(
    clippy::too_many_lines,
    reason = "one check per [backfill] key, in the order of the table"
)]
fn backfill(spec: &PlanSpec, o: &mut Out<'_>) {
    if let Some(rs) = &spec.read_switch {
        o.name(
            path!["read_switch", "flag"],
            "the feature flag name",
            &rs.flag,
        );
    }
    let Some(b) = &spec.backfill else { return };
    o.dotted(
        path!["backfill", "table"],
        "the backfill table",
        &b.table,
        1..=2,
    );
    for (i, k) in b.key.iter().enumerate() {
        o.name(path!["backfill", "key", i], "a key column", k);
    }
    for (col, expr) in &b.set {
        o.name(path!["backfill", "set", col.as_str()], "a column name", col);
        o.expr(
            path!["backfill", "set", col.as_str()],
            &format!("the expression for `{col}`"),
            expr,
        );
    }
    if !b.pending.trim().is_empty() {
        o.expr(path!["backfill", "pending"], "`pending`", &b.pending);
    }
    if let Some(into) = &b.into {
        o.dotted(
            path!["backfill", "into"],
            "the table to copy into",
            into,
            1..=2,
        );
    }
    for (col, expr) in &b.columns {
        o.name(
            path!["backfill", "columns", col.as_str()],
            "a column name",
            col,
        );
        o.expr(
            path!["backfill", "columns", col.as_str()],
            &format!("the expression for `{col}`"),
            expr,
        );
    }
    for (i, k) in b.target_key.iter().enumerate() {
        o.name(path!["backfill", "target_key", i], "a target key column", k);
    }
    o.duration(
        path!["backfill", "target_chunk_time"],
        "`target_chunk_time`",
        b.target_chunk_time,
    );
    let t = &b.throttle;
    let at = |k: &str| path!["backfill", "throttle", k];
    o.duration(at("max_replay_lag"), "`max_replay_lag`", t.max_replay_lag);
    o.duration(
        at("fail_closed_after"),
        "`fail_closed_after`",
        t.fail_closed_after,
    );
    o.number(
        at("max_wal_mib_per_second"),
        "`max_wal_mib_per_second`",
        t.max_wal_mib_per_second,
        0.0,
        f64::MAX,
    );
    o.number(
        at("custom_limit"),
        "`custom_limit`",
        t.custom_limit,
        f64::MIN,
        f64::MAX,
    );
    let wal = t.max_chunk_wal_mib;
    if !wal.is_finite() || wal <= 0.0 {
        o.push(
            at("max_chunk_wal_mib"),
            format!("`max_chunk_wal_mib` is {wal}; it must be a finite number above 0"),
            Some("2 bounds each chunk to about 2 MiB of WAL"),
        );
    }
    let ratio = t.max_app_latency_ratio;
    if !ratio.is_finite() || ratio <= 1.0 {
        o.push(
            at("max_app_latency_ratio"),
            format!("`max_app_latency_ratio` is {ratio}; it must be a finite number above 1"),
            Some(
                "1.25 lets the application's latency rise by a quarter before the backfill yields",
            ),
        );
    }
    let share = t.min_slot_safe_wal_percent;
    if !share.is_finite() || share <= 0.0 || share >= 100.0 {
        o.push(
            at("min_slot_safe_wal_percent"),
            format!(
                "`min_slot_safe_wal_percent` is {share}; it must be a percentage above 0 and below 100"
            ),
            Some("25 blocks the gates once a slot has under a quarter of max_slot_wal_keep_size left"),
        );
    }
    if t.max_active_backends == 0 {
        o.push(
            at("max_active_backends"),
            "`max_active_backends` must be at least 1",
            Some("0 would pause the backfill for ever"),
        );
    }
    if let Some(q) = t.custom_query.as_deref().filter(|q| !q.trim().is_empty()) {
        o.query(at("custom_query"), "`custom_query`", q, QueryKind::ReadOnly);
    }
}

fn checks(spec: &PlanSpec, o: &mut Out<'_>) {
    for (i, c) in spec.checks.iter().enumerate() {
        let f = CheckFields { i, name: &c.name };
        o.name(f.at("name"), "a check name", &c.name);
        o.text(f.at("description"), "a description", &c.description, true);
        if let Some(t) = c.timeout {
            o.duration(f.at("timeout"), &f.what("timeout"), t);
            if t.as_millis() == 0 {
                o.push(
                    f.at("timeout"),
                    format!("{} must be greater than zero", f.what("timeout")),
                    Some("0 would disable the statement timeout"),
                );
            }
        }
        check_kind(o, &f, &c.kind);
    }
}

/// The `i`-th check, named `name`: where its fields are and how messages name them.
struct CheckFields<'c> {
    i: usize,
    name: &'c str,
}

impl CheckFields<'_> {
    fn at(&self, k: &str) -> Vec<Seg> {
        path!["checks", self.i, k]
    }

    fn what(&self, k: &str) -> String {
        format!("check `{}`: `{k}`", self.name)
    }

    /// Each entry of the list field `k` as an SQL expression.
    fn list(&self, o: &mut Out<'_>, k: &str, items: &[String]) {
        for (j, e) in items.iter().enumerate() {
            o.expr(path!["checks", self.i, k, j], &self.what(k), e);
        }
    }

    /// `key`, `target_key`, `columns` and `target_columns` of a two-table comparison.
    fn key_columns(&self, o: &mut Out<'_>, lists: [&[String]; 4]) {
        let names = ["key", "target_key", "columns", "target_columns"];
        for (k, items) in names.into_iter().zip(lists) {
            self.list(o, k, items);
        }
    }

    /// A `target_key`, when given, pairs one to one with `key`.
    fn key_lengths(&self, o: &mut Out<'_>, key: &[String], target_key: &[String]) {
        if !target_key.is_empty() && target_key.len() != key.len() {
            o.push(
                self.at("target_key"),
                format!(
                    "{} must have as many entries as `key`",
                    self.what("target_key")
                ),
                None,
            );
        }
    }
}

/// The fields of one check kind.
fn check_kind(o: &mut Out<'_>, f: &CheckFields<'_>, kind: &CheckKind) {
    match kind {
        CheckKind::RowCountParity {
            source,
            target,
            partition_by,
            key,
            partitions,
        } => {
            o.relation(f.at("source"), &f.what("source"), source);
            o.relation(f.at("target"), &f.what("target"), target);
            if let Some(p) = partition_by {
                o.expr(f.at("partition_by"), &f.what("partition_by"), p);
            }
            if let Some(k) = key {
                o.expr(f.at("key"), &f.what("key"), k);
            }
            if !(1..=10_000).contains(partitions) {
                o.push(
                    f.at("partitions"),
                    format!("{} must be between 1 and 10000", f.what("partitions")),
                    None,
                );
            }
        }
        CheckKind::ExpressionParity {
            table,
            key,
            column,
            expression,
            filter,
        } => {
            o.relation(f.at("table"), &f.what("table"), table);
            f.list(o, "key", key);
            o.expr(f.at("column"), &f.what("column"), column);
            o.expr(f.at("expression"), &f.what("expression"), expression);
            if let Some(filter) = filter {
                o.expr(f.at("filter"), &f.what("filter"), filter);
            }
        }
        CheckKind::SampledChecksum {
            source,
            target,
            key,
            target_key,
            columns,
            target_columns,
            sample_size,
            ..
        } => {
            o.relation(f.at("source"), &f.what("source"), source);
            o.relation(f.at("target"), &f.what("target"), target);
            f.key_columns(o, [key, target_key, columns, target_columns]);
            if *sample_size == 0 {
                o.push(
                    f.at("sample_size"),
                    format!("{} must be at least 1", f.what("sample_size")),
                    None,
                );
            }
            f.key_lengths(o, key, target_key);
        }
        CheckKind::FullDiff {
            source,
            target,
            key,
            target_key,
            columns,
            target_columns,
        } => {
            o.relation(f.at("source"), &f.what("source"), source);
            o.relation(f.at("target"), &f.what("target"), target);
            f.key_columns(o, [key, target_key, columns, target_columns]);
            f.key_lengths(o, key, target_key);
        }
        CheckKind::NullDrift { .. } => null_drift(o, f, kind),
        CheckKind::GoldenQuery { query } => {
            o.query(f.at("query"), &f.what("query"), query, QueryKind::ReadOnly);
        }
        CheckKind::Invariant {
            sql,
            expect,
            max,
            min,
        } => {
            o.query(f.at("sql"), &f.what("sql"), sql, QueryKind::ReadOnly);
            invariant_bounds(o, f, [("expect", expect), ("min", min), ("max", max)]);
        }
    }
}

/// The fields of a `null_drift` check; other kinds are not looked at.
fn null_drift(o: &mut Out<'_>, f: &CheckFields<'_>, kind: &CheckKind) {
    let CheckKind::NullDrift {
        table,
        old,
        new,
        partition_by,
        default_value,
        max_share_increase_pp,
        max_relative_drift,
    } = kind
    else {
        return;
    };
    o.relation(f.at("table"), &f.what("table"), table);
    o.expr(f.at("old"), &f.what("old"), old);
    o.expr(f.at("new"), &f.what("new"), new);
    if let Some(p) = partition_by {
        o.expr(f.at("partition_by"), &f.what("partition_by"), p);
    }
    if let Some(d) = default_value {
        o.expr(f.at("default_value"), &f.what("default_value"), d);
    }
    o.number(
        f.at("max_share_increase_pp"),
        &f.what("max_share_increase_pp"),
        *max_share_increase_pp,
        0.0,
        100.0,
    );
    o.number(
        f.at("max_relative_drift"),
        &f.what("max_relative_drift"),
        *max_relative_drift,
        0.0,
        1.0,
    );
}

/// An invariant's `expect`, `min` and `max` (in that order): finite, and `min` ≤ `max`.
fn invariant_bounds(o: &mut Out<'_>, f: &CheckFields<'_>, bounds: [(&str, &Option<f64>); 3]) {
    for (k, v) in bounds {
        if let Some(v) = v {
            o.number(f.at(k), &f.what(k), *v, f64::MIN, f64::MAX);
        }
    }
    let [_, (_, min), (_, max)] = bounds;
    if let (Some(lo), Some(hi)) = (min, max) {
        if lo > hi {
            o.push(
                f.at("min"),
                format!(
                    "check `{}`: `min` ({lo}) is greater than `max` ({hi})",
                    f.name
                ),
                None,
            );
        }
    }
}

fn gates(spec: &PlanSpec, o: &mut Out<'_>) {
    for (phase, gate) in &spec.gates {
        if let Some(d) = gate.observe {
            o.duration(path!["gates", phase.as_str(), "observe"], "`observe`", d);
        }
    }
}

fn probes(spec: &PlanSpec, o: &mut Out<'_>) {
    let p = &spec.probes;
    for (i, a) in p.lint.acknowledge.iter().enumerate() {
        o.name(
            path!["probes", "lint", "acknowledge", i, "rule"],
            "a lint rule",
            &a.rule,
        );
        o.text(
            path!["probes", "lint", "acknowledge", i, "reason"],
            "a reason",
            &a.reason,
            true,
        );
    }
    let mut names = std::collections::BTreeSet::new();
    for (i, q) in p.compatibility.queries.iter().enumerate() {
        let at = |k: &str| path!["probes", "compatibility", "queries", i, k];
        o.name(at("name"), "a compatibility query name", &q.name);
        if !q.name.trim().is_empty() && !names.insert(q.name.as_str()) {
            o.push(
                at("name"),
                format!("duplicate compatibility query name `{}`", q.name),
                None,
            );
        }
        o.query(
            at("sql"),
            &format!("compatibility query `{}`", q.name),
            &q.sql,
            QueryKind::Preparable,
        );
        for (j, param) in q.params.iter().enumerate() {
            if let Some(n) = param.find('\0') {
                o.push_at(
                    path!["probes", "compatibility", "queries", i, "params", j],
                    n,
                    "a parameter contains a NUL character, which PostgreSQL cannot accept",
                    None,
                );
            }
        }
    }
    let eb = &p.error_budget;
    let at = |k: &str| path!["probes", "error_budget", k];
    o.number(
        at("max_latency_ratio"),
        "`max_latency_ratio`",
        eb.max_latency_ratio,
        f64::MIN_POSITIVE,
        f64::MAX,
    );
    o.number(
        at("min_latency_increase_ms"),
        "`min_latency_increase_ms`",
        eb.min_latency_increase_ms,
        0.0,
        f64::MAX,
    );
    o.number(
        at("max_rollback_increase_pp"),
        "`max_rollback_increase_pp`",
        eb.max_rollback_increase_pp,
        0.0,
        100.0,
    );
    if let Some(m) = eb.metric_max {
        o.number(at("metric_max"), "`metric_max`", m, f64::MIN, f64::MAX);
    }
    if let Some(q) = &eb.metric_query {
        o.query(at("metric_query"), "`metric_query`", q, QueryKind::ReadOnly);
    }
    for (i, c) in p.hidden_readers.columns.iter().enumerate() {
        o.dotted(
            path!["probes", "hidden_readers", "columns", i],
            "a legacy column",
            c,
            2..=3,
        );
    }
    for (i, pair) in p.privilege_parity.pairs.iter().enumerate() {
        for (j, name) in pair.iter().enumerate() {
            o.dotted(
                path!["probes", "privilege_parity", "pairs", i, j],
                "a privilege-parity name",
                name,
                1..=3,
            );
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn numbers_must_be_finite_and_in_range() {
        let mut v = Vec::new();
        let mut o = Out(&mut v);
        o.number(path!["x"], "x", f64::NAN, 0.0, 1.0);
        o.number(path!["x"], "x", f64::INFINITY, 0.0, f64::MAX);
        o.number(path!["x"], "x", -1.0, 0.0, f64::MAX);
        o.number(path!["x"], "x", 2.0, 0.0, 1.0);
        o.number(path!["x"], "x", 0.5, 0.0, 1.0);
        assert_eq!(v.len(), 4, "{v:?}");
    }

    #[test]
    fn durations_stay_within_int_max_milliseconds() {
        let mut v = Vec::new();
        let mut o = Out(&mut v);
        o.duration(path!["d"], "d", Duration::from_millis(MAX_TIMEOUT_MS));
        assert!(v.is_empty());
        let mut o = Out(&mut v);
        o.duration(path!["d"], "d", Duration::from_millis(MAX_TIMEOUT_MS + 1));
        assert_eq!(v.len(), 1);
    }

    #[test]
    fn names_refuse_control_characters_at_their_place() {
        let mut v = Vec::new();
        let mut o = Out(&mut v);
        o.name(path!["n"], "n", "ab\u{1b}[2J");
        o.name(path!["n"], "n", "  ");
        o.name(path!["n"], "n", "fine.name");
        assert_eq!(v.len(), 2, "{v:?}");
        assert_eq!(v[0].at, Some(2));
    }
}
