//! Rollouts over HTTP: start one for a scheduled change, follow it (a view, and a stream of
//! server-sent events), and act on it (pause, resume, abort, roll back, approve a gate, reset
//! the breaker, retry a host). The orchestrator (`crate::rollouts`) decides and writes; this
//! module turns requests into its calls and its records into views.

use std::collections::BTreeMap;
use std::convert::Infallible;
use std::time::Duration;

use axum::Extension;
use axum::Json;
use axum::extract::{Path, Query, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::sse::{Event, KeepAlive, Sse};
use futures_util::stream::Stream;
use serde::Deserialize;
use serde_json::Value;
use sluice_core::rollout::HostStatus;
use sluice_protocol::rollouts::{BatchView, HostView, RingView, RolloutEvent, RolloutView};
use utoipa::IntoParams;

use crate::auth::Principal;
use crate::error::{ApiError, ApiJson, Problem};
use crate::governance;
use crate::rollouts::{self, Loaded, OperatorAction, RolloutRequest};
use crate::state::AppState;

/// Building the view of a loaded rollout (the wire type lives in `sluice_protocol`).
pub trait RolloutViewOf {
    /// The view of a loaded rollout.
    fn of(loaded: &Loaded) -> Self;
}

impl RolloutViewOf for RolloutView {
    fn of(loaded: &Loaded) -> Self {
        let runtime = &loaded.runtime;
        let status = |host: &str| -> String {
            if runtime.is_cancelled(host) && loaded.state.status(host) == HostStatus::Running {
                "cancelled".to_owned()
            } else {
                loaded.state.status(host).as_str().to_owned()
            }
        };
        let mut counts: BTreeMap<String, usize> = [
            "pending",
            "running",
            "succeeded",
            "failed",
            "rolled-back",
            "pending-reboot",
        ]
        .iter()
        .map(|s| ((*s).to_owned(), 0))
        .collect();
        for host in loaded.plan.hosts.keys() {
            *counts.entry(status(host)).or_default() += 1;
        }
        let rings = loaded
            .plan
            .rings
            .iter()
            .map(|ring| RingView {
                environment: ring.environment.clone(),
                batches: ring
                    .batches
                    .iter()
                    .map(|batch| BatchView {
                        canary: batch.canary,
                        hosts: batch
                            .hosts
                            .iter()
                            .map(|h| HostView {
                                name: h.clone(),
                                status: status(h),
                                job: runtime.job(h).map(str::to_owned),
                                rollback_job: runtime.rollback_job(h).map(str::to_owned),
                                versions_before: loaded
                                    .stored_plan
                                    .hosts
                                    .get(h)
                                    .map(|s| s.versions.clone())
                                    .unwrap_or_default(),
                                note: runtime.note(h).map(str::to_owned),
                                verifying: runtime.is_verifying(h),
                            })
                            .collect(),
                    })
                    .collect(),
            })
            .collect();
        Self {
            id: loaded.stored.id.clone(),
            change: loaded.stored.change_id.clone(),
            phase: loaded.state.phase(),
            outcome: loaded.stored.outcome,
            finished: loaded.stored.finished_at.is_some(),
            ring: loaded.state.ring,
            waiting: runtime.waiting.clone(),
            wait_until: runtime.wait_until.map(|t| t.to_string()),
            pause_reason: loaded.state.pause_reason(),
            alerts_firing: loaded.state.firing.iter().cloned().collect(),
            breaker: loaded
                .state
                .breaker
                .and_then(|b| serde_json::to_value(b).ok()),
            breaker_reason: loaded.state.breaker.map(|trip| {
                let (ring, batch, scope) = match trip.scope {
                    sluice_core::rollout::BreakerScope::Batch { ring, batch } => {
                        (ring, batch, "batch")
                    }
                    sluice_core::rollout::BreakerScope::Ring { ring, batch } => {
                        (ring, batch, "ring")
                    }
                };
                let environment = loaded
                    .plan
                    .rings
                    .get(ring)
                    .map_or("?", |r| r.environment.as_str());
                let canary = loaded
                    .plan
                    .rings
                    .get(ring)
                    .and_then(|r| r.batches.get(batch))
                    .is_some_and(|b| b.canary);
                let batch = if canary {
                    "the canary".to_owned()
                } else {
                    format!("batch {batch}")
                };
                format!(
                    "{} failed of a threshold of {} for the {scope} in {environment} ({batch})",
                    trip.failed, trip.threshold
                )
            }),
            breaker_trips: runtime.breaker_trips,
            rollbacks: runtime.rollbacks,
            counts,
            regressions: runtime.regressions.clone(),
            targets: loaded.stored_plan.targets.clone(),
            policy: serde_json::to_value(&loaded.plan.policy).unwrap_or(Value::Null),
            rings,
            created_by: loaded.stored.created_by.clone(),
            created_at: loaded.stored.created_at.clone(),
            updated_at: loaded.stored.updated_at.clone(),
            finished_at: loaded.stored.finished_at.clone(),
            version: loaded.stored.version,
        }
    }
}

fn view_of(stored: sluice_store::StoredRollout) -> Result<RolloutView, ApiError> {
    Ok(RolloutView::of(&rollouts::decode(stored)?))
}

/// Starts the rollout of a scheduled change (operator): plans rings, canary and batches from
/// the CMDB, the hosts' windows and the policy, starts the change's implementation, and queues
/// the first jobs. 422 when it cannot be planned (a host without an agent, an environment the
/// policy does not order, a version rolled back before), 409 when the change is not scheduled
/// or already rolling out.
#[utoipa::path(post, path = "/api/v1/rollouts", tag = "rollouts", security(("token" = ["operator"])),
    request_body = RolloutRequest,
    responses((status = 201, body = RolloutView), (status = 404, body = Problem), (status = 409, body = Problem), (status = 422, body = Problem)))]
