//! Window occurrences checked against python-dateutil's `rrule` (RRULE cases) and `croniter`
//! (cron cases), with `zoneinfo` for the zones, run by tests/reference/schedule.py in one process
//! for the whole batch: thousands of seeded random rules, zones, start dates, start times
//! (biased towards the small hours, where daylight-saving transitions are), durations and day
//! offsets. Every start and end instant, and the local offsets, must agree.
//!
//! Needs `python3` with `pip install python-dateutil==2.9.0.post0 croniter==7.0.0` (the versions
//! used) and the system tz database, which jiff and zoneinfo both read. A missing package fails
//! the test: a skipped reference check would hide expansion regressions.

// A test binary: its helpers fail loudly on purpose, like the tests that call them.
#![allow(clippy::expect_used, clippy::panic)]

use std::io::Write;
use std::process::{Command, Stdio};

use jiff::SignedDuration;
use jiff::civil::Date;
use jiff::tz::TimeZone;
use serde::{Deserialize, Serialize};
use sluice_core::calendar::{
    CalendarError, CronSchedule, MaintenanceWindow, RecurrenceRule, Schedule, parse_time_of_day,
};

const REFERENCE_SCRIPT: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/reference/schedule.py");

const RRULE_CASES: usize = 4_000;
const CRON_CASES: usize = 2_000;

/// Zones with something to test: DST in both hemispheres, 30-minute and 2-hour shifts, negative
/// DST, transitions at midnight, skipped days, half- and quarter-hour offsets, none at all.
const ZONES: &[&str] = &[
    "UTC",
    "America/New_York",
    "America/Chicago",
    "America/Los_Angeles",
    "America/St_Johns",
    "America/Santiago",
    "America/Havana",
    "America/Sao_Paulo",
    "America/Asuncion",
    "Europe/Berlin",
    "Europe/London",
    "Europe/Dublin",
    "Europe/Moscow",
    "Europe/Lisbon",
    "Africa/Casablanca",
    "Africa/Cairo",
    "Asia/Tehran",
    "Asia/Jerusalem",
    "Asia/Gaza",
    "Asia/Beirut",
    "Asia/Kolkata",
    "Asia/Kathmandu",
    "Asia/Tokyo",
    "Australia/Sydney",
    "Australia/Adelaide",
    "Australia/Lord_Howe",
    "Pacific/Auckland",
    "Pacific/Chatham",
    "Pacific/Apia",
    "Pacific/Kiritimati",
    "Antarctica/Troll",
];

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

    fn range(&mut self, low: i64, high: i64) -> i64 {
        low + self.below((high - low + 1) as u64) as i64
    }

    fn chance(&mut self, percent: u64) -> bool {
        self.below(100) < percent
    }

    fn pick<'a, T>(&mut self, items: &'a [T]) -> &'a T {
        &items[self.below(items.len() as u64) as usize]
    }
}

#[derive(Serialize, Clone, Debug)]
struct Case {
    kind: &'static str,
    rule: String,
    from: String,
    start: String,
    duration_minutes: i64,
    tz: &'static str,
    offset_days: i32,
    count: usize,
    horizon_year: i16,
}

#[derive(Deserialize, Debug)]
struct Answer {
    occurrences: Option<Vec<[String; 4]>>,
    error: Option<String>,
}

const DAYS: [&str; 7] = ["MO", "TU", "WE", "TH", "FR", "SA", "SU"];

fn distinct(rng: &mut Rng, n: usize, mut item: impl FnMut(&mut Rng) -> String) -> Vec<String> {
    let mut out: Vec<String> = Vec::new();
    for _ in 0..n * 3 {
        let value = item(rng);
        if !out.contains(&value) {
            out.push(value);
        }
        if out.len() == n {
            break;
        }
    }
    out
}

