//! CISA's SSVC decision table (CISA Coordinator 2.0.3): exploitation × automatable × technical
//! impact × mission and well-being → track, track*, attend, act.
//!
//! Sluice has no analyst in the loop at scan time, so each decision point is derived from data,
//! as documented on [`SsvcInputs::derive`].

use std::fmt;

use serde::{Deserialize, Serialize};

use super::VulnerabilityFacts;
use crate::advisory::VendorSeverity;
use crate::asset::{AssetProfile, Exposure};

/// SSVC decision, least to most urgent.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub enum Decision {
    /// Remediate within standard update timelines.
    #[serde(rename = "track")]
    Track,
    /// Standard timelines, but watch closely for changes.
    #[serde(rename = "track*")]
    TrackStar,
    /// Remediate sooner than standard timelines; supervisors informed.
    #[serde(rename = "attend")]
    Attend,
    /// Remediate as soon as possible; leadership informed.
    #[serde(rename = "act")]
    Act,
}

impl Decision {
    /// The decision's name as SSVC writes it in lower case.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Track => "track",
            Self::TrackStar => "track*",
            Self::Attend => "attend",
            Self::Act => "act",
        }
    }
}

impl fmt::Display for Decision {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl std::str::FromStr for Decision {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s.trim().to_ascii_lowercase().as_str() {
            "track" => Ok(Self::Track),
            "track*" | "track-star" | "trackstar" => Ok(Self::TrackStar),
            "attend" => Ok(Self::Attend),
            "act" => Ok(Self::Act),
            other => Err(format!(
                "unknown decision {other:?}: expected track, track*, attend or act"
            )),
        }
    }
}

/// SSVC Exploitation.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Exploitation {
    /// No evidence of exploitation.
    None,
    /// Proof of concept or a likely method of exploitation.
    Poc,
    /// Exploited in the wild.
    Active,
}

/// SSVC Technical Impact.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum TechnicalImpact {
    /// Limited control or disclosure.
    Partial,
    /// Total control of the component or total disclosure.
    Total,
}

/// SSVC Mission and Well-being Impact.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum MissionImpact {
    /// Low.
    Low,
    /// Medium.
    Medium,
    /// High.
    High,
}

/// The four decision points.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct SsvcInputs {
    /// Exploitation.
    pub exploitation: Exploitation,
    /// Automatable.
    pub automatable: bool,
    /// Technical impact.
    pub technical_impact: TechnicalImpact,
    /// Mission and well-being impact.
    pub mission: MissionImpact,
}

impl SsvcInputs {
    /// Derives the decision points from data:
    /// - Exploitation: `active` when CISA KEV lists a CVE of the advisory; `poc` when the
    ///   highest EPSS probability reaches `epss_poc_threshold` (an exploitation-likelihood proxy
    ///   for "public PoC", which no feed here states); else `none`.
    /// - Automatable: the CVSS vector is network-reachable with low complexity, no privileges and
    ///   no user interaction (and, for 4.0, no attack requirements), and the asset is not isolated.
    ///   Without a vector: yes on internet-facing hosts, no elsewhere (SSVC asks for a reasonable
    ///   assumption instead of "unknown"; a security tool should assume the worse one where an
    ///   attacker can reach the host).
    /// - Technical impact: `total` when the vector has high confidentiality and integrity impact;
    ///   without a vector, when the distributor rates the advisory Critical; else `partial`.
    /// - Mission and well-being: CISA's table of mission prevalence (criticality 1–2 minimal,
    ///   3 support, 4–5 essential) and public well-being impact (data classes `safety` →
    ///   irreversible; `phi`, `pci`, `pii` → material; otherwise minimal).
    pub fn derive(
        facts: &VulnerabilityFacts,
        asset: &AssetProfile,
        epss_poc_threshold: f64,
    ) -> Self {
        let exploitation = if facts.kev {
            Exploitation::Active
        } else if facts.epss.is_some_and(|p| p >= epss_poc_threshold) {
            Exploitation::Poc
        } else {
            Exploitation::None
        };
        let traits = facts.cvss.as_ref().map(|c| c.exposure_traits());
        let automatable = match traits {
            Some(t) => t.automatable && asset.exposure != Exposure::Isolated,
            // SSVC has no "unknown": without a vector, assume the worst where it is most
            // plausible, on hosts that face the internet.
            None => asset.exposure == Exposure::Internet,
        };
        let total = match traits {
            Some(t) => t.total_impact,
            None => facts.vendor_severity == Some(VendorSeverity::Critical),
        };
        Self {
            exploitation,
            automatable,
            technical_impact: if total {
                TechnicalImpact::Total
            } else {
                TechnicalImpact::Partial
            },
            mission: mission_impact(asset),
        }
    }
}

