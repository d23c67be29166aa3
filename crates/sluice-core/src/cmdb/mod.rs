//! The CMDB: assets, groups and services as the organisation describes its fleet.
//!
//! Owns the records, their validation and the text forms operators type or bring along
//! (`key=value` pairs, selectors, CSV, Ansible inventories). It never does I/O: callers hand in
//! text and get records or an error naming what is wrong and where. Time zones are checked for
//! their shape only; whether a zone exists is the tz database's business, which the server owns.

pub mod ansible;
pub mod csv;
pub mod selector;

use std::collections::{BTreeMap, BTreeSet};
use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Deserializer, Serialize, Serializer};

use crate::asset::{AssetProfile, Exposure};
use crate::ecosystem::EcosystemKey;

pub use selector::Selector;

/// The criticality of an asset nobody rated: the middle of the 1–5 scale.
pub const DEFAULT_CRITICALITY: u8 = 3;

/// The keys [`Asset::set`] accepts, for messages and help text.
pub const ASSET_KEYS: &str = "os, environment (env), criticality (1-5), exposure (internet|internal|isolated), data_classes (data), business_unit (bu), owner_group (owner), location, time_zone (tz), tags, groups, var.NAME";

/// One host as the CMDB knows it, keyed by host name.
///
/// Field names are the JSON and CSV names and are stable: see `docs/cmdb.md`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(try_from = "AssetRecord")]
pub struct Asset {
    /// The key: a DNS-style host name, lower case.
    pub hostname: String,
    /// The release line it runs (`Debian:12`), which decides which advisories apply.
    #[serde(serialize_with = "serialize_display")]
    pub os: Option<EcosystemKey>,
    /// Environment (`dev`, `test`, `staging`, `prod`, …), lower case.
    pub environment: Option<String>,
    /// Business criticality, 1 (lowest) to 5 (highest).
    pub criticality: u8,
    /// Network exposure.
    pub exposure: Exposure,
    /// Regulated data the host holds (`pci`, `phi`, …), lower case.
    pub data_classes: BTreeSet<String>,
    /// Business unit that pays for the host.
    pub business_unit: Option<String>,
    /// Team that owns and patches the host.
    pub owner_group: Option<String>,
    /// Where it runs.
    #[serde(serialize_with = "serialize_display")]
    pub location: Option<Location>,
    /// IANA time zone name, for maintenance windows in local time.
    pub time_zone: Option<String>,
    /// Free labels, lower case.
    pub tags: BTreeSet<String>,
    /// Groups the host is a member of.
    pub groups: BTreeSet<String>,
    /// Everything else (Ansible connection variables, site-specific facts), as text.
    pub vars: BTreeMap<String, String>,
}

/// An attribute of [`Asset`] that can be set from text.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Field {
    Os,
    Environment,
    Criticality,
    Exposure,
    DataClasses,
    BusinessUnit,
    OwnerGroup,
    Location,
    TimeZone,
    Tags,
    Groups,
}

impl Field {
    /// In the order of the JSON fields and CSV columns.
    pub(crate) const ALL: [Field; 11] = [
        Field::Os,
        Field::Environment,
        Field::Criticality,
        Field::Exposure,
        Field::DataClasses,
        Field::BusinessUnit,
        Field::OwnerGroup,
        Field::Location,
        Field::TimeZone,
        Field::Tags,
        Field::Groups,
    ];

    /// The canonical name: JSON field and CSV column.
    pub(crate) fn name(self) -> &'static str {
        match self {
            Field::Os => "os",
            Field::Environment => "environment",
            Field::Criticality => "criticality",
            Field::Exposure => "exposure",
            Field::DataClasses => "data_classes",
            Field::BusinessUnit => "business_unit",
            Field::OwnerGroup => "owner_group",
            Field::Location => "location",
            Field::TimeZone => "time_zone",
            Field::Tags => "tags",
            Field::Groups => "groups",
        }
    }

    /// The field for a name or one of its command-line aliases (lower case expected).
    pub(crate) fn from_key(key: &str) -> Option<Field> {
        Some(match key {
            "os" => Field::Os,
            "environment" | "env" => Field::Environment,
            "criticality" => Field::Criticality,
            "exposure" => Field::Exposure,
            "data_classes" | "data" => Field::DataClasses,
            "business_unit" | "bu" => Field::BusinessUnit,
            "owner_group" | "owner" => Field::OwnerGroup,
            "location" => Field::Location,
            "time_zone" | "tz" => Field::TimeZone,
            "tags" => Field::Tags,
            "groups" => Field::Groups,
            _ => return None,
        })
    }
}

impl Asset {
    /// An asset nobody described yet: criticality 3, internal, nothing else known.
    pub fn new(hostname: &str) -> Result<Self, CmdbError> {
        Ok(Self {
            hostname: parse_hostname(hostname)?,
            os: None,
            environment: None,
            criticality: DEFAULT_CRITICALITY,
            exposure: Exposure::Internal,
            data_classes: BTreeSet::new(),
            business_unit: None,
            owner_group: None,
            location: None,
            time_zone: None,
            tags: BTreeSet::new(),
            groups: BTreeSet::new(),
            vars: BTreeMap::new(),
        })
    }

    /// The part prioritisation weighs.
    pub fn profile(&self) -> AssetProfile {
        AssetProfile {
            hostname: Some(self.hostname.clone()),
            environment: self.environment.clone(),
            criticality: self.criticality,
            exposure: self.exposure,
            data_classes: self.data_classes.clone(),
            business_unit: self.business_unit.clone(),
        }
    }

