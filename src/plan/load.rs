//! From plan text to a [`PlanSpec`], collecting every structural problem in one run.
//!
//! serde stops at the first error, so the document is deserialized repeatedly: after each
//! error the offending entry is removed (unknown key, wrong type) or a stand-in is put in place
//! of a missing one, and deserialization runs again, up to [`MAX_REPAIRS`] times. Positions
//! come from the spans of the parsed document, so an error in the third `[[checks]]` points at
//! the third. Checks are internally tagged by `kind`; to keep the spans of their keys, each
//! check table is reshaped to `{ name, description, timeout, kind = { <kind> = { … } } }` first.

use std::borrow::Cow;
use std::ops::Range;

use serde::Deserialize;
use toml::de::{DeArray, DeTable, DeValue};
use toml::Spanned;

use super::diagnostic::{hint_for, Diagnostic, LineIndex, Seg};
use super::PlanSpec;

/// How many errors one load reports at most (and how often it re-runs deserialization).
pub(super) const MAX_REPAIRS: usize = 100;

/// Keys of a check table that are not its kind's parameters.
const COMMON_CHECK_KEYS: [&str; 3] = ["name", "description", "timeout"];

/// The outcome of deserialization.
pub(super) struct Structure {
    /// The spec, when the document has the right shape.
    pub spec: Option<PlanSpec>,
    /// Every structural problem found.
    pub diagnostics: Vec<Diagnostic>,
    /// Paths of the original document that were repaired to go on: semantic problems under
    /// them would be consequences, not findings.
    pub repaired: Vec<Vec<Seg>>,
}

type Value<'i> = Spanned<DeValue<'i>>;

/// Stand-ins tried, in order, for a missing required key.
const STAND_INS: [&str; 7] = ["\"\"", "[]", "{}", "0", "false", "\"expand\"", "0.0"];

/// Deserializes `source` (already known to be syntactically valid TOML).
pub(super) fn structure(file: &str, source: &str) -> Structure {
    let mut out = Structure {
        spec: None,
        diagnostics: Vec::new(),
        repaired: Vec::new(),
    };
    let lines = LineIndex::new(source);
    let root = match DeTable::parse(source) {
        Ok(root) => root,
        Err(e) => {
            out.diagnostics.push(diagnostic(
                file,
                &lines,
                e.span().map_or(0, |s| s.start),
                e.message().trim(),
            ));
            return out;
        }
    };
    let root_span = root.span();
    let mut doc = root.into_inner();
    let mut repairs = Repairs {
        file,
        source,
        lines: LineIndex::new(source),
        next_sentinel: source.len() + 1,
        stand_ins: Vec::new(),
        silenced: Vec::new(),
    };
    super::operations::fill_phases(&mut doc, root_span.start..root_span.start);
    let names = check_names(&doc);
    reshape_checks(&mut doc, &names, &mut repairs, &mut out);
    for _ in 0..MAX_REPAIRS {
        let de = toml::de::Deserializer::from(Spanned::new(root_span.clone(), doc.clone()));
        let err = match PlanSpec::deserialize(de) {
            Ok(spec) => {
                out.spec = Some(spec);
                return out;
            }
            Err(e) => e,
        };
        if out.diagnostics.len() > super::MAX_DIAGNOSTICS {
            break;
        }
        if !repairs.repair(&mut doc, &root_span, &err, &names, &mut out) {
            break;
        }
    }
    out.spec = None;
    if out.diagnostics.is_empty() {
        out.diagnostics
            .push(diagnostic(file, &lines, 0, "the plan could not be read"));
    }
    out
}

fn diagnostic(file: &str, lines: &LineIndex<'_>, offset: usize, message: &str) -> Diagnostic {
    let (line, col) = lines.line_col(offset);
    Diagnostic {
        file: file.to_string(),
        line,
        col,
        hint: hint_for(message),
        message: message.to_string(),
    }
}

