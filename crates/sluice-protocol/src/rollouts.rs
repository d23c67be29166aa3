//! Rollouts: the request that starts one, operator actions, and the rollout as shown.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};
use serde_json::Value;
use sluice_core::job::{Check, JobOutcome, Preflight, RollbackPolicy, Target};
use sluice_core::rollout::{
    BreakerScope, Observation, OnTrip, OutcomeKind, RolloutPhase, RolloutPolicy,
};

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
    #[cfg_attr(feature = "openapi", schema(value_type = String))]
    pub phase: RolloutPhase,
    /// `completed`, `rolled-back`, `aborted` or `failed` once it ended.
    #[cfg_attr(feature = "openapi", schema(value_type = Option<String>))]
    pub outcome: Option<OutcomeKind>,
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

impl OperatorAction {
    /// Its name, as in the request's `action` and as the kind of the event it logs.
    pub fn name(&self) -> &'static str {
        match self {
            OperatorAction::Pause { .. } => "pause",
            OperatorAction::Resume => "resume",
            OperatorAction::Abort { .. } => "abort",
            OperatorAction::Rollback { .. } => "rollback",
            OperatorAction::ApproveGate { .. } => "approve-gate",
            OperatorAction::ResetBreaker => "reset-breaker",
            OperatorAction::Retry { .. } => "retry",
        }
    }
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

impl RolloutEvent {
    /// What happened, typed (an unknown kind, or a detail this client cannot read, is
    /// [`EventDetail::Other`]).
    pub fn typed(&self) -> EventDetail {
        EventDetail::from_parts(&self.kind, self.detail.clone())
    }
}

