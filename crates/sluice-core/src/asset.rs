//! Assets as prioritisation sees them: how critical, how exposed, what data they hold.
//!
//! The CMDB (server platform) grows the full asset record; this is the part that decides how
//! urgent a finding is, so it lives in core and is given explicitly to every decision.

use std::collections::BTreeSet;
use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Serialize};

/// How reachable a host is, which changes how exploitable a network vulnerability is.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Exposure {
    /// No network path from outside its own segment.
    Isolated,
    /// Reachable from the organisation's networks only.
    Internal,
    /// Reachable from the internet.
    Internet,
}

impl FromStr for Exposure {
    type Err = AssetError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s.trim().to_ascii_lowercase().as_str() {
            "internet" | "internet-facing" | "public" => Ok(Self::Internet),
            "internal" => Ok(Self::Internal),
            "isolated" | "air-gapped" => Ok(Self::Isolated),
            other => Err(AssetError::BadValue {
                key: "exposure".to_owned(),
                value: other.to_owned(),
                expected: "internet, internal or isolated",
            }),
        }
    }
}

impl fmt::Display for Exposure {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Self::Internet => "internet",
            Self::Internal => "internal",
            Self::Isolated => "isolated",
        })
    }
}

/// The facts about an asset that prioritisation weighs.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct AssetProfile {
    /// Host name, for reports.
    pub hostname: Option<String>,
    /// Environment (`dev`, `test`, `staging`, `prod`).
    pub environment: Option<String>,
    /// Business criticality, 1 (lowest) to 5 (highest).
    pub criticality: u8,
    /// Network exposure.
    pub exposure: Exposure,
    /// Regulated data the host holds, lower case (`pci`, `phi`, `pii`, …).
    pub data_classes: BTreeSet<String>,
    /// Business unit, for reports.
    pub business_unit: Option<String>,
}

impl Default for AssetProfile {
    /// An asset nobody described: middling criticality, internal, no regulated data.
    fn default() -> Self {
        Self {
            hostname: None,
            environment: None,
            criticality: 3,
            exposure: Exposure::Internal,
            data_classes: BTreeSet::new(),
            business_unit: None,
        }
    }
}

/// The keys [`AssetProfile::set`] accepts.
pub const ASSET_KEYS: &str = "hostname, environment (env), criticality (1-5), exposure (internet|internal|isolated), data (comma-separated data classes, e.g. pci,phi), business_unit (bu)";

impl AssetProfile {
    /// Sets one attribute from a `KEY=VALUE` pair as given on a command line.
    pub fn set(&mut self, key: &str, value: &str) -> Result<(), AssetError> {
        let value = value.trim();
        match key.trim().to_ascii_lowercase().as_str() {
            "hostname" | "host" => self.hostname = Some(value.to_owned()),
            "environment" | "env" => self.environment = Some(value.to_owned()),
            "business_unit" | "bu" => self.business_unit = Some(value.to_owned()),
            "criticality" => {
                self.criticality = value
                    .parse::<u8>()
                    .ok()
                    .filter(|c| (1..=5).contains(c))
                    .ok_or_else(|| AssetError::BadValue {
                        key: "criticality".to_owned(),
                        value: value.to_owned(),
                        expected: "a whole number from 1 to 5",
                    })?;
            }
            "exposure" => self.exposure = value.parse()?,
            "data" | "data_classes" | "data_class" => {
                let classes: Vec<&str> = value
                    .split(',')
                    .map(str::trim)
                    .filter(|c| !c.is_empty())
                    .collect();
                if let Some(bad) = classes.iter().find(|class| {
                    !class
                        .bytes()
                        .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
                }) {
                    return Err(AssetError::BadValue {
                        key: "data".to_owned(),
                        value: (*bad).to_owned(),
                        expected: "names made of letters, digits, - and _",
                    });
                }
                self.data_classes
                    .extend(classes.iter().map(|class| class.to_ascii_lowercase()));
            }
            other => {
                return Err(AssetError::UnknownKey {
                    key: other.to_owned(),
                });
            }
        }
        Ok(())
    }

    /// Sets an attribute from `KEY=VALUE` text.
    pub fn set_pair(&mut self, pair: &str) -> Result<(), AssetError> {
        let (key, value) = pair.split_once('=').ok_or_else(|| AssetError::NotAPair {
            text: pair.to_owned(),
        })?;
        self.set(key, value)
    }
}

/// Why an asset attribute was rejected.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum AssetError {
    /// An attribute that does not exist.
    #[error("unknown asset attribute {key:?}; known are: {ASSET_KEYS}")]
    UnknownKey {
        /// The key as given.
        key: String,
    },
    /// A value of the wrong shape.
    #[error("asset attribute {key}: {value:?} is not {expected}")]
    BadValue {
        /// The attribute.
        key: String,
        /// The value as given.
        value: String,
        /// What was expected.
        expected: &'static str,
    },
    /// Text without `=`.
    #[error("expected KEY=VALUE, got {text:?}")]
    NotAPair {
        /// The text as given.
        text: String,
    },
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn attributes_from_pairs() {
        let mut asset = AssetProfile::default();
        asset.set_pair("criticality=5").unwrap();
        asset.set_pair("exposure=internet").unwrap();
        asset.set_pair("data=PCI, phi").unwrap();
        assert_eq!(asset.criticality, 5);
        assert_eq!(asset.exposure, Exposure::Internet);
        assert_eq!(
            asset.data_classes.iter().collect::<Vec<_>>(),
            ["pci", "phi"]
        );
    }

    #[test]
    fn bad_attributes_name_the_key() {
        let mut asset = AssetProfile::default();
        let err = asset.set_pair("criticality=9").unwrap_err();
        assert!(err.to_string().contains("criticality"));
        let err = asset.set_pair("colour=blue").unwrap_err();
        assert!(err.to_string().contains("colour"));
        assert!(asset.set_pair("exposure").is_err());
        assert!(asset.set_pair("exposure=dmz").is_err());
        assert!(asset.set_pair("data=pii,bad!").is_err());
        assert_eq!(asset, AssetProfile::default(), "failed sets change nothing");
    }
}
