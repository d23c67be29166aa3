//! `sluice server` as a real process over real HTTP, driven by the CLI a newcomer would use:
//! login (token file mode 0600), tokens, users, graceful shutdown, and `sluice audit verify`
//! catching rows edited behind the server's back on SQLite and PostgreSQL; a bad first admin
//! password refused before anything is created, and an admin containing an account.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use std::path::Path;
use std::process::Command;

use common::{PASSWORD, Person, Running, free_port, http, http_get, ok, sluice};

#[test]
fn a_newcomer_logs_in_and_manages_tokens_and_users() {
    let data = tempfile::tempdir().unwrap();
    let config = tempfile::tempdir().unwrap();
    let data_dir = data.path().to_str().unwrap();
    let server = Running::start(&["--data-dir", data_dir]);
    let url = server.url.clone();

    let wrong = sluice(
        config.path(),
        &[
            "login",
            "--server",
            &url,
            "--username",
            "admin",
            "--password-stdin",
        ],
        Some("nope\n"),
    );
    assert!(!wrong.status.success());
    assert!(String::from_utf8_lossy(&wrong.stderr).contains("wrong user name or password"));

    ok(&sluice(
        config.path(),
        &["login", "--server", &url, "--password-stdin"],
        Some(&format!("{PASSWORD}\n")),
    ));
    let credentials = config.path().join("sluice/credentials.json");
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::metadata(&credentials)
            .unwrap()
            .permissions()
            .mode();
        assert_eq!(mode & 0o777, 0o600, "the token file is private");
    }
    assert!(
        std::fs::read_to_string(&credentials)
            .unwrap()
            .contains("slc_")
    );
    assert_eq!(
        ok(&sluice(config.path(), &["whoami"], None)).trim(),
        "admin (viewer,admin)"
    );

    ok(&sluice(
        config.path(),
        &[
            "users", "create", "olivia", "--role", "operator", "--group", "cab",
        ],
        Some("olivia's long password\n"),
    ));
    let users = ok(&sluice(config.path(), &["users", "list"], None));
    assert!(
        users
            .lines()
            .any(|l| l.starts_with("olivia") && l.contains("operator")),
        "{users}"
    );

    let secret = ok(&sluice(
        config.path(),
        &[
            "token",
            "create",
            "--name",
            "ci",
            "--role",
            "viewer",
            "--expires",
            "7d",
        ],
        None,
    ));
    let secret = secret.trim().to_owned();
    assert!(secret.starts_with("slc_"));
    // The token works on its own, as automation would use it.
    let whoami = Command::new(env!("CARGO_BIN_EXE_sluice"))
        .args(["whoami", "--server", &url])
        .env("SLUICE_TOKEN", &secret)
        .env("XDG_CONFIG_HOME", tempfile::tempdir().unwrap().path())
        .output()
        .unwrap();
    assert_eq!(ok(&whoami).trim(), "admin (viewer)");

    let list = ok(&sluice(
        config.path(),
        &["token", "list", "--output", "json"],
        None,
    ));
    let tokens: serde_json::Value = serde_json::from_str(&list).unwrap();
    let id = tokens
        .as_array()
        .unwrap()
        .iter()
        .find(|t| t["name"] == "ci")
        .unwrap()["id"]
        .as_str()
        .unwrap()
        .to_owned();
    assert!(!list.contains("slc_"), "listings never show secrets");
    ok(&sluice(config.path(), &["token", "revoke", &id], None));
    let after = Command::new(env!("CARGO_BIN_EXE_sluice"))
        .args(["whoami", "--server", &url])
        .env("SLUICE_TOKEN", &secret)
        .output()
        .unwrap();
    assert!(
        !after.status.success(),
        "a revoked token is cut off at once"
    );

    server.stop();

    // The record, checked and exported with the server stopped.
    let verify = ok(&sluice(
        config.path(),
        &["audit", "verify", "--data-dir", data_dir],
        None,
    ));
    assert!(verify.contains("audit chain intact"), "{verify}");
    let export = ok(&sluice(
        config.path(),
        &[
            "audit",
            "export",
            "--data-dir",
            data_dir,
            "--since",
            "2000-01-01",
        ],
        None,
    ));
    let actions: Vec<String> = export
        .lines()
        .map(|l| {
            serde_json::from_str::<serde_json::Value>(l).unwrap()["action"]
                .as_str()
                .unwrap()
                .to_owned()
        })
        .collect();
    assert_eq!(
        actions,
        [
            "user.create",
            "login.failure",
            "token.create",
            "user.create",
            "token.create",
            "token.revoke"
        ]
    );

    // Someone edits a row behind the server's back.
    let db = data.path().join("sluice.db");
    let tamper = Command::new("python3")
        .args([
            "-c",
            "import sqlite3,sys; c=sqlite3.connect(sys.argv[1]); c.execute(\"UPDATE audit_events SET actor='mallory' WHERE seq=4\"); c.commit()",
            db.to_str().unwrap(),
        ])
        .status()
        .unwrap();
    assert!(tamper.success());
    let broken = sluice(
        config.path(),
        &["audit", "verify", "--data-dir", data_dir],
        None,
    );
    assert_eq!(broken.status.code(), Some(1));
    let message = String::from_utf8_lossy(&broken.stderr);
    assert!(message.contains("audit event 4 was altered"), "{message}");
}

