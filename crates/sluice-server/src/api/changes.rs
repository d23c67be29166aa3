//! Change requests over HTTP: create (from findings or explicit targets), list, show, act
//! (submit, sign off, review, vote, schedule, implement, close, …) and export to ServiceNow or
//! Jira.
//!
//! Every decision is `sluice-core`'s: `resolve_bundle` picks target versions, `assess` the risk,
//! `transition` whether an action is allowed (its `Refusal` becomes the 409, 403 or 422 with the
//! reason), `ChangeRequest::apply` applies it. The store writes the change against the version
//! it was read at and audits it in the same transaction (`change.create`, `change.submit`,
//! `change.approve`, …), so two people acting at once never both win. The `Idempotency-Key`
//! header is honoured on create and actions: a retried vote gets the first answer; a request
//! retried after the server died between its change and its kept answer runs again (a second
//! vote is then refused as a duplicate, a second create makes a second draft to cancel).

use std::collections::{BTreeMap, BTreeSet};

use axum::Extension;
use axum::Json;
use axum::extract::rejection::QueryRejection;
use axum::extract::{Path, Query, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use jiff::{SignedDuration, Timestamp};
use serde::Deserialize;
use serde_json::{Value, json};
use sluice_core::change::itsm::{self, JiraOptions, ServiceNowOptions};
use sluice_core::change::model::Unresolved;
use sluice_core::change::state::next_actions;
use sluice_core::change::{
    Action, BundleItem, CabPolicy, ChangeError, ChangeOrigin, ChangeRequest, ChangeState,
    ChangeType, FixCandidate, NewChange, Pin, Plan, Refusal, RefusalKind, RollbackCriteria,
    ScheduleConflict, UpdateClass, eligible_groups, evaluate_votes, resolve_bundle,
    retrospective_status, transition,
};
use sluice_core::cmdb::{Asset, Selector};
use sluice_core::deferral::Standing;
use sluice_core::ecosystem::EcosystemKey;
use sluice_protocol::changes::{
    ChangePage, ChangeSummary, ChangeView, CreateChange, ExportFormat, FromFindings,
};
use sluice_store::{ChangeEvent, ChangesQuery, StoredChange, StoredFinding};
use utoipa::IntoParams;

use super::findings::{FindingFilter, findings_query};
use crate::auth::Principal;
use crate::error::{ApiError, ApiJson, Problem};
use crate::governance::{self, current_policy};
use crate::state::AppState;

/// Most findings one change is made from; a filter that picks more must be narrowed.
pub const MAX_FINDINGS: usize = 10_000;

/// Largest page of changes.
pub const MAX_LIMIT: i64 = 1000;

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

fn change_error(error: ChangeError) -> ApiError {
    match error {
        ChangeError::Invalid { field, reason } => {
            ApiError::invalid_field(&field, format!("{field}: {reason}"))
        }
        other => ApiError::conflict(other.to_string()),
    }
}

fn refusal(refusal: Refusal) -> ApiError {
    match refusal.kind {
        RefusalKind::Conflict => ApiError::conflict(refusal.reason),
        RefusalKind::Forbidden => ApiError::forbidden(refusal.reason),
        RefusalKind::Invalid => ApiError::unprocessable(refusal.reason),
    }
}

fn default_plan() -> Plan {
    Plan {
        implementation: Vec::new(),
        verification: Vec::new(),
        rollback_criteria: RollbackCriteria {
            max_failed_check_share: 0.1,
            max_latency_factor: None,
            custom_check: None,
            detection_window: SignedDuration::from_mins(15),
        },
    }
}

fn parse_scope(text: &str) -> Result<Selector, ApiError> {
    Selector::parse(text).map_err(|e| ApiError::invalid_field("scope", format!("scope: {e}")))
}

/// The release line each host runs: the CMDB's `os`, else its stored inventory's.
async fn host_ecosystems(
    state: &AppState,
    assets: &[Asset],
    hosts: &BTreeSet<String>,
) -> Result<BTreeMap<String, EcosystemKey>, ApiError> {
    let mut found = BTreeMap::new();
    for host in hosts {
        let from_asset = assets
            .iter()
            .find(|a| &a.hostname == host)
            .and_then(|a| a.os.clone());
        let ecosystem = match from_asset {
            Some(ecosystem) => Some(ecosystem),
            None => state
                .store
                .inventory(host)
                .await?
                .and_then(|(inventory, _)| inventory.ecosystem.parse().ok()),
        };
        if let Some(ecosystem) = ecosystem {
            found.insert(host.clone(), ecosystem);
        }
    }
    Ok(found)
}

/// What a change is made of: its bundle, update types, scope and origin.
struct Made {
    input: NewChange,
    unresolved: Vec<Unresolved>,
}

async fn make(state: &AppState, request: CreateChange, now: Timestamp) -> Result<Made, ApiError> {
    let plan = match (request.plan, request.plan_toml) {
        (Some(_), Some(_)) => {
            return Err(ApiError::unprocessable(
                "give the plan as plan (JSON) or as plan_toml (TOML text), one of them",
            ));
        }
        (Some(plan), None) => plan,
        (None, Some(text)) => toml::from_str(&text).map_err(|e: toml::de::Error| {
            ApiError::invalid_field("plan_toml", format!("plan_toml: {e}"))
        })?,
        (None, None) => default_plan(),
    };
    let mut update_types = request.update_types.clone().unwrap_or_default();
    let (bundle, scope, origin, unresolved) = match (request.from_findings, request.targets) {
        (Some(_), Some(_)) | (None, None) => {
            return Err(ApiError::unprocessable(
                "give from_findings (a findings filter or finding ids) or targets (package and version), one of them",
            ));
        }
        (None, Some(targets)) => {
            if targets.is_empty() {
                return Err(ApiError::invalid_field(
                    "targets",
                    "targets: name at least one package",
                ));
            }
            let mut bundle = Vec::new();
            for (index, target) in targets.iter().enumerate() {
                let ecosystem = target
                    .ecosystem
                    .as_deref()
                    .map(|text| {
                        text.parse::<EcosystemKey>().map_err(|e| {
                            ApiError::invalid_field(
                                &format!("targets[{index}].ecosystem"),
                                format!("targets[{index}].ecosystem: {e}"),
                            )
                        })
                    })
                    .transpose()?;
                if sluice_core::change::UpdateClass::is_kernel_package(&target.package) {
                    update_types.insert(UpdateClass::Kernel);
                }
                bundle.push(BundleItem::pinned(
                    target.package.trim(),
                    ecosystem,
                    target.version.trim(),
                ));
            }
            if request.update_types.is_none() {
                return Err(ApiError::invalid_field(
                    "update_types",
                    "update_types: say what the targets carry (security, bugfix, enhancement, kernel, third-party)",
                ));
            }
            let scope = request.scope.as_deref().ok_or_else(|| {
                ApiError::invalid_field(
                    "scope",
                    "scope: a selector for the hosts is required with explicit targets",
                )
            })?;
            (
                bundle,
                parse_scope(scope)?,
                ChangeOrigin::Packages,
                Vec::new(),
            )
        }
        (Some(from), None) => {
            let made = from_findings(state, &from, &request.pins, now).await?;
            update_types.extend(made.update_types);
            let scope = match (&request.scope, &from.selector) {
                (Some(scope), _) => parse_scope(scope)?,
                (None, Some(selector)) => parse_scope(selector)?,
                (None, None) => {
                    let hosts: Vec<&str> = made.hosts.iter().map(String::as_str).collect();
                    parse_scope(&format!("host={}", hosts.join("|")))?
                }
            };
            (made.bundle, scope, made.origin, made.unresolved)
        }
    };
    Ok(Made {
        input: NewChange {
            title: request.title,
            kind: request.kind,
            origin,
            bundle,
            scope,
            update_types,
            justification: request.justification,
            template: request.template,
            plan,
        },
        unresolved,
    })
}

struct FromFindingsBundle {
    bundle: Vec<BundleItem>,
    update_types: BTreeSet<UpdateClass>,
    hosts: BTreeSet<String>,
    origin: ChangeOrigin,
    unresolved: Vec<Unresolved>,
}

async fn from_findings(
    state: &AppState,
    from: &FromFindings,
    pins: &[Pin],
    now: Timestamp,
) -> Result<FromFindingsBundle, ApiError> {
    let deferrals = governance::live_deferrals(&state.store).await?;
    let mut findings: Vec<StoredFinding> = Vec::new();
    let filter_text;
    if from.ids.is_empty() {
        let filter = FindingFilter {
            host: from.host.clone(),
            selector: from.selector.clone(),
            decision: from.decision.clone(),
            kev: from.kev,
            overdue: false,
            deferred: None,
            status: None,
            limit: None,
            offset: None,
        };
        let base = findings_query(state, &filter, &deferrals).await?;
        loop {
            let page = state
                .store
                .findings(&sluice_store::FindingsQuery {
                    limit: 1000,
                    offset: i64::try_from(findings.len()).unwrap_or(i64::MAX),
                    ..base.clone()
                })
                .await?;
            let got = page.items.len();
            findings.extend(page.items);
            if findings.len() > MAX_FINDINGS {
                return Err(ApiError::invalid_field(
                    "from_findings",
                    format!(
                        "from_findings: the filter picks more than {MAX_FINDINGS} findings; narrow it"
                    ),
                ));
            }
            if got < 1000 {
                break;
            }
        }
        let mut terms = Vec::new();
        for (key, value) in [
            ("host", from.host.clone()),
            ("selector", from.selector.clone()),
            ("decision", from.decision.clone()),
            ("kev", from.kev.map(|k| k.to_string())),
        ] {
            if let Some(value) = value {
                terms.push(format!("{key}={value}"));
            }
        }
        filter_text = Some(terms.join(";"));
    } else {
        if from.host.is_some() || from.selector.is_some() || from.decision.is_some() {
            return Err(ApiError::invalid_field(
                "from_findings.ids",
                "from_findings: give finding ids or a filter, not both",
            ));
        }
        for (index, id) in from.ids.iter().enumerate() {
            let finding = state.store.finding(*id).await?.ok_or_else(|| {
                ApiError::invalid_field(
                    &format!("from_findings.ids[{index}]"),
                    format!("from_findings.ids[{index}]: no finding {id}"),
                )
            })?;
            if finding.resolved_at.is_some() {
                return Err(ApiError::invalid_field(
                    &format!("from_findings.ids[{index}]"),
                    format!("from_findings.ids[{index}]: finding {id} is resolved"),
                ));
            }
            findings.push(finding);
        }
        filter_text = None;
    }
    let mut unresolved = Vec::new();
    let mut kept = Vec::new();
    for finding in findings {
        match governance::finding_standing(&finding, &deferrals, now) {
            Standing::Deferred {
                deferral, until, ..
            } => unresolved.push(Unresolved {
                package: finding.finding.source_package.clone(),
                ecosystem: String::new(),
                advisory: finding.finding.advisory.clone(),
                reason: format!(
                    "{} on {} is deferred by {deferral} until {until}",
                    finding.finding.package, finding.hostname
                ),
            }),
            _ => kept.push(finding),
        }
    }
    if kept.is_empty() {
        return Err(ApiError::invalid_field(
            "from_findings",
            "from_findings: no open finding that is due matches",
        ));
    }
    let hosts: BTreeSet<String> = kept.iter().map(|f| f.hostname.clone()).collect();
    let assets = state.assets.get(&state.store).await?;
    let ecosystems = host_ecosystems(state, &assets, &hosts).await?;
    let mut candidates = Vec::with_capacity(kept.len());
    for finding in &kept {
        let Some(ecosystem) = ecosystems.get(&finding.hostname) else {
            return Err(ApiError::unprocessable(format!(
                "host {} has no known release line (push its inventory or set its os in the CMDB)",
                finding.hostname
            )));
        };
        candidates.push(FixCandidate {
            package: finding.finding.source_package.clone(),
            ecosystem: ecosystem.clone(),
            installed: finding.finding.installed.clone(),
            fixed: finding.finding.fixed.clone(),
            advisory: finding.finding.advisory.clone(),
            kev: finding.finding.kev,
            update_type: finding.finding.update_type,
        });
    }
    let ids = if from.ids.is_empty() {
        Vec::new()
    } else {
        kept.iter().map(|f| f.id.to_string()).collect()
    };
    let resolved = resolve_bundle(&candidates, pins).map_err(change_error)?;
    unresolved.extend(resolved.unresolved);
    if resolved.items.is_empty() {
        return Err(ApiError::unprocessable(format!(
            "the findings resolve to no package update: {}",
            unresolved
                .iter()
                .map(|u| format!("{} {}: {}", u.package, u.advisory, u.reason))
                .collect::<Vec<_>>()
                .join("; ")
        )));
    }
    Ok(FromFindingsBundle {
        bundle: resolved.items,
        update_types: resolved.update_types,
        hosts,
        origin: ChangeOrigin::Findings {
            filter: filter_text,
            ids,
        },
        unresolved,
    })
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
    let made = make(&state, request, now).await?;
    let mut change =
        ChangeRequest::new("new", made.input, &principal.username, now).map_err(change_error)?;
    let policy = current_policy::<CabPolicy>(&state.store).await?.policy;
    let assets = state.assets.get(&state.store).await?;
    let assessment = governance::assessment(&state.store, &assets, &change, &policy, now).await?;
    change.set_assessment(assessment).map_err(change_error)?;
    let stored = state
        .store
        .create_change(change, &principal.actor())
        .await?;
    let mut view = ChangeView::of(stored, now);
    view.unresolved = made.unresolved;
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
    let stored = load(&state, &id).await?;
    check_if_match(&headers, &stored)?;
    let person = governance::person(&state.store, &principal).await?;
    if person.user != stored.change.requester
        && !person.has_any(&[sluice_core::access::Role::Approver])
    {
        return Err(ApiError::forbidden(format!(
            "only the requester ({}) or an approver may edit change {id}",
            stored.change.requester
        )));
    }
    let made = make(&state, request, now).await?;
    let mut change = stored.change.clone();
    change.revise(made.input, now).map_err(change_error)?;
    let policy = current_policy::<CabPolicy>(&state.store).await?.policy;
    let assets = state.assets.get(&state.store).await?;
    let assessment = governance::assessment(&state.store, &assets, &change, &policy, now).await?;
    change.set_assessment(assessment).map_err(change_error)?;
    let event = ChangeEvent {
        action: "change.edit".to_owned(),
        before: serde_json::to_value(&stored.change).ok(),
        after: serde_json::to_value(&change).ok(),
    };
    let saved = state
        .store
        .update_change(&change, stored.version, event, &principal.actor())
        .await?;
    let mut view = ChangeView::of(saved, now);
    view.unresolved = made.unresolved;
    Ok(with_etag(StatusCode::OK, view))
}

async fn load(state: &AppState, id: &str) -> Result<StoredChange, ApiError> {
    state
        .store
        .change(id)
        .await?
        .ok_or_else(|| ApiError::not_found(format!("change {id} not found")))
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

/// Which changes to list.
#[derive(Debug, Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
pub struct ChangeFilter {
    /// States, comma-separated (`submitted,in-review`).
    pub state: Option<String>,
    /// `standard`, `normal` or `emergency`.
    #[serde(rename = "type")]
    #[param(rename = "type")]
    pub kind: Option<String>,
    /// Only changes this user requested.
    pub requester: Option<String>,
    /// `low`, `medium`, `high` or `very-high`.
    pub risk: Option<String>,
    /// Only emergency changes whose retrospective review is overdue.
    #[serde(default)]
    pub overdue_review: bool,
    /// Page size, 1 to 1000 (default 100).
    pub limit: Option<i64>,
    /// Page start (default 0).
    pub offset: Option<i64>,
}

fn parse_states(text: &str) -> Result<Vec<ChangeState>, ApiError> {
    text.split(',')
        .map(str::trim)
        .filter(|s| !s.is_empty())
        .map(|s| {
            ChangeState::ALL
                .into_iter()
                .find(|state| state.as_str() == s)
                .ok_or_else(|| {
                    let names: Vec<&str> = ChangeState::ALL.iter().map(|s| s.as_str()).collect();
                    ApiError::invalid_field(
                        "state",
                        format!("state: {s:?} is not one of {}", names.join(", ")),
                    )
                })
        })
        .collect()
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
    let limit = filter.limit.unwrap_or(100);
    if !(1..=MAX_LIMIT).contains(&limit) {
        return Err(ApiError::invalid_field("limit", "limit: from 1 to 1000"));
    }
    let offset = filter.offset.unwrap_or(0);
    if offset < 0 {
        return Err(ApiError::invalid_field("offset", "offset: 0 or more"));
    }
    if let Some(kind) = &filter.kind {
        kind.parse::<ChangeType>()
            .map_err(|e| ApiError::invalid_field("type", e.to_string()))?;
    }
    if let Some(risk) = &filter.risk
        && !sluice_core::change::RiskLevel::ALL
            .iter()
            .any(|r| r.as_str() == risk)
    {
        return Err(ApiError::invalid_field(
            "risk",
            format!("risk: {risk:?} is not low, medium, high or very-high"),
        ));
    }
    let page = state
        .store
        .changes(&ChangesQuery {
            states: filter.state.as_deref().map(parse_states).transpose()?,
            kind: filter.kind,
            requester: filter.requester,
            risk: filter.risk,
            review_overdue_at: filter.overdue_review.then_some(now),
            limit,
            offset,
        })
        .await?;
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
    let stored = load(&state, &id).await?;
    Ok(with_etag(
        StatusCode::OK,
        ChangeView::of(stored, state.clock.now()),
    ))
}

/// The calendar's verdict on a proposed window (`calendars::schedule_conflicts`): hosts outside
/// their maintenance windows, freezes, other changes on the same hosts; a freeze lifted by an
/// approved exception is listed with the exception, which the schedule then records.
async fn calendar_conflicts(
    state: &AppState,
    change: &ChangeRequest,
    window: &sluice_core::change::Schedule,
) -> Result<Vec<ScheduleConflict>, ApiError> {
    // An empty or inverted window is the state machine's to refuse, with its own reason.
    let Some(range) = sluice_core::calendar::TimeRange::new(window.start, window.end) else {
        return Ok(Vec::new());
    };
    super::calendars::schedule_conflicts(state, &change.id, &change.scope, range).await
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
    let stored = load(&state, &id).await?;
    check_if_match(&headers, &stored)?;
    let person = governance::person(&state.store, &principal).await?;
    let saved = take_action(&state, &stored, &person, &principal.actor(), action, now).await?;
    Ok(with_etag(StatusCode::OK, ChangeView::of(saved, now)))
}

/// Decides `action` on the change as read (`stored`) for `person` at `now`, stores it with its
/// audit event (as `actor`) and carries out its effects. The HTTP handler and the rollout
/// orchestrator (which starts, completes and rolls back changes) share it.
pub(crate) async fn take_action(
    state: &AppState,
    stored: &StoredChange,
    person: &sluice_core::access::Actor,
    actor: &sluice_store::Actor,
    action: Action,
    now: jiff::Timestamp,
) -> Result<StoredChange, ApiError> {
    let id = stored.change.id.clone();
    // Scheduling checks other changes' windows, then writes its own: two changes are never
    // checked against each other at the same time, on this replica (the mutex) or across
    // replicas sharing a PostgreSQL database (the store's advisory lock).
    let _scheduling = match &action {
        Action::Schedule { .. } => Some((
            state.schedule_lock.lock().await,
            state.store.lock_scheduling().await?,
        )),
        _ => None,
    };
    let policy = current_policy::<CabPolicy>(&state.store).await?.policy;
    let action = match action {
        Action::Schedule { window, .. } => Action::Schedule {
            conflicts: calendar_conflicts(state, &stored.change, &window).await?,
            window,
        },
        other => other,
    };
    let decided = transition(&stored.change, &action, person, &policy, now).map_err(refusal)?;
    if matches!(action, Action::StartImplementation)
        && let Some(reason) =
            super::calendars::start_blocked(state, &stored.change.id, &stored.change.scope, now)
                .await?
    {
        // A freeze made (or an exception lost) since the change was scheduled still stops it.
        return Err(ApiError::conflict(reason));
    }
    let mut change = stored.change.clone();
    change.apply(&decided).map_err(change_error)?;
    if decided.to == ChangeState::Draft {
        // Back in draft: the CMDB may have changed since the last assessment.
        let assets = state.assets.get(&state.store).await?;
        let assessment =
            governance::assessment(&state.store, &assets, &change, &policy, now).await?;
        change.set_assessment(assessment).map_err(change_error)?;
    }
    let event = ChangeEvent {
        action: decided.audit_action(),
        before: Some(json!({"state": decided.from, "version": stored.version})),
        after: Some(
            json!({"state": decided.to, "version": stored.version + 1, "transition": decided}),
        ),
    };
    let saved = state
        .store
        .update_change(&change, stored.version, event, actor)
        .await?;
    for effect in &decided.effects {
        match effect {
            // Notifications and the rollout engine come with their own modules; until then the
            // effect is in the audit event above and in the log.
            sluice_core::change::Effect::Notify {
                groups,
                users,
                message,
            } => {
                tracing::info!(change = %id, ?groups, ?users, %message, "notify");
            }
            sluice_core::change::Effect::StartRollout => {
                tracing::info!(change = %id, "implementation started: the rollout is to begin");
            }
            _ => {}
        }
    }
    Ok(saved)
}

/// How to export.
#[derive(Debug, Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
pub struct ExportQuery {
    /// `servicenow` (default) or `jira`.
    #[serde(default)]
    #[param(value_type = Option<String>)]
    pub format: ExportFormat,
    /// Jira: the project key (required for `jira`).
    pub project: Option<String>,
    /// Jira: the issue type (default `Change`).
    pub issue_type: Option<String>,
    /// ServiceNow: `assignment_group`.
    pub assignment_group: Option<String>,
    /// ServiceNow: `cmdb_ci`.
    pub cmdb_ci: Option<String>,
    /// ServiceNow: `category` (default `Software`).
    pub category: Option<String>,
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
    let stored = load(&state, &id).await?;
    let export = query(export)?;
    Ok(Json(match export.format {
        ExportFormat::Servicenow => {
            let mut options = ServiceNowOptions {
                assignment_group: export.assignment_group,
                cmdb_ci: export.cmdb_ci,
                ..ServiceNowOptions::default()
            };
            if let Some(category) = export.category {
                options.category = category;
            }
            itsm::to_servicenow(&stored.change, &options)
        }
        ExportFormat::Jira => {
            let project = export
                .project
                .filter(|p| !p.trim().is_empty())
                .ok_or_else(|| {
                    ApiError::invalid_field(
                        "project",
                        "project: the Jira project key is needed for a Jira export (project=OPS)",
                    )
                })?;
            let mut options = JiraOptions::new(project.trim());
            if let Some(issue_type) = export.issue_type {
                options.issue_type = issue_type;
            }
            itsm::to_jira(&stored.change, &options)
        }
    }))
}
