//! Feeds, inventories and findings.

use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use axum::{Extension, Json};
use serde::{Deserialize, Serialize};
use sluice_core::deferral::Standing;
use sluice_store::{Feed, FeedKind, FindingsDiff, StoredFinding};
use utoipa::{IntoParams, ToSchema};

use crate::auth::Principal;
use crate::error::{ApiError, ApiJson, Problem};
use crate::findings;
use crate::intel::SyncReport;
use crate::state::AppState;

/// A feed to register.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CreateFeed {
    /// Unique name.
    pub name: String,
    /// `advisories` (OSV file, directory or zip; DSA/DLA list), `kev` or `epss`.
    #[schema(value_type = String)]
    pub kind: FeedKind,
    /// An absolute path inside one of the server's feed directories (`feed_dirs`), or an
    /// http(s) URL.
    pub source: String,
    /// Sync every so often (`6h`, `1d`); on demand only when left out.
    pub interval: Option<String>,
}

/// Registers a feed (security, admin). Sync it with `POST /api/v1/feeds/{name}/sync`. The
/// source is checked now (422 naming the reason: outside the feed directories, not a regular
/// file, a link-local address…) and again at every sync.
#[utoipa::path(post, path = "/api/v1/feeds", tag = "findings", security(("token" = ["security", "admin"])), request_body = CreateFeed,
    params(("Idempotency-Key" = Option<String>, Header, description = "replay-safe retries")),
    responses((status = 201, body = Object), (status = 409, body = Problem), (status = 422, body = Problem)))]
pub async fn create_feed(
    State(state): State<AppState>,
    Extension(principal): Extension<Principal>,
    ApiJson(request): ApiJson<CreateFeed>,
) -> Result<(StatusCode, Json<Feed>), ApiError> {
    let feed = findings::create_feed(&state, &principal, request).await?;
    Ok((StatusCode::CREATED, Json(feed)))
}

/// Registered feeds with their last sync.
#[utoipa::path(get, path = "/api/v1/feeds", tag = "findings", security(("token" = [])), responses((status = 200, body = Vec<Object>)))]
pub async fn list_feeds(State(state): State<AppState>) -> Result<Json<Vec<Feed>>, ApiError> {
    Ok(Json(state.store.feeds().await?))
}

/// Syncs a feed now; when its content changed, every host's findings are recomputed.
#[utoipa::path(post, path = "/api/v1/feeds/{id}/sync", tag = "findings", security(("token" = ["security", "operator", "admin"])),
    params(("id" = String, Path, description = "feed name or id"), ("Idempotency-Key" = Option<String>, Header, description = "replay-safe retries")),
    responses((status = 200, body = SyncReport), (status = 404, body = Problem)))]
pub async fn sync_feed(
    State(state): State<AppState>,
    Extension(principal): Extension<Principal>,
    Path(key): Path<String>,
) -> Result<Json<SyncReport>, ApiError> {
    Ok(Json(findings::sync_feed(&state, &principal, &key).await?))
}

/// An inventory pushed for a host.
#[derive(Debug, Deserialize, ToSchema)]
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
#[derive(Debug, Serialize, Deserialize, ToSchema)]
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
    #[schema(value_type = Object)]
    pub findings: FindingsDiff,
    /// The stored package list's hash: an agent names it as the base of its next diff.
    pub package_hash: String,
}

/// Stores a host's inventory and recomputes its findings (operator, admin).
#[utoipa::path(put, path = "/api/v1/inventories/{id}", tag = "findings", security(("token" = ["operator", "admin"])),
    params(("id" = String, Path, description = "host name"), ("Idempotency-Key" = Option<String>, Header, description = "replay-safe retries")), request_body = PushInventory,
    responses((status = 200, body = PushReport), (status = 422, body = Problem)))]
pub async fn push_inventory(
    State(state): State<AppState>,
    Extension(principal): Extension<Principal>,
    Path(hostname): Path<String>,
    ApiJson(request): ApiJson<PushInventory>,
) -> Result<Json<PushReport>, ApiError> {
    Ok(Json(
        findings::push_inventory(&state, &principal, &hostname, request).await?,
    ))
}

/// Finding filters.
#[derive(Debug, Deserialize, IntoParams)]
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

/// A finding with its deferral standing: `standing` is `open`, `pending` (a record asks to
/// cover it), `deferred` (covered `until`), or `due-again` (the record that covered it expired
/// at `expired_at`); `deferral` names the record.
#[derive(Debug, Serialize)]
pub struct FindingItem {
    /// The finding.
    #[serde(flatten)]
    pub finding: StoredFinding,
    /// Its standing.
    #[serde(flatten)]
    pub standing: Standing,
}

/// A page of findings.
#[derive(Debug, Serialize, ToSchema)]
pub struct FindingsPage {
    /// Findings, highest priority first, each with its deferral standing.
    #[schema(value_type = Vec<Object>)]
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

/// Findings, sorted by priority, filtered, each with its deferral standing.
#[utoipa::path(get, path = "/api/v1/findings", tag = "findings", security(("token" = [])), params(FindingFilter),
    responses((status = 200, body = FindingsPage), (status = 422, body = Problem)))]
pub async fn list_findings(
    State(state): State<AppState>,
    Query(filter): Query<FindingFilter>,
) -> Result<Json<FindingsPage>, ApiError> {
    let listing = findings::list(&state, &filter).await?;
    let items = listing
        .items
        .into_iter()
        .map(|(finding, standing)| FindingItem { finding, standing })
        .collect();
    Ok(Json(FindingsPage {
        items,
        total: listing.total,
        total_exact: listing.total_exact,
        limit: listing.limit,
        offset: listing.offset,
    }))
}
