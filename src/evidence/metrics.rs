//! Prometheus metrics endpoint (`--metrics-addr`): phase and state, gate probe outcomes,
//! backfill progress (rows, rate, chunk-time histogram, throttle state and seconds), check
//! outcomes and durations, replication slots (retained WAL, lag, `wal_status`) — all read from the control schema at scrape time, so every Cutover
//! process (TUI, CLI, worker) serves the same truth.
//!
//! Each scrape is recorded in `cutover.metrics_scrapes`: the Observability evidence is that the
//! endpoint was actually scraped recently.

use std::borrow::Cow;
use std::net::SocketAddr;
use std::sync::atomic::AtomicU64;

use prometheus_client::encoding::{EncodeMetric, MetricEncoder, NoLabelSet};
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::MetricType;
use prometheus_client::registry::Registry;
use tokio_postgres::Client;

use super::scratch::{self, Scope};
use crate::control::facts::Facts;
use crate::control::index_builds::IndexBuild;
use crate::control::{self, backfill::State as BackfillState};
use crate::db::{self, DbConfig, SessionSettings};
use crate::plan::{Phase, Plan};
use crate::rules;

/// Content type of the OpenMetrics text exposition (Prometheus accepts it).
pub const CONTENT_TYPE: &str = "application/openmetrics-text; version=1.0.0; charset=utf-8";

/// Upper bounds (seconds) of the chunk-time histogram's buckets.
const CHUNK_BUCKETS: [f64; 10] = [0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0];

type Labels = Vec<(String, String)>;
type GaugeF = Gauge<f64, AtomicU64>;
type CounterF = Counter<f64, AtomicU64>;

/// Where the series of `plan_id` are served, whichever plans the endpoint serves (`/metrics`
/// serves the first one's).
pub fn plan_path(plan_id: &str) -> String {
    format!("/metrics/{plan_id}")
}

/// Starts serving metrics for each of `plans` on `addr` in the background (see [`serve`]);
/// returns the bound address.
pub fn spawn(addr: SocketAddr, db: DbConfig, plans: Vec<Plan>) -> anyhow::Result<SocketAddr> {
    let several = plans.len() > 1;
    let bound = serve(addr, db, plans)?;
    if several {
        tracing::info!("metrics endpoint on http://{bound}/metrics/PLAN_ID (one path per plan)");
    } else {
        tracing::info!("metrics endpoint on http://{bound}/metrics");
    }
    Ok(bound)
}

/// Binds `addr` (port 0 picks a free port), serves on a background thread with its own
/// runtime and connection, and returns the bound address: `/metrics/PLAN_ID` serves each of
/// `plans`' series ([`plan_path`]) and `/metrics` the first plan's. Each plan is its own scrape
/// target, since one exposition cannot hold two plans' families under a constant `plan` label.
pub fn serve(addr: SocketAddr, db: DbConfig, plans: Vec<Plan>) -> anyhow::Result<SocketAddr> {
    if plans.is_empty() {
        anyhow::bail!("a metrics endpoint needs a plan to serve");
    }
    let server = tiny_http::Server::http(addr)
        .map_err(|e| anyhow::anyhow!("cannot serve metrics on {addr}: {e}"))?;
    let bound = server
        .server_addr()
        .to_ip()
        .ok_or_else(|| anyhow::anyhow!("metrics endpoint {addr} is not an IP address"))?;
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    std::thread::Builder::new()
        .name("cutover-metrics".to_string())
        .spawn(move || {
            let mut client: Option<Client> = None;
            for request in server.incoming_requests() {
                let path = request.url().split('?').next().unwrap_or("").to_string();
                let peer = request
                    .remote_addr()
                    .map_or_else(|| "unknown".to_string(), ToString::to_string);
                let plan = match path.as_str() {
                    "/" | "/metrics" => plans.first(),
                    other => other
                        .strip_prefix("/metrics/")
                        .and_then(|id| plans.iter().find(|p| p.id() == id)),
                };
                let response = if let Some(plan) = plan {
                    let body = runtime.block_on(scrape(&mut client, &db, plan, &peer));
                    let header = tiny_http::Header::from_bytes("Content-Type", CONTENT_TYPE).ok();
                    let mut r = tiny_http::Response::from_string(body);
                    if let Some(h) = header {
                        r = r.with_header(h);
                    }
                    r
                } else {
                    tiny_http::Response::from_string(
                        "not found: try /metrics or /metrics/PLAN_ID\n",
                    )
                    .with_status_code(404)
                };
                if let Err(e) = request.respond(response) {
                    tracing::debug!("metrics response failed: {e}");
                }
            }
        })?;
    Ok(bound)
}

