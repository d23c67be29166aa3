//! Change governance storage conformance: changes (ids, optimistic concurrency, listing
//! filters), versioned policies and deferrals behave the same on SQLite and PostgreSQL, and
//! every write is in the audit chain.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use jiff::{SignedDuration, Timestamp};
use serde_json::json;
use sluice_core::access::{Actor as Person, Role};
use sluice_core::change::{
    Action, BundleItem, CabPolicy, ChangeOrigin, ChangeRequest, ChangeState, ChangeType, NewChange,
    Plan, RollbackCriteria, UpdateClass, transition,
};
use sluice_core::cmdb::Selector;
use sluice_core::deferral::{
    Deferral, DeferralKind, DeferralPolicy, DeferralRequest, DeferralTarget,
};
use sluice_store::{Actor, ChangeEvent, ChangesQuery, DeferralsQuery, StoreError};

mod common;

use common::TestDb;

fn at(text: &str) -> Timestamp {
    text.parse().unwrap()
}

fn draft(title: &str, kind: ChangeType, now: Timestamp) -> ChangeRequest {
    let input = NewChange {
        title: title.to_owned(),
        kind,
        origin: ChangeOrigin::Packages,
        bundle: vec![BundleItem::pinned("tzdata", None, "2026a-1")],
        scope: Selector::parse("env=prod").unwrap(),
        update_types: [UpdateClass::Bugfix].into(),
        justification: None,
        template: None,
        plan: Plan {
            implementation: vec!["upgrade".to_owned()],
            verification: vec!["check the zone".to_owned()],
            rollback_criteria: RollbackCriteria {
                max_failed_check_share: 0.1,
                max_latency_factor: None,
                custom_check: None,
                detection_window: SignedDuration::from_mins(15),
            },
        },
    };
    ChangeRequest::new("new", input, "alice", now).unwrap()
}

async fn audit_actions(db: &TestDb) -> Vec<String> {
    db.store
        .audit_events(None)
        .await
        .unwrap()
        .into_iter()
        .map(|e| format!("{} {} {}", e.actor, e.action, e.object))
        .collect()
}

async fn changes_are_numbered_versioned_and_listed(db: &TestDb) {
    let store = &db.store;
    let alice = Actor::named("alice", Some("req-1"));
    let now = at("2026-11-02T09:00:00Z");
    let first = store
        .create_change(draft("tzdata on prod", ChangeType::Normal, now), &alice)
        .await
        .unwrap();
    assert_eq!(first.change.id, "CHG-1");
    assert_eq!(first.version, 1);
    let second = store
        .create_change(draft("tzdata again", ChangeType::Emergency, now), &alice)
        .await
        .unwrap();
    assert_eq!(second.change.id, "CHG-2");
    assert_eq!(store.change("CHG-1").await.unwrap(), Some(first.clone()));
    assert_eq!(store.change("CHG-9").await.unwrap(), None);

    // A cancel decided by core, applied and stored against the version it was read at.
    let person = Person::new("alice", [Role::Operator], []);
    let decided = transition(
        &first.change,
        &Action::Cancel {
            reason: "not needed".to_owned(),
        },
        &person,
        &CabPolicy::default(),
        now,
    )
    .unwrap();
    let mut cancelled = first.change.clone();
    cancelled.apply(&decided).unwrap();
    let event = || ChangeEvent {
        action: decided.audit_action(),
        before: Some(json!({"state": "draft"})),
        after: serde_json::to_value(&decided).ok(),
    };
    let stored = store
        .update_change(&cancelled, first.version, event(), &alice)
        .await
        .unwrap();
    assert_eq!(stored.version, 2);
    assert_eq!(stored.change.state, ChangeState::Cancelled);
    // The same write against the version it replaced is refused, and writes nothing.
    let head = store.audit_head().await.unwrap();
    let stale = store
        .update_change(&cancelled, first.version, event(), &alice)
        .await
        .unwrap_err();
    assert!(
        matches!(&stale, StoreError::Conflict(m) if m.contains("version 1") && m.contains("version 2")),
        "{stale}"
    );
    assert_eq!(store.audit_head().await.unwrap(), head);
    let mut ghost = cancelled.clone();
    ghost.id = "CHG-77".to_owned();
    assert!(matches!(
        store.update_change(&ghost, 1, event(), &alice).await,
        Err(StoreError::NotFound(_))
    ));

    let all = store
        .changes(&ChangesQuery {
            limit: 10,
            ..ChangesQuery::default()
        })
        .await
        .unwrap();
    assert_eq!(all.total, 2);
    let ids: Vec<&str> = all.items.iter().map(|c| c.change.id.as_str()).collect();
    assert_eq!(ids, ["CHG-2", "CHG-1"], "newest first");
    let drafts = store
        .changes(&ChangesQuery {
            states: Some(vec![ChangeState::Draft]),
            kind: Some("emergency".to_owned()),
            requester: Some("alice".to_owned()),
            limit: 10,
            ..ChangesQuery::default()
        })
        .await
        .unwrap();
    assert_eq!(drafts.total, 1);
    assert_eq!(drafts.items[0].change.id, "CHG-2");
    let page = store
        .changes(&ChangesQuery {
            limit: 1,
            offset: 1,
            ..ChangesQuery::default()
        })
        .await
        .unwrap();
    assert_eq!((page.total, page.items.len()), (2, 1));
    assert_eq!(page.items[0].change.id, "CHG-1");

    // Retrospective deadlines: overdue only when passed and not reviewed.
    let mut emergency = second.change.clone();
    emergency.retrospective_due = Some(at("2026-11-04T09:00:00Z"));
    store
        .update_change(
            &emergency,
            second.version,
            ChangeEvent {
                action: "change.test".to_owned(),
                before: None,
                after: None,
            },
            &alice,
        )
        .await
        .unwrap();
    let overdue = |when: &str| ChangesQuery {
        review_overdue_at: Some(at(when)),
        limit: 10,
        ..ChangesQuery::default()
    };
    assert_eq!(
        store
            .changes(&overdue("2026-11-04T08:59:59Z"))
            .await
            .unwrap()
            .total,
        0
    );
    assert_eq!(
        store
            .changes(&overdue("2026-11-04T09:00:00.5Z"))
            .await
            .unwrap()
            .total,
        1,
        "times compare as times, fractions included"
    );
    let in_draft = store.changes_in(&[ChangeState::Draft]).await.unwrap();
    assert_eq!(in_draft.len(), 1);

    assert_eq!(
        audit_actions(db).await,
        [
            "alice change.create change:CHG-1",
            "alice change.create change:CHG-2",
            "alice change.cancel change:CHG-1",
            "alice change.test change:CHG-2",
        ]
    );
    assert!(store.verify_audit().await.unwrap().is_ok());
}

