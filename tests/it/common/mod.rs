//! Shared integration-test harness.
//!
//! * [`server_url`]: the PostgreSQL server the tests use: `DATABASE_URL` if
//!   set, else one [`ThrowawayCluster`] shared by the whole test process.
//! * [`TestDb`]: a fresh database per test, dropped afterwards.
//! * [`cutover_bin`]: the `cutover` binary under test; [`cli`]: running it.
//! * [`plans`]: plan fixtures; [`catalog`]: catalog assertions; [`lifecycle`]: a plan driven
//!   through apply → rollback → apply … → contract with hooks at each stage.
//!
//! The shared cluster is started once, lazily, by whichever test asks first.
//! libtest ends the process with `std::process::exit` (or by returning from
//! `main`), so a static's `Drop` never runs: the cluster is stopped by a
//! `libc::atexit` hook, and if even that does not run (SIGKILL, abort), by
//! the cluster's own watchdog.
#![allow(dead_code)] // not every test module uses every helper

pub mod catalog;
pub mod cli;
pub mod lifecycle;
pub mod plans;
pub mod workload;

pub use cli::{code, cutover, cutover_bin, ok, override_gate, signoff, status_json, text};

use std::sync::Mutex;
use std::time::Duration;

use cutover::throwaway::ThrowawayCluster;
use tokio::sync::OnceCell;

/// The shared cluster's URL, or why it could not be started (cached, so
/// that every test fails fast with the same message).
static SHARED_URL: OnceCell<Result<String, String>> = OnceCell::const_new();
/// The shared cluster itself, taken and dropped by the atexit hook.
static SHARED_CLUSTER: Mutex<Option<ThrowawayCluster>> = Mutex::new(None);

/// How long creating or dropping a test database may take.
const DB_OP_TIMEOUT: Duration = Duration::from_secs(60);

/// Server URL for tests: `DATABASE_URL` if set (and not empty), else one
/// throwaway cluster shared by the whole test process (started once,
/// lazily; stopped at process exit).
///
/// Panics if the throwaway cluster cannot be started.
pub async fn server_url() -> String {
    if let Some(url) = database_url_env() {
        return url;
    }
    let shared = SHARED_URL
        .get_or_init(|| async {
            match ThrowawayCluster::start().await {
                Ok(cluster) => {
                    let url = cluster.url();
                    *SHARED_CLUSTER.lock().unwrap_or_else(|e| e.into_inner()) = Some(cluster);
                    // SAFETY: registers a plain `extern "C" fn()` that never
                    // unwinds; this runs once (inside the OnceCell).
                    if unsafe { libc::atexit(stop_shared_cluster) } != 0 {
                        eprintln!(
                            "warning: atexit registration failed; the shared test cluster \
                             will be cleaned up by its watchdog"
                        );
                    }
                    Ok(url)
                }
                Err(e) => Err(e.to_string()),
            }
        })
        .await;
    match shared {
        Ok(url) => url.clone(),
        Err(e) => panic!(
            "DATABASE_URL is not set and the throwaway PostgreSQL cluster for tests \
             could not be started:\n{e}"
        ),
    }
}

/// `DATABASE_URL`, unless unset or blank.
fn database_url_env() -> Option<String> {
    std::env::var("DATABASE_URL")
        .ok()
        .filter(|url| !url.trim().is_empty())
}

extern "C" fn stop_shared_cluster() {
    let cluster = match SHARED_CLUSTER.lock() {
        Ok(mut guard) => guard.take(),
        Err(poisoned) => poisoned.into_inner().take(),
    };
    // Drop stops the server and removes its directory; it never panics.
    drop(cluster);
}

/// A private cluster with `wal_level = logical` (for replication slots and CDC).
pub async fn logical_cluster() -> ThrowawayCluster {
    ThrowawayCluster::start_with(&cutover::throwaway::ClusterOptions {
        logical_decoding: true,
        without_stat_statements: true,
        ..cutover::throwaway::ClusterOptions::default()
    })
    .await
    .expect("a throwaway cluster with wal_level = logical")
}

/// Connect to `url`, spawn the connection task on the current runtime, and
/// return the client. Panics (with the URL and the error) on failure.
pub async fn connect(url: &str) -> tokio_postgres::Client {
    let cfg = cutover::db::DbConfig::from_url(url).unwrap_or_else(|e| panic!("{url}: {e}"));
    cutover::db::connect_app(&cfg, "cutover-tests")
        .await
        .unwrap_or_else(|e| panic!("connecting to {url}: {e}"))
}

/// A fresh database `cutover_t_<random>` on the [`server_url`] server,
/// dropped (`WITH (FORCE)`) when the `TestDb` is dropped.
#[derive(Debug)]
pub struct TestDb {
    /// Connection URL of this database.
    pub url: String,
    /// The database's name.
    pub name: String,
    /// The server's own URL (its maintenance database), used to drop it.
    server_url: String,
    /// Login roles made for this test ([`TestDb::login`]), dropped with the database.
    roles: Mutex<Vec<String>>,
}

