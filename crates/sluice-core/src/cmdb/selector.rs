//! Selectors: which assets a change, window or report applies to, as an operator writes it.
//!
//! `env=prod,bu=payments,tag=web,criticality>=4` is a conjunction of terms. Parsing checks every
//! value against the attribute it names, so a selector that parses can only fail to match, never
//! be misread. Its text form is canonical and round-trips, which is what gets stored. Matching is
//! pure and reads nothing but the asset.

use std::collections::BTreeSet;
use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Deserializer, Serialize, Serializer};

use super::{
    Asset, CmdbError, Location, is_label, is_time_zone_shape, parse_criticality, parse_var_name,
};
use crate::asset::Exposure;
use crate::ecosystem::EcosystemKey;

/// The keys a selector term may test, for messages.
pub const SELECTOR_KEYS: &str =
    "host, env, bu, owner, tag, group, data, os, exposure, location, tz, criticality, var.NAME";

/// A conjunction of terms; the empty selector matches every asset.
#[derive(Clone, Debug, Default, PartialEq, Eq, Hash)]
pub struct Selector {
    terms: Vec<Term>,
}

/// One `key op value` test.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct Term {
    /// What it looks at.
    pub key: Key,
    /// What it requires of it.
    pub test: Test,
}

/// The asset attribute a term looks at.
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Key {
    /// The host name (`host=web*`).
    Host,
    /// `env`.
    Environment,
    /// `bu`.
    BusinessUnit,
    /// `owner`.
    OwnerGroup,
    /// `tag`: the asset has such a tag.
    Tag,
    /// `group`: the asset is a member of such a group.
    Group,
    /// `data`: the asset holds such a data class.
    DataClass,
    /// `os`, as `Debian:12`.
    Os,
    /// `exposure`.
    Exposure,
    /// `location`, as `aws:eu-west-1`.
    Location,
    /// `tz`.
    TimeZone,
    /// `criticality`, the one numeric key.
    Criticality,
    /// `var.NAME`.
    Var(String),
}

/// What a term requires of the attribute.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub enum Test {
    /// `=a|b`: the attribute (or, for sets, one of its members) matches one of the patterns.
    AnyOf(BTreeSet<String>),
    /// `!=a|b`: exactly when `AnyOf` would not match, so an unset attribute passes.
    NoneOf(BTreeSet<String>),
    /// `>=n`.
    AtLeast(u8),
    /// `<=n`.
    AtMost(u8),
    /// `>n`.
    Above(u8),
    /// `<n`.
    Below(u8),
}

impl Selector {
    /// The selector that matches every asset.
    pub fn all() -> Self {
        Self::default()
    }

    /// Its terms, in the order written.
    pub fn terms(&self) -> &[Term] {
        &self.terms
    }

    /// Whether it matches every asset.
    pub fn is_all(&self) -> bool {
        self.terms.is_empty()
    }

    /// Parses `key=value,key!=a|b,criticality>=4`; see `docs/cmdb.md` for the grammar.
    pub fn parse(text: &str) -> Result<Self, CmdbError> {
        if text.trim().is_empty() {
            return Ok(Self::all());
        }
        let mut terms = Vec::new();
        let mut offset = 0;
        for (index, raw) in text.split(',').enumerate() {
            let leading = raw.len() - raw.trim_start().len();
            let column = text[..offset + leading].chars().count() + 1;
            let written = raw.trim();
            let fail = |reason: String| CmdbError::Selector {
                term: index + 1,
                column,
                text: written.to_owned(),
                reason,
            };
            terms.push(parse_term(written).map_err(fail)?);
            offset += raw.len() + 1;
        }
        Ok(Self { terms })
    }

    /// Whether every term holds for the asset.
    pub fn matches(&self, asset: &Asset) -> bool {
        self.terms.iter().all(|term| term.matches(asset))
    }

    /// The assets it matches, in the order given.
    pub fn filter<'a>(
        &self,
        assets: impl IntoIterator<Item = &'a Asset>,
    ) -> impl Iterator<Item = &'a Asset> {
        assets.into_iter().filter(|asset| self.matches(asset))
    }
}

impl FromStr for Selector {
    type Err = CmdbError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Self::parse(s)
    }
}

impl fmt::Display for Selector {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, term) in self.terms.iter().enumerate() {
            if i > 0 {
                f.write_str(",")?;
            }
            write!(f, "{term}")?;
        }
        Ok(())
    }
}

impl Serialize for Selector {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.collect_str(self)
    }
}

