//! Findings: a package on a host affected by an advisory, prioritised for that host.
//!
//! A finding is (package, installed version, advisory, fixed version or none) plus its priority
//! and due date. For Debian and Ubuntu the advisory names the source package, so every installed
//! binary built from an affected source version gets its own finding (each is a package an update
//! must move); the source is kept alongside.

use std::collections::{BTreeMap, BTreeSet};

use jiff::ToSpan;
use jiff::civil::Date;
use serde::{Deserialize, Serialize};

use crate::advisory::UpdateType;
use crate::asset::AssetProfile;
use crate::cvss::{CvssVersion, Severity};
use crate::ecosystem::EcosystemKey;
use crate::inventory::InstalledPackage;
use crate::matching::{AdvisoryIndex, Match, MatchMemo};
use crate::priority::{self, Decision, PriorityPolicy, SsvcInputs};

/// The CVSS vector a finding was scored with.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct CvssSummary {
    /// 3.0, 3.1 or 4.0.
    pub version: CvssVersion,
    /// The vector.
    pub vector: String,
    /// Its score (3.x base; 4.0 with all metrics present).
    pub score: f64,
}

/// One prioritised finding.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Finding {
    /// Installed binary package.
    pub package: String,
    /// Source package (what Debian advisories name; the package itself for RPM).
    pub source_package: String,
    /// Installed version of the binary package.
    pub installed: String,
    /// The lowest version that fixes the advisory, or `None` when no fix is known.
    pub fixed: Option<String>,
    /// Advisory id.
    pub advisory: String,
    /// CVE ids and other aliases of the advisory.
    pub aliases: Vec<String>,
    /// Advisory summary.
    pub summary: Option<String>,
    /// Security fix, bug fix or enhancement.
    pub update_type: UpdateType,
    /// The best CVSS vector among the advisory and its CVEs.
    pub cvss: Option<CvssSummary>,
    /// Qualitative severity (CVSS, else the distributor's rating).
    pub severity: Option<Severity>,
    /// Listed in CISA KEV.
    pub kev: bool,
    /// Highest EPSS probability among its CVEs.
    pub epss: Option<f64>,
    /// SSVC decision.
    pub decision: Decision,
    /// The decision points behind it.
    pub ssvc: SsvcInputs,
    /// 0–100 priority score.
    pub score: f64,
    /// The due-date tier.
    pub tier: String,
    /// Due date.
    pub due: Date,
}

/// Totals of a scan.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct ScanSummary {
    /// The host's ecosystem.
    pub ecosystem: String,
    /// Installed packages scanned.
    pub packages: usize,
    /// Advisories loaded (all feeds).
    pub advisories_loaded: usize,
    /// Findings.
    pub findings: usize,
    /// Distinct advisories among the findings.
    pub advisories: usize,
    /// Distinct CVEs among the findings.
    pub cves: usize,
    /// Packages with at least one finding.
    pub affected_packages: usize,
    /// Findings with no known fix.
    pub unfixed: usize,
    /// Findings whose advisory is KEV-listed.
    pub kev: usize,
    /// Findings per SSVC decision.
    pub by_decision: BTreeMap<String, usize>,
    /// The earliest due date.
    pub earliest_due: Option<Date>,
}

/// Scans one host: matches its packages, prioritises each finding for the asset and dates it.
///
/// `detected` is the day the findings count from (today for a fresh scan). Findings come sorted by
/// score, highest first, then by advisory and package for a stable order.
pub fn scan_host(
    index: &AdvisoryIndex,
    ecosystem: &EcosystemKey,
    packages: &[InstalledPackage],
    asset: &AssetProfile,
    policy: &PriorityPolicy,
    detected: Date,
) -> (Vec<Finding>, ScanSummary) {
    scan_host_memoized(
        index,
        &mut MatchMemo::default(),
        ecosystem,
        packages,
        asset,
        policy,
        detected,
    )
}

