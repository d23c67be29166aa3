//! Version ordering per ecosystem: dpkg's for Debian and Ubuntu, rpm's for RPM distributions,
//! and a documented semver-like order for third-party software.
//!
//! This module owns parsing version text into a validated form and ordering two versions of the
//! same scheme exactly as the reference tools do (`dpkg --compare-versions`, rpm 4.18's
//! `rpm.vercmp`). It must never order text it could not validate: a version the scheme's rules
//! reject is an error naming the text, the scheme and what is wrong, because silently ordering
//! garbage would open or close findings for the wrong reason. `docs/versions.md` lists the rules.

mod deb;
mod generic;
mod rpm;

use std::cmp::Ordering;
use std::fmt;

use serde::{Deserialize, Serialize};

pub use deb::DebVersion;
pub use generic::GenericVersion;
pub use rpm::RpmVersion;

/// Which ordering an ecosystem uses; advisories and inventories name it so that versions are
/// compared by the rules of the packages they describe.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Scheme {
    /// dpkg's order (Debian, Ubuntu and derivatives).
    Deb,
    /// rpm's EVR order (RHEL, AlmaLinux, Rocky, Fedora, SUSE).
    Rpm,
    /// Sluice's semver-like order for vendor and third-party software.
    Generic,
}

impl Scheme {
    /// Name used in messages ("Debian", "RPM", "generic").
    pub fn name(self) -> &'static str {
        match self {
            Scheme::Deb => "Debian",
            Scheme::Rpm => "RPM",
            Scheme::Generic => "generic",
        }
    }
}

impl fmt::Display for Scheme {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// A parsed version of any scheme, for code that handles several ecosystems at once.
#[derive(Clone, Debug)]
pub enum Version {
    /// A Debian version.
    Deb(DebVersion),
    /// An RPM `[epoch:]version[-release]`.
    Rpm(RpmVersion),
    /// A semver-like version.
    Generic(GenericVersion),
}

impl Version {
    /// Parses `text` by the rules of `scheme`; invalid text is an error, never a guess.
    pub fn parse(scheme: Scheme, text: &str) -> Result<Version, VersionError> {
        Ok(match scheme {
            Scheme::Deb => Version::Deb(text.parse()?),
            Scheme::Rpm => Version::Rpm(text.parse()?),
            Scheme::Generic => Version::Generic(text.parse()?),
        })
    }

    /// The scheme this version was parsed with.
    pub fn scheme(&self) -> Scheme {
        match self {
            Version::Deb(_) => Scheme::Deb,
            Version::Rpm(_) => Scheme::Rpm,
            Version::Generic(_) => Scheme::Generic,
        }
    }

    /// The original text.
    pub fn as_str(&self) -> &str {
        match self {
            Version::Deb(v) => v.as_str(),
            Version::Rpm(v) => v.as_str(),
            Version::Generic(v) => v.as_str(),
        }
    }

    /// Orders two versions of the same scheme by that scheme's rules.
    ///
    /// Comparing versions of different schemes is a programming error with no meaningful answer;
    /// rather than panic, such pairs are ordered by scheme (Deb < Rpm < Generic) and then by
    /// text, so sorting a mixed list is still deterministic.
    pub fn compare(&self, other: &Version) -> Ordering {
        match (self, other) {
            (Version::Deb(a), Version::Deb(b)) => a.cmp(b),
            (Version::Rpm(a), Version::Rpm(b)) => a.compare(b),
            (Version::Generic(a), Version::Generic(b)) => a.cmp(b),
            _ => self
                .scheme()
                .cmp(&other.scheme())
                .then_with(|| self.as_str().cmp(other.as_str())),
        }
    }
}

impl fmt::Display for Version {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Parses both texts with `scheme` and orders them; the first invalid text is the error.
pub fn compare(scheme: Scheme, a: &str, b: &str) -> Result<Ordering, VersionError> {
    let a = Version::parse(scheme, a)?;
    let b = Version::parse(scheme, b)?;
    Ok(a.compare(&b))
}

/// A version text that its scheme's rules reject; the message names the text, the scheme and
/// the problem, e.g. `invalid Debian version "1:": nothing after the epoch colon`.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("invalid {scheme} version {text:?}: {problem}")]
pub struct VersionError {
    scheme: Scheme,
    text: String,
    problem: VersionProblem,
}

impl VersionError {
    pub(crate) fn new(scheme: Scheme, text: &str, problem: VersionProblem) -> VersionError {
        VersionError {
            scheme,
            text: text.to_owned(),
            problem,
        }
    }

