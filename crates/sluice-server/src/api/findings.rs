//! Feeds, inventories and findings.

use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use axum::{Extension, Json};
use serde::Deserialize;
use sluice_core::deferral::Deferral;
use sluice_core::ecosystem::EcosystemKey;
use sluice_core::inventory::{OsRelease, dpkg, rpm};
use sluice_protocol::findings::{
    CreateFeed, FindingItem, FindingRecord, FindingsPage, PushInventory, PushReport,
};
use sluice_store::{
    Feed, FeedKind, FindingsDiff, FindingsQuery, InventoryWrite, NewFeed, StoredFinding,
};
use utoipa::IntoParams;

use crate::auth::Principal;
use crate::error::{ApiError, ApiJson, Problem};
use crate::intel::{self, SyncReport};
use crate::settings::parse_duration;
use crate::state::AppState;

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
    let name = request.name.trim();
    if name.is_empty()
        || name.len() > 64
        || !name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.'))
    {
        return Err(ApiError::invalid_field(
            "name",
            "1 to 64 letters, digits, '-', '_' or '.'",
        ));
    }
    let source = request.source.trim();
    if source.is_empty() {
        return Err(ApiError::invalid_field("source", "a path or URL is needed"));
    }
    intel::source::check(source, &state.settings.feeds)
        .await
        .map_err(|e| ApiError::invalid_field("source", e.message))?;
    let interval_seconds = request
        .interval
        .as_deref()
        .map(|text| {
            parse_duration("interval", text).map_err(|e| ApiError::invalid_field("interval", e.0))
        })
        .transpose()?
        .map(|d| i64::try_from(d.as_secs()).unwrap_or(i64::MAX).max(60));
    let feed = state
        .store
        .create_feed(
            NewFeed {
                name: name.to_owned(),
                kind: feed_kind(request.kind),
                source: source.to_owned(),
                interval_seconds,
            },
            &principal.actor(),
        )
        .await?;
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
    let feed = state
        .store
        .feeds()
        .await?
        .into_iter()
        .find(|f| f.name == key || f.id == key)
        .ok_or_else(|| {
            let shown: String = key.chars().take(64).collect();
            ApiError::not_found(format!("feed {shown:?} not found"))
        })?;
    Ok(Json(
        intel::sync_feed(
            &state.store,
            &state.intel,
            &feed,
            &state.settings.feeds,
            &principal.actor(),
        )
        .await?,
    ))
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
    let hostname = hostname.trim().to_ascii_lowercase();
    if hostname.is_empty()
        || hostname.len() > 253
        || !hostname
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_'))
    {
        return Err(ApiError::invalid_field(
            "hostname",
            "a host name: letters, digits, '-', '.', '_'",
        ));
    }
    let packages = match request.format.as_str() {
        "dpkg-status" => dpkg::parse_status("content", &request.content),
        "rpm-qa" => rpm::parse_qa("content", &request.content),
        other => {
            return Err(ApiError::invalid_field(
                "format",
                format!("unknown format {other:?}: dpkg-status or rpm-qa"),
            ));
        }
    }
    .map_err(|e| ApiError::invalid_field("content", e.to_string()))?;
    let ecosystem: EcosystemKey = match (&request.ecosystem, &request.os_release) {
        (Some(name), _) => name
            .parse()
            .map_err(|e: sluice_core::ecosystem::EcosystemError| {
                ApiError::invalid_field("ecosystem", e.to_string())
            })?,
        (None, Some(text)) => OsRelease::parse("os_release", text)
            .map_err(|e| ApiError::invalid_field("os_release", e.to_string()))?
            .ecosystem()
            .map_err(|e| ApiError::invalid_field("os_release", e.to_string()))?,
        (None, None) => {
            return Err(ApiError::invalid_field(
                "os_release",
                "give os_release or ecosystem",
            ));
        }
    };
    let rpm_ecosystem = ecosystem.scheme() == sluice_core::version::Scheme::Rpm;
    if rpm_ecosystem != (request.format == "rpm-qa") {
        return Err(ApiError::invalid_field(
            "format",
            format!("{} does not fit the ecosystem {ecosystem}", request.format),
        ));
    }
    ingest(
        &state,
        hostname,
        ecosystem,
        packages,
        request.os_release.as_deref(),
        false,
        &principal.actor(),
    )
    .await
    .map(Json)
}

