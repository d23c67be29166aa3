//! A change in the shapes of the two ITSM tools organisations run: a ServiceNow
//! `change_request` record and a Jira issue. Pure JSON building; connectors that push these
//! (and map names to ServiceNow `sys_id`s) come later.
//!
//! Field names are the tools' own:
//! - ServiceNow: the `change_request` table as the Table API (`/api/now/table/change_request`)
//!   returns it: `short_description`, `description`, `type`, `state`, `approval`, `risk`,
//!   `impact`, `category`, `start_date`, `end_date`, `work_start`, `work_end`,
//!   `implementation_plan`, `backout_plan`, `test_plan`, `justification`,
//!   `risk_impact_analysis`, `requested_by`, `assignment_group`, `cmdb_ci`, `close_code`,
//!   `close_notes`, `correlation_id`, `correlation_display`. States are the Change Management
//!   state model's values (ServiceNow docs, "State model and transitions": New −5, Assess −4,
//!   Authorize −3, Scheduled −2, Implement −1, Review 0, Closed 3, Canceled 4); risk is the base
//!   choice list (1 Very High, 2 High, 3 Moderate, 4 Low), impact 1 High, 2 Medium, 3 Low. Values
//!   are strings, as the Table API writes them; dates are `YYYY-MM-DD HH:MM:SS` in UTC. Reference
//!   fields (`requested_by`, `assignment_group`, `cmdb_ci`) carry names: push with
//!   `sysparm_input_display_value=true`, or map them to `sys_id`s first.
//! - Jira: the body of `POST /rest/api/3/issue` (Jira Cloud REST API v3, "Create issue"):
//!   `fields.project.key`, `summary`, `issuetype.name`, `priority.name`, `labels`, `duedate`
//!   (`YYYY-MM-DD`), and `description` as an Atlassian Document Format document (`type: doc`,
//!   `version: 1`; Atlassian's "Atlassian Document Format" structure reference). Jira Service
//!   Management's change fields (change type, risk) are custom fields whose ids differ per site,
//!   so they are left to the connector.

use jiff::Timestamp;
use serde_json::{Value, json};

use super::model::{ChangeRequest, ReviewOutcome};
use super::risk::RiskLevel;
use super::state::ChangeState;

/// Site-specific values for the ServiceNow record.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ServiceNowOptions {
    /// The group that implements the change (`assignment_group`).
    pub assignment_group: Option<String>,
    /// The configuration item (`cmdb_ci`), when the scope is one CI.
    pub cmdb_ci: Option<String>,
    /// The change category (`category`).
    pub category: String,
}

impl Default for ServiceNowOptions {
    fn default() -> Self {
        Self {
            assignment_group: None,
            cmdb_ci: None,
            category: "Software".to_owned(),
        }
    }
}

/// Site-specific values for the Jira issue.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct JiraOptions {
    /// The project key (`OPS`).
    pub project_key: String,
    /// The issue type; Jira Service Management projects have `Change`.
    pub issue_type: String,
}

impl JiraOptions {
    /// Options for a project, with the `Change` issue type.
    pub fn new(project_key: &str) -> Self {
        Self {
            project_key: project_key.to_owned(),
            issue_type: "Change".to_owned(),
        }
    }
}

/// ServiceNow's `state` value for a change state.
pub fn servicenow_state(state: ChangeState) -> i32 {
    match state {
        ChangeState::Draft => -5,
        ChangeState::Submitted => -4,
        ChangeState::InReview | ChangeState::Approved => -3,
        ChangeState::Scheduled => -2,
        ChangeState::Implementing => -1,
        ChangeState::Completed
        | ChangeState::Failed
        | ChangeState::RolledBack
        | ChangeState::Reviewed => 0,
        ChangeState::Closed => 3,
        ChangeState::Rejected | ChangeState::Cancelled => 4,
    }
}

/// ServiceNow's `risk` value for a risk level.
pub fn servicenow_risk(level: RiskLevel) -> i32 {
    match level {
        RiskLevel::VeryHigh => 1,
        RiskLevel::High => 2,
        RiskLevel::Medium => 3,
        RiskLevel::Low => 4,
    }
}

