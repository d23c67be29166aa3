//! The package root an agent manages: the host itself (`/`), or a private directory that apt
//! and dpkg must treat as their whole world.
//!
//! Owns building apt-get, dpkg and dpkg-query commands and the rule that makes private roots
//! safe: a package command for a private root runs only with the options that confine it there
//! (dpkg `--root`, `--log`, `--force-script-chrootless`; dpkg-query `--admindir`; apt through
//! `APT_CONFIG=DIR/apt.conf` whose `Dir` and `DPkg::Options` name the root). Anything else is
//! refused before it starts: `-o Dir=` alone would let dpkg act on the host.

use std::fs;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use crate::AgentError;
use crate::process::{self, Finished};

/// The package programs the agent runs.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Program {
    /// `apt-get`.
    AptGet,
    /// `dpkg`.
    Dpkg,
    /// `dpkg-query` (read-only).
    DpkgQuery,
}

impl Program {
    /// The executable's name.
    pub fn name(self) -> &'static str {
        match self {
            Program::AptGet => "apt-get",
            Program::Dpkg => "dpkg",
            Program::DpkgQuery => "dpkg-query",
        }
    }
}

/// A package command not yet run: program, arguments, extra environment.
///
/// Build it with [`PackageRoot::apt_get`], [`PackageRoot::dpkg`] or
/// [`PackageRoot::dpkg_query`], which add the root's options; run it with
/// [`PackageRoot::run`], which checks them.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PackageCommand {
    program: Program,
    args: Vec<String>,
    env: Vec<(String, String)>,
}

impl PackageCommand {
    /// A bare command with no root options (what [`PackageRoot::run`] refuses for a private
    /// root).
    pub fn new(program: Program) -> Self {
        PackageCommand {
            program,
            args: Vec::new(),
            env: Vec::new(),
        }
    }

    /// Appends one argument.
    pub fn arg(mut self, arg: impl Into<String>) -> Self {
        self.args.push(arg.into());
        self
    }

    /// Appends arguments.
    pub fn args<I, S>(mut self, args: I) -> Self
    where
        I: IntoIterator<Item = S>,
        S: Into<String>,
    {
        self.args.extend(args.into_iter().map(Into::into));
        self
    }

    /// Sets an environment variable for the command.
    pub fn env(mut self, key: impl Into<String>, value: impl Into<String>) -> Self {
        self.env.push((key.into(), value.into()));
        self
    }

    /// The program.
    pub fn program(&self) -> Program {
        self.program
    }

    /// The arguments.
    pub fn get_args(&self) -> &[String] {
        &self.args
    }

    fn env_value(&self, key: &str) -> Option<&str> {
        self.env
            .iter()
            .rev()
            .find(|(k, _)| k == key)
            .map(|(_, v)| v.as_str())
    }
}

/// Where packages are managed.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum PackageRoot {
    /// The machine's own packages.
    Host,
    /// A directory holding its own dpkg database, apt state and installed files.
    Private(PathBuf),
}

impl PackageRoot {
    /// A private root at `dir`, which must be an absolute path (it is made canonical when it
    /// exists, so that the options naming it are exact).
    pub fn private(dir: impl Into<PathBuf>) -> Result<PackageRoot, AgentError> {
        let dir = dir.into();
        if !dir.is_absolute() {
            return Err(AgentError::Root {
                root: dir,
                reason: "a private root must be an absolute path".to_owned(),
            });
        }
        let dir = fs::canonicalize(&dir).unwrap_or(dir);
        if dir == Path::new("/") {
            return Err(AgentError::Root {
                root: dir,
                reason: "a private root cannot be / (use the host root)".to_owned(),
            });
        }
        Ok(PackageRoot::Private(dir))
    }

    /// The root directory: `/` for the host.
    pub fn dir(&self) -> &Path {
        match self {
            PackageRoot::Host => Path::new("/"),
            PackageRoot::Private(dir) => dir,
        }
    }

    /// True for a private root.
    pub fn is_private(&self) -> bool {
        matches!(self, PackageRoot::Private(_))
    }

    /// Maps an absolute path as the packages see it (`/etc/foo`) to where it is on this
    /// machine (`DIR/etc/foo` for a private root).
    pub fn path(&self, inside: impl AsRef<Path>) -> PathBuf {
        let inside = inside.as_ref();
        match self {
            PackageRoot::Host => inside.to_path_buf(),
            PackageRoot::Private(dir) => dir.join(inside.strip_prefix("/").unwrap_or(inside)),
        }
    }

