//! The narrated scenario, through the server's API as its people would act: the fleet comes up
//! and enrolls, advisories come in, a change fixes what they found and goes through peer review
//! and the CAB, rolls out canary first, and a bad release trips the breaker and is rolled back.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use jiff::{Timestamp, ToSpan, Unit};
use serde_json::{Value, json};
use sluice_core::access::Role;
use sluice_core::calendar::WindowSpec;
use sluice_core::change::{Action, ChangeType, Plan, RollbackCriteria, Schedule, UpdateClass};
use sluice_core::cmdb::Asset;
use sluice_core::rollout::{BreakerThresholds, OnTrip, RolloutPolicy, Size};
use sluice_protocol::Empty;
use sluice_protocol::accounts::{CreateUser, IssuedToken, LoginRequest, UserView};
use sluice_protocol::agents::{AgentView, CreateEnrollmentToken, IssuedEnrollmentToken};
use sluice_protocol::assets::{ImportFormat, ImportRequest, ImportResult};
use sluice_protocol::calendars::{ConflictPreview, CreateWindow, WindowRecord};
use sluice_protocol::changes::{ChangeView, CreateChange, FromFindings, Target};
use sluice_protocol::findings::{
    CreateFeed, FeedKind, FeedRecord, FeedSyncReport, FindingRecord, FindingsPage,
};
use sluice_protocol::policies::{PolicyUpdate, PolicyView};

use super::fleet::{self, Host, Process, Server};
use super::narrate::{Narrator, pause};
use super::packages;
use super::rollout::{self, RolloutOutcome};
use crate::cmd::client::Client;

/// CISA's Known Exploited Vulnerabilities catalog as shipped in `examples/feeds`.
const KEV_CATALOG: &str =
    include_str!("../../../../../examples/feeds/known_exploited_vulnerabilities.json");

/// The people of the story: user name, roles, groups, and what they do.
pub const PEOPLE: [(&str, &[&str], &[&str], &str); 6] = [
    (
        "alice",
        &["operator"],
        &[],
        "operator, requests the changes",
    ),
    (
        "olga",
        &["operator"],
        &[],
        "operator, signs off plans as a peer",
    ),
    ("bob", &["approver"], &["cab"], "CAB member"),
    ("carol", &["approver"], &["cab"], "CAB member"),
    (
        "sam",
        &["security", "approver"],
        &["security"],
        "security officer",
    ),
    ("chair", &["approver"], &["cab-chairs"], "CAB chair"),
];

/// A change at the end of the story.
#[derive(Debug)]
pub struct ChangeOutcome {
    /// `CHG-n`.
    pub id: String,
    /// Its title.
    pub title: String,
    /// standard, normal, emergency.
    pub kind: String,
    /// Its final state.
    pub state: String,
    /// The target version of the demo package.
    pub target: String,
    /// Its rollout.
    pub rollout: Option<RolloutOutcome>,
}

/// What the story leaves behind for the summary.
pub struct Story {
    /// The server (running until stopped).
    pub server: Server,
    /// The agents (running until stopped).
    pub agents: Vec<Process>,
    /// The hosts.
    pub hosts: Vec<Host>,
    /// The changes, in order.
    pub changes: Vec<ChangeOutcome>,
    /// The admin's password.
    pub admin_password: String,
    /// The demo users' password.
    pub user_password: String,
    /// How long the fleet took to come up (repository, roots, enrollment).
    pub setup: Duration,
    /// The known-exploited findings: how many the feeds opened, and how many stayed open and
    /// were resolved once the first change was rolled out.
    pub findings: FindingsOutcome,
}

/// What became of the findings the first change was made for.
#[derive(Clone, Copy, Debug, Default)]
pub struct FindingsOutcome {
    /// Opened when the feeds were loaded.
    pub opened: usize,
    /// Still open after the first rollout.
    pub open: usize,
    /// Resolved by the hosts' fresh inventories after the first rollout.
    pub resolved: usize,
}

impl Story {
    /// Stops the agents, then the server.
    pub fn stop(&mut self) {
        for agent in &mut self.agents {
            agent.terminate();
        }
        for agent in &mut self.agents {
            agent.stop(Duration::from_secs(5));
        }
        self.server.process.stop(Duration::from_secs(15));
    }
}

impl Drop for Story {
    /// However the story ends (an error, Ctrl-C), agents stop before the server, so that the
    /// server's graceful shutdown does not wait for their long polls.
    fn drop(&mut self) {
        self.stop();
    }
}

