//! `sluice window preview` end to end: the built binary, its table and JSON output, pinned cases
//! (Patch Tuesday + 3 days in Berlin, a `TUE#2` cron, real DST transitions), error messages and
//! exit statuses, and a few hundred generated cases compared with python-dateutil, croniter and
//! zoneinfo through sluice-core/tests/reference/schedule.py.

// A test binary: its helpers fail loudly on purpose, like the tests that call them.
#![allow(clippy::expect_used, clippy::panic)]

use std::io::Write;
use std::process::{Command, Output, Stdio};

use serde_json::{Value, json};

const REFERENCE_SCRIPT: &str = concat!(
    env!("CARGO_MANIFEST_DIR"),
    "/../sluice-core/tests/reference/schedule.py"
);

fn sluice(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_sluice"))
        .args(args)
        .stdin(Stdio::null())
        .output()
        .expect("sluice runs")
}

fn stdout(output: &Output) -> String {
    String::from_utf8(output.stdout.clone()).expect("UTF-8 stdout")
}

fn stderr(output: &Output) -> String {
    String::from_utf8(output.stderr.clone()).expect("UTF-8 stderr")
}

fn preview(args: &[&str]) -> Output {
    let mut all = vec!["window", "preview"];
    all.extend_from_slice(args);
    sluice(&all)
}

fn json_of(args: &[&str]) -> Value {
    let mut all = args.to_vec();
    all.extend_from_slice(&["--output", "json"]);
    let output = preview(&all);
    assert!(output.status.success(), "{args:?}: {}", stderr(&output));
    serde_json::from_str(&stdout(&output)).expect("JSON output")
}

#[test]
fn patch_tuesday_plus_three_days_in_berlin() {
    let args = [
        "--rrule",
        "FREQ=MONTHLY;BYDAY=2TU",
        "--offset-days",
        "3",
        "--start",
        "22:00",
        "--duration",
        "4h",
        "--tz",
        "Europe/Berlin",
        "--from",
        "2026-01-01",
        "--count",
        "4",
    ];
    let output = preview(&args);
    assert!(output.status.success(), "{}", stderr(&output));
    assert_eq!(
        stdout(&output),
        "FREQ=MONTHLY;BYDAY=2TU +3 days, 22:00 for 4h in Europe/Berlin\n\
         DAY  START (Europe/Berlin)    END (Europe/Berlin)      START (UTC)\n\
         Fri  2026-01-16 22:00 +01:00  2026-01-17 02:00 +01:00  2026-01-16 21:00Z\n\
         Fri  2026-02-13 22:00 +01:00  2026-02-14 02:00 +01:00  2026-02-13 21:00Z\n\
         Fri  2026-03-13 22:00 +01:00  2026-03-14 02:00 +01:00  2026-03-13 21:00Z\n\
         Fri  2026-04-17 22:00 +02:00  2026-04-18 02:00 +02:00  2026-04-17 20:00Z\n"
    );
    let json = json_of(&args);
    assert_eq!(
        json[0],
        json!({
            "start_utc": "2026-01-16T21:00:00Z",
            "end_utc": "2026-01-17T01:00:00Z",
            "start_local": "2026-01-16T22:00:00+01:00",
            "end_local": "2026-01-17T02:00:00+01:00",
        })
    );
    assert_eq!(json[3]["start_local"], "2026-04-17T22:00:00+02:00");
    assert_eq!(json.as_array().map(Vec::len), Some(4));
}

#[test]
fn cron_second_tuesday() {
    let base = [
        "--cron",
        "0 2 * * TUE#2",
        "--duration",
        "3h",
        "--tz",
        "America/New_York",
        "--from",
        "2026-02-11",
        "--count",
        "2",
    ];
    let expected = json!([
        {
            "start_utc": "2026-03-10T06:00:00Z",
            "end_utc": "2026-03-10T09:00:00Z",
            "start_local": "2026-03-10T02:00:00-04:00",
            "end_local": "2026-03-10T05:00:00-04:00",
        },
        {
            "start_utc": "2026-04-14T06:00:00Z",
            "end_utc": "2026-04-14T09:00:00Z",
            "start_local": "2026-04-14T02:00:00-04:00",
            "end_local": "2026-04-14T05:00:00-04:00",
        },
    ]);
    // The cron expression gives the start time; --start may repeat it.
    assert_eq!(json_of(&base), expected);
    let mut with_start = base.to_vec();
    with_start.extend_from_slice(&["--start", "02:00"]);
    assert_eq!(json_of(&with_start), expected);
    // Days only (* *), the time from --start.
    let days_only = [
        "--cron",
        "* * * * tue#2",
        "--start",
        "02:00",
        "--duration",
        "3h",
        "--tz",
        "America/New_York",
        "--from",
        "2026-02-11",
        "--count",
        "2",
    ];
    assert_eq!(json_of(&days_only), expected);
}