/// Renders the metrics and records the scrape; reconnects when the connection was lost.
async fn scrape(client: &mut Option<Client>, db: &DbConfig, plan: &Plan, peer: &str) -> String {
    if client.as_ref().is_none_or(Client::is_closed) {
        *client = db::connect(db, &SessionSettings::new("metrics")).await.ok();
    }
    let Some(c) = client.as_ref() else {
        return render_unreachable(plan);
    };
    match render(c, plan).await {
        Ok(body) => {
            let bytes = i32::try_from(body.len()).unwrap_or(i32::MAX);
            if let Err(e) = control::probes::record_scrape(c, plan.id(), peer, bytes).await {
                tracing::warn!(
                    "could not record the metrics scrape: {}",
                    db::describe_error(&e)
                );
            }
            body
        }
        Err(e) => {
            tracing::warn!("metrics scrape failed: {}", db::describe_error(&e));
            *client = None;
            render_unreachable(plan)
        }
    }
}

fn render_unreachable(plan: &Plan) -> String {
    let mut registry = plan_registry(plan);
    let up = GaugeF::default();
    up.set(0.0);
    registry.register(
        "database_up",
        "1 when the control schema could be read for this scrape",
        up,
    );
    encode(&registry)
}

fn plan_registry(plan: &Plan) -> Registry {
    Registry::with_prefix_and_labels(
        "cutover",
        [(Cow::Borrowed("plan"), Cow::Owned(escape_label(plan.id())))].into_iter(),
    )
}

fn encode(registry: &Registry) -> String {
    let mut out = String::new();
    if prometheus_client::encoding::text::encode(&mut out, registry).is_err() {
        out = "# EOF\n".to_string();
    }
    out
}

/// Label pairs; values are escaped here because the text encoder writes them verbatim.
fn labels(pairs: &[(&str, &str)]) -> Labels {
    pairs
        .iter()
        .map(|(k, v)| (k.to_string(), escape_label(v)))
        .collect()
}

fn escape_label(v: &str) -> String {
    v.replace('\\', "\\\\")
        .replace('"', "\\\"")
        .replace('\n', "\\n")
}

/// Reads the control schema and renders every series.
pub async fn render(client: &Client, plan: &Plan) -> Result<String, tokio_postgres::Error> {
    let scope = Scope::enter(client).await?;
    let result = collect(client, plan).await;
    let end = scope.rollback(client).await;
    let registry = result?;
    end?;
    Ok(encode(&registry))
}

async fn collect(client: &Client, plan: &Plan) -> Result<Registry, tokio_postgres::Error> {
    let mut registry = plan_registry(plan);
    let up = GaugeF::default();
    up.set(1.0);
    registry.register(
        "database_up",
        "1 when the control schema could be read for this scrape",
        up,
    );
    phases(client, plan, &mut registry).await?;
    probes(client, plan, &mut registry).await?;
    match Facts::load(client, plan.id()).await {
        Ok(facts) => {
            gates(plan, &facts, &mut registry);
            slots(plan, &facts, &mut registry);
        }
        Err(e) => tracing::warn!("metrics: the gate verdicts are unavailable: {e}"),
    }
    backfill(client, plan, &mut registry).await?;
    checks(client, plan, &mut registry).await?;
    index_builds(client, plan, &mut registry).await;
    Ok(registry)
}

/// One figure of an index build.
type BuildFigure = fn(&IndexBuild) -> i64;