impl<'de> Deserialize<'de> for Selector {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let text = String::deserialize(deserializer)?;
        text.parse().map_err(serde::de::Error::custom)
    }
}

impl fmt::Display for Term {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.key)?;
        let (op, values) = match &self.test {
            Test::AnyOf(values) => ("=", values),
            Test::NoneOf(values) => ("!=", values),
            Test::AtLeast(n) => return write!(f, ">={n}"),
            Test::AtMost(n) => return write!(f, "<={n}"),
            Test::Above(n) => return write!(f, ">{n}"),
            Test::Below(n) => return write!(f, "<{n}"),
        };
        f.write_str(op)?;
        for (i, value) in values.iter().enumerate() {
            if i > 0 {
                f.write_str("|")?;
            }
            f.write_str(value)?;
        }
        Ok(())
    }
}

impl fmt::Display for Key {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Key::Host => "host",
            Key::Environment => "env",
            Key::BusinessUnit => "bu",
            Key::OwnerGroup => "owner",
            Key::Tag => "tag",
            Key::Group => "group",
            Key::DataClass => "data",
            Key::Os => "os",
            Key::Exposure => "exposure",
            Key::Location => "location",
            Key::TimeZone => "tz",
            Key::Criticality => "criticality",
            Key::Var(name) => return write!(f, "var.{name}"),
        })
    }
}

impl Key {
    fn parse(text: &str) -> Result<Self, String> {
        let lower = text.to_ascii_lowercase();
        if let Some(name) = lower.starts_with("var.").then(|| &text[4..]) {
            return parse_var_name(name)
                .map(Key::Var)
                .map_err(|err| err.to_string());
        }
        Ok(match lower.as_str() {
            "host" | "hostname" => Key::Host,
            "env" | "environment" => Key::Environment,
            "bu" | "business_unit" => Key::BusinessUnit,
            "owner" | "owner_group" => Key::OwnerGroup,
            "tag" | "tags" => Key::Tag,
            "group" | "groups" => Key::Group,
            "data" | "data_classes" => Key::DataClass,
            "os" => Key::Os,
            "exposure" => Key::Exposure,
            "location" => Key::Location,
            "tz" | "time_zone" => Key::TimeZone,
            "criticality" => Key::Criticality,
            "" => return Err("missing key before the operator".to_owned()),
            _ => return Err(format!("unknown key `{text}`; keys are {SELECTOR_KEYS}")),
        })
    }

    /// Checks one value written for this key and returns its canonical form.
    fn canonical_value(&self, value: &str) -> Result<String, String> {
        let glob = has_glob(value);
        let pattern_of = |allowed: &dyn Fn(u8) -> bool, what: &str| {
            if value.bytes().all(|b| allowed(b) || b == b'*' || b == b'?') {
                Ok(value.to_owned())
            } else {
                Err(format!("`{value}` is not {what}"))
            }
        };
        let label_byte = |b: u8| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'-');
        match self {
            Key::Host => {
                pattern_of(&label_byte, "a host name or pattern").map(|v| v.to_ascii_lowercase())
            }
            Key::Environment | Key::Tag | Key::DataClass => {
                label(value, glob).map(|v| v.to_ascii_lowercase())
            }
            Key::BusinessUnit | Key::OwnerGroup | Key::Group => label(value, glob),
            Key::Os if glob => pattern_of(
                &|b| label_byte(b) || b == b':' || b == b' ',
                "an ecosystem pattern such as Debian:*",
            ),
            Key::Os => value
                .parse::<EcosystemKey>()
                .map(|key| key.to_string())
                .map_err(|err| format!("os takes an ecosystem such as Debian:12: {err}")),
            Key::Exposure => value
                .parse::<Exposure>()
                .map(|e| e.to_string())
                .map_err(|_| "exposure takes internet, internal or isolated".to_owned()),
            Key::Location if glob || !value.contains(':') => pattern_of(
                &|b| label_byte(b) || b == b':',
                "a location such as aws, aws:eu-west-1, on-prem:dc1 or aws:eu-*",
            )
            .map(|v| v.to_ascii_lowercase()),
            Key::Location => value
                .parse::<Location>()
                .map(|l| l.to_string())
                .map_err(|err| err.to_string()),
            Key::TimeZone if glob => pattern_of(
                &|b| b.is_ascii_alphanumeric() || matches!(b, b'/' | b'_' | b'-' | b'+'),
                "a time zone pattern such as Europe/*",
            ),
            Key::TimeZone if is_time_zone_shape(value) => Ok(value.to_owned()),
            Key::TimeZone => Err(format!(
                "`{value}` is not a time zone name such as Europe/Paris or UTC"
            )),
            Key::Criticality => parse_criticality(value)
                .map(|c| c.to_string())
                .ok_or_else(|| "criticality takes a number 1–5".to_owned()),
            Key::Var(_) => Ok(value.to_owned()),
        }
    }
}

