//! The change request's state machine: its states, the actions people take, the one table of
//! allowed transitions ([`TRANSITIONS`]), and [`transition`], which decides whether an actor may
//! take an action on a change now, and what follows.
//!
//! `transition` never changes anything: it returns a [`Transition`] (from, to, effects) or a
//! [`Refusal`] with a reason for the person. The server applies the transition with
//! [`ChangeRequest::apply`] and appends the audit event in the same database transaction. The
//! diagram and table in `docs/change.md` are generated from [`TRANSITIONS`] and a test keeps them
//! equal.

use std::collections::BTreeSet;
use std::fmt;

use jiff::Timestamp;
use serde::{Deserialize, Serialize};

use super::cab::{ApprovalRule, CabPolicy, QuorumStatus, eligible_groups, evaluate_votes};
use super::model::{
    ChangeError, ChangeRequest, ChangeType, PostImplementationReview, ReviewOutcome, Schedule,
    SignOff, StateChange, Vote, VoteDecision,
};
use crate::access::{Actor, Role};

/// Where a change is in its life.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum ChangeState {
    /// Being written; the only state in which content can be edited.
    Draft,
    /// Frozen for review; peers sign off the plan here.
    Submitted,
    /// The CAB (or e-CAB) is voting.
    InReview,
    /// Approved; waits for a schedule (an emergency change may start at once).
    Approved,
    /// Has an implementation window.
    Scheduled,
    /// The rollout is running.
    Implementing,
    /// Implemented.
    Completed,
    /// Implementation failed.
    Failed,
    /// Implementation was rolled back.
    RolledBack,
    /// Post-implementation review recorded.
    Reviewed,
    /// Done.
    Closed,
    /// Refused by the CAB.
    Rejected,
    /// Withdrawn before implementation.
    Cancelled,
}

impl ChangeState {
    /// Every state, in life order.
    pub const ALL: [ChangeState; 13] = [
        Self::Draft,
        Self::Submitted,
        Self::InReview,
        Self::Approved,
        Self::Scheduled,
        Self::Implementing,
        Self::Completed,
        Self::Failed,
        Self::RolledBack,
        Self::Reviewed,
        Self::Closed,
        Self::Rejected,
        Self::Cancelled,
    ];

    /// The name used in JSON and messages.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Draft => "draft",
            Self::Submitted => "submitted",
            Self::InReview => "in-review",
            Self::Approved => "approved",
            Self::Scheduled => "scheduled",
            Self::Implementing => "implementing",
            Self::Completed => "completed",
            Self::Failed => "failed",
            Self::RolledBack => "rolled-back",
            Self::Reviewed => "reviewed",
            Self::Closed => "closed",
            Self::Rejected => "rejected",
            Self::Cancelled => "cancelled",
        }
    }

    /// Before implementation: the states a change can be cancelled from.
    pub fn is_open(self) -> bool {
        matches!(
            self,
            Self::Draft | Self::Submitted | Self::InReview | Self::Approved | Self::Scheduled
        )
    }

    /// No action leaves it.
    pub fn is_final(self) -> bool {
        matches!(self, Self::Closed | Self::Rejected | Self::Cancelled)
    }
}

impl fmt::Display for ChangeState {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// An action's name, without its data: what the transition table is keyed by.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum ActionKind {
    /// Freeze the draft and send it on.
    Submit,
    /// A peer signs off the implementation plan.
    SignOffPlan,
    /// Start CAB (or e-CAB) review.
    StartReview,
    /// Send back to draft for edits.
    Revise,
    /// Vote for.
    Approve,
    /// Vote against (in review) or refuse at triage (submitted).
    Reject,
    /// Set the implementation window.
    Schedule,
    /// Start the rollout.
    StartImplementation,
    /// The rollout finished.
    Complete,
    /// The rollout failed.
    Fail,
    /// The rollout was rolled back.
    RollBack,
    /// Record the post-implementation (retrospective) review.
    Review,
    /// Close.
    Close,
    /// Withdraw.
    Cancel,
}

impl ActionKind {
    /// Every action, in life order.
    pub const ALL: [ActionKind; 14] = [
        Self::Submit,
        Self::SignOffPlan,
        Self::StartReview,
        Self::Revise,
        Self::Approve,
        Self::Reject,
        Self::Schedule,
        Self::StartImplementation,
        Self::Complete,
        Self::Fail,
        Self::RollBack,
        Self::Review,
        Self::Close,
        Self::Cancel,
    ];

    /// The name used in JSON, audit events (`change.<name>`) and messages.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Submit => "submit",
            Self::SignOffPlan => "sign-off-plan",
            Self::StartReview => "start-review",
            Self::Revise => "revise",
            Self::Approve => "approve",
            Self::Reject => "reject",
            Self::Schedule => "schedule",
            Self::StartImplementation => "start-implementation",
            Self::Complete => "complete",
            Self::Fail => "fail",
            Self::RollBack => "roll-back",
            Self::Review => "review",
            Self::Close => "close",
            Self::Cancel => "cancel",
        }
    }
}

impl fmt::Display for ActionKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A conflict the calendar found with a proposed window (a freeze, no maintenance window).
///
/// The calendar module computes these; the state machine only refuses a window with a conflict
/// that no approved freeze exception covers.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ScheduleConflict {
    /// What conflicts, for people (`freeze "month-end" 2026-11-28..2026-12-02`).
    pub description: String,
    /// The approved freeze exception that allows it, if any.
    #[serde(default)]
    pub exception: Option<String>,
}

