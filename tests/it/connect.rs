//! Connecting like libpq, against real servers: TLS modes and certificate checks, client
//! certificates, SCRAM through `.pgpass`, a service file and `--password-command`, time-outs
//! that name the stage, secrets that never reach the output, and Cutover's own transactions
//! counted on every kind of connection.
//!
//! Two throwaway clusters, started once (in parallel) and shared by these tests: one with TLS
//! (certificates made at test time by a test CA) and password / certificate rules in
//! pg_hba.conf, one without TLS.

use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::Output;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use cutover::db::{self, DbConfig, DbError, SessionSettings, SslMode, Stage, Verification};
use cutover::throwaway::{ClusterOptions, SslFiles, ThrowawayCluster};
use rcgen::{BasicConstraints, CertificateParams, DnType, IsCa, Issuer, KeyPair};
use tokio::sync::OnceCell;

use crate::common::{self, cutover_bin};
use crate::tally::{assert_counted_exactly, TABLE};

/// The password of `scramuser` (stored as SCRAM-SHA-256).
const SCRAM_PW: &str = "Scr4m-Pw/with?odd@chars";

/// The shared clusters and the certificate directory, dropped at exit.
struct Servers {
    pki: PathBuf,
    _tls: ThrowawayCluster,
    _plain: ThrowawayCluster,
}

/// Ports and files of the shared servers.
#[derive(Clone)]
struct Env {
    tls_port: u16,
    plain_port: u16,
    pki: PathBuf,
    /// The TLS cluster's unix-socket directory.
    tls_socket_dir: PathBuf,
}

impl Env {
    fn file(&self, name: &str) -> String {
        self.pki.join(name).to_string_lossy().into_owned()
    }
}

static SERVERS: OnceCell<Result<Env, String>> = OnceCell::const_new();
/// Taken and dropped at exit, which stops both clusters.
static HELD: Mutex<Option<Servers>> = Mutex::new(None);

extern "C" fn stop_servers() {
    let held = match HELD.lock() {
        Ok(mut g) => g.take(),
        Err(p) => p.into_inner().take(),
    };
    if let Some(s) = held {
        let _ = std::fs::remove_dir_all(&s.pki);
    }
}

/// The shared servers, started by the first test that asks.
async fn env() -> Env {
    let result = SERVERS
        .get_or_init(|| async {
            let servers = start().await?;
            let env = Env {
                tls_port: servers._tls.port(),
                plain_port: servers._plain.port(),
                pki: servers.pki.clone(),
                tls_socket_dir: servers._tls.socket_dir().to_path_buf(),
            };
            *HELD.lock().unwrap_or_else(|e| e.into_inner()) = Some(servers);
            // SAFETY: registers a plain `extern "C" fn()` that never unwinds; runs once.
            unsafe {
                libc::atexit(stop_servers);
            }
            Ok(env)
        })
        .await;
    match result {
        Ok(env) => env.clone(),
        Err(e) => panic!("cannot start the TLS test clusters: {e}"),
    }
}

/// Makes a CA, a server certificate for localhost and 127.0.0.1, a client certificate for
/// `certuser`, and an unrelated CA; starts both clusters at once and creates the roles.
async fn start() -> Result<Servers, String> {
    let dir = tempfile::Builder::new()
        .prefix("cutover-pki-")
        .tempdir()
        .map_err(|e| e.to_string())?
        .keep();
    make_certificates(&dir).map_err(|e| format!("making certificates: {e}"))?;
    let tls_options = ClusterOptions {
        ssl: Some(SslFiles {
            cert: dir.join("server.crt"),
            key: dir.join("server.key"),
            client_ca: Some(dir.join("ca.crt")),
        }),
        hba: vec![
            "hostssl all certuser 127.0.0.1/32 cert".into(),
            "hostssl all scramuser 127.0.0.1/32 scram-sha-256".into(),
            "hostssl all sslonly 127.0.0.1/32 trust".into(),
            "host all postgres 127.0.0.1/32 trust".into(),
        ],
        password_encryption: Some("scram-sha-256".into()),
        without_stat_statements: true,
        // The TLS variants of the tally test compare transaction counters.
        without_autovacuum: true,
        ..ClusterOptions::default()
    };
    let plain_options = ClusterOptions {
        without_stat_statements: true,
        ..ClusterOptions::default()
    };
    let (tls, plain) = tokio::join!(
        ThrowawayCluster::start_with(&tls_options),
        ThrowawayCluster::start_with(&plain_options)
    );
    let (tls, plain) = (
        tls.map_err(|e| e.to_string())?,
        plain.map_err(|e| e.to_string())?,
    );
    let admin = common::connect(&tls.socket_url()).await;
    for sql in [
        "CREATE ROLE certuser LOGIN".to_string(),
        "CREATE ROLE sslonly LOGIN".to_string(),
        format!(
            "CREATE ROLE scramuser LOGIN PASSWORD '{}'",
            SCRAM_PW.replace('\'', "''")
        ),
        "CREATE DATABASE app OWNER scramuser".to_string(),
    ] {
        admin
            .batch_execute(&sql)
            .await
            .map_err(|e| format!("{sql}: {}", common::describe(&e)))?;
    }
    Ok(Servers {
        pki: dir,
        _tls: tls,
        _plain: plain,
    })
}

