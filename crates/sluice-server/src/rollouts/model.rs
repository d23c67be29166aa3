//! What a rollout is made of: the request that starts it, the plan as stored, and the
//! operators' actions. Stored as JSON and read back on every advance; the bookkeeping beside
//! the engine's state is the core's `Bookkeeping`.

use std::collections::BTreeMap;

use jiff::{SignedDuration, Timestamp};
use serde::{Deserialize, Serialize};
use sluice_core::calendar::{TimeRange, WindowSpec};
use sluice_core::rollout::{
    Bookkeeping, HostInfo, OnTrip, Plan, Ring, RolloutPolicy, RolloutState, Size,
};
pub use sluice_protocol::rollouts::{
    HaproxySpec, JobTemplate, OperatorAction, PrometheusSpec, RolloutRequest,
};
use sluice_store::StoredRollout;

use super::error::RolloutError;

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
