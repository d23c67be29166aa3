//! OSV's `introduced: "0"` through the server, on SQLite and on PostgreSQL: a Debian 12 host and
//! an AlmaLinux 9 host whose packages sit around and below the version `0` (`0~git20230101-1`,
//! `0-~1`, rpm's `~1` and `^1`), and advisories whose ranges start at the sentinel or at
//! look-alike versions (`0~`, `0.0`). The server's findings must equal the offline scan of the same
//! feed and inventories; every package the reference tool (dpkg, rpm) sorts below `0` is found by
//! the ranges that start at `0`; and a fresh inventory keeps such a finding open until the fix is
//! installed.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use std::collections::BTreeSet;
use std::process::Command;

use axum::http::{Method, StatusCode};
use common::{Db, Server};
use serde_json::{Value, json};
use sluice_core::advisory::parse_feed;
use sluice_core::asset::AssetProfile;
use sluice_core::ecosystem::EcosystemKey;
use sluice_core::finding::scan_host;
use sluice_core::inventory::{dpkg, rpm};
use sluice_core::matching::AdvisoryIndex;
use sluice_core::priority::PriorityPolicy;

const DEB_HOST: &str = "deb-zero";
const RPM_HOST: &str = "alma-zero";

/// Installed Debian versions: below `0`, at it, and above it.
const DEB_VERSIONS: &[&str] = &[
    "0~git20230101-1",
    "0~rc1-1",
    "0:0~beta2-1",
    "0-~1",
    "0-0~1",
    "0~~",
    "00~a",
    "0",
    "0-1",
    "0.0",
    "0.0.1-1",
    "0.5-1",
    "1.0-1~bpo1",
    "1.0-1",
    "1.0-2",
    "2:0.1-1",
];

/// Installed RPM versions (rpm -qa's EPOCH:VERSION-RELEASE).
const RPM_VERSIONS: &[&str] = &[
    "0:0~rc1-1",
    "0:~1-1",
    "0:0~git20230101-1.el9",
    "0:^1-1",
    "0:a1-1",
    "0:0-1",
    "0:0-0~1",
    "0:0.0-1",
    "0:0.5-1.el9",
    "0:1.0-1.el9",
    "0:1.0-2.el9",
    "1:0.1-1",
];

/// Range templates: (events, whether the range starts at the sentinel and names no closing event
/// below `0`, so that everything below `0` must be found).
fn deb_ranges() -> Vec<(Value, bool)> {
    vec![
        (json!([{"introduced": "0"}, {"fixed": "1.0-1"}]), true),
        (json!([{"introduced": "0"}]), true),
        (json!([{"introduced": "0"}, {"limit": "*"}]), true),
        (json!([{"introduced": "0~"}, {"fixed": "1.0-1"}]), false),
        (json!([{"introduced": "0.0"}, {"fixed": "1.0-2"}]), false),
        (json!([{"introduced": "0"}, {"last_affected": "0"}]), true),
        (json!([{"fixed": "0~rc1"}, {"introduced": "0"}]), false),
        (
            json!([{"introduced": "0"}, {"limit": "0.5-1"}, {"limit": "1.0-1"}]),
            true,
        ),
    ]
}

fn rpm_ranges() -> Vec<(Value, bool)> {
    vec![
        (json!([{"introduced": "0"}, {"fixed": "1.0-1.el9"}]), true),
        (json!([{"introduced": "0"}]), true),
        (json!([{"introduced": "0~"}, {"fixed": "1.0-1.el9"}]), false),
        (
            json!([{"introduced": "0.0"}, {"fixed": "1.0-2.el9"}]),
            false,
        ),
        (json!([{"introduced": "0"}, {"last_affected": "0"}]), true),
        (json!([{"fixed": "0~rc1"}, {"introduced": "0"}]), false),
    ]
}

/// Package `{prefix}{range}v{version}`: one package per (range template, installed version).
fn package(prefix: &str, range: usize, version: usize) -> String {
    format!("{prefix}{range}v{version}")
}

/// One advisory per range template, naming every package of that template.
fn advisories(
    prefix: &str,
    ecosystem: &str,
    ranges: &[(Value, bool)],
    versions: usize,
) -> Vec<Value> {
    ranges
        .iter()
        .enumerate()
        .map(|(r, (events, _))| {
            let affected: Vec<Value> = (0..versions)
                .map(|v| {
                    json!({"package": {"ecosystem": ecosystem, "name": package(prefix, r, v)},
                           "ranges": [{"type": "ECOSYSTEM", "events": events}]})
                })
                .collect();
            json!({"id": format!("ZERO-{prefix}{r}"), "affected": affected})
        })
        .collect()
}

