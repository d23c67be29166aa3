//! Deferrals, risk acceptances and legacy pins over HTTP: request, approve, renew, revoke,
//! list. The rules (who may approve, `security` for risk acceptance, longest durations, renewal
//! limits) are `sluice_core::deferral`'s; the store writes each step against the version it read
//! and audits it (`deferral.request`, `deferral.approve`, `deferral.renew`, `deferral.revoke`).
//! A record's effect shows in the findings listing as each finding's standing.

use axum::Extension;
use axum::Json;
use axum::extract::rejection::QueryRejection;
use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use jiff::Timestamp;
use sluice_core::deferral::{Deferral, DeferralError, DeferralPolicy, DeferralRequest};
use sluice_protocol::deferrals::{
    ApproveBody, DeferralFilter, DeferralView, RenewBody, RevokeBody,
};
use sluice_store::StoredDeferral;

use crate::auth::Principal;
use crate::deferrals;
use crate::error::{ApiError, ApiJson, Problem};
use crate::state::AppState;

/// Building the view of a stored deferral (the wire type lives in `sluice_protocol`).
trait DeferralViewOf {
    fn of(stored: StoredDeferral, now: Timestamp) -> Self;
}

impl DeferralViewOf for DeferralView {
    fn of(stored: StoredDeferral, now: Timestamp) -> Self {
        Self {
            status: stored.deferral.status(now),
            version: stored.version,
            deferral: stored.deferral,
        }
    }
}

/// Asks for a deferral, risk acceptance or legacy pin (operator, approver, security). It covers
/// nothing until someone else approves it.
#[utoipa::path(post, path = "/api/v1/deferrals", tag = "deferrals", security(("token" = ["operator", "approver", "security"])),
    params(("Idempotency-Key" = Option<String>, Header, description = "replay-safe retries")),
    request_body(content = Object, description = "`{target: {type: finding, id} | {type: host-package, host, package}, kind: deferral | risk-acceptance | {legacy-pin: {version}}, justification, expires_at}`", content_type = "application/json"),
    responses((status = 201, body = Object), (status = 403, body = Problem), (status = 422, body = Problem)))]
pub async fn request_deferral(
    State(state): State<AppState>,
    Extension(principal): Extension<Principal>,
    ApiJson(request): ApiJson<DeferralRequest>,
) -> Result<(StatusCode, Json<DeferralView>), ApiError> {
    let now = state.clock.now();
    let stored = deferrals::request(&state, &principal, request, now).await?;
    Ok((StatusCode::CREATED, Json(DeferralView::of(stored, now))))
}

/// Records, newest first, with their status now.
#[utoipa::path(get, path = "/api/v1/deferrals", tag = "deferrals", security(("token" = [])), params(DeferralFilter),
    responses((status = 200, body = Vec<Object>), (status = 422, body = Problem)))]
pub async fn list_deferrals(
    State(state): State<AppState>,
    filter: Result<Query<DeferralFilter>, QueryRejection>,
) -> Result<Json<Vec<DeferralView>>, ApiError> {
    let filter = filter
        .map(|Query(q)| q)
        .map_err(|rejection| ApiError::bad_request(rejection.body_text()))?;
    let now = state.clock.now();
    let stored = deferrals::list(&state, filter, now).await?;
    Ok(Json(
        stored
            .into_iter()
            .map(|s| DeferralView::of(s, now))
            .collect(),
    ))
}

/// One record.
#[utoipa::path(get, path = "/api/v1/deferrals/{id}", tag = "deferrals", security(("token" = [])),
    params(("id" = String, Path, description = "deferral id, e.g. DEF-3")),
    responses((status = 200, body = Object), (status = 404, body = Problem)))]
pub async fn get_deferral(
    State(state): State<AppState>,
    Path(id): Path<String>,
) -> Result<Json<DeferralView>, ApiError> {
    let stored = deferrals::load(&state, &id).await?;
    Ok(Json(DeferralView::of(stored, state.clock.now())))
}

/// Approves a pending record (approver or security; a risk acceptance needs security; never the
/// requester).
#[utoipa::path(post, path = "/api/v1/deferrals/{id}/approve", tag = "deferrals", security(("token" = ["approver", "security"])),
    params(("id" = String, Path, description = "deferral id")),
    request_body = ApproveBody,
    responses((status = 200, body = Object), (status = 403, body = Problem), (status = 404, body = Problem), (status = 409, body = Problem), (status = 422, body = Problem)))]
pub async fn approve_deferral(
    State(state): State<AppState>,
    Extension(principal): Extension<Principal>,
    Path(id): Path<String>,
    ApiJson(_body): ApiJson<ApproveBody>,
) -> Result<Json<DeferralView>, ApiError> {
    decide(
        &state,
        &principal,
        &id,
        "deferral.approve",
        |deferral, person, policy, now| deferral.approve(person, policy, now),
    )
    .await
}

/// Renews an approved (possibly expired) record to a new expiry (approver or security), up to the
/// policy's number of renewals.
#[utoipa::path(post, path = "/api/v1/deferrals/{id}/renew", tag = "deferrals", security(("token" = ["approver", "security"])),
    params(("id" = String, Path, description = "deferral id")),
    request_body = RenewBody,
    responses((status = 200, body = Object), (status = 403, body = Problem), (status = 404, body = Problem), (status = 409, body = Problem), (status = 422, body = Problem)))]
pub async fn renew_deferral(
    State(state): State<AppState>,
    Extension(principal): Extension<Principal>,
    Path(id): Path<String>,
    ApiJson(body): ApiJson<RenewBody>,
) -> Result<Json<DeferralView>, ApiError> {
    decide(
        &state,
        &principal,
        &id,
        "deferral.renew",
        |deferral, person, policy, now| {
            deferral.renew(
                person,
                body.expires_at,
                body.justification.as_deref(),
                policy,
                now,
            )
        },
    )
    .await
}

/// Withdraws a record (its requester, or anyone who could approve it).
#[utoipa::path(post, path = "/api/v1/deferrals/{id}/revoke", tag = "deferrals", security(("token" = ["operator", "approver", "security"])),
    params(("id" = String, Path, description = "deferral id")),
    request_body = RevokeBody,
    responses((status = 200, body = Object), (status = 403, body = Problem), (status = 404, body = Problem), (status = 409, body = Problem), (status = 422, body = Problem)))]
pub async fn revoke_deferral(
    State(state): State<AppState>,
    Extension(principal): Extension<Principal>,
    Path(id): Path<String>,
    ApiJson(body): ApiJson<RevokeBody>,
) -> Result<Json<DeferralView>, ApiError> {
    decide(
        &state,
        &principal,
        &id,
        "deferral.revoke",
        |deferral, person, _, now| deferral.revoke(person, &body.reason, now),
    )
    .await
}

/// One decision on a stored record: load it, let `change` decide as the caller at the
/// governance clock's now under the current policy, and store it against the version read
/// (a record moved meanwhile is a 409), audited as `action`.
async fn decide(
    state: &AppState,
    principal: &Principal,
    id: &str,
    action: &str,
    change: impl FnOnce(
        &mut Deferral,
        &sluice_core::access::Actor,
        &DeferralPolicy,
        Timestamp,
    ) -> Result<(), DeferralError>,
) -> Result<Json<DeferralView>, ApiError> {
    let now = state.clock.now();
    let saved = deferrals::decide(state, principal, id, action, now, change).await?;
    Ok(Json(DeferralView::of(saved, now)))
}
