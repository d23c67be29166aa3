//! Jobs: what an agent is asked to do on one host, and what it reports back.
//!
//! A [`Job`] names exact package versions to reach, the pre-flight steps before touching
//! anything, the checks that prove the host still works afterwards, and what to do when it does
//! not. A [`JobReport`] says what happened, step by step, with the versions before and after.
//! The server writes jobs and reads reports; the agent does the reverse; both share these types.
//!
//! [`plan`] decides, from the versions installed now, whether a host is already compliant or
//! which packages change, and refuses a downgrade unless the job is a rollback. This module owns
//! the shapes and that decision; it never runs a package manager or reads the clock (the agent
//! stamps steps with the times it measured).

use std::collections::{BTreeMap, BTreeSet};
use std::fmt;

use jiff::Timestamp;
use serde::{Deserialize, Serialize};

use crate::inventory::host::PackageManager;
use crate::version::{Scheme, Version, VersionError};

/// Default time a check, a hook or a backup command may take, in seconds.
pub const DEFAULT_TIMEOUT_SECS: u32 = 30;

/// One unit of work for one agent: reach these versions, safely.
///
/// Field names are the JSON names and are stable (the agent protocol and job files use them).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Job {
    /// The job's id, unique on the server.
    pub id: String,
    /// A retried delivery of the same job carries the same key; an agent runs a key once.
    pub idempotency_key: String,
    /// An update, or a rollback to earlier versions.
    #[serde(default)]
    pub kind: JobKind,
    /// Exact versions to reach. For a rollback: the versions to return to.
    pub targets: Vec<Target>,
    /// What must hold before anything changes.
    #[serde(default)]
    pub preflight: Preflight,
    /// What must hold after the change; all are run, each with its own timeout.
    #[serde(default)]
    pub checks: Vec<Check>,
    /// What to do when a step after the first change fails.
    #[serde(default)]
    pub rollback: RollbackPolicy,
    /// The package family the job was planned for (`dpkg` or `rpm`): an agent whose host is of
    /// the other family refuses the job before anything runs, because its versions and names
    /// mean nothing there. Absent in older jobs: then the agent's own family is assumed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub package_manager: Option<PackageManager>,
}

/// Whether a job moves packages forward or back.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "kebab-case", deny_unknown_fields)]
pub enum JobKind {
    /// Reach the targets; a target below the installed version is refused.
    #[default]
    Update,
    /// Return to the targets, downgrading where needed.
    Rollback {
        /// The job being undone: the agent restores the configuration files it saved before
        /// that job, when it still has them.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        of_job: Option<String>,
    },
}

impl JobKind {
    /// True for a rollback job, the only kind allowed to downgrade.
    pub fn is_rollback(&self) -> bool {
        matches!(self, JobKind::Rollback { .. })
    }
}

/// One package at one exact version.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Target {
    /// Binary package name.
    pub package: String,
    /// Exact version to install.
    pub version: String,
}

/// Checks before anything changes. Each is skipped when left empty.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Preflight {
    /// Free space required per file system (the file system holding each path).
    #[serde(default)]
    pub free_space: Vec<FreeSpace>,
    /// A backup or snapshot that must exist and be recent.
    #[serde(default)]
    pub backup_check: Option<BackupCheck>,
    /// Files whose SHA-256 must equal the baseline (file-integrity check).
    #[serde(default)]
    pub watched_files: Vec<FileBaseline>,
    /// Services or hooks to stop before the change and start again after it, always.
    #[serde(default)]
    pub quiesce: Vec<Quiesce>,
}

/// At least `min_bytes` free (for unprivileged users) on the file system holding `path`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FreeSpace {
    /// A path on the file system to measure (inside the package root, for a private root).
    pub path: String,
    /// Bytes that must be free.
    pub min_bytes: u64,
}

/// A command that takes or checks a backup, and the artifact that proves it.
///
/// The command must exit 0 within the timeout. Then the artifact (`path`, or when absent the
/// last non-empty line the command printed) must exist and be modified within
/// `max_age_hours`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct BackupCheck {
    /// Program and arguments (no shell).
    pub command: Vec<String>,
    /// The artifact to verify; defaults to the command's last output line.
    #[serde(default)]
    pub path: Option<String>,
    /// Oldest acceptable age of the artifact.
    pub max_age_hours: u32,
    /// Seconds the command may run.
    #[serde(default = "default_timeout")]
    pub timeout_secs: u32,
}

/// A watched file and the SHA-256 it must have (lower-case hex).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FileBaseline {
    /// Absolute path (inside the package root, for a private root).
    pub path: String,
    /// Expected SHA-256, 64 lower-case hex digits.
    pub sha256: String,
}

/// Something stopped before the change and started again after it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "kebab-case", deny_unknown_fields)]
pub enum Quiesce {
    /// A systemd service or timer: `systemctl stop`, then `systemctl start`.
    Unit {
        /// Unit name, e.g. `nginx.service` or `apt-daily.timer`.
        unit: String,
    },
    /// A pair of commands (no shell), for what systemd does not manage.
    Command {
        /// Run before the change.
        stop: Vec<String>,
        /// Run after the change, also after a failure.
        start: Vec<String>,
        /// Seconds each command may run.
        #[serde(default = "default_timeout")]
        timeout_secs: u32,
    },
}

