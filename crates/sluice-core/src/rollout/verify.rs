//! Whether a host's update holds: its job's report and a fresh inventory must show the
//! bundle's targets, probes must not have slowed beyond the change's limit, and a pending
//! reboot keeps the host waiting. Also what a rollback job's report means, and each ring's
//! comparison with its pre-update baseline.
//!
//! Pure: the server fetches reports and inventories and passes the time in. Times compared
//! here are the store's (system) stamps: a job's end, an inventory's receipt, and the system's
//! `now` (see the two-clock rule in the server's `rollouts` module).

use std::collections::BTreeMap;

use jiff::{SignedDuration, Timestamp};

use super::track::TrackPhase;
use crate::job::{JobOutcome, JobReport, Measurements, Versions};

/// How long a host whose job succeeded may wait for a fresh inventory before it counts as
/// failed (the agent sends one right after its report; this covers an agent that died).
pub const VERIFY_TIMEOUT: SignedDuration = SignedDuration::from_mins(3);

/// How long after a job's end the server waits for the agent's own inventory before asking.
pub const INVENTORY_GRACE: SignedDuration = SignedDuration::from_secs(10);

/// How often a host waiting for a reboot is asked for an inventory again.
pub const REBOOT_POLL: SignedDuration = SignedDuration::from_secs(60);

/// Without a limit in the change's rollback criteria, a probe twice as slow is flagged.
pub const DEFAULT_LATENCY_FACTOR: f64 = 2.0;

/// The bundle packages (those installed on the host when the rollout started) whose reported
/// version is not the target, described; `None` when all are at their targets.
pub fn wrong_versions(
    targets: &BTreeMap<String, String>,
    installed_at_start: Option<&BTreeMap<String, String>>,
    versions: &Versions,
) -> Option<String> {
    let wrong: Vec<String> = targets
        .iter()
        .filter(|(package, _)| installed_at_start.is_some_and(|v| v.contains_key(*package)))
        .filter_map(|(package, target)| {
            let now = versions.get(package).and_then(|v| v.as_deref());
            (now != Some(target.as_str())).then(|| {
                format!(
                    "{package} at {}, not {target}",
                    now.unwrap_or("(not installed)")
                )
            })
        })
        .collect();
    (!wrong.is_empty()).then(|| wrong.join(", "))
}

/// Probes slower after the update than before by more than `limit`, described.
pub fn latency_regression(report: &JobReport, limit: f64) -> Option<String> {
    let (Some(before), Some(after)) = (&report.measurements_before, &report.measurements_after)
    else {
        return None;
    };
    let mut found = Vec::new();
    for (b, a) in before.probes.iter().zip(&after.probes) {
        if let (Some(b_ms), Some(a_ms)) = (b.millis, a.millis)
            && b_ms > 0.0
            && a_ms / b_ms > limit
        {
            found.push(format!(
                "{} {:.1} ms → {:.1} ms (×{:.1}, limit ×{limit})",
                a.probe,
                b_ms,
                a_ms,
                a_ms / b_ms
            ));
        }
    }
    (!found.is_empty()).then(|| found.join("; "))
}

/// The failed step of a report in words, or its outcome when no step failed.
pub fn failed_step(report: &JobReport) -> String {
    match report.failed_step() {
        Some(step) => format!("{} failed: {}", step.step, step.message),
        None => report.outcome.as_str().to_owned(),
    }
}

/// What an update job's report means for its host.
#[derive(Clone, Debug, PartialEq)]
pub enum UpdateVerdict {
    /// The job says it succeeded but its report shows other versions: failed.
    WrongVersions {
        /// The host's note.
        note: String,
    },
    /// Probes slowed beyond the change's own latency limit: failed by its rollback criteria.
    TooSlow {
        /// The regression, in words.
        regression: String,
        /// The host's note.
        note: String,
    },
    /// The job succeeded: wait for a fresh inventory.
    Verify {
        /// A regression beyond the default factor, only flagged (the change set no limit).
        regression: Option<String>,
        /// Ask for an inventory now: the agent sends none by itself after a job that changed
        /// nothing.
        ask_now: bool,
    },
    /// The agent restored the earlier versions itself.
    RolledBackByAgent {
        /// The step that failed, in words.
        reason: String,
    },
    /// The job failed.
    Failed {
        /// The host's note (the outcome and the failed step).
        note: String,
    },
}

