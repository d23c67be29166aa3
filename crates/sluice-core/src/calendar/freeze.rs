//! Freezes: times when nothing starts and no rollout continues, unless an approved exception
//! lifts the freeze for a scope and a time range.
//!
//! Owns: the freeze rules (explicit ranges; the last N business days of every month; a yearly
//! date range such as a tax season; any window-like recurring rule), which instants they cover,
//! and how exceptions lift them. Scopes are sets of host names: resolving selectors, groups and
//! services to hosts is the caller's business. Never reads a clock.

use std::collections::BTreeSet;

use jiff::Timestamp;
use jiff::civil::{Date, Time, Weekday};
use jiff::tz::TimeZone;

use super::window::MaintenanceWindow;
use super::{CalendarError, TimeRange, days, resolve_local};

/// Which hosts a freeze or an exception applies to.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub enum Scope {
    /// Every host.
    Everything,
    /// These hosts, by name.
    Hosts(BTreeSet<String>),
}

impl Scope {
    /// Whether `host` is inside.
    pub fn contains(&self, host: &str) -> bool {
        match self {
            Self::Everything => true,
            Self::Hosts(hosts) => hosts.contains(host),
        }
    }
}

/// When a freeze holds.
#[derive(Clone, Debug, PartialEq)]
pub enum FreezeRule {
    /// One explicit range of instants.
    Range(TimeRange),
    /// From the start of the Nth-last business day of every month (Monday to Friday, less the
    /// holidays) to the end of the month, in local days of the freeze's zone.
    LastBusinessDays {
        /// N, 1 to 20.
        days: u8,
        /// Dates that are not business days.
        holidays: BTreeSet<Date>,
    },
    /// Every year from one month and day to another, both whole days included, in local days
    /// of the freeze's zone; the range may run over New Year. 29 February is read as 28 February
    /// in common years.
    YearlyDates {
        /// First day: (month, day).
        from: (i8, i8),
        /// Last day: (month, day).
        until: (i8, i8),
    },
    /// Every occurrence of a window-like rule (e.g. `FREQ=WEEKLY;BYDAY=FR` from 18:00 for 62h).
    Recurring(Box<MaintenanceWindow>),
}

/// A named freeze over a scope.
#[derive(Clone, Debug, PartialEq)]
pub struct Freeze {
    name: String,
    rule: FreezeRule,
    tz: TimeZone,
    scope: Scope,
}

/// Whether an exception request has been decided.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ExceptionDecision {
    /// Waiting for approval: lifts nothing yet.
    Requested,
    /// Approved: lifts the freeze within the exception's scope and range.
    Approved {
        /// Who approved.
        by: String,
        /// When.
        at: Timestamp,
    },
    /// Rejected: lifts nothing.
    Rejected {
        /// Who rejected.
        by: String,
        /// When.
        at: Timestamp,
    },
}

/// A request to work inside a freeze, with its justification and, once decided, the approval.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct FreezeException {
    /// The freeze it lifts, by name.
    pub freeze: String,
    /// The hosts it lifts the freeze for.
    pub scope: Scope,
    /// When.
    pub range: TimeRange,
    /// Why the work cannot wait.
    pub justification: String,
    /// Who asked.
    pub requested_by: String,
    /// The decision.
    pub decision: ExceptionDecision,
}

impl FreezeException {
    /// Whether the exception is approved.
    pub fn is_approved(&self) -> bool {
        matches!(self.decision, ExceptionDecision::Approved { .. })
    }
}

impl Freeze {
    /// A freeze named `name` (for messages and exceptions) holding by `rule` for `scope`; local
    /// days are read in `tz`.
    pub fn new(
        name: &str,
        rule: FreezeRule,
        tz: TimeZone,
        scope: Scope,
    ) -> Result<Self, CalendarError> {
        let err = |reason: String| CalendarError::Freeze {
            name: name.to_owned(),
            reason,
        };
        if name.trim().is_empty() {
            return Err(err("a freeze needs a name".into()));
        }
        match &rule {
            FreezeRule::LastBusinessDays { days, .. } if !(1..=20).contains(days) => {
                return Err(err(format!("last {days} business days: N must be 1 to 20")));
            }
            FreezeRule::YearlyDates { from, until } => {
                for (what, (month, day)) in [("from", from), ("until", until)] {
                    if Date::new(2024, *month, *day).is_err() {
                        return Err(err(format!("{what} {month:02}-{day:02} is not a date")));
                    }
                }
            }
            _ => {}
        }
        Ok(Self {
            name: name.to_owned(),
            rule,
            tz,
            scope,
        })
    }

