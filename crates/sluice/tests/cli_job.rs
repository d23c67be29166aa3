//! `sluice job run` killed at every journal point, then `sluice job recover`: the report says
//! interrupted, names the step, carries the versions dpkg has now, and is never a success.
//!
//! The kill is the agent's failpoint (`SLUICE_AGENT_FAILPOINT=STEP:before|after`), a SIGKILL
//! the process sends itself right after the journal record is on disk: the same as `kill -9`
//! at that instant. Each case runs in its own private root (see the agent's test fixture).

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

#[path = "../../sluice-agent/tests/common/mod.rs"]
mod common;

use std::os::unix::process::ExitStatusExt;
use std::process::{Command, Output};

use common::{Fixture, job};
use sluice_core::job::{Check, Job, JobOutcome, JobReport, StepName, StepStatus};

fn sluice(fx: &Fixture, args: &[&str], failpoint: Option<&str>) -> Output {
    let mut command = Command::new(env!("CARGO_BIN_EXE_sluice"));
    command
        .args(args)
        .args(["--root", fx.root_dir.to_str().unwrap()])
        .args(["--state-dir", fx.state.to_str().unwrap()])
        .env_remove("SLUICE_AGENT_FAILPOINT");
    if let Some(point) = failpoint {
        command.env("SLUICE_AGENT_FAILPOINT", point);
    }
    command.output().unwrap()
}

fn write_job(fx: &Fixture, job: &Job) -> String {
    let path = fx.tmp.path().join("job.json");
    std::fs::write(&path, serde_json::to_string_pretty(job).unwrap()).unwrap();
    path.display().to_string()
}

fn parse_report(output: &Output) -> Option<JobReport> {
    serde_json::from_slice(&output.stdout).unwrap_or_else(|e| {
        panic!(
            "not a report ({e}): {}\n{}",
            String::from_utf8_lossy(&output.stdout),
            String::from_utf8_lossy(&output.stderr)
        )
    })
}

/// An upgrade that passes every step (quiesce hook, a check), or with `bad` a release whose
/// health check fails, so that the rollback steps run too.
fn crash_job(fx: &Fixture, bad: bool) -> Job {
    let mut job = job("crash", &[("sluice-demo", if bad { "1.2" } else { "1.1" })]);
    job.preflight.quiesce = vec![fx.quiesce_hook()];
    job.checks = vec![Check::Command {
        argv: vec![fx.health()],
        timeout_secs: 10,
    }];
    job
}

