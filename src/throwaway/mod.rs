//! Throwaway PostgreSQL clusters: a private server in a temp dir, for tests
//! and demos, that never outlives the process that started it.
//!
//! [`ThrowawayCluster::start`] runs `initdb` into a fresh temp dir, appends
//! fast-but-unsafe settings to its `postgresql.conf` (`fsync=off`, …), starts
//! the server with `pg_ctl` on a free port of 127.0.0.1 (and a private unix
//! socket dir), and waits until it accepts connections.
//!
//! # Running as root
//!
//! `initdb`, `pg_ctl` and `postgres` refuse to run as root. When the effective
//! uid is 0, every PostgreSQL command (and the watchdog below) runs as the
//! `postgres` OS user, and the temp dir is chowned to that user. Without such
//! a user, [`ThrowawayError::NoPostgresUser`] is returned.
//!
//! # Exit guard (the watchdog)
//!
//! `Drop` stops the server and removes the temp dir, but `Drop` does not run
//! when the owning process is killed (SIGKILL, a crash, `panic=abort`) or
//! exits through `std::process::exit` while the cluster lives in a static.
//! So, before anything is created in the temp dir, `start` spawns a watchdog:
//! a tiny `/bin/sh` script, in its own process group (so a Ctrl-C sent to the
//! terminal's foreground group does not kill it before it has cleaned up),
//! ignoring SIGINT/SIGHUP/SIGTERM/SIGQUIT, whose stdin is a pipe whose only
//! write end is held by this process (std opens pipes `O_CLOEXEC`, so no
//! other child inherits it). The script blocks in `read`:
//!
//! * when this process ends, however it ends, the kernel closes the write
//!   end, `read` hits EOF, and the script runs `pg_ctl stop -m immediate`
//!   and `rm -rf` on the temp dir;
//! * when the cluster is stopped normally ([`ThrowawayCluster::stop`] or
//!   `Drop`) and the cleanup succeeded, this process writes `disarm` into
//!   the pipe and reaps the watchdog, which exits without doing anything.
//!   If our own cleanup failed, the pipe is closed instead, so the watchdog
//!   makes a second attempt.
//!
//! A pipe was chosen over polling the parent pid because it reacts at once,
//! cannot be fooled by pid reuse, and works across the uid switch (the
//! watchdog, running as `postgres`, could not `kill -0` a root parent).
//! Only SIGKILL of the watchdog itself defeats it.

use std::fs;
use std::io::{self, Read, Seek, SeekFrom, Write};
use std::os::unix::fs::PermissionsExt;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use nix::unistd::{Gid, Uid};

use crate::db::{self, DbConfig, Env};

mod error;
mod host;
mod watchdog;

pub use error::ThrowawayError;
pub use host::{find_bindir, BINDIR_ENV};
use host::{free_port, run, run_as_user, scrub_env, temp_base, RunAs};
pub use watchdog::Shutdown;
use watchdog::Watchdog;

/// How long to wait for the server to accept connections.
const READY_TIMEOUT: Duration = Duration::from_secs(30);
/// How many ports to try when the chosen one is taken in the meantime.
const PORT_ATTEMPTS: usize = 5;
/// How much of the server log to quote in errors.
const LOG_TAIL_BYTES: u64 = 4096;
/// `sun_path` is 108 bytes on Linux, including the terminating NUL.
const MAX_SOCKET_PATH: usize = 107;

/// Settings appended to the cluster's `postgresql.conf` (the port is given
/// on the command line, the socket dir is added separately).
const SETTINGS: &str = "
# --- added by cutover's throwaway cluster ---
listen_addresses = '127.0.0.1'
fsync = off
synchronous_commit = off
full_page_writes = off
max_connections = 200
wal_level = replica
timezone = 'UTC'
logging_collector = off
log_destination = 'stderr'
";

/// Settings of [`ClusterOptions::durable`] (later lines win over [`SETTINGS`]).
const DURABLE: &str = "fsync = on
synchronous_commit = on
full_page_writes = on
";

