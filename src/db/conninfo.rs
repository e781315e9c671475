//! libpq connection strings: `postgres://` URLs and `keyword=value` strings, parsed into the
//! same keyword set libpq uses. Error messages never quote a password, nor text that may be
//! part of one (parts of a URL before the last `@`, the word after `password=`).
//!
//! [`tokio_postgres::Config`] parses a URL's credentials, host list and database name. The
//! `keyword=value` string and the URL's query stay with Cutover's lexer: each keyword is kept as
//! text with its origin until the service file and the `PG*` environment have filled the unset
//! ones, and `Config` cannot do that. It refuses keywords it lacks (`service`, `passfile`, the
//! `ssl*` files, `sslmode=verify-full`, `target_session_attrs=primary`); it cannot tell whether
//! `sslmode`, `channel_binding`, `keepalives` or `target_session_attrs` was given; it reads
//! `connect_timeout=0` as unset and `tcp_user_timeout` in seconds; it appends a repeated `host=`;
//! and its errors cannot name the offending value. The keywords it takes as they are (`user`,
//! `password`, `dbname`, `options`, `application_name`) need nothing beyond the lexer.

use std::collections::BTreeMap;
use std::error::Error as _;
use std::fmt;
use std::path::PathBuf;

use tokio_postgres::config::Host;
use tokio_postgres::Config;

use super::DbError;

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

/// Parses a URL (`postgres://…`, `postgresql://…`) or a `keyword=value` string. The error
/// quotes no secret.
pub(crate) fn parse(text: &str) -> Result<Params, DbError> {
    let trimmed = text.trim_start();
    let url = ["postgresql://", "postgres://"]
        .iter()
        .find_map(|prefix| trimmed.strip_prefix(prefix));
    let (what, parsed) = match url {
        Some(rest) => ("in the connection URL", parse_url(rest)),
        None if trimmed.contains("://") => {
            ("in the connection string", Err(Malformed::NotPostgresUrl))
        }
        None => ("in the connection string", parse_key_value(text)),
    };
    parsed.map_err(|e| DbError::InvalidConfig {
        what: what.to_string(),
        message: e.to_string(),
    })
}

