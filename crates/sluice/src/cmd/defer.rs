//! `sluice defer …`: deferrals, risk acceptances and legacy pins on the server. Request, approve,
//! renew, revoke, list; the rules are the server's (`sluice_core::deferral`), refusals print its
//! reason.

use std::process::ExitCode;

use anyhow::{Context, Result, bail};
use jiff::{SignedDuration, Timestamp};
use reqwest::Method;
use serde::Serialize;
use sluice_core::deferral::{DeferralKind, DeferralRequest, DeferralStatus, DeferralTarget};
use sluice_protocol::deferrals::{ApproveBody, DeferralView, RenewBody, RevokeBody};

use super::accounts::Output;
use super::assets::encode;
use super::client::{Client, ServerArgs, print_table};

/// Until when: a time or a day (`--until`), or a duration from now (`--for`).
#[derive(Debug, clap::Args)]
#[group(required = true, multiple = false)]
pub struct Expiry {
    /// Until this time (2026-12-31T00:00:00Z) or day (2026-12-31, midnight UTC).
    #[arg(long)]
    until: Option<String>,
    /// For this long from now (30d, 12h, 90d).
    #[arg(long = "for", value_name = "DURATION")]
    duration: Option<String>,
}

impl Expiry {
    fn timestamp(&self) -> Result<Timestamp> {
        if let Some(until) = &self.until {
            if let Ok(at) = until.parse::<Timestamp>() {
                return Ok(at);
            }
            let day: jiff::civil::Date = until.parse().with_context(|| {
                format!("--until {until:?}: a time (RFC 3339) or a day (YYYY-MM-DD)")
            })?;
            return Ok(day.to_zoned(jiff::tz::TimeZone::UTC)?.timestamp());
        }
        let text = self.duration.as_deref().unwrap_or_default();
        let span: jiff::Span = text
            .parse()
            .with_context(|| format!("--for {text:?}: a duration such as 30d or 12h"))?;
        let seconds = span.total((jiff::Unit::Second, jiff::civil::date(2000, 1, 1)))?;
        let duration = SignedDuration::try_from_secs_f64(seconds)
            .with_context(|| format!("--for {text:?}: too long"))?;
        Ok(Timestamp::now().checked_add(duration)?)
    }
}

/// Subcommands of `sluice defer`.
#[derive(Debug, clap::Subcommand)]
pub enum DeferCommand {
    /// Ask for a deferral (or a risk acceptance, or a legacy pin) of a finding or of a package on
    /// a host; it covers nothing until another person approves it.
    Create {
        #[command(flatten)]
        server: ServerArgs,
        /// A finding id (from `sluice findings list --output json`).
        #[arg(long, conflicts_with_all = ["host", "package"])]
        finding: Option<i64>,
        /// A host (with --package).
        #[arg(long, requires = "package")]
        host: Option<String>,
        /// A package on --host.
        #[arg(long, requires = "host")]
        package: Option<String>,
        /// deferral, risk-acceptance (approved by security) or legacy-pin (with --pin-version).
        #[arg(long, default_value = "deferral")]
        kind: String,
        /// For a legacy pin: the version the package is held at.
        #[arg(long, value_name = "VERSION")]
        pin_version: Option<String>,
        /// Why (at least the policy's number of characters).
        #[arg(long)]
        justification: String,
        #[command(flatten)]
        expiry: Expiry,
        /// Output format.
        #[arg(long, value_enum, default_value = "table")]
        output: Output,
    },
    /// Approve a pending record (never your own; a risk acceptance needs the security role).
    Approve {
        #[command(flatten)]
        server: ServerArgs,
        /// Record id (DEF-3).
        id: String,
    },
    /// Renew an approved (or expired) record to a new expiry.
    Renew {
        #[command(flatten)]
        server: ServerArgs,
        /// Record id.
        id: String,
        #[command(flatten)]
        expiry: Expiry,
        /// A new justification, if the reason changed.
        #[arg(long)]
        justification: Option<String>,
    },
    /// Withdraw a record.
    Revoke {
        #[command(flatten)]
        server: ServerArgs,
        /// Record id.
        id: String,
        /// Why.
        #[arg(long)]
        reason: String,
    },
    /// List records, newest first (revoked ones only with --status revoked).
    List {
        #[command(flatten)]
        server: ServerArgs,
        /// Only records on this host.
        #[arg(long)]
        host: Option<String>,
        /// Only records for this finding.
        #[arg(long)]
        finding: Option<i64>,
        /// pending, active, expired or revoked.
        #[arg(long)]
        status: Option<String>,
        /// Output format.
        #[arg(long, value_enum, default_value = "table")]
        output: Output,
    },
}

