//! Change requests: create, show, list, export.

use std::collections::BTreeSet;

use jiff::Timestamp;
use serde::{Deserialize, Serialize};
use sluice_core::change::model::Unresolved;
use sluice_core::change::{
    ActionKind, ChangeRequest, ChangeType, Pin, Plan, QuorumStatus, RetrospectiveStatus,
    UpdateClass,
};

/// Which findings a change is made from: a filter, as `GET /api/v1/findings` takes it, or ids.
/// Only open findings count; findings an active deferral covers are left out (and reported).
#[derive(Debug, Default, Deserialize, Serialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(deny_unknown_fields)]
pub struct FromFindings {
    /// One host.
    pub host: Option<String>,
    /// Hosts a CMDB selector picks.
    pub selector: Option<String>,
    /// SSVC decisions, comma-separated (`act,attend`).
    pub decision: Option<String>,
    /// Only KEV-listed findings.
    pub kev: Option<bool>,
    /// Finding ids, instead of a filter.
    #[serde(default)]
    pub ids: Vec<i64>,
}

/// An explicit target: this package at this version.
#[derive(Debug, Deserialize, Serialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(deny_unknown_fields)]
pub struct Target {
    /// Package name (the source package on Debian and Ubuntu).
    pub package: String,
    /// The version hosts converge to.
    pub version: String,
    /// The release line (`Debian:12`); the version is checked against its rules when given.
    pub ecosystem: Option<String>,
}

/// A change to create (or, for `PUT`, the new content of a draft).
#[derive(Debug, Deserialize, Serialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(deny_unknown_fields)]
pub struct CreateChange {
    /// One line, at most 160 characters.
    pub title: String,
    /// `standard`, `normal` or `emergency`.
    #[serde(rename = "type")]
    #[cfg_attr(feature = "openapi", schema(value_type = String))]
    pub kind: ChangeType,
    /// Make the bundle from findings (lowest fixing versions) ...
    pub from_findings: Option<FromFindings>,
    /// ... or from explicit targets.
    pub targets: Option<Vec<Target>>,
    /// Versions chosen over the lowest fixing one (from findings only).
    #[serde(default)]
    #[cfg_attr(feature = "openapi", schema(value_type = Vec<Object>))]
    pub pins: Vec<Pin>,
    /// The hosts, as a selector. Default, from findings: the filter's selector, else the hosts
    /// of the findings. Required with explicit targets.
    pub scope: Option<String>,
    /// Update types (`security`, `bugfix`, `enhancement`, `kernel`, `third-party`): added to
    /// what the findings' advisories say; required with explicit targets.
    #[cfg_attr(feature = "openapi", schema(value_type = Option<Vec<String>>))]
    pub update_types: Option<BTreeSet<UpdateClass>>,
    /// Why the change is needed.
    pub justification: Option<String>,
    /// For a standard change: the pre-approved template it follows.
    pub template: Option<String>,
    /// Steps, verification, rollback criteria (docs/change.md). Default: no steps yet (needed
    /// before submission), roll back when more than 10% of checks fail, watch 15 minutes.
    #[cfg_attr(feature = "openapi", schema(value_type = Option<Object>))]
    pub plan: Option<Plan>,
    /// The plan written as TOML (same fields), instead of `plan`.
    pub plan_toml: Option<String>,
}

/// A change as the API shows it: the record, its version (send it back as `If-Match`), and
/// what follows from it now.
#[derive(Debug, Serialize, Deserialize)]
pub struct ChangeView {
    /// The record.
    #[serde(flatten)]
    pub change: ChangeRequest,
    /// Raised by one with every write.
    pub version: i64,
    /// The retrospective review (emergency changes): `not-required`, `due`, `overdue`, `done`.
    pub retrospective: RetrospectiveStatus,
    /// Where the vote stands, once review has started.
    pub quorum: Option<QuorumStatus>,
    /// The groups whose members may vote now (escalations included).
    pub eligible_groups: Vec<String>,
    /// What can be done next, by the transition table.
    pub next_actions: Vec<ActionKind>,
    /// On create: advisories the bundle leaves open, and why.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub unresolved: Vec<Unresolved>,
}

/// A change in a listing.
#[derive(Debug, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct ChangeSummary {
    /// Id.
    pub id: String,
    /// Title.
    pub title: String,
    /// Standard, normal or emergency.
    #[serde(rename = "type")]
    pub kind: String,
    /// State.
    pub state: String,
    /// Risk level, once assessed.
    pub risk: Option<String>,
    /// Risk score.
    pub risk_score: Option<u32>,
    /// Who asked.
    pub requester: String,
    /// Packages in the bundle.
    pub packages: usize,
    /// The scope selector.
    pub scope: String,
    /// Created.
    #[cfg_attr(feature = "openapi", schema(value_type = Option<String>))]
    pub created: Option<Timestamp>,
    /// Last changed.
    #[cfg_attr(feature = "openapi", schema(value_type = Option<String>))]
    pub updated: Option<Timestamp>,
    /// The retrospective review's standing.
    #[cfg_attr(feature = "openapi", schema(value_type = Object))]
    pub retrospective: RetrospectiveStatus,
    /// The record's version.
    pub version: i64,
}

/// A page of changes, newest first.
#[derive(Debug, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct ChangePage {
    /// The changes.
    pub items: Vec<ChangeSummary>,
    /// How many match.
    pub total: i64,
    /// Page size.
    pub limit: i64,
    /// Page start.
    pub offset: i64,
}

/// Export formats.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Deserialize, Serialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(rename_all = "lowercase")]
pub enum ExportFormat {
    /// A ServiceNow `change_request` record (Table API field names).
    #[default]
    Servicenow,
    /// The body of Jira Cloud's `POST /rest/api/3/issue`.
    Jira,
}

/// Which changes to list.
#[derive(Debug, Deserialize, Serialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::IntoParams))]
#[serde(deny_unknown_fields)]
pub struct ChangeFilter {
    /// States, comma-separated (`submitted,in-review`).
    pub state: Option<String>,
    /// `standard`, `normal` or `emergency`.
    #[serde(rename = "type")]
    #[cfg_attr(feature = "openapi", param(rename = "type"))]
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

/// How to export.
#[derive(Debug, Deserialize, Serialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::IntoParams))]
#[serde(deny_unknown_fields)]
pub struct ExportQuery {
    /// `servicenow` (default) or `jira`.
    #[serde(default)]
    #[cfg_attr(feature = "openapi", param(value_type = Option<String>))]
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
