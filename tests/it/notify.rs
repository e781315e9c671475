//! Notifications against a real PostgreSQL and a local HTTP receiver: retries until delivered
//! exactly once, exec hooks with `CUTOVER_*` variables, a deliverer killed mid-delivery loses
//! nothing and the next run sends once, `cutover advance` with a racing deliverer sends one
//! webhook, and the watcher enqueues each time-based event once.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use cutover::control::audit::{self, Actor, AuditAction, NewEntry};
use cutover::control::outbox::{self, DeliveryState};
use cutover::engine;
use cutover::notify::{self, Options};
use cutover::plan::{Event, Phase, Plan, Role};
use serde_json::Value;
use tokio_postgres::Client;

use crate::common::plans::PlanToml;
use crate::common::{cutover_bin, TestDb};

const PLAN_ID: &str = "notify-test";

fn plan_toml(notify: &str) -> PlanToml {
    PlanToml::new(PLAN_ID)
        .title("Notify test")
        .environment("test")
        .phase(
            Phase::Expand,
            "CREATE TABLE public.notified (id int)",
            "DROP TABLE public.notified",
        )
        .with("[gates.expand]\nsignoffs = [\"lead\"]")
        .with(notify)
}

/// Writes the plan into `dir` and parses it.
fn write_plan(dir: &Path, notify: &str) -> (PathBuf, Plan) {
    let path = plan_toml(notify).write(dir);
    let plan = Plan::load(&path).unwrap();
    (path, plan)
}

async fn control(db: &TestDb) -> Client {
    db.control_client().await
}

/// Registers the plan and signs its expand gate as lead: one `signoff` event.
async fn sign(client: &mut Client, plan: &Plan) {
    let actor = Actor::current(&*client).await.unwrap();
    cutover::control::phases::ensure_registered(client, plan, &actor)
        .await
        .unwrap();
    let r = engine::signoff(
        client,
        plan,
        &actor,
        Phase::Expand,
        &Role("lead".into()),
        "",
    )
    .await
    .unwrap();
    assert!(matches!(r, engine::SignoffOutcome::Recorded { .. }));
}

fn fast() -> Options {
    Options {
        backoff_base: Duration::from_millis(50),
        ..Options::default()
    }
}

/// What the receiver does with a request.
#[derive(Clone, Copy)]
enum Mode {
    /// Answers 500 to the first `n` requests, then 200.
    FailFirst(usize),
    /// Holds the first request unanswered until the receiver is dropped, then answers 200.
    HangFirst,
}

/// A local HTTP server recording every request body (JSON) and its path.
struct Receiver {
    port: u16,
    got: Arc<Mutex<Vec<(String, Value)>>>,
    stop: Arc<AtomicBool>,
    server: Arc<tiny_http::Server>,
}

impl Receiver {
    fn start(mode: Mode) -> Receiver {
        let server = Arc::new(tiny_http::Server::http("127.0.0.1:0").unwrap());
        let port = server.server_addr().to_ip().unwrap().port();
        let got = Arc::new(Mutex::new(Vec::new()));
        let stop = Arc::new(AtomicBool::new(false));
        let seen = Arc::new(AtomicUsize::new(0));
        let (s, g, st) = (server.clone(), got.clone(), stop.clone());
        std::thread::spawn(move || {
            for mut req in s.incoming_requests() {
                let mut body = String::new();
                let _ = req.as_reader().read_to_string(&mut body);
                let n = seen.fetch_add(1, Ordering::SeqCst);
                g.lock().unwrap().push((
                    req.url().to_string(),
                    serde_json::from_str(&body).unwrap_or(Value::Null),
                ));
                let (st, status) = (
                    st.clone(),
                    match mode {
                        Mode::FailFirst(k) if n < k => 500,
                        _ => 200,
                    },
                );
                let hang = matches!(mode, Mode::HangFirst) && n == 0;
                std::thread::spawn(move || {
                    while hang && !st.load(Ordering::SeqCst) {
                        std::thread::sleep(Duration::from_millis(20));
                    }
                    let _ = req.respond(tiny_http::Response::empty(status));
                });
            }
        });
        Receiver {
            port,
            got,
            stop,
            server,
        }
    }

