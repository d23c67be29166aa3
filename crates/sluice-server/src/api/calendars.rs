//! Maintenance windows, freezes and freeze exceptions over HTTP, and the calendar's verdict on a
//! change's schedule. What a rule means and what the calendar says are `crate::calendar`'s
//! (over `sluice_core::calendar`); a refused rule is a 422 naming the field in the parser's
//! words.
//!
//! Roles: windows are created by operators or admins and deleted by admins; freezes are made and
//! lifted by approvers or admins (they are a governance decision); exceptions are requested by
//! operators or approvers and decided by approvers, never by their requester.
//!
//! A host that no window selects may be changed at any time: windows restrict the hosts they
//! select and leave the others alone (docs/calendar.md).

use axum::Extension;
use axum::Json;
use axum::extract::rejection::QueryRejection;
use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use jiff::Timestamp;
use serde::Deserialize;
use sluice_protocol::calendars::{
    ConflictPreview, CreateFreeze, CreateWindow, Deleted, FreezeExceptionRecord, FreezeRecord,
    RequestException, WindowRecord,
};
use sluice_store::{StoredFreeze, StoredFreezeException, StoredWindow};
use utoipa::IntoParams;

use crate::auth::Principal;
use crate::error::{ApiError, ApiJson, Problem};
use crate::state::AppState;
use crate::{calendar, changes};

/// Every maintenance window, by name.
#[utoipa::path(get, path = "/api/v1/windows", tag = "calendars", security(("token" = [])),
    responses((status = 200, body = Vec<WindowRecord>)))]
pub async fn list_windows(
    State(state): State<AppState>,
) -> Result<Json<Vec<WindowRecord>>, ApiError> {
    let windows = state.store.windows().await?;
    Ok(Json(windows.into_iter().map(window_record).collect()))
}

/// Creates a maintenance window (operator, admin). A rule the calendar refuses is a 422 naming
/// the field (`definition.rrule`, `definition.tz`, ...); a name taken is a 409.
#[utoipa::path(post, path = "/api/v1/windows", tag = "calendars", security(("token" = ["operator", "admin"])),
    request_body = CreateWindow,
    responses((status = 201, body = WindowRecord), (status = 409, body = Problem), (status = 422, body = Problem)))]
pub async fn create_window(
    State(state): State<AppState>,
    Extension(principal): Extension<Principal>,
    ApiJson(request): ApiJson<CreateWindow>,
) -> Result<(StatusCode, Json<WindowRecord>), ApiError> {
    let window = calendar::create_window(&state, &principal, request, state.clock.now()).await?;
    Ok((StatusCode::CREATED, Json(window_record(window))))
}

/// Deletes a maintenance window (admin).
#[utoipa::path(delete, path = "/api/v1/windows/{name}", tag = "calendars", security(("token" = ["admin"])),
    params(("name" = String, Path, description = "window name")),
    responses((status = 200, body = Deleted), (status = 404, body = Problem)))]
pub async fn delete_window(
    State(state): State<AppState>,
    Extension(principal): Extension<Principal>,
    Path(name): Path<String>,
) -> Result<Json<Deleted>, ApiError> {
    state.store.delete_window(&name, &principal.actor()).await?;
    Ok(Json(Deleted { deleted: name }))
}

/// Every freeze, by name.
#[utoipa::path(get, path = "/api/v1/freezes", tag = "calendars", security(("token" = [])),
    responses((status = 200, body = Vec<FreezeRecord>)))]
pub async fn list_freezes(
    State(state): State<AppState>,
) -> Result<Json<Vec<FreezeRecord>>, ApiError> {
    let freezes = state.store.freezes().await?;
    Ok(Json(freezes.into_iter().map(freeze_record).collect()))
}

/// Creates a freeze (approver, admin). A rule the calendar refuses is a 422 naming the field.
#[utoipa::path(post, path = "/api/v1/freezes", tag = "calendars", security(("token" = ["approver", "admin"])),
    request_body = CreateFreeze,
    responses((status = 201, body = FreezeRecord), (status = 409, body = Problem), (status = 422, body = Problem)))]