async fn policies_are_versioned(db: &TestDb) {
    let store = &db.store;
    let admin = Actor::named("ada", None);
    assert_eq!(store.policy("cab").await.unwrap(), None);
    let mut document = serde_json::to_value(CabPolicy::default()).unwrap();
    document["version"] = json!(2);
    let stored = store.put_policy("cab", 2, &document, &admin).await.unwrap();
    assert_eq!(stored.version, 2);
    document["version"] = json!(3);
    document["emergency"]["retrospective_within"] = json!("24h");
    store.put_policy("cab", 3, &document, &admin).await.unwrap();
    let current = store.policy("cab").await.unwrap().unwrap();
    assert_eq!(current.version, 3);
    assert_eq!(current.created_by, "ada");
    let policy: CabPolicy = serde_json::from_value(current.document).unwrap();
    assert_eq!(
        policy.emergency.retrospective_within,
        SignedDuration::from_hours(24)
    );
    let old = store.policy_version("cab", 2).await.unwrap().unwrap();
    assert_eq!(old.document["emergency"]["retrospective_within"], "48h");
    // An edit based on an old version loses.
    let err = store
        .put_policy("cab", 3, &document, &admin)
        .await
        .unwrap_err();
    assert!(
        matches!(&err, StoreError::Conflict(m) if m.contains("version 3")),
        "{err}"
    );
    // Kinds are separate.
    assert_eq!(store.policy("deferral").await.unwrap(), None);
    let events = store.audit_events(None).await.unwrap();
    assert_eq!(events.len(), 2);
    assert!(events.iter().all(|e| e.action == "policy.update"));
    assert!(events[1].before.as_deref().unwrap().contains("48h"));
    assert!(events[1].after.as_deref().unwrap().contains("24h"));
}