impl TestDb {
    /// Create a new, empty database. Panics on failure.
    pub async fn new() -> TestDb {
        TestDb::on(server_url().await).await
    }

    /// Like [`TestDb::new`], on the server `server_url` (a throwaway cluster of the test's own).
    pub async fn on(server_url: String) -> TestDb {
        let name = format!("cutover_t_{:016x}", rand::random::<u64>());
        let admin = connect(&server_url).await;
        let create = format!("CREATE DATABASE {}", quote_ident(&name));
        match tokio::time::timeout(DB_OP_TIMEOUT, admin.batch_execute(&create)).await {
            Ok(Ok(())) => {}
            Ok(Err(e)) => panic!("{create} failed: {}", describe(&e)),
            Err(_) => panic!("{create} timed out after {DB_OP_TIMEOUT:?}"),
        }
        let url = url_with_dbname(&server_url, &name);
        TestDb {
            url,
            name,
            server_url,
            roles: Mutex::new(Vec::new()),
        }
    }

    /// A new database with the demo schema (`assets/demo/schema.sql`), seeded with that many
    /// accounts, customers and orders.
    pub async fn demo(accounts: u32, customers: u32, orders: u32) -> TestDb {
        TestDb::seeded(TestDb::new().await, accounts, customers, orders).await
    }

    /// [`TestDb::demo`] on the server at `server_url`.
    pub async fn demo_on(server_url: String, accounts: u32, customers: u32, orders: u32) -> TestDb {
        TestDb::seeded(TestDb::on(server_url).await, accounts, customers, orders).await
    }

    async fn seeded(db: TestDb, accounts: u32, customers: u32, orders: u32) -> TestDb {
        db.exec(include_str!("../../../assets/demo/schema.sql"))
            .await;
        db.exec(&format!(
            "SELECT cutover_demo_seed({accounts}, {customers}, {orders})"
        ))
        .await;
        db
    }

    /// A connection as the engine opens it (session settings included), with the control
    /// schema bootstrapped.
    pub async fn control_client(&self) -> tokio_postgres::Client {
        let cfg = cutover::db::DbConfig::from_url(&self.url)
            .unwrap_or_else(|e| panic!("{}: {e}", self.url));
        let mut client = cutover::db::connect(&cfg, &cutover::db::SessionSettings::new("test"))
            .await
            .unwrap_or_else(|e| panic!("connecting to {}: {e}", self.url));
        cutover::control::schema::bootstrap(&mut client)
            .await
            .unwrap_or_else(|e| panic!("bootstrapping the control schema: {e}"));
        client
    }

    /// A new login role `<prefix>_<n>` on the server (dropped with this database) that may use
    /// this database and the `cutover` schema like any operator whom a DBA gave access — but
    /// holds no role in any plan's roster. Returns its name and a URL connecting as it.
    pub async fn login(&self, prefix: &str) -> (String, String) {
        let (role, url) = self.bare_login(prefix).await;
        let db = self.client().await;
        db.batch_execute(&format!(
            "GRANT ALL ON DATABASE {db} TO {r};
             GRANT ALL ON SCHEMA public TO {r};
             GRANT ALL ON ALL TABLES IN SCHEMA public TO {r};
             GRANT ALL ON ALL SEQUENCES IN SCHEMA public TO {r};
             DO $$ BEGIN
               IF to_regnamespace('cutover') IS NOT NULL THEN
                 EXECUTE 'GRANT ALL ON SCHEMA cutover TO {r}';
                 EXECUTE 'GRANT ALL ON ALL TABLES IN SCHEMA cutover TO {r}';
                 EXECUTE 'GRANT ALL ON ALL SEQUENCES IN SCHEMA cutover TO {r}';
               END IF;
             END $$;",
            db = quote_ident(&self.name),
            r = quote_ident(&role)
        ))
        .await
        .unwrap_or_else(|e| panic!("granting to {role}: {}", describe(&e)));
        (role, url)
    }

    /// A new login role `<prefix>_<n>` with no privilege at all (dropped with this database).
    /// Returns its name and a URL connecting as it to this database.
    pub async fn bare_login(&self, prefix: &str) -> (String, String) {
        let role = format!("{prefix}_{:08x}", rand::random::<u32>());
        let admin = connect(&self.server_url).await;
        admin
            .batch_execute(&format!("CREATE ROLE {} LOGIN", quote_ident(&role)))
            .await
            .unwrap_or_else(|e| panic!("creating role {role}: {}", describe(&e)));
        self.roles
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .push(role.clone());
        let url = url_with_user(&self.url, &role);
        (role, url)
    }

    /// A new connection to this database (its connection task spawned on
    /// the current runtime).
    pub async fn client(&self) -> tokio_postgres::Client {
        connect(&self.url).await
    }

    /// Run `sql` (any number of statements) in a new session; panics with
    /// the SQL error and the SQL on failure.
    pub async fn exec(&self, sql: &str) {
        let client = self.client().await;
        if let Err(e) = client.batch_execute(sql).await {
            panic!("SQL failed: {}\n--- SQL ---\n{sql}", describe(&e));
        }
    }
}