fn psql(database: &str, sql: &str) {
    let status = Command::new("psql")
        .args([
            "-h",
            "127.0.0.1",
            "-U",
            "postgres",
            "-d",
            database,
            "-q",
            "-v",
            "ON_ERROR_STOP=1",
            "-c",
            sql,
        ])
        .status()
        .expect("psql (postgresql-client) must be installed");
    assert!(status.success(), "psql {sql}");
}

#[test]
fn the_same_on_postgresql() {
    let mut bytes = [0u8; 4];
    getrandom_bytes(&mut bytes);
    let name = format!(
        "sluice_cli_{}",
        bytes.iter().map(|b| format!("{b:02x}")).collect::<String>()
    );
    psql("postgres", &format!("CREATE DATABASE {name}"));
    let url = format!("postgres://postgres@127.0.0.1:5432/{name}");
    let config = tempfile::tempdir().unwrap();
    ok(&sluice(
        config.path(),
        &["db", "migrate", "--database-url", &url],
        None,
    ));
    let server = Running::start(&["--database-url", &url]);
    let server_url = server.url.clone();
    ok(&sluice(
        config.path(),
        &["login", "--server", &server_url, "--password-stdin"],
        Some(&format!("{PASSWORD}\n")),
    ));
    ok(&sluice(
        config.path(),
        &["users", "create", "pat", "--role", "security"],
        Some("pat's long password\n"),
    ));
    server.stop();

    let verify = ok(&sluice(
        config.path(),
        &["audit", "verify", "--database-url", &url],
        None,
    ));
    assert!(verify.contains("intact: 3 events"), "{verify}");
    psql(&name, "DELETE FROM audit_events WHERE seq = 2");
    let broken = sluice(
        config.path(),
        &["audit", "verify", "--database-url", &url],
        None,
    );
    assert_eq!(broken.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&broken.stderr).contains("audit events 2 to 2 are missing"));
    psql("postgres", &format!("DROP DATABASE {name} WITH (FORCE)"));
}

fn getrandom_bytes(bytes: &mut [u8]) {
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .subsec_nanos()
        ^ std::process::id();
    for (i, b) in bytes.iter_mut().enumerate() {
        *b = (nanos >> (i * 8)) as u8;
    }
}

fn repo_file(path: &str) -> String {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../..")
        .join(path)
        .canonicalize()
        .unwrap()
        .display()
        .to_string()
}

