//! `sluice feeds …`, `sluice inventory push`, `sluice findings list`: the server's view of
//! vulnerability intelligence.

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::{Context, Result, bail};
use serde_json::Value;
use sluice_core::deferral::Standing;
use sluice_protocol::Empty;
use sluice_protocol::findings::{
    CreateFeed, FeedKind, FeedRecord, FeedSyncReport, FindingItem, FindingsPage, PushInventory,
    PushReport,
};

use super::accounts::Output;
use super::client::{Client, ServerArgs, print_table};

/// Subcommands of `sluice feeds`.
#[derive(Debug, clap::Subcommand)]
pub enum FeedsCommand {
    /// Register a feed: a path in the server's feed directories or an http(s) URL.
    Add {
        #[command(flatten)]
        server: ServerArgs,
        /// Unique name.
        name: String,
        /// Absolute path (file, directory, zip) inside one of the server's feed directories
        /// (its `feed_dirs` setting), or an http(s) URL.
        #[arg(long)]
        source: String,
        /// advisories (OSV, DSA/DLA), kev or epss.
        #[arg(long, default_value = "advisories")]
        kind: String,
        /// Sync on a schedule, e.g. 6h or 1d (on demand only without it).
        #[arg(long)]
        interval: Option<String>,
    },
    /// List feeds and their last sync.
    List {
        #[command(flatten)]
        server: ServerArgs,
        /// Output format.
        #[arg(long, value_enum, default_value = "table")]
        output: Output,
    },
    /// Sync feeds now (all without names); findings are recomputed when content changed.
    Sync {
        #[command(flatten)]
        server: ServerArgs,
        /// Feed names (or ids).
        names: Vec<String>,
    },
}

/// Runs `sluice feeds …`.
pub fn feeds(command: FeedsCommand) -> Result<ExitCode> {
    match command {
        FeedsCommand::Add {
            server,
            name,
            source,
            kind,
            interval,
        } => {
            let kind = match kind.as_str() {
                "advisories" => FeedKind::Advisories,
                "kev" => FeedKind::Kev,
                "epss" => FeedKind::Epss,
                other => bail!("--kind {other:?}: one of advisories, kev, epss"),
            };
            let body = CreateFeed {
                name,
                kind,
                source,
                interval,
            };
            let feed: FeedRecord = Client::new(&server)?.post_as("/api/v1/feeds", &body)?;
            eprintln!("registered feed {} ({})", feed.name, feed.kind.as_str());
            Ok(ExitCode::SUCCESS)
        }
        FeedsCommand::List { server, output } => {
            let client = Client::new(&server)?;
            if output == Output::Json {
                let feeds = client.get("/api/v1/feeds")?;
                println!("{}", serde_json::to_string_pretty(&feeds)?);
            } else {
                let feeds: Vec<FeedRecord> = client.get_as("/api/v1/feeds")?;
                let or_dash = |v: Option<String>| v.unwrap_or_else(|| "-".to_owned());
                let rows: Vec<Vec<String>> = feeds
                    .into_iter()
                    .map(|f| {
                        vec![
                            f.name,
                            f.kind.as_str().to_owned(),
                            f.records.to_string(),
                            f.skipped.to_string(),
                            or_dash(f.last_status),
                            or_dash(f.last_sync_at),
                            f.source,
                        ]
                    })
                    .collect();
                print_table(
                    &[
                        "NAME",
                        "KIND",
                        "RECORDS",
                        "SKIPPED",
                        "STATUS",
                        "LAST SYNC",
                        "SOURCE",
                    ],
                    &rows,
                );
            }
            Ok(ExitCode::SUCCESS)
        }
        FeedsCommand::Sync { server, names } => {
            let client = Client::new(&server)?;
            let names = if names.is_empty() {
                client
                    .get_as::<Vec<FeedRecord>>("/api/v1/feeds")?
                    .into_iter()
                    .map(|f| f.name)
                    .collect()
            } else {
                names
            };
            let mut failed = false;
            for name in names {
                let report: FeedSyncReport =
                    client.post_as(&format!("/api/v1/feeds/{name}/sync"), &Empty {})?;
                let feed = report.feed;
                let status = feed.last_status.unwrap_or_else(|| "-".to_owned());
                if status == "error" {
                    failed = true;
                    eprintln!(
                        "{name}: sync failed: {}",
                        feed.last_error.as_deref().unwrap_or("-")
                    );
                    continue;
                }
                eprintln!(
                    "{name}: {status}; {} records ({} skipped){}",
                    feed.records,
                    feed.skipped,
                    match report.findings {
                        None => String::new(),
                        Some(findings) => format!(
                            "; findings: {} opened, {} resolved, {} open",
                            findings.opened, findings.resolved, findings.open
                        ),
                    }
                );
            }
            Ok(if failed {
                ExitCode::from(1)
            } else {
                ExitCode::SUCCESS
            })
        }
    }
}

fn text(value: &Value) -> String {
    match value {
        Value::String(s) => s.clone(),
        Value::Null => "-".to_owned(),
        other => other.to_string(),
    }
}

