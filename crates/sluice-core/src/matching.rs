//! Matching installed packages against advisories.
//!
//! [`AdvisoryIndex`] compiles advisories once: versions parsed in their ecosystem's order, range
//! events sorted, records grouped by (ecosystem, package), and each advisory's vulnerability facts
//! (best CVSS among the advisory and its CVEs, KEV listing, EPSS) gathered up front. Matching is
//! then a hash lookup and a few comparisons per distinct (package, version): a fleet shares most
//! package versions, so [`AdvisoryIndex::match_fleet`] matches each distinct pair once.

use std::cmp::Ordering;
use std::collections::{BTreeMap, HashMap};

use rustc_hash::FxHashMap;

use crate::advisory::{Advisory, Epss, Event, Kev, LoadIssue, RangeKind};
use crate::cvss::{Cvss, CvssVersion};
use crate::ecosystem::EcosystemKey;
use crate::priority::VulnerabilityFacts;
use crate::version::{Scheme, Version};

/// Position of an advisory in the index.
pub type AdvisoryId = u32;

/// One advisory that affects a package version.
#[derive(Clone, Debug)]
pub struct Match {
    /// The advisory.
    pub advisory: AdvisoryId,
    /// The lowest version that fixes it, when one is known.
    pub fixed: Option<Version>,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum EventKind {
    Introduced,
    Fixed,
    LastAffected,
    Limit,
}

/// Where a range event sits in its scheme's order.
///
/// OSV's two sentinels are positions, not versions: `introduced: "0"` is before every version and
/// a `limit` with `*` after every version, in every scheme. Read as the version `0`, the start
/// would leave out what dpkg and rpm sort below it (`0~git20230101-1`, `0~rc1`, rpm's `~1`).
#[derive(Clone, Debug)]
enum Bound {
    /// Before every version (`introduced: "0"`).
    Start,
    /// A version of the ecosystem's scheme.
    At(Version),
    /// After every version (`limit: "*"`).
    End,
}

impl Bound {
    /// Orders two bounds; versions by their scheme's rules.
    fn compare(&self, other: &Bound) -> Ordering {
        match (self, other) {
            (Bound::At(a), Bound::At(b)) => a.compare(b),
            (Bound::Start, Bound::Start) | (Bound::End, Bound::End) => Ordering::Equal,
            (Bound::Start, _) | (_, Bound::End) => Ordering::Less,
            (_, Bound::Start) | (Bound::End, _) => Ordering::Greater,
        }
    }