    /// The name.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// The scope.
    pub fn scope(&self) -> &Scope {
        &self.scope
    }

    /// The rule.
    pub fn rule(&self) -> &FreezeRule {
        &self.rule
    }

    /// Whether the freeze holds at `instant` (ignoring exceptions).
    pub fn covers(&self, instant: Timestamp) -> bool {
        let probe = TimeRange {
            start: instant,
            end: instant + jiff::SignedDuration::from_nanos(1),
        };
        !self.frozen_within(probe).is_empty()
    }

    /// The frozen parts of `range`, in order (ignoring exceptions).
    pub fn frozen_within(&self, range: TimeRange) -> Vec<TimeRange> {
        let mut frozen: Vec<TimeRange> = match &self.rule {
            FreezeRule::Range(freeze) => freeze.intersection(&range).into_iter().collect(),
            FreezeRule::Recurring(window) => {
                let first = range.start.to_zoned(self.tz.clone()).date();
                let back = window.duration().as_secs() / 86_400 + 2;
                let from = days::date(days::number(first) - back).unwrap_or(first);
                window
                    .occurrences(from)
                    .take_while(|o| o.start.timestamp() < range.end)
                    .filter_map(|o| o.range().intersection(&range))
                    .collect()
            }
            FreezeRule::LastBusinessDays { days, holidays } => self
                .local_spans(range, |year, month| {
                    last_business_days(year, month, *days, holidays)
                })
                .into_iter()
                .collect(),
            FreezeRule::YearlyDates { from, until } => {
                self.local_spans(range, |year, month| yearly_span(year, month, *from, *until))
            }
        };
        frozen.sort();
        merge(frozen)
    }

    /// Frozen spans of whole local days met by `range`: `span(year, month)` gives the span
    /// (first day, last day) that starts in that month, if any. Months are walked from a year
    /// before the range (a yearly span may start long before) to its end.
    fn local_spans(
        &self,
        range: TimeRange,
        span: impl Fn(i16, i8) -> Option<(Date, Date)>,
    ) -> Vec<TimeRange> {
        let first = range.start.to_zoned(self.tz.clone()).date();
        let last = range.end.to_zoned(self.tz.clone()).date();
        let mut out = Vec::new();
        let (mut year, mut month) = (first.year().saturating_sub(1), first.month());
        while (year, month) <= (last.year(), last.month()) {
            if let Some((from, until)) = span(year, month) {
                let start = midnight(from, &self.tz);
                let end = days::date(days::number(until) + 1).and_then(|d| midnight(d, &self.tz));
                if let (Some(start), Some(end)) = (start, end)
                    && let Some(part) =
                        TimeRange::new(start, end).and_then(|s| s.intersection(&range))
                {
                    out.push(part);
                }
            }
            (year, month) = if month == 12 {
                (year + 1, 1)
            } else {
                (year, month + 1)
            };
        }
        out
    }
}

fn midnight(date: Date, tz: &TimeZone) -> Option<Timestamp> {
    resolve_local(date, Time::midnight(), tz)
        .ok()
        .map(|z| z.timestamp())
}

/// From the Nth-last business day of the month to its last day.
fn last_business_days(
    year: i16,
    month: i8,
    n: u8,
    holidays: &BTreeSet<Date>,
) -> Option<(Date, Date)> {
    let first = Date::new(year, month, 1).ok()?;
    let last = first.last_of_month();
    let mut found = 0;
    let mut day = last;
    loop {
        let business = !matches!(day.weekday(), Weekday::Saturday | Weekday::Sunday)
            && !holidays.contains(&day);
        if business {
            found += 1;
            if found == n {
                return Some((day, last));
            }
        }
        if day == first {
            // Fewer business days than N: the whole month.
            return Some((first, last));
        }
        day = day.yesterday().ok()?;
    }
}

/// The yearly span that starts in `year`-`month`, if the rule's first day is in that month.
fn yearly_span(year: i16, month: i8, from: (i8, i8), until: (i8, i8)) -> Option<(Date, Date)> {
    if from.0 != month {
        return None;
    }
    let day = |year: i16, (m, d): (i8, i8)| {
        Date::new(year, m, d)
            .or_else(|_| Date::new(year, m, d - 1))
            .ok()
    };
    let start = day(year, from)?;
    let end_year = if until < from {
        year.checked_add(1)?
    } else {
        year
    };
    Some((start, day(end_year, until)?))
}

