//! The rollout engine: a pure state machine over a [`Plan`].
//!
//! [`RolloutState::apply`] folds one observation (an agent's report, an alert, an operator's
//! decision, an action the server carried out) into the state; [`next_actions`] says what to do
//! now. Never does I/O, never reads the clock: `now` and the freeze calendar are parameters,
//! so the same inputs always give the same actions. The server carries out the actions and
//! reports what happened as observations (a started host as `host-started`, a promotion as
//! `promoted`), see docs/rollout.md.

use std::collections::{BTreeMap, BTreeSet};
use std::fmt;

use jiff::{SignedDuration, Timestamp};
use serde::{Deserialize, Serialize};

use super::plan::{OnTrip, Plan};
use crate::calendar::{FreezeCalendar, TimeRange};
use crate::job::JobOutcome;

/// Where one host stands.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum HostStatus {
    /// Not started.
    Pending,
    /// Its job runs.
    Running,
    /// Updated and its checks pass.
    Succeeded,
    /// Its job failed and nothing has restored it yet.
    Failed,
    /// Restored to the versions it had (after a failure or a breaker's rollback).
    RolledBack,
    /// Updated but waiting for a reboot; unavailable until its checks pass.
    PendingReboot,
}

impl HostStatus {
    /// The kebab-case name used in JSON and messages.
    pub fn as_str(self) -> &'static str {
        match self {
            HostStatus::Pending => "pending",
            HostStatus::Running => "running",
            HostStatus::Succeeded => "succeeded",
            HostStatus::Failed => "failed",
            HostStatus::RolledBack => "rolled-back",
            HostStatus::PendingReboot => "pending-reboot",
        }
    }

    /// Still being worked on: counts against concurrency, and a batch is not finished.
    pub fn in_flight(self) -> bool {
        matches!(self, HostStatus::Running | HostStatus::PendingReboot)
    }

    /// Unavailable to its services: in flight, or failed and not yet restored.
    pub fn unavailable(self) -> bool {
        self.in_flight() || self == HostStatus::Failed
    }

    /// Finished, with something the rollout changed to roll back. Hosts in flight are left to
    /// finish first: rolling back under a running job races it.
    fn changed(self) -> bool {
        matches!(self, HostStatus::Succeeded | HostStatus::Failed)
    }
}

impl fmt::Display for HostStatus {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// One host's run.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct HostRun {
    /// Where it stands.
    pub status: HostStatus,
    /// Whether its job ever failed (a host the agent rolled back still counts for the breaker).
    #[serde(default)]
    pub failed: bool,
    /// When it last finished (succeeded, failed or rolled back): the soak clock's start.
    #[serde(default)]
    pub finished_at: Option<Timestamp>,
}

/// Which failures tripped the breaker.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "kebab-case", deny_unknown_fields)]
pub enum BreakerScope {
    /// The failures within one batch.
    Batch {
        /// The ring index.
        ring: usize,
        /// The batch index within the ring.
        batch: usize,
    },
    /// The failures within one ring.
    Ring {
        /// The ring index.
        ring: usize,
        /// The batch whose failure reached the threshold.
        batch: usize,
    },
}

impl BreakerScope {
    fn ring(self) -> usize {
        match self {
            BreakerScope::Batch { ring, .. } | BreakerScope::Ring { ring, .. } => ring,
        }
    }

    fn batch(self) -> usize {
        match self {
            BreakerScope::Batch { batch, .. } | BreakerScope::Ring { batch, .. } => batch,
        }
    }
}

/// A tripped breaker: it stays tripped until an operator resets it.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct BreakerTrip {
    /// Which failures.
    pub scope: BreakerScope,
    /// How many failures there were.
    pub failed: usize,
    /// The threshold they reached.
    pub threshold: usize,
    /// When.
    pub at: Timestamp,
}

/// Where the rollout as a whole stands, for listings and the dashboard.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum RolloutPhase {
    /// No host started yet.
    #[default]
    Planned,
    /// Hosts are being started or awaited.
    Running,
    /// Paused by an operator or an alert.
    Paused,
    /// The breaker tripped; its policy applies until a person resets it.
    Halted,
    /// Aborted by an operator.
    Aborted,
    /// Every host succeeded.
    Completed,
}

impl RolloutPhase {
    /// The kebab-case name used in JSON and messages.
    pub fn as_str(self) -> &'static str {
        match self {
            RolloutPhase::Planned => "planned",
            RolloutPhase::Running => "running",
            RolloutPhase::Paused => "paused",
            RolloutPhase::Halted => "halted",
            RolloutPhase::Aborted => "aborted",
            RolloutPhase::Completed => "completed",
        }
    }
}

impl std::fmt::Display for RolloutPhase {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A stored phase name that is none of [`RolloutPhase`]'s.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error(
    "unknown rollout phase {0:?} (expected planned, running, paused, halted, aborted or completed)"
)]
pub struct UnknownPhase(pub String);

impl std::str::FromStr for RolloutPhase {
    type Err = UnknownPhase;

    fn from_str(name: &str) -> Result<Self, Self::Err> {
        [
            RolloutPhase::Planned,
            RolloutPhase::Running,
            RolloutPhase::Paused,
            RolloutPhase::Halted,
            RolloutPhase::Aborted,
            RolloutPhase::Completed,
        ]
        .into_iter()
        .find(|phase| phase.as_str() == name)
        .ok_or_else(|| UnknownPhase(name.to_owned()))
    }
}

/// Everything observed so far, folded.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RolloutState {
    /// Every host of the plan, by name.
    pub hosts: BTreeMap<String, HostRun>,
    /// The ring being rolled out (index into the plan's rings).
    pub ring: usize,
    /// Paused by an operator, with the reason.
    #[serde(default)]
    pub operator_pause: Option<String>,
    /// Alerts that fired while the rollout ran and have not been cleared by a resume.
    #[serde(default)]
    pub alerts: BTreeSet<String>,
    /// Alerts that fire right now.
    #[serde(default)]
    pub firing: BTreeSet<String>,
    /// The tripped breaker, if any.
    #[serde(default)]
    pub breaker: Option<BreakerTrip>,
    /// Aborted by an operator, with the reason: final.
    #[serde(default)]
    pub aborted: Option<String>,
    /// Gates (by the index of the ring they lead to) a person approved.
    #[serde(default)]
    pub approved_gates: BTreeSet<usize>,
}

