//! Feeds over HTTPS: a real TLS server (`openssl s_server`) with a certificate from a test CA.
//! A server process that trusts the CA through `SLUICE_CA_FILE` syncs the feed; one that does
//! not refuses the certificate and keeps nothing.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use common::{PASSWORD, Running, free_port, ok, sluice};

fn openssl(dir: &Path, args: &[&str]) {
    let out = Command::new("openssl")
        .args(args)
        .current_dir(dir)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "openssl {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// A CA, and a server certificate for localhost signed by it.
fn certificates(dir: &Path) {
    openssl(
        dir,
        &[
            "req",
            "-x509",
            "-newkey",
            "rsa:2048",
            "-nodes",
            "-keyout",
            "ca.key",
            "-out",
            "ca.pem",
            "-days",
            "2",
            "-subj",
            "/CN=Sluice test CA",
        ],
    );
    openssl(
        dir,
        &[
            "req",
            "-newkey",
            "rsa:2048",
            "-nodes",
            "-keyout",
            "leaf.key",
            "-out",
            "leaf.csr",
            "-subj",
            "/CN=localhost",
        ],
    );
    std::fs::write(
        dir.join("leaf.ext"),
        "subjectAltName=DNS:localhost,IP:127.0.0.1\nbasicConstraints=CA:FALSE\nkeyUsage=digitalSignature,keyEncipherment\nextendedKeyUsage=serverAuth\n",
    )
    .unwrap();
    openssl(
        dir,
        &[
            "x509",
            "-req",
            "-in",
            "leaf.csr",
            "-CA",
            "ca.pem",
            "-CAkey",
            "ca.key",
            "-CAcreateserial",
            "-out",
            "leaf.pem",
            "-days",
            "2",
            "-extfile",
            "leaf.ext",
        ],
    );
}

/// `openssl s_server -WWW` serving the files of `dir` over TLS.
fn https_server(dir: &Path, port: u16) -> Child {
    let child = Command::new("openssl")
        .args([
            "s_server", "-quiet", "-WWW", "-cert", "leaf.pem", "-key", "leaf.key",
        ])
        .args(["-accept", &format!("127.0.0.1:{port}")])
        .current_dir(dir)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let deadline = Instant::now() + Duration::from_secs(20);
    while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
        assert!(Instant::now() < deadline, "openssl s_server did not start");
        std::thread::sleep(Duration::from_millis(50));
    }
    child
}

/// A server process (trusting `ca` or not) syncs the feed at `source`: whether the sync
/// succeeded, what it printed, and the feed as listed afterwards.
fn sync_from(source: &str, ca: Option<&Path>) -> (bool, String, serde_json::Value) {
    let data = tempfile::tempdir().unwrap();
    let config = tempfile::tempdir().unwrap();
    let ca = ca.map(|p| p.to_str().unwrap().to_owned());
    let server = Running::start_with_env(
        &["--data-dir", data.path().to_str().unwrap()],
        &[("SLUICE_CA_FILE", ca.as_deref())],
    );
    ok(&sluice(
        config.path(),
        &["login", "--server", &server.url, "--password-stdin"],
        Some(&format!("{PASSWORD}\n")),
    ));
    ok(&sluice(
        config.path(),
        &["feeds", "add", "dsa", "--source", source],
        None,
    ));
    let synced = sluice(config.path(), &["feeds", "sync"], None);
    let listed = ok(&sluice(
        config.path(),
        &["feeds", "list", "--output", "json"],
        None,
    ));
    server.stop();
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&synced.stdout),
        String::from_utf8_lossy(&synced.stderr)
    );
    let feeds: serde_json::Value = serde_json::from_str(&listed).unwrap();
    (synced.status.success(), text, feeds[0].clone())
}

#[test]
fn feeds_come_over_https_from_a_trusted_server_only() {
    let dir = tempfile::tempdir().unwrap();
    certificates(dir.path());
    let feed = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../examples/feeds/DSA-list");
    std::fs::copy(&feed, dir.path().join("DSA-list")).unwrap();
    let port = free_port();
    let mut tls = https_server(dir.path(), port);
    let source = format!("https://localhost:{port}/DSA-list");

    let (synced, text, feed) = sync_from(&source, Some(&dir.path().join("ca.pem")));
    assert!(synced, "{text}");
    assert!(feed["records"].as_i64().unwrap() > 1000, "{feed}");
    assert!(feed["last_error"].is_null(), "{feed}");

    let (_, text, feed) = sync_from(&source, None);
    let error = feed["last_error"]
        .as_str()
        .unwrap_or_default()
        .to_lowercase();
    assert!(
        error.contains("certificate")
            || error.contains("unknownissuer")
            || error.contains("issuer"),
        "an unknown CA is refused: {feed} {text}"
    );
    assert_eq!(
        feed["records"].as_i64().unwrap_or(0),
        0,
        "nothing kept: {feed}"
    );

    tls.kill().unwrap();
    tls.wait().unwrap();
}
