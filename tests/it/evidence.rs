//! Readiness evidence: lint, compatibility, hidden-reader census, backfill completion, error
//! budget, privilege parity, metrics and runbook — against a real PostgreSQL.

use std::process::Command;

use cutover::control::schema;
use cutover::db::{self, DbConfig, SessionSettings};
use cutover::evidence::{self, ProbeContext, ProbeResult};
use cutover::plan::{Phase, Plan, ProbeKind};
use cutover::Outcome;
use tokio_postgres::Client;

use crate::common::plans::{demo_plan, demo_twin, demo_with, DEMO_PLAN};
use crate::common::{cutover_bin, TestDb};

/// The demo plan with its expand SQL replaced (and optional TOML appended).
fn plan_with_expand(expand: &str, extra: &str) -> Plan {
    let src = demo_with(&[(
        "apply = \"ALTER TABLE public.accounts ADD COLUMN balance_cents bigint;\"",
        &format!("apply = \"\"\"\n{expand}\n\"\"\""),
    )]);
    Plan::parse("expand.toml", &format!("{src}\n{extra}")).unwrap()
}

/// A demo database with the control schema, and a bootstrapped client.
async fn demo_db() -> (TestDb, Client) {
    let db = TestDb::demo(200, 20, 20).await;
    let client = db.control_client().await;
    (db, client)
}

async fn run(client: &Client, plan: &Plan, kind: ProbeKind, gate: Phase) -> ProbeResult {
    let ctx = ProbeContext { client, plan, gate };
    evidence::probe(kind).evaluate(&ctx).await
}

fn text(r: &ProbeResult) -> String {
    format!("{}: {}\n{}", r.outcome, r.summary, r.evidence.join("\n"))
}

#[tokio::test]
async fn lint_flags_breaking_expand_passes_additive_and_audits_acknowledgements() {
    let (_db, client) = demo_db().await;
    let bad = plan_with_expand(
        "ALTER TABLE public.accounts DROP COLUMN updated_at;\nCREATE INDEX accounts_owner ON public.accounts (owner);",
        "",
    );
    let r = run(&client, &bad, ProbeKind::Lint, Phase::Expand).await;
    assert_eq!(r.outcome, Outcome::Fail, "{}", text(&r));
    let t = text(&r);
    assert!(
        t.contains("[ban-drop-column]") && t.contains("BLOCKS"),
        "{t}"
    );
    assert!(t.contains("[require-concurrent-index-creation]"), "{t}");
    // Live-catalog facts: lock level and the table's size and row estimate.
    assert!(
        t.contains("takes SHARE (blocks writes") && t.contains("~200 rows"),
        "{t}"
    );

    let additive = demo_plan();
    let r = run(&client, &additive, ProbeKind::Lint, Phase::Expand).await;
    assert_eq!(r.outcome, Outcome::Pass, "{}", text(&r));
    assert!(
        text(&r).contains("acknowledged by the runner"),
        "timeouts are the runner's: {}",
        text(&r)
    );

    let acked = plan_with_expand(
        "ALTER TABLE public.accounts DROP COLUMN updated_at;",
        "[[probes.lint.acknowledge]]\nrule = \"ban-drop-column\"\nphase = \"expand\"\nreason = \"updated_at has had no reader since app v41\"\n",
    );
    for _ in 0..2 {
        let r = run(&client, &acked, ProbeKind::Lint, Phase::Expand).await;
        assert_eq!(r.outcome, Outcome::Pass, "{}", text(&r));
    }
    let rows = client
        .query(
            "SELECT details::text FROM cutover.audit_log
              WHERE action = 'lint.acknowledged' AND plan_sha256 = $1",
            &[&acked.sha256()],
        )
        .await
        .unwrap();
    assert_eq!(rows.len(), 1, "audited once per plan version and gate");
    let details: String = rows[0].get(0);
    assert!(
        details.contains("ban-drop-column") && details.contains("no reader since app v41"),
        "{details}"
    );
    let recorded: i64 = client
        .query_one(
            "SELECT count(*) FROM cutover.probe_results WHERE probe = 'lint'",
            &[],
        )
        .await
        .unwrap()
        .get(0);
    assert_eq!(recorded, 4, "every evaluation is recorded");
}

#[tokio::test]
async fn validate_prints_located_lint_findings() {
    let plan = plan_with_expand(
        "ALTER TABLE public.accounts ADD COLUMN balance_cents bigint;\nALTER TABLE public.accounts DROP COLUMN updated_at;",
        "",
    );
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("drop.toml");
    std::fs::write(&path, &plan.source).unwrap();
    let line = plan
        .source
        .lines()
        .position(|l| l.contains("DROP COLUMN updated_at"))
        .unwrap()
        + 1;
    let out = Command::new(cutover_bin())
        .args(["validate", "--offline", path.to_str().unwrap()])
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{stderr}");
    assert!(
        stderr.contains(&format!("drop.toml:{line}:29: [ban-drop-column]")),
        "{stderr}"
    );
    let ok = Command::new(cutover_bin())
        .args(["validate", "--offline"])
        .args(crate::common::plans::example_plan_paths())
        .output()
        .unwrap();
    assert_eq!(
        ok.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&ok.stderr)
    );
}