/// An action with its data: the request body of `POST /changes/{id}/actions`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(tag = "action", rename_all = "kebab-case", deny_unknown_fields)]
pub enum Action {
    /// Freeze the draft and send it on.
    Submit,
    /// Sign off the implementation plan.
    SignOffPlan {
        /// Remarks.
        #[serde(default)]
        comment: Option<String>,
    },
    /// Start CAB review.
    StartReview,
    /// Back to draft.
    Revise {
        /// Why.
        reason: String,
    },
    /// Vote for.
    Approve {
        /// Remarks.
        #[serde(default)]
        comment: Option<String>,
    },
    /// Vote against, or refuse at triage.
    Reject {
        /// Why.
        reason: String,
    },
    /// Set the implementation window.
    Schedule {
        /// The window.
        window: Schedule,
        /// The calendar's verdict on the window; filled in by the server, never read from a
        /// request.
        #[serde(skip)]
        conflicts: Vec<ScheduleConflict>,
    },
    /// Start the rollout.
    StartImplementation,
    /// The rollout finished.
    Complete,
    /// The rollout failed.
    Fail {
        /// What went wrong.
        reason: String,
    },
    /// The rollout was rolled back.
    RollBack {
        /// Which criterion tripped.
        reason: String,
    },
    /// Record the post-implementation review.
    Review {
        /// The verdict.
        outcome: ReviewOutcome,
        /// Findings.
        notes: String,
    },
    /// Close.
    Close,
    /// Withdraw.
    Cancel {
        /// Why.
        reason: String,
    },
}

impl Action {
    /// The action's name.
    pub fn kind(&self) -> ActionKind {
        match self {
            Self::Submit => ActionKind::Submit,
            Self::SignOffPlan { .. } => ActionKind::SignOffPlan,
            Self::StartReview => ActionKind::StartReview,
            Self::Revise { .. } => ActionKind::Revise,
            Self::Approve { .. } => ActionKind::Approve,
            Self::Reject { .. } => ActionKind::Reject,
            Self::Schedule { .. } => ActionKind::Schedule,
            Self::StartImplementation => ActionKind::StartImplementation,
            Self::Complete => ActionKind::Complete,
            Self::Fail { .. } => ActionKind::Fail,
            Self::RollBack { .. } => ActionKind::RollBack,
            Self::Review { .. } => ActionKind::Review,
            Self::Close => ActionKind::Close,
            Self::Cancel { .. } => ActionKind::Cancel,
        }
    }
}

/// One row of the transition table.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Edge {
    /// The states it leaves from.
    pub from: &'static [ChangeState],
    /// The action.
    pub action: ActionKind,
    /// The state it leads to.
    pub to: ChangeState,
    /// The change types it applies to.
    pub types: &'static [ChangeType],
    /// Roles allowed to take it (any of them).
    pub roles: &'static [Role],
    /// Who, in words, including separation-of-duty rules beyond the roles.
    pub who: &'static str,
    /// What is checked beyond the state.
    pub checks: &'static str,
}

const ALL_TYPES: &[ChangeType] = &ChangeType::ALL;
const CAB_TYPES: &[ChangeType] = &[ChangeType::Normal, ChangeType::Emergency];
const OPERATOR: &[Role] = &[Role::Operator];
const APPROVER: &[Role] = &[Role::Approver];
const OPERATOR_OR_APPROVER: &[Role] = &[Role::Operator, Role::Approver];

