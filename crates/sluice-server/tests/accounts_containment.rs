//! Containing a compromised account, in process, on SQLite and PostgreSQL (issue 11, items 2, 3
//! and 5): the first admin's password rule, disabling and enabling users, password resets,
//! token trees that are revoked together and never outlive or outrank their parent, admins
//! listing anyone's tokens, and login limits per account and per client address (shared by
//! replicas on one PostgreSQL, lifted by an admin). Also the case-insensitive `Bearer` scheme
//! and `Cache-Control: no-store` on answers that hold a secret.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::net::SocketAddr;

use axum::Router;
use axum::body::Body;
use axum::extract::ConnectInfo;
use axum::http::{HeaderMap, Method, Request, StatusCode};
use ed25519_dalek::{Signer, SigningKey};
use http_body_util::BodyExt;
use serde_json::{Value, json};
use sluice_core::agent_auth;
use sluice_server::settings::{Secret, Settings, SettingsLayer};
use sluice_store::Store;
use sqlx::Connection;
use tower::ServiceExt;

const ADMIN_PASSWORD: &str = "first-admin-password";
const PASSWORD: &str = "a long enough password";

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Db {
    Sqlite,
    Postgres,
}

fn admin_url() -> String {
    std::env::var("SLUICE_TEST_POSTGRES_URL")
        .unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432/postgres".to_owned())
}

/// A fresh PostgreSQL database: its URL and name.
async fn pg_database() -> (String, String) {
    let mut bytes = [0u8; 6];
    getrandom::fill(&mut bytes).unwrap();
    let name = format!(
        "sluice_accounts_test_{}",
        bytes.iter().map(|b| format!("{b:02x}")).collect::<String>()
    );
    let mut conn = sqlx::PgConnection::connect(&admin_url()).await.unwrap();
    sqlx::raw_sql(sqlx::AssertSqlSafe(format!("CREATE DATABASE {name}")))
        .execute(&mut conn)
        .await
        .unwrap();
    conn.close().await.unwrap();
    let (base, _) = admin_url()
        .rsplit_once('/')
        .map(|(b, _)| (b.to_owned(), ()))
        .unwrap();
    (format!("{base}/{name}"), name)
}

async fn drop_pg(name: &str) {
    let mut conn = sqlx::PgConnection::connect(&admin_url()).await.unwrap();
    sqlx::raw_sql(sqlx::AssertSqlSafe(format!(
        "DROP DATABASE IF EXISTS {name} WITH (FORCE)"
    )))
    .execute(&mut conn)
    .await
    .unwrap();
}

struct Reply {
    status: StatusCode,
    json: Value,
    headers: HeaderMap,
}

impl Reply {
    #[track_caller]
    fn ok(&self, status: StatusCode) -> &Value {
        assert_eq!(self.status, status, "{}", self.json);
        &self.json
    }
}

/// One request: an optional bearer token (the whole header value), the socket peer the server
/// sees, and extra headers.
struct Call<'a> {
    method: Method,
    path: &'a str,
    authorization: Option<String>,
    peer: Option<&'a str>,
    headers: Vec<(&'a str, &'a str)>,
    body: Option<Value>,
}

impl<'a> Call<'a> {
    fn new(method: Method, path: &'a str) -> Self {
        Self {
            method,
            path,
            authorization: None,
            peer: None,
            headers: Vec::new(),
            body: None,
        }
    }

    fn token(mut self, token: &str) -> Self {
        self.authorization = Some(format!("Bearer {token}"));
        self
    }

    fn from(mut self, peer: &'a str) -> Self {
        self.peer = Some(peer);
        self
    }

    fn header(mut self, name: &'a str, value: &'a str) -> Self {
        self.headers.push((name, value));
        self
    }

    fn body(mut self, body: Value) -> Self {
        self.body = Some(body);
        self
    }

    async fn send(self, app: &Router) -> Reply {
        let mut request = Request::builder().method(self.method).uri(self.path);
        if let Some(authorization) = &self.authorization {
            request = request.header("authorization", authorization);
        }
        for (name, value) in &self.headers {
            request = request.header(*name, *value);
        }
        let mut request = match self.body {
            Some(body) => request
                .header("content-type", "application/json")
                .body(Body::from(body.to_string()))
                .unwrap(),
            None => request.body(Body::empty()).unwrap(),
        };
        if let Some(peer) = self.peer {
            let address: SocketAddr = format!("{peer}:40000")
                .parse()
                .or_else(|_| format!("[{peer}]:40000").parse())
                .unwrap();
            request.extensions_mut().insert(ConnectInfo(address));
        }
        let response = app.clone().oneshot(request).await.unwrap();
        let status = response.status();
        let headers = response.headers().clone();
        let bytes = response.into_body().collect().await.unwrap().to_bytes();
        let json = serde_json::from_slice(&bytes)
            .unwrap_or_else(|_| Value::String(String::from_utf8_lossy(&bytes).into_owned()));
        Reply {
            status,
            json,
            headers,
        }
    }
}

struct Server {
    app: Router,
    store: Store,
    settings: Settings,
    admin: String,
    pg: Option<String>,
    _dir: tempfile::TempDir,
}

impl Server {
    async fn start(db: Db, layer: SettingsLayer) -> Self {
        let dir = tempfile::tempdir().unwrap();
        let mut layer = SettingsLayer {
            data_dir: Some(dir.path().to_owned()),
            admin_password: Some(Secret::new(ADMIN_PASSWORD)),
            ..layer
        };
        let mut pg = None;
        if db == Db::Postgres {
            let (url, name) = pg_database().await;
            layer.database_url = Some(Secret::new(url));
            pg = Some(name);
        }
        let settings = Settings::from_layer(layer).unwrap();
        let store = sluice_server::open_store(&settings).await.unwrap();
        sluice_server::ensure_admin(&store, &settings)
            .await
            .unwrap();
        let app =
            sluice_server::app(store.clone(), settings.clone(), None, Default::default()).unwrap();
        let mut server = Self {
            app,
            store,
            settings,
            admin: String::new(),
            pg,
            _dir: dir,
        };
        server.admin = server.login("admin", ADMIN_PASSWORD).await;
        server
    }

