//! Real processes end to end: a `sluice server`, and `sluice agent`s on private dpkg roots fed
//! from a local apt repository of packages built by the test. Agents enroll with one-time
//! tokens, report their inventories (their hosts appear in the CMDB), converge to the versions a
//! job names, roll back a release whose health check fails, survive `kill -9` in the middle of a
//! job with an honest report, and are cut off by revocation. The machine's own packages are never
//! touched, and the audit chain is intact at the end.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;
#[path = "../../sluice-agent/tests/common/mod.rs"]
mod fixture;

use std::path::Path;
use std::process::Child;
use std::time::{Duration, Instant};

use common::{PASSWORD, Running, ok, sluice};
use fixture::Fixture;
use serde_json::{Value, json};

fn start_agent(
    fx: &Fixture,
    url: &str,
    host: &str,
    token: Option<&str>,
    failpoint: Option<&str>,
) -> Child {
    let mut command = common::agent_command(url, host, &fx.state, &fx.root_dir, "env=test");
    if let Some(token) = token {
        command.args(["--enroll-token", token]);
    }
    if let Some(point) = failpoint {
        command.env("SLUICE_AGENT_FAILPOINT", point);
    }
    command.spawn().unwrap()
}

fn json_of(config: &Path, args: &[&str]) -> Value {
    serde_json::from_str(&ok(&sluice(config, args, None))).unwrap()
}

/// Waits until `done` holds for the answer of `sluice ARGS` (JSON), up to a minute.
fn wait_for(config: &Path, args: &[&str], what: &str, done: impl Fn(&Value) -> bool) -> Value {
    let deadline = Instant::now() + Duration::from_secs(90);
    loop {
        let output = sluice(config, args, None);
        if output.status.success() {
            let value: Value = serde_json::from_slice(&output.stdout).unwrap_or(Value::Null);
            if done(&value) {
                return value;
            }
        }
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(250));
    }
}

fn queue(config: &Path, host: &str, job: Value) -> String {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("job.json");
    std::fs::write(&file, job.to_string()).unwrap();
    let stored = json_of(
        config,
        &[
            "jobs",
            "create",
            "--host",
            host,
            "--file",
            file.to_str().unwrap(),
            "--output",
            "json",
        ],
    );
    stored["job"]["id"].as_str().unwrap().to_owned()
}

fn finished(config: &Path, id: &str) -> Value {
    wait_for(config, &["jobs", "show", id], &format!("job {id}"), |job| {
        !matches!(job["state"].as_str(), Some("queued" | "claimed") | None)
    })
}

fn update(fx: &Fixture, version: &str) -> Value {
    json!({
        "targets": [{"package": "sluice-demo", "version": version}],
        "checks": [{"type": "command", "argv": [fx.health()], "timeout_secs": 10}]
    })
}

