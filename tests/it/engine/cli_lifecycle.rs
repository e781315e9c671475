//! The demo plan's whole lifecycle through the CLI, gates passed the way an operator passes
//! them: as a superuser (with the rehearsal, the report and the audit), on a quiet database (the
//! error budget holds without an override), and as a non-superuser owner watched by a viewer.

use std::time::{Duration, Instant};

use cutover::plan::{Phase, Plan};
use cutover::throwaway::{ClusterOptions, ThrowawayCluster};
use serde_json::Value;
use tokio_postgres::Client;

use super::demo_db;
use crate::common::catalog::{data_fingerprint, Catalog};
use crate::common::plans::{demo_held_by, write, DEMO_PLAN};
use crate::common::{self, code, cutover, ok, override_gate, signoff, status_json, text, TestDb};

/// As an operator: signs off every role the gate of `phase` requires and runs its checks, each
/// of which must pass.
async fn prepare_gate(url: &str, plan: &str, phase: Phase) {
    let p = Plan::load(plan).unwrap();
    let gate = p.gate(phase);
    for role in &gate.signoffs {
        ok(&signoff(url, plan, phase.as_str(), role.as_str()).await);
    }
    for check in &gate.checks {
        let o = cutover(url, &["check", plan, "--name", check]).await;
        assert_eq!(
            code(&o),
            0,
            "check {check} must pass before {phase}:\n{}",
            text(&o)
        );
    }
}

/// Makes the next phase's gate pass the way an operator would: sign off every required role, run
/// the gate's checks with `cutover check`, and wait out the observation window. Every probe and
/// sign-off must pass for real; the only override is for an error budget that cannot measure
/// latency because the server lacks pg_stat_statements.
async fn pass_gate(url: &str, plan: &str, phase: Phase) {
    prepare_gate(url, plan, phase).await;
    let deadline = Instant::now() + Duration::from_secs(15);
    let mut overridden_budget = false;
    loop {
        // `status` judges recorded probe results; `probe` (an operator) records fresh ones.
        cutover(url, &["probe", plan]).await;
        let st = status_json(url, plan).await;
        let g = &st["gate"];
        assert_eq!(g["phase"], phase.as_str());
        let pending: Vec<&Value> = g["items"]
            .as_array()
            .unwrap()
            .iter()
            .filter(|i| i["outcome"] != "pass")
            .collect();
        if pending.is_empty() {
            assert_eq!(g["passed"], true, "{g}");
            return;
        }
        // Without pg_stat_statements (a server that does not preload it) the budget cannot
        // measure the application's latency: the operator overrides, naming why.
        let unmeasurable = |i: &Value| {
            i["name"] == "error_budget"
                && i["outcome"] == "inconclusive"
                && i["detail"]
                    .as_str()
                    .is_some_and(|d| d.contains("pg_stat_statements is not available"))
        };
        if let Some(budget) = pending.iter().find(|i| unmeasurable(i)) {
            if !overridden_budget {
                let reason = format!(
                    "error budget not measurable here: {}",
                    budget["detail"].as_str().unwrap_or("")
                );
                eprintln!("gate {phase}: override — {reason}");
                ok(&override_gate(url, plan, phase.as_str(), &reason).await);
                overridden_budget = true;
                continue;
            }
            if g["passed"] == true {
                return;
            }
        }
        let only_observing = pending
            .iter()
            .all(|i| i["kind"] == "observe" || (overridden_budget && unmeasurable(i)));
        assert!(
            only_observing && Instant::now() < deadline,
            "gate {phase} does not pass: {pending:?}"
        );
        // "… (4.5s left)": sleep it out rather than poll (each evaluation runs the probes).
        let detail = pending
            .iter()
            .find(|i| i["kind"] == "observe")
            .and_then(|i| i["detail"].as_str())
            .unwrap_or("");
        let left: f64 = detail
            .rsplit_once('(')
            .and_then(|(_, t)| t.split_once("s left"))
            .and_then(|(n, _)| n.parse().ok())
            .unwrap_or(0.5);
        tokio::time::sleep(Duration::from_secs_f64(left + 0.2)).await;
    }
}

/// `cutover advance PLAN`, which must apply `phase`; after the backfill phase, the backfill
/// runs to the end.
async fn advance(url: &str, plan: &str, phase: Phase) {
    let o = cutover(url, &["advance", plan]).await;
    assert!(ok(&o).contains(&format!("{phase} applied")), "{}", text(&o));
    if phase == Phase::Backfill {
        ok(&cutover(url, &["backfill", "run", plan, "--report-every", "0"]).await);
    }
}

