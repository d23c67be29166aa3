//! One advance: fold in finished jobs and fresh inventories, ask the engine what to do now,
//! turn its answer into jobs, and write it all in one transaction against the version read.
//!
//! Read top to bottom, this is one advance: [`advance`] retries [`advance_once`], which folds
//! jobs ([`fold_jobs`]), verifies hosts ([`verify`]), polls Prometheus and HAProxy
//! (`signals.rs`), carries out the engine's actions ([`carry_out`]), compares rings, queues
//! rollbacks and decides the end. The decisions are the core's; this file does the I/O.

use std::collections::BTreeSet;

use jiff::Timestamp;
use sluice_core::change::{Action as ChangeAction, ChangeState};
use sluice_core::job::{Job, JobKind, JobReport, JobState, Preflight, RollbackPolicy, Target};
use sluice_core::rollout::{
    Action, DEFAULT_LATENCY_FACTOR, InventorySeen, Observation, RollbackPlan, RolloutOutcome,
    TrackPhase, UpdateVerdict, VerifyStep, hosts_to_roll_back, judge_rollback, judge_update,
    next_actions, on_governance_clock, outcome, ring_baseline, rings_due_for_baseline,
    rolled_back_scopes, verify_host,
};
use sluice_protocol::rollouts::{
    BaselineMeasures, EventDetail, HostJob, HostRollback, RingBaselineDetail,
};
use sluice_store::{Actor, RolloutJob, RolloutWrite, StoreError, StoredRollout};

use super::error::RolloutError;
use super::model::{Loaded, decode};
use super::signals::{lower_canary_weights, poll_prometheus, restore_canary_weights};
use super::{event, json_of, load, system_person};
use crate::state::AppState;

/// Advances one rollout as far as it goes now; retried when another writer got there first.
pub async fn advance(state: &AppState, id: &str) -> Result<StoredRollout, RolloutError> {
    let mut last = None;
    for _ in 0..5 {
        let _guard = state.rollouts.lock.lock().await;
        let loaded = load(state, id).await?;
        if loaded.stored.finished_at.is_some() {
            state.rollouts.watch(&loaded);
            return Ok(loaded.stored);
        }
        match advance_once(state, loaded).await {
            Ok(stored) => {
                if let Ok(advanced) = decode(stored.clone()) {
                    state.rollouts.watch(&advanced);
                }
                state.rollouts.moved(id);
                return Ok(stored);
            }
            Err(Advance::Conflict(reason)) => last = Some(reason),
            Err(Advance::Failed(e)) => return Err(e),
        }
    }
    Err(RolloutError::Conflict(format!(
        "rollout {id} kept moving: {}",
        last.unwrap_or_default()
    )))
}

pub(super) enum Advance {
    Conflict(String),
    Failed(RolloutError),
}

impl From<RolloutError> for Advance {
    fn from(e: RolloutError) -> Self {
        Advance::Failed(e)
    }
}

impl Decision {
    /// Logs an event with this advance (`audit`: the audit chain records it too).
    pub(super) fn log(&mut self, detail: EventDetail, audit: bool) {
        self.events.push((detail, audit));
    }
}

impl From<StoreError> for Advance {
    fn from(e: StoreError) -> Self {
        match e {
            StoreError::Conflict(reason) => Advance::Conflict(reason),
            other => Advance::Failed(other.into()),
        }
    }
}

/// What one advance decided, before it is written.
pub(super) struct Decision {
    pub(super) write: RolloutWrite,
    /// Events to log, typed (made the write's events just before it is written), with
    /// whether the audit chain records each.
    pub(super) events: Vec<(EventDetail, bool)>,
    /// Agents to wake (hosts with new jobs or inventory requests).
    pub(super) wake: BTreeSet<String>,
    /// Hosts to ask for a fresh inventory.
    pub(super) inventories: BTreeSet<String>,
    /// Jobs to cancel (not yet taken).
    pub(super) cancel: Vec<String>,
    /// Hosts with an enrolled, unrevoked agent now: only they can be sent jobs.
    pub(super) live: BTreeSet<String>,
}

