//! Feeds, inventories and findings.
//!
//! - A feed's last good content is stored as fetched, so every replica rebuilds the same advisory
//!   index from the database, and a failed sync leaves the previous content in place.
//! - Inventories share packages: each distinct (ecosystem, name, version, arch, source) is stored
//!   once and a host's inventory is the list of their ids; a per-process cache makes the common
//!   case (a package some other host already reported) free.
//! - Findings are derived state with history: an open finding is unique per (host, package,
//!   advisory); when it disappears it is resolved (resolved_at), never deleted, so first-seen and
//!   resolution times feed MTTR and SLA reports.

use std::collections::HashMap;
use std::fmt::Write as _;

use jiff::civil::Date;
use serde::{Deserialize, Serialize};
use sluice_core::finding::Finding;
use sluice_core::inventory::InstalledPackage;
use sqlx::{AssertSqlSafe, Row};

use crate::audit::append_audit;
use crate::record::audit_value;
use crate::{Actor, PackageKey, Result, Store, StoreError, begin_write, now, on_pool};

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

impl FeedKind {
    /// The stored name.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Advisories => "advisories",
            Self::Kev => "kev",
            Self::Epss => "epss",
        }
    }

    fn parse(text: &str) -> Result<Self> {
        match text {
            "advisories" => Ok(Self::Advisories),
            "kev" => Ok(Self::Kev),
            "epss" => Ok(Self::Epss),
            other => Err(StoreError::Corrupt(format!("unknown feed kind {other:?}"))),
        }
    }
}

/// A registered feed.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Feed {
    /// Id.
    pub id: String,
    /// Unique name.
    pub name: String,
    /// What it provides.
    pub kind: FeedKind,
    /// A path on the server or an http(s) URL.
    pub source: String,
    /// Seconds between scheduled syncs; `None` syncs on demand only.
    pub interval_seconds: Option<i64>,
    /// Registered.
    pub created_at: String,
    /// Last sync attempt.
    pub last_sync_at: Option<String>,
    /// `ok`, `unchanged` or `error`.
    pub last_status: Option<String>,
    /// The last error, when the last sync failed.
    pub last_error: Option<String>,
    /// SHA-256 of the stored content.
    pub content_hash: Option<String>,
    /// Records loaded from the stored content.
    pub records: i64,
    /// Records skipped as malformed.
    pub skipped: i64,
}

/// A feed to register.
#[derive(Clone, Debug)]
pub struct NewFeed {
    /// Unique name.
    pub name: String,
    /// What it provides.
    pub kind: FeedKind,
    /// Path or URL.
    pub source: String,
    /// Seconds between scheduled syncs.
    pub interval_seconds: Option<i64>,
}

/// The outcome of one sync, to record.
#[derive(Clone, Debug)]
pub enum SyncOutcome {
    /// New content that parsed.
    Updated {
        /// The content as fetched.
        content: Vec<u8>,
        /// Its SHA-256.
        hash: String,
        /// Records loaded.
        records: i64,
        /// Records skipped.
        skipped: i64,
    },
    /// The same content as stored.
    Unchanged,
    /// The fetch or the parse failed; the stored content stays.
    Failed {
        /// The kind of failure (`not-allowed`, `too-large`, `not-a-feed`, `unreachable`): the
        /// only part of it written to the audit chain, which is kept forever.
        reason: String,
        /// What and where, for the feed's `last_error` (replaced by the next sync). It must
        /// never quote the content read.
        error: String,
    },
}

/// A host's stored inventory.
#[derive(Clone, Debug, PartialEq)]
pub struct StoredInventory {
    /// Host.
    pub hostname: String,
    /// OSV ecosystem name.
    pub ecosystem: String,
    /// Package ids.
    pub package_ids: Vec<i64>,
    /// Hash of the package list, to tell changes.
    pub package_hash: String,
    /// When it arrived.
    pub received_at: String,
    /// A reboot was pending when it was taken.
    pub reboot_required: bool,
}

/// What applying a host's current findings changed.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
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

/// A stored finding.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct StoredFinding {
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

/// Matches are counted up to this many; past it the total is a lower bound.
pub const COUNT_CAP: i64 = 10_000;

/// A page of findings.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct FindingsPage {
    /// Findings, highest priority first.
    pub items: Vec<StoredFinding>,
    /// How many match, at most [`COUNT_CAP`].
    pub total: i64,
    /// `false` when more than [`COUNT_CAP`] match (then `total` is a lower bound).
    pub total_exact: bool,
}

