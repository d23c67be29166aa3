//! Change requests over HTTP: create (from findings or explicit targets), list, show, act
//! (submit, sign off, review, vote, schedule, implement, close, …) and export to ServiceNow or
//! Jira.
//!
//! What happens is `crate::changes`'s (over `sluice-core`); a refused action is the 409, 403 or
//! 422 with the reason (`crate::error` maps them). The `Idempotency-Key`
//! header is honoured on create and actions: a retried vote gets the first answer; a request
//! retried after the server died between its change and its kept answer runs again (a second
//! vote is then refused as a duplicate, a second create makes a second draft to cancel).

use axum::Extension;
use axum::Json;
use axum::extract::rejection::QueryRejection;
use axum::extract::{Path, Query, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use jiff::Timestamp;
use serde_json::Value;
use sluice_core::change::state::next_actions;
use sluice_core::change::{Action, eligible_groups, evaluate_votes, retrospective_status};
use sluice_protocol::changes::{
    ChangeFilter, ChangePage, ChangeSummary, ChangeView, CreateChange, ExportQuery,
};
use sluice_store::StoredChange;

use crate::auth::Principal;
use crate::changes;
use crate::error::{ApiError, ApiJson, Problem};
use crate::state::AppState;

/// Building the view of a stored change (the wire type lives in `sluice_protocol`).
trait ChangeViewOf {
    fn of(stored: StoredChange, now: Timestamp) -> Self;
}

impl ChangeViewOf for ChangeView {
    fn of(stored: StoredChange, now: Timestamp) -> Self {
        let change = stored.change;
        let quorum = change
            .approval_rule
            .as_ref()
            .map(|_| evaluate_votes(&change, &change.votes, now));
        Self {
            version: stored.version,
            retrospective: retrospective_status(&change, now),
            quorum,
            eligible_groups: eligible_groups(&change, now),
            next_actions: next_actions(change.kind, change.state),
            unresolved: Vec::new(),
            change,
        }
    }
}

fn query<T>(query: Result<Query<T>, QueryRejection>) -> Result<T, ApiError> {
    query
        .map(|Query(q)| q)
        .map_err(|rejection| ApiError::bad_request(rejection.body_text()))
}

fn etag(version: i64) -> HeaderValue {
    HeaderValue::from_str(&format!("\"{version}\"")).unwrap_or(HeaderValue::from_static("\"0\""))
}

fn with_etag(status: StatusCode, view: ChangeView) -> Response {
    let tag = etag(view.version);
    let mut response = (status, Json(view)).into_response();
    response.headers_mut().insert(header::ETAG, tag);
    response
}

/// Creates a draft change from findings or explicit targets, with its risk assessed from the
/// CMDB (operator).
#[utoipa::path(post, path = "/api/v1/changes", tag = "changes", security(("token" = ["operator"])),
    params(("Idempotency-Key" = Option<String>, Header, description = "replay-safe retries")),
    request_body = CreateChange,
    responses((status = 201, body = Object, description = "the draft, with `unresolved` advisories"), (status = 422, body = Problem)))]
pub async fn create_change(
    State(state): State<AppState>,
    Extension(principal): Extension<Principal>,
    ApiJson(request): ApiJson<CreateChange>,
) -> Result<Response, ApiError> {
    let now = state.clock.now();
    let (stored, unresolved) = changes::create(&state, &principal, request, now).await?;
    let mut view = ChangeView::of(stored, now);
    view.unresolved = unresolved;
    Ok(with_etag(StatusCode::CREATED, view))
}

/// Replaces a draft's content (same body as create) and assesses it again (operator; the
/// requester or an approver).
#[utoipa::path(put, path = "/api/v1/changes/{id}", tag = "changes", security(("token" = ["operator"])),
    params(("id" = String, Path, description = "change id, e.g. CHG-12"), ("If-Match" = Option<String>, Header, description = "the version read, as `\"3\"`")),
    request_body = CreateChange,
    responses((status = 200, body = Object), (status = 404, body = Problem), (status = 409, body = Problem), (status = 422, body = Problem)))]
pub async fn edit_change(
    State(state): State<AppState>,
    Extension(principal): Extension<Principal>,
    Path(id): Path<String>,
    headers: HeaderMap,
    ApiJson(request): ApiJson<CreateChange>,
) -> Result<Response, ApiError> {
    let now = state.clock.now();
    let stored = changes::load(&state, &id).await?;
    check_if_match(&headers, &stored)?;
    let (saved, unresolved) = changes::edit(&state, &principal, &stored, request, now).await?;
    let mut view = ChangeView::of(saved, now);
    view.unresolved = unresolved;
    Ok(with_etag(StatusCode::OK, view))
}

