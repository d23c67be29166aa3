//! The in-process server the API scenario tests share: SQLite or a PostgreSQL database of its
//! own, a manual clock the tests move, users with roles and CAB groups, a small CMDB, and a
//! `call` that answers status, JSON and ETag.

#![allow(dead_code, clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::collections::BTreeMap;
use std::path::Path;

use axum::Router;
use axum::body::Body;
use axum::http::{Method, Request, StatusCode};
use http_body_util::BodyExt;
use jiff::{SignedDuration, Timestamp};
use serde_json::{Value, json};
use sluice_server::clock::{Clock, ClockHand};
use sluice_server::settings::{Secret, Settings, SettingsLayer};
use sluice_store::Store;
use sqlx::Connection;
use tower::ServiceExt;

pub const START: &str = "2026-11-02T09:00:00Z";
pub const PASSWORD: &str = "a long enough password";

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Db {
    Sqlite,
    Postgres,
}

pub fn admin_url() -> String {
    std::env::var("SLUICE_TEST_POSTGRES_URL")
        .unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432/postgres".to_owned())
}

pub struct Server {
    pub app: Router,
    pub store: Store,
    pub hand: ClockHand,
    pub clock: Clock,
    pub tokens: BTreeMap<String, String>,
    pub pg: Option<String>,
    pub _dir: tempfile::TempDir,
}

pub struct Answer {
    pub status: StatusCode,
    pub json: Value,
    pub etag: Option<String>,
}

impl Answer {
    #[track_caller]
    pub fn ok(&self, status: StatusCode) -> &Value {
        assert_eq!(self.status, status, "{}", self.json);
        &self.json
    }

    /// The problem's detail, after checking the status.
    #[track_caller]
    pub fn refused(&self, status: StatusCode) -> String {
        assert_eq!(self.status, status, "{}", self.json);
        self.json["detail"].as_str().unwrap().to_owned()
    }
}

pub fn repo_file(path: &str) -> String {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../..")
        .join(path)
        .canonicalize()
        .unwrap()
        .display()
        .to_string()
}

impl Server {
    pub async fn start(db: Db) -> Self {
        Self::start_with(db, |_| {}).await
    }

