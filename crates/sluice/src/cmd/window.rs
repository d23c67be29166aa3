//! `sluice window preview`: the next occurrences of a maintenance-window rule, offline; and
//! `sluice window add|list|delete`: the windows stored on the server.
//!
//! Owns the flags, reading the tz database and the clock (for the default date), and the two
//! output formats. What the rule means, the DST rule and the occurrence arithmetic are
//! `sluice_core::calendar`'s (on the server for stored windows, which refuses a bad rule naming
//! the field). Bad input names the flag and exits with status 2.

use std::io::{self, Write};
use std::process::ExitCode;

use anyhow::{Context, bail};
use jiff::civil::{Date, Time};
use jiff::tz::TimeZone;
use serde::Serialize;
use sluice_core::calendar::{
    CronSchedule, MaintenanceWindow, Occurrence, RecurrenceRule, Schedule, WindowSpec,
    parse_duration, parse_time_of_day,
};
use sluice_protocol::calendars::{CreateWindow, Deleted, WindowRecord};

use super::accounts::Output;
use super::assets::encode;
use super::client::{Client, ServerArgs, print_table};

/// `sluice window ...`.
#[derive(Debug, clap::Subcommand)]
pub enum WindowCommand {
    /// Print the next occurrences of a window rule (RRULE or cron), with the DST rule applied.
    Preview(PreviewArgs),
    /// Store a maintenance window on the server (operator, admin).
    Add(AddArgs),
    /// List the windows stored on the server.
    List {
        #[command(flatten)]
        server: ServerArgs,
        /// Output format.
        #[arg(long, value_enum, default_value = "table")]
        output: Output,
    },
    /// Delete a stored window (admin).
    Delete {
        #[command(flatten)]
        server: ServerArgs,
        /// The window's name.
        name: String,
    },
}

/// A window rule as `window add` and `freeze add` take it.
#[derive(Debug, Clone, clap::Args)]
pub struct RuleArgs {
    /// An RFC 5545 RRULE, e.g. `FREQ=MONTHLY;BYDAY=2TU`.
    #[arg(long, value_name = "RULE")]
    pub rrule: Option<String>,
    /// The RRULE's start date (DTSTART), YYYY-MM-DD (default: today in the zone).
    #[arg(long, value_name = "YYYY-MM-DD", requires = "rrule")]
    pub dtstart: Option<String>,
    /// A five-field cron expression choosing the days, e.g. `0 22 * * TUE#2`.
    #[arg(long, value_name = "EXPR")]
    pub cron: Option<String>,
    /// Local start time, HH:MM (may be left out with a cron expression that fixes it).
    #[arg(long, value_name = "HH:MM", allow_hyphen_values = true)]
    pub start: Option<String>,
    /// How long each occurrence lasts: `4h`, `90m`, `1h30m`, `2d`.
    #[arg(long, value_name = "DUR")]
    pub duration: Option<String>,
    /// Move every occurrence by N days; negative moves earlier.
    #[arg(
        long = "offset-days",
        value_name = "N",
        default_value_t = 0,
        allow_negative_numbers = true
    )]
    pub offset_days: i32,
}

impl RuleArgs {
    /// The definition (`WindowSpec`), in `tz`.
    pub fn definition(&self, tz: &str) -> anyhow::Result<WindowSpec> {
        let Some(duration) = &self.duration else {
            bail!("--duration is required with a rule (4h, 90m, 1h30m)");
        };
        let (rrule, cron) = match (&self.rrule, &self.cron) {
            (Some(rule), None) => (Some(rule.clone()), None),
            (None, Some(expr)) => (None, Some(expr.clone())),
            _ => bail!("give exactly one of --rrule and --cron"),
        };
        Ok(WindowSpec {
            rrule,
            dtstart: self
                .dtstart
                .as_deref()
                .map(|d| day("dtstart", d))
                .transpose()?,
            cron,
            start: self.start.clone(),
            duration: duration.clone(),
            cutoff: None,
            tz: tz.to_owned(),
            offset_days: self.offset_days,
            active_from: None,
            active_until: None,
        })
    }
}

/// A day given on the command line (YYYY-MM-DD).
fn day(flag: &str, text: &str) -> anyhow::Result<Date> {
    text.trim()
        .parse()
        .with_context(|| format!("--{flag} {text:?}: a day (YYYY-MM-DD)"))
}

