//! The change request record: what changes (bundle × scope), how (plan), when (schedule), and
//! the governance record that accumulates as it moves through its states (votes, sign-offs,
//! escalations, review).
//!
//! Records are built from checked input ([`NewChange`]) and afterwards changed only by
//! [`ChangeRequest::apply`] with a [`Transition`](super::Transition) that
//! [`transition`](super::transition) allowed, so a stored change is always one the state machine
//! produced. The exceptions are edits of a draft ([`ChangeRequest::revise`]), its assessment
//! ([`ChangeRequest::set_assessment`]) and recorded escalations, all refused outside the states
//! they belong to.

use std::cmp::Ordering;
use std::collections::{BTreeMap, BTreeSet};
use std::fmt;
use std::str::FromStr;

use jiff::{SignedDuration, Timestamp};
use serde::{Deserialize, Deserializer, Serialize, Serializer};

use super::cab::{ApprovalRule, Escalation};
use super::risk::RiskAssessment;
use super::scope::PeerReviewNeed;
use super::state::ChangeState;
use crate::advisory::UpdateType;
use crate::cmdb::Selector;
use crate::ecosystem::EcosystemKey;
use crate::version::{Scheme, Version};

/// The longest title: ServiceNow's `short_description` holds 160 characters.
pub const MAX_TITLE_CHARS: usize = 160;

/// The longest detection window a plan may ask for; longer ones stall a rollout for days.
pub const MAX_DETECTION_WINDOW: SignedDuration = SignedDuration::from_hours(24);

/// How a change is governed.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum ChangeType {
    /// Pre-approved through a template: no CAB, still audited.
    Standard,
    /// Reviewed by the CAB before it is scheduled.
    Normal,
    /// Approved by the e-CAB, may start at once, reviewed in full afterwards.
    Emergency,
}

impl ChangeType {
    /// Every type, in order.
    pub const ALL: [ChangeType; 3] = [Self::Standard, Self::Normal, Self::Emergency];

    /// The name used in JSON, TOML and messages.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Standard => "standard",
            Self::Normal => "normal",
            Self::Emergency => "emergency",
        }
    }
}

impl fmt::Display for ChangeType {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for ChangeType {
    type Err = ChangeError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Self::ALL
            .into_iter()
            .find(|t| t.as_str() == s.trim())
            .ok_or_else(|| ChangeError::Invalid {
                field: "type".to_owned(),
                reason: format!("{s:?} is not standard, normal or emergency"),
            })
    }
}

/// What kind of update a change carries, which policy maps to the change types it may take.
///
/// The advisory's own [`UpdateType`] (security, bug fix, enhancement) plus two classes that cut
/// across it: kernel updates (a reboot, a wider blast radius) and third-party software (its own
/// vendor, its own cadence). One bundle item can be both `security` and `kernel`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum UpdateClass {
    /// Fixes a vulnerability.
    Security,
    /// Fixes a bug.
    Bugfix,
    /// Adds or changes a feature.
    Enhancement,
    /// Updates the kernel (needs a reboot).
    Kernel,
    /// Updates software from outside the distribution.
    ThirdParty,
}

impl UpdateClass {
    /// Every class, in order.
    pub const ALL: [UpdateClass; 5] = [
        Self::Security,
        Self::Bugfix,
        Self::Enhancement,
        Self::Kernel,
        Self::ThirdParty,
    ];

    /// The name used in JSON, TOML and messages.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Security => "security",
            Self::Bugfix => "bugfix",
            Self::Enhancement => "enhancement",
            Self::Kernel => "kernel",
            Self::ThirdParty => "third-party",
        }
    }

    /// Whether a package name is a kernel package: Debian's `linux` source package and its
    /// `linux-image-*` / `linux-modules-*` binaries, RPM's `kernel` and `kernel-*`.
    ///
    /// Headers, tools and documentation do not need a reboot and are not counted.
    pub fn is_kernel_package(name: &str) -> bool {
        const NOT_RUNNING: [&str; 4] = ["-headers", "-tools", "-doc", "-devel"];
        let kernel = name == "linux"
            || name == "kernel"
            || name.starts_with("linux-image")
            || name.starts_with("linux-modules")
            || name.starts_with("kernel-");
        kernel && !NOT_RUNNING.iter().any(|part| name.contains(part))
    }
}

