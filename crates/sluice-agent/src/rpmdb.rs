//! rpm's view of the root: installed versions (`rpm -qa`), configuration files (`rpm -qc`),
//! file verification (`rpm -V`), and the duplicates an interrupted transaction leaves.
//!
//! rpm has no half-configured state like dpkg's: a transaction cut short leaves two versions of
//! one package in the database, both "installed". Such a package is reported unsettled
//! (`duplicated`) and has no installed version, except for the install-only packages (the
//! kernel), whose versions live side by side on purpose. Never changes anything.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::time::Duration;

use sluice_core::version::{self, Scheme};

use crate::AgentError;
use crate::dpkg::PackageState;
use crate::root::PackageRoot;

/// rpm answers in well under a second; this only bounds a wedged process.
const QUERY_TIMEOUT: Duration = Duration::from_secs(120);

/// The query format [`states`] asks for: name, `EPOCH:VERSION-RELEASE` (as the inventory
/// reports versions), architecture.
pub const QUERY_FORMAT: &str = "%{NAME}\\t%{EPOCHNUM}:%{VERSION}-%{RELEASE}\\t%{ARCH}\\n";

/// Every package in the root's rpm database, by name, in the shape dpkg's states have:
/// `want` is always `install`, `status` is `installed` or `duplicated`.
pub fn states(root: &PackageRoot) -> Result<BTreeMap<String, PackageState>, AgentError> {
    let command = root.rpm().args(["-qa", "--queryformat", QUERY_FORMAT]);
    let done = root.run(&command, QUERY_TIMEOUT)?;
    if !done.success() {
        return Err(AgentError::Command {
            command: done.command.clone(),
            message: done.describe(),
        });
    }
    parse_states(&done.stdout)
}

/// dnf's default `installonlypkgs`: packages of which several versions are installed on purpose.
fn is_install_only(name: &str) -> bool {
    name == "kernel"
        || name.starts_with("kernel-")
        || name == "installonlypkg"
        || name == "vm-linux"
}

/// Parses `rpm -qa` output in [`QUERY_FORMAT`].
pub fn parse_states(text: &str) -> Result<BTreeMap<String, PackageState>, AgentError> {
    let mut versions: BTreeMap<String, Vec<String>> = BTreeMap::new();
    for (index, line) in text.lines().enumerate() {
        if line.is_empty() {
            continue;
        }
        let fields: Vec<&str> = line.split('\t').collect();
        let [name, evr, _arch] = fields[..] else {
            return Err(AgentError::Parse {
                what: format!("rpm -qa output line {}", index + 1),
                reason: format!("expected 3 tab-separated fields, got {line:?}"),
            });
        };
        if name == "gpg-pubkey" {
            // Imported signing keys, not packages.
            continue;
        }
        let list = versions.entry(name.to_owned()).or_default();
        if !list.iter().any(|v| v == evr) {
            list.push(evr.to_owned());
        }
    }
    let mut states = BTreeMap::new();
    for (name, mut list) in versions {
        list.sort_by(|a, b| version::compare(Scheme::Rpm, a, b).unwrap_or(a.cmp(b)));
        let newest = list.last().cloned().unwrap_or_default();
        let state = if list.len() == 1 || is_install_only(&name) {
            PackageState {
                version: newest,
                want: "install".to_owned(),
                status: "installed".to_owned(),
            }
        } else {
            PackageState {
                version: list.join(" and "),
                want: "install".to_owned(),
                status: "duplicated".to_owned(),
            }
        };
        states.insert(name, state);
    }
    Ok(states)
}

/// The configuration files (`%config`) of `package`, as paths inside the root.
pub fn config_files(root: &PackageRoot, package: &str) -> Result<Vec<PathBuf>, AgentError> {
    let done = root.run(&root.rpm().args(["-q", "-c", "--", package]), QUERY_TIMEOUT)?;
    if !done.success() {
        // Not installed: no configuration files.
        return Ok(Vec::new());
    }
    Ok(done
        .stdout
        .lines()
        .filter(|l| l.starts_with('/'))
        .map(PathBuf::from)
        .collect())
}

/// What rpm says is unfinished: packages listed twice. Empty when all is well.
pub fn audit(root: &PackageRoot) -> Result<String, AgentError> {
    let states = states(root)?;
    Ok(states
        .iter()
        .filter(|(_, s)| s.is_unsettled())
        .map(|(name, s)| format!("{name} is installed twice ({})", s.version))
        .collect::<Vec<_>>()
        .join("; "))
}

/// One file that does not match what its package installed.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct FileProblem {
    /// The file, inside the root.
    pub path: String,
    /// The verify flags (`S.5....T.`), or `missing`.
    pub flags: String,
    /// A configuration file: a local edit is expected there and not a failure.
    pub config: bool,
}

impl FileProblem {
    /// Whether the difference means the package's files are not what was installed: size,
    /// digest, mode, link target, device, owner, group or capabilities differ, or the file is
    /// missing. A modification time alone is not, nor is a test rpm could not run (`?`);
    /// configuration and ghost files are never.
    pub fn is_damage(&self) -> bool {
        !self.config
            && (self.flags == "missing" || self.flags.chars().any(|c| "S5MLDUGP".contains(c)))
    }
}