    /// Another replica: its own store (connection pool) on the same database, its own app.
    async fn replica(&self) -> (Router, Store) {
        let store = sluice_server::open_store(&self.settings).await.unwrap();
        let app = sluice_server::app(
            store.clone(),
            self.settings.clone(),
            None,
            Default::default(),
        )
        .unwrap();
        (app, store)
    }

    async fn finish(self) {
        self.store.close().await;
        if let Some(name) = self.pg {
            drop_pg(&name).await;
        }
    }

    async fn try_login(&self, username: &str, password: &str, peer: Option<&str>) -> Reply {
        let mut call = Call::new(Method::POST, "/api/v1/login")
            .body(json!({"username": username, "password": password}));
        call.peer = peer;
        call.send(&self.app).await
    }

    async fn login(&self, username: &str, password: &str) -> String {
        self.try_login(username, password, None)
            .await
            .ok(StatusCode::OK)["token"]
            .as_str()
            .unwrap()
            .to_owned()
    }

    async fn user(&self, name: &str, roles: &[&str]) {
        Call::new(Method::POST, "/api/v1/users")
            .token(&self.admin)
            .body(json!({"username": name, "password": PASSWORD, "roles": roles}))
            .send(&self.app)
            .await
            .ok(StatusCode::CREATED);
    }

    async fn as_admin(&self, method: Method, path: &str, body: Option<Value>) -> Reply {
        let mut call = Call::new(method, path).token(&self.admin);
        call.body = body;
        call.send(&self.app).await
    }

    async fn whoami(&self, token: &str) -> StatusCode {
        Call::new(Method::GET, "/api/v1/whoami")
            .token(token)
            .send(&self.app)
            .await
            .status
    }

    async fn mint(&self, parent: &str, body: Value) -> Reply {
        Call::new(Method::POST, "/api/v1/tokens")
            .token(parent)
            .body(body)
            .send(&self.app)
            .await
    }

    async fn events(&self, action: &str) -> Vec<sluice_core::audit::AuditEvent> {
        self.store
            .audit_events(None)
            .await
            .unwrap()
            .into_iter()
            .filter(|e| e.action == action)
            .collect()
    }

    async fn assert_chain_intact(&self) {
        assert!(self.store.verify_audit().await.unwrap().is_ok());
    }
}

fn after(event: &sluice_core::audit::AuditEvent) -> Value {
    serde_json::from_str(event.after.as_deref().unwrap()).unwrap()
}

macro_rules! on_both {
    ($sqlite:ident, $postgres:ident, $scenario:ident) => {
        #[tokio::test]
        async fn $sqlite() {
            $scenario(Db::Sqlite).await;
        }

        #[tokio::test]
        async fn $postgres() {
            $scenario(Db::Postgres).await;
        }
    };
}

// ---- Item 2: the first admin's password ----

#[tokio::test]
async fn a_first_admin_password_that_breaks_the_rule_creates_nothing() {
    for bad in ["", "short"] {
        let dir = tempfile::tempdir().unwrap();
        let layer = SettingsLayer {
            data_dir: Some(dir.path().to_owned()),
            admin_password: Some(Secret::new(bad)),
            ..SettingsLayer::default()
        };
        let refused = Settings::from_layer(layer).unwrap_err();
        assert!(refused.0.contains("admin_password"), "{refused}");
        assert!(refused.0.contains("12 characters"), "{refused}");

        // Settings made another way are checked again before the first user is created.
        let mut settings = Settings::from_layer(SettingsLayer {
            data_dir: Some(dir.path().to_owned()),
            ..SettingsLayer::default()
        })
        .unwrap();
        settings.admin_password = Some(Secret::new(bad));
        let store = sluice_server::open_store(&settings).await.unwrap();
        let refused = sluice_server::ensure_admin(&store, &settings)
            .await
            .unwrap_err();
        assert!(refused.to_string().contains("12 characters"), "{refused}");
        assert_eq!(store.count_users().await.unwrap(), 0, "no user was created");
        assert!(store.audit_events(None).await.unwrap().is_empty());
        store.close().await;
    }
    // A good one works, and login with it too.
    let server = Server::start(Db::Sqlite, SettingsLayer::default()).await;
    assert_eq!(server.whoami(&server.admin).await, StatusCode::OK);
    server.finish().await;
}

// ---- Item 3: containment ----

