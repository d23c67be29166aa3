//! Change risk: a score from what the change touches and carries, a level from the score, and
//! the reasons, one per factor that added or removed points.
//!
//! The weights are fixed and documented (`docs/change.md`) rather than policy: the CAB rules
//! are where an organisation expresses how much risk it tolerates (which level needs whom), and
//! one scale shared by every installation keeps levels comparable across them and over time.
//!
//! | factor | points |
//! |---|---|
//! | highest criticality in scope 5 / 4 / 3 / 2 / 1 | 30 / 20 / 10 / 5 / 0 |
//! | hosts ≥ 500 / ≥ 100 / ≥ 20 / ≥ 5 | 20 / 15 / 10 / 5 |
//! | services touched ≥ 5 / ≥ 2 / 1 | 15 / 10 / 5 |
//! | any tier-1 service touched | 10 |
//! | any internet-facing host | 10 |
//! | update types: kernel 10, enhancement 10, third-party 5 (summed) | ≤ 25 |
//! | reboot needed | 10 |
//! | history: < 5 similar changes | 5 |
//! | history: failure rate ≥ 20 % / ≥ 5 % / 0 % | 20 / 10 / −10 |
//!
//! The score is clamped to 0–100. Levels: below 25 `low`, below 50 `medium`, below 75 `high`,
//! otherwise `very-high`.

use std::collections::BTreeSet;
use std::fmt;

use serde::{Deserialize, Serialize};

use super::model::UpdateClass;

/// Scores from which a level starts: medium, high, very high.
pub const LEVEL_THRESHOLDS: [u32; 3] = [25, 50, 75];

/// Fewer similar changes than this are too few to trust their success rate.
pub const MIN_HISTORY: u32 = 5;

/// A change's risk level.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum RiskLevel {
    /// Routine.
    Low,
    /// Needs care.
    Medium,
    /// Needs the security group too.
    High,
    /// Needs everyone.
    VeryHigh,
}

impl RiskLevel {
    /// Every level, lowest first.
    pub const ALL: [RiskLevel; 4] = [Self::Low, Self::Medium, Self::High, Self::VeryHigh];

    /// The name used in JSON, TOML and messages.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Low => "low",
            Self::Medium => "medium",
            Self::High => "high",
            Self::VeryHigh => "very-high",
        }
    }

    /// The level of a score.
    pub fn of_score(score: u32) -> Self {
        let [medium, high, very_high] = LEVEL_THRESHOLDS;
        match score {
            s if s >= very_high => Self::VeryHigh,
            s if s >= high => Self::High,
            s if s >= medium => Self::Medium,
            _ => Self::Low,
        }
    }
}

impl fmt::Display for RiskLevel {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// How similar past changes went (same packages or same template on similar scope; the
/// server decides what "similar" means and counts).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct History {
    /// Similar changes that were implemented.
    pub similar_changes: u32,
    /// Of those, how many failed or were rolled back.
    pub failed: u32,
}

/// What risk is computed from.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct RiskInputs {
    /// The highest asset criticality in scope (1–5; 0 for an empty scope).
    pub max_criticality: u8,
    /// Hosts in scope.
    pub hosts: usize,
    /// Services with members in scope.
    pub services: usize,
    /// Of those, tier-1 services.
    pub tier1_services: usize,
    /// Internet-facing hosts in scope.
    pub internet_facing_hosts: usize,
    /// What the bundle carries.
    pub update_types: BTreeSet<UpdateClass>,
    /// Whether hosts must reboot.
    pub reboot_needed: bool,
    /// Past similar changes.
    pub history: History,
}

/// The computed risk, explained.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct RiskAssessment {
    /// The level.
    pub level: RiskLevel,
    /// The score, 0–100.
    pub score: u32,
    /// One line per factor that counted, with its points.
    pub reasons: Vec<String>,
    /// What it was computed from.
    pub inputs: RiskInputs,
}

