//! dpkg's view of the root: installed versions and states, holds, conffiles, `--audit`.
//!
//! Read through `dpkg-query`, which also reads dpkg's pending-updates journal, so the answer is
//! right after an interrupted dpkg run too. Never changes anything.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::time::Duration;

use sluice_core::job::Versions;

use crate::AgentError;
use crate::root::PackageRoot;

/// dpkg-query answers in well under a second; this only bounds a wedged process.
const QUERY_TIMEOUT: Duration = Duration::from_secs(120);

/// One package as dpkg's database records it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PackageState {
    /// Version of the package's files (for a half-installed package: the one being installed).
    pub version: String,
    /// Selection: `install`, `hold`, `deinstall`, `purge`, `unknown`.
    pub want: String,
    /// State: `installed`, `unpacked`, `half-configured`, `config-files`, …
    pub status: String,
}

impl PackageState {
    /// Fully installed (configured).
    pub fn is_installed(&self) -> bool {
        self.status == "installed"
    }

    /// Held (`dpkg --set-selections` hold): apt must not change it.
    pub fn is_held(&self) -> bool {
        self.want == "hold"
    }

    /// Unpacked or configured but not finished: dpkg was interrupted or a script failed.
    pub fn is_unsettled(&self) -> bool {
        !matches!(
            self.status.as_str(),
            "installed" | "not-installed" | "config-files"
        )
    }
}

/// Every package in the root's dpkg database, by name.
pub fn states(root: &PackageRoot) -> Result<BTreeMap<String, PackageState>, AgentError> {
    let command = root.dpkg_query().args([
        "-W",
        "-f=${Package}\\t${Version}\\t${db:Status-Want}\\t${db:Status-Status}\\n",
    ]);
    let done = root.run(&command, QUERY_TIMEOUT)?;
    if !done.success() {
        return Err(AgentError::Command {
            command: done.command.clone(),
            message: done.describe(),
        });
    }
    parse_states(&done.stdout)
}

/// Parses `dpkg-query -W` output in the format [`states`] asks for.
pub fn parse_states(text: &str) -> Result<BTreeMap<String, PackageState>, AgentError> {
    let mut states = BTreeMap::new();
    for (index, line) in text.lines().enumerate() {
        if line.is_empty() {
            continue;
        }
        let fields: Vec<&str> = line.split('\t').collect();
        let [name, version, want, status] = fields[..] else {
            return Err(AgentError::Parse {
                what: format!("dpkg-query output line {}", index + 1),
                reason: format!("expected 4 tab-separated fields, got {line:?}"),
            });
        };
        states.insert(
            name.to_owned(),
            PackageState {
                version: version.to_owned(),
                want: want.to_owned(),
                status: status.to_owned(),
            },
        );
    }
    Ok(states)
}

/// Installed versions of `packages` (fully installed only; others map to `None`).
pub fn versions_of<'a>(
    states: &BTreeMap<String, PackageState>,
    packages: impl IntoIterator<Item = &'a str>,
) -> Versions {
    packages
        .into_iter()
        .map(|name| {
            let version = states
                .get(name)
                .filter(|s| s.is_installed())
                .map(|s| s.version.clone());
            (name.to_owned(), version)
        })
        .collect()
}

/// Package → `"STATUS VERSION"` for those of `packages` dpkg left unfinished.
pub fn unsettled_of<'a>(
    states: &BTreeMap<String, PackageState>,
    packages: impl IntoIterator<Item = &'a str>,
) -> BTreeMap<String, String> {
    packages
        .into_iter()
        .filter_map(|name| {
            let state = states.get(name).filter(|s| s.is_unsettled())?;
            Some((
                name.to_owned(),
                format!("{} {}", state.status, state.version),
            ))
        })
        .collect()
}