    /// How `installed` orders against this bound.
    fn place(&self, installed: &Version) -> Ordering {
        match self {
            Bound::Start => Ordering::Greater,
            Bound::At(version) => installed.compare(version),
            Bound::End => Ordering::Less,
        }
    }
}

#[derive(Clone, Debug)]
struct CompiledEvent {
    kind: EventKind,
    bound: Bound,
}

#[derive(Clone, Debug)]
struct CompiledAffected {
    advisory: AdvisoryId,
    /// Each range's events, sorted by bound.
    ranges: Vec<Vec<CompiledEvent>>,
    versions: Vec<Version>,
}

/// Advisories compiled for matching, with their vulnerability facts.
#[derive(Debug, Default)]
pub struct AdvisoryIndex {
    advisories: Vec<Advisory>,
    facts: Vec<VulnerabilityFacts>,
    packages: HashMap<EcosystemKey, FxHashMap<String, Vec<CompiledAffected>>>,
    withdrawn: usize,
    other_ecosystems: BTreeMap<String, usize>,
    /// Problems found while compiling (severity vectors that do not parse); the records still
    /// match, without the bad vector.
    pub issues: Vec<LoadIssue>,
}

impl AdvisoryIndex {
    /// Compiles advisories and their enrichment.
    pub fn build(advisories: Vec<Advisory>, kev: Option<&Kev>, epss: Option<&Epss>) -> Self {
        let mut index = Self::default();
        let mut parsed_vectors: Vec<Vec<Cvss>> = Vec::with_capacity(advisories.len());
        for advisory in &advisories {
            let mut vectors = Vec::new();
            for severity in &advisory.severity {
                if !matches!(severity.kind.as_str(), "CVSS_V3" | "CVSS_V4") {
                    continue;
                }
                match Cvss::parse(&severity.score) {
                    Ok(cvss) => vectors.push(cvss),
                    Err(e) => index.issues.push(LoadIssue {
                        source: format!("{:?}", advisory.origin),
                        record: advisory.id.clone(),
                        reason: format!("severity vector ignored: {e}"),
                    }),
                }
            }
            parsed_vectors.push(vectors);
        }
        // The best vector known for each CVE, from any record that is or aliases it.
        let mut by_cve: HashMap<&str, &Cvss> = HashMap::new();
        for (advisory, vectors) in advisories.iter().zip(&parsed_vectors) {
            let Some(best) = best_of(vectors.iter()) else {
                continue;
            };
            for cve in advisory.cves() {
                let entry = by_cve.entry(cve).or_insert(best);
                if better(best, entry) {
                    *entry = best;
                }
            }
        }
        for (position, (advisory, vectors)) in advisories.iter().zip(&parsed_vectors).enumerate() {
            let from_cves = advisory.cves().filter_map(|cve| by_cve.get(cve).copied());
            let cvss = best_of(vectors.iter().chain(from_cves)).cloned();
            let kev_listed = kev.is_some_and(|k| advisory.cves().any(|cve| k.get(cve).is_some()));
            let epss_best = epss.and_then(|e| {
                advisory
                    .cves()
                    .filter_map(|cve| e.get(cve).map(|s| s.probability))
                    .reduce(f64::max)
            });
            index.facts.push(VulnerabilityFacts {
                cvss,
                kev: kev_listed,
                epss: epss_best,
                vendor_severity: advisory.vendor_severity,
            });
            if advisory.withdrawn.is_some() {
                index.withdrawn += 1;
                continue;
            }
            let id = AdvisoryId::try_from(position).unwrap_or(AdvisoryId::MAX);
            for affected in &advisory.affected {
                let Some(key) = &affected.key else {
                    *index
                        .other_ecosystems
                        .entry(affected.ecosystem.clone())
                        .or_default() += 1;
                    continue;
                };
                if let Some(compiled) = compile(id, key, affected) {
                    index
                        .packages
                        .entry(key.clone())
                        .or_default()
                        .entry(affected.package.clone())
                        .or_default()
                        .push(compiled);
                }
            }
        }
        drop(by_cve);
        index.advisories = advisories;
        index
    }

    /// The advisory behind an id.
    pub fn advisory(&self, id: AdvisoryId) -> &Advisory {
        &self.advisories[id as usize]
    }

    /// The vulnerability facts of an advisory.
    pub fn facts(&self, id: AdvisoryId) -> &VulnerabilityFacts {
        &self.facts[id as usize]
    }

    /// All advisories, in index order.
    pub fn advisories(&self) -> &[Advisory] {
        &self.advisories
    }

    /// How many advisories were withdrawn (kept, never matched).
    pub fn withdrawn(&self) -> usize {
        self.withdrawn
    }

    /// Affected entries in ecosystems Sluice does not match, by ecosystem name.
    pub fn other_ecosystems(&self) -> &BTreeMap<String, usize> {
        &self.other_ecosystems
    }

    /// The ecosystems the index has advisories for.
    pub fn ecosystems(&self) -> impl Iterator<Item = &EcosystemKey> {
        self.packages.keys()
    }

    /// Advisories affecting one installed package version, at most one match per advisory.
    pub fn match_package(
        &self,
        ecosystem: &EcosystemKey,
        package: &str,
        installed: &Version,
    ) -> Vec<Match> {
        let Some(entries) = self.packages.get(ecosystem).and_then(|p| p.get(package)) else {
            return Vec::new();
        };
        let mut matches: Vec<Match> = Vec::new();
        for entry in entries {
            let Some(fixed) = entry_affects(entry, installed) else {
                continue;
            };
            match matches.iter_mut().find(|m| m.advisory == entry.advisory) {
                Some(existing) => existing.fixed = lower_fix(existing.fixed.take(), fixed),
                None => matches.push(Match {
                    advisory: entry.advisory,
                    fixed,
                }),
            }
        }
        matches
    }

