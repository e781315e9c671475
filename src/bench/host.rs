//! What the server's writes did while a workload ran: `pg_stat_bgwriter` deltas (who wrote the
//! dirty pages back, how many checkpoints) and, for a cluster on this machine, the kernel's dirty
//! page cache sampled every half second (write-back the disk has yet to absorb).

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use tokio::sync::watch;
use tokio::task::JoinHandle;
use tokio_postgres::Client;

/// Sampling interval of the kernel's dirty page cache.
const EVERY: Duration = Duration::from_millis(500);

/// Cumulative `pg_stat_bgwriter` counters (buffers of 8 kB, checkpoints).
#[derive(Debug, Clone, Copy, Default)]
pub struct Writes {
    /// Buffers written by checkpoints.
    pub checkpoint: i64,
    /// Buffers written by the background writer.
    pub bgwriter: i64,
    /// Buffers written by backends (evicting a dirty buffer themselves).
    pub backends: i64,
    /// Checkpoints started on schedule and on request (WAL volume, `CHECKPOINT`).
    pub checkpoints: (i64, i64),
}

impl Writes {
    /// Reads the counters now.
    pub async fn read(client: &Client) -> anyhow::Result<Writes> {
        let r = client
            .query_one(
                "SELECT buffers_checkpoint, buffers_clean, buffers_backend, checkpoints_timed, \
                 checkpoints_req FROM pg_stat_bgwriter",
                &[],
            )
            .await?;
        Ok(Writes {
            checkpoint: r.try_get("buffers_checkpoint")?,
            bgwriter: r.try_get("buffers_clean")?,
            backends: r.try_get("buffers_backend")?,
            checkpoints: (
                r.try_get("checkpoints_timed")?,
                r.try_get("checkpoints_req")?,
            ),
        })
    }

    /// `self - earlier`, worded: `written back: checkpoints 210 MiB, bgwriter 12 MiB, backends
    /// 340 MiB; checkpoints 0 timed, 2 requested`.
    pub fn since(&self, earlier: &Writes) -> String {
        let mib = |b: i64| b as f64 * 8192.0 / 1_048_576.0;
        format!(
            "written back: checkpoints {:.0} MiB, bgwriter {:.0} MiB, backends {:.0} MiB; \
             checkpoints {} timed, {} requested",
            mib(self.checkpoint - earlier.checkpoint),
            mib(self.bgwriter - earlier.bgwriter),
            mib(self.backends - earlier.backends),
            self.checkpoints.0 - earlier.checkpoints.0,
            self.checkpoints.1 - earlier.checkpoints.1
        )
    }
}

/// Samples the kernel's dirty and under-write-back page cache (MiB) until stopped.
pub struct DirtySampler {
    stop: watch::Sender<bool>,
    task: JoinHandle<Vec<(f64, f64)>>,
}

impl DirtySampler {
    /// Starts sampling (nothing is sampled where `/proc/meminfo` cannot be read).
    pub fn start() -> DirtySampler {
        let (stop, mut stopped) = watch::channel(false);
        let task = tokio::spawn(async move {
            let mut out = Vec::new();
            loop {
                if let Some(mib) = dirty_mib() {
                    out.push((epoch_now(), mib));
                }
                tokio::select! {
                    _ = stopped.changed() => return out,
                    () = tokio::time::sleep(EVERY) => {}
                }
            }
        });
        DirtySampler { stop, task }
    }

    /// Stops and returns the samples (epoch s, MiB).
    pub async fn finish(self) -> Vec<(f64, f64)> {
        let _ = self.stop.send(true);
        self.task.await.unwrap_or_default()
    }
}

/// `Dirty` + `Writeback` of `/proc/meminfo`, in MiB.
fn dirty_mib() -> Option<f64> {
    let text = std::fs::read_to_string("/proc/meminfo").ok()?;
    let kb = |name: &str| -> Option<f64> {
        text.lines()
            .find(|l| l.starts_with(name))?
            .split_whitespace()
            .nth(1)?
            .parse()
            .ok()
    };
    Some((kb("Dirty:")? + kb("Writeback:")?) / 1024.0)
}

/// Now, in seconds since the Unix epoch (pgbench logs transactions so).
pub(super) fn epoch_now() -> f64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs_f64())
        .unwrap_or_default()
}
