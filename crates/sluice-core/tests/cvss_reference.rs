//! CVSS scores checked against two references: the expected scores written in Red Hat's test
//! vectors (tests/fixtures/cvss) and the PyPI `cvss` package (Red Hat's implementation, run by
//! tests/reference/score.py) over those vectors, 50,000 random valid vectors per version and the
//! malformed-vector table. Python runs once for the whole batch. Sluice gives a 3.x temporal or
//! environmental score only for a vector that defines the group; whether it does is the
//! package's call too, for every 3.x vector (fixtures included), so an absent score is checked,
//! not skipped.
//!
//! Needs `python3` with `pip install cvss` (3.6 was used). A missing package fails the test: a
//! skipped reference check would hide scoring regressions.

// A test binary: its helpers fail loudly on purpose, like the tests that call them.
#![allow(clippy::expect_used, clippy::panic)]

use std::collections::HashSet;
use std::io::Write;
use std::process::{Command, Stdio};
use std::time::Instant;

use sluice_core::cvss::{Cvss, CvssVersion};

const FIXTURE_DIR: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/fixtures/cvss");
const REFERENCE_SCRIPT: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/reference/score.py");

/// The 3.x and 4.0 vector files; the v2 ones are left out because Sluice refuses CVSS v2.
const FIXTURE_FILES: [&str; 8] = [
    "vectors_simple3",
    "vectors_simple31",
    "vectors_cvsslib3",
    "vectors_calculator3",
    "vectors_simple4",
    "vectors_supplemental4",
    "vectors_threat4",
    "vectors_security4",
];

const RANDOM_PER_VERSION: usize = 50_000;

/// One line of a fixture file: `VECTOR - (base, temporal, environmental)` for 3.x,
/// `VECTOR - (score,)` or `VECTOR - score` for 4.0.
struct Fixture {
    origin: String,
    vector: String,
    expected: Vec<f64>,
}

fn fixtures() -> Vec<Fixture> {
    let mut all = Vec::new();
    for file in FIXTURE_FILES {
        let path = format!("{FIXTURE_DIR}/{file}");
        let text = std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{path}: {e}"));
        for (index, line) in text.lines().enumerate() {
            if line.trim().is_empty() {
                continue;
            }
            let origin = format!("{file}:{}", index + 1);
            let (vector, scores) = line
                .split_once(" - ")
                .unwrap_or_else(|| panic!("{origin}: no ' - ' in {line:?}"));
            let expected = scores
                .trim_matches(|c| c == '(' || c == ')' || c == ' ')
                .split(',')
                .map(str::trim)
                .filter(|s| !s.is_empty())
                .map(|s| {
                    s.parse::<f64>()
                        .unwrap_or_else(|e| panic!("{origin}: {s:?}: {e}"))
                })
                .collect();
            all.push(Fixture {
                origin,
                vector: vector.to_owned(),
                expected,
            });
        }
    }
    all
}

#[test]
fn fixture_vectors_score_as_written() {
    let fixtures = fixtures();
    let mut checked = 0;
    let (mut with_temporal, mut with_environmental, mut without_environmental) = (0, 0, 0);
    for fixture in &fixtures {
        let cvss =
            Cvss::parse(&fixture.vector).unwrap_or_else(|e| panic!("{}: {}", fixture.origin, e));
        let what = format!("{} {}", fixture.origin, fixture.vector);
        match cvss.version() {
            CvssVersion::V3_0 | CvssVersion::V3_1 => {
                let [base, temporal, environmental] = fixture.expected[..] else {
                    panic!("{what}: expected three scores");
                };
                assert_eq!(cvss.score(), base, "base of {what}");
                // Sluice gives no score for a group the vector leaves undefined (whether it
                // does is checked against the PyPI package, fixtures included, in
                // python_reference_agrees). The fixture scores undefined temporal metrics as
                // neutral, which leaves the base as it is; undefined environmental metrics are
                // not neutral in 3.1 (the modified impact has its own formula), so there is no
                // such check for them.
                match cvss.temporal_score() {
                    Some(score) => {
                        assert_eq!(score, temporal, "temporal of {what}");
                        with_temporal += 1;
                    }
                    None => assert_eq!(temporal, base, "{what}: undefined temporal metrics"),
                }
                match cvss.environmental_score() {
                    Some(score) => {
                        assert_eq!(score, environmental, "environmental of {what}");
                        with_environmental += 1;
                    }
                    None => without_environmental += 1,
                }
            }
            CvssVersion::V4_0 => {
                assert_eq!(fixture.expected, [cvss.score()], "{what}");
            }
        }
        checked += 1;
    }
    assert_eq!(checked, 6_909, "fixture vectors scored");
    eprintln!(
        "fixture vectors: {checked}; 3.x with a temporal score {with_temporal}, with an \
         environmental score {with_environmental}, without one {without_environmental}"
    );
}