fn random_rrule(rng: &mut Rng, from: Date) -> String {
    let freq = *rng.pick(&[
        "DAILY", "WEEKLY", "WEEKLY", "MONTHLY", "MONTHLY", "MONTHLY", "YEARLY",
    ]);
    let mut parts = vec![format!("FREQ={freq}")];
    if rng.chance(40) {
        let interval = if rng.chance(80) {
            rng.range(1, 4)
        } else {
            rng.range(5, 13)
        };
        parts.push(format!("INTERVAL={interval}"));
    }
    let by_month = rng.chance(if freq == "YEARLY" { 45 } else { 15 });
    if by_month {
        let n = rng.range(1, 3) as usize;
        let months = distinct(rng, n, |r| r.range(1, 12).to_string());
        parts.push(format!("BYMONTH={}", months.join(",")));
    }
    let mut chose_days = false;
    if rng.chance(if freq == "DAILY" { 15 } else { 30 }) {
        let n = rng.range(1, 3) as usize;
        let days = distinct(rng, n, |r| {
            if r.chance(80) {
                r.range(1, 28).to_string()
            } else if r.chance(50) {
                r.range(29, 31).to_string()
            } else {
                (-r.range(1, 31)).to_string()
            }
        });
        parts.push(format!("BYMONTHDAY={}", days.join(",")));
        chose_days = true;
    }
    let ordinals = matches!(freq, "MONTHLY" | "YEARLY") && rng.chance(50);
    if ordinals {
        let in_month = freq == "MONTHLY" || by_month;
        let n = rng.range(1, 2) as usize;
        let days = distinct(rng, n, |r| {
            let nth = if in_month {
                if r.chance(85) { r.range(1, 4) } else { 5 }
            } else {
                r.range(1, 53)
            };
            let nth = if r.chance(30) { -nth } else { nth };
            let sign = if nth > 0 && r.chance(10) { "+" } else { "" };
            format!("{sign}{nth}{}", r.pick(&DAYS))
        });
        parts.push(format!("BYDAY={}", days.join(",")));
        chose_days = true;
    } else if rng.chance(if freq == "DAILY" { 30 } else { 45 }) {
        let n = rng.range(1, 5) as usize;
        let days = distinct(rng, n, |r| (*r.pick(&DAYS)).to_owned());
        parts.push(format!("BYDAY={}", days.join(",")));
        chose_days = true;
    }
    if rng.chance(if chose_days { 30 } else { 8 }) {
        let n = rng.range(1, 2) as usize;
        let positions = distinct(rng, n, |r| {
            let p = r.range(1, 4);
            if r.chance(50) {
                (-p).to_string()
            } else {
                p.to_string()
            }
        });
        parts.push(format!("BYSETPOS={}", positions.join(",")));
    }
    if freq == "WEEKLY" && rng.chance(25) {
        parts.push(format!("WKST={}", rng.pick(&DAYS)));
    }
    let end_kind = rng.below(10);
    if end_kind < 2 {
        parts.push(format!("COUNT={}", rng.range(1, 30)));
    } else if end_kind < 4 {
        let days = rng.range(-5, 900);
        let until = from
            .checked_add(jiff::Span::new().days(days))
            .expect("until in range");
        if rng.chance(50) {
            parts.push(format!("UNTIL={}", until.strftime("%Y%m%d")));
        } else {
            let hour = rng.range(0, 23);
            let minute = *rng.pick(&[0, 0, 30, 59]);
            parts.push(format!(
                "UNTIL={}T{hour:02}{minute:02}00Z",
                until.strftime("%Y%m%d")
            ));
        }
    }
    // Any order is valid.
    if rng.chance(20) {
        for i in (1..parts.len()).rev() {
            let j = rng.below(i as u64 + 1) as usize;
            parts.swap(i, j);
        }
    }
    let mut rule = parts.join(";");
    if rng.chance(10) {
        rule = format!("RRULE:{rule}");
    }
    if rng.chance(10) {
        rule = rule.to_lowercase();
    }
    rule
}

const CRON_DAYS: [&str; 7] = ["SUN", "MON", "TUE", "WED", "THU", "FRI", "SAT"];
const CRON_MONTHS: [&str; 12] = [
    "JAN", "FEB", "MAR", "APR", "MAY", "JUN", "JUL", "AUG", "SEP", "OCT", "NOV", "DEC",
];

