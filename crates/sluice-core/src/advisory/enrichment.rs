//! Enrichment by CVE id: the CISA Known Exploited Vulnerabilities catalog and FIRST EPSS scores.
//!
//! Neither names packages; both say how likely or certain exploitation is, which prioritisation
//! weighs with the asset. Aliases link advisories to the CVEs these files list.

use std::collections::HashMap;

use jiff::civil::Date;
use serde::{Deserialize, Serialize};

use super::{FeedError, LoadIssue};

/// One KEV entry.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct KevEntry {
    /// The CVE id.
    pub cve: String,
    /// When CISA added it to the catalog.
    pub date_added: Option<Date>,
    /// The remediation due date CISA set for federal agencies.
    pub due_date: Option<Date>,
    /// Whether it is known to be used in ransomware campaigns.
    pub known_ransomware: bool,
    /// CISA's name for the vulnerability.
    pub name: Option<String>,
}

/// The KEV catalog indexed by CVE id.
#[derive(Clone, Debug, Default)]
pub struct Kev {
    /// The catalog's version (`2025.08.25`).
    pub version: Option<String>,
    entries: HashMap<String, KevEntry>,
    /// Entries that were skipped.
    pub issues: Vec<LoadIssue>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct RawCatalog {
    catalog_version: Option<String>,
    vulnerabilities: Vec<serde_json::Value>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct RawKevEntry {
    #[serde(rename = "cveID")]
    cve_id: String,
    vulnerability_name: Option<String>,
    date_added: Option<String>,
    due_date: Option<String>,
    known_ransomware_campaign_use: Option<String>,
}

impl Kev {
    /// Parses the catalog in CISA's JSON or CSV form.
    pub fn parse(source_name: &str, bytes: &[u8]) -> Result<Self, FeedError> {
        let text = std::str::from_utf8(bytes)
            .map_err(|e| FeedError::new(source_name, format!("not UTF-8 text: {e}")))?;
        let trimmed = text.trim_start_matches('\u{feff}').trim_start();
        if trimmed.starts_with('{') {
            Self::parse_json(source_name, trimmed)
        } else if trimmed.starts_with("cveID,") || trimmed.starts_with("\"cveID\",") {
            Self::parse_csv(source_name, trimmed)
        } else {
            Err(FeedError::new(
                source_name,
                "not a CISA KEV catalog: expected its JSON (with \"vulnerabilities\") or its CSV (header starting cveID,vendorProject)",
            ))
        }
    }

    fn parse_json(source_name: &str, text: &str) -> Result<Self, FeedError> {
        let catalog: RawCatalog = serde_json::from_str(text).map_err(|e| {
            FeedError::new(
                source_name,
                format!("not a CISA KEV catalog (JSON with \"vulnerabilities\"): {e}"),
            )
        })?;
        let mut kev = Self {
            version: catalog.catalog_version,
            ..Self::default()
        };
        for (index, value) in catalog.vulnerabilities.into_iter().enumerate() {
            let position = value
                .get("cveID")
                .and_then(|v| v.as_str())
                .map_or_else(|| format!("vulnerabilities[{index}]"), str::to_owned);
            let entry = serde_json::from_value::<RawKevEntry>(value)
                .map_err(|e| format!("not a KEV entry: {e}"))
                .and_then(|raw| {
                    entry_from(
                        raw.cve_id,
                        raw.vulnerability_name,
                        raw.date_added.as_deref(),
                        raw.due_date.as_deref(),
                        raw.known_ransomware_campaign_use.as_deref(),
                    )
                });
            kev.push(source_name, position, entry);
        }
        Ok(kev)
    }

    fn parse_csv(source_name: &str, text: &str) -> Result<Self, FeedError> {
        let mut reader = csv::ReaderBuilder::new()
            .flexible(false)
            .from_reader(text.as_bytes());
        let headers = reader
            .headers()
            .map_err(|e| FeedError::new(source_name, format!("unreadable CSV header: {e}")))?
            .clone();
        let column = |name: &str| headers.iter().position(|h| h == name);
        let Some(cve_column) = column("cveID") else {
            return Err(FeedError::new(source_name, "KEV CSV has no cveID column"));
        };
        let (name_column, added_column, due_column, ransomware_column) = (
            column("vulnerabilityName"),
            column("dateAdded"),
            column("dueDate"),
            column("knownRansomwareCampaignUse"),
        );
        let mut kev = Self::default();
        for (index, record) in reader.records().enumerate() {
            let position = format!("row {}", index + 2);
            let entry = match record {
                Err(e) => Err(format!("unreadable row: {e}")),
                Ok(row) => {
                    let get =
                        |c: Option<usize>| c.and_then(|c| row.get(c)).filter(|v| !v.is_empty());
                    entry_from(
                        get(Some(cve_column)).unwrap_or_default().to_owned(),
                        get(name_column).map(str::to_owned),
                        get(added_column),
                        get(due_column),
                        get(ransomware_column),
                    )
                }
            };
            kev.push(source_name, position, entry);
        }
        Ok(kev)
    }

    fn push(&mut self, source_name: &str, position: String, entry: Result<KevEntry, String>) {
        match entry {
            Ok(entry) => {
                self.entries.insert(entry.cve.clone(), entry);
            }
            Err(reason) => self.issues.push(LoadIssue {
                source: source_name.to_owned(),
                record: position,
                reason,
            }),
        }
    }

    /// The entry for a CVE id, if the catalog lists it.
    pub fn get(&self, cve: &str) -> Option<&KevEntry> {
        self.entries.get(cve)
    }

    /// How many CVEs the catalog lists.
    pub fn len(&self) -> usize {
        self.entries.len()
    }

    /// Whether the catalog is empty.
    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }
}

fn entry_from(
    cve: String,
    name: Option<String>,
    date_added: Option<&str>,
    due_date: Option<&str>,
    ransomware: Option<&str>,
) -> Result<KevEntry, String> {
    if !is_cve_id(&cve) {
        return Err(format!("invalid cveID {cve:?}"));
    }
    let date = |field: &str, text: Option<&str>| {
        text.map(|t| {
            t.parse::<Date>()
                .map_err(|e| format!("{field} {t:?} is not a date: {e}"))
        })
        .transpose()
    };
    Ok(KevEntry {
        date_added: date("dateAdded", date_added)?,
        due_date: date("dueDate", due_date)?,
        known_ransomware: ransomware.is_some_and(|r| r.eq_ignore_ascii_case("known")),
        name,
        cve,
    })
}

fn is_cve_id(text: &str) -> bool {
    let Some(rest) = text.strip_prefix("CVE-") else {
        return false;
    };
    let Some((year, number)) = rest.split_once('-') else {
        return false;
    };
    year.len() == 4
        && number.len() >= 4
        && year
            .bytes()
            .chain(number.bytes())
            .all(|b| b.is_ascii_digit())
}

/// One EPSS score.
#[derive(Clone, Copy, Debug, PartialEq, Serialize, Deserialize)]
pub struct EpssScore {
    /// Probability of exploitation activity in the next 30 days, 0 to 1.
    pub probability: f64,
    /// Percentile among all scored CVEs, 0 to 1.
    pub percentile: f64,
}

/// FIRST EPSS scores indexed by CVE id.
#[derive(Clone, Debug, Default)]
pub struct Epss {
    /// The model version from the leading comment line.
    pub model_version: Option<String>,
    /// The score date from the leading comment line.
    pub score_date: Option<String>,
    scores: HashMap<String, EpssScore>,
    /// Rows that were skipped.
    pub issues: Vec<LoadIssue>,
}

impl Epss {
    /// Parses FIRST's CSV: an optional `#model_version:…,score_date:…` line, then
    /// `cve,epss,percentile`.
    pub fn parse(source_name: &str, bytes: &[u8]) -> Result<Self, FeedError> {
        let text = std::str::from_utf8(bytes)
            .map_err(|e| FeedError::new(source_name, format!("not UTF-8 text: {e}")))?;
        let mut epss = Self::default();
        let mut lines = text.lines().enumerate().peekable();
        if let Some((_, first)) = lines.peek()
            && let Some(comment) = first.strip_prefix('#')
        {
            for part in comment.split(',') {
                match part.split_once(':') {
                    Some(("model_version", v)) => epss.model_version = Some(v.trim().to_owned()),
                    Some(("score_date", v)) => epss.score_date = Some(v.trim().to_owned()),
                    _ => {}
                }
            }
            lines.next();
        }
        match lines.next() {
            Some((_, header)) if header.trim().starts_with("cve,epss") => {}
            Some((index, header)) => {
                return Err(FeedError::new(
                    source_name,
                    format!(
                        "not a FIRST EPSS CSV: line {} should be the header \"cve,epss,percentile\", got {:?}",
                        index + 1,
                        header.chars().take(60).collect::<String>()
                    ),
                ));
            }
            None => {
                return Err(FeedError::new(
                    source_name,
                    "not a FIRST EPSS CSV: no header line",
                ));
            }
        }
        for (index, line) in lines {
            if line.trim().is_empty() {
                continue;
            }
            let mut fields = line.trim().split(',');
            let row = (fields.next(), fields.next(), fields.next(), fields.next());
            let parsed = match row {
                (Some(cve), Some(p), Some(q), None) if is_cve_id(cve) => {
                    match (p.parse::<f64>(), q.parse::<f64>()) {
                        (Ok(p), Ok(q)) if (0.0..=1.0).contains(&p) && (0.0..=1.0).contains(&q) => {
                            Ok((cve, p, q))
                        }
                        _ => Err(format!(
                            "epss and percentile must be numbers from 0 to 1: {line:?}"
                        )),
                    }
                }
                _ => Err(format!("expected \"CVE-YYYY-N,epss,percentile\": {line:?}")),
            };
            match parsed {
                Ok((cve, probability, percentile)) => {
                    epss.scores.insert(
                        cve.to_owned(),
                        EpssScore {
                            probability,
                            percentile,
                        },
                    );
                }
                Err(reason) => epss.issues.push(LoadIssue {
                    source: source_name.to_owned(),
                    record: format!("line {}", index + 1),
                    reason,
                }),
            }
        }
        Ok(epss)
    }

