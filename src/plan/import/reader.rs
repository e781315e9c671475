//! Reading pgroll's documents: each field taken once, what is left over is an unknown field
//! named by its path.

use serde_json::{Map, Value};

use super::{ImportError, Item};
use crate::plan::operations::{Check, OperationSpec};
use crate::plan::Phase;

/// The file being read and the operations read so far.
pub(super) struct Cx {
    pub(super) path: String,
    pub(super) text: String,
    /// The text is JSON (else YAML).
    pub(super) json: bool,
    pub(super) items: Vec<Item>,
    /// The line of the operation being read.
    pub(super) line: usize,
}

impl Cx {
    /// An error at the field `field` (a path such as `operations[0].add_column.column`), placed
    /// at `file:line:col` of the field, or of its nearest enclosing field when it is absent.
    pub(super) fn err(&self, field: &str, message: impl Into<String>) -> ImportError {
        let field = field.trim_start_matches('.');
        let (line, col) = self.place(field).unwrap_or((1, 1));
        let message = message.into();
        ImportError {
            at: format!("{}:{line}:{col}", self.path),
            message: if field.is_empty() {
                message
            } else {
                format!("{field}: {message}")
            },
        }
    }

    /// 1-based line and column of `field` in the text.
    pub(super) fn place(&self, field: &str) -> Option<(usize, usize)> {
        super::locate::locate(&self.text, self.json, field)
    }

    pub(super) fn push(&mut self, at: &str, op: OperationSpec, note: Option<String>) {
        self.items.push(Item {
            op,
            at: format!("{}:{}", self.path, self.line),
            source: format!("pgroll {at}"),
            risk: None,
            note,
        });
    }
}

/// An object whose fields are taken one by one; what is left at the end is unknown.
pub(super) struct Obj {
    pub(super) at: String,
    map: Map<String, Value>,
}

impl Obj {
    pub(super) fn new(cx: &Cx, at: &str, v: &Value) -> Result<Obj, ImportError> {
        match v {
            Value::Object(m) => Ok(Obj {
                at: at.to_string(),
                map: m.clone(),
            }),
            _ => Err(cx.err(at, "must be a mapping of fields")),
        }
    }

    pub(super) fn field(&self, key: &str) -> String {
        format!("{}.{key}", self.at)
    }

    pub(super) fn take(&mut self, key: &str) -> Option<Value> {
        self.map.remove(key)
    }

    pub(super) fn string(&mut self, cx: &Cx, key: &str) -> Result<Option<String>, ImportError> {
        match self.take(key) {
            None | Some(Value::Null) => Ok(None),
            Some(Value::String(s)) => Ok(Some(s)),
            Some(Value::Number(n)) => Ok(Some(n.to_string())),
            Some(_) => Err(cx.err(&self.field(key), "must be a string")),
        }
    }

    pub(super) fn need(&mut self, cx: &Cx, key: &str) -> Result<String, ImportError> {
        self.string(cx, key)?
            .filter(|s| !s.trim().is_empty())
            .ok_or_else(|| cx.err(&self.field(key), "is required"))
    }

    pub(super) fn flag(&mut self, cx: &Cx, key: &str) -> Result<Option<bool>, ImportError> {
        match self.take(key) {
            None | Some(Value::Null) => Ok(None),
            Some(Value::Bool(b)) => Ok(Some(b)),
            Some(Value::String(s)) if s == "true" || s == "false" => Ok(Some(s == "true")),
            Some(_) => Err(cx.err(&self.field(key), "must be true or false")),
        }
    }

    pub(super) fn obj(&mut self, cx: &Cx, key: &str) -> Result<Option<Obj>, ImportError> {
        match self.take(key) {
            None | Some(Value::Null) => Ok(None),
            Some(v) => Obj::new(cx, &self.field(key), &v).map(Some),
        }
    }

    pub(super) fn list(&mut self, cx: &Cx, key: &str) -> Result<Vec<Value>, ImportError> {
        match self.take(key) {
            None | Some(Value::Null) => Ok(Vec::new()),
            Some(Value::Array(a)) => Ok(a),
            Some(_) => Err(cx.err(&self.field(key), "must be a list")),
        }
    }

