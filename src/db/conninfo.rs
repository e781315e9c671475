//! libpq connection strings: `postgres://` URLs and `keyword=value` strings, parsed into the
//! same keyword set libpq uses. Error messages never quote a password, nor text that may be
//! part of one (parts of a URL before the last `@`, the word after `password=`).

use std::collections::BTreeMap;
use std::fmt;
use std::path::PathBuf;

/// The libpq keywords Cutover understands, with the environment variable that supplies a
/// default for each (as libpq does).
pub(crate) const KEYWORDS: &[(&str, Option<&str>)] = &[
    ("host", Some("PGHOST")),
    ("hostaddr", Some("PGHOSTADDR")),
    ("port", Some("PGPORT")),
    ("dbname", Some("PGDATABASE")),
    ("user", Some("PGUSER")),
    ("password", Some("PGPASSWORD")),
    ("passfile", Some("PGPASSFILE")),
    ("service", Some("PGSERVICE")),
    ("connect_timeout", Some("PGCONNECT_TIMEOUT")),
    ("options", Some("PGOPTIONS")),
    ("application_name", Some("PGAPPNAME")),
    ("fallback_application_name", None),
    ("sslmode", Some("PGSSLMODE")),
    ("sslrootcert", Some("PGSSLROOTCERT")),
    ("sslcert", Some("PGSSLCERT")),
    ("sslkey", Some("PGSSLKEY")),
    ("sslcrl", Some("PGSSLCRL")),
    ("sslsni", Some("PGSSLSNI")),
    ("gssencmode", Some("PGGSSENCMODE")),
    ("channel_binding", Some("PGCHANNELBINDING")),
    ("target_session_attrs", Some("PGTARGETSESSIONATTRS")),
    ("keepalives", None),
    ("keepalives_idle", None),
    ("keepalives_interval", None),
    ("keepalives_count", None),
    ("tcp_user_timeout", None),
];

/// The canonical spelling of a keyword, if Cutover knows it.
pub(crate) fn keyword(name: &str) -> Option<&'static str> {
    KEYWORDS.iter().map(|(k, _)| *k).find(|k| *k == name)
}

/// Where a setting came from; named in error messages.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Origin {
    /// A `postgres://` URL.
    Url,
    /// A `keyword=value` string.
    KeyValue,
    /// A service file section.
    Service {
        /// The file.
        file: PathBuf,
        /// 1-based line.
        line: usize,
    },
    /// An environment variable.
    Env(&'static str),
}

impl fmt::Display for Origin {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Origin::Url => f.write_str("the connection URL"),
            Origin::KeyValue => f.write_str("the connection string"),
            Origin::Service { file, line } => write!(f, "{}:{line}", file.display()),
            Origin::Env(var) => f.write_str(var),
        }
    }
}

/// Keyword → (value, origin); later settings of the same keyword replace earlier ones.
#[derive(Clone, Default)]
pub(crate) struct Params {
    values: BTreeMap<&'static str, (String, Origin)>,
}

impl fmt::Debug for Params {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut m = f.debug_map();
        for (k, (v, _)) in &self.values {
            if *k == "password" {
                m.entry(k, &"***");
            } else {
                m.entry(k, v);
            }
        }
        m.finish()
    }
}

impl Params {
    pub(crate) fn set(&mut self, key: &'static str, value: String, origin: Origin) {
        self.values.insert(key, (value, origin));
    }

    /// Sets `key` only when it has no value yet.
    pub(crate) fn set_default(&mut self, key: &'static str, value: String, origin: Origin) {
        self.values.entry(key).or_insert((value, origin));
    }

    pub(crate) fn get(&self, key: &str) -> Option<&str> {
        self.values.get(key).map(|(v, _)| v.as_str())
    }

    pub(crate) fn entry(&self, key: &str) -> Option<(&str, &Origin)> {
        self.values.get(key).map(|(v, o)| (v.as_str(), o))
    }

    pub(crate) fn remove(&mut self, key: &str) -> Option<(String, Origin)> {
        self.values.remove(key)
    }
}

/// Parses a URL (`postgres://…`, `postgresql://…`) or a `keyword=value` string. The error is a
/// message that quotes no secret.
pub(crate) fn parse(text: &str) -> Result<Params, String> {
    let trimmed = text.trim_start();
    for prefix in ["postgresql://", "postgres://"] {
        if let Some(rest) = trimmed.strip_prefix(prefix) {
            return parse_url(rest);
        }
    }
    if trimmed.contains("://") {
        return Err("a connection URL must start with postgres:// or postgresql://".into());
    }
    parse_key_value(text)
}

const ENCODE_HINT: &str = "percent-encode `@` as %40, `/` as %2F, `?` as %3F, `#` as %23, \
                           `%` as %25 and `:` as %3A in user names and passwords";

