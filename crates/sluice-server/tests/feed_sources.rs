//! Feed sources are fenced (issue 11, item 1), on SQLite and on PostgreSQL: a `security` user
//! cannot make the server read a file outside its feed directories (`/proc/self/environ`, a
//! shadow-like file, a `../` escape, a `file://` URL, a symlink or a directory leading out, a
//! FIFO or a device), nor more than `feed_max_bytes` of a file or an endless HTTP body, nor fetch
//! from a link-local or metadata address (literal, IPv4-mapped, or through a redirect). Refused
//! at registration with a 422 naming the reason, and again at every sync, also for feeds stored
//! before the checks existed. A secret placed in the files read never shows in any answer, in
//! `last_error`, in the audit chain or in stored feed content.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use axum::http::{Method, StatusCode};
use common::{Db, Server};
use serde_json::{Value, json};
use sluice_store::{Actor, FeedKind, NewFeed};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

/// The cap the test servers run with.
const MAX_BYTES: u64 = 64 * 1024;

/// One OSV record, a valid advisory feed.
const OSV: &str = r#"{"id": "TEST-2026-0001", "modified": "2026-01-01T00:00:00Z",
 "affected": [{"package": {"ecosystem": "Debian:12", "name": "demo"},
  "ranges": [{"type": "ECOSYSTEM", "events": [{"introduced": "0"}, {"fixed": "1.1"}]}]}]}"#;

/// Everything the tests read back, to search for the secret at the end.
#[derive(Default)]
struct Seen(Vec<String>, usize);

impl Seen {
    fn note(&mut self, value: &Value) {
        self.0.push(value.to_string());
    }
}

fn secret() -> String {
    let mut bytes = [0u8; 8];
    getrandom::fill(&mut bytes).unwrap();
    format!(
        "hunter2-{}",
        bytes.iter().map(|b| format!("{b:02x}")).collect::<String>()
    )
}

/// The test's files: `feeds` (the server's feed directory) and `outside` (anywhere else).
struct Files {
    feeds: PathBuf,
    outside: PathBuf,
    secret: String,
}

impl Files {
    fn at(feeds: &Path, outside: &Path) -> Self {
        let secret = secret();
        // Outside the feed directory: a shadow-like file and a home with CLI credentials.
        std::fs::write(
            outside.join("shadow"),
            format!("root:{}:19000:0:99999:7:::\n", secret),
        )
        .unwrap();
        let home = outside.join("home");
        std::fs::create_dir_all(home.join(".config/sluice")).unwrap();
        std::fs::write(
            home.join(".config/sluice/credentials.json"),
            json!({"server": "http://127.0.0.1:8470", "token": secret}).to_string(),
        )
        .unwrap();
        // Inside: files that are not feeds (their first line is the secret), links out, a FIFO,
        // a directory source with a link out, an over-size file, and a good feed.
        std::fs::write(feeds.join("notes.txt"), format!("{secret}\nmore\n")).unwrap();
        std::fs::write(feeds.join("epss.csv"), format!("{secret},0.1\n")).unwrap();
        std::fs::write(
            feeds.join("kev.json"),
            json!({"catalogVersion": "1", "vulnerabilities": secret}).to_string(),
        )
        .unwrap();
        std::os::unix::fs::symlink(outside.join("shadow"), feeds.join("shadow.json")).unwrap();
        std::os::unix::fs::symlink("/dev/zero", feeds.join("zero.json")).unwrap();
        std::os::unix::fs::symlink(&home, feeds.join("home")).unwrap();
        let fifo = feeds.join("fifo.json");
        rustix::fs::mknodat(
            rustix::fs::CWD,
            &fifo,
            rustix::fs::FileType::Fifo,
            rustix::fs::Mode::from_raw_mode(0o600),
            0,
        )
        .unwrap();
        let bundle = feeds.join("bundle");
        std::fs::create_dir(&bundle).unwrap();
        std::fs::write(bundle.join("TEST-1.json"), OSV).unwrap();
        std::os::unix::fs::symlink(
            home.join(".config/sluice/credentials.json"),
            bundle.join("credentials.json"),
        )
        .unwrap();
        std::fs::write(
            feeds.join("big.json"),
            vec![b' '; usize::try_from(MAX_BYTES).unwrap() + 1],
        )
        .unwrap();
        std::fs::write(feeds.join("good.json"), OSV).unwrap();
        // A directory of JSON that is no feed (a copied home's settings).
        std::fs::create_dir(feeds.join("configs")).unwrap();
        std::fs::write(
            feeds.join("configs/credentials.json"),
            json!({"server": "http://127.0.0.1:8470", "token": secret}).to_string(),
        )
        .unwrap();
        Self {
            feeds: feeds.to_owned(),
            outside: outside.to_owned(),
            secret,
        }
    }