/// What happened in a rollout, by kind, with its details: what the orchestrator logs and the
/// stream sends as an event's `kind` and `detail`.
///
/// Stored and sent as the pair [`to_parts`](Self::to_parts) gives, read back with
/// [`from_parts`](Self::from_parts). Details are JSON objects whose keys serialise sorted, so
/// the field order here does not show on the wire; an absent optional field is omitted where
/// the orchestrator never wrote the key, `null` where it always did.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(tag = "kind", content = "detail", rename_all = "kebab-case")]
pub enum EventDetail {
    /// The rollout was planned and stored.
    Start {
        /// The change it carries.
        change: String,
        /// How many hosts.
        hosts: usize,
        /// Its rings as planned.
        rings: Vec<RingPlanned>,
        /// The policy it runs under.
        policy: RolloutPolicy,
    },
    /// An operator's action; its kind is the action's name (`pause`, `resume`, `abort`,
    /// `rollback`, `approve-gate`, `reset-breaker`, `retry`), its detail the action as asked.
    #[serde(skip)]
    Acted(OperatorAction),
    /// The server paused the rollout by itself (HAProxy refused a weight): kind `pause`.
    #[serde(skip)]
    SystemPaused(SystemStep),
    /// The server resumed it by itself (every alert that paused it resolved): kind `resume`.
    #[serde(skip)]
    SystemResumed(SystemStep),
    /// An alert concerning its hosts or services fires.
    AlertFiring {
        /// The alert's key.
        alert: String,
        /// In words.
        description: String,
    },
    /// That alert stopped firing.
    AlertResolved {
        /// The alert's key.
        alert: String,
        /// In words (Alertmanager's resolutions carry it, the Prometheus query's do not).
        #[serde(default, skip_serializing_if = "Option::is_none")]
        description: Option<String>,
    },
    /// The rollout's Prometheus query failed (not a pause: the monitoring says nothing of the
    /// hosts).
    PrometheusFailed {
        /// The query.
        query: String,
        /// Why.
        error: String,
    },
    /// A host's HAProxy server weight was set.
    HaproxyWeight {
        /// The host.
        host: String,
        /// The backend.
        backend: String,
        /// Its server name there.
        server: String,
        /// Percent of its configured weight.
        weight_percent: u8,
    },
    /// Restoring a host's HAProxy weight failed.
    HaproxyFailed {
        /// The host.
        host: String,
        /// Why.
        error: String,
    },
    /// The rollout ended.
    Finish {
        /// How.
        outcome: OutcomeKind,
        /// Why, in words.
        reason: String,
        /// Breaker trips over its life.
        breaker_trips: u32,
        /// Hosts restored to their earlier versions.
        rollbacks: u32,
    },
    /// Hosts' update jobs were queued.
    HostsStarted {
        /// Each host with its job.
        hosts: Vec<HostJob>,
        /// The ring of the first host.
        ring: Option<usize>,
        /// Its batch.
        batch: Option<usize>,
    },
    /// A host's job reported its update; a fresh inventory verifies it.
    HostUpdated {
        /// The host.
        host: String,
        /// The job.
        job: String,
        /// How the job ended, as its agent said.
        outcome: JobOutcome,
        /// Versions after the job, by package.
        versions: BTreeMap<String, Option<String>>,
    },
    /// A host's update was verified.
    HostSucceeded {
        /// The host.
        host: String,
        /// How it was verified.
        verified: String,
        /// Only after it rebooted.
        after_reboot: bool,
    },
    /// A host's update failed.
    HostFailed {
        /// The host.
        host: String,
        /// Its job, when one ran.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        job: Option<String>,
        /// Why.
        reason: String,
        /// Versions after its job, when it reported them.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        versions: Option<BTreeMap<String, Option<String>>>,
    },
    /// A host is back on its earlier versions.
    HostRolledBack {
        /// The host.
        host: String,
        /// The job that did it.
        job: String,
        /// `agent` (its update job's own rollback) or `rollout` (a rollback job).
        by: String,
        /// Why the agent rolled back.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        reason: Option<String>,
        /// Versions after.
        versions: BTreeMap<String, Option<String>>,
    },
    /// A host is updated and waits for a reboot.
    HostPendingReboot {
        /// The host.
        host: String,
    },
    /// A host's probes got slower than the change allows.
    Regression {
        /// The host.
        host: String,
        /// Its job.
        job: String,
        /// In words.
        regression: String,
    },
    /// Rollback jobs were queued.
    RollbackStarted {
        /// Each host with its rollback job.
        hosts: Vec<HostRollback>,
    },
    /// A host could not be rolled back.
    RollbackFailed {
        /// The host.
        host: String,
        /// Its rollback job, when one ran.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        job: Option<String>,
        /// Why.
        reason: String,
        /// Versions after the rollback job, when it reported them.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        versions: Option<BTreeMap<String, Option<String>>>,
    },
    /// A report did not fit the state (a host already moved on); kept, not lost.
    ReportRefused {
        /// What was reported.
        observation: Observation,
        /// Why the engine refused it.
        reason: String,
    },
    /// The engine paused starting hosts (a window, a freeze, an alert, …), logged once per
    /// reason.
    Paused {
        /// Why.
        reason: String,
    },
    /// The breaker tripped.
    BreakerTripped {
        /// Which failures.
        scope: BreakerScope,
        /// How many.
        failed: usize,
        /// The threshold they reached.
        threshold: usize,
        /// What the policy does now.
        on_trip: OnTrip,
    },
    /// The gate into a ring passed.
    Promoted {
        /// The ring.
        to_ring: usize,
        /// Its environment.
        environment: Option<String>,
    },
    /// A ring was compared with its pre-update baseline.
    RingBaseline(RingBaselineDetail),
    /// A kind this build does not know (a newer server), or details it cannot read: kept as
    /// sent.
    #[serde(skip)]
    Other {
        /// The kind.
        kind: String,
        /// The details.
        detail: Value,
    },
}

impl EventDetail {
    /// The kind and the detail as stored and sent.
    pub fn to_parts(&self) -> Result<(String, Value), serde_json::Error> {
        match self {
            EventDetail::Other { kind, detail } => Ok((kind.clone(), detail.clone())),
            EventDetail::Acted(action) => {
                Ok((action.name().to_owned(), serde_json::to_value(action)?))
            }
            EventDetail::SystemPaused(step) => {
                Ok(("pause".to_owned(), serde_json::to_value(step)?))
            }
            EventDetail::SystemResumed(step) => {
                Ok(("resume".to_owned(), serde_json::to_value(step)?))
            }
            known => {
                let Value::Object(mut tagged) = serde_json::to_value(known)? else {
                    return Err(serde::ser::Error::custom("an event is not an object"));
                };
                let kind = match tagged.remove("kind") {
                    Some(Value::String(kind)) => kind,
                    _ => return Err(serde::ser::Error::custom("an event without its kind")),
                };
                Ok((kind, tagged.remove("detail").unwrap_or(Value::Null)))
            }
        }
    }