/// The plan's concurrent index builds running now (`pg_stat_progress_create_index`).
async fn index_builds(client: &Client, plan: &Plan, registry: &mut Registry) {
    let builds = match crate::control::index_builds::of_plan(client, plan.id()).await {
        Ok(b) => b,
        Err(e) => return tracing::warn!("metrics: index build progress unavailable: {e}"),
    };
    let families: [(&str, &str, BuildFigure); 5] = [
        (
            "index_build_blocks_done",
            "Blocks done in the build's current phase",
            |b| b.blocks_done,
        ),
        (
            "index_build_blocks_total",
            "Blocks in the build's current phase",
            |b| b.blocks_total,
        ),
        (
            "index_build_tuples_done",
            "Tuples done in the build's current phase",
            |b| b.tuples_done,
        ),
        (
            "index_build_tuples_total",
            "Tuples in the build's current phase",
            |b| b.tuples_total,
        ),
        (
            "index_build_lockers_waiting",
            "Lockers the build still waits for",
            |b| b.lockers_total - b.lockers_done,
        ),
    ];
    for (name, help, value) in families {
        let family = Family::<Labels, GaugeF>::default();
        for b in &builds {
            family
                .get_or_create(&labels(&[
                    ("table", &b.table),
                    ("index", &b.index),
                    ("phase", &b.phase),
                ]))
                .set(value(b) as f64);
        }
        registry.register(name, help, family);
    }
}

async fn phases(
    client: &Client,
    plan: &Plan,
    registry: &mut Registry,
) -> Result<(), tokio_postgres::Error> {
    let states = Family::<Labels, GaugeF>::default();
    for row in control::phases::rows(client, plan.id()).await? {
        states
            .get_or_create(&labels(&[
                ("phase", row.phase.as_str()),
                ("state", row.state.as_str()),
            ]))
            .set(1.0);
    }
    registry.register(
        "phase_state",
        "1 for each phase's current state (pending, applying, applied, rolling_back, rolled_back, failed)",
        states,
    );
    let current = Family::<Labels, GaugeF>::default();
    if let Some((phase, state)) = control::phases::current(client, plan.id()).await? {
        let phase = phase.map_or("none", Phase::as_str);
        current
            .get_or_create(&labels(&[("phase", phase), ("state", state.as_str())]))
            .set(1.0);
    }
    registry.register(
        "current_phase",
        "1 for the migration's current phase and state",
        current,
    );
    Ok(())
}

async fn probes(
    client: &Client,
    plan: &Plan,
    registry: &mut Registry,
) -> Result<(), tokio_postgres::Error> {
    let latest = Family::<Labels, GaugeF>::default();
    for p in control::probes::latest(client, plan.id(), None).await? {
        latest
            .get_or_create(&labels(&[
                ("gate", p.gate.as_str()),
                ("probe", &p.probe),
                ("outcome", p.outcome.as_str()),
            ]))
            .set(1.0);
    }
    registry.register(
        "gate_probe_outcome",
        "1 for the latest outcome of each gate's readiness probe",
        latest,
    );
    let totals = Family::<Labels, CounterF>::default();
    for (probe, outcome, n) in control::probes::outcome_counts(client, plan.id()).await? {
        totals
            .get_or_create(&labels(&[("probe", &probe), ("outcome", outcome.as_str())]))
            .inc_by(n);
    }
    registry.register(
        "probe_evaluations",
        "Readiness probe evaluations by outcome",
        totals,
    );
    Ok(())
}

/// Per gate, the rules' verdict on the recorded facts — the same verdict `cutover status` and
/// the TUI show — and whether the phase may be applied now (Pass, or overridden).
fn gates(plan: &Plan, facts: &Facts, registry: &mut Registry) {
    let outcome = Family::<Labels, GaugeF>::default();
    let passed = Family::<Labels, GaugeF>::default();
    for phase in Phase::ALL {
        let g = rules::gate::evaluate(plan, facts, phase);
        outcome
            .get_or_create(&labels(&[
                ("gate", phase.as_str()),
                ("outcome", g.outcome.as_str()),
            ]))
            .set(1.0);
        passed
            .get_or_create(&labels(&[("gate", phase.as_str())]))
            .set(if g.passed { 1.0 } else { 0.0 });
    }
    registry.register(
        "gate_evidence_outcome",
        "1 for each gate's verdict (the one `cutover status` shows)",
        outcome,
    );
    registry.register(
        "gate_passed",
        "1 when the gate lets its phase be applied now (pass, or a lead's override)",
        passed,
    );
}

