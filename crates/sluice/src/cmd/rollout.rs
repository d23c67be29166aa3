//! `sluice rollout …`: start a scheduled change's rollout, follow it live, act on it.
//!
//! `watch` follows the server-sent events of `/api/v1/rollouts/{id}/events`: one progress bar
//! per ring (hosts finished of the ring's hosts), the current batch in its message, and every
//! transition printed above the bars as it happens. It reconnects with `Last-Event-ID` when
//! the connection drops, and exits when the rollout ends: 0 when it completed, 3 otherwise.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use anyhow::{Context, Result, bail};
use indicatif::{MultiProgress, ProgressBar, ProgressDrawTarget, ProgressStyle};
use serde_json::Value;
use sluice_core::rollout::OutcomeKind;
use sluice_protocol::rollouts::{EventDetail, HostView, OperatorAction, RolloutEvent, RolloutView};

use super::accounts::Output;
use super::client::{Client, ServerArgs, print_table};

/// Subcommands of `sluice rollout`.
#[derive(Debug, clap::Subcommand)]
pub enum RolloutCommand {
    /// Start the rollout of a scheduled change (its implementation starts with it).
    Start {
        #[command(flatten)]
        server: ServerArgs,
        /// The change, e.g. CHG-3.
        change: String,
        /// A JSON file with any of: policy, job (preflight, checks, rollback), haproxy,
        /// prometheus, override_rolled_back, resume_on_resolve (docs/rollout.md).
        #[arg(long, value_name = "FILE")]
        spec: Option<PathBuf>,
        /// Follow it until it ends.
        #[arg(long)]
        watch: bool,
        /// Output format.
        #[arg(long, value_enum, default_value = "table")]
        output: Output,
    },
    /// List rollouts, newest first.
    List {
        #[command(flatten)]
        server: ServerArgs,
        /// Only this change's.
        #[arg(long)]
        change: Option<String>,
        /// Only unfinished ones.
        #[arg(long)]
        open: bool,
        /// Output format.
        #[arg(long, value_enum, default_value = "table")]
        output: Output,
    },
    /// Where a rollout stands: rings, batches, hosts.
    Status {
        #[command(flatten)]
        server: ServerArgs,
        /// The rollout, e.g. RO-1.
        id: String,
        /// Output format.
        #[arg(long, value_enum, default_value = "table")]
        output: Output,
    },
    /// Follow a rollout live until it ends (exit 0 when it completed, 3 otherwise).
    Watch {
        #[command(flatten)]
        server: ServerArgs,
        /// The rollout.
        id: String,
    },
    /// Start nothing more until resumed.
    Pause {
        #[command(flatten)]
        server: ServerArgs,
        /// The rollout.
        id: String,
        /// Why.
        #[arg(long)]
        reason: String,
    },
    /// Go on after a pause (refused while an alert fires).
    Resume {
        #[command(flatten)]
        server: ServerArgs,
        /// The rollout.
        id: String,
    },
    /// Stop for good; jobs no agent took yet are cancelled.
    Abort {
        #[command(flatten)]
        server: ServerArgs,
        /// The rollout.
        id: String,
        /// Why.
        #[arg(long)]
        reason: String,
    },
    /// Stop and return every host it changed to its earlier versions.
    Rollback {
        #[command(flatten)]
        server: ServerArgs,
        /// The rollout.
        id: String,
        /// Why.
        #[arg(long)]
        reason: String,
    },
    /// Approve the gate into a ring (an approver other than who started the rollout).
    ApproveGate {
        #[command(flatten)]
        server: ServerArgs,
        /// The rollout.
        id: String,
        /// The ring index the gate leads to (0 is the first ring).
        #[arg(long)]
        ring: usize,
    },
    /// Go on after the breaker tripped.
    ResetBreaker {
        #[command(flatten)]
        server: ServerArgs,
        /// The rollout.
        id: String,
    },
    /// Try a failed or rolled-back host of the current ring again.
    Retry {
        #[command(flatten)]
        server: ServerArgs,
        /// The rollout.
        id: String,
        /// The host.
        host: String,
    },
}

