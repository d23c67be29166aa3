//! Rollouts end to end with real processes: a `sluice server` on SQLite, `sluice agent`s on
//! private dpkg roots fed from a local apt repository, changes taken through governance with
//! the CLI, and `sluice rollout` starting and following them.
//!
//! - twenty agents over three rings: canary first, batches, every host verified on 1.1;
//! - a release whose health check fails: the canary's job rolls itself back, the breaker trips,
//!   the rollout ends rolled back and the version is remembered, so it is refused next time;
//! - an operator's rollback: the rollout's own rollback jobs return the hosts to 1.0;
//! - the server killed with SIGKILL in the middle and started again: the rollout resumes and
//!   ends, every host updated exactly once;
//! - an agent killed in the middle of its job: reported `interrupted`, never a success.
//!
//! The machine's own packages are never touched.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;
#[path = "../../sluice-agent/tests/common/mod.rs"]
mod fixture;

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use common::{PASSWORD, Person, Running, free_port, ok, sluice};
use fixture::{Fixture, HostDpkg};
use serde_json::{Value, json};

const USER_PASSWORD: &str = "a long enough password";

/// A server process on a fixed port and data directory, so it can be killed and started again
/// where the agents expect it.
struct Server {
    running: Running,
    url: String,
    port: u16,
    data: PathBuf,
    /// `--data-dir DIR` (SQLite) or `--database-url URL` (PostgreSQL).
    database: Vec<String>,
}

impl Server {
    fn start(data: &Path, database: &[String], port: u16) -> Server {
        let args: Vec<&str> = database.iter().map(String::as_str).collect();
        let running = Running::start_on(port, &args, &[]);
        Server {
            url: running.url.clone(),
            running,
            port,
            data: data.to_owned(),
            database: database.to_vec(),
        }
    }

    fn kill_9(&mut self) {
        self.running.child.kill().unwrap();
        self.running.child.wait().unwrap();
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.running.child.kill();
        let _ = self.running.child.wait();
    }
}

struct Agent {
    child: Child,
}

impl Drop for Agent {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn start_agent(
    fx: &Fixture,
    url: &str,
    host: &str,
    labels: &str,
    token: Option<&str>,
    failpoint: Option<&str>,
) -> Agent {
    let mut command = common::agent_command(url, host, &fx.state, &fx.root_dir, labels);
    if let Some(token) = token {
        command.args(["--enroll-token", token]);
    }
    if let Some(point) = failpoint {
        command.env("SLUICE_AGENT_FAILPOINT", point);
    }
    Agent {
        child: command.spawn().unwrap(),
    }
}

/// Waits until `done` holds for `sluice ARGS` (JSON), up to two minutes.
fn wait_for(person: &Person, args: &[&str], what: &str, done: impl Fn(&Value) -> bool) -> Value {
    let deadline = Instant::now() + Duration::from_secs(120);
    loop {
        let output = person.run(args);
        if output.status.success() {
            let value: Value = serde_json::from_slice(&output.stdout).unwrap_or(Value::Null);
            if done(&value) {
                return value;
            }
        }
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(200));
    }
}

/// A fleet: a server, the people, and one agent per (host, environment).
struct Fleet {
    server: Server,
    admin: Person,
    olga: Person,
    hosts: Vec<(String, String)>,
    fixtures: Vec<Fixture>,
    agents: Vec<Agent>,
    _data: tempfile::TempDir,
    host_dpkg: HostDpkg,
}

impl Fleet {
    fn new(hosts: &[(&str, &str)]) -> Fleet {
        let data = tempfile::tempdir().unwrap();
        let database = vec!["--data-dir".to_owned(), data.path().display().to_string()];
        Self::on(data, &database, hosts)
    }

    fn on(data: tempfile::TempDir, database: &[String], hosts: &[(&str, &str)]) -> Fleet {
        let host_dpkg = HostDpkg::snapshot();
        let server = Server::start(data.path(), database, free_port());
        let admin = Person::login(&server.url, "admin", PASSWORD);
        for (name, roles, group) in [
            ("olga", "operator", None),
            ("pete", "operator", None),
            ("erin", "approver", Some("cab")),
            ("bob", "approver", Some("cab")),
            ("chair", "approver", Some("cab-chairs")),
        ] {
            let mut args = vec!["users", "create", name, "--role", roles];
            if let Some(group) = group {
                args.extend(["--group", group]);
            }
            ok(&sluice(
                admin.config.path(),
                &args,
                Some(&format!("{USER_PASSWORD}\n")),
            ));
        }
        let olga = Person::login(&server.url, "olga", USER_PASSWORD);
        // Roots in parallel: each builds its packages and runs apt in its own root.
        let fixtures: Vec<Fixture> = std::thread::scope(|scope| {
            let handles: Vec<_> = hosts.iter().map(|_| scope.spawn(Fixture::new)).collect();
            handles.into_iter().map(|h| h.join().unwrap()).collect()
        });
        let mut fleet = Fleet {
            server,
            admin,
            olga,
            hosts: hosts
                .iter()
                .map(|(h, e)| ((*h).to_owned(), (*e).to_owned()))
                .collect(),
            fixtures,
            agents: Vec::new(),
            _data: data,
            host_dpkg,
        };
        for i in 0..hosts.len() {
            let token = fleet
                .admin
                .ok(&["agents", "token", "create", "--expires", "1h"]);
            let agent = fleet.agent(i, Some(token.trim()), None);
            fleet.agents.push(agent);
        }
        let expected = hosts.len();
        wait_for(
            &fleet.olga,
            &["assets", "list", "--output", "json"],
            "every host in the CMDB with its release",
            |list| {
                list.as_array().is_some_and(|items| {
                    items.len() == expected
                        && items.iter().all(|a| {
                            a["os"].as_str() == Some("Debian:12") && a["environment"].is_string()
                        })
                })
            },
        );
        fleet
    }