/// [`scan_host`] with a memo kept across hosts (see [`MatchMemo`]): what the server uses, since
/// hosts of a fleet share most package versions.
pub fn scan_host_memoized(
    index: &AdvisoryIndex,
    memo: &mut MatchMemo,
    ecosystem: &EcosystemKey,
    packages: &[InstalledPackage],
    asset: &AssetProfile,
    policy: &PriorityPolicy,
    detected: Date,
) -> (Vec<Finding>, ScanSummary) {
    let by_source = ecosystem.distro.advisories_name_source_packages();
    let mut findings = Vec::new();
    let mut seen = std::collections::HashSet::new();
    for package in packages {
        let (name, version) = if by_source {
            (
                package.source_name.as_str(),
                package.source_version.as_str(),
            )
        } else {
            (package.name.as_str(), package.version.as_str())
        };
        // Inventories were validated when parsed; a version that still fails has no order.
        let matches = index.match_memoized(memo, ecosystem, name, version);
        for found in matches.iter() {
            // A package installed for several architectures (multi-arch) is one finding.
            if seen.insert((package.name.as_str(), found.advisory)) {
                findings.push(finding(index, package, found, asset, policy, detected));
            }
        }
    }
    findings.sort_by(|a, b| {
        b.score
            .total_cmp(&a.score)
            .then_with(|| a.due.cmp(&b.due))
            .then_with(|| a.advisory.cmp(&b.advisory))
            .then_with(|| a.package.cmp(&b.package))
    });
    let summary = summarise(
        ecosystem,
        packages.len(),
        index.advisories().len(),
        &findings,
    );
    (findings, summary)
}

fn finding(
    index: &AdvisoryIndex,
    package: &InstalledPackage,
    found: &Match,
    asset: &AssetProfile,
    policy: &PriorityPolicy,
    detected: Date,
) -> Finding {
    let advisory = index.advisory(found.advisory);
    let facts = index.facts(found.advisory);
    let assessment = priority::assess(facts, asset, policy);
    let mut aliases: Vec<String> = Vec::new();
    for id in advisory.aliases.iter().chain(&advisory.related) {
        if !aliases.contains(id) {
            aliases.push(id.clone());
        }
    }
    let due = detected
        .checked_add(i64::from(assessment.due_in_days).days())
        .unwrap_or(Date::MAX);
    Finding {
        package: package.name.clone(),
        source_package: package.source_name.clone(),
        installed: package.version.clone(),
        fixed: found.fixed.as_ref().map(|v| v.as_str().to_owned()),
        advisory: advisory.id.clone(),
        aliases,
        summary: advisory.summary.clone(),
        update_type: advisory.update_type,
        cvss: facts.cvss.as_ref().map(|c| CvssSummary {
            version: c.version(),
            vector: c.vector().to_owned(),
            score: c.score(),
        }),
        severity: assessment.severity,
        kev: facts.kev,
        epss: facts.epss,
        decision: assessment.decision,
        ssvc: assessment.inputs,
        score: assessment.score,
        tier: assessment.tier,
        due,
    }
}

