//! RPM versions: `[epoch:]version[-release]` in rpm 4.18's order (`rpmverCmp` over
//! `rpmvercmp`), as `rpm.vercmp` in rpm's Lua answers it.
//!
//! The split follows rpm's `parseEVR`: an epoch is the leading digits when a `:` follows them,
//! the release is everything after the last `-`, and any other `:` or `-` is an ordinary
//! separator. A missing epoch counts as 0; a missing release sorts before any release, even an
//! empty one. Sluice rejects only what rpm rejects (empty text) and text no package can carry
//! (whitespace, control characters, an empty epoch or version, an epoch beyond 32 bits).

use std::cmp::Ordering;
use std::fmt;
use std::str::FromStr;

use super::{Scheme, VersionError, VersionProblem, check_no_blank_or_control, cmp_digit_runs};

/// A validated RPM EVR.
///
/// There is no `Ord`: rpm's order equates different texts (`1.0`, `1_0`, `01.0`, `1.0.`) and
/// callers should not mistake it for text equality; use [`RpmVersion::compare`].
#[derive(Clone, Debug)]
pub struct RpmVersion {
    text: Box<str>,
    epoch: Option<u32>,
    version_start: usize,
    version_end: usize,
    /// Start of the release; `None` when the text has no `-` after the epoch.
    release_start: Option<usize>,
}

impl RpmVersion {
    /// The original text.
    pub fn as_str(&self) -> &str {
        &self.text
    }

    /// The epoch if the text has one; rpm treats a missing epoch as 0.
    pub fn epoch(&self) -> Option<u32> {
        self.epoch
    }

    /// The version between the epoch and the last `-`.
    pub fn version(&self) -> &str {
        &self.text[self.version_start..self.version_end]
    }

    /// The release after the last `-`, possibly empty; `None` when there is no `-`.
    pub fn release(&self) -> Option<&str> {
        self.release_start.map(|start| &self.text[start..])
    }

    /// rpm's order: epoch (missing = 0), then version, then release, where a missing release
    /// sorts before any present one (`1.0` < `1.0-` < `1.0-0`).
    pub fn compare(&self, other: &RpmVersion) -> Ordering {
        self.epoch
            .unwrap_or(0)
            .cmp(&other.epoch.unwrap_or(0))
            .then_with(|| rpmvercmp(self.version().as_bytes(), other.version().as_bytes()))
            .then_with(|| match (self.release(), other.release()) {
                (None, None) => Ordering::Equal,
                (None, Some(_)) => Ordering::Less,
                (Some(_), None) => Ordering::Greater,
                (Some(a), Some(b)) => rpmvercmp(a.as_bytes(), b.as_bytes()),
            })
    }
}

impl FromStr for RpmVersion {
    type Err = VersionError;

    fn from_str(text: &str) -> Result<RpmVersion, VersionError> {
        let fail = |problem| Err(VersionError::new(Scheme::Rpm, text, problem));
        if text.is_empty() {
            return fail(VersionProblem::Empty);
        }
        check_no_blank_or_control(Scheme::Rpm, text)?;

        let digits = text.bytes().take_while(u8::is_ascii_digit).count();
        let (epoch, version_start) = if text.as_bytes().get(digits) == Some(&b':') {
            if digits == 0 {
                return fail(VersionProblem::EmptyEpoch);
            }
            let Some(epoch) = parse_epoch(&text.as_bytes()[..digits]) else {
                return fail(VersionProblem::EpochTooLarge);
            };
            if digits + 1 == text.len() {
                return fail(VersionProblem::NothingAfterEpoch);
            }
            (Some(epoch), digits + 1)
        } else {
            (None, 0)
        };

        let (version_end, release_start) = match text[version_start..].rfind('-') {
            Some(offset) => (version_start + offset, Some(version_start + offset + 1)),
            None => (text.len(), None),
        };
        if version_end == version_start {
            return fail(VersionProblem::EmptyUpstream);
        }

        Ok(RpmVersion {
            text: text.into(),
            epoch,
            version_start,
            version_end,
            release_start,
        })
    }
}

fn parse_epoch(digits: &[u8]) -> Option<u32> {
    let digits = super::strip_leading_zeros(digits);
    if digits.len() > 10 {
        return None;
    }
    let value = digits
        .iter()
        .fold(0u64, |acc, &d| acc * 10 + u64::from(d - b'0'));
    u32::try_from(value).ok()
}

impl fmt::Display for RpmVersion {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.text)
    }
}

/// rpm's separators: every byte except ASCII letters and digits, `~` and `^` (so non-ASCII
/// bytes separate too).
fn is_separator(c: u8) -> bool {
    !c.is_ascii_alphanumeric() && c != b'~' && c != b'^'
}

