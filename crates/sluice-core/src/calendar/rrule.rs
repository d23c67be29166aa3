//! The RFC 5545 RRULE subset that maintenance windows and freezes use, parsed and expanded to
//! dates on jiff civil dates.
//!
//! Owns: which rule parts are accepted (FREQ DAILY to YEARLY, INTERVAL, BYDAY with ordinals such
//! as `2TU` and `-1FR`, BYMONTHDAY, BYMONTH, BYSETPOS, COUNT, UNTIL, WKST) and how a rule
//! expands. A window starts once a day at its own start time, so a rule chooses dates only:
//! BYHOUR, BYMINUTE, BYSECOND and sub-daily frequencies are refused, like BYWEEKNO, BYYEARDAY and
//! anything unknown, with the part named. Expansion follows python-dateutil's `rrule` (the
//! reference the tests run), which in turn follows the RFC: every BY part filters the days of
//! each period (year, month, week or day), BYSETPOS picks from what is left, and occurrences
//! before DTSTART do not count.
//! Never reads a clock or the tz database: DTSTART, the start time and the zone come in.

use std::collections::VecDeque;
use std::fmt;

use jiff::Timestamp;
use jiff::civil::{Date, DateTime, Time, Weekday};
use jiff::tz::TimeZone;

use super::{CalendarError, days, resolve_local};

/// How often a rule's periods repeat.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Frequency {
    /// Every day (times INTERVAL).
    Daily,
    /// Every week, weeks starting on WKST.
    Weekly,
    /// Every month.
    Monthly,
    /// Every year.
    Yearly,
}

impl Frequency {
    fn as_str(self) -> &'static str {
        match self {
            Self::Daily => "DAILY",
            Self::Weekly => "WEEKLY",
            Self::Monthly => "MONTHLY",
            Self::Yearly => "YEARLY",
        }
    }
}

/// The UNTIL bound of a rule: inclusive, compared with each occurrence's start.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Until {
    /// `UNTIL=20261231T230000Z`: an instant.
    Utc(Timestamp),
    /// `UNTIL=20261231` or `UNTIL=20261231T230000`: a local date and time in the window's zone.
    /// A date alone means its midnight, as python-dateutil reads it: occurrences later that day
    /// are past the bound.
    Local(DateTime),
}

/// How a rule ends.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum RuleEnd {
    /// It does not.
    Never,
    /// After this many occurrences, counted from DTSTART.
    Count(u32),
    /// With the last occurrence that starts at or before the bound.
    Until(Until),
}

/// A parsed RRULE. It has no DTSTART of its own: the window (or the preview) supplies one.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct RecurrenceRule {
    freq: Frequency,
    interval: u32,
    by_weekday: Vec<Weekday>,
    by_nth_weekday: Vec<(i8, Weekday)>,
    by_month_day: Vec<i8>,
    by_month: Vec<i8>,
    by_set_pos: Vec<i16>,
    week_start: Weekday,
    end: RuleEnd,
}

const WEEKDAYS: [(&str, Weekday); 7] = [
    ("MO", Weekday::Monday),
    ("TU", Weekday::Tuesday),
    ("WE", Weekday::Wednesday),
    ("TH", Weekday::Thursday),
    ("FR", Weekday::Friday),
    ("SA", Weekday::Saturday),
    ("SU", Weekday::Sunday),
];

fn weekday_name(weekday: Weekday) -> &'static str {
    WEEKDAYS[weekday.to_monday_zero_offset() as usize].0
}

fn parse_weekday(text: &str) -> Option<Weekday> {
    WEEKDAYS
        .iter()
        .find(|(name, _)| *name == text)
        .map(|(_, day)| *day)
}