/// Runs `sluice defer …`.
pub fn run(command: DeferCommand) -> Result<ExitCode> {
    match command {
        DeferCommand::Create {
            server,
            finding,
            host,
            package,
            kind,
            pin_version,
            justification,
            expiry,
            output,
        } => {
            let target = match (finding, host, package) {
                (Some(id), _, _) => DeferralTarget::Finding { id: id.to_string() },
                (None, Some(host), Some(package)) => DeferralTarget::HostPackage { host, package },
                _ => bail!("say what is deferred: --finding ID, or --host HOST --package PACKAGE"),
            };
            let kind = match (kind.as_str(), pin_version) {
                ("legacy-pin", Some(version)) => DeferralKind::LegacyPin { version },
                ("legacy-pin", None) => bail!("a legacy pin needs --pin-version"),
                ("deferral", None) => DeferralKind::Deferral,
                ("risk-acceptance", None) => DeferralKind::RiskAcceptance,
                (other, None) => {
                    bail!("--kind {other:?}: one of deferral, risk-acceptance, legacy-pin")
                }
                (_, Some(_)) => bail!("--pin-version is for --kind legacy-pin"),
            };
            let body = DeferralRequest {
                target,
                kind,
                justification,
                expires_at: expiry.timestamp()?,
            };
            let client = Client::new(&server)?;
            if output == Output::Json {
                let record = client.send_idempotent(
                    Method::POST,
                    "/api/v1/deferrals",
                    Some(&serde_json::to_value(&body)?),
                )?;
                println!("{}", serde_json::to_string_pretty(&record)?);
            } else {
                let record: DeferralView =
                    client.call_idempotent(Method::POST, "/api/v1/deferrals", Some(&body))?;
                println!(
                    "{} requested ({}); it covers nothing until someone else approves it",
                    record.deferral.id,
                    status_cell(&record.status)
                );
            }
            Ok(ExitCode::SUCCESS)
        }
        DeferCommand::Approve { server, id } => step(&server, &id, "approve", &ApproveBody {}),
        DeferCommand::Renew {
            server,
            id,
            expiry,
            justification,
        } => {
            let body = RenewBody {
                expires_at: expiry.timestamp()?,
                justification,
            };
            step(&server, &id, "renew", &body)
        }
        DeferCommand::Revoke { server, id, reason } => {
            step(&server, &id, "revoke", &RevokeBody { reason })
        }
        DeferCommand::List {
            server,
            host,
            finding,
            status,
            output,
        } => {
            let mut query = Vec::new();
            if let Some(host) = host {
                query.push(format!("host={}", encode(&host)));
            }
            if let Some(finding) = finding {
                query.push(format!("finding={finding}"));
            }
            if let Some(status) = status {
                query.push(format!("status={}", encode(&status)));
            }
            let path = format!("/api/v1/deferrals?{}", query.join("&"));
            let client = Client::new(&server)?;
            if output == Output::Json {
                let list = client.get(&path)?;
                println!("{}", serde_json::to_string_pretty(&list)?);
                return Ok(ExitCode::SUCCESS);
            }
            let list: Vec<DeferralView> = client.get_as(&path)?;
            let rows: Vec<Vec<String>> = list
                .into_iter()
                .map(|d| {
                    let status = status_cell(&d.status);
                    let d = d.deferral;
                    vec![
                        d.id,
                        target_cell(&d.target),
                        kind_cell(&d.kind),
                        status,
                        d.requested_by,
                        d.approved_by.unwrap_or_else(|| "-".to_owned()),
                        d.renewals.to_string(),
                        d.justification,
                    ]
                })
                .collect();
            print_table(
                &[
                    "ID",
                    "TARGET",
                    "KIND",
                    "STATUS",
                    "REQUESTED BY",
                    "APPROVED BY",
                    "RENEWALS",
                    "JUSTIFICATION",
                ],
                &rows,
            );
            Ok(ExitCode::SUCCESS)
        }
    }
}

fn step(server: &ServerArgs, id: &str, what: &str, body: &impl Serialize) -> Result<ExitCode> {
    let record: DeferralView = Client::new(server)?.call(
        Method::POST,
        &format!("/api/v1/deferrals/{}/{what}", encode(id)),
        Some(body),
    )?;
    println!("{}: {}", record.deferral.id, status_cell(&record.status));
    Ok(ExitCode::SUCCESS)
}

fn status_cell(status: &DeferralStatus) -> String {
    match status {
        DeferralStatus::Active { until } => format!("active until {until}"),
        DeferralStatus::Expired { since } => format!("expired {since}"),
        DeferralStatus::Revoked { at } => format!("revoked {at}"),
        DeferralStatus::Pending => "pending".to_owned(),
    }
}

fn target_cell(target: &DeferralTarget) -> String {
    match target {
        DeferralTarget::Finding { id } => format!("finding {id}"),
        DeferralTarget::HostPackage { host, package } => format!("{package} on {host}"),
    }
}

fn kind_cell(kind: &DeferralKind) -> String {
    match kind {
        DeferralKind::Deferral => "deferral".to_owned(),
        DeferralKind::RiskAcceptance => "risk-acceptance".to_owned(),
        DeferralKind::LegacyPin { version } => format!("legacy-pin {version}"),
    }
}