    /// A URL with secrets in its path and query.
    fn url(&self) -> String {
        format!(
            "http://127.0.0.1:{}/hook/s3cret-path?token=s3cret-query",
            self.port
        )
    }

    fn bodies(&self) -> Vec<Value> {
        self.got
            .lock()
            .unwrap()
            .iter()
            .map(|(_, b)| b.clone())
            .collect()
    }

    /// Waits until at least `n` requests arrived (at most `within`).
    fn wait_for(&self, n: usize, within: Duration) -> Vec<Value> {
        let start = Instant::now();
        while self.got.lock().unwrap().len() < n && start.elapsed() < within {
            std::thread::sleep(Duration::from_millis(20));
        }
        self.bodies()
    }
}

impl Drop for Receiver {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
        self.server.unblock();
    }
}

fn cutover(url: &str, args: &[&str]) -> Command {
    let mut c = Command::new(cutover_bin());
    c.args(args)
        .env("DATABASE_URL", url)
        .env("CUTOVER_LOG", "warn")
        .stdin(Stdio::null());
    c
}

fn run_ok(url: &str, args: &[&str]) -> String {
    let o = cutover(url, args).output().unwrap();
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    );
    assert!(o.status.success(), "cutover {args:?} failed:\n{text}");
    text
}

struct Killed(Child);