    fn feed(&self, name: &str) -> String {
        self.feeds.join(name).display().to_string()
    }
}

async fn start(db: Db) -> Server {
    Server::start_with(db, |layer| layer.feed_max_bytes = Some(MAX_BYTES)).await
}

/// `POST /api/v1/feeds` as the security user.
async fn add(server: &Server, name: &str, kind: &str, source: &str) -> common::Answer {
    server
        .call(
            Method::POST,
            "/api/v1/feeds",
            "sam",
            Some(json!({"name": name, "kind": kind, "source": source})),
        )
        .await
}

/// A feed stored as an older server would have taken it, with no check of its source.
async fn stored(server: &Server, name: &str, kind: FeedKind, source: &str) -> String {
    server
        .store
        .create_feed(
            NewFeed {
                name: name.to_owned(),
                kind,
                source: source.to_owned(),
                interval_seconds: None,
            },
            &Actor::system(),
        )
        .await
        .unwrap()
        .id
}

/// Syncs a feed (by name or id) and returns the feed after it, checking nothing hangs.
async fn sync(server: &Server, key: &str, seen: &mut Seen) -> Value {
    let answer = tokio::time::timeout(
        Duration::from_secs(60),
        server.call(
            Method::POST,
            &format!("/api/v1/feeds/{key}/sync"),
            "sam",
            None,
        ),
    )
    .await
    .expect("the sync finishes");
    let report = answer.ok(StatusCode::OK).clone();
    seen.note(&report);
    seen.1 += 1;
    report["feed"].clone()
}

/// Syncs and checks the sync failed with `kind`; returns `last_error`.
async fn refused_at_sync(server: &Server, key: &str, kind: &str, seen: &mut Seen) -> String {
    let feed = sync(server, key, seen).await;
    assert_eq!(feed["last_status"], "error", "{feed}");
    let error = feed["last_error"].as_str().unwrap().to_owned();
    assert!(
        error.starts_with(&format!("{kind}: ")),
        "{key}: expected {kind}: {error}"
    );
    error
}

/// Registration is refused with a 422 on `source`, and no feed is stored.
async fn refused_at_registration(
    server: &Server,
    source: &str,
    expect: &str,
    seen: &mut Seen,
) -> String {
    let answer = add(server, "probe", "advisories", source).await;
    seen.note(&answer.json);
    let detail = answer.refused(StatusCode::UNPROCESSABLE_ENTITY);
    assert_eq!(answer.json["field"], "source", "{}", answer.json);
    assert!(detail.contains(expect), "{source}: {detail}");
    let feeds = server.get("/api/v1/feeds").await;
    assert!(
        feeds
            .as_array()
            .unwrap()
            .iter()
            .all(|f| f["name"] != "probe"),
        "{feeds}"
    );
    detail
}

