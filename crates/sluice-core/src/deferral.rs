//! Deferrals, risk acceptances and legacy pins: decisions not to fix a finding (or not to move
//! a package on a host) for a while, each with a justification, an approver and an expiry.
//!
//! A deferral postpones a fix; a risk acceptance says the risk is knowingly carried and needs the
//! `security` role to approve; a legacy pin holds a package on a host at a version, the
//! exception record for a legacy system. All expire: an expired record no longer covers its
//! finding, which is due again; renewing needs an approver again and is counted against the
//! policy's maximum. This module decides; it never stores or reads the clock.

use jiff::{SignedDuration, Timestamp};
use serde::{Deserialize, Serialize};

use crate::access::{Actor, Role};

/// The default deferral policy.
///
/// A deferral lasts at most 90 days (one patch cycle of a quarterly cadence); a risk acceptance
/// or a legacy pin at most a year, so each comes back for a yearly review. Two renewals: after
/// that the finding needs a fix or a new, fully justified record.
pub const DEFAULT_DEFERRAL_POLICY_TOML: &str = r#"version = 1
max_renewals = 2
min_justification_chars = 20

[max_days]
deferral = 90
risk-acceptance = 365
legacy-pin = 365
"#;

/// Limits on deferrals, versioned like every policy.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DeferralPolicy {
    /// The policy's version.
    pub version: u32,
    /// How many times a record may be renewed.
    pub max_renewals: u32,
    /// The shortest justification accepted, in characters.
    pub min_justification_chars: usize,
    /// The longest each kind may last, from approval or renewal.
    pub max_days: MaxDays,
}

/// The longest each kind of record may last, in days.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
pub struct MaxDays {
    /// Deferrals.
    pub deferral: u32,
    /// Risk acceptances.
    pub risk_acceptance: u32,
    /// Legacy pins.
    pub legacy_pin: u32,
}

impl Default for DeferralPolicy {
    fn default() -> Self {
        Self::from_toml(DEFAULT_DEFERRAL_POLICY_TOML).unwrap_or(Self {
            version: 1,
            max_renewals: 2,
            min_justification_chars: 20,
            max_days: MaxDays {
                deferral: 90,
                risk_acceptance: 365,
                legacy_pin: 365,
            },
        })
    }
}

impl DeferralPolicy {
    /// Parses and validates a policy written in TOML.
    pub fn from_toml(text: &str) -> Result<Self, DeferralError> {
        let policy: Self =
            toml::from_str(text).map_err(|e| DeferralError::Policy(e.to_string()))?;
        policy.validate()?;
        Ok(policy)
    }

    /// Checks the numbers.
    pub fn validate(&self) -> Result<(), DeferralError> {
        if self.version == 0 {
            return Err(DeferralError::Policy("version must be 1 or more".into()));
        }
        let days = &self.max_days;
        for (kind, max) in [
            ("deferral", days.deferral),
            ("risk-acceptance", days.risk_acceptance),
            ("legacy-pin", days.legacy_pin),
        ] {
            if !(1..=3660).contains(&max) {
                return Err(DeferralError::Policy(format!(
                    "max_days.{kind} must be from 1 to 3660, got {max}"
                )));
            }
        }
        Ok(())
    }

    /// The longest a record of this kind may last.
    pub fn max_duration(&self, kind: &DeferralKind) -> SignedDuration {
        let days = match kind {
            DeferralKind::Deferral => self.max_days.deferral,
            DeferralKind::RiskAcceptance => self.max_days.risk_acceptance,
            DeferralKind::LegacyPin { .. } => self.max_days.legacy_pin,
        };
        SignedDuration::from_hours(i64::from(days) * 24)
    }
}

/// What a record covers.
#[derive(Clone, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "kebab-case", deny_unknown_fields)]
pub enum DeferralTarget {
    /// One finding.
    Finding {
        /// The finding's id.
        id: String,
    },
    /// A package on a host, whatever advisories affect it.
    HostPackage {
        /// The host.
        host: String,
        /// The package.
        package: String,
    },
}

/// What kind of record.
#[derive(Clone, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case", deny_unknown_fields)]
pub enum DeferralKind {
    /// Fix later.
    Deferral,
    /// The risk is carried knowingly; approved by security.
    RiskAcceptance,
    /// Hold the package at this version (a legacy system's exception).
    LegacyPin {
        /// The version held.
        version: String,
    },
}

