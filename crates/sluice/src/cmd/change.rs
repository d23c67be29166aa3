//! `sluice change …` and `sluice policy …`: change requests and the policies that judge them,
//! on the server. The server decides (with `sluice-core`); this module reads files, sends
//! requests and formats answers: tables for people, `--output json` for scripts. A refusal
//! prints the server's reason (exit status 2). Actions carry an Idempotency-Key, so the one
//! automatic retry after a lost connection never votes twice.

use std::path::{Path, PathBuf};
use std::process::ExitCode;

use anyhow::{Context, Result, bail};
use reqwest::Method;
use serde::de::DeserializeOwned;
use serde_json::Value;
use sluice_core::change::{Action, Pin, RetrospectiveStatus, Schedule};
use sluice_protocol::changes::{ChangePage, ChangeView, CreateChange, FromFindings, Target};
use sluice_protocol::policies::{PolicyUpdate, PolicyView};

use super::accounts::Output;
use super::assets::{encode, text};
use super::client::{Client, ServerArgs, print_table};

/// What a change is made of: shared by `create` and `edit`.
#[derive(Debug, clap::Args)]
pub struct ChangeContent {
    /// One line, at most 160 characters.
    #[arg(long)]
    title: String,
    /// normal, emergency or standard.
    #[arg(long = "type", value_name = "TYPE", default_value = "normal")]
    kind: String,
    /// Make the bundle from open findings (lowest fixing versions), picked by --host,
    /// --selector, --decision, --kev or --finding.
    #[arg(long, conflicts_with = "target")]
    from_findings: bool,
    /// With --from-findings: one host.
    #[arg(long, requires = "from_findings")]
    host: Option<String>,
    /// With --from-findings: hosts a CMDB selector picks (also the default scope).
    #[arg(long, requires = "from_findings")]
    selector: Option<String>,
    /// With --from-findings: SSVC decisions, comma-separated (act,attend).
    #[arg(long, requires = "from_findings")]
    decision: Option<String>,
    /// With --from-findings: only KEV-listed findings.
    #[arg(long, requires = "from_findings")]
    kev: bool,
    /// With --from-findings: finding ids instead of a filter (repeatable).
    #[arg(long = "finding", value_name = "ID", requires = "from_findings")]
    findings: Vec<i64>,
    /// With --from-findings: a version chosen over the lowest fixing one, PACKAGE=VERSION
    /// (repeatable).
    #[arg(
        long = "pin",
        value_name = "PACKAGE=VERSION",
        requires = "from_findings"
    )]
    pins: Vec<String>,
    /// An explicit target, PACKAGE=VERSION or PACKAGE=VERSION@ECOSYSTEM (Debian:12) (repeatable).
    #[arg(long = "target", value_name = "PACKAGE=VERSION")]
    target: Vec<String>,
    /// The hosts, as a selector (required with --target).
    #[arg(long, value_name = "SELECTOR")]
    scope: Option<String>,
    /// Update types the bundle carries: security, bugfix, enhancement, kernel, third-party
    /// (repeatable; required with --target).
    #[arg(long = "update-type", value_name = "TYPE")]
    update_types: Vec<String>,
    /// Why the change is needed.
    #[arg(long)]
    justification: Option<String>,
    /// For a standard change: its pre-approved template.
    #[arg(long)]
    template: Option<String>,
    /// The plan (implementation, verification, rollback_criteria) as TOML or JSON.
    #[arg(long, value_name = "FILE")]
    plan_file: Option<PathBuf>,
}

