//! Resolution of connection settings (libpq's order and defaults), and the guarantee that no
//! error or `Debug` output shows a password.

use std::os::unix::fs::PermissionsExt;
use std::path::PathBuf;
use std::time::Duration;

use super::conninfo;
use super::settings::HostKind;
use super::*;

fn env(vars: &[(&str, &str)]) -> Env {
    Env::Fixed(
        vars.iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect(),
    )
}

fn cfg(text: &str, vars: &[(&str, &str)]) -> DbConfig {
    DbConfig::parse_with(text, &env(vars)).unwrap_or_else(|e| panic!("{text}: {e}"))
}

/// Every way a password can reach an error: each case is (the secret, the input, extra
/// environment). The rendered error (`Display` and `Debug`) must not contain the secret.
#[test]
fn no_error_shows_a_password() {
    let dir = tempfile::tempdir().unwrap();
    let service = dir.path().join("services.conf");
    std::fs::write(
        &service,
        "[bad]\nhost=h\npassword=Serv1cePw\nport=notaport\n\n[typo]\npassword=Serv2cePw\nhots=x\n",
    )
    .unwrap();
    let service = service.to_string_lossy().into_owned();
    type Case<'a> = (&'a str, &'a str, Vec<(&'a str, &'a str)>);
    let cases: Vec<Case<'_>> = vec![
        // URLs with characters that must be percent-encoded.
        ("Se/CrEt", "postgres://u:Se/CrEt@host:notaport/db", vec![]),
        ("Se/CrEt", "postgres://u:Se/CrEt@host/db", vec![]),
        (
            "Se/CrEt",
            "postgresql://u:Se/CrEt@host:5432/db?sslmode=require",
            vec![],
        ),
        ("p?ss", "postgres://u:p?ss@host:notaport/db", vec![]),
        ("p@ss", "postgres://u:p@ss@host/db", vec![]),
        ("p@ss", "postgres://u:p@ss@host:x/db", vec![]),
        ("p#ss", "postgres://u:p#ss@host/db", vec![]),
        ("pa%zzss", "postgres://u:pa%zzss@host/db", vec![]),
        ("pa%zzss", "postgres://u:pa%zzss@host:1/db", vec![]),
        ("s3cr%2Ft", "postgres://u:s3cr%2Ft@host:99999/db", vec![]),
        ("s3cr/t", "postgres://u:s3cr%2Ft@host:99999/db", vec![]),
        (
            "pw:with:colons",
            "postgres://u:pw:with:colons@h:bad/db",
            vec![],
        ),
        ("S%20p", "postgresql://u:S%20p@[::1/db", vec![]),
        ("S p", "postgresql://u:S%20p@[::1/db", vec![]),
        (
            "Qu3ry",
            "postgres://h/db?password=Qu3ry&sslmode=bogus",
            vec![],
        ),
        ("Qu?ry", "postgres://h/db?password=Qu%3Fry&bogus=1", vec![]),
        ("Qu%zry", "postgres://h/db?password=Qu%zry", vec![]),
        (
            "hunter2",
            "postgres://u:hunter2@h/db?sslmode=verify-full",
            vec![],
        ),
        ("hunter2", "postgres://u:hunter2@h/db?hostaddr=nope", vec![]),
        (
            "hunter2",
            "postgres://u:hunter2@h/db?connect_timeout=soon",
            vec![],
        ),
        ("hunter2", "postgres://u:hunter2@h,i,j/db?port=1,2", vec![]),
        (
            "hunter2",
            "postgres://u:hunter2@h/db?sslrootcert=system&sslmode=require",
            vec![],
        ),
        ("hunter2", "http://u:hunter2@h/db", vec![]),
        // key=value strings.
        ("two words", "password='two words' port=abc", vec![]),
        ("abc def", r"password=abc\ def host=h port=x", vec![]),
        ("words", "password=two words host=h", vec![]),
        ("ghi", "password=abc def=ghi", vec![]),
        ("def", "password=abc def=ghi", vec![]),
        ("Unt3rm", "password='Unt3rm host=h", vec![]),
        ("hunter2", "host=h password=hunter2 sslmode=bogus", vec![]),
        ("hunter2", "host=h password=hunter2 keepalives=2", vec![]),
        ("hunter2", "password = hunter2 service=missing", vec![]),
        // The environment, service files.
        ("EnvPw1", "host=h port=nope", vec![("PGPASSWORD", "EnvPw1")]),
        (
            "EnvPw1",
            "",
            vec![
                ("PGPASSWORD", "EnvPw1"),
                ("PGHOST", "h"),
                ("PGPORT", "nope"),
            ],
        ),
        (
            "EnvPw1",
            "postgres://h/db",
            vec![("PGPASSWORD", "EnvPw1"), ("PGSSLMODE", "bogus")],
        ),
        (
            "Serv1cePw",
            "service=bad",
            vec![("PGSERVICEFILE", &service)],
        ),
        (
            "Serv2cePw",
            "service=typo",
            vec![("PGSERVICEFILE", &service)],
        ),
        (
            "Serv1cePw",
            "",
            vec![("PGSERVICEFILE", &service), ("PGSERVICE", "bad")],
        ),
    ];
    for (secret, input, vars) in &cases {
        let env = env(vars);
        let result = if input.is_empty() {
            DbConfig::resolve_with(None, &env).map(|c| c.unwrap_or_else(|| panic!("{vars:?}")))
        } else {
            DbConfig::parse_with(input, &env)
        };
        let e = match result {
            Err(e) => e,
            Ok(c) => panic!("{input}: expected an error, got {c:?}"),
        };
        let shown = format!("{e} / {e:?}");
        assert!(!shown.contains(secret), "{input}: `{secret}` in: {shown}");
        assert!(!shown.is_empty());
    }
}

