//! Rollbacks restore the catalog: the demo plan driven through the lifecycle harness (each
//! phase applied, rolled back and applied again, then all rolled back at once), a busy plan
//! whose read switch still flips off at once, and a concurrent index build that failed halfway.

use cutover::control::audit::Actor;
use cutover::engine::{self, EngineError, PhaseState, RunOptions};
use cutover::plan::{Phase, Plan};

use super::demo_db;
use crate::common::catalog::Catalog;
use crate::common::lifecycle::{Lifecycle, LifecycleDb, Stage};
use crate::common::plans::{demo_plan, demo_with, PlanToml};

const FLAG: &str = "accounts.read_balance_cents";

/// The demo plan on the demo schema (300 accounts).
fn demo_lifecycle() -> Lifecycle {
    Lifecycle::of(demo_plan())
        .schema(include_str!("../../../assets/demo/schema.sql"))
        .schema("SELECT cutover_demo_seed(300, 20, 20)")
}

async fn flag_on(db: &LifecycleDb) -> bool {
    engine::get_flag(&db.client, FLAG)
        .await
        .unwrap()
        .is_some_and(|f| f.enabled)
}

#[tokio::test]
async fn demo_plan_applies_rolls_back_and_reapplies_every_phase_then_contracts() {
    let db = demo_lifecycle()
        .after(Stage::Applied(Phase::Expand), async |db| {
            let catalog = db.catalog();
            catalog
                .assert_column("public.accounts", "balance_cents", "bigint", true)
                .await;
        })
        .after(Stage::RolledBack(Phase::Expand), async |db| {
            db.catalog()
                .assert_no_column("public.accounts", "balance_cents")
                .await;
        })
        .after(Stage::Applied(Phase::DualWrite), async |db| {
            let catalog = db.catalog();
            catalog
                .assert_trigger("public.accounts", "accounts_balance_cents_sync", true)
                .await;
            catalog
                .assert_function("public.accounts_balance_cents_sync", true)
                .await;
            // A write in dollars is mirrored in cents.
            let cents: i64 = db
                .scalar(
                    "INSERT INTO public.accounts (owner, balance) VALUES ('dual-write', 12.34)
                     RETURNING balance_cents",
                )
                .await;
            assert_eq!(cents, 1234);
        })
        .after(Stage::RolledBack(Phase::DualWrite), async |db| {
            let catalog = db.catalog();
            catalog
                .assert_trigger("public.accounts", "accounts_balance_cents_sync", false)
                .await;
            catalog
                .assert_function("public.accounts_balance_cents_sync", false)
                .await;
        })
        .after(Stage::Applied(Phase::Backfill), async |db| {
            let pending: i64 = db
                .scalar("SELECT count(*) FROM public.accounts WHERE balance_cents IS NULL")
                .await;
            assert_eq!(pending, 0, "the backfill left rows behind");
        })
        .after(Stage::Applied(Phase::ReadSwitch), async |db| {
            assert!(flag_on(db).await, "the read switch is on");
        })
        .after(Stage::RolledBack(Phase::ReadSwitch), async |db| {
            assert!(
                !flag_on(db).await,
                "rolling back the read switch turns it off"
            );
        })
        .after(Stage::Applied(Phase::Contract), async |db| {
            let catalog = db.catalog();
            catalog.assert_no_column("public.accounts", "balance").await;
            catalog
                .assert_trigger("public.accounts", "accounts_balance_cents_sync", false)
                .await;
            catalog
                .assert_column("public.accounts", "balance_cents", "bigint", true)
                .await;
        })
        .run_with_rollbacks()
        .await;
    let wrong: i64 = db
        .scalar("SELECT count(*) FROM public.accounts WHERE balance_cents IS NULL")
        .await;
    assert_eq!(wrong, 0);
}

