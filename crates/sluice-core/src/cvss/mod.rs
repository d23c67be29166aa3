//! CVSS 3.0, 3.1 and 4.0 vectors: strict parsing, scores, severities and the exposure traits that
//! SSVC prioritisation reads.
//!
//! Owns: the meaning of a vector string. Scoring is delegated to the RustSec `cvss` crate, but only
//! after `grammar` has accepted the vector, because the crate is lax about what it accepts.
//! Scores are kept in tenths, so every score is an exact one-decimal value (9.8, never
//! 9.800000001).
//! Never does I/O; never guesses a version (CVSS v2 vectors, which carry no prefix, are refused).

mod grammar;

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Serialize};

use grammar::Group;

/// The CVSS versions Sluice scores.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum CvssVersion {
    /// CVSS 3.0 (2015); scored with 3.0's rounding and environmental formula.
    #[serde(rename = "3.0")]
    V3_0,
    /// CVSS 3.1 (2019).
    #[serde(rename = "3.1")]
    V3_1,
    /// CVSS 4.0 (2023).
    #[serde(rename = "4.0")]
    V4_0,
}

impl CvssVersion {
    /// The version as written in a vector's prefix, e.g. `"3.1"`.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::V3_0 => "3.0",
            Self::V3_1 => "3.1",
            Self::V4_0 => "4.0",
        }
    }
}

impl fmt::Display for CvssVersion {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// FIRST's qualitative severity rating scale (the same for 3.x and 4.0). Ordered, so that
/// policies can say "High or worse".
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub enum Severity {
    /// Score 0.0.
    None,
    /// Score 0.1 to 3.9.
    Low,
    /// Score 4.0 to 6.9.
    Medium,
    /// Score 7.0 to 8.9.
    High,
    /// Score 9.0 to 10.0.
    Critical,
}

impl Severity {
    /// The rating's name as FIRST writes it, e.g. `"Critical"`.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::None => "None",
            Self::Low => "Low",
            Self::Medium => "Medium",
            Self::High => "High",
            Self::Critical => "Critical",
        }
    }
}

impl fmt::Display for Severity {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// The rating of `score` on FIRST's qualitative scale. Scores are meant to be rounded to one
/// decimal already; anything below 0.1 (and NaN) rates `None`.
pub fn severity_of(score: f64) -> Severity {
    if score >= 9.0 {
        Severity::Critical
    } else if score >= 7.0 {
        Severity::High
    } else if score >= 4.0 {
        Severity::Medium
    } else if score >= 0.1 {
        Severity::Low
    } else {
        Severity::None
    }
}

/// What a vector's base metrics say about how reachable and how damaging a vulnerability is:
/// the proxies that SSVC prioritisation uses when no analyst has decided. Read from the base
/// metrics only; the asset's own exposure is the priority module's business.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ExposureTraits {
    /// Exploitable over the network (`AV:N`).
    pub network: bool,
    /// No barrier an attacker must get past by hand: `AV:N/AC:L/PR:N/UI:N`, and `AT:N` in 4.0.
    /// SSVC's "Automatable: yes" proxy.
    pub automatable: bool,
    /// Full loss of confidentiality and integrity (3.x `C:H/I:H`, 4.0 `VC:H/VI:H`).
    /// SSVC's "Technical Impact: total" proxy.
    pub total_impact: bool,
}

