//! Five-field cron expressions (`minute hour day-of-month month day-of-week`) as window rules.
//!
//! Owns: the cron syntax Sluice reads (lists, ranges, steps, month and weekday names, `?`, `L`
//! for the last day of the month, `TUE#2` for the second Tuesday, `FRIL` or `5L` for the last
//! Friday) and which days an expression chooses. A maintenance window starts once a day, so a
//! cron expression chooses *days*; its minute and hour fields are either both `*` (the window's
//! start time gives the time) or both single values, which then are the start time: a window's
//! own start time must agree with them. Day-of-month and day-of-week combine as in Vixie cron and
//! croniter: when both are restricted (neither is `*` or `?`) a day matching either one matches;
//! otherwise both must match. A one-value range such as `5-5` is that value, and a range may
//! wrap (`FRI-MON`, `NOV-FEB`) but then takes no step. `#n` and `L` weekdays together with a restricted day-of-month are
//! refused, because cron implementations disagree about what that means.
//! Never reads a clock.

use std::fmt;

use jiff::civil::{Date, Time};

use super::{CalendarError, days};

/// A parsed cron expression: the days it chooses and, if it fixes one, its time of day.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct CronSchedule {
    text: String,
    time: Option<Time>,
    /// Bit d set: day-of-month d (1 to 31).
    month_days: u32,
    /// `L` in day-of-month.
    last_month_day: bool,
    month_days_any: bool,
    /// Bit m set: month m (1 to 12).
    months: u16,
    /// Bit w set: weekday w, Sunday = 0.
    weekdays: u8,
    /// `(n, weekday)` for `weekday#n`.
    nth_weekdays: Vec<(u8, u8)>,
    /// Bit w set: the last such weekday of the month (`5L`).
    last_weekdays: u8,
    weekdays_any: bool,
}

const MONTH_NAMES: [&str; 12] = [
    "JAN", "FEB", "MAR", "APR", "MAY", "JUN", "JUL", "AUG", "SEP", "OCT", "NOV", "DEC",
];
const WEEKDAY_NAMES: [&str; 7] = ["SUN", "MON", "TUE", "WED", "THU", "FRI", "SAT"];

#[derive(Clone, Copy)]
enum Field {
    Minute,
    Hour,
    MonthDay,
    Month,
    Weekday,
}

impl Field {
    fn name(self) -> &'static str {
        match self {
            Self::Minute => "minute",
            Self::Hour => "hour",
            Self::MonthDay => "day-of-month",
            Self::Month => "month",
            Self::Weekday => "day-of-week",
        }
    }

    /// The range of values, as written (day-of-week allows 7 for Sunday).
    fn bounds(self) -> (u32, u32) {
        match self {
            Self::Minute => (0, 59),
            Self::Hour => (0, 23),
            Self::MonthDay => (1, 31),
            Self::Month => (1, 12),
            Self::Weekday => (0, 7),
        }
    }

    fn names(self) -> &'static [&'static str] {
        match self {
            Self::Month => &MONTH_NAMES,
            Self::Weekday => &WEEKDAY_NAMES,
            _ => &[],
        }
    }
}

/// One field: the plain values it allows, and the special weekday and month-day forms.
#[derive(Default)]
struct Parsed {
    any: bool,
    values: u64,
    last: bool,
    nth: Vec<(u8, u8)>,
    last_weekdays: u8,
}

impl CronSchedule {
    /// Parses a five-field expression such as `0 2 * * TUE#2`.
    pub fn parse(input: &str) -> Result<Self, CalendarError> {
        let err = |field: &'static str, reason: String| CalendarError::Cron {
            expr: input.to_owned(),
            field,
            reason,
        };
        let text = input.trim();
        if text.starts_with('@') {
            return Err(err(
                "expression",
                "macros such as @weekly are not supported: write the five fields".into(),
            ));
        }
        let fields: Vec<&str> = text.split_whitespace().collect();
        if fields.len() != 5 {
            return Err(err(
                "expression",
                format!(
                    "expected 5 fields (minute hour day-of-month month day-of-week), found {}",
                    fields.len()
                ),
            ));
        }
        let parse = |field: Field, text: &str| {
            parse_field(field, text).map_err(|reason| err(field.name(), reason))
        };
        let minute = parse(Field::Minute, fields[0])?;
        let hour = parse(Field::Hour, fields[1])?;
        let month_days = parse(Field::MonthDay, fields[2])?;
        let months = parse(Field::Month, fields[3])?;
        let weekdays = parse(Field::Weekday, fields[4])?;

