//! Why a throwaway cluster could not be started or stopped.

use std::io;

use super::BINDIR_ENV;

/// Why a throwaway cluster could not be started or stopped.
#[derive(Debug, thiserror::Error)]
pub enum ThrowawayError {
    /// No directory with `initdb`, `pg_ctl` and `postgres` was found.
    #[error(
        "PostgreSQL server binaries (initdb, pg_ctl, postgres) not found; searched: {}. \
         Install the PostgreSQL server: on Debian/Ubuntu `apt install postgresql`; \
         on Fedora/RHEL `dnf install postgresql-server postgresql-contrib`; \
         on Arch `pacman -S postgresql`; on macOS `brew install postgresql`; \
         or set {BINDIR_ENV} to the directory that holds them",
        .searched.join(", ")
    )]
    NoBinaries {
        /// The places that were looked at, in order.
        searched: Vec<String>,
    },
    /// Running as root, and there is no `postgres` OS user to run as.
    #[error(
        "running as root, but there is no `postgres` OS user: initdb and postgres refuse \
         to run as root, so cutover runs them as `postgres`; create that user \
         (e.g. `useradd --system --home-dir /var/lib/postgresql postgres`) or run as a \
         non-root user"
    )]
    NoPostgresUser,
    /// `initdb` failed.
    #[error("initdb failed ({status}):\n{output}")]
    Initdb {
        /// Its exit status.
        status: String,
        /// What it printed (stderr, then stdout).
        output: String,
    },
    /// The server did not start or did not accept connections in time.
    #[error("PostgreSQL did not start: {reason}\n--- server log (tail) ---\n{log_tail}")]
    Start {
        /// What went wrong.
        reason: String,
        /// The end of the server's log file.
        log_tail: String,
    },
    /// `pg_ctl stop` failed.
    #[error("pg_ctl stop failed ({status}): {stderr}")]
    Stop {
        /// Its exit status.
        status: String,
        /// What it printed on stderr.
        stderr: String,
    },
    /// An I/O error, with what was being done.
    #[error("{context}: {source}")]
    Io {
        /// What was being done.
        context: String,
        /// The underlying error.
        #[source]
        source: io::Error,
    },
}

impl ThrowawayError {
    pub(super) fn io(context: impl Into<String>, source: io::Error) -> Self {
        ThrowawayError::Io {
            context: context.into(),
            source,
        }
    }
}