/// Settings that load `pg_stat_statements` (the default; see [`ClusterOptions`]).
const STAT_STATEMENTS: &str = "shared_preload_libraries = 'pg_stat_statements'
pg_stat_statements.track = all
";

/// TLS files for a cluster: copied into its temp dir (the server insists on owning its key).
#[derive(Debug, Clone)]
pub struct SslFiles {
    /// Server certificate (PEM).
    pub cert: PathBuf,
    /// Server private key (PEM).
    pub key: PathBuf,
    /// CA whose client certificates the server accepts (`ssl_ca_file`), if any.
    pub client_ca: Option<PathBuf>,
}

/// How to set a cluster up beyond the defaults.
#[derive(Debug, Clone, Default)]
pub struct ClusterOptions {
    /// Turn TLS on with these files.
    pub ssl: Option<SslFiles>,
    /// `pg_hba.conf` lines for TCP clients, replacing the default `host all all 127.0.0.1/32
    /// trust`; unix-socket clients stay trusted (Cutover's readiness check uses the socket).
    pub hba: Vec<String>,
    /// `password_encryption` (`scram-sha-256`, `md5`).
    pub password_encryption: Option<String>,
    /// Do not preload `pg_stat_statements` (starts a little faster).
    pub without_stat_statements: bool,
    /// `autovacuum = off`: for tests that compare the server's transaction counters with
    /// Cutover's, which an autovacuum worker's visit to the database would move.
    pub without_autovacuum: bool,
    /// `wal_level = logical`, for logical replication slots (CDC).
    pub logical_decoding: bool,
    /// Durability as in production (`fsync`, `synchronous_commit` and `full_page_writes` on):
    /// for benchmarks, where a commit must wait for its WAL flush as the application's do.
    pub durable: bool,
}

/// A private PostgreSQL cluster in a temp dir, stopped and removed on drop.
///
/// The server listens on 127.0.0.1 at a free port and on a unix socket in
/// [`socket_dir`](Self::socket_dir); authentication is `trust` for the
/// superuser `postgres` unless [`ClusterOptions`] say otherwise. It has
/// `pg_stat_statements` preloaded
/// (`track = all`), `max_connections = 200`, `timezone = 'UTC'`, and
/// durability switched off (`fsync`, `synchronous_commit`,
/// `full_page_writes`), so never keep anything valuable in it.
///
/// A watchdog process stops the server and removes the temp dir even if
/// this process dies without running `Drop` (see the module docs).
///
/// `stop` and `Drop` block the calling thread while `pg_ctl stop` runs
/// (usually well under a second).
#[derive(Debug)]
pub struct ThrowawayCluster {
    bindir: PathBuf,
    root: PathBuf,
    data_dir: PathBuf,
    socket_dir: PathBuf,
    log_file: PathBuf,
    port: u16,
    run_as: Option<RunAs>,
    watchdog: Option<Watchdog>,
    cleaned_up: bool,
}

impl ThrowawayCluster {
    /// Create, start and wait for a new cluster.
    ///
    /// Runs `initdb -A trust -U postgres --no-sync -E UTF8 --locale=C`, then
    /// `pg_ctl start`, retrying with another port if the chosen one was taken
    /// meanwhile, then waits (up to 30 s) until a connection succeeds.
    /// Anything created so far is removed again when this fails.
    ///
    /// Must be awaited inside a tokio runtime with I/O and time enabled
    /// (`#[tokio::main]`, `#[tokio::test]`). The returned value holds no
    /// runtime resources, so it may outlive that runtime.
    pub async fn start() -> Result<Self, ThrowawayError> {
        ThrowawayCluster::start_with(&ClusterOptions::default()).await
    }

