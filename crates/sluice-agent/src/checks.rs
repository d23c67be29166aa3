//! Post-update checks: a systemd unit is active, an HTTP endpoint answers as expected, a TCP
//! port accepts connections, a command exits 0. Each runs under its own deadline; a check that
//! hangs fails when its time is up (a hanging command is killed with its process group).
//!
//! The HTTP probe is a few lines of HTTP/1.1 over `TcpStream` (GET, `Connection: close`): no
//! TLS, no redirects, which keeps the agent small. Checks observe; they never change the host.

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream, ToSocketAddrs};
use std::process::Command;
use std::time::{Duration, Instant};

use sluice_core::job::{Check, CheckResult};

use crate::process;
use crate::root::PackageRoot;

/// The environment variable that tells a job's commands (checks, hooks, backup and
/// snapshot-revert commands) which package root the agent manages (`/` for the host).
pub const ROOT_ENV: &str = "SLUICE_ROOT";

/// Body bytes read at most from an HTTP probe.
const MAX_BODY: usize = 1024 * 1024;

/// Runs one check and says what it saw.
pub fn run(root: &PackageRoot, check: &Check) -> CheckResult {
    let started = Instant::now();
    let timeout = Duration::from_secs(u64::from(check.timeout_secs()));
    let (passed, message) = match check {
        Check::SystemdActive { unit, .. } => systemd_active(unit, timeout),
        Check::Http {
            url,
            expect_status,
            body_contains,
            ..
        } => match http_get(url, timeout) {
            Err(e) => (false, e),
            Ok((status, body)) => {
                if status != *expect_status {
                    (false, format!("status {status}, expected {expect_status}"))
                } else if let Some(needle) = body_contains
                    && !body.contains(needle.as_str())
                {
                    (
                        false,
                        format!("status {status}, but the body does not contain {needle:?}"),
                    )
                } else {
                    (true, format!("status {status}"))
                }
            }
        },
        Check::Tcp { addr, .. } => match tcp_connect(addr, timeout) {
            Ok((_, peer)) => (true, format!("connected to {peer}")),
            Err(e) => (false, e),
        },
        Check::Command { argv, .. } => run_command(root, argv, timeout),
    };
    CheckResult {
        check: check.to_string(),
        passed,
        message,
        millis: started.elapsed().as_secs_f64() * 1000.0,
    }
}

/// Runs a job-supplied command (no shell) with [`ROOT_ENV`] set; passes on exit 0.
pub fn run_command(root: &PackageRoot, argv: &[String], timeout: Duration) -> (bool, String) {
    let Some((program, args)) = argv.split_first() else {
        return (false, "empty command".to_owned());
    };
    let mut command = Command::new(program);
    command.args(args).env(ROOT_ENV, root.dir());
    match process::run(command, timeout) {
        Err(e) => (false, e.to_string()),
        Ok(done) => (done.success(), done.describe()),
    }
}

fn systemd_active(unit: &str, timeout: Duration) -> (bool, String) {
    let mut command = Command::new("systemctl");
    command.args(["is-active", "--", unit]);
    match process::run(command, timeout) {
        Err(e) => (false, e.to_string()),
        Ok(done) if done.timed_out => (false, done.status_text()),
        Ok(done) => {
            let state = done.stdout.trim();
            if state == "active" {
                (true, "active".to_owned())
            } else if state.is_empty() {
                (false, done.describe())
            } else {
                (false, format!("{unit} is {state}"))
            }
        }
    }
}

/// Connects to `host:port` within `timeout`, trying each resolved address.
pub fn tcp_connect(addr: &str, timeout: Duration) -> Result<(TcpStream, SocketAddr), String> {
    let deadline = Instant::now() + timeout;
    let addrs: Vec<SocketAddr> = addr
        .to_socket_addrs()
        .map_err(|e| format!("resolving {addr}: {e}"))?
        .collect();
    let mut last = format!("{addr} resolved to no address");
    for candidate in addrs {
        let left = deadline.saturating_duration_since(Instant::now());
        if left.is_zero() {
            return Err(format!("connecting to {addr}: timed out after {timeout:?}"));
        }
        match TcpStream::connect_timeout(&candidate, left) {
            Ok(stream) => return Ok((stream, candidate)),
            Err(e) => last = format!("connecting to {candidate}: {e}"),
        }
    }
    Err(last)
}

