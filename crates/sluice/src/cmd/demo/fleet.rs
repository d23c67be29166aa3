//! The demo's fleet: host names spread over environments and time zones, a private package root
//! per host (prepared in parallel), and the processes: one `sluice server` and one
//! `sluice agent` per host, each in its own process group with its output in a log file.

use std::fs;
use std::io::{BufRead, BufReader, Write};
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use sluice_agent::PackageRoot;

use super::packages;

/// The environments, in ring order.
pub const ENVIRONMENTS: [&str; 3] = ["dev", "test", "prod"];

/// A site: a short name for host names and its time zone.
#[derive(Debug, Clone, Copy)]
pub struct Site {
    /// Short name (`ams`).
    pub code: &'static str,
    /// IANA zone.
    pub tz: &'static str,
}

/// The three sites, east to west.
pub const SITES: [Site; 3] = [
    Site {
        code: "tyo",
        tz: "Asia/Tokyo",
    },
    Site {
        code: "ams",
        tz: "Europe/Amsterdam",
    },
    Site {
        code: "nyc",
        tz: "America/New_York",
    },
];

/// One demo host.
#[derive(Debug, Clone)]
pub struct Host {
    /// Host name, e.g. `prod-tyo-1`.
    pub name: String,
    /// Environment (its ring).
    pub env: &'static str,
    /// Where it runs.
    pub site: Site,
    /// Its private package root.
    pub root: PathBuf,
    /// The agent's state directory.
    pub state: PathBuf,
}

impl Host {
    /// CMDB criticality: production matters most.
    pub fn criticality(&self) -> u8 {
        match self.env {
            "prod" => 4,
            "test" => 2,
            _ => 1,
        }
    }

    /// CMDB exposure: production faces the internet.
    pub fn exposure(&self) -> &'static str {
        if self.env == "prod" {
            "internet"
        } else {
            "internal"
        }
    }

    /// The installed version of a package in the host's root, read with `dpkg-query`.
    pub fn installed(&self, package: &str) -> Result<Option<String>> {
        installed(&self.root, package)
    }
}