#[test]
fn the_dst_rule_on_real_transitions() {
    let first = |rule: &str, from: &str, start: &str, tz: &str| {
        json_of(&[
            "--rrule",
            rule,
            "--start",
            start,
            "--duration",
            "1h",
            "--tz",
            tz,
            "--from",
            from,
            "--count",
            "1",
        ])[0]
            .clone()
    };
    // Spring forward: 02:30 does not exist in New York on 2026-03-08; it becomes 03:30 EDT.
    let spring = first("FREQ=DAILY", "2026-03-08", "02:30", "America/New_York");
    assert_eq!(spring["start_local"], "2026-03-08T03:30:00-04:00");
    assert_eq!(spring["end_local"], "2026-03-08T04:30:00-04:00");
    // Fall back: 01:30 happens twice on 2026-11-01; the first (EDT) counts, and the hour is
    // elapsed time, so the window ends at 01:30 EST.
    let fall = first("FREQ=DAILY", "2026-11-01", "01:30", "America/New_York");
    assert_eq!(fall["start_local"], "2026-11-01T01:30:00-04:00");
    assert_eq!(fall["end_local"], "2026-11-01T01:30:00-05:00");
    // Lord Howe moves by 30 minutes.
    let lord_howe = first("FREQ=DAILY", "2026-10-04", "02:15", "Australia/Lord_Howe");
    assert_eq!(lord_howe["start_local"], "2026-10-04T02:45:00+11:00");
    // Samoa skipped 2011-12-30 entirely.
    let apia = first("FREQ=DAILY", "2011-12-30", "10:00", "Pacific/Apia");
    assert_eq!(apia["start_local"], "2011-12-31T10:00:00+14:00");
    // The table says what happened.
    let output = preview(&[
        "--rrule",
        "FREQ=DAILY",
        "--start",
        "02:30",
        "--duration",
        "1h",
        "--tz",
        "America/New_York",
        "--from",
        "2026-03-08",
        "--count",
        "1",
    ]);
    assert!(
        stdout(&output).contains("02:30 does not exist here (DST): moved later by the gap"),
        "{}",
        stdout(&output)
    );
}

#[test]
fn bad_input_names_the_flag() {
    let common = ["--duration", "4h", "--tz", "UTC", "--from", "2026-01-01"];
    let cases: &[(&[&str], &str)] = &[
        (&["--rrule", "FREQ=HOURLY", "--start", "22:00"], "--rrule"),
        (
            &["--rrule", "FREQ=DAILY;BYHOUR=3", "--start", "22:00"],
            "BYHOUR",
        ),
        (
            &["--rrule", "FREQ=DAILY;WHAT=1", "--start", "22:00"],
            "WHAT",
        ),
        (&["--rrule", "FREQ=DAILY", "--start", "24:00"], "--start"),
        (&["--rrule", "FREQ=DAILY"], "--start"),
        (&["--cron", "0 2 * * TUE#2", "--start", "22:00"], "--start"),
        (&["--cron", "* * * * *"], "--start"),
        (&["--cron", "0 2 * *", "--start", "02:00"], "--cron"),
        (&["--cron", "0 2 * * TUE#6"], "day-of-week"),
        (&["--start", "22:00"], "--rrule"),
        (
            &[
                "--rrule",
                "FREQ=DAILY",
                "--cron",
                "0 2 * * *",
                "--start",
                "02:00",
            ],
            "--cron",
        ),
        (
            &[
                "--rrule",
                "FREQ=DAILY",
                "--start",
                "22:00",
                "--offset-days",
                "999",
            ],
            "--offset-days",
        ),
        (
            &["--rrule", "FREQ=DAILY", "--start", "22:00", "--count", "0"],
            "--count",
        ),
    ];
    for (args, named) in cases {
        let mut all = args.to_vec();
        all.extend_from_slice(&common);
        let output = preview(&all);
        assert_eq!(output.status.code(), Some(2), "{args:?}");
        assert!(
            stderr(&output).contains(named),
            "{args:?}: {}",
            stderr(&output)
        );
        assert!(stdout(&output).is_empty(), "{args:?}");
    }
    for (flag, value) in [
        ("--duration", "0m"),
        ("--duration", "-1h"),
        ("--duration", "soon"),
        ("--tz", "Mars/Olympus_Mons"),
        ("--from", "2026-02-30"),
    ] {
        let mut args = vec!["--rrule", "FREQ=DAILY", "--start", "22:00"];
        for (f, v) in [
            ("--duration", "4h"),
            ("--tz", "UTC"),
            ("--from", "2026-01-01"),
        ] {
            args.extend_from_slice(&[f, if f == flag { value } else { v }]);
        }
        let output = preview(&args);
        assert_eq!(output.status.code(), Some(2), "{flag} {value}");
        let message = stderr(&output);
        assert!(
            message.contains(flag) && message.contains(value),
            "{flag} {value}: {message}"
        );
    }
}

/// SplitMix64: small, deterministic.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    fn below(&mut self, n: u64) -> u64 {
        self.next() % n
    }

    fn pick<'a>(&mut self, items: &[&'a str]) -> &'a str {
        items[self.below(items.len() as u64) as usize]
    }
}