impl DeferralKind {
    /// The name used in messages.
    pub fn as_str(&self) -> &'static str {
        match self {
            Self::Deferral => "deferral",
            Self::RiskAcceptance => "risk acceptance",
            Self::LegacyPin { .. } => "legacy pin",
        }
    }

    /// The roles that may approve it.
    pub fn approver_roles(&self) -> &'static [Role] {
        match self {
            Self::RiskAcceptance => &[Role::Security],
            Self::Deferral | Self::LegacyPin { .. } => &[Role::Approver, Role::Security],
        }
    }
}

/// The request body that asks for a record.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DeferralRequest {
    /// What it covers.
    pub target: DeferralTarget,
    /// What kind.
    pub kind: DeferralKind,
    /// Why.
    pub justification: String,
    /// Until when.
    pub expires_at: Timestamp,
}

/// The roles that may ask for a record.
pub const REQUESTER_ROLES: &[Role] = &[Role::Operator, Role::Approver, Role::Security];

/// A revocation.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Revocation {
    /// Who.
    pub by: String,
    /// When.
    pub at: Timestamp,
    /// Why.
    pub reason: String,
}

/// A deferral, risk acceptance or legacy pin.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Deferral {
    /// Its id, given by the server.
    pub id: String,
    /// What it covers.
    pub target: DeferralTarget,
    /// What kind.
    pub kind: DeferralKind,
    /// Why (the latest renewal's reason, when renewed with one).
    pub justification: String,
    /// Who asked.
    pub requested_by: String,
    /// When.
    pub requested_at: Timestamp,
    /// Who approved (the latest approval or renewal).
    pub approved_by: Option<String>,
    /// When.
    pub approved_at: Option<Timestamp>,
    /// When it stops covering the target.
    pub expires_at: Timestamp,
    /// Times renewed.
    pub renewals: u32,
    /// Set when withdrawn before expiry.
    pub revoked: Option<Revocation>,
    /// The policy version it was last judged by.
    pub policy_version: u32,
}

/// Where a record stands at a moment.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "status", rename_all = "kebab-case")]
pub enum DeferralStatus {
    /// Waiting for approval; covers nothing yet.
    Pending,
    /// Covers its target.
    Active {
        /// Until.
        until: Timestamp,
    },
    /// Expired: the finding is due again.
    Expired {
        /// Since.
        since: Timestamp,
    },
    /// Withdrawn.
    Revoked {
        /// When.
        at: Timestamp,
    },
}

impl Deferral {
    /// A new, unapproved record.
    pub fn request(
        id: &str,
        request: DeferralRequest,
        requester: &Actor,
        policy: &DeferralPolicy,
        now: Timestamp,
    ) -> Result<Self, DeferralError> {
        if !requester.has_any(REQUESTER_ROLES) {
            return Err(DeferralError::MissingRole {
                user: requester.user.clone(),
                action: "request a deferral".to_owned(),
                roles: roles_text(REQUESTER_ROLES),
            });
        }
        check_target(&request.target, &request.kind)?;
        check_justification(&request.justification, policy)?;
        check_expiry(&request.kind, request.expires_at, policy, now)?;
        Ok(Self {
            id: id.to_owned(),
            target: request.target,
            kind: request.kind,
            justification: request.justification.trim().to_owned(),
            requested_by: requester.user.clone(),
            requested_at: now,
            approved_by: None,
            approved_at: None,
            expires_at: request.expires_at,
            renewals: 0,
            revoked: None,
            policy_version: policy.version,
        })
    }

    /// Approves a pending record. The approver is never the requester; a risk acceptance needs
    /// the `security` role, the others `approver` or `security`. The expiry is checked again
    /// against the policy, counted from now.
    pub fn approve(
        &mut self,
        approver: &Actor,
        policy: &DeferralPolicy,
        now: Timestamp,
    ) -> Result<(), DeferralError> {
        self.check_live(now)?;
        if self.approved_by.is_some() {
            return Err(DeferralError::AlreadyApproved {
                id: self.id.clone(),
            });
        }
        self.check_approver(approver)?;
        check_expiry(&self.kind, self.expires_at, policy, now)?;
        self.approved_by = Some(approver.user.clone());
        self.approved_at = Some(now);
        self.policy_version = policy.version;
        Ok(())
    }