/// The metrics of one version, by group, for the random generator. Written out again here (not
/// taken from the crate) so that a mistake in the grammar cannot hide itself.
struct Grammar {
    prefix: &'static str,
    base: &'static [(&'static str, &'static [&'static str])],
    temporal: &'static [(&'static str, &'static [&'static str])],
    environmental: &'static [(&'static str, &'static [&'static str])],
    supplemental: &'static [(&'static str, &'static [&'static str])],
}

const V3_BASE: &[(&str, &[&str])] = &[
    ("AV", &["N", "A", "L", "P"]),
    ("AC", &["L", "H"]),
    ("PR", &["N", "L", "H"]),
    ("UI", &["N", "R"]),
    ("S", &["U", "C"]),
    ("C", &["H", "L", "N"]),
    ("I", &["H", "L", "N"]),
    ("A", &["H", "L", "N"]),
];
const V3_TEMPORAL: &[(&str, &[&str])] = &[
    ("E", &["X", "H", "F", "P", "U"]),
    ("RL", &["X", "U", "W", "T", "O"]),
    ("RC", &["X", "C", "R", "U"]),
];
const V3_ENVIRONMENTAL: &[(&str, &[&str])] = &[
    ("CR", &["X", "H", "M", "L"]),
    ("IR", &["X", "H", "M", "L"]),
    ("AR", &["X", "H", "M", "L"]),
    ("MAV", &["X", "N", "A", "L", "P"]),
    ("MAC", &["X", "L", "H"]),
    ("MPR", &["X", "N", "L", "H"]),
    ("MUI", &["X", "N", "R"]),
    ("MS", &["X", "U", "C"]),
    ("MC", &["X", "H", "L", "N"]),
    ("MI", &["X", "H", "L", "N"]),
    ("MA", &["X", "H", "L", "N"]),
];
const V4_BASE: &[(&str, &[&str])] = &[
    ("AV", &["N", "A", "L", "P"]),
    ("AC", &["L", "H"]),
    ("AT", &["N", "P"]),
    ("PR", &["N", "L", "H"]),
    ("UI", &["N", "P", "A"]),
    ("VC", &["H", "L", "N"]),
    ("VI", &["H", "L", "N"]),
    ("VA", &["H", "L", "N"]),
    ("SC", &["H", "L", "N"]),
    ("SI", &["H", "L", "N"]),
    ("SA", &["H", "L", "N"]),
];
const V4_THREAT: &[(&str, &[&str])] = &[("E", &["X", "A", "P", "U"])];
const V4_ENVIRONMENTAL: &[(&str, &[&str])] = &[
    ("CR", &["X", "H", "M", "L"]),
    ("IR", &["X", "H", "M", "L"]),
    ("AR", &["X", "H", "M", "L"]),
    ("MAV", &["X", "N", "A", "L", "P"]),
    ("MAC", &["X", "L", "H"]),
    ("MAT", &["X", "N", "P"]),
    ("MPR", &["X", "N", "L", "H"]),
    ("MUI", &["X", "N", "P", "A"]),
    ("MVC", &["X", "H", "L", "N"]),
    ("MVI", &["X", "H", "L", "N"]),
    ("MVA", &["X", "H", "L", "N"]),
    ("MSC", &["X", "H", "L", "N"]),
    ("MSI", &["X", "S", "H", "L", "N"]),
    ("MSA", &["X", "S", "H", "L", "N"]),
];
const V4_SUPPLEMENTAL: &[(&str, &[&str])] = &[
    ("S", &["X", "N", "P"]),
    ("AU", &["X", "N", "Y"]),
    ("R", &["X", "A", "U", "I"]),
    ("V", &["X", "D", "C"]),
    ("RE", &["X", "L", "M", "H"]),
    ("U", &["X", "Clear", "Green", "Amber", "Red"]),
];

