//! Test hook: kill the agent at a chosen journal point, exactly like `kill -9`.
//!
//! `SLUICE_AGENT_FAILPOINT=STEP:before` (or `:after`; several separated by commas) makes the
//! process send itself SIGKILL right after the journal record for that point is on disk: the
//! `before` record is written and the step has not started, or the step has run and its
//! `after` record is written. Crash tests use it to check that recovery reports what really
//! happened. It is read once, at the first journal point; unset, it costs one lookup.

use std::sync::OnceLock;

use sluice_core::job::StepName;

/// The environment variable naming the failpoints.
pub const ENV: &str = "SLUICE_AGENT_FAILPOINT";

/// Before or after a step.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Phase {
    /// The step's `before` record is written; the step has not run.
    Before,
    /// The step ran and its `after` record is written.
    After,
}

impl Phase {
    fn as_str(self) -> &'static str {
        match self {
            Phase::Before => "before",
            Phase::After => "after",
        }
    }
}

fn configured() -> &'static [String] {
    static POINTS: OnceLock<Vec<String>> = OnceLock::new();
    POINTS.get_or_init(|| {
        std::env::var(ENV)
            .map(|v| {
                v.split(',')
                    .map(|p| p.trim().to_owned())
                    .filter(|p| !p.is_empty())
                    .collect()
            })
            .unwrap_or_default()
    })
}

/// Kills the process with SIGKILL when `step:phase` is a configured failpoint.
pub fn hit(step: StepName, phase: Phase) {
    let points = configured();
    if points.is_empty() {
        return;
    }
    let here = format!("{}:{}", step.as_str(), phase.as_str());
    if points.contains(&here) {
        eprintln!("sluice-agent: failpoint {here}: killing myself (SIGKILL)");
        let _ =
            rustix::process::kill_process(rustix::process::getpid(), rustix::process::Signal::KILL);
        // SIGKILL cannot be caught; should delivery be delayed, never run past the point.
        loop {
            std::thread::sleep(std::time::Duration::from_secs(1));
        }
    }
}