/// Which findings to list.
#[derive(Clone, Debug, Default)]
pub struct FindingsQuery {
    /// Only these hosts (a resolved selector); `None` for all.
    pub hosts: Option<Vec<String>>,
    /// Only these SSVC decisions.
    pub decisions: Option<Vec<String>>,
    /// Only KEV-listed (or only not).
    pub kev: Option<bool>,
    /// Only open findings due before this date.
    pub overdue_on: Option<Date>,
    /// Include resolved findings (`Some(true)`: only resolved; `None`: open only).
    pub resolved: Option<bool>,
    /// Only findings these active deferrals cover (`true`), or only those they do not (`false`).
    pub covered: Option<(bool, Covered)>,
    /// Page size.
    pub limit: i64,
    /// Page start.
    pub offset: i64,
}

/// What active deferrals cover: findings by id, and packages on hosts (the finding's binary
/// package). Which records are active is `sluice_core::deferral`'s to say; the server passes the
/// result here.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Covered {
    /// Finding ids.
    pub ids: Vec<i64>,
    /// (host, package) pairs.
    pub host_packages: Vec<(String, String)>,
}

/// Writes a package's identity into `buf` as one string (fields joined by U+001F, which no
/// package field may contain), so cache lookups need no allocation per package.
pub(crate) fn cache_key(buf: &mut String, ecosystem: &str, p: &InstalledPackage) {
    buf.clear();
    for field in [
        ecosystem,
        &p.name,
        &p.version,
        p.arch.as_deref().unwrap_or_default(),
        &p.source_name,
        &p.source_version,
    ] {
        buf.push_str(field);
        buf.push('\u{1f}');
    }
}

fn package_key(ecosystem: &str, p: &InstalledPackage) -> PackageKey {
    (
        ecosystem.to_owned(),
        p.name.clone(),
        p.version.clone(),
        p.arch.clone().unwrap_or_default(),
        p.source_name.clone(),
        p.source_version.clone(),
    )
}

macro_rules! package_from_row {
    ($row:expr) => {{
        let row = $row;
        let arch: String = row.try_get("arch")?;
        InstalledPackage {
            name: row.try_get("name")?,
            version: row.try_get("version")?,
            arch: (!arch.is_empty()).then_some(arch),
            source_name: row.try_get("source_name")?,
            source_version: row.try_get("source_version")?,
        }
    }};
}

macro_rules! inventory_from_row {
    ($row:expr) => {{
        let row = $row;
        let ids: String = row.try_get("package_ids")?;
        StoredInventory {
            hostname: row.try_get("hostname")?,
            ecosystem: row.try_get("ecosystem")?,
            package_ids: serde_json::from_str(&ids)
                .map_err(|e| StoreError::Corrupt(format!("package ids: {e}")))?,
            package_hash: row.try_get("package_hash")?,
            received_at: row.try_get("received_at")?,
            reboot_required: row.try_get("reboot_required")?,
        }
    }};
}

macro_rules! feed_from_row {
    ($row:expr) => {{
        let row = $row;
        let kind: String = row.try_get("kind")?;
        Feed {
            id: row.try_get("id")?,
            name: row.try_get("name")?,
            kind: FeedKind::parse(&kind)?,
            source: row.try_get("source")?,
            interval_seconds: row.try_get("interval_seconds")?,
            created_at: row.try_get("created_at")?,
            last_sync_at: row.try_get("last_sync_at")?,
            last_status: row.try_get("last_status")?,
            last_error: row.try_get("last_error")?,
            content_hash: row.try_get("content_hash")?,
            records: row.try_get("records")?,
            skipped: row.try_get("skipped")?,
        }
    }};
}

/// Rows per multi-row insert (11 parameters each, well under both backends' limits).
const INSERT_BATCH: usize = 200;

const FEED_COLUMNS: &str = "id, name, kind, source, interval_seconds, created_at, last_sync_at, last_status, last_error, content_hash, records, skipped";

/// A host's inventory as stored: package ids (see [`Store::package_ids`]) and their hash.
#[derive(Clone, Copy, Debug)]
pub struct InventoryWrite<'a> {
    /// Host name.
    pub hostname: &'a str,
    /// OSV ecosystem name.
    pub ecosystem: &'a str,
    /// Package ids, in inventory order.
    pub package_ids: &'a [i64],
    /// Hash of the sorted ids: an unchanged hash means an unchanged package list.
    pub package_hash: &'a str,
    /// The os-release text, when sent.
    pub os_release: Option<&'a str>,
    /// A reboot is pending on the host (what a rollout's `pending-reboot` waits on).
    pub reboot_required: bool,
}