/// Why a vector string was refused. Every message quotes the vector and names the metric (or
/// prefix) at fault, so that a line in a feed report is enough to fix the data.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum CvssError {
    /// Nothing but whitespace.
    #[error("empty CVSS vector \"\": expected e.g. \"CVSS:3.1/AV:N/AC:L/...\"")]
    Empty,
    /// Not `CVSS:3.0`, `CVSS:3.1` or `CVSS:4.0`: another version, a typo, or no prefix at all.
    #[error(
        "CVSS vector \"{vector}\": unsupported prefix \"{prefix}\": expected CVSS:3.0, CVSS:3.1 \
         or CVSS:4.0 (CVSS v2 vectors are unsupported)"
    )]
    UnsupportedPrefix {
        /// The vector as given (trimmed).
        vector: String,
        /// The first `/`-separated component.
        prefix: String,
    },
    /// `//` inside the vector.
    #[error("CVSS vector \"{vector}\": empty component (\"//\") after \"{after}\"")]
    EmptyComponent {
        /// The vector as given (trimmed).
        vector: String,
        /// The component before the empty one.
        after: String,
    },
    /// A `/` at the end.
    #[error("CVSS vector \"{vector}\": trailing \"/\" after \"{after}\"")]
    TrailingSlash {
        /// The vector as given (trimmed).
        vector: String,
        /// The last component.
        after: String,
    },
    /// A component that is not `METRIC:VALUE`.
    #[error("CVSS vector \"{vector}\": component \"{component}\" is not METRIC:VALUE")]
    MalformedComponent {
        /// The vector as given (trimmed).
        vector: String,
        /// The component at fault.
        component: String,
    },
    /// A metric the version does not define (names are case-sensitive).
    #[error("CVSS vector \"{vector}\": unknown metric \"{metric}\" for CVSS {version}")]
    UnknownMetric {
        /// The vector as given (trimmed).
        vector: String,
        /// The vector's version.
        version: CvssVersion,
        /// The metric name as written.
        metric: String,
    },
    /// The same metric twice.
    #[error("CVSS vector \"{vector}\": metric {metric} appears more than once")]
    DuplicateMetric {
        /// The vector as given (trimmed).
        vector: String,
        /// The repeated metric.
        metric: &'static str,
    },
    /// A value the metric does not allow (values are case-sensitive).
    #[error(
        "CVSS vector \"{vector}\": metric {metric} has invalid value \"{value}\" (expected one \
         of {})",
        allowed.join(", ")
    )]
    InvalidValue {
        /// The vector as given (trimmed).
        vector: String,
        /// The metric at fault.
        metric: &'static str,
        /// The value as written.
        value: String,
        /// What the metric allows.
        allowed: &'static [&'static str],
    },
    /// One or more base metrics are missing.
    #[error("CVSS vector \"{vector}\": missing mandatory metric(s) {}", metrics.join(", "))]
    MissingMetric {
        /// The vector as given (trimmed).
        vector: String,
        /// The missing metrics, in the specification's order.
        metrics: Vec<&'static str>,
    },
    /// The scoring crate refused a vector the grammar accepted; a bug on one side or the other.
    #[error("CVSS vector \"{vector}\": cannot be scored: {reason}")]
    Unscorable {
        /// The vector as given (trimmed).
        vector: String,
        /// The scoring crate's complaint.
        reason: String,
    },
}

/// A parsed, scored CVSS vector.
#[derive(Clone, Debug)]
pub struct Cvss {
    vector: String,
    version: CvssVersion,
    /// Scores in tenths (0..=100), so that `score()` is always the exact one-decimal value.
    score: u8,
    temporal: Option<u8>,
    environmental: Option<u8>,
    exposure: ExposureTraits,
}

impl Cvss {
    /// Parses and scores `vector`. Surrounding whitespace is ignored; everything else is strict:
    /// case-sensitive names and values, no unknown, duplicate or missing base metrics, no empty
    /// components. Metric order is free.
    pub fn parse(vector: &str) -> Result<Cvss, CvssError> {
        let vector = vector.trim();
        let checked = grammar::check(vector)?;
        let unscorable = |err: cvss::Error| CvssError::Unscorable {
            vector: vector.to_owned(),
            reason: err.to_string(),
        };
        let (score, temporal, environmental) = match checked.version {
            CvssVersion::V3_0 | CvssVersion::V3_1 => {
                let scored = cvss::v3::Vector::from_str(vector).map_err(unscorable)?;
                score_v3(&scored, &checked)
            }
            CvssVersion::V4_0 => {
                let scored = cvss::v4::Vector::from_str(vector).map_err(unscorable)?;
                (tenths(scored.score().value()), None, None)
            }
        };
        let is = |metric: &str, value: &str| checked.get(metric) == Some(value);
        let network = is("AV", "N");
        let exposure = match checked.version {
            CvssVersion::V3_0 | CvssVersion::V3_1 => ExposureTraits {
                network,
                automatable: network && is("AC", "L") && is("PR", "N") && is("UI", "N"),
                total_impact: is("C", "H") && is("I", "H"),
            },
            CvssVersion::V4_0 => ExposureTraits {
                network,
                automatable: network
                    && is("AC", "L")
                    && is("AT", "N")
                    && is("PR", "N")
                    && is("UI", "N"),
                total_impact: is("VC", "H") && is("VI", "H"),
            },
        };
        Ok(Cvss {
            vector: vector.to_owned(),
            version: checked.version,
            score,
            temporal,
            environmental,
            exposure,
        })
    }