impl RecurrenceRule {
    /// Parses a rule such as `FREQ=MONTHLY;BYDAY=2TU` (an `RRULE:` prefix is allowed; names and
    /// values are case-insensitive). Unknown and unsupported parts are refused by name.
    pub fn parse(input: &str) -> Result<Self, CalendarError> {
        let err = |part: &str, reason: String| CalendarError::Rrule {
            rule: input.to_owned(),
            part: part.to_owned(),
            reason,
        };
        let mut text = input.trim();
        if text.len() >= 6 && text[..6].eq_ignore_ascii_case("RRULE:") {
            text = &text[6..];
        }
        if text.is_empty() {
            return Err(err(
                "rule",
                "empty rule: expected e.g. FREQ=MONTHLY;BYDAY=2TU".into(),
            ));
        }
        if text.contains(['\n', '\r']) {
            return Err(err(
                "rule",
                "one RRULE line only: the start date comes from the window, not DTSTART".into(),
            ));
        }
        let mut freq = None;
        let mut interval = None;
        let mut by_day: Option<Vec<(Option<i8>, Weekday)>> = None;
        let mut by_month_day = None;
        let mut by_month = None;
        let mut by_set_pos = None;
        let mut week_start = None;
        let mut count = None;
        let mut until = None;
        for pair in text.split(';') {
            let Some((name, value)) = pair.split_once('=') else {
                let shown = if pair.trim().is_empty() {
                    "(empty)"
                } else {
                    pair
                };
                return Err(err(shown, "expected NAME=VALUE".into()));
            };
            let name = name.trim().to_ascii_uppercase();
            let value = value.trim().to_ascii_uppercase();
            let part = name.as_str();
            if value.is_empty() {
                return Err(err(part, "empty value".into()));
            }
            fn set<T>(slot: &mut Option<T>, value: T) -> bool {
                slot.replace(value).is_none()
            }
            let fresh = match part {
                "FREQ" => set(&mut freq, parse_freq(&value).map_err(|r| err(part, r))?),
                "INTERVAL" => set(
                    &mut interval,
                    parse_int::<u32>(&value, 1, 9999).map_err(|r| err(part, r))?,
                ),
                "COUNT" => set(
                    &mut count,
                    parse_int::<u32>(&value, 1, 1_000_000).map_err(|r| err(part, r))?,
                ),
                "UNTIL" => set(&mut until, parse_until(&value).map_err(|r| err(part, r))?),
                "WKST" => set(
                    &mut week_start,
                    parse_weekday(&value)
                        .ok_or_else(|| err(part, format!("\"{value}\" is not MO, TU, ..., SU")))?,
                ),
                "BYDAY" => set(
                    &mut by_day,
                    list(&value, parse_by_day).map_err(|r| err(part, r))?,
                ),
                "BYMONTHDAY" => set(
                    &mut by_month_day,
                    list(&value, |v| parse_nonzero::<i8>(v, 31)).map_err(|r| err(part, r))?,
                ),
                "BYMONTH" => set(
                    &mut by_month,
                    list(&value, |v| parse_int::<i8>(v, 1, 12)).map_err(|r| err(part, r))?,
                ),
                "BYSETPOS" => set(
                    &mut by_set_pos,
                    list(&value, |v| parse_nonzero::<i16>(v, 366)).map_err(|r| err(part, r))?,
                ),
                "BYHOUR" | "BYMINUTE" | "BYSECOND" => {
                    return Err(err(
                        part,
                        "not supported: a window starts once a day at its start time".into(),
                    ));
                }
                "BYWEEKNO" | "BYYEARDAY" | "BYEASTER" | "RSCALE" | "SKIP" => {
                    return Err(err(part, "not supported by Sluice".into()));
                }
                "" => return Err(err("(empty)", "a rule part needs a name".into())),
                _ => return Err(err(part, "unknown rule part".into())),
            };
            if !fresh {
                return Err(err(part, "given more than once".into()));
            }
        }
        let freq = freq.ok_or_else(|| err("FREQ", "missing: every rule needs a FREQ".into()))?;
        let end = match (count, until) {
            (Some(_), Some(_)) => {
                return Err(err("COUNT", "a rule takes COUNT or UNTIL, not both".into()));
            }
            (Some(count), None) => RuleEnd::Count(count),
            (None, Some(until)) => RuleEnd::Until(until),
            (None, None) => RuleEnd::Never,
        };
        let mut by_weekday = Vec::new();
        let mut by_nth_weekday = Vec::new();
        for (nth, weekday) in by_day.unwrap_or_default() {
            match nth {
                None => by_weekday.push(weekday),
                Some(n) => by_nth_weekday.push((n, weekday)),
            }
        }
        let by_month = by_month.unwrap_or_default();
        if !by_nth_weekday.is_empty() {
            if matches!(freq, Frequency::Daily | Frequency::Weekly) {
                return Err(err(
                    "BYDAY",
                    format!(
                        "ordinals such as 2TU need FREQ=MONTHLY or FREQ=YEARLY, not {}",
                        freq.as_str()
                    ),
                ));
            }
            if !by_weekday.is_empty() {
                return Err(err(
                    "BYDAY",
                    "mixes days with and without ordinals (2TU and FR): write two windows".into(),
                ));
            }
            let in_months = freq == Frequency::Monthly || !by_month.is_empty();
            if let Some((n, _)) = by_nth_weekday
                .iter()
                .find(|(n, _)| in_months && n.abs() > 5)
            {
                return Err(err(
                    "BYDAY",
                    format!("ordinal {n} counts within a month, which has at most 5 of a weekday"),
                ));
            }
        }
        let mut rule = Self {
            freq,
            interval: interval.unwrap_or(1),
            by_weekday,
            by_nth_weekday,
            by_month_day: by_month_day.unwrap_or_default(),
            by_month,
            by_set_pos: by_set_pos.unwrap_or_default(),
            week_start: week_start.unwrap_or(Weekday::Monday),
            end,
        };
        dedup(&mut rule.by_month_day);
        dedup(&mut rule.by_month);
        dedup(&mut rule.by_set_pos);
        Ok(rule)
    }

