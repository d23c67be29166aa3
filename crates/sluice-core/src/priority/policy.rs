//! Due-date tiers: a policy, written in TOML, that says how many days a finding may stay open.
//!
//! Tiers are tried in order and the first whose conditions all hold sets the due date; the last
//! tier must have no conditions so every finding gets one. A condition left out matches anything.
//!
//! ```toml
//! epss_poc_threshold = 0.1      # EPSS probability counted as "PoC" exploitation
//!
//! [[tier]]
//! name = "kev-internet"
//! kev = true
//! exposure = ["internet"]
//! days = 7
//!
//! [[tier]]
//! name = "pci-critical"
//! data_classes = ["pci"]        # any of these
//! min_severity = "Critical"
//! days = 30
//!
//! [[tier]]
//! name = "default"
//! days = 180
//! ```
//! Other conditions: `decision = ["act", "attend"]`, `min_criticality = 4`.

use serde::{Deserialize, Serialize};

use super::Decision;
use crate::asset::{AssetProfile, Exposure};
use crate::cvss::Severity;

/// One tier.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Tier {
    /// Name, shown with each finding.
    pub name: String,
    /// Days from detection to the due date.
    pub days: u32,
    /// Holds when the KEV listing equals this.
    pub kev: Option<bool>,
    /// Holds when the asset's exposure is one of these.
    pub exposure: Option<Vec<Exposure>>,
    /// Holds when the SSVC decision is one of these.
    pub decision: Option<Vec<Decision>>,
    /// Holds when the severity is at least this.
    pub min_severity: Option<Severity>,
    /// Holds when the asset holds any of these data classes.
    pub data_classes: Option<Vec<String>>,
    /// Holds when the asset's criticality is at least this.
    pub min_criticality: Option<u8>,
}

impl Tier {
    fn unconditional(&self) -> bool {
        self.kev.is_none()
            && self.exposure.is_none()
            && self.decision.is_none()
            && self.min_severity.is_none()
            && self.data_classes.is_none()
            && self.min_criticality.is_none()
    }

    fn holds(
        &self,
        decision: Decision,
        severity: Option<Severity>,
        kev: bool,
        asset: &AssetProfile,
    ) -> bool {
        self.kev.is_none_or(|k| k == kev)
            && self
                .exposure
                .as_ref()
                .is_none_or(|e| e.contains(&asset.exposure))
            && self.decision.as_ref().is_none_or(|d| d.contains(&decision))
            && self
                .min_severity
                .is_none_or(|min| severity.is_some_and(|s| s >= min))
            && self.data_classes.as_ref().is_none_or(|classes| {
                classes
                    .iter()
                    .any(|c| asset.data_classes.contains(&c.to_ascii_lowercase()))
            })
            && self
                .min_criticality
                .is_none_or(|min| asset.criticality >= min)
    }
}

/// The prioritisation policy: the EPSS threshold and the due-date tiers.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PriorityPolicy {
    /// EPSS probability from which exploitation counts as `poc`.
    #[serde(default = "default_threshold")]
    pub epss_poc_threshold: f64,
    /// Tiers, first match wins.
    #[serde(rename = "tier")]
    pub tiers: Vec<Tier>,
}

fn default_threshold() -> f64 {
    0.1
}

/// The default policy as TOML: the shipped, documented defaults.
///
/// They follow common regulatory clocks: CISA BOD 22-01 gives KEV-listed vulnerabilities two
/// weeks (one week here when the host faces the internet); PCI DSS 4.0 requirement 6.3.3 gives
/// critical fixes one month on in-scope systems.
pub const DEFAULT_POLICY_TOML: &str = r#"epss_poc_threshold = 0.1

[[tier]]
name = "kev-internet"
kev = true
exposure = ["internet"]
days = 7

[[tier]]
name = "act"
decision = ["act"]
days = 7

[[tier]]
name = "kev"
kev = true
days = 14

[[tier]]
name = "critical-internet"
min_severity = "Critical"
exposure = ["internet"]
days = 15

[[tier]]
name = "pci-critical"
data_classes = ["pci"]
min_severity = "Critical"
days = 30

[[tier]]
name = "attend"
decision = ["attend"]
days = 30

[[tier]]
name = "critical"
min_severity = "Critical"
days = 30

[[tier]]
name = "high"
min_severity = "High"
days = 60

[[tier]]
name = "medium"
min_severity = "Medium"
days = 90

[[tier]]
name = "low"
min_severity = "Low"
days = 180

[[tier]]
name = "default"
days = 90
"#;

impl Default for PriorityPolicy {
    fn default() -> Self {
        // The default text is a constant checked by a test; fall back to a single tier rather
        // than panic if it were ever broken.
        Self::from_toml(DEFAULT_POLICY_TOML).unwrap_or_else(|_| Self {
            epss_poc_threshold: default_threshold(),
            tiers: vec![Tier {
                name: "default".to_owned(),
                ..FALLBACK_TIER.clone()
            }],
        })
    }
}