impl From<UpdateType> for UpdateClass {
    fn from(value: UpdateType) -> Self {
        match value {
            UpdateType::Security => Self::Security,
            UpdateType::Bugfix => Self::Bugfix,
            UpdateType::Enhancement => Self::Enhancement,
        }
    }
}

impl fmt::Display for UpdateClass {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Where a bundle item's target version came from.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum BundleSource {
    /// The lowest version that fixes every advisory listed for the package.
    LowestFixing,
    /// Chosen by a person (an explicit target or a pin).
    Pinned,
}

/// One package the change moves to a target version.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct BundleItem {
    /// Package name (source package for Debian and Ubuntu, as advisories name them).
    pub package: String,
    /// The release line the version belongs to; `None` when the target applies to any (an
    /// explicit target typed by a person, or third-party software).
    #[serde(
        default,
        serialize_with = "serialize_optional_display",
        deserialize_with = "deserialize_optional_ecosystem"
    )]
    pub ecosystem: Option<EcosystemKey>,
    /// The version hosts converge to.
    pub target_version: String,
    /// Why that version.
    pub source: BundleSource,
    /// Advisories the target fixes.
    #[serde(default)]
    pub advisories: Vec<String>,
    /// Whether any of those advisories is listed in CISA KEV.
    #[serde(default)]
    pub kev: bool,
}

impl BundleItem {
    /// An explicit target chosen by a person.
    pub fn pinned(package: &str, ecosystem: Option<EcosystemKey>, target_version: &str) -> Self {
        Self {
            package: package.to_owned(),
            ecosystem,
            target_version: target_version.to_owned(),
            source: BundleSource::Pinned,
            advisories: Vec::new(),
            kev: false,
        }
    }

    fn validate(&self, index: usize) -> Result<(), ChangeError> {
        let field = |name: &str| format!("bundle[{index}].{name}");
        if self.package.trim().is_empty() || self.package.chars().any(char::is_whitespace) {
            return Err(ChangeError::Invalid {
                field: field("package"),
                reason: format!("{:?} is not a package name", self.package),
            });
        }
        let scheme = self
            .ecosystem
            .as_ref()
            .map_or(Scheme::Generic, EcosystemKey::scheme);
        // Without an ecosystem there is no scheme to check against; only emptiness is an error.
        let checked = match &self.ecosystem {
            Some(_) => Version::parse(scheme, &self.target_version)
                .map(drop)
                .map_err(|err| err.to_string()),
            None if self.target_version.trim().is_empty() => Err("the version is empty".into()),
            None => Ok(()),
        };
        checked.map_err(|reason| ChangeError::Invalid {
            field: field("target_version"),
            reason,
        })
    }
}

/// Thresholds that make the rollout roll a host or batch back, judged during a detection
/// window after each host and each batch. The rollout engine evaluates them; the plan states them.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RollbackCriteria {
    /// Roll back when more than this share (0–1) of the post-update checks fail.
    pub max_failed_check_share: f64,
    /// Roll back when probe latency exceeds the pre-update baseline by this factor (≥ 1).
    #[serde(default)]
    pub max_latency_factor: Option<f64>,
    /// A named check that must pass; its failure rolls back regardless of the share.
    #[serde(default)]
    pub custom_check: Option<String>,
    /// How long to watch after each host and each batch before moving on; zero for no watch.
    #[serde(with = "super::friendly_duration")]
    pub detection_window: SignedDuration,
}

impl RollbackCriteria {
    fn validate(&self) -> Result<(), ChangeError> {
        let bad = |field: &str, reason: String| ChangeError::Invalid {
            field: format!("plan.rollback_criteria.{field}"),
            reason,
        };
        if !(0.0..=1.0).contains(&self.max_failed_check_share) {
            return Err(bad(
                "max_failed_check_share",
                format!("{} is not a share from 0 to 1", self.max_failed_check_share),
            ));
        }
        if let Some(factor) = self.max_latency_factor
            && !(factor.is_finite() && factor >= 1.0)
        {
            return Err(bad(
                "max_latency_factor",
                format!("{factor} is not a factor of at least 1 (1.5 = 50% slower than baseline)"),
            ));
        }
        if self
            .custom_check
            .as_ref()
            .is_some_and(|c| c.trim().is_empty())
        {
            return Err(bad("custom_check", "the check name is empty".to_owned()));
        }
        // Zero is allowed: no watch between batches (each host's checks still run).
        if self.detection_window < SignedDuration::ZERO
            || self.detection_window > MAX_DETECTION_WINDOW
        {
            return Err(bad(
                "detection_window",
                format!(
                    "{:#} is not a duration from zero to {MAX_DETECTION_WINDOW:#}",
                    self.detection_window
                ),
            ));
        }
        Ok(())
    }
}