/// Per replication slot of the cluster: WAL retained, a logical consumer's lag, WAL left before
/// it is lost, its `wal_status`, and whether it blocks the gates (as `cutover status` judges).
fn slots(plan: &Plan, facts: &Facts, registry: &mut Registry) {
    let retained = Family::<Labels, GaugeF>::default();
    let lag = Family::<Labels, GaugeF>::default();
    let safe = Family::<Labels, GaugeF>::default();
    let status = Family::<Labels, GaugeF>::default();
    let blocks = Family::<Labels, GaugeF>::default();
    let min = rules::slots::min_percent(plan);
    for s in &facts.slots {
        let slot = labels(&[("slot", &s.name), ("kind", &s.kind)]);
        retained.get_or_create(&slot).set(s.retained_bytes as f64);
        if let Some(l) = s.lag_bytes {
            lag.get_or_create(&slot).set(l as f64);
        }
        if let Some(b) = s.safe_wal_size {
            safe.get_or_create(&slot).set(b as f64);
        }
        let wal_status = s.wal_status.as_deref().unwrap_or("unknown");
        status
            .get_or_create(&labels(&[("slot", &s.name), ("status", wal_status)]))
            .set(1.0);
        let at_risk = rules::slots::at_risk(s, facts.max_slot_wal_keep_size, min).is_some();
        blocks
            .get_or_create(&slot)
            .set(if at_risk { 1.0 } else { 0.0 });
    }
    registry.register(
        "slot_retained_wal_bytes",
        "WAL a replication slot retains (restart_lsn behind the current WAL), in bytes",
        retained,
    );
    registry.register(
        "slot_lag_bytes",
        "WAL a logical slot's consumer has not confirmed (confirmed_flush_lsn behind), in bytes",
        lag,
    );
    registry.register(
        "slot_safe_wal_bytes",
        "WAL that can still be written before the slot is lost (max_slot_wal_keep_size set)",
        safe,
    );
    registry.register(
        "slot_wal_status",
        "1 for each slot's wal_status (reserved, extended, unreserved, lost)",
        status,
    );
    registry.register(
        "slot_blocks_gates",
        "1 when the slot is about to lose its WAL and every gate blocks",
        blocks,
    );
}

