//! The package root an agent manages: the host itself (`/`), or a private directory that the
//! package manager (apt and dpkg, or dnf and rpm) must treat as its whole world.
//!
//! Owns building apt-get, dpkg, dpkg-query, dnf and rpm commands and the rule that makes
//! private roots safe: a package command for a private root runs only with the options that
//! confine it there (dpkg `--root`, `--log`, `--force-script-chrootless`; dpkg-query
//! `--admindir`; apt through `APT_CONFIG=DIR/apt.conf` whose `Dir` and `DPkg::Options` name the
//! root; rpm `--root=DIR --dbpath=/var/lib/rpm`; dnf `--installroot=DIR` with the root's own
//! `--config`, `reposdir` and `varsdir`, no host plugins, and `HOME=DIR/rpm-home`, whose
//! `.rpmmacros` puts rpm's database at the root's `/var/lib/rpm`). Anything else is refused
//! before it starts: `-o Dir=` alone would let dpkg act on the host, and dnf without `--config`
//! and `reposdir` would read the host's repositories.
//!
//! Why `HOME`: Debian's rpm puts its database at `~/.rpmdb`, so dnf's librpm would open
//! `DIR/root/.rpmdb`; dnf has no option for the database path, but librpm reads
//! `~/.rpmmacros`.

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
    /// `dnf`.
    Dnf,
    /// `rpm` (the agent only queries and verifies with it; changes go through dnf).
    Rpm,
}

