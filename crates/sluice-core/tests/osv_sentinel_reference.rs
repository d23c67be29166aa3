//! OSV range matching checked against the reference orders, with OSV's sentinels applied.
//!
//! Generated Debian and RPM cases, many of them around and below the version `0` (`0~rc1`,
//! `0~git20230101-1`, `0-~1`, rpm's `~1` and `^1`, epoch 0), each one advisory whose ranges start
//! at `introduced: "0"` or at another version (`0~`, `0.0`, …) and close with `fixed`,
//! `last_affected` or `limit` events (`*` among them). The expected answer is the OSV
//! specification's evaluation, written here independently of Sluice: `introduced: "0"` is before
//! every version, a limit containing `*` is no limit, and every other value is a version ordered by
//! the reference tool, called once per batch: apt's `apt_pkg.version_compare` (with
//! `dpkg --compare-versions` itself on a sample) and rpm 4.18's `rpm.vercmp`. The fixed version is
//! checked by the rule docs/feeds.md states. Sluice runs the real path: OSV JSON parsed, an
//! `AdvisoryIndex` built, each installed version matched.
//!
//! Needs the apt packages `rpm`, `dpkg` and `python3-apt`; a missing tool fails the test with the
//! package to install.

// The helpers below are test code too: failing loudly is their job.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::cmp::Ordering;
use std::collections::{HashMap, HashSet};
use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::time::Instant;

use serde_json::{Value, json};
use sluice_core::advisory::osv;
use sluice_core::ecosystem::EcosystemKey;
use sluice_core::matching::AdvisoryIndex;
use sluice_core::version::{Scheme, Version};

const MANIFEST_DIR: &str = env!("CARGO_MANIFEST_DIR");
const CASES_PER_SCHEME: usize = 6_000;
/// Every DPKG_STRIDE-th distinct Debian pair also goes through dpkg itself.
const DPKG_STRIDE: usize = 150;
/// Debian's python, which has apt_pkg; the `python3` on PATH may be another one.
const DEBIAN_PYTHON: &str = "/usr/bin/python3";
/// OSV's start sentinel, as the feeds write it.
const START: &str = "0";

// ---------------------------------------------------------------------------------------------
// The reference tools, batched: one process per scheme for all pairs.

fn run_tool(command: &mut Command, apt_package: &str) -> Output {
    let program = command.get_program().to_string_lossy().into_owned();
    match command.output() {
        Ok(output) => output,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => panic!(
            "reference tool `{program}` is missing: install the apt package `{apt_package}` \
             (apt-get install -y {apt_package})"
        ),
        Err(e) => panic!("cannot run `{program}`: {e}"),
    }
}