fn parse_url(rest: &str) -> Result<Params, String> {
    let mut params = Params::default();
    let mut rest = rest;
    if rest.contains('#') {
        // libpq has no fragments; a `#` is most likely part of an unencoded password.
        return Err(format!("the URL contains `#`; {ENCODE_HINT}"));
    }
    // User info ends at the first `@`, unless a `/` comes first (libpq's rule).
    match rest.find(['@', '/']) {
        Some(i) if rest.as_bytes()[i] == b'@' => {
            let userinfo = &rest[..i];
            rest = &rest[i + 1..];
            let (user, password) = match userinfo.split_once(':') {
                Some((u, p)) => (u, Some(p)),
                None => (userinfo, None),
            };
            let user = decode(user).map_err(|e| format!("{e} in the URL's user name"))?;
            if !user.is_empty() {
                params.set("user", user, Origin::Url);
            }
            if let Some(p) = password {
                let p = decode(p).map_err(|e| format!("{e} in the URL's password"))?;
                params.set("password", p, Origin::Url);
            }
        }
        _ => {
            let before_query = rest.split('?').next().unwrap_or("");
            if before_query.contains('@') {
                return Err(format!(
                    "cannot tell the URL's user and password from its host: an `@` follows a `/`; \
                     {ENCODE_HINT}"
                ));
            }
        }
    }
    let end = rest.find(['/', '?']).unwrap_or(rest.len());
    let (hostspec, tail) = rest.split_at(end);
    if hostspec.contains('@') {
        return Err(format!("the URL has more than one `@`; {ENCODE_HINT}"));
    }
    if !hostspec.is_empty() {
        let mut hosts = Vec::new();
        let mut ports = Vec::new();
        for part in hostspec.split(',') {
            let (host, port) = split_host_port(part)?;
            hosts.push(decode(host).map_err(|e| format!("{e} in the URL's host"))?);
            ports.push(decode(port.unwrap_or("")).map_err(|e| format!("{e} in the URL's port"))?);
        }
        if hosts.iter().any(|h| !h.is_empty()) {
            params.set("host", hosts.join(","), Origin::Url);
        }
        if ports.iter().any(|p| !p.is_empty()) {
            params.set("port", ports.join(","), Origin::Url);
        }
    }
    let (path, query) = match tail.split_once('?') {
        Some((p, q)) => (p, Some(q)),
        None => (tail, None),
    };
    if let Some(db) = path.strip_prefix('/') {
        let db = decode(db).map_err(|e| format!("{e} in the URL's database name"))?;
        if !db.is_empty() {
            params.set("dbname", db, Origin::Url);
        }
    }
    for pair in query.unwrap_or("").split('&').filter(|p| !p.is_empty()) {
        let Some((key, value)) = pair.split_once('=') else {
            return Err("a URL parameter lacks `=` (expected key=value)".into());
        };
        let key = decode(key).map_err(|e| format!("{e} in a URL parameter name"))?;
        let secret = key == "password";
        let value = decode(value).map_err(|e| {
            if secret {
                format!("{e} in the URL's password parameter")
            } else {
                format!("{e} in URL parameter `{key}`")
            }
        })?;
        if key == "ssl" {
            if value == "true" {
                params.set("sslmode", "require".into(), Origin::Url);
                continue;
            }
            return Err("URL parameter `ssl` only takes `true` (use sslmode=…)".into());
        }
        match keyword(&key) {
            Some(k) => params.set(k, value, Origin::Url),
            None => return Err(format!("unknown URL parameter `{}`", printable(&key))),
        }
    }
    Ok(params)
}

/// `host[:port]` or `[v6]:port`.
fn split_host_port(part: &str) -> Result<(&str, Option<&str>), String> {
    if let Some(inner) = part.strip_prefix('[') {
        let Some(close) = inner.find(']') else {
            return Err("an IPv6 address in the URL lacks its closing `]`".into());
        };
        let after = &inner[close + 1..];
        return match after.strip_prefix(':') {
            Some(port) => Ok((&inner[..close], Some(port))),
            None if after.is_empty() => Ok((&inner[..close], None)),
            None => Err("unexpected text after an IPv6 address in the URL".into()),
        };
    }
    Ok(match part.split_once(':') {
        Some((h, p)) => (h, Some(p)),
        None => (part, None),
    })
}

/// Why a percent-decoding failed (without the text).
#[derive(Debug)]
struct DecodeError(&'static str);

impl fmt::Display for DecodeError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.0)
    }
}

fn decode(s: &str) -> Result<String, DecodeError> {
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'%' {
            let hex = bytes
                .get(i + 1..i + 3)
                .and_then(|h| std::str::from_utf8(h).ok())
                .and_then(|h| u8::from_str_radix(h, 16).ok())
                .ok_or(DecodeError("invalid percent-encoding (`%` must be followed by two hex digits; write `%` itself as %25)"))?;
            out.push(hex);
            i += 3;
        } else {
            out.push(bytes[i]);
            i += 1;
        }
    }
    String::from_utf8(out).map_err(|_| DecodeError("text that is not UTF-8 after percent-decoding"))
}