    /// Sets one attribute as `sluice assets set HOST key=value` gives it.
    ///
    /// Lists (`tags`, `data_classes`, `groups`) are replaced whole, separated by `,` or `;`. An
    /// empty value clears the attribute (criticality back to 3, exposure back to internal;
    /// `var.NAME=` removes the variable). A failed set changes nothing.
    pub fn set(&mut self, key: &str, value: &str) -> Result<(), CmdbError> {
        let key = key.trim();
        if let Some(name) = strip_prefix_ignore_case(key, "var.") {
            let name = parse_var_name(name)?;
            if value.is_empty() {
                self.vars.remove(&name);
            } else {
                self.vars.insert(name, value.to_owned());
            }
            return Ok(());
        }
        let field =
            Field::from_key(&key.to_ascii_lowercase()).ok_or_else(|| CmdbError::UnknownKey {
                key: key.to_owned(),
            })?;
        self.set_field(field, value)
    }

    /// Sets several `key=value` pairs: all of them, or none if any is wrong.
    pub fn set_pairs<'p>(
        &mut self,
        pairs: impl IntoIterator<Item = &'p str>,
    ) -> Result<(), CmdbError> {
        let mut next = self.clone();
        for pair in pairs {
            let (key, value) = pair.split_once('=').ok_or_else(|| CmdbError::NotAPair {
                text: pair.to_owned(),
            })?;
            next.set(key, value)?;
        }
        *self = next;
        Ok(())
    }

    /// Sets one field from text; the value is fully parsed before anything changes.
    pub(crate) fn set_field(&mut self, field: Field, value: &str) -> Result<(), CmdbError> {
        let value = value.trim();
        let empty = value.is_empty();
        match field {
            Field::Os => {
                self.os = if empty {
                    None
                } else {
                    Some(value.parse::<EcosystemKey>().map_err(|err| {
                        bad_value(
                            field,
                            value,
                            format!("an OSV ecosystem such as Debian:12 or AlmaLinux:9 ({err})"),
                        )
                    })?)
                };
            }
            Field::Environment => {
                self.environment = optional(value, |v| parse_label(field, v).map(lower))?;
            }
            Field::Criticality => {
                self.criticality = if empty {
                    DEFAULT_CRITICALITY
                } else {
                    parse_criticality(value)
                        .ok_or_else(|| bad_value(field, value, "a whole number from 1 to 5"))?
                };
            }
            Field::Exposure => {
                self.exposure = if empty {
                    Exposure::Internal
                } else {
                    value
                        .parse()
                        .map_err(|_| bad_value(field, value, "internet, internal or isolated"))?
                };
            }
            Field::DataClasses => self.data_classes = parse_list(field, value, true)?,
            Field::BusinessUnit => self.business_unit = optional(value, |v| parse_label(field, v))?,
            Field::OwnerGroup => self.owner_group = optional(value, |v| parse_label(field, v))?,
            Field::Location => self.location = optional(value, str::parse::<Location>)?,
            Field::TimeZone => {
                self.time_zone = optional(value, |v| {
                    if is_time_zone_shape(v) {
                        Ok(v.to_owned())
                    } else {
                        Err(bad_value(
                            field,
                            v,
                            "an IANA time zone name such as Europe/Paris, America/New_York, UTC or Etc/GMT+5",
                        ))
                    }
                })?;
            }
            Field::Tags => self.tags = parse_list(field, value, true)?,
            Field::Groups => self.groups = parse_list(field, value, false)?,
        }
        Ok(())
    }

    /// The field's value as text, the form [`Asset::set`] and CSV accept back.
    pub(crate) fn field_text(&self, field: Field) -> String {
        fn join(set: &BTreeSet<String>) -> String {
            set.iter().map(String::as_str).collect::<Vec<_>>().join(";")
        }
        match field {
            Field::Os => self
                .os
                .as_ref()
                .map(ToString::to_string)
                .unwrap_or_default(),
            Field::Environment => self.environment.clone().unwrap_or_default(),
            Field::Criticality => self.criticality.to_string(),
            Field::Exposure => self.exposure.to_string(),
            Field::DataClasses => join(&self.data_classes),
            Field::BusinessUnit => self.business_unit.clone().unwrap_or_default(),
            Field::OwnerGroup => self.owner_group.clone().unwrap_or_default(),
            Field::Location => self
                .location
                .as_ref()
                .map(ToString::to_string)
                .unwrap_or_default(),
            Field::TimeZone => self.time_zone.clone().unwrap_or_default(),
            Field::Tags => join(&self.tags),
            Field::Groups => join(&self.groups),
        }
    }

    /// Checks a record built in code (or loaded from storage) the way the parsers check text.
    pub fn validate(&self) -> Result<(), CmdbError> {
        let mut copy = Asset::new(&self.hostname)?;
        if copy.hostname != self.hostname {
            return Err(bad_key_value("hostname", &self.hostname, "in lower case"));
        }
        for field in Field::ALL {
            copy.set_field(field, &self.field_text(field))?;
        }
        for name in self.vars.keys() {
            parse_var_name(name)?;
        }
        copy.vars = self.vars.clone();
        if copy != *self {
            return Err(bad_key_value(
                "asset",
                &self.hostname,
                "in normal form (lower-case environment, tags and data classes)",
            ));
        }
        Ok(())
    }
}

/// Where an asset runs.
///
/// Text form: `on-prem`, `on-prem:SITE` or `PROVIDER:REGION` (`aws:eu-west-1`), lower case.
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Location {
    /// In the organisation's own data centres.
    OnPrem {
        /// The data centre or site, when known.
        site: Option<String>,
    },
    /// At a cloud provider.
    Cloud {
        /// The provider (`aws`, `azure`, `gcp`, …).
        provider: String,
        /// The provider's region name.
        region: String,
    },
}

