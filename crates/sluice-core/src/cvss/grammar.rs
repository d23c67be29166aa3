//! The vector-string grammar of CVSS 3.0, 3.1 and 4.0, checked strictly.
//!
//! Owns: which metrics each version knows, their allowed values, which are mandatory, and the
//! syntax of `CVSS:x.y/METRIC:VALUE/...`. Never scores anything: scoring is the `cvss` crate's,
//! and that crate is lax (it upper-cases names and values, so `av:n` and `U:red` pass, and for 3.x
//! it scores vectors with missing base metrics: `CVSS:3.1` alone is 0.0), and its errors name
//! neither the vector nor, for empty components, the place. So everything is checked here first.
//!
//! Metric order is not enforced: 3.x allows any order, 4.0 only says that out-of-order vectors
//! "may be rejected", and the reference implementation (Red Hat's `cvss` package) accepts them.

use super::{CvssError, CvssVersion};

/// One metric of a version's vector string.
pub(super) struct MetricSpec {
    /// Abbreviation as written in the vector, e.g. `AV`.
    pub name: &'static str,
    /// Allowed values, exactly as written (case-sensitive).
    pub values: &'static [&'static str],
    /// Which group it belongs to; decides which optional scores exist.
    pub group: Group,
}

/// Metric groups; a vector's optional scores depend on which groups it defines.
#[derive(Clone, Copy, PartialEq, Eq)]
pub(super) enum Group {
    /// Mandatory in every version.
    Base,
    /// 3.x temporal metrics and the 4.0 threat metric.
    Temporal,
    /// Requirements and modified base metrics.
    Environmental,
    /// 4.0 supplemental metrics: informative, never part of a score.
    Supplemental,
}

const fn metric(name: &'static str, group: Group, values: &'static [&'static str]) -> MetricSpec {
    MetricSpec {
        name,
        values,
        group,
    }
}

use Group::{Base, Environmental, Supplemental, Temporal};

const HLN: &[&str] = &["H", "L", "N"];
const XHLN: &[&str] = &["X", "H", "L", "N"];
const XHML: &[&str] = &["X", "H", "M", "L"];

/// CVSS 3.0 and 3.1 (identical grammar), in the specification's preferred order.
pub(super) const V3: &[MetricSpec] = &[
    metric("AV", Base, &["N", "A", "L", "P"]),
    metric("AC", Base, &["L", "H"]),
    metric("PR", Base, &["N", "L", "H"]),
    metric("UI", Base, &["N", "R"]),
    metric("S", Base, &["U", "C"]),
    metric("C", Base, HLN),
    metric("I", Base, HLN),
    metric("A", Base, HLN),
    metric("E", Temporal, &["X", "H", "F", "P", "U"]),
    metric("RL", Temporal, &["X", "U", "W", "T", "O"]),
    metric("RC", Temporal, &["X", "C", "R", "U"]),
    metric("CR", Environmental, XHML),
    metric("IR", Environmental, XHML),
    metric("AR", Environmental, XHML),
    metric("MAV", Environmental, &["X", "N", "A", "L", "P"]),
    metric("MAC", Environmental, &["X", "L", "H"]),
    metric("MPR", Environmental, &["X", "N", "L", "H"]),
    metric("MUI", Environmental, &["X", "N", "R"]),
    metric("MS", Environmental, &["X", "U", "C"]),
    metric("MC", Environmental, XHLN),
    metric("MI", Environmental, XHLN),
    metric("MA", Environmental, XHLN),
];

/// CVSS 4.0, in the specification's required order.
pub(super) const V4: &[MetricSpec] = &[
    metric("AV", Base, &["N", "A", "L", "P"]),
    metric("AC", Base, &["L", "H"]),
    metric("AT", Base, &["N", "P"]),
    metric("PR", Base, &["N", "L", "H"]),
    metric("UI", Base, &["N", "P", "A"]),
    metric("VC", Base, HLN),
    metric("VI", Base, HLN),
    metric("VA", Base, HLN),
    metric("SC", Base, HLN),
    metric("SI", Base, HLN),
    metric("SA", Base, HLN),
    metric("E", Temporal, &["X", "A", "P", "U"]),
    metric("CR", Environmental, XHML),
    metric("IR", Environmental, XHML),
    metric("AR", Environmental, XHML),
    metric("MAV", Environmental, &["X", "N", "A", "L", "P"]),
    metric("MAC", Environmental, &["X", "L", "H"]),
    metric("MAT", Environmental, &["X", "N", "P"]),
    metric("MPR", Environmental, &["X", "N", "L", "H"]),
    metric("MUI", Environmental, &["X", "N", "P", "A"]),
    metric("MVC", Environmental, XHLN),
    metric("MVI", Environmental, XHLN),
    metric("MVA", Environmental, XHLN),
    metric("MSC", Environmental, XHLN),
    metric("MSI", Environmental, &["X", "S", "H", "L", "N"]),
    metric("MSA", Environmental, &["X", "S", "H", "L", "N"]),
    metric("S", Supplemental, &["X", "N", "P"]),
    metric("AU", Supplemental, &["X", "N", "Y"]),
    metric("R", Supplemental, &["X", "A", "U", "I"]),
    metric("V", Supplemental, &["X", "D", "C"]),
    metric("RE", Supplemental, &["X", "L", "M", "H"]),
    metric("U", Supplemental, &["X", "Clear", "Green", "Amber", "Red"]),
];

/// A vector that passed the grammar: its version and the value of each metric it names.
pub(super) struct Checked<'a> {
    pub version: CvssVersion,
    table: &'static [MetricSpec],
    values: Vec<Option<&'a str>>,
}