#[test]
fn feeds_inventories_and_findings_on_the_server_match_the_offline_scan() {
    let data = tempfile::tempdir().unwrap();
    let config = tempfile::tempdir().unwrap();
    let feeds = repo_file("examples/feeds");
    let server = Running::start(&[
        "--data-dir",
        data.path().to_str().unwrap(),
        "--feed-dir",
        &feeds,
        "--feed-dir",
        data.path().join("feeds").to_str().unwrap(),
    ]);
    let url = server.url.clone();
    let run = |args: &[&str]| sluice(config.path(), args, None);
    ok(&sluice(
        config.path(),
        &["login", "--server", &url, "--password-stdin"],
        Some(&format!("{PASSWORD}\n")),
    ));

    let dsa = repo_file("examples/feeds/DSA-list");
    let kev = repo_file("examples/feeds/known_exploited_vulnerabilities.json");
    ok(&run(&["feeds", "add", "debian-dsa", "--source", &dsa]));
    ok(&run(&[
        "feeds",
        "add",
        "cisa-kev",
        "--kind",
        "kev",
        "--source",
        &kev,
        "--interval",
        "1d",
    ]));
    std::fs::create_dir(data.path().join("feeds")).unwrap();
    let not_a_feed = data.path().join("feeds/notes.txt");
    std::fs::write(&not_a_feed, "hello\n").unwrap();
    ok(&run(&[
        "feeds",
        "add",
        "broken",
        "--source",
        not_a_feed.to_str().unwrap(),
    ]));
    let sync = run(&["feeds", "sync"]);
    assert_eq!(sync.status.code(), Some(1), "one feed failed");
    let said = String::from_utf8_lossy(&sync.stderr);
    assert!(
        said.contains("broken: sync failed") && said.contains("not a recognised feed"),
        "{said}"
    );
    assert!(said.contains("debian-dsa: ok"), "{said}");
    let feeds: serde_json::Value =
        serde_json::from_str(&ok(&run(&["feeds", "list", "--output", "json"]))).unwrap();
    let dsa_feed = feeds
        .as_array()
        .unwrap()
        .iter()
        .find(|f| f["name"] == "debian-dsa")
        .unwrap();
    assert_eq!(dsa_feed["skipped"], 1, "the one malformed DSA record");

    let status = repo_file("examples/debian11-web/status");
    let os = repo_file("examples/debian11-web/os-release");
    let push = ok(&run(&[
        "inventory",
        "push",
        "--host",
        "web1",
        "--status",
        &status,
        "--os-release",
        &os,
    ]));
    let _ = push;
    let page: serde_json::Value = serde_json::from_str(&ok(&run(&[
        "findings", "list", "--output", "json", "--limit", "1000",
    ])))
    .unwrap();
    let offline: serde_json::Value = serde_json::from_slice(
        &Command::new(env!("CARGO_BIN_EXE_sluice"))
            .args([
                "scan",
                "--status",
                &status,
                "--os-release",
                &os,
                "--feed",
                &dsa,
                "--kev",
                &kev,
                "--output",
                "json",
            ])
            .output()
            .unwrap()
            .stdout,
    )
    .unwrap();
    let server_set: std::collections::BTreeSet<(String, String)> = page["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|f| {
            (
                f["advisory"].as_str().unwrap().to_owned(),
                f["package"].as_str().unwrap().to_owned(),
            )
        })
        .collect();
    let offline_set: std::collections::BTreeSet<(String, String)> = offline["findings"]
        .as_array()
        .unwrap()
        .iter()
        .map(|f| {
            (
                f["advisory"].as_str().unwrap().to_owned(),
                f["package"].as_str().unwrap().to_owned(),
            )
        })
        .collect();
    assert!(offline_set.len() > 50);
    assert_eq!(
        server_set, offline_set,
        "the server matches exactly what the offline scan finds"
    );
    assert_eq!(page["total"].as_u64().unwrap() as usize, offline_set.len());
    let kev_only: serde_json::Value = serde_json::from_str(&ok(&run(&[
        "findings", "list", "--kev", "--output", "json",
    ])))
    .unwrap();
    assert!(
        kev_only["items"]
            .as_array()
            .unwrap()
            .iter()
            .all(|f| f["kev"] == true)
    );
    assert!(kev_only["total"].as_u64().unwrap() > 0);

    // The push put the host in the CMDB; its attributes re-prioritise its findings.
    let shown = ok(&run(&["assets", "show", "web1", "--output", "json"]));
    assert!(shown.contains("Debian:11"), "{shown}");
    let decision_of = |advisory: &str| -> String {
        let page: serde_json::Value = serde_json::from_str(&ok(&run(&[
            "findings", "list", "--host", "web1", "--output", "json", "--limit", "1000",
        ])))
        .unwrap();
        page["items"]
            .as_array()
            .unwrap()
            .iter()
            .find(|f| f["advisory"] == advisory)
            .unwrap()["decision"]
            .as_str()
            .unwrap()
            .to_owned()
    };
    assert_eq!(
        decision_of("DSA-5020-1"),
        "track",
        "KEV, but an internal host of middling importance"
    );
    ok(&run(&[
        "assets",
        "set",
        "web1",
        "criticality=5",
        "exposure=internet",
        "env=prod",
    ]));
    assert_eq!(
        decision_of("DSA-5020-1"),
        "act",
        "the same finding on an essential internet-facing host"
    );
    let prod: serde_json::Value = serde_json::from_str(&ok(&run(&[
        "findings",
        "list",
        "--selector",
        "env=prod,criticality>=4",
        "--output",
        "json",
    ])))
    .unwrap();
    assert_eq!(prod["total"], page["total"]);
    let none: serde_json::Value = serde_json::from_str(&ok(&run(&[
        "findings",
        "list",
        "--selector",
        "env=dev",
        "--output",
        "json",
    ])))
    .unwrap();
    assert_eq!(none["total"], 0);

    // The same inventory again changes nothing; an upgrade resolves what it fixes.
    let again = run(&[
        "inventory",
        "push",
        "--host",
        "web1",
        "--status",
        &status,
        "--os-release",
        &os,
    ]);
    assert!(
        String::from_utf8_lossy(&again.stderr)
            .contains("(unchanged); findings: 0 opened, 0 resolved"),
        "{}",
        String::from_utf8_lossy(&again.stderr)
    );
    let upgraded = data.path().join("status-upgraded");
    std::fs::write(
        &upgraded,
        std::fs::read_to_string(&status)
            .unwrap()
            .replace("Version: 2.13.3-1", "Version: 2.17.1-0.1~deb11u1"),
    )
    .unwrap();
    let after = run(&[
        "inventory",
        "push",
        "--host",
        "web1",
        "--status",
        upgraded.to_str().unwrap(),
        "--os-release",
        &os,
    ]);
    let said = String::from_utf8_lossy(&after.stderr).to_string();
    // The DSA list has three log4j advisories for bullseye, all fixed by 2.17.1.
    assert!(said.contains("0 opened, 3 resolved"), "{said}");
    let open: serde_json::Value = serde_json::from_str(&ok(&run(&[
        "findings", "list", "--host", "web1", "--output", "json", "--limit", "1000",
    ])))
    .unwrap();
    assert!(
        !open["items"]
            .as_array()
            .unwrap()
            .iter()
            .any(|f| f["package"] == "liblog4j2-java")
    );
    let resolved: serde_json::Value = serde_json::from_str(&ok(&run(&[
        "findings", "list", "--status", "resolved", "--output", "json",
    ])))
    .unwrap();
    let advisories: std::collections::BTreeSet<&str> = resolved["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|f| f["advisory"].as_str().unwrap())
        .collect();
    assert!(advisories.contains("DSA-5020-1"), "{advisories:?}");
    assert!(
        resolved["items"]
            .as_array()
            .unwrap()
            .iter()
            .all(|f| !f["resolved_at"].is_null() && !f["first_seen"].is_null())
    );

    let bad = sluice(
        config.path(),
        &[
            "inventory",
            "push",
            "--host",
            "web2",
            "--status",
            &os,
            "--os-release",
            &os,
        ],
        None,
    );
    assert!(!bad.status.success());
    assert!(
        String::from_utf8_lossy(&bad.stderr).contains("content"),
        "{}",
        String::from_utf8_lossy(&bad.stderr)
    );
    // What happened shows in the Prometheus metrics, labelled by route template, not raw path.
    let (status, metrics) = http_get(&url, "/metrics");
    assert_eq!(status, 200);
    for expected in [
        "sluice_inventories_ingested_total{changed=\"true\"}",
        "sluice_findings_opened_total",
        "sluice_feed_syncs_total{feed=\"debian-dsa\",outcome=\"updated\"}",
        "sluice_advisories_loaded",
        "route=\"/api/v1/inventories/{id}\",status=\"200\"",
        "route=\"/api/v1/inventories/{id}\",status=\"422\"",
        "sluice_http_request_duration_seconds_bucket",
    ] {
        assert!(metrics.contains(expected), "{expected} in\n{metrics}");
    }
    assert!(
        !metrics.contains("/api/v1/inventories/web1"),
        "raw paths are not labels"
    );
    server.stop();
    let verify = ok(&run(&[
        "audit",
        "verify",
        "--data-dir",
        data.path().to_str().unwrap(),
    ]));
    assert!(verify.contains("intact"));
}