    /// Like [`Server::start`], with settings adjusted. Local feeds may come from
    /// `examples/feeds` and from the data directory's `feeds/` (made here) on both backends.
    pub async fn start_with(db: Db, adjust: impl FnOnce(&mut SettingsLayer)) -> Self {
        let dir = tempfile::tempdir().unwrap();
        std::fs::create_dir(dir.path().join("feeds")).unwrap();
        let mut layer = SettingsLayer {
            data_dir: Some(dir.path().to_owned()),
            admin_password: Some(Secret::new("first-admin-password")),
            feed_dirs: Some(vec![
                Path::new(&repo_file("examples/feeds")).to_owned(),
                dir.path().join("feeds"),
            ]),
            ..SettingsLayer::default()
        };
        adjust(&mut layer);
        let mut pg = None;
        if db == Db::Postgres {
            let mut bytes = [0u8; 6];
            getrandom::fill(&mut bytes).unwrap();
            let name = format!(
                "sluice_api_test_{}",
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
                .map(|(b, d)| (b.to_owned(), d.to_owned()))
                .unwrap();
            layer.database_url = Some(Secret::new(format!("{base}/{name}")));
            pg = Some(name);
        }
        let settings = Settings::from_layer(layer).unwrap();
        let store = sluice_server::open_store(&settings).await.unwrap();
        assert_eq!(
            store.backend() == sluice_store::Backend::Postgres,
            db == Db::Postgres
        );
        sluice_server::ensure_admin(&store, &settings)
            .await
            .unwrap();
        let (clock, hand) = Clock::manual(START.parse().unwrap());
        let app = sluice_server::app_with_clock(
            store.clone(),
            settings,
            None,
            Default::default(),
            clock.clone(),
        )
        .unwrap();
        let mut server = Self {
            app,
            store,
            hand,
            clock,
            tokens: BTreeMap::new(),
            pg,
            _dir: dir,
        };
        let admin = server.login("admin", "first-admin-password").await;
        server.tokens.insert("admin".to_owned(), admin);
        // alice requests changes; as a CAB member she would vote, but never on her own.
        server
            .user("alice", &["operator", "approver"], &["cab"])
            .await;
        server.user("olga", &["operator"], &[]).await;
        server.user("bob", &["approver"], &["cab"]).await;
        server.user("carol", &["approver"], &["cab"]).await;
        server.user("erin", &["approver"], &["ecab"]).await;
        server.user("chair", &["approver"], &["cab-chairs"]).await;
        server
            .user("sam", &["security", "approver"], &["security"])
            .await;
        server.user("victor", &["viewer"], &[]).await;
        let csv = "host,os,env,criticality,exposure,tags\n\
                   db1,Debian:12,prod,5,internal,db\n\
                   web2,Debian:12,prod,2,internal,web\n\
                   tz1,Debian:12,dev,1,internal,tz\n";
        server
            .call(
                Method::POST,
                "/api/v1/assets/import",
                "olga",
                Some(json!({"format": "csv", "content": csv})),
            )
            .await
            .ok(StatusCode::OK);
        server
    }

    pub async fn finish(self) {
        self.store.close().await;
        if let Some(name) = self.pg {
            let mut conn = sqlx::PgConnection::connect(&admin_url()).await.unwrap();
            sqlx::raw_sql(sqlx::AssertSqlSafe(format!(
                "DROP DATABASE IF EXISTS {name} WITH (FORCE)"
            )))
            .execute(&mut conn)
            .await
            .unwrap();
        }
    }

    pub async fn login(&self, username: &str, password: &str) -> String {
        let answer = self
            .send(
                Method::POST,
                "/api/v1/login",
                None,
                &[],
                Some(json!({"username": username, "password": password})),
            )
            .await;
        answer.ok(StatusCode::OK)["token"]
            .as_str()
            .unwrap()
            .to_owned()
    }

    pub async fn user(&mut self, name: &str, roles: &[&str], groups: &[&str]) {
        self.call(
            Method::POST,
            "/api/v1/users",
            "admin",
            Some(json!({"username": name, "password": PASSWORD, "roles": roles, "groups": groups})),
        )
        .await
        .ok(StatusCode::CREATED);
        let token = self.login(name, PASSWORD).await;
        self.tokens.insert(name.to_owned(), token);
    }

    pub async fn send(
        &self,
        method: Method,
        path: &str,
        token: Option<&str>,
        headers: &[(&str, &str)],
        body: Option<Value>,
    ) -> Answer {
        let mut request = Request::builder().method(method).uri(path);
        if let Some(token) = token {
            request = request.header("authorization", format!("Bearer {token}"));
        }
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
        let response = self.app.clone().oneshot(request).await.unwrap();
        let status = response.status();
        let etag = response
            .headers()
            .get("etag")
            .map(|v| v.to_str().unwrap().to_owned());
        let bytes = response.into_body().collect().await.unwrap().to_bytes();
        let json = serde_json::from_slice(&bytes)
            .unwrap_or_else(|_| Value::String(String::from_utf8_lossy(&bytes).into_owned()));
        Answer { status, json, etag }
    }

    pub async fn call(&self, method: Method, path: &str, who: &str, body: Option<Value>) -> Answer {
        let token = self.tokens[who].clone();
        self.send(method, path, Some(&token), &[], body).await
    }

    pub async fn get(&self, path: &str) -> Value {
        self.call(Method::GET, path, "victor", None)
            .await
            .ok(StatusCode::OK)
            .clone()
    }

    pub async fn act(&self, id: &str, who: &str, action: Value) -> Answer {
        self.call(
            Method::POST,
            &format!("/api/v1/changes/{id}/actions"),
            who,
            Some(action),
        )
        .await
    }

    pub async fn create(&self, who: &str, body: Value) -> Value {
        self.call(Method::POST, "/api/v1/changes", who, Some(body))
            .await
            .ok(StatusCode::CREATED)
            .clone()
    }

    pub fn advance(&self, hours: i64) {
        self.hand.advance(SignedDuration::from_hours(hours));
    }

    pub fn now(&self) -> Timestamp {
        self.clock.now()
    }

    /// The DSA list and CISA KEV from `examples/`, and web1's Debian 11 inventory.
    pub async fn with_findings(&self) {
        for (name, kind, path) in [
            ("debian-dsa", "advisories", "examples/feeds/DSA-list"),
            (
                "cisa-kev",
                "kev",
                "examples/feeds/known_exploited_vulnerabilities.json",
            ),
        ] {
            self.call(
                Method::POST,
                "/api/v1/feeds",
                "admin",
                Some(json!({"name": name, "kind": kind, "source": repo_file(path)})),
            )
            .await
            .ok(StatusCode::CREATED);
            self.call(
                Method::POST,
                &format!("/api/v1/feeds/{name}/sync"),
                "admin",
                None,
            )
            .await
            .ok(StatusCode::OK);
        }
        let status = std::fs::read_to_string(repo_file("examples/debian11-web/status")).unwrap();
        let os = std::fs::read_to_string(repo_file("examples/debian11-web/os-release")).unwrap();
        self.call(
            Method::PUT,
            "/api/v1/inventories/web1",
            "olga",
            Some(json!({"format": "dpkg-status", "content": status, "os_release": os})),
        )
        .await
        .ok(StatusCode::OK);
    }

    /// `actor action object` of every audit event about `object`.
    pub async fn audit_of(&self, object: &str) -> Vec<String> {
        self.store
            .audit_events(None)
            .await
            .unwrap()
            .into_iter()
            .filter(|e| e.object == object)
            .map(|e| format!("{} {}", e.actor, e.action))
            .collect()
    }

    pub async fn assert_chain_intact(&self) {
        let answer = self
            .call(Method::GET, "/api/v1/audit/verify", "admin", None)
            .await;
        assert_eq!(answer.json["intact"], true, "{}", answer.json);
        assert!(self.store.verify_audit().await.unwrap().is_ok());
    }

    pub fn advance_to(&self, at: &str) {
        let at: jiff::Timestamp = at.parse().unwrap();
        self.hand.advance(at.duration_since(self.clock.now()));
    }
}

/// A plan with steps, verification and rollback criteria.
pub fn plan() -> Value {
    json!({
        "implementation": ["drain the host", "upgrade the packages", "restart the services"],
        "verification": ["the service answers on its health check"],
        "rollback_criteria": {"max_failed_check_share": 0.1, "detection_window": "15m"}
    })
}

/// A change with explicit targets.
pub fn targets_change(title: &str, kind: &str, package: &str, version: &str, scope: &str) -> Value {
    json!({
        "title": title,
        "type": kind,
        "targets": [{"package": package, "version": version, "ecosystem": "Debian:12"}],
        "update_types": ["security"],
        "scope": scope,
        "plan": plan(),
    })
}

/// A change's id.
pub fn id(change: &Value) -> String {
    change["id"].as_str().unwrap().to_owned()
}
