//! `sluice scan` end to end: the real binary on the shipped example hosts and feeds, checked
//! against the reference tools (dpkg, rpm) rather than against numbers written down here.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use serde_json::Value;

fn repo() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../..")
}

fn example(path: &str) -> String {
    repo().join("examples").join(path).display().to_string()
}

fn sluice(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_sluice"))
        .args(args)
        .output()
        .expect("run sluice")
}

fn debian_scan(extra: &[&str]) -> Output {
    let status = example("debian11-web/status");
    let os = example("debian11-web/os-release");
    let dsa = example("feeds/DSA-list");
    let kev = example("feeds/known_exploited_vulnerabilities.json");
    let mut args = vec![
        "scan",
        "--status",
        &status,
        "--os-release",
        &os,
        "--feed",
        &dsa,
        "--kev",
        &kev,
        "--as-of",
        "2026-11-25",
    ];
    args.extend_from_slice(extra);
    sluice(&args)
}

fn json_of(output: &Output) -> Value {
    assert!(
        output.status.success(),
        "exit {:?}\nstderr: {}",
        output.status.code(),
        String::from_utf8_lossy(&output.stderr)
    );
    serde_json::from_slice(&output.stdout).expect("stdout is JSON")
}

fn dpkg_lt(a: &str, b: &str) -> bool {
    let status = Command::new("dpkg")
        .args(["--compare-versions", a, "lt", b])
        .status()
        .expect("dpkg must be installed (apt-get install dpkg)");
    match status.code() {
        Some(0) => true,
        Some(1) => false,
        other => panic!("dpkg --compare-versions {a} lt {b} failed: {other:?}"),
    }
}

/// The DSA list's bullseye lines, parsed independently of Sluice: (advisory, source, fixed).
fn bullseye_fixes() -> Vec<(String, String, String)> {
    let text = std::fs::read_to_string(example("feeds/DSA-list")).unwrap();
    let mut current = String::new();
    let mut fixes = Vec::new();
    for line in text.lines() {
        if line.starts_with('[') {
            current = line
                .split_whitespace()
                .nth(3)
                .unwrap_or_default()
                .to_owned();
        } else if let Some(rest) = line.trim().strip_prefix("[bullseye] - ") {
            let mut words = rest.split_whitespace();
            let (source, fixed) = (words.next().unwrap(), words.next().unwrap());
            if !fixed.starts_with('<') {
                fixes.push((current.clone(), source.to_owned(), fixed.to_owned()));
            }
        }
    }
    fixes
}

#[test]
fn debian_findings_equal_what_dpkg_says() {
    let report = json_of(&debian_scan(&["--output", "json"]));
    let findings = report["findings"].as_array().unwrap();
    let got: BTreeSet<(String, String)> = findings
        .iter()
        .map(|f| {
            (
                f["advisory"].as_str().unwrap().to_owned(),
                f["package"].as_str().unwrap().to_owned(),
            )
        })
        .collect();

    // The oracle: every installed binary whose source version dpkg orders below a bullseye fix.
    let status = std::fs::read_to_string(example("debian11-web/status")).unwrap();
    let mut expected = BTreeSet::new();
    let fixes = bullseye_fixes();
    for paragraph in status.split("\n\n") {
        let field = |name: &str| {
            paragraph
                .lines()
                .find_map(|l| l.strip_prefix(&format!("{name}: ")))
                .map(str::to_owned)
        };
        if field("Status").as_deref() != Some("install ok installed") {
            continue;
        }
        let package = field("Package").unwrap();
        let version = field("Version").unwrap();
        let (source, source_version) = match field("Source") {
            None => (package.clone(), version.clone()),
            Some(s) => match s.split_once(" (") {
                Some((name, v)) => (name.to_owned(), v.trim_end_matches(')').to_owned()),
                None => (s, version.clone()),
            },
        };
        for (advisory, fix_source, fixed) in &fixes {
            if *fix_source == source && dpkg_lt(&source_version, fixed) {
                expected.insert((advisory.clone(), package.clone()));
            }
        }
    }
    assert!(
        expected.len() > 50,
        "the example host should have many findings"
    );
    assert_eq!(got, expected);
    assert!(
        !findings.iter().any(|f| f["package"] == "exim4-config"),
        "packages left as config-files are not installed"
    );
    assert_eq!(
        report["summary"]["findings"].as_u64().unwrap() as usize,
        findings.len()
    );
}