pub async fn create_freeze(
    State(state): State<AppState>,
    Extension(principal): Extension<Principal>,
    ApiJson(request): ApiJson<CreateFreeze>,
) -> Result<(StatusCode, Json<FreezeRecord>), ApiError> {
    let freeze = calendar::create_freeze(&state, &principal, request, state.clock.now()).await?;
    Ok((StatusCode::CREATED, Json(freeze_record(freeze))))
}

/// Deletes a freeze and its exception requests (approver, admin).
#[utoipa::path(delete, path = "/api/v1/freezes/{name}", tag = "calendars", security(("token" = ["approver", "admin"])),
    params(("name" = String, Path, description = "freeze name")),
    responses((status = 200, body = Deleted), (status = 404, body = Problem)))]
pub async fn delete_freeze(
    State(state): State<AppState>,
    Extension(principal): Extension<Principal>,
    Path(name): Path<String>,
) -> Result<Json<Deleted>, ApiError> {
    state.store.delete_freeze(&name, &principal.actor()).await?;
    Ok(Json(Deleted { deleted: name }))
}

/// Exception requests of one freeze, oldest first.
#[utoipa::path(get, path = "/api/v1/freezes/{name}/exceptions", tag = "calendars", security(("token" = [])),
    params(("name" = String, Path, description = "freeze name")),
    responses((status = 200, body = Vec<FreezeExceptionRecord>), (status = 404, body = Problem)))]
pub async fn list_freeze_exceptions(
    State(state): State<AppState>,
    Path(name): Path<String>,
) -> Result<Json<Vec<FreezeExceptionRecord>>, ApiError> {
    let exceptions = calendar::freeze_exceptions(&state, &name).await?;
    Ok(Json(exceptions.into_iter().map(exception_record).collect()))
}

/// Asks for an exception to a freeze (operator, approver). It lifts nothing until an approver
/// other than the requester approves it.
#[utoipa::path(post, path = "/api/v1/freezes/{name}/exceptions", tag = "calendars", security(("token" = ["operator", "approver"])),
    params(("name" = String, Path, description = "freeze name")),
    request_body = RequestException,
    responses((status = 201, body = FreezeExceptionRecord), (status = 404, body = Problem), (status = 422, body = Problem)))]
pub async fn request_freeze_exception(
    State(state): State<AppState>,
    Extension(principal): Extension<Principal>,
    Path(name): Path<String>,
    ApiJson(request): ApiJson<RequestException>,
) -> Result<(StatusCode, Json<FreezeExceptionRecord>), ApiError> {
    let now = state.clock.now();
    let stored = calendar::request_exception(&state, &principal, name, request, now).await?;
    Ok((StatusCode::CREATED, Json(exception_record(stored))))
}

/// Every exception request, oldest first.
#[utoipa::path(get, path = "/api/v1/freeze-exceptions", tag = "calendars", security(("token" = [])),
    responses((status = 200, body = Vec<FreezeExceptionRecord>)))]
pub async fn list_all_freeze_exceptions(
    State(state): State<AppState>,
) -> Result<Json<Vec<FreezeExceptionRecord>>, ApiError> {
    let exceptions = state.store.freeze_exceptions(None).await?;
    Ok(Json(exceptions.into_iter().map(exception_record).collect()))
}

async fn decide(
    state: &AppState,
    principal: &Principal,
    id: &str,
    approve: bool,
) -> Result<Json<FreezeExceptionRecord>, ApiError> {
    let now = state.clock.now();
    let decided = calendar::decide_exception(state, principal, id, approve, now).await?;
    Ok(Json(exception_record(decided)))
}

