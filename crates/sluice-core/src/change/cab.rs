//! CAB policy: who must approve which change, how many of them, when to escalate, the emergency
//! path, the standard templates that skip the CAB, when a peer must sign off the plan, and which
//! update types may take which change type. Plus the pure functions that apply it to a change:
//! [`evaluate_votes`], [`escalation_due`], [`retrospective_status`].
//!
//! The policy is data (TOML or JSON), versioned, with documented defaults in
//! [`DEFAULT_CAB_POLICY_TOML`]. A change adopts its [`ApprovalRule`] when CAB review starts and is
//! judged by that copy from then on, so editing the policy never moves the goalposts of a vote in
//! progress; the change records the policy version it adopted.
//!
//! Counting rules (see `docs/change.md`):
//! - The requester's votes never count (and are refused when cast).
//! - One person, one vote: only a person's first vote counts.
//! - A voter counts once toward the quorum `k`, and fills at most one per-group minimum seat even
//!   when in several groups. Seats are assigned by a maximum matching of voters to seats, so the
//!   outcome never depends on the order votes arrived in; each counted vote reports the group it
//!   was counted for (its seat's group, else its first eligible group in the rule's order).
//! - A reject by any eligible voter rejects the change: CAB approval means no eligible member
//!   objects.
//! - Escalation widens who may vote: once a step falls due its group's members are eligible and
//!   count toward `k`, but per-group minimums are never waived (a security sign-off stays a
//!   security sign-off).

use std::collections::{BTreeMap, BTreeSet};

use jiff::{SignedDuration, Timestamp};
use serde::{Deserialize, Serialize};

use super::model::{ChangeRequest, ChangeType, UpdateClass, Vote, VoteDecision};
use super::risk::RiskLevel;
use crate::cmdb::selector::glob_match;

/// The default CAB policy: the shipped, documented defaults.
///
/// Low-risk normal changes need one CAB member; each level adds people, and high risk adds a
/// security sign-off. Quorums are set above the sum of per-group minimums so that an escalation
/// group can make up the count when the CAB is slow. The emergency path needs one e-CAB member
/// (very-high risk: one e-CAB member and one from security) and a retrospective review within 48
/// hours. Kernel and third-party updates are never standard; only a change fixing a KEV-listed
/// vulnerability may go emergency, and never with bug fixes or enhancements in its bundle.
pub const DEFAULT_CAB_POLICY_TOML: &str = r#"version = 1

[peer_review]
min_criticality = 4
service_tiers = [1]
emergency_exempt = true

[emergency]
ecab_group = "ecab"
approvals = 1
retrospective_within = "48h"
escalation = [{ after = "1h", group = "cab-chairs" }]

[[rule]]
name = "normal-low"
change_type = "normal"
risk = ["low"]
groups = ["cab"]
quorum = 1
min_per_group = { cab = 1 }
escalation = [{ after = "48h", group = "cab-chairs" }]

[[rule]]
name = "normal-medium"
change_type = "normal"
risk = ["medium"]
groups = ["cab"]
quorum = 2
min_per_group = { cab = 1 }
escalation = [{ after = "24h", group = "cab-chairs" }]

[[rule]]
name = "normal-high"
change_type = "normal"
risk = ["high"]
groups = ["cab", "security"]
quorum = 3
min_per_group = { cab = 1, security = 1 }
escalation = [{ after = "24h", group = "cab-chairs" }, { after = "48h", group = "change-management" }]

[[rule]]
name = "normal-very-high"
change_type = "normal"
risk = ["very-high"]
groups = ["cab", "security", "cab-chairs"]
quorum = 4
min_per_group = { cab = 1, security = 1, cab-chairs = 1 }
escalation = [{ after = "12h", group = "change-management" }]

[[rule]]
name = "emergency-very-high"
change_type = "emergency"
risk = ["very-high"]
groups = ["ecab", "security"]
quorum = 2
min_per_group = { ecab = 1, security = 1 }
escalation = [{ after = "1h", group = "cab-chairs" }]

[[template]]
id = "tzdata"
name = "Time zone data refresh"
packages = ["tzdata"]
max_risk = "medium"

[[template]]
id = "ca-certificates"
name = "CA certificate bundle refresh"
packages = ["ca-certificates"]
max_risk = "medium"

[[update_type_rule]]
update_type = "security"
kev = true
allow = ["standard", "normal", "emergency"]

[[update_type_rule]]
update_type = "security"
allow = ["standard", "normal"]

[[update_type_rule]]
update_type = "bugfix"
allow = ["standard", "normal"]

