//! Conformance of feeds, inventories and findings on SQLite and PostgreSQL.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use common::TestDb;
use jiff::civil::date;
use sluice_core::finding::Finding;
use sluice_core::inventory::InstalledPackage;
use sluice_core::priority::{Decision, Exploitation, MissionImpact, SsvcInputs, TechnicalImpact};
use sluice_store::{Actor, Covered, FeedKind, FindingsQuery, InventoryWrite, NewFeed, SyncOutcome};

fn inventory<'a>(hostname: &'a str, ids: &'a [i64], hash: &'a str) -> InventoryWrite<'a> {
    InventoryWrite {
        hostname,
        ecosystem: "Debian:12",
        package_ids: ids,
        package_hash: hash,
        os_release: None,
        reboot_required: false,
    }
}

fn package(name: &str, version: &str) -> InstalledPackage {
    InstalledPackage {
        name: name.to_owned(),
        version: version.to_owned(),
        arch: Some("amd64".to_owned()),
        source_name: name.to_owned(),
        source_version: version.to_owned(),
    }
}

fn finding(
    package: &str,
    advisory: &str,
    score: f64,
    decision: Decision,
    kev: bool,
    due_days: i64,
) -> Finding {
    Finding {
        package: package.to_owned(),
        source_package: package.to_owned(),
        installed: "1.0-1".to_owned(),
        fixed: Some("1.0-2".to_owned()),
        advisory: advisory.to_owned(),
        aliases: vec![],
        summary: None,
        update_type: sluice_core::advisory::UpdateType::Security,
        cvss: None,
        severity: None,
        kev,
        epss: None,
        decision,
        ssvc: SsvcInputs {
            exploitation: Exploitation::None,
            automatable: false,
            technical_impact: TechnicalImpact::Partial,
            mission: MissionImpact::Low,
        },
        score,
        tier: "default".to_owned(),
        due: date(2026, 11, 25)
            .checked_add(jiff::Span::new().days(due_days))
            .unwrap(),
    }
}

async fn packages_are_stored_once(db: &TestDb) {
    let store = &db.store;
    let a = [package("openssl", "3.0.11-1"), package("bash", "5.2-1")];
    let b = [package("bash", "5.2-1"), package("curl", "7.88-1")];
    let ids_a = store.package_ids("Debian:12", &a).await.unwrap();
    let ids_b = store.package_ids("Debian:12", &b).await.unwrap();
    assert_eq!(ids_a[1], ids_b[0], "the shared package has one id");
    assert_ne!(ids_a[0], ids_b[1]);
    assert_eq!(store.packages_by_id().await.unwrap().len(), 3);
    let other_eco = store.package_ids("Ubuntu:22.04", &a[..1]).await.unwrap();
    assert_ne!(other_eco[0], ids_a[0]);

    let actor = Actor::system();
    assert!(
        store
            .save_inventory(&inventory("web1", &ids_a, "h1"), &actor)
            .await
            .unwrap()
    );
    assert!(
        !store
            .save_inventory(&inventory("web1", &ids_a, "h1"), &actor)
            .await
            .unwrap(),
        "same list: unchanged"
    );
    assert!(
        store
            .save_inventory(&inventory("web1", &ids_b, "h2"), &actor)
            .await
            .unwrap()
    );
    let (one, packages) = store.inventory("web1").await.unwrap().unwrap();
    assert_eq!(one.package_ids, ids_b);
    assert_eq!(packages, b, "packages come back in inventory order");
    assert!(store.inventory("nope").await.unwrap().is_none());
    let inventories = store.inventories().await.unwrap();
    assert_eq!(inventories.len(), 1);
    assert_eq!(inventories[0].package_ids, ids_b);
    let actions: Vec<String> = store
        .audit_events(None)
        .await
        .unwrap()
        .into_iter()
        .map(|e| e.action)
        .collect();
    assert_eq!(actions, ["inventory.update", "inventory.update"]);
}

#[tokio::test]
async fn packages_are_stored_once_on_both_backends() {
    on_both!(packages_are_stored_once);
}