async fn disabling_a_user_cuts_them_off_at_once(db: Db) {
    let server = Server::start(db, SettingsLayer::default()).await;
    server.user("alice", &["operator", "viewer"]).await;
    server.user("victor", &["viewer"]).await;
    let alice = server.login("alice", PASSWORD).await;
    let minted = server
        .mint(&alice, json!({"name": "ci", "expires_in": "1h"}))
        .await
        .ok(StatusCode::CREATED)["token"]
        .as_str()
        .unwrap()
        .to_owned();
    let victor = server.login("victor", PASSWORD).await;

    // Only an admin may.
    let refused = Call::new(Method::POST, "/api/v1/users/alice/disable")
        .token(&victor)
        .send(&server.app)
        .await;
    assert_eq!(refused.status, StatusCode::FORBIDDEN);
    assert_eq!(server.whoami(&alice).await, StatusCode::OK);

    let change = server
        .as_admin(Method::POST, "/api/v1/users/alice/disable", None)
        .await;
    let change = change.ok(StatusCode::OK);
    assert_eq!(change["user"]["disabled"], true);
    assert_eq!(change["revoked_tokens"].as_array().unwrap().len(), 2);
    for token in [&alice, &minted] {
        assert_eq!(server.whoami(token).await, StatusCode::UNAUTHORIZED);
    }
    let login = server.try_login("alice", PASSWORD, None).await;
    assert_eq!(login.status, StatusCode::UNAUTHORIZED);
    assert_eq!(login.json["detail"], "wrong user name or password");
    let again = server
        .as_admin(Method::POST, "/api/v1/users/alice/disable", None)
        .await;
    assert_eq!(again.status, StatusCode::CONFLICT, "{}", again.json);
    let missing = server
        .as_admin(Method::POST, "/api/v1/users/nobody/disable", None)
        .await;
    assert_eq!(missing.status, StatusCode::NOT_FOUND);
    let users = server.as_admin(Method::GET, "/api/v1/users", None).await;
    let listed = users.ok(StatusCode::OK).as_array().unwrap().clone();
    assert!(
        listed
            .iter()
            .any(|u| u["username"] == "alice" && u["disabled"] == true)
    );

    // Enabling lets her log in again; her old tokens stay dead.
    server
        .as_admin(Method::POST, "/api/v1/users/alice/enable", None)
        .await
        .ok(StatusCode::OK);
    assert_eq!(server.whoami(&alice).await, StatusCode::UNAUTHORIZED);
    assert_eq!(server.whoami(&minted).await, StatusCode::UNAUTHORIZED);
    let fresh = server.login("alice", PASSWORD).await;
    assert_eq!(server.whoami(&fresh).await, StatusCode::OK);

    // Audited with the admin as actor, before and after, with no secret anywhere.
    let disable = server.events("user.disable").await;
    assert_eq!(disable.len(), 1);
    assert_eq!(disable[0].actor, "admin");
    assert_eq!(disable[0].object, "user:alice");
    assert!(disable[0].request_id.is_some());
    assert_eq!(after(&disable[0])["disabled"], true);
    assert_eq!(server.events("user.enable").await.len(), 1);
    let revokes = server.events("token.revoke").await;
    assert_eq!(revokes.len(), 2);
    assert!(
        revokes
            .iter()
            .all(|e| e.request_id == disable[0].request_id)
    );
    let all = server.store.audit_events(None).await.unwrap();
    for event in &all {
        let text = format!("{:?}{:?}", event.before, event.after);
        assert!(!text.contains("slc_") && !text.contains("argon2") && !text.contains(PASSWORD));
    }
    server.assert_chain_intact().await;
    server.finish().await;
}
on_both!(
    disabling_a_user_cuts_them_off_at_once_on_sqlite,
    disabling_a_user_cuts_them_off_at_once_on_postgres,
    disabling_a_user_cuts_them_off_at_once
);

async fn the_last_enabled_admin_stays(db: Db) {
    let server = Server::start(db, SettingsLayer::default()).await;
    let alone = server
        .as_admin(Method::POST, "/api/v1/users/admin/disable", None)
        .await;
    assert_eq!(alone.status, StatusCode::CONFLICT, "{}", alone.json);
    assert!(
        alone.json["detail"]
            .as_str()
            .unwrap()
            .contains("last enabled admin")
    );
    assert_eq!(server.whoami(&server.admin).await, StatusCode::OK);

    server.user("root2", &["admin"]).await;
    let root2 = server.login("root2", PASSWORD).await;
    // With root2 disabled, admin is the last one again.
    server
        .as_admin(Method::POST, "/api/v1/users/root2/disable", None)
        .await
        .ok(StatusCode::OK);
    let alone = server
        .as_admin(Method::POST, "/api/v1/users/admin/disable", None)
        .await;
    assert_eq!(alone.status, StatusCode::CONFLICT);
    server
        .as_admin(Method::POST, "/api/v1/users/root2/enable", None)
        .await
        .ok(StatusCode::OK);
    assert_eq!(server.whoami(&root2).await, StatusCode::UNAUTHORIZED);
    let root2 = server.login("root2", PASSWORD).await;
    // Now the shared `admin` can be retired, as docs/security.md advises.
    server
        .as_admin(Method::POST, "/api/v1/users/admin/disable", None)
        .await
        .ok(StatusCode::OK);
    assert_eq!(server.whoami(&server.admin).await, StatusCode::UNAUTHORIZED);
    let refused = Call::new(Method::POST, "/api/v1/users/root2/disable")
        .token(&root2)
        .send(&server.app)
        .await;
    assert_eq!(refused.status, StatusCode::CONFLICT);
    server.finish().await;
}
on_both!(
    the_last_enabled_admin_stays_on_sqlite,
    the_last_enabled_admin_stays_on_postgres,
    the_last_enabled_admin_stays
);

