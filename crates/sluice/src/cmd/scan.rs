//! `sluice scan`: one host's packages against advisory feeds, offline, prioritised.
//!
//! This module does the I/O (files, directories, the local package database, the clock, the
//! terminal) and leaves every judgement to `sluice-core`.

use std::io::{IsTerminal, Write};
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::Duration;

use anyhow::{Context, Result, bail};
use clap::ValueEnum;
use indicatif::{ProgressBar, ProgressStyle};
use jiff::civil::Date;
use serde::Serialize;
use sluice_core::advisory::{self, Epss, Kev, LoadIssue, LoadedFeed};
use sluice_core::asset::{ASSET_KEYS, AssetProfile};
use sluice_core::ecosystem::EcosystemKey;
use sluice_core::finding::{self, Finding, ScanSummary};
use sluice_core::inventory::{InstalledPackage, OsRelease, dpkg, rpm};
use sluice_core::matching::AdvisoryIndex;
use sluice_core::priority::PriorityPolicy;

/// Arguments of `sluice scan`.
#[derive(Debug, clap::Args)]
#[command(
    after_help = "With neither --status nor --rpm-qa, scans the machine it runs on (/var/lib/dpkg/status, else `rpm -qa`, and /etc/os-release).\n\nExit status: 0 when the scan ran (whatever it found), 2 on a usage or input error."
)]
pub struct ScanArgs {
    /// A dpkg status file (e.g. a copy of /var/lib/dpkg/status).
    #[arg(long, value_name = "FILE", conflicts_with = "rpm_qa")]
    status: Option<PathBuf>,
    /// Output of `rpm -qa --queryformat '%{NAME} %{EPOCHNUM}:%{VERSION}-%{RELEASE} %{ARCH}\n'`.
    #[arg(long = "rpm-qa", value_name = "FILE")]
    rpm_qa: Option<PathBuf>,
    /// The host's os-release file; chooses the ecosystem.
    #[arg(long = "os-release", value_name = "FILE", conflicts_with = "ecosystem")]
    os_release: Option<PathBuf>,
    /// The ecosystem by OSV name, e.g. `Debian:12`, `Ubuntu:22.04`, `AlmaLinux:8`.
    #[arg(long, value_name = "NAME")]
    ecosystem: Option<String>,
    /// Advisory feeds: OSV JSON files, directories or zips; Debian DSA/DLA lists. Repeatable.
    #[arg(long, value_name = "PATH", required = true, num_args = 1.., action = clap::ArgAction::Append)]
    feed: Vec<PathBuf>,
    /// CISA Known Exploited Vulnerabilities catalog (JSON or CSV).
    #[arg(long, value_name = "FILE")]
    kev: Option<PathBuf>,
    /// FIRST EPSS scores (CSV).
    #[arg(long, value_name = "FILE")]
    epss: Option<PathBuf>,
    /// Asset attributes as KEY=VALUE, e.g. `criticality=5 exposure=internet data=pci`.
    #[arg(long, value_name = "KEY=VALUE", num_args = 1.., action = clap::ArgAction::Append)]
    asset: Vec<String>,
    /// Due-date tier policy (TOML); the documented defaults apply without it.
    #[arg(long, value_name = "FILE")]
    policy: Option<PathBuf>,
    /// The day findings are detected on, for due dates (default: today).
    #[arg(long = "as-of", value_name = "YYYY-MM-DD")]
    as_of: Option<Date>,
    /// Output format.
    #[arg(long, value_enum, default_value_t = Output::Table)]
    output: Output,
    /// Show at most this many findings in the table (all by default).
    #[arg(long, value_name = "N")]
    top: Option<usize>,
}

/// Output formats.
#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
enum Output {
    /// Aligned columns for people, sorted by priority, with a summary line.
    Table,
    /// One JSON object: `findings`, `summary`, `feeds`, `skipped_records`.
    Json,
    /// One row per finding.
    Csv,
}

/// What one feed path contributed, for the report.
#[derive(Debug, Serialize)]
struct FeedReport {
    path: String,
    advisories: usize,
    skipped: usize,
}

#[derive(Serialize)]
struct JsonReport<'a> {
    host: &'a AssetProfile,
    findings: &'a [Finding],
    summary: &'a ScanSummary,
    feeds: &'a [FeedReport],
    skipped_records: &'a [LoadIssue],
}