#[test]
fn a_bad_first_admin_password_stops_the_server_before_it_creates_anything() {
    use std::io::Read;
    for bad in ["", "short"] {
        let data = tempfile::tempdir().unwrap();
        let mut child = Command::new(env!("CARGO_BIN_EXE_sluice"))
            .args(["server", "--listen", &format!("127.0.0.1:{}", free_port())])
            .args(["--data-dir", data.path().to_str().unwrap()])
            .env("SLUICE_ADMIN_PASSWORD", bad)
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::piped())
            .spawn()
            .unwrap();
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
        let status = loop {
            if let Some(status) = child.try_wait().unwrap() {
                break status;
            }
            if std::time::Instant::now() > deadline {
                child.kill().unwrap();
                child.wait().unwrap();
                panic!("the server started with the admin password {bad:?}");
            }
            std::thread::sleep(std::time::Duration::from_millis(50));
        };
        let mut stderr = String::new();
        child
            .stderr
            .take()
            .unwrap()
            .read_to_string(&mut stderr)
            .unwrap();
        assert!(!status.success(), "{stderr}");
        assert!(
            stderr.contains("admin_password") && stderr.contains("12 characters"),
            "{stderr}"
        );
        assert!(!stderr.contains("shown this once"), "{stderr}");
        assert!(
            !data.path().join("sluice.db").exists(),
            "no database, so no user, was created"
        );
    }
    // A good one starts, and logs in.
    let data = tempfile::tempdir().unwrap();
    let server = Running::start(&["--data-dir", data.path().to_str().unwrap()]);
    let (status, body) = http(
        &server.url,
        "POST",
        "/api/v1/login",
        None,
        Some(&serde_json::json!({"username": "admin", "password": PASSWORD})),
    );
    assert_eq!(status, 200, "{body}");
    server.stop();
}

