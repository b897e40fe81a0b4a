//! The helper against the real PostgreSQL of this machine.

use std::time::Instant;

use mcp_runtime_pg_testenv::{Error, Postgres};

#[test]
fn a_server_starts_serves_databases_apart_and_is_gone_after_drop() {
    let t0 = Instant::now();
    let mut pg = Postgres::start();
    eprintln!("postgres: initdb + start in {:?}", t0.elapsed());
    assert!(pg.is_running());
    let version = pg.psql("postgres", "SHOW server_version").unwrap();
    assert!(version.starts_with("15"), "{version}");
    assert_eq!(
        pg.psql("postgres", "SHOW listen_addresses").unwrap(),
        "127.0.0.1"
    );

    let a = pg.database("alpha");
    let b = pg.database("alpha");
    assert_ne!(a.name, b.name);
    a.query("CREATE TABLE t (x int); INSERT INTO t VALUES (1), (2)");
    assert_eq!(a.query("SELECT sum(x) FROM t"), "3");
    // A database per test: b does not see a's table.
    let e = b.try_query("SELECT * FROM t").unwrap_err();
    assert!(e.to_string().contains("does not exist"), "{e}");
    assert!(a.url.ends_with(&format!("/{}", a.name)), "{}", a.url);

    let dir = pg.dir().to_owned();
    let port = pg.port();
    drop(pg);
    assert!(!dir.exists(), "the scratch directory is removed on drop");
    assert!(
        std::net::TcpStream::connect(("127.0.0.1", port)).is_err(),
        "nothing listens on {port} after drop"
    );
}

#[test]
fn missing_binaries_name_the_install_script() {
    let e = Postgres::try_start_in("/nonexistent/postgresql/bin".into()).unwrap_err();
    assert!(matches!(e, Error::NotInstalled { .. }), "{e}");
    assert!(e.to_string().contains("scripts/platform-deps.sh"), "{e}");
}