/// Runs `sluice scan`.
pub fn run(args: ScanArgs) -> Result<ExitCode> {
    let mut asset = AssetProfile::default();
    for pair in &args.asset {
        asset
            .set_pair(pair)
            .with_context(|| format!("--asset {pair}: known attributes are {ASSET_KEYS}"))?;
    }
    let policy = match &args.policy {
        Some(path) => PriorityPolicy::from_toml(&read_text(path)?)
            .with_context(|| format!("--policy {}", path.display()))?,
        None => PriorityPolicy::default(),
    };
    let (ecosystem, packages) = read_host(&args)?;
    let detected = match args.as_of {
        Some(date) => date,
        None => jiff::Zoned::now().date(),
    };

    let kev = args
        .kev
        .as_deref()
        .map(|path| {
            Kev::parse(&path.display().to_string(), &read_bytes(path)?).map_err(anyhow::Error::from)
        })
        .transpose()?;
    let epss = args
        .epss
        .as_deref()
        .map(|path| {
            Epss::parse(&path.display().to_string(), &read_bytes(path)?)
                .map_err(anyhow::Error::from)
        })
        .transpose()?;

    let (feed, feed_reports) = load_feeds(&args.feed)?;
    let mut skipped = feed.issues;
    let index = AdvisoryIndex::build(feed.advisories, kev.as_ref(), epss.as_ref());
    skipped.extend(index.issues.iter().cloned());
    skipped.extend(kev.iter().flat_map(|k| k.issues.iter().cloned()));
    skipped.extend(epss.iter().flat_map(|e| e.issues.iter().cloned()));
    report_skipped(&skipped);
    if !index.ecosystems().any(|e| *e == ecosystem) {
        let mut known: Vec<String> = index.ecosystems().map(EcosystemKey::osv_name).collect();
        known.sort();
        eprintln!(
            "sluice: warning: no advisory in the feeds is for {ecosystem} (they cover: {}); nothing can match",
            if known.is_empty() {
                "nothing".to_owned()
            } else {
                known.join(", ")
            }
        );
    }

    let (findings, summary) =
        finding::scan_host(&index, &ecosystem, &packages, &asset, &policy, detected);
    let stdout = std::io::stdout();
    let mut out = std::io::BufWriter::new(stdout.lock());
    match args.output {
        Output::Json => {
            let report = JsonReport {
                host: &asset,
                findings: &findings,
                summary: &summary,
                feeds: &feed_reports,
                skipped_records: &skipped,
            };
            serde_json::to_writer_pretty(&mut out, &report)?;
            writeln!(out)?;
        }
        Output::Csv => write_csv(&mut out, &findings)?,
        Output::Table => write_table(&mut out, &findings, &summary, args.top)?,
    }
    out.flush()?;
    Ok(ExitCode::SUCCESS)
}

fn read_bytes(path: &Path) -> Result<Vec<u8>> {
    std::fs::read(path).with_context(|| format!("cannot read {}", path.display()))
}

fn read_text(path: &Path) -> Result<String> {
    let bytes = read_bytes(path)?;
    String::from_utf8(bytes).with_context(|| format!("{} is not UTF-8 text", path.display()))
}

/// The host's ecosystem and installed packages, from the given files or from this machine.
fn read_host(args: &ScanArgs) -> Result<(EcosystemKey, Vec<InstalledPackage>)> {
    let local = args.status.is_none() && args.rpm_qa.is_none();
    let packages = if let Some(path) = &args.status {
        dpkg::parse_status(&path.display().to_string(), &read_text(path)?)?
    } else if let Some(path) = &args.rpm_qa {
        rpm::parse_qa(&path.display().to_string(), &read_text(path)?)?
    } else {
        local_packages()?
    };
    let ecosystem = if let Some(name) = &args.ecosystem {
        name.parse::<EcosystemKey>()
            .with_context(|| format!("--ecosystem {name}"))?
    } else {
        let path = match &args.os_release {
            Some(path) => path.clone(),
            None if local => local_os_release()?,
            None => bail!(
                "which release is this inventory from? Give --os-release FILE or --ecosystem NAME (e.g. Debian:12, AlmaLinux:8)"
            ),
        };
        let os = OsRelease::parse(&path.display().to_string(), &read_text(&path)?)?;
        os.ecosystem()
            .with_context(|| format!("{}: cannot choose an ecosystem", path.display()))?
    };
    let rpm_inventory = args.rpm_qa.is_some();
    let rpm_ecosystem = ecosystem.scheme() == sluice_core::version::Scheme::Rpm;
    if !local && rpm_inventory != rpm_ecosystem {
        bail!(
            "the inventory is {} but the ecosystem {ecosystem} uses {} packages",
            if rpm_inventory {
                "rpm -qa output"
            } else {
                "a dpkg status file"
            },
            if rpm_ecosystem { "RPM" } else { "Debian" }
        );
    }
    Ok((ecosystem, packages))
}

