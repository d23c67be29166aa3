//! Ansible inventories (INI and YAML) read into assets and groups.
//!
//! Most fleets already describe themselves in an Ansible inventory, so importing one is the
//! cheapest way to a populated CMDB. This module reads the inventory text the way Ansible's `ini`
//! and `yaml` inventory plugins do (groups, children, group and host variables, host ranges) and
//! resolves variable precedence as Ansible does. It never runs inventory scripts or plugins and
//! never reads `group_vars/` or `host_vars/` directories: the caller hands in one file's text.
//! An inventory is imported whole or rejected, with the line of the first problem.

use std::collections::{BTreeMap, BTreeSet};

use saphyr::{LoadableYamlNode, MarkedYaml, Scalar, YamlData};

use super::{
    Asset, CmdbError, Field, Group, dependency_cycles, parse_group_name, parse_hostname,
    parse_var_name,
};

/// What an inventory describes.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Inventory {
    /// One asset per host, sorted by host name, with every group it belongs to (directly or
    /// through `:children`), except Ansible's implicit `all` and `ungrouped`.
    pub assets: Vec<Asset>,
    /// Every group the inventory names, sorted, except `all` and `ungrouped`.
    pub groups: Vec<Group>,
}

/// The two text formats of Ansible inventories.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum InventoryFormat {
    /// `[group]` sections with host lines.
    Ini,
    /// `all: {hosts: …, children: …, vars: …}`.
    Yaml,
}

/// Host expansions larger than this are refused: a typo in a range should not exhaust memory.
const MAX_RANGE_HOSTS: usize = 100_000;

/// Variables Ansible gives the asset attribute of the same name; every other variable is kept
/// in [`Asset::vars`] as text.
pub const ATTRIBUTE_VARS: [&str; 11] = [
    "criticality",
    "environment",
    "env",
    "exposure",
    "business_unit",
    "owner_group",
    "time_zone",
    "tags",
    "data_classes",
    "location",
    "os",
];

fn attribute_field(var: &str) -> Option<Field> {
    if ATTRIBUTE_VARS.contains(&var) {
        Field::from_key(var)
    } else {
        None
    }
}

/// Tells INI from YAML by the first line that is not blank or a comment.
///
/// YAML starts with `---`, `%YAML`, `{`, or a `name:` key; anything else (`[group]`, a host
/// line, a `;` comment) is INI. An empty text is INI, which reads as an empty inventory.
pub fn detect_format(text: &str) -> InventoryFormat {
    for line in text.lines() {
        let line = line.trim();
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        if line.starts_with("---") || line.starts_with("%YAML") || line.starts_with('{') {
            return InventoryFormat::Yaml;
        }
        if let Some((key, after)) = line.split_once(':') {
            let yaml_key = !key.is_empty() && !key.contains(['=', ' ', '\t', '[', '"', '\'']);
            if yaml_key && (after.is_empty() || after.starts_with([' ', '\t'])) {
                return InventoryFormat::Yaml;
            }
        }
        return InventoryFormat::Ini;
    }
    InventoryFormat::Ini
}

/// Reads an inventory in either format, chosen by [`detect_format`].
pub fn parse(source_name: &str, text: &str) -> Result<Inventory, CmdbError> {
    match detect_format(text) {
        InventoryFormat::Ini => parse_ini(source_name, text),
        InventoryFormat::Yaml => parse_yaml(source_name, text),
    }
}

/// A variable's value as the inventory wrote it.
#[derive(Clone, Debug, PartialEq, Eq)]
enum Value {
    /// A scalar, as text.
    Text(String),
    /// A list of scalars (`[a, b]`).
    List(Vec<String>),
    /// Anything nested, as JSON text.
    Json(String),
}

impl Value {
    /// The text kept in [`Asset::vars`].
    fn into_var_text(self) -> String {
        match self {
            Value::Text(text) | Value::Json(text) => text,
            Value::List(items) => serde_json::Value::from(items).to_string(),
        }
    }
}

/// A value and the line that set it.
#[derive(Clone, Debug)]
struct Sourced {
    value: Value,
    line: usize,
}

#[derive(Debug, Default)]
struct RawGroup {
    parents: BTreeSet<String>,
    vars: BTreeMap<String, Sourced>,
    /// Whether a section, a YAML key or a `:children` entry declared it.
    declared: bool,
    /// Where it was first named, for messages.
    line: usize,
}

#[derive(Debug, Default)]
struct RawHost {
    groups: BTreeSet<String>,
    vars: BTreeMap<String, Sourced>,
}

/// An inventory as written, before precedence is resolved.
#[derive(Debug)]
struct Raw<'s> {
    source_name: &'s str,
    groups: BTreeMap<String, RawGroup>,
    hosts: BTreeMap<String, RawHost>,
}

impl<'s> Raw<'s> {
    fn new(source_name: &'s str) -> Self {
        let mut groups = BTreeMap::new();
        for implicit in ["all", "ungrouped"] {
            groups.insert(
                implicit.to_owned(),
                RawGroup {
                    declared: true,
                    ..RawGroup::default()
                },
            );
        }
        Self {
            source_name,
            groups,
            hosts: BTreeMap::new(),
        }
    }

    fn error(&self, line: usize, reason: impl Into<String>) -> CmdbError {
        CmdbError::Inventory {
            source_name: self.source_name.to_owned(),
            line,
            reason: reason.into(),
        }
    }

    /// Declares a group, checking its name.
    fn group(&mut self, name: &str, line: usize) -> Result<String, CmdbError> {
        let name = parse_group_name(name).map_err(|err| self.error(line, err.to_string()))?;
        let group = self.groups.entry(name.clone()).or_insert_with(|| RawGroup {
            line,
            ..RawGroup::default()
        });
        group.declared = true;
        Ok(name)
    }

    fn add_child(&mut self, parent: &str, child: &str, line: usize) -> Result<(), CmdbError> {
        let child = self.group(child, line)?;
        if child == "all" {
            return Err(self.error(line, "`all` cannot be a child of another group"));
        }
        if child == parent {
            return Err(self.error(line, format!("group {child} cannot be its own child")));
        }
        if let Some(group) = self.groups.get_mut(&child) {
            group.parents.insert(parent.to_owned());
        }
        Ok(())
    }