    /// Renews an approved record to a new expiry, by an approver under the same rules as an
    /// approval, up to the policy's maximum number of renewals. An expired record may be renewed:
    /// that is the usual way a finding stops being due again.
    pub fn renew(
        &mut self,
        approver: &Actor,
        expires_at: Timestamp,
        justification: Option<&str>,
        policy: &DeferralPolicy,
        now: Timestamp,
    ) -> Result<(), DeferralError> {
        if let Some(revocation) = &self.revoked {
            return Err(DeferralError::Revoked {
                id: self.id.clone(),
                at: revocation.at,
            });
        }
        if self.approved_by.is_none() {
            return Err(DeferralError::NotApproved {
                id: self.id.clone(),
            });
        }
        if self.renewals >= policy.max_renewals {
            return Err(DeferralError::RenewalLimit {
                id: self.id.clone(),
                max: policy.max_renewals,
            });
        }
        self.check_approver(approver)?;
        if let Some(text) = justification {
            check_justification(text, policy)?;
        }
        check_expiry(&self.kind, expires_at, policy, now)?;
        if let Some(text) = justification {
            self.justification = text.trim().to_owned();
        }
        self.expires_at = expires_at;
        self.renewals += 1;
        self.approved_by = Some(approver.user.clone());
        self.approved_at = Some(now);
        self.policy_version = policy.version;
        Ok(())
    }

    /// Withdraws the record: the requester, or anyone who could approve it.
    pub fn revoke(
        &mut self,
        by: &Actor,
        reason: &str,
        now: Timestamp,
    ) -> Result<(), DeferralError> {
        if let Some(revocation) = &self.revoked {
            return Err(DeferralError::Revoked {
                id: self.id.clone(),
                at: revocation.at,
            });
        }
        if by.user != self.requested_by && !by.has_any(self.kind.approver_roles()) {
            return Err(DeferralError::MissingRole {
                user: by.user.clone(),
                action: format!("revoke a {} they did not request", self.kind.as_str()),
                roles: roles_text(self.kind.approver_roles()),
            });
        }
        if reason.trim().is_empty() {
            return Err(DeferralError::Invalid {
                field: "reason".to_owned(),
                reason: "a reason for revoking is required".to_owned(),
            });
        }
        self.revoked = Some(Revocation {
            by: by.user.clone(),
            at: now,
            reason: reason.trim().to_owned(),
        });
        Ok(())
    }

    /// Where the record stands at `now`.
    pub fn status(&self, now: Timestamp) -> DeferralStatus {
        if let Some(revocation) = &self.revoked {
            return DeferralStatus::Revoked { at: revocation.at };
        }
        if self.approved_by.is_none() {
            return DeferralStatus::Pending;
        }
        if now >= self.expires_at {
            DeferralStatus::Expired {
                since: self.expires_at,
            }
        } else {
            DeferralStatus::Active {
                until: self.expires_at,
            }
        }
    }

    /// Whether it covers its target at `now`: approved, not revoked, not expired.
    pub fn effective(&self, now: Timestamp) -> bool {
        matches!(self.status(now), DeferralStatus::Active { .. })
    }

    /// Whether it covers this finding (by id, or by its host and package).
    pub fn covers(&self, finding: &FindingRef) -> bool {
        match &self.target {
            DeferralTarget::Finding { id } => *id == finding.id,
            DeferralTarget::HostPackage { host, package } => {
                *host == finding.host && *package == finding.package
            }
        }
    }

    fn check_live(&self, now: Timestamp) -> Result<(), DeferralError> {
        if let Some(revocation) = &self.revoked {
            return Err(DeferralError::Revoked {
                id: self.id.clone(),
                at: revocation.at,
            });
        }
        if now >= self.expires_at {
            return Err(DeferralError::Expired {
                id: self.id.clone(),
                at: self.expires_at,
            });
        }
        Ok(())
    }

