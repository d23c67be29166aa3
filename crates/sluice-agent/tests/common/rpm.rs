//! Test fixture for rpm hosts: real `.rpm` files built with `rpmbuild` at test time, a local
//! repository (`createrepo_c`), and a private AlmaLinux-like install root fed from it through
//! its own `dnf.conf` and `yum.repos.d`, with `sluice-demo 1.0-1` installed. Every dnf and rpm
//! command goes through the agent's confined command builders, and [`HostRpm`] proves the
//! machine's own rpm database was not touched (with `HostDpkg` for dpkg's).
//!
//! Packages (all `noarch`, no scriptlets, `AutoReqProv: no`: the root has no shell):
//! - `sluice-demo` 1.0-1, 1.1-1 (the fix), 1.2-1 (its health script fails). Each ships
//!   `/usr/lib/sluice-demo/health` and `/etc/sluice-demo/demo.conf` as
//!   `%config(noreplace)`.
//! - `sluice-legacy` 1.0-1, and `sluice-next` 1.0-1, which obsoletes it: installing the latter
//!   removes the former.
//!
//! The packages and the repository are built once per test process and shared (read-only);
//! each test gets its own root.
//!
//! Used through `#[path = "common/rpm.rs"]` next to `mod common;` (also by
//! `crates/sluice/tests/cli_job_dnf.rs`).

#![allow(dead_code, clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::collections::BTreeMap;
use std::fs;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::OnceLock;
use std::time::Duration;

use sluice_agent::PackageRoot;
use sluice_core::inventory::host::PackageManager;
use sluice_core::job::{Job, JobKind, Preflight, RollbackPolicy, Target};

use crate::common::{HostDpkg, run_ok};

/// The machine's own rpm databases (`/var/lib/rpm`, `/usr/lib/sysimage/rpm`, and Debian's
/// default `~/.rpmdb`), fingerprinted file by file before a test and compared after it. A
/// database that does not exist must still not exist.
pub struct HostRpm {
    files: BTreeMap<PathBuf, Option<Vec<u8>>>,
}

impl HostRpm {
    fn places() -> Vec<PathBuf> {
        let mut places = vec![
            PathBuf::from("/var/lib/rpm"),
            PathBuf::from("/usr/lib/sysimage/rpm"),
        ];
        if let Some(home) = std::env::var_os("HOME") {
            places.push(Path::new(&home).join(".rpmdb"));
        }
        places
    }

    fn fingerprint() -> BTreeMap<PathBuf, Option<Vec<u8>>> {
        let mut files = BTreeMap::new();
        for place in Self::places() {
            match fs::read_dir(&place) {
                Err(_) => {
                    files.insert(place, None);
                }
                Ok(entries) => {
                    files.insert(place.clone(), Some(b"directory".to_vec()));
                    for entry in entries {
                        let path = entry.unwrap().path();
                        let bytes = fs::read(&path)
                            .unwrap_or_else(|e| format!("unreadable: {e}").into_bytes());
                        files.insert(path, Some(bytes));
                    }
                }
            }
        }
        files
    }

    pub fn snapshot() -> HostRpm {
        HostRpm {
            files: Self::fingerprint(),
        }
    }

    pub fn assert_untouched(&self) {
        let now = Self::fingerprint();
        assert!(
            now == self.files,
            "the machine's own rpm database changed during the test: before {:?}, after {:?}",
            self.files.keys().collect::<Vec<_>>(),
            now.keys().collect::<Vec<_>>()
        );
    }
}

/// Both package databases of the machine.
pub struct Host {
    pub dpkg: HostDpkg,
    pub rpm: HostRpm,
}

impl Host {
    pub fn snapshot() -> Host {
        Host {
            dpkg: HostDpkg::snapshot(),
            rpm: HostRpm::snapshot(),
        }
    }

    pub fn assert_untouched(&self) {
        self.dpkg.assert_untouched();
        self.rpm.assert_untouched();
    }
}

const SPEC: &str = r#"Name: %{pname}
Version: %{pver}
Release: %{prel}
Summary: Sluice test package
License: MIT
BuildArch: noarch
AutoReqProv: no
%{?obsoletes:Obsoletes: %{obsoletes}}