/// Subcommands of `sluice change`.
#[derive(Debug, clap::Subcommand)]
pub enum ChangeCommand {
    /// Create a draft change from findings or explicit targets; its risk is assessed.
    Create {
        #[command(flatten)]
        server: ServerArgs,
        #[command(flatten)]
        content: ChangeContent,
        /// Output format.
        #[arg(long, value_enum, default_value = "table")]
        output: Output,
    },
    /// Replace a draft's content (same options as create); it is assessed again.
    Edit {
        #[command(flatten)]
        server: ServerArgs,
        /// Change id.
        id: String,
        #[command(flatten)]
        content: ChangeContent,
        /// Output format.
        #[arg(long, value_enum, default_value = "table")]
        output: Output,
    },
    /// Submit a draft (a standard change is approved by its template at once).
    Submit(Act),
    /// Sign off a submitted change's plan (a peer, never the requester).
    SignOff(Commented),
    /// Start CAB review (after peer sign-off when the scope needs it).
    Review(Act),
    /// Vote for a change in review.
    Approve(Commented),
    /// Vote against a change in review, or refuse it at triage.
    Reject(Reasoned),
    /// Send a submitted or in-review change back to draft.
    Revise(Reasoned),
    /// Set the implementation window.
    Schedule {
        #[command(flatten)]
        act: Act,
        /// Start, RFC 3339 (2026-11-28T22:00:00Z).
        #[arg(long)]
        start: String,
        /// End, RFC 3339.
        #[arg(long)]
        end: String,
    },
    /// Start implementation (inside the window; an emergency change at any time).
    Start(Act),
    /// Implementation finished.
    Complete(Act),
    /// Implementation failed.
    Fail(Reasoned),
    /// Implementation was rolled back.
    Rollback(Reasoned),
    /// Record the post-implementation review (for an emergency change, its retrospective).
    PostReview {
        #[command(flatten)]
        act: Act,
        /// successful, successful-with-issues or unsuccessful.
        #[arg(long, default_value = "successful")]
        outcome: String,
        /// What the review found.
        #[arg(long)]
        notes: String,
    },
    /// Close a reviewed change.
    Close(Act),
    /// Withdraw a change before implementation.
    Cancel(Reasoned),
    /// Show one change: bundle, risk and its reasons, votes, quorum, retrospective, next actions.
    Show {
        #[command(flatten)]
        server: ServerArgs,
        /// Change id.
        id: String,
        /// Output format.
        #[arg(long, value_enum, default_value = "table")]
        output: Output,
    },
    /// List changes, newest first.
    List {
        #[command(flatten)]
        server: ServerArgs,
        /// States, comma-separated (submitted,in-review).
        #[arg(long)]
        state: Option<String>,
        /// standard, normal or emergency.
        #[arg(long = "type", value_name = "TYPE")]
        kind: Option<String>,
        /// Only changes this user requested.
        #[arg(long)]
        requester: Option<String>,
        /// low, medium, high or very-high.
        #[arg(long)]
        risk: Option<String>,
        /// Only emergency changes whose retrospective review is overdue.
        #[arg(long)]
        overdue_review: bool,
        /// How many (at most 1000).
        #[arg(long, default_value_t = 100)]
        limit: u32,
        /// Output format.
        #[arg(long, value_enum, default_value = "table")]
        output: Output,
    },
    /// Export a change as a ServiceNow change_request record or a Jira issue (JSON).
    Export {
        #[command(flatten)]
        server: ServerArgs,
        /// Change id.
        id: String,
        /// servicenow or jira.
        #[arg(long, default_value = "servicenow")]
        format: String,
        /// Jira: the project key (required for jira).
        #[arg(long)]
        project: Option<String>,
        /// ServiceNow: the assignment group.
        #[arg(long)]
        assignment_group: Option<String>,
    },
}

/// An action on one change.
#[derive(Debug, clap::Args)]
pub struct Act {
    #[command(flatten)]
    server: ServerArgs,
    /// Change id.
    id: String,
    /// Output format of the changed record.
    #[arg(long, value_enum, default_value = "table")]
    output: Output,
}

/// An action with an optional comment.
#[derive(Debug, clap::Args)]
pub struct Commented {
    #[command(flatten)]
    act: Act,
    /// Remarks.
    #[arg(long)]
    comment: Option<String>,
}

/// An action that needs a reason.
#[derive(Debug, clap::Args)]
pub struct Reasoned {
    #[command(flatten)]
    act: Act,
    /// Why.
    #[arg(long)]
    reason: String,
}