    /// Adds every host a pattern expands to, with its port and variables, to a group.
    fn add_hosts(
        &mut self,
        group: &str,
        pattern: &str,
        vars: &[(String, Sourced)],
        line: usize,
    ) -> Result<(), CmdbError> {
        let (pattern, port) = split_port(pattern);
        let names = expand_hosts(pattern).map_err(|reason| self.error(line, reason))?;
        for name in names {
            let hostname =
                parse_hostname(&name).map_err(|err| self.error(line, err.to_string()))?;
            let host = self.hosts.entry(hostname).or_default();
            if group != "ungrouped" {
                host.groups.insert(group.to_owned());
            }
            if let Some(port) = port {
                host.vars.insert(
                    "ansible_port".to_owned(),
                    Sourced {
                        value: Value::Text(port.to_owned()),
                        line,
                    },
                );
            }
            for (var, sourced) in vars {
                host.vars.insert(var.clone(), sourced.clone());
            }
        }
        Ok(())
    }

    fn var_name(&self, name: &str, line: usize) -> Result<String, CmdbError> {
        parse_var_name(name).map_err(|err| self.error(line, err.to_string()))
    }

    /// Applies Ansible's precedence and builds the assets.
    fn resolve(mut self) -> Result<Inventory, CmdbError> {
        // Top-level groups hang under `all`; a group inside a cycle never reaches it.
        for (name, group) in &mut self.groups {
            if name != "all" && group.parents.is_empty() {
                group.parents.insert("all".to_owned());
            }
        }
        let edges: BTreeMap<&str, Vec<&str>> = self
            .groups
            .iter()
            .map(|(name, group)| {
                let parents = group.parents.iter().map(String::as_str).collect();
                (name.as_str(), parents)
            })
            .collect();
        if let Some(cycle) = dependency_cycles(&edges).into_iter().next() {
            let mut path: Vec<&str> = cycle;
            path.reverse();
            let line = path
                .first()
                .and_then(|g| self.groups.get(*g))
                .map_or(1, |g| g.line);
            return Err(self.error(
                line,
                format!(
                    "groups contain each other in a cycle: {}",
                    path.join(" -> ")
                ),
            ));
        }
        let mut depth: BTreeMap<&str, usize> = BTreeMap::new();
        for name in self.groups.keys() {
            group_depth(name, &edges, &mut depth);
        }
        let mut priority: BTreeMap<&str, i64> = BTreeMap::new();
        for (name, group) in &self.groups {
            if let Some(sourced) = group.vars.get("ansible_group_priority") {
                let text = match &sourced.value {
                    Value::Text(text) => text.as_str(),
                    _ => "",
                };
                let value = text.trim().parse::<i64>().map_err(|_| {
                    self.error(
                        sourced.line,
                        format!(
                            "group {name}: ansible_group_priority {text:?} is not a whole number"
                        ),
                    )
                })?;
                priority.insert(name, value);
            }
        }

        let mut assets = Vec::with_capacity(self.hosts.len());
        for (hostname, host) in &self.hosts {
            let mut ancestors: BTreeSet<&str> = BTreeSet::from(["all"]);
            let mut pending: Vec<&str> = host
                .groups
                .iter()
                .map(String::as_str)
                .filter(|g| *g != "all")
                .collect();
            if pending.is_empty() {
                // Ansible's rule: a host in no group but `all` is in `ungrouped`.
                pending.push("ungrouped");
            }
            while let Some(group) = pending.pop() {
                if ancestors.insert(group) {
                    pending.extend(edges.get(group).into_iter().flatten().copied());
                }
            }
            // Ansible merges group variables shallow to deep, then by priority, then by name;
            // host variables come last.
            let mut order: Vec<&str> = ancestors.iter().copied().collect();
            order.sort_by_key(|g| {
                (
                    depth.get(g).copied().unwrap_or(0),
                    priority.get(g).copied().unwrap_or(1),
                    *g,
                )
            });
            // Slot (attribute name or variable name) -> (variable as written, value, origin).
            let mut merged: BTreeMap<&str, (&str, &Sourced, String)> = BTreeMap::new();
            let layers = order
                .iter()
                .filter_map(|g| Some((&self.groups.get(*g)?.vars, Some(*g))))
                .chain([(&host.vars, None)]);
            for (vars, group) in layers {
                for (var, sourced) in vars {
                    if var == "ansible_group_priority" {
                        continue;
                    }
                    let origin = match group {
                        Some(group) => format!("group {group} (line {})", sourced.line),
                        None => format!("host (line {})", sourced.line),
                    };
                    let slot: &str = match attribute_field(var) {
                        Some(field) => field.name(),
                        None => var,
                    };
                    merged.insert(slot, (var, sourced, origin));
                }
            }

            let mut asset = Asset::new(hostname)?;
            for (slot, (var, sourced, origin)) in merged {
                let Some(field) = attribute_field(slot) else {
                    asset
                        .vars
                        .insert(slot.to_owned(), sourced.value.clone().into_var_text());
                    continue;
                };
                let fail = |reason: String| CmdbError::InventoryVar {
                    source_name: self.source_name.to_owned(),
                    host: hostname.clone(),
                    var: var.to_owned(),
                    origin: origin.clone(),
                    reason,
                };
                let text = match (&sourced.value, field) {
                    (Value::Text(text), _) => text.clone(),
                    (Value::List(items), Field::Tags | Field::DataClasses) => items.join(","),
                    (Value::Json(_), Field::Tags | Field::DataClasses) => {
                        return Err(fail(format!("{var} takes a list of names, not a mapping")));
                    }
                    (Value::List(_) | Value::Json(_), _) => {
                        return Err(fail(format!(
                            "{var} takes a single value, not a list or mapping"
                        )));
                    }
                };
                asset
                    .set_field(field, &text)
                    .map_err(|err| fail(err.to_string()))?;
            }
            asset.groups = ancestors
                .iter()
                .filter(|g| !matches!(**g, "all" | "ungrouped"))
                .map(|g| (*g).to_owned())
                .collect();
            assets.push(asset);
        }
        let groups = self
            .groups
            .keys()
            .filter(|g| !matches!(g.as_str(), "all" | "ungrouped"))
            .map(|name| Group {
                name: name.clone(),
                description: None,
            })
            .collect();
        Ok(Inventory { assets, groups })
    }
}