%description
A package built by Sluice's tests.

%install
mkdir -p %{buildroot}/usr/share/%{pname}
echo '%{pname} %{pver}-%{prel}' > %{buildroot}/usr/share/%{pname}/version
%if "%{pname}" == "sluice-demo"
mkdir -p %{buildroot}/etc/sluice-demo %{buildroot}/usr/lib/sluice-demo
printf '# sluice-demo configuration\nversion=%{pver}\n' > %{buildroot}/etc/sluice-demo/demo.conf
%if "%{pver}" == "1.2"
printf '#!/bin/sh\necho "sluice-demo %{pver}: health check failed" >&2\nexit 1\n' > %{buildroot}/usr/lib/sluice-demo/health
%else
printf '#!/bin/sh\necho "sluice-demo %{pver} healthy"\nexit 0\n' > %{buildroot}/usr/lib/sluice-demo/health
%endif
chmod 755 %{buildroot}/usr/lib/sluice-demo/health
%endif

%files
/usr/share/%{pname}/version
%if "%{pname}" == "sluice-demo"
%config(noreplace) /etc/sluice-demo/demo.conf
/usr/lib/sluice-demo/health
%endif
"#;

/// Builds the packages and the repository once for this test process; returns the repository.
pub fn repository() -> &'static Path {
    static REPO: OnceLock<PathBuf> = OnceLock::new();
    REPO.get_or_init(|| {
        let tmp = Path::new(env!("CARGO_TARGET_TMPDIR"));
        // Repositories of earlier test processes that are gone: nobody uses them any more.
        for entry in fs::read_dir(tmp).into_iter().flatten().flatten() {
            let name = entry.file_name().to_string_lossy().into_owned();
            if let Some(pid) = name.strip_prefix("sluice-rpm-")
                && !Path::new("/proc").join(pid).exists()
            {
                let _ = fs::remove_dir_all(entry.path());
            }
        }
        let base = tmp.join(format!("sluice-rpm-{}", std::process::id()));
        let _ = fs::remove_dir_all(&base);
        let top = base.join("rpmbuild");
        let repo = base.join("repo");
        // rpmbuild opens the rpm database of $HOME; give it one of its own.
        let home = base.join("home");
        for dir in [&top.join("SPECS"), &repo, &home] {
            fs::create_dir_all(dir).unwrap();
        }
        let spec = top.join("SPECS/sluice.spec");
        fs::write(&spec, SPEC).unwrap();
        let packages: &[(&str, &str, Option<&str>)] = &[
            ("sluice-demo", "1.0", None),
            ("sluice-demo", "1.1", None),
            ("sluice-demo", "1.2", None),
            ("sluice-legacy", "1.0", None),
            ("sluice-next", "1.0", Some("sluice-legacy")),
        ];
        for (name, version, obsoletes) in packages {
            let mut command = Command::new("rpmbuild");
            command
                .env("HOME", &home)
                .env("LC_ALL", "C.UTF-8")
                .arg("-bb")
                .args(["--define", &format!("_topdir {}", top.display())])
                .args(["--define", &format!("pname {name}")])
                .args(["--define", &format!("pver {version}")])
                .args(["--define", "prel 1"]);
            if let Some(obsoletes) = obsoletes {
                command.args(["--define", &format!("obsoletes {obsoletes}")]);
            }
            run_ok(command.arg(&spec));
        }
        for entry in fs::read_dir(top.join("RPMS/noarch")).unwrap() {
            let path = entry.unwrap().path();
            fs::copy(&path, repo.join(path.file_name().unwrap())).unwrap();
        }
        run_ok(Command::new("createrepo_c").arg("-q").arg(&repo));
        repo
    })
}

pub struct RpmFixture {
    pub tmp: tempfile::TempDir,
    pub repo: PathBuf,
    pub root_dir: PathBuf,
    pub root: PackageRoot,
    pub state: PathBuf,
    pub host: Host,
}

