//! What the operator sees is what runs: the TUI's red rollback box, `rollback --dry-run` and the
//! engine share one rollback plan, and the server runs exactly the statements the box shows.
//! Reads answer "not started" where nothing has run yet, and create nothing.

use std::process::Output;
use std::time::Instant;

use crossterm::event::{KeyCode, KeyEvent, KeyModifiers};
use cutover::control::audit::Actor;
use cutover::db::{self, DbConfig, SessionSettings};
use cutover::engine::{self, RunOptions};
use cutover::plan::{Phase, Plan};
use cutover::tui::app::{Action, App, CONFIRM_ARMING};
use cutover::tui::view::Overlay;
use cutover::worker::command::{self, Env};
use cutover::worker::{ConnState, WorkerEvent};
use serde_json::Value;
use tokio_postgres::Client;

use crate::common::{cutover, text, TestDb};

const PLAN: &str = "plans/accounts-balance-cents.toml";

/// Records every DDL statement the server runs, exactly as its client sent it.
const CAPTURE_DDL: &str = "
CREATE TABLE public.ddl_seen (id bigserial PRIMARY KEY, query text NOT NULL);
CREATE FUNCTION public.ddl_seen_record() RETURNS event_trigger LANGUAGE plpgsql AS $$
BEGIN
    INSERT INTO public.ddl_seen (query) VALUES (current_query());
END $$;
CREATE EVENT TRIGGER ddl_seen ON ddl_command_end EXECUTE FUNCTION public.ddl_seen_record();
";

fn code(o: &Output) -> i32 {
    o.status.code().unwrap_or(-1)
}

#[track_caller]
fn ok(o: &Output) -> String {
    assert_eq!(code(o), 0, "expected success, got:\n{}", text(o));
    String::from_utf8_lossy(&o.stdout).into_owned()
}

async fn engine_client(url: &str) -> Client {
    let cfg = DbConfig::from_url(url).unwrap();
    let mut c = db::connect(&cfg, &SessionSettings::new("test"))
        .await
        .unwrap();
    cutover::control::schema::bootstrap(&mut c).await.unwrap();
    c
}

/// The control state a rollback would change: phase states, flags and the audit log's length.
async fn control_state(c: &Client) -> String {
    c.query_one(
        "SELECT concat_ws(' | ',
           (SELECT string_agg(phase || '=' || state, ',' ORDER BY phase) FROM cutover.phases),
           (SELECT string_agg(name || '=' || enabled, ',' ORDER BY name) FROM cutover.flags),
           (SELECT count(*)::text FROM cutover.audit_log))",
        &[],
    )
    .await
    .unwrap()
    .get(0)
}

async fn ddl_seen(c: &Client) -> Vec<String> {
    c.query("SELECT query FROM public.ddl_seen ORDER BY id", &[])
        .await
        .unwrap()
        .iter()
        .map(|r| r.get(0))
        .collect()
}

fn key(c: char) -> KeyEvent {
    KeyEvent::new(KeyCode::Char(c), KeyModifiers::NONE)
}

#[tokio::test]
async fn the_rollback_box_shows_exactly_the_statements_the_server_runs() {
    let db = TestDb::new().await;
    db.exec(&std::fs::read_to_string("assets/demo/schema.sql").unwrap())
        .await;
    let mut c = engine_client(&db.url).await;
    let plan = Plan::load(PLAN).unwrap();
    let actor = Actor::current(&c).await.unwrap();
    for phase in [Phase::Expand, Phase::DualWrite] {
        engine::override_gate(
            &mut c,
            &plan,
            &actor,
            phase,
            "test: gates are not under test",
        )
        .await
        .unwrap();
        engine::apply_phase(&mut c, &plan, &actor, phase, &RunOptions::default())
            .await
            .unwrap();
    }
    db.exec(CAPTURE_DDL).await;
    let before = control_state(&c).await;

    // The dry run prints the plan (text and JSON), exits 0 and changes nothing.
    let o = cutover(
        &db.url,
        &[
            "rollback",
            PLAN,
            "--phase",
            "dual_write",
            "--dry-run",
            "--json",
        ],
    )
    .await;
    let dry: Value = serde_json::from_str(&ok(&o)).unwrap();
    assert_eq!(dry["possible"], true, "{dry}");
    let text_run = ok(&cutover(
        &db.url,
        &["rollback", PLAN, "--phase", "dual_write", "--dry-run"],
    )
    .await);
    assert_eq!(
        control_state(&c).await,
        before,
        "a dry run changed the control state"
    );
    assert!(ddl_seen(&c).await.is_empty(), "a dry run ran DDL");

    // The TUI: `R` opens the red box on the live snapshot; `Y` sends the plan the box shows.
    let snapshot = cutover::worker::snapshot::load(&c, &plan).await.unwrap();
    let mut app = App::new(plan.clone(), "test".into(), false);
    app.on_worker(WorkerEvent::Conn(ConnState::Connected));
    app.on_worker(WorkerEvent::Snapshot(Box::new(snapshot)));
    let t0 = Instant::now();
    app.on_key(key('R'), t0);
    let Some(Overlay::ConfirmRollback(shown)) = app.view().ui.overlay else {
        panic!("R opens the rollback confirmation");
    };
    assert_eq!(shown.phase, Phase::DualWrite);
    assert_eq!(serde_json::to_value(&shown.plan).unwrap(), dry["plan"]);
    let shown_sql: Vec<String> = shown.plan.statements().map(str::to_string).collect();
    assert_eq!(shown_sql.len(), 2, "{:?}", shown.plan);
    for sql in &shown_sql {
        assert!(
            text_run.contains(sql.as_str()),
            "dry run misses `{sql}`:\n{text_run}"
        );
    }
    let Action::Send(cmd) = app.on_key(key('Y'), t0 + CONFIRM_ARMING) else {
        panic!("Y confirms");
    };
    let cfg = DbConfig::from_url(&db.url).unwrap();
    let done = command::execute(&mut c, &cfg, &plan, &Env::default(), &cmd)
        .await
        .unwrap();
    assert!(done.contains("rolled back dual_write"), "{done}");

    // The server ran the box's statements, exactly and only those, in order.
    assert_eq!(ddl_seen(&c).await, shown_sql);
    assert!(control_state(&c).await.contains("dual_write=rolled_back"));
}