        let single = |p: &Parsed| (p.values.count_ones() == 1).then(|| p.values.trailing_zeros());
        let time = match (minute.any, hour.any) {
            (true, true) => None,
            (false, false) => match (single(&minute), single(&hour)) {
                (Some(m), Some(h)) => Some(
                    Time::new(h as i8, m as i8, 0, 0).map_err(|e| err("hour", e.to_string()))?,
                ),
                (None, _) => return Err(err("minute", once_a_day())),
                (_, None) => return Err(err("hour", once_a_day())),
            },
            (true, false) => return Err(err("minute", once_a_day())),
            (false, true) => return Err(err("hour", once_a_day())),
        };
        let (month_days_any, weekdays_any) = (month_days.any, weekdays.any);
        if !month_days_any && (!weekdays.nth.is_empty() || weekdays.last_weekdays != 0) {
            return Err(err(
                "day-of-week",
                "#n and L weekdays cannot be combined with a restricted day-of-month (cron \
                 implementations disagree on its meaning): set day-of-month to *"
                    .into(),
            ));
        }
        // Day-of-week 7 is Sunday, like 0.
        let mut weekday_bits = (weekdays.values & 0x7f) as u8;
        if weekdays.values & (1 << 7) != 0 {
            weekday_bits |= 1;
        }
        let schedule = Self {
            text: fields.join(" "),
            time,
            month_days: month_days.values as u32,
            last_month_day: month_days.last,
            month_days_any,
            months: months.values as u16,
            weekdays: weekday_bits,
            nth_weekdays: weekdays.nth,
            last_weekdays: weekdays.last_weekdays,
            weekdays_any,
        };
        // Every day-of-month, month and weekday combination recurs within 28 years (in
        // 2001-2099): a rule that matches none of them never matches.
        let probe = days::number(jiff::civil::date(2001, 1, 1));
        if !(probe..probe + 28 * 366).any(|n| days::date(n).is_some_and(|d| schedule.matches(d))) {
            return Err(err("expression", "matches no day at all".into()));
        }
        Ok(schedule)
    }

    /// The time of day the expression fixes with single minute and hour values, if it does.
    pub fn time_of_day(&self) -> Option<Time> {
        self.time
    }

    /// Whether the expression chooses `date`.
    pub fn matches(&self, date: Date) -> bool {
        let month = date.month() as u32;
        if self.months & (1 << month) == 0 {
            return false;
        }
        let day = date.day() as u32;
        let length = date.days_in_month() as u32;
        let month_day = self.month_days_any
            || self.month_days & (1 << day) != 0
            || (self.last_month_day && day == length);
        let weekday = date.weekday().to_sunday_zero_offset() as u8;
        let week_day = self.weekdays_any
            || self.weekdays & (1 << weekday) != 0
            || self
                .nth_weekdays
                .iter()
                .any(|(n, w)| *w == weekday && u32::from(*n) == (day - 1) / 7 + 1)
            || (self.last_weekdays & (1 << weekday) != 0 && day + 7 > length);
        if self.month_days_any || self.weekdays_any {
            month_day && week_day
        } else {
            month_day || week_day
        }
    }

    /// The dates the expression chooses, from `from` through `through`.
    pub fn dates_between(&self, from: Date, through: Date) -> impl Iterator<Item = Date> + '_ {
        (days::number(from)..=days::number(through))
            .map_while(days::date)
            .filter(move |date| self.matches(*date))
    }

    /// The dates the expression chooses, from `from` on, up to the end of year 9999.
    pub fn dates_from(&self, from: Date) -> impl Iterator<Item = Date> + '_ {
        self.dates_between(from, Date::MAX)
    }
}

fn once_a_day() -> String {
    "a window starts once a day: give a single value in both minute and hour (the start time), \
     or * in both and the start time separately"
        .to_owned()
}

impl fmt::Display for CronSchedule {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.text)
    }
}

