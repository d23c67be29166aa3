//! `sluice agents …` (enrollment tokens, listing, revocation) and `sluice jobs …` (queue a job
//! for a host's agent, list, show).

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::{Context, Result, bail};
use serde_json::{Value, json};

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
            let issued = Client::new(&server)?.post(
                "/api/v1/agents/enrollment-tokens",
                &json!({"expires_in": expires}),
            )?;
            println!("{}", issued["token"].as_str().unwrap_or_default());
            eprintln!(
                "one-time enrollment token {} (expires {}); start an agent with `sluice agent --server URL --enroll-token TOKEN`",
                issued["id"].as_str().unwrap_or_default(),
                issued["expires_at"].as_str().unwrap_or_default()
            );
        }
        AgentsCommand::List { server, output } => {
            let agents = Client::new(&server)?.get("/api/v1/agents")?;
            match output {
                Output::Json => println!("{}", serde_json::to_string_pretty(&agents)?),
                Output::Table => {
                    let rows: Vec<Vec<String>> = agents
                        .as_array()
                        .into_iter()
                        .flatten()
                        .map(|a| {
                            vec![
                                text(&a["hostname"]),
                                if a["revoked_at"].is_string() {
                                    format!("revoked {}", text(&a["revoked_at"]))
                                } else {
                                    "active".to_owned()
                                },
                                text(&a["last_seen_at"]),
                                labels(&a["labels"]),
                            ]
                        })
                        .collect();
                    print_table(&["HOST", "STATE", "LAST SEEN", "LABELS"], &rows);
                }
            }
        }
        AgentsCommand::Inventory { server, host } => {
            let agent = Client::new(&server)?.post(
                &format!("/api/v1/agents/{host}/inventory-request"),
                &json!({}),
            )?;
            eprintln!(
                "asked the agent of {host} for its inventory (requested at {})",
                text(&agent["inventory_requested_at"])
            );
        }
        AgentsCommand::Revoke { server, host } => {
            let agent =
                Client::new(&server)?.post(&format!("/api/v1/agents/{host}/revoke"), &json!({}))?;
            eprintln!(
                "revoked the agent of {} at {}",
                text(&agent["hostname"]),
                text(&agent["revoked_at"])
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
                            Ok(json!({"package": package.trim(), "version": version.trim()}))
                        })
                        .collect::<Result<Vec<_>>>()?;
                    json!({"targets": targets})
                }
            };
            if let (Some(key), Some(object)) = (key, job.as_object_mut()) {
                object.insert("idempotency_key".into(), key.into());
            }
            let stored = Client::new(&server)?.send_idempotent(
                reqwest::Method::POST,
                "/api/v1/jobs",
                Some(&json!({"host": host, "job": job})),
            )?;
            match output {
                Output::Json => println!("{}", serde_json::to_string_pretty(&stored)?),
                Output::Table => println!(
                    "job {} queued for {} ({})",
                    text(&stored["job"]["id"]),
                    text(&stored["hostname"]),
                    text(&stored["state"])
                ),
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
            let jobs = Client::new(&server)?.get(&path)?;
            match output {
                Output::Json => println!("{}", serde_json::to_string_pretty(&jobs)?),
                Output::Table => {
                    let rows: Vec<Vec<String>> = jobs
                        .as_array()
                        .into_iter()
                        .flatten()
                        .map(|j| {
                            vec![
                                text(&j["job"]["id"]),
                                text(&j["hostname"]),
                                text(&j["state"]),
                                targets_of(&j["job"]["targets"]),
                                text(&j["created_at"]),
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

fn text(value: &Value) -> String {
    match value {
        Value::String(s) => s.clone(),
        Value::Null => "-".to_owned(),
        other => other.to_string(),
    }
}

fn labels(value: &Value) -> String {
    value
        .as_object()
        .map(|m| {
            m.iter()
                .map(|(k, v)| format!("{k}={}", text(v)))
                .collect::<Vec<_>>()
                .join(",")
        })
        .unwrap_or_default()
}

fn targets_of(value: &Value) -> String {
    value
        .as_array()
        .map(|targets| {
            targets
                .iter()
                .map(|t| format!("{}={}", text(&t["package"]), text(&t["version"])))
                .collect::<Vec<_>>()
                .join(" ")
        })
        .unwrap_or_default()
}