/// Writes a host's inventory inside the transaction `$tx`; evaluates to whether it changed and
/// the audit event to append. One body for [`Store::save_inventory`] and [`Store::save_scan`].
/// Callers append the events last: on PostgreSQL the audit head stays locked from the append to
/// the commit, so appending last keeps concurrent writers from queueing behind the whole write.
macro_rules! write_inventory {
    ($tx:ident, $inv:expr, $at:expr, $actor:expr) => {{
        let tx = &mut $tx;
        let inv: &InventoryWrite<'_> = $inv;
        let (hostname, ecosystem, package_ids, package_hash, os_release, reboot_required) = (
            inv.hostname,
            inv.ecosystem,
            inv.package_ids,
            inv.package_hash,
            inv.os_release,
            inv.reboot_required,
        );
        let ids_text = serde_json::to_string(package_ids)
            .map_err(|e| StoreError::Corrupt(e.to_string()))?;
        let at: &String = $at;
        let actor: &Actor = $actor;
        let before =
            sqlx::query("SELECT ecosystem, package_hash FROM inventories WHERE hostname = $1")
                .bind(hostname)
                .fetch_optional(&mut **tx)
                .await?;
        let previous: Option<(String, String)> = match &before {
            Some(row) => Some((row.try_get("ecosystem")?, row.try_get("package_hash")?)),
            None => None,
        };
        let changed = previous
            .as_ref()
            .is_none_or(|(eco, hash)| eco != ecosystem || hash != package_hash);
        if previous.is_some() {
            sqlx::query(
                "UPDATE inventories SET ecosystem = $1, package_ids = $2, package_hash = $3, os_release = $4, received_at = $5, reboot_required = $6 WHERE hostname = $7",
            )
            .bind(ecosystem)
            .bind(&ids_text)
            .bind(package_hash)
            .bind(os_release)
            .bind(&at)
            .bind(reboot_required)
            .bind(hostname)
            .execute(&mut **tx)
            .await?;
        } else {
            sqlx::query(
                "INSERT INTO inventories (hostname, ecosystem, package_ids, package_hash, os_release, received_at, reboot_required) VALUES ($1, $2, $3, $4, $5, $6, $7)",
            )
            .bind(hostname)
            .bind(ecosystem)
            .bind(&ids_text)
            .bind(package_hash)
            .bind(os_release)
            .bind(&at)
            .bind(reboot_required)
            .execute(&mut **tx)
            .await?;
        }
        let event = changed.then(|| actor.event("inventory.update", format!("host:{hostname}"), previous.map(|(eco, hash)| serde_json::json!({"ecosystem": eco, "package_hash": hash})), Some(serde_json::json!({"ecosystem": ecosystem, "package_hash": package_hash, "packages": package_ids.len()}))));
        (changed, event)
    }};
}

