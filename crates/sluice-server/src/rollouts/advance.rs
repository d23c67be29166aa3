//! One advance: fold in finished jobs and fresh inventories, ask the engine what to do now,
//! turn its answer into jobs, and write it all in one transaction against the version read.

use std::collections::{BTreeMap, BTreeSet};

use jiff::{SignedDuration, Timestamp};
use serde_json::json;
use sluice_core::change::{Action as ChangeAction, ChangeState};
use sluice_core::job::{Job, JobKind, JobOutcome, JobReport, Preflight, RollbackPolicy, Target};
use sluice_core::rollout::{Action, HostStatus, Observation, OnTrip, RolloutPhase, next_actions};
use sluice_store::{Actor, RolloutJob, RolloutWrite, StoreError, StoredRollout};

use crate::error::ApiError;
use crate::state::AppState;

use super::signals::*;
use super::*;

/// How long a host whose job succeeded may wait for a fresh inventory before it counts as
/// failed (the agent sends one right after its report; this covers an agent that died).
pub const VERIFY_TIMEOUT: SignedDuration = SignedDuration::from_mins(3);

/// How long after a job's end the server waits for the agent's own inventory before asking.
pub(super) const INVENTORY_GRACE: SignedDuration = SignedDuration::from_secs(10);

/// How often a host waiting for a reboot is asked for an inventory again.
pub(super) const REBOOT_POLL: SignedDuration = SignedDuration::from_secs(60);

pub(super) enum Advance {
    Conflict(String),
    Failed(ApiError),
}