/// Arguments of `sluice window add`.
#[derive(Debug, clap::Args)]
#[command(group(clap::ArgGroup::new("rule").required(true).args(["rrule", "cron"])))]
pub struct AddArgs {
    #[command(flatten)]
    server: ServerArgs,
    /// A unique name: letters, digits, `.`, `_`, `-`.
    name: String,
    /// The hosts it applies to: a CMDB selector (`group=web`, `env=prod,tags=db`); default:
    /// every host.
    #[arg(long, value_name = "SELECTOR", default_value = "")]
    scope: String,
    #[command(flatten)]
    rule: RuleArgs,
    /// IANA time zone, e.g. `Europe/Berlin`.
    #[arg(long, value_name = "ZONE")]
    tz: String,
    /// No host starts in the last part of each occurrence (`30m`).
    #[arg(long, value_name = "DUR")]
    cutoff: Option<String>,
    /// First local date that counts, YYYY-MM-DD.
    #[arg(long, value_name = "YYYY-MM-DD")]
    active_from: Option<String>,
    /// Last local date that counts, YYYY-MM-DD.
    #[arg(long, value_name = "YYYY-MM-DD")]
    active_until: Option<String>,
}

/// Arguments of `sluice window preview`.
#[derive(Debug, clap::Args)]
#[command(group(clap::ArgGroup::new("rule").required(true).args(["rrule", "cron"])))]
pub struct PreviewArgs {
    /// An RFC 5545 RRULE, e.g. `FREQ=MONTHLY;BYDAY=2TU` (DTSTART is the --from date).
    #[arg(long, value_name = "RULE")]
    pub rrule: Option<String>,

    /// A five-field cron expression choosing the days, e.g. `0 2 * * TUE#2`.
    #[arg(long, value_name = "EXPR")]
    pub cron: Option<String>,

    /// Local start time, HH:MM. May be left out with a cron expression that fixes minute and
    /// hour.
    #[arg(long, value_name = "HH:MM", allow_hyphen_values = true)]
    pub start: Option<String>,

    /// How long each occurrence lasts, in elapsed time: `4h`, `90m`, `1h30m`, `2d`.
    #[arg(long, value_name = "DUR", allow_hyphen_values = true)]
    pub duration: String,

    /// IANA time zone the start time is read in, e.g. `Europe/Berlin`.
    #[arg(long, value_name = "ZONE")]
    pub tz: String,

    /// Move every occurrence by N days ("Patch Tuesday + 3 days"); negative moves earlier.
    #[arg(
        long = "offset-days",
        value_name = "N",
        default_value_t = 0,
        allow_negative_numbers = true
    )]
    pub offset_days: i32,

    /// List occurrences starting at or after local midnight of this date (default: today in
    /// ZONE).
    #[arg(long, value_name = "YYYY-MM-DD")]
    pub from: Option<String>,

    /// How many occurrences to list.
    #[arg(long, value_name = "N", default_value_t = 10,
          value_parser = clap::value_parser!(u32).range(1..=10_000))]
    pub count: u32,

    /// Output format: aligned columns for people, or a JSON array for programs.
    #[arg(short, long, value_enum, default_value_t = OutputFormat::Table)]
    pub output: OutputFormat,
}

/// How `sluice window preview` prints.
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum OutputFormat {
    /// One line per occurrence: weekday, local start and end, UTC start, DST notes.
    Table,
    /// A JSON array of `{"start_utc", "end_utc", "start_local", "end_local"}` (RFC 3339).
    Json,
}

/// Runs a `sluice window` command.
pub fn run(command: WindowCommand) -> anyhow::Result<ExitCode> {
    match command {
        WindowCommand::Preview(args) => preview(&args),
        WindowCommand::Add(args) => add(&args),
        WindowCommand::List { server, output } => list(&server, output),
        WindowCommand::Delete { server, name } => {
            Client::new(&server)?.call::<(), Deleted>(
                reqwest::Method::DELETE,
                &format!("/api/v1/windows/{}", encode(&name)),
                None,
            )?;
            println!("window {name} deleted");
            Ok(ExitCode::SUCCESS)
        }
    }
}