[[update_type_rule]]
update_type = "enhancement"
allow = ["standard", "normal"]

[[update_type_rule]]
update_type = "kernel"
kev = true
allow = ["normal", "emergency"]

[[update_type_rule]]
update_type = "kernel"
allow = ["normal"]

[[update_type_rule]]
update_type = "third-party"
kev = true
allow = ["normal", "emergency"]

[[update_type_rule]]
update_type = "third-party"
allow = ["normal"]
"#;

/// The change-governance policy.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CabPolicy {
    /// Its version; the store raises it on every edit and changes record the one they adopted.
    pub version: u32,
    /// Approval rules per change type × risk, first match wins.
    #[serde(rename = "rule")]
    pub rules: Vec<ApprovalRuleSpec>,
    /// The emergency path.
    pub emergency: EmergencyPolicy,
    /// Pre-approved templates for standard changes.
    #[serde(rename = "template", default)]
    pub templates: Vec<StandardTemplate>,
    /// When a peer must sign off the plan.
    #[serde(default)]
    pub peer_review: PeerReviewPolicy,
    /// Which change types each update type allows.
    #[serde(rename = "update_type_rule")]
    pub update_type_rules: Vec<UpdateTypeRule>,
}

/// One approval rule as written in the policy.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ApprovalRuleSpec {
    /// Name, shown in messages and recorded on the change.
    pub name: String,
    /// `normal` or `emergency` (emergency rules override the e-CAB default for their risks).
    #[serde(default = "normal")]
    pub change_type: ChangeType,
    /// The risk levels it covers.
    pub risk: Vec<RiskLevel>,
    /// The approver groups.
    pub groups: Vec<String>,
    /// `k`: approvals needed overall.
    pub quorum: u32,
    /// Approvals needed from each group, at least.
    #[serde(default)]
    pub min_per_group: BTreeMap<String, u32>,
    /// Who is asked next when no decision comes.
    #[serde(default)]
    pub escalation: Vec<EscalationStep>,
}

fn normal() -> ChangeType {
    ChangeType::Normal
}

/// The rule a change is judged by, copied onto the change when review starts.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ApprovalRule {
    /// The policy rule it came from.
    pub name: String,
    /// The approver groups.
    pub groups: Vec<String>,
    /// `k`: approvals needed overall.
    pub quorum: u32,
    /// Approvals needed from each group, at least.
    pub min_per_group: BTreeMap<String, u32>,
    /// Escalation steps, times counted from the start of review.
    pub escalation: Vec<EscalationStep>,
}

/// "No decision within `after` → ask `group`."
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct EscalationStep {
    /// Time from the start of review.
    #[serde(with = "super::friendly_duration")]
    pub after: SignedDuration,
    /// The group asked and notified.
    pub group: String,
}

/// The emergency path.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct EmergencyPolicy {
    /// The emergency CAB.
    pub ecab_group: String,
    /// Approvals needed from it (unless an emergency rule covers the risk).
    pub approvals: u32,
    /// How long after e-CAB approval the full retrospective review is due.
    #[serde(with = "super::friendly_duration")]
    pub retrospective_within: SignedDuration,
    /// Escalation for the e-CAB.
    #[serde(default)]
    pub escalation: Vec<EscalationStep>,
}

impl EmergencyPolicy {
    /// The e-CAB rule: `approvals` members of `ecab_group`.
    pub fn rule(&self) -> ApprovalRule {
        ApprovalRule {
            name: "emergency".to_owned(),
            groups: vec![self.ecab_group.clone()],
            quorum: self.approvals,
            min_per_group: [(self.ecab_group.clone(), self.approvals)].into(),
            escalation: self.escalation.clone(),
        }
    }
}

/// A pre-approved template: changes that follow it skip the CAB.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct StandardTemplate {
    /// Id that changes name.
    pub id: String,
    /// What it is for.
    pub name: String,
    /// Package name patterns (`*`, `?`) every bundle item must match.
    pub packages: Vec<String>,
    /// The highest assessed risk it covers.
    pub max_risk: RiskLevel,
    /// If set, the update types it covers.
    #[serde(default)]
    pub update_types: Option<Vec<UpdateClass>>,
}

