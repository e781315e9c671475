//! Connection service files (`pg_service.conf`), read as libpq reads them: the user's file
//! (`PGSERVICEFILE`, default `~/.pg_service.conf`) first, then the system one
//! (`$PGSYSCONFDIR/pg_service.conf`, default `/etc/postgresql-common/pg_service.conf`).

use std::path::{Path, PathBuf};

use super::conninfo::{keyword, Origin, Params};
use super::{DbError, Env};

/// The system configuration directory when `PGSYSCONFDIR` is not set (Debian's libpq).
pub(super) const DEFAULT_SYSCONFDIR: &str = "/etc/postgresql-common";

/// The files searched for a service, in order, with whether a missing file is an error.
pub(crate) fn files(env: &Env) -> Vec<(PathBuf, bool)> {
    let mut out = Vec::new();
    match env.var("PGSERVICEFILE") {
        Some(f) => out.push((PathBuf::from(f), true)),
        None => {
            if let Some(home) = env.home() {
                out.push((home.join(".pg_service.conf"), false));
            }
        }
    }
    let sysconf = env
        .var("PGSYSCONFDIR")
        .unwrap_or_else(|| DEFAULT_SYSCONFDIR.to_string());
    out.push((Path::new(&sysconf).join("pg_service.conf"), false));
    out
}

/// The settings of service `name`, from the first file that defines it.
pub(crate) fn lookup(name: &str, env: &Env) -> Result<Params, DbError> {
    let searched = files(env);
    for (file, required) in &searched {
        let text = match std::fs::read_to_string(file) {
            Ok(t) => t,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound && !required => continue,
            Err(e) => {
                return Err(DbError::InvalidConfig {
                    what: format!("service file {}", file.display()),
                    message: format!("cannot read it: {e}"),
                })
            }
        };
        if let Some(params) = parse(&text, file, name)? {
            return Ok(params);
        }
    }
    Err(DbError::InvalidConfig {
        what: format!("service `{name}`"),
        message: format!(
            "no definition found (searched {})",
            searched
                .iter()
                .map(|(f, _)| f.display().to_string())
                .collect::<Vec<_>>()
                .join(", ")
        ),
    })
}

/// The section `[name]` of a service file, if present.
pub(crate) fn parse(text: &str, file: &Path, name: &str) -> Result<Option<Params>, DbError> {
    let mut found: Option<Params> = None;
    let bad = |line: usize, message: String| DbError::InvalidConfig {
        what: format!("service file {}:{line}", file.display()),
        message,
    };
    for (n, raw) in text.lines().enumerate() {
        let line_no = n + 1;
        let line = raw.trim();
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        if let Some(section) = line.strip_prefix('[') {
            if found.is_some() {
                break;
            }
            let Some(section) = section.strip_suffix(']') else {
                return Err(bad(
                    line_no,
                    "a section header lacks its closing `]`".into(),
                ));
            };
            if section.trim() == name {
                found = Some(Params::default());
            }
            continue;
        }
        let Some(params) = found.as_mut() else {
            continue;
        };
        let Some((key, value)) = line.split_once('=') else {
            return Err(bad(line_no, "expected keyword=value".into()));
        };
        let key = key.trim();
        if key == "service" {
            return Err(bad(
                line_no,
                "nested service specifications are not supported".into(),
            ));
        }
        let Some(k) = keyword(key) else {
            return Err(bad(
                line_no,
                format!(
                    "unknown keyword `{}`",
                    key.chars().take(40).collect::<String>()
                ),
            ));
        };
        params.set(
            k,
            value.trim().to_string(),
            Origin::Service {
                file: file.to_path_buf(),
                line: line_no,
            },
        );
    }
    Ok(found)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_one_section() {
        let text = "# comment\n[other]\nhost=x\n\n[prod]\nhost = db.example\nport=6432\npassword=hunter2 x\n[later]\nhost=y\n";
        let p = parse(text, Path::new("/f"), "prod").unwrap().unwrap();
        assert_eq!(p.get("host"), Some("db.example"));
        assert_eq!(p.get("port"), Some("6432"));
        assert_eq!(p.get("password"), Some("hunter2 x"));
        assert_eq!(
            p.entry("port").map(|(_, o)| o.to_string()),
            Some("/f:7".to_string())
        );
        assert!(parse(text, Path::new("/f"), "none").unwrap().is_none());
        let e = parse("[prod]\nhots=x\n", Path::new("/f"), "prod").unwrap_err();
        assert!(e.to_string().contains("/f:2"), "{e}");
        assert!(e.to_string().contains("`hots`"), "{e}");
    }
}
