//! Benchmarks of the vulnerability-intelligence core (`cargo bench -p sluice-core`).
//!
//! - CVSS parse + score per vector (3.1 and 4.0, the FIRST calculator's vectors);
//! - Debian and RPM comparisons of parsed versions, per pair;
//! - one 1,500-package host against the whole DSA list plus the AlmaLinux-8 feed, feed loading
//!   included (the feeds shipped in `examples/feeds`);
//! - a fleet of 10,000 hosts × 2,000 packages against 100,000 generated advisories, twice:
//!   "uniform" (5,000 generated package names, four versions each in the whole fleet, most hosts
//!   on the same one) and "spread" (real package lists, `bench/fixtures/real_fleet.rs`: each host
//!   0 to 5 point releases behind, package by package). The match memo remembers each distinct
//!   (package, version) pair, so the spread costs more; both print how many pairs there were.

// A benchmark's fixtures are known good; failing loudly is what we want.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic, missing_docs)]

use std::hint::black_box;
use std::path::Path;
use std::time::Duration;

use criterion::{BatchSize, Criterion, criterion_group, criterion_main};
use sluice_core::advisory::{
    self, Advisory, Affected, Event, FeedFormat, Range, RangeKind, UpdateType,
};
use sluice_core::asset::AssetProfile;
use sluice_core::cvss::Cvss;
use sluice_core::ecosystem::EcosystemKey;
use sluice_core::finding::scan_host;
use sluice_core::inventory::InstalledPackage;
use sluice_core::matching::{AdvisoryIndex, FleetHost};
use sluice_core::priority::PriorityPolicy;
use sluice_core::version::{Scheme, Version};

#[path = "../../../bench/fixtures/real_fleet.rs"]
mod real_fleet;

/// A small deterministic generator (splitmix64) so runs are comparable.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }

    fn below(&mut self, n: usize) -> usize {
        (self.next() % n as u64) as usize
    }
}

/// The machine's load averages (1, 5, 15 minutes), printed with the figures: the benchmark
/// shares its cores with whatever else runs.
fn load_average() -> String {
    std::fs::read_to_string("/proc/loadavg").map_or_else(
        |_| "unknown".to_owned(),
        |text| {
            text.split_whitespace()
                .take(3)
                .collect::<Vec<_>>()
                .join(" ")
        },
    )
}

fn fixture_vectors(file: &str) -> Vec<String> {
    let path = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures/cvss")
        .join(file);
    std::fs::read_to_string(&path)
        .unwrap_or_else(|e| panic!("{}: {e}", path.display()))
        .lines()
        .filter_map(|l| l.split(" - ").next())
        .filter(|v| v.starts_with("CVSS:"))
        .map(str::to_owned)
        .collect()
}

fn cvss(c: &mut Criterion) {
    println!("load average before cvss: {}", load_average());
    let mut group = c.benchmark_group("cvss");
    for (name, file) in [("3.1", "vectors_simple31"), ("4.0", "vectors_simple4")] {
        let vectors = fixture_vectors(file);
        let mut i = 0;
        group.bench_function(format!("parse+score {name} (per vector)"), |b| {
            b.iter(|| {
                i = (i + 1) % vectors.len();
                let parsed = Cvss::parse(black_box(&vectors[i])).unwrap();
                black_box(parsed.score())
            })
        });
    }
    group.finish();
}

fn deb_versions(rng: &mut Rng, n: usize) -> Vec<String> {
    (0..n)
        .map(|_| {
            let epoch = if rng.below(10) == 0 { "1:" } else { "" };
            let tilde = match rng.below(4) {
                0 => "~rc1",
                1 => "+dfsg",
                _ => "",
            };
            format!(
                "{epoch}{}.{}.{}{tilde}-{}+deb11u{}",
                rng.below(4),
                rng.below(20),
                rng.below(12),
                rng.below(5) + 1,
                rng.below(4)
            )
        })
        .collect()
}

