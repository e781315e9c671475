//! A check on a partitioned table, reported per leaf partition so an operator sees which one
//! disagrees. The leaves are the catalog's ([`crate::db::partitions`]); a row of the table
//! itself is placed in its leaf by its `tableoid`, a row of another relation (the target) by the
//! leaves' partition constraints (the target carries the partition columns under the same
//! names): one `GROUP BY` statement per side, read-only.
//! The check's verdict is its own: the breakdown only says where the disagreement lies, and a
//! breakdown that cannot be read (say the target lacks a partition column) is left out with why.

use std::collections::BTreeMap;

use serde_json::{json, Value};
use tokio_postgres::Client;

use super::keys::{is_plain_name, relation_sql};
use super::CheckError;
use crate::control::checks::PartitionResult;
use crate::db::partitions::{leaves, Leaf};
use crate::read_only::ReadOnly;
use crate::sql::{quote_literal, OWN_TAG};

/// The label of target rows that fall in none of the leaves.
pub(crate) const NO_PARTITION: &str = "(no partition)";

/// Rows of one side per leaf: (rows, rows carrying one of the listed keys).
pub(crate) type PerLeaf = BTreeMap<String, (i64, i64)>;

/// Which rows of a side [`Leaves::count`] counts apart, besides all of them.
#[derive(Debug, Clone, Copy)]
pub(crate) enum Picked<'a> {
    /// None.
    None,
    /// Rows whose canonical key text (the side's expression) is one of these.
    Keys(&'a str, &'a [String]),
    /// Rows matching this predicate.
    Rows(&'a str),
}

/// The leaf partitions of a checked table.
pub(crate) struct Leaves {
    /// The partitioned table, as SQL.
    table: String,
    leaves: Vec<Leaf>,
}

impl Leaves {
    /// The leaves of the plan's relation `name`; `None` when it is not a partitioned table
    /// (or not a table name at all).
    pub(crate) async fn of(client: &Client, name: &str) -> Result<Option<Leaves>, CheckError> {
        if !is_plain_name(name) {
            return Ok(None);
        }
        let table = relation_sql(name);
        Ok(leaves(client, &table)
            .await?
            .map(|leaves| Leaves { table, leaves }))
    }

    /// The leaf of a row of `rel`: `CASE tableoid WHEN <oid> THEN '<leaf>' …` on the table
    /// itself, else `CASE WHEN <constraint> THEN '<leaf>' …`, `(no partition)` otherwise.
    fn label_sql(&self, rel: &str) -> String {
        let own = rel == self.table;
        let arms: String = self
            .leaves
            .iter()
            .map(|l| {
                let name = quote_literal(&l.name);
                if own {
                    format!(" WHEN {} THEN {name}", l.oid)
                } else {
                    format!(" WHEN ({}) THEN {name}", l.constraint)
                }
            })
            .collect();
        let subject = if own { " tableoid::int8" } else { "" };
        format!(
            "CASE{subject}{arms} ELSE {} END",
            quote_literal(NO_PARTITION)
        )
    }

    /// Rows of `rel` per leaf, and how many of them `picked` picks out.
    pub(crate) async fn count(
        &self,
        ro: &ReadOnly<'_>,
        rel: &str,
        picked: Picked<'_>,
    ) -> Result<PerLeaf, CheckError> {
        let filter = match picked {
            Picked::None => "0::int8".to_string(),
            Picked::Keys(text, _) => {
                format!("count(*) FILTER (WHERE {text} = ANY($1::text[]))::int8")
            }
            Picked::Rows(predicate) => format!("count(*) FILTER (WHERE {predicate})::int8"),
        };
        let sql = format!(
            "{OWN_TAG}SELECT {} AS leaf, count(*)::int8 AS n, {filter} AS listed FROM {rel} \
             GROUP BY 1",
            self.label_sql(rel)
        );
        let rows = match picked {
            Picked::Keys(_, keys) => ro.query(&sql, &[&keys]).await,
            Picked::None | Picked::Rows(_) => ro.query(&sql, &[]).await,
        }
        .map_err(|e| CheckError::Db(format!("per partition on {rel}: {e}")))?;
        Ok(rows
            .iter()
            .map(|r| (r.get("leaf"), (r.get("n"), r.get("listed"))))
            .collect())
    }

