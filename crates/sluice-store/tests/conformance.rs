//! Storage conformance: every scenario runs against SQLite (a temporary file) and PostgreSQL (a
//! database created for the test and dropped after it). PostgreSQL is expected at
//! `SLUICE_TEST_POSTGRES_URL` (default `postgres://postgres@127.0.0.1:5432/postgres`); the test
//! fails, not skips, when it is not there.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::collections::BTreeSet;

use sluice_core::access::{Role, Roles};
use sluice_core::audit::{ChainBreak, NewAuditEvent};
use sluice_store::{Actor, NewToken, NewUser, Store, StoreError};

mod common;

use common::TestDb;

fn roles(list: &[Role]) -> Roles {
    list.iter().copied().collect()
}

fn new_user(name: &str) -> NewUser {
    NewUser {
        username: name.to_owned(),
        password_hash: "$argon2id$v=19$m=19456,t=2,p=1$c2FsdA$aGFzaA".to_owned(),
        roles: roles(&[Role::Operator, Role::Viewer]),
        groups: BTreeSet::from(["cab".to_owned()]),
    }
}

async fn users_and_conflicts(db: &TestDb) {
    let store = &db.store;
    let actor = Actor::named("admin", Some("req-1"));
    assert_eq!(store.count_users().await.unwrap(), 0);
    let alice = store.create_user(new_user("alice"), &actor).await.unwrap();
    assert_eq!(alice.roles, roles(&[Role::Viewer, Role::Operator]));
    let head = store.audit_head().await.unwrap();
    assert_eq!(head.seq, 1);

    let err = store
        .create_user(new_user("alice"), &actor)
        .await
        .unwrap_err();
    assert!(matches!(err, StoreError::Conflict(_)), "{err}");
    assert_eq!(
        store.count_users().await.unwrap(),
        1,
        "a failed create stores nothing"
    );
    assert_eq!(
        store.audit_head().await.unwrap(),
        head,
        "and records nothing"
    );

    store.create_user(new_user("bob"), &actor).await.unwrap();
    let names: Vec<String> = store
        .list_users()
        .await
        .unwrap()
        .into_iter()
        .map(|u| u.username)
        .collect();
    assert_eq!(names, ["alice", "bob"]);
    let (found, hash) = store.user_with_hash("alice").await.unwrap().unwrap();
    assert_eq!(found, alice);
    assert!(hash.starts_with("$argon2id$"));
    assert!(store.user_with_hash("carol").await.unwrap().is_none());

    let events = store.audit_events(None).await.unwrap();
    assert_eq!(events.len(), 2);
    assert_eq!(events[0].action, "user.create");
    assert_eq!(events[0].object, "user:alice");
    assert_eq!(events[0].request_id.as_deref(), Some("req-1"));
    assert!(
        !events[0].after.as_deref().unwrap().contains("argon2"),
        "no secret in the audit chain"
    );
}

#[tokio::test]
async fn users_and_conflicts_on_both_backends() {
    on_both!(users_and_conflicts);
}

async fn tokens(db: &TestDb) {
    let store = &db.store;
    let actor = Actor::system();
    let alice = store.create_user(new_user("alice"), &actor).await.unwrap();
    let token = store
        .create_token(
            NewToken {
                user_id: alice.id.clone(),
                name: "cli".to_owned(),
                token_hash: "ab".repeat(32),
                roles: roles(&[Role::Viewer]),
                expires_at: "2030-01-01T00:00:00.000000Z".to_owned(),
            },
            &actor,
        )
        .await
        .unwrap();
    let found = store
        .token_by_hash(&"ab".repeat(32))
        .await
        .unwrap()
        .unwrap();
    assert_eq!(found, token);
    assert_eq!(found.username, "alice");
    assert!(
        store
            .token_by_hash(&"cd".repeat(32))
            .await
            .unwrap()
            .is_none()
    );
    assert_eq!(store.list_tokens(Some(&alice.id)).await.unwrap().len(), 1);

    let revoked = store.revoke_token(&token.id, &actor).await.unwrap();
    assert!(revoked.revoked_at.is_some());
    let again = store.revoke_token(&token.id, &actor).await.unwrap_err();
    assert!(matches!(again, StoreError::Conflict(_)));
    let missing = store.revoke_token("nope", &actor).await.unwrap_err();
    assert!(matches!(missing, StoreError::NotFound(_)));
    let found = store
        .token_by_hash(&"ab".repeat(32))
        .await
        .unwrap()
        .unwrap();
    assert!(found.revoked_at.is_some());
    let actions: Vec<String> = store
        .audit_events(None)
        .await
        .unwrap()
        .into_iter()
        .map(|e| e.action)
        .collect();
    assert_eq!(actions, ["user.create", "token.create", "token.revoke"]);
}

