//! The rollout API's refusals, in process, on SQLite and PostgreSQL: what cannot be planned is
//! a 422 naming why, a change that is not scheduled is a 409, nothing is written by a refused
//! start, unknown rollouts are 404, and a malformed spec or action names its field. (Rollouts
//! that run are tested end to end with real agents in `crates/sluice/tests/e2e_rollout.rs`.)

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use axum::http::{Method, StatusCode};
use common::{Db, Server, id, targets_change};
use serde_json::json;

async fn approved(server: &Server, scope: &str) -> String {
    let change = id(&server
        .create(
            "alice",
            targets_change("openssl", "normal", "openssl", "3.0.15-1~deb12u1", scope),
        )
        .await);
    for (who, action) in [
        ("alice", json!({"action": "submit"})),
        ("olga", json!({"action": "sign-off-plan"})),
        ("olga", json!({"action": "start-review"})),
        ("bob", json!({"action": "approve"})),
        ("carol", json!({"action": "approve"})),
    ] {
        let answer = server.act(&change, who, action).await;
        if answer.status != StatusCode::OK {
            break;
        }
    }
    assert_eq!(
        server.get(&format!("/api/v1/changes/{change}")).await["state"],
        "approved"
    );
    change
}

/// POSTs `body` to `path` as `who` and returns the refusal's detail, after checking its status.
async fn post_refused(
    server: &Server,
    who: &str,
    path: &str,
    body: serde_json::Value,
    status: StatusCode,
) -> String {
    server
        .call(Method::POST, path, who, Some(body))
        .await
        .refused(status)
}

async fn refusals(server: &Server) {
    let change = approved(server, "host=db1").await;
    // Approved but not scheduled: 409, and the change stays as it was.
    let early = post_refused(
        server,
        "olga",
        "/api/v1/rollouts",
        json!({"change": change}),
        StatusCode::CONFLICT,
    )
    .await;
    assert!(
        early.contains("approved") && early.contains("scheduled"),
        "{early}"
    );

    let start = server.now();
    let window = json!({"action": "schedule", "window": {
        "start": start.to_string(), "end": (start + jiff::SignedDuration::from_hours(2)).to_string()}});
    server.act(&change, "olga", window).await.ok(StatusCode::OK);
    // db1 has no agent: nothing can carry the jobs. 422 naming the host; nothing written.
    let orphan = post_refused(
        server,
        "olga",
        "/api/v1/rollouts",
        json!({"change": change}),
        StatusCode::UNPROCESSABLE_ENTITY,
    )
    .await;
    assert!(
        orphan.contains("db1") && orphan.contains("agent"),
        "{orphan}"
    );
    assert_eq!(server.get("/api/v1/rollouts").await, json!([]));
    assert_eq!(
        server.get(&format!("/api/v1/changes/{change}")).await["state"],
        "scheduled",
        "a refused start does not start the change"
    );

    // A policy field that does not exist, a size of zero: named.
    let typo = post_refused(
        server,
        "olga",
        "/api/v1/rollouts",
        json!({"change": change, "policy": {"batch": {"count": 1}, "max_concurency": 3}}),
        StatusCode::UNPROCESSABLE_ENTITY,
    )
    .await;
    assert!(typo.contains("max_concurency"), "{typo}");
    let unknown = post_refused(
        server,
        "olga",
        "/api/v1/rollouts",
        json!({"change": "CHG-99"}),
        StatusCode::NOT_FOUND,
    )
    .await;
    assert!(unknown.contains("CHG-99"), "{unknown}");

    // Unknown rollouts; an action that is not one.
    server
        .call(Method::GET, "/api/v1/rollouts/RO-7", "victor", None)
        .await
        .refused(StatusCode::NOT_FOUND);
    post_refused(
        server,
        "olga",
        "/api/v1/rollouts/RO-7/actions",
        json!({"action": "pause", "reason": "x"}),
        StatusCode::NOT_FOUND,
    )
    .await;
    let bad = post_refused(
        server,
        "olga",
        "/api/v1/rollouts/RO-7/actions",
        json!({"action": "skip-ahead"}),
        StatusCode::UNPROCESSABLE_ENTITY,
    )
    .await;
    assert!(bad.contains("skip-ahead"), "{bad}");
    // A viewer reads, never starts.
    post_refused(
        server,
        "victor",
        "/api/v1/rollouts",
        json!({"change": change}),
        StatusCode::FORBIDDEN,
    )
    .await;
    // An approved emergency change starts without a schedule: past the state check, it is
    // refused only for its host's missing agent.
    server.with_findings().await;
    let emergency = id(&server
        .create(
            "alice",
            json!({"title": "KEV fixes on web1", "type": "emergency",
                   "from_findings": {"host": "web1", "kev": true},
                   "justification": "actively exploited", "plan": common::plan()}),
        )
        .await);
    for (who, action) in [
        ("alice", json!({"action": "submit"})),
        ("olga", json!({"action": "start-review"})),
        ("erin", json!({"action": "approve"})),
    ] {
        server.act(&emergency, who, action).await.ok(StatusCode::OK);
    }
    let no_agent = post_refused(
        server,
        "olga",
        "/api/v1/rollouts",
        json!({"change": emergency}),
        StatusCode::UNPROCESSABLE_ENTITY,
    )
    .await;
    assert!(
        no_agent.contains("web1") && no_agent.contains("agent"),
        "{no_agent}"
    );

    // Alertmanager payloads of another version are refused naming it.
    let old = post_refused(
        server,
        "olga",
        "/api/v1/alerts/alertmanager",
        json!({"version": "3", "status": "firing", "alerts": []}),
        StatusCode::UNPROCESSABLE_ENTITY,
    )
    .await;
    assert!(old.contains("version"), "{old}");
    server.assert_chain_intact().await;
}

#[tokio::test]
async fn rollout_refusals_on_both_backends() {
    for db in [Db::Sqlite, Db::Postgres] {
        let server = Server::start(db).await;
        refusals(&server).await;
        server.finish().await;
    }
}