    /// The frequency.
    pub fn frequency(&self) -> Frequency {
        self.freq
    }

    /// How the rule ends.
    pub fn end(&self) -> RuleEnd {
        self.end
    }

    /// The rule's dates from `dtstart` on, in order. `time` and `tz` are needed to compare with
    /// an UTC `UNTIL` (by the DST rule of [`super::resolve_local`]).
    pub fn dates(&self, dtstart: Date, time: Time, tz: &TimeZone) -> RuleDates {
        RuleDates::new(self, dtstart, time, tz.clone())
    }
}

fn dedup<T: Ord>(values: &mut Vec<T>) {
    values.sort();
    values.dedup();
}

fn parse_freq(value: &str) -> Result<Frequency, String> {
    match value {
        "DAILY" => Ok(Frequency::Daily),
        "WEEKLY" => Ok(Frequency::Weekly),
        "MONTHLY" => Ok(Frequency::Monthly),
        "YEARLY" => Ok(Frequency::Yearly),
        "HOURLY" | "MINUTELY" | "SECONDLY" => Err(format!(
            "{value} is not supported: a window starts once a day at its start time"
        )),
        _ => Err(format!(
            "\"{value}\" is not DAILY, WEEKLY, MONTHLY or YEARLY"
        )),
    }
}

fn list<T>(value: &str, item: impl Fn(&str) -> Result<T, String>) -> Result<Vec<T>, String> {
    value
        .split(',')
        .map(|v| {
            if v.trim().is_empty() {
                Err("empty list item".to_owned())
            } else {
                item(v.trim())
            }
        })
        .collect()
}

fn parse_int<T>(value: &str, min: i64, max: i64) -> Result<T, String>
where
    T: TryFrom<i64>,
{
    let digits = value.strip_prefix('+').unwrap_or(value);
    let ok = !digits.is_empty()
        && digits
            .strip_prefix('-')
            .unwrap_or(digits)
            .bytes()
            .all(|b| b.is_ascii_digit());
    let number = ok
        .then(|| digits.parse::<i64>().ok())
        .flatten()
        .filter(|n| (min..=max).contains(n))
        .ok_or_else(|| format!("\"{value}\" is not a whole number from {min} to {max}"))?;
    T::try_from(number).map_err(|_| format!("\"{value}\" is out of range"))
}

fn parse_nonzero<T>(value: &str, max: i64) -> Result<T, String>
where
    T: TryFrom<i64>,
{
    parse_int::<i64>(value, -max, max)
        .ok()
        .filter(|n| *n != 0)
        .and_then(|n| T::try_from(n).ok())
        .ok_or_else(|| format!("\"{value}\" is not from 1 to {max} or -{max} to -1"))
}

fn parse_by_day(value: &str) -> Result<(Option<i8>, Weekday), String> {
    let split = value.len().saturating_sub(2);
    let (ordinal, name) = value.split_at(split);
    let weekday = parse_weekday(name).ok_or_else(|| {
        format!(
            "\"{value}\" is not a weekday (MO ... SU) with an optional ordinal like 2TU or -1FR"
        )
    })?;
    if ordinal.is_empty() {
        return Ok((None, weekday));
    }
    let n = parse_nonzero::<i8>(ordinal, 53)
        .map_err(|_| format!("\"{value}\": the ordinal must be from 1 to 53 or -53 to -1"))?;
    Ok((Some(n), weekday))
}

fn parse_until(value: &str) -> Result<Until, String> {
    let bad =
        || format!("\"{value}\" is not a date (20261231) or a UTC date-time (20261231T235959Z)");
    let number = |s: &str| -> Result<i32, String> {
        if s.bytes().all(|b| b.is_ascii_digit()) {
            s.parse().map_err(|_| bad())
        } else {
            Err(bad())
        }
    };
    let (date_part, time_part) = match value.split_once('T') {
        Some((d, t)) => (d, Some(t)),
        None => (value, None),
    };
    if date_part.len() != 8 {
        return Err(bad());
    }
    let date = Date::new(
        i16::try_from(number(&date_part[..4])?).map_err(|_| bad())?,
        i8::try_from(number(&date_part[4..6])?).map_err(|_| bad())?,
        i8::try_from(number(&date_part[6..])?).map_err(|_| bad())?,
    )
    .map_err(|e| format!("\"{value}\": {e}"))?;
    let Some(time_part) = time_part else {
        return Ok(Until::Local(date.to_datetime(Time::midnight())));
    };
    let (clock, utc) = match time_part.strip_suffix('Z') {
        Some(clock) => (clock, true),
        None => (time_part, false),
    };
    if clock.len() != 6 {
        return Err(bad());
    }
    let time = Time::new(
        i8::try_from(number(&clock[..2])?).map_err(|_| bad())?,
        i8::try_from(number(&clock[2..4])?).map_err(|_| bad())?,
        i8::try_from(number(&clock[4..])?).map_err(|_| bad())?,
        0,
    )
    .map_err(|e| format!("\"{value}\": {e}"))?;
    let datetime = date.to_datetime(time);
    if utc {
        let instant = datetime
            .to_zoned(TimeZone::UTC)
            .map_err(|e| format!("\"{value}\": {e}"))?
            .timestamp();
        Ok(Until::Utc(instant))
    } else {
        Ok(Until::Local(datetime))
    }
}