fn label(value: &str, glob: bool) -> Result<String, String> {
    let ok = if glob {
        value
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'-' | b'*' | b'?'))
    } else {
        is_label(value)
    };
    if ok {
        Ok(value.to_owned())
    } else {
        Err(format!(
            "`{value}` is not a name of letters, digits, '.', '_' and '-' (or a pattern with * and ?)"
        ))
    }
}

fn has_glob(text: &str) -> bool {
    text.contains(['*', '?'])
}

fn parse_term(text: &str) -> Result<Term, String> {
    if text.is_empty() {
        return Err("empty term (two commas in a row, or a comma at an end)".to_owned());
    }
    let at = text.find(['=', '!', '<', '>']).ok_or_else(|| {
        "no operator: write key=value, key!=value, or criticality>=n (also <=, >, <)".to_owned()
    })?;
    let rest = &text[at..];
    let (op, len) = if rest.starts_with("!=") {
        ("!=", 2)
    } else if rest.starts_with(">=") {
        (">=", 2)
    } else if rest.starts_with("<=") {
        ("<=", 2)
    } else if rest.starts_with('=') {
        ("=", 1)
    } else if rest.starts_with('>') {
        (">", 1)
    } else if rest.starts_with('<') {
        ("<", 1)
    } else {
        return Err("`!` must be followed by `=`".to_owned());
    };
    let key = Key::parse(text[..at].trim())?;
    let value = text[at + len..].trim();
    if value.is_empty() {
        return Err(format!("missing value after `{op}`"));
    }
    let test = match op {
        "=" | "!=" => {
            let values = value
                .split('|')
                .map(str::trim)
                .map(|v| {
                    if v.is_empty() {
                        Err("empty alternative in a|b".to_owned())
                    } else {
                        key.canonical_value(v)
                    }
                })
                .collect::<Result<BTreeSet<_>, _>>()?;
            if op == "=" {
                Test::AnyOf(values)
            } else {
                Test::NoneOf(values)
            }
        }
        _ => {
            if key != Key::Criticality {
                return Err(format!(
                    "`{op}` compares numbers and only criticality is a number; use = or != for {key}"
                ));
            }
            let n = parse_criticality(value)
                .ok_or_else(|| "criticality takes a number 1–5".to_owned())?;
            match op {
                ">=" => Test::AtLeast(n),
                "<=" => Test::AtMost(n),
                ">" => Test::Above(n),
                _ => Test::Below(n),
            }
        }
    };
    Ok(Term { key, test })
}

impl Term {
    /// Whether the asset passes this term.
    pub fn matches(&self, asset: &Asset) -> bool {
        let patterns = match &self.test {
            Test::AtLeast(n) => return asset.criticality >= *n,
            Test::AtMost(n) => return asset.criticality <= *n,
            Test::Above(n) => return asset.criticality > *n,
            Test::Below(n) => return asset.criticality < *n,
            Test::AnyOf(patterns) | Test::NoneOf(patterns) => patterns,
        };
        let any = patterns
            .iter()
            .any(|pattern| self.key.value_matches(asset, pattern));
        match self.test {
            Test::NoneOf(_) => !any,
            _ => any,
        }
    }
}

impl Key {
    fn value_matches(&self, asset: &Asset, pattern: &str) -> bool {
        let one = |value: Option<&str>| value.is_some_and(|v| glob_match(pattern, v));
        let some = |set: &BTreeSet<String>| set.iter().any(|v| glob_match(pattern, v));
        match self {
            Key::Host => glob_match(pattern, &asset.hostname),
            Key::Environment => one(asset.environment.as_deref()),
            Key::BusinessUnit => one(asset.business_unit.as_deref()),
            Key::OwnerGroup => one(asset.owner_group.as_deref()),
            Key::Tag => some(&asset.tags),
            Key::Group => some(&asset.groups),
            Key::DataClass => some(&asset.data_classes),
            Key::Os => one(asset.os.as_ref().map(ToString::to_string).as_deref()),
            Key::Exposure => glob_match(pattern, &asset.exposure.to_string()),
            Key::Location => asset.location.as_ref().is_some_and(|location| {
                let text = location.to_string();
                // A provider (or on-prem) alone stands for all its regions (sites).
                glob_match(pattern, &text)
                    || (!pattern.contains(':')
                        && !has_glob(pattern)
                        && text.split(':').next() == Some(pattern))
            }),
            Key::TimeZone => one(asset.time_zone.as_deref()),
            Key::Criticality => pattern == asset.criticality.to_string(),
            Key::Var(name) => one(asset.vars.get(name).map(String::as_str)),
        }
    }
}