#[expect(
    clippy::too_many_lines,
    reason = "one series per backfill gauge, in the order they are exposed"
)]
async fn backfill(
    client: &Client,
    plan: &Plan,
    registry: &mut Registry,
) -> Result<(), tokio_postgres::Error> {
    let (state, reason, done, estimate, throttled_s, elapsed, cap) =
        match control::backfill::load(client, plan.id()).await? {
            Some(r) => (
                r.state,
                r.reason,
                r.rows_done,
                r.rows_estimate.unwrap_or(0),
                r.throttled_seconds,
                r.elapsed_seconds,
                r.max_rows_per_sec,
            ),
            None => (BackfillState::Idle, String::new(), 0, 0, 0.0, None, 0),
        };
    let share = match plan.spec.backfill {
        Some(_) => crate::backfill::share(client, plan)
            .await
            .unwrap_or_else(|e| {
                tracing::warn!("backfill progress unavailable: {e}");
                None
            }),
        None => None,
    }
    .unwrap_or_else(|| crate::backfill::Share::new(Some(state), done, Some(estimate)));
    let gauge = |v: f64| {
        let g = GaugeF::default();
        g.set(v);
        g
    };
    registry.register(
        "backfill_rows_done",
        "Rows the backfill has brought to the new shape",
        gauge(share.done as f64),
    );
    registry.register(
        "backfill_rows_estimate",
        "Rows to backfill in total, as `backfill status` estimates them (0 when unknown)",
        gauge(share.total.unwrap_or(0) as f64),
    );
    registry.register(
        "backfill_percent",
        "Percent done as `backfill status` and the TUI show it (100 only once done)",
        gauge(share.percent.unwrap_or(0.0)),
    );
    let state_family = Family::<Labels, GaugeF>::default();
    state_family
        .get_or_create(&labels(&[("state", state.as_str())]))
        .set(1.0);
    registry.register(
        "backfill_state",
        "1 for the backfill's current state",
        state_family,
    );
    let throttled = Family::<Labels, GaugeF>::default();
    let is_throttled = state == BackfillState::Throttled;
    throttled
        .get_or_create(&labels(&[(
            "reason",
            if is_throttled { reason.as_str() } else { "" },
        )]))
        .set(if is_throttled { 1.0 } else { 0.0 });
    registry.register(
        "backfill_throttled",
        "1 while a health signal or window holds the backfill back (the reason is a label)",
        throttled,
    );
    let throttled_total = CounterF::default();
    throttled_total.inc_by(throttled_s);
    registry.register(
        "backfill_throttled_seconds",
        "Time the backfill spent throttled",
        throttled_total,
    );
    let recent = scratch::optional(
        client,
        control::backfill::stats::last_minute(client, plan.id()),
    )
    .await;
    let rate = match recent {
        Ok((rows, Some(span))) if span > 0.0 => rows / span,
        Ok(_) => 0.0,
        Err(_) => match elapsed {
            Some(s) if s > 0.0 && state == BackfillState::Running => done as f64 / s,
            _ => 0.0,
        },
    };
    // The cap holds start to start; a window ending at a chunk's commit can read above it.
    let rate = if cap > 0 {
        rate.min(f64::from(cap))
    } else {
        rate
    };
    registry.register(
        "backfill_rows_per_second",
        "Backfill rate over the last minute of chunks",
        gauge(rate),
    );
    let readings = scratch::optional(
        client,
        control::backfill::guard::recent(client, plan.id(), std::time::Duration::from_secs(60)),
    )
    .await
    .unwrap_or_default();
    if let Some(r) = readings.last() {
        let ratio = Family::<Labels, GaugeF>::default();
        ratio
            .get_or_create(&labels(&[("signal", r.signal.as_str())]))
            .set(r.ratio);
        registry.register(
            "backfill_app_latency_ratio",
            "The latency guard's latest reading: the signal that counted (a label) over its baseline",
            ratio,
        );
        registry.register(
            "backfill_app_latency_budget",
            "The ratio the latency guard allows (max_app_latency_ratio)",
            gauge(r.budget),
        );
        registry.register(
            "backfill_guard_pause",
            "The latency guard's pause factor (0 = full speed)",
            gauge(r.pause),
        );
    }
    let bounds: Vec<f64> = CHUNK_BUCKETS.to_vec();
    let groups = scratch::optional(
        client,
        control::backfill::stats::duration_buckets(client, plan.id(), &bounds),
    )
    .await;
    let histogram = match groups {
        Ok(groups) => PrecomputedHistogram::from_groups(groups.into_iter()),
        Err(_) => PrecomputedHistogram::from_groups(std::iter::empty()),
    };
    registry.register(
        "backfill_chunk_duration_seconds",
        "Duration of backfill chunks",
        histogram,
    );
    Ok(())
}

async fn checks(
    client: &Client,
    plan: &Plan,
    registry: &mut Registry,
) -> Result<(), tokio_postgres::Error> {
    let runs = control::checks::latest_runs(client, plan.id()).await?;
    let outcome = Family::<Labels, GaugeF>::default();
    let duration = Family::<Labels, GaugeF>::default();
    for r in &runs {
        outcome
            .get_or_create(&labels(&[
                ("check", &r.name),
                ("outcome", r.outcome.as_str()),
            ]))
            .set(1.0);
        duration
            .get_or_create(&labels(&[("check", &r.name)]))
            .set(r.duration_ms as f64 / 1000.0);
    }
    registry.register(
        "check_outcome",
        "1 for the latest outcome of each data check",
        outcome,
    );
    registry.register(
        "check_duration_seconds",
        "Duration of each data check's latest run",
        duration,
    );
    let totals = Family::<Labels, CounterF>::default();
    for (name, result, runs) in control::checks::outcome_counts(client, plan.id()).await? {
        totals
            .get_or_create(&labels(&[("check", &name), ("outcome", result.as_str())]))
            .inc_by(runs);
    }
    registry.register("check_runs", "Data check runs by outcome", totals);
    Ok(())
}