impl fmt::Display for RecurrenceRule {
    /// The canonical form: parts in a fixed order, upper case, no `RRULE:` prefix.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "FREQ={}", self.freq.as_str())?;
        if self.interval != 1 {
            write!(f, ";INTERVAL={}", self.interval)?;
        }
        if self.week_start != Weekday::Monday {
            write!(f, ";WKST={}", weekday_name(self.week_start))?;
        }
        let join = |items: Vec<String>| items.join(",");
        if !self.by_month.is_empty() {
            let months = self.by_month.iter().map(i8::to_string).collect();
            write!(f, ";BYMONTH={}", join(months))?;
        }
        if !self.by_month_day.is_empty() {
            let days = self.by_month_day.iter().map(i8::to_string).collect();
            write!(f, ";BYMONTHDAY={}", join(days))?;
        }
        if !self.by_weekday.is_empty() || !self.by_nth_weekday.is_empty() {
            let plain = self.by_weekday.iter().map(|d| weekday_name(*d).to_owned());
            let nth = self
                .by_nth_weekday
                .iter()
                .map(|(n, d)| format!("{n}{}", weekday_name(*d)));
            write!(f, ";BYDAY={}", join(plain.chain(nth).collect()))?;
        }
        if !self.by_set_pos.is_empty() {
            let positions = self.by_set_pos.iter().map(i16::to_string).collect();
            write!(f, ";BYSETPOS={}", join(positions))?;
        }
        match self.end {
            RuleEnd::Never => Ok(()),
            RuleEnd::Count(count) => write!(f, ";COUNT={count}"),
            RuleEnd::Until(Until::Utc(instant)) => {
                write!(f, ";UNTIL={}", instant.strftime("%Y%m%dT%H%M%SZ"))
            }
            RuleEnd::Until(Until::Local(datetime)) if datetime.time() == Time::midnight() => {
                write!(f, ";UNTIL={}", datetime.strftime("%Y%m%d"))
            }
            RuleEnd::Until(Until::Local(datetime)) => {
                write!(f, ";UNTIL={}", datetime.strftime("%Y%m%dT%H%M%S"))
            }
        }
    }
}

/// The dates of a rule from its DTSTART on: see [`RecurrenceRule::dates`].
#[derive(Clone, Debug)]
pub struct RuleDates {
    freq: Frequency,
    interval: i64,
    by_weekday: Vec<i64>,
    by_nth_weekday: Vec<(i64, i64)>,
    by_month_day: Vec<i64>,
    by_month: Vec<i64>,
    by_set_pos: Vec<i64>,
    /// Day number of the first day of the week holding DTSTART (WEEKLY only).
    first_week: i64,
    dtstart: i64,
    dtstart_date: Date,
    time: Time,
    tz: TimeZone,
    end: RuleEnd,
    remaining: Option<u32>,
    period: i64,
    /// Periods in a row that kept no day.
    empty_run: i64,
    /// Day number after which no period starts.
    through: i64,
    pending: VecDeque<i64>,
    done: bool,
    scratch: Vec<i64>,
}

/// The last day a rule may produce: jiff's civil calendar ends with year 9999.
const LAST_YEAR: i64 = 9999;

