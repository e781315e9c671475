//! Gates: sign-offs checked against the roster, sign-offs voided by a plan edit, a check run
//! before the previous phase that does not count, a freeze, and the same verdicts in
//! `status --json` and the TUI's snapshot.

use cutover::control::audit::Actor;
use cutover::engine;
use cutover::plan::{Phase, Plan, Role};
use serde_json::Value;
use tokio_postgres::Client;

use super::demo_db;
use crate::common::plans::{demo_plan, demo_variant, demo_with, write, DEMO_PLAN};
use crate::common::{self, code, cutover, ok, override_gate, signoff, status_json, text, TestDb};

/// A LOGIN role with the privileges the CLI needs on the control schema; dropped by [`drop_role`].
async fn login_role(db: &TestDb, admin: &Client, prefix: &str) -> (String, String) {
    let name = format!("{prefix}_{:08x}", rand::random::<u32>());
    admin
        .batch_execute(&format!(
            "CREATE ROLE {name} LOGIN;
             GRANT CREATE ON DATABASE {} TO {name};
             GRANT USAGE, CREATE ON SCHEMA cutover TO {name};
             GRANT ALL ON ALL TABLES IN SCHEMA cutover TO {name};
             GRANT ALL ON ALL SEQUENCES IN SCHEMA cutover TO {name};",
            common::quote_ident(&db.name)
        ))
        .await
        .unwrap();
    let mut url = url::Url::parse(&db.url).unwrap();
    url.set_username(&name).unwrap();
    url.set_password(None).unwrap();
    (name, url.to_string())
}

async fn drop_role(admin: &Client, name: &str) {
    admin
        .batch_execute(&format!("DROP OWNED BY {name}; DROP ROLE {name}"))
        .await
        .unwrap();
}

#[tokio::test]
async fn signoff_is_refused_outside_the_roster_and_accepted_for_the_holder() {
    let db = demo_db().await;
    let admin = db.control_client().await;
    let (outsider, outsider_url) = login_role(&db, &admin, "cutover_outsider").await;
    let (signer, signer_url) = login_role(&db, &admin, "cutover_signer").await;
    let dir = tempfile::tempdir().unwrap();
    let plan = demo_variant(
        dir.path(),
        "roster.toml",
        &[(
            "data_owner = [\"postgres\"]",
            &format!("data_owner = [\"{signer}\"]"),
        )],
    );
    let plan = plan.to_str().unwrap();

    let o = signoff(&outsider_url, plan, "backfill", "data_owner").await;
    assert_eq!(code(&o), 3, "{}", text(&o));
    assert!(
        text(&o).contains(&format!(
            "login `{outsider}` does not hold role `data_owner`"
        )),
        "{}",
        text(&o)
    );
    // postgres holds other roles but not data_owner in this plan.
    let o = signoff(&db.url, plan, "backfill", "data_owner").await;
    assert_eq!(code(&o), 3, "{}", text(&o));

    let o = signoff(&signer_url, plan, "backfill", "data_owner").await;
    ok(&o);
    let rows = admin
        .query(
            "SELECT login, os_user, host, role FROM cutover.signoffs",
            &[],
        )
        .await
        .unwrap();
    assert_eq!(rows.len(), 1);
    assert_eq!(rows[0].get::<_, String>(0), signer);
    assert!(!rows[0].get::<_, String>(1).is_empty() && !rows[0].get::<_, String>(2).is_empty());
    let refused: i64 = admin
        .query_one("SELECT count(*) FROM cutover.audit_log WHERE action = 'signoff.refused' AND login = $1", &[&outsider])
        .await
        .unwrap()
        .get(0);
    assert_eq!(refused, 1, "the refusal is on the audit trail");

    // One person may hold several roles: postgres is lead and sre in the demo plan — once the
    // lead of the anchored roster (postgres) approves the demo plan's roster.
    let mut c = db.control_client().await;
    let demo = demo_plan();
    let actor = Actor::current(&c).await.unwrap();
    cutover::control::anchors::approve(&mut c, &demo, &actor)
        .await
        .unwrap();
    for role in ["lead", "sre"] {
        engine::signoff(
            &mut c,
            &demo,
            &actor,
            Phase::Contract,
            &Role(role.into()),
            "",
        )
        .await
        .unwrap();
    }
    drop(c);
    drop_role(&admin, &outsider).await;
    drop_role(&admin, &signer).await;
}