impl StandardTemplate {
    /// Why the change does not fit the template; empty when it does.
    pub fn misfits(&self, change: &ChangeRequest) -> Vec<String> {
        let mut problems = Vec::new();
        for item in &change.bundle {
            if !self.packages.iter().any(|p| glob_match(p, &item.package)) {
                problems.push(format!(
                    "package {} is not covered by template {} ({})",
                    item.package,
                    self.id,
                    self.packages.join(", ")
                ));
            }
        }
        match change.risk() {
            Some(risk) if risk > self.max_risk => problems.push(format!(
                "risk {risk} is above template {}'s maximum {}",
                self.id, self.max_risk
            )),
            Some(_) => {}
            None => problems.push("the change has no risk assessment".to_owned()),
        }
        if let Some(allowed) = &self.update_types {
            for class in change.update_types.iter().filter(|c| !allowed.contains(c)) {
                problems.push(format!(
                    "{class} updates are not covered by template {}",
                    self.id
                ));
            }
        }
        problems
    }
}

/// When a peer must sign off the implementation plan before CAB review.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PeerReviewPolicy {
    /// Hosts of this criticality or more need it.
    pub min_criticality: u8,
    /// Members of services of these tiers need it.
    #[serde(default)]
    pub service_tiers: Vec<u8>,
    /// Emergency changes go to the e-CAB without waiting for a peer; their retrospective review
    /// covers the plan afterwards.
    #[serde(default = "yes")]
    pub emergency_exempt: bool,
}

fn yes() -> bool {
    true
}

impl Default for PeerReviewPolicy {
    fn default() -> Self {
        Self {
            min_criticality: 4,
            service_tiers: vec![1],
            emergency_exempt: true,
        }
    }
}

/// Which change types an update type allows.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct UpdateTypeRule {
    /// The update type.
    pub update_type: UpdateClass,
    /// Holds only when the change's KEV listing (any bundle item) equals this.
    #[serde(default)]
    pub kev: Option<bool>,
    /// The change types allowed.
    pub allow: Vec<ChangeType>,
}

/// The change types a change may take, and the rules that decided it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct AllowedTypes {
    /// Allowed by every update type the change carries.
    pub types: BTreeSet<ChangeType>,
    /// One line per update type: which rule applied and what it allows.
    pub reasons: Vec<String>,
}

impl Default for CabPolicy {
    fn default() -> Self {
        // The default text is a constant checked by a test; fall back to a minimal policy rather
        // than panic if it were ever broken.
        Self::from_toml(DEFAULT_CAB_POLICY_TOML).unwrap_or_else(|_| Self::fallback())
    }
}

impl CabPolicy {
    /// Parses and validates a policy written in TOML.
    pub fn from_toml(text: &str) -> Result<Self, CabPolicyError> {
        let policy: Self = toml::from_str(text).map_err(|e| CabPolicyError(e.to_string()))?;
        policy.validate()?;
        Ok(policy)
    }

    /// Parses and validates a policy sent as JSON (the API's form).
    pub fn from_json(value: serde_json::Value) -> Result<Self, CabPolicyError> {
        let policy: Self =
            serde_json::from_value(value).map_err(|e| CabPolicyError(e.to_string()))?;
        policy.validate()?;
        Ok(policy)
    }

    /// One CAB member for every normal change, one e-CAB member for emergencies.
    fn fallback() -> Self {
        let day = SignedDuration::from_hours(24);
        Self {
            version: 1,
            rules: vec![ApprovalRuleSpec {
                name: "normal".to_owned(),
                change_type: ChangeType::Normal,
                risk: RiskLevel::ALL.to_vec(),
                groups: vec!["cab".to_owned()],
                quorum: 1,
                min_per_group: [("cab".to_owned(), 1)].into(),
                escalation: Vec::new(),
            }],
            emergency: EmergencyPolicy {
                ecab_group: "ecab".to_owned(),
                approvals: 1,
                retrospective_within: day * 2,
                escalation: Vec::new(),
            },
            templates: Vec::new(),
            peer_review: PeerReviewPolicy::default(),
            update_type_rules: UpdateClass::ALL
                .into_iter()
                .map(|class| UpdateTypeRule {
                    update_type: class,
                    kev: None,
                    allow: vec![ChangeType::Normal],
                })
                .collect(),
        }
    }