/// The `name` of each check (for messages), by index.
fn check_names(doc: &DeTable<'_>) -> Vec<Option<String>> {
    match doc.get("checks").map(|v| v.get_ref()) {
        Some(DeValue::Array(items)) => items
            .iter()
            .map(|item| match item.get_ref() {
                DeValue::Table(t) => match t.get("name").map(|v| v.get_ref()) {
                    Some(DeValue::String(s)) => Some(s.to_string()),
                    _ => None,
                },
                _ => None,
            })
            .collect(),
        _ => Vec::new(),
    }
}

/// A check that always deserializes, put in place of one whose kind is unusable.
fn dummy_kind(span: Range<usize>) -> Value<'static> {
    let mut inner = DeTable::new();
    inner.insert(
        Spanned::new(span.clone(), Cow::Borrowed("query")),
        Spanned::new(span.clone(), DeValue::String(Cow::Borrowed("SELECT 1"))),
    );
    let mut kind = DeTable::new();
    kind.insert(
        Spanned::new(span.clone(), Cow::Borrowed("golden_query")),
        Spanned::new(span.clone(), DeValue::Table(inner)),
    );
    Spanned::new(span, DeValue::Table(kind))
}

fn reshape_checks(
    doc: &mut DeTable<'_>,
    names: &[Option<String>],
    repairs: &mut Repairs<'_>,
    out: &mut Structure,
) {
    let Some(checks) = doc.get_mut("checks") else {
        return;
    };
    let DeValue::Array(items) = checks.get_mut() else {
        return;
    };
    for (i, item) in items.iter_mut().enumerate() {
        let span = item.span();
        let DeValue::Table(table) = item.get_mut() else {
            continue;
        };
        let prefix = check_prefix(names.get(i).cloned().flatten());
        let kind = match table.remove_entry("kind") {
            None => {
                out.diagnostics.push(Diagnostic {
                    hint: Some("add `kind = \"…\"`: row_count_parity, expression_parity, sampled_checksum, full_diff, null_drift, golden_query or invariant".into()),
                    ..diagnostic(repairs.file, &repairs.lines, span.start, &format!("{prefix}missing field `kind`"))
                });
                None
            }
            Some((key, value)) => match value.get_ref() {
                DeValue::String(s) => Some((key, value.span(), s.clone())),
                other => {
                    out.diagnostics.push(diagnostic(
                        repairs.file,
                        &repairs.lines,
                        value.span().start,
                        &format!(
                            "{prefix}invalid type: {}, expected a string for `kind`",
                            other.type_str()
                        ),
                    ));
                    None
                }
            },
        };
        let Some((key, value_span, kind)) = kind else {
            out.repaired.push(vec![Seg::from("checks"), Seg::Index(i)]);
            let sentinel = repairs.sentinel();
            table.insert(
                Spanned::new(sentinel.clone(), Cow::Borrowed("kind")),
                dummy_kind(sentinel),
            );
            let params: Vec<String> = table
                .iter()
                .map(|(k, _)| k.get_ref().to_string())
                .filter(|k| !COMMON_CHECK_KEYS.contains(&k.as_str()) && k != "kind")
                .collect();
            for k in params {
                table.remove(k.as_str());
            }
            continue;
        };
        let moved: Vec<String> = table
            .iter()
            .map(|(k, _)| k.get_ref().to_string())
            .filter(|k| !COMMON_CHECK_KEYS.contains(&k.as_str()))
            .collect();
        let mut params = DeTable::new();
        for k in moved {
            if let Some((k, v)) = table.remove_entry(k.as_str()) {
                params.insert(k, v);
            }
        }
        // The kind's parameters get the span of the `kind` value: a missing parameter is
        // reported there, and stays apart from the check's own table.
        let mut variant = DeTable::new();
        variant.insert(
            Spanned::new(key.span(), kind),
            Spanned::new(value_span.clone(), DeValue::Table(params)),
        );
        table.insert(key, Spanned::new(value_span, DeValue::Table(variant)));
    }
}

fn check_prefix(name: Option<String>) -> String {
    name.map(|n| format!("check `{n}`: ")).unwrap_or_default()
}