#[tokio::test]
async fn editing_the_plan_voids_earlier_signoffs() {
    let db = demo_db().await;
    let url = db.url.as_str();
    let dir = tempfile::tempdir().unwrap();
    let original = demo_variant(dir.path(), "plan.toml", &[]);
    let original = original.to_str().unwrap();
    ok(&signoff(url, original, "expand", "lead").await);
    let st = status_json(url, original).await;
    assert_eq!(st["signoffs"][0]["valid"], true);

    // The same plan id, one edited line.
    let edited = demo_variant(
        dir.path(),
        "plan-edited.toml",
        &[("lock_timeout = \"2s\"", "lock_timeout = \"1s\"")],
    );
    let edited = edited.to_str().unwrap();
    let st = status_json(url, edited).await;
    assert_eq!(st["plan_changed"], true);
    assert_eq!(st["signoffs"][0]["valid"], false);
    assert_eq!(
        st["signoffs"][0]["note"],
        "void: plan changed since sign-off"
    );
    let lead = st["gate"]["items"]
        .as_array()
        .unwrap()
        .iter()
        .find(|i| i["kind"] == "signoff" && i["name"] == "lead")
        .unwrap();
    assert_ne!(lead["outcome"], "pass");
    assert!(lead["detail"]
        .as_str()
        .unwrap()
        .contains("plan changed since sign-off"));
    let o = cutover(url, &["status", edited]).await;
    assert!(ok(&o).contains("void: plan changed since sign-off"));

    // Even an override given for the old version no longer counts.
    ok(&override_gate(url, original, "expand", "lint unavailable").await);
    let o = cutover(url, &["advance", edited]).await;
    assert_eq!(code(&o), 2, "{}", text(&o));
    assert!(
        text(&o).contains("plan changed since sign-off"),
        "{}",
        text(&o)
    );

    // Signing again binds to the new version.
    ok(&signoff(url, edited, "expand", "lead").await);
    let st = status_json(url, edited).await;
    assert_eq!(st["signoffs"][1]["valid"], true);
}

#[tokio::test]
async fn a_check_run_before_the_previous_phase_does_not_count_and_a_freeze_blocks() {
    let db = demo_db().await;
    let url = db.url.as_str();
    let dir = tempfile::tempdir().unwrap();
    let mut source = demo_with(&[(
        "[gates.dual_write]\n",
        "[gates.dual_write]\nchecks = [\"no-phantom-accounts\"]\n",
    )]);
    source.push_str(
        "\n[[checks]]\nname = \"no-phantom-accounts\"\nkind = \"invariant\"\nsql = \"SELECT count(*) FROM public.accounts WHERE id < 0\"\nexpect = 0\n",
    );
    let path = write(dir.path(), "stale.toml", &source);
    let plan = path.to_str().unwrap();

    // Run the check before expand is applied: it passes, but it is stale for dual_write's gate.
    ok(&cutover(url, &["check", plan, "--name", "no-phantom-accounts"]).await);
    ok(&override_gate(url, plan, "expand", "test: not under test").await);
    ok(&cutover(url, &["advance", plan, "--phase", "expand"]).await);
    let st = status_json(url, plan).await;
    let item = st["gate"]["items"]
        .as_array()
        .unwrap()
        .iter()
        .find(|i| i["kind"] == "check")
        .unwrap()
        .clone();
    assert_eq!(item["outcome"], "inconclusive", "{item}");
    assert!(
        item["detail"].as_str().unwrap().starts_with("stale"),
        "{item}"
    );
    ok(&cutover(url, &["check", plan, "--name", "no-phantom-accounts"]).await);
    let st = status_json(url, plan).await;
    let item = st["gate"]["items"]
        .as_array()
        .unwrap()
        .iter()
        .find(|i| i["kind"] == "check")
        .unwrap()
        .clone();
    assert_eq!(item["outcome"], "pass", "{item}");

    // A freeze in force blocks every phase, and an override does not lift the order rule.
    let frozen = source.replacen(
        "heavy_work = []",
        "heavy_work = []\nfreeze = [{ from = \"2000-01-01T00:00:00Z\", to = \"2999-01-01T00:00:00Z\", reason = \"year-end close\" }]",
        1,
    );
    let frozen_path = write(dir.path(), "frozen.toml", &frozen);
    let o = cutover(url, &["advance", frozen_path.to_str().unwrap()]).await;
    assert_eq!(code(&o), 2, "{}", text(&o));
    assert!(
        text(&o).contains("freeze in force: ") && text(&o).contains("year-end close"),
        "{}",
        text(&o)
    );
    let o = cutover(url, &["advance", plan, "--phase", "backfill"]).await;
    assert_eq!(code(&o), 3, "{}", text(&o));
    assert!(
        text(&o).contains("dual_write is not applied yet"),
        "{}",
        text(&o)
    );
}

