//! Feeds, inventories and findings on the server: registering and syncing feeds, storing a
//! host's inventory with its findings, and picking findings by filter with their deferral
//! standing. Matching is `crate::intel`'s (over `sluice-core`); this module checks what comes in
//! and knows nothing of HTTP (`crate::error` maps [`FindingsError`]).

use sluice_core::deferral::{Deferral, Standing};
use sluice_core::ecosystem::EcosystemKey;
use sluice_core::inventory::{InstalledPackage, OsRelease, dpkg, rpm};
use sluice_store::{
    Actor, Feed, FeedKind, FindingsDiff, FindingsQuery, InventoryWrite, NewFeed, StoreError,
    StoredFinding,
};

use sluice_protocol::findings::{CreateFeed, FindingFilter, PushInventory, PushReport};

use crate::auth::Principal;
use crate::governance::{self, GovernanceError};
use crate::intel::{self, IntelError, SyncReport};
use crate::settings::parse_duration;
use crate::state::AppState;

/// What went wrong with a feed, an inventory or a findings filter.
#[derive(Debug, thiserror::Error)]
pub enum FindingsError {
    /// No such feed.
    #[error("{0}")]
    NotFound(String),
    /// A field's value is refused.
    #[error("{detail}")]
    Invalid {
        /// The field's JSON path.
        field: String,
        /// Why.
        detail: String,
    },
    /// Syncing, matching or recomputing failed.
    #[error(transparent)]
    Intel(#[from] IntelError),
    /// Reading the deferral records failed.
    #[error(transparent)]
    Governance(#[from] GovernanceError),
    /// The store failed, or refused a write.
    #[error(transparent)]
    Store(#[from] StoreError),
}

impl FindingsError {
    fn invalid(field: &str, detail: impl Into<String>) -> Self {
        Self::Invalid {
            field: field.to_owned(),
            detail: detail.into(),
        }
    }
}

/// A page of findings, each with its deferral standing.
pub struct FindingsListing {
    /// The findings and their standing.
    pub items: Vec<(StoredFinding, Standing)>,
    /// How many match.
    pub total: i64,
    /// Whether `total` is exact.
    pub total_exact: bool,
    /// Page size.
    pub limit: i64,
    /// Page start.
    pub offset: i64,
}

/// Checks and registers a feed; its source is checked against the feed policy now.
pub async fn create_feed(
    state: &AppState,
    principal: &Principal,
    request: CreateFeed,
) -> Result<Feed, FindingsError> {
    let name = request.name.trim();
    if name.is_empty()
        || name.len() > 64
        || !name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.'))
    {
        return Err(FindingsError::invalid(
            "name",
            "1 to 64 letters, digits, '-', '_' or '.'",
        ));
    }
    let source = request.source.trim();
    if source.is_empty() {
        return Err(FindingsError::invalid("source", "a path or URL is needed"));
    }
    intel::source::check(source, &state.settings.feeds)
        .await
        .map_err(|e| FindingsError::invalid("source", e.message))?;
    let interval_seconds = request
        .interval
        .as_deref()
        .map(|text| {
            parse_duration("interval", text).map_err(|e| FindingsError::invalid("interval", e.0))
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
    Ok(feed)
}

/// Syncs the feed named `key` (name or id) now.
pub async fn sync_feed(
    state: &AppState,
    principal: &Principal,
    key: &str,
) -> Result<SyncReport, FindingsError> {
    let feed = state
        .store
        .feeds()
        .await?
        .into_iter()
        .find(|f| f.name == key || f.id == key)
        .ok_or_else(|| {
            let shown: String = key.chars().take(64).collect();
            FindingsError::NotFound(format!("feed {shown:?} not found"))
        })?;
    Ok(intel::sync_feed(
        &state.store,
        &state.intel,
        &feed,
        &state.settings.feeds,
        &principal.actor(),
    )
    .await?)
}

/// Parses an inventory pushed for `hostname` and stores it with its findings.
pub async fn push_inventory(
    state: &AppState,
    principal: &Principal,
    hostname: &str,
    request: PushInventory,
) -> Result<PushReport, FindingsError> {
    // The CMDB's rule; the answer keeps the words this route has always used.
    let hostname = sluice_core::cmdb::parse_hostname(hostname).map_err(|_| {
        FindingsError::invalid("hostname", "a host name: letters, digits, '-', '.', '_'")
    })?;
    let packages = match request.format.as_str() {
        "dpkg-status" => dpkg::parse_status("content", &request.content),
        "rpm-qa" => rpm::parse_qa("content", &request.content),
        other => {
            return Err(FindingsError::invalid(
                "format",
                format!("unknown format {other:?}: dpkg-status or rpm-qa"),
            ));
        }
    }
    .map_err(|e| FindingsError::invalid("content", e.to_string()))?;
    let ecosystem: EcosystemKey = match (&request.ecosystem, &request.os_release) {
        (Some(name), _) => name
            .parse()
            .map_err(|e: sluice_core::ecosystem::EcosystemError| {
                FindingsError::invalid("ecosystem", e.to_string())
            })?,
        (None, Some(text)) => OsRelease::parse("os_release", text)
            .map_err(|e| FindingsError::invalid("os_release", e.to_string()))?
            .ecosystem()
            .map_err(|e| FindingsError::invalid("os_release", e.to_string()))?,
        (None, None) => {
            return Err(FindingsError::invalid(
                "os_release",
                "give os_release or ecosystem",
            ));
        }
    };
    let rpm_ecosystem = ecosystem.scheme() == sluice_core::version::Scheme::Rpm;
    if rpm_ecosystem != (request.format == "rpm-qa") {
        return Err(FindingsError::invalid(
            "format",
            format!("{} does not fit the ecosystem {ecosystem}", request.format),
        ));
    }
    ingest(
        state,
        hostname,
        ecosystem,
        packages,
        request.os_release.as_deref(),
        false,
        &principal.actor(),
    )
    .await
}

/// Stores a host's packages and its findings, scanned against the current index: the CMDB
/// asset is created or given its release, and inventory and findings land in one transaction.
/// Shared by operator pushes and agents.
pub async fn ingest(
    state: &AppState,
    hostname: String,
    ecosystem: EcosystemKey,
    packages: Vec<InstalledPackage>,
    os_release: Option<&str>,
    reboot_required: bool,
    actor: &Actor,
) -> Result<PushReport, FindingsError> {
    // A report that no package manager could have written stores nothing.
    sluice_core::inventory::check_packages(ecosystem.scheme(), &packages)
        .map_err(|e| FindingsError::invalid(&format!("packages[{}]", e.index), e.to_string()))?;
    let eco_name = ecosystem.osv_name();
    // The host appears in (or updates) the CMDB, with the release it runs.
    let mut asset = match state.store.asset(&hostname).await? {
        Some(asset) => asset,
        None => sluice_core::cmdb::Asset::new(&hostname)
            .map_err(|e| FindingsError::invalid("hostname", e.to_string()))?,
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

/// Which findings a filter picks, as the store takes it (page 0, size 0: the caller sets both).
pub async fn findings_query(
    state: &AppState,
    filter: &FindingFilter,
    deferrals: &[Deferral],
) -> Result<FindingsQuery, FindingsError> {
    let decisions = filter
        .decision
        .as_deref()
        .map(|text| {
            text.split(',')
                .map(|d| {
                    d.parse::<sluice_core::priority::Decision>()
                        .map(|d| d.as_str().to_owned())
                        .map_err(|e| FindingsError::invalid("decision", e))
                })
                .collect::<Result<Vec<_>, _>>()
        })
        .transpose()?;
    let resolved = match filter.status.as_deref().unwrap_or("open") {
        "open" => None,
        "resolved" => Some(true),
        "all" => Some(false),
        other => {
            return Err(FindingsError::invalid(
                "status",
                format!("{other:?}: open, resolved or all"),
            ));
        }
    };
    let mut hosts = filter.host.as_ref().map(|h| vec![h.to_ascii_lowercase()]);
    if let Some(text) = filter.selector.as_deref() {
        let selector: sluice_core::cmdb::selector::Selector =
            text.parse().map_err(|e: sluice_core::cmdb::CmdbError| {
                FindingsError::invalid("selector", e.to_string())
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
            return Err(FindingsError::invalid(
                "deferred",
                "a deferred finding is not due, so it is never overdue: ask for one or the other",
            ));
        }
        (Some(wanted), _) => Some(wanted),
        (None, true) => Some(false),
        (None, false) => None,
    };
    let covered =
        covered_wanted.map(|wanted| (wanted, governance::covered(deferrals, state.clock.now())));
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
pub async fn list(
    state: &AppState,
    filter: &FindingFilter,
) -> Result<FindingsListing, FindingsError> {
    let limit = filter.limit.unwrap_or(100);
    if !(1..=1000).contains(&limit) {
        return Err(FindingsError::invalid("limit", "from 1 to 1000"));
    }
    let offset = filter.offset.unwrap_or(0);
    if offset < 0 {
        return Err(FindingsError::invalid("offset", "0 or more"));
    }
    let deferrals = governance::live_deferrals(&state.store).await?;
    let query = FindingsQuery {
        limit,
        offset,
        ..findings_query(state, filter, &deferrals).await?
    };
    let page = state.store.findings(&query).await?;
    let now = state.clock.now();
    let items = page
        .items
        .into_iter()
        .map(|finding| {
            let standing = governance::finding_standing(&finding, &deferrals, now);
            (finding, standing)
        })
        .collect();
    Ok(FindingsListing {
        items,
        total: page.total,
        total_exact: page.total_exact,
        limit,
        offset,
    })
}

/// The store's feed kind for the wire's.
fn feed_kind(kind: sluice_protocol::findings::FeedKind) -> FeedKind {
    match kind {
        sluice_protocol::findings::FeedKind::Advisories => FeedKind::Advisories,
        sluice_protocol::findings::FeedKind::Kev => FeedKind::Kev,
        sluice_protocol::findings::FeedKind::Epss => FeedKind::Epss,
    }
}

/// The wire's account of what an ingest changed.
pub fn findings_diff(diff: FindingsDiff) -> sluice_protocol::findings::FindingsDiff {
    sluice_protocol::findings::FindingsDiff {
        opened: diff.opened,
        resolved: diff.resolved,
        updated: diff.updated,
        open: diff.open,
    }
}