fn make_certificates(dir: &Path) -> Result<(), Box<dyn std::error::Error>> {
    let write = |name: &str, text: String| -> std::io::Result<()> {
        let path = dir.join(name);
        std::fs::write(&path, text)?;
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o600))
    };
    let ca = |cn: &str| -> Result<(CertificateParams, KeyPair, String), rcgen::Error> {
        let mut params = CertificateParams::new(Vec::<String>::new())?;
        params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        params.distinguished_name.push(DnType::CommonName, cn);
        let key = KeyPair::generate()?;
        let pem = params.self_signed(&key)?.pem();
        Ok((params, key, pem))
    };
    let (ca_params, ca_key, ca_pem) = ca("cutover test CA")?;
    write("ca.crt", ca_pem)?;
    let (_, _, other_pem) = ca("some other CA")?;
    write("other-ca.crt", other_pem)?;
    let issuer = Issuer::from_params(&ca_params, &ca_key);
    let leaf = |sans: Vec<String>, cn: &str| -> Result<(String, String), rcgen::Error> {
        let mut params = CertificateParams::new(sans)?;
        params.distinguished_name.push(DnType::CommonName, cn);
        let key = KeyPair::generate()?;
        let cert = params.signed_by(&key, &issuer)?;
        Ok((cert.pem(), key.serialize_pem()))
    };
    let (server_crt, server_key) = leaf(vec!["localhost".into(), "127.0.0.1".into()], "localhost")?;
    write("server.crt", server_crt)?;
    write("server.key", server_key)?;
    let (client_crt, client_key) = leaf(Vec::new(), "certuser")?;
    write("client.crt", client_crt)?;
    write("client.key", client_key)?;
    Ok(())
}

async fn open(url: &str) -> Result<(tokio_postgres::Client, db::ConnSecurity), DbError> {
    let cfg = DbConfig::from_url(url)?;
    db::connect_with_security(&cfg, &SessionSettings::new("test")).await
}

/// The password of `scramuser`, encoded for a URL.
fn scram_pw_in_url() -> String {
    SCRAM_PW
        .replace('/', "%2F")
        .replace('?', "%3F")
        .replace('@', "%40")
}

fn tls_url(env: &Env, host: &str, params: &str) -> String {
    format!(
        "postgres://postgres@{host}:{}/postgres?{params}",
        env.tls_port
    )
}

#[tokio::test]
async fn verify_full_checks_chain_and_host_name() {
    let env = env().await;
    let ca = env.file("ca.crt");
    for host in ["localhost", "127.0.0.1"] {
        let url = tls_url(&env, host, &format!("sslmode=verify-full&sslrootcert={ca}"));
        let (client, sec) = open(&url).await.unwrap_or_else(|e| panic!("{url}: {e}"));
        let tls = sec.tls.as_ref().expect("encrypted");
        assert_eq!(tls.protocol, "TLSv1.3");
        assert_eq!(sec.verification, Verification::Full);
        assert_eq!(sec.verified_host.as_deref(), Some(host));
        assert!(sec
            .summary()
            .contains(&format!("certificate verified for {host}")));
        let row = client
            .query_one(
                "SELECT ssl, version FROM pg_stat_ssl WHERE pid = pg_backend_pid()",
                &[],
            )
            .await
            .unwrap();
        assert!(row.get::<_, bool>(0), "the server sees TLS");
        assert_eq!(row.get::<_, String>(1), "TLSv1.3");
    }
}

