//! Maintenance windows, freezes and freeze exceptions over HTTP, and the calendar's verdict on a
//! change's schedule.
//!
//! What a rule means is `sluice_core::calendar`'s: definitions are kept as written and parsed
//! again on every read ([`WindowSpec`], [`FreezeSpec`]); a refused one is a 422 naming the field
//! in the parser's words. This module resolves scopes (CMDB selectors) to hosts, reads the tz
//! database, and hands everything to `calendar::detect_conflicts`. The store audits every write.
//!
//! Roles: windows are created by operators or admins and deleted by admins; freezes are made and
//! lifted by approvers or admins (they are a governance decision); exceptions are requested by
//! operators or approvers and decided by approvers, never by their requester.
//!
//! A host that no window selects may be changed at any time: windows restrict the hosts they
//! select and leave the others alone (docs/calendar.md).

use std::collections::BTreeSet;

use axum::Extension;
use axum::Json;
use axum::extract::rejection::QueryRejection;
use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use jiff::Timestamp;
use jiff::tz::TimeZone;
use serde::Deserialize;
use sluice_core::calendar::freeze::ExceptionDecision;
use sluice_core::calendar::spec::MAX_EXCEPTION;
use sluice_core::calendar::{
    Conflict, FreezeCalendar, FreezeException, FreezeRuleSpec, HostCalendar, ProposedChange, Scope,
    SpecError, TimeRange, WindowSpec, detect_conflicts,
};
use sluice_core::change::{ChangeState, ScheduleConflict};
use sluice_core::cmdb::{Asset, Selector};
use sluice_protocol::calendars::{
    ConflictPreview, CreateFreeze, CreateWindow, Deleted, RequestException,
};
use sluice_store::{
    ChangesQuery, ExceptionState, StoredFreeze, StoredFreezeException, StoredWindow,
};
use utoipa::IntoParams;

use crate::auth::Principal;
use crate::error::{ApiError, ApiJson, Problem};
use crate::state::AppState;

fn zone(name: &str) -> Option<TimeZone> {
    TimeZone::get(name).ok()
}

fn spec_error(prefix: &str, error: SpecError) -> ApiError {
    let field = format!("{prefix}.{}", error.field);
    ApiError::invalid_field(&field, format!("{field}: {}", error.message))
}

fn check_name(name: &str) -> Result<String, ApiError> {
    let name = name.trim();
    let ok = !name.is_empty()
        && name.len() <= 64
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"._-".contains(&b));
    if ok {
        Ok(name.to_owned())
    } else {
        Err(ApiError::invalid_field(
            "name",
            format!("name: {name:?} must be 1 to 64 letters, digits, '.', '_' or '-'"),
        ))
    }
}

fn parse_scope(text: &str) -> Result<Selector, ApiError> {
    Selector::parse(text).map_err(|e| ApiError::invalid_field("scope", format!("scope: {e}")))
}

/// An RRULE's start date defaults to the day it is stored, in the window's zone.
fn fill_dtstart(spec: &mut WindowSpec, now: Timestamp) {
    if spec.rrule.is_some()
        && spec.dtstart.is_none()
        && spec.active_from.is_none()
        && let Some(tz) = zone(&spec.tz)
    {
        spec.dtstart = Some(now.to_zoned(tz).date());
    }
}

/// Every maintenance window, by name.
#[utoipa::path(get, path = "/api/v1/windows", tag = "calendars", security(("token" = [])),
    responses((status = 200, body = Vec<Object>)))]
pub async fn list_windows(
    State(state): State<AppState>,
) -> Result<Json<Vec<StoredWindow>>, ApiError> {
    Ok(Json(state.store.windows().await?))
}

/// Creates a maintenance window (operator, admin). A rule the calendar refuses is a 422 naming
/// the field (`definition.rrule`, `definition.tz`, ...); a name taken is a 409.
#[utoipa::path(post, path = "/api/v1/windows", tag = "calendars", security(("token" = ["operator", "admin"])),
    request_body = CreateWindow,
    responses((status = 201, body = Object), (status = 409, body = Problem), (status = 422, body = Problem)))]