/// Judges an update job's report: `targets` is the bundle, `installed_at_start` the host's
/// versions of it when the rollout started, `max_latency_factor` the change's limit.
pub fn judge_update(
    report: &JobReport,
    targets: &BTreeMap<String, String>,
    installed_at_start: Option<&BTreeMap<String, String>>,
    max_latency_factor: Option<f64>,
) -> UpdateVerdict {
    match report.outcome {
        JobOutcome::Succeeded | JobOutcome::AlreadyCompliant => {
            if let Some(wrong) = wrong_versions(targets, installed_at_start, &report.versions_after)
            {
                return UpdateVerdict::WrongVersions {
                    note: format!("verification: the job's report shows {wrong}"),
                };
            }
            let regression =
                latency_regression(report, max_latency_factor.unwrap_or(DEFAULT_LATENCY_FACTOR));
            match regression {
                // The change's own rollback criterion: beyond its latency factor the host
                // counts as failed (without one, it is only flagged).
                Some(regression) if max_latency_factor.is_some() => UpdateVerdict::TooSlow {
                    note: format!("rollback criteria: latency {regression}"),
                    regression,
                },
                regression => UpdateVerdict::Verify {
                    regression,
                    ask_now: report.outcome == JobOutcome::AlreadyCompliant,
                },
            }
        }
        JobOutcome::RolledBack => UpdateVerdict::RolledBackByAgent {
            reason: failed_step(report),
        },
        JobOutcome::Failed | JobOutcome::RollbackFailed | JobOutcome::Interrupted => {
            UpdateVerdict::Failed {
                note: format!("{}: {}", report.outcome.as_str(), failed_step(report)),
            }
        }
    }
}

/// What a rollback job's report means: restored, or the host's note on why not.
pub fn judge_rollback(report: &JobReport) -> Result<(), String> {
    if report.outcome.is_success() {
        Ok(())
    } else {
        Err(format!(
            "rollback {}: {}",
            report.outcome.as_str(),
            failed_step(report)
        ))
    }
}

/// The latest inventory on record for a host.
#[derive(Clone, Debug, PartialEq)]
pub struct InventorySeen {
    /// When the store received it (system time).
    pub received_at: Timestamp,
    /// Whether it says a reboot is pending.
    pub reboot_required: bool,
    /// Installed versions.
    pub versions: Versions,
}

/// The next step of a host being verified or waiting for a reboot.
#[derive(Clone, Debug, PartialEq)]
pub enum VerifyStep {
    /// Nothing yet.
    Wait,
    /// Ask the agent for an inventory; the track moves to the phase given.
    Ask(TrackPhase),
    /// No fresh inventory came within [`VERIFY_TIMEOUT`]: failed.
    TimedOut {
        /// The host's note.
        note: String,
    },
    /// The fresh inventory shows other versions: failed.
    WrongVersions {
        /// The host's note.
        note: String,
    },
    /// Verified, but a reboot is pending (first seen now).
    PendingReboot,
    /// Still waiting for the reboot: nothing new.
    StillRebooting,
    /// Verified.
    Succeeded {
        /// Only after a reboot it waited for.
        after_reboot: bool,
    },
}

/// Decides about a host in `Verifying` or `AwaitingReboot` from the latest inventory on
/// record: one received at or after the job's end (or the last request, while waiting for a
/// reboot) is fresh. `now` is the system's time. Any other phase: `Wait`.
pub fn verify_host(
    phase: &TrackPhase,
    inventory: Option<&InventorySeen>,
    targets: &BTreeMap<String, String>,
    installed_at_start: Option<&BTreeMap<String, String>>,
    now: Timestamp,
) -> VerifyStep {
    let (since, rebooting, asked) = match phase {
        TrackPhase::Verifying { job_ended, asked } => (*job_ended, false, *asked),
        TrackPhase::AwaitingReboot { last_asked } => (*last_asked, true, true),
        _ => return VerifyStep::Wait,
    };
    let fresh = inventory.filter(|i| i.received_at >= since);
    let Some(fresh) = fresh else {
        let waited = now.duration_since(since);
        return if rebooting {
            if waited >= REBOOT_POLL {
                VerifyStep::Ask(TrackPhase::AwaitingReboot { last_asked: now })
            } else {
                VerifyStep::Wait
            }
        } else if waited >= VERIFY_TIMEOUT {
            VerifyStep::TimedOut {
                note: format!(
                    "verification: no fresh inventory within {VERIFY_TIMEOUT} of the job's end"
                ),
            }
        } else if waited >= INVENTORY_GRACE && !asked {
            // The agent sends one after every job that changed something; ask once when it
            // has not come.
            VerifyStep::Ask(TrackPhase::Verifying {
                job_ended: since,
                asked: true,
            })
        } else {
            VerifyStep::Wait
        };
    };
    if let Some(wrong) = wrong_versions(targets, installed_at_start, &fresh.versions) {
        VerifyStep::WrongVersions {
            note: format!("verification: the fresh inventory shows {wrong}"),
        }
    } else if fresh.reboot_required {
        if rebooting {
            VerifyStep::StillRebooting
        } else {
            VerifyStep::PendingReboot
        }
    } else {
        VerifyStep::Succeeded {
            after_reboot: rebooting,
        }
    }
}