/// Longest distance from `all` along parent links (Ansible's group depth).
fn group_depth<'a>(
    name: &'a str,
    parents: &BTreeMap<&'a str, Vec<&'a str>>,
    memo: &mut BTreeMap<&'a str, usize>,
) -> usize {
    if let Some(depth) = memo.get(name) {
        return *depth;
    }
    let depth = if name == "all" {
        0
    } else {
        parents
            .get(name)
            .into_iter()
            .flatten()
            .map(|parent| group_depth(parent, parents, memo) + 1)
            .max()
            .unwrap_or(1)
    };
    memo.insert(name, depth);
    depth
}

/// `web1:2222` → (`web1`, Some(`2222`)); a colon inside a `[a:b]` range is not a port.
fn split_port(pattern: &str) -> (&str, Option<&str>) {
    if let Some(colon) = pattern.rfind(':') {
        let after_ranges = pattern.rfind(']').is_none_or(|bracket| bracket < colon);
        let port = &pattern[colon + 1..];
        if after_ranges && !port.is_empty() && port.bytes().all(|b| b.is_ascii_digit()) {
            return (&pattern[..colon], Some(port));
        }
    }
    (pattern, None)
}

/// Expands Ansible host ranges: `web[01:03]`, `db[a:c]`, `node[0:10:5]`, several per name.
///
/// A leading zero pads every number to the width of the start (whose end must be as wide).
fn expand_hosts(pattern: &str) -> Result<Vec<String>, String> {
    let Some(open) = pattern.find('[') else {
        if pattern.contains(']') {
            return Err(format!("host pattern {pattern:?} has `]` without `[`"));
        }
        return Ok(vec![pattern.to_owned()]);
    };
    let close = pattern[open..]
        .find(']')
        .map(|i| open + i)
        .ok_or_else(|| format!("host range in {pattern:?} has no closing `]`"))?;
    let (head, range, tail) = (
        &pattern[..open],
        &pattern[open + 1..close],
        &pattern[close + 1..],
    );
    let bounds: Vec<&str> = range.split(':').collect();
    let bad = |why: &str| format!("host range [{range}] in {pattern:?}: {why}");
    let (begin, end, step) = match bounds.as_slice() {
        [begin, end] => (*begin, *end, 1),
        [begin, end, step] => {
            let step = step
                .parse::<usize>()
                .ok()
                .filter(|s| *s > 0)
                .ok_or_else(|| bad("the step must be a whole number above 0"))?;
            (*begin, *end, step)
        }
        _ => return Err(bad("write begin:end or begin:end:step")),
    };
    let begin = if begin.is_empty() { "0" } else { begin };
    if end.is_empty() {
        return Err(bad("the end is missing"));
    }
    let items: Vec<String> =
        if begin.bytes().all(|b| b.is_ascii_digit()) && end.bytes().all(|b| b.is_ascii_digit()) {
            let width = (begin.len() > 1 && begin.starts_with('0')).then_some(begin.len());
            if width.is_some_and(|w| w != end.len()) {
                return Err(bad(
                    "a zero-padded begin and its end must have the same width",
                ));
            }
            let (from, to) = match (begin.parse::<usize>(), end.parse::<usize>()) {
                (Ok(from), Ok(to)) if from <= to => (from, to),
                (Ok(_), Ok(_)) => return Err(bad("the begin is after the end")),
                _ => return Err(bad("the numbers are too large")),
            };
            if (to - from) / step >= MAX_RANGE_HOSTS {
                return Err(bad("the range has too many hosts"));
            }
            (from..=to)
                .step_by(step)
                .map(|n| match width {
                    Some(width) => format!("{n:0width$}"),
                    None => n.to_string(),
                })
                .collect()
        } else {
            let letter = |s: &str| {
                let mut chars = s.chars();
                match (chars.next(), chars.next()) {
                    (Some(c), None) if c.is_ascii_alphabetic() => Some(c),
                    _ => None,
                }
            };
            // Ansible's alphabet: a–z, then A–Z.
            let alphabet: Vec<char> = ('a'..='z').chain('A'..='Z').collect();
            let index = |c: char| alphabet.iter().position(|a| *a == c);
            match (letter(begin).and_then(index), letter(end).and_then(index)) {
                (Some(from), Some(to)) if from <= to => alphabet[from..=to]
                    .iter()
                    .step_by(step)
                    .map(char::to_string)
                    .collect(),
                (Some(_), Some(_)) => return Err(bad("the begin is after the end")),
                _ => return Err(bad("bounds must both be numbers or both single letters")),
            }
        };
    let mut hosts = Vec::new();
    for item in items {
        for rest in expand_hosts(tail)? {
            hosts.push(format!("{head}{item}{rest}"));
            if hosts.len() > MAX_RANGE_HOSTS {
                return Err(bad("the range has too many hosts"));
            }
        }
    }
    Ok(hosts)
}

/// Splits a line into words as Python's `shlex` in POSIX mode with comments does (which is what
/// Ansible's INI plugin uses): quotes group, backslash escapes, `#` starts a comment.
fn shell_words(line: &str) -> Result<Vec<String>, String> {
    let mut words = Vec::new();
    let mut word = String::new();
    let mut in_word = false;
    let mut chars = line.chars();
    while let Some(c) = chars.next() {
        match c {
            c if c.is_whitespace() => {
                if in_word {
                    words.push(std::mem::take(&mut word));
                    in_word = false;
                }
            }
            '#' if !in_word => break,
            '\'' => {
                in_word = true;
                loop {
                    match chars.next() {
                        Some('\'') => break,
                        Some(c) => word.push(c),
                        None => return Err("unterminated ' quote".to_owned()),
                    }
                }
            }
            '"' => {
                in_word = true;
                loop {
                    match chars.next() {
                        Some('"') => break,
                        Some('\\') => match chars.next() {
                            Some(c @ ('"' | '\\' | '$' | '`')) => word.push(c),
                            Some(c) => {
                                word.push('\\');
                                word.push(c);
                            }
                            None => return Err("unterminated \" quote".to_owned()),
                        },
                        Some(c) => word.push(c),
                        None => return Err("unterminated \" quote".to_owned()),
                    }
                }
            }
            '\\' => {
                in_word = true;
                match chars.next() {
                    Some(c) => word.push(c),
                    None => return Err("line ends with a lone backslash".to_owned()),
                }
            }
            c => {
                in_word = true;
                word.push(c);
            }
        }
    }
    if in_word {
        words.push(word);
    }
    Ok(words)
}