    /// Checks what serde cannot: names, numbers, coverage. The message names the rule or field.
    pub fn validate(&self) -> Result<(), CabPolicyError> {
        let fail = |message: String| Err(CabPolicyError(message));
        if self.version == 0 {
            return fail("version must be 1 or more".to_owned());
        }
        for (index, rule) in self.rules.iter().enumerate() {
            let at = format!("rule {:?}", rule.name);
            if rule.name.trim().is_empty() {
                return fail(format!("rule {} has an empty name", index + 1));
            }
            if self.rules[..index].iter().any(|r| r.name == rule.name) {
                return fail(format!("{at}: the name is used twice"));
            }
            if rule.change_type == ChangeType::Standard {
                return fail(format!(
                    "{at}: standard changes are approved by their template, not by a rule"
                ));
            }
            if rule.risk.is_empty() {
                return fail(format!("{at}: risk lists no level"));
            }
            if rule.groups.is_empty() {
                return fail(format!("{at}: groups is empty"));
            }
            for (i, group) in rule.groups.iter().enumerate() {
                check_group(&at, group)?;
                if rule.groups[..i].contains(group) {
                    return fail(format!("{at}: group {group} is listed twice"));
                }
            }
            if rule.quorum == 0 {
                return fail(format!("{at}: quorum must be 1 or more"));
            }
            for (group, min) in &rule.min_per_group {
                if !rule.groups.contains(group) {
                    return fail(format!(
                        "{at}: min_per_group names {group}, which is not one of its groups"
                    ));
                }
                if *min == 0 {
                    return fail(format!(
                        "{at}: min_per_group for {group} is 0; leave it out instead"
                    ));
                }
            }
            let seats: u32 = rule.min_per_group.values().sum();
            if seats > rule.quorum {
                return fail(format!(
                    "{at}: quorum {} is below the {seats} approvals the per-group minimums need",
                    rule.quorum
                ));
            }
            check_escalation(&at, &rule.escalation)?;
        }
        for level in RiskLevel::ALL {
            if self
                .rules
                .iter()
                .all(|r| r.change_type != ChangeType::Normal || !r.risk.contains(&level))
            {
                return fail(format!(
                    "no rule covers normal changes of {level} risk; every risk level needs one"
                ));
            }
        }
        check_group("emergency", &self.emergency.ecab_group)?;
        if self.emergency.approvals == 0 {
            return fail("emergency: approvals must be 1 or more".to_owned());
        }
        if self.emergency.retrospective_within <= SignedDuration::ZERO {
            return fail("emergency: retrospective_within must be above zero".to_owned());
        }
        check_escalation("emergency", &self.emergency.escalation)?;
        for (index, template) in self.templates.iter().enumerate() {
            if template.id.trim().is_empty() {
                return fail(format!("template {} has an empty id", index + 1));
            }
            if self.templates[..index].iter().any(|t| t.id == template.id) {
                return fail(format!("template id {:?} is used twice", template.id));
            }
            if template.packages.iter().all(|p| p.trim().is_empty()) {
                return fail(format!(
                    "template {:?}: packages lists no pattern",
                    template.id
                ));
            }
        }
        let peer = &self.peer_review;
        if !(1..=5).contains(&peer.min_criticality) {
            return fail("peer_review: min_criticality must be from 1 to 5".to_owned());
        }
        if peer.service_tiers.iter().any(|t| !(1..=5).contains(t)) {
            return fail("peer_review: service_tiers must be from 1 to 5".to_owned());
        }
        for (index, rule) in self.update_type_rules.iter().enumerate() {
            if rule.allow.is_empty() {
                return fail(format!(
                    "update_type_rule {} ({}): allow lists no change type",
                    index + 1,
                    rule.update_type
                ));
            }
        }
        for class in UpdateClass::ALL {
            if !self
                .update_type_rules
                .iter()
                .any(|r| r.update_type == class && r.kev.is_none())
            {
                return fail(format!(
                    "no update_type_rule without conditions for {class}: every update type needs one"
                ));
            }
        }
        Ok(())
    }

    /// The rule a change of this type and risk is approved by; `None` for standard changes,
    /// which their template approves.
    pub fn approval_rule(&self, kind: ChangeType, risk: RiskLevel) -> Option<ApprovalRule> {
        let spec = self
            .rules
            .iter()
            .find(|r| r.change_type == kind && r.risk.contains(&risk));
        match (kind, spec) {
            (ChangeType::Standard, _) => None,
            (_, Some(spec)) => Some(ApprovalRule {
                name: spec.name.clone(),
                groups: spec.groups.clone(),
                quorum: spec.quorum,
                min_per_group: spec.min_per_group.clone(),
                escalation: spec.escalation.clone(),
            }),
            (ChangeType::Emergency, None) => Some(self.emergency.rule()),
            // validate() guarantees coverage; an unvalidated policy falls back to the first
            // normal rule rather than letting a change through without approvers.
            (ChangeType::Normal, None) => self
                .rules
                .iter()
                .find(|r| r.change_type == ChangeType::Normal)
                .map(|spec| ApprovalRule {
                    name: spec.name.clone(),
                    groups: spec.groups.clone(),
                    quorum: spec.quorum,
                    min_per_group: spec.min_per_group.clone(),
                    escalation: spec.escalation.clone(),
                })
                .or_else(|| Self::fallback().approval_rule(ChangeType::Normal, risk)),
        }
    }

