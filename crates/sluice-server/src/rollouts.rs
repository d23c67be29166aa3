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

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;
use std::time::Duration;

use jiff::{SignedDuration, Timestamp};
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};
use sluice_core::access::{Actor as Person, Role};
use sluice_core::calendar::{TimeRange, WindowSpec};
use sluice_core::change::{Action as ChangeAction, ChangeRequest, ChangeState};
use sluice_core::job::{
    Check, Job, JobKind, JobOutcome, JobReport, Preflight, RollbackPolicy, Target,
};
use sluice_core::rollout::{
    Action, HostInfo, HostStatus, Observation, OnTrip, Plan, Ring, RolledBackVersions,
    RolloutPhase, RolloutPolicy, RolloutState, Service, Size, next_actions, plan_change,
};
use sluice_store::{
    Actor, NewRollout, NewRolloutEvent, RolloutJob, RolloutWrite, StoreError, StoredRollout,
};
use utoipa::ToSchema;

use crate::error::ApiError;
use crate::state::AppState;

/// How long a host whose job succeeded may wait for a fresh inventory before it counts as
/// failed (the agent sends one right after its report; this covers an agent that died).
pub const VERIFY_TIMEOUT: SignedDuration = SignedDuration::from_mins(3);

/// How often a host waiting for a reboot is asked for an inventory again.
const REBOOT_POLL: SignedDuration = SignedDuration::from_secs(60);

/// How often every open rollout is advanced even when nothing woke the task.
const TICK: Duration = Duration::from_secs(3);

/// Wakes the background task and tells event streams that a rollout moved. Cheap to clone.
#[derive(Clone)]
pub struct RolloutHub {
    wake: Arc<tokio::sync::Notify>,
    moved: tokio::sync::broadcast::Sender<String>,
    /// Serialises advances on this replica (other replicas are kept out by versions).
    lock: Arc<tokio::sync::Mutex<()>>,
}

impl Default for RolloutHub {
    fn default() -> Self {
        let (moved, _) = tokio::sync::broadcast::channel(256);
        Self {
            wake: Arc::default(),
            moved,
            lock: Arc::default(),
        }
    }
}

impl RolloutHub {
    /// Something happened that may move a rollout (a job report, an inventory).
    pub fn wake(&self) {
        self.wake.notify_one();
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

/// What every host's job does besides reaching the bundle's versions.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct JobTemplate {
    /// Checks before anything changes.
    #[serde(default)]
    #[schema(value_type = Object)]
    pub preflight: Preflight,
    /// Checks that prove the host works afterwards (a command check runs with `SLUICE_ROOT`).
    #[serde(default)]
    #[schema(value_type = Vec<Object>)]
    pub checks: Vec<Check>,
    /// What the agent does when a check fails after the change.
    #[serde(default)]
    #[schema(value_type = Object)]
    pub rollback: RollbackPolicy,
}

/// A Prometheus instant query polled while the rollout runs: any series it returns with a
/// non-zero value pauses the rollout like a firing alert.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct PrometheusSpec {
    /// The Prometheus base URL (`http://prometheus:9090`).
    pub url: String,
    /// The query (`sum(rate(http_requests_total{code=~"5.."}[1m])) > 1`).
    pub query: String,
    /// Seconds between queries (default 15).
    #[serde(default = "default_interval")]
    pub interval_secs: u64,
}

fn default_interval() -> u64 {
    15
}

/// HAProxy in front of the hosts: a canary host's server weight is lowered while its batch
/// runs, so only a small share of traffic reaches the new version, and restored afterwards.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct HaproxySpec {
    /// The runtime API: `unix:/run/haproxy/admin.sock`, a path, or `host:port`.
    pub address: String,
    /// The backend the hosts serve in.
    pub backend: String,
    /// Weight of a canary server while it is watched, in percent of its configured weight.
    #[serde(default = "default_canary_weight")]
    pub canary_weight: u8,
    /// HAProxy server name per host, where it differs from the host name.
    #[serde(default)]
    pub servers: BTreeMap<String, String>,
}

