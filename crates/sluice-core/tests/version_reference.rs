//! Version order checked against the reference tools, which stay the oracles:
//!
//! - RPM: rpm 4.18's `rpm.vercmp` (Lua, one `rpm --eval` per batch running
//!   tests/reference/rpm_vercmp.lua) on the osv-scalibr fixture file, on 100,000 generated pairs
//!   and on the invalid-forms table.
//! - Debian: apt's `apt_pkg.version_compare` (tests/reference/deb_apt_compare.py, one process) on
//!   100,000 generated pairs, and `dpkg --compare-versions` itself on every 50th of them (one shell
//!   process, tests/reference/dpkg_compare.sh) and on the invalid-forms table.
//! - Generic: Sluice's own documented order (docs/versions.md), as tables.
//!
//! Needs the apt packages `rpm`, `dpkg` and `python3-apt` (for /usr/bin/python3). A missing tool
//! fails the test with the package to install: a skipped oracle would hide ordering regressions.

// The helpers below are test code too: failing loudly is their job.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::cmp::Ordering;
use std::collections::hash_map::DefaultHasher;
use std::hash::{Hash, Hasher};
use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::time::Instant;

use sluice_core::version::{
    DebVersion, GenericVersion, RpmVersion, Scheme, Version, VersionPart, VersionProblem, compare,
};

const MANIFEST_DIR: &str = env!("CARGO_MANIFEST_DIR");
const FIXTURE: &str = include_str!("fixtures/version/redhat-versions.txt");
const PAIRS_PER_SCHEME: usize = 100_000;
/// Every DPKG_STRIDE-th generated Debian pair also goes through dpkg itself.
const DPKG_STRIDE: usize = 50;
/// Debian's python, which has apt_pkg; the `python3` on PATH may be another one.
const DEBIAN_PYTHON: &str = "/usr/bin/python3";

// ---------------------------------------------------------------------------------------------
// Running the reference tools

/// Runs a reference tool, failing with the apt package to install when it is missing.
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

fn reference_script(name: &str) -> PathBuf {
    Path::new(MANIFEST_DIR).join("tests/reference").join(name)
}

/// A tool's verdict on one pair.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Verdict {
    Order(Ordering),
    /// The tool refused one of the versions.
    Refused,
}

fn write_pairs(dir: &Path, pairs: &[(String, String)]) -> PathBuf {
    let path = dir.join("pairs.tsv");
    let mut text = String::new();
    for (a, b) in pairs {
        assert!(
            !a.contains(['\t', '\n']) && !b.contains(['\t', '\n']),
            "pair not representable: {a:?} {b:?}"
        );
        text.push_str(a);
        text.push('\t');
        text.push_str(b);
        text.push('\n');
    }
    std::fs::write(&path, text).unwrap();
    path
}

