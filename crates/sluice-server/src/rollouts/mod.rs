//! The rollout orchestrator: carries out what `sluice_core::rollout`'s engine decides.
//!
//! A rollout is stored as its plan, the engine's state and the server's bookkeeping beside it
//! ([`Runtime`]: attempts, versions before each host's update, rollback jobs, verification).
//! One *advance* reads all of that, folds in what happened since (finished jobs, fresh
//! inventories), asks `next_actions` what to do now, turns the answer into jobs for agents, and
//! writes everything it decided in one transaction against the version it read. So:
//!
//! - a crash between deciding and writing loses nothing: the next advance decides again from the
//!   same state, and the jobs it queues carry the same idempotency keys, so no host is updated
//!   twice;
//! - two servers advancing the same rollout cannot both win: the second write is refused and
//!   that server reads again;
//! - every transition is an event in the rollout's log and in the audit chain.
//!
//! A host's update is verified before it counts as succeeded: the job's report must show the
//! target versions, and a *fresh* inventory (asked for when the job ends) must show them too,
//! which also closes the findings the change was for. An inventory that says a reboot is
//! pending keeps the host `pending-reboot` until one says it is not.
//!
//! The background task ([`drive`]) advances every open rollout when a job report or an
//! inventory arrives (through [`RolloutHub::wake`]), when the engine said to wait until a
//! time, and every few seconds anyway (reports may arrive through another replica).

mod advance;
mod model;
mod signals;

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;
use std::time::Duration;

use jiff::Timestamp;
use serde::Serialize;
use serde_json::{Value, json};
use sluice_core::access::{Actor as Person, Role};
use sluice_core::change::{
    Action as ChangeAction, ChangeRequest, ChangeState, ChangeType, Schedule,
};
use sluice_core::rollout::{
    HostInfo, Observation, RolledBackVersions, RolloutState, Service, Size, plan_change,
};
use sluice_store::{Actor, NewRollout, NewRolloutEvent, RolloutWrite, StoreError, StoredRollout};

use crate::error::ApiError;
use crate::state::AppState;

pub use advance::VERIFY_TIMEOUT;
use advance::*;
pub use model::*;
pub use signals::fold_alerts;

/// How long an approved emergency change without a schedule may take to roll out.
pub const EMERGENCY_HORIZON: jiff::SignedDuration = jiff::SignedDuration::from_hours(24);

/// How often every open rollout is advanced even when nothing woke the task.
const TICK: Duration = Duration::from_secs(3);

/// Wakes the background task and tells event streams that a rollout moved. Cheap to clone.
#[derive(Clone)]
pub struct RolloutHub {
    wake: Arc<tokio::sync::Notify>,
    moved: tokio::sync::broadcast::Sender<String>,
    /// Serialises advances on this replica (other replicas are kept out by versions).
    lock: Arc<tokio::sync::Mutex<()>>,
    /// Per open rollout, the hosts whose inventory it waits for (jobs running, verification,
    /// reboots): only their inventories wake the task, not every push of a large fleet.
    watched: Arc<std::sync::Mutex<BTreeMap<String, BTreeSet<String>>>>,
}

impl Default for RolloutHub {
    fn default() -> Self {
        let (moved, _) = tokio::sync::broadcast::channel(256);
        Self {
            wake: Arc::default(),
            moved,
            lock: Arc::default(),
            watched: Arc::default(),
        }
    }
}

impl RolloutHub {
    /// Something happened that may move a rollout (a job report).
    pub fn wake(&self) {
        self.wake.notify_one();
    }

    /// An inventory of `host` arrived: wakes the task if an open rollout waits for it.
    pub fn inventory_of(&self, host: &str) {
        let watched = self.watched.lock().unwrap_or_else(|e| e.into_inner());
        if watched.values().any(|hosts| hosts.contains(host)) {
            self.wake.notify_one();
        }
    }

    /// Records which hosts a rollout waits for now (none once it finished).
    fn watch(&self, loaded: &Loaded) {
        let mut watched = self.watched.lock().unwrap_or_else(|e| e.into_inner());
        if loaded.stored.finished_at.is_some() {
            watched.remove(&loaded.stored.id);
            return;
        }
        let runtime = &loaded.runtime;
        let hosts: BTreeSet<String> = loaded
            .state
            .hosts
            .iter()
            .filter(|(host, run)| {
                run.status.in_flight()
                    || runtime.verifying.contains_key(*host)
                    || runtime
                        .rollback_jobs
                        .get(*host)
                        .is_some_and(|j| !j.is_empty())
            })
            .map(|(host, _)| host.clone())
            .collect();
        watched.insert(loaded.stored.id.clone(), hosts);
    }

