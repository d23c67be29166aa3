//! `sluice agents …` (enrollment tokens, listing, revocation) and `sluice jobs …` (queue a job
//! for a host's agent, list, show).

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::{Context, Result, bail};
use serde_json::Value;
use sluice_core::job::Target;
use sluice_protocol::Empty;
use sluice_protocol::agents::{
    AgentView, CreateEnrollmentToken, CreateJob, IssuedEnrollmentToken, JobDraft, JobRecord,
};

use super::accounts::Output;
use super::client::{Client, ServerArgs, print_table};

/// Subcommands of `sluice agents`.
#[derive(Debug, clap::Subcommand)]
pub enum AgentsCommand {
    /// One-time enrollment tokens (admin).
    #[command(subcommand)]
    Token(EnrollmentTokenCommand),
    /// List enrolled agents.
    List {
        #[command(flatten)]
        server: ServerArgs,
        /// Output format.
        #[arg(long, value_enum, default_value = "table")]
        output: Output,
    },
    /// Ask a host's agent for a fresh, whole inventory (sent on its next round).
    Inventory {
        #[command(flatten)]
        server: ServerArgs,
        /// The agent's host.
        host: String,
    },
    /// Revoke a host's agent: it is cut off at once (admin).
    Revoke {
        #[command(flatten)]
        server: ServerArgs,
        /// The agent's host.
        host: String,
    },
}

/// Subcommands of `sluice agents token`.
#[derive(Debug, clap::Subcommand)]
pub enum EnrollmentTokenCommand {
    /// Create a one-time enrollment token; the secret is printed once.
    Create {
        #[command(flatten)]
        server: ServerArgs,
        /// Lifetime if unused, e.g. 1h (at most 7d).
        #[arg(long, default_value = "1h")]
        expires: String,
    },
}

/// Runs `sluice agents …`.
pub fn run(command: AgentsCommand) -> Result<ExitCode> {
    match command {
        AgentsCommand::Token(EnrollmentTokenCommand::Create { server, expires }) => {
            let issued: IssuedEnrollmentToken = Client::new(&server)?.post_as(
                "/api/v1/agents/enrollment-tokens",
                &CreateEnrollmentToken {
                    expires_in: expires,
                },
            )?;
            println!("{}", issued.token);
            eprintln!(
                "one-time enrollment token {} (expires {}); start an agent with `sluice agent --server URL --enroll-token TOKEN`",
                issued.id, issued.expires_at
            );
        }
        AgentsCommand::List { server, output } => {
            let client = Client::new(&server)?;
            match output {
                Output::Json => {
                    let agents = client.get("/api/v1/agents")?;
                    println!("{}", serde_json::to_string_pretty(&agents)?)
                }
                Output::Table => {
                    let agents: Vec<AgentView> = client.get_as("/api/v1/agents")?;
                    let rows: Vec<Vec<String>> = agents
                        .into_iter()
                        .map(|a| {
                            vec![
                                a.hostname,
                                match a.revoked_at {
                                    Some(at) => format!("revoked {at}"),
                                    None => "active".to_owned(),
                                },
                                text(a.last_seen_at),
                                labels(&a.labels),
                            ]
                        })
                        .collect();
                    print_table(&["HOST", "STATE", "LAST SEEN", "LABELS"], &rows);
                }
            }
        }
        AgentsCommand::Inventory { server, host } => {
            let agent: AgentView = Client::new(&server)?.post_as(
                &format!("/api/v1/agents/{host}/inventory-request"),
                &Empty {},
            )?;
            eprintln!(
                "asked the agent of {host} for its inventory (requested at {})",
                text(agent.inventory_requested_at)
            );
        }
        AgentsCommand::Revoke { server, host } => {
            let agent: AgentView = Client::new(&server)?
                .post_as(&format!("/api/v1/agents/{host}/revoke"), &Empty {})?;
            eprintln!(
                "revoked the agent of {} at {}",
                agent.hostname,
                text(agent.revoked_at)
            );
        }
    }
    Ok(ExitCode::SUCCESS)
}