impl From<ApiError> for Advance {
    fn from(e: ApiError) -> Self {
        Advance::Failed(e)
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
    let now = state.clock.now();
    let id = loaded.stored.id.clone();
    let mut decision = Decision {
        write: RolloutWrite::default(),
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
    fold_jobs(&mut loaded, &jobs, now, &mut decision);

    // 2. Fresh inventories for hosts being verified or waiting for a reboot.
    verify(state, &mut loaded, now, &mut decision).await?;

    // 3. The Prometheus pause condition, when due.
    poll_prometheus(state, &mut loaded, now, &mut decision).await;

    // 4. What the engine says now, until it says the same thing twice. Canary hosts behind
    // HAProxy get their weight lowered before their jobs are queued.
    let assets = state.assets.get(&state.store).await?;
    let (freezes, _) = crate::calendar::freeze_calendar(state, &assets)
        .await
        .map_err(ApiError::from)?;
    lower_canary_weights(state, &mut loaded, &freezes, now, &mut decision).await;
    let mut last_actions = Vec::new();
    for _ in 0..32 {
        let actions = next_actions(&loaded.plan, &loaded.state, &freezes, now);
        let moved = carry_out(&mut loaded, &actions, now, &mut decision)?;
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
            if job.job.state == "queued" && job.kind == "update" {
                decision.cancel.push(job.job.job.id.clone());
                loaded.runtime.cancelled.insert(job.job.hostname.clone());
            }
        }
        if loaded.runtime.rollback_requested.is_some() {
            let changed: Vec<String> = loaded
                .state
                .hosts
                .iter()
                .filter(|(h, run)| {
                    matches!(
                        run.status,
                        HostStatus::Succeeded | HostStatus::Failed | HostStatus::PendingReboot
                    ) && !loaded.runtime.cancelled.contains(*h)
                })
                .map(|(h, _)| h.clone())
                .collect();
            queue_rollbacks(&mut loaded, &changed, now, &mut decision);
        }
    }

    // 6. Has it ended?
    let open_jobs = state.store.rollout_jobs(&id, true).await?;
    let outstanding = open_jobs.iter().any(|j| {
        (j.job.state == "queued" || j.job.state == "claimed")
            && !decision.cancel.contains(&j.job.job.id)
    }) || decision.write.jobs.iter().any(|_| true);
    let outcome = outcome(&loaded, &last_actions, outstanding);
    if let Some((outcome, reason)) = &outcome {
        // The change first: if this write is lost, the next advance finds the change moved
        // and only finishes the rollout.
        finish_change(state, &loaded, outcome, reason, now).await?;
        if outcome == "rolled-back" {
            for (scope, package, version) in rolled_back_scopes(&loaded) {
                decision.write.rolled_back.push((scope, package, version));
            }
        }
        restore_canary_weights(state, &mut loaded, true, &mut decision).await;
        decision.write.events.push(event(
            "finish",
            json!({"outcome": outcome, "reason": reason, "breaker_trips": loaded.runtime.breaker_trips, "rollbacks": loaded.runtime.rollbacks}),
            true,
        ));
    }

    decision.write.state = json_of(&loaded.state)?;
    decision.write.runtime = json_of(&loaded.runtime)?;
    decision.write.phase = phase_of(&loaded).to_owned();
    decision.write.outcome = outcome.map(|(o, _)| o);
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

/// Folds finished jobs into the state.
pub(super) fn fold_jobs(
    loaded: &mut Loaded,
    jobs: &[RolloutJob],
    now: Timestamp,
    decision: &mut Decision,
) {
    for job in jobs {
        let host = job.job.hostname.clone();
        let job_id = job.job.job.id.clone();
        if job.job.state == "cancelled" {
            decision.write.observed.push(job_id);
            continue;
        }
        let Some(report) = &job.job.report else {
            continue;
        };
        decision.write.observed.push(job_id.clone());
        let at = job
            .job
            .finished_at
            .as_deref()
            .and_then(|t| t.parse::<Timestamp>().ok())
            .unwrap_or(now);
        if job.kind == "rollback" {
            fold_rollback(loaded, &host, &job_id, report, at, decision);
            continue;
        }
        // A report of an older attempt (before a retry) changes nothing now.
        if loaded.runtime.jobs.get(&host) != Some(&job_id) {
            continue;
        }
        loaded
            .runtime
            .before
            .entry(host.clone())
            .or_insert_with(|| {
                report
                    .versions_before
                    .iter()
                    .filter_map(|(p, v)| v.clone().map(|v| (p.clone(), v)))
                    .collect()
            });
        let observation = match report.outcome {
            JobOutcome::Succeeded | JobOutcome::AlreadyCompliant => {
                match wrong_versions(
                    &loaded.stored_plan.targets,
                    &report.versions_after,
                    &loaded.stored_plan,
                    &host,
                ) {
                    Some(wrong) => {
                        let note = format!("verification: the job's report shows {wrong}");
                        loaded.runtime.notes.insert(host.clone(), note.clone());
                        decision.write.events.push(event(
                            "host-failed",
                            json!({"host": host, "job": job_id, "reason": note}),
                            true,
                        ));
                        Some(Observation::HostFailed {
                            host: host.clone(),
                            at,
                        })
                    }
                    None => {
                        if let Some(regression) = regression(loaded, report) {
                            loaded
                                .runtime
                                .regressions
                                .push(format!("{host}: {regression}"));
                            decision.write.events.push(event(
                                "regression",
                                json!({"host": host, "job": job_id, "regression": regression}),
                                true,
                            ));
                            // The change's own rollback criterion: beyond its latency factor
                            // the host counts as failed (without one, it is only flagged).
                            if loaded.stored_plan.max_latency_factor.is_some() {
                                let note = format!("rollback criteria: latency {regression}");
                                loaded.runtime.notes.insert(host.clone(), note.clone());
                                decision.write.events.push(event(
                                    "host-failed",
                                    json!({"host": host, "job": job_id, "reason": note}),
                                    true,
                                ));
                                apply_logged(
                                    loaded,
                                    &Observation::HostFailed {
                                        host: host.clone(),
                                        at,
                                    },
                                    decision,
                                );
                                continue;
                            }
                        }
                        loaded.runtime.verifying.insert(host.clone(), at);
                        loaded.runtime.inventory_asked.remove(&host);
                        if report.outcome == JobOutcome::AlreadyCompliant {
                            // Verified like every host, by an inventory received after the job.
                            // The agent sends one by itself only when packages changed: ask now
                            // rather than after the grace.
                            loaded.runtime.inventory_asked.insert(host.clone());
                            decision.inventories.insert(host.clone());
                        }
                        decision.write.events.push(event(
                            "host-updated",
                            json!({"host": host, "job": job_id, "outcome": report.outcome.as_str(), "versions": report.versions_after}),
                            false,
                        ));
                        None
                    }
                }
            }
            JobOutcome::RolledBack => {
                loaded.runtime.rollbacks += 1;
                let note = failed_step(report);
                loaded
                    .runtime
                    .notes
                    .insert(host.clone(), format!("rolled back by its agent: {note}"));
                decision.write.events.push(event(
                    "host-rolled-back",
                    json!({"host": host, "job": job_id, "by": "agent", "reason": note, "versions": report.versions_after}),
                    true,
                ));
                Some(Observation::HostRolledBack {
                    host: host.clone(),
                    at,
                })
            }
            JobOutcome::Failed | JobOutcome::RollbackFailed | JobOutcome::Interrupted => {
                let note = format!("{}: {}", report.outcome.as_str(), failed_step(report));
                loaded.runtime.notes.insert(host.clone(), note.clone());
                decision.write.events.push(event(
                    "host-failed",
                    json!({"host": host, "job": job_id, "reason": note, "versions": report.versions_after}),
                    true,
                ));
                Some(Observation::HostFailed {
                    host: host.clone(),
                    at,
                })
            }
        };
        if let Some(observation) = observation {
            apply_logged(loaded, &observation, decision);
        }
    }
}

pub(super) fn fold_rollback(
    loaded: &mut Loaded,
    host: &str,
    job_id: &str,
    report: &JobReport,
    at: Timestamp,
    decision: &mut Decision,
) {
    match report.outcome {
        JobOutcome::Succeeded | JobOutcome::AlreadyCompliant => {
            loaded.runtime.rollbacks += 1;
            loaded.runtime.verifying.remove(host);
            loaded.runtime.awaiting_reboot.remove(host);
            decision.write.events.push(event(
                "host-rolled-back",
                json!({"host": host, "job": job_id, "by": "rollout", "versions": report.versions_after}),
                true,
            ));
            let observation = Observation::HostRolledBack {
                host: host.to_owned(),
                at,
            };
            apply_logged(loaded, &observation, decision);
        }
        _ => {
            loaded.runtime.rollback_failed.insert(host.to_owned());
            let note = format!(
                "rollback {}: {}",
                report.outcome.as_str(),
                failed_step(report)
            );
            loaded.runtime.notes.insert(host.to_owned(), note.clone());
            decision.write.events.push(event(
                "rollback-failed",
                json!({"host": host, "job": job_id, "reason": note, "versions": report.versions_after}),
                true,
            ));
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
        decision.write.events.push(event(
            "report-refused",
            json!({"observation": observation, "reason": e.to_string()}),
            true,
        ));
    }
}

pub(super) fn failed_step(report: &JobReport) -> String {
    match report.failed_step() {
        Some(step) => format!("{} failed: {}", step.step, step.message),
        None => report.outcome.as_str().to_owned(),
    }
}

/// The bundle packages on `host` whose reported version is not the target, described.
pub(super) fn wrong_versions(
    targets: &BTreeMap<String, String>,
    versions: &sluice_core::job::Versions,
    plan: &StoredPlan,
    host: &str,
) -> Option<String> {
    let installed = plan.hosts.get(host).map(|h| &h.versions);
    let wrong: Vec<String> = targets
        .iter()
        .filter(|(package, _)| installed.is_some_and(|v| v.contains_key(*package)))
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

/// A probe that got slower than the change's rollback criteria allow (or twice as slow when
/// they say nothing), compared with the measurement taken before the update.
pub(super) fn regression(loaded: &Loaded, report: &JobReport) -> Option<String> {
    latency_regression(
        report,
        loaded
            .stored_plan
            .max_latency_factor
            .unwrap_or(DEFAULT_LATENCY_FACTOR),
    )
}

/// Without a limit in the change's rollback criteria, a probe twice as slow is flagged.
pub(super) const DEFAULT_LATENCY_FACTOR: f64 = 2.0;

/// Probes slower after the update than before by more than `limit`, described.
pub(super) fn latency_regression(report: &JobReport, limit: f64) -> Option<String> {
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

/// Hosts being verified: a fresh inventory (received after the job ended) must show the
/// target versions; a pending reboot keeps the host `pending-reboot` until an inventory says
/// it is gone.
pub(super) async fn verify(
    state: &AppState,
    loaded: &mut Loaded,
    now: Timestamp,
    decision: &mut Decision,
) -> Result<(), ApiError> {
    let hosts: Vec<(String, Timestamp, bool)> = loaded
        .runtime
        .verifying
        .iter()
        .map(|(h, t)| (h.clone(), *t, false))
        .chain(
            loaded
                .runtime
                .awaiting_reboot
                .iter()
                .map(|(h, t)| (h.clone(), *t, true)),
        )
        .collect();
    for (host, since, rebooting) in hosts {
        let fresh = match state.store.inventory(&host).await? {
            Some((inventory, packages)) => inventory
                .received_at
                .parse::<Timestamp>()
                .ok()
                .filter(|received| *received >= since)
                .map(|_| (inventory.reboot_required, packages)),
            None => None,
        };
        let Some((reboot_required, packages)) = fresh else {
            if rebooting {
                if now.duration_since(since) >= REBOOT_POLL {
                    loaded.runtime.awaiting_reboot.insert(host.clone(), now);
                    decision.inventories.insert(host);
                }
            } else if now.duration_since(since) >= VERIFY_TIMEOUT {
                loaded.runtime.verifying.remove(&host);
                loaded.runtime.inventory_asked.remove(&host);
                let note = format!(
                    "verification: no fresh inventory within {} of the job's end",
                    VERIFY_TIMEOUT
                );
                loaded.runtime.notes.insert(host.clone(), note.clone());
                decision.write.events.push(event(
                    "host-failed",
                    json!({"host": host, "reason": note}),
                    true,
                ));
                apply_logged(loaded, &Observation::HostFailed { host, at: now }, decision);
            } else if now.duration_since(since) >= INVENTORY_GRACE
                && loaded.runtime.inventory_asked.insert(host.clone())
            {
                // The agent sends one after every job that changed something; ask once when
                // it has not come.
                decision.inventories.insert(host);
            }
            continue;
        };
        let installed: sluice_core::job::Versions = packages
            .into_iter()
            .map(|p| (p.name, Some(p.version)))
            .collect();
        loaded.runtime.verifying.remove(&host);
        loaded.runtime.inventory_asked.remove(&host);
        if let Some(wrong) = wrong_versions(
            &loaded.stored_plan.targets,
            &installed,
            &loaded.stored_plan,
            &host,
        ) {
            loaded.runtime.awaiting_reboot.remove(&host);
            let note = format!("verification: the fresh inventory shows {wrong}");
            loaded.runtime.notes.insert(host.clone(), note.clone());
            decision.write.events.push(event(
                "host-failed",
                json!({"host": host, "reason": note}),
                true,
            ));
            apply_logged(loaded, &Observation::HostFailed { host, at: now }, decision);
        } else if reboot_required {
            if !rebooting {
                loaded.runtime.awaiting_reboot.insert(host.clone(), now);
                decision.write.events.push(event(
                    "host-pending-reboot",
                    json!({"host": host}),
                    true,
                ));
                apply_logged(
                    loaded,
                    &Observation::HostPendingReboot { host, at: now },
                    decision,
                );
            }
        } else {
            loaded.runtime.awaiting_reboot.remove(&host);
            decision.write.events.push(event(
                "host-succeeded",
                json!({"host": host, "verified": "fresh inventory shows the target versions", "after_reboot": rebooting}),
                true,
            ));
            apply_logged(
                loaded,
                &Observation::HostSucceeded { host, at: now },
                decision,
            );
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
) -> Result<bool, ApiError> {
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
                        loaded.runtime.notes.insert(host.clone(), note.to_owned());
                        decision.write.events.push(event(
                            "host-failed",
                            json!({"host": host, "reason": note}),
                            true,
                        ));
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
                        loaded.runtime.notes.insert(
                            host.clone(),
                            "none of the bundle's packages is installed: nothing to update"
                                .to_owned(),
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
                    loaded.runtime.jobs.insert(host.clone(), job.id.clone());
                    started.push(json!({"host": host, "job": job.id}));
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
                decision.write.events.push(event(
                    "hosts-started",
                    json!({"hosts": started, "ring": position.map(|p| p.0), "batch": position.map(|p| p.1)}),
                    true,
                ));
                moved = true;
            }
            Action::Wait { until, reason } => {
                loaded.runtime.waiting = Some(reason.clone());
                loaded.runtime.wait_until = *until;
            }
            Action::Pause(reason) => {
                if loaded.runtime.last_pause.as_ref() != Some(reason) {
                    loaded.runtime.last_pause = Some(reason.clone());
                    decision
                        .write
                        .events
                        .push(event("paused", json!({"reason": reason}), true));
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
                    decision.write.events.push(event(
                        "breaker-tripped",
                        json!({"scope": scope, "failed": failed, "threshold": threshold, "on_trip": loaded.plan.policy.on_trip}),
                        true,
                    ));
                }
            }
            Action::RollBack(hosts) => {
                let hosts = hosts.clone();
                queue_rollbacks(loaded, &hosts, now, decision);
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
                decision.write.events.push(event(
                    "promoted",
                    json!({"to_ring": to_ring, "environment": environment}),
                    true,
                ));
                moved = true;
            }
            Action::Complete => {}
        }
    }
    Ok(moved)
}

/// Each ring the rollout moved past (or every ring, once all hosts succeeded) is compared
/// with its pre-update baseline once: the median probe latency and the 1-minute load over the
/// ring's hosts, before and after their updates. A ring whose probes got slower than the
/// change's latency factor (×2 without one) is flagged.
pub(super) async fn compare_rings(
    state: &AppState,
    loaded: &mut Loaded,
    decision: &mut Decision,
) -> Result<(), ApiError> {
    let done = |r: usize| {
        r < loaded.state.ring
            || loaded.state.phase() == sluice_core::rollout::RolloutPhase::Completed
    };
    let due: Vec<usize> = (0..loaded.plan.rings.len())
        .filter(|r| done(*r) && !loaded.runtime.compared.contains(r))
        .collect();
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
            .filter(|j| loaded.runtime.jobs.get(&j.job.hostname) == Some(&j.job.job.id))
            .filter_map(|j| j.job.report.as_ref())
            .collect();
        let baseline = ring_baseline(&reports, limit);
        let mut detail = json!({"ring": r, "environment": ring.environment, "hosts": hosts.len()});
        if let Some(baseline) = &baseline {
            detail["measured"] = json!(baseline.measured);
            detail["probe_ms_before"] = json!(baseline.probe_before);
            detail["probe_ms_after"] = json!(baseline.probe_after);
            detail["load1_before"] = json!(baseline.load_before);
            detail["load1_after"] = json!(baseline.load_after);
            detail["regression"] = json!(baseline.regression.is_some());
            if let Some(regression) = &baseline.regression {
                loaded
                    .runtime
                    .regressions
                    .push(format!("ring {}: {regression}", ring.environment));
            }
        }
        decision
            .write
            .events
            .push(event("ring-baseline", detail, true));
    }
    Ok(())
}

/// A ring's measurements against its baseline.
#[derive(Debug, PartialEq)]
pub(super) struct RingBaseline {
    /// Hosts with measurements before and after.
    pub(super) measured: usize,
    /// Median probe latency before the updates, ms.
    pub(super) probe_before: Option<f64>,
    /// Median probe latency after, ms.
    pub(super) probe_after: Option<f64>,
    /// Mean 1-minute load before.
    pub(super) load_before: Option<f64>,
    /// Mean 1-minute load after.
    pub(super) load_after: Option<f64>,
    /// The probes got slower than the limit allows, in words.
    pub(super) regression: Option<String>,
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
pub(super) fn ring_baseline(reports: &[&JobReport], limit: f64) -> Option<RingBaseline> {
    let measured: Vec<_> = reports
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
    let loads =
        |pick: fn(
            &(
                &sluice_core::job::Measurements,
                &sluice_core::job::Measurements,
            ),
        ) -> Option<f64>| { mean(&measured.iter().filter_map(pick).collect::<Vec<_>>()) };
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
    let attempt = *loaded.runtime.attempts.entry(host.to_owned()).or_insert(1);
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

/// Queues a rollback job for each host that has none yet: back to the versions it had before
/// its update, undoing that job's configuration changes too.
pub(super) fn queue_rollbacks(
    loaded: &mut Loaded,
    hosts: &[String],
    _now: Timestamp,
    decision: &mut Decision,
) {
    let id = loaded.stored.id.clone();
    let mut queued = Vec::new();
    for host in hosts {
        if loaded.runtime.rollback_jobs.contains_key(host) {
            continue;
        }
        if !decision.live.contains(host) {
            loaded
                .runtime
                .rollback_jobs
                .insert(host.clone(), String::new());
            loaded.runtime.rollback_failed.insert(host.clone());
            let note = "cannot roll back: no enrolled agent (revoked?)";
            loaded.runtime.notes.insert(host.clone(), note.to_owned());
            decision.write.events.push(event(
                "rollback-failed",
                json!({"host": host, "reason": note}),
                true,
            ));
            continue;
        }
        let attempt = loaded.runtime.attempts.get(host).copied().unwrap_or(1);
        let before = loaded.runtime.before.get(host).cloned().unwrap_or_default();
        let targets: Vec<Target> = loaded
            .stored_plan
            .targets
            .keys()
            .filter_map(|package| {
                before.get(package).map(|version| Target {
                    package: package.clone(),
                    version: version.clone(),
                })
            })
            .collect();
        if targets.is_empty() {
            loaded
                .runtime
                .rollback_jobs
                .insert(host.clone(), String::new());
            loaded.runtime.rollback_failed.insert(host.clone());
            loaded.runtime.notes.insert(host.clone(), "cannot roll back: the versions before the update are not known (its job never reported)".to_owned());
            decision.write.events.push(event(
                "rollback-failed",
                json!({"host": host, "reason": "versions before the update unknown"}),
                true,
            ));
            continue;
        }
        let job = Job {
            id: format!("{id}-{host}-r{attempt}"),
            idempotency_key: format!("rollout:{id}:{host}:rollback:{attempt}"),
            kind: JobKind::Rollback {
                of_job: loaded.runtime.jobs.get(host).cloned(),
            },
            targets,
            preflight: Preflight::default(),
            checks: loaded.spec.job.checks.clone(),
            rollback: RollbackPolicy::default(),
            package_manager: None,
        };
        loaded
            .runtime
            .rollback_jobs
            .insert(host.clone(), job.id.clone());
        loaded.runtime.verifying.remove(host);
        queued.push(json!({"host": host, "job": job.id, "to": job.targets}));
        decision.wake.insert(host.clone());
        decision
            .write
            .jobs
            .push((host.clone(), "rollback".to_owned(), job));
    }
    if !queued.is_empty() {
        decision
            .write
            .events
            .push(event("rollback-started", json!({"hosts": queued}), true));
    }
}

/// How the rollout ended, if it did: (outcome, reason).
pub(super) fn outcome(
    loaded: &Loaded,
    actions: &[Action],
    outstanding: bool,
) -> Option<(String, String)> {
    if outstanding || !loaded.runtime.verifying.is_empty() {
        return None;
    }
    let failed_rollbacks = !loaded.runtime.rollback_failed.is_empty();
    if let Some(reason) = &loaded.state.aborted {
        if loaded.runtime.rollback_requested.is_some() {
            let pending = loaded.state.hosts.iter().any(|(h, run)| {
                matches!(
                    run.status,
                    HostStatus::Succeeded | HostStatus::Failed | HostStatus::PendingReboot
                ) && !loaded.runtime.rollback_failed.contains(h)
                    && !loaded.runtime.cancelled.contains(h)
            });
            if pending {
                return None;
            }
            return Some(if failed_rollbacks {
                (
                    "failed".to_owned(),
                    format!("{reason}; some hosts could not be rolled back"),
                )
            } else {
                ("rolled-back".to_owned(), reason.clone())
            });
        }
        return Some(("aborted".to_owned(), reason.clone()));
    }
    if loaded.state.phase() == RolloutPhase::Completed {
        return Some((
            "completed".to_owned(),
            "every host updated and verified".to_owned(),
        ));
    }
    if let Some(trip) = loaded.state.breaker {
        if loaded.plan.policy.on_trip == OnTrip::Pause {
            return None;
        }
        let in_flight = loaded.state.hosts.values().any(|r| r.status.in_flight());
        let to_roll_back = actions.iter().any(|a| match a {
            Action::RollBack(hosts) => hosts
                .iter()
                .any(|h| !loaded.runtime.rollback_failed.contains(h)),
            _ => false,
        });
        if in_flight || to_roll_back {
            return None;
        }
        let reason = format!(
            "the breaker tripped: {} failed of a threshold of {} ({})",
            trip.failed,
            trip.threshold,
            match trip.scope {
                sluice_core::rollout::BreakerScope::Batch { ring, batch } =>
                    format!("ring {ring}, batch {batch}"),
                sluice_core::rollout::BreakerScope::Ring { ring, .. } => format!("ring {ring}"),
            }
        );
        return Some(if failed_rollbacks {
            (
                "failed".to_owned(),
                format!("{reason}; some hosts could not be rolled back"),
            )
        } else {
            ("rolled-back".to_owned(), reason)
        });
    }
    None
}

/// The (environment, package, version) triples a rollback undid: the rings that had hosts
/// rolled back, with the bundle's targets.
pub(super) fn rolled_back_scopes(loaded: &Loaded) -> Vec<(String, String, String)> {
    let mut scopes = BTreeSet::new();
    for (host, run) in &loaded.state.hosts {
        if run.status == HostStatus::RolledBack
            && let Some(environment) = loaded.stored_plan.environment(host)
        {
            scopes.insert(environment.to_owned());
        }
    }
    let mut out = Vec::new();
    for scope in scopes {
        for (package, version) in &loaded.stored_plan.targets {
            out.push((scope.clone(), package.clone(), version.clone()));
        }
    }
    out
}

/// Moves the change to match the rollout's end, as `system`, unless it already moved.
pub(super) async fn finish_change(
    state: &AppState,
    loaded: &Loaded,
    outcome: &str,
    reason: &str,
    now: Timestamp,
) -> Result<(), ApiError> {
    let Some(stored) = state.store.change(&loaded.stored.change_id).await? else {
        return Ok(());
    };
    if stored.change.state != ChangeState::Implementing {
        return Ok(());
    }
    let action = match outcome {
        "completed" => ChangeAction::Complete,
        "rolled-back" => ChangeAction::RollBack {
            reason: format!("rollout {}: {reason}", loaded.stored.id),
        },
        _ => ChangeAction::Fail {
            reason: format!("rollout {}: {reason}", loaded.stored.id),
        },
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
    use super::*;
    use sluice_core::job::{Measurements, ProbeLatency};

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

    #[test]
    fn only_the_bundle_packages_installed_on_the_host_are_verified() {
        // curl is not installed on web1: its absence is not a failure.
        let plan = plan_with("web1", &[("openssl", "3.0.2-1")]);
        let mut versions: sluice_core::job::Versions = BTreeMap::new();
        versions.insert("openssl".into(), Some("3.0.2-2".into()));
        assert_eq!(
            wrong_versions(&plan.targets, &versions, &plan, "web1"),
            None
        );
        versions.insert("openssl".into(), Some("3.0.2-1".into()));
        assert_eq!(
            wrong_versions(&plan.targets, &versions, &plan, "web1").as_deref(),
            Some("openssl at 3.0.2-1, not 3.0.2-2")
        );
        versions.remove("openssl");
        assert_eq!(
            wrong_versions(&plan.targets, &versions, &plan, "web1").as_deref(),
            Some("openssl at (not installed), not 3.0.2-2")
        );
    }

    fn measured(millis: &[Option<f64>]) -> Measurements {
        Measurements {
            taken_at: jiff::Timestamp::UNIX_EPOCH,
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

    #[test]
    fn a_ring_is_compared_with_its_baseline_by_median_probe_and_mean_load() {
        let report = |before: &[Option<f64>], after: &[Option<f64>], load: (f64, f64)| {
            let mut b = measured(before);
            b.load = Some([load.0, 0.0, 0.0]);
            let mut a = measured(after);
            a.load = Some([load.1, 0.0, 0.0]);
            JobReport {
                job_id: "j".into(),
                idempotency_key: "k".into(),
                outcome: JobOutcome::Succeeded,
                steps: Vec::new(),
                versions_before: BTreeMap::new(),
                versions_after: BTreeMap::new(),
                unsettled: BTreeMap::new(),
                measurements_before: Some(b),
                measurements_after: Some(a),
                interrupted_at: None,
            }
        };
        let reports = [
            report(&[Some(10.0)], &[Some(30.0)], (0.5, 1.5)),
            report(&[Some(12.0)], &[Some(26.0)], (0.7, 0.9)),
            report(&[Some(8.0), None], &[Some(25.0), Some(99.0)], (0.3, 0.6)),
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
            job_id: "j".into(),
            idempotency_key: "k".into(),
            outcome: JobOutcome::Succeeded,
            steps: Vec::new(),
            versions_before: BTreeMap::new(),
            versions_after: BTreeMap::new(),
            unsettled: BTreeMap::new(),
            measurements_before: Some(measured(&[Some(10.0), Some(10.0), None])),
            measurements_after: Some(measured(&[Some(19.0), Some(31.0), Some(500.0)])),
            interrupted_at: None,
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

    /// A rollout of `plan_with("web1", …)` whose update job for web1 is running, and the
    /// agent's report of that job with `outcome`.
    fn running(outcome: JobOutcome) -> (Loaded, RolloutJob) {
        let stored_plan = plan_with("web1", &[("openssl", "3.0.2-1")]);
        let plan = stored_plan.plan().unwrap();
        let mut state = sluice_core::rollout::RolloutState::new(&plan);
        state.hosts.get_mut("web1").unwrap().status = HostStatus::Running;
        let runtime = Runtime {
            jobs: [("web1".to_owned(), "job-1".to_owned())].into(),
            ..Runtime::default()
        };
        let loaded = Loaded {
            stored: StoredRollout {
                id: "RO-1".into(),
                change_id: "CHG-1".into(),
                spec: json!({"change": "CHG-1"}),
                plan: json!({}),
                state: json!({}),
                runtime: json!({}),
                phase: "running".into(),
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
            job: sluice_store::StoredJob {
                job,
                agent_id: "agent-1".into(),
                hostname: "web1".into(),
                state: outcome.as_str().into(),
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
            fold_jobs(&mut loaded, &[reported], now, &mut decision);
            // Not succeeded on the report, nor on the inventory on record: verifying, from the
            // job's end, like any host whose job succeeded.
            assert_eq!(
                loaded.state.status("web1"),
                HostStatus::Running,
                "{outcome:?}"
            );
            assert_eq!(
                loaded.runtime.verifying.get("web1"),
                Some(&ended),
                "{outcome:?}"
            );
            // The agent of a job that changed nothing sends no inventory by itself: the server
            // asks at once. After a job that changed packages it waits for the agent's own.
            let asked = outcome == JobOutcome::AlreadyCompliant;
            assert_eq!(decision.inventories.contains("web1"), asked, "{outcome:?}");
            assert_eq!(
                loaded.runtime.inventory_asked.contains("web1"),
                asked,
                "{outcome:?}"
            );
        }
    }
}