/// Where an error points in the document.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Hit {
    /// At a key (unknown fields).
    Key,
    /// At a value.
    Value,
}

struct Repairs<'s> {
    file: &'s str,
    source: &'s str,
    lines: LineIndex<'s>,
    next_sentinel: usize,
    /// (sentinel span start, table path, key, stand-in index)
    stand_ins: Vec<(usize, Vec<Seg>, String, usize)>,
    /// Table path + key of entries removed after an error: their "missing field" is silent.
    silenced: Vec<(Vec<Seg>, String)>,
}

impl Repairs<'_> {
    /// A span outside the source, marking a stand-in value.
    fn sentinel(&mut self) -> Range<usize> {
        let s = self.next_sentinel;
        self.next_sentinel += 1;
        s..s + 1
    }

    /// Records `err` and changes `doc` so the next run goes past it; false when it cannot.
    fn repair(
        &mut self,
        doc: &mut DeTable<'_>,
        root_span: &Range<usize>,
        err: &toml::de::Error,
        names: &[Option<String>],
        out: &mut Structure,
    ) -> bool {
        let message = normalize(err.message().trim());
        let Some(span) = err.span() else {
            out.diagnostics
                .push(diagnostic(self.file, &self.lines, 0, &message));
            return false;
        };
        let missing = message
            .strip_prefix("missing field `")
            .and_then(|m| m.split('`').next())
            .map(str::to_string);
        if span.start > self.source.len() {
            // An error inside a stand-in: fill it silently, or try the next kind of stand-in.
            return match missing {
                Some(field) => self.fill_stand_in(doc, span.start, field),
                None => self.next_stand_in(doc, span.start),
            };
        }
        let want = if message.starts_with("unknown field") {
            Hit::Key
        } else {
            Hit::Value
        };
        let path = if missing.is_some() && span == *root_span {
            Some(Vec::new())
        } else {
            find(doc, &span, want).or_else(|| find(doc, &span, Hit::Key))
        };
        let Some(path) = path else {
            out.diagnostics
                .push(diagnostic(self.file, &self.lines, span.start, &message));
            return false;
        };
        let prefix = match (path.first(), path.get(1)) {
            (Some(Seg::Key(k)), Some(Seg::Index(i))) if k == "checks" => {
                check_prefix(names.get(*i).cloned().flatten())
            }
            _ => String::new(),
        };
        if let Some(field) = missing {
            if !self.silenced.contains(&(path.clone(), field.clone())) {
                out.diagnostics.push(diagnostic(
                    self.file,
                    &self.lines,
                    span.start,
                    &format!("{prefix}{message}"),
                ));
            }
            let mut full = original(&path);
            full.push(Seg::Key(field.clone()));
            out.repaired.push(full);
            return self.put_stand_in(doc, path, field, 0);
        }
        if want == Hit::Key {
            if let Some(allowed) = expected_keys(&message) {
                return self.remove_unknown(doc, &path, &allowed, &prefix, out);
            }
        }
        out.diagnostics.push(diagnostic(
            self.file,
            &self.lines,
            span.start,
            &format!("{prefix}{message}"),
        ));
        out.repaired.push(original(&path));
        // An unknown kind: the whole check is replaced.
        if let [Seg::Key(c), Seg::Index(i), Seg::Key(k), Seg::Key(_)] = path.as_slice() {
            if c == "checks" && k == "kind" {
                let at = vec![Seg::from("checks"), Seg::Index(*i), Seg::from("kind")];
                let sentinel = self.sentinel();
                return match value_at(doc, &at) {
                    Some(v) => {
                        *v = dummy_kind(sentinel);
                        true
                    }
                    None => false,
                };
            }
        }
        self.remove(doc, &path)
    }

    /// Reports and removes every key of the table holding `path` that is not in `allowed`, in
    /// one go (a table with many unknown keys costs one run, not one per key).
    fn remove_unknown(
        &mut self,
        doc: &mut DeTable<'_>,
        path: &[Seg],
        allowed: &[String],
        prefix: &str,
        out: &mut Structure,
    ) -> bool {
        let Some((_, parent)) = path.split_last() else {
            return false;
        };
        let Some(table) = table_at(doc, parent) else {
            return false;
        };
        let expected = allowed
            .iter()
            .map(|k| format!("`{k}`"))
            .collect::<Vec<_>>()
            .join(", ");
        let unknown: Vec<(String, usize)> = table
            .iter()
            .filter(|(k, _)| !allowed.iter().any(|a| a == k.get_ref().as_ref()))
            .map(|(k, _)| (k.get_ref().to_string(), k.span().start))
            .collect();
        if unknown.is_empty() {
            return false;
        }
        for (key, at) in unknown {
            table.remove(key.as_str());
            out.diagnostics.push(diagnostic(
                self.file,
                &self.lines,
                at,
                &format!("{prefix}unknown field `{key}`, expected one of {expected}"),
            ));
            let mut full = original(parent);
            full.push(Seg::Key(key.clone()));
            out.repaired.push(full);
            self.silenced.push((parent.to_vec(), key));
        }
        true
    }

    /// Removes the entry or array element at `path`.
    fn remove(&mut self, doc: &mut DeTable<'_>, path: &[Seg]) -> bool {
        let Some((last, parent)) = path.split_last() else {
            return false;
        };
        match last {
            Seg::Key(key) => {
                let Some(table) = table_at(doc, parent) else {
                    return false;
                };
                if table.remove(key.as_str()).is_none() {
                    return false;
                }
                self.silenced.push((parent.to_vec(), key.clone()));
                true
            }
            Seg::Index(i) => {
                let Some(v) = value_at(doc, parent) else {
                    return false;
                };
                let DeValue::Array(items) = v.get_mut() else {
                    return false;
                };
                let mut kept = DeArray::new();
                for (n, item) in items.iter().enumerate() {
                    if n != *i {
                        kept.push(item.clone());
                    }
                }
                *items = kept;
                true
            }
        }
    }

    fn put_stand_in(
        &mut self,
        doc: &mut DeTable<'_>,
        table: Vec<Seg>,
        key: String,
        index: usize,
    ) -> bool {
        let Some(text) = STAND_INS.get(index) else {
            return false;
        };
        let Ok(value) = DeValue::parse(text) else {
            return false;
        };
        let sentinel = self.sentinel();
        let Some(t) = table_at(doc, &table) else {
            return false;
        };
        let mut value = value.into_inner();
        value.make_owned();
        t.insert(
            Spanned::new(sentinel.clone(), Cow::Owned(key.clone())),
            Spanned::new(sentinel.clone(), value),
        );
        self.stand_ins.push((sentinel.start, table, key, index));
        true
    }

    /// The stand-in table at `sentinel` misses `field`: give it a stand-in too.
    fn fill_stand_in(&mut self, doc: &mut DeTable<'_>, sentinel: usize, field: String) -> bool {
        let Some((_, table, key, _)) = self.stand_ins.iter().find(|s| s.0 == sentinel) else {
            return false;
        };
        let mut path = table.clone();
        path.push(Seg::Key(key.clone()));
        self.put_stand_in(doc, path, field, 0)
    }

    /// The stand-in at `sentinel` has the wrong type: try the next one.
    fn next_stand_in(&mut self, doc: &mut DeTable<'_>, sentinel: usize) -> bool {
        let Some(pos) = self.stand_ins.iter().position(|s| s.0 == sentinel) else {
            return false;
        };
        let (_, table, key, index) = self.stand_ins.remove(pos);
        self.put_stand_in(doc, table, key, index + 1)
    }
}