async fn a_password_reset_revokes_every_token(db: Db) {
    let server = Server::start(db, SettingsLayer::default()).await;
    server.user("alice", &["operator"]).await;
    let first = server.login("alice", PASSWORD).await;
    let second = server.login("alice", PASSWORD).await;

    let short = server
        .as_admin(
            Method::POST,
            "/api/v1/users/alice/password",
            Some(json!({"password": "too short"})),
        )
        .await;
    assert_eq!(short.status, StatusCode::UNPROCESSABLE_ENTITY);
    assert_eq!(short.json["field"], "password");
    assert_eq!(
        server.whoami(&first).await,
        StatusCode::OK,
        "a refused reset changes nothing"
    );

    let chosen = "a brand new passphrase";
    let reset = server
        .as_admin(
            Method::POST,
            "/api/v1/users/alice/password",
            Some(json!({"password": chosen})),
        )
        .await;
    let body = reset.ok(StatusCode::OK);
    assert_eq!(body["revoked_tokens"].as_array().unwrap().len(), 2);
    assert!(body["password"].is_null(), "a given password is not echoed");
    for token in [&first, &second] {
        assert_eq!(server.whoami(token).await, StatusCode::UNAUTHORIZED);
    }
    assert_eq!(
        server.try_login("alice", PASSWORD, None).await.status,
        StatusCode::UNAUTHORIZED
    );
    let now = server.login("alice", chosen).await;

    // Or the server chooses one, shown once and never cached.
    let reset = server
        .as_admin(
            Method::POST,
            "/api/v1/users/alice/password",
            Some(json!({})),
        )
        .await;
    assert_eq!(reset.headers["cache-control"], "no-store");
    let generated = reset.ok(StatusCode::OK)["password"]
        .as_str()
        .unwrap()
        .to_owned();
    assert!(generated.chars().count() >= 12);
    assert_eq!(server.whoami(&now).await, StatusCode::UNAUTHORIZED);
    server.login("alice", &generated).await;

    let events = server.events("user.password_reset").await;
    assert_eq!(events.len(), 2);
    assert_eq!(events[0].actor, "admin");
    assert_eq!(
        after(&events[0])["tokens_revoked"]
            .as_array()
            .unwrap()
            .len(),
        2
    );
    let all = server.store.audit_events(None).await.unwrap();
    for event in &all {
        let text = format!("{:?}{:?}", event.before, event.after);
        assert!(
            !text.contains(chosen) && !text.contains(&generated) && !text.contains("argon2"),
            "{text}"
        );
    }
    server.assert_chain_intact().await;
    server.finish().await;
}
on_both!(
    a_password_reset_revokes_every_token_on_sqlite,
    a_password_reset_revokes_every_token_on_postgres,
    a_password_reset_revokes_every_token
);

async fn token_trees(db: Db) {
    let server = Server::start(db, SettingsLayer::default()).await;
    server.user("alice", &["operator", "viewer"]).await;
    let login = server.try_login("alice", PASSWORD, None).await;
    assert_eq!(login.headers["cache-control"], "no-store");
    let login = login.ok(StatusCode::OK).clone();
    let root = login["token"].as_str().unwrap().to_owned();
    let root_id = login["record"]["id"].as_str().unwrap().to_owned();
    let root_expiry = login["record"]["expires_at"].as_str().unwrap().to_owned();

    // A year asked from a 12-hour login token: capped at the parent's expiry.
    let child = server
        .mint(&root, json!({"name": "child", "expires_in": "366d"}))
        .await;
    assert_eq!(child.headers["cache-control"], "no-store");
    let child = child.ok(StatusCode::CREATED).clone();
    assert_eq!(child["record"]["expires_at"], root_expiry.as_str());
    assert_eq!(child["record"]["parent_id"], root_id.as_str());
    let child_token = child["token"].as_str().unwrap().to_owned();
    let child_id = child["record"]["id"].as_str().unwrap().to_owned();

    // A viewer-only grandchild cannot mint an operator token.
    let viewer = server
        .mint(
            &child_token,
            json!({"name": "viewer", "expires_in": "1h", "roles": ["viewer"]}),
        )
        .await
        .ok(StatusCode::CREATED)["token"]
        .as_str()
        .unwrap()
        .to_owned();
    let outranks = server
        .mint(
            &viewer,
            json!({"name": "x", "expires_in": "1h", "roles": ["operator"]}),
        )
        .await;
    assert_eq!(outranks.status, StatusCode::UNPROCESSABLE_ENTITY);
    assert_eq!(outranks.json["field"], "roles");
    let by_default = server
        .mint(&viewer, json!({"name": "y", "expires_in": "1h"}))
        .await
        .ok(StatusCode::CREATED)
        .clone();
    assert_eq!(by_default["record"]["roles"], json!(["viewer"]));
    let great_grandchild = by_default["token"].as_str().unwrap().to_owned();

    // A long-lived automation token comes from the password, not from a token.
    let automation = Call::new(Method::POST, "/api/v1/login")
        .body(
            json!({"username": "alice", "password": PASSWORD, "token_name": "ci",
                     "expires_in": "30d", "roles": ["viewer"]}),
        )
        .send(&server.app)
        .await
        .ok(StatusCode::OK)
        .clone();
    let expires: jiff::Timestamp = automation["record"]["expires_at"]
        .as_str()
        .unwrap()
        .parse()
        .unwrap();
    let days = jiff::Timestamp::now().duration_until(expires).as_hours() / 24;
    assert!((29..=30).contains(&days), "{days}");
    assert_eq!(automation["record"]["roles"], json!(["viewer"]));
    let too_much = Call::new(Method::POST, "/api/v1/login")
        .body(json!({"username": "alice", "password": PASSWORD, "roles": ["admin"]}))
        .send(&server.app)
        .await;
    assert_eq!(too_much.status, StatusCode::UNPROCESSABLE_ENTITY);

    // Revoking the child revokes everything below it, not above it.
    let revoked = Call::new(Method::DELETE, &format!("/api/v1/tokens/{child_id}"))
        .token(&root)
        .send(&server.app)
        .await;
    revoked.ok(StatusCode::OK);
    for token in [&child_token, &viewer, &great_grandchild] {
        assert_eq!(server.whoami(token).await, StatusCode::UNAUTHORIZED);
    }
    assert_eq!(server.whoami(&root).await, StatusCode::OK);
    let events = server.events("token.revoke").await;
    assert_eq!(events.len(), 3);
    assert!(events.iter().all(|e| e.actor == "alice"));
    assert!(events.iter().all(|e| e.request_id == events[0].request_id));
    // A revoked token mints nothing.
    let refused = server
        .mint(&child_token, json!({"name": "z", "expires_in": "1h"}))
        .await;
    assert_eq!(refused.status, StatusCode::UNAUTHORIZED);
    server.assert_chain_intact().await;
    server.finish().await;
}
on_both!(token_trees_on_sqlite, token_trees_on_postgres, token_trees);