/// Applies a host's current findings inside the transaction `$tx`; evaluates to the diff and the
/// audit event to append. One body for [`Store::apply_findings`] and [`Store::save_scan`].
macro_rules! write_findings {
    ($tx:ident, $pg:ident, $hostname:expr, $current:expr, $detected:expr, $at:expr, $actor:expr) => {{
        let tx = &mut $tx;
        let pg = $pg;
        let hostname: &str = $hostname;
        let current: &[Finding] = $current;
        let detected: Date = $detected;
        let at: &String = $at;
        let actor: &Actor = $actor;
        let rows = sqlx::query(
            "SELECT id, package, advisory, record, first_seen FROM findings WHERE hostname = $1 AND resolved_at IS NULL",
        )
        .bind(hostname)
        .fetch_all(&mut **tx)
        .await?;
        let mut open: HashMap<(String, String), (i64, String, String)> =
            HashMap::with_capacity(rows.len());
        for row in &rows {
            open.insert(
                (row.try_get("package")?, row.try_get("advisory")?),
                (
                    row.try_get("id")?,
                    row.try_get("record")?,
                    row.try_get("first_seen")?,
                ),
            );
        }
        let mut diff = FindingsDiff::default();
        let mut fresh: Vec<(&Finding, String)> = Vec::new();
        for finding in current {
            let key = (finding.package.clone(), finding.advisory.clone());
            let offset = finding
                .due
                .since(detected)
                .map(|s| s.get_days())
                .unwrap_or(0);
            match open.remove(&key) {
                Some((id, record, first_seen)) => {
                    let mut kept = finding.clone();
                    let seen = first_seen
                        .get(..10)
                        .and_then(|d| d.parse::<Date>().ok())
                        .unwrap_or(detected);
                    kept.due = seen
                        .checked_add(jiff::Span::new().days(offset))
                        .unwrap_or(finding.due);
                    let text = serde_json::to_string(&kept)
                        .map_err(|e| StoreError::Corrupt(e.to_string()))?;
                    if text != record {
                        sqlx::query(
                            "UPDATE findings SET installed = $1, fixed = $2, decision = $3, score = $4, due = $5, kev = $6, record = $7 WHERE id = $8",
                        )
                        .bind(&kept.installed)
                        .bind(&kept.fixed)
                        .bind(kept.decision.as_str())
                        .bind(kept.score)
                        .bind(kept.due.to_string())
                        .bind(kept.kev)
                        .bind(&text)
                        .bind(id)
                        .execute(&mut **tx)
                        .await?;
                        diff.updated += 1;
                    }
                }
                None => {
                    let text = serde_json::to_string(finding)
                        .map_err(|e| StoreError::Corrupt(e.to_string()))?;
                    fresh.push((finding, text));
                }
            }
        }
        // New findings go in as multi-row inserts: one statement per batch, not per row.
        for batch in fresh.chunks(INSERT_BATCH) {
            let mut sql = String::from(
                "INSERT INTO findings (hostname, package, advisory, installed, fixed, decision, score, due, kev, record, first_seen) VALUES ",
            );
            for row in 0..batch.len() {
                let base = row * 11;
                if row > 0 {
                    sql.push_str(", ");
                }
                // SQLite looks a numbered parameter's name up by a linear scan, so many
                // `$N` in one statement cost quadratic time there; anonymous `?` do not.
                sql.push('(');
                for i in 1..=11 {
                    if i > 1 {
                        sql.push_str(", ");
                    }
                    if pg {
                        let _ = write!(sql, "${}", base + i);
                    } else {
                        sql.push('?');
                    }
                }
                sql.push(')');
            }
            let mut query = sqlx::query(AssertSqlSafe(sql));
            for (finding, text) in batch {
                query = query
                    .bind(hostname)
                    .bind(&finding.package)
                    .bind(&finding.advisory)
                    .bind(&finding.installed)
                    .bind(&finding.fixed)
                    .bind(finding.decision.as_str())
                    .bind(finding.score)
                    .bind(finding.due.to_string())
                    .bind(finding.kev)
                    .bind(text)
                    .bind(&at);
            }
            query.execute(&mut **tx).await?;
            diff.opened += batch.len() as u64;
        }
        for (_, (id, _, _)) in open {
            sqlx::query("UPDATE findings SET resolved_at = $1 WHERE id = $2")
                .bind(&at)
                .bind(id)
                .execute(&mut **tx)
                .await?;
            diff.resolved += 1;
        }
        diff.open = current.len() as u64;
        let event = if diff.opened > 0 || diff.resolved > 0 {
            Some(actor.event(
                "findings.update",
                format!("host:{hostname}"),
                None,
                Some(audit_value("findings diff", &diff)?),
            ))
        } else {
            None
        };
        (diff, event)
    }};
}

/// Above this many hosts, a findings page walks the score index instead of each host's findings.
const MANY_HOSTS: usize = 200;

impl Store {
    /// Registers a feed; audited as `feed.create`.
    pub async fn create_feed(&self, feed: NewFeed, actor: &Actor) -> Result<Feed> {
        let created = Feed {
            id: crate::accounts::new_id(),
            name: feed.name,
            kind: feed.kind,
            source: feed.source,
            interval_seconds: feed.interval_seconds,
            created_at: now(),
            last_sync_at: None,
            last_status: None,
            last_error: None,
            content_hash: None,
            records: 0,
            skipped: 0,
        };
        on_pool!(self, |pool, pg| {
            let mut tx = begin_write!(pool, pg);
            let taken = sqlx::query("SELECT 1 FROM feeds WHERE name = $1")
                .bind(&created.name)
                .fetch_optional(&mut *tx)
                .await?;
            if taken.is_some() {
                return Err(StoreError::Conflict(format!(
                    "a feed named {:?} exists",
                    created.name
                )));
            }
            sqlx::query(
                "INSERT INTO feeds (id, name, kind, source, interval_seconds, created_at) VALUES ($1, $2, $3, $4, $5, $6)",
            )
            .bind(&created.id)
            .bind(&created.name)
            .bind(created.kind.as_str())
            .bind(&created.source)
            .bind(created.interval_seconds)
            .bind(&created.created_at)
            .execute(&mut *tx)
            .await?;
            append_audit!(
                tx,
                pg,
                actor.event(
                    "feed.create",
                    format!("feed:{}", created.name),
                    None,
                    Some(audit_value("feed", &created)?)
                )
            );
            tx.commit().await?;
            Ok(created)
        })
    }