async fn local_sources_are_fenced(server: &Server) {
    let outside = tempfile::tempdir().unwrap();
    let files = Files::at(&server._dir.path().join("feeds"), outside.path());
    let mut seen = Seen::default();

    // Registration: each way out is refused, naming why.
    let outside_dirs = "outside the feed directories";
    for (source, expect) in [
        ("/proc/self/environ".to_owned(), outside_dirs),
        ("/etc/passwd".to_owned(), outside_dirs),
        (
            files.outside.join("shadow").display().to_string(),
            outside_dirs,
        ),
        (format!("{}/../../../../etc/passwd", files.feed("")), "'..'"),
        (
            format!("{}/../{}", files.feed(""), "feeds/good.json"),
            "'..'",
        ),
        (format!("file://{}", files.feed("good.json")), "file: URLs"),
        ("ftp://mirror.example/osv.json".to_owned(), "http(s)"),
        ("feeds/good.json".to_owned(), "absolute path"),
        (files.feed("shadow.json"), "symbolic link"),
        (files.feed("home"), "symbolic link"),
        (
            files.outside.join("home").display().to_string(),
            outside_dirs,
        ),
        ("/dev/zero".to_owned(), outside_dirs),
        (files.feed("zero.json"), "symbolic link"),
        (files.feed("fifo.json"), "not a regular file"),
        (files.feed("missing.json"), "cannot read"),
    ] {
        let detail = refused_at_registration(server, &source, expect, &mut seen).await;
        assert!(!detail.contains(&files.secret), "{detail}");
    }

    // A good file registers and syncs, by name and by id.
    let good = add(server, "good", "advisories", &files.feed("good.json")).await;
    let good = good.ok(StatusCode::CREATED).clone();
    let feed = sync(server, "good", &mut seen).await;
    assert_eq!(
        (feed["last_status"].clone(), feed["records"].clone()),
        (json!("ok"), json!(1))
    );
    let feed = sync(server, good["id"].as_str().unwrap(), &mut seen).await;
    assert_eq!(feed["last_status"], "unchanged", "{feed}");

    // Files inside that are not what their kind says: the error names the place, not the line.
    for (name, kind, file) in [
        ("notes", "advisories", "notes.txt"),
        ("scores", "epss", "epss.csv"),
        ("catalog", "kev", "kev.json"),
    ] {
        add(server, name, kind, &files.feed(file))
            .await
            .ok(StatusCode::CREATED);
        let error = refused_at_sync(server, name, "not-a-feed", &mut seen).await;
        assert!(
            error.contains("not a recognised feed format at") && error.contains(file),
            "{error}"
        );
        assert!(!error.contains(&files.secret), "{error}");
    }

    // A directory inside with a link out: refused as a whole, nothing of it stored.
    add(server, "bundle", "advisories", &files.feed("bundle"))
        .await
        .ok(StatusCode::CREATED);
    let error = refused_at_sync(server, "bundle", "not-allowed", &mut seen).await;
    assert!(error.contains("credentials.json"), "{error}");

    // A directory inside whose JSON is no feed: refused, not stored as skipped records.
    add(server, "configs", "advisories", &files.feed("configs"))
        .await
        .ok(StatusCode::CREATED);
    let error = refused_at_sync(server, "configs", "not-a-feed", &mut seen).await;
    assert!(error.contains("none of its 1 records is valid"), "{error}");

    // Over the cap: stopped with a clear error.
    add(server, "big", "advisories", &files.feed("big.json"))
        .await
        .ok(StatusCode::CREATED);
    let error = refused_at_sync(server, "big", "too-large", &mut seen).await;
    assert!(
        error.contains(&format!("feed_max_bytes ({MAX_BYTES} bytes)")),
        "{error}"
    );

    // Feeds stored before the checks (or through another way in) are refused at sync.
    for (name, kind, source, reason) in [
        (
            "environ",
            FeedKind::Advisories,
            "/proc/self/environ".to_owned(),
            "not-allowed",
        ),
        (
            "shadow",
            FeedKind::Epss,
            files.outside.join("shadow").display().to_string(),
            "not-allowed",
        ),
        (
            "home",
            FeedKind::Advisories,
            files.outside.join("home").display().to_string(),
            "not-allowed",
        ),
        (
            "escape",
            FeedKind::Advisories,
            format!("{}/../../etc/passwd", files.feed("")),
            "not-allowed",
        ),
        (
            "zero",
            FeedKind::Advisories,
            "/dev/zero".to_owned(),
            "not-allowed",
        ),
        (
            "link",
            FeedKind::Epss,
            files.feed("shadow.json"),
            "not-allowed",
        ),
        (
            "url",
            FeedKind::Advisories,
            format!("file://{}", files.outside.join("shadow").display()),
            "not-allowed",
        ),
    ] {
        stored(server, name, kind, &source).await;
        let error = refused_at_sync(server, name, reason, &mut seen).await;
        assert!(!error.contains(&files.secret), "{error}");
    }

    // The file system changes after registration: each sync checks again, and a failed sync
    // keeps the last good content.
    let swap = files.feeds.join("swap.json");
    std::fs::write(&swap, OSV).unwrap();
    add(server, "swap", "advisories", &swap.display().to_string())
        .await
        .ok(StatusCode::CREATED);
    assert_eq!(sync(server, "swap", &mut seen).await["last_status"], "ok");
    std::fs::remove_file(&swap).unwrap();
    std::os::unix::fs::symlink(files.outside.join("shadow"), &swap).unwrap();
    refused_at_sync(server, "swap", "not-allowed", &mut seen).await;
    std::fs::remove_file(&swap).unwrap();
    std::fs::rename(files.feeds.join("fifo.json"), &swap).unwrap();
    let error = refused_at_sync(server, "swap", "not-allowed", &mut seen).await;
    assert!(error.contains("not a regular file"), "{error}");
    let feed = server.get("/api/v1/feeds").await;
    let swap_feed = feed
        .as_array()
        .unwrap()
        .iter()
        .find(|f| f["name"] == "swap")
        .unwrap();
    assert_eq!(
        swap_feed["records"], 1,
        "the last good content stays: {swap_feed}"
    );

    no_secret_anywhere(server, &files.secret, &mut seen).await;
}

