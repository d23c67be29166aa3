//! Advisories: every feed normalised to one OSV-shaped model.
//!
//! Feeds arrive in several formats (OSV JSON files and zips, the Debian security tracker's DSA and
//! DLA lists) and are enriched by others (CISA KEV, FIRST EPSS). Parsers here take bytes and a
//! name for error messages and return records plus the problems they skipped: one malformed record
//! among thousands is reported and left out, while input that is not the claimed format at all is
//! an error. Nothing here reads files; the caller hands in their contents.

pub mod debian_list;
pub mod enrichment;
pub mod osv;

use std::fmt;

use jiff::Timestamp;
use serde::{Deserialize, Serialize};

use crate::ecosystem::EcosystemKey;

pub use enrichment::{Epss, EpssScore, Kev, KevEntry};

/// One advisory, whatever feed it came from, in OSV's shape.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Advisory {
    /// The advisory's id in its own namespace (`DSA-5380-1`, `ALSA-2021:2363`, `CVE-…`).
    pub id: String,
    /// Ids of the same vulnerability elsewhere (OSV `aliases`).
    pub aliases: Vec<String>,
    /// Closely related ids (OSV `related`; AlmaLinux lists its CVEs here).
    pub related: Vec<String>,
    /// One-line summary.
    pub summary: Option<String>,
    /// Longer description.
    pub details: Option<String>,
    /// When the advisory was published.
    pub published: Option<Timestamp>,
    /// When it was last modified.
    pub modified: Option<Timestamp>,
    /// Set when the advisory was withdrawn; withdrawn advisories never produce findings.
    pub withdrawn: Option<Timestamp>,
    /// Severity vectors (OSV `severity`), kept as given; scored by [`crate::cvss`].
    pub severity: Vec<SeverityVector>,
    /// What is affected.
    pub affected: Vec<Affected>,
    /// Security fix, bug fix or enhancement.
    pub update_type: UpdateType,
    /// The distributor's own rating (Red Hat's scale: Low, Moderate, Important, Critical) when the
    /// feed carries one; a fallback when no CVSS vector is known.
    pub vendor_severity: Option<VendorSeverity>,
    /// OSV `database_specific`, kept verbatim.
    pub database_specific: Option<serde_json::Value>,
    /// Which feed format the advisory came from.
    pub origin: FeedFormat,
}

impl Advisory {
    /// The CVE ids this advisory covers: its own id, aliases and related ids that are CVEs.
    pub fn cves(&self) -> impl Iterator<Item = &str> {
        std::iter::once(self.id.as_str())
            .chain(self.aliases.iter().map(String::as_str))
            .chain(self.related.iter().map(String::as_str))
            .filter(|id| id.starts_with("CVE-"))
    }
}

/// One OSV `severity` entry.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct SeverityVector {
    /// `CVSS_V3`, `CVSS_V4`, `CVSS_V2`, `Ubuntu`, …
    #[serde(rename = "type")]
    pub kind: String,
    /// The vector or rating.
    pub score: String,
}

/// One affected package in one ecosystem.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Affected {
    /// The ecosystem as the feed names it.
    pub ecosystem: String,
    /// The ecosystem reduced to a release line; `None` for ecosystems Sluice does not match
    /// (language ecosystems and the like).
    pub key: Option<EcosystemKey>,
    /// The package name (source package for Debian and Ubuntu, binary package for RPM).
    pub package: String,
    /// Version ranges.
    pub ranges: Vec<Range>,
    /// Explicitly listed affected versions.
    pub versions: Vec<String>,
    /// OSV `ecosystem_specific`, kept verbatim.
    pub ecosystem_specific: Option<serde_json::Value>,
    /// OSV `database_specific`, kept verbatim.
    pub database_specific: Option<serde_json::Value>,
}

/// One OSV range.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Range {
    /// How the range's versions are ordered.
    pub kind: RangeKind,
    /// Events in the order the feed gave them.
    pub events: Vec<Event>,
}