async fn data_fingerprint(client: &Client) -> String {
    client
        .query_one(
            "SELECT count(*)::text || '/' || sum(balance)::text || '/' || max(updated_at)::text
               FROM public.accounts",
            &[],
        )
        .await
        .unwrap()
        .get(0)
}

#[tokio::test]
async fn compatibility_fails_on_a_rename_and_leaves_no_trace() {
    let (db, client) = demo_db().await;
    let plan = demo_plan();
    db.exec(&plan.phase(Phase::Expand).apply).await;
    let before = data_fingerprint(&client).await;
    let r = run(&client, &plan, ProbeKind::Compatibility, Phase::DualWrite).await;
    assert_eq!(r.outcome, Outcome::Pass, "{}", text(&r));
    assert_eq!(
        data_fingerprint(&client).await,
        before,
        "no trace in the data"
    );
    let leaked: i64 = client
        .query_one(
            "SELECT count(*) FROM pg_prepared_statements WHERE name LIKE 'cutover%'",
            &[],
        )
        .await
        .unwrap()
        .get(0);
    assert_eq!(leaked, 0);

    // Inside the caller's own transaction: the probe works in a savepoint and leaves it usable.
    client.batch_execute("BEGIN").await.unwrap();
    client
        .batch_execute("CREATE TABLE public.caller_work (x int)")
        .await
        .unwrap();
    let r = run(&client, &plan, ProbeKind::Compatibility, Phase::DualWrite).await;
    assert_eq!(r.outcome, Outcome::Pass, "{}", text(&r));
    client.batch_execute("COMMIT").await.unwrap();
    assert!(client
        .query_one("SELECT to_regclass('public.caller_work') IS NOT NULL", &[])
        .await
        .unwrap()
        .get::<_, bool>(0));

    db.exec("ALTER TABLE public.accounts RENAME COLUMN balance TO balance_dollars")
        .await;
    let r = run(&client, &plan, ProbeKind::Compatibility, Phase::DualWrite).await;
    assert_eq!(r.outcome, Outcome::Fail, "{}", text(&r));
    assert!(
        r.summary.contains("read a balance") && r.summary.contains("credit an account"),
        "{}",
        text(&r)
    );
    assert!(
        text(&r).contains("column \"balance\" does not exist"),
        "{}",
        text(&r)
    );
}

#[tokio::test]
async fn census_names_view_function_and_index_then_passes() {
    let (db, client) = demo_db().await;
    let plan = demo_plan();
    db.exec(&plan.phase(Phase::Expand).apply).await;
    db.exec(&plan.phase(Phase::DualWrite).apply).await;
    db.exec(
        "CREATE VIEW public.rich_accounts AS SELECT id, owner FROM public.accounts WHERE balance > 1000;
         CREATE FUNCTION public.total_balance() RETURNS numeric LANGUAGE sql
             AS $$ SELECT sum(balance) FROM public.accounts $$;
         CREATE INDEX accounts_balance_idx ON public.accounts (balance);",
    )
    .await;
    // The engine takes this baseline just before the read switch.
    evidence::before_phase(&client, &plan, Phase::ReadSwitch)
        .await
        .unwrap();
    let r = run(&client, &plan, ProbeKind::HiddenReaders, Phase::Contract).await;
    let t = text(&r);
    assert_eq!(r.outcome, Outcome::Fail, "{t}");
    for name in [
        "view public.rich_accounts",
        "function total_balance()",
        "index accounts_balance_idx",
        // The demo's seed function writes the legacy column: a genuine hidden dependency.
        "function cutover_demo_seed(",
    ] {
        assert!(
            t.contains(&format!("BLOCKER {name}")),
            "{name} missing:\n{t}"
        );
    }
    assert!(
        t.contains("ignored: trigger accounts_balance_cents_sync")
            && t.contains("ignored: function accounts_balance_cents_sync()"),
        "the plan's own sync trigger and function are not readers:\n{t}"
    );

    db.exec(
        "DROP VIEW public.rich_accounts; DROP FUNCTION public.total_balance();
         DROP INDEX public.accounts_balance_idx;
         DROP FUNCTION public.cutover_demo_seed(integer, integer, integer);",
    )
    .await;
    let r = run(&client, &plan, ProbeKind::HiddenReaders, Phase::Contract).await;
    assert_eq!(r.outcome, Outcome::Pass, "{}", text(&r));

    // An app query reading the legacy column after the switch.
    db.exec("SELECT sum(balance) FROM public.accounts WHERE id > 0")
        .await;
    let r = run(&client, &plan, ProbeKind::HiddenReaders, Phase::Contract).await;
    if has_pg_stat_statements(&client).await {
        assert_eq!(r.outcome, Outcome::Fail, "{}", text(&r));
        assert!(
            r.summary
                .contains("SELECT sum(balance) FROM public.accounts"),
            "{}",
            text(&r)
        );
    } else {
        assert!(text(&r).contains("query log not measured"), "{}", text(&r));
    }

    // A connected session whose last statement read the column (no extension needed).
    let app = db.client().await;
    app.query(
        "SELECT owner, balance FROM public.accounts WHERE id = $1",
        &[&1i64],
    )
    .await
    .unwrap();
    let r = run(&client, &plan, ProbeKind::HiddenReaders, Phase::Contract).await;
    assert_eq!(r.outcome, Outcome::Fail, "{}", text(&r));
    assert!(
        text(&r).contains("last ran")
            && text(&r).contains("SELECT owner, balance FROM public.accounts"),
        "{}",
        text(&r)
    );
}