    /// Matches many hosts at once, each distinct (ecosystem, package, version) only once per
    /// worker.
    ///
    /// Hosts are split into `workers` contiguous chunks matched on that many threads (CPU work
    /// only; pass 1 for none). Returns, per host in the given order, `(package position, row)`
    /// pairs for the packages that have matches, where `row` indexes [`FleetMatches::rows`].
    pub fn match_fleet(&self, hosts: &[FleetHost<'_>], workers: usize) -> FleetMatches {
        let workers = workers.clamp(1, hosts.len().max(1));
        if workers == 1 {
            return self.match_chunk(hosts);
        }
        let chunk = hosts.len().div_ceil(workers);
        let parts: Vec<FleetMatches> = std::thread::scope(|scope| {
            let handles: Vec<_> = hosts
                .chunks(chunk)
                .map(|part| scope.spawn(move || self.match_chunk(part)))
                .collect();
            handles
                .into_iter()
                .map(|h| h.join().unwrap_or_default())
                .collect()
        });
        let mut result = FleetMatches::default();
        for part in parts {
            let offset = u32::try_from(result.rows.len()).unwrap_or(u32::MAX);
            result.rows.extend(part.rows);
            result.hosts.extend(part.hosts.into_iter().map(|rows| {
                rows.into_iter()
                    .map(|(position, row)| (position, row + offset))
                    .collect()
            }));
            result.distinct_pairs += part.distinct_pairs;
            result.unparsable += part.unparsable;
        }
        result
    }

    fn match_chunk<'h>(&self, hosts: &[FleetHost<'h>]) -> FleetMatches {
        // One memo per ecosystem, keyed by (name, version): a hit costs one hash of two short
        // strings, and hosts of a fleet hit almost always.
        let mut memos: Vec<(&EcosystemKey, Memo<'h>)> = Vec::new();
        let mut result = FleetMatches::default();
        for host in hosts {
            let memo_index = match memos.iter().position(|(e, _)| *e == host.ecosystem) {
                Some(position) => position,
                None => {
                    memos.push((host.ecosystem, FxHashMap::default()));
                    memos.len() - 1
                }
            };
            let memo = &mut memos[memo_index].1;
            let known = self.packages.get(host.ecosystem);
            let mut host_rows = Vec::new();
            for (position, &(name, version)) in host.packages.iter().enumerate() {
                let row = match memo.get(&(name, version)) {
                    Some(&row) => row,
                    None => {
                        let row = match known.and_then(|k| k.get(name)) {
                            None => NO_MATCH,
                            Some(_) => match Version::parse(host.ecosystem.scheme(), version) {
                                Err(_) => {
                                    result.unparsable += 1;
                                    NO_MATCH
                                }
                                Ok(parsed) => {
                                    let matches = self.match_package(host.ecosystem, name, &parsed);
                                    if matches.is_empty() {
                                        NO_MATCH
                                    } else {
                                        result.rows.push(matches);
                                        u32::try_from(result.rows.len() - 1).unwrap_or(NO_MATCH)
                                    }
                                }
                            },
                        };
                        memo.insert((name, version), row);
                        row
                    }
                };
                if row != NO_MATCH
                    && let Ok(position) = u32::try_from(position)
                {
                    host_rows.push((position, row));
                }
            }
            result.hosts.push(host_rows);
        }
        result.distinct_pairs = memos.iter().map(|(_, m)| m.len()).sum();
        result
    }
}

/// version → matches, for one package.
type VersionMemo = FxHashMap<String, std::sync::Arc<[Match]>>;

/// Match results remembered across hosts, for one [`AdvisoryIndex`].
///
/// A fleet shares most package versions, so a server that matches one host at a time keeps one
/// memo per index: a host's second and later packages of a known version cost a hash lookup.
/// A memo belongs to the index it was filled from; build a new one when the index changes.
#[derive(Debug, Default)]
pub struct MatchMemo {
    /// ecosystem → package → version → matches.
    entries: HashMap<EcosystemKey, FxHashMap<String, VersionMemo>>,
    len: usize,
}

impl MatchMemo {
    /// Distinct (ecosystem, package, version) triples remembered.
    pub fn len(&self) -> usize {
        self.len
    }