fn check_success(output: &Output, what: &str) {
    assert!(
        output.status.success(),
        "{what} failed ({}): {}{}",
        output.status,
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
}

fn reference_script(name: &str) -> PathBuf {
    Path::new(MANIFEST_DIR).join("tests/reference").join(name)
}

fn write_pairs(dir: &Path, pairs: &[(String, String)]) -> PathBuf {
    let path = dir.join("pairs.tsv");
    let mut text = String::new();
    for (a, b) in pairs {
        assert!(!a.contains(['\t', '\n']) && !b.contains(['\t', '\n']));
        text.push_str(a);
        text.push('\t');
        text.push_str(b);
        text.push('\n');
    }
    std::fs::write(&path, text).unwrap();
    path
}

/// The tool's verdicts, one per pair; a refused version fails the test (the generator only
/// makes versions both Sluice and the tool accept).
fn read_verdicts(path: &Path, pairs: &[(String, String)], tool: &str) -> Vec<Ordering> {
    let text = std::fs::read_to_string(path)
        .unwrap_or_else(|e| panic!("{tool} wrote no verdicts ({}): {e}", path.display()));
    let verdicts: Vec<Ordering> = text
        .lines()
        .zip(pairs)
        .map(|(line, (a, b))| match line.trim() {
            "-1" => Ordering::Less,
            "0" => Ordering::Equal,
            "1" => Ordering::Greater,
            other => panic!("{tool} on {a:?} vs {b:?}: verdict {other:?}"),
        })
        .collect();
    assert_eq!(verdicts.len(), pairs.len(), "{tool}: one verdict per pair");
    verdicts
}

fn apt_verdicts(pairs: &[(String, String)]) -> Vec<Ordering> {
    let dir = tempfile::tempdir().unwrap();
    let input = write_pairs(dir.path(), pairs);
    let output_path = dir.path().join("verdicts");
    let output = run_tool(
        Command::new(DEBIAN_PYTHON)
            .arg(reference_script("deb_apt_compare.py"))
            .arg(&input)
            .arg(&output_path),
        "python3-apt",
    );
    if output.status.code() == Some(3) {
        panic!("python's apt_pkg is missing: install the apt package `python3-apt`");
    }
    check_success(&output, "deb_apt_compare.py");
    read_verdicts(&output_path, pairs, "apt_pkg")
}

fn dpkg_verdicts(pairs: &[(String, String)]) -> Vec<Ordering> {
    let dir = tempfile::tempdir().unwrap();
    let input = write_pairs(dir.path(), pairs);
    let output_path = dir.path().join("verdicts");
    let output = run_tool(
        Command::new("sh")
            .arg(reference_script("dpkg_compare.sh"))
            .arg(&input)
            .arg(&output_path),
        "dpkg",
    );
    check_success(&output, "dpkg_compare.sh");
    read_verdicts(&output_path, pairs, "dpkg")
}

fn rpm_verdicts(pairs: &[(String, String)]) -> Vec<Ordering> {
    let dir = tempfile::tempdir().unwrap();
    let input = write_pairs(dir.path(), pairs);
    let output_path = dir.path().join("verdicts");
    let output = run_tool(
        Command::new("rpm")
            .env("SLUICE_PAIRS", &input)
            .env("SLUICE_VERDICTS", &output_path)
            .arg("--eval")
            .arg(format!(
                "%{{lua: dofile(\"{}\")}}",
                reference_script("rpm_vercmp.lua").display()
            )),
        "rpm",
    );
    check_success(&output, "rpm --eval");
    read_verdicts(&output_path, pairs, "rpm")
}

/// A reference order: the tool's verdict for every pair a case needs, asked for in one batch.
struct Oracle {
    verdicts: HashMap<(String, String), Ordering>,
}

impl Oracle {
    fn ask(
        pairs: HashSet<(String, String)>,
        tool: fn(&[(String, String)]) -> Vec<Ordering>,
    ) -> Self {
        let mut pairs: Vec<(String, String)> = pairs.into_iter().collect();
        pairs.sort();
        let verdicts = tool(&pairs);
        Self {
            verdicts: pairs.into_iter().zip(verdicts).collect(),
        }
    }

    /// How `a` orders against `b`.
    fn cmp(&self, a: &str, b: &str) -> Ordering {
        if a == b {
            return Ordering::Equal;
        }
        if let Some(verdict) = self.verdicts.get(&(a.to_owned(), b.to_owned())) {
            return *verdict;
        }
        match self.verdicts.get(&(b.to_owned(), a.to_owned())) {
            Some(verdict) => verdict.reverse(),
            None => panic!("no verdict asked for {a:?} vs {b:?}"),
        }
    }
}

// ---------------------------------------------------------------------------------------------
// Cases

/// SplitMix64: small and deterministic.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    fn below(&mut self, n: usize) -> usize {
        (self.next() % n as u64) as usize
    }

    fn chance(&mut self, percent: usize) -> bool {
        self.below(100) < percent
    }

    fn pick<'a>(&mut self, items: &[&'a str]) -> &'a str {
        items[self.below(items.len())]
    }
}

/// Pieces that keep versions near `0`, above and below it.
const NEAR_ZERO: &[&str] = &[
    "~",
    "~~",
    "~rc1",
    "~git20230101",
    "~beta2",
    "~pre",
    ".",
    ".0",
    ".1",
    "+",
    "+dfsg",
    "a",
    "1",
    "0",
    "2",
    "10",
];

fn deb_version(rng: &mut Rng) -> String {
    let mut s = String::new();
    if rng.chance(15) {
        s.push_str(rng.pick(&["0:", "0:", "1:"]));
    }
    s.push_str(rng.pick(&["0", "0", "0", "00", "1", "2", "0", "10"]));
    for _ in 0..rng.below(4) {
        s.push_str(rng.pick(NEAR_ZERO));
    }
    if rng.chance(50) {
        s.push('-');
        s.push_str(rng.pick(&["0", "1", "2", "~1", "0~1", "1~bpo1", "1+b1", "0.1", "~"]));
    }
    s
}

