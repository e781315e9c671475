//! Positions inside TOML strings: maps a byte offset of a decoded string value back to the
//! source text, through basic and literal strings, their multi-line forms, escapes and
//! line-ending backslashes.

/// The byte offset in `raw` (the string as written, quotes included) of byte `at` of `decoded`
/// (its value). `None` when `raw` does not decode to `decoded` (then callers fall back to the
/// string's start).
pub(super) fn raw_offset(raw: &str, decoded: &str, at: usize) -> Option<usize> {
    let (delim, basic) = if raw.starts_with("\"\"\"") {
        (3, true)
    } else if raw.starts_with("'''") {
        (3, false)
    } else if raw.starts_with('"') {
        (1, true)
    } else if raw.starts_with('\'') {
        (1, false)
    } else {
        return None;
    };
    let end = raw.len().checked_sub(delim)?;
    let mut i = delim;
    if delim == 3 {
        if raw.get(i..)?.starts_with("\r\n") {
            i += 2;
        } else if raw.get(i..)?.starts_with('\n') {
            i += 1;
        }
    }
    let mut j = 0;
    while i < end {
        if j >= at {
            return Some(i);
        }
        let rest = raw.get(i..end)?;
        let c = rest.chars().next()?;
        if basic && c == '\\' {
            let next = rest.get(1..)?.chars().next()?;
            let len = match next {
                'u' => 6,
                'U' => 10,
                'x' => 4,
                ' ' | '\t' | '\r' | '\n' if delim == 3 => {
                    // A line-ending backslash: it and all whitespace after it vanish.
                    let skipped = rest
                        .get(1..)?
                        .find(|c: char| !matches!(c, ' ' | '\t' | '\r' | '\n'))
                        .map_or(rest.len(), |n| n + 1);
                    i += skipped;
                    continue;
                }
                _ => 2,
            };
            let produced = decoded.get(j..)?.chars().next()?;
            i += len;
            j += produced.len_utf8();
        } else if c == '\r' && rest.starts_with("\r\n") && decoded.get(j..)?.starts_with('\n') {
            i += 2;
            j += 1;
        } else {
            if !decoded.get(j..)?.starts_with(c) {
                return None;
            }
            i += c.len_utf8();
            j += c.len_utf8();
        }
    }
    (j >= at).then_some(i)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Parses `key = <raw>` and checks that byte `at` of the value maps to `expect` in `raw`.
    fn maps(raw: &str, needle: &str) {
        let doc = format!("k = {raw}\n");
        let table: toml::Table = toml::from_str(&doc).expect("valid TOML");
        let decoded = table["k"].as_str().expect("a string").to_string();
        let at = decoded.find(needle).expect("needle in the value");
        let got = raw_offset(raw, &decoded, at).expect("mapped");
        assert!(
            raw[got..].starts_with(needle),
            "{raw:?}: offset {got} points at {:?}, wanted {needle:?}",
            &raw[got..]
        );
    }

    #[test]
    fn maps_through_every_string_form() {
        maps(r#""SELECT 1; COMMIT""#, "COMMIT");
        maps(r#""a\tb\"c\\d\u00e9 COMMIT""#, "COMMIT");
        maps(r#""\U0001F600 x COMMIT""#, "COMMIT");
        maps("'C:\\path COMMIT'", "COMMIT");
        maps("\"\"\"\nline one\nline two COMMIT\n\"\"\"", "COMMIT");
        maps("\"\"\"\r\nline one\r\nCOMMIT\r\n\"\"\"", "COMMIT");
        maps("\"\"\"first \\\n     second COMMIT\"\"\"", "COMMIT");
        maps("'''\nliteral \\n stays\nCOMMIT'''", "COMMIT");
        maps("\"\"\"é\\\"\nCOMMIT\"\"\"", "COMMIT");
    }

    #[test]
    fn refuses_a_mismatch() {
        assert_eq!(raw_offset("\"abc\"", "xyz", 2), None);
        assert_eq!(raw_offset("abc", "abc", 1), None);
    }
}