/// An INI value as Ansible's `literal_eval` would see it: a quoted string loses its quotes, a
/// `[a, b]` list becomes a list; anything else is the text itself.
fn ini_value(text: &str) -> Value {
    let text = text.trim();
    if let Some(inner) = unquote(text) {
        return Value::Text(inner.to_owned());
    }
    if let Some(inner) = text.strip_prefix('[').and_then(|t| t.strip_suffix(']')) {
        let items = inner
            .split(',')
            .map(str::trim)
            .filter(|item| !item.is_empty())
            .map(|item| unquote(item).unwrap_or(item).to_owned())
            .collect();
        return Value::List(items);
    }
    Value::Text(text.to_owned())
}

fn unquote(text: &str) -> Option<&str> {
    ['"', '\''].into_iter().find_map(|q| {
        text.strip_prefix(q)
            .and_then(|t| t.strip_suffix(q))
            .filter(|_| text.len() >= 2)
    })
}

/// The section an INI line belongs to.
enum Section {
    Hosts(String),
    Children(String),
    Vars(String),
}

/// Reads an INI inventory.
pub fn parse_ini(source_name: &str, text: &str) -> Result<Inventory, CmdbError> {
    let mut raw = Raw::new(source_name);
    let mut section = Section::Hosts("ungrouped".to_owned());
    // `[g:vars]` sections, checked at the end: a group nothing declares is a typo.
    let mut vars_sections: Vec<(String, usize)> = Vec::new();
    for (index, line) in text.lines().enumerate() {
        let n = index + 1;
        let line = line.trim();
        if line.is_empty() || line.starts_with('#') || line.starts_with(';') {
            continue;
        }
        if let Some(header) = line.strip_prefix('[') {
            let (inside, after) = header
                .split_once(']')
                .ok_or_else(|| raw.error(n, "section header without `]`"))?;
            let after = after.trim();
            if !(after.is_empty() || after.starts_with('#') || after.starts_with(';')) {
                return Err(raw.error(
                    n,
                    format!("unexpected text after section header: {after:?}"),
                ));
            }
            let (name, kind) = inside.split_once(':').unwrap_or((inside, "hosts"));
            let name = parse_group_name(name).map_err(|err| raw.error(n, err.to_string()))?;
            section = match kind {
                "hosts" => Section::Hosts(raw.group(&name, n)?),
                "children" => Section::Children(raw.group(&name, n)?),
                "vars" => {
                    raw.groups.entry(name.clone()).or_insert_with(|| RawGroup {
                        line: n,
                        ..RawGroup::default()
                    });
                    vars_sections.push((name.clone(), n));
                    Section::Vars(name)
                }
                other => {
                    return Err(raw.error(
                        n,
                        format!("unknown section kind `:{other}` (expected :children or :vars)"),
                    ));
                }
            };
            continue;
        }
        match &section {
            Section::Hosts(group) => {
                let words = shell_words(line).map_err(|reason| raw.error(n, reason))?;
                let Some((pattern, assignments)) = words.split_first() else {
                    continue;
                };
                let mut vars = Vec::with_capacity(assignments.len());
                for word in assignments {
                    let (key, value) = word.split_once('=').ok_or_else(|| {
                        raw.error(n, format!("expected key=value host variable, got {word:?}"))
                    })?;
                    let value = Sourced {
                        value: ini_value(value),
                        line: n,
                    };
                    vars.push((raw.var_name(key, n)?, value));
                }
                let group = group.clone();
                raw.add_hosts(&group, pattern, &vars, n)?;
            }
            Section::Children(group) => {
                let words = shell_words(line).map_err(|reason| raw.error(n, reason))?;
                let [child] = words.as_slice() else {
                    if words.is_empty() {
                        continue;
                    }
                    return Err(
                        raw.error(n, format!("expected one child group name, got {line:?}"))
                    );
                };
                let group = group.clone();
                raw.add_child(&group, child, n)?;
            }
            Section::Vars(group) => {
                let (key, value) = line.split_once('=').ok_or_else(|| {
                    raw.error(
                        n,
                        format!("expected key=value in [{group}:vars], got {line:?}"),
                    )
                })?;
                let key = raw.var_name(key.trim(), n)?;
                let value = Sourced {
                    value: ini_value(value),
                    line: n,
                };
                if let Some(g) = raw.groups.get_mut(group) {
                    g.vars.insert(key, value);
                }
            }
        }
    }
    for (group, line) in vars_sections {
        if !raw.groups.get(&group).is_some_and(|g| g.declared) {
            return Err(raw.error(
                line,
                format!("[{group}:vars] is for a group that no section or :children list declares"),
            ));
        }
    }
    raw.resolve()
}

/// Reads a YAML inventory: top-level groups (usually just `all`), each a mapping of `hosts`,
/// `vars` and `children`, nested to any depth.
pub fn parse_yaml(source_name: &str, text: &str) -> Result<Inventory, CmdbError> {
    let mut raw = Raw::new(source_name);
    let docs = MarkedYaml::load_from_str(text).map_err(|err| {
        raw.error(
            err.marker().line(),
            format!("not valid YAML: {}", err.info()),
        )
    })?;
    if docs.len() > 1 {
        return Err(raw.error(1, "an inventory is one YAML document, this has several"));
    }
    let Some(doc) = docs.first() else {
        return raw.resolve();
    };
    match &doc.data {
        YamlData::Mapping(groups) => {
            for (key, body) in groups {
                let name = scalar_text(key)
                    .ok_or_else(|| raw.error(line_of(key), "a group name must be text"))?;
                let name = raw.group(&name, line_of(key))?;
                yaml_group(&mut raw, &name, body)?;
            }
        }
        _ if is_null(doc) => {}
        _ => {
            return Err(raw.error(
                line_of(doc),
                "the inventory must be a mapping of groups (all: {hosts: …, children: …})",
            ));
        }
    }
    raw.resolve()
}

