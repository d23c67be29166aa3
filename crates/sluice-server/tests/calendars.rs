//! Calendars through the API, in process, on SQLite and on PostgreSQL, with a manual clock: a
//! host outside its maintenance window is refused with the next opening, a freeze blocks
//! scheduling until an exception is requested and approved by someone other than its requester,
//! another change on the same host overlaps, and bad rules are refused naming the field. Every decision is in the audit chain, and the chain stays intact.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use axum::http::{Method, StatusCode};
use common::{Db, Server, id, targets_change};
use serde_json::{Value, json};

/// A normal change on `scope`, taken through submission, plan sign-off, review and two
/// approvals.
async fn approved_change(server: &Server, title: &str, scope: &str) -> String {
    let created = server
        .create(
            "alice",
            targets_change(title, "normal", "openssl", "3.0.15-1~deb12u1", scope),
        )
        .await;
    let change = id(&created);
    for (who, action) in [
        ("alice", json!({"action": "submit"})),
        (
            "olga",
            json!({"action": "sign-off-plan", "comment": "fine"}),
        ),
        ("olga", json!({"action": "start-review"})),
    ] {
        server.act(&change, who, action).await.ok(StatusCode::OK);
    }
    // As many approvals as the change's risk needs.
    for who in ["bob", "carol"] {
        let voted = server
            .act(&change, who, json!({"action": "approve"}))
            .await
            .ok(StatusCode::OK)
            .clone();
        if voted["state"] == "approved" {
            break;
        }
    }
    assert_eq!(
        server.get(&format!("/api/v1/changes/{change}")).await["state"],
        "approved"
    );
    change
}

fn schedule(start: &str, end: &str) -> Value {
    json!({"action": "schedule", "window": {"start": start, "end": end}})
}

/// Bad rules are refused naming the field, and each route keeps to its roles.
async fn rules_are_checked(server: &Server) {
    let window =
        |definition: Value| json!({"name": "w", "scope": "host=db1", "definition": definition});
    let hourly = server
        .call(
            Method::POST,
            "/api/v1/windows",
            "olga",
            Some(window(
                json!({"rrule": "FREQ=HOURLY", "start": "22:00", "duration": "4h", "tz": "UTC"}),
            )),
        )
        .await;
    let detail = hourly.refused(StatusCode::UNPROCESSABLE_ENTITY);
    assert_eq!(hourly.json["field"], "definition.rrule", "{}", hourly.json);
    assert!(detail.contains("HOURLY"), "{detail}");
    let zone = server
        .call(
            Method::POST,
            "/api/v1/windows",
            "olga",
            Some(window(
                json!({"cron": "0 22 * * *", "duration": "4h", "tz": "Mars/Olympus"}),
            )),
        )
        .await;
    zone.refused(StatusCode::UNPROCESSABLE_ENTITY);
    assert_eq!(zone.json["field"], "definition.tz");
    let cutoff = server
        .call(
            Method::POST,
            "/api/v1/windows",
            "olga",
            Some(window(
                json!({"cron": "0 22 * * *", "duration": "1h", "cutoff": "2h", "tz": "UTC"}),
            )),
        )
        .await;
    cutoff.refused(StatusCode::UNPROCESSABLE_ENTITY);
    assert_eq!(cutoff.json["field"], "definition.cutoff");
    let scope = server
        .call(
            Method::POST,
            "/api/v1/windows",
            "olga",
            Some(json!({"name": "w", "scope": "criticality>=x", "definition": {"cron": "0 22 * * *", "duration": "1h", "tz": "UTC"}})),
        )
        .await;
    scope.refused(StatusCode::UNPROCESSABLE_ENTITY);
    assert_eq!(scope.json["field"], "scope");

    let inverted = server
        .call(
            Method::POST,
            "/api/v1/freezes",
            "bob",
            Some(json!({"name": "f", "definition": {"rule": {"kind": "range", "from": "2026-12-08T00:00:00Z", "until": "2026-12-01T00:00:00Z"}}})),
        )
        .await;
    inverted.refused(StatusCode::UNPROCESSABLE_ENTITY);
    assert_eq!(inverted.json["field"], "definition.rule.until");
    let freeze = json!({"name": "f", "definition": {"tz": "Europe/Berlin", "rule": {"kind": "last-business-days", "days": 3}}});
    let operator = server
        .call(
            Method::POST,
            "/api/v1/freezes",
            "olga",
            Some(freeze.clone()),
        )
        .await
        .refused(StatusCode::FORBIDDEN);
    assert!(operator.contains("roles"), "{operator}");
    server
        .call(Method::POST, "/api/v1/freezes", "bob", Some(freeze.clone()))
        .await
        .ok(StatusCode::CREATED);
    server
        .call(Method::POST, "/api/v1/freezes", "bob", Some(freeze))
        .await
        .refused(StatusCode::CONFLICT);
    let listed = server.get("/api/v1/freezes").await;
    assert_eq!(listed[0]["name"], "f");
    assert_eq!(
        listed[0]["definition"]["rule"]["kind"],
        "last-business-days"
    );
    server
        .call(Method::DELETE, "/api/v1/freezes/f", "bob", None)
        .await
        .ok(StatusCode::OK);
    assert_eq!(server.get("/api/v1/freezes").await, json!([]));
    assert_eq!(
        server.audit_of("freeze:f").await,
        vec!["bob freeze.create", "bob freeze.delete"]
    );
    server.assert_chain_intact().await;
}

