//! Change governance: change requests, their state machine, the CAB policy that approves them,
//! risk assessment, peer review, and their ServiceNow and Jira shapes.
//!
//! This module owns the decisions; it never stores, sends or reads the clock. The server builds
//! a [`ChangeRequest`] from checked input, computes its [`Assessment`] from the CMDB with
//! [`assess`], asks [`transition`] whether an actor may take an [`Action`] now, applies the
//! returned [`Transition`] with [`ChangeRequest::apply`] and audits it in the same database
//! transaction. A periodic task asks [`escalation_due`] and records what it returns. Calendar
//! conflicts (freezes, maintenance windows) are the calendar module's; the `schedule` action
//! takes its verdict as [`ScheduleConflict`]s. `docs/change.md` describes the whole.

pub mod cab;
pub mod itsm;
pub mod model;
pub mod risk;
pub mod scope;
pub mod state;

pub use cab::{
    AllowedTypes, ApprovalRule, CabPolicy, CabPolicyError, DEFAULT_CAB_POLICY_TOML, Escalation,
    QuorumStatus, RetrospectiveStatus, eligible_groups, escalation_due, evaluate_votes,
    retrospective_status,
};
pub use model::{
    Assessment, BundleItem, BundleSource, ChangeError, ChangeOrigin, ChangeRequest, ChangeType,
    FixCandidate, NewChange, Pin, Plan, ResolvedBundle, RollbackCriteria, Schedule, UpdateClass,
    Vote, VoteDecision, resolve_bundle,
};
pub use risk::{History, RiskAssessment, RiskInputs, RiskLevel};
pub use scope::{PeerReviewNeed, ScopeFacts, assess};
pub use state::{
    Action, ActionKind, ChangeState, Effect, Refusal, RefusalKind, ScheduleConflict, TRANSITIONS,
    Transition, transition,
};

/// Durations written the way people write them (`48h`, `2h 30m`) in policies, plans and JSON.
pub mod friendly_duration {
    use jiff::SignedDuration;
    use serde::{Deserialize, Deserializer, Serializer};

    /// Serde helper.
    pub fn serialize<S: Serializer>(
        duration: &SignedDuration,
        serializer: S,
    ) -> Result<S::Ok, S::Error> {
        serializer.collect_str(&format_args!("{duration:#}"))
    }

    /// Serde helper.
    pub fn deserialize<'de, D: Deserializer<'de>>(
        deserializer: D,
    ) -> Result<SignedDuration, D::Error> {
        let text = String::deserialize(deserializer)?;
        text.parse().map_err(|err| {
            serde::de::Error::custom(format!(
                "{text:?} is not a duration such as 48h, 90m or 2h 30m ({err})"
            ))
        })
    }
}
