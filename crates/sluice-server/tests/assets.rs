//! The CMDB API in process: imports, selectors and pagination, the 422s that name what is wrong,
//! exports that import back unchanged, groups and services, Idempotency-Key, and the audit chain
//! intact after all of it.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use axum::Router;
use axum::body::Body;
use axum::http::{HeaderMap, Method, Request, StatusCode};
use http_body_util::BodyExt;
use serde_json::{Value, json};
use sluice_server::settings::{Secret, Settings, SettingsLayer};
use sluice_store::Store;
use tower::ServiceExt;

const PRODUCTION_INI: &str = include_str!("../../sluice-core/tests/fixtures/cmdb/production.ini");
const INVALID_INI: &str =
    include_str!("../../sluice-core/tests/fixtures/cmdb/invalid_criticality.ini");

struct Server {
    app: Router,
    store: Store,
    admin: String,
    operator: String,
    viewer: String,
    _dir: tempfile::TempDir,
}

struct Answer {
    status: StatusCode,
    headers: HeaderMap,
    text: String,
    json: Value,
}

async fn send(
    app: &Router,
    method: Method,
    path: &str,
    token: &str,
    headers: &[(&str, &str)],
    body: Option<&Value>,
) -> Answer {
    let mut request = Request::builder()
        .method(method)
        .uri(path)
        .header("authorization", format!("Bearer {token}"));
    for (name, value) in headers {
        request = request.header(*name, *value);
    }
    let request = match body {
        Some(body) => request
            .header("content-type", "application/json")
            .body(Body::from(body.to_string()))
            .unwrap(),
        None => request.body(Body::empty()).unwrap(),
    };
    let response = app.clone().oneshot(request).await.unwrap();
    let status = response.status();
    let headers = response.headers().clone();
    let bytes = response.into_body().collect().await.unwrap().to_bytes();
    let text = String::from_utf8_lossy(&bytes).into_owned();
    let json = serde_json::from_str(&text).unwrap_or(Value::Null);
    Answer {
        status,
        headers,
        text,
        json,
    }
}

impl Server {
    async fn start() -> Self {
        let dir = tempfile::tempdir().unwrap();
        let settings = Settings::from_layer(SettingsLayer {
            data_dir: Some(dir.path().to_owned()),
            admin_password: Some(Secret::new("first-admin-password")),
            ..SettingsLayer::default()
        })
        .unwrap();
        let store = sluice_server::open_store(&settings).await.unwrap();
        sluice_server::ensure_admin(&store, &settings)
            .await
            .unwrap();
        let app = sluice_server::app(store.clone(), settings, None, Default::default()).unwrap();
        let admin = login(&app, "admin", "first-admin-password").await;
        let mut server = Self {
            app,
            store,
            operator: String::new(),
            viewer: String::new(),
            admin,
            _dir: dir,
        };
        server.operator = server.user("olivia", "operator").await;
        server.viewer = server.user("victor", "viewer").await;
        server
    }

    async fn user(&self, name: &str, role: &str) -> String {
        let body = json!({"username": name, "password": "a long enough password", "roles": [role]});
        let answer = self
            .call(Method::POST, "/api/v1/users", &self.admin, Some(body))
            .await;
        assert_eq!(answer.status, StatusCode::CREATED, "{}", answer.text);
        login(&self.app, name, "a long enough password").await
    }

    async fn call(&self, method: Method, path: &str, token: &str, body: Option<Value>) -> Answer {
        send(&self.app, method, path, token, &[], body.as_ref()).await
    }

    async fn get(&self, path: &str) -> Answer {
        self.call(Method::GET, path, &self.viewer, None).await
    }

    async fn import(&self, format: &str, content: &str) -> Answer {
        let body = json!({"format": format, "content": content, "source_name": "hosts"});
        self.call(
            Method::POST,
            "/api/v1/assets/import",
            &self.operator,
            Some(body),
        )
        .await
    }