/// A random list for a cron field and the values it allows (bit v for value v; day-of-week 7
/// counts as 0). Two croniter readings differ from Sluice's on purpose (docs/calendar.md) and are
/// left out: a one-value range such as `31-31` or `SUN-SUN` (croniter: the whole cycle), and a
/// list naming every value while the other day field is restricted (croniter turns it into `*`
/// when the other field's text holds a `*`); `random_cron` filters the latter with the bits.
fn cron_list(rng: &mut Rng, min: i64, max: i64, names: &[&str]) -> (String, u64) {
    let weekday = names.len() == 7;
    // The largest value steps and wrapping ranges reach (Saturday for weekdays).
    let top = if weekday { 6 } else { max };
    let name = |r: &mut Rng, v: i64| {
        if !names.is_empty() && r.chance(30) {
            let index = if names.len() == 12 { v - 1 } else { v % 7 };
            names[index as usize].to_owned()
        } else {
            v.to_string()
        }
    };
    let mut bits = 0u64;
    let set = |bits: &mut u64, v: i64| *bits |= 1 << if weekday { v % 7 } else { v };
    let n = rng.range(1, 3) as usize;
    let items = distinct(rng, n, |r| match r.below(5) {
        0 => {
            let low = r.range(min, max - 1);
            let high = r.range(low + 1, max);
            // Not SUN-SUN or 0-SUN either: 7 is written as a number after 0.
            let high_text = if low == 0 && high == 7 {
                "7".to_owned()
            } else {
                name(r, high)
            };
            (low..=high).for_each(|v| set(&mut bits, v));
            format!("{}-{high_text}", name(r, low))
        }
        1 => {
            // A range that wraps around.
            let low = r.range(min + 1, top);
            let high = r.range(min, low - 1);
            (low..=top)
                .chain(min..=high)
                .for_each(|v| set(&mut bits, v));
            format!("{}-{}", name(r, low), name(r, high))
        }
        2 => {
            let step = r.range(2, 10);
            if r.chance(50) {
                (min..=top)
                    .step_by(step as usize)
                    .for_each(|v| set(&mut bits, v));
                format!("*/{step}")
            } else {
                let low = r.range(min, max);
                let from = if weekday { low % 7 } else { low };
                (from..=top)
                    .step_by(step as usize)
                    .for_each(|v| set(&mut bits, v));
                format!("{low}/{step}")
            }
        }
        _ => {
            let v = r.range(min, max);
            set(&mut bits, v);
            name(r, v)
        }
    });
    (items.join(","), bits)
}

fn random_cron(rng: &mut Rng, start: &str) -> String {
    let (hour, minute) = start.split_once(':').expect("HH:MM");
    let time = if rng.chance(50) {
        "* *".to_owned()
    } else {
        format!(
            "{} {}",
            minute.trim_start_matches('0').parse::<u32>().unwrap_or(0),
            hour.trim_start_matches('0').parse::<u32>().unwrap_or(0)
        )
    };
    let month = if rng.chance(60) {
        "*".to_owned()
    } else {
        cron_list(rng, 1, 12, &CRON_MONTHS).0
    };
    let special = rng.chance(30);
    let (dom, dow) = if special {
        let day = rng.range(0, 7);
        let day = if rng.chance(40) {
            CRON_DAYS[(day % 7) as usize].to_owned()
        } else {
            day.to_string()
        };
        let dow = if rng.chance(60) {
            format!("{day}#{}", rng.range(1, 5))
        } else {
            format!("{day}L")
        };
        ("*".to_owned(), dow)
    } else {
        const ALL_MONTH_DAYS: u64 = ((1 << 32) - 1) & !1;
        const ALL_WEEKDAYS: u64 = (1 << 7) - 1;
        loop {
            let (dom, dom_bits) = match rng.below(4) {
                0 | 1 => ("*".to_owned(), ALL_MONTH_DAYS),
                2 => cron_list(rng, 1, 31, &[]),
                _ => ("L".to_owned(), 0),
            };
            let (dow, dow_bits) = if rng.chance(50) {
                ("*".to_owned(), ALL_WEEKDAYS)
            } else {
                cron_list(rng, 0, 7, &CRON_DAYS)
            };
            let both_restricted = dom != "*" && dow != "*";
            let full = dom_bits == ALL_MONTH_DAYS || dow_bits == ALL_WEEKDAYS;
            if !(both_restricted && full) {
                break (dom, dow);
            }
        }
    };
    format!("{time} {dom} {month} {dow}")
}

