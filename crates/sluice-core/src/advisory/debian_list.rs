//! The Debian security tracker's DSA and DLA lists.
//!
//! ```text
//! [29 Mar 2023] DSA-5380-1 xorg-server - security update
//!     {CVE-2023-1393}
//!     [bullseye] - xorg-server 2:1.20.11-1+deb11u6
//!     [buster] - xorg-server <not-affected> (vulnerable code not present)
//!     NOTE: fixed in testing at time of DSA
//! ```
//! Each `[release] - package version` line becomes one affected package in `Debian:N` (codenames
//! mapped to release numbers) with the range `introduced 0, fixed version`, where `0` is OSV's
//! start sentinel (every version, including `0~…` snapshots that sort below `0`). `<unfixed>`,
//! `<end-of-life>`, `<postponed>` and `<ignored>` mean affected with no fix (the status is kept in
//! `database_specific`); `<not-affected>` and `<removed>` mean the release is not affected. An
//! urgency or bug number in parentheses goes to `ecosystem_specific`, notes to
//! `database_specific.notes`. DSA and DLA advisories are security updates.

use jiff::Timestamp;
use jiff::civil::Date;
use serde_json::{Map, Value, json};

use super::{
    Advisory, Affected, DetectedFormat, Event, FeedError, FeedFormat, LoadIssue, LoadedFeed, Range,
    RangeKind, UpdateType,
};
use crate::ecosystem::{Distro, EcosystemKey, debian_release_of_codename};
use crate::version::{Scheme, Version};

/// Recognises a DSA or DLA list by its first line.
pub fn detect(head: &str) -> Option<DetectedFormat> {
    let first = head.lines().find(|line| !line.trim().is_empty())?;
    let (_, rest) = parse_header_date(first)?;
    if rest.starts_with("DSA-") {
        Some(DetectedFormat::DebianDsa)
    } else if rest.starts_with("DLA-") {
        Some(DetectedFormat::DebianDla)
    } else {
        None
    }
}

/// Parses `[29 Mar 2023] rest` into the date and the rest of the line.
fn parse_header_date(line: &str) -> Option<(Date, &str)> {
    let inner = line.strip_prefix('[')?;
    let (date_text, rest) = inner.split_once(']')?;
    let date = Date::strptime("%d %b %Y", date_text.trim()).ok()?;
    Some((date, rest.trim()))
}

struct Pending {
    line: usize,
    advisory: Advisory,
    notes: Vec<String>,
    error: Option<String>,
}

/// Parses a whole DSA or DLA list. Malformed records are skipped and reported with their line.
pub fn parse(source_name: &str, text: &str) -> Result<LoadedFeed, FeedError> {
    let format = match detect(text) {
        Some(DetectedFormat::DebianDla) => FeedFormat::DebianDla,
        Some(_) => FeedFormat::DebianDsa,
        None => {
            return Err(FeedError::new(
                source_name,
                "not a Debian DSA/DLA list: the first line should look like \"[29 Mar 2023] DSA-5380-1 package - title\"",
            ));
        }
    };
    let mut feed = LoadedFeed::default();
    let mut pending: Option<Pending> = None;
    for (index, line) in text.lines().enumerate() {
        let number = index + 1;
        if line.trim().is_empty() {
            continue;
        }
        if !line.starts_with(char::is_whitespace) {
            if let Some(done) = pending.take() {
                finish(&mut feed, source_name, done);
            }
            match parse_header(line, format) {
                Ok(advisory) => {
                    pending = Some(Pending {
                        line: number,
                        advisory,
                        notes: Vec::new(),
                        error: None,
                    });
                }
                Err(reason) => feed.issues.push(LoadIssue {
                    source: source_name.to_owned(),
                    record: format!("line {number}"),
                    reason,
                }),
            }
            continue;
        }
        let Some(current) = pending.as_mut() else {
            feed.issues.push(LoadIssue {
                source: source_name.to_owned(),
                record: format!("line {number}"),
                reason: "indented line before the first advisory header".to_owned(),
            });
            continue;
        };
        if current.error.is_some() {
            continue;
        }
        if let Err(reason) = parse_body_line(line.trim(), current) {
            current.error = Some(format!("line {number}: {reason}"));
        }
    }
    if let Some(done) = pending.take() {
        finish(&mut feed, source_name, done);
    }
    Ok(feed)
}