impl RuleDates {
    fn new(rule: &RecurrenceRule, dtstart: Date, time: Time, tz: TimeZone) -> Self {
        let weekday = |d: &Weekday| days::weekday_index(*d);
        let mut by_weekday: Vec<i64> = rule.by_weekday.iter().map(weekday).collect();
        let mut by_month: Vec<i64> = rule.by_month.iter().map(|m| i64::from(*m)).collect();
        let mut by_month_day: Vec<i64> = rule.by_month_day.iter().map(|d| i64::from(*d)).collect();
        // RFC 5545's (and dateutil's) defaults: with no day-choosing part, DTSTART supplies one.
        if by_weekday.is_empty() && rule.by_nth_weekday.is_empty() && by_month_day.is_empty() {
            match rule.freq {
                Frequency::Yearly => {
                    if by_month.is_empty() {
                        by_month.push(i64::from(dtstart.month()));
                    }
                    by_month_day.push(i64::from(dtstart.day()));
                }
                Frequency::Monthly => by_month_day.push(i64::from(dtstart.day())),
                Frequency::Weekly => by_weekday.push(days::weekday_index(dtstart.weekday())),
                Frequency::Daily => {}
            }
        }
        let dtstart_number = days::number(dtstart);
        let week_offset =
            (days::weekday_of(dtstart_number) - days::weekday_index(rule.week_start)).rem_euclid(7);
        Self {
            freq: rule.freq,
            interval: i64::from(rule.interval),
            by_weekday,
            by_nth_weekday: rule
                .by_nth_weekday
                .iter()
                .map(|(n, d)| (i64::from(*n), days::weekday_index(*d)))
                .collect(),
            by_month_day,
            by_month,
            by_set_pos: rule.by_set_pos.iter().map(|p| i64::from(*p)).collect(),
            first_week: dtstart_number - week_offset,
            dtstart: dtstart_number,
            dtstart_date: dtstart,
            time,
            tz,
            end: rule.end,
            remaining: match rule.end {
                RuleEnd::Count(count) => Some(count),
                _ => None,
            },
            period: 0,
            empty_run: 0,
            through: i64::MAX,
            pending: VecDeque::new(),
            done: false,
            scratch: Vec::new(),
        }
    }

    /// Skips the periods that end before `date`, without expanding them. Only rules without
    /// COUNT can skip (a count needs every earlier occurrence); for the others this does nothing.
    /// Dates before `date` may still come out of the period that holds it.
    pub fn skip_to(mut self, date: Date) -> Self {
        if self.remaining.is_some() || self.period != 0 || !self.pending.is_empty() {
            return self;
        }
        let target = days::number(date);
        let periods = match self.freq {
            Frequency::Daily => (target - self.dtstart).div_euclid(self.interval),
            Frequency::Weekly => (target - self.first_week).div_euclid(7 * self.interval),
            Frequency::Monthly => {
                let months = (i64::from(date.year()) - i64::from(self.dtstart_date.year())) * 12
                    + i64::from(date.month())
                    - i64::from(self.dtstart_date.month());
                months.div_euclid(self.interval)
            }
            Frequency::Yearly => (i64::from(date.year()) - i64::from(self.dtstart_date.year()))
                .div_euclid(self.interval),
        };
        self.period = periods.max(0);
        self
    }

    /// Ends the dates after `date`: periods starting later are not expanded. Bounds the work
    /// spent on rules that match rarely.
    pub fn through(mut self, date: Date) -> Self {
        self.through = days::number(date);
        self
    }

    /// How many periods make up the 400-year Gregorian cycle, after which days, weekdays and
    /// month lengths repeat.
    fn cycle_periods(&self) -> i64 {
        match self.freq {
            Frequency::Daily => 146_097,
            Frequency::Weekly => 146_097 / 7,
            Frequency::Monthly => 4_800,
            Frequency::Yearly => 400,
        }
    }

    /// Fills `scratch` with the candidate days of period `k`; false past year 9999.
    fn period_days(&mut self, k: i64) -> bool {
        self.scratch.clear();
        let step = k * self.interval;
        match self.freq {
            Frequency::Daily => {
                let day = self.dtstart + step;
                if days::date(day).is_none_or(|d| i64::from(d.year()) > LAST_YEAR) {
                    return false;
                }
                self.scratch.push(day);
            }
            Frequency::Weekly => {
                let first = self.first_week + 7 * step;
                if days::date(first).is_none() {
                    return false;
                }
                // dateutil's first week starts at DTSTART, which matters to BYSETPOS.
                let from = if k == 0 { self.dtstart } else { first };
                self.scratch
                    .extend((from..first + 7).filter(|d| days::date(*d).is_some()));
            }
            Frequency::Monthly => {
                let index = i64::from(self.dtstart_date.year()) * 12
                    + i64::from(self.dtstart_date.month())
                    - 1
                    + step;
                let (year, month) = (index.div_euclid(12), index.rem_euclid(12) + 1);
                if year > LAST_YEAR {
                    return false;
                }
                if !self.by_month.is_empty() && !self.by_month.contains(&month) {
                    return true;
                }
                let Some(first) = civil(year, month, 1) else {
                    return false;
                };
                let first = days::number(first);
                self.scratch
                    .extend(first..first + days_in_month(year, month));
            }
            Frequency::Yearly => {
                let year = i64::from(self.dtstart_date.year()) + step;
                if year > LAST_YEAR {
                    return false;
                }
                for month in 1..=12 {
                    if !self.by_month.is_empty() && !self.by_month.contains(&month) {
                        continue;
                    }
                    let Some(first) = civil(year, month, 1) else {
                        return false;
                    };
                    let first = days::number(first);
                    self.scratch
                        .extend(first..first + days_in_month(year, month));
                }
            }
        }
        true
    }