fn read_verdicts(path: &Path, expected: usize, tool: &str) -> Vec<Verdict> {
    let text = std::fs::read_to_string(path)
        .unwrap_or_else(|e| panic!("{tool} wrote no verdicts ({}): {e}", path.display()));
    let verdicts: Vec<Verdict> = text
        .lines()
        .map(|line| match line.trim() {
            "-1" => Verdict::Order(Ordering::Less),
            "0" => Verdict::Order(Ordering::Equal),
            "1" => Verdict::Order(Ordering::Greater),
            "E" => Verdict::Refused,
            other => panic!("{tool}: unexpected verdict {other:?}"),
        })
        .collect();
    assert_eq!(verdicts.len(), expected, "{tool}: one verdict per pair");
    verdicts
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

/// rpm.vercmp on every pair, in one `rpm --eval`.
fn rpm_verdicts(pairs: &[(String, String)]) -> Vec<Verdict> {
    let dir = tempfile::tempdir().unwrap();
    let input = write_pairs(dir.path(), pairs);
    let output_path = dir.path().join("verdicts");
    let script = reference_script("rpm_vercmp.lua");
    let output = run_tool(
        Command::new("rpm")
            .env("SLUICE_PAIRS", &input)
            .env("SLUICE_VERDICTS", &output_path)
            .arg("--eval")
            .arg(format!("%{{lua: dofile(\"{}\")}}", script.display())),
        "rpm",
    );
    check_success(&output, "rpm --eval");
    read_verdicts(&output_path, pairs.len(), "rpm")
}

/// apt_pkg.version_compare on every pair, in one python process.
fn apt_verdicts(pairs: &[(String, String)]) -> Vec<Verdict> {
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
    read_verdicts(&output_path, pairs.len(), "apt_pkg")
}

fn require_dpkg() {
    let output = run_tool(Command::new("dpkg").arg("--version"), "dpkg");
    check_success(&output, "dpkg --version");
}

/// `dpkg --compare-versions` on every pair, from one shell process.
fn dpkg_verdicts(pairs: &[(String, String)]) -> Vec<Verdict> {
    require_dpkg();
    let dir = tempfile::tempdir().unwrap();
    let input = write_pairs(dir.path(), pairs);
    let output_path = dir.path().join("verdicts");
    let output = run_tool(
        Command::new("sh")
            .arg(reference_script("dpkg_compare.sh"))
            .arg(&input)
            .arg(&output_path),
        "dash",
    );
    check_success(&output, "dpkg_compare.sh");
    read_verdicts(&output_path, pairs.len(), "dpkg")
}

/// Checks Sluice's order against a tool's verdicts, listing the first disagreements.
fn assert_agrees(scheme: Scheme, pairs: &[(String, String)], verdicts: &[Verdict], tool: &str) {
    let mut disagreements = Vec::new();
    for ((a, b), verdict) in pairs.iter().zip(verdicts) {
        let ours = compare(scheme, a, b).unwrap_or_else(|e| panic!("generated invalid pair: {e}"));
        if Verdict::Order(ours) != *verdict {
            disagreements.push(format!(
                "{a:?} vs {b:?}: Sluice {ours:?}, {tool} {verdict:?}"
            ));
        }
    }
    assert!(
        disagreements.is_empty(),
        "{} of {} pairs disagree with {tool}; first ones:\n{}",
        disagreements.len(),
        pairs.len(),
        disagreements[..disagreements.len().min(20)].join("\n")
    );
}

// ---------------------------------------------------------------------------------------------
// Deterministic pair generation

/// SplitMix64: small, deterministic, good enough to spread test cases.
struct SplitMix64(u64);

impl SplitMix64 {
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

fn digit_run(rng: &mut SplitMix64) -> String {
    match rng.below(20) {
        0 => "0".repeat(1 + rng.below(3)),
        1 => format!("0{}", rng.below(100)),
        // Longer than u64 (20 digits max) and u128 (39): the numeric-run comparison must cope.
        2 => {
            let len = 18 + rng.below(25);
            let mut run: String = (0..len)
                .map(|_| char::from(b'0' + rng.below(10) as u8))
                .collect();
            if rng.chance(50) {
                run.replace_range(0..1, "9");
            }
            run
        }
        3..=6 => rng.below(10_000).to_string(),
        _ => rng.below(12).to_string(),
    }
}

const LETTERS: &[&str] = &[
    "a", "b", "z", "A", "Z", "rc", "alpha", "beta", "dfsg", "ubuntu", "deb", "bpo", "git", "el",
    "p", "pre",
];

/// A version built from a token soup; `punct` lists the separators the scheme allows.
fn token_soup(rng: &mut SplitMix64, punct: &[&str], tokens: usize) -> String {
    let mut s = String::new();
    for _ in 0..tokens {
        match rng.below(10) {
            0..=3 => s.push_str(&digit_run(rng)),
            4..=5 => s.push_str(rng.pick(LETTERS)),
            _ => s.push_str(rng.pick(punct)),
        }
    }
    s
}

const DEB_UPSTREAM_PUNCT: &[&str] = &[".", ".", ".", "+", "~", "~~", "-", ":"];
const DEB_REVISION_PUNCT: &[&str] = &[".", ".", "+", "~", "~~"];

fn deb_version(rng: &mut SplitMix64) -> String {
    let epoch = match rng.below(12) {
        0..=6 => "",
        7 => "0:",
        8 => "1:",
        9 => rng.pick(&["01:", "2:", "10:", "007:"]),
        10 => "2147483647:",
        _ => "1:",
    };
    let mut s = epoch.to_owned();
    s.push_str(&digit_run(rng));
    let tokens = rng.below(7);
    // ':' in the upstream part is only valid with an epoch and '-' only with a revision; invalid
    // candidates are filtered out by the caller.
    s.push_str(&token_soup(rng, DEB_UPSTREAM_PUNCT, tokens));
    if rng.chance(55) {
        s.push('-');
        let tokens = 1 + rng.below(4);
        s.push_str(&token_soup(rng, DEB_REVISION_PUNCT, tokens));
    }
    s
}

const RPM_PUNCT: &[&str] = &[
    ".", ".", ".", "_", "+", "~", "~~", "^", "^", "-", ":", "%", "α", "/",
];

fn rpm_version(rng: &mut SplitMix64) -> String {
    let epoch = match rng.below(12) {
        0..=6 => "",
        7 => "0:",
        8 => "1:",
        9 => rng.pick(&["01:", "2:", "10:", "007:"]),
        10 => "4294967295:",
        _ => "1:",
    };
    let mut s = epoch.to_owned();
    // rpm does not require a leading digit: letters and separators may start the version.
    if rng.chance(80) {
        s.push_str(&digit_run(rng));
    }
    let tokens = rng.below(7);
    s.push_str(&token_soup(rng, RPM_PUNCT, tokens));
    match rng.below(10) {
        0..=3 => {}
        4 => s.push('-'),
        _ => {
            s.push('-');
            let tokens = 1 + rng.below(4);
            s.push_str(&token_soup(rng, RPM_PUNCT, tokens));
        }
    }
    s
}

/// A near-equal partner: one small edit, so that pairs share long prefixes and often compare
/// equal or differ only in the tricky places.
fn mutate(rng: &mut SplitMix64, original: &str, alphabet: &[&str]) -> String {
    let mut chars: Vec<char> = original.chars().collect();
    let at = rng.below(chars.len() + 1);
    match rng.below(12) {
        0 | 1 => {}
        2 => {
            if at < chars.len() {
                chars.remove(at);
            }
        }
        3 | 4 => {
            let token = rng.pick(alphabet);
            chars.splice(at..at, token.chars());
        }
        5 => {
            if at < chars.len() {
                let c = chars[at];
                chars[at] = match c {
                    '0'..='8' => char::from(c as u8 + 1),
                    '9' => '0',
                    'a'..='y' | 'A'..='Y' => char::from(c as u8 + 1),
                    'z' => 'A',
                    'Z' => 'a',
                    _ => rng.pick(alphabet).chars().next().unwrap_or('.'),
                };
            }
        }
        6 => {
            // A leading zero before some digit run: equal by value.
            if let Some(pos) = (at..chars.len()).find(|&i| chars[i].is_ascii_digit()) {
                chars.insert(pos, '0');
            }
        }
        7 => {
            let suffix = rng.pick(&["~", "~rc1", "+b1", ".0", "0", "a", "^git1", "^", ".", "-1"]);
            chars.extend(suffix.chars());
        }
        8 => {
            let epoch = rng.pick(&["0:", "1:", "00:"]);
            chars.splice(0..0, epoch.chars());
        }
        9 => {
            // Drop or add a revision/release.
            if let Some(pos) = chars.iter().rposition(|&c| c == '-') {
                chars.truncate(pos);
            } else {
                chars.extend("-1".chars());
            }
        }
        10 => {
            if at < chars.len() && chars[at].is_ascii_alphabetic() {
                chars[at] = if chars[at].is_ascii_lowercase() {
                    chars[at].to_ascii_uppercase()
                } else {
                    chars[at].to_ascii_lowercase()
                };
            }
        }
        _ => {
            // Swap two neighbours, e.g. "1.a" and "1a.".
            if at + 1 < chars.len() {
                chars.swap(at, at + 1);
            }
        }
    }
    chars.into_iter().collect()
}

/// Valid pairs for `scheme`: mostly a version and a near-equal mutation, some independent.
fn generate_pairs(
    scheme: Scheme,
    seed: u64,
    count: usize,
    make: fn(&mut SplitMix64) -> String,
    alphabet: &[&str],
) -> Vec<(String, String)> {
    let valid = |s: &str| Version::parse(scheme, s).is_ok();
    let mut rng = SplitMix64(seed);
    let mut pairs = Vec::with_capacity(count);
    while pairs.len() < count {
        let a = make(&mut rng);
        if !valid(&a) {
            continue;
        }
        let b = if rng.chance(12) {
            make(&mut rng)
        } else {
            let mut b = mutate(&mut rng, &a, alphabet);
            // Sometimes two edits, to leave the immediate neighbourhood.
            if rng.chance(25) {
                b = mutate(&mut rng, &b, alphabet);
            }
            b
        };
        if !valid(&b) {
            continue;
        }
        if rng.chance(50) {
            pairs.push((a, b));
        } else {
            pairs.push((b, a));
        }
    }
    pairs
}

/// The spread of outcomes, so a generator that drifts into trivial pairs is noticed.
fn assert_spread(scheme: Scheme, pairs: &[(String, String)]) {
    let mut counts = [0usize; 3];
    for (a, b) in pairs {
        let index = match compare(scheme, a, b).unwrap() {
            Ordering::Less => 0,
            Ordering::Equal => 1,
            Ordering::Greater => 2,
        };
        counts[index] += 1;
    }
    eprintln!("{scheme}: {} pairs, </=/> = {counts:?}", pairs.len());
    assert!(
        counts[1] * 10 >= pairs.len()
            && counts[0] * 4 >= pairs.len()
            && counts[2] * 4 >= pairs.len(),
        "{scheme}: outcomes too lopsided: {counts:?}"
    );
}

fn hash_of<T: Hash>(value: &T) -> u64 {
    let mut hasher = DefaultHasher::new();
    value.hash(&mut hasher);
    hasher.finish()
}

// ---------------------------------------------------------------------------------------------
// RPM

/// The fixture lines as (line number, a, expected order, b).
fn fixture_cases() -> Vec<(usize, String, Ordering, String)> {
    let mut cases = Vec::new();
    for (index, line) in FIXTURE.lines().enumerate() {
        let line = line.trim();
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        let fields: Vec<&str> = line.split(' ').collect();
        let [a, op, b] = fields[..] else {
            panic!("redhat-versions.txt:{}: not `a OP b`: {line:?}", index + 1);
        };
        let expected = match op {
            "<" => Ordering::Less,
            "=" => Ordering::Equal,
            ">" => Ordering::Greater,
            _ => panic!("redhat-versions.txt:{}: bad operator {op:?}", index + 1),
        };
        cases.push((index + 1, a.to_owned(), expected, b.to_owned()));
    }
    cases
}

#[test]
fn rpm_fixture_holds_for_sluice_and_for_rpm() {
    let cases = fixture_cases();
    assert!(cases.len() > 150, "fixture shrank to {} cases", cases.len());
    let pairs: Vec<(String, String)> = cases
        .iter()
        .map(|(_, a, _, b)| (a.clone(), b.clone()))
        .collect();
    let verdicts = rpm_verdicts(&pairs);
    let mut wrong = Vec::new();
    for ((line, a, expected, b), verdict) in cases.iter().zip(&verdicts) {
        if *verdict != Verdict::Order(*expected) {
            wrong.push(format!(
                "line {line}: {a} {expected:?} {b}, but rpm says {verdict:?}"
            ));
        }
        match compare(Scheme::Rpm, a, b) {
            Ok(ours) if ours == *expected => {}
            other => wrong.push(format!(
                "line {line}: {a} {expected:?} {b}, Sluice: {other:?}"
            )),
        }
    }
    assert!(
        wrong.is_empty(),
        "fixture disagreements:\n{}",
        wrong.join("\n")
    );
}

#[test]
fn rpm_generated_pairs_match_rpm() {
    let pairs = generate_pairs(
        Scheme::Rpm,
        0x5EED_0002,
        PAIRS_PER_SCHEME,
        rpm_version,
        RPM_PUNCT,
    );
    assert_spread(Scheme::Rpm, &pairs);
    for (a, b) in pairs.iter().take(20_000) {
        let (x, y): (RpmVersion, RpmVersion) = (a.parse().unwrap(), b.parse().unwrap());
        assert_eq!(
            x.compare(&y),
            y.compare(&x).reverse(),
            "antisymmetry {a} {b}"
        );
    }
    let started = Instant::now();
    let verdicts = rpm_verdicts(&pairs);
    eprintln!("rpm: {} pairs in {:?}", pairs.len(), started.elapsed());
    assert_agrees(Scheme::Rpm, &pairs, &verdicts, "rpm");
}

/// Texts Sluice rejects as RPM versions, with what rpm 4.18 does with them: only the empty text
/// is refused by rpm; the rest it orders (whitespace as a separator, an empty epoch as 0, an
/// empty version as the empty string), which would hide broken input.
const RPM_INVALID: &[(&str, VersionProblem, bool)] = &[
    ("", VersionProblem::Empty, true),
    ("1.0 1", VersionProblem::Whitespace, false),
    (" 1.0", VersionProblem::Whitespace, false),
    ("1.0\t", VersionProblem::Whitespace, false),
    ("1.0-1\u{1b}", VersionProblem::ControlCharacter, false),
    (":1.0", VersionProblem::EmptyEpoch, false),
    (":", VersionProblem::EmptyEpoch, false),
    ("4294967296:1.0", VersionProblem::EpochTooLarge, false),
    (
        "99999999999999999999:1.0",
        VersionProblem::EpochTooLarge,
        false,
    ),
    ("1:", VersionProblem::NothingAfterEpoch, false),
    ("-1", VersionProblem::EmptyUpstream, false),
    ("-", VersionProblem::EmptyUpstream, false),
    ("1:-1", VersionProblem::EmptyUpstream, false),
];

#[test]
fn rpm_invalid_forms_are_rejected() {
    for (text, problem, _) in RPM_INVALID {
        let err = text
            .parse::<RpmVersion>()
            .expect_err(&format!("Sluice accepted RPM {text:?}"));
        assert_eq!(err.problem(), problem, "{text:?}: {err}");
        assert_eq!(err.scheme(), Scheme::Rpm);
        assert!(err.to_string().contains("RPM version"), "{err}");
    }
    // What rpm itself does with them, so docs/versions.md stays true. Texts with a tab cannot go
    // through the pair file and are left to the table above.
    let checked: Vec<_> = RPM_INVALID
        .iter()
        .filter(|(text, _, _)| !text.contains('\t'))
        .collect();
    let pairs: Vec<(String, String)> = checked
        .iter()
        .map(|(text, _, _)| (text.to_string(), "1".to_owned()))
        .collect();
    let verdicts = rpm_verdicts(&pairs);
    for ((text, _, rpm_refuses), verdict) in checked.iter().zip(verdicts) {
        assert_eq!(
            verdict == Verdict::Refused,
            *rpm_refuses,
            "rpm on {text:?}: {verdict:?}"
        );
    }
}

#[test]
fn rpm_accepts_what_rpm_orders_even_when_odd() {
    // Documented leniency: these are valid for rpm and for Sluice (see docs/versions.md).
    for text in [
        "a:1",
        "1.1.α",
        "1-",
        "+2-:1",
        "1:2:3",
        "0:1.m+el9:1",
        "1.0-2-3",
    ] {
        assert!(text.parse::<RpmVersion>().is_ok(), "{text:?}");
    }
}

// ---------------------------------------------------------------------------------------------
// Debian

#[test]
fn deb_generated_pairs_match_apt_and_dpkg() {
    let pairs = generate_pairs(
        Scheme::Deb,
        0x5EED_0001,
        PAIRS_PER_SCHEME,
        deb_version,
        &[".", "+", "~", "~~", "-", ":", "a", "0"],
    );
    assert_spread(Scheme::Deb, &pairs);
    for (a, b) in &pairs {
        let (x, y): (DebVersion, DebVersion) = (a.parse().unwrap(), b.parse().unwrap());
        assert_eq!(x.cmp(&y), y.cmp(&x).reverse(), "antisymmetry {a} {b}");
        if x == y {
            assert_eq!(
                hash_of(&x),
                hash_of(&y),
                "equal versions hash alike: {a} {b}"
            );
        }
    }

    let started = Instant::now();
    let apt = apt_verdicts(&pairs);
    eprintln!("apt_pkg: {} pairs in {:?}", pairs.len(), started.elapsed());
    assert_agrees(Scheme::Deb, &pairs, &apt, "apt_pkg");

    let sample: Vec<(String, String)> = pairs.iter().step_by(DPKG_STRIDE).cloned().collect();
    let started = Instant::now();
    let dpkg = dpkg_verdicts(&sample);
    eprintln!("dpkg: {} pairs in {:?}", sample.len(), started.elapsed());
    assert_agrees(Scheme::Deb, &sample, &dpkg, "dpkg");
}

/// What `dpkg --compare-versions` does with a text Sluice rejects.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum DpkgReaction {
    /// Exit status 2, "error: version '…' has bad syntax".
    Error,
    /// A "warning: version '…' has bad syntax" on stderr, then it orders the text anyway.
    Warning,
    /// Accepted silently (dpkg trims whitespace, treats "" as no version, lets strtol read a
    /// signed epoch).
    Silent,
}

fn upstream_char(ch: char) -> VersionProblem {
    VersionProblem::InvalidCharacter {
        ch,
        part: VersionPart::Upstream,
    }
}

fn revision_char(ch: char) -> VersionProblem {
    VersionProblem::InvalidCharacter {
        ch,
        part: VersionPart::Revision,
    }
}

#[test]
fn deb_invalid_forms_are_rejected_and_dpkg_objects() {
    use DpkgReaction::*;
    let table: Vec<(&str, VersionProblem, DpkgReaction)> = vec![
        ("", VersionProblem::Empty, Silent),
        ("1.0 1", VersionProblem::Whitespace, Error),
        (" 1.0", VersionProblem::Whitespace, Silent),
        ("1.0 ", VersionProblem::Whitespace, Silent),
        ("1.0\t", VersionProblem::Whitespace, Silent),
        ("1.0\n", VersionProblem::Whitespace, Warning),
        ("1.0\u{1b}", VersionProblem::ControlCharacter, Warning),
        (":1.0", VersionProblem::EmptyEpoch, Error),
        ("a:1.0", VersionProblem::EpochNotNumber, Error),
        ("1.0:2", VersionProblem::EpochNotNumber, Error),
        ("1a:2", VersionProblem::EpochNotNumber, Error),
        ("+1:2", VersionProblem::EpochNotNumber, Silent),
        ("2147483648:1.0", VersionProblem::EpochTooLarge, Error),
        (
            "99999999999999999999:1.0",
            VersionProblem::EpochTooLarge,
            Error,
        ),
        ("1:", VersionProblem::NothingAfterEpoch, Error),
        ("1.0-", VersionProblem::EmptyRevision, Error),
        ("1:1.0-", VersionProblem::EmptyRevision, Error),
        ("1:-1", VersionProblem::EmptyUpstream, Error),
        ("a1.0", VersionProblem::UpstreamNotDigit, Warning),
        ("1:a1.0-1", VersionProblem::UpstreamNotDigit, Warning),
        ("~1", VersionProblem::UpstreamNotDigit, Warning),
        ("1.0_1", upstream_char('_'), Warning),
        ("1.0é", upstream_char('é'), Warning),
        ("1.0/1", upstream_char('/'), Warning),
        ("1:1.0-1:2", revision_char(':'), Warning),
        ("1.0-1_2", revision_char('_'), Warning),
        ("1.0-a/b", revision_char('/'), Warning),
    ];

    for (text, problem, _) in &table {
        let err = text
            .parse::<DebVersion>()
            .expect_err(&format!("Sluice accepted Debian {text:?}"));
        assert_eq!(err.problem(), problem, "{text:?}: {err}");
        assert!(err.to_string().contains("Debian version"), "{err}");
    }

    require_dpkg();
    let mut surprises = Vec::new();
    for (text, _, expected) in &table {
        let output = Command::new("dpkg")
            .args(["--compare-versions", text, "eq", "1"])
            .output()
            .unwrap();
        let stderr = String::from_utf8_lossy(&output.stderr);
        let reaction = match output.status.code() {
            Some(2) => Error,
            Some(0 | 1) if stderr.contains("warning") => Warning,
            Some(0 | 1) if stderr.is_empty() => Silent,
            _ => panic!("dpkg on {text:?}: {} {stderr}", output.status),
        };
        if reaction != *expected {
            surprises.push(format!(
                "{text:?}: expected {expected:?}, dpkg: {reaction:?} {stderr}"
            ));
        }
    }
    assert!(surprises.is_empty(), "{}", surprises.join("\n"));
}

#[test]
fn deb_valid_odd_forms_are_accepted() {
    // Valid for dpkg without a warning, so valid for Sluice.
    for text in [
        "1:2:3",
        "0:1.0-1-2",
        "1.0~",
        "0",
        "007:1",
        "1.0-~",
        "1.0+-1",
        "1a",
    ] {
        assert!(text.parse::<DebVersion>().is_ok(), "{text:?}");
    }
}

// ---------------------------------------------------------------------------------------------
// Generic

#[test]
fn generic_ascending_table() {
    let ascending = [
        "0.0.1",
        "0.1",
        "0.9.9",
        "1.0.0-0",
        "1.0.0-1",
        "1.0.0-2",
        "1.0.0-10",
        "1.0.0-alpha",
        "1.0.0-alpha.1",
        "1.0.0-alpha.2",
        "1.0.0-alpha.10",
        "1.0.0-alpha.beta",
        "1.0.0-beta",
        "1.0.0-beta.2",
        "1.0.0-beta.11",
        "1.0.0-rc.1",
        "1.0.0-rc-1",
        "1.0.0",
        "1.0.1",
        "1.2",
        "1.2.0.1",
        "1.10",
        "2",
        "2.0.0.0.1",
        "10.0",
        "2024.1.5",
        "18446744073709551616.0",
        "99999999999999999999999999",
    ];
    for pair in ascending.windows(2) {
        assert_eq!(
            compare(Scheme::Generic, pair[0], pair[1]),
            Ok(Ordering::Less),
            "{} < {}",
            pair[0],
            pair[1]
        );
        assert_eq!(
            compare(Scheme::Generic, pair[1], pair[0]),
            Ok(Ordering::Greater),
            "{} > {}",
            pair[1],
            pair[0]
        );
    }
    // The whole table sorts into itself from any order.
    let mut shuffled: Vec<GenericVersion> =
        ascending.iter().rev().map(|s| s.parse().unwrap()).collect();
    shuffled.sort();
    let sorted: Vec<&str> = shuffled.iter().map(GenericVersion::as_str).collect();
    assert_eq!(sorted, ascending);
}

#[test]
fn generic_equal_table() {
    for (a, b) in [
        ("1.2.3", "v1.2.3"),
        ("1.2.3", "V1.2.3"),
        ("1.2", "1.2.0"),
        ("1", "1.0.0.0"),
        ("1.02.3", "1.2.3"),
        ("1.2.3+build.1", "1.2.3+build.2"),
        ("1.2.3+b", "1.2.3"),
        ("1.2.3-rc.1+b", "1.2.3-rc.1"),
        ("1.2.3-rc.01", "1.2.3-rc.1"),
    ] {
        assert_eq!(
            compare(Scheme::Generic, a, b),
            Ok(Ordering::Equal),
            "{a} = {b}"
        );
        let (x, y): (GenericVersion, GenericVersion) = (a.parse().unwrap(), b.parse().unwrap());
        assert_eq!(x, y);
        assert_eq!(hash_of(&x), hash_of(&y), "hash {a} = {b}");
        assert_eq!(x.as_str(), a, "original text kept");
    }
}

#[test]
fn generic_invalid_table() {
    let table = [
        ("", VersionProblem::Empty),
        ("v", VersionProblem::EmptyCoreComponent),
        ("1..2", VersionProblem::EmptyCoreComponent),
        ("1.", VersionProblem::EmptyCoreComponent),
        (".1", VersionProblem::EmptyCoreComponent),
        ("-rc1", VersionProblem::EmptyCoreComponent),
        ("1.2 ", VersionProblem::Whitespace),
        (
            "1.2a",
            VersionProblem::InvalidCharacter {
                ch: 'a',
                part: VersionPart::Core,
            },
        ),
        (
            "2.0rc1",
            VersionProblem::InvalidCharacter {
                ch: 'r',
                part: VersionPart::Core,
            },
        ),
        (
            "1:2.0",
            VersionProblem::InvalidCharacter {
                ch: ':',
                part: VersionPart::Core,
            },
        ),
        (
            "vv1",
            VersionProblem::InvalidCharacter {
                ch: 'v',
                part: VersionPart::Core,
            },
        ),
        (
            "1.0~rc1",
            VersionProblem::InvalidCharacter {
                ch: '~',
                part: VersionPart::Core,
            },
        ),
        (
            "1.0-",
            VersionProblem::EmptyIdentifier {
                part: VersionPart::PreRelease,
            },
        ),
        (
            "1.0-rc..1",
            VersionProblem::EmptyIdentifier {
                part: VersionPart::PreRelease,
            },
        ),
        (
            "1.0-rc_1",
            VersionProblem::InvalidCharacter {
                ch: '_',
                part: VersionPart::PreRelease,
            },
        ),
        (
            "1.0+",
            VersionProblem::EmptyIdentifier {
                part: VersionPart::Build,
            },
        ),
        (
            "1.0+a+b",
            VersionProblem::InvalidCharacter {
                ch: '+',
                part: VersionPart::Build,
            },
        ),
    ];
    for (text, problem) in table {
        let err = text
            .parse::<GenericVersion>()
            .expect_err(&format!("Sluice accepted generic {text:?}"));
        assert_eq!(err.problem(), &problem, "{text:?}: {err}");
        assert!(
            err.to_string().starts_with("invalid generic version"),
            "{err}"
        );
    }
}