#[tokio::test]
async fn a_wrong_ca_is_refused_with_the_reason() {
    let env = env().await;
    let other = env.file("other-ca.crt");
    for mode in ["verify-full", "verify-ca", "require"] {
        let url = tls_url(
            &env,
            "localhost",
            &format!("sslmode={mode}&sslrootcert={other}"),
        );
        let e = open(&url).await.unwrap_err();
        let text = e.to_string();
        assert!(
            text.contains(&format!("not signed by a CA in {other}")),
            "{mode}: {text}"
        );
        assert!(
            matches!(
                e,
                DbError::Connect {
                    stage: Stage::TlsHandshake,
                    ..
                }
            ),
            "{e:?}"
        );
        assert!(
            !e.is_connection_lost(),
            "{mode}: a bad certificate is not retryable"
        );
    }
}

#[tokio::test]
async fn a_foreign_host_name_fails_verify_full_but_passes_verify_ca() {
    let env = env().await;
    let ca = env.file("ca.crt");
    let url = |mode: &str| {
        format!(
            "host=db.invalid hostaddr=127.0.0.1 port={} user=postgres dbname=postgres sslmode={mode} sslrootcert={ca}",
            env.tls_port
        )
    };
    let e = open(&url("verify-full")).await.unwrap_err().to_string();
    assert!(
        e.contains("not valid for the host name `db.invalid`"),
        "{e}"
    );
    let (_, sec) = open(&url("verify-ca")).await.unwrap();
    assert!(sec.encrypted());
    assert_eq!(sec.verification, Verification::Ca);
    assert_eq!(sec.verified_host, None);
}

#[tokio::test]
async fn require_without_a_root_certificate_encrypts_without_verifying() {
    let env = env().await;
    let (_, sec) = open(&tls_url(&env, "127.0.0.1", "sslmode=require"))
        .await
        .unwrap();
    assert!(sec.encrypted());
    assert_eq!(sec.sslmode, SslMode::Require);
    assert_eq!(sec.verification, Verification::None);
    assert!(sec.summary().contains("not verified"), "{}", sec.summary());
}

#[tokio::test]
async fn client_certificates_authenticate() {
    let env = env().await;
    let base = format!(
        "host=localhost port={} user=certuser dbname=postgres sslmode=verify-full sslrootcert={}",
        env.tls_port,
        env.file("ca.crt")
    );
    let with_cert = format!(
        "{base} sslcert={} sslkey={}",
        env.file("client.crt"),
        env.file("client.key")
    );
    let (client, _) = open(&with_cert).await.unwrap_or_else(|e| panic!("{e}"));
    let who: String = client
        .query_one("SELECT current_user", &[])
        .await
        .unwrap()
        .get(0);
    assert_eq!(who, "certuser");
    // Without a certificate the server refuses the login: a typed SQLSTATE, not retryable.
    let e = open(&base).await.unwrap_err();
    assert_eq!(e.sqlstate().map(|c| c.code()), Some("28000"), "{e}");
    assert!(!e.is_connection_lost());
    assert!(
        matches!(
            e,
            DbError::Connect {
                stage: Stage::Authentication,
                ..
            }
        ),
        "{e:?}"
    );
}

#[tokio::test]
async fn prefer_encrypts_when_offered_and_falls_back_only_without_tls() {
    let env = env().await;
    let (_, sec) = open(&tls_url(&env, "127.0.0.1", "")).await.unwrap();
    assert_eq!(sec.sslmode, SslMode::Prefer);
    assert!(sec.encrypted(), "prefer uses TLS when the server offers it");
    let plain = |mode: &str| {
        format!(
            "postgres://postgres@127.0.0.1:{}/postgres?sslmode={mode}",
            env.plain_port
        )
    };
    let (_, sec) = open(&plain("prefer")).await.unwrap();
    assert!(!sec.encrypted());
    assert!(
        sec.summary().contains("the server offered no TLS"),
        "{}",
        sec.summary()
    );
    let e = open(&plain("require")).await.unwrap_err();
    assert!(e.to_string().contains("does not offer TLS"), "{e}");
    assert!(
        matches!(
            e,
            DbError::Connect {
                stage: Stage::TlsNegotiation,
                ..
            }
        ),
        "{e:?}"
    );
}