/// Runs `sluice change …`.
pub fn run(command: ChangeCommand) -> Result<ExitCode> {
    match command {
        ChangeCommand::Create {
            server,
            content,
            output,
        } => {
            let body = content_body(&content)?;
            let client = Client::new(&server)?;
            if output == Output::Json {
                let change = client.send_idempotent(
                    Method::POST,
                    "/api/v1/changes",
                    Some(&serde_json::to_value(&body)?),
                )?;
                println!("{}", serde_json::to_string_pretty(&change)?);
            } else {
                let change: ChangeView =
                    client.call_idempotent(Method::POST, "/api/v1/changes", Some(&body))?;
                print_change(&change)?;
            }
            Ok(ExitCode::SUCCESS)
        }
        ChangeCommand::Edit {
            server,
            id,
            content,
            output,
        } => {
            let body = content_body(&content)?;
            let client = Client::new(&server)?;
            let path = format!("/api/v1/changes/{}", encode(&id));
            if output == Output::Json {
                let change =
                    client.send(Method::PUT, &path, Some(&serde_json::to_value(&body)?))?;
                println!("{}", serde_json::to_string_pretty(&change)?);
            } else {
                let change: ChangeView = client.call(Method::PUT, &path, Some(&body))?;
                print_change(&change)?;
            }
            Ok(ExitCode::SUCCESS)
        }
        ChangeCommand::Submit(act) => action(&act, Action::Submit),
        ChangeCommand::SignOff(c) => action(&c.act, Action::SignOffPlan { comment: c.comment }),
        ChangeCommand::Review(act) => action(&act, Action::StartReview),
        ChangeCommand::Approve(c) => action(&c.act, Action::Approve { comment: c.comment }),
        ChangeCommand::Reject(r) => action(&r.act, Action::Reject { reason: r.reason }),
        ChangeCommand::Revise(r) => action(&r.act, Action::Revise { reason: r.reason }),
        ChangeCommand::Schedule { act, start, end } => action(
            &act,
            Action::Schedule {
                window: Schedule {
                    start: wire("--start", &start)?,
                    end: wire("--end", &end)?,
                },
                conflicts: Vec::new(),
            },
        ),
        ChangeCommand::Start(act) => action(&act, Action::StartImplementation),
        ChangeCommand::Complete(act) => action(&act, Action::Complete),
        ChangeCommand::Fail(r) => action(&r.act, Action::Fail { reason: r.reason }),
        ChangeCommand::Rollback(r) => action(&r.act, Action::RollBack { reason: r.reason }),
        ChangeCommand::PostReview {
            act,
            outcome,
            notes,
        } => action(
            &act,
            Action::Review {
                outcome: wire("--outcome", &outcome)?,
                notes,
            },
        ),
        ChangeCommand::Close(act) => action(&act, Action::Close),
        ChangeCommand::Cancel(r) => action(&r.act, Action::Cancel { reason: r.reason }),
        ChangeCommand::Show { server, id, output } => {
            let client = Client::new(&server)?;
            let path = format!("/api/v1/changes/{}", encode(&id));
            if output == Output::Json {
                println!("{}", serde_json::to_string_pretty(&client.get(&path)?)?);
            } else {
                print_change(&client.get_as(&path)?)?;
            }
            Ok(ExitCode::SUCCESS)
        }
        ChangeCommand::List {
            server,
            state,
            kind,
            requester,
            risk,
            overdue_review,
            limit,
            output,
        } => {
            let mut query = vec![format!("limit={limit}")];
            for (key, value) in [
                ("state", state),
                ("type", kind),
                ("requester", requester),
                ("risk", risk),
            ] {
                if let Some(value) = value {
                    query.push(format!("{key}={}", encode(&value)));
                }
            }
            if overdue_review {
                query.push("overdue_review=true".to_owned());
            }
            let client = Client::new(&server)?;
            let path = format!("/api/v1/changes?{}", query.join("&"));
            if output == Output::Json {
                let page = client.get(&path)?;
                let items: Vec<&Value> = page["items"].as_array().into_iter().flatten().collect();
                println!("{}", serde_json::to_string_pretty(&items)?);
                return Ok(ExitCode::SUCCESS);
            }
            let page: ChangePage = client.get_as(&path)?;
            let rows: Vec<Vec<String>> = page
                .items
                .into_iter()
                .map(|c| {
                    vec![
                        c.id,
                        c.kind,
                        c.state,
                        c.risk.unwrap_or_else(|| "-".to_owned()),
                        c.requester,
                        retrospective_cell(&c.retrospective),
                        c.title,
                    ]
                })
                .collect();
            print_table(
                &[
                    "ID",
                    "TYPE",
                    "STATE",
                    "RISK",
                    "REQUESTER",
                    "RETROSPECTIVE",
                    "TITLE",
                ],
                &rows,
            );
            eprintln!("{} of {} changes", rows.len(), page.total);
            Ok(ExitCode::SUCCESS)
        }
        ChangeCommand::Export {
            server,
            id,
            format,
            project,
            assignment_group,
        } => {
            let mut query = vec![format!("format={}", encode(&format))];
            if let Some(project) = project {
                query.push(format!("project={}", encode(&project)));
            }
            if let Some(group) = assignment_group {
                query.push(format!("assignment_group={}", encode(&group)));
            }
            let record = Client::new(&server)?.get(&format!(
                "/api/v1/changes/{}/export?{}",
                encode(&id),
                query.join("&")
            ))?;
            println!("{}", serde_json::to_string_pretty(&record)?);
            Ok(ExitCode::SUCCESS)
        }
    }
}