    /// Like [`ThrowawayCluster::start`], with TLS, authentication rules or settings from
    /// `options`.
    pub async fn start_with(options: &ClusterOptions) -> Result<Self, ThrowawayError> {
        let bindir = find_bindir()?;
        let run_as = run_as_user()?;
        let base = temp_base(run_as.is_some());
        let root = tempfile::Builder::new()
            .prefix("cutover-pg-")
            .tempdir_in(&base)
            .map_err(|e| {
                ThrowawayError::io(format!("creating a temp dir in {}", base.display()), e)
            })?
            .keep();
        // From here on, `Drop` of `cluster` cleans up whatever exists.
        let mut cluster = ThrowawayCluster {
            data_dir: root.join("data"),
            socket_dir: root.join("sock"),
            log_file: root.join("postgres.log"),
            root,
            bindir,
            port: 0,
            run_as,
            watchdog: None,
            cleaned_up: false,
        };
        cluster.chown(&cluster.root)?;
        cluster.watchdog = Some(Watchdog::spawn(
            &cluster.bindir.join("pg_ctl"),
            &cluster.data_dir,
            &cluster.root,
            run_as,
        )?);
        cluster.check_socket_path()?;
        fs::create_dir(&cluster.socket_dir).map_err(|e| {
            ThrowawayError::io(format!("creating {}", cluster.socket_dir.display()), e)
        })?;
        cluster.chown(&cluster.socket_dir)?;
        cluster.initdb().await?;
        cluster.write_settings(options)?;
        cluster.start_server().await?;
        cluster.wait_ready().await?;
        tracing::debug!(
            port = cluster.port,
            dir = %cluster.root.display(),
            "throwaway PostgreSQL cluster started"
        );
        Ok(cluster)
    }

    /// Connection URL of the `postgres` database as the `postgres`
    /// superuser over TCP: `postgres://postgres@127.0.0.1:<port>/postgres`.
    pub fn url(&self) -> String {
        format!("postgres://postgres@127.0.0.1:{}/postgres", self.port)
    }

    /// The same as [`url`](Self::url), but over the unix socket, in
    /// key=value form (`host='<socket dir>' port=… user=postgres dbname=postgres`).
    pub fn socket_url(&self) -> String {
        format!(
            "host={} port={} user=postgres dbname=postgres",
            quote_conninfo(&self.socket_dir.to_string_lossy()),
            self.port
        )
    }

    /// The TCP port the server listens on (on 127.0.0.1).
    pub fn port(&self) -> u16 {
        self.port
    }

    /// The directory holding the server's unix socket.
    pub fn socket_dir(&self) -> &Path {
        &self.socket_dir
    }

    /// The cluster's data directory (inside the temp dir).
    pub fn data_dir(&self) -> &Path {
        &self.data_dir
    }

    /// The server's log file (inside the temp dir).
    pub fn log_file(&self) -> &Path {
        &self.log_file
    }

    /// The directory of the PostgreSQL binaries in use (`psql`, `pgbench`,
    /// … of the same version usually live there too).
    pub fn bindir(&self) -> &Path {
        &self.bindir
    }

    /// Stop the server gracefully (fast shutdown: sessions are disconnected,
    /// then a checkpoint), then remove the temp dir.
    ///
    /// If the graceful stop fails, an immediate shutdown is tried; the first
    /// error is returned.
    pub fn stop(mut self) -> Result<(), ThrowawayError> {
        self.shutdown(Shutdown::Fast)
    }

    /// Stops the server (`mode`: `Immediate` is a crash, recovered from at the next start)
    /// and starts it again on the same port and data, then waits until it accepts
    /// connections. Every open session is cut.
    pub async fn restart(&mut self, mode: Shutdown) -> Result<(), ThrowawayError> {
        let cmd = self.stop_command(mode);
        let out = run(cmd, "running pg_ctl stop").await?;
        if !out.status.success() {
            return Err(ThrowawayError::Stop {
                status: out.status.to_string(),
                stderr: String::from_utf8_lossy(&out.stderr).trim().to_owned(),
            });
        }
        let log_offset = fs::metadata(&self.log_file).map(|m| m.len()).unwrap_or(0);
        let out = run(self.pg_ctl_start(self.port), "running pg_ctl start").await?;
        if !out.status.success() {
            return Err(ThrowawayError::Start {
                reason: format!(
                    "restart on port {}: pg_ctl start exited with {}: {}",
                    self.port,
                    out.status,
                    String::from_utf8_lossy(&out.stderr).trim()
                ),
                log_tail: self.read_log(log_offset),
            });
        }
        self.wait_ready().await
    }

