//! Walking a relation's key in chunks `(lo, hi]` whose size adapts toward a target statement
//! time. Integer keys are cut by arithmetic ranges (no extra query); other keys by keyset
//! (`ORDER BY key OFFSET n-1 LIMIT 1` on the key's index). The first range is open below and the
//! last open above, so rows of another relation outside this one's key span are still covered.

use std::time::Duration;

use crate::read_only::ReadOnly;

use super::keys::{Bound, Key};
use super::CheckError;
use crate::sql::OWN_TAG;

/// A key range: `lo < key <= hi`; `None` is unbounded.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Range {
    pub lo: Option<Bound>,
    pub hi: Option<Bound>,
}

impl Range {
    /// The whole key space.
    pub(super) fn all() -> Range {
        Range { lo: None, hi: None }
    }

    /// SQL predicate restricting `key` to this range (`TRUE` when unbounded).
    pub(super) fn predicate(&self, key: &Key) -> String {
        let mut parts = Vec::new();
        if let Some(lo) = &self.lo {
            parts.push(format!("{} > {}", key.tuple(), key.literal(lo)));
        }
        if let Some(hi) = &self.hi {
            parts.push(format!("{} <= {}", key.tuple(), key.literal(hi)));
        }
        if parts.is_empty() {
            "TRUE".to_string()
        } else {
            parts.join(" AND ")
        }
    }

    /// Which bounds are present: selects one of the four prepared forms of a statement.
    pub(super) fn shape(&self) -> Shape {
        Shape {
            lo: self.lo.is_some(),
            hi: self.hi.is_some(),
        }
    }

    /// The bound values as statement parameters, in the order of [`Shape::predicate`].
    pub(super) fn params(&self) -> Vec<&str> {
        self.lo
            .iter()
            .chain(self.hi.iter())
            .flatten()
            .map(String::as_str)
            .collect()
    }

    /// Human label, e.g. `(100, 200]`.
    pub(super) fn label(&self) -> String {
        let show = |b: &Option<Bound>, open: &str| match b {
            Some(v) if v.len() == 1 => v[0].clone(),
            Some(v) => format!("({})", v.join(", ")),
            None => open.to_string(),
        };
        format!("({}, {}]", show(&self.lo, "-∞"), show(&self.hi, "+∞"))
    }
}

/// Which bounds a range has; a prepared statement exists per shape.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub(crate) struct Shape {
    pub lo: bool,
    pub hi: bool,
}

impl Shape {
    /// All four shapes.
    pub(super) const ALL: [Shape; 4] = [
        Shape {
            lo: false,
            hi: false,
        },
        Shape {
            lo: true,
            hi: false,
        },
        Shape {
            lo: false,
            hi: true,
        },
        Shape { lo: true, hi: true },
    ];

    /// The range predicate with `$n` placeholders for the bounds.
    pub(super) fn predicate(&self, key: &Key) -> String {
        let mut parts = Vec::new();
        let mut next = 1;
        if self.lo {
            parts.push(format!("{} > {}", key.tuple(), key.param_tuple(next)));
            next += key.exprs.len();
        }
        if self.hi {
            parts.push(format!("{} <= {}", key.tuple(), key.param_tuple(next)));
        }
        if parts.is_empty() {
            "TRUE".to_string()
        } else {
            parts.join(" AND ")
        }
    }
}

enum Mode {
    Int {
        next_lo: i128,
        max: i128,
        first: bool,
    },
    Keyset {
        last: Option<Bound>,
    },
    Done,
}

/// Produces consecutive ranges over `table`'s key.
pub(crate) struct Walker {
    table: String,
    key: Key,
    mode: Mode,
    rows: f64,
    min_rows: f64,
    max_rows: f64,
    /// Rows per key unit (integer keys).
    density: f64,
    /// Key units covered by the last integer range.
    last_width: f64,
    target: Duration,
}