    /// The scheme whose rules were applied.
    pub fn scheme(&self) -> Scheme {
        self.scheme
    }

    /// The rejected text, unchanged.
    pub fn text(&self) -> &str {
        &self.text
    }

    /// What is wrong with it, for callers that react differently to different problems.
    pub fn problem(&self) -> &VersionProblem {
        &self.problem
    }
}

/// Which part of a version a character problem was found in.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum VersionPart {
    /// The epoch before the first `:`.
    Epoch,
    /// Debian's upstream version or RPM's version (between epoch and revision or release).
    Upstream,
    /// Debian's revision (after the last `-`).
    Revision,
    /// The numeric core of a generic version (`1.2.3`).
    Core,
    /// A generic version's pre-release (after `-`).
    PreRelease,
    /// A generic version's build metadata (after `+`).
    Build,
}

impl fmt::Display for VersionPart {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            VersionPart::Epoch => "epoch",
            VersionPart::Upstream => "version",
            VersionPart::Revision => "revision",
            VersionPart::Core => "numeric core",
            VersionPart::PreRelease => "pre-release",
            VersionPart::Build => "build metadata",
        })
    }
}

/// What makes a version text invalid.
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum VersionProblem {
    /// The text is empty.
    Empty,
    /// The text contains whitespace (leading, trailing or inside); callers must trim.
    Whitespace,
    /// The text contains a control character (NUL, DEL, escapes).
    ControlCharacter,
    /// A character that the part does not allow.
    InvalidCharacter {
        /// The offending character.
        ch: char,
        /// Where it was found.
        part: VersionPart,
    },
    /// Nothing before the epoch colon (`:1.0`).
    EmptyEpoch,
    /// The text before the epoch colon is not a non-negative decimal integer.
    EpochNotNumber,
    /// The epoch does not fit the tool's integer (dpkg: 2147483647, rpm: 4294967295).
    EpochTooLarge,
    /// The text ends with the epoch colon (`1:`).
    NothingAfterEpoch,
    /// The version part between epoch and revision or release is empty (`1:-1`).
    EmptyUpstream,
    /// A Debian upstream version that does not start with a digit.
    UpstreamNotDigit,
    /// A trailing `-` with no Debian revision after it.
    EmptyRevision,
    /// A generic version's numeric core has an empty component (`1..2`, `1.`).
    EmptyCoreComponent,
    /// A generic pre-release or build identifier is empty (`1.0-`, `1.0-rc..1`, `1.0+`).
    EmptyIdentifier {
        /// Pre-release or build metadata.
        part: VersionPart,
    },
}

impl fmt::Display for VersionProblem {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            VersionProblem::Empty => f.write_str("the text is empty"),
            VersionProblem::Whitespace => f.write_str("whitespace is not allowed"),
            VersionProblem::ControlCharacter => f.write_str("control characters are not allowed"),
            VersionProblem::InvalidCharacter { ch, part } => {
                write!(f, "character {ch:?} is not allowed in the {part}")
            }
            VersionProblem::EmptyEpoch => f.write_str("nothing before the epoch colon"),
            VersionProblem::EpochNotNumber => {
                f.write_str("the epoch (before the first ':') is not a non-negative integer")
            }
            VersionProblem::EpochTooLarge => f.write_str("the epoch is too large"),
            VersionProblem::NothingAfterEpoch => f.write_str("nothing after the epoch colon"),
            VersionProblem::EmptyUpstream => f.write_str("the version part is empty"),
            VersionProblem::UpstreamNotDigit => {
                f.write_str("the upstream version does not start with a digit")
            }
            VersionProblem::EmptyRevision => {
                f.write_str("nothing after the last '-' (empty revision)")
            }
            VersionProblem::EmptyCoreComponent => {
                f.write_str("the numeric core has an empty component")
            }
            VersionProblem::EmptyIdentifier { part } => {
                write!(f, "the {part} has an empty identifier")
            }
        }
    }
}