fn rpm_version(rng: &mut Rng) -> String {
    let mut s = String::new();
    if rng.chance(15) {
        s.push_str(rng.pick(&["0:", "0:", "1:"]));
    }
    // rpm needs no leading digit: `~1`, `^1` and `a1` sort below `0`.
    s.push_str(rng.pick(&["0", "0", "0", "00", "1", "2", "10", "~", "^", "a", "0"]));
    for _ in 0..rng.below(4) {
        s.push_str(rng.pick(&[
            "~",
            "~~",
            "~rc1",
            "~git20230101",
            "^",
            "^git1",
            ".",
            ".0",
            ".1",
            "_",
            "a",
            "1",
            "0",
            "2",
        ]));
    }
    if rng.chance(60) {
        s.push('-');
        s.push_str(rng.pick(&["0", "1", "2", "~1", "0~1", "1.el9", "^1", ""]));
    }
    s
}

#[derive(Clone, Debug)]
enum Ev {
    Introduced(String),
    Fixed(String),
    LastAffected(String),
    Limit(String),
}

impl Ev {
    fn text(&self) -> &str {
        match self {
            Ev::Introduced(v) | Ev::Fixed(v) | Ev::LastAffected(v) | Ev::Limit(v) => v,
        }
    }

    /// The two sentinels, as the OSV specification states them.
    fn is_start(&self) -> bool {
        matches!(self, Ev::Introduced(v) if v == START)
    }

    fn is_infinite(&self) -> bool {
        matches!(self, Ev::Limit(v) if v.contains('*'))
    }

    fn json(&self) -> Value {
        match self {
            Ev::Introduced(v) => json!({"introduced": v}),
            Ev::Fixed(v) => json!({"fixed": v}),
            Ev::LastAffected(v) => json!({"last_affected": v}),
            Ev::Limit(v) => json!({"limit": v}),
        }
    }
}

struct Case {
    installed: String,
    ranges: Vec<Vec<Ev>>,
}

fn generate(
    rng: &mut Rng,
    make: fn(&mut Rng) -> String,
    count: usize,
    scheme: Scheme,
) -> Vec<Case> {
    let version = |rng: &mut Rng| loop {
        let text = make(rng);
        if Version::parse(scheme, &text).is_ok() {
            return text;
        }
    };
    let mut cases = Vec::with_capacity(count);
    while cases.len() < count {
        let installed = version(rng);
        let mut ranges = Vec::new();
        for _ in 0..1 + usize::from(rng.chance(20)) {
            let mut events = Vec::new();
            // Half the ranges start at the sentinel; the rest at a version, often one that
            // looks like it ("0~", "0.0", "0:0") but is not.
            let introduced = match rng.below(10) {
                0..=4 => START.to_owned(),
                5 => rng.pick(&["0~", "0.0", "0:0", "00", "0-0"]).to_owned(),
                _ => version(rng),
            };
            events.push(Ev::Introduced(introduced));
            let closing_last_affected = rng.chance(20);
            if rng.chance(75) {
                events.push(if closing_last_affected {
                    Ev::LastAffected(version(rng))
                } else {
                    Ev::Fixed(version(rng))
                });
            }
            for _ in 0..rng.below(3) {
                events.push(match rng.below(10) {
                    0..=4 if closing_last_affected => Ev::LastAffected(version(rng)),
                    0..=4 => Ev::Fixed(version(rng)),
                    5 | 6 => Ev::Introduced(if rng.chance(30) {
                        START.to_owned()
                    } else {
                        version(rng)
                    }),
                    7 => Ev::Limit(rng.pick(&["*", "*", "1.*"]).to_owned()),
                    _ => Ev::Limit(version(rng)),
                });
            }
            // Feeds need not sort their events.
            if rng.chance(30) {
                let i = rng.below(events.len());
                let j = rng.below(events.len());
                events.swap(i, j);
            }
            ranges.push(events);
        }
        cases.push(Case { installed, ranges });
    }
    cases
}

/// Every pair of versions the expected answers compare.
fn pairs_needed(cases: &[Case]) -> HashSet<(String, String)> {
    let mut pairs = HashSet::new();
    let mut add = |a: &str, b: &str| {
        if a != b {
            let (a, b) = if a < b { (a, b) } else { (b, a) };
            pairs.insert((a.to_owned(), b.to_owned()));
        }
    };
    for case in cases {
        add(&case.installed, START);
        let versions: Vec<&str> = case
            .ranges
            .iter()
            .flatten()
            .filter(|e| !e.is_start() && !e.is_infinite())
            .map(Ev::text)
            .collect();
        for (i, a) in versions.iter().enumerate() {
            add(&case.installed, a);
            // For the count of cases that reading "0" as a version gets wrong.
            add(START, a);
            for b in &versions[i + 1..] {
                add(a, b);
            }
        }
    }
    pairs
}

