//! Change governance through the API, in process, on SQLite and on PostgreSQL, with a clock the
//! tests move: an emergency change whose retrospective review goes overdue, a quorum not met
//! then met, an escalation after the timeout, refused transitions with their reasons, a standard
//! change approved by its template, deferrals whose expiry makes a finding due again, policy
//! versions, and the ServiceNow and Jira exports. Every decision is checked in the audit chain,
//! and the chain stays intact.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use axum::http::{Method, StatusCode};
use common::{Db, START, Server, id, plan, targets_change};
use jiff::{SignedDuration, Timestamp};
use serde_json::{Value, json};

/// An emergency change from KEV findings: the e-CAB approves at once, it is implemented without
/// a schedule, and its retrospective review goes overdue after 48 hours until the full CAB
/// records it.
async fn emergency_change_retrospective_goes_overdue(server: &Server) {
    server.with_findings().await;
    let created = server
        .create(
            "alice",
            json!({
                "title": "KEV fixes on web1",
                "type": "emergency",
                "from_findings": {"host": "web1", "kev": true},
                "justification": "actively exploited",
                "plan": plan(),
            }),
        )
        .await;
    let change = id(&created);
    assert_eq!(created["state"], "draft");
    assert_eq!(created["scope"], "host=web1", "the findings' hosts");
    assert_eq!(created["origin"]["from"], "findings");
    let packages: Vec<&str> = created["bundle"]
        .as_array()
        .unwrap()
        .iter()
        .map(|i| i["package"].as_str().unwrap())
        .collect();
    assert!(
        packages.contains(&"apache2") && packages.contains(&"linux"),
        "{packages:?}"
    );
    let linux = created["bundle"]
        .as_array()
        .unwrap()
        .iter()
        .find(|i| i["package"] == "linux")
        .unwrap();
    assert_eq!(
        linux["target_version"], "5.10.162-1",
        "the lowest version fixing every KEV advisory of the kernel"
    );
    assert_eq!(linux["source"], "lowest-fixing");
    assert_eq!(linux["ecosystem"], "Debian:11");
    let risk = &created["assessment"]["risk"];
    assert!(risk["score"].as_u64().is_some(), "{risk}");
    let reasons: Vec<&str> = risk["reasons"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r.as_str().unwrap())
        .collect();
    assert!(
        reasons.iter().any(|r| r.contains("kernel")),
        "risk explained: {reasons:?}"
    );
    assert!(
        created["update_types"]
            .as_array()
            .unwrap()
            .contains(&json!("kernel"))
    );
    assert_eq!(created["retrospective"]["status"], "not-required");

    server
        .act(&change, "alice", json!({"action": "submit"}))
        .await
        .ok(StatusCode::OK);
    let in_review = server
        .act(&change, "olga", json!({"action": "start-review"}))
        .await;
    let in_review = in_review.ok(StatusCode::OK);
    assert_eq!(in_review["state"], "in-review");
    assert_eq!(in_review["approval_rule"]["groups"], json!(["ecab"]));
    // The requester never votes; a CAB member outside the e-CAB cannot either.
    let own = server
        .act(&change, "alice", json!({"action": "approve"}))
        .await
        .refused(StatusCode::FORBIDDEN);
    assert!(own.contains("requester never votes"), "{own}");
    let outsider = server
        .act(&change, "bob", json!({"action": "approve"}))
        .await
        .refused(StatusCode::FORBIDDEN);
    assert!(outsider.contains("not in an approver group"), "{outsider}");
    server.advance(1);
    let approved = server
        .act(
            &change,
            "erin",
            json!({"action": "approve", "comment": "go"}),
        )
        .await;
    let approved = approved.ok(StatusCode::OK);
    assert_eq!(approved["state"], "approved");
    assert_eq!(approved["retrospective"]["status"], "due");
    let due: Timestamp = approved["retrospective"]["by"]
        .as_str()
        .unwrap()
        .parse()
        .unwrap();
    assert_eq!(
        due,
        server
            .now()
            .checked_add(SignedDuration::from_hours(48))
            .unwrap()
    );
    // An emergency change starts without a schedule.
    server
        .act(&change, "olga", json!({"action": "start-implementation"}))
        .await
        .ok(StatusCode::OK);
    server.advance(2);
    server
        .act(&change, "olga", json!({"action": "complete"}))
        .await
        .ok(StatusCode::OK);
    let overdue_list = "/api/v1/changes?overdue_review=true";
    assert_eq!(server.get(overdue_list).await["total"], 0);

    server.advance(47);
    let shown = server.get(&format!("/api/v1/changes/{change}")).await;
    assert_eq!(
        shown["retrospective"]["status"], "overdue",
        "{}",
        shown["retrospective"]
    );
    assert_eq!(shown["retrospective"]["overdue_by"], "1h");
    let listed = server.get(overdue_list).await;
    assert_eq!(listed["total"], 1);
    assert_eq!(listed["items"][0]["id"], change.as_str());
    assert_eq!(listed["items"][0]["retrospective"]["status"], "overdue");

    // The retrospective is the full CAB's: not the e-CAB member, never the requester.
    let review =
        json!({"action": "review", "outcome": "successful", "notes": "fixed, no incident"});
    let ecab = server
        .act(&change, "erin", review.clone())
        .await
        .refused(StatusCode::FORBIDDEN);
    assert!(ecab.contains("full CAB"), "{ecab}");
    let reviewed = server.act(&change, "bob", review).await;
    let reviewed = reviewed.ok(StatusCode::OK);
    assert_eq!(reviewed["state"], "reviewed");
    assert_eq!(reviewed["retrospective"]["status"], "done");
    assert_eq!(reviewed["retrospective"]["late"], true);
    assert_eq!(server.get(overdue_list).await["total"], 0);
    server
        .act(&change, "olga", json!({"action": "close"}))
        .await
        .ok(StatusCode::OK);

    assert_eq!(
        server.audit_of(&format!("change:{change}")).await,
        [
            "alice change.create",
            "alice change.submit",
            "olga change.start-review",
            "erin change.approve",
            "olga change.start-implementation",
            "olga change.complete",
            "bob change.review",
            "olga change.close",
        ]
    );
    let events = server.store.audit_events(None).await.unwrap();
    let vote = events
        .iter()
        .find(|e| e.action == "change.approve")
        .unwrap();
    let after: Value = serde_json::from_str(vote.after.as_deref().unwrap()).unwrap();
    assert_eq!(after["transition"]["to"], "approved");
    assert_eq!(after["transition"]["quorum"]["approved"], true);
    assert!(
        after["transition"]["effects"]
            .to_string()
            .contains("set-retrospective-due"),
        "{after}"
    );
    server.assert_chain_intact().await;
}