    /// Rollout ids as they move, for event streams.
    pub fn subscribe(&self) -> tokio::sync::broadcast::Receiver<String> {
        self.moved.subscribe()
    }

    fn moved(&self, id: &str) {
        // Nobody listening is fine.
        let _ = self.moved.send(id.to_owned());
    }
}

/// Loads one rollout.
pub async fn load(state: &AppState, id: &str) -> Result<Loaded, ApiError> {
    let stored = state
        .store
        .rollout(id)
        .await?
        .ok_or_else(|| ApiError::not_found(format!("rollout {id} not found")))?;
    decode(stored)
}

fn system_person() -> Person {
    Person {
        user: "system".to_owned(),
        roles: [Role::Operator].into(),
        groups: BTreeSet::new(),
    }
}

fn event(kind: &str, detail: Value, audit: bool) -> NewRolloutEvent {
    NewRolloutEvent {
        kind: kind.to_owned(),
        detail,
        audit,
    }
}

fn json_of<T: Serialize>(value: &T) -> Result<Value, ApiError> {
    serde_json::to_value(value).map_err(ApiError::internal)
}

/// Plans and stores a rollout of `request.change`, starting the change's implementation for
/// `person` when it is scheduled. The first advance runs at once.
pub async fn start(
    state: &AppState,
    person: &Person,
    actor: &Actor,
    request: RolloutRequest,
) -> Result<StoredRollout, ApiError> {
    let now = state.clock.now();
    let policy = request.policy.clone().unwrap_or_else(default_policy);
    let stored_change = state
        .store
        .change(&request.change)
        .await?
        .ok_or_else(|| ApiError::not_found(format!("change {} not found", request.change)))?;
    if let Some(open) = state
        .store
        .rollouts(Some(&request.change), true)
        .await?
        .first()
    {
        return Err(ApiError::conflict(format!(
            "change {} already has rollout {} under way",
            request.change, open.id
        )));
    }
    let change = &stored_change.change;
    // An emergency change may start as soon as the e-CAB approved it, without a schedule.
    let emergency_now =
        change.kind == ChangeType::Emergency && change.state == ChangeState::Approved;
    if !emergency_now
        && !matches!(
            change.state,
            ChangeState::Scheduled | ChangeState::Implementing
        )
    {
        return Err(ApiError::conflict(format!(
            "change {} is {}: only a scheduled (or implementing) change is rolled out, or an approved emergency change",
            change.id,
            change.state.as_str()
        )));
    }
    let (stored_hosts, services) = gather(state, change).await?;
    let hosts: Vec<HostInfo> = stored_hosts
        .iter()
        .map(|(name, host)| host_info(name, host))
        .collect::<Result<_, _>>()
        .map_err(ApiError::unprocessable)?;
    let mut remembered = RolledBackVersions::default();
    for (scope, package, version) in state.store.rolled_back_versions().await? {
        remembered.record(&scope, &package, &version);
    }
    // Planned as implementing: the schedule is what limits it either way.
    let mut planning = change.clone();
    planning.state = ChangeState::Implementing;
    if planning.schedule.is_none() {
        // An unscheduled emergency change: its hosts' windows and freezes still hold, within a
        // day from now.
        planning.schedule = Some(Schedule {
            start: now,
            end: now + EMERGENCY_HORIZON,
        });
    }
    let plan = plan_change(
        &planning,
        hosts,
        &services,
        &policy,
        &remembered,
        request.override_rolled_back,
    )
    .map_err(|e| ApiError::unprocessable(format!("cannot plan change {}: {e}", change.id)))?;
    let targets: BTreeMap<String, String> = change
        .bundle
        .iter()
        .map(|b| (b.package.clone(), b.target_version.clone()))
        .collect();
    let mut narrowed = stored_hosts.clone();
    for host in narrowed.values_mut() {
        host.versions.retain(|p, _| targets.contains_key(p));
    }
    let stored_plan = StoredPlan::of(
        &plan,
        &narrowed,
        targets,
        change.plan.rollback_criteria.max_latency_factor,
    );
    let rollout_state = RolloutState::new(&plan);

    if change.state == ChangeState::Scheduled || emergency_now {
        crate::changes::take_action(
            state,
            &stored_change,
            person,
            actor,
            ChangeAction::StartImplementation,
            now,
        )
        .await?;
    }
    let rings: Vec<Value> = plan
        .rings
        .iter()
        .map(|r| json!({"environment": r.environment, "batches": r.batches.iter().map(|b| b.hosts.len()).collect::<Vec<_>>()}))
        .collect();
    let created = state
        .store
        .create_rollout(
            &NewRollout {
                change_id: change.id.clone(),
                spec: json_of(&request)?,
                plan: json_of(&stored_plan)?,
                state: json_of(&rollout_state)?,
                runtime: json_of(&Runtime::default())?,
                phase: rollout_state.phase().as_str().to_owned(),
            },
            &[event(
                "start",
                json!({"change": change.id, "hosts": plan.hosts.len(), "rings": rings, "policy": policy}),
                true,
            )],
            actor,
        )
        .await?;
    state.rollouts.moved(&created.id);
    match advance(state, &created.id).await {
        Ok(advanced) => Ok(advanced),
        Err(e) => {
            tracing::warn!(rollout = %created.id, error = %e.detail, "first advance failed; the background task tries again");
            Ok(created)
        }
    }
}