/// Every allowed transition. An action from a state with no row here is refused with a reason;
/// where two rows share state and action, the checks decide which target is reached.
pub const TRANSITIONS: &[Edge] = &[
    Edge {
        from: &[ChangeState::Draft],
        action: ActionKind::Submit,
        to: ChangeState::Submitted,
        types: CAB_TYPES,
        roles: OPERATOR,
        who: "operator",
        checks: "bundle, update types, plan steps and verification written; risk assessed; the change type is allowed for its update types",
    },
    Edge {
        from: &[ChangeState::Draft],
        action: ActionKind::Submit,
        to: ChangeState::Approved,
        types: &[ChangeType::Standard],
        roles: OPERATOR,
        who: "operator",
        checks: "as for any submission, plus: the named template exists, covers every package and update type, and allows the assessed risk (pre-approved, no CAB)",
    },
    Edge {
        from: &[ChangeState::Submitted],
        action: ActionKind::SignOffPlan,
        to: ChangeState::Submitted,
        types: CAB_TYPES,
        roles: OPERATOR_OR_APPROVER,
        who: "operator or approver other than the requester",
        checks: "one sign-off per person",
    },
    Edge {
        from: &[ChangeState::Submitted],
        action: ActionKind::StartReview,
        to: ChangeState::InReview,
        types: CAB_TYPES,
        roles: OPERATOR_OR_APPROVER,
        who: "operator or approver",
        checks: "peer sign-off recorded when the scope needs one (emergency: exempt by default); adopts the approval rule for type × risk and notifies its groups",
    },
    Edge {
        from: &[ChangeState::Submitted, ChangeState::InReview],
        action: ActionKind::Revise,
        to: ChangeState::Draft,
        types: CAB_TYPES,
        roles: OPERATOR_OR_APPROVER,
        who: "the requester, or an approver",
        checks: "reason given; sign-offs, votes, escalations and the adopted rule are cleared",
    },
    Edge {
        from: &[ChangeState::Submitted],
        action: ActionKind::Reject,
        to: ChangeState::Rejected,
        types: CAB_TYPES,
        roles: APPROVER,
        who: "approver other than the requester (triage)",
        checks: "reason given",
    },
    Edge {
        from: &[ChangeState::InReview],
        action: ActionKind::Approve,
        to: ChangeState::InReview,
        types: CAB_TYPES,
        roles: APPROVER,
        who: "approver in an eligible group, not the requester, first vote",
        checks: "vote recorded; quorum not met yet",
    },
    Edge {
        from: &[ChangeState::InReview],
        action: ActionKind::Approve,
        to: ChangeState::Approved,
        types: CAB_TYPES,
        roles: APPROVER,
        who: "approver in an eligible group, not the requester, first vote",
        checks: "quorum met: k approvals and every group's minimum; emergency: the retrospective deadline is set",
    },
    Edge {
        from: &[ChangeState::InReview],
        action: ActionKind::Reject,
        to: ChangeState::Rejected,
        types: CAB_TYPES,
        roles: APPROVER,
        who: "approver in an eligible group, not the requester, first vote",
        checks: "reason given; one eligible reject rejects",
    },
    Edge {
        from: &[ChangeState::Approved, ChangeState::Scheduled],
        action: ActionKind::Schedule,
        to: ChangeState::Scheduled,
        types: ALL_TYPES,
        roles: OPERATOR,
        who: "operator",
        checks: "end after start and after now; no calendar conflict (outside a window, a freeze, another change on the same host) unless an approved exception lifts it",
    },
    Edge {
        from: &[ChangeState::Approved],
        action: ActionKind::StartImplementation,
        to: ChangeState::Implementing,
        types: &[ChangeType::Emergency],
        roles: OPERATOR,
        who: "operator",
        checks: "none: an emergency change may start as soon as the e-CAB approves",
    },
    Edge {
        from: &[ChangeState::Scheduled],
        action: ActionKind::StartImplementation,
        to: ChangeState::Implementing,
        types: ALL_TYPES,
        roles: OPERATOR,
        who: "operator",
        checks: "now inside the scheduled window (emergency: any time)",
    },
    Edge {
        from: &[ChangeState::Implementing],
        action: ActionKind::Complete,
        to: ChangeState::Completed,
        types: ALL_TYPES,
        roles: OPERATOR,
        who: "operator (or the rollout engine as `system`)",
        checks: "none",
    },
    Edge {
        from: &[ChangeState::Implementing],
        action: ActionKind::Fail,
        to: ChangeState::Failed,
        types: ALL_TYPES,
        roles: OPERATOR,
        who: "operator (or the rollout engine as `system`)",
        checks: "reason given",
    },
    Edge {
        from: &[ChangeState::Implementing],
        action: ActionKind::RollBack,
        to: ChangeState::RolledBack,
        types: ALL_TYPES,
        roles: OPERATOR,
        who: "operator (or the rollout engine as `system`)",
        checks: "reason given",
    },
    Edge {
        from: &[
            ChangeState::Completed,
            ChangeState::Failed,
            ChangeState::RolledBack,
        ],
        action: ActionKind::Review,
        to: ChangeState::Reviewed,
        types: ALL_TYPES,
        roles: APPROVER,
        who: "approver other than the requester; emergency: a member of the full CAB for its risk",
        checks: "notes written",
    },
    Edge {
        from: &[ChangeState::Reviewed],
        action: ActionKind::Close,
        to: ChangeState::Closed,
        types: ALL_TYPES,
        roles: OPERATOR_OR_APPROVER,
        who: "operator or approver",
        checks: "none",
    },
    Edge {
        from: &[
            ChangeState::Draft,
            ChangeState::Submitted,
            ChangeState::InReview,
            ChangeState::Approved,
            ChangeState::Scheduled,
        ],
        action: ActionKind::Cancel,
        to: ChangeState::Cancelled,
        types: ALL_TYPES,
        roles: OPERATOR_OR_APPROVER,
        who: "the requester, or an approver",
        checks: "reason given",
    },
];

/// Why an action was refused.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum RefusalKind {
    /// Not now: the state, the policy or the record says no (HTTP 409).
    Conflict,
    /// Not you: the actor lacks the role, the group, or is the requester (HTTP 403).
    Forbidden,
    /// Not like that: the action's data is wrong (HTTP 422).
    Invalid,
}

/// A refused action, with the reason to show the person.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, thiserror::Error)]
#[error("{reason}")]
pub struct Refusal {
    /// Which kind of refusal.
    pub kind: RefusalKind,
    /// Why, in a sentence.
    pub reason: String,
}

impl Refusal {
    fn conflict(reason: impl Into<String>) -> Self {
        Self {
            kind: RefusalKind::Conflict,
            reason: reason.into(),
        }
    }

    fn forbidden(reason: impl Into<String>) -> Self {
        Self {
            kind: RefusalKind::Forbidden,
            reason: reason.into(),
        }
    }

    fn invalid(reason: impl Into<String>) -> Self {
        Self {
            kind: RefusalKind::Invalid,
            reason: reason.into(),
        }
    }