    /// The score of a CVE id, if scored.
    pub fn get(&self, cve: &str) -> Option<EpssScore> {
        self.scores.get(cve).copied()
    }

    /// How many CVEs are scored.
    pub fn len(&self) -> usize {
        self.scores.len()
    }

    /// Whether no CVE is scored.
    pub fn is_empty(&self) -> bool {
        self.scores.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn kev_json_and_csv() {
        let json = br#"{"catalogVersion":"2025.08.25","vulnerabilities":[
            {"cveID":"CVE-2025-48384","vulnerabilityName":"Git Link Following","dateAdded":"2025-08-25","dueDate":"2025-09-15","knownRansomwareCampaignUse":"Known"},
            {"cveID":"not-a-cve"},
            {"vendorProject":"x"}]}"#;
        let kev = Kev::parse("kev.json", json).unwrap();
        assert_eq!(kev.len(), 1);
        let entry = kev.get("CVE-2025-48384").unwrap();
        assert!(entry.known_ransomware);
        assert_eq!(entry.due_date, Some(jiff::civil::date(2025, 9, 15)));
        assert_eq!(kev.issues.len(), 2);
        assert_eq!(kev.issues[0].record, "not-a-cve");
        assert_eq!(kev.issues[1].record, "vulnerabilities[2]");

