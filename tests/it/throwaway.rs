//! The throwaway cluster and the test harness's databases.

use std::io::{BufRead, BufReader};
use std::net::{Ipv4Addr, SocketAddrV4, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use cutover::throwaway::ThrowawayCluster;

use crate::common::{connect, server_url, TestDb};

/// Set in the child process of `watchdog_cleans_up_after_owner_is_killed`.
const CHILD_ENV: &str = "CUTOVER_THROWAWAY_TEST_CHILD";

fn accepts_connections(port: u16) -> bool {
    TcpStream::connect_timeout(
        &SocketAddrV4::new(Ipv4Addr::LOCALHOST, port).into(),
        Duration::from_secs(2),
    )
    .is_ok()
}

/// Poll `cond` for up to `limit`.
async fn eventually(limit: Duration, mut cond: impl FnMut() -> bool) -> bool {
    let deadline = Instant::now() + limit;
    loop {
        if cond() {
            return true;
        }
        if Instant::now() >= deadline {
            return false;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

#[tokio::test]
async fn cluster_starts_serves_and_stops_cleanly() {
    let cluster = ThrowawayCluster::start().await.unwrap();
    let data_dir = cluster.data_dir().to_path_buf();
    let temp_dir = data_dir.parent().unwrap().to_path_buf();
    let port = cluster.port();
    assert!(data_dir.join("PG_VERSION").is_file());
    assert!(cluster.socket_dir().starts_with(&temp_dir));
    assert_eq!(
        cluster.url(),
        format!("postgres://postgres@127.0.0.1:{port}/postgres")
    );

    let client = connect(&cluster.url()).await;
    let preload: String = client
        .query_one("SHOW shared_preload_libraries", &[])
        .await
        .unwrap()
        .get(0);
    assert!(preload.contains("pg_stat_statements"), "{preload}");
    let track: String = client
        .query_one("SHOW pg_stat_statements.track", &[])
        .await
        .unwrap()
        .get(0);
    assert_eq!(track, "all");
    let max_conn: String = client
        .query_one("SHOW max_connections", &[])
        .await
        .unwrap()
        .get(0);
    assert_eq!(max_conn, "200");
    client
        .batch_execute("CREATE EXTENSION pg_stat_statements")
        .await
        .unwrap();
    let superuser: bool = client
        .query_one(
            "SELECT rolsuper FROM pg_roles WHERE rolname = current_user",
            &[],
        )
        .await
        .unwrap()
        .get(0);
    assert!(superuser);

    // The unix socket works too.
    let via_socket = connect(&cluster.socket_url()).await;
    let one: i32 = via_socket.query_one("SELECT 1", &[]).await.unwrap().get(0);
    assert_eq!(one, 1);
    drop(via_socket);
    drop(client);

    cluster.stop().unwrap();
    assert!(!data_dir.exists(), "{} still exists", data_dir.display());
    assert!(!temp_dir.exists(), "{} still exists", temp_dir.display());
    assert!(
        !accepts_connections(port),
        "port {port} still accepts connections"
    );
}

#[tokio::test]
async fn dropping_the_cluster_cleans_up() {
    let cluster = ThrowawayCluster::start().await.unwrap();
    let temp_dir = cluster.data_dir().parent().unwrap().to_path_buf();
    let port = cluster.port();
    // A session still open when the cluster goes away.
    let client = connect(&cluster.url()).await;
    drop(cluster);
    assert!(!temp_dir.exists(), "{} still exists", temp_dir.display());
    assert!(!accepts_connections(port));
    assert!(client.query_one("SELECT 1", &[]).await.is_err());
}

/// A durable cluster (the benchmarks') flushes commits like production; the default one does not.
#[tokio::test]
async fn a_durable_cluster_keeps_production_durability() {
    use cutover::throwaway::ClusterOptions;

    let settings = |url: String| async move {
        let client = connect(&url).await;
        let row = client
            .query_one(
                "SELECT current_setting('fsync') AS fsync, \
                 current_setting('synchronous_commit') AS sync, \
                 current_setting('full_page_writes') AS fpw",
                &[],
            )
            .await
            .unwrap();
        [
            row.get::<_, String>("fsync"),
            row.get("sync"),
            row.get("fpw"),
        ]
    };
    let durable = ThrowawayCluster::start_with(&ClusterOptions {
        durable: true,
        without_stat_statements: true,
        ..ClusterOptions::default()
    })
    .await
    .unwrap();
    assert_eq!(settings(durable.url()).await, ["on", "on", "on"]);
    let fast = ThrowawayCluster::start_with(&ClusterOptions {
        without_stat_statements: true,
        ..ClusterOptions::default()
    })
    .await
    .unwrap();
    assert_eq!(settings(fast.url()).await, ["off", "off", "off"]);
}

/// Runs only as the child process of the test below: starts a cluster,
/// reports where it lives, and waits to be killed.
#[tokio::test]
#[ignore = "helper, run in a child process by watchdog_cleans_up_after_owner_is_killed"]
async fn owner_process_for_watchdog_test() {
    if std::env::var_os(CHILD_ENV).is_none() {
        return;
    }
    let cluster = ThrowawayCluster::start().await.unwrap();
    println!("CUTOVER_CHILD_PORT={}", cluster.port());
    println!("CUTOVER_CHILD_DATA_DIR={}", cluster.data_dir().display());
    tokio::time::sleep(Duration::from_secs(300)).await;
    drop(cluster);
}

#[tokio::test]
async fn watchdog_cleans_up_after_owner_is_killed() {
    // This module's path inside the test binary, e.g. "throwaway".
    let module = module_path!()
        .split_once("::")
        .map(|(_, rest)| rest)
        .unwrap_or(module_path!());
    let mut child = Command::new(std::env::current_exe().unwrap())
        .args([
            &format!("{module}::owner_process_for_watchdog_test"),
            "--exact",
            "--ignored",
            "--nocapture",
            "--test-threads=1",
        ])
        .env(CHILD_ENV, "1")
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .unwrap();
    let stdout = child.stdout.take().unwrap();
    let report = tokio::task::spawn_blocking(move || {
        let mut port = None;
        let mut data_dir = None;
        for line in BufReader::new(stdout).lines() {
            let line = line.unwrap();
            // libtest may print "test … ... " on the same line first.
            if let Some((_, p)) = line.split_once("CUTOVER_CHILD_PORT=") {
                port = Some(p.trim().parse::<u16>().unwrap());
            } else if let Some((_, d)) = line.split_once("CUTOVER_CHILD_DATA_DIR=") {
                data_dir = Some(PathBuf::from(d));
            }
            if port.is_some() && data_dir.is_some() {
                break;
            }
        }
        port.zip(data_dir)
    });
    let report = tokio::time::timeout(Duration::from_secs(120), report).await;
    let Ok(Ok(Some((port, data_dir)))) = report else {
        let _ = child.kill();
        let _ = child.wait();
        panic!("the child process did not report its cluster: {report:?}");
    };
    let temp_dir: &Path = data_dir.parent().unwrap();
    assert!(data_dir.is_dir());
    assert!(accepts_connections(port));

    // SIGKILL: no Drop, no atexit.
    child.kill().unwrap();
    child.wait().unwrap();

    assert!(
        eventually(Duration::from_secs(30), || !accepts_connections(port)).await,
        "the orphaned server on port {port} was not stopped"
    );
    assert!(
        eventually(Duration::from_secs(30), || !temp_dir.exists()).await,
        "{} was not removed",
        temp_dir.display()
    );
}

#[tokio::test]
async fn test_databases_are_dropped_after_use() {
    let db = TestDb::new().await;
    let other = TestDb::new().await;
    assert_ne!(db.name, other.name);
    assert!(db.name.starts_with("cutover_t_"));

    db.exec("CREATE TABLE t (id int); INSERT INTO t VALUES (1), (2)")
        .await;
    // A session still open when the TestDb goes away: WITH (FORCE) ends it.
    let held = db.client().await;
    let n: i64 = held
        .query_one("SELECT count(*) FROM t", &[])
        .await
        .unwrap()
        .get(0);
    assert_eq!(n, 2);
    let current: String = held
        .query_one("SELECT current_database()", &[])
        .await
        .unwrap()
        .get(0);
    assert_eq!(current, db.name);

    let name = db.name.clone();
    drop(db);

    let admin = connect(&server_url().await).await;
    let exists = |name: String| {
        let admin = &admin;
        async move {
            admin
                .query_opt("SELECT 1 FROM pg_database WHERE datname = $1", &[&name])
                .await
                .unwrap()
                .is_some()
        }
    };
    assert!(!exists(name).await, "the test database was not dropped");
    assert!(exists(other.name.clone()).await);
    assert!(held.query_one("SELECT 1", &[]).await.is_err());
}

#[tokio::test]
#[should_panic(expected = "SQL failed")]
async fn exec_panics_with_the_sql_error() {
    let db = TestDb::new().await;
    db.exec("SELECT * FROM no_such_table").await;
}

#[test]
fn url_with_dbname_handles_both_forms() {
    use crate::common::url_with_dbname;
    assert_eq!(
        url_with_dbname("postgres://postgres@127.0.0.1:5432/postgres", "x"),
        "postgres://postgres@127.0.0.1:5432/x"
    );
    assert_eq!(
        url_with_dbname("postgresql://u:p@h/db?sslmode=disable&dbname=db", "x"),
        "postgresql://u:p@h/x?sslmode=disable"
    );
    assert_eq!(
        url_with_dbname("postgres://postgres@127.0.0.1:5432", "x"),
        "postgres://postgres@127.0.0.1:5432/x"
    );
    assert_eq!(
        url_with_dbname("host=/tmp port=5432 dbname=postgres", "x"),
        "host=/tmp port=5432 dbname=postgres dbname=x"
    );
    let config: tokio_postgres::Config = url_with_dbname("host=/tmp dbname=postgres", "x")
        .parse()
        .unwrap();
    assert_eq!(config.get_dbname(), Some("x"));
}
