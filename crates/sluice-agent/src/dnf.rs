//! dnf in the package root: refresh the metadata, resolve a transaction without running it
//! (`--assumeno`) and parse what it would do, install exact versions, check the database.
//!
//! Exact versions are `NAME-EVR` specs. An update is `dnf install`; a rollback is
//! `dnf distro-sync` (which moves each named package to exactly that build, down or up) when
//! every package is installed, else `dnf install` (which in dnf 4 also downgrades), with
//! removals first (`dnf remove`), so that nothing still requires what is being downgraded.
//! dnf is never told `--allowerasing`: a transaction that needs removals fails instead.
//! Configuration files changed locally are kept the way rpm keeps them: a `%config(noreplace)`
//! file stays and the package's version lands beside it as `.rpmnew`; a plain `%config` file is
//! replaced and the local one saved as `.rpmsave`. rpm says which in its warnings, which
//! [`config_notes`] reads.

use std::collections::BTreeMap;
use std::time::Duration;

use serde::{Deserialize, Serialize};

use crate::AgentError;
use crate::backend::{Mode, PlannedAction, Request, Simulation};
use crate::dpkg::PackageState;
use crate::process::Finished;
use crate::root::{PackageCommand, PackageRoot};
use crate::rpmdb;

/// `dnf makecache --refresh`: fetch every repository's metadata now. A repository that cannot
/// be read fails it (the root's `dnf.conf` has `skip_if_unavailable=False`).
pub fn refresh(root: &PackageRoot, timeout: Duration) -> Result<Finished, AgentError> {
    root.run(&root.dnf().args(["-q", "makecache", "--refresh"]), timeout)
}

/// `dnf check`: dependency problems, duplicates and obsoleted packages in the database.
pub fn check(root: &PackageRoot, timeout: Duration) -> Result<Finished, AgentError> {
    root.run(&root.dnf().arg("check"), timeout)
}

/// `dnf --assumeno install|distro-sync …` (and `remove`): what dnf would do, without doing it.
/// dnf answers "no" to its own question and exits 1 with "Operation aborted." when it resolved
/// the transaction; exit 0 with "Nothing to do." when there is nothing; anything else failed.
pub fn simulate(
    root: &PackageRoot,
    request: &Request,
    mode: Mode,
    timeout: Duration,
) -> Result<Simulation, AgentError> {
    let states = rpmdb::states(root)?;
    let mut actions = Vec::new();
    let mut last = None;
    for command in commands(root, request, mode, &states, true) {
        let done = root.run(&command, timeout)?;
        let aborted = done
            .stdout
            .lines()
            .chain(done.stderr.lines())
            .any(|l| l.trim() == "Operation aborted.");
        let resolved = done.success() || (aborted && !done.timed_out);
        if !resolved {
            return Ok(Simulation {
                done,
                resolved: false,
                actions,
            });
        }
        actions.extend(parse_transaction(&done.stdout, &states)?);
        last = Some(done);
    }
    match last {
        Some(done) => Ok(Simulation {
            done,
            resolved: true,
            actions,
        }),
        None => Err(AgentError::Command {
            command: "dnf".to_owned(),
            message: "nothing to simulate: the request is empty".to_owned(),
        }),
    }
}

/// Runs the transaction: removals first, then the installs. Returns the last command's result
/// (the first failing one), its output preceded by the earlier ones'.
pub fn install(
    root: &PackageRoot,
    request: &Request,
    mode: Mode,
    timeout: Duration,
) -> Result<Finished, AgentError> {
    let states = rpmdb::states(root)?;
    let mut earlier: Option<Finished> = None;
    for command in commands(root, request, mode, &states, false) {
        let mut done = root.run(&command, timeout)?;
        if let Some(before) = earlier.take() {
            done.command = format!("{}; {}", before.command, done.command);
            done.stdout = format!("{}{}", before.stdout, done.stdout);
            done.stderr = format!("{}{}", before.stderr, done.stderr);
        }
        if !done.success() {
            return Ok(done);
        }
        earlier = Some(done);
    }
    earlier.ok_or_else(|| AgentError::Command {
        command: "dnf".to_owned(),
        message: "nothing to install: the request is empty".to_owned(),
    })
}

