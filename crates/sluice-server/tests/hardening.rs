//! The edges a probe of the server found open (issue 11, item 6): every error is a problem
//! document with its own status's title, bad values are named but never echoed whole, text with
//! control characters is refused, answers carry the browser-hardening headers, a loopback
//! server answers only to loopback names, and CSV exports cannot carry spreadsheet formulas.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use axum::body::Body;
use axum::http::{Method, Request, StatusCode};
use common::{Db, Server};
use http_body_util::BodyExt;
use serde_json::{Value, json};
use tower::ServiceExt;

/// The raw answer: status, headers and body text.
async fn raw(
    server: &Server,
    method: Method,
    path: &str,
    headers: &[(&str, &str)],
    body: Option<&str>,
) -> (StatusCode, axum::http::HeaderMap, String) {
    let mut request = Request::builder().method(method).uri(path).header(
        "authorization",
        format!("Bearer {}", server.tokens["admin"]),
    );
    for (name, value) in headers {
        request = request.header(*name, *value);
    }
    let request = match body {
        Some(body) => request
            .header("content-type", "application/json")
            .body(Body::from(body.to_owned())),
        None => request.body(Body::empty()),
    }
    .unwrap();
    let response = server.app.clone().oneshot(request).await.unwrap();
    let status = response.status();
    let headers = response.headers().clone();
    let bytes = response.into_body().collect().await.unwrap().to_bytes();
    (
        status,
        headers,
        String::from_utf8_lossy(&bytes).into_owned(),
    )
}

fn problem(headers: &axum::http::HeaderMap, body: &str) -> Value {
    assert_eq!(
        headers["content-type"], "application/problem+json",
        "not a problem document: {body}"
    );
    serde_json::from_str(body).unwrap()
}

#[tokio::test]
async fn every_error_is_a_problem_with_its_own_title() {
    let server = Server::start(Db::Sqlite).await;
    // A query string the route cannot read: axum's own rejection used to be text/plain.
    let (status, headers, body) = raw(
        &server,
        Method::GET,
        "/api/v1/rollouts?open=maybe",
        &[],
        None,
    )
    .await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    let doc = problem(&headers, &body);
    assert_eq!(doc["status"], 400);
    assert!(doc["detail"].as_str().unwrap().contains("open"), "{doc}");

    // A body over the limit says so in its title, not "Bad Request".
    let big =
        json!({"username": "eve", "password": "x".repeat(9 * 1024 * 1024), "roles": ["viewer"]});
    let (status, headers, body) = raw(
        &server,
        Method::POST,
        "/api/v1/users",
        &[],
        Some(&big.to_string()),
    )
    .await;
    assert_eq!(status, StatusCode::PAYLOAD_TOO_LARGE);
    let doc = problem(&headers, &body);
    assert_eq!(doc["title"], "Content Too Large", "{doc}");

    // A wrong method on a route that exists is 405 with the methods it has, not 403.
    let (status, headers, body) = raw(&server, Method::DELETE, "/api/v1/findings", &[], None).await;
    assert_eq!(status, StatusCode::METHOD_NOT_ALLOWED, "{body}");
    assert_eq!(headers["allow"], "GET");
    assert_eq!(problem(&headers, &body)["title"], "Method Not Allowed");

    // A body that is not JSON at all.
    let (status, headers, body) = raw(
        &server,
        Method::POST,
        "/api/v1/users",
        &[],
        Some("{\"username\": "),
    )
    .await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert_eq!(problem(&headers, &body)["title"], "Bad Request");
    server.finish().await;
}

#[tokio::test]
async fn bad_values_are_named_not_echoed() {
    let server = Server::start(Db::Sqlite).await;
    let huge = "h".repeat(200_000);
    let content = format!("hostname,env\n{huge}-,prod\n");
    let (status, headers, body) = raw(
        &server,
        Method::POST,
        "/api/v1/assets/import",
        &[],
        Some(&json!({"format": "csv", "content": content}).to_string()),
    )
    .await;
    assert_eq!(
        status,
        StatusCode::UNPROCESSABLE_ENTITY,
        "{}",
        &body[..200.min(body.len())]
    );
    let doc = problem(&headers, &body);
    let detail = doc["detail"].as_str().unwrap();
    assert!(
        detail.chars().count() <= 513,
        "detail of {} characters",
        detail.chars().count()
    );
    assert!(body.len() < 2048, "the answer is {} bytes", body.len());
    assert!(detail.ends_with('…'), "cut, and says so: {detail}");
    server.finish().await;
}