fn yaml_group(raw: &mut Raw<'_>, group: &str, body: &MarkedYaml<'_>) -> Result<(), CmdbError> {
    let body = untag(body);
    if is_null(body) {
        return Ok(());
    }
    let YamlData::Mapping(entries) = &body.data else {
        return Err(raw.error(
            line_of(body),
            format!("group {group} must be a mapping of hosts, vars and children"),
        ));
    };
    for (key, value) in entries {
        let value = untag(value);
        match scalar_text(key).as_deref() {
            Some("hosts") => {
                if is_null(value) {
                    continue;
                }
                let YamlData::Mapping(hosts) = &value.data else {
                    return Err(raw.error(
                        line_of(value),
                        format!(
                            "hosts of group {group} must be a mapping of host names (a list is not)"
                        ),
                    ));
                };
                for (host, vars) in hosts {
                    let line = line_of(host);
                    let pattern = scalar_text(host)
                        .ok_or_else(|| raw.error(line, "a host name must be text"))?;
                    let vars: Vec<(String, Sourced)> =
                        yaml_vars(raw, &format!("host {pattern}"), vars)?
                            .into_iter()
                            .collect();
                    raw.add_hosts(group, &pattern, &vars, line)?;
                }
            }
            Some("vars") => {
                let vars = yaml_vars(raw, &format!("vars of group {group}"), value)?;
                if let Some(g) = raw.groups.get_mut(group) {
                    g.vars.extend(vars);
                }
            }
            Some("children") => {
                if is_null(value) {
                    continue;
                }
                let YamlData::Mapping(children) = &value.data else {
                    return Err(raw.error(
                        line_of(value),
                        format!("children of group {group} must be a mapping of group names"),
                    ));
                };
                for (child, child_body) in children {
                    let line = line_of(child);
                    let name = scalar_text(child)
                        .ok_or_else(|| raw.error(line, "a group name must be text"))?;
                    raw.add_child(group, &name, line)?;
                    let name =
                        parse_group_name(&name).map_err(|err| raw.error(line, err.to_string()))?;
                    yaml_group(raw, &name, child_body)?;
                }
            }
            other => {
                return Err(raw.error(
                    line_of(key),
                    format!(
                        "unexpected key {:?} in group {group} (expected hosts, vars or children)",
                        other.unwrap_or("(not text)")
                    ),
                ));
            }
        }
    }
    Ok(())
}

/// A `vars` mapping (or a host's variables) as sourced values.
fn yaml_vars(
    raw: &Raw<'_>,
    what: &str,
    node: &MarkedYaml<'_>,
) -> Result<BTreeMap<String, Sourced>, CmdbError> {
    let node = untag(node);
    if is_null(node) {
        return Ok(BTreeMap::new());
    }
    let YamlData::Mapping(entries) = &node.data else {
        return Err(raw.error(
            line_of(node),
            format!("{what} must be a mapping of variables"),
        ));
    };
    let mut vars = BTreeMap::new();
    for (key, value) in entries {
        let line = line_of(key);
        let name = scalar_text(key)
            .ok_or_else(|| raw.error(line, format!("{what}: a variable name must be text")))?;
        let name = raw.var_name(&name, line)?;
        vars.insert(
            name,
            Sourced {
                value: yaml_value(value),
                line,
            },
        );
    }
    Ok(vars)
}

fn yaml_value(node: &MarkedYaml<'_>) -> Value {
    let node = untag(node);
    if let Some(text) = scalar_text(node) {
        return Value::Text(text);
    }
    if let YamlData::Sequence(items) = &node.data
        && let Some(texts) = items.iter().map(|i| scalar_text(untag(i))).collect()
    {
        return Value::List(texts);
    }
    Value::Json(to_json(node).to_string())
}

fn to_json(node: &MarkedYaml<'_>) -> serde_json::Value {
    let node = untag(node);
    match &node.data {
        YamlData::Value(Scalar::Null) => serde_json::Value::Null,
        YamlData::Value(Scalar::Boolean(b)) => serde_json::Value::Bool(*b),
        YamlData::Value(Scalar::Integer(i)) => serde_json::Value::from(*i),
        YamlData::Value(Scalar::FloatingPoint(f)) => serde_json::Number::from_f64(f.into_inner())
            .map_or_else(
                || serde_json::Value::String(f.to_string()),
                serde_json::Value::Number,
            ),
        YamlData::Sequence(items) => items.iter().map(to_json).collect(),
        YamlData::Mapping(entries) => entries
            .iter()
            .map(|(k, v)| (scalar_text(k).unwrap_or_default(), to_json(v)))
            .collect::<serde_json::Map<_, _>>()
            .into(),
        _ => serde_json::Value::String(scalar_text(node).unwrap_or_default()),
    }
}

/// A scalar as text (`null` as the empty string); `None` for collections.
fn scalar_text(node: &MarkedYaml<'_>) -> Option<String> {
    match &untag(node).data {
        YamlData::Value(Scalar::Null) => Some(String::new()),
        YamlData::Value(Scalar::Boolean(b)) => Some(b.to_string()),
        YamlData::Value(Scalar::Integer(i)) => Some(i.to_string()),
        YamlData::Value(Scalar::FloatingPoint(f)) => Some(f.to_string()),
        YamlData::Value(Scalar::String(s)) => Some(s.to_string()),
        YamlData::Representation(text, _, _) => Some(text.to_string()),
        _ => None,
    }
}

fn is_null(node: &MarkedYaml<'_>) -> bool {
    matches!(untag(node).data, YamlData::Value(Scalar::Null))
}