/// Shell-style match of the whole text: `*` is any run of characters, `?` exactly one.
pub fn glob_match(pattern: &str, text: &str) -> bool {
    let pattern: Vec<char> = pattern.chars().collect();
    let text: Vec<char> = text.chars().collect();
    let (mut p, mut t) = (0, 0);
    // Where the last `*` was, and the text position it currently swallows up to.
    let mut star: Option<(usize, usize)> = None;
    while t < text.len() {
        match pattern.get(p) {
            Some('*') => {
                star = Some((p, t));
                p += 1;
            }
            Some(&c) if c == '?' || c == text[t] => {
                p += 1;
                t += 1;
            }
            _ => match star {
                Some((sp, st)) => {
                    p = sp + 1;
                    t = st + 1;
                    star = Some((sp, st + 1));
                }
                None => return false,
            },
        }
    }
    pattern[p..].iter().all(|&c| c == '*')
}

#[cfg(test)]
mod tests {
    use super::*;

    fn asset() -> Asset {
        let mut a = Asset::new("web01.example.com").unwrap();
        a.set_pairs([
            "env=prod",
            "bu=payments",
            "owner=team-web",
            "criticality=4",
            "exposure=internet",
            "data=pci,pii",
            "tags=web,frontend",
            "groups=webservers,prod",
            "os=Debian:12",
            "location=aws:eu-west-1",
            "tz=Europe/Paris",
            "var.ansible_host=10.0.0.1",
        ])
        .unwrap();
        a
    }

    #[test]
    fn glob_matching() {
        for (pattern, text, expected) in [
            ("web*", "web01", true),
            ("web*", "db01", false),
            ("*", "", true),
            ("", "", true),
            ("", "a", false),
            ("w?b", "web", true),
            ("w?b", "wb", false),
            ("*.example.com", "a.b.example.com", true),
            ("*.example.com", "example.com", false),
            ("a*b*c", "aXXbYYc", true),
            ("a*b*c", "aXXbYY", false),
            ("**", "abc", true),
            ("Europe/*", "Europe/Paris", true),
            ("Europe/*", "America/New_York", false),
            ("exact", "exact", true),
            ("exact", "exacto", false),
        ] {
            assert_eq!(glob_match(pattern, text), expected, "{pattern} vs {text}");
        }
    }

    #[test]
    fn matching_table() {
        let a = asset();
        let mut bare = Asset::new("db1").unwrap();
        bare.criticality = 2;
        for (selector, on_a, on_bare) in [
            ("", true, true),
            ("env=prod", true, false),
            ("env!=prod", false, true),
            ("env=dev|prod", true, false),
            ("env=*", true, false),
            ("env!=*", false, true),
            ("ENV=PROD", true, false),
            ("bu=payments", true, false),
            ("bu=Payments", false, false),
            ("owner=team-*", true, false),
            ("tag=web", true, false),
            ("tag=db", false, false),
            ("tag!=db", true, true),
            ("tag!=web|db", false, true),
            ("group=webservers", true, false),
            ("data=pci", true, false),
            ("data=phi", false, false),
            ("os=Debian:12", true, false),
            ("os=Debian:12.4", true, false),
            ("os=Debian:*", true, false),
            ("os=Ubuntu:22.04", false, false),
            ("exposure=internet", true, false),
            ("exposure=public", true, false),
            ("exposure=internal", false, true),
            ("location=aws", true, false),
            ("location=aws:*", true, false),
            ("location=aws:eu-west-1", true, false),
            ("location=aws:us-*", false, false),
            ("location=gcp", false, false),
            ("location=aw", false, false),
            ("tz=Europe/*", true, false),
            ("tz=UTC", false, false),
            ("criticality>=4", true, false),
            ("criticality>4", false, false),
            ("criticality<=2", false, true),
            ("criticality<3", false, true),
            ("criticality=4|5", true, false),
            ("criticality!=4", false, true),
            ("host=web*", true, false),
            ("host=WEB01.example.com", true, false),
            ("host=db?", false, true),
            ("var.ansible_host=10.0.0.*", true, false),
            ("var.ansible_host!=10.0.0.1", false, true),
            ("env=prod,tag=web,criticality>=4", true, false),
            ("env=prod,tag=db", false, false),
        ] {
            let s = Selector::parse(selector).unwrap();
            assert_eq!(s.matches(&a), on_a, "{selector} on a");
            assert_eq!(s.matches(&bare), on_bare, "{selector} on bare");
        }
    }

