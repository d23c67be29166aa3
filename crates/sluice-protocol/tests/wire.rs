//! The protocol against the real server: every request type round-trips through its JSON, and
//! answers of an in-process server parse into the protocol's types and serialise back to the
//! very same JSON (so a field renamed on one side, or left out of a type, fails here).

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic, missing_docs)]

use axum::Router;
use axum::body::Body;
use axum::http::{Method, Request, StatusCode};
use ed25519_dalek::{Signer, SigningKey};
use http_body_util::BodyExt;
use serde::Serialize;
use serde::de::DeserializeOwned;
use serde_json::{Value, json};
use sluice_core::agent_auth;
use sluice_protocol::Empty;
use sluice_protocol::accounts::{
    ClearedLock, CreateToken, CreateUser, IssuedToken, LoginLock, LoginRequest, PasswordReset,
    ResetPassword, TokenView, UserChange, UserView, WhoAmI,
};
use sluice_protocol::agents::{
    AgentToken, AgentView, Challenge, ChallengeRequest, CreateEnrollmentToken, CreateJob, Enroll,
    Enrolled, InventoryDiff, InventoryRequest, IssuedEnrollmentToken, JobDraft, JobRecord,
    RemovedPackage, TokenRequest,
};
use sluice_protocol::assets::{AssetPage, AssetPatch, ImportRequest, ImportResult};
use sluice_protocol::audit::Verification;
use sluice_protocol::calendars::{
    CreateFreeze, CreateWindow, Deleted, FreezeExceptionRecord, FreezeRecord, RequestException,
    WindowRecord,
};
use sluice_protocol::changes::{ChangePage, CreateChange};
use sluice_protocol::deferrals::{ApproveBody, RenewBody, RevokeBody};
use sluice_protocol::findings::{
    CreateFeed, FeedRecord, FeedSyncReport, FindingsPage, PushInventory, PushReport,
};
use sluice_protocol::policies::{PolicyUpdate, PolicyView};
use sluice_protocol::problem::Problem;
use sluice_protocol::rollouts::{OperatorAction, RolloutRequest, RolloutView};
use sluice_server::settings::{Secret, Settings, SettingsLayer};
use tower::ServiceExt;

/// Reads `json` as `T` and writes it back: the same JSON (nulls aside, which optional fields may
/// leave out either way).
fn round_trip<T: Serialize + DeserializeOwned>(json: &Value) -> T {
    let typed: T = serde_json::from_value(json.clone())
        .unwrap_or_else(|e| panic!("{} does not read {json}: {e}", std::any::type_name::<T>()));
    let back = serde_json::to_value(&typed).unwrap();
    assert_eq!(
        without_nulls(&back),
        without_nulls(json),
        "{} changes the JSON",
        std::any::type_name::<T>()
    );
    typed
}

fn without_nulls(value: &Value) -> Value {
    match value {
        Value::Object(map) => Value::Object(
            map.iter()
                .filter(|(_, v)| !v.is_null())
                .map(|(k, v)| (k.clone(), without_nulls(v)))
                .collect(),
        ),
        Value::Array(items) => Value::Array(items.iter().map(without_nulls).collect()),
        other => other.clone(),
    }
}

