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
use serde::Deserialize;
use sluice_core::deferral::{
    Deferral, DeferralError, DeferralPolicy, DeferralRequest, DeferralStatus, DeferralTarget,
};
use sluice_protocol::deferrals::{ApproveBody, DeferralView, RenewBody, RevokeBody};
use sluice_store::{DeferralsQuery, StoredDeferral};
use utoipa::IntoParams;

use crate::auth::Principal;
use crate::error::{ApiError, ApiJson, Problem};
use crate::governance::{self, current_policy};
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

fn deferral_error(error: DeferralError) -> ApiError {
    let detail = error.to_string();
    match error {
        DeferralError::Invalid { field, .. } => ApiError::invalid_field(&field, detail),
        DeferralError::TooLong { .. } => ApiError::invalid_field("expires_at", detail),
        DeferralError::Policy(_) => ApiError::unprocessable(detail),
        DeferralError::SelfApproval { .. } | DeferralError::MissingRole { .. } => {
            ApiError::forbidden(detail)
        }
        _ => ApiError::conflict(detail),
    }
}

async fn load(state: &AppState, id: &str) -> Result<StoredDeferral, ApiError> {
    state
        .store
        .deferral(id)
        .await?
        .ok_or_else(|| ApiError::not_found(format!("deferral {id} not found")))
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
    let mut request = request;
    match &mut request.target {
        DeferralTarget::Finding { id } => {
            let number: i64 = id.trim().parse().map_err(|_| {
                ApiError::invalid_field(
                    "target.id",
                    format!("target.id: {id:?} is not a finding id"),
                )
            })?;
            if state.store.finding(number).await?.is_none() {
                return Err(ApiError::invalid_field(
                    "target.id",
                    format!("target.id: no finding {number}"),
                ));
            }
            *id = number.to_string();
        }
        DeferralTarget::HostPackage { host, package } => {
            let key = host.trim().to_ascii_lowercase();
            if state.store.asset(&key).await?.is_none() {
                return Err(ApiError::invalid_field(
                    "target.host",
                    format!("target.host: no asset {key} in the CMDB"),
                ));
            }
            *host = key;
            *package = package.trim().to_owned();
        }
    }
    let person = governance::person(&state.store, &principal).await?;
    let policy = current_policy::<DeferralPolicy>(&state.store).await?.policy;
    let deferral =
        Deferral::request("new", request, &person, &policy, now).map_err(deferral_error)?;
    let stored = state
        .store
        .create_deferral(deferral, &principal.actor())
        .await?;
    Ok((StatusCode::CREATED, Json(DeferralView::of(stored, now))))
}

/// Which records to list.
#[derive(Debug, Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
pub struct DeferralFilter {
    /// Only records on this host.
    pub host: Option<String>,
    /// Only records for this finding.
    pub finding: Option<String>,
    /// `pending`, `active`, `expired` or `revoked` (revoked ones are listed only when asked).
    pub status: Option<String>,
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
    let status = filter.status.as_deref();
    if let Some(status) = status
        && !matches!(status, "pending" | "active" | "expired" | "revoked")
    {
        return Err(ApiError::invalid_field(
            "status",
            format!("status: {status:?} is not pending, active, expired or revoked"),
        ));
    }
    let now = state.clock.now();
    let stored = state
        .store
        .deferrals(&DeferralsQuery {
            hostname: filter.host.map(|h| h.trim().to_ascii_lowercase()),
            finding_id: filter.finding,
            include_revoked: status == Some("revoked"),
        })
        .await?;
    let views = stored
        .into_iter()
        .map(|s| DeferralView::of(s, now))
        .filter(|v| {
            status.is_none_or(|wanted| {
                let name = match v.status {
                    DeferralStatus::Pending => "pending",
                    DeferralStatus::Active { .. } => "active",
                    DeferralStatus::Expired { .. } => "expired",
                    DeferralStatus::Revoked { .. } => "revoked",
                };
                name == wanted
            })
        })
        .collect();
    Ok(Json(views))
}

/// One record.
#[utoipa::path(get, path = "/api/v1/deferrals/{id}", tag = "deferrals", security(("token" = [])),
    params(("id" = String, Path, description = "deferral id, e.g. DEF-3")),
    responses((status = 200, body = Object), (status = 404, body = Problem)))]
pub async fn get_deferral(
    State(state): State<AppState>,
    Path(id): Path<String>,
) -> Result<Json<DeferralView>, ApiError> {
    let stored = load(&state, &id).await?;
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
    let stored = load(state, id).await?;
    let person = governance::person(&state.store, principal).await?;
    let policy = current_policy::<DeferralPolicy>(&state.store).await?.policy;
    let mut deferral = stored.deferral.clone();
    change(&mut deferral, &person, &policy, now).map_err(deferral_error)?;
    let saved = state
        .store
        .update_deferral(&deferral, stored.version, action, &principal.actor())
        .await?;
    Ok(Json(DeferralView::of(saved, now)))
}