/// The status and dnf's own words: standard error's last lines (`Error: …`) and, from standard
/// output, what explains them (`No match for argument: …`, `dnf check`'s problems), without
/// the progress lines.
pub fn describe(done: &Finished) -> String {
    let mut text = done.describe();
    let noise = [
        "Last metadata expiration check",
        "Dependencies resolved.",
        "Nothing to do.",
        "Complete!",
        "Operation aborted.",
    ];
    let said: Vec<&str> = done
        .stdout
        .lines()
        .map(str::trim)
        .filter(|l| !l.is_empty() && !noise.iter().any(|n| l.starts_with(n)))
        // A repository's download line: "NAME  2.9 MB/s | 3.0 kB  00:00".
        .filter(|l| !l.contains("B/s |"))
        .filter(|l| !done.stderr.contains(*l))
        .collect();
    if !said.is_empty() && !said.iter().any(|l| l.starts_with("====")) {
        text.push_str("; dnf said: ");
        text.push_str(&said[said.len().saturating_sub(5)..].join(" | "));
    }
    text
}

/// `NAME-EVR`, the spec that names one build.
pub fn spec(package: &str, version: &str) -> String {
    format!("{package}-{version}")
}

/// The dnf commands for a request: `remove` first, then `install` or `distro-sync`.
fn commands(
    root: &PackageRoot,
    request: &Request,
    mode: Mode,
    states: &BTreeMap<String, PackageState>,
    simulate: bool,
) -> Vec<PackageCommand> {
    let base = || {
        let command = root.dnf();
        if simulate {
            command.arg("--assumeno")
        } else {
            command.arg("-y")
        }
    };
    let mut commands = Vec::new();
    if !request.remove.is_empty() {
        commands.push(
            base()
                .args(["remove", "--"])
                .args(request.remove.iter().cloned()),
        );
    }
    if !request.install.is_empty() {
        let all_installed = request
            .install
            .iter()
            .all(|(p, _)| states.get(p).is_some_and(PackageState::is_installed));
        let verb = if mode == Mode::Rollback && all_installed {
            "distro-sync"
        } else {
            "install"
        };
        commands.push(
            base().args([verb, "--"]).args(
                request
                    .install
                    .iter()
                    .map(|(package, version)| spec(package, version)),
            ),
        );
    }
    commands
}

/// Parses the transaction table dnf prints before its question:
///
/// ```text
/// ================================================================================
///  Package               Architecture     Version           Repository       Size
/// ================================================================================
/// Installing:
///  sluice-next           noarch           1.0-1             local           6.2 k
///      replacing  sluice-legacy.noarch 1.0-1
/// Upgrading:
///  sluice-demo           noarch           1.1-1             local           6.2 k
/// Removing:
///  sluice-old            noarch           0.9-1             @System          12 k
///
/// Transaction Summary
/// ```
///
/// Sections become `install`, `upgrade`, `downgrade`, `reinstall`, `remove` or `skip`; a
/// `replacing` line under a package of another name is a removal (an obsoleted package). A name
/// too long for its column sits alone on its line and the rest follows on the next. `from` is
/// the installed version, from `installed`.
pub fn parse_transaction(
    text: &str,
    installed: &BTreeMap<String, PackageState>,
) -> Result<Vec<PlannedAction>, AgentError> {
    let mut actions: Vec<PlannedAction> = Vec::new();
    let mut in_table = false;
    let mut section: Option<&'static str> = None;
    let mut pending: Option<(usize, String)> = None;
    let from = |name: &str| {
        installed
            .get(name)
            .filter(|s| s.is_installed())
            .map(|s| s.version.clone())
    };
    for (index, line) in text.lines().enumerate() {
        if line.starts_with("Transaction Summary") {
            break;
        }
        if line.starts_with("====") {
            in_table = true;
            continue;
        }
        if !in_table || line.trim().is_empty() {
            continue;
        }
        if !line.starts_with(' ') {
            section = line.strip_suffix(':').map(section_action);
            pending = None;
            continue;
        }
        let Some(action) = section else { continue };
        if action == "ignore" {
            continue;
        }
        let bad = |reason: &str| AgentError::Parse {
            what: format!("dnf transaction line {}", index + 1),
            reason: format!("{reason}: {line:?}"),
        };
        let mut words: Vec<&str> = line.split_whitespace().collect();
        if words.first() == Some(&"replacing") {
            let [_, name_arch, version] = words[..] else {
                return Err(bad("expected \"replacing NAME.ARCH VERSION\""));
            };
            let name = name_arch.rsplit_once('.').map_or(name_arch, |(n, _)| n);
            let replacer = actions.last().map(|a| a.package.as_str());
            if replacer != Some(name) {
                actions.push(PlannedAction {
                    action: "remove".to_owned(),
                    package: name.to_owned(),
                    from: Some(version.to_owned()),
                    to: None,
                });
            }
            continue;
        }
        let name_holder;
        if let Some((_, name)) = pending.take() {
            name_holder = name;
            words.insert(0, name_holder.as_str());
        }
        if words.len() == 1 {
            pending = Some((index, words[0].to_owned()));
            continue;
        }
        let [name, _arch, version, ..] = words[..] else {
            return Err(bad("expected NAME ARCH VERSION"));
        };
        let planned = match action {
            "remove" => PlannedAction {
                action: action.to_owned(),
                package: name.to_owned(),
                from: Some(version.to_owned()),
                to: None,
            },
            _ => PlannedAction {
                action: action.to_owned(),
                package: name.to_owned(),
                from: from(name),
                to: Some(version.to_owned()),
            },
        };
        actions.push(planned);
    }
    if let Some((index, name)) = pending {
        return Err(AgentError::Parse {
            what: format!("dnf transaction line {}", index + 1),
            reason: format!("package {name} has no architecture and version"),
        });
    }
    Ok(actions)
}

