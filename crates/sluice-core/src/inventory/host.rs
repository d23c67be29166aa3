//! A host's full inventory as an agent collects it: the release, the kernel, every installed
//! package with its source, whether a reboot is pending and the hashes of watched files.
//!
//! The shape only; the agent reads the files and runs the package manager.

use jiff::Timestamp;
use serde::{Deserialize, Serialize};

use super::{InstalledPackage, OsRelease};

/// Which package manager owns the host's packages.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum PackageManager {
    /// dpkg (with apt on top): Debian, Ubuntu.
    Dpkg,
    /// rpm (with dnf or yum on top): RHEL, AlmaLinux, Rocky.
    Rpm,
}

/// Everything an agent reports about its host.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct HostInventory {
    /// When it was collected.
    pub taken_at: Timestamp,
    /// The host's name, as the host knows it.
    pub hostname: Option<String>,
    /// `/etc/os-release`.
    pub os_release: OsRelease,
    /// Running kernel release (`uname -r`).
    pub kernel: String,
    /// Native architecture (`dpkg --print-architecture`, `uname -m` for rpm hosts).
    pub arch: String,
    /// The package manager the packages come from.
    pub package_manager: PackageManager,
    /// Installed packages with their source packages.
    pub packages: Vec<InstalledPackage>,
    /// A reboot is pending (Debian's `/var/run/reboot-required` exists).
    pub reboot_required: bool,
    /// Packages that asked for the reboot (`/var/run/reboot-required.pkgs`).
    #[serde(default)]
    pub reboot_required_packages: Vec<String>,
    /// Watched files and their hashes.
    #[serde(default)]
    pub watched_files: Vec<WatchedFile>,
}

/// One watched file: its SHA-256, or why it could not be read.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct WatchedFile {
    /// The path as configured.
    pub path: String,
    /// Lower-case hex SHA-256; none when the file is missing or unreadable.
    pub sha256: Option<String>,
    /// Why there is no hash.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
}