const V3_0: Grammar = Grammar {
    prefix: "CVSS:3.0",
    base: V3_BASE,
    temporal: V3_TEMPORAL,
    environmental: V3_ENVIRONMENTAL,
    supplemental: &[],
};
const V3_1: Grammar = Grammar {
    prefix: "CVSS:3.1",
    ..V3_0
};
const V4_0: Grammar = Grammar {
    prefix: "CVSS:4.0",
    base: V4_BASE,
    temporal: V4_THREAT,
    environmental: V4_ENVIRONMENTAL,
    supplemental: V4_SUPPLEMENTAL,
};

/// SplitMix64: small, deterministic, good enough to spread vectors over the metric space.
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

    fn pick<'a>(&mut self, values: &[&'a str]) -> &'a str {
        values[self.below(values.len())]
    }
}

/// A random valid vector and whether it defines (non-`X`) temporal and environmental metrics.
struct Generated {
    vector: String,
    temporal: bool,
    environmental: bool,
}

fn random_vector(rng: &mut Rng, grammar: &Grammar) -> Generated {
    let mut parts: Vec<String> = Vec::new();
    for (name, values) in grammar.base {
        parts.push(format!("{name}:{}", rng.pick(values)));
    }
    // Per group a density, so that base-only, sparse and complete vectors all occur.
    let mut optional = |group: &[(&str, &[&str])], parts: &mut Vec<String>| {
        let density = [0, 0, 30, 70, 100][rng.below(5)];
        let mut defined = false;
        for (name, values) in group {
            if rng.below(100) < density {
                let value = rng.pick(values);
                defined |= value != "X";
                parts.push(format!("{name}:{value}"));
            }
        }
        defined
    };
    let temporal = optional(grammar.temporal, &mut parts);
    let environmental = optional(grammar.environmental, &mut parts);
    optional(grammar.supplemental, &mut parts);
    // Any order is valid; shuffle one vector in eight.
    if rng.below(8) == 0 {
        for i in (1..parts.len()).rev() {
            let j = rng.below(i + 1);
            parts.swap(i, j);
        }
    }
    Generated {
        vector: format!("{}/{}", grammar.prefix, parts.join("/")),
        temporal,
        environmental,
    }
}

/// What the reference says about one vector: scores (3.x: base, temporal, environmental;
/// 4.0: score) and severity, or its complaint. For 3.x also which optional groups the vector
/// defines (temporal, environmental), by the package's own metric lists: the package scores an
/// undefined group as neutral, where Sluice gives no score.
#[derive(Debug)]
enum Reference {
    Scored {
        severity: String,
        scores: Vec<f64>,
        defines: Option<(bool, bool)>,
    },
    Refused(String),
}

/// Runs the PyPI package over `vectors` in one process, and `meanwhile` on this thread while
/// python works (the two take about as long).
fn python_reference<T>(vectors: &[&str], meanwhile: impl FnOnce() -> T) -> (Vec<Reference>, T) {
    let python = std::env::var("PYTHON").unwrap_or_else(|_| "python3".to_owned());
    let mut child = Command::new(&python)
        .arg(REFERENCE_SCRIPT)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap_or_else(|e| {
            panic!("cannot run {python} ({e}): install Python 3, then `pip install cvss`")
        });
    let mut stdin = child.stdin.take().expect("stdin is piped");
    let input: String = vectors.iter().flat_map(|v| [*v, "\n"]).collect();
    let writer = std::thread::spawn(move || stdin.write_all(input.as_bytes()));
    let reader = std::thread::spawn(move || child.wait_with_output());
    let ours = meanwhile();
    let output = reader.join().expect("reader thread").expect("python ran");
    writer
        .join()
        .expect("writer thread")
        .expect("vectors written to python");
    assert!(
        output.status.success(),
        "the reference script failed ({}); is the PyPI package installed? `pip install cvss`\n{}",
        output.status,
        String::from_utf8_lossy(&output.stderr)
    );
    let stdout = String::from_utf8(output.stdout).expect("UTF-8 from python");
    let answers: Vec<Reference> = stdout
        .lines()
        .map(|line| {
            if let Some(message) = line.strip_prefix("ERR ") {
                return Reference::Refused(message.to_owned());
            }
            let mut fields = line
                .strip_prefix("OK ")
                .unwrap_or_else(|| panic!("unexpected reference line {line:?}"))
                .split(' ');
            let severity = fields.next().expect("severity").to_owned();
            let mut scores = Vec::new();
            let mut defines = None;
            for field in fields {
                match field {
                    "-" | "T" | "E" | "TE" => {
                        defines = Some((field.contains('T'), field.contains('E')));
                    }
                    number => {
                        scores.push(number.parse().unwrap_or_else(|e| panic!("{line:?}: {e}")))
                    }
                }
            }
            Reference::Scored {
                severity,
                scores,
                defines,
            }
        })
        .collect();
    assert_eq!(
        answers.len(),
        vectors.len(),
        "one reference line per vector"
    );
    (answers, ours)
}