/// `rpm -V --nodeps --noscripts PACKAGE…`: the files of `packages` that differ from the
/// database. Also the format of `dpkg --verify`.
pub fn verify(root: &PackageRoot, packages: &[String]) -> Result<Vec<FileProblem>, AgentError> {
    if packages.is_empty() {
        return Ok(Vec::new());
    }
    let command = root
        .rpm()
        .args(["-V", "--nodeps", "--noscripts", "--"])
        .args(packages.iter().cloned());
    let done = root.run(&command, QUERY_TIMEOUT)?;
    // rpm -V exits 1 when it found differences; a package it does not know is an error.
    if let Some(line) = done
        .stdout
        .lines()
        .chain(done.stderr.lines())
        .find(|l| l.ends_with("is not installed"))
    {
        return Err(AgentError::Command {
            command: done.command.clone(),
            message: line.to_owned(),
        });
    }
    if done.timed_out || done.status.is_none() {
        return Err(AgentError::Command {
            command: done.command.clone(),
            message: done.describe(),
        });
    }
    parse_verify("rpm -V", &done.stdout)
}

/// Parses verify output: `S.5....T.  c /etc/demo.conf`, `missing   /usr/lib/demo/health`.
/// The attribute marker (`c` config, `d` doc, `g` ghost, `l` license, `r` readme, `a`
/// artifact) stands between the flags and the path.
pub fn parse_verify(what: &str, text: &str) -> Result<Vec<FileProblem>, AgentError> {
    let mut problems = Vec::new();
    for (index, line) in text.lines().enumerate() {
        if line.trim().is_empty() {
            continue;
        }
        let bad = || AgentError::Parse {
            what: format!("{what} output line {}", index + 1),
            reason: format!("expected FLAGS [ATTR] PATH, got {line:?}"),
        };
        let (flags, rest) = line.split_once(' ').ok_or_else(bad)?;
        let is_flags = flags == "missing"
            || (flags.len() == 9 && flags.chars().all(|c| "SM5DLUGTP.?".contains(c)));
        if !is_flags {
            return Err(bad());
        }
        let rest = rest.trim_start();
        let (attr, path) = match rest.split_once(' ') {
            Some((attr, path)) if attr.len() == 1 && !attr.starts_with('/') => {
                (Some(attr), path.trim_start())
            }
            _ => (None, rest),
        };
        if !path.starts_with('/') {
            return Err(bad());
        }
        if attr == Some("g") {
            // %ghost: the package owns the name, not the content.
            continue;
        }
        problems.push(FileProblem {
            path: path.to_owned(),
            flags: flags.to_owned(),
            config: attr == Some("c"),
        });
    }
    Ok(problems)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn states_and_duplicates() {
        let text = "sluice-demo\t0:1.1-1\tnoarch\nkernel\t0:5.14.0-362.8.1.el9_3\tx86_64\nkernel\t0:5.14.0-362.24.1.el9_3\tx86_64\nhalf\t0:1.0-1\tnoarch\nhalf\t0:1.1-1\tnoarch\nglibc\t0:2.34-83.el9\tx86_64\nglibc\t0:2.34-83.el9\ti686\ngpg-pubkey\t0:6d745a60-60287f36\t(none)\n";
        let states = parse_states(text).unwrap();
        assert_eq!(states["sluice-demo"].version, "0:1.1-1");
        assert!(states["sluice-demo"].is_installed());
        assert_eq!(states["kernel"].version, "0:5.14.0-362.24.1.el9_3");
        assert!(states["kernel"].is_installed());
        assert!(
            states["glibc"].is_installed(),
            "two architectures, one version"
        );
        assert!(states["half"].is_unsettled());
        assert_eq!(states["half"].version, "0:1.0-1 and 0:1.1-1");
        assert!(!states.contains_key("gpg-pubkey"));
        assert!(parse_states("demo 1.0\n").is_err());
    }

    #[test]
    fn verify_lines() {
        let text = "S.5....T.  c /etc/sluice-demo/demo.conf\n.......T.    /usr/lib/sluice-demo/health\nmissing     /usr/lib/sluice-demo/gone\n..5......  g /var/log/demo.log\nS.5......    /usr/lib/sluice-demo/health2\n";
        let problems = parse_verify("rpm -V", text).unwrap();
        assert_eq!(problems.len(), 4);
        assert!(problems[0].config && !problems[0].is_damage());
        assert!(!problems[1].is_damage(), "a modification time alone");
        assert!(problems[2].is_damage() && problems[2].path == "/usr/lib/sluice-demo/gone");
        assert!(problems[3].is_damage());
        // dpkg --verify speaks the same format.
        let dpkg = parse_verify(
            "dpkg --verify",
            "??5?????? c /etc/x.conf\nmissing     /usr/bin/y\n",
        )
        .unwrap();
        assert!(dpkg[0].config);
        assert!(dpkg[1].is_damage());
        assert!(parse_verify("rpm -V", "package demo is not installed\n").is_err());
    }
}