    /// Reads a stored or sent event: [`Other`](Self::Other) when the kind is unknown or its
    /// detail does not read as this build's.
    pub fn from_parts(kind: &str, detail: Value) -> Self {
        let typed = match kind {
            "pause" | "resume" | "abort" | "rollback" | "approve-gate" | "reset-breaker"
            | "retry" => {
                if detail.get("action").is_some() {
                    serde_json::from_value::<OperatorAction>(detail.clone())
                        .ok()
                        .filter(|action| action.name() == kind)
                        .map(EventDetail::Acted)
                } else {
                    let step = serde_json::from_value::<SystemStep>(detail.clone()).ok();
                    match kind {
                        "pause" => step.map(EventDetail::SystemPaused),
                        "resume" => step.map(EventDetail::SystemResumed),
                        _ => None,
                    }
                }
            }
            _ => serde_json::from_value(serde_json::json!({"kind": kind, "detail": &detail})).ok(),
        };
        typed.unwrap_or_else(|| EventDetail::Other {
            kind: kind.to_owned(),
            detail,
        })
    }
}

/// Who paused or resumed a rollout when no person did, and why.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct SystemStep {
    /// `system`.
    pub by: String,
    /// Why.
    pub reason: String,
}

impl SystemStep {
    /// A step of the server's own.
    pub fn system(reason: impl Into<String>) -> Self {
        Self {
            by: "system".to_owned(),
            reason: reason.into(),
        }
    }
}

/// A ring as planned, in the `start` event.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct RingPlanned {
    /// Its environment.
    pub environment: String,
    /// Hosts per batch, canary first.
    pub batches: Vec<usize>,
}

/// A host and the update job queued for it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct HostJob {
    /// The host.
    pub host: String,
    /// The job.
    pub job: String,
}

/// A host and the rollback job queued for it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct HostRollback {
    /// The host.
    pub host: String,
    /// The job.
    pub job: String,
    /// The versions it returns to.
    pub to: Vec<Target>,
}

/// A ring compared with its pre-update baseline (`ring-baseline`).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct RingBaselineDetail {
    /// The ring's index.
    pub ring: usize,
    /// Its environment.
    pub environment: String,
    /// Its hosts.
    pub hosts: usize,
    /// What was measured, when any report carried measurements.
    #[serde(flatten)]
    pub measured: Option<BaselineMeasures>,
}