    /// The CVSS version named by the vector's prefix.
    pub fn version(&self) -> CvssVersion {
        self.version
    }

    /// The vector as given, without surrounding whitespace.
    pub fn vector(&self) -> &str {
        &self.vector
    }

    /// The headline score, one decimal: the base score for 3.x; for 4.0 the score of every metric
    /// the vector has (CVSS-B, -BT, -BE or -BTE), since 4.0 folds threat and environment in.
    pub fn score(&self) -> f64 {
        from_tenths(self.score)
    }

    /// The rating of [`Cvss::score`].
    pub fn severity(&self) -> Severity {
        severity_of(self.score())
    }

    /// The 3.x temporal score, when the vector defines a temporal metric (E, RL or RC other
    /// than `X`). Always `None` for 4.0, whose threat metric is part of [`Cvss::score`].
    pub fn temporal_score(&self) -> Option<f64> {
        self.temporal.map(from_tenths)
    }

    /// The 3.x environmental score, when the vector defines an environmental metric (CR, IR, AR
    /// or a modified base metric other than `X`). Always `None` for 4.0, as for the temporal
    /// score.
    pub fn environmental_score(&self) -> Option<f64> {
        self.environmental.map(from_tenths)
    }

    /// The SSVC proxies read from the base metrics.
    pub fn exposure_traits(&self) -> ExposureTraits {
        self.exposure
    }
}

impl FromStr for Cvss {
    type Err = CvssError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Self::parse(s)
    }
}

impl fmt::Display for Cvss {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.vector)
    }
}

/// Scores a 3.x vector. The crate's base score is right (every base vector is in the fixtures),
/// but its 3.0 round-up is a float `ceil`, so a product like 5.0 × 0.92 = 4.6000000000000005
/// becomes 4.7 where exact arithmetic (the specification, Red Hat's package) gives 4.6. The temporal multiplication is
/// therefore redone here in exact integers, for the temporal score and for the last step of the
/// environmental one (whose inner, rounded value still comes from the crate).
fn score_v3(
    scored: &cvss::v3::Vector,
    checked: &grammar::Checked<'_>,
) -> (u8, Option<u8>, Option<u8>) {
    // Hundredths, as in the specification's tables.
    let weight = |metric: &str| -> u64 {
        match (metric, checked.get(metric).unwrap_or("X")) {
            ("E", "F") => 97,
            ("E", "P") => 94,
            ("E", "U") => 91,
            ("RL", "W") => 97,
            ("RL", "T") => 96,
            ("RL", "O") => 95,
            ("RC", "R") => 96,
            ("RC", "U") => 92,
            _ => 100,
        }
    };
    // Millionths; multiplied by a score in tenths it counts ten-millionths.
    let temporal = weight("E") * weight("RL") * weight("RC");
    let apply_temporal = |tenths: u8| -> u8 {
        // Exact round-up to a tenth; at most 100, so the cast cannot truncate.
        (u64::from(tenths) * temporal).div_ceil(1_000_000) as u8
    };
    let base = tenths(scored.base_score().value());
    let temporal_score = checked
        .defines(Group::Temporal)
        .then(|| apply_temporal(base));
    let environmental_score = checked.defines(Group::Environmental).then(|| {
        let mut untimed = scored.clone();
        untimed.e = None;
        untimed.rl = None;
        untimed.rc = None;
        apply_temporal(tenths(untimed.environmental_score().value()))
    });
    (base, temporal_score, environmental_score)
}

/// A score (already rounded to one decimal by the crate, up to float noise) in tenths.
fn tenths(score: f64) -> u8 {
    // Clamped first, so the cast cannot wrap.
    (score * 10.0).round().clamp(0.0, 100.0) as u8
}