#[tokio::test]
async fn allow_retries_with_tls_when_plaintext_is_refused() {
    let env = env().await;
    let url = |mode: &str| {
        format!(
            "postgres://sslonly@127.0.0.1:{}/postgres?sslmode={mode}",
            env.tls_port
        )
    };
    let (_, sec) = open(&url("allow")).await.unwrap_or_else(|e| panic!("{e}"));
    assert!(sec.encrypted());
    let e = open(&url("disable")).await.unwrap_err();
    assert_eq!(e.sqlstate().map(|c| c.code()), Some("28000"), "{e}");
    // A server that takes plaintext gets plaintext under `allow`.
    let (_, sec) = open(&format!(
        "postgres://postgres@127.0.0.1:{}/postgres?sslmode=allow",
        env.plain_port
    ))
    .await
    .unwrap();
    assert!(!sec.encrypted());
}

#[tokio::test]
async fn scram_with_channel_binding_over_tls() {
    let env = env().await;
    let pw = scram_pw_in_url();
    let url = format!(
        "postgres://scramuser:{pw}@localhost:{}/app?sslmode=verify-full&sslrootcert={}&channel_binding=require",
        env.tls_port,
        env.file("ca.crt")
    );
    let (client, _) = open(&url).await.unwrap_or_else(|e| panic!("{e}"));
    let who: String = client
        .query_one("SELECT current_user", &[])
        .await
        .unwrap()
        .get(0);
    assert_eq!(who, "scramuser");
    let wrong = url.replace(&pw, "wrong");
    let e = open(&wrong).await.unwrap_err();
    assert_eq!(e.sqlstate().map(|c| c.code()), Some("28P01"), "{e}");
}

/// Cutover's count of its own transactions equals the server's on every kind of connection:
/// TLS (also with SCRAM channel binding, which passes through the counting wrapper), the unix
/// socket, and plaintext TCP.
#[tokio::test]
async fn own_transactions_are_counted_over_tls_unix_sockets_and_plaintext() {
    let env = env().await;
    let socket = |db: &str| {
        format!(
            "host={} port={} user=postgres dbname={db}",
            env.tls_socket_dir.display(),
            env.tls_port
        )
    };
    let admin = common::connect(&socket("postgres")).await;
    let name = format!("tally_{:08x}", rand::random::<u32>());
    admin
        .batch_execute(&format!("CREATE DATABASE {name} OWNER scramuser"))
        .await
        .unwrap();
    let setup = common::connect(&socket(&name)).await;
    setup
        .batch_execute(&format!("{TABLE}; ALTER TABLE t OWNER TO scramuser"))
        .await
        .unwrap();
    drop(setup);
    let ca = env.file("ca.crt");
    let variants = [
        (
            tls_url(&env, "127.0.0.1", "sslmode=require").replace("/postgres?", &format!("/{name}?")),
            true,
        ),
        (
            format!(
                "postgres://scramuser:{}@localhost:{}/{name}?sslmode=verify-full&sslrootcert={ca}&channel_binding=require",
                scram_pw_in_url(),
                env.tls_port
            ),
            true,
        ),
        (socket(&name), false),
        (
            tls_url(&env, "127.0.0.1", "sslmode=disable").replace("/postgres?", &format!("/{name}?")),
            false,
        ),
    ];
    for (url, encrypted) in variants {
        // Shown masked: the SCRAM variant's URL holds a password.
        let shown = DbConfig::from_url(&url).unwrap().display();
        let (_, security) = open(&url).await.unwrap_or_else(|e| panic!("{shown}: {e}"));
        assert_eq!(security.encrypted(), encrypted, "{shown}: {security:?}");
        let ours = assert_counted_exactly(&admin, &url, &name).await;
        assert!(
            ours.commits > 20 && ours.rollbacks > 10,
            "{shown}: {ours:?}"
        );
        assert_eq!(ours.deadlocks, 1, "{shown}: {ours:?}");
    }
    admin
        .batch_execute(&format!("DROP DATABASE {name} WITH (FORCE)"))
        .await
        .unwrap();
}

/// Runs the binary with a clean libpq environment and `HOME` set to `home`.
fn cutover(
    args: &[&str],
    home: &Path,
    vars: &[(&str, &str)],
) -> impl std::future::Future<Output = Output> + 'static {
    let mut cmd = tokio::process::Command::new(cutover_bin());
    cmd.args(args).env("HOME", home).env("CUTOVER_LOG", "warn");
    for (k, _) in std::env::vars() {
        if k.starts_with("PG") || k == "DATABASE_URL" || k == "CUTOVER_PASSWORD_COMMAND" {
            cmd.env_remove(k);
        }
    }
    for (k, v) in vars {
        cmd.env(k, v);
    }
    cmd.stdin(std::process::Stdio::null());
    async move { cmd.output().await.expect("running cutover") }
}

