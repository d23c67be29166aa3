//! Test fixture: real `.deb` files built with `dpkg-deb` at test time, a local apt repository
//! (`dpkg-scanpackages --multiversion`), and a private package root fed from it, with
//! `sluice-demo 1.0` installed. Nothing here touches the machine's own packages: every apt and
//! dpkg command goes through the private root, and [`HostDpkg`] proves it.
//!
//! Packages:
//! - `sluice-demo` 1.0, 1.1 (the CVE fix), 1.2 (its health script fails, and its postinst
//!   rewrites the conffile as a "migration"), 1.3 (its postinst fails). Each ships
//!   `/usr/lib/sluice-demo/health` and the conffile `/etc/sluice-demo/demo.conf`.
//! - `sluice-dep` 1.0, which depends on `sluice-demo (>= 1.1)`.
//!
//! Also used by `crates/sluice/tests/cli_job.rs` (through `#[path]`).

#![allow(dead_code, clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::fs;
use std::io::{Read, Write};
use std::net::TcpListener;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use sluice_agent::PackageRoot;
use sluice_core::job::{Job, JobKind, Preflight, RollbackPolicy, Target};

/// The machine's own dpkg database, read before a test and compared after it.
pub struct HostDpkg {
    status: Vec<u8>,
}

/// Where dpkg keeps the machine's own package database.
const HOST_STATUS: &str = "/var/lib/dpkg/status";

impl HostDpkg {
    /// Reads the machine's dpkg status file, failing loudly when there is none to compare: an
    /// absent file would compare equal to itself and prove nothing.
    pub fn read_status() -> Vec<u8> {
        let status = fs::read(HOST_STATUS).unwrap_or_else(|e| {
            panic!("cannot read the machine's {HOST_STATUS} ({e}): nothing to prove untouched")
        });
        let text = String::from_utf8_lossy(&status);
        assert!(
            text.contains("Package: ") && text.contains("Status: "),
            "{HOST_STATUS} ({} bytes) is not a dpkg database: nothing to prove untouched",
            status.len()
        );
        status
    }

    pub fn snapshot() -> HostDpkg {
        HostDpkg {
            status: Self::read_status(),
        }
    }

    pub fn assert_untouched(&self) {
        let now = Self::read_status();
        assert!(
            now == self.status,
            "the machine's own {HOST_STATUS} changed during the test"
        );
    }
}

pub struct Fixture {
    pub tmp: tempfile::TempDir,
    pub repo: PathBuf,
    pub root_dir: PathBuf,
    pub root: PackageRoot,
    pub state: PathBuf,
    pub host: HostDpkg,
}

struct Deb<'a> {
    name: &'a str,
    version: &'a str,
    depends: Option<&'a str>,
    health_ok: bool,
    postinst: Option<&'a str>,
}

fn sluice_demo(version: &str) -> Deb<'_> {
    Deb {
        name: "sluice-demo",
        version,
        depends: None,
        health_ok: version != "1.2",
        postinst: match version {
            // A "configuration migration" that changes the conffile on upgrade. Scripts run
            // chrootless: they must stay under $DPKG_ROOT, and do nothing without it.
            "1.2" => Some(
                "#!/bin/sh\nset -e\n[ -n \"$DPKG_ROOT\" ] || exit 0\necho 'migrated=1.2' >> \"$DPKG_ROOT/etc/sluice-demo/demo.conf\"\n",
            ),
            "1.3" => {
                Some("#!/bin/sh\necho 'sluice-demo 1.3: postinst failed on purpose' >&2\nexit 1\n")
            }
            _ => None,
        },
    }
}

fn build_deb(build: &Path, out: &Path, deb: &Deb<'_>) {
    let dir = build.join(format!("{}_{}", deb.name, deb.version));
    let debian = dir.join("DEBIAN");
    fs::create_dir_all(&debian).unwrap();
    let mut control = format!(
        "Package: {}\nVersion: {}\nArchitecture: all\nMaintainer: Sluice tests <tests@example.invalid>\nSection: misc\nPriority: optional\nDescription: Sluice test package\n",
        deb.name, deb.version
    );
    if let Some(depends) = deb.depends {
        control.push_str(&format!("Depends: {depends}\n"));
    }
    fs::write(debian.join("control"), control).unwrap();
    if deb.name == "sluice-demo" {
        let etc = dir.join("etc/sluice-demo");
        fs::create_dir_all(&etc).unwrap();
        fs::write(
            etc.join("demo.conf"),
            format!("# sluice-demo configuration\nversion={}\n", deb.version),
        )
        .unwrap();
        fs::write(debian.join("conffiles"), "/etc/sluice-demo/demo.conf\n").unwrap();
        let lib = dir.join("usr/lib/sluice-demo");
        fs::create_dir_all(&lib).unwrap();
        let health = if deb.health_ok {
            format!(
                "#!/bin/sh\necho 'sluice-demo {} healthy'\nexit 0\n",
                deb.version
            )
        } else {
            format!(
                "#!/bin/sh\necho 'sluice-demo {}: health check failed' >&2\nexit 1\n",
                deb.version
            )
        };
        write_exec(&lib.join("health"), &health);
    } else {
        let share = dir.join(format!("usr/share/{}", deb.name));
        fs::create_dir_all(&share).unwrap();
        fs::write(share.join("version"), deb.version).unwrap();
    }
    if let Some(script) = deb.postinst {
        write_exec(&debian.join("postinst"), script);
    }
    let file = out.join(format!("{}_{}_all.deb", deb.name, deb.version));
    run_ok(
        Command::new("dpkg-deb")
            .args(["--root-owner-group", "-Zgzip", "--build"])
            .arg(&dir)
            .arg(&file),
    );
}