/// `GET url` over HTTP/1.1; returns the status code and the body (de-chunked).
pub fn http_get(url: &str, timeout: Duration) -> Result<(u16, String), String> {
    let deadline = Instant::now() + timeout;
    let rest = url
        .strip_prefix("http://")
        .ok_or_else(|| format!("{url}: only http:// URLs are supported"))?;
    let (authority, path) = match rest.find('/') {
        Some(i) => (&rest[..i], &rest[i..]),
        None => (rest, "/"),
    };
    let with_port = if authority
        .rsplit_once(':')
        .is_some_and(|(_, p)| p.parse::<u16>().is_ok())
    {
        authority.to_owned()
    } else {
        format!("{authority}:80")
    };
    let (mut stream, _) = tcp_connect(&with_port, timeout)?;
    let left = deadline.saturating_duration_since(Instant::now());
    let request = format!(
        "GET {path} HTTP/1.1\r\nHost: {authority}\r\nUser-Agent: sluice-agent\r\nAccept: */*\r\nConnection: close\r\n\r\n"
    );
    let timed_out = || format!("GET {url}: no complete answer within {timeout:?}");
    stream
        .set_write_timeout(Some(left.max(Duration::from_millis(1))))
        .and_then(|()| stream.write_all(request.as_bytes()))
        .map_err(|e| format!("GET {url}: sending: {e}"))?;
    let mut response = Vec::new();
    let mut buf = [0u8; 8192];
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        if left.is_zero() {
            return Err(timed_out());
        }
        stream
            .set_read_timeout(Some(left))
            .map_err(|e| format!("GET {url}: {e}"))?;
        match stream.read(&mut buf) {
            Ok(0) => break,
            Ok(n) => {
                response.extend_from_slice(&buf[..n]);
                if response.len() > MAX_BODY + 64 * 1024 {
                    break;
                }
            }
            Err(e)
                if matches!(
                    e.kind(),
                    std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
                ) =>
            {
                return Err(timed_out());
            }
            Err(e) => return Err(format!("GET {url}: reading: {e}")),
        }
    }
    parse_response(&response).map_err(|e| format!("GET {url}: {e}"))
}

/// Splits an HTTP/1.x response into status and body, undoing chunked transfer encoding.
pub fn parse_response(bytes: &[u8]) -> Result<(u16, String), String> {
    let split = bytes
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .ok_or("the answer has no end of headers")?;
    let head = String::from_utf8_lossy(&bytes[..split]);
    let body = &bytes[split + 4..];
    let mut lines = head.lines();
    let status_line = lines.next().unwrap_or_default();
    let mut words = status_line.split_whitespace();
    let version = words.next().unwrap_or_default();
    if !version.starts_with("HTTP/1.") {
        return Err(format!("not an HTTP/1 answer: {status_line:?}"));
    }
    let status = words
        .next()
        .and_then(|s| s.parse::<u16>().ok())
        .ok_or_else(|| format!("no status code in {status_line:?}"))?;
    let chunked = lines.any(|l| {
        l.split_once(':').is_some_and(|(k, v)| {
            k.trim().eq_ignore_ascii_case("transfer-encoding")
                && v.to_ascii_lowercase().contains("chunked")
        })
    });
    let body = if chunked {
        dechunk(body)?
    } else {
        body.to_vec()
    };
    Ok((status, String::from_utf8_lossy(&body).into_owned()))
}