/// Runs `sluice rollout …`.
pub fn run(command: RolloutCommand) -> Result<ExitCode> {
    match command {
        RolloutCommand::Start {
            server,
            change,
            spec,
            watch: follow,
            output,
        } => {
            let mut body = match spec {
                Some(path) => {
                    let text = std::fs::read_to_string(&path)
                        .with_context(|| format!("reading {}", path.display()))?;
                    serde_json::from_str::<Value>(&text)
                        .with_context(|| format!("{}: not JSON", path.display()))?
                }
                None => Value::Object(serde_json::Map::new()),
            };
            let Some(object) = body.as_object_mut() else {
                bail!("the spec must be a JSON object");
            };
            object.insert("change".into(), Value::String(change));
            // The spec file is the user's JSON, passed on as written but for the change: the
            // server says what is wrong with it.
            let client = Client::new(&server)?;
            let view: RolloutView = client.post_as("/api/v1/rollouts", &body)?;
            if follow {
                eprintln!("rollout {} started for {}", view.id, view.change);
                return watch(&client, &view.id);
            }
            show(&view, output)?;
        }
        RolloutCommand::List {
            server,
            change,
            open,
            output,
        } => {
            let mut path = format!("/api/v1/rollouts?open={open}");
            if let Some(change) = change {
                path.push_str(&format!("&change={change}"));
            }
            let client = Client::new(&server)?;
            match output {
                Output::Json => {
                    let list = client.get(&path)?;
                    println!("{}", serde_json::to_string_pretty(&list)?)
                }
                Output::Table => {
                    let list: Vec<RolloutView> = client.get_as(&path)?;
                    let rows: Vec<Vec<String>> = list
                        .into_iter()
                        .map(|r| {
                            vec![
                                r.id,
                                r.change,
                                r.phase.to_string(),
                                r.outcome.map_or("-", OutcomeKind::as_str).to_owned(),
                                counts(&r.counts),
                                r.created_at,
                            ]
                        })
                        .collect();
                    print_table(
                        &["ID", "CHANGE", "PHASE", "OUTCOME", "HOSTS", "STARTED"],
                        &rows,
                    );
                }
            }
        }
        RolloutCommand::Status { server, id, output } => {
            let client = Client::new(&server)?;
            let path = format!("/api/v1/rollouts/{id}");
            if output == Output::Json {
                println!("{}", serde_json::to_string_pretty(&client.get(&path)?)?);
            } else {
                show(&client.get_as(&path)?, output)?;
            }
        }
        RolloutCommand::Watch { server, id } => {
            return watch(&Client::new(&server)?, &id);
        }
        RolloutCommand::Pause { server, id, reason } => {
            act(&server, &id, OperatorAction::Pause { reason })?;
        }
        RolloutCommand::Resume { server, id } => {
            act(&server, &id, OperatorAction::Resume)?;
        }
        RolloutCommand::Abort { server, id, reason } => {
            act(&server, &id, OperatorAction::Abort { reason })?;
        }
        RolloutCommand::Rollback { server, id, reason } => {
            act(&server, &id, OperatorAction::Rollback { reason })?;
        }
        RolloutCommand::ApproveGate { server, id, ring } => {
            act(&server, &id, OperatorAction::ApproveGate { to_ring: ring })?;
        }
        RolloutCommand::ResetBreaker { server, id } => {
            act(&server, &id, OperatorAction::ResetBreaker)?;
        }
        RolloutCommand::Retry { server, id, host } => {
            act(&server, &id, OperatorAction::Retry { host })?;
        }
    }
    Ok(ExitCode::SUCCESS)
}

fn act(server: &ServerArgs, id: &str, action: OperatorAction) -> Result<()> {
    let view: RolloutView =
        Client::new(server)?.post_as(&format!("/api/v1/rollouts/{id}/actions"), &action)?;
    show(&view, Output::Table)
}

fn counts(counts: &BTreeMap<String, usize>) -> String {
    counts
        .iter()
        .filter(|(_, n)| **n > 0)
        .map(|(k, n)| format!("{k} {n}"))
        .collect::<Vec<_>>()
        .join(", ")
}

/// Prints a rollout view: a header, then one row per host.
fn show(view: &RolloutView, output: Output) -> Result<()> {
    if output == Output::Json {
        println!(
            "{}",
            serde_json::to_string_pretty(&serde_json::to_value(view)?)?
        );
        return Ok(());
    }
    println!(
        "rollout {}  change {}  phase {}{}",
        view.id,
        view.change,
        view.phase,
        view.outcome
            .map(|o| format!("  outcome {o}"))
            .unwrap_or_default()
    );
    println!("hosts: {}", counts(&view.counts));
    for (label, value) in [
        ("waiting", &view.waiting),
        ("paused", &view.pause_reason),
        ("breaker", &view.breaker_reason),
    ] {
        if let Some(value) = value {
            println!("{label}: {value}");
        }
    }
    for r in &view.regressions {
        println!("regression: {r}");
    }
    let or_dash = |v: &Option<String>| v.clone().unwrap_or_else(|| "-".to_owned());
    let mut rows = Vec::new();
    for ring in &view.rings {
        for (b, batch) in ring.batches.iter().enumerate() {
            let label = if batch.canary {
                "canary".to_owned()
            } else {
                format!("batch {b}")
            };
            for host in &batch.hosts {
                rows.push(vec![
                    ring.environment.clone(),
                    label.clone(),
                    host.name.clone(),
                    host.status.clone(),
                    or_dash(&host.job),
                    or_dash(&host.note),
                ]);
            }
        }
    }
    print_table(&["RING", "BATCH", "HOST", "STATUS", "JOB", "NOTE"], &rows);
    Ok(())
}