pub(super) async fn advance_once(
    state: &AppState,
    mut loaded: Loaded,
) -> Result<StoredRollout, Advance> {
    // Two clocks (see the module `rollouts`): the engine's decisions on the governance clock,
    // verification of store-stamped facts on the system's.
    let now = state.clock.now();
    let system_now = Timestamp::now();
    let id = loaded.stored.id.clone();
    let mut decision = Decision {
        write: RolloutWrite::default(),
        events: Vec::new(),
        wake: BTreeSet::new(),
        inventories: BTreeSet::new(),
        cancel: Vec::new(),
        live: state
            .store
            .agents()
            .await?
            .into_iter()
            .filter(|a| a.revoked_at.is_none())
            .map(|a| a.hostname)
            .collect(),
    };

    // 1. Finished jobs.
    let jobs = state.store.rollout_jobs(&id, true).await?;
    fold_jobs(&mut loaded, &jobs, now, system_now, &mut decision);

    // 2. Fresh inventories for hosts being verified or waiting for a reboot.
    verify(state, &mut loaded, now, system_now, &mut decision).await?;

    // 3. The Prometheus pause condition, when due.
    poll_prometheus(state, &mut loaded, now, &mut decision).await;

    // 4. What the engine says now, until it says the same thing twice. Canary hosts behind
    // HAProxy get their weight lowered before their jobs are queued.
    let assets = state.assets.get(&state.store).await?;
    let (freezes, _) = crate::calendar::freeze_calendar(state, &assets)
        .await
        .map_err(RolloutError::from)?;
    lower_canary_weights(state, &mut loaded, &freezes, now, &mut decision).await;
    let mut last_actions = Vec::new();
    for _ in 0..32 {
        let actions = next_actions(&loaded.plan, &loaded.state, &freezes, now);
        let moved = carry_out(&mut loaded, &actions, now, &mut decision);
        last_actions = actions;
        if !moved {
            break;
        }
    }
    restore_canary_weights(state, &mut loaded, false, &mut decision).await;
    compare_rings(state, &mut loaded, &mut decision).await?;

    // 5. After an abort: cancel what no agent took; roll back what an operator asked.
    if loaded.state.aborted.is_some() {
        let open = state.store.rollout_jobs(&id, true).await?;
        for job in &open {
            if job.job.state == JobState::Queued && job.kind == "update" {
                decision.cancel.push(job.job.job.id.clone());
                loaded.runtime.host_mut(&job.job.hostname).phase = TrackPhase::Cancelled;
            }
        }
        if loaded.runtime.rollback_requested.is_some() {
            let changed = hosts_to_roll_back(&loaded.state, &loaded.runtime);
            queue_rollbacks(&mut loaded, &changed, &mut decision);
        }
    }

    // 6. Has it ended?
    let open_jobs = state.store.rollout_jobs(&id, true).await?;
    let outstanding = open_jobs
        .iter()
        .any(|j| j.job.state.is_open() && !decision.cancel.contains(&j.job.job.id))
        || decision.write.jobs.iter().any(|_| true);
    let outcome = outcome(
        &loaded.plan,
        &loaded.state,
        &loaded.runtime,
        &last_actions,
        outstanding,
    );
    if let Some(outcome) = &outcome {
        // The change first: if this write is lost, the next advance finds the change moved
        // and only finishes the rollout.
        finish_change(state, &loaded, outcome, now).await?;
        if let RolloutOutcome::RolledBack(_) = outcome {
            let plan = &loaded.stored_plan;
            decision.write.rolled_back.extend(rolled_back_scopes(
                &loaded.state,
                |host| plan.environment(host),
                &plan.targets,
            ));
        }
        restore_canary_weights(state, &mut loaded, true, &mut decision).await;
        decision.log(
            EventDetail::Finish {
                outcome: outcome.kind(),
                reason: outcome.reason().to_owned(),
                breaker_trips: loaded.runtime.breaker_trips,
                rollbacks: loaded.runtime.rollbacks,
            },
            true,
        );
    }

    decision.write.events = std::mem::take(&mut decision.events)
        .into_iter()
        .map(|(detail, audit)| event(detail, audit))
        .collect::<Result<_, _>>()?;

    decision.write.state = json_of(&loaded.state)?;
    decision.write.runtime = json_of(&loaded.runtime)?;
    decision.write.phase = loaded.state.phase();
    decision.write.outcome = outcome.as_ref().map(RolloutOutcome::kind);
    let nothing_new = decision.write.jobs.is_empty()
        && decision.write.observed.is_empty()
        && decision.write.events.is_empty()
        && decision.write.outcome.is_none()
        && decision.cancel.is_empty()
        && decision.write.state == loaded.stored.state
        && decision.write.runtime == loaded.stored.runtime;
    if nothing_new {
        return Ok(loaded.stored);
    }
    let stored = state
        .store
        .advance_rollout(
            &id,
            loaded.stored.version,
            &decision.write,
            &Actor::system(),
        )
        .await?;
    for job in &decision.cancel {
        state.store.cancel_job(job, &Actor::system()).await?;
    }
    for host in &decision.inventories {
        match state.store.request_inventory(host, &Actor::system()).await {
            Ok(agent) => {
                state.job_signals.notify(&agent.id);
            }
            Err(e) => {
                tracing::warn!(rollout = %id, %host, error = %e, "asking for a fresh inventory failed")
            }
        }
    }
    if !decision.wake.is_empty() {
        for agent in state.store.agents().await? {
            if decision.wake.contains(&agent.hostname) {
                state.job_signals.notify(&agent.id);
            }
        }
    }
    Ok(stored)
}