fn random_secret() -> Result<String> {
    let mut bytes = [0u8; 12];
    getrandom::fill(&mut bytes).context("no randomness for a password")?;
    Ok(bytes.iter().map(|b| format!("{b:02x}")).collect())
}

fn text(value: &Value) -> String {
    match value {
        Value::String(s) => s.clone(),
        Value::Null => "-".to_owned(),
        other => other.to_string(),
    }
}

/// A person of the story, logged in.
pub struct Person {
    /// User name.
    pub name: &'static str,
    /// Their API client.
    pub client: Client,
}

fn login(url: &str, name: &'static str, password: &str) -> Result<Person> {
    let anonymous = Client::with(url.to_owned(), None)?;
    let answer: IssuedToken = anonymous
        .post_as(
            "/api/v1/login",
            &LoginRequest {
                username: name.to_owned(),
                password: password.to_owned(),
                token_name: Some("sluice demo".to_owned()),
                expires_in: None,
                roles: None,
            },
        )
        .with_context(|| format!("logging in as {name}"))?;
    Ok(Person {
        name,
        client: Client::with(url.to_owned(), Some(answer.token))?,
    })
}

/// Everyone, logged in.
pub struct Cast {
    /// The administrator.
    pub admin: Person,
    people: BTreeMap<&'static str, Person>,
}

impl Cast {
    /// One person by name.
    pub fn get(&self, name: &str) -> Result<&Person> {
        self.people
            .get(name)
            .with_context(|| format!("no person {name} in the demo"))
    }
}

/// Runs the whole story.
pub fn run(dir: &Path, agents: usize, narrator: &Narrator) -> Result<Story> {
    let (mut story, cast, _repo) = bring_up(dir, agents, &fleet::ENVIRONMENTS, true, narrator)?;
    for env in fleet::ENVIRONMENTS {
        let names: Vec<&str> = story
            .hosts
            .iter()
            .filter(|h| h.env == env)
            .map(|h| h.name.as_str())
            .collect();
        narrator.say(format!("    {env:<5} {}", names.join(", ")));
    }

    narrator.section("Maintenance windows");
    windows(&cast, &story.hosts, narrator)?;

    narrator.section("Advisories and findings");
    feeds(&cast, dir, narrator)?;
    story.findings.opened = findings(&cast, narrator)?;

    narrator.section("Change 1: fix the known-exploited vulnerability");
    let first = fix_change(&cast, narrator)?;
    schedule(&cast, &first, &story.hosts, narrator)?;
    // Follow the sun in the first; the second stops at the first failure in any ring.
    let outcome = roll_out(
        &cast,
        &story,
        &first,
        packages::FIXED,
        Size::Percent(50),
        true,
        narrator,
    )?;
    story
        .changes
        .push(finish(&cast, &first, packages::FIXED, outcome, narrator)?);
    story.findings = resolved(&cast, story.findings.opened, narrator)?;

    narrator.section("Change 2: a bad release meets the circuit breaker");
    let second = release_change(&cast, narrator)?;
    schedule(&cast, &second, &story.hosts, narrator)?;
    let outcome = roll_out(
        &cast,
        &story,
        &second,
        packages::BAD,
        Size::Count(1),
        false,
        narrator,
    )?;
    story
        .changes
        .push(finish(&cast, &second, packages::BAD, outcome, narrator)?);
    let mut wrong = Vec::new();
    for host in &story.hosts {
        let version = host.installed(packages::PACKAGE)?;
        if version.as_deref() != Some(packages::FIXED) {
            wrong.push(format!(
                "{} on {}",
                host.name,
                version.as_deref().unwrap_or("nothing")
            ));
        }
    }
    if wrong.is_empty() {
        narrator.say(format!(
            "  dpkg-query in every root: all {} hosts are back on {} {}",
            story.hosts.len(),
            packages::PACKAGE,
            packages::FIXED
        ));
    } else {
        narrator.say(format!(
            "  dpkg-query: not on {}: {}",
            packages::FIXED,
            wrong.join(", ")
        ));
    }
    Ok(story)
}