impl fmt::Display for Quiesce {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Quiesce::Unit { unit } => write!(f, "unit {unit}"),
            Quiesce::Command { stop, .. } => write!(f, "hook {}", stop.join(" ")),
        }
    }
}

/// A post-update check; each has a timeout and fails when it runs out.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "kebab-case", deny_unknown_fields)]
pub enum Check {
    /// `systemctl is-active UNIT` answers `active`.
    SystemdActive {
        /// Unit name.
        unit: String,
        /// Seconds allowed.
        #[serde(default = "default_timeout")]
        timeout_secs: u32,
    },
    /// An HTTP GET answers `expect_status` and, when given, a body containing `body_contains`.
    Http {
        /// `http://host:port/path` (the agent's probe speaks plain HTTP/1.1).
        url: String,
        /// Expected status code.
        #[serde(default = "default_status")]
        expect_status: u16,
        /// Text the body must contain.
        #[serde(default)]
        body_contains: Option<String>,
        /// Seconds allowed for connecting, sending and reading.
        #[serde(default = "default_timeout")]
        timeout_secs: u32,
    },
    /// A TCP connection to `addr` (`host:port`) opens.
    Tcp {
        /// `host:port`.
        addr: String,
        /// Seconds allowed.
        #[serde(default = "default_timeout")]
        timeout_secs: u32,
    },
    /// A command (no shell) exits 0; it is killed when its time runs out.
    Command {
        /// Program and arguments.
        argv: Vec<String>,
        /// Seconds allowed.
        #[serde(default = "default_timeout")]
        timeout_secs: u32,
    },
}

impl Check {
    /// Seconds the check may take.
    pub fn timeout_secs(&self) -> u32 {
        match self {
            Check::SystemdActive { timeout_secs, .. }
            | Check::Http { timeout_secs, .. }
            | Check::Tcp { timeout_secs, .. }
            | Check::Command { timeout_secs, .. } => *timeout_secs,
        }
    }
}

impl fmt::Display for Check {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Check::SystemdActive { unit, .. } => write!(f, "systemd unit {unit} active"),
            Check::Http {
                url, expect_status, ..
            } => write!(f, "HTTP GET {url} answers {expect_status}"),
            Check::Tcp { addr, .. } => write!(f, "TCP connect {addr}"),
            Check::Command { argv, .. } => write!(f, "command {}", argv.join(" ")),
        }
    }
}

/// What to do when the change or its checks fail.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RollbackPolicy {
    /// Roll back (default) or leave the host as the failure left it.
    #[serde(default)]
    pub on_failure: OnFailure,
    /// A command (no shell) that reverts a file-system or VM snapshot, run after the package
    /// downgrade and the configuration restore.
    #[serde(default)]
    pub snapshot_revert: Option<Vec<String>>,
    /// Seconds the snapshot-revert command may run.
    #[serde(default)]
    pub snapshot_revert_timeout_secs: Option<u32>,
}

/// The reaction to a failure after the first change.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum OnFailure {
    /// Restore the versions and configuration recorded before the change, then re-check.
    #[default]
    Rollback,
    /// Report the failure and change nothing more.
    Leave,
}

fn default_timeout() -> u32 {
    DEFAULT_TIMEOUT_SECS
}

fn default_status() -> u16 {
    200
}

/// The steps of a job, in the order they run.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum StepName {
    /// Read the installed versions and decide what changes (or that nothing does).
    Inspect,
    /// Free space, package-manager lock, backup check, file integrity.
    Preflight,
    /// Load, memory and probe latency before the change.
    MeasureBefore,
    /// Stop the listed services and hooks.
    Quiesce,
    /// `apt-get -s`: what the package manager would do.
    DryRun,
    /// Record the configuration files of the packages about to change.
    SaveConfig,
    /// Install the exact versions.
    Apply,
    /// Read the installed versions again and compare them with the targets.
    Verify,
    /// Start what quiesce stopped; runs after a failure too.
    Unquiesce,
    /// The post-update checks.
    Checks,
    /// Load, memory and probe latency after the change.
    MeasureAfter,
    /// Restore the recorded versions and configuration, revert the snapshot.
    Rollback,
    /// The checks again, after a rollback.
    RollbackChecks,
}

impl StepName {
    /// Every step, in order.
    pub const ALL: [StepName; 13] = [
        StepName::Inspect,
        StepName::Preflight,
        StepName::MeasureBefore,
        StepName::Quiesce,
        StepName::DryRun,
        StepName::SaveConfig,
        StepName::Apply,
        StepName::Verify,
        StepName::Unquiesce,
        StepName::Checks,
        StepName::MeasureAfter,
        StepName::Rollback,
        StepName::RollbackChecks,
    ];

    /// The kebab-case name used in JSON, journals and failpoints.
    pub fn as_str(self) -> &'static str {
        match self {
            StepName::Inspect => "inspect",
            StepName::Preflight => "preflight",
            StepName::MeasureBefore => "measure-before",
            StepName::Quiesce => "quiesce",
            StepName::DryRun => "dry-run",
            StepName::SaveConfig => "save-config",
            StepName::Apply => "apply",
            StepName::Verify => "verify",
            StepName::Unquiesce => "unquiesce",
            StepName::Checks => "checks",
            StepName::MeasureAfter => "measure-after",
            StepName::Rollback => "rollback",
            StepName::RollbackChecks => "rollback-checks",
        }
    }

    /// Parses the kebab-case name.
    pub fn parse(text: &str) -> Option<StepName> {
        StepName::ALL.into_iter().find(|step| step.as_str() == text)
    }

    /// True for the steps that may change installed packages or their files.
    pub fn changes_packages(self) -> bool {
        matches!(self, StepName::Apply | StepName::Rollback)
    }
}