    fn shutdown(&mut self, mode: Shutdown) -> Result<(), ThrowawayError> {
        if self.cleaned_up {
            return Ok(());
        }
        self.cleaned_up = true;
        let mut result = self.pg_ctl_stop(mode);
        if result.is_err() && mode == Shutdown::Fast {
            if let Err(e) = self.pg_ctl_stop(Shutdown::Immediate) {
                tracing::warn!("immediate shutdown of throwaway cluster failed too: {e}");
            }
        }
        let removed = match fs::remove_dir_all(&self.root) {
            Ok(()) => Ok(()),
            Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(()),
            Err(e) => Err(ThrowawayError::io(
                format!("removing {}", self.root.display()),
                e,
            )),
        };
        if result.is_ok() {
            result = removed;
        }
        if let Some(watchdog) = self.watchdog.take() {
            if result.is_ok() {
                watchdog.disarm();
            } else {
                watchdog.trigger();
            }
        }
        result
    }

    fn pg_ctl_stop(&self, mode: Shutdown) -> Result<(), ThrowawayError> {
        if !self.data_dir.join("postmaster.pid").exists() {
            return Ok(()); // not running (or never started)
        }
        let mut cmd = self.stop_command(mode);
        let out = cmd
            .output()
            .map_err(|e| ThrowawayError::io("running pg_ctl stop", e))?;
        if out.status.success() {
            Ok(())
        } else {
            Err(ThrowawayError::Stop {
                status: out.status.to_string(),
                stderr: String::from_utf8_lossy(&out.stderr).trim().to_owned(),
            })
        }
    }

    /// `pg_ctl stop` in `mode`, waiting up to 30 s.
    fn stop_command(&self, mode: Shutdown) -> Command {
        let mut cmd = self.command("pg_ctl");
        cmd.arg("stop").arg("-D").arg(&self.data_dir).args([
            "-m",
            mode.as_str(),
            "-w",
            "-t",
            "30",
            "-s",
        ]);
        cmd
    }

    /// A command for one of the server binaries, as the right user, with
    /// the temp dir as working directory and PG* variables removed.
    fn command(&self, program: &str) -> Command {
        let mut cmd = Command::new(self.bindir.join(program));
        cmd.current_dir(&self.root).stdin(Stdio::null());
        scrub_env(&mut cmd);
        if let Some(r) = self.run_as {
            cmd.uid(r.uid).gid(r.gid);
        }
        cmd
    }

    fn chown(&self, path: &Path) -> Result<(), ThrowawayError> {
        let Some(r) = self.run_as else {
            return Ok(());
        };
        nix::unistd::chown(path, Some(Uid::from_raw(r.uid)), Some(Gid::from_raw(r.gid))).map_err(
            |e| {
                ThrowawayError::io(
                    format!("chown {} to the postgres user", path.display()),
                    e.into(),
                )
            },
        )
    }

    fn check_socket_path(&self) -> Result<(), ThrowawayError> {
        let longest = self.socket_dir.join(".s.PGSQL.65535.lock");
        if longest.as_os_str().len() > MAX_SOCKET_PATH {
            return Err(ThrowawayError::Start {
                reason: format!(
                    "the unix socket path under {} would be too long; \
                     set TMPDIR to a shorter directory",
                    self.root.display()
                ),
                log_tail: String::new(),
            });
        }
        Ok(())
    }

    async fn initdb(&self) -> Result<(), ThrowawayError> {
        let mut cmd = self.command("initdb");
        cmd.arg("-D").arg(&self.data_dir).args([
            "-A",
            "trust",
            "-U",
            "postgres",
            "--no-sync",
            "-E",
            "UTF8",
            "--locale=C",
        ]);
        let out = run(cmd, "running initdb").await?;
        if out.status.success() {
            return Ok(());
        }
        let mut output = String::from_utf8_lossy(&out.stderr).trim().to_owned();
        let stdout = String::from_utf8_lossy(&out.stdout);
        if !stdout.trim().is_empty() {
            output.push('\n');
            output.push_str(stdout.trim());
        }
        Err(ThrowawayError::Initdb {
            status: out.status.to_string(),
            output,
        })
    }