    fn agent(&self, i: usize, token: Option<&str>, failpoint: Option<&str>) -> Agent {
        let (host, env) = &self.hosts[i];
        start_agent(
            &self.fixtures[i],
            &self.server.url,
            host,
            &format!("env={env}"),
            token,
            failpoint,
        )
    }

    /// A normal change to `version` on every host: a peer signs the plan off, the CAB approves
    /// it (as many votes as its risk needs), and it is scheduled from a minute ago for an hour.
    /// Returns its id.
    fn approved_change(&self, version: &str) -> String {
        let created = self.olga.json(&[
            "change",
            "create",
            "--type",
            "normal",
            "--title",
            &format!("sluice-demo {version} everywhere"),
            "--target",
            &format!("sluice-demo={version}@Debian:12"),
            "--scope",
            "env=dev|test|prod",
            "--update-type",
            "security",
            "--justification",
            "the fix for the demo CVE",
            "--plan-file",
            &self.plan_file(),
            "--output",
            "json",
        ]);
        let id = created["id"].as_str().unwrap().to_owned();
        self.olga.ok(&["change", "submit", &id]);
        let url = self.server.url.clone();
        Person::login(&url, "pete", USER_PASSWORD).ok(&["change", "sign-off", &id]);
        self.olga.ok(&["change", "review", &id]);
        for voter in ["erin", "bob", "chair"] {
            if self.change_state(&id) == "approved" {
                break;
            }
            Person::login(&url, voter, USER_PASSWORD).ok(&["change", "approve", &id]);
        }
        assert_eq!(self.change_state(&id), "approved");
        let now = jiff::Timestamp::now();
        let start = (now - jiff::SignedDuration::from_mins(1)).to_string();
        let end = (now + jiff::SignedDuration::from_hours(1)).to_string();
        self.olga
            .ok(&["change", "schedule", &id, "--start", &start, "--end", &end]);
        id
    }

    fn plan_file(&self) -> String {
        let path = self.server.data.join("plan.toml");
        std::fs::write(
            &path,
            "implementation = [\"upgrade sluice-demo\"]\nverification = [\"its health check passes\"]\n\n[rollback_criteria]\nmax_failed_check_share = 0.1\ndetection_window = \"1s\"\n",
        )
        .unwrap();
        path.display().to_string()
    }

    /// A rollout spec: the policy given, the package's own health check on every host.
    fn spec(&self, policy: Value) -> String {
        let path = self.server.data.join(format!("spec-{}.json", free_port()));
        let spec = json!({
            "policy": policy,
            "job": {"checks": [{"type": "command", "argv": ["/bin/sh", "-c", "exec \"$SLUICE_ROOT/usr/lib/sluice-demo/health\""], "timeout_secs": 10}]}
        });
        std::fs::write(&path, spec.to_string()).unwrap();
        path.display().to_string()
    }

    fn start_rollout(&self, change: &str, policy: Value) -> String {
        let spec = self.spec(policy);
        let view = self.olga.json(&[
            "rollout", "start", change, "--spec", &spec, "--output", "json",
        ]);
        view["id"].as_str().unwrap().to_owned()
    }

    fn finished(&self, rollout: &str) -> Value {
        wait_for(
            &self.olga,
            &["rollout", "status", rollout, "--output", "json"],
            &format!("rollout {rollout} to finish"),
            |view| view["finished"].as_bool() == Some(true),
        )
    }

    fn versions(&self) -> Vec<Option<String>> {
        self.fixtures
            .iter()
            .map(|fx| fx.installed("sluice-demo"))
            .collect()
    }

    fn change_state(&self, id: &str) -> String {
        self.olga.json(&["change", "show", id, "--output", "json"])["state"]
            .as_str()
            .unwrap()
            .to_owned()
    }

    fn audit_verified(&self) {
        let mut args = vec!["audit", "verify"];
        args.extend(self.server.database.iter().map(String::as_str));
        let verified = self.admin.ok(&args);
        assert!(verified.contains("audit chain intact"), "{verified}");
    }
}

fn policy(canary: u32, batch: Value, on_trip: &str, manual_gate: bool) -> Value {
    json!({
        "ring_order": ["dev", "test", "prod"],
        "canary": {"count": canary},
        "batch": batch,
        "max_concurrency": 10,
        "breaker": {"per_batch": {"count": 1}, "per_ring": {"percent": 50}},
        "on_trip": on_trip,
        "soak": "0s",
        "manual_gate": manual_gate,
        "follow_the_sun": false
    })
}

/// Every host in the order its update job started, from the rollout's events.
fn start_order(view: &Value) -> Vec<(String, bool)> {
    let mut out = Vec::new();
    for ring in view["rings"].as_array().unwrap() {
        for batch in ring["batches"].as_array().unwrap() {
            for host in batch["hosts"].as_array().unwrap() {
                out.push((
                    host["name"].as_str().unwrap().to_owned(),
                    batch["canary"].as_bool().unwrap(),
                ));
            }
        }
    }
    out
}