/// A command-line word read as the API's value (`--outcome successful`, `--type normal`, a
/// timestamp), so a wrong one is named before anything is sent.
fn wire<T: DeserializeOwned>(flag: &str, text: &str) -> Result<T> {
    serde_json::from_value(Value::String(text.trim().to_owned()))
        .with_context(|| format!("{flag} {text:?}"))
}

fn split_pair<'t>(text: &'t str, what: &str) -> Result<(&'t str, &'t str)> {
    let (left, right) = text
        .split_once('=')
        .with_context(|| format!("{what}: expected PACKAGE=VERSION, got {text:?}"))?;
    if left.trim().is_empty() || right.trim().is_empty() {
        bail!("{what}: expected PACKAGE=VERSION, got {text:?}");
    }
    Ok((left.trim(), right.trim()))
}

/// The request body of create and edit.
fn content_body(content: &ChangeContent) -> Result<CreateChange> {
    let mut body = CreateChange {
        title: content.title.clone(),
        kind: wire("--type", &content.kind)?,
        from_findings: None,
        targets: None,
        pins: Vec::new(),
        scope: content.scope.clone(),
        update_types: None,
        justification: content.justification.clone(),
        template: content.template.clone(),
        plan: None,
        plan_toml: None,
    };
    if content.from_findings {
        body.from_findings = Some(FromFindings {
            host: content.host.clone(),
            selector: content.selector.clone(),
            decision: content.decision.clone(),
            kev: content.kev.then_some(true),
            ids: content.findings.clone(),
        });
        for pin in &content.pins {
            let (package, version) = split_pair(pin, "--pin")?;
            body.pins.push(Pin {
                package: package.to_owned(),
                ecosystem: None,
                version: version.to_owned(),
            });
        }
    } else if !content.target.is_empty() {
        let mut targets = Vec::new();
        for target in &content.target {
            let (package, rest) = split_pair(target, "--target")?;
            let (version, ecosystem) = match rest.rsplit_once('@') {
                Some((version, ecosystem)) => (version, Some(ecosystem.to_owned())),
                None => (rest, None),
            };
            targets.push(Target {
                package: package.to_owned(),
                version: version.to_owned(),
                ecosystem,
            });
        }
        body.targets = Some(targets);
    } else {
        bail!(
            "say what the change is made of: --from-findings (with a filter) or --target PACKAGE=VERSION"
        );
    }
    if !content.update_types.is_empty() {
        body.update_types = Some(
            content
                .update_types
                .iter()
                .map(|t| wire("--update-type", t))
                .collect::<Result<_>>()?,
        );
    }
    if let Some(path) = &content.plan_file {
        plan_field(path, &mut body)?;
    }
    Ok(body)
}

/// The plan file: JSON (by its extension, or when it starts with `{`) goes as `plan`, anything
/// else as `plan_toml`, which the server reads.
fn plan_field(path: &Path, body: &mut CreateChange) -> Result<()> {
    let text =
        std::fs::read_to_string(path).with_context(|| format!("cannot read {}", path.display()))?;
    let json = match path.extension().and_then(|e| e.to_str()) {
        Some("json") => true,
        Some("toml") => false,
        _ => text.trim_start().starts_with('{'),
    };
    if json {
        let value: Value = serde_json::from_str(&text)
            .with_context(|| format!("{} is not valid JSON", path.display()))?;
        body.plan = Some(
            serde_json::from_value(value)
                .with_context(|| format!("{} is not a change plan", path.display()))?,
        );
    } else {
        body.plan_toml = Some(text);
    }
    Ok(())
}