async fn findings_open_update_and_resolve(db: &TestDb) {
    let store = &db.store;
    let actor = Actor::system();
    let today = date(2026, 11, 25);
    let first = vec![
        finding("openssl", "DSA-1", 80.0, Decision::Act, true, 7),
        finding("bash", "DSA-2", 10.0, Decision::Track, false, 90),
    ];
    let diff = store
        .apply_findings("web1", &first, today, &actor)
        .await
        .unwrap();
    assert_eq!((diff.opened, diff.resolved, diff.open), (2, 0, 2));
    store
        .apply_findings(
            "web2",
            &[finding("curl", "DSA-3", 55.0, Decision::Attend, false, 30)],
            today,
            &actor,
        )
        .await
        .unwrap();

    let all = FindingsQuery {
        limit: 100,
        ..FindingsQuery::default()
    };
    let page = store.findings(&all).await.unwrap();
    let (items, total) = (page.items, page.total);
    assert!(page.total_exact);
    assert_eq!(total, 3);
    let scores: Vec<f64> = items.iter().map(|f| f.finding.score).collect();
    assert_eq!(scores, [80.0, 55.0, 10.0], "highest priority first");

    let page = store
        .findings(&FindingsQuery {
            limit: 1,
            offset: 1,
            ..FindingsQuery::default()
        })
        .await
        .unwrap();
    let (page, total) = (page.items, page.total);
    assert_eq!((page.len(), total), (1, 3));
    assert_eq!(page[0].finding.advisory, "DSA-3");

    let web1 = store
        .findings(&FindingsQuery {
            hosts: Some(vec!["web1".to_owned()]),
            kev: Some(true),
            limit: 100,
            ..FindingsQuery::default()
        })
        .await
        .unwrap()
        .items;
    assert_eq!(web1.len(), 1);
    assert_eq!(web1[0].finding.advisory, "DSA-1");
    let attend = store
        .findings(&FindingsQuery {
            decisions: Some(vec!["attend".to_owned(), "act".to_owned()]),
            limit: 100,
            ..FindingsQuery::default()
        })
        .await
        .unwrap()
        .items;
    assert_eq!(attend.len(), 2);
    let overdue = store
        .findings(&FindingsQuery {
            overdue_on: Some(date(2026, 12, 30)),
            limit: 100,
            ..FindingsQuery::default()
        })
        .await
        .unwrap()
        .items;
    let overdue: Vec<&str> = overdue
        .iter()
        .map(|f| f.finding.advisory.as_str())
        .collect();
    assert_eq!(overdue, ["DSA-1", "DSA-3"]);

    // A week later: openssl is still affected (kept, due still from first seen), bash is fixed.
    let later = date(2026, 12, 2);
    let mut still = finding("openssl", "DSA-1", 81.0, Decision::Act, true, 7);
    still.due = later.checked_add(jiff::Span::new().days(7)).unwrap();
    let diff = store
        .apply_findings("web1", &[still], later, &actor)
        .await
        .unwrap();
    assert_eq!(
        (diff.opened, diff.resolved, diff.updated, diff.open),
        (0, 1, 1, 1)
    );
    let open = store
        .findings(&FindingsQuery {
            hosts: Some(vec!["web1".to_owned()]),
            limit: 100,
            ..FindingsQuery::default()
        })
        .await
        .unwrap()
        .items;
    assert_eq!(open.len(), 1);
    let first_seen_day: jiff::civil::Date = open[0].first_seen[..10].parse().unwrap();
    assert_eq!(
        open[0].finding.due,
        first_seen_day
            .checked_add(jiff::Span::new().days(7))
            .unwrap(),
        "due counts from first seen, not from the latest recompute"
    );
    let resolved = store
        .findings(&FindingsQuery {
            resolved: Some(true),
            limit: 100,
            ..FindingsQuery::default()
        })
        .await
        .unwrap()
        .items;
    assert_eq!(resolved.len(), 1);
    assert_eq!(resolved[0].finding.package, "bash");
    assert!(resolved[0].resolved_at.is_some());

    // It comes back: a new occurrence, the old one stays resolved.
    let diff = store
        .apply_findings(
            "web1",
            &[finding("bash", "DSA-2", 10.0, Decision::Track, false, 90)],
            later,
            &actor,
        )
        .await
        .unwrap();
    assert_eq!((diff.opened, diff.resolved), (1, 1));
    assert!(db.store.verify_audit().await.unwrap().is_ok());
}

#[tokio::test]
async fn findings_open_update_and_resolve_on_both_backends() {
    on_both!(findings_open_update_and_resolve);
}

