//! `sluice job run --root DIR` on an rpm root (AlmaLinux-like, dnf in a private install root):
//! killed at a journal point, reported interrupted by `sluice job recover` with the versions
//! rpm has, then the job run to success. See the agent's `tests/common/rpm.rs` fixture.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

#[path = "../../sluice-agent/tests/common/mod.rs"]
mod common;
#[path = "../../sluice-agent/tests/common/rpm.rs"]
mod rpm;

use std::os::unix::process::ExitStatusExt;
use std::process::{Command, Output};

use rpm::{RpmFixture, rpm_job};
use sluice_core::job::{JobOutcome, JobReport, StepName};

fn sluice(fx: &RpmFixture, args: &[&str], failpoint: Option<&str>) -> Output {
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

fn report(output: &Output) -> JobReport {
    serde_json::from_slice(&output.stdout).unwrap_or_else(|e| {
        panic!(
            "not a report ({e}): {}\n{}",
            String::from_utf8_lossy(&output.stdout),
            String::from_utf8_lossy(&output.stderr)
        )
    })
}

#[test]
fn a_job_on_an_rpm_root_is_killed_recovered_and_run_again() {
    let fx = RpmFixture::new();
    let job_file = fx.tmp.path().join("job.json");
    let write = |id: &str| {
        let job = rpm_job(id, &[("sluice-demo", "1.1-1")]);
        std::fs::write(&job_file, serde_json::to_string(&job).unwrap()).unwrap();
    };
    write("killed");
    let job = job_file.to_str().unwrap();
    let run = sluice(
        &fx,
        &["job", "run", "--job", job, "--output", "json"],
        Some("apply:after"),
    );
    assert_eq!(run.status.signal(), Some(9), "{run:?}");

    let recover = sluice(&fx, &["job", "recover", "--output", "json"], None);
    assert_eq!(recover.status.code(), Some(1), "{recover:?}");
    let interrupted = report(&recover);
    assert_eq!(interrupted.outcome, JobOutcome::Interrupted);
    assert_eq!(interrupted.interrupted_at, Some(StepName::Apply));
    // dnf finished the transaction before the kill: the report has rpm's version, not the
    // target's by assumption.
    assert_eq!(fx.installed("sluice-demo").as_deref(), Some("0:1.1-1"));
    assert_eq!(
        interrupted
            .versions_after
            .get("sluice-demo")
            .cloned()
            .flatten(),
        fx.installed("sluice-demo")
    );

    // A new job on the recovered host finds it compliant, and says so in the table.
    write("again");
    let run = sluice(&fx, &["job", "run", "--job", job], None);
    let text = String::from_utf8_lossy(&run.stdout);
    assert_eq!(run.status.code(), Some(0), "{text}");
    assert!(text.contains("already-compliant"), "{text}");
    fx.host.assert_untouched();
}
