//! Inventory ingest throughput and findings query latency, through the real router (auth, JSON,
//! dpkg parsing, store, matching), on SQLite and PostgreSQL.
//!
//! `cargo bench -p sluice-server --bench ingest` — prints numbers; asserts nothing.
//! `SLUICE_BENCH_HOSTS` (default 10000) sets the fleet size; `SLUICE_BENCH_BACKENDS` is
//! `sqlite,postgres` by default; `SLUICE_BENCH_CLIENTS` (default 8) is how many agents push at
//! once; PostgreSQL is `SLUICE_TEST_POSTGRES_URL` (default
//! `postgres://postgres@127.0.0.1:5432/postgres`), in a database made and dropped here.
//! `SLUICE_BENCH_FLEETS` is `uniform,spread` by default:
//! - `uniform`: 3,000 generated package names, each at one of two versions in the whole fleet
//!   (the usual one, or an older one on one host in twenty), 6,000 generated advisories;
//! - `spread`: real package lists (`bench/fixtures/real_fleet.rs`: a Debian 12 machine's 788
//!   packages and the DSA list's sources), each host 0 to 5 point releases behind, package by
//!   package; 6,000 generated advisories fixed at those point releases. The server's match memo
//!   remembers each distinct (package, version), so the spread makes it work harder.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic, missing_docs)]

use std::fmt::Write as _;
use std::time::{Duration, Instant};

use axum::Router;
use axum::body::Body;
use axum::http::{Method, Request, StatusCode};
use http_body_util::BodyExt;
use serde_json::{Value, json};
use sluice_server::settings::{Secret, Settings, SettingsLayer};
use sqlx::Connection;
use tower::ServiceExt;

#[path = "../../../bench/fixtures/real_fleet.rs"]
mod real_fleet;

struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }

    fn below(&mut self, n: usize) -> usize {
        (self.next() % n as u64) as usize
    }
}

const NAMES: usize = 3000;
const PACKAGES_PER_HOST: usize = 1500;
const COMMON: usize = 1400;

/// The fleet's usual version of package `p`, and an older one some hosts lag on.
fn version(p: usize, old: bool) -> String {
    format!(
        "{}.{}.{}-{}",
        1 + p % 7,
        p % 13,
        if old { 1 } else { 5 },
        1 + p % 3
    )
}

fn advisories(rng: &mut Rng) -> String {
    let mut records = Vec::new();
    for i in 0..6000 {
        let p = rng.below(NAMES);
        // Most advisories are fixed below the versions hosts run (patched long ago); a quarter
        // catch hosts that lag on an old version; one in a hundred is open everywhere.
        let patch = match rng.below(100) {
            0 => 9,
            1..=25 => 3,
            _ => 0,
        };
        let fixed = format!("{}.{}.{}-{}", 1 + p % 7, p % 13, patch, 1 + p % 3);
        records.push(json!({
            "id": format!("BENCH-{i}"),
            "aliases": [format!("CVE-2031-{i:05}")],
            "affected": [{"package": {"ecosystem": "Debian:12", "name": format!("pkg{p}")},
                "ranges": [{"type": "ECOSYSTEM", "events": [{"introduced": "0"}, {"fixed": fixed}]}]}],
            "severity": [{"type": "CVSS_V3", "score": if i % 4 == 0 { "CVSS:3.1/AV:N/AC:L/PR:N/UI:N/S:U/C:H/I:H/A:H" } else { "CVSS:3.1/AV:L/AC:L/PR:L/UI:N/S:U/C:L/I:L/A:N" }}]
        }));
    }
    serde_json::to_string(&records).unwrap()
}

fn status_file(rng: &mut Rng) -> String {
    let mut text = String::with_capacity(PACKAGES_PER_HOST * 90);
    // Each host has the common packages and a distinct random choice of the rest.
    let mut extra = std::collections::BTreeSet::new();
    while extra.len() < PACKAGES_PER_HOST - COMMON {
        extra.insert(COMMON + rng.below(NAMES - COMMON));
    }
    for p in (0..COMMON).chain(extra) {
        let old = rng.below(20) == 0;
        let _ = write!(
            text,
            "Package: pkg{p}\nStatus: install ok installed\nArchitecture: amd64\nVersion: {}\n\n",
            version(p, old)
        );
    }
    text
}