/// Why a connection string does not parse. No variant holds a password or text that may be
/// part of one.
#[derive(Debug, thiserror::Error)]
enum Malformed {
    #[error("a connection URL must start with postgres:// or postgresql://")]
    NotPostgresUrl,
    #[error("the URL contains `#`; {ENCODE_HINT}")]
    Fragment,
    #[error(
        "cannot tell the URL's user and password from its host: an `@` follows a `/`; {ENCODE_HINT}"
    )]
    AtAfterSlash,
    #[error("the URL has more than one `@`; {ENCODE_HINT}")]
    SeveralAts,
    /// `place` names where, never the text.
    #[error("{source} in {place}")]
    Decode { source: DecodeError, place: String },
    #[error(
        "the URL's host list is not valid ({}): write host:port or [IPv6]:port, \
         a port from 1 to 65535",
        .0.source().map(|c| c.to_string()).unwrap_or_default()
    )]
    HostList(#[source] tokio_postgres::Error),
    #[error("text that is not UTF-8 in the URL's password")]
    PasswordNotUtf8,
    #[error("a URL parameter lacks `=` (expected key=value)")]
    ParameterWithoutEquals,
    #[error("URL parameter `ssl` only takes `true` (use sslmode=…)")]
    SslNotTrue,
    #[error("unknown URL parameter `{0}`")]
    UnknownParameter(String),
    /// A `keyword=value` word that is wrong: `word` is `None` right after `password=`.
    #[error("{}", word_problem(problem, word.as_deref(), *at))]
    Word {
        problem: &'static str,
        word: Option<String>,
        at: usize,
    },
    #[error("unterminated quoted value of `{key}` (the quote opens at character {at})")]
    Unterminated { key: &'static str, at: usize },
}

fn word_problem(problem: &str, word: Option<&str>, at: usize) -> String {
    match word {
        Some(word) => format!("{problem} `{word}` at character {at}"),
        None => format!(
            "{problem} at character {at} (after the password; quote a password that contains spaces: password='…')"
        ),
    }
}

const ENCODE_HINT: &str = "percent-encode `@` as %40, `/` as %2F, `?` as %3F, `#` as %23, \
                           `%` as %25 and `:` as %3A in user names and passwords";

/// Parses what follows `postgres://`. `Config` parses the credentials, the host list (ports,
/// `[IPv6]`, socket directories) and the database name; before that, Cutover refuses what
/// `Config` would misread (a `#`, an `@` it would take for the end of the credentials, a `%`
/// not followed by two hex digits) and notes whether the URL gave a port at all.
fn parse_url(rest: &str) -> Result<Params, Malformed> {
    if rest.contains('#') {
        // libpq has no fragments; a `#` is most likely part of an unencoded password.
        return Err(Malformed::Fragment);
    }
    // User info ends at the first `@`, unless a `/` comes first (libpq's rule).
    let userinfo_len = match rest.find(['@', '/']) {
        Some(i) if rest.as_bytes()[i] == b'@' => i + 1,
        _ if rest.split('?').next().is_some_and(|r| r.contains('@')) => {
            return Err(Malformed::AtAfterSlash);
        }
        _ => 0,
    };
    let (userinfo, after) = rest.split_at(userinfo_len);
    let (location, query) = after.split_once('?').unwrap_or((after, ""));
    let (hostspec, path) = location.split_at(location.find('/').unwrap_or(location.len()));
    if hostspec.contains('@') {
        return Err(Malformed::SeveralAts);
    }
    let userinfo = userinfo.strip_suffix('@').unwrap_or(userinfo);
    let (user, password) = userinfo.split_once(':').unwrap_or((userinfo, ""));
    for (part, what) in [
        (user, "user name"),
        (password, "password"),
        (hostspec, "host list"),
        (path, "database name"),
    ] {
        decode(part).map_err(|source| Malformed::Decode {
            source,
            place: format!("the URL's {what}"),
        })?;
    }
    let at = if userinfo_len > 0 { "@" } else { "" };
    let config: Config = format!("postgresql://{userinfo}{at}{location}")
        .parse()
        .map_err(Malformed::HostList)?;
    let mut params = Params::default();
    if let Some(user) = config.get_user().filter(|u| !u.is_empty()) {
        params.set("user", user.to_string(), Origin::Url);
    }
    if let Some(p) = config.get_password() {
        let p = String::from_utf8(p.to_vec()).map_err(|_| Malformed::PasswordNotUtf8)?;
        params.set("password", p, Origin::Url);
    }
    let hosts: Vec<String> = config
        .get_hosts()
        .iter()
        .map(|h| match h {
            Host::Tcp(name) => name.clone(),
            Host::Unix(dir) => dir.to_string_lossy().into_owned(),
        })
        .collect();
    if hosts.iter().any(|h| !h.is_empty()) {
        params.set("host", hosts.join(","), Origin::Url);
    }
    // `Config` lists port 5432 for a host without one; only a port the URL names is set, so
    // that `PGPORT` and the service file still apply to `postgres://host/db`.
    let names_a_port = hostspec.split(',').any(|chunk| {
        let after_v6 = chunk.rsplit(']').next().unwrap_or(chunk);
        after_v6
            .split_once(':')
            .is_some_and(|(_, port)| !port.is_empty())
    });
    if names_a_port {
        let ports: Vec<String> = config.get_ports().iter().map(u16::to_string).collect();
        params.set("port", ports.join(","), Origin::Url);
    }
    if let Some(db) = config.get_dbname() {
        params.set("dbname", db.to_string(), Origin::Url);
    }
    for pair in query.split('&').filter(|p| !p.is_empty()) {
        let Some((key, value)) = pair.split_once('=') else {
            return Err(Malformed::ParameterWithoutEquals);
        };
        let key = decode(key).map_err(|source| Malformed::Decode {
            source,
            place: "a URL parameter name".to_string(),
        })?;
        let value = decode(value).map_err(|source| Malformed::Decode {
            source,
            place: if key == "password" {
                "the URL's password parameter".to_string()
            } else {
                format!("URL parameter `{key}`")
            },
        })?;
        if key == "ssl" {
            if value == "true" {
                params.set("sslmode", "require".into(), Origin::Url);
                continue;
            }
            return Err(Malformed::SslNotTrue);
        }
        match keyword(&key) {
            Some(k) => params.set(k, value, Origin::Url),
            None => return Err(Malformed::UnknownParameter(printable(&key))),
        }
    }
    Ok(params)
}

/// Why a percent-decoding failed (without the text).
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
struct DecodeError(&'static str);

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

fn parse_key_value(text: &str) -> Result<Params, Malformed> {
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
        let named = |problem: &'static str| Malformed::Word {
            problem,
            word: (!after_password).then(|| printable(&word)),
            at: start + 1,
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
        // A value runs to the next space, or to its closing quote; `\` escapes any character.
        let quote_at = (chars.get(i) == Some(&'\'')).then_some(i);
        if quote_at.is_some() {
            i += 1;
        }
        let mut value = String::new();
        loop {
            match (chars.get(i), quote_at) {
                (None, Some(open)) => return Err(Malformed::Unterminated { key, at: open + 1 }),
                (None, None) => break,
                (Some(c), None) if c.is_whitespace() => break,
                (Some('\''), Some(_)) => {
                    i += 1;
                    break;
                }
                (Some('\\'), _) => {
                    value.extend(chars.get(i + 1));
                    i += 2;
                }
                (Some(c), _) => {
                    value.push(*c);
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
        // Only a port the URL names is set (`Config` lists 5432 for a host without one).
        assert_eq!(
            parse("postgres://a:5,b/d").unwrap().get("port"),
            Some("5,5432")
        );
        assert_eq!(parse("postgres://h:/d").unwrap().get("port"), None);
        assert_eq!(
            parse("postgres://%2Ftmp/d").unwrap().get("host"),
            Some("/tmp")
        );
        // An `@` in the query does not end any credentials.
        let p = parse("postgres://h/d?password=a@b").unwrap();
        assert_eq!((p.get("host"), p.get("password")), (Some("h"), Some("a@b")));
        assert!(parse("postgres://h/d?bogus=1")
            .unwrap_err()
            .to_string()
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
        let e = parse("host=db sslmdoe=require").unwrap_err().to_string();
        assert!(e.contains("unknown keyword `sslmdoe`"), "{e}");
        let e = parse("host=db password=two words").unwrap_err().to_string();
        assert!(!e.contains("words"), "{e}");
        assert!(format!("{p:?}").contains("\"***\""));
        assert!(!format!("{p:?}").contains("two words"));
    }
}
