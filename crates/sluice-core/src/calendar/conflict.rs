//! Conflicts a change runs into when it is scheduled: hosts outside their maintenance windows,
//! freezes without an approved exception, and other changes on the same hosts at the same time.
//!
//! Owns: the reasons, one per host and problem, in a stable order (by host, then kind). The
//! caller resolves the change's scope to hosts and loads each host's windows; this module only
//! compares times. Never reads a clock.

use std::collections::BTreeSet;
use std::fmt;

use jiff::Timestamp;

use super::TimeRange;
use super::freeze::FreezeCalendar;
use super::window::MaintenanceWindow;

/// A change being scheduled: its hosts and when it would run.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ProposedChange {
    /// The change's id, for messages.
    pub id: String,
    /// The hosts it touches.
    pub hosts: BTreeSet<String>,
    /// When it runs: it starts on every host at `range.start` and must be done by `range.end`.
    pub range: TimeRange,
}

/// A change already on the calendar.
pub type ScheduledChange = ProposedChange;

/// One host's maintenance windows. A host without windows has no time it may be changed.
#[derive(Clone, Debug, PartialEq)]
pub struct HostCalendar {
    /// The host name.
    pub host: String,
    /// Its windows (from its groups, services, or its own).
    pub windows: Vec<MaintenanceWindow>,
}

/// Why a change cannot run as scheduled on one host.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Conflict {
    /// The host has no maintenance window at all.
    NoWindow {
        /// The host.
        host: String,
    },
    /// No window of the host is open when the change starts.
    NotInWindow {
        /// The host.
        host: String,
        /// When a window of the host next opens after the change's start, if one does.
        next_opening: Option<Timestamp>,
    },
    /// A window is open, but the change would start inside its cutoff.
    InCutoff {
        /// The host.
        host: String,
        /// When the cutoff began.
        cutoff_from: Timestamp,
        /// When the window closes.
        window_end: Timestamp,
    },
    /// The change starts in a window but runs past the window's end.
    RunsPastWindow {
        /// The host.
        host: String,
        /// When the window closes.
        window_end: Timestamp,
    },
    /// A freeze holds for the host during part of the change, with no approved exception.
    Frozen {
        /// The host.
        host: String,
        /// The freeze's name.
        freeze: String,
        /// The frozen part of the change's range.
        during: TimeRange,
    },
    /// Another change on the same host overlaps in time.
    Overlap {
        /// The host.
        host: String,
        /// The other change's id.
        other: String,
        /// The shared time.
        during: TimeRange,
    },
}

impl Conflict {
    /// The host the conflict is about.
    pub fn host(&self) -> &str {
        match self {
            Self::NoWindow { host }
            | Self::NotInWindow { host, .. }
            | Self::InCutoff { host, .. }
            | Self::RunsPastWindow { host, .. }
            | Self::Frozen { host, .. }
            | Self::Overlap { host, .. } => host,
        }
    }
}

impl fmt::Display for Conflict {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::NoWindow { host } => write!(f, "{host}: has no maintenance window"),
            Self::NotInWindow {
                host,
                next_opening: Some(next),
            } => write!(
                f,
                "{host}: outside its maintenance windows (next opens {next})"
            ),
            Self::NotInWindow { host, .. } => {
                write!(
                    f,
                    "{host}: outside its maintenance windows (none opens again)"
                )
            }
            Self::InCutoff {
                host,
                cutoff_from,
                window_end,
            } => write!(
                f,
                "{host}: starts in the window's cutoff (no starts from {cutoff_from}; the window \
                 closes {window_end})"
            ),
            Self::RunsPastWindow { host, window_end } => {
                write!(f, "{host}: runs past the window's end at {window_end}")
            }
            Self::Frozen {
                host,
                freeze,
                during,
            } => write!(f, "{host}: freeze \"{freeze}\" holds {during}"),
            Self::Overlap {
                host,
                other,
                during,
            } => write!(f, "{host}: change {other} also runs {during}"),
        }
    }
}

