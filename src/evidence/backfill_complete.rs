//! Backfill completion: the backfill says it is done AND a fresh count of rows matching the
//! plan's `pending` predicate is zero (rows written since the last sweep count too).

use tokio_postgres::Client;

use super::scratch::Scope;
use super::{Probe, ProbeContext, ProbeFuture, ProbeResult};
use crate::control::backfill::{self as control, State};
use crate::db::describe_error;
use crate::outcome::Outcome;
use crate::plan::{BackfillSpec, Plan};
use crate::read_only::{ReadOnly, ReadOnlyError};
use crate::sql::quote_qualified;

/// The backfill-complete probe.
pub(crate) struct BackfillCompleteProbe;

impl Probe for BackfillCompleteProbe {
    fn name(&self) -> &'static str {
        "backfill_complete"
    }

    fn evaluate<'a>(&'a self, ctx: &'a ProbeContext<'a>) -> ProbeFuture<'a> {
        Box::pin(async move {
            let Some(spec) = &ctx.plan.spec.backfill else {
                return ProbeResult::inconclusive(
                    "backfill_complete",
                    "the plan has no [backfill] section: nothing to measure",
                );
            };
            let result = match measure(ctx.client, ctx.plan, spec).await {
                Ok((state, rows_done, pending)) => judge(spec, state, rows_done, pending),
                Err(e) => ProbeResult::inconclusive(
                    "backfill_complete",
                    format!("could not measure the backfill: {e}"),
                ),
            };
            cdc_caught_up(ctx.client, ctx.plan, result).await
        })
    }
}

/// With a CDC dual-write, a passing result also needs the applier within the plan's lag
/// bounds: the copy is only complete once the stream has caught up with it.
async fn cdc_caught_up(client: &Client, plan: &Plan, mut result: ProbeResult) -> ProbeResult {
    let Some(dw) = plan.spec.dual_write.as_ref().filter(|_| plan.spec.is_cdc()) else {
        return result;
    };
    let lag = match crate::cdc::lag(client, plan.id()).await {
        Ok(l) => l,
        Err(e) => {
            return ProbeResult::inconclusive(
                "backfill_complete",
                format!("could not read the CDC lag: {e}"),
            )
        }
    };
    let Some(lag) = lag else {
        result.evidence.push("CDC: no slot yet".into());
        if result.outcome == Outcome::Pass {
            result.outcome = Outcome::Fail;
            result.summary = "the CDC slot was never created".into();
        }
        return result;
    };
    let behind = format!(
        "CDC applier: {} bytes behind (max {}), caught up {} ago (max {}s)",
        lag.bytes,
        dw.max_lag_bytes,
        lag.seconds.map_or("never".into(), |s| format!("{s:.1}s")),
        dw.max_lag.std().as_secs_f64()
    );
    result.evidence.push(behind.clone());
    if result.outcome == Outcome::Pass && !lag.within(dw.max_lag_bytes, dw.max_lag.std()) {
        result.outcome = Outcome::Fail;
        result.summary = format!("the copy is done but the stream lags: {behind}");
    }
    result
}

/// Why the backfill could not be measured.
#[derive(Debug, thiserror::Error)]
enum Measure {
    #[error("{0}")]
    Db(String),
    #[error("{0}")]
    ReadOnly(#[from] ReadOnlyError),
}

impl From<tokio_postgres::Error> for Measure {
    fn from(e: tokio_postgres::Error) -> Self {
        Measure::Db(describe_error(&e))
    }
}

async fn measure(
    client: &Client,
    plan: &Plan,
    spec: &BackfillSpec,
) -> Result<(Option<State>, i64, i64), Measure> {
    let scope = Scope::enter(client).await?;
    let result = async {
        client
            .batch_execute(&format!(
                "SET LOCAL statement_timeout = {}",
                plan.spec.settings.statement_timeout.as_millis()
            ))
            .await?;
        let (state, done) = match control::load(client, plan.id()).await? {
            Some(r) => (Some(r.state), r.rows_done),
            None => (None, 0),
        };
        let pending = ReadOnly::nested(client, "backfill.pending")
            .query_one(
                &format!(
                    "SELECT count(*) AS pending FROM {} WHERE {}",
                    quote_qualified(&spec.table),
                    spec.pending_predicate()
                ),
                &[],
            )
            .await?
            .get::<_, i64>("pending");
        Ok::<_, Measure>((state, done, pending))
    }
    .await;
    let end = scope.rollback(client).await;
    let out = result?;
    end.map_err(|e| Measure::Db(describe_error(&e)))?;
    Ok(out)
}

fn judge(spec: &BackfillSpec, state: Option<State>, rows_done: i64, pending: i64) -> ProbeResult {
    let state_text = state.map_or("never started", State::as_str);
    let evidence = vec![
        format!("backfill state: {state_text}; rows done: {rows_done}"),
        format!(
            "fresh count of rows in {} matching `{}`: {pending}",
            spec.table,
            spec.pending_predicate()
        ),
    ];
    let done = state == Some(State::Done);
    let (outcome, summary) = match (done, pending) {
        (true, 0) => (
            Outcome::Pass,
            format!("backfill done ({rows_done} rows) and no row is pending"),
        ),
        (true, n) => (
            Outcome::Fail,
            format!("backfill says done but {n} row(s) still match `pending`"),
        ),
        (false, n) => (
            Outcome::Fail,
            format!("backfill is {state_text}, not done; {n} row(s) pending"),
        ),
    };
    ProbeResult {
        name: "backfill_complete".to_string(),
        outcome,
        summary,
        evidence,
    }
}
