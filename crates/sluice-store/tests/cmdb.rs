//! CMDB storage conformance: assets, groups, services and Idempotency-Key records behave the
//! same on SQLite and PostgreSQL (see `conformance.rs` for how the databases are made).

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::collections::BTreeSet;

use sluice_core::cmdb::{Asset, Budget, Group, Service};
use sluice_store::{Actor, Backend, Change, ImportSummary, KeyClaim, StoreError, StoredResponse};

mod common;

use common::TestDb;

fn asset(host: &str, pairs: &[&str]) -> Asset {
    let mut asset = Asset::new(host).unwrap();
    asset.set_pairs(pairs.iter().copied()).unwrap();
    asset
}

fn group(name: &str, description: Option<&str>) -> Group {
    Group {
        name: name.to_owned(),
        description: description.map(str::to_owned),
    }
}

fn service(name: &str, members: &[&str], depends_on: &[&str]) -> Service {
    Service {
        name: name.to_owned(),
        tier: Some(2),
        members: members.iter().map(|m| (*m).to_owned()).collect(),
        depends_on: depends_on.iter().map(|d| (*d).to_owned()).collect(),
        disruption_budget: Some(Budget::Percent(25)),
    }
}

fn hostnames(assets: &[Asset]) -> Vec<&str> {
    assets.iter().map(|a| a.hostname.as_str()).collect()
}

async fn actions(db: &TestDb) -> Vec<String> {
    db.store
        .audit_events(None)
        .await
        .unwrap()
        .into_iter()
        .map(|e| format!("{} {}", e.action, e.object))
        .collect()
}

async fn assets_are_stored_audited_and_sorted(db: &TestDb) {
    let store = &db.store;
    let actor = Actor::named("olivia", Some("req-7"));
    let web = asset(
        "web1.example.com",
        &["env=prod", "criticality=4", "tags=web"],
    );
    let (stored, change) = store.put_asset(&web, &actor).await.unwrap();
    assert_eq!((stored, change), (web.clone(), Change::Created));
    assert_eq!(
        store.asset("web1.example.com").await.unwrap(),
        Some(web.clone())
    );
    assert_eq!(store.asset("nope.example.com").await.unwrap(), None);

    // The same record again writes nothing, not even an audit event.
    let head = store.audit_head().await.unwrap();
    assert_eq!(
        store.put_asset(&web, &actor).await.unwrap().1,
        Change::Unchanged
    );
    assert_eq!(store.upsert_asset(&web, &actor).await.unwrap(), web);
    assert_eq!(store.audit_head().await.unwrap(), head);

    let mut changed = web.clone();
    changed.set("criticality", "5").unwrap();
    assert_eq!(store.upsert_asset(&changed, &actor).await.unwrap(), changed);
    let events = store.audit_events(None).await.unwrap();
    assert_eq!(events.len(), 2);
    assert_eq!(events[0].action, "asset.create");
    assert_eq!(events[0].before, None);
    assert_eq!(events[1].action, "asset.update");
    assert_eq!(events[1].object, "asset:web1.example.com");
    assert_eq!(events[1].actor, "olivia");
    assert_eq!(events[1].request_id.as_deref(), Some("req-7"));
    assert!(
        events[1]
            .before
            .as_deref()
            .unwrap()
            .contains("\"criticality\":4")
    );
    assert!(
        events[1]
            .after
            .as_deref()
            .unwrap()
            .contains("\"criticality\":5")
    );

    // Sorted bytewise on both backends, whatever PostgreSQL's locale would say.
    for host in [
        "ab.example.com",
        "a_b.example.com",
        "a-b.example.com",
        "10.0.0.1",
    ] {
        store.upsert_asset(&asset(host, &[]), &actor).await.unwrap();
    }
    assert_eq!(
        hostnames(&store.assets().await.unwrap()),
        [
            "10.0.0.1",
            "a-b.example.com",
            "a_b.example.com",
            "ab.example.com",
            "web1.example.com"
        ]
    );

    // Invalid records never reach the database.
    let mut bad = asset("bad.example.com", &[]);
    bad.criticality = 9;
    let err = store.upsert_asset(&bad, &actor).await.unwrap_err();
    assert!(matches!(err, StoreError::Invalid(_)), "{err}");
    assert!(err.to_string().contains("bad.example.com"), "{err}");
    assert_eq!(store.asset("bad.example.com").await.unwrap(), None);

    store.delete_asset("ab.example.com", &actor).await.unwrap();
    let err = store
        .delete_asset("ab.example.com", &actor)
        .await
        .unwrap_err();
    assert!(matches!(err, StoreError::NotFound(_)), "{err}");
    let last = store.audit_events(None).await.unwrap().pop().unwrap();
    assert_eq!(last.action, "asset.delete");
    assert_eq!(last.after, None);
    assert!(store.verify_audit().await.unwrap().is_ok());
}