    /// The HTTP status for the refusal: 409, 403 or 422.
    pub fn http_status(&self) -> u16 {
        match self.kind {
            RefusalKind::Conflict => 409,
            RefusalKind::Forbidden => 403,
            RefusalKind::Invalid => 422,
        }
    }
}

/// Something the server must do (or record) when it applies a transition.
/// [`ChangeRequest::apply`] performs the record-keeping ones; the rest are for the server.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(tag = "effect", rename_all = "kebab-case")]
pub enum Effect {
    /// The policy version the change was judged by.
    RecordPolicyVersion {
        /// The version.
        version: u32,
    },
    /// The approval rule adopted for CAB review.
    AdoptApprovalRule {
        /// The rule.
        rule: ApprovalRule,
    },
    /// A peer's sign-off.
    RecordSignOff {
        /// The sign-off.
        sign_off: SignOff,
    },
    /// Sign-offs, votes, escalations and the adopted rule are dropped (back to draft).
    ClearReview,
    /// A vote.
    RecordVote {
        /// The vote.
        vote: Vote,
    },
    /// Approved by a standard template, without the CAB.
    PreApproved {
        /// The template id.
        template: String,
    },
    /// The retrospective review's deadline (emergency changes).
    SetRetrospectiveDue {
        /// The deadline.
        by: Timestamp,
    },
    /// The implementation window.
    SetSchedule {
        /// The window.
        window: Schedule,
        /// Freeze exceptions that allow it.
        exceptions: Vec<String>,
    },
    /// The post-implementation review.
    RecordReview {
        /// The review.
        review: PostImplementationReview,
    },
    /// The server notifies these groups and users.
    Notify {
        /// Groups.
        groups: Vec<String>,
        /// Users.
        users: Vec<String>,
        /// What to tell them.
        message: String,
    },
}

/// An allowed transition, ready to apply and audit.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Transition {
    /// The change's id.
    pub change: String,
    /// The state it leaves.
    pub from: ChangeState,
    /// The state it enters (equal to `from` for votes and sign-offs that do not move it).
    pub to: ChangeState,
    /// The action.
    pub action: ActionKind,
    /// Who.
    pub actor: String,
    /// When.
    pub at: Timestamp,
    /// The reason given with the action (reject, revise, fail, roll back, cancel).
    pub reason: Option<String>,
    /// What follows.
    pub effects: Vec<Effect>,
    /// For votes: where the vote stands after this one.
    pub quorum: Option<QuorumStatus>,
}

impl Transition {
    /// The audit event's action (`change.submit`, `change.approve`, …).
    pub fn audit_action(&self) -> String {
        format!("change.{}", self.action)
    }
}

/// Decides whether `actor` may take `action` on `change` at `now` under `policy`.
///
/// Refusals come in a fixed order: an action the state does not allow (409), one the actor's
/// roles do not allow (403), then the action's own checks (409, 403 or 422).
pub fn transition(
    change: &ChangeRequest,
    action: &Action,
    actor: &Actor,
    policy: &CabPolicy,
    now: Timestamp,
) -> Result<Transition, Refusal> {
    let kind = action.kind();
    let from_state: Vec<&Edge> = TRANSITIONS
        .iter()
        .filter(|e| e.action == kind && e.from.contains(&change.state))
        .collect();
    if from_state.is_empty() {
        return Err(Refusal::conflict(not_from_state(change, kind)));
    }
    let edges: Vec<&Edge> = from_state
        .iter()
        .copied()
        .filter(|e| e.types.contains(&change.kind))
        .collect();
    let Some(first) = edges.first() else {
        return Err(Refusal::conflict(format!(
            "cannot {kind} change {}: {kind} does not apply to {} changes while {}",
            change.id, change.kind, change.state
        )));
    };
    if !actor.has_any(first.roles) {
        return Err(Refusal::forbidden(format!(
            "{kind} needs the role {}; {} has {}",
            roles_text(first.roles),
            actor.user,
            actor.roles_text()
        )));
    }
    let decided = decide(change, action, actor, policy, now)?;
    if !edges.iter().any(|e| e.to == decided.to) {
        return Err(Refusal::conflict(format!(
            "cannot {kind} change {}: no transition leads from {} to {}",
            change.id, change.state, decided.to
        )));
    }
    Ok(Transition {
        change: change.id.clone(),
        from: change.state,
        to: decided.to,
        action: kind,
        actor: actor.user.clone(),
        at: now,
        reason: decided.reason,
        effects: decided.effects,
        quorum: decided.quorum,
    })
}

struct Decision {
    to: ChangeState,
    effects: Vec<Effect>,
    reason: Option<String>,
    quorum: Option<QuorumStatus>,
}

impl Decision {
    fn to(to: ChangeState) -> Self {
        Self {
            to,
            effects: Vec::new(),
            reason: None,
            quorum: None,
        }
    }

    fn effect(mut self, effect: Effect) -> Self {
        self.effects.push(effect);
        self
    }

    fn because(mut self, reason: &str) -> Self {
        self.reason = Some(reason.trim().to_owned());
        self
    }
}

