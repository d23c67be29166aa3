//! The server stays reachable while clients hold connections open with half-sent requests
//! (issue 11, item 4): a probe's 1,100 such connections used to exhaust the usual 1,024 open
//! files and time out `/healthz` and login.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use tokio::io::{AsyncReadExt, AsyncWriteExt};

/// `sluice server` started with the usual soft limit of 1,024 open files.
fn server_with_1024_files(port: u16, env: &[(&str, &str)]) -> Child {
    let listen = format!("127.0.0.1:{port}");
    let data = tempfile::tempdir().unwrap().keep();
    let mut command = Command::new("prlimit");
    command
        .args([
            "--nofile=1024:",
            "--",
            env!("CARGO_BIN_EXE_sluice"),
            "server",
        ])
        .args(["--listen", &listen, "--data-dir"])
        .arg(&data)
        .env("SLUICE_ADMIN_PASSWORD", common::PASSWORD)
        .envs(env.iter().copied())
        .stdout(Stdio::null())
        .stderr(Stdio::piped());
    let mut child = command.spawn().unwrap();
    let stderr = child.stderr.take().unwrap();
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(stderr).lines().map_while(Result::ok) {
            if line.contains("listening") {
                let _ = tx.send(());
            }
        }
    });
    rx.recv_timeout(Duration::from_secs(60))
        .expect("the server starts listening");
    child
}

/// One login over a fresh connection, with timeouts: the status, or why there was none.
fn login(address: SocketAddr) -> Result<u16, String> {
    let mut stream = TcpStream::connect_timeout(&address, Duration::from_secs(2))
        .map_err(|e| format!("connect: {e}"))?;
    stream
        .set_read_timeout(Some(Duration::from_secs(3)))
        .unwrap();
    let body = format!(
        r#"{{"username":"admin","password":"{}"}}"#,
        common::PASSWORD
    );
    let request = format!(
        "POST /api/v1/login HTTP/1.1\r\nHost: {address}\r\nConnection: close\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\r\n{body}",
        body.len()
    );
    stream
        .write_all(request.as_bytes())
        .map_err(|e| format!("write: {e}"))?;
    let mut response = String::new();
    stream
        .read_to_string(&mut response)
        .map_err(|e| format!("read: {e}"))?;
    response
        .split_whitespace()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .ok_or_else(|| format!("no status in {response:?}"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn half_sent_requests_cannot_starve_login() {
    // This test holds more than 1,024 sockets itself.
    let files = rustix::process::getrlimit(rustix::process::Resource::Nofile);
    if let Some(hard) = files.maximum {
        rustix::process::setrlimit(
            rustix::process::Resource::Nofile,
            rustix::process::Rlimit {
                current: Some(hard),
                maximum: Some(hard),
            },
        )
        .unwrap();
    }
    let port = common::free_port();
    let address: SocketAddr = format!("127.0.0.1:{port}").parse().unwrap();
    let mut server = server_with_1024_files(
        port,
        &[
            ("SLUICE_HEADER_READ_TIMEOUT", "2s"),
            ("SLUICE_MAX_CONNECTIONS_PER_CLIENT", "100"),
        ],
    );
    assert_eq!(login(address), Ok(200), "login answers before the flood");

    // 1,100 clients from eleven loopback addresses, each sending half a request's headers.
    let mut slow = Vec::new();
    for i in 0..1100u32 {
        let source = SocketAddr::from(([127, 0, 0, 2 + (i / 100) as u8], 0));
        let socket = tokio::net::TcpSocket::new_v4().unwrap();
        socket.bind(source).unwrap();
        if let Ok(Ok(mut stream)) =
            tokio::time::timeout(Duration::from_secs(2), socket.connect(address)).await
        {
            let _ = stream
                .write_all(b"GET /healthz HTTP/1.1\r\nHost: 127.0.0.1\r\nX-Slow: ")
                .await;
            slow.push(stream);
        }
    }
    assert!(slow.len() > 1024, "the flood connected: {}", slow.len());

    // A person can still log in, promptly: the flood holds neither descriptors nor slots.
    let started = Instant::now();
    let mut last = Err(String::new());
    while started.elapsed() < Duration::from_secs(20) {
        last = login(address);
        if last == Ok(200) {
            break;
        }
        std::thread::sleep(Duration::from_millis(200));
    }
    assert_eq!(last, Ok(200), "login under the flood");

    // Every half-sent request is closed by the server once the header timeout passes.
    let deadline = Instant::now() + Duration::from_secs(15);
    let mut still_open = 0;
    for stream in &mut slow {
        let left = deadline.saturating_duration_since(Instant::now());
        let mut byte = [0u8; 512];
        match tokio::time::timeout(left, stream.read(&mut byte)).await {
            // Closed (EOF or reset) by the server, possibly after a 408 or an error answer.
            Ok(Ok(0) | Err(_)) => {}
            Ok(Ok(_)) => {
                // An answer to the half request: the connection must close right after it.
                let rest = tokio::time::timeout(Duration::from_secs(5), async {
                    let mut sink = Vec::new();
                    stream.read_to_end(&mut sink).await
                })
                .await;
                if rest.is_err() {
                    still_open += 1;
                }
            }
            Err(_) => still_open += 1,
        }
    }
    assert_eq!(
        still_open, 0,
        "half-sent requests still open after the timeout"
    );
    drop(slow);

    server.kill().unwrap();
    server.wait().unwrap();
}