/// Folds finished jobs into the state. `now` is the governance clock's, `system_now` the
/// system's: a job's end is a system-stamped fact, placed on the governance clock by its age
/// for the engine.
pub(super) fn fold_jobs(
    loaded: &mut Loaded,
    jobs: &[RolloutJob],
    now: Timestamp,
    system_now: Timestamp,
    decision: &mut Decision,
) {
    for job in jobs {
        let host = job.job.hostname.clone();
        let job_id = job.job.job.id.clone();
        if job.job.state == JobState::Cancelled {
            decision.write.observed.push(job_id);
            continue;
        }
        let Some(report) = &job.job.report else {
            continue;
        };
        decision.write.observed.push(job_id.clone());
        let ended = job
            .job
            .finished_at
            .as_deref()
            .and_then(|t| t.parse::<Timestamp>().ok());
        let at = ended.map_or(now, |ended| on_governance_clock(ended, system_now, now));
        if job.kind == "rollback" {
            fold_rollback(loaded, &host, &job_id, report, at, decision);
            continue;
        }
        // A report of an older attempt (before a retry) changes nothing now.
        if loaded.runtime.job(&host) != Some(job_id.as_str()) {
            continue;
        }
        let track = loaded.runtime.host_mut(&host);
        if track.before.is_none() {
            track.before = Some(
                report
                    .versions_before
                    .iter()
                    .filter_map(|(p, v)| v.clone().map(|v| (p.clone(), v)))
                    .collect(),
            );
        }
        let verdict = judge_update(
            report,
            &loaded.stored_plan.targets,
            loaded.stored_plan.hosts.get(&host).map(|h| &h.versions),
            loaded.stored_plan.max_latency_factor,
        );
        let observation = match verdict {
            UpdateVerdict::WrongVersions { note } => {
                loaded.runtime.set_note(&host, note.clone());
                decision.log(
                    EventDetail::HostFailed {
                        host: host.clone(),
                        job: Some(job_id.clone()),
                        reason: note,
                        versions: None,
                    },
                    true,
                );
                Observation::HostFailed {
                    host: host.clone(),
                    at,
                }
            }
            UpdateVerdict::TooSlow { regression, note } => {
                flag_regression(loaded, &host, &job_id, &regression, decision);
                loaded.runtime.set_note(&host, note.clone());
                decision.log(
                    EventDetail::HostFailed {
                        host: host.clone(),
                        job: Some(job_id.clone()),
                        reason: note,
                        versions: None,
                    },
                    true,
                );
                Observation::HostFailed {
                    host: host.clone(),
                    at,
                }
            }
            UpdateVerdict::Verify {
                regression,
                ask_now,
            } => {
                if let Some(regression) = regression {
                    flag_regression(loaded, &host, &job_id, &regression, decision);
                }
                // Verified like every host, by an inventory received after the job (by the
                // system clock that stamps both). The agent sends one by itself only when
                // packages changed: after a job that changed nothing, ask now rather than
                // after the grace.
                loaded.runtime.host_mut(&host).phase = TrackPhase::Verifying {
                    job_ended: ended.unwrap_or(system_now),
                    asked: ask_now,
                };
                if ask_now {
                    decision.inventories.insert(host.clone());
                }
                decision.log(
                    EventDetail::HostUpdated {
                        host: host.clone(),
                        job: job_id.clone(),
                        outcome: report.outcome,
                        versions: report.versions_after.clone(),
                    },
                    false,
                );
                continue;
            }
            UpdateVerdict::RolledBackByAgent { reason } => {
                loaded.runtime.rollbacks += 1;
                loaded
                    .runtime
                    .set_note(&host, format!("rolled back by its agent: {reason}"));
                decision.log(
                    EventDetail::HostRolledBack {
                        host: host.clone(),
                        job: job_id.clone(),
                        by: "agent".to_owned(),
                        reason: Some(reason),
                        versions: report.versions_after.clone(),
                    },
                    true,
                );
                Observation::HostRolledBack {
                    host: host.clone(),
                    at,
                }
            }
            UpdateVerdict::Failed { note } => {
                loaded.runtime.set_note(&host, note.clone());
                decision.log(
                    EventDetail::HostFailed {
                        host: host.clone(),
                        job: Some(job_id.clone()),
                        reason: note,
                        versions: Some(report.versions_after.clone()),
                    },
                    true,
                );
                Observation::HostFailed {
                    host: host.clone(),
                    at,
                }
            }
        };
        apply_logged(loaded, &observation, decision);
    }
}

