//! Version syntax and order checked against the reference tools, which stay the oracles:
//!
//! - RPM: rpm 4.18's `rpm.vercmp` (Lua, one `rpm --eval` per batch running
//!   tests/reference/rpm_vercmp.lua) on the osv-scalibr fixture file, on 100,000 generated pairs
//!   and on the invalid-forms table. Every generated version, valid or not, is first split by
//!   rpm's own parser (`rpm.ver`, tests/reference/rpm_parse.lua): Sluice accepts what rpm accepts,
//!   except under its documented stricter rules, each checked against rpm's reading, and splits
//!   the valid ones into the same epoch, version and release.
//! - Debian: every generated version, valid or not, goes through `dpkg --validate-version`
//!   (tests/reference/dpkg_validate.sh) and Sluice must judge it alike (dpkg's documented
//!   leniencies aside); the pairs of valid ones (20,000 or more, near-equal) go through apt's
//!   `apt_pkg.version_compare` (tests/reference/deb_apt_compare.py, one process) and every
//!   DPKG_STRIDE-th through `dpkg --compare-versions` itself (tests/reference/dpkg_compare.sh,
//!   where a warning on stderr is a disagreement, not an answer); and the invalid-forms table.
//! - Generic: Sluice's own documented order (docs/versions.md), as tables.
//!
//! The counts (generated, distinct, valid, invalid, compared) are printed on every run.
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
/// RPM candidate pairs: enough that at least 100,000 are pairs of valid versions.
const RPM_CANDIDATE_PAIRS: usize = 107_000;
/// Debian versions are generated in DEB_FAMILIES families of DEB_FAMILY_SIZE (see
/// `deb_families`); their pairs of valid versions number at least DEB_MIN_PAIRS.
const DEB_FAMILIES: usize = 250;
const DEB_FAMILY_SIZE: usize = 24;
const DEB_MIN_PAIRS: usize = 20_000;
/// Pairs within a family are at most this many edits apart.
const DEB_PAIR_DISTANCE: usize = 3;
/// Every DPKG_STRIDE-th pair of valid Debian versions also goes through dpkg itself.
const DPKG_STRIDE: usize = 25;
/// Shell processes running `dpkg --validate-version`, one version at a time each.
const DPKG_WORKERS: usize = 2;
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
#[derive(Clone, Debug, PartialEq, Eq)]
enum Verdict {
    Order(Ordering),
    /// The tool refused one of the versions.
    Refused,
    /// The tool ordered the pair but warned about a version's syntax (dpkg does that for texts
    /// it considers malformed): not a verdict on valid versions.
    Warned(String),
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
            other if other.starts_with("E ") => Verdict::Refused,
            other if other.starts_with("W ") => Verdict::Warned(other[2..].to_owned()),
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
/// What `mutate` inserts into Debian versions.
const DEB_ALPHABET: &[&str] = &[".", "+", "~", "~~", "-", ":", "a", "0"];

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

/// Generated versions, every one judged by the reference tool and by Sluice, and the pairs of
/// those both accept. Nothing is set aside unjudged: a version Sluice wrongly rejected (or
/// accepted) fails the test instead of silently leaving the comparison.
struct Judged {
    /// Versions generated, repeats included.
    generated: usize,
    /// Distinct versions, each judged once.
    distinct: usize,
    /// Valid for the reference and for Sluice.
    valid: usize,
    /// Invalid for both.
    invalid: usize,
    /// Valid for the reference, refused by Sluice under a documented stricter rule.
    stricter: usize,
    /// The reference's reasons for refusing, with how often each came up.
    reasons: Vec<(String, usize)>,
    /// Pairs of valid versions, to be ordered by both.
    pairs: Vec<(String, String)>,
}

impl Judged {
    fn report(&self, scheme: Scheme, reference: &str) {
        eprintln!(
            "{scheme}: {} versions generated, {} distinct, judged by {reference} and Sluice: \
             {} valid, {} invalid, {} valid for {reference} but refused by a documented stricter \
             rule; {} pairs of valid versions to compare",
            self.generated,
            self.distinct,
            self.valid,
            self.invalid,
            self.stricter,
            self.pairs.len()
        );
        for (reason, count) in &self.reasons {
            eprintln!("  {reference} refused {count}: {reason}");
        }
        // Both kinds must be plentiful, or the agreement on validity proves little.
        let refused = self.invalid + self.stricter;
        assert!(
            self.valid * 10 >= self.distinct * 3 && refused * 50 >= self.distinct,
            "{scheme}: the generator drifted: {} valid and {refused} refused of {} distinct",
            self.valid,
            self.distinct
        );
    }
}

/// The distinct texts of `versions`, in first-seen order.
fn distinct(versions: impl IntoIterator<Item = String>) -> Vec<String> {
    let mut seen = std::collections::HashSet::new();
    versions
        .into_iter()
        .filter(|v| seen.insert(v.clone()))
        .collect()
}

/// Checks that Sluice accepts exactly what `reference` accepts, except where `stricter` names a
/// documented rule by which Sluice refuses a text the reference accepts; returns the valid
/// texts, the counts and the reference's reasons.
fn judge(
    scheme: Scheme,
    texts: &[String],
    reference: &[Result<(), String>],
    tool: &str,
    stricter: impl Fn(&str, &VersionProblem) -> bool,
) -> (
    std::collections::HashSet<String>,
    usize,
    usize,
    Vec<(String, usize)>,
) {
    assert_eq!(
        texts.len(),
        reference.len(),
        "{tool}: one verdict per version"
    );
    let mut valid = std::collections::HashSet::new();
    let (mut invalid, mut strict) = (0, 0);
    let mut reasons: std::collections::BTreeMap<String, usize> = Default::default();
    let mut disagreements = Vec::new();
    for (text, theirs) in texts.iter().zip(reference) {
        let ours = Version::parse(scheme, text);
        match (theirs, &ours) {
            (Ok(()), Ok(_)) => {
                valid.insert(text.clone());
            }
            (Err(reason), Err(_)) => {
                invalid += 1;
                *reasons.entry(reason.clone()).or_default() += 1;
            }
            (Ok(()), Err(e)) if stricter(text, e.problem()) => strict += 1,
            (Ok(()), Err(e)) => {
                disagreements.push(format!("{text:?}: {tool} accepts it, Sluice refuses: {e}"))
            }
            (Err(reason), Ok(_)) => disagreements.push(format!(
                "{text:?}: Sluice accepts it, {tool} refuses: {reason}"
            )),
        }
    }
    assert!(
        disagreements.is_empty(),
        "{scheme}: {} of {} versions judged differently by Sluice and {tool}; first ones:\n{}",
        disagreements.len(),
        texts.len(),
        disagreements[..disagreements.len().min(20)].join("\n")
    );
    let mut reasons: Vec<(String, usize)> = reasons.into_iter().collect();
    reasons.sort_by(|a, b| b.1.cmp(&a.1).then_with(|| a.0.cmp(&b.0)));
    (valid, invalid, strict, reasons)
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

/// Candidate pairs: mostly a version and a near-equal edit of it, some independent. Valid or
/// not, every text is judged afterwards; only pairs of valid versions are compared.
fn candidate_pairs(
    seed: u64,
    count: usize,
    make: fn(&mut SplitMix64) -> String,
    alphabet: &[&str],
) -> Vec<(String, String)> {
    let mut rng = SplitMix64(seed);
    (0..count)
        .map(|_| {
            let a = make(&mut rng);
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
            if rng.chance(50) { (a, b) } else { (b, a) }
        })
        .collect()
}

/// How rpm 4.18 splits a version (`rpm.ver` in rpm's Lua): each part as rpm has it, `None` when
/// rpm found none.
#[derive(Clone, Debug, PartialEq, Eq)]
struct RpmSplit {
    epoch: Option<String>,
    version: Option<String>,
    release: Option<String>,
}

/// rpm's parser on every text, in one `rpm --eval`: `None` where rpm gives no version.
fn rpm_split(texts: &[String]) -> Vec<Option<RpmSplit>> {
    let dir = tempfile::tempdir().unwrap();
    let input = dir.path().join("versions");
    let mut lines = String::new();
    for text in texts {
        assert!(!text.contains('\n'), "not one line: {text:?}");
        lines.push_str(text);
        lines.push('\n');
    }
    std::fs::write(&input, lines).unwrap();
    let output_path = dir.path().join("parsed");
    let script = reference_script("rpm_parse.lua");
    let output = run_tool(
        Command::new("rpm")
            .env("SLUICE_VERSIONS", &input)
            .env("SLUICE_PARSED", &output_path)
            .arg("--eval")
            .arg(format!("%{{lua: dofile(\"{}\")}}", script.display())),
        "rpm",
    );
    check_success(&output, "rpm --eval (rpm_parse.lua)");
    let text = std::fs::read_to_string(&output_path)
        .unwrap_or_else(|e| panic!("rpm wrote nothing ({}): {e}", output_path.display()));
    let field = |f: &str| match f {
        "-" => None,
        _ => Some(
            f.strip_prefix('=')
                .unwrap_or_else(|| panic!("rpm_parse.lua: bad field {f:?}"))
                .to_owned(),
        ),
    };
    let parsed: Vec<Option<RpmSplit>> = text
        .lines()
        .map(|line| {
            if line == "REFUSED" {
                return None;
            }
            let fields: Vec<&str> = line.split('\t').collect();
            let ["OK", e, v, r] = fields[..] else {
                panic!("rpm_parse.lua: unexpected line {line:?}");
            };
            Some(RpmSplit {
                epoch: field(e),
                version: field(v),
                release: field(r),
            })
        })
        .collect();
    assert_eq!(parsed.len(), texts.len(), "rpm: one answer per version");
    parsed
}

/// Whether Sluice's refusal of a text rpm accepts is one of its documented stricter rules
/// (docs/versions.md, "Invalid RPM versions"), checked against what rpm itself read: whitespace
/// and control characters (rpm would take them for separators), an epoch rpm found with no digits
/// written (rpm reads `:1` as epoch 0) or beyond rpm's 32-bit Epoch tag, and an empty version.
fn rpm_stricter_rule(text: &str, problem: &VersionProblem, rpm: &RpmSplit) -> bool {
    match problem {
        VersionProblem::Whitespace => text.chars().any(char::is_whitespace),
        VersionProblem::ControlCharacter => text.chars().any(char::is_control),
        VersionProblem::EmptyEpoch => rpm.epoch.is_some() && text.starts_with(':'),
        VersionProblem::EpochTooLarge => rpm
            .epoch
            .as_deref()
            .is_some_and(|e| e.parse::<u32>().is_err()),
        VersionProblem::NothingAfterEpoch | VersionProblem::EmptyUpstream => {
            rpm.version.as_deref().is_some_and(str::is_empty)
        }
        _ => false,
    }
}

/// Sluice's split of a valid RPM version equals rpm's: the same epoch (by value), version and
/// release.
fn assert_same_split(text: &str, rpm: &RpmSplit) {
    let ours: RpmVersion = text.parse().unwrap();
    let epoch = rpm.epoch.as_deref().map(|e| {
        e.parse::<u32>()
            .unwrap_or_else(|_| panic!("{text:?}: rpm's epoch {e:?}"))
    });
    assert_eq!(
        (ours.epoch(), Some(ours.version()), ours.release()),
        (epoch, rpm.version.as_deref(), rpm.release.as_deref()),
        "{text:?}: Sluice's epoch, version and release against rpm's"
    );
}

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
fn rpm_generated_versions_match_rpm() {
    let candidates = candidate_pairs(0x5EED_0002, RPM_CANDIDATE_PAIRS, rpm_version, RPM_PUNCT);
    let generated = candidates.len() * 2;
    let texts = distinct(candidates.iter().flat_map(|(a, b)| [a.clone(), b.clone()]));
    let started = Instant::now();
    let splits = rpm_split(&texts);
    eprintln!(
        "rpm.ver: {} versions in {:?}",
        texts.len(),
        started.elapsed()
    );
    let split_of: std::collections::HashMap<&str, &Option<RpmSplit>> =
        texts.iter().map(String::as_str).zip(&splits).collect();
    let reference: Vec<Result<(), String>> = splits
        .iter()
        .map(|s| match s {
            Some(_) => Ok(()),
            None => Err("rpm.ver gives no version".to_owned()),
        })
        .collect();
    let (valid, invalid, stricter, reasons) =
        judge(Scheme::Rpm, &texts, &reference, "rpm", |text, problem| {
            split_of[text]
                .as_ref()
                .is_some_and(|rpm| rpm_stricter_rule(text, problem, rpm))
        });
    for text in &valid {
        assert_same_split(text, split_of[text.as_str()].as_ref().unwrap());
    }
    let judged = Judged {
        generated,
        distinct: texts.len(),
        valid: valid.len(),
        invalid,
        stricter,
        reasons,
        pairs: candidates
            .into_iter()
            .filter(|(a, b)| valid.contains(a) && valid.contains(b))
            .collect(),
    };
    judged.report(Scheme::Rpm, "rpm");
    let pairs = judged.pairs;
    assert!(
        pairs.len() >= 100_000,
        "only {} pairs of valid RPM versions",
        pairs.len()
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

/// A family of Debian versions: a random version and edits of it, each made to an earlier
/// member (`parents[i]` is the member member `i` was made from; the first has none).
struct Family {
    members: Vec<String>,
    parents: Vec<Option<usize>>,
}

impl Family {
    /// How many edits apart two members are, through their nearest common ancestor.
    fn distance(&self, a: usize, b: usize) -> usize {
        let ancestors = |mut i: usize| {
            let mut path = vec![i];
            while let Some(parent) = self.parents[i] {
                path.push(parent);
                i = parent;
            }
            path
        };
        let (from_a, from_b) = (ancestors(a), ancestors(b));
        from_a
            .iter()
            .enumerate()
            .find_map(|(up_a, node)| {
                from_b
                    .iter()
                    .position(|other| other == node)
                    .map(|up_b| up_a + up_b)
            })
            .expect("members of a family share its first version")
    }
}

/// Debian versions to judge and compare, in families (see [`Family`]) so that members are
/// near-equal to their neighbours. dpkg judges a version's syntax in a process of its own, so
/// the versions are few and the pairs many (see [`deb_pairs`]).
fn deb_families(seed: u64) -> Vec<Family> {
    let mut rng = SplitMix64(seed);
    (0..DEB_FAMILIES)
        .map(|_| {
            let mut family = Family {
                members: vec![deb_version(&mut rng)],
                parents: vec![None],
            };
            while family.members.len() < DEB_FAMILY_SIZE {
                let parent = rng.below(family.members.len());
                let mut child = mutate(&mut rng, &family.members[parent], DEB_ALPHABET);
                if rng.chance(25) {
                    child = mutate(&mut rng, &child, DEB_ALPHABET);
                }
                family.members.push(child);
                family.parents.push(Some(parent));
            }
            family
        })
        .collect()
}

/// The pairs of valid versions to compare: within a family, every two members at most
/// DEB_PAIR_DISTANCE edits apart; across families, each member against the member at the same
/// place in the next family. Each pair in a random order.
fn deb_pairs(
    families: &[Family],
    valid: &std::collections::HashSet<String>,
) -> Vec<(String, String)> {
    let mut rng = SplitMix64(0x5EED_0003);
    let mut pairs = Vec::new();
    let mut push = |a: &String, b: &String, rng: &mut SplitMix64| {
        if valid.contains(a) && valid.contains(b) {
            if rng.chance(50) {
                pairs.push((a.clone(), b.clone()));
            } else {
                pairs.push((b.clone(), a.clone()));
            }
        }
    };
    for (f, family) in families.iter().enumerate() {
        for (i, a) in family.members.iter().enumerate() {
            for (j, b) in family.members.iter().enumerate().skip(i + 1) {
                if family.distance(i, j) <= DEB_PAIR_DISTANCE {
                    push(a, b, &mut rng);
                }
            }
            if let Some(b) = families.get(f + 1).and_then(|next| next.members.get(i)) {
                push(a, b, &mut rng);
            }
        }
    }
    pairs
}

/// `dpkg --validate-version` on every text, from DPKG_WORKERS shell processes (one dpkg
/// process per text is the slow part): `Err` with dpkg's message where it finds bad syntax.
fn dpkg_syntax(texts: &[String]) -> Vec<Result<(), String>> {
    require_dpkg();
    let dir = tempfile::tempdir().unwrap();
    let script = reference_script("dpkg_validate.sh");
    let chunk = texts.len().div_ceil(DPKG_WORKERS).max(1);
    let workers: Vec<(std::process::Child, PathBuf, usize)> = texts
        .chunks(chunk)
        .enumerate()
        .map(|(i, part)| {
            let input = dir.path().join(format!("versions-{i}"));
            let mut lines = String::new();
            for text in part {
                assert!(!text.contains('\n'), "not one line: {text:?}");
                lines.push_str(text);
                lines.push('\n');
            }
            std::fs::write(&input, lines).unwrap();
            let output = dir.path().join(format!("syntax-{i}"));
            let child = Command::new("sh")
                .arg(&script)
                .arg(&input)
                .arg(&output)
                .spawn()
                .unwrap_or_else(|e| panic!("cannot run sh {}: {e}", script.display()));
            (child, output, part.len())
        })
        .collect();
    let mut verdicts = Vec::with_capacity(texts.len());
    for (mut child, output, expected) in workers {
        let status = child.wait().unwrap();
        assert!(status.success(), "dpkg_validate.sh failed: {status}");
        let text = std::fs::read_to_string(&output)
            .unwrap_or_else(|e| panic!("dpkg_validate.sh wrote nothing: {e}"));
        let before = verdicts.len();
        for line in text.lines() {
            verdicts.push(match line.split_once(' ') {
                None if line == "valid" => Ok(()),
                // "dpkg: warning: version '…' has bad syntax: <reason>": the reason is the verdict.
                Some(("invalid", message)) => Err(message
                    .rsplit_once("bad syntax: ")
                    .map_or(message, |(_, reason)| reason)
                    .trim()
                    .to_owned()),
                _ => panic!("dpkg_validate.sh: {line}"),
            });
        }
        assert_eq!(
            verdicts.len() - before,
            expected,
            "dpkg: one verdict per version"
        );
    }
    verdicts
}

/// Whether Sluice's refusal of a text dpkg accepts is one of its documented stricter rules
/// (docs/versions.md, "Invalid Debian versions"): dpkg silently trims whitespace at either end
/// and reads the epoch with `strtol`, which takes a `+` sign.
fn deb_stricter_rule(text: &str, problem: &VersionProblem) -> bool {
    match problem {
        VersionProblem::Whitespace => {
            text.trim() != text && !text.trim().contains(char::is_whitespace)
        }
        VersionProblem::EpochNotNumber => text.split_once(':').is_some_and(|(epoch, _)| {
            epoch
                .strip_prefix('+')
                .is_some_and(|d| !d.is_empty() && d.bytes().all(|b| b.is_ascii_digit()))
        }),
        _ => false,
    }
}

#[test]
fn deb_generated_versions_match_dpkg_and_apt() {
    let families = deb_families(0x5EED_0001);
    let generated = families.iter().map(|f| f.members.len()).sum();
    let texts = distinct(families.iter().flat_map(|f| f.members.iter().cloned()));
    let started = Instant::now();
    let reference = dpkg_syntax(&texts);
    eprintln!(
        "dpkg --validate-version: {} versions in {:?}",
        texts.len(),
        started.elapsed()
    );
    let (valid, invalid, stricter, reasons) =
        judge(Scheme::Deb, &texts, &reference, "dpkg", deb_stricter_rule);
    let judged = Judged {
        generated,
        distinct: texts.len(),
        valid: valid.len(),
        invalid,
        stricter,
        reasons,
        pairs: deb_pairs(&families, &valid),
    };
    judged.report(Scheme::Deb, "dpkg");
    let pairs = judged.pairs;
    assert!(
        pairs.len() >= DEB_MIN_PAIRS,
        "only {} pairs of valid Debian versions",
        pairs.len()
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
