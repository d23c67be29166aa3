//! Feeds, pushed inventories and findings.

use serde::{Deserialize, Serialize};
use sluice_core::deferral::Standing;
use sluice_core::finding::Finding;

/// A feed to register.
#[derive(Debug, Deserialize, Serialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(deny_unknown_fields)]
pub struct CreateFeed {
    /// Unique name.
    pub name: String,
    /// `advisories` (OSV file, directory or zip; DSA/DLA list), `kev` or `epss`.
    #[cfg_attr(feature = "openapi", schema(value_type = String))]
    pub kind: FeedKind,
    /// An absolute path inside one of the server's feed directories (`feed_dirs`), or an
    /// http(s) URL.
    pub source: String,
    /// Sync every so often (`6h`, `1d`); on demand only when left out.
    pub interval: Option<String>,
}

/// An inventory pushed for a host.
#[derive(Debug, Deserialize, Serialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(deny_unknown_fields)]
pub struct PushInventory {
    /// `dpkg-status` (a dpkg status file) or `rpm-qa` (rpm -qa with Sluice's query format).
    pub format: String,
    /// The file's content.
    pub content: String,
    /// The host's os-release file, to choose the ecosystem.
    pub os_release: Option<String>,
    /// Or the ecosystem by name, e.g. `Debian:12`.
    pub ecosystem: Option<String>,
}

/// What a push did.
#[derive(Debug, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct PushReport {
    /// Host.
    pub hostname: String,
    /// Ecosystem.
    pub ecosystem: String,
    /// Installed packages.
    pub packages: usize,
    /// Whether the package list changed since the last push.
    pub changed: bool,
    /// What happened to the host's findings.
    pub findings: FindingsDiff,
    /// The stored package list's hash: an agent names it as the base of its next diff.
    pub package_hash: String,
}

/// A finding with its deferral standing: `standing` is `open`, `pending` (a record asks to
/// cover it), `deferred` (covered `until`), or `due-again` (the record that covered it expired
/// at `expired_at`); `deferral` names the record.
#[derive(Debug, Serialize, Deserialize)]
pub struct FindingItem {
    /// The finding.
    #[serde(flatten)]
    pub finding: FindingRecord,
    /// Its standing.
    #[serde(flatten)]
    pub standing: Standing,
}

/// A page of findings.
#[derive(Debug, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct FindingsPage {
    /// Findings, highest priority first, each with its deferral standing.
    #[cfg_attr(feature = "openapi", schema(value_type = Vec<Object>))]
    pub items: Vec<FindingItem>,
    /// How many match, counted up to 10,000.
    pub total: i64,
    /// `false` when more than 10,000 match: `total` is then a lower bound.
    pub total_exact: bool,
    /// Page size.
    pub limit: i64,
    /// Page start.
    pub offset: i64,
}

/// What a feed provides.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum FeedKind {
    /// Advisories (OSV, DSA/DLA lists).
    Advisories,
    /// The CISA KEV catalog.
    Kev,
    /// FIRST EPSS scores.
    Epss,
}

/// What applying a host's current findings changed.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct FindingsDiff {
    /// Newly opened.
    pub opened: u64,
    /// Resolved (no longer present).
    pub resolved: u64,
    /// Still open, with changed details.
    pub updated: u64,
    /// Open after the change.
    pub open: u64,
}

/// A stored finding, as the API shows it.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct FindingRecord {
    /// Id.
    pub id: i64,
    /// Host.
    pub hostname: String,
    /// The finding (its `due` counts from `first_seen`).
    #[serde(flatten)]
    pub finding: Finding,
    /// When it was first seen.
    pub first_seen: String,
    /// When it was resolved, if it was.
    pub resolved_at: Option<String>,
}

/// A registered feed, as listed.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct FeedRecord {
    /// Id.
    pub id: String,
    /// Unique name.
    pub name: String,
    /// What it provides: `advisories`, `kev` or `epss`.
    #[cfg_attr(feature = "openapi", schema(value_type = String))]
    pub kind: FeedKind,
    /// URL or local path.
    pub source: String,
    /// Sync interval in seconds (`None`: manual only).
    pub interval_seconds: Option<i64>,
    /// Registered at.
    pub created_at: String,
    /// Last sync attempt.
    pub last_sync_at: Option<String>,
    /// `ok`, `unchanged` or `error`.
    pub last_status: Option<String>,
    /// Error of the last failed sync.
    pub last_error: Option<String>,
    /// Hash of the last content synced.
    pub content_hash: Option<String>,
    /// Records in the last content.
    pub records: i64,
    /// Records skipped in the last content.
    pub skipped: i64,
}

/// What a feed sync did (`POST /api/v1/feeds/{name}/sync`).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct FeedSyncReport {
    /// The feed after the sync.
    pub feed: FeedRecord,
    /// Totals of the findings recomputed, when the content changed.
    pub findings: Option<FindingsDiff>,
}

impl FeedKind {
    /// The name on the wire.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Advisories => "advisories",
            Self::Kev => "kev",
            Self::Epss => "epss",
        }
    }
}

/// Finding filters.
#[derive(Debug, Deserialize, Serialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::IntoParams))]
#[serde(deny_unknown_fields)]
pub struct FindingFilter {
    /// One host.
    pub host: Option<String>,
    /// Only hosts the CMDB selector picks, e.g. `env=prod,criticality>=4`.
    pub selector: Option<String>,
    /// SSVC decisions, comma-separated (`act,attend`).
    pub decision: Option<String>,
    /// Only KEV-listed (`true`) or only not (`false`).
    pub kev: Option<bool>,
    /// Only findings past their due date (and not deferred).
    #[serde(default)]
    pub overdue: bool,
    /// Only findings an active deferral, risk acceptance or legacy pin covers (`true`), or only
    /// those none covers (`false`: they are due).
    pub deferred: Option<bool>,
    /// `open` (default), `resolved` or `all`.
    pub status: Option<String>,
    /// Page size, 1 to 1000 (default 100).
    pub limit: Option<i64>,
    /// Page start (default 0).
    pub offset: Option<i64>,
}