    /// All feeds, by name.
    pub async fn feeds(&self) -> Result<Vec<Feed>> {
        on_pool!(self, |pool, pg| {
            let sql = AssertSqlSafe(format!("SELECT {FEED_COLUMNS} FROM feeds ORDER BY name"));
            let rows = sqlx::query(sql).fetch_all(pool).await?;
            let mut feeds = Vec::with_capacity(rows.len());
            for row in &rows {
                feeds.push(feed_from_row!(row));
            }
            Ok(feeds)
        })
    }

    /// The stored content of every feed that has some, with the feed.
    pub async fn feed_contents(&self) -> Result<Vec<(Feed, Vec<u8>)>> {
        let feeds = self.feeds().await?;
        let mut result = Vec::new();
        for feed in feeds {
            let content: Option<Vec<u8>> = on_pool!(self, |pool, pg| {
                let row = sqlx::query("SELECT content FROM feed_content WHERE feed_id = $1")
                    .bind(&feed.id)
                    .fetch_optional(pool)
                    .await?;
                match row {
                    Some(row) => Some(row.try_get::<Vec<u8>, _>("content")?),
                    None => None,
                }
            });
            if let Some(content) = content {
                result.push((feed, content));
            }
        }
        Ok(result)
    }

    /// Records a sync attempt; audited as `feed.sync`. Only `Updated` replaces the content.
    pub async fn record_feed_sync(
        &self,
        feed_id: &str,
        outcome: SyncOutcome,
        actor: &Actor,
    ) -> Result<Feed> {
        let at = now();
        on_pool!(self, |pool, pg| {
            let mut tx = begin_write!(pool, pg);
            let (status, error, summary) = match &outcome {
                SyncOutcome::Updated {
                    content,
                    hash,
                    records,
                    skipped,
                } => {
                    let updated = sqlx::query(
                        "UPDATE feed_content SET content = $1, fetched_at = $2 WHERE feed_id = $3",
                    )
                    .bind(content)
                    .bind(&at)
                    .bind(feed_id)
                    .execute(&mut *tx)
                    .await?;
                    if updated.rows_affected() == 0 {
                        sqlx::query("INSERT INTO feed_content (feed_id, content, fetched_at) VALUES ($1, $2, $3)")
                            .bind(feed_id)
                            .bind(content)
                            .bind(&at)
                            .execute(&mut *tx)
                            .await?;
                    }
                    sqlx::query("UPDATE feeds SET content_hash = $1, records = $2, skipped = $3 WHERE id = $4")
                        .bind(hash)
                        .bind(records)
                        .bind(skipped)
                        .bind(feed_id)
                        .execute(&mut *tx)
                        .await?;
                    (
                        "ok",
                        None,
                        serde_json::json!({"status": "ok", "content_hash": hash, "records": records, "skipped": skipped}),
                    )
                }
                SyncOutcome::Unchanged => (
                    "unchanged",
                    None,
                    serde_json::json!({"status": "unchanged"}),
                ),
                SyncOutcome::Failed { reason, error } => (
                    "error",
                    Some(error.clone()),
                    serde_json::json!({"status": "error", "reason": reason}),
                ),
            };
            let updated = sqlx::query("UPDATE feeds SET last_sync_at = $1, last_status = $2, last_error = $3 WHERE id = $4")
                .bind(&at)
                .bind(status)
                .bind(&error)
                .bind(feed_id)
                .execute(&mut *tx)
                .await?;
            if updated.rows_affected() == 0 {
                return Err(StoreError::NotFound(format!("feed {feed_id}")));
            }
            let sql = AssertSqlSafe(format!("SELECT {FEED_COLUMNS} FROM feeds WHERE id = $1"));
            let row = sqlx::query(sql).bind(feed_id).fetch_one(&mut *tx).await?;
            let feed = feed_from_row!(&row);
            append_audit!(
                tx,
                pg,
                actor.event(
                    "feed.sync",
                    format!("feed:{}", feed.name),
                    None,
                    Some(summary)
                )
            );
            tx.commit().await?;
            Ok(feed)
        })
    }

