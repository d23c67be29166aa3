//! Calendars: maintenance windows, freezes, and the conflicts a scheduled change runs into.
//!
//! Owns: the meaning of a window rule (an RFC 5545 RRULE subset or a 5-field cron expression,
//! plus day offset, start time, duration, cutoff, zone and active range), the daylight-saving
//! rule that turns local start times into instants, freezes with their exceptions, and conflict
//! detection. Never does I/O: time zones come in as resolved `jiff::tz::TimeZone` values (the
//! caller reads the tz database) and "now" is always a parameter.
//!
//! The daylight-saving rule (see docs/calendar.md): a local start time that does not exist
//! (spring forward) moves later by the length of the gap; an ambiguous one (fall back) takes the
//! first occurrence; durations are elapsed time. This is jiff's `compatible` disambiguation and
//! what Python's `zoneinfo` does with `fold=0`, which is what the reference tests compare with.

pub mod conflict;
pub mod cron;
pub mod freeze;
pub mod rrule;
pub mod spec;
pub mod window;

use std::fmt;

use jiff::SignedDuration;
use jiff::Zoned;
use jiff::civil::{Date, Time};
use jiff::tz::TimeZone;

pub use conflict::{Conflict, HostCalendar, ProposedChange, ScheduledChange, detect_conflicts};
pub use cron::CronSchedule;
pub use freeze::{Freeze, FreezeCalendar, FreezeException, FreezeRule, Scope};
pub use rrule::RecurrenceRule;
pub use spec::{FreezeRuleSpec, FreezeSpec, SpecError, WindowSpec};
pub use window::{MaintenanceWindow, Occurrence, Schedule, rfc3339_local, rfc3339_utc};

/// Why a calendar rule, duration or time was refused. Every message quotes the input and names
/// the part at fault, so that the operator can fix it without reading the code.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum CalendarError {
    /// An RRULE that does not parse, or uses a part Sluice does not support.
    #[error("RRULE \"{rule}\": {part}: {reason}")]
    Rrule {
        /// The rule as given.
        rule: String,
        /// The rule part at fault (`FREQ`, `BYDAY`, ...), or `rule` for the whole rule.
        part: String,
        /// What is wrong with it.
        reason: String,
    },
    /// A cron expression that does not parse or cannot describe a window.
    #[error("cron expression \"{expr}\": {field}: {reason}")]
    Cron {
        /// The expression as given.
        expr: String,
        /// The field at fault (`minute`, `day-of-week`, ...), or `expression`.
        field: &'static str,
        /// What is wrong with it.
        reason: String,
    },
    /// A duration that is not a positive `4h`, `90m`, `1h30m`, `2d`.
    #[error("duration \"{input}\": {reason} (expected e.g. 4h, 90m or 1h30m)")]
    Duration {
        /// The duration as given.
        input: String,
        /// What is wrong with it.
        reason: String,
    },
    /// A time of day that is not `HH:MM`.
    #[error("time of day \"{input}\": {reason} (expected HH:MM, e.g. 22:00)")]
    TimeOfDay {
        /// The time as given.
        input: String,
        /// What is wrong with it.
        reason: String,
    },
    /// A window whose parts do not fit together (cutoff longer than the duration, ...).
    #[error("maintenance window: {0}")]
    Window(String),
    /// A freeze whose parts do not fit together.
    #[error("freeze \"{name}\": {reason}")]
    Freeze {
        /// The freeze's name.
        name: String,
        /// What is wrong with it.
        reason: String,
    },
    /// A date or instant outside what jiff can represent (years 9999 and beyond).
    #[error("date out of range: {0}")]
    OutOfRange(String),
}

/// The longest duration accepted anywhere in calendars: a year and a day. Longer values are
/// typos, and the limit keeps instant arithmetic far from overflow.
pub const MAX_DURATION: SignedDuration = SignedDuration::from_hours(366 * 24);

/// The instant that local `date` and `time` denote in `tz`, by Sluice's DST rule: a time in a
/// gap moves later by the gap's length, an ambiguous time takes its first (earlier) occurrence.
pub fn resolve_local(date: Date, time: Time, tz: &TimeZone) -> Result<Zoned, CalendarError> {
    tz.to_ambiguous_zoned(date.to_datetime(time))
        .compatible()
        .map_err(|e| CalendarError::OutOfRange(format!("{date} {time}: {e}")))
}