/// AlmaLinux 9's os-release, as the root's.
pub const ALMA_OS_RELEASE: &str = "NAME=\"AlmaLinux\"\nVERSION=\"9.3 (Shamrock Pampas Cat)\"\nID=\"almalinux\"\nID_LIKE=\"rhel centos fedora\"\nVERSION_ID=\"9.3\"\nPRETTY_NAME=\"AlmaLinux 9.3 (Shamrock Pampas Cat)\"\n";

impl RpmFixture {
    /// A new root with the shared repository as its only one, and `sluice-demo 1.0-1`.
    pub fn new() -> RpmFixture {
        let host = Host::snapshot();
        let repo = repository().to_path_buf();
        let tmp = tempfile::tempdir().unwrap();
        let base = tmp.path().canonicalize().unwrap();
        let root_dir = base.join("root");
        fs::create_dir_all(root_dir.join("etc")).unwrap();
        fs::write(root_dir.join("etc/os-release"), ALMA_OS_RELEASE).unwrap();
        let root = PackageRoot::private(&root_dir).unwrap();
        root.prepare_rpm().unwrap();
        fs::write(
            root_dir.join("etc/yum.repos.d/local.repo"),
            format!(
                "[sluice-local]\nname=Sluice test packages\nbaseurl=file://{}\ngpgcheck=0\nmetadata_expire=0\n",
                repo.display()
            ),
        )
        .unwrap();
        let fixture = RpmFixture {
            state: base.join("state"),
            tmp,
            repo,
            root_dir,
            root,
            host,
        };
        fixture.dnf(&["-y", "install", "sluice-demo-1.0-1"]);
        assert_eq!(fixture.installed("sluice-demo").as_deref(), Some("0:1.0-1"));
        fixture
    }

    /// Runs dnf in the root (through the agent's confined command builder).
    pub fn dnf(&self, args: &[&str]) -> String {
        let command = self.root.dnf().args(args.iter().copied());
        let done = self.root.run(&command, Duration::from_secs(120)).unwrap();
        assert!(done.success(), "dnf {args:?}: {}", done.describe());
        done.stdout
    }

    /// The installed `EPOCH:VERSION-RELEASE` of a package in the root, per rpm.
    pub fn installed(&self, package: &str) -> Option<String> {
        let command = self.root.rpm().args([
            "-q",
            "--queryformat",
            "%{EPOCHNUM}:%{VERSION}-%{RELEASE}\\n",
            package,
        ]);
        let done = self.root.run(&command, Duration::from_secs(60)).unwrap();
        let lines: Vec<&str> = done.stdout.lines().collect();
        match (done.success(), lines.as_slice()) {
            (true, [one]) => Some((*one).to_owned()),
            (true, more) => panic!("{package} is installed more than once: {more:?}"),
            (false, _) => None,
        }
    }

    /// Package operations in the root's rpm log (`Installed:`, `Upgrade:`, `Erase:` …): every
    /// transaction that changed something adds some.
    pub fn rpm_transactions(&self) -> usize {
        self.rpm_log()
            .lines()
            .filter(|l| l.contains(" SUBDEBUG "))
            .count()
    }

    /// dnf runs in the root: each one starts its rpm log with `--- logging initialized ---`.
    pub fn dnf_runs(&self) -> usize {
        self.rpm_log()
            .lines()
            .filter(|l| l.ends_with("--- logging initialized ---"))
            .count()
    }

    fn rpm_log(&self) -> String {
        fs::read_to_string(self.root_dir.join("var/log/dnf.rpm.log")).unwrap_or_default()
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

    pub fn executor(&self) -> sluice_agent::Executor {
        sluice_agent::Executor::new(self.root.clone(), &self.state, Default::default()).unwrap()
    }

    /// A log file the quiesce hooks append to (`stop`, `start`).
    pub fn quiesce_log(&self) -> PathBuf {
        self.tmp.path().join("quiesce.log")
    }

    /// A quiesce hook pair that records its calls in [`RpmFixture::quiesce_log`].
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

/// An update job for rpm hosts, with nothing else set.
pub fn rpm_job(id: &str, targets: &[(&str, &str)]) -> Job {
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
        package_manager: Some(PackageManager::Rpm),
    }
}