#[tokio::test]
async fn assets_are_stored_audited_and_sorted_on_both_backends() {
    on_both!(assets_are_stored_audited_and_sorted);
}

async fn set_is_all_or_nothing(db: &TestDb) {
    let store = &db.store;
    let actor = Actor::system();
    let web = asset("web1.example.com", &["env=prod"]);
    store.upsert_asset(&web, &actor).await.unwrap();
    let pairs = |list: &[(&str, &str)]| -> Vec<(String, String)> {
        list.iter()
            .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
            .collect()
    };
    let (after, change) = store
        .set_asset(
            "web1.example.com",
            &pairs(&[("criticality", "5"), ("tags", "web,edge")]),
            &actor,
        )
        .await
        .unwrap();
    assert_eq!(change, Change::Updated);
    assert_eq!(after.criticality, 5);
    assert_eq!(
        after.tags,
        BTreeSet::from(["edge".to_owned(), "web".to_owned()])
    );

    let head = store.audit_head().await.unwrap();
    let err = store
        .set_asset(
            "web1.example.com",
            &pairs(&[("env", "staging"), ("criticality", "high")]),
            &actor,
        )
        .await
        .unwrap_err();
    assert!(matches!(err, StoreError::Invalid(_)), "{err}");
    assert!(err.to_string().contains("criticality"), "{err}");
    assert_eq!(
        store.asset("web1.example.com").await.unwrap(),
        Some(after.clone())
    );
    assert_eq!(store.audit_head().await.unwrap(), head);

    let (_, change) = store
        .set_asset("web1.example.com", &pairs(&[("criticality", "5")]), &actor)
        .await
        .unwrap();
    assert_eq!(change, Change::Unchanged);
    assert_eq!(store.audit_head().await.unwrap(), head);

    let err = store
        .set_asset("nope.example.com", &pairs(&[("env", "x")]), &actor)
        .await
        .unwrap_err();
    assert!(matches!(err, StoreError::NotFound(_)), "{err}");
}

#[tokio::test]
async fn set_is_all_or_nothing_on_both_backends() {
    on_both!(set_is_all_or_nothing);
}

async fn imports_are_one_transaction(db: &TestDb) {
    let store = &db.store;
    let actor = Actor::named("olivia", None);
    let first = vec![
        asset("a.example.com", &["env=prod", "groups=web"]),
        asset("b.example.com", &["env=prod", "groups=web,db"]),
        asset("c.example.com", &["env=test"]),
    ];
    let groups = vec![group("web", Some("front ends")), group("db", None)];
    let summary = store
        .import_assets(first.clone(), groups.clone(), &actor)
        .await
        .unwrap();
    assert_eq!(
        summary,
        ImportSummary {
            created: 3,
            updated: 0,
            unchanged: 0,
            groups_created: 2,
            groups_updated: 0
        }
    );
    assert_eq!(
        actions(db).await,
        [
            "group.create group:web",
            "group.create group:db",
            "asset.create asset:a.example.com",
            "asset.create asset:b.example.com",
            "asset.create asset:c.example.com",
        ]
    );

    // The same import again changes nothing and records nothing.
    let head = store.audit_head().await.unwrap();
    let again = store
        .import_assets(first.clone(), groups.clone(), &actor)
        .await
        .unwrap();
    assert_eq!((again.created, again.updated, again.unchanged), (0, 0, 3));
    assert_eq!(store.audit_head().await.unwrap(), head);

    // An import that fails half-way, after it has updated, created and audited, leaves
    // everything as it was.
    match store.backend() {
        Backend::Sqlite => {
            db.tamper(
                "CREATE TRIGGER refuse_zz BEFORE INSERT ON assets WHEN NEW.hostname = 'zz.example.com' \
                 BEGIN SELECT RAISE(ABORT, 'refused by the test'); END;",
            )
            .await
        }
        Backend::Postgres => {
            db.tamper(
                "ALTER TABLE assets ADD CONSTRAINT refuse_zz CHECK (hostname <> 'zz.example.com')",
            )
            .await
        }
    }
    let before_assets = store.assets().await.unwrap();
    let before_groups = store.groups().await.unwrap();
    let failing = vec![
        asset("a.example.com", &["env=staging", "groups=web"]),
        asset("d.example.com", &[]),
        asset("zz.example.com", &[]),
        asset("e.example.com", &[]),
    ];
    let err = store
        .import_assets(
            failing,
            vec![group("web", Some("changed")), group("new", None)],
            &actor,
        )
        .await
        .unwrap_err();
    assert!(matches!(err, StoreError::Database(_)), "{err}");
    assert_eq!(store.assets().await.unwrap(), before_assets);
    assert_eq!(store.groups().await.unwrap(), before_groups);
    assert_eq!(store.audit_head().await.unwrap(), head);
    assert!(store.verify_audit().await.unwrap().is_ok());

    // Bad input is refused before anything is written, naming what is wrong.
    let err = store
        .import_assets(
            vec![asset("f.example.com", &[]), asset("f.example.com", &[])],
            vec![],
            &actor,
        )
        .await
        .unwrap_err();
    assert!(
        err.to_string()
            .contains("f.example.com appears more than once"),
        "{err}"
    );
    let err = store
        .import_assets(vec![], vec![group("no spaces", None)], &actor)
        .await
        .unwrap_err();
    assert!(matches!(err, StoreError::Invalid(_)), "{err}");
    assert_eq!(store.audit_head().await.unwrap(), head);

    // A good import after the failure works, and updates in place.
    let summary = store
        .import_assets(
            vec![
                asset("a.example.com", &["env=staging", "groups=web"]),
                asset("d.example.com", &[]),
            ],
            vec![group("web", Some("changed"))],
            &actor,
        )
        .await
        .unwrap();
    assert_eq!(
        summary,
        ImportSummary {
            created: 1,
            updated: 1,
            unchanged: 0,
            groups_created: 0,
            groups_updated: 1
        }
    );
    assert_eq!(
        store
            .asset("a.example.com")
            .await
            .unwrap()
            .unwrap()
            .environment
            .as_deref(),
        Some("staging")
    );
}

