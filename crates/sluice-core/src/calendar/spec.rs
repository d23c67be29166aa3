//! Stored definitions of windows and freezes: the text an operator writes (`FREQ=MONTHLY;BYDAY=2TU`,
//! `22:00`, `4h`, `Europe/Berlin`), kept as it was written and turned into the calendar types on
//! every read, so that a stored rule always means what the parsers say today.
//!
//! Owns: the JSON shape of a definition and the field each refusal is about. Never reads the tz
//! database: the caller passes a resolver from IANA names to zones.

use jiff::civil::Date;
use jiff::tz::TimeZone;
use jiff::{SignedDuration, Timestamp};
use serde::{Deserialize, Serialize};

use super::freeze::{Freeze, FreezeRule, Scope};
use super::window::{MaintenanceWindow, Schedule};
use super::{CronSchedule, RecurrenceRule, TimeRange, parse_duration, parse_time_of_day};

/// A definition refused, with the field at fault (`rrule`, `duration`, `tz`, ...).
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("{field}: {message}")]
pub struct SpecError {
    /// The field at fault, as named in the JSON.
    pub field: String,
    /// What is wrong, in the parser's words.
    pub message: String,
}

fn fail(field: &str, message: impl ToString) -> SpecError {
    SpecError {
        field: field.to_owned(),
        message: message.to_string(),
    }
}

/// A maintenance window as written: exactly one of `rrule` and `cron`, a start time, a duration,
/// a zone, and optionally a day offset, a cutoff and an active range.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct WindowSpec {
    /// An RRULE (`FREQ=MONTHLY;BYDAY=2TU`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rrule: Option<String>,
    /// The RRULE's start date (DTSTART); default: the day the window is stored, in its zone.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub dtstart: Option<Date>,
    /// A five-field cron expression (`0 22 * * TUE#2`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cron: Option<String>,
    /// Local start time, `HH:MM`; may be left out with a cron expression that fixes it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub start: Option<String>,
    /// `4h`, `90m`, `1h30m`, `2d`.
    pub duration: String,
    /// No host starts in the last part of an occurrence (`30m`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cutoff: Option<String>,
    /// IANA zone (`Europe/Berlin`).
    pub tz: String,
    /// Calendar days added to each day the rule picks.
    #[serde(default)]
    pub offset_days: i32,
    /// First local date that counts.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub active_from: Option<Date>,
    /// Last local date that counts.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub active_until: Option<Date>,
}

impl WindowSpec {
    /// The window it defines; zones come from `zone`.
    pub fn build(
        &self,
        zone: &dyn Fn(&str) -> Option<TimeZone>,
    ) -> Result<MaintenanceWindow, SpecError> {
        let tz = zone(&self.tz).ok_or_else(|| {
            fail(
                "tz",
                format!(
                    "{:?} is not a time zone in the tz database (expected an IANA name such as Europe/Berlin)",
                    self.tz
                ),
            )
        })?;
        let duration = parse_duration(&self.duration).map_err(|e| fail("duration", e))?;
        let start = self
            .start
            .as_deref()
            .map(|t| parse_time_of_day(t).map_err(|e| fail("start", e)))
            .transpose()?;
        let (schedule, start) = match (&self.rrule, &self.cron) {
            (Some(rule), None) => {
                let rule = RecurrenceRule::parse(rule).map_err(|e| fail("rrule", e))?;
                let start =
                    start.ok_or_else(|| fail("start", "HH:MM is required with an rrule"))?;
                let dtstart = self
                    .dtstart
                    .or(self.active_from)
                    .ok_or_else(|| fail("dtstart", "the rule's start date is required"))?;
                (Schedule::Rrule { rule, dtstart }, start)
            }
            (None, Some(expr)) => {
                let cron = CronSchedule::parse(expr).map_err(|e| fail("cron", e))?;
                let start = start.or(cron.time_of_day()).ok_or_else(|| {
                    fail(
                        "start",
                        format!("HH:MM is required: the cron expression \"{cron}\" has * for minute and hour"),
                    )
                })?;
                (Schedule::Cron(cron), start)
            }
            _ => return Err(fail("rrule", "give exactly one of rrule and cron")),
        };
        let mut window = MaintenanceWindow::new(schedule, start, duration, tz)
            .map_err(|e| fail("start", e))?
            .with_offset_days(self.offset_days)
            .map_err(|e| fail("offset_days", e))?;
        if let Some(cutoff) = &self.cutoff {
            let cutoff = parse_duration(cutoff).map_err(|e| fail("cutoff", e))?;
            window = window.with_cutoff(cutoff).map_err(|e| fail("cutoff", e))?;
        }
        window
            .with_active_range(self.active_from, self.active_until)
            .map_err(|e| fail("active_until", e))
    }
}