/// How the change is carried out, checked and undone.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Plan {
    /// Implementation steps, in order.
    #[serde(default)]
    pub implementation: Vec<String>,
    /// How success is verified (checks, probes, what to look at).
    #[serde(default)]
    pub verification: Vec<String>,
    /// When to roll back.
    pub rollback_criteria: RollbackCriteria,
}

impl Plan {
    /// Problems that keep the plan from being submitted: steps and verification must be written.
    pub fn incomplete(&self) -> Vec<String> {
        let mut missing = Vec::new();
        if self.implementation.iter().all(|s| s.trim().is_empty()) {
            missing.push("the plan has no implementation steps".to_owned());
        }
        if self.verification.iter().all(|s| s.trim().is_empty()) {
            missing.push("the plan says nothing about verification".to_owned());
        }
        missing
    }
}

/// A planned implementation window. Whether it fits maintenance windows and freezes is the
/// calendar's business; the server passes its verdict to the `schedule` action.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Schedule {
    /// When implementation may start.
    pub start: Timestamp,
    /// When it must be done.
    pub end: Timestamp,
}

impl Schedule {
    /// Whether `at` falls inside the window (start included, end excluded).
    pub fn contains(&self, at: Timestamp) -> bool {
        self.start <= at && at < self.end
    }
}

/// How the change came about, for traceability.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "from", rename_all = "kebab-case", deny_unknown_fields)]
pub enum ChangeOrigin {
    /// From findings, selected by a filter or listed.
    Findings {
        /// The findings filter, as the listing takes it.
        #[serde(default)]
        filter: Option<String>,
        /// Finding ids, when listed.
        #[serde(default)]
        ids: Vec<String>,
    },
    /// From explicit package targets.
    Packages,
}

/// A vote's direction.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum VoteDecision {
    /// For the change.
    Approve,
    /// Against it.
    Reject,
}

/// A CAB member's vote, as cast.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Vote {
    /// Who voted.
    pub voter: String,
    /// The voter's groups that were eligible for this change when they voted.
    pub groups: BTreeSet<String>,
    /// For or against.
    pub decision: VoteDecision,
    /// When.
    pub at: Timestamp,
    /// Why, in their words.
    pub comment: Option<String>,
}

/// A peer's sign-off of the implementation plan.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct SignOff {
    /// Who signed off (never the requester).
    pub by: String,
    /// When.
    pub at: Timestamp,
    /// Remarks.
    pub comment: Option<String>,
}

/// How the implementation went, in the post-implementation review.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum ReviewOutcome {
    /// Done as planned.
    Successful,
    /// Done, with problems worth recording.
    SuccessfulWithIssues,
    /// Not done.
    Unsuccessful,
}

/// The post-implementation review; for an emergency change, its retrospective review.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct PostImplementationReview {
    /// Who reviewed (never the requester).
    pub by: String,
    /// When.
    pub at: Timestamp,
    /// The verdict.
    pub outcome: ReviewOutcome,
    /// Findings of the review.
    pub notes: String,
}

/// An escalation that was recorded: the group was asked and notified.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct EscalationRecord {
    /// 1-based position in the rule's escalation list.
    pub step: usize,
    /// The group asked.
    pub group: String,
    /// When it fell due.
    pub due_at: Timestamp,
    /// When the server recorded it.
    pub recorded_at: Timestamp,
}

/// One entry of the change's own history (the audit chain holds the full record).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct StateChange {
    /// The state left.
    pub from: ChangeState,
    /// The state entered (equal to `from` for actions that record without moving).
    pub to: ChangeState,
    /// The action, as named in the API (`submit`, `approve`, …).
    pub action: String,
    /// Who.
    pub by: String,
    /// When.
    pub at: Timestamp,
}