fn default_canary_weight() -> u8 {
    10
}

/// What `POST /api/v1/rollouts` takes.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct RolloutRequest {
    /// The change to roll out: scheduled (the server starts its implementation for the caller)
    /// or already implementing.
    pub change: String,
    /// Rings, canary, batches, limits, breaker (docs/rollout.md); default: dev → test →
    /// staging → prod, a one-host canary, batches of 25%, 10 at once, trip at one failure in a
    /// batch or 10% of a ring, roll the batch back.
    #[serde(default)]
    #[schema(value_type = Option<Object>)]
    pub policy: Option<RolloutPolicy>,
    /// Pre-flight, checks and the agent's own rollback for every host's job.
    #[serde(default)]
    pub job: JobTemplate,
    /// Shift canary traffic through HAProxy.
    #[serde(default)]
    pub haproxy: Option<HaproxySpec>,
    /// Pause while this query returns breaching series.
    #[serde(default)]
    pub prometheus: Option<PrometheusSpec>,
    /// Offer a version that was rolled back in a ring's environment again (a person decided).
    #[serde(default)]
    pub override_rolled_back: bool,
    /// Resume by itself when every alert that paused it resolved and no person paused it
    /// (default true); false: only a person resumes.
    #[serde(default = "yes")]
    pub resume_on_resolve: bool,
}

fn yes() -> bool {
    true
}

/// The default policy: small and careful.
pub fn default_policy() -> RolloutPolicy {
    RolloutPolicy {
        ring_order: sluice_core::rollout::default_ring_order(),
        canary: Some(Size::Count(1)),
        batch: Size::Percent(25),
        max_concurrency: 10,
        breaker: sluice_core::rollout::BreakerThresholds {
            per_batch: Size::Count(1),
            per_ring: Size::Percent(10),
        },
        on_trip: OnTrip::RollbackBatch,
        soak: SignedDuration::ZERO,
        manual_gate: false,
        follow_the_sun: false,
    }
}

/// One host as planned, in a form that is stored (the engine's `HostInfo` holds built
/// windows and a zone; these are rebuilt from their definitions on every read).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct StoredHost {
    /// Environment.
    pub environment: String,
    /// Services.
    pub services: Vec<String>,
    /// IANA zone name.
    pub time_zone: String,
    /// Its maintenance windows as defined when the rollout started.
    pub windows: Vec<WindowSpec>,
    /// OS release.
    pub os: String,
    /// Installed versions of the bundle's packages when the rollout started.
    pub versions: BTreeMap<String, String>,
}

/// The plan as stored.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct StoredPlan {
    /// Rings.
    pub rings: Vec<Ring>,
    /// Hosts.
    pub hosts: BTreeMap<String, StoredHost>,
    /// Budgets per service.
    pub budgets: BTreeMap<String, usize>,
    /// Policy.
    pub policy: RolloutPolicy,
    /// The change's window.
    pub implementation: Option<(Timestamp, Timestamp)>,
    /// Watch after each batch.
    #[serde(with = "sluice_core::change::friendly_duration")]
    pub detection_window: SignedDuration,
    /// The bundle: package → target version.
    pub targets: BTreeMap<String, String>,
    /// The change's latency limit (after ÷ before) for a probe; a regression beyond it is
    /// flagged.
    #[serde(default)]
    pub max_latency_factor: Option<f64>,
}

impl StoredPlan {
    fn of(
        plan: &Plan,
        hosts: &BTreeMap<String, StoredHost>,
        targets: BTreeMap<String, String>,
        max_latency_factor: Option<f64>,
    ) -> Self {
        Self {
            max_latency_factor,
            rings: plan.rings.clone(),
            hosts: hosts.clone(),
            budgets: plan.budgets.clone(),
            policy: plan.policy.clone(),
            implementation: plan.implementation.map(|r| (r.start, r.end)),
            detection_window: plan.detection_window,
            targets,
        }
    }