/// Follows the rollout's event stream until it ends.
fn watch(client: &Client, id: &str) -> Result<ExitCode> {
    let bars = Bars::new();
    let mut last_seq: Option<i64> = None;
    let mut last_view: Option<RolloutView> = None;
    loop {
        let ended = client.events(
            &format!("/api/v1/rollouts/{id}/events"),
            last_seq,
            |kind, id_field, data| {
                if let Some(seq) = id_field.and_then(|s| s.parse::<i64>().ok()) {
                    last_seq = Some(seq);
                }
                if kind == "snapshot" {
                    let Ok(view) = serde_json::from_str::<RolloutView>(data) else {
                        return false;
                    };
                    bars.update(&view);
                    let finished = view.finished;
                    last_view = Some(view);
                    return finished;
                }
                let detail = serde_json::from_str::<RolloutEvent>(data)
                    .map(|event| event.detail)
                    .unwrap_or(Value::Null);
                bars.println(&describe(&EventDetail::from_parts(kind, detail)));
                false
            },
        );
        match ended {
            Ok(true) => break,
            Ok(false) => {}
            Err(e) => bars.println(&format!("(event stream: {e:#}; reconnecting)")),
        }
        if last_view.as_ref().is_some_and(|v| v.finished) {
            break;
        }
        std::thread::sleep(Duration::from_secs(1));
    }
    bars.finish();
    let outcome = last_view.as_ref().and_then(|v| v.outcome);
    let (tally, trips, rollbacks) = match &last_view {
        Some(v) => (
            counts(&v.counts),
            v.breaker_trips.to_string(),
            v.rollbacks.to_string(),
        ),
        None => (String::new(), "-".to_owned(), "-".to_owned()),
    };
    eprintln!(
        "rollout {id}: {} ({tally}); breaker trips {trips}, rollbacks {rollbacks}",
        outcome.map_or("ended", OutcomeKind::as_str)
    );
    Ok(if outcome == Some(OutcomeKind::Completed) {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(3)
    })
}

/// One line for people per event.
pub fn describe(event: &EventDetail) -> String {
    match event {
        EventDetail::Start { change, hosts, .. } => {
            format!("started: change {change}, {hosts} hosts")
        }
        EventDetail::HostsStarted { hosts, ring, batch } => format!(
            "ring {} batch {}: started {}",
            dash(*ring),
            dash(*batch),
            names(hosts.iter().map(|h| h.host.as_str()))
        ),
        EventDetail::HostUpdated {
            host, job, outcome, ..
        } => format!(
            "{host}: job {job} {}; verifying with a fresh inventory",
            outcome.as_str()
        ),
        EventDetail::HostSucceeded { host, .. } => format!("{host}: succeeded (verified)"),
        EventDetail::HostFailed { host, reason, .. } => format!("{host}: FAILED: {reason}"),
        EventDetail::HostRolledBack {
            host, by, reason, ..
        } => format!(
            "{host}: rolled back by the {by} {}",
            reason
                .as_deref()
                .map(|r| format!("({r})"))
                .unwrap_or_default()
        ),
        EventDetail::HostPendingReboot { host } => {
            format!("{host}: updated, waiting for a reboot")
        }
        EventDetail::BreakerTripped {
            failed,
            threshold,
            on_trip,
            ..
        } => format!(
            "BREAKER TRIPPED: {failed} failed, threshold {threshold} ({})",
            on_trip.as_str()
        ),
        EventDetail::RollbackStarted { hosts } => format!(
            "rolling back {}",
            names(hosts.iter().map(|h| h.host.as_str()))
        ),
        EventDetail::RollbackFailed { host, reason, .. } => {
            format!("{host}: rollback FAILED: {reason}")
        }
        EventDetail::Promoted {
            to_ring,
            environment,
        } => format!(
            "gate passed: on to ring {to_ring} ({})",
            environment.as_deref().unwrap_or("-")
        ),
        EventDetail::Finish {
            outcome, reason, ..
        } => format!("finished: {outcome} ({reason})"),
        EventDetail::RingBaseline(ring) => {
            let measured = ring.measured.as_ref();
            let probes = match measured.map(|m| (m.probe_ms_before, m.probe_ms_after)) {
                Some((Some(b), Some(a))) => format!("median probe {b:.1} → {a:.1} ms"),
                _ => "no probe measured".to_owned(),
            };
            let load = match measured.map(|m| (m.load1_before, m.load1_after)) {
                Some((Some(b), Some(a))) => format!("load {b:.2} → {a:.2}"),
                _ => "no load measured".to_owned(),
            };
            format!(
                "ring {} compared with its baseline ({} hosts measured): {probes}, {load}{}",
                ring.environment,
                dash(measured.map(|m| m.measured)),
                if measured.is_some_and(|m| m.regression) {
                    " — REGRESSION"
                } else {
                    ""
                }
            )
        }
        EventDetail::AlertFiring { description, .. } => format!("alert firing: {description}"),
        EventDetail::AlertResolved { alert, .. } => format!("alert resolved: {alert}"),
        EventDetail::HaproxyWeight {
            backend,
            server,
            weight_percent,
            ..
        } => format!("haproxy {backend}/{server}: weight {weight_percent}%"),
        other => match other.to_parts() {
            Ok((kind, detail)) => format!("{kind}: {detail}"),
            Err(e) => format!("(an event that does not serialise: {e})"),
        },
    }
}