fn local_packages() -> Result<Vec<InstalledPackage>> {
    let status = Path::new("/var/lib/dpkg/status");
    if status.exists() {
        return Ok(dpkg::parse_status(
            &status.display().to_string(),
            &read_text(status)?,
        )?);
    }
    let output = std::process::Command::new("rpm")
        .args(["-qa", "--queryformat", "%{NAME} %{EPOCHNUM}:%{VERSION}-%{RELEASE} %{ARCH}\\n"])
        .output()
        .context("this machine has no /var/lib/dpkg/status and `rpm -qa` could not run; give --status or --rpm-qa")?;
    if !output.status.success() {
        bail!(
            "`rpm -qa` failed: {}",
            String::from_utf8_lossy(&output.stderr).trim()
        );
    }
    Ok(rpm::parse_qa(
        "rpm -qa",
        &String::from_utf8_lossy(&output.stdout),
    )?)
}

fn local_os_release() -> Result<PathBuf> {
    ["/etc/os-release", "/usr/lib/os-release"]
        .iter()
        .map(PathBuf::from)
        .find(|p| p.exists())
        .context("this machine has no /etc/os-release; give --os-release FILE or --ecosystem NAME")
}

/// Loads every feed path; a file that is not a feed fails the whole scan, a bad record does not.
fn load_feeds(paths: &[PathBuf]) -> Result<(LoadedFeed, Vec<FeedReport>)> {
    // (path, inside a directory): in a directory of records, a file that is not a record is one
    // malformed record; given by itself, it is an input error.
    let mut files: Vec<(PathBuf, bool)> = Vec::new();
    for path in paths {
        if path.is_dir() {
            let mut found = Vec::new();
            collect_dir(path, &mut found)?;
            if found.is_empty() {
                bail!(
                    "--feed {}: the directory holds no .json or .zip files",
                    path.display()
                );
            }
            files.extend(found.into_iter().map(|f| (f, true)));
        } else {
            files.push((path.clone(), false));
        }
    }
    let bar = progress_bar(files.len() as u64);
    let mut total = LoadedFeed::default();
    let mut reports = Vec::new();
    for (path, in_directory) in &files {
        let name = path.display().to_string();
        bar.set_message(name.clone());
        let bytes = read_bytes(path)?;
        let zip_bar = bar.clone();
        let parsed = advisory::parse_feed_with_progress(&name, &bytes, &mut |done, all| {
            if all > 1 && done % 64 == 0 {
                zip_bar.set_message(format!("{name} ({done}/{all})"));
            }
        });
        let loaded = match parsed {
            Ok(loaded) => loaded,
            Err(e) if *in_directory => LoadedFeed {
                advisories: Vec::new(),
                issues: vec![LoadIssue {
                    source: name.clone(),
                    record: "file".to_owned(),
                    reason: e.reason,
                }],
            },
            Err(e) => return Err(e.into()),
        };
        reports.push(FeedReport {
            path: name,
            advisories: loaded.advisories.len(),
            skipped: loaded.issues.len(),
        });
        total.extend(loaded);
        bar.inc(1);
    }
    bar.finish_and_clear();
    Ok((total, reports))
}

fn collect_dir(dir: &Path, files: &mut Vec<PathBuf>) -> Result<()> {
    let mut entries: Vec<PathBuf> = std::fs::read_dir(dir)
        .with_context(|| format!("cannot read directory {}", dir.display()))?
        .map(|entry| entry.map(|e| e.path()))
        .collect::<std::io::Result<_>>()
        .with_context(|| format!("cannot read directory {}", dir.display()))?;
    entries.sort();
    for path in entries {
        if path.is_dir() {
            collect_dir(&path, files)?;
        } else if path
            .extension()
            .is_some_and(|e| e.eq_ignore_ascii_case("json") || e.eq_ignore_ascii_case("zip"))
        {
            files.push(path);
        }
    }
    Ok(())
}

fn progress_bar(len: u64) -> ProgressBar {
    if !std::io::stderr().is_terminal() {
        return ProgressBar::hidden();
    }
    let bar = ProgressBar::new(len);
    if let Ok(style) =
        ProgressStyle::with_template("{spinner} loading feeds [{bar:30}] {pos}/{len} {wide_msg}")
    {
        bar.set_style(style.progress_chars("=> "));
    }
    bar.enable_steady_tick(Duration::from_millis(100));
    bar
}

fn report_skipped(skipped: &[LoadIssue]) {
    if skipped.is_empty() {
        return;
    }
    const SHOWN: usize = 10;
    eprintln!(
        "sluice: warning: skipped {} malformed record{} (the rest loaded):",
        skipped.len(),
        if skipped.len() == 1 { "" } else { "s" }
    );
    for issue in skipped.iter().take(SHOWN) {
        eprintln!("  {issue}");
    }
    if skipped.len() > SHOWN {
        eprintln!(
            "  … and {} more (all are listed under skipped_records in --output json)",
            skipped.len() - SHOWN
        );
    }
}

