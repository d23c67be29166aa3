//! Pre-flight: what must hold before anything changes (free space, the package manager's locks
//! free, a recent backup, watched files at their baseline), and quiescing services around the
//! change.
//!
//! Pre-flight checks only look; quiesce hooks stop and start what the job lists and nothing
//! else.

use std::fs::{self, OpenOptions};
use std::io::Read;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, SystemTime};

use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use sluice_core::job::{BackupCheck, FileBaseline, FreeSpace, Quiesce};

use crate::backend::Backend;
use crate::checks::{ROOT_ENV, run_command};
use crate::process;
use crate::root::PackageRoot;

/// The outcome of one pre-flight item.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Item {
    /// What was checked.
    pub check: String,
    /// Whether it holds.
    pub passed: bool,
    /// What was seen.
    pub message: String,
}

impl Item {
    fn new(check: impl Into<String>, passed: bool, message: impl Into<String>) -> Self {
        Item {
            check: check.into(),
            passed,
            message: message.into(),
        }
    }
}

/// Free bytes for unprivileged users on the file system holding each path (inside the root).
pub fn free_space(root: &PackageRoot, wanted: &[FreeSpace]) -> Vec<Item> {
    wanted
        .iter()
        .map(|want| {
            let path = root.path(&want.path);
            let name = format!("free space on {}", want.path);
            match rustix::fs::statvfs(&path) {
                Err(e) => Item::new(name, false, format!("statvfs {}: {e}", path.display())),
                Ok(stat) => {
                    let free = stat.f_bavail.saturating_mul(stat.f_frsize);
                    if free >= want.min_bytes {
                        Item::new(name, true, format!("{free} bytes free"))
                    } else {
                        Item::new(
                            name,
                            false,
                            format!(
                                "only {free} bytes free on {}, the job needs {}",
                                path.display(),
                                want.min_bytes
                            ),
                        )
                    }
                }
            }
        })
        .collect()
}

/// dpkg's and apt's lock files in the root; each must not be held by another process.
pub fn lock_files(root: &PackageRoot) -> Vec<PathBuf> {
    Backend::Apt.lock_files(root)
}

/// Tests dpkg's and apt's locks (see [`locks_free_for`]).
pub fn locks_free(root: &PackageRoot) -> Item {
    locks_free_for(root, Backend::Apt)
}

/// Tests each package-manager lock the way it is taken: dpkg's, apt's and rpm's with a
/// non-blocking `fcntl` write lock, released at once; dnf's pid files by whether the process
/// they name is alive (dnf holds their `flock` only while it reads them). A missing lock file
/// is free.
pub fn locks_free_for(root: &PackageRoot, backend: Backend) -> Item {
    let mut held = Vec::new();
    for path in backend.pid_locks(root) {
        let Ok(text) = fs::read_to_string(&path) else {
            continue;
        };
        let Ok(pid) = text.trim().parse::<u32>() else {
            held.push(format!(
                "{} does not hold a process id ({:?})",
                path.display(),
                text.trim()
            ));
            continue;
        };
        if Path::new(&format!("/proc/{pid}")).exists() {
            held.push(format!(
                "{} is held by running process {pid}",
                path.display()
            ));
        }
    }
    for path in backend.lock_files(root) {
        let file = match OpenOptions::new().read(true).write(true).open(&path) {
            Ok(file) => file,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => continue,
            Err(e) => {
                held.push(format!("{}: {e}", path.display()));
                continue;
            }
        };
        if let Err(e) =
            rustix::fs::fcntl_lock(&file, rustix::fs::FlockOperation::NonBlockingLockExclusive)
        {
            held.push(format!(
                "{} is locked by another process ({e})",
                path.display()
            ));
        }
        // Closing the file releases the test lock.
        drop(file);
    }
    if held.is_empty() {
        Item::new("package manager locks", true, "free")
    } else {
        Item::new("package manager locks", false, held.join("; "))
    }
}