/// A column added with a `NOT VALID` check, indexed concurrently, backfilled, then validated
/// and made `NOT NULL` by the contract: the catalog at every stage, on a plan built by the
/// fixture builder.
#[tokio::test]
async fn an_added_checked_indexed_column_survives_every_rollback_and_contracts() {
    let plan = PlanToml::new("items-sku")
        .role("data_owner", "postgres")
        .phase(
            Phase::Expand,
            "ALTER TABLE public.items ADD COLUMN sku text;
             ALTER TABLE public.items ADD CONSTRAINT items_sku_len CHECK (length(sku) <= 32) NOT VALID;",
            "ALTER TABLE public.items DROP COLUMN sku;",
        )
        .phase(
            Phase::DualWrite,
            "CREATE INDEX CONCURRENTLY items_sku_idx ON public.items (sku);",
            "DROP INDEX CONCURRENTLY IF EXISTS public.items_sku_idx;",
        )
        .phase(
            Phase::Contract,
            "ALTER TABLE public.items VALIDATE CONSTRAINT items_sku_len;
             ALTER TABLE public.items ALTER COLUMN sku SET NOT NULL;",
            "",
        )
        .with(
            r#"[backfill]
table = "public.items"
key = ["id"]
set = { sku = "'sku-' || id" }
pending = "sku IS NULL""#,
        );
    let (table, check) = ("public.items", "items_sku_len");
    let db = Lifecycle::new(plan)
        .schema(
            "CREATE TABLE public.items (id bigserial PRIMARY KEY, name text);
             INSERT INTO public.items (name) SELECT 'item ' || g FROM generate_series(1, 500) g;",
        )
        .after(Stage::Applied(Phase::Expand), async |db| {
            let catalog = db.catalog();
            catalog.assert_column(table, "sku", "text", true).await;
            catalog.assert_constraint(table, check, false).await;
        })
        .after(Stage::RolledBack(Phase::Expand), async |db| {
            let catalog = db.catalog();
            catalog.assert_no_column(table, "sku").await;
            catalog.assert_no_constraint(table, check).await;
        })
        .after(Stage::Applied(Phase::DualWrite), async |db| {
            db.catalog()
                .assert_valid_index("public.items_sku_idx")
                .await;
        })
        .after(Stage::RolledBack(Phase::DualWrite), async |db| {
            db.catalog().assert_no_index("public.items_sku_idx").await;
        })
        .after(Stage::Applied(Phase::Backfill), async |db| {
            let pending: i64 = db
                .scalar("SELECT count(*) FROM public.items WHERE sku IS NULL")
                .await;
            assert_eq!(pending, 0);
        })
        .after(Stage::Applied(Phase::Contract), async |db| {
            let catalog = db.catalog();
            catalog.assert_column(table, "sku", "text", false).await;
            catalog.assert_constraint(table, check, true).await;
            catalog.assert_table(table).await;
        })
        .run_with_rollbacks()
        .await;
    let rows: i64 = db.scalar("SELECT count(*) FROM public.items").await;
    assert_eq!(rows, 500, "no row lost");
}

#[tokio::test]
async fn rolling_back_every_phase_at_once_goes_last_first_to_the_pristine_catalog() {
    demo_lifecycle()
        .after(Stage::RolledBack(Phase::Expand), async |db| {
            assert!(!flag_on(db).await, "the read switch is off");
            db.catalog()
                .assert_no_column("public.accounts", "balance_cents")
                .await;
        })
        .run_and_roll_back_all()
        .await;
}

#[tokio::test]
async fn a_busy_plan_refuses_rollback_but_its_read_switch_flips_off_at_once_and_overrides_are_spent(
) {
    let mut run = demo_lifecycle().start().await;
    for phase in [Phase::Expand, Phase::DualWrite, Phase::Backfill] {
        run.apply(phase).await;
    }
    // A backfill under way (not run here): rolling back its phase must stop it.
    run.engine
        .execute(
            "INSERT INTO cutover.backfill (plan_id, state, target_chunk_ms) VALUES ($1, 'running', 300)",
            &[&run.db.plan.id()],
        )
        .await
        .unwrap();
    run.apply(Phase::ReadSwitch).await;
    assert!(flag_on(&run.db).await);

    // Another process holds the plan (say, an advance stuck on a lock): the rollback is refused,
    // but the read switch flips OFF at once anyway.
    let other = run.db.db.client().await;
    let key = format!("cutover:{}", run.db.plan.id());
    other
        .query_one("SELECT pg_advisory_lock(hashtext($1))", &[&key])
        .await
        .unwrap();
    let err = engine::rollback(
        &mut run.engine,
        &run.db.plan,
        &run.actor,
        None,
        &RunOptions::default(),
    )
    .await
    .unwrap_err();
    assert!(matches!(err, EngineError::Refused(_)), "{err}");
    assert!(
        !flag_on(&run.db).await,
        "the read switch must flip OFF even while the plan is busy"
    );
    run.assert_state(Phase::ReadSwitch, PhaseState::Applied)
        .await;
    other
        .query_one("SELECT pg_advisory_unlock(hashtext($1))", &[&key])
        .await
        .unwrap();

    run.rollback(Phase::ReadSwitch).await;
    run.rollback(Phase::Backfill).await;
    let bf: String = run.db.scalar("SELECT state FROM cutover.backfill").await;
    assert_eq!(
        bf, "stopped",
        "rolling back the backfill phase stops the backfill"
    );
    // The override was used by the apply: re-applying is blocked until a new one is given.
    let again = engine::apply_phase(
        &mut run.engine,
        &run.db.plan,
        &run.actor,
        Phase::Backfill,
        &RunOptions::default(),
    )
    .await;
    assert!(matches!(again, Err(EngineError::Blocked(_))), "{again:?}");
    run.finish().await;
}

