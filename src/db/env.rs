//! Where settings come from besides the connection string: the process environment (or a fixed
//! map), the home directory, and the names of this user and machine.

use std::path::PathBuf;

/// Where settings come from: the process environment, or a fixed map (tests, throwaway
/// clusters).
#[derive(Clone, Debug)]
pub(crate) enum Env {
    Process,
    Fixed(Vec<(String, String)>),
}

impl Env {
    /// A non-empty variable.
    pub(crate) fn var(&self, name: &str) -> Option<String> {
        match self {
            Env::Process => std::env::var(name).ok(),
            Env::Fixed(vars) => vars.iter().find(|(k, _)| k == name).map(|(_, v)| v.clone()),
        }
        .filter(|v| !v.is_empty())
    }

    /// `$HOME`, else the user's home directory from the password database.
    pub(crate) fn home(&self) -> Option<PathBuf> {
        if let Some(h) = self.var("HOME") {
            return Some(PathBuf::from(h));
        }
        match self {
            Env::Process => nix::unistd::User::from_uid(nix::unistd::geteuid())
                .ok()
                .flatten()
                .map(|u| u.dir),
            Env::Fixed(_) => None,
        }
    }
}

/// The operating-system user running this process.
pub fn os_user() -> String {
    nix::unistd::User::from_uid(nix::unistd::geteuid())
        .ok()
        .flatten()
        .map(|u| u.name)
        .or_else(|| std::env::var("USER").ok().filter(|u| !u.is_empty()))
        .unwrap_or_else(|| "unknown".to_string())
}

/// This machine's host name.
pub fn host_name() -> String {
    nix::unistd::gethostname()
        .ok()
        .and_then(|h| h.into_string().ok())
        .unwrap_or_else(|| "unknown".to_string())
}