    /// The change types allowed for a change carrying `update_types`: for each update type the
    /// first rule whose condition holds, and the intersection over all of them. An update type
    /// no rule matches allows `normal` only.
    pub fn allowed_change_types(
        &self,
        update_types: &BTreeSet<UpdateClass>,
        kev: bool,
    ) -> AllowedTypes {
        let mut types: BTreeSet<ChangeType> = ChangeType::ALL.into();
        let mut reasons = Vec::new();
        for class in update_types {
            let rule = self
                .update_type_rules
                .iter()
                .enumerate()
                .find(|(_, r)| r.update_type == *class && r.kev.is_none_or(|k| k == kev));
            let allowed: BTreeSet<ChangeType> = match rule {
                Some((index, rule)) => {
                    let allowed: BTreeSet<ChangeType> = rule.allow.iter().copied().collect();
                    let condition = match rule.kev {
                        Some(true) => " (KEV-listed)",
                        Some(false) => " (not KEV-listed)",
                        None => "",
                    };
                    reasons.push(format!(
                        "{class}{condition} allows {} (update_type_rule {})",
                        join(&allowed),
                        index + 1
                    ));
                    allowed
                }
                None => {
                    reasons.push(format!("{class} has no rule: normal only"));
                    [ChangeType::Normal].into()
                }
            };
            types = types.intersection(&allowed).copied().collect();
        }
        AllowedTypes { types, reasons }
    }

    /// The template with this id.
    pub fn template(&self, id: &str) -> Option<&StandardTemplate> {
        self.templates.iter().find(|t| t.id == id)
    }
}

fn check_group(at: &str, group: &str) -> Result<(), CabPolicyError> {
    if crate::cmdb::is_label(group) {
        Ok(())
    } else {
        Err(CabPolicyError(format!(
            "{at}: {group:?} is not a group name (letters, digits, '.', '_', '-')"
        )))
    }
}

fn check_escalation(at: &str, steps: &[EscalationStep]) -> Result<(), CabPolicyError> {
    let mut previous = SignedDuration::ZERO;
    for step in steps {
        check_group(at, &step.group)?;
        if step.after <= previous {
            return Err(CabPolicyError(format!(
                "{at}: escalation to {} after {:#} must come later than {:#}, and after zero",
                step.group, step.after, previous
            )));
        }
        previous = step.after;
    }
    Ok(())
}

fn join(types: &BTreeSet<ChangeType>) -> String {
    types
        .iter()
        .map(|t| t.as_str())
        .collect::<Vec<_>>()
        .join(", ")
}

/// A policy that could not be read; the message names the rule or field.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("CAB policy: {0}")]
pub struct CabPolicyError(pub String);

/// An escalation step that fell due and has not been recorded.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Escalation {
    /// 1-based position in the rule's escalation list.
    pub step: usize,
    /// The group to ask and notify.
    pub group: String,
    /// When it fell due.
    pub due_at: Timestamp,
}

/// The escalation steps of the change's rule with their due times, counted from the start of
/// review; steps whose time overflows the calendar are left out.
fn escalation_schedule(change: &ChangeRequest) -> Vec<Escalation> {
    let (Some(rule), Some(start)) = (&change.approval_rule, change.times.review_started) else {
        return Vec::new();
    };
    rule.escalation
        .iter()
        .enumerate()
        .filter_map(|(index, step)| {
            Some(Escalation {
                step: index + 1,
                group: step.group.clone(),
                due_at: start.checked_add(step.after).ok()?,
            })
        })
        .collect()
}

/// Escalations to record now: steps whose time has passed with the change still in review and
/// not recorded yet. The server records each ([`ChangeRequest::record_escalation`]), audits it and
/// notifies the group.
pub fn escalation_due(change: &ChangeRequest, now: Timestamp) -> Vec<Escalation> {
    if change.state != super::ChangeState::InReview {
        return Vec::new();
    }
    escalation_schedule(change)
        .into_iter()
        .filter(|e| e.due_at <= now)
        .filter(|e| change.escalations.iter().all(|r| r.step != e.step))
        .collect()
}