/// Joins overlapping and touching ranges of a sorted list.
fn merge(ranges: Vec<TimeRange>) -> Vec<TimeRange> {
    let mut out: Vec<TimeRange> = Vec::with_capacity(ranges.len());
    for range in ranges {
        match out.last_mut() {
            Some(last) if range.start <= last.end => last.end = last.end.max(range.end),
            _ => out.push(range),
        }
    }
    out
}

/// Removes `cut` from each range of `ranges`.
fn subtract(ranges: Vec<TimeRange>, cut: &TimeRange) -> Vec<TimeRange> {
    let mut out = Vec::new();
    for range in ranges {
        if !range.overlaps(cut) {
            out.push(range);
            continue;
        }
        out.extend(TimeRange::new(range.start, cut.start));
        out.extend(TimeRange::new(cut.end, range.end));
    }
    out
}

/// All freezes and exception requests, answering "may this host work now?".
#[derive(Clone, Debug, Default, PartialEq)]
pub struct FreezeCalendar {
    /// The freezes.
    pub freezes: Vec<Freeze>,
    /// The exception requests, whatever their decision.
    pub exceptions: Vec<FreezeException>,
}

impl FreezeCalendar {
    /// The parts of `range` in which a freeze holds for `host` and no approved exception lifts
    /// it, with the freeze.
    pub fn blocked(&self, host: &str, range: TimeRange) -> Vec<(&Freeze, TimeRange)> {
        let mut out = Vec::new();
        for freeze in self.freezes.iter().filter(|f| f.scope.contains(host)) {
            let mut frozen = freeze.frozen_within(range);
            for exception in self
                .exceptions
                .iter()
                .filter(|e| e.is_approved() && e.freeze == freeze.name && e.scope.contains(host))
            {
                frozen = subtract(frozen, &exception.range);
            }
            out.extend(frozen.into_iter().map(|part| (freeze, part)));
        }
        out
    }