fn crash_at(step: StepName, phase: &str, bad: bool) {
    let fx = Fixture::new();
    let job_file = write_job(&fx, &crash_job(&fx, bad));
    let point = format!("{step}:{phase}");

    let run = sluice(
        &fx,
        &["job", "run", "--job", &job_file, "--output", "json"],
        Some(&point),
    );
    assert_eq!(
        run.status.signal(),
        Some(9),
        "{point}: the agent was not killed: {:?}\n{}",
        run.status,
        String::from_utf8_lossy(&run.stderr)
    );
    assert!(
        run.stdout.is_empty(),
        "{point}: printed a report before dying"
    );

    let recover = sluice(&fx, &["job", "recover", "--output", "json"], None);
    assert_eq!(recover.status.code(), Some(1), "{point}: {recover:?}");
    let report = parse_report(&recover).unwrap_or_else(|| panic!("{point}: no interrupted job"));
    assert_eq!(
        report.outcome,
        JobOutcome::Interrupted,
        "{point}: {report:#?}"
    );
    assert_eq!(report.interrupted_at, Some(step), "{point}: {report:#?}");
    assert!(!report.outcome.is_success());
    let installed = fx.installed("sluice-demo");
    assert_eq!(
        report.versions_after.get("sluice-demo").cloned().flatten(),
        installed,
        "{point}: the report's versions are not dpkg's"
    );
    assert!(installed.is_some(), "{point}: sluice-demo left unfinished");
    let interrupted: Vec<_> = report
        .steps
        .iter()
        .filter(|s| s.status == StepStatus::Interrupted)
        .collect();
    if phase == "before" {
        assert_eq!(interrupted.len(), 1, "{point}: {report:#?}");
        assert_eq!(interrupted[0].step, step);
        assert!(interrupted[0].finished_at.is_none());
    } else {
        assert!(interrupted.is_empty(), "{point}: {report:#?}");
        assert!(
            report
                .steps
                .iter()
                .any(|s| s.step == step && s.status != StepStatus::Interrupted)
        );
    }
    // Whatever quiesce stopped was started again, by the job or by the recovery.
    let calls = fx.quiesce_calls();
    let stops = calls.iter().filter(|c| *c == "stop").count();
    let starts = calls.iter().filter(|c| *c == "start").count();
    assert_eq!(stops, starts, "{point}: quiesce calls {calls:?}");

    // Reported once by recover; the same job delivered again gets the same answer, not a rerun.
    let again = sluice(&fx, &["job", "recover", "--output", "json"], None);
    assert_eq!(again.status.code(), Some(0));
    assert!(parse_report(&again).is_none());
    let dpkg_lines = fx.dpkg_log_lines();
    let rerun = sluice(
        &fx,
        &["job", "run", "--job", &job_file, "--output", "json"],
        None,
    );
    let rerun = parse_report(&rerun).unwrap();
    assert_eq!(rerun.outcome, JobOutcome::Interrupted, "{point}");
    assert_eq!(
        fx.dpkg_log_lines(),
        dpkg_lines,
        "{point}: the job ran again"
    );
    fx.host.assert_untouched();
}

macro_rules! crash_tests {
    ($($name:ident: $step:expr, $bad:expr;)*) => {$(
        #[test]
        fn $name() {
            crash_at($step, "before", $bad);
            crash_at($step, "after", $bad);
        }
    )*};
}

crash_tests! {
    killed_at_inspect: StepName::Inspect, false;
    killed_at_preflight: StepName::Preflight, false;
    killed_at_measure_before: StepName::MeasureBefore, false;
    killed_at_quiesce: StepName::Quiesce, false;
    killed_at_dry_run: StepName::DryRun, false;
    killed_at_save_config: StepName::SaveConfig, false;
    killed_at_apply: StepName::Apply, false;
    killed_at_verify: StepName::Verify, false;
    killed_at_unquiesce: StepName::Unquiesce, false;
    killed_at_checks: StepName::Checks, false;
    killed_at_measure_after: StepName::MeasureAfter, false;
    killed_at_rollback: StepName::Rollback, true;
    killed_at_rollback_checks: StepName::RollbackChecks, true;
}

#[test]
fn apply_killed_leaves_the_new_version_reported_as_it_is() {
    let fx = Fixture::new();
    let job_file = write_job(&fx, &crash_job(&fx, false));
    let run = sluice(
        &fx,
        &["job", "run", "--job", &job_file],
        Some("apply:after"),
    );
    assert_eq!(run.status.signal(), Some(9));
    let recover = sluice(&fx, &["job", "recover", "--output", "json"], None);
    let report = parse_report(&recover).unwrap();
    // apt finished before the kill: 1.1 is installed, but nothing verified or checked it.
    assert_eq!(
        report
            .versions_after
            .get("sluice-demo")
            .cloned()
            .flatten()
            .as_deref(),
        Some("1.1")
    );
    assert_eq!(
        report
            .versions_before
            .get("sluice-demo")
            .cloned()
            .flatten()
            .as_deref(),
        Some("1.0")
    );
    assert!(!report.steps.iter().any(|s| s.step == StepName::Verify));
    // The table names the interruption for people.
    let fx2 = Fixture::new();
    let job_file = write_job(&fx2, &crash_job(&fx2, false));
    sluice(
        &fx2,
        &["job", "run", "--job", &job_file],
        Some("dry-run:before"),
    );
    let table = sluice(&fx2, &["job", "recover"], None);
    let text = String::from_utf8_lossy(&table.stdout);
    assert!(text.contains("interrupted at dry-run"), "{text}");
    assert!(text.contains("INTERRUPTED"), "{text}");
    fx.host.assert_untouched();
}