// ---------------------------------------------------------------------------------------------
// The expected answer: OSV's evaluation over the reference order

/// Orders two events' positions: the start before everything, infinity after everything.
/// `naive` reads `introduced: "0"` as the version 0, as Sluice did before.
fn event_cmp(oracle: &Oracle, a: &Ev, b: &Ev, naive: bool) -> Ordering {
    let start = |e: &Ev| e.is_start() && !naive;
    match (start(a), start(b), a.is_infinite(), b.is_infinite()) {
        (true, true, _, _) | (_, _, true, true) => Ordering::Equal,
        (true, _, _, _) | (_, _, _, true) => Ordering::Less,
        (_, true, _, _) | (_, _, true, _) => Ordering::Greater,
        _ => oracle.cmp(a.text(), b.text()),
    }
}

/// Stable insertion sort by the reference order (OSV's `sorted(range.events)`, ties in feed
/// order).
fn sorted<'e>(oracle: &Oracle, events: &'e [Ev], naive: bool) -> Vec<&'e Ev> {
    let mut out: Vec<&Ev> = Vec::with_capacity(events.len());
    for event in events {
        let at = out
            .iter()
            .rposition(|e| event_cmp(oracle, e, event, naive) != Ordering::Greater)
            .map_or(0, |p| p + 1);
        out.insert(at, event);
    }
    out
}

/// `None` when not affected, else the fix docs/feeds.md says is reported.
fn expected(oracle: &Oracle, case: &Case, naive: bool) -> Option<Option<String>> {
    let v = case.installed.as_str();
    // `naive` reads "0" as the version 0: the behaviour the issue reported.
    let at_or_above =
        |e: &Ev| (e.is_start() && !naive) || oracle.cmp(v, e.text()) != Ordering::Less;
    let mut result: Option<Option<String>> = None;
    for range in &case.ranges {
        // BeforeLimits.
        let limits: Vec<&Ev> = range.iter().filter(|e| matches!(e, Ev::Limit(_))).collect();
        if !limits.is_empty()
            && !limits
                .iter()
                .any(|l| l.is_infinite() || oracle.cmp(v, l.text()) == Ordering::Less)
        {
            continue;
        }
        let order = sorted(oracle, range, naive);
        let mut vulnerable = false;
        for event in &order {
            match event {
                Ev::Introduced(_) if at_or_above(event) => vulnerable = true,
                Ev::Fixed(f) if oracle.cmp(v, f) != Ordering::Less => vulnerable = false,
                Ev::LastAffected(l) if oracle.cmp(v, l) == Ordering::Greater => vulnerable = false,
                _ => {}
            }
        }
        if !vulnerable {
            continue;
        }
        // The first fixed, last_affected or (finite) limit at or above the installed version
        // closes the range; only a fix names a version.
        let closing = order.iter().find(|e| {
            !matches!(e, Ev::Introduced(_))
                && !e.is_infinite()
                && oracle.cmp(v, e.text()) != Ordering::Greater
        });
        let fix = match closing {
            Some(Ev::Fixed(f)) => Some(f.clone()),
            _ => None,
        };
        // Ranges merge keeping the lowest fix (the first of equal ones).
        result = Some(match (result.flatten(), fix) {
            (Some(a), Some(b)) if oracle.cmp(&b, &a) == Ordering::Less => Some(b),
            (Some(a), _) => Some(a),
            (None, b) => b,
        });
    }
    result
}

// ---------------------------------------------------------------------------------------------
// The check

fn feed_json(ecosystem: &str, cases: &[Case]) -> String {
    let records: Vec<Value> = cases
        .iter()
        .enumerate()
        .map(|(i, case)| {
            let ranges: Vec<Value> = case
                .ranges
                .iter()
                .map(|events| {
                    json!({"type": "ECOSYSTEM", "events": events.iter().map(Ev::json).collect::<Vec<_>>()})
                })
                .collect();
            json!({
                "id": format!("T-{i}"),
                "affected": [{"package": {"ecosystem": ecosystem, "name": format!("p{i}")}, "ranges": ranges}]
            })
        })
        .collect();
    Value::Array(records).to_string()
}