/// Outside its window a host is refused with the next opening; a freeze blocks scheduling; a
/// requested exception lifts nothing, its requester cannot approve it, another approver does,
/// and then the change is scheduled with the exception recorded. A second change on the same
/// host at the same time overlaps.
async fn a_freeze_blocks_until_an_exception_is_approved(server: &Server) {
    // db1 may be changed nightly from 22:00 UTC for 4 hours; nothing starts after 01:30.
    let window = server
        .call(
            Method::POST,
            "/api/v1/windows",
            "olga",
            Some(
                json!({"name": "db-nights", "scope": "host=db1", "definition": {
                "cron": "0 22 * * *", "duration": "4h", "cutoff": "30m", "tz": "UTC"}}),
            ),
        )
        .await;
    assert_eq!(window.ok(StatusCode::CREATED)["name"], "db-nights");
    // Release week: every host, Thursday 5 to Sunday 8 November.
    server
        .call(
            Method::POST,
            "/api/v1/freezes",
            "bob",
            Some(
                json!({"name": "release", "definition": {"rule": {"kind": "range",
                "from": "2026-11-05T00:00:00Z", "until": "2026-11-08T00:00:00Z"}}}),
            ),
        )
        .await
        .ok(StatusCode::CREATED);

    let change = approved_change(server, "openssl on db1", "host=db1").await;
    let outside = server
        .act(
            &change,
            "olga",
            schedule("2026-11-03T12:00:00Z", "2026-11-03T14:00:00Z"),
        )
        .await
        .refused(StatusCode::CONFLICT);
    assert!(
        outside.contains("db1: outside its maintenance windows (next opens 2026-11-03T22:00:00Z)"),
        "{outside}"
    );
    let cut = server
        .act(
            &change,
            "olga",
            schedule("2026-11-03T01:45:00Z", "2026-11-03T01:55:00Z"),
        )
        .await
        .refused(StatusCode::CONFLICT);
    assert!(cut.contains("cutoff"), "{cut}");

    let frozen_window = ("2026-11-05T22:00:00Z", "2026-11-06T01:00:00Z");
    let frozen = server
        .act(&change, "olga", schedule(frozen_window.0, frozen_window.1))
        .await
        .refused(StatusCode::CONFLICT);
    assert!(frozen.contains("db1: freeze \"release\" holds"), "{frozen}");
    assert!(frozen.contains("approved freeze exception"), "{frozen}");
    let preview = server
        .get(&format!(
            "/api/v1/changes/{change}/conflicts?start={}&end={}",
            frozen_window.0, frozen_window.1
        ))
        .await;
    assert_eq!(preview["blocked"], true, "{preview}");

    // alice asks; a pending request lifts nothing; she cannot approve her own request.
    let request = json!({"scope": "host=db1", "from": "2026-11-05T21:00:00Z",
        "until": "2026-11-06T03:00:00Z", "justification": "an actively exploited flaw"});
    let requested = server
        .call(
            Method::POST,
            "/api/v1/freezes/release/exceptions",
            "alice",
            Some(request.clone()),
        )
        .await;
    let exception = requested.ok(StatusCode::CREATED)["id"]
        .as_str()
        .unwrap()
        .to_owned();
    assert_eq!(requested.json["state"], "requested");
    server
        .act(&change, "olga", schedule(frozen_window.0, frozen_window.1))
        .await
        .refused(StatusCode::CONFLICT);
    let own = server
        .call(
            Method::POST,
            &format!("/api/v1/freeze-exceptions/{exception}/approve"),
            "alice",
            None,
        )
        .await
        .refused(StatusCode::FORBIDDEN);
    assert!(own.contains("another approver"), "{own}");
    let olga = server
        .call(
            Method::POST,
            &format!("/api/v1/freeze-exceptions/{exception}/approve"),
            "olga",
            None,
        )
        .await
        .refused(StatusCode::FORBIDDEN);
    assert!(olga.contains("roles"), "{olga}");
    let approved = server
        .call(
            Method::POST,
            &format!("/api/v1/freeze-exceptions/{exception}/approve"),
            "bob",
            None,
        )
        .await;
    assert_eq!(approved.ok(StatusCode::OK)["state"], "approved");
    assert_eq!(approved.json["decided_by"], "bob");
    server
        .call(
            Method::POST,
            &format!("/api/v1/freeze-exceptions/{exception}/reject"),
            "carol",
            None,
        )
        .await
        .refused(StatusCode::CONFLICT);

    let preview = server
        .get(&format!(
            "/api/v1/changes/{change}/conflicts?start={}&end={}",
            frozen_window.0, frozen_window.1
        ))
        .await;
    assert_eq!(preview["blocked"], false, "{preview}");
    let scheduled = server
        .act(&change, "olga", schedule(frozen_window.0, frozen_window.1))
        .await;
    assert_eq!(scheduled.ok(StatusCode::OK)["state"], "scheduled");

    // A rejected request lifts nothing.
    let second = server
        .call(
            Method::POST,
            "/api/v1/freezes/release/exceptions",
            "alice",
            Some(request),
        )
        .await
        .ok(StatusCode::CREATED)["id"]
        .as_str()
        .unwrap()
        .to_owned();
    server
        .call(
            Method::POST,
            &format!("/api/v1/freeze-exceptions/{second}/reject"),
            "carol",
            None,
        )
        .await
        .ok(StatusCode::OK);
    let listed = server.get("/api/v1/freezes/release/exceptions").await;
    let states: Vec<&str> = listed
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["state"].as_str().unwrap())
        .collect();
    assert_eq!(states, vec!["approved", "rejected"]);

    // Another change on db1 in the same slot overlaps the first.
    let other = approved_change(server, "tzdata on db1", "host=db1").await;
    let overlap = server
        .act(
            &other,
            "olga",
            schedule("2026-11-05T23:00:00Z", "2026-11-06T01:00:00Z"),
        )
        .await
        .refused(StatusCode::CONFLICT);
    assert!(
        overlap.contains(&format!("db1: change {change} also runs")),
        "{overlap}"
    );
    // A host no window selects (web2) may be changed at any time outside freezes.
    let web = approved_change(server, "openssl on web2", "host=web2").await;
    server
        .act(
            &web,
            "olga",
            schedule("2026-11-03T12:00:00Z", "2026-11-03T14:00:00Z"),
        )
        .await
        .ok(StatusCode::OK);

    // Nothing starts inside a freeze: one made after web2's change was scheduled stops it.
    server
        .call(
            Method::POST,
            "/api/v1/freezes",
            "admin",
            Some(json!({"name": "web-stop", "scope": "host=web2", "definition": {"rule": {
                "kind": "range", "from": "2026-11-03T11:00:00Z", "until": "2026-11-03T15:00:00Z"}}})),
        )
        .await
        .ok(StatusCode::CREATED);
    server.advance_to("2026-11-03T12:30:00Z");
    let stopped = server
        .act(&web, "olga", json!({"action": "start-implementation"}))
        .await
        .refused(StatusCode::CONFLICT);
    assert!(
        stopped.contains("web2: freeze \"web-stop\" holds"),
        "{stopped}"
    );
    // db1's change starts inside the release freeze: its approved exception lifts it.
    server.advance_to("2026-11-05T22:30:00Z");
    let started = server
        .act(&change, "olga", json!({"action": "start-implementation"}))
        .await;
    assert_eq!(started.ok(StatusCode::OK)["state"], "implementing");

    // Every decision is in the chain, with who made it.
    assert_eq!(
        server.audit_of("window:db-nights").await,
        vec!["olga window.create"]
    );
    assert_eq!(
        server.audit_of("freeze:release").await,
        vec!["bob freeze.create"]
    );
    assert_eq!(
        server
            .audit_of(&format!("freeze-exception:{exception}"))
            .await,
        vec![
            "alice freeze-exception.request",
            "bob freeze-exception.approve"
        ]
    );
    assert_eq!(
        server.audit_of(&format!("freeze-exception:{second}")).await,
        vec![
            "alice freeze-exception.request",
            "carol freeze-exception.reject"
        ]
    );
    let schedule_event = server
        .store
        .audit_events(None)
        .await
        .unwrap()
        .into_iter()
        .find(|e| e.object == format!("change:{change}") && e.action == "change.schedule")
        .unwrap();
    assert!(
        schedule_event
            .after
            .unwrap()
            .to_string()
            .contains(&exception),
        "the schedule records the exception it relies on"
    );

    // Deleting a window takes an admin.
    server
        .call(Method::DELETE, "/api/v1/windows/db-nights", "olga", None)
        .await
        .refused(StatusCode::FORBIDDEN);
    server
        .call(Method::DELETE, "/api/v1/windows/db-nights", "admin", None)
        .await
        .ok(StatusCode::OK);
    assert_eq!(server.get("/api/v1/windows").await, json!([]));
    server.assert_chain_intact().await;
}