/// Stores a host's packages and its findings, scanned against the current index: the CMDB
/// asset is created or given its release, and inventory and findings land in one transaction.
/// Shared by operator pushes and agents.
pub async fn ingest(
    state: &AppState,
    hostname: String,
    ecosystem: EcosystemKey,
    packages: Vec<sluice_core::inventory::InstalledPackage>,
    os_release: Option<&str>,
    reboot_required: bool,
    actor: &sluice_store::Actor,
) -> Result<PushReport, ApiError> {
    // A report that no package manager could have written stores nothing.
    sluice_core::inventory::check_packages(ecosystem.scheme(), &packages)
        .map_err(|e| ApiError::invalid_field(&format!("packages[{}]", e.index), e.to_string()))?;
    let eco_name = ecosystem.osv_name();
    // The host appears in (or updates) the CMDB, with the release it runs.
    let mut asset = match state.store.asset(&hostname).await? {
        Some(asset) => asset,
        None => sluice_core::cmdb::Asset::new(&hostname)
            .map_err(|e| ApiError::invalid_field("hostname", e.to_string()))?,
    };
    if asset.os.as_ref() != Some(&ecosystem) {
        asset.os = Some(ecosystem.clone());
        state.store.upsert_asset(&asset, actor).await?;
    }
    let ids = state.store.package_ids(&eco_name, &packages).await?;
    let mut sorted = ids.clone();
    sorted.sort_unstable();
    let hash = intel::sha256_hex(
        serde_json::to_string(&sorted)
            .unwrap_or_default()
            .as_bytes(),
    );
    let profile = asset.profile();
    let count = packages.len();
    let today = intel::today();
    let current = intel::scan(&state.intel, profile, &ecosystem, packages, today).await?;
    // Inventory and findings land together: a failure leaves both as they were.
    let (changed, findings) = state
        .store
        .save_scan(
            &InventoryWrite {
                hostname: &hostname,
                ecosystem: &eco_name,
                package_ids: &ids,
                package_hash: &hash,
                os_release,
                reboot_required,
            },
            &current,
            today,
            actor,
        )
        .await?;
    metrics::counter!("sluice_inventories_ingested_total", "changed" => if changed { "true" } else { "false" }).increment(1);
    metrics::counter!("sluice_findings_opened_total").increment(findings.opened);
    metrics::counter!("sluice_findings_resolved_total").increment(findings.resolved);
    Ok(PushReport {
        hostname,
        ecosystem: eco_name,
        packages: count,
        changed,
        findings: findings_diff(findings),
        package_hash: hash,
    })
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

/// Which findings a filter picks, as the store takes it (page 0, size 0: the caller sets both).
pub(crate) async fn findings_query(
    state: &AppState,
    filter: &FindingFilter,
    deferrals: &[Deferral],
) -> Result<FindingsQuery, ApiError> {
    let decisions = filter
        .decision
        .as_deref()
        .map(|text| {
            text.split(',')
                .map(|d| {
                    d.parse::<sluice_core::priority::Decision>()
                        .map(|d| d.as_str().to_owned())
                        .map_err(|e| ApiError::invalid_field("decision", e))
                })
                .collect::<Result<Vec<_>, _>>()
        })
        .transpose()?;
    let resolved = match filter.status.as_deref().unwrap_or("open") {
        "open" => None,
        "resolved" => Some(true),
        "all" => Some(false),
        other => {
            return Err(ApiError::invalid_field(
                "status",
                format!("{other:?}: open, resolved or all"),
            ));
        }
    };
    let mut hosts = filter.host.as_ref().map(|h| vec![h.to_ascii_lowercase()]);
    if let Some(text) = filter.selector.as_deref() {
        let selector: sluice_core::cmdb::selector::Selector =
            text.parse().map_err(|e: sluice_core::cmdb::CmdbError| {
                ApiError::invalid_field("selector", e.to_string())
            })?;
        let assets = state.assets.get(&state.store).await?;
        let picked: Vec<String> = selector
            .filter(assets.iter())
            .map(|a| a.hostname.clone())
            .collect();
        hosts = Some(match hosts {
            Some(one) => one.into_iter().filter(|h| picked.contains(h)).collect(),
            None => picked,
        });
    }
    // Overdue findings are due ones: an active deferral takes a finding out of both.
    let covered_wanted = match (filter.deferred, filter.overdue) {
        (Some(true), true) => {
            return Err(ApiError::invalid_field(
                "deferred",
                "a deferred finding is not due, so it is never overdue: ask for one or the other",
            ));
        }
        (Some(wanted), _) => Some(wanted),
        (None, true) => Some(false),
        (None, false) => None,
    };
    let covered = covered_wanted.map(|wanted| {
        (
            wanted,
            crate::governance::covered(deferrals, state.clock.now()),
        )
    });
    Ok(FindingsQuery {
        hosts,
        decisions,
        kev: filter.kev,
        overdue_on: filter.overdue.then(|| {
            jiff::Timestamp::now()
                .to_zoned(jiff::tz::TimeZone::UTC)
                .date()
        }),
        resolved,
        covered,
        limit: 0,
        offset: 0,
    })
}

/// Findings, sorted by priority, filtered, each with its deferral standing.
#[utoipa::path(get, path = "/api/v1/findings", tag = "findings", security(("token" = [])), params(FindingFilter),
    responses((status = 200, body = FindingsPage), (status = 422, body = Problem)))]
