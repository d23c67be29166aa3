//! The API in process (no socket): every route in the OpenAPI document against every role, the
//! login flow, token lifecycle and error documents.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::collections::BTreeMap;

use axum::Router;
use axum::body::Body;
use axum::http::{Method, Request, StatusCode};
use http_body_util::BodyExt;
use serde_json::{Value, json};
use sluice_core::access::Role;
use sluice_server::settings::{Secret, Settings, SettingsLayer};
use sluice_store::Store;
use tower::ServiceExt;

struct Server {
    app: Router,
    store: Store,
    _dir: tempfile::TempDir,
}

async fn server(layer: SettingsLayer) -> Server {
    let dir = tempfile::tempdir().unwrap();
    let settings = Settings::from_layer(SettingsLayer {
        data_dir: Some(dir.path().to_owned()),
        admin_password: Some(Secret::new("first-admin-password")),
        ..layer
    })
    .unwrap();
    let store = sluice_server::open_store(&settings).await.unwrap();
    let shown = sluice_server::ensure_admin(&store, &settings)
        .await
        .unwrap();
    assert_eq!(shown, None, "a configured password is not printed");
    let app = sluice_server::app(store.clone(), settings, None, Default::default()).unwrap();
    Server {
        app,
        store,
        _dir: dir,
    }
}