/// The keys an "unknown field" message lists as expected.
fn expected_keys(message: &str) -> Option<Vec<String>> {
    let list = message.split_once(", expected one of ")?.1;
    let keys: Vec<String> = list
        .split(", ")
        .map(|k| k.trim().trim_matches('`').to_string())
        .filter(|k| !k.is_empty())
        .collect();
    (!keys.is_empty()).then_some(keys)
}

/// Words toml's enum tables use for unknown keys, in the form every other table uses.
fn normalize(message: &str) -> String {
    let Some(rest) = message.strip_prefix("unexpected keys in table: ") else {
        return message.to_string();
    };
    let (keys, available) = rest.split_once(", available keys: ").unwrap_or((rest, ""));
    let quote = |list: &str| {
        list.split(", ")
            .filter(|k| !k.is_empty())
            .map(|k| format!("`{k}`"))
            .collect::<Vec<_>>()
            .join(", ")
    };
    let noun = if keys.contains(", ") {
        "fields"
    } else {
        "field"
    };
    if available.is_empty() {
        format!("unknown {noun} {}", quote(keys))
    } else {
        format!(
            "unknown {noun} {}, expected one of {}",
            quote(keys),
            quote(available)
        )
    }
}

/// The path in the original document of `path` in the reshaped one.
fn original(path: &[Seg]) -> Vec<Seg> {
    match path {
        [Seg::Key(c), Seg::Index(i), Seg::Key(k), Seg::Key(_), rest @ ..]
            if c == "checks" && k == "kind" =>
        {
            let mut out = vec![Seg::from("checks"), Seg::Index(*i)];
            out.extend(rest.iter().cloned());
            out
        }
        _ => path.to_vec(),
    }
}