/// A normal change of medium risk on a critical host: peer review first, then two CAB approvals;
/// the requester's own vote and a second vote are refused and leave it in review.
async fn quorum_not_met_then_met(server: &Server) {
    let created = server
        .create(
            "alice",
            targets_change(
                "openssl on db1",
                "normal",
                "openssl",
                "3.0.15-1~deb12u1",
                "host=db1",
            ),
        )
        .await;
    let change = id(&created);
    assert_eq!(
        created["assessment"]["risk"]["level"], "medium",
        "{}",
        created["assessment"]
    );
    assert_eq!(created["assessment"]["peer_review"]["required"], true);
    server
        .act(&change, "alice", json!({"action": "submit"}))
        .await
        .ok(StatusCode::OK);
    let no_peer = server
        .act(&change, "olga", json!({"action": "start-review"}))
        .await
        .refused(StatusCode::CONFLICT);
    assert!(no_peer.contains("peer's sign-off"), "{no_peer}");
    let self_sign = server
        .act(&change, "alice", json!({"action": "sign-off-plan"}))
        .await
        .refused(StatusCode::FORBIDDEN);
    assert!(self_sign.contains("cannot sign it off"), "{self_sign}");
    server
        .act(
            &change,
            "olga",
            json!({"action": "sign-off-plan", "comment": "plan reads well"}),
        )
        .await
        .ok(StatusCode::OK);
    server
        .act(&change, "olga", json!({"action": "start-review"}))
        .await
        .ok(StatusCode::OK);

    let own = server
        .act(&change, "alice", json!({"action": "approve"}))
        .await
        .refused(StatusCode::FORBIDDEN);
    assert!(own.contains("alice requested change"), "{own}");
    let first = server
        .act(&change, "bob", json!({"action": "approve"}))
        .await;
    let first = first.ok(StatusCode::OK);
    assert_eq!(first["state"], "in-review");
    assert_eq!(first["quorum"]["approvals"], 1);
    assert_eq!(first["quorum"]["quorum"], 2);
    assert_eq!(first["quorum"]["approved"], false);
    let twice = server
        .act(&change, "bob", json!({"action": "approve"}))
        .await
        .refused(StatusCode::CONFLICT);
    assert!(twice.contains("one person, one vote"), "{twice}");
    let shown = server.get(&format!("/api/v1/changes/{change}")).await;
    assert_eq!(shown["state"], "in-review", "quorum not met");
    assert_eq!(shown["votes"].as_array().unwrap().len(), 1);
    let version = shown["version"].as_i64().unwrap();

    // A vote written against a version someone else has moved past is refused.
    let stale = server
        .send(
            Method::POST,
            &format!("/api/v1/changes/{change}/actions"),
            Some(&server.tokens["carol"]),
            &[("if-match", &format!("\"{}\"", version - 1))],
            Some(json!({"action": "approve"})),
        )
        .await
        .refused(StatusCode::CONFLICT);
    assert!(stale.contains(&format!("version {version}")), "{stale}");
    let answer = server
        .send(
            Method::POST,
            &format!("/api/v1/changes/{change}/actions"),
            Some(&server.tokens["carol"]),
            &[("if-match", &format!("\"{version}\""))],
            Some(json!({"action": "approve"})),
        )
        .await;
    assert_eq!(
        answer.etag.as_deref(),
        Some(format!("\"{}\"", version + 1).as_str())
    );
    let approved = answer.ok(StatusCode::OK);
    assert_eq!(approved["state"], "approved");
    assert_eq!(approved["quorum"]["approved"], true);
    assert_eq!(approved["policy_version"], 1);

    // Not allowed from here: each refusal says why and what can be done.
    let again = server
        .act(&change, "carol", json!({"action": "approve"}))
        .await
        .refused(StatusCode::CONFLICT);
    assert!(
        again.contains("it is approved")
            && again.contains("from approved it can: schedule, cancel"),
        "{again}"
    );
    let early = server
        .act(&change, "olga", json!({"action": "start-implementation"}))
        .await
        .refused(StatusCode::CONFLICT);
    assert!(
        early.contains("does not apply to normal changes"),
        "{early}"
    );
    let viewer = server
        .act(
            &change,
            "bob",
            json!({"action": "schedule", "window": {"start": START, "end": START}}),
        )
        .await
        .refused(StatusCode::FORBIDDEN);
    assert!(
        viewer.contains("schedule needs the role operator"),
        "{viewer}"
    );
    let backwards = server
        .act(
            &change,
            "olga",
            json!({"action": "schedule", "window": {"start": "2026-11-03T10:00:00Z", "end": "2026-11-03T08:00:00Z"}}),
        )
        .await
        .refused(StatusCode::UNPROCESSABLE_ENTITY);
    assert!(backwards.contains("before it starts"), "{backwards}");
    let scheduled = server
        .act(
            &change,
            "olga",
            json!({"action": "schedule", "window": {"start": "2026-11-02T12:00:00Z", "end": "2026-11-02T14:00:00Z"}}),
        )
        .await;
    assert_eq!(scheduled.ok(StatusCode::OK)["state"], "scheduled");
    let not_yet = server
        .act(&change, "olga", json!({"action": "start-implementation"}))
        .await
        .refused(StatusCode::CONFLICT);
    assert!(not_yet.contains("window opens at"), "{not_yet}");
    server.advance(4);
    server
        .act(&change, "olga", json!({"action": "start-implementation"}))
        .await
        .ok(StatusCode::OK);
    let failed = server
        .act(&change, "olga", json!({"action": "fail", "reason": " "}))
        .await
        .refused(StatusCode::UNPROCESSABLE_ENTITY);
    assert!(failed.contains("required"), "{failed}");

    assert_eq!(
        server.audit_of(&format!("change:{change}")).await,
        [
            "alice change.create",
            "alice change.submit",
            "olga change.sign-off-plan",
            "olga change.start-review",
            "bob change.approve",
            "carol change.approve",
            "olga change.schedule",
            "olga change.start-implementation",
        ],
        "refused actions write nothing"
    );
    server.assert_chain_intact().await;
}

