//! Maintenance windows: when a host may be changed.
//!
//! Owns: a window's occurrences (its rule's dates, moved by the day offset, at the start time in
//! the window's zone by the DST rule of [`super::resolve_local`], lasting the duration in
//! elapsed time), the active range, and the cutoff (no host starts in the last N minutes of an
//! occurrence). Never reads a clock: instants and dates come in.

use jiff::civil::{Date, Time};
use jiff::tz::TimeZone;
use jiff::{SignedDuration, Timestamp, Zoned};

use super::cron::CronSchedule;
use super::rrule::RecurrenceRule;
use super::{CalendarError, MAX_DURATION, TimeRange, days, resolve_local};

/// Which days a window opens on.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub enum Schedule {
    /// An RRULE with the date its expansion starts from (its DTSTART's date; the time is the
    /// window's start time). COUNT and INTERVAL count from that date.
    Rrule {
        /// The rule.
        rule: RecurrenceRule,
        /// DTSTART's date.
        dtstart: Date,
    },
    /// A cron expression (it chooses days; see [`CronSchedule`]).
    Cron(CronSchedule),
}

impl Schedule {
    /// The schedule's dates (before the day offset), from about `from` (dates a little earlier
    /// may come too) through `through`.
    fn dates<'a>(
        &'a self,
        from: Date,
        through: Date,
        time: Time,
        tz: &TimeZone,
    ) -> Box<dyn Iterator<Item = Date> + 'a> {
        match self {
            Self::Rrule { rule, dtstart } => Box::new(
                rule.dates(*dtstart, time, tz)
                    .skip_to(from)
                    .through(through),
            ),
            Self::Cron(cron) => Box::new(cron.dates_between(from, through)),
        }
    }
}

/// The longest day offset: a year.
pub const MAX_OFFSET_DAYS: i32 = 366;

/// A recurring window during which the hosts it applies to may be changed.
#[derive(Clone, Debug, PartialEq)]
pub struct MaintenanceWindow {
    schedule: Schedule,
    offset_days: i32,
    start: Time,
    duration: SignedDuration,
    cutoff: SignedDuration,
    tz: TimeZone,
    active_from: Option<Date>,
    active_until: Option<Date>,
}

/// One opening of a window: from `start` for the window's duration.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Occurrence {
    /// When it opens, in the window's zone.
    pub start: Zoned,
    /// When it closes (start plus the duration, elapsed), in the window's zone.
    pub end: Zoned,
}

impl Occurrence {
    /// The occurrence as a range of instants.
    pub fn range(&self) -> TimeRange {
        TimeRange {
            start: self.start.timestamp(),
            end: self.end.timestamp(),
        }
    }

    /// Whether `instant` falls inside.
    pub fn contains(&self, instant: Timestamp) -> bool {
        self.range().contains(instant)
    }

    /// `start` as RFC 3339 in UTC, e.g. `2026-01-16T21:00:00Z`.
    pub fn start_utc(&self) -> String {
        rfc3339_utc(self.start.timestamp())
    }

    /// `end` as RFC 3339 in UTC.
    pub fn end_utc(&self) -> String {
        rfc3339_utc(self.end.timestamp())
    }

    /// `start` as RFC 3339 local time with its offset, e.g. `2026-01-16T22:00:00+01:00`.
    pub fn start_local(&self) -> String {
        rfc3339_local(&self.start)
    }

    /// `end` as RFC 3339 local time with its offset.
    pub fn end_local(&self) -> String {
        rfc3339_local(&self.end)
    }
}

/// An instant as RFC 3339 in UTC to the second: `2026-01-16T21:00:00Z`.
pub fn rfc3339_utc(instant: Timestamp) -> String {
    instant.strftime("%Y-%m-%dT%H:%M:%SZ").to_string()
}

/// A zoned time as RFC 3339 with its UTC offset to the second: `2026-01-16T22:00:00+01:00`.
/// Offsets with seconds (local mean time before 1900 or so) are written `+00:53:28`, as Python's
/// `isoformat` writes them.
pub fn rfc3339_local(zoned: &Zoned) -> String {
    let seconds = zoned.offset().seconds();
    let sign = if seconds < 0 { '-' } else { '+' };
    let magnitude = seconds.unsigned_abs();
    let (h, m, s) = (magnitude / 3600, magnitude % 3600 / 60, magnitude % 60);
    let offset = if s == 0 {
        format!("{sign}{h:02}:{m:02}")
    } else {
        format!("{sign}{h:02}:{m:02}:{s:02}")
    };
    format!("{}{offset}", zoned.strftime("%Y-%m-%dT%H:%M:%S"))
}