    fn check_approver(&self, approver: &Actor) -> Result<(), DeferralError> {
        if approver.user == self.requested_by {
            return Err(DeferralError::SelfApproval {
                id: self.id.clone(),
                user: approver.user.clone(),
            });
        }
        let roles = self.kind.approver_roles();
        if !approver.has_any(roles) {
            return Err(DeferralError::MissingRole {
                user: approver.user.clone(),
                action: format!("approve a {}", self.kind.as_str()),
                roles: roles_text(roles),
            });
        }
        Ok(())
    }
}

/// The finding a listing row shows, as deferrals match it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct FindingRef {
    /// The finding's id.
    pub id: String,
    /// Its host.
    pub host: String,
    /// Its package.
    pub package: String,
}

/// How deferrals bear on a finding, for the findings listing.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "standing", rename_all = "kebab-case")]
pub enum Standing {
    /// No record covers it.
    Open,
    /// A record asks to cover it but is not approved.
    Pending {
        /// The record.
        deferral: String,
    },
    /// An active record covers it: not due while it lasts.
    Deferred {
        /// The record.
        deferral: String,
        /// Deferral, risk acceptance or legacy pin.
        kind: DeferralKind,
        /// Until.
        until: Timestamp,
    },
    /// The record that covered it expired: the finding is due again.
    DueAgain {
        /// The record.
        deferral: String,
        /// Since.
        expired_at: Timestamp,
    },
}

impl Standing {
    /// Whether the finding counts as due (everything but an active record).
    pub fn due(&self) -> bool {
        !matches!(self, Standing::Deferred { .. })
    }
}

/// How `deferrals` bear on `finding` at `now`: an active record wins (the one lasting longest),
/// then the most recently expired one, then a pending one. Revoked records are ignored.
pub fn standing(finding: &FindingRef, deferrals: &[Deferral], now: Timestamp) -> Standing {
    let covering: Vec<&Deferral> = deferrals.iter().filter(|d| d.covers(finding)).collect();
    let active = covering
        .iter()
        .filter(|d| d.effective(now))
        .max_by_key(|d| d.expires_at);
    if let Some(d) = active {
        return Standing::Deferred {
            deferral: d.id.clone(),
            kind: d.kind.clone(),
            until: d.expires_at,
        };
    }
    let expired = covering
        .iter()
        .filter(|d| matches!(d.status(now), DeferralStatus::Expired { .. }))
        .max_by_key(|d| d.expires_at);
    if let Some(d) = expired {
        return Standing::DueAgain {
            deferral: d.id.clone(),
            expired_at: d.expires_at,
        };
    }
    match covering
        .iter()
        .find(|d| d.status(now) == DeferralStatus::Pending)
    {
        Some(d) => Standing::Pending {
            deferral: d.id.clone(),
        },
        None => Standing::Open,
    }
}

/// The version a legacy pin holds `package` at on `host` at `now`, if one is active. Rollouts
/// and bundles must not move the package past it.
pub fn pinned_version<'d>(
    host: &str,
    package: &str,
    deferrals: &'d [Deferral],
    now: Timestamp,
) -> Option<&'d str> {
    deferrals
        .iter()
        .filter(|d| d.effective(now))
        .find_map(|d| match (&d.target, &d.kind) {
            (
                DeferralTarget::HostPackage {
                    host: h,
                    package: p,
                },
                DeferralKind::LegacyPin { version },
            ) if h == host && p == package => Some(version.as_str()),
            _ => None,
        })
}

fn check_target(target: &DeferralTarget, kind: &DeferralKind) -> Result<(), DeferralError> {
    let empty = |field: &str| DeferralError::Invalid {
        field: field.to_owned(),
        reason: "is empty".to_owned(),
    };
    match target {
        DeferralTarget::Finding { id } if id.trim().is_empty() => return Err(empty("target.id")),
        DeferralTarget::HostPackage { host, .. } if host.trim().is_empty() => {
            return Err(empty("target.host"));
        }
        DeferralTarget::HostPackage { package, .. } if package.trim().is_empty() => {
            return Err(empty("target.package"));
        }
        _ => {}
    }
    if let DeferralKind::LegacyPin { version } = kind {
        if !matches!(target, DeferralTarget::HostPackage { .. }) {
            return Err(DeferralError::Invalid {
                field: "target".to_owned(),
                reason: "a legacy pin holds a package on a host: its target must be host-package"
                    .to_owned(),
            });
        }
        if version.trim().is_empty() {
            return Err(empty("kind.legacy-pin.version"));
        }
    }
    Ok(())
}