impl Program {
    /// The executable's name.
    pub fn name(self) -> &'static str {
        match self {
            Program::AptGet => "apt-get",
            Program::Dpkg => "dpkg",
            Program::DpkgQuery => "dpkg-query",
            Program::Dnf => "dnf",
            Program::Rpm => "rpm",
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

    /// The `HOME` rpm and dnf run with for a private root: it holds `.rpmmacros`.
    pub fn rpm_home(&self) -> Option<PathBuf> {
        match self {
            PackageRoot::Host => None,
            PackageRoot::Private(dir) => Some(dir.join("rpm-home")),
        }
    }

    /// What `DIR/rpm-home/.rpmmacros` says: rpm's database is the root's `/var/lib/rpm`, as on
    /// RHEL and its rebuilds (not Debian's `~/.rpmdb`).
    pub const RPM_MACROS: &'static str = "# Written by sluice-agent: the rpm database of this private root.\n%_dbpath /var/lib/rpm\n";

    /// rpm's database directory inside the root.
    pub const RPM_DBPATH: &'static str = "/var/lib/rpm";

    /// The root's dnf configuration file.
    pub fn dnf_conf(&self) -> PathBuf {
        self.path("/etc/dnf/dnf.conf")
    }

    /// The root's repository directory (`*.repo` files).
    pub fn repos_dir(&self) -> PathBuf {
        self.path("/etc/yum.repos.d")
    }

    /// What a new private rpm root's `dnf.conf` says when it has none: fail on an unreachable
    /// repository rather than plan on part of them, and never pick another version than asked.
    pub const DNF_CONF: &'static str = "# Written by sluice-agent for a private root; edit as for any host.\n[main]\ngpgcheck=1\ninstallonly_limit=3\nclean_requirements_on_remove=False\nbest=True\nskip_if_unavailable=False\n";

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

    /// Makes a private root usable for `family`: dpkg's layout ([`PackageRoot::prepare`]) or
    /// rpm's ([`PackageRoot::prepare_rpm`]).
    pub fn prepare_for(
        &self,
        family: sluice_core::inventory::host::PackageManager,
    ) -> Result<(), AgentError> {
        match family {
            sluice_core::inventory::host::PackageManager::Dpkg => self.prepare(),
            sluice_core::inventory::host::PackageManager::Rpm => self.prepare_rpm(),
        }
    }

    /// Makes a private rpm root usable: rpm's and dnf's directories, `rpm-home/.rpmmacros`
    /// (rewritten when it differs) and `etc/dnf/dnf.conf` when there is none (an operator's own
    /// is kept). Nothing for the host.
    pub fn prepare_rpm(&self) -> Result<(), AgentError> {
        let PackageRoot::Private(dir) = self else {
            return Ok(());
        };
        for sub in [
            "var/lib/rpm",
            "var/lib/dnf",
            "var/cache/dnf",
            "var/log",
            "etc/dnf/vars",
            "etc/yum.repos.d",
            "rpm-home",
            "tmp",
        ] {
            let path = dir.join(sub);
            fs::create_dir_all(&path).map_err(|e| AgentError::io("creating", &path, e))?;
        }
        let macros = dir.join("rpm-home/.rpmmacros");
        if fs::read_to_string(&macros).ok().as_deref() != Some(Self::RPM_MACROS) {
            fs::write(&macros, Self::RPM_MACROS)
                .map_err(|e| AgentError::io("writing", &macros, e))?;
        }
        let conf = self.dnf_conf();
        if !conf.exists() {
            fs::write(&conf, Self::DNF_CONF).map_err(|e| AgentError::io("writing", &conf, e))?;
        }
        Ok(())
    }

    /// `dnf`, in English (its messages are parsed), never waiting for another dnf's lock,
    /// confined to the root. For a private root the release version comes from the root's
    /// os-release (`VERSION_ID` up to the first dot), as dnf would read it from the
    /// distribution's release package, which a private root may lack.
    pub fn dnf(&self) -> PackageCommand {
        let command = PackageCommand::new(Program::Dnf)
            .env("LC_ALL", "C.UTF-8")
            .arg("--setopt=exit_on_lock=True");
        let PackageRoot::Private(dir) = self else {
            return command;
        };
        let mut command = command
            .env(
                "HOME",
                self.rpm_home()
                    .map(|p| p.display().to_string())
                    .unwrap_or_default(),
            )
            .args([
                format!("--installroot={}", dir.display()),
                format!("--config={}", self.dnf_conf().display()),
                format!("--setopt=reposdir={}", self.repos_dir().display()),
                format!("--setopt=varsdir={}", self.path("/etc/dnf/vars").display()),
                "--noplugins".to_owned(),
            ]);
        if let Some(release) = self.release_version() {
            command = command.arg(format!("--releasever={release}"));
        }
        command
    }

    /// The major release from the root's os-release (`9` for `VERSION_ID="9.3"`).
    fn release_version(&self) -> Option<String> {
        ["/etc/os-release", "/usr/lib/os-release"]
            .iter()
            .find_map(|p| fs::read_to_string(self.path(p)).ok())
            .and_then(|text| {
                text.lines().find_map(|line| {
                    let value = line.trim().strip_prefix("VERSION_ID=")?;
                    let value = value.trim_matches(|c| c == '"' || c == '\'');
                    let major = value.split('.').next()?;
                    (!major.is_empty() && major.bytes().all(|b| b.is_ascii_alphanumeric()))
                        .then(|| major.to_owned())
                })
            })
    }

    /// `rpm`, in English, reading the root's database.
    pub fn rpm(&self) -> PackageCommand {
        let command = PackageCommand::new(Program::Rpm).env("LC_ALL", "C.UTF-8");
        match self {
            PackageRoot::Host => command,
            PackageRoot::Private(dir) => command
                .env(
                    "HOME",
                    self.rpm_home()
                        .map(|p| p.display().to_string())
                        .unwrap_or_default(),
                )
                .args([
                    format!("--root={}", dir.display()),
                    format!("--dbpath={}", Self::RPM_DBPATH),
                ]),
        }
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
            // The host's dnf and rpm act on `/` only.
            let elsewhere = match command.program {
                Program::Dnf => args.iter().find(|a| {
                    (*a == "--installroot" || a.starts_with("--installroot="))
                        && a.as_str() != "--installroot=/"
                }),
                Program::Rpm => args.iter().find(|a| {
                    *a == "-r"
                        || ((*a == "--root" || a.starts_with("--root="))
                            && a.as_str() != "--root=/")
                        || a.starts_with("--dbpath")
                }),
                _ => None,
            };
            if let Some(arg) = elsewhere {
                return Err(refuse(format!(
                    "option {arg} would act on another root than the host's"
                )));
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
                    let inside = |value: &str| {
                        Path::new(value).starts_with(dir)
                            && !Path::new(value)
                                .components()
                                .any(|c| c == std::path::Component::ParentDir)
                    };
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
            Program::Rpm => {
                let root_opt = format!("--root={dir_text}");
                let db_opt = format!("--dbpath={}", Self::RPM_DBPATH);
                for (want, what) in [(&root_opt, "the root"), (&db_opt, "the database")] {
                    if !args.iter().any(|a| a == want) {
                        return Err(refuse(format!("{want} ({what}) is missing")));
                    }
                }
                if let Some(bad) = args.iter().find(|a| {
                    let a = a.as_str();
                    (a.starts_with("--root") && a != root_opt)
                        || (a.starts_with("--dbpath") && a != db_opt)
                        || a == "-r"
                        || ["--rcfile", "--macros", "--define", "--eval", "--pipe"]
                            .iter()
                            .any(|o| a.starts_with(o))
                        || a.starts_with("-D")
                        || a.starts_with("-E")
                }) {
                    return Err(refuse(format!(
                        "option {bad} could move rpm out of the root"
                    )));
                }
                self.check_rpm_home(command, false).map_err(refuse)?;
            }
            Program::Dnf => {
                self.check_dnf(args).map_err(refuse)?;
                self.check_rpm_home(command, true).map_err(refuse)?;
            }
        }
        Ok(())
    }

    /// `HOME` must be the root's `rpm-home`; for dnf its `.rpmmacros` must name the root's
    /// database (rpm itself gets `--dbpath`).
    fn check_rpm_home(&self, command: &PackageCommand, need_macros: bool) -> Result<(), String> {
        let want = self
            .rpm_home()
            .map(|p| p.display().to_string())
            .unwrap_or_default();
        if command.env_value("HOME") != Some(want.as_str()) {
            return Err(format!("HOME={want} is not set"));
        }
        if need_macros {
            let path = Path::new(&want).join(".rpmmacros");
            let text = fs::read_to_string(&path)
                .map_err(|e| format!("cannot read {}: {e}", path.display()))?;
            let dbpath = format!("%_dbpath {}", Self::RPM_DBPATH);
            if !text.lines().any(|l| l.trim() == dbpath) {
                return Err(format!("{} lacks {dbpath}", path.display()));
            }
        }
        Ok(())
    }

    fn check_dnf(&self, args: &[String]) -> Result<(), String> {
        let dir = self.dir();
        // Absolute, under the root, and no `..` that could climb out of it again.
        let inside = |value: &str| {
            value.split([',', ' ']).filter(|p| !p.is_empty()).all(|p| {
                let path = Path::new(p);
                path.is_absolute()
                    && path.starts_with(dir)
                    && !path
                        .components()
                        .any(|c| c == std::path::Component::ParentDir)
            })
        };
        let installroot = format!("--installroot={}", dir.display());
        let config = format!("--config={}", self.dnf_conf().display());
        for (want, what) in [
            (installroot.as_str(), "the install root"),
            (config.as_str(), "the root's own configuration"),
            ("--noplugins", "no host plugins"),
        ] {
            if !args.iter().any(|a| a == want) {
                return Err(format!("{want} ({what}) is missing"));
            }
        }
        let mut reposdir = false;
        let mut iter = args.iter();
        while let Some(arg) = iter.next() {
            let arg = arg.as_str();
            if (arg.starts_with("--installroot") && arg != installroot)
                || ((arg == "-c" || arg.starts_with("--config")) && arg != config)
                || arg.starts_with("--enableplugin")
            {
                return Err(format!("option {arg} would leave the root"));
            }
            for prefix in ["--downloaddir", "--destdir"] {
                if let Some(value) = arg.strip_prefix(prefix) {
                    let value = value.trim_start_matches('=');
                    if !inside(value) {
                        return Err(format!("option {arg} writes outside the root"));
                    }
                }
            }
            let setopt = if arg == "--setopt" {
                iter.next().map(String::as_str)
            } else {
                arg.strip_prefix("--setopt=")
            };
            let Some((key, value)) = setopt.and_then(|s| s.split_once('=')) else {
                continue;
            };
            let key = key.trim().to_ascii_lowercase();
            let key = key.strip_prefix("main.").unwrap_or(&key);
            if matches!(
                key,
                "reposdir"
                    | "varsdir"
                    | "cachedir"
                    | "system_cachedir"
                    | "persistdir"
                    | "logdir"
                    | "installroot"
                    | "config_file_path"
                    | "pluginpath"
                    | "pluginconfpath"
            ) && !inside(value)
            {
                return Err(format!("--setopt={key}={value} points outside the root"));
            }
            reposdir |= key == "reposdir";
        }
        if !reposdir {
            return Err(format!(
                "--setopt=reposdir={} (the root's own repositories) is missing",
                self.repos_dir().display()
            ));
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
                .env_remove("DPKG_ADMINDIR")
                .env_remove("RPM_CONFIGDIR");
            // dnf substitutes `DNF_VAR_x` (and `DNF0`…`DNF9`) into repository URLs.
            for (key, _) in std::env::vars_os() {
                let key = key.to_string_lossy();
                if key.starts_with("DNF_VAR_") || (key.len() == 4 && key.starts_with("DNF")) {
                    cmd.env_remove(key.as_ref());
                }
            }
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
                root.dpkg()
                    .arg(format!("--admindir={dir}/../other/var/lib/dpkg")),
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
    fn rpm_root_commands_are_confined() {
        let dir = tempfile::tempdir().unwrap();
        fs::create_dir_all(dir.path().join("etc")).unwrap();
        fs::write(
            dir.path().join("etc/os-release"),
            "ID=\"almalinux\"\nVERSION_ID=\"9.3\"\n",
        )
        .unwrap();
        let root = PackageRoot::private(dir.path()).unwrap();
        root.prepare_rpm().unwrap();
        let text = root.dir().display().to_string();
        let dnf = root.dnf().args(["-y", "install", "demo-1.1-1"]);
        root.check(&dnf).unwrap();
        assert!(dnf.get_args().contains(&"--releasever=9".to_owned()));
        assert!(dnf.get_args().contains(&format!("--installroot={text}")));
        root.check(&root.rpm().arg("-qa")).unwrap();
        // An operator's dnf.conf is kept; the macros file is rewritten.
        fs::write(root.dnf_conf(), "[main]\ngpgcheck=0\n").unwrap();
        root.prepare_rpm().unwrap();
        assert_eq!(
            fs::read_to_string(root.dnf_conf()).unwrap(),
            "[main]\ngpgcheck=0\n"
        );
        let refused = [
            root.dnf().arg(format!("--setopt=cachedir={text}/../cache")),
            root.dnf().arg("--setopt=reposdir=/etc/yum.repos.d"),
            root.dnf().args(["--setopt", "main.logdir=/var/log"]),
            root.dnf().arg("--downloaddir=/tmp"),
            root.dnf().arg("--enableplugin=versionlock"),
            root.rpm().arg("-D_dbpath /var/lib/rpm"),
            root.rpm().arg("--root=/"),
        ];
        for command in refused {
            let err = root.check(&command).unwrap_err();
            assert!(matches!(err, AgentError::Refused { .. }), "{err}");
        }
        // The host root: dnf and rpm for `/` only.
        PackageRoot::Host
            .check(&PackageRoot::Host.dnf().args(["install", "x"]))
            .unwrap();
        assert!(
            PackageRoot::Host
                .check(&PackageRoot::Host.rpm().args(["--dbpath=/tmp/db", "-qa"]))
                .is_err()
        );
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