fn decide(
    change: &ChangeRequest,
    action: &Action,
    actor: &Actor,
    policy: &CabPolicy,
    now: Timestamp,
) -> Result<Decision, Refusal> {
    let id = &change.id;
    let is_requester = actor.user == change.requester;
    match action {
        Action::Submit => submit(change, policy),
        Action::SignOffPlan { comment } => {
            if is_requester {
                return Err(Refusal::forbidden(format!(
                    "{} wrote change {id}'s plan and cannot sign it off; another person must",
                    actor.user
                )));
            }
            if change.sign_offs.iter().any(|s| s.by == actor.user) {
                return Err(Refusal::conflict(format!(
                    "{} has already signed off change {id}'s plan",
                    actor.user
                )));
            }
            Ok(
                Decision::to(ChangeState::Submitted).effect(Effect::RecordSignOff {
                    sign_off: SignOff {
                        by: actor.user.clone(),
                        at: now,
                        comment: comment.clone(),
                    },
                }),
            )
        }
        Action::StartReview => start_review(change, policy),
        Action::Revise { reason } => {
            require_requester_or_approver(change, actor, "send back to draft")?;
            let reason = required_text(reason, "a reason for revising")?;
            Ok(Decision::to(ChangeState::Draft)
                .effect(Effect::ClearReview)
                .because(reason))
        }
        Action::Approve { comment } => vote(
            change,
            actor,
            VoteDecision::Approve,
            comment.clone(),
            policy,
            now,
        ),
        Action::Reject { reason } => {
            let reason = required_text(reason, "a reason for rejecting")?;
            if change.state == ChangeState::Submitted {
                if is_requester {
                    return Err(Refusal::forbidden(format!(
                        "{} requested change {id} and cannot reject it; cancel it instead",
                        actor.user
                    )));
                }
                return Ok(Decision::to(ChangeState::Rejected)
                    .effect(notify_requester(
                        change,
                        &format!("rejected at triage: {reason}"),
                    ))
                    .because(reason));
            }
            vote(
                change,
                actor,
                VoteDecision::Reject,
                Some(reason.to_owned()),
                policy,
                now,
            )
            .map(|d| d.because(reason))
        }
        Action::Schedule { window, conflicts } => {
            if window.end <= window.start {
                return Err(Refusal::invalid(format!(
                    "the window ends ({}) before it starts ({})",
                    window.end, window.start
                )));
            }
            if window.end <= now {
                return Err(Refusal::invalid(format!(
                    "the window ended at {}, before now ({now})",
                    window.end
                )));
            }
            let blocking: Vec<&str> = conflicts
                .iter()
                .filter(|c| c.exception.is_none())
                .map(|c| c.description.as_str())
                .collect();
            if !blocking.is_empty() {
                return Err(Refusal::conflict(format!(
                    "cannot schedule change {id} from {} to {}: {}; an approved freeze exception is needed",
                    window.start,
                    window.end,
                    blocking.join("; ")
                )));
            }
            Ok(
                Decision::to(ChangeState::Scheduled).effect(Effect::SetSchedule {
                    window: *window,
                    exceptions: conflicts
                        .iter()
                        .filter_map(|c| c.exception.clone())
                        .collect(),
                }),
            )
        }
        Action::StartImplementation => {
            if change.kind != ChangeType::Emergency {
                let Some(window) = change.schedule else {
                    return Err(Refusal::conflict(format!(
                        "change {id} has no schedule; schedule it first"
                    )));
                };
                if now < window.start {
                    return Err(Refusal::conflict(format!(
                        "change {id}'s window opens at {}; it is {now}",
                        window.start
                    )));
                }
                if now >= window.end {
                    return Err(Refusal::conflict(format!(
                        "change {id}'s window closed at {}; schedule it again",
                        window.end
                    )));
                }
            }
            // Starting carries no effect: the rollout service starts the change itself, as its
            // own first step, so there is nothing left for the server to do here.
            Ok(Decision::to(ChangeState::Implementing))
        }
        Action::Complete => Ok(Decision::to(ChangeState::Completed)),
        Action::Fail { reason } => {
            let reason = required_text(reason, "what failed")?;
            Ok(Decision::to(ChangeState::Failed).because(reason))
        }
        Action::RollBack { reason } => {
            let reason = required_text(reason, "which rollback criterion tripped")?;
            Ok(Decision::to(ChangeState::RolledBack).because(reason))
        }
        Action::Review { outcome, notes } => {
            if is_requester {
                return Err(Refusal::forbidden(format!(
                    "{} requested change {id} and cannot review it",
                    actor.user
                )));
            }
            let notes = required_text(notes, "review notes")?;
            if change.kind == ChangeType::Emergency {
                let risk = change.risk().unwrap_or(super::RiskLevel::VeryHigh);
                let cab = policy
                    .approval_rule(ChangeType::Normal, risk)
                    .map(|r| r.groups)
                    .unwrap_or_default();
                if !cab.iter().any(|g| actor.groups.contains(g)) {
                    return Err(Refusal::forbidden(format!(
                        "the retrospective review of emergency change {id} is for the full CAB ({}); {} is in none of those groups",
                        cab.join(", "),
                        actor.user
                    )));
                }
            }
            Ok(
                Decision::to(ChangeState::Reviewed).effect(Effect::RecordReview {
                    review: PostImplementationReview {
                        by: actor.user.clone(),
                        at: now,
                        outcome: *outcome,
                        notes: notes.to_owned(),
                    },
                }),
            )
        }
        Action::Close => Ok(Decision::to(ChangeState::Closed)),
        Action::Cancel { reason } => {
            require_requester_or_approver(change, actor, "cancel")?;
            let reason = required_text(reason, "a reason for cancelling")?;
            Ok(Decision::to(ChangeState::Cancelled).because(reason))
        }
    }
}