fn untag<'n, 'i>(node: &'n MarkedYaml<'i>) -> &'n MarkedYaml<'i> {
    match &node.data {
        YamlData::Tagged(_, inner) => untag(inner),
        _ => node,
    }
}

fn line_of(node: &MarkedYaml<'_>) -> usize {
    node.span.start.line()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::asset::Exposure;

    fn ini(text: &str) -> Inventory {
        parse_ini("hosts.ini", text).unwrap()
    }

    fn ini_err(text: &str) -> String {
        parse_ini("hosts.ini", text).unwrap_err().to_string()
    }

    fn yaml(text: &str) -> Inventory {
        parse_yaml("hosts.yml", text).unwrap()
    }

    fn yaml_err(text: &str) -> String {
        parse_yaml("hosts.yml", text).unwrap_err().to_string()
    }

    fn host<'i>(inventory: &'i Inventory, name: &str) -> &'i Asset {
        inventory
            .assets
            .iter()
            .find(|a| a.hostname == name)
            .unwrap_or_else(|| panic!("no host {name}"))
    }

    fn groups(asset: &Asset) -> Vec<&str> {
        asset.groups.iter().map(String::as_str).collect()
    }

    #[test]
    fn shell_words_like_shlex() {
        for (line, words) in [
            ("web1 a=1 b=2", vec!["web1", "a=1", "b=2"]),
            ("web1   a=\"x y\"", vec!["web1", "a=x y"]),
            ("web1 a='x \"y\"'", vec!["web1", "a=x \"y\""]),
            ("web1 a=\"say \\\"hi\\\"\"", vec!["web1", "a=say \"hi\""]),
            ("web1 a=x\\ y", vec!["web1", "a=x y"]),
            ("web1 # a comment", vec!["web1"]),
            ("web1 a=b#notacomment", vec!["web1", "a=b#notacomment"]),
            ("web1 a=''", vec!["web1", "a="]),
            ("", vec![]),
        ] {
            assert_eq!(shell_words(line).unwrap(), words, "{line}");
        }
        for bad in ["web1 a='x", "web1 a=\"x", "web1 \\"] {
            assert!(shell_words(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn host_ranges() {
        for (pattern, hosts) in [
            ("web1", vec!["web1"]),
            (
                "web[01:03].example.com",
                vec![
                    "web01.example.com",
                    "web02.example.com",
                    "web03.example.com",
                ],
            ),
            ("web[1:3]", vec!["web1", "web2", "web3"]),
            ("web[8:10]", vec!["web8", "web9", "web10"]),
            ("db-[a:c]", vec!["db-a", "db-b", "db-c"]),
            ("n[0:10:5]", vec!["n0", "n5", "n10"]),
            ("n[:2]", vec!["n0", "n1", "n2"]),
            ("r[1:2]-[a:b]", vec!["r1-a", "r1-b", "r2-a", "r2-b"]),
            ("x[y:B]", vec!["xy", "xz", "xA", "xB"]),
        ] {
            assert_eq!(expand_hosts(pattern).unwrap(), hosts, "{pattern}");
        }
        for (bad, needle) in [
            ("web[1:]", "end is missing"),
            ("web[1]", "begin:end"),
            ("web[1:2:3:4]", "begin:end"),
            ("web[3:1]", "begin is after the end"),
            ("web[c:a]", "begin is after the end"),
            ("web[01:100]", "same width"),
            ("web[1:a]", "both be numbers"),
            ("web[aa:bb]", "both be numbers"),
            ("web[1:5:0]", "step"),
            ("web[1:3", "no closing"),
            ("web]1", "without `[`"),
            ("web[0:999999]", "too many"),
            ("w[0:999]x[0:999]", "too many"),
        ] {
            let err = expand_hosts(bad).unwrap_err();
            assert!(err.contains(needle), "{bad}: {err}");
        }
    }

    #[test]
    fn ports_split_from_hosts() {
        assert_eq!(split_port("web1:2222"), ("web1", Some("2222")));
        assert_eq!(split_port("web[1:3]"), ("web[1:3]", None));
        assert_eq!(split_port("web[1:3]:22"), ("web[1:3]", Some("22")));
        assert_eq!(split_port("web1:"), ("web1:", None));
        assert_eq!(split_port("web1"), ("web1", None));
    }

    #[test]
    fn ini_values() {
        assert_eq!(ini_value("plain"), Value::Text("plain".to_owned()));
        assert_eq!(
            ini_value(" \"quoted text\" "),
            Value::Text("quoted text".to_owned())
        );
        assert_eq!(ini_value("'single'"), Value::Text("single".to_owned()));
        assert_eq!(ini_value("\""), Value::Text("\"".to_owned()));
        assert_eq!(
            ini_value("['web', \"edge\", db]"),
            Value::List(vec!["web".to_owned(), "edge".to_owned(), "db".to_owned()])
        );
        assert_eq!(ini_value("[]"), Value::List(vec![]));
        assert_eq!(
            Value::List(vec!["a".to_owned()]).into_var_text(),
            "[\"a\"]".to_owned()
        );
    }

    #[test]
    fn formats_detected() {
        for (text, format) in [
            ("", InventoryFormat::Ini),
            ("# only a comment\n", InventoryFormat::Ini),
            ("[web]\nweb1\n", InventoryFormat::Ini),
            ("; comment\nweb1\n", InventoryFormat::Ini),
            ("web1 ansible_host=10.0.0.1\n", InventoryFormat::Ini),
            ("web1:2222\n", InventoryFormat::Ini),
            ("web1\n", InventoryFormat::Ini),
            ("---\nall:\n", InventoryFormat::Yaml),
            ("# c\nall:\n  hosts:\n", InventoryFormat::Yaml),
            ("all: {hosts: {web1: }}\n", InventoryFormat::Yaml),
            ("webservers:\n  hosts:\n", InventoryFormat::Yaml),
            ("%YAML 1.2\n---\nall:\n", InventoryFormat::Yaml),
            ("{\"all\": {}}", InventoryFormat::Yaml),
        ] {
            assert_eq!(detect_format(text), format, "{text:?}");
        }
        assert_eq!(parse("x", "").unwrap(), Inventory::default());
        assert_eq!(parse("x", "---\n").unwrap(), Inventory::default());
        assert_eq!(
            parse("x", "all:\n  hosts:\n    web1:\n").unwrap().assets[0].hostname,
            "web1"
        );
    }

    #[test]
    fn ini_groups_children_and_ungrouped() {
        let inv = ini("loose1\n\
            [web]\n\
            web[1:2]\n\
            [db]\n\
            db1\n\
            [prod:children]\n\
            web\n\
            db\n\
            [eu:children]\n\
            prod\n");
        assert_eq!(
            inv.groups
                .iter()
                .map(|g| g.name.as_str())
                .collect::<Vec<_>>(),
            ["db", "eu", "prod", "web"]
        );
        assert_eq!(groups(host(&inv, "web1")), ["eu", "prod", "web"]);
        assert_eq!(groups(host(&inv, "db1")), ["db", "eu", "prod"]);
        assert!(host(&inv, "loose1").groups.is_empty());
        assert_eq!(inv.assets.len(), 4);
    }

    #[test]
    fn ini_vars_precedence() {
        let inv = ini("[all:vars]\n\
            env=dev\n\
            criticality=1\n\
            ntp=pool.ntp.org\n\
            [web]\n\
            web1 ansible_host=10.0.0.1 criticality=5\n\
            web2:2222\n\
            [web:vars]\n\
            env = prod\n\
            owner_group=\"team-web\"\n\
            tags=['web', 'edge']\n\
            [prod:children]\n\
            web\n\
            [prod:vars]\n\
            env=staging\n\
            criticality=4\n\
            exposure=internet\n");
        let web1 = host(&inv, "web1");
        assert_eq!(
            web1.environment.as_deref(),
            Some("prod"),
            "child group wins"
        );
        assert_eq!(web1.criticality, 5, "host wins");
        assert_eq!(web1.exposure, Exposure::Internet);
        assert_eq!(web1.owner_group.as_deref(), Some("team-web"));
        assert_eq!(web1.tags.iter().collect::<Vec<_>>(), ["edge", "web"]);
        assert_eq!(web1.vars["ansible_host"], "10.0.0.1");
        assert_eq!(web1.vars["ntp"], "pool.ntp.org");
        assert!(!web1.vars.contains_key("criticality"));
        assert!(!web1.vars.contains_key("env"));
        let web2 = host(&inv, "web2");
        assert_eq!(web2.criticality, 4, "parent group over all");
        assert_eq!(web2.vars["ansible_port"], "2222");
    }

    #[test]
    fn env_alias_and_environment_share_precedence() {
        let inv = ini("[all:vars]\nenvironment=dev\n[web]\nweb1 env=prod\nweb2\n");
        assert_eq!(host(&inv, "web1").environment.as_deref(), Some("prod"));
        assert_eq!(host(&inv, "web2").environment.as_deref(), Some("dev"));
        let inv = ini("[web]\nweb1 environment=prod\n[web:vars]\nenv=dev\n");
        assert_eq!(host(&inv, "web1").environment.as_deref(), Some("prod"));
    }

    #[test]
    fn sibling_groups_by_priority_then_name() {
        let text = "[a]\nh1\n[b]\nh1\n[a:vars]\nenv=from-a\n[b:vars]\nenv=from-b\n";
        assert_eq!(ini(text).assets[0].environment.as_deref(), Some("from-b"));
        let text = format!("{text}ansible_group_priority=0\n");
        let inv = ini(&text);
        assert_eq!(inv.assets[0].environment.as_deref(), Some("from-a"));
        assert!(!inv.assets[0].vars.contains_key("ansible_group_priority"));
        let err = ini_err("[a]\nh1\n[a:vars]\nansible_group_priority=high\n");
        assert!(
            err.contains("line 4") && err.contains("ansible_group_priority"),
            "{err}"
        );
    }

    #[test]
    fn deeper_groups_win_whatever_their_names() {
        // `zz` is a top-level group; `aa` sits under `mid`, so deeper, so it wins.
        let inv =
            ini("[zz]\nh1\n[aa]\nh1\n[mid:children]\naa\n[zz:vars]\nenv=zz\n[aa:vars]\nenv=aa\n");
        assert_eq!(inv.assets[0].environment.as_deref(), Some("aa"));
    }

    #[test]
    fn invalid_attribute_values_name_host_var_and_origin() {
        let err = ini_err("[db]\ndb1\ndb2 criticality=9\n");
        assert_eq!(
            err,
            "hosts.ini: host db2: variable criticality from host (line 3): criticality: \"9\" is not a whole number from 1 to 5"
        );
        let err = ini_err("[db]\ndb1\n[db:vars]\n# comment\nexposure=dmz\n");
        assert!(
            err.starts_with("hosts.ini: host db1: variable exposure from group db (line 5): "),
            "{err}"
        );
        let err = ini_err("[db]\ndb1 env=\"no spaces allowed\"\n");
        assert!(err.contains("variable env from host (line 2)"), "{err}");
        let err = ini_err("[db]\ndb1 os=\"['Debian:12']\"\n");
        assert!(err.contains("single value"), "{err}");
    }

    #[test]
    fn ini_syntax_errors_name_the_line() {
        for (text, needle) in [
            ("[web\nweb1\n", "line 1: section header without `]`"),
            ("[web] junk\n", "line 1: unexpected text"),
            ("[web:hosts2]\n", "line 1: unknown section kind `:hosts2`"),
            ("[we b]\n", "line 1: group"),
            (
                "[web]\nweb1 novalue\n",
                "line 2: expected key=value host variable, got \"novalue\"",
            ),
            ("[web]\nweb1 a='x\n", "line 2: unterminated"),
            ("[web]\nweb1 9x=1\n", "line 2: variable name"),
            ("[web]\nweb!1\n", "line 2: hostname"),
            ("[web]\nweb[3:1]\n", "line 2: host range"),
            (
                "[web:children]\ndb extra\n",
                "line 2: expected one child group name",
            ),
            ("[web:children]\nall\n", "line 2: `all` cannot be a child"),
            (
                "[web:children]\nweb\n",
                "line 2: group web cannot be its own child",
            ),
            (
                "[web:vars]\nnot a pair\n",
                "line 2: expected key=value in [web:vars]",
            ),
            (
                "[web]\nweb1\n[wbe:vars]\nenv=prod\n",
                "line 3: [wbe:vars] is for a group",
            ),
            (
                "[a:children]\nb\n[b:children]\na\n[a]\nh1\n",
                "groups contain each other in a cycle: a -> b -> a",
            ),
        ] {
            let err = ini_err(text);
            assert!(err.contains(needle), "{text:?}: {err}");
        }
    }

    #[test]
    fn ini_comments_and_blank_lines() {
        let inv = ini(
            "# fleet\n; also a comment\n\n[web] # trailing\n  web1  # inline\n[web:children] ; x\n",
        );
        assert_eq!(inv.assets.len(), 1);
        assert_eq!(groups(&inv.assets[0]), ["web"]);
    }

    #[test]
    fn a_host_listed_twice_merges() {
        let inv = ini("[web]\nweb1 a=1 b=1\n[prod]\nweb1 a=2\n");
        let web1 = host(&inv, "web1");
        assert_eq!(groups(web1), ["prod", "web"]);
        assert_eq!(web1.vars["a"], "2");
        assert_eq!(web1.vars["b"], "1");
    }

    #[test]
    fn yaml_nested_groups_and_vars() {
        let inv = yaml(
            "all:\n\
             \x20 vars:\n\
             \x20   env: dev\n\
             \x20   ntp_servers: [a, b]\n\
             \x20   sysctl: {vm.swappiness: 10, enabled: true}\n\
             \x20 hosts:\n\
             \x20   bastion:\n\
             \x20     exposure: internet\n\
             \x20 children:\n\
             \x20   prod:\n\
             \x20     vars:\n\
             \x20       env: prod\n\
             \x20       criticality: 4\n\
             \x20     children:\n\
             \x20       web:\n\
             \x20         hosts:\n\
             \x20           web[1:2]:\n\
             \x20           web3:\n\
             \x20             criticality: 5\n\
             \x20             tags: [web, Edge]\n\
             \x20             ratio: 1.5\n\
             \x20             on: yes\n\
             \x20       empty:\n",
        );
        assert_eq!(
            inv.groups
                .iter()
                .map(|g| g.name.as_str())
                .collect::<Vec<_>>(),
            ["empty", "prod", "web"]
        );
        let bastion = host(&inv, "bastion");
        assert!(bastion.groups.is_empty());
        assert_eq!(bastion.exposure, Exposure::Internet);
        assert_eq!(bastion.environment.as_deref(), Some("dev"));
        assert_eq!(bastion.vars["ntp_servers"], "[\"a\",\"b\"]");
        assert_eq!(
            bastion.vars["sysctl"],
            "{\"enabled\":true,\"vm.swappiness\":10}"
        );
        let web1 = host(&inv, "web1");
        assert_eq!(groups(web1), ["prod", "web"]);
        assert_eq!(
            (web1.environment.as_deref(), web1.criticality),
            (Some("prod"), 4)
        );
        let web3 = host(&inv, "web3");
        assert_eq!(web3.criticality, 5);
        assert_eq!(web3.tags.iter().collect::<Vec<_>>(), ["edge", "web"]);
        assert_eq!(web3.vars["ratio"], "1.5");
        assert_eq!(web3.vars["on"], "yes");
    }

    #[test]
    fn yaml_group_bodies_merge_and_top_level_groups_work() {
        let inv = yaml(
            "web:\n  hosts:\n    web1:\n    web2: {criticality: 2}\n\
             prod:\n  children:\n    web:\n      vars: {env: prod}\n",
        );
        assert_eq!(groups(host(&inv, "web1")), ["prod", "web"]);
        assert_eq!(host(&inv, "web1").environment.as_deref(), Some("prod"));
        assert_eq!(host(&inv, "web2").criticality, 2);
    }

    #[test]
    fn yaml_errors_name_the_line() {
        for (text, needle) in [
            (
                "all:\n  hosts:\n    - web1\n",
                "line 3: hosts of group all must be a mapping",
            ),
            (
                "all:\n  host:\n    web1:\n",
                "line 2: unexpected key \"host\" in group all",
            ),
            (
                "all:\n  children:\n    - web\n",
                "line 3: children of group all must be a mapping",
            ),
            (
                "all:\n  vars: [a]\n",
                "line 2: vars of group all must be a mapping",
            ),
            ("all: [a]\n", "line 1: group all must be a mapping"),
            ("- a\n", "line 1: the inventory must be a mapping"),
            ("all:\n  hosts:\n    web 1:\n", "line 3: hostname"),
            ("all:\n  children:\n    bad group:\n", "line 3: group"),
            (
                "all:\n  hosts:\n    web1: {9x: 1}\n",
                "line 3: variable name",
            ),
            ("all:\n  hosts: {web1: \n", "not valid YAML"),
            ("all:\n  hosts:\n    web1:\n    web1:\n", "not valid YAML"),
            ("a: 1\n---\nb: 2\n", "several"),
            (
                "all:\n  children:\n    a:\n      children:\n        b:\n          children:\n            a:\n",
                "cycle",
            ),
        ] {
            let err = yaml_err(text);
            assert!(err.contains(needle), "{text:?}: {err}");
        }
        let err = yaml_err(
            "all:\n  children:\n    db:\n      hosts:\n        db1:\n          criticality: 9\n",
        );
        assert_eq!(
            err,
            "hosts.yml: host db1: variable criticality from host (line 6): criticality: \"9\" is not a whole number from 1 to 5"
        );
        let err = yaml_err("all:\n  vars:\n    location: {cloud: aws}\n  hosts:\n    h1:\n");
        assert!(
            err.contains("variable location from group all (line 3)"),
            "{err}"
        );
        assert!(err.contains("single value"), "{err}");
        let err = yaml_err("all:\n  vars:\n    tags: {a: 1}\n  hosts:\n    h1:\n");
        assert!(err.contains("list of names"), "{err}");
    }
}
