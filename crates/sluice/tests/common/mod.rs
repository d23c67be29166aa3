//! Shared by the CLI test binaries: a real `sluice server` process on a free port, and the CLI
//! run with its own config directory.

#![allow(dead_code, clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::io::{BufRead, BufReader, Write};
use std::net::TcpListener;
use std::path::Path;
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

pub const PASSWORD: &str = "a-first-admin-password";

pub fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

pub struct Running {
    pub child: Child,
    pub url: String,
}

impl Running {
    pub fn start(args: &[&str]) -> Self {
        Self::start_with_env(args, &[])
    }

    /// Like [`Running::start`], with environment variables set (`Some`) or removed (`None`).
    pub fn start_with_env(args: &[&str], env: &[(&str, Option<&str>)]) -> Self {
        Self::start_on(free_port(), args, env)
    }

    /// Like [`Running::start_with_env`] on a given port (to start a server again where its
    /// agents expect it).
    pub fn start_on(port: u16, args: &[&str], env: &[(&str, Option<&str>)]) -> Self {
        let listen = format!("127.0.0.1:{port}");
        let mut command = Command::new(env!("CARGO_BIN_EXE_sluice"));
        command
            .arg("server")
            .args(["--listen", &listen])
            .args(args)
            .env("SLUICE_ADMIN_PASSWORD", PASSWORD)
            .stdout(Stdio::null())
            .stderr(Stdio::piped());
        for (key, value) in env {
            match value {
                Some(value) => command.env(key, value),
                None => command.env_remove(key),
            };
        }
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
        Self {
            child,
            url: format!("http://{listen}"),
        }
    }

    /// SIGTERM, then wait: a graceful stop exits 0.
    pub fn stop(mut self) {
        let pid = self.child.id().to_string();
        assert!(
            Command::new("kill")
                .args(["-TERM", &pid])
                .status()
                .unwrap()
                .success()
        );
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            if let Some(status) = self.child.try_wait().unwrap() {
                assert!(status.success(), "graceful shutdown exits 0: {status}");
                return;
            }
            assert!(Instant::now() < deadline, "the server did not stop");
            std::thread::sleep(Duration::from_millis(50));
        }
    }
}

pub fn sluice(config: &Path, args: &[&str], stdin: Option<&str>) -> Output {
    let mut child = Command::new(env!("CARGO_BIN_EXE_sluice"))
        .args(args)
        .env("XDG_CONFIG_HOME", config)
        .env_remove("SLUICE_TOKEN")
        .env_remove("SLUICE_SERVER")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut pipe = child.stdin.take().unwrap();
    if let Some(input) = stdin {
        pipe.write_all(input.as_bytes()).unwrap();
    }
    drop(pipe);
    child.wait_with_output().unwrap()
}

pub fn ok(output: &Output) -> String {
    assert!(
        output.status.success(),
        "exit {:?}\nstdout: {}\nstderr: {}",
        output.status.code(),
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
    String::from_utf8_lossy(&output.stdout).into_owned()
}

/// A plain HTTP/1.1 GET of `path` on the server at `url` (`http://host:port`): status and body.
pub fn http_get(url: &str, path: &str) -> (u16, String) {
    http(url, "GET", path, None, None)
}

/// A plain HTTP/1.1 request with an optional bearer token and JSON body: status and body.
pub fn http(
    url: &str,
    method: &str,
    path: &str,
    token: Option<&str>,
    body: Option<&serde_json::Value>,
) -> (u16, String) {
    use std::io::Read;
    let address = url.trim_start_matches("http://");
    let mut stream = std::net::TcpStream::connect(address).unwrap();
    let body = body.map(|b| b.to_string()).unwrap_or_default();
    let mut request =
        format!("{method} {path} HTTP/1.1\r\nHost: {address}\r\nConnection: close\r\n");
    if let Some(token) = token {
        request.push_str(&format!("Authorization: Bearer {token}\r\n"));
    }
    if !body.is_empty() {
        request.push_str(&format!(
            "Content-Type: application/json\r\nContent-Length: {}\r\n",
            body.len()
        ));
    }
    request.push_str("\r\n");
    request.push_str(&body);
    stream.write_all(request.as_bytes()).unwrap();
    let mut response = String::new();
    stream.read_to_string(&mut response).unwrap();
    let (head, body) = response.split_once("\r\n\r\n").unwrap();
    let status = head.split_whitespace().nth(1).unwrap().parse().unwrap();
    (status, body.to_owned())
}

/// A person at their own terminal: their own credentials directory.
pub struct Person {
    pub config: tempfile::TempDir,
}

impl Person {
    /// Logs in with `sluice login` and keeps the token in this person's directory.
    pub fn login(url: &str, name: &str, password: &str) -> Self {
        let config = tempfile::tempdir().unwrap();
        ok(&sluice(
            config.path(),
            &[
                "login",
                "--server",
                url,
                "--username",
                name,
                "--password-stdin",
            ],
            Some(&format!("{password}\n")),
        ));
        Self { config }
    }

    pub fn run(&self, args: &[&str]) -> Output {
        sluice(self.config.path(), args, None)
    }

    pub fn ok(&self, args: &[&str]) -> String {
        ok(&self.run(args))
    }

    pub fn json(&self, args: &[&str]) -> serde_json::Value {
        let text = self.ok(args);
        serde_json::from_str(&text).unwrap_or_else(|e| panic!("{args:?}: {e}: {text}"))
    }

    /// A refused command: exit 2 and the server's reason on stderr.
    pub fn refused(&self, args: &[&str]) -> String {
        let output = self.run(args);
        assert_eq!(output.status.code(), Some(2), "{args:?} should be refused");
        String::from_utf8_lossy(&output.stderr).into_owned()
    }
}

/// `sluice agent` for `host` on a private root, polling every 2 s, quiet, with no enrollment
/// token or failpoint from the environment: callers add `--enroll-token` or a failpoint.
pub fn agent_command(url: &str, host: &str, state: &Path, root: &Path, labels: &str) -> Command {
    let mut command = Command::new(env!("CARGO_BIN_EXE_sluice"));
    command
        .args(["agent", "--server", url, "--hostname", host])
        .args(["--poll-wait", "2"])
        .args(["--state-dir", state.to_str().unwrap()])
        .args(["--root", root.to_str().unwrap()])
        .args(["--labels", labels])
        .env_remove("SLUICE_AGENT_FAILPOINT")
        .env_remove("SLUICE_ENROLL_TOKEN")
        .stdout(Stdio::null())
        .stderr(Stdio::null());
    command
}