#[test]
fn a_job_runs_and_reports_from_the_command_line() {
    let fx = Fixture::new();
    let job_file = write_job(&fx, &crash_job(&fx, false));
    let run = sluice(&fx, &["job", "run", "--job", &job_file], None);
    let text = String::from_utf8_lossy(&run.stdout);
    assert_eq!(run.status.code(), Some(0), "{text}");
    assert!(
        text.starts_with("job crash (key key-crash): succeeded"),
        "{text}"
    );
    assert!(text.contains("sluice-demo: 1.0 -> 1.1"), "{text}");
    let none = sluice(&fx, &["job", "recover"], None);
    assert_eq!(none.status.code(), Some(0));
    assert_eq!(
        String::from_utf8_lossy(&none.stdout).trim(),
        "no interrupted job"
    );

    let bad = fx.tmp.path().join("bad.json");
    std::fs::write(
        &bad,
        r#"{"id": "x", "idempotency_key": "k", "targets": [], "colour": 1}"#,
    )
    .unwrap();
    let usage = sluice(&fx, &["job", "run", "--job", bad.to_str().unwrap()], None);
    assert_eq!(usage.status.code(), Some(2));
    let err = String::from_utf8_lossy(&usage.stderr);
    assert!(err.contains("bad.json") && err.contains("colour"), "{err}");
    fx.host.assert_untouched();
}

#[test]
fn killed_by_a_real_signal_in_the_middle_of_a_step() {
    let fx = Fixture::new();
    let mut job = crash_job(&fx, false);
    job.checks = vec![Check::Command {
        argv: vec!["/bin/sleep".into(), "5".into()],
        timeout_secs: 30,
    }];
    let job_file = write_job(&fx, &job);
    let mut child = Command::new(env!("CARGO_BIN_EXE_sluice"))
        .args(["job", "run", "--job", &job_file])
        .args(["--root", fx.root_dir.to_str().unwrap()])
        .args(["--state-dir", fx.state.to_str().unwrap()])
        .env_remove("SLUICE_AGENT_FAILPOINT")
        .stdout(std::process::Stdio::null())
        .spawn()
        .unwrap();
    // Wait until the journal says the checks started, then kill -9.
    let jobs = fx.state.join("jobs");
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(60);
    loop {
        let journal = std::fs::read_dir(&jobs)
            .ok()
            .and_then(|mut entries| entries.next())
            .and_then(|e| std::fs::read_to_string(e.unwrap().path().join("journal.jsonl")).ok())
            .unwrap_or_default();
        if journal.contains(r#""record":"step-before","step":"checks""#) {
            break;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "the job never reached its checks"
        );
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
    let killed = Command::new("kill")
        .args(["-9", &child.id().to_string()])
        .status()
        .unwrap();
    assert!(killed.success());
    assert_eq!(child.wait().unwrap().signal(), Some(9));

    let recover = sluice(&fx, &["job", "recover", "--output", "json"], None);
    let report = parse_report(&recover).unwrap();
    assert_eq!(report.outcome, JobOutcome::Interrupted);
    assert_eq!(report.interrupted_at, Some(StepName::Checks));
    let last = report.steps.last().unwrap();
    assert_eq!(
        (last.step, last.status),
        (StepName::Checks, StepStatus::Interrupted)
    );
    // Installed but never checked: 1.1 is reported as installed, the job as interrupted.
    assert_eq!(
        report
            .versions_after
            .get("sluice-demo")
            .cloned()
            .flatten()
            .as_deref(),
        Some("1.1")
    );
    fx.host.assert_untouched();
}