impl FromStr for Location {
    type Err = CmdbError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let text = s.trim().to_ascii_lowercase();
        let bad = |why: &str| bad_key_value("location", s, why);
        let (head, tail) = match text.split_once(':') {
            Some((head, tail)) => (head, Some(tail)),
            None => (text.as_str(), None),
        };
        let part = |p: &str| {
            if is_label(p) {
                Ok(p.to_owned())
            } else {
                Err(bad(
                    "on-prem, on-prem:SITE or PROVIDER:REGION, each part made of letters, digits, '.', '_' and '-'",
                ))
            }
        };
        if head == "on-prem" {
            return Ok(Location::OnPrem {
                site: tail.map(part).transpose()?,
            });
        }
        let region =
            tail.ok_or_else(|| bad("a cloud location PROVIDER:REGION such as aws:eu-west-1"))?;
        Ok(Location::Cloud {
            provider: part(head)?,
            region: part(region)?,
        })
    }
}

impl fmt::Display for Location {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Location::OnPrem { site: None } => f.write_str("on-prem"),
            Location::OnPrem { site: Some(site) } => write!(f, "on-prem:{site}"),
            Location::Cloud { provider, region } => write!(f, "{provider}:{region}"),
        }
    }
}

impl Serialize for Location {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.collect_str(self)
    }
}

impl<'de> Deserialize<'de> for Location {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let text = String::deserialize(deserializer)?;
        text.parse().map_err(serde::de::Error::custom)
    }
}

/// A named set of hosts, as in an Ansible inventory.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
pub struct Group {
    /// The group's name (letters, digits, `.`, `_`, `-`).
    pub name: String,
    /// What the group is for, for people.
    pub description: Option<String>,
}

impl Group {
    /// A group with a checked name and no description.
    pub fn new(name: &str) -> Result<Self, CmdbError> {
        Ok(Self {
            name: parse_group_name(name)?,
            description: None,
        })
    }
}

/// Something the business runs on several hosts, which rollouts must not take down at once.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Service {
    /// The service's name (letters, digits, `.`, `_`, `-`).
    pub name: String,
    /// 1 is the most important tier, 5 the least.
    pub tier: Option<u8>,
    /// Host names of the assets that run it.
    pub members: BTreeSet<String>,
    /// Names of the services it needs: they are patched before it, never together with it.
    pub depends_on: BTreeSet<String>,
    /// How many members may be down at once during a rollout.
    pub disruption_budget: Option<Budget>,
}

/// How many of a service's members may be disrupted at once.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Budget {
    /// At most this many hosts (`2`).
    Count(u32),
    /// At most this share of the members, rounded down (`25%`).
    Percent(u8),
}

impl Budget {
    /// How many of `members` hosts may be down at once under this budget.
    pub fn allowed(self, members: usize) -> usize {
        match self {
            Budget::Count(n) => usize::try_from(n).unwrap_or(usize::MAX).min(members),
            Budget::Percent(p) => members.saturating_mul(usize::from(p)) / 100,
        }
    }
}

impl FromStr for Budget {
    type Err = CmdbError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let text = s.trim();
        let bad = || {
            bad_key_value(
                "disruption_budget",
                s,
                "a host count (2) or a percentage from 0% to 100% (25%)",
            )
        };
        let digits_only = |t: &str| !t.is_empty() && t.bytes().all(|b| b.is_ascii_digit());
        match text.strip_suffix('%') {
            Some(percent) if digits_only(percent) => percent
                .parse::<u8>()
                .ok()
                .filter(|p| *p <= 100)
                .map(Budget::Percent)
                .ok_or_else(bad),
            Some(_) => Err(bad()),
            None if digits_only(text) => text.parse().map(Budget::Count).map_err(|_| bad()),
            None => Err(bad()),
        }
    }
}

impl fmt::Display for Budget {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Budget::Count(n) => write!(f, "{n}"),
            Budget::Percent(p) => write!(f, "{p}%"),
        }
    }
}

impl Serialize for Budget {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.collect_str(self)
    }
}

impl<'de> Deserialize<'de> for Budget {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let text = String::deserialize(deserializer)?;
        text.parse().map_err(serde::de::Error::custom)
    }
}

/// Checks a set of services against each other and the known hosts.
///
/// Reports every problem, not just the first: names that are malformed or used twice, tiers out
/// of range, members that are not known hosts, dependencies on services that do not exist, and
/// dependency cycles (each named by the services on it, in order).
pub fn validate_services(
    services: &[Service],
    is_known_host: impl Fn(&str) -> bool,
) -> Result<(), Vec<CmdbError>> {
    let mut problems = Vec::new();
    let mut by_name: BTreeMap<&str, &Service> = BTreeMap::new();
    for service in services {
        if let Err(err) = parse_label("service", &service.name) {
            problems.push(err);
        }
        if by_name.insert(&service.name, service).is_some() {
            problems.push(CmdbError::DuplicateService {
                service: service.name.clone(),
            });
        }
        if let Some(tier) = service.tier.filter(|t| !(1..=5).contains(t)) {
            problems.push(CmdbError::BadValue {
                key: format!("service {} tier", service.name),
                value: tier.to_string(),
                expected: "a tier from 1 (most important) to 5".to_owned(),
            });
        }
    }
    for service in services {
        for host in service.members.iter().filter(|h| !is_known_host(h)) {
            problems.push(CmdbError::UnknownMember {
                service: service.name.clone(),
                host: host.clone(),
            });
        }
        for dependency in &service.depends_on {
            if !by_name.contains_key(dependency.as_str()) {
                problems.push(CmdbError::UnknownDependency {
                    service: service.name.clone(),
                    dependency: dependency.clone(),
                });
            }
        }
    }
    let edges: BTreeMap<&str, Vec<&str>> = by_name
        .iter()
        .map(|(name, service)| {
            let targets = service
                .depends_on
                .iter()
                .map(String::as_str)
                .filter(|d| by_name.contains_key(d))
                .collect();
            (*name, targets)
        })
        .collect();
    for cycle in dependency_cycles(&edges) {
        problems.push(CmdbError::DependencyCycle {
            services: cycle.into_iter().map(str::to_owned).collect(),
        });
    }
    if problems.is_empty() {
        Ok(())
    } else {
        Err(problems)
    }
}

