//! Change requests on the server: made from findings or explicit targets, revised, acted on
//! (submit, sign off, review, vote, schedule, implement, close, …), listed and exported to
//! ServiceNow or Jira.
//!
//! Every decision is `sluice-core`'s: `resolve_bundle` picks target versions, `assess` the risk,
//! `transition` whether an action is allowed (its `Refusal` is [`ChangeError::Refused`]),
//! `ChangeRequest::apply` applies it. The store writes the change against the version it was
//! read at and audits it in the same transaction, so two people acting at once never both win.
//! This module knows nothing of HTTP: `crate::error` maps [`ChangeError`] to problem documents.

use std::collections::{BTreeMap, BTreeSet};

use jiff::{SignedDuration, Timestamp};
use serde_json::{Value, json};
use sluice_core::access::Role;
use sluice_core::change::itsm::{self, JiraOptions, ServiceNowOptions};
use sluice_core::change::model::Unresolved;
use sluice_core::change::{
    Action, BundleItem, CabPolicy, ChangeOrigin, ChangeRequest, ChangeState, ChangeType,
    FixCandidate, NewChange, Pin, Plan, Refusal, RiskLevel, RollbackCriteria, ScheduleConflict,
    UpdateClass, resolve_bundle, transition,
};
use sluice_core::cmdb::{Asset, Selector};
use sluice_core::deferral::Standing;
use sluice_core::ecosystem::EcosystemKey;
use sluice_store::{
    ChangeEvent, ChangesPage, ChangesQuery, StoreError, StoredChange, StoredFinding,
};

use sluice_protocol::changes::{
    ChangeFilter, CreateChange, ExportFormat, ExportQuery, FromFindings,
};
use sluice_protocol::findings::FindingFilter;

use crate::auth::Principal;
use crate::calendar::{self, CalendarError};
use crate::findings::{self, FindingsError};
use crate::governance::{self, GovernanceError, current_policy};
use crate::state::AppState;

/// Most findings one change is made from; a filter that picks more must be narrowed.
pub const MAX_FINDINGS: usize = 10_000;

/// Largest page of changes.
pub const MAX_LIMIT: i64 = 1000;

