//! A rollout driven in process under a manual governance clock: before its change's scheduled
//! window opens it waits (nothing starts, it says until when); once the clock is moved past
//! the opening, the background advance starts its host. Times compared with store stamps (a
//! job's end, an inventory's receipt) stay on the system clock, so the fake clock being months
//! ahead of the system's changes nothing there.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use std::time::Duration;

use axum::http::{Method, StatusCode};
use common::{Db, START, Server, id, targets_change};
use jiff::{SignedDuration, Timestamp};
use serde_json::{Value, json};
use sluice_store::Actor;

async fn scheduled(server: &Server, start: Timestamp, end: Timestamp) -> String {
    let change = id(&server
        .create(
            "alice",
            targets_change(
                "openssl",
                "normal",
                "openssl",
                "3.0.15-1~deb12u1",
                "host=web2",
            ),
        )
        .await);
    for (who, action) in [
        ("alice", json!({"action": "submit"})),
        ("olga", json!({"action": "sign-off-plan"})),
        ("olga", json!({"action": "start-review"})),
        ("bob", json!({"action": "approve"})),
        ("carol", json!({"action": "approve"})),
        (
            "olga",
            json!({"action": "schedule", "window": {"start": start.to_string(), "end": end.to_string()}}),
        ),
    ] {
        server.act(&change, who, action).await.ok(StatusCode::OK);
    }
    change
}

/// Polls the rollout until `done` holds (the background task advances every few seconds).
async fn until(server: &Server, path: &str, done: impl Fn(&Value) -> bool) -> Value {
    for _ in 0..100 {
        let view = server.get(path).await;
        if done(&view) {
            return view;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    panic!("{path} never got there: {}", server.get(path).await);
}

async fn waits_for_its_window_then_starts(db: Db) {
    let server = Server::start(db).await;
    // An enrolled agent on web2 (the store's own path; the signed protocol is tested in
    // agents.rs).
    server
        .store
        .create_enrollment_token("token-hash", "2099-01-01T00:00:00Z", &Actor::system())
        .await
        .unwrap();
    server
        .store
        .enroll_agent(
            "token-hash",
            "web2",
            "public-key",
            &Default::default(),
            &Timestamp::now().to_string(),
            None,
        )
        .await
        .unwrap()
        .unwrap();
    let start: Timestamp = START.parse().unwrap();
    let opens = start + SignedDuration::from_hours(2);
    let change = scheduled(&server, opens, opens + SignedDuration::from_hours(2)).await;

    let rollout = server
        .call(
            Method::POST,
            "/api/v1/rollouts",
            "olga",
            Some(json!({"change": change})),
        )
        .await;
    let rollout = id(rollout.ok(StatusCode::CREATED));
    let path = format!("/api/v1/rollouts/{rollout}");

    // Before the window opens: waiting, until the opening, nothing started.
    let view = server.get(&path).await;
    assert_eq!(view["counts"]["pending"], 1, "{view}");
    assert!(view["waiting"].is_string(), "{view}");
    assert_eq!(
        view["wait_until"]
            .as_str()
            .map(|t| t.parse::<Timestamp>().unwrap()),
        Some(opens),
        "{view}"
    );
    // Time passes, not enough: still waiting.
    server.hand.advance(SignedDuration::from_mins(119));
    tokio::time::sleep(Duration::from_millis(3500)).await;
    let view = server.get(&path).await;
    assert_eq!(view["counts"]["pending"], 1, "{view}");

    // Past the opening: the background advance starts web2.
    server.hand.advance(SignedDuration::from_mins(2));
    let view = until(&server, &path, |v| v["counts"]["pending"] == 0).await;
    assert_eq!(view["waiting"], Value::Null, "{view}");
    server.finish().await;
}

#[tokio::test]
async fn a_rollout_waits_for_its_window_on_the_governance_clock_sqlite() {
    waits_for_its_window_then_starts(Db::Sqlite).await;
}
