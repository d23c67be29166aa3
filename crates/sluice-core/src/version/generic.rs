//! Generic versions for vendor and third-party software: a semver-like order that is
//! documented rather than borrowed from a tool.
//!
//! Form: `[v]N(.N)*[-PRE][+BUILD]`. The numeric core has any number of components, compared as
//! numbers, with missing components counting as 0 (`1.2` = `1.2.0`). A pre-release sorts before
//! its release and is ordered by semver 2.0's rules; build metadata is ignored. Anything else
//! (`1.2a`, `2.0rc1`, `1..2`) is rejected rather than guessed at.

use std::cmp::Ordering;
use std::fmt;
use std::hash::{Hash, Hasher};
use std::str::FromStr;

use super::{
    Scheme, VersionError, VersionPart, VersionProblem, check_no_blank_or_control, cmp_digit_runs,
    strip_leading_zeros,
};

/// A validated semver-like version.
///
/// Equality is the order's: `v1.2`, `1.2.0`, `1.02.0+build7` are equal and hash alike.
#[derive(Clone, Debug)]
pub struct GenericVersion {
    text: Box<str>,
    core_start: usize,
    core_end: usize,
    pre_release: Option<(usize, usize)>,
    build_start: Option<usize>,
}

impl GenericVersion {
    /// The original text.
    pub fn as_str(&self) -> &str {
        &self.text
    }

    /// The dot-separated numeric core, without a leading `v`.
    pub fn core(&self) -> &str {
        &self.text[self.core_start..self.core_end]
    }

    /// The pre-release after the first `-`, if any.
    pub fn pre_release(&self) -> Option<&str> {
        self.pre_release.map(|(start, end)| &self.text[start..end])
    }

    /// The build metadata after the first `+`, if any; it does not take part in the order.
    pub fn build(&self) -> Option<&str> {
        self.build_start.map(|start| &self.text[start..])
    }

    fn core_components(&self) -> impl Iterator<Item = &[u8]> {
        self.core().as_bytes().split(|&c| c == b'.')
    }
}

impl FromStr for GenericVersion {
    type Err = VersionError;

    fn from_str(text: &str) -> Result<GenericVersion, VersionError> {
        let fail = |problem| Err(VersionError::new(Scheme::Generic, text, problem));
        if text.is_empty() {
            return fail(VersionProblem::Empty);
        }
        check_no_blank_or_control(Scheme::Generic, text)?;

        let core_start = usize::from(text.starts_with(['v', 'V']));
        let core_end = text[core_start..]
            .find(['-', '+'])
            .map_or(text.len(), |offset| core_start + offset);
        let core = &text[core_start..core_end];
        for component in core.split('.') {
            if component.is_empty() {
                return fail(VersionProblem::EmptyCoreComponent);
            }
            if let Some(ch) = component.chars().find(|c| !c.is_ascii_digit()) {
                return fail(VersionProblem::InvalidCharacter {
                    ch,
                    part: VersionPart::Core,
                });
            }
        }

        let rest = &text[core_end..];
        let (pre_release, build_start) = match rest.strip_prefix('-') {
            Some(pre) => {
                let pre_end = pre
                    .find('+')
                    .map_or(text.len(), |offset| core_end + 1 + offset);
                let build = (pre_end < text.len()).then_some(pre_end + 1);
                (Some((core_end + 1, pre_end)), build)
            }
            None => (None, (core_end < text.len()).then_some(core_end + 1)),
        };
        if let Some((start, end)) = pre_release {
            check_identifiers(&text[start..end], VersionPart::PreRelease)
                .map_err(|problem| VersionError::new(Scheme::Generic, text, problem))?;
        }
        if let Some(start) = build_start {
            check_identifiers(&text[start..], VersionPart::Build)
                .map_err(|problem| VersionError::new(Scheme::Generic, text, problem))?;
        }

        Ok(GenericVersion {
            text: text.into(),
            core_start,
            core_end,
            pre_release,
            build_start,
        })
    }
}

/// Semver identifiers: non-empty, dot-separated, of ASCII letters, digits and `-`.
fn check_identifiers(part_text: &str, part: VersionPart) -> Result<(), VersionProblem> {
    for identifier in part_text.split('.') {
        if identifier.is_empty() {
            return Err(VersionProblem::EmptyIdentifier { part });
        }
        if let Some(ch) = identifier
            .chars()
            .find(|&c| !(c.is_ascii_alphanumeric() || c == '-'))
        {
            return Err(VersionProblem::InvalidCharacter { ch, part });
        }
    }
    Ok(())
}

impl fmt::Display for GenericVersion {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.text)
    }
}