#[tokio::test]
async fn control_characters_in_text_are_refused_and_nothing_is_stored() {
    let mut server = Server::start(Db::Sqlite).await;
    server.user("olivia", &["operator"], &[]).await;
    for (title, what) in [
        ("KEV fixes\0", "a NUL character"),
        ("fix \u{202e}lanigiro", "a bidirectional control character"),
        ("\u{1b}[2Jcleared", "a control character"),
    ] {
        let body = common::targets_change(title, "normal", "openssl", "3.0.15-1", "env=prod");
        let answer = server
            .call(Method::POST, "/api/v1/changes", "olivia", Some(body))
            .await;
        let detail = answer.refused(StatusCode::UNPROCESSABLE_ENTITY);
        assert!(detail.contains(what), "{detail}");
        assert_eq!(answer.json["field"], "title", "{}", answer.json);
        assert!(
            !detail.contains("lanigiro"),
            "the text is not echoed: {detail}"
        );
    }
    // Line breaks and tabs are text, not control: a multi-line title is accepted.
    let body = common::targets_change(
        "two\nlines\tok",
        "normal",
        "openssl",
        "3.0.15-1",
        "env=prod",
    );
    server
        .call(Method::POST, "/api/v1/changes", "olivia", Some(body))
        .await
        .ok(StatusCode::CREATED);
    let changes = server.get("/api/v1/changes").await;
    let listed = changes["items"].as_array().or(changes.as_array()).unwrap();
    assert_eq!(listed.len(), 1, "only the good change is stored: {changes}");
    server.assert_chain_intact().await;
    server.finish().await;
}

#[tokio::test]
async fn answers_carry_hardening_headers() {
    let server = Server::start(Db::Sqlite).await;
    let (status, headers, _) = raw(&server, Method::GET, "/api/v1/whoami", &[], None).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(headers["x-content-type-options"], "nosniff");
    assert_eq!(headers["x-frame-options"], "DENY");
    let policy = headers["content-security-policy"].to_str().unwrap();
    assert!(policy.contains("default-src 'none'") && policy.contains("frame-ancestors 'none'"));

    // Refusals too.
    let (status, headers, _) = raw(&server, Method::GET, "/no/such/route", &[], None).await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    assert_eq!(headers["x-content-type-options"], "nosniff");

    // The Swagger UI loads only its own scripts and cannot be framed.
    let (status, headers, page) = raw(&server, Method::GET, "/api/docs/", &[], None).await;
    assert_eq!(status, StatusCode::OK, "{page}");
    let policy = headers["content-security-policy"].to_str().unwrap();
    assert!(policy.contains("script-src 'self'"), "{policy}");
    assert!(policy.contains("frame-ancestors 'none'"), "{policy}");
    assert!(!policy.contains("unsafe-eval"), "{policy}");
    assert!(
        !page.contains("<script>"),
        "the vendored page has no inline script"
    );
    assert_eq!(headers["x-frame-options"], "DENY");
    server.finish().await;
}

#[tokio::test]
async fn a_loopback_server_answers_only_to_loopback_names() {
    let server = Server::start(Db::Sqlite).await;
    for host in ["127.0.0.1:8470", "localhost:8470", "[::1]:8470"] {
        let (status, _, body) = raw(
            &server,
            Method::GET,
            "/api/v1/whoami",
            &[("host", host)],
            None,
        )
        .await;
        assert_eq!(status, StatusCode::OK, "{host}: {body}");
    }
    // A page on a rebound name reaches the server but gets nothing.
    let (status, headers, body) = raw(
        &server,
        Method::POST,
        "/api/v1/login",
        &[("host", "rebind.evil.example:8470")],
        Some(r#"{"username":"admin","password":"first-admin-password"}"#),
    )
    .await;
    assert_eq!(status, StatusCode::MISDIRECTED_REQUEST);
    assert!(!body.contains("token"), "{body}");
    assert_eq!(problem(&headers, &body)["status"], 421);
    server.finish().await;
}

#[tokio::test]
async fn csv_exports_carry_no_formulas() {
    let server = Server::start(Db::Sqlite).await;
    let record = json!({"hostname": "web9", "environment": "prod", "vars": {"note": "=HYPERLINK(\"http://evil\",\"x\")"}});
    let answer = server
        .call(Method::PUT, "/api/v1/assets/web9", "admin", Some(record))
        .await;
    assert!(answer.status.is_success(), "{}", answer.json);
    let (status, _, csv) = raw(
        &server,
        Method::GET,
        "/api/v1/assets/export?format=csv",
        &[],
        None,
    )
    .await;
    assert_eq!(status, StatusCode::OK);
    assert!(csv.contains("'=HYPERLINK"), "{csv}");
    assert!(
        !csv.contains(",\"=HYPERLINK") && !csv.contains(",=HYPERLINK"),
        "{csv}"
    );
    server.finish().await;
}