/// Vectors Sluice must refuse, and the metric (or prefix) the message must name.
const MALFORMED: &[(&str, &str)] = &[
    // unknown metric
    ("CVSS:3.1/AV:N/AC:L/PR:N/UI:N/S:U/C:H/I:H/A:H/XX:N", "XX"),
    ("CVSS:3.1/AV:N/AC:L/PR:N/UI:N/S:U/C:H/I:H/A:H/AT:N", "AT"),
    (
        "CVSS:4.0/AV:N/AC:L/AT:N/PR:N/UI:N/VC:H/VI:H/VA:H/SC:N/SI:N/SA:N/C:H",
        "C",
    ),
    ("CVSS:3.1/av:N/AC:L/PR:N/UI:N/S:U/C:H/I:H/A:H", "av"),
    // duplicate metric
    ("CVSS:3.1/AV:N/AC:L/PR:N/UI:N/S:U/C:H/I:H/A:H/A:L", "A"),
    ("CVSS:3.0/AV:N/AC:L/PR:N/UI:N/S:U/C:H/I:H/A:H/E:U/E:U", "E"),
    (
        "CVSS:4.0/AV:N/AC:L/AT:N/PR:N/UI:N/VC:H/VI:H/VA:H/SC:N/SI:N/SA:N/MSI:S/MSI:S",
        "MSI",
    ),
    // missing mandatory metric
    ("CVSS:3.1/AC:L/PR:N/UI:N/S:U/C:H/I:H/A:H", "AV"),
    ("CVSS:3.0/AV:N/AC:L/PR:N/UI:N/C:H/I:H/A:H", "S"),
    (
        "CVSS:4.0/AV:N/AC:L/AT:N/PR:N/UI:N/VC:H/VI:H/VA:H/SC:N/SI:N",
        "SA",
    ),
    (
        "CVSS:4.0/AV:N/AC:L/PR:N/UI:N/VC:H/VI:H/VA:H/SC:N/SI:N/SA:N/E:A",
        "AT",
    ),
    ("CVSS:3.1", "AV"),
    // wrong or unsupported prefix
    ("CVSS:2.0/AV:N/AC:L/Au:N/C:P/I:P/A:P", "CVSS:2.0"),
    ("AV:N/AC:L/Au:N/C:P/I:P/A:P", "unsupported"),
    ("CVSS:3.2/AV:N/AC:L/PR:N/UI:N/S:U/C:H/I:H/A:H", "CVSS:3.2"),
    ("cvss:3.1/AV:N/AC:L/PR:N/UI:N/S:U/C:H/I:H/A:H", "cvss:3.1"),
    ("AV:N/AC:L/PR:N/UI:N/S:U/C:H/I:H/A:H", "unsupported"),
    // bad value
    ("CVSS:3.1/AV:Q/AC:L/PR:N/UI:N/S:U/C:H/I:H/A:H", "AV"),
    ("CVSS:3.1/AV:n/AC:L/PR:N/UI:N/S:U/C:H/I:H/A:H", "AV"),
    ("CVSS:3.1/AV:N/AC:L/PR:N/UI:N/S:U/C:H/I:H/A:X", "A"),
    ("CVSS:3.1/AV:N/AC:L/PR:N/UI:N/S:U/C:H/I:H/A:H/MS:S", "MS"),
    (
        "CVSS:4.0/AV:N/AC:L/AT:N/PR:N/UI:N/VC:H/VI:H/VA:H/SC:N/SI:S/SA:N",
        "SI",
    ),
    (
        "CVSS:4.0/AV:N/AC:L/AT:N/PR:N/UI:N/VC:H/VI:H/VA:H/SC:N/SI:N/SA:N/U:red",
        "U",
    ),
    (
        "CVSS:4.0/AV:N/AC:L/AT:N/PR:N/UI:N/VC:H/VI:H/VA:H/SC:N/SI:N/SA:N/MSC:S",
        "MSC",
    ),
    (
        "CVSS:4.0/AV:N/AC:L/AT:N/PR:N/UI:R/VC:H/VI:H/VA:H/SC:N/SI:N/SA:N",
        "UI",
    ),
    ("CVSS:3.1/AV:N:L/AC:L/PR:N/UI:N/S:U/C:H/I:H/A:H", "AV"),
    // empty vector, empty or malformed components
    ("", "empty"),
    ("CVSS:3.1/AV:N//AC:L/PR:N/UI:N/S:U/C:H/I:H/A:H", "AV"),
    ("CVSS:3.1/AV:N/AC:L/PR:N/UI:N/S:U/C:H/I:H/A:H/", "A"),
    ("CVSS:4.0/", "CVSS:4.0"),
    ("CVSS:3.1/AVN/AC:L/PR:N/UI:N/S:U/C:H/I:H/A:H", "AVN"),
];