fn section_action(header: &str) -> &'static str {
    let header = header.trim();
    if header.starts_with("Installing module")
        || header.starts_with("Installing group")
        || header.starts_with("Installing environment")
    {
        "ignore"
    } else if header.starts_with("Install") {
        "install"
    } else if header.starts_with("Upgrad") {
        "upgrade"
    } else if header.starts_with("Downgrad") {
        "downgrade"
    } else if header.starts_with("Reinstall") {
        "reinstall"
    } else if header.starts_with("Remov") {
        "remove"
    } else if header.starts_with("Skipping") {
        "skip"
    } else {
        "ignore"
    }
}

/// What rpm did with a locally changed configuration file.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ConfigNote {
    /// The configuration file, inside the root.
    pub path: String,
    /// `rpmnew`: the local file was kept and the package's new one written beside it;
    /// `rpmsave`: the package's file replaced the local one, which was saved beside it.
    pub kind: String,
    /// The file written beside it.
    pub saved_as: String,
}

/// Reads rpm's warnings from a transaction's output:
///
/// ```text
/// warning: /etc/demo.conf created as /etc/demo.conf.rpmnew
/// warning: /etc/demo.conf saved as /etc/demo.conf.rpmsave
/// ```
pub fn config_notes(output: &str) -> Vec<ConfigNote> {
    let mut notes = Vec::new();
    for line in output.lines() {
        let Some(rest) = line.trim().strip_prefix("warning: ") else {
            continue;
        };
        for (separator, kind) in [(" created as ", "rpmnew"), (" saved as ", "rpmsave")] {
            if let Some((path, saved_as)) = rest.split_once(separator)
                && path.starts_with('/')
                && saved_as.ends_with(&format!(".{kind}"))
            {
                let note = ConfigNote {
                    path: path.to_owned(),
                    kind: kind.to_owned(),
                    saved_as: saved_as.trim().to_owned(),
                };
                if !notes.contains(&note) {
                    notes.push(note);
                }
            }
        }
    }
    notes
}

#[cfg(test)]
mod tests {
    use super::*;

    fn installed(pairs: &[(&str, &str)]) -> BTreeMap<String, PackageState> {
        pairs
            .iter()
            .map(|(n, v)| {
                (
                    (*n).to_owned(),
                    PackageState {
                        version: (*v).to_owned(),
                        want: "install".to_owned(),
                        status: "installed".to_owned(),
                    },
                )
            })
            .collect()
    }