#[test]
fn twenty_agents_canary_first_in_batches_every_host_verified() {
    let mut hosts: Vec<(String, &str)> = Vec::new();
    for i in 1..=4 {
        hosts.push((format!("dev{i}"), "dev"));
    }
    for i in 1..=6 {
        hosts.push((format!("test{i}"), "test"));
    }
    for i in 1..=10 {
        hosts.push((format!("prod{i:02}"), "prod"));
    }
    let refs: Vec<(&str, &str)> = hosts.iter().map(|(h, e)| (h.as_str(), *e)).collect();
    let fleet = Fleet::new(&refs);
    let change = fleet.approved_change("1.1");
    let rollout = fleet.start_rollout(
        &change,
        policy(1, json!({"percent": 50}), "rollback-batch", false),
    );

    // `watch` follows the events stream to the end and exits 0 for a completed rollout.
    let watched = fleet.olga.run(&["rollout", "watch", &rollout]);
    let narration = String::from_utf8_lossy(&watched.stderr).into_owned();
    assert!(watched.status.success(), "{narration}");
    assert!(narration.contains("finished: completed"), "{narration}");
    assert!(
        narration.contains("gate passed: on to ring 2 (prod)"),
        "{narration}"
    );
    for ring in ["dev", "test", "prod"] {
        assert!(
            narration.contains(&format!("ring {ring} compared with its baseline")),
            "{narration}"
        );
    }

    let view = fleet.finished(&rollout);
    assert_eq!(view["outcome"], "completed", "{view}");
    assert_eq!(view["counts"]["succeeded"], 20, "{view}");
    assert_eq!(view["breaker_trips"], 0);
    // Rings in policy order, each a one-host canary then batches of half the ring.
    let rings: Vec<(&str, Vec<usize>)> = view["rings"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| {
            (
                r["environment"].as_str().unwrap(),
                r["batches"]
                    .as_array()
                    .unwrap()
                    .iter()
                    .map(|b| b["hosts"].as_array().unwrap().len())
                    .collect(),
            )
        })
        .collect();
    assert_eq!(
        rings,
        [
            ("dev", vec![1, 2, 1]),
            ("test", vec![1, 3, 2]),
            ("prod", vec![1, 5, 4])
        ]
    );
    assert!(start_order(&view)[0].1, "the first host is a canary");
    for version in fleet.versions() {
        assert_eq!(version.as_deref(), Some("1.1"));
    }
    assert_eq!(fleet.change_state(&change), "completed");

    // One job per host, each succeeded.
    let jobs = fleet.olga.json(&["jobs", "list", "--output", "json"]);
    let jobs = jobs.as_array().unwrap();
    assert_eq!(jobs.len(), 20, "one job per host");
    assert!(jobs.iter().all(|j| j["state"] == "succeeded"));
    fleet.audit_verified();
    fleet.host_dpkg.assert_untouched();
}

#[test]
fn a_failing_release_trips_the_breaker_in_the_canary_and_is_remembered() {
    let fleet = Fleet::new(&[
        ("dev1", "dev"),
        ("dev2", "dev"),
        ("test1", "test"),
        ("prod1", "prod"),
    ]);
    // 1.2's health check fails on every host that gets it.
    let change = fleet.approved_change("1.2");
    let rollout = fleet.start_rollout(
        &change,
        policy(1, json!({"count": 1}), "rollback-batch", false),
    );
    let watched = fleet.olga.run(&["rollout", "watch", &rollout]);
    let narration = String::from_utf8_lossy(&watched.stderr).into_owned();
    assert_eq!(watched.status.code(), Some(3), "not completed: {narration}");
    assert!(narration.contains("BREAKER TRIPPED"), "{narration}");

    let view = fleet.finished(&rollout);
    assert_eq!(view["outcome"], "rolled-back", "{view}");
    assert_eq!(view["breaker_trips"], 1);
    assert_eq!(view["rollbacks"], 1);
    assert_eq!(
        view["breaker_reason"],
        "1 failed of a threshold of 1 for the batch in dev (the canary)"
    );
    // Only the canary ran: it rolled itself back; nobody else was touched.
    assert_eq!(view["counts"]["rolled-back"], 1, "{view}");
    assert_eq!(view["counts"]["pending"], 3, "{view}");
    let canary = &view["rings"][0]["batches"][0]["hosts"][0];
    assert_eq!(canary["name"], "dev1");
    assert!(
        canary["note"].as_str().unwrap().contains("health"),
        "the note says why: {canary}"
    );
    for version in fleet.versions() {
        assert_eq!(
            version.as_deref(),
            Some("1.0"),
            "every host on its old version"
        );
    }
    assert_eq!(fleet.change_state(&change), "rolled-back");

    // 1.2 was rolled back in dev: a new change offering it again is refused, naming why,
    // unless a person overrides the memory on purpose.
    let again = fleet.approved_change("1.2");
    let spec = fleet.spec(policy(1, json!({"count": 1}), "rollback-batch", false));
    let refused = fleet
        .olga
        .run(&["rollout", "start", &again, "--spec", &spec]);
    assert!(!refused.status.success());
    let message = String::from_utf8_lossy(&refused.stderr);
    assert!(
        message.contains("rolled back") && message.contains("dev"),
        "{message}"
    );
    assert_eq!(
        fleet.change_state(&again),
        "scheduled",
        "a refused start changes nothing"
    );
    fleet.audit_verified();
    fleet.host_dpkg.assert_untouched();
}