async fn has_pg_stat_statements(client: &Client) -> bool {
    client
        .query("SELECT 1 FROM pg_stat_statements LIMIT 1", &[])
        .await
        .is_ok()
}

#[tokio::test]
async fn backfill_complete_needs_done_state_and_zero_pending() {
    let (db, client) = demo_db().await;
    let plan = demo_plan();
    db.exec(&plan.phase(Phase::Expand).apply).await;
    let r = run(
        &client,
        &plan,
        ProbeKind::BackfillComplete,
        Phase::ReadSwitch,
    )
    .await;
    assert_eq!(r.outcome, Outcome::Fail, "{}", text(&r));
    assert!(text(&r).contains("never started"), "{}", text(&r));

    client
        .execute(
            "INSERT INTO cutover.backfill (plan_id, state, target_chunk_ms, rows_done)
             VALUES ($1, 'done', 300, 200)",
            &[&plan.id()],
        )
        .await
        .unwrap();
    let r = run(
        &client,
        &plan,
        ProbeKind::BackfillComplete,
        Phase::ReadSwitch,
    )
    .await;
    assert_eq!(
        r.outcome,
        Outcome::Fail,
        "done but rows pending: {}",
        text(&r)
    );
    assert!(text(&r).contains(": 200"), "{}", text(&r));

    db.exec("UPDATE public.accounts SET balance_cents = round(balance * 100)::bigint")
        .await;
    let r = run(
        &client,
        &plan,
        ProbeKind::BackfillComplete,
        Phase::ReadSwitch,
    )
    .await;
    assert_eq!(r.outcome, Outcome::Pass, "{}", text(&r));
}

/// Makes the statistics of `app`'s session visible to other sessions now.
async fn flush_stats(app: &Client) {
    app.batch_execute("SELECT pg_stat_force_next_flush()")
        .await
        .unwrap();
}

#[tokio::test]
async fn error_budget_fails_on_induced_rollbacks_and_slow_queries() {
    let (db, client) = demo_db().await;
    let plan = demo_plan();
    let app = db.client().await;
    let query = "SELECT count(*) FROM public.accounts WHERE id <= 20 AND pg_sleep($1)::text = ''";
    for _ in 0..5 {
        app.query(query, &[&0.0f64]).await.unwrap();
    }
    let r = run(&client, &plan, ProbeKind::ErrorBudget, Phase::Contract).await;
    assert_eq!(
        r.outcome,
        Outcome::Inconclusive,
        "no baseline yet: {}",
        text(&r)
    );

    evidence::before_phase(&client, &plan, Phase::ReadSwitch)
        .await
        .unwrap();
    for _ in 0..10 {
        app.query(query, &[&0.0f64]).await.unwrap();
    }
    flush_stats(&app).await;
    let r = run(&client, &plan, ProbeKind::ErrorBudget, Phase::Contract).await;
    let t = text(&r);
    assert!(t.contains("PASS: rollback ratio"), "{t}");
    assert!(t.contains("PASS: deadlocks: 0"), "{t}");

    for _ in 0..30 {
        app.batch_execute("BEGIN; SELECT 1; ROLLBACK")
            .await
            .unwrap();
    }
    flush_stats(&app).await;
    let r = run(&client, &plan, ProbeKind::ErrorBudget, Phase::Contract).await;
    assert_eq!(r.outcome, Outcome::Fail, "{}", text(&r));
    assert!(r.summary.contains("rollback ratio"), "{}", text(&r));

    if has_pg_stat_statements(&client).await {
        // A fresh baseline (as if the switch were re-applied), then the same query turns slow.
        evidence::before_phase(&client, &plan, Phase::ReadSwitch)
            .await
            .unwrap();
        for _ in 0..3 {
            app.query(query, &[&0.002f64]).await.unwrap();
        }
        flush_stats(&app).await;
        let r = run(&client, &plan, ProbeKind::ErrorBudget, Phase::Contract).await;
        assert_eq!(r.outcome, Outcome::Fail, "{}", text(&r));
        assert!(r.summary.contains("mean statement latency"), "{}", text(&r));
    } else {
        let t = text(&r);
        assert!(
            t.contains("INCONCLUSIVE: latency: pg_stat_statements is not available")
                && t.contains("shared_preload_libraries"),
            "{t}"
        );
    }
}