impl Ord for GenericVersion {
    fn cmp(&self, other: &GenericVersion) -> Ordering {
        let mut mine = self.core_components();
        let mut theirs = other.core_components();
        loop {
            match (mine.next(), theirs.next()) {
                (None, None) => break,
                (a, b) => {
                    let by_value = cmp_digit_runs(a.unwrap_or(b"0"), b.unwrap_or(b"0"));
                    if by_value != Ordering::Equal {
                        return by_value;
                    }
                }
            }
        }
        match (self.pre_release(), other.pre_release()) {
            (None, None) => Ordering::Equal,
            (None, Some(_)) => Ordering::Greater,
            (Some(_), None) => Ordering::Less,
            (Some(a), Some(b)) => cmp_pre_release(a, b),
        }
    }
}

/// semver 2.0 §11: identifiers left to right; numeric ones by value and before alphanumeric
/// ones, alphanumeric ones in ASCII order; more identifiers win when all before are equal.
fn cmp_pre_release(a: &str, b: &str) -> Ordering {
    let mut mine = a.split('.');
    let mut theirs = b.split('.');
    loop {
        match (mine.next(), theirs.next()) {
            (None, None) => return Ordering::Equal,
            (None, Some(_)) => return Ordering::Less,
            (Some(_), None) => return Ordering::Greater,
            (Some(x), Some(y)) => {
                let by_identifier = match (is_numeric(x), is_numeric(y)) {
                    (true, true) => cmp_digit_runs(x.as_bytes(), y.as_bytes()),
                    (true, false) => Ordering::Less,
                    (false, true) => Ordering::Greater,
                    (false, false) => x.as_bytes().cmp(y.as_bytes()),
                };
                if by_identifier != Ordering::Equal {
                    return by_identifier;
                }
            }
        }
    }
}

fn is_numeric(identifier: &str) -> bool {
    identifier.bytes().all(|c| c.is_ascii_digit())
}

impl PartialOrd for GenericVersion {
    fn partial_cmp(&self, other: &GenericVersion) -> Option<Ordering> {
        Some(self.cmp(other))
    }
}

impl PartialEq for GenericVersion {
    fn eq(&self, other: &GenericVersion) -> bool {
        self.cmp(other) == Ordering::Equal
    }
}

impl Eq for GenericVersion {}

impl Hash for GenericVersion {
    fn hash<H: Hasher>(&self, state: &mut H) {
        // Trailing zero components do not change the order, so they must not change the hash.
        let components: Vec<&[u8]> = self.core_components().map(strip_leading_zeros).collect();
        let significant = components
            .iter()
            .rposition(|c| !c.is_empty())
            .map_or(0, |last| last + 1);
        state.write_usize(significant);
        for component in &components[..significant] {
            state.write_usize(component.len());
            state.write(component);
        }
        match self.pre_release() {
            None => state.write_u8(0),
            Some(pre) => {
                state.write_u8(1);
                for identifier in pre.split('.') {
                    if is_numeric(identifier) {
                        let value = strip_leading_zeros(identifier.as_bytes());
                        state.write_u8(b'#');
                        state.write_usize(value.len());
                        state.write(value);
                    } else {
                        state.write_u8(b'a');
                        state.write_usize(identifier.len());
                        state.write(identifier.as_bytes());
                    }
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use std::collections::hash_map::DefaultHasher;

    use super::*;

    fn v(text: &str) -> GenericVersion {
        text.parse().unwrap()
    }

    fn hash_of(v: &GenericVersion) -> u64 {
        let mut h = DefaultHasher::new();
        v.hash(&mut h);
        h.finish()
    }

    #[test]
    fn splits_parts() {
        let x = v("v1.2.3-rc.1+build-7.x");
        assert_eq!(x.core(), "1.2.3");
        assert_eq!(x.pre_release(), Some("rc.1"));
        assert_eq!(x.build(), Some("build-7.x"));
        assert_eq!(x.to_string(), "v1.2.3-rc.1+build-7.x");
        let y = v("2+b");
        assert_eq!((y.pre_release(), y.build()), (None, Some("b")));
    }

    #[test]
    fn equal_versions_hash_alike() {
        for (a, b) in [
            ("1.2", "1.2.0"),
            ("v1.2", "1.02.0.0"),
            ("1.0.0+a", "1.0.0+b"),
            ("1-rc.01", "1.0-rc.1"),
        ] {
            assert_eq!(v(a), v(b), "{a} = {b}");
            assert_eq!(hash_of(&v(a)), hash_of(&v(b)), "hash {a} = {b}");
        }
        assert_ne!(v("1.0-rc"), v("1.0"));
    }
}