/// The hidden-reader census rightly names the demo's seed function as a reader of `balance`:
/// an operator removes that reader before the column is dropped.
const DROP_SEED_READER: &str = "DROP FUNCTION public.cutover_demo_seed(integer, integer, integer)";

/// On a database where only Cutover's operators run — rehearsal, lint simulation,
/// compatibility probe, checks, control writes — the contract gate's error budget holds without
/// an override: none of their transactions count as the application's. (Viewers write nothing,
/// so their transactions cannot be recorded and would count as the application's: in the
/// window this test runs no viewer command.)
#[tokio::test]
async fn quiet_database_reaches_contract_with_the_error_budget_holding() {
    let started = Instant::now();
    // On a private cluster without autovacuum: a worker visiting the database commits
    // transactions of its own there (on the catalogs the phases' DDL churns, or just listing
    // its tables), which count in `pg_stat_database` like any session's; on the shared server,
    // under the whole suite's load, 2 to 18 of them fell in the window.
    let cluster = ThrowawayCluster::start_with(&ClusterOptions {
        without_autovacuum: true,
        ..ClusterOptions::default()
    })
    .await
    .expect("throwaway cluster");
    let db = TestDb::demo_on(cluster.url(), 300, 20, 20).await;
    let url = db.url.as_str();
    // The seed function goes up front, so nothing but Cutover touches the database from here on.
    db.exec(DROP_SEED_READER).await;
    ok(&cutover(url, &["rehearse", DEMO_PLAN]).await);
    for phase in Phase::ALL {
        if phase != Phase::Contract {
            pass_gate(url, DEMO_PLAN, phase).await;
        } else {
            // In the window after the read switch Cutover rolls back transactions of its own:
            // rehearsal, lint simulation and the compatibility probe.
            cutover(url, &["rehearse", DEMO_PLAN]).await;
            for gate in ["expand", "dual_write"] {
                cutover(url, &["probe", DEMO_PLAN, "--gate", gate]).await;
            }
            prepare_gate(url, DEMO_PLAN, phase).await;
            let observe = Plan::load(DEMO_PLAN).unwrap().gate(phase).observe;
            tokio::time::sleep(observe.map(|d| d.0).unwrap_or_default()).await;
            let o = cutover(url, &["probe", DEMO_PLAN, "--gate", "contract", "--json"]).await;
            assert_eq!(
                code(&o),
                0,
                "the contract gate's probes must pass: {}",
                text(&o)
            );
            let results: Value = serde_json::from_slice(&o.stdout).unwrap();
            let budget = results
                .as_array()
                .unwrap()
                .iter()
                .find(|r| r["name"] == "error_budget")
                .unwrap()
                .clone();
            assert_eq!(budget["outcome"], "pass", "{budget}");
            let evidence = budget["evidence"].to_string();
            eprintln!("contract gate error budget: {budget}");
            assert!(
                evidence.contains("no application transactions in the window"),
                "{evidence}"
            );
            // Cutover's own work in the window (rehearsal, probes, checks, sign-offs) was left
            // out, and it was all the database counted.
            let numbers = |after: &str| -> Vec<i64> {
                evidence
                    .split(after)
                    .nth(1)
                    .unwrap_or("")
                    .split(' ')
                    .take(6)
                    .filter_map(|n| n.trim_end_matches(',').parse().ok())
                    .collect()
            };
            let own = numbers("left out as Cutover's own: ");
            assert!(own.len() == 3 && own[0] > 0 && own[1] > 0, "{evidence}");
            assert_eq!(numbers("the database counted "), own, "{evidence}");
        }
        advance(url, DEMO_PLAN, phase).await;
    }
    let st = status_json(url, DEMO_PLAN).await;
    assert_eq!(st["current_phase"], "contract", "{st}");
    eprintln!("quiet lifecycle took {:?}", started.elapsed());
}