/// Parses a duration written as days, hours and minutes in that order, each at most once:
/// `4h`, `90m`, `1h30m`, `2d`, `1d12h`. Zero, negative and longer-than-[`MAX_DURATION`] values
/// are refused.
pub fn parse_duration(input: &str) -> Result<SignedDuration, CalendarError> {
    let err = |reason: &str| CalendarError::Duration {
        input: input.to_owned(),
        reason: reason.to_owned(),
    };
    let text = input.trim();
    if text.is_empty() {
        return Err(err("empty"));
    }
    if text.starts_with('-') {
        return Err(err("negative durations are not allowed"));
    }
    let mut total: i64 = 0;
    let mut rest = text;
    // The unit allowed next: d, then h, then m.
    let mut next_unit = 0;
    while !rest.is_empty() {
        let digits = rest.bytes().take_while(u8::is_ascii_digit).count();
        if digits == 0 {
            return Err(err("expected a number before each unit"));
        }
        let (number, tail) = rest.split_at(digits);
        let value: i64 = number.parse().map_err(|_| err("number too large"))?;
        let mut chars = tail.chars();
        let (unit_index, minutes_per_unit) = match chars.next() {
            Some('d') => (0, 24 * 60),
            Some('h') => (1, 60),
            Some('m') => (2, 1),
            Some(other) => {
                return Err(err(&format!("unknown unit '{other}' (use d, h or m)")));
            }
            None => return Err(err("a number needs a unit (d, h or m)")),
        };
        if unit_index < next_unit {
            return Err(err(
                "units must come in the order d, h, m, each at most once",
            ));
        }
        next_unit = unit_index + 1;
        total = value
            .checked_mul(minutes_per_unit)
            .and_then(|v| total.checked_add(v))
            .ok_or_else(|| err("too long"))?;
        rest = chars.as_str();
    }
    if total == 0 {
        return Err(err("must be longer than zero"));
    }
    let duration = SignedDuration::from_mins(total);
    if duration > MAX_DURATION {
        return Err(err("longer than 366 days"));
    }
    Ok(duration)
}

/// A duration written the way [`parse_duration`] reads it (`1h30m`, `4h`, `2d`).
pub fn format_duration(duration: SignedDuration) -> String {
    let minutes = duration.as_mins();
    let (days, hours, mins) = (minutes / 1440, minutes % 1440 / 60, minutes % 60);
    let mut out = String::new();
    if days != 0 {
        out.push_str(&format!("{days}d"));
    }
    if hours != 0 {
        out.push_str(&format!("{hours}h"));
    }
    if mins != 0 || out.is_empty() {
        out.push_str(&format!("{mins}m"));
    }
    out
}

/// Parses a time of day `HH:MM` (24-hour clock; one-digit hours allowed).
pub fn parse_time_of_day(input: &str) -> Result<Time, CalendarError> {
    let err = |reason: &str| CalendarError::TimeOfDay {
        input: input.to_owned(),
        reason: reason.to_owned(),
    };
    let text = input.trim();
    let (hour, minute) = text.split_once(':').ok_or_else(|| err("no ':'"))?;
    let digits = |s: &str, max_len| {
        !s.is_empty() && s.len() <= max_len && s.bytes().all(|b| b.is_ascii_digit())
    };
    if !digits(hour, 2) || !digits(minute, 2) || minute.len() != 2 {
        return Err(err(
            "hours and minutes must be numbers, minutes with two digits",
        ));
    }
    let hour: i8 = hour.parse().map_err(|_| err("bad hour"))?;
    let minute: i8 = minute.parse().map_err(|_| err("bad minute"))?;
    if hour > 23 {
        return Err(err("hour must be 0 to 23"));
    }
    if minute > 59 {
        return Err(err("minute must be 0 to 59"));
    }
    Time::new(hour, minute, 0, 0).map_err(|e| err(&e.to_string()))
}

/// A half-open span of time `[start, end)` between two instants.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct TimeRange {
    /// First instant inside.
    pub start: jiff::Timestamp,
    /// First instant after.
    pub end: jiff::Timestamp,
}

impl TimeRange {
    /// The range `[start, end)`; `None` unless `start < end`.
    pub fn new(start: jiff::Timestamp, end: jiff::Timestamp) -> Option<Self> {
        (start < end).then_some(Self { start, end })
    }

    /// Whether `instant` lies inside.
    pub fn contains(&self, instant: jiff::Timestamp) -> bool {
        self.start <= instant && instant < self.end
    }

    /// Whether the two ranges share an instant.
    pub fn overlaps(&self, other: &TimeRange) -> bool {
        self.start < other.end && other.start < self.end
    }