/// No decision within the rule's time: the next group is asked, the escalation recorded and
/// audited once; its members' votes count, but the CAB's own minimum is never waived.
async fn escalation_after_the_timeout(server: &Server) {
    let created = server
        .create(
            "alice",
            targets_change(
                "openssl on web2",
                "normal",
                "openssl",
                "3.0.15-1~deb12u1",
                "host=web2",
            ),
        )
        .await;
    let change = id(&created);
    assert_eq!(created["assessment"]["risk"]["level"], "low");
    server
        .act(&change, "alice", json!({"action": "submit"}))
        .await
        .ok(StatusCode::OK);
    server
        .act(&change, "olga", json!({"action": "start-review"}))
        .await
        .ok(StatusCode::OK);
    server.advance(1);
    let early = server
        .act(&change, "chair", json!({"action": "approve"}))
        .await
        .refused(StatusCode::FORBIDDEN);
    assert!(early.contains("not in an approver group"), "{early}");
    assert!(
        sluice_server::governance::escalate_due(&server.store, server.now())
            .await
            .unwrap()
            .is_empty()
    );

    server.advance(48);
    let recorded = sluice_server::governance::escalate_due(&server.store, server.now())
        .await
        .unwrap();
    assert_eq!(recorded.len(), 1);
    assert_eq!(recorded[0].change, change);
    assert_eq!(recorded[0].escalation.group, "cab-chairs");
    assert!(
        sluice_server::governance::escalate_due(&server.store, server.now())
            .await
            .unwrap()
            .is_empty(),
        "recorded once"
    );
    let shown = server.get(&format!("/api/v1/changes/{change}")).await;
    assert_eq!(shown["escalations"][0]["group"], "cab-chairs");
    assert_eq!(shown["escalations"][0]["step"], 1);
    assert_eq!(shown["eligible_groups"], json!(["cab", "cab-chairs"]));

    let chair = server
        .act(&change, "chair", json!({"action": "approve"}))
        .await;
    let chair = chair.ok(StatusCode::OK);
    assert_eq!(
        chair["state"], "in-review",
        "the CAB's own seat is still empty"
    );
    assert_eq!(chair["quorum"]["missing"]["cab"], 1);
    let approved = server
        .act(&change, "bob", json!({"action": "approve"}))
        .await;
    assert_eq!(approved.ok(StatusCode::OK)["state"], "approved");

    assert_eq!(
        server.audit_of(&format!("change:{change}")).await,
        [
            "alice change.create",
            "alice change.submit",
            "olga change.start-review",
            "system change.escalate",
            "chair change.approve",
            "bob change.approve",
        ]
    );
    let events = server.store.audit_events(None).await.unwrap();
    let escalation = events
        .iter()
        .find(|e| e.action == "change.escalate")
        .unwrap();
    assert!(escalation.after.as_deref().unwrap().contains("cab-chairs"));
    server.assert_chain_intact().await;
}