/// A ring's measurements against its baseline.
#[derive(Clone, Debug, PartialEq)]
pub struct RingBaseline {
    /// Hosts with measurements before and after.
    pub measured: usize,
    /// Median probe latency before the updates, ms.
    pub probe_before: Option<f64>,
    /// Median probe latency after, ms.
    pub probe_after: Option<f64>,
    /// Mean 1-minute load before.
    pub load_before: Option<f64>,
    /// Mean 1-minute load after.
    pub load_after: Option<f64>,
    /// The probes got slower than the limit allows, in words.
    pub regression: Option<String>,
}

fn median(mut values: Vec<f64>) -> Option<f64> {
    values.retain(|v| v.is_finite());
    if values.is_empty() {
        return None;
    }
    values.sort_by(f64::total_cmp);
    let mid = values.len() / 2;
    Some(if values.len().is_multiple_of(2) {
        (values[mid - 1] + values[mid]) / 2.0
    } else {
        values[mid]
    })
}

fn mean(values: &[f64]) -> Option<f64> {
    (!values.is_empty()).then(|| values.iter().sum::<f64>() / values.len() as f64)
}

/// The ring's median probe latency and mean load, before and after, from its jobs' reports;
/// `None` when no report carries measurements from both sides.
pub fn ring_baseline(reports: &[&JobReport], limit: f64) -> Option<RingBaseline> {
    let measured: Vec<(&Measurements, &Measurements)> = reports
        .iter()
        .filter_map(|r| {
            Some((
                r.measurements_before.as_ref()?,
                r.measurements_after.as_ref()?,
            ))
        })
        .collect();
    if measured.is_empty() {
        return None;
    }
    let (mut before, mut after) = (Vec::new(), Vec::new());
    for (b, a) in &measured {
        for (pb, pa) in b.probes.iter().zip(&a.probes) {
            if let (Some(mb), Some(ma)) = (pb.millis, pa.millis) {
                before.push(mb);
                after.push(ma);
            }
        }
    }
    let loads = |pick: fn(&(&Measurements, &Measurements)) -> Option<f64>| {
        mean(&measured.iter().filter_map(pick).collect::<Vec<_>>())
    };
    let probe_before = median(before);
    let probe_after = median(after);
    let regression = match (probe_before, probe_after) {
        (Some(b), Some(a)) if b > 0.0 && a / b > limit => Some(format!(
            "median probe {b:.1} ms → {a:.1} ms (×{:.1}, limit ×{limit})",
            a / b
        )),
        _ => None,
    };
    Some(RingBaseline {
        measured: measured.len(),
        probe_before,
        probe_after,
        load_before: loads(|(b, _)| b.load.map(|l| l[0])),
        load_after: loads(|(_, a)| a.load.map(|l| l[0])),
        regression,
    })
}