/// Something that happened, reported by an agent, the monitoring, an operator or the server.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "kebab-case", deny_unknown_fields)]
pub enum Observation {
    /// The server started the host's job.
    HostStarted {
        /// The host.
        host: String,
        /// When.
        at: Timestamp,
    },
    /// The host is updated and its checks pass.
    HostSucceeded {
        /// The host.
        host: String,
        /// When.
        at: Timestamp,
    },
    /// The host is updated and waits for a reboot.
    HostPendingReboot {
        /// The host.
        host: String,
        /// When.
        at: Timestamp,
    },
    /// The host's job failed.
    HostFailed {
        /// The host.
        host: String,
        /// When.
        at: Timestamp,
    },
    /// The host is back on its previous versions (its own job's rollback, or ours).
    HostRolledBack {
        /// The host.
        host: String,
        /// When.
        at: Timestamp,
    },
    /// A pause condition holds: the rollout starts nothing until resumed.
    AlertFiring {
        /// The alert's name.
        alert: String,
    },
    /// The alert stopped firing; a person still resumes.
    AlertResolved {
        /// The alert's name.
        alert: String,
    },
    /// An operator paused.
    Pause {
        /// Who.
        by: String,
        /// Why.
        reason: String,
    },
    /// An operator resumed: clears the pause and resolved alerts.
    Resume {
        /// Who.
        by: String,
    },
    /// A person approved the gate into a ring.
    ApproveGate {
        /// The ring index the gate leads to.
        to_ring: usize,
        /// Who.
        by: String,
    },
    /// An operator reset the tripped breaker, deciding to go on.
    ResetBreaker {
        /// Who.
        by: String,
    },
    /// A person asked for another attempt at a failed or rolled-back host of the current ring
    /// (overriding the rolled-back memory for it): the host is pending again.
    Retry {
        /// The host.
        host: String,
        /// Who.
        by: String,
    },
    /// An operator aborted the rollout: nothing starts again.
    Abort {
        /// Who.
        by: String,
        /// Why.
        reason: String,
    },
    /// The server carried out a `promote`.
    Promoted {
        /// The ring index now rolled out.
        to_ring: usize,
    },
}

impl Observation {
    /// What a finished job on `host` reports: succeeded (also already compliant), rolled back
    /// by the job itself (a failure that restored the host), or failed (also a failed rollback
    /// and an interrupted job: the host is not known to work until a person looks).
    pub fn from_job(host: &str, outcome: JobOutcome, at: Timestamp) -> Self {
        let host = host.to_owned();
        match outcome {
            JobOutcome::Succeeded | JobOutcome::AlreadyCompliant => {
                Observation::HostSucceeded { host, at }
            }
            JobOutcome::RolledBack => Observation::HostRolledBack { host, at },
            JobOutcome::Failed | JobOutcome::RollbackFailed | JobOutcome::Interrupted => {
                Observation::HostFailed { host, at }
            }
        }
    }
}

/// What the server should do now. Actions describe the wanted state, so asking again before
/// anything changed gives the same actions.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Action {
    /// Start these hosts' jobs.
    StartHosts(Vec<String>),
    /// Nothing to start; ask again at `until` (if given) or on the next observation.
    Wait {
        /// When asking again may give a different answer (a window opens, the soak ends).
        until: Option<Timestamp>,
        /// Why, for people.
        reason: String,
    },
    /// Mark the rollout paused for a person.
    Pause(String),
    /// The breaker is tripped.
    TripBreaker {
        /// Which failures.
        scope: BreakerScope,
        /// How many.
        failed: usize,
        /// The threshold they reached.
        threshold: usize,
    },
    /// Roll these hosts back.
    RollBack(Vec<String>),
    /// The gate is passed: move to this ring.
    Promote {
        /// The ring index.
        to_ring: usize,
    },
    /// Every host succeeded.
    Complete,
}

/// Why an observation does not fit the state. The server refuses it and keeps the state.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ApplyError {
    /// A host the plan does not hold.
    #[error("host \"{0}\" is not part of this rollout")]
    UnknownHost(String),
    /// A report that does not follow from the host's status.
    #[error("host \"{host}\" is {status}: it cannot be reported {reported}")]
    HostTransition {
        /// The host.
        host: String,
        /// Its status.
        status: HostStatus,
        /// The report's kind.
        reported: &'static str,
    },
    /// A resume while alerts still fire.
    #[error("cannot resume: alerts still firing: {0}")]
    AlertsFiring(String),
    /// A promotion or approval for a ring that is not next.
    #[error("ring {to_ring}: {reason}")]
    Ring {
        /// The ring index given.
        to_ring: usize,
        /// What is wrong.
        reason: String,
    },
    /// Anything after an abort.
    #[error("the rollout was aborted")]
    Aborted,
}

impl RolloutState {
    /// The state before anything happened: every host pending, the first ring current.
    pub fn new(plan: &Plan) -> Self {
        Self {
            hosts: plan
                .hosts
                .keys()
                .map(|name| {
                    (
                        name.clone(),
                        HostRun {
                            status: HostStatus::Pending,
                            failed: false,
                            finished_at: None,
                        },
                    )
                })
                .collect(),
            ring: 0,
            operator_pause: None,
            alerts: BTreeSet::new(),
            firing: BTreeSet::new(),
            breaker: None,
            aborted: None,
            approved_gates: BTreeSet::new(),
        }
    }

    /// Where the rollout as a whole stands. An abort or a trip outranks a pause.
    pub fn phase(&self) -> RolloutPhase {
        if self.aborted.is_some() {
            RolloutPhase::Aborted
        } else if self.breaker.is_some() {
            RolloutPhase::Halted
        } else if self.pause_reason().is_some() {
            RolloutPhase::Paused
        } else if self
            .hosts
            .values()
            .all(|run| run.status == HostStatus::Succeeded)
        {
            RolloutPhase::Completed
        } else if self
            .hosts
            .values()
            .all(|run| run.status == HostStatus::Pending)
        {
            RolloutPhase::Planned
        } else {
            RolloutPhase::Running
        }
    }

    /// A host's status (pending for a host the plan does not hold).
    pub fn status(&self, host: &str) -> HostStatus {
        self.hosts
            .get(host)
            .map_or(HostStatus::Pending, |run| run.status)
    }

    /// Why the rollout is paused, if it is (an operator's pause or alerts).
    pub fn pause_reason(&self) -> Option<String> {
        let mut reasons = Vec::new();
        if let Some(reason) = &self.operator_pause {
            reasons.push(format!("paused by an operator: {reason}"));
        }
        if !self.alerts.is_empty() {
            let names: Vec<&str> = self.alerts.iter().map(String::as_str).collect();
            reasons.push(format!("alerts fired: {}", names.join(", ")));
        }
        (!reasons.is_empty()).then(|| reasons.join("; "))
    }