    /// The engine's plan.
    pub fn plan(&self) -> Result<Plan, String> {
        let mut hosts = BTreeMap::new();
        for (name, host) in &self.hosts {
            hosts.insert(name.clone(), host_info(name, host)?);
        }
        Ok(Plan {
            rings: self.rings.clone(),
            hosts,
            budgets: self.budgets.clone(),
            policy: self.policy.clone(),
            implementation: self.implementation.and_then(|(s, e)| TimeRange::new(s, e)),
            detection_window: self.detection_window,
        })
    }

    fn environment(&self, host: &str) -> Option<&str> {
        self.hosts.get(host).map(|h| h.environment.as_str())
    }
}

fn host_info(name: &str, host: &StoredHost) -> Result<HostInfo, String> {
    let zone = |n: &str| jiff::tz::TimeZone::get(n).ok();
    let mut windows = Vec::new();
    for spec in &host.windows {
        windows.push(
            spec.build(&zone)
                .map_err(|e| format!("host {name}: a window no longer parses: {e}"))?,
        );
    }
    Ok(HostInfo {
        name: name.to_owned(),
        environment: host.environment.clone(),
        services: host.services.clone(),
        time_zone: zone(&host.time_zone).unwrap_or(jiff::tz::TimeZone::UTC),
        windows,
        os: host.os.clone(),
        versions: host.versions.clone(),
    })
}

/// The server's bookkeeping beside the engine's state.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct Runtime {
    /// Update attempts per host (a retry makes another).
    pub attempts: BTreeMap<String, u32>,
    /// Each host's current update job.
    pub jobs: BTreeMap<String, String>,
    /// Versions of the bundle's packages before the host's first update: what a rollback
    /// returns to.
    pub before: BTreeMap<String, BTreeMap<String, String>>,
    /// Each host's rollback job, once queued.
    pub rollback_jobs: BTreeMap<String, String>,
    /// Rollback jobs that did not restore their host.
    pub rollback_failed: BTreeSet<String>,
    /// Hosts whose job succeeded, waiting for a fresh inventory: when the job ended.
    pub verifying: BTreeMap<String, Timestamp>,
    /// Hosts waiting for a reboot: when they were last asked for an inventory.
    pub awaiting_reboot: BTreeMap<String, Timestamp>,
    /// Hosts whose jobs were cancelled before an agent took them (after an abort).
    pub cancelled: BTreeSet<String>,
    /// The last word on each host (a failed step, a verification), for people.
    pub notes: BTreeMap<String, String>,
    /// Breaker trips so far.
    pub breaker_trips: u32,
    /// When the trip last recorded happened (the engine's trip time).
    pub trip_recorded: Option<Timestamp>,
    /// Hosts restored to their earlier versions (by their own job or a rollback job).
    pub rollbacks: u32,
    /// Why nothing starts, when the engine said wait.
    pub waiting: Option<String>,
    /// When waiting may end.
    pub wait_until: Option<Timestamp>,
    /// The last pause recorded (so a pause is logged once).
    pub last_pause: Option<String>,
    /// An operator asked to roll the whole rollout back: why.
    pub rollback_requested: Option<String>,
    /// Latency regressions seen against the pre-update baseline.
    pub regressions: Vec<String>,
    /// HAProxy servers whose weight is lowered now.
    pub lowered: BTreeSet<String>,
    /// When the Prometheus query last ran.
    pub prometheus_at: Option<Timestamp>,
}

/// A loaded rollout, decoded.
pub struct Loaded {
    /// As stored.
    pub stored: StoredRollout,
    /// The request it was started with.
    pub spec: RolloutRequest,
    /// The stored plan.
    pub stored_plan: StoredPlan,
    /// The engine's plan.
    pub plan: Plan,
    /// The engine's state.
    pub state: RolloutState,
    /// The bookkeeping.
    pub runtime: Runtime,
}

fn corrupt(what: &str, id: &str, e: impl std::fmt::Display) -> ApiError {
    ApiError::internal(format!("rollout {id}: stored {what} cannot be read: {e}"))
}

