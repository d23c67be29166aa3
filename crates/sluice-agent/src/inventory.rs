//! Collecting the host's inventory: os-release, kernel, architecture, installed packages with
//! their sources (dpkg, or rpm where rpm is the package manager), a pending reboot, and the
//! hashes of watched files. Paths are read inside the package root.
//!
//! Parsing is `sluice_core::inventory`'s; a status database that does not parse is an error,
//! never a shorter list (a half-read host looks cleaner than it is).

use std::fs;
use std::path::{Path, PathBuf};
use std::time::Duration;

use jiff::Timestamp;
use sluice_core::inventory::host::{HostInventory, PackageManager, WatchedFile};
use sluice_core::inventory::{OsRelease, dpkg as dpkg_status, rpm};

use crate::AgentError;
use crate::dpkg;
use crate::preflight::sha256_file;
use crate::root::PackageRoot;

/// Collects the inventory of `root`, hashing `watched` (absolute paths inside the root).
///
/// The kernel and host name are the running machine's (`uname`), also for a private root,
/// which has no kernel of its own.
pub fn collect(root: &PackageRoot, watched: &[PathBuf]) -> Result<HostInventory, AgentError> {
    let taken_at = Timestamp::now();
    let os_release = read_os_release(root)?;
    let uname = rustix::system::uname();
    let kernel = uname.release().to_string_lossy().into_owned();
    let hostname = Some(uname.nodename().to_string_lossy().into_owned());
    // The family is the os-release's (as for jobs); a root whose os-release names neither
    // is read by the database it has.
    let status_path = root.path("/var/lib/dpkg/status");
    let family = os_release
        .package_manager()
        .unwrap_or(if status_path.exists() {
            PackageManager::Dpkg
        } else {
            PackageManager::Rpm
        });
    let (package_manager, packages, arch) = match family {
        PackageManager::Dpkg => {
            let text = fs::read_to_string(&status_path)
                .map_err(|e| AgentError::io("reading", &status_path, e))?;
            let packages = dpkg_status::parse_status(&status_path.display().to_string(), &text)
                .map_err(|e| AgentError::Parse {
                    what: status_path.display().to_string(),
                    reason: e.to_string(),
                })?;
            (PackageManager::Dpkg, packages, dpkg::architecture(root)?)
        }
        PackageManager::Rpm => {
            let packages = rpm_packages(root)?;
            let arch = uname.machine().to_string_lossy().into_owned();
            (PackageManager::Rpm, packages, arch)
        }
    };
    let reboot_file = root.path("/var/run/reboot-required");
    let reboot_required = reboot_file.exists() || root.path("/run/reboot-required").exists();
    let reboot_required_packages = ["/var/run/reboot-required.pkgs", "/run/reboot-required.pkgs"]
        .iter()
        .find_map(|p| fs::read_to_string(root.path(p)).ok())
        .map(|text| {
            text.lines()
                .map(str::trim)
                .filter(|l| !l.is_empty())
                .map(str::to_owned)
                .collect()
        })
        .unwrap_or_default();
    Ok(HostInventory {
        taken_at,
        hostname,
        os_release,
        kernel,
        arch,
        package_manager,
        packages,
        reboot_required,
        reboot_required_packages,
        watched_files: hash_watched(root, watched),
    })
}

fn read_os_release(root: &PackageRoot) -> Result<OsRelease, AgentError> {
    let candidates = [
        root.path("/etc/os-release"),
        root.path("/usr/lib/os-release"),
    ];
    let Some((path, text)) = candidates
        .iter()
        .find_map(|p| fs::read_to_string(p).ok().map(|t| (p, t)))
    else {
        return Err(AgentError::Root {
            root: root.dir().to_path_buf(),
            reason: "neither /etc/os-release nor /usr/lib/os-release is readable".to_owned(),
        });
    };
    OsRelease::parse(&path.display().to_string(), &text).map_err(|e| AgentError::Parse {
        what: path.display().to_string(),
        reason: e.to_string(),
    })
}

/// `rpm -qa` in the root (its own database: `--root` and `--dbpath`, see
/// [`PackageRoot::rpm`]), parsed by `sluice_core::inventory::rpm`.
fn rpm_packages(
    root: &PackageRoot,
) -> Result<Vec<sluice_core::inventory::InstalledPackage>, AgentError> {
    let command = root.rpm().args([
        "-qa",
        "--queryformat",
        "%{NAME} %{EPOCHNUM}:%{VERSION}-%{RELEASE} %{ARCH}\\n",
    ]);
    let done = root.run(&command, Duration::from_secs(300))?;
    if !done.success() {
        return Err(AgentError::Command {
            command: done.command.clone(),
            message: done.describe(),
        });
    }
    rpm::parse_qa("rpm -qa", &done.stdout).map_err(|e| AgentError::Parse {
        what: "rpm -qa".to_owned(),
        reason: e.to_string(),
    })
}

fn hash_watched(root: &PackageRoot, watched: &[PathBuf]) -> Vec<WatchedFile> {
    watched
        .iter()
        .map(|path| {
            let shown = path.display().to_string();
            match sha256_file(&root.path(path)) {
                Ok(hash) => WatchedFile {
                    path: shown,
                    sha256: Some(hash),
                    error: None,
                },
                Err(e) => WatchedFile {
                    path: shown,
                    sha256: None,
                    error: Some(e.to_string()),
                },
            }
        })
        .collect()
}

/// The SHA-256 of one file inside the root, for a job's `watched_files` baseline.
pub fn baseline(root: &PackageRoot, path: &Path) -> Result<String, AgentError> {
    let inside = root.path(path);
    sha256_file(&inside).map_err(|e| AgentError::io("reading", inside, e))
}