fn random_case(rng: &mut Rng, kind: &'static str) -> Case {
    let year = rng.range(1995, 2036) as i16;
    let from = jiff::civil::date(year, 1, 1)
        .checked_add(jiff::Span::new().days(rng.range(0, 364)))
        .expect("from in range");
    let start = if rng.chance(50) {
        format!("{:02}:{:02}", rng.range(0, 3), 15 * rng.range(0, 3))
    } else {
        format!("{:02}:{:02}", rng.range(0, 23), rng.range(0, 59))
    };
    let offset_days = if rng.chance(60) {
        0
    } else if rng.chance(80) {
        rng.range(-10, 10) as i32
    } else {
        rng.range(-60, 60) as i32
    };
    let rule = match kind {
        "rrule" => random_rrule(rng, from),
        _ => random_cron(rng, &start),
    };
    Case {
        kind,
        rule,
        from: from.to_string(),
        start,
        duration_minutes: if rng.chance(70) {
            15 * rng.range(1, 32)
        } else {
            rng.range(1, 3000)
        },
        tz: rng.pick::<&str>(ZONES),
        offset_days,
        count: rng.range(1, 25) as usize,
        horizon_year: year + 30,
    }
}

/// Expands `case` as `sluice window preview` does.
fn ours(case: &Case) -> Result<Vec<[String; 4]>, CalendarError> {
    let from: Date = case.from.parse().expect("from date");
    let schedule = match case.kind {
        "rrule" => Schedule::Rrule {
            rule: RecurrenceRule::parse(&case.rule)?,
            dtstart: from,
        },
        _ => Schedule::Cron(CronSchedule::parse(&case.rule)?),
    };
    let tz = TimeZone::get(case.tz).expect("zone in the system tz database");
    let window = MaintenanceWindow::new(
        schedule,
        parse_time_of_day(&case.start)?,
        SignedDuration::from_mins(case.duration_minutes),
        tz,
    )?
    .with_offset_days(case.offset_days)?;
    Ok(window
        .occurrences_between(from, jiff::civil::date(case.horizon_year, 12, 31))
        .take(case.count)
        .map(|o| [o.start_utc(), o.end_utc(), o.start_local(), o.end_local()])
        .collect())
}

fn reference(cases: &[Case]) -> Vec<Answer> {
    let python = std::env::var("PYTHON").unwrap_or_else(|_| "python3".to_owned());
    let mut child = Command::new(&python)
        .arg(REFERENCE_SCRIPT)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap_or_else(|e| {
            panic!("cannot run {python} ({e}): install Python 3, python-dateutil and croniter")
        });
    let mut stdin = child.stdin.take().expect("stdin is piped");
    let input = serde_json::to_vec(cases).expect("cases as JSON");
    let writer = std::thread::spawn(move || stdin.write_all(&input));
    let output = child.wait_with_output().expect("python ran");
    writer
        .join()
        .expect("writer thread")
        .expect("cases written to python");
    assert!(
        output.status.success(),
        "the reference script failed ({}); `pip install python-dateutil croniter`?\n{}",
        output.status,
        String::from_utf8_lossy(&output.stderr)
    );
    let answers: Vec<Answer> = serde_json::from_slice(&output.stdout).expect("JSON from python");
    assert_eq!(answers.len(), cases.len(), "one answer per case");
    answers
}