/// Whether `message` names `word`: as a whole metric name, or verbatim for prefixes and the
/// words that stand for a missing name.
fn names(message: &str, word: &str) -> bool {
    if word.contains(':') || word == "empty" || word == "unsupported" {
        return message.contains(word);
    }
    let is_name = |c: char| c.is_ascii_alphanumeric();
    message.match_indices(word).any(|(at, _)| {
        let before = message[..at].chars().next_back();
        let after = message[at + word.len()..].chars().next();
        !before.is_some_and(is_name) && !after.is_some_and(is_name)
    })
}

#[test]
fn malformed_vectors_are_refused_naming_the_metric() {
    for (vector, metric) in MALFORMED {
        match Cvss::parse(vector) {
            Ok(cvss) => panic!("{vector:?} accepted, scored {}", cvss.score()),
            Err(err) => {
                let message = err.to_string();
                assert!(
                    names(&message, metric),
                    "message for {vector:?} does not name {metric}: {message}"
                );
                assert!(
                    message.contains(&format!("\"{vector}\"")),
                    "message for {vector:?} does not quote the vector: {message}"
                );
            }
        }
    }
    // Whitespace around the vector is the only laxness.
    for vector in ["   ", "\t\n"] {
        let err = Cvss::parse(vector).expect_err("blank");
        assert!(err.to_string().contains("empty"), "{err}");
    }
}

#[test]
fn python_reference_agrees() {
    let started = Instant::now();
    let fixtures = fixtures();
    let mut rng = Rng(0x5EED_C0FF_EE15_CA1E);
    let mut generated = Vec::new();
    for grammar in [&V3_0, &V3_1, &V4_0] {
        let mut seen = HashSet::new();
        while seen.len() < RANDOM_PER_VERSION {
            let candidate = random_vector(&mut rng, grammar);
            if seen.insert(candidate.vector.clone()) {
                generated.push(candidate);
            }
        }
    }
    let mut batch: Vec<&str> = fixtures.iter().map(|f| f.vector.as_str()).collect();
    batch.extend(generated.iter().map(|g| g.vector.as_str()));
    batch.extend(MALFORMED.iter().map(|(vector, _)| *vector));

    let (reference, ours) = python_reference(&batch, || {
        batch.iter().map(|v| Cvss::parse(v)).collect::<Vec<_>>()
    });

    let flags = fixtures
        .iter()
        .map(|_| None)
        .chain(
            generated
                .iter()
                .map(|g| Some((g.temporal, g.environmental))),
        )
        .chain(MALFORMED.iter().map(|_| None));
    let mut mismatches = Vec::new();
    let mut compared = [0usize; 3];
    let mut present_counts = [0usize; 2];
    for (((vector, answer), ours), flags) in batch.iter().zip(&reference).zip(ours).zip(flags) {
        let (cvss, severity, scores, defines) = match (answer, ours) {
            (Reference::Refused(_), Err(_)) => continue,
            (Reference::Refused(theirs), Ok(_)) => {
                mismatches.push(format!("{vector}: we accept, python refuses: {theirs}"));
                continue;
            }
            (Reference::Scored { .. }, Err(err)) => {
                mismatches.push(format!("{vector}: python scores, we refuse: {err}"));
                continue;
            }
            (
                Reference::Scored {
                    severity,
                    scores,
                    defines,
                },
                Ok(cvss),
            ) => (cvss, severity, scores, defines),
        };
        compared[match cvss.version() {
            CvssVersion::V3_0 => 0,
            CvssVersion::V3_1 => 1,
            CvssVersion::V4_0 => 2,
        }] += 1;
        let mut pairs = vec![("score", Some(cvss.score()), scores[0])];
        if cvss.version() != CvssVersion::V4_0 {
            pairs.push(("temporal", cvss.temporal_score(), scores[1]));
            pairs.push(("environmental", cvss.environmental_score(), scores[2]));
            // Presence, for every 3.x vector (fixtures included): Sluice scores a group exactly
            // when the reference says the vector defines it.
            let present = (
                cvss.temporal_score().is_some(),
                cvss.environmental_score().is_some(),
            );
            let Some(defined) = *defines else {
                panic!("{vector}: the reference did not say which groups it defines");
            };
            if present != defined {
                mismatches.push(format!(
                    "{vector}: Sluice has (temporal, environmental) scores {present:?}, \
                     the vector defines {defined:?}"
                ));
            }
            if let Some(flags) = flags
                && flags != defined
            {
                mismatches.push(format!(
                    "{vector}: the generator meant to define {flags:?}, python reads {defined:?}"
                ));
            }
            present_counts[0] += usize::from(present.0);
            present_counts[1] += usize::from(present.1);
        }
        for (what, ours, theirs) in pairs {
            match ours {
                Some(ours) if ours != theirs => {
                    mismatches.push(format!("{vector}: {what} {ours} vs python {theirs}"))
                }
                Some(_) => {}
                // No score for an undefined group: checked above that it is undefined.
                None => {}
            }
        }
        if cvss.severity().as_str() != severity {
            mismatches.push(format!(
                "{vector}: severity {} vs {severity}",
                cvss.severity()
            ));
        }
    }
    eprintln!(
        "compared {} vectors with python ({} 3.0, {} 3.1, {} 4.0 scored; {} malformed) in {:.1?}",
        batch.len(),
        compared[0],
        compared[1],
        compared[2],
        MALFORMED.len(),
        started.elapsed(),
    );
    eprintln!(
        "3.x vectors with a temporal score: {}, with an environmental score: {}",
        present_counts[0], present_counts[1]
    );
    assert!(
        mismatches.is_empty(),
        "{} disagreements with the PyPI cvss package, first ones:\n{}",
        mismatches.len(),
        mismatches[..mismatches.len().min(25)].join("\n")
    );
    assert!(
        compared.iter().all(|&n| n >= RANDOM_PER_VERSION),
        "{compared:?}"
    );
}