/// When the change reached its milestones.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ChangeTimes {
    /// Created.
    pub created: Option<Timestamp>,
    /// Last changed.
    pub updated: Option<Timestamp>,
    /// Submitted.
    pub submitted: Option<Timestamp>,
    /// CAB review started (escalation timers count from here).
    pub review_started: Option<Timestamp>,
    /// Approved (by the CAB, the e-CAB, or a standard template).
    pub approved: Option<Timestamp>,
    /// Implementation started.
    pub implementation_started: Option<Timestamp>,
    /// Implementation ended (completed, failed or rolled back).
    pub implementation_ended: Option<Timestamp>,
    /// Reviewed after implementation.
    pub reviewed: Option<Timestamp>,
    /// Reached a final state (closed, rejected, cancelled).
    pub finished: Option<Timestamp>,
}

/// The assessment a change is judged by: its risk and whether a peer must sign off its plan.
///
/// The server computes it from the CMDB ([`ScopeFacts`](super::ScopeFacts)) and change history
/// with [`assess`](super::assess) while the change is a draft; submission freezes it.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Assessment {
    /// Risk level, score and reasons.
    pub risk: RiskAssessment,
    /// Whether peer review is needed, and why.
    pub peer_review: PeerReviewNeed,
    /// When it was computed.
    pub assessed_at: Timestamp,
}

/// What a change is made from: the request body of "create change" and "edit draft".
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NewChange {
    /// One line (at most 160 characters).
    pub title: String,
    /// Standard, normal or emergency.
    #[serde(rename = "type")]
    pub kind: ChangeType,
    /// Findings or packages.
    pub origin: ChangeOrigin,
    /// Package → target version.
    pub bundle: Vec<BundleItem>,
    /// Which assets, as a selector (`env=prod,tag=web`).
    pub scope: Selector,
    /// What kind of updates the bundle carries.
    pub update_types: BTreeSet<UpdateClass>,
    /// Why the change is needed.
    #[serde(default)]
    pub justification: Option<String>,
    /// For a standard change, the pre-approved template it follows.
    #[serde(default)]
    pub template: Option<String>,
    /// Steps, verification, rollback criteria.
    pub plan: Plan,
}

impl NewChange {
    /// Checks everything that can be checked without policy: title, bundle versions, plan
    /// thresholds. Completeness (steps written, update types named) is checked at submission,
    /// so a draft can be saved half-written.
    pub fn validate(&self) -> Result<(), ChangeError> {
        let title = self.title.trim();
        if title.is_empty() || title.chars().count() > MAX_TITLE_CHARS {
            return Err(ChangeError::Invalid {
                field: "title".to_owned(),
                reason: format!("the title must have 1 to {MAX_TITLE_CHARS} characters"),
            });
        }
        let mut seen = BTreeSet::new();
        for (index, item) in self.bundle.iter().enumerate() {
            item.validate(index)?;
            if !seen.insert((item.ecosystem.clone(), item.package.as_str())) {
                return Err(ChangeError::Invalid {
                    field: format!("bundle[{index}].package"),
                    reason: format!("{} is in the bundle twice", item.package),
                });
            }
        }
        if self.template.is_some() && self.kind != ChangeType::Standard {
            return Err(ChangeError::Invalid {
                field: "template".to_owned(),
                reason: format!(
                    "only standard changes follow a template; this one is {}",
                    self.kind
                ),
            });
        }
        self.plan.rollback_criteria.validate()
    }
}

/// A change request.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct ChangeRequest {
    /// Its id, given by the server.
    pub id: String,
    /// One line.
    pub title: String,
    /// Standard, normal or emergency.
    #[serde(rename = "type")]
    pub kind: ChangeType,
    /// Findings or packages.
    pub origin: ChangeOrigin,
    /// Package → target version.
    pub bundle: Vec<BundleItem>,
    /// Which assets.
    pub scope: Selector,
    /// What kind of updates the bundle carries.
    pub update_types: BTreeSet<UpdateClass>,
    /// Why.
    pub justification: Option<String>,
    /// The standard template followed.
    pub template: Option<String>,
    /// Steps, verification, rollback criteria.
    pub plan: Plan,
    /// The implementation window, once scheduled.
    pub schedule: Option<Schedule>,
    /// Who asked for it; never approves or reviews it.
    pub requester: String,
    /// Where it is in its life.
    pub state: ChangeState,
    /// Milestones.
    pub times: ChangeTimes,
    /// The version of the change policy it was last judged by.
    pub policy_version: Option<u32>,
    /// Risk and peer-review need.
    pub assessment: Option<Assessment>,
    /// The approval rule adopted when CAB review started; later policy edits do not move it.
    pub approval_rule: Option<ApprovalRule>,
    /// Plan sign-offs by peers.
    pub sign_offs: Vec<SignOff>,
    /// CAB votes.
    pub votes: Vec<Vote>,
    /// Escalations recorded.
    pub escalations: Vec<EscalationRecord>,
    /// For an approved emergency change: when its retrospective review is due.
    pub retrospective_due: Option<Timestamp>,
    /// The post-implementation review.
    pub review: Option<PostImplementationReview>,
    /// Why it failed, was rolled back, rejected or cancelled.
    pub outcome_reason: Option<String>,
    /// Its transitions.
    pub history: Vec<StateChange>,
}