impl fmt::Display for StepName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// How a step ended.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum StepStatus {
    /// It did what it should.
    Ok,
    /// It failed; the message says why.
    Failed,
    /// It had nothing to do (e.g. no quiesce hooks).
    Skipped,
    /// The agent stopped (crash, kill) while it ran; its effect is unknown.
    Interrupted,
}

/// One step as it ran.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct StepResult {
    /// Which step.
    pub step: StepName,
    /// How it ended.
    pub status: StepStatus,
    /// When it started.
    pub started_at: Timestamp,
    /// When it ended; none for an interrupted step.
    pub finished_at: Option<Timestamp>,
    /// For people: what happened, with the package manager's or the check's own words on a
    /// failure.
    pub message: String,
    /// For programs: step-specific data (planned actions, check results, …).
    #[serde(default, skip_serializing_if = "serde_json::Value::is_null")]
    pub detail: serde_json::Value,
}

/// How a job ended, as the agent verified it.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum JobOutcome {
    /// The targets are installed (verified) and every check passed.
    Succeeded,
    /// The targets were already installed; nothing ran.
    AlreadyCompliant,
    /// A step failed; nothing was rolled back (nothing had changed, or the policy says leave).
    Failed,
    /// A step failed, the recorded versions were restored and the checks pass again.
    RolledBack,
    /// A step failed and the rollback did not restore a verified working state.
    RollbackFailed,
    /// The agent stopped mid-job; see `interrupted_at` and the versions now installed.
    Interrupted,
}

impl JobOutcome {
    /// The kebab-case name used in JSON.
    pub fn as_str(self) -> &'static str {
        match self {
            JobOutcome::Succeeded => "succeeded",
            JobOutcome::AlreadyCompliant => "already-compliant",
            JobOutcome::Failed => "failed",
            JobOutcome::RolledBack => "rolled-back",
            JobOutcome::RollbackFailed => "rollback-failed",
            JobOutcome::Interrupted => "interrupted",
        }
    }

    /// True when the host is at the job's targets and verified working.
    pub fn is_success(self) -> bool {
        matches!(self, JobOutcome::Succeeded | JobOutcome::AlreadyCompliant)
    }
}

impl fmt::Display for JobOutcome {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Where a queued job stands, as the store records it: waiting, taken by its agent, cancelled
/// before that, or finished with the agent's outcome. Stored as text (`queued`, `claimed`,
/// `cancelled`, or the outcome's name); an unknown value is an error, never a guess.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum JobState {
    /// Waiting for its agent to take it.
    Queued,
    /// Taken by its agent; a report follows.
    Claimed,
    /// Cancelled before an agent took it.
    Cancelled,
    /// Reported: the targets are installed and every check passed.
    Succeeded,
    /// Reported: the targets were already installed.
    AlreadyCompliant,
    /// Reported: a step failed, nothing rolled back.
    Failed,
    /// Reported: a step failed and the agent restored the earlier versions.
    RolledBack,
    /// Reported: a step failed and the agent's rollback did not restore the host.
    RollbackFailed,
    /// Reported: the agent stopped mid-job.
    Interrupted,
}

impl JobState {
    /// The name stored and sent on the wire.
    pub fn as_str(self) -> &'static str {
        match self {
            JobState::Queued => "queued",
            JobState::Claimed => "claimed",
            JobState::Cancelled => "cancelled",
            JobState::Succeeded => "succeeded",
            JobState::AlreadyCompliant => "already-compliant",
            JobState::Failed => "failed",
            JobState::RolledBack => "rolled-back",
            JobState::RollbackFailed => "rollback-failed",
            JobState::Interrupted => "interrupted",
        }
    }

    /// Still to run or running: queued or claimed.
    pub fn is_open(self) -> bool {
        matches!(self, JobState::Queued | JobState::Claimed)
    }

    /// The agent's outcome, once it reported.
    pub fn outcome(self) -> Option<JobOutcome> {
        match self {
            JobState::Queued | JobState::Claimed | JobState::Cancelled => None,
            JobState::Succeeded => Some(JobOutcome::Succeeded),
            JobState::AlreadyCompliant => Some(JobOutcome::AlreadyCompliant),
            JobState::Failed => Some(JobOutcome::Failed),
            JobState::RolledBack => Some(JobOutcome::RolledBack),
            JobState::RollbackFailed => Some(JobOutcome::RollbackFailed),
            JobState::Interrupted => Some(JobOutcome::Interrupted),
        }
    }
}

impl From<JobOutcome> for JobState {
    fn from(outcome: JobOutcome) -> Self {
        match outcome {
            JobOutcome::Succeeded => JobState::Succeeded,
            JobOutcome::AlreadyCompliant => JobState::AlreadyCompliant,
            JobOutcome::Failed => JobState::Failed,
            JobOutcome::RolledBack => JobState::RolledBack,
            JobOutcome::RollbackFailed => JobState::RollbackFailed,
            JobOutcome::Interrupted => JobState::Interrupted,
        }
    }
}

impl fmt::Display for JobState {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A job state name that is none of the known ones.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("unknown job state {0:?}")]
pub struct UnknownJobState(pub String);

impl std::str::FromStr for JobState {
    type Err = UnknownJobState;