async fn a_scan_lands_whole_or_not_at_all(db: &TestDb) {
    let store = &db.store;
    let actor = Actor::system();
    let today = date(2026, 11, 25);
    let ids = store
        .package_ids("Debian:12", &[package("openssl", "3.0.1-1")])
        .await
        .unwrap();
    let first = [finding("openssl", "DSA-1", 80.0, Decision::Act, true, 7)];
    let (changed, diff) = store
        .save_scan(&inventory("web1", &ids, "h1"), &first, today, &actor)
        .await
        .unwrap();
    assert!(changed);
    assert_eq!((diff.opened, diff.open), (1, 1));

    // The same finding twice breaks the open-finding identity: the whole scan must roll back,
    // the new inventory hash included.
    let twice = [
        finding("curl", "DSA-9", 50.0, Decision::Attend, false, 30),
        finding("curl", "DSA-9", 50.0, Decision::Attend, false, 30),
    ];
    let events = store.audit_events(None).await.unwrap().len();
    assert!(
        store
            .save_scan(&inventory("web1", &ids, "h2"), &twice, today, &actor)
            .await
            .is_err()
    );
    let (stored, _) = store.inventory("web1").await.unwrap().unwrap();
    assert_eq!(
        stored.package_hash, "h1",
        "the inventory write was rolled back"
    );
    let open = store
        .findings(&FindingsQuery {
            limit: 100,
            ..FindingsQuery::default()
        })
        .await
        .unwrap();
    assert_eq!(open.items.len(), 1);
    assert_eq!(open.items[0].finding.advisory, "DSA-1");
    assert_eq!(store.audit_events(None).await.unwrap().len(), events);
    assert!(store.verify_audit().await.unwrap().is_ok());
}

#[tokio::test]
async fn a_scan_lands_whole_or_not_at_all_on_both_backends() {
    on_both!(a_scan_lands_whole_or_not_at_all);
}

async fn long_host_lists_give_the_same_page(db: &TestDb) {
    let store = &db.store;
    let actor = Actor::system();
    let today = date(2026, 11, 25);
    for (host, base) in [("web1", 10.0), ("web2", 20.0), ("db1", 30.0)] {
        let findings: Vec<Finding> = (0..5)
            .map(|i| {
                finding(
                    &format!("pkg{i}"),
                    &format!("DSA-{host}-{i}"),
                    base + f64::from(i),
                    Decision::Track,
                    false,
                    30,
                )
            })
            .collect();
        store
            .apply_findings(host, &findings, today, &actor)
            .await
            .unwrap();
    }
    // The same two hosts, alone and among many that have nothing: one plan reads each host's
    // findings, the other walks the score index; both must give the same page and total.
    let short = vec!["web1".to_owned(), "db1".to_owned()];
    let mut long: Vec<String> = (0..400).map(|i| format!("idle{i:03}")).collect();
    long.extend(short.iter().cloned());
    let mut pages = Vec::new();
    for hosts in [short, long] {
        let page = store
            .findings(&FindingsQuery {
                hosts: Some(hosts),
                limit: 4,
                offset: 1,
                ..FindingsQuery::default()
            })
            .await
            .unwrap();
        assert_eq!(page.total, 10);
        pages.push(
            page.items
                .iter()
                .map(|f| f.finding.advisory.clone())
                .collect::<Vec<_>>(),
        );
    }
    assert_eq!(
        pages[0],
        ["DSA-db1-3", "DSA-db1-2", "DSA-db1-1", "DSA-db1-0"]
    );
    assert_eq!(pages[0], pages[1]);
}

#[tokio::test]
async fn long_host_lists_give_the_same_page_on_both_backends() {
    on_both!(long_host_lists_give_the_same_page);
}

async fn a_failed_sync_keeps_the_content(db: &TestDb) {
    let store = &db.store;
    let actor = Actor::system();
    let feed = store
        .create_feed(
            NewFeed {
                name: "dsa".to_owned(),
                kind: FeedKind::Advisories,
                source: "/srv/DSA-list".to_owned(),
                interval_seconds: Some(3600),
            },
            &actor,
        )
        .await
        .unwrap();
    assert!(
        store
            .create_feed(
                NewFeed {
                    name: "dsa".to_owned(),
                    kind: FeedKind::Kev,
                    source: "x".to_owned(),
                    interval_seconds: None,
                },
                &actor,
            )
            .await
            .is_err()
    );
    let content = b"[29 Mar 2023] DSA-5380-1 x - y\n".to_vec();
    let synced = store
        .record_feed_sync(
            &feed.id,
            SyncOutcome::Updated {
                content: content.clone(),
                hash: "abc".to_owned(),
                records: 1,
                skipped: 0,
            },
            &actor,
        )
        .await
        .unwrap();
    assert_eq!(synced.last_status.as_deref(), Some("ok"));
    let failed = store
        .record_feed_sync(
            &feed.id,
            SyncOutcome::Failed {
                reason: "unreachable".to_owned(),
                error: "unreachable: cannot fetch https://feeds.example/x: connection refused"
                    .to_owned(),
            },
            &actor,
        )
        .await
        .unwrap();
    assert_eq!(failed.last_status.as_deref(), Some("error"));
    assert_eq!(failed.content_hash.as_deref(), Some("abc"));
    let contents = store.feed_contents().await.unwrap();
    assert_eq!(contents.len(), 1);
    assert_eq!(contents[0].1, content, "the last good content stays");
    let actions: Vec<String> = store
        .audit_events(None)
        .await
        .unwrap()
        .into_iter()
        .map(|e| e.action)
        .collect();
    assert_eq!(actions, ["feed.create", "feed.sync", "feed.sync"]);
    assert!(
        failed
            .last_error
            .as_deref()
            .is_some_and(|e| e.contains("connection refused"))
    );
    // The audit chain keeps the kind of failure, never the message (which names what was read).
    let events = store.audit_events(None).await.unwrap();
    let after: serde_json::Value =
        serde_json::from_str(events[2].after.as_deref().unwrap()).unwrap();
    assert_eq!(
        after,
        serde_json::json!({"status": "error", "reason": "unreachable"})
    );
}