    /// dpkg's database directory.
    pub fn admindir(&self) -> PathBuf {
        self.path("/var/lib/dpkg")
    }

    /// The private root's `apt.conf`.
    pub fn apt_conf_path(&self) -> Option<PathBuf> {
        match self {
            PackageRoot::Host => None,
            PackageRoot::Private(dir) => Some(dir.join("apt.conf")),
        }
    }

    /// dpkg's log file in the root.
    pub fn dpkg_log(&self) -> PathBuf {
        self.path("/var/log/dpkg.log")
    }

    /// What `DIR/apt.conf` must say: apt's whole tree is under the root, and dpkg is told the
    /// root, its log, and to run maintainer scripts without chroot (with `DPKG_ROOT` set).
    pub fn apt_conf_text(dir: &Path) -> String {
        let dir = dir.display();
        format!(
            "// Written by sluice-agent: apt and dpkg confined to this private root.\n\
             Dir \"{dir}/\";\n\
             DPkg::Options {{ \"--root={dir}\"; \"--log={dir}/var/log/dpkg.log\"; \"--force-script-chrootless\"; }};\n\
             APT::Sandbox::User \"root\";\n"
        )
    }

    /// Makes a private root usable: dpkg's and apt's directories, an empty status database
    /// when there is none, and `apt.conf` (rewritten when it differs). Nothing for the host.
    pub fn prepare(&self) -> Result<(), AgentError> {
        let PackageRoot::Private(dir) = self else {
            return Ok(());
        };
        for sub in [
            "var/lib/dpkg/info",
            "var/lib/dpkg/updates",
            "var/lib/dpkg/triggers",
            "var/lib/apt/lists/partial",
            "var/cache/apt/archives/partial",
            "var/log/apt",
            "etc/apt/apt.conf.d",
            "etc/apt/preferences.d",
            "etc/apt/sources.list.d",
            "etc/apt/trusted.gpg.d",
            "var/run",
            "tmp",
        ] {
            let path = dir.join(sub);
            fs::create_dir_all(&path).map_err(|e| AgentError::io("creating", &path, e))?;
        }
        for file in ["var/lib/dpkg/status", "var/lib/dpkg/available"] {
            let path = dir.join(file);
            if !path.exists() {
                fs::write(&path, b"").map_err(|e| AgentError::io("creating", &path, e))?;
            }
        }
        let conf = dir.join("apt.conf");
        let text = Self::apt_conf_text(dir);
        if fs::read_to_string(&conf).ok().as_deref() != Some(text.as_str()) {
            fs::write(&conf, text).map_err(|e| AgentError::io("writing", &conf, e))?;
        }
        Ok(())
    }

    /// `apt-get`, non-interactive, in English (its messages are parsed), confined to the root.
    pub fn apt_get(&self) -> PackageCommand {
        let command = PackageCommand::new(Program::AptGet)
            .env("DEBIAN_FRONTEND", "noninteractive")
            .env("LC_ALL", "C.UTF-8");
        match self.apt_conf_path() {
            None => command,
            Some(conf) => command.env("APT_CONFIG", conf.display().to_string()),
        }
    }

    /// `dpkg`, confined to the root.
    pub fn dpkg(&self) -> PackageCommand {
        let command = PackageCommand::new(Program::Dpkg).env("LC_ALL", "C.UTF-8");
        match self {
            PackageRoot::Host => command,
            PackageRoot::Private(dir) => command.args([
                format!("--root={}", dir.display()),
                format!("--log={}", self.dpkg_log().display()),
                "--force-script-chrootless".to_owned(),
            ]),
        }
    }

    /// `dpkg-query`, reading the root's database.
    pub fn dpkg_query(&self) -> PackageCommand {
        let command = PackageCommand::new(Program::DpkgQuery).env("LC_ALL", "C.UTF-8");
        match self {
            PackageRoot::Host => command,
            PackageRoot::Private(_) => {
                command.arg(format!("--admindir={}", self.admindir().display()))
            }
        }
    }

