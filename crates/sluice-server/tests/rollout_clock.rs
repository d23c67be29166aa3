//! A rollout driven in process under a manual governance clock: after its dev ring it soaks
//! (nothing starts in prod, it says until when); once the clock is moved past the soak, the
//! background advance promotes it and starts prod. Times compared with store stamps (a
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
                "criticality>=1",
            ),
        )
        .await);
    for (who, action) in [
        ("alice", json!({"action": "submit"})),
        ("olga", json!({"action": "sign-off-plan"})),
        ("olga", json!({"action": "start-review"})),
        ("bob", json!({"action": "approve"})),
        ("carol", json!({"action": "approve"})),
    ] {
        // The second approval is only needed where the CAB asks for two.
        if server.act(&change, who, action).await.status != StatusCode::OK {
            break;
        }
    }
    let window = json!({"start": start.to_string(), "end": end.to_string()});
    server
        .act(
            &change,
            "olga",
            json!({"action": "schedule", "window": window}),
        )
        .await
        .ok(StatusCode::OK);
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

async fn soaks_then_promotes(db: Db) {
    let server = Server::start(db).await;
    // Enrolled agents on every host (the store's own path; the signed protocol is tested in
    // agents.rs). No inventory is on record, so no host has a bundle package to change: each
    // one started succeeds at once, and only the engine's clock decides when.
    for (n, host) in ["db1", "web2", "tz1"].iter().enumerate() {
        let token = format!("token-hash-{n}");
        server
            .store
            .create_enrollment_token(&token, "2099-01-01T00:00:00Z", &Actor::system())
            .await
            .unwrap();
        server
            .store
            .enroll_agent(
                &token,
                host,
                &format!("public-key-{n}"),
                &Default::default(),
                &Timestamp::now().to_string(),
                None,
            )
            .await
            .unwrap()
            .unwrap();
    }
    let start: Timestamp = START.parse().unwrap();
    let change = scheduled(&server, start, start + SignedDuration::from_hours(4)).await;
    let policy = json!({"batch": {"percent": 100}, "canary": null, "max_concurrency": 10,
        "breaker": {"per_batch": {"count": 1}, "per_ring": {"percent": 10}},
        "on_trip": "rollback-batch", "soak": "1h"});
    let rollout = server
        .call(
            Method::POST,
            "/api/v1/rollouts",
            "olga",
            Some(json!({"change": change, "policy": policy})),
        )
        .await;
    let rollout = id(rollout.ok(StatusCode::CREATED));
    let path = format!("/api/v1/rollouts/{rollout}");

    // dev (tz1) is done; prod soaks for an hour on the governance clock.
    let view = until(&server, &path, |v| v["counts"]["succeeded"] == 1).await;
    assert_eq!(view["counts"]["pending"], 2, "{view}");
    assert!(view["waiting"].is_string(), "{view}");
    assert_eq!(
        view["wait_until"]
            .as_str()
            .map(|t| t.parse::<Timestamp>().unwrap()),
        Some(start + SignedDuration::from_hours(1)),
        "{view}"
    );
    // Not long enough: still soaking, through several background advances.
    server.hand.advance(SignedDuration::from_mins(59));
    tokio::time::sleep(Duration::from_millis(3500)).await;
    let view = server.get(&path).await;
    assert_eq!(view["counts"]["pending"], 2, "{view}");

    // Past the soak: the background advance promotes to prod and starts its hosts.
    server.hand.advance(SignedDuration::from_mins(2));
    let view = until(&server, &path, |v| v["counts"]["pending"] == 0).await;
    assert_eq!(view["counts"]["succeeded"], 3, "{view}");
    server.finish().await;
}

#[tokio::test]
async fn a_rollout_soaks_on_the_governance_clock_sqlite() {
    soaks_then_promotes(Db::Sqlite).await;
}