impl MaintenanceWindow {
    /// A window on `schedule`'s days at local time `start` in `tz`, lasting `duration`; no day
    /// offset, no cutoff, always active.
    pub fn new(
        schedule: Schedule,
        start: Time,
        duration: SignedDuration,
        tz: TimeZone,
    ) -> Result<Self, CalendarError> {
        if duration <= SignedDuration::ZERO || duration > MAX_DURATION {
            return Err(CalendarError::Window(format!(
                "duration {duration:#} must be longer than zero and at most 366 days"
            )));
        }
        if let Schedule::Cron(cron) = &schedule
            && let Some(time) = cron.time_of_day().filter(|t| *t != start)
        {
            return Err(CalendarError::Window(format!(
                "the cron expression \"{cron}\" starts at {}, the window at {}: they must \
                 agree (or use * * for minute and hour)",
                time.strftime("%H:%M"),
                start.strftime("%H:%M")
            )));
        }
        Ok(Self {
            schedule,
            offset_days: 0,
            start,
            duration,
            cutoff: SignedDuration::ZERO,
            tz,
            active_from: None,
            active_until: None,
        })
    }

    /// Moves every occurrence by `days` calendar days ("Patch Tuesday + 3 days"), before the
    /// start time is applied. Negative offsets move earlier.
    pub fn with_offset_days(mut self, days: i32) -> Result<Self, CalendarError> {
        if days.abs() > MAX_OFFSET_DAYS {
            return Err(CalendarError::Window(format!(
                "day offset {days} is more than {MAX_OFFSET_DAYS} days"
            )));
        }
        self.offset_days = days;
        Ok(self)
    }

    /// No host starts in the last `cutoff` of an occurrence; shorter than the duration.
    pub fn with_cutoff(mut self, cutoff: SignedDuration) -> Result<Self, CalendarError> {
        if cutoff < SignedDuration::ZERO || cutoff >= self.duration {
            return Err(CalendarError::Window(format!(
                "cutoff {cutoff:#} must be at least zero and shorter than the duration {:#}",
                self.duration
            )));
        }
        self.cutoff = cutoff;
        Ok(self)
    }

    /// Only occurrences on local dates from `from` to `until` (both inclusive, after the day
    /// offset) count.
    pub fn with_active_range(
        mut self,
        from: Option<Date>,
        until: Option<Date>,
    ) -> Result<Self, CalendarError> {
        if let (Some(from), Some(until)) = (from, until)
            && until < from
        {
            return Err(CalendarError::Window(format!(
                "active-until {until} is before active-from {from}"
            )));
        }
        self.active_from = from;
        self.active_until = until;
        Ok(self)
    }

    /// The schedule.
    pub fn schedule(&self) -> &Schedule {
        &self.schedule
    }

    /// The local start time.
    pub fn start_time(&self) -> Time {
        self.start
    }

    /// How long each occurrence lasts (elapsed time).
    pub fn duration(&self) -> SignedDuration {
        self.duration
    }

    /// The end part of each occurrence in which no host starts.
    pub fn cutoff(&self) -> SignedDuration {
        self.cutoff
    }

    /// The day offset.
    pub fn offset_days(&self) -> i32 {
        self.offset_days
    }

    /// The zone start times are read in.
    pub fn time_zone(&self) -> &TimeZone {
        &self.tz
    }

    /// The occurrences that start at or after local midnight of `from`, in order.
    pub fn occurrences(&self, from: Date) -> Occurrences<'_> {
        self.occurrences_between(from, Date::MAX)
    }

    /// The occurrences that start at or after local midnight of `from` on local dates up to
    /// `through`, in order. The bound also bounds the work for rules that rarely match.
    pub fn occurrences_between(&self, from: Date, through: Date) -> Occurrences<'_> {
        let floor = resolve_local(from, Time::midnight(), &self.tz)
            .map(|z| z.timestamp())
            .unwrap_or(Timestamp::MIN);
        self.occurrences_from_instant(from, floor, through)
    }

    /// The occurrences that start at or after `instant`, in order.
    pub fn occurrences_after(&self, instant: Timestamp) -> Occurrences<'_> {
        let date = instant.to_zoned(self.tz.clone()).date();
        self.occurrences_from_instant(date, instant, Date::MAX)
    }

    fn occurrences_from_instant(
        &self,
        from: Date,
        floor: Timestamp,
        through: Date,
    ) -> Occurrences<'_> {
        // A rule date d opens on d + offset; zones that skip a day can move a start to the
        // next day, so rule dates from two days early on may still land after the floor.
        let rule_from =
            days::date(days::number(from) - 2 - i64::from(self.offset_days)).unwrap_or(from);
        // Likewise a start may move a day later than its local date (skipped days).
        let rule_through =
            days::date(days::number(through) - i64::from(self.offset_days)).unwrap_or(through);
        Occurrences {
            window: self,
            dates: self
                .schedule
                .dates(rule_from, rule_through, self.start, &self.tz),
            floor,
            through,
        }
    }

    /// The occurrence open at `instant`, if any (the earliest-starting one when occurrences
    /// overlap).
    pub fn open_at(&self, instant: Timestamp) -> Option<Occurrence> {
        self.open_occurrences(instant).next()
    }

    /// Whether a host may start at `instant`: an occurrence is open and its cutoff has not
    /// begun.
    pub fn may_start(&self, instant: Timestamp) -> bool {
        self.open_occurrences(instant)
            .any(|o| instant < o.end.timestamp() - self.cutoff)
    }

    /// The occurrences open at `instant`.
    pub(crate) fn open_occurrences(
        &self,
        instant: Timestamp,
    ) -> impl Iterator<Item = Occurrence> + '_ {
        let local = instant.to_zoned(self.tz.clone()).date();
        let back = (self.duration.as_secs() + 86_399) / 86_400 + 2;
        let from = days::date(days::number(local) - back).unwrap_or(local);
        self.occurrences(from)
            .take_while(move |o| o.start.timestamp() <= instant)
            .filter(move |o| o.contains(instant))
    }
}

