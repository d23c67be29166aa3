//! The agent protocol in process, on SQLite and PostgreSQL: one-time enrollment, signed
//! challenges for short-lived tokens, inventory with findings, jobs queued once per idempotency
//! key, long polls woken by a new job, one agent unable to touch another's jobs, revocation that
//! cuts an agent off at once, and every decision in an intact audit chain.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use axum::Router;
use axum::body::Body;
use axum::http::{Method, Request, StatusCode};
use ed25519_dalek::{Signer, SigningKey};
use http_body_util::BodyExt;
use serde_json::{Value, json};
use sluice_core::agent_auth;
use sluice_server::settings::{Secret, Settings, SettingsLayer};
use sqlx::Connection;
use tower::ServiceExt;

const STATUS: &str = include_str!("../../../examples/debian11-web/status");
const OS_RELEASE: &str = include_str!("../../../examples/debian11-web/os-release");
const DSA: &str = include_str!("../../../examples/feeds/DSA-list");

/// An installed binary package of the example host: (name, source, source version).
type Installed = (String, String, String);

/// The example host's installed packages, read from its status file without Sluice.
fn installed_packages() -> Vec<Installed> {
    let mut packages = Vec::new();
    for paragraph in STATUS.split("\n\n") {
        let field = |name: &str| {
            paragraph
                .lines()
                .find_map(|l| l.strip_prefix(&format!("{name}: ")))
                .map(str::to_owned)
        };
        if field("Status").as_deref() != Some("install ok installed") {
            continue;
        }
        let package = field("Package").unwrap();
        let version = field("Version").unwrap();
        let (source, source_version) = match field("Source") {
            None => (package.clone(), version),
            Some(s) => match s.split_once(" (") {
                Some((name, v)) => (name.to_owned(), v.trim_end_matches(')').to_owned()),
                None => (s, version),
            },
        };
        packages.push((package, source, source_version));
    }
    packages
}

/// `dpkg --compare-versions a lt b`: the reference order.
fn dpkg_lt(a: &str, b: &str) -> bool {
    let status = std::process::Command::new("dpkg")
        .args(["--compare-versions", a, "lt", b])
        .status()
        .expect("dpkg must be installed (apt-get install dpkg)");
    match status.code() {
        Some(0) => true,
        Some(1) => false,
        other => panic!("dpkg --compare-versions {a} lt {b} failed: {other:?}"),
    }
}

/// The findings (advisory, binary package) a host with `packages` must have against the DSA
/// list, computed without Sluice: every installed binary whose source version dpkg orders
/// below a bullseye fix for its source.
fn expected_findings(packages: &[Installed]) -> std::collections::BTreeSet<(String, String)> {
    let mut fixes = Vec::new();
    let mut advisory = String::new();
    for line in DSA.lines() {
        if line.starts_with('[') {
            advisory = line.split_whitespace().nth(3).unwrap().to_owned();
        } else if let Some(rest) = line.trim().strip_prefix("[bullseye] - ") {
            let mut words = rest.split_whitespace();
            let (source, fixed) = (words.next().unwrap(), words.next().unwrap());
            if !fixed.starts_with('<') {
                fixes.push((advisory.clone(), source.to_owned(), fixed.to_owned()));
            }
        }
    }
    let mut expected = std::collections::BTreeSet::new();
    for (package, source, version) in packages {
        for (advisory, fix_source, fixed) in &fixes {
            if fix_source == source && dpkg_lt(version, fixed) {
                expected.insert((advisory.clone(), package.clone()));
            }
        }
    }
    expected
}

/// The open findings the server lists for `host`, as (advisory, package).
async fn open_findings(
    app: &Router,
    admin: &str,
    host: &str,
) -> std::collections::BTreeSet<(String, String)> {
    let (status, page) = call(
        app,
        Method::GET,
        &format!("/api/v1/findings?host={host}&limit=1000"),
        Some(admin),
        None,
    )
    .await;
    assert_eq!(status, StatusCode::OK, "{page}");
    page["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|f| {
            (
                f["advisory"].as_str().unwrap().to_owned(),
                f["package"].as_str().unwrap().to_owned(),
            )
        })
        .collect()
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
    (
        status,
        serde_json::from_slice(&bytes).unwrap_or(Value::Null),
    )
}

struct TestAgent {
    id: String,
    key: SigningKey,
}