/// `If-Match: "3"` (or `3`, or a list): the version the caller read; another is a conflict.
fn check_if_match(headers: &HeaderMap, stored: &StoredChange) -> Result<(), ApiError> {
    let Some(value) = headers.get(header::IF_MATCH) else {
        return Ok(());
    };
    let text = value
        .to_str()
        .map_err(|_| ApiError::bad_request("If-Match is not text"))?;
    if text.trim() == "*" {
        return Ok(());
    }
    let versions: Vec<&str> = text
        .split(',')
        .map(|t| t.trim().trim_start_matches("W/").trim_matches('"'))
        .collect();
    if versions.contains(&stored.version.to_string().as_str()) {
        Ok(())
    } else {
        Err(ApiError::conflict(format!(
            "change {} is at version {}, not {}; read it again and decide again",
            stored.change.id,
            stored.version,
            versions.join(", ")
        )))
    }
}

/// Changes, newest first, filtered.
#[utoipa::path(get, path = "/api/v1/changes", tag = "changes", security(("token" = [])), params(ChangeFilter),
    responses((status = 200, body = ChangePage), (status = 422, body = Problem)))]
pub async fn list_changes(
    State(state): State<AppState>,
    filter: Result<Query<ChangeFilter>, QueryRejection>,
) -> Result<Json<ChangePage>, ApiError> {
    let filter = query(filter)?;
    let now = state.clock.now();
    let (page, limit, offset) = changes::list(&state, filter, now).await?;
    let items = page
        .items
        .into_iter()
        .map(|stored| {
            let change = &stored.change;
            ChangeSummary {
                id: change.id.clone(),
                title: change.title.clone(),
                kind: change.kind.as_str().to_owned(),
                state: change.state.as_str().to_owned(),
                risk: change.risk().map(|r| r.as_str().to_owned()),
                risk_score: change.assessment.as_ref().map(|a| a.risk.score),
                requester: change.requester.clone(),
                packages: change.bundle.len(),
                scope: change.scope.to_string(),
                created: change.times.created,
                updated: change.times.updated,
                retrospective: retrospective_status(change, now),
                version: stored.version,
            }
        })
        .collect();
    Ok(Json(ChangePage {
        items,
        total: page.total,
        limit,
        offset,
    }))
}

/// One change, with its quorum, retrospective standing and next actions; `ETag` is its version.
#[utoipa::path(get, path = "/api/v1/changes/{id}", tag = "changes", security(("token" = [])),
    params(("id" = String, Path, description = "change id, e.g. CHG-12")),
    responses((status = 200, body = Object), (status = 404, body = Problem)))]
pub async fn get_change(
    State(state): State<AppState>,
    Path(id): Path<String>,
) -> Result<Response, ApiError> {
    let stored = changes::load(&state, &id).await?;
    Ok(with_etag(
        StatusCode::OK,
        ChangeView::of(stored, state.clock.now()),
    ))
}

/// Takes an action on a change: the body is `{"action": "submit"}`, `{"action": "approve",
/// "comment": …}`, `{"action": "reject", "reason": …}`, `{"action": "schedule", "window":
/// {"start": …, "end": …}}`, … (docs/change.md). 200 with the change; a refused action is 409
/// (not now), 403 (not you) or 422 (not like that) with the reason. Send `If-Match` with the
/// version read to be sure nobody moved the change in between.
#[utoipa::path(post, path = "/api/v1/changes/{id}/actions", tag = "changes", security(("token" = ["operator", "approver"])),
    params(("id" = String, Path, description = "change id"), ("If-Match" = Option<String>, Header, description = "the version read, as `\"3\"`"), ("Idempotency-Key" = Option<String>, Header, description = "replay-safe retries")),
    request_body(content = Object, description = "the action, tagged by `action`", content_type = "application/json"),
    responses((status = 200, body = Object), (status = 403, body = Problem), (status = 404, body = Problem), (status = 409, body = Problem), (status = 422, body = Problem)))]
pub async fn act(
    State(state): State<AppState>,
    Extension(principal): Extension<Principal>,
    Path(id): Path<String>,
    headers: HeaderMap,
    ApiJson(action): ApiJson<Action>,
) -> Result<Response, ApiError> {
    let now = state.clock.now();
    let stored = changes::load(&state, &id).await?;
    check_if_match(&headers, &stored)?;
    let saved = changes::act(&state, &principal, &stored, action, now).await?;
    Ok(with_etag(StatusCode::OK, ChangeView::of(saved, now)))
}

/// The change as a ServiceNow `change_request` record or a Jira issue (docs/change.md).
#[utoipa::path(get, path = "/api/v1/changes/{id}/export", tag = "changes", security(("token" = [])),
    params(("id" = String, Path, description = "change id"), ExportQuery),
    responses((status = 200, body = Object), (status = 404, body = Problem), (status = 422, body = Problem)))]
pub async fn export_change(
    State(state): State<AppState>,
    Path(id): Path<String>,
    export: Result<Query<ExportQuery>, QueryRejection>,
) -> Result<Json<Value>, ApiError> {
    let stored = changes::load(&state, &id).await?;
    let export = query(export)?;
    Ok(Json(changes::export(&stored, export)?))
}
