//! The package family the agent drives: apt with dpkg, or dnf with rpm. Owns the choice (the
//! root's os-release `ID`, then `ID_LIKE`) and the few operations the job runner needs from
//! either, so that every step is the same for both: installed states, refresh, a resolved but
//! unrun transaction, the transaction itself, configuration files, file verification, the
//! database's own health check, and the package manager's locks.
//!
//! The commands are [`crate::apt`], [`crate::dpkg`], [`crate::dnf`] and [`crate::rpmdb`]'s;
//! this module only dispatches and names things for messages.

use std::collections::BTreeMap;
use std::fs;
use std::path::PathBuf;
use std::time::Duration;

use serde::{Deserialize, Serialize};
use sluice_core::inventory::OsRelease;
use sluice_core::inventory::host::PackageManager;
use sluice_core::version::{self, Scheme};

use crate::dpkg::PackageState;
use crate::process::Finished;
use crate::root::PackageRoot;
use crate::rpmdb::FileProblem;
use crate::{AgentError, apt, dnf, dpkg, rpmdb};

/// Whether a transaction may move packages down.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Mode {
    /// Installs and upgrades only (apt refuses a downgrade; the dry run refuses dnf's).
    Update,
    /// Downgrades allowed (apt `--allow-downgrades`; dnf `distro-sync`).
    Rollback,
}

/// One package operation the package manager would perform, from its dry run.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct PlannedAction {
    /// apt: `inst` (unpack), `conf` (configure), `remv` (remove) or `purg` (purge); dnf:
    /// `install`, `upgrade`, `downgrade`, `reinstall`, `remove` or `skip`.
    pub action: String,
    /// Package name (with `:arch` when apt printed one).
    pub package: String,
    /// Version installed now, if any.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub from: Option<String>,
    /// Version it goes to, for installs.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub to: Option<String>,
}

impl PlannedAction {
    /// Puts a package version in place (apt's unpack, any of dnf's installs).
    pub fn installs(&self) -> bool {
        matches!(
            self.action.as_str(),
            "inst" | "install" | "upgrade" | "downgrade" | "reinstall"
        )
    }

    /// Takes a package away.
    pub fn removes(&self) -> bool {
        matches!(self.action.as_str(), "remv" | "purg" | "remove")
    }
}

/// Exact versions to install and packages to remove, in one request.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Request {
    /// Exact versions to install.
    pub install: Vec<(String, String)>,
    /// Packages to remove.
    pub remove: Vec<String>,
}

impl Request {
    /// True when there is nothing to do.
    pub fn is_empty(&self) -> bool {
        self.install.is_empty() && self.remove.is_empty()
    }
}

/// A resolved transaction that was not run.
#[derive(Debug)]
pub struct Simulation {
    /// The (last) command run.
    pub done: Finished,
    /// The package manager resolved the transaction.
    pub resolved: bool,
    /// What it would do.
    pub actions: Vec<PlannedAction>,
}

/// The package manager of a root.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Backend {
    /// apt-get over dpkg.
    Apt,
    /// dnf over rpm.
    Dnf,
}

impl Backend {
    /// The backend for `root`, from its os-release. A root without os-release but with a dpkg
    /// database is taken for apt (roots made before the family mattered); anything else that
    /// names neither family is an error saying what the file says.
    pub fn detect(root: &PackageRoot) -> Result<Backend, AgentError> {
        let found = ["/etc/os-release", "/usr/lib/os-release"]
            .iter()
            .map(|p| root.path(p))
            .find_map(|p| fs::read_to_string(&p).ok().map(|t| (p, t)));
        let Some((path, text)) = found else {
            if root.path("/var/lib/dpkg/status").exists() {
                return Ok(Backend::Apt);
            }
            return Err(AgentError::Root {
                root: root.dir().to_path_buf(),
                reason: "cannot tell apt from dnf: neither /etc/os-release nor /usr/lib/os-release is readable".to_owned(),
            });
        };
        let release = OsRelease::parse(&path.display().to_string(), &text).map_err(|e| {
            AgentError::Parse {
                what: path.display().to_string(),
                reason: e.to_string(),
            }
        })?;
        match release.package_manager() {
            Some(family) => Ok(Backend::of(family)),
            None => Err(AgentError::Root {
                root: root.dir().to_path_buf(),
                reason: format!(
                    "{}: ID={} ID_LIKE={} is neither a dpkg distribution (debian, ubuntu) nor an rpm one (rhel, fedora, centos, almalinux, rocky)",
                    path.display(),
                    release.id,
                    release.id_like.as_deref().unwrap_or("(none)")
                ),
            }),
        }
    }