/// Two changes on the same host scheduled for the same hours at the same moment: the calendar
/// check and the write are not interleaved, so exactly one is scheduled and the other is told
/// about it.
async fn simultaneous_schedules_do_not_both_pass(server: &Server) {
    let first = approved_change(server, "openssl on web2 (a)", "host=web2").await;
    let second = approved_change(server, "openssl on web2 (b)", "host=web2").await;
    let window = schedule("2026-11-03T12:00:00Z", "2026-11-03T14:00:00Z");
    let (a, b) = tokio::join!(
        server.act(&first, "olga", window.clone()),
        server.act(&second, "olga", window.clone())
    );
    let statuses = [a.status, b.status];
    assert!(
        statuses.contains(&StatusCode::OK) && statuses.contains(&StatusCode::CONFLICT),
        "{statuses:?}: {} / {}",
        a.json,
        b.json
    );
    let refused = if a.status == StatusCode::CONFLICT {
        &a
    } else {
        &b
    };
    assert!(
        refused.json.to_string().contains("web2"),
        "{}",
        refused.json
    );
}

macro_rules! on_both {
    ($name:ident, $scenario:ident) => {
        #[tokio::test]
        async fn $name() {
            for db in [Db::Sqlite, Db::Postgres] {
                let server = Server::start(db).await;
                $scenario(&server).await;
                server.finish().await;
            }
        }
    };
}

on_both!(rules, rules_are_checked);
on_both!(
    freeze_and_exception,
    a_freeze_blocks_until_an_exception_is_approved
);
on_both!(
    simultaneous_schedules,
    simultaneous_schedules_do_not_both_pass
);