fn dechunk(mut bytes: &[u8]) -> Result<Vec<u8>, String> {
    let mut body = Vec::new();
    loop {
        let line_end = bytes
            .windows(2)
            .position(|w| w == b"\r\n")
            .ok_or("truncated chunk size")?;
        let size_text = String::from_utf8_lossy(&bytes[..line_end]);
        let size_text = size_text.split(';').next().unwrap_or_default().trim();
        let size = usize::from_str_radix(size_text, 16)
            .map_err(|_| format!("bad chunk size {size_text:?}"))?;
        bytes = &bytes[line_end + 2..];
        if size == 0 {
            return Ok(body);
        }
        if bytes.len() < size {
            return Err("truncated chunk".to_owned());
        }
        body.extend_from_slice(&bytes[..size]);
        bytes = bytes.get(size + 2..).unwrap_or_default();
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::net::TcpListener;

    fn serve_once(answer: &'static [u8]) -> String {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = listener.local_addr().unwrap();
        std::thread::spawn(move || {
            if let Ok((mut stream, _)) = listener.accept() {
                let mut buf = [0u8; 1024];
                let _ = stream.read(&mut buf);
                let _ = stream.write_all(answer);
            }
        });
        format!("http://{addr}/health")
    }

    #[test]
    fn responses_parse() {
        let (status, body) =
            parse_response(b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok").unwrap();
        assert_eq!((status, body.as_str()), (200, "ok"));
        let chunked = b"HTTP/1.1 503 Unavailable\r\nTransfer-Encoding: chunked\r\n\r\n4\r\nfail\r\n3;x=y\r\ning\r\n0\r\n\r\n";
        assert_eq!(
            parse_response(chunked).unwrap(),
            (503, "failing".to_owned())
        );
        assert!(parse_response(b"SSH-2.0-OpenSSH\r\n\r\n").is_err());
        assert!(parse_response(b"HTTP/1.1 200 OK\r\n").is_err());
    }

    #[test]
    fn http_probe_against_a_listener() {
        let root = PackageRoot::Host;
        let url = serve_once(b"HTTP/1.1 200 OK\r\nConnection: close\r\n\r\nall good");
        let check = Check::Http {
            url,
            expect_status: 200,
            body_contains: Some("good".into()),
            timeout_secs: 5,
        };
        let result = run(&root, &check);
        assert!(result.passed, "{result:?}");
        let url = serve_once(b"HTTP/1.1 200 OK\r\nConnection: close\r\n\r\nall bad");
        let check = Check::Http {
            url,
            expect_status: 200,
            body_contains: Some("good".into()),
            timeout_secs: 5,
        };
        let result = run(&root, &check);
        assert!(!result.passed);
        assert!(result.message.contains("does not contain"), "{result:?}");
    }

    #[test]
    fn a_silent_server_times_out() {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let url = format!("http://{}/", listener.local_addr().unwrap());
        let started = Instant::now();
        let err = http_get(&url, Duration::from_millis(300)).unwrap_err();
        assert!(err.contains("no complete answer"), "{err}");
        assert!(started.elapsed() < Duration::from_secs(3));
        drop(listener);
    }

    #[test]
    fn tcp_and_command_checks() {
        let root = PackageRoot::Host;
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = listener.local_addr().unwrap().to_string();
        let open = run(
            &root,
            &Check::Tcp {
                addr: addr.clone(),
                timeout_secs: 2,
            },
        );
        assert!(open.passed, "{open:?}");
        drop(listener);
        let closed = run(
            &root,
            &Check::Tcp {
                addr,
                timeout_secs: 2,
            },
        );
        assert!(!closed.passed);
        let hang = run(
            &root,
            &Check::Command {
                argv: vec!["/bin/sleep".into(), "30".into()],
                timeout_secs: 1,
            },
        );
        assert!(!hang.passed);
        assert!(hang.message.contains("timed out"), "{hang:?}");
        assert!(hang.millis < 5000.0);
        let env = run(
            &root,
            &Check::Command {
                argv: vec![
                    "/bin/sh".into(),
                    "-c".into(),
                    "test \"$SLUICE_ROOT\" = /".into(),
                ],
                timeout_secs: 5,
            },
        );
        assert!(env.passed, "{env:?}");
    }
}