    /// Whether nothing is remembered yet.
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// Forgets everything (to bound memory).
    pub fn clear(&mut self) {
        self.entries.clear();
        self.len = 0;
    }
}

impl AdvisoryIndex {
    /// [`AdvisoryIndex::match_package`] through a memo, from the version's text.
    ///
    /// A version that does not parse in the ecosystem's scheme matches nothing (inventories are
    /// validated when parsed, so this does not happen for stored data).
    pub fn match_memoized(
        &self,
        memo: &mut MatchMemo,
        ecosystem: &EcosystemKey,
        package: &str,
        version: &str,
    ) -> std::sync::Arc<[Match]> {
        let Some(known) = self.packages.get(ecosystem) else {
            return std::sync::Arc::from(Vec::new());
        };
        if !known.contains_key(package) {
            return std::sync::Arc::from(Vec::new());
        }
        if let Some(found) = memo
            .entries
            .get(ecosystem)
            .and_then(|names| names.get(package))
            .and_then(|versions| versions.get(version))
        {
            return found.clone();
        }
        let matches: std::sync::Arc<[Match]> = match Version::parse(ecosystem.scheme(), version) {
            Ok(parsed) => self.match_package(ecosystem, package, &parsed).into(),
            Err(_) => std::sync::Arc::from(Vec::new()),
        };
        let names = match memo.entries.get_mut(ecosystem) {
            Some(names) => names,
            None => memo.entries.entry(ecosystem.clone()).or_default(),
        };
        let versions = match names.get_mut(package) {
            Some(versions) => versions,
            None => names.entry(package.to_owned()).or_default(),
        };
        versions.insert(version.to_owned(), matches.clone());
        memo.len += 1;
        matches
    }
}

const NO_MATCH: u32 = u32::MAX;

/// (package, version) → row of matches, or [`NO_MATCH`].
type Memo<'h> = FxHashMap<(&'h str, &'h str), u32>;

/// One host's packages for [`AdvisoryIndex::match_fleet`]: (name advisories use, version).
#[derive(Clone, Debug)]
pub struct FleetHost<'h> {
    /// The host's ecosystem.
    pub ecosystem: &'h EcosystemKey,
    /// (package name as advisories name it, version).
    pub packages: &'h [(&'h str, &'h str)],
}

/// The result of [`AdvisoryIndex::match_fleet`].
#[derive(Clone, Debug, Default)]
pub struct FleetMatches {
    /// Distinct match lists, shared by every host with the same package version.
    pub rows: Vec<Vec<Match>>,
    /// Per host: (package position, row).
    pub hosts: Vec<Vec<(u32, u32)>>,
    /// Distinct (ecosystem, package, version) triples that were looked at (per worker).
    pub distinct_pairs: usize,
    /// Distinct versions that could not be parsed.
    pub unparsable: usize,
}

impl FleetMatches {
    /// Total (host, package, advisory) findings.
    pub fn finding_count(&self) -> usize {
        self.hosts
            .iter()
            .flat_map(|rows| rows.iter().map(|&(_, row)| self.rows[row as usize].len()))
            .sum()
    }
}

fn compile(
    id: AdvisoryId,
    key: &EcosystemKey,
    affected: &crate::advisory::Affected,
) -> Option<CompiledAffected> {
    let scheme = key.scheme();
    let mut ranges = Vec::new();
    for range in &affected.ranges {
        if range.kind != RangeKind::Ecosystem {
            continue;
        }
        ranges.push(compile_events(scheme, &range.events)?);
    }
    let versions = affected
        .versions
        .iter()
        .filter_map(|v| Version::parse(scheme, v).ok())
        .collect::<Vec<_>>();
    if ranges.is_empty() && versions.is_empty() {
        return None;
    }
    Some(CompiledAffected {
        advisory: id,
        ranges,
        versions,
    })
}

/// One range's events in evaluation order; `None` when a version does not parse (loading already
/// validated every version, so such a range is left out rather than guessed at).
fn compile_events(scheme: Scheme, events: &[Event]) -> Option<Vec<CompiledEvent>> {
    let mut compiled = Vec::with_capacity(events.len());
    for event in events {
        let kind = match event {
            Event::Introduced(_) => EventKind::Introduced,
            Event::Fixed(_) => EventKind::Fixed,
            Event::LastAffected(_) => EventKind::LastAffected,
            Event::Limit(_) => EventKind::Limit,
        };
        let bound = if event.is_start() {
            Bound::Start
        } else if event.is_unlimited() {
            Bound::End
        } else {
            Bound::At(Version::parse(scheme, event.version()).ok()?)
        };
        compiled.push(CompiledEvent { kind, bound });
    }
    // OSV evaluates events in version order; the sort is stable, so events at equal versions
    // keep the feed's order.
    compiled.sort_by(|a, b| a.bound.compare(&b.bound));
    Some(compiled)
}