#[tokio::test]
async fn a_confirmed_rollback_that_changed_meanwhile_is_refused() {
    let db = TestDb::new().await;
    db.exec(&std::fs::read_to_string("assets/demo/schema.sql").unwrap())
        .await;
    let mut c = engine_client(&db.url).await;
    let plan = Plan::load(PLAN).unwrap();
    let actor = Actor::current(&c).await.unwrap();
    engine::override_gate(
        &mut c,
        &plan,
        &actor,
        Phase::Expand,
        "test: gates are not under test",
    )
    .await
    .unwrap();
    engine::apply_phase(&mut c, &plan, &actor, Phase::Expand, &RunOptions::default())
        .await
        .unwrap();
    let Ok(mut seen) = engine::plan_rollback(&c, &plan, Some(Phase::Expand))
        .await
        .unwrap()
    else {
        panic!("expand is applied");
    };
    seen.steps.pop();
    let before = control_state(&c).await;
    let err = engine::rollback_confirmed(&mut c, &plan, &actor, &seen, &RunOptions::default())
        .await
        .unwrap_err();
    assert!(
        err.to_string().contains("changed since it was confirmed"),
        "{err}"
    );
    assert_eq!(control_state(&c).await, before);
}

/// Whether the control schema exists, and how many migrations it has registered.
async fn control_footprint(c: &Client) -> (bool, i64) {
    let exists: bool = c
        .query_one("SELECT to_regnamespace('cutover') IS NOT NULL", &[])
        .await
        .unwrap()
        .get(0);
    if !exists {
        return (false, 0);
    }
    let n: i64 = c
        .query_one("SELECT count(*) FROM cutover.migrations", &[])
        .await
        .unwrap()
        .get(0);
    (true, n)
}

#[tokio::test]
async fn status_answers_not_started_where_nothing_ran_and_creates_nothing() {
    let db = TestDb::new().await;
    let admin = db.client().await;
    for bootstrapped in [false, true] {
        if bootstrapped {
            ok(&cutover(&db.url, &["bootstrap"]).await);
        }
        let footprint = control_footprint(&admin).await;
        assert_eq!(footprint, (bootstrapped, 0));

        let o = cutover(&db.url, &["status", PLAN]).await;
        assert!(ok(&o).contains("not started"), "{}", text(&o));
        let o = cutover(&db.url, &["status", PLAN, "--json"]).await;
        let st: Value = serde_json::from_str(&ok(&o)).unwrap();
        assert_eq!(st["started"], false, "{st}");
        assert_eq!(st["registered"], false, "{st}");
        assert_eq!(st["next_phase"], "expand", "{st}");
        assert!(st["phases"]
            .as_array()
            .unwrap()
            .iter()
            .all(|p| p["state"] == "pending"));

        let o = cutover(&db.url, &["rollback", PLAN, "--dry-run"]).await;
        assert!(ok(&o).contains("nothing to roll back"), "{}", text(&o));

        assert_eq!(
            control_footprint(&admin).await,
            footprint,
            "a read created something (bootstrapped first: {bootstrapped})"
        );
    }
}