/// Records a latency regression against the pre-update baseline.
fn flag_regression(
    loaded: &mut Loaded,
    host: &str,
    job_id: &str,
    regression: &str,
    decision: &mut Decision,
) {
    loaded
        .runtime
        .regressions
        .push(format!("{host}: {regression}"));
    decision.log(
        EventDetail::Regression {
            host: host.to_owned(),
            job: job_id.to_owned(),
            regression: regression.to_owned(),
        },
        true,
    );
}

/// Folds a rollback job's report: restored, or the host can no longer be rolled back.
pub(super) fn fold_rollback(
    loaded: &mut Loaded,
    host: &str,
    job_id: &str,
    report: &JobReport,
    at: Timestamp,
    decision: &mut Decision,
) {
    match judge_rollback(report) {
        Ok(()) => {
            loaded.runtime.rollbacks += 1;
            decision.log(
                EventDetail::HostRolledBack {
                    host: host.to_owned(),
                    job: job_id.to_owned(),
                    by: "rollout".to_owned(),
                    reason: None,
                    versions: report.versions_after.clone(),
                },
                true,
            );
            let observation = Observation::HostRolledBack {
                host: host.to_owned(),
                at,
            };
            apply_logged(loaded, &observation, decision);
        }
        Err(note) => {
            let track = loaded.runtime.host_mut(host);
            track.phase = TrackPhase::RollbackFailed {
                rollback_job: Some(job_id.to_owned()),
            };
            track.note = Some(note.clone());
            decision.log(
                EventDetail::RollbackFailed {
                    host: host.to_owned(),
                    job: Some(job_id.to_owned()),
                    reason: note,
                    versions: Some(report.versions_after.clone()),
                },
                true,
            );
        }
    }
}

pub(super) fn apply_logged(
    loaded: &mut Loaded,
    observation: &Observation,
    decision: &mut Decision,
) {
    if let Err(e) = loaded.state.apply(&loaded.plan, observation) {
        // A report that does not fit (a host already moved on) is kept in the log, not lost.
        decision.log(
            EventDetail::ReportRefused {
                observation: observation.clone(),
                reason: e.to_string(),
            },
            true,
        );
    }
}