impl ChangeRequest {
    /// A new draft from checked input.
    pub fn new(
        id: &str,
        input: NewChange,
        requester: &str,
        now: Timestamp,
    ) -> Result<Self, ChangeError> {
        input.validate()?;
        if requester.trim().is_empty() {
            return Err(ChangeError::Invalid {
                field: "requester".to_owned(),
                reason: "the requester is empty".to_owned(),
            });
        }
        Ok(Self {
            id: id.to_owned(),
            title: input.title.trim().to_owned(),
            kind: input.kind,
            origin: input.origin,
            bundle: input.bundle,
            scope: input.scope,
            update_types: input.update_types,
            justification: input.justification,
            template: input.template,
            plan: input.plan,
            schedule: None,
            requester: requester.to_owned(),
            state: ChangeState::Draft,
            times: ChangeTimes {
                created: Some(now),
                updated: Some(now),
                ..ChangeTimes::default()
            },
            policy_version: None,
            assessment: None,
            approval_rule: None,
            sign_offs: Vec::new(),
            votes: Vec::new(),
            escalations: Vec::new(),
            retrospective_due: None,
            review: None,
            outcome_reason: None,
            history: Vec::new(),
        })
    }

    /// Replaces a draft's content; the assessment is dropped because it described the old one.
    pub fn revise(&mut self, input: NewChange, now: Timestamp) -> Result<(), ChangeError> {
        self.require_draft("edited")?;
        input.validate()?;
        self.title = input.title.trim().to_owned();
        self.kind = input.kind;
        self.origin = input.origin;
        self.bundle = input.bundle;
        self.scope = input.scope;
        self.update_types = input.update_types;
        self.justification = input.justification;
        self.template = input.template;
        self.plan = input.plan;
        self.assessment = None;
        self.times.updated = Some(now);
        Ok(())
    }

    /// Sets the risk and peer-review assessment; only a draft can be (re)assessed, because
    /// submission freezes what the CAB judges.
    pub fn set_assessment(&mut self, assessment: Assessment) -> Result<(), ChangeError> {
        self.require_draft("assessed")?;
        self.times.updated = Some(assessment.assessed_at);
        self.assessment = Some(assessment);
        Ok(())
    }

    /// Records an escalation returned by [`escalation_due`](super::escalation_due); recording
    /// the same step twice changes nothing.
    pub fn record_escalation(
        &mut self,
        escalation: &Escalation,
        now: Timestamp,
    ) -> Result<(), ChangeError> {
        if self.state != ChangeState::InReview {
            return Err(ChangeError::WrongState {
                id: self.id.clone(),
                state: self.state,
                what: "escalated".to_owned(),
            });
        }
        if self.escalations.iter().all(|e| e.step != escalation.step) {
            self.escalations.push(EscalationRecord {
                step: escalation.step,
                group: escalation.group.clone(),
                due_at: escalation.due_at,
                recorded_at: now,
            });
            self.times.updated = Some(now);
        }
        Ok(())
    }

    /// Whether any bundle item fixes a KEV-listed vulnerability.
    pub fn kev(&self) -> bool {
        self.bundle.iter().any(|item| item.kev)
    }

    /// Whether the bundle updates the kernel, so hosts will need a reboot.
    pub fn reboot_expected(&self) -> bool {
        self.update_types.contains(&UpdateClass::Kernel)
            || self
                .bundle
                .iter()
                .any(|item| UpdateClass::is_kernel_package(&item.package))
    }