fn summarise(
    ecosystem: &EcosystemKey,
    packages: usize,
    loaded: usize,
    findings: &[Finding],
) -> ScanSummary {
    let mut summary = ScanSummary {
        ecosystem: ecosystem.osv_name(),
        packages,
        advisories_loaded: loaded,
        findings: findings.len(),
        ..ScanSummary::default()
    };
    let mut advisories = BTreeSet::new();
    let mut cves = BTreeSet::new();
    let mut affected = BTreeSet::new();
    for decision in [
        Decision::Act,
        Decision::Attend,
        Decision::TrackStar,
        Decision::Track,
    ] {
        summary.by_decision.insert(decision.to_string(), 0);
    }
    for f in findings {
        advisories.insert(f.advisory.as_str());
        cves.extend(
            f.aliases
                .iter()
                .map(String::as_str)
                .chain(std::iter::once(f.advisory.as_str()))
                .filter(|a| a.starts_with("CVE-")),
        );
        affected.insert(f.package.as_str());
        summary.unfixed += usize::from(f.fixed.is_none());
        summary.kev += usize::from(f.kev);
        *summary
            .by_decision
            .entry(f.decision.to_string())
            .or_default() += 1;
        summary.earliest_due = Some(summary.earliest_due.map_or(f.due, |d| d.min(f.due)));
    }
    summary.advisories = advisories.len();
    summary.cves = cves.len();
    summary.affected_packages = affected.len();
    summary
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::advisory::{Kev, osv};
    use crate::asset::Exposure;

    #[test]
    fn debian_findings_follow_the_source_package() {
        let feed = osv::parse_json(
            "t.json",
            br#"[{"id": "DSA-1-1", "aliases": ["CVE-2024-0001"], "summary": "openssl - security update",
                 "affected": [{"package": {"ecosystem": "Debian:12", "name": "openssl"},
                 "ranges": [{"type": "ECOSYSTEM", "events": [{"introduced": "0"}, {"fixed": "3.0.11-1~deb12u3"}]}]}]}]"#,
        )
        .unwrap();
        let kev = Kev::parse(
            "kev.json",
            br#"{"catalogVersion": "1", "vulnerabilities": [{"cveID": "CVE-2024-0001"}]}"#,
        )
        .unwrap();
        let index = AdvisoryIndex::build(feed.advisories, Some(&kev), None);
        let package = |name: &str, version: &str| InstalledPackage {
            name: name.into(),
            version: version.into(),
            arch: None,
            source_name: "openssl".into(),
            source_version: version.into(),
        };
        let packages = [
            package("libssl3", "3.0.11-1~deb12u2"),
            package("openssl", "3.0.11-1~deb12u2"),
        ];
        let asset = AssetProfile {
            exposure: Exposure::Internet,
            ..AssetProfile::default()
        };
        let eco: EcosystemKey = "Debian:12".parse().unwrap();
        let today = jiff::civil::date(2026, 11, 25);
        let (findings, summary) = scan_host(
            &index,
            &eco,
            &packages,
            &asset,
            &PriorityPolicy::default(),
            today,
        );
        assert_eq!(findings.len(), 2);
        assert_eq!(findings[0].package, "libssl3");
        assert_eq!(findings[0].source_package, "openssl");
        assert_eq!(findings[0].fixed.as_deref(), Some("3.0.11-1~deb12u3"));
        assert!(findings[0].kev);
        assert_eq!(findings[0].tier, "kev-internet");
        assert_eq!(findings[0].due, jiff::civil::date(2026, 12, 2));
        assert_eq!(summary.advisories, 1);
        assert_eq!(summary.cves, 1);
        assert_eq!(summary.kev, 2);
        assert_eq!(summary.affected_packages, 2);
    }

    #[test]
    fn a_memo_shared_across_hosts_changes_nothing() {
        let feed = osv::parse_json(
            "t.json",
            br#"[{"id": "OSV-1", "affected": [{"package": {"ecosystem": "Debian:12", "name": "curl"},
                 "ranges": [{"type": "ECOSYSTEM", "events": [{"introduced": "0"}, {"fixed": "7.88.1-10"}]}]}]},
                 {"id": "OSV-2", "affected": [{"package": {"ecosystem": "Debian:12", "name": "curl"},
                 "ranges": [{"type": "ECOSYSTEM", "events": [{"introduced": "7.88.1-5"}, {"fixed": "7.88.1-11"}]}]}]}]"#,
        )
        .unwrap();
        let index = AdvisoryIndex::build(feed.advisories, None, None);
        let eco: EcosystemKey = "Debian:12".parse().unwrap();
        let host = |version: &str| {
            vec![InstalledPackage {
                name: "curl".into(),
                version: version.into(),
                arch: None,
                source_name: "curl".into(),
                source_version: version.into(),
            }]
        };
        let today = jiff::civil::date(2026, 11, 25);
        let policy = PriorityPolicy::default();
        let asset = AssetProfile::default();
        let mut memo = MatchMemo::default();
        // Hosts on different versions of one package, some repeated, through one memo.
        for version in [
            "7.88.1-4",
            "7.88.1-6",
            "7.88.1-4",
            "7.88.1-10",
            "7.88.1-12",
            "7.88.1-6",
        ] {
            let fresh = scan_host(&index, &eco, &host(version), &asset, &policy, today).0;
            let memoized = scan_host_memoized(
                &index,
                &mut memo,
                &eco,
                &host(version),
                &asset,
                &policy,
                today,
            )
            .0;
            let ids = |f: &[Finding]| f.iter().map(|f| f.advisory.clone()).collect::<Vec<_>>();
            assert_eq!(ids(&memoized), ids(&fresh), "{version}");
        }
        assert_eq!(memo.len(), 4, "each distinct version matched once");
        let mut open = |v: &str| {
            scan_host_memoized(&index, &mut memo, &eco, &host(v), &asset, &policy, today)
                .0
                .len()
        };
        assert_eq!(
            (
                open("7.88.1-4"),
                open("7.88.1-6"),
                open("7.88.1-10"),
                open("7.88.1-12")
            ),
            (1, 2, 1, 0)
        );
    }
}