    /// Whether day number `day` passes every BY filter.
    fn keeps(&self, day: i64) -> bool {
        let Some(date) = days::date(day) else {
            return false;
        };
        let (year, month, mday) = (
            i64::from(date.year()),
            i64::from(date.month()),
            i64::from(date.day()),
        );
        let weekday = days::weekday_of(day);
        if !self.by_month.is_empty() && !self.by_month.contains(&month) {
            return false;
        }
        if !self.by_weekday.is_empty() && !self.by_weekday.contains(&weekday) {
            return false;
        }
        if !self.by_month_day.is_empty() {
            let length = days_in_month(year, month);
            let from_end = mday - length - 1;
            if !self.by_month_day.contains(&mday) && !self.by_month_day.contains(&from_end) {
                return false;
            }
        }
        if !self.by_nth_weekday.is_empty() {
            // Ordinals count within the month (MONTHLY, or YEARLY with BYMONTH) or the year.
            let (first, last) = if self.freq == Frequency::Monthly || !self.by_month.is_empty() {
                let first = day - mday + 1;
                (first, first + days_in_month(year, month) - 1)
            } else {
                let first = day - i64::from(date.day_of_year()) + 1;
                (first, first + i64::from(date.days_in_year()) - 1)
            };
            let nth_from_start = (day - first) / 7 + 1;
            let nth_from_end = -((last - day) / 7 + 1);
            if !self
                .by_nth_weekday
                .iter()
                .any(|(n, wd)| *wd == weekday && (*n == nth_from_start || *n == nth_from_end))
            {
                return false;
            }
        }
        true
    }

    /// Expands the next period into `pending`; false when there are no more periods.
    fn expand_next_period(&mut self) -> bool {
        let k = self.period;
        self.period += 1;
        // Past a whole cycle of empty periods (not counting the first, which DTSTART cuts
        // short) the calendar repeats itself: the rule never matches again.
        if self.empty_run > self.cycle_periods() {
            return false;
        }
        if !self.period_days(k) {
            return false;
        }
        if self
            .scratch
            .first()
            .is_some_and(|first| *first > self.through)
        {
            return false;
        }
        let mut kept: Vec<i64> = Vec::new();
        let candidates = std::mem::take(&mut self.scratch);
        kept.extend(candidates.iter().copied().filter(|d| self.keeps(*d)));
        self.scratch = candidates;
        if !self.by_set_pos.is_empty() {
            let len = i64::try_from(kept.len()).unwrap_or(i64::MAX);
            let mut chosen: Vec<i64> = self
                .by_set_pos
                .iter()
                .filter_map(|pos| {
                    let index = if *pos > 0 { pos - 1 } else { len + pos };
                    usize::try_from(index)
                        .ok()
                        .and_then(|i| kept.get(i).copied())
                })
                .collect();
            chosen.sort_unstable();
            chosen.dedup();
            kept = chosen;
        }
        self.empty_run = if kept.is_empty() {
            self.empty_run + 1
        } else {
            0
        };
        self.pending.extend(kept);
        true
    }

    /// Whether `day` (at the rule's time) lies past UNTIL.
    fn past_until(&self, day: Date) -> bool {
        match self.end {
            RuleEnd::Until(Until::Local(bound)) => day.to_datetime(self.time) > bound,
            RuleEnd::Until(Until::Utc(bound)) => resolve_local(day, self.time, &self.tz)
                .map(|z| z.timestamp() > bound)
                .unwrap_or(true),
            _ => false,
        }
    }
}

impl Iterator for RuleDates {
    type Item = Date;

    fn next(&mut self) -> Option<Date> {
        if self.remaining == Some(0) {
            self.done = true;
        }
        while !self.done {
            let Some(day) = self.pending.pop_front() else {
                if !self.expand_next_period() {
                    self.done = true;
                }
                continue;
            };
            let Some(date) = days::date(day) else {
                self.done = true;
                break;
            };
            if self.past_until(date) {
                self.done = true;
                break;
            }
            if day < self.dtstart {
                continue;
            }
            if let Some(remaining) = &mut self.remaining {
                *remaining = remaining.saturating_sub(1);
            }
            return Some(date);
        }
        None
    }
}

