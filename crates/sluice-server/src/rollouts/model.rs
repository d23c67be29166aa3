//! What a rollout is made of: the request that starts it, the plan as stored, and the
//! operators' actions. Stored as JSON and read back on every advance; the bookkeeping beside
//! the engine's state is the core's `Bookkeeping`.

use std::collections::BTreeMap;

use jiff::{SignedDuration, Timestamp};
use serde::{Deserialize, Serialize};
use sluice_core::calendar::{TimeRange, WindowSpec};
use sluice_core::job::{Check, Preflight, RollbackPolicy};
use sluice_core::rollout::{
    Bookkeeping, HostInfo, OnTrip, Plan, Ring, RolloutPolicy, RolloutState, Size,
};
use sluice_store::StoredRollout;
use utoipa::ToSchema;

use super::error::RolloutError;

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

pub(super) fn default_interval() -> u64 {
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

pub(super) fn default_canary_weight() -> u8 {
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

pub(super) fn yes() -> bool {
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
    pub(super) fn of(
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

    pub(super) fn environment(&self, host: &str) -> Option<&str> {
        self.hosts.get(host).map(|h| h.environment.as_str())
    }
}

pub(super) fn host_info(name: &str, host: &StoredHost) -> Result<HostInfo, String> {
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
    /// The orchestrator's bookkeeping (stored in the `runtime` column).
    pub runtime: Bookkeeping,
}

fn corrupt(what: &'static str, id: &str, e: impl std::fmt::Display) -> RolloutError {
    RolloutError::Corrupt {
        id: id.to_owned(),
        what,
        reason: e.to_string(),
    }
}

/// Decodes a stored rollout.
pub fn decode(stored: StoredRollout) -> Result<Loaded, RolloutError> {
    let id = stored.id.clone();
    let spec: RolloutRequest =
        serde_json::from_value(stored.spec.clone()).map_err(|e| corrupt("spec", &id, e))?;
    let stored_plan: StoredPlan =
        serde_json::from_value(stored.plan.clone()).map_err(|e| corrupt("plan", &id, e))?;
    let plan = stored_plan.plan().map_err(|e| corrupt("plan", &id, e))?;
    let state: RolloutState =
        serde_json::from_value(stored.state.clone()).map_err(|e| corrupt("state", &id, e))?;
    let runtime: Bookkeeping =
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
