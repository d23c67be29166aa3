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
use crate::version::Version;

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

#[derive(Clone, Debug)]
struct CompiledEvent {
    kind: EventKind,
    /// `None` for the unbounded limit `*`.
    version: Option<Version>,
}

#[derive(Clone, Debug)]
struct CompiledAffected {
    advisory: AdvisoryId,
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
        let mut events = Vec::new();
        for event in &range.events {
            let kind = match event {
                Event::Introduced(_) => EventKind::Introduced,
                Event::Fixed(_) => EventKind::Fixed,
                Event::LastAffected(_) => EventKind::LastAffected,
                Event::Limit(_) => EventKind::Limit,
            };
            let version = match (kind, event.version()) {
                (EventKind::Limit, "*") => None,
                // Loading already validated every version; anything else is left out.
                (_, text) => Some(Version::parse(scheme, text).ok()?),
            };
            events.push(CompiledEvent { kind, version });
        }
        // OSV evaluates events in version order; "*" sorts last.
        events.sort_by(|a, b| match (&a.version, &b.version) {
            (Some(x), Some(y)) => x.compare(y),
            (None, None) => Ordering::Equal,
            (None, Some(_)) => Ordering::Greater,
            (Some(_), None) => Ordering::Less,
        });
        ranges.push(events);
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

/// OSV's evaluation over events sorted by version.
fn range_affects(events: &[CompiledEvent], installed: &Version) -> Option<Option<Version>> {
    let mut affected = false;
    for event in events {
        let Some(version) = &event.version else {
            // Unbounded limit: no effect.
            continue;
        };
        let order = installed.compare(version);
        if order == Ordering::Less {
            break;
        }
        match event.kind {
            EventKind::Introduced => affected = true,
            EventKind::Fixed | EventKind::Limit => affected = false,
            EventKind::LastAffected if order == Ordering::Greater => affected = false,
            EventKind::LastAffected => {}
        }
    }
    if !affected {
        return None;
    }
    // The range closes at the first fix, last_affected or limit at or above the installed
    // version; only a fix names a fixed version.
    let closing = events.iter().find(|e| {
        e.kind != EventKind::Introduced
            && e.version
                .as_ref()
                .is_some_and(|v| installed.compare(v) != Ordering::Greater)
    });
    Some(
        closing
            .filter(|e| e.kind == EventKind::Fixed)
            .and_then(|e| e.version.clone()),
    )
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
}