    fn from_str(text: &str) -> Result<Self, Self::Err> {
        const ALL: [JobState; 9] = [
            JobState::Queued,
            JobState::Claimed,
            JobState::Cancelled,
            JobState::Succeeded,
            JobState::AlreadyCompliant,
            JobState::Failed,
            JobState::RolledBack,
            JobState::RollbackFailed,
            JobState::Interrupted,
        ];
        ALL.into_iter()
            .find(|state| state.as_str() == text)
            .ok_or_else(|| UnknownJobState(text.to_owned()))
    }
}

/// Lets a state be compared with its stored name (`state == "queued"`).
impl PartialEq<str> for JobState {
    fn eq(&self, other: &str) -> bool {
        self.as_str() == other
    }
}

/// Lets a state be compared with its stored name (`state == "queued"`).
impl PartialEq<&str> for JobState {
    fn eq(&self, other: &&str) -> bool {
        self.as_str() == *other
    }
}

/// Package name → installed version; `None` when not installed.
pub type Versions = BTreeMap<String, Option<String>>;

/// Host measurements, taken before and after a change to spot regressions.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Measurements {
    /// When they were taken.
    pub taken_at: Timestamp,
    /// Load averages over 1, 5 and 15 minutes (`/proc/loadavg`).
    pub load: Option<[f64; 3]>,
    /// `MemTotal` in bytes (`/proc/meminfo`).
    pub mem_total_bytes: Option<u64>,
    /// `MemAvailable` in bytes.
    pub mem_available_bytes: Option<u64>,
    /// Latency of each HTTP and TCP check, in the order of the job's checks.
    #[serde(default)]
    pub probes: Vec<ProbeLatency>,
}

/// How long one probe took; `None` when it failed.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct ProbeLatency {
    /// The check, as [`Check`]'s `Display` names it.
    pub probe: String,
    /// Milliseconds until the answer.
    pub millis: Option<f64>,
}

/// The result of one post-update check.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct CheckResult {
    /// The check, as [`Check`]'s `Display` names it.
    pub check: String,
    /// Whether it passed.
    pub passed: bool,
    /// What was seen (status, output, the error), for people.
    pub message: String,
    /// Milliseconds it took.
    pub millis: f64,
}

/// What the agent reports for one job.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct JobReport {
    /// The job's id.
    pub job_id: String,
    /// The job's idempotency key.
    pub idempotency_key: String,
    /// How it ended.
    pub outcome: JobOutcome,
    /// The steps that ran, in order.
    pub steps: Vec<StepResult>,
    /// Versions of the target packages before the job.
    pub versions_before: Versions,
    /// Versions of the target packages when the report was made, read from the package
    /// manager, never assumed.
    pub versions_after: Versions,
    /// Packages dpkg left unfinished when the report was made (`half-configured 1.2`,
    /// `unpacked 1.2`, …): installed files but not a verified version.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub unsettled: BTreeMap<String, String>,
    /// Measurements before the change.
    #[serde(default)]
    pub measurements_before: Option<Measurements>,
    /// Measurements after the change.
    #[serde(default)]
    pub measurements_after: Option<Measurements>,
    /// The step that was running when the agent stopped, for an interrupted job.
    #[serde(default)]
    pub interrupted_at: Option<StepName>,
}

impl JobReport {
    /// The first failed step, if any.
    pub fn failed_step(&self) -> Option<&StepResult> {
        self.steps
            .iter()
            .find(|s| matches!(s.status, StepStatus::Failed | StepStatus::Interrupted))
    }
}

/// How one package moves.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum ChangeKind {
    /// Not installed yet.
    Install,
    /// To a higher version.
    Upgrade,
    /// To a lower version (rollback jobs only).
    Downgrade,
}

/// One package that changes.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Change {
    /// Binary package name.
    pub package: String,
    /// Installed version, if any.
    pub from: Option<String>,
    /// Target version.
    pub to: String,
    /// Install, upgrade or downgrade.
    pub kind: ChangeKind,
}

/// What a job would change on a host, given what is installed.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Plan {
    /// The packages to change; empty when the host is already compliant.
    pub changes: Vec<Change>,
}

impl Plan {
    /// True when every target is installed at exactly its version.
    pub fn is_compliant(&self) -> bool {
        self.changes.is_empty()
    }

    /// True when some change is a downgrade.
    pub fn has_downgrade(&self) -> bool {
        self.changes.iter().any(|c| c.kind == ChangeKind::Downgrade)
    }
}

/// Why a job cannot run as written.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum JobError {
    /// A required field is empty.
    #[error("job {job}: {field} is empty")]
    Empty {
        /// The job id (may be empty itself).
        job: String,
        /// The field.
        field: &'static str,
    },
    /// A package name that is not a valid package name (and could be read as an option).
    #[error("job {job}: invalid package name {name:?}: {reason}")]
    PackageName {
        /// The job id.
        job: String,
        /// The rejected name.
        name: String,
        /// What is wrong.
        reason: &'static str,
    },
    /// A package named twice among the targets.
    #[error("job {job}: package {package} is targeted twice")]
    DuplicateTarget {
        /// The job id.
        job: String,
        /// The package.
        package: String,
    },
    /// A target or installed version its scheme rejects.
    #[error("job {job}: package {package}: {source}")]
    Version {
        /// The job id.
        job: String,
        /// The package.
        package: String,
        /// The parse error.
        source: VersionError,
    },
    /// A target lower than the installed version in an update job.
    #[error(
        "job {job}: package {package}: target {target} is lower than installed {installed}; only a rollback job may downgrade"
    )]
    Downgrade {
        /// The job id.
        job: String,
        /// The package.
        package: String,
        /// Installed version.
        installed: String,
        /// Target version.
        target: String,
    },
    /// Some other field is out of range or malformed.
    #[error("job {job}: {field}: {reason}")]
    Invalid {
        /// The job id.
        job: String,
        /// The field, e.g. `checks[2].timeout_secs`.
        field: String,
        /// What is wrong.
        reason: String,
    },
}