fn key(seed: u8) -> SigningKey {
    SigningKey::from_bytes(&[seed; 32])
}

async fn enroll(
    app: &Router,
    enrollment: &str,
    hostname: &str,
    key: &SigningKey,
) -> (StatusCode, Value) {
    call(
        app,
        Method::POST,
        "/api/v1/agent/enroll",
        None,
        Some(json!({
            "enrollment_token": enrollment,
            "hostname": hostname,
            "public_key": agent_auth::to_hex(key.verifying_key().as_bytes()),
            "labels": {"env": "prod"}
        })),
    )
    .await
}

/// Signs a fresh challenge with `signer` on behalf of agent `id`.
async fn token_for(app: &Router, id: &str, signer: &SigningKey) -> (StatusCode, Value) {
    let (status, challenge) = call(
        app,
        Method::POST,
        "/api/v1/agent/challenge",
        None,
        Some(json!({"agent_id": id})),
    )
    .await;
    if status != StatusCode::OK {
        return (status, challenge);
    }
    let nonce = challenge["nonce"].as_str().unwrap();
    let signature = signer.sign(&agent_auth::challenge_message(id, nonce));
    call(
        app,
        Method::POST,
        "/api/v1/agent/token",
        None,
        Some(json!({"agent_id": id, "nonce": nonce, "signature": agent_auth::to_hex(&signature.to_bytes())})),
    )
    .await
}

/// A long poll (30 s) started in the background; returns once the server holds it.
async fn long_poll(app: &Router, token: &str) -> tokio::task::JoinHandle<(StatusCode, Value)> {
    let (app, token) = (app.clone(), token.to_owned());
    let waiting = tokio::spawn(async move {
        call(
            &app,
            Method::GET,
            "/api/v1/agent/jobs/next?wait=30",
            Some(&token),
            None,
        )
        .await
    });
    tokio::time::sleep(std::time::Duration::from_millis(200)).await;
    waiting
}

fn report(job: &Value, outcome: &str) -> Value {
    json!({
        "job_id": job["id"],
        "idempotency_key": job["idempotency_key"],
        "outcome": outcome,
        "steps": [],
        "versions_before": {"openssl": "1.1.1n-0+deb11u3"},
        "versions_after": {"openssl": "1.1.1w-0+deb11u1"}
    })
}

