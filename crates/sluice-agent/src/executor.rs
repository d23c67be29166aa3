//! The job runner: takes a [`Job`] through its steps, journaling each before and after it runs,
//! and answers with a [`JobReport`] built from what it verified.
//!
//! ```text
//! inspect ─(compliant)─> already-compliant
//!    │
//! preflight ─> measure-before ─> quiesce ─> dry-run ─> save-config ─> apply ─> verify
//!                                                                     │ fail    │
//!                     rollback (policy) <─────────────────────────────┴─────────┘
//!                        │                     unquiesce ─> checks ─> measure-after ─> succeeded
//!                     unquiesce ─> rollback-checks        │ fail
//!                        │                                └─> rollback ─> rollback-checks
//!              rolled-back | rollback-failed
//! ```
//!
//! Un-quiesce runs whenever quiesce did, also after a failure and, through [`Executor::recover`],
//! after a crash. The versions in a report are read from the package database (dpkg or rpm)
//! when the report is made, never taken from what the job asked for. The steps are the same
//! for apt and dnf hosts; what differs is behind [`Backend`], chosen from the root's
//! os-release. This module decides the order of steps and the outcome; planning is
//! `sluice_core::job::plan`.

use std::fs::{self, File, OpenOptions};
use std::path::{Path, PathBuf};
use std::sync::{Mutex, MutexGuard};
use std::time::{Duration, Instant, SystemTime};

use jiff::Timestamp;
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};
use sluice_core::job::{
    self, Job, JobOutcome, JobReport, Measurements, OnFailure, Plan, StepName, StepResult,
    StepStatus, Versions,
};

use crate::backend::{Backend, Mode, Request};
use crate::journal::{self, Journal, Record, Replay};
use crate::root::PackageRoot;
use crate::{AgentError, checks, dnf, dpkg, measure, preflight};

/// How the executor runs package commands.
#[derive(Clone, Debug)]
pub struct ExecutorConfig {
    /// Refresh the package lists before the dry run (`apt-get update`,
    /// `dnf makecache --refresh`; default on).
    pub refresh_lists: bool,
    /// Longest an apt-get or dnf run may take before it is killed (default 30 minutes).
    pub apt_timeout: Duration,
    /// Longest a `systemctl` call may take (default 90 seconds).
    pub systemctl_timeout: Duration,
    /// Longest a snapshot-revert command may take when the job sets no timeout (default 10
    /// minutes).
    pub snapshot_revert_timeout: Duration,
}

impl Default for ExecutorConfig {
    fn default() -> Self {
        ExecutorConfig {
            refresh_lists: true,
            apt_timeout: Duration::from_secs(30 * 60),
            systemctl_timeout: Duration::from_secs(90),
            snapshot_revert_timeout: Duration::from_secs(10 * 60),
        }
    }
}

/// Runs jobs on one package root, journaling into one state directory.
#[derive(Clone, Debug)]
pub struct Executor {
    root: PackageRoot,
    /// The package manager, or why the root's family is unknown (every job then fails at
    /// inspect with that reason, nothing changed).
    backend: Result<Backend, String>,
    state_dir: PathBuf,
    config: ExecutorConfig,
}

/// The configuration files saved before a change (the save-config step's detail).
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct SavedConfig {
    /// Conffiles copied, as paths inside the root.
    pub saved: Vec<String>,
    /// Conffiles dpkg lists that did not exist (removed locally).
    pub missing: Vec<String>,
}

impl Executor {
    /// An executor for `root`, journaling under `state_dir`; chooses apt or dnf from the root's
    /// os-release, prepares a private root for it and creates the state directory.
    pub fn new(
        root: PackageRoot,
        state_dir: impl Into<PathBuf>,
        config: ExecutorConfig,
    ) -> Result<Executor, AgentError> {
        let state_dir = state_dir.into();
        let backend = Backend::detect(&root).map_err(|e| e.to_string());
        if let Ok(backend) = backend {
            root.prepare_for(backend.package_manager())?;
        }
        fs::create_dir_all(&state_dir).map_err(|e| AgentError::io("creating", &state_dir, e))?;
        Ok(Executor {
            root,
            backend,
            state_dir,
            config,
        })
    }

    /// The package manager this executor drives, when the root's family is known.
    pub fn backend(&self) -> Result<Backend, AgentError> {
        self.backend.clone().map_err(|reason| AgentError::Root {
            root: self.root.dir().to_path_buf(),
            reason,
        })
    }

    /// The package root.
    pub fn root(&self) -> &PackageRoot {
        &self.root
    }

    /// The state directory.
    pub fn state_dir(&self) -> &Path {
        &self.state_dir
    }