/// Hosts being verified or waiting for a reboot: reads each one's latest inventory and asks
/// the core ([`verify_host`]) what it means. Freshness and timeouts are judged on the system
/// clock (`system_now`), which stamped the job's end and the inventory's receipt; the engine's
/// observations carry the governance clock's `now`.
pub(super) async fn verify(
    state: &AppState,
    loaded: &mut Loaded,
    now: Timestamp,
    system_now: Timestamp,
    decision: &mut Decision,
) -> Result<(), RolloutError> {
    let hosts: Vec<(String, TrackPhase)> = loaded
        .runtime
        .hosts
        .iter()
        .filter(|(_, t)| {
            matches!(
                t.phase,
                TrackPhase::Verifying { .. } | TrackPhase::AwaitingReboot { .. }
            )
        })
        .map(|(h, t)| (h.clone(), t.phase.clone()))
        .collect();
    for (host, phase) in hosts {
        let seen = match state.store.inventory(&host).await? {
            Some((inventory, packages)) => {
                inventory
                    .received_at
                    .parse::<Timestamp>()
                    .ok()
                    .map(|received_at| InventorySeen {
                        received_at,
                        reboot_required: inventory.reboot_required,
                        versions: packages
                            .into_iter()
                            .map(|p| (p.name, Some(p.version)))
                            .collect(),
                    })
            }
            None => None,
        };
        let step = verify_host(
            &phase,
            seen.as_ref(),
            &loaded.stored_plan.targets,
            loaded.stored_plan.hosts.get(&host).map(|h| &h.versions),
            system_now,
        );
        match step {
            VerifyStep::Wait | VerifyStep::StillRebooting => {}
            VerifyStep::Ask(next) => {
                loaded.runtime.host_mut(&host).phase = next;
                decision.inventories.insert(host);
            }
            VerifyStep::TimedOut { note } | VerifyStep::WrongVersions { note } => {
                let track = loaded.runtime.host_mut(&host);
                track.phase = TrackPhase::Updating;
                track.note = Some(note.clone());
                decision.log(
                    EventDetail::HostFailed {
                        host: host.clone(),
                        job: None,
                        reason: note,
                        versions: None,
                    },
                    true,
                );
                apply_logged(loaded, &Observation::HostFailed { host, at: now }, decision);
            }
            VerifyStep::PendingReboot => {
                loaded.runtime.host_mut(&host).phase = TrackPhase::AwaitingReboot {
                    last_asked: system_now,
                };
                decision.log(EventDetail::HostPendingReboot { host: host.clone() }, true);
                apply_logged(
                    loaded,
                    &Observation::HostPendingReboot { host, at: now },
                    decision,
                );
            }
            VerifyStep::Succeeded { after_reboot } => {
                loaded.runtime.host_mut(&host).phase = TrackPhase::Updating;
                decision.log(
                    EventDetail::HostSucceeded {
                        host: host.clone(),
                        verified: "fresh inventory shows the target versions".to_owned(),
                        after_reboot,
                    },
                    true,
                );
                apply_logged(
                    loaded,
                    &Observation::HostSucceeded { host, at: now },
                    decision,
                );
            }
        }
    }
    Ok(())
}

/// Carries out the engine's actions; true when the state moved (ask again).
pub(super) fn carry_out(
    loaded: &mut Loaded,
    actions: &[Action],
    now: Timestamp,
    decision: &mut Decision,
) -> bool {
    let mut moved = false;
    loaded.runtime.waiting = None;
    loaded.runtime.wait_until = None;
    for action in actions {
        match action {
            Action::StartHosts(hosts) => {
                let mut started = Vec::new();
                for host in hosts {
                    if !decision.live.contains(host) {
                        // Its agent was revoked since the rollout started: a failure, not a
                        // job that would wait forever.
                        let note = "no enrolled agent (revoked?): nothing can run its job";
                        loaded.runtime.set_note(host, note);
                        decision.log(
                            EventDetail::HostFailed {
                                host: host.clone(),
                                job: None,
                                reason: note.to_owned(),
                                versions: None,
                            },
                            true,
                        );
                        let at = now;
                        for observation in [
                            Observation::HostStarted {
                                host: host.clone(),
                                at,
                            },
                            Observation::HostFailed {
                                host: host.clone(),
                                at,
                            },
                        ] {
                            apply_logged(loaded, &observation, decision);
                        }
                        continue;
                    }
                    let Some(job) = update_job(loaded, host) else {
                        // Nothing of the bundle is installed there: nothing to change.
                        loaded.runtime.set_note(
                            host,
                            "none of the bundle's packages is installed: nothing to update",
                        );
                        apply_logged(
                            loaded,
                            &Observation::HostStarted {
                                host: host.clone(),
                                at: now,
                            },
                            decision,
                        );
                        apply_logged(
                            loaded,
                            &Observation::HostSucceeded {
                                host: host.clone(),
                                at: now,
                            },
                            decision,
                        );
                        continue;
                    };
                    loaded.runtime.host_mut(host).job = Some(job.id.clone());
                    started.push(HostJob {
                        host: host.clone(),
                        job: job.id.clone(),
                    });
                    decision.wake.insert(host.clone());
                    decision
                        .write
                        .jobs
                        .push((host.clone(), "update".to_owned(), job));
                    apply_logged(
                        loaded,
                        &Observation::HostStarted {
                            host: host.clone(),
                            at: now,
                        },
                        decision,
                    );
                }
                let position = hosts.first().and_then(|h| loaded.plan.position(h));
                decision.log(
                    EventDetail::HostsStarted {
                        hosts: started,
                        ring: position.map(|p| p.0),
                        batch: position.map(|p| p.1),
                    },
                    true,
                );
                moved = true;
            }
            Action::Wait { until, reason } => {
                loaded.runtime.waiting = Some(reason.clone());
                loaded.runtime.wait_until = *until;
            }
            Action::Pause(reason) => {
                if loaded.runtime.last_pause.as_ref() != Some(reason) {
                    loaded.runtime.last_pause = Some(reason.clone());
                    decision.log(
                        EventDetail::Paused {
                            reason: reason.clone(),
                        },
                        true,
                    );
                }
                loaded.runtime.waiting = Some(reason.clone());
            }
            Action::TripBreaker {
                scope,
                failed,
                threshold,
            } => {
                let at = loaded.state.breaker.map(|b| b.at);
                if at.is_some() && loaded.runtime.trip_recorded != at {
                    loaded.runtime.trip_recorded = at;
                    loaded.runtime.breaker_trips += 1;
                    decision.log(
                        EventDetail::BreakerTripped {
                            scope: *scope,
                            failed: *failed,
                            threshold: *threshold,
                            on_trip: loaded.plan.policy.on_trip,
                        },
                        true,
                    );
                }
            }
            Action::RollBack(hosts) => {
                let hosts = hosts.clone();
                queue_rollbacks(loaded, &hosts, decision);
            }
            Action::Promote { to_ring } => {
                apply_logged(
                    loaded,
                    &Observation::Promoted { to_ring: *to_ring },
                    decision,
                );
                let environment = loaded
                    .plan
                    .rings
                    .get(*to_ring)
                    .map(|r| r.environment.clone());
                decision.log(
                    EventDetail::Promoted {
                        to_ring: *to_ring,
                        environment,
                    },
                    true,
                );
                moved = true;
            }
            Action::Complete => {}
        }
    }
    moved
}