async fn admins_list_and_revoke_anyones_tokens(db: Db) {
    let server = Server::start(db, SettingsLayer::default()).await;
    server.user("alice", &["operator"]).await;
    server.user("bob", &["operator"]).await;
    let alice = server.login("alice", PASSWORD).await;
    let bob = server.login("bob", PASSWORD).await;
    server
        .mint(&alice, json!({"name": "ci", "expires_in": "1h"}))
        .await
        .ok(StatusCode::CREATED);

    let listed = server
        .as_admin(Method::GET, "/api/v1/users/alice/tokens", None)
        .await;
    let listed = listed.ok(StatusCode::OK).as_array().unwrap().clone();
    assert_eq!(listed.len(), 2);
    assert!(listed.iter().all(|t| t["username"] == "alice"));
    assert!(!Value::Array(listed.clone()).to_string().contains("slc_"));
    let refused = Call::new(Method::GET, "/api/v1/users/alice/tokens")
        .token(&bob)
        .send(&server.app)
        .await;
    assert_eq!(refused.status, StatusCode::FORBIDDEN);
    let missing = server
        .as_admin(Method::GET, "/api/v1/users/nobody/tokens", None)
        .await;
    assert_eq!(missing.status, StatusCode::NOT_FOUND);

    // The login token, parent of `ci`: revoking it takes both.
    let login_id = listed.iter().find(|t| t["name"] == "login").unwrap()["id"]
        .as_str()
        .unwrap()
        .to_owned();
    server
        .as_admin(Method::DELETE, &format!("/api/v1/tokens/{login_id}"), None)
        .await
        .ok(StatusCode::OK);
    assert_eq!(server.whoami(&alice).await, StatusCode::UNAUTHORIZED);
    let after_revoke = server
        .as_admin(Method::GET, "/api/v1/users/alice/tokens", None)
        .await;
    assert!(
        after_revoke
            .ok(StatusCode::OK)
            .as_array()
            .unwrap()
            .iter()
            .all(|t| !t["revoked_at"].is_null())
    );
    assert_eq!(server.whoami(&bob).await, StatusCode::OK);
    let events = server.events("token.revoke").await;
    assert_eq!(events.len(), 2);
    assert!(events.iter().all(|e| e.actor == "admin"));
    server.finish().await;
}
on_both!(
    admins_list_and_revoke_anyones_tokens_on_sqlite,
    admins_list_and_revoke_anyones_tokens_on_postgres,
    admins_list_and_revoke_anyones_tokens
);

async fn the_store_issues_no_token_past_containment(db: Db) {
    let server = Server::start(db, SettingsLayer::default()).await;
    server.user("alice", &["operator"]).await;
    let (alice, old_hash) = server.store.user_with_hash("alice").await.unwrap().unwrap();
    let token = |name: &str, hash: &str| sluice_store::NewToken {
        user_id: alice.id.clone(),
        name: name.to_owned(),
        token_hash: hash.to_owned(),
        roles: [sluice_core::access::Role::Operator].into(),
        expires_at: "2099-01-01T00:00:00.000000Z".to_owned(),
    };
    let actor = sluice_store::Actor::named("alice", None);
    // A login that checked the password just before a reset gets no token.
    server
        .as_admin(
            Method::POST,
            "/api/v1/users/alice/password",
            Some(json!({"password": "another long password"})),
        )
        .await
        .ok(StatusCode::OK);
    let stale = server
        .store
        .create_login_token(token("login", &"a".repeat(64)), &old_hash, &actor)
        .await
        .unwrap_err();
    assert!(
        matches!(stale, sluice_store::StoreError::Conflict(_)),
        "{stale}"
    );
    // Nothing is minted under a revoked parent.
    let parent = server
        .store
        .create_token(token("parent", &"b".repeat(64)), &actor)
        .await
        .unwrap();
    server.store.revoke_token(&parent.id, &actor).await.unwrap();
    let orphan = server
        .store
        .mint_token(token("child", &"c".repeat(64)), &parent.id, &actor)
        .await
        .unwrap_err();
    assert!(
        matches!(orphan, sluice_store::StoreError::Conflict(_)),
        "{orphan}"
    );
    // Nor is anything issued to a disabled user.
    server
        .as_admin(Method::POST, "/api/v1/users/alice/disable", None)
        .await
        .ok(StatusCode::OK);
    let disabled = server
        .store
        .create_token(token("late", &"d".repeat(64)), &actor)
        .await
        .unwrap_err();
    assert!(
        matches!(disabled, sluice_store::StoreError::Conflict(_)),
        "{disabled}"
    );
    assert!(
        server
            .store
            .list_tokens(Some(&alice.id))
            .await
            .unwrap()
            .iter()
            .all(|t| t.revoked_at.is_some()),
        "no live token was left behind"
    );
    server.finish().await;
}
on_both!(
    the_store_issues_no_token_past_containment_on_sqlite,
    the_store_issues_no_token_past_containment_on_postgres,
    the_store_issues_no_token_past_containment
);

// ---- Item 5: login limits ----

fn limits(max: u32) -> SettingsLayer {
    SettingsLayer {
        login_max_failures: Some(max),
        ..SettingsLayer::default()
    }
}