#[tokio::test]
async fn an_invalid_index_left_by_a_failed_concurrent_build_is_dropped_and_rebuilt() {
    let db = demo_db().await;
    let source = demo_with(&[
            (
                "apply = \"ALTER TABLE public.accounts ADD COLUMN balance_cents bigint;\"",
                "apply = \"ALTER TABLE public.accounts ADD COLUMN balance_cents bigint; CREATE UNIQUE INDEX CONCURRENTLY accounts_owner_uq ON public.accounts (owner);\"",
            ),
            (
                "rollback = \"ALTER TABLE public.accounts DROP COLUMN balance_cents;\"",
                "rollback = \"DROP INDEX CONCURRENTLY IF EXISTS public.accounts_owner_uq; ALTER TABLE public.accounts DROP COLUMN balance_cents;\"",
            ),
    ]);
    let plan = Plan::parse("cic.toml", &source).unwrap();
    let mut c = db.control_client().await;
    let actor = Actor::current(&c).await.unwrap();
    let pristine = Catalog(&c).fingerprint().await;
    let r = engine::rehearse(&mut c, &plan, &actor).await.unwrap();
    let expand = &r.phases[0];
    assert_eq!(expand.not_rehearsable.len(), 2, "{expand:?}");
    assert!(expand.not_rehearsable[0].contains("CREATE UNIQUE INDEX CONCURRENTLY"));
    assert_eq!(
        expand.restored, None,
        "a partly rehearsed phase cannot claim its rollback restores the catalog"
    );
    assert_eq!(Catalog(&c).fingerprint().await, pristine);
    engine::override_gate(
        &mut c,
        &plan,
        &actor,
        Phase::Expand,
        "test: concurrent index",
    )
    .await
    .unwrap();
    // A duplicate owner makes the unique build fail halfway, leaving an INVALID index.
    c.batch_execute("INSERT INTO public.accounts (owner, balance) VALUES ('owner-1', 1)")
        .await
        .unwrap();
    let err = engine::advance(&mut c, &plan, &actor, &RunOptions::default())
        .await
        .unwrap_err();
    assert!(err.to_string().contains("accounts_owner_uq"), "{err}");
    let st = cutover::control::phases::load(&c, plan.id()).await.unwrap();
    assert_eq!(st.phase(Phase::Expand).state, PhaseState::Failed);
    assert_eq!(
        Catalog(&c).index_valid("public.accounts_owner_uq").await,
        Some(false),
        "the failed build should have left an INVALID index"
    );

    // The partly applied phase (its ALTER committed) can be rolled back to the pristine catalog.
    let r = engine::rollback(&mut c, &plan, &actor, None, &RunOptions::default())
        .await
        .unwrap();
    assert_eq!(
        r.rolled_back.iter().map(|p| p.phase).collect::<Vec<_>>(),
        vec![Phase::Expand]
    );
    assert_eq!(Catalog(&c).fingerprint().await, pristine);
    assert!(
        engine::advance(&mut c, &plan, &actor, &RunOptions::default())
            .await
            .is_err()
    );

    // Fix the data; re-running resumes: the ALTER (done) is skipped, the index is rebuilt.
    c.batch_execute("DELETE FROM public.accounts WHERE id = (SELECT max(id) FROM public.accounts)")
        .await
        .unwrap();
    let r = engine::advance(&mut c, &plan, &actor, &RunOptions::default())
        .await
        .unwrap();
    assert!(r.changed);
    Catalog(&c)
        .assert_valid_index("public.accounts_owner_uq")
        .await;
    let progress: Vec<String> = c
        .query("SELECT idx || ':' || state FROM cutover.statement_progress WHERE phase = 'expand' AND direction = 'apply' ORDER BY idx", &[])
        .await
        .unwrap()
        .iter()
        .map(|r| r.get(0))
        .collect();
    assert_eq!(progress, vec!["0:done", "1:done"]);
    engine::rollback(
        &mut c,
        &plan,
        &actor,
        Some(Phase::Expand),
        &RunOptions::default(),
    )
    .await
    .unwrap();
    assert_eq!(Catalog(&c).fingerprint().await, pristine);
}