#[test]
fn an_operator_rollback_returns_every_updated_host_to_its_old_version() {
    let fleet = Fleet::new(&[("dev1", "dev"), ("dev2", "dev"), ("prod1", "prod")]);
    let change = fleet.approved_change("1.1");
    // A person approves the gate into prod; until then dev is done and prod waits.
    let rollout = fleet.start_rollout(
        &change,
        policy(1, json!({"count": 1}), "rollback-batch", true),
    );
    let waiting = wait_for(
        &fleet.olga,
        &["rollout", "status", &rollout, "--output", "json"],
        "dev to finish and the gate to wait",
        |view| view["counts"]["succeeded"] == 2,
    );
    assert_eq!(
        waiting["rings"][1]["batches"][0]["hosts"][0]["status"],
        "pending"
    );
    std::thread::sleep(Duration::from_millis(500));
    let still = fleet
        .olga
        .json(&["rollout", "status", &rollout, "--output", "json"]);
    assert!(
        still["waiting"].as_str().unwrap().contains("approval"),
        "the gate waits for a person: {still}"
    );
    // The person who started it cannot approve its gate.
    let own = fleet
        .olga
        .run(&["rollout", "approve-gate", &rollout, "--ring", "1"]);
    assert!(!own.status.success());

    fleet.olga.ok(&[
        "rollout",
        "rollback",
        &rollout,
        "--reason",
        "latency doubled in dev",
    ]);
    let view = fleet.finished(&rollout);
    assert_eq!(view["outcome"], "rolled-back", "{view}");
    assert_eq!(view["rollbacks"], 2);
    for host in ["dev1", "dev2"] {
        let job = view["rings"][0]["batches"]
            .as_array()
            .unwrap()
            .iter()
            .flat_map(|b| b["hosts"].as_array().unwrap())
            .find(|h| h["name"] == host)
            .unwrap()["rollback_job"]
            .as_str()
            .unwrap()
            .to_owned();
        let shown = fleet.olga.json(&["jobs", "show", &job]);
        assert_eq!(shown["state"], "succeeded", "{shown}");
        assert_eq!(shown["report"]["versions_after"]["sluice-demo"], "1.0");
    }
    for version in fleet.versions() {
        assert_eq!(version.as_deref(), Some("1.0"));
    }
    assert_eq!(fleet.change_state(&change), "rolled-back");
    fleet.audit_verified();
    fleet.host_dpkg.assert_untouched();
}

#[test]
fn a_server_killed_mid_rollout_resumes_without_updating_any_host_twice() {
    let data = tempfile::tempdir().unwrap();
    let database = vec!["--data-dir".to_owned(), data.path().display().to_string()];
    server_killed_mid_rollout(data, &database);
}

#[test]
fn a_server_killed_mid_rollout_resumes_on_postgresql() {
    let data = tempfile::tempdir().unwrap();
    let name = format!("sluice_e2e_rollout_{}", std::process::id());
    psql(&format!("DROP DATABASE IF EXISTS {name} WITH (FORCE)"));
    psql(&format!("CREATE DATABASE {name}"));
    let url = format!("postgres://postgres@127.0.0.1:5432/{name}");
    server_killed_mid_rollout(data, &["--database-url".to_owned(), url]);
    psql(&format!("DROP DATABASE {name} WITH (FORCE)"));
}

fn psql(sql: &str) {
    let status = Command::new("psql")
        .args(["-h", "127.0.0.1", "-U", "postgres", "-d", "postgres", "-q"])
        .args(["-v", "ON_ERROR_STOP=1", "-c", sql])
        .status()
        .expect("psql (postgresql-client) must be installed: run .ci/setup");
    assert!(status.success(), "psql {sql}");
}

fn server_killed_mid_rollout(data: tempfile::TempDir, database: &[String]) {
    let hosts: Vec<(String, &str)> = (1..=6).map(|i| (format!("web{i}"), "prod")).collect();
    let refs: Vec<(&str, &str)> = hosts.iter().map(|(h, e)| (h.as_str(), *e)).collect();
    let mut fleet = Fleet::on(data, database, &refs);
    let change = fleet.approved_change("1.1");
    let rollout = fleet.start_rollout(
        &change,
        policy(1, json!({"count": 1}), "rollback-batch", false),
    );
    let before = wait_for(
        &fleet.olga,
        &["rollout", "status", &rollout, "--output", "json"],
        "two hosts done",
        |view| view["counts"]["succeeded"].as_u64().unwrap_or(0) >= 2,
    );
    fleet.server.kill_9();
    // One host per batch and a one-second watch between batches: it was mid-way.
    assert_eq!(before["finished"], false, "{before}");
    std::thread::sleep(Duration::from_millis(300));
    let port = fleet.server.port;
    let data = fleet.server.data.clone();
    let database = fleet.server.database.clone();
    fleet.server = Server::start(&data, &database, port);

    let view = fleet.finished(&rollout);
    assert_eq!(view["outcome"], "completed", "{view}");
    assert_eq!(view["counts"]["succeeded"], 6);
    // One job per host, and dpkg changed each root once: no host was updated twice.
    let jobs = fleet.olga.json(&["jobs", "list", "--output", "json"]);
    assert_eq!(jobs.as_array().unwrap().len(), 6, "{jobs}");
    for fx in &fleet.fixtures {
        assert_eq!(fx.installed("sluice-demo").as_deref(), Some("1.1"));
        let history = std::fs::read_to_string(fx.root_dir.join("var/log/apt/history.log")).unwrap();
        assert_eq!(
            history.matches("Upgrade: sluice-demo").count(),
            1,
            "{history}"
        );
    }
    fleet.audit_verified();
    fleet.host_dpkg.assert_untouched();
}

