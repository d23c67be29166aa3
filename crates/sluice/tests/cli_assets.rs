//! `sluice assets` against a real server over real HTTP: import an Ansible inventory, list with a
//! selector, set attributes (all or nothing), export CSV and import it back unchanged, and the
//! audit chain intact afterwards.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use common::{PASSWORD, Running, ok, sluice};

fn fixture(name: &str) -> String {
    format!(
        "{}/../sluice-core/tests/fixtures/cmdb/{name}",
        env!("CARGO_MANIFEST_DIR")
    )
}

#[test]
fn an_operator_imports_selects_sets_and_round_trips_an_inventory() {
    let data = tempfile::tempdir().unwrap();
    let config = tempfile::tempdir().unwrap();
    let work = tempfile::tempdir().unwrap();
    let data_dir = data.path().to_str().unwrap();
    let server = Running::start(&["--data-dir", data_dir]);
    let config = config.path();
    ok(&sluice(
        config,
        &["login", "--server", &server.url, "--password-stdin"],
        Some(&format!("{PASSWORD}\n")),
    ));

    let imported = ok(&sluice(
        config,
        &["assets", "import", &fixture("staging.yml")],
        None,
    ));
    assert_eq!(
        imported.trim(),
        "imported staging.yml (ansible-yaml): 12 assets: 12 created, 0 updated, 0 unchanged; groups: 5 created, 0 updated"
    );

    // A selector, as a table for people and as JSON for scripts.
    let table = ok(&sluice(
        config,
        &["assets", "list", "--selector", "env=staging,criticality>=4"],
        None,
    ));
    let lines: Vec<&str> = table.lines().collect();
    assert!(
        lines[0].starts_with("HOST") && lines[0].contains("CRIT"),
        "{table}"
    );
    let hosts: Vec<&str> = lines[1..]
        .iter()
        .map(|l| l.split_whitespace().next().unwrap())
        .collect();
    assert_eq!(
        hosts,
        [
            "cp1.stg.example.com",
            "cp2.stg.example.com",
            "cp3.stg.example.com",
            "pg1.stg.example.com",
            "pg2.stg.example.com"
        ]
    );
    let json = ok(&sluice(
        config,
        &["assets", "list", "-s", "tag=spot", "--output", "json"],
        None,
    ));
    let spot: serde_json::Value = serde_json::from_str(&json).unwrap();
    assert_eq!(spot[0]["hostname"], "workerz.stg.example.com");
    assert_eq!(spot.as_array().unwrap().len(), 1);

    // Set: all pairs or none.
    let shown = ok(&sluice(
        config,
        &[
            "assets",
            "set",
            "jump.stg.example.com",
            "criticality=5",
            "tags=bastion,edge",
            "var.rack=r12",
        ],
        None,
    ));
    assert!(
        shown
            .lines()
            .any(|l| l.starts_with("criticality") && l.ends_with(" 5")),
        "{shown}"
    );
    let refused = sluice(
        config,
        &[
            "assets",
            "set",
            "jump.stg.example.com",
            "env=prod",
            "criticality=high",
        ],
        None,
    );
    assert_eq!(refused.status.code(), Some(2));
    let message = String::from_utf8_lossy(&refused.stderr);
    assert!(
        message.contains("set.criticality") || message.contains("criticality: \"high\""),
        "{message}"
    );
    let show = ok(&sluice(
        config,
        &["assets", "show", "JUMP.stg.example.com", "--output", "json"],
        None,
    ));
    let jump: serde_json::Value = serde_json::from_str(&show).unwrap();
    assert_eq!(jump["criticality"], 5);
    assert_eq!(
        jump["environment"], "staging",
        "the refused set changed nothing"
    );
    assert_eq!(jump["tags"], serde_json::json!(["bastion", "edge"]));
    assert_eq!(jump["vars"]["rack"], "r12");
    let missing = sluice(config, &["assets", "show", "nope.example.com"], None);
    assert!(String::from_utf8_lossy(&missing.stderr).contains("asset nope.example.com not found"));

    // Export CSV, import it back: every asset unchanged.
    let csv = ok(&sluice(config, &["assets", "export"], None));
    assert_eq!(csv.lines().count(), 13, "{csv}");
    assert!(csv.starts_with("hostname,os,environment,criticality,"));
    let file = work.path().join("fleet.csv");
    std::fs::write(&file, &csv).unwrap();
    let again = ok(&sluice(
        config,
        &[
            "assets",
            "import",
            file.to_str().unwrap(),
            "--output",
            "json",
        ],
        None,
    ));
    let summary: serde_json::Value = serde_json::from_str(&again).unwrap();
    assert_eq!(summary["format"], "csv");
    assert_eq!(summary["unchanged"], 12, "{again}");
    assert_eq!(summary["created"], 0);
    assert_eq!(summary["updated"], 0);
    let subset = ok(&sluice(
        config,
        &[
            "assets",
            "export",
            "--format",
            "json",
            "--selector",
            "group=legacy_db",
        ],
        None,
    ));
    let subset: serde_json::Value = serde_json::from_str(&subset).unwrap();
    assert_eq!(subset[0]["hostname"], "oracle1.stg.example.com");
    assert_eq!(subset[0]["os"], "Red Hat:8");

    // A bad file names its line; nothing is stored.
    let bad = sluice(
        config,
        &["assets", "import", &fixture("invalid_criticality.ini")],
        None,
    );
    assert_eq!(bad.status.code(), Some(2));
    let message = String::from_utf8_lossy(&bad.stderr);
    assert!(message.contains("invalid_criticality.ini"), "{message}");
    assert!(message.contains("criticality"), "{message}");
    let count = ok(&sluice(
        config,
        &["assets", "list", "--output", "json"],
        None,
    ));
    let count: serde_json::Value = serde_json::from_str(&count).unwrap();
    assert_eq!(count.as_array().unwrap().len(), 12);

    server.stop();
    let verify = ok(&sluice(
        config,
        &["audit", "verify", "--data-dir", data_dir],
        None,
    ));
    assert!(verify.contains("audit chain intact"), "{verify}");
}