/// Every conflict of `change` with the hosts' windows, the freezes and the other changes. Hosts
/// missing from `calendars` count as having no window. Other changes with the same id as
/// `change` are ignored (rescheduling a change does not conflict with its old slot).
pub fn detect_conflicts(
    change: &ProposedChange,
    calendars: &[HostCalendar],
    freezes: &FreezeCalendar,
    others: &[ScheduledChange],
) -> Vec<Conflict> {
    let mut conflicts = Vec::new();
    for host in &change.hosts {
        let windows = calendars
            .iter()
            .filter(|c| &c.host == host)
            .flat_map(|c| c.windows.iter())
            .collect::<Vec<_>>();
        if let Some(conflict) = window_conflict(host, &windows, change.range) {
            conflicts.push(conflict);
        }
        for (freeze, during) in freezes.blocked(host, change.range) {
            conflicts.push(Conflict::Frozen {
                host: host.clone(),
                freeze: freeze.name().to_owned(),
                during,
            });
        }
        for other in others
            .iter()
            .filter(|o| o.id != change.id && o.hosts.contains(host))
        {
            if let Some(during) = other.range.intersection(&change.range) {
                conflicts.push(Conflict::Overlap {
                    host: host.clone(),
                    other: other.id.clone(),
                    during,
                });
            }
        }
    }
    conflicts
}