/// Every feed, every audit event (through the API and straight from the store), and every
/// stored feed content, searched for the secret along with the answers seen.
async fn no_secret_anywhere(server: &Server, secret: &str, seen: &mut Seen) {
    let feeds = server.get("/api/v1/feeds").await;
    seen.note(&feeds);
    let events = server
        .call(Method::GET, "/api/v1/audit/events", "sam", None)
        .await
        .ok(StatusCode::OK)
        .clone();
    seen.note(&events);
    let stored = server.store.audit_events(None).await.unwrap();
    let syncs: Vec<_> = stored.iter().filter(|e| e.action == "feed.sync").collect();
    assert_eq!(syncs.len(), seen.1, "every sync is audited");
    for event in &syncs {
        let after: Value = serde_json::from_str(event.after.as_deref().unwrap()).unwrap();
        // The audit chain keeps a reason kind, never a message.
        if after["status"] == "error" {
            assert_eq!(after.as_object().unwrap().len(), 2, "{after}");
            assert!(
                ["not-allowed", "too-large", "not-a-feed", "unreachable"]
                    .contains(&after["reason"].as_str().unwrap()),
                "{after}"
            );
        }
    }
    seen.0.extend(stored.iter().map(|e| format!("{e:?}")));
    for (feed, content) in server.store.feed_contents().await.unwrap() {
        seen.0.push(format!("{feed:?}"));
        seen.0.push(String::from_utf8_lossy(&content).into_owned());
    }
    for text in &seen.0 {
        assert!(!text.contains(secret), "the secret leaked: {text}");
    }
    server.assert_chain_intact().await;
}

/// A loopback HTTP server answering every request with `head` and then `body` (endlessly
/// when `endless`); returns its address and how many body bytes it managed to send.
async fn http_server(
    head: &'static str,
    endless: bool,
) -> (String, tokio::sync::watch::Receiver<u64>) {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let address = listener.local_addr().unwrap();
    let (sent_tx, sent_rx) = tokio::sync::watch::channel(0u64);
    tokio::spawn(async move {
        loop {
            let Ok((mut socket, _)) = listener.accept().await else {
                return;
            };
            let sent_tx = sent_tx.clone();
            tokio::spawn(async move {
                let mut request = Vec::new();
                let mut buffer = [0u8; 1024];
                while !request.windows(4).any(|w| w == b"\r\n\r\n") {
                    match socket.read(&mut buffer).await {
                        Ok(0) | Err(_) => return,
                        Ok(n) => request.extend_from_slice(&buffer[..n]),
                    }
                }
                if socket.write_all(head.as_bytes()).await.is_err() || !endless {
                    return;
                }
                let chunk = vec![b' '; 16 * 1024];
                let mut sent = 0u64;
                while socket.write_all(&chunk).await.is_ok() {
                    sent += chunk.len() as u64;
                    sent_tx.send_replace(sent);
                }
            });
        }
    });
    (format!("http://{address}"), sent_rx)
}