fn check_scheme(
    scheme: Scheme,
    ecosystem: &str,
    seed: u64,
    make: fn(&mut Rng) -> String,
    tool: fn(&[(String, String)]) -> Vec<Ordering>,
) -> Oracle {
    let started = Instant::now();
    let cases = generate(&mut Rng(seed), make, CASES_PER_SCHEME, scheme);
    let pairs = pairs_needed(&cases);
    let pair_count = pairs.len();
    let oracle = Oracle::ask(pairs, tool);

    let feed = osv::parse_json("generated.json", feed_json(ecosystem, &cases).as_bytes()).unwrap();
    assert!(
        feed.issues.is_empty(),
        "{:?}",
        &feed.issues[..feed.issues.len().min(5)]
    );
    let index = AdvisoryIndex::build(feed.advisories, None, None);
    let key: EcosystemKey = ecosystem.parse().unwrap();

    let (mut affected, mut below_zero, mut missed_naively, mut fixes) = (0, 0, 0, 0);
    let mut wrong = Vec::new();
    for (i, case) in cases.iter().enumerate() {
        let want = expected(&oracle, case, false);
        let installed = Version::parse(scheme, &case.installed).unwrap();
        let matches = index.match_package(&key, &format!("p{i}"), &installed);
        assert!(matches.len() <= 1);
        let got = matches
            .first()
            .map(|m| m.fixed.as_ref().map(|f| f.as_str().to_owned()));
        if got != want {
            wrong.push(format!(
                "{:?} in {:?}: Sluice {got:?}, expected {want:?}",
                case.installed, case.ranges
            ));
        }
        if let Some(fix) = &want {
            affected += 1;
            fixes += usize::from(fix.is_some());
            if oracle.cmp(&case.installed, START) == Ordering::Less {
                below_zero += 1;
            }
            if expected(&oracle, case, true).is_none() {
                missed_naively += 1;
            }
        }
    }
    eprintln!(
        "{scheme}: {} cases, {affected} affected ({fixes} with a fix named), {below_zero} of \
         them below \"0\", {missed_naively} missed when \"0\" is read as a version; {pair_count} \
         reference pairs; {:?}",
        cases.len(),
        started.elapsed()
    );
    assert!(
        wrong.is_empty(),
        "{scheme}: {} of {} cases disagree with the OSV rule over the reference order:\n{}",
        wrong.len(),
        cases.len(),
        wrong[..wrong.len().min(20)].join("\n")
    );
    // The generator must keep producing what the sentinel is about.
    assert!(
        affected * 4 > cases.len(),
        "{scheme}: too few affected cases"
    );
    assert!(below_zero * 50 > affected, "{scheme}: too few below \"0\"");
    assert!(
        missed_naively * 100 > affected,
        "{scheme}: too few cases the sentinel decides"
    );
    assert!(fixes * 3 > affected, "{scheme}: too few fixes named");
    oracle
}

#[test]
fn debian_ranges_match_the_osv_rule_over_dpkg_order() {
    let oracle = check_scheme(
        Scheme::Deb,
        "Debian:12",
        0x0_5E17_0001,
        deb_version,
        apt_verdicts,
    );
    // apt_pkg stands in for dpkg; dpkg itself decides a sample of the same pairs.
    let mut sample: Vec<((String, String), Ordering)> = oracle
        .verdicts
        .iter()
        .map(|(pair, verdict)| (pair.clone(), *verdict))
        .collect();
    sample.sort();
    let sample: Vec<_> = sample.into_iter().step_by(DPKG_STRIDE).collect();
    let pairs: Vec<(String, String)> = sample.iter().map(|(p, _)| p.clone()).collect();
    let dpkg = dpkg_verdicts(&pairs);
    for ((pair, apt), dpkg) in sample.iter().zip(&dpkg) {
        assert_eq!(apt, dpkg, "apt_pkg and dpkg disagree on {pair:?}");
    }
    assert!(pairs.len() > 100, "dpkg sample of {}", pairs.len());
}

#[test]
fn rpm_ranges_match_the_osv_rule_over_rpm_order() {
    check_scheme(
        Scheme::Rpm,
        "AlmaLinux:9",
        0x0_5E17_0002,
        rpm_version,
        rpm_verdicts,
    );
}