#[test]
fn json_findings_are_complete_and_sorted_by_priority() {
    let report = json_of(&debian_scan(&[
        "--output",
        "json",
        "--asset",
        "criticality=4",
        "exposure=internet",
        "data=pii",
    ]));
    let findings = report["findings"].as_array().unwrap();
    for f in findings {
        for key in [
            "package",
            "source_package",
            "installed",
            "fixed",
            "advisory",
            "aliases",
            "update_type",
            "cvss",
            "kev",
            "epss",
            "decision",
            "score",
            "due",
        ] {
            assert!(f.get(key).is_some(), "finding lacks {key}: {f}");
        }
    }
    let scores: Vec<f64> = findings
        .iter()
        .map(|f| f["score"].as_f64().unwrap())
        .collect();
    assert!(
        scores.windows(2).all(|w| w[0] >= w[1]),
        "sorted by score, highest first"
    );
    let log4shell = findings
        .iter()
        .find(|f| f["advisory"] == "DSA-5020-1")
        .expect("Log4Shell on the example host");
    assert_eq!(log4shell["package"], "liblog4j2-java");
    assert_eq!(log4shell["source_package"], "apache-log4j2");
    assert_eq!(log4shell["fixed"], "2.15.0-1~deb11u1");
    assert_eq!(log4shell["kev"], true);
    assert_eq!(log4shell["decision"], "act");
    assert_eq!(
        log4shell["due"], "2026-12-02",
        "KEV on an internet host: 7 days"
    );
    assert!(
        log4shell["aliases"]
            .as_array()
            .unwrap()
            .iter()
            .any(|a| a == "CVE-2021-44228")
    );
    assert_eq!(findings[0]["decision"], "act");
    // The one malformed record in the real DSA list is reported, not fatal.
    let skipped = report["skipped_records"].as_array().unwrap();
    assert!(
        skipped
            .iter()
            .any(|s| s["record"].as_str().unwrap().starts_with("DSA-423"))
    );
}

#[test]
fn table_and_csv_outputs() {
    let output = debian_scan(&["--top", "5"]);
    assert!(output.status.success());
    let table = String::from_utf8(output.stdout).unwrap();
    let lines: Vec<&str> = table.lines().collect();
    assert!(lines[0].starts_with("SCORE"), "{table}");
    assert_eq!(lines.iter().filter(|l| l.contains("DSA-")).count(), 5);
    assert!(table.contains("more findings"));
    assert!(
        table.contains("Scanned 45 installed packages (Debian:11)"),
        "{table}"
    );
    let stderr = String::from_utf8(output.stderr).unwrap();
    assert!(stderr.contains("skipped 1 malformed record"), "{stderr}");

    let output = debian_scan(&["--output", "csv"]);
    let csv = String::from_utf8(output.stdout).unwrap();
    let json = json_of(&debian_scan(&["--output", "json"]));
    assert!(csv.starts_with("score,decision,due,tier,package"));
    assert_eq!(
        csv.lines().count() - 1,
        json["findings"].as_array().unwrap().len()
    );
}

#[test]
fn alma_findings_are_below_their_fix_per_rpm() {
    let rpm_qa = example("alma8-db/rpm-qa.txt");
    let os = example("alma8-db/os-release");
    let zip = example("feeds/AlmaLinux-8.zip");
    let report = json_of(&sluice(&[
        "scan",
        "--rpm-qa",
        &rpm_qa,
        "--os-release",
        &os,
        "--feed",
        &zip,
        "--output",
        "json",
    ]));
    let findings = report["findings"].as_array().unwrap();
    assert!(findings.len() > 100);
    assert_eq!(report["summary"]["ecosystem"], "AlmaLinux:8");
    assert!(
        findings
            .iter()
            .all(|f| f["advisory"].as_str().unwrap().starts_with("AL"))
    );
    assert!(findings.iter().any(|f| f["update_type"] == "bugfix"));
    // rpm itself confirms every finding's installed version is older than its fix.
    let dir = tempfile::tempdir().unwrap();
    let pairs = dir.path().join("pairs");
    let text: String = findings
        .iter()
        .map(|f| {
            format!(
                "{} {}\n",
                f["installed"].as_str().unwrap(),
                f["fixed"].as_str().unwrap()
            )
        })
        .collect();
    std::fs::write(&pairs, text).unwrap();
    let lua = format!(
        "%{{lua: local n = 0; for line in io.lines('{}') do local a, b = line:match('(%S+) (%S+)'); if rpm.vercmp(a, b) >= 0 then n = n + 1 end end; print(n)}}",
        pairs.display()
    );
    let output = Command::new("rpm")
        .args(["--eval", &lua])
        .output()
        .expect("rpm must be installed (apt-get install rpm)");
    assert_eq!(String::from_utf8_lossy(&output.stdout).trim(), "0");
}