    /// Ids of these packages in the package table, adding those not seen before.
    pub async fn package_ids(
        &self,
        ecosystem: &str,
        packages: &[InstalledPackage],
    ) -> Result<Vec<i64>> {
        let mut ids = vec![0i64; packages.len()];
        let mut missing = Vec::new();
        {
            let cache = self.package_cache.lock().unwrap_or_else(|e| e.into_inner());
            let mut key = String::new();
            for (i, p) in packages.iter().enumerate() {
                cache_key(&mut key, ecosystem, p);
                match cache.get(key.as_str()) {
                    Some(id) => ids[i] = *id,
                    None => missing.push(i),
                }
            }
        }
        if missing.is_empty() {
            return Ok(ids);
        }
        let found: Vec<(usize, i64)> = on_pool!(self, |pool, pg| {
            let mut tx = pool.begin().await?;
            let mut found = Vec::with_capacity(missing.len());
            for &i in &missing {
                let p = &packages[i];
                let key = package_key(ecosystem, p);
                sqlx::query(
                    "INSERT INTO packages (ecosystem, name, version, arch, source_name, source_version) \
                     VALUES ($1, $2, $3, $4, $5, $6) ON CONFLICT DO NOTHING",
                )
                .bind(&key.0)
                .bind(&key.1)
                .bind(&key.2)
                .bind(&key.3)
                .bind(&key.4)
                .bind(&key.5)
                .execute(&mut *tx)
                .await?;
                let row = sqlx::query(
                    "SELECT id FROM packages WHERE ecosystem = $1 AND name = $2 AND version = $3 AND arch = $4 \
                     AND source_name = $5 AND source_version = $6",
                )
                .bind(&key.0)
                .bind(&key.1)
                .bind(&key.2)
                .bind(&key.3)
                .bind(&key.4)
                .bind(&key.5)
                .fetch_one(&mut *tx)
                .await?;
                found.push((i, row.try_get::<i64, _>("id")?));
            }
            tx.commit().await?;
            found
        });
        let mut cache = self.package_cache.lock().unwrap_or_else(|e| e.into_inner());
        for (i, id) in found {
            ids[i] = id;
            let mut key = String::new();
            cache_key(&mut key, ecosystem, &packages[i]);
            cache.insert(key, id);
        }
        Ok(ids)
    }

    /// Every stored package by id.
    pub async fn packages_by_id(&self) -> Result<HashMap<i64, InstalledPackage>> {
        on_pool!(self, |pool, pg| {
            let rows = sqlx::query(
                "SELECT id, name, version, arch, source_name, source_version FROM packages",
            )
            .fetch_all(pool)
            .await?;
            let mut map = HashMap::with_capacity(rows.len());
            for row in &rows {
                map.insert(row.try_get::<i64, _>("id")?, package_from_row!(row));
            }
            Ok(map)
        })
    }

    /// Stores a host's inventory; audited as `inventory.update` when the package list changed.
    /// Returns whether it changed.
    pub async fn save_inventory(
        &self,
        inventory: &InventoryWrite<'_>,
        actor: &Actor,
    ) -> Result<bool> {
        let at = now();
        on_pool!(self, |pool, pg| {
            let mut tx = begin_write!(pool, pg);
            let (changed, event) = write_inventory!(tx, inventory, &at, actor);
            if let Some(event) = event {
                append_audit!(tx, pg, event);
            }
            tx.commit().await?;
            Ok(changed)
        })
    }

    /// Stores a host's inventory and the findings scanned from it in one transaction, so a
    /// failure leaves both as they were. Returns whether the inventory changed, and the diff.
    pub async fn save_scan(
        &self,
        inventory: &InventoryWrite<'_>,
        current: &[Finding],
        detected: Date,
        actor: &Actor,
    ) -> Result<(bool, FindingsDiff)> {
        let at = now();
        on_pool!(self, |pool, pg| {
            let mut tx = begin_write!(pool, pg);
            let (changed, inventory_event) = write_inventory!(tx, inventory, &at, actor);
            let (diff, findings_event) =
                write_findings!(tx, pg, inventory.hostname, current, detected, &at, actor);
            for event in [inventory_event, findings_event].into_iter().flatten() {
                append_audit!(tx, pg, event);
            }
            tx.commit().await?;
            Ok((changed, diff))
        })
    }

    /// One host's inventory with its packages, if it has one.
    pub async fn inventory(
        &self,
        hostname: &str,
    ) -> Result<Option<(StoredInventory, Vec<InstalledPackage>)>> {
        let row = on_pool!(self, |pool, pg| {
            let row = sqlx::query("SELECT hostname, ecosystem, package_ids, package_hash, received_at, reboot_required FROM inventories WHERE hostname = $1")
                .bind(hostname)
                .fetch_optional(pool)
                .await?;
            match row {
                None => None,
                Some(row) => Some(inventory_from_row!(row)),
            }
        });
        let Some(inventory) = row else {
            return Ok(None);
        };
        let ids = serde_json::to_string(&inventory.package_ids)
            .map_err(|e| StoreError::Corrupt(e.to_string()))?;
        let packages = on_pool!(self, |pool, pg| {
            let sql = if pg {
                "SELECT id, name, version, arch, source_name, source_version FROM packages WHERE id IN (SELECT (jsonb_array_elements_text($1::jsonb))::bigint)"
            } else {
                "SELECT id, name, version, arch, source_name, source_version FROM packages WHERE id IN (SELECT value FROM json_each($1))"
            };
            let rows = sqlx::query(sql).bind(&ids).fetch_all(pool).await?;
            let mut by_id = HashMap::with_capacity(rows.len());
            for row in &rows {
                by_id.insert(row.try_get::<i64, _>("id")?, package_from_row!(row));
            }
            inventory
                .package_ids
                .iter()
                .filter_map(|id| by_id.get(id).cloned())
                .collect::<Vec<_>>()
        });
        Ok(Some((inventory, packages)))
    }