fn text(out: &Output) -> String {
    format!(
        "status {:?}\nstdout:\n{}\nstderr:\n{}",
        out.status.code(),
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    )
}

fn private_file(path: &Path, content: &str, mode: u32) {
    std::fs::write(path, content).unwrap();
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(mode)).unwrap();
}

#[tokio::test]
async fn scram_through_pgpass_and_a_service_file() {
    let env = env().await;
    let home = tempfile::tempdir().unwrap();
    let ca = env.file("ca.crt");
    let escaped = SCRAM_PW.replace('\\', "\\\\").replace(':', "\\:");
    private_file(
        &home.path().join(".pgpass"),
        &format!(
            "# test\nlocalhost:{}:app:scramuser:{escaped}\n",
            env.tls_port
        ),
        0o600,
    );
    let url = format!(
        "postgres://scramuser@localhost:{}/app?sslmode=verify-full&sslrootcert={ca}",
        env.tls_port
    );
    let out = cutover(&["bootstrap", "--database-url", &url], home.path(), &[]).await;
    let all = text(&out);
    assert_eq!(out.status.code(), Some(0), "{all}");
    assert!(
        all.contains("control schema on postgres://scramuser@localhost:"),
        "{all}"
    );
    assert!(!all.contains(SCRAM_PW), "{all}");

    // A password file others can read is ignored, with libpq's warning.
    std::fs::set_permissions(
        home.path().join(".pgpass"),
        std::fs::Permissions::from_mode(0o644),
    )
    .unwrap();
    let out = cutover(&["bootstrap", "--database-url", &url], home.path(), &[]).await;
    let all = text(&out);
    assert_eq!(out.status.code(), Some(1), "{all}");
    assert!(all.contains("has group or world access"), "{all}");
    assert!(!all.contains(SCRAM_PW), "{all}");

    // A service file names server, TLS settings and password.
    let services = home.path().join("services.conf");
    private_file(
        &services,
        &format!(
            "[migrations]\nhost=localhost\nport={}\ndbname=app\nuser=scramuser\npassword={SCRAM_PW}\nsslmode=verify-full\nsslrootcert={ca}\n",
            env.tls_port
        ),
        0o600,
    );
    let services = services.to_string_lossy().into_owned();
    let vars = [
        ("PGSERVICEFILE", services.as_str()),
        ("PGSERVICE", "migrations"),
    ];
    let out = cutover(&["bootstrap"], home.path(), &vars).await;
    let all = text(&out);
    assert_eq!(out.status.code(), Some(0), "{all}");
    assert!(all.contains("postgres://scramuser:***@localhost:"), "{all}");
    assert!(!all.contains(SCRAM_PW), "{all}");
    // The same through `service=` in a connection string.
    let out = cutover(
        &["bootstrap", "--database-url", "service=migrations"],
        home.path(),
        &vars[..1],
    )
    .await;
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));
}

#[tokio::test]
async fn password_command_supplies_the_password_and_is_never_shown() {
    let env = env().await;
    let home = tempfile::tempdir().unwrap();
    let pw_file = home.path().join("pw");
    private_file(&pw_file, &format!("{SCRAM_PW}\n"), 0o600);
    let url = format!(
        "postgres://scramuser@127.0.0.1:{}/app?sslmode=require",
        env.tls_port
    );
    let plan = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/plans/accounts-balance-cents.toml"
    );
    let command = format!("cat {}", pw_file.display());
    // `status` is a viewer command: an operator bootstraps the control schema first.
    let boot = cutover(
        &[
            "bootstrap",
            "--database-url",
            &url,
            "--password-command",
            &command,
        ],
        home.path(),
        &[],
    )
    .await;
    assert_eq!(boot.status.code(), Some(0), "{}", text(&boot));
    let out = cutover(
        &[
            "status",
            plan,
            "--json",
            "--database-url",
            &url,
            "--password-command",
            &command,
        ],
        home.path(),
        &[],
    )
    .await;
    let all = text(&out);
    assert_eq!(out.status.code(), Some(0), "{all}");
    assert!(!all.contains(SCRAM_PW), "{all}");
    let json: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(json["connection"]["sslmode"], "require");
    assert_eq!(json["connection"]["tls"]["protocol"], "TLSv1.3");
    assert_eq!(json["connection"]["verification"], "none");

    // Through the environment variable, with a failing command: the exit status is named,
    // the output is not.
    let failing = format!("cat {}; echo oops-On-Stderr >&2; exit 7", pw_file.display());
    let out = cutover(
        &["bootstrap", "--database-url", &url],
        home.path(),
        &[("CUTOVER_PASSWORD_COMMAND", failing.as_str())],
    )
    .await;
    let all = text(&out);
    assert_eq!(out.status.code(), Some(1), "{all}");
    assert!(all.contains("exit status: 7"), "{all}");
    assert!(
        all.contains("during the password command") || all.contains("the password command failed"),
        "{all}"
    );
    assert!(
        !all.contains(SCRAM_PW) && !all.contains("oops-On-Stderr"),
        "{all}"
    );

    // A wrong password from the command: the server's refusal, not the password.
    let out = cutover(
        &[
            "bootstrap",
            "--database-url",
            &url,
            "--password-command",
            "printf Wr0ng-Secret-9",
        ],
        home.path(),
        &[],
    )
    .await;
    let all = text(&out);
    assert_eq!(out.status.code(), Some(1), "{all}");
    assert!(all.contains("28P01"), "{all}");
    assert!(!all.contains("Wr0ng-Secret-9"), "{all}");
}