/// The groups whose members may vote on the change at `now`: the rule's groups, then the groups
/// of escalation steps that have fallen due, in order.
pub fn eligible_groups(change: &ChangeRequest, now: Timestamp) -> Vec<String> {
    let Some(rule) = &change.approval_rule else {
        return Vec::new();
    };
    let mut groups = rule.groups.clone();
    for escalation in escalation_schedule(change) {
        if escalation.due_at <= now && !groups.contains(&escalation.group) {
            groups.push(escalation.group);
        }
    }
    groups
}

/// A vote that counts, and the group it counts for.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct CountedVote {
    /// The voter.
    pub voter: String,
    /// For or against.
    pub decision: VoteDecision,
    /// The group it was counted for.
    pub group: String,
}

/// A vote that does not count, and why.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct IgnoredVote {
    /// The voter.
    pub voter: String,
    /// Why it does not count.
    pub reason: String,
}

/// Where the vote stands.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct QuorumStatus {
    /// Quorum met, every group minimum met, and nobody eligible rejected.
    pub approved: bool,
    /// An eligible voter rejected.
    pub rejected: bool,
    /// Counted approvals.
    pub approvals: u32,
    /// `k`.
    pub quorum: u32,
    /// Approvals still needed overall.
    pub missing_overall: u32,
    /// Approvals still needed per group (only groups that lack some).
    pub missing: BTreeMap<String, u32>,
    /// Who rejected.
    pub rejected_by: Vec<String>,
    /// The votes that count.
    pub counted: Vec<CountedVote>,
    /// The votes that do not.
    pub ignored: Vec<IgnoredVote>,
    /// The status in sentences.
    pub reasons: Vec<String>,
}

/// Evaluates `votes` (normally `change.votes`, or those plus a vote being cast) against the
/// change's adopted approval rule at `now`. See the module documentation for the rules.
pub fn evaluate_votes(change: &ChangeRequest, votes: &[Vote], now: Timestamp) -> QuorumStatus {
    let Some(rule) = &change.approval_rule else {
        return QuorumStatus {
            reasons: vec!["no approval rule yet: CAB review has not started".to_owned()],
            ..QuorumStatus::default()
        };
    };
    let eligible = eligible_groups(change, now);
    let mut ordered: Vec<&Vote> = votes.iter().collect();
    ordered.sort_by(|a, b| a.at.cmp(&b.at).then_with(|| a.voter.cmp(&b.voter)));

    let mut status = QuorumStatus {
        quorum: rule.quorum,
        ..QuorumStatus::default()
    };
    let mut seen = BTreeSet::new();
    // (voter, decision, eligible groups in order)
    let mut valid: Vec<(&Vote, Vec<&str>)> = Vec::new();
    for vote in ordered {
        let ignore = |reason: &str| IgnoredVote {
            voter: vote.voter.clone(),
            reason: reason.to_owned(),
        };
        if vote.at > now {
            status
                .ignored
                .push(ignore("cast after the time of evaluation"));
        } else if vote.voter == change.requester {
            status
                .ignored
                .push(ignore("requested the change; the requester never approves"));
        } else if !seen.insert(vote.voter.as_str()) {
            status
                .ignored
                .push(ignore("voted before; one person, one vote"));
        } else {
            let groups: Vec<&str> = eligible
                .iter()
                .map(String::as_str)
                .filter(|g| vote.groups.contains(*g))
                .collect();
            if groups.is_empty() {
                status
                    .ignored
                    .push(ignore("not in an approver group for this change"));
            } else {
                valid.push((vote, groups));
            }
        }
    }

    let seats: Vec<&str> = rule
        .groups
        .iter()
        .flat_map(|g| {
            let n = rule.min_per_group.get(g).copied().unwrap_or(0);
            std::iter::repeat_n(g.as_str(), usize::try_from(n).unwrap_or(0))
        })
        .collect();
    let approvers: Vec<&(&Vote, Vec<&str>)> = valid
        .iter()
        .filter(|(v, _)| v.decision == VoteDecision::Approve)
        .collect();
    let approver_groups: Vec<Vec<&str>> = approvers.iter().map(|(_, g)| g.clone()).collect();
    let seat_of = assign_seats(&seats, &approver_groups);

    for (index, (vote, groups)) in approvers.iter().enumerate() {
        let group = seat_of
            .get(index)
            .copied()
            .flatten()
            .and_then(|s| seats.get(s))
            .or(groups.first())
            .copied()
            .unwrap_or_default();
        status.counted.push(CountedVote {
            voter: vote.voter.clone(),
            decision: VoteDecision::Approve,
            group: group.to_owned(),
        });
    }
    for (vote, groups) in valid
        .iter()
        .filter(|(v, _)| v.decision == VoteDecision::Reject)
    {
        let group = groups.first().copied().unwrap_or_default();
        status.counted.push(CountedVote {
            voter: vote.voter.clone(),
            decision: VoteDecision::Reject,
            group: group.to_owned(),
        });
        status.rejected_by.push(vote.voter.clone());
        status
            .reasons
            .push(format!("rejected by {} ({group})", vote.voter));
    }

    status.approvals = u32::try_from(approvers.len()).unwrap_or(u32::MAX);
    status.missing_overall = rule.quorum.saturating_sub(status.approvals);
    for group in &rule.groups {
        let needed = rule.min_per_group.get(group).copied().unwrap_or(0);
        if needed == 0 {
            continue;
        }
        let filled = seats
            .iter()
            .enumerate()
            .filter(|(s, g)| **g == group.as_str() && seat_of.contains(&Some(*s)))
            .count();
        let filled = u32::try_from(filled).unwrap_or(u32::MAX);
        if filled < needed {
            status.missing.insert(group.clone(), needed - filled);
            status.reasons.push(format!(
                "{group}: {filled} of the {needed} approvals it must give"
            ));
        }
    }
    status.reasons.insert(
        0,
        format!(
            "{} of {} approvals (rule {})",
            status.approvals, rule.quorum, rule.name
        ),
    );
    for ignored in &status.ignored {
        status.reasons.push(format!(
            "vote by {} does not count: {}",
            ignored.voter, ignored.reason
        ));
    }
    status.rejected = !status.rejected_by.is_empty();
    status.approved = !status.rejected && status.missing_overall == 0 && status.missing.is_empty();
    if status.approved {
        status.reasons.push("quorum met".to_owned());
    }
    status
}