#[tokio::test]
async fn demo_plan_runs_its_whole_lifecycle_through_the_cli() {
    let started = Instant::now();
    let db = demo_db().await;
    let url = db.url.as_str();
    let client = db.client().await;

    // Rehearsal first: every phase applied and rolled back in a transaction that is thrown away.
    let pristine = Catalog(&client).fingerprint().await;
    let o = cutover(url, &["rehearse", DEMO_PLAN]).await;
    let out = ok(&o);
    assert!(
        out.contains("takes public.accounts AccessExclusiveLock"),
        "{out}"
    );
    assert!(
        out.contains("catalog restored") && !out.contains("NOT RESTORED"),
        "{out}"
    );
    assert!(out.contains("contract is irreversible"), "{out}");
    assert_eq!(
        Catalog(&client).fingerprint().await,
        pristine,
        "a rehearsal must leave nothing behind"
    );
    let st = status_json(url, DEMO_PLAN).await;
    let reversibility = st["scorecard"]["categories"]
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["name"] == "Reversibility")
        .unwrap()
        .clone();
    let rehearsal = reversibility["evidence"]
        .as_array()
        .unwrap()
        .iter()
        .find(|e| e["name"] == "rehearsal")
        .unwrap();
    assert_eq!(rehearsal["outcome"], "pass", "{rehearsal}");
    assert!(rehearsal["detail"]
        .as_str()
        .unwrap()
        .contains("rollback tested and timed"));

    // Nothing signed yet: advance is blocked, says why, and changes nothing.
    let o = cutover(url, &["advance", DEMO_PLAN]).await;
    assert_eq!(code(&o), 2, "{}", text(&o));
    assert!(
        text(&o).contains("missing sign-off by lead"),
        "{}",
        text(&o)
    );

    for phase in Phase::ALL {
        if phase == Phase::Contract {
            db.exec(DROP_SEED_READER).await;
        }
        pass_gate(url, DEMO_PLAN, phase).await;
        advance(url, DEMO_PLAN, phase).await;
        if phase == Phase::Backfill {
            let pending: i64 = client
                .query_one(
                    "SELECT count(*) FROM public.accounts WHERE balance_cents IS NULL",
                    &[],
                )
                .await
                .unwrap()
                .get(0);
            assert_eq!(pending, 0, "the backfill left rows behind");
        }
        if phase == Phase::ReadSwitch {
            let o = cutover(url, &["flag", "get", "accounts.read_balance_cents"]).await;
            assert_eq!(ok(&o).trim(), "on");
            app_traffic(&client).await;
        }
    }

    let st = status_json(url, DEMO_PLAN).await;
    for p in st["phases"].as_array().unwrap() {
        assert_eq!(p["state"], "applied", "{p}");
    }
    assert_eq!(st["current_phase"], "contract");
    let catalog = Catalog(&client);
    catalog
        .assert_column("public.accounts", "balance_cents", "bigint", true)
        .await;
    catalog.assert_no_column("public.accounts", "balance").await;

    // Contract cannot be undone, and says why.
    let o = cutover(url, &["rollback", DEMO_PLAN, "--yes"]).await;
    assert_eq!(code(&o), 3, "{}", text(&o));
    assert!(text(&o).contains("irreversible"), "{}", text(&o));

    let o = cutover(url, &["advance", DEMO_PLAN]).await;
    assert!(ok(&o).contains("nothing to do"));
    ok(&cutover(url, &["note", DEMO_PLAN, "cutover complete"]).await);
    let o = cutover(url, &["audit", "verify"]).await;
    assert!(ok(&o).contains("intact"), "{}", text(&o));

    let dir = tempfile::tempdir().unwrap();
    ok(&cutover(
        url,
        &["report", DEMO_PLAN, "--out", dir.path().to_str().unwrap()],
    )
    .await);
    let md = std::fs::read_to_string(dir.path().join("accounts-balance-cents-report.md")).unwrap();
    for needle in [
        "## Phases",
        "## Timeline",
        "## Sign-offs and overrides",
        "## Check history",
        "## Notes",
        "cutover complete",
        "signed as lead by postgres",
        "throttle",
    ] {
        assert!(md.contains(needle), "report lacks `{needle}`:\n{md}");
    }
    let json: Value = serde_json::from_str(
        &std::fs::read_to_string(dir.path().join("accounts-balance-cents-report.json")).unwrap(),
    )
    .unwrap();
    assert_eq!(json["phases"].as_array().unwrap().len(), 5);
    assert!(json["phases"]
        .as_array()
        .unwrap()
        .iter()
        .all(|p| p["state"] == "applied" && p["apply_ms"].is_i64()));
    assert!(json["timeline"].as_array().unwrap().len() >= 10);
    assert_eq!(json["rehearsals"][0]["ok"], true);
    assert!(json["audit"].as_str().unwrap().starts_with("intact"));
    eprintln!("lifecycle through the CLI took {:?}", started.elapsed());
}