/// `None` when not affected; `Some(fixed)` when affected, with the fixing version if known.
fn entry_affects(entry: &CompiledAffected, installed: &Version) -> Option<Option<Version>> {
    let mut result: Option<Option<Version>> = None;
    for events in &entry.ranges {
        if let Some(fixed) = range_affects(events, installed) {
            result = Some(lower_fix(result.flatten(), fixed));
        }
    }
    if result.is_none()
        && entry
            .versions
            .iter()
            .any(|v| v.compare(installed) == Ordering::Equal)
    {
        result = Some(None);
    }
    result
}

/// OSV's evaluation over events sorted by bound: the installed version must lie below some
/// `limit` (none means no limit), and the last `introduced`, `fixed` or `last_affected` at or
/// below it must be `introduced`.
fn range_affects(events: &[CompiledEvent], installed: &Version) -> Option<Option<Version>> {
    let mut limits = events.iter().filter(|e| e.kind == EventKind::Limit);
    let has_limits = limits.clone().next().is_some();
    if has_limits && !limits.any(|e| e.bound.place(installed) == Ordering::Less) {
        return None;
    }
    let mut affected = false;
    for event in events {
        let order = event.bound.place(installed);
        if order == Ordering::Less {
            break;
        }
        match event.kind {
            EventKind::Introduced => affected = true,
            EventKind::Fixed => affected = false,
            EventKind::LastAffected if order == Ordering::Greater => affected = false,
            EventKind::LastAffected | EventKind::Limit => {}
        }
    }
    if !affected {
        return None;
    }
    // The range closes at the first fix, last_affected or limit at or above the installed
    // version; only a fix names a fixed version.
    let closing = events.iter().find(|e| {
        e.kind != EventKind::Introduced
            && !matches!(e.bound, Bound::End)
            && e.bound.place(installed) != Ordering::Greater
    });
    match closing {
        Some(CompiledEvent {
            kind: EventKind::Fixed,
            bound: Bound::At(version),
        }) => Some(Some(version.clone())),
        _ => Some(None),
    }
}

fn lower_fix(a: Option<Version>, b: Option<Version>) -> Option<Version> {
    match (a, b) {
        (Some(a), Some(b)) => Some(if b.compare(&a) == Ordering::Less {
            b
        } else {
            a
        }),
        (a, b) => a.or(b),
    }
}

/// Higher score wins; on a tie the newer CVSS version.
fn better(a: &Cvss, b: &Cvss) -> bool {
    match a.score().partial_cmp(&b.score()) {
        Some(Ordering::Greater) => true,
        Some(Ordering::Equal) => rank(a.version()) > rank(b.version()),
        _ => false,
    }
}

fn rank(version: CvssVersion) -> u8 {
    match version {
        CvssVersion::V3_0 => 0,
        CvssVersion::V3_1 => 1,
        CvssVersion::V4_0 => 2,
    }
}