/// A time stamped by the system clock (a job's end), placed on the governance clock by its
/// age: the engine's observations are on the governance clock, and the two agree when the
/// governance clock is the system's.
pub fn on_governance_clock(
    fact: Timestamp,
    system_now: Timestamp,
    governance_now: Timestamp,
) -> Timestamp {
    let age = system_now.duration_since(fact).max(SignedDuration::ZERO);
    governance_now.checked_sub(age).unwrap_or(governance_now)
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;
    use crate::job::ProbeLatency;

    fn targets() -> BTreeMap<String, String> {
        [("openssl", "3.0.2-2"), ("curl", "8.0-2")]
            .iter()
            .map(|(p, v)| ((*p).to_owned(), (*v).to_owned()))
            .collect()
    }

    #[test]
    fn only_the_bundle_packages_installed_on_the_host_are_verified() {
        // curl is not installed on web1: its absence is not a failure.
        let installed: BTreeMap<String, String> =
            [("openssl".to_owned(), "3.0.2-1".to_owned())].into();
        let mut versions: Versions = BTreeMap::new();
        versions.insert("openssl".into(), Some("3.0.2-2".into()));
        assert_eq!(
            wrong_versions(&targets(), Some(&installed), &versions),
            None
        );
        versions.insert("openssl".into(), Some("3.0.2-1".into()));
        assert_eq!(
            wrong_versions(&targets(), Some(&installed), &versions).as_deref(),
            Some("openssl at 3.0.2-1, not 3.0.2-2")
        );
        versions.remove("openssl");
        assert_eq!(
            wrong_versions(&targets(), Some(&installed), &versions).as_deref(),
            Some("openssl at (not installed), not 3.0.2-2")
        );
    }

    fn measured(millis: &[Option<f64>]) -> Measurements {
        Measurements {
            taken_at: Timestamp::UNIX_EPOCH,
            load: None,
            mem_total_bytes: None,
            mem_available_bytes: None,
            probes: millis
                .iter()
                .enumerate()
                .map(|(i, m)| ProbeLatency {
                    probe: format!("http probe {i}"),
                    millis: *m,
                })
                .collect(),
        }
    }

    fn report(outcome: JobOutcome) -> JobReport {
        JobReport {
            job_id: "j".into(),
            idempotency_key: "k".into(),
            outcome,
            steps: Vec::new(),
            versions_before: BTreeMap::new(),
            versions_after: BTreeMap::new(),
            unsettled: BTreeMap::new(),
            measurements_before: None,
            measurements_after: None,
            interrupted_at: None,
        }
    }

    #[test]
    fn a_ring_is_compared_with_its_baseline_by_median_probe_and_mean_load() {
        let with = |before: &[Option<f64>], after: &[Option<f64>], load: (f64, f64)| {
            let mut b = measured(before);
            b.load = Some([load.0, 0.0, 0.0]);
            let mut a = measured(after);
            a.load = Some([load.1, 0.0, 0.0]);
            JobReport {
                measurements_before: Some(b),
                measurements_after: Some(a),
                ..report(JobOutcome::Succeeded)
            }
        };
        let reports = [
            with(&[Some(10.0)], &[Some(30.0)], (0.5, 1.5)),
            with(&[Some(12.0)], &[Some(26.0)], (0.7, 0.9)),
            with(&[Some(8.0), None], &[Some(25.0), Some(99.0)], (0.3, 0.6)),
        ];
        let refs: Vec<&JobReport> = reports.iter().collect();
        let ring = ring_baseline(&refs, 2.0).unwrap();
        assert_eq!(ring.measured, 3);
        assert_eq!(ring.probe_before, Some(10.0));
        assert_eq!(ring.probe_after, Some(26.0));
        assert!((ring.load_before.unwrap() - 0.5).abs() < 1e-9);
        assert!((ring.load_after.unwrap() - 1.0).abs() < 1e-9);
        assert_eq!(
            ring.regression.as_deref(),
            Some("median probe 10.0 ms → 26.0 ms (×2.6, limit ×2)")
        );
        assert_eq!(ring_baseline(&refs, 3.0).unwrap().regression, None);
        let unmeasured = JobReport {
            measurements_after: None,
            ..reports[0].clone()
        };
        assert_eq!(ring_baseline(&[&unmeasured], 2.0), None);
    }

    #[test]
    fn a_probe_slower_than_the_limit_is_a_regression_and_a_failed_probe_is_not_compared() {
        let report = JobReport {
            measurements_before: Some(measured(&[Some(10.0), Some(10.0), None])),
            measurements_after: Some(measured(&[Some(19.0), Some(31.0), Some(500.0)])),
            ..report(JobOutcome::Succeeded)
        };
        let found = latency_regression(&report, 2.0).unwrap();
        assert!(
            found.contains("http probe 1 10.0 ms → 31.0 ms (×3.1"),
            "{found}"
        );
        assert!(
            !found.contains("probe 0") && !found.contains("probe 2"),
            "{found}"
        );
        assert_eq!(latency_regression(&report, 3.5), None);
        let unmeasured = JobReport {
            measurements_before: None,
            ..report
        };
        assert_eq!(latency_regression(&unmeasured, 1.0), None);
    }

    #[test]
    fn a_regression_fails_the_host_only_under_the_changes_own_limit() {
        let slow = JobReport {
            measurements_before: Some(measured(&[Some(10.0)])),
            measurements_after: Some(measured(&[Some(40.0)])),
            ..report(JobOutcome::Succeeded)
        };
        assert!(matches!(
            judge_update(&slow, &targets(), None, Some(3.0)),
            UpdateVerdict::TooSlow { .. }
        ));
        assert!(matches!(
            judge_update(&slow, &targets(), None, None),
            UpdateVerdict::Verify {
                regression: Some(_),
                ask_now: false
            }
        ));
        assert_eq!(
            judge_update(
                &report(JobOutcome::AlreadyCompliant),
                &targets(),
                None,
                None
            ),
            UpdateVerdict::Verify {
                regression: None,
                ask_now: true
            }
        );
    }

    #[test]
    fn a_host_is_verified_by_an_inventory_received_after_its_job_ended() {
        let at = |s: &str| format!("2026-06-01T00:{s}Z").parse::<Timestamp>().unwrap();
        let installed: BTreeMap<String, String> =
            [("openssl".to_owned(), "3.0.2-1".to_owned())].into();
        let verifying = TrackPhase::Verifying {
            job_ended: at("00:05"),
            asked: false,
        };
        let seen = |received: &str, version: &str, reboot: bool| InventorySeen {
            received_at: at(received),
            reboot_required: reboot,
            versions: [("openssl".to_owned(), Some(version.to_owned()))].into(),
        };
        let decide = |phase: &TrackPhase, inventory: Option<&InventorySeen>, now: &str| {
            verify_host(phase, inventory, &targets(), Some(&installed), at(now))
        };
        // An older inventory is not fresh: wait, ask after the grace, fail after the timeout.
        let old = seen("00:01", "3.0.2-2", false);
        assert_eq!(decide(&verifying, Some(&old), "00:06"), VerifyStep::Wait);
        assert_eq!(
            decide(&verifying, Some(&old), "00:15"),
            VerifyStep::Ask(TrackPhase::Verifying {
                job_ended: at("00:05"),
                asked: true
            })
        );
        let asked = TrackPhase::Verifying {
            job_ended: at("00:05"),
            asked: true,
        };
        assert_eq!(decide(&asked, None, "00:15"), VerifyStep::Wait);
        assert!(matches!(
            decide(&asked, None, "03:05"),
            VerifyStep::TimedOut { .. }
        ));
        assert_eq!(
            decide(&verifying, Some(&seen("00:05", "3.0.2-2", false)), "00:06"),
            VerifyStep::Succeeded {
                after_reboot: false
            }
        );
        assert!(matches!(
            decide(&verifying, Some(&seen("00:06", "3.0.2-1", false)), "00:06"),
            VerifyStep::WrongVersions { .. }
        ));
        assert_eq!(
            decide(&verifying, Some(&seen("00:06", "3.0.2-2", true)), "00:06"),
            VerifyStep::PendingReboot
        );
        let rebooting = TrackPhase::AwaitingReboot {
            last_asked: at("00:06"),
        };
        assert_eq!(
            decide(&rebooting, Some(&seen("00:07", "3.0.2-2", true)), "00:07"),
            VerifyStep::StillRebooting
        );
        assert_eq!(decide(&rebooting, None, "00:30"), VerifyStep::Wait);
        assert_eq!(
            decide(&rebooting, None, "01:06"),
            VerifyStep::Ask(TrackPhase::AwaitingReboot {
                last_asked: at("01:06")
            })
        );
        assert_eq!(
            decide(&rebooting, Some(&seen("00:08", "3.0.2-2", false)), "00:08"),
            VerifyStep::Succeeded { after_reboot: true }
        );
        assert_eq!(
            decide(&TrackPhase::Updating, None, "09:00"),
            VerifyStep::Wait
        );
    }

    #[test]
    fn a_system_stamp_keeps_its_age_on_the_governance_clock() {
        let system: Timestamp = "2025-01-01T00:00:10Z".parse().unwrap();
        let governance: Timestamp = "2026-11-02T09:00:00Z".parse().unwrap();
        let fact: Timestamp = "2025-01-01T00:00:07Z".parse().unwrap();
        assert_eq!(
            on_governance_clock(fact, system, governance),
            "2026-11-02T08:59:57Z".parse::<Timestamp>().unwrap()
        );
        assert_eq!(on_governance_clock(fact, fact, fact), fact);
    }
}
