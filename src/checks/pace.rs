//! Pacing between chunks: cancellation, the plan's heavy-work windows, a busy database, and an
//! optional nice ratio — the same signals that pause the backfill.

use std::time::{Duration, Instant};

use tokio_postgres::Client;

use super::{CheckError, RunOptions};
use crate::plan::{Plan, Windows};

/// How often the database-load signal is read.
const LOAD_EVERY: Duration = Duration::from_secs(1);
/// How long to wait before re-reading a signal that was above its limit.
const RETRY_EVERY: Duration = Duration::from_millis(500);

/// Decides, between two chunk statements, whether to go on, wait or stop.
pub(crate) struct Pacer<'a> {
    cancel: &'a super::Cancel,
    windows: Option<&'a Windows>,
    nice_ratio: f64,
    max_active: Option<u32>,
    give_up_after: Duration,
    last_load_check: Option<Instant>,
}

impl<'a> Pacer<'a> {
    /// A pacer for `plan`, honouring `options`.
    pub(crate) fn new(plan: &'a Plan, options: &'a RunOptions) -> Pacer<'a> {
        let throttle = plan.spec.backfill.as_ref().map(|b| &b.throttle);
        Pacer {
            cancel: &options.cancel,
            windows: Some(&plan.spec.windows),
            nice_ratio: options.nice_ratio.max(0.0),
            max_active: throttle.map(|t| t.max_active_backends),
            give_up_after: throttle
                .map(|t| t.fail_closed_after.std())
                .unwrap_or(Duration::from_secs(15)),
            last_load_check: None,
        }
    }

    /// A pacer that only honours cancellation and the nice ratio (no plan).
    pub(crate) fn unthrottled(options: &'a RunOptions) -> Pacer<'a> {
        Pacer {
            cancel: &options.cancel,
            windows: None,
            nice_ratio: options.nice_ratio.max(0.0),
            max_active: None,
            give_up_after: Duration::from_secs(15),
            last_load_check: None,
        }
    }

    /// Fails fast when cancelled or outside the heavy-work window.
    pub(crate) fn check(&self) -> Result<(), CheckError> {
        if self.cancel.is_cancelled() {
            return Err(CheckError::Cancelled);
        }
        if let Some(reason) = self
            .windows
            .and_then(|w| w.blocked_reason(chrono::Utc::now()))
        {
            return Err(CheckError::Blocked(reason));
        }
        Ok(())
    }

    /// Called after each chunk statement that took `elapsed`.
    pub(crate) async fn after_chunk(
        &mut self,
        client: &Client,
        elapsed: Duration,
    ) -> Result<(), CheckError> {
        self.check()?;
        if self.nice_ratio > 0.0 {
            tokio::time::sleep(elapsed.mul_f64(self.nice_ratio)).await;
        }
        let due = self
            .last_load_check
            .is_none_or(|t| t.elapsed() >= LOAD_EVERY);
        if let (Some(limit), true) = (self.max_active, due) {
            self.last_load_check = Some(Instant::now());
            let waiting_since = Instant::now();
            loop {
                let active = active_backends(client).await?;
                if active <= i64::from(limit) {
                    break;
                }
                if waiting_since.elapsed() >= self.give_up_after {
                    return Err(CheckError::Blocked(format!(
                        "database busy: {active} active backends > limit {limit} for {:?}",
                        self.give_up_after
                    )));
                }
                tokio::time::sleep(RETRY_EVERY).await;
                self.check()?;
            }
        }
        Ok(())
    }
}

async fn active_backends(client: &Client) -> Result<i64, CheckError> {
    let row = client
        .query_one(
            "SELECT count(*) AS active FROM pg_stat_activity \
             WHERE state = 'active' AND backend_type = 'client backend' \
               AND pid <> pg_backend_pid() AND application_name NOT LIKE 'cutover/%'",
            &[],
        )
        .await?;
    Ok(row.get("active"))
}
