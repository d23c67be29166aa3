//! Debian versions: `[epoch:]upstream[-revision]` in dpkg's order.
//!
//! Parsing is stricter than dpkg, which only warns about an upstream version that does not start
//! with a digit or about characters outside its allowed sets; Sluice rejects those. Comparison is
//! dpkg's `verrevcmp` on the stored text and must stay allocation-free: matching compares
//! installed versions against every affected range of every advisory.

use std::cmp::Ordering;
use std::fmt;
use std::hash::{Hash, Hasher};
use std::str::FromStr;

use super::{
    Scheme, VersionError, VersionPart, VersionProblem, check_no_blank_or_control, cmp_digit_runs,
    strip_leading_zeros,
};

/// dpkg refuses epochs above `INT_MAX`.
const MAX_EPOCH: u32 = i32::MAX as u32;

/// A validated Debian version, ordered exactly like `dpkg --compare-versions`.
///
/// Equality is dpkg's: `1.0`, `0:1.0`, `1.00` and `1.0-0` are equal, and hash alike.
/// `Display` and [`DebVersion::as_str`] give the original text.
#[derive(Clone, Debug)]
pub struct DebVersion {
    text: Box<str>,
    epoch: u32,
    upstream_start: usize,
    upstream_end: usize,
    /// Start of the revision; equal to the text's length when there is none.
    revision_start: usize,
}

impl DebVersion {
    /// The original text.
    pub fn as_str(&self) -> &str {
        &self.text
    }

    /// The epoch; 0 when the text has none.
    pub fn epoch(&self) -> u32 {
        self.epoch
    }

    /// The upstream version, between the epoch colon and the last hyphen.
    pub fn upstream(&self) -> &str {
        &self.text[self.upstream_start..self.upstream_end]
    }

    /// The Debian revision after the last hyphen, if the text has one.
    pub fn revision(&self) -> Option<&str> {
        (self.upstream_end < self.text.len()).then(|| &self.text[self.revision_start..])
    }

    fn upstream_bytes(&self) -> &[u8] {
        &self.text.as_bytes()[self.upstream_start..self.upstream_end]
    }

    fn revision_bytes(&self) -> &[u8] {
        &self.text.as_bytes()[self.revision_start..]
    }
}

impl FromStr for DebVersion {
    type Err = VersionError;

    fn from_str(text: &str) -> Result<DebVersion, VersionError> {
        let fail = |problem| Err(VersionError::new(Scheme::Deb, text, problem));
        if text.is_empty() {
            return fail(VersionProblem::Empty);
        }
        check_no_blank_or_control(Scheme::Deb, text)?;

        // The first colon ends the epoch, as in dpkg; later colons belong to the upstream part.
        let (epoch, upstream_start) = match text.find(':') {
            None => (0, 0),
            Some(0) => return fail(VersionProblem::EmptyEpoch),
            Some(colon) => {
                let digits = &text[..colon];
                if !digits.bytes().all(|c| c.is_ascii_digit()) {
                    return fail(VersionProblem::EpochNotNumber);
                }
                let epoch = match parse_epoch(digits.as_bytes()) {
                    Some(epoch) => epoch,
                    None => return fail(VersionProblem::EpochTooLarge),
                };
                if colon + 1 == text.len() {
                    return fail(VersionProblem::NothingAfterEpoch);
                }
                (epoch, colon + 1)
            }
        };

        // The last hyphen starts the revision; earlier hyphens belong to the upstream part.
        let (upstream_end, revision_start) = match text[upstream_start..].rfind('-') {
            None => (text.len(), text.len()),
            Some(offset) => {
                let hyphen = upstream_start + offset;
                if hyphen + 1 == text.len() {
                    return fail(VersionProblem::EmptyRevision);
                }
                (hyphen, hyphen + 1)
            }
        };

        let upstream = &text[upstream_start..upstream_end];
        match upstream.chars().next() {
            None => return fail(VersionProblem::EmptyUpstream),
            Some(first) if !first.is_ascii_digit() => {
                // A disallowed character is the more useful message when there is one.
                if let Some(ch) = upstream.chars().find(|&c| !upstream_char_allowed(c)) {
                    return fail(VersionProblem::InvalidCharacter {
                        ch,
                        part: VersionPart::Upstream,
                    });
                }
                return fail(VersionProblem::UpstreamNotDigit);
            }
            Some(_) => {}
        }
        // By construction a '-' here implies a revision and a ':' implies an epoch.
        if let Some(ch) = upstream.chars().find(|&c| !upstream_char_allowed(c)) {
            return fail(VersionProblem::InvalidCharacter {
                ch,
                part: VersionPart::Upstream,
            });
        }
        if let Some(ch) = text[revision_start..]
            .chars()
            .find(|&c| !revision_char_allowed(c))
        {
            return fail(VersionProblem::InvalidCharacter {
                ch,
                part: VersionPart::Revision,
            });
        }

        Ok(DebVersion {
            text: text.into(),
            epoch,
            upstream_start,
            upstream_end,
            revision_start,
        })
    }
}