/// The hosts of the change's scope with what the planner needs, and the services they run.
async fn gather(
    state: &AppState,
    change: &ChangeRequest,
) -> Result<(BTreeMap<String, StoredHost>, Vec<Service>), ApiError> {
    let assets = state.assets.get(&state.store).await?;
    let selected: BTreeSet<String> = change
        .scope
        .filter(assets.iter())
        .map(|a| a.hostname.clone())
        .collect();
    if selected.is_empty() {
        return Err(ApiError::unprocessable(format!(
            "change {}: its scope selects no host",
            change.id
        )));
    }
    let agents: BTreeSet<String> = state
        .store
        .agents()
        .await?
        .into_iter()
        .filter(|a| a.revoked_at.is_none())
        .map(|a| a.hostname)
        .collect();
    let missing: Vec<&str> = selected
        .iter()
        .filter(|h| !agents.contains(*h))
        .map(String::as_str)
        .collect();
    if !missing.is_empty() {
        return Err(ApiError::unprocessable(format!(
            "change {}: no enrolled agent on {}: enroll one, or narrow the change's scope",
            change.id,
            missing.join(", ")
        )));
    }
    let windows = crate::calendar::host_windows(state, &assets, &selected).await?;
    let all_services = state.store.services().await?;
    let mut out = BTreeMap::new();
    for asset in assets.iter().filter(|a| selected.contains(&a.hostname)) {
        let versions: BTreeMap<String, String> =
            match state.store.inventory(&asset.hostname).await? {
                Some((_, packages)) => packages.into_iter().map(|p| (p.name, p.version)).collect(),
                None => BTreeMap::new(),
            };
        let host_windows = windows.get(&asset.hostname).cloned().unwrap_or_default();
        let time_zone = asset
            .time_zone
            .clone()
            .or_else(|| host_windows.first().map(|w| w.tz.clone()))
            .unwrap_or_else(|| "UTC".to_owned());
        out.insert(
            asset.hostname.clone(),
            StoredHost {
                environment: asset.environment.clone().unwrap_or_default(),
                services: all_services
                    .iter()
                    .filter(|s| s.members.contains(&asset.hostname))
                    .map(|s| s.name.clone())
                    .collect(),
                time_zone,
                windows: host_windows,
                os: asset.os.as_ref().map(|o| o.to_string()).unwrap_or_default(),
                versions,
            },
        );
    }
    let services = all_services
        .iter()
        .filter(|s| s.members.iter().any(|m| out.contains_key(m)))
        .map(|s| Service {
            name: s.name.clone(),
            budget: match s.disruption_budget {
                Some(sluice_core::cmdb::Budget::Count(n)) => Size::Count(n.max(1)),
                Some(sluice_core::cmdb::Budget::Percent(p)) => Size::Percent(p.clamp(1, 100)),
                None => Size::Percent(100),
            },
        })
        .collect();
    Ok((out, services))
}