#[test]
fn an_agent_killed_mid_job_is_reported_interrupted_and_rolled_back() {
    let mut fleet = Fleet::new(&[("web1", "prod"), ("web2", "prod"), ("web3", "prod")]);
    // web1's agent dies right after apt applied the update.
    drop(fleet.agents.remove(0));
    let crashing = fleet.agent(0, None, Some("apply:after"));
    let change = fleet.approved_change("1.1");
    let rollout = fleet.start_rollout(
        &change,
        policy(1, json!({"count": 1}), "rollback-batch", false),
    );
    let mut crashing = crashing;
    let status = crashing.child.wait().unwrap();
    assert!(!status.success(), "the failpoint stops the agent mid-job");
    // Restarted, it recovers its journal and reports what really happened.
    fleet.agents.insert(0, fleet.agent(0, None, None));

    let view = fleet.finished(&rollout);
    assert_eq!(view["outcome"], "rolled-back", "{view}");
    let canary = &view["rings"][0]["batches"][0]["hosts"][0];
    assert_eq!(canary["name"], "web1");
    assert!(
        canary["note"].as_str().unwrap().starts_with("interrupted"),
        "{canary}"
    );
    let update = fleet
        .olga
        .json(&["jobs", "show", canary["job"].as_str().unwrap()]);
    assert_eq!(
        update["state"], "interrupted",
        "never reported a success: {update}"
    );
    // The rollout's rollback job returned it to 1.0; the other hosts were never started.
    assert_eq!(fleet.versions(), vec![Some("1.0".to_owned()); 3]);
    assert_eq!(view["counts"]["pending"], 2);
    fleet.audit_verified();
    fleet.host_dpkg.assert_untouched();
}

/// POSTs JSON with a bearer token: (status, body).
fn post_json(url: &str, path: &str, token: &str, body: &Value) -> (u16, String) {
    common::http(url, "POST", path, Some(token), Some(body))
}

/// Alertmanager's webhook body (version 4) for one alert on `instance`.
fn alertmanager(status: &str, instance: &str) -> Value {
    json!({
        "version": "4",
        "groupKey": "{}:{alertname=\"HighErrorRate\"}",
        "truncatedAlerts": 0,
        "status": status,
        "receiver": "sluice",
        "groupLabels": {"alertname": "HighErrorRate"},
        "commonLabels": {"alertname": "HighErrorRate", "severity": "page"},
        "commonAnnotations": {"summary": "5xx above 5%"},
        "externalURL": "http://alertmanager:9093",
        "alerts": [{
            "status": status,
            "labels": {"alertname": "HighErrorRate", "instance": instance, "severity": "page"},
            "annotations": {"summary": "5xx above 5%"},
            "startsAt": "2026-11-26T01:00:00Z",
            "endsAt": if status == "firing" { "0001-01-01T00:00:00Z" } else { "2026-11-26T01:05:00Z" },
            "generatorURL": "http://prometheus:9090/graph",
            "fingerprint": "c0ffee0123456789"
        }]
    })
}

/// A stand-in for Prometheus's query API (`/api/v1/query`, its real answer format), whose
/// answer the test switches between a breaching series and none.
fn prometheus(breaching: std::sync::Arc<std::sync::atomic::AtomicBool>) -> String {
    use std::io::{Read, Write};
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    std::thread::spawn(move || {
        for stream in listener.incoming() {
            let Ok(mut stream) = stream else { continue };
            let mut request = Vec::new();
            let mut buffer = [0u8; 2048];
            while !request.windows(4).any(|w| w == b"\r\n\r\n") {
                match stream.read(&mut buffer) {
                    Ok(0) | Err(_) => break,
                    Ok(n) => request.extend_from_slice(&buffer[..n]),
                }
            }
            let result = if breaching.load(std::sync::atomic::Ordering::SeqCst) {
                json!([{"metric": {"job": "web", "instance": "prod1:9100"}, "value": [1764118800.0, "0.12"]}])
            } else {
                json!([])
            };
            let body =
                json!({"status": "success", "data": {"resultType": "vector", "result": result}})
                    .to_string();
            let answer = format!(
                "HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
                body.len()
            );
            let _ = stream.write_all(answer.as_bytes());
        }
    });
    url
}

/// A real HAProxy with backend `web` holding the fleet's hosts at weight 100.
struct Haproxy {
    child: Child,
    socket: PathBuf,
    _dir: tempfile::TempDir,
}