fn finish(feed: &mut LoadedFeed, source_name: &str, mut pending: Pending) {
    if let Some(reason) = pending.error {
        feed.issues.push(LoadIssue {
            source: source_name.to_owned(),
            record: format!("{} (line {})", pending.advisory.id, pending.line),
            reason,
        });
        return;
    }
    if !pending.notes.is_empty() {
        let mut map = Map::new();
        map.insert("notes".to_owned(), json!(pending.notes));
        pending.advisory.database_specific = Some(Value::Object(map));
    }
    feed.advisories.push(pending.advisory);
}

fn parse_header(line: &str, format: FeedFormat) -> Result<Advisory, String> {
    let (date, rest) = parse_header_date(line).ok_or_else(|| {
        format!("not an advisory header (expected \"[DD Mon YYYY] DSA-N …\"): {line:?}")
    })?;
    let (id, rest) = rest.split_once(char::is_whitespace).unwrap_or((rest, ""));
    let valid_id = (id.starts_with("DSA-") || id.starts_with("DLA-"))
        && id[4..]
            .split('-')
            .all(|part| !part.is_empty() && part.bytes().all(|b| b.is_ascii_digit()));
    if !valid_id {
        return Err(format!("invalid advisory id {id:?}"));
    }
    let published = date
        .to_zoned(jiff::tz::TimeZone::UTC)
        .map(|z| z.timestamp())
        .unwrap_or(Timestamp::UNIX_EPOCH);
    let title = rest.trim();
    Ok(Advisory {
        id: id.to_owned(),
        aliases: Vec::new(),
        related: Vec::new(),
        summary: (!title.is_empty())
            .then(|| title.split_whitespace().collect::<Vec<_>>().join(" ")),
        details: None,
        published: Some(published),
        modified: None,
        withdrawn: None,
        severity: Vec::new(),
        affected: Vec::new(),
        update_type: UpdateType::Security,
        vendor_severity: None,
        database_specific: None,
        origin: format,
    })
}

fn parse_body_line(line: &str, pending: &mut Pending) -> Result<(), String> {
    if let Some(list) = line.strip_prefix('{') {
        let list = list
            .strip_suffix('}')
            .ok_or_else(|| "CVE list without closing \"}\"".to_owned())?;
        for id in list.split_whitespace() {
            if !id.starts_with("CVE-") && !id.starts_with("TEMP-") {
                return Err(format!("unexpected id {id:?} in the CVE list"));
            }
            pending.advisory.aliases.push(id.to_owned());
        }
        return Ok(());
    }
    if let Some(note) = line.strip_prefix("NOTE:") {
        pending.notes.push(note.trim().to_owned());
        return Ok(());
    }
    if line.starts_with('[') {
        if let Some(affected) = parse_release_line(line)? {
            pending.advisory.affected.push(affected);
        }
        return Ok(());
    }
    Err(format!("unrecognised line {line:?}"))
}

fn parse_release_line(line: &str) -> Result<Option<Affected>, String> {
    let inner = &line[1..];
    let (codename, rest) = inner
        .split_once(']')
        .ok_or_else(|| "release without closing \"]\"".to_owned())?;
    let release = debian_release_of_codename(codename)
        .ok_or_else(|| format!("unknown Debian release {codename:?}"))?;
    let rest = rest
        .trim_start()
        .strip_prefix('-')
        .ok_or_else(|| format!("expected \"[{codename}] - package version\""))?;
    let (main, extra) = match rest.split_once('(') {
        Some((main, extra)) => (main, Some(extra.trim_end().trim_end_matches(')'))),
        None => (rest, None),
    };
    let mut words = main.split_whitespace();
    let (Some(package), Some(state), None) = (words.next(), words.next(), words.next()) else {
        return Err(format!(
            "expected \"[{codename}] - package version\", got {line:?}"
        ));
    };
    let key = EcosystemKey::new(Distro::Debian, release).map_err(|e| e.to_string())?;
    let mut ecosystem_specific = Map::new();
    if let Some(extra) = extra {
        for part in extra.split(';').map(str::trim).filter(|p| !p.is_empty()) {
            if let Some(bug) = part.strip_prefix("bug #") {
                let bugs = ecosystem_specific
                    .entry("bugs")
                    .or_insert_with(|| Value::Array(Vec::new()));
                if let Value::Array(list) = bugs {
                    list.push(Value::String(bug.to_owned()));
                }
            } else if matches!(part, "low" | "medium" | "high" | "unimportant") {
                ecosystem_specific.insert("urgency".to_owned(), Value::String(part.to_owned()));
            } else {
                ecosystem_specific.insert("note".to_owned(), Value::String(part.to_owned()));
            }
        }
    }
    let (events, status) = match state {
        "<not-affected>" | "<removed>" => return Ok(None),
        "<unfixed>" | "<end-of-life>" | "<postponed>" | "<ignored>" => (
            vec![Event::introduced_at_start()],
            Some(state.trim_matches(['<', '>'])),
        ),
        other if other.starts_with('<') => return Err(format!("unknown status {other:?}")),
        version => {
            Version::parse(Scheme::Deb, version)
                .map_err(|e| format!("{package} in {codename}: {e}"))?;
            (
                vec![
                    Event::introduced_at_start(),
                    Event::Fixed(version.to_owned()),
                ],
                None,
            )
        }
    };
    Ok(Some(Affected {
        ecosystem: key.osv_name(),
        key: Some(key),
        package: package.to_owned(),
        ranges: vec![Range {
            kind: RangeKind::Ecosystem,
            events,
        }],
        versions: Vec::new(),
        ecosystem_specific: (!ecosystem_specific.is_empty())
            .then_some(Value::Object(ecosystem_specific)),
        database_specific: status.map(|s| json!({ "status": s })),
    }))
}