fn action(act: &Act, action: Action) -> Result<ExitCode> {
    let client = Client::new(&act.server)?;
    let path = format!("/api/v1/changes/{}/actions", encode(&act.id));
    if act.output == Output::Json {
        let change =
            client.send_idempotent(Method::POST, &path, Some(&serde_json::to_value(&action)?))?;
        println!("{}", serde_json::to_string_pretty(&change)?);
        return Ok(ExitCode::SUCCESS);
    }
    let view: ChangeView = client.call_idempotent(Method::POST, &path, Some(&action))?;
    println!(
        "{}: {} ({} by {})",
        view.change.id,
        view.change.state.as_str(),
        action.kind().as_str(),
        view.change
            .history
            .last()
            .map_or_else(|| "?".to_owned(), |h| h.by.clone())
    );
    for reason in view.quorum.iter().flat_map(|q| &q.reasons) {
        println!("  {reason}");
    }
    let retrospective = retrospective_cell(&view.retrospective);
    if retrospective != "-" {
        println!("  retrospective review {retrospective}");
    }
    Ok(ExitCode::SUCCESS)
}

fn retrospective_cell(status: &RetrospectiveStatus) -> String {
    match status {
        RetrospectiveStatus::Due { by } => format!("due by {by}"),
        RetrospectiveStatus::Overdue { by, .. } => {
            // The lateness as the API words it (`2h 30m`), from the status's own JSON.
            let overdue_by = serde_json::to_value(status)
                .ok()
                .and_then(|v| v.get("overdue_by").map(text))
                .unwrap_or_else(|| "-".to_owned());
            format!("OVERDUE by {overdue_by} (due {by})")
        }
        RetrospectiveStatus::Done { late: true, .. } => "done (late)".to_owned(),
        RetrospectiveStatus::Done { .. } => "done".to_owned(),
        RetrospectiveStatus::NotRequired => "-".to_owned(),
    }
}

/// A list for people: items joined with `,`, none as `-`.
fn list<T: AsRef<str>>(items: impl IntoIterator<Item = T>) -> String {
    let items: Vec<String> = items.into_iter().map(|i| i.as_ref().to_owned()).collect();
    if items.is_empty() {
        "-".to_owned()
    } else {
        items.join(",")
    }
}

/// A value's name on the wire (`lowest-fixing`, `Debian:12`), as people see it.
fn wire_name(value: &impl serde::Serialize) -> String {
    serde_json::to_value(value).map_or_else(|_| "-".to_owned(), |v| text(&v))
}

fn print_change(view: &ChangeView) -> Result<()> {
    let change = &view.change;
    println!("{}  {}", change.id, change.title);
    let risk = change.assessment.as_ref().map(|a| &a.risk);
    let mut rows: Vec<(&str, String)> = vec![
        ("type", change.kind.as_str().to_owned()),
        ("state", change.state.as_str().to_owned()),
        ("requester", change.requester.clone()),
        ("scope", wire_name(&change.scope)),
        (
            "risk",
            risk.map_or_else(
                || "-".to_owned(),
                |r| format!("{} (score {})", r.level.as_str(), r.score),
            ),
        ),
        (
            "policy",
            change
                .policy_version
                .map_or_else(|| "-".to_owned(), |v| v.to_string()),
        ),
        (
            "update types",
            list(change.update_types.iter().map(|t| t.as_str())),
        ),
    ];
    if let Some(template) = &change.template {
        rows.push(("template", template.clone()));
    }
    if let Some(window) = &change.schedule {
        rows.push(("window", format!("{} to {}", window.start, window.end)));
    }
    rows.push(("retrospective", retrospective_cell(&view.retrospective)));
    if let Some(reason) = &change.outcome_reason {
        rows.push(("reason", reason.clone()));
    }
    rows.push(("version", view.version.to_string()));
    rows.push(("next", list(view.next_actions.iter().map(|a| a.as_str()))));
    for (key, value) in rows {
        println!("  {key:<14} {value}");
    }
    if let Some(risk) = risk {
        println!("risk reasons:");
        for reason in &risk.reasons {
            println!("  {reason}");
        }
    }
    if let Some(peer) = change.assessment.as_ref().map(|a| &a.peer_review)
        && peer.required
    {
        println!("peer review needed: {}", list(&peer.reasons));
    }
    println!("bundle:");
    let items: Vec<Vec<String>> = change
        .bundle
        .iter()
        .map(|i| {
            vec![
                format!("  {}", i.package),
                i.ecosystem
                    .as_ref()
                    .map_or_else(|| "-".to_owned(), ToString::to_string),
                i.target_version.clone(),
                wire_name(&i.source),
                if i.kev { "KEV" } else { "-" }.to_owned(),
                list(&i.advisories),
            ]
        })
        .collect();
    print_table(
        &[
            "  PACKAGE",
            "ECOSYSTEM",
            "TARGET",
            "SOURCE",
            "KEV",
            "ADVISORIES",
        ],
        &items,
    );
    if !view.unresolved.is_empty() {
        println!("left open:");
        for u in &view.unresolved {
            println!("  {} {}: {}", u.package, u.advisory, u.reason);
        }
    }
    for sign_off in &change.sign_offs {
        println!("signed off by {} at {}", sign_off.by, sign_off.at);
    }
    for vote in &change.votes {
        println!(
            "vote: {} {} ({}) at {}",
            vote.voter,
            wire_name(&vote.decision),
            list(&vote.groups),
            vote.at
        );
    }
    for escalation in &change.escalations {
        println!(
            "escalated to {} at {}",
            escalation.group, escalation.recorded_at
        );
    }
    if let Some(quorum) = &view.quorum {
        println!("quorum:");
        for reason in &quorum.reasons {
            println!("  {reason}");
        }
    }
    Ok(())
}