    async fn events(&self) -> Vec<String> {
        self.store
            .audit_events(None)
            .await
            .unwrap()
            .into_iter()
            .map(|e| format!("{} {} {}", e.actor, e.action, e.object))
            .collect()
    }

    async fn assert_chain_intact(&self) {
        let answer = self
            .call(Method::GET, "/api/v1/audit/verify", &self.admin, None)
            .await;
        assert_eq!(answer.json["intact"], true, "{}", answer.text);
        assert!(self.store.verify_audit().await.unwrap().is_ok());
    }
}

async fn login(app: &Router, username: &str, password: &str) -> String {
    let request = Request::post("/api/v1/login")
        .header("content-type", "application/json")
        .body(Body::from(
            json!({"username": username, "password": password}).to_string(),
        ))
        .unwrap();
    let response = app.clone().oneshot(request).await.unwrap();
    assert_eq!(response.status(), StatusCode::OK);
    let bytes = response.into_body().collect().await.unwrap().to_bytes();
    let body: Value = serde_json::from_slice(&bytes).unwrap();
    body["token"].as_str().unwrap().to_owned()
}

fn hosts(page: &Value) -> Vec<&str> {
    page["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|a| a["hostname"].as_str().unwrap())
        .collect()
}

#[tokio::test]
async fn an_inventory_is_imported_selected_and_paged() {
    let server = Server::start().await;
    let answer = server.import("auto", PRODUCTION_INI).await;
    assert_eq!(answer.status, StatusCode::OK, "{}", answer.text);
    assert_eq!(answer.json["format"], "ansible-ini");
    assert_eq!(answer.json["assets"], 13);
    assert_eq!(answer.json["created"], 13);
    assert_eq!(answer.json["groups_created"], 9);
    let events = server.events().await;
    let created: Vec<&String> = events
        .iter()
        .filter(|e| e.starts_with("olivia asset.create asset:"))
        .collect();
    assert_eq!(created.len(), 13, "one audit event per asset");
    assert_eq!(
        events
            .iter()
            .filter(|e| e.starts_with("olivia group.create"))
            .count(),
        9
    );

    // Selectors pick; every role reads.
    let page = server
        .get("/api/v1/assets?selector=env=prod,criticality%3E=5")
        .await;
    assert_eq!(page.status, StatusCode::OK, "{}", page.text);
    assert_eq!(
        hosts(&page.json),
        [
            "db01.dub.example.com",
            "db02.dub.example.com",
            "web05.dub.example.com"
        ]
    );
    assert_eq!(page.json["total"], 3);
    assert_eq!(page.json["selector"], "env=prod,criticality>=5");
    let page = server
        .get("/api/v1/assets?selector=group=frontend,tag=canary")
        .await;
    assert_eq!(hosts(&page.json), ["web05.dub.example.com"]);

    // Pages, by host name, with the total.
    let all = server.get("/api/v1/assets").await;
    assert_eq!(
        (all.json["total"].as_u64(), all.json["limit"].as_u64()),
        (Some(13), Some(100))
    );
    let mut paged = Vec::new();
    for offset in [0, 5, 10] {
        let page = server
            .get(&format!("/api/v1/assets?limit=5&offset={offset}"))
            .await;
        assert_eq!(page.json["total"], 13);
        assert_eq!(page.json["offset"], offset);
        paged.extend(hosts(&page.json).into_iter().map(str::to_owned));
    }
    assert_eq!(paged, hosts(&all.json));
    assert_eq!(paged.len(), 13);
    let mut sorted = paged.clone();
    sorted.sort();
    assert_eq!(paged, sorted);
    let beyond = server.get("/api/v1/assets?offset=50").await;
    assert_eq!(
        (beyond.json["total"].as_u64(), hosts(&beyond.json).len()),
        (Some(13), 0)
    );

    // What is wrong is named.
    let bad = server
        .get("/api/v1/assets?selector=env=prod,criticality%3E=high")
        .await;
    assert_eq!(bad.status, StatusCode::UNPROCESSABLE_ENTITY);
    assert_eq!(bad.json["field"], "selector");
    let detail = bad.json["detail"].as_str().unwrap();
    assert!(
        detail.contains("term 2 `criticality>=high`") && detail.contains("1–5"),
        "{detail}"
    );
    let bad = server.get("/api/v1/assets?limit=0").await;
    assert_eq!(bad.status, StatusCode::UNPROCESSABLE_ENTITY);
    assert_eq!(bad.json["field"], "limit");
    let bad = server.get("/api/v1/assets?limit=5000").await;
    assert_eq!(bad.json["field"], "limit");
    let bad = server.get("/api/v1/assets?limit=ten").await;
    assert_eq!(bad.status, StatusCode::BAD_REQUEST);
    assert!(
        bad.json["detail"].as_str().unwrap().contains("limit"),
        "{}",
        bad.text
    );
    let bad = server.get("/api/v1/assets?colour=red").await;
    assert_eq!(bad.status, StatusCode::BAD_REQUEST);

    // One asset, case-insensitive; a missing one is 404.
    let one = server.get("/api/v1/assets/WEB05.dub.example.com").await;
    assert_eq!(one.status, StatusCode::OK);
    assert_eq!(one.json["criticality"], 5);
    assert_eq!(one.json["vars"]["ansible_host"], "10.10.1.5");
    let missing = server.get("/api/v1/assets/nope.example.com").await;
    assert_eq!(missing.status, StatusCode::NOT_FOUND);
    assert_eq!(missing.json["detail"], "asset nope.example.com not found");

    // Groups with their member counts.
    let groups = server.get("/api/v1/groups").await;
    let frontend = groups
        .json
        .as_array()
        .unwrap()
        .iter()
        .find(|g| g["name"] == "frontend")
        .unwrap();
    assert_eq!(frontend["members"], 7);
    server.assert_chain_intact().await;
}

#[tokio::test]
async fn a_bad_file_is_rejected_whole_with_its_line() {
    let server = Server::start().await;
    let answer = server.import("ansible-ini", INVALID_INI).await;
    assert_eq!(
        answer.status,
        StatusCode::UNPROCESSABLE_ENTITY,
        "{}",
        answer.text
    );
    assert_eq!(answer.json["field"], "content");
    let detail = answer.json["detail"].as_str().unwrap();
    assert!(detail.starts_with("hosts"), "names the file: {detail}");
    assert!(detail.contains("criticality"), "{detail}");
    assert!(detail.contains("line"), "{detail}");

    let csv = "hostname,criticality\nweb1.example.com,4\nweb2.example.com,9\n";
    let answer = server.import("csv", csv).await;
    assert_eq!(answer.status, StatusCode::UNPROCESSABLE_ENTITY);
    assert_eq!(
        answer.json["detail"],
        "hosts line 3, column criticality: criticality: \"9\" is not a whole number from 1 to 5"
    );
    let answer = server
        .import("csv", "hostname,tz\nweb1.example.com,Europe/Atlantis\n")
        .await;
    assert_eq!(answer.status, StatusCode::UNPROCESSABLE_ENTITY);
    assert!(
        answer.json["detail"]
            .as_str()
            .unwrap()
            .contains("host web1.example.com: time_zone: \"Europe/Atlantis\""),
        "{}",
        answer.text
    );
    let answer = server
        .call(
            Method::POST,
            "/api/v1/assets/import",
            &server.operator,
            Some(json!({"format": "xml", "content": ""})),
        )
        .await;
    assert_eq!(answer.status, StatusCode::UNPROCESSABLE_ENTITY);
    assert_eq!(answer.json["field"], "format");

    let all = server.get("/api/v1/assets").await;
    assert_eq!(all.json["total"], 0, "nothing stored");
    let viewer = server
        .call(
            Method::POST,
            "/api/v1/assets/import",
            &server.viewer,
            Some(json!({"content": "hostname\nweb1\n"})),
        )
        .await;
    assert_eq!(viewer.status, StatusCode::FORBIDDEN);
    let events = server.events().await;
    assert!(
        events
            .iter()
            .all(|e| e.contains(" user.") || e.contains(" token.")),
        "nothing recorded but the accounts: {events:?}"
    );
}

#[tokio::test]
async fn assets_are_put_patched_and_deleted() {
    let server = Server::start().await;
    let path = "/api/v1/assets/web1.example.com";
    let record = json!({"hostname": "web1.example.com", "environment": "PROD", "criticality": 4, "tags": ["Web"]});
    let put = server
        .call(Method::PUT, path, &server.operator, Some(record.clone()))
        .await;
    assert_eq!(put.status, StatusCode::CREATED, "{}", put.text);
    assert_eq!(put.json["environment"], "prod", "normalised");
    assert_eq!(put.json["tags"], json!(["web"]));
    let again = server
        .call(Method::PUT, path, &server.admin, Some(record.clone()))
        .await;
    assert_eq!(again.status, StatusCode::OK);

    let mismatch = server
        .call(
            Method::PUT,
            "/api/v1/assets/web2.example.com",
            &server.operator,
            Some(record.clone()),
        )
        .await;
    assert_eq!(mismatch.status, StatusCode::UNPROCESSABLE_ENTITY);
    assert_eq!(mismatch.json["field"], "hostname");
    let unknown = server
        .call(
            Method::PUT,
            path,
            &server.operator,
            Some(json!({"hostname": "web1.example.com", "colour": "red"})),
        )
        .await;
    assert_eq!(unknown.status, StatusCode::UNPROCESSABLE_ENTITY);
    assert!(unknown.json["detail"].as_str().unwrap().contains("colour"));
    let zone = server
        .call(
            Method::PUT,
            path,
            &server.operator,
            Some(json!({"hostname": "web1.example.com", "time_zone": "Mars/Olympus"})),
        )
        .await;
    assert_eq!(zone.status, StatusCode::UNPROCESSABLE_ENTITY);
    assert_eq!(zone.json["field"], "time_zone");

    let patch = server
        .call(
            Method::PATCH,
            path,
            &server.operator,
            Some(json!({"set": {"criticality": "5", "tags": "web,edge", "var.rack": "r12"}})),
        )
        .await;
    assert_eq!(patch.status, StatusCode::OK, "{}", patch.text);
    assert_eq!(patch.json["criticality"], 5);
    assert_eq!(patch.json["tags"], json!(["edge", "web"]));
    assert_eq!(patch.json["vars"]["rack"], "r12");
    assert_eq!(patch.json["environment"], "prod", "other fields kept");

    // All or nothing: one bad pair, nothing changes, and the answer names it.
    let bad = server
        .call(
            Method::PATCH,
            path,
            &server.operator,
            Some(json!({"set": {"env": "staging", "criticality": "high"}})),
        )
        .await;
    assert_eq!(bad.status, StatusCode::UNPROCESSABLE_ENTITY);
    assert_eq!(bad.json["field"], "set.criticality");
    let unknown_key = server
        .call(
            Method::PATCH,
            path,
            &server.operator,
            Some(json!({"set": {"colour": "red"}})),
        )
        .await;
    assert_eq!(unknown_key.json["field"], "set.colour");
    assert!(
        unknown_key.json["detail"]
            .as_str()
            .unwrap()
            .contains("known are")
    );
    let now = server.get(path).await;
    assert_eq!(now.json["environment"], "prod");
    assert_eq!(now.json, patch.json);
    let missing = server
        .call(
            Method::PATCH,
            "/api/v1/assets/nope.example.com",
            &server.operator,
            Some(json!({"set": {"env": "prod"}})),
        )
        .await;
    assert_eq!(missing.status, StatusCode::NOT_FOUND);

    let deleted = server
        .call(Method::DELETE, path, &server.operator, None)
        .await;
    assert_eq!(deleted.status, StatusCode::NO_CONTENT);
    assert_eq!(server.get(path).await.status, StatusCode::NOT_FOUND);
    let again = server
        .call(Method::DELETE, path, &server.operator, None)
        .await;
    assert_eq!(again.status, StatusCode::NOT_FOUND);

    let events = server.events().await;
    assert_eq!(
        &events[events.len() - 3..],
        [
            "olivia asset.create asset:web1.example.com",
            "olivia asset.update asset:web1.example.com",
            "olivia asset.delete asset:web1.example.com",
        ],
        "the unchanged PUT and the refused changes recorded nothing"
    );
    server.assert_chain_intact().await;
}

#[tokio::test]
async fn an_export_imports_back_unchanged() {
    let server = Server::start().await;
    server.import("ansible-ini", PRODUCTION_INI).await;
    let csv = server.get("/api/v1/assets/export").await;
    assert_eq!(csv.status, StatusCode::OK);
    assert_eq!(
        csv.headers["content-type"], "text/csv; charset=utf-8",
        "CSV by default"
    );
    assert!(csv.text.starts_with("hostname,os,environment,criticality,"));
    assert_eq!(csv.text.lines().count(), 14);
    let head = server.store.audit_head().await.unwrap();
    let back = server.import("auto", &csv.text).await;
    assert_eq!(back.json["format"], "csv");
    assert_eq!(back.json["unchanged"], 13, "{}", back.text);
    assert_eq!(back.json["created"], 0);
    assert_eq!(back.json["updated"], 0);
    assert_eq!(server.store.audit_head().await.unwrap(), head);

    let selected = server
        .get("/api/v1/assets/export?format=json&selector=group=dbservers")
        .await;
    assert_eq!(selected.headers["content-type"], "application/json");
    let hostnames: Vec<&str> = selected
        .json
        .as_array()
        .unwrap()
        .iter()
        .map(|a| a["hostname"].as_str().unwrap())
        .collect();
    assert_eq!(hostnames, ["db01.dub.example.com", "db02.dub.example.com"]);
    let bad = server.get("/api/v1/assets/export?format=xml").await;
    assert_eq!(bad.status, StatusCode::BAD_REQUEST);
    let bad = server.get("/api/v1/assets/export?selector=tz%3E3").await;
    assert_eq!(bad.json["field"], "selector");
}

#[tokio::test]
async fn groups_and_services() {
    let server = Server::start().await;
    for host in ["web1.example.com", "web2.example.com", "db1.example.com"] {
        let record = json!({"hostname": host, "groups": ["web"]});
        let put = server
            .call(
                Method::PUT,
                &format!("/api/v1/assets/{host}"),
                &server.operator,
                Some(record),
            )
            .await;
        assert_eq!(put.status, StatusCode::CREATED);
    }
    let group = server
        .call(
            Method::PUT,
            "/api/v1/groups/web",
            &server.operator,
            Some(json!({"description": "front ends"})),
        )
        .await;
    assert_eq!(group.status, StatusCode::CREATED, "{}", group.text);
    let bad = server
        .call(
            Method::PUT,
            "/api/v1/groups/a%20b",
            &server.operator,
            Some(json!({})),
        )
        .await;
    assert_eq!(bad.json["field"], "name");
    let listed = server.get("/api/v1/groups").await;
    assert_eq!(
        listed.json,
        json!([{"name": "web", "description": "front ends", "members": 3}])
    );
    let refused = server
        .call(Method::DELETE, "/api/v1/groups/web", &server.operator, None)
        .await;
    assert_eq!(refused.status, StatusCode::CONFLICT);

    let service = json!({"tier": 1, "members": ["WEB1.example.com", "ghost.example.com"], "depends_on": ["db"], "disruption_budget": "25%"});
    let invalid = server
        .call(
            Method::PUT,
            "/api/v1/services/web",
            &server.operator,
            Some(service),
        )
        .await;
    assert_eq!(invalid.status, StatusCode::UNPROCESSABLE_ENTITY);
    let detail = invalid.json["detail"].as_str().unwrap();
    assert!(
        detail.contains("member ghost.example.com is not a known host")
            && detail.contains("depends on db, which is not a known service"),
        "every problem reported: {detail}"
    );
    let db = server
        .call(
            Method::PUT,
            "/api/v1/services/db",
            &server.operator,
            Some(json!({"members": ["db1.example.com"], "disruption_budget": "1"})),
        )
        .await;
    assert_eq!(db.status, StatusCode::CREATED, "{}", db.text);
    let web = server
        .call(
            Method::PUT,
            "/api/v1/services/web",
            &server.operator,
            Some(json!({"tier": 1, "members": ["WEB1.example.com"], "depends_on": ["db"]})),
        )
        .await;
    assert_eq!(web.status, StatusCode::CREATED, "{}", web.text);
    assert_eq!(web.json["members"], json!(["web1.example.com"]));
    let got = server.get("/api/v1/services/web").await;
    assert_eq!(got.json, web.json);
    assert_eq!(
        server
            .get("/api/v1/services")
            .await
            .json
            .as_array()
            .unwrap()
            .len(),
        2
    );
    assert_eq!(
        server.get("/api/v1/services/nope").await.status,
        StatusCode::NOT_FOUND
    );
    let refused = server
        .call(
            Method::DELETE,
            "/api/v1/assets/db1.example.com",
            &server.operator,
            None,
        )
        .await;
    assert_eq!(refused.status, StatusCode::CONFLICT);
    assert!(
        refused.json["detail"]
            .as_str()
            .unwrap()
            .contains("service(s) db")
    );
    let refused = server
        .call(
            Method::DELETE,
            "/api/v1/services/db",
            &server.operator,
            None,
        )
        .await;
    assert_eq!(refused.status, StatusCode::CONFLICT);
    for path in ["/api/v1/services/web", "/api/v1/services/db"] {
        let deleted = server.call(Method::DELETE, path, &server.admin, None).await;
        assert_eq!(deleted.status, StatusCode::NO_CONTENT);
    }
    server.assert_chain_intact().await;
}

#[tokio::test]
async fn idempotency_keys_replay_the_first_answer() {
    let server = Server::start().await;
    let path = "/api/v1/assets/web1.example.com";
    let record = json!({"hostname": "web1.example.com", "criticality": 4});
    let key = [("idempotency-key", "4b1d0c6e-put-1")];
    let put = |token: String, body: Value, headers: &'static [(&'static str, &'static str)]| {
        let app = server.app.clone();
        async move { send(&app, Method::PUT, path, &token, headers, Some(&body)).await }
    };
    const KEY: &[(&str, &str)] = &[("idempotency-key", "4b1d0c6e-put-1")];
    let first = put(server.operator.clone(), record.clone(), KEY).await;
    assert_eq!(first.status, StatusCode::CREATED);
    assert!(first.headers.get("idempotent-replayed").is_none());

    // Someone changes the asset; the retry of the first request does not undo it.
    let patch = server
        .call(
            Method::PATCH,
            path,
            &server.admin,
            Some(json!({"set": {"criticality": "2"}})),
        )
        .await;
    assert_eq!(patch.status, StatusCode::OK);
    let events = server.events().await.len();
    let retry = put(server.operator.clone(), record.clone(), KEY).await;
    assert_eq!(retry.status, StatusCode::CREATED, "the first answer, again");
    assert_eq!(retry.text, first.text);
    assert_eq!(retry.headers["idempotent-replayed"], "true");
    assert_eq!(retry.headers["content-type"], "application/json");
    assert_eq!(server.events().await.len(), events, "nothing done twice");
    assert_eq!(server.get(path).await.json["criticality"], 2);

    // The same key for another request is refused, and it does nothing.
    let other = put(
        server.operator.clone(),
        json!({"hostname": "web1.example.com", "criticality": 1}),
        KEY,
    )
    .await;
    assert_eq!(other.status, StatusCode::UNPROCESSABLE_ENTITY);
    assert_eq!(other.json["field"], "Idempotency-Key");
    assert!(
        other.json["detail"]
            .as_str()
            .unwrap()
            .contains("different request")
    );
    assert_eq!(server.get(path).await.json["criticality"], 2);

    // Keys belong to their user: the admin's same key is a new request.
    let admins = put(server.admin.clone(), record.clone(), KEY).await;
    assert_eq!(admins.status, StatusCode::OK);
    assert!(admins.headers.get("idempotent-replayed").is_none());
    assert_eq!(server.get(path).await.json["criticality"], 4);

    // Refusals are answers too, and are replayed; the key must look like a key.
    let bad = json!({"set": {"criticality": "9"}});
    let headers: &[(&str, &str)] = &[("idempotency-key", "patch-9")];
    let first = send(
        &server.app,
        Method::PATCH,
        path,
        &server.operator,
        headers,
        Some(&bad),
    )
    .await;
    let retry = send(
        &server.app,
        Method::PATCH,
        path,
        &server.operator,
        headers,
        Some(&bad),
    )
    .await;
    assert_eq!(first.status, StatusCode::UNPROCESSABLE_ENTITY);
    assert_eq!((retry.status, retry.text), (first.status, first.text));
    assert_eq!(retry.headers["content-type"], "application/problem+json");
    let spaced = send(
        &server.app,
        Method::PATCH,
        path,
        &server.operator,
        &[("idempotency-key", "two words")],
        Some(&bad),
    )
    .await;
    assert_eq!(spaced.status, StatusCode::BAD_REQUEST);
    assert!(
        spaced.json["detail"]
            .as_str()
            .unwrap()
            .contains("Idempotency-Key")
    );

    // An import retried reports what the first one did; DELETE too.
    let import = json!({"format": "ansible-ini", "content": PRODUCTION_INI});
    let headers: &[(&str, &str)] = &[("idempotency-key", "import-1")];
    let first = send(
        &server.app,
        Method::POST,
        "/api/v1/assets/import",
        &server.operator,
        headers,
        Some(&import),
    )
    .await;
    let retry = send(
        &server.app,
        Method::POST,
        "/api/v1/assets/import",
        &server.operator,
        headers,
        Some(&import),
    )
    .await;
    assert_eq!(first.json["created"], 13);
    assert_eq!(retry.json, first.json);
    assert_eq!(retry.headers["idempotent-replayed"], "true");
    let headers: &[(&str, &str)] = &[("idempotency-key", "delete-1")];
    let first = send(
        &server.app,
        Method::DELETE,
        path,
        &server.operator,
        headers,
        None,
    )
    .await;
    let retry = send(
        &server.app,
        Method::DELETE,
        path,
        &server.operator,
        headers,
        None,
    )
    .await;
    assert_eq!(
        (first.status, retry.status),
        (StatusCode::NO_CONTENT, StatusCode::NO_CONTENT)
    );

    // Routes that do not declare the header ignore it: token secrets are never kept.
    let mut secrets = Vec::new();
    for _ in 0..2 {
        let token = send(
            &server.app,
            Method::POST,
            "/api/v1/tokens",
            &server.operator,
            &key,
            Some(&json!({"name": "ci", "expires_in": "1d"})),
        )
        .await;
        assert_eq!(token.status, StatusCode::CREATED);
        assert!(token.headers.get("idempotent-replayed").is_none());
        secrets.push(token.json["token"].as_str().unwrap().to_owned());
    }
    assert_ne!(secrets[0], secrets[1]);
    server.assert_chain_intact().await;
}