/// The deepest node whose key (`Hit::Key`) or value span equals `span`.
fn find(doc: &DeTable<'_>, span: &Range<usize>, want: Hit) -> Option<Vec<Seg>> {
    let mut best: Option<Vec<Seg>> = None;
    let mut path = Vec::new();
    walk_table(doc, span, want, &mut path, &mut best);
    best
}

fn consider(path: &[Seg], best: &mut Option<Vec<Seg>>) {
    if best.as_ref().is_none_or(|b| path.len() >= b.len()) {
        *best = Some(path.to_vec());
    }
}

fn walk_table(
    t: &DeTable<'_>,
    span: &Range<usize>,
    want: Hit,
    path: &mut Vec<Seg>,
    best: &mut Option<Vec<Seg>>,
) {
    for (k, v) in t.iter() {
        path.push(Seg::Key(k.get_ref().to_string()));
        if (want == Hit::Key && k.span() == *span) || (want == Hit::Value && v.span() == *span) {
            consider(path, best);
        }
        walk_value(v, span, want, path, best);
        path.pop();
    }
}

fn walk_value(
    v: &Value<'_>,
    span: &Range<usize>,
    want: Hit,
    path: &mut Vec<Seg>,
    best: &mut Option<Vec<Seg>>,
) {
    match v.get_ref() {
        DeValue::Table(t) => walk_table(t, span, want, path, best),
        DeValue::Array(items) => {
            for (i, item) in items.iter().enumerate() {
                path.push(Seg::Index(i));
                if want == Hit::Value && item.span() == *span {
                    consider(path, best);
                }
                walk_value(item, span, want, path, best);
                path.pop();
            }
        }
        _ => {}
    }
}

fn value_at<'a, 'i>(doc: &'a mut DeTable<'i>, path: &[Seg]) -> Option<&'a mut Value<'i>> {
    let (first, rest) = path.split_first()?;
    let Seg::Key(k) = first else { return None };
    let mut node = doc.get_mut(k.as_str())?;
    for seg in rest {
        node = match (seg, node.get_mut()) {
            (Seg::Key(k), DeValue::Table(t)) => t.get_mut(k.as_str())?,
            (Seg::Index(i), DeValue::Array(a)) => a.get_mut(*i)?,
            _ => return None,
        };
    }
    Some(node)
}

fn table_at<'a, 'i>(doc: &'a mut DeTable<'i>, path: &[Seg]) -> Option<&'a mut DeTable<'i>> {
    if path.is_empty() {
        return Some(doc);
    }
    match value_at(doc, path)?.get_mut() {
        DeValue::Table(t) => Some(t),
        _ => None,
    }
}