/// A standard change that fits its template is approved at submission, without the CAB; one that
/// does not fit is refused with the misfit named.
async fn standard_changes_follow_their_template(server: &Server) {
    let mut body = targets_change(
        "tzdata refresh",
        "standard",
        "tzdata",
        "2026a-0+deb12u1",
        "host=tz1",
    );
    body["template"] = json!("tzdata");
    body["update_types"] = json!(["bugfix"]);
    let created = server.create("alice", body).await;
    let change = id(&created);
    let submitted = server
        .act(&change, "alice", json!({"action": "submit"}))
        .await;
    let submitted = submitted.ok(StatusCode::OK);
    assert_eq!(submitted["state"], "approved");
    assert!(submitted["votes"].as_array().unwrap().is_empty(), "no CAB");
    assert_eq!(submitted["policy_version"], 1);
    let events = server.store.audit_events(None).await.unwrap();
    let submit = events
        .iter()
        .rfind(|e| e.action == "change.submit")
        .unwrap();
    assert!(submit.after.as_deref().unwrap().contains("pre-approved"));

    let mut misfit = targets_change(
        "openssl as standard",
        "standard",
        "openssl",
        "3.0.15-1~deb12u1",
        "host=tz1",
    );
    misfit["template"] = json!("tzdata");
    misfit["update_types"] = json!(["bugfix"]);
    let misfit = id(&server.create("alice", misfit).await);
    let refused = server
        .act(&misfit, "alice", json!({"action": "submit"}))
        .await
        .refused(StatusCode::CONFLICT);
    assert!(
        refused.contains("not covered by template tzdata"),
        "{refused}"
    );
    // The draft is edited to fit (assessed again), then the template approves it.
    let mut fixed = targets_change(
        "tzdata as standard",
        "standard",
        "tzdata",
        "2026a-0+deb12u1",
        "host=tz1",
    );
    fixed["template"] = json!("tzdata");
    fixed["update_types"] = json!(["bugfix"]);
    let not_yours = server
        .call(
            Method::PUT,
            &format!("/api/v1/changes/{misfit}"),
            "olga",
            Some(fixed.clone()),
        )
        .await
        .refused(StatusCode::FORBIDDEN);
    assert!(not_yours.contains("only the requester"), "{not_yours}");
    let edited = server
        .call(
            Method::PUT,
            &format!("/api/v1/changes/{misfit}"),
            "alice",
            Some(fixed),
        )
        .await;
    let edited = edited.ok(StatusCode::OK);
    assert_eq!(edited["bundle"][0]["package"], "tzdata");
    assert!(edited["assessment"]["risk"]["level"].is_string());
    let submitted = server
        .act(&misfit, "alice", json!({"action": "submit"}))
        .await;
    assert_eq!(submitted.ok(StatusCode::OK)["state"], "approved");
    let frozen = server
        .call(
            Method::PUT,
            &format!("/api/v1/changes/{misfit}"),
            "alice",
            Some(targets_change(
                "x",
                "standard",
                "tzdata",
                "2026a-0+deb12u1",
                "host=tz1",
            )),
        )
        .await
        .refused(StatusCode::CONFLICT);
    assert!(frozen.contains("can no longer be edited"), "{frozen}");
    assert_eq!(
        server.audit_of(&format!("change:{misfit}")).await,
        [
            "alice change.create",
            "alice change.edit",
            "alice change.submit"
        ]
    );

    // Bad input is named.
    let bad = server
        .call(
            Method::POST,
            "/api/v1/changes",
            "alice",
            Some(targets_change(
                "x",
                "normal",
                "openssl",
                "not a version",
                "host=tz1",
            )),
        )
        .await;
    assert_eq!(bad.status, StatusCode::UNPROCESSABLE_ENTITY, "{}", bad.json);
    assert_eq!(bad.json["field"], "bundle[0].target_version");
    let neither = server
        .call(
            Method::POST,
            "/api/v1/changes",
            "alice",
            Some(json!({"title": "x", "type": "normal"})),
        )
        .await
        .refused(StatusCode::UNPROCESSABLE_ENTITY);
    assert!(neither.contains("from_findings"), "{neither}");
    let viewer = server
        .call(
            Method::POST,
            "/api/v1/changes",
            "victor",
            Some(targets_change(
                "x",
                "normal",
                "openssl",
                "3.0.15-1~deb12u1",
                "host=tz1",
            )),
        )
        .await;
    assert_eq!(viewer.status, StatusCode::FORBIDDEN);
    let listed = server
        .get("/api/v1/changes?type=standard&state=approved")
        .await;
    assert_eq!(listed["total"], 2);
    assert_eq!(listed["items"][1]["id"], change.as_str(), "newest first");
    let bad_state = server
        .call(Method::GET, "/api/v1/changes?state=done", "victor", None)
        .await;
    assert_eq!(bad_state.status, StatusCode::UNPROCESSABLE_ENTITY);
    assert_eq!(bad_state.json["field"], "state");
    server.assert_chain_intact().await;
}