/// Every distinct environmental assessment (modified metrics and requirements, 69,984 per
/// version) against python, where the crate's own 3.0 rounding went wrong. About 20 s.
#[test]
fn python_reference_agrees_on_every_environmental_assessment() {
    let group: Vec<(&str, Vec<&str>)> = V3_ENVIRONMENTAL
        .iter()
        .map(|(name, values)| {
            (
                *name,
                values.iter().copied().filter(|v| *v != "X").collect(),
            )
        })
        .collect();
    let mut vectors = Vec::new();
    for prefix in ["CVSS:3.0", "CVSS:3.1"] {
        let mut choice = vec![0usize; group.len()];
        loop {
            let metrics: Vec<String> = group
                .iter()
                .zip(&choice)
                .map(|((name, values), &i)| format!("{name}:{}", values[i]))
                .collect();
            vectors.push(format!(
                "{prefix}/AV:N/AC:L/PR:N/UI:N/S:U/C:N/I:N/A:N/{}",
                metrics.join("/")
            ));
            // Odometer over the value indexes.
            let mut digit = 0;
            while digit < choice.len() {
                choice[digit] += 1;
                if choice[digit] < group[digit].1.len() {
                    break;
                }
                choice[digit] = 0;
                digit += 1;
            }
            if digit == choice.len() {
                break;
            }
        }
    }
    assert_eq!(vectors.len(), 2 * 69_984);
    let batch: Vec<&str> = vectors.iter().map(String::as_str).collect();
    let (reference, ours) = python_reference(&batch, || {
        batch
            .iter()
            .map(|v| Cvss::parse(v).expect("valid").environmental_score())
            .collect::<Vec<_>>()
    });
    let mut mismatches = Vec::new();
    for ((vector, answer), ours) in batch.iter().zip(&reference).zip(ours) {
        match answer {
            Reference::Scored { scores, .. } if ours == Some(scores[2]) => {}
            other => mismatches.push(format!("{vector}: {ours:?} vs python {other:?}")),
        }
    }
    assert!(
        mismatches.is_empty(),
        "{} disagreements:\n{}",
        mismatches.len(),
        mismatches[..mismatches.len().min(25)].join("\n")
    );
}