fn parse_epoch(digits: &[u8]) -> Option<u32> {
    let digits = strip_leading_zeros(digits);
    if digits.len() > 10 {
        return None;
    }
    let value = digits
        .iter()
        .fold(0u64, |acc, &d| acc * 10 + u64::from(d - b'0'));
    u32::try_from(value).ok().filter(|&e| e <= MAX_EPOCH)
}

fn upstream_char_allowed(c: char) -> bool {
    c.is_ascii_alphanumeric() || matches!(c, '.' | '+' | '-' | '~' | ':')
}

fn revision_char_allowed(c: char) -> bool {
    c.is_ascii_alphanumeric() || matches!(c, '.' | '+' | '~')
}

impl fmt::Display for DebVersion {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.text)
    }
}

impl Ord for DebVersion {
    fn cmp(&self, other: &DebVersion) -> Ordering {
        self.epoch
            .cmp(&other.epoch)
            .then_with(|| verrevcmp(self.upstream_bytes(), other.upstream_bytes()))
            .then_with(|| verrevcmp(self.revision_bytes(), other.revision_bytes()))
    }
}

impl PartialOrd for DebVersion {
    fn partial_cmp(&self, other: &DebVersion) -> Option<Ordering> {
        Some(self.cmp(other))
    }
}

impl PartialEq for DebVersion {
    fn eq(&self, other: &DebVersion) -> bool {
        self.cmp(other) == Ordering::Equal
    }
}

impl Eq for DebVersion {}

impl Hash for DebVersion {
    fn hash<H: Hasher>(&self, state: &mut H) {
        self.epoch.hash(state);
        hash_verrev(self.upstream_bytes(), state);
        hash_verrev(self.revision_bytes(), state);
    }
}

/// Hashes the form that `verrevcmp` equality sees: alternating non-digit runs (compared
/// exactly) and digit runs (compared by value), where an all-zero string equals the empty one.
fn hash_verrev<H: Hasher>(s: &[u8], state: &mut H) {
    if s.iter().all(|&c| c == b'0') {
        state.write_usize(0);
        return;
    }
    let mut rest = s;
    let mut runs = 0usize;
    while !rest.is_empty() {
        let non_digits = rest.iter().take_while(|c| !c.is_ascii_digit()).count();
        let (text, tail) = rest.split_at(non_digits);
        let digits = tail.iter().take_while(|c| c.is_ascii_digit()).count();
        let (number, tail) = tail.split_at(digits);
        let number = strip_leading_zeros(number);
        state.write_usize(text.len());
        state.write(text);
        state.write_usize(number.len());
        state.write(number);
        runs += 1;
        rest = tail;
    }
    state.write_usize(runs);
}

/// dpkg's weight of a character in a non-digit run: `~` before the end of the run (and
/// everything else), letters before other characters; digits and the end weigh 0.
fn order(c: Option<u8>) -> i32 {
    match c {
        None => 0,
        Some(c) if c.is_ascii_digit() => 0,
        Some(c) if c.is_ascii_alphabetic() => i32::from(c),
        Some(b'~') => -1,
        Some(c) => i32::from(c) + 256,
    }
}

/// dpkg's `verrevcmp`: alternately compare non-digit runs by [`order`] and digit runs by value.
fn verrevcmp(a: &[u8], b: &[u8]) -> Ordering {
    let (mut i, mut j) = (0, 0);
    while i < a.len() || j < b.len() {
        loop {
            let ca = a.get(i).copied();
            let cb = b.get(j).copied();
            let a_text = ca.is_some_and(|c| !c.is_ascii_digit());
            let b_text = cb.is_some_and(|c| !c.is_ascii_digit());
            if !(a_text || b_text) {
                break;
            }
            let (wa, wb) = (order(ca), order(cb));
            if wa != wb {
                return wa.cmp(&wb);
            }
            // Equal weights mean the same non-digit character on both sides, so neither is at
            // its end here.
            i += 1;
            j += 1;
        }
        let a_digits = a[i..].iter().take_while(|c| c.is_ascii_digit()).count();
        let b_digits = b[j..].iter().take_while(|c| c.is_ascii_digit()).count();
        let by_value = cmp_digit_runs(&a[i..i + a_digits], &b[j..j + b_digits]);
        if by_value != Ordering::Equal {
            return by_value;
        }
        i += a_digits;
        j += b_digits;
    }
    Ordering::Equal
}