/// The errors above are still useful: they say what is wrong and how to fix it.
#[test]
fn malformed_urls_get_a_fix() {
    let e = |text: &str| {
        DbConfig::parse_with(text, &env(&[]))
            .unwrap_err()
            .to_string()
    };
    assert!(e("postgres://u:Se/CrEt@host:notaport/db").contains("as %2F"));
    assert!(e("postgres://u:p@ss@host/db").contains("more than one `@`"));
    assert!(e("postgres://h:notaport/db").contains("port"));
    assert!(e("host=h port=abc").contains("`abc`"));
    assert!(e("host=h sslmode=bogus").contains("`bogus` is not an sslmode"));
    let svc = e("service=nowhere");
    assert!(
        svc.contains("service `nowhere`") && svc.contains("pg_service.conf"),
        "{svc}"
    );
}

/// `Debug` and `display` of working configurations mask the password.
#[test]
fn configurations_mask_the_password() {
    for (secret, text) in [
        ("Val1dPw", "postgres://u:Val1dPw@h:6543/db"),
        ("Val id", "host=h user=u password='Val id'"),
        ("p@ss/w", "postgres://u:p%40ss%2Fw@h/db"),
    ] {
        let c = cfg(text, &[]);
        let shown = format!("{c:?} {}", c.display());
        assert!(!shown.contains(secret), "{shown}");
        assert!(c.display().contains("u:***@h"), "{shown}");
    }
    let c = cfg("host=h", &[("PGPASSWORD", "EnvPw1")]);
    assert!(!format!("{c:?}").contains("EnvPw1"));
    let p = conninfo::parse("password=Pw1 host=h").unwrap();
    assert!(!format!("{p:?}").contains("Pw1"));
}

/// A connection attempt that fails shows the masked target, not the password.
#[tokio::test]
async fn failed_connections_do_not_show_the_password() {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    drop(listener);
    let c = cfg(&format!("postgres://u:Val1dPw@127.0.0.1:{port}/db"), &[]);
    let e = connect(&c, &SessionSettings::new("t")).await.unwrap_err();
    let shown = format!("{e} {e:?}");
    assert!(!shown.contains("Val1dPw"), "{shown}");
    assert!(shown.contains("u:***@127.0.0.1"), "{shown}");
    assert_eq!(e.sqlstate(), None);
    assert!(
        e.is_connection_lost(),
        "a refused TCP connection is retryable: {shown}"
    );
    match e {
        DbError::Connect { stage, .. } => assert_eq!(stage, Stage::Tcp),
        other => panic!("{other:?}"),
    }
}