pub async fn create_window(
    State(state): State<AppState>,
    Extension(principal): Extension<Principal>,
    ApiJson(request): ApiJson<CreateWindow>,
) -> Result<(StatusCode, Json<StoredWindow>), ApiError> {
    let now = state.clock.now();
    let name = check_name(&request.name)?;
    parse_scope(&request.scope)?;
    let mut definition = request.definition;
    fill_dtstart(&mut definition, now);
    definition
        .build(&zone)
        .map_err(|e| spec_error("definition", e))?;
    let window = StoredWindow {
        name,
        scope: request.scope.trim().to_owned(),
        definition,
        created_by: principal.username.clone(),
        created_at: now,
    };
    state
        .store
        .create_window(&window, &principal.actor())
        .await?;
    Ok((StatusCode::CREATED, Json(window)))
}

/// Deletes a maintenance window (admin).
#[utoipa::path(delete, path = "/api/v1/windows/{name}", tag = "calendars", security(("token" = ["admin"])),
    params(("name" = String, Path, description = "window name")),
    responses((status = 200, body = Object), (status = 404, body = Problem)))]
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
    responses((status = 200, body = Vec<Object>)))]
pub async fn list_freezes(
    State(state): State<AppState>,
) -> Result<Json<Vec<StoredFreeze>>, ApiError> {
    Ok(Json(state.store.freezes().await?))
}

/// Creates a freeze (approver, admin). A rule the calendar refuses is a 422 naming the field.
#[utoipa::path(post, path = "/api/v1/freezes", tag = "calendars", security(("token" = ["approver", "admin"])),
    request_body = CreateFreeze,
    responses((status = 201, body = Object), (status = 409, body = Problem), (status = 422, body = Problem)))]
pub async fn create_freeze(
    State(state): State<AppState>,
    Extension(principal): Extension<Principal>,
    ApiJson(request): ApiJson<CreateFreeze>,
) -> Result<(StatusCode, Json<StoredFreeze>), ApiError> {
    let now = state.clock.now();
    let name = check_name(&request.name)?;
    parse_scope(&request.scope)?;
    let mut definition = request.definition;
    if let FreezeRuleSpec::Recurring { window } = &mut definition.rule {
        fill_dtstart(window, now);
    }
    definition
        .build(&name, Scope::Everything, &zone)
        .map_err(|e| spec_error("definition", e))?;
    let freeze = StoredFreeze {
        name,
        scope: request.scope.trim().to_owned(),
        definition,
        created_by: principal.username.clone(),
        created_at: now,
    };
    state
        .store
        .create_freeze(&freeze, &principal.actor())
        .await?;
    Ok((StatusCode::CREATED, Json(freeze)))
}

/// Deletes a freeze and its exception requests (approver, admin).
#[utoipa::path(delete, path = "/api/v1/freezes/{name}", tag = "calendars", security(("token" = ["approver", "admin"])),
    params(("name" = String, Path, description = "freeze name")),
    responses((status = 200, body = Object), (status = 404, body = Problem)))]
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
    responses((status = 200, body = Vec<Object>), (status = 404, body = Problem)))]
pub async fn list_freeze_exceptions(
    State(state): State<AppState>,
    Path(name): Path<String>,
) -> Result<Json<Vec<StoredFreezeException>>, ApiError> {
    if !state.store.freezes().await?.iter().any(|f| f.name == name) {
        return Err(ApiError::not_found(format!("freeze {name:?} not found")));
    }
    Ok(Json(state.store.freeze_exceptions(Some(&name)).await?))
}

/// Asks for an exception to a freeze (operator, approver). It lifts nothing until an approver
/// other than the requester approves it.
#[utoipa::path(post, path = "/api/v1/freezes/{name}/exceptions", tag = "calendars", security(("token" = ["operator", "approver"])),
    params(("name" = String, Path, description = "freeze name")),
    request_body = RequestException,
    responses((status = 201, body = Object), (status = 404, body = Problem), (status = 422, body = Problem)))]