/// Takes an operator's action: folded into the state as an observation, written with its
/// event, then the rollout is advanced.
pub async fn act(
    state: &AppState,
    person: &Person,
    actor: &Actor,
    id: &str,
    action: OperatorAction,
) -> Result<StoredRollout, ApiError> {
    for _ in 0..5 {
        let _guard = state.rollouts.lock.lock().await;
        let mut loaded = load(state, id).await?;
        if loaded.stored.finished_at.is_some() {
            return Err(ApiError::conflict(format!(
                "rollout {id} is finished ({}): nothing more to do",
                loaded.stored.outcome.as_deref().unwrap_or("ended")
            )));
        }
        let by = person.user.clone();
        let observation = match &action {
            OperatorAction::Pause { reason } => Observation::Pause {
                by,
                reason: nonempty(reason, "reason")?,
            },
            OperatorAction::Resume => Observation::Resume { by },
            OperatorAction::Abort { reason } => Observation::Abort {
                by,
                reason: nonempty(reason, "reason")?,
            },
            OperatorAction::Rollback { reason } => {
                let reason = nonempty(reason, "reason")?;
                loaded.runtime.rollback_requested = Some(reason.clone());
                Observation::Abort {
                    by,
                    reason: format!("rolled back: {reason}"),
                }
            }
            OperatorAction::ApproveGate { to_ring } => {
                if !person.roles.contains(&Role::Approver) {
                    return Err(ApiError::forbidden(
                        "approving a gate between rings takes the approver role",
                    ));
                }
                if person.user == loaded.stored.created_by {
                    return Err(ApiError::forbidden(format!(
                        "{} started rollout {id} and cannot approve its gates (separation of duties)",
                        person.user
                    )));
                }
                Observation::ApproveGate {
                    to_ring: *to_ring,
                    by,
                }
            }
            OperatorAction::ResetBreaker => Observation::ResetBreaker { by },
            OperatorAction::Retry { host } => {
                let attempts = loaded.runtime.attempts.entry(host.clone()).or_insert(1);
                *attempts += 1;
                loaded.runtime.rollback_jobs.remove(host);
                loaded.runtime.rollback_failed.remove(host);
                loaded.runtime.notes.remove(host);
                Observation::Retry {
                    host: host.clone(),
                    by,
                }
            }
        };
        loaded
            .state
            .apply(&loaded.plan, &observation)
            .map_err(|e| ApiError::conflict(format!("rollout {id}: {e}")))?;
        let kind = match &action {
            OperatorAction::Pause { .. } => "pause",
            OperatorAction::Resume => "resume",
            OperatorAction::Abort { .. } => "abort",
            OperatorAction::Rollback { .. } => "rollback",
            OperatorAction::ApproveGate { .. } => "approve-gate",
            OperatorAction::ResetBreaker => "reset-breaker",
            OperatorAction::Retry { .. } => "retry",
        };
        let write = RolloutWrite {
            state: json_of(&loaded.state)?,
            runtime: json_of(&loaded.runtime)?,
            phase: phase_of(&loaded).to_owned(),
            outcome: None,
            events: vec![event(kind, json_of(&action)?, true)],
            ..Default::default()
        };
        match state
            .store
            .advance_rollout(id, loaded.stored.version, &write, actor)
            .await
        {
            Ok(_) => {
                drop(_guard);
                state.rollouts.moved(id);
                return advance(state, id).await;
            }
            Err(StoreError::Conflict(_)) => continue,
            Err(e) => return Err(e.into()),
        }
    }
    Err(ApiError::conflict(format!(
        "rollout {id} kept moving under this action; try again"
    )))
}

fn nonempty(text: &str, field: &str) -> Result<String, ApiError> {
    let text = text.trim();
    if text.is_empty() {
        return Err(ApiError::invalid_field(field, "give a reason"));
    }
    Ok(text.to_owned())
}

fn phase_of(loaded: &Loaded) -> &'static str {
    loaded.state.phase().as_str()
}

/// Advances one rollout as far as it goes now; retried when another writer got there first.
pub async fn advance(state: &AppState, id: &str) -> Result<StoredRollout, ApiError> {
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
    Err(ApiError::conflict(format!(
        "rollout {id} kept moving: {}",
        last.unwrap_or_default()
    )))
}

/// Advances every open rollout; returns when the earliest of them asked to be looked at again.
pub async fn advance_all(state: &AppState) -> Result<Option<Timestamp>, ApiError> {
    let mut earliest: Option<Timestamp> = None;
    for stored in state.store.rollouts(None, true).await? {
        match advance(state, &stored.id).await {
            Ok(advanced) => {
                let until = advanced
                    .runtime
                    .get("wait_until")
                    .and_then(|v| serde_json::from_value::<Option<Timestamp>>(v.clone()).ok())
                    .flatten();
                if let Some(until) = until {
                    earliest = Some(earliest.map_or(until, |e| e.min(until)));
                }
            }
            Err(e) => {
                tracing::warn!(rollout = %stored.id, error = %e.detail, "advancing the rollout failed");
            }
        }
    }
    Ok(earliest)
}

/// The background task: advances open rollouts when woken, when a wait ends, and every few
/// seconds.
pub async fn drive(state: AppState) {
    loop {
        let next = match advance_all(&state).await {
            Ok(next) => next,
            Err(e) => {
                tracing::warn!(error = %e.detail, "advancing rollouts failed");
                None
            }
        };
        let mut sleep = TICK;
        if let Some(until) = next {
            let now = state.clock.now();
            let wait = until.duration_since(now);
            if let Ok(wait) = Duration::try_from(wait)
                && wait < sleep
            {
                sleep = wait.max(Duration::from_millis(50));
            }
        }
        tokio::select! {
            () = state.rollouts.wake.notified() => {
                // Reports of one batch tend to come together, and an agent's fresh inventory
                // follows its report within a few milliseconds: take them in one advance.
                tokio::time::sleep(Duration::from_millis(1)).await;
            }
            () = tokio::time::sleep(sleep) => {}
        }
    }
}