#[tokio::test]
async fn tokens_on_both_backends() {
    on_both!(tokens);
}

async fn seed_events(store: &Store, n: usize) {
    for i in 0..n {
        store
            .record(NewAuditEvent {
                actor: "alice".to_owned(),
                action: "login.failure".to_owned(),
                object: format!("user:u{i}"),
                before: None,
                after: Some(serde_json::json!({"attempt": i})),
                request_id: None,
            })
            .await
            .unwrap();
    }
}

async fn tampering_is_named(db: &TestDb) {
    seed_events(&db.store, 6).await;
    let head = db.store.verify_audit().await.unwrap().unwrap();
    assert_eq!(head.seq, 6);

    db.tamper("UPDATE audit_events SET actor = 'mallory' WHERE seq = 3")
        .await;
    assert_eq!(
        db.store.verify_audit().await.unwrap(),
        Err(ChainBreak::Altered { seq: 3 })
    );
    db.tamper("UPDATE audit_events SET actor = 'alice' WHERE seq = 3")
        .await;
    assert_eq!(
        db.store.verify_audit().await.unwrap(),
        Ok(head.clone()),
        "restored"
    );

    db.tamper("DELETE FROM audit_events WHERE seq = 4").await;
    assert_eq!(
        db.store.verify_audit().await.unwrap(),
        Err(ChainBreak::Missing { from: 4, to: 4 })
    );
}

#[tokio::test]
async fn edits_and_deletions_are_named_on_both_backends() {
    on_both!(tampering_is_named);
}

async fn forgery_and_truncation(db: &TestDb) {
    seed_events(&db.store, 3).await;
    let events = db.store.audit_events(None).await.unwrap();
    // A row inserted behind the server's back, copying the last one's shape.
    let last = &events[2];
    db.tamper(&format!(
        "INSERT INTO audit_events (seq, at, actor, action, object, before_json, after_json, request_id, prev_hash, hash) \
         VALUES (4, '{}', 'mallory', 'user.create', 'user:mallory', NULL, NULL, NULL, '{}', '{}')",
        last.at, last.hash, last.hash
    ))
    .await;
    assert_eq!(
        db.store.verify_audit().await.unwrap(),
        Err(ChainBreak::Altered { seq: 4 })
    );
    db.tamper("DELETE FROM audit_events WHERE seq = 4").await;
    db.tamper("DELETE FROM audit_events WHERE seq = 3").await;
    assert_eq!(
        db.store.verify_audit().await.unwrap(),
        Err(ChainBreak::Truncated { from: 3, to: 3 })
    );
}

#[tokio::test]
async fn insertions_and_truncation_are_named_on_both_backends() {
    on_both!(forgery_and_truncation);
}

async fn concurrent_writers_keep_one_chain(db: &TestDb) {
    let mut tasks = Vec::new();
    for i in 0..24 {
        let store = db.store.clone();
        tasks.push(tokio::spawn(async move {
            store
                .record(NewAuditEvent {
                    actor: format!("writer{i}"),
                    action: "test.write".to_owned(),
                    object: "test:x".to_owned(),
                    before: None,
                    after: None,
                    request_id: None,
                })
                .await
                .unwrap()
        }));
    }
    for task in tasks {
        task.await.unwrap();
    }
    let head = db.store.verify_audit().await.unwrap().unwrap();
    assert_eq!(head.seq, 24);
    // Migrating again is a no-op.
    db.store.migrate().await.unwrap();
    assert_eq!(db.store.audit_head().await.unwrap(), head);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn concurrent_writers_keep_one_chain_on_both_backends() {
    on_both!(concurrent_writers_keep_one_chain);
}
