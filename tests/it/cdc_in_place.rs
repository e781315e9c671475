//! CDC into new columns of the same table (update mode): the applier sets the new column of
//! every row the application changes, with no trigger on the table, while an update-mode
//! backfill fills the rest; its own updates are decoded again and change nothing, so it comes
//! to rest.

use std::time::{Duration, Instant};

use cutover::backfill::RunOutcome;
use cutover::plan::Plan;

use crate::cdc::{app_writes, run_with_slot, scalar_i64, seeded, sigkill, spawn_applier, PLAN_ID};
use crate::common::connect;
use crate::common::plans::PlanToml;

fn plan_toml() -> String {
    PlanToml::new(PLAN_ID)
        .role("data_owner", "postgres")
        .with(
            r#"[backfill]
table = "public.items"
key = ["id"]
set = { n2 = "n * 2" }
pending = "n2 IS NULL"
target_chunk_time = "20ms"
initial_chunk_rows = 50
max_chunk_rows = 400
max_rows_per_second = 4000

[backfill.throttle]
max_app_latency_ratio = 1000

[dual_write]
mode = "cdc"
max_lag = "5s"
"#,
        )
        .toml()
}

const SCHEMA: &str = "
CREATE TABLE public.items (id bigserial PRIMARY KEY, n integer NOT NULL DEFAULT 0, n2 integer);
INSERT INTO public.items (n) SELECT g FROM generate_series(1, 8000) g;";

/// Rows whose new column is not the mapping of the old one.
const WRONG: &str = "SELECT count(*) FROM public.items WHERE n2 IS DISTINCT FROM n * 2";

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn the_stream_sets_the_new_column_of_every_changed_row_and_comes_to_rest() {
    let cluster = crate::common::logical_cluster().await;
    let (url, cfg, control) = seeded(&cluster, SCHEMA).await;
    let client = connect(&url).await;
    let (_dir, path) = crate::common::plans::write_temp(&plan_toml());
    let plan = Plan::parse("plan.toml", &plan_toml()).unwrap();

    // The old version writes `n` only: updates of rows done and not yet done, inserts, deletes.
    let (stop_app, writer) = app_writes(
        &url,
        [
            "UPDATE public.items SET n = n + 7 WHERE id = $1",
            "DELETE FROM public.items WHERE id = $1",
            "UPDATE public.items SET n = n + 7 WHERE id = $1",
            "INSERT INTO public.items (n) VALUES ($1::bigint::int)",
        ],
    )
    .await;
    let fill = run_with_slot(&cfg, &plan, &control).await;
    let mut applier = spawn_applier(&url, &path);
    let summary = tokio::time::timeout(Duration::from_secs(300), fill)
        .await
        .expect("the backfill did not finish")
        .unwrap()
        .unwrap();
    assert_eq!(summary.outcome, RunOutcome::Done);
    tokio::time::sleep(Duration::from_millis(500)).await;
    let _ = stop_app.send(true);
    let ops = writer.await.unwrap();
    assert!(ops > 100, "the application wrote only {ops} times");

    // Every row right, then no more changes to apply: the applier's own updates end there.
    let applied =
        || async { scalar_i64(&control, "SELECT applied_changes FROM cutover.cdc").await };
    let deadline = Instant::now() + Duration::from_secs(120);
    let mut last = (-1, -1);
    loop {
        let now = (scalar_i64(&client, WRONG).await, applied().await);
        if now.0 == 0 && now == last {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "not at rest: {} wrong rows, {} changes applied; applier log: {}",
            now.0,
            now.1,
            std::fs::read_to_string(path.with_extension("log")).unwrap_or_default()
        );
        last = now;
        tokio::time::sleep(Duration::from_millis(1500)).await;
    }
    sigkill(&mut applier);
    assert!(last.1 > 0, "the applier applied nothing");
    let triggers = scalar_i64(
        &client,
        "SELECT count(*) FROM pg_trigger WHERE tgrelid = 'public.items'::regclass",
    )
    .await;
    assert_eq!(triggers, 0, "CDC needs no trigger on the table");
}