/// Spread advisories over the real universe's sources: 97 % fixed before any version in the
/// fleet (patched long ago), 2.5 % at one of the point releases (hosts behind it are affected),
/// 0.5 % after the newest (every host that has the package): about as many findings a host as
/// the uniform fleet.
fn spread_advisories(rng: &mut Rng, packages: &[real_fleet::Package]) -> String {
    let mut records = Vec::new();
    for i in 0..6000 {
        let package = &packages[rng.below(packages.len())];
        let fixed = match rng.below(1000) {
            0..=4 => format!("{}+fix1", package.history[0]),
            5..=29 => package.history[rng.below(real_fleet::HISTORY)].clone(),
            _ => real_fleet::point_release_before(package.history.last().unwrap()),
        };
        records.push(json!({
            "id": format!("BENCH-{i}"),
            "aliases": [format!("CVE-2031-{i:05}")],
            "affected": [{"package": {"ecosystem": "Debian:12", "name": package.source},
                "ranges": [{"type": "ECOSYSTEM", "events": [{"introduced": "0"}, {"fixed": fixed}]}]}],
            "severity": [{"type": "CVSS_V3", "score": if i % 4 == 0 { "CVSS:3.1/AV:N/AC:L/PR:N/UI:N/S:U/C:H/I:H/A:H" } else { "CVSS:3.1/AV:L/AC:L/PR:L/UI:N/S:U/C:L/I:L/A:N" }}]
        }));
    }
    serde_json::to_string(&records).unwrap()
}

/// A spread host: the machine's packages and, to PACKAGES_PER_HOST, a distinct random choice of
/// the DSA list's sources, each at the point release `real_fleet::Spread` picks for this host.
fn spread_status_file(rng: &mut Rng, packages: &[real_fleet::Package]) -> String {
    let machine = 788.min(packages.len());
    let spread = real_fleet::Spread::host(rng.below(100));
    let mut chosen: Vec<usize> = (0..machine.min(PACKAGES_PER_HOST)).collect();
    let mut extra = std::collections::BTreeSet::new();
    while chosen.len() + extra.len() < PACKAGES_PER_HOST {
        extra.insert(machine + rng.below(packages.len() - machine));
    }
    chosen.extend(extra);
    let mut text = String::with_capacity(PACKAGES_PER_HOST * 120);
    for p in chosen {
        let package = &packages[p];
        let v = spread.index(rng.below(100));
        let (binary, source) = (&package.binary_history[v], &package.history[v]);
        let _ = write!(
            text,
            "Package: {}\nStatus: install ok installed\nArchitecture: amd64\n",
            package.name
        );
        if package.source != package.name || source != binary {
            let _ = writeln!(text, "Source: {} ({source})", package.source);
        }
        let _ = write!(text, "Version: {binary}\n\n");
    }
    text
}

/// Which fleet to push: generated names at two versions, or real lists spread over point
/// releases.
enum FleetKind {
    Uniform,
    Spread(Vec<real_fleet::Package>),
}

impl FleetKind {
    fn label(&self) -> &'static str {
        match self {
            FleetKind::Uniform => "uniform",
            FleetKind::Spread(_) => "spread",
        }
    }

    fn advisories(&self, rng: &mut Rng) -> String {
        match self {
            FleetKind::Uniform => advisories(rng),
            FleetKind::Spread(packages) => spread_advisories(rng, packages),
        }
    }

    fn status_file(&self, rng: &mut Rng) -> String {
        match self {
            FleetKind::Uniform => status_file(rng),
            FleetKind::Spread(packages) => spread_status_file(rng, packages),
        }
    }
}