    #[test]
    fn transaction_table() {
        let text = "\
Last metadata expiration check: 0:00:01 ago on Fri Dec  4 15:55:49 2026.
Dependencies resolved.
================================================================================
 Package                                          Arch    Version  Repo    Size
================================================================================
Installing:
 sluice-next-generation-package-with-a-long-name  noarch  1.0-1    local  6.2 k
     replacing  sluice-legacy.noarch 1.0-1
Upgrading:
 sluice-demo                                      noarch  1.1-1    local  6.2 k
Installing dependencies:
 a-name-so-long-that-dnf-wraps-it-onto-a-line-of-its-own-in-the-table
                                                  x86_64  2:3.0-4.el9  local  10 k
Downgrading:
 sluice-lib                                       noarch  0.9-1    local  6.2 k
Removing:
 sluice-old                                       noarch  0.5-1    @System 1 k

Transaction Summary
================================================================================
Install  2 Packages
";
        let actions = parse_transaction(
            text,
            &installed(&[("sluice-demo", "0:1.0-1"), ("sluice-lib", "0:1.0-1")]),
        )
        .unwrap();
        let got: Vec<(&str, &str, Option<&str>, Option<&str>)> = actions
            .iter()
            .map(|a| {
                (
                    a.action.as_str(),
                    a.package.as_str(),
                    a.from.as_deref(),
                    a.to.as_deref(),
                )
            })
            .collect();
        assert_eq!(
            got,
            vec![
                (
                    "install",
                    "sluice-next-generation-package-with-a-long-name",
                    None,
                    Some("1.0-1")
                ),
                ("remove", "sluice-legacy", Some("1.0-1"), None),
                ("upgrade", "sluice-demo", Some("0:1.0-1"), Some("1.1-1")),
                (
                    "install",
                    "a-name-so-long-that-dnf-wraps-it-onto-a-line-of-its-own-in-the-table",
                    None,
                    Some("2:3.0-4.el9")
                ),
                ("downgrade", "sluice-lib", Some("0:1.0-1"), Some("0.9-1")),
                ("remove", "sluice-old", Some("0.5-1"), None),
            ]
        );
        assert!(parse_transaction("====\nInstalling:\n lonely\n", &BTreeMap::new()).is_err());
        assert!(
            parse_transaction("Nothing to do.\nComplete!\n", &BTreeMap::new())
                .unwrap()
                .is_empty()
        );
    }

    #[test]
    fn rollback_uses_distro_sync_only_for_installed_packages() {
        let root = PackageRoot::Host;
        let request = Request {
            install: vec![("demo".into(), "1.0-1".into())],
            remove: vec!["extra".into()],
        };
        let states = installed(&[("demo", "0:1.1-1")]);
        let verbs = |mode, states: &BTreeMap<String, PackageState>, simulate| {
            commands(&root, &request, mode, states, simulate)
                .iter()
                .map(|c| c.get_args().join(" "))
                .collect::<Vec<_>>()
        };
        let rollback = verbs(Mode::Rollback, &states, false);
        assert_eq!(rollback.len(), 2);
        assert!(rollback[0].ends_with("-y remove -- extra"), "{rollback:?}");
        assert!(
            rollback[1].ends_with("-y distro-sync -- demo-1.0-1"),
            "{rollback:?}"
        );
        let update = verbs(Mode::Update, &states, true);
        assert!(
            update[1].ends_with("--assumeno install -- demo-1.0-1"),
            "{update:?}"
        );
        let absent = verbs(Mode::Rollback, &BTreeMap::new(), false);
        assert!(
            absent[1].ends_with("-y install -- demo-1.0-1"),
            "{absent:?}"
        );
        assert!(update.iter().all(|c| !c.contains("allowerasing")));
    }

    #[test]
    fn dnfs_words_without_its_progress_lines() {
        use std::os::unix::process::ExitStatusExt;
        let done = Finished {
            command: "dnf --assumeno install -- demo-9.9-1".to_owned(),
            status: Some(std::process::ExitStatus::from_raw(256)),
            stdout: "Sluice test packages     2.9 MB/s | 3.0 kB     00:00\nLast metadata expiration check: 0:00:01 ago.\nNo match for argument: demo-9.9-1\n".to_owned(),
            stderr: "Error: Unable to find a match: demo-9.9-1\n".to_owned(),
            timed_out: false,
            elapsed: Duration::from_millis(500),
        };
        assert_eq!(
            describe(&done),
            "exit status 1: Error: Unable to find a match: demo-9.9-1; dnf said: No match for argument: demo-9.9-1"
        );
    }

    #[test]
    fn rpmnew_and_rpmsave_warnings() {
        let output = "  Upgrading        : sluice-demo-1.1-1.noarch    1/2\nwarning: /etc/sluice-demo/demo.conf created as /etc/sluice-demo/demo.conf.rpmnew\n\nwarning: /etc/other.conf saved as /etc/other.conf.rpmsave\nwarning: something else\n";
        let notes = config_notes(output);
        assert_eq!(notes.len(), 2);
        assert_eq!(notes[0].kind, "rpmnew");
        assert_eq!(notes[0].saved_as, "/etc/sluice-demo/demo.conf.rpmnew");
        assert_eq!(notes[1].path, "/etc/other.conf");
        assert_eq!(notes[1].kind, "rpmsave");
    }
}