/// One cycle per strongly connected component that has one: the path from its smallest name
/// back to itself (Tarjan's algorithm, then a walk inside the component).
pub(crate) fn dependency_cycles<'a>(edges: &BTreeMap<&'a str, Vec<&'a str>>) -> Vec<Vec<&'a str>> {
    struct Tarjan<'a, 'e> {
        edges: &'e BTreeMap<&'a str, Vec<&'a str>>,
        index: BTreeMap<&'a str, usize>,
        low: BTreeMap<&'a str, usize>,
        stack: Vec<&'a str>,
        on_stack: BTreeSet<&'a str>,
        components: Vec<BTreeSet<&'a str>>,
    }
    impl<'a> Tarjan<'a, '_> {
        fn visit(&mut self, node: &'a str) {
            let n = self.index.len();
            self.index.insert(node, n);
            self.low.insert(node, n);
            self.stack.push(node);
            self.on_stack.insert(node);
            let edges = self.edges;
            for &next in edges.get(node).into_iter().flatten() {
                if !self.index.contains_key(next) {
                    self.visit(next);
                    let low = self.low[next].min(self.low[node]);
                    self.low.insert(node, low);
                } else if self.on_stack.contains(next) {
                    let low = self.index[next].min(self.low[node]);
                    self.low.insert(node, low);
                }
            }
            if self.low[node] == self.index[node] {
                let mut component = BTreeSet::new();
                while let Some(top) = self.stack.pop() {
                    self.on_stack.remove(top);
                    component.insert(top);
                    if top == node {
                        break;
                    }
                }
                self.components.push(component);
            }
        }
    }
    let mut tarjan = Tarjan {
        edges,
        index: BTreeMap::new(),
        low: BTreeMap::new(),
        stack: Vec::new(),
        on_stack: BTreeSet::new(),
        components: Vec::new(),
    };
    for &node in edges.keys() {
        if !tarjan.index.contains_key(node) {
            tarjan.visit(node);
        }
    }
    let mut cycles: Vec<Vec<&str>> = tarjan
        .components
        .iter()
        .filter_map(|component| {
            let start = *component.first()?;
            let self_loop = edges.get(start).is_some_and(|e| e.contains(&start));
            if component.len() == 1 && !self_loop {
                return None;
            }
            cycle_through(start, component, edges)
        })
        .collect();
    cycles.sort();
    cycles
}

/// A path `start → … → start` inside a strongly connected component (depth-first).
fn cycle_through<'a>(
    start: &'a str,
    component: &BTreeSet<&'a str>,
    edges: &BTreeMap<&'a str, Vec<&'a str>>,
) -> Option<Vec<&'a str>> {
    let mut path = vec![start];
    let mut seen = BTreeSet::from([start]);
    let mut cursors = vec![0usize];
    while let (Some(&node), Some(cursor)) = (path.last(), cursors.last_mut()) {
        let next = edges
            .get(node)
            .and_then(|targets| targets.get(*cursor))
            .copied();
        *cursor += 1;
        match next {
            Some(next) if next == start => {
                path.push(start);
                return Some(path);
            }
            Some(next) if component.contains(next) && seen.insert(next) => {
                path.push(next);
                cursors.push(0);
            }
            Some(_) => {}
            None => {
                path.pop();
                cursors.pop();
            }
        }
    }
    None
}

