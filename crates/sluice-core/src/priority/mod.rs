//! Priority: how urgent a finding is on a particular asset, and by when it must be fixed.
//!
//! The vulnerability (CVSS, CISA KEV listing, EPSS probability) and the asset (criticality,
//! exposure, regulated data) feed CISA's SSVC decision table ([`ssvc`]), which gives the
//! decision `act`, `attend`, `track*` or `track`, plus a 0–100 score that orders findings inside
//! and across decisions. The due date comes from a tier policy ([`policy`]). Everything here is a
//! pure function of its inputs; the caller passes today's date.

pub mod policy;
pub mod ssvc;

use serde::{Deserialize, Serialize};

use crate::advisory::VendorSeverity;
use crate::asset::{AssetProfile, Exposure};
use crate::cvss::{Cvss, Severity};

pub use policy::{PolicyError, PriorityPolicy, Tier};
pub use ssvc::{Decision, Exploitation, MissionImpact, SsvcInputs, TechnicalImpact};

/// What is known about a vulnerability, gathered from the advisory and its CVEs.
#[derive(Clone, Debug, Default)]
pub struct VulnerabilityFacts {
    /// The highest-scoring CVSS vector among the advisory and its CVEs.
    pub cvss: Option<Cvss>,
    /// Listed in CISA's Known Exploited Vulnerabilities catalog.
    pub kev: bool,
    /// The highest EPSS probability among its CVEs.
    pub epss: Option<f64>,
    /// The distributor's own rating, used when no CVSS vector is known.
    pub vendor_severity: Option<VendorSeverity>,
}

impl VulnerabilityFacts {
    /// The qualitative severity: CVSS's when known, else the distributor's mapped onto CVSS's
    /// scale (Critical→Critical, Important→High, Moderate→Medium, Low→Low), else `None`.
    pub fn severity(&self) -> Option<Severity> {
        if let Some(cvss) = &self.cvss {
            return Some(cvss.severity());
        }
        self.vendor_severity.map(|v| match v {
            VendorSeverity::Critical => Severity::Critical,
            VendorSeverity::Important => Severity::High,
            VendorSeverity::Moderate => Severity::Medium,
            VendorSeverity::Low => Severity::Low,
        })
    }

    /// A 0–10 severity number: the CVSS score, else the middle of the mapped band.
    pub fn severity_number(&self) -> f64 {
        if let Some(cvss) = &self.cvss {
            return cvss.score();
        }
        match self.severity() {
            Some(Severity::Critical) => 9.5,
            Some(Severity::High) => 8.0,
            Some(Severity::Medium) => 5.5,
            Some(Severity::Low) => 2.0,
            Some(Severity::None) | None => 0.0,
        }
    }
}

/// The outcome of prioritising one finding.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Assessment {
    /// SSVC decision.
    pub decision: Decision,
    /// 0–100, one decimal; higher is more urgent. Decisions occupy bands (`track` 0–25,
    /// `track*` 25–50, `attend` 50–75, `act` 75–100), so sorting by score sorts by decision first.
    pub score: f64,
    /// The decision points as evaluated, to explain the decision.
    pub inputs: SsvcInputs,
    /// The qualitative severity used by the tier policy.
    pub severity: Option<Severity>,
    /// The tier that set the due date.
    pub tier: String,
    /// Days from detection to the due date.
    pub due_in_days: u32,
}