/// rpm 4.18's `rpmvercmp` on one version or release string.
///
/// Separators are skipped; `~` sorts before everything, including the end; `^` sorts after the
/// end but before everything else; then alternating runs of digits (by value, and a digit run
/// beats a letter run) and of ASCII letters (bytewise); leftovers win.
fn rpmvercmp(a: &[u8], b: &[u8]) -> Ordering {
    if a == b {
        return Ordering::Equal;
    }
    let (mut i, mut j) = (0, 0);
    while i < a.len() || j < b.len() {
        while a.get(i).is_some_and(|&c| is_separator(c)) {
            i += 1;
        }
        while b.get(j).is_some_and(|&c| is_separator(c)) {
            j += 1;
        }
        let (ca, cb) = (a.get(i).copied(), b.get(j).copied());

        if ca == Some(b'~') || cb == Some(b'~') {
            if ca != Some(b'~') {
                return Ordering::Greater;
            }
            if cb != Some(b'~') {
                return Ordering::Less;
            }
            i += 1;
            j += 1;
            continue;
        }

        if ca == Some(b'^') || cb == Some(b'^') {
            if ca.is_none() {
                return Ordering::Less;
            }
            if cb.is_none() {
                return Ordering::Greater;
            }
            if ca != Some(b'^') {
                return Ordering::Greater;
            }
            if cb != Some(b'^') {
                return Ordering::Less;
            }
            i += 1;
            j += 1;
            continue;
        }

        let (Some(first), Some(_)) = (ca, cb) else {
            break;
        };
        let numeric = first.is_ascii_digit();
        let in_run = |c: &u8| {
            if numeric {
                c.is_ascii_digit()
            } else {
                c.is_ascii_alphabetic()
            }
        };
        let a_len = a[i..].iter().take_while(|c| in_run(c)).count();
        let b_len = b[j..].iter().take_while(|c| in_run(c)).count();
        if b_len == 0 {
            // Different kinds of run: digits are newer than letters.
            return if numeric {
                Ordering::Greater
            } else {
                Ordering::Less
            };
        }
        let (run_a, run_b) = (&a[i..i + a_len], &b[j..j + b_len]);
        let by_run = if numeric {
            cmp_digit_runs(run_a, run_b)
        } else {
            run_a.cmp(run_b)
        };
        if by_run != Ordering::Equal {
            return by_run;
        }
        i += a_len;
        j += b_len;
    }
    match (i >= a.len(), j >= b.len()) {
        (true, true) => Ordering::Equal,
        (true, false) => Ordering::Less,
        (false, _) => Ordering::Greater,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn v(text: &str) -> RpmVersion {
        text.parse().unwrap()
    }

    fn cmp(a: &str, b: &str) -> Ordering {
        v(a).compare(&v(b))
    }

    fn problem(text: &str) -> VersionProblem {
        text.parse::<RpmVersion>().unwrap_err().problem().clone()
    }

    #[test]
    fn splits_like_parse_evr() {
        let x = v("2:1.0-rc1-3.el9");
        assert_eq!(
            (x.epoch(), x.version(), x.release()),
            (Some(2), "1.0-rc1", Some("3.el9"))
        );
        let y = v("a:1");
        assert_eq!((y.epoch(), y.version(), y.release()), (None, "a:1", None));
        let z = v("1-");
        assert_eq!((z.epoch(), z.version(), z.release()), (None, "1", Some("")));
        assert_eq!(v("0:1.2").to_string(), "0:1.2");
    }

    #[test]
    fn orders_like_rpm() {
        use Ordering::*;
        for (a, b, expected) in [
            ("1.0", "1.0-1", Less),
            ("1.0", "1.0-", Less),
            ("1.0-", "1.0-0", Less),
            ("1.0-1", "1.0-2", Less),
            ("0:1.0", "1.0", Equal),
            ("1:0.1", "1.0", Greater),
            ("1.0~rc1", "1.0", Less),
            ("1.0^git1", "1.0", Greater),
            ("1.0^git1", "1.0.1", Less),
            ("1.0", "1.0a", Less),
            ("1.0a", "1.0.1", Less),
            ("1.0", "1_0", Equal),
            ("1.0", "1.0.", Equal),
            ("010", "10", Equal),
            ("2", "10", Less),
            ("a", "1", Less),
            (
                "1.99999999999999999999999",
                "1.100000000000000000000000",
                Less,
            ),
        ] {
            assert_eq!(cmp(a, b), expected, "{a} vs {b}");
            assert_eq!(cmp(b, a), expected.reverse(), "{b} vs {a}");
        }
    }

    #[test]
    fn rejects_invalid_forms() {
        assert_eq!(problem(""), VersionProblem::Empty);
        assert_eq!(problem("1.0 1"), VersionProblem::Whitespace);
        assert_eq!(problem("1.0\u{7f}"), VersionProblem::ControlCharacter);
        assert_eq!(problem(":1.0"), VersionProblem::EmptyEpoch);
        assert_eq!(problem("4294967296:1"), VersionProblem::EpochTooLarge);
        assert_eq!(problem("1:"), VersionProblem::NothingAfterEpoch);
        assert_eq!(problem("-1"), VersionProblem::EmptyUpstream);
        assert_eq!(problem("1:-1"), VersionProblem::EmptyUpstream);
        assert_eq!(v("4294967295:1").epoch(), Some(u32::MAX));
    }
}