/// The change as a ServiceNow `change_request` record.
pub fn to_servicenow(change: &ChangeRequest, options: &ServiceNowOptions) -> Value {
    let mut record = serde_json::Map::new();
    let mut put = |key: &str, value: Value| {
        record.insert(key.to_owned(), value);
    };
    put("short_description", json!(change.title));
    put("description", json!(description_text(change)));
    put("type", json!(change.kind.as_str()));
    put("state", json!(servicenow_state(change.state).to_string()));
    put("approval", json!(servicenow_approval(change)));
    put("category", json!(options.category));
    if let Some(assessment) = &change.assessment {
        put(
            "risk",
            json!(servicenow_risk(assessment.risk.level).to_string()),
        );
        put("impact", json!(impact(change).to_string()));
        put(
            "risk_impact_analysis",
            json!(format!(
                "Risk {} (score {}):\n{}",
                assessment.risk.level,
                assessment.risk.score,
                bullets(&assessment.risk.reasons)
            )),
        );
    }
    if let Some(schedule) = &change.schedule {
        put("start_date", json!(servicenow_time(schedule.start)));
        put("end_date", json!(servicenow_time(schedule.end)));
    }
    if let Some(at) = change.times.implementation_started {
        put("work_start", json!(servicenow_time(at)));
    }
    if let Some(at) = change.times.implementation_ended {
        put("work_end", json!(servicenow_time(at)));
    }
    put(
        "implementation_plan",
        json!(numbered(&change.plan.implementation)),
    );
    put("backout_plan", json!(backout_text(change)));
    put("test_plan", json!(bullets(&change.plan.verification)));
    put("justification", json!(justification(change)));
    put("requested_by", json!(change.requester));
    if let Some(group) = &options.assignment_group {
        put("assignment_group", json!(group));
    }
    if let Some(ci) = &options.cmdb_ci {
        put("cmdb_ci", json!(ci));
    }
    if let Some(review) = &change.review {
        let code = match review.outcome {
            ReviewOutcome::Successful => "successful",
            ReviewOutcome::SuccessfulWithIssues => "successful_issues",
            ReviewOutcome::Unsuccessful => "unsuccessful",
        };
        put("close_code", json!(code));
        put("close_notes", json!(review.notes));
    } else if let Some(reason) = &change.outcome_reason {
        put("close_notes", json!(reason));
    }
    put("correlation_id", json!(change.id));
    put("correlation_display", json!("Sluice"));
    Value::Object(record)
}

/// The change as the body of a Jira Cloud "create issue" request.
pub fn to_jira(change: &ChangeRequest, options: &JiraOptions) -> Value {
    let mut fields = serde_json::Map::new();
    fields.insert("project".into(), json!({ "key": options.project_key }));
    fields.insert("summary".into(), json!(change.title));
    fields.insert("issuetype".into(), json!({ "name": options.issue_type }));
    fields.insert("description".into(), adf_description(change));
    if let Some(level) = change.risk() {
        let priority = match level {
            RiskLevel::VeryHigh => "Highest",
            RiskLevel::High => "High",
            RiskLevel::Medium => "Medium",
            RiskLevel::Low => "Low",
        };
        fields.insert("priority".into(), json!({ "name": priority }));
    }
    let mut labels = vec![
        "sluice".to_owned(),
        format!("change-{}", change.kind),
        format!("state-{}", change.state),
    ];
    if let Some(level) = change.risk() {
        labels.push(format!("risk-{level}"));
    }
    if change.kev() {
        labels.push("kev".to_owned());
    }
    fields.insert("labels".into(), json!(labels));
    let due = change.schedule.map(|s| s.end).or(change.retrospective_due);
    if let Some(due) = due {
        fields.insert(
            "duedate".into(),
            json!(due.strftime("%Y-%m-%d").to_string()),
        );
    }
    json!({ "fields": fields })
}

fn servicenow_time(at: Timestamp) -> String {
    at.strftime("%Y-%m-%d %H:%M:%S").to_string()
}

fn servicenow_approval(change: &ChangeRequest) -> &'static str {
    match change.state {
        ChangeState::Draft | ChangeState::Submitted => "not requested",
        ChangeState::InReview => "requested",
        ChangeState::Rejected => "rejected",
        ChangeState::Cancelled if change.times.approved.is_none() => "not requested",
        _ => "approved",
    }
}

/// ServiceNow impact: high for critical hosts or tier-1 services, medium for middling
/// criticality or large scopes, low otherwise.
fn impact(change: &ChangeRequest) -> i32 {
    let Some(assessment) = &change.assessment else {
        return 3;
    };
    let inputs = &assessment.risk.inputs;
    if inputs.max_criticality >= 4 || inputs.tier1_services > 0 {
        1
    } else if inputs.max_criticality == 3 || inputs.hosts >= 100 {
        2
    } else {
        3
    }
}

fn justification(change: &ChangeRequest) -> String {
    if let Some(text) = change
        .justification
        .as_ref()
        .filter(|t| !t.trim().is_empty())
    {
        return text.clone();
    }
    let advisories: Vec<&str> = change
        .bundle
        .iter()
        .flat_map(|i| i.advisories.iter().map(String::as_str))
        .collect();
    if advisories.is_empty() {
        "Package update requested through Sluice.".to_owned()
    } else {
        format!("Fixes {}.", advisories.join(", "))
    }
}

fn bundle_lines(change: &ChangeRequest) -> Vec<String> {
    change
        .bundle
        .iter()
        .map(|item| {
            let ecosystem = item
                .ecosystem
                .as_ref()
                .map(|e| format!(" ({e})"))
                .unwrap_or_default();
            let advisories = if item.advisories.is_empty() {
                String::new()
            } else {
                format!(", fixes {}", item.advisories.join(", "))
            };
            format!(
                "{}{ecosystem} -> {}{advisories}",
                item.package, item.target_version
            )
        })
        .collect()
}

