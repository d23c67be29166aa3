//! The HAProxy runtime API client against a real HAProxy: a frontend balancing round-robin over
//! two tiny HTTP servers, a canary's weight shifted down to 10% and back, traffic counted on
//! each side, drain and maintenance, and HAProxy's own refusals.
//!
//! Needs `/usr/sbin/haproxy` (installed by `.ci/setup`).

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use sluice_server::haproxy::{HaproxyError, HaproxyRuntime, RuntimeAddress, ServerState, Weights};

const HAPROXY: &str = "/usr/sbin/haproxy";

/// A tiny HTTP server answering every request with its own name, one thread per listener.
fn name_server(name: &'static str) -> u16 {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    std::thread::spawn(move || {
        for stream in listener.incoming() {
            let Ok(mut stream) = stream else { continue };
            let mut request = Vec::new();
            let mut buffer = [0u8; 1024];
            while !request.windows(4).any(|w| w == b"\r\n\r\n") {
                match stream.read(&mut buffer) {
                    Ok(0) | Err(_) => break,
                    Ok(n) => request.extend_from_slice(&buffer[..n]),
                }
            }
            let answer = format!(
                "HTTP/1.1 200 OK\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{name}",
                name.len()
            );
            let _ = stream.write_all(answer.as_bytes());
        }
    });
    port
}

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// A HAProxy process in the foreground, killed on drop.
struct Haproxy {
    child: Child,
    frontend: u16,
    socket: PathBuf,
    _dir: tempfile::TempDir,
}

impl Drop for Haproxy {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Haproxy {
    /// Backend `web` with `web1` and `web2` at weight 100, so a percentage of the initial
    /// weight is not rounded down to nothing.
    fn start() -> Self {
        assert!(
            Path::new(HAPROXY).exists(),
            "{HAPROXY} is missing: run .ci/setup to install haproxy"
        );
        let dir = tempfile::tempdir().unwrap();
        let socket = dir.path().join("admin.sock");
        let frontend = free_port();
        let (web1, web2) = (name_server("web1"), name_server("web2"));
        let config = format!(
            "global
    stats socket {socket} mode 600 level admin
defaults
    mode http
    timeout connect 2s
    timeout client 5s
    timeout server 5s
frontend fe
    bind 127.0.0.1:{frontend}
    default_backend web
backend web
    balance roundrobin
    server web1 127.0.0.1:{web1} weight 100
    server web2 127.0.0.1:{web2} weight 100
",
            socket = socket.display()
        );
        let config_path = dir.path().join("haproxy.cfg");
        std::fs::write(&config_path, config).unwrap();
        let log = std::fs::File::create(dir.path().join("haproxy.log")).unwrap();
        let child = Command::new(HAPROXY)
            .arg("-f")
            .arg(&config_path)
            .arg("-db")
            .stdin(Stdio::null())
            .stdout(log.try_clone().unwrap())
            .stderr(log)
            .spawn()
            .unwrap();
        let mut haproxy = Self {
            child,
            frontend,
            socket,
            _dir: dir,
        };
        haproxy.wait_ready();
        haproxy
    }