/// Why a CMDB record or text was rejected. Every variant names the input that was wrong.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum CmdbError {
    /// A value of the wrong shape.
    #[error("{key}: {value:?} is not {expected}")]
    BadValue {
        /// The attribute.
        key: String,
        /// The value as given.
        value: String,
        /// What was expected.
        expected: String,
    },
    /// An attribute that does not exist.
    #[error("unknown asset attribute {key:?}; known are: {ASSET_KEYS}")]
    UnknownKey {
        /// The key as given.
        key: String,
    },
    /// Text without `=` where `key=value` was expected.
    #[error("expected KEY=VALUE, got {text:?}")]
    NotAPair {
        /// The text as given.
        text: String,
    },
    /// A selector term that does not parse.
    #[error("term {term} `{text}` (column {column}): {reason}")]
    Selector {
        /// 1-based number of the term.
        term: usize,
        /// 1-based character column where the term starts.
        column: usize,
        /// The term as written.
        text: String,
        /// What is wrong with it.
        reason: String,
    },
    /// A CSV file that cannot be imported.
    #[error("{source_name} line {line}{}: {reason}", column.as_ref().map(|c| format!(", column {c}")).unwrap_or_default())]
    Csv {
        /// The file, for messages.
        source_name: String,
        /// 1-based line where the record starts.
        line: u64,
        /// The column's header, when one column is at fault.
        column: Option<String>,
        /// What is wrong.
        reason: String,
    },
    /// The same host twice in one import.
    #[error("{source_name}: host {hostname} on line {line} is already on line {first_line}")]
    DuplicateHost {
        /// The file, for messages.
        source_name: String,
        /// The host name.
        hostname: String,
        /// Where it first appeared.
        first_line: u64,
        /// Where it appeared again.
        line: u64,
    },
    /// An Ansible inventory that does not parse.
    #[error("{source_name} line {line}: {reason}")]
    Inventory {
        /// The file, for messages.
        source_name: String,
        /// 1-based line.
        line: usize,
        /// What is wrong.
        reason: String,
    },
    /// An Ansible variable whose value does not fit the asset attribute it names.
    #[error("{source_name}: host {host}: variable {var} from {origin}: {reason}")]
    InventoryVar {
        /// The file, for messages.
        source_name: String,
        /// The host whose attribute it would set.
        host: String,
        /// The variable.
        var: String,
        /// Where the value came from (`host line 4`, `group dbservers line 12`).
        origin: String,
        /// What is wrong with the value.
        reason: String,
    },
    /// Two services with one name.
    #[error("service {service} is defined more than once")]
    DuplicateService {
        /// The name.
        service: String,
    },
    /// A service member that is not a known host.
    #[error("service {service}: member {host} is not a known host")]
    UnknownMember {
        /// The service.
        service: String,
        /// The unknown host name.
        host: String,
    },
    /// A dependency on a service that does not exist.
    #[error("service {service} depends on {dependency}, which is not a known service")]
    UnknownDependency {
        /// The service.
        service: String,
        /// The missing service.
        dependency: String,
    },
    /// Services that depend on each other in a circle: no order can patch them.
    #[error("services depend on each other in a cycle: {}", services.join(" -> "))]
    DependencyCycle {
        /// The services on the cycle, the first repeated at the end.
        services: Vec<String>,
    },
}

/// What JSON carries, checked into an [`Asset`] on the way in.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct AssetRecord {
    hostname: String,
    #[serde(default)]
    os: Option<String>,
    #[serde(default)]
    environment: Option<String>,
    #[serde(default)]
    criticality: Option<u8>,
    #[serde(default)]
    exposure: Option<Exposure>,
    #[serde(default)]
    data_classes: BTreeSet<String>,
    #[serde(default)]
    business_unit: Option<String>,
    #[serde(default)]
    owner_group: Option<String>,
    #[serde(default)]
    location: Option<String>,
    #[serde(default)]
    time_zone: Option<String>,
    #[serde(default)]
    tags: BTreeSet<String>,
    #[serde(default)]
    groups: BTreeSet<String>,
    #[serde(default)]
    vars: BTreeMap<String, String>,
}

impl TryFrom<AssetRecord> for Asset {
    type Error = CmdbError;

    fn try_from(record: AssetRecord) -> Result<Self, Self::Error> {
        fn list(set: &BTreeSet<String>) -> String {
            set.iter().map(String::as_str).collect::<Vec<_>>().join(",")
        }
        let mut asset = Asset::new(&record.hostname)?;
        let texts = [
            (Field::Os, record.os.unwrap_or_default()),
            (Field::Environment, record.environment.unwrap_or_default()),
            (
                Field::Criticality,
                record
                    .criticality
                    .map(|c| c.to_string())
                    .unwrap_or_default(),
            ),
            (
                Field::Exposure,
                record.exposure.map(|e| e.to_string()).unwrap_or_default(),
            ),
            (Field::DataClasses, list(&record.data_classes)),
            (
                Field::BusinessUnit,
                record.business_unit.unwrap_or_default(),
            ),
            (Field::OwnerGroup, record.owner_group.unwrap_or_default()),
            (Field::Location, record.location.unwrap_or_default()),
            (Field::TimeZone, record.time_zone.unwrap_or_default()),
            (Field::Tags, list(&record.tags)),
            (Field::Groups, list(&record.groups)),
        ];
        for (field, text) in texts {
            asset.set_field(field, &text)?;
        }
        for (name, value) in record.vars {
            asset.vars.insert(parse_var_name(&name)?, value);
        }
        Ok(asset)
    }
}

fn serialize_display<T: fmt::Display, S: Serializer>(
    value: &Option<T>,
    serializer: S,
) -> Result<S::Ok, S::Error> {
    match value {
        Some(value) => serializer.collect_str(value),
        None => serializer.serialize_none(),
    }
}

fn bad_value(field: Field, value: &str, expected: impl Into<String>) -> CmdbError {
    bad_key_value(field.name(), value, expected)
}

fn bad_key_value(key: &str, value: &str, expected: impl Into<String>) -> CmdbError {
    CmdbError::BadValue {
        key: key.to_owned(),
        value: value.to_owned(),
        expected: expected.into(),
    }
}

fn optional<T>(
    value: &str,
    parse: impl FnOnce(&str) -> Result<T, CmdbError>,
) -> Result<Option<T>, CmdbError> {
    if value.is_empty() {
        Ok(None)
    } else {
        parse(value).map(Some)
    }
}

fn lower(text: String) -> String {
    text.to_ascii_lowercase()
}

fn strip_prefix_ignore_case<'t>(text: &'t str, prefix: &str) -> Option<&'t str> {
    let head = text.get(..prefix.len())?;
    head.eq_ignore_ascii_case(prefix)
        .then(|| &text[prefix.len()..])
}

/// 1–5 as written by a person.
pub(crate) fn parse_criticality(text: &str) -> Option<u8> {
    text.trim()
        .parse::<u8>()
        .ok()
        .filter(|c| (1..=5).contains(c))
}

