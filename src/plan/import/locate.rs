//! Where a field path (`operations[2].alter_column.type`) sits in a JSON or YAML text.
//!
//! The document is read again with a visitor that follows the path and stops with an error at
//! the field's key (or list entry): the parsers stamp their errors with the position they had
//! reached, so that position is the field's place. A path that is not in the text (a required
//! field left out) is placed at its nearest enclosing field.

use std::fmt;

use serde::de::{self, DeserializeSeed, IgnoredAny, MapAccess, SeqAccess, Visitor};

/// The message of the error that marks the place; any other error means "not found".
const HERE: &str = "cutover-locate: here";

/// One step of a path.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Seg {
    Key(String),
    Index(usize),
}

/// `a.b[0].c` as steps (a key is everything up to the next `.` or `[`).
fn segments(path: &str) -> Vec<Seg> {
    let mut out = Vec::new();
    for part in path.split('.').filter(|p| !p.is_empty()) {
        let (key, mut rest) = part.split_once('[').map_or((part, ""), |(k, r)| (k, r));
        if !key.is_empty() {
            out.push(Seg::Key(key.to_string()));
        }
        while let Some((n, tail)) = rest.split_once(']') {
            if let Ok(i) = n.parse() {
                out.push(Seg::Index(i));
            }
            rest = tail.strip_prefix('[').unwrap_or(tail);
        }
    }
    out
}

/// Follows the remaining steps through one value. `on_value`: stop on the found field's value
/// (YAML stamps errors with the position of the value being read) rather than right after its
/// key (JSON stamps them with the reader's position).
#[derive(Clone, Copy)]
struct Seek<'p> {
    path: &'p [Seg],
    on_value: bool,
}

impl<'p> Seek<'p> {
    fn to(self, path: &'p [Seg]) -> Seek<'p> {
        Seek { path, ..self }
    }
}

/// Fails on whatever value it is given, so the error carries that value's position.
struct Here;

impl<'de> DeserializeSeed<'de> for Here {
    type Value = ();

    fn deserialize<D: de::Deserializer<'de>>(self, d: D) -> Result<(), D::Error> {
        d.deserialize_any(Seek {
            path: &[],
            on_value: true,
        })
    }
}

impl<'de> DeserializeSeed<'de> for Seek<'_> {
    type Value = ();

    fn deserialize<D: de::Deserializer<'de>>(self, d: D) -> Result<(), D::Error> {
        d.deserialize_any(self)
    }
}

impl Seek<'_> {
    /// The found value itself: `Here` reached it.
    fn here<E: de::Error>(&self) -> Result<(), E> {
        if self.path.is_empty() && self.on_value {
            Err(E::custom(HERE))
        } else {
            Ok(())
        }
    }
}

impl<'de> Visitor<'de> for Seek<'_> {
    type Value = ();

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("any value")
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<(), A::Error> {
        self.here()?;
        while let Some(key) = map.next_key::<KeyText>()? {
            match self.path.split_first() {
                Some((Seg::Key(want), rest)) if *want == key.0 => {
                    if rest.is_empty() && !self.on_value {
                        return Err(de::Error::custom(HERE));
                    }
                    if rest.is_empty() {
                        map.next_value_seed(Here)?;
                    } else {
                        map.next_value_seed(self.to(rest))?;
                    }
                }
                _ => {
                    map.next_value::<IgnoredAny>()?;
                }
            }
        }
        Ok(())
    }

    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<(), A::Error> {
        self.here()?;
        let mut i = 0;
        loop {
            match self.path.split_first() {
                Some((Seg::Index(want), rest)) if *want == i => {
                    if rest.is_empty() && !self.on_value {
                        return Err(de::Error::custom(HERE));
                    }
                    let found = if rest.is_empty() {
                        seq.next_element_seed(Here)?
                    } else {
                        seq.next_element_seed(self.to(rest))?
                    };
                    if found.is_none() {
                        return Ok(());
                    }
                }
                _ => {
                    if seq.next_element::<IgnoredAny>()?.is_none() {
                        return Ok(());
                    }
                }
            }
            i += 1;
        }
    }

    fn visit_bool<E: de::Error>(self, _: bool) -> Result<(), E> {
        self.here()
    }
    fn visit_i64<E: de::Error>(self, _: i64) -> Result<(), E> {
        self.here()
    }
    fn visit_u64<E: de::Error>(self, _: u64) -> Result<(), E> {
        self.here()
    }
    fn visit_f64<E: de::Error>(self, _: f64) -> Result<(), E> {
        self.here()
    }
    fn visit_str<E: de::Error>(self, _: &str) -> Result<(), E> {
        self.here()
    }
    fn visit_unit<E: de::Error>(self) -> Result<(), E> {
        self.here()
    }
    fn visit_none<E: de::Error>(self) -> Result<(), E> {
        self.here()
    }
}

/// A mapping key as text, whatever scalar it is written as.
struct KeyText(String);

impl<'de> de::Deserialize<'de> for KeyText {
    fn deserialize<D: de::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl Visitor<'_> for V {
            type Value = KeyText;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a key")
            }
            fn visit_str<E>(self, s: &str) -> Result<KeyText, E> {
                Ok(KeyText(s.to_string()))
            }
            fn visit_bool<E>(self, b: bool) -> Result<KeyText, E> {
                Ok(KeyText(b.to_string()))
            }
            fn visit_i64<E>(self, n: i64) -> Result<KeyText, E> {
                Ok(KeyText(n.to_string()))
            }
            fn visit_u64<E>(self, n: u64) -> Result<KeyText, E> {
                Ok(KeyText(n.to_string()))
            }
            fn visit_f64<E>(self, n: f64) -> Result<KeyText, E> {
                Ok(KeyText(n.to_string()))
            }
            fn visit_unit<E>(self) -> Result<KeyText, E> {
                Ok(KeyText("null".into()))
            }
        }
        d.deserialize_any(V)
    }
}