impl Job {
    /// Checks what serde cannot: names, versions, commands and timeouts.
    ///
    /// The agent validates every job before its first step, so a malformed job fails without
    /// touching the host; package names are checked strictly because they end up on the
    /// package manager's command line.
    pub fn validate(&self, scheme: Scheme) -> Result<(), JobError> {
        let job = &self.id;
        let invalid = |field: String, reason: &str| JobError::Invalid {
            job: job.clone(),
            field,
            reason: reason.to_owned(),
        };
        if self.id.trim().is_empty() {
            return Err(JobError::Empty {
                job: job.clone(),
                field: "id",
            });
        }
        if self.idempotency_key.trim().is_empty() {
            return Err(JobError::Empty {
                job: job.clone(),
                field: "idempotency_key",
            });
        }
        if self.targets.is_empty() {
            return Err(JobError::Empty {
                job: job.clone(),
                field: "targets",
            });
        }
        let mut seen = BTreeSet::new();
        for (i, target) in self.targets.iter().enumerate() {
            check_package_name(scheme, &target.package).map_err(|reason| {
                JobError::PackageName {
                    job: job.clone(),
                    name: target.package.clone(),
                    reason,
                }
            })?;
            let version =
                Version::parse(scheme, &target.version).map_err(|source| JobError::Version {
                    job: job.clone(),
                    package: target.package.clone(),
                    source,
                })?;
            // An rpm version without a release names no single build: `1.1` sorts below every
            // `1.1-N`, so the installed package would never equal the target.
            if let Version::Rpm(rpm) = &version
                && rpm.release().is_none_or(str::is_empty)
            {
                return Err(invalid(
                    format!("targets[{i}].version"),
                    &format!(
                        "{} {}: an rpm target needs VERSION-RELEASE (e.g. 1.1-1), the exact build to install",
                        target.package, target.version
                    ),
                ));
            }
            if !seen.insert(target.package.as_str()) {
                return Err(JobError::DuplicateTarget {
                    job: job.clone(),
                    package: target.package.clone(),
                });
            }
        }
        for (i, space) in self.preflight.free_space.iter().enumerate() {
            if space.path.is_empty() {
                return Err(invalid(
                    format!("preflight.free_space[{i}].path"),
                    "empty path",
                ));
            }
        }
        if let Some(backup) = &self.preflight.backup_check {
            check_argv(&backup.command)
                .map_err(|r| invalid("preflight.backup_check.command".into(), r))?;
            check_timeout(backup.timeout_secs)
                .map_err(|r| invalid("preflight.backup_check.timeout_secs".into(), r))?;
        }
        for (i, file) in self.preflight.watched_files.iter().enumerate() {
            if !file.path.starts_with('/') {
                return Err(invalid(
                    format!("preflight.watched_files[{i}].path"),
                    "must be absolute",
                ));
            }
            if file.sha256.len() != 64
                || !file
                    .sha256
                    .bytes()
                    .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
            {
                return Err(invalid(
                    format!("preflight.watched_files[{i}].sha256"),
                    "must be 64 lower-case hex digits",
                ));
            }
        }
        for (i, hook) in self.preflight.quiesce.iter().enumerate() {
            match hook {
                Quiesce::Unit { unit } => check_unit(unit)
                    .map_err(|r| invalid(format!("preflight.quiesce[{i}].unit"), r))?,
                Quiesce::Command {
                    stop,
                    start,
                    timeout_secs,
                } => {
                    check_argv(stop)
                        .map_err(|r| invalid(format!("preflight.quiesce[{i}].stop"), r))?;
                    check_argv(start)
                        .map_err(|r| invalid(format!("preflight.quiesce[{i}].start"), r))?;
                    check_timeout(*timeout_secs)
                        .map_err(|r| invalid(format!("preflight.quiesce[{i}].timeout_secs"), r))?;
                }
            }
        }
        for (i, check) in self.checks.iter().enumerate() {
            check_timeout(check.timeout_secs())
                .map_err(|r| invalid(format!("checks[{i}].timeout_secs"), r))?;
            match check {
                Check::SystemdActive { unit, .. } => {
                    check_unit(unit).map_err(|r| invalid(format!("checks[{i}].unit"), r))?;
                }
                Check::Http { url, .. } => {
                    if !url.starts_with("http://") {
                        return Err(invalid(
                            format!("checks[{i}].url"),
                            "must start with http:// (the probe speaks plain HTTP)",
                        ));
                    }
                }
                Check::Tcp { addr, .. } => {
                    if !addr.contains(':') {
                        return Err(invalid(format!("checks[{i}].addr"), "must be host:port"));
                    }
                }
                Check::Command { argv, .. } => {
                    check_argv(argv).map_err(|r| invalid(format!("checks[{i}].argv"), r))?;
                }
            }
        }
        if let Some(argv) = &self.rollback.snapshot_revert {
            check_argv(argv).map_err(|r| invalid("rollback.snapshot_revert".into(), r))?;
        }
        if let Some(secs) = self.rollback.snapshot_revert_timeout_secs {
            check_timeout(secs)
                .map_err(|r| invalid("rollback.snapshot_revert_timeout_secs".into(), r))?;
        }
        Ok(())
    }