#[test]
fn requests_round_trip() {
    round_trip::<LoginRequest>(
        &json!({"username": "alice", "password": "p", "token_name": "cli login",
        "expires_in": "30d", "roles": ["viewer", "operator"]}),
    );
    round_trip::<CreateToken>(&json!({"name": "ci", "roles": ["viewer"], "expires_in": "12h"}));
    round_trip::<CreateUser>(
        &json!({"username": "bob", "password": "a long enough password",
        "roles": ["approver"], "groups": ["cab"]}),
    );
    round_trip::<ResetPassword>(&json!({"password": "another long password"}));
    round_trip::<Empty>(&json!({}));
    round_trip::<CreateEnrollmentToken>(&json!({"expires_in": "1h"}));
    round_trip::<Enroll>(&json!({"enrollment_token": "slce_x", "hostname": "web-1",
        "public_key": "00", "labels": {"env": "prod"}}));
    round_trip::<ChallengeRequest>(&json!({"agent_id": "a-1"}));
    round_trip::<TokenRequest>(&json!({"agent_id": "a-1", "nonce": "n", "signature": "s"}));
    round_trip::<RemovedPackage>(&json!({"name": "openssl", "arch": "amd64"}));
    round_trip::<InventoryDiff>(
        &json!({"base": "h", "os_release": {"id": "debian", "version_id": "12"},
        "added": [], "removed": [{"name": "curl", "arch": null}], "reboot_required": false}),
    );
    round_trip::<CreateJob>(
        &json!({"host": "web-1", "job": {"targets": [{"package": "curl", "version": "1"}]}}),
    );
    round_trip::<JobDraft>(&json!({"targets": [{"package": "curl", "version": "1"}]}));
    round_trip::<AssetPatch>(&json!({"set": {"environment": "prod", "tags": "web,edge"}}));
    round_trip::<ImportRequest>(
        &json!({"format": "ansible-ini", "content": "[web]\nweb-1\n", "source_name": "hosts.ini"}),
    );
    round_trip::<CreateWindow>(&json!({"name": "nights", "scope": "group=db", "definition":
        {"rrule": "FREQ=WEEKLY;BYDAY=TU", "start": "22:00", "duration": "4h", "tz": "Europe/Berlin", "offset_days": 0}}));
    round_trip::<CreateFreeze>(&json!({"name": "release", "scope": "", "definition":
        {"tz": "UTC", "rule": {"kind": "range", "from": "2027-12-01T00:00:00Z", "until": "2027-12-08T00:00:00Z"}}}));
    round_trip::<RequestException>(&json!({"scope": "group=db", "from": "2027-12-02T20:00:00Z",
        "until": "2027-12-03T02:00:00Z", "justification": "exploited"}));
    round_trip::<CreateChange>(&json!({"title": "openssl", "type": "normal",
        "targets": [{"package": "openssl", "version": "3.0.15-1~deb12u1", "ecosystem": "Debian:12"}],
        "pins": [], "scope": "env=prod", "update_types": ["security"], "justification": "DSA"}));
    round_trip::<ApproveBody>(&json!({}));
    round_trip::<RenewBody>(
        &json!({"expires_at": "2027-01-01T00:00:00Z", "justification": "still"}),
    );
    round_trip::<RevokeBody>(&json!({"reason": "fixed"}));
    round_trip::<CreateFeed>(
        &json!({"name": "kev", "kind": "kev", "source": "/tmp/kev.json", "interval": "6h"}),
    );
    round_trip::<PushInventory>(
        &json!({"format": "dpkg-status", "content": "", "ecosystem": "Debian:12"}),
    );
    round_trip::<PolicyUpdate>(&json!({"toml": "version = 1", "based_on": 1}));
    round_trip::<RolloutRequest>(&json!({"change": "CHG-1", "override_rolled_back": false,
        "resume_on_resolve": true, "job": {"checks": [], "rollback": {"on_failure": "rollback"},
        "preflight": {"free_space": [], "quiesce": [], "watched_files": []}}}));
    for action in [
        json!({"action": "pause", "reason": "why"}),
        json!({"action": "resume"}),
        json!({"action": "approve-gate", "to_ring": 1}),
        json!({"action": "reset-breaker"}),
        json!({"action": "retry", "host": "web-1"}),
    ] {
        round_trip::<OperatorAction>(&action);
    }
}

struct Server {
    app: Router,
    dir: tempfile::TempDir,
}

async fn server() -> Server {
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
    let app = sluice_server::app(store, settings, None, Default::default()).unwrap();
    Server { app, dir }
}

impl Server {
    /// Sends a typed body, expects `status`, and reads the answer as `T` (round-tripped).
    async fn call<T: Serialize + DeserializeOwned>(
        &self,
        method: Method,
        path: &str,
        token: Option<&str>,
        body: Option<&impl Serialize>,
        status: StatusCode,
    ) -> T {
        let mut request = Request::builder().method(method.clone()).uri(path);
        if let Some(token) = token {
            request = request.header("authorization", format!("Bearer {token}"));
        }
        let request = match body {
            Some(body) => request
                .header("content-type", "application/json")
                .body(Body::from(serde_json::to_vec(body).unwrap()))
                .unwrap(),
            None => request.body(Body::empty()).unwrap(),
        };
        let response = self.app.clone().oneshot(request).await.unwrap();
        let got = response.status();
        let bytes = response.into_body().collect().await.unwrap().to_bytes();
        let json: Value = serde_json::from_slice(&bytes).unwrap_or(Value::Null);
        assert_eq!(got, status, "{method} {path}: {json}");
        round_trip(&json)
    }

    async fn get<T: Serialize + DeserializeOwned>(&self, path: &str, token: &str) -> T {
        self.call(Method::GET, path, Some(token), None::<&()>, StatusCode::OK)
            .await
    }
}