#[tokio::test]
async fn privilege_parity_flags_a_new_column_readable_by_a_new_role() {
    let (db, client) = demo_db().await;
    let plan = demo_plan();
    db.exec(&plan.phase(Phase::Expand).apply).await;
    let role = format!("cutover_t_analyst_{:08x}", rand::random::<u32>());
    db.exec(&format!(
        "CREATE ROLE {role} NOLOGIN; GRANT SELECT (id, owner) ON public.accounts TO {role};"
    ))
    .await;
    let r = run(
        &client,
        &plan,
        ProbeKind::PrivilegeParity,
        Phase::ReadSwitch,
    )
    .await;
    assert_eq!(r.outcome, Outcome::Pass, "{}", text(&r));

    db.exec(&format!(
        "GRANT SELECT (balance_cents) ON public.accounts TO {role}"
    ))
    .await;
    let r = run(
        &client,
        &plan,
        ProbeKind::PrivilegeParity,
        Phase::ReadSwitch,
    )
    .await;
    let t = text(&r);
    db.exec(&format!(
        "REVOKE ALL ON public.accounts FROM {role}; DROP ROLE {role}"
    ))
    .await;
    assert_eq!(r.outcome, Outcome::Fail, "{t}");
    assert!(
        t.contains(&format!(
            "BLOCKER role {role} has SELECT on the new column public.accounts.balance_cents but not on the old column public.accounts.balance"
        )),
        "{t}"
    );
}

/// Fetches `path` from `addr` with a bare HTTP/1.0 request; returns (status line, body).
fn http_get(addr: std::net::SocketAddr, path: &str) -> (String, String) {
    use std::io::{Read, Write};
    let mut stream = std::net::TcpStream::connect(addr).unwrap();
    write!(stream, "GET {path} HTTP/1.0\r\nHost: localhost\r\n\r\n").unwrap();
    let mut response = String::new();
    stream.read_to_string(&mut response).unwrap();
    let (head, body) = response.split_once("\r\n\r\n").unwrap();
    (head.lines().next().unwrap().to_string(), body.to_string())
}

/// Every sample line is `name{labels} value`, every comment `# HELP|TYPE|UNIT|EOF`.
fn assert_valid_exposition(body: &str) {
    assert!(body.trim_end().ends_with("# EOF"), "{body}");
    for line in body.lines() {
        if let Some(comment) = line.strip_prefix("# ") {
            assert!(
                ["HELP ", "TYPE ", "UNIT ", "EOF"]
                    .iter()
                    .any(|p| comment.starts_with(p)),
                "bad comment line: {line}"
            );
            continue;
        }
        let (series, value) = line.rsplit_once(' ').unwrap();
        assert!(
            value.parse::<f64>().is_ok() || value == "+Inf",
            "bad value in: {line}"
        );
        let name_end = series.find('{').unwrap_or(series.len());
        let name = &series[..name_end];
        assert!(
            !name.is_empty()
                && name
                    .chars()
                    .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == ':'),
            "bad metric name in: {line}"
        );
        if name_end < series.len() {
            assert!(series.ends_with('}'), "bad labels in: {line}");
        }
    }
}

/// A backfill the latency guard paces is in state `pacing` for the metrics, not throttled.
#[tokio::test]
async fn metrics_say_pacing_not_throttled() {
    let (db, client) = demo_db().await;
    let plan = demo_plan();
    client
        .execute(
            "INSERT INTO cutover.backfill (plan_id, state, reason, target_chunk_ms, started_at)
             VALUES ($1, 'pacing', 'yielding: app latency 0.79× baseline (limit 1.25×, probe); \
                     easing off, pausing 0.3× each chunk''s time', 300, now())",
            &[&plan.id()],
        )
        .await
        .unwrap();
    let cfg = DbConfig::from_url(&db.url).unwrap();
    let addr = evidence::metrics::serve("127.0.0.1:0".parse().unwrap(), cfg, vec![plan]).unwrap();
    let (_, body) = tokio::task::spawn_blocking(move || http_get(addr, "/metrics"))
        .await
        .unwrap();
    for series in [
        "cutover_backfill_state{plan=\"accounts-balance-cents\",state=\"pacing\"} 1.0",
        "cutover_backfill_throttled{plan=\"accounts-balance-cents\",reason=\"\"} 0.0",
    ] {
        assert!(body.contains(series), "{series} missing:\n{body}");
    }
}

