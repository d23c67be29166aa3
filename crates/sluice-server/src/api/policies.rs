//! Policies over HTTP: the CAB policy and the deferral policy, read by everyone, edited by
//! admins. Each edit is validated whole by `sluice-core` and stored as a new version (audited as
//! `policy.update`); nothing is overwritten. With no stored version, the documented default is
//! the policy, as version 1.

use axum::Extension;
use axum::Json;
use axum::extract::State;
use axum::http::StatusCode;
use sluice_core::change::CabPolicy;
use sluice_core::deferral::DeferralPolicy;
use sluice_protocol::policies::{PolicyUpdate, PolicyView};

use crate::auth::Principal;
use crate::error::{ApiError, ApiJson, Problem};
use crate::governance::{PolicyDocument, current_policy};
use crate::policies;
use crate::state::AppState;

async fn show<P: PolicyDocument>(state: &AppState) -> Result<PolicyView, ApiError> {
    let current = current_policy::<P>(&state.store).await?;
    let toml = toml::to_string(&current.policy).map_err(ApiError::internal)?;
    let (created_at, created_by) = match current.stored.clone() {
        Some((at, by)) => (Some(at), Some(by)),
        None => (None, None),
    };
    Ok(PolicyView {
        kind: P::KIND.to_owned(),
        version: current.policy.version(),
        default: current.stored.is_none(),
        created_at,
        created_by,
        policy: serde_json::to_value(&current.policy).map_err(ApiError::internal)?,
        toml,
    })
}

/// The current CAB policy: approval rules, emergency path, templates, peer review, update-type
/// rules.
#[utoipa::path(get, path = "/api/v1/policies/cab", tag = "policies", security(("token" = [])),
    responses((status = 200, body = PolicyView)))]
pub async fn get_cab(State(state): State<AppState>) -> Result<Json<PolicyView>, ApiError> {
    Ok(Json(show::<CabPolicy>(&state).await?))
}

/// Stores a new version of the CAB policy (admin). Changes in review keep the rule they adopted.
#[utoipa::path(put, path = "/api/v1/policies/cab", tag = "policies", security(("token" = ["admin"])),
    request_body = PolicyUpdate,
    responses((status = 201, body = PolicyView), (status = 409, body = Problem), (status = 422, body = Problem, description = "bad TOML or JSON, or a rule that does not hold; the message names it")))]
pub async fn put_cab(
    State(state): State<AppState>,
    Extension(principal): Extension<Principal>,
    ApiJson(body): ApiJson<PolicyUpdate>,
) -> Result<(StatusCode, Json<PolicyView>), ApiError> {
    policies::update::<CabPolicy>(&state, &principal, body).await?;
    Ok((StatusCode::CREATED, Json(show::<CabPolicy>(&state).await?)))
}

/// The current deferral policy: longest durations per kind, renewals, justification length.
#[utoipa::path(get, path = "/api/v1/policies/deferral", tag = "policies", security(("token" = [])),
    responses((status = 200, body = PolicyView)))]
pub async fn get_deferral(State(state): State<AppState>) -> Result<Json<PolicyView>, ApiError> {
    Ok(Json(show::<DeferralPolicy>(&state).await?))
}

/// Stores a new version of the deferral policy (admin).
#[utoipa::path(put, path = "/api/v1/policies/deferral", tag = "policies", security(("token" = ["admin"])),
    request_body = PolicyUpdate,
    responses((status = 201, body = PolicyView), (status = 409, body = Problem), (status = 422, body = Problem)))]
pub async fn put_deferral(
    State(state): State<AppState>,
    Extension(principal): Extension<Principal>,
    ApiJson(body): ApiJson<PolicyUpdate>,
) -> Result<(StatusCode, Json<PolicyView>), ApiError> {
    policies::update::<DeferralPolicy>(&state, &principal, body).await?;
    Ok((
        StatusCode::CREATED,
        Json(show::<DeferralPolicy>(&state).await?),
    ))
}