/// OSV range types.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum RangeKind {
    /// The ecosystem's own version order; the only kind used for OS packages.
    Ecosystem,
    /// Semantic versioning.
    Semver,
    /// Git commits; kept but never matched against installed packages.
    Git,
}

/// One OSV range event.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Event {
    /// Versions from this one on are affected; `"0"` means every version (see
    /// [`Event::is_start`]).
    Introduced(String),
    /// This version and later are fixed.
    Fixed(String),
    /// This is the last affected version; later ones are not affected (no fix named).
    LastAffected(String),
    /// Versions from this one on are outside the range; a value containing `*` means no limit.
    Limit(String),
}

/// OSV's `introduced` value for "before every version": not the version `0`, which dpkg and rpm
/// both sort above versions such as `0~rc1`.
pub const INTRODUCED_AT_START: &str = "0";

impl Event {
    /// An `introduced` event at OSV's start sentinel: the range begins before every version.
    pub fn introduced_at_start() -> Self {
        Self::Introduced(INTRODUCED_AT_START.to_owned())
    }

    /// The version the event names.
    pub fn version(&self) -> &str {
        match self {
            Self::Introduced(v) | Self::Fixed(v) | Self::LastAffected(v) | Self::Limit(v) => v,
        }
    }

    /// Whether this is `introduced: "0"`, which OSV defines as before every version. Only that
    /// exact text is the sentinel: `0~`, `0.0` or `0:0` are versions like any other.
    pub fn is_start(&self) -> bool {
        matches!(self, Self::Introduced(v) if v == INTRODUCED_AT_START)
    }

    /// Whether this is a `limit` at infinity: OSV lets a limit containing `*` mean "no limit".
    pub fn is_unlimited(&self) -> bool {
        matches!(self, Self::Limit(v) if v.contains('*'))
    }
}

/// What an update does, which change policy later maps to change categories.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum UpdateType {
    /// Fixes a vulnerability.
    Security,
    /// Fixes a bug.
    Bugfix,
    /// Adds or changes a feature.
    Enhancement,
}

impl UpdateType {
    /// The update type an advisory id's prefix implies, if it implies one.
    ///
    /// Red Hat's family names errata RHSA/RHBA/RHEA (security, bug fix, enhancement);
    /// AlmaLinux (ALSA/ALBA/ALEA) and Rocky (RLSA/RLBA/RLEA) copy that scheme.
    pub fn from_advisory_id(id: &str) -> Option<Self> {
        let prefix = id.split(['-', ':']).next().unwrap_or_default();
        match prefix {
            "ALSA" | "RLSA" | "RHSA" | "ELSA" | "DSA" | "DLA" | "DTSA" | "USN" | "CVE" | "GHSA"
            | "OSV" => Some(Self::Security),
            "ALBA" | "RLBA" | "RHBA" | "ELBA" => Some(Self::Bugfix),
            "ALEA" | "RLEA" | "RHEA" | "ELEA" => Some(Self::Enhancement),
            _ => None,
        }
    }

    /// Parses the words feeds use in `database_specific`.
    pub fn from_word(word: &str) -> Option<Self> {
        match word.to_ascii_lowercase().as_str() {
            "security" | "security update" | "securityadvisory" => Some(Self::Security),
            "bugfix" | "bug fix" | "bug" | "bugfix update" => Some(Self::Bugfix),
            "enhancement" | "feature" | "enhancement update" => Some(Self::Enhancement),
            _ => None,
        }
    }
}

impl fmt::Display for UpdateType {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Self::Security => "security",
            Self::Bugfix => "bugfix",
            Self::Enhancement => "enhancement",
        })
    }
}

/// Red Hat's severity scale, used by AlmaLinux and Rocky in advisory summaries.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub enum VendorSeverity {
    /// Low.
    Low,
    /// Moderate.
    Moderate,
    /// Important.
    Important,
    /// Critical.
    Critical,
}