fn submit(change: &ChangeRequest, policy: &CabPolicy) -> Result<Decision, Refusal> {
    let mut problems = Vec::new();
    if change.bundle.is_empty() {
        problems.push("the bundle is empty".to_owned());
    }
    if change.update_types.is_empty() {
        problems.push("no update type is named".to_owned());
    }
    problems.extend(change.plan.incomplete());
    if change.assessment.is_none() {
        problems.push("the risk has not been assessed".to_owned());
    }
    if !change.update_types.is_empty() {
        let allowed = policy.allowed_change_types(&change.update_types, change.kev());
        if !allowed.types.contains(&change.kind) {
            problems.push(format!(
                "a {} change is not allowed for these updates ({})",
                change.kind,
                allowed.reasons.join("; ")
            ));
        }
    }
    let template = match (change.kind, &change.template) {
        (ChangeType::Standard, None) => {
            problems.push("a standard change must name its template".to_owned());
            None
        }
        (ChangeType::Standard, Some(id)) => match policy.template(id) {
            Some(template) => {
                if change.assessment.is_some() {
                    problems.extend(template.misfits(change));
                }
                Some(template)
            }
            None => {
                problems.push(format!(
                    "no standard template {id:?} in policy version {}",
                    policy.version
                ));
                None
            }
        },
        _ => None,
    };
    if !problems.is_empty() {
        return Err(Refusal::conflict(format!(
            "cannot submit change {}: {}",
            change.id,
            problems.join("; ")
        )));
    }
    let recorded = Effect::RecordPolicyVersion {
        version: policy.version,
    };
    match template {
        Some(template) => Ok(Decision::to(ChangeState::Approved)
            .effect(recorded)
            .effect(Effect::PreApproved {
                template: template.id.clone(),
            })
            .effect(notify_requester(
                change,
                &format!("pre-approved by standard template {}", template.id),
            ))),
        None => Ok(Decision::to(ChangeState::Submitted).effect(recorded)),
    }
}

fn start_review(change: &ChangeRequest, policy: &CabPolicy) -> Result<Decision, Refusal> {
    let id = &change.id;
    let Some(assessment) = &change.assessment else {
        return Err(Refusal::conflict(format!(
            "change {id} has no risk assessment"
        )));
    };
    let exempt = change.kind == ChangeType::Emergency && policy.peer_review.emergency_exempt;
    let signed = change.sign_offs.iter().any(|s| s.by != change.requester);
    if assessment.peer_review.required && !exempt && !signed {
        return Err(Refusal::conflict(format!(
            "change {id} needs a peer's sign-off of its plan before CAB review ({}); nobody other than {} has signed off",
            assessment.peer_review.reasons.join("; "),
            change.requester
        )));
    }
    let Some(rule) = policy.approval_rule(change.kind, assessment.risk.level) else {
        return Err(Refusal::conflict(format!(
            "no approval rule for {} changes: they are approved by their template",
            change.kind
        )));
    };
    let message = format!(
        "change {id} ({} change, {} risk) awaits your vote: {}",
        change.kind, assessment.risk.level, change.title
    );
    Ok(Decision::to(ChangeState::InReview)
        .effect(Effect::RecordPolicyVersion {
            version: policy.version,
        })
        .effect(Effect::Notify {
            groups: rule.groups.clone(),
            users: Vec::new(),
            message,
        })
        .effect(Effect::AdoptApprovalRule { rule }))
}

fn vote(
    change: &ChangeRequest,
    actor: &Actor,
    decision: VoteDecision,
    comment: Option<String>,
    policy: &CabPolicy,
    now: Timestamp,
) -> Result<Decision, Refusal> {
    let id = &change.id;
    if actor.user == change.requester {
        return Err(Refusal::forbidden(format!(
            "{} requested change {id}; the requester never votes on their own change",
            actor.user
        )));
    }
    if let Some(earlier) = change.votes.iter().find(|v| v.voter == actor.user) {
        return Err(Refusal::conflict(format!(
            "{} already voted on change {id} at {}; one person, one vote",
            actor.user, earlier.at
        )));
    }
    let eligible = eligible_groups(change, now);
    let groups: BTreeSet<String> = eligible
        .iter()
        .filter(|g| actor.groups.contains(*g))
        .cloned()
        .collect();
    if groups.is_empty() {
        return Err(Refusal::forbidden(format!(
            "{} is not in an approver group for change {id} ({})",
            actor.user,
            eligible.join(", ")
        )));
    }
    let vote = Vote {
        voter: actor.user.clone(),
        groups,
        decision,
        at: now,
        comment,
    };
    let mut votes = change.votes.clone();
    votes.push(vote.clone());
    let status = evaluate_votes(change, &votes, now);
    let mut decided = if status.rejected {
        Decision::to(ChangeState::Rejected)
            .effect(Effect::RecordVote { vote })
            .effect(notify_requester(
                change,
                &format!("rejected by {}", status.rejected_by.join(", ")),
            ))
    } else if status.approved {
        let mut decided = Decision::to(ChangeState::Approved)
            .effect(Effect::RecordVote { vote })
            .effect(notify_requester(change, "approved"));
        if change.kind == ChangeType::Emergency {
            let by = now
                .checked_add(policy.emergency.retrospective_within)
                .map_err(|_| {
                    Refusal::conflict("the retrospective deadline is beyond the calendar")
                })?;
            decided = decided.effect(Effect::SetRetrospectiveDue { by });
        }
        decided
    } else {
        Decision::to(ChangeState::InReview).effect(Effect::RecordVote { vote })
    };
    decided.quorum = Some(status);
    Ok(decided)
}

