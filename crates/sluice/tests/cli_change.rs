//! Change governance from the command line against a real `sluice server` process, on SQLite and
//! on PostgreSQL, each person with their own login: a normal change made from findings and
//! approved by two CAB members (after the requester's own vote is refused), an emergency change
//! whose retrospective review goes overdue, an escalation after the timeout, a deferral that
//! shows in the findings listing, the ITSM exports, and the audit chain holding every decision.
//!
//! The server runs on a fake governance clock (`fake_now` in its settings file); moving time is
//! a restart with a later `fake_now`, and the escalation task's first round at start records what
//! fell due meanwhile.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use common::{PASSWORD, Person, Running, ok, sluice};
use serde_json::Value;

const PLAN: &str = r#"implementation = ["drain web1 from the load balancer", "upgrade", "restart services"]
verification = ["the site answers on :443"]

[rollback_criteria]
max_failed_check_share = 0.1
detection_window = "15m"
"#;

fn repo_file(path: &str) -> String {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../..")
        .join(path)
        .canonicalize()
        .unwrap()
        .display()
        .to_string()
}

/// The server's settings file: the fake clock's start.
fn settings(dir: &Path, fake_now: &str) -> PathBuf {
    let path = dir.join("sluice.toml");
    std::fs::write(
        &path,
        format!(
            "fake_now = \"{fake_now}\"\nfeed_dirs = [\"{}\"]\n",
            repo_file("examples/feeds")
        ),
    )
    .unwrap();
    path
}

fn start(database: &[&str], config: &Path) -> Running {
    let mut args: Vec<&str> = database.to_vec();
    let config = config.to_str().unwrap();
    args.extend(["--config", config]);
    Running::start(&args)
}

