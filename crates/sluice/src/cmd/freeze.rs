//! `sluice freeze …`: freezes and their exceptions on the server. Add, list, delete a freeze;
//! request, approve, reject, list exceptions. What a rule means and who may decide are the
//! server's (`sluice_core::calendar`, docs/calendar.md); refusals print its reason.

use std::process::ExitCode;

use anyhow::{Context, Result, bail};
use jiff::Timestamp;
use reqwest::Method;
use sluice_core::calendar::{FreezeRuleSpec, FreezeSpec};
use sluice_protocol::Empty;
use sluice_protocol::calendars::{
    CreateFreeze, Deleted, FreezeExceptionRecord, FreezeRecord, RequestException,
};

use super::accounts::Output;
use super::assets::encode;
use super::client::{Client, ServerArgs, print_table};
use super::window::{RuleArgs, rule_cell, scope_cell};

/// Subcommands of `sluice freeze`.
#[derive(Debug, clap::Subcommand)]
pub enum FreezeCommand {
    /// Store a freeze (approver, admin): an explicit range, the last N business days of every
    /// month, a yearly date range, or a recurring rule.
    Add(Box<AddArgs>),
    /// List the freezes.
    List {
        #[command(flatten)]
        server: ServerArgs,
        /// Output format.
        #[arg(long, value_enum, default_value = "table")]
        output: Output,
    },
    /// Delete a freeze and its exception requests (approver, admin).
    Delete {
        #[command(flatten)]
        server: ServerArgs,
        /// The freeze's name.
        name: String,
    },
    /// Exceptions: ask to work inside a freeze, approve or reject a request, list them.
    #[command(subcommand)]
    Exception(ExceptionCommand),
}

/// Arguments of `sluice freeze add`.
#[derive(Debug, clap::Args)]
#[command(group(clap::ArgGroup::new("kind").required(true)
    .args(["from", "last_business_days", "yearly_from", "rrule", "cron"])))]
pub struct AddArgs {
    #[command(flatten)]
    server: ServerArgs,
    /// A unique name: letters, digits, `.`, `_`, `-`.
    name: String,
    /// The hosts it holds for: a CMDB selector; default: every host.
    #[arg(long, value_name = "SELECTOR", default_value = "")]
    scope: String,
    /// IANA zone the freeze's local days are read in.
    #[arg(long, value_name = "ZONE", default_value = "UTC")]
    tz: String,
    /// An explicit range: from this time (RFC 3339, or YYYY-MM-DD for midnight UTC) ...
    #[arg(long, value_name = "TIME", requires = "until")]
    from: Option<String>,
    /// ... until this one.
    #[arg(long, value_name = "TIME", requires = "from")]
    until: Option<String>,
    /// The last N business days of every month (Monday to Friday, less --holiday).
    #[arg(long, value_name = "N")]
    last_business_days: Option<u8>,
    /// A date that is not a business day (YYYY-MM-DD); repeat for several.
    #[arg(long, value_name = "YYYY-MM-DD", requires = "last_business_days")]
    holiday: Vec<String>,
    /// Every year from this month and day (MM-DD) ...
    #[arg(long, value_name = "MM-DD", requires = "yearly_until")]
    yearly_from: Option<String>,
    /// ... through this one, whole days.
    #[arg(long, value_name = "MM-DD", requires = "yearly_from")]
    yearly_until: Option<String>,
    /// A recurring freeze: a window-like rule (--rrule or --cron, --start, --duration).
    #[command(flatten)]
    rule: RuleArgs,
}