#[test]
fn an_admin_contains_an_account_from_the_cli() {
    let data = tempfile::tempdir().unwrap();
    let server = Running::start(&["--data-dir", data.path().to_str().unwrap()]);
    let url = server.url.clone();
    let admin = Person::login(&url, "admin", PASSWORD);
    let create = sluice(
        admin.config.path(),
        &["users", "create", "mallory", "--role", "operator"],
        Some("mallory's long password\n"),
    );
    ok(&create);
    let mallory = Person::login(&url, "mallory", "mallory's long password");
    let capped = mallory.run(&["token", "create", "--name", "ci", "--expires", "30d"]);
    let secret = ok(&capped).trim().to_owned();
    assert!(
        String::from_utf8_lossy(&capped.stderr).contains("capped at the expiry"),
        "a token made with the login token expires with it, and the CLI says so"
    );
    // A long-lived one is made with the password.
    let long = sluice(
        mallory.config.path(),
        &[
            "token",
            "create",
            "--name",
            "cron",
            "--expires",
            "30d",
            "--password-stdin",
        ],
        Some("mallory's long password\n"),
    );
    assert!(!String::from_utf8_lossy(&long.stderr).contains("capped"));
    let long = ok(&long).trim().to_owned();
    assert!(long.starts_with("slc_"));
    let whoami = |token: &str| {
        Command::new(env!("CARGO_BIN_EXE_sluice"))
            .args(["whoami", "--server", &url])
            .env("SLUICE_TOKEN", token)
            .env("XDG_CONFIG_HOME", tempfile::tempdir().unwrap().path())
            .output()
            .unwrap()
    };
    ok(&whoami(&secret));

    // The admin sees mallory's tokens: the login and the one made with it.
    let tokens = admin.json(&["token", "list", "--user", "mallory", "--output", "json"]);
    let tokens = tokens.as_array().unwrap();
    assert_eq!(tokens.len(), 3, "{tokens:?}");
    let cron = tokens.iter().find(|t| t["name"] == "cron").unwrap();
    assert!(cron["parent_id"].is_null());
    let ci = tokens.iter().find(|t| t["name"] == "ci").unwrap();
    let login = tokens.iter().find(|t| t["name"] == "cli login").unwrap();
    assert_eq!(ci["parent_id"], login["id"]);
    assert!(
        mallory
            .refused(&["token", "list", "--user", "admin"])
            .contains("admin")
    );

    ok(&admin.run(&["users", "disable", "mallory"]));
    assert!(!whoami(&secret).status.success(), "cut off at once");
    assert!(!whoami(&long).status.success());
    assert!(!mallory.run(&["whoami"]).status.success());
    let users = admin.ok(&["users", "list"]);
    assert!(
        users
            .lines()
            .any(|l| l.starts_with("mallory") && l.contains("disabled")),
        "{users}"
    );
    ok(&admin.run(&["users", "enable", "mallory"]));
    let reset = admin.ok(&["users", "reset-password", "mallory", "--generate"]);
    let password = reset.trim().to_owned();
    assert!(password.len() >= 12, "{reset}");
    let fresh = Person::login(&url, "mallory", &password);
    ok(&fresh.run(&["whoami"]));

    // Failed logins lock mallory from this address; the admin lifts the lock.
    for _ in 0..5 {
        let wrong = sluice(
            tempfile::tempdir().unwrap().path(),
            &[
                "login",
                "--server",
                &url,
                "--username",
                "mallory",
                "--password-stdin",
            ],
            Some("wrong guess\n"),
        );
        assert!(!wrong.status.success());
    }
    let locks = admin.json(&["users", "locks", "--output", "json"]);
    assert!(
        locks
            .as_array()
            .unwrap()
            .iter()
            .any(|l| l["account"] == "mallory" && l["address"] == "127.0.0.1"),
        "{locks}"
    );
    let locked = sluice(
        tempfile::tempdir().unwrap().path(),
        &[
            "login",
            "--server",
            &url,
            "--username",
            "mallory",
            "--password-stdin",
        ],
        Some(&format!("{password}\n")),
    );
    assert!(!locked.status.success());
    ok(&admin.run(&["users", "unlock", "mallory", "--address", "127.0.0.1"]));
    Person::login(&url, "mallory", &password);
    server.stop();
}