#[tokio::test]
async fn metrics_scrape_serves_backfill_series_and_flips_observability() {
    let (_db, client) = demo_db().await;
    let plan = demo_plan();
    let obs = evidence::observability(&client, &plan).await;
    assert_eq!(obs.outcome, Outcome::Inconclusive, "{}", text(&obs));

    client
        .execute(
            "INSERT INTO cutover.backfill (plan_id, state, reason, target_chunk_ms, rows_done,
                                           rows_estimate, throttled_seconds, started_at)
             VALUES ($1, 'throttled', 'replay lag 7 s > 5 s', 300, 150, 200, 12.5, now())",
            &[&plan.id()],
        )
        .await
        .unwrap();
    client
        .execute(
            "INSERT INTO cutover.backfill_chunks (plan_id, range_id, worker, started_at, finished_at,
                                                  duration_ms, chunk_limit, rows_scanned,
                                                  rows_updated, target_ms)
             SELECT $1, 0, 'w1', now() - (d || ' ms')::interval, now(), d, 50, 50, 50, 300
               FROM unnest(ARRAY[20.0, 120.0, 700.0]::float8[]) d",
            &[&plan.id()],
        )
        .await
        .unwrap();
    let cfg = DbConfig::from_url(&_db.url).unwrap();
    let addr =
        evidence::metrics::serve("127.0.0.1:0".parse().unwrap(), cfg, vec![plan.clone()]).unwrap();
    let (status, body) = tokio::task::spawn_blocking(move || http_get(addr, "/metrics"))
        .await
        .unwrap();
    assert!(status.contains("200"), "{status}");
    assert_valid_exposition(&body);
    for series in [
        "cutover_backfill_rows_done{plan=\"accounts-balance-cents\"} 150.0",
        "cutover_backfill_rows_estimate{plan=\"accounts-balance-cents\"} 200.0",
        "cutover_backfill_throttled_seconds_total{plan=\"accounts-balance-cents\"} 12.5",
        "cutover_backfill_throttled{plan=\"accounts-balance-cents\",reason=\"replay lag 7 s > 5 s\"} 1.0",
        "cutover_backfill_state{plan=\"accounts-balance-cents\",state=\"throttled\"} 1.0",
        "cutover_backfill_chunk_duration_seconds_bucket{plan=\"accounts-balance-cents\",le=\"0.025\"} 1\n",
        "cutover_backfill_chunk_duration_seconds_bucket{plan=\"accounts-balance-cents\",le=\"0.25\"} 2\n",
        "cutover_backfill_chunk_duration_seconds_bucket{plan=\"accounts-balance-cents\",le=\"1.0\"} 3\n",
        "cutover_backfill_chunk_duration_seconds_bucket{plan=\"accounts-balance-cents\",le=\"+Inf\"} 3\n",
        "cutover_backfill_chunk_duration_seconds_count{plan=\"accounts-balance-cents\"} 3\n",
        "cutover_backfill_chunk_duration_seconds_sum{plan=\"accounts-balance-cents\"} 0.84",
        "cutover_phase_state{plan=\"accounts-balance-cents\",phase=\"expand\",state=\"pending\"} 1.0",
        "cutover_database_up{plan=\"accounts-balance-cents\"} 1.0",
        // Nothing signed yet: the expand gate is not measured as passing (the rules' verdict).
        "cutover_gate_evidence_outcome{plan=\"accounts-balance-cents\",gate=\"expand\",outcome=\"inconclusive\"} 1.0",
        "cutover_gate_passed{plan=\"accounts-balance-cents\",gate=\"expand\"} 0.0",
    ] {
        assert!(body.contains(series), "{series} missing:\n{body}");
    }
    let obs = evidence::observability(&client, &plan).await;
    assert_eq!(obs.outcome, Outcome::Pass, "{}", text(&obs));
    assert!(obs.summary.contains("127.0.0.1"), "{}", text(&obs));
}

/// One endpoint for several plans (`cutover tui A B --metrics-addr …`): `/metrics/PLAN_ID` serves
/// each plan's series, `/metrics` the first's, and each scrape is its own plan's evidence.
#[tokio::test]
async fn one_metrics_endpoint_serves_each_of_several_plans_on_its_own_path() {
    let (db, client) = demo_db().await;
    let first = demo_plan();
    let twin = Plan::parse("twin.toml", &demo_twin()).unwrap();
    let cfg = DbConfig::from_url(&db.url).unwrap();
    let addr = evidence::metrics::serve(
        "127.0.0.1:0".parse().unwrap(),
        cfg,
        vec![first.clone(), twin.clone()],
    )
    .unwrap();
    let get = |path: String| async move {
        tokio::task::spawn_blocking(move || http_get(addr, &path))
            .await
            .unwrap()
    };
    assert_eq!(
        evidence::observability(&client, &twin).await.outcome,
        Outcome::Inconclusive
    );
    for (path, id, other) in [
        ("/metrics".to_string(), first.id(), twin.id()),
        (
            evidence::metrics::plan_path(first.id()),
            first.id(),
            twin.id(),
        ),
        (
            evidence::metrics::plan_path(twin.id()),
            twin.id(),
            first.id(),
        ),
    ] {
        let (status, body) = get(path.clone()).await;
        assert!(status.contains("200"), "{path}: {status}");
        assert_valid_exposition(&body);
        assert!(
            body.contains(&format!("cutover_database_up{{plan=\"{id}\"}} 1.0")),
            "{path}:\n{body}"
        );
        assert!(
            !body.contains(&format!("plan=\"{other}\"")),
            "{path}:\n{body}"
        );
    }
    let (status, _) = get("/metrics/no-such-plan".to_string()).await;
    assert!(status.contains("404"), "{status}");
    let obs = evidence::observability(&client, &twin).await;
    assert_eq!(obs.outcome, Outcome::Pass, "{}", text(&obs));
}