fn notify_requester(change: &ChangeRequest, what: &str) -> Effect {
    Effect::Notify {
        groups: Vec::new(),
        users: vec![change.requester.clone()],
        message: format!("change {} {what}", change.id),
    }
}

fn require_requester_or_approver(
    change: &ChangeRequest,
    actor: &Actor,
    what: &str,
) -> Result<(), Refusal> {
    if actor.user == change.requester || actor.has_any(&[Role::Approver]) {
        Ok(())
    } else {
        Err(Refusal::forbidden(format!(
            "only the requester ({}) or an approver may {what} change {}",
            change.requester, change.id
        )))
    }
}

fn required_text<'t>(text: &'t str, what: &str) -> Result<&'t str, Refusal> {
    let text = text.trim();
    if text.is_empty() {
        Err(Refusal::invalid(format!("{what} is required")))
    } else {
        Ok(text)
    }
}

fn roles_text(roles: &[Role]) -> String {
    roles
        .iter()
        .map(|r| r.as_str())
        .collect::<Vec<_>>()
        .join(" or ")
}

/// Why `kind` cannot be taken from the change's state, with what can.
fn not_from_state(change: &ChangeRequest, kind: ActionKind) -> String {
    let state = change.state;
    let sources: BTreeSet<ChangeState> = TRANSITIONS
        .iter()
        .filter(|e| e.action == kind && e.types.contains(&change.kind))
        .flat_map(|e| e.from.iter().copied())
        .collect();
    let mut reason = format!("cannot {kind} change {}: it is {state}", change.id);
    if state.is_final() {
        reason.push_str(", a final state");
        return reason;
    }
    if !sources.is_empty() {
        let names: Vec<&str> = sources.iter().map(|s| s.as_str()).collect();
        reason.push_str(&format!(
            "; {kind} applies to {} changes that are {}",
            change.kind,
            names.join(" or ")
        ));
    }
    let next = next_actions(change.kind, state);
    if !next.is_empty() {
        let names: Vec<&str> = next.iter().map(|a| a.as_str()).collect();
        reason.push_str(&format!("; from {state} it can: {}", names.join(", ")));
    }
    reason
}

/// The actions the table allows for a change of this type in this state.
pub fn next_actions(kind: ChangeType, state: ChangeState) -> Vec<ActionKind> {
    let actions: BTreeSet<ActionKind> = TRANSITIONS
        .iter()
        .filter(|e| e.from.contains(&state) && e.types.contains(&kind))
        .map(|e| e.action)
        .collect();
    actions.into_iter().collect()
}

impl ChangeRequest {
    /// Applies an allowed transition: records its effects, moves the state, stamps the time.
    ///
    /// A transition decided for another change, or for a state the change has since left, is
    /// refused: the caller decided on stale data and must decide again.
    pub fn apply(&mut self, transition: &Transition) -> Result<(), ChangeError> {
        if transition.change != self.id || transition.from != self.state {
            return Err(ChangeError::Stale {
                id: self.id.clone(),
                state: self.state,
                decided_for: transition.from,
            });
        }
        let at = transition.at;
        for effect in &transition.effects {
            match effect {
                Effect::RecordPolicyVersion { version } => self.policy_version = Some(*version),
                Effect::AdoptApprovalRule { rule } => self.approval_rule = Some(rule.clone()),
                Effect::RecordSignOff { sign_off } => self.sign_offs.push(sign_off.clone()),
                Effect::ClearReview => {
                    self.sign_offs.clear();
                    self.votes.clear();
                    self.escalations.clear();
                    self.approval_rule = None;
                    self.times.review_started = None;
                }
                Effect::RecordVote { vote } => self.votes.push(vote.clone()),
                Effect::SetRetrospectiveDue { by } => self.retrospective_due = Some(*by),
                Effect::SetSchedule { window, .. } => self.schedule = Some(*window),
                Effect::RecordReview { review } => self.review = Some(review.clone()),
                Effect::PreApproved { .. } | Effect::Notify { .. } => {}
            }
        }
        if transition.from != transition.to {
            let times = &mut self.times;
            let stamp = match transition.to {
                ChangeState::Draft => None,
                ChangeState::Submitted => Some(&mut times.submitted),
                ChangeState::InReview => Some(&mut times.review_started),
                ChangeState::Approved => Some(&mut times.approved),
                ChangeState::Scheduled => None,
                ChangeState::Implementing => Some(&mut times.implementation_started),
                ChangeState::Completed | ChangeState::Failed | ChangeState::RolledBack => {
                    Some(&mut times.implementation_ended)
                }
                ChangeState::Reviewed => Some(&mut times.reviewed),
                ChangeState::Closed | ChangeState::Rejected | ChangeState::Cancelled => {
                    Some(&mut times.finished)
                }
            };
            if let Some(stamp) = stamp {
                *stamp = Some(at);
            }
        }
        if matches!(
            transition.action,
            ActionKind::Fail | ActionKind::RollBack | ActionKind::Reject | ActionKind::Cancel
        ) {
            self.outcome_reason = transition.reason.clone();
        }
        self.state = transition.to;
        self.times.updated = Some(at);
        self.history.push(StateChange {
            from: transition.from,
            to: transition.to,
            action: transition.action.as_str().to_owned(),
            by: transition.actor.clone(),
            at,
        });
        Ok(())
    }
}

