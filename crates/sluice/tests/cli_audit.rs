//! `sluice audit verify` and `sluice audit export` read the record and change nothing (issue 11,
//! item 7): a mistyped `--data-dir` fails naming the path and creates nothing (it used to make
//! an empty database and report "audit chain intact: 0 events"); a file or a PostgreSQL database
//! without Sluice's schema fails without being migrated; a real database is read, not written.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use std::path::Path;
use std::process::{Command, Output};

use common::{PASSWORD, Running, ok, sluice};

fn audit(config: &Path, args: &[&str]) -> Output {
    let mut all = vec!["audit"];
    all.extend(args);
    sluice(config, &all, None)
}

/// Refused as a usage error (exit 2), the message naming `what`.
#[track_caller]
fn refused(output: &Output, what: &str) -> String {
    let said = String::from_utf8_lossy(&output.stderr).into_owned();
    assert_eq!(output.status.code(), Some(2), "{said}");
    assert!(said.contains(what), "{said}");
    assert!(output.stdout.is_empty(), "nothing verified or exported");
    said
}

#[test]
fn a_mistyped_data_dir_fails_and_creates_nothing() {
    let base = tempfile::tempdir().unwrap();
    let config = tempfile::tempdir().unwrap();
    let typo = base.path().join("sluice-dta");
    let dir = typo.join("data");
    let dir_text = dir.to_str().unwrap();
    for args in [
        vec!["verify", "--data-dir", dir_text],
        vec!["export", "--data-dir", dir_text],
        vec!["export", "--data-dir", dir_text, "--since", "2026-01-01"],
    ] {
        let said = refused(&audit(config.path(), &args), dir_text);
        assert!(said.contains("no Sluice database"), "{said}");
        assert!(!typo.exists(), "{} was created", typo.display());
    }

    // A directory that exists but holds no database is left as it was.
    let empty = base.path().join("empty");
    std::fs::create_dir(&empty).unwrap();
    refused(
        &audit(
            config.path(),
            &["verify", "--data-dir", empty.to_str().unwrap()],
        ),
        "no Sluice database",
    );
    assert_eq!(std::fs::read_dir(&empty).unwrap().count(), 0);

    // A file of that name that is not Sluice's is not given a schema.
    let foreign = base.path().join("foreign");
    std::fs::create_dir(&foreign).unwrap();
    std::fs::write(foreign.join("sluice.db"), b"").unwrap();
    refused(
        &audit(
            config.path(),
            &["verify", "--data-dir", foreign.to_str().unwrap()],
        ),
        "no Sluice schema",
    );
    assert_eq!(
        std::fs::metadata(foreign.join("sluice.db")).unwrap().len(),
        0
    );
}

#[test]
fn a_real_database_is_read_and_left_unchanged() {
    let data = tempfile::tempdir().unwrap();
    let config = tempfile::tempdir().unwrap();
    let data_dir = data.path().to_str().unwrap();
    let server = Running::start(&["--data-dir", data_dir]);
    ok(&sluice(
        config.path(),
        &["login", "--server", &server.url, "--password-stdin"],
        Some(&format!("{PASSWORD}\n")),
    ));
    ok(&sluice(
        config.path(),
        &["users", "create", "pat", "--role", "security"],
        Some("pat's long password\n"),
    ));
    // While the server runs, and after it stopped.
    let verify = ok(&audit(config.path(), &["verify", "--data-dir", data_dir]));
    assert!(verify.contains("audit chain intact: 3 events"), "{verify}");
    server.stop();
    let database = data.path().join("sluice.db");
    let before = std::fs::read(&database).unwrap();
    let verify = ok(&audit(config.path(), &["verify", "--data-dir", data_dir]));
    assert!(verify.contains("audit chain intact: 3 events"), "{verify}");
    let export = ok(&audit(config.path(), &["export", "--data-dir", data_dir]));
    assert_eq!(export.lines().count(), 3, "{export}");
    assert!(export.contains("user.create"), "{export}");
    assert_eq!(
        std::fs::read(&database).unwrap(),
        before,
        "verify and export leave the database as it was"
    );
}

fn psql(database: &str, sql: &str) -> String {
    let output = Command::new("psql")
        .args([
            "-h",
            "127.0.0.1",
            "-U",
            "postgres",
            "-d",
            database,
            "-qtA",
            "-v",
            "ON_ERROR_STOP=1",
            "-c",
            sql,
        ])
        .output()
        .expect("psql (postgresql-client) must be installed");
    assert!(output.status.success(), "psql {sql}");
    String::from_utf8_lossy(&output.stdout).trim().to_owned()
}

#[test]
fn a_postgresql_database_without_the_schema_is_not_migrated() {
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .subsec_nanos();
    let name = format!("sluice_cli_audit_{}_{nanos}", std::process::id());
    psql("postgres", &format!("CREATE DATABASE {name}"));
    let config = tempfile::tempdir().unwrap();
    let url = format!("postgres://postgres@127.0.0.1:5432/{name}");
    for command in ["verify", "export"] {
        refused(
            &audit(config.path(), &[command, "--database-url", &url]),
            "no Sluice schema",
        );
    }
    let tables = psql(
        &name,
        "SELECT count(*) FROM information_schema.tables WHERE table_schema = 'public'",
    );
    assert_eq!(tables, "0", "no table was created");
    psql("postgres", &format!("DROP DATABASE {name} WITH (FORCE)"));
}