    /// Runs a job and reports what happened.
    ///
    /// A job whose idempotency key already ran is not run again: its stored report is the
    /// answer (an interrupted one is reported as interrupted). While another job's journal is
    /// unfinished, no new job starts: [`Executor::recover`] must report it first. A job that
    /// cannot start (state directory locked or unwritable) is reported failed at `inspect`,
    /// with nothing changed and nothing journaled.
    pub fn run(&self, job: &Job) -> JobReport {
        let _lock = match self.lock() {
            Ok(lock) => lock,
            Err(e) => return not_started(job, &e),
        };
        match journal::find_by_key(&self.state_dir, &job.idempotency_key) {
            Ok(Some(replay)) => {
                if let Some(report) = replay.finished() {
                    return report.clone();
                }
                return match self.finish_interrupted(replay) {
                    Ok(report) => report,
                    Err(e) => not_started(job, &e),
                };
            }
            Ok(None) => {}
            Err(e) => return not_started(job, &e),
        }
        match journal::all(&self.state_dir) {
            Err(e) => return not_started(job, &e),
            Ok(replays) => {
                if let Some(open) = replays.iter().find(|r| r.finished().is_none()) {
                    let e = AgentError::Journal {
                        path: open.dir.clone(),
                        reason: format!(
                            "job {} was interrupted and is not recovered yet; recover it first",
                            open.job.id
                        ),
                    };
                    return not_started(job, &e);
                }
            }
        }
        let journal = match Journal::create(&self.state_dir, job, Timestamp::now()) {
            Ok(journal) => journal,
            Err(e) => return not_started(job, &e),
        };
        let mut run = Run::new(self, job, journal);
        let outcome = run.execute();
        run.finish(outcome, None)
    }

    /// Reports the oldest job the agent did not finish (crash, kill, power loss) as
    /// interrupted, with the step it was in and the versions installed now, after starting
    /// again what it had quiesced. The report is journaled as the job's end, so each
    /// interrupted job is reported once here (and again to a re-delivery of its key).
    pub fn recover(&self) -> Result<Option<JobReport>, AgentError> {
        Ok(self.recover_all()?.into_iter().next())
    }

    /// Like [`Executor::recover`], for every unfinished job, oldest first.
    pub fn recover_all(&self) -> Result<Vec<JobReport>, AgentError> {
        let _lock = self.lock()?;
        let mut reports = Vec::new();
        for replay in journal::all(&self.state_dir)? {
            if replay.finished().is_none() {
                reports.push(self.finish_interrupted(replay)?);
            }
        }
        Ok(reports)
    }

    fn finish_interrupted(&self, replay: Replay) -> Result<JobReport, AgentError> {
        let journal = Journal::reopen(&replay.dir)?;
        let mut run = Run::new(self, &replay.job, journal);
        run.steps = replay.completed_steps();
        if let Some(versions) = replay.versions_before() {
            run.versions_before = versions.clone();
        }
        run.measurements_before = step_detail(&run.steps, StepName::MeasureBefore);
        let interrupted_at = match replay.open_step() {
            Some((step, started_at)) => {
                let (database, audit) = match &self.backend {
                    Ok(backend) => (backend.database(), backend.audit(&self.root)),
                    Err(_) => ("the package database", String::new()),
                };
                let mut message = format!(
                    "the agent stopped while this step ran (crash, kill or power loss); its effect is unknown, the versions below are read from {database} now"
                );
                if !audit.is_empty() {
                    message.push_str(&format!("; {database}: "));
                    message.push_str(&audit);
                }
                run.steps.push(StepResult {
                    step,
                    status: StepStatus::Interrupted,
                    started_at,
                    finished_at: None,
                    message,
                    detail: Value::Null,
                });
                Some(step)
            }
            None => run.steps.last().map(|s| s.step),
        };
        // Start again what quiesce stopped (every hook journaled as stopping, including one a
        // crash interrupted), unless un-quiesce finished.
        let stopping = replay.stopping();
        if !stopping.is_empty() && !replay.completed(StepName::Unquiesce) {
            run.stopped = stopping;
            run.quiesced = true;
            run.step(StepName::Unquiesce, Run::unquiesce);
        }
        Ok(run.finish(JobOutcome::Interrupted, interrupted_at))
    }

    /// Holds `STATE/agent.lock` so that two agent processes never run jobs on one state, and
    /// a process-wide mutex, because `fcntl` locks do not exclude threads of one process.
    fn lock(&self) -> Result<StateLock, AgentError> {
        let guard = IN_PROCESS
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        let path = self.state_dir.join("agent.lock");
        let file = OpenOptions::new()
            .create(true)
            .truncate(false)
            .read(true)
            .write(true)
            .open(&path)
            .map_err(|e| AgentError::io("opening", &path, e))?;
        rustix::fs::fcntl_lock(&file, rustix::fs::FlockOperation::NonBlockingLockExclusive)
            .map_err(|e| AgentError::Journal {
                path: path.clone(),
                reason: format!("another agent process is running jobs here ({e})"),
            })?;
        Ok(StateLock {
            _file: file,
            _guard: guard,
        })
    }
}

/// Serialises jobs within one process.
static IN_PROCESS: Mutex<()> = Mutex::new(());

/// Held while a job or a recovery runs.
struct StateLock {
    _file: File,
    _guard: MutexGuard<'static, ()>,
}

/// A report for a job that could not start: failed at inspect, nothing changed.
fn not_started(job: &Job, error: &AgentError) -> JobReport {
    let now = Timestamp::now();
    JobReport {
        job_id: job.id.clone(),
        idempotency_key: job.idempotency_key.clone(),
        outcome: JobOutcome::Failed,
        steps: vec![StepResult {
            step: StepName::Inspect,
            status: StepStatus::Failed,
            started_at: now,
            finished_at: Some(now),
            message: format!("not started, nothing changed: {error}"),
            detail: Value::Null,
        }],
        versions_before: Versions::new(),
        versions_after: Versions::new(),
        unsettled: Default::default(),
        measurements_before: None,
        measurements_after: None,
        interrupted_at: None,
    }
}