fn best_of<'a>(vectors: impl Iterator<Item = &'a Cvss>) -> Option<&'a Cvss> {
    vectors.fold(None, |best, candidate| match best {
        Some(current) if !better(candidate, current) => Some(current),
        _ => Some(candidate),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::advisory::osv;
    use crate::version::Scheme;

    fn index(json: &str) -> AdvisoryIndex {
        let feed = osv::parse_json("test.json", json.as_bytes()).unwrap();
        assert!(feed.issues.is_empty(), "{:?}", feed.issues);
        AdvisoryIndex::build(feed.advisories, None, None)
    }

    fn record(id: &str, eco: &str, events: &str) -> String {
        format!(
            r#"{{"id": "{id}", "affected": [{{"package": {{"ecosystem": "{eco}", "name": "pkg"}},
              "ranges": [{{"type": "ECOSYSTEM", "events": [{events}]}}]}}]}}"#
        )
    }

    fn fixed_for(index: &AdvisoryIndex, eco: &str, version: &str) -> Option<Option<String>> {
        let key: EcosystemKey = eco.parse().unwrap();
        let installed = Version::parse(key.scheme(), version).unwrap();
        let matches = index.match_package(&key, "pkg", &installed);
        assert!(matches.len() <= 1);
        matches
            .into_iter()
            .next()
            .map(|m| m.fixed.map(|f| f.as_str().to_owned()))
    }

    #[test]
    fn introduced_fixed_in_debian_order() {
        let idx = index(&record(
            "A-1",
            "Debian:12",
            r#"{"introduced": "0"}, {"fixed": "1.2-3"}"#,
        ));
        assert_eq!(
            fixed_for(&idx, "Debian:12", "1.2-2"),
            Some(Some("1.2-3".into()))
        );
        assert_eq!(
            fixed_for(&idx, "Debian:12", "1.2-3~bpo1"),
            Some(Some("1.2-3".into()))
        );
        assert_eq!(fixed_for(&idx, "Debian:12", "1.2-3"), None);
        assert_eq!(
            fixed_for(&idx, "Debian:12", "1:0.1-1"),
            None,
            "epoch beats everything"
        );
        assert_eq!(fixed_for(&idx, "Debian:11", "1.0-1"), None, "other release");
    }

    #[test]
    fn last_affected_limit_and_reintroduction() {
        let idx = index(&record(
            "A-2",
            "AlmaLinux:8",
            r#"{"introduced": "1.0-1"}, {"last_affected": "1.5-1"}, {"introduced": "2.0-1"}, {"fixed": "2.3-1.el8"}"#,
        ));
        assert_eq!(fixed_for(&idx, "AlmaLinux:8", "0.9-1"), None);
        assert_eq!(fixed_for(&idx, "AlmaLinux:8", "1.5-1"), Some(None));
        assert_eq!(fixed_for(&idx, "AlmaLinux:8", "1.6-1"), None);
        assert_eq!(
            fixed_for(&idx, "AlmaLinux:8", "2.1-1"),
            Some(Some("2.3-1.el8".into()))
        );
        assert_eq!(fixed_for(&idx, "AlmaLinux:8", "2.3-1.el8"), None);
        let limited = index(&record(
            "A-3",
            "Debian:12",
            r#"{"introduced": "0"}, {"limit": "3.0"}"#,
        ));
        assert_eq!(fixed_for(&limited, "Debian:12", "2.9"), Some(None));
        assert_eq!(fixed_for(&limited, "Debian:12", "3.0"), None);
    }

    #[test]
    fn unsorted_events_are_evaluated_in_version_order() {
        let idx = index(&record(
            "A-4",
            "Debian:12",
            r#"{"fixed": "2.0"}, {"introduced": "1.0"}"#,
        ));
        assert_eq!(
            fixed_for(&idx, "Debian:12", "1.5"),
            Some(Some("2.0".into()))
        );
        assert_eq!(fixed_for(&idx, "Debian:12", "0.5"), None);
    }

    #[test]
    fn withdrawn_advisories_never_match() {
        let text = record(
            "A-5",
            "Debian:12",
            r#"{"introduced": "0"}, {"fixed": "2.0"}"#,
        )
        .replacen('{', r#"{"withdrawn": "2024-01-01T00:00:00Z", "#, 1);
        let idx = index(&text);
        assert_eq!(fixed_for(&idx, "Debian:12", "1.0"), None);
        assert_eq!(idx.withdrawn(), 1);
    }

    #[test]
    fn explicit_versions_match_exactly() {
        let text = r#"{"id": "A-6", "affected": [{"package": {"ecosystem": "Debian:12", "name": "pkg"}, "versions": ["1.0-1", "1.0-2"]}]}"#;
        let idx = index(text);
        assert_eq!(fixed_for(&idx, "Debian:12", "1.0-2"), Some(None));
        assert_eq!(fixed_for(&idx, "Debian:12", "1.0-3"), None);
    }

    #[test]
    fn cvss_is_the_best_among_the_advisory_and_its_cves() {
        let text = r#"[
          {"id": "DSA-1", "aliases": ["CVE-2024-1"], "affected": [{"package": {"ecosystem": "Debian:12", "name": "pkg"},
             "ranges": [{"type": "ECOSYSTEM", "events": [{"introduced": "0"}, {"fixed": "2.0"}]}]}]},
          {"id": "CVE-2024-1", "severity": [{"type": "CVSS_V3", "score": "CVSS:3.1/AV:N/AC:L/PR:N/UI:N/S:U/C:H/I:H/A:H"}]}
        ]"#;
        let idx = index(text);
        let facts = idx.facts(0);
        assert_eq!(facts.cvss.as_ref().map(Cvss::score), Some(9.8));
    }

    #[test]
    fn fleet_matching_equals_per_host_matching() {
        let idx = index(&record(
            "A-7",
            "Debian:12",
            r#"{"introduced": "0"}, {"fixed": "2.0"}"#,
        ));
        let key: EcosystemKey = "Debian:12".parse().unwrap();
        let a = [("pkg", "1.0"), ("other", "1.0")];
        let b = [("other", "1.0"), ("pkg", "2.0")];
        let c = [("pkg", "1.0")];
        let hosts = [
            FleetHost {
                ecosystem: &key,
                packages: &a,
            },
            FleetHost {
                ecosystem: &key,
                packages: &b,
            },
            FleetHost {
                ecosystem: &key,
                packages: &c,
            },
        ];
        let fleet = idx.match_fleet(&hosts, 1);
        let parallel = idx.match_fleet(&hosts, 2);
        assert_eq!(parallel.finding_count(), fleet.finding_count());
        assert_eq!(parallel.hosts.len(), 3);
        assert_eq!(parallel.hosts[0].len(), 1);
        assert!(parallel.hosts[1].is_empty());
        assert_eq!(parallel.hosts[2].len(), 1);
        assert_eq!(fleet.hosts, vec![vec![(0, 0)], vec![], vec![(0, 0)]]);
        assert_eq!(fleet.rows.len(), 1);
        assert_eq!(fleet.finding_count(), 2);
        let one = idx.match_package(&key, "pkg", &Version::parse(Scheme::Deb, "1.0").unwrap());
        assert_eq!(fleet.rows[0].len(), one.len());
        assert_eq!(fleet.rows[0][0].advisory, one[0].advisory);
        assert_eq!(
            fleet.rows[0][0].fixed.as_ref().map(Version::as_str),
            one[0].fixed.as_ref().map(Version::as_str)
        );
    }

    #[test]
    fn introduced_zero_covers_snapshots_below_zero() {
        // The issue's case: a snapshot version sorts below "0" in dpkg's order, yet OSV's
        // "introduced": "0" means every version.
        let text = r#"{"id": "DSA-9999-1", "affected": [{"package": {"ecosystem": "Debian:12", "name": "snap"},
            "ranges": [{"type": "ECOSYSTEM", "events": [{"introduced": "0"}, {"fixed": "1.0-1"}]}]}]}"#;
        let idx = index(text);
        let key: EcosystemKey = "Debian:12".parse().unwrap();
        let installed = Version::parse(Scheme::Deb, "0~git20230101-1").unwrap();
        let matches = idx.match_package(&key, "snap", &installed);
        assert_eq!(matches.len(), 1, "0~git20230101-1 is affected");
        assert_eq!(
            matches[0].fixed.as_ref().map(Version::as_str),
            Some("1.0-1")
        );
        let fixed = Version::parse(Scheme::Deb, "1.0-1").unwrap();
        assert!(idx.match_package(&key, "snap", &fixed).is_empty());
    }

    #[test]
    fn the_start_sentinel_holds_in_every_scheme() {
        let deb = index(&record(
            "A-8",
            "Debian:12",
            r#"{"introduced": "0"}, {"fixed": "1.0-1"}"#,
        ));
        for below_zero in ["0~rc1", "0:0~beta2", "0-~1", "0-0~1", "0~~", "0~"] {
            assert_eq!(
                fixed_for(&deb, "Debian:12", below_zero),
                Some(Some("1.0-1".into())),
                "{below_zero}"
            );
        }
        let rpm = index(&record(
            "A-9",
            "AlmaLinux:9",
            r#"{"introduced": "0"}, {"fixed": "1.0-1.el9"}"#,
        ));
        for below_zero in ["~1", "0~rc1-1", "0:0~git20230101-1", "^1", "a1-1"] {
            assert_eq!(
                fixed_for(&rpm, "AlmaLinux:9", below_zero),
                Some(Some("1.0-1.el9".into())),
                "{below_zero}"
            );
        }
        // The semver-like order has versions below "0" too: pre-releases of 0.
        let events = [
            Event::introduced_at_start(),
            Event::Fixed("1.0.0".to_owned()),
        ];
        let generic = compile_events(Scheme::Generic, &events).unwrap();
        let pre_release = Version::parse(Scheme::Generic, "0-rc.1").unwrap();
        assert!(
            pre_release.compare(&Version::parse(Scheme::Generic, "0").unwrap()) == Ordering::Less
        );
        assert!(range_affects(&generic, &pre_release).is_some());
    }

    #[test]
    fn other_introduced_values_keep_their_meaning() {
        // "0~" and "0.0" are versions, not the sentinel.
        let tilde = index(&record(
            "A-10",
            "Debian:12",
            r#"{"introduced": "0~"}, {"fixed": "1.0"}"#,
        ));
        assert_eq!(fixed_for(&tilde, "Debian:12", "0~~"), None, "0~~ < 0~");
        assert_eq!(
            fixed_for(&tilde, "Debian:12", "0~rc1"),
            Some(Some("1.0".into()))
        );
        let dotted = index(&record(
            "A-11",
            "Debian:12",
            r#"{"introduced": "0.0"}, {"fixed": "1.0"}"#,
        ));
        assert_eq!(fixed_for(&dotted, "Debian:12", "0~rc1"), None);
        assert_eq!(fixed_for(&dotted, "Debian:12", "0"), None, "0 < 0.0");
        assert_eq!(
            fixed_for(&dotted, "Debian:12", "0.0.1"),
            Some(Some("1.0".into()))
        );
        // A fix below "0" is still above the start.
        let low_fix = index(&record(
            "A-12",
            "Debian:12",
            r#"{"fixed": "0~rc1"}, {"introduced": "0"}"#,
        ));
        assert_eq!(
            fixed_for(&low_fix, "Debian:12", "0~beta"),
            Some(Some("0~rc1".into()))
        );
        assert_eq!(fixed_for(&low_fix, "Debian:12", "0"), None);
        // last_affected "0" is the version 0.
        let last = index(&record(
            "A-13",
            "Debian:12",
            r#"{"introduced": "0"}, {"last_affected": "0"}"#,
        ));
        assert_eq!(fixed_for(&last, "Debian:12", "0~rc1"), Some(None));
        assert_eq!(fixed_for(&last, "Debian:12", "0"), Some(None));
        assert_eq!(fixed_for(&last, "Debian:12", "0-1"), None);
    }

    #[test]
    fn limits_follow_the_osv_evaluation() {
        // "*" (or any limit containing it) is no limit at all; a fix above it is still named.
        let unlimited = index(&record(
            "A-14",
            "Debian:12",
            r#"{"introduced": "0"}, {"limit": "*"}, {"fixed": "2.0"}"#,
        ));
        assert_eq!(
            fixed_for(&unlimited, "Debian:12", "0~rc1"),
            Some(Some("2.0".into()))
        );
        assert_eq!(fixed_for(&unlimited, "Debian:12", "2.0"), None);
        let starred = index(&record(
            "A-15",
            "Debian:12",
            r#"{"introduced": "1.0"}, {"limit": "1.*"}"#,
        ));
        assert_eq!(fixed_for(&starred, "Debian:12", "99"), Some(None));
        // Several limits: below any of them is in scope, above all of them never is, even
        // after a later introduced.
        let limited = index(&record(
            "A-16",
            "Debian:12",
            r#"{"introduced": "0"}, {"limit": "2.0"}, {"limit": "5.0"}, {"introduced": "6.0"}"#,
        ));
        assert_eq!(fixed_for(&limited, "Debian:12", "0~rc1"), Some(None));
        assert_eq!(fixed_for(&limited, "Debian:12", "3.0"), Some(None));
        assert_eq!(fixed_for(&limited, "Debian:12", "5.0"), None);
        assert_eq!(fixed_for(&limited, "Debian:12", "7.0"), None);
    }

    #[test]
    fn the_dsa_lists_implicit_start_is_the_sentinel() {
        let list = "[29 Mar 2023] DSA-5380-1 snap - security update\n\
                    \t[bookworm] - snap 1.0-1\n\
                    [30 Mar 2023] DSA-5381-1 snap - security update\n\
                    \t[bookworm] - snap <unfixed>\n";
        let feed = crate::advisory::debian_list::parse("DSA-list", list).unwrap();
        assert!(feed.issues.is_empty(), "{:?}", feed.issues);
        let idx = AdvisoryIndex::build(feed.advisories, None, None);
        let key: EcosystemKey = "Debian:12".parse().unwrap();
        let installed = Version::parse(Scheme::Deb, "0~git20230101-1").unwrap();
        let matches = idx.match_package(&key, "snap", &installed);
        let found: Vec<_> = matches
            .iter()
            .map(|m| {
                (
                    idx.advisory(m.advisory).id.as_str(),
                    m.fixed.as_ref().map(Version::as_str),
                )
            })
            .collect();
        assert_eq!(found, [("DSA-5380-1", Some("1.0-1")), ("DSA-5381-1", None)]);
    }
}