async fn http_sources_are_fenced(server: &Server) {
    let mut seen = Seen::default();

    // Metadata and link-local addresses: refused at registration, literal or mapped.
    for (source, expect) in [
        ("http://169.254.169.254/latest/meta-data/", "cloud metadata"),
        ("http://[fd00:ec2::254]/latest/meta-data/", "cloud metadata"),
        ("http://[::ffff:169.254.169.254]/", "cloud metadata"),
        ("http://169.254.10.1/feed.json", "link-local"),
        ("https://[fe80::1]:8443/feed.json", "link-local"),
    ] {
        refused_at_registration(server, source, expect, &mut seen).await;
    }

    // Stored anyway: refused at sync at once, without a connection attempt (which would take
    // the connect timeout to fail here).
    stored(
        server,
        "metadata",
        FeedKind::Advisories,
        "http://169.254.169.254/latest/meta-data/iam/",
    )
    .await;
    let started = Instant::now();
    let error = refused_at_sync(server, "metadata", "not-allowed", &mut seen).await;
    assert!(
        started.elapsed() < Duration::from_secs(2),
        "{:?}",
        started.elapsed()
    );
    assert!(error.contains("feed_allow_link_local"), "{error}");

    // A redirect there is checked the same way.
    let (redirector, _) = http_server(
        "HTTP/1.1 302 Found\r\nLocation: http://169.254.169.254/latest/meta-data/\r\nContent-Length: 0\r\n\r\n",
        false,
    )
    .await;
    add(
        server,
        "redirected",
        "advisories",
        &format!("{redirector}/feed.json"),
    )
    .await
    .ok(StatusCode::CREATED);
    refused_at_sync(server, "redirected", "not-allowed", &mut seen).await;

    // An endless body stops at the cap.
    let (endless, sent) = http_server(
        "HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nConnection: close\r\n\r\n",
        true,
    )
    .await;
    add(
        server,
        "endless",
        "advisories",
        &format!("{endless}/feed.json"),
    )
    .await
    .ok(StatusCode::CREATED);
    let started = Instant::now();
    let error = refused_at_sync(server, "endless", "too-large", &mut seen).await;
    assert!(error.contains("feed_max_bytes"), "{error}");
    assert!(
        started.elapsed() < Duration::from_secs(30),
        "{:?}",
        started.elapsed()
    );
    // The reader stopped: the sender's count stops growing once the socket closes.
    tokio::time::sleep(Duration::from_millis(300)).await;
    let stopped_at = *sent.borrow();
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(
        *sent.borrow(),
        stopped_at,
        "still sending: the reader did not stop"
    );
    eprintln!(
        "endless body: refused after {:?}, {stopped_at} bytes sent",
        started.elapsed()
    );

    // A declared length over the cap is refused before reading.
    let (declared, _) = http_server(
        "HTTP/1.1 200 OK\r\nContent-Length: 1000000000\r\n\r\n",
        false,
    )
    .await;
    add(
        server,
        "declared",
        "advisories",
        &format!("{declared}/feed.json"),
    )
    .await
    .ok(StatusCode::CREATED);
    refused_at_sync(server, "declared", "too-large", &mut seen).await;

    // An error page's body is not quoted.
    let (failing, _) = http_server(
        "HTTP/1.1 500 Internal Server Error\r\nContent-Length: 22\r\n\r\nhunter2-in-error-pages",
        false,
    )
    .await;
    add(
        server,
        "failing",
        "advisories",
        &format!("{failing}/feed.json"),
    )
    .await
    .ok(StatusCode::CREATED);
    let error = refused_at_sync(server, "failing", "unreachable", &mut seen).await;
    assert!(error.contains("500"), "{error}");
    no_secret_anywhere(server, "hunter2-in-error-pages", &mut seen).await;
}

/// A deployment that allows it may fetch from a link-local mirror: the check is a setting.
async fn link_local_can_be_allowed(db: Db) {
    let server = Server::start_with(db, |layer| layer.feed_allow_link_local = Some(true)).await;
    add(
        &server,
        "mirror",
        "advisories",
        "http://169.254.10.1/feed.json",
    )
    .await
    .ok(StatusCode::CREATED);
    server.finish().await;
}

/// Over-broad settings (the whole file system) still never read process state or devices.
async fn pseudo_file_systems_are_never_feeds(db: Db) {
    let server = Server::start_with(db, |layer| {
        layer.feed_dirs = Some(vec![PathBuf::from("/")]);
    })
    .await;
    let mut seen = Seen::default();
    for source in [
        "/proc/self/environ",
        "/proc/self/cmdline",
        "/dev/zero",
        "/sys/kernel/hostname",
    ] {
        let answer = add(&server, "probe", "advisories", source).await;
        seen.note(&answer.json);
        let detail = answer.refused(StatusCode::UNPROCESSABLE_ENTITY);
        assert!(detail.contains("/proc, /sys or /dev"), "{source}: {detail}");
    }
    server.finish().await;
}

#[tokio::test]
async fn local_feed_sources_are_fenced() {
    for db in [Db::Sqlite, Db::Postgres] {
        let server = start(db).await;
        local_sources_are_fenced(&server).await;
        server.finish().await;
    }
}

#[tokio::test]
async fn http_feed_sources_are_fenced() {
    for db in [Db::Sqlite, Db::Postgres] {
        let server = start(db).await;
        http_sources_are_fenced(&server).await;
        server.finish().await;
    }
}

#[tokio::test]
async fn settings_widen_or_keep_the_fence() {
    for db in [Db::Sqlite, Db::Postgres] {
        link_local_can_be_allowed(db).await;
        pseudo_file_systems_are_never_feeds(db).await;
    }
}