#[cfg(test)]
mod tests {
    use super::*;

    const SAMPLE: &str = "\
[29 Mar 2023] DSA-5380-1 xorg-server - security update
\t{CVE-2023-1393}
\t[bullseye] - xorg-server 2:1.20.11-1+deb11u6
\t[buster] - xorg-server <not-affected> (Vulnerable code not present)
\tNOTE: fixed in testing at time of DSA
[17 Mar 2023] DSA-5356-2 sox - regression update
\t[bullseye] - sox 14.4.2+git20190427-2+deb11u2 (bug #1033; medium)
\t[buster] - sox <end-of-life>
[18 Apr 2018] DSA-4205-1 jessie end-of-life
[01 Jan 2003] DSA-200-1 kernel - broken
\t[woody] - kernel-image-2.4.17-ia64 kernel-image-2.4.17-ia64
[02 Jan 2003] DSA-201-1 thing - odd release
\t[hamm] - thing 1.0-1
";

    #[test]
    fn parses_records_and_reports_bad_ones() {
        let feed = parse("DSA-list", SAMPLE).unwrap();
        let ids: Vec<_> = feed.advisories.iter().map(|a| a.id.as_str()).collect();
        assert_eq!(ids, ["DSA-5380-1", "DSA-5356-2", "DSA-4205-1"]);
        assert_eq!(feed.issues.len(), 2, "{:?}", feed.issues);
        assert_eq!(feed.issues[0].record, "DSA-200-1 (line 10)");
        assert!(
            feed.issues[0].reason.contains("line 11"),
            "{}",
            feed.issues[0]
        );
        assert!(
            feed.issues[1]
                .reason
                .contains("unknown Debian release \"hamm\"")
        );

        let xorg = &feed.advisories[0];
        assert_eq!(xorg.aliases, ["CVE-2023-1393"]);
        assert_eq!(xorg.affected.len(), 1, "not-affected releases are left out");
        assert_eq!(xorg.affected[0].ecosystem, "Debian:11");
        assert_eq!(
            xorg.affected[0].ranges[0].events,
            [
                Event::Introduced("0".into()),
                Event::Fixed("2:1.20.11-1+deb11u6".into())
            ]
        );
        assert_eq!(
            xorg.database_specific.as_ref().unwrap()["notes"][0],
            "fixed in testing at time of DSA"
        );
        assert_eq!(xorg.origin, FeedFormat::DebianDsa);

        let sox = &feed.advisories[1];
        assert_eq!(
            sox.affected[0].ecosystem_specific.as_ref().unwrap()["urgency"],
            "medium"
        );
        assert_eq!(sox.affected[1].ecosystem, "Debian:10");
        assert_eq!(
            sox.affected[1].ranges[0].events,
            [Event::Introduced("0".into())]
        );
        assert_eq!(
            sox.affected[1].database_specific.as_ref().unwrap()["status"],
            "end-of-life"
        );
    }

    #[test]
    fn dla_lists_are_recognised() {
        let text = "[10 Feb 2023] DLA-3321-1 gnutls28 - security update\n\t{CVE-2023-0361}\n\t[buster] - gnutls28 3.6.7-4+deb10u10\n";
        let feed = parse("DLA-list", text).unwrap();
        assert_eq!(feed.advisories[0].origin, FeedFormat::DebianDla);
        assert_eq!(feed.advisories[0].affected[0].ecosystem, "Debian:10");
    }

    #[test]
    fn other_text_is_rejected_whole() {
        let err = parse("notes", "hello\n\t[bullseye] - x 1.0\n").unwrap_err();
        assert!(err.to_string().contains("not a Debian DSA/DLA list"));
    }
}
