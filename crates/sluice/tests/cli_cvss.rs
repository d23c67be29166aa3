//! `sluice cvss` end to end: the built binary, its two output formats, standard input, exit
//! statuses and error messages. Expected scores come from Red Hat's vectors in
//! sluice-core/tests/fixtures/cvss.

// A test binary: its helpers fail loudly on purpose, like the tests that call them.
#![allow(clippy::expect_used, clippy::panic)]

use std::io::Write;
use std::process::{Command, Output, Stdio};

const FIXTURE_DIR: &str = concat!(
    env!("CARGO_MANIFEST_DIR"),
    "/../sluice-core/tests/fixtures/cvss"
);

/// Runs `sluice` with `args`, feeding `stdin` if given.
fn sluice(args: &[&str], stdin: Option<&str>) -> Output {
    let mut child = Command::new(env!("CARGO_BIN_EXE_sluice"))
        .args(args)
        .stdin(if stdin.is_some() {
            Stdio::piped()
        } else {
            Stdio::null()
        })
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("sluice runs");
    if let Some(input) = stdin {
        let mut pipe = child.stdin.take().expect("piped stdin");
        let input = input.to_owned();
        std::thread::spawn(move || pipe.write_all(input.as_bytes()));
    }
    child.wait_with_output().expect("sluice finishes")
}

fn stdout(output: &Output) -> String {
    String::from_utf8(output.stdout.clone()).expect("UTF-8 stdout")
}

fn stderr(output: &Output) -> String {
    String::from_utf8(output.stderr.clone()).expect("UTF-8 stderr")
}

/// `(vector, expected score)` from a fixture file: the base score for 3.x, the score for 4.0.
fn fixture(file: &str) -> Vec<(String, f64)> {
    let path = format!("{FIXTURE_DIR}/{file}");
    let text = std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{path}: {e}"));
    text.lines()
        .filter(|line| !line.trim().is_empty())
        .map(|line| {
            let (vector, scores) = line.split_once(" - ").expect("VECTOR - SCORES");
            let first = scores
                .trim_matches(|c| c == '(' || c == ')')
                .split(',')
                .next()
                .expect("a score");
            (vector.to_owned(), first.trim().parse().expect("a number"))
        })
        .collect()
}

/// A few vectors of each version, with their expected scores.
fn sample() -> Vec<(String, f64)> {
    let mut sample = Vec::new();
    for file in ["vectors_cvsslib3", "vectors_simple31", "vectors_simple4"] {
        sample.extend(fixture(file).into_iter().step_by(97).take(4));
    }
    sample
}

fn severity(score: f64) -> &'static str {
    match score {
        s if s >= 9.0 => "Critical",
        s if s >= 7.0 => "High",
        s if s >= 4.0 => "Medium",
        s if s >= 0.1 => "Low",
        _ => "None",
    }
}

fn version(vector: &str) -> &str {
    &vector[5..8]
}

#[test]
fn table_lists_vector_version_score_severity() {
    let sample = sample();
    let args: Vec<&str> = ["cvss"]
        .into_iter()
        .chain(sample.iter().map(|(v, _)| v.as_str()))
        .collect();
    let output = sluice(&args, None);
    assert!(output.status.success(), "{}", stderr(&output));
    let text = stdout(&output);
    let lines: Vec<&str> = text.lines().collect();
    assert_eq!(lines.len(), sample.len(), "{text}");
    for ((vector, score), line) in sample.iter().zip(&lines) {
        let columns: Vec<&str> = line.split_whitespace().collect();
        assert_eq!(
            columns,
            [
                vector.as_str(),
                version(vector),
                &format!("{score:.1}"),
                severity(*score)
            ],
            "{line}"
        );
    }
    // Columns line up: the version starts at the same offset on every line.
    let version_at: Vec<usize> = lines
        .iter()
        .map(|line| {
            let gap = line.find(' ').expect("a space after the vector");
            gap + line[gap..].find(|c: char| c != ' ').expect("a version")
        })
        .collect();
    assert!(version_at.windows(2).all(|w| w[0] == w[1]), "{text}");
}

#[test]
fn json_is_an_array_of_scored_vectors() {
    let sample = sample();
    let args: Vec<&str> = ["cvss", "--output", "json"]
        .into_iter()
        .chain(sample.iter().map(|(v, _)| v.as_str()))
        .collect();
    let output = sluice(&args, None);
    assert!(output.status.success(), "{}", stderr(&output));
    let text = stdout(&output);
    let rows: Vec<serde_json::Value> = serde_json::from_str(&text).expect("valid JSON array");
    assert_eq!(rows.len(), sample.len());
    for ((vector, score), row) in sample.iter().zip(&rows) {
        assert_eq!(
            *row,
            serde_json::json!({
                "vector": vector,
                "version": version(vector),
                "score": score,
                "severity": severity(*score),
            })
        );
    }
}