fn step_detail<T: for<'de> Deserialize<'de>>(steps: &[StepResult], name: StepName) -> Option<T> {
    let step = steps.iter().rev().find(|s| s.step == name)?;
    serde_json::from_value(step.detail.clone()).ok()
}

#[derive(Clone, Debug, Default, Serialize, Deserialize)]
struct QuiesceDetail {
    items: Vec<preflight::Item>,
    /// Indices of the hooks to start again.
    stopped: Vec<usize>,
}

/// What a step body returns.
struct Step {
    status: StepStatus,
    message: String,
    detail: Value,
}

impl Step {
    fn ok(message: impl Into<String>) -> Step {
        Step {
            status: StepStatus::Ok,
            message: message.into(),
            detail: Value::Null,
        }
    }

    fn failed(message: impl Into<String>) -> Step {
        Step {
            status: StepStatus::Failed,
            message: message.into(),
            detail: Value::Null,
        }
    }

    fn skipped(message: impl Into<String>) -> Step {
        Step {
            status: StepStatus::Skipped,
            message: message.into(),
            detail: Value::Null,
        }
    }

    fn detail(mut self, detail: impl Serialize) -> Step {
        self.detail = serde_json::to_value(detail).unwrap_or(Value::Null);
        self
    }
}

/// One job in progress.
struct Run<'a> {
    exec: &'a Executor,
    /// Apt when the family is unknown: inspect fails before any package command runs.
    backend: Backend,
    job: &'a Job,
    journal: Journal,
    steps: Vec<StepResult>,
    plan: Plan,
    /// Versions before the change of every package it touches (targets and what apt adds).
    versions_before: Versions,
    measurements_before: Option<Measurements>,
    measurements_after: Option<Measurements>,
    saved: SavedConfig,
    /// Quiesce hooks (indices) to start again.
    stopped: Vec<usize>,
    quiesced: bool,
}