/// A maximum matching of voters to per-group seats (Kuhn's augmenting paths): for each voter,
/// the index of the seat they fill, if any. Sizes are a handful of people, so the simple
/// algorithm is plenty.
fn assign_seats(seats: &[&str], voters: &[Vec<&str>]) -> Vec<Option<usize>> {
    fn augment(
        voter: usize,
        seats: &[&str],
        voters: &[Vec<&str>],
        holder: &mut [Option<usize>],
        visited: &mut [bool],
    ) -> bool {
        for (seat, group) in seats.iter().enumerate() {
            let can = voters.get(voter).is_some_and(|g| g.contains(group));
            if !can || visited[seat] {
                continue;
            }
            visited[seat] = true;
            let free = match holder[seat] {
                None => true,
                Some(other) => augment(other, seats, voters, holder, visited),
            };
            if free {
                holder[seat] = Some(voter);
                return true;
            }
        }
        false
    }
    let mut holder: Vec<Option<usize>> = vec![None; seats.len()];
    for voter in 0..voters.len() {
        let mut visited = vec![false; seats.len()];
        augment(voter, seats, voters, &mut holder, &mut visited);
    }
    let mut seat_of = vec![None; voters.len()];
    for (seat, voter) in holder.iter().enumerate() {
        if let Some(slot) = voter.and_then(|v| seat_of.get_mut(v)) {
            *slot = Some(seat);
        }
    }
    seat_of
}

/// Where an emergency change's retrospective review stands.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "status", rename_all = "kebab-case")]
pub enum RetrospectiveStatus {
    /// Not an emergency change, or not approved yet (the clock starts at e-CAB approval).
    NotRequired,
    /// Not done, deadline ahead.
    Due {
        /// The deadline.
        by: Timestamp,
    },
    /// Not done, deadline passed.
    Overdue {
        /// The deadline.
        by: Timestamp,
        /// How long ago.
        #[serde(with = "super::friendly_duration")]
        overdue_by: SignedDuration,
    },
    /// Done.
    Done {
        /// When.
        at: Timestamp,
        /// The deadline.
        by: Timestamp,
        /// Done after the deadline.
        late: bool,
    },
}

