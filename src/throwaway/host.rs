//! What a throwaway cluster needs from the machine: the server binaries, the OS user they run
//! as, a free port, a temp dir and a clean environment for their commands.

use std::fs;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};

use nix::unistd::User;

use super::ThrowawayError;

/// Environment variable that, when set, names the directory holding
/// `initdb`, `pg_ctl` and `postgres`; it is searched before anything else.
pub const BINDIR_ENV: &str = "CUTOVER_PG_BINDIR";

/// The server binaries a usable bindir must contain.
const SERVER_BINARIES: [&str; 3] = ["initdb", "pg_ctl", "postgres"];
/// Environment variables that could redirect PostgreSQL tools elsewhere.
const PG_ENV_VARS: [&str; 9] = [
    "PGDATA",
    "PGPORT",
    "PGHOST",
    "PGHOSTADDR",
    "PGOPTIONS",
    "PGUSER",
    "PGDATABASE",
    "PGSERVICE",
    "PGSERVICEFILE",
];

/// The OS user PostgreSQL commands run as, when it differs from ours.
#[derive(Debug, Clone, Copy)]
pub(super) struct RunAs {
    pub(super) uid: u32,
    pub(super) gid: u32,
}

/// Find the directory holding the PostgreSQL server binaries (`initdb`,
/// `pg_ctl`, `postgres`).
///
/// Looks, in order, at `$CUTOVER_PG_BINDIR`, `pg_config --bindir`,
/// `/usr/lib/postgresql/<version>/bin` (newest version first),
/// `/usr/pgsql-<version>/bin`, `/usr/local/pgsql/bin`, and the directories of
/// `PATH` (resolving symlinks, so `/usr/local/bin/initdb ->
/// /usr/lib/postgresql/15/bin/initdb` yields the latter).
pub fn find_bindir() -> Result<PathBuf, ThrowawayError> {
    fn check(dir: PathBuf, searched: &mut Vec<String>) -> Option<PathBuf> {
        let shown = dir.display().to_string();
        if !searched.contains(&shown) {
            searched.push(shown);
        }
        has_server_binaries(&dir).then_some(dir)
    }
    let mut searched: Vec<String> = Vec::new();

    if let Some(dir) = std::env::var_os(BINDIR_ENV).filter(|v| !v.is_empty()) {
        if let Some(found) = check(PathBuf::from(dir), &mut searched) {
            return Ok(found);
        }
    }

    match Command::new("pg_config")
        .arg("--bindir")
        .stdin(Stdio::null())
        .stderr(Stdio::null())
        .output()
    {
        Ok(out) if out.status.success() => {
            let dir = String::from_utf8_lossy(&out.stdout).trim().to_owned();
            if !dir.is_empty() {
                if let Some(found) = check(PathBuf::from(dir), &mut searched) {
                    return Ok(found);
                }
            }
        }
        Ok(_) => searched.push("pg_config --bindir (failed)".to_owned()),
        Err(_) => searched.push("pg_config --bindir (no pg_config on PATH)".to_owned()),
    }

    for (parent, prefix, suffix) in [
        ("/usr/lib/postgresql", "", "bin"),
        ("/usr", "pgsql-", "bin"),
    ] {
        for dir in versioned_dirs(Path::new(parent), prefix, suffix) {
            if let Some(found) = check(dir, &mut searched) {
                return Ok(found);
            }
        }
    }
    if let Some(found) = check(PathBuf::from("/usr/local/pgsql/bin"), &mut searched) {
        return Ok(found);
    }

    if let Some(path) = std::env::var_os("PATH") {
        for dir in std::env::split_paths(&path) {
            if !has_server_binaries(&dir) {
                check(dir, &mut searched);
                continue;
            }
            // Prefer the real bindir behind symlinks, when it is complete.
            if let Some(real) = fs::canonicalize(dir.join("initdb"))
                .ok()
                .and_then(|p| p.parent().map(Path::to_path_buf))
            {
                if let Some(found) = check(real, &mut searched) {
                    return Ok(found);
                }
            }
            if let Some(found) = check(dir, &mut searched) {
                return Ok(found);
            }
        }
    }
    Err(ThrowawayError::NoBinaries { searched })
}