/// Runs the backup command, then verifies its artifact exists and is recent enough.
pub fn backup(root: &PackageRoot, check: &BackupCheck, now: SystemTime) -> Item {
    let name = format!("backup ({})", check.command.join(" "));
    let Some((program, args)) = check.command.split_first() else {
        return Item::new(name, false, "empty command");
    };
    let mut command = Command::new(program);
    command.args(args).env(ROOT_ENV, root.dir());
    let timeout = Duration::from_secs(u64::from(check.timeout_secs));
    let done = match process::run(command, timeout) {
        Ok(done) => done,
        Err(e) => return Item::new(name, false, e.to_string()),
    };
    if !done.success() {
        return Item::new(
            name,
            false,
            format!("the command failed: {}", done.describe()),
        );
    }
    let artifact = match &check.path {
        Some(path) => path.clone(),
        None => match done.stdout.lines().rev().find(|l| !l.trim().is_empty()) {
            Some(line) => line.trim().to_owned(),
            None => {
                return Item::new(
                    name,
                    false,
                    "the command printed no artifact path and the job names none",
                );
            }
        },
    };
    let modified = match fs::metadata(&artifact).and_then(|m| m.modified()) {
        Ok(modified) => modified,
        Err(e) => return Item::new(name, false, format!("artifact {artifact}: {e}")),
    };
    let age = now.duration_since(modified).unwrap_or_default();
    let max = Duration::from_secs(u64::from(check.max_age_hours) * 3600);
    if age > max {
        Item::new(
            name,
            false,
            format!(
                "artifact {artifact} is {:.1} hours old, older than {} hours",
                age.as_secs_f64() / 3600.0,
                check.max_age_hours
            ),
        )
    } else {
        Item::new(
            name,
            true,
            format!(
                "artifact {artifact}, {:.1} hours old",
                age.as_secs_f64() / 3600.0
            ),
        )
    }
}

/// SHA-256 of a file, lower-case hex.
pub fn sha256_file(path: &Path) -> std::io::Result<String> {
    let mut file = fs::File::open(path)?;
    let mut hasher = Sha256::new();
    let mut buf = [0u8; 64 * 1024];
    loop {
        let n = file.read(&mut buf)?;
        if n == 0 {
            break;
        }
        hasher.update(&buf[..n]);
    }
    Ok(hasher
        .finalize()
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect())
}

/// Each watched file (inside the root) must hash to its baseline.
pub fn watched_files(root: &PackageRoot, baseline: &[FileBaseline]) -> Vec<Item> {
    baseline
        .iter()
        .map(|file| {
            let name = format!("integrity of {}", file.path);
            match sha256_file(&root.path(&file.path)) {
                Err(e) => Item::new(name, false, format!("{}: {e}", file.path)),
                Ok(hash) if hash == file.sha256 => Item::new(name, true, "matches the baseline"),
                Ok(hash) => Item::new(
                    name,
                    false,
                    format!(
                        "{} changed: sha256 {hash}, baseline {}",
                        file.path, file.sha256
                    ),
                ),
            }
        })
        .collect()
}

/// Whether a hook has something to stop: a unit that is not active is left alone (and not
/// started afterwards); a command hook always runs.
pub fn needs_stop(hook: &Quiesce, systemctl_timeout: Duration) -> bool {
    match hook {
        Quiesce::Unit { unit } => {
            let mut probe = Command::new("systemctl");
            probe.args(["is-active", "--", unit]);
            process::run(probe, systemctl_timeout)
                .map(|d| d.stdout.trim() == "active")
                .unwrap_or(false)
        }
        Quiesce::Command { .. } => true,
    }
}

/// Stops one quiesce hook. Whatever the result, it must be started again afterwards: a failed
/// stop may have half-stopped things.
pub fn stop(root: &PackageRoot, hook: &Quiesce, systemctl_timeout: Duration) -> Item {
    let name = format!("stop {hook}");
    match hook {
        Quiesce::Unit { unit } => {
            let mut command = Command::new("systemctl");
            command.args(["stop", "--", unit]);
            match process::run(command, systemctl_timeout) {
                Err(e) => Item::new(name, false, e.to_string()),
                Ok(done) => Item::new(name, done.success(), done.describe()),
            }
        }
        Quiesce::Command {
            stop, timeout_secs, ..
        } => {
            let (passed, message) =
                run_command(root, stop, Duration::from_secs(u64::from(*timeout_secs)));
            Item::new(name, passed, message)
        }
    }
}