async fn one_accounts_failures_lock_only_that_account_from_that_address(db: Db) {
    let server = Server::start(db, limits(5)).await;
    server.user("alice", &["viewer"]).await;
    server.user("bob", &["viewer"]).await;
    for attempt in 0..5 {
        let request_id = format!("probe-{attempt}");
        let reply = Call::new(Method::POST, "/api/v1/login")
            .from("192.0.2.10")
            .header("x-request-id", &request_id)
            .body(json!({"username": "alice", "password": "guess"}))
            .send(&server.app)
            .await;
        assert_eq!(reply.status, StatusCode::UNAUTHORIZED);
    }
    // Alice from there waits, even with the right password.
    let locked = server
        .try_login("alice", PASSWORD, Some("192.0.2.10"))
        .await;
    assert_eq!(
        locked.status,
        StatusCode::TOO_MANY_REQUESTS,
        "{}",
        locked.json
    );
    assert!(locked.headers.get("retry-after").is_some());
    // Bob from the same address, and alice from elsewhere, are not locked out.
    server
        .try_login("bob", PASSWORD, Some("192.0.2.10"))
        .await
        .ok(StatusCode::OK);
    server
        .try_login("alice", PASSWORD, Some("198.51.100.20"))
        .await
        .ok(StatusCode::OK);

    // Each failure is audited with the client address and the request id.
    let failures = server.events("login.failure").await;
    assert_eq!(failures.len(), 6);
    assert_eq!(failures[0].request_id.as_deref(), Some("probe-0"));
    assert_eq!(failures[4].request_id.as_deref(), Some("probe-4"));
    assert_eq!(after(&failures[0])["client"], "192.0.2.10");
    assert_eq!(after(&failures[0])["reason"], "bad credentials");
    assert_eq!(after(&failures[5])["reason"], "rate limited");
    assert_eq!(after(&failures[5])["limit"], "account_address");
    assert!(failures[5].request_id.is_some());
    assert!(
        failures
            .iter()
            .all(|e| !e.after.as_deref().unwrap().contains("guess"))
    );

    // An admin sees the lock and lifts it.
    let locks = server
        .as_admin(Method::GET, "/api/v1/login-locks", None)
        .await;
    let locks = locks.ok(StatusCode::OK).as_array().unwrap().clone();
    assert_eq!(locks.len(), 1, "{locks:?}");
    assert_eq!(locks[0]["scope"], "account_address");
    assert_eq!(locks[0]["account"], "alice");
    assert_eq!(locks[0]["address"], "192.0.2.10");
    assert_eq!(locks[0]["failures"], 5);
    let alice = server.login("alice", PASSWORD).await;
    let refused = Call::new(Method::DELETE, "/api/v1/login-locks?account=alice")
        .token(&alice)
        .send(&server.app)
        .await;
    assert_eq!(refused.status, StatusCode::FORBIDDEN);
    let cleared = server
        .as_admin(
            Method::DELETE,
            "/api/v1/login-locks?account=alice&address=192.0.2.10",
            None,
        )
        .await;
    assert_eq!(cleared.ok(StatusCode::OK)["failures_cleared"], 5);
    server
        .try_login("alice", PASSWORD, Some("192.0.2.10"))
        .await
        .ok(StatusCode::OK);
    let unlock = server.events("login.unlock").await;
    assert_eq!(unlock.len(), 1);
    assert_eq!(unlock[0].actor, "admin");
    assert_eq!(unlock[0].object, "login:account=alice,address=192.0.2.10");
    let nothing = server
        .as_admin(Method::DELETE, "/api/v1/login-locks?account=alice", None)
        .await;
    assert_eq!(nothing.status, StatusCode::NOT_FOUND, "{}", nothing.json);
    let neither = server
        .as_admin(Method::DELETE, "/api/v1/login-locks", None)
        .await;
    assert_eq!(neither.status, StatusCode::UNPROCESSABLE_ENTITY);
    server.assert_chain_intact().await;
    server.finish().await;
}
on_both!(
    one_accounts_failures_lock_only_that_account_from_that_address_on_sqlite,
    one_accounts_failures_lock_only_that_account_from_that_address_on_postgres,
    one_accounts_failures_lock_only_that_account_from_that_address
);

async fn failures_from_many_addresses_spare_the_owners_own(db: Db) {
    let server = Server::start(db, limits(5)).await;
    server.user("alice", &["viewer"]).await;
    // Alice works from 198.51.100.7.
    server
        .try_login("alice", PASSWORD, Some("198.51.100.7"))
        .await
        .ok(StatusCode::OK);
    // Someone guesses from 20 addresses, one try each: the account-wide limit (4 × 5).
    for host in 1..=20 {
        let peer = format!("203.0.113.{host}");
        let reply = server.try_login("alice", "guess", Some(&peer)).await;
        assert_eq!(reply.status, StatusCode::UNAUTHORIZED);
    }
    let elsewhere = server
        .try_login("alice", PASSWORD, Some("203.0.113.99"))
        .await;
    assert_eq!(elsewhere.status, StatusCode::TOO_MANY_REQUESTS);
    let failures = server.events("login.failure").await;
    assert_eq!(after(failures.last().unwrap())["limit"], "account");
    // Where she usually logs in, she still can.
    server
        .try_login("alice", PASSWORD, Some("198.51.100.7"))
        .await
        .ok(StatusCode::OK);

    let locks = server
        .as_admin(Method::GET, "/api/v1/login-locks", None)
        .await;
    let locks = locks.ok(StatusCode::OK).as_array().unwrap().clone();
    assert!(
        locks
            .iter()
            .any(|l| l["scope"] == "account" && l["account"] == "alice" && l["failures"] == 20),
        "{locks:?}"
    );
    server
        .as_admin(Method::DELETE, "/api/v1/login-locks?account=Alice", None)
        .await
        .ok(StatusCode::OK);
    server
        .try_login("alice", PASSWORD, Some("203.0.113.99"))
        .await
        .ok(StatusCode::OK);
    server.finish().await;
}
on_both!(
    failures_from_many_addresses_spare_the_owners_own_on_sqlite,
    failures_from_many_addresses_spare_the_owners_own_on_postgres,
    failures_from_many_addresses_spare_the_owners_own
);