/// A histogram whose buckets were counted in SQL at scrape time.
#[derive(Debug)]
struct PrecomputedHistogram {
    sum: f64,
    count: u64,
    /// (upper bound, count in this bucket only); the last bound is +Inf.
    buckets: Vec<(f64, u64)>,
}

impl PrecomputedHistogram {
    /// From (1-based bucket index or `None` for +Inf, chunks, seconds) groups.
    fn from_groups(groups: impl Iterator<Item = (Option<i32>, i64, f64)>) -> Self {
        let mut counts = vec![0u64; CHUNK_BUCKETS.len() + 1];
        let mut sum = 0.0;
        for (index, n, seconds) in groups {
            let slot = index
                .and_then(|i| usize::try_from(i - 1).ok())
                .filter(|i| *i < CHUNK_BUCKETS.len())
                .unwrap_or(CHUNK_BUCKETS.len());
            counts[slot] += u64::try_from(n).unwrap_or(0);
            sum += seconds;
        }
        let buckets = CHUNK_BUCKETS
            .iter()
            .copied()
            .chain(std::iter::once(f64::MAX))
            .zip(counts.iter().copied())
            .collect();
        PrecomputedHistogram {
            sum,
            count: counts.iter().sum(),
            buckets,
        }
    }
}

impl EncodeMetric for PrecomputedHistogram {
    fn encode(&self, mut encoder: MetricEncoder) -> Result<(), std::fmt::Error> {
        encoder.encode_histogram::<NoLabelSet>(self.sum, self.count, &self.buckets, None)
    }

    fn metric_type(&self) -> MetricType {
        MetricType::Histogram
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn label_values_are_escaped() {
        assert_eq!(escape_label("a \"b\"\\c\nd"), "a \\\"b\\\"\\\\c\\nd");
    }
    #[test]
    fn every_slot_has_its_series() {
        let plan = Plan::parse(
            "plans/accounts-balance-cents.toml",
            include_str!("../../plans/accounts-balance-cents.toml"),
        )
        .expect("the demo plan parses");
        let now = chrono::Utc::now();
        let mut facts = Facts::unregistered(plan.id(), now);
        let mb = 1i64 << 20;
        let slot = |name: &str, kind: &str, status: &str, safe: i64| control::slots::Slot {
            name: name.into(),
            kind: kind.into(),
            active: false,
            retained_bytes: 64 * mb - safe,
            lag_bytes: (kind == "logical").then_some(64 * mb - safe),
            wal_status: Some(status.into()),
            safe_wal_size: Some(safe),
        };
        facts.slots = vec![
            slot("analytics", "logical", "extended", 3 * mb),
            slot("standby_1", "physical", "reserved", 60 * mb),
        ];
        facts.max_slot_wal_keep_size = Some(64 * mb);
        let mut registry = plan_registry(&plan);
        slots(&plan, &facts, &mut registry);
        let text = encode(&registry);
        let p = "plan=\"accounts-balance-cents\"";
        for line in [
            format!("cutover_slot_retained_wal_bytes{{{p},slot=\"analytics\",kind=\"logical\"}} 63963136.0"),
            format!("cutover_slot_lag_bytes{{{p},slot=\"analytics\",kind=\"logical\"}} 63963136.0"),
            format!("cutover_slot_safe_wal_bytes{{{p},slot=\"analytics\",kind=\"logical\"}} 3145728.0"),
            format!("cutover_slot_wal_status{{{p},slot=\"analytics\",status=\"extended\"}} 1.0"),
            format!("cutover_slot_wal_status{{{p},slot=\"standby_1\",status=\"reserved\"}} 1.0"),
            format!("cutover_slot_blocks_gates{{{p},slot=\"analytics\",kind=\"logical\"}} 1.0"),
            format!("cutover_slot_blocks_gates{{{p},slot=\"standby_1\",kind=\"physical\"}} 0.0"),
        ] {
            assert!(text.lines().any(|l| l == line), "no `{line}` in:\n{text}");
        }
        assert!(
            !text.contains(
                "cutover_slot_lag_bytes{plan=\"accounts-balance-cents\",slot=\"standby_1\""
            ),
            "a physical slot has no consumer lag:\n{text}"
        );
    }
}
