//! OSV JSON (schema 1.6 and later): single records, arrays of records, and zip archives as
//! osv.dev ships an ecosystem.
//!
//! Records are validated as they are converted: ids present, events with exactly one kind,
//! timestamps in RFC 3339, and every version in an ECOSYSTEM range valid in the ecosystem's own
//! order (a version Sluice cannot order would otherwise be matched wrongly in silence).

use std::io::{Cursor, Read};

use jiff::Timestamp;
use serde::Deserialize;
use serde_json::Value;

use super::{
    Advisory, Affected, Event, FeedError, FeedFormat, LoadIssue, LoadedFeed, Range, RangeKind,
    SeverityVector, UpdateType, VendorSeverity,
};
use crate::ecosystem::EcosystemKey;
use crate::version::Version;

#[derive(Deserialize)]
struct RawRecord {
    id: Option<String>,
    #[serde(default)]
    aliases: Option<Vec<String>>,
    #[serde(default)]
    related: Option<Vec<String>>,
    summary: Option<String>,
    details: Option<String>,
    published: Option<String>,
    modified: Option<String>,
    withdrawn: Option<String>,
    #[serde(default)]
    severity: Option<Vec<RawSeverity>>,
    #[serde(default)]
    affected: Option<Vec<RawAffected>>,
    database_specific: Option<Value>,
}

#[derive(Deserialize)]
struct RawSeverity {
    #[serde(rename = "type")]
    kind: String,
    score: String,
}

#[derive(Deserialize)]
struct RawAffected {
    package: Option<RawPackage>,
    #[serde(default)]
    ranges: Option<Vec<RawRange>>,
    #[serde(default)]
    versions: Option<Vec<String>>,
    ecosystem_specific: Option<Value>,
    database_specific: Option<Value>,
}

#[derive(Deserialize)]
struct RawPackage {
    ecosystem: String,
    name: String,
}

#[derive(Deserialize)]
struct RawRange {
    #[serde(rename = "type")]
    kind: String,
    #[serde(default)]
    events: Vec<serde_json::Map<String, Value>>,
}

/// Parses one OSV record or a JSON array of records.
pub fn parse_json(source_name: &str, bytes: &[u8]) -> Result<LoadedFeed, FeedError> {
    let value: Value = serde_json::from_slice(bytes)
        .map_err(|e| FeedError::new(source_name, format!("not valid JSON: {e}")))?;
    let mut feed = LoadedFeed::default();
    match value {
        Value::Array(items) => {
            for (index, item) in items.into_iter().enumerate() {
                let position = format!("record {}", index + 1);
                push_record(&mut feed, source_name, &position, convert_value(item));
            }
        }
        Value::Object(ref map) => {
            if !map.contains_key("id") && !map.contains_key("affected") {
                return Err(FeedError::new(
                    source_name,
                    "a JSON object that is not an OSV record (it has neither \"id\" nor \"affected\")",
                ));
            }
            push_record(&mut feed, source_name, "record 1", convert_value(value));
        }
        _ => {
            return Err(FeedError::new(
                source_name,
                "not an OSV record: expected a JSON object or an array of objects",
            ));
        }
    }
    Ok(feed)
}

/// Parses a zip archive of OSV JSON records, one record per `.json` entry.
pub fn parse_zip(
    source_name: &str,
    bytes: &[u8],
    progress: &mut dyn FnMut(usize, usize),
) -> Result<LoadedFeed, FeedError> {
    let mut archive = zip::ZipArchive::new(Cursor::new(bytes))
        .map_err(|e| FeedError::new(source_name, format!("not a readable zip archive: {e}")))?;
    let total = archive.len();
    let mut feed = LoadedFeed::default();
    let mut buffer = Vec::new();
    for index in 0..total {
        progress(index, total);
        let mut entry = match archive.by_index(index) {
            Ok(entry) => entry,
            Err(e) => {
                feed.issues.push(LoadIssue {
                    source: source_name.to_owned(),
                    record: format!("entry {}", index + 1),
                    reason: format!("unreadable zip entry: {e}"),
                });
                continue;
            }
        };
        let name = match entry.name() {
            Ok(name) => name.into_owned(),
            Err(e) => {
                feed.issues.push(LoadIssue {
                    source: source_name.to_owned(),
                    record: format!("entry {}", index + 1),
                    reason: format!("unreadable entry name: {e}"),
                });
                continue;
            }
        };
        if entry.is_dir() || !name.ends_with(".json") {
            continue;
        }
        buffer.clear();
        let entry_source = format!("{source_name}:{name}");
        if let Err(e) = entry.read_to_end(&mut buffer) {
            feed.issues.push(LoadIssue {
                source: entry_source,
                record: name,
                reason: format!("cannot decompress: {e}"),
            });
            continue;
        }
        let result = match serde_json::from_slice::<RawRecord>(&buffer) {
            Ok(raw) => convert(raw),
            Err(e) => Err((
                record_id_of(&buffer),
                format!("not a valid OSV record: {e}"),
            )),
        };
        push_record(&mut feed, &entry_source, &name, result);
    }
    progress(total, total);
    Ok(feed)
}