/// Reads one field: a comma-separated list of `*`, `?`, values, ranges and steps, plus `L`,
/// `X#n` and `XL` where the field allows them.
fn parse_field(field: Field, text: &str) -> Result<Parsed, String> {
    let mut parsed = Parsed::default();
    let upper = text.to_ascii_uppercase();
    if upper == "*" || (upper == "?" && matches!(field, Field::MonthDay | Field::Weekday)) {
        parsed.any = true;
        let (min, max) = field.bounds();
        parsed.values = (min..=max).fold(0, |bits, v| bits | 1 << v);
        return Ok(parsed);
    }
    for item in upper.split(',') {
        if item.is_empty() {
            return Err(format!("empty list item in \"{text}\""));
        }
        if matches!(field, Field::MonthDay) && item == "L" {
            parsed.last = true;
            continue;
        }
        if matches!(field, Field::Weekday) {
            if let Some((day, n)) = item.split_once('#') {
                let weekday = value(field, day)? % 7;
                let n: u8 = n
                    .parse()
                    .ok()
                    .filter(|n| (1..=5).contains(n))
                    .ok_or_else(|| format!("\"{item}\": the n in {day}#n must be 1 to 5"))?;
                parsed.nth.push((n, weekday as u8));
                continue;
            }
            if let Some(day) = item.strip_suffix('L').filter(|d| !d.is_empty()) {
                let weekday = value(field, day)? % 7;
                parsed.last_weekdays |= 1 << weekday;
                continue;
            }
        }
        let (range, step) = match item.split_once('/') {
            Some((range, step)) => {
                let step: u32 = step
                    .parse()
                    .ok()
                    .filter(|s| *s > 0)
                    .ok_or_else(|| format!("\"{item}\": the step must be a positive number"))?;
                (range, Some(step))
            }
            None => (item, None),
        };
        let (min, max) = field.bounds();
        let (low, high) = if range == "*" {
            (
                min,
                if matches!(field, Field::Weekday) {
                    6
                } else {
                    max
                },
            )
        } else if let Some((low, high)) = range.split_once('-') {
            let (low, mut high) = (value(field, low)?, value(field, high)?);
            // `SAT-SUN`, `FRI-0`: Sunday at the end of a range is day 7.
            if matches!(field, Field::Weekday) && high == 0 && low > 0 {
                high = 7;
            }
            if low > high {
                // A range that wraps: `FRI-MON`, `NOV-FEB`, `25-5`.
                if step.is_some() {
                    return Err(format!(
                        "\"{item}\": a range that wraps around cannot take a step"
                    ));
                }
                let wrap_max = if matches!(field, Field::Weekday) {
                    6
                } else {
                    max
                };
                for v in (low..=wrap_max).chain(min..=high) {
                    parsed.values |= 1 << v;
                }
                continue;
            }
            (low, high)
        } else {
            let mut low = value(field, range)?;
            // `5/10` means from 5 to the end, every 10. For weekdays, as in croniter, the end is
            // Saturday (6) and a start at 7 is Sunday (0): `5/2` is Friday alone, `7/3` is
            // Sunday, Wednesday and Saturday.
            let end = if matches!(field, Field::Weekday) {
                if step.is_some() {
                    low %= 7;
                }
                6
            } else {
                max
            };
            (low, if step.is_some() { end } else { low })
        };
        let step = step.unwrap_or(1);
        let mut v = low;
        while v <= high {
            parsed.values |= 1 << v;
            v += step;
        }
    }
    Ok(parsed)
}

/// One value of a field: a number in range or, for months and weekdays, a three-letter name.
fn value(field: Field, text: &str) -> Result<u32, String> {
    let (min, max) = field.bounds();
    if let Some(index) = field.names().iter().position(|name| *name == text) {
        let base = if matches!(field, Field::Month) { 1 } else { 0 };
        return Ok(index as u32 + base);
    }
    text.parse::<u32>()
        .ok()
        .filter(|v| text.bytes().all(|b| b.is_ascii_digit()) && (min..=max).contains(v))
        .ok_or_else(|| {
            let names = match field {
                Field::Month => " or JAN-DEC",
                Field::Weekday => " or SUN-SAT",
                _ => "",
            };
            format!("\"{text}\" is not a value from {min} to {max}{names}")
        })
}

#[cfg(test)]
mod tests {
    use super::*;
    use jiff::civil::{date, time};

    fn days(expr: &str, from: Date, n: usize) -> Vec<String> {
        CronSchedule::parse(expr)
            .unwrap()
            .dates_from(from)
            .take(n)
            .map(|d| d.to_string())
            .collect()
    }

    #[test]
    fn nth_and_last_weekdays() {
        assert_eq!(
            days("0 2 * * TUE#2", date(2026, 1, 1), 3),
            ["2026-01-13", "2026-02-10", "2026-03-10"]
        );
        assert_eq!(
            days("0 2 * * 5L", date(2026, 1, 1), 2),
            ["2026-01-30", "2026-02-27"]
        );
        assert_eq!(days("0 2 * * friL", date(2026, 1, 1), 1), ["2026-01-30"]);
        assert_eq!(
            days("0 0 L 2 *", date(2027, 1, 1), 2),
            ["2027-02-28", "2028-02-29"]
        );
        assert_eq!(days("0 0 29 2 *", date(2026, 1, 1), 1), ["2028-02-29"]);
    }