    /// Every stored inventory.
    pub async fn inventories(&self) -> Result<Vec<StoredInventory>> {
        on_pool!(self, |pool, pg| {
            let rows = sqlx::query("SELECT hostname, ecosystem, package_ids, package_hash, received_at, reboot_required FROM inventories ORDER BY hostname")
                .fetch_all(pool)
                .await?;
            let mut list = Vec::with_capacity(rows.len());
            for row in &rows {
                list.push(inventory_from_row!(row));
            }
            Ok(list)
        })
    }

    /// Replaces a host's open findings with `current` (computed as detected on `detected`):
    /// new ones open (first seen now), missing ones resolve, present ones keep their first-seen
    /// date and have their due date counted from it. Audited as `findings.update` when anything
    /// opened or resolved.
    pub async fn apply_findings(
        &self,
        hostname: &str,
        current: &[Finding],
        detected: Date,
        actor: &Actor,
    ) -> Result<FindingsDiff> {
        let at = now();
        on_pool!(self, |pool, pg| {
            let mut tx = begin_write!(pool, pg);
            let (diff, event) = write_findings!(tx, pg, hostname, current, detected, &at, actor);
            if let Some(event) = event {
                append_audit!(tx, pg, event);
            }
            tx.commit().await?;
            Ok(diff)
        })
    }

    /// One finding by id, open or resolved.
    pub async fn finding(&self, id: i64) -> Result<Option<StoredFinding>> {
        on_pool!(self, |pool, pg| {
            let row = sqlx::query(
                "SELECT id, hostname, record, first_seen, resolved_at FROM findings WHERE id = $1",
            )
            .bind(id)
            .fetch_optional(pool)
            .await?;
            match row {
                None => Ok(None),
                Some(row) => {
                    let record: String = row.try_get("record")?;
                    Ok(Some(StoredFinding {
                        id: row.try_get("id")?,
                        hostname: row.try_get("hostname")?,
                        finding: serde_json::from_str(&record)
                            .map_err(|e| StoreError::Corrupt(format!("finding record: {e}")))?,
                        first_seen: row.try_get("first_seen")?,
                        resolved_at: row.try_get("resolved_at")?,
                    }))
                }
            }
        })
    }