/// 1-based line and column of the path's exact place, if the text holds it.
fn exact(text: &str, json: bool, path: &[Seg]) -> Option<(usize, usize)> {
    if json {
        let mut d = serde_json::Deserializer::from_str(text);
        let seek = Seek {
            path,
            on_value: false,
        };
        match seek.deserialize(&mut d) {
            Err(e) if e.to_string().contains(HERE) => {
                Some(json_key_start(text, e.line(), e.column()))
            }
            _ => None,
        }
    } else {
        let d = serde_yaml_ng::Deserializer::from_str(text);
        let seek = Seek {
            path,
            on_value: true,
        };
        match seek.deserialize(d) {
            Err(e) if e.to_string().contains(HERE) => e.location().map(|l| {
                let key = match path.last() {
                    Some(Seg::Key(k)) => {
                        yaml_key_before(text, offset(text, l.line(), l.column()), k)
                    }
                    _ => None,
                };
                key.unwrap_or((l.line(), l.column()))
            }),
            _ => None,
        }
    }
}

/// The byte offset of 1-based `line` and `column` (in characters).
fn offset(text: &str, line: usize, column: usize) -> usize {
    let start: usize = text
        .split_inclusive('\n')
        .take(line.saturating_sub(1))
        .map(str::len)
        .sum();
    let rest = text.get(start..).unwrap_or("");
    start
        + rest
            .char_indices()
            .nth(column.saturating_sub(1))
            .map_or(rest.len(), |(i, _)| i)
}

/// The place of `key` (plain or quoted, before its `:`) last written before byte `value`: the
/// key of the value found there.
fn yaml_key_before(text: &str, value: usize, key: &str) -> Option<(usize, usize)> {
    let before = text.get(..value)?;
    let at = [
        format!("{key}:"),
        format!("\"{key}\":"),
        format!("'{key}':"),
    ]
    .iter()
    .filter_map(|k| before.rfind(k.as_str()))
    .max()?;
    Some(crate::sql::line_col(text, at))
}

/// serde_json stops just after a key's closing quote (or a list's separator): back up to the
/// opening quote of that key, or forward to the entry after the separator.
fn json_key_start(text: &str, line: usize, column: usize) -> (usize, usize) {
    let Some(row) = text.lines().nth(line.saturating_sub(1)) else {
        return (line, column);
    };
    let upto: Vec<char> = row.chars().take(column).collect();
    if upto.last() == Some(&'"') {
        let mut i = upto.len().saturating_sub(1);
        while i > 0 {
            i -= 1;
            if upto[i] == '"' && (i == 0 || upto[i - 1] != '\\') {
                return (line, i + 1);
            }
        }
    }
    let skipped = row
        .chars()
        .skip(column)
        .take_while(|c| c.is_whitespace() || *c == ',' || *c == '[')
        .count();
    (line, column + skipped + 1)
}

/// 1-based line and column of `path` in `text` (JSON when `json`, else YAML), or of its
/// nearest enclosing field when the path itself is absent; `None` for the document itself.
pub(super) fn locate(text: &str, json: bool, path: &str) -> Option<(usize, usize)> {
    let segs = segments(path);
    (1..=segs.len())
        .rev()
        .find_map(|n| exact(text, json, &segs[..n]))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn paths_split_into_keys_and_indexes() {
        assert_eq!(
            segments("operations[2].create_index.columns[0][1].sort"),
            [
                Seg::Key("operations".into()),
                Seg::Index(2),
                Seg::Key("create_index".into()),
                Seg::Key("columns".into()),
                Seg::Index(0),
                Seg::Index(1),
                Seg::Key("sort".into()),
            ]
        );
    }

    #[test]
    fn yaml_keys_entries_and_absent_fields_are_placed() {
        let text = "name: m\noperations:\n  - drop_table: {name: t}\n  - alter_column:\n      table: t\n      nulable: true\n";
        assert_eq!(
            locate(text, false, "operations[1].alter_column.nulable"),
            Some((6, 7))
        );
        assert_eq!(locate(text, false, "operations[1]"), Some((4, 5)));
        assert_eq!(
            locate(text, false, "operations[0].drop_table.name"),
            Some((3, 18))
        );
        assert_eq!(
            locate(text, false, "operations[1].alter_column.column"),
            Some((4, 5)),
            "an absent field is placed at its enclosing field"
        );
        assert_eq!(locate(text, false, ""), None);
    }

    #[test]
    fn json_keys_and_entries_are_placed() {
        let text = "{\n  \"operations\": [\n    {\"drop_table\": {\"name\": \"t\"}},\n    {\"alter_column\": {\"table\": \"t\", \"nulable\": true}}\n  ]\n}\n";
        assert_eq!(
            locate(text, true, "operations[1].alter_column.nulable"),
            Some((4, 37))
        );
        assert_eq!(locate(text, true, "operations[1]"), Some((4, 5)));
        assert_eq!(locate(text, true, "operations"), Some((2, 3)));
    }
}