pub async fn start_rollout(
    State(state): State<AppState>,
    Extension(principal): Extension<Principal>,
    ApiJson(request): ApiJson<RolloutRequest>,
) -> Result<(StatusCode, Json<RolloutView>), ApiError> {
    let person = governance::person(&state.store, &principal).await?;
    let stored = rollouts::start(&state, &person, &principal.actor(), request).await?;
    Ok((StatusCode::CREATED, Json(view_of(stored)?)))
}

/// Which rollouts to list.
#[derive(Debug, Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
pub struct RolloutsQuery {
    /// Only this change's.
    pub change: Option<String>,
    /// Only unfinished ones.
    #[serde(default)]
    pub open: bool,
}

/// Lists rollouts, newest first.
#[utoipa::path(get, path = "/api/v1/rollouts", tag = "rollouts", security(("token" = [])),
    params(RolloutsQuery),
    responses((status = 200, body = Vec<RolloutView>)))]
pub async fn list_rollouts(
    State(state): State<AppState>,
    Query(query): Query<RolloutsQuery>,
) -> Result<Json<Vec<RolloutView>>, ApiError> {
    let stored = state
        .store
        .rollouts(query.change.as_deref(), query.open)
        .await?;
    Ok(Json(
        stored
            .into_iter()
            .map(view_of)
            .collect::<Result<Vec<_>, _>>()?,
    ))
}

/// One rollout.
#[utoipa::path(get, path = "/api/v1/rollouts/{id}", tag = "rollouts", security(("token" = [])),
    params(("id" = String, Path, description = "rollout id, e.g. RO-1")),
    responses((status = 200, body = RolloutView), (status = 404, body = Problem)))]
pub async fn get_rollout(
    State(state): State<AppState>,
    Path(id): Path<String>,
) -> Result<Json<RolloutView>, ApiError> {
    Ok(Json(RolloutView::of(&rollouts::load(&state, &id).await?)))
}

/// Acts on a rollout (operator; approving a gate takes an approver who did not start it):
/// `{"action": "pause", "reason": …}`, `resume`, `{"action": "abort", "reason": …}`,
/// `{"action": "rollback", "reason": …}`, `{"action": "approve-gate", "to_ring": 1}`,
/// `reset-breaker`, `{"action": "retry", "host": …}`. 409 when the state does not allow it.
#[utoipa::path(post, path = "/api/v1/rollouts/{id}/actions", tag = "rollouts", security(("token" = ["operator", "approver"])),
    params(("id" = String, Path, description = "rollout id")),
    request_body = OperatorAction,
    responses((status = 200, body = RolloutView), (status = 403, body = Problem), (status = 404, body = Problem), (status = 409, body = Problem), (status = 422, body = Problem)))]