/// A keyword for an error message: printable, at most 40 characters.
fn printable(s: &str) -> String {
    let mut out: String = s.chars().filter(|c| !c.is_control()).take(40).collect();
    if s.chars().count() > 40 {
        out.push('…');
    }
    out
}

fn parse_key_value(text: &str) -> Result<Params, String> {
    let chars: Vec<char> = text.chars().collect();
    let mut params = Params::default();
    let mut i = 0;
    let mut previous: Option<&'static str> = None;
    let skip_ws = |i: &mut usize| {
        while *i < chars.len() && chars[*i].is_whitespace() {
            *i += 1;
        }
    };
    loop {
        skip_ws(&mut i);
        if i >= chars.len() {
            break;
        }
        let start = i;
        while i < chars.len() && !chars[i].is_whitespace() && chars[i] != '=' {
            i += 1;
        }
        let word: String = chars[start..i].iter().collect();
        // The word after `password=` may be the rest of an unquoted password.
        let after_password = previous == Some("password");
        let named = |what: &str| {
            if after_password {
                format!("{what} at character {} (after the password; quote a password that contains spaces: password='…')", start + 1)
            } else {
                format!("{what} `{}` at character {}", printable(&word), start + 1)
            }
        };
        skip_ws(&mut i);
        if i >= chars.len() || chars[i] != '=' {
            return Err(named("missing `=` after"));
        }
        i += 1;
        skip_ws(&mut i);
        let Some(key) = keyword(&word) else {
            return Err(named("unknown keyword"));
        };
        let mut value = String::new();
        if i < chars.len() && chars[i] == '\'' {
            let open = i;
            i += 1;
            loop {
                match chars.get(i) {
                    None => {
                        return Err(format!(
                        "unterminated quoted value of `{key}` (the quote opens at character {})",
                        open + 1
                    ))
                    }
                    Some('\\') => {
                        if let Some(c) = chars.get(i + 1) {
                            value.push(*c);
                        }
                        i += 2;
                    }
                    Some('\'') => {
                        i += 1;
                        break;
                    }
                    Some(c) => {
                        value.push(*c);
                        i += 1;
                    }
                }
            }
        } else {
            while i < chars.len() && !chars[i].is_whitespace() {
                if chars[i] == '\\' {
                    if let Some(c) = chars.get(i + 1) {
                        value.push(*c);
                    }
                    i += 2;
                } else {
                    value.push(chars[i]);
                    i += 1;
                }
            }
        }
        params.set(key, value, Origin::KeyValue);
        previous = Some(key);
    }
    Ok(params)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn urls() {
        let p = parse(
            "postgres://bob:p%40ss%2Fw@db.example:6543/app?sslmode=verify-full&application_name=x",
        )
        .unwrap();
        assert_eq!(p.get("user"), Some("bob"));
        assert_eq!(p.get("password"), Some("p@ss/w"));
        assert_eq!(p.get("host"), Some("db.example"));
        assert_eq!(p.get("port"), Some("6543"));
        assert_eq!(p.get("dbname"), Some("app"));
        assert_eq!(p.get("sslmode"), Some("verify-full"));
        let p = parse("postgresql://a:1,[::1]:2/d?ssl=true").unwrap();
        assert_eq!(p.get("host"), Some("a,::1"));
        assert_eq!(p.get("port"), Some("1,2"));
        assert_eq!(p.get("sslmode"), Some("require"));
        let p = parse("postgres:///db?host=/var/run/postgresql").unwrap();
        assert_eq!(p.get("host"), Some("/var/run/postgresql"));
        assert_eq!(p.get("dbname"), Some("db"));
        let p = parse("postgres://u:a?b@h/d").unwrap();
        assert_eq!(p.get("password"), Some("a?b"));
        assert!(parse("postgres://h/d?bogus=1")
            .unwrap_err()
            .contains("unknown URL parameter `bogus`"));
    }

    #[test]
    fn key_value() {
        let p = parse(r"host=db  port = 5433 password='two words' user=bob\ smith dbname='it\'s'")
            .unwrap();
        assert_eq!(p.get("host"), Some("db"));
        assert_eq!(p.get("port"), Some("5433"));
        assert_eq!(p.get("password"), Some("two words"));
        assert_eq!(p.get("user"), Some("bob smith"));
        assert_eq!(p.get("dbname"), Some("it's"));
        let e = parse("host=db sslmdoe=require").unwrap_err();
        assert!(e.contains("unknown keyword `sslmdoe`"), "{e}");
        let e = parse("host=db password=two words").unwrap_err();
        assert!(!e.contains("words"), "{e}");
        assert!(format!("{p:?}").contains("\"***\""));
        assert!(!format!("{p:?}").contains("two words"));
    }
}
