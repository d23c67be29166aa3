//! Maintenance windows, freezes, freeze exceptions and schedule conflicts.

use jiff::Timestamp;
use serde::{Deserialize, Serialize};
use sluice_core::calendar::{FreezeSpec, WindowSpec};
use sluice_core::change::ScheduleConflict;

/// A window to create.
#[derive(Debug, Deserialize, Serialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(deny_unknown_fields)]
pub struct CreateWindow {
    /// Unique name: letters, digits, `.`, `_`, `-`.
    pub name: String,
    /// The hosts it applies to, as a CMDB selector (`group=web`); empty or left out: every host.
    #[serde(default)]
    pub scope: String,
    /// `{rrule | cron, dtstart?, start, duration, cutoff?, tz, offset_days?, active_from?,
    /// active_until?}` (docs/calendar.md).
    #[cfg_attr(feature = "openapi", schema(value_type = Object))]
    pub definition: WindowSpec,
}

/// A freeze to create.
#[derive(Debug, Deserialize, Serialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(deny_unknown_fields)]
pub struct CreateFreeze {
    /// Unique name: letters, digits, `.`, `_`, `-`.
    pub name: String,
    /// The hosts it holds for, as a CMDB selector; empty or left out: every host.
    #[serde(default)]
    pub scope: String,
    /// `{tz?, rule: {kind: range, from, until} | {kind: last-business-days, days, holidays?} |
    /// {kind: yearly, from: "MM-DD", until: "MM-DD"} | {kind: recurring, window: {...}}}`.
    #[cfg_attr(feature = "openapi", schema(value_type = Object))]
    pub definition: FreezeSpec,
}

/// A request to work inside a freeze.
#[derive(Debug, Deserialize, Serialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(deny_unknown_fields)]
pub struct RequestException {
    /// The hosts, as a CMDB selector; empty or left out: every host the freeze holds for.
    #[serde(default)]
    pub scope: String,
    /// Start of the time to lift (RFC 3339).
    #[cfg_attr(feature = "openapi", schema(value_type = String))]
    pub from: Timestamp,
    /// End of the time to lift (RFC 3339), at most 31 days after `from`.
    #[cfg_attr(feature = "openapi", schema(value_type = String))]
    pub until: Timestamp,
    /// Why the work cannot wait.
    pub justification: String,
}

/// What the calendar would say if the change were scheduled.
#[derive(Debug, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct ConflictPreview {
    /// The change.
    pub id: String,
    /// Start checked.
    #[cfg_attr(feature = "openapi", schema(value_type = String))]
    pub start: Timestamp,
    /// End checked.
    #[cfg_attr(feature = "openapi", schema(value_type = String))]
    pub end: Timestamp,
    /// Conflicts; those without an exception would block scheduling.
    #[cfg_attr(feature = "openapi", schema(value_type = Vec<Object>))]
    pub conflicts: Vec<ScheduleConflict>,
    /// Whether scheduling would be refused for them.
    pub blocked: bool,
}

/// What a delete answers: the name of what is gone.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct Deleted {
    /// The name deleted.
    pub deleted: String,
}

/// A maintenance window as stored and listed.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct WindowRecord {
    /// Unique name.
    pub name: String,
    /// The hosts it applies to: a CMDB selector (`group=web`); empty means every host.
    pub scope: String,
    /// The definition as written.
    #[cfg_attr(feature = "openapi", schema(value_type = Object))]
    pub definition: WindowSpec,
    /// Who created it.
    pub created_by: String,
    /// When.
    #[cfg_attr(feature = "openapi", schema(value_type = String))]
    pub created_at: Timestamp,
}

/// A freeze as stored and listed.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct FreezeRecord {
    /// Unique name.
    pub name: String,
    /// The hosts it holds for: a CMDB selector; empty means every host.
    pub scope: String,
    /// The definition as written.
    #[cfg_attr(feature = "openapi", schema(value_type = Object))]
    pub definition: FreezeSpec,
    /// Who created it.
    pub created_by: String,
    /// When.
    #[cfg_attr(feature = "openapi", schema(value_type = String))]
    pub created_at: Timestamp,
}

/// A request to work inside a freeze, as stored and listed.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct FreezeExceptionRecord {
    /// `FEX-<n>`.
    pub id: String,
    /// The freeze it lifts, by name.
    pub freeze: String,
    /// The hosts it lifts the freeze for: a CMDB selector; empty means every host the freeze
    /// holds for.
    pub scope: String,
    /// Start of the lifted time.
    #[cfg_attr(feature = "openapi", schema(value_type = String))]
    pub from: Timestamp,
    /// End of the lifted time.
    #[cfg_attr(feature = "openapi", schema(value_type = String))]
    pub until: Timestamp,
    /// Why the work cannot wait.
    pub justification: String,
    /// Who asked.
    pub requested_by: String,
    /// When.
    #[cfg_attr(feature = "openapi", schema(value_type = String))]
    pub requested_at: Timestamp,
    /// `requested`, `approved` or `rejected`.
    pub state: String,
    /// Who decided.
    pub decided_by: Option<String>,
    /// When.
    #[cfg_attr(feature = "openapi", schema(value_type = Option<String>))]
    pub decided_at: Option<Timestamp>,
}