/// `<parent>/<prefix><version>/<suffix>` for every version found, newest first.
fn versioned_dirs(parent: &Path, prefix: &str, suffix: &str) -> Vec<PathBuf> {
    let Ok(entries) = fs::read_dir(parent) else {
        return Vec::new();
    };
    let mut found: Vec<(Vec<u64>, PathBuf)> = entries
        .filter_map(Result::ok)
        .filter_map(|entry| {
            let name = entry.file_name();
            let version = name.to_str()?.strip_prefix(prefix)?;
            let key = version
                .split('.')
                .map(|part| part.parse::<u64>().ok())
                .collect::<Option<Vec<u64>>>()?;
            Some((key, entry.path().join(suffix)))
        })
        .collect();
    found.sort_by(|a, b| b.0.cmp(&a.0));
    found.into_iter().map(|(_, dir)| dir).collect()
}

fn has_server_binaries(dir: &Path) -> bool {
    SERVER_BINARIES
        .iter()
        .all(|name| is_executable(&dir.join(name)))
}

fn is_executable(path: &Path) -> bool {
    fs::metadata(path)
        .map(|m| m.is_file() && m.permissions().mode() & 0o111 != 0)
        .unwrap_or(false)
}

/// Who PostgreSQL commands must run as: `None` for "as we are".
pub(super) fn run_as_user() -> Result<Option<RunAs>, ThrowawayError> {
    if !nix::unistd::geteuid().is_root() {
        return Ok(None);
    }
    match User::from_name("postgres") {
        Ok(Some(user)) if !user.uid.is_root() => Ok(Some(RunAs {
            uid: user.uid.as_raw(),
            gid: user.gid.as_raw(),
        })),
        Ok(_) => Err(ThrowawayError::NoPostgresUser),
        Err(e) => Err(ThrowawayError::io(
            "looking up the `postgres` OS user",
            e.into(),
        )),
    }
}

/// Where to create the temp dir: the usual temp dir, unless we switch users
/// and that user could not reach it (e.g. `TMPDIR=/root/tmp`); then `/tmp`.
pub(super) fn temp_base(switching_user: bool) -> PathBuf {
    let dir = std::env::temp_dir();
    if !switching_user {
        return dir;
    }
    let traversable = fs::canonicalize(&dir)
        .map(|real| {
            real.ancestors().all(|p| {
                fs::metadata(p)
                    .map(|m| m.permissions().mode() & 0o001 != 0)
                    .unwrap_or(false)
            })
        })
        .unwrap_or(false);
    if traversable {
        dir
    } else {
        PathBuf::from("/tmp")
    }
}

/// Ask the kernel for a free port on 127.0.0.1.
pub(super) fn free_port() -> Result<u16, ThrowawayError> {
    std::net::TcpListener::bind(("127.0.0.1", 0))
        .and_then(|listener| listener.local_addr())
        .map(|addr| addr.port())
        .map_err(|e| ThrowawayError::io("finding a free port on 127.0.0.1", e))
}

pub(super) fn scrub_env(cmd: &mut Command) {
    for var in PG_ENV_VARS {
        cmd.env_remove(var);
    }
    // Untranslated messages, so that log matching works.
    cmd.env("LC_ALL", "C").env("LANG", "C");
}

/// Run a command to completion without blocking the async runtime.
pub(super) async fn run(cmd: Command, what: &str) -> Result<Output, ThrowawayError> {
    let mut cmd = tokio::process::Command::from(cmd);
    cmd.kill_on_drop(true);
    cmd.output()
        .await
        .map_err(|e| ThrowawayError::io(what.to_owned(), e))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn versioned_dirs_sort_newest_first() {
        let tmp = tempfile::tempdir().unwrap();
        for v in ["9.6", "15", "10", "notaversion", "16"] {
            fs::create_dir(tmp.path().join(v)).unwrap();
        }
        let dirs: Vec<_> = versioned_dirs(tmp.path(), "", "bin")
            .into_iter()
            .map(|d| {
                d.parent()
                    .and_then(|p| p.file_name())
                    .map(|n| n.to_string_lossy().into_owned())
                    .unwrap_or_default()
            })
            .collect();
        assert_eq!(dirs, ["16", "15", "10", "9.6"]);
    }

    #[test]
    fn no_binaries_error_names_the_package() {
        let e = ThrowawayError::NoBinaries {
            searched: vec!["/a".into(), "/b".into()],
        };
        let msg = e.to_string();
        assert!(msg.contains("/a, /b"), "{msg}");
        assert!(msg.contains("apt install postgresql"), "{msg}");
    }
}