    /// The current ring's batch being rolled out: the first with a host pending or in flight.
    /// `None` once every batch of the ring finished (the gate is next).
    pub fn current_batch(&self, plan: &Plan) -> Option<usize> {
        plan.rings.get(self.ring)?.batches.iter().position(|batch| {
            batch.hosts.iter().any(|h| {
                let status = self.status(h);
                status == HostStatus::Pending || status.in_flight()
            })
        })
    }

    /// When the ring's last host finished: the start of its soak.
    pub fn soak_started(&self, plan: &Plan, ring: usize) -> Option<Timestamp> {
        plan.rings
            .get(ring)?
            .hosts()
            .filter_map(|h| self.hosts.get(h).and_then(|run| run.finished_at))
            .max()
    }

    /// Folds `observation` in. Repeating a report is harmless (a host reported succeeded
    /// twice stays succeeded); a report that contradicts the state is refused.
    pub fn apply(&mut self, plan: &Plan, observation: &Observation) -> Result<(), ApplyError> {
        use HostStatus as S;
        if self.aborted.is_some() {
            // Jobs running at the abort still report (and rollbacks); nothing else counts.
            return match host_of(observation) {
                Some(host) => self.report(plan, host, observation),
                None => Err(ApplyError::Aborted),
            };
        }
        match observation {
            Observation::HostStarted { host, .. }
            | Observation::HostSucceeded { host, .. }
            | Observation::HostPendingReboot { host, .. }
            | Observation::HostFailed { host, .. }
            | Observation::HostRolledBack { host, .. } => self.report(plan, host, observation),
            Observation::AlertFiring { alert } => {
                self.firing.insert(alert.clone());
                self.alerts.insert(alert.clone());
                Ok(())
            }
            Observation::AlertResolved { alert } => {
                self.firing.remove(alert);
                Ok(())
            }
            Observation::Pause { reason, .. } => {
                self.operator_pause = Some(reason.clone());
                Ok(())
            }
            Observation::Resume { .. } => {
                if !self.firing.is_empty() {
                    let names: Vec<&str> = self.firing.iter().map(String::as_str).collect();
                    return Err(ApplyError::AlertsFiring(names.join(", ")));
                }
                self.operator_pause = None;
                self.alerts.clear();
                Ok(())
            }
            Observation::ApproveGate { to_ring, .. } => {
                if *to_ring == 0 || *to_ring >= plan.rings.len() {
                    return Err(ApplyError::Ring {
                        to_ring: *to_ring,
                        reason: format!(
                            "no gate leads there (the plan has rings 0 to {})",
                            plan.rings.len().saturating_sub(1)
                        ),
                    });
                }
                self.approved_gates.insert(*to_ring);
                Ok(())
            }
            Observation::Retry { host, .. } => self.retry(plan, host),
            Observation::ResetBreaker { .. } => {
                self.breaker = None;
                Ok(())
            }
            Observation::Abort { reason, .. } => {
                self.aborted = Some(reason.clone());
                Ok(())
            }
            Observation::Promoted { to_ring } => {
                if *to_ring == self.ring {
                    return Ok(());
                }
                if *to_ring != self.ring + 1 || *to_ring >= plan.rings.len() {
                    return Err(ApplyError::Ring {
                        to_ring: *to_ring,
                        reason: format!("the rollout is at ring {}", self.ring),
                    });
                }
                let unfinished = plan
                    .rings
                    .get(self.ring)
                    .is_some_and(|ring| ring.hosts().any(|h| self.status(h) != S::Succeeded));
                if unfinished {
                    return Err(ApplyError::Ring {
                        to_ring: *to_ring,
                        reason: format!("ring {} has hosts that did not succeed", self.ring),
                    });
                }
                self.ring = *to_ring;
                Ok(())
            }
        }
    }