/// Scores a change; see the module documentation for the table.
pub fn assess(inputs: &RiskInputs) -> RiskAssessment {
    let mut score: i64 = 0;
    let mut reasons = Vec::new();
    let mut add = |points: i64, reason: String| {
        if points != 0 {
            score += points;
            reasons.push(format!("{reason}: {points:+}"));
        }
    };

    let criticality_points = match inputs.max_criticality {
        5.. => 30,
        4 => 20,
        3 => 10,
        2 => 5,
        _ => 0,
    };
    add(
        criticality_points,
        format!("highest asset criticality {}", inputs.max_criticality),
    );
    let host_points = match inputs.hosts {
        500.. => 20,
        100.. => 15,
        20.. => 10,
        5.. => 5,
        _ => 0,
    };
    add(host_points, format!("{} hosts", inputs.hosts));
    let service_points = match inputs.services {
        5.. => 15,
        2.. => 10,
        1 => 5,
        0 => 0,
    };
    add(service_points, format!("{} services", inputs.services));
    if inputs.tier1_services > 0 {
        add(
            10,
            format!("{} tier-1 service(s) touched", inputs.tier1_services),
        );
    }
    if inputs.internet_facing_hosts > 0 {
        add(
            10,
            format!("{} internet-facing host(s)", inputs.internet_facing_hosts),
        );
    }
    for (class, points) in [
        (UpdateClass::Kernel, 10),
        (UpdateClass::Enhancement, 10),
        (UpdateClass::ThirdParty, 5),
    ] {
        if inputs.update_types.contains(&class) {
            add(points, format!("{class} update"));
        }
    }
    if inputs.reboot_needed {
        add(10, "hosts must reboot".to_owned());
    }
    let History {
        similar_changes,
        failed,
    } = inputs.history;
    if similar_changes < MIN_HISTORY {
        add(
            5,
            format!("little history ({similar_changes} similar changes, fewer than {MIN_HISTORY})"),
        );
    } else {
        let failed = failed.min(similar_changes);
        let reason = format!("{failed} of {similar_changes} similar changes failed");
        // Whole-number comparisons: failed / similar ≥ 1/5 (20 %), ≥ 1/20 (5 %), or none.
        let (failed, similar) = (u64::from(failed), u64::from(similar_changes));
        if failed * 5 >= similar {
            add(20, reason);
        } else if failed * 20 >= similar {
            add(10, reason);
        } else if failed == 0 {
            add(-10, reason);
        }
    }
    let score = u32::try_from(score.clamp(0, 100)).unwrap_or(0);
    RiskAssessment {
        level: RiskLevel::of_score(score),
        score,
        reasons,
        inputs: inputs.clone(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn inputs() -> RiskInputs {
        RiskInputs {
            max_criticality: 2,
            hosts: 3,
            services: 0,
            tier1_services: 0,
            internet_facing_hosts: 0,
            update_types: [UpdateClass::Security].into(),
            reboot_needed: false,
            history: History {
                similar_changes: 40,
                failed: 0,
            },
        }
    }

    #[test]
    fn levels_with_reasons() {
        let low = assess(&inputs());
        assert_eq!((low.level, low.score), (RiskLevel::Low, 0));
        assert_eq!(
            low.reasons,
            [
                "highest asset criticality 2: +5",
                "0 of 40 similar changes failed: -10"
            ]
        );

        let mut medium = inputs();
        medium.max_criticality = 4;
        medium.hosts = 25;
        medium.history.similar_changes = 2;
        let medium = assess(&medium);
        assert_eq!((medium.level, medium.score), (RiskLevel::Medium, 35));
        assert!(medium.reasons.iter().any(|r| r.contains("little history")));

        let mut high = inputs();
        high.max_criticality = 5;
        high.hosts = 120;
        high.services = 1;
        high.history.failed = 2;
        let high = assess(&high);
        assert_eq!((high.level, high.score), (RiskLevel::High, 60));
        assert!(
            high.reasons
                .contains(&"2 of 40 similar changes failed: +10".to_owned())
        );

        let very_high = assess(&RiskInputs {
            max_criticality: 5,
            hosts: 800,
            services: 6,
            tier1_services: 2,
            internet_facing_hosts: 40,
            update_types: [UpdateClass::Security, UpdateClass::Kernel].into(),
            reboot_needed: true,
            history: History {
                similar_changes: 10,
                failed: 3,
            },
        });
        assert_eq!(
            (very_high.level, very_high.score),
            (RiskLevel::VeryHigh, 100)
        );
        assert_eq!(very_high.reasons.len(), 8);
    }

    #[test]
    fn thresholds_are_inclusive_from_below() {
        assert_eq!(RiskLevel::of_score(24), RiskLevel::Low);
        assert_eq!(RiskLevel::of_score(25), RiskLevel::Medium);
        assert_eq!(RiskLevel::of_score(50), RiskLevel::High);
        assert_eq!(RiskLevel::of_score(75), RiskLevel::VeryHigh);
        assert!(RiskLevel::Low < RiskLevel::VeryHigh);
        assert_eq!(
            serde_json::to_value(RiskLevel::VeryHigh).unwrap(),
            "very-high"
        );
    }
}
