//! Pause conditions from the monitoring: Alertmanager's webhook (payload version 4).
//!
//! Point an Alertmanager receiver at `POST /api/v1/alerts/alertmanager` with a bearer token of
//! an operator account kept for it (`http_config.authorization.credentials`). Each alert is
//! matched to the open rollouts it concerns (`sluice_core::alerting::relevant`: the
//! `sluice_rollout` label, or a host by `instance`/`host`/`hostname`/`nodename`, or a service
//! by `service`): a firing alert pauses the rollout, and when every alert that paused it has
//! resolved and no person paused it, it resumes by itself (unless started with
//! `resume_on_resolve: false`).

use axum::Extension;
use axum::Json;
use axum::body::Bytes;
use axum::extract::State;
use sluice_core::alerting::{self, AlertStatus, RolloutScope};
use sluice_protocol::alerts::AlertsReceived;

use crate::auth::Principal;
use crate::error::{ApiError, Problem};
use crate::rollouts;
use crate::state::AppState;

/// Receives an Alertmanager webhook (version 4) and pauses (or resumes) the rollouts its
/// alerts concern (operator). A payload that is not version 4, or not Alertmanager's shape, is
/// a 422 naming the field.
#[utoipa::path(post, path = "/api/v1/alerts/alertmanager", tag = "rollouts", security(("token" = ["operator"])),
    request_body(content = Object, description = "Alertmanager webhook payload, version 4", content_type = "application/json"),
    responses((status = 200, body = AlertsReceived), (status = 422, body = Problem)))]
pub async fn alertmanager(
    State(state): State<AppState>,
    Extension(principal): Extension<Principal>,
    body: Bytes,
) -> Result<Json<AlertsReceived>, ApiError> {
    let payload =
        alerting::parse_alertmanager(&body).map_err(|e| ApiError::unprocessable(e.to_string()))?;
    let moved = rollouts::fold_alerts(&state, &principal.actor(), |id, hosts, services| {
        let scope = RolloutScope {
            rollout: id,
            hosts,
            services,
        };
        payload
            .alerts
            .iter()
            .filter_map(|alert| {
                let key = alerting::relevant(alert, &scope)?;
                Some((
                    key.into_string(),
                    alerting::describe(alert, &scope),
                    alert.status == AlertStatus::Firing,
                ))
            })
            .collect()
    })
    .await?;
    Ok(Json(AlertsReceived {
        alerts: payload.alerts.len(),
        rollouts: moved,
    }))
}