fn rpm_versions(rng: &mut Rng, n: usize) -> Vec<String> {
    (0..n)
        .map(|_| {
            format!(
                "{}:{}.{}.{}-{}.el8_{}",
                rng.below(2),
                rng.below(4),
                rng.below(20),
                rng.below(12),
                rng.below(300),
                rng.below(10)
            )
        })
        .collect()
}

fn versions(c: &mut Criterion) {
    println!("load average before version: {}", load_average());
    let mut rng = Rng(7);
    let mut group = c.benchmark_group("version");
    for (name, scheme, texts) in [
        ("deb", Scheme::Deb, deb_versions(&mut rng, 4096)),
        ("rpm", Scheme::Rpm, rpm_versions(&mut rng, 4096)),
    ] {
        let parsed: Vec<Version> = texts
            .iter()
            .map(|t| Version::parse(scheme, t).unwrap())
            .collect();
        let mut i = 0;
        group.bench_function(format!("compare parsed {name} (per pair)"), |b| {
            b.iter(|| {
                i = (i + 1) & 4095;
                black_box(parsed[i].compare(&parsed[(i * 7 + 3) & 4095]))
            })
        });
        let mut j = 0;
        group.bench_function(format!("parse {name} (per version)"), |b| {
            b.iter(|| {
                j = (j + 1) & 4095;
                black_box(Version::parse(scheme, black_box(&texts[j])).unwrap())
            })
        });
    }
    group.finish();
}