    /// One result per leaf (and one for target rows outside every leaf, if any), those with
    /// mismatches first; `mismatches` judges a leaf from its (source, target) counts.
    pub(crate) fn results(
        &self,
        source: &PerLeaf,
        target: &PerLeaf,
        mismatches: impl Fn((i64, i64), (i64, i64)) -> i64,
    ) -> Vec<PartitionResult> {
        let mut names: Vec<&str> = self.leaves.iter().map(|l| l.name.as_str()).collect();
        if source.contains_key(NO_PARTITION) || target.contains_key(NO_PARTITION) {
            names.push(NO_PARTITION);
        }
        let mut out: Vec<PartitionResult> = names
            .into_iter()
            .map(|name| {
                let s = source.get(name).copied().unwrap_or_default();
                let t = target.get(name).copied().unwrap_or_default();
                PartitionResult {
                    partition: name.to_string(),
                    source_rows: s.0,
                    target_rows: t.0,
                    mismatches: mismatches(s, t),
                }
            })
            .collect();
        out.sort_by_key(|r| r.mismatches == 0);
        out
    }
}

/// Adds the per-leaf `results` (or why they are missing) to a check's details and names the
/// disagreeing leaves at the end of its summary.
pub(crate) fn attach(
    details: &mut Value,
    summary: &mut String,
    results: Result<Vec<PartitionResult>, CheckError>,
) {
    let Value::Object(map) = details else {
        return;
    };
    match results {
        Ok(results) => {
            let differing: Vec<&str> = results
                .iter()
                .filter(|r| r.mismatches != 0)
                .map(|r| r.partition.as_str())
                .collect();
            if !differing.is_empty() {
                summary.push_str(&format!(
                    " — leaf partitions that differ: {}",
                    differing.join(", ")
                ));
            }
            map.insert("leaf_partitions".into(), json!(results));
        }
        Err(e) => {
            map.insert("leaf_partitions_error".into(), json!(e.to_string()));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn leaves(names: &[&str]) -> Leaves {
        Leaves {
            table: "\"public\".\"t\"".into(),
            leaves: names
                .iter()
                .zip(16_384..)
                .map(|(n, oid)| Leaf {
                    name: (*n).to_string(),
                    oid,
                    constraint: format!("id % 3 = {}", oid % 3),
                })
                .collect(),
        }
    }

    #[test]
    fn rows_of_the_table_go_by_tableoid_others_by_the_constraint() {
        let l = leaves(&["public.t_p0", "public.t_p1"]);
        assert_eq!(
            l.label_sql("\"public\".\"t\""),
            "CASE tableoid::int8 WHEN 16384 THEN 'public.t_p0' WHEN 16385 THEN 'public.t_p1' \
             ELSE '(no partition)' END"
        );
        assert_eq!(
            l.label_sql("\"public\".\"t_copy\""),
            "CASE WHEN (id % 3 = 1) THEN 'public.t_p0' WHEN (id % 3 = 2) THEN 'public.t_p1' \
             ELSE '(no partition)' END"
        );
    }

    #[test]
    fn leaves_with_mismatches_come_first_and_strays_get_their_own_entry() {
        let l = leaves(&["public.t_p0", "public.t_p1", "public.t_p2"]);
        let source: PerLeaf = [
            ("public.t_p0".into(), (10, 0)),
            ("public.t_p2".into(), (5, 0)),
        ]
        .into_iter()
        .collect();
        let target: PerLeaf = [
            ("public.t_p0".into(), (10, 0)),
            ("public.t_p2".into(), (3, 0)),
            (NO_PARTITION.into(), (1, 0)),
        ]
        .into_iter()
        .collect();
        let r = l.results(&source, &target, |s, t| (s.0 - t.0).abs());
        let names: Vec<(&str, i64)> = r
            .iter()
            .map(|r| (r.partition.as_str(), r.mismatches))
            .collect();
        assert_eq!(
            names,
            [
                ("public.t_p2", 2),
                (NO_PARTITION, 1),
                ("public.t_p0", 0),
                ("public.t_p1", 0)
            ]
        );
    }

    #[test]
    fn the_summary_names_the_leaves_that_differ() {
        let mut details = json!({ "source_rows": 3 });
        let mut summary = "2 of 4 partitions differ".to_string();
        let one = |name: &str, mismatches| PartitionResult {
            partition: name.into(),
            source_rows: 1,
            target_rows: 1,
            mismatches,
        };
        attach(
            &mut details,
            &mut summary,
            Ok(vec![one("public.t_p3", 1), one("public.t_p0", 0)]),
        );
        assert_eq!(
            summary,
            "2 of 4 partitions differ — leaf partitions that differ: public.t_p3"
        );
        assert_eq!(PartitionResult::from_details(&details).len(), 2);
        attach(
            &mut details,
            &mut summary,
            Err(CheckError::Db("no column".into())),
        );
        assert_eq!(details["leaf_partitions_error"], "no column");
    }
}