/// The nearest double to `tenths / 10`, i.e. exactly what `"9.8".parse::<f64>()` gives.
fn from_tenths(tenths: u8) -> f64 {
    f64::from(tenths) / 10.0
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn scores_have_one_decimal() {
        let cvss = Cvss::parse(" CVSS:3.1/AV:N/AC:L/PR:N/UI:N/S:U/C:H/I:H/A:H\n").unwrap();
        assert_eq!(
            cvss.vector(),
            "CVSS:3.1/AV:N/AC:L/PR:N/UI:N/S:U/C:H/I:H/A:H"
        );
        assert_eq!(cvss.score().to_string(), "9.8");
        assert_eq!(cvss.severity(), Severity::Critical);
        assert_eq!(cvss.temporal_score(), None);
        assert_eq!(cvss.environmental_score(), None);
    }

    #[test]
    fn optional_scores_only_when_defined() {
        let cvss = Cvss::parse("CVSS:3.0/AV:N/AC:L/PR:N/UI:N/S:U/C:H/I:H/A:H/E:X/CR:X").unwrap();
        assert_eq!(cvss.temporal_score(), None);
        assert_eq!(cvss.environmental_score(), None);
        let cvss = Cvss::parse("CVSS:3.0/AV:N/AC:L/PR:N/UI:N/S:U/C:H/I:H/A:H/E:U/MAV:L").unwrap();
        assert_eq!(cvss.temporal_score(), Some(9.0));
        assert_eq!(cvss.environmental_score(), Some(7.7));
    }

    #[test]
    fn exposure_traits_follow_base_metrics() {
        let v3 = Cvss::parse("CVSS:3.1/AV:N/AC:L/PR:N/UI:N/S:U/C:H/I:H/A:N").unwrap();
        assert_eq!(
            v3.exposure_traits(),
            ExposureTraits {
                network: true,
                automatable: true,
                total_impact: true
            }
        );
        let v4 =
            Cvss::parse("CVSS:4.0/AV:N/AC:L/AT:P/PR:N/UI:N/VC:H/VI:L/VA:H/SC:N/SI:N/SA:N").unwrap();
        assert_eq!(
            v4.exposure_traits(),
            ExposureTraits {
                network: true,
                automatable: false,
                total_impact: false
            }
        );
    }

    #[test]
    fn crate_round_up_keeps_exact_tenths() {
        // score_v3 feeds the crate's rounded inner environmental score through its round-up
        // again (times 1.0); that must not move it.
        for tenths in 0..=100u8 {
            let score = from_tenths(tenths);
            for minor in [0, 1] {
                let again = cvss::v3::Score::new(score)
                    .roundup_for_version(minor)
                    .value();
                assert_eq!(again, score, "3.{minor}");
            }
        }
    }

    #[test]
    fn temporal_rounding_is_exact() {
        // 5.0 x 0.92 is 4.6000000000000005 in floating point; FIRST says 4.6.
        let cvss = Cvss::parse("CVSS:3.0/AV:N/AC:H/PR:H/UI:N/S:U/C:H/I:N/A:L/RC:U").unwrap();
        assert_eq!(cvss.score(), 5.0);
        assert_eq!(cvss.temporal_score(), Some(4.6));
    }

    #[test]
    fn severity_scale_boundaries() {
        let cases = [
            (0.0, Severity::None),
            (0.1, Severity::Low),
            (3.9, Severity::Low),
            (4.0, Severity::Medium),
            (6.9, Severity::Medium),
            (7.0, Severity::High),
            (8.9, Severity::High),
            (9.0, Severity::Critical),
            (10.0, Severity::Critical),
            (f64::NAN, Severity::None),
        ];
        for (score, severity) in cases {
            assert_eq!(severity_of(score), severity, "{score}");
        }
    }

    #[test]
    fn serde_names() {
        assert_eq!(
            serde_json::to_string(&CvssVersion::V3_0).unwrap(),
            "\"3.0\""
        );
        assert_eq!(
            serde_json::from_str::<CvssVersion>("\"4.0\"").unwrap(),
            CvssVersion::V4_0
        );
        assert_eq!(
            serde_json::to_string(&Severity::Critical).unwrap(),
            "\"Critical\""
        );
        assert_eq!(CvssVersion::V3_1.to_string(), "3.1");
        assert_eq!(Severity::None.to_string(), "None");
    }

    #[test]
    fn crate_laxness_is_refused() {
        let refused = [
            "CVSS:3.1/av:n/AC:L/PR:N/UI:N/S:U/C:H/I:H/A:H",
            "CVSS:3.1/AV:n/AC:L/PR:N/UI:N/S:U/C:H/I:H/A:H",
            "CVSS:3.1/AC:L/PR:N/UI:N/S:U/C:H/I:H/A:H",
            "CVSS:4.0/AV:N/AC:L/AT:N/PR:N/UI:N/VC:H/VI:H/VA:H/SC:N/SI:S/SA:N",
            "CVSS:4.0/AV:N/AC:L/AT:N/PR:N/UI:N/VC:H/VI:H/VA:H/SC:N/SI:N/SA:N/U:RED",
        ];
        for vector in refused {
            assert!(Cvss::parse(vector).is_err(), "{vector}");
        }
    }
}