fn story(database: &[&str], verify: &[&str]) {
    let scratch = tempfile::tempdir().unwrap();
    let config = settings(scratch.path(), "2026-11-02T09:00:00Z");
    let server = start(database, &config);
    let url = server.url.clone();

    let admin = Person::login(&url, "admin", PASSWORD);
    for (name, roles, groups) in [
        ("alice", "operator,approver", "cab"),
        ("olga", "operator", ""),
        ("bob", "approver", "cab"),
        ("carol", "approver", "cab"),
        ("erin", "approver", "ecab"),
        ("chair", "approver", "cab-chairs"),
    ] {
        let mut args = vec!["users", "create", name, "--role", roles];
        if !groups.is_empty() {
            args.extend(["--group", groups]);
        }
        ok(&sluice(
            admin.config.path(),
            &args,
            Some("a long enough password\n"),
        ));
    }
    let login = |name: &str| Person::login(&url, name, "a long enough password");
    let (alice, olga, bob, carol, erin) = (
        login("alice"),
        login("olga"),
        login("bob"),
        login("carol"),
        login("erin"),
    );

    let dsa = repo_file("examples/feeds/DSA-list");
    let kev = repo_file("examples/feeds/known_exploited_vulnerabilities.json");
    admin.ok(&["feeds", "add", "debian-dsa", "--source", &dsa]);
    admin.ok(&[
        "feeds", "add", "cisa-kev", "--kind", "kev", "--source", &kev,
    ]);
    admin.ok(&["feeds", "sync"]);
    olga.ok(&[
        "inventory",
        "push",
        "--host",
        "web1",
        "--status",
        &repo_file("examples/debian11-web/status"),
        "--os-release",
        &repo_file("examples/debian11-web/os-release"),
    ]);
    let plan = scratch.path().join("plan.toml");
    std::fs::write(&plan, PLAN).unwrap();
    let plan = plan.to_str().unwrap();

    // A normal change from web1's findings: medium risk, two CAB approvals.
    let created = alice.json(&[
        "change",
        "create",
        "--from-findings",
        "--host",
        "web1",
        "--title",
        "Security updates on web1",
        "--type",
        "normal",
        "--plan-file",
        plan,
        "--output",
        "json",
    ]);
    let normal = created["id"].as_str().unwrap().to_owned();
    assert_eq!(created["state"], "draft");
    assert_eq!(created["assessment"]["risk"]["level"], "medium");
    assert_eq!(
        created["plan"]["verification"][0],
        "the site answers on :443"
    );
    let shown = alice.ok(&["change", "show", &normal]);
    assert!(
        shown.contains("risk reasons:") && shown.contains("linux"),
        "{shown}"
    );
    alice.ok(&["change", "submit", &normal]);
    alice.ok(&["change", "review", &normal]);
    let own = alice.refused(&["change", "approve", &normal]);
    assert!(
        own.contains("403") && own.contains("requester never votes"),
        "{own}"
    );
    let first = bob.ok(&["change", "approve", &normal, "--comment", "looks right"]);
    assert!(
        first.contains("in-review") && first.contains("1 of 2 approvals"),
        "{first}"
    );
    let twice = bob.refused(&["change", "approve", &normal]);
    assert!(
        twice.contains("409") && twice.contains("one person, one vote"),
        "{twice}"
    );
    let second = carol.ok(&["change", "approve", &normal]);
    assert!(
        second.contains("approved") && second.contains("quorum met"),
        "{second}"
    );
    let shown = olga.ok(&["change", "show", &normal]);
    assert!(
        shown.contains("vote: bob approve") && shown.contains("vote: carol approve"),
        "{shown}"
    );
    let listed = olga.json(&["change", "list", "--state", "approved", "--output", "json"]);
    assert_eq!(listed.as_array().unwrap().len(), 1);
    assert_eq!(listed[0]["id"], normal.as_str());
    let table = olga.ok(&["change", "list"]);
    assert!(
        table
            .lines()
            .any(|l| l.starts_with(&normal) && l.contains("approved")),
        "{table}"
    );
    let snow = olga.json(&["change", "export", &normal, "--format", "servicenow"]);
    assert_eq!(snow["correlation_id"], normal.as_str());
    assert_eq!(snow["short_description"], "Security updates on web1");
    assert_eq!(snow["state"], "-3", "approved is Authorize");
    let jira = olga.json(&[
        "change",
        "export",
        &normal,
        "--format",
        "jira",
        "--project",
        "OPS",
    ]);
    assert_eq!(jira["fields"]["project"]["key"], "OPS");
    let no_project = olga.refused(&["change", "export", &normal, "--format", "jira"]);
    assert!(no_project.contains("project"), "{no_project}");
    let early = olga.refused(&["change", "start", &normal]);
    assert!(
        early.contains("does not apply to normal changes"),
        "{early}"
    );

    // An emergency change from the KEV findings, approved by the e-CAB and implemented at once.
    let emergency = alice.json(&[
        "change",
        "create",
        "--from-findings",
        "--host",
        "web1",
        "--kev",
        "--title",
        "Exploited vulnerabilities on web1",
        "--type",
        "emergency",
        "--plan-file",
        plan,
        "--output",
        "json",
    ])["id"]
        .as_str()
        .unwrap()
        .to_owned();
    alice.ok(&["change", "submit", &emergency]);
    olga.ok(&["change", "review", &emergency]);
    let approved = erin.ok(&["change", "approve", &emergency]);
    assert!(
        approved.contains("retrospective review due by 2026-11-04T09:"),
        "{approved}"
    );
    olga.ok(&["change", "start", &emergency]);
    olga.ok(&["change", "complete", &emergency]);

    // A third change waits in review: nobody decides.
    let waiting = alice.json(&[
        "change",
        "create",
        "--from-findings",
        "--host",
        "web1",
        "--kev",
        "--title",
        "KEV fixes on web1, the normal way",
        "--plan-file",
        plan,
        "--output",
        "json",
    ])["id"]
        .as_str()
        .unwrap()
        .to_owned();
    alice.ok(&["change", "submit", &waiting]);
    alice.ok(&["change", "review", &waiting]);

    // A deferral of one finding, shown in the listing.
    let findings = olga.json(&[
        "findings", "list", "--host", "web1", "--output", "json", "--limit", "1",
    ]);
    let finding = findings["items"][0]["id"].as_i64().unwrap().to_string();
    let requested = olga.json(&[
        "defer",
        "create",
        "--finding",
        &finding,
        "--justification",
        "the vendor ships the fix with the next appliance image",
        "--until",
        "2026-11-30",
        "--output",
        "json",
    ]);
    let deferral = requested["id"].as_str().unwrap().to_owned();
    let own = olga.refused(&["defer", "approve", &deferral]);
    assert!(own.contains("403"), "{own}");
    bob.ok(&["defer", "approve", &deferral]);
    let deferred = olga.json(&["findings", "list", "--deferred", "--output", "json"]);
    assert_eq!(deferred["total"], 1);
    assert_eq!(deferred["items"][0]["standing"], "deferred");
    let table = olga.ok(&["findings", "list", "--host", "web1", "--limit", "1000"]);
    assert!(
        table.contains(&format!("deferred until 2026-11-30 ({deferral})")),
        "{table}"
    );
    let records = olga.ok(&["defer", "list"]);
    assert!(
        records.contains(&deferral) && records.contains("active until"),
        "{records}"
    );

    // Two days and two hours later.
    server.stop();
    let config = settings(scratch.path(), "2026-11-04T11:00:00Z");
    let server = start(database, &config);
    // The server listens on a new port: everyone logs in again.
    let url = server.url.clone();
    let login = |name: &str| Person::login(&url, name, "a long enough password");
    let (olga, bob) = (login("olga"), login("bob"));
    let overdue = olga.json(&["change", "list", "--overdue-review", "--output", "json"]);
    assert_eq!(overdue.as_array().unwrap().len(), 1, "{overdue}");
    assert_eq!(overdue[0]["id"], emergency.as_str());
    let shown = olga.ok(&["change", "show", &emergency]);
    assert!(shown.contains("OVERDUE by"), "{shown}");
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let shown = olga.json(&["change", "show", &waiting, "--output", "json"]);
        if let Some(escalation) = shown["escalations"].as_array().and_then(|e| e.first()) {
            assert_eq!(escalation["group"], "cab-chairs");
            break;
        }
        assert!(Instant::now() < deadline, "no escalation recorded: {shown}");
        std::thread::sleep(Duration::from_millis(200));
    }
    let chair = login("chair");
    let voted = chair.ok(&["change", "approve", &waiting]);
    assert!(
        voted.contains("in-review"),
        "the CAB's own seat stays empty: {voted}"
    );
    let reviewed = bob.ok(&[
        "change",
        "post-review",
        &emergency,
        "--notes",
        "fixed without incident; the plan held",
    ]);
    assert!(
        reviewed.contains("reviewed") && reviewed.contains("done (late)"),
        "{reviewed}"
    );
    assert!(
        olga.json(&["change", "list", "--overdue-review", "--output", "json"])
            .as_array()
            .unwrap()
            .is_empty()
    );
    server.stop();

    // Every decision is in the audit chain, and the chain holds.
    let with = |command: &'static str| -> Vec<&str> {
        ["audit", command]
            .into_iter()
            .chain(verify.iter().copied())
            .collect()
    };
    let verified = admin.ok(&with("verify"));
    assert!(verified.contains("audit chain intact"), "{verified}");
    let export = admin.ok(&with("export"));
    let events: Vec<Value> = export
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    let has = |actor: &str, action: &str, object: &str| {
        events
            .iter()
            .any(|e| e["actor"] == actor && e["action"] == action && e["object"] == object)
    };
    for (actor, action, object) in [
        ("alice", "change.create", format!("change:{normal}")),
        ("alice", "change.submit", format!("change:{normal}")),
        ("bob", "change.approve", format!("change:{normal}")),
        ("carol", "change.approve", format!("change:{normal}")),
        ("erin", "change.approve", format!("change:{emergency}")),
        ("bob", "change.review", format!("change:{emergency}")),
        ("system", "change.escalate", format!("change:{waiting}")),
        ("chair", "change.approve", format!("change:{waiting}")),
        ("bob", "deferral.approve", format!("deferral:{deferral}")),
        ("system", "clock.fake", "server".to_owned()),
    ] {
        assert!(
            has(actor, action, &object),
            "{actor} {action} {object} is audited"
        );
    }
    assert!(
        !events
            .iter()
            .any(|e| e["actor"] == "alice" && e["action"] == "change.approve"),
        "refused votes write nothing"
    );
}

#[test]
fn change_governance_from_the_command_line_on_sqlite() {
    let data = tempfile::tempdir().unwrap();
    let dir = data.path().to_str().unwrap().to_owned();
    story(&["--data-dir", &dir], &["--data-dir", &dir]);
}

#[test]
fn change_governance_from_the_command_line_on_postgresql() {
    let mut bytes = [0u8; 4];
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .subsec_nanos()
        ^ std::process::id();
    for (i, b) in bytes.iter_mut().enumerate() {
        *b = (nanos >> (i * 8)) as u8;
    }
    let name = format!(
        "sluice_cli_change_{}",
        bytes.iter().map(|b| format!("{b:02x}")).collect::<String>()
    );
    psql("postgres", &format!("CREATE DATABASE {name}"));
    let url = format!("postgres://postgres@127.0.0.1:5432/{name}");
    story(&["--database-url", &url], &["--database-url", &url]);
    psql("postgres", &format!("DROP DATABASE {name} WITH (FORCE)"));
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