impl<'a> Run<'a> {
    fn new(exec: &'a Executor, job: &'a Job, journal: Journal) -> Run<'a> {
        Run {
            exec,
            backend: exec.backend.as_ref().copied().unwrap_or(Backend::Apt),
            job,
            journal,
            steps: Vec::new(),
            plan: Plan {
                changes: Vec::new(),
            },
            versions_before: Versions::new(),
            measurements_before: None,
            measurements_after: None,
            saved: SavedConfig::default(),
            stopped: Vec::new(),
            quiesced: false,
        }
    }

    fn root(&self) -> &'a PackageRoot {
        &self.exec.root
    }

    fn mode(&self) -> Mode {
        if self.job.kind.is_rollback() {
            Mode::Rollback
        } else {
            Mode::Update
        }
    }

    /// Journals `before`, runs the body, journals `after`. A journal that cannot be written
    /// fails the step: without a record the agent could not tell later what happened.
    fn step(&mut self, name: StepName, body: impl FnOnce(&mut Self) -> Step) -> StepStatus {
        let started_at = Timestamp::now();
        if let Err(e) = self.journal.before(name, started_at) {
            self.steps.push(StepResult {
                step: name,
                status: StepStatus::Failed,
                started_at,
                finished_at: Some(Timestamp::now()),
                message: format!("not run: {e}"),
                detail: Value::Null,
            });
            return StepStatus::Failed;
        }
        let outcome = body(self);
        let mut result = StepResult {
            step: name,
            status: outcome.status,
            started_at,
            finished_at: Some(Timestamp::now()),
            message: outcome.message,
            detail: outcome.detail,
        };
        if let Err(e) = self.journal.after(&result) {
            result.status = StepStatus::Failed;
            result.message = format!("{}; then {e}", result.message);
        }
        let status = result.status;
        self.steps.push(result);
        status
    }

    fn record_versions(&mut self) -> Result<(), AgentError> {
        self.journal.append(&Record::Recorded {
            versions_before: self.versions_before.clone(),
        })
    }

    fn execute(&mut self) -> JobOutcome {
        use StepStatus::Failed;
        if self.step(StepName::Inspect, Run::inspect) == Failed {
            return JobOutcome::Failed;
        }
        if self.plan.is_compliant() {
            return JobOutcome::AlreadyCompliant;
        }
        if self.step(StepName::Preflight, Run::preflight) == Failed {
            return JobOutcome::Failed;
        }
        self.step(StepName::MeasureBefore, |run| {
            let measured = measure::take(&run.job.checks, Timestamp::now());
            run.measurements_before = Some(measured.clone());
            Step::ok(describe_measurements(&measured)).detail(measured)
        });
        let mut failed_at = None;
        for (name, body) in [
            (StepName::Quiesce, Run::quiesce as fn(&mut Self) -> Step),
            (StepName::DryRun, Run::dry_run),
            (StepName::SaveConfig, Run::save_config),
            (StepName::Apply, Run::apply),
            (StepName::Verify, Run::verify),
        ] {
            if self.step(name, body) == Failed {
                failed_at = Some(name);
                break;
            }
        }
        let rollback = self.job.rollback.on_failure == OnFailure::Rollback;
        match failed_at {
            Some(StepName::Apply | StepName::Verify) => {
                // Packages may have changed: roll back while still quiesced.
                if rollback {
                    let rolled = self.step(StepName::Rollback, Run::rollback);
                    self.step(StepName::Unquiesce, Run::unquiesce);
                    let checked = self.step(StepName::RollbackChecks, Run::checks);
                    return rollback_outcome(rolled, checked);
                }
                self.step(StepName::Unquiesce, Run::unquiesce);
                JobOutcome::Failed
            }
            Some(_) => {
                self.step(StepName::Unquiesce, Run::unquiesce);
                JobOutcome::Failed
            }
            None => {
                let unquiesced = self.step(StepName::Unquiesce, Run::unquiesce);
                let checked = self.step(StepName::Checks, Run::checks);
                self.step(StepName::MeasureAfter, |run| {
                    let measured = measure::take(&run.job.checks, Timestamp::now());
                    run.measurements_after = Some(measured.clone());
                    Step::ok(describe_measurements(&measured)).detail(measured)
                });
                if unquiesced != Failed && checked != Failed {
                    return JobOutcome::Succeeded;
                }
                if !rollback {
                    return JobOutcome::Failed;
                }
                let rolled = self.step(StepName::Rollback, Run::rollback);
                let checked = self.step(StepName::RollbackChecks, Run::checks);
                rollback_outcome(rolled, checked)
            }
        }
    }

    fn inspect(&mut self) -> Step {
        let backend = match self.exec.backend() {
            Ok(backend) => backend,
            Err(e) => return Step::failed(format!("refused, nothing changed: {e}")),
        };
        if let Some(family) = self.job.package_manager
            && family != backend.package_manager()
        {
            return Step::failed(format!(
                "refused, nothing changed: job {} is for {} hosts, but this host is {} (from its os-release)",
                self.job.id,
                family_name(family),
                family_name(backend.package_manager()),
            ));
        }
        if let Err(e) = self.job.validate(backend.scheme()) {
            return Step::failed(e.to_string());
        }
        let states = match backend.states(self.root()) {
            Ok(states) => states,
            Err(e) => return Step::failed(e.to_string()),
        };
        self.versions_before = dpkg::versions_of(&states, self.job.packages());
        if let Err(e) = self.record_versions() {
            return Step::failed(e.to_string());
        }
        let unsettled = dpkg::unsettled_of(&states, self.job.packages());
        if !unsettled.is_empty() {
            let list: Vec<String> = unsettled
                .iter()
                .map(|(p, s)| format!("{p} ({s})"))
                .collect();
            return Step::failed(format!(
                "{} left {} unfinished; repair it ({}) before a job changes it",
                backend.database(),
                list.join(", "),
                backend.repair_hint()
            ));
        }
        let installed = states
            .iter()
            .filter(|(_, s)| s.is_installed())
            .map(|(name, s)| (name.clone(), s.version.clone()))
            .collect();
        match job::plan(backend.scheme(), &installed, self.job) {
            Err(e) => Step::failed(e.to_string()),
            Ok(plan) => {
                self.plan = plan;
                let message = if self.plan.is_compliant() {
                    "already compliant: every target is installed".to_owned()
                } else {
                    let changes: Vec<String> = self
                        .plan
                        .changes
                        .iter()
                        .map(|c| {
                            format!(
                                "{} {} -> {}",
                                c.package,
                                c.from.as_deref().unwrap_or("(none)"),
                                c.to
                            )
                        })
                        .collect();
                    format!("to change: {}", changes.join(", "))
                };
                Step::ok(message).detail(&self.plan)
            }
        }
    }

    fn preflight(&mut self) -> Step {
        let root = self.root();
        let pre = &self.job.preflight;
        let backend = self.backend;
        let mut items = vec![preflight::locks_free_for(root, backend)];
        items.extend(preflight::free_space(root, &pre.free_space));
        let (check, passed, message) = backend.health(root, self.exec.config.apt_timeout);
        items.push(preflight::Item {
            check,
            passed,
            message,
        });
        if let Some(backup) = &pre.backup_check {
            items.push(preflight::backup(root, backup, SystemTime::now()));
        }
        items.extend(preflight::watched_files(root, &pre.watched_files));
        let failures: Vec<String> = items
            .iter()
            .filter(|i| !i.passed)
            .map(|i| format!("{}: {}", i.check, i.message))
            .collect();
        if failures.is_empty() {
            Step::ok(format!("{} checks passed", items.len())).detail(items)
        } else {
            Step::failed(failures.join("; ")).detail(items)
        }
    }

    fn quiesce(&mut self) -> Step {
        let hooks = &self.job.preflight.quiesce;
        if hooks.is_empty() {
            return Step::skipped("nothing to quiesce");
        }
        self.quiesced = true;
        let mut detail = QuiesceDetail::default();
        for (index, hook) in hooks.iter().enumerate() {
            let timeout = self.exec.config.systemctl_timeout;
            if !preflight::needs_stop(hook, timeout) {
                continue;
            }
            if let Err(e) = self.journal.append(&Record::Stopping { hook: index }) {
                return Step::failed(e.to_string()).detail(detail);
            }
            detail.stopped.push(index);
            self.stopped.push(index);
            let item = preflight::stop(self.root(), hook, timeout);
            let passed = item.passed;
            detail.items.push(item);
            if !passed {
                let message = detail
                    .items
                    .last()
                    .map(|i| format!("{}: {}", i.check, i.message))
                    .unwrap_or_default();
                return Step::failed(message).detail(detail);
            }
        }
        Step::ok(format!(
            "stopped {} of {} hooks",
            detail.stopped.len(),
            hooks.len()
        ))
        .detail(detail)
    }

    fn unquiesce(&mut self) -> Step {
        if !self.quiesced {
            return Step::skipped("nothing was quiesced");
        }
        let hooks = &self.job.preflight.quiesce;
        let mut items = Vec::new();
        for &index in self.stopped.iter().rev() {
            if let Some(hook) = hooks.get(index) {
                items.push(preflight::start(
                    self.root(),
                    hook,
                    self.exec.config.systemctl_timeout,
                ));
            }
        }
        let failures: Vec<String> = items
            .iter()
            .filter(|i| !i.passed)
            .map(|i| format!("{}: {}", i.check, i.message))
            .collect();
        self.stopped.clear();
        if failures.is_empty() {
            Step::ok(format!("started {} hooks again", items.len())).detail(items)
        } else {
            Step::failed(failures.join("; ")).detail(items)
        }
    }

    fn request(&self) -> Request {
        Request {
            install: self
                .plan
                .changes
                .iter()
                .map(|c| (c.package.clone(), c.to.clone()))
                .collect(),
            remove: Vec::new(),
        }
    }

    fn dry_run(&mut self) -> Step {
        let root = self.root();
        let backend = self.backend;
        let tool = backend.tool();
        let config = &self.exec.config;
        if config.refresh_lists {
            match backend.refresh(root, config.apt_timeout) {
                Err(e) => return Step::failed(e.to_string()),
                Ok(done) if !done.success() => {
                    let what = match backend {
                        Backend::Apt => "apt-get update",
                        Backend::Dnf => "dnf makecache",
                    };
                    return Step::failed(format!("{what}: {}", backend.describe(&done)));
                }
                Ok(_) => {}
            }
        }
        let states = match backend.states(root) {
            Ok(states) => states,
            Err(e) => return Step::failed(e.to_string()),
        };
        let held: Vec<&str> = self
            .plan
            .changes
            .iter()
            .filter(|c| states.get(&c.package).is_some_and(|s| s.is_held()))
            .map(|c| c.package.as_str())
            .collect();
        if !held.is_empty() {
            return Step::failed(format!(
                "held by dpkg (selection \"hold\"), so apt must not change: {}; release the hold (apt-mark unhold) or leave them out of the job",
                held.join(", ")
            ));
        }
        let request = self.request();
        let simulation = match backend.simulate(root, &request, self.mode(), config.apt_timeout) {
            Ok(result) => result,
            Err(e) => return Step::failed(e.to_string()),
        };
        let actions = simulation.actions;
        if !simulation.resolved {
            let what = match backend {
                Backend::Apt => "apt-get -s install",
                Backend::Dnf => "dnf --assumeno",
            };
            return Step::failed(format!("{what}: {}", backend.describe(&simulation.done)));
        }
        let mut problems = Vec::new();
        for (package, version) in &request.install {
            let planned = actions.iter().any(|a| {
                a.installs()
                    && base_name(&a.package) == package
                    && a.to
                        .as_deref()
                        .is_some_and(|to| backend.same_version(to, version))
            });
            if !planned {
                problems.push(format!(
                    "{tool} would not install {}",
                    backend.spec(package, version)
                ));
            }
        }
        let removals: Vec<&str> = actions
            .iter()
            .filter(|a| a.removes())
            .map(|a| a.package.as_str())
            .collect();
        if !removals.is_empty() {
            problems.push(format!(
                "{tool} would remove {}; the job does not ask for removals",
                removals.join(", ")
            ));
        }
        // apt refuses a downgrade itself without --allow-downgrades; dnf install does not.
        let downgrades: Vec<&str> = actions
            .iter()
            .filter(|a| a.action == "downgrade")
            .map(|a| a.package.as_str())
            .collect();
        if !downgrades.is_empty() && self.mode() == Mode::Update {
            problems.push(format!(
                "{tool} would downgrade {}; only a rollback job may downgrade",
                downgrades.join(", ")
            ));
        }
        let skipped: Vec<&str> = actions
            .iter()
            .filter(|a| a.action == "skip")
            .map(|a| a.package.as_str())
            .collect();
        if !skipped.is_empty() {
            problems.push(format!("{tool} would skip {}", skipped.join(", ")));
        }
        if !problems.is_empty() {
            return Step::failed(problems.join("; ")).detail(json!({ "actions": actions }));
        }
        // Record the versions of everything the transaction will touch, for a rollback.
        let touched: Vec<&str> = actions.iter().map(|a| base_name(&a.package)).collect();
        for (name, version) in dpkg::versions_of(&states, touched) {
            self.versions_before.entry(name).or_insert(version);
        }
        if let Err(e) = self.record_versions() {
            return Step::failed(e.to_string());
        }
        let summary: Vec<String> = actions
            .iter()
            .filter(|a| a.installs())
            .map(|a| {
                format!(
                    "{} {} -> {}",
                    a.package,
                    a.from.as_deref().unwrap_or("(none)"),
                    a.to.as_deref().unwrap_or_default()
                )
            })
            .collect();
        Step::ok(format!("{tool} would install: {}", summary.join(", ")))
            .detail(json!({ "actions": actions }))
    }

    fn config_dir(&self) -> PathBuf {
        self.journal.dir().join("config")
    }

    fn save_config(&mut self) -> Step {
        let root = self.root();
        let mut saved = SavedConfig::default();
        let installed: Vec<String> = self
            .versions_before
            .iter()
            .filter(|(_, v)| v.is_some())
            .map(|(p, _)| p.clone())
            .collect();
        let into = self.config_dir();
        for package in &installed {
            let conffiles = match self.backend.config_files(root, package) {
                Ok(files) => files,
                Err(e) => return Step::failed(e.to_string()),
            };
            for path in conffiles {
                let source = root.path(&path);
                if !source.is_file() {
                    saved.missing.push(path.display().to_string());
                    continue;
                }
                let copy = saved_path(&into, &path);
                if let Err(e) = copy_synced(&source, &copy) {
                    return Step::failed(e.to_string());
                }
                saved.saved.push(path.display().to_string());
            }
        }
        self.saved = saved.clone();
        Step::ok(format!(
            "saved {} configuration files of {} packages",
            saved.saved.len(),
            installed.len()
        ))
        .detail(saved)
    }

    fn apply(&mut self) -> Step {
        let request = self.request();
        let backend = self.backend;
        let program = match backend {
            Backend::Apt => "apt-get",
            Backend::Dnf => "dnf",
        };
        // `.rpmnew`/`.rpmsave` files already there, so that a rollback removes only the ones
        // this transaction writes.
        let leftovers_before: Vec<String> = self
            .saved
            .saved
            .iter()
            .chain(&self.saved.missing)
            .flat_map(|p| [format!("{p}.rpmnew"), format!("{p}.rpmsave")])
            .filter(|p| self.root().path(p).exists())
            .collect();
        let started = Instant::now();
        let done = match backend.install(
            self.root(),
            &request,
            self.mode(),
            self.exec.config.apt_timeout,
        ) {
            Ok(done) => done,
            Err(e) => return Step::failed(e.to_string()),
        };
        let seconds = started.elapsed().as_secs_f64();
        // rpm's words on configuration files it kept or replaced (apt keeps them all:
        // `--force-confold`), also from a transaction that failed part way.
        let notes: Vec<ConfigLeftover> = match backend {
            Backend::Apt => Vec::new(),
            Backend::Dnf => dnf::config_notes(&format!("{}\n{}", done.stdout, done.stderr))
                .into_iter()
                .filter(|n| self.root().path(&n.saved_as).exists())
                .map(|note| ConfigLeftover {
                    created: !leftovers_before.contains(&note.saved_as),
                    note,
                })
                .collect(),
        };
        if !done.success() {
            let detail = json!({
                "command": done.command,
                "seconds": seconds,
                "stdout_tail": done.tail_of_stdout(20),
                "stderr_tail": done.tail_of_stderr(20),
                "config_files": notes,
            });
            return Step::failed(format!("{program} install: {}", backend.describe(&done)))
                .detail(detail);
        }
        let detail = json!({ "command": done.command, "seconds": seconds, "config_files": notes });
        let mut message = format!(
            "{program} installed {} in {seconds:.2}s",
            request
                .install
                .iter()
                .map(|(p, v)| backend.spec(p, v))
                .collect::<Vec<_>>()
                .join(" ")
        );
        for leftover in &notes {
            let note = &leftover.note;
            message.push_str(&match note.kind.as_str() {
                "rpmnew" => format!(
                    "; rpm kept the locally changed {} and wrote the package's version as {}",
                    note.path, note.saved_as
                ),
                _ => format!(
                    "; rpm replaced the locally changed {} and saved it as {}",
                    note.path, note.saved_as
                ),
            });
        }
        if let job::JobKind::Rollback {
            of_job: Some(of_job),
        } = &self.job.kind
        {
            match self.restore_config_of(of_job) {
                Ok(count) => message.push_str(&format!(
                    "; restored {count} configuration files saved before job {of_job}"
                )),
                Err(e) => return Step::failed(format!("{message}; but {e}")).detail(detail),
            }
        }
        Step::ok(message).detail(detail)
    }

    /// Restores the configuration files an earlier job saved (for a rollback job), and removes
    /// the `.rpmnew`/`.rpmsave` files that job's transaction wrote.
    fn restore_config_of(&self, job_id: &str) -> Result<usize, AgentError> {
        let replays = journal::all(&self.exec.state_dir)?;
        let Some(replay) = replays.iter().rev().find(|r| r.job.id == job_id) else {
            return Ok(0);
        };
        let steps = replay.completed_steps();
        let Some(saved) = step_detail::<SavedConfig>(&steps, StepName::SaveConfig) else {
            return Ok(0);
        };
        let count = restore(self.root(), &replay.dir.join("config"), &saved)?;
        remove_leftovers(self.root(), &steps)?;
        Ok(count)
    }

    fn verify(&mut self) -> Step {
        let backend = self.backend;
        let states = match backend.states(self.root()) {
            Ok(states) => states,
            Err(e) => return Step::failed(e.to_string()),
        };
        let mut wrong = Vec::new();
        for target in &self.job.targets {
            match states.get(&target.package) {
                Some(state)
                    if state.is_installed()
                        && backend.same_version(&state.version, &target.version) => {}
                Some(state) => wrong.push(format!(
                    "{} is {} {}, expected {}",
                    target.package, state.status, state.version, target.version
                )),
                None => wrong.push(format!(
                    "{} is not installed, expected {}",
                    target.package, target.version
                )),
            }
        }
        if !wrong.is_empty() {
            return Step::failed(wrong.join("; "));
        }
        // The files on disk must be the ones the packages installed (configuration files may
        // differ: an operator's edit is kept on purpose).
        let packages: Vec<String> = self.job.packages().map(str::to_owned).collect();
        let problems = match backend.verify_files(self.root(), &packages) {
            Ok(problems) => problems,
            Err(e) => return Step::failed(e.to_string()),
        };
        let damaged: Vec<String> = problems
            .iter()
            .filter(|p| p.is_damage())
            .map(|p| format!("{} ({})", p.path, p.flags))
            .collect();
        let verifier = match backend {
            Backend::Apt => "dpkg --verify",
            Backend::Dnf => "rpm -V",
        };
        let detail = json!({ "files": problems });
        if !damaged.is_empty() {
            return Step::failed(format!(
                "{verifier}: installed files differ from the packages: {}",
                damaged.join(", ")
            ))
            .detail(detail);
        }
        let mut message = format!(
            "{} reports every target installed: {}; {verifier}: files intact",
            backend.database(),
            self.job
                .targets
                .iter()
                .map(|t| format!("{} {}", t.package, t.version))
                .collect::<Vec<_>>()
                .join(", ")
        );
        let edited: Vec<&str> = problems
            .iter()
            .filter(|p| p.config)
            .map(|p| p.path.as_str())
            .collect();
        if !edited.is_empty() {
            message.push_str(&format!(
                " (locally changed configuration: {})",
                edited.join(", ")
            ));
        }
        Step::ok(message).detail(detail)
    }

    fn checks(&mut self) -> Step {
        if self.job.checks.is_empty() {
            return Step::skipped("no checks");
        }
        let results: Vec<_> = self
            .job
            .checks
            .iter()
            .map(|check| checks::run(self.root(), check))
            .collect();
        let failures: Vec<String> = results
            .iter()
            .filter(|r| !r.passed)
            .map(|r| format!("{}: {}", r.check, r.message))
            .collect();
        if failures.is_empty() {
            Step::ok(format!("{} checks passed", results.len())).detail(results)
        } else {
            Step::failed(failures.join("; ")).detail(results)
        }
    }

    fn rollback(&mut self) -> Step {
        let root = self.root();
        let backend = self.backend;
        let mut done_parts = Vec::new();
        let mut failures = Vec::new();
        let states = match backend.states(root) {
            Ok(states) => states,
            Err(e) => return Step::failed(e.to_string()),
        };
        let mut request = Request::default();
        for (package, before) in &self.versions_before {
            let now = states.get(package);
            match before {
                Some(version) => {
                    let current = now.filter(|s| s.is_installed()).map(|s| s.version.as_str());
                    if !current.is_some_and(|c| backend.same_version(c, version)) {
                        request.install.push((package.clone(), version.clone()));
                    }
                }
                None => {
                    if now
                        .is_some_and(|s| s.status != "config-files" && s.status != "not-installed")
                    {
                        request.remove.push(package.clone());
                    }
                }
            }
        }
        let program = match backend {
            Backend::Apt => "apt-get",
            Backend::Dnf => "dnf",
        };
        if !request.is_empty() {
            match backend.install(root, &request, Mode::Rollback, self.exec.config.apt_timeout) {
                Err(e) => failures.push(e.to_string()),
                Ok(done) if !done.success() => {
                    failures.push(format!(
                        "{program} install (rollback): {}",
                        backend.describe(&done)
                    ));
                }
                Ok(_) => done_parts.push(format!(
                    "{program} restored {}",
                    request
                        .install
                        .iter()
                        .map(|(p, v)| backend.spec(p, v))
                        .chain(request.remove.iter().map(|p| format!("{p} (removed)")))
                        .collect::<Vec<_>>()
                        .join(" ")
                )),
            }
        }
        match restore(root, &self.config_dir(), &self.saved) {
            Ok(count) => done_parts.push(format!("restored {count} configuration files")),
            Err(e) => failures.push(e.to_string()),
        }
        match remove_leftovers(root, &self.steps) {
            Ok(0) => {}
            Ok(count) => done_parts.push(format!(
                "removed {count} .rpmnew/.rpmsave files the update wrote"
            )),
            Err(e) => failures.push(e.to_string()),
        }
        if let Some(argv) = &self.job.rollback.snapshot_revert {
            let timeout = self
                .job
                .rollback
                .snapshot_revert_timeout_secs
                .map(|s| Duration::from_secs(u64::from(s)))
                .unwrap_or(self.exec.config.snapshot_revert_timeout);
            let (passed, message) = checks::run_command(root, argv, timeout);
            if passed {
                done_parts.push("snapshot reverted".to_owned());
            } else {
                failures.push(format!("snapshot revert ({}): {message}", argv.join(" ")));
            }
        }
        // Verify against the database, not against what apt or dnf said.
        match backend.states(root) {
            Err(e) => failures.push(e.to_string()),
            Ok(states) => {
                let now =
                    dpkg::versions_of(&states, self.versions_before.keys().map(String::as_str));
                for (package, before) in &self.versions_before {
                    let after = now.get(package).cloned().flatten();
                    let same = match (before, &after) {
                        (Some(b), Some(a)) => backend.same_version(a, b),
                        (None, None) => true,
                        _ => false,
                    };
                    if !same {
                        failures.push(format!(
                            "{package} is {}, recorded before the change: {}",
                            after.as_deref().unwrap_or("not installed"),
                            before.as_deref().unwrap_or("not installed")
                        ));
                    }
                }
            }
        }
        let detail = json!({ "request": {
            "install": request.install.iter().map(|(p, v)| backend.spec(p, v)).collect::<Vec<_>>(),
            "remove": request.remove,
        }});
        if failures.is_empty() {
            Step::ok(done_parts.join("; ")).detail(detail)
        } else {
            Step::failed(failures.join("; ")).detail(detail)
        }
    }

    fn finish(mut self, outcome: JobOutcome, interrupted_at: Option<StepName>) -> JobReport {
        let mut packages: Vec<String> = self.versions_before.keys().cloned().collect();
        for target in &self.job.targets {
            if !packages.contains(&target.package) {
                packages.push(target.package.clone());
            }
        }
        let states = match self.exec.backend {
            Ok(backend) => backend.states(self.root()),
            Err(_) => Ok(Default::default()),
        };
        let (versions_after, unsettled) = match states {
            Ok(states) => (
                dpkg::versions_of(&states, packages.iter().map(String::as_str)),
                dpkg::unsettled_of(&states, packages.iter().map(String::as_str)),
            ),
            Err(_) => Default::default(),
        };
        let report = JobReport {
            job_id: self.job.id.clone(),
            idempotency_key: self.job.idempotency_key.clone(),
            outcome,
            steps: std::mem::take(&mut self.steps),
            versions_before: std::mem::take(&mut self.versions_before),
            versions_after,
            unsettled,
            measurements_before: self.measurements_before.take(),
            measurements_after: self.measurements_after.take(),
            interrupted_at,
        };
        // A journal that cannot take the last record leaves the job unfinished on disk:
        // recovery will report it as interrupted, which is the truth as far as the disk knows.
        let _ = self.journal.append(&Record::JobFinished {
            report: report.clone(),
        });
        report
    }
}

