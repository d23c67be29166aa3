//! Vulnerability intelligence on the server: feeds synced into the store, the advisory index
//! rebuilt from the stored content, and findings recomputed when an inventory or a feed changes.
//!
//! Matching and prioritisation are `sluice-core`'s (`AdvisoryIndex`, `scan_host_memoized`); this module
//! only moves data between the store, the index and the network.

pub mod source;

use std::sync::Arc;

use sha2::{Digest, Sha256};
use sluice_core::advisory::{self, DetectedFormat, Epss, Kev, LoadedFeed};
use sluice_core::asset::AssetProfile;
use sluice_core::ecosystem::EcosystemKey;
use sluice_core::finding::{Finding, scan_host_memoized};
use sluice_core::inventory::InstalledPackage;
use sluice_core::matching::{AdvisoryIndex, MatchMemo};
use sluice_core::priority::PriorityPolicy;
use sluice_store::{Actor, Feed, FeedKind, FindingsDiff, Store, SyncOutcome};
use tokio::sync::{Mutex, RwLock};

use crate::settings::FeedPolicy;
use source::{FaultKind, SourceError};

/// What went wrong moving intelligence between the store, the index and the network.
#[derive(Debug, thiserror::Error)]
pub enum IntelError {
    /// The store failed, or refused a write.
    #[error(transparent)]
    Store(#[from] sluice_store::StoreError),
    /// A blocking task (parsing, matching) did not finish.
    #[error("background task: {0}")]
    Task(#[from] tokio::task::JoinError),
    /// A stored record no longer reads as what it was written as.
    #[error("{0}")]
    Corrupt(String),
}

/// The documented default due-date policy, parsed once.
static DEFAULT_POLICY: std::sync::LazyLock<PriorityPolicy> =
    std::sync::LazyLock::new(PriorityPolicy::default);

/// The compiled advisories and what they were built from.
pub struct Intel {
    /// The index.
    pub index: AdvisoryIndex,
    /// Content hashes of the feeds it was built from, sorted.
    pub built_from: Vec<String>,
    /// Matches remembered across hosts for this index (hosts share most package versions).
    pub memo: std::sync::Mutex<MatchMemo>,
}

/// Beyond this many remembered (package, version) pairs the memo starts afresh, bounding memory.
const MEMO_LIMIT: usize = 2_000_000;

/// Shared intelligence: the current index, and a lock that serialises rebuilds and recomputes.
#[derive(Clone)]
pub struct IntelHandle {
    current: Arc<RwLock<Arc<Intel>>>,
    work: Arc<Mutex<()>>,
}

impl Default for IntelHandle {
    fn default() -> Self {
        Self {
            current: Arc::new(RwLock::new(Arc::new(Intel {
                index: AdvisoryIndex::default(),
                built_from: Vec::new(),
                memo: Default::default(),
            }))),
            work: Arc::default(),
        }
    }
}

impl IntelHandle {
    /// The current index.
    pub async fn current(&self) -> Arc<Intel> {
        self.current.read().await.clone()
    }
}

/// SHA-256 hex of bytes.
pub fn sha256_hex(bytes: &[u8]) -> String {
    Sha256::digest(bytes)
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

/// Rebuilds the index from every feed's stored content.
pub async fn rebuild(store: &Store) -> Result<Intel, IntelError> {
    let contents = store.feed_contents().await?;
    let mut built_from: Vec<String> = contents
        .iter()
        .filter_map(|(f, _)| f.content_hash.clone())
        .collect();
    built_from.sort();
    let index = tokio::task::spawn_blocking(move || {
        let mut feed = LoadedFeed::default();
        let mut kev: Option<Kev> = None;
        let mut epss: Option<Epss> = None;
        for (meta, bytes) in &contents {
            match meta.kind {
                FeedKind::Advisories => {
                    if let Ok(loaded) = advisory::parse_feed(&meta.name, bytes) {
                        feed.extend(loaded);
                    }
                }
                FeedKind::Kev => kev = Kev::parse(&meta.name, bytes).ok(),
                FeedKind::Epss => epss = Epss::parse(&meta.name, bytes).ok(),
            }
        }
        AdvisoryIndex::build(feed.advisories, kev.as_ref(), epss.as_ref())
    })
    .await
    .map_err(IntelError::from)?;
    metrics::gauge!("sluice_advisories_loaded").set(index.advisories().len() as f64);
    Ok(Intel {
        index,
        built_from,
        memo: Default::default(),
    })
}

/// An error with its causes (reqwest's own message hides them: "error sending request" says
/// nothing of the certificate that was refused).
fn error_chain(error: &dyn std::error::Error) -> String {
    let mut text = error.to_string();
    let mut source = error.source();
    while let Some(cause) = source {
        let cause_text = cause.to_string();
        if !text.contains(&cause_text) {
            text.push_str(": ");
            text.push_str(&cause_text);
        }
        source = cause.source();
    }
    text
}

/// Checks that content is what the feed's kind says, returning (records, skipped). `name` is
/// the feed's (the parsers label their findings with it); `source` is named in the error. The
/// error says what was expected and where a parser stopped, never what it read: the core
/// parsers' own messages may quote a line of the input, and the input may be anything.
pub fn validate(
    kind: FeedKind,
    name: &str,
    source: &str,
    bytes: &[u8],
) -> Result<(i64, i64), SourceError> {
    let counts = validate_records(kind, name, source, bytes)?;
    match counts {
        // Nothing in it is a record of the kind: it is some other JSON or CSV (a credentials
        // file in a feed directory, say), and is not stored.
        (0, skipped) if skipped > 0 => Err(SourceError::new(
            FaultKind::NotAFeed,
            format!(
                "not a recognised feed format at {source}: none of its {skipped} records is valid"
            ),
        )),
        counts => Ok(counts),
    }
}

fn validate_records(
    kind: FeedKind,
    name: &str,
    source: &str,
    bytes: &[u8],
) -> Result<(i64, i64), SourceError> {
    let count = |n: usize| i64::try_from(n).unwrap_or(i64::MAX);
    let not_a_feed = |expected: &str, reason: Option<&str>| {
        SourceError::new(
            FaultKind::NotAFeed,
            format!(
                "not a recognised feed format at {source}: expected {expected}{}",
                reason.map(position).unwrap_or_default()
            ),
        )
    };
    match kind {
        FeedKind::Advisories => match advisory::detect(name, bytes) {
            Err(_) => Err(not_a_feed(
                "OSV JSON, an OSV zip, or a Debian DSA/DLA list",
                None,
            )),
            Ok(DetectedFormat::Kev) => Err(SourceError::new(
                FaultKind::NotAFeed,
                format!(
                    "{source} holds the CISA KEV catalog, not advisories: register it with kind kev"
                ),
            )),
            Ok(DetectedFormat::Epss) => Err(SourceError::new(
                FaultKind::NotAFeed,
                format!(
                    "{source} holds FIRST EPSS scores, not advisories: register it with kind epss"
                ),
            )),
            Ok(format) => advisory::parse_feed(name, bytes)
                .map(|f| (count(f.advisories.len()), count(f.issues.len())))
                .map_err(|e| {
                    let expected = match format {
                        DetectedFormat::OsvZip => "an OSV zip",
                        DetectedFormat::DebianDsa | DetectedFormat::DebianDla => {
                            "a Debian DSA/DLA list"
                        }
                        _ => "OSV JSON",
                    };
                    not_a_feed(expected, Some(&e.reason))
                }),
        },
        FeedKind::Kev => Kev::parse(name, bytes)
            .map(|k| (count(k.len()), count(k.issues.len())))
            .map_err(|e| not_a_feed("the CISA KEV catalog (JSON or CSV)", Some(&e.reason))),
        FeedKind::Epss => Epss::parse(name, bytes)
            .map(|e| (count(e.len()), count(e.issues.len())))
            .map_err(|e| not_a_feed("a FIRST EPSS CSV", Some(&e.reason))),
    }
}

/// Where a parser stopped, from its message: the numbers after "line" and "column", nothing
/// else of it.
fn position(reason: &str) -> String {
    let number_after = |text: &str, at: usize| -> Option<u64> {
        let digits: String = text[at..]
            .chars()
            .take_while(char::is_ascii_digit)
            .collect();
        digits.parse().ok()
    };
    let Some(line_at) = reason
        .rfind(" at line ")
        .map(|at| at + " at line ".len())
        .or_else(|| reason.find("line ").map(|at| at + "line ".len()))
    else {
        return String::new();
    };
    let Some(line) = number_after(reason, line_at) else {
        return String::new();
    };
    let column = reason[line_at..]
        .find(" column ")
        .and_then(|at| number_after(reason, line_at + at + " column ".len()));
    match column {
        Some(column) => format!(" (stopped at line {line}, column {column})"),
        None => format!(" (stopped at line {line})"),
    }
}

/// What a sync did (the API answers it as `sluice_protocol::findings::FeedSyncReport`).
#[derive(Clone, Debug)]
pub struct SyncReport {
    /// The feed after the sync.
    pub feed: Feed,
    /// Totals of the findings recomputed, when the content changed.
    pub findings: Option<FindingsDiff>,
}

/// The recorded outcome of a sync that failed: the kind alone goes to the audit chain.
fn failed(error: SourceError) -> SyncOutcome {
    SyncOutcome::Failed {
        reason: error.kind.as_str().to_owned(),
        error: error.to_string(),
    }
}

/// Syncs one feed: fetch (within the policy), validate, store when new; then rebuild the index
/// and recompute every host's findings. A failed fetch or parse is recorded and leaves the
/// stored content as it was.
pub async fn sync_feed(
    store: &Store,
    intel: &IntelHandle,
    feed: &Feed,
    policy: &FeedPolicy,
    actor: &Actor,
) -> Result<SyncReport, IntelError> {
    let _guard = intel.work.lock().await;
    let outcome = match source::fetch(&feed.source, policy).await {
        Err(error) => failed(error),
        Ok(bytes) => {
            let hash = sha256_hex(&bytes);
            if feed.content_hash.as_deref() == Some(hash.as_str()) {
                SyncOutcome::Unchanged
            } else {
                let kind = feed.kind;
                let (name, source) = (feed.name.clone(), feed.source.clone());
                let checked = tokio::task::spawn_blocking(move || {
                    let result = validate(kind, &name, &source, &bytes);
                    (bytes, result)
                })
                .await
                .map_err(IntelError::from)?;
                match checked {
                    (_, Err(error)) => failed(error),
                    (content, Ok((records, skipped))) => SyncOutcome::Updated {
                        content,
                        hash,
                        records,
                        skipped,
                    },
                }
            }
        }
    };
    let updated = matches!(outcome, SyncOutcome::Updated { .. });
    let label = match &outcome {
        SyncOutcome::Updated { .. } => "updated",
        SyncOutcome::Unchanged => "unchanged",
        SyncOutcome::Failed { .. } => "failed",
    };
    metrics::counter!("sluice_feed_syncs_total", "feed" => feed.name.clone(), "outcome" => label)
        .increment(1);
    if label != "failed" {
        metrics::gauge!("sluice_feed_last_success_timestamp_seconds", "feed" => feed.name.clone())
            .set(jiff::Timestamp::now().as_second() as f64);
    }
    let feed = store.record_feed_sync(&feed.id, outcome, actor).await?;
    let findings = if updated {
        let rebuilt = rebuild(store).await?;
        *intel.current.write().await = Arc::new(rebuilt);
        Some(recompute_all_locked(store, intel, actor).await?)
    } else {
        None
    };
    Ok(SyncReport { feed, findings })
}

/// The asset profile that prioritises a host's findings.
///
/// A host without a CMDB record is prioritised as the documented default asset (criticality 3,
/// internal, no regulated data).
pub async fn asset_profile(store: &Store, hostname: &str) -> Result<AssetProfile, IntelError> {
    Ok(store
        .asset(hostname)
        .await?
        .map(|asset| asset.profile())
        .unwrap_or_default())
}

/// Today in UTC: the day new findings count from.
pub fn today() -> jiff::civil::Date {
    jiff::Timestamp::now()
        .to_zoned(jiff::tz::TimeZone::UTC)
        .date()
}

/// Matches and prioritises one host's packages against the current index (on a blocking
/// thread: it is CPU work), through the index's cross-host memo.
pub async fn scan(
    intel: &IntelHandle,
    profile: AssetProfile,
    ecosystem: &EcosystemKey,
    packages: Vec<InstalledPackage>,
    today: jiff::civil::Date,
) -> Result<Vec<Finding>, IntelError> {
    let current = intel.current().await;
    let eco = ecosystem.clone();
    tokio::task::spawn_blocking(move || {
        let mut memo = current.memo.lock().unwrap_or_else(|e| e.into_inner());
        if memo.len() > MEMO_LIMIT {
            memo.clear();
        }
        scan_host_memoized(
            &current.index,
            &mut memo,
            &eco,
            &packages,
            &profile,
            &DEFAULT_POLICY,
            today,
        )
        .0
    })
    .await
    .map_err(IntelError::from)
}

/// Recomputes one host's findings from its packages and applies them.
pub async fn recompute_host(
    store: &Store,
    intel: &IntelHandle,
    hostname: &str,
    ecosystem: &EcosystemKey,
    packages: Vec<InstalledPackage>,
    actor: &Actor,
) -> Result<FindingsDiff, IntelError> {
    let profile = asset_profile(store, hostname).await?;
    let today = today();
    let findings = scan(intel, profile, ecosystem, packages, today).await?;
    Ok(store
        .apply_findings(hostname, &findings, today, actor)
        .await?)
}

/// Recomputes a host's findings from its stored inventory (after its asset record changed, say).
/// Returns `None` when the host has no inventory.
pub async fn recompute_stored_host(
    store: &Store,
    intel: &IntelHandle,
    hostname: &str,
    actor: &Actor,
) -> Result<Option<FindingsDiff>, IntelError> {
    let Some((inventory, packages)) = store.inventory(hostname).await? else {
        return Ok(None);
    };
    let ecosystem: EcosystemKey = inventory
        .ecosystem
        .parse()
        .map_err(|e| IntelError::Corrupt(format!("stored ecosystem of {hostname}: {e}")))?;
    recompute_host(store, intel, hostname, &ecosystem, packages, actor)
        .await
        .map(Some)
}

async fn recompute_all_locked(
    store: &Store,
    intel: &IntelHandle,
    actor: &Actor,
) -> Result<FindingsDiff, IntelError> {
    let inventories = store.inventories().await?;
    let packages = store.packages_by_id().await?;
    let mut total = FindingsDiff::default();
    for inventory in inventories {
        let Ok(ecosystem) = inventory.ecosystem.parse::<EcosystemKey>() else {
            continue;
        };
        let host_packages: Vec<InstalledPackage> = inventory
            .package_ids
            .iter()
            .filter_map(|id| packages.get(id).cloned())
            .collect();
        let diff = recompute_host(
            store,
            intel,
            &inventory.hostname,
            &ecosystem,
            host_packages,
            actor,
        )
        .await?;
        total.opened += diff.opened;
        total.resolved += diff.resolved;
        total.updated += diff.updated;
        total.open += diff.open;
    }
    Ok(total)
}

/// Loads the index at start-up.
pub async fn load(store: &Store, intel: &IntelHandle) -> Result<(), IntelError> {
    let rebuilt = rebuild(store).await?;
    *intel.current.write().await = Arc::new(rebuilt);
    Ok(())
}

/// Syncs the feeds whose interval has passed; also picks up content another replica stored.
pub async fn scheduled(
    store: &Store,
    intel: &IntelHandle,
    policy: &FeedPolicy,
) -> Result<(), IntelError> {
    let feeds = store.feeds().await?;
    let now = jiff::Timestamp::now();
    for feed in &feeds {
        let Some(interval) = feed.interval_seconds else {
            continue;
        };
        let due = match feed
            .last_sync_at
            .as_deref()
            .and_then(|t| t.parse::<jiff::Timestamp>().ok())
        {
            None => true,
            Some(last) => now.duration_since(last).as_secs() >= interval,
        };
        if due {
            sync_feed(store, intel, feed, policy, &Actor::system()).await?;
        }
    }
    let mut stored: Vec<String> = store
        .feeds()
        .await?
        .into_iter()
        .filter_map(|f| f.content_hash)
        .collect();
    stored.sort();
    if intel.current().await.built_from != stored {
        load(store, intel).await?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parse_errors_never_quote_the_content() {
        let secret = "SLUICE_ADMIN_PASSWORD=hunter2";
        for (kind, content) in [
            (FeedKind::Advisories, format!("{secret}\n")),
            (FeedKind::Advisories, format!("[{{\"id\": {secret}}}]")),
            (FeedKind::Epss, format!("{secret},0.1\n")),
            (
                FeedKind::Kev,
                format!("{{\"catalogVersion\": \"1\", \"vulnerabilities\": \"{secret}\"}}"),
            ),
            (FeedKind::Kev, format!("cveID,vendorProject\n\"{secret}")),
        ] {
            let error = validate(kind, "feed", "/srv/feeds/x", content.as_bytes()).unwrap_err();
            assert_eq!(error.kind, FaultKind::NotAFeed);
            let shown = error.to_string();
            assert!(!shown.contains("hunter2"), "{shown}");
            assert!(shown.starts_with("not-a-feed: "), "{shown}");
            assert!(shown.contains("/srv/feeds/x"), "{shown}");
        }
    }

    #[test]
    fn positions_keep_numbers_only() {
        assert_eq!(
            position("invalid type: string \"line 9\", expected a sequence at line 1 column 52"),
            " (stopped at line 1, column 52)"
        );
        assert_eq!(
            position("line 3 should be the header \"cve,epss,percentile\", got \"x\""),
            " (stopped at line 3)"
        );
        assert_eq!(position("no header line"), "");
    }
}