/// Subcommands of `sluice freeze exception`.
#[derive(Debug, clap::Subcommand)]
pub enum ExceptionCommand {
    /// Ask to work inside a freeze; it lifts nothing until another approver approves it.
    Request {
        #[command(flatten)]
        server: ServerArgs,
        /// The freeze's name.
        freeze: String,
        /// From this time (RFC 3339, or YYYY-MM-DD for midnight UTC).
        #[arg(long, value_name = "TIME")]
        from: String,
        /// Until this time, at most 31 days later.
        #[arg(long, value_name = "TIME")]
        until: String,
        /// The hosts, as a CMDB selector; default: every host the freeze holds for.
        #[arg(long, value_name = "SELECTOR", default_value = "")]
        scope: String,
        /// Why the work cannot wait.
        #[arg(long)]
        justification: String,
    },
    /// Approve a request (approver; never your own).
    Approve {
        #[command(flatten)]
        server: ServerArgs,
        /// Request id (FEX-3).
        id: String,
    },
    /// Reject a request (approver; never your own).
    Reject {
        #[command(flatten)]
        server: ServerArgs,
        /// Request id (FEX-3).
        id: String,
    },
    /// List requests, oldest first: of one freeze, or all.
    List {
        #[command(flatten)]
        server: ServerArgs,
        /// Only this freeze's.
        freeze: Option<String>,
        /// Output format.
        #[arg(long, value_enum, default_value = "table")]
        output: Output,
    },
}

/// A time flag: RFC 3339, or a day for its midnight UTC.
fn instant(flag: &str, text: &str) -> Result<Timestamp> {
    if let Ok(at) = text.parse::<Timestamp>() {
        return Ok(at);
    }
    let day: jiff::civil::Date = text
        .parse()
        .with_context(|| format!("--{flag} {text:?}: a time (RFC 3339) or a day (YYYY-MM-DD)"))?;
    Ok(day.to_zoned(jiff::tz::TimeZone::UTC)?.timestamp())
}

fn rule(args: &AddArgs) -> Result<FreezeRuleSpec> {
    Ok(
        match (
            &args.from,
            &args.until,
            args.last_business_days,
            &args.yearly_from,
            &args.yearly_until,
        ) {
            (Some(from), Some(until), ..) => FreezeRuleSpec::Range {
                from: instant("from", from)?,
                until: instant("until", until)?,
            },
            (_, _, Some(days), ..) => FreezeRuleSpec::LastBusinessDays {
                days,
                holidays: args
                    .holiday
                    .iter()
                    .map(|d| {
                        d.trim()
                            .parse()
                            .with_context(|| format!("--holiday {d:?}: a day (YYYY-MM-DD)"))
                    })
                    .collect::<Result<_>>()?,
            },
            (_, _, _, Some(from), Some(until)) => FreezeRuleSpec::Yearly {
                from: from.clone(),
                until: until.clone(),
            },
            _ if args.rule.rrule.is_some() || args.rule.cron.is_some() => {
                FreezeRuleSpec::Recurring {
                    window: args.rule.definition(&args.tz)?,
                }
            }
            _ => bail!(
                "say when the freeze holds: --from/--until, --last-business-days, \
                 --yearly-from/--yearly-until, or --rrule/--cron"
            ),
        },
    )
}

/// Runs `sluice freeze …`.
pub fn run(command: FreezeCommand) -> Result<ExitCode> {
    match command {
        FreezeCommand::Add(args) => {
            let body = CreateFreeze {
                name: args.name.clone(),
                scope: args.scope.clone(),
                definition: FreezeSpec {
                    tz: args.tz.clone(),
                    rule: rule(&args)?,
                },
            };
            let freeze: FreezeRecord =
                Client::new(&args.server)?.post_as("/api/v1/freezes", &body)?;
            println!(
                "freeze {} created for {}",
                freeze.name,
                scope_cell(&freeze.scope)
            );
            Ok(ExitCode::SUCCESS)
        }
        FreezeCommand::List { server, output } => {
            let client = Client::new(&server)?;
            if output == Output::Json {
                let list = client.get("/api/v1/freezes")?;
                println!("{}", serde_json::to_string_pretty(&list)?);
                return Ok(ExitCode::SUCCESS);
            }
            let list: Vec<FreezeRecord> = client.get_as("/api/v1/freezes")?;
            let rows: Vec<Vec<String>> = list
                .into_iter()
                .map(|f| {
                    vec![
                        f.name,
                        scope_cell(&f.scope),
                        freeze_rule_cell(&f.definition),
                        f.created_by,
                    ]
                })
                .collect();
            print_table(&["NAME", "SCOPE", "WHEN", "CREATED BY"], &rows);
            Ok(ExitCode::SUCCESS)
        }
        FreezeCommand::Delete { server, name } => {
            Client::new(&server)?.call::<(), Deleted>(
                Method::DELETE,
                &format!("/api/v1/freezes/{}", encode(&name)),
                None,
            )?;
            println!("freeze {name} deleted");
            Ok(ExitCode::SUCCESS)
        }
        FreezeCommand::Exception(command) => exception(command),
    }
}