#[test]
fn explicit_settings_beat_the_service_file_which_beats_the_environment() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("pg_service.conf");
    std::fs::write(
        &file,
        "[app]\nhost=svc-host\nport=7000\ndbname=svcdb\nuser=svcuser\n",
    )
    .unwrap();
    let file = file.to_string_lossy().into_owned();
    let vars = [
        ("PGSERVICEFILE", file.as_str()),
        ("PGHOST", "env-host"),
        ("PGPORT", "8000"),
        ("PGUSER", "envuser"),
        ("PGDATABASE", "envdb"),
    ];
    let c = cfg("service=app port=6000", &vars);
    assert_eq!(c.display(), "postgres://svcuser@svc-host:6000/svcdb");
    let c = cfg("postgres://urlhost/urldb", &vars);
    assert_eq!(c.display(), "postgres://envuser@urlhost:8000/urldb");
    // PGSERVICE applies when the string names no service.
    let mut with_service = vars.to_vec();
    with_service.push(("PGSERVICE", "app"));
    let c = cfg("postgres:///x", &with_service);
    assert_eq!(c.display(), "postgres://svcuser@svc-host:7000/x");
    // The environment alone configures a connection.
    let c = DbConfig::resolve_with(None, &env(&vars)).unwrap().unwrap();
    assert_eq!(c.display(), "postgres://envuser@env-host:8000/envdb");
    assert!(DbConfig::resolve_with(None, &env(&[("PGUSER", "u")]))
        .unwrap()
        .is_none());
}

#[test]
fn the_system_service_file_is_searched_after_the_users() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(
        dir.path().join(".pg_service.conf"),
        "[mine]\nhost=home-host\n",
    )
    .unwrap();
    let sys = dir.path().join("etc");
    std::fs::create_dir(&sys).unwrap();
    std::fs::write(
        sys.join("pg_service.conf"),
        "[mine]\nhost=sys-host\n[shared]\nhost=sys-host\n",
    )
    .unwrap();
    let home = dir.path().to_string_lossy().into_owned();
    let sys = sys.to_string_lossy().into_owned();
    let vars = [("HOME", home.as_str()), ("PGSYSCONFDIR", sys.as_str())];
    assert!(cfg("service=mine", &vars).display().contains("@home-host:"));
    assert!(cfg("service=shared", &vars)
        .display()
        .contains("@sys-host:"));
    // An explicit PGSERVICEFILE that does not exist is an error.
    let missing = format!("{home}/nope.conf");
    let e = DbConfig::parse_with("service=mine", &env(&[("PGSERVICEFILE", &missing)])).unwrap_err();
    assert!(e.to_string().contains("nope.conf"), "{e}");
}

#[test]
fn timeouts_and_keepalives() {
    assert_eq!(
        cfg("host=h", &[]).connect_timeout(),
        Some(DEFAULT_CONNECT_TIMEOUT)
    );
    assert_eq!(
        cfg("host=h connect_timeout=1", &[]).connect_timeout(),
        Some(Duration::from_secs(2))
    );
    assert_eq!(cfg("host=h connect_timeout=0", &[]).connect_timeout(), None);
    assert_eq!(
        cfg("host=h", &[("PGCONNECT_TIMEOUT", "7")]).connect_timeout(),
        Some(Duration::from_secs(7))
    );
    let c = cfg(
        "host=h keepalives_idle=5 keepalives_interval=2 keepalives_count=4",
        &[],
    );
    assert!(c.s.keepalives.enabled);
    assert_eq!(c.s.keepalives.idle, Duration::from_secs(5));
    assert!(!cfg("host=h keepalives=0", &[]).s.keepalives.enabled);
}

#[test]
fn application_name_keeps_the_cutover_prefix() {
    assert_eq!(
        cfg("host=h", &[]).application_name("status"),
        "cutover/status"
    );
    let c = cfg("host=h", &[("PGAPPNAME", "deploy-42")]);
    assert_eq!(c.application_name("status"), "cutover/status (deploy-42)");
    let c = cfg("host=h application_name=ci", &[("PGAPPNAME", "ignored")]);
    assert_eq!(
        c.application_name("backfill/w1"),
        "cutover/backfill/w1 (ci)"
    );
    let long = cfg(&format!("host=h application_name={}", "é".repeat(60)), &[]);
    let name = long.application_name("status");
    assert!(
        name.len() <= 63 && name.starts_with("cutover/status ("),
        "{name}"
    );
}

