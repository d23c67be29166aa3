//! Calendar storage conformance: windows, freezes and freeze exceptions behave the same on
//! SQLite and PostgreSQL, and every write is in the audit chain.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use jiff::Timestamp;
use serde_json::json;
use sluice_core::calendar::{FreezeSpec, WindowSpec};
use sluice_store::{
    Actor, ExceptionState, StoreError, StoredFreeze, StoredFreezeException, StoredWindow,
};

mod common;

use common::TestDb;

fn at(text: &str) -> Timestamp {
    text.parse().unwrap()
}

async fn calendars_are_stored_and_audited(db: &TestDb) {
    let store = &db.store;
    let alice = Actor::named("alice", Some("req-1"));
    let bob = Actor::named("bob", Some("req-2"));
    let now = at("2026-11-02T09:00:00Z");
    let definition: WindowSpec = serde_json::from_value(json!({
        "rrule": "FREQ=WEEKLY;BYDAY=TU", "dtstart": "2026-11-01", "start": "22:00",
        "duration": "4h", "cutoff": "30m", "tz": "Europe/Berlin"
    }))
    .unwrap();
    let window = StoredWindow {
        name: "web-tuesday".into(),
        scope: "group=web".into(),
        definition,
        created_by: "alice".into(),
        created_at: now,
    };
    store.create_window(&window, &alice).await.unwrap();
    assert!(matches!(
        store.create_window(&window, &alice).await,
        Err(StoreError::Conflict(_))
    ));
    assert_eq!(store.windows().await.unwrap(), vec![window.clone()]);

    let freeze = StoredFreeze {
        name: "release".into(),
        scope: String::new(),
        definition: serde_json::from_value::<FreezeSpec>(json!({
            "rule": {"kind": "range", "from": "2026-12-01T00:00:00Z", "until": "2026-12-08T00:00:00Z"}
        }))
        .unwrap(),
        created_by: "alice".into(),
        created_at: now,
    };
    store.create_freeze(&freeze, &alice).await.unwrap();
    assert_eq!(store.freezes().await.unwrap(), vec![freeze.clone()]);

    let request = StoredFreezeException {
        id: String::new(),
        freeze: "release".into(),
        scope: "host=web-1".into(),
        from: at("2026-12-02T00:00:00Z"),
        until: at("2026-12-02T04:00:00Z"),
        justification: "an actively exploited flaw".into(),
        requested_by: "alice".into(),
        requested_at: now,
        state: ExceptionState::Approved,
        decided_by: Some("alice".into()),
        decided_at: None,
    };
    // A request for a freeze that does not exist is refused; a new one always starts requested.
    let missing = StoredFreezeException {
        freeze: "nope".into(),
        ..request.clone()
    };
    assert!(matches!(
        store.request_freeze_exception(missing, &alice).await,
        Err(StoreError::NotFound(_))
    ));
    let first = store
        .request_freeze_exception(request.clone(), &alice)
        .await
        .unwrap();
    assert_eq!(first.id, "FEX-1");
    assert_eq!(first.state, ExceptionState::Requested);
    assert_eq!(first.decided_by, None);
    let second = store
        .request_freeze_exception(request.clone(), &alice)
        .await
        .unwrap();
    assert_eq!(second.id, "FEX-2");

    let approved = store
        .decide_freeze_exception("FEX-1", true, now, &bob)
        .await
        .unwrap();
    assert_eq!(approved.state, ExceptionState::Approved);
    assert_eq!(approved.decided_by.as_deref(), Some("bob"));
    assert!(matches!(
        store
            .decide_freeze_exception("FEX-1", false, now, &bob)
            .await,
        Err(StoreError::Conflict(_))
    ));
    let rejected = store
        .decide_freeze_exception("FEX-2", false, now, &bob)
        .await
        .unwrap();
    assert_eq!(rejected.state, ExceptionState::Rejected);
    assert!(matches!(
        store
            .decide_freeze_exception("FEX-9", true, now, &bob)
            .await,
        Err(StoreError::NotFound(_))
    ));
    assert_eq!(
        store.freeze_exception("FEX-1").await.unwrap(),
        Some(approved.clone())
    );
    assert_eq!(
        store.freeze_exceptions(Some("release")).await.unwrap(),
        vec![approved, rejected]
    );
    assert!(
        store
            .freeze_exceptions(Some("other"))
            .await
            .unwrap()
            .is_empty()
    );

    store.delete_window("web-tuesday", &alice).await.unwrap();
    assert!(matches!(
        store.delete_window("web-tuesday", &alice).await,
        Err(StoreError::NotFound(_))
    ));
    store.delete_freeze("release", &alice).await.unwrap();
    assert!(store.freezes().await.unwrap().is_empty());
    assert!(store.freeze_exceptions(None).await.unwrap().is_empty());

    let actions: Vec<String> = store
        .audit_events(None)
        .await
        .unwrap()
        .into_iter()
        .map(|e| format!("{} {} {}", e.actor, e.action, e.object))
        .collect();
    assert_eq!(
        actions,
        vec![
            "alice window.create window:web-tuesday",
            "alice freeze.create freeze:release",
            "alice freeze-exception.request freeze-exception:FEX-1",
            "alice freeze-exception.request freeze-exception:FEX-2",
            "bob freeze-exception.approve freeze-exception:FEX-1",
            "bob freeze-exception.reject freeze-exception:FEX-2",
            "alice window.delete window:web-tuesday",
            "alice freeze.delete freeze:release",
        ]
    );
    assert!(store.verify_audit().await.unwrap().is_ok());
}

#[tokio::test]
async fn calendars_on_both_backends() {
    on_both!(calendars_are_stored_and_audited);
}