#[tokio::test]
async fn imports_are_one_transaction_on_both_backends() {
    on_both!(imports_are_one_transaction);
}

async fn groups_and_services(db: &TestDb) {
    let store = &db.store;
    let actor = Actor::system();
    for host in ["web1.example.com", "web2.example.com", "db1.example.com"] {
        store
            .upsert_asset(&asset(host, &["groups=web"]), &actor)
            .await
            .unwrap();
    }

    // Groups: declared, described, deleted only once empty.
    assert_eq!(
        store
            .put_group(&group("web", None), &actor)
            .await
            .unwrap()
            .1,
        Change::Created
    );
    assert_eq!(
        store
            .put_group(&group("web", None), &actor)
            .await
            .unwrap()
            .1,
        Change::Unchanged
    );
    store
        .upsert_group(&group("web", Some("front ends")), &actor)
        .await
        .unwrap();
    store
        .upsert_group(&group("we", None), &actor)
        .await
        .unwrap();
    assert_eq!(
        store
            .group("web")
            .await
            .unwrap()
            .unwrap()
            .description
            .as_deref(),
        Some("front ends")
    );
    let err = store.delete_group("web", &actor).await.unwrap_err();
    assert!(matches!(err, StoreError::Conflict(_)), "{err}");
    assert!(err.to_string().contains("3 member(s)"), "{err}");
    // `we` is a prefix of `web`: no false members.
    store.delete_group("we", &actor).await.unwrap();
    assert!(matches!(
        store.delete_group("we", &actor).await.unwrap_err(),
        StoreError::NotFound(_)
    ));
    let err = store
        .upsert_group(&group("bad name", None), &actor)
        .await
        .unwrap_err();
    assert!(matches!(err, StoreError::Invalid(_)), "{err}");

    // Services: checked as a set against the stored hosts.
    let db_service = service("db", &["db1.example.com"], &[]);
    let web_service = service("web", &["web1.example.com", "web2.example.com"], &["db"]);
    assert_eq!(
        store.put_service(&db_service, &actor).await.unwrap().1,
        Change::Created
    );
    store.upsert_service(&web_service, &actor).await.unwrap();
    assert_eq!(
        store.put_service(&web_service, &actor).await.unwrap().1,
        Change::Unchanged
    );
    assert_eq!(
        store.services().await.unwrap(),
        [db_service.clone(), web_service.clone()]
    );
    assert_eq!(
        store.service("web").await.unwrap(),
        Some(web_service.clone())
    );
    assert_eq!(store.service("nope").await.unwrap(), None);

    let head = store.audit_head().await.unwrap();
    let err = store
        .upsert_service(&service("api", &["ghost.example.com"], &["cache"]), &actor)
        .await
        .unwrap_err();
    let message = err.to_string();
    assert!(matches!(err, StoreError::Invalid(_)), "{err}");
    assert!(
        message.contains("member ghost.example.com is not a known host"),
        "{message}"
    );
    assert!(message.contains("depends on cache"), "{message}");
    let cycle = service("db", &["db1.example.com"], &["web"]);
    let err = store.upsert_service(&cycle, &actor).await.unwrap_err();
    assert!(err.to_string().contains("cycle: db -> web -> db"), "{err}");
    assert_eq!(store.audit_head().await.unwrap(), head, "nothing recorded");
    assert_eq!(
        store.services().await.unwrap(),
        [db_service.clone(), web_service.clone()]
    );

    // A member cannot be deleted from under its service, nor a service from under a dependant.
    let err = store
        .delete_asset("web2.example.com", &actor)
        .await
        .unwrap_err();
    assert!(matches!(err, StoreError::Conflict(_)), "{err}");
    assert!(err.to_string().contains("service(s) web"), "{err}");
    let err = store.delete_service("db", &actor).await.unwrap_err();
    assert!(matches!(err, StoreError::Conflict(_)), "{err}");
    assert!(err.to_string().contains("web depend on db"), "{err}");

    // Shrinking the service frees the host.
    let smaller = service("web", &["web1.example.com"], &["db"]);
    assert_eq!(
        store.put_service(&smaller, &actor).await.unwrap().1,
        Change::Updated
    );
    store
        .delete_asset("web2.example.com", &actor)
        .await
        .unwrap();
    store.delete_service("web", &actor).await.unwrap();
    store.delete_service("db", &actor).await.unwrap();
    assert!(store.services().await.unwrap().is_empty());

    let tail: Vec<String> = actions(db).await.into_iter().skip(3).collect();
    assert_eq!(
        tail,
        [
            "group.create group:web",
            "group.update group:web",
            "group.create group:we",
            "group.delete group:we",
            "service.create service:db",
            "service.create service:web",
            "service.update service:web",
            "asset.delete asset:web2.example.com",
            "service.delete service:web",
            "service.delete service:db",
        ]
    );
    assert!(store.verify_audit().await.unwrap().is_ok());
}