    /// The freeze that stops `host` at `instant` (nothing starts, no rollout continues), if any.
    pub fn blocking(&self, host: &str, instant: Timestamp) -> Option<&Freeze> {
        let probe = TimeRange {
            start: instant,
            end: instant + jiff::SignedDuration::from_nanos(1),
        };
        self.blocked(host, probe).first().map(|(freeze, _)| *freeze)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::calendar::rrule::RecurrenceRule;
    use crate::calendar::window::Schedule;
    use jiff::SignedDuration;
    use jiff::civil::{date, time};

    fn ts(text: &str) -> Timestamp {
        text.parse().unwrap()
    }

    fn berlin() -> TimeZone {
        TimeZone::get("Europe/Berlin").unwrap()
    }

    fn hosts(names: &[&str]) -> Scope {
        Scope::Hosts(names.iter().map(|s| (*s).to_owned()).collect())
    }

    #[test]
    fn last_three_business_days() {
        let freeze = Freeze::new(
            "month-end",
            FreezeRule::LastBusinessDays {
                days: 3,
                holidays: BTreeSet::new(),
            },
            berlin(),
            Scope::Everything,
        )
        .unwrap();
        // January 2026 ends on a Saturday: Wed 28, Thu 29, Fri 30, through Sat 31.
        assert!(!freeze.covers(ts("2026-01-27T22:59:59Z")));
        assert!(freeze.covers(ts("2026-01-27T23:00:00Z"))); // Berlin midnight
        assert!(freeze.covers(ts("2026-01-31T22:59:59Z")));
        assert!(!freeze.covers(ts("2026-01-31T23:00:00Z")));
        // A holiday on Friday 30 pulls the start back to Tuesday 27.
        let freeze = Freeze::new(
            "month-end",
            FreezeRule::LastBusinessDays {
                days: 3,
                holidays: [date(2026, 1, 30)].into(),
            },
            berlin(),
            Scope::Everything,
        )
        .unwrap();
        assert!(freeze.covers(ts("2026-01-26T23:00:00Z")));
    }

    #[test]
    fn tax_season_and_new_year() {
        let tax = Freeze::new(
            "tax season",
            FreezeRule::YearlyDates {
                from: (3, 15),
                until: (4, 15),
            },
            berlin(),
            Scope::Everything,
        )
        .unwrap();
        assert!(tax.covers(ts("2027-04-15T12:00:00Z")));
        assert!(!tax.covers(ts("2027-04-15T22:00:00Z"))); // after Berlin midnight
        assert!(!tax.covers(ts("2027-03-14T12:00:00Z")));
        let new_year = Freeze::new(
            "new year",
            FreezeRule::YearlyDates {
                from: (12, 20),
                until: (1, 5),
            },
            TimeZone::UTC,
            Scope::Everything,
        )
        .unwrap();
        assert!(new_year.covers(ts("2027-01-03T00:00:00Z")));
        assert!(new_year.covers(ts("2026-12-31T00:00:00Z")));
        assert!(!new_year.covers(ts("2027-01-06T00:00:00Z")));
    }

    #[test]
    fn recurring_and_explicit_freezes() {
        let weekend = MaintenanceWindow::new(
            Schedule::Rrule {
                rule: RecurrenceRule::parse("FREQ=WEEKLY;BYDAY=FR").unwrap(),
                dtstart: date(2026, 1, 1),
            },
            time(18, 0, 0, 0),
            SignedDuration::from_hours(62),
            berlin(),
        )
        .unwrap();
        let freeze = Freeze::new(
            "weekends",
            FreezeRule::Recurring(Box::new(weekend)),
            berlin(),
            Scope::Everything,
        )
        .unwrap();
        assert!(freeze.covers(ts("2026-01-11T12:00:00Z"))); // Sunday
        assert!(!freeze.covers(ts("2026-01-12T07:00:00Z"))); // Monday 08:00
        let explicit = Freeze::new(
            "release",
            FreezeRule::Range(
                TimeRange::new(ts("2026-12-01T00:00:00Z"), ts("2026-12-02T00:00:00Z")).unwrap(),
            ),
            TimeZone::UTC,
            hosts(&["db1"]),
        )
        .unwrap();
        assert!(explicit.covers(ts("2026-12-01T00:00:00Z")));
        assert!(!explicit.covers(ts("2026-12-02T00:00:00Z")));
    }

    #[test]
    fn only_approved_exceptions_lift_a_freeze_and_only_in_scope() {
        let freeze = Freeze::new(
            "release",
            FreezeRule::Range(
                TimeRange::new(ts("2026-12-01T00:00:00Z"), ts("2026-12-03T00:00:00Z")).unwrap(),
            ),
            TimeZone::UTC,
            Scope::Everything,
        )
        .unwrap();
        let mut exception = FreezeException {
            freeze: "release".into(),
            scope: hosts(&["db1"]),
            range: TimeRange::new(ts("2026-12-01T10:00:00Z"), ts("2026-12-01T12:00:00Z")).unwrap(),
            justification: "CVE-2026-1234 is exploited".into(),
            requested_by: "olivia".into(),
            decision: ExceptionDecision::Requested,
        };
        let mut calendar = FreezeCalendar {
            freezes: vec![freeze],
            exceptions: vec![exception.clone()],
        };
        let noon = ts("2026-12-01T11:00:00Z");
        assert!(calendar.blocking("db1", noon).is_some());
        exception.decision = ExceptionDecision::Approved {
            by: "cab".into(),
            at: ts("2026-11-30T09:00:00Z"),
        };
        calendar.exceptions = vec![exception];
        assert!(calendar.blocking("db1", noon).is_none());
        assert!(calendar.blocking("web1", noon).is_some());
        assert!(
            calendar
                .blocking("db1", ts("2026-12-01T12:00:00Z"))
                .is_some()
        );
        let day = TimeRange::new(ts("2026-12-01T00:00:00Z"), ts("2026-12-02T00:00:00Z")).unwrap();
        let parts: Vec<TimeRange> = calendar
            .blocked("db1", day)
            .into_iter()
            .map(|(_, r)| r)
            .collect();
        assert_eq!(
            parts,
            [
                TimeRange::new(ts("2026-12-01T00:00:00Z"), ts("2026-12-01T10:00:00Z")).unwrap(),
                TimeRange::new(ts("2026-12-01T12:00:00Z"), ts("2026-12-02T00:00:00Z")).unwrap(),
            ]
        );
    }

    #[test]
    fn bad_freezes() {
        let bad = |rule| Freeze::new("f", rule, TimeZone::UTC, Scope::Everything).is_err();
        assert!(bad(FreezeRule::LastBusinessDays {
            days: 0,
            holidays: BTreeSet::new()
        }));
        assert!(bad(FreezeRule::YearlyDates {
            from: (2, 30),
            until: (3, 1)
        }));
        assert!(
            Freeze::new(
                " ",
                FreezeRule::YearlyDates {
                    from: (2, 29),
                    until: (3, 1)
                },
                TimeZone::UTC,
                Scope::Everything
            )
            .is_err()
        );
    }
}