#[test]
fn agents_enroll_converge_roll_back_and_survive_kill_9() {
    let data = tempfile::tempdir().unwrap();
    let config = tempfile::tempdir().unwrap();
    let config = config.path();
    let server = Running::start(&["--data-dir", data.path().to_str().unwrap()]);
    let url = server.url.clone();
    ok(&sluice(
        config,
        &["login", "--server", &url, "--password-stdin"],
        Some(&format!("{PASSWORD}\n")),
    ));

    let hosts = ["web1", "web2", "web3"];
    let fixtures: Vec<Fixture> = hosts.iter().map(|_| Fixture::new()).collect();
    let mut agents: Vec<Child> = Vec::new();
    for (fx, host) in fixtures.iter().zip(hosts) {
        let token = ok(&sluice(
            config,
            &["agents", "token", "create", "--expires", "1h"],
            None,
        ));
        agents.push(start_agent(fx, &url, host, Some(token.trim()), None));
    }
    // Enrolled, and each host's inventory is in the CMDB with the release its root runs.
    wait_for(
        config,
        &["agents", "list", "--output", "json"],
        "three agents",
        |list| list.as_array().is_some_and(|a| a.len() == 3),
    );
    for host in hosts {
        wait_for(
            config,
            &["assets", "show", host, "--output", "json"],
            host,
            |asset| asset["os"].as_str() == Some("Debian:12"),
        );
    }
    let key = fixtures[0].state.join("agent.key");
    let mode =
        std::os::unix::fs::PermissionsExt::mode(&std::fs::metadata(&key).unwrap().permissions());
    assert_eq!(mode & 0o777, 0o600, "the agent key is private");

    // Converge: every host to 1.1, checked by the package's own health script.
    let ids: Vec<String> = fixtures
        .iter()
        .zip(hosts)
        .map(|(fx, host)| queue(config, host, update(fx, "1.1")))
        .collect();
    for ((fx, id), host) in fixtures.iter().zip(&ids).zip(hosts) {
        let job = finished(config, id);
        assert_eq!(job["state"], "succeeded", "{host}: {job}");
        assert_eq!(job["report"]["versions_after"]["sluice-demo"], "1.1");
        assert_eq!(
            fx.installed("sluice-demo").as_deref(),
            Some("1.1"),
            "{host}"
        );
    }
    // The same job again: already compliant, apt not run.
    let again = queue(config, "web1", update(&fixtures[0], "1.1"));
    assert_eq!(finished(config, &again)["state"], "already-compliant");

    // 1.2 fails its health check: rolled back to 1.1.
    let bad = queue(config, "web2", update(&fixtures[1], "1.2"));
    let job = finished(config, &bad);
    assert_eq!(job["state"], "rolled-back", "{job}");
    assert_eq!(fixtures[1].installed("sluice-demo").as_deref(), Some("1.1"));

    // kill -9 in the middle of an apply: the restarted agent reports it interrupted, with the
    // versions dpkg has now; never a success.
    let mut web3 = agents.pop().unwrap();
    web3.kill().unwrap();
    web3.wait().unwrap();
    let crashing = start_agent(&fixtures[2], &url, "web3", None, Some("apply:after"));
    let interrupted = queue(config, "web3", update(&fixtures[2], "1.2"));
    let status = {
        let mut crashing = crashing;
        crashing.wait().unwrap()
    };
    assert_eq!(
        std::os::unix::process::ExitStatusExt::signal(&status),
        Some(9),
        "killed at the failpoint"
    );
    agents.push(start_agent(&fixtures[2], &url, "web3", None, None));
    let job = finished(config, &interrupted);
    assert_eq!(job["state"], "interrupted", "{job}");
    let installed = fixtures[2].installed("sluice-demo");
    assert_eq!(
        job["report"]["versions_after"]["sluice-demo"].as_str(),
        installed.as_deref()
    );
    assert_eq!(job["report"]["interrupted_at"], "apply");

    // An inventory on request: the agent sends it whole on its next round.
    let asked = sluice(config, &["agents", "inventory", "web2"], None);
    assert!(asked.status.success());
    assert!(
        String::from_utf8_lossy(&asked.stderr).contains("requested at 20"),
        "{}",
        String::from_utf8_lossy(&asked.stderr)
    );
    wait_for(
        config,
        &["agents", "list", "--output", "json"],
        "the requested inventory",
        |list| {
            list.as_array().is_some_and(|agents| {
                agents
                    .iter()
                    .any(|a| a["hostname"] == "web2" && a["inventory_requested_at"].is_null())
            })
        },
    );

    // Revocation cuts an agent off: no new jobs reach it.
    ok(&sluice(config, &["agents", "revoke", "web1"], None));
    let refused = sluice(
        config,
        &[
            "jobs",
            "create",
            "--host",
            "web1",
            "--target",
            "sluice-demo=1.0",
        ],
        None,
    );
    assert!(!refused.status.success());
    assert!(String::from_utf8_lossy(&refused.stderr).contains("enrolled agent"));

    for mut agent in agents {
        agent.kill().unwrap();
        agent.wait().unwrap();
    }
    server.stop();
    let verify = ok(&sluice(
        config,
        &[
            "audit",
            "verify",
            "--data-dir",
            data.path().to_str().unwrap(),
        ],
        None,
    ));
    assert!(verify.contains("intact"), "{verify}");
    for fx in &fixtures {
        fx.host.assert_untouched();
    }
}