    fn report(
        &mut self,
        plan: &Plan,
        host: &str,
        observation: &Observation,
    ) -> Result<(), ApplyError> {
        use HostStatus as S;
        let run = self
            .hosts
            .get_mut(host)
            .ok_or_else(|| ApplyError::UnknownHost(host.to_owned()))?;
        let (to, from, at, reported): (S, &[S], Option<Timestamp>, &'static str) = match observation
        {
            Observation::HostStarted { .. } => (S::Running, &[S::Pending], None, "started"),
            Observation::HostSucceeded { at, .. } => (
                S::Succeeded,
                &[S::Running, S::PendingReboot],
                Some(*at),
                "succeeded",
            ),
            Observation::HostPendingReboot { .. } => {
                (S::PendingReboot, &[S::Running], None, "pending-reboot")
            }
            Observation::HostFailed { at, .. } => (
                S::Failed,
                &[S::Running, S::PendingReboot],
                Some(*at),
                "failed",
            ),
            Observation::HostRolledBack { at, .. } => (
                S::RolledBack,
                &[S::Running, S::PendingReboot, S::Failed, S::Succeeded],
                Some(*at),
                "rolled-back",
            ),
            _ => return Ok(()),
        };
        if run.status == to {
            return Ok(());
        }
        if !from.contains(&run.status) {
            return Err(ApplyError::HostTransition {
                host: host.to_owned(),
                status: run.status,
                reported,
            });
        }
        // A job that rolls itself back failed first.
        let failure = to == S::Failed || (to == S::RolledBack && run.status.in_flight());
        run.status = to;
        if at.is_some() {
            run.finished_at = at;
        }
        if failure {
            // Failed hosts are counted, once each; every failure (a retried host's too) checks.
            run.failed = true;
            if self.breaker.is_none() {
                self.breaker = trip(plan, self, host, at);
            }
        }
        Ok(())
    }

    /// A person asked for another attempt at `host`: failed or rolled back → pending.
    fn retry(&mut self, plan: &Plan, host: &str) -> Result<(), ApplyError> {
        let in_ring = plan
            .position(host)
            .is_some_and(|(ring, _)| ring == self.ring);
        let run = self
            .hosts
            .get_mut(host)
            .ok_or_else(|| ApplyError::UnknownHost(host.to_owned()))?;
        if !matches!(run.status, HostStatus::Failed | HostStatus::RolledBack) || !in_ring {
            return Err(ApplyError::HostTransition {
                host: host.to_owned(),
                status: run.status,
                reported: "retried (only a failed or rolled-back host of the current ring)",
            });
        }
        run.status = HostStatus::Pending;
        run.finished_at = None;
        Ok(())
    }
}

fn host_of(observation: &Observation) -> Option<&str> {
    match observation {
        Observation::HostSucceeded { host, .. }
        | Observation::HostPendingReboot { host, .. }
        | Observation::HostFailed { host, .. }
        | Observation::HostRolledBack { host, .. } => Some(host),
        _ => None,
    }
}

/// The trip that `host`'s failure causes, if its batch's or ring's failures reached the
/// threshold (`>=`: the Nth failure trips a threshold of N, the (N-1)th does not).
fn trip(
    plan: &Plan,
    state: &RolloutState,
    host: &str,
    at: Option<Timestamp>,
) -> Option<BreakerTrip> {
    let (r, b) = plan.position(host)?;
    let ring = plan.rings.get(r)?;
    let batch = ring.batches.get(b)?;
    let failed = |hosts: &mut dyn Iterator<Item = &String>| {
        hosts
            .filter(|h| state.hosts.get(*h).is_some_and(|run| run.failed))
            .count()
    };
    let at = at.unwrap_or(Timestamp::UNIX_EPOCH);
    let in_batch = failed(&mut batch.hosts.iter());
    let threshold = plan
        .policy
        .breaker
        .per_batch
        .threshold_of(batch.hosts.len());
    if in_batch >= threshold {
        return Some(BreakerTrip {
            scope: BreakerScope::Batch { ring: r, batch: b },
            failed: in_batch,
            threshold,
            at,
        });
    }
    let in_ring = failed(&mut ring.hosts());
    let threshold = plan.policy.breaker.per_ring.threshold_of(ring.len());
    (in_ring >= threshold).then_some(BreakerTrip {
        scope: BreakerScope::Ring { ring: r, batch: b },
        failed: in_ring,
        threshold,
        at,
    })
}

/// What to do at `now`. `calendar` holds the freezes and exceptions that apply.
pub fn next_actions(
    plan: &Plan,
    state: &RolloutState,
    calendar: &FreezeCalendar,
    now: Timestamp,
) -> Vec<Action> {
    if let Some(reason) = &state.aborted {
        return vec![Action::Wait {
            until: None,
            reason: format!("aborted: {reason}; nothing starts"),
        }];
    }
    if let Some(trip) = state.breaker {
        return after_trip(plan, state, trip);
    }
    if let Some(reason) = state.pause_reason() {
        return vec![Action::Wait {
            until: None,
            reason: format!("{reason}; nothing starts until resumed"),
        }];
    }
    let Some(ring) = plan.rings.get(state.ring) else {
        return vec![Action::Complete];
    };
    match state
        .current_batch(plan)
        .and_then(|index| Some((index, ring.batches.get(index)?)))
    {
        Some((index, batch)) => start_in_batch(plan, state, calendar, now, index, &batch.hosts),
        None => gate(plan, state, now),
    }
}

/// The breaker is tripped: start nothing and apply the policy.
fn after_trip(plan: &Plan, state: &RolloutState, trip: BreakerTrip) -> Vec<Action> {
    let mut out = vec![Action::TripBreaker {
        scope: trip.scope,
        failed: trip.failed,
        threshold: trip.threshold,
    }];
    let ring = plan.rings.get(trip.scope.ring());
    let scope_hosts: Vec<&String> = match (plan.policy.on_trip, ring) {
        (_, None) | (OnTrip::Pause, _) => {
            out.push(Action::Pause(format!(
                "breaker tripped: {} failures reached the threshold of {}; waiting for a person",
                trip.failed, trip.threshold
            )));
            return out;
        }
        (OnTrip::RollbackFailed | OnTrip::RollbackRing, Some(ring)) => ring.hosts().collect(),
        (OnTrip::RollbackBatch, Some(ring)) => ring
            .batches
            .get(trip.scope.batch())
            .map(|b| b.hosts.iter().collect())
            .unwrap_or_default(),
    };
    let targets: Vec<String> = scope_hosts
        .iter()
        .filter(|h| match plan.policy.on_trip {
            OnTrip::RollbackFailed => state.status(h) == HostStatus::Failed,
            _ => state.status(h).changed(),
        })
        .map(|h| (*h).clone())
        .collect();
    let running = scope_hosts
        .iter()
        .filter(|h| state.status(h).in_flight())
        .count();
    if !targets.is_empty() {
        out.push(Action::RollBack(targets));
    } else if running > 0 {
        out.push(Action::Wait {
            until: None,
            reason: format!("breaker tripped: waiting for {running} running hosts to finish"),
        });
    } else {
        out.push(Action::Wait {
            until: None,
            reason: "breaker tripped and rolled back; waiting for a person".to_owned(),
        });
    }
    out
}

/// Starts what may start in the current batch, or says why nothing can.
fn start_in_batch(
    plan: &Plan,
    state: &RolloutState,
    calendar: &FreezeCalendar,
    now: Timestamp,
    batch_index: usize,
    batch: &[String],
) -> Vec<Action> {
    let mut in_flight = state
        .hosts
        .values()
        .filter(|run| run.status.in_flight())
        .count();
    let mut unavailable: BTreeMap<&str, usize> = BTreeMap::new();
    for (name, run) in &state.hosts {
        if run.status.unavailable()
            && let Some(info) = plan.hosts.get(name)
        {
            for service in &info.services {
                *unavailable.entry(service.as_str()).or_default() += 1;
            }
        }
    }
    if let Some(window) = plan.implementation {
        if now < window.start {
            return vec![Action::Wait {
                until: Some(window.start),
                reason: format!(
                    "the change's implementation window opens at {}",
                    window.start
                ),
            }];
        }
        if now >= window.end {
            return vec![Action::Wait {
                until: None,
                reason: format!(
                    "the change's implementation window ended at {}: reschedule it",
                    window.end
                ),
            }];
        }
    }
    // A new batch waits out the change's detection window after the batch before it.
    let untouched = batch.iter().all(|h| state.status(h) == HostStatus::Pending);
    if untouched
        && batch_index > 0
        && plan.detection_window > SignedDuration::ZERO
        && let Some(previous) = plan
            .rings
            .get(state.ring)
            .and_then(|r| r.batches.get(batch_index - 1))
        && let Some(finished) = previous
            .hosts
            .iter()
            .filter_map(|h| state.hosts.get(h).and_then(|run| run.finished_at))
            .max()
    {
        let end = finished
            .checked_add(plan.detection_window)
            .unwrap_or(Timestamp::MAX);
        if now < end {
            return vec![Action::Wait {
                until: Some(end),
                reason: format!(
                    "watching batch {} for the change's detection window until {end}",
                    batch_index - 1
                ),
            }];
        }
    }
    let max = usize::try_from(plan.policy.max_concurrency).unwrap_or(usize::MAX);
    let mut starts = Vec::new();
    let mut outside_window = Vec::new();
    let mut frozen = Vec::new();
    let mut over_budget = Vec::new();
    let mut next_opening: Option<Timestamp> = None;
    let mut concurrency_full = false;
    for name in batch {
        if state.status(name) != HostStatus::Pending {
            continue;
        }
        if in_flight >= max {
            concurrency_full = true;
            break;
        }
        let Some(info) = plan.hosts.get(name) else {
            continue;
        };
        if !info.windows.is_empty() && !info.windows.iter().any(|w| w.may_start(now)) {
            let opening = info
                .windows
                .iter()
                .filter_map(|w| w.occurrences_after(now).next())
                .map(|o| o.start.timestamp())
                .min();
            next_opening = earliest(next_opening, opening);
            outside_window.push(name.as_str());
            continue;
        }
        if let Some(freeze) = calendar.blocking(name, now) {
            frozen.push(format!("{name} (freeze \"{}\")", freeze.name()));
            // Ask again when the frozen span holding now ends (another may follow).
            let horizon = now
                .checked_add(SignedDuration::from_hours(31 * 24))
                .unwrap_or(Timestamp::MAX);
            let thaw = TimeRange::new(now, horizon).and_then(|range| {
                calendar
                    .blocked(name, range)
                    .into_iter()
                    .filter(|(_, part)| part.contains(now))
                    .map(|(_, part)| part.end)
                    .max()
            });
            next_opening = earliest(next_opening, thaw);
            continue;
        }
        let full: Vec<&str> = info
            .services
            .iter()
            .filter(|s| {
                let budget = plan.budgets.get(s.as_str()).copied().unwrap_or(usize::MAX);
                unavailable.get(s.as_str()).copied().unwrap_or(0) >= budget
            })
            .map(String::as_str)
            .collect();
        if !full.is_empty() {
            over_budget.push(format!("{name} ({})", full.join(", ")));
            continue;
        }
        for service in &info.services {
            *unavailable.entry(service.as_str()).or_default() += 1;
        }
        in_flight += 1;
        starts.push(name.clone());
    }
    if !starts.is_empty() {
        return vec![Action::StartHosts(starts)];
    }
    let ring = plan
        .rings
        .get(state.ring)
        .map_or("?", |r| r.environment.as_str());
    let mut reasons = Vec::new();
    let running = batch.iter().filter(|h| state.status(h).in_flight()).count();
    if running > 0 {
        reasons.push(format!(
            "{running} hosts of batch {batch_index} of ring {ring} still running"
        ));
    }
    if concurrency_full {
        reasons.push(format!("max concurrency {max} reached"));
    }
    if !outside_window.is_empty() {
        reasons.push(format!(
            "outside their maintenance windows: {}",
            outside_window.join(", ")
        ));
    }
    if !frozen.is_empty() {
        reasons.push(format!("frozen: {}", frozen.join(", ")));
    }
    if !over_budget.is_empty() {
        reasons.push(format!(
            "disruption budget spent: {}",
            over_budget.join(", ")
        ));
    }
    vec![Action::Wait {
        until: next_opening,
        reason: reasons.join("; "),
    }]
}

fn earliest(a: Option<Timestamp>, b: Option<Timestamp>) -> Option<Timestamp> {
    match (a, b) {
        (Some(a), Some(b)) => Some(a.min(b)),
        (a, b) => a.or(b),
    }
}

/// The current ring is finished: complete, or check the gate into the next ring.
fn gate(plan: &Plan, state: &RolloutState, now: Timestamp) -> Vec<Action> {
    let Some(ring) = plan.rings.get(state.ring) else {
        return vec![Action::Complete];
    };
    let not_succeeded: Vec<String> = ring
        .hosts()
        .filter(|h| state.status(h) != HostStatus::Succeeded)
        .map(|h| format!("{h} ({})", state.status(h)))
        .collect();
    let next = state.ring + 1;
    let Some(next_ring) = plan.rings.get(next) else {
        if not_succeeded.is_empty() {
            return vec![Action::Complete];
        }
        return vec![Action::Wait {
            until: None,
            reason: format!(
                "ring {} finished with hosts that did not succeed: {}",
                ring.environment,
                not_succeeded.join(", ")
            ),
        }];
    };
    let mut reasons = Vec::new();
    let mut until = None;
    if !not_succeeded.is_empty() {
        reasons.push(format!(
            "ring {} has hosts that did not succeed: {}",
            ring.environment,
            not_succeeded.join(", ")
        ));
    }
    if let Some(finished) = state.soak_started(plan, state.ring) {
        let end = finished
            .checked_add(plan.policy.soak)
            .unwrap_or(Timestamp::MAX);
        if now < end {
            reasons.push(format!("ring {} soaks until {end}", ring.environment));
            until = Some(end);
        }
    }
    if plan.policy.manual_gate && !state.approved_gates.contains(&next) {
        reasons.push(format!(
            "the gate into ring {} needs a person's approval",
            next_ring.environment
        ));
    }
    let differ = parity(plan, state, next);
    if !differ.is_empty() {
        reasons.push(format!(
            "not validated by an earlier ring: {}",
            differ.join("; ")
        ));
    }
    if reasons.is_empty() {
        vec![Action::Promote { to_ring: next }]
    } else {
        vec![Action::Wait {
            until,
            reason: reasons.join("; "),
        }]
    }
}

/// Staging parity: each host of ring `next` must run an (OS, package versions) combination
/// that a succeeded host of an earlier ring ran. Returns how each other host differs.
pub fn parity(plan: &Plan, state: &RolloutState, next: usize) -> Vec<String> {
    let validated: BTreeSet<(&str, &BTreeMap<String, String>)> = plan
        .rings
        .iter()
        .take(next)
        .flat_map(|r| r.hosts())
        .filter(|h| state.status(h) == HostStatus::Succeeded)
        .filter_map(|h| plan.hosts.get(h))
        .map(|info| (info.os.as_str(), &info.versions))
        .collect();
    let Some(ring) = plan.rings.get(next) else {
        return Vec::new();
    };
    let mut out = Vec::new();
    for info in ring.hosts().filter_map(|h| plan.hosts.get(h)) {
        if validated.contains(&(info.os.as_str(), &info.versions)) {
            continue;
        }
        let mut how = Vec::new();
        if !validated.iter().any(|(os, _)| *os == info.os) {
            how.push(format!("os {}", info.os));
        }
        for (package, version) in &info.versions {
            if !validated
                .iter()
                .any(|(_, v)| v.get(package) == Some(version))
            {
                how.push(format!("{package} {version}"));
            }
        }
        if how.is_empty() {
            how.push("this combination of os and versions".to_owned());
        }
        out.push(format!("{}: {}", info.name, how.join(", ")));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::calendar::freeze::ExceptionDecision;
    use crate::calendar::{
        Freeze, FreezeException, FreezeRule, MaintenanceWindow, RecurrenceRule, Schedule, Scope,
        TimeRange,
    };
    use crate::rollout::plan::{
        BreakerThresholds, HostInfo, RolloutPolicy, Service, Size, default_ring_order, plan,
    };
    use jiff::SignedDuration;
    use jiff::civil::{date, time};
    use jiff::tz::TimeZone;

    fn ts(text: &str) -> Timestamp {
        text.parse().unwrap()
    }

    fn t0() -> Timestamp {
        ts("2026-06-01T00:00:00Z")
    }

    fn host(name: &str, env: &str) -> HostInfo {
        HostInfo {
            name: name.to_owned(),
            environment: env.to_owned(),
            services: vec![],
            time_zone: TimeZone::UTC,
            windows: vec![],
            os: "Ubuntu:22.04".to_owned(),
            versions: [("openssl".to_owned(), "3.0.2-1".to_owned())].into(),
        }
    }

    fn policy() -> RolloutPolicy {
        RolloutPolicy {
            ring_order: default_ring_order(),
            canary: None,
            batch: Size::Count(10),
            max_concurrency: 10,
            breaker: BreakerThresholds {
                per_batch: Size::Count(2),
                per_ring: Size::Count(3),
            },
            on_trip: OnTrip::Pause,
            soak: SignedDuration::ZERO,
            manual_gate: false,
            follow_the_sun: false,
        }
    }

    fn make(hosts: Vec<HostInfo>, policy: &RolloutPolicy) -> (Plan, RolloutState) {
        let plan = plan(hosts, &[], policy, t0()).unwrap();
        let state = RolloutState::new(&plan);
        (plan, state)
    }

    fn act(plan: &Plan, state: &RolloutState, now: Timestamp) -> Vec<Action> {
        next_actions(plan, state, &FreezeCalendar::default(), now)
    }

    fn start(plan: &Plan, state: &mut RolloutState, host: &str) {
        let obs = Observation::HostStarted {
            host: host.into(),
            at: t0(),
        };
        state.apply(plan, &obs).unwrap();
    }

    fn finish(plan: &Plan, state: &mut RolloutState, host: &str, ok: bool, at: Timestamp) {
        let host = host.to_owned();
        let obs = if ok {
            Observation::HostSucceeded { host, at }
        } else {
            Observation::HostFailed { host, at }
        };
        state.apply(plan, &obs).unwrap();
    }

    fn wait_reason(actions: &[Action]) -> String {
        match actions {
            [Action::Wait { reason, .. }] => reason.clone(),
            other => panic!("expected a wait, got {other:?}"),
        }
    }

    #[test]
    fn the_breaker_trips_at_the_threshold_not_before() {
        let hosts = (0..4).map(|i| host(&format!("h{i}"), "dev")).collect();
        let (plan, mut state) = make(hosts, &policy());
        assert_eq!(
            act(&plan, &state, t0()),
            [Action::StartHosts(vec![
                "h0".into(),
                "h1".into(),
                "h2".into(),
                "h3".into()
            ])]
        );
        for h in ["h0", "h1", "h2", "h3"] {
            start(&plan, &mut state, h);
        }
        finish(&plan, &mut state, "h0", false, t0());
        assert!(state.breaker.is_none(), "one failure of a threshold of two");
        // The agent's own rollback after a failure counts as a failure.
        let obs = Observation::HostRolledBack {
            host: "h1".into(),
            at: t0(),
        };
        state.apply(&plan, &obs).unwrap();
        let trip = state.breaker.unwrap();
        assert_eq!((trip.failed, trip.threshold), (2, 2));
        assert_eq!(state.phase(), RolloutPhase::Halted);
        assert_eq!(trip.scope, BreakerScope::Batch { ring: 0, batch: 0 });
        let actions = act(&plan, &state, t0());
        assert!(matches!(
            actions[0],
            Action::TripBreaker {
                failed: 2,
                threshold: 2,
                ..
            }
        ));
        assert!(matches!(actions[1], Action::Pause(_)));
    }

    #[test]
    fn rollback_policies_pick_their_hosts_after_running_ones_finish() {
        let mut p = policy();
        p.breaker.per_batch = Size::Count(1);
        p.batch = Size::Count(2);
        let hosts = (0..4).map(|i| host(&format!("h{i}"), "dev")).collect();
        for (on_trip, expected) in [
            (OnTrip::RollbackFailed, vec!["h2"]),
            (OnTrip::RollbackBatch, vec!["h2", "h3"]),
            (OnTrip::RollbackRing, vec!["h0", "h1", "h2", "h3"]),
        ] {
            p.on_trip = on_trip;
            let (plan, mut state) = make(Vec::clone(&hosts), &p);
            for h in ["h0", "h1"] {
                start(&plan, &mut state, h);
                finish(&plan, &mut state, h, true, t0());
            }
            start(&plan, &mut state, "h2");
            start(&plan, &mut state, "h3");
            finish(&plan, &mut state, "h2", false, t0());
            let actions = act(&plan, &state, t0());
            // What finished is rolled back now; the running h3 once it finishes.
            let now: Vec<String> = expected
                .iter()
                .filter(|h| **h != "h3")
                .map(|s| (*s).to_owned())
                .collect();
            assert_eq!(actions[1], Action::RollBack(now), "{on_trip:?}");
            finish(&plan, &mut state, "h3", true, t0());
            let actions = act(&plan, &state, t0());
            let expected: Vec<String> = expected.iter().map(|s| (*s).to_owned()).collect();
            assert_eq!(actions[1], Action::RollBack(expected), "{on_trip:?}");
        }
    }

    #[test]
    fn budgets_count_failed_hosts_until_they_recover() {
        let mut p = policy();
        p.breaker.per_batch = Size::Count(5);
        p.breaker.per_ring = Size::Count(5);
        let services = [Service {
            name: "web".into(),
            budget: Size::Count(1),
        }];
        let hosts = (0..3)
            .map(|i| {
                let mut h = host(&format!("w{i}"), "prod");
                h.services = vec!["web".into()];
                h
            })
            .collect();
        let plan = plan(hosts, &services, &p, t0()).unwrap();
        let mut state = RolloutState::new(&plan);
        let calendar = FreezeCalendar::default();
        assert_eq!(
            next_actions(&plan, &state, &calendar, t0()),
            [Action::StartHosts(vec!["w0".into()])]
        );
        start(&plan, &mut state, "w0");
        finish(&plan, &mut state, "w0", false, t0());
        let reason = wait_reason(&next_actions(&plan, &state, &calendar, t0()));
        assert!(
            reason.contains("disruption budget spent: w1 (web)"),
            "{reason}"
        );
        let obs = Observation::HostRolledBack {
            host: "w0".into(),
            at: t0(),
        };
        state.apply(&plan, &obs).unwrap();
        assert_eq!(
            next_actions(&plan, &state, &calendar, t0()),
            [Action::StartHosts(vec!["w1".into()])]
        );
    }

    #[test]
    fn windows_and_freezes_decide_when_a_host_may_start() {
        let mut p = policy();
        p.max_concurrency = 1;
        let mut h = host("db1", "prod");
        h.windows = vec![
            MaintenanceWindow::new(
                Schedule::Rrule {
                    rule: RecurrenceRule::parse("FREQ=DAILY").unwrap(),
                    dtstart: date(2026, 1, 1),
                },
                time(22, 0, 0, 0),
                SignedDuration::from_hours(4),
                TimeZone::UTC,
            )
            .unwrap()
            .with_cutoff(SignedDuration::from_hours(1))
            .unwrap(),
        ];
        let (plan, state) = make(vec![h], &p);
        let actions = act(&plan, &state, ts("2026-06-01T12:00:00Z"));
        assert_eq!(
            actions,
            [Action::Wait {
                until: Some(ts("2026-06-01T22:00:00Z")),
                reason: "outside their maintenance windows: db1".into()
            }]
        );
        // Inside the cutoff: the next opening is tomorrow's.
        let actions = act(&plan, &state, ts("2026-06-02T01:30:00Z"));
        assert!(
            matches!(&actions[..], [Action::Wait { until: Some(u), .. }] if *u == ts("2026-06-02T22:00:00Z"))
        );
        let night = ts("2026-06-01T23:00:00Z");
        assert_eq!(
            act(&plan, &state, night),
            [Action::StartHosts(vec!["db1".into()])]
        );

        let range = TimeRange::new(ts("2026-06-01T00:00:00Z"), ts("2026-06-03T00:00:00Z")).unwrap();
        let freeze = Freeze::new(
            "release",
            FreezeRule::Range(range),
            TimeZone::UTC,
            Scope::Everything,
        )
        .unwrap();
        let mut calendar = FreezeCalendar {
            freezes: vec![freeze],
            exceptions: vec![],
        };
        let actions = next_actions(&plan, &state, &calendar, night);
        let reason = wait_reason(&actions);
        assert!(reason.contains("db1 (freeze \"release\")"), "{reason}");
        assert!(
            matches!(&actions[..], [Action::Wait { until: Some(u), .. }] if *u == range.end),
            "{actions:?}"
        );
        calendar.exceptions.push(FreezeException {
            freeze: "release".into(),
            scope: Scope::Hosts(["db1".to_owned()].into()),
            range,
            justification: "exploited".into(),
            requested_by: "olivia".into(),
            decision: ExceptionDecision::Approved {
                by: "cab".into(),
                at: t0(),
            },
        });
        assert_eq!(
            next_actions(&plan, &state, &calendar, night),
            [Action::StartHosts(vec!["db1".into()])]
        );
    }

    #[test]
    fn the_gate_waits_for_soak_approval_and_parity() {
        let mut p = policy();
        p.soak = SignedDuration::from_hours(2);
        p.manual_gate = true;
        let mut odd = host("s2", "staging");
        odd.os = "Ubuntu:24.04".into();
        odd.versions.insert("openssl".into(), "3.0.2-9".into());
        let (plan, mut state) = make(vec![host("d1", "dev"), host("s1", "staging"), odd], &p);
        start(&plan, &mut state, "d1");
        let done = ts("2026-06-01T01:00:00Z");
        finish(&plan, &mut state, "d1", true, done);
        let actions = act(&plan, &state, done);
        let [Action::Wait { until, reason }] = &actions[..] else {
            panic!("{actions:?}")
        };
        assert_eq!(*until, Some(ts("2026-06-01T03:00:00Z")));
        assert!(
            reason.contains("soaks until 2026-06-01T03:00:00Z"),
            "{reason}"
        );
        assert!(reason.contains("approval"), "{reason}");
        assert!(
            reason.contains("s2: os Ubuntu:24.04, openssl 3.0.2-9"),
            "{reason}"
        );
        assert!(!reason.contains("s1"), "{reason}");

        let later = ts("2026-06-01T03:00:00Z");
        let approve = Observation::ApproveGate {
            to_ring: 1,
            by: "cab".into(),
        };
        state.apply(&plan, &approve).unwrap();
        let reason = wait_reason(&act(&plan, &state, later));
        assert!(
            !reason.contains("soak") && !reason.contains("approval"),
            "{reason}"
        );
    }

    #[test]
    fn nothing_starts_outside_the_changes_implementation_window() {
        let (mut plan, state) = make(vec![host("d1", "dev")], &policy());
        let window = TimeRange::new(ts("2026-06-01T10:00:00Z"), ts("2026-06-01T12:00:00Z"));
        plan.implementation = window;
        let actions = act(&plan, &state, t0());
        assert!(
            matches!(&actions[..], [Action::Wait { until: Some(u), .. }] if *u == ts("2026-06-01T10:00:00Z")),
            "{actions:?}"
        );
        let at = ts("2026-06-01T11:00:00Z");
        assert_eq!(
            act(&plan, &state, at),
            [Action::StartHosts(vec!["d1".into()])]
        );
        let reason = wait_reason(&act(&plan, &state, ts("2026-06-01T12:00:00Z")));
        assert!(
            reason.contains("ended") && reason.contains("reschedule"),
            "{reason}"
        );
    }

    #[test]
    fn a_person_retries_a_failed_host() {
        let mut p = policy();
        p.breaker.per_batch = Size::Count(5);
        p.breaker.per_ring = Size::Count(5);
        let (plan, mut state) = make(vec![host("d1", "dev"), host("p1", "prod")], &p);
        start(&plan, &mut state, "d1");
        finish(&plan, &mut state, "d1", false, t0());
        let reason = wait_reason(&act(&plan, &state, t0()));
        assert!(reason.contains("d1 (failed)"), "{reason}");
        let retry = |host: &str| Observation::Retry {
            host: host.into(),
            by: "sre".into(),
        };
        assert!(state.apply(&plan, &retry("p1")).is_err());
        state.apply(&plan, &retry("d1")).unwrap();
        assert_eq!(
            act(&plan, &state, t0()),
            [Action::StartHosts(vec!["d1".into()])]
        );
        assert!(state.hosts["d1"].failed, "the earlier failure still counts");
    }

    #[test]
    fn a_batch_waits_out_the_detection_window_of_the_one_before() {
        let mut p = policy();
        p.batch = Size::Count(1);
        let (mut plan, mut state) = make(vec![host("d1", "dev"), host("d2", "dev")], &p);
        plan.detection_window = SignedDuration::from_mins(15);
        start(&plan, &mut state, "d1");
        finish(&plan, &mut state, "d1", true, t0());
        let actions = act(&plan, &state, t0());
        let end = ts("2026-06-01T00:15:00Z");
        assert!(
            matches!(&actions[..], [Action::Wait { until: Some(u), .. }] if *u == end),
            "{actions:?}"
        );
        assert_eq!(
            act(&plan, &state, end),
            [Action::StartHosts(vec!["d2".into()])]
        );
    }

    #[test]
    fn job_outcomes_become_reports() {
        let at = t0();
        for (outcome, kind) in [
            (JobOutcome::Succeeded, "host-succeeded"),
            (JobOutcome::AlreadyCompliant, "host-succeeded"),
            (JobOutcome::RolledBack, "host-rolled-back"),
            (JobOutcome::Failed, "host-failed"),
            (JobOutcome::RollbackFailed, "host-failed"),
            (JobOutcome::Interrupted, "host-failed"),
        ] {
            let json = serde_json::to_value(Observation::from_job("h", outcome, at)).unwrap();
            assert_eq!(json["kind"], kind, "{outcome:?}");
        }
    }

    #[test]
    fn promotion_then_completion() {
        let (plan, mut state) = make(vec![host("d1", "dev"), host("p1", "prod")], &policy());
        start(&plan, &mut state, "d1");
        finish(&plan, &mut state, "d1", true, t0());
        assert_eq!(act(&plan, &state, t0()), [Action::Promote { to_ring: 1 }]);
        let early = Observation::Promoted { to_ring: 2 };
        assert!(state.apply(&plan, &early).is_err());
        state
            .apply(&plan, &Observation::Promoted { to_ring: 1 })
            .unwrap();
        assert_eq!(
            act(&plan, &state, t0()),
            [Action::StartHosts(vec!["p1".into()])]
        );
        start(&plan, &mut state, "p1");
        finish(&plan, &mut state, "p1", true, t0());
        assert_eq!(act(&plan, &state, t0()), [Action::Complete]);
        assert_eq!(state.phase(), RolloutPhase::Completed);
    }

    #[test]
    fn paused_aborted_and_alerting_rollouts_start_nothing() {
        let (plan, mut state) = make(vec![host("d1", "dev")], &policy());
        assert_eq!(state.phase(), RolloutPhase::Planned);
        let pause = Observation::Pause {
            by: "sre".into(),
            reason: "lunch".into(),
        };
        state.apply(&plan, &pause).unwrap();
        assert!(wait_reason(&act(&plan, &state, t0())).contains("lunch"));
        assert_eq!(state.phase(), RolloutPhase::Paused);
        let resume = Observation::Resume { by: "sre".into() };
        state.apply(&plan, &resume).unwrap();
        let alert = Observation::AlertFiring {
            alert: "p99".into(),
        };
        state.apply(&plan, &alert).unwrap();
        assert!(wait_reason(&act(&plan, &state, t0())).contains("p99"));
        let err = state.apply(&plan, &resume).unwrap_err().to_string();
        assert!(err.contains("p99"), "{err}");
        let resolved = Observation::AlertResolved {
            alert: "p99".into(),
        };
        state.apply(&plan, &resolved).unwrap();
        // Resolved is not resumed: a person looks first.
        assert!(wait_reason(&act(&plan, &state, t0())).contains("p99"));
        state.apply(&plan, &resume).unwrap();
        assert!(matches!(
            act(&plan, &state, t0())[..],
            [Action::StartHosts(_)]
        ));
        let abort = Observation::Abort {
            by: "sre".into(),
            reason: "wrong bundle".into(),
        };
        state.apply(&plan, &abort).unwrap();
        assert!(wait_reason(&act(&plan, &state, t0())).contains("wrong bundle"));
        assert_eq!(state.phase(), RolloutPhase::Aborted);
        assert_eq!(state.apply(&plan, &resume), Err(ApplyError::Aborted));
    }

    #[test]
    fn reports_that_contradict_the_state_are_refused() {
        let (plan, mut state) = make(vec![host("d1", "dev")], &policy());
        let done = Observation::HostSucceeded {
            host: "d1".into(),
            at: t0(),
        };
        let err = state.apply(&plan, &done).unwrap_err().to_string();
        assert_eq!(
            err,
            "host \"d1\" is pending: it cannot be reported succeeded"
        );
        let ghost = Observation::HostStarted {
            host: "nope".into(),
            at: t0(),
        };
        assert_eq!(
            state.apply(&plan, &ghost),
            Err(ApplyError::UnknownHost("nope".into()))
        );
        start(&plan, &mut state, "d1");
        start(&plan, &mut state, "d1"); // a repeat is harmless
        state.apply(&plan, &done).unwrap();
        state.apply(&plan, &done).unwrap();
    }

    #[test]
    fn observations_and_state_in_json() {
        let obs: Observation = serde_json::from_str(
            r#"{"kind":"host-failed","host":"d1","at":"2026-06-01T00:00:00Z"}"#,
        )
        .unwrap();
        assert_eq!(
            obs,
            Observation::HostFailed {
                host: "d1".into(),
                at: t0()
            }
        );
        assert!(
            serde_json::from_str::<Observation>(
                r#"{"kind":"host-failed","host":"d1","at":"2026-06-01T00:00:00Z","x":1}"#
            )
            .is_err()
        );
        let (plan, state) = make(vec![host("d1", "dev")], &policy());
        let json = serde_json::to_string(&state).unwrap();
        assert!(json.contains("\"pending\""), "{json}");
        assert_eq!(serde_json::from_str::<RolloutState>(&json).unwrap(), state);
        let actions = act(&plan, &state, t0());
        let json = serde_json::to_string(&actions).unwrap();
        assert_eq!(json, r#"[{"start-hosts":["d1"]}]"#);
        assert_eq!(serde_json::from_str::<Vec<Action>>(&json).unwrap(), actions);
    }
}