impl PriorityPolicy {
    /// Parses and validates a policy.
    pub fn from_toml(text: &str) -> Result<Self, PolicyError> {
        let policy: Self = toml::from_str(text).map_err(|e| PolicyError(e.to_string()))?;
        policy.validate()?;
        Ok(policy)
    }

    fn validate(&self) -> Result<(), PolicyError> {
        if !(0.0..=1.0).contains(&self.epss_poc_threshold) {
            return Err(PolicyError(format!(
                "epss_poc_threshold must be from 0 to 1, got {}",
                self.epss_poc_threshold
            )));
        }
        let Some(last) = self.tiers.last() else {
            return Err(PolicyError(
                "no [[tier]]: at least one tier is needed".to_owned(),
            ));
        };
        if !last.unconditional() {
            return Err(PolicyError(format!(
                "the last tier ({:?}) must have no conditions, so that every finding gets a due date",
                last.name
            )));
        }
        for (index, tier) in self.tiers.iter().enumerate() {
            if tier.name.trim().is_empty() {
                return Err(PolicyError(format!("tier {} has an empty name", index + 1)));
            }
            if self.tiers[..index].iter().any(|t| t.name == tier.name) {
                return Err(PolicyError(format!(
                    "tier name {:?} is used twice",
                    tier.name
                )));
            }
            if tier.min_criticality.is_some_and(|c| !(1..=5).contains(&c)) {
                return Err(PolicyError(format!(
                    "tier {:?}: min_criticality must be from 1 to 5",
                    tier.name
                )));
            }
        }
        Ok(())
    }

    /// The first tier whose conditions hold.
    pub fn tier_for(
        &self,
        decision: Decision,
        severity: Option<Severity>,
        kev: bool,
        asset: &AssetProfile,
    ) -> &Tier {
        // validate() guarantees the last tier is unconditional, so the search always succeeds;
        // the fallback to the last tier keeps this total for hand-built policies too.
        self.tiers
            .iter()
            .find(|tier| tier.holds(decision, severity, kev, asset))
            .or(self.tiers.last())
            .unwrap_or(&FALLBACK_TIER)
    }
}

/// The one tier of the fallback policy, also the answer for a hand-built policy without tiers.
static FALLBACK_TIER: Tier = Tier {
    name: String::new(),
    days: 90,
    kev: None,
    exposure: None,
    decision: None,
    min_severity: None,
    data_classes: None,
    min_criticality: None,
};

/// A policy that could not be read; the message names the field and, for TOML errors, the line.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("priority policy: {0}")]
pub struct PolicyError(pub String);

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_default_policy_parses() {
        let policy = PriorityPolicy::from_toml(DEFAULT_POLICY_TOML).unwrap();
        assert_eq!(policy.tiers.first().unwrap().name, "kev-internet");
        assert_eq!(PriorityPolicy::default(), policy);
    }

    #[test]
    fn invalid_policies_are_rejected_with_the_reason() {
        let err = PriorityPolicy::from_toml("[[tier]]\nname = \"x\"\ndays = 3\nkev = true\n")
            .unwrap_err();
        assert!(err.to_string().contains("must have no conditions"), "{err}");
        let err = PriorityPolicy::from_toml("[[tier]]\nname = \"x\"\ndays = 3\nkve = true\n")
            .unwrap_err();
        assert!(err.to_string().contains("kve"), "{err}");
        let err = PriorityPolicy::from_toml("[[tier]]\nname = \"x\"\ndays = -3\n").unwrap_err();
        assert!(err.to_string().contains("days"), "{err}");
        let err = PriorityPolicy::from_toml(
            "[[tier]]\nname = \"x\"\ndays = 3\nmin_severity = \"Severe\"\n",
        )
        .unwrap_err();
        assert!(err.to_string().contains("Severe"), "{err}");
        let err = PriorityPolicy::from_toml("tier = []\n").unwrap_err();
        assert!(err.to_string().contains("at least one tier"), "{err}");
    }

    #[test]
    fn first_matching_tier_wins() {
        let text = "[[tier]]\nname = \"crown-jewels\"\nmin_criticality = 5\ndays = 3\n\n[[tier]]\nname = \"rest\"\ndays = 45\n";
        let policy = PriorityPolicy::from_toml(text).unwrap();
        let mut asset = AssetProfile::default();
        assert_eq!(
            policy.tier_for(Decision::Track, None, false, &asset).name,
            "rest"
        );
        asset.criticality = 5;
        assert_eq!(
            policy.tier_for(Decision::Track, None, false, &asset).days,
            3
        );
    }
}