const RULES: &[&str] = &[
    "FREQ=MONTHLY;BYDAY=2TU",
    "FREQ=MONTHLY;BYDAY=-1FR",
    "FREQ=MONTHLY;BYDAY=MO,TU,WE,TH,FR;BYSETPOS=-1",
    "FREQ=MONTHLY;BYMONTHDAY=1,15",
    "FREQ=MONTHLY;BYMONTHDAY=-1",
    "FREQ=WEEKLY;BYDAY=SA,SU",
    "FREQ=WEEKLY;INTERVAL=2;BYDAY=TU",
    "FREQ=DAILY",
    "FREQ=DAILY;INTERVAL=3;COUNT=8",
    "FREQ=YEARLY;BYMONTH=3,10;BYDAY=-1SU",
    "FREQ=YEARLY;BYMONTH=11;BYDAY=1SU",
    "RRULE:FREQ=MONTHLY;INTERVAL=3;BYDAY=1MO",
    "FREQ=WEEKLY;BYDAY=SU;UNTIL=20300101T000000Z",
];
const CRONS: &[&str] = &[
    "* * * * TUE#2",
    "* * * * SUN",
    "* * L * *",
    "* * 1,15 * *",
    "* * * * FRIL",
    "* * * 3,10 SUN",
    "* * 13 * FRI",
    "* * */7 JAN-JUN *",
];
const ZONES: &[&str] = &[
    "UTC",
    "Europe/Berlin",
    "Europe/London",
    "America/New_York",
    "America/Santiago",
    "Australia/Lord_Howe",
    "Pacific/Apia",
    "Asia/Kathmandu",
    "America/Havana",
];

#[test]
fn generated_cases_match_the_reference() {
    let mut rng = Rng(0x51_u64 << 40 | 0xCA1E);
    let mut cases = Vec::new();
    let mut invocations = Vec::new();
    for _ in 0..240 {
        let cron = rng.below(3) == 0;
        let rule = if cron {
            rng.pick(CRONS)
        } else {
            rng.pick(RULES)
        };
        let tz = rng.pick(ZONES);
        let from = format!(
            "{}-{:02}-{:02}",
            2005 + rng.below(30),
            1 + rng.below(12),
            1 + rng.below(28)
        );
        let start = format!(
            "{:02}:{:02}",
            rng.below(24).min(rng.below(24)),
            15 * rng.below(4)
        );
        let minutes = 15 * (1 + rng.below(40));
        let duration = match (minutes / 60, minutes % 60) {
            (0, m) => format!("{m}m"),
            (h, 0) => format!("{h}h"),
            (h, m) => format!("{h}h{m}m"),
        };
        let offset: i64 = if rng.below(2) == 0 {
            0
        } else {
            rng.below(15) as i64 - 7
        };
        let count = 1 + rng.below(12);
        cases.push(json!({
            "kind": if cron { "cron" } else { "rrule" },
            "rule": rule,
            "from": from,
            "start": start,
            "duration_minutes": minutes,
            "tz": tz,
            "offset_days": offset,
            "count": count,
            "horizon_year": 9000,
        }));
        invocations.push(vec![
            if cron { "--cron" } else { "--rrule" }.to_owned(),
            rule.to_owned(),
            "--start".to_owned(),
            start,
            "--duration".to_owned(),
            duration,
            "--tz".to_owned(),
            tz.to_owned(),
            "--from".to_owned(),
            from,
            "--offset-days".to_owned(),
            offset.to_string(),
            "--count".to_owned(),
            count.to_string(),
        ]);
    }
    let python = std::env::var("PYTHON").unwrap_or_else(|_| "python3".to_owned());
    let mut child = Command::new(&python)
        .arg(REFERENCE_SCRIPT)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap_or_else(|e| panic!("cannot run {python}: {e}"));
    child
        .stdin
        .take()
        .expect("piped stdin")
        .write_all(&serde_json::to_vec(&cases).expect("JSON"))
        .expect("cases written");
    let output = child.wait_with_output().expect("python ran");
    assert!(
        output.status.success(),
        "the reference script failed; `pip install python-dateutil croniter`?\n{}",
        String::from_utf8_lossy(&output.stderr)
    );
    let answers: Vec<Value> = serde_json::from_slice(&output.stdout).expect("JSON answers");
    let mut compared = 0;
    for ((case, args), answer) in cases.iter().zip(&invocations).zip(&answers) {
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        let ours = json_of(&args);
        let expected: Vec<Value> = answer["occurrences"]
            .as_array()
            .unwrap_or_else(|| panic!("{case}: reference refused: {answer}"))
            .iter()
            .map(|o| {
                json!({
                    "start_utc": o[0], "end_utc": o[1], "start_local": o[2], "end_local": o[3],
                })
            })
            .collect();
        assert_eq!(ours, Value::Array(expected), "{case}");
        compared += ours.as_array().map_or(0, Vec::len);
    }
    assert!(compared > 1000, "only {compared} occurrences compared");
}