    /// The risk level, once assessed.
    pub fn risk(&self) -> Option<super::RiskLevel> {
        self.assessment.as_ref().map(|a| a.risk.level)
    }

    fn require_draft(&self, what: &str) -> Result<(), ChangeError> {
        if self.state == ChangeState::Draft {
            Ok(())
        } else {
            Err(ChangeError::WrongState {
                id: self.id.clone(),
                state: self.state,
                what: what.to_owned(),
            })
        }
    }
}

/// A finding-like input to [`resolve_bundle`]: one advisory's fix for one package.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct FixCandidate {
    /// The package the advisory names.
    pub package: String,
    /// Its release line, which decides the version order.
    pub ecosystem: EcosystemKey,
    /// The installed version (on some host).
    pub installed: String,
    /// The advisory's fixed version, `None` when no fix is published.
    pub fixed: Option<String>,
    /// The advisory.
    pub advisory: String,
    /// Listed in CISA KEV.
    pub kev: bool,
    /// The advisory's update type.
    pub update_type: UpdateType,
}

/// A version a person chose for a package, overriding the lowest fixing version.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Pin {
    /// The package.
    pub package: String,
    /// Limits the pin to one release line; `None` pins the package everywhere.
    #[serde(
        default,
        serialize_with = "serialize_optional_display",
        deserialize_with = "deserialize_optional_ecosystem"
    )]
    pub ecosystem: Option<EcosystemKey>,
    /// The version.
    pub version: String,
}

/// An advisory the bundle does not fix, and why.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Unresolved {
    /// The package.
    pub package: String,
    /// Its release line.
    pub ecosystem: String,
    /// The advisory left open.
    pub advisory: String,
    /// Why.
    pub reason: String,
}

/// What [`resolve_bundle`] made of the candidates.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ResolvedBundle {
    /// One item per (release line, package), sorted.
    pub items: Vec<BundleItem>,
    /// The update classes the items carry (advisory types, plus `kernel` for kernel packages).
    pub update_types: BTreeSet<UpdateClass>,
    /// Advisories the bundle leaves open.
    pub unresolved: Vec<Unresolved>,
}