#[test]
fn a_snapshot_below_zero_is_found_by_ranges_from_zero() {
    // Issue 20: dpkg sorts 0~git20230101-1 below "0", yet an OSV range starting at
    // "introduced": "0" (and a DSA list line, whose start is the same sentinel) covers it.
    assert!(
        dpkg_lt("0~git20230101-1", "0"),
        "the case is below 0 for dpkg"
    );
    let dir = tempfile::tempdir().unwrap();
    let osv = dir.path().join("osv.json");
    std::fs::write(
        &osv,
        r#"{"id": "OSV-ZERO-1", "affected": [{"package": {"ecosystem": "Debian:12", "name": "snap"},
            "ranges": [{"type": "ECOSYSTEM", "events": [{"introduced": "0"}, {"fixed": "1.0-1"}]}]}]}"#,
    )
    .unwrap();
    let dsa = dir.path().join("DSA-list");
    std::fs::write(
        &dsa,
        "[29 Mar 2023] DSA-9000-1 snap - security update\n\t[bookworm] - snap 1.0-1\n",
    )
    .unwrap();
    let status = dir.path().join("status");
    std::fs::write(
        &status,
        "Package: snap\nStatus: install ok installed\nVersion: 0~git20230101-1\nArchitecture: amd64\n",
    )
    .unwrap();
    let report = json_of(&sluice(&[
        "scan",
        "--status",
        status.to_str().unwrap(),
        "--ecosystem",
        "Debian:12",
        "--feed",
        osv.to_str().unwrap(),
        "--feed",
        dsa.to_str().unwrap(),
        "--output",
        "json",
    ]));
    let found: BTreeSet<(String, String, String)> = report["findings"]
        .as_array()
        .unwrap()
        .iter()
        .map(|f| {
            (
                f["advisory"].as_str().unwrap().to_owned(),
                f["installed"].as_str().unwrap().to_owned(),
                f["fixed"].as_str().unwrap().to_owned(),
            )
        })
        .collect();
    let expected: BTreeSet<(String, String, String)> = ["OSV-ZERO-1", "DSA-9000-1"]
        .into_iter()
        .map(|a| {
            (
                a.to_owned(),
                "0~git20230101-1".to_owned(),
                "1.0-1".to_owned(),
            )
        })
        .collect();
    assert_eq!(found, expected);
}

#[test]
fn osv_directories_with_a_broken_record_still_load_the_rest() {
    let dir = tempfile::tempdir().unwrap();
    let feeds = dir.path().join("osv");
    std::fs::create_dir_all(feeds.join("nested")).unwrap();
    std::fs::write(
        feeds.join("USN-1.json"),
        r#"{"id": "USN-9999-1", "aliases": ["CVE-2024-0001"], "summary": "openssl vulnerability",
            "affected": [{"package": {"ecosystem": "Ubuntu:22.04:LTS", "name": "openssl"},
            "ranges": [{"type": "ECOSYSTEM", "events": [{"introduced": "0"}, {"fixed": "3.0.2-0ubuntu1.15"}]}]}],
            "severity": [{"type": "CVSS_V3", "score": "CVSS:3.1/AV:N/AC:L/PR:N/UI:N/S:U/C:H/I:H/A:H"}]}"#,
    )
    .unwrap();
    std::fs::write(
        feeds.join("nested/broken.json"),
        "{ \"id\": \"USN-BROKEN\", ",
    )
    .unwrap();
    std::fs::write(feeds.join("README.txt"), "not a feed, ignored").unwrap();
    let status = dir.path().join("status");
    std::fs::write(
        &status,
        "Package: libssl3\nStatus: install ok installed\nSource: openssl\nVersion: 3.0.2-0ubuntu1.10\nArchitecture: amd64\n",
    )
    .unwrap();
    let os = dir.path().join("os-release");
    std::fs::write(
        &os,
        "ID=ubuntu\nID_LIKE=debian\nVERSION_ID=\"22.04\"\nVERSION_CODENAME=jammy\n",
    )
    .unwrap();
    let output = sluice(&[
        "scan",
        "--status",
        status.to_str().unwrap(),
        "--os-release",
        os.to_str().unwrap(),
        "--feed",
        feeds.to_str().unwrap(),
        "--output",
        "json",
    ]);
    let stderr = String::from_utf8_lossy(&output.stderr).to_string();
    assert!(stderr.contains("broken.json"), "{stderr}");
    let report = json_of(&output);
    let findings = report["findings"].as_array().unwrap();
    assert_eq!(findings.len(), 1);
    assert_eq!(findings[0]["advisory"], "USN-9999-1");
    assert_eq!(findings[0]["cvss"]["score"], 9.8);
    assert_eq!(findings[0]["cvss"]["version"], "3.1");
}