fn add(args: &AddArgs) -> anyhow::Result<ExitCode> {
    let mut definition = args.rule.definition(&args.tz)?;
    definition.cutoff = args.cutoff.clone();
    definition.active_from = args
        .active_from
        .as_deref()
        .map(|d| day("active-from", d))
        .transpose()?;
    definition.active_until = args
        .active_until
        .as_deref()
        .map(|d| day("active-until", d))
        .transpose()?;
    let body = CreateWindow {
        name: args.name.clone(),
        scope: args.scope.clone(),
        definition,
    };
    let window: WindowRecord = Client::new(&args.server)?.post_as("/api/v1/windows", &body)?;
    println!(
        "window {} created for {}",
        window.name,
        scope_cell(&window.scope)
    );
    Ok(ExitCode::SUCCESS)
}

/// A stored scope for people: the selector, or `every host`.
pub fn scope_cell(scope: &str) -> String {
    match scope {
        "" => "every host".to_owned(),
        selector => selector.to_owned(),
    }
}

/// A stored window rule for people: `FREQ=… 22:00 +3d for 4h (cutoff 30m) Europe/Berlin`.
pub fn rule_cell(definition: &WindowSpec) -> String {
    let mut out = match (&definition.rrule, &definition.cron) {
        (Some(rule), _) => rule.clone(),
        (_, Some(expr)) => format!("cron {expr}"),
        _ => "-".to_owned(),
    };
    if let Some(start) = &definition.start {
        out.push_str(&format!(" {start}"));
    }
    match definition.offset_days {
        0 => {}
        days => out.push_str(&format!(" {days:+}d")),
    }
    out.push_str(&format!(" for {}", definition.duration));
    if let Some(cutoff) = &definition.cutoff {
        out.push_str(&format!(" (cutoff {cutoff})"));
    }
    out.push_str(&format!(" {}", definition.tz));
    out
}

fn list(server: &ServerArgs, output: Output) -> anyhow::Result<ExitCode> {
    let client = Client::new(server)?;
    if output == Output::Json {
        let list = client.get("/api/v1/windows")?;
        println!("{}", serde_json::to_string_pretty(&list)?);
        return Ok(ExitCode::SUCCESS);
    }
    let list: Vec<WindowRecord> = client.get_as("/api/v1/windows")?;
    let rows: Vec<Vec<String>> = list
        .into_iter()
        .map(|w| {
            vec![
                w.name,
                scope_cell(&w.scope),
                rule_cell(&w.definition),
                w.created_by,
            ]
        })
        .collect();
    print_table(&["NAME", "SCOPE", "RULE", "CREATED BY"], &rows);
    Ok(ExitCode::SUCCESS)
}

/// One occurrence in the JSON output.
#[derive(Serialize)]
struct JsonRow {
    start_utc: String,
    end_utc: String,
    start_local: String,
    end_local: String,
}

fn preview(args: &PreviewArgs) -> anyhow::Result<ExitCode> {
    let tz = TimeZone::get(&args.tz).with_context(|| {
        format!(
            "--tz {}: not a time zone in the system tz database (expected an IANA name such as \
             Europe/Berlin)",
            args.tz
        )
    })?;
    let from: Date = match &args.from {
        Some(text) => text
            .parse()
            .with_context(|| format!("--from {text}: expected a date YYYY-MM-DD"))?,
        None => jiff::Zoned::now().with_time_zone(tz.clone()).date(),
    };
    let duration = parse_duration(&args.duration).context("--duration")?;
    let start: Option<Time> = args
        .start
        .as_deref()
        .map(|text| parse_time_of_day(text).context("--start"))
        .transpose()?;
    let (schedule, start, rule_text) = match (&args.rrule, &args.cron) {
        (Some(rule), None) => {
            let rule = RecurrenceRule::parse(rule).context("--rrule")?;
            let Some(start) = start else {
                bail!("--start HH:MM is required with --rrule");
            };
            let text = rule.to_string();
            (
                Schedule::Rrule {
                    rule,
                    dtstart: from,
                },
                start,
                text,
            )
        }
        (None, Some(expr)) => {
            let cron = CronSchedule::parse(expr).context("--cron")?;
            let start = match (start, cron.time_of_day()) {
                (Some(start), Some(fixed)) if start != fixed => bail!(
                    "--start {} disagrees with the cron expression \"{cron}\", which starts at \
                     {}: give the same time, leave out --start, or write * * for minute and hour",
                    start.strftime("%H:%M"),
                    fixed.strftime("%H:%M")
                ),
                (Some(start), _) | (None, Some(start)) => start,
                (None, None) => bail!(
                    "--start HH:MM is required: the cron expression \"{cron}\" has * for minute \
                     and hour"
                ),
            };
            let text = format!("cron {cron}");
            (Schedule::Cron(cron), start, text)
        }
        // clap's argument group allows exactly one.
        _ => bail!("give exactly one of --rrule and --cron"),
    };
    let window = MaintenanceWindow::new(schedule, start, duration, tz.clone())
        .context("the window")?
        .with_offset_days(args.offset_days)
        .context("--offset-days")?;
    let occurrences: Vec<Occurrence> = window.occurrences(from).take(args.count as usize).collect();

    let stdout = io::stdout();
    let mut out = stdout.lock();
    let written = match args.output {
        OutputFormat::Json => write_json(&mut out, &occurrences),
        OutputFormat::Table => write_table(&mut out, &window, &rule_text, &occurrences),
    };
    match written {
        Ok(()) => Ok(ExitCode::SUCCESS),
        // `sluice window preview | head` is normal use, not an error.
        Err(err) if err.kind() == io::ErrorKind::BrokenPipe => Ok(ExitCode::SUCCESS),
        Err(err) => Err(err).context("writing to standard output"),
    }
}