impl Drop for Killed {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn spawn_deliverer(url: &str, plan: &Path) -> Killed {
    Killed(
        cutover(url, &["notify", "deliver", plan.to_str().unwrap()])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap(),
    )
}

/// The plan's outbox events, oldest first.
async fn events(client: &Client) -> Vec<String> {
    client
        .query(
            "SELECT event FROM cutover.outbox WHERE plan_id = $1 ORDER BY id",
            &[&PLAN_ID],
        )
        .await
        .unwrap()
        .iter()
        .map(|r| r.get(0))
        .collect()
}

async fn deliveries(client: &Client) -> Vec<outbox::Delivery> {
    outbox::deliveries(client, PLAN_ID, 100).await.unwrap()
}

#[tokio::test]
async fn a_failing_webhook_is_retried_and_delivered_exactly_once() {
    let db = TestDb::new().await;
    let mut client = control(&db).await;
    let rx = Receiver::start(Mode::FailFirst(2));
    let dir = tempfile::tempdir().unwrap();
    let (_, plan) = write_plan(dir.path(), &format!("[[notify]]\nurl = \"{}\"\n", rx.url()));
    sign(&mut client, &plan).await;

    let start = Instant::now();
    let mut delivered = 0;
    let mut errors = Vec::new();
    while delivered == 0 && start.elapsed() < Duration::from_secs(5) {
        let r = notify::deliver_due(&mut client, &plan, &fast(), None)
            .await
            .unwrap();
        delivered += r.delivered;
        errors.extend(r.failed.into_iter().map(|f| f.error));
        tokio::time::sleep(Duration::from_millis(30)).await;
    }
    assert_eq!(delivered, 1, "errors: {errors:?}");
    assert_eq!(errors.len(), 2, "{errors:?}");
    for e in &errors {
        assert!(e.contains("HTTP 500"), "{e}");
        assert!(
            e.contains(&format!("http://127.0.0.1:{}/…", rx.port)),
            "{e}"
        );
        assert!(!e.contains("s3cret"), "a secret leaked into an error: {e}");
    }
    // Later passes send nothing more.
    let again = notify::deliver_due(&mut client, &plan, &fast(), None)
        .await
        .unwrap();
    assert_eq!(again.delivered, 0);
    let bodies = rx.bodies();
    assert_eq!(bodies.len(), 3, "{bodies:?}");
    let ids: Vec<&Value> = bodies.iter().map(|b| &b["event_id"]).collect();
    assert!(ids.iter().all(|id| *id == ids[0]), "{ids:?}");
    let attempts: Vec<u64> = bodies
        .iter()
        .filter_map(|b| b["attempt"].as_u64())
        .collect();
    assert_eq!(attempts, [1, 2, 3]);
    let b = &bodies[2];
    assert_eq!(b["event"], "signoff");
    assert_eq!(b["phase"], "expand");
    assert_eq!(
        b["text"].as_str().unwrap(),
        format!("[test] {PLAN_ID}: postgres signed off gate expand as lead")
    );
    assert_eq!(b["details"]["role"], "lead");

    let rows = deliveries(&client).await;
    assert_eq!(rows.len(), 1, "{rows:?}");
    assert_eq!(rows[0].state, DeliveryState::Delivered);
    assert_eq!(rows[0].attempts, 3);
    assert!(rows[0]
        .last_error
        .as_deref()
        .unwrap_or("")
        .contains("HTTP 500"));
}

#[tokio::test]
async fn exec_hooks_get_the_event_in_their_environment() {
    let db = TestDb::new().await;
    let mut client = control(&db).await;
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("env.txt");
    let notify = format!(
        r#"
[[notify]]
name = "record"
command = ["/bin/sh", "-c", "env > \"$0\"", "{}"]
[[notify]]
name = "broken"
command = ["/bin/sh", "-c", "echo nope >&2; exit 3"]
[[notify]]
name = "slow"
command = ["/bin/sh", "-c", "sleep 5"]
timeout = "300ms"
"#,
        out.display()
    );
    let (_, plan) = write_plan(dir.path(), &notify);
    sign(&mut client, &plan).await;

    let r = notify::deliver_due(&mut client, &plan, &Options::default(), None)
        .await
        .unwrap();
    assert_eq!(r.delivered, 1, "{r:?}");
    let env = std::fs::read_to_string(&out).unwrap();
    for line in [
        "CUTOVER_EVENT=signoff",
        &format!("CUTOVER_PLAN_ID={PLAN_ID}"),
        "CUTOVER_PHASE=expand",
        "CUTOVER_LOGIN=postgres",
        "CUTOVER_TARGET=record",
        "CUTOVER_ATTEMPT=1",
        "CUTOVER_ENVIRONMENT=test",
        &format!("CUTOVER_TEXT=[test] {PLAN_ID}: postgres signed off gate expand as lead"),
    ] {
        assert!(env.lines().any(|l| l == line), "no `{line}` in:\n{env}");
    }
    let details = env
        .lines()
        .find_map(|l| l.strip_prefix("CUTOVER_DETAILS_JSON="))
        .unwrap();
    let details: Value = serde_json::from_str(details).unwrap();
    assert_eq!(details["gate"], "expand");
    assert!(
        !env.contains("DATABASE_URL="),
        "the hook saw the connection string"
    );

    let mut errors: Vec<(String, String)> = r
        .failed
        .iter()
        .map(|f| (f.target.clone(), f.error.clone()))
        .collect();
    errors.sort();
    assert_eq!(errors.len(), 2, "{errors:?}");
    assert_eq!(errors[0].0, "broken");
    assert!(
        errors[0].1.contains("exit status: 3: nope"),
        "{}",
        errors[0].1
    );
    assert_eq!(errors[1].0, "slow");
    assert!(
        errors[1].1.contains("did not finish within 300ms"),
        "{}",
        errors[1].1
    );
}

#[tokio::test]
async fn a_deliverer_killed_mid_delivery_loses_nothing_and_the_next_run_sends_once() {
    let db = TestDb::new().await;
    let mut client = control(&db).await;
    let rx = Receiver::start(Mode::HangFirst);
    let dir = tempfile::tempdir().unwrap();
    let (path, plan) = write_plan(dir.path(), &format!("[[notify]]\nurl = \"{}\"\n", rx.url()));
    sign(&mut client, &plan).await;

    // A deliverer claims the event, sends it, and is killed before the receiver answers.
    let deliverer = spawn_deliverer(&db.url, &path);
    let first = rx.wait_for(1, Duration::from_secs(5));
    assert_eq!(first.len(), 1, "the deliverer never sent");
    drop(deliverer);
    let start = Instant::now();
    while start.elapsed() < Duration::from_secs(5) {
        let n: i64 = client
            .query_one(
                "SELECT count(*) FROM pg_stat_activity
                  WHERE datname = current_database() AND application_name LIKE 'cutover/notify%'",
                &[],
            )
            .await
            .unwrap()
            .get(0);
        if n == 0 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let rows = deliveries(&client).await;
    assert_eq!(rows.len(), 1);
    assert_eq!(rows[0].state, DeliveryState::Pending, "{rows:?}");
    assert_eq!(rows[0].attempts, 0, "the killed attempt was not recorded");

    // The next run sends it, once; a further run sends nothing.
    let path_s = path.to_str().unwrap();
    let out = run_ok(&db.url, &["notify", "deliver", path_s, "--once"]);
    assert!(out.contains("1 delivered"), "{out}");
    let out = run_ok(&db.url, &["notify", "deliver", path_s, "--once"]);
    assert!(out.contains("0 delivered"), "{out}");
    let bodies = rx.bodies();
    assert_eq!(bodies.len(), 2, "{bodies:?}");
    assert_eq!(bodies[0]["event_id"], bodies[1]["event_id"]);
    let rows = deliveries(&client).await;
    assert_eq!(rows[0].state, DeliveryState::Delivered);
    assert_eq!(rows[0].attempts, 1);
    let status = run_ok(&db.url, &["notify", "status", path_s]);
    assert!(
        status.contains("signoff → webhook-127.0.0.1: delivered"),
        "{status}"
    );
    assert!(!status.contains("s3cret"), "{status}");
}

#[tokio::test]
async fn advance_sends_one_webhook_naming_the_phase_despite_a_racing_deliverer() {
    let db = TestDb::new().await;
    let client = control(&db).await;
    let rx = Receiver::start(Mode::FailFirst(0));
    let dir = tempfile::tempdir().unwrap();
    let (path, _) = write_plan(
        dir.path(),
        &format!(
            "[[notify]]\nurl = \"{}\"\non = [\"phase.applied\"]\n",
            rx.url()
        ),
    );
    let p = path.to_str().unwrap();
    let mut deliverer = spawn_deliverer(&db.url, &path);
    run_ok(
        &db.url,
        &["signoff", p, "--gate", "expand", "--role", "lead"],
    );
    run_ok(&db.url, &["advance", p]);
    let got = rx.wait_for(1, Duration::from_secs(5));
    // Give the background deliverer time for more passes: it must find nothing left.
    std::thread::sleep(Duration::from_millis(1500));
    let got_later = rx.bodies();
    assert!(
        deliverer.0.try_wait().unwrap().is_none(),
        "the racing deliverer is not running"
    );
    assert_eq!(got.len(), 1, "{got:?}");
    assert_eq!(got_later.len(), 1, "{got_later:?}");
    let b = &got_later[0];
    assert_eq!(b["event"], "phase.applied");
    assert_eq!(b["phase"], "expand");
    let text = b["text"].as_str().unwrap();
    assert!(text.contains("expand applied by postgres"), "{text}");
    let rows = deliveries(&client).await;
    assert_eq!(rows.len(), 1, "only phase.applied is routed: {rows:?}");
    assert_eq!(rows[0].event.event, Event::PhaseApplied);
    assert_eq!(rows[0].attempts, 1);
}

/// Pacing is not a throttle: a backfill the latency guard has paced for longer than
/// `throttled_after` fires nothing; held back by a health signal for as long, it fires.
#[tokio::test]
async fn a_paced_backfill_is_not_reported_throttled() {
    let db = TestDb::new().await;
    let mut client = control(&db).await;
    let dir = tempfile::tempdir().unwrap();
    let notify = r#"
[[notify]]
name = "fast"
command = ["/bin/true"]
throttled_after = "1s"
on = ["backfill.throttled"]
"#;
    let (_, plan) = write_plan(dir.path(), notify);
    let actor = Actor::current(&client).await.unwrap();
    cutover::control::phases::ensure_registered(&mut client, &plan, &actor)
        .await
        .unwrap();
    client
        .batch_execute(&format!(
            "INSERT INTO cutover.backfill (plan_id, state, reason, target_chunk_ms)
               VALUES ('{PLAN_ID}', 'pacing', 'yielding: app latency 0.79× baseline \
               (limit 1.25×, probe); easing off, pausing 0.3× each chunk''s time', 300);
             UPDATE cutover.backfill SET state_changed_at = clock_timestamp() - interval '2 s';"
        ))
        .await
        .unwrap();
    assert_eq!(notify::watch(&client, &plan, false).await.unwrap(), 0);
    client
        .batch_execute(&format!(
            "UPDATE cutover.backfill SET state = 'throttled', reason = 'replica lag 9s > 5s'
              WHERE plan_id = '{PLAN_ID}';
             UPDATE cutover.backfill SET state_changed_at = clock_timestamp() - interval '2 s';"
        ))
        .await
        .unwrap();
    assert_eq!(notify::watch(&client, &plan, false).await.unwrap(), 1);
    assert_eq!(events(&client).await, ["backfill.throttled"]);
}

#[tokio::test]
async fn the_watcher_enqueues_each_time_based_event_once() {
    let db = TestDb::new().await;
    let mut client = control(&db).await;
    let dir = tempfile::tempdir().unwrap();
    let notify = r#"
[[notify]]
name = "fast"
command = ["/bin/true"]
blocked_after = "1s"
throttled_after = "1s"
[[notify]]
name = "patient"
command = ["/bin/true"]
throttled_after = "1h"
on = ["backfill.throttled", "check.failed", "backfill.failed"]
"#;
    let (_, plan) = write_plan(dir.path(), notify);
    let actor = Actor::current(&client).await.unwrap();
    cutover::control::phases::ensure_registered(&mut client, &plan, &actor)
        .await
        .unwrap();
    // The expand gate waits for a sign-off: blocked, but not yet for a second.
    assert_eq!(notify::watch(&client, &plan, false).await.unwrap(), 0);
    // A backfill throttled for 2 s (fast's 1 s threshold, not patient's hour) and a phase left
    // `applying` by a process that is gone.
    client
        .batch_execute(&format!(
            "INSERT INTO cutover.backfill (plan_id, state, reason, target_chunk_ms)
               VALUES ('{PLAN_ID}', 'throttled', 'replica lag 9s > 5s', 300);
             UPDATE cutover.backfill SET state_changed_at = clock_timestamp() - interval '2 s';
             UPDATE cutover.phases SET state = 'applying', started_at = clock_timestamp()
              WHERE plan_id = '{PLAN_ID}' AND phase = 'dual_write';"
        ))
        .await
        .unwrap();
    tokio::time::sleep(Duration::from_millis(1100)).await;
    assert_eq!(notify::watch(&client, &plan, false).await.unwrap(), 2);
    assert_eq!(
        notify::watch(&client, &plan, false).await.unwrap(),
        0,
        "enqueued twice"
    );
    let mut got = events(&client).await;
    got.sort();
    assert_eq!(got, ["backfill.throttled", "phase.interrupted"]);

    // The gate is not judged while a phase is in flight; once it is not, it has been blocked
    // for over a second since first seen.
    client
        .batch_execute(&format!(
            "UPDATE cutover.phases SET state = 'pending' WHERE plan_id = '{PLAN_ID}' AND phase = 'dual_write'"
        ))
        .await
        .unwrap();
    assert_eq!(
        notify::watch(&client, &plan, false).await.unwrap(),
        0,
        "first sight of the block"
    );
    client
        .batch_execute("UPDATE cutover.notify_watch SET since = since - interval '2 s'")
        .await
        .unwrap();
    assert_eq!(notify::watch(&client, &plan, false).await.unwrap(), 1);
    assert_eq!(notify::watch(&client, &plan, false).await.unwrap(), 0);

    // Triggers: a check turning to fail notifies once, the backfill failing once.
    client
        .batch_execute(&format!(
            "INSERT INTO cutover.check_results (plan_id, check_name, kind, outcome, summary, started_at, duration_ms, plan_sha256)
             SELECT '{PLAN_ID}', 'parity', 'invariant', o, 's', now(), 1, 'x'
               FROM unnest(ARRAY['fail', 'fail', 'pass', 'fail']) o;
             UPDATE cutover.backfill SET state = 'failed', reason = 'division by zero';
             UPDATE cutover.backfill SET reason = 'still failed';"
        ))
        .await
        .unwrap();
    // A tampered audit log.
    client
        .batch_execute(
            "ALTER TABLE cutover.audit_log DISABLE TRIGGER audit_log_no_update_delete;
             UPDATE cutover.audit_log SET details = '{\"forged\": true}' WHERE seq = 1;
             ALTER TABLE cutover.audit_log ENABLE TRIGGER audit_log_no_update_delete;",
        )
        .await
        .unwrap();
    assert_eq!(notify::watch(&client, &plan, true).await.unwrap(), 1);
    assert_eq!(notify::watch(&client, &plan, true).await.unwrap(), 0);
    let got = events(&client).await;
    let count = |e: &str| got.iter().filter(|g| *g == e).count();
    assert_eq!(count("gate.blocked"), 1, "{got:?}");
    assert_eq!(count("check.failed"), 2, "{got:?}");
    assert_eq!(count("backfill.failed"), 1, "{got:?}");
    assert_eq!(count("audit.broken"), 1, "{got:?}");

    // Routing: each target gets what it subscribed to, time-based events only at its threshold.
    let r = notify::deliver_due(&mut client, &plan, &Options::default(), None)
        .await
        .unwrap();
    assert!(r.failed.is_empty(), "{:?}", r.failed);
    let rows = deliveries(&client).await;
    let to = |target: &str| {
        let mut v: Vec<&str> = rows
            .iter()
            .filter(|d| d.target == target)
            .map(|d| d.event.event.as_str())
            .collect();
        v.sort();
        v
    };
    assert_eq!(
        to("fast"),
        [
            "audit.broken",
            "backfill.failed",
            "backfill.throttled",
            "check.failed",
            "check.failed",
            "gate.blocked",
            "phase.interrupted"
        ]
    );
    assert_eq!(
        to("patient"),
        ["backfill.failed", "check.failed", "check.failed"]
    );
}

#[tokio::test]
async fn the_worker_snapshot_sums_up_a_failing_receiver() {
    let db = TestDb::new().await;
    let mut client = control(&db).await;
    let rx = Receiver::start(Mode::FailFirst(1));
    let dir = tempfile::tempdir().unwrap();
    let (_, plan) = write_plan(
        dir.path(),
        &format!("[[notify]]\nname = \"oncall\"\nurl = \"{}\"\n", rx.url()),
    );
    sign(&mut client, &plan).await;
    let slow = Options {
        backoff_base: Duration::from_secs(60),
        ..Options::default()
    };
    let report = notify::deliver_due(&mut client, &plan, &slow, None)
        .await
        .unwrap();
    assert_eq!((report.delivered, report.failed.len()), (0, 1));

    let snap = cutover::worker::snapshot::load(&client, &plan)
        .await
        .unwrap();
    let n = snap
        .notify
        .clone()
        .expect("a plan with targets has a summary");
    assert_eq!(
        (n.delivered, n.pending, n.retrying, n.gave_up, n.unrouted),
        (0, 0, 1, 0, 0)
    );
    let f = n.latest_failure.expect("the failed attempt");
    assert_eq!((f.target.as_str(), f.attempts), ("oncall", 1));
    assert_eq!(f.state, DeliveryState::Pending);
    let next_in = (f.next_attempt_at.unwrap() - snap.facts.now).num_seconds();
    assert!((50..=60).contains(&next_in), "next attempt in {next_in}s");
    assert!(f.last_error.ends_with("HTTP 500"), "{}", f.last_error);
    assert!(!f.last_error.contains("s3cret"), "{}", f.last_error);
    // The TUI's roster says as much, from that snapshot alone.
    let vm = cutover::tui::view::build(&plan, "db", false, None, Some(&snap));
    let v = vm.roster.notify.expect("shown for a plan with targets");
    assert_eq!((v.sent, v.retrying), (0, 1));
    assert_eq!(v.failure.map(|f| f.error), Some("HTTP 500".to_string()));

    // The retry comes due and succeeds: delivered, no failure left to show.
    client
        .execute(
            "UPDATE cutover.outbox_deliveries SET next_attempt_at = clock_timestamp()",
            &[],
        )
        .await
        .unwrap();
    let report = notify::deliver_due(&mut client, &plan, &slow, None)
        .await
        .unwrap();
    assert_eq!((report.delivered, report.failed.len()), (1, 0));
    let n = cutover::worker::snapshot::load(&client, &plan)
        .await
        .unwrap()
        .notify
        .unwrap();
    assert_eq!((n.delivered, n.retrying), (1, 0));
    assert_eq!(n.latest_failure, None);
    assert_eq!(rx.bodies().len(), 2);

    // Without targets, the worker reads no summary.
    let (_, bare) = write_plan(dir.path(), "");
    let snap = cutover::worker::snapshot::load(&client, &bare)
        .await
        .unwrap();
    assert!(snap.notify.is_none());
}

#[tokio::test]
async fn a_target_with_max_attempts_gives_up_after_that_many() {
    let db = TestDb::new().await;
    let mut client = control(&db).await;
    let rx = Receiver::start(Mode::FailFirst(usize::MAX));
    let dir = tempfile::tempdir().unwrap();
    let (_, plan) = write_plan(
        dir.path(),
        &format!(
            "[[notify]]\nname = \"oncall\"\nurl = \"{}\"\nmax_attempts = 2\n",
            rx.url()
        ),
    );
    sign(&mut client, &plan).await;
    let start = Instant::now();
    let mut failed = Vec::new();
    while start.elapsed() < Duration::from_secs(10) {
        let r = notify::deliver_due(&mut client, &plan, &fast(), None)
            .await
            .unwrap();
        failed.extend(r.failed);
        if failed.iter().any(|f| f.gave_up) {
            break;
        }
        tokio::time::sleep(Duration::from_millis(60)).await;
    }
    assert_eq!(
        failed
            .iter()
            .map(|f| (f.attempts, f.gave_up))
            .collect::<Vec<_>>(),
        [(1, false), (2, true)],
        "the default of 10 attempts does not apply"
    );
    let d = deliveries(&client).await;
    assert_eq!((d[0].state, d[0].attempts), (DeliveryState::GaveUp, 2));
    assert_eq!(rx.bodies().len(), 2);
    let n = cutover::worker::snapshot::load(&client, &plan)
        .await
        .unwrap()
        .notify
        .unwrap();
    assert_eq!((n.gave_up, n.retrying), (1, 0));
    assert_eq!(n.latest_failure.unwrap().next_attempt_at, None);
}

/// The `outbox` trigger on `cutover.audit_log` maps actions to events by `CASE`: every action
/// this build records raises exactly the event [`AuditAction::event`] names, and nothing else.
#[tokio::test]
async fn the_audit_trigger_raises_exactly_the_events_the_actions_name() {
    let db = TestDb::new().await;
    let mut client = control(&db).await;
    let actor = Actor::current(&client).await.unwrap();
    let tx = client.transaction().await.unwrap();
    for action in AuditAction::ALL {
        let entry = audit::append(
            &tx,
            NewEntry {
                actor: &actor,
                plan_id: PLAN_ID,
                plan_sha256: "sha",
                action,
                phase: Some(Phase::Expand),
                details: serde_json::json!({}),
            },
        )
        .await
        .unwrap();
        let raised: Vec<String> = tx
            .query(
                "SELECT event FROM cutover.outbox WHERE audit_seq = $1",
                &[&entry.seq],
            )
            .await
            .unwrap()
            .iter()
            .map(|r| r.get("event"))
            .collect();
        let expected: Vec<String> = action
            .event()
            .map(|e| e.as_str().to_string())
            .into_iter()
            .collect();
        assert_eq!(raised, expected, "audit action {action}");
    }
    tx.rollback().await.unwrap();
    // And the trigger names no action the enum does not know (a renamed one would linger there).
    let source: String = client
        .query_one(
            "SELECT prosrc FROM pg_proc WHERE proname = 'outbox_from_audit'",
            &[],
        )
        .await
        .unwrap()
        .get("prosrc");
    let mapped: Vec<(&str, &str)> = source
        .lines()
        .filter_map(|l| {
            let mut quoted = l.split('\'').skip(1).step_by(2);
            l.trim_start()
                .starts_with("WHEN '")
                .then(|| (quoted.next().unwrap(), quoted.next().unwrap()))
        })
        .collect();
    assert_eq!(
        mapped.len(),
        AuditAction::ALL
            .iter()
            .filter(|a| a.event().is_some())
            .count()
    );
    for (action, event) in mapped {
        let known = AuditAction::parse(action).and_then(AuditAction::event);
        assert_eq!(
            known,
            Event::parse(event),
            "trigger maps `{action}` to `{event}`"
        );
    }
}
