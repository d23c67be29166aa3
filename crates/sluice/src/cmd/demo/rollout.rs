//! Starting a change's rollout on the server and watching it to the end: a line per host as it
//! finishes (with the version dpkg reports in its root), the breaker when it trips, one
//! progress bar per ring on a terminal.

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use indicatif::ProgressBar;
use serde_json::{Value, json};

use super::fleet::Host;
use super::narrate::{Narrator, pause};
use super::packages;
use crate::cmd::client::Client;

/// How a rollout ended.
#[derive(Debug, Clone)]
pub struct RolloutOutcome {
    /// `RO-n`.
    pub id: String,
    /// `completed`, `rolled-back`, `aborted`, `failed`.
    pub outcome: String,
    /// Its phase at the end.
    pub phase: String,
    /// How often the breaker tripped.
    pub breaker_trips: u64,
    /// Rollbacks the rollout carried out.
    pub rollbacks: u64,
    /// Seconds from start to finish.
    pub seconds: f64,
}

fn text(value: &Value) -> String {
    match value {
        Value::String(s) => s.clone(),
        Value::Null => "-".to_owned(),
        other => other.to_string(),
    }
}

/// The post-update check: the package's own health script, inside the agent's root.
fn health_check() -> Value {
    json!({
        "type": "command",
        "argv": ["/bin/sh", "-c", format!("exec \"$SLUICE_ROOT/{}\"", packages::HEALTH)],
        "timeout_secs": 10
    })
}

/// Starts the rollout of a scheduled change and watches it until it is finished.
pub fn run(
    client: &Client,
    change: &str,
    target: &str,
    policy: Value,
    hosts: &[Host],
    narrator: &Narrator,
) -> Result<RolloutOutcome> {
    let before: BTreeMap<String, String> = hosts
        .iter()
        .map(|h| {
            let version = h
                .installed(packages::PACKAGE)
                .ok()
                .flatten()
                .unwrap_or_else(|| "none".to_owned());
            (h.name.clone(), version)
        })
        .collect();
    let started = Instant::now();
    let created = client
        .post(
            "/api/v1/rollouts",
            &json!({
                "change": change,
                "policy": policy,
                "job": {
                    "checks": [health_check()],
                    "rollback": {"on_failure": "rollback"}
                },
                "override_rolled_back": false
            }),
        )
        .with_context(|| format!("starting the rollout of {change}"))?;
    let id = created["id"]
        .as_str()
        .context("the rollout has no id")?
        .to_owned();
    narrator.say(format!(
        "  alice starts rollout {id} of {change}: rings {}, canary {}, batches of {}, breaker {} per batch, on trip {}{}",
        policy["ring_order"]
            .as_array()
            .map(|r| r.iter().map(text).collect::<Vec<_>>().join(" → "))
            .unwrap_or_default(),
        size(&policy["canary"]),
        size(&policy["batch"]),
        size(&policy["breaker"]["per_batch"]),
        text(&policy["on_trip"]),
        if policy["follow_the_sun"] == json!(true) {
            ", follow the sun (east to west)"
        } else {
            ""
        }
    ));
    let mut watch = Watch {
        narrator,
        client,
        target,
        before,
        hosts,
        status: BTreeMap::new(),
        bars: Vec::new(),
        trips: 0,
        waiting: None,
    };
    let deadline = Instant::now() + Duration::from_secs(900);
    let view = loop {
        let view = client.get(&format!("/api/v1/rollouts/{id}"))?;
        watch.observe(&view);
        if view["finished"] == json!(true) {
            break view;
        }
        if Instant::now() > deadline {
            bail!("rollout {id} did not finish within 15 minutes: {view}");
        }
        pause(Duration::from_millis(250))?;
    };
    for bar in &watch.bars {
        narrator.clear(bar);
    }
    let outcome = RolloutOutcome {
        id: id.clone(),
        outcome: text(&view["outcome"]),
        phase: text(&view["phase"]),
        breaker_trips: view["breaker_trips"].as_u64().unwrap_or(0),
        rollbacks: view["rollbacks"].as_u64().unwrap_or(0),
        seconds: started.elapsed().as_secs_f64(),
    };
    let counts = &view["counts"];
    narrator.say(format!(
        "  rollout {id} {} in {:.1}s: {} succeeded, {} failed, {} rolled back, {} never started; breaker trips {}, rollbacks {}",
        outcome.outcome,
        outcome.seconds,
        counts["succeeded"].as_u64().unwrap_or(0),
        counts["failed"].as_u64().unwrap_or(0),
        counts["rolled-back"].as_u64().unwrap_or(0),
        counts["pending"].as_u64().unwrap_or(0),
        outcome.breaker_trips,
        outcome.rollbacks
    ));
    Ok(outcome)
}

fn size(value: &Value) -> String {
    if let Some(n) = value["count"].as_u64() {
        format!("{n}")
    } else if let Some(p) = value["percent"].as_u64() {
        format!("{p}%")
    } else {
        "none".to_owned()
    }
}

/// A breaker's scope in words: `the dev canary`, `batch 2 of prod`, `ring test`.
fn scope(scope: &Value, rings: &[Value]) -> String {
    let ring = scope["ring"]
        .as_u64()
        .and_then(|r| rings.get(usize::try_from(r).ok()?));
    let env = ring.map_or_else(|| text(&scope["ring"]), |r| text(&r["environment"]));
    match (scope["kind"].as_str(), scope["batch"].as_u64()) {
        (Some("batch"), Some(batch)) => {
            let canary = ring
                .and_then(|r| r["batches"].get(usize::try_from(batch).ok()?))
                .is_some_and(|b| b["canary"] == json!(true));
            if canary {
                format!("the {env} canary")
            } else {
                format!("batch {batch} of {env}")
            }
        }
        (Some("ring"), _) => format!("ring {env}"),
        _ => scope.to_string(),
    }
}