fn write_json(out: &mut impl Write, occurrences: &[Occurrence]) -> io::Result<()> {
    let rows: Vec<JsonRow> = occurrences
        .iter()
        .map(|o| JsonRow {
            start_utc: o.start_utc(),
            end_utc: o.end_utc(),
            start_local: o.start_local(),
            end_local: o.end_local(),
        })
        .collect();
    serde_json::to_writer_pretty(&mut *out, &rows)?;
    writeln!(out)?;
    out.flush()
}

fn write_table(
    out: &mut impl Write,
    window: &MaintenanceWindow,
    rule: &str,
    occurrences: &[Occurrence],
) -> io::Result<()> {
    let tz = window.time_zone();
    let zone = tz.iana_name().unwrap_or("local");
    let offset = match window.offset_days() {
        0 => String::new(),
        n => format!(" {n:+} days"),
    };
    writeln!(
        out,
        "{rule}{offset}, {} for {} in {zone}",
        window.start_time().strftime("%H:%M"),
        sluice_core::calendar::format_duration(window.duration()),
    )?;
    if occurrences.is_empty() {
        writeln!(out, "no occurrences")?;
        return out.flush();
    }
    let local = |z: &jiff::Zoned| z.strftime("%Y-%m-%d %H:%M %:z").to_string();
    let rows: Vec<[String; 5]> = occurrences
        .iter()
        .map(|o| {
            [
                o.start.strftime("%a").to_string(),
                local(&o.start),
                local(&o.end),
                o.start.timestamp().strftime("%Y-%m-%d %H:%MZ").to_string(),
                dst_note(window.start_time(), o, tz),
            ]
        })
        .collect();
    let header = [
        "DAY".to_owned(),
        format!("START ({zone})"),
        format!("END ({zone})"),
        "START (UTC)".to_owned(),
        "NOTE".to_owned(),
    ];
    let widths: Vec<usize> = (0..5)
        .map(|i| {
            rows.iter()
                .map(|r| r[i].len())
                .chain([header[i].len()])
                .max()
                .unwrap_or(0)
        })
        .collect();
    let notes = rows.iter().any(|r| !r[4].is_empty());
    for row in std::iter::once(&header).chain(&rows) {
        let columns = if notes { 5 } else { 4 };
        let line: Vec<String> = (0..columns)
            .map(|i| format!("{:<width$}", row[i], width = widths[i]))
            .collect();
        writeln!(out, "{}", line.join("  ").trim_end())?;
    }
    out.flush()
}

/// Why an occurrence starts other than at the wall-clock start time, or on which of two.
fn dst_note(start: Time, occurrence: &Occurrence, tz: &TimeZone) -> String {
    let wanted = occurrence.start.date().to_datetime(start);
    if occurrence.start.time() != start {
        return format!(
            "{} does not exist here (DST): moved later by the gap",
            start.strftime("%H:%M")
        );
    }
    if tz.to_ambiguous_zoned(wanted).is_ambiguous() {
        return format!(
            "{} happens twice (DST ends): the first",
            start.strftime("%H:%M")
        );
    }
    String::new()
}
