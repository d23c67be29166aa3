//! apt-get in the package root: refresh the lists, simulate (`-s`) and parse what it would do,
//! install exact versions non-interactively.
//!
//! Downgrades are allowed only for a rollback ([`Mode::Rollback`]); held packages are never
//! changed (no `--allow-change-held-packages`). A failure keeps apt's own words for the step's
//! message. Configuration files changed locally are kept (`--force-confdef`,
//! `--force-confold`): an update must not overwrite an operator's edit.

use std::time::Duration;

use crate::AgentError;
use crate::process::Finished;
use crate::root::PackageRoot;

pub use crate::backend::{Mode, PlannedAction, Request};

/// `pkg=version` to install, `pkg-` to remove.
fn specs(request: &Request) -> Vec<String> {
    request
        .install
        .iter()
        .map(|(package, version)| format!("{package}={version}"))
        .chain(request.remove.iter().map(|package| format!("{package}-")))
        .collect()
}

/// `apt-get update`. apt exits 0 even when some index could not be fetched; such warnings
/// count as a failure here, because a job planned on stale lists may install the wrong thing.
pub fn update(root: &PackageRoot, timeout: Duration) -> Result<Finished, AgentError> {
    let mut done = root.run(&root.apt_get().args(["-q", "update"]), timeout)?;
    let failed_fetch = done.stderr.lines().chain(done.stdout.lines()).any(|l| {
        l.starts_with("E:")
            || l.starts_with("W: Failed to fetch")
            || l.starts_with("W: Some index files failed")
    });
    if failed_fetch && done.success() {
        // Keep the program's status but make the failure visible to `success()`.
        done.status = None;
    }
    Ok(done)
}

/// `apt-get -s install …`: what apt would do, without doing it.
pub fn simulate(
    root: &PackageRoot,
    request: &Request,
    mode: Mode,
    timeout: Duration,
) -> Result<(Finished, Vec<PlannedAction>), AgentError> {
    let done = root.run(&install_command(root, request, mode, true), timeout)?;
    let actions = parse_simulation(&done.stdout)?;
    Ok((done, actions))
}

/// `apt-get install -y pkg=ver … pkg-`, non-interactive, keeping local configuration.
pub fn install(
    root: &PackageRoot,
    request: &Request,
    mode: Mode,
    timeout: Duration,
) -> Result<Finished, AgentError> {
    root.run(&install_command(root, request, mode, false), timeout)
}

fn install_command(
    root: &PackageRoot,
    request: &Request,
    mode: Mode,
    simulate: bool,
) -> crate::root::PackageCommand {
    let mut command = root.apt_get().args([
        "-q",
        "-y",
        "-o",
        "Dpkg::Options::=--force-confdef",
        "-o",
        "Dpkg::Options::=--force-confold",
        // Never wait for a lock: pre-flight checked it, and a job must not hang behind
        // another package run.
        "-o",
        "DPkg::Lock::Timeout=0",
    ]);
    if simulate {
        command = command.arg("-s");
    }
    if mode == Mode::Rollback {
        command = command.arg("--allow-downgrades");
    }
    command.arg("install").args(specs(request))
}

/// Parses the `Inst`/`Conf`/`Remv`/`Purg` lines of `apt-get -s`:
///
/// ```text
/// Inst sluice-demo [1.0] (1.1 localhost [all])
/// Inst sluice-dep (1.0 localhost [all])
/// Conf sluice-demo (1.1 localhost [all])
/// Remv old-thing [0.9]
/// ```
pub fn parse_simulation(text: &str) -> Result<Vec<PlannedAction>, AgentError> {
    let mut actions = Vec::new();
    for (index, line) in text.lines().enumerate() {
        let Some((keyword, rest)) = line.split_once(' ') else {
            continue;
        };
        let action = match keyword {
            "Inst" => "inst",
            "Conf" => "conf",
            "Remv" => "remv",
            "Purg" => "purg",
            _ => continue,
        };
        let bad = |reason: &str| AgentError::Parse {
            what: format!("apt-get -s output line {}", index + 1),
            reason: format!("{reason}: {line:?}"),
        };
        let rest = rest.trim();
        let (package, mut rest) = rest.split_once(' ').unwrap_or((rest, ""));
        if package.is_empty() {
            return Err(bad("no package name"));
        }
        rest = rest.trim_start();
        let mut from = None;
        if let Some(after) = rest.strip_prefix('[') {
            let (version, tail) = after.split_once(']').ok_or_else(|| bad("unclosed ["))?;
            from = Some(version.to_owned());
            rest = tail.trim_start();
        }
        let mut to = None;
        if let Some(after) = rest.strip_prefix('(') {
            let version = after
                .split_whitespace()
                .next()
                .ok_or_else(|| bad("empty ("))?;
            to = Some(version.trim_end_matches(')').to_owned());
        }
        if matches!(action, "inst" | "conf") && to.is_none() {
            return Err(bad("no target version"));
        }
        actions.push(PlannedAction {
            action: action.to_owned(),
            package: package.to_owned(),
            from,
            to,
        });
    }
    Ok(actions)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn simulation_lines() {
        let text = "\
Reading package lists...
The following packages will be upgraded:
  sluice-demo
Inst sluice-demo [1.0] (1.1 localhost [all])
Inst sluice-dep (1.0 localhost [all])
Inst libc6:amd64 [2.36-9] (2.36-9+deb12u4 Debian:12.5/stable-security [amd64]) []
Remv old-thing [0.9]
Conf sluice-demo (1.1 localhost [all])
Conf sluice-dep (1:1.0~rc1 localhost [all])
";
        let actions = parse_simulation(text).unwrap();
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
                ("inst", "sluice-demo", Some("1.0"), Some("1.1")),
                ("inst", "sluice-dep", None, Some("1.0")),
                (
                    "inst",
                    "libc6:amd64",
                    Some("2.36-9"),
                    Some("2.36-9+deb12u4")
                ),
                ("remv", "old-thing", Some("0.9"), None),
                ("conf", "sluice-demo", None, Some("1.1")),
                ("conf", "sluice-dep", None, Some("1:1.0~rc1")),
            ]
        );
        assert!(parse_simulation("Inst broken [1.0\n").is_err());
        assert!(parse_simulation("Conf nothing\n").is_err());
    }

    #[test]
    fn downgrades_only_in_rollback_mode() {
        let root = PackageRoot::Host;
        let request = Request {
            install: vec![("demo".into(), "1.0".into())],
            remove: vec!["extra".into()],
        };
        let update = install_command(&root, &request, Mode::Update, false);
        assert!(!update.get_args().iter().any(|a| a == "--allow-downgrades"));
        assert!(update.get_args().ends_with(&[
            "install".into(),
            "demo=1.0".into(),
            "extra-".into()
        ]));
        let rollback = install_command(&root, &request, Mode::Rollback, true);
        assert!(
            rollback
                .get_args()
                .iter()
                .any(|a| a == "--allow-downgrades")
        );
        assert!(rollback.get_args().iter().any(|a| a == "-s"));
        assert!(
            !rollback
                .get_args()
                .iter()
                .any(|a| a.contains("allow-change-held"))
        );
    }
}
