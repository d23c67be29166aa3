//! Policies over HTTP: the CAB policy and the deferral policy, read by everyone, edited by
//! admins. Each edit is validated whole by `sluice-core` and stored as a new version (audited as
//! `policy.update`); nothing is overwritten. With no stored version, the documented default is
//! the policy, as version 1.

use axum::Extension;
use axum::Json;
use axum::extract::State;
use axum::http::StatusCode;
use serde::{Deserialize, Serialize};
use serde_json::Value;
use sluice_core::change::CabPolicy;
use sluice_core::deferral::DeferralPolicy;
use utoipa::ToSchema;

use crate::auth::Principal;
use crate::error::{ApiError, ApiJson, Problem};
use crate::governance::{PolicyDocument, current_policy};
use crate::policies;
use crate::state::AppState;

/// A policy as the API shows it.
#[derive(Debug, Serialize, ToSchema)]
pub struct PolicyView {
    /// `cab` or `deferral`.
    pub kind: String,
    /// Its version (1 for the built-in default).
    pub version: u32,
    /// Whether this is the built-in default (never edited).
    pub default: bool,
    /// When the version was stored.
    pub created_at: Option<String>,
    /// Who stored it.
    pub created_by: Option<String>,
    /// The policy, as JSON.
    #[schema(value_type = Object)]
    pub policy: Value,
    /// The same policy as TOML, to edit and send back.
    pub toml: String,
}

/// A new version of a policy: the whole document, as TOML or as JSON (one of them). Its
/// `version` is set by the server (the current version + 1); it may be left out.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct PolicyUpdate {
    /// The policy as TOML (docs/change.md).
    pub toml: Option<String>,
    /// The policy as JSON.
    #[schema(value_type = Option<Object>)]
    pub policy: Option<Value>,
    /// The version this edit was based on; a conflict (409) if another edit came first.
    pub based_on: Option<u32>,
}

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