    /// The shared part, if any.
    pub fn intersection(&self, other: &TimeRange) -> Option<TimeRange> {
        TimeRange::new(self.start.max(other.start), self.end.min(other.end))
    }
}

impl fmt::Display for TimeRange {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} to {}", self.start, self.end)
    }
}

/// Day numbers: days since 1970-01-01 in the proleptic Gregorian calendar. Rule expansion walks
/// days as integers, which is simpler and faster than span arithmetic on civil dates.
pub(crate) mod days {
    use jiff::civil::{Date, Weekday};

    /// The day number of `date`.
    pub fn number(date: Date) -> i64 {
        // Howard Hinnant's days_from_civil.
        let (y, m, d) = (
            i64::from(date.year()),
            i64::from(date.month()),
            i64::from(date.day()),
        );
        let y = if m <= 2 { y - 1 } else { y };
        let era = y.div_euclid(400);
        let yoe = y - era * 400;
        let mp = (m + 9) % 12;
        let doy = (153 * mp + 2) / 5 + d - 1;
        let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
        era * 146_097 + doe - 719_468
    }

    /// The date of day number `n`; `None` outside jiff's range (years -9999 to 9999).
    pub fn date(n: i64) -> Option<Date> {
        let z = n + 719_468;
        let era = z.div_euclid(146_097);
        let doe = z - era * 146_097;
        let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
        let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
        let mp = (5 * doy + 2) / 153;
        let d = doy - (153 * mp + 2) / 5 + 1;
        let m = if mp < 10 { mp + 3 } else { mp - 9 };
        let y = yoe + era * 400 + i64::from(m <= 2);
        Date::new(
            i16::try_from(y).ok()?,
            i8::try_from(m).ok()?,
            i8::try_from(d).ok()?,
        )
        .ok()
    }

    /// Monday = 0 ... Sunday = 6.
    pub fn weekday_index(weekday: Weekday) -> i64 {
        i64::from(weekday.to_monday_zero_offset())
    }