fn check_justification(text: &str, policy: &DeferralPolicy) -> Result<(), DeferralError> {
    let chars = text.trim().chars().count();
    if chars < policy.min_justification_chars {
        return Err(DeferralError::Invalid {
            field: "justification".to_owned(),
            reason: format!(
                "{chars} characters; at least {} are needed to say why",
                policy.min_justification_chars
            ),
        });
    }
    Ok(())
}

fn check_expiry(
    kind: &DeferralKind,
    expires_at: Timestamp,
    policy: &DeferralPolicy,
    now: Timestamp,
) -> Result<(), DeferralError> {
    if expires_at <= now {
        return Err(DeferralError::Invalid {
            field: "expires_at".to_owned(),
            reason: format!("{expires_at} is not after now ({now})"),
        });
    }
    let max = policy.max_duration(kind);
    let asked = expires_at.duration_since(now);
    if asked > max {
        return Err(DeferralError::TooLong {
            kind: kind.as_str().to_owned(),
            max_days: max.as_hours() / 24,
            asked_days: (asked.as_secs() + 86_399) / 86_400,
        });
    }
    Ok(())
}

fn roles_text(roles: &[Role]) -> String {
    roles
        .iter()
        .map(|r| r.as_str())
        .collect::<Vec<_>>()
        .join(" or ")
}