async fn one_address_trying_many_accounts_is_limited(db: Db) {
    let server = Server::start(db, limits(5)).await;
    server.user("bob", &["viewer"]).await;
    server.user("carol", &["viewer"]).await;
    let sprayer = "2001:db8:1:2::50";
    // Carol logs in from that network before the spraying starts.
    server
        .try_login("carol", PASSWORD, Some("2001:db8:1:2::7"))
        .await
        .ok(StatusCode::OK);
    for n in 0..20 {
        let reply = server
            .try_login(&format!("user{n}"), "guess", Some(sprayer))
            .await;
        assert_eq!(reply.status, StatusCode::UNAUTHORIZED);
    }
    // Another address of the same /64 is the same client.
    let bob = server
        .try_login("bob", PASSWORD, Some("2001:db8:1:2::99"))
        .await;
    assert_eq!(bob.status, StatusCode::TOO_MANY_REQUESTS);
    let failures = server.events("login.failure").await;
    assert_eq!(after(failures.last().unwrap())["limit"], "address");
    server
        .try_login("carol", PASSWORD, Some(sprayer))
        .await
        .ok(StatusCode::OK);
    server
        .try_login("bob", PASSWORD, Some("2001:db8:9::1"))
        .await
        .ok(StatusCode::OK);
    let locks = server
        .as_admin(Method::GET, "/api/v1/login-locks", None)
        .await;
    assert!(
        locks
            .ok(StatusCode::OK)
            .as_array()
            .unwrap()
            .iter()
            .any(|l| l["scope"] == "address" && l["address"] == "2001:db8:1:2::/64")
    );
    server
        .as_admin(
            Method::DELETE,
            "/api/v1/login-locks?address=2001:db8:1:2::/64",
            None,
        )
        .await
        .ok(StatusCode::OK);
    server
        .try_login("bob", PASSWORD, Some(sprayer))
        .await
        .ok(StatusCode::OK);
    server.finish().await;
}
on_both!(
    one_address_trying_many_accounts_is_limited_on_sqlite,
    one_address_trying_many_accounts_is_limited_on_postgres,
    one_address_trying_many_accounts_is_limited
);