    #[test]
    fn lists_ranges_steps_names() {
        assert_eq!(
            days("* * */10 * *", date(2026, 1, 1), 5),
            [
                "2026-01-01",
                "2026-01-11",
                "2026-01-21",
                "2026-01-31",
                "2026-02-01"
            ]
        );
        assert_eq!(
            days("* * 5/10 jan-feb *", date(2026, 1, 1), 4),
            ["2026-01-05", "2026-01-15", "2026-01-25", "2026-02-05"]
        );
        assert_eq!(
            days("* * ? * MON-WED,7", date(2026, 1, 1), 4),
            ["2026-01-04", "2026-01-05", "2026-01-06", "2026-01-07"]
        );
        // Sunday ends a range as 7; steps from a weekday stop at Saturday.
        assert_eq!(
            days("* * * * SAT-SUN", date(2026, 1, 1), 2),
            ["2026-01-03", "2026-01-04"]
        );
        assert_eq!(
            days("* * * * 5/2", date(2026, 1, 1), 2),
            ["2026-01-02", "2026-01-09"]
        );
        assert_eq!(
            days("* * * * 7/3", date(2026, 1, 1), 3),
            ["2026-01-03", "2026-01-04", "2026-01-07"]
        );
        assert_eq!(
            days("* * * * 1-7/2", date(2026, 1, 1), 3),
            ["2026-01-02", "2026-01-04", "2026-01-05"]
        );
    }

    #[test]
    fn restricted_day_fields_combine_with_or() {
        // The 13th, and every Friday.
        assert_eq!(
            days("0 0 13 * FRI", date(2026, 1, 1), 4),
            ["2026-01-02", "2026-01-09", "2026-01-13", "2026-01-16"]
        );
        // A star in either: AND.
        assert_eq!(days("0 0 * 3 FRI", date(2026, 1, 1), 1), ["2026-03-06"]);
        // Only * and ? leave a field unrestricted, even when a list names every day.
        assert_eq!(
            days("0 0 13 * 1-7", date(2026, 1, 1), 2),
            ["2026-01-01", "2026-01-02"]
        );
    }

    #[test]
    fn the_time_of_day() {
        assert_eq!(
            CronSchedule::parse("30 2 * * *").unwrap().time_of_day(),
            Some(time(2, 30, 0, 0))
        );
        assert_eq!(
            CronSchedule::parse("* * * * *").unwrap().time_of_day(),
            None
        );
    }

    #[test]
    fn errors_name_the_field() {
        for (expr, field, why) in [
            ("0 2 * *", "expression", "5 fields"),
            ("0 2 * * * *", "expression", "5 fields"),
            ("@weekly", "expression", "macros"),
            ("0 2 30 2 *", "expression", "no day"),
            ("60 2 * * *", "minute", "0 to 59"),
            ("0 24 * * *", "hour", "0 to 23"),
            ("*/15 2 * * *", "minute", "once a day"),
            ("0 1,2 * * *", "hour", "once a day"),
            ("0 * * * *", "hour", "once a day"),
            ("* 2 * * *", "minute", "once a day"),
            ("0 2 32 * *", "day-of-month", "1 to 31"),
            ("0 2 0 * *", "day-of-month", "1 to 31"),
            ("0 2 * 13 *", "month", "1 to 12"),
            ("0 2 * FOO *", "month", "JAN-DEC"),
            ("0 2 * * 8", "day-of-week", "0 to 7"),
            ("0 2 * * TUE#6", "day-of-week", "1 to 5"),
            ("0 2 * * TUE#", "day-of-week", "1 to 5"),
            ("0 2 1 * TUE#2", "day-of-week", "restricted day-of-month"),
            ("0 2 * * FRI-MON/2", "day-of-week", "wraps"),
            ("0 2 */0 * *", "day-of-month", "step"),
            ("0 2 1,,2 * *", "day-of-month", "empty list item"),
            ("0 2 L * L", "day-of-week", "0 to 7"),
        ] {
            let err = CronSchedule::parse(expr).unwrap_err();
            let CalendarError::Cron { field: got, .. } = &err else {
                panic!("{expr}: {err:?}");
            };
            assert_eq!(*got, field, "{expr}: {err}");
            let message = err.to_string();
            assert!(message.contains(why), "{expr}: {message}");
            assert!(
                message.contains(&format!("\"{expr}\"")),
                "{expr}: {message}"
            );
        }
    }
}