    /// Refuses a command that could act outside a private root. The host root accepts any
    /// command except one pointing apt or dpkg at another root.
    pub fn check(&self, command: &PackageCommand) -> Result<(), AgentError> {
        let refuse = |missing: String| AgentError::Refused {
            program: command.program.name().to_owned(),
            root: self.dir().to_path_buf(),
            missing,
        };
        let args = &command.args;
        // Options that would point apt at another tree, whatever the root.
        if command.program == Program::AptGet {
            for value in apt_option_values(args) {
                let lower = value.to_ascii_lowercase();
                if lower.starts_with("dir") || lower.starts_with("apt::sandbox") {
                    return Err(refuse(format!("option {value} would move apt's tree")));
                }
                if lower.starts_with("dpkg::options")
                    && ["--root", "--admindir", "--instdir", "--log"]
                        .iter()
                        .any(|o| lower.contains(o))
                {
                    return Err(refuse(format!("option {value} would move dpkg's tree")));
                }
            }
            if let Some(arg) = args
                .iter()
                .find(|a| *a == "-c" || a.starts_with("--config-file"))
            {
                return Err(refuse(format!(
                    "option {arg} (another configuration file) is not allowed"
                )));
            }
        }
        let PackageRoot::Private(dir) = self else {
            if command.env_value("APT_CONFIG").is_some() {
                return Err(refuse(
                    "APT_CONFIG is not allowed for the host root".to_owned(),
                ));
            }
            return Ok(());
        };
        let dir_text = dir.display().to_string();
        match command.program {
            Program::AptGet => {
                let want = self
                    .apt_conf_path()
                    .map(|p| p.display().to_string())
                    .unwrap_or_default();
                if command.env_value("APT_CONFIG") != Some(want.as_str()) {
                    return Err(refuse(format!("APT_CONFIG={want} is not set")));
                }
                let text = fs::read_to_string(&want)
                    .map_err(|e| refuse(format!("cannot read {want}: {e}")))?;
                let need = [
                    format!("Dir \"{dir_text}/\";"),
                    format!("\"--root={dir_text}\";"),
                    format!("\"--log={dir_text}/"),
                    "\"--force-script-chrootless\";".to_owned(),
                ];
                if let Some(missing) = need.iter().find(|n| !text.contains(n.as_str())) {
                    return Err(refuse(format!("{want} lacks {missing}")));
                }
            }
            Program::Dpkg => {
                let has = |want: &str| args.iter().any(|a| a == want);
                let root_opt = format!("--root={dir_text}");
                if !has(&root_opt) {
                    return Err(refuse(format!("{root_opt} is missing")));
                }
                let log_prefix = format!("--log={dir_text}/");
                if !args.iter().any(|a| a.starts_with(&log_prefix)) {
                    return Err(refuse(format!("{log_prefix}… is missing")));
                }
                if !has("--force-script-chrootless") {
                    return Err(refuse("--force-script-chrootless is missing".to_owned()));
                }
                for arg in args {
                    let inside = |value: &str| Path::new(value).starts_with(dir);
                    for prefix in ["--root=", "--admindir=", "--instdir=", "--log="] {
                        if let Some(value) = arg.strip_prefix(prefix)
                            && !inside(value)
                        {
                            return Err(refuse(format!("{arg} points outside the root")));
                        }
                    }
                }
            }
            Program::DpkgQuery => {
                let admindir = format!("--admindir={}", self.admindir().display());
                let root_opt = format!("--root={dir_text}");
                if !args.iter().any(|a| *a == admindir || *a == root_opt) {
                    return Err(refuse(format!("{admindir} is missing")));
                }
                if let Some(bad) = args.iter().find(|a| {
                    (a.starts_with("--admindir=") && **a != admindir)
                        || (a.starts_with("--root=") && **a != root_opt)
                }) {
                    return Err(refuse(format!("{bad} points outside the root")));
                }
            }
        }
        Ok(())
    }

    /// Checks the command (see [`PackageRoot::check`]) and runs it with a deadline.
    pub fn run(&self, command: &PackageCommand, timeout: Duration) -> Result<Finished, AgentError> {
        self.check(command)?;
        let mut cmd = Command::new(command.program.name());
        cmd.args(&command.args);
        if self.is_private() {
            // Only what the command needs: a root-configured agent must not inherit an
            // APT_CONFIG or DPKG_* setting pointing elsewhere.
            cmd.env_remove("APT_CONFIG")
                .env_remove("DPKG_ROOT")
                .env_remove("DPKG_ADMINDIR");
        }
        for (key, value) in &command.env {
            cmd.env(key, value);
        }
        process::run(cmd, timeout)
    }
}