fn feed_text() -> String {
    let mut all = advisories("d", "Debian:12", &deb_ranges(), DEB_VERSIONS.len());
    all.extend(advisories(
        "r",
        "AlmaLinux:9",
        &rpm_ranges(),
        RPM_VERSIONS.len(),
    ));
    Value::Array(all).to_string()
}

/// A dpkg status file; `replace` swaps one package's version.
fn deb_status(replace: Option<(&str, &str)>) -> String {
    let mut text = String::new();
    for r in 0..deb_ranges().len() {
        for (v, version) in DEB_VERSIONS.iter().enumerate() {
            let name = package("d", r, v);
            let version = match replace {
                Some((which, to)) if which == name => to,
                _ => version,
            };
            text.push_str(&format!(
                "Package: {name}\nStatus: install ok installed\nArchitecture: amd64\nVersion: {version}\n\n"
            ));
        }
    }
    text
}

fn rpm_qa() -> String {
    let mut text = String::new();
    for r in 0..rpm_ranges().len() {
        for (v, version) in RPM_VERSIONS.iter().enumerate() {
            text.push_str(&format!("{} {version} x86_64\n", package("r", r, v)));
        }
    }
    text
}

/// (package, installed, advisory, fixed) of each finding.
type Row = (String, String, String, Option<String>);

fn offline(
    ecosystem: &str,
    packages: &[sluice_core::inventory::InstalledPackage],
) -> BTreeSet<Row> {
    let feed = parse_feed("zero.json", feed_text().as_bytes()).unwrap();
    assert!(feed.issues.is_empty(), "{:?}", feed.issues);
    let index = AdvisoryIndex::build(feed.advisories, None, None);
    let key: EcosystemKey = ecosystem.parse().unwrap();
    let (findings, _) = scan_host(
        &index,
        &key,
        packages,
        &AssetProfile::default(),
        &PriorityPolicy::default(),
        "2026-11-02".parse().unwrap(),
    );
    findings
        .into_iter()
        .map(|f| (f.package, f.installed, f.advisory, f.fixed))
        .collect()
}

async fn served(server: &Server, host: &str, status: &str) -> BTreeSet<Row> {
    let page = server
        .get(&format!(
            "/api/v1/findings?host={host}&status={status}&limit=1000"
        ))
        .await;
    let items = page["items"].as_array().unwrap();
    assert!(items.len() < 1000, "one page holds them all");
    items
        .iter()
        .map(|f| {
            (
                f["package"].as_str().unwrap().to_owned(),
                f["installed"].as_str().unwrap().to_owned(),
                f["advisory"].as_str().unwrap().to_owned(),
                f["fixed"].as_str().map(str::to_owned),
            )
        })
        .collect()
}

/// Whether the reference tool sorts `version` below `0`.
fn deb_below_zero(version: &str) -> bool {
    let status = Command::new("dpkg")
        .args(["--compare-versions", version, "lt", "0"])
        .status()
        .expect("dpkg must be installed (apt-get install dpkg)");
    match status.code() {
        Some(0) => true,
        Some(1) => false,
        other => panic!("dpkg --compare-versions {version} lt 0: {other:?}"),
    }
}

fn rpm_below_zero(version: &str) -> bool {
    let output = Command::new("rpm")
        .arg("--eval")
        .arg(format!("%{{lua: print(rpm.vercmp(\"{version}\", \"0\"))}}"))
        .output()
        .expect("rpm must be installed (apt-get install rpm)");
    assert!(output.status.success(), "{output:?}");
    match String::from_utf8_lossy(&output.stdout).trim() {
        "-1" => true,
        "0" | "1" => false,
        other => panic!("rpm.vercmp({version}, 0): {other:?}"),
    }
}

/// Every package the tool sorts below `0`, under a range that must cover it, has a finding.
fn assert_below_zero_found(
    found: &BTreeSet<Row>,
    prefix: &str,
    ranges: &[(Value, bool)],
    versions: &[&str],
    below_zero: fn(&str) -> bool,
) {
    let below: Vec<usize> = (0..versions.len())
        .filter(|&v| below_zero(versions[v]))
        .collect();
    assert!(
        below.len() >= 3,
        "{prefix}: too few versions below 0: {below:?}"
    );
    let mut checked = 0;
    for (r, (_, must_cover)) in ranges.iter().enumerate() {
        if !must_cover {
            continue;
        }
        for &v in &below {
            let name = package(prefix, r, v);
            let advisory = format!("ZERO-{prefix}{r}");
            assert!(
                found
                    .iter()
                    .any(|(p, _, a, _)| *p == name && *a == advisory),
                "{name} {} (below 0) is not found by {advisory} {}",
                versions[v],
                ranges[r].0
            );
            checked += 1;
        }
    }
    assert!(checked >= 10, "{prefix}: only {checked} checked");
}