fn write_exec(path: &Path, text: &str) {
    fs::write(path, text).unwrap();
    fs::set_permissions(path, fs::Permissions::from_mode(0o755)).unwrap();
}

pub fn run_ok(command: &mut Command) -> String {
    let out = command.output().unwrap();
    assert!(
        out.status.success(),
        "{command:?} failed: {}\n{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

impl Fixture {
    /// Builds the packages and repository, prepares the root and installs `sluice-demo 1.0`.
    pub fn new() -> Fixture {
        let host = HostDpkg::snapshot();
        let tmp = tempfile::tempdir().unwrap();
        let base = tmp.path().canonicalize().unwrap();
        let repo = base.join("repo");
        let build = base.join("build");
        fs::create_dir_all(&repo).unwrap();
        for version in ["1.0", "1.1", "1.2", "1.3"] {
            build_deb(&build, &repo, &sluice_demo(version));
        }
        build_deb(
            &build,
            &repo,
            &Deb {
                name: "sluice-dep",
                version: "1.0",
                depends: Some("sluice-demo (>= 1.1)"),
                health_ok: true,
                postinst: None,
            },
        );
        publish(&repo);
        let root_dir = base.join("root");
        fs::create_dir_all(&root_dir).unwrap();
        let root = PackageRoot::private(&root_dir).unwrap();
        root.prepare().unwrap();
        fs::write(
            root_dir.join("etc/apt/sources.list"),
            format!("deb [trusted=yes] file:{} ./\n", repo.display()),
        )
        .unwrap();
        fs::write(
            root_dir.join("etc/os-release"),
            "PRETTY_NAME=\"Debian GNU/Linux 12 (bookworm)\"\nID=debian\nVERSION_ID=\"12\"\nVERSION_CODENAME=bookworm\n",
        )
        .unwrap();
        let fixture = Fixture {
            state: base.join("state"),
            tmp,
            repo,
            root_dir,
            root,
            host,
        };
        fixture.apt(&["update"]);
        fixture.apt(&["install", "-y", "sluice-demo=1.0"]);
        assert_eq!(fixture.installed("sluice-demo").as_deref(), Some("1.0"));
        fixture
    }

    /// Runs apt-get in the root (through the agent's confined command builder).
    pub fn apt(&self, args: &[&str]) -> String {
        let command = self.root.apt_get().args(args.iter().copied());
        let done = self.root.run(&command, Duration::from_secs(120)).unwrap();
        assert!(done.success(), "apt-get {args:?}: {}", done.describe());
        done.stdout
    }

    /// Runs dpkg in the root with the given standard input.
    pub fn dpkg_stdin(&self, args: &[&str], input: &str) {
        let dir = self.root_dir.display().to_string();
        let mut child = Command::new("dpkg")
            .arg(format!("--root={dir}"))
            .arg(format!("--log={dir}/var/log/dpkg.log"))
            .arg("--force-script-chrootless")
            .args(args)
            .stdin(std::process::Stdio::piped())
            .spawn()
            .unwrap();
        child
            .stdin
            .take()
            .unwrap()
            .write_all(input.as_bytes())
            .unwrap();
        assert!(child.wait().unwrap().success());
    }

    /// The installed version of a package in the root, per dpkg-query: `None` when dpkg knows
    /// no such package or it is not installed (removed, purged). Anything else dpkg-query says
    /// (an error, a half-installed package) fails the test.
    pub fn installed(&self, package: &str) -> Option<String> {
        let admindir = self.root_dir.join("var/lib/dpkg");
        // dpkg-query answers "no packages found" for a database that is not there at all.
        assert!(
            admindir.join("status").is_file(),
            "no dpkg database in {}",
            admindir.display()
        );
        let out = Command::new("dpkg-query")
            .arg(format!("--admindir={}", admindir.display()))
            .args(["-W", "-f=${db:Status-Status} ${Version}", package])
            .output()
            .unwrap();
        let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
        let stderr = String::from_utf8_lossy(&out.stderr);
        match out.status.code() {
            // dpkg-query's answer for a package its database does not hold.
            Some(1) if stdout.is_empty() && stderr.contains("no packages found matching") => None,
            Some(0) => match stdout.split_once(' ') {
                Some(("installed", version)) if !version.is_empty() => Some(version.to_owned()),
                Some(("not-installed" | "config-files", _)) => None,
                _ => panic!("dpkg-query: {package} is {stdout:?} in the root"),
            },
            _ => panic!(
                "dpkg-query -W {package} failed ({}): {stdout}{stderr}",
                out.status
            ),
        }
    }

    /// Lines in the root's dpkg log: every dpkg run that changed something adds some. The
    /// setup's install wrote it, so a missing log fails instead of counting as empty.
    pub fn dpkg_log_lines(&self) -> usize {
        self.log_lines("var/log/dpkg.log")
    }

    /// Lines in the root's apt history (one block per apt run that changed something), which
    /// the setup's install started.
    pub fn apt_history_lines(&self) -> usize {
        self.log_lines("var/log/apt/history.log")
    }

    fn log_lines(&self, path: &str) -> usize {
        let path = self.root_dir.join(path);
        let lines = fs::read_to_string(&path)
            .unwrap_or_else(|e| panic!("cannot read {}: {e}", path.display()))
            .lines()
            .count();
        assert!(
            lines > 0,
            "{} is empty after the setup's install",
            path.display()
        );
        lines
    }

    pub fn conffile(&self) -> PathBuf {
        self.root_dir.join("etc/sluice-demo/demo.conf")
    }

    pub fn health(&self) -> String {
        self.root_dir
            .join("usr/lib/sluice-demo/health")
            .display()
            .to_string()
    }

    /// Breaks the repository: the Packages index gets a paragraph apt cannot parse.
    pub fn corrupt_repository(&self) {
        let path = self.repo.join("Packages");
        let mut text = fs::read_to_string(&path).unwrap();
        text.push_str("\nthis is not a control field\n Description: orphan continuation\n");
        fs::write(&path, text).unwrap();
    }

    pub fn executor(&self) -> sluice_agent::Executor {
        sluice_agent::Executor::new(self.root.clone(), &self.state, Default::default()).unwrap()
    }

    /// A log file the quiesce hooks append to (`stop`, `start`).
    pub fn quiesce_log(&self) -> PathBuf {
        self.tmp.path().join("quiesce.log")
    }

    /// A quiesce hook pair that records its calls in [`Fixture::quiesce_log`].
    pub fn quiesce_hook(&self) -> sluice_core::job::Quiesce {
        let log = self.quiesce_log().display().to_string();
        sluice_core::job::Quiesce::Command {
            stop: vec!["/bin/sh".into(), "-c".into(), format!("echo stop >> {log}")],
            start: vec![
                "/bin/sh".into(),
                "-c".into(),
                format!("echo start >> {log}"),
            ],
            timeout_secs: 10,
        }
    }

    pub fn quiesce_calls(&self) -> Vec<String> {
        fs::read_to_string(self.quiesce_log())
            .unwrap_or_default()
            .lines()
            .map(str::to_owned)
            .collect()
    }
}

fn publish(repo: &Path) {
    let packages = run_ok(
        Command::new("dpkg-scanpackages")
            .args(["--multiversion", "."])
            .current_dir(repo)
            .stderr(std::process::Stdio::null()),
    );
    fs::write(repo.join("Packages"), packages).unwrap();
}

/// An update job for `targets`, with nothing else set.
pub fn job(id: &str, targets: &[(&str, &str)]) -> Job {
    Job {
        id: id.into(),
        idempotency_key: format!("key-{id}"),
        kind: JobKind::Update,
        targets: targets
            .iter()
            .map(|(p, v)| Target {
                package: (*p).into(),
                version: (*v).into(),
            })
            .collect(),
        preflight: Preflight::default(),
        checks: Vec::new(),
        rollback: RollbackPolicy::default(),
        package_manager: None,
    }
}

/// A tiny HTTP server answering every request with `status` and `body`; returns its URL.
pub fn http_server(status: u16, body: &'static str) -> String {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let url = format!("http://{}/health", listener.local_addr().unwrap());
    std::thread::spawn(move || {
        for stream in listener.incoming() {
            let Ok(mut stream) = stream else { continue };
            let mut buf = [0u8; 2048];
            let _ = stream.read(&mut buf);
            let answer = format!(
                "HTTP/1.1 {status} X\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
                body.len()
            );
            let _ = stream.write_all(answer.as_bytes());
        }
    });
    url
}