pub async fn request_freeze_exception(
    State(state): State<AppState>,
    Extension(principal): Extension<Principal>,
    Path(name): Path<String>,
    ApiJson(request): ApiJson<RequestException>,
) -> Result<(StatusCode, Json<StoredFreezeException>), ApiError> {
    let now = state.clock.now();
    parse_scope(&request.scope)?;
    if request.until <= request.from {
        return Err(ApiError::invalid_field(
            "until",
            format!(
                "until: {} is not after from ({})",
                request.until, request.from
            ),
        ));
    }
    if request.until.duration_since(request.from) > MAX_EXCEPTION {
        return Err(ApiError::invalid_field(
            "until",
            "until: an exception lasts at most 31 days",
        ));
    }
    if request.until <= now {
        return Err(ApiError::invalid_field(
            "until",
            format!("until: {} is already past", request.until),
        ));
    }
    if request.justification.trim().is_empty() {
        return Err(ApiError::invalid_field(
            "justification",
            "justification: say why the work cannot wait",
        ));
    }
    let exception = StoredFreezeException {
        id: String::new(),
        freeze: name,
        scope: request.scope.trim().to_owned(),
        from: request.from,
        until: request.until,
        justification: request.justification.trim().to_owned(),
        requested_by: principal.username.clone(),
        requested_at: now,
        state: ExceptionState::Requested,
        decided_by: None,
        decided_at: None,
    };
    let stored = state
        .store
        .request_freeze_exception(exception, &principal.actor())
        .await?;
    Ok((StatusCode::CREATED, Json(stored)))
}

/// Every exception request, oldest first.
#[utoipa::path(get, path = "/api/v1/freeze-exceptions", tag = "calendars", security(("token" = [])),
    responses((status = 200, body = Vec<Object>)))]
pub async fn list_all_freeze_exceptions(
    State(state): State<AppState>,
) -> Result<Json<Vec<StoredFreezeException>>, ApiError> {
    Ok(Json(state.store.freeze_exceptions(None).await?))
}

async fn decide(
    state: &AppState,
    principal: &Principal,
    id: &str,
    approve: bool,
) -> Result<Json<StoredFreezeException>, ApiError> {
    let exception = state
        .store
        .freeze_exception(id)
        .await?
        .ok_or_else(|| ApiError::not_found(format!("freeze exception {id} not found")))?;
    if exception.requested_by == principal.username {
        return Err(ApiError::forbidden(format!(
            "freeze exception {id} was requested by {}: another approver must decide it",
            exception.requested_by
        )));
    }
    Ok(Json(
        state
            .store
            .decide_freeze_exception(id, approve, state.clock.now(), &principal.actor())
            .await?,
    ))
}

/// Approves an exception request (approver, not its requester); 409 if already decided.
#[utoipa::path(post, path = "/api/v1/freeze-exceptions/{id}/approve", tag = "calendars", security(("token" = ["approver"])),
    params(("id" = String, Path, description = "exception id, e.g. FEX-3")),
    responses((status = 200, body = Object), (status = 403, body = Problem), (status = 404, body = Problem), (status = 409, body = Problem)))]
pub async fn approve_freeze_exception(
    State(state): State<AppState>,
    Extension(principal): Extension<Principal>,
    Path(id): Path<String>,
) -> Result<Json<StoredFreezeException>, ApiError> {
    decide(&state, &principal, &id, true).await
}

/// Rejects an exception request (approver, not its requester); 409 if already decided.
#[utoipa::path(post, path = "/api/v1/freeze-exceptions/{id}/reject", tag = "calendars", security(("token" = ["approver"])),
    params(("id" = String, Path, description = "exception id, e.g. FEX-3")),
    responses((status = 200, body = Object), (status = 403, body = Problem), (status = 404, body = Problem), (status = 409, body = Problem)))]
pub async fn reject_freeze_exception(
    State(state): State<AppState>,
    Extension(principal): Extension<Principal>,
    Path(id): Path<String>,
) -> Result<Json<StoredFreezeException>, ApiError> {
    decide(&state, &principal, &id, false).await
}

/// The hosts a stored scope selects; an empty scope is every host.
fn scope_hosts(scope: &str, assets: &[Asset], what: &str) -> Result<Scope, ApiError> {
    if scope.trim().is_empty() {
        return Ok(Scope::Everything);
    }
    let selector = Selector::parse(scope)
        .map_err(|e| ApiError::internal(format!("{what}: stored scope {scope:?}: {e}")))?;
    Ok(Scope::Hosts(
        selector
            .filter(assets)
            .map(|a| a.hostname.clone())
            .collect(),
    ))
}