async fn concurrent_guesses_cannot_slip_under_the_limit(db: Db) {
    let server = Server::start(db, limits(3)).await;
    server.user("alice", &["viewer"]).await;
    let guesses = (0..12).map(|_| server.try_login("alice", "guess", Some("192.0.2.44")));
    let statuses: Vec<StatusCode> = futures_util::future::join_all(guesses)
        .await
        .into_iter()
        .map(|reply| reply.status)
        .collect();
    let checked = statuses
        .iter()
        .filter(|s| **s == StatusCode::UNAUTHORIZED)
        .count();
    let refused = statuses
        .iter()
        .filter(|s| **s == StatusCode::TOO_MANY_REQUESTS)
        .count();
    assert_eq!(checked + refused, 12, "{statuses:?}");
    assert!(
        checked <= 3,
        "{checked} passwords were checked: {statuses:?}"
    );
    // Refused attempts were not counted: guessing on, one at a time, reaches exactly the limit.
    let mut later = 0;
    for _ in 0..5 {
        let reply = server.try_login("alice", "guess", Some("192.0.2.44")).await;
        if reply.status == StatusCode::UNAUTHORIZED {
            later += 1;
        } else {
            assert_eq!(reply.status, StatusCode::TOO_MANY_REQUESTS);
        }
    }
    assert_eq!(checked + later, 3, "{statuses:?}, then {later}");
    let locks = server
        .as_admin(Method::GET, "/api/v1/login-locks", None)
        .await;
    let locks = locks.ok(StatusCode::OK).as_array().unwrap().clone();
    assert_eq!(locks.len(), 1, "{locks:?}");
    assert_eq!(locks[0]["failures"], 3, "refused attempts are not counted");
    server.finish().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn concurrent_guesses_cannot_slip_under_the_limit_on_sqlite() {
    concurrent_guesses_cannot_slip_under_the_limit(Db::Sqlite).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn concurrent_guesses_cannot_slip_under_the_limit_on_postgres() {
    concurrent_guesses_cannot_slip_under_the_limit(Db::Postgres).await;
}

#[tokio::test]
async fn the_forwarded_address_counts_only_from_a_trusted_proxy() {
    let server = Server::start(
        Db::Sqlite,
        SettingsLayer {
            login_max_failures: Some(3),
            trusted_proxies: Some(vec!["10.0.0.0/8".to_owned()]),
            ..SettingsLayer::default()
        },
    )
    .await;
    server.user("alice", &["viewer"]).await;
    let via_proxy = |client: &'static str, password: &'static str| {
        Call::new(Method::POST, "/api/v1/login")
            .from("10.0.0.1")
            .header("x-forwarded-for", client)
            .body(json!({"username": "alice", "password": password}))
    };
    for _ in 0..3 {
        let reply = via_proxy("203.0.113.5", "guess").send(&server.app).await;
        assert_eq!(reply.status, StatusCode::UNAUTHORIZED);
    }
    let failures = server.events("login.failure").await;
    assert_eq!(after(&failures[0])["client"], "203.0.113.5");
    // The proxy's other clients are not locked out with the one who failed.
    via_proxy("203.0.113.6", PASSWORD)
        .send(&server.app)
        .await
        .ok(StatusCode::OK);
    let locked = via_proxy("203.0.113.5", PASSWORD).send(&server.app).await;
    assert_eq!(locked.status, StatusCode::TOO_MANY_REQUESTS);

    // A client that is not a trusted proxy cannot choose its address with the header.
    let spoofed = Call::new(Method::POST, "/api/v1/login")
        .from("192.0.2.1")
        .header("x-forwarded-for", "203.0.113.77")
        .body(json!({"username": "alice", "password": "guess"}))
        .send(&server.app)
        .await;
    assert_eq!(spoofed.status, StatusCode::UNAUTHORIZED);
    let failures = server.events("login.failure").await;
    assert_eq!(after(failures.last().unwrap())["client"], "192.0.2.1");
    server.finish().await;
}

#[tokio::test]
async fn two_replicas_on_one_postgresql_share_the_count() {
    let server = Server::start(Db::Postgres, limits(5)).await;
    server.user("alice", &["viewer"]).await;
    let (second, second_store) = server.replica().await;
    for _ in 0..3 {
        let reply = server.try_login("alice", "guess", Some("192.0.2.33")).await;
        assert_eq!(reply.status, StatusCode::UNAUTHORIZED);
    }
    for _ in 0..2 {
        let reply = Call::new(Method::POST, "/api/v1/login")
            .from("192.0.2.33")
            .body(json!({"username": "alice", "password": "guess"}))
            .send(&second)
            .await;
        assert_eq!(reply.status, StatusCode::UNAUTHORIZED);
    }
    for app in [&server.app, &second] {
        let reply = Call::new(Method::POST, "/api/v1/login")
            .from("192.0.2.33")
            .body(json!({"username": "alice", "password": PASSWORD}))
            .send(app)
            .await;
        assert_eq!(
            reply.status,
            StatusCode::TOO_MANY_REQUESTS,
            "{}",
            reply.json
        );
    }
    // A lock lifted through one replica is lifted on both.
    Call::new(Method::DELETE, "/api/v1/login-locks?account=alice")
        .token(&server.admin)
        .send(&second)
        .await
        .ok(StatusCode::OK);
    server
        .try_login("alice", PASSWORD, Some("192.0.2.33"))
        .await
        .ok(StatusCode::OK);
    second_store.close().await;
    server.finish().await;
}

// ---- Item 6: the scheme and caching ----

#[tokio::test]
async fn the_bearer_scheme_is_case_insensitive_for_users_and_agents() {
    let server = Server::start(Db::Sqlite, SettingsLayer::default()).await;
    for scheme in ["bearer", "BEARER", "Bearer"] {
        let mut call = Call::new(Method::GET, "/api/v1/whoami");
        call.authorization = Some(format!("{scheme} {}", server.admin));
        call.send(&server.app).await.ok(StatusCode::OK);
    }
    let mut basic = Call::new(Method::GET, "/api/v1/whoami");
    basic.authorization = Some(format!("Basic {}", server.admin));
    assert_eq!(
        basic.send(&server.app).await.status,
        StatusCode::UNAUTHORIZED
    );

    // An agent: enrolled, its challenge signed, its token sent with a lower-case scheme.
    let enrollment = server
        .as_admin(
            Method::POST,
            "/api/v1/agents/enrollment-tokens",
            Some(json!({"expires_in": "1h"})),
        )
        .await;
    let enrollment = enrollment.ok(StatusCode::CREATED)["token"]
        .as_str()
        .unwrap()
        .to_owned();
    let key = SigningKey::from_bytes(&[7; 32]);
    let enrolled = Call::new(Method::POST, "/api/v1/agent/enroll")
        .body(json!({
            "enrollment_token": enrollment,
            "hostname": "web1",
            "public_key": agent_auth::to_hex(key.verifying_key().as_bytes()),
            "labels": {}
        }))
        .send(&server.app)
        .await;
    let id = enrolled.ok(StatusCode::CREATED)["agent_id"]
        .as_str()
        .unwrap()
        .to_owned();
    let challenge = Call::new(Method::POST, "/api/v1/agent/challenge")
        .body(json!({"agent_id": id}))
        .send(&server.app)
        .await;
    let nonce = challenge.ok(StatusCode::OK)["nonce"]
        .as_str()
        .unwrap()
        .to_owned();
    let signature = key.sign(&agent_auth::challenge_message(&id, &nonce));
    let issued = Call::new(Method::POST, "/api/v1/agent/token")
        .body(json!({"agent_id": id, "nonce": nonce,
                     "signature": agent_auth::to_hex(&signature.to_bytes())}))
        .send(&server.app)
        .await;
    let agent_token = issued.ok(StatusCode::OK)["token"]
        .as_str()
        .unwrap()
        .to_owned();
    for scheme in ["bearer", "BeArEr"] {
        let mut call = Call::new(Method::GET, "/api/v1/agent/inventory-request");
        call.authorization = Some(format!("{scheme} {agent_token}"));
        call.send(&server.app).await.ok(StatusCode::OK);
    }
    server.finish().await;
}

#[tokio::test]
async fn answers_with_secrets_are_not_cached() {
    let server = Server::start(Db::Sqlite, SettingsLayer::default()).await;
    let login = server.try_login("admin", ADMIN_PASSWORD, None).await;
    login.ok(StatusCode::OK);
    assert_eq!(login.headers["cache-control"], "no-store");
    let token = server
        .mint(&server.admin, json!({"name": "ci", "expires_in": "1h"}))
        .await;
    token.ok(StatusCode::CREATED);
    assert_eq!(token.headers["cache-control"], "no-store");
    server.finish().await;
}