/// Subcommands of `sluice policy`.
#[derive(Debug, clap::Subcommand)]
pub enum PolicyCommand {
    /// The CAB policy: approval rules, emergency path, templates, peer review.
    #[command(subcommand)]
    Cab(PolicyAction),
    /// The deferral policy: longest durations, renewals.
    #[command(subcommand)]
    Deferral(PolicyAction),
}

/// What to do with a policy.
#[derive(Debug, clap::Subcommand)]
pub enum PolicyAction {
    /// Print the current version (TOML, ready to edit; or JSON).
    Show {
        #[command(flatten)]
        server: ServerArgs,
        /// toml or json.
        #[arg(long, default_value = "toml")]
        output: String,
    },
    /// Store a new version from a TOML or JSON file (admin); its version is set by the server.
    Set {
        #[command(flatten)]
        server: ServerArgs,
        /// The policy file.
        file: PathBuf,
        /// The version the edit was based on: refused if another edit came first.
        #[arg(long, value_name = "VERSION")]
        based_on: Option<u32>,
    },
}

/// Runs `sluice policy …`.
pub fn policy(command: PolicyCommand) -> Result<ExitCode> {
    let (kind, action) = match command {
        PolicyCommand::Cab(action) => ("cab", action),
        PolicyCommand::Deferral(action) => ("deferral", action),
    };
    let path = format!("/api/v1/policies/{kind}");
    match action {
        PolicyAction::Show { server, output } => {
            let client = Client::new(&server)?;
            match output.as_str() {
                "json" => println!("{}", serde_json::to_string_pretty(&client.get(&path)?)?),
                "toml" => {
                    let policy: PolicyView = client.get_as(&path)?;
                    let or_dash = |v: Option<String>| v.unwrap_or_else(|| "-".to_owned());
                    let origin = if policy.default {
                        "the built-in default".to_owned()
                    } else {
                        format!(
                            "stored by {} at {}",
                            or_dash(policy.created_by),
                            or_dash(policy.created_at)
                        )
                    };
                    println!("# {kind} policy version {}, {origin}", policy.version);
                    print!("{}", policy.toml);
                }
                other => bail!("--output {other:?}: toml or json"),
            }
            Ok(ExitCode::SUCCESS)
        }
        PolicyAction::Set {
            server,
            file,
            based_on,
        } => {
            let text_content = std::fs::read_to_string(&file)
                .with_context(|| format!("cannot read {}", file.display()))?;
            let is_json = file.extension().and_then(|e| e.to_str()) == Some("json")
                || text_content.trim_start().starts_with('{');
            // The policy document is the user's, passed on as written: the server checks it.
            let body = if is_json {
                let policy: Value = serde_json::from_str(&text_content)
                    .with_context(|| format!("{} is not valid JSON", file.display()))?;
                PolicyUpdate {
                    toml: None,
                    policy: Some(policy),
                    based_on,
                }
            } else {
                PolicyUpdate {
                    toml: Some(text_content),
                    policy: None,
                    based_on,
                }
            };
            let stored: PolicyView = Client::new(&server)?.call(Method::PUT, &path, Some(&body))?;
            println!("stored {kind} policy version {}", stored.version);
            Ok(ExitCode::SUCCESS)
        }
    }
}