    /// The backend of a package family.
    pub fn of(family: PackageManager) -> Backend {
        match family {
            PackageManager::Dpkg => Backend::Apt,
            PackageManager::Rpm => Backend::Dnf,
        }
    }

    /// The package family (what a job's `package_manager` names).
    pub fn package_manager(self) -> PackageManager {
        match self {
            Backend::Apt => PackageManager::Dpkg,
            Backend::Dnf => PackageManager::Rpm,
        }
    }

    /// The version order.
    pub fn scheme(self) -> Scheme {
        match self {
            Backend::Apt => Scheme::Deb,
            Backend::Dnf => Scheme::Rpm,
        }
    }

    /// The front end's name in messages: `apt`, `dnf`.
    pub fn tool(self) -> &'static str {
        match self {
            Backend::Apt => "apt",
            Backend::Dnf => "dnf",
        }
    }

    /// The database's name in messages: `dpkg`, `rpm`.
    pub fn database(self) -> &'static str {
        match self {
            Backend::Apt => "dpkg",
            Backend::Dnf => "rpm",
        }
    }

    /// How to repair what [`Backend::states`] reports unsettled.
    pub fn repair_hint(self) -> &'static str {
        match self {
            Backend::Apt => "dpkg --configure -a",
            Backend::Dnf => "dnf remove --duplicates",
        }
    }

    /// The spec that names one version of a package in messages (`demo=1.1`, `demo-1.1-1`).
    pub fn spec(self, package: &str, version: &str) -> String {
        match self {
            Backend::Apt => format!("{package}={version}"),
            Backend::Dnf => dnf::spec(package, version),
        }
    }

    /// Every package in the root's database, by name.
    pub fn states(self, root: &PackageRoot) -> Result<BTreeMap<String, PackageState>, AgentError> {
        match self {
            Backend::Apt => dpkg::states(root),
            Backend::Dnf => rpmdb::states(root),
        }
    }

    /// Refreshes the package lists (`apt-get update`, `dnf makecache --refresh`).
    pub fn refresh(self, root: &PackageRoot, timeout: Duration) -> Result<Finished, AgentError> {
        match self {
            Backend::Apt => apt::update(root, timeout),
            Backend::Dnf => dnf::refresh(root, timeout),
        }
    }

    /// Resolves the transaction without running it.
    pub fn simulate(
        self,
        root: &PackageRoot,
        request: &Request,
        mode: Mode,
        timeout: Duration,
    ) -> Result<Simulation, AgentError> {
        match self {
            Backend::Apt => {
                let (done, actions) = apt::simulate(root, request, mode, timeout)?;
                Ok(Simulation {
                    resolved: done.success(),
                    done,
                    actions,
                })
            }
            Backend::Dnf => dnf::simulate(root, request, mode, timeout),
        }
    }

    /// Runs the transaction.
    pub fn install(
        self,
        root: &PackageRoot,
        request: &Request,
        mode: Mode,
        timeout: Duration,
    ) -> Result<Finished, AgentError> {
        match self {
            Backend::Apt => apt::install(root, request, mode, timeout),
            Backend::Dnf => dnf::install(root, request, mode, timeout),
        }
    }

    /// The configuration files of `package` (dpkg's conffiles, rpm's `%config` files).
    pub fn config_files(
        self,
        root: &PackageRoot,
        package: &str,
    ) -> Result<Vec<PathBuf>, AgentError> {
        match self {
            Backend::Apt => dpkg::conffiles(root, package),
            Backend::Dnf => rpmdb::config_files(root, package),
        }
    }

    /// What the database says is unfinished, for an interrupted job's report; empty when all is
    /// well or when it cannot be read.
    pub fn audit(self, root: &PackageRoot) -> String {
        match self {
            Backend::Apt => dpkg::audit(root).unwrap_or_default(),
            Backend::Dnf => rpmdb::audit(root).unwrap_or_default(),
        }
    }

    /// The files of `packages` that differ from what was installed (`dpkg --verify`,
    /// `rpm -V`).
    pub fn verify_files(
        self,
        root: &PackageRoot,
        packages: &[String],
    ) -> Result<Vec<FileProblem>, AgentError> {
        match self {
            Backend::Apt => dpkg::verify(root, packages),
            Backend::Dnf => rpmdb::verify(root, packages),
        }
    }

    /// The status and the package manager's own words, for a failed command.
    pub fn describe(self, done: &Finished) -> String {
        match self {
            Backend::Apt => done.describe(),
            Backend::Dnf => dnf::describe(done),
        }
    }

    /// The database's own consistency check before a change: `dpkg --audit` (nothing
    /// unfinished) or `dnf check` (no broken dependency, duplicate or obsoleted package).
    /// Returns the check's name, whether it passed, and what it said.
    pub fn health(self, root: &PackageRoot, timeout: Duration) -> (String, bool, String) {
        match self {
            Backend::Apt => match dpkg::audit(root) {
                Err(e) => ("dpkg --audit".to_owned(), false, e.to_string()),
                Ok(text) if text.is_empty() => (
                    "dpkg --audit".to_owned(),
                    true,
                    "nothing unfinished".to_owned(),
                ),
                Ok(text) => ("dpkg --audit".to_owned(), false, text),
            },
            Backend::Dnf => match dnf::check(root, timeout) {
                Err(e) => ("dnf check".to_owned(), false, e.to_string()),
                Ok(done) if done.success() && done.stdout.trim().is_empty() => {
                    ("dnf check".to_owned(), true, "no problems".to_owned())
                }
                Ok(done) => ("dnf check".to_owned(), false, dnf::describe(&done)),
            },
        }
    }

    /// Lock files the package manager takes with `fcntl` (tested by taking them).
    pub fn lock_files(self, root: &PackageRoot) -> Vec<PathBuf> {
        let paths: &[&str] = match self {
            Backend::Apt => &[
                "/var/lib/dpkg/lock-frontend",
                "/var/lib/dpkg/lock",
                "/var/lib/apt/lists/lock",
                "/var/cache/apt/archives/lock",
            ],
            Backend::Dnf => &["/var/lib/rpm/.rpm.lock"],
        };
        paths.iter().map(|p| root.path(p)).collect()
    }

    /// dnf's process locks: files holding the pid of the dnf that runs (its `flock` is held
    /// only for an instant, so the pid is the lock).
    pub fn pid_locks(self, root: &PackageRoot) -> Vec<PathBuf> {
        match self {
            Backend::Apt => Vec::new(),
            Backend::Dnf => [
                "/var/lib/dnf/rpmdb_lock.pid",
                "/var/cache/dnf/metadata_lock.pid",
                "/var/cache/dnf/download_lock.pid",
            ]
            .iter()
            .map(|p| root.path(p))
            .collect(),
        }
    }

    /// The versions' equality (`1.0` = `0:1.0`); texts that do not parse compare as text.
    pub fn same_version(self, a: &str, b: &str) -> bool {
        match version::compare(self.scheme(), a, b) {
            Ok(order) => order.is_eq(),
            Err(_) => a == b,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn root_with(os_release: Option<&str>, dpkg_status: bool) -> (tempfile::TempDir, PackageRoot) {
        let dir = tempfile::tempdir().unwrap();
        fs::create_dir_all(dir.path().join("etc")).unwrap();
        if let Some(text) = os_release {
            fs::write(dir.path().join("etc/os-release"), text).unwrap();
        }
        if dpkg_status {
            fs::create_dir_all(dir.path().join("var/lib/dpkg")).unwrap();
            fs::write(dir.path().join("var/lib/dpkg/status"), "").unwrap();
        }
        let root = PackageRoot::private(dir.path()).unwrap();
        (dir, root)
    }

    #[test]
    fn the_family_comes_from_os_release() {
        let alma = "ID=\"almalinux\"\nID_LIKE=\"rhel centos fedora\"\nVERSION_ID=\"9.3\"\n";
        assert_eq!(
            Backend::detect(&root_with(Some(alma), true).1).unwrap(),
            Backend::Dnf
        );
        assert_eq!(
            Backend::detect(&root_with(Some("ID=ubuntu\n"), false).1).unwrap(),
            Backend::Apt
        );
        assert_eq!(
            Backend::detect(&root_with(None, true).1).unwrap(),
            Backend::Apt
        );
        let err = Backend::detect(&root_with(None, false).1)
            .unwrap_err()
            .to_string();
        assert!(err.contains("os-release"), "{err}");
        let err = Backend::detect(&root_with(Some("ID=arch\n"), true).1)
            .unwrap_err()
            .to_string();
        assert!(err.contains("ID=arch") && err.contains("neither"), "{err}");
    }

    #[test]
    fn versions_compare_in_the_familys_order() {
        assert!(Backend::Dnf.same_version("0:1.1-1", "1.1-1"));
        assert!(!Backend::Dnf.same_version("1.1-1", "1.1"));
        assert!(Backend::Apt.same_version("0:1.1", "1.1"));
    }
}