#[test]
fn tls_settings_follow_libpq() {
    let dir = tempfile::tempdir().unwrap();
    let home = dir.path().to_string_lossy().into_owned();
    let vars = [("HOME", home.as_str())];
    let c = cfg("host=h", &vars);
    assert_eq!(c.tls().mode, SslMode::Prefer);
    assert_eq!(c.tls().rootcert, None);
    assert_eq!(c.tls().verification(), Verification::None);
    // sslrootcert=system: verify-full by default, weaker modes refused.
    assert_eq!(
        cfg("host=h sslrootcert=system", &vars).tls().mode,
        SslMode::VerifyFull
    );
    let e = DbConfig::parse_with("host=h sslrootcert=system sslmode=require", &env(&vars))
        .unwrap_err()
        .to_string();
    assert!(e.contains("verify-full"), "{e}");
    // verify-ca without any root certificate is refused up front.
    let e = DbConfig::parse_with("host=h sslmode=verify-ca", &env(&vars))
        .unwrap_err()
        .to_string();
    assert!(e.contains("sslrootcert"), "{e}");
    // ~/.postgresql/root.crt makes require verify the CA, as in libpq.
    let pg = dir.path().join(".postgresql");
    std::fs::create_dir(&pg).unwrap();
    std::fs::write(pg.join("root.crt"), "x").unwrap();
    std::fs::write(pg.join("postgresql.crt"), "x").unwrap();
    let c = cfg("host=h sslmode=require", &vars);
    assert_eq!(c.tls().verification(), Verification::Ca);
    assert_eq!(c.tls().rootcert, Some(RootCert::File(pg.join("root.crt"))));
    assert_eq!(c.tls().cert, Some(pg.join("postgresql.crt")));
    assert_eq!(c.tls().key, Some(pg.join("postgresql.key")));
    // The PG* variables supply TLS settings for URLs too.
    let c = cfg(
        "postgres://h/db",
        &[
            ("PGSSLMODE", "verify-full"),
            ("PGSSLROOTCERT", "/ca.pem"),
            ("PGSSLCERT", "/c.pem"),
            ("PGSSLKEY", "/k.pem"),
        ],
    );
    assert_eq!(c.tls().mode, SslMode::VerifyFull);
    assert_eq!(c.tls().rootcert, Some(RootCert::File("/ca.pem".into())));
    assert_eq!(c.tls().cert, Some(PathBuf::from("/c.pem")));
    assert_eq!(c.tls().key, Some(PathBuf::from("/k.pem")));
}

#[test]
fn hosts_ports_and_sockets() {
    let c = cfg("host=a,b,/run/pg port=1,2,3 user=u dbname=d", &[]);
    assert_eq!(c.display(), "postgres://u@a:1,b:2,/run/pg:3/d");
    assert_eq!(c.s.targets[2].host, HostKind::Unix("/run/pg".into()));
    let c = cfg("hostaddr=127.0.0.1 host=db.example port=5", &[]);
    assert_eq!(c.s.targets[0].hostaddr, Some("127.0.0.1".parse().unwrap()));
    assert_eq!(c.s.targets[0].host, HostKind::Tcp("db.example".into()));
    let e = DbConfig::parse_with("host=a,b port=1,2,3", &env(&[])).unwrap_err();
    assert!(e.to_string().contains("3 ports for 2 hosts"), "{e}");
    let env_vars = cfg("host=h port=6 user=u password=pw sslmode=require", &[]).libpq_env();
    assert!(env_vars.contains(&("PGHOST", "h".to_string())));
    assert!(env_vars.contains(&("PGPORT", "6".to_string())));
    assert!(env_vars.contains(&("PGPASSWORD", "pw".to_string())));
    assert!(env_vars.contains(&("PGSSLMODE", "require".to_string())));
}

#[tokio::test]
async fn password_sources_in_order() {
    let dir = tempfile::tempdir().unwrap();
    let pgpass = dir.path().join("pgpass");
    std::fs::write(&pgpass, "h:5432:d:u:FromFile\n").unwrap();
    std::fs::set_permissions(&pgpass, std::fs::Permissions::from_mode(0o600)).unwrap();
    let file = pgpass.to_string_lossy().into_owned();
    let target = |c: &DbConfig| c.s.targets[0].clone();
    let c = cfg("host=h user=u dbname=d", &[("PGPASSFILE", &file)]);
    let pw = c.s.password_for(&target(&c)).await.unwrap();
    assert_eq!(pw.map(|p| p.0), Some("FromFile".into()));
    let c = cfg(
        "host=h user=u dbname=d passfile=/nonexistent",
        &[("PGPASSFILE", &file)],
    );
    assert!(c.s.password_for(&target(&c)).await.unwrap().is_none());
    let c = cfg(
        "host=h user=u dbname=d",
        &[("PGPASSFILE", &file), ("PGPASSWORD", "FromEnv")],
    );
    let pw = c.s.password_for(&target(&c)).await.unwrap();
    assert_eq!(pw.map(|p| p.0), Some("FromEnv".into()));
    let c = c.with_password_command(Some("printf FromCommand".into()));
    let pw = c.s.password_for(&target(&c)).await.unwrap();
    assert_eq!(pw.map(|p| p.0), Some("FromCommand".into()));
    assert!(c.display().contains(":***@"));
}
