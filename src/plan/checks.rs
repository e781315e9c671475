//! The plan's `[[checks]]`: data-quality checks gates can require, each a common part and a
//! kind with its own parameters.

use serde::{Deserialize, Serialize};

use super::Duration;

/// A data-quality check: common fields plus its kind-specific parameters, all in one TOML table
/// (`kind = "…"` selects the kind). The loader reshapes the table to
/// `{ name, description, timeout, kind = { <kind> = { … } } }` before deserializing, so that every
/// key keeps its position (see `load`).
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CheckSpec {
    /// Unique name, referenced by gates.
    pub name: String,
    /// Free text shown beside results.
    #[serde(default)]
    pub description: String,
    /// Statement timeout for each query of the check.
    pub timeout: Option<Duration>,
    /// What the check does.
    pub kind: CheckKind,
}

impl Serialize for CheckSpec {
    /// Serialized flat, as written in plans: `name`, `description`, `timeout`, `kind` and the
    /// kind's parameters.
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        use serde::ser::Error;
        let mut map = serde_json::Map::new();
        map.insert("name".into(), self.name.clone().into());
        map.insert("description".into(), self.description.clone().into());
        if let Some(t) = self.timeout {
            map.insert("timeout".into(), t.to_string().into());
        }
        map.insert("kind".into(), self.kind.name().into());
        if let serde_json::Value::Object(outer) =
            serde_json::to_value(&self.kind).map_err(S::Error::custom)?
        {
            for (_, params) in outer {
                if let serde_json::Value::Object(params) = params {
                    map.extend(params);
                }
            }
        }
        map.serialize(s)
    }
}

/// The kinds of checks, with their parameters.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(rename_all = "snake_case", deny_unknown_fields)]
pub enum CheckKind {
    /// Row counts of source vs target per partition.
    RowCountParity {
        /// Source relation.
        source: String,
        /// Target relation.
        target: String,
        /// Partition expression evaluated on both sides (e.g. `date_trunc('month', created_at)`).
        partition_by: Option<String>,
        /// Key column for key-range partitions when `partition_by` is absent.
        key: Option<String>,
        /// Number of key-range partitions.
        #[serde(default = "default_partitions")]
        partitions: u32,
    },
    /// New column vs the expression computed from the old, NULL-safe, inside one table.
    ExpressionParity {
        /// Table.
        table: String,
        /// Key column(s).
        key: Vec<String>,
        /// New column.
        column: String,
        /// Expression over the old columns that the new column must equal.
        expression: String,
        /// Optional filter.
        filter: Option<String>,
    },
    /// A seeded sample of keys hashed on both sides.
    SampledChecksum {
        /// Source relation.
        source: String,
        /// Target relation.
        target: String,
        /// Key column(s).
        key: Vec<String>,
        /// Target-side key column(s), when they differ from `key`.
        #[serde(default)]
        target_key: Vec<String>,
        /// Compared column expressions (same on both sides unless `target_columns`).
        columns: Vec<String>,
        /// Target-side column expressions, when they differ.
        #[serde(default)]
        target_columns: Vec<String>,
        /// Sample size in rows.
        #[serde(default = "default_sample")]
        sample_size: u32,
        /// Seed for a reproducible sample.
        #[serde(default)]
        seed: u64,
    },
    /// Exact diff of two relations on a key (hash segments and bisection).
    FullDiff {
        /// Source relation.
        source: String,
        /// Target relation.
        target: String,
        /// Key column(s).
        key: Vec<String>,
        /// Target-side key column(s), when they differ from `key`.
        #[serde(default)]
        target_key: Vec<String>,
        /// Compared column expressions (same on both sides unless `target_columns`).
        columns: Vec<String>,
        /// Target-side column expressions, when they differ.
        #[serde(default)]
        target_columns: Vec<String>,
    },
    /// NULL/default share and distribution of a new column vs the old one.
    NullDrift {
        /// Table.
        table: String,
        /// Old column or expression.
        old: String,
        /// New column or expression (compared on the same scale).
        new: String,
        /// Partition expression.
        partition_by: Option<String>,
        /// Value treated like a default (its share is compared too).
        default_value: Option<String>,
        /// Maximum allowed increase of the NULL/default share, in percentage points.
        #[serde(default = "default_drift_pp")]
        max_share_increase_pp: f64,
        /// Maximum allowed relative difference of mean/min/max/quantiles.
        #[serde(default = "default_drift_rel")]
        max_relative_drift: f64,
    },
    /// A query snapshotted before the migration and compared after.
    GoldenQuery {
        /// The query.
        query: String,
    },
    /// SQL returning one number compared to an expectation.
    Invariant {
        /// The query (returns one row, one numeric column).
        sql: String,
        /// Exact expected value (default 0: count of violations).
        expect: Option<f64>,
        /// Upper bound instead of an exact value.
        max: Option<f64>,
        /// Lower bound instead of an exact value.
        min: Option<f64>,
    },
}

fn default_partitions() -> u32 {
    16
}
fn default_sample() -> u32 {
    1_000
}
fn default_drift_pp() -> f64 {
    0.1
}
fn default_drift_rel() -> f64 {
    0.001
}

impl CheckKind {
    /// snake_case kind name.
    pub fn name(&self) -> &'static str {
        match self {
            CheckKind::RowCountParity { .. } => "row_count_parity",
            CheckKind::ExpressionParity { .. } => "expression_parity",
            CheckKind::SampledChecksum { .. } => "sampled_checksum",
            CheckKind::FullDiff { .. } => "full_diff",
            CheckKind::NullDrift { .. } => "null_drift",
            CheckKind::GoldenQuery { .. } => "golden_query",
            CheckKind::Invariant { .. } => "invariant",
        }
    }
}