fn write_csv(out: &mut impl Write, findings: &[Finding]) -> Result<()> {
    let mut writer = csv::Writer::from_writer(out);
    writer.write_record([
        "score",
        "decision",
        "due",
        "tier",
        "package",
        "source_package",
        "installed",
        "fixed",
        "advisory",
        "aliases",
        "update_type",
        "cvss_version",
        "cvss_vector",
        "cvss_score",
        "severity",
        "kev",
        "epss",
    ])?;
    for f in findings {
        // Cells a spreadsheet would evaluate as formulas are written as text.
        let cells = [
            format!("{:.1}", f.score),
            f.decision.to_string(),
            f.due.to_string(),
            f.tier.clone(),
            f.package.clone(),
            f.source_package.clone(),
            f.installed.clone(),
            f.fixed.clone().unwrap_or_default(),
            f.advisory.clone(),
            f.aliases.join(" "),
            f.update_type.to_string(),
            f.cvss
                .as_ref()
                .map(|c| c.version.to_string())
                .unwrap_or_default(),
            f.cvss
                .as_ref()
                .map(|c| c.vector.clone())
                .unwrap_or_default(),
            f.cvss
                .as_ref()
                .map(|c| format!("{:.1}", c.score))
                .unwrap_or_default(),
            f.severity.map(|s| s.to_string()).unwrap_or_default(),
            f.kev.to_string(),
            f.epss.map(|e| e.to_string()).unwrap_or_default(),
        ];
        writer.write_record(
            cells
                .iter()
                .map(|cell| sluice_core::text::spreadsheet_cell(cell).into_owned()),
        )?;
    }
    writer.flush()?;
    Ok(())
}

fn write_table(
    out: &mut impl Write,
    findings: &[Finding],
    summary: &ScanSummary,
    top: Option<usize>,
) -> Result<()> {
    let shown = top.unwrap_or(findings.len()).min(findings.len());
    let header = [
        "SCORE",
        "DECISION",
        "DUE",
        "PACKAGE",
        "INSTALLED",
        "FIXED",
        "ADVISORY",
        "CVSS",
        "KEV",
        "EPSS",
        "CVES",
    ];
    let rows: Vec<[String; 11]> = findings[..shown]
        .iter()
        .map(|f| {
            let cves: Vec<&str> = f
                .aliases
                .iter()
                .map(String::as_str)
                .filter(|a| a.starts_with("CVE-"))
                .collect();
            let cves = match cves.len() {
                0 => "-".to_owned(),
                1 | 2 => cves.join(" "),
                n => format!("{} +{}", cves[..2].join(" "), n - 2),
            };
            [
                format!("{:.1}", f.score),
                f.decision.to_string(),
                f.due.to_string(),
                f.package.clone(),
                f.installed.clone(),
                f.fixed.clone().unwrap_or_else(|| "(none)".to_owned()),
                f.advisory.clone(),
                f.cvss
                    .as_ref()
                    .map_or_else(|| "-".to_owned(), |c| format!("{:.1}", c.score)),
                if f.kev {
                    "yes".to_owned()
                } else {
                    "-".to_owned()
                },
                f.epss.map_or_else(|| "-".to_owned(), |e| format!("{e:.3}")),
                cves,
            ]
        })
        .collect();
    let mut widths = header.map(str::len);
    for row in &rows {
        for (width, cell) in widths.iter_mut().zip(row) {
            *width = (*width).max(cell.chars().count());
        }
    }
    let line = |cells: &[String]| -> String {
        let mut text = String::new();
        for (i, (cell, width)) in cells.iter().zip(widths).enumerate() {
            if i + 1 == cells.len() {
                text.push_str(cell);
            } else {
                text.push_str(&format!("{cell:<width$}  "));
            }
        }
        text.trim_end().to_owned()
    };
    if !rows.is_empty() {
        writeln!(out, "{}", line(&header.map(str::to_owned)))?;
        for row in &rows {
            writeln!(out, "{}", line(row))?;
        }
        if shown < findings.len() {
            writeln!(
                out,
                "… {} more findings (see --top, or --output json)",
                findings.len() - shown
            )?;
        }
        writeln!(out)?;
    }
    let decisions = ["act", "attend", "track*", "track"]
        .iter()
        .map(|d| format!("{d} {}", summary.by_decision.get(*d).copied().unwrap_or(0)))
        .collect::<Vec<_>>()
        .join(", ");
    writeln!(
        out,
        "{} findings ({decisions}) in {} packages from {} advisories ({} CVEs); {} KEV-listed; {} without a known fix{}.",
        summary.findings,
        summary.affected_packages,
        summary.advisories,
        summary.cves,
        summary.kev,
        summary.unfixed,
        summary
            .earliest_due
            .map(|d| format!("; earliest due {d}"))
            .unwrap_or_default(),
    )?;
    writeln!(
        out,
        "Scanned {} installed packages ({}) against {} advisories.",
        summary.packages, summary.ecosystem, summary.advisories_loaded
    )?;
    Ok(())
}