/// Prioritises one vulnerability on one asset.
pub fn assess(
    facts: &VulnerabilityFacts,
    asset: &AssetProfile,
    policy: &PriorityPolicy,
) -> Assessment {
    let inputs = SsvcInputs::derive(facts, asset, policy.epss_poc_threshold);
    let decision = ssvc::decide(&inputs);
    let band = match decision {
        Decision::Track => 0.0,
        Decision::TrackStar => 25.0,
        Decision::Attend => 50.0,
        Decision::Act => 75.0,
    };
    let exposure = match asset.exposure {
        Exposure::Internet => 2.0,
        Exposure::Internal => 1.0,
        Exposure::Isolated => 0.0,
    };
    let within = facts.severity_number() * 1.2
        + facts.epss.unwrap_or(0.0).clamp(0.0, 1.0) * 5.0
        + if facts.kev { 3.0 } else { 0.0 }
        + f64::from(asset.criticality.clamp(1, 5) - 1) * 0.75
        + exposure;
    let score = ((band + within.clamp(0.0, 25.0)) * 10.0).round() / 10.0;
    let severity = facts.severity();
    let tier = policy.tier_for(decision, severity, facts.kev, asset);
    Assessment {
        decision,
        score,
        inputs,
        severity,
        tier: tier.name.clone(),
        due_in_days: tier.days,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn facts(vector: Option<&str>, kev: bool, epss: Option<f64>) -> VulnerabilityFacts {
        VulnerabilityFacts {
            cvss: vector.map(|v| Cvss::parse(v).unwrap()),
            kev,
            epss,
            vendor_severity: None,
        }
    }

    const CRITICAL_NETWORK: &str = "CVSS:3.1/AV:N/AC:L/PR:N/UI:N/S:U/C:H/I:H/A:H";
    const LOCAL_LOW: &str = "CVSS:3.1/AV:L/AC:H/PR:H/UI:R/S:U/C:L/I:N/A:N";

    #[test]
    fn kev_on_a_critical_internet_host_is_act_due_in_a_week() {
        let asset = AssetProfile {
            criticality: 5,
            exposure: Exposure::Internet,
            ..AssetProfile::default()
        };
        let a = assess(
            &facts(Some(CRITICAL_NETWORK), true, Some(0.9)),
            &asset,
            &PriorityPolicy::default(),
        );
        assert_eq!(a.decision, Decision::Act);
        assert_eq!(a.tier, "kev-internet");
        assert_eq!(a.due_in_days, 7);
        assert!(a.score > 95.0, "{}", a.score);
    }

    #[test]
    fn a_local_low_on_a_minor_host_is_track() {
        let asset = AssetProfile {
            criticality: 1,
            ..AssetProfile::default()
        };
        let a = assess(
            &facts(Some(LOCAL_LOW), false, Some(0.001)),
            &asset,
            &PriorityPolicy::default(),
        );
        assert_eq!(a.decision, Decision::Track);
        assert!(a.score < 25.0);
        assert_eq!(a.tier, "low");
        assert_eq!(a.due_in_days, 180);
    }

    #[test]
    fn isolation_removes_automatability() {
        let mut asset = AssetProfile {
            criticality: 5,
            ..AssetProfile::default()
        };
        let f = facts(Some(CRITICAL_NETWORK), false, None);
        let internal = assess(&f, &asset, &PriorityPolicy::default());
        asset.exposure = Exposure::Isolated;
        let isolated = assess(&f, &asset, &PriorityPolicy::default());
        assert!(internal.inputs.automatable && !isolated.inputs.automatable);
        assert!(isolated.score < internal.score);
    }

    #[test]
    fn vendor_severity_stands_in_for_missing_cvss() {
        let f = VulnerabilityFacts {
            vendor_severity: Some(VendorSeverity::Important),
            ..VulnerabilityFacts::default()
        };
        assert_eq!(f.severity(), Some(Severity::High));
        let a = assess(&f, &AssetProfile::default(), &PriorityPolicy::default());
        assert_eq!(a.tier, "high");
    }

    #[test]
    fn without_any_severity_internet_hosts_are_assumed_automatable() {
        let f = facts(None, true, None);
        let mut asset = AssetProfile {
            criticality: 4,
            exposure: Exposure::Internet,
            ..AssetProfile::default()
        };
        let a = assess(&f, &asset, &PriorityPolicy::default());
        assert_eq!(
            a.decision,
            Decision::Act,
            "a KEV entry on an essential internet host"
        );
        assert_eq!(a.due_in_days, 7);
        asset.exposure = Exposure::Internal;
        let a = assess(&f, &asset, &PriorityPolicy::default());
        assert_eq!(a.decision, Decision::Attend);
        let unknown = assess(
            &facts(None, false, None),
            &asset,
            &PriorityPolicy::default(),
        );
        assert_eq!(unknown.tier, "default");
        assert_eq!(unknown.due_in_days, 90);
    }

    #[test]
    fn pci_critical_is_due_in_thirty_days() {
        let asset = AssetProfile {
            criticality: 2,
            data_classes: ["pci".to_owned()].into(),
            ..AssetProfile::default()
        };
        let a = assess(
            &facts(Some(CRITICAL_NETWORK), false, None),
            &asset,
            &PriorityPolicy::default(),
        );
        assert_eq!(a.tier, "pci-critical");
        assert_eq!(a.due_in_days, 30);
    }
}