/// A listener that never accepts: the kernel completes the TCP handshake, then nothing
/// answers. Every command must give up within connect_timeout and name the stage.
#[tokio::test]
async fn a_server_that_never_answers_times_out_naming_the_stage() {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    let home = tempfile::tempdir().unwrap();
    let plan = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/plans/accounts-balance-cents.toml"
    );
    let url = format!("postgres://u:Hung-Secret@127.0.0.1:{port}/db?connect_timeout=2");
    let plain = format!("postgres://u@127.0.0.1:{port}/db?sslmode=disable");
    let started = Instant::now();
    let (status, audit, disabled) = tokio::join!(
        cutover(
            &["status", plan, "--json", "--database-url", &url],
            home.path(),
            &[]
        ),
        cutover(
            &["audit", "verify"],
            home.path(),
            &[("DATABASE_URL", url.as_str())]
        ),
        cutover(
            &["audit", "verify", "--database-url", &plain],
            home.path(),
            &[("PGCONNECT_TIMEOUT", "2")]
        ),
    );
    let took = started.elapsed();
    assert!(took < Duration::from_secs(8), "took {took:?}");
    for (out, stage) in [
        (&status, "TLS negotiation"),
        (&audit, "TLS negotiation"),
        (&disabled, "authentication"),
    ] {
        let all = text(out);
        assert_eq!(out.status.code(), Some(1), "{all}");
        assert!(
            all.contains(&format!("timed out after 2s during {stage}")),
            "{all}"
        );
        assert!(!all.contains("Hung-Secret"), "{all}");
    }
    drop(listener);
}

/// Malformed connection strings through the binary: a clear error, never the password.
#[tokio::test]
async fn malformed_connection_strings_never_print_the_password() {
    let home = tempfile::tempdir().unwrap();
    let cases = [
        ("Se/CrEt", "postgres://u:Se/CrEt@host:notaport/db"),
        ("p@ss", "postgres://u:p@ss@host/db"),
        ("p#ss", "postgres://u:p#ss@host/db"),
        ("Pct%zz", "postgres://u:Pct%zz@host/db"),
        ("two words", "host=h password='two words' port=abc"),
        ("abc def", r"host=h password=abc\ def sslmode=bogus"),
        ("Unquoted", "host=h password=Unquoted rest"),
        ("Qu3ry", "postgres://h/db?password=Qu3ry&bogus=1"),
    ];
    for (secret, url) in cases {
        let out = cutover(&["bootstrap", "--database-url", url], home.path(), &[]).await;
        let all = text(&out);
        assert_eq!(out.status.code(), Some(1), "{url}: {all}");
        assert!(all.contains("invalid connection setting"), "{url}: {all}");
        assert!(!all.contains(secret), "{url}: {all}");
    }
    // PGPASSWORD with an unusable setting elsewhere.
    let out = cutover(
        &["bootstrap"],
        home.path(),
        &[("PGPASSWORD", "EnvPw-77"), ("PGHOST", "h"), ("PGPORT", "x")],
    )
    .await;
    let all = text(&out);
    assert_eq!(out.status.code(), Some(1), "{all}");
    assert!(all.contains("PGPORT") && !all.contains("EnvPw-77"), "{all}");
}
