//! Starting a change's rollout on the server and watching it to the end: a line per host as it
//! finishes (with the version dpkg reports in its root), the breaker when it trips, one
//! progress bar per ring on a terminal.

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use indicatif::ProgressBar;
use sluice_core::job::{Check, OnFailure, Preflight, RollbackPolicy, StepStatus};
use sluice_core::rollout::{BreakerScope, BreakerTrip, OutcomeKind, RolloutPolicy, Size};
use sluice_protocol::agents::JobRecord;
use sluice_protocol::rollouts::{HostView, JobTemplate, RingView, RolloutRequest, RolloutView};

use super::fleet::Host;
use super::narrate::{Narrator, pause};
use super::packages;
use crate::cmd::client::Client;

/// How a rollout ended.
#[derive(Debug, Clone)]
pub struct RolloutOutcome {
    /// `RO-n`.
    pub id: String,
    /// `completed`, `rolled-back`, `aborted`, `failed`.
    pub outcome: String,
    /// Its phase at the end.
    pub phase: String,
    /// How often the breaker tripped.
    pub breaker_trips: u64,
    /// Rollbacks the rollout carried out.
    pub rollbacks: u64,
    /// Seconds from start to finish.
    pub seconds: f64,
}

/// The post-update check: the package's own health script, inside the agent's root.
fn health_check() -> Check {
    Check::Command {
        argv: vec![
            "/bin/sh".to_owned(),
            "-c".to_owned(),
            format!("exec \"$SLUICE_ROOT/{}\"", packages::HEALTH),
        ],
        timeout_secs: 10,
    }
}

/// Starts the rollout of a scheduled change and watches it until it is finished.
pub fn run(
    client: &Client,
    change: &str,
    target: &str,
    policy: RolloutPolicy,
    hosts: &[Host],
    narrator: &Narrator,
) -> Result<RolloutOutcome> {
    let before: BTreeMap<String, String> = hosts
        .iter()
        .map(|h| {
            let version = h
                .installed(packages::PACKAGE)
                .ok()
                .flatten()
                .unwrap_or_else(|| "none".to_owned());
            (h.name.clone(), version)
        })
        .collect();
    let started = Instant::now();
    let request = RolloutRequest {
        change: change.to_owned(),
        policy: Some(policy.clone()),
        job: JobTemplate {
            preflight: Preflight::default(),
            checks: vec![health_check()],
            rollback: RollbackPolicy {
                on_failure: OnFailure::Rollback,
                ..RollbackPolicy::default()
            },
        },
        haproxy: None,
        prometheus: None,
        override_rolled_back: false,
        resume_on_resolve: true,
    };
    let created: RolloutView = client
        .post_as("/api/v1/rollouts", &request)
        .with_context(|| format!("starting the rollout of {change}"))?;
    let id = created.id;
    narrator.say(format!(
        "  alice starts rollout {id} of {change}: rings {}, canary {}, batches of {}, breaker {} per batch, on trip {}{}",
        policy.ring_order.join(" → "),
        size(policy.canary),
        size(Some(policy.batch)),
        size(Some(policy.breaker.per_batch)),
        policy.on_trip.as_str(),
        if policy.follow_the_sun {
            ", follow the sun (east to west)"
        } else {
            ""
        }
    ));
    let mut watch = Watch {
        narrator,
        client,
        target,
        before,
        hosts,
        status: BTreeMap::new(),
        bars: Vec::new(),
        trips: 0,
        waiting: None,
    };
    let deadline = Instant::now() + Duration::from_secs(900);
    let view = loop {
        let view: RolloutView = client.get_as(&format!("/api/v1/rollouts/{id}"))?;
        watch.observe(&view);
        if view.finished {
            break view;
        }
        if Instant::now() > deadline {
            bail!(
                "rollout {id} did not finish within 15 minutes: {}",
                serde_json::to_string(&view)?
            );
        }
        pause(Duration::from_millis(250))?;
    };
    for bar in &watch.bars {
        narrator.clear(bar);
    }
    let outcome = RolloutOutcome {
        id: id.clone(),
        outcome: view.outcome.map_or("-", OutcomeKind::as_str).to_owned(),
        phase: view.phase.to_string(),
        breaker_trips: u64::from(view.breaker_trips),
        rollbacks: u64::from(view.rollbacks),
        seconds: started.elapsed().as_secs_f64(),
    };
    let count = |status: &str| view.counts.get(status).copied().unwrap_or(0);
    narrator.say(format!(
        "  rollout {id} {} in {:.1}s: {} succeeded, {} failed, {} rolled back, {} never started; breaker trips {}, rollbacks {}",
        outcome.outcome,
        outcome.seconds,
        count("succeeded"),
        count("failed"),
        count("rolled-back"),
        count("pending"),
        outcome.breaker_trips,
        outcome.rollbacks
    ));
    Ok(outcome)
}

fn size(size: Option<Size>) -> String {
    match size {
        Some(Size::Count(n)) => format!("{n}"),
        Some(Size::Percent(p)) => format!("{p}%"),
        None => "none".to_owned(),
    }
}

/// A breaker's scope in words: `the dev canary`, `batch 2 of prod`, `ring test`.
fn scope(scope: &BreakerScope, rings: &[RingView]) -> String {
    let index = match scope {
        BreakerScope::Batch { ring, .. } | BreakerScope::Ring { ring, .. } => *ring,
    };
    let ring = rings.get(index);
    let env = ring.map_or_else(|| index.to_string(), |r| r.environment.clone());
    match scope {
        BreakerScope::Batch { batch, .. } => {
            let canary = ring
                .and_then(|r| r.batches.get(*batch))
                .is_some_and(|b| b.canary);
            if canary {
                format!("the {env} canary")
            } else {
                format!("batch {batch} of {env}")
            }
        }
        BreakerScope::Ring { .. } => format!("ring {env}"),
    }
}