/// A window's occurrences: see [`MaintenanceWindow::occurrences`].
pub struct Occurrences<'a> {
    window: &'a MaintenanceWindow,
    dates: Box<dyn Iterator<Item = Date> + 'a>,
    floor: Timestamp,
    through: Date,
}

impl Iterator for Occurrences<'_> {
    type Item = Occurrence;

    fn next(&mut self) -> Option<Occurrence> {
        let window = self.window;
        loop {
            let rule_date = self.dates.next()?;
            let date = days::date(days::number(rule_date) + i64::from(window.offset_days))?;
            if window.active_from.is_some_and(|from| date < from) {
                continue;
            }
            if window.active_until.is_some_and(|until| date > until) {
                return None;
            }
            let start = resolve_local(date, window.start, &window.tz).ok()?;
            if start.timestamp() < self.floor {
                continue;
            }
            if start.date() > self.through {
                return None;
            }
            let end = start
                .timestamp()
                .checked_add(window.duration)
                .ok()?
                .to_zoned(window.tz.clone());
            return Some(Occurrence { start, end });
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use jiff::civil::{date, time};

    fn zone(name: &str) -> TimeZone {
        TimeZone::get(name).unwrap()
    }

    fn rrule(rule: &str, dtstart: Date) -> Schedule {
        Schedule::Rrule {
            rule: RecurrenceRule::parse(rule).unwrap(),
            dtstart,
        }
    }

    fn patch_tuesday_plus_3() -> MaintenanceWindow {
        MaintenanceWindow::new(
            rrule("FREQ=MONTHLY;BYDAY=2TU", date(2026, 1, 1)),
            time(22, 0, 0, 0),
            SignedDuration::from_hours(4),
            zone("Europe/Berlin"),
        )
        .unwrap()
        .with_offset_days(3)
        .unwrap()
        .with_cutoff(SignedDuration::from_mins(30))
        .unwrap()
    }

    fn ts(text: &str) -> Timestamp {
        text.parse().unwrap()
    }

    #[test]
    fn patch_tuesday_plus_three_days() {
        let window = patch_tuesday_plus_3();
        let got: Vec<String> = window
            .occurrences(date(2026, 1, 1))
            .take(3)
            .map(|o| format!("{} {}", o.start, o.end.timestamp()))
            .collect();
        assert_eq!(
            got,
            [
                "2026-01-16T22:00:00+01:00[Europe/Berlin] 2026-01-17T01:00:00Z",
                "2026-02-13T22:00:00+01:00[Europe/Berlin] 2026-02-14T01:00:00Z",
                "2026-03-13T22:00:00+01:00[Europe/Berlin] 2026-03-14T01:00:00Z",
            ]
        );
    }

    #[test]
    fn open_at_and_cutoff() {
        let window = patch_tuesday_plus_3();
        // 2026-01-16 22:00 Berlin = 21:00Z, until 01:00Z; the cutoff begins at 00:30Z.
        assert!(window.open_at(ts("2026-01-16T20:59:59Z")).is_none());
        assert!(window.open_at(ts("2026-01-16T21:00:00Z")).is_some());
        assert!(window.may_start(ts("2026-01-17T00:29:59Z")));
        assert!(!window.may_start(ts("2026-01-17T00:30:00Z")));
        assert!(window.open_at(ts("2026-01-17T00:59:59Z")).is_some());
        assert!(window.open_at(ts("2026-01-17T01:00:00Z")).is_none());
        assert!(!window.may_start(ts("2026-01-20T00:00:00Z")));
        // Far from DTSTART (the rule skips ahead without COUNT).
        assert!(window.open_at(ts("2036-06-13T20:30:00Z")).is_some());
    }

    #[test]
    fn negative_offsets_and_the_from_date() {
        // The Friday before Patch Tuesday: 2026-02-06, ...; Patch Tuesday 2026-01-13 minus 4 is
        // 2026-01-09, before the from date 2026-01-10, so it is not listed.
        let window = MaintenanceWindow::new(
            rrule("FREQ=MONTHLY;BYDAY=2TU", date(2026, 1, 10)),
            time(20, 0, 0, 0),
            SignedDuration::from_hours(2),
            zone("UTC"),
        )
        .unwrap()
        .with_offset_days(-4)
        .unwrap();
        let first = window.occurrences(date(2026, 1, 10)).next().unwrap();
        assert_eq!(first.start.date(), date(2026, 2, 6));
    }

    #[test]
    fn active_range() {
        let window = patch_tuesday_plus_3()
            .with_active_range(Some(date(2026, 2, 1)), Some(date(2026, 3, 31)))
            .unwrap();
        let dates: Vec<Date> = window
            .occurrences(date(2026, 1, 1))
            .map(|o| o.start.date())
            .collect();
        assert_eq!(dates, [date(2026, 2, 13), date(2026, 3, 13)]);
    }

    #[test]
    fn cron_windows_and_their_time() {
        let cron = CronSchedule::parse("0 2 * * TUE#2").unwrap();
        let window = MaintenanceWindow::new(
            Schedule::Cron(cron.clone()),
            time(2, 0, 0, 0),
            SignedDuration::from_hours(3),
            zone("America/New_York"),
        )
        .unwrap();
        // 2026-03-10 is after the spring-forward Sunday: plain EDT.
        let starts: Vec<String> = window
            .occurrences(date(2026, 3, 1))
            .take(1)
            .map(|o| o.start.to_string())
            .collect();
        assert_eq!(starts, ["2026-03-10T02:00:00-04:00[America/New_York]"]);
        let err = MaintenanceWindow::new(
            Schedule::Cron(cron),
            time(22, 0, 0, 0),
            SignedDuration::from_hours(3),
            zone("UTC"),
        )
        .unwrap_err();
        assert!(err.to_string().contains("02:00"), "{err}");
    }

    #[test]
    fn dst_rule_in_windows() {
        // Every day at 02:30 New York: the spring-forward day opens at 03:30 EDT and still lasts
        // two elapsed hours.
        let window = MaintenanceWindow::new(
            rrule("FREQ=DAILY", date(2026, 3, 7)),
            time(2, 30, 0, 0),
            SignedDuration::from_hours(2),
            zone("America/New_York"),
        )
        .unwrap();
        let got: Vec<String> = window
            .occurrences(date(2026, 3, 7))
            .take(3)
            .map(|o| format!("{} {}", o.start.timestamp(), o.end.timestamp()))
            .collect();
        assert_eq!(
            got,
            [
                "2026-03-07T07:30:00Z 2026-03-07T09:30:00Z",
                "2026-03-08T07:30:00Z 2026-03-08T09:30:00Z",
                "2026-03-09T06:30:00Z 2026-03-09T08:30:00Z",
            ]
        );
        // 01:30 on the fall-back day is the first, EDT, one.
        let window = MaintenanceWindow::new(
            rrule("FREQ=DAILY", date(2026, 11, 1)),
            time(1, 30, 0, 0),
            SignedDuration::from_hours(1),
            zone("America/New_York"),
        )
        .unwrap();
        let first = window.occurrences(date(2026, 11, 1)).next().unwrap();
        assert_eq!(
            first.start.to_string(),
            "2026-11-01T01:30:00-04:00[America/New_York]"
        );
        assert_eq!(
            first.end.to_string(),
            "2026-11-01T01:30:00-05:00[America/New_York]"
        );
    }

    #[test]
    fn bad_windows() {
        let schedule = rrule("FREQ=DAILY", date(2026, 1, 1));
        let new = |d| MaintenanceWindow::new(schedule.clone(), time(1, 0, 0, 0), d, TimeZone::UTC);
        assert!(new(SignedDuration::ZERO).is_err());
        assert!(new(SignedDuration::from_hours(-1)).is_err());
        let window = new(SignedDuration::from_hours(1)).unwrap();
        assert!(
            window
                .clone()
                .with_cutoff(SignedDuration::from_hours(1))
                .is_err()
        );
        assert!(window.clone().with_offset_days(400).is_err());
        assert!(
            window
                .with_active_range(Some(date(2026, 2, 1)), Some(date(2026, 1, 1)))
                .is_err()
        );
    }
}