#[test]
fn json_scores_keep_one_decimal() {
    let output = sluice(
        &[
            "cvss",
            "-o",
            "json",
            "CVSS:3.1/AV:N/AC:L/PR:N/UI:N/S:U/C:H/I:H/A:H",
            "CVSS:3.1/AV:N/AC:L/PR:N/UI:N/S:C/C:H/I:H/A:H",
            "CVSS:4.0/AV:N/AC:L/AT:N/PR:N/UI:N/VC:N/VI:N/VA:N/SC:N/SI:N/SA:N",
        ],
        None,
    );
    assert!(output.status.success(), "{}", stderr(&output));
    let text = stdout(&output);
    for expected in [
        r#""score":9.8,"severity":"Critical""#,
        r#""score":10.0,"severity":"Critical""#,
        r#""score":0.0,"severity":"None""#,
    ] {
        assert!(text.contains(expected), "{expected} not in {text}");
    }
}

#[test]
fn stdin_streams_every_fixture_vector() {
    let mut all = Vec::new();
    for file in [
        "vectors_simple3",
        "vectors_simple31",
        "vectors_cvsslib3",
        "vectors_calculator3",
        "vectors_simple4",
        "vectors_supplemental4",
        "vectors_threat4",
        "vectors_security4",
    ] {
        all.extend(fixture(file));
    }
    // Blank lines and surrounding whitespace are skipped.
    let input: String = all
        .iter()
        .enumerate()
        .map(|(i, (v, _))| match i % 500 {
            0 => format!("\n  {v}\t\r\n"),
            _ => format!("{v}\n"),
        })
        .collect();
    for format in ["table", "json"] {
        let output = sluice(&["cvss", "--output", format, "-"], Some(&input));
        assert!(output.status.success(), "{}", stderr(&output));
        let text = stdout(&output);
        let scored: Vec<(String, f64)> = if format == "json" {
            let rows: Vec<serde_json::Value> = serde_json::from_str(&text).expect("JSON");
            rows.iter()
                .map(|row| {
                    (
                        row["vector"].as_str().expect("vector").to_owned(),
                        row["score"].as_f64().expect("score"),
                    )
                })
                .collect()
        } else {
            text.lines()
                .map(|line| {
                    let columns: Vec<&str> = line.split_whitespace().collect();
                    (columns[0].to_owned(), columns[2].parse().expect("score"))
                })
                .collect()
        };
        assert_eq!(scored, all, "{format}");
    }
}

#[test]
fn a_bad_vector_is_reported_and_the_others_scored() {
    let good = "CVSS:3.1/AV:N/AC:L/PR:N/UI:N/S:U/C:H/I:H/A:H";
    let bad = "CVSS:3.1/AV:N/AC:L/PR:N/UI:N/S:U/C:H/I:H/A:H/XY:Z";
    let v4 = "CVSS:4.0/AV:N/AC:L/AT:N/PR:N/UI:N/VC:H/VI:H/VA:H/SC:N/SI:N/SA:N";

    let output = sluice(&["cvss", good, bad, v4], None);
    assert_eq!(output.status.code(), Some(1));
    let text = stdout(&output);
    assert_eq!(text.lines().count(), 2, "{text}");
    assert!(text.contains(good) && text.contains(v4), "{text}");
    let errors = stderr(&output);
    assert!(errors.contains("XY") && errors.contains(bad), "{errors}");

    let output = sluice(&["cvss", "-o", "json", good, bad, v4], None);
    assert_eq!(output.status.code(), Some(1));
    let rows: Vec<serde_json::Value> = serde_json::from_str(&stdout(&output)).expect("JSON");
    assert_eq!(rows.len(), 2);

    let input = format!("{good}\n\n{bad}\n{v4}\nCVSS:4.0/AV:N/AC:L/AT:N/PR:N/UI:N\n");
    let output = sluice(&["cvss", "-"], Some(&input));
    assert_eq!(output.status.code(), Some(1));
    assert_eq!(stdout(&output).lines().count(), 2);
    let errors = stderr(&output);
    assert!(
        errors.contains("line 3") && errors.contains("XY"),
        "{errors}"
    );
    assert!(
        errors.contains("line 5") && errors.contains("VC"),
        "{errors}"
    );
}

#[test]
fn only_bad_vectors_still_give_valid_json() {
    let output = sluice(&["cvss", "-o", "json", "CVSS:2.0/AV:N"], None);
    assert_eq!(output.status.code(), Some(1));
    let rows: Vec<serde_json::Value> = serde_json::from_str(&stdout(&output)).expect("JSON");
    assert!(rows.is_empty());
    assert!(
        stderr(&output).contains("unsupported"),
        "{}",
        stderr(&output)
    );
}

#[test]
fn no_vectors_is_a_usage_error() {
    for (args, stdin) in [
        (&["cvss"][..], None),
        (&["cvss", "-"][..], Some("")),
        (&["cvss", "-o", "json", "-"][..], Some("\n  \n")),
        (&["cvss", "--output", "xml", "CVSS:3.1/AV:N"][..], None),
    ] {
        let output = sluice(args, stdin);
        assert_eq!(output.status.code(), Some(2), "{args:?}");
        assert!(stdout(&output).is_empty(), "{args:?}");
        assert!(!stderr(&output).is_empty(), "{args:?}");
    }
}