/// The conffiles dpkg records for `package`, as paths inside the root (`/etc/…`), obsolete
/// ones left out.
pub fn conffiles(root: &PackageRoot, package: &str) -> Result<Vec<PathBuf>, AgentError> {
    let command = root
        .dpkg_query()
        .args(["-W", "-f=${Conffiles}\\n", package]);
    let done = root.run(&command, QUERY_TIMEOUT)?;
    if !done.success() {
        // Not installed: no conffiles.
        return Ok(Vec::new());
    }
    Ok(parse_conffiles(&done.stdout))
}

/// Parses the `Conffiles` field: ` /etc/x 0123abcd[ obsolete]` lines.
pub fn parse_conffiles(text: &str) -> Vec<PathBuf> {
    text.lines()
        .filter_map(|line| {
            let mut words = line.split_whitespace();
            let path = words.next()?;
            let _hash = words.next()?;
            if words.any(|w| w == "obsolete" || w == "remove-on-upgrade") {
                return None;
            }
            path.starts_with('/').then(|| PathBuf::from(path))
        })
        .collect()
}

/// `dpkg --audit`: what dpkg itself says is unfinished; empty when all is well.
pub fn audit(root: &PackageRoot) -> Result<String, AgentError> {
    let done = root.run(&root.dpkg().arg("--audit"), QUERY_TIMEOUT)?;
    Ok(done.stdout.trim().to_owned())
}

/// `dpkg --verify PACKAGE…`: the files of `packages` whose contents differ from dpkg's
/// records (the same format as `rpm -V`).
pub fn verify(
    root: &PackageRoot,
    packages: &[String],
) -> Result<Vec<crate::rpmdb::FileProblem>, AgentError> {
    if packages.is_empty() {
        return Ok(Vec::new());
    }
    let command = root.dpkg().arg("--verify").args(packages.iter().cloned());
    let done = root.run(&command, QUERY_TIMEOUT)?;
    // dpkg exits 1 when it found differences, and 2 for anything else (a package it does
    // not know): only the latter is an error.
    if done.timed_out || done.status.and_then(|s| s.code()).is_none_or(|c| c > 1) {
        return Err(AgentError::Command {
            command: done.command.clone(),
            message: done.describe(),
        });
    }
    crate::rpmdb::parse_verify("dpkg --verify", &done.stdout)
}

/// The root's native architecture (`dpkg --print-architecture`).
pub fn architecture(root: &PackageRoot) -> Result<String, AgentError> {
    let done = root.run(&root.dpkg().arg("--print-architecture"), QUERY_TIMEOUT)?;
    if !done.success() {
        return Err(AgentError::Command {
            command: done.command.clone(),
            message: done.describe(),
        });
    }
    Ok(done.stdout.trim().to_owned())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn states_and_versions() {
        let text = "demo\t1.1\tinstall\tinstalled\nheld\t2.0\thold\tinstalled\nhalf\t3.0\tinstall\thalf-configured\ngone\t1.0\tdeinstall\tconfig-files\n";
        let states = parse_states(text).unwrap();
        assert!(states["held"].is_held());
        assert!(states["half"].is_unsettled());
        assert!(!states["gone"].is_unsettled());
        let versions = versions_of(&states, ["demo", "half", "gone", "absent"]);
        assert_eq!(versions["demo"].as_deref(), Some("1.1"));
        assert_eq!(versions["half"], None);
        assert_eq!(versions["gone"], None);
        assert_eq!(versions["absent"], None);
        let unsettled = unsettled_of(&states, ["demo", "half"]);
        assert_eq!(unsettled["half"], "half-configured 3.0");
        assert_eq!(unsettled.len(), 1);
        assert!(parse_states("demo\t1.0\n").is_err());
    }

    #[test]
    fn conffiles_skip_obsolete() {
        let text =
            " /etc/demo/demo.conf 5d41402abc4b2a76b9719d911017c592\n /etc/old.conf 00 obsolete\n\n";
        assert_eq!(
            parse_conffiles(text),
            vec![PathBuf::from("/etc/demo/demo.conf")]
        );
    }
}