/// Starts one quiesce hook again.
pub fn start(root: &PackageRoot, hook: &Quiesce, systemctl_timeout: Duration) -> Item {
    let name = format!("start {hook}");
    match hook {
        Quiesce::Unit { unit } => {
            let mut command = Command::new("systemctl");
            command.args(["start", "--", unit]);
            match process::run(command, systemctl_timeout) {
                Err(e) => Item::new(name, false, e.to_string()),
                Ok(done) => Item::new(name, done.success(), done.describe()),
            }
        }
        Quiesce::Command {
            start,
            timeout_secs,
            ..
        } => {
            let (passed, message) =
                run_command(root, start, Duration::from_secs(u64::from(*timeout_secs)));
            Item::new(name, passed, message)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn free_space_threshold() {
        let dir = tempfile::tempdir().unwrap();
        let root = PackageRoot::private(dir.path()).unwrap();
        let items = free_space(
            &root,
            &[
                FreeSpace {
                    path: "/".into(),
                    min_bytes: 1,
                },
                FreeSpace {
                    path: "/".into(),
                    min_bytes: u64::MAX,
                },
            ],
        );
        assert!(items[0].passed, "{items:?}");
        assert!(!items[1].passed);
        assert!(items[1].message.contains("only"), "{items:?}");
    }

    #[test]
    fn a_held_lock_is_seen() {
        let dir = tempfile::tempdir().unwrap();
        let root = PackageRoot::private(dir.path()).unwrap();
        root.prepare().unwrap();
        assert!(locks_free(&root).passed);
        let lock = root.path("/var/lib/dpkg/lock-frontend");
        fs::write(&lock, b"").unwrap();
        // fcntl locks are per process: hold it from another one.
        let mut holder = Command::new("python3")
            .args([
                "-c",
                "import fcntl,sys,time; f=open(sys.argv[1],'w'); fcntl.lockf(f, fcntl.LOCK_EX); print('locked', flush=True); time.sleep(30)",
            ])
            .arg(&lock)
            .stdout(std::process::Stdio::piped())
            .spawn()
            .unwrap();
        let mut line = [0u8; 6];
        holder
            .stdout
            .as_mut()
            .unwrap()
            .read_exact(&mut line)
            .unwrap();
        let item = locks_free(&root);
        holder.kill().unwrap();
        holder.wait().unwrap();
        assert!(!item.passed);
        assert!(item.message.contains("lock-frontend"), "{item:?}");
        assert!(locks_free(&root).passed);
    }

    #[test]
    fn a_live_dnf_pid_lock_is_seen_and_a_stale_one_is_not() {
        let dir = tempfile::tempdir().unwrap();
        let root = PackageRoot::private(dir.path()).unwrap();
        root.prepare_rpm().unwrap();
        assert!(locks_free_for(&root, Backend::Dnf).passed);
        let lock = root.path("/var/lib/dnf/rpmdb_lock.pid");
        fs::write(&lock, std::process::id().to_string()).unwrap();
        let item = locks_free_for(&root, Backend::Dnf);
        assert!(!item.passed);
        assert!(item.message.contains("rpmdb_lock.pid"), "{item:?}");
        // A process that has exited holds nothing.
        let mut gone = Command::new("true").spawn().unwrap();
        let pid = gone.id();
        gone.wait().unwrap();
        fs::write(&lock, pid.to_string()).unwrap();
        assert!(locks_free_for(&root, Backend::Dnf).passed);
        // dpkg's locks are not dnf's.
        fs::write(&lock, std::process::id().to_string()).unwrap();
        assert!(locks_free_for(&root, Backend::Apt).passed);
    }

    #[test]
    fn backup_artifact_age() {
        let dir = tempfile::tempdir().unwrap();
        let root = PackageRoot::private(dir.path()).unwrap();
        let artifact = dir.path().join("backup.tar");
        fs::write(&artifact, b"x").unwrap();
        let check = |path: Option<String>, hours: u32| BackupCheck {
            command: vec!["/bin/echo".into(), artifact.display().to_string()],
            path,
            max_age_hours: hours,
            timeout_secs: 5,
        };
        let now = SystemTime::now();
        assert!(backup(&root, &check(None, 1), now).passed);
        let later = now + Duration::from_secs(3 * 3600);
        let old = backup(&root, &check(None, 2), later);
        assert!(!old.passed);
        assert!(old.message.contains("older than 2 hours"), "{old:?}");
        let missing = backup(&root, &check(Some("/nonexistent/backup".into()), 1), now);
        assert!(
            missing.message.contains("/nonexistent/backup"),
            "{missing:?}"
        );
        let failing = BackupCheck {
            command: vec!["/bin/false".into()],
            ..check(None, 1)
        };
        assert!(backup(&root, &failing, now).message.contains("failed"));
    }

    #[test]
    fn watched_file_baseline() {
        let dir = tempfile::tempdir().unwrap();
        let root = PackageRoot::private(dir.path()).unwrap();
        fs::create_dir_all(dir.path().join("etc")).unwrap();
        fs::write(dir.path().join("etc/app.conf"), b"hello").unwrap();
        let good = "2cf24dba5fb0a30e26e83b2ac5b9e29e1b161e5c1fa7425e73043362938b9824";
        let items = watched_files(
            &root,
            &[
                FileBaseline {
                    path: "/etc/app.conf".into(),
                    sha256: good.into(),
                },
                FileBaseline {
                    path: "/etc/app.conf".into(),
                    sha256: "0".repeat(64),
                },
                FileBaseline {
                    path: "/etc/missing".into(),
                    sha256: good.into(),
                },
            ],
        );
        assert!(items[0].passed, "{items:?}");
        assert!(!items[1].passed && items[1].message.contains("changed"));
        assert!(!items[2].passed);
    }
}