/// Each ring the rollout moved past (or every ring, once all hosts succeeded) is compared
/// with its pre-update baseline once: the median probe latency and the 1-minute load over the
/// ring's hosts, before and after their updates. A ring whose probes got slower than the
/// change's latency factor (×2 without one) is flagged.
pub(super) async fn compare_rings(
    state: &AppState,
    loaded: &mut Loaded,
    decision: &mut Decision,
) -> Result<(), RolloutError> {
    let due = rings_due_for_baseline(&loaded.plan, &loaded.state, &loaded.runtime);
    if due.is_empty() {
        return Ok(());
    }
    let jobs = state.store.rollout_jobs(&loaded.stored.id, false).await?;
    let limit = loaded
        .stored_plan
        .max_latency_factor
        .unwrap_or(DEFAULT_LATENCY_FACTOR);
    for r in due {
        loaded.runtime.compared.insert(r);
        let ring = &loaded.plan.rings[r];
        let hosts: BTreeSet<&String> = ring.hosts().collect();
        let reports: Vec<&JobReport> = jobs
            .iter()
            .filter(|j| j.kind == "update" && hosts.contains(&j.job.hostname))
            .filter(|j| loaded.runtime.job(&j.job.hostname) == Some(j.job.job.id.as_str()))
            .filter_map(|j| j.job.report.as_ref())
            .collect();
        let baseline = ring_baseline(&reports, limit);
        let detail = RingBaselineDetail {
            ring: r,
            environment: ring.environment.clone(),
            hosts: hosts.len(),
            measured: baseline.as_ref().map(|baseline| BaselineMeasures {
                measured: baseline.measured,
                probe_ms_before: baseline.probe_before,
                probe_ms_after: baseline.probe_after,
                load1_before: baseline.load_before,
                load1_after: baseline.load_after,
                regression: baseline.regression.is_some(),
            }),
        };
        if let Some(regression) = baseline.as_ref().and_then(|b| b.regression.as_ref()) {
            loaded
                .runtime
                .regressions
                .push(format!("ring {}: {regression}", ring.environment));
        }
        decision.log(EventDetail::RingBaseline(detail), true);
    }
    Ok(())
}

/// The update job for `host`: the bundle's packages installed there, at their targets.
pub(super) fn update_job(loaded: &mut Loaded, host: &str) -> Option<Job> {
    let installed = loaded.stored_plan.hosts.get(host)?;
    let targets: Vec<Target> = loaded
        .stored_plan
        .targets
        .iter()
        .filter(|(package, _)| installed.versions.contains_key(*package))
        .map(|(package, version)| Target {
            package: package.clone(),
            version: version.clone(),
        })
        .collect();
    if targets.is_empty() {
        return None;
    }
    let attempt = loaded.runtime.host_mut(host).attempts;
    let id = &loaded.stored.id;
    Some(Job {
        id: format!("{id}-{host}-u{attempt}"),
        idempotency_key: format!("rollout:{id}:{host}:update:{attempt}"),
        kind: JobKind::Update,
        targets,
        preflight: loaded.spec.job.preflight.clone(),
        checks: loaded.spec.job.checks.clone(),
        rollback: loaded.spec.job.rollback.clone(),
        package_manager: None,
    })
}