/// The state machine as a Mermaid state diagram, generated from [`TRANSITIONS`].
pub fn mermaid_diagram() -> String {
    let id = |s: ChangeState| s.as_str().replace('-', "_");
    let mut out = String::from("stateDiagram-v2\n");
    for state in ChangeState::ALL {
        if state.as_str().contains('-') {
            out.push_str(&format!("    state \"{state}\" as {}\n", id(state)));
        }
    }
    out.push_str(&format!("    [*] --> {}\n", id(ChangeState::Draft)));
    let mut seen = BTreeSet::new();
    for edge in TRANSITIONS {
        for from in edge.from {
            let label = if edge.types == ALL_TYPES {
                edge.action.as_str().to_owned()
            } else {
                let types: Vec<&str> = edge.types.iter().map(|t| t.as_str()).collect();
                format!("{} ({})", edge.action, types.join(", "))
            };
            if seen.insert((*from, edge.to, label.clone())) {
                out.push_str(&format!("    {} --> {}: {label}\n", id(*from), id(edge.to)));
            }
        }
    }
    for state in ChangeState::ALL.into_iter().filter(|s| s.is_final()) {
        out.push_str(&format!("    {} --> [*]\n", id(state)));
    }
    out
}

/// The transition table as Markdown, generated from [`TRANSITIONS`].
pub fn markdown_table() -> String {
    let mut out = String::from(
        "| from | action | to | change types | who (roles) | checks |\n|---|---|---|---|---|---|\n",
    );
    for edge in TRANSITIONS {
        let from: Vec<&str> = edge.from.iter().map(|s| s.as_str()).collect();
        let types = if edge.types == ALL_TYPES {
            "all".to_owned()
        } else {
            edge.types
                .iter()
                .map(|t| t.as_str())
                .collect::<Vec<_>>()
                .join(", ")
        };
        out.push_str(&format!(
            "| {} | `{}` | {} | {} | {} | {} |\n",
            from.join(", "),
            edge.action,
            edge.to,
            types,
            edge.who,
            edge.checks
        ));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_table_is_consistent() {
        // Rows that share a state, an action and a change type share their roles, so the role
        // check before the action's own checks is well defined.
        for a in TRANSITIONS {
            for b in TRANSITIONS {
                let shared = a.action == b.action
                    && a.from.iter().any(|s| b.from.contains(s))
                    && a.types.iter().any(|t| b.types.contains(t));
                if shared {
                    assert_eq!(a.roles, b.roles, "{:?} {:?}", a.action, a.from);
                }
            }
            assert!(a.from.iter().all(|s| !s.is_final()), "{:?}", a.action);
            assert!(!a.roles.contains(&Role::Admin), "admin is never enough");
        }
        // Every state is reachable and every non-final state has a way out.
        for state in ChangeState::ALL {
            let reachable =
                state == ChangeState::Draft || TRANSITIONS.iter().any(|e| e.to == state);
            assert!(reachable, "{state}");
            if !state.is_final() {
                assert!(
                    TRANSITIONS
                        .iter()
                        .any(|e| e.from.contains(&state) && e.to != state)
                );
            }
        }
        // Every action appears in the table.
        for action in ActionKind::ALL {
            assert!(TRANSITIONS.iter().any(|e| e.action == action), "{action}");
        }
    }

    #[test]
    fn actions_read_from_json() {
        let action: Action = serde_json::from_value(serde_json::json!({
            "action": "schedule",
            "window": {"start": "2026-11-20T22:00:00Z", "end": "2026-11-21T02:00:00Z"},
        }))
        .unwrap();
        assert_eq!(action.kind(), ActionKind::Schedule);
        let sneaky = serde_json::from_value::<Action>(serde_json::json!({
            "action": "schedule",
            "window": {"start": "2026-11-20T22:00:00Z", "end": "2026-11-21T02:00:00Z"},
            "conflicts": [],
        }));
        assert!(
            sneaky.is_err(),
            "conflicts come from the calendar, not the client"
        );
        let err =
            serde_json::from_value::<Action>(serde_json::json!({"action": "aprove"})).unwrap_err();
        assert!(err.to_string().contains("aprove"), "{err}");
        let err =
            serde_json::from_value::<Action>(serde_json::json!({"action": "cancel"})).unwrap_err();
        assert!(err.to_string().contains("reason"), "{err}");
    }

    #[test]
    fn refusals_map_to_http() {
        assert_eq!(Refusal::conflict("x").http_status(), 409);
        assert_eq!(Refusal::forbidden("x").http_status(), 403);
        assert_eq!(Refusal::invalid("x").http_status(), 422);
    }
}