/// The values of apt's `-o KEY=VALUE` options, in their three spellings.
fn apt_option_values(args: &[String]) -> Vec<&str> {
    let mut values = Vec::new();
    let mut iter = args.iter();
    while let Some(arg) = iter.next() {
        if arg == "-o" || arg == "--option" {
            if let Some(value) = iter.next() {
                values.push(value.as_str());
            }
        } else if let Some(value) = arg.strip_prefix("--option=") {
            values.push(value);
        } else if let Some(value) = arg.strip_prefix("-o") {
            values.push(value);
        }
    }
    values
}

#[cfg(test)]
mod tests {
    use super::*;

    fn private() -> (tempfile::TempDir, PackageRoot) {
        let dir = tempfile::tempdir().unwrap();
        let root = PackageRoot::private(dir.path()).unwrap();
        root.prepare().unwrap();
        (dir, root)
    }

    #[test]
    fn built_commands_pass_the_check() {
        let (_dir, root) = private();
        for command in [
            root.apt_get().args(["install", "-y", "demo=1.0"]),
            root.apt_get().args([
                "-o",
                "Dpkg::Options::=--force-confold",
                "install",
                "demo=1.0",
            ]),
            root.dpkg().args(["--set-selections"]),
            root.dpkg_query().args(["-W", "demo"]),
        ] {
            root.check(&command).unwrap();
        }
        PackageRoot::Host
            .check(&PackageRoot::Host.apt_get().arg("update"))
            .unwrap();
    }

    #[test]
    fn private_root_refuses_unconfined_commands() {
        let (_dir, root) = private();
        let dir = root.dir().display().to_string();
        let cases: Vec<(PackageCommand, &str)> = vec![
            (
                PackageCommand::new(Program::Dpkg).args(["-i", "x.deb"]),
                "--root=",
            ),
            (
                PackageCommand::new(Program::Dpkg).args([format!("--root={dir}"), "-i".into()]),
                "--log=",
            ),
            (
                PackageCommand::new(Program::Dpkg).args([
                    format!("--root={dir}"),
                    format!("--log={dir}/var/log/dpkg.log"),
                ]),
                "--force-script-chrootless",
            ),
            (
                root.dpkg().arg("--admindir=/var/lib/dpkg"),
                "points outside the root",
            ),
            (
                PackageCommand::new(Program::AptGet).arg("install"),
                "APT_CONFIG",
            ),
            (
                PackageCommand::new(Program::AptGet)
                    .env("APT_CONFIG", "/etc/apt/apt.conf")
                    .arg("install"),
                "APT_CONFIG",
            ),
            (
                root.apt_get().args(["-o", "Dir=/", "install"]),
                "move apt's tree",
            ),
            (
                root.apt_get()
                    .arg("-oDir::State::status=/var/lib/dpkg/status"),
                "move apt's tree",
            ),
            (
                root.apt_get().args(["-o", "DPkg::Options::=--root=/"]),
                "move dpkg's tree",
            ),
            (
                root.apt_get().args(["-c", "/etc/apt/apt.conf"]),
                "configuration file",
            ),
            (
                PackageCommand::new(Program::DpkgQuery).arg("-W"),
                "--admindir=",
            ),
        ];
        for (command, expected) in cases {
            let err = root.check(&command).unwrap_err();
            assert!(matches!(err, AgentError::Refused { .. }));
            assert!(
                err.to_string().contains(expected),
                "{err} should say {expected}"
            );
            // run() refuses before starting anything.
            assert!(root.run(&command, Duration::from_secs(1)).is_err());
        }
    }

    #[test]
    fn a_tampered_apt_conf_is_refused() {
        let (_dir, root) = private();
        let conf = root.apt_conf_path().unwrap();
        let text = fs::read_to_string(&conf).unwrap();
        fs::write(&conf, text.replace("\"--force-script-chrootless\"; ", "")).unwrap();
        let err = root.check(&root.apt_get().arg("update")).unwrap_err();
        assert!(
            err.to_string().contains("--force-script-chrootless"),
            "{err}"
        );
        // prepare() writes it back.
        root.prepare().unwrap();
        root.check(&root.apt_get().arg("update")).unwrap();
    }

    #[test]
    fn paths_map_into_the_root() {
        let root = PackageRoot::Private(PathBuf::from("/srv/r"));
        assert_eq!(
            root.path("/etc/os-release"),
            Path::new("/srv/r/etc/os-release")
        );
        assert_eq!(
            PackageRoot::Host.path("/etc/os-release"),
            Path::new("/etc/os-release")
        );
        assert!(PackageRoot::private("relative").is_err());
        assert!(PackageRoot::private("/").is_err());
    }
}