#[test]
fn bad_input_is_a_clear_error_with_exit_status_2() {
    let dir = tempfile::tempdir().unwrap();
    let status = example("debian11-web/status");
    let os = example("debian11-web/os-release");
    let dsa = example("feeds/DSA-list");
    let kev = example("feeds/known_exploited_vulnerabilities.json");

    let broken = dir.path().join("status");
    std::fs::write(&broken, "Package: a\nStatus: install ok installed\nVersion: 1.0\n\nPackage: b\nStatus: install ok installed\nVersion: not a version\n").unwrap();
    let broken = broken.to_str().unwrap();
    let cases: Vec<(Vec<&str>, &str)> = vec![
        (
            vec!["--status", broken, "--os-release", &os, "--feed", &dsa],
            "line 7",
        ),
        (
            vec!["--status", &status, "--os-release", &os, "--feed", &kev],
            "--kev",
        ),
        (
            vec!["--status", &status, "--os-release", &os, "--feed", &os],
            "not a recognised feed",
        ),
        (vec!["--status", &status, "--feed", &dsa], "--os-release"),
        (
            vec![
                "--status",
                &status,
                "--os-release",
                &os,
                "--feed",
                &dsa,
                "--asset",
                "criticality=7",
            ],
            "criticality",
        ),
        (
            vec![
                "--status",
                &status,
                "--ecosystem",
                "Debian:eleven",
                "--feed",
                &dsa,
            ],
            "Debian:eleven",
        ),
        (
            vec![
                "--status",
                &status,
                "--ecosystem",
                "AlmaLinux:8",
                "--feed",
                &dsa,
            ],
            "RPM",
        ),
        (
            vec![
                "--status",
                &status,
                "--os-release",
                &os,
                "--feed",
                "/nonexistent/feed",
            ],
            "/nonexistent/feed",
        ),
        (
            vec![
                "--status",
                &status,
                "--os-release",
                &os,
                "--feed",
                &dsa,
                "--epss",
                &dsa,
            ],
            "EPSS",
        ),
        (vec!["--status", &status, "--os-release", &os], "--feed"),
    ];
    for (args, expected) in cases {
        let mut full = vec!["scan"];
        full.extend(args.iter().copied());
        let output = sluice(&full);
        let stderr = String::from_utf8_lossy(&output.stderr);
        assert_eq!(output.status.code(), Some(2), "{full:?}\n{stderr}");
        assert!(
            stderr.contains(expected),
            "{full:?}: expected {expected:?} in\n{stderr}"
        );
        assert!(output.stdout.is_empty(), "no partial report on error");
    }
}

#[test]
fn without_an_inventory_it_scans_this_machine() {
    let dsa = example("feeds/DSA-list");
    let report = json_of(&sluice(&["scan", "--feed", &dsa, "--output", "json"]));
    // dpkg-query is the reference for what is installed here.
    let output = Command::new("dpkg-query")
        .args(["-W", "-f", "${db:Status-Status}\n"])
        .output()
        .expect("dpkg-query must be installed");
    let installed = String::from_utf8_lossy(&output.stdout)
        .lines()
        .filter(|l| *l == "installed")
        .count();
    assert_eq!(
        report["summary"]["packages"].as_u64().unwrap() as usize,
        installed
    );
    let os_release = std::fs::read_to_string("/etc/os-release").unwrap();
    let version_id = os_release
        .lines()
        .find_map(|l| l.strip_prefix("VERSION_ID="))
        .map(|v| v.trim_matches('"').to_owned())
        .unwrap();
    let ecosystem = report["summary"]["ecosystem"].as_str().unwrap();
    assert!(
        ecosystem.ends_with(&format!(":{version_id}")),
        "{ecosystem} vs {version_id}"
    );
}

#[test]
fn a_reader_that_closes_the_pipe_is_not_an_error() {
    // `sluice scan … | head`: here the reader is gone before the first line is written.
    let mut child = Command::new(env!("CARGO_BIN_EXE_sluice"))
        .args([
            "scan",
            "--status",
            &example("debian11-web/status"),
            "--os-release",
            &example("debian11-web/os-release"),
            "--feed",
            &example("feeds/DSA-list"),
        ])
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    drop(child.stdout.take());
    let output = child.wait_with_output().unwrap();
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert_eq!(output.status.code(), Some(0), "{stderr}");
    assert!(
        !stderr.contains("error") && !stderr.contains("panicked"),
        "{stderr}"
    );
}