impl Drop for Haproxy {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Haproxy {
    fn start(servers: &[&str]) -> Haproxy {
        let binary = "/usr/sbin/haproxy";
        assert!(
            Path::new(binary).exists(),
            "{binary} is missing: run .ci/setup"
        );
        let dir = tempfile::tempdir().unwrap();
        let socket = dir.path().join("admin.sock");
        let mut config = format!(
            "global\n    stats socket {} mode 600 level admin\ndefaults\n    mode http\n    timeout connect 2s\n    timeout client 5s\n    timeout server 5s\nfrontend fe\n    bind 127.0.0.1:{}\n    default_backend web\nbackend web\n",
            socket.display(),
            free_port()
        );
        for server in servers {
            config.push_str(&format!(
                "    server {server} 127.0.0.1:{} weight 100\n",
                free_port()
            ));
        }
        let path = dir.path().join("haproxy.cfg");
        std::fs::write(&path, config).unwrap();
        let child = Command::new(binary)
            .arg("-f")
            .arg(&path)
            .arg("-db")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        let deadline = Instant::now() + Duration::from_secs(10);
        while std::os::unix::net::UnixStream::connect(&socket).is_err() {
            assert!(Instant::now() < deadline, "haproxy did not start");
            std::thread::sleep(Duration::from_millis(50));
        }
        Haproxy {
            child,
            socket,
            _dir: dir,
        }
    }