/// `count` hosts, round robin over the environments, each round shifting the sites so that
/// every environment gets every zone: `dev-tyo-1`, `test-ams-1`, `prod-nyc-1`, `dev-ams-1`, …
/// (with one environment, round robin over the sites: `prod-tyo-1`, `prod-ams-1`, …).
pub fn plan(dir: &Path, count: usize, environments: &[&'static str]) -> Vec<Host> {
    let mut numbers = std::collections::BTreeMap::new();
    let envs = environments.len().max(1);
    (0..count)
        .map(|i| {
            let env = environments.get(i % envs).copied().unwrap_or("prod");
            let site = SITES[(i + i / 3) % 3];
            let n = numbers.entry((env, site.code)).or_insert(0);
            *n += 1;
            let name = format!("{env}-{}-{n}", site.code);
            let base = dir.join("agents").join(&name);
            Host {
                root: base.join("root"),
                state: base.join("state"),
                name,
                env,
                site,
            }
        })
        .collect()
}

/// Prepares every host's root in parallel: confined apt configuration, the demo repository as
/// its only source, Debian 12's os-release, `apt-get update`, and `acme-web 1.0` installed.
/// `done` is called after each host.
pub fn prepare_roots(hosts: &[Host], repo: &Path, done: &(dyn Fn(&Host) + Sync)) -> Result<()> {
    let next = AtomicUsize::new(0);
    let workers = hosts.len().clamp(1, 4);
    std::thread::scope(|scope| {
        let handles: Vec<_> = (0..workers)
            .map(|_| {
                scope.spawn(|| -> Result<()> {
                    loop {
                        let i = next.fetch_add(1, Ordering::SeqCst);
                        let Some(host) = hosts.get(i) else {
                            return Ok(());
                        };
                        prepare_root(host, repo)
                            .with_context(|| format!("preparing the root of {}", host.name))?;
                        done(host);
                    }
                })
            })
            .collect();
        for handle in handles {
            match handle.join() {
                Ok(result) => result?,
                Err(_) => bail!("a root preparation thread panicked"),
            }
        }
        Ok(())
    })
}

fn prepare_root(host: &Host, repo: &Path) -> Result<()> {
    fs::create_dir_all(&host.root)?;
    fs::create_dir_all(&host.state)?;
    let root = PackageRoot::private(&host.root)?;
    root.prepare()?;
    fs::write(
        host.root.join("etc/apt/sources.list"),
        format!("deb [trusted=yes] file:{} ./\n", repo.display()),
    )?;
    fs::write(
        host.root.join("etc/os-release"),
        "PRETTY_NAME=\"Debian GNU/Linux 12 (bookworm)\"\nNAME=\"Debian GNU/Linux\"\nID=debian\nVERSION_ID=\"12\"\nVERSION_CODENAME=bookworm\n",
    )?;
    let install = format!("{}={}", packages::PACKAGE, packages::OLD);
    for args in [vec!["update"], vec!["install", "-y", install.as_str()]] {
        let command = root.apt_get().args(args.iter().copied());
        let finished = root.run(&command, Duration::from_secs(120))?;
        if !finished.success() {
            bail!("apt-get {}: {}", args.join(" "), finished.describe());
        }
    }
    match installed(&host.root, packages::PACKAGE)? {
        Some(version) if version == packages::OLD => Ok(()),
        other => bail!(
            "{} {} should be installed, dpkg says {other:?}",
            packages::PACKAGE,
            packages::OLD
        ),
    }
}

/// The installed version of a package in a private root, per `dpkg-query`.
pub fn installed(root: &Path, package: &str) -> Result<Option<String>> {
    let out = Command::new("dpkg-query")
        .arg(format!(
            "--admindir={}",
            root.join("var/lib/dpkg").display()
        ))
        .args(["-W", "-f=${db:Status-Status} ${Version}", package])
        .stdin(Stdio::null())
        .stderr(Stdio::null())
        .output()
        .context("cannot run dpkg-query")?;
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    Ok(text.strip_prefix("installed ").map(str::to_owned))
}

/// A child process of the demo, stopped (SIGTERM, then SIGKILL) when dropped.
pub struct Process {
    name: String,
    child: Option<Child>,
}

impl Process {
    fn new(name: String, child: Child) -> Self {
        Self {
            name,
            child: Some(child),
        }
    }

    /// Its process id, while it has one.
    pub fn id(&self) -> Option<u32> {
        self.child.as_ref().map(Child::id)
    }

    /// Whether it is still running.
    pub fn running(&mut self) -> bool {
        self.child
            .as_mut()
            .is_some_and(|c| matches!(c.try_wait(), Ok(None)))
    }

    /// Asks it to stop (SIGTERM) without waiting.
    pub fn terminate(&mut self) {
        let Some(child) = self.child.as_mut() else {
            return;
        };
        if matches!(child.try_wait(), Ok(Some(_))) {
            return;
        }
        let _ = Command::new("kill")
            .args(["-TERM", &child.id().to_string()])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status();
    }

    /// Stops it: SIGTERM, up to `grace` to exit, then SIGKILL.
    pub fn stop(&mut self, grace: Duration) {
        self.terminate();
        let Some(mut child) = self.child.take() else {
            return;
        };
        let deadline = Instant::now() + grace;
        while Instant::now() < deadline {
            if matches!(child.try_wait(), Ok(Some(_))) {
                return;
            }
            std::thread::sleep(Duration::from_millis(25));
        }
        tracing::debug!("{} did not stop in time: killing it", self.name);
        let _ = child.kill();
        let _ = child.wait();
    }
}

impl Drop for Process {
    fn drop(&mut self) {
        self.stop(Duration::from_secs(5));
    }
}

/// A command for this very binary, with no `SLUICE_*` setting of the caller's inherited (a
/// `SLUICE_DATABASE_URL` would move the demo's server onto someone's real database), in its own
/// process group so that a Ctrl-C reaches the demo alone, which then stops it in order.
fn own_command(args: &[&str]) -> Result<Command> {
    let exe = std::env::current_exe().context("cannot find the sluice binary itself")?;
    let mut command = Command::new(exe);
    command.args(args).stdin(Stdio::null()).process_group(0);
    for (key, _) in std::env::vars_os() {
        if key.to_string_lossy().starts_with("SLUICE_") {
            command.env_remove(key);
        }
    }
    Ok(command)
}

fn log_file(path: &Path) -> Result<fs::File> {
    fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(path)
        .with_context(|| format!("cannot open {}", path.display()))
}

/// The demo's server.
pub struct Server {
    /// Its process.
    pub process: Process,
    /// `http://127.0.0.1:PORT`.
    pub url: String,
    /// Its data directory (SQLite).
    pub data_dir: PathBuf,
    /// Its log.
    pub log: PathBuf,
}

impl Server {
    /// Starts `sluice server` on a free port with SQLite in `data_dir`, local feeds read from
    /// `feed_dir`, the first admin's password given, and waits until it listens.
    pub fn start(
        data_dir: &Path,
        feed_dir: &Path,
        log: &Path,
        admin_password: &str,
    ) -> Result<Server> {
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .and_then(|l| l.local_addr())
            .context("no free port on 127.0.0.1")?
            .port();
        let listen = format!("127.0.0.1:{port}");
        fs::create_dir_all(data_dir)?;
        let data = data_dir.display().to_string();
        let feeds = feed_dir.display().to_string();
        let mut command = own_command(&[
            "server",
            "--listen",
            &listen,
            "--data-dir",
            &data,
            "--feed-dir",
            &feeds,
        ])?;
        command
            .env("SLUICE_ADMIN_PASSWORD", admin_password)
            .stdout(log_file(log)?)
            .stderr(Stdio::piped());
        let mut child = command.spawn().context("cannot start sluice server")?;
        let stderr = child
            .stderr
            .take()
            .context("the server's standard error is not piped")?;
        let (tx, rx) = std::sync::mpsc::channel();
        let mut file = log_file(log)?;
        std::thread::spawn(move || {
            for line in BufReader::new(stderr).lines().map_while(Result::ok) {
                let _ = writeln!(file, "{line}");
                if line.contains("listening") {
                    let _ = tx.send(());
                }
            }
        });
        let mut process = Process::new("sluice server".to_owned(), child);
        let deadline = Instant::now() + Duration::from_secs(60);
        loop {
            if rx.recv_timeout(Duration::from_millis(100)).is_ok() {
                break;
            }
            if !process.running() {
                bail!("the server exited at start; see {}", log.display());
            }
            if Instant::now() > deadline {
                bail!(
                    "the server did not listen within a minute; see {}",
                    log.display()
                );
            }
        }
        Ok(Server {
            process,
            url: format!("http://{listen}"),
            data_dir: data_dir.to_owned(),
            log: log.to_owned(),
        })
    }
}

/// Starts the agent of `host` with a one-time enrollment token; its output goes to `log`.
/// Without `refresh` it runs no `apt-get update` before a job's dry run.
pub fn start_agent(
    url: &str,
    host: &Host,
    token: &str,
    refresh: bool,
    log: &Path,
) -> Result<Process> {
    let state = host.state.display().to_string();
    let root = host.root.display().to_string();
    let labels = format!("env={},tz={}", host.env, host.site.tz);
    let mut command = own_command(&[
        "agent",
        "--server",
        url,
        "--hostname",
        &host.name,
        "--state-dir",
        &state,
        "--root",
        &root,
        "--labels",
        &labels,
        "--poll-wait",
        "5",
    ])?;
    if !refresh {
        command.arg("--no-refresh");
    }
    command
        .env("SLUICE_ENROLL_TOKEN", token)
        .stdout(log_file(log)?)
        .stderr(log_file(log)?);
    let child = command
        .spawn()
        .with_context(|| format!("cannot start the agent of {}", host.name))?;
    Ok(Process::new(format!("agent {}", host.name), child))
}