impl Walker {
    /// Starts a walk over `table` (SQL) by `key`, aiming at `target` per chunk statement.
    pub(super) async fn start(
        ro: &ReadOnly<'_>,
        table: &str,
        key: &Key,
        target: Duration,
        max_rows: u32,
    ) -> Result<Walker, CheckError> {
        let mut walker = Walker {
            table: table.to_string(),
            key: key.clone(),
            mode: Mode::Keyset { last: None },
            rows: 10_000f64.min(f64::from(max_rows)),
            min_rows: 500f64.min(f64::from(max_rows)),
            max_rows: f64::from(max_rows),
            density: 1.0,
            last_width: 0.0,
            target,
        };
        if key.is_integer() {
            let k = &key.exprs[0];
            let row = ro
                .query_one(
                    &format!(
                        "{OWN_TAG}SELECT min({k})::int8 AS min, max({k})::int8 AS max, \
                         (SELECT greatest(reltuples, 0)::float8 FROM pg_class WHERE oid = {lit}::regclass) \
                         AS estimate FROM {table}",
                        lit = crate::sql::quote_literal(table)
                    ),
                    &[],
                )
                .await?;
            let min: Option<i64> = row.get("min");
            let max: Option<i64> = row.get("max");
            let estimate: Option<f64> = row.get("estimate");
            walker.mode = match (min, max) {
                (Some(min), Some(max)) => {
                    let span = (i128::from(max) - i128::from(min) + 1) as f64;
                    let est = estimate.filter(|e| *e > 0.0).unwrap_or(span);
                    walker.density = (est / span).clamp(1e-9, 1.0);
                    Mode::Int {
                        next_lo: i128::from(min),
                        max: i128::from(max),
                        first: true,
                    }
                }
                _ => Mode::Keyset { last: None },
            };
        }
        Ok(walker)
    }

    /// Uses fixed chunks of about `rows` rows (no adaptation).
    pub(super) fn fix_rows(&mut self, rows: f64) {
        self.rows = rows.max(1.0);
        self.min_rows = self.rows;
        self.max_rows = self.rows;
    }

    /// The next range, or `None` when the walk is over.
    pub(super) async fn next(&mut self, ro: &ReadOnly<'_>) -> Result<Option<Range>, CheckError> {
        match &mut self.mode {
            Mode::Done => Ok(None),
            Mode::Int {
                next_lo,
                max,
                first,
            } => {
                let width = ((self.rows / self.density).round() as i128).max(1);
                self.last_width = width as f64;
                let lo = if *first {
                    None
                } else {
                    Some(vec![(*next_lo - 1).to_string()])
                };
                *first = false;
                let hi_value = *next_lo - 1 + width;
                let range = if hi_value >= *max {
                    Range { lo, hi: None }
                } else {
                    Range {
                        lo,
                        hi: Some(vec![hi_value.to_string()]),
                    }
                };
                if range.hi.is_none() {
                    self.mode = Mode::Done;
                } else {
                    *next_lo = hi_value + 1;
                }
                Ok(Some(range))
            }
            Mode::Keyset { last } => {
                let lo = last.clone();
                let lower = Range {
                    lo: lo.clone(),
                    hi: None,
                };
                let offset = (self.rows.round() as i64).max(1) - 1;
                let sql = format!(
                    "{OWN_TAG}SELECT {} FROM {} WHERE {} ORDER BY {} OFFSET {offset} LIMIT 1",
                    self.key.select_texts(),
                    self.table,
                    lower.predicate(&self.key),
                    self.key.order_by()
                );
                let row = ro.query_opt(&sql, &[]).await?;
                match row {
                    None => {
                        self.mode = Mode::Done;
                        Ok(Some(Range { lo, hi: None }))
                    }
                    Some(row) => {
                        let bound: Bound = (0..self.key.exprs.len())
                            .map(|i| row.get::<_, String>(i))
                            .collect();
                        *last = Some(bound.clone());
                        Ok(Some(Range {
                            lo,
                            hi: Some(bound),
                        }))
                    }
                }
            }
        }
    }

    /// Feeds back how many rows the last chunk held and how long its statement took.
    pub(super) fn record(&mut self, rows: i64, elapsed: Duration) {
        if let Mode::Int { .. } = self.mode {
            // Re-estimate density from what the last range actually held.
            if self.last_width > 0.0 {
                let observed = rows as f64 / self.last_width;
                self.density = (0.5 * self.density + 0.5 * observed).clamp(1e-9, 1.0);
            }
        }
        if rows <= 0 {
            return;
        }
        let secs = elapsed.as_secs_f64().max(1e-4);
        let rate = rows as f64 / secs;
        let ideal = rate * self.target.as_secs_f64();
        let next = ideal.clamp(self.rows * 0.5, self.rows * 1.5);
        self.rows = next.clamp(self.min_rows, self.max_rows);
    }
}