impl VendorSeverity {
    /// Reads the rating from a summary such as `Important: gupnp security update`.
    pub fn from_summary(summary: &str) -> Option<Self> {
        let (word, _) = summary.split_once(':')?;
        match word.trim() {
            "Low" => Some(Self::Low),
            "Moderate" => Some(Self::Moderate),
            "Important" => Some(Self::Important),
            "Critical" => Some(Self::Critical),
            _ => None,
        }
    }
}

/// The formats advisory feeds arrive in.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum FeedFormat {
    /// OSV JSON: one record, an array of records, or a zip of records.
    Osv,
    /// The Debian security tracker's DSA list.
    DebianDsa,
    /// The Debian security tracker's DLA list (same format as the DSA list).
    DebianDla,
}

/// A record that was skipped while loading a feed, and why.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct LoadIssue {
    /// The file (or file inside an archive).
    pub source: String,
    /// The record: its id when it had one, else its position.
    pub record: String,
    /// What was wrong.
    pub reason: String,
}

impl fmt::Display for LoadIssue {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}: {}", self.source, self.record, self.reason)
    }
}

/// What loading a feed produced: the good records and the skipped ones.
#[derive(Clone, Debug, Default)]
pub struct LoadedFeed {
    /// Records that loaded.
    pub advisories: Vec<Advisory>,
    /// Records that were skipped.
    pub issues: Vec<LoadIssue>,
}

impl LoadedFeed {
    /// Adds another feed's records and issues to this one.
    pub fn extend(&mut self, other: LoadedFeed) {
        self.advisories.extend(other.advisories);
        self.issues.extend(other.issues);
    }
}

/// Input that is not the format it was taken for; the whole input is rejected.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{source_name}: {reason}")]
pub struct FeedError {
    /// The input's name.
    pub source_name: String,
    /// What is wrong.
    pub reason: String,
}

impl FeedError {
    pub(crate) fn new(source_name: &str, reason: impl Into<String>) -> Self {
        Self {
            source_name: source_name.to_owned(),
            reason: reason.into(),
        }
    }
}

/// The kinds of input [`detect`] recognises.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum DetectedFormat {
    /// A zip archive (OSV as osv.dev ships an ecosystem).
    OsvZip,
    /// An OSV JSON record or array of records.
    OsvJson,
    /// A Debian DSA list.
    DebianDsa,
    /// A Debian DLA list.
    DebianDla,
    /// The CISA KEV catalog (JSON or CSV): enrichment, not an advisory feed.
    Kev,
    /// A FIRST EPSS CSV: enrichment, not an advisory feed.
    Epss,
}

/// Recognises an input's format from its first bytes, so `--feed` needs no format flag.
pub fn detect(source_name: &str, bytes: &[u8]) -> Result<DetectedFormat, FeedError> {
    if bytes.starts_with(b"PK\x03\x04") || bytes.starts_with(b"PK\x05\x06") {
        return Ok(DetectedFormat::OsvZip);
    }
    let head = String::from_utf8_lossy(&bytes[..bytes.len().min(4096)]);
    let head = head.trim_start_matches('\u{feff}').trim_start();
    if head.starts_with('{') || head.starts_with("[{") || head.starts_with("[\n") || head == "[]" {
        if head.contains("\"vulnerabilities\"") && head.contains("catalogVersion") {
            return Ok(DetectedFormat::Kev);
        }
        return Ok(DetectedFormat::OsvJson);
    }
    if let Some(format) = debian_list::detect(head) {
        return Ok(format);
    }
    if head.starts_with("#model_version") || head.starts_with("cve,epss") {
        return Ok(DetectedFormat::Epss);
    }
    if head.starts_with("cveID,vendorProject") || head.starts_with("\"cveID\",") {
        return Ok(DetectedFormat::Kev);
    }
    let first_line = head.lines().next().unwrap_or_default();
    let shown: String = first_line.chars().take(60).collect();
    Err(FeedError::new(
        source_name,
        format!(
            "not a recognised feed: expected OSV JSON, an OSV zip, or a Debian DSA/DLA list; the first line is {shown:?}"
        ),
    ))
}