/// Timestamps to the second: `…T01:12:59.819934657Z` reads `…T01:12:59Z`.
fn without_fractions(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    let mut chars = text.chars().peekable();
    while let Some(c) = chars.next() {
        let after_seconds = c == '.' && out.chars().last().is_some_and(|p| p.is_ascii_digit());
        if after_seconds && chars.peek().is_some_and(char::is_ascii_digit) {
            let mut digits = String::new();
            while let Some(d) = chars.peek().copied().filter(char::is_ascii_digit) {
                digits.push(d);
                chars.next();
            }
            if chars.peek() != Some(&'Z') {
                out.push('.');
                out.push_str(&digits);
            }
            continue;
        }
        out.push(c);
    }
    out
}

struct Watch<'a> {
    narrator: &'a Narrator,
    client: &'a Client,
    target: &'a str,
    before: BTreeMap<String, String>,
    hosts: &'a [Host],
    status: BTreeMap<String, String>,
    bars: Vec<ProgressBar>,
    trips: u64,
    waiting: Option<String>,
}

impl Watch<'_> {
    fn observe(&mut self, view: &RolloutView) {
        let rings = &view.rings;
        if self.bars.is_empty() && self.narrator.bars() {
            for ring in rings {
                let len = ring.batches.iter().map(|b| b.hosts.len()).sum::<usize>();
                self.bars
                    .push(self.narrator.bar(len as u64, ring.environment.clone()));
            }
        }
        for (r, ring) in rings.iter().enumerate() {
            let env = ring.environment.clone();
            let mut done = 0;
            let mut current = None;
            let mut number = 0;
            for batch in &ring.batches {
                let label = if batch.canary {
                    "canary".to_owned()
                } else {
                    number += 1;
                    format!("batch {number}")
                };
                for host in &batch.hosts {
                    let name = host.name.clone();
                    let status = host.status.clone();
                    if matches!(status.as_str(), "succeeded" | "failed" | "rolled-back") {
                        done += 1;
                    } else if status == "running" && current.is_none() {
                        current = Some(format!("{label}: {name} updating"));
                    }
                    let previous = self.status.insert(name.clone(), status.clone());
                    if previous.as_deref() != Some(status.as_str()) {
                        self.host_changed(&env, &label, &name, previous.as_deref(), &status, host);
                    }
                }
            }
            if let Some(bar) = self.bars.get(r) {
                bar.set_position(done);
                bar.set_message(current.unwrap_or_default());
            }
        }
        let trips = u64::from(view.breaker_trips);
        if trips > self.trips {
            self.trips = trips;
            // The trip as the core records it (`breaker` is free-form on the wire).
            let breaker = view
                .breaker
                .clone()
                .and_then(|b| serde_json::from_value::<BreakerTrip>(b).ok());
            self.narrator.say(format!(
                "  ⚡ breaker tripped{}: nothing more starts, the batch is rolled back",
                match breaker {
                    None => String::new(),
                    Some(trip) => format!(
                        ": {} failure(s) in {}, threshold {}",
                        trip.failed,
                        scope(&trip.scope, rings),
                        trip.threshold
                    ),
                }
            ));
        }
        let waiting = view.waiting.clone();
        if waiting != self.waiting {
            // Hosts still running are the lines above; say only why the rollout holds.
            if let Some(reason) = &waiting
                && !self.narrator.bars()
                && !reason.contains("still running")
            {
                self.narrator
                    .say(format!("    {}", without_fractions(reason)));
            }
            self.waiting = waiting;
        }
    }

    fn host_changed(
        &self,
        env: &str,
        label: &str,
        name: &str,
        previous: Option<&str>,
        status: &str,
        host: &HostView,
    ) {
        let from = self.before.get(name).map_or("?", String::as_str);
        let now = self
            .hosts
            .iter()
            .find(|h| h.name == name)
            .and_then(|h| h.installed(packages::PACKAGE).ok().flatten())
            .unwrap_or_else(|| "none".to_owned());
        let line = match status {
            "succeeded" => format!("{from} → {now} ✓ health check passed"),
            "failed" => format!("{from} → {} ✗ {}; dpkg: {now}", self.target, self.why(host)),
            "rolled-back" if previous == Some("succeeded") => {
                format!("↩ rolled back by the breaker; dpkg: {now}")
            }
            "rolled-back" => format!("{from} → {} ✗ {}; dpkg: {now}", self.target, self.why(host)),
            "pending-reboot" => "waiting for a reboot".to_owned(),
            _ => return,
        };
        self.narrator
            .say(format!("  {env:<4} {label:<8} {name:<11} {line}"));
    }

    /// The server's last word on the host, else the failed step of its job and its message,
    /// from the agent's report.
    fn why(&self, host: &HostView) -> String {
        if let Some(note) = &host.note {
            return note.trim().to_owned();
        }
        let Some(job) = &host.job else {
            return "failed".to_owned();
        };
        let Ok(job) = self
            .client
            .get_as::<JobRecord>(&format!("/api/v1/jobs/{job}"))
        else {
            return "failed".to_owned();
        };
        job.report
            .iter()
            .flat_map(|r| &r.steps)
            .find(|s| s.status == StepStatus::Failed)
            .map(|s| format!("{} failed: {}", s.step.as_str(), s.message.trim()))
            .unwrap_or_else(|| format!("job {}", job.state))
    }
}