type Converted = Result<Advisory, (Option<String>, String)>;

fn push_record(feed: &mut LoadedFeed, source: &str, position: &str, result: Converted) {
    match result {
        Ok(advisory) => feed.advisories.push(advisory),
        Err((id, reason)) => feed.issues.push(LoadIssue {
            source: source.to_owned(),
            record: id.unwrap_or_else(|| position.to_owned()),
            reason,
        }),
    }
}

fn record_id_of(bytes: &[u8]) -> Option<String> {
    let value: Value = serde_json::from_slice(bytes).ok()?;
    value.get("id")?.as_str().map(str::to_owned)
}

fn convert_value(value: Value) -> Converted {
    let id = value.get("id").and_then(Value::as_str).map(str::to_owned);
    match serde_json::from_value::<RawRecord>(value) {
        Ok(raw) => convert(raw),
        Err(e) => Err((id, format!("not a valid OSV record: {e}"))),
    }
}

fn convert(raw: RawRecord) -> Converted {
    let id = match raw.id {
        Some(id) if !id.trim().is_empty() => id,
        _ => return Err((None, "missing \"id\"".to_owned())),
    };
    let fail = |reason: String| (Some(id.clone()), reason);
    let timestamp = |field: &str, text: Option<String>| -> Result<Option<Timestamp>, String> {
        text.map(|t| {
            t.parse::<Timestamp>()
                .map_err(|e| format!("\"{field}\" is not an RFC 3339 time ({t:?}): {e}"))
        })
        .transpose()
    };
    let published = timestamp("published", raw.published).map_err(fail)?;
    let modified = timestamp("modified", raw.modified).map_err(fail)?;
    let withdrawn = timestamp("withdrawn", raw.withdrawn).map_err(fail)?;

    let mut affected = Vec::new();
    for (index, raw_affected) in raw.affected.unwrap_or_default().into_iter().enumerate() {
        affected.push(convert_affected(index, raw_affected).map_err(fail)?);
    }

    let update_type = raw
        .database_specific
        .as_ref()
        .and_then(update_type_from_database_specific)
        .or_else(|| UpdateType::from_advisory_id(&id))
        .unwrap_or(UpdateType::Security);
    let vendor_severity = raw
        .summary
        .as_deref()
        .and_then(VendorSeverity::from_summary);
    Ok(Advisory {
        aliases: raw.aliases.unwrap_or_default(),
        related: raw.related.unwrap_or_default(),
        summary: raw.summary,
        details: raw.details,
        published,
        modified,
        withdrawn,
        severity: raw
            .severity
            .unwrap_or_default()
            .into_iter()
            .map(|s| SeverityVector {
                kind: s.kind,
                score: s.score,
            })
            .collect(),
        affected,
        update_type,
        vendor_severity,
        database_specific: raw.database_specific,
        origin: FeedFormat::Osv,
        id,
    })
}

fn update_type_from_database_specific(value: &Value) -> Option<UpdateType> {
    ["update_type", "type", "category", "advisory_type"]
        .iter()
        .filter_map(|key| value.get(key)?.as_str())
        .find_map(UpdateType::from_word)
}