/// Why a deferral was refused; every variant names the record, the person or the field.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DeferralError {
    /// A field with a wrong value.
    #[error("{field}: {reason}")]
    Invalid {
        /// The field.
        field: String,
        /// What is wrong.
        reason: String,
    },
    /// Longer than the policy allows.
    #[error("a {kind} may last at most {max_days} days; this one asks for {asked_days}")]
    TooLong {
        /// The kind.
        kind: String,
        /// The policy's maximum.
        max_days: i64,
        /// What was asked.
        asked_days: i64,
    },
    /// The requester approving their own record.
    #[error("{user} requested deferral {id} and cannot approve it; another person must")]
    SelfApproval {
        /// The record.
        id: String,
        /// The person.
        user: String,
    },
    /// The actor lacks the role.
    #[error("{user} cannot {action}: it needs the role {roles}")]
    MissingRole {
        /// The person.
        user: String,
        /// What they tried.
        action: String,
        /// The roles that would do.
        roles: String,
    },
    /// Approved twice.
    #[error("deferral {id} is already approved; renew it to extend it")]
    AlreadyApproved {
        /// The record.
        id: String,
    },
    /// Renewing an unapproved record.
    #[error("deferral {id} was never approved; approve it instead")]
    NotApproved {
        /// The record.
        id: String,
    },
    /// Acting on an expired record.
    #[error("deferral {id} expired at {at}")]
    Expired {
        /// The record.
        id: String,
        /// When.
        at: Timestamp,
    },
    /// Acting on a revoked record.
    #[error("deferral {id} was revoked at {at}")]
    Revoked {
        /// The record.
        id: String,
        /// When.
        at: Timestamp,
    },
    /// Renewed too often.
    #[error(
        "deferral {id} has been renewed {max} times, the policy's maximum; fix the finding or request a new record"
    )]
    RenewalLimit {
        /// The record.
        id: String,
        /// The maximum.
        max: u32,
    },
    /// A policy that could not be read.
    #[error("deferral policy: {0}")]
    Policy(String),
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(text: &str) -> Timestamp {
        text.parse().unwrap()
    }

    fn actor(user: &str, roles: &[Role]) -> Actor {
        Actor::new(user, roles.iter().copied(), [])
    }

    fn request(kind: DeferralKind, expires_at: &str) -> DeferralRequest {
        DeferralRequest {
            target: DeferralTarget::HostPackage {
                host: "pos1".to_owned(),
                package: "openssl".to_owned(),
            },
            kind,
            justification: "vendor certifies the POS software on this build only".to_owned(),
            expires_at: at(expires_at),
        }
    }

    #[test]
    fn the_default_policy_parses() {
        let policy = DeferralPolicy::from_toml(DEFAULT_DEFERRAL_POLICY_TOML).unwrap();
        assert_eq!(policy, DeferralPolicy::default());
        assert_eq!(policy.max_days.risk_acceptance, 365);
        let err = DeferralPolicy::from_toml("version = 1\nmax_renewals = 1\nmin_justification_chars = 1\n[max_days]\ndeferral = 0\nrisk-acceptance = 1\nlegacy-pin = 1\n").unwrap_err();
        assert!(err.to_string().contains("max_days.deferral"), "{err}");
    }

    #[test]
    fn risk_acceptance_needs_security_and_another_person() {
        let policy = DeferralPolicy::default();
        let now = at("2026-11-02T09:00:00Z");
        let alice = actor("alice", &[Role::Operator]);
        let mut record = Deferral::request(
            "d1",
            request(DeferralKind::RiskAcceptance, "2027-05-01T00:00:00Z"),
            &alice,
            &policy,
            now,
        )
        .unwrap();
        assert_eq!(record.status(now), DeferralStatus::Pending);

        let err = record.approve(&alice, &policy, now).unwrap_err();
        assert!(matches!(err, DeferralError::SelfApproval { .. }), "{err}");
        let approver = actor("bob", &[Role::Approver]);
        let err = record.approve(&approver, &policy, now).unwrap_err();
        assert_eq!(
            err.to_string(),
            "bob cannot approve a risk acceptance: it needs the role security"
        );
        record
            .approve(&actor("sec", &[Role::Security]), &policy, now)
            .unwrap();
        assert!(record.effective(now));
        assert_eq!(
            record
                .approve(&actor("sec2", &[Role::Security]), &policy, now)
                .unwrap_err(),
            DeferralError::AlreadyApproved { id: "d1".into() }
        );
    }

    #[test]
    fn limits_from_policy() {
        let policy = DeferralPolicy::default();
        let now = at("2026-11-02T09:00:00Z");
        let alice = actor("alice", &[Role::Operator]);
        let err = Deferral::request(
            "d2",
            request(DeferralKind::Deferral, "2027-03-01T00:00:00Z"),
            &alice,
            &policy,
            now,
        )
        .unwrap_err();
        assert_eq!(
            err.to_string(),
            "a deferral may last at most 90 days; this one asks for 119"
        );
        let mut short = request(DeferralKind::Deferral, "2026-12-01T00:00:00Z");
        short.justification = "later".to_owned();
        let err = Deferral::request("d3", short, &alice, &policy, now).unwrap_err();
        assert!(
            err.to_string().starts_with("justification: 5 characters"),
            "{err}"
        );
        let mut pin = request(
            DeferralKind::LegacyPin {
                version: "1.1.1n-0+deb11u5".to_owned(),
            },
            "2027-06-01T00:00:00Z",
        );
        pin.target = DeferralTarget::Finding {
            id: "f1".to_owned(),
        };
        let err = Deferral::request("d4", pin, &alice, &policy, now).unwrap_err();
        assert!(err.to_string().contains("host-package"), "{err}");
        let viewer = actor("vic", &[Role::Viewer]);
        let err = Deferral::request(
            "d5",
            request(DeferralKind::Deferral, "2026-12-01T00:00:00Z"),
            &viewer,
            &policy,
            now,
        )
        .unwrap_err();
        assert!(matches!(err, DeferralError::MissingRole { .. }), "{err}");
    }

    #[test]
    fn pins_hold_versions_while_active() {
        let policy = DeferralPolicy::default();
        let now = at("2026-11-02T09:00:00Z");
        let mut pin = Deferral::request(
            "p1",
            request(
                DeferralKind::LegacyPin {
                    version: "1.1.1n-0+deb11u5".to_owned(),
                },
                "2027-06-01T00:00:00Z",
            ),
            &actor("alice", &[Role::Operator]),
            &policy,
            now,
        )
        .unwrap();
        let records = [pin.clone()];
        assert_eq!(pinned_version("pos1", "openssl", &records, now), None);
        pin.approve(&actor("bob", &[Role::Approver]), &policy, now)
            .unwrap();
        let records = [pin];
        assert_eq!(
            pinned_version("pos1", "openssl", &records, now),
            Some("1.1.1n-0+deb11u5")
        );
        assert_eq!(pinned_version("pos2", "openssl", &records, now), None);
        assert_eq!(
            pinned_version("pos1", "openssl", &records, at("2027-06-01T00:00:00Z")),
            None
        );
    }
}