/// A deferral covers its finding until it expires: the listing shows it deferred, then due again.
/// Risk acceptance needs the security role; nobody approves their own request.
async fn deferral_expiry_makes_a_finding_due_again(server: &Server) {
    server.with_findings().await;
    let page = server.get("/api/v1/findings?host=web1&limit=1").await;
    let finding = &page["items"][0];
    assert_eq!(finding["standing"], "open");
    let finding_id = finding["id"].as_i64().unwrap();
    let total = server.get("/api/v1/findings?host=web1").await["total"]
        .as_i64()
        .unwrap();
    let until = server
        .now()
        .checked_add(SignedDuration::from_hours(24 * 30))
        .unwrap();
    let request = |kind: Value| {
        json!({
            "target": {"type": "finding", "id": finding_id.to_string()},
            "kind": kind,
            "justification": "the vendor certifies the fix next month",
            "expires_at": until,
        })
    };
    let created = server
        .call(
            Method::POST,
            "/api/v1/deferrals",
            "olga",
            Some(request(json!("deferral"))),
        )
        .await;
    let deferral = created.ok(StatusCode::CREATED)["id"]
        .as_str()
        .unwrap()
        .to_owned();
    assert_eq!(created.json["status"]["status"], "pending");
    let listed = server.get("/api/v1/findings?host=web1&limit=1000").await;
    let row = listed["items"]
        .as_array()
        .unwrap()
        .iter()
        .find(|f| f["id"] == finding_id)
        .unwrap();
    assert_eq!(row["standing"], "pending");

    let self_approval = server
        .call(
            Method::POST,
            &format!("/api/v1/deferrals/{deferral}/approve"),
            "olga",
            Some(json!({})),
        )
        .await;
    assert_eq!(
        self_approval.status,
        StatusCode::FORBIDDEN,
        "operators do not approve"
    );
    let approved = server
        .call(
            Method::POST,
            &format!("/api/v1/deferrals/{deferral}/approve"),
            "bob",
            Some(json!({})),
        )
        .await;
    assert_eq!(approved.ok(StatusCode::OK)["status"]["status"], "active");

    let acceptance = server
        .call(
            Method::POST,
            "/api/v1/deferrals",
            "olga",
            Some(request(json!("risk-acceptance"))),
        )
        .await;
    let acceptance = acceptance.ok(StatusCode::CREATED)["id"]
        .as_str()
        .unwrap()
        .to_owned();
    let not_security = server
        .call(
            Method::POST,
            &format!("/api/v1/deferrals/{acceptance}/approve"),
            "bob",
            Some(json!({})),
        )
        .await
        .refused(StatusCode::FORBIDDEN);
    assert!(not_security.contains("security"), "{not_security}");
    let too_long = server
        .call(
            Method::POST,
            "/api/v1/deferrals",
            "olga",
            Some(json!({
                "target": {"type": "finding", "id": finding_id.to_string()},
                "kind": "deferral",
                "justification": "the vendor certifies the fix next year",
                "expires_at": server.now().checked_add(SignedDuration::from_hours(24 * 200)).unwrap(),
            })),
        )
        .await;
    assert_eq!(too_long.status, StatusCode::UNPROCESSABLE_ENTITY);
    assert_eq!(too_long.json["field"], "expires_at");
    server
        .call(
            Method::POST,
            &format!("/api/v1/deferrals/{acceptance}/revoke"),
            "olga",
            Some(json!({"reason": "asked for the wrong kind"})),
        )
        .await
        .ok(StatusCode::OK);

    let deferred = |page: &Value| -> Option<Value> {
        page["items"]
            .as_array()
            .unwrap()
            .iter()
            .find(|f| f["id"] == finding_id)
            .cloned()
    };
    let listed = server.get("/api/v1/findings?host=web1&limit=1000").await;
    let row = deferred(&listed).unwrap();
    assert_eq!(row["standing"], "deferred");
    assert_eq!(row["deferral"], deferral.as_str());
    assert_eq!(
        row["until"].as_str().unwrap().parse::<Timestamp>().unwrap(),
        until
    );
    let only = server.get("/api/v1/findings?host=web1&deferred=true").await;
    assert_eq!(only["total"], 1);
    let due = server
        .get("/api/v1/findings?host=web1&deferred=false&limit=1000")
        .await;
    assert_eq!(due["total"].as_i64().unwrap(), total - 1);
    assert!(deferred(&due).is_none());

    server.advance(24 * 30 + 1);
    let listed = server.get("/api/v1/findings?host=web1&limit=1000").await;
    let row = deferred(&listed).unwrap();
    assert_eq!(row["standing"], "due-again");
    assert_eq!(row["deferral"], deferral.as_str());
    assert_eq!(
        server.get("/api/v1/findings?host=web1&deferred=true").await["total"],
        0
    );
    let expired = server.get("/api/v1/deferrals?status=expired").await;
    assert_eq!(expired.as_array().unwrap().len(), 1);

    // Renewing an expired record covers the finding again.
    let renewed = server
        .call(
            Method::POST,
            &format!("/api/v1/deferrals/{deferral}/renew"),
            "carol",
            Some(json!({"expires_at": server.now().checked_add(SignedDuration::from_hours(24 * 10)).unwrap()})),
        )
        .await;
    let renewed = renewed.ok(StatusCode::OK);
    assert_eq!(renewed["renewals"], 1);
    assert_eq!(renewed["status"]["status"], "active");
    assert_eq!(
        server.get("/api/v1/findings?host=web1&deferred=true").await["total"],
        1
    );

    // A change from the same findings leaves the deferred one out, and says so.
    let created = server
        .create(
            "alice",
            json!({"title": "everything on web1", "type": "normal", "from_findings": {"host": "web1"}}),
        )
        .await;
    assert!(
        created["unresolved"]
            .to_string()
            .contains(&format!("deferred by {deferral}")),
        "{}",
        created["unresolved"]
    );

    assert_eq!(
        server.audit_of(&format!("deferral:{deferral}")).await,
        [
            "olga deferral.request",
            "bob deferral.approve",
            "carol deferral.renew",
        ]
    );
    server.assert_chain_intact().await;
}