/// Queues a rollback job for each host the core says to ([`plan_rollback`]): back to the
/// versions it had before its update, undoing that job's configuration changes too. A host
/// whose rollback was already decided (queued, done or failed) is left alone.
///
/// [`plan_rollback`]: sluice_core::rollout::plan_rollback
pub(super) fn queue_rollbacks(loaded: &mut Loaded, hosts: &[String], decision: &mut Decision) {
    let id = loaded.stored.id.clone();
    let mut queued = Vec::new();
    for host in hosts {
        let plan = sluice_core::rollout::plan_rollback(
            &loaded.runtime,
            host,
            decision.live.contains(host),
            &loaded.stored_plan.targets,
        );
        let targets: Vec<Target> = match plan {
            RollbackPlan::AlreadyDecided => continue,
            RollbackPlan::Impossible { note, reason } => {
                let track = loaded.runtime.host_mut(host);
                track.phase = TrackPhase::RollbackFailed { rollback_job: None };
                track.note = Some(note.to_owned());
                decision.log(
                    EventDetail::RollbackFailed {
                        host: host.clone(),
                        job: None,
                        reason: reason.to_owned(),
                        versions: None,
                    },
                    true,
                );
                continue;
            }
            RollbackPlan::Queue(targets) => targets,
        };
        let attempt = loaded.runtime.attempt(host);
        let job = Job {
            id: format!("{id}-{host}-r{attempt}"),
            idempotency_key: format!("rollout:{id}:{host}:rollback:{attempt}"),
            kind: JobKind::Rollback {
                of_job: loaded.runtime.job(host).map(str::to_owned),
            },
            targets,
            preflight: Preflight::default(),
            checks: loaded.spec.job.checks.clone(),
            rollback: RollbackPolicy::default(),
            package_manager: None,
        };
        loaded.runtime.host_mut(host).phase = TrackPhase::RollingBack {
            rollback_job: job.id.clone(),
        };
        queued.push(HostRollback {
            host: host.clone(),
            job: job.id.clone(),
            to: job.targets.clone(),
        });
        decision.wake.insert(host.clone());
        decision
            .write
            .jobs
            .push((host.clone(), "rollback".to_owned(), job));
    }
    if !queued.is_empty() {
        decision.log(EventDetail::RollbackStarted { hosts: queued }, true);
    }
}