/// Parses a feed whose format was detected, or fails if it is enrichment data rather than
/// advisories.
pub fn parse_feed(source_name: &str, bytes: &[u8]) -> Result<LoadedFeed, FeedError> {
    parse_feed_with_progress(source_name, bytes, &mut |_, _| {})
}

/// Like [`parse_feed`], calling `progress(done, total)` as records of an archive are read.
pub fn parse_feed_with_progress(
    source_name: &str,
    bytes: &[u8],
    progress: &mut dyn FnMut(usize, usize),
) -> Result<LoadedFeed, FeedError> {
    match detect(source_name, bytes)? {
        DetectedFormat::OsvZip => osv::parse_zip(source_name, bytes, progress),
        DetectedFormat::OsvJson => osv::parse_json(source_name, bytes),
        DetectedFormat::DebianDsa | DetectedFormat::DebianDla => {
            let text = std::str::from_utf8(bytes)
                .map_err(|e| FeedError::new(source_name, format!("not UTF-8 text: {e}")))?;
            debian_list::parse(source_name, text)
        }
        DetectedFormat::Kev => Err(FeedError::new(
            source_name,
            "this is the CISA KEV catalog, not an advisory feed: pass it as KEV enrichment (--kev)",
        )),
        DetectedFormat::Epss => Err(FeedError::new(
            source_name,
            "this is a FIRST EPSS file, not an advisory feed: pass it as EPSS enrichment (--epss)",
        )),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn update_type_from_ids() {
        assert_eq!(
            UpdateType::from_advisory_id("ALSA-2021:2363"),
            Some(UpdateType::Security)
        );
        assert_eq!(
            UpdateType::from_advisory_id("ALBA-2021:1099"),
            Some(UpdateType::Bugfix)
        );
        assert_eq!(
            UpdateType::from_advisory_id("ALEA-2022:0001"),
            Some(UpdateType::Enhancement)
        );
        assert_eq!(
            UpdateType::from_advisory_id("DLA-3000-1"),
            Some(UpdateType::Security)
        );
        assert_eq!(UpdateType::from_advisory_id("XYZ-1"), None);
    }

    #[test]
    fn vendor_severity_from_summaries() {
        assert_eq!(
            VendorSeverity::from_summary("Important: gupnp security update"),
            Some(VendorSeverity::Important)
        );
        assert_eq!(VendorSeverity::from_summary("gupnp bug fix update"), None);
    }

    #[test]
    fn detection_names_the_format() {
        assert_eq!(
            detect("x", b"PK\x03\x04rest").unwrap(),
            DetectedFormat::OsvZip
        );
        assert_eq!(
            detect("x", b"  {\"id\": 1}").unwrap(),
            DetectedFormat::OsvJson
        );
        assert_eq!(
            detect(
                "x",
                b"[29 Mar 2023] DSA-5380-1 xorg-server - security update\n"
            )
            .unwrap(),
            DetectedFormat::DebianDsa
        );
        assert_eq!(
            detect(
                "x",
                b"#model_version:v1,score_date:2026-01-01\ncve,epss,percentile\n"
            )
            .unwrap(),
            DetectedFormat::Epss
        );
        let err = detect("notes.txt", b"hello world\n").unwrap_err();
        assert!(err.to_string().contains("notes.txt"), "{err}");
        assert!(err.to_string().contains("hello world"), "{err}");
        let kev = parse_feed(
            "kev.json",
            br#"{"title":"x","catalogVersion":"1","vulnerabilities":[]}"#,
        );
        assert!(kev.unwrap_err().to_string().contains("--kev"));
    }
}