/// Names of environments, units, teams, tags, groups: one token, safe inside selectors and
/// lists (no spaces, commas, `|`, `;` or `=`).
pub(crate) fn is_label(text: &str) -> bool {
    text.len() <= 128
        && text.starts_with(|c: char| c.is_ascii_alphanumeric())
        && text
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'-'))
}

fn parse_label(key: impl fmt::Display, value: &str) -> Result<String, CmdbError> {
    let value = value.trim();
    if is_label(value) {
        Ok(value.to_owned())
    } else {
        Err(bad_key_value(
            &key.to_string(),
            value,
            "a name of letters, digits, '.', '_' and '-' starting with a letter or digit",
        ))
    }
}

impl fmt::Display for Field {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

fn parse_list(field: Field, value: &str, lowercase: bool) -> Result<BTreeSet<String>, CmdbError> {
    value
        .split([',', ';'])
        .map(str::trim)
        .filter(|item| !item.is_empty())
        .map(|item| {
            let item = parse_label(field, item)?;
            Ok(if lowercase { lower(item) } else { item })
        })
        .collect()
}

/// Checks and lower-cases a host name: dot-separated labels of letters, digits, `-` and `_`
/// (not at a label's ends), at most 63 characters a label and 253 in all. IP addresses pass.
pub fn parse_hostname(text: &str) -> Result<String, CmdbError> {
    let name = text.trim().to_ascii_lowercase();
    let label_ok = |label: &str| {
        (1..=63).contains(&label.len())
            && label
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
            && !label.starts_with('-')
            && !label.ends_with('-')
    };
    if name.len() <= 253 && name.split('.').all(label_ok) {
        Ok(name)
    } else {
        Err(bad_key_value(
            "hostname",
            text,
            "a host name (dot-separated labels of letters, digits, '-' and '_', at most 63 characters each)",
        ))
    }
}

/// Checks a group name: the same rule as other names.
pub fn parse_group_name(text: &str) -> Result<String, CmdbError> {
    parse_label("group", text)
}

/// Variable names as Ansible writes them: a letter or `_`, then letters, digits, `_`, `-`.
pub(crate) fn parse_var_name(text: &str) -> Result<String, CmdbError> {
    let ok = text.starts_with(|c: char| c.is_ascii_alphabetic() || c == '_')
        && text
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-')
        && text.len() <= 128;
    if ok {
        Ok(text.to_owned())
    } else {
        Err(bad_key_value(
            "variable name",
            text,
            "a name of letters, digits, '_' and '-' starting with a letter or '_'",
        ))
    }
}

/// The shape of an IANA zone name: `UTC`, `Area/City`, `Area/Region/City`, `Etc/GMT+5`. Whether
/// the zone exists is checked by the server against the tz database.
pub fn is_time_zone_shape(text: &str) -> bool {
    let segments: Vec<&str> = text.split('/').collect();
    segments.len() <= 3
        && text.len() <= 64
        && segments.iter().all(|segment| {
            segment.starts_with(|c: char| c.is_ascii_uppercase())
                && segment
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'_' | b'-' | b'+'))
        })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn service(name: &str, members: &[&str], depends_on: &[&str]) -> Service {
        Service {
            name: name.to_owned(),
            tier: Some(2),
            members: members.iter().map(|m| (*m).to_owned()).collect(),
            depends_on: depends_on.iter().map(|d| (*d).to_owned()).collect(),
            disruption_budget: None,
        }
    }

    #[test]
    fn new_asset_defaults() {
        let a = Asset::new(" Web1.Example.COM ").unwrap();
        assert_eq!(a.hostname, "web1.example.com");
        assert_eq!(a.criticality, 3);
        assert_eq!(a.exposure, Exposure::Internal);
        assert_eq!(
            a.profile(),
            AssetProfile {
                hostname: Some("web1.example.com".to_owned()),
                ..AssetProfile::default()
            }
        );
    }

    #[test]
    fn hostnames() {
        for good in [
            "web1",
            "web-1.example.com",
            "10.0.0.1",
            "db_01",
            "a",
            "x1.y2",
        ] {
            assert!(parse_hostname(good).is_ok(), "{good}");
        }
        let long_label = "a".repeat(64);
        let long_name = ["a".repeat(63).as_str(); 5].join(".");
        for bad in [
            "",
            "-web",
            "web-",
            "web..example",
            "web.",
            "web 1",
            "web/1",
            "::1",
            "web:22",
            long_label.as_str(),
            long_name.as_str(),
        ] {
            let err = parse_hostname(bad).unwrap_err();
            assert!(err.to_string().starts_with("hostname: "), "{err}");
        }
    }

    #[test]
    fn set_every_key_and_alias() {
        let mut a = Asset::new("web1").unwrap();
        for (key, value) in [
            ("os", "Debian:12.4"),
            ("ENV", "Prod"),
            ("criticality", " 5 "),
            ("exposure", "public"),
            ("data", "PCI; phi"),
            ("bu", "Payments"),
            ("owner", "team-web"),
            ("location", "AWS:eu-west-1"),
            ("tz", "America/New_York"),
            ("tags", "Web, edge"),
            ("groups", "WebServers,prod"),
            ("var.rack", "B12"),
        ] {
            a.set(key, value).unwrap();
        }
        assert_eq!(a.os.as_ref().unwrap().to_string(), "Debian:12");
        assert_eq!(a.environment.as_deref(), Some("prod"));
        assert_eq!(a.criticality, 5);
        assert_eq!(a.exposure, Exposure::Internet);
        assert_eq!(
            a.data_classes,
            BTreeSet::from(["pci".to_owned(), "phi".to_owned()])
        );
        assert_eq!(a.business_unit.as_deref(), Some("Payments"));
        assert_eq!(a.owner_group.as_deref(), Some("team-web"));
        assert_eq!(
            a.location,
            Some(Location::Cloud {
                provider: "aws".to_owned(),
                region: "eu-west-1".to_owned()
            })
        );
        assert_eq!(a.time_zone.as_deref(), Some("America/New_York"));
        assert_eq!(
            a.tags,
            BTreeSet::from(["edge".to_owned(), "web".to_owned()])
        );
        assert_eq!(
            a.groups,
            BTreeSet::from(["WebServers".to_owned(), "prod".to_owned()])
        );
        assert_eq!(a.vars["rack"], "B12");
        assert!(a.validate().is_ok());

        // Long names too, and empty values clear.
        for key in [
            "environment",
            "business_unit",
            "owner_group",
            "time_zone",
            "data_classes",
            "criticality",
            "exposure",
            "os",
            "location",
            "tags",
            "groups",
            "var.rack",
        ] {
            a.set(key, "").unwrap();
        }
        assert_eq!(a, Asset::new("web1").unwrap());
    }

    #[test]
    fn failed_sets_change_nothing_and_name_the_key() {
        let mut a = Asset::new("web1").unwrap();
        a.set_pairs(["env=prod", "tags=web"]).unwrap();
        let before = a.clone();
        for (key, value, needle) in [
            (
                "criticality",
                "9",
                "criticality: \"9\" is not a whole number from 1 to 5",
            ),
            ("criticality", "high", "criticality"),
            ("exposure", "dmz", "exposure"),
            ("os", "Plan9:4", "os"),
            ("os", "Debian", "os"),
            ("env", "pr od", "environment"),
            ("tags", "ok,not ok", "tags"),
            ("data", "pci,x=y", "data_classes"),
            ("tz", "Mars/Olympus Mons", "time_zone"),
            ("tz", "europe/paris", "time_zone"),
            ("location", "aws", "location"),
            ("location", "on-prem:dc 1", "location"),
            ("var.9lives", "x", "variable name"),
            (
                "colour",
                "blue",
                "unknown asset attribute \"colour\"; known are: os, environment (env)",
            ),
            ("hostname", "other", "unknown asset attribute"),
        ] {
            let err = a.set(key, value).unwrap_err().to_string();
            assert!(err.contains(needle), "{key}={value}: {err}");
            assert_eq!(a, before, "{key}={value}");
        }
        let err = a
            .set_pairs(["env=dev", "criticality=1", "exposure=dmz"])
            .unwrap_err();
        assert!(err.to_string().contains("exposure"));
        assert_eq!(a, before, "set_pairs is all or nothing");
        assert_eq!(
            a.set_pairs(["env"]).unwrap_err(),
            CmdbError::NotAPair {
                text: "env".to_owned()
            }
        );
    }

    #[test]
    fn locations() {
        for (text, canonical) in [
            ("on-prem", "on-prem"),
            ("ON-PREM:DC1", "on-prem:dc1"),
            ("aws:eu-west-1", "aws:eu-west-1"),
            (" azure:westeurope ", "azure:westeurope"),
        ] {
            let location: Location = text.parse().unwrap();
            assert_eq!(location.to_string(), canonical);
            assert_eq!(canonical.parse::<Location>().unwrap(), location);
        }
        for bad in [
            "",
            "aws",
            "aws:",
            ":eu",
            "on-prem:",
            "aws:eu:west",
            "a ws:x",
            "on-prem:dc 1",
        ] {
            assert!(bad.parse::<Location>().is_err(), "{bad}");
        }
    }

    #[test]
    fn time_zone_shapes() {
        for good in [
            "UTC",
            "Europe/Paris",
            "America/Argentina/Buenos_Aires",
            "Etc/GMT+5",
            "Etc/GMT-14",
            "America/Port-au-Prince",
            "EST5EDT",
        ] {
            assert!(is_time_zone_shape(good), "{good}");
        }
        for bad in [
            "",
            "utc",
            "Europe/",
            "/Paris",
            "Europe/paris",
            "Europe Paris",
            "A/B/C/D",
            "+05:00",
        ] {
            assert!(!is_time_zone_shape(bad), "{bad}");
        }
    }

    #[test]
    fn budgets() {
        assert_eq!("2".parse::<Budget>().unwrap(), Budget::Count(2));
        assert_eq!(" 25% ".parse::<Budget>().unwrap(), Budget::Percent(25));
        assert_eq!("0".parse::<Budget>().unwrap(), Budget::Count(0));
        assert_eq!("100%".parse::<Budget>().unwrap(), Budget::Percent(100));
        for bad in [
            "",
            "%",
            "101%",
            "-1",
            "2.5",
            "25 %",
            "two",
            "1e3",
            "99999999999",
        ] {
            let err = bad.parse::<Budget>().unwrap_err();
            assert!(
                err.to_string().contains("disruption_budget"),
                "{bad}: {err}"
            );
        }
        assert_eq!(Budget::Count(2).to_string(), "2");
        assert_eq!(Budget::Percent(25).to_string(), "25%");
        assert_eq!(Budget::Count(5).allowed(3), 3);
        assert_eq!(Budget::Count(1).allowed(3), 1);
        assert_eq!(Budget::Percent(25).allowed(10), 2);
        assert_eq!(Budget::Percent(25).allowed(3), 0);
        assert_eq!(Budget::Percent(100).allowed(7), 7);
    }

    #[test]
    fn services_validate() {
        let hosts = BTreeSet::from(["web1".to_owned(), "web2".to_owned(), "db1".to_owned()]);
        let known = |h: &str| hosts.contains(h);
        let good = [
            service("web", &["web1", "web2"], &["db"]),
            service("db", &["db1"], &[]),
        ];
        assert_eq!(validate_services(&good, known), Ok(()));

        let problems = validate_services(
            &[
                service("web", &["web1", "web9"], &["db", "cache"]),
                service("db", &["db1"], &[]),
            ],
            known,
        )
        .unwrap_err();
        assert_eq!(
            problems,
            [
                CmdbError::UnknownMember {
                    service: "web".to_owned(),
                    host: "web9".to_owned()
                },
                CmdbError::UnknownDependency {
                    service: "web".to_owned(),
                    dependency: "cache".to_owned()
                },
            ]
        );
    }

    #[test]
    fn dependency_cycles_name_their_services() {
        let problems = validate_services(
            &[
                service("web", &[], &["api"]),
                service("api", &[], &["db", "queue"]),
                service("db", &[], &["web"]),
                service("queue", &[], &[]),
                service("loner", &[], &["loner"]),
                service("x", &[], &["y"]),
                service("y", &[], &["x"]),
            ],
            |_| true,
        )
        .unwrap_err();
        let messages: Vec<String> = problems.iter().map(ToString::to_string).collect();
        assert_eq!(
            messages,
            [
                "services depend on each other in a cycle: api -> db -> web -> api",
                "services depend on each other in a cycle: loner -> loner",
                "services depend on each other in a cycle: x -> y -> x",
            ]
        );
    }

    #[test]
    fn services_other_problems() {
        let mut bad_tier = service("web", &[], &[]);
        bad_tier.tier = Some(0);
        let problems = validate_services(
            &[
                bad_tier,
                service("web", &[], &[]),
                service("bad name", &[], &[]),
            ],
            |_| true,
        )
        .unwrap_err();
        assert_eq!(problems.len(), 3, "{problems:?}");
        assert!(problems.contains(&CmdbError::DuplicateService {
            service: "web".to_owned()
        }));
        assert!(problems.iter().any(|p| p.to_string().contains("tier")));
        assert!(problems.iter().any(|p| p.to_string().contains("bad name")));
    }

    #[test]
    fn json_field_names_are_stable() {
        let mut a = Asset::new("web1").unwrap();
        a.set_pairs([
            "os=Ubuntu:22.04",
            "env=prod",
            "location=on-prem:dc1",
            "tags=web",
            "var.ansible_host=10.0.0.1",
        ])
        .unwrap();
        let json = serde_json::to_value(&a).unwrap();
        assert_eq!(
            json,
            serde_json::json!({
                "hostname": "web1",
                "os": "Ubuntu:22.04",
                "environment": "prod",
                "criticality": 3,
                "exposure": "internal",
                "data_classes": [],
                "business_unit": null,
                "owner_group": null,
                "location": "on-prem:dc1",
                "time_zone": null,
                "tags": ["web"],
                "groups": [],
                "vars": {"ansible_host": "10.0.0.1"},
            })
        );
        let back: Asset = serde_json::from_value(json).unwrap();
        assert_eq!(back, a);
        let minimal: Asset = serde_json::from_str(r#"{"hostname": "DB1"}"#).unwrap();
        assert_eq!(minimal, Asset::new("db1").unwrap());
    }

    #[test]
    fn json_input_is_checked() {
        for (json, needle) in [
            (r#"{"hostname": "web1", "criticality": 7}"#, "criticality"),
            (r#"{"hostname": "web 1"}"#, "hostname"),
            (r#"{"hostname": "web1", "colour": "blue"}"#, "colour"),
            (r#"{"hostname": "web1", "os": "Debian"}"#, "os"),
            (r#"{"hostname": "web1", "tags": ["a b"]}"#, "tags"),
            (
                r#"{"hostname": "web1", "vars": {"1x": "y"}}"#,
                "variable name",
            ),
            (r#"{"hostname": "web1", "exposure": "dmz"}"#, "dmz"),
        ] {
            let err = serde_json::from_str::<Asset>(json).unwrap_err().to_string();
            assert!(err.contains(needle), "{json}: {err}");
        }
    }

    #[test]
    fn validate_catches_hand_built_records() {
        let mut a = Asset::new("web1").unwrap();
        assert!(a.validate().is_ok());
        a.tags.insert("Web".to_owned());
        assert!(a.validate().is_err());
        let mut a = Asset::new("web1").unwrap();
        a.criticality = 0;
        assert!(a.validate().is_err());
        let mut a = Asset::new("web1").unwrap();
        a.hostname = "WEB1".to_owned();
        assert!(a.validate().is_err());
        let mut a = Asset::new("web1").unwrap();
        a.vars.insert("ok".to_owned(), String::new());
        assert!(a.validate().is_ok());
        a.vars.insert("not ok".to_owned(), String::new());
        assert!(a.validate().is_err());
    }

    #[test]
    fn service_json() {
        let s = Service {
            disruption_budget: Some(Budget::Percent(25)),
            ..service("web", &["web1"], &["db"])
        };
        let json = serde_json::to_string(&s).unwrap();
        assert_eq!(
            json,
            r#"{"name":"web","tier":2,"members":["web1"],"depends_on":["db"],"disruption_budget":"25%"}"#
        );
        assert_eq!(serde_json::from_str::<Service>(&json).unwrap(), s);
        assert!(serde_json::from_str::<Budget>("\"200%\"").is_err());
        assert_eq!(Group::new("web").unwrap().name, "web");
        assert!(Group::new("we b").is_err());
    }
}