    pub(super) fn strings(&mut self, cx: &Cx, key: &str) -> Result<Vec<String>, ImportError> {
        let at = self.field(key);
        self.list(cx, key)?
            .into_iter()
            .enumerate()
            .map(|(i, v)| match v {
                Value::String(s) => Ok(s),
                _ => Err(cx.err(&format!("{at}[{i}]"), "must be a name")),
            })
            .collect()
    }

    /// A field Cutover cannot honour: an error when it is set.
    pub(super) fn forbid(&mut self, cx: &Cx, key: &str, why: &str) -> Result<(), ImportError> {
        match self.take(key) {
            None | Some(Value::Null) | Some(Value::Bool(false)) => Ok(()),
            Some(Value::String(s)) if s.is_empty() => Ok(()),
            Some(_) => Err(cx.err(&self.field(key), format!("cannot be honoured: {why}"))),
        }
    }

    pub(super) fn done(self, cx: &Cx) -> Result<(), ImportError> {
        match self.map.keys().next() {
            Some(k) => Err(cx.err(&self.field(k), format!("unknown field `{k}`"))),
            None => Ok(()),
        }
    }
}

/// A raw `sql` operation.
pub(super) fn raw(up: String, down: Option<String>, phase: Phase) -> OperationSpec {
    OperationSpec {
        op: "sql".into(),
        up: Some(up),
        down,
        phase: (phase != Phase::Expand).then_some(phase),
        ..OperationSpec::default()
    }
}

/// `up`/`down` maps of the multi-column operations: Cutover does not rewrite the column, so only
/// the identity (`col: col`) is accepted.
pub(super) fn identity_rewrites(cx: &Cx, o: &mut Obj, key: &str) -> Result<(), ImportError> {
    let at = o.field(key);
    match o.take(key) {
        None | Some(Value::Null) => Ok(()),
        Some(Value::String(s)) if s.trim().is_empty() => Ok(()),
        Some(Value::Object(m)) => {
            for (col, v) in m {
                let same = v
                    .as_str()
                    .is_some_and(|s| s.trim().trim_matches('"') == col || s.trim().is_empty());
                if !same {
                    return Err(cx.err(
                        &format!("{at}.{col}"),
                        "cannot be honoured: Cutover changes constraints in place and does not rewrite the column (fix the rows first, or use alter_column with `up`/`down`)",
                    ));
                }
            }
            Ok(())
        }
        Some(_) => Err(cx.err(&at, "must map column names to SQL")),
    }
}

/// A named check (`{ name, constraint }`).
pub(super) fn check(cx: &Cx, mut c: Obj) -> Result<Check, ImportError> {
    let name = c.need(cx, "name")?;
    let constraint = c.need(cx, "constraint")?;
    c.forbid(
        cx,
        "no_inherit",
        "Cutover's check constraints are inherited",
    )?;
    c.done(cx)?;
    Ok(Check::Named { name, constraint })
}

/// A primary key added without a long lock: its unique index built concurrently in expand
/// (dropped by the rollback), attached as the key at contract. Each step with its note.
pub(super) fn primary_key_steps(
    t: &crate::plan::operations::idents::Table,
    name: &str,
    cols: &[String],
) -> [(OperationSpec, &'static str); 2] {
    use crate::plan::operations::idents::ident;
    let list = cols.iter().map(|c| ident(c)).collect::<Vec<_>>().join(", ");
    let index = format!(
        "CREATE UNIQUE INDEX CONCURRENTLY IF NOT EXISTS {} ON {} ({list})",
        ident(name),
        t.sql()
    );
    let drop = format!("DROP INDEX CONCURRENTLY IF EXISTS {}", t.sibling(name));
    let attach = format!(
        "ALTER TABLE {} ADD CONSTRAINT {} PRIMARY KEY USING INDEX {}",
        t.sql(),
        ident(name),
        ident(name)
    );
    [
        (
            raw(index, Some(drop), Phase::Expand),
            "primary key, step 1: its unique index, built concurrently",
        ),
        (
            raw(attach, None, Phase::Contract),
            "primary key, step 2: the index becomes the key at contract (its columns must be NOT NULL)",
        ),
    ]
}