/// What went wrong making, reading or acting on a change.
#[derive(Debug, thiserror::Error)]
pub enum ChangeError {
    /// No such change.
    #[error("{0}")]
    NotFound(String),
    /// The change is not in a state for this (another edit won, a freeze holds, …).
    #[error("{0}")]
    Conflict(String),
    /// The person may not do this.
    #[error("{0}")]
    NotAllowed(String),
    /// The request is refused as asked; `field` names the part at fault when one is.
    #[error("{detail}")]
    Invalid {
        /// The field's JSON path, when one field is at fault.
        field: Option<String>,
        /// Why.
        detail: String,
    },
    /// The transition table refused the action, with its kind and reason.
    #[error("{}", .0.reason)]
    Refused(Refusal),
    /// The calendar could not be read.
    #[error(transparent)]
    Calendar(#[from] CalendarError),
    /// Picking the findings failed.
    #[error(transparent)]
    Findings(#[from] FindingsError),
    /// Reading governance records failed.
    #[error(transparent)]
    Governance(#[from] GovernanceError),
    /// An audit payload could not be written down.
    #[error("audit payload: {0}")]
    Audit(#[from] serde_json::Error),
    /// The store failed, or refused a write.
    #[error(transparent)]
    Store(#[from] StoreError),
}

impl ChangeError {
    fn invalid(field: &str, detail: impl Into<String>) -> Self {
        Self::Invalid {
            field: Some(field.to_owned()),
            detail: detail.into(),
        }
    }

    fn unprocessable(detail: impl Into<String>) -> Self {
        Self::Invalid {
            field: None,
            detail: detail.into(),
        }
    }
}

/// The core's refusals of a change's content: a named field, or a conflict with its state.
impl From<sluice_core::change::ChangeError> for ChangeError {
    fn from(error: sluice_core::change::ChangeError) -> Self {
        match error {
            sluice_core::change::ChangeError::Invalid { field, reason } => Self::Invalid {
                detail: format!("{field}: {reason}"),
                field: Some(field),
            },
            other => Self::Conflict(other.to_string()),
        }
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

fn parse_scope(text: &str) -> Result<Selector, ChangeError> {
    Selector::parse(text).map_err(|e| ChangeError::invalid("scope", format!("scope: {e}")))
}

/// The release line each host runs: the CMDB's `os`, else its stored inventory's.
async fn host_ecosystems(
    state: &AppState,
    assets: &[Asset],
    hosts: &BTreeSet<String>,
) -> Result<BTreeMap<String, EcosystemKey>, ChangeError> {
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
pub struct Made {
    /// The new change's content.
    pub input: NewChange,
    /// Advisories the bundle leaves open, and why.
    pub unresolved: Vec<Unresolved>,
}

/// Checks a change's content and works out its bundle, update types, scope and origin.
pub async fn make(
    state: &AppState,
    request: CreateChange,
    now: Timestamp,
) -> Result<Made, ChangeError> {
    let plan = match (request.plan, request.plan_toml) {
        (Some(_), Some(_)) => {
            return Err(ChangeError::unprocessable(
                "give the plan as plan (JSON) or as plan_toml (TOML text), one of them",
            ));
        }
        (Some(plan), None) => plan,
        (None, Some(text)) => toml::from_str(&text).map_err(|e: toml::de::Error| {
            ChangeError::invalid("plan_toml", format!("plan_toml: {e}"))
        })?,
        (None, None) => default_plan(),
    };
    let mut update_types = request.update_types.clone().unwrap_or_default();
    let (bundle, scope, origin, unresolved) = match (request.from_findings, request.targets) {
        (Some(_), Some(_)) | (None, None) => {
            return Err(ChangeError::unprocessable(
                "give from_findings (a findings filter or finding ids) or targets (package and version), one of them",
            ));
        }
        (None, Some(targets)) => {
            if targets.is_empty() {
                return Err(ChangeError::invalid(
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
                            ChangeError::invalid(
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
                return Err(ChangeError::invalid(
                    "update_types",
                    "update_types: say what the targets carry (security, bugfix, enhancement, kernel, third-party)",
                ));
            }
            let scope = request.scope.as_deref().ok_or_else(|| {
                ChangeError::invalid(
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
) -> Result<FromFindingsBundle, ChangeError> {
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
        let base = findings::findings_query(state, &filter, &deferrals).await?;
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
                return Err(ChangeError::invalid(
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
            return Err(ChangeError::invalid(
                "from_findings.ids",
                "from_findings: give finding ids or a filter, not both",
            ));
        }
        for (index, id) in from.ids.iter().enumerate() {
            let finding = state.store.finding(*id).await?.ok_or_else(|| {
                ChangeError::invalid(
                    &format!("from_findings.ids[{index}]"),
                    format!("from_findings.ids[{index}]: no finding {id}"),
                )
            })?;
            if finding.resolved_at.is_some() {
                return Err(ChangeError::invalid(
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
        return Err(ChangeError::invalid(
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
            return Err(ChangeError::unprocessable(format!(
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
    let resolved = resolve_bundle(&candidates, pins).map_err(ChangeError::from)?;
    unresolved.extend(resolved.unresolved);
    if resolved.items.is_empty() {
        return Err(ChangeError::unprocessable(format!(
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

/// The stored change `id`.
pub async fn load(state: &AppState, id: &str) -> Result<StoredChange, ChangeError> {
    state
        .store
        .change(id)
        .await?
        .ok_or_else(|| ChangeError::NotFound(format!("change {id} not found")))
}

fn parse_states(text: &str) -> Result<Vec<ChangeState>, ChangeError> {
    text.split(',')
        .map(str::trim)
        .filter(|s| !s.is_empty())
        .map(|s| {
            ChangeState::ALL
                .into_iter()
                .find(|state| state.as_str() == s)
                .ok_or_else(|| {
                    let names: Vec<&str> = ChangeState::ALL.iter().map(|s| s.as_str()).collect();
                    ChangeError::invalid(
                        "state",
                        format!("state: {s:?} is not one of {}", names.join(", ")),
                    )
                })
        })
        .collect()
}

/// The calendar's verdict on a proposed window (`calendars::schedule_conflicts`): hosts outside
/// their maintenance windows, freezes, other changes on the same hosts; a freeze lifted by an
/// approved exception is listed with the exception, which the schedule then records.
async fn calendar_conflicts(
    state: &AppState,
    change: &ChangeRequest,
    window: &sluice_core::change::Schedule,
) -> Result<Vec<ScheduleConflict>, ChangeError> {
    // An empty or inverted window is the state machine's to refuse, with its own reason.
    let Some(range) = sluice_core::calendar::TimeRange::new(window.start, window.end) else {
        return Ok(Vec::new());
    };
    Ok(calendar::schedule_conflicts(state, &change.id, &change.scope, range).await?)
}

/// Decides `action` on the change as read (`stored`) for `person` at `now`, stores it with its
/// audit event (as `actor`) and carries out its effects. The HTTP handler and the rollout
/// orchestrator (which starts, completes and rolls back changes) share it.
pub async fn take_action(
    state: &AppState,
    stored: &StoredChange,
    person: &sluice_core::access::Actor,
    actor: &sluice_store::Actor,
    action: Action,
    now: jiff::Timestamp,
) -> Result<StoredChange, ChangeError> {
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
    let decided =
        transition(&stored.change, &action, person, &policy, now).map_err(ChangeError::Refused)?;
    if matches!(action, Action::StartImplementation)
        && let Some(reason) =
            calendar::start_blocked(state, &stored.change.id, &stored.change.scope, now).await?
    {
        // A freeze made (or an exception lost) since the change was scheduled still stops it.
        return Err(ChangeError::Conflict(reason));
    }
    let mut change = stored.change.clone();
    change.apply(&decided).map_err(ChangeError::from)?;
    if decided.to == ChangeState::Draft {
        // Back in draft: the CMDB may have changed since the last assessment.
        let assets = state.assets.get(&state.store).await?;
        let assessment =
            governance::assessment(&state.store, &assets, &change, &policy, now).await?;
        change
            .set_assessment(assessment)
            .map_err(ChangeError::from)?;
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
        // Notifications come with their own module; until then the effect is in the audit
        // event above and in the log.
        if let sluice_core::change::Effect::Notify {
            groups,
            users,
            message,
        } = effect
        {
            tracing::info!(change = %id, ?groups, ?users, %message, "notify");
        }
    }
    Ok(saved)
}

/// Makes a draft change from findings or explicit targets for `principal`, with its risk
/// assessed from the CMDB; returns it with the advisories its bundle leaves open.
pub async fn create(
    state: &AppState,
    principal: &Principal,
    request: CreateChange,
    now: Timestamp,
) -> Result<(StoredChange, Vec<Unresolved>), ChangeError> {
    let made = make(state, request, now).await?;
    let mut change = ChangeRequest::new("new", made.input, &principal.username, now)
        .map_err(ChangeError::from)?;
    let policy = current_policy::<CabPolicy>(&state.store).await?.policy;
    let assets = state.assets.get(&state.store).await?;
    let assessment = governance::assessment(&state.store, &assets, &change, &policy, now).await?;
    change
        .set_assessment(assessment)
        .map_err(ChangeError::from)?;
    let stored = state
        .store
        .create_change(change, &principal.actor())
        .await?;
    Ok((stored, made.unresolved))
}

/// Replaces a draft's content (as read: `stored`) and assesses it again; only its requester or
/// an approver may.
pub async fn edit(
    state: &AppState,
    principal: &Principal,
    stored: &StoredChange,
    request: CreateChange,
    now: Timestamp,
) -> Result<(StoredChange, Vec<Unresolved>), ChangeError> {
    let id = &stored.change.id;
    let person = governance::person(&state.store, principal).await?;
    if person.user != stored.change.requester && !person.has_any(&[Role::Approver]) {
        return Err(ChangeError::NotAllowed(format!(
            "only the requester ({}) or an approver may edit change {id}",
            stored.change.requester
        )));
    }
    let made = make(state, request, now).await?;
    let mut change = stored.change.clone();
    change.revise(made.input, now).map_err(ChangeError::from)?;
    let policy = current_policy::<CabPolicy>(&state.store).await?.policy;
    let assets = state.assets.get(&state.store).await?;
    let assessment = governance::assessment(&state.store, &assets, &change, &policy, now).await?;
    change
        .set_assessment(assessment)
        .map_err(ChangeError::from)?;
    let event = ChangeEvent {
        action: "change.edit".to_owned(),
        before: Some(serde_json::to_value(&stored.change)?),
        after: Some(serde_json::to_value(&change)?),
    };
    let saved = state
        .store
        .update_change(&change, stored.version, event, &principal.actor())
        .await?;
    Ok((saved, made.unresolved))
}

/// Takes `action` on the change as read (`stored`) for `principal` at `now`.
pub async fn act(
    state: &AppState,
    principal: &Principal,
    stored: &StoredChange,
    action: Action,
    now: Timestamp,
) -> Result<StoredChange, ChangeError> {
    let person = governance::person(&state.store, principal).await?;
    take_action(state, stored, &person, &principal.actor(), action, now).await
}

/// A page of changes picked by `filter`, with the page size and start used.
pub async fn list(
    state: &AppState,
    filter: ChangeFilter,
    now: Timestamp,
) -> Result<(ChangesPage, i64, i64), ChangeError> {
    let limit = filter.limit.unwrap_or(100);
    if !(1..=MAX_LIMIT).contains(&limit) {
        return Err(ChangeError::invalid("limit", "limit: from 1 to 1000"));
    }
    let offset = filter.offset.unwrap_or(0);
    if offset < 0 {
        return Err(ChangeError::invalid("offset", "offset: 0 or more"));
    }
    if let Some(kind) = &filter.kind {
        kind.parse::<ChangeType>()
            .map_err(|e| ChangeError::invalid("type", e.to_string()))?;
    }
    if let Some(risk) = &filter.risk
        && !RiskLevel::ALL.iter().any(|r| r.as_str() == risk)
    {
        return Err(ChangeError::invalid(
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
    Ok((page, limit, offset))
}

/// The change as a ServiceNow `change_request` record or a Jira issue (docs/change.md).
pub fn export(stored: &StoredChange, export: ExportQuery) -> Result<Value, ChangeError> {
    Ok(match export.format {
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
                    ChangeError::invalid(
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
    })
}