fn civil(year: i64, month: i64, day: i64) -> Option<Date> {
    Date::new(
        i16::try_from(year).ok()?,
        i8::try_from(month).ok()?,
        i8::try_from(day).ok()?,
    )
    .ok()
}

fn days_in_month(year: i64, month: i64) -> i64 {
    civil(year, month, 1).map_or(0, |d| i64::from(d.days_in_month()))
}

#[cfg(test)]
mod tests {
    use super::*;
    use jiff::civil::{date, time};

    fn expand(rule: &str, start: Date, n: usize) -> Vec<String> {
        RecurrenceRule::parse(rule)
            .unwrap()
            .dates(start, time(22, 0, 0, 0), &TimeZone::UTC)
            .take(n)
            .map(|d| d.to_string())
            .collect()
    }

    #[test]
    fn patch_tuesday_and_friends() {
        assert_eq!(
            expand("FREQ=MONTHLY;BYDAY=2TU", date(2026, 1, 1), 3),
            ["2026-01-13", "2026-02-10", "2026-03-10"]
        );
        assert_eq!(
            expand("RRULE:freq=monthly;byday=-1fr", date(2026, 1, 1), 3),
            ["2026-01-30", "2026-02-27", "2026-03-27"]
        );
        // The last weekday of the month.
        assert_eq!(
            expand(
                "FREQ=MONTHLY;BYDAY=MO,TU,WE,TH,FR;BYSETPOS=-1",
                date(2026, 1, 1),
                3
            ),
            ["2026-01-30", "2026-02-27", "2026-03-31"]
        );
        // Friday the 13th.
        assert_eq!(
            expand("FREQ=MONTHLY;BYDAY=FR;BYMONTHDAY=13", date(2026, 1, 1), 2),
            ["2026-02-13", "2026-03-13"]
        );
        // Yearly: the first Sunday of November.
        assert_eq!(
            expand("FREQ=YEARLY;BYMONTH=11;BYDAY=1SU", date(2026, 1, 1), 2),
            ["2026-11-01", "2027-11-07"]
        );
        // The 20th Monday of the year.
        assert_eq!(
            expand("FREQ=YEARLY;BYDAY=20MO", date(2026, 1, 1), 1),
            ["2026-05-18"]
        );
    }

    #[test]
    fn defaults_come_from_dtstart() {
        assert_eq!(
            expand("FREQ=MONTHLY", date(2026, 1, 31), 3),
            ["2026-01-31", "2026-03-31", "2026-05-31"]
        );
        assert_eq!(
            expand("FREQ=WEEKLY;INTERVAL=2", date(2026, 1, 1), 3),
            ["2026-01-01", "2026-01-15", "2026-01-29"]
        );
        assert_eq!(
            expand("FREQ=YEARLY", date(2024, 2, 29), 2),
            ["2024-02-29", "2028-02-29"]
        );
        assert_eq!(
            expand("FREQ=YEARLY;BYMONTH=3,6", date(2026, 1, 5), 3),
            ["2026-03-05", "2026-06-05", "2027-03-05"]
        );
    }

    #[test]
    fn count_and_until() {
        assert_eq!(expand("FREQ=DAILY;COUNT=2", date(2026, 1, 1), 5).len(), 2);
        // A date UNTIL is its midnight: the 22:00 occurrence on that day is past it.
        assert_eq!(
            expand("FREQ=DAILY;UNTIL=20260103", date(2026, 1, 1), 5),
            ["2026-01-01", "2026-01-02"]
        );
        assert_eq!(
            expand("FREQ=DAILY;UNTIL=20260103T220000Z", date(2026, 1, 1), 5),
            ["2026-01-01", "2026-01-02", "2026-01-03"]
        );
        assert_eq!(
            expand("FREQ=DAILY;UNTIL=20260103T215959Z", date(2026, 1, 1), 5),
            ["2026-01-01", "2026-01-02"]
        );
        // COUNT counts from DTSTART, BYSETPOS picks among the whole first month.
        assert_eq!(
            expand(
                "FREQ=MONTHLY;BYDAY=TU;BYSETPOS=1;COUNT=2",
                date(2026, 1, 7),
                5
            ),
            ["2026-02-03", "2026-03-03"]
        );
    }

    #[test]
    fn weekly_first_week_starts_at_dtstart_for_bysetpos() {
        // dateutil's first WEEKLY period runs from DTSTART to the week's end.
        assert_eq!(
            expand("FREQ=WEEKLY;BYDAY=MO,WE,FR;BYSETPOS=1", date(2026, 1, 7), 3),
            ["2026-01-07", "2026-01-12", "2026-01-19"]
        );
        assert_eq!(
            expand(
                "FREQ=WEEKLY;WKST=SU;INTERVAL=2;BYDAY=SU,SA",
                date(2026, 1, 7),
                3
            ),
            ["2026-01-10", "2026-01-18", "2026-01-24"]
        );
    }