/// Moves the change to match the rollout's end, as `system`, unless it already moved.
pub(super) async fn finish_change(
    state: &AppState,
    loaded: &Loaded,
    outcome: &RolloutOutcome,
    now: Timestamp,
) -> Result<(), RolloutError> {
    let Some(stored) = state.store.change(&loaded.stored.change_id).await? else {
        return Ok(());
    };
    if stored.change.state != ChangeState::Implementing {
        return Ok(());
    }
    let reason = format!("rollout {}: {}", loaded.stored.id, outcome.reason());
    let action = match outcome {
        RolloutOutcome::Completed => ChangeAction::Complete,
        RolloutOutcome::RolledBack(_) => ChangeAction::RollBack { reason },
        RolloutOutcome::Aborted(_) | RolloutOutcome::Failed(_) => ChangeAction::Fail { reason },
    };
    crate::changes::take_action(
        state,
        &stored,
        &system_person(),
        &Actor::system(),
        action,
        now,
    )
    .await?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use serde_json::json;
    use sluice_core::job::JobOutcome;
    use sluice_core::rollout::{Bookkeeping, HostStatus};
    use sluice_store::StoredJob;

    use super::*;
    use crate::rollouts::default_policy;
    use crate::rollouts::model::{StoredHost, StoredPlan};

    fn plan_with(host: &str, installed: &[(&str, &str)]) -> StoredPlan {
        StoredPlan {
            rings: Vec::new(),
            hosts: [(
                host.to_owned(),
                StoredHost {
                    environment: "prod".into(),
                    services: Vec::new(),
                    time_zone: "UTC".into(),
                    windows: Vec::new(),
                    os: "Debian:12".into(),
                    versions: installed
                        .iter()
                        .map(|(p, v)| ((*p).to_owned(), (*v).to_owned()))
                        .collect(),
                },
            )]
            .into(),
            budgets: BTreeMap::new(),
            policy: default_policy(),
            implementation: None,
            detection_window: jiff::SignedDuration::ZERO,
            targets: [("openssl", "3.0.2-2"), ("curl", "8.0-2")]
                .iter()
                .map(|(p, v)| ((*p).to_owned(), (*v).to_owned()))
                .collect(),
            max_latency_factor: None,
        }
    }

    /// A rollout of `plan_with("web1", …)` whose update job for web1 is running, and the
    /// agent's report of that job with `outcome`.
    fn running(outcome: JobOutcome) -> (Loaded, RolloutJob) {
        let stored_plan = plan_with("web1", &[("openssl", "3.0.2-1")]);
        let plan = stored_plan.plan().unwrap();
        let mut state = sluice_core::rollout::RolloutState::new(&plan);
        state.hosts.get_mut("web1").unwrap().status = HostStatus::Running;
        let mut runtime = Bookkeeping::default();
        runtime.host_mut("web1").job = Some("job-1".to_owned());
        let loaded = Loaded {
            stored: StoredRollout {
                id: "RO-1".into(),
                change_id: "CHG-1".into(),
                spec: json!({"change": "CHG-1"}),
                plan: json!({}),
                state: json!({}),
                runtime: json!({}),
                phase: sluice_core::rollout::RolloutPhase::Running,
                outcome: None,
                version: 1,
                created_by: "alice".into(),
                created_at: "2026-06-01T00:00:00Z".into(),
                updated_at: "2026-06-01T00:00:00Z".into(),
                finished_at: None,
            },
            spec: serde_json::from_value(json!({"change": "CHG-1"})).unwrap(),
            stored_plan,
            plan,
            state,
            runtime,
        };
        let job = Job {
            id: "job-1".into(),
            idempotency_key: "RO-1-web1-u1".into(),
            kind: JobKind::Update,
            targets: Vec::new(),
            preflight: Preflight::default(),
            checks: Vec::new(),
            rollback: RollbackPolicy::default(),
            package_manager: None,
        };
        let report = JobReport {
            job_id: "job-1".into(),
            idempotency_key: "RO-1-web1-u1".into(),
            outcome,
            steps: Vec::new(),
            versions_before: [("openssl".to_owned(), Some("3.0.2-2".to_owned()))].into(),
            versions_after: [("openssl".to_owned(), Some("3.0.2-2".to_owned()))].into(),
            unsettled: BTreeMap::new(),
            measurements_before: None,
            measurements_after: None,
            interrupted_at: None,
        };
        let reported = RolloutJob {
            kind: "update".into(),
            observed_at: None,
            job: StoredJob {
                job,
                agent_id: "agent-1".into(),
                hostname: "web1".into(),
                state: outcome.into(),
                created_by: "system".into(),
                created_at: "2026-06-01T00:00:00Z".into(),
                claimed_at: Some("2026-06-01T00:00:01Z".into()),
                finished_at: Some("2026-06-01T00:00:05Z".into()),
                report: Some(report),
            },
        };
        (loaded, reported)
    }

    fn decision() -> Decision {
        Decision {
            write: RolloutWrite::default(),
            events: Vec::new(),
            wake: BTreeSet::new(),
            inventories: BTreeSet::new(),
            cancel: Vec::new(),
            live: ["web1".to_owned()].into(),
        }
    }

    #[test]
    fn an_already_compliant_host_waits_for_an_inventory_after_its_job_and_is_asked_for_it() {
        let now: Timestamp = "2026-06-01T00:00:06Z".parse().unwrap();
        let ended: Timestamp = "2026-06-01T00:00:05Z".parse().unwrap();
        for outcome in [JobOutcome::AlreadyCompliant, JobOutcome::Succeeded] {
            let (mut loaded, reported) = running(outcome);
            let mut decision = decision();
            fold_jobs(&mut loaded, &[reported], now, now, &mut decision);
            // Not succeeded on the report, nor on the inventory on record: verifying, from the
            // job's end, like any host whose job succeeded.
            assert_eq!(
                loaded.state.status("web1"),
                HostStatus::Running,
                "{outcome:?}"
            );
            let asked = outcome == JobOutcome::AlreadyCompliant;
            assert_eq!(
                loaded.runtime.phase("web1"),
                &TrackPhase::Verifying {
                    job_ended: ended,
                    asked
                },
                "{outcome:?}"
            );
            // The agent of a job that changed nothing sends no inventory by itself: the server
            // asks at once. After a job that changed packages it waits for the agent's own.
            assert_eq!(decision.inventories.contains("web1"), asked, "{outcome:?}");
        }
    }
}