/// Subcommands of `sluice jobs`.
#[derive(Debug, clap::Subcommand)]
pub enum JobsCommand {
    /// Queue a job for a host's agent: exact target versions, or a job file (JSON).
    Create {
        #[command(flatten)]
        server: ServerArgs,
        /// The host.
        #[arg(long)]
        host: String,
        /// A target, `package=version`; repeat for several.
        #[arg(long = "target", value_name = "PKG=VERSION")]
        targets: Vec<String>,
        /// A job file (the job's JSON; `id` and `idempotency_key` may be left out).
        #[arg(long, conflicts_with = "targets")]
        file: Option<PathBuf>,
        /// Idempotency key: the same key twice queues one job.
        #[arg(long)]
        key: Option<String>,
        /// Output format.
        #[arg(long, value_enum, default_value = "table")]
        output: Output,
    },
    /// List jobs, newest first.
    List {
        #[command(flatten)]
        server: ServerArgs,
        /// One host's.
        #[arg(long)]
        host: Option<String>,
        /// Output format.
        #[arg(long, value_enum, default_value = "table")]
        output: Output,
    },
    /// Show one job with its report.
    Show {
        #[command(flatten)]
        server: ServerArgs,
        /// Job id.
        id: String,
    },
}

/// Runs `sluice jobs …`.
pub fn jobs(command: JobsCommand) -> Result<ExitCode> {
    match command {
        JobsCommand::Create {
            server,
            host,
            targets,
            file,
            key,
            output,
        } => {
            let mut job = match file {
                Some(path) => {
                    let text = std::fs::read_to_string(&path)
                        .with_context(|| format!("reading {}", path.display()))?;
                    serde_json::from_str::<Value>(&text)
                        .with_context(|| format!("{} is not JSON", path.display()))?
                }
                None => {
                    if targets.is_empty() {
                        bail!("give --target PKG=VERSION (one or more) or --file JOB.json");
                    }
                    let targets = targets
                        .iter()
                        .map(|t| {
                            let (package, version) = t.split_once('=').with_context(|| {
                                format!("--target {t:?}: expected PACKAGE=VERSION")
                            })?;
                            Ok(Target {
                                package: package.trim().to_owned(),
                                version: version.trim().to_owned(),
                            })
                        })
                        .collect::<Result<Vec<_>>>()?;
                    serde_json::to_value(JobDraft {
                        targets,
                        idempotency_key: None,
                    })?
                }
            };
            // The job file is the user's JSON, passed on as written but for the key.
            if let (Some(key), Some(object)) = (key, job.as_object_mut()) {
                object.insert("idempotency_key".into(), key.into());
            }
            let body = CreateJob { host, job };
            let client = Client::new(&server)?;
            match output {
                Output::Json => {
                    let stored = client.send_idempotent(
                        reqwest::Method::POST,
                        "/api/v1/jobs",
                        Some(&serde_json::to_value(&body)?),
                    )?;
                    println!("{}", serde_json::to_string_pretty(&stored)?)
                }
                Output::Table => {
                    let stored: JobRecord = client.call_idempotent(
                        reqwest::Method::POST,
                        "/api/v1/jobs",
                        Some(&body),
                    )?;
                    println!(
                        "job {} queued for {} ({})",
                        stored.job.id, stored.hostname, stored.state
                    )
                }
            }
        }
        JobsCommand::List {
            server,
            host,
            output,
        } => {
            let path = match host {
                Some(host) => format!("/api/v1/jobs?host={host}"),
                None => "/api/v1/jobs".to_owned(),
            };
            let client = Client::new(&server)?;
            match output {
                Output::Json => {
                    let jobs = client.get(&path)?;
                    println!("{}", serde_json::to_string_pretty(&jobs)?)
                }
                Output::Table => {
                    let jobs: Vec<JobRecord> = client.get_as(&path)?;
                    let rows: Vec<Vec<String>> = jobs
                        .into_iter()
                        .map(|j| {
                            vec![
                                j.job.id.clone(),
                                j.hostname,
                                j.state.to_string(),
                                targets_of(&j.job.targets),
                                j.created_at,
                            ]
                        })
                        .collect();
                    print_table(&["JOB", "HOST", "STATE", "TARGETS", "CREATED"], &rows);
                }
            }
        }
        JobsCommand::Show { server, id } => {
            let job = Client::new(&server)?.get(&format!("/api/v1/jobs/{id}"))?;
            println!("{}", serde_json::to_string_pretty(&job)?);
        }
    }
    Ok(ExitCode::SUCCESS)
}

fn text(value: Option<String>) -> String {
    value.unwrap_or_else(|| "-".to_owned())
}

fn labels(labels: &BTreeMap<String, String>) -> String {
    labels
        .iter()
        .map(|(k, v)| format!("{k}={v}"))
        .collect::<Vec<_>>()
        .join(",")
}

fn targets_of(targets: &[Target]) -> String {
    targets
        .iter()
        .map(|t| format!("{}={}", t.package, t.version))
        .collect::<Vec<_>>()
        .join(" ")
}