    #[test]
    fn skip_to_lands_on_the_same_dates() {
        let rule = RecurrenceRule::parse("FREQ=WEEKLY;INTERVAL=3;BYDAY=TU,SA").unwrap();
        let from = date(2031, 5, 17);
        let slow: Vec<Date> = rule
            .dates(date(2026, 1, 1), time(0, 0, 0, 0), &TimeZone::UTC)
            .filter(|d| *d >= from)
            .take(5)
            .collect();
        let fast: Vec<Date> = rule
            .dates(date(2026, 1, 1), time(0, 0, 0, 0), &TimeZone::UTC)
            .skip_to(from)
            .filter(|d| *d >= from)
            .take(5)
            .collect();
        assert_eq!(slow, fast);
    }

    #[test]
    fn impossible_rules_end() {
        assert_eq!(
            expand("FREQ=YEARLY;BYMONTH=2;BYMONTHDAY=30", date(2026, 1, 1), 1),
            Vec::<String>::new()
        );
    }

    #[test]
    fn display_is_canonical() {
        let rule = RecurrenceRule::parse("rrule:byday=2tu;freq=monthly;until=20261231").unwrap();
        assert_eq!(rule.to_string(), "FREQ=MONTHLY;BYDAY=2TU;UNTIL=20261231");
        assert_eq!(RecurrenceRule::parse(&rule.to_string()).unwrap(), rule);
    }

    #[test]
    fn errors_name_the_part() {
        for (rule, part, why) in [
            ("", "rule", "empty"),
            ("BYDAY=TU", "FREQ", "missing"),
            ("FREQ=HOURLY", "FREQ", "once a day"),
            ("FREQ=FORTNIGHTLY", "FREQ", "not DAILY"),
            ("FREQ=DAILY;BYHOUR=3", "BYHOUR", "start time"),
            ("FREQ=YEARLY;BYWEEKNO=20", "BYWEEKNO", "not supported"),
            ("FREQ=YEARLY;BYYEARDAY=100", "BYYEARDAY", "not supported"),
            ("FREQ=DAILY;FOO=1", "FOO", "unknown"),
            ("FREQ=DAILY;FREQ=WEEKLY", "FREQ", "more than once"),
            ("FREQ=DAILY;INTERVAL=0", "INTERVAL", "whole number"),
            ("FREQ=DAILY;INTERVAL=x", "INTERVAL", "whole number"),
            ("FREQ=DAILY;COUNT=0", "COUNT", "whole number"),
            ("FREQ=DAILY;COUNT=2;UNTIL=20260101", "COUNT", "not both"),
            ("FREQ=DAILY;UNTIL=2026-01-01", "UNTIL", "not a date"),
            ("FREQ=DAILY;UNTIL=20260231", "UNTIL", "20260231"),
            ("FREQ=MONTHLY;BYDAY=2XX", "BYDAY", "not a weekday"),
            ("FREQ=MONTHLY;BYDAY=0TU", "BYDAY", "ordinal"),
            ("FREQ=MONTHLY;BYDAY=6TU", "BYDAY", "at most 5"),
            ("FREQ=WEEKLY;BYDAY=2TU", "BYDAY", "MONTHLY or FREQ=YEARLY"),
            ("FREQ=MONTHLY;BYDAY=2TU,FR", "BYDAY", "mixes"),
            ("FREQ=MONTHLY;BYMONTHDAY=32", "BYMONTHDAY", "1 to 31"),
            ("FREQ=MONTHLY;BYMONTHDAY=0", "BYMONTHDAY", "1 to 31"),
            ("FREQ=MONTHLY;BYMONTH=13", "BYMONTH", "1 to 12"),
            ("FREQ=MONTHLY;BYDAY=TU;BYSETPOS=0", "BYSETPOS", "366"),
            ("FREQ=MONTHLY;BYDAY=TU,", "BYDAY", "empty list item"),
            ("FREQ=DAILY;WKST=XX", "WKST", "MO, TU"),
            ("FREQ=DAILY;;", "(empty)", "NAME=VALUE"),
            ("FREQ=DAILY;COUNT", "COUNT", "NAME=VALUE"),
            ("FREQ=", "FREQ", "empty value"),
        ] {
            let err = RecurrenceRule::parse(rule).unwrap_err();
            let CalendarError::Rrule { part: got, .. } = &err else {
                panic!("{rule}: {err:?}");
            };
            assert_eq!(got, part, "{rule}: {err}");
            let message = err.to_string();
            assert!(message.contains(why), "{rule}: {message}");
            assert!(
                message.contains(&format!("\"{rule}\"")),
                "{rule}: {message}"
            );
        }
    }
}