fn criteria_lines(change: &ChangeRequest) -> Vec<String> {
    let criteria = &change.plan.rollback_criteria;
    // One decimal at most: 0.07 × 100 is 7.000000000000001 in binary floating point.
    let percent = (criteria.max_failed_check_share * 1000.0).round() / 10.0;
    let mut lines = vec![format!("more than {percent}% of checks fail")];
    if let Some(factor) = criteria.max_latency_factor {
        lines.push(format!(
            "probe latency above {factor}x the pre-update baseline"
        ));
    }
    if let Some(check) = &criteria.custom_check {
        lines.push(format!("check {check} fails"));
    }
    lines.push(format!(
        "judged during {:#} after each host and each batch",
        criteria.detection_window
    ));
    lines
}

fn description_text(change: &ChangeRequest) -> String {
    let mut text = format!(
        "Sluice change {}\nScope: {}\n\nBundle:\n{}",
        change.id,
        scope_text(change),
        bullets(&bundle_lines(change))
    );
    if let Some(assessment) = &change.assessment {
        text.push_str(&format!(
            "\n\nRisk: {} (score {})",
            assessment.risk.level, assessment.risk.score
        ));
    }
    text
}

fn backout_text(change: &ChangeRequest) -> String {
    format!(
        "Roll back when:\n{}\n\nRollback downgrades the packages to the versions recorded before the change.",
        bullets(&criteria_lines(change))
    )
}

fn scope_text(change: &ChangeRequest) -> String {
    if change.scope.is_all() {
        "all assets".to_owned()
    } else {
        change.scope.to_string()
    }
}

fn bullets(lines: &[String]) -> String {
    lines
        .iter()
        .map(|l| format!("- {l}"))
        .collect::<Vec<_>>()
        .join("\n")
}

fn numbered(lines: &[String]) -> String {
    lines
        .iter()
        .enumerate()
        .map(|(i, l)| format!("{}. {l}", i + 1))
        .collect::<Vec<_>>()
        .join("\n")
}

fn adf_description(change: &ChangeRequest) -> Value {
    let mut content = vec![adf_paragraph(&[adf_text(&justification(change))])];
    content.push(adf_heading("Scope"));
    content.push(adf_paragraph(&[adf_code(&scope_text(change))]));
    content.push(adf_heading("Bundle"));
    content.extend(adf_list("bulletList", &bundle_lines(change)));
    if let Some(assessment) = &change.assessment {
        content.push(adf_heading("Risk"));
        content.push(adf_paragraph(&[adf_text(&format!(
            "{} (score {})",
            assessment.risk.level, assessment.risk.score
        ))]));
        content.extend(adf_list("bulletList", &assessment.risk.reasons));
    }
    content.push(adf_heading("Implementation"));
    content.extend(adf_list("orderedList", &change.plan.implementation));
    content.push(adf_heading("Verification"));
    content.extend(adf_list("bulletList", &change.plan.verification));
    content.push(adf_heading("Rollback criteria"));
    content.extend(adf_list("bulletList", &criteria_lines(change)));
    if let Some(schedule) = &change.schedule {
        content.push(adf_heading("Schedule"));
        content.push(adf_paragraph(&[adf_text(&format!(
            "{} to {} (UTC)",
            servicenow_time(schedule.start),
            servicenow_time(schedule.end)
        ))]));
    }
    content.push(adf_paragraph(&[adf_text(&format!(
        "Sluice change {}, {} change, {}.",
        change.id, change.kind, change.state
    ))]));
    json!({ "type": "doc", "version": 1, "content": content })
}

fn adf_heading(text: &str) -> Value {
    json!({ "type": "heading", "attrs": { "level": 3 }, "content": [adf_text(text)] })
}

fn adf_paragraph(content: &[Value]) -> Value {
    json!({ "type": "paragraph", "content": content })
}

/// ADF text nodes must not be empty; an empty text becomes a dash.
fn adf_text(text: &str) -> Value {
    let text = if text.trim().is_empty() { "-" } else { text };
    json!({ "type": "text", "text": text })
}

fn adf_code(text: &str) -> Value {
    let text = if text.trim().is_empty() { "-" } else { text };
    json!({ "type": "text", "text": text, "marks": [{ "type": "code" }] })
}

/// A list, or nothing when there are no items (ADF lists need at least one item).
fn adf_list(kind: &str, items: &[String]) -> Option<Value> {
    let items: Vec<Value> = items
        .iter()
        .filter(|i| !i.trim().is_empty())
        .map(|i| json!({ "type": "listItem", "content": [adf_paragraph(&[adf_text(i)])] }))
        .collect();
    (!items.is_empty()).then(|| json!({ "type": kind, "content": items }))
}
