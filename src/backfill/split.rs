//! Splitting a table's key space into ranges: a row estimate, and boundary keys from a block
//! sample so that the ranges hold about the same number of rows.

use tokio_postgres::GenericClient;

use super::keys::{self, Key, KeySpec};
use super::BackfillError;

/// Splits the table of `keys` into about `parts` ranges (chosen from its size when `None`):
/// the row estimate and the ranges' upper bounds, the last one its largest key (none when empty).
pub(super) async fn split(
    tx: &impl GenericClient,
    keys: &KeySpec,
    workers: u32,
    parts: Option<u32>,
) -> Result<(i64, Vec<Key>), BackfillError> {
    let max = tx
        .query_opt(keys.max_key_sql().as_str(), &[])
        .await?
        .and_then(|r| keys::key_from_row(&r));
    let reltuples: f64 = tx
        .query_one(
            "SELECT COALESCE((SELECT reltuples::float8 FROM pg_class WHERE oid = to_regclass($1)), -1) \
             AS reltuples",
            &[&keys.table],
        )
        .await?
        .get("reltuples");
    let estimate: i64 = if max.is_none() {
        0
    } else if reltuples < 1_000_000.0 {
        tx.query_one(keys.count_sql(None, None).as_str(), &[])
            .await?
            .get("keys")
    } else {
        reltuples as i64
    };
    let mut bounds: Vec<Key> = Vec::new();
    if let Some(max) = &max {
        let parts = parts
            .unwrap_or_else(|| default_parts(estimate, workers))
            .max(1);
        if parts > 1 && estimate > i64::from(parts) {
            let percent = (100.0 * f64::from(parts) * 500.0 / estimate as f64).min(100.0);
            let rows = tx
                .query(keys.boundaries_sql(parts, percent).as_str(), &[])
                .await?;
            for r in rows {
                if let Some(k) = keys::key_from_row(&r) {
                    if bounds.last() != Some(&k) {
                        bounds.push(k);
                    }
                }
            }
        }
        bounds.push(max.clone());
    }
    Ok((estimate, bounds))
}

/// Ranges to plan for `estimate` rows: about one per 500 000 rows (1–64), at least four per
/// worker when the table is big enough to split (so that workers tuned up later find work).
/// Fewer ranges mean fewer partial chunks at range ends.
fn default_parts(estimate: i64, workers: u32) -> u32 {
    let by_size = (estimate / 500_000).clamp(1, 64) as u32;
    let by_workers = (workers.max(1) * 4).min((estimate / 1_000).clamp(1, 64) as u32);
    by_size.max(by_workers)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parts_follow_size_and_workers() {
        assert_eq!(default_parts(500, 1), 1);
        assert_eq!(default_parts(2_000_000, 1), 4);
        assert_eq!(default_parts(20_000_000, 1), 40);
        assert_eq!(default_parts(5_000, 2), 5);
        assert_eq!(default_parts(50_000, 4), 16);
        assert_eq!(default_parts(1_000_000_000, 1), 64);
    }
}