pub async fn list_findings(
    State(state): State<AppState>,
    Query(filter): Query<FindingFilter>,
) -> Result<Json<FindingsPage>, ApiError> {
    let limit = filter.limit.unwrap_or(100);
    if !(1..=1000).contains(&limit) {
        return Err(ApiError::invalid_field("limit", "from 1 to 1000"));
    }
    let offset = filter.offset.unwrap_or(0);
    if offset < 0 {
        return Err(ApiError::invalid_field("offset", "0 or more"));
    }
    let deferrals = crate::governance::live_deferrals(&state.store).await?;
    let query = FindingsQuery {
        limit,
        offset,
        ..findings_query(&state, &filter, &deferrals).await?
    };
    let page = state.store.findings(&query).await?;
    let now = state.clock.now();
    let items = page
        .items
        .into_iter()
        .map(|finding| FindingItem {
            standing: crate::governance::finding_standing(&finding, &deferrals, now),
            finding: finding_record(finding),
        })
        .collect();
    Ok(Json(FindingsPage {
        items,
        total: page.total,
        total_exact: page.total_exact,
        limit,
        offset,
    }))
}

/// The store's feed kind for the wire's.
fn feed_kind(kind: sluice_protocol::findings::FeedKind) -> FeedKind {
    match kind {
        sluice_protocol::findings::FeedKind::Advisories => FeedKind::Advisories,
        sluice_protocol::findings::FeedKind::Kev => FeedKind::Kev,
        sluice_protocol::findings::FeedKind::Epss => FeedKind::Epss,
    }
}

/// The wire's copy of what an ingest changed.
fn findings_diff(diff: FindingsDiff) -> sluice_protocol::findings::FindingsDiff {
    sluice_protocol::findings::FindingsDiff {
        opened: diff.opened,
        resolved: diff.resolved,
        updated: diff.updated,
        open: diff.open,
    }
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