/// Decodes a stored rollout.
pub fn decode(stored: StoredRollout) -> Result<Loaded, ApiError> {
    let id = stored.id.clone();
    let spec: RolloutRequest =
        serde_json::from_value(stored.spec.clone()).map_err(|e| corrupt("spec", &id, e))?;
    let stored_plan: StoredPlan =
        serde_json::from_value(stored.plan.clone()).map_err(|e| corrupt("plan", &id, e))?;
    let plan = stored_plan.plan().map_err(|e| corrupt("plan", &id, e))?;
    let state: RolloutState =
        serde_json::from_value(stored.state.clone()).map_err(|e| corrupt("state", &id, e))?;
    let runtime: Runtime =
        serde_json::from_value(stored.runtime.clone()).map_err(|e| corrupt("runtime", &id, e))?;
    Ok(Loaded {
        stored,
        spec,
        stored_plan,
        plan,
        state,
        runtime,
    })
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
    if !matches!(
        change.state,
        ChangeState::Scheduled | ChangeState::Implementing
    ) {
        return Err(ApiError::conflict(format!(
            "change {} is {}: only a scheduled (or implementing) change is rolled out",
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

    if change.state == ChangeState::Scheduled {
        crate::api::changes::take_action(
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
    let windows = crate::api::calendars::host_windows(state, &assets, &selected).await?;
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

/// What an operator asks of a rollout (`POST /api/v1/rollouts/{id}/actions`).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, ToSchema)]
#[serde(tag = "action", rename_all = "kebab-case", deny_unknown_fields)]
pub enum OperatorAction {
    /// Start nothing more until resumed.
    Pause {
        /// Why.
        reason: String,
    },
    /// Go on (refused while an alert fires).
    Resume,
    /// Stop for good; jobs not yet taken by an agent are cancelled.
    Abort {
        /// Why.
        reason: String,
    },
    /// Stop and return every host the rollout changed to its earlier versions.
    Rollback {
        /// Why.
        reason: String,
    },
    /// Approve the gate into a ring (approvers; not the person who started the rollout).
    ApproveGate {
        /// The ring index the gate leads to.
        to_ring: usize,
    },
    /// Go on after a breaker trip.
    ResetBreaker,
    /// Try a failed or rolled-back host of the current ring again.
    Retry {
        /// The host.
        host: String,
    },
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

/// Folds alerts into every open rollout they concern: `(alert key, description, firing)` per
/// alert, matched by `relevant(rollout id, hosts, services)`. Returns the ids of rollouts that
/// moved.
pub async fn fold_alerts<F>(
    state: &AppState,
    actor: &Actor,
    relevant: F,
) -> Result<Vec<String>, ApiError>
where
    F: Fn(&str, &BTreeSet<String>, &BTreeSet<String>) -> Vec<(String, String, bool)>,
{
    let mut moved = Vec::new();
    let open = state.store.rollouts(None, true).await?;
    for stored in open {
        let id = stored.id.clone();
        for _ in 0..5 {
            let _guard = state.rollouts.lock.lock().await;
            let mut loaded = load(state, &id).await?;
            if loaded.stored.finished_at.is_some() {
                break;
            }
            let hosts: BTreeSet<String> = loaded.plan.hosts.keys().cloned().collect();
            let services: BTreeSet<String> = loaded
                .plan
                .hosts
                .values()
                .flat_map(|h| h.services.iter().cloned())
                .collect();
            let alerts = relevant(&id, &hosts, &services);
            let mut events = Vec::new();
            for (key, description, firing) in alerts {
                let known = loaded.state.firing.contains(&key);
                let observation = if firing && !known {
                    Observation::AlertFiring { alert: key.clone() }
                } else if !firing && known {
                    Observation::AlertResolved { alert: key.clone() }
                } else {
                    continue;
                };
                if loaded.state.apply(&loaded.plan, &observation).is_ok() {
                    events.push(event(
                        if firing {
                            "alert-firing"
                        } else {
                            "alert-resolved"
                        },
                        json!({"alert": key, "description": description}),
                        true,
                    ));
                }
            }
            if events.is_empty() {
                break;
            }
            if loaded.spec.resume_on_resolve
                && loaded.state.firing.is_empty()
                && loaded.state.operator_pause.is_none()
                && !loaded.state.alerts.is_empty()
            {
                let resume = Observation::Resume {
                    by: "system".to_owned(),
                };
                if loaded.state.apply(&loaded.plan, &resume).is_ok() {
                    events.push(event(
                        "resume",
                        json!({"by": "system", "reason": "every alert that paused the rollout resolved"}),
                        true,
                    ));
                }
            }
            let write = RolloutWrite {
                state: json_of(&loaded.state)?,
                runtime: json_of(&loaded.runtime)?,
                phase: phase_of(&loaded).to_owned(),
                outcome: None,
                events,
                ..Default::default()
            };
            match state
                .store
                .advance_rollout(&id, loaded.stored.version, &write, actor)
                .await
            {
                Ok(_) => {
                    moved.push(id.clone());
                    state.rollouts.moved(&id);
                    break;
                }
                Err(StoreError::Conflict(_)) => continue,
                Err(e) => return Err(e.into()),
            }
        }
    }
    for id in &moved {
        advance(state, id).await?;
    }
    Ok(moved)
}

/// Advances one rollout as far as it goes now; retried when another writer got there first.
pub async fn advance(state: &AppState, id: &str) -> Result<StoredRollout, ApiError> {
    let mut last = None;
    for _ in 0..5 {
        let _guard = state.rollouts.lock.lock().await;
        let loaded = load(state, id).await?;
        if loaded.stored.finished_at.is_some() {
            return Ok(loaded.stored);
        }
        match advance_once(state, loaded).await {
            Ok(stored) => {
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

enum Advance {
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
struct Decision {
    write: RolloutWrite,
    /// Agents to wake (hosts with new jobs or inventory requests).
    wake: BTreeSet<String>,
    /// Hosts to ask for a fresh inventory.
    inventories: BTreeSet<String>,
    /// Jobs to cancel (not yet taken).
    cancel: Vec<String>,
}

async fn advance_once(state: &AppState, mut loaded: Loaded) -> Result<StoredRollout, Advance> {
    let now = state.clock.now();
    let id = loaded.stored.id.clone();
    let mut decision = Decision {
        write: RolloutWrite::default(),
        wake: BTreeSet::new(),
        inventories: BTreeSet::new(),
        cancel: Vec::new(),
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
    let (freezes, _) = crate::api::calendars::freeze_calendar(state, &assets).await?;
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
fn fold_jobs(loaded: &mut Loaded, jobs: &[RolloutJob], now: Timestamp, decision: &mut Decision) {
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
                        }
                        loaded.runtime.verifying.insert(host.clone(), at);
                        decision.inventories.insert(host.clone());
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

fn fold_rollback(
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

fn apply_logged(loaded: &mut Loaded, observation: &Observation, decision: &mut Decision) {
    if let Err(e) = loaded.state.apply(&loaded.plan, observation) {
        // A report that does not fit (a host already moved on) is kept in the log, not lost.
        decision.write.events.push(event(
            "report-refused",
            json!({"observation": observation, "reason": e.to_string()}),
            true,
        ));
    }
}

fn failed_step(report: &JobReport) -> String {
    match report.failed_step() {
        Some(step) => format!("{} failed: {}", step.step, step.message),
        None => report.outcome.as_str().to_owned(),
    }
}

/// The bundle packages on `host` whose reported version is not the target, described.
fn wrong_versions(
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
fn regression(loaded: &Loaded, report: &JobReport) -> Option<String> {
    let (Some(before), Some(after)) = (&report.measurements_before, &report.measurements_after)
    else {
        return None;
    };
    let limit = loaded.stored_plan.max_latency_factor.unwrap_or(2.0);
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
async fn verify(
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
            }
            continue;
        };
        let installed: sluice_core::job::Versions = packages
            .into_iter()
            .map(|p| (p.name, Some(p.version)))
            .collect();
        loaded.runtime.verifying.remove(&host);
        // Already here: no need to ask for another.
        decision.inventories.remove(&host);
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
fn carry_out(
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

/// The update job for `host`: the bundle's packages installed there, at their targets.
fn update_job(loaded: &mut Loaded, host: &str) -> Option<Job> {
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
    })
}

/// Queues a rollback job for each host that has none yet: back to the versions it had before
/// its update, undoing that job's configuration changes too.
fn queue_rollbacks(
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
fn outcome(loaded: &Loaded, actions: &[Action], outstanding: bool) -> Option<(String, String)> {
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
fn rolled_back_scopes(loaded: &Loaded) -> Vec<(String, String, String)> {
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
async fn finish_change(
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
    crate::api::changes::take_action(
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
                // Reports tend to come in bursts (a batch finishing): take them together.
                tokio::time::sleep(Duration::from_millis(30)).await;
            }
            () = tokio::time::sleep(sleep) => {}
        }
    }
}

/// Runs the rollout's Prometheus query when it is due: breaching series fire the alert
/// `prometheus: QUERY`, none resolve it (and may resume the rollout, as for Alertmanager).
/// A query that fails is an event, not a pause: the monitoring being down says nothing about
/// the hosts.
async fn poll_prometheus(
    _state: &AppState,
    loaded: &mut Loaded,
    now: Timestamp,
    decision: &mut Decision,
) {
    let Some(spec) = loaded.spec.prometheus.clone() else {
        return;
    };
    let interval =
        SignedDuration::from_secs(i64::try_from(spec.interval_secs.max(1)).unwrap_or(15));
    if loaded
        .runtime
        .prometheus_at
        .is_some_and(|at| now.duration_since(at) < interval)
    {
        return;
    }
    loaded.runtime.prometheus_at = Some(now);
    let key = format!("prometheus: {}", spec.query);
    let answer = query_prometheus(&spec).await;
    let breaching = match answer {
        Ok(breaching) => breaching,
        Err(e) => {
            decision.write.events.push(event(
                "prometheus-failed",
                json!({"query": spec.query, "error": e}),
                false,
            ));
            return;
        }
    };
    let firing = loaded.state.firing.contains(&key);
    if !breaching.is_empty() && !firing {
        apply_logged(
            loaded,
            &Observation::AlertFiring { alert: key.clone() },
            decision,
        );
        decision.write.events.push(event(
            "alert-firing",
            json!({"alert": key, "description": breaching.join("; ")}),
            true,
        ));
    } else if breaching.is_empty() && firing {
        apply_logged(
            loaded,
            &Observation::AlertResolved { alert: key.clone() },
            decision,
        );
        decision
            .write
            .events
            .push(event("alert-resolved", json!({"alert": key}), true));
        if loaded.spec.resume_on_resolve
            && loaded.state.firing.is_empty()
            && loaded.state.operator_pause.is_none()
        {
            apply_logged(
                loaded,
                &Observation::Resume {
                    by: "system".to_owned(),
                },
                decision,
            );
            decision.write.events.push(event(
                "resume",
                json!({"by": "system", "reason": "every alert that paused the rollout resolved"}),
                true,
            ));
        }
    }
}

async fn query_prometheus(spec: &PrometheusSpec) -> Result<Vec<String>, String> {
    let client = crate::tls::client_builder()?
        .timeout(Duration::from_secs(10))
        .build()
        .map_err(|e| e.to_string())?;
    let url = format!("{}/api/v1/query", spec.url.trim_end_matches('/'));
    let response = client
        .get(&url)
        .query(&[("query", spec.query.as_str())])
        .send()
        .await
        .map_err(|e| format!("{url}: {e}"))?;
    let body = response.bytes().await.map_err(|e| format!("{url}: {e}"))?;
    let answer =
        sluice_core::alerting::parse_prometheus(&body).map_err(|e| format!("{url}: {e}"))?;
    Ok(answer.breaching())
}

fn haproxy_of(spec: &HaproxySpec) -> Result<crate::haproxy::HaproxyRuntime, String> {
    let address: crate::haproxy::RuntimeAddress = spec
        .address
        .parse()
        .map_err(|e| format!("haproxy address: {e}"))?;
    Ok(crate::haproxy::HaproxyRuntime::new(
        address,
        Duration::from_secs(5),
    ))
}

/// Before a canary batch starts, its hosts' HAProxy servers get the canary weight, so only a
/// small share of traffic reaches the new version while it is watched. A refusal pauses the
/// rollout for a person: starting the canary at full weight is not what was asked.
async fn lower_canary_weights(
    state: &AppState,
    loaded: &mut Loaded,
    freezes: &sluice_core::calendar::FreezeCalendar,
    now: Timestamp,
    decision: &mut Decision,
) {
    let Some(spec) = loaded.spec.haproxy.clone() else {
        return;
    };
    let _ = state;
    let actions = next_actions(&loaded.plan, &loaded.state, freezes, now);
    let canaries: Vec<String> = actions
        .iter()
        .filter_map(|a| match a {
            Action::StartHosts(hosts) => Some(hosts.clone()),
            _ => None,
        })
        .flatten()
        .filter(|h| {
            loaded.plan.position(h).is_some_and(|(r, b)| {
                loaded.plan.rings[r]
                    .batches
                    .get(b)
                    .is_some_and(|batch| batch.canary)
            })
        })
        .filter(|h| !loaded.runtime.lowered.contains(h))
        .collect();
    if canaries.is_empty() {
        return;
    }
    let runtime = match haproxy_of(&spec) {
        Ok(runtime) => runtime,
        Err(e) => {
            pause_for(loaded, &e, decision);
            return;
        }
    };
    for host in canaries {
        let server = spec
            .servers
            .get(&host)
            .cloned()
            .unwrap_or_else(|| host.clone());
        match runtime
            .set_weight(&spec.backend, &server, spec.canary_weight)
            .await
        {
            Ok(()) => {
                loaded.runtime.lowered.insert(host.clone());
                decision.write.events.push(event(
                    "haproxy-weight",
                    json!({"host": host, "backend": spec.backend, "server": server, "weight_percent": spec.canary_weight}),
                    true,
                ));
            }
            Err(e) => {
                pause_for(loaded, &format!("haproxy: {host}: {e}"), decision);
                return;
            }
        }
    }
}

fn pause_for(loaded: &mut Loaded, reason: &str, decision: &mut Decision) {
    apply_logged(
        loaded,
        &Observation::Pause {
            by: "system".to_owned(),
            reason: reason.to_owned(),
        },
        decision,
    );
    decision.write.events.push(event(
        "pause",
        json!({"by": "system", "reason": reason}),
        true,
    ));
}

/// Gives lowered servers their full weight back once their batch is behind the rollout (the
/// next batch or ring started), or when it ends (`all`).
async fn restore_canary_weights(
    _state: &AppState,
    loaded: &mut Loaded,
    all: bool,
    decision: &mut Decision,
) {
    let Some(spec) = loaded.spec.haproxy.clone() else {
        return;
    };
    let current = (loaded.state.ring, loaded.state.current_batch(&loaded.plan));
    let due: Vec<String> = loaded
        .runtime
        .lowered
        .iter()
        .filter(|h| {
            all || loaded.plan.position(h).is_none_or(|(r, b)| {
                (r, Some(b)) != current
                    && matches!(
                        loaded.state.status(h),
                        HostStatus::Succeeded | HostStatus::RolledBack | HostStatus::Failed
                    )
            })
        })
        .cloned()
        .collect();
    if due.is_empty() {
        return;
    }
    let Ok(runtime) = haproxy_of(&spec) else {
        return;
    };
    for host in due {
        let server = spec
            .servers
            .get(&host)
            .cloned()
            .unwrap_or_else(|| host.clone());
        match runtime.set_weight(&spec.backend, &server, 100).await {
            Ok(()) => {
                loaded.runtime.lowered.remove(&host);
                decision.write.events.push(event(
                    "haproxy-weight",
                    json!({"host": host, "backend": spec.backend, "server": server, "weight_percent": 100}),
                    true,
                ));
            }
            Err(e) => decision.write.events.push(event(
                "haproxy-failed",
                json!({"host": host, "error": e.to_string()}),
                true,
            )),
        }
    }
}