/// Timestamps to the second: `…T01:12:59.819934657Z` reads `…T01:12:59Z`.
fn without_fractions(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    let mut chars = text.chars().peekable();
    while let Some(c) = chars.next() {
        let after_seconds = c == '.' && out.chars().last().is_some_and(|p| p.is_ascii_digit());
        if after_seconds && chars.peek().is_some_and(char::is_ascii_digit) {
            let mut digits = String::new();
            while let Some(d) = chars.peek().copied().filter(char::is_ascii_digit) {
                digits.push(d);
                chars.next();
            }
            if chars.peek() != Some(&'Z') {
                out.push('.');
                out.push_str(&digits);
            }
            continue;
        }
        out.push(c);
    }
    out
}

struct Watch<'a> {
    narrator: &'a Narrator,
    client: &'a Client,
    target: &'a str,
    before: BTreeMap<String, String>,
    hosts: &'a [Host],
    status: BTreeMap<String, String>,
    bars: Vec<ProgressBar>,
    trips: u64,
    waiting: Option<String>,
}

impl Watch<'_> {
    fn observe(&mut self, view: &Value) {
        let rings = view["rings"].as_array().cloned().unwrap_or_default();
        if self.bars.is_empty() && self.narrator.bars() {
            for ring in &rings {
                let len = ring["batches"]
                    .as_array()
                    .into_iter()
                    .flatten()
                    .map(|b| b["hosts"].as_array().map_or(0, Vec::len))
                    .sum::<usize>();
                self.bars
                    .push(self.narrator.bar(len as u64, text(&ring["environment"])));
            }
        }
        for (r, ring) in rings.iter().enumerate() {
            let env = text(&ring["environment"]);
            let mut done = 0;
            let mut current = None;
            let mut number = 0;
            for batch in ring["batches"].as_array().into_iter().flatten() {
                let label = if batch["canary"] == json!(true) {
                    "canary".to_owned()
                } else {
                    number += 1;
                    format!("batch {number}")
                };
                for host in batch["hosts"].as_array().into_iter().flatten() {
                    let name = text(&host["name"]);
                    let status = text(&host["status"]);
                    if matches!(status.as_str(), "succeeded" | "failed" | "rolled-back") {
                        done += 1;
                    } else if status == "running" && current.is_none() {
                        current = Some(format!("{label}: {name} updating"));
                    }
                    let previous = self.status.insert(name.clone(), status.clone());
                    if previous.as_deref() != Some(status.as_str()) {
                        self.host_changed(&env, &label, &name, previous.as_deref(), &status, host);
                    }
                }
            }
            if let Some(bar) = self.bars.get(r) {
                bar.set_position(done);
                bar.set_message(current.unwrap_or_default());
            }
        }
        let trips = view["breaker_trips"].as_u64().unwrap_or(0);
        if trips > self.trips {
            self.trips = trips;
            let breaker = &view["breaker"];
            self.narrator.say(format!(
                "  ⚡ breaker tripped{}: nothing more starts, the batch is rolled back",
                if breaker.is_null() {
                    String::new()
                } else {
                    format!(
                        ": {} failure(s) in {}, threshold {}",
                        text(&breaker["failed"]),
                        scope(&breaker["scope"], &rings),
                        text(&breaker["threshold"])
                    )
                }
            ));
        }
        let waiting = view["waiting"].as_str().map(str::to_owned);
        if waiting != self.waiting {
            // Hosts still running are the lines above; say only why the rollout holds.
            if let Some(reason) = &waiting
                && !self.narrator.bars()
                && !reason.contains("still running")
            {
                self.narrator
                    .say(format!("    {}", without_fractions(reason)));
            }
            self.waiting = waiting;
        }
    }

    fn host_changed(
        &self,
        env: &str,
        label: &str,
        name: &str,
        previous: Option<&str>,
        status: &str,
        host: &Value,
    ) {
        let from = self.before.get(name).map_or("?", String::as_str);
        let now = self
            .hosts
            .iter()
            .find(|h| h.name == name)
            .and_then(|h| h.installed(packages::PACKAGE).ok().flatten())
            .unwrap_or_else(|| "none".to_owned());
        let line = match status {
            "succeeded" => format!("{from} → {now} ✓ health check passed"),
            "failed" => format!("{from} → {} ✗ {}; dpkg: {now}", self.target, self.why(host)),
            "rolled-back" if previous == Some("succeeded") => {
                format!("↩ rolled back by the breaker; dpkg: {now}")
            }
            "rolled-back" => format!("{from} → {} ✗ {}; dpkg: {now}", self.target, self.why(host)),
            "pending-reboot" => "waiting for a reboot".to_owned(),
            _ => return,
        };
        self.narrator
            .say(format!("  {env:<4} {label:<8} {name:<11} {line}"));
    }

    /// The server's last word on the host, else the failed step of its job and its message,
    /// from the agent's report.
    fn why(&self, host: &Value) -> String {
        if let Some(note) = host["note"].as_str() {
            return note.trim().to_owned();
        }
        let Some(job) = host["job"].as_str() else {
            return "failed".to_owned();
        };
        let Ok(job) = self.client.get(&format!("/api/v1/jobs/{job}")) else {
            return "failed".to_owned();
        };
        job["report"]["steps"]
            .as_array()
            .into_iter()
            .flatten()
            .find(|s| s["status"].as_str() == Some("failed"))
            .map(|s| {
                let message = text(&s["message"]);
                format!("{} failed: {}", text(&s["step"]), message.trim())
            })
            .unwrap_or_else(|| format!("job {}", text(&job["state"])))
    }
}