/// Subcommands of `sluice inventory`.
#[derive(Debug, clap::Subcommand)]
pub enum InventoryCommand {
    /// Send a host's installed packages; its findings are recomputed.
    Push(PushArgs),
}

/// Arguments of `sluice inventory push`.
#[derive(Debug, clap::Args)]
pub struct PushArgs {
    #[command(flatten)]
    server: ServerArgs,
    /// Host name.
    #[arg(long)]
    host: String,
    /// A dpkg status file.
    #[arg(
        long,
        value_name = "FILE",
        conflicts_with = "rpm_qa",
        required_unless_present = "rpm_qa"
    )]
    status: Option<PathBuf>,
    /// rpm -qa output (see `sluice scan --help` for the query format).
    #[arg(long = "rpm-qa", value_name = "FILE")]
    rpm_qa: Option<PathBuf>,
    /// The host's os-release file.
    #[arg(
        long = "os-release",
        value_name = "FILE",
        required_unless_present = "ecosystem"
    )]
    os_release: Option<PathBuf>,
    /// Or the ecosystem by name, e.g. Debian:12.
    #[arg(long)]
    ecosystem: Option<String>,
}

/// Runs `sluice inventory …`.
pub fn inventory(command: InventoryCommand) -> Result<ExitCode> {
    let InventoryCommand::Push(args) = command;
    let (format, path) = match (&args.status, &args.rpm_qa) {
        (Some(path), None) => ("dpkg-status", path),
        (None, Some(path)) => ("rpm-qa", path),
        _ => bail!("give --status FILE or --rpm-qa FILE"),
    };
    let content =
        std::fs::read_to_string(path).with_context(|| format!("cannot read {}", path.display()))?;
    let os_release = args
        .os_release
        .as_ref()
        .map(|p| std::fs::read_to_string(p).with_context(|| format!("cannot read {}", p.display())))
        .transpose()?;
    let body = PushInventory {
        format: format.to_owned(),
        content,
        os_release,
        ecosystem: args.ecosystem.clone(),
    };
    let report: PushReport = Client::new(&args.server)?.call(
        reqwest::Method::PUT,
        &format!("/api/v1/inventories/{}", args.host),
        Some(&body),
    )?;
    let findings = report.findings;
    eprintln!(
        "{} ({}): {} packages{}; findings: {} opened, {} resolved, {} open",
        report.hostname,
        report.ecosystem,
        report.packages,
        if report.changed { "" } else { " (unchanged)" },
        findings.opened,
        findings.resolved,
        findings.open
    );
    Ok(ExitCode::SUCCESS)
}

/// Subcommands of `sluice findings`.
#[derive(Debug, clap::Subcommand)]
pub enum FindingsCommand {
    /// List findings by priority.
    List(ListArgs),
}

/// Arguments of `sluice findings list`.
#[derive(Debug, clap::Args)]
pub struct ListArgs {
    #[command(flatten)]
    server: ServerArgs,
    /// One host.
    #[arg(long)]
    host: Option<String>,
    /// Only hosts the CMDB selector picks, e.g. env=prod,criticality>=4.
    #[arg(long)]
    selector: Option<String>,
    /// SSVC decisions, comma-separated (act,attend,track*,track).
    #[arg(long)]
    decision: Option<String>,
    /// Only KEV-listed findings.
    #[arg(long)]
    kev: bool,
    /// Only findings past their due date (a deferred finding is not due).
    #[arg(long)]
    overdue: bool,
    /// Only findings an active deferral, risk acceptance or legacy pin covers.
    #[arg(long, conflicts_with_all = ["overdue", "due"])]
    deferred: bool,
    /// Only findings no active deferral covers (due, or due again).
    #[arg(long)]
    due: bool,
    /// open, resolved or all.
    #[arg(long, default_value = "open")]
    status: String,
    /// How many (at most 1000).
    #[arg(long, default_value_t = 100)]
    limit: u32,
    /// Skip this many.
    #[arg(long, default_value_t = 0)]
    offset: u32,
    /// Output format.
    #[arg(long, value_enum, default_value = "table")]
    output: ListOutput,
}

/// Output formats of `sluice findings list`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum ListOutput {
    /// Columns for people.
    Table,
    /// JSON page.
    Json,
    /// CSV rows.
    Csv,
}