/// Policies are versioned: defaults as version 1, admins store new versions (TOML or JSON),
/// bad documents are named, and changes record the version they were judged by.
async fn policies_are_versioned_and_recorded(server: &Server) {
    let cab = server.get("/api/v1/policies/cab").await;
    assert_eq!(cab["version"], 1);
    assert_eq!(cab["default"], true);
    let toml = cab["toml"].as_str().unwrap().to_owned();
    assert!(toml.contains("[[rule]]"), "{toml}");

    let bad = server
        .call(
            Method::PUT,
            "/api/v1/policies/cab",
            "admin",
            Some(json!({"toml": "[[rule]\nname = "})),
        )
        .await;
    assert_eq!(bad.status, StatusCode::UNPROCESSABLE_ENTITY, "{}", bad.json);
    assert_eq!(bad.json["field"], "toml");
    assert!(
        bad.json["detail"]
            .as_str()
            .unwrap()
            .contains("not valid TOML")
    );
    let zero = toml.replacen("quorum = 1", "quorum = 0", 1);
    let bad = server
        .call(
            Method::PUT,
            "/api/v1/policies/cab",
            "admin",
            Some(json!({"toml": zero})),
        )
        .await
        .refused(StatusCode::UNPROCESSABLE_ENTITY);
    assert!(
        bad.contains("rule \"normal-low\": quorum must be 1 or more"),
        "{bad}"
    );
    let not_admin = server
        .call(
            Method::PUT,
            "/api/v1/policies/cab",
            "chair",
            Some(json!({"toml": toml})),
        )
        .await;
    assert_eq!(not_admin.status, StatusCode::FORBIDDEN);

    let shorter = toml.replace(
        "retrospective_within = \"48h\"",
        "retrospective_within = \"24h\"",
    );
    assert_ne!(shorter, toml);
    let stored = server
        .call(
            Method::PUT,
            "/api/v1/policies/cab",
            "admin",
            Some(json!({"toml": shorter, "based_on": 1})),
        )
        .await;
    let stored = stored.ok(StatusCode::CREATED);
    assert_eq!(stored["version"], 2);
    assert_eq!(stored["default"], false);
    assert_eq!(stored["created_by"], "admin");
    assert_eq!(stored["policy"]["emergency"]["retrospective_within"], "24h");
    let late = server
        .call(
            Method::PUT,
            "/api/v1/policies/cab",
            "admin",
            Some(json!({"toml": toml, "based_on": 1})),
        )
        .await
        .refused(StatusCode::CONFLICT);
    assert!(late.contains("version 2"), "{late}");
    let mut json_policy = stored["policy"].clone();
    json_policy["peer_review"]["min_criticality"] = json!(5);
    server
        .call(
            Method::PUT,
            "/api/v1/policies/cab",
            "admin",
            Some(json!({"policy": json_policy})),
        )
        .await
        .ok(StatusCode::CREATED);
    assert_eq!(server.get("/api/v1/policies/cab").await["version"], 3);

    let deferral = server.get("/api/v1/policies/deferral").await;
    assert_eq!(deferral["policy"]["max_days"]["risk-acceptance"], 365);
    let stricter = deferral["toml"]
        .as_str()
        .unwrap()
        .replace("deferral = 90", "deferral = 30");
    let stored = server
        .call(
            Method::PUT,
            "/api/v1/policies/deferral",
            "admin",
            Some(json!({"toml": stricter})),
        )
        .await;
    assert_eq!(
        stored.ok(StatusCode::CREATED)["policy"]["max_days"]["deferral"],
        30
    );

    let change = id(&server
        .create(
            "alice",
            targets_change(
                "openssl on web2",
                "normal",
                "openssl",
                "3.0.15-1~deb12u1",
                "host=web2",
            ),
        )
        .await);
    let submitted = server
        .act(&change, "alice", json!({"action": "submit"}))
        .await;
    assert_eq!(submitted.ok(StatusCode::OK)["policy_version"], 3);
    assert_eq!(
        server.audit_of("policy:cab").await,
        ["admin policy.update", "admin policy.update"]
    );
    server.assert_chain_intact().await;
}

