//! The end of the demo: the audit chain verified straight from the database (the check
//! `sluice audit verify` makes), the summary table and the JSON report.

use std::path::Path;

use anyhow::{Context, Result};
use serde_json::{Value, json};
use sluice_server::settings::{Settings, SettingsLayer};

use super::packages;
use super::story::Story;
use crate::cmd::client::print_table;

/// The audit chain's verdict.
#[derive(Debug, Clone)]
pub struct Audit {
    /// True when the chain is intact.
    pub verified: bool,
    /// Events in the chain.
    pub events: i64,
    /// What `sluice audit verify` would print.
    pub message: String,
}

/// Verifies the audit chain of the SQLite database in `data_dir`, as `sluice audit verify
/// --data-dir DIR` does: reading the database itself, trusting nothing the server says. Only
/// the data directory is used (no `SLUICE_*` setting could point it elsewhere).
pub fn verify_audit(data_dir: &Path) -> Result<Audit> {
    let settings = Settings::from_layer(SettingsLayer {
        data_dir: Some(data_dir.to_owned()),
        ..SettingsLayer::default()
    })?;
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .context("cannot start the async runtime")?;
    runtime.block_on(async {
        let store = sluice_server::open_store(&settings).await?;
        let outcome = store.verify_audit().await;
        store.close().await;
        Ok(match outcome? {
            Ok(head) => Audit {
                verified: true,
                events: head.seq,
                message: format!(
                    "audit chain intact: {} events; head hash {}",
                    head.seq, head.hash
                ),
            },
            Err(broken) => Audit {
                verified: false,
                events: 0,
                message: format!("audit chain BROKEN: {broken}"),
            },
        })
    })
}

/// What the story should have ended with, and what differs: the fix completed, its findings
/// resolved, the bad release rolled back, every host on the fixed version, the breaker tripped,
/// the chain intact.
pub fn surprises(story: &Story, audit: &Audit) -> Vec<String> {
    let mut problems = Vec::new();
    let expected = [
        ("completed", packages::FIXED),
        ("rolled-back", packages::BAD),
    ];
    for (i, (state, target)) in expected.iter().enumerate() {
        match story.changes.get(i) {
            Some(change) if change.state == *state => {}
            Some(change) => problems.push(format!(
                "{} ({} {target}) is {}, not {state}",
                change.id,
                packages::PACKAGE,
                change.state
            )),
            None => problems.push(format!("change {} is missing", i + 1)),
        }
    }
    for (name, _, _, version) in hosts(story) {
        if version != packages::FIXED {
            problems.push(format!(
                "{name} runs {} {version}, not {}",
                packages::PACKAGE,
                packages::FIXED
            ));
        }
    }
    let trips: u64 = story
        .changes
        .iter()
        .filter_map(|c| c.rollout.as_ref())
        .map(|r| r.breaker_trips)
        .sum();
    if trips == 0 {
        problems.push("the breaker never tripped".to_owned());
    }
    let findings = story.findings;
    if findings.opened == 0 || findings.open > 0 || findings.resolved != findings.opened {
        problems.push(format!(
            "of {} known-exploited findings, {} were resolved and {} are still open",
            findings.opened, findings.resolved, findings.open
        ));
    }
    if !audit.verified {
        problems.push(audit.message.clone());
    }
    problems
}

/// Per host: name, ring, zone, and the demo package's version per dpkg in its root.
fn hosts(story: &Story) -> Vec<(String, String, String, String)> {
    let mut hosts: Vec<&super::fleet::Host> = story.hosts.iter().collect();
    hosts.sort_by_key(|h| {
        (
            super::fleet::ENVIRONMENTS.iter().position(|e| *e == h.env),
            h.name.clone(),
        )
    });
    hosts
        .into_iter()
        .map(|h| {
            let version = h
                .installed(packages::PACKAGE)
                .ok()
                .flatten()
                .unwrap_or_else(|| "none".to_owned());
            (
                h.name.clone(),
                h.env.to_owned(),
                h.site.tz.to_owned(),
                version,
            )
        })
        .collect()
}

/// The JSON report.
pub fn json(story: &Story, audit: &Audit, duration_s: f64, dir: &Path, kept: bool) -> Value {
    let changes: Vec<Value> = story
        .changes
        .iter()
        .map(|c| {
            json!({
                "id": c.id,
                "title": c.title,
                "type": c.kind,
                "state": c.state,
                "target": {packages::PACKAGE: c.target},
                "rollout": c.rollout.as_ref().map(|r| json!({
                    "id": r.id,
                    "outcome": r.outcome,
                    "phase": r.phase,
                    "breaker_trips": r.breaker_trips,
                    "rollbacks": r.rollbacks,
                    "duration_s": r.seconds,
                })),
            })
        })
        .collect();
    let hosts: Vec<Value> = hosts(story)
        .into_iter()
        .map(|(name, ring, tz, version)| {
            json!({"name": name, "ring": ring, "time_zone": tz, "versions": {packages::PACKAGE: version}})
        })
        .collect();
    let trips: u64 = story
        .changes
        .iter()
        .filter_map(|c| c.rollout.as_ref())
        .map(|r| r.breaker_trips)
        .sum();
    let rollbacks: u64 = story
        .changes
        .iter()
        .filter_map(|c| c.rollout.as_ref())
        .map(|r| r.rollbacks)
        .sum();
    json!({
        "server": story.server.url,
        "dir": dir.display().to_string(),
        "dir_kept": kept,
        "changes": changes,
        "hosts": hosts,
        "breaker_trips": trips,
        "rollbacks": rollbacks,
        "findings": {
            "opened": story.findings.opened,
            "open_after_rollout": story.findings.open,
            "resolved": story.findings.resolved,
        },
        "audit_verified": audit.verified,
        "audit": {"events": audit.events, "message": audit.message},
        "setup_s": story.setup.as_secs_f64(),
        "duration_s": duration_s,
    })
}

/// The summary as tables, on standard output.
pub fn print_summary(story: &Story, audit: &Audit, duration_s: f64) {
    println!();
    println!("Summary");
    println!();
    let rows: Vec<Vec<String>> = hosts(story)
        .into_iter()
        .map(|(name, ring, tz, version)| vec![name, ring, tz, version])
        .collect();
    print_table(&["HOST", "RING", "TIME ZONE", packages::PACKAGE], &rows);
    println!();
    let rows: Vec<Vec<String>> = story
        .changes
        .iter()
        .map(|c| {
            let rollout = c.rollout.as_ref();
            vec![
                c.id.clone(),
                c.kind.clone(),
                format!("{} {}", packages::PACKAGE, c.target),
                c.state.clone(),
                rollout.map_or("-".to_owned(), |r| format!("{} {}", r.id, r.outcome)),
                rollout.map_or("-".to_owned(), |r| r.breaker_trips.to_string()),
                rollout.map_or("-".to_owned(), |r| r.rollbacks.to_string()),
                c.title.clone(),
            ]
        })
        .collect();
    print_table(
        &[
            "CHANGE",
            "TYPE",
            "TARGET",
            "STATE",
            "ROLLOUT",
            "TRIPS",
            "ROLLBACKS",
            "TITLE",
        ],
        &rows,
    );
    println!();
    println!("{}", audit.message);
    println!(
        "fleet up in {:.1}s; whole demo {:.1}s",
        story.setup.as_secs_f64(),
        duration_s
    );
}