#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
enum Prevalence {
    Minimal,
    Support,
    Essential,
}

#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
enum WellBeing {
    Minimal,
    Material,
    Irreversible,
}

fn mission_impact(asset: &AssetProfile) -> MissionImpact {
    let prevalence = match asset.criticality {
        0..=2 => Prevalence::Minimal,
        3 => Prevalence::Support,
        _ => Prevalence::Essential,
    };
    let has = |class: &str| asset.data_classes.contains(class);
    let well_being = if has("safety") {
        WellBeing::Irreversible
    } else if has("phi") || has("pci") || has("pii") {
        WellBeing::Material
    } else {
        WellBeing::Minimal
    };
    match (prevalence, well_being) {
        (Prevalence::Essential, _) | (_, WellBeing::Irreversible) => MissionImpact::High,
        (Prevalence::Minimal, WellBeing::Minimal) => MissionImpact::Low,
        _ => MissionImpact::Medium,
    }
}

/// The CISA Coordinator decision table, row for row.
pub fn decide(inputs: &SsvcInputs) -> Decision {
    use Decision::{Act as AC, Attend as AT, Track as T, TrackStar as TS};
    use Exploitation::{Active, None as Nil, Poc};
    use TechnicalImpact::{Partial, Total};
    // Columns: mission low, medium, high.
    let row: [Decision; 3] = match (
        inputs.exploitation,
        inputs.automatable,
        inputs.technical_impact,
    ) {
        (Nil, false, Partial) => [T, T, T],
        (Nil, false, Total) => [T, T, TS],
        (Nil, true, Partial) => [T, T, AT],
        (Nil, true, Total) => [T, T, AT],
        (Poc, false, Partial) => [T, T, TS],
        (Poc, false, Total) => [T, TS, AT],
        (Poc, true, Partial) => [T, T, AT],
        (Poc, true, Total) => [T, TS, AT],
        (Active, false, Partial) => [T, T, AT],
        (Active, false, Total) => [T, AT, AC],
        (Active, true, Partial) => [AT, AT, AC],
        (Active, true, Total) => [AT, AC, AC],
    };
    row[inputs.mission as usize]
}

#[cfg(test)]
mod tests {
    use super::*;

    fn all_inputs() -> Vec<SsvcInputs> {
        let mut all = Vec::new();
        for exploitation in [Exploitation::None, Exploitation::Poc, Exploitation::Active] {
            for automatable in [false, true] {
                for technical_impact in [TechnicalImpact::Partial, TechnicalImpact::Total] {
                    for mission in [
                        MissionImpact::Low,
                        MissionImpact::Medium,
                        MissionImpact::High,
                    ] {
                        all.push(SsvcInputs {
                            exploitation,
                            automatable,
                            technical_impact,
                            mission,
                        });
                    }
                }
            }
        }
        all
    }

    #[test]
    fn table_counts_match_cisa() {
        // CISA Coordinator 2.0.3 has 36 rows: 18 Track, 4 Track*, 10 Attend, 4 Act.
        let mut counts = [0; 4];
        for inputs in all_inputs() {
            counts[decide(&inputs) as usize] += 1;
        }
        assert_eq!(counts, [18, 4, 10, 4]);
    }

    #[test]
    fn raising_any_decision_point_never_lowers_the_decision() {
        let all = all_inputs();
        for a in &all {
            for b in &all {
                let dominates = b.exploitation >= a.exploitation
                    && b.automatable >= a.automatable
                    && b.technical_impact >= a.technical_impact
                    && b.mission >= a.mission;
                if dominates {
                    assert!(decide(b) >= decide(a), "{a:?} -> {b:?}");
                }
            }
        }
    }

    #[test]
    fn known_rows() {
        let row = |e, a, t, m| {
            decide(&SsvcInputs {
                exploitation: e,
                automatable: a,
                technical_impact: t,
                mission: m,
            })
        };
        use Exploitation as E;
        use MissionImpact as M;
        use TechnicalImpact as T;
        assert_eq!(row(E::Active, true, T::Total, M::Medium), Decision::Act);
        assert_eq!(row(E::Active, false, T::Total, M::Medium), Decision::Attend);
        assert_eq!(row(E::Poc, false, T::Total, M::Medium), Decision::TrackStar);
        assert_eq!(row(E::None, true, T::Total, M::High), Decision::Attend);
        assert_eq!(row(E::None, false, T::Partial, M::High), Decision::Track);
        assert_eq!(row(E::Active, true, T::Partial, M::Low), Decision::Attend);
    }
}
