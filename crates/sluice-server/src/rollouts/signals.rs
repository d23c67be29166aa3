//! Pause conditions and traffic: alerts from Alertmanager, the Prometheus query, and the
//! HAProxy weights of canary hosts.

use std::collections::BTreeSet;
use std::time::Duration;

use jiff::Timestamp;
use sluice_core::rollout::{
    Observation, canaries_to_lower, next_actions, prometheus_due, weights_to_restore,
};
use sluice_protocol::rollouts::{EventDetail, SystemStep};
use sluice_store::{Actor, RolloutWrite, StoreError};

use super::advance::{Decision, advance, apply_logged};
use super::error::RolloutError;
use super::model::{HaproxySpec, Loaded, PrometheusSpec};
use super::{event, json_of, load};
use crate::state::AppState;

/// Why the server resumes a rollout by itself.
const ALERTS_RESOLVED: &str = "every alert that paused the rollout resolved";

/// Folds alerts into every open rollout they concern: `(alert key, description, firing)` per
/// alert, matched by `relevant(rollout id, hosts, services)`. Returns the ids of rollouts that
/// moved.
pub async fn fold_alerts<F>(
    state: &AppState,
    actor: &Actor,
    relevant: F,
) -> Result<Vec<String>, RolloutError>
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
                    let detail = if firing {
                        EventDetail::AlertFiring {
                            alert: key,
                            description,
                        }
                    } else {
                        EventDetail::AlertResolved {
                            alert: key,
                            description: Some(description),
                        }
                    };
                    events.push(event(detail, true)?);
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
                        EventDetail::SystemResumed(SystemStep::system(ALERTS_RESOLVED)),
                        true,
                    )?);
                }
            }
            let write = RolloutWrite {
                state: json_of(&loaded.state)?,
                runtime: json_of(&loaded.runtime)?,
                phase: loaded.state.phase(),
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

/// Runs the rollout's Prometheus query when it is due: breaching series fire the alert
/// `prometheus: QUERY`, none resolve it (and may resume the rollout, as for Alertmanager).
/// A query that fails is an event, not a pause: the monitoring being down says nothing about
/// the hosts.
pub(super) async fn poll_prometheus(
    _state: &AppState,
    loaded: &mut Loaded,
    now: Timestamp,
    decision: &mut Decision,
) {
    let Some(spec) = loaded.spec.prometheus.clone() else {
        return;
    };
    if !prometheus_due(loaded.runtime.prometheus_at, spec.interval_secs, now) {
        return;
    }
    loaded.runtime.prometheus_at = Some(now);
    let key = format!("prometheus: {}", spec.query);
    let answer = query_prometheus(&spec).await;
    let breaching = match answer {
        Ok(breaching) => breaching,
        Err(e) => {
            decision.log(
                EventDetail::PrometheusFailed {
                    query: spec.query,
                    error: e,
                },
                false,
            );
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
        decision.log(
            EventDetail::AlertFiring {
                alert: key,
                description: breaching.join("; "),
            },
            true,
        );
    } else if breaching.is_empty() && firing {
        apply_logged(
            loaded,
            &Observation::AlertResolved { alert: key.clone() },
            decision,
        );
        decision.log(
            EventDetail::AlertResolved {
                alert: key,
                description: None,
            },
            true,
        );
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
            decision.log(
                EventDetail::SystemResumed(SystemStep::system(ALERTS_RESOLVED)),
                true,
            );
        }
    }
}

pub(super) async fn query_prometheus(spec: &PrometheusSpec) -> Result<Vec<String>, String> {
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

pub(super) fn haproxy_of(spec: &HaproxySpec) -> Result<crate::haproxy::HaproxyRuntime, String> {
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
pub(super) async fn lower_canary_weights(
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
    let canaries = canaries_to_lower(&loaded.plan, &loaded.runtime, &actions);
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
                decision.log(
                    EventDetail::HaproxyWeight {
                        host,
                        backend: spec.backend.clone(),
                        server,
                        weight_percent: spec.canary_weight,
                    },
                    true,
                );
            }
            Err(e) => {
                pause_for(loaded, &format!("haproxy: {host}: {e}"), decision);
                return;
            }
        }
    }
}

pub(super) fn pause_for(loaded: &mut Loaded, reason: &str, decision: &mut Decision) {
    apply_logged(
        loaded,
        &Observation::Pause {
            by: "system".to_owned(),
            reason: reason.to_owned(),
        },
        decision,
    );
    decision.log(EventDetail::SystemPaused(SystemStep::system(reason)), true);
}

/// Gives lowered servers their full weight back once their batch is behind the rollout (the
/// next batch or ring started), or when it ends (`all`).
pub(super) async fn restore_canary_weights(
    _state: &AppState,
    loaded: &mut Loaded,
    all: bool,
    decision: &mut Decision,
) {
    let Some(spec) = loaded.spec.haproxy.clone() else {
        return;
    };
    let due = weights_to_restore(&loaded.plan, &loaded.state, &loaded.runtime, all);
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
                decision.log(
                    EventDetail::HaproxyWeight {
                        host,
                        backend: spec.backend.clone(),
                        server,
                        weight_percent: 100,
                    },
                    true,
                );
            }
            Err(e) => decision.log(
                EventDetail::HaproxyFailed {
                    host,
                    error: e.to_string(),
                },
                true,
            ),
        }
    }
}