#[tokio::test]
async fn groups_and_services_on_both_backends() {
    on_both!(groups_and_services);
}

async fn idempotency_keys(db: &TestDb) {
    let store = &db.store;
    let t0: jiff::Timestamp = "2030-01-01T00:00:00Z".parse().unwrap();
    let at = |seconds: i64| t0 + jiff::SignedDuration::from_secs(seconds);
    let epoch = jiff::Timestamp::UNIX_EPOCH;
    let claim = |user: &'static str, key: &'static str, fingerprint: &'static str, now, stale| async move {
        store
            .claim_idempotency_key(user, key, fingerprint, now, epoch, stale)
            .await
            .unwrap()
    };

    assert_eq!(claim("u1", "k1", "f1", t0, epoch).await, KeyClaim::New);
    assert_eq!(
        claim("u1", "k1", "f1", at(1), epoch).await,
        KeyClaim::InFlight
    );
    assert_eq!(
        claim("u1", "k1", "f2", at(1), epoch).await,
        KeyClaim::Mismatch
    );
    // Keys are per user.
    assert_eq!(claim("u2", "k1", "f2", at(1), epoch).await, KeyClaim::New);

    let answer = StoredResponse {
        status: 201,
        content_type: Some("application/json".to_owned()),
        body: b"{\"ok\":true}".to_vec(),
    };
    store
        .complete_idempotency_key("u1", "k1", &answer)
        .await
        .unwrap();
    assert_eq!(
        claim("u1", "k1", "f1", at(2), epoch).await,
        KeyClaim::Replay(answer.clone())
    );
    assert_eq!(
        claim("u1", "k1", "f2", at(2), epoch).await,
        KeyClaim::Mismatch
    );
    // A completed answer is never "stale".
    assert_eq!(
        claim("u1", "k1", "f1", at(9999), at(9000)).await,
        KeyClaim::Replay(answer)
    );

    // A released claim can be taken again; an abandoned one is taken over once stale.
    store.release_idempotency_key("u2", "k1").await.unwrap();
    assert_eq!(claim("u2", "k1", "f3", at(3), epoch).await, KeyClaim::New);
    assert_eq!(
        claim("u2", "k1", "f3", at(4), at(0)).await,
        KeyClaim::InFlight
    );
    assert_eq!(
        claim("u2", "k1", "f3", at(700), at(100)).await,
        KeyClaim::New
    );

    // Expired keys are forgotten.
    let fresh = store
        .claim_idempotency_key("u1", "k1", "f9", at(90_000), at(86_400), epoch)
        .await
        .unwrap();
    assert_eq!(fresh, KeyClaim::New);
}

#[tokio::test]
async fn idempotency_keys_on_both_backends() {
    on_both!(idempotency_keys);
}