/// The reason `range` does not fit one of `windows`, or `None` when it does: the start must be
/// in an open occurrence before its cutoff, and the end no later than that occurrence's end.
fn window_conflict(
    host: &str,
    windows: &[&MaintenanceWindow],
    range: TimeRange,
) -> Option<Conflict> {
    if windows.is_empty() {
        return Some(Conflict::NoWindow {
            host: host.to_owned(),
        });
    }
    let mut best: Option<Conflict> = None;
    for window in windows {
        for occurrence in window.open_occurrences(range.start) {
            let end = occurrence.end.timestamp();
            let cutoff_from = end - window.cutoff();
            let conflict = if range.start >= cutoff_from {
                Conflict::InCutoff {
                    host: host.to_owned(),
                    cutoff_from,
                    window_end: end,
                }
            } else if range.end > end {
                Conflict::RunsPastWindow {
                    host: host.to_owned(),
                    window_end: end,
                }
            } else {
                return None;
            };
            best.get_or_insert(conflict);
        }
    }
    if best.is_some() {
        return best;
    }
    let next_opening = windows
        .iter()
        .filter_map(|w| w.occurrences_after(range.start).next())
        .map(|o| o.start.timestamp())
        .min();
    Some(Conflict::NotInWindow {
        host: host.to_owned(),
        next_opening,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::calendar::freeze::{ExceptionDecision, Freeze, FreezeException, FreezeRule, Scope};
    use crate::calendar::rrule::RecurrenceRule;
    use crate::calendar::window::Schedule;
    use jiff::SignedDuration;
    use jiff::civil::{date, time};
    use jiff::tz::TimeZone;

    fn ts(text: &str) -> Timestamp {
        text.parse().unwrap()
    }

    fn range(from: &str, to: &str) -> TimeRange {
        TimeRange::new(ts(from), ts(to)).unwrap()
    }

    /// Nightly 01:00-05:00 UTC, no starts after 04:30.
    fn nightly() -> MaintenanceWindow {
        MaintenanceWindow::new(
            Schedule::Rrule {
                rule: RecurrenceRule::parse("FREQ=DAILY").unwrap(),
                dtstart: date(2026, 1, 1),
            },
            time(1, 0, 0, 0),
            SignedDuration::from_hours(4),
            TimeZone::UTC,
        )
        .unwrap()
        .with_cutoff(SignedDuration::from_mins(30))
        .unwrap()
    }

    fn change(id: &str, hosts: &[&str], range: TimeRange) -> ProposedChange {
        ProposedChange {
            id: id.into(),
            hosts: hosts.iter().map(|h| (*h).to_owned()).collect(),
            range,
        }
    }

    fn calendars() -> Vec<HostCalendar> {
        ["web1", "web2"]
            .into_iter()
            .map(|host| HostCalendar {
                host: host.into(),
                windows: vec![nightly()],
            })
            .collect()
    }

    #[test]
    fn a_change_inside_its_windows_has_no_conflict() {
        let c = change(
            "CHG-1",
            &["web1", "web2"],
            range("2026-03-02T01:00:00Z", "2026-03-02T03:00:00Z"),
        );
        assert_eq!(
            detect_conflicts(&c, &calendars(), &FreezeCalendar::default(), &[]),
            []
        );
    }

    #[test]
    fn window_conflicts_say_why() {
        let check = |from: &str, to: &str, hosts: &[&str]| {
            let c = change("CHG-1", hosts, range(from, to));
            detect_conflicts(&c, &calendars(), &FreezeCalendar::default(), &[])
                .iter()
                .map(ToString::to_string)
                .collect::<Vec<_>>()
        };
        assert_eq!(
            check("2026-03-02T12:00:00Z", "2026-03-02T13:00:00Z", &["web1"]),
            ["web1: outside its maintenance windows (next opens 2026-03-03T01:00:00Z)"]
        );
        assert_eq!(
            check("2026-03-02T04:40:00Z", "2026-03-02T04:50:00Z", &["web1"]),
            [
                "web1: starts in the window's cutoff (no starts from 2026-03-02T04:30:00Z; the \
              window closes 2026-03-02T05:00:00Z)"
            ]
        );
        assert_eq!(
            check("2026-03-02T04:00:00Z", "2026-03-02T06:00:00Z", &["web1"]),
            ["web1: runs past the window's end at 2026-03-02T05:00:00Z"]
        );
        assert_eq!(
            check("2026-03-02T02:00:00Z", "2026-03-02T03:00:00Z", &["db9"]),
            ["db9: has no maintenance window"]
        );
    }

    #[test]
    fn freezes_and_other_changes() {
        let freeze = Freeze::new(
            "release",
            FreezeRule::Range(range("2026-03-02T02:00:00Z", "2026-03-03T00:00:00Z")),
            TimeZone::UTC,
            Scope::Everything,
        )
        .unwrap();
        let exception = FreezeException {
            freeze: "release".into(),
            scope: Scope::Hosts(["web2".to_owned()].into()),
            range: range("2026-03-02T00:00:00Z", "2026-03-02T06:00:00Z"),
            justification: "exploited in the wild".into(),
            requested_by: "olivia".into(),
            decision: ExceptionDecision::Approved {
                by: "cab".into(),
                at: ts("2026-03-01T00:00:00Z"),
            },
        };
        let freezes = FreezeCalendar {
            freezes: vec![freeze],
            exceptions: vec![exception],
        };
        let others = [
            change(
                "CHG-0",
                &["web2"],
                range("2026-03-02T02:30:00Z", "2026-03-02T04:00:00Z"),
            ),
            change(
                "CHG-1",
                &["web2"],
                range("2026-03-02T01:00:00Z", "2026-03-02T02:00:00Z"),
            ),
        ];
        let c = change(
            "CHG-1",
            &["web1", "web2"],
            range("2026-03-02T01:00:00Z", "2026-03-02T03:00:00Z"),
        );
        let got: Vec<String> = detect_conflicts(&c, &calendars(), &freezes, &others)
            .iter()
            .map(ToString::to_string)
            .collect();
        assert_eq!(
            got,
            [
                "web1: freeze \"release\" holds 2026-03-02T02:00:00Z to 2026-03-02T03:00:00Z",
                "web2: change CHG-0 also runs 2026-03-02T02:30:00Z to 2026-03-02T03:00:00Z",
            ]
        );
    }
}