impl<'a> Checked<'a> {
    /// The value written for `name`, if the vector names it.
    pub fn get(&self, name: &str) -> Option<&'a str> {
        self.table
            .iter()
            .position(|spec| spec.name == name)
            .and_then(|index| self.values[index])
    }

    /// Whether any metric of `group` has a value other than "Not Defined" (`X`).
    pub fn defines(&self, group: Group) -> bool {
        self.table
            .iter()
            .zip(&self.values)
            .any(|(spec, value)| spec.group == group && value.is_some_and(|v| v != "X"))
    }
}

/// Checks `vector` (already trimmed) against its version's grammar.
pub(super) fn check(vector: &str) -> Result<Checked<'_>, CvssError> {
    if vector.is_empty() {
        return Err(CvssError::Empty);
    }
    let mut components = vector.split('/');
    let prefix = components.next().unwrap_or_default();
    let (version, table) = match prefix {
        "CVSS:3.0" => (CvssVersion::V3_0, V3),
        "CVSS:3.1" => (CvssVersion::V3_1, V3),
        "CVSS:4.0" => (CvssVersion::V4_0, V4),
        _ => {
            return Err(CvssError::UnsupportedPrefix {
                vector: vector.to_owned(),
                prefix: prefix.to_owned(),
            });
        }
    };
    let err_vector = || vector.to_owned();
    let mut values: Vec<Option<&str>> = vec![None; table.len()];
    let mut previous = prefix;
    let mut rest = components.peekable();
    while let Some(component) = rest.next() {
        if component.is_empty() {
            let after = previous.to_owned();
            return Err(if rest.peek().is_none() {
                CvssError::TrailingSlash {
                    vector: err_vector(),
                    after,
                }
            } else {
                CvssError::EmptyComponent {
                    vector: err_vector(),
                    after,
                }
            });
        }
        let Some((name, value)) = component.split_once(':') else {
            return Err(CvssError::MalformedComponent {
                vector: err_vector(),
                component: component.to_owned(),
            });
        };
        let Some(index) = table.iter().position(|spec| spec.name == name) else {
            return Err(CvssError::UnknownMetric {
                vector: err_vector(),
                version,
                metric: name.to_owned(),
            });
        };
        let spec = &table[index];
        if values[index].is_some() {
            return Err(CvssError::DuplicateMetric {
                vector: err_vector(),
                metric: spec.name,
            });
        }
        if !spec.values.contains(&value) {
            return Err(CvssError::InvalidValue {
                vector: err_vector(),
                metric: spec.name,
                value: value.to_owned(),
                allowed: spec.values,
            });
        }
        values[index] = Some(value);
        previous = component;
    }
    let missing: Vec<&'static str> = table
        .iter()
        .zip(&values)
        .filter(|(spec, value)| spec.group == Base && value.is_none())
        .map(|(spec, _)| spec.name)
        .collect();
    if !missing.is_empty() {
        return Err(CvssError::MissingMetric {
            vector: err_vector(),
            metrics: missing,
        });
    }
    Ok(Checked {
        version,
        table,
        values,
    })
}