    /// A page of findings, highest priority first, and how many match (counted up to
    /// [`COUNT_CAP`]).
    pub async fn findings(&self, query: &FindingsQuery) -> Result<FindingsPage> {
        on_pool!(self, |pool, pg| {
            let mut conditions: Vec<String> = Vec::new();
            let mut n = 0;
            let mut next = || {
                n += 1;
                format!("${n}")
            };
            match query.resolved {
                None => conditions.push("resolved_at IS NULL".to_owned()),
                Some(true) => conditions.push("resolved_at IS NOT NULL".to_owned()),
                Some(false) => {}
            }
            let hosts_json = query
                .hosts
                .as_ref()
                .map(|h| serde_json::json!(h).to_string());
            // Where the host list goes in `conditions`: the page and the count may read it
            // differently (see below).
            let mut host_condition = None;
            if hosts_json.is_some() {
                let p = next();
                host_condition = Some((conditions.len(), p.clone()));
                conditions.push(if pg {
                    format!("hostname IN (SELECT jsonb_array_elements_text({p}::jsonb))")
                } else {
                    format!("hostname IN (SELECT value FROM json_each({p}))")
                });
            }
            // Few values: explicit placeholders, which both planners turn into index lookups.
            if let Some(decisions) = &query.decisions {
                let places: Vec<String> = decisions.iter().map(|_| next()).collect();
                conditions.push(format!("decision IN ({})", places.join(", ")));
            }
            if query.kev.is_some() {
                conditions.push(format!("kev = {}", next()));
            }
            if query.overdue_on.is_some() {
                conditions.push(format!("due < {} AND resolved_at IS NULL", next()));
            }
            // Host and package joined by '|', which neither may contain.
            let covered_json = query.covered.as_ref().map(|(wanted, covered)| {
                let pairs: Vec<String> = covered
                    .host_packages
                    .iter()
                    .map(|(h, p)| format!("{h}|{p}"))
                    .collect();
                (
                    *wanted,
                    serde_json::json!(covered.ids).to_string(),
                    serde_json::json!(pairs).to_string(),
                )
            });
            // Nothing covered: every finding is due, no finding is deferred.
            let nothing_covered = query
                .covered
                .as_ref()
                .is_some_and(|(_, c)| c.ids.is_empty() && c.host_packages.is_empty());
            let covered_json = covered_json.filter(|_| !nothing_covered);
            if nothing_covered && query.covered.as_ref().is_some_and(|(wanted, _)| *wanted) {
                conditions.push("1 = 0".to_owned());
            }
            if let Some((wanted, _, _)) = &covered_json {
                let (ids, pairs) = (next(), next());
                let test = if pg {
                    format!(
                        "(id IN (SELECT (jsonb_array_elements_text({ids}::jsonb))::bigint) OR (hostname || '|' || package) IN (SELECT jsonb_array_elements_text({pairs}::jsonb)))"
                    )
                } else {
                    format!(
                        "(id IN (SELECT value FROM json_each({ids})) OR (hostname || '|' || package) IN (SELECT value FROM json_each({pairs})))"
                    )
                };
                conditions.push(if *wanted { test } else { format!("NOT {test}") });
            }
            let filter = if conditions.is_empty() {
                String::new()
            } else {
                format!(" WHERE {}", conditions.join(" AND "))
            };
            // Many hosts (a selector over a fleet): reading every finding of each host and
            // sorting costs hosts × findings per host, while walking the score index and
            // skipping other hosts' findings costs about page size × fleet / hosts. Past a few
            // hundred hosts the walk wins, so the page reads the host list without its index
            // (`+hostname` on SQLite, an expression on PostgreSQL); the capped count keeps the
            // per-host lookups, which reach the cap fastest.
            let page_filter = match (&host_condition, query.hosts.as_ref()) {
                (Some((at, p)), Some(hosts)) if hosts.len() > MANY_HOSTS => {
                    let mut page_conditions = conditions.clone();
                    page_conditions[*at] = if pg {
                        format!(
                            "(hostname || '') IN (SELECT jsonb_array_elements_text({p}::jsonb))"
                        )
                    } else {
                        format!("+hostname IN (SELECT value FROM json_each({p}))")
                    };
                    format!(" WHERE {}", page_conditions.join(" AND "))
                }
                _ => filter.clone(),
            };
            let (limit_p, offset_p) = (next(), next());
            let page_sql = AssertSqlSafe(format!(
                "SELECT id, hostname, record, first_seen, resolved_at FROM findings{page_filter} ORDER BY score DESC, id LIMIT {limit_p} OFFSET {offset_p}"
            ));
            // Counting every match of a large fleet costs more than the page itself: the count
            // stops past COUNT_CAP and says so. Its cap takes the place the page's limit has.
            let count_sql = AssertSqlSafe(format!(
                "SELECT COUNT(*) AS n FROM (SELECT 1 FROM findings{filter} LIMIT {limit_p}) AS counted"
            ));
            let mut page = sqlx::query(page_sql);
            let mut count = sqlx::query(count_sql);
            if let Some(hosts) = &hosts_json {
                page = page.bind(hosts.clone());
                count = count.bind(hosts.clone());
            }
            for decision in query.decisions.iter().flatten() {
                page = page.bind(decision.clone());
                count = count.bind(decision.clone());
            }
            if let Some(kev) = query.kev {
                page = page.bind(kev);
                count = count.bind(kev);
            }
            if let Some(day) = query.overdue_on {
                page = page.bind(day.to_string());
                count = count.bind(day.to_string());
            }
            if let Some((_, ids, pairs)) = &covered_json {
                page = page.bind(ids.clone()).bind(pairs.clone());
                count = count.bind(ids.clone()).bind(pairs.clone());
            }
            let rows = page
                .bind(query.limit)
                .bind(query.offset)
                .fetch_all(pool)
                .await?;
            let counted: i64 = count
                .bind(COUNT_CAP + 1)
                .fetch_one(pool)
                .await?
                .try_get("n")?;
            let mut items = Vec::with_capacity(rows.len());
            for row in &rows {
                let record: String = row.try_get("record")?;
                items.push(StoredFinding {
                    id: row.try_get("id")?,
                    hostname: row.try_get("hostname")?,
                    finding: serde_json::from_str(&record)
                        .map_err(|e| StoreError::Corrupt(format!("finding record: {e}")))?,
                    first_seen: row.try_get("first_seen")?,
                    resolved_at: row.try_get("resolved_at")?,
                });
            }
            Ok(FindingsPage {
                items,
                total: counted.min(COUNT_CAP),
                total_exact: counted <= COUNT_CAP,
            })
        })
    }
}