/// The fleet without the story: the server, the people, the repository, every host's root on
/// the old version and its agent enrolled, hosts spread over `environments`. Returns the story
/// so far (no changes), everyone logged in, and the repository's directory.
pub fn bring_up(
    dir: &Path,
    agents: usize,
    environments: &[&'static str],
    refresh: bool,
    narrator: &Narrator,
) -> Result<(Story, Cast, PathBuf)> {
    let started = Instant::now();
    let admin_password = random_secret()?;
    let user_password = random_secret()?;
    let logs = dir.join("logs");
    std::fs::create_dir_all(&logs)?;

    narrator.section("The server");
    let spinner = narrator.spinner("starting sluice server on SQLite");
    let server = Server::start(
        &dir.join("server"),
        &dir.join("feeds"),
        &logs.join("server.log"),
        &admin_password,
    )?;
    narrator.clear(&spinner);
    narrator.say(format!(
        "  sluice server listening on {} (SQLite in {}; log {})",
        server.url,
        server.data_dir.display(),
        server.log.display()
    ));
    let mut story = Story {
        server,
        agents: Vec::new(),
        hosts: fleet::plan(dir, agents, environments),
        changes: Vec::new(),
        admin_password,
        user_password,
        setup: Duration::ZERO,
        findings: FindingsOutcome::default(),
    };
    let url = story.server.url.clone();
    let cast = people(&url, &story.admin_password, &story.user_password, narrator)?;

    narrator.section("The fleet");
    let t = Instant::now();
    let repo = packages::build_repository(dir)?;
    narrator.say(format!(
        "  built {} {}, {} and {} (.deb with dpkg-deb) into a local apt repository at {} ({:.1}s)",
        packages::PACKAGE,
        packages::OLD,
        packages::FIXED,
        packages::BAD,
        repo.display(),
        t.elapsed().as_secs_f64()
    ));
    import_assets(&cast, &story.hosts, narrator)?;
    let t = Instant::now();
    let bar = narrator.bar(story.hosts.len() as u64, "roots");
    bar.set_message(format!(
        "apt-get update; apt-get install {}={}",
        packages::PACKAGE,
        packages::OLD
    ));
    fleet::prepare_roots(&story.hosts, &repo, &|_host: &Host| bar.inc(1))?;
    narrator.clear(&bar);
    narrator.say(format!(
        "  {} private package roots ready, {} {} installed in each ({:.1}s; apt and dpkg confined to {}/agents/*/root, the machine's own packages untouched)",
        story.hosts.len(),
        packages::PACKAGE,
        packages::OLD,
        t.elapsed().as_secs_f64(),
        dir.display()
    ));
    let t = Instant::now();
    start_agents(&cast, &mut story, &logs, refresh, narrator)?;
    narrator.say(format!(
        "  {} agents enrolled with one-time tokens; inventories in the CMDB ({:.1}s)",
        story.agents.len(),
        t.elapsed().as_secs_f64()
    ));
    story.setup = started.elapsed();
    narrator.say(format!("  fleet up in {:.1}s", story.setup.as_secs_f64()));
    Ok((story, cast, repo))
}

fn people(url: &str, admin_password: &str, password: &str, narrator: &Narrator) -> Result<Cast> {
    let admin = login(url, "admin", admin_password)?;
    let mut people = BTreeMap::new();
    for (name, roles, groups, what) in PEOPLE {
        let body = CreateUser {
            username: name.to_owned(),
            password: password.to_owned(),
            roles: roles
                .iter()
                .map(|r| r.parse::<Role>())
                .collect::<Result<_, _>>()?,
            groups: groups.iter().map(|g| (*g).to_owned()).collect(),
        };
        admin
            .client
            .post_as::<_, UserView>("/api/v1/users", &body)
            .with_context(|| format!("creating the user {name}"))?;
        let groups = if groups.is_empty() {
            String::new()
        } else {
            format!(", group {}", groups.join(","))
        };
        narrator.say(format!(
            "  user {name:<6} {what} (role {}{groups})",
            roles.join(",")
        ));
        people.insert(name, login(url, name, password)?);
    }
    Ok(Cast { admin, people })
}

fn import_assets(cast: &Cast, hosts: &[Host], narrator: &Narrator) -> Result<()> {
    let mut csv = String::from("host,env,criticality,exposure,time_zone,tags\n");
    for host in hosts {
        csv.push_str(&format!(
            "{},{},{},{},{},web\n",
            host.name,
            host.env,
            host.criticality(),
            host.exposure(),
            host.site.tz
        ));
    }
    let answer: ImportResult = cast.get("olga")?.client.post_as(
        "/api/v1/assets/import",
        &ImportRequest {
            format: ImportFormat::Csv,
            content: csv,
            source_name: Some("demo-fleet.csv".to_owned()),
        },
    )?;
    narrator.say(format!(
        "  CMDB: {} assets imported (prod: criticality 4, internet-facing; test 2; dev 1)",
        answer.created
    ));
    Ok(())
}

fn start_agents(
    cast: &Cast,
    story: &mut Story,
    logs: &Path,
    refresh: bool,
    narrator: &Narrator,
) -> Result<()> {
    let bar = narrator.bar(story.hosts.len() as u64, "agents");
    bar.set_message("enrolling");
    for host in &story.hosts {
        let issued: IssuedEnrollmentToken = cast.admin.client.post_as(
            "/api/v1/agents/enrollment-tokens",
            &CreateEnrollmentToken {
                expires_in: "1h".to_owned(),
            },
        )?;
        story.agents.push(fleet::start_agent(
            &story.server.url,
            host,
            &issued.token,
            refresh,
            &logs.join(format!("agent-{}.log", host.name)),
        )?);
    }
    let deadline = Instant::now() + Duration::from_secs(120);
    let mut ready: Vec<bool> = vec![false; story.hosts.len()];
    loop {
        for (i, host) in story.hosts.iter().enumerate() {
            if ready[i] {
                continue;
            }
            let asset: Asset = cast
                .admin
                .client
                .get_as(&format!("/api/v1/assets/{}", host.name))?;
            if asset.os.is_some_and(|os| os.to_string() == "Debian:12") {
                ready[i] = true;
                bar.inc(1);
            }
        }
        if ready.iter().all(|r| *r) {
            break;
        }
        for (agent, host) in story.agents.iter_mut().zip(&story.hosts) {
            if !agent.running() {
                bail!(
                    "the agent of {} exited; see {}",
                    host.name,
                    logs.join(format!("agent-{}.log", host.name)).display()
                );
            }
        }
        if Instant::now() > deadline {
            bail!(
                "agents did not report their inventories within two minutes; see {}",
                logs.display()
            );
        }
        pause(Duration::from_millis(200))?;
    }
    narrator.clear(&bar);
    let enrolled: Vec<AgentView> = cast.admin.client.get_as("/api/v1/agents")?;
    let count = enrolled.len();
    if count != story.hosts.len() {
        bail!("{count} agents enrolled, {} expected", story.hosts.len());
    }
    Ok(())
}

fn windows(cast: &Cast, hosts: &[Host], narrator: &Narrator) -> Result<()> {
    let now = Timestamp::now();
    for site in fleet::SITES {
        let names: Vec<&str> = hosts
            .iter()
            .filter(|h| h.site.tz == site.tz)
            .map(|h| h.name.as_str())
            .collect();
        if names.is_empty() {
            continue;
        }
        let zone = jiff::tz::TimeZone::get(site.tz)
            .with_context(|| format!("the time zone {} is not in the tz database", site.tz))?;
        let local = now.to_zoned(zone);
        // A daily window that opened an hour ago (yesterday's, just after midnight) and stays
        // open for six hours: the changes below fit in it.
        let start = (i32::from(local.hour()) + 23) % 24;
        let dtstart = local.date().checked_sub(1.day())?;
        let name = format!("{}-daily", site.code);
        let stored: WindowRecord = cast.get("olga")?.client.post_as(
            "/api/v1/windows",
            &CreateWindow {
                name,
                scope: format!("tz={}", site.tz),
                definition: WindowSpec {
                    rrule: Some("FREQ=DAILY".to_owned()),
                    dtstart: Some(dtstart),
                    cron: None,
                    start: Some(format!("{start:02}:00")),
                    duration: "6h".to_owned(),
                    cutoff: Some("30m".to_owned()),
                    tz: site.tz.to_owned(),
                    offset_days: 0,
                    active_from: None,
                    active_until: None,
                },
            },
        )?;
        // As the server stored it; whether it is open, the server says when a change is
        // scheduled (see `schedule`).
        let definition = &stored.definition;
        let or_dash = |v: &Option<String>| v.clone().unwrap_or_else(|| "-".to_owned());
        narrator.say(format!(
            "  {:<10} tz={:<17} daily from {} for {}, cutoff {}; {:02}:{:02} there now  ({})",
            stored.name,
            definition.tz,
            or_dash(&definition.start),
            definition.duration,
            or_dash(&definition.cutoff),
            local.hour(),
            local.minute(),
            names.join(", ")
        ));
    }
    Ok(())
}

/// The hosts the server's calendar finds outside their maintenance windows if change `id` ran
/// from `start` to `end`, and the earliest next opening it names.
fn outside_windows(
    person: &Person,
    id: &str,
    start: Timestamp,
    end: Timestamp,
) -> Result<(Vec<String>, Option<String>)> {
    let verdict: ConflictPreview = person.client.get_as(&format!(
        "/api/v1/changes/{id}/conflicts?start={start}&end={end}"
    ))?;
    let mut hosts = Vec::new();
    let mut next: Option<String> = None;
    for conflict in &verdict.conflicts {
        let description = &conflict.description;
        // "HOST: outside its maintenance windows (next opens T)", in the calendar's words.
        if let Some((host, rest)) = description.split_once(": outside its maintenance windows") {
            hosts.push(host.to_owned());
            if let Some(opens) = rest
                .strip_prefix(" (next opens ")
                .and_then(|r| r.strip_suffix(')'))
                && next.as_deref().is_none_or(|n| opens < n)
            {
                next = Some(opens.to_owned());
            }
        }
    }
    hosts.sort();
    Ok((hosts, next))
}

fn feeds(cast: &Cast, dir: &Path, narrator: &Narrator) -> Result<()> {
    let feeds = dir.join("feeds");
    let osv = feeds.join("acme");
    std::fs::create_dir_all(&osv)?;
    let kev = feeds.join("known_exploited_vulnerabilities.json");
    std::fs::write(&kev, KEV_CATALOG)?;
    std::fs::write(
        osv.join("ACME-2026-0001.json"),
        serde_json::to_string_pretty(&packages::advisory_feed())?,
    )?;
    let sources: [(&str, FeedKind, PathBuf, &str); 2] = [
        (
            "cisa-kev",
            FeedKind::Kev,
            kev,
            "CISA's KEV catalog (real, 2025-08-25)",
        ),
        (
            "acme-security",
            FeedKind::Advisories,
            osv,
            "ACME's OSV advisories (Debian:12)",
        ),
    ];
    for (name, kind, source, what) in sources {
        cast.admin.client.post_as::<_, FeedRecord>(
            "/api/v1/feeds",
            &CreateFeed {
                name: name.to_owned(),
                kind,
                source: source.display().to_string(),
                interval: None,
            },
        )?;
        let report: FeedSyncReport = cast
            .admin
            .client
            .post_as(&format!("/api/v1/feeds/{name}/sync"), &Empty {})?;
        let feed = report.feed;
        if feed.last_status.as_deref() == Some("error") {
            bail!("feed {name}: {}", feed.last_error.as_deref().unwrap_or("-"));
        }
        narrator.say(format!(
            "  feed {name:<14} {what}: {} record{}{}",
            feed.records,
            if feed.records == 1 { "" } else { "s" },
            match report.findings {
                None => String::new(),
                Some(findings) => format!(
                    "; findings {} opened, {} open",
                    findings.opened, findings.open
                ),
            }
        ));
    }
    Ok(())
}

/// Rolls `change` out canary-first in batches of half a ring, at most 4 hosts at once, rolling
/// a batch back at its first failure; `per_ring` is the ring's breaker threshold.
fn roll_out(
    cast: &Cast,
    story: &Story,
    change: &str,
    target: &str,
    per_ring: Size,
    follow_the_sun: bool,
    narrator: &Narrator,
) -> Result<RolloutOutcome> {
    let policy = RolloutPolicy {
        ring_order: fleet::ENVIRONMENTS
            .iter()
            .map(|e| (*e).to_owned())
            .collect(),
        canary: Some(Size::Count(1)),
        batch: Size::Percent(50),
        max_concurrency: 4,
        breaker: BreakerThresholds {
            per_batch: Size::Count(1),
            per_ring,
        },
        on_trip: OnTrip::RollbackBatch,
        soak: jiff::SignedDuration::ZERO,
        manual_gate: false,
        follow_the_sun,
    };
    rollout::run(
        &cast.get("alice")?.client,
        change,
        target,
        policy,
        &story.hosts,
        narrator,
    )
}

/// The known-exploited findings after the first rollout: each host's fresh inventory resolved
/// its finding, or it is still open.
fn resolved(cast: &Cast, opened: usize, narrator: &Narrator) -> Result<FindingsOutcome> {
    let client = &cast.get("alice")?.client;
    let count = |status: &str| -> Result<usize> {
        let page: FindingsPage = client.get_as(&format!(
            "/api/v1/findings?kev=true&status={status}&limit=1000"
        ))?;
        Ok(page.items.len())
    };
    let outcome = FindingsOutcome {
        opened,
        open: count("open")?,
        resolved: count("resolved")?,
    };
    narrator.say(format!(
        "  findings: {} of {} known-exploited findings resolved by the hosts' fresh inventories; {} still open",
        outcome.resolved, outcome.opened, outcome.open
    ));
    Ok(outcome)
}

/// Shows the known-exploited findings the feeds opened; returns how many.
fn findings(cast: &Cast, narrator: &Narrator) -> Result<usize> {
    let page: FindingsPage = cast
        .get("alice")?
        .client
        .get_as("/api/v1/findings?kev=true&limit=1000")?;
    let items: Vec<&FindingRecord> = page.items.iter().map(|item| &item.finding).collect();
    let Some(first) = items.first() else {
        bail!("the advisory feed matched no host: no findings");
    };
    let mut groups: BTreeMap<(String, String), Vec<String>> = BTreeMap::new();
    for f in &items {
        // The decision as the API names it (`act`, `track*`).
        let decision = text(&serde_json::to_value(f.finding.decision)?);
        groups
            .entry((decision, f.finding.due.to_string()))
            .or_default()
            .push(f.hostname.clone());
    }
    let f = &first.finding;
    narrator.say(format!(
        "  {} findings: {} {} on every host, {} ({}), fixed in {}, KEV-listed",
        items.len(),
        f.package,
        f.installed,
        f.advisory,
        f.aliases.join(", "),
        f.fixed.as_deref().unwrap_or("-"),
    ));
    let mut ordered: Vec<_> = groups.into_iter().collect();
    ordered.sort_by(|a, b| a.0.1.cmp(&b.0.1));
    for ((decision, due), hosts) in ordered {
        narrator.say(format!(
            "    SSVC {decision:<7} due {due}: {}",
            hosts.join(", ")
        ));
    }
    Ok(items.len())
}

fn plan(implementation: &[&str], verification: &[&str]) -> Plan {
    Plan {
        implementation: implementation.iter().map(|s| (*s).to_owned()).collect(),
        verification: verification.iter().map(|s| (*s).to_owned()).collect(),
        rollback_criteria: RollbackCriteria {
            max_failed_check_share: 0.0,
            max_latency_factor: None,
            custom_check: None,
            detection_window: jiff::SignedDuration::from_secs(2),
        },
    }
}

fn act(person: &Person, id: &str, action: Action) -> Result<ChangeView> {
    person
        .client
        .post_as(&format!("/api/v1/changes/{id}/actions"), &action)
        .with_context(|| format!("{} on {id}: {}", person.name, action.kind().as_str()))
}

/// A value's name on the wire (`lowest-fixing`), for the story's lines.
fn wire_name(value: &impl serde::Serialize) -> String {
    serde_json::to_value(value).map_or_else(|_| "-".to_owned(), |v| text(&v))
}

/// A new change with everything but what the story sets left out.
fn new_change(title: &str, kind: ChangeType) -> CreateChange {
    CreateChange {
        title: title.to_owned(),
        kind,
        from_findings: None,
        targets: None,
        pins: Vec::new(),
        scope: None,
        update_types: None,
        justification: None,
        template: None,
        plan: None,
        plan_toml: None,
    }
}

fn fix_change(cast: &Cast, narrator: &Narrator) -> Result<String> {
    let alice = cast.get("alice")?;
    let created: ChangeView = alice.client.post_as(
        "/api/v1/changes",
        &CreateChange {
            from_findings: Some(FromFindings {
                selector: Some("env=dev|test|prod".to_owned()),
                kev: Some(true),
                ..FromFindings::default()
            }),
            justification: Some(
                "CVE-2024-38475 is in CISA's KEV catalog and every host runs acme-web 1.0"
                    .to_owned(),
            ),
            plan: Some(plan(
                &[
                    "update acme-web ring by ring (dev, test, prod), canary first",
                    "the agent's health check after each host",
                ],
                &[
                    "/usr/lib/acme-web/health exits 0 on every host",
                    "dpkg reports the target version",
                ],
            )),
            ..new_change(
                "Fix known-exploited CVE-2024-38475 in acme-web across the fleet",
                ChangeType::Normal,
            )
        },
    )?;
    let change = &created.change;
    let id = change.id.clone();
    let bundle: Vec<String> = change
        .bundle
        .iter()
        .map(|b| {
            format!(
                "{} → {} ({}, {})",
                b.package,
                b.target_version,
                wire_name(&b.source),
                b.advisories.join(",")
            )
        })
        .collect();
    narrator.say(format!(
        "  alice creates {id} from the KEV findings: {}; scope {}",
        bundle.join("; "),
        wire_name(&change.scope)
    ));
    let assessment = change
        .assessment
        .as_ref()
        .context("the new change has no risk assessment")?;
    narrator.say(format!(
        "  risk {} (score {}): {}",
        assessment.risk.level.as_str(),
        assessment.risk.score,
        assessment.risk.reasons.join("; ")
    ));
    act(alice, &id, Action::Submit)?;
    narrator.say(format!("  alice submits {id}"));
    let peer = &assessment.peer_review;
    if peer.required {
        let olga = cast.get("olga")?;
        act(
            olga,
            &id,
            Action::SignOffPlan {
                comment: Some("plan and rollback criteria read; canary first is right".to_owned()),
            },
        )?;
        narrator.say(format!(
            "  peer review required ({}): olga signs off the plan",
            peer.reasons.join("; ")
        ));
    }
    let reviewing = act(alice, &id, Action::StartReview)?;
    let rule = reviewing
        .change
        .approval_rule
        .as_ref()
        .context("the change in review has no approval rule")?;
    narrator.say(format!(
        "  CAB review starts under rule {}: {} approval(s) from {}",
        rule.name,
        rule.quorum,
        reviewing.eligible_groups.join(", ")
    ));
    let mut state = reviewing.change.state.as_str().to_owned();
    for voter in ["bob", "carol", "sam", "chair"] {
        if state != "in-review" {
            break;
        }
        let person = cast.get(voter)?;
        let groups: Vec<&str> = PEOPLE
            .iter()
            .find(|p| p.0 == voter)
            .map(|p| p.2.to_vec())
            .unwrap_or_default();
        let eligible = reviewing
            .eligible_groups
            .iter()
            .any(|g| groups.iter().any(|m| g == m));
        if !eligible {
            continue;
        }
        let voted = act(
            person,
            &id,
            Action::Approve {
                comment: Some("KEV-listed: fix it, canary first".to_owned()),
            },
        )?;
        state = voted.change.state.as_str().to_owned();
        let quorum = voted.quorum.unwrap_or_default();
        narrator.say(format!(
            "  {voter} approves: {} of {} approvals{}",
            quorum.approvals,
            quorum.quorum,
            if state == "approved" {
                " — quorum met, approved"
            } else {
                ""
            }
        ));
    }
    if state != "approved" {
        bail!("{id} is {state} after the CAB's votes, not approved");
    }
    Ok(id)
}

fn release_change(cast: &Cast, narrator: &Narrator) -> Result<String> {
    // The CAB pre-approves acme-web point releases as a standard change: a new policy version.
    let current: PolicyView = cast.admin.client.get_as("/api/v1/policies/cab")?;
    // The policy document itself is edited as the document it is (`policy` is free-form on
    // the wire): one more template.
    let mut policy = current.policy.clone();
    let template = json!({
        "id": "acme-web-release",
        "name": "acme-web point release",
        "packages": ["acme-web"],
        "max_risk": "medium",
        "update_types": ["bugfix"]
    });
    match policy.get_mut("template").and_then(Value::as_array_mut) {
        Some(templates) => templates.push(template),
        None => policy["template"] = json!([template]),
    }
    let stored: PolicyView = cast.admin.client.call(
        reqwest::Method::PUT,
        "/api/v1/policies/cab",
        Some(&PolicyUpdate {
            toml: None,
            policy: Some(policy),
            based_on: Some(current.version),
        }),
    )?;
    narrator.say(format!(
        "  admin stores CAB policy v{}: template acme-web-release pre-approves acme-web bug-fix releases up to medium risk",
        stored.version
    ));
    let alice = cast.get("alice")?;
    let created: ChangeView = alice.client.post_as(
        "/api/v1/changes",
        &CreateChange {
            template: Some("acme-web-release".to_owned()),
            targets: Some(vec![Target {
                package: packages::PACKAGE.to_owned(),
                version: packages::BAD.to_owned(),
                ecosystem: Some("Debian:12".to_owned()),
            }]),
            scope: Some("env=dev|test|prod".to_owned()),
            update_types: Some([UpdateClass::Bugfix].into()),
            justification: Some("connection handling fixes from upstream".to_owned()),
            plan: Some(plan(
                &[
                    "update acme-web ring by ring, canary first",
                    "stop at the first failed health check",
                ],
                &["/usr/lib/acme-web/health exits 0 on every host"],
            )),
            ..new_change("acme-web 1.2 bug-fix release", ChangeType::Standard)
        },
    )?;
    let id = created.change.id.clone();
    narrator.say(format!(
        "  alice creates {id}: {} → {} as a standard change (risk {})",
        packages::PACKAGE,
        packages::BAD,
        created
            .change
            .assessment
            .as_ref()
            .map_or("-", |a| a.risk.level.as_str())
    ));
    let submitted = act(alice, &id, Action::Submit)?;
    narrator.say(format!(
        "  alice submits {id}: {} by its template, no CAB meeting needed",
        submitted.change.state.as_str()
    ));
    Ok(id)
}

fn schedule(cast: &Cast, id: &str, hosts: &[Host], narrator: &Narrator) -> Result<()> {
    let alice = cast.get("alice")?;
    // Truncated, never rounded up: the window must be open when the rollout starts it.
    let start = Timestamp::now().round(
        jiff::TimestampRound::new()
            .smallest(Unit::Second)
            .mode(jiff::RoundMode::Trunc),
    )?;
    let end = start.checked_add(2.hours())?;
    let verdict: ConflictPreview = alice.client.get_as(&format!(
        "/api/v1/changes/{id}/conflicts?start={start}&end={end}"
    ))?;
    let conflicts: Vec<String> = verdict
        .conflicts
        .iter()
        .map(|c| c.description.clone())
        .collect();
    if verdict.blocked {
        bail!(
            "{id} cannot be scheduled {start}..{end}: {}",
            conflicts.join("; ")
        );
    }
    // "No conflicts" also holds for hosts no window selects; that every host's window is open
    // shows when the server is asked about a time after the windows close (they close at most
    // six hours from now, and open again about a day later): it must then name every host.
    let closed = start.checked_add(8.hours())?;
    let (outside, next_opening) =
        outside_windows(alice, id, closed, closed.checked_add(1.minute())?)?;
    let names: Vec<String> = hosts.iter().map(|h| h.name.clone()).collect();
    let mut expected = names.clone();
    expected.sort();
    if outside != expected {
        let unconfirmed: Vec<&String> = expected.iter().filter(|h| !outside.contains(h)).collect();
        bail!(
            "the server's calendar does not put every host in a maintenance window: at {closed} it finds {} of {} outside theirs; not {}",
            outside.len(),
            expected.len(),
            unconfirmed
                .iter()
                .map(|h| h.as_str())
                .collect::<Vec<_>>()
                .join(", ")
        );
    }
    act(
        alice,
        id,
        Action::Schedule {
            window: Schedule { start, end },
            conflicts: Vec::new(),
        },
    )?;
    narrator.say(format!(
        "  alice schedules {id} for {start} .. {end}: {}",
        if conflicts.is_empty() {
            "no conflicts (no freeze, no other change)".to_owned()
        } else {
            conflicts.join("; ")
        }
    ));
    narrator.say(format!(
        "  the server's calendar: all {} hosts' windows are open from {start} to {end}; at {closed} all {} would be outside them (next opening {})",
        names.len(),
        outside.len(),
        next_opening.as_deref().unwrap_or("none")
    ));
    Ok(())
}

fn finish(
    cast: &Cast,
    id: &str,
    target: &str,
    rollout: RolloutOutcome,
    narrator: &Narrator,
) -> Result<ChangeOutcome> {
    let view: ChangeView = cast
        .get("alice")?
        .client
        .get_as(&format!("/api/v1/changes/{id}"))?;
    let change = view.change;
    let state = change.state.as_str().to_owned();
    narrator.say(format!("  {id} is now {state}"));
    Ok(ChangeOutcome {
        id: id.to_owned(),
        title: change.title,
        kind: change.kind.as_str().to_owned(),
        state,
        target: target.to_owned(),
        rollout: Some(rollout),
    })
}