fn convert_affected(index: usize, raw: RawAffected) -> Result<Affected, String> {
    let at = format!("affected[{index}]");
    let package = raw
        .package
        .ok_or_else(|| format!("{at}: missing \"package\" (ecosystem and name)"))?;
    if package.name.trim().is_empty() {
        return Err(format!("{at}: empty package name"));
    }
    let key = EcosystemKey::from_osv(&package.ecosystem)
        .map_err(|e| format!("{at} ({}): {e}", package.name))?;
    let mut ranges = Vec::new();
    for (range_index, raw_range) in raw.ranges.unwrap_or_default().into_iter().enumerate() {
        let range_at = format!("{at}.ranges[{range_index}]");
        let kind = match raw_range.kind.as_str() {
            "ECOSYSTEM" => RangeKind::Ecosystem,
            "SEMVER" => RangeKind::Semver,
            "GIT" => RangeKind::Git,
            other => return Err(format!("{range_at}: unknown range type {other:?}")),
        };
        let mut events = Vec::new();
        for (event_index, map) in raw_range.events.into_iter().enumerate() {
            let event_at = format!("{range_at}.events[{event_index}]");
            let mut entries = map.into_iter();
            let (name, value) = match (entries.next(), entries.next()) {
                (Some(entry), None) => entry,
                _ => return Err(format!("{event_at}: an event must have exactly one field")),
            };
            let version = value
                .as_str()
                .ok_or_else(|| format!("{event_at}: {name:?} must be a string"))?
                .to_owned();
            let event = match name.as_str() {
                "introduced" => Event::Introduced(version),
                "fixed" => Event::Fixed(version),
                "last_affected" => Event::LastAffected(version),
                "limit" => Event::Limit(version),
                other => return Err(format!("{event_at}: unknown event {other:?}")),
            };
            if let (Some(key), RangeKind::Ecosystem) = (&key, kind) {
                // OSV's sentinels ("introduced": "0", a "limit" with "*") are not versions.
                if !event.is_start() && !event.is_unlimited() {
                    Version::parse(key.scheme(), event.version()).map_err(|e| {
                        format!("{event_at} ({} {}): {e}", package.ecosystem, package.name)
                    })?;
                }
            }
            events.push(event);
        }
        if kind == RangeKind::Ecosystem && !events.iter().any(|e| matches!(e, Event::Introduced(_)))
        {
            return Err(format!("{range_at}: no \"introduced\" event"));
        }
        ranges.push(Range { kind, events });
    }
    let versions = raw.versions.unwrap_or_default();
    if let Some(key) = &key {
        for version in &versions {
            Version::parse(key.scheme(), version).map_err(|e| {
                format!(
                    "{at}.versions ({} {}): {e}",
                    package.ecosystem, package.name
                )
            })?;
        }
    }
    Ok(Affected {
        ecosystem: package.ecosystem,
        key,
        package: package.name,
        ranges,
        versions,
        ecosystem_specific: raw.ecosystem_specific,
        database_specific: raw.database_specific,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    const DSA: &str = r#"{
      "id": "DSA-3029-1", "summary": "nginx - security update",
      "affected": [{"package": {"ecosystem": "Debian:7", "name": "nginx"},
        "ranges": [{"type": "ECOSYSTEM", "events": [{"introduced": "0"}, {"fixed": "1.2.1-2.2+wheezy3"}]}]}],
      "aliases": ["CVE-2014-3616"], "published": "2014-09-20T00:00:00Z"
    }"#;

    #[test]
    fn one_record_converts() {
        let feed = parse_json("dsa.json", DSA.as_bytes()).unwrap();
        assert!(feed.issues.is_empty(), "{:?}", feed.issues);
        let advisory = &feed.advisories[0];
        assert_eq!(advisory.id, "DSA-3029-1");
        assert_eq!(advisory.cves().collect::<Vec<_>>(), ["CVE-2014-3616"]);
        assert_eq!(advisory.update_type, UpdateType::Security);
        let affected = &advisory.affected[0];
        assert_eq!(affected.key.as_ref().unwrap().osv_name(), "Debian:7");
        assert_eq!(
            affected.ranges[0].events[1],
            Event::Fixed("1.2.1-2.2+wheezy3".into())
        );
    }

    #[test]
    fn a_bad_record_in_an_array_is_skipped_and_named() {
        let bad_version = DSA
            .replace("DSA-3029-1", "DSA-BAD-1")
            .replace("1.2.1-2.2+wheezy3", "1.2 beta");
        let text = format!("[{DSA}, {bad_version}, {{\"affected\": []}}]");
        let feed = parse_json("list.json", text.as_bytes()).unwrap();
        assert_eq!(feed.advisories.len(), 1);
        assert_eq!(feed.issues.len(), 2);
        assert_eq!(feed.issues[0].record, "DSA-BAD-1");
        assert!(
            feed.issues[0].reason.contains("events[1]"),
            "{}",
            feed.issues[0]
        );
        assert!(
            feed.issues[0].reason.contains("1.2 beta"),
            "{}",
            feed.issues[0]
        );
        assert_eq!(feed.issues[1].record, "record 3");
        assert!(feed.issues[1].reason.contains("missing \"id\""));
    }

    #[test]
    fn events_must_be_well_formed() {
        let two_keys = DSA.replace(
            r#"{"introduced": "0"}"#,
            r#"{"introduced": "0", "fixed": "1"}"#,
        );
        let feed = parse_json("x.json", two_keys.as_bytes()).unwrap();
        assert!(feed.issues[0].reason.contains("exactly one field"));
        let unknown = DSA.replace(
            r#"{"introduced": "0"}"#,
            r#"{"introduced": "0"}, {"broken": "1"}"#,
        );
        let feed = parse_json("x.json", unknown.as_bytes()).unwrap();
        assert!(feed.issues[0].reason.contains("unknown event \"broken\""));
        let bad_time = DSA.replace("2014-09-20T00:00:00Z", "20/09/2014");
        let feed = parse_json("x.json", bad_time.as_bytes()).unwrap();
        assert!(feed.issues[0].reason.contains("published"));
    }

    #[test]
    fn not_json_is_an_error_for_the_whole_input() {
        let err = parse_json("feed.json", b"{ not json").unwrap_err();
        assert!(
            err.to_string().starts_with("feed.json: not valid JSON"),
            "{err}"
        );
        let err = parse_json("feed.json", b"{\"name\": \"x\"}").unwrap_err();
        assert!(err.to_string().contains("not an OSV record"), "{err}");
    }

    #[test]
    fn withdrawn_and_database_specific_are_kept() {
        let text = DSA.replace(
            "\"published\"",
            "\"withdrawn\": \"2020-01-01T00:00:00Z\", \"database_specific\": {\"type\": \"bugfix\"}, \"published\"",
        );
        let feed = parse_json("x.json", text.as_bytes()).unwrap();
        let advisory = &feed.advisories[0];
        assert!(advisory.withdrawn.is_some());
        assert_eq!(advisory.update_type, UpdateType::Bugfix);
        assert!(advisory.database_specific.is_some());
    }
}