/// When a freeze holds, as written.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "kebab-case", deny_unknown_fields)]
pub enum FreezeRuleSpec {
    /// From one instant until another.
    Range {
        /// Start (RFC 3339).
        from: Timestamp,
        /// End (RFC 3339), after the start.
        until: Timestamp,
    },
    /// The last N business days of every month.
    LastBusinessDays {
        /// N, 1 to 20.
        days: u8,
        /// Dates that are not business days.
        #[serde(default)]
        holidays: Vec<Date>,
    },
    /// Every year from `MM-DD` to `MM-DD`, whole local days.
    Yearly {
        /// First day, `MM-DD`.
        from: String,
        /// Last day, `MM-DD`.
        until: String,
    },
    /// Every occurrence of a window-like rule.
    Recurring {
        /// The rule, as for a window (its zone is the freeze's).
        window: WindowSpec,
    },
}

/// A freeze as written: the rule and the zone its local days are read in (default `UTC`).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FreezeSpec {
    /// IANA zone for local days (`UTC` when left out).
    #[serde(default = "utc")]
    pub tz: String,
    /// The rule.
    pub rule: FreezeRuleSpec,
}

fn utc() -> String {
    "UTC".to_owned()
}

fn month_day(field: &str, text: &str) -> Result<(i8, i8), SpecError> {
    let bad = || fail(field, format!("{text:?} is not a month and day MM-DD"));
    let (month, day) = text.trim().split_once('-').ok_or_else(bad)?;
    Ok((
        month.parse().map_err(|_| bad())?,
        day.parse().map_err(|_| bad())?,
    ))
}

impl FreezeSpec {
    /// The freeze it defines, named `name`, for `scope`.
    pub fn build(
        &self,
        name: &str,
        scope: Scope,
        zone: &dyn Fn(&str) -> Option<TimeZone>,
    ) -> Result<Freeze, SpecError> {
        let tz = zone(&self.tz).ok_or_else(|| {
            fail(
                "tz",
                format!("{:?} is not a time zone in the tz database", self.tz),
            )
        })?;
        let rule = match &self.rule {
            FreezeRuleSpec::Range { from, until } => FreezeRule::Range(
                TimeRange::new(*from, *until)
                    .ok_or_else(|| fail("rule.until", format!("{until} is not after {from}")))?,
            ),
            FreezeRuleSpec::LastBusinessDays { days, holidays } => FreezeRule::LastBusinessDays {
                days: *days,
                holidays: holidays.iter().copied().collect(),
            },
            FreezeRuleSpec::Yearly { from, until } => FreezeRule::YearlyDates {
                from: month_day("rule.from", from)?,
                until: month_day("rule.until", until)?,
            },
            FreezeRuleSpec::Recurring { window } => {
                let window = window.build(zone).map_err(|e| SpecError {
                    field: format!("rule.window.{}", e.field),
                    message: e.message,
                })?;
                FreezeRule::Recurring(Box::new(window))
            }
        };
        Freeze::new(name, rule, tz, scope).map_err(|e| fail("rule", e))
    }
}

/// The longest a freeze exception may last: 31 days.
pub const MAX_EXCEPTION: SignedDuration = SignedDuration::from_hours(31 * 24);

#[cfg(test)]
mod tests {
    use super::*;

    fn zone(name: &str) -> Option<TimeZone> {
        (name == "UTC").then_some(TimeZone::UTC)
    }

    #[test]
    fn refusals_name_the_field() {
        let spec: WindowSpec = serde_json::from_value(serde_json::json!({
            "rrule": "FREQ=HOURLY", "dtstart": "2026-01-01", "start": "22:00",
            "duration": "4h", "tz": "UTC"
        }))
        .unwrap();
        let err = spec.build(&zone).unwrap_err();
        assert_eq!(err.field, "rrule");
        assert!(err.message.contains("HOURLY"), "{err}");
        let spec = WindowSpec {
            tz: "Mars/Olympus".into(),
            ..spec
        };
        assert_eq!(spec.build(&zone).unwrap_err().field, "tz");
        let spec: FreezeSpec = serde_json::from_value(serde_json::json!({
            "rule": {"kind": "yearly", "from": "02-30", "until": "03-01"}
        }))
        .unwrap();
        assert_eq!(
            spec.build("tax", Scope::Everything, &zone)
                .unwrap_err()
                .field,
            "rule"
        );
    }

    #[test]
    fn a_cron_window_and_a_range_freeze_build() {
        let spec: WindowSpec = serde_json::from_value(serde_json::json!({
            "cron": "0 22 * * *", "duration": "4h", "cutoff": "30m", "tz": "UTC"
        }))
        .unwrap();
        let window = spec.build(&zone).unwrap();
        assert_eq!(window.cutoff(), SignedDuration::from_mins(30));
        let spec: FreezeSpec = serde_json::from_value(serde_json::json!({
            "rule": {"kind": "range", "from": "2026-12-01T00:00:00Z", "until": "2026-12-08T00:00:00Z"}
        }))
        .unwrap();
        let freeze = spec.build("release", Scope::Everything, &zone).unwrap();
        assert!(freeze.covers("2026-12-02T00:00:00Z".parse().unwrap()));
    }
}