    #[test]
    fn canonical_display_round_trips() {
        for (written, canonical) in [
            ("", ""),
            ("  ", ""),
            ("environment = PROD", "env=prod"),
            ("env=prod|dev|prod", "env=dev|prod"),
            ("business_unit=Pay", "bu=Pay"),
            ("tags=Web", "tag=web"),
            ("exposure=public|air-gapped", "exposure=internet|isolated"),
            ("os=Debian:12.5", "os=Debian:12"),
            ("location=AWS:EU-west-1", "location=aws:eu-west-1"),
            ("criticality>=04", "criticality>=4"),
            ("time_zone=Etc/GMT+5", "tz=Etc/GMT+5"),
            ("hostname=WEB*", "host=web*"),
            ("var.Rack=B 12", "var.Rack=B 12"),
            ("data_classes=PCI,groups=db", "data=pci,group=db"),
        ] {
            let s = Selector::parse(written).unwrap();
            assert_eq!(s.to_string(), canonical, "{written}");
            assert_eq!(Selector::parse(canonical).unwrap(), s, "{written}");
        }
    }

    #[test]
    fn errors_name_term_and_column() {
        for (text, term, column, needle) in [
            (
                "env=prod,tag=web,criticality>=high",
                3,
                18,
                "criticality takes a number 1–5",
            ),
            ("env=prod,,tag=x", 2, 10, "empty term"),
            ("env=prod,", 2, 10, "empty term"),
            ("colour=blue", 1, 1, "unknown key `colour`"),
            ("env", 1, 1, "no operator"),
            ("=prod", 1, 1, "missing key"),
            ("env=", 1, 1, "missing value"),
            ("env=a||b", 1, 1, "empty alternative"),
            ("env!prod", 1, 1, "`!` must be followed by `=`"),
            ("env>=3", 1, 1, "only criticality is a number"),
            ("criticality>9", 1, 1, "criticality takes a number 1–5"),
            ("criticality=0", 1, 1, "criticality takes a number 1–5"),
            ("criticality>=4|5", 1, 1, "criticality takes a number 1–5"),
            ("exposure=dmz", 1, 1, "exposure takes"),
            ("os=Plan9:4", 1, 1, "os takes an ecosystem"),
            ("tz=europe/paris", 1, 1, "time zone"),
            ("env=pr od", 1, 1, "is not a name"),
            ("tag=a;b", 1, 1, "is not a name"),
            ("location=aws", 1, 1, ""),
            ("var.9x=1", 1, 1, "variable name"),
            ("env==prod", 1, 1, "is not a name"),
            ("env=prod,  bu=x y", 2, 12, "is not a name"),
        ] {
            let result = Selector::parse(text);
            if needle.is_empty() {
                assert!(result.is_ok(), "{text}");
                continue;
            }
            let err = result.unwrap_err();
            let CmdbError::Selector {
                term: t, column: c, ..
            } = &err
            else {
                panic!("{text}: {err:?}");
            };
            assert_eq!((*t, *c), (term, column), "{text}: {err}");
            let message = err.to_string();
            assert!(message.contains(needle), "{text}: {message}");
            assert!(message.starts_with(&format!("term {term} `")), "{message}");
        }
    }

    #[test]
    fn the_brief_example_reads_well() {
        let err = Selector::parse("env=prod,bu=payments,criticality>=high").unwrap_err();
        assert_eq!(
            err.to_string(),
            "term 3 `criticality>=high` (column 22): criticality takes a number 1–5"
        );
    }

    #[test]
    fn filter_keeps_order_and_serde_uses_text() {
        let a = asset();
        let b = Asset::new("db1").unwrap();
        let all = [b.clone(), a.clone()];
        let s = Selector::parse("env=prod").unwrap();
        let picked: Vec<&Asset> = s.filter(&all).collect();
        assert_eq!(picked, [&a]);
        assert_eq!(Selector::all().filter(all.iter()).count(), 2);
        let json = serde_json::to_string(&s).unwrap();
        assert_eq!(json, "\"env=prod\"");
        assert_eq!(serde_json::from_str::<Selector>(&json).unwrap(), s);
        assert!(serde_json::from_str::<Selector>("\"env>1\"").is_err());
        assert_eq!(s.terms().len(), 1);
        assert!(!s.is_all());
    }
}