    fn wait_ready(&mut self) {
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            if let Some(status) = self.child.try_wait().unwrap() {
                let log = std::fs::read_to_string(self._dir.path().join("haproxy.log"));
                panic!("haproxy exited with {status} before listening: {log:?}");
            }
            if std::os::unix::net::UnixStream::connect(&self.socket).is_ok()
                && TcpStream::connect(("127.0.0.1", self.frontend)).is_ok()
            {
                return;
            }
            assert!(
                Instant::now() < deadline,
                "haproxy did not open its sockets in 10 s"
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    fn runtime(&self) -> HaproxyRuntime {
        let address: RuntimeAddress = format!("unix:{}", self.socket.display()).parse().unwrap();
        HaproxyRuntime::new(address, Duration::from_secs(5))
    }

    /// The body of one `GET /` through the frontend: the name of the server that answered.
    fn get(&self) -> String {
        let mut stream = TcpStream::connect(("127.0.0.1", self.frontend)).unwrap();
        stream
            .set_read_timeout(Some(Duration::from_secs(5)))
            .unwrap();
        stream
            .write_all(b"GET / HTTP/1.0\r\nHost: canary.test\r\n\r\n")
            .unwrap();
        let mut answer = String::new();
        stream.read_to_string(&mut answer).unwrap();
        assert!(answer.starts_with("HTTP/1.1 200"), "answer {answer:?}");
        let (_, body) = answer.split_once("\r\n\r\n").unwrap();
        body.to_owned()
    }

    /// How many of `n` requests each server answered: (web1, web2).
    fn spread(&self, n: usize) -> (usize, usize) {
        let (mut web1, mut web2) = (0, 0);
        for _ in 0..n {
            match self.get().as_str() {
                "web1" => web1 += 1,
                "web2" => web2 += 1,
                other => panic!("unexpected answer body {other:?}"),
            }
        }
        (web1, web2)
    }
}

fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap()
}

#[test]
fn canary_weight_shifts_traffic_and_back() {
    let haproxy = Haproxy::start();
    let api = haproxy.runtime();
    let rt = runtime();
    let full = Weights {
        current: 100,
        initial: 100,
    };
    for server in ["web1", "web2"] {
        assert_eq!(rt.block_on(api.weight("web", server)).unwrap(), full);
    }

    rt.block_on(api.set_weight("web", "web2", 10)).unwrap();
    assert_eq!(
        rt.block_on(api.weight("web", "web2")).unwrap(),
        Weights {
            current: 10,
            initial: 100
        }
    );
    assert_eq!(rt.block_on(api.weight("web", "web1")).unwrap(), full);
    let (web1, web2) = haproxy.spread(220);
    assert_eq!(web1 + web2, 220);
    // Weights 100:10 give web2 1/11 of the requests, about 20.
    assert!(
        (7..=44).contains(&web2),
        "at 10% the canary should get 3% to 20% of 220 requests, got web1 {web1}, web2 {web2}"
    );

    rt.block_on(api.set_weight("web", "web2", 100)).unwrap();
    assert_eq!(rt.block_on(api.weight("web", "web2")).unwrap(), full);
    let (web1, web2) = haproxy.spread(200);
    assert!(
        (70..=130).contains(&web1) && (70..=130).contains(&web2),
        "restored to 100% both should get about half, got web1 {web1}, web2 {web2}"
    );
}

#[test]
fn drain_and_maintenance_stop_new_traffic_until_ready() {
    let haproxy = Haproxy::start();
    let api = haproxy.runtime();
    let rt = runtime();
    for state in [ServerState::Drain, ServerState::Maint] {
        rt.block_on(api.set_state("web", "web2", state)).unwrap();
        assert_eq!(
            haproxy.spread(40),
            (40, 0),
            "{state:?}: web2 gets no new traffic"
        );
        rt.block_on(api.set_state("web", "web2", ServerState::Ready))
            .unwrap();
        let (web1, web2) = haproxy.spread(40);
        assert!(
            web1 > 10 && web2 > 10,
            "ready again after {state:?}: web1 {web1}, web2 {web2}"
        );
    }
}

#[test]
fn refusals_carry_haproxys_own_text() {
    let haproxy = Haproxy::start();
    let api = haproxy.runtime();
    let rt = runtime();

    let refused = |result: Result<_, HaproxyError>| match result {
        Err(HaproxyError::Refused { command, answer }) => (command, answer),
        other => panic!("expected a refusal, got {other:?}"),
    };
    let (command, answer) = refused(rt.block_on(api.set_weight("nope", "web2", 10)).map(|_| ()));
    assert_eq!(command, "set weight nope/web2 10%");
    assert_eq!(answer, "No such backend.");
    let (_, answer) = refused(rt.block_on(api.set_weight("web", "web9", 10)).map(|_| ()));
    assert_eq!(answer, "No such server.");
    let (_, answer) = refused(
        rt.block_on(api.set_state("web", "web9", ServerState::Drain))
            .map(|_| ()),
    );
    assert_eq!(answer, "No such server.");
    let e = rt.block_on(api.weight("nope", "web1")).unwrap_err();
    assert_eq!(
        e.to_string(),
        r#"HAProxy refused "get weight nope/web1": No such backend."#
    );

    // Refused before anything is sent: web1 keeps its weight.
    let e = rt
        .block_on(api.set_weight("web", "web2\nset weight web/web1 0%", 10))
        .unwrap_err();
    assert!(
        matches!(e, HaproxyError::Name { what: "server", .. }),
        "{e}"
    );
    assert_eq!(rt.block_on(api.weight("web", "web1")).unwrap().current, 100);

    let gone = HaproxyRuntime::new(
        RuntimeAddress::Unix(haproxy.socket.with_file_name("missing.sock")),
        Duration::from_secs(2),
    );
    let e = rt.block_on(gone.set_weight("web", "web2", 10)).unwrap_err();
    assert!(matches!(e, HaproxyError::Connect { .. }), "{e}");
    assert!(
        e.to_string().contains("missing.sock: cannot connect"),
        "{e}"
    );
}
