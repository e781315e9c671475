//! The exit guard that stops the server and removes the temp dir however this process ends
//! (see the module docs of [`super`]).

use std::io::Write;
use std::os::unix::process::CommandExt;
use std::path::Path;
use std::process::{Child, ChildStdin, Command, Stdio};

use super::host::{scrub_env, RunAs};
use super::ThrowawayError;

/// The watchdog script; `$1` = pg_ctl, `$2` = data dir, `$3` = temp dir.
const WATCHDOG_SCRIPT: &str = r#"trap '' INT HUP TERM QUIT PIPE
IFS= read -r cmd || cmd=
[ "$cmd" = disarm ] && exit 0
"$1" stop -D "$2" -m immediate -w -t 30 -s >/dev/null 2>&1
rm -rf -- "$3"
"#;

/// How to shut the server down (`pg_ctl stop -m`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Shutdown {
    /// Sessions are disconnected, then a checkpoint is written.
    Fast,
    /// The server processes are killed: a crash, recovered from at the next start.
    Immediate,
}

impl Shutdown {
    pub(super) fn as_str(self) -> &'static str {
        match self {
            Shutdown::Fast => "fast",
            Shutdown::Immediate => "immediate",
        }
    }
}

/// The exit guard: see the module docs.
#[derive(Debug)]
pub(super) struct Watchdog {
    child: Child,
    stdin: Option<ChildStdin>,
}

impl Watchdog {
    pub(super) fn spawn(
        pg_ctl: &Path,
        data_dir: &Path,
        root: &Path,
        run_as: Option<RunAs>,
    ) -> Result<Self, ThrowawayError> {
        let mut cmd = Command::new("/bin/sh");
        cmd.arg("-c")
            .arg(WATCHDOG_SCRIPT)
            .arg("cutover-pg-watchdog")
            .arg(pg_ctl)
            .arg(data_dir)
            .arg(root)
            .current_dir("/")
            .stdin(Stdio::piped())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .process_group(0);
        scrub_env(&mut cmd);
        if let Some(r) = run_as {
            cmd.uid(r.uid).gid(r.gid);
        }
        let mut child = cmd
            .spawn()
            .map_err(|e| ThrowawayError::io("spawning the cluster watchdog (/bin/sh)", e))?;
        let stdin = child.stdin.take();
        Ok(Watchdog { child, stdin })
    }

    /// Tell the watchdog that cleanup is done, and reap it.
    pub(super) fn disarm(mut self) {
        if let Some(mut stdin) = self.stdin.take() {
            // If it is already gone, the write fails with EPIPE: fine.
            let _ = stdin.write_all(b"disarm\n");
        }
        let _ = self.child.wait();
    }

    /// Close the pipe so that the watchdog cleans up now, without waiting
    /// for it (it may take a few seconds).
    pub(super) fn trigger(mut self) {
        drop(self.stdin.take());
        // Reap it if it is already done; otherwise it is reaped by init
        // once this process exits.
        let _ = self.child.try_wait();
    }
}
