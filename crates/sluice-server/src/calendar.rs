//! The calendar on the server: maintenance windows, freezes and freeze exceptions as stored, and
//! the calendar's verdict on a change's schedule or start.
//!
//! What a rule means is `sluice_core::calendar`'s: definitions are kept as written and parsed
//! again on every read ([`WindowSpec`], [`FreezeSpec`]); a refused one is an error naming the
//! field in the parser's words. This module resolves scopes (CMDB selectors) to hosts, reads the
//! tz database, and hands everything to `calendar::detect_conflicts`. The store audits every
//! write. It knows nothing of HTTP: `crate::error` maps [`CalendarError`] to problem documents.
//!
//! A host that no window selects may be changed at any time: windows restrict the hosts they
//! select and leave the others alone (docs/calendar.md).

use std::collections::{BTreeMap, BTreeSet};

use jiff::Timestamp;
use jiff::tz::TimeZone;
use sluice_core::calendar::freeze::ExceptionDecision;
use sluice_core::calendar::spec::MAX_EXCEPTION;
use sluice_core::calendar::{
    Conflict, FreezeCalendar, FreezeException, FreezeRuleSpec, HostCalendar, ProposedChange, Scope,
    SpecError, TimeRange, WindowSpec, detect_conflicts,
};
use sluice_core::change::{ChangeState, ScheduleConflict};
use sluice_core::cmdb::{Asset, Selector};
use sluice_store::{
    ChangesQuery, ExceptionState, StoreError, StoredFreeze, StoredFreezeException, StoredWindow,
};

use crate::auth::Principal;
use crate::state::AppState;
use sluice_protocol::calendars::{CreateFreeze, CreateWindow, RequestException};

/// What went wrong with a calendar record or a calendar question.
#[derive(Debug, thiserror::Error)]
pub enum CalendarError {
    /// No such freeze, exception or change.
    #[error("{0}")]
    NotFound(String),
    /// The person may not do this (an exception's requester deciding it).
    #[error("{0}")]
    NotAllowed(String),
    /// A field's value is refused; the detail names the field.
    #[error("{detail}")]
    Invalid {
        /// The field's JSON path.
        field: String,
        /// Why, starting with the field.
        detail: String,
    },
    /// A stored rule or scope no longer parses (a programming error or a hand-edited database).
    #[error("{0}")]
    Corrupt(String),
    /// The store failed, or refused a write.
    #[error(transparent)]
    Store(#[from] StoreError),
}

impl CalendarError {
    fn invalid(field: &str, detail: impl Into<String>) -> Self {
        Self::Invalid {
            field: field.to_owned(),
            detail: detail.into(),
        }
    }
}

fn zone(name: &str) -> Option<TimeZone> {
    TimeZone::get(name).ok()
}

fn spec_error(prefix: &str, error: SpecError) -> CalendarError {
    let field = format!("{prefix}.{}", error.field);
    CalendarError::invalid(&field, format!("{field}: {}", error.message))
}

fn check_name(name: &str) -> Result<String, CalendarError> {
    let name = name.trim();
    let ok = !name.is_empty()
        && name.len() <= 64
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"._-".contains(&b));
    if ok {
        Ok(name.to_owned())
    } else {
        Err(CalendarError::invalid(
            "name",
            format!("name: {name:?} must be 1 to 64 letters, digits, '.', '_' or '-'"),
        ))
    }
}