/// The retrospective review's status: the post-implementation review of an emergency change,
/// due within the policy's `retrospective_within` of e-CAB approval (the deadline is recorded on
/// the change when it is approved).
pub fn retrospective_status(change: &ChangeRequest, now: Timestamp) -> RetrospectiveStatus {
    let Some(by) = change.retrospective_due else {
        return RetrospectiveStatus::NotRequired;
    };
    match &change.review {
        Some(review) => RetrospectiveStatus::Done {
            at: review.at,
            by,
            late: review.at > by,
        },
        None if now <= by => RetrospectiveStatus::Due { by },
        None => RetrospectiveStatus::Overdue {
            by,
            overdue_by: now.duration_since(by),
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_default_policy_parses_and_round_trips() {
        let policy = CabPolicy::from_toml(DEFAULT_CAB_POLICY_TOML).unwrap();
        assert_eq!(CabPolicy::default(), policy);
        assert_eq!(policy.version, 1);
        assert_eq!(
            policy.emergency.retrospective_within,
            SignedDuration::from_hours(48)
        );
        let json = serde_json::to_value(&policy).unwrap();
        assert_eq!(json["emergency"]["retrospective_within"], "48h");
        assert_eq!(CabPolicy::from_json(json).unwrap(), policy);
        CabPolicy::fallback().validate().unwrap();
    }

    #[test]
    fn invalid_policies_name_the_problem() {
        let base = DEFAULT_CAB_POLICY_TOML;
        let cases = [
            ("version = 1", "version = 0", "version must be 1"),
            (
                "quorum = 1\nmin_per_group = { cab = 1 }",
                "quorum = 1\nmin_per_group = { cab = 2 }",
                "quorum 1 is below the 2 approvals",
            ),
            (
                "name = \"normal-low\"",
                "name = \"normal-low\"\neskalation = []",
                "eskalation",
            ),
            ("risk = [\"low\"]", "risk = [\"huge\"]", "huge"),
            ("after = \"48h\"", "after = \"0h\"", "after zero"),
            ("after = \"1h\"", "after = \"soon\"", "soon"),
            (
                "groups = [\"cab\"]",
                "groups = [\"cab\", \"cab\"]",
                "listed twice",
            ),
            (
                "min_per_group = { cab = 1 }",
                "min_per_group = { cab = 1, dba = 1 }",
                "dba, which is not one of its groups",
            ),
            (
                "ecab_group = \"ecab\"",
                "ecab_group = \"e cab\"",
                "not a group name",
            ),
            (
                "change_type = \"normal\"",
                "change_type = \"standard\"",
                "by their template",
            ),
        ];
        for (from, to, expected) in cases {
            assert!(base.contains(from), "{from}");
            let err = CabPolicy::from_toml(&base.replacen(from, to, 1)).unwrap_err();
            assert!(err.to_string().contains(expected), "{to}: {err}");
        }
        let uncovered = base.replacen("risk = [\"low\"]", "risk = [\"medium\"]", 1);
        let err = CabPolicy::from_toml(&uncovered).unwrap_err();
        assert!(err.to_string().contains("low risk"), "{err}");
        let no_rule = base.replacen(
            "update_type = \"kernel\"\nallow",
            "update_type = \"bugfix\"\nallow",
            1,
        );
        let err = CabPolicy::from_toml(&no_rule).unwrap_err();
        assert!(err.to_string().contains("for kernel"), "{err}");
    }

    #[test]
    fn update_types_map_to_change_types() {
        let policy = CabPolicy::default();
        let allowed = |classes: &[UpdateClass], kev: bool| {
            policy
                .allowed_change_types(&classes.iter().copied().collect(), kev)
                .types
        };
        use ChangeType::*;
        use UpdateClass::*;
        assert_eq!(
            allowed(&[Security], true),
            [Standard, Normal, Emergency].into()
        );
        assert_eq!(allowed(&[Security], false), [Standard, Normal].into());
        assert!(!allowed(&[Enhancement], true).contains(&Emergency));
        assert!(!allowed(&[Security, Enhancement], true).contains(&Emergency));
        assert_eq!(
            allowed(&[Security, Kernel], true),
            [Normal, Emergency].into()
        );
        assert_eq!(allowed(&[ThirdParty, Bugfix], false), [Normal].into());
        assert_eq!(allowed(&[Kernel], false), [Normal].into());
        assert_eq!(allowed(&[ThirdParty], true), [Normal, Emergency].into());
        let reasons = policy
            .allowed_change_types(&[Security].into(), true)
            .reasons;
        assert_eq!(
            reasons,
            ["security (KEV-listed) allows standard, normal, emergency (update_type_rule 1)"]
        );
    }

    #[test]
    fn seats_go_to_the_assignment_that_fills_most() {
        // Alice is in both groups; a greedy pass giving her the cab seat would leave security
        // empty. The matching gives her the security seat and bob the cab seat.
        let seats = ["cab", "security"];
        let voters = vec![vec!["cab", "security"], vec!["cab"]];
        assert_eq!(assign_seats(&seats, &voters), [Some(1), Some(0)]);
        let voters = vec![vec!["cab"], vec!["cab"]];
        assert_eq!(assign_seats(&seats, &voters), [Some(0), None]);
    }
}