        let csv = "cveID,vendorProject,product,vulnerabilityName,dateAdded,shortDescription,requiredAction,dueDate,knownRansomwareCampaignUse,notes,cwes\nCVE-2024-0001,a,b,c,2024-01-02,d,e,2024-01-23,Unknown,,\nCVE-2024-0002,a,b,c,soon,d,e,2024-01-23,Unknown,,\n";
        let kev = Kev::parse("kev.csv", csv.as_bytes()).unwrap();
        assert!(kev.get("CVE-2024-0001").is_some());
        assert_eq!(kev.issues[0].record, "row 3");
        assert!(kev.issues[0].reason.contains("dateAdded"));

        assert!(Kev::parse("x", b"[1,2]").is_err());
    }

    #[test]
    fn epss_with_its_comment_line() {
        let text = "#model_version:v2026.06.15,score_date:2026-09-29T12:00:22Z\ncve,epss,percentile\nCVE-1999-0001,0.03351,0.88255\nCVE-1999-0002,1.5,0.9\nbad\n";
        let epss = Epss::parse("epss.csv", text.as_bytes()).unwrap();
        assert_eq!(epss.model_version.as_deref(), Some("v2026.06.15"));
        assert_eq!(epss.get("CVE-1999-0001").unwrap().probability, 0.03351);
        assert_eq!(epss.issues.len(), 2);
        assert_eq!(epss.issues[0].record, "line 4");
        let err = Epss::parse("epss.csv", b"a,b,c\n1,2,3\n").unwrap_err();
        assert!(err.to_string().contains("line 1"), "{err}");
    }
}