/// Approves an exception request (approver, not its requester); 409 if already decided.
#[utoipa::path(post, path = "/api/v1/freeze-exceptions/{id}/approve", tag = "calendars", security(("token" = ["approver"])),
    params(("id" = String, Path, description = "exception id, e.g. FEX-3")),
    responses((status = 200, body = FreezeExceptionRecord), (status = 403, body = Problem), (status = 404, body = Problem), (status = 409, body = Problem)))]
pub async fn approve_freeze_exception(
    State(state): State<AppState>,
    Extension(principal): Extension<Principal>,
    Path(id): Path<String>,
) -> Result<Json<FreezeExceptionRecord>, ApiError> {
    decide(&state, &principal, &id, true).await
}

/// Rejects an exception request (approver, not its requester); 409 if already decided.
#[utoipa::path(post, path = "/api/v1/freeze-exceptions/{id}/reject", tag = "calendars", security(("token" = ["approver"])),
    params(("id" = String, Path, description = "exception id, e.g. FEX-3")),
    responses((status = 200, body = FreezeExceptionRecord), (status = 403, body = Problem), (status = 404, body = Problem), (status = 409, body = Problem)))]
pub async fn reject_freeze_exception(
    State(state): State<AppState>,
    Extension(principal): Extension<Principal>,
    Path(id): Path<String>,
) -> Result<Json<FreezeExceptionRecord>, ApiError> {
    decide(&state, &principal, &id, false).await
}

/// The wire's record of a stored window.
fn window_record(window: StoredWindow) -> WindowRecord {
    WindowRecord {
        name: window.name,
        scope: window.scope,
        definition: window.definition,
        created_by: window.created_by,
        created_at: window.created_at,
    }
}

/// The wire's record of a stored freeze.
fn freeze_record(freeze: StoredFreeze) -> FreezeRecord {
    FreezeRecord {
        name: freeze.name,
        scope: freeze.scope,
        definition: freeze.definition,
        created_by: freeze.created_by,
        created_at: freeze.created_at,
    }
}

/// The wire's record of a stored exception request (its state by name).
fn exception_record(exception: StoredFreezeException) -> FreezeExceptionRecord {
    FreezeExceptionRecord {
        id: exception.id,
        freeze: exception.freeze,
        scope: exception.scope,
        from: exception.from,
        until: exception.until,
        justification: exception.justification,
        requested_by: exception.requested_by,
        requested_at: exception.requested_at,
        state: exception.state.as_str().to_owned(),
        decided_by: exception.decided_by,
        decided_at: exception.decided_at,
    }
}

/// The time range to check a change against.
#[derive(Debug, Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
pub struct ConflictQuery {
    /// When the change would start (RFC 3339); default: its schedule's start.
    #[param(value_type = Option<String>)]
    pub start: Option<Timestamp>,
    /// When it must be done (RFC 3339); default: its schedule's end.
    #[param(value_type = Option<String>)]
    pub end: Option<Timestamp>,
}

/// Previews the calendar's conflicts for a change over `start`..`end` (default: its schedule).
#[utoipa::path(get, path = "/api/v1/changes/{id}/conflicts", tag = "changes", security(("token" = [])),
    params(("id" = String, Path, description = "change id"), ConflictQuery),
    responses((status = 200, body = ConflictPreview), (status = 404, body = Problem), (status = 422, body = Problem)))]
pub async fn preview_conflicts(
    State(state): State<AppState>,
    Path(id): Path<String>,
    query: Result<Query<ConflictQuery>, QueryRejection>,
) -> Result<Json<ConflictPreview>, ApiError> {
    let stored = changes::load(&state, &id).await?;
    let Query(query) = query.map_err(|e| ApiError::unprocessable(e.body_text()))?;
    let (range, conflicts) =
        calendar::preview_conflicts(&state, &stored.change, query.start, query.end).await?;
    Ok(Json(ConflictPreview {
        id,
        start: range.start,
        end: range.end,
        blocked: conflicts.iter().any(|c| c.exception.is_none()),
        conflicts,
    }))
}