fn rollback_outcome(rolled: StepStatus, checked: StepStatus) -> JobOutcome {
    if rolled == StepStatus::Ok && checked != StepStatus::Failed {
        JobOutcome::RolledBack
    } else {
        JobOutcome::RollbackFailed
    }
}

fn describe_measurements(m: &Measurements) -> String {
    let load = m
        .load
        .map(|[one, ..]| format!("load {one:.2}"))
        .unwrap_or_else(|| "load unknown".to_owned());
    let mem = m
        .mem_available_bytes
        .map(|b| format!("{:.0} MiB available", b as f64 / 1_048_576.0))
        .unwrap_or_else(|| "memory unknown".to_owned());
    format!("{load}, {mem}, {} probes", m.probes.len())
}

/// `libc6:amd64` → `libc6`.
fn base_name(package: &str) -> &str {
    package.split(':').next().unwrap_or(package)
}

/// A `.rpmnew`/`.rpmsave` file a transaction wrote, and whether it was new (only those are
/// removed by a rollback).
#[derive(Clone, Debug, Serialize, Deserialize)]
struct ConfigLeftover {
    #[serde(flatten)]
    note: dnf::ConfigNote,
    created: bool,
}

/// Removes the `.rpmnew`/`.rpmsave` files the apply step among `steps` created; returns how
/// many. A rollback puts the saved configuration back, and these would describe a version no
/// longer installed.
fn remove_leftovers(root: &PackageRoot, steps: &[StepResult]) -> Result<usize, AgentError> {
    let Some(apply) = steps.iter().rev().find(|s| s.step == StepName::Apply) else {
        return Ok(0);
    };
    let leftovers: Vec<ConfigLeftover> = apply
        .detail
        .get("config_files")
        .and_then(|v| serde_json::from_value(v.clone()).ok())
        .unwrap_or_default();
    let mut removed = 0;
    for leftover in leftovers.iter().filter(|l| l.created) {
        let path = root.path(&leftover.note.saved_as);
        match fs::remove_file(&path) {
            Ok(()) => removed += 1,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(e) => return Err(AgentError::io("removing", path, e)),
        }
    }
    Ok(removed)
}

/// The family's name in messages.
fn family_name(family: sluice_core::inventory::host::PackageManager) -> &'static str {
    match family {
        sluice_core::inventory::host::PackageManager::Dpkg => "dpkg (apt)",
        sluice_core::inventory::host::PackageManager::Rpm => "rpm (dnf)",
    }
}

fn saved_path(dir: &Path, inside: &Path) -> PathBuf {
    dir.join(inside.strip_prefix("/").unwrap_or(inside))
}

fn copy_synced(from: &Path, to: &Path) -> Result<(), AgentError> {
    if let Some(parent) = to.parent() {
        fs::create_dir_all(parent).map_err(|e| AgentError::io("creating", parent, e))?;
    }
    fs::copy(from, to).map_err(|e| AgentError::io("copying", from, e))?;
    File::open(to)
        .and_then(|f| f.sync_all())
        .map_err(|e| AgentError::io("syncing", to, e))
}

/// Copies saved configuration files back into the root; returns how many.
fn restore(root: &PackageRoot, from: &Path, saved: &SavedConfig) -> Result<usize, AgentError> {
    for path in &saved.saved {
        let copy = saved_path(from, Path::new(path));
        copy_synced(&copy, &root.path(path))?;
    }
    Ok(saved.saved.len())
}