/// The measurements of a ring's baseline comparison.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct BaselineMeasures {
    /// Hosts with measurements before and after.
    pub measured: usize,
    /// Median probe latency before, ms.
    pub probe_ms_before: Option<f64>,
    /// Median probe latency after, ms.
    pub probe_ms_after: Option<f64>,
    /// Mean 1-minute load before.
    pub load1_before: Option<f64>,
    /// Mean 1-minute load after.
    pub load1_after: Option<f64>,
    /// The probes got slower than the limit allows.
    pub regression: bool,
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

    use jiff::Timestamp;
    use serde_json::json;
    use sluice_core::rollout::{BreakerThresholds, Size};

    use super::*;

    /// Each typed event gives exactly the kind and detail the orchestrator wrote with `json!`
    /// before (the `json!` here is the one it used), and reads back as itself.
    fn same(typed: EventDetail, kind: &str, detail: Value) {
        let (k, d) = typed.to_parts().unwrap();
        assert_eq!(k, kind);
        assert_eq!(
            serde_json::to_string(&d).unwrap(),
            serde_json::to_string(&detail).unwrap(),
            "{kind}"
        );
        assert_eq!(EventDetail::from_parts(kind, detail), typed, "{kind}");
    }

    fn versions() -> BTreeMap<String, Option<String>> {
        [
            ("openssl".to_owned(), Some("3.0.2-2".to_owned())),
            ("curl".to_owned(), None),
        ]
        .into()
    }

    fn policy() -> RolloutPolicy {
        RolloutPolicy {
            ring_order: vec!["test".into(), "prod".into()],
            canary: Some(Size::Count(1)),
            batch: Size::Percent(25),
            max_concurrency: 10,
            breaker: BreakerThresholds {
                per_batch: Size::Count(1),
                per_ring: Size::Percent(10),
            },
            on_trip: OnTrip::RollbackBatch,
            soak: jiff::SignedDuration::ZERO,
            manual_gate: false,
            follow_the_sun: false,
        }
    }

    #[test]
    fn the_start_and_operator_events_keep_their_json() {
        let rings = vec![RingPlanned {
            environment: "prod".into(),
            batches: vec![1, 3],
        }];
        let json_rings = [json!({"environment": "prod", "batches": [1, 3]})];
        same(
            EventDetail::Start {
                change: "CHG-1".into(),
                hosts: 4,
                rings,
                policy: policy(),
            },
            "start",
            json!({"change": "CHG-1", "hosts": 4usize, "rings": json_rings, "policy": policy()}),
        );
        for action in [
            OperatorAction::Pause {
                reason: "look".into(),
            },
            OperatorAction::Resume,
            OperatorAction::Abort {
                reason: "stop".into(),
            },
            OperatorAction::Rollback {
                reason: "bad".into(),
            },
            OperatorAction::ApproveGate { to_ring: 1 },
            OperatorAction::ResetBreaker,
            OperatorAction::Retry {
                host: "web1".into(),
            },
        ] {
            let kind = action.name();
            let detail = serde_json::to_value(&action).unwrap();
            same(EventDetail::Acted(action), kind, detail);
        }
        let why = "every alert that paused the rollout resolved";
        same(
            EventDetail::SystemResumed(SystemStep::system(why)),
            "resume",
            json!({"by": "system", "reason": why}),
        );
        same(
            EventDetail::SystemPaused(SystemStep::system("haproxy: down")),
            "pause",
            json!({"by": "system", "reason": "haproxy: down"}),
        );
    }

    #[test]
    fn the_signal_events_keep_their_json() {
        same(
            EventDetail::AlertFiring {
                alert: "a".into(),
                description: "b".into(),
            },
            "alert-firing",
            json!({"alert": "a", "description": "b"}),
        );
        same(
            EventDetail::AlertResolved {
                alert: "a".into(),
                description: Some("b".into()),
            },
            "alert-resolved",
            json!({"alert": "a", "description": "b"}),
        );
        same(
            EventDetail::AlertResolved {
                alert: "prometheus: up".into(),
                description: None,
            },
            "alert-resolved",
            json!({"alert": "prometheus: up"}),
        );
        same(
            EventDetail::PrometheusFailed {
                query: "up".into(),
                error: "refused".into(),
            },
            "prometheus-failed",
            json!({"query": "up", "error": "refused"}),
        );
        let canary_weight: u8 = 10;
        same(
            EventDetail::HaproxyWeight {
                host: "web1".into(),
                backend: "web".into(),
                server: "w1".into(),
                weight_percent: canary_weight,
            },
            "haproxy-weight",
            json!({"host": "web1", "backend": "web", "server": "w1", "weight_percent": canary_weight}),
        );
        same(
            EventDetail::HaproxyWeight {
                host: "web1".into(),
                backend: "web".into(),
                server: "web1".into(),
                weight_percent: 100,
            },
            "haproxy-weight",
            json!({"host": "web1", "backend": "web", "server": "web1", "weight_percent": 100}),
        );
        same(
            EventDetail::HaproxyFailed {
                host: "web1".into(),
                error: "refused".into(),
            },
            "haproxy-failed",
            json!({"host": "web1", "error": "refused"}),
        );
    }

    #[test]
    fn the_host_events_keep_their_json() {
        same(
            EventDetail::HostsStarted {
                hosts: vec![HostJob {
                    host: "web1".into(),
                    job: "RO-1-web1-u1".into(),
                }],
                ring: Some(0),
                batch: Some(1),
            },
            "hosts-started",
            json!({"hosts": [json!({"host": "web1", "job": "RO-1-web1-u1"})], "ring": Some(0usize), "batch": Some(1usize)}),
        );
        let nowhere: Option<usize> = None;
        same(
            EventDetail::HostsStarted {
                hosts: Vec::new(),
                ring: None,
                batch: None,
            },
            "hosts-started",
            json!({"hosts": Vec::<Value>::new(), "ring": nowhere, "batch": nowhere}),
        );
        same(
            EventDetail::HostUpdated {
                host: "web1".into(),
                job: "j".into(),
                outcome: JobOutcome::AlreadyCompliant,
                versions: versions(),
            },
            "host-updated",
            json!({"host": "web1", "job": "j", "outcome": JobOutcome::AlreadyCompliant.as_str(), "versions": versions()}),
        );
        same(
            EventDetail::HostSucceeded {
                host: "web1".into(),
                verified: "fresh inventory shows the target versions".into(),
                after_reboot: true,
            },
            "host-succeeded",
            json!({"host": "web1", "verified": "fresh inventory shows the target versions", "after_reboot": true}),
        );
        same(
            EventDetail::HostFailed {
                host: "web1".into(),
                job: Some("j".into()),
                reason: "r".into(),
                versions: None,
            },
            "host-failed",
            json!({"host": "web1", "job": "j", "reason": "r"}),
        );
        same(
            EventDetail::HostFailed {
                host: "web1".into(),
                job: Some("j".into()),
                reason: "r".into(),
                versions: Some(versions()),
            },
            "host-failed",
            json!({"host": "web1", "job": "j", "reason": "r", "versions": versions()}),
        );
        same(
            EventDetail::HostFailed {
                host: "web1".into(),
                job: None,
                reason: "r".into(),
                versions: None,
            },
            "host-failed",
            json!({"host": "web1", "reason": "r"}),
        );
        same(
            EventDetail::HostRolledBack {
                host: "web1".into(),
                job: "j".into(),
                by: "agent".into(),
                reason: Some("check failed".into()),
                versions: versions(),
            },
            "host-rolled-back",
            json!({"host": "web1", "job": "j", "by": "agent", "reason": "check failed", "versions": versions()}),
        );
        same(
            EventDetail::HostRolledBack {
                host: "web1".into(),
                job: "j".into(),
                by: "rollout".into(),
                reason: None,
                versions: versions(),
            },
            "host-rolled-back",
            json!({"host": "web1", "job": "j", "by": "rollout", "versions": versions()}),
        );
        same(
            EventDetail::HostPendingReboot {
                host: "web1".into(),
            },
            "host-pending-reboot",
            json!({"host": "web1"}),
        );
        same(
            EventDetail::Regression {
                host: "web1".into(),
                job: "j".into(),
                regression: "slow".into(),
            },
            "regression",
            json!({"host": "web1", "job": "j", "regression": "slow"}),
        );
        let observation = Observation::HostSucceeded {
            host: "web1".into(),
            at: Timestamp::UNIX_EPOCH,
        };
        same(
            EventDetail::ReportRefused {
                observation: observation.clone(),
                reason: "moved on".into(),
            },
            "report-refused",
            json!({"observation": observation, "reason": "moved on"}),
        );
    }

    #[test]
    fn the_rollback_and_ring_events_keep_their_json() {
        let to = vec![Target {
            package: "openssl".into(),
            version: "3.0.2-1".into(),
        }];
        same(
            EventDetail::RollbackStarted {
                hosts: vec![HostRollback {
                    host: "web1".into(),
                    job: "RO-1-web1-r1".into(),
                    to: to.clone(),
                }],
            },
            "rollback-started",
            json!({"hosts": [json!({"host": "web1", "job": "RO-1-web1-r1", "to": to})]}),
        );
        same(
            EventDetail::RollbackFailed {
                host: "web1".into(),
                job: None,
                reason: "versions before the update unknown".into(),
                versions: None,
            },
            "rollback-failed",
            json!({"host": "web1", "reason": "versions before the update unknown"}),
        );
        same(
            EventDetail::RollbackFailed {
                host: "web1".into(),
                job: Some("j".into()),
                reason: "r".into(),
                versions: Some(versions()),
            },
            "rollback-failed",
            json!({"host": "web1", "job": "j", "reason": "r", "versions": versions()}),
        );
        same(
            EventDetail::Paused {
                reason: "outside its window".into(),
            },
            "paused",
            json!({"reason": "outside its window"}),
        );
        let scope = BreakerScope::Batch { ring: 1, batch: 2 };
        same(
            EventDetail::BreakerTripped {
                scope,
                failed: 2,
                threshold: 1,
                on_trip: OnTrip::RollbackBatch,
            },
            "breaker-tripped",
            json!({"scope": scope, "failed": 2usize, "threshold": 1usize, "on_trip": OnTrip::RollbackBatch}),
        );
        same(
            EventDetail::Promoted {
                to_ring: 1,
                environment: Some("prod".into()),
            },
            "promoted",
            json!({"to_ring": 1usize, "environment": Some("prod")}),
        );
        let none: Option<String> = None;
        same(
            EventDetail::Promoted {
                to_ring: 7,
                environment: None,
            },
            "promoted",
            json!({"to_ring": 7usize, "environment": none}),
        );
        same(
            EventDetail::Finish {
                outcome: OutcomeKind::RolledBack,
                reason: "the breaker tripped".into(),
                breaker_trips: 1,
                rollbacks: 2,
            },
            "finish",
            json!({"outcome": "rolled-back", "reason": "the breaker tripped", "breaker_trips": 1u32, "rollbacks": 2u32}),
        );
    }

    #[test]
    fn a_ring_baseline_keeps_its_json_measured_or_not() {
        same(
            EventDetail::RingBaseline(RingBaselineDetail {
                ring: 0,
                environment: "dev".into(),
                hosts: 3,
                measured: None,
            }),
            "ring-baseline",
            json!({"ring": 0usize, "environment": "dev", "hosts": 3usize}),
        );
        let mut detail = json!({"ring": 1usize, "environment": "prod", "hosts": 4usize});
        detail["measured"] = json!(3usize);
        detail["probe_ms_before"] = json!(Some(10.5));
        detail["probe_ms_after"] = json!(Some(26.25));
        detail["load1_before"] = json!(None::<f64>);
        detail["load1_after"] = json!(Some(0.1 + 0.2));
        detail["regression"] = json!(true);
        same(
            EventDetail::RingBaseline(RingBaselineDetail {
                ring: 1,
                environment: "prod".into(),
                hosts: 4,
                measured: Some(BaselineMeasures {
                    measured: 3,
                    probe_ms_before: Some(10.5),
                    probe_ms_after: Some(26.25),
                    load1_before: None,
                    load1_after: Some(0.1 + 0.2),
                    regression: true,
                }),
            }),
            "ring-baseline",
            detail,
        );
    }

    #[test]
    fn an_unknown_kind_or_an_unreadable_detail_is_kept_as_sent() {
        let detail = json!({"host": "web1", "new": [1, 2]});
        same(
            EventDetail::Other {
                kind: "host-teleported".into(),
                detail: detail.clone(),
            },
            "host-teleported",
            detail,
        );
        // A known kind whose detail lacks a field this build needs.
        let odd = json!({"reason": "no host"});
        assert_eq!(
            EventDetail::from_parts("host-failed", odd.clone()),
            EventDetail::Other {
                kind: "host-failed".into(),
                detail: odd
            }
        );
        // An operator action under another action's kind.
        let mismatched = json!({"action": "resume"});
        assert!(matches!(
            EventDetail::from_parts("pause", mismatched),
            EventDetail::Other { .. }
        ));
        // A field a newer server added is ignored.
        let newer = json!({"host": "web1", "extra": 1});
        assert_eq!(
            EventDetail::from_parts("host-pending-reboot", newer),
            EventDetail::HostPendingReboot {
                host: "web1".into()
            }
        );
        let event = RolloutEvent {
            at: "2026-06-01T00:00:00Z".into(),
            detail: json!({"host": "web1"}),
            kind: "host-pending-reboot".into(),
            seq: 3,
        };
        assert_eq!(
            event.typed(),
            EventDetail::HostPendingReboot {
                host: "web1".into()
            }
        );
    }
}