/// The ServiceNow `change_request` record and the Jira issue carry the tools' own field names.
async fn exports_use_the_tools_field_names(server: &Server) {
    let change = id(&server
        .create(
            "alice",
            targets_change(
                "openssl on web2",
                "normal",
                "openssl",
                "3.0.15-1~deb12u1",
                "host=web2",
            ),
        )
        .await);
    server
        .act(&change, "alice", json!({"action": "submit"}))
        .await
        .ok(StatusCode::OK);
    // Sent back to draft by its requester, assessed again, and submitted again.
    let revised = server
        .act(
            &change,
            "alice",
            json!({"action": "revise", "reason": "add the verification probe"}),
        )
        .await;
    let revised = revised.ok(StatusCode::OK);
    assert_eq!(revised["state"], "draft");
    assert!(revised["assessment"]["risk"]["level"].is_string());
    server
        .act(&change, "alice", json!({"action": "submit"}))
        .await
        .ok(StatusCode::OK);
    let snow = server
        .get(&format!(
            "/api/v1/changes/{change}/export?format=servicenow&assignment_group=linux-ops"
        ))
        .await;
    assert_eq!(snow["short_description"], "openssl on web2");
    assert_eq!(snow["type"], "normal");
    assert_eq!(snow["state"], "-4", "submitted is Assess");
    assert_eq!(snow["correlation_id"], change.as_str());
    assert_eq!(snow["correlation_display"], "Sluice");
    assert_eq!(snow["assignment_group"], "linux-ops");
    assert_eq!(snow["risk"], "4", "low");
    for field in [
        "description",
        "implementation_plan",
        "backout_plan",
        "test_plan",
        "requested_by",
    ] {
        assert!(snow[field].is_string(), "{field}: {snow}");
    }
    let jira = server
        .get(&format!(
            "/api/v1/changes/{change}/export?format=jira&project=OPS"
        ))
        .await;
    assert_eq!(jira["fields"]["project"]["key"], "OPS");
    assert_eq!(jira["fields"]["summary"], "openssl on web2");
    assert_eq!(jira["fields"]["issuetype"]["name"], "Change");
    assert_eq!(jira["fields"]["priority"]["name"], "Low");
    assert_eq!(jira["fields"]["description"]["type"], "doc");
    assert!(
        jira["fields"]["labels"]
            .as_array()
            .unwrap()
            .contains(&json!("change-normal"))
    );
    let no_project = server
        .call(
            Method::GET,
            &format!("/api/v1/changes/{change}/export?format=jira"),
            "victor",
            None,
        )
        .await;
    assert_eq!(no_project.status, StatusCode::UNPROCESSABLE_ENTITY);
    assert_eq!(no_project.json["field"], "project");
    assert_eq!(
        server
            .call(
                Method::GET,
                "/api/v1/changes/CHG-404/export",
                "victor",
                None
            )
            .await
            .status,
        StatusCode::NOT_FOUND
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

on_both!(
    emergency_retrospective_overdue,
    emergency_change_retrospective_goes_overdue
);
on_both!(quorum, quorum_not_met_then_met);
on_both!(escalation, escalation_after_the_timeout);
on_both!(standard, standard_changes_follow_their_template);
on_both!(deferrals, deferral_expiry_makes_a_finding_due_again);
on_both!(policies, policies_are_versioned_and_recorded);
on_both!(exports, exports_use_the_tools_field_names);