#[tokio::test]
async fn runbook_and_probe_commands() {
    let (db, _client) = demo_db().await;
    let out = Command::new(cutover_bin())
        .args(["runbook", DEMO_PLAN])
        .env("DATABASE_URL", &db.url)
        .output()
        .unwrap();
    let md = String::from_utf8_lossy(&out.stdout);
    assert_eq!(
        out.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(md.contains("## Current state"), "{md}");
    assert!(md.contains("## Role roster"), "{md}");
    let plan = demo_plan();
    for (i, phase) in Phase::ALL.iter().enumerate() {
        let start = md
            .find(&format!("## {}. {phase}", i + 1))
            .unwrap_or_else(|| panic!("{phase} missing:\n{md}"));
        let section = &md[start..];
        let end = section[3..].find("\n## ").map_or(section.len(), |e| e + 3);
        let section = &section[..end];
        assert!(
            section.contains("### Stop conditions and rollback"),
            "{section}"
        );
        assert!(section.contains("### Gate"), "{section}");
        if let Some(rollback) = plan
            .phase(*phase)
            .rollback
            .as_deref()
            .filter(|r| !r.trim().is_empty())
        {
            assert!(
                section.contains(rollback.trim()),
                "{phase} rollback SQL:\n{section}"
            );
        }
        for check in &plan.gate(*phase).checks {
            assert!(
                section.contains(&format!("cutover check {DEMO_PLAN} --name {check}")),
                "{section}"
            );
        }
    }
    assert!(md.contains("## 5. contract — POINT OF NO RETURN"), "{md}");
    assert!(
        md.contains("cutover flag set accounts.read_balance_cents off"),
        "{md}"
    );

    let out = Command::new(cutover_bin())
        .args(["probe", DEMO_PLAN, "--gate", "expand"])
        .env("DATABASE_URL", &db.url)
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert_eq!(out.status.code(), Some(0), "{stdout}");
    assert!(
        stdout.contains("PASS") && stdout.contains("lint"),
        "{stdout}"
    );
}

/// Runs pgbench against `url` for `seconds` with a client that reads an account in a
/// transaction and rolls back `fail_pct` % of them.
async fn app_load(url: &str, seconds: u32, fail_pct: u32) {
    let dir = tempfile::tempdir().unwrap();
    let script = dir.path().join("app.sql");
    std::fs::write(
        &script,
        "\\set id random(1, 200)\n\\set r random(1, 100)\nBEGIN;\nSELECT balance FROM public.accounts WHERE id = :id;\n\\if :r <= :fail\nROLLBACK;\n\\else\nCOMMIT;\n\\endif\n",
    )
    .unwrap();
    let out = tokio::process::Command::new("pgbench")
        .args(["-n", "-c", "2", "-j", "1", "-T", &seconds.to_string()])
        .args(["-D", &format!("fail={fail_pct}"), "-f"])
        .arg(&script)
        .arg(url)
        .output()
        .await
        .unwrap();
    assert!(
        out.status.success(),
        "pgbench: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

#[tokio::test]
async fn error_budget_under_load_leaves_cutover_out_and_catches_app_rollbacks() {
    let (db, client) = demo_db().await;
    let plan = demo_plan();
    app_load(&db.url, 2, 0).await;
    evidence::before_phase(&client, &plan, Phase::ReadSwitch)
        .await
        .unwrap();

    // After the switch the application stays healthy while Cutover rolls back transactions of
    // its own, in this process and in others: rehearsal, lint simulation, compatibility probe.
    let load = app_load(&db.url, 2, 0);
    let cutover_work = async {
        let out = Command::new(cutover_bin())
            .args(["rehearse", DEMO_PLAN])
            .env("DATABASE_URL", &db.url)
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        for _ in 0..3 {
            run(&client, &plan, ProbeKind::Lint, Phase::Expand).await;
            run(&client, &plan, ProbeKind::Compatibility, Phase::DualWrite).await;
        }
    };
    tokio::join!(load, cutover_work);
    let r = run(&client, &plan, ProbeKind::ErrorBudget, Phase::Contract).await;
    let t = text(&r);
    assert!(t.contains("PASS: rollback ratio 0.00 %"), "{t}");
    let own_rollbacks: i64 = t
        .split("left out as Cutover's own: ")
        .nth(1)
        .and_then(|s| s.split(" rollbacks").next())
        .and_then(|s| s.rsplit(' ').next())
        .and_then(|n| n.parse().ok())
        .unwrap_or(0);
    assert!(own_rollbacks > 0, "{t}");

    // Then the application starts rolling back 5 % of its transactions.
    app_load(&db.url, 3, 5).await;
    let r = run(&client, &plan, ProbeKind::ErrorBudget, Phase::Contract).await;
    assert_eq!(r.outcome, Outcome::Fail, "{}", text(&r));
    assert!(r.summary.contains("rollback ratio"), "{}", text(&r));
    eprintln!("{}", text(&r));
}

/// The hidden-reader census on a server with pg_stat_statements (its own throwaway cluster):
/// an app statement reading the legacy column after the read switch blocks; once its call count
/// has stood still for the contract gate's observation window (the demo plan's 5 s) it has
/// drained and no longer blocks; a new call blocks again.
#[tokio::test]
async fn census_lets_a_silent_reader_drain_after_the_observation_window() {
    let cluster = cutover::throwaway::ThrowawayCluster::start()
        .await
        .expect("a throwaway cluster (with pg_stat_statements)");
    let url = cluster.url();
    let cfg = DbConfig::from_url(&url).unwrap();
    let mut client = db::connect(&cfg, &SessionSettings::new("test"))
        .await
        .unwrap();
    let plan = demo_plan();
    client
        .batch_execute(include_str!("../../assets/demo/schema.sql"))
        .await
        .unwrap();
    client
        .batch_execute(
            "SELECT cutover_demo_seed(200, 20, 20);
             DROP FUNCTION cutover_demo_seed(integer, integer, integer);",
        )
        .await
        .unwrap();
    client
        .batch_execute(&plan.phase(Phase::Expand).apply)
        .await
        .unwrap();
    client
        .batch_execute(&plan.phase(Phase::DualWrite).apply)
        .await
        .unwrap();
    schema::bootstrap(&mut client).await.unwrap();
    // The migration stands after its read switch (the engine's bookkeeping, by hand).
    evidence::before_phase(&client, &plan, Phase::ReadSwitch)
        .await
        .unwrap();
    client
        .execute(
            "INSERT INTO cutover.migrations (plan_id, title, plan_sha256, plan_source, plan_path, current_phase, state)
             VALUES ($1, $2, $3, $4, $5, 'read_switch', 'applied')",
            &[&plan.id(), &plan.spec.title, &plan.sha256(), &plan.source, &DEMO_PLAN],
        )
        .await
        .unwrap();
    for phase in ["expand", "dual_write", "backfill", "read_switch"] {
        client
            .execute(
                "INSERT INTO cutover.phases (plan_id, phase, state, plan_sha256, started_at, finished_at)
                 VALUES ($1, $2, 'applied', $3, now(), now())",
                &[&plan.id(), &phase, &plan.sha256()],
            )
            .await
            .unwrap();
    }
    // The old app reads the legacy column, then goes away (rolled to a new version).
    let old_app = || async {
        let app = crate::common::connect(&url).await;
        for id in 1..=3i64 {
            app.query("SELECT balance FROM public.accounts WHERE id = $1", &[&id])
                .await
                .unwrap();
        }
    };
    old_app().await;
    let census = || run(&client, &plan, ProbeKind::HiddenReaders, Phase::Contract);
    let r = census().await;
    assert_eq!(r.outcome, Outcome::Fail, "{}", text(&r));
    assert!(
        r.summary
            .contains("ran 3 time(s) since the read switch: SELECT balance FROM public.accounts"),
        "{}",
        text(&r)
    );
    // Silent, but not yet for the whole window: still a blocker.
    tokio::time::sleep(std::time::Duration::from_secs(1)).await;
    let r = census().await;
    assert_eq!(r.outcome, Outcome::Fail, "{}", text(&r));
    tokio::time::sleep(std::time::Duration::from_millis(5_500)).await;
    let r = census().await;
    assert_eq!(r.outcome, Outcome::Pass, "{}", text(&r));
    assert!(
        text(&r).contains("drained: query") && text(&r).contains("ran 3 time(s)"),
        "{}",
        text(&r)
    );
    // The old app comes back: the reader blocks again at once.
    old_app().await;
    let r = census().await;
    assert_eq!(r.outcome, Outcome::Fail, "{}", text(&r));
    assert!(r.summary.contains("ran 6 time(s)"), "{}", text(&r));
    let kept: i64 = client
        .query_one("SELECT count(*) FROM cutover.census_samples", &[])
        .await
        .unwrap()
        .get(0);
    assert!(
        (1..=3).contains(&kept),
        "samples older than the one compared with are forgotten ({kept} kept)"
    );
}

/// `cutover attest`: the sre's word on where the dashboards are turns Observability green for
/// this plan version, with who and where in the evidence and an audit entry; a login outside
/// the roster and a category with automated evidence are refused (exit 3) and change nothing.
#[tokio::test]
async fn attest_observability_by_its_owner_only() {
    let (db, client) = demo_db().await;
    let cutover = |url: &str, args: &[&str]| {
        Command::new(cutover_bin())
            .args(args)
            .env("DATABASE_URL", url)
            .output()
            .unwrap()
    };
    let url = "https://grafana.example.com/d/ledger";
    let (_, outsider) = db.login("mallory").await;
    let o = cutover(&outsider, &["attest", DEMO_PLAN, "observability", url]);
    assert_eq!(o.status.code(), Some(3), "{o:?}");
    let o = cutover(&db.url, &["attest", DEMO_PLAN, "data_quality", url]);
    assert_eq!(o.status.code(), Some(3), "{o:?}");
    assert!(
        String::from_utf8_lossy(&o.stderr).contains("automated evidence only"),
        "{o:?}"
    );
    let o = cutover(&db.url, &["attest", DEMO_PLAN, "observability", "grafana"]);
    assert_eq!(o.status.code(), Some(3), "{o:?}");
    let none: i64 = client
        .query_one("SELECT count(*) FROM cutover.attestations", &[])
        .await
        .unwrap()
        .get(0);
    assert_eq!(none, 0);
    let runbook = |cutover: &dyn Fn(&str, &[&str]) -> std::process::Output| {
        let o = cutover(&db.url, &["runbook", DEMO_PLAN]);
        assert_eq!(o.status.code(), Some(0), "{o:?}");
        let md = String::from_utf8_lossy(&o.stdout).into_owned();
        let start = md
            .find("## Observability evidence")
            .unwrap_or_else(|| panic!("no Observability section:\n{md}"));
        let end = md[start + 3..]
            .find("\n## ")
            .map_or(md.len(), |e| start + 3 + e);
        md[start..end].to_string()
    };
    let before = runbook(&cutover);
    assert!(
        before.contains("- Now: **inconclusive** — never scraped"),
        "{before}"
    );
    assert!(
        before.contains(&format!(
            "Attestations: none recorded; the sre records one with `cutover attest {DEMO_PLAN} observability URL` (in the TUI: `:attest observability URL`)"
        )),
        "{before}"
    );

    let o = cutover(&db.url, &["attest", DEMO_PLAN, "observability", url]);
    assert_eq!(o.status.code(), Some(0), "{o:?}");
    let after = runbook(&cutover);
    assert!(
        after.contains("- Now: **pass** — attested by postgres (sre)"),
        "{after}"
    );
    let line = after
        .lines()
        .find(|l| l.starts_with("  - `observability` by **postgres** (sre; "))
        .unwrap_or_else(|| panic!("no attestation listed:\n{after}"));
    assert!(
        line.ends_with(&format!(": {url} — for this plan version")),
        "{line}"
    );
    assert!(!after.contains("none recorded"), "{after}");
    // The post-migration record lists it too, in Markdown and JSON.
    let out = tempfile::tempdir().unwrap();
    let o = cutover(
        &db.url,
        &["report", DEMO_PLAN, "--out", out.path().to_str().unwrap()],
    );
    assert_eq!(o.status.code(), Some(0), "{o:?}");
    let md = std::fs::read_to_string(out.path().join("accounts-balance-cents-report.md")).unwrap();
    let section = &md[md.find("## Attestations").expect("an Attestations section")..];
    assert!(
        section.contains("- `observability` attested by postgres (sre; ")
            && section.contains(&format!(": {url}\n")),
        "{section}"
    );
    let js: serde_json::Value = serde_json::from_str(
        &std::fs::read_to_string(out.path().join("accounts-balance-cents-report.json")).unwrap(),
    )
    .unwrap();
    assert_eq!(js["attestations"][0]["url"], url, "{js}");
    assert_eq!(js["attestations"][0]["category"], "observability", "{js}");
    let o = cutover(&db.url, &["status", DEMO_PLAN, "--json"]);
    let st: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    let obs = st["scorecard"]["categories"]
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["name"] == "Observability")
        .unwrap()["evidence"][0]
        .clone();
    assert_eq!(obs["outcome"], "pass", "{obs}");
    let detail = obs["detail"].as_str().unwrap();
    assert!(
        detail.starts_with("attested by postgres (sre) at ") && detail.ends_with(url),
        "{detail}"
    );
    let audited: i64 = client
        .query_one(
            "SELECT count(*) FROM cutover.audit_log WHERE action = 'attest' AND details->>'url' = $1",
            &[&url],
        )
        .await
        .unwrap()
        .get(0);
    assert_eq!(audited, 1);
}
