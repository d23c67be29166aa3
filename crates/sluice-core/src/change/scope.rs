//! What a change's scope touches, reduced to the facts governance weighs: the hosts (how
//! critical, how exposed) and the services they run. Risk and the peer-review requirement are
//! both computed from these facts, so the CMDB is read once per assessment.

use serde::{Deserialize, Serialize};

use super::cab::{CabPolicy, PeerReviewPolicy};
use super::model::{Assessment, ChangeRequest};
use super::risk::{self, History, RiskInputs};
use crate::asset::Exposure;
use crate::cmdb::{Asset, Selector, Service};

/// How many names a reason lists before it says "and N more".
const NAMES_IN_REASON: usize = 5;

/// One host in scope.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct HostFacts {
    /// Host name.
    pub hostname: String,
    /// Criticality 1–5.
    pub criticality: u8,
    /// Exposure.
    pub exposure: Exposure,
}

/// One service with members in scope.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ServiceFacts {
    /// Service name.
    pub name: String,
    /// Its tier (1 most important), when rated.
    pub tier: Option<u8>,
}

/// The hosts and services a scope touches.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ScopeFacts {
    /// Hosts the selector matches.
    pub hosts: Vec<HostFacts>,
    /// Services with at least one member among them.
    pub services: Vec<ServiceFacts>,
}

impl ScopeFacts {
    /// The facts of `scope` over the CMDB's assets and services.
    pub fn collect(scope: &Selector, assets: &[Asset], services: &[Service]) -> Self {
        let hosts: Vec<HostFacts> = scope
            .filter(assets)
            .map(|asset| HostFacts {
                hostname: asset.hostname.clone(),
                criticality: asset.criticality,
                exposure: asset.exposure,
            })
            .collect();
        let services = services
            .iter()
            .filter(|service| hosts.iter().any(|h| service.members.contains(&h.hostname)))
            .map(|service| ServiceFacts {
                name: service.name.clone(),
                tier: service.tier,
            })
            .collect();
        Self { hosts, services }
    }

    /// Risk inputs from these facts plus what only the change and history know.
    pub fn risk_inputs(
        &self,
        change: &ChangeRequest,
        reboot_needed: bool,
        history: History,
    ) -> RiskInputs {
        RiskInputs {
            max_criticality: self.hosts.iter().map(|h| h.criticality).max().unwrap_or(0),
            hosts: self.hosts.len(),
            services: self.services.len(),
            tier1_services: self.services.iter().filter(|s| s.tier == Some(1)).count(),
            internet_facing_hosts: self
                .hosts
                .iter()
                .filter(|h| h.exposure == Exposure::Internet)
                .count(),
            update_types: change.update_types.clone(),
            reboot_needed: reboot_needed || change.reboot_expected(),
            history,
        }
    }
}

/// Whether a change's plan needs a peer's sign-off before CAB review, and why.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct PeerReviewNeed {
    /// Needed.
    pub required: bool,
    /// The high-impact hosts and services that make it needed.
    pub reasons: Vec<String>,
}

impl PeerReviewPolicy {
    /// Peer review is needed when the scope holds a host of at least `min_criticality` or a
    /// member of a service whose tier is listed.
    pub fn requirement(&self, facts: &ScopeFacts) -> PeerReviewNeed {
        let mut reasons = Vec::new();
        let critical: Vec<&str> = facts
            .hosts
            .iter()
            .filter(|h| h.criticality >= self.min_criticality)
            .map(|h| h.hostname.as_str())
            .collect();
        if !critical.is_empty() {
            reasons.push(format!(
                "{} host(s) with criticality {} or more: {}",
                critical.len(),
                self.min_criticality,
                name_list(&critical)
            ));
        }
        for service in &facts.services {
            if let Some(tier) = service.tier.filter(|t| self.service_tiers.contains(t)) {
                reasons.push(format!("service {} is tier {tier}", service.name));
            }
        }
        PeerReviewNeed {
            required: !reasons.is_empty(),
            reasons,
        }
    }
}

/// The assessment of a draft: risk from the facts, the change and its history, and the peer
/// review requirement from the policy. The server stores it with
/// [`ChangeRequest::set_assessment`].
pub fn assess(
    change: &ChangeRequest,
    facts: &ScopeFacts,
    reboot_needed: bool,
    history: History,
    policy: &CabPolicy,
    now: jiff::Timestamp,
) -> Assessment {
    Assessment {
        risk: risk::assess(&facts.risk_inputs(change, reboot_needed, history)),
        peer_review: policy.peer_review.requirement(facts),
        assessed_at: now,
    }
}

fn name_list(names: &[&str]) -> String {
    let shown = names
        .iter()
        .take(NAMES_IN_REASON)
        .copied()
        .collect::<Vec<_>>()
        .join(", ");
    match names.len().saturating_sub(NAMES_IN_REASON) {
        0 => shown,
        more => format!("{shown} and {more} more"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn host(name: &str, criticality: u8, exposure: Exposure) -> HostFacts {
        HostFacts {
            hostname: name.to_owned(),
            criticality,
            exposure,
        }
    }

    #[test]
    fn peer_review_follows_criticality_and_tiers() {
        let policy = PeerReviewPolicy::default();
        let quiet = ScopeFacts {
            hosts: vec![host("build1", 2, Exposure::Internal)],
            services: vec![ServiceFacts {
                name: "ci".to_owned(),
                tier: Some(3),
            }],
        };
        assert!(!policy.requirement(&quiet).required);

        let hosts = (1..=7)
            .map(|i| host(&format!("db{i}"), 4, Exposure::Internal))
            .collect();
        let loud = ScopeFacts {
            hosts,
            services: vec![ServiceFacts {
                name: "payments".to_owned(),
                tier: Some(1),
            }],
        };
        let need = policy.requirement(&loud);
        assert!(need.required);
        assert_eq!(
            need.reasons,
            [
                "7 host(s) with criticality 4 or more: db1, db2, db3, db4, db5 and 2 more",
                "service payments is tier 1"
            ]
        );
    }
}
