//! `sluice window preview`: the next occurrences of a maintenance-window rule, offline.
//!
//! Owns the flags, reading the tz database and the clock (for the default date), and the two
//! output formats. What the rule means, the DST rule and the occurrence arithmetic are
//! `sluice_core::calendar`'s. Bad input names the flag and exits with status 2.

use std::io::{self, Write};
use std::process::ExitCode;

use anyhow::{Context, bail};
use jiff::civil::{Date, Time};
use jiff::tz::TimeZone;
use serde::Serialize;
use sluice_core::calendar::{
    CronSchedule, MaintenanceWindow, Occurrence, RecurrenceRule, Schedule, parse_duration,
    parse_time_of_day,
};

/// `sluice window ...`.
#[derive(Debug, clap::Subcommand)]
pub enum WindowCommand {
    /// Print the next occurrences of a window rule (RRULE or cron), with the DST rule applied.
    Preview(PreviewArgs),
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
    }
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