fn hosts_of(selector: &Selector, assets: &[Asset]) -> BTreeSet<String> {
    selector
        .filter(assets)
        .map(|a| a.hostname.clone())
        .collect()
}

/// Every freeze with its hosts resolved, and the approved exceptions with their ids.
pub(crate) async fn freeze_calendar(
    state: &AppState,
    assets: &[Asset],
) -> Result<(FreezeCalendar, Vec<(String, FreezeException)>), ApiError> {
    let mut freezes = FreezeCalendar::default();
    for stored in state.store.freezes().await? {
        let scope = scope_hosts(&stored.scope, assets, "freeze")?;
        freezes.freezes.push(
            stored
                .definition
                .build(&stored.name, scope, &zone)
                .map_err(|e| {
                    ApiError::internal(format!("freeze {:?} no longer parses: {e}", stored.name))
                })?,
        );
    }
    let mut approved: Vec<(String, FreezeException)> = Vec::new();
    for stored in state.store.freeze_exceptions(None).await? {
        let (Some(by), Some(at)) = (stored.decided_by.clone(), stored.decided_at) else {
            continue;
        };
        if stored.state != ExceptionState::Approved {
            continue;
        }
        let Some(exception_range) = TimeRange::new(stored.from, stored.until) else {
            continue;
        };
        approved.push((
            stored.id.clone(),
            FreezeException {
                freeze: stored.freeze.clone(),
                scope: scope_hosts(&stored.scope, assets, "freeze exception")?,
                range: exception_range,
                justification: stored.justification.clone(),
                requested_by: stored.requested_by.clone(),
                decision: ExceptionDecision::Approved { by, at },
            },
        ));
    }
    freezes.exceptions = approved.iter().map(|(_, e)| e.clone()).collect();

    Ok((freezes, approved))
}

/// The maintenance windows that select each of `hosts`, as defined (a host no window selects
/// is absent: it may be changed at any time).
pub(crate) async fn host_windows(
    state: &AppState,
    assets: &[Asset],
    hosts: &BTreeSet<String>,
) -> Result<std::collections::BTreeMap<String, Vec<WindowSpec>>, ApiError> {
    let mut out: std::collections::BTreeMap<String, Vec<WindowSpec>> = Default::default();
    for stored in state.store.windows().await? {
        let selected = scope_hosts(&stored.scope, assets, "window")?;
        for host in hosts.iter().filter(|h| selected.contains(h)) {
            out.entry(host.clone())
                .or_default()
                .push(stored.definition.clone());
        }
    }
    Ok(out)
}

/// Why change `id` on the hosts `scope` selects may not start at `now`: a freeze holds for one
/// of them with no approved exception lifting it. Nothing starts inside a freeze, whatever the
/// change's type or schedule.
pub async fn start_blocked(
    state: &AppState,
    id: &str,
    scope: &Selector,
    now: Timestamp,
) -> Result<Option<String>, ApiError> {
    let assets = state.assets.get(&state.store).await?;
    let (freezes, _) = freeze_calendar(state, &assets).await?;
    let reasons: Vec<String> = hosts_of(scope, &assets)
        .iter()
        .filter_map(|host| {
            freezes
                .blocking(host, now)
                .map(|freeze| format!("{host}: freeze \"{}\" holds", freeze.name()))
        })
        .collect();
    Ok((!reasons.is_empty()).then(|| {
        format!(
            "cannot start change {id} at {now}: {}; an approved freeze exception is needed",
            reasons.join("; ")
        )
    }))
}