    /// The weekday of day number `n` as Monday = 0 ... Sunday = 6 (1970-01-01 was a Thursday).
    pub fn weekday_of(n: i64) -> i64 {
        (n + 3).rem_euclid(7)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use jiff::civil::{date, time};

    fn zone(name: &str) -> TimeZone {
        TimeZone::get(name).unwrap()
    }

    fn at(name: &str, y: i16, m: i8, d: i8, hh: i8, mm: i8) -> Zoned {
        resolve_local(date(y, m, d), time(hh, mm, 0, 0), &zone(name)).unwrap()
    }

    #[test]
    fn durations_parse() {
        for (input, minutes) in [
            ("4h", 240),
            ("90m", 90),
            ("1h30m", 90),
            ("2d", 2880),
            ("1d12h", 2160),
            ("1d1h1m", 1501),
            (" 45m ", 45),
        ] {
            assert_eq!(parse_duration(input).unwrap().as_mins(), minutes, "{input}");
            assert_eq!(
                parse_duration(&format_duration(parse_duration(input).unwrap())).unwrap(),
                parse_duration(input).unwrap()
            );
        }
    }

    #[test]
    fn bad_durations_are_named() {
        for (input, why) in [
            ("", "empty"),
            ("0m", "longer than zero"),
            ("0h0m", "longer than zero"),
            ("-1h", "negative"),
            ("4", "needs a unit"),
            ("h", "number before"),
            ("4x", "unknown unit"),
            ("30m1h", "order"),
            ("1h1h", "order"),
            ("1.5h", "unknown unit"),
            ("367d", "366 days"),
            ("99999999999999999999m", "too large"),
            ("four hours", "number before"),
        ] {
            let err = parse_duration(input).unwrap_err().to_string();
            assert!(err.contains(why), "{input:?}: {err}");
            assert!(err.contains(&format!("\"{input}\"")), "{input:?}: {err}");
        }
    }

    #[test]
    fn times_of_day() {
        assert_eq!(parse_time_of_day("22:00").unwrap(), time(22, 0, 0, 0));
        assert_eq!(parse_time_of_day("2:05").unwrap(), time(2, 5, 0, 0));
        for bad in [
            "24:00", "12:60", "12", "12:5", "ab:cd", "", "-1:00", "12:00:00",
        ] {
            let err = parse_time_of_day(bad).unwrap_err().to_string();
            assert!(err.contains(&format!("\"{bad}\"")), "{bad}: {err}");
        }
    }

    #[test]
    fn day_numbers_round_trip() {
        for n in [-800_000, -1, 0, 1, 365, 20_000, 2_900_000] {
            let d = days::date(n).unwrap();
            assert_eq!(days::number(d), n);
        }
        assert_eq!(days::number(date(1970, 1, 1)), 0);
        assert_eq!(days::number(date(2026, 3, 8)), 20_520);
        assert_eq!(days::weekday_of(20_520), 6); // a Sunday
        assert!(days::date(days::number(date(9999, 12, 31)) + 1).is_none());
    }

    // The DST rule, pinned on real transitions.

    #[test]
    fn spring_forward_moves_later_by_the_gap() {
        // New York: 02:00 EST jumps to 03:00 EDT on 2026-03-08.
        let z = at("America/New_York", 2026, 3, 8, 2, 30);
        assert_eq!(z.to_string(), "2026-03-08T03:30:00-04:00[America/New_York]");
        assert_eq!(z.timestamp().to_string(), "2026-03-08T07:30:00Z");
        // London: 01:00 GMT jumps to 02:00 BST on 2026-03-29.
        let z = at("Europe/London", 2026, 3, 29, 1, 15);
        assert_eq!(z.to_string(), "2026-03-29T02:15:00+01:00[Europe/London]");
        // Lord Howe moves by 30 minutes: 02:00 +10:30 becomes 02:30 +11:00 on 2026-10-04.
        let z = at("Australia/Lord_Howe", 2026, 10, 4, 2, 10);
        assert_eq!(
            z.to_string(),
            "2026-10-04T02:40:00+11:00[Australia/Lord_Howe]"
        );
    }

    #[test]
    fn fall_back_takes_the_first_occurrence() {
        let z = at("America/New_York", 2026, 11, 1, 1, 30);
        assert_eq!(z.to_string(), "2026-11-01T01:30:00-04:00[America/New_York]");
        let z = at("Europe/London", 2026, 10, 25, 1, 30);
        assert_eq!(z.to_string(), "2026-10-25T01:30:00+01:00[Europe/London]");
        // Lord Howe: 02:00 +11:00 falls back to 01:30 +10:30 on 2026-04-05.
        let z = at("Australia/Lord_Howe", 2026, 4, 5, 1, 45);
        assert_eq!(
            z.to_string(),
            "2026-04-05T01:45:00+11:00[Australia/Lord_Howe]"
        );
    }

    #[test]
    fn a_skipped_day_moves_a_whole_day_later() {
        // Samoa skipped 2011-12-30 when it crossed the date line (-10:00 to +14:00).
        let z = at("Pacific/Apia", 2011, 12, 30, 22, 0);
        assert_eq!(z.to_string(), "2011-12-31T22:00:00+14:00[Pacific/Apia]");
        let before = at("Pacific/Apia", 2011, 12, 29, 22, 0);
        assert_eq!(
            before.to_string(),
            "2011-12-29T22:00:00-10:00[Pacific/Apia]"
        );
    }

    #[test]
    fn durations_are_elapsed_time() {
        // 4h from 00:00 on the spring-forward night ends at 05:00 local, not 04:00.
        let start = at("America/New_York", 2026, 3, 8, 0, 0);
        let end = start.timestamp() + SignedDuration::from_hours(4);
        let end = end.to_zoned(zone("America/New_York"));
        assert_eq!(
            end.to_string(),
            "2026-03-08T05:00:00-04:00[America/New_York]"
        );
        // ... and on the fall-back night at 03:00 local.
        let start = at("America/New_York", 2026, 11, 1, 0, 0);
        let end =
            (start.timestamp() + SignedDuration::from_hours(4)).to_zoned(zone("America/New_York"));
        assert_eq!(
            end.to_string(),
            "2026-11-01T03:00:00-05:00[America/New_York]"
        );
    }

    #[test]
    fn time_ranges() {
        let t = |s: i64| jiff::Timestamp::from_second(s).unwrap();
        let a = TimeRange::new(t(0), t(10)).unwrap();
        let b = TimeRange::new(t(10), t(20)).unwrap();
        assert!(!a.overlaps(&b));
        assert!(a.contains(t(0)) && !a.contains(t(10)));
        assert_eq!(TimeRange::new(t(5), t(5)), None);
        let c = TimeRange::new(t(5), t(15)).unwrap();
        assert_eq!(a.intersection(&c), TimeRange::new(t(5), t(10)));
    }
}