async fn deferrals_are_stored_and_audited(db: &TestDb) {
    let store = &db.store;
    let now = at("2026-11-02T09:00:00Z");
    let policy = DeferralPolicy::default();
    let olga = Person::new("olga", [Role::Operator], []);
    let sam = Person::new("sam", [Role::Security], []);
    let request = |target: DeferralTarget, kind: DeferralKind| DeferralRequest {
        target,
        kind,
        justification: "vendor certifies the fix in the next release".to_owned(),
        expires_at: at("2026-12-02T09:00:00Z"),
    };
    let by_finding = Deferral::request(
        "",
        request(
            DeferralTarget::Finding {
                id: "42".to_owned(),
            },
            DeferralKind::Deferral,
        ),
        &olga,
        &policy,
        now,
    )
    .unwrap();
    let pin = Deferral::request(
        "",
        request(
            DeferralTarget::HostPackage {
                host: "db1".to_owned(),
                package: "postgresql-15".to_owned(),
            },
            DeferralKind::LegacyPin {
                version: "15.4-1".to_owned(),
            },
        ),
        &olga,
        &policy,
        now,
    )
    .unwrap();
    let actor = Actor::named("olga", None);
    let first = store.create_deferral(by_finding, &actor).await.unwrap();
    let second = store.create_deferral(pin, &actor).await.unwrap();
    assert_eq!(
        (first.deferral.id.as_str(), second.deferral.id.as_str()),
        ("DEF-1", "DEF-2")
    );

    let mut approved = first.deferral.clone();
    approved.approve(&sam, &policy, now).unwrap();
    let stored = store
        .update_deferral(
            &approved,
            first.version,
            "deferral.approve",
            &Actor::named("sam", None),
        )
        .await
        .unwrap();
    assert_eq!(stored.version, 2);
    assert!(
        store
            .update_deferral(&approved, 1, "deferral.approve", &actor)
            .await
            .is_err(),
        "stale"
    );
    let mut revoked = second.deferral.clone();
    revoked.revoke(&olga, "host retired", now).unwrap();
    store
        .update_deferral(&revoked, second.version, "deferral.revoke", &actor)
        .await
        .unwrap();

    let live = store.deferrals(&DeferralsQuery::default()).await.unwrap();
    assert_eq!(live.len(), 1, "revoked records are left out by default");
    assert_eq!(live[0].deferral.approved_by.as_deref(), Some("sam"));
    let all = store
        .deferrals(&DeferralsQuery {
            include_revoked: true,
            ..DeferralsQuery::default()
        })
        .await
        .unwrap();
    assert_eq!(all.len(), 2);
    let on_db1 = store
        .deferrals(&DeferralsQuery {
            hostname: Some("db1".to_owned()),
            include_revoked: true,
            ..DeferralsQuery::default()
        })
        .await
        .unwrap();
    assert_eq!(on_db1[0].deferral.id, "DEF-2");
    let for_42 = store
        .deferrals(&DeferralsQuery {
            finding_id: Some("42".to_owned()),
            ..DeferralsQuery::default()
        })
        .await
        .unwrap();
    assert_eq!(for_42[0].deferral.id, "DEF-1");
    assert_eq!(store.deferral("DEF-2").await.unwrap().unwrap().version, 2);
    assert_eq!(
        audit_actions(db).await,
        [
            "olga deferral.request deferral:DEF-1",
            "olga deferral.request deferral:DEF-2",
            "sam deferral.approve deferral:DEF-1",
            "olga deferral.revoke deferral:DEF-2",
        ]
    );
    assert!(store.verify_audit().await.unwrap().is_ok());
}

#[tokio::test]
async fn changes_on_both_backends() {
    on_both!(changes_are_numbered_versioned_and_listed);
}

#[tokio::test]
async fn policies_on_both_backends() {
    on_both!(policies_are_versioned);
}

#[tokio::test]
async fn deferrals_on_both_backends() {
    on_both!(deferrals_are_stored_and_audited);
}

/// Two replicas on one PostgreSQL database take turns at scheduling: the second waits for the
/// first's lock, and gets it once the first lets go (or its connection dies).
#[tokio::test]
async fn replicas_take_turns_at_scheduling_on_postgresql() {
    let db = common::TestDb::postgres().await;
    let other = sluice_store::Store::connect(&db.raw_url).await.unwrap();
    let held = db.store.lock_scheduling().await.unwrap();
    let waiting = tokio::time::timeout(
        std::time::Duration::from_millis(300),
        other.lock_scheduling(),
    )
    .await;
    assert!(
        waiting.is_err(),
        "the second replica waits while the first holds the lock"
    );
    drop(held);
    let taken = tokio::time::timeout(std::time::Duration::from_secs(5), other.lock_scheduling())
        .await
        .expect("the lock is free once the first lets go")
        .unwrap();
    drop(taken);
    other.close().await;
    db.finish().await;
}