async fn push(server: &Server, host: &str, body: Value) -> Value {
    server
        .call(
            Method::PUT,
            &format!("/api/v1/inventories/{host}"),
            "olga",
            Some(body),
        )
        .await
        .ok(StatusCode::OK)
        .clone()
}

async fn server_findings_equal_the_offline_scan(server: &Server) {
    // Local feeds are read only from the server's feed directories.
    let feed = server._dir.path().join("feeds/zero.json");
    std::fs::write(&feed, feed_text()).unwrap();
    let deb = |replace| json!({"format": "dpkg-status", "content": deb_status(replace), "ecosystem": "Debian:12"});

    // The Debian host's findings come from the feed sync's recompute, the AlmaLinux host's from
    // its push.
    push(server, DEB_HOST, deb(None)).await;
    server
        .call(
            Method::POST,
            "/api/v1/feeds",
            "admin",
            Some(json!({"name": "zero", "kind": "advisories", "source": feed})),
        )
        .await
        .ok(StatusCode::CREATED);
    server
        .call(Method::POST, "/api/v1/feeds/zero/sync", "admin", None)
        .await
        .ok(StatusCode::OK);
    push(
        server,
        RPM_HOST,
        json!({"format": "rpm-qa", "content": rpm_qa(), "ecosystem": "AlmaLinux:9"}),
    )
    .await;

    let deb_packages = dpkg::parse_status("status", &deb_status(None)).unwrap();
    let deb_offline = offline("Debian:12", &deb_packages);
    let deb_served = served(server, DEB_HOST, "open").await;
    assert_eq!(
        deb_served, deb_offline,
        "Debian: server and offline scan differ"
    );
    assert_below_zero_found(
        &deb_served,
        "d",
        &deb_ranges(),
        DEB_VERSIONS,
        deb_below_zero,
    );

    let rpm_packages = rpm::parse_qa("rpm-qa", &rpm_qa()).unwrap();
    let rpm_offline = offline("AlmaLinux:9", &rpm_packages);
    let rpm_served = served(server, RPM_HOST, "open").await;
    assert_eq!(
        rpm_served, rpm_offline,
        "RPM: server and offline scan differ"
    );
    assert_below_zero_found(
        &rpm_served,
        "r",
        &rpm_ranges(),
        RPM_VERSIONS,
        rpm_below_zero,
    );
    eprintln!(
        "{:?}: {} Debian and {} RPM findings, equal to the offline scan",
        server.store.backend(),
        deb_served.len(),
        rpm_served.len()
    );

    // The issue's case: snap-like d0v0 at 0~git20230101-1 under introduced 0, fixed 1.0-1.
    let snap = |rows: &BTreeSet<Row>| {
        rows.iter()
            .filter(|(p, _, a, _)| p == "d0v0" && a == "ZERO-d0")
            .map(|(_, installed, _, fixed)| (installed.clone(), fixed.clone()))
            .collect::<Vec<_>>()
    };
    assert_eq!(
        snap(&deb_served),
        [("0~git20230101-1".to_owned(), Some("1.0-1".to_owned()))]
    );
    // A newer snapshot is still below 0 and still affected: the finding stays open.
    let report = push(server, DEB_HOST, deb(Some(("d0v0", "0~git20240101-1")))).await;
    assert_eq!(report["findings"]["resolved"], 0, "{report}");
    assert_eq!(
        snap(&served(server, DEB_HOST, "open").await),
        [("0~git20240101-1".to_owned(), Some("1.0-1".to_owned()))]
    );
    // The fix closes it.
    let report = push(server, DEB_HOST, deb(Some(("d0v0", "1.0-1")))).await;
    assert_eq!(report["findings"]["resolved"], 1, "{report}");
    assert!(snap(&served(server, DEB_HOST, "open").await).is_empty());
    assert_eq!(snap(&served(server, DEB_HOST, "resolved").await).len(), 1);
}

#[tokio::test]
async fn server_findings_equal_the_offline_scan_on_sqlite() {
    let server = Server::start(Db::Sqlite).await;
    server_findings_equal_the_offline_scan(&server).await;
    server.finish().await;
}

#[tokio::test]
async fn server_findings_equal_the_offline_scan_on_postgresql() {
    let server = Server::start(Db::Postgres).await;
    server_findings_equal_the_offline_scan(&server).await;
    server.finish().await;
}