#[tokio::test]
async fn a_failed_sync_keeps_the_content_on_both_backends() {
    on_both!(a_failed_sync_keeps_the_content);
}

async fn counts_stop_at_the_cap(db: &TestDb) {
    let store = &db.store;
    let many: Vec<Finding> = (0..=sluice_store::COUNT_CAP)
        .map(|i| {
            finding(
                &format!("pkg{i}"),
                "DSA-9",
                (i % 100) as f64,
                Decision::Track,
                false,
                90,
            )
        })
        .collect();
    let diff = store
        .apply_findings("big", &many, date(2026, 11, 25), &Actor::system())
        .await
        .unwrap();
    assert_eq!(diff.opened as i64, sluice_store::COUNT_CAP + 1);
    let page = store
        .findings(&FindingsQuery {
            limit: 5,
            ..FindingsQuery::default()
        })
        .await
        .unwrap();
    assert_eq!(page.items.len(), 5);
    assert_eq!(page.total, sluice_store::COUNT_CAP);
    assert!(!page.total_exact, "more than the cap match");
    assert_eq!(page.items[0].finding.score, 99.0);
    let small = store
        .findings(&FindingsQuery {
            hosts: Some(vec!["big".to_owned()]),
            decisions: Some(vec!["act".to_owned()]),
            limit: 5,
            ..FindingsQuery::default()
        })
        .await
        .unwrap();
    assert_eq!((small.total, small.total_exact), (0, true));
}

#[tokio::test]
async fn counts_stop_at_the_cap_on_both_backends() {
    on_both!(counts_stop_at_the_cap);
}

async fn deferrals_pick_and_leave_out(db: &TestDb) {
    let store = &db.store;
    let actor = Actor::system();
    let today = date(2026, 11, 25);
    store
        .apply_findings(
            "web1",
            &[
                finding("openssl", "DSA-1", 80.0, Decision::Act, true, 7),
                finding("bash", "DSA-2", 10.0, Decision::Track, false, 90),
            ],
            today,
            &actor,
        )
        .await
        .unwrap();
    store
        .apply_findings(
            "web2",
            &[finding("curl", "DSA-3", 55.0, Decision::Attend, false, 30)],
            today,
            &actor,
        )
        .await
        .unwrap();
    let page = |covered: Option<(bool, Covered)>| {
        let query = FindingsQuery {
            covered,
            limit: 100,
            ..FindingsQuery::default()
        };
        async move {
            let page = store.findings(&query).await.unwrap();
            let mut packages: Vec<String> = page
                .items
                .iter()
                .map(|f| f.finding.package.clone())
                .collect();
            packages.sort();
            assert_eq!(page.total as usize, packages.len());
            packages
        }
    };
    let all = store
        .findings(&FindingsQuery {
            limit: 100,
            ..FindingsQuery::default()
        })
        .await
        .unwrap();
    let openssl = all
        .items
        .iter()
        .find(|f| f.finding.package == "openssl")
        .unwrap()
        .id;
    let covered = Covered {
        ids: vec![openssl],
        host_packages: vec![("web2".to_owned(), "curl".to_owned())],
    };
    assert_eq!(
        page(Some((true, covered.clone()))).await,
        ["curl", "openssl"]
    );
    assert_eq!(page(Some((false, covered))).await, ["bash"]);
    // A package on another host is not covered.
    let elsewhere = Covered {
        ids: vec![],
        host_packages: vec![("web1".to_owned(), "curl".to_owned())],
    };
    assert!(page(Some((true, elsewhere))).await.is_empty());
    assert!(page(Some((true, Covered::default()))).await.is_empty());
    assert_eq!(
        page(Some((false, Covered::default()))).await,
        ["bash", "curl", "openssl"]
    );
}

#[tokio::test]
async fn deferrals_pick_and_leave_out_on_both_backends() {
    on_both!(deferrals_pick_and_leave_out);
}