pub async fn act_on_rollout(
    State(state): State<AppState>,
    Extension(principal): Extension<Principal>,
    Path(id): Path<String>,
    ApiJson(action): ApiJson<OperatorAction>,
) -> Result<Json<RolloutView>, ApiError> {
    let person = governance::person(&state.store, &principal).await?;
    let stored = rollouts::act(&state, &person, &principal.actor(), &id, action).await?;
    Ok(Json(view_of(stored)?))
}

/// Where an event stream starts.
#[derive(Debug, Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
pub struct EventsQuery {
    /// Events after this sequence number (also read from `Last-Event-ID`).
    pub after: Option<i64>,
}

/// The rollout's events as server-sent events: every logged event (`id` is its sequence
/// number, `event` its kind, `data` `{seq, at, kind, detail}`), each burst followed by a
/// `snapshot` event whose data is the rollout view. The stream ends after the snapshot of a
/// finished rollout. Reconnect with `Last-Event-ID` to resume.
#[utoipa::path(get, path = "/api/v1/rollouts/{id}/events", tag = "rollouts", security(("token" = [])),
    params(("id" = String, Path, description = "rollout id"), EventsQuery),
    responses((status = 200, description = "text/event-stream"), (status = 404, body = Problem)))]
pub async fn rollout_events(
    State(state): State<AppState>,
    Path(id): Path<String>,
    Query(query): Query<EventsQuery>,
    headers: HeaderMap,
) -> Result<Sse<impl Stream<Item = Result<Event, Infallible>>>, ApiError> {
    // Exists?
    rollouts::load(&state, &id).await?;
    let after = headers
        .get("last-event-id")
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.trim().parse::<i64>().ok())
        .or(query.after)
        .unwrap_or(0);
    let receiver = state.rollouts.subscribe();
    let stream = futures_util::stream::unfold(
        Streaming {
            state,
            id,
            after,
            receiver,
            pending: std::collections::VecDeque::new(),
            done: false,
            first: true,
        },
        next_events,
    );
    Ok(Sse::new(stream).keep_alive(KeepAlive::new().interval(Duration::from_secs(15))))
}

struct Streaming {
    state: AppState,
    id: String,
    after: i64,
    receiver: tokio::sync::broadcast::Receiver<String>,
    pending: std::collections::VecDeque<Event>,
    done: bool,
    first: bool,
}

async fn next_events(mut s: Streaming) -> Option<(Result<Event, Infallible>, Streaming)> {
    loop {
        if let Some(event) = s.pending.pop_front() {
            return Some((Ok(event), s));
        }
        if s.done {
            return None;
        }
        if !s.first {
            // Wait for this rollout to move (or a few seconds, for writes made elsewhere).
            let wait = tokio::time::sleep(Duration::from_secs(5));
            tokio::pin!(wait);
            loop {
                tokio::select! {
                    got = s.receiver.recv() => match got {
                        Ok(id) if id == s.id => break,
                        Ok(_) => continue,
                        Err(tokio::sync::broadcast::error::RecvError::Lagged(_)) => break,
                        Err(tokio::sync::broadcast::error::RecvError::Closed) => return None,
                    },
                    () = &mut wait => break,
                }
            }
        }
        s.first = false;
        let Ok(events) = s.state.store.rollout_events(&s.id, s.after).await else {
            return None;
        };
        let Ok(loaded) = rollouts::load(&s.state, &s.id).await else {
            return None;
        };
        if events.is_empty() && loaded.stored.finished_at.is_none() {
            continue;
        }
        for e in events {
            s.after = e.seq;
            let data = serde_json::to_string(&RolloutEvent {
                at: e.at,
                detail: e.detail,
                kind: e.kind.clone(),
                seq: e.seq,
            })
            .unwrap_or_default();
            s.pending.push_back(
                Event::default()
                    .id(e.seq.to_string())
                    .event(e.kind)
                    .data(data),
            );
        }
        let view = serde_json::to_string(&RolloutView::of(&loaded)).unwrap_or_default();
        s.pending
            .push_back(Event::default().event("snapshot").data(view));
        s.done = loaded.stored.finished_at.is_some();
    }
}