/// Orders two runs of ASCII digits by numeric value without converting them, so runs longer
/// than any integer type still order correctly: leading zeros are ignored, then the longer run
/// is larger, then the runs compare lexically.
fn cmp_digit_runs(a: &[u8], b: &[u8]) -> Ordering {
    let a = strip_leading_zeros(a);
    let b = strip_leading_zeros(b);
    a.len().cmp(&b.len()).then_with(|| a.cmp(b))
}

/// The digit run without its leading zeros (empty for zero itself).
fn strip_leading_zeros(digits: &[u8]) -> &[u8] {
    let zeros = digits.iter().take_while(|&&c| c == b'0').count();
    &digits[zeros..]
}

/// Rejects whitespace and control characters, which every scheme refuses.
fn check_no_blank_or_control(scheme: Scheme, text: &str) -> Result<(), VersionError> {
    for ch in text.chars() {
        if ch.is_whitespace() {
            return Err(VersionError::new(scheme, text, VersionProblem::Whitespace));
        }
        if ch.is_control() {
            return Err(VersionError::new(
                scheme,
                text,
                VersionProblem::ControlCharacter,
            ));
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn digit_runs_compare_numerically_beyond_u64() {
        assert_eq!(cmp_digit_runs(b"007", b"7"), Ordering::Equal);
        assert_eq!(cmp_digit_runs(b"", b"000"), Ordering::Equal);
        assert_eq!(cmp_digit_runs(b"10", b"9"), Ordering::Greater);
        assert_eq!(
            cmp_digit_runs(b"99999999999999999999999", b"100000000000000000000000"),
            Ordering::Less
        );
    }

    #[test]
    fn error_message_names_text_scheme_and_problem() {
        let err = Version::parse(Scheme::Deb, "1:").unwrap_err();
        assert_eq!(
            err.to_string(),
            "invalid Debian version \"1:\": nothing after the epoch colon"
        );
        assert_eq!(err.scheme(), Scheme::Deb);
        assert_eq!(err.text(), "1:");
        assert_eq!(err.problem(), &VersionProblem::NothingAfterEpoch);
    }

    #[test]
    fn compare_by_scheme() {
        assert_eq!(compare(Scheme::Deb, "1.0~rc1", "1.0"), Ok(Ordering::Less));
        assert_eq!(
            compare(Scheme::Rpm, "1.0^git1", "1.0"),
            Ok(Ordering::Greater)
        );
        assert_eq!(
            compare(Scheme::Generic, "v1.2.0", "1.2"),
            Ok(Ordering::Equal)
        );
        assert!(compare(Scheme::Deb, "1.0", "").is_err());
    }

    #[test]
    fn mixed_schemes_order_by_scheme_then_text() {
        let deb = Version::parse(Scheme::Deb, "9").unwrap();
        let rpm = Version::parse(Scheme::Rpm, "1").unwrap();
        assert_eq!(deb.compare(&rpm), Ordering::Less);
        assert_eq!(rpm.compare(&deb), Ordering::Greater);
    }

    #[test]
    fn scheme_serialises_lowercase() {
        assert_eq!(serde_json::to_string(&Scheme::Deb).unwrap(), "\"deb\"");
        assert_eq!(
            serde_json::from_str::<Scheme>("\"generic\"").unwrap(),
            Scheme::Generic
        );
    }
}
