//! `sluice job`: run a job file on this machine without a server, and report a job an earlier
//! run did not finish.
//!
//! For operators trying a job before a rollout, and for the crash tests. The work is
//! `sluice_agent::Executor`'s; this module reads the job file, picks the package root and
//! prints the report.
//!
//! Exit status: 0 when the job succeeded or the host was already compliant (for `recover`:
//! when no job was interrupted), 1 when it failed, was rolled back or was interrupted, 2 on a
//! usage or input error.

use std::path::{Path, PathBuf};
use std::process::ExitCode;

use anyhow::Context;
use sluice_agent::{Executor, ExecutorConfig, PackageRoot};
use sluice_core::job::{Job, JobReport, StepStatus};

/// `sluice job …`.
#[derive(Debug, clap::Subcommand)]
pub enum JobCommand {
    /// Run a job file (JSON, the agent protocol's job shape) and print its report.
    Run(RunArgs),
    /// Print the report of a job an earlier run did not finish (crash, kill), if any.
    Recover(RecoverArgs),
}

/// Where the job runs.
#[derive(Debug, clap::Args)]
pub struct Place {
    /// Manage the packages of this private root instead of the machine's own: apt and dpkg,
    /// or dnf and rpm (chosen by DIR/etc/os-release), act on DIR only.
    #[arg(long, value_name = "DIR")]
    pub root: Option<PathBuf>,

    /// Directory for the journal and the saved configuration files.
    #[arg(long, value_name = "DIR")]
    pub state_dir: PathBuf,

    /// Output format.
    #[arg(short, long, value_enum, default_value_t = OutputFormat::Table)]
    pub output: OutputFormat,
}

/// Arguments of `sluice job run`.
#[derive(Debug, clap::Args)]
pub struct RunArgs {
    /// The job file.
    #[arg(long, value_name = "FILE")]
    pub job: PathBuf,

    /// Skip refreshing the package lists (`apt-get update`, `dnf makecache`) before the dry
    /// run.
    #[arg(long)]
    pub no_refresh: bool,

    #[command(flatten)]
    pub place: Place,
}

/// Arguments of `sluice job recover`.
#[derive(Debug, clap::Args)]
pub struct RecoverArgs {
    #[command(flatten)]
    pub place: Place,
}

/// How reports are printed.
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum OutputFormat {
    /// Steps and versions for people.
    Table,
    /// The report as JSON (`null` from `recover` when no job was interrupted).
    Json,
}

/// Runs `sluice job`.
pub fn run(command: JobCommand) -> anyhow::Result<ExitCode> {
    match command {
        JobCommand::Run(args) => {
            let job = read_job(&args.job)?;
            let config = ExecutorConfig {
                refresh_lists: !args.no_refresh,
                ..ExecutorConfig::default()
            };
            let executor = executor(&args.place, config)?;
            let report = executor.run(&job);
            print(args.place.output, Some(&report))?;
            Ok(exit_code(Some(&report)))
        }
        JobCommand::Recover(args) => {
            let executor = executor(&args.place, ExecutorConfig::default())?;
            let report = executor.recover().context("recovering")?;
            print(args.place.output, report.as_ref())?;
            Ok(exit_code(report.as_ref()))
        }
    }
}

fn read_job(path: &Path) -> anyhow::Result<Job> {
    let text =
        std::fs::read_to_string(path).with_context(|| format!("reading {}", path.display()))?;
    serde_json::from_str(&text).with_context(|| format!("job file {}", path.display()))
}

fn executor(place: &Place, config: ExecutorConfig) -> anyhow::Result<Executor> {
    let root = match &place.root {
        None => PackageRoot::Host,
        Some(dir) => {
            let dir =
                std::path::absolute(dir).with_context(|| format!("--root {}", dir.display()))?;
            PackageRoot::private(dir)?
        }
    };
    Ok(Executor::new(root, &place.state_dir, config)?)
}

fn exit_code(report: Option<&JobReport>) -> ExitCode {
    match report {
        None => ExitCode::SUCCESS,
        Some(report) if report.outcome.is_success() => ExitCode::SUCCESS,
        Some(_) => ExitCode::from(1),
    }
}

fn print(format: OutputFormat, report: Option<&JobReport>) -> anyhow::Result<()> {
    let text = match format {
        OutputFormat::Json => serde_json::to_string_pretty(&report)?,
        OutputFormat::Table => match report {
            None => "no interrupted job".to_owned(),
            Some(report) => table(report),
        },
    };
    println!("{text}");
    Ok(())
}

fn table(report: &JobReport) -> String {
    let mut out = format!(
        "job {} (key {}): {}",
        report.job_id, report.idempotency_key, report.outcome
    );
    if let Some(step) = report.interrupted_at {
        out.push_str(&format!(" at {step}"));
    }
    out.push('\n');
    for step in &report.steps {
        let status = match step.status {
            StepStatus::Ok => "ok",
            StepStatus::Failed => "FAILED",
            StepStatus::Skipped => "skipped",
            StepStatus::Interrupted => "INTERRUPTED",
        };
        let seconds = step
            .finished_at
            .and_then(|end| end.duration_since(step.started_at).try_into().ok())
            .map(|d: std::time::Duration| format!("{:.2}s", d.as_secs_f64()))
            .unwrap_or_else(|| "-".to_owned());
        out.push_str(&format!(
            "  {:<16} {:<11} {:>7}  {}\n",
            step.step.as_str(),
            status,
            seconds,
            step.message.replace('\n', " | ")
        ));
    }
    for (package, before) in &report.versions_before {
        let after = report.versions_after.get(package).cloned().flatten();
        out.push_str(&format!(
            "  {package}: {} -> {}\n",
            before.as_deref().unwrap_or("(not installed)"),
            after.as_deref().unwrap_or("(not installed)")
        ));
    }
    for (package, state) in &report.unsettled {
        out.push_str(&format!(
            "  {package}: left {state} by the package manager\n"
        ));
    }
    out.trim_end().to_owned()
}