/// Runs `sluice findings …`.
pub fn findings(command: FindingsCommand) -> Result<ExitCode> {
    let FindingsCommand::List(args) = command;
    let mut query: Vec<(&str, String)> = vec![
        ("status", args.status.clone()),
        ("limit", args.limit.to_string()),
        ("offset", args.offset.to_string()),
    ];
    if let Some(host) = &args.host {
        query.push(("host", host.clone()));
    }
    if let Some(decision) = &args.decision {
        query.push(("decision", decision.clone()));
    }
    if let Some(selector) = &args.selector {
        query.push(("selector", selector.clone()));
    }
    if args.kev {
        query.push(("kev", "true".to_owned()));
    }
    if args.overdue {
        query.push(("overdue", "true".to_owned()));
    }
    if args.deferred {
        query.push(("deferred", "true".to_owned()));
    }
    if args.due {
        query.push(("deferred", "false".to_owned()));
    }
    let encoded: Vec<String> = query
        .iter()
        .map(|(k, v)| format!("{k}={}", percent_encode(v)))
        .collect();
    let path = format!("/api/v1/findings?{}", encoded.join("&"));
    let client = Client::new(&args.server)?;
    if args.output == ListOutput::Json {
        println!("{}", serde_json::to_string_pretty(&client.get(&path)?)?);
        return Ok(ExitCode::SUCCESS);
    }
    let page: FindingsPage = client.get_as(&path)?;
    let items: Vec<Cells> = page.items.iter().map(Cells::of).collect();
    match args.output {
        ListOutput::Json => {}
        ListOutput::Csv => {
            let mut writer = csv::Writer::from_writer(std::io::stdout());
            writer.write_record([
                "host",
                "score",
                "decision",
                "due",
                "package",
                "installed",
                "fixed",
                "advisory",
                "kev",
                "first_seen",
                "resolved_at",
                "standing",
                "deferral",
            ])?;
            for f in &items {
                // Cells a spreadsheet would evaluate as formulas are written as text.
                writer.write_record(
                    [
                        f.hostname.clone(),
                        f.score.clone(),
                        f.decision.clone(),
                        f.due.clone(),
                        f.package.clone(),
                        f.installed.clone(),
                        f.fixed.clone(),
                        f.advisory.clone(),
                        f.item.finding.finding.kev.to_string(),
                        f.item.finding.first_seen.clone(),
                        dash(f.item.finding.resolved_at.clone()),
                        f.standing.clone(),
                        f.deferral.clone(),
                    ]
                    .iter()
                    .map(|cell| sluice_core::text::spreadsheet_cell(cell).into_owned()),
                )?;
            }
            writer.flush()?;
        }
        ListOutput::Table => {
            let rows: Vec<Vec<String>> = items
                .iter()
                .map(|f| {
                    vec![
                        f.hostname.clone(),
                        f.score.clone(),
                        f.decision.clone(),
                        f.due.clone(),
                        f.package.clone(),
                        f.installed.clone(),
                        f.fixed.clone(),
                        f.advisory.clone(),
                        if f.item.finding.finding.kev {
                            "yes".to_owned()
                        } else {
                            "-".to_owned()
                        },
                        standing_cell(&f.item.standing),
                    ]
                })
                .collect();
            print_table(
                &[
                    "HOST",
                    "SCORE",
                    "DECISION",
                    "DUE",
                    "PACKAGE",
                    "INSTALLED",
                    "FIXED",
                    "ADVISORY",
                    "KEV",
                    "STANDING",
                ],
                &rows,
            );
            let more = if page.total_exact { "" } else { "+" };
            println!("{} of {}{more} findings", items.len(), page.total);
        }
    }
    Ok(ExitCode::SUCCESS)
}

/// A finding's cells, as the API words each field (the score as JSON writes it: `7.0`).
struct Cells<'a> {
    item: &'a FindingItem,
    hostname: String,
    score: String,
    decision: String,
    due: String,
    package: String,
    installed: String,
    fixed: String,
    advisory: String,
    standing: String,
    deferral: String,
}

impl<'a> Cells<'a> {
    fn of(item: &'a FindingItem) -> Self {
        let f = &item.finding;
        let (standing, deferral) = match &item.standing {
            Standing::Open => ("open", None),
            Standing::Pending { deferral } => ("pending", Some(deferral)),
            Standing::Deferred { deferral, .. } => ("deferred", Some(deferral)),
            Standing::DueAgain { deferral, .. } => ("due-again", Some(deferral)),
        };
        Self {
            item,
            hostname: f.hostname.clone(),
            score: Value::from(f.finding.score).to_string(),
            decision: serde_json::to_value(f.finding.decision)
                .map_or_else(|_| "-".to_owned(), |v| text(&v)),
            due: f.finding.due.to_string(),
            package: f.finding.package.clone(),
            installed: f.finding.installed.clone(),
            fixed: dash(f.finding.fixed.clone()),
            advisory: f.finding.advisory.clone(),
            standing: standing.to_owned(),
            deferral: dash(deferral.cloned()),
        }
    }
}

fn dash(value: Option<String>) -> String {
    value.unwrap_or_else(|| "-".to_owned())
}

/// A finding's deferral standing, for people: `-` when no record bears on it.
fn standing_cell(standing: &Standing) -> String {
    let day = |at: &jiff::Timestamp| at.to_string().chars().take(10).collect::<String>();
    match standing {
        Standing::Deferred {
            deferral, until, ..
        } => format!("deferred until {} ({deferral})", day(until)),
        Standing::DueAgain {
            deferral,
            expired_at,
        } => format!("due again since {} ({deferral})", day(expired_at)),
        Standing::Pending { deferral } => format!("deferral pending ({deferral})"),
        Standing::Open => "-".to_owned(),
    }
}

/// Percent-encodes a query value (everything but unreserved characters).
fn percent_encode(value: &str) -> String {
    value
        .bytes()
        .map(|b| {
            if b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_' | b'~') {
                (b as char).to_string()
            } else {
                format!("%{b:02X}")
            }
        })
        .collect()
}