async fn call(
    app: &Router,
    method: Method,
    path: &str,
    token: Option<&str>,
    body: Option<&Value>,
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

/// The machine's load averages (1, 5, 15 minutes), printed with the figures: the benchmark
/// shares its cores with whatever else runs.
fn load_average() -> String {
    std::fs::read_to_string("/proc/loadavg").map_or_else(
        |_| "unknown".to_owned(),
        |text| {
            text.split_whitespace()
                .take(3)
                .collect::<Vec<_>>()
                .join(" ")
        },
    )
}

fn percentile(sorted: &[Duration], p: f64) -> Duration {
    let index = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted[index]
}

async fn run(backend: &str, fleet: &FleetKind, hosts: usize, clients: usize) {
    let label = format!("{backend} {}", fleet.label());
    let dir = tempfile::tempdir().unwrap();
    let mut pg_name = None;
    let mut layer = SettingsLayer {
        data_dir: Some(dir.path().to_owned()),
        admin_password: Some(Secret::new("bench-admin-password")),
        max_body_bytes: Some(64 * 1024 * 1024),
        feed_dirs: Some(vec![dir.path().join("feeds")]),
        ..SettingsLayer::default()
    };
    let admin_url = std::env::var("SLUICE_TEST_POSTGRES_URL")
        .unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432/postgres".to_owned());
    if backend == "postgres" {
        let name = format!("sluice_bench_{}", std::process::id());
        let mut conn = sqlx::PgConnection::connect(&admin_url).await.unwrap();
        sqlx::raw_sql(sqlx::AssertSqlSafe(format!("CREATE DATABASE {name}")))
            .execute(&mut conn)
            .await
            .unwrap();
        let (base, _) = admin_url.rsplit_once('/').unwrap();
        layer.database_url = Some(Secret::new(format!("{base}/{name}")));
        pg_name = Some(name);
    }
    let settings = Settings::from_layer(layer).unwrap();
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
        Some(&json!({"username": "admin", "password": "bench-admin-password"})),
    )
    .await;
    let admin = login["token"].as_str().unwrap().to_owned();
    let (_, _) = call(
        &app,
        Method::POST,
        "/api/v1/users",
        Some(&admin),
        Some(&json!({"username": "ops", "password": "bench-operator-pw", "roles": ["operator", "security"]})),
    )
    .await;
    let (_, login) = call(
        &app,
        Method::POST,
        "/api/v1/login",
        None,
        Some(&json!({"username": "ops", "password": "bench-operator-pw"})),
    )
    .await;
    let ops = login["token"].as_str().unwrap().to_owned();

    let mut rng = Rng(7);
    let feed = dir.path().join("feeds/bench-osv.json");
    std::fs::create_dir_all(dir.path().join("feeds")).unwrap();
    std::fs::write(&feed, fleet.advisories(&mut rng)).unwrap();
    call(
        &app,
        Method::POST,
        "/api/v1/feeds",
        Some(&ops),
        Some(&json!({"name": "bench", "kind": "advisories", "source": feed})),
    )
    .await;
    let (status, sync) = call(
        &app,
        Method::POST,
        "/api/v1/feeds/bench/sync",
        Some(&ops),
        None,
    )
    .await;
    assert_eq!(status, StatusCode::OK, "{sync}");

    // The CMDB first: environments and criticality spread over the fleet, for selectors.
    let mut csv = String::from("hostname,environment,criticality,exposure\n");
    for i in 0..hosts {
        let env = ["prod", "staging", "dev"][i % 3];
        let exposure = if i % 10 == 0 { "internet" } else { "internal" };
        let _ = writeln!(csv, "host{i:05},{env},{},{exposure}", 1 + i % 5);
    }
    let (status, imported) = call(
        &app,
        Method::POST,
        "/api/v1/assets/import",
        Some(&ops),
        Some(&json!({"format": "csv", "content": csv})),
    )
    .await;
    assert_eq!(status, StatusCode::OK, "{imported}");

    // Bodies are prepared first so the measurement is the server's work.
    let bodies: Vec<Value> = (0..hosts)
        .map(|_| json!({"format": "dpkg-status", "content": fleet.status_file(&mut rng), "ecosystem": "Debian:12"}))
        .collect();
    // Agents push concurrently: `clients` tasks take the next body until none is left.
    let next = std::sync::Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let bodies = std::sync::Arc::new(bodies);
    println!(
        "{label}: load average before the pushes: {}",
        load_average()
    );
    let start = Instant::now();
    let mut tasks = Vec::new();
    for _ in 0..clients {
        let (app, ops, next, bodies) = (app.clone(), ops.clone(), next.clone(), bodies.clone());
        tasks.push(tokio::spawn(async move {
            let mut opened = 0u64;
            loop {
                let i = next.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                let Some(body) = bodies.get(i) else { break };
                let (status, report) = call(
                    &app,
                    Method::PUT,
                    &format!("/api/v1/inventories/host{i:05}"),
                    Some(&ops),
                    Some(body),
                )
                .await;
                assert_eq!(status, StatusCode::OK, "{report}");
                opened += report["findings"]["opened"].as_u64().unwrap();
            }
            opened
        }));
    }
    let mut opened = 0u64;
    for task in tasks {
        opened += task.await.unwrap();
    }
    let elapsed = start.elapsed();
    println!(
        "{label}: ingested {hosts} inventories x {PACKAGES_PER_HOST} packages from {clients} concurrent clients in {:.1} s = {:.0} inventories/s ({opened} findings opened, {:.0} a host)",
        elapsed.as_secs_f64(),
        hosts as f64 / elapsed.as_secs_f64(),
        opened as f64 / hosts as f64
    );

    // Planner statistics as the server's hourly refresh leaves them.
    store.optimize().await.unwrap();
    for (query_label, query) in [
        (
            "top 100 of all open findings",
            "/api/v1/findings?limit=100".to_owned(),
        ),
        (
            "top 100, decision act or attend",
            "/api/v1/findings?limit=100&decision=act,attend".to_owned(),
        ),
        (
            "top 100 of one host",
            "/api/v1/findings?limit=100&host=HOST".to_owned(),
        ),
        (
            "top 100 by selector env=prod,criticality>=4",
            "/api/v1/findings?limit=100&selector=env%3Dprod%2Ccriticality%3E%3D4".to_owned(),
        ),
        (
            "page 50 (offset 5000)",
            "/api/v1/findings?limit=100&offset=5000".to_owned(),
        ),
    ] {
        let mut times = Vec::new();
        for round in 0..100 {
            let path = query.replace("HOST", &format!("host{:05}", (round * 97) % hosts));
            let start = Instant::now();
            let (status, page) = call(&app, Method::GET, &path, Some(&ops), None).await;
            times.push(start.elapsed());
            assert_eq!(status, StatusCode::OK, "{page}");
        }
        times.sort();
        println!(
            "{label}: findings query, {query_label}: p50 {:.1} ms, p95 {:.1} ms",
            percentile(&times, 0.5).as_secs_f64() * 1e3,
            percentile(&times, 0.95).as_secs_f64() * 1e3
        );
    }
    println!(
        "{label}: load average after the queries: {}",
        load_average()
    );
    store.close().await;
    if let Some(name) = pg_name {
        let mut conn = sqlx::PgConnection::connect(&admin_url).await.unwrap();
        sqlx::raw_sql(sqlx::AssertSqlSafe(format!(
            "DROP DATABASE {name} WITH (FORCE)"
        )))
        .execute(&mut conn)
        .await
        .unwrap();
    }
}

fn main() {
    let hosts: usize = std::env::var("SLUICE_BENCH_HOSTS")
        .ok()
        .and_then(|h| h.parse().ok())
        .unwrap_or(10_000);
    let clients: usize = std::env::var("SLUICE_BENCH_CLIENTS")
        .ok()
        .and_then(|c| c.parse().ok())
        .unwrap_or(8)
        .max(1);
    let backends =
        std::env::var("SLUICE_BENCH_BACKENDS").unwrap_or_else(|_| "sqlite,postgres".to_owned());
    let fleets =
        std::env::var("SLUICE_BENCH_FLEETS").unwrap_or_else(|_| "uniform,spread".to_owned());
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .unwrap();
    for fleet in fleets.split(',') {
        let fleet = match fleet.trim() {
            "uniform" => FleetKind::Uniform,
            "spread" => FleetKind::Spread(real_fleet::universe()),
            other => panic!("SLUICE_BENCH_FLEETS: unknown fleet {other:?} (uniform, spread)"),
        };
        for backend in backends.split(',') {
            runtime.block_on(run(backend.trim(), &fleet, hosts, clients));
        }
    }
}