/// The verdicts `cutover status --json` prints and the TUI worker's snapshot carries, reduced to
/// what an operator acts on; digits in blockers are blanked (ages and elapsed times tick between
/// the two reads).
fn verdicts(status: &Value) -> Value {
    let blank = |s: &str| {
        s.chars()
            .filter(|c| !c.is_ascii_digit())
            .collect::<String>()
    };
    let gate = &status["gate"];
    serde_json::json!({
        "next": status["next_phase"],
        "gate": gate["phase"],
        "outcome": gate["outcome"],
        "passed": gate["passed"],
        "verdict": gate["verdict"],
        "items": gate["items"].as_array().map(|items| items
            .iter()
            .map(|i| serde_json::json!([i["kind"], i["name"], i["outcome"]]))
            .collect::<Vec<_>>()),
        "blockers": gate["blockers"].as_array().map(|b| b
            .iter()
            .map(|x| blank(x.as_str().unwrap_or_default()))
            .collect::<Vec<_>>()),
        "scorecard": status["scorecard"]["categories"].as_array().map(|c| c
            .iter()
            .map(|c| serde_json::json!([c["kind"], c["outcome"]]))
            .collect::<Vec<_>>()),
        "ready": status["scorecard"]["ready"],
        "rollback": status["rollback"],
    })
}

#[tokio::test]
async fn status_json_and_the_tui_snapshot_give_the_same_verdicts() {
    let db = demo_db().await;
    let url = db.url.as_str();
    let plan = Plan::load(DEMO_PLAN).unwrap();
    let client = db.control_client().await;
    let compare = |label: &'static str| {
        let client = &client;
        let plan = &plan;
        async move {
            let cli = status_json(url, DEMO_PLAN).await;
            let snap = cutover::worker::snapshot::load(client, plan).await.unwrap();
            let tui = serde_json::to_value(&snap.status).unwrap();
            assert_eq!(verdicts(&cli), verdicts(&tui), "state `{label}`");
            cli
        }
    };

    // 1. Registered by a blocked advance: nothing applied, nothing signed.
    assert_eq!(code(&cutover(url, &["advance", DEMO_PLAN]).await), 2);
    let st = compare("registered").await;
    assert_eq!(st["gate"]["passed"], false);
    assert_ne!(st["gate"]["verdict"], "pass");

    // 2. The lead signed, the lint probe recorded: the expand gate passes.
    ok(&signoff(url, DEMO_PLAN, "expand", "lead").await);
    cutover(url, &["probe", DEMO_PLAN]).await;
    let st = compare("expand ready").await;
    assert_eq!(st["gate"]["passed"], true, "{}", st["gate"]);
    assert_eq!(st["gate"]["verdict"], "pass");

    // 3. Expand applied: the dual_write gate has not been probed since.
    ok(&cutover(url, &["advance", DEMO_PLAN]).await);
    let st = compare("expand applied").await;
    assert_eq!(st["next_phase"], "dual_write");
    assert_eq!(st["rollback"]["phase"], "expand");

    // 4. A probe result recorded, then the phase it judged changed: stale in both.
    cutover(url, &["probe", DEMO_PLAN]).await;
    ok(&cutover(url, &["rollback", DEMO_PLAN, "--yes"]).await);
    let st = compare("expand rolled back").await;
    assert_eq!(st["next_phase"], "expand");
    let lead = st["gate"]["items"]
        .as_array()
        .unwrap()
        .iter()
        .find(|i| i["kind"] == "signoff")
        .unwrap();
    assert!(
        lead["detail"].as_str().unwrap().contains("was rolled back"),
        "a rollback voids the sign-offs of the gate it reverses: {lead}"
    );

    // 5. A break-glass override in force.
    ok(&override_gate(url, DEMO_PLAN, "expand", "verdict test").await);
    let st = compare("overridden").await;
    assert_eq!(st["gate"]["passed"], true);
    assert_eq!(st["gate"]["verdict"], "overridden");
    assert!(st["gate"]["overridden"].is_object());

    // 6. A phase left `applying` by a killed process: interrupted in both.
    client
        .execute(
            "UPDATE cutover.phases SET state = 'applying' WHERE plan_id = $1 AND phase = 'expand'",
            &[&plan.id()],
        )
        .await
        .unwrap();
    let st = compare("interrupted").await;
    let expand = &st["phases"][0];
    assert!(
        expand["note"].as_str().unwrap().starts_with("interrupted"),
        "{expand}"
    );
    let text = text(&cutover(url, &["status", DEMO_PLAN]).await);
    assert!(text.contains("interrupted"), "{text}");
}