#[cfg(test)]
mod tests {
    use std::collections::hash_map::DefaultHasher;

    use super::*;

    fn v(text: &str) -> DebVersion {
        text.parse().unwrap()
    }

    fn problem(text: &str) -> VersionProblem {
        text.parse::<DebVersion>().unwrap_err().problem().clone()
    }

    fn hash_of(v: &DebVersion) -> u64 {
        let mut h = DefaultHasher::new();
        v.hash(&mut h);
        h.finish()
    }

    #[test]
    fn splits_epoch_upstream_revision() {
        let x = v("2:1.0-rc1-3ubuntu1");
        assert_eq!(x.epoch(), 2);
        assert_eq!(x.upstream(), "1.0-rc1");
        assert_eq!(x.revision(), Some("3ubuntu1"));
        assert_eq!(x.as_str(), "2:1.0-rc1-3ubuntu1");
        assert_eq!(x.to_string(), "2:1.0-rc1-3ubuntu1");
        let y = v("1:2:3");
        assert_eq!((y.epoch(), y.upstream(), y.revision()), (1, "2:3", None));
    }

    #[test]
    fn orders_like_dpkg() {
        let ascending = [
            "0.9", "1.0~~", "1.0~~a", "1.0~", "1.0", "1.0-1", "1.0a", "1.0+", "1.0.1", "1.1",
            "1.10", "1:0.1",
        ];
        for pair in ascending.windows(2) {
            assert!(v(pair[0]) < v(pair[1]), "{} < {}", pair[0], pair[1]);
        }
        assert!(v("1.0-1~bpo1") < v("1.0-1"));
        assert!(v("1.0-a") < v("1.0-+"), "letters before other characters");
        assert!(
            v("1.99999999999999999999999999") < v("1.100000000000000000000000000"),
            "digit runs longer than u64"
        );
    }

    #[test]
    fn dpkg_equality_hashes_alike() {
        for (a, b) in [
            ("1.0", "0:1.0"),
            ("1.0", "1.00"),
            ("1.0", "1.0-0"),
            ("1.0a", "1.0a0"),
            ("1.0-0", "1.0-000"),
        ] {
            assert_eq!(v(a), v(b), "{a} = {b}");
            assert_eq!(hash_of(&v(a)), hash_of(&v(b)), "hash {a} = {b}");
        }
        assert_ne!(v("1.0"), v("1.0."));
        assert_ne!(v("1.0-0a"), v("1.0-a"));
    }

    #[test]
    fn rejects_invalid_forms() {
        assert_eq!(problem(""), VersionProblem::Empty);
        assert_eq!(problem("1.0 1"), VersionProblem::Whitespace);
        assert_eq!(problem(" 1.0"), VersionProblem::Whitespace);
        assert_eq!(problem(":1.0"), VersionProblem::EmptyEpoch);
        assert_eq!(problem("a:1.0"), VersionProblem::EpochNotNumber);
        assert_eq!(problem("-1:1.0"), VersionProblem::EpochNotNumber);
        assert_eq!(problem("1.0:2"), VersionProblem::EpochNotNumber);
        assert_eq!(problem("2147483648:1"), VersionProblem::EpochTooLarge);
        assert_eq!(problem("1:"), VersionProblem::NothingAfterEpoch);
        assert_eq!(problem("1.0-"), VersionProblem::EmptyRevision);
        assert_eq!(problem("1:-1"), VersionProblem::EmptyUpstream);
        assert_eq!(problem("a1.0"), VersionProblem::UpstreamNotDigit);
        assert_eq!(
            problem("1.0_1"),
            VersionProblem::InvalidCharacter {
                ch: '_',
                part: VersionPart::Upstream
            }
        );
        assert_eq!(
            problem("1:1.0-1:2"),
            VersionProblem::InvalidCharacter {
                ch: ':',
                part: VersionPart::Revision
            }
        );
        assert!(v("2147483647:1").epoch() == MAX_EPOCH);
        assert_eq!(v("0002:1").epoch(), 2);
    }
}