/// The application keeps reading and writing during the observation window after the read
/// switch (the error budget compares its transactions with the baseline taken before it).
async fn app_traffic(client: &Client) {
    let read = client
        .prepare("SELECT balance_cents FROM public.accounts WHERE id = $1")
        .await
        .unwrap();
    let touch = client
        .prepare("UPDATE public.accounts SET updated_at = now() WHERE id = $1")
        .await
        .unwrap();
    for id in 1..=300i64 {
        client.query(&read, &[&id]).await.unwrap();
        client.execute(&touch, &[&id]).await.unwrap();
    }
}

#[tokio::test]
async fn a_non_superuser_owner_runs_the_lifecycle_and_a_viewer_with_the_printed_grants_sees_it() {
    let db = demo_db().await;
    let (owner, as_owner) = db.bare_login("cutover_owner").await;
    let (viewer, as_viewer) = db.bare_login("cutover_viewer").await;
    let admin = db.client().await;
    // The application's objects belong to a non-superuser, who also owns the database.
    admin
        .batch_execute(&format!(
            "DO $$ DECLARE r record; BEGIN
               FOR r IN SELECT format('%I.%I', schemaname, tablename) AS t FROM pg_tables
                         WHERE schemaname = 'public' LOOP
                 EXECUTE format('ALTER TABLE %s OWNER TO {owner}', r.t);
               END LOOP;
               FOR r IN SELECT p.oid::regprocedure::text AS f FROM pg_proc p
                         WHERE p.pronamespace = 'public'::regnamespace
                           AND NOT EXISTS (SELECT 1 FROM pg_depend d WHERE d.objid = p.oid AND d.deptype = 'e') LOOP
                 EXECUTE format('ALTER FUNCTION %s OWNER TO {owner}', r.f);
               END LOOP;
             END $$;
             ALTER DATABASE {db} OWNER TO {owner};
             ALTER SCHEMA public OWNER TO {owner};",
            db = common::quote_ident(&db.name)
        ))
        .await
        .unwrap();
    let dir = tempfile::tempdir().unwrap();
    let plan = write(dir.path(), "owner.toml", &demo_held_by(&owner));
    let plan = plan.to_str().unwrap();

    // The operator creates the control schema; the DBA runs the printed grants.
    ok(&cutover(&as_owner, &["bootstrap"]).await);
    let script = ok(&cutover(
        &db.url,
        &[
            "grants",
            plan,
            "--operator",
            &owner,
            "--viewer",
            &viewer,
            "--database",
            &db.name,
        ],
    )
    .await);
    admin.batch_execute(&script).await.unwrap();

    // A viewer with exactly those grants sees an unregistered plan and changes nothing.
    let o = cutover(&as_viewer, &["status", plan]).await;
    assert!(ok(&o).contains("not registered yet"), "{}", text(&o));

    for phase in Phase::ALL {
        if phase == Phase::Contract {
            db.exec(DROP_SEED_READER).await;
        }
        pass_gate(&as_owner, plan, phase).await;
        advance(&as_owner, plan, phase).await;
        if phase == Phase::ReadSwitch {
            app_traffic(&admin).await;
        }
    }

    let before = data_fingerprint(&admin, &["cutover"]).await;
    for args in [
        vec!["status", plan],
        vec!["status", plan, "--json"],
        vec!["audit", "verify"],
        vec!["audit", "tail", "-n", "5"],
        vec!["audit", "export", "--format", "jsonl"],
        vec!["runbook", plan],
        vec!["backfill", "status", plan],
        vec!["check", plan, "--history"],
    ] {
        let o = cutover(&as_viewer, &args).await;
        assert_eq!(code(&o), 0, "viewer `{}`: {}", args.join(" "), text(&o));
    }
    let st = status_json(&as_viewer, plan).await;
    assert_eq!(st["phases"][4]["state"], "applied", "{}", st["phases"]);
    // A viewer may not act, and the refusal does not need write access to be a refusal.
    let o = cutover(&as_viewer, &["note", plan, "hello"]).await;
    assert_ne!(code(&o), 0, "{}", text(&o));
    assert_eq!(
        before,
        data_fingerprint(&admin, &["cutover"]).await,
        "a viewer changed the control schema"
    );
}
