//! A CDC plan driven through the engine on a cluster with logical decoding: contract drops the
//! slot and its publication while the applier runs (the applier then stops by itself), and so
//! does a rollback of the dual-write phase. No slot is left to retain WAL.

use std::time::Duration;

use cutover::cdc::apply::{self, ApplySummary};
use cutover::db::DbConfig;
use cutover::engine::{self, PhaseState, RunOptions};
use cutover::plan::Phase;
use cutover::throwaway::ThrowawayCluster;
use tokio::sync::watch;
use tokio::task::JoinHandle;

use crate::common::lifecycle::{Lifecycle, LifecycleRun};
use crate::common::plans::PlanToml;

const SCHEMA: &str = "
CREATE TABLE public.items (id bigserial PRIMARY KEY, n integer NOT NULL DEFAULT 0, note text);
INSERT INTO public.items (n, note) SELECT g, 'row ' || g FROM generate_series(1, 2000) g;";

fn plan(id: &str) -> PlanToml {
    PlanToml::new(id)
        .role("data_owner", "postgres")
        .phase(
            Phase::Expand,
            "CREATE TABLE public.items_v2 (legacy_id bigint PRIMARY KEY, n2 integer NOT NULL, note text)",
            "DROP TABLE public.items_v2",
        )
        .phase(Phase::Contract, "DROP TABLE public.items", "")
        .with(
            r#"[backfill]
mode = "copy"
table = "public.items"
key = ["id"]
into = "public.items_v2"
target_key = ["legacy_id"]
columns = { legacy_id = "id", n2 = "n * 2", note = "note" }

[dual_write]
mode = "cdc"
"#,
        )
}

/// A cluster of the test's own with `wal_level = logical` (slots are cluster-wide).
async fn logical_cluster() -> ThrowawayCluster {
    crate::common::logical_cluster().await
}

/// Replication slots and publications in the cluster's database.
async fn leftovers(run: &LifecycleRun) -> (i64, i64) {
    let slots = run
        .db
        .scalar("SELECT count(*) FROM pg_replication_slots")
        .await;
    let publications = run.db.scalar("SELECT count(*) FROM pg_publication").await;
    (slots, publications)
}

/// The running applier, and the sender that would stop it (it must stop on its own here).
type Applier = (
    JoinHandle<Result<ApplySummary, cutover::cdc::CdcError>>,
    watch::Sender<bool>,
);

/// Applies expand, dual_write and backfill, runs the copy (which creates the slot), starts the
/// applier and waits until it has applied a write of the application.
async fn streaming(run: &mut LifecycleRun) -> Applier {
    for phase in [Phase::Expand, Phase::DualWrite, Phase::Backfill] {
        run.apply(phase).await;
    }
    run.run_backfill().await;
    assert_eq!(
        leftovers(run).await,
        (1, 1),
        "the copy creates a slot and a publication"
    );
    let cfg = DbConfig::from_url(&run.db.db.url).unwrap();
    let (stop, shutdown) = watch::channel(false);
    let applier = tokio::spawn(apply::run(
        cfg,
        run.db.plan.clone(),
        apply::ApplyOptions {
            poll: Duration::from_millis(50),
            ..apply::ApplyOptions::default()
        },
        shutdown,
    ));
    run.db
        .exec("INSERT INTO public.items (n, note) VALUES (7, 'after the copy')")
        .await;
    let deadline = std::time::Instant::now() + Duration::from_secs(60);
    loop {
        let seen: i64 = run
            .db
            .scalar(
                "SELECT count(*) FROM public.items_v2 WHERE note = 'after the copy' AND n2 = 14",
            )
            .await;
        if seen == 1 {
            break;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "the applier did not apply the insert"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    (applier, stop)
}

/// The applier stops by itself, successfully, once its slot is dropped.
async fn stops_by_itself((applier, _never_sent): Applier) {
    let summary = tokio::time::timeout(Duration::from_secs(60), applier)
        .await
        .expect("the applier kept running after its slot was dropped")
        .unwrap()
        .unwrap();
    assert!(summary.slot_dropped, "{summary:?}");
    assert!(summary.changes >= 1, "{summary:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn contract_of_a_cdc_plan_leaves_no_slot_while_the_applier_runs() {
    let cluster = logical_cluster().await;
    let mut run = Lifecycle::new(plan("cdc-contract"))
        .on_server(&cluster.url())
        .schema(SCHEMA)
        .start()
        .await;
    let applier = streaming(&mut run).await;
    run.apply(Phase::ReadSwitch).await;
    run.apply(Phase::Contract).await;
    assert_eq!(
        leftovers(&run).await,
        (0, 0),
        "contract left a slot or a publication"
    );
    let rows: i64 = run.db.scalar("SELECT count(*) FROM cutover.cdc").await;
    assert_eq!(rows, 0);
    stops_by_itself(applier).await;
    run.finish().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rollback_of_a_cdc_dual_write_leaves_no_slot_while_the_applier_runs() {
    let cluster = logical_cluster().await;
    let mut run = Lifecycle::new(plan("cdc-rollback"))
        .on_server(&cluster.url())
        .schema(SCHEMA)
        .start()
        .await;
    let applier = streaming(&mut run).await;
    let plan = run.db.plan.clone();
    let r = engine::rollback(
        &mut run.engine,
        &plan,
        &run.actor,
        Some(Phase::DualWrite),
        &RunOptions::default(),
    )
    .await
    .unwrap();
    let order: Vec<Phase> = r.rolled_back.iter().map(|p| p.phase).collect();
    assert_eq!(
        order,
        vec![Phase::Backfill, Phase::DualWrite],
        "{}",
        r.message
    );
    run.assert_state(Phase::DualWrite, PhaseState::RolledBack)
        .await;
    assert_eq!(
        leftovers(&run).await,
        (0, 0),
        "the rollback left a slot or a publication"
    );
    stops_by_itself(applier).await;
    run.finish().await;
}