fn exception(command: ExceptionCommand) -> Result<ExitCode> {
    match command {
        ExceptionCommand::Request {
            server,
            freeze,
            from,
            until,
            scope,
            justification,
        } => {
            let body = RequestException {
                scope,
                from: instant("from", &from)?,
                until: instant("until", &until)?,
                justification,
            };
            let record: FreezeExceptionRecord = Client::new(&server)?.post_as(
                &format!("/api/v1/freezes/{}/exceptions", encode(&freeze)),
                &body,
            )?;
            println!(
                "{} requested; it lifts nothing until another approver approves it",
                record.id
            );
            Ok(ExitCode::SUCCESS)
        }
        ExceptionCommand::Approve { server, id } => decide(&server, &id, "approve"),
        ExceptionCommand::Reject { server, id } => decide(&server, &id, "reject"),
        ExceptionCommand::List {
            server,
            freeze,
            output,
        } => {
            let path = match &freeze {
                Some(freeze) => format!("/api/v1/freezes/{}/exceptions", encode(freeze)),
                None => "/api/v1/freeze-exceptions".to_owned(),
            };
            let client = Client::new(&server)?;
            if output == Output::Json {
                let list = client.get(&path)?;
                println!("{}", serde_json::to_string_pretty(&list)?);
                return Ok(ExitCode::SUCCESS);
            }
            let list: Vec<FreezeExceptionRecord> = client.get_as(&path)?;
            let rows: Vec<Vec<String>> = list
                .into_iter()
                .map(|e| {
                    vec![
                        e.id,
                        e.freeze,
                        scope_cell(&e.scope),
                        format!("{} .. {}", e.from, e.until),
                        e.state,
                        e.requested_by,
                        e.decided_by.unwrap_or_else(|| "-".to_owned()),
                        e.justification,
                    ]
                })
                .collect();
            print_table(
                &[
                    "ID",
                    "FREEZE",
                    "SCOPE",
                    "WHEN",
                    "STATE",
                    "REQUESTED BY",
                    "DECIDED BY",
                    "JUSTIFICATION",
                ],
                &rows,
            );
            Ok(ExitCode::SUCCESS)
        }
    }
}

fn decide(server: &ServerArgs, id: &str, what: &str) -> Result<ExitCode> {
    let record: FreezeExceptionRecord = Client::new(server)?.call(
        Method::POST,
        &format!("/api/v1/freeze-exceptions/{}/{what}", encode(id)),
        Some(&Empty {}),
    )?;
    println!("{}: {}", record.id, record.state);
    Ok(ExitCode::SUCCESS)
}

fn freeze_rule_cell(definition: &FreezeSpec) -> String {
    let tz = &definition.tz;
    match &definition.rule {
        FreezeRuleSpec::Range { from, until } => format!("{from} .. {until}"),
        FreezeRuleSpec::LastBusinessDays { days, .. } => {
            format!("last {days} business days of each month {tz}")
        }
        FreezeRuleSpec::Yearly { from, until } => format!("every year {from} .. {until} {tz}"),
        FreezeRuleSpec::Recurring { window } => rule_cell(window),
    }
}
