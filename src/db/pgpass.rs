//! The password file (`~/.pgpass`, `PGPASSFILE`, `passfile=`), read as libpq reads it: lines
//! `hostname:port:database:username:password`, `*` matches anything in the first four
//! fields, `\:` and `\\` escape, the first matching line wins, and a file that the group or
//! others can read is ignored with a warning.

use std::os::unix::fs::PermissionsExt;
use std::path::Path;

/// A password found in the file, with its line (for messages; never the password itself).
pub(crate) struct Found {
    pub(crate) password: String,
    pub(crate) line: usize,
}

/// What a line is matched against.
pub(crate) struct Key<'a> {
    /// The host name, socket directory or address.
    pub(crate) host: &'a str,
    /// True when `host` is a unix-socket directory (then `localhost` lines match too).
    pub(crate) unix_socket: bool,
    pub(crate) port: u16,
    pub(crate) dbname: &'a str,
    pub(crate) user: &'a str,
}

/// Looks the password up; `None` when the file is missing, unsafe, or has no matching line.
pub(crate) fn lookup(path: &Path, key: &Key<'_>) -> Option<Found> {
    let meta = std::fs::metadata(path).ok()?;
    if !meta.is_file() {
        tracing::warn!(target: "db", "password file {} is not a plain file; ignored", path.display());
        return None;
    }
    if meta.permissions().mode() & 0o077 != 0 {
        tracing::warn!(
            target: "db",
            "password file {} has group or world access; permissions should be u=rw (0600) or less; ignored",
            path.display()
        );
        return None;
    }
    let text = match std::fs::read_to_string(path) {
        Ok(t) => t,
        Err(e) => {
            tracing::warn!(target: "db", "cannot read password file {}: {e}", path.display());
            return None;
        }
    };
    find(&text, key)
}

/// The first line of `text` matching `key`.
pub(crate) fn find(text: &str, key: &Key<'_>) -> Option<Found> {
    let port = key.port.to_string();
    for (n, raw) in text.lines().enumerate() {
        let line = raw.strip_suffix('\r').unwrap_or(raw);
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        let fields = split(line);
        if fields.len() < 5 {
            continue;
        }
        let host_ok = field_matches(&fields[0], key.host)
            || (key.unix_socket && field_matches(&fields[0], "localhost"));
        if host_ok
            && field_matches(&fields[1], &port)
            && field_matches(&fields[2], key.dbname)
            && field_matches(&fields[3], key.user)
        {
            return Some(Found {
                password: fields[4].text.clone(),
                line: n + 1,
            });
        }
    }
    None
}

/// One field after unescaping, remembering whether it was a bare `*`.
struct Field {
    text: String,
    wildcard: bool,
}

fn field_matches(f: &Field, value: &str) -> bool {
    f.wildcard || f.text == value
}

/// Splits a line into its first four fields and the password (the rest of the line).
fn split(line: &str) -> Vec<Field> {
    let mut fields = Vec::with_capacity(5);
    let mut current = String::new();
    let mut escaped_any = false;
    let mut chars = line.chars();
    while let Some(c) = chars.next() {
        match c {
            '\\' => {
                if let Some(next) = chars.next() {
                    current.push(next);
                    escaped_any = true;
                }
            }
            ':' if fields.len() < 4 => {
                fields.push(Field {
                    wildcard: current == "*" && !escaped_any,
                    text: std::mem::take(&mut current),
                });
                escaped_any = false;
            }
            c => current.push(c),
        }
    }
    fields.push(Field {
        wildcard: false,
        text: current,
    });
    fields
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key<'a>(host: &'a str, unix: bool, port: u16, db: &'a str, user: &'a str) -> Key<'a> {
        Key {
            host,
            unix_socket: unix,
            port,
            dbname: db,
            user,
        }
    }

    #[test]
    fn matching_rules() {
        let text = "# comment\n\
                    db1:5432:app:bob:first\n\
                    *:5432:*:bob:wild\\:card\n\
                    localhost:6000:*:*:local\n\
                    h\\:x:*:*:*:escaped\\\\host\n\
                    short:line\n\
                    *:*:*:*:last:with:colons\n";
        let pw = |k: &Key<'_>| find(text, k).map(|f| (f.password, f.line));
        assert_eq!(
            pw(&key("db1", false, 5432, "app", "bob")),
            Some(("first".into(), 2))
        );
        assert_eq!(
            pw(&key("db2", false, 5432, "app", "bob")),
            Some(("wild:card".into(), 3))
        );
        assert_eq!(
            pw(&key("/tmp", true, 6000, "x", "y")),
            Some(("local".into(), 4))
        );
        assert_eq!(
            pw(&key("other", false, 6000, "x", "y")),
            Some(("last:with:colons".into(), 7))
        );
        assert_eq!(
            pw(&key("h:x", false, 1, "d", "u")),
            Some(("escaped\\host".into(), 5))
        );
        // An escaped `*` is a literal star.
        let lit = "\\*:*:*:*:star\n";
        assert!(find(lit, &key("db", false, 1, "d", "u")).is_none());
        assert!(find(lit, &key("*", false, 1, "d", "u")).is_some());
    }

    #[test]
    fn unsafe_files_are_ignored() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("pgpass");
        std::fs::write(&path, "*:*:*:*:pw\n").unwrap();
        let k = key("h", false, 5432, "d", "u");
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o644)).unwrap();
        assert!(lookup(&path, &k).is_none());
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o600)).unwrap();
        assert_eq!(
            lookup(&path, &k).map(|f| f.password),
            Some("pw".to_string())
        );
        assert!(lookup(&dir.path().join("missing"), &k).is_none());
    }
}