    fn write_settings(&self, options: &ClusterOptions) -> Result<(), ThrowawayError> {
        let conf = self.data_dir.join("postgresql.conf");
        let mut text = format!(
            "{SETTINGS}unix_socket_directories = {}\n",
            quote_conf(&self.socket_dir.to_string_lossy())
        );
        if !options.without_stat_statements {
            text.push_str(STAT_STATEMENTS);
        }
        if options.without_autovacuum {
            text.push_str("autovacuum = off\n");
        }
        if options.logical_decoding {
            text.push_str("wal_level = logical\n");
        }
        if options.durable {
            text.push_str(DURABLE);
        }
        if let Some(enc) = &options.password_encryption {
            text.push_str(&format!("password_encryption = {}\n", quote_conf(enc)));
        }
        if let Some(ssl) = &options.ssl {
            let dir = self.root.join("ssl");
            fs::create_dir(&dir)
                .map_err(|e| ThrowawayError::io(format!("creating {}", dir.display()), e))?;
            self.chown(&dir)?;
            text.push_str("ssl = on\n");
            let files = [
                ("ssl_cert_file", Some(&ssl.cert), "server.crt"),
                ("ssl_key_file", Some(&ssl.key), "server.key"),
                ("ssl_ca_file", ssl.client_ca.as_ref(), "client-ca.crt"),
            ];
            for (setting, source, name) in files {
                let Some(source) = source else { continue };
                let target = dir.join(name);
                fs::copy(source, &target)
                    .map_err(|e| ThrowawayError::io(format!("copying {}", source.display()), e))?;
                fs::set_permissions(&target, fs::Permissions::from_mode(0o600))
                    .map_err(|e| ThrowawayError::io(format!("chmod {}", target.display()), e))?;
                self.chown(&target)?;
                text.push_str(&format!(
                    "{setting} = {}\n",
                    quote_conf(&target.to_string_lossy())
                ));
            }
        }
        fs::OpenOptions::new()
            .append(true)
            .open(&conf)
            .and_then(|mut f| f.write_all(text.as_bytes()))
            .map_err(|e| ThrowawayError::io(format!("appending to {}", conf.display()), e))?;
        if !options.hba.is_empty() {
            let hba = self.data_dir.join("pg_hba.conf");
            let mut lines = String::from("local all all trust\n");
            for line in &options.hba {
                lines.push_str(line);
                lines.push('\n');
            }
            fs::write(&hba, lines)
                .map_err(|e| ThrowawayError::io(format!("writing {}", hba.display()), e))?;
        }
        Ok(())
    }

    async fn start_server(&mut self) -> Result<(), ThrowawayError> {
        for attempt in 1..=PORT_ATTEMPTS {
            let port = free_port()?;
            let log_offset = fs::metadata(&self.log_file).map(|m| m.len()).unwrap_or(0);
            let out = run(self.pg_ctl_start(port), "running pg_ctl start").await?;
            if out.status.success() {
                self.port = port;
                return Ok(());
            }
            let new_log = self.read_log(log_offset);
            let clash = new_log.contains("Address already in use")
                || new_log.contains("could not bind IPv4 address")
                || new_log.contains("could not create any TCP/IP sockets");
            if clash && attempt < PORT_ATTEMPTS {
                tracing::debug!(port, "port taken, retrying with another one");
                continue;
            }
            return Err(ThrowawayError::Start {
                reason: format!(
                    "pg_ctl start exited with {}: {}",
                    out.status,
                    String::from_utf8_lossy(&out.stderr).trim()
                ),
                log_tail: self.log_tail(),
            });
        }
        Err(ThrowawayError::Start {
            reason: format!("no free port found in {PORT_ATTEMPTS} attempts"),
            log_tail: self.log_tail(),
        })
    }