#[tokio::test]
async fn real_answers_parse_into_the_protocol() {
    let server = server().await;
    let ok = StatusCode::OK;
    let created = StatusCode::CREATED;
    let issued: IssuedToken = server
        .call(
            Method::POST,
            "/api/v1/login",
            None,
            Some(&LoginRequest {
                username: "admin".into(),
                password: "first-admin-password".into(),
                token_name: Some("test".into()),
                expires_in: None,
                roles: None,
            }),
            ok,
        )
        .await;
    let admin = issued.token.as_str();
    let me: WhoAmI = server.get("/api/v1/whoami", admin).await;
    assert_eq!(me.username, "admin");

    // Accounts.
    let user: UserView = server
        .call(
            Method::POST,
            "/api/v1/users",
            Some(admin),
            Some(&json!({"username": "bob", "password": "a long enough password", "roles": ["approver"], "groups": ["cab"]})),
            created,
        )
        .await;
    assert_eq!(user.username, "bob");
    let _: Vec<UserView> = server.get("/api/v1/users", admin).await;
    let _: IssuedToken = server
        .call(
            Method::POST,
            "/api/v1/tokens",
            Some(admin),
            Some(&json!({"name": "ci", "expires_in": "1h"})),
            created,
        )
        .await;
    let tokens: Vec<TokenView> = server.get("/api/v1/tokens", admin).await;
    assert!(!tokens.is_empty());
    let _: UserChange = server
        .call(
            Method::POST,
            "/api/v1/users/bob/disable",
            Some(admin),
            Some(&Empty {}),
            ok,
        )
        .await;
    let reset: PasswordReset = server
        .call(
            Method::POST,
            "/api/v1/users/bob/password",
            Some(admin),
            Some(&ResetPassword { password: None }),
            ok,
        )
        .await;
    assert!(reset.password.is_some());
    let _: Vec<LoginLock> = server.get("/api/v1/login-locks", admin).await;
    let none: Problem = server
        .call(
            Method::DELETE,
            "/api/v1/login-locks?account=bob",
            Some(admin),
            None::<&()>,
            StatusCode::NOT_FOUND,
        )
        .await;
    assert_eq!(none.status, 404);
    round_trip::<ClearedLock>(&json!({"account": "bob", "address": null, "failures_cleared": 3}));
    let problem: Problem = server
        .call(
            Method::GET,
            "/api/v1/whoami",
            Some("slc_nope"),
            None::<&()>,
            StatusCode::UNAUTHORIZED,
        )
        .await;
    assert_eq!(problem.status, 401);

    // The agent protocol, end to end.
    let enrollment: IssuedEnrollmentToken = server
        .call(
            Method::POST,
            "/api/v1/agents/enrollment-tokens",
            Some(admin),
            Some(&CreateEnrollmentToken {
                expires_in: "1h".into(),
            }),
            created,
        )
        .await;
    let key = SigningKey::from_bytes(&[7; 32]);
    let enrolled: Enrolled = server
        .call(
            Method::POST,
            "/api/v1/agent/enroll",
            None,
            Some(&Enroll {
                enrollment_token: enrollment.token,
                hostname: "web-1".into(),
                public_key: agent_auth::to_hex(key.verifying_key().as_bytes()),
                labels: [("env".to_owned(), "prod".to_owned())].into(),
            }),
            created,
        )
        .await;
    let challenge: Challenge = server
        .call(
            Method::POST,
            "/api/v1/agent/challenge",
            None,
            Some(&ChallengeRequest {
                agent_id: enrolled.agent_id.clone(),
            }),
            ok,
        )
        .await;
    let signature = key.sign(&agent_auth::challenge_message(
        &enrolled.agent_id,
        &challenge.nonce,
    ));
    let agent: AgentToken = server
        .call(
            Method::POST,
            "/api/v1/agent/token",
            None,
            Some(&TokenRequest {
                agent_id: enrolled.agent_id.clone(),
                nonce: challenge.nonce,
                signature: agent_auth::to_hex(&signature.to_bytes()),
            }),
            ok,
        )
        .await;
    let requested: InventoryRequest = server
        .get("/api/v1/agent/inventory-request", &agent.token)
        .await;
    assert!(!requested.requested);
    let agents: Vec<AgentView> = server.get("/api/v1/agents", admin).await;
    assert_eq!(agents[0].hostname, "web-1");

    // Jobs.
    let draft = JobDraft {
        targets: vec![sluice_core::job::Target {
            package: "curl".into(),
            version: "7.88.1-10+deb12u8".into(),
        }],
        idempotency_key: Some("wire-1".into()),
    };
    let queued: JobRecord = server
        .call(
            Method::POST,
            "/api/v1/jobs",
            Some(admin),
            Some(&CreateJob {
                host: "web-1".into(),
                job: serde_json::to_value(&draft).unwrap(),
            }),
            created,
        )
        .await;
    assert_eq!(queued.state, sluice_core::job::JobState::Queued);
    let jobs: Vec<JobRecord> = server.get("/api/v1/jobs", admin).await;
    assert_eq!(jobs[0].job.id, queued.job.id);
    let _: JobRecord = server
        .get(&format!("/api/v1/jobs/{}", queued.job.id), admin)
        .await;

    // Inventory and findings.
    let pushed: PushReport = server
        .call(
            Method::PUT,
            "/api/v1/inventories/db-1",
            Some(admin),
            Some(&PushInventory {
                format: "dpkg-status".into(),
                content: "Package: curl\nStatus: install ok installed\nArchitecture: amd64\nVersion: 7.88.1-10\n\n".into(),
                os_release: None,
                ecosystem: Some("Debian:12".into()),
            }),
            ok,
        )
        .await;
    assert_eq!(pushed.packages, 1);
    let _: FindingsPage = server.get("/api/v1/findings", admin).await;
    let feeds = server.dir.path().join("feeds");
    std::fs::create_dir_all(&feeds).unwrap();
    let kev = feeds.join("kev.json");
    std::fs::write(&kev, r#"{"vulnerabilities": []}"#).unwrap();
    let _: FeedRecord = server
        .call(
            Method::POST,
            "/api/v1/feeds",
            Some(admin),
            Some(&json!({"name": "kev", "kind": "kev", "source": kev.to_str().unwrap()})),
            created,
        )
        .await;
    let _: Vec<FeedRecord> = server.get("/api/v1/feeds", admin).await;
    let synced: FeedSyncReport = server
        .call(
            Method::POST,
            "/api/v1/feeds/kev/sync",
            Some(admin),
            None::<&()>,
            ok,
        )
        .await;
    assert_eq!(synced.feed.name, "kev");

    // The CMDB.
    let imported: ImportResult = server
        .call(
            Method::POST,
            "/api/v1/assets/import",
            Some(admin),
            Some(&ImportRequest {
                format: sluice_protocol::assets::ImportFormat::Csv,
                content: "hostname,environment\nweb-2,prod\n".into(),
                source_name: None,
            }),
            ok,
        )
        .await;
    assert_eq!(imported.assets, 1);
    let page: AssetPage = server.get("/api/v1/assets", admin).await;
    assert!(page.total >= 1);

    // Calendars.
    let window: WindowRecord = server
        .call(
            Method::POST,
            "/api/v1/windows",
            Some(admin),
            Some(&json!({"name": "nights", "definition": {"rrule": "FREQ=WEEKLY;BYDAY=TU", "start": "22:00", "duration": "4h", "tz": "UTC"}})),
            created,
        )
        .await;
    assert_eq!(window.name, "nights");
    let _: Vec<WindowRecord> = server.get("/api/v1/windows", admin).await;
    let _: FreezeRecord = server
        .call(
            Method::POST,
            "/api/v1/freezes",
            Some(admin),
            Some(&json!({"name": "release", "definition": {"rule": {"kind": "range", "from": "2027-12-01T00:00:00Z", "until": "2027-12-08T00:00:00Z"}}})),
            created,
        )
        .await;
    let _: Vec<FreezeRecord> = server.get("/api/v1/freezes", admin).await;
    let _: UserView = server
        .call(
            Method::POST,
            "/api/v1/users",
            Some(admin),
            Some(&CreateUser {
                username: "olivia".into(),
                password: "a long enough password".into(),
                roles: vec![sluice_core::access::Role::Operator],
                groups: Default::default(),
            }),
            created,
        )
        .await;
    let operator: IssuedToken = server
        .call(
            Method::POST,
            "/api/v1/login",
            None,
            Some(&json!({"username": "olivia", "password": "a long enough password"})),
            ok,
        )
        .await;
    let _: FreezeExceptionRecord = server
        .call(
            Method::POST,
            "/api/v1/freezes/release/exceptions",
            Some(operator.token.as_str()),
            Some(&json!({"from": "2027-12-02T20:00:00Z", "until": "2027-12-03T02:00:00Z", "justification": "exploited"})),
            created,
        )
        .await;
    let _: Vec<FreezeExceptionRecord> = server.get("/api/v1/freeze-exceptions", admin).await;
    let deleted: Deleted = server
        .call(
            Method::DELETE,
            "/api/v1/windows/nights",
            Some(admin),
            None::<&()>,
            ok,
        )
        .await;
    assert_eq!(deleted.deleted, "nights");

    // Changes, rollouts, policies, audit.
    let _: ChangePage = server.get("/api/v1/changes", admin).await;
    let _: Vec<RolloutView> = server.get("/api/v1/rollouts", admin).await;
    let _: PolicyView = server.get("/api/v1/policies/cab", admin).await;
    let _: Verification = server.get("/api/v1/audit/verify", admin).await;
}