impl Drop for TestDb {
    fn drop(&mut self) {
        // We may be inside a runtime (the test's) or after it is gone, and
        // must not block_on in either: use a thread with its own runtime.
        let server_url = self.server_url.clone();
        let name = self.name.clone();
        let roles = std::mem::take(&mut *self.roles.lock().unwrap_or_else(|e| e.into_inner()));
        let outcome = std::thread::Builder::new()
            .name(format!("drop-{name}"))
            .spawn(move || drop_database(&server_url, &name, &roles))
            .map_err(|e| format!("spawning a thread: {e}"))
            .and_then(|handle| {
                handle
                    .join()
                    .unwrap_or_else(|_| Err("the drop thread panicked".to_owned()))
            });
        if let Err(e) = outcome {
            // Never panic in Drop (it may run during unwinding).
            eprintln!("warning: could not drop test database {}: {e}", self.name);
        }
    }
}

fn drop_database(server_url: &str, name: &str, roles: &[String]) -> Result<(), String> {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(|e| format!("building a runtime: {e}"))?;
    runtime.block_on(async {
        let work = async {
            let cfg = cutover::db::DbConfig::from_url(server_url).map_err(|e| e.to_string())?;
            let client = cutover::db::connect_app(&cfg, "cutover-tests")
                .await
                .map_err(|e| format!("connecting to {server_url}: {e}"))?;
            let mut statements = vec![format!(
                "DROP DATABASE IF EXISTS {} WITH (FORCE)",
                quote_ident(name)
            )];
            statements.extend(
                roles
                    .iter()
                    .map(|r| format!("DROP ROLE IF EXISTS {}", quote_ident(r))),
            );
            for sql in &statements {
                client
                    .batch_execute(sql)
                    .await
                    .map_err(|e| format!("{sql}: {}", describe(&e)))?;
            }
            Ok(())
        };
        tokio::time::timeout(DB_OP_TIMEOUT, work)
            .await
            .unwrap_or_else(|_| Err(format!("timed out after {DB_OP_TIMEOUT:?}")))
    })
}

/// `url` connecting as `user` instead (no password: the test servers trust local logins).
pub fn url_with_user(url: &str, user: &str) -> String {
    if url.starts_with("postgres://") || url.starts_with("postgresql://") {
        if let Ok(mut parsed) = url::Url::parse(url) {
            if parsed.set_username(user).is_ok() {
                let _ = parsed.set_password(None);
                return parsed.into();
            }
        }
    }
    format!("{url} user={user}")
}

/// `url` with its database replaced by `dbname`; handles both URL
/// (`postgres://…/db`) and key=value (`host=… dbname=…`) forms.
pub fn url_with_dbname(url: &str, dbname: &str) -> String {
    let is_url = url.starts_with("postgres://") || url.starts_with("postgresql://");
    if is_url {
        if let Ok(mut parsed) = url::Url::parse(url) {
            parsed.set_path(&format!("/{dbname}"));
            let query: Vec<(String, String)> = parsed
                .query_pairs()
                .filter(|(k, _)| k != "dbname")
                .map(|(k, v)| (k.into_owned(), v.into_owned()))
                .collect();
            if query.is_empty() {
                parsed.set_query(None);
            } else {
                parsed.query_pairs_mut().clear().extend_pairs(query);
            }
            return parsed.into();
        }
    }
    // key=value: a later dbname overrides an earlier one.
    format!("{url} dbname={dbname}")
}

/// Quote an SQL identifier.
pub fn quote_ident(ident: &str) -> String {
    format!("\"{}\"", ident.replace('"', "\"\""))
}

/// A tokio-postgres error with the server's message, detail and hint.
pub fn describe(e: &tokio_postgres::Error) -> String {
    let Some(db) = e.as_db_error() else {
        return format!("{e:?}");
    };
    let mut out = format!(
        "{}: {} (SQLSTATE {})",
        db.severity(),
        db.message(),
        db.code().code()
    );
    if let Some(detail) = db.detail() {
        out.push_str(&format!("\nDETAIL: {detail}"));
    }
    if let Some(hint) = db.hint() {
        out.push_str(&format!("\nHINT: {hint}"));
    }
    if let Some(position) = db.position() {
        out.push_str(&format!("\nPOSITION: {position:?}"));
    }
    out
}

/// Registers `plan_id` on the control schema with its backfill phase applied, as a backfill test
/// needs before it runs the backfill itself.
pub async fn seed_backfill_applied(client: &tokio_postgres::Client, plan_id: &str) {
    client
        .batch_execute(&format!(
            "INSERT INTO cutover.migrations (plan_id, title, plan_sha256, plan_source, plan_path)
             VALUES ('{plan_id}', 't', 'x', 'x', 'x');
             INSERT INTO cutover.phases (plan_id, phase, state) VALUES ('{plan_id}', 'backfill', 'applied');"
        ))
        .await
        .expect("register the plan with its backfill phase applied");
}
