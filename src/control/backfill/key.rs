//! Key values of the backfilled table as the control tables store them: a JSON array of the
//! text form of each key column.

use serde_json::Value;

/// A key value of the backfilled table: the text form of each key column.
pub(crate) type Key = Vec<String>;

/// A key as stored (a JSON array of strings).
pub(crate) fn key_to_json(key: &Key) -> Value {
    Value::Array(key.iter().map(|s| Value::String(s.clone())).collect())
}

/// A stored key; `None` for JSON null or anything that is not an array of strings.
pub(crate) fn key_from_json(value: Option<&Value>) -> Option<Key> {
    value?
        .as_array()?
        .iter()
        .map(|v| v.as_str().map(str::to_string))
        .collect()
}

/// The key stored in `row`'s column `column`.
pub(super) fn key_in(row: &tokio_postgres::Row, column: &str) -> Option<Key> {
    key_from_json(row.get::<_, Option<Value>>(column).as_ref())
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    #[test]
    fn keys_round_trip_through_json() {
        let key = vec!["7".to_string(), "x".to_string()];
        assert_eq!(key_from_json(Some(&key_to_json(&key))), Some(key));
        assert_eq!(key_from_json(Some(&Value::Null)), None);
        assert_eq!(key_from_json(Some(&json!([1, 2]))), None);
    }
}