fn compare(kind: &'static str, count: usize, seed: u64) {
    let mut rng = Rng(seed);
    let cases: Vec<Case> = (0..count).map(|_| random_case(&mut rng, kind)).collect();
    let answers = reference(&cases);
    let mut occurrences = 0;
    let mut never = 0;
    let mut failures = Vec::new();
    for (case, answer) in cases.iter().zip(&answers) {
        let ours = ours(case);
        match (&ours, &answer.occurrences, &answer.error) {
            (Ok(got), Some(expected), _) if got == expected => occurrences += got.len(),
            // A cron expression that matches no day: we refuse it, croniter finds nothing.
            (Err(CalendarError::Cron { reason, .. }), Some(expected), _)
                if reason.contains("matches no day") && expected.is_empty() =>
            {
                never += 1;
            }
            _ => failures.push(format!(
                "{case:?}\n  ours:      {ours:?}\n  reference: {:?}",
                answer
                    .occurrences
                    .as_ref()
                    .map(|o| o as &dyn std::fmt::Debug)
                    .unwrap_or(&answer.error)
            )),
        }
    }
    assert!(
        failures.is_empty(),
        "{} of {count} {kind} cases differ from the reference; the first ones:\n{}",
        failures.len(),
        failures
            .iter()
            .take(8)
            .cloned()
            .collect::<Vec<_>>()
            .join("\n")
    );
    // The generator must produce real work, not empty expansions.
    assert!(
        occurrences > count * 5,
        "{kind}: only {occurrences} occurrences compared"
    );
    assert!(never < count / 20, "{kind}: {never} cases never match");
    eprintln!("{kind}: {count} cases, {occurrences} occurrences equal, {never} never match");
}

#[test]
fn rrule_windows_match_dateutil_and_zoneinfo() {
    compare("rrule", RRULE_CASES, 0x5EED_CA1E);
}

#[test]
fn cron_windows_match_croniter_and_zoneinfo() {
    compare("cron", CRON_CASES, 0xC0FF_EE00);
}

/// Real transitions, written out: the DST rule as the documentation states it.
#[test]
fn pinned_transitions_match_the_reference() {
    let pinned = [
        // spring forward: 02:30 does not exist, 03:30 EDT
        (
            "FREQ=DAILY;COUNT=1",
            "2026-03-08",
            "02:30",
            "America/New_York",
        ),
        // fall back: 01:30 happens twice, the first (EDT) counts
        (
            "FREQ=DAILY;COUNT=1",
            "2026-11-01",
            "01:30",
            "America/New_York",
        ),
        ("FREQ=DAILY;COUNT=1", "2026-03-29", "01:30", "Europe/London"),
        ("FREQ=DAILY;COUNT=1", "2026-10-25", "01:30", "Europe/London"),
        (
            "FREQ=DAILY;COUNT=1",
            "2026-10-04",
            "02:15",
            "Australia/Lord_Howe",
        ),
        (
            "FREQ=DAILY;COUNT=1",
            "2026-04-05",
            "01:45",
            "Australia/Lord_Howe",
        ),
        // Samoa skipped 2011-12-30
        ("FREQ=DAILY;COUNT=3", "2011-12-29", "10:00", "Pacific/Apia"),
    ];
    let cases: Vec<Case> = pinned
        .iter()
        .map(|(rule, from, start, tz)| Case {
            kind: "rrule",
            rule: (*rule).to_owned(),
            from: (*from).to_owned(),
            start: (*start).to_owned(),
            duration_minutes: 240,
            tz,
            offset_days: 0,
            count: 3,
            horizon_year: 2100,
        })
        .collect();
    let answers = reference(&cases);
    let expected_starts = [
        vec!["2026-03-08T03:30:00-04:00"],
        vec!["2026-11-01T01:30:00-04:00"],
        vec!["2026-03-29T02:30:00+01:00"],
        vec!["2026-10-25T01:30:00+01:00"],
        vec!["2026-10-04T02:45:00+11:00"],
        vec!["2026-04-05T01:45:00+11:00"],
        vec![
            "2011-12-29T10:00:00-10:00",
            "2011-12-31T10:00:00+14:00",
            "2011-12-31T10:00:00+14:00",
        ],
    ];
    for ((case, answer), starts) in cases.iter().zip(&answers).zip(expected_starts) {
        let ours = ours(case).expect("pinned case expands");
        let ours_starts: Vec<&str> = ours.iter().map(|o| o[2].as_str()).collect();
        assert_eq!(ours_starts, starts, "{case:?}");
        assert_eq!(Some(&ours), answer.occurrences.as_ref(), "{case:?}");
    }
}
