//! Rollouts: the request that starts one, operator actions, and the rollout as shown.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};
use serde_json::Value;
use sluice_core::job::{Check, Preflight, RollbackPolicy};
use sluice_core::rollout::RolloutPolicy;

/// One host in a rollout view.
#[derive(Debug, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct HostView {
    /// Host name.
    pub name: String,
    /// `pending`, `running`, `succeeded`, `failed`, `rolled-back`, `pending-reboot`, or
    /// `cancelled` (its job was cancelled before an agent took it).
    pub status: String,
    /// Its current update job.
    pub job: Option<String>,
    /// Its rollback job, if one was queued.
    pub rollback_job: Option<String>,
    /// Versions of the bundle's packages when the rollout started.
    pub versions_before: BTreeMap<String, String>,
    /// The last word on it (a failed step, a verification).
    pub note: Option<String>,
    /// Waiting for a fresh inventory to confirm its versions.
    pub verifying: bool,
}

/// One batch.
#[derive(Debug, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct BatchView {
    /// The ring's canary.
    pub canary: bool,
    /// Its hosts.
    pub hosts: Vec<HostView>,
}

/// One ring.
#[derive(Debug, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct RingView {
    /// Its environment.
    pub environment: String,
    /// Canary, then batches.
    pub batches: Vec<BatchView>,
}

/// A rollout as people and tools see it.
#[derive(Debug, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct RolloutView {
    /// `RO-<n>`.
    pub id: String,
    /// The change.
    pub change: String,
    /// `planned`, `running`, `paused`, `halted`, `aborted`, `completed`.
    pub phase: String,
    /// `completed`, `rolled-back`, `aborted` or `failed` once it ended.
    pub outcome: Option<String>,
    /// Whether it ended: nothing more will happen.
    pub finished: bool,
    /// The current ring's index.
    pub ring: usize,
    /// Why nothing starts now, when so.
    pub waiting: Option<String>,
    /// When that may change.
    pub wait_until: Option<String>,
    /// Why it is paused (an operator, alerts).
    pub pause_reason: Option<String>,
    /// Alerts firing now.
    pub alerts_firing: Vec<String>,
    /// The tripped breaker.
    #[cfg_attr(feature = "openapi", schema(value_type = Option<Object>))]
    pub breaker: Option<Value>,
    /// The tripped breaker in words (`2 failed of a threshold of 2 in prod, batch 3`).
    pub breaker_reason: Option<String>,
    /// Trips so far.
    pub breaker_trips: u32,
    /// Hosts restored to their earlier versions so far.
    pub rollbacks: u32,
    /// Hosts per status.
    pub counts: BTreeMap<String, usize>,
    /// Latency regressions flagged against the pre-update baseline.
    pub regressions: Vec<String>,
    /// The bundle: package → target version.
    pub targets: BTreeMap<String, String>,
    /// The policy it runs under.
    #[cfg_attr(feature = "openapi", schema(value_type = Object))]
    pub policy: Value,
    /// Rings, batches, hosts.
    pub rings: Vec<RingView>,
    /// Who started it.
    pub created_by: String,
    /// When.
    pub created_at: String,
    /// Last change.
    pub updated_at: String,
    /// When it ended.
    pub finished_at: Option<String>,
    /// Rises with every write.
    pub version: i64,
}

/// What every host's job does besides reaching the bundle's versions.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(deny_unknown_fields)]
pub struct JobTemplate {
    /// Checks before anything changes.
    #[serde(default)]
    #[cfg_attr(feature = "openapi", schema(value_type = Object))]
    pub preflight: Preflight,
    /// Checks that prove the host works afterwards (a command check runs with `SLUICE_ROOT`).
    #[serde(default)]
    #[cfg_attr(feature = "openapi", schema(value_type = Vec<Object>))]
    pub checks: Vec<Check>,
    /// What the agent does when a check fails after the change.
    #[serde(default)]
    #[cfg_attr(feature = "openapi", schema(value_type = Object))]
    pub rollback: RollbackPolicy,
}

/// A Prometheus instant query polled while the rollout runs: any series it returns with a
/// non-zero value pauses the rollout like a firing alert.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
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

/// HAProxy in front of the hosts: a canary host's server weight is lowered while its batch
/// runs, so only a small share of traffic reaches the new version, and restored afterwards.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
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

/// What `POST /api/v1/rollouts` takes.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(deny_unknown_fields)]
pub struct RolloutRequest {
    /// The change to roll out: scheduled (the server starts its implementation for the caller)
    /// or already implementing.
    pub change: String,
    /// Rings, canary, batches, limits, breaker (docs/rollout.md); default: dev → test →
    /// staging → prod, a one-host canary, batches of 25%, 10 at once, trip at one failure in a
    /// batch or 10% of a ring, roll the batch back.
    #[serde(default)]
    #[cfg_attr(feature = "openapi", schema(value_type = Option<Object>))]
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

/// What an operator asks of a rollout (`POST /api/v1/rollouts/{id}/actions`).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
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

fn default_interval() -> u64 {
    15
}

fn default_canary_weight() -> u8 {
    10
}

fn yes() -> bool {
    true
}

/// One event of a rollout's stream (`GET /api/v1/rollouts/{id}/events`, the `data` of each
/// server-sent event but the `snapshot`s, which carry a [`RolloutView`]).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct RolloutEvent {
    // Fields in alphabetical order: the stream wrote them from a JSON map before, so the bytes
    // stay the same.
    /// When it happened.
    pub at: String,
    /// Its details, by kind.
    pub detail: Value,
    /// What happened (`hosts-started`, `host-failed`, `breaker-tripped`, …).
    pub kind: String,
    /// Rises by one per event of the rollout; the stream's `id`.
    pub seq: i64,
}