async fn call(
    app: &Router,
    method: Method,
    path: &str,
    token: Option<&str>,
    body: Option<Value>,
) -> (StatusCode, Value) {
    let mut request = Request::builder().method(method).uri(path);
    if let Some(token) = token {
        request = request.header("authorization", format!("Bearer {token}"));
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
    let bytes = response.into_body().collect().await.unwrap().to_bytes();
    let value = serde_json::from_slice(&bytes)
        .unwrap_or_else(|_| Value::String(String::from_utf8_lossy(&bytes).into_owned()));
    (status, value)
}

async fn login(app: &Router, username: &str, password: &str) -> String {
    let (status, body) = call(
        app,
        Method::POST,
        "/api/v1/login",
        None,
        Some(json!({"username": username, "password": password})),
    )
    .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    body["token"].as_str().unwrap().to_owned()
}

/// One user per role, logged in.
async fn tokens_per_role(app: &Router) -> BTreeMap<Role, String> {
    let admin = login(app, "admin", "first-admin-password").await;
    let mut tokens = BTreeMap::new();
    for role in Role::ALL {
        let name = format!("user-{role}");
        let (status, body) = call(
            app,
            Method::POST,
            "/api/v1/users",
            Some(&admin),
            Some(json!({"username": name, "password": "a long enough password", "roles": [role.as_str()]})),
        )
        .await;
        assert_eq!(status, StatusCode::CREATED, "{body}");
        tokens.insert(role, login(app, &name, "a long enough password").await);
    }
    tokens
}

#[tokio::test]
async fn every_route_times_every_role() {
    let server = server(SettingsLayer::default()).await;
    let tokens = tokens_per_role(&server.app).await;
    let (status, doc) = call(&server.app, Method::GET, "/api/v1/openapi.json", None, None).await;
    assert_eq!(status, StatusCode::OK);
    let paths = doc["paths"].as_object().unwrap();
    assert!(paths.len() >= 9, "{paths:?}");
    let mut checked = 0;
    for (path, item) in paths {
        for (method, operation) in item.as_object().unwrap() {
            let method: Method = method.to_uppercase().parse().unwrap();
            // Every path parameter (`{id}`, `{hostname}`, `{name}`) names an object that does
            // not exist.
            let concrete = path
                .split('/')
                .map(|seg| {
                    if seg.starts_with('{') {
                        "no-such-id"
                    } else {
                        seg
                    }
                })
                .collect::<Vec<_>>()
                .join("/");
            let body = (method == Method::POST).then(|| json!({}));
            let security = operation.get("security").and_then(Value::as_array);
            // Anonymous.
            let (status, _) =
                call(&server.app, method.clone(), &concrete, None, body.clone()).await;
            match security {
                None => assert_ne!(
                    status,
                    StatusCode::UNAUTHORIZED,
                    "{method} {path} is public"
                ),
                Some(_) => assert_eq!(
                    status,
                    StatusCode::UNAUTHORIZED,
                    "{method} {path} anonymous"
                ),
            }
            checked += 1;
            let Some(security) = security else { continue };
            if security[0].get("agent").is_some() {
                // Agent routes take agent tokens only: every user token is refused.
                for (role, token) in &tokens {
                    let (status, body_out) = call(
                        &server.app,
                        method.clone(),
                        &concrete,
                        Some(token),
                        body.clone(),
                    )
                    .await;
                    assert_eq!(
                        status,
                        StatusCode::FORBIDDEN,
                        "{method} {path} as {role}: {body_out}"
                    );
                    checked += 1;
                }
                continue;
            }
            let allowed: Vec<Role> = security[0]["token"]
                .as_array()
                .unwrap()
                .iter()
                .map(|r| r.as_str().unwrap().parse().unwrap())
                .collect();
            for (role, token) in &tokens {
                let (status, body_out) = call(
                    &server.app,
                    method.clone(),
                    &concrete,
                    Some(token),
                    body.clone(),
                )
                .await;
                let permitted = allowed.is_empty() || allowed.contains(role);
                if permitted {
                    assert!(
                        status != StatusCode::UNAUTHORIZED && status != StatusCode::FORBIDDEN,
                        "{method} {path} as {role}: {status} {body_out}"
                    );
                    if method == Method::GET {
                        // A GET of one named object may answer 404: it does not exist.
                        let missing = concrete != *path && status == StatusCode::NOT_FOUND;
                        assert!(
                            status.is_success() || missing,
                            "{method} {path} as {role}: {status} {body_out}"
                        );
                    }
                } else {
                    assert_eq!(
                        status,
                        StatusCode::FORBIDDEN,
                        "{method} {path} as {role}: {body_out}"
                    );
                    assert!(body_out["detail"].as_str().unwrap().contains("roles"));
                }
                checked += 1;
            }
        }
    }
    assert!(checked > 50, "{checked}");
}

#[tokio::test]
async fn unknown_routes_and_bad_tokens() {
    let server = server(SettingsLayer::default()).await;
    let (status, body) = call(&server.app, Method::GET, "/api/v1/nothing", None, None).await;
    assert_eq!(status, StatusCode::NOT_FOUND, "{body}");
    let (status, body) = call(
        &server.app,
        Method::GET,
        "/api/v1/whoami",
        Some("slc_0000"),
        None,
    )
    .await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
    assert_eq!(body["detail"], "unknown token");
    let (status, _) = call(
        &server.app,
        Method::GET,
        "/api/v1/whoami",
        Some("not-a-sluice-token"),
        None,
    )
    .await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
}

#[tokio::test]
async fn login_failures_are_limited_and_audited() {
    let server = server(SettingsLayer {
        login_max_failures: Some(3),
        ..SettingsLayer::default()
    })
    .await;
    for _ in 0..3 {
        let (status, body) = call(
            &server.app,
            Method::POST,
            "/api/v1/login",
            None,
            Some(json!({"username": "admin", "password": "guess"})),
        )
        .await;
        assert_eq!(status, StatusCode::UNAUTHORIZED, "{body}");
    }
    let request = Request::post("/api/v1/login")
        .header("content-type", "application/json")
        .body(Body::from(
            json!({"username": "admin", "password": "first-admin-password"}).to_string(),
        ))
        .unwrap();
    let response = server.app.clone().oneshot(request).await.unwrap();
    assert_eq!(
        response.status(),
        StatusCode::TOO_MANY_REQUESTS,
        "even the right password waits"
    );
    assert!(response.headers().get("retry-after").is_some());
    assert_eq!(
        response.headers().get("content-type").unwrap(),
        "application/problem+json"
    );
    let events = server.store.audit_events(None).await.unwrap();
    let failures: Vec<_> = events
        .iter()
        .filter(|e| e.action == "login.failure")
        .collect();
    assert_eq!(failures.len(), 4);
    assert!(
        events
            .iter()
            .all(|e| !e.after.as_deref().unwrap_or("").contains("guess")),
        "passwords never audited"
    );
    assert_eq!(
        events[0].action, "user.create",
        "the first admin is audited"
    );
    assert_eq!(events[0].actor, "system");
}

#[tokio::test]
async fn tokens_can_be_created_listed_and_revoked() {
    let server = server(SettingsLayer::default()).await;
    let tokens = tokens_per_role(&server.app).await;
    let operator = &tokens[&Role::Operator];
    let (status, body) = call(
        &server.app,
        Method::POST,
        "/api/v1/tokens",
        Some(operator),
        Some(json!({"name": "ci", "expires_in": "30d"})),
    )
    .await;
    assert_eq!(status, StatusCode::CREATED, "{body}");
    let ci = body["token"].as_str().unwrap().to_owned();
    let ci_id = body["record"]["id"].as_str().unwrap().to_owned();
    let (status, who) = call(&server.app, Method::GET, "/api/v1/whoami", Some(&ci), None).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(who["username"], "user-operator");

    // A token cannot carry a role its owner lacks, and lifetimes are bounded.
    let (status, body) = call(
        &server.app,
        Method::POST,
        "/api/v1/tokens",
        Some(operator),
        Some(json!({"name": "x", "expires_in": "30d", "roles": ["admin"]})),
    )
    .await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY);
    assert_eq!(body["field"], "roles");
    let (status, body) = call(
        &server.app,
        Method::POST,
        "/api/v1/tokens",
        Some(operator),
        Some(json!({"name": "x", "expires_in": "900d"})),
    )
    .await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY);
    assert_eq!(body["field"], "expires_in");

    // Another user cannot revoke it; its owner can, and then it stops working at once.
    let path = format!("/api/v1/tokens/{ci_id}");
    let (status, _) = call(
        &server.app,
        Method::DELETE,
        &path,
        Some(&tokens[&Role::Viewer]),
        None,
    )
    .await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    let (status, _) = call(&server.app, Method::DELETE, &path, Some(operator), None).await;
    assert_eq!(status, StatusCode::OK);
    let (status, body) = call(&server.app, Method::GET, "/api/v1/whoami", Some(&ci), None).await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
    assert_eq!(body["detail"], "the token was revoked");
    let (status, _) = call(&server.app, Method::DELETE, &path, Some(operator), None).await;
    assert_eq!(status, StatusCode::CONFLICT);

    let (status, list) = call(
        &server.app,
        Method::GET,
        "/api/v1/tokens?all=true",
        Some(operator),
        None,
    )
    .await;
    assert_eq!(status, StatusCode::FORBIDDEN, "{list}");
    let (status, list) = call(
        &server.app,
        Method::GET,
        "/api/v1/tokens?all=true",
        Some(&tokens[&Role::Admin]),
        None,
    )
    .await;
    assert_eq!(status, StatusCode::OK);
    assert!(list.as_array().unwrap().len() >= 7);
    assert!(
        !list.to_string().contains("slc_"),
        "secrets are never listed"
    );
}