/// Resolves findings into a bundle: per package and release line, the lowest version that fixes
/// every listed advisory, unless a pin says otherwise.
///
/// Each advisory names the first version that fixes it; a package with several advisories needs
/// the *highest* of those, which is the lowest version fixing them all. Versions are ordered by
/// the release line's own scheme ([`crate::version`]). Advisories without a fix are reported as
/// unresolved and do not add an item. A pin wins over the computed version; advisories whose fix
/// is above the pin are reported as unresolved, as is a pin below an installed version (the
/// change would downgrade). An invalid version in a candidate or a pin is an error naming it.
pub fn resolve_bundle(
    candidates: &[FixCandidate],
    pins: &[Pin],
) -> Result<ResolvedBundle, ChangeError> {
    struct Entry<'c> {
        fixes: Vec<(&'c FixCandidate, Version)>,
        installed: Vec<Version>,
        no_fix: Vec<&'c FixCandidate>,
    }
    let mut by_package: BTreeMap<(EcosystemKey, &str), Entry> = BTreeMap::new();
    for candidate in candidates {
        let scheme = candidate.ecosystem.scheme();
        let parse = |text: &str, what: &str| {
            Version::parse(scheme, text).map_err(|err| ChangeError::Invalid {
                field: format!(
                    "{} {what} version for {} ({})",
                    candidate.package, candidate.advisory, candidate.ecosystem
                ),
                reason: err.to_string(),
            })
        };
        let installed = parse(&candidate.installed, "installed")?;
        let fixed = candidate
            .fixed
            .as_deref()
            .map(|f| parse(f, "fixed"))
            .transpose()?;
        let entry = by_package
            .entry((candidate.ecosystem.clone(), candidate.package.as_str()))
            .or_insert_with(|| Entry {
                fixes: Vec::new(),
                installed: Vec::new(),
                no_fix: Vec::new(),
            });
        entry.installed.push(installed);
        match fixed {
            Some(fixed) => entry.fixes.push((candidate, fixed)),
            None => entry.no_fix.push(candidate),
        }
    }
    let mut resolved = ResolvedBundle::default();
    for ((ecosystem, package), entry) in by_package {
        let unresolved = |advisory: &str, reason: String| Unresolved {
            package: package.to_owned(),
            ecosystem: ecosystem.to_string(),
            advisory: advisory.to_owned(),
            reason,
        };
        for candidate in &entry.no_fix {
            resolved.unresolved.push(unresolved(
                &candidate.advisory,
                "no fixed version is published".to_owned(),
            ));
        }
        let pin = pins
            .iter()
            .filter(|p| p.package == package)
            .find(|p| p.ecosystem.as_ref().is_none_or(|e| *e == ecosystem));
        let (target, source) = match pin {
            Some(pin) => {
                let version = Version::parse(ecosystem.scheme(), &pin.version).map_err(|err| {
                    ChangeError::Invalid {
                        field: format!("pin for {package} ({ecosystem})"),
                        reason: err.to_string(),
                    }
                })?;
                (version, BundleSource::Pinned)
            }
            None => match entry
                .fixes
                .iter()
                .map(|(_, v)| v)
                .max_by(|a, b| a.compare(b))
            {
                Some(highest) => (highest.clone(), BundleSource::LowestFixing),
                None => continue,
            },
        };
        if let Some(above) = entry
            .installed
            .iter()
            .filter(|v| v.compare(&target) == Ordering::Greater)
            .max_by(|a, b| a.compare(b))
        {
            for (candidate, _) in &entry.fixes {
                resolved.unresolved.push(unresolved(
                    &candidate.advisory,
                    format!("pinned at {target}, below the installed {above}: the change would downgrade"),
                ));
            }
            continue;
        }
        let mut advisories = Vec::new();
        let mut kev = false;
        let mut classes = BTreeSet::new();
        for (candidate, fixed) in &entry.fixes {
            if fixed.compare(&target) == Ordering::Greater {
                resolved.unresolved.push(unresolved(
                    &candidate.advisory,
                    format!("pinned at {target}, below the fix {fixed}"),
                ));
                continue;
            }
            advisories.push(candidate.advisory.clone());
            kev |= candidate.kev;
            classes.insert(UpdateClass::from(candidate.update_type));
        }
        if advisories.is_empty() && source == BundleSource::LowestFixing {
            continue;
        }
        if UpdateClass::is_kernel_package(package) {
            classes.insert(UpdateClass::Kernel);
        }
        advisories.sort();
        advisories.dedup();
        resolved.update_types.extend(classes);
        resolved.items.push(BundleItem {
            package: package.to_owned(),
            ecosystem: Some(ecosystem),
            target_version: target.as_str().to_owned(),
            source,
            advisories,
            kev,
        });
    }
    Ok(resolved)
}

/// Why a change could not be built or edited. Every variant names the field or the change.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ChangeError {
    /// A field with a wrong value.
    #[error("{field}: {reason}")]
    Invalid {
        /// The field (`title`, `bundle[2].target_version`, …).
        field: String,
        /// What is wrong.
        reason: String,
    },
    /// A transition decided for a state the change has since left, or for another change.
    #[error(
        "change {id} is {state}, but the transition was decided for a change that was {decided_for}; decide again"
    )]
    Stale {
        /// The change.
        id: String,
        /// Its state.
        state: ChangeState,
        /// The state the transition was decided for.
        decided_for: ChangeState,
    },
    /// An edit the change's state does not allow.
    #[error("change {id} is {state}: it can no longer be {what}")]
    WrongState {
        /// The change.
        id: String,
        /// Its state.
        state: ChangeState,
        /// The refused edit.
        what: String,
    },
}

fn serialize_optional_display<T: fmt::Display, S: Serializer>(
    value: &Option<T>,
    serializer: S,
) -> Result<S::Ok, S::Error> {
    match value {
        Some(value) => serializer.collect_str(value),
        None => serializer.serialize_none(),
    }
}

