//! Names in generated SQL: quoting, qualified tables, renaming a column inside an expression,
//! and telling constant defaults from volatile ones.

/// `name` quoted as an identifier when it is not a plain lower-case one.
pub(crate) fn ident(name: &str) -> String {
    let plain = name
        .chars()
        .next()
        .is_some_and(|c| c.is_ascii_lowercase() || c == '_')
        && name
            .chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_')
        && !RESERVED.contains(&name);
    if plain {
        name.to_string()
    } else {
        format!("\"{}\"", name.replace('"', "\"\""))
    }
}

/// Keywords that must be quoted as column names (the common ones).
const RESERVED: [&str; 24] = [
    "all",
    "and",
    "any",
    "as",
    "case",
    "check",
    "column",
    "constraint",
    "default",
    "desc",
    "end",
    "from",
    "group",
    "in",
    "limit",
    "not",
    "null",
    "or",
    "order",
    "select",
    "table",
    "to",
    "user",
    "where",
];

/// A table name split into (schema, table); `public` when unqualified.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub(crate) struct Table {
    pub(crate) schema: String,
    pub(crate) name: String,
}

impl Table {
    pub(crate) fn parse(text: &str) -> Table {
        match text.trim().split_once('.') {
            Some((s, t)) => Table {
                schema: s.trim().to_string(),
                name: t.trim().to_string(),
            },
            None => Table {
                schema: "public".into(),
                name: text.trim().to_string(),
            },
        }
    }

    /// `schema.table`, quoted as needed.
    pub(crate) fn sql(&self) -> String {
        format!("{}.{}", ident(&self.schema), ident(&self.name))
    }

    /// `schema.table` as plans write it (unquoted).
    pub(crate) fn plain(&self) -> String {
        format!("{}.{}", self.schema, self.name)
    }

    /// A name in this table's schema.
    pub(crate) fn sibling(&self, name: &str) -> String {
        format!("{}.{}", ident(&self.schema), ident(name))
    }
}

/// `name` cut to PostgreSQL's 63-byte limit.
pub(crate) fn limit(name: String) -> String {
    if name.len() <= 63 {
        return name;
    }
    let mut end = 63;
    while !name.is_char_boundary(end) {
        end -= 1;
    }
    name[..end].to_string()
}

/// `expr` with every reference to column `from` replaced by `to` (quoted as needed). String
/// literals, dollar quotes, comments, qualified names (`t.col`) and function names are left
/// alone.
pub(crate) fn rename_column(expr: &str, from: &str, to: &str) -> String {
    let b = expr.as_bytes();
    let mut out = String::with_capacity(expr.len());
    let mut i = 0;
    while i < b.len() {
        let c = b[i];
        let start = i;
        if c == b'\'' {
            i += 1;
            while i < b.len() {
                if b[i] == b'\'' {
                    if b.get(i + 1) == Some(&b'\'') {
                        i += 2;
                        continue;
                    }
                    i += 1;
                    break;
                }
                i += 1;
            }
            out.push_str(&expr[start..i]);
        } else if c == b'-' && b.get(i + 1) == Some(&b'-') {
            i = expr[i..].find('\n').map_or(b.len(), |n| i + n);
            out.push_str(&expr[start..i]);
        } else if c == b'$' && dollar_tag(&expr[i..]).is_some() {
            let tag = dollar_tag(&expr[i..]).unwrap_or_default();
            let body = i + tag.len();
            i = expr[body..]
                .find(tag.as_str())
                .map_or(b.len(), |n| body + n + tag.len());
            out.push_str(&expr[start..i]);
        } else if c == b'"' {
            i += 1;
            while i < b.len() {
                if b[i] == b'"' {
                    if b.get(i + 1) == Some(&b'"') {
                        i += 2;
                        continue;
                    }
                    i += 1;
                    break;
                }
                i += 1;
            }
            let name = expr[start + 1..i.saturating_sub(1).max(start + 1)].replace("\"\"", "\"");
            push_name(&mut out, expr, start, i, name == from, to);
        } else if c.is_ascii_alphabetic() || c == b'_' || c >= 0x80 {
            while i < b.len()
                && (b[i].is_ascii_alphanumeric() || b[i] == b'_' || b[i] == b'$' || b[i] >= 0x80)
            {
                i += 1;
            }
            let word = &expr[start..i];
            push_name(&mut out, expr, start, i, word.to_lowercase() == from, to);
        } else {
            let ch = expr[i..].chars().next().unwrap_or(' ');
            i += ch.len_utf8();
            out.push(ch);
        }
    }
    out
}

fn push_name(out: &mut String, expr: &str, start: usize, end: usize, matches: bool, to: &str) {
    let qualified = expr[..start].trim_end().ends_with('.');
    let call = expr[end..].trim_start().starts_with('(');
    if matches && !qualified && !call {
        out.push_str(&ident(to));
    } else {
        out.push_str(&expr[start..end]);
    }
}

/// `$tag$` at the start of `s`.
fn dollar_tag(s: &str) -> Option<String> {
    let rest = s.strip_prefix('$')?;
    let end = rest.find('$')?;
    let tag = &rest[..end];
    tag.chars()
        .all(|c| c.is_ascii_alphanumeric() || c == '_')
        .then(|| format!("${tag}$"))
}

/// True for a default PostgreSQL stores without rewriting the table: a literal (number,
/// string, boolean, NULL), optionally cast.
pub(crate) fn is_constant(expr: &str) -> bool {
    let e = expr.trim();
    let base = e.split("::").next().unwrap_or(e).trim();
    let quoted = base.starts_with('\'') && base.ends_with('\'') && base.len() >= 2;
    let number = !base.is_empty()
        && base
            .trim_start_matches('-')
            .chars()
            .all(|c| c.is_ascii_digit() || c == '.' || c == 'e' || c == 'E');
    let word = matches!(base.to_lowercase().as_str(), "true" | "false" | "null");
    let casts_ok = e.split("::").skip(1).all(|t| {
        t.trim()
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || " _(),[]".contains(c))
    });
    (quoted || number || word) && casts_ok
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn renames_only_column_references() {
        assert_eq!(
            rename_column(
                "total/100.0 + t.total + total('total') -- total",
                "total",
                "total_new"
            ),
            "total_new/100.0 + t.total + total('total') -- total"
        );
        assert_eq!(
            rename_column("\"Total\" + TOTAL", "total", "x"),
            "\"Total\" + x"
        );
        assert_eq!(
            rename_column("$$total$$ || total", "total", "x"),
            "$$total$$ || x"
        );
    }

    #[test]
    fn constants_are_told_from_volatile_defaults() {
        for c in [
            "0",
            "'x'",
            "true",
            "NULL",
            "-1.5",
            "'{}'::jsonb",
            "0::bigint",
        ] {
            assert!(is_constant(c), "{c}");
        }
        for v in ["now()", "gen_random_uuid()", "nextval('s')", "1 + x"] {
            assert!(!is_constant(v), "{v}");
        }
    }

    #[test]
    fn identifiers_are_quoted_when_needed() {
        assert_eq!(ident("total"), "total");
        assert_eq!(ident("Total"), "\"Total\"");
        assert_eq!(ident("order"), "\"order\"");
        assert_eq!(Table::parse("orders").sql(), "public.orders");
    }
}