    /// The target packages' names, in job order.
    pub fn packages(&self) -> impl Iterator<Item = &str> {
        self.targets.iter().map(|t| t.package.as_str())
    }
}

/// dpkg's rule: lower-case letters, digits, `+`, `-`, `.`; at least two characters, starting
/// with a letter or digit. Starting with `-` would make it an option. rpm names also use
/// upper-case letters and `_` (`NetworkManager`, `python3-file_magic`); no glob or shell
/// character passes either rule, so a name never matches more than itself in dnf.
fn check_package_name(scheme: Scheme, name: &str) -> Result<(), &'static str> {
    let bytes = name.as_bytes();
    if bytes.len() < 2 {
        return Err("must be at least two characters");
    }
    if scheme == Scheme::Rpm {
        if !bytes[0].is_ascii_alphanumeric() {
            return Err("must start with a letter or a digit");
        }
        if !bytes
            .iter()
            .all(|&b| b.is_ascii_alphanumeric() || b"+-._".contains(&b))
        {
            return Err("only letters, digits, '+', '-', '.' and '_' are allowed");
        }
        return Ok(());
    }
    if !bytes[0].is_ascii_lowercase() && !bytes[0].is_ascii_digit() {
        return Err("must start with a lower-case letter or a digit");
    }
    if !bytes
        .iter()
        .all(|&b| b.is_ascii_lowercase() || b.is_ascii_digit() || b"+-.".contains(&b))
    {
        return Err("only lower-case letters, digits, '+', '-' and '.' are allowed");
    }
    Ok(())
}

fn check_unit(unit: &str) -> Result<(), &'static str> {
    if unit.is_empty() || unit.starts_with('-') || unit.contains(char::is_whitespace) {
        return Err("not a unit name");
    }
    Ok(())
}

fn check_argv(argv: &[String]) -> Result<(), &'static str> {
    match argv.first() {
        None => Err("empty command"),
        Some(program) if program.is_empty() => Err("empty program name"),
        Some(_) => Ok(()),
    }
}

fn check_timeout(secs: u32) -> Result<(), &'static str> {
    if secs == 0 {
        return Err("must be at least 1 second");
    }
    if secs > 24 * 3600 {
        return Err("must be at most 86400 seconds");
    }
    Ok(())
}