async fn protocol(database_url: Option<String>) {
    let dir = tempfile::tempdir().unwrap();
    let settings = Settings::from_layer(SettingsLayer {
        data_dir: Some(dir.path().to_owned()),
        database_url: database_url.map(Secret::new),
        admin_password: Some(Secret::new("first-admin-password")),
        max_body_bytes: Some(32 * 1024 * 1024),
        feed_dirs: Some(vec![dir.path().join("feeds")]),
        ..SettingsLayer::default()
    })
    .unwrap();
    let store = sluice_server::open_store(&settings).await.unwrap();
    sluice_server::ensure_admin(&store, &settings)
        .await
        .unwrap();
    let app = sluice_server::app(store.clone(), settings, None, Default::default()).unwrap();
    let (_, login) = call(
        &app,
        Method::POST,
        "/api/v1/login",
        None,
        Some(json!({"username": "admin", "password": "first-admin-password"})),
    )
    .await;
    let admin = login["token"].as_str().unwrap().to_owned();

    // A feed, so the agent's inventory has findings.
    let feed = dir.path().join("feeds/DSA-list");
    std::fs::create_dir_all(dir.path().join("feeds")).unwrap();
    std::fs::write(&feed, DSA).unwrap();
    call(
        &app,
        Method::POST,
        "/api/v1/feeds",
        Some(&admin),
        Some(json!({"name": "dsa", "kind": "advisories", "source": feed})),
    )
    .await;
    let (status, _) = call(
        &app,
        Method::POST,
        "/api/v1/feeds/dsa/sync",
        Some(&admin),
        None,
    )
    .await;
    assert_eq!(status, StatusCode::OK);

    // One-time enrollment tokens.
    let (status, issued) = call(
        &app,
        Method::POST,
        "/api/v1/agents/enrollment-tokens",
        Some(&admin),
        Some(json!({"expires_in": "1h"})),
    )
    .await;
    assert_eq!(status, StatusCode::CREATED, "{issued}");
    let first = issued["token"].as_str().unwrap().to_owned();
    let (status, too_long) = call(
        &app,
        Method::POST,
        "/api/v1/agents/enrollment-tokens",
        Some(&admin),
        Some(json!({"expires_in": "30d"})),
    )
    .await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY, "{too_long}");

    let (status, enrolled) = enroll(&app, &first, "web1", &key(1)).await;
    assert_eq!(status, StatusCode::CREATED, "{enrolled}");
    let web1 = TestAgent {
        id: enrolled["agent_id"].as_str().unwrap().to_owned(),
        key: key(1),
    };
    let (status, again) = enroll(&app, &first, "web9", &key(9)).await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
    assert!(
        again["detail"].as_str().unwrap().contains("already used"),
        "{again}"
    );
    let (status, bad_key) = enroll(&app, "slce_nope", "web9", &key(9)).await;
    assert_eq!(status, StatusCode::UNAUTHORIZED, "{bad_key}");

    let (_, issued) = call(
        &app,
        Method::POST,
        "/api/v1/agents/enrollment-tokens",
        Some(&admin),
        Some(json!({"expires_in": "1h"})),
    )
    .await;
    let (status, enrolled) = enroll(&app, issued["token"].as_str().unwrap(), "web2", &key(2)).await;
    assert_eq!(status, StatusCode::CREATED);
    let web2 = TestAgent {
        id: enrolled["agent_id"].as_str().unwrap().to_owned(),
        key: key(2),
    };
    // A second agent for a host that has one is refused.
    let (_, issued) = call(
        &app,
        Method::POST,
        "/api/v1/agents/enrollment-tokens",
        Some(&admin),
        Some(json!({"expires_in": "1h"})),
    )
    .await;
    let (status, twice) = enroll(&app, issued["token"].as_str().unwrap(), "web1", &key(3)).await;
    assert_eq!(status, StatusCode::CONFLICT, "{twice}");

    // Tokens for signatures: only the enrolled key's signature counts, and a nonce works once.
    let (status, forged) = token_for(&app, &web1.id, &web2.key).await;
    assert_eq!(status, StatusCode::UNAUTHORIZED, "{forged}");
    let (status, issued) = token_for(&app, &web1.id, &web1.key).await;
    assert_eq!(status, StatusCode::OK, "{issued}");
    let token1 = issued["token"].as_str().unwrap().to_owned();
    assert!(token1.starts_with("slca_"));
    let expires: jiff::Timestamp = issued["expires_at"].as_str().unwrap().parse().unwrap();
    let lifetime = expires.duration_since(jiff::Timestamp::now());
    assert!(
        lifetime <= jiff::SignedDuration::from_mins(15),
        "{lifetime:?}"
    );
    let (_, challenge) = call(
        &app,
        Method::POST,
        "/api/v1/agent/challenge",
        None,
        Some(json!({"agent_id": web1.id})),
    )
    .await;
    let nonce = challenge["nonce"].as_str().unwrap();
    let signature = agent_auth::to_hex(
        &web1
            .key
            .sign(&agent_auth::challenge_message(&web1.id, nonce))
            .to_bytes(),
    );
    let body = json!({"agent_id": web1.id, "nonce": nonce, "signature": signature});
    assert_eq!(
        call(
            &app,
            Method::POST,
            "/api/v1/agent/token",
            None,
            Some(body.clone())
        )
        .await
        .0,
        StatusCode::OK
    );
    assert_eq!(
        call(&app, Method::POST, "/api/v1/agent/token", None, Some(body))
            .await
            .0,
        StatusCode::UNAUTHORIZED,
        "a nonce is good once"
    );
    let (_, issued) = token_for(&app, &web2.id, &web2.key).await;
    let token2 = issued["token"].as_str().unwrap().to_owned();

    // Agent tokens open agent routes only; user tokens do not open agent routes.
    assert_eq!(
        call(&app, Method::GET, "/api/v1/findings", Some(&token1), None)
            .await
            .0,
        StatusCode::FORBIDDEN
    );
    assert_eq!(
        call(
            &app,
            Method::GET,
            "/api/v1/agent/jobs/next?wait=0",
            Some(&admin),
            None
        )
        .await
        .0,
        StatusCode::FORBIDDEN
    );

    // Inventory from the agent: the host appears in the CMDB and its findings follow.
    let packages = sluice_core::inventory::dpkg::parse_status("status", STATUS).unwrap();
    let os_release = sluice_core::inventory::OsRelease::parse("os-release", OS_RELEASE).unwrap();
    let inventory = json!({
        "taken_at": jiff::Timestamp::now(),
        "hostname": "web1",
        "os_release": os_release,
        "kernel": "5.10.0-28-amd64",
        "arch": "amd64",
        "package_manager": "dpkg",
        "packages": packages,
        "reboot_required": false
    });
    let (status, pushed) = call(
        &app,
        Method::PUT,
        "/api/v1/agent/inventory",
        Some(&token1),
        Some(inventory),
    )
    .await;
    assert_eq!(status, StatusCode::OK, "{pushed}");
    assert_eq!(pushed["hostname"], "web1", "the host comes from the token");
    // The findings are exactly those dpkg's order gives, and each was opened by this push.
    let installed = installed_packages();
    let before = expected_findings(&installed);
    assert!(before.len() > 50, "the example host has many findings");
    assert_eq!(
        pushed["findings"]["opened"].as_u64(),
        Some(before.len() as u64),
        "{pushed}"
    );
    assert_eq!(open_findings(&app, &admin, "web1").await, before);
    let (status, asset) = call(&app, Method::GET, "/api/v1/assets/web1", Some(&admin), None).await;
    assert_eq!(status, StatusCode::OK, "{asset}");

    // Later inventories travel as diffs against the hash the server answered with.
    let base = pushed["package_hash"].as_str().unwrap().to_owned();
    let diff = |base: &str| {
        json!({
            "base": base,
            "os_release": os_release,
            "added": [{"name": "openssl", "version": "9.9.9-1", "arch": "amd64", "source_name": "openssl", "source_version": "9.9.9-1"},
                      {"name": "libssl1.1", "version": "9.9.9-1", "arch": "amd64", "source_name": "openssl", "source_version": "9.9.9-1"}],
            "removed": [{"name": "curl", "arch": "amd64"}]
        })
    };
    let (status, stale) = call(
        &app,
        Method::PATCH,
        "/api/v1/agent/inventory",
        Some(&token1),
        Some(diff("not-the-base")),
    )
    .await;
    assert_eq!(status, StatusCode::CONFLICT, "{stale}");
    let (status, patched) = call(
        &app,
        Method::PATCH,
        "/api/v1/agent/inventory",
        Some(&token1),
        Some(diff(&base)),
    )
    .await;
    assert_eq!(status, StatusCode::OK, "{patched}");
    assert_eq!(
        patched["packages"].as_u64(),
        pushed["packages"].as_u64().map(|n| n - 1),
        "curl removed, two replaced"
    );
    // The newer openssl closes its findings and curl's go with it; nothing new opens.
    let patched_packages: Vec<Installed> = installed
        .iter()
        .filter(|(name, _, _)| name != "curl")
        .map(|(name, source, version)| match name.as_str() {
            "openssl" | "libssl1.1" => (name.clone(), source.clone(), "9.9.9-1".to_owned()),
            _ => (name.clone(), source.clone(), version.clone()),
        })
        .collect();
    let after = expected_findings(&patched_packages);
    let resolved = before.difference(&after).count();
    eprintln!(
        "web1: {} findings by dpkg's order, {resolved} resolved by the patch",
        before.len()
    );
    assert!(resolved > 0, "the patch must close some findings");
    assert_eq!(
        patched["findings"]["resolved"].as_u64(),
        Some(resolved as u64),
        "{patched}"
    );
    assert_eq!(
        patched["findings"]["opened"].as_u64(),
        Some(after.difference(&before).count() as u64),
        "{patched}"
    );
    assert_ne!(patched["package_hash"], pushed["package_hash"]);
    let open = open_findings(&app, &admin, "web1").await;
    assert_eq!(open, after);
    assert!(
        open.iter().all(|(_, p)| p != "openssl" && p != "curl"),
        "{open:?}"
    );

    // An operator asks for a fresh inventory: a waiting poll ends, the agent is told, and the
    // next inventory it sends answers the request.
    let waiting = long_poll(&app, &token1).await;
    let (status, _) = call(
        &app,
        Method::POST,
        "/api/v1/agents/web1/inventory-request",
        Some(&admin),
        None,
    )
    .await;
    assert_eq!(status, StatusCode::ACCEPTED);
    let (status, _) = tokio::time::timeout(std::time::Duration::from_secs(20), waiting)
        .await
        .expect("the request wakes the poll")
        .unwrap();
    assert_eq!(status, StatusCode::NO_CONTENT);
    let (_, asked) = call(
        &app,
        Method::GET,
        "/api/v1/agent/inventory-request",
        Some(&token1),
        None,
    )
    .await;
    assert_eq!(asked["requested"], true);
    let (_, asked_other) = call(
        &app,
        Method::GET,
        "/api/v1/agent/inventory-request",
        Some(&token2),
        None,
    )
    .await;
    assert_eq!(asked_other["requested"], false, "only web1 was asked");
    let (status, _) = call(
        &app,
        Method::PATCH,
        "/api/v1/agent/inventory",
        Some(&token1),
        Some(diff(patched["package_hash"].as_str().unwrap())),
    )
    .await;
    assert_eq!(status, StatusCode::OK);
    let (_, asked) = call(
        &app,
        Method::GET,
        "/api/v1/agent/inventory-request",
        Some(&token1),
        None,
    )
    .await;
    assert_eq!(asked["requested"], false);

    // A job, queued once per idempotency key.
    let job = json!({"host": "web1", "job": {"idempotency_key": "change-1/web1", "targets": [{"package": "openssl", "version": "1.1.1w-0+deb11u1"}]}});
    let (status, queued) = call(
        &app,
        Method::POST,
        "/api/v1/jobs",
        Some(&admin),
        Some(job.clone()),
    )
    .await;
    assert_eq!(status, StatusCode::CREATED, "{queued}");
    let (status, same) = call(&app, Method::POST, "/api/v1/jobs", Some(&admin), Some(job)).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(same["job"]["id"], queued["job"]["id"]);
    let (status, invalid) = call(&app, Method::POST, "/api/v1/jobs", Some(&admin), Some(json!({"host": "web1", "job": {"targets": [{"package": "openssl", "version": "not a version!"}]}}))).await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY, "{invalid}");
    let (status, nobody) = call(
        &app,
        Method::POST,
        "/api/v1/jobs",
        Some(&admin),
        Some(json!({"host": "db9", "job": {"targets": [{"package": "curl", "version": "7.74.0-1.3+deb11u11"}]}})),
    )
    .await;
    assert_eq!(status, StatusCode::NOT_FOUND, "{nobody}");

    // web2 sees nothing of web1's job; web1 claims it.
    let (status, _) = call(
        &app,
        Method::GET,
        "/api/v1/agent/jobs/next?wait=0",
        Some(&token2),
        None,
    )
    .await;
    assert_eq!(status, StatusCode::NO_CONTENT);
    let (status, claimed) = call(
        &app,
        Method::GET,
        "/api/v1/agent/jobs/next?wait=0",
        Some(&token1),
        None,
    )
    .await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(claimed["id"], queued["job"]["id"]);
    // Claimed and not reported: handed out again (a crash loses no job).
    let (_, again) = call(
        &app,
        Method::GET,
        "/api/v1/agent/jobs/next?wait=0",
        Some(&token1),
        None,
    )
    .await;
    assert_eq!(again["id"], claimed["id"]);
    let job_id = claimed["id"].as_str().unwrap().to_owned();
    let path = format!("/api/v1/agent/jobs/{job_id}/report");
    let (status, theirs) = call(
        &app,
        Method::POST,
        &path,
        Some(&token2),
        Some(report(&claimed, "succeeded")),
    )
    .await;
    assert_eq!(
        status,
        StatusCode::NOT_FOUND,
        "another agent's job: {theirs}"
    );
    let (status, done) = call(
        &app,
        Method::POST,
        &path,
        Some(&token1),
        Some(report(&claimed, "succeeded")),
    )
    .await;
    assert_eq!(status, StatusCode::OK, "{done}");
    assert_eq!(done["state"], "succeeded");
    assert_eq!(
        call(
            &app,
            Method::POST,
            &path,
            Some(&token1),
            Some(report(&claimed, "succeeded"))
        )
        .await
        .0,
        StatusCode::OK,
        "the same report again"
    );
    assert_eq!(
        call(
            &app,
            Method::POST,
            &path,
            Some(&token1),
            Some(report(&claimed, "failed"))
        )
        .await
        .0,
        StatusCode::CONFLICT
    );
    let (_, shown) = call(
        &app,
        Method::GET,
        &format!("/api/v1/jobs/{job_id}"),
        Some(&admin),
        None,
    )
    .await;
    assert_eq!(
        shown["report"]["versions_after"]["openssl"],
        "1.1.1w-0+deb11u1"
    );
    assert_eq!(
        call(
            &app,
            Method::GET,
            "/api/v1/agent/jobs/next?wait=0",
            Some(&token1),
            None
        )
        .await
        .0,
        StatusCode::NO_CONTENT
    );

    // A long poll is answered by a job queued while it waits.
    let waiting = long_poll(&app, &token2).await;
    let (status, _) = call(&app, Method::POST, "/api/v1/jobs", Some(&admin), Some(json!({"host": "web2", "job": {"id": "job-web2", "targets": [{"package": "curl", "version": "7.74.0-1.3+deb11u11"}]}}))).await;
    assert_eq!(status, StatusCode::CREATED);
    let (status, woken) = waiting.await.unwrap();
    assert_eq!(status, StatusCode::OK);
    assert_eq!(woken["id"], "job-web2");

    // Revocation cuts web1 off at once: its token, and new challenges.
    let (status, _) = call(
        &app,
        Method::POST,
        "/api/v1/agents/web1/revoke",
        Some(&admin),
        None,
    )
    .await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(
        call(
            &app,
            Method::GET,
            "/api/v1/agent/jobs/next?wait=0",
            Some(&token1),
            None
        )
        .await
        .0,
        StatusCode::UNAUTHORIZED
    );
    assert_eq!(
        token_for(&app, &web1.id, &web1.key).await.0,
        StatusCode::UNAUTHORIZED
    );
    // web2 is unaffected: its claimed, unreported job comes to it again.
    let (status, still) = call(
        &app,
        Method::GET,
        "/api/v1/agent/jobs/next?wait=0",
        Some(&token2),
        None,
    )
    .await;
    assert_eq!(
        (status, still["id"].as_str()),
        (StatusCode::OK, Some("job-web2"))
    );
    let (_, agents) = call(&app, Method::GET, "/api/v1/agents", Some(&admin), None).await;
    let listed: Vec<(&str, bool)> = agents
        .as_array()
        .unwrap()
        .iter()
        .map(|a| (a["hostname"].as_str().unwrap(), a["revoked_at"].is_string()))
        .collect();
    assert_eq!(listed, [("web1", true), ("web2", false)]);

    // Every decision is in the chain, and the chain is intact.
    let actions: Vec<String> = store
        .audit_events(None)
        .await
        .unwrap()
        .into_iter()
        .map(|e| e.action)
        .collect();
    for expected in [
        "agent.enrollment-token.create",
        "agent.enroll",
        "job.create",
        "job.claim",
        "job.report",
        "agent.revoke",
    ] {
        assert!(
            actions.iter().any(|a| a == expected),
            "{expected} in {actions:?}"
        );
    }
    assert_eq!(
        actions.iter().filter(|a| *a == "job.report").count(),
        1,
        "the repeated report is not recorded twice"
    );
    assert!(store.verify_audit().await.unwrap().is_ok());
    store.close().await;
}

#[tokio::test]
async fn the_agent_protocol_on_sqlite() {
    protocol(None).await;
}

#[tokio::test]
async fn the_agent_protocol_on_postgresql() {
    let admin_url = std::env::var("SLUICE_TEST_POSTGRES_URL")
        .unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432/postgres".to_owned());
    let name = format!("sluice_agents_{}", std::process::id());
    let mut conn = sqlx::PgConnection::connect(&admin_url).await.unwrap();
    sqlx::raw_sql(sqlx::AssertSqlSafe(format!("CREATE DATABASE {name}")))
        .execute(&mut conn)
        .await
        .unwrap();
    let (base, _) = admin_url.rsplit_once('/').unwrap();
    protocol(Some(format!("{base}/{name}"))).await;
    sqlx::raw_sql(sqlx::AssertSqlSafe(format!(
        "DROP DATABASE {name} WITH (FORCE)"
    )))
    .execute(&mut conn)
    .await
    .unwrap();
}