    /// `pg_ctl start` on `port`, waiting for the server.
    fn pg_ctl_start(&self, port: u16) -> Command {
        let mut cmd = self.command("pg_ctl");
        cmd.arg("start")
            .arg("-D")
            .arg(&self.data_dir)
            .arg("-l")
            .arg(&self.log_file)
            .args(["-w", "-t", "30", "-s", "-o"])
            .arg(format!("-p {port}"))
            // Keep the server out of our process group: a Ctrl-C on the
            // terminal then reaches us, and the watchdog shuts it down.
            .process_group(0);
        cmd
    }

    async fn wait_ready(&self) -> Result<(), ThrowawayError> {
        // Over the unix socket (always `trust`, whatever the TCP rules), and without the
        // caller's PG* environment.
        let cfg = DbConfig::parse_with(&self.socket_url(), &Env::Fixed(Vec::new()))
            .map_err(|e| ThrowawayError::Start {
                reason: format!("bad connection string {}: {e}", self.socket_url()),
                log_tail: String::new(),
            })?
            .with_connect_timeout(Some(Duration::from_secs(5)));
        let deadline = Instant::now() + READY_TIMEOUT;
        loop {
            let error = match db::connect_app(&cfg, "cutover/throwaway-ready").await {
                Ok(client) => {
                    drop(client);
                    return Ok(());
                }
                Err(e) => e.to_string(),
            };
            if Instant::now() >= deadline {
                return Err(ThrowawayError::Start {
                    reason: format!(
                        "not accepting connections on port {} after {}s: {error}",
                        self.port,
                        READY_TIMEOUT.as_secs()
                    ),
                    log_tail: self.log_tail(),
                });
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    /// The log from byte `offset` on (lossy, for matching).
    fn read_log(&self, offset: u64) -> String {
        let mut buf = Vec::new();
        let read = fs::File::open(&self.log_file).and_then(|mut f| {
            f.seek(SeekFrom::Start(offset))?;
            f.read_to_end(&mut buf)
        });
        match read {
            Ok(_) => String::from_utf8_lossy(&buf).into_owned(),
            Err(_) => String::new(),
        }
    }

    /// The last few KiB of the server log.
    fn log_tail(&self) -> String {
        let len = match fs::metadata(&self.log_file) {
            Ok(m) => m.len(),
            Err(e) => return format!("(no log at {}: {e})", self.log_file.display()),
        };
        let tail = self.read_log(len.saturating_sub(LOG_TAIL_BYTES));
        if len > LOG_TAIL_BYTES {
            // Drop the (probably partial) first line.
            match tail.split_once('\n') {
                Some((_, rest)) => rest.to_owned(),
                None => tail,
            }
        } else {
            tail
        }
    }
}

impl Drop for ThrowawayCluster {
    fn drop(&mut self) {
        if let Err(e) = self.shutdown(Shutdown::Immediate) {
            tracing::warn!(
                dir = %self.root.display(),
                "cleaning up throwaway PostgreSQL cluster failed (its watchdog retries): {e}"
            );
        }
    }
}

/// Quote a value for `postgresql.conf`.
fn quote_conf(value: &str) -> String {
    format!("'{}'", value.replace('\'', "''"))
}

/// Quote a value for a libpq-style key=value connection string.
fn quote_conninfo(value: &str) -> String {
    let escaped = value.replace('\\', "\\\\").replace('\'', "\\'");
    format!("'{escaped}'")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn quoting() {
        assert_eq!(quote_conf("/tmp/a'b"), "'/tmp/a''b'");
        assert_eq!(quote_conninfo(r"/tmp/a'b\c"), r"'/tmp/a\'b\\c'");
    }

    #[test]
    fn socket_url_parses() {
        let url = format!(
            "host={} port=5432 user=postgres dbname=postgres",
            quote_conninfo("/tmp/x y")
        );
        let config: tokio_postgres::Config = url.parse().unwrap();
        assert_eq!(config.get_ports(), [5432]);
    }
}