fn feed_bytes(name: &str) -> Vec<u8> {
    let path = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../../examples/feeds")
        .join(name);
    std::fs::read(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

fn host(c: &mut Criterion) {
    let dsa = feed_bytes("DSA-list");
    let alma = feed_bytes("AlmaLinux-8.zip");
    let kev = feed_bytes("known_exploited_vulnerabilities.json");
    // 1,500 packages: every bullseye source the DSA list names at a version below its first fix
    // where possible, padded with packages no advisory names.
    let first = advisory::parse_feed("DSA-list", &dsa).unwrap();
    let eco: EcosystemKey = "Debian:11".parse().unwrap();
    let mut packages: Vec<InstalledPackage> = Vec::new();
    let mut seen = std::collections::HashSet::new();
    for adv in &first.advisories {
        for affected in &adv.affected {
            if affected.key.as_ref() != Some(&eco) || !seen.insert(affected.package.clone()) {
                continue;
            }
            for binary in 0..3 {
                packages.push(InstalledPackage {
                    name: format!("{}-bin{binary}", affected.package),
                    version: "0.1-1".to_owned(),
                    arch: None,
                    source_name: affected.package.clone(),
                    source_version: "0.1-1".to_owned(),
                });
            }
        }
    }
    let mut filler = 0;
    while packages.len() < 1500 {
        filler += 1;
        packages.push(InstalledPackage {
            name: format!("quiet-package-{filler}"),
            version: "1.0-1".to_owned(),
            arch: None,
            source_name: format!("quiet-package-{filler}"),
            source_version: "1.0-1".to_owned(),
        });
    }
    packages.truncate(1500);
    let policy = PriorityPolicy::default();
    let asset = AssetProfile::default();
    let today = jiff::civil::date(2026, 11, 25);
    println!("load average before host: {}", load_average());
    let mut group = c.benchmark_group("host");
    group
        .sample_size(10)
        .measurement_time(Duration::from_secs(10));
    group.bench_function(
        "1500 packages vs DSA list + AlmaLinux-8, loading included",
        |b| {
            b.iter(|| {
                let mut feed = advisory::parse_feed("DSA-list", &dsa).unwrap();
                feed.extend(advisory::parse_feed("AlmaLinux-8.zip", &alma).unwrap());
                let kev = advisory::Kev::parse("kev.json", &kev).unwrap();
                let index = AdvisoryIndex::build(feed.advisories, Some(&kev), None);
                let (findings, _) = scan_host(&index, &eco, &packages, &asset, &policy, today);
                black_box(findings.len())
            })
        },
    );
    group.finish();
}

struct Fleet {
    eco: EcosystemKey,
    advisories: Vec<Advisory>,
    names: Vec<String>,
    versions: Vec<Vec<String>>,
}

fn advisory(eco: &EcosystemKey, i: usize, package: &str, fixed: String) -> Advisory {
    Advisory {
        id: format!("GEN-{i}"),
        aliases: vec![format!("CVE-2030-{i:05}")],
        related: Vec::new(),
        summary: None,
        details: None,
        published: None,
        modified: None,
        withdrawn: None,
        severity: Vec::new(),
        affected: vec![Affected {
            ecosystem: eco.osv_name(),
            key: Some(eco.clone()),
            package: package.to_owned(),
            ranges: vec![Range {
                kind: RangeKind::Ecosystem,
                events: vec![Event::Introduced("0".to_owned()), Event::Fixed(fixed)],
            }],
            versions: Vec::new(),
            ecosystem_specific: None,
            database_specific: None,
        }],
        update_type: UpdateType::Security,
        vendor_severity: None,
        database_specific: None,
        origin: FeedFormat::Osv,
    }
}

/// Uniform: 5,000 package names with 4 versions each in circulation (the newest is the fleet's
/// usual one); 100,000 advisories over those names, most of them fixed at or before the usual
/// version, as in a fleet that patches regularly.
fn fleet_universe() -> Fleet {
    let mut rng = Rng(42);
    let names: Vec<String> = (0..5000).map(|i| format!("pkg{i}")).collect();
    let majors: Vec<usize> = (0..names.len()).map(|_| 1 + rng.below(5)).collect();
    let versions: Vec<Vec<String>> = majors
        .iter()
        .map(|major| (0..4).map(|k| format!("{major}.{k}.4-{}", k + 1)).collect())
        .collect();
    let eco: EcosystemKey = "Debian:12".parse().unwrap();
    let advisories = (0..100_000)
        .map(|i| {
            let p = rng.below(names.len());
            let fixed = format!(
                "{}.{}.{}-{}",
                majors[p],
                rng.below(4),
                rng.below(6),
                1 + rng.below(4)
            );
            advisory(&eco, i, &names[p], fixed)
        })
        .collect();
    Fleet {
        eco,
        advisories,
        names,
        versions,
    }
}

/// Uniform hosts: 1,600 packages every host has plus 400 of the rest; each package is at the
/// fleet's usual version on 90% of hosts, at one of three older versions on the others.
fn uniform_hosts(universe: &Fleet) -> Vec<Vec<(&str, &str)>> {
    let mut rng = Rng(99);
    (0..10_000)
        .map(|_| {
            let mut list = Vec::with_capacity(2000);
            for p in 0..2000 {
                let p = if p < 1600 { p } else { 1600 + rng.below(3400) };
                let v = if rng.below(10) == 0 { rng.below(3) } else { 3 };
                list.push((universe.names[p].as_str(), universe.versions[p][v].as_str()));
            }
            list
        })
        .collect()
}

/// Spread: the real universe of `real_fleet` (source packages and their point releases) and
/// 100,000 advisories over its sources: 91 % fixed before any version in the fleet (patched long
/// ago), 8.5 % fixed at one of the point releases (hosts behind it are affected), 0.5 % fixed
/// after the newest (every host that has the package is affected).
fn spread_universe() -> (Vec<real_fleet::Package>, Vec<Advisory>) {
    let packages = real_fleet::universe();
    let mut rng = Rng(43);
    let eco: EcosystemKey = "Debian:12".parse().unwrap();
    let advisories = (0..100_000)
        .map(|i| {
            let package = &packages[rng.below(packages.len())];
            let oldest = package.history.last().unwrap();
            let fixed = match rng.below(1000) {
                0..=4 => format!("{}+fix1", package.history[0]),
                5..=94 => package.history[rng.below(real_fleet::HISTORY)].clone(),
                _ => real_fleet::point_release_before(oldest),
            };
            advisory(&eco, i, &package.source, fixed)
        })
        .collect();
    (packages, advisories)
}

/// Spread hosts: every host has the machine's packages and 2,000 in all (the rest drawn from
/// the DSA list's sources), each at the point release `real_fleet::Spread` picks: (source,
/// source version), as advisories name them.
fn spread_hosts(packages: &[real_fleet::Package]) -> Vec<Vec<(&str, &str)>> {
    let mut rng = Rng(98);
    let machine = 788.min(packages.len());
    (0..10_000)
        .map(|_| {
            let spread = real_fleet::Spread::host(rng.below(100));
            let mut chosen: Vec<usize> = (0..machine).collect();
            let mut extra = std::collections::BTreeSet::new();
            while chosen.len() + extra.len() < 2000 {
                extra.insert(machine + rng.below(packages.len() - machine));
            }
            chosen.extend(extra);
            chosen
                .into_iter()
                .map(|p| {
                    let package = &packages[p];
                    let v = spread.index(rng.below(100));
                    (package.source.as_str(), package.history[v].as_str())
                })
                .collect()
        })
        .collect()
}

/// Hosts matched one by one with an empty memo each, to show what sharing saves.
const COLD_HOSTS: usize = 200;

fn fleet(c: &mut Criterion) {
    let universe = fleet_universe();
    let uniform = uniform_hosts(&universe);
    let (packages, spread_advisories) = spread_universe();
    let spread = spread_hosts(&packages);
    let eco = &universe.eco;
    println!("load average before fleet: {}", load_average());
    let mut group = c.benchmark_group("fleet");
    group
        .sample_size(10)
        .measurement_time(Duration::from_secs(20));
    group.bench_function("index 100,000 advisories", |b| {
        b.iter_batched(
            || universe.advisories.clone(),
            |advisories| black_box(AdvisoryIndex::build(advisories, None, None)),
            BatchSize::LargeInput,
        )
    });
    let workers = std::thread::available_parallelism().map_or(1, |n| n.get());
    for (label, advisories, lists) in [
        ("uniform", universe.advisories.clone(), &uniform),
        ("spread", spread_advisories, &spread),
    ] {
        let hosts: Vec<FleetHost<'_>> = lists
            .iter()
            .map(|packages| FleetHost {
                ecosystem: eco,
                packages,
            })
            .collect();
        let index = AdvisoryIndex::build(advisories, None, None);
        group.bench_function(
            format!("{label}: match 10,000 hosts x 2,000 packages, 1 thread"),
            |b| b.iter(|| black_box(index.match_fleet(&hosts, 1).finding_count())),
        );
        group.bench_function(
            format!("{label}: match 10,000 hosts x 2,000 packages, {workers} threads"),
            |b| b.iter(|| black_box(index.match_fleet(&hosts, workers).finding_count())),
        );
        let result = index.match_fleet(&hosts, 1);
        println!(
            "fleet {label}: {} distinct (package, version) pairs matched of {} host packages, {} findings ({:.0} a host)",
            result.distinct_pairs,
            lists.iter().map(Vec::len).sum::<usize>(),
            result.finding_count(),
            result.finding_count() as f64 / hosts.len() as f64
        );
        // Nothing shared: the first COLD_HOSTS hosts, each matched alone (an empty memo every
        // time), once, timed. What a host costs when no other host has its versions.
        let started = std::time::Instant::now();
        let mut findings = 0;
        for host in &hosts[..COLD_HOSTS] {
            findings += index
                .match_fleet(std::slice::from_ref(host), 1)
                .finding_count();
        }
        let cold = started.elapsed();
        println!(
            "fleet {label}: {COLD_HOSTS} hosts each matched alone (empty memo, 1 thread): {:.2} s, {:.2} ms a host ({findings} findings)",
            cold.as_secs_f64(),
            cold.as_secs_f64() * 1e3 / COLD_HOSTS as f64,
        );
        println!("load average after fleet {label}: {}", load_average());
    }
    group.finish();
}

criterion_group!(benches, cvss, versions, host, fleet);
criterion_main!(benches);