fn parse_scope(text: &str) -> Result<Selector, CalendarError> {
    Selector::parse(text).map_err(|e| CalendarError::invalid("scope", format!("scope: {e}")))
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

/// Checks and stores a new maintenance window made by `principal` at `now`.
pub async fn create_window(
    state: &AppState,
    principal: &Principal,
    request: CreateWindow,
    now: Timestamp,
) -> Result<StoredWindow, CalendarError> {
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
    Ok(window)
}

/// Checks and stores a new freeze made by `principal` at `now`.
pub async fn create_freeze(
    state: &AppState,
    principal: &Principal,
    request: CreateFreeze,
    now: Timestamp,
) -> Result<StoredFreeze, CalendarError> {
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
    Ok(freeze)
}

/// The exception requests of freeze `name`, oldest first.
pub async fn freeze_exceptions(
    state: &AppState,
    name: &str,
) -> Result<Vec<StoredFreezeException>, CalendarError> {
    if !state.store.freezes().await?.iter().any(|f| f.name == name) {
        return Err(CalendarError::NotFound(format!(
            "freeze {name:?} not found"
        )));
    }
    Ok(state.store.freeze_exceptions(Some(name)).await?)
}

/// Checks and stores `principal`'s request for an exception to freeze `name`.
pub async fn request_exception(
    state: &AppState,
    principal: &Principal,
    name: String,
    request: RequestException,
    now: Timestamp,
) -> Result<StoredFreezeException, CalendarError> {
    parse_scope(&request.scope)?;
    if request.until <= request.from {
        return Err(CalendarError::invalid(
            "until",
            format!(
                "until: {} is not after from ({})",
                request.until, request.from
            ),
        ));
    }
    if request.until.duration_since(request.from) > MAX_EXCEPTION {
        return Err(CalendarError::invalid(
            "until",
            "until: an exception lasts at most 31 days",
        ));
    }
    if request.until <= now {
        return Err(CalendarError::invalid(
            "until",
            format!("until: {} is already past", request.until),
        ));
    }
    if request.justification.trim().is_empty() {
        return Err(CalendarError::invalid(
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
    Ok(state
        .store
        .request_freeze_exception(exception, &principal.actor())
        .await?)
}

/// Approves or rejects exception `id` as `principal`, who must not be its requester.
pub async fn decide_exception(
    state: &AppState,
    principal: &Principal,
    id: &str,
    approve: bool,
    now: Timestamp,
) -> Result<StoredFreezeException, CalendarError> {
    let exception = state
        .store
        .freeze_exception(id)
        .await?
        .ok_or_else(|| CalendarError::NotFound(format!("freeze exception {id} not found")))?;
    if exception.requested_by == principal.username {
        return Err(CalendarError::NotAllowed(format!(
            "freeze exception {id} was requested by {}: another approver must decide it",
            exception.requested_by
        )));
    }
    Ok(state
        .store
        .decide_freeze_exception(id, approve, now, &principal.actor())
        .await?)
}

/// The hosts a stored scope selects; an empty scope is every host.
pub fn scope_hosts(scope: &str, assets: &[Asset], what: &str) -> Result<Scope, CalendarError> {
    if scope.trim().is_empty() {
        return Ok(Scope::Everything);
    }
    let selector = Selector::parse(scope)
        .map_err(|e| CalendarError::Corrupt(format!("{what}: stored scope {scope:?}: {e}")))?;
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
pub async fn freeze_calendar(
    state: &AppState,
    assets: &[Asset],
) -> Result<(FreezeCalendar, Vec<(String, FreezeException)>), CalendarError> {
    let mut freezes = FreezeCalendar::default();
    for stored in state.store.freezes().await? {
        let scope = scope_hosts(&stored.scope, assets, "freeze")?;
        freezes.freezes.push(
            stored
                .definition
                .build(&stored.name, scope, &zone)
                .map_err(|e| {
                    CalendarError::Corrupt(format!(
                        "freeze {:?} no longer parses: {e}",
                        stored.name
                    ))
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
pub async fn host_windows(
    state: &AppState,
    assets: &[Asset],
    hosts: &BTreeSet<String>,
) -> Result<BTreeMap<String, Vec<WindowSpec>>, CalendarError> {
    let mut out: BTreeMap<String, Vec<WindowSpec>> = BTreeMap::new();
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
) -> Result<Option<String>, CalendarError> {
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
) -> Result<Vec<ScheduleConflict>, CalendarError> {
    let assets = state.assets.get(&state.store).await?;
    let hosts = hosts_of(scope, &assets);

    let mut calendars: Vec<HostCalendar> = Vec::new();
    let mut windowless: BTreeSet<String> = hosts.clone();
    for stored in state.store.windows().await? {
        let window = stored.definition.build(&zone).map_err(|e| {
            CalendarError::Corrupt(format!("window {:?} no longer parses: {e}", stored.name))
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

/// What the calendar would say if change `change` were scheduled over `start`..`end` (each
/// defaulting to its schedule's): the range checked and its conflicts.
pub async fn preview_conflicts(
    state: &AppState,
    change: &sluice_core::change::ChangeRequest,
    start: Option<Timestamp>,
    end: Option<Timestamp>,
) -> Result<(TimeRange, Vec<ScheduleConflict>), CalendarError> {
    let scheduled = change.schedule;
    let (Some(start), Some(end)) = (
        start.or(scheduled.map(|s| s.start)),
        end.or(scheduled.map(|s| s.end)),
    ) else {
        return Err(CalendarError::invalid(
            "start",
            "start, end: the change has no schedule; give start and end",
        ));
    };
    let range = TimeRange::new(start, end).ok_or_else(|| {
        CalendarError::invalid("end", format!("end: {end} is not after start ({start})"))
    })?;
    let conflicts = schedule_conflicts(state, &change.id, &change.scope, range).await?;
    Ok((range, conflicts))
}