#[tokio::test]
async fn bodies_are_checked_with_problem_documents() {
    let server = server(SettingsLayer {
        max_body_bytes: Some(2048),
        ..SettingsLayer::default()
    })
    .await;
    let admin = login(&server.app, "admin", "first-admin-password").await;
    let (status, body) = call(
        &server.app,
        Method::POST,
        "/api/v1/users",
        Some(&admin),
        Some(json!({"username": "eve", "password": "a long enough password", "roles": ["viewer"], "colour": "red"})),
    )
    .await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY);
    assert!(
        body["detail"].as_str().unwrap().contains("colour"),
        "{body}"
    );
    assert_eq!(body["status"], 422);

    let (status, body) = call(
        &server.app,
        Method::POST,
        "/api/v1/users",
        Some(&admin),
        Some(json!({"username": "eve", "password": "a long enough password", "roles": ["root"]})),
    )
    .await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY);
    assert_eq!(body["field"], "roles[0]", "{body}");

    let big = json!({"username": "eve", "password": "x".repeat(5000), "roles": ["viewer"]});
    let (status, _) = call(
        &server.app,
        Method::POST,
        "/api/v1/users",
        Some(&admin),
        Some(big),
    )
    .await;
    assert_eq!(status, StatusCode::PAYLOAD_TOO_LARGE);

    let request = Request::post("/api/v1/users")
        .header("authorization", format!("Bearer {admin}"))
        .header("content-type", "application/json")
        .body(Body::from("{\"username\": "))
        .unwrap();
    let response = server.app.clone().oneshot(request).await.unwrap();
    assert_eq!(response.status(), StatusCode::BAD_REQUEST);

    let (status, _) = call(
        &server.app,
        Method::POST,
        "/api/v1/users",
        Some(&admin),
        Some(
            json!({"username": "admin", "password": "a long enough password", "roles": ["viewer"]}),
        ),
    )
    .await;
    assert_eq!(status, StatusCode::CONFLICT);
    let (_, users) = call(
        &server.app,
        Method::GET,
        "/api/v1/users",
        Some(&admin),
        None,
    )
    .await;
    assert_eq!(
        users.as_array().unwrap().len(),
        1,
        "failed creates stored nothing"
    );
    assert!(!users.to_string().contains("argon2"));

    let (status, verification) = call(
        &server.app,
        Method::GET,
        "/api/v1/audit/verify",
        Some(&admin),
        None,
    )
    .await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(verification["intact"], true, "{verification}");
}

#[tokio::test]
async fn health_readiness_and_metrics() {
    let server = server(SettingsLayer {
        metrics_public: Some(false),
        ..SettingsLayer::default()
    })
    .await;
    assert_eq!(
        call(&server.app, Method::GET, "/healthz", None, None)
            .await
            .0,
        StatusCode::OK
    );
    assert_eq!(
        call(&server.app, Method::GET, "/readyz", None, None)
            .await
            .0,
        StatusCode::OK
    );
    assert_eq!(
        call(&server.app, Method::GET, "/metrics", None, None)
            .await
            .0,
        StatusCode::UNAUTHORIZED,
        "metrics_public = false"
    );
    let (status, page) = call(&server.app, Method::GET, "/api/docs/", None, None).await;
    assert_eq!(status, StatusCode::OK);
    assert!(
        page.as_str().unwrap().contains("swagger"),
        "vendored Swagger UI"
    );
}