fn deserialize_optional_ecosystem<'de, D: Deserializer<'de>>(
    deserializer: D,
) -> Result<Option<EcosystemKey>, D::Error> {
    Option::<String>::deserialize(deserializer)?
        .map(|text| text.parse().map_err(serde::de::Error::custom))
        .transpose()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ecosystem::Distro;

    fn debian() -> EcosystemKey {
        EcosystemKey::new(Distro::Debian, "12").unwrap()
    }

    fn candidate(package: &str, installed: &str, fixed: Option<&str>, id: &str) -> FixCandidate {
        FixCandidate {
            package: package.to_owned(),
            ecosystem: debian(),
            installed: installed.to_owned(),
            fixed: fixed.map(str::to_owned),
            advisory: id.to_owned(),
            kev: id.contains("KEV"),
            update_type: UpdateType::Security,
        }
    }

    #[test]
    fn lowest_version_fixing_every_advisory_uses_dpkg_order() {
        let bundle = resolve_bundle(
            &[
                candidate(
                    "openssl",
                    "3.0.11-1~deb12u1",
                    Some("3.0.11-1~deb12u2"),
                    "DSA-1",
                ),
                // `~` sorts before the empty string in dpkg: 3.0.13-1~deb12u1 > 3.0.11-1~deb12u2.
                candidate(
                    "openssl",
                    "3.0.11-1~deb12u1",
                    Some("3.0.13-1~deb12u1"),
                    "DSA-2-KEV",
                ),
                candidate("openssl", "3.0.9-1", Some("3.0.10-1"), "DSA-3"),
                candidate("curl", "7.88.1-10", None, "DSA-4"),
                candidate("linux", "6.1.90-1", Some("6.1.94-1"), "DSA-5"),
            ],
            &[],
        )
        .unwrap();
        let openssl = bundle
            .items
            .iter()
            .find(|i| i.package == "openssl")
            .unwrap();
        assert_eq!(openssl.target_version, "3.0.13-1~deb12u1");
        assert_eq!(openssl.source, BundleSource::LowestFixing);
        assert_eq!(openssl.advisories, ["DSA-1", "DSA-2-KEV", "DSA-3"]);
        assert!(openssl.kev);
        assert_eq!(bundle.items.len(), 2, "curl has no fix and adds no item");
        assert_eq!(bundle.unresolved.len(), 1);
        assert_eq!(bundle.unresolved[0].advisory, "DSA-4");
        assert!(bundle.update_types.contains(&UpdateClass::Kernel));
        assert_eq!(
            serde_json::to_value(openssl).unwrap()["ecosystem"],
            "Debian:12"
        );
    }

    #[test]
    fn pins_win_and_name_what_they_leave_open() {
        let pins = [Pin {
            package: "openssl".to_owned(),
            ecosystem: None,
            version: "3.0.11-1~deb12u2".to_owned(),
        }];
        let bundle = resolve_bundle(
            &[
                candidate(
                    "openssl",
                    "3.0.11-1~deb12u1",
                    Some("3.0.11-1~deb12u2"),
                    "DSA-1",
                ),
                candidate(
                    "openssl",
                    "3.0.11-1~deb12u1",
                    Some("3.0.13-1~deb12u1"),
                    "DSA-2",
                ),
            ],
            &pins,
        )
        .unwrap();
        assert_eq!(bundle.items[0].target_version, "3.0.11-1~deb12u2");
        assert_eq!(bundle.items[0].source, BundleSource::Pinned);
        assert_eq!(bundle.items[0].advisories, ["DSA-1"]);
        assert_eq!(bundle.unresolved[0].advisory, "DSA-2");
        assert!(bundle.unresolved[0].reason.contains("below the fix"));

        let downgrade = resolve_bundle(
            &[candidate(
                "openssl",
                "3.0.15-1",
                Some("3.0.11-1~deb12u2"),
                "DSA-1",
            )],
            &pins,
        )
        .unwrap();
        assert!(downgrade.items.is_empty());
        assert!(downgrade.unresolved[0].reason.contains("downgrade"));
    }

    #[test]
    fn invalid_versions_are_named() {
        let err =
            resolve_bundle(&[candidate("curl", "7.88", Some("1:"), "DSA-9")], &[]).unwrap_err();
        assert!(err.to_string().contains("curl fixed version"), "{err}");
        assert!(err.to_string().contains("DSA-9"), "{err}");
    }

    #[test]
    fn kernel_packages() {
        for name in [
            "linux",
            "linux-image-6.1.0-21-amd64",
            "kernel",
            "kernel-core",
        ] {
            assert!(UpdateClass::is_kernel_package(name), "{name}");
        }
        for name in [
            "linux-headers-amd64",
            "kernel-headers",
            "linux-base",
            "libkernel",
        ] {
            assert!(!UpdateClass::is_kernel_package(name), "{name}");
        }
    }
}