    fn weight(&self, server: &str) -> String {
        use std::io::{Read, Write};
        let mut stream = std::os::unix::net::UnixStream::connect(&self.socket).unwrap();
        stream
            .write_all(format!("get weight web/{server}\n").as_bytes())
            .unwrap();
        let mut answer = String::new();
        stream.read_to_string(&mut answer).unwrap();
        answer.trim().to_owned()
    }
}

#[test]
fn alerts_pause_the_rollout_and_canary_traffic_is_shifted_through_haproxy() {
    let fleet = Fleet::new(&[("dev1", "dev"), ("dev2", "dev"), ("prod1", "prod")]);
    let haproxy = Haproxy::start(&["dev1", "dev2", "prod1"]);
    let breaching = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let prometheus_url = prometheus(breaching.clone());
    let change = fleet.approved_change("1.1");
    let spec_path = fleet.server.data.join("signals.json");
    std::fs::write(
        &spec_path,
        json!({
            "policy": policy(1, json!({"count": 1}), "pause", true),
            "job": {"checks": [{"type": "command", "argv": ["/bin/sh", "-c", "exec \"$SLUICE_ROOT/usr/lib/sluice-demo/health\""], "timeout_secs": 10}]},
            "haproxy": {"address": format!("unix:{}", haproxy.socket.display()), "backend": "web", "canary_weight": 10},
            "prometheus": {"url": prometheus_url, "query": "sum(rate(http_5xx[1m])) by (instance) > 0.05", "interval_secs": 1}
        })
        .to_string(),
    )
    .unwrap();
    let view = fleet.olga.json(&[
        "rollout",
        "start",
        &change,
        "--spec",
        spec_path.to_str().unwrap(),
        "--output",
        "json",
    ]);
    let rollout = view["id"].as_str().unwrap().to_owned();
    let status = ["rollout", "status", rollout.as_str(), "--output", "json"];

    // dev finishes; the gate into prod waits for a person.
    wait_for(&fleet.olga, &status, "dev done", |v| {
        v["counts"]["succeeded"] == 2
    });
    // The canary's server got 10% of its weight while it ran, and its full weight back once
    // the next batch started; the other servers were never touched.
    let early = fleet
        .olga
        .json(&["rollout", "status", &rollout, "--output", "json"]);
    assert_eq!(haproxy.weight("dev1"), "100 (initial 100)", "{early}");
    assert_eq!(haproxy.weight("dev2"), "100 (initial 100)");

    // Alertmanager fires for prod1: the rollout pauses, and even an approved gate starts
    // nothing while it fires.
    let token = fleet.olga.ok(&[
        "token",
        "create",
        "--name",
        "alertmanager",
        "--role",
        "operator",
    ]);
    let token = token.trim();
    let (code, body) = post_json(
        &fleet.server.url,
        "/api/v1/alerts/alertmanager",
        token,
        &alertmanager("firing", "prod1:9100"),
    );
    assert_eq!(code, 200, "{body}");
    let paused = fleet.olga.json(&status);
    assert_eq!(paused["phase"], "paused", "{paused}");
    assert!(
        paused["pause_reason"]
            .as_str()
            .unwrap()
            .contains("HighErrorRate"),
        "{paused}"
    );
    let erin = Person::login(&fleet.server.url, "erin", USER_PASSWORD);
    erin.ok(&["rollout", "approve-gate", &rollout, "--ring", "1"]);
    std::thread::sleep(Duration::from_millis(1500));
    let held = fleet.olga.json(&status);
    assert_eq!(
        held["rings"][1]["batches"][0]["hosts"][0]["status"], "pending",
        "{held}"
    );
    // A person cannot resume over a firing alert.
    assert!(
        !fleet
            .olga
            .run(&["rollout", "resume", &rollout])
            .status
            .success()
    );

    // Prometheus breaches too; Alertmanager resolves: still paused by the query.
    breaching.store(true, std::sync::atomic::Ordering::SeqCst);
    wait_for(&fleet.olga, &status, "the query to fire", |v| {
        v["alerts_firing"].as_array().is_some_and(|a| {
            a.iter()
                .any(|x| x.as_str().unwrap_or("").starts_with("prometheus"))
        })
    });
    let (code, body) = post_json(
        &fleet.server.url,
        "/api/v1/alerts/alertmanager",
        token,
        &alertmanager("resolved", "prod1:9100"),
    );
    assert_eq!(code, 200, "{body}");
    std::thread::sleep(Duration::from_millis(1500));
    assert_eq!(fleet.olga.json(&status)["phase"], "paused");
    // The query comes back clean: every alert resolved, the rollout resumes by itself.
    breaching.store(false, std::sync::atomic::Ordering::SeqCst);
    let done = fleet.finished(&rollout);
    assert_eq!(done["outcome"], "completed", "{done}");
    assert_eq!(fleet.versions(), vec![Some("1.1".to_owned()); 3]);

    // A payload that is not Alertmanager's version 4 is refused, naming why.
    let mut old = alertmanager("firing", "prod1");
    old["version"] = json!("3");
    let (code, body) = post_json(
        &fleet.server.url,
        "/api/v1/alerts/alertmanager",
        token,
        &old,
    );
    assert_eq!(code, 422, "{body}");
    assert!(body.contains("version"), "{body}");
    // And nobody without a token gets in.
    let (code, _) = post_json(
        &fleet.server.url,
        "/api/v1/alerts/alertmanager",
        "slc_nope",
        &alertmanager("firing", "prod1"),
    );
    assert_eq!(code, 401);

    let log = fleet.olga.run(&["rollout", "watch", &rollout]);
    let narration = String::from_utf8_lossy(&log.stderr).into_owned();
    assert!(
        narration.contains("haproxy web/dev1: weight 10%"),
        "{narration}"
    );
    assert!(
        narration.contains("haproxy web/dev1: weight 100%"),
        "{narration}"
    );
    assert!(
        narration.contains("alert firing: HighErrorRate"),
        "{narration}"
    );
    assert!(
        narration.contains("alert resolved: prometheus"),
        "{narration}"
    );
    fleet.audit_verified();
    fleet.host_dpkg.assert_untouched();
}

#[test]
fn a_host_that_needs_a_reboot_stays_pending_until_one_is_seen() {
    let fleet = Fleet::new(&[("web1", "prod")]);
    let change = fleet.approved_change("1.1");
    // The update leaves the root asking for a reboot, as a kernel or libc update does
    // (Debian's /var/run/reboot-required).
    let spec = fleet.server.data.join("reboot.json");
    std::fs::write(
        &spec,
        json!({
            "policy": policy(1, json!({"count": 1}), "pause", false),
            "job": {"checks": [{"type": "command", "argv": ["/bin/sh", "-c", "mkdir -p \"$SLUICE_ROOT/var/run\" && touch \"$SLUICE_ROOT/var/run/reboot-required\""], "timeout_secs": 10}]}
        })
        .to_string(),
    )
    .unwrap();
    let view = fleet.olga.json(&[
        "rollout",
        "start",
        &change,
        "--spec",
        spec.to_str().unwrap(),
        "--output",
        "json",
    ]);
    let rollout = view["id"].as_str().unwrap().to_owned();
    let status = ["rollout", "status", rollout.as_str(), "--output", "json"];
    let pending = wait_for(&fleet.olga, &status, "pending-reboot", |v| {
        v["counts"]["pending-reboot"] == 1
    });
    assert_eq!(pending["finished"], false);
    std::thread::sleep(Duration::from_secs(3));
    assert_eq!(
        fleet.olga.json(&status)["counts"]["pending-reboot"],
        1,
        "it waits"
    );
    assert_eq!(
        fleet.fixtures[0].installed("sluice-demo").as_deref(),
        Some("1.1")
    );

    // "Reboot": the flag is gone; the agent's next inventory says so and the host succeeds.
    std::fs::remove_file(fleet.fixtures[0].root_dir.join("var/run/reboot-required")).unwrap();
    let done = fleet.finished(&rollout);
    assert_eq!(done["outcome"], "completed", "{done}");
    let log = fleet.olga.run(&["rollout", "watch", &rollout]);
    let narration = String::from_utf8_lossy(&log.stderr).into_owned();
    assert!(
        narration.contains("web1: updated, waiting for a reboot"),
        "{narration}"
    );
    fleet.audit_verified();
    fleet.host_dpkg.assert_untouched();
}

#[test]
fn operators_pause_resume_retry_reset_the_breaker_and_abort() {
    let fleet = Fleet::new(&[("dev1", "dev"), ("dev2", "dev"), ("prod1", "prod")]);

    // A bad release under `on_trip: pause`: the canary fails, the breaker trips, and the
    // rollout waits for a person instead of ending.
    let bad = fleet.approved_change("1.2");
    let rollout = fleet.start_rollout(&bad, policy(1, json!({"count": 1}), "pause", false));
    let status = ["rollout", "status", rollout.as_str(), "--output", "json"];
    let halted = wait_for(&fleet.olga, &status, "the breaker", |v| {
        v["phase"] == "halted"
    });
    assert_eq!(
        halted["finished"], false,
        "a paused trip waits for a person: {halted}"
    );
    assert_eq!(halted["breaker_trips"], 1);
    // A person tries the canary again: first the host, then the breaker.
    fleet.olga.ok(&["rollout", "retry", &rollout, "dev1"]);
    fleet.olga.ok(&["rollout", "reset-breaker", &rollout]);
    wait_for(&fleet.olga, &status, "the second trip", |v| {
        v["breaker_trips"] == 2
    });
    let second = fleet.olga.json(&status);
    assert_eq!(
        second["rings"][0]["batches"][0]["hosts"][0]["job"],
        format!("{rollout}-dev1-u2")
    );
    fleet
        .olga
        .ok(&["rollout", "abort", &rollout, "--reason", "1.2 is broken"]);
    let aborted = fleet.finished(&rollout);
    assert_eq!(aborted["outcome"], "aborted", "{aborted}");
    assert_eq!(fleet.change_state(&bad), "failed");
    assert_eq!(
        fleet.versions(),
        vec![Some("1.0".to_owned()); 3],
        "nothing else started"
    );
    // A finished rollout takes no more actions.
    assert!(
        !fleet
            .olga
            .run(&["rollout", "resume", &rollout])
            .status
            .success()
    );

    // A good release, paused by a person right after it starts: nothing more starts until
    // they resume.
    let good = fleet.approved_change("1.1");
    let rollout = fleet.start_rollout(&good, policy(1, json!({"count": 1}), "pause", false));
    fleet.olga.ok(&[
        "rollout",
        "pause",
        &rollout,
        "--reason",
        "watching the canary by hand",
    ]);
    let status = ["rollout", "status", rollout.as_str(), "--output", "json"];
    std::thread::sleep(Duration::from_secs(3));
    let paused = fleet.olga.json(&status);
    assert_eq!(paused["phase"], "paused", "{paused}");
    assert!(
        paused["pause_reason"].as_str().unwrap().contains("by hand"),
        "{paused}"
    );
    let started: u64 = ["running", "succeeded", "pending-reboot"]
        .iter()
        .map(|s| paused["counts"][s].as_u64().unwrap())
        .sum();
    assert_eq!(
        started, 1,
        "only the canary, started before the pause: {paused}"
    );
    fleet.olga.ok(&["rollout", "resume", &rollout]);
    let done = fleet.finished(&rollout);
    assert_eq!(done["outcome"], "completed", "{done}");
    assert_eq!(fleet.versions(), vec![Some("1.1".to_owned()); 3]);
    fleet.audit_verified();
    fleet.host_dpkg.assert_untouched();
}

#[test]
fn a_host_whose_agent_is_revoked_mid_rollout_fails_instead_of_waiting() {
    let fleet = Fleet::new(&[("web1", "prod"), ("web2", "prod")]);
    let change = fleet.approved_change("1.1");
    let rollout = fleet.start_rollout(
        &change,
        policy(1, json!({"count": 1}), "rollback-failed", false),
    );
    // web2's agent is revoked while the canary (web1) runs.
    fleet.admin.ok(&["agents", "revoke", "web2"]);
    let view = fleet.finished(&rollout);
    let web2 = &view["rings"][0]["batches"][1]["hosts"][0];
    assert_eq!(web2["name"], "web2");
    assert_eq!(web2["status"], "failed", "{view}");
    assert!(
        web2["note"].as_str().unwrap().contains("no enrolled agent"),
        "{web2}"
    );
    assert_eq!(web2["job"], Value::Null, "no job was queued for it");
    assert_eq!(
        view["outcome"], "failed",
        "it cannot be rolled back either: {view}"
    );
    assert_eq!(fleet.change_state(&change), "failed");
    assert_eq!(
        fleet.fixtures[0].installed("sluice-demo").as_deref(),
        Some("1.1")
    );
    assert_eq!(
        fleet.fixtures[1].installed("sluice-demo").as_deref(),
        Some("1.0")
    );
    fleet.audit_verified();
    fleet.host_dpkg.assert_untouched();
}

#[test]
fn a_services_disruption_budget_holds_inside_a_batch() {
    let fleet = Fleet::new(&[
        ("web1", "prod"),
        ("web2", "prod"),
        ("web3", "prod"),
        ("web4", "prod"),
    ]);
    // The CMDB says web1..web4 run the service "shop", of which one host at most may be down.
    let token = fleet
        .olga
        .ok(&["token", "create", "--name", "cmdb", "--role", "operator"]);
    let (code, body) = common::http(
        &fleet.server.url,
        "PUT",
        "/api/v1/services/shop",
        Some(token.trim()),
        Some(&json!({"members": ["web1", "web2", "web3", "web4"], "disruption_budget": "1"})),
    );
    assert!(code == 200 || code == 201, "{code} {body}");
    let change = fleet.approved_change("1.1");
    // One batch of the whole ring, ten at once: only the budget holds them back.
    let mut wide = policy(1, json!({"percent": 100}), "pause", false);
    wide.as_object_mut().unwrap().remove("canary");
    let rollout = fleet.start_rollout(&change, wide);
    let watched = fleet.olga.run(&["rollout", "watch", &rollout]);
    let narration = String::from_utf8_lossy(&watched.stderr).into_owned();
    assert!(watched.status.success(), "{narration}");
    let starts: Vec<&str> = narration
        .lines()
        .filter(|l| l.contains(": started "))
        .collect();
    assert_eq!(starts.len(), 4, "one host at a time: {narration}");
    for line in starts {
        assert!(
            !line.contains(','),
            "never two of the service at once: {line}"
        );
    }
    assert_eq!(fleet.versions(), vec![Some("1.1".to_owned()); 4]);
    fleet.audit_verified();
    fleet.host_dpkg.assert_untouched();
}