/// Decides what a job changes on a host where `installed` maps package names to installed
/// versions (packages absent from the map are not installed).
///
/// Every target at exactly its version (by the scheme's equality, so `1.0` equals `0:1.0`) is
/// left alone; an empty plan means the host is already compliant. A target below the installed
/// version is a downgrade, refused unless the job is a rollback. The job should be
/// [validated](Job::validate) first; versions are parsed again here and errors name the package.
pub fn plan(
    scheme: Scheme,
    installed: &BTreeMap<String, String>,
    job: &Job,
) -> Result<Plan, JobError> {
    let mut changes = Vec::new();
    for target in &job.targets {
        let version_error = |source| JobError::Version {
            job: job.id.clone(),
            package: target.package.clone(),
            source,
        };
        let wanted = Version::parse(scheme, &target.version).map_err(version_error)?;
        let Some(current_text) = installed.get(&target.package) else {
            changes.push(Change {
                package: target.package.clone(),
                from: None,
                to: target.version.clone(),
                kind: ChangeKind::Install,
            });
            continue;
        };
        let current = Version::parse(scheme, current_text).map_err(version_error)?;
        let kind = match wanted.compare(&current) {
            std::cmp::Ordering::Equal => continue,
            std::cmp::Ordering::Greater => ChangeKind::Upgrade,
            std::cmp::Ordering::Less if job.kind.is_rollback() => ChangeKind::Downgrade,
            std::cmp::Ordering::Less => {
                return Err(JobError::Downgrade {
                    job: job.id.clone(),
                    package: target.package.clone(),
                    installed: current_text.clone(),
                    target: target.version.clone(),
                });
            }
        };
        changes.push(Change {
            package: target.package.clone(),
            from: Some(current_text.clone()),
            to: target.version.clone(),
            kind,
        });
    }
    Ok(Plan { changes })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_job_state_reads_back_from_its_stored_name_and_an_unknown_name_is_an_error() {
        for state in [
            JobState::Queued,
            JobState::Claimed,
            JobState::Cancelled,
            JobState::Succeeded,
            JobState::AlreadyCompliant,
            JobState::Failed,
            JobState::RolledBack,
            JobState::RollbackFailed,
            JobState::Interrupted,
        ] {
            assert_eq!(state.as_str().parse::<JobState>(), Ok(state));
            assert_eq!(
                serde_json::to_value(state).unwrap(),
                serde_json::json!(state.as_str())
            );
            if let Some(outcome) = state.outcome() {
                assert_eq!(outcome.as_str(), state.as_str());
                assert_eq!(JobState::from(outcome), state);
            }
        }
        let error = "done".parse::<JobState>().unwrap_err();
        assert_eq!(error.to_string(), "unknown job state \"done\"");
    }

    fn job(kind: JobKind, targets: &[(&str, &str)]) -> Job {
        Job {
            id: "j1".into(),
            idempotency_key: "k1".into(),
            kind,
            targets: targets
                .iter()
                .map(|(p, v)| Target {
                    package: (*p).into(),
                    version: (*v).into(),
                })
                .collect(),
            preflight: Preflight::default(),
            checks: Vec::new(),
            rollback: RollbackPolicy::default(),
            package_manager: None,
        }
    }

    fn installed(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
        pairs
            .iter()
            .map(|(p, v)| ((*p).to_owned(), (*v).to_owned()))
            .collect()
    }

    #[test]
    fn plan_decides_compliance_and_direction() {
        let host = installed(&[("demo", "1.0-1"), ("lib", "2:3.0"), ("zlib", "1.2")]);
        // (targets, expected changes as (package, kind))
        type Case<'a> = (&'a [(&'a str, &'a str)], &'a [(&'a str, ChangeKind)]);
        let cases: &[Case] = &[
            (&[("demo", "1.0-1")], &[]),
            (&[("demo", "0:1.0-1"), ("lib", "2:3.0")], &[]),
            (&[("demo", "1.1-1")], &[("demo", ChangeKind::Upgrade)]),
            (&[("new", "1.0")], &[("new", ChangeKind::Install)]),
            (
                &[("demo", "1.0-1"), ("lib", "2:3.1"), ("new", "0.1")],
                &[("lib", ChangeKind::Upgrade), ("new", ChangeKind::Install)],
            ),
        ];
        for (targets, expected) in cases {
            let plan = plan(Scheme::Deb, &host, &job(JobKind::Update, targets)).unwrap();
            let got: Vec<(&str, ChangeKind)> = plan
                .changes
                .iter()
                .map(|c| (c.package.as_str(), c.kind))
                .collect();
            assert_eq!(&got, expected, "{targets:?}");
            assert_eq!(plan.is_compliant(), expected.is_empty());
        }
    }

    #[test]
    fn downgrades_only_in_rollback_jobs() {
        let host = installed(&[("demo", "1.1-1")]);
        let update = job(JobKind::Update, &[("demo", "1.0-1")]);
        let err = plan(Scheme::Deb, &host, &update).unwrap_err();
        assert!(matches!(err, JobError::Downgrade { .. }), "{err}");
        assert!(err.to_string().contains("only a rollback job"), "{err}");
        // `~` sorts before everything: 1.1-1~rc1 < 1.1-1.
        let tilde = job(JobKind::Update, &[("demo", "1.1-1~rc1")]);
        assert!(plan(Scheme::Deb, &host, &tilde).is_err());
        let rollback = job(JobKind::Rollback { of_job: None }, &[("demo", "1.0-1")]);
        let plan = plan(Scheme::Deb, &host, &rollback).unwrap();
        assert_eq!(plan.changes[0].kind, ChangeKind::Downgrade);
        assert_eq!(plan.changes[0].from.as_deref(), Some("1.1-1"));
        assert!(plan.has_downgrade());
    }

    #[test]
    fn bad_versions_name_the_package() {
        let host = installed(&[("demo", "not a version")]);
        let err = plan(
            Scheme::Deb,
            &host,
            &job(JobKind::Update, &[("demo", "1.0")]),
        )
        .unwrap_err();
        assert!(err.to_string().contains("package demo"), "{err}");
        let err = plan(
            Scheme::Deb,
            &installed(&[]),
            &job(JobKind::Update, &[("demo", "1:")]),
        )
        .unwrap_err();
        assert!(err.to_string().contains("1:"), "{err}");
    }

    #[test]
    fn validation_names_the_field() {
        let ok = job(JobKind::Update, &[("demo", "1.0")]);
        ok.validate(Scheme::Deb).unwrap();
        let cases: Vec<(Job, &str)> = vec![
            (job(JobKind::Update, &[]), "targets is empty"),
            (job(JobKind::Update, &[("-oDir=/", "1.0")]), "must start"),
            (job(JobKind::Update, &[("Demo", "1.0")]), "lower-case"),
            (job(JobKind::Update, &[("demo", "1.0 2")]), "demo"),
            (
                job(JobKind::Update, &[("demo", "1.0"), ("demo", "1.1")]),
                "targeted twice",
            ),
            (
                Job {
                    checks: vec![Check::Command {
                        argv: vec![],
                        timeout_secs: 5,
                    }],
                    ..ok.clone()
                },
                "checks[0].argv: empty command",
            ),
            (
                Job {
                    checks: vec![Check::Tcp {
                        addr: "127.0.0.1:1".into(),
                        timeout_secs: 0,
                    }],
                    ..ok.clone()
                },
                "checks[0].timeout_secs",
            ),
            (
                Job {
                    checks: vec![Check::Http {
                        url: "https://x/".into(),
                        expect_status: 200,
                        body_contains: None,
                        timeout_secs: 5,
                    }],
                    ..ok.clone()
                },
                "plain HTTP",
            ),
            (
                Job {
                    preflight: Preflight {
                        watched_files: vec![FileBaseline {
                            path: "/etc/x".into(),
                            sha256: "ABC".into(),
                        }],
                        ..Preflight::default()
                    },
                    ..ok.clone()
                },
                "preflight.watched_files[0].sha256",
            ),
            (
                Job {
                    idempotency_key: " ".into(),
                    ..ok.clone()
                },
                "idempotency_key is empty",
            ),
        ];
        for (job, expected) in cases {
            let err = job.validate(Scheme::Deb).unwrap_err().to_string();
            assert!(err.contains(expected), "{err} should contain {expected}");
        }
    }

    #[test]
    fn rpm_targets_need_a_release_and_allow_rpm_names() {
        let ok = job(
            JobKind::Update,
            &[
                ("NetworkManager", "1:1.42.2-1.el9"),
                ("python3-file_magic", "5.39-12.el9"),
            ],
        );
        ok.validate(Scheme::Rpm).unwrap();
        // The same names are not Debian package names.
        assert!(ok.validate(Scheme::Deb).is_err());
        let cases: Vec<(Job, &str)> = vec![
            (
                job(JobKind::Update, &[("demo", "1.1")]),
                "targets[0].version",
            ),
            (
                job(JobKind::Update, &[("demo", "1.1-1"), ("lib", "2:3.0-")]),
                "targets[1].version",
            ),
            (job(JobKind::Update, &[("-demo", "1.1-1")]), "must start"),
            (job(JobKind::Update, &[("demo*", "1.1-1")]), "only letters"),
        ];
        for (job, expected) in cases {
            let err = job.validate(Scheme::Rpm).unwrap_err().to_string();
            assert!(err.contains(expected), "{err} should contain {expected}");
        }
        let err = job(JobKind::Update, &[("demo", "1.1")])
            .validate(Scheme::Rpm)
            .unwrap_err()
            .to_string();
        assert!(err.contains("VERSION-RELEASE"), "{err}");
    }

    #[test]
    fn the_package_family_is_optional_in_json() {
        let mut job = job(JobKind::Update, &[("demo", "1.1-1")]);
        let text = serde_json::to_string(&job).unwrap();
        assert!(!text.contains("package_manager"), "{text}");
        job.package_manager = Some(PackageManager::Rpm);
        let text = serde_json::to_string(&job).unwrap();
        assert!(text.contains(r#""package_manager":"rpm""#), "{text}");
        assert_eq!(serde_json::from_str::<Job>(&text).unwrap(), job);
    }

    #[test]
    fn json_shape_is_stable_and_strict() {
        let text = r#"{
            "id": "job-7", "idempotency_key": "cr-12/web1",
            "targets": [{"package": "openssl", "version": "3.0.11-1~deb12u2"}],
            "preflight": {
                "free_space": [{"path": "/var", "min_bytes": 1000000}],
                "backup_check": {"command": ["/usr/local/bin/snap", "--latest"], "max_age_hours": 24},
                "quiesce": [{"type": "unit", "unit": "nginx.service"},
                            {"type": "command", "stop": ["/bin/true"], "start": ["/bin/true"]}]
            },
            "checks": [
                {"type": "systemd-active", "unit": "nginx.service"},
                {"type": "http", "url": "http://127.0.0.1/health", "body_contains": "ok", "timeout_secs": 5},
                {"type": "tcp", "addr": "127.0.0.1:443"},
                {"type": "command", "argv": ["/usr/bin/true"]}
            ],
            "rollback": {"on_failure": "leave", "snapshot_revert": ["/sbin/revert"]}
        }"#;
        let job: Job = serde_json::from_str(text).unwrap();
        job.validate(Scheme::Deb).unwrap();
        assert_eq!(job.kind, JobKind::Update);
        assert_eq!(job.rollback.on_failure, OnFailure::Leave);
        assert_eq!(job.checks[1].timeout_secs(), 5);
        assert_eq!(job.checks[2].timeout_secs(), DEFAULT_TIMEOUT_SECS);
        let Check::Http { expect_status, .. } = &job.checks[1] else {
            panic!("http check")
        };
        assert_eq!(*expect_status, 200);
        let back: Job = serde_json::from_str(&serde_json::to_string(&job).unwrap()).unwrap();
        assert_eq!(back, job);

        let rollback: Job = serde_json::from_str(
            r#"{"id": "j", "idempotency_key": "k", "kind": {"type": "rollback", "of_job": "job-7"},
                "targets": [{"package": "openssl", "version": "3.0.9-1"}]}"#,
        )
        .unwrap();
        assert!(rollback.kind.is_rollback());

        for bad in [
            r#"{"id": "j", "idempotency_key": "k", "targets": [], "retries": 3}"#,
            r#"{"id": "j", "idempotency_key": "k", "targets": [{"package": "a", "version": "1", "arch": "amd64"}]}"#,
            r#"{"id": "j", "idempotency_key": "k", "targets": [], "checks": [{"type": "tcp", "addr": "h:1", "port": 2}]}"#,
            r#"{"id": "j", "idempotency_key": "k", "targets": [], "checks": [{"type": "ping"}]}"#,
        ] {
            assert!(serde_json::from_str::<Job>(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn step_names_round_trip() {
        for step in StepName::ALL {
            assert_eq!(StepName::parse(step.as_str()), Some(step));
            let json = serde_json::to_string(&step).unwrap();
            assert_eq!(json, format!("\"{}\"", step.as_str()));
        }
        assert_eq!(
            serde_json::to_string(&JobOutcome::AlreadyCompliant).unwrap(),
            "\"already-compliant\""
        );
        assert_eq!(
            serde_json::to_string(&JobOutcome::RollbackFailed).unwrap(),
            "\"rollback-failed\""
        );
    }
}