/// A value, or `-` without one.
fn dash<T: std::fmt::Display>(value: Option<T>) -> String {
    value.map_or_else(|| "-".to_owned(), |v| v.to_string())
}

/// Host names, comma-separated.
fn names<'a>(hosts: impl Iterator<Item = &'a str>) -> String {
    hosts.collect::<Vec<_>>().join(", ")
}

/// One bar per ring.
struct Bars {
    multi: MultiProgress,
    rings: std::cell::RefCell<BTreeMap<usize, ProgressBar>>,
}

impl Bars {
    fn new() -> Self {
        let multi = MultiProgress::with_draw_target(ProgressDrawTarget::stderr());
        Self {
            multi,
            rings: Default::default(),
        }
    }

    fn println(&self, line: &str) {
        if self.multi.is_hidden() {
            eprintln!("{line}");
        } else {
            let _ = self.multi.println(line);
        }
    }

    fn update(&self, view: &RolloutView) {
        let style = ProgressStyle::with_template("{prefix:>12} [{bar:30}] {pos}/{len} {msg}")
            .unwrap_or_else(|_| ProgressStyle::default_bar())
            .progress_chars("=> ");
        let mut rings = self.rings.borrow_mut();
        for (r, ring) in view.rings.iter().enumerate() {
            let hosts: Vec<&HostView> = ring.batches.iter().flat_map(|b| &b.hosts).collect();
            let done = hosts
                .iter()
                .filter(|h| {
                    matches!(
                        h.status.as_str(),
                        "succeeded" | "failed" | "rolled-back" | "cancelled"
                    )
                })
                .count();
            let bar = rings.entry(r).or_insert_with(|| {
                let bar = self.multi.add(ProgressBar::new(hosts.len() as u64));
                bar.set_style(style.clone());
                bar.set_prefix(ring.environment.clone());
                bar
            });
            bar.set_position(done as u64);
            let mut by_status: BTreeMap<&str, usize> = BTreeMap::new();
            for h in &hosts {
                *by_status.entry(h.status.as_str()).or_default() += 1;
            }
            let current_batch = ring.batches.iter().position(|b| {
                b.hosts
                    .iter()
                    .any(|h| matches!(h.status.as_str(), "pending" | "running" | "pending-reboot"))
            });
            let mut message: Vec<String> =
                by_status.iter().map(|(s, n)| format!("{s} {n}")).collect();
            if let Some(b) = current_batch.filter(|_| view.ring == r) {
                let canary = ring.batches.get(b).is_some_and(|batch| batch.canary);
                message.insert(
                    0,
                    if canary {
                        "canary".to_owned()
                    } else {
                        format!("batch {b}")
                    },
                );
            }
            bar.set_message(message.join(", "));
        }
    }

    fn finish(&self) {
        for bar in self.rings.borrow().values() {
            bar.finish();
        }
    }
}