/// Every reason the calendar has against running change `id` on the hosts `scope` selects
/// during `range`: hosts outside their windows, freezes without an approved exception, other
/// scheduled or implementing changes on the same hosts. Each freeze an approved exception lifts
/// is listed too, with the exception's id, so that the schedule records it.
pub async fn schedule_conflicts(
    state: &AppState,
    id: &str,
    scope: &Selector,
    range: TimeRange,
) -> Result<Vec<ScheduleConflict>, ApiError> {
    let assets = state.assets.get(&state.store).await?;
    let hosts = hosts_of(scope, &assets);

    let mut calendars: Vec<HostCalendar> = Vec::new();
    let mut windowless: BTreeSet<String> = hosts.clone();
    for stored in state.store.windows().await? {
        let window = stored.definition.build(&zone).map_err(|e| {
            ApiError::internal(format!("window {:?} no longer parses: {e}", stored.name))
        })?;
        let selected = scope_hosts(&stored.scope, &assets, "window")?;
        for host in hosts.iter().filter(|h| selected.contains(h)) {
            windowless.remove(host);
            match calendars.iter_mut().find(|c| &c.host == host) {
                Some(calendar) => calendar.windows.push(window.clone()),
                None => calendars.push(HostCalendar {
                    host: host.clone(),
                    windows: vec![window.clone()],
                }),
            }
        }
    }

    let (freezes, approved) = freeze_calendar(state, &assets).await?;

    let others = state
        .store
        .changes(&ChangesQuery {
            states: Some(vec![ChangeState::Scheduled, ChangeState::Implementing]),
            kind: None,
            requester: None,
            risk: None,
            review_overdue_at: None,
            limit: 1000,
            offset: 0,
        })
        .await?
        .items
        .into_iter()
        .filter_map(|stored| {
            let schedule = stored.change.schedule?;
            Some(ProposedChange {
                id: stored.change.id.clone(),
                hosts: hosts_of(&stored.change.scope, &assets),
                range: TimeRange::new(schedule.start, schedule.end)?,
            })
        })
        .collect::<Vec<_>>();

    let proposed = ProposedChange {
        id: id.to_owned(),
        hosts: hosts.clone(),
        range,
    };
    let mut out: Vec<ScheduleConflict> = detect_conflicts(&proposed, &calendars, &freezes, &others)
        .into_iter()
        // A host no window selects may be changed at any time.
        .filter(|c| !matches!(c, Conflict::NoWindow { host } if windowless.contains(host)))
        .map(|c| ScheduleConflict {
            description: c.to_string(),
            exception: None,
        })
        .collect();

    // The freezes approved exceptions lift for this change, recorded with the exception.
    for (exception_id, exception) in &approved {
        let Some(freeze) = freezes
            .freezes
            .iter()
            .find(|f| f.name() == exception.freeze)
        else {
            continue;
        };
        let lifted: Vec<&String> = hosts
            .iter()
            .filter(|h| freeze.scope().contains(h) && exception.scope.contains(h))
            .filter(|_| {
                freeze
                    .frozen_within(range)
                    .iter()
                    .any(|part| part.overlaps(&exception.range))
            })
            .collect();
        if !lifted.is_empty() {
            let names: Vec<&str> = lifted.iter().map(|h| h.as_str()).collect();
            out.push(ScheduleConflict {
                description: format!(
                    "freeze \"{}\" lifted for {} by exception {exception_id}",
                    exception.freeze,
                    names.join(", ")
                ),
                exception: Some(exception_id.clone()),
            });
        }
    }
    Ok(out)
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
    let stored = state
        .store
        .change(&id)
        .await?
        .ok_or_else(|| ApiError::not_found(format!("change {id} not found")))?;
    let Query(query) = query.map_err(|e| ApiError::unprocessable(e.body_text()))?;
    let scheduled = stored.change.schedule;
    let (Some(start), Some(end)) = (
        query.start.or(scheduled.map(|s| s.start)),
        query.end.or(scheduled.map(|s| s.end)),
    ) else {
        return Err(ApiError::invalid_field(
            "start",
            "start, end: the change has no schedule; give start and end",
        ));
    };
    let range = TimeRange::new(start, end).ok_or_else(|| {
        ApiError::invalid_field("end", format!("end: {end} is not after start ({start})"))
    })?;
    let conflicts = schedule_conflicts(&state, &id, &stored.change.scope, range).await?;
    Ok(Json(ConflictPreview {
        id,
        start,
        end,
        blocked: conflicts.iter().any(|c| c.exception.is_none()),
        conflicts,
    }))
}
