//! `sluice demo --headless --output json`, the whole story as one process tree: a server,
//! agents on private roots, a change through the CAB rolled out canary first, a bad release
//! stopped by the breaker and rolled back. The JSON report is checked against the story, and the
//! machine's own dpkg database must be exactly as it was.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::process::Command;

use serde_json::Value;

/// The machine's own dpkg database. A missing one fails the test: it would compare equal to
/// itself and prove nothing.
fn host_dpkg_status() -> Vec<u8> {
    let status = std::fs::read("/var/lib/dpkg/status")
        .unwrap_or_else(|e| panic!("cannot read the machine's /var/lib/dpkg/status: {e}"));
    assert!(
        String::from_utf8_lossy(&status).contains("Package: "),
        "/var/lib/dpkg/status holds no packages: nothing to prove untouched"
    );
    status
}

#[test]
fn the_demo_tells_the_whole_story_and_leaves_the_machine_alone() {
    let status_before = host_dpkg_status();
    let dir = tempfile::tempdir().unwrap();
    let work = dir.path().join("demo");
    let output = Command::new(env!("CARGO_BIN_EXE_sluice"))
        .args(["demo", "--headless", "--output", "json", "--agents", "6"])
        .arg("--dir")
        .arg(&work)
        .env_remove("SLUICE_DATABASE_URL")
        .env_remove("SLUICE_CONFIG")
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&output.stdout);
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        output.status.success(),
        "exit {:?}\nstdout: {stdout}\nstderr: {stderr}",
        output.status.code()
    );
    let report: Value = serde_json::from_str(&stdout)
        .unwrap_or_else(|e| panic!("stdout is one JSON object ({e}): {stdout}\nstderr: {stderr}"));

    // Whether the windows are open is the server's answer, not the demo's own claim.
    assert!(
        stderr.contains("the server's calendar: all 6 hosts' windows are open"),
        "{stderr}"
    );

    let changes = report["changes"].as_array().unwrap();
    assert_eq!(changes.len(), 2, "{report:#}");
    for change in changes {
        assert!(change["id"].as_str().unwrap().starts_with("CHG-"));
        assert!(!change["title"].as_str().unwrap().is_empty());
    }
    assert_eq!(changes[0]["state"], "completed", "{report:#}");
    assert_eq!(changes[1]["state"], "rolled-back", "{report:#}");

    let hosts = report["hosts"].as_array().unwrap();
    assert_eq!(hosts.len(), 6);
    let mut rings: Vec<&str> = hosts.iter().map(|h| h["ring"].as_str().unwrap()).collect();
    rings.sort_unstable();
    rings.dedup();
    assert_eq!(rings, ["dev", "prod", "test"], "{report:#}");
    for host in hosts {
        assert_eq!(host["versions"]["acme-web"], "1.1", "{host}");
        // The report's versions are dpkg's, read in each host's private root.
        let name = host["name"].as_str().unwrap();
        let admindir = work.join("agents").join(name).join("root/var/lib/dpkg");
        let dpkg = Command::new("dpkg-query")
            .arg(format!("--admindir={}", admindir.display()))
            .args(["-W", "-f=${Version}", "acme-web"])
            .output()
            .unwrap();
        assert_eq!(String::from_utf8_lossy(&dpkg.stdout), "1.1", "{name}");
    }
    // The numbers follow from the story (crates/sluice/src/cmd/demo/story.rs): the first change
    // reaches every host, nothing fails. The second starts with a one-host canary in dev; its
    // health check fails on the bad release, so its agent rolls it back (one rollback), the
    // per-batch threshold of one failure trips the breaker once, and nothing else starts (the
    // canary is the whole batch the breaker rolls back, already restored).
    let rollout = |change: usize, field: &str| changes[change]["rollout"][field].as_u64();
    assert_eq!(rollout(0, "breaker_trips"), Some(0), "{report:#}");
    assert_eq!(rollout(0, "rollbacks"), Some(0), "{report:#}");
    assert_eq!(rollout(1, "breaker_trips"), Some(1), "{report:#}");
    assert_eq!(rollout(1, "rollbacks"), Some(1), "{report:#}");
    assert_eq!(
        changes[1]["rollout"]["outcome"], "rolled-back",
        "{report:#}"
    );
    assert_eq!(report["breaker_trips"], 1, "{report:#}");
    assert_eq!(report["rollbacks"], 1, "{report:#}");
    assert_eq!(report["audit_verified"], true, "{report:#}");
    // The first change's findings were closed by the hosts' fresh inventories.
    assert_eq!(report["findings"]["opened"], 6, "{report:#}");
    assert_eq!(report["findings"]["resolved"], 6, "{report:#}");
    assert_eq!(report["findings"]["open_after_rollout"], 0, "{report:#}");
    assert!(report["duration_s"].as_f64().unwrap() > 0.0);

    // The audit check is the CLI's own, on the database the demo left behind.
    let verify = Command::new(env!("CARGO_BIN_EXE_sluice"))
        .args(["audit", "verify", "--data-dir"])
        .arg(work.join("server"))
        .env_remove("SLUICE_DATABASE_URL")
        .env_remove("SLUICE_CONFIG")
        .output()
        .unwrap();
    assert!(
        verify.status.success(),
        "{}",
        String::from_utf8_lossy(&verify.stderr)
    );

    assert!(
        host_dpkg_status() == status_before,
        "the machine's own /var/lib/dpkg/status changed during the demo"
    );
}

#[test]
fn bad_flags_are_refused_with_a_clear_message() {
    for (args, words) in [
        (vec!["--agents", "0"], "--agents"),
        (vec!["--agents", "many"], "--agents"),
        (vec!["--output", "yaml"], "--output"),
    ] {
        let output = Command::new(env!("CARGO_BIN_EXE_sluice"))
            .arg("demo")
            .args(&args)
            .output()
            .unwrap();
        assert!(!output.status.success(), "{args:?} was accepted");
        assert_eq!(output.status.code(), Some(2), "{args:?}");
        let stderr = String::from_utf8_lossy(&output.stderr);
        assert!(stderr.contains(words), "{args:?}: {stderr}");
        assert!(output.stdout.is_empty(), "{args:?}: nothing on stdout");
    }
    // A directory that already holds something is refused before anything starts.
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("precious"), "keep me").unwrap();
    let output = Command::new(env!("CARGO_BIN_EXE_sluice"))
        .args(["demo", "--headless", "--dir"])
        .arg(dir.path())
        .output()
        .unwrap();
    assert_eq!(output.status.code(), Some(2));
    assert!(
        String::from_utf8_lossy(&output.stderr).contains("not empty"),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    assert_eq!(
        std::fs::read_to_string(dir.path().join("precious")).unwrap(),
        "keep me"
    );
}
