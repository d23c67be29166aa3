//! Feeds, inventories and findings.

use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use axum::{Extension, Json};
use sluice_protocol::findings::{
    CreateFeed, FeedKind, FeedRecord, FeedSyncReport, FindingFilter, FindingItem, FindingRecord,
    FindingsPage, PushInventory, PushReport,
};
use sluice_store::{Feed, StoredFinding};

use crate::auth::Principal;
use crate::error::{ApiError, ApiJson, Problem};
use crate::findings;
use crate::intel::SyncReport;
use crate::state::AppState;

/// Registers a feed (security, admin). Sync it with `POST /api/v1/feeds/{name}/sync`. The
/// source is checked now (422 naming the reason: outside the feed directories, not a regular
/// file, a link-local address…) and again at every sync.
#[utoipa::path(post, path = "/api/v1/feeds", tag = "findings", security(("token" = ["security", "admin"])), request_body = CreateFeed,
    params(("Idempotency-Key" = Option<String>, Header, description = "replay-safe retries")),
    responses((status = 201, body = FeedRecord), (status = 409, body = Problem), (status = 422, body = Problem)))]
pub async fn create_feed(
    State(state): State<AppState>,
    Extension(principal): Extension<Principal>,
    ApiJson(request): ApiJson<CreateFeed>,
) -> Result<(StatusCode, Json<FeedRecord>), ApiError> {
    let feed = findings::create_feed(&state, &principal, request).await?;
    Ok((StatusCode::CREATED, Json(feed_record(feed))))
}

/// Registered feeds with their last sync.
#[utoipa::path(get, path = "/api/v1/feeds", tag = "findings", security(("token" = [])), responses((status = 200, body = Vec<FeedRecord>)))]
pub async fn list_feeds(State(state): State<AppState>) -> Result<Json<Vec<FeedRecord>>, ApiError> {
    let feeds = state.store.feeds().await?;
    Ok(Json(feeds.into_iter().map(feed_record).collect()))
}

/// Syncs a feed now; when its content changed, every host's findings are recomputed.
#[utoipa::path(post, path = "/api/v1/feeds/{id}/sync", tag = "findings", security(("token" = ["security", "operator", "admin"])),
    params(("id" = String, Path, description = "feed name or id"), ("Idempotency-Key" = Option<String>, Header, description = "replay-safe retries")),
    responses((status = 200, body = FeedSyncReport), (status = 404, body = Problem)))]
pub async fn sync_feed(
    State(state): State<AppState>,
    Extension(principal): Extension<Principal>,
    Path(key): Path<String>,
) -> Result<Json<FeedSyncReport>, ApiError> {
    let report = findings::sync_feed(&state, &principal, &key).await?;
    Ok(Json(sync_report(report)))
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
        .map(|(finding, standing)| FindingItem {
            finding: finding_record(finding),
            standing,
        })
        .collect();
    Ok(Json(FindingsPage {
        items,
        total: listing.total,
        total_exact: listing.total_exact,
        limit: listing.limit,
        offset: listing.offset,
    }))
}

/// The wire's copy of a stored finding.
fn finding_record(finding: StoredFinding) -> FindingRecord {
    FindingRecord {
        id: finding.id,
        hostname: finding.hostname,
        finding: finding.finding,
        first_seen: finding.first_seen,
        resolved_at: finding.resolved_at,
    }
}

/// The wire's record of a registered feed.
fn feed_record(feed: Feed) -> FeedRecord {
    FeedRecord {
        id: feed.id,
        name: feed.name,
        kind: feed_kind(feed.kind),
        source: feed.source,
        interval_seconds: feed.interval_seconds,
        created_at: feed.created_at,
        last_sync_at: feed.last_sync_at,
        last_status: feed.last_status,
        last_error: feed.last_error,
        content_hash: feed.content_hash,
        records: feed.records,
        skipped: feed.skipped,
    }
}

/// The wire's name for what a feed provides.
fn feed_kind(kind: sluice_store::FeedKind) -> FeedKind {
    match kind {
        sluice_store::FeedKind::Advisories => FeedKind::Advisories,
        sluice_store::FeedKind::Kev => FeedKind::Kev,
        sluice_store::FeedKind::Epss => FeedKind::Epss,
    }
}

/// The wire's account of a sync.
fn sync_report(report: SyncReport) -> FeedSyncReport {
    FeedSyncReport {
        feed: feed_record(report.feed),
        findings: report.findings.map(findings::findings_diff),
    }
}
