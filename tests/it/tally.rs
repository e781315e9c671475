//! Cutover's own transactions counted on the wire match what PostgreSQL counts for them.

use std::time::{Duration, Instant};

use cutover::db::{self, tally, DbConfig, SessionSettings};
use cutover::throwaway::{ClusterOptions, ThrowawayCluster};
use tokio_postgres::Client;

use crate::common;

/// `(xact_commit, xact_rollback, deadlocks)` of `db`, read from another database so that the
/// reading is not counted in it.
async fn counters_of(admin: &Client, db: &str) -> (i64, i64, i64) {
    admin
        .batch_execute("SELECT pg_stat_clear_snapshot()")
        .await
        .unwrap();
    let r = admin
        .query_one(
            "SELECT xact_commit, xact_rollback, deadlocks FROM pg_stat_database WHERE datname = $1",
            &[&db],
        )
        .await
        .unwrap();
    (r.get(0), r.get(1), r.get(2))
}

/// Waits until no session is connected to `db` (a session publishes its counters as it exits).
async fn sessions_gone(admin: &Client, db: &str) {
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let n: i64 = admin
            .query_one(
                "SELECT count(*) FROM pg_stat_activity WHERE datname = $1",
                &[&db],
            )
            .await
            .unwrap()
            .get(0);
        if n == 0 {
            return;
        }
        assert!(Instant::now() < deadline, "{n} sessions still on {db}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// On a private cluster without autovacuum: a worker visiting the database commits
/// transactions of its own there, which the server counts and Cutover rightly does not.
#[tokio::test]
async fn wire_count_matches_the_servers_count_of_our_transactions() {
    let cluster = ThrowawayCluster::start_with(&ClusterOptions {
        without_stat_statements: true,
        without_autovacuum: true,
        ..ClusterOptions::default()
    })
    .await
    .expect("throwaway cluster");
    let admin = common::connect(&cluster.url()).await;
    admin.batch_execute("CREATE DATABASE tally").await.unwrap();
    let url = format!("{}/tally", cluster.url().trim_end_matches("/postgres"));
    common::connect(&url)
        .await
        .batch_execute(TABLE)
        .await
        .unwrap();
    // Plaintext TCP (the TLS case is counted in connect.rs).
    let ours = assert_counted_exactly(&admin, &format!("{url}?sslmode=disable"), "tally").await;
    assert!(ours.commits > 20 && ours.rollbacks > 10, "{ours:?}");
    assert_eq!(ours.deadlocks, 1, "{ours:?}");
}

/// The table [`assert_counted_exactly`] works on.
pub const TABLE: &str =
    "CREATE TABLE t (id int PRIMARY KEY, v int); INSERT INTO t VALUES (1, 0), (2, 0)";

/// Runs about 40 transaction patterns (simple and extended protocol, blocks, savepoints,
/// errors, a deadlock, sessions terminated while idle and mid-query, a block left open at disconnect) on Cutover
/// connections to `url` — a database holding [`TABLE`], on which nothing else runs — and
/// asserts that Cutover's count of them equals PostgreSQL's, read by `admin` from another
/// database. Returns the count.
pub async fn assert_counted_exactly(admin: &Client, url: &str, dbname: &str) -> tally::Counts {
    sessions_gone(admin, dbname).await;
    let cfg = DbConfig::from_url(url).unwrap();
    let counters = tally::counters(&cfg);
    let before_pg = counters_of(admin, dbname).await;
    let before = counters.counts();
    {
        let mut c = db::connect(&cfg, &SessionSettings::new("test"))
            .await
            .unwrap();
        let other = db::connect(&cfg, &SessionSettings::new("test"))
            .await
            .unwrap();
        // Simple queries: single, multi-statement, explicit blocks, savepoints, errors.
        for sql in [
            "",
            "SELECT 1",
            "SELECT 1; SELECT 2",
            "COMMIT",
            "ROLLBACK",
            "BEGIN; SELECT 1; COMMIT",
            "BEGIN; SELECT 1; ROLLBACK",
            "SELECT 1; ROLLBACK; SELECT 2",
            "BEGIN; SAVEPOINT a; SELECT 1; ROLLBACK TO SAVEPOINT a; RELEASE SAVEPOINT a; COMMIT",
            "BEGIN; COMMIT; BEGIN; ROLLBACK; SELECT 3",
            "COMMIT AND NO CHAIN",
            "SET application_name = 'cutover/test'",
        ] {
            c.batch_execute(sql).await.unwrap();
        }
        for bad in [
            "SELECT 1/0",
            "SELECT 1; SELECT 1/0; SELECT 2",
            "BEGIN; SELECT 1/0",
            "SELECT 2",
            "COMMIT",
            "BEGIN; SAVEPOINT s; SELECT 1/0",
            "ROLLBACK TO s",
            "COMMIT",
            "SELEKT",
            "ROLLBACK TO nowhere",
            "BEGIN; SELECT 1/0; COMMIT; SELECT 1",
        ] {
            let _ = c.batch_execute(bad).await;
        }
        let _ = c.batch_execute("ROLLBACK").await;
        // The extended protocol: prepare, execute, errors, transactions and savepoints.
        let stmt = c.prepare("SELECT v FROM t WHERE id = $1").await.unwrap();
        for id in 1..=3 {
            c.query(&stmt, &[&id]).await.unwrap();
        }
        c.query("SELECT $1::int + 1", &[&1i32]).await.unwrap();
        assert!(c.query("SELECT 1 / $1::int", &[&0i32]).await.is_err());
        c.execute("BEGIN", &[]).await.unwrap();
        c.execute("UPDATE t SET v = v + 1 WHERE id = $1", &[&1i32])
            .await
            .unwrap();
        c.execute("ROLLBACK", &[]).await.unwrap();
        {
            let mut tx = c.transaction().await.unwrap();
            tx.execute("UPDATE t SET v = v + 1 WHERE id = 1", &[])
                .await
                .unwrap();
            {
                let sp = tx.savepoint("sp_inner").await.unwrap();
                assert!(sp.execute("SELECT 1/0", &[]).await.is_err());
            }
            tx.commit().await.unwrap();
        }
        {
            let tx = c.transaction().await.unwrap();
            tx.execute("UPDATE t SET v = v + 1 WHERE id = 2", &[])
                .await
                .unwrap();
            // Dropped: rolled back.
        }
        {
            let tx = c.transaction().await.unwrap();
            assert!(tx.execute("SELECT 1/0", &[]).await.is_err());
            // COMMIT of a failed block answers ROLLBACK.
            tx.commit().await.unwrap();
        }
        // A deadlock between two of our sessions: one of them is told, and it counts.
        c.batch_execute("BEGIN; UPDATE t SET v = 1 WHERE id = 1")
            .await
            .unwrap();
        other
            .batch_execute("BEGIN; UPDATE t SET v = 2 WHERE id = 2")
            .await
            .unwrap();
        let (a, b) = tokio::join!(
            c.batch_execute("UPDATE t SET v = 1 WHERE id = 2"),
            other.batch_execute("UPDATE t SET v = 2 WHERE id = 1"),
        );
        assert!(a.is_err() != b.is_err(), "{a:?} {b:?}");
        c.batch_execute("ROLLBACK").await.unwrap();
        other.batch_execute("ROLLBACK").await.unwrap();
        // An idle session terminated by an administrator ends no transaction.
        let doomed = db::connect(&cfg, &SessionSettings::new("test"))
            .await
            .unwrap();
        let pid: i32 = doomed
            .query_one("SELECT pg_backend_pid()", &[])
            .await
            .unwrap()
            .get(0);
        admin
            .execute("SELECT pg_terminate_backend($1)", &[&pid])
            .await
            .unwrap();
        assert!(doomed.batch_execute("SELECT 1").await.is_err());
        // A session terminated in the middle of a query: its transaction is rolled back.
        let busy = db::connect(&cfg, &SessionSettings::new("test"))
            .await
            .unwrap();
        let pid: i32 = busy
            .query_one("SELECT pg_backend_pid()", &[])
            .await
            .unwrap()
            .get(0);
        let terminate = async {
            let deadline = Instant::now() + Duration::from_secs(10);
            loop {
                let running: bool = admin
                    .query_one(
                        "SELECT count(*) = 1 FROM pg_stat_activity
                          WHERE pid = $1 AND state = 'active' AND query LIKE '%pg_sleep%'",
                        &[&pid],
                    )
                    .await
                    .unwrap()
                    .get(0);
                if running {
                    break;
                }
                assert!(Instant::now() < deadline, "the query never started");
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
            admin
                .execute("SELECT pg_terminate_backend($1)", &[&pid])
                .await
                .unwrap();
        };
        let (slept, ()) = tokio::join!(busy.batch_execute("SELECT pg_sleep(30)"), terminate);
        assert!(slept.is_err());
        // A block left open when the connection closes is rolled back by the server.
        other.batch_execute("BEGIN; SELECT 1").await.unwrap();
    }
    sessions_gone(admin, dbname).await;
    let after_pg = counters_of(admin, dbname).await;
    let ours = counters.counts().minus(&before);
    assert_eq!(
        (ours.commits, ours.rollbacks, ours.deadlocks),
        (
            after_pg.0 - before_pg.0,
            after_pg.1 - before_pg.1,
            after_pg.2 - before_pg.2
        ),
        "{}: Cutover's count (left) and PostgreSQL's (right) of commits, rollbacks, deadlocks",
        cfg.display()
    );
    ours
}
