//! `sluice agent`: the host agent. Enrolls once with a one-time token, then loops: proves its
//! key for a short-lived token, reports what its journal says was interrupted, sends its
//! inventory when it changed, long-polls for a job, runs it with the real package manager and
//! reports. The protocol is in `docs/agent-protocol.md`; the job runner is `sluice-agent`.
//!
//! A report that cannot be delivered is not lost: the server hands the unreported job out
//! again, and the executor answers a job whose idempotency key already ran with its stored
//! report instead of running it twice.

use std::collections::BTreeMap;
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use ed25519_dalek::{Signer, SigningKey};
use serde::de::IgnoredAny;
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use sluice_agent::{Executor, ExecutorConfig, PackageRoot};
use sluice_core::agent_auth;
use sluice_core::inventory::InstalledPackage;
use sluice_core::job::{Job, JobReport};
use sluice_protocol::agents::{
    AgentToken, Challenge, ChallengeRequest, Enroll, Enrolled, InventoryDiff, InventoryRequest,
    RemovedPackage, TokenRequest,
};
use sluice_protocol::findings::PushReport;

use super::client::Client;

/// Arguments of `sluice agent`.
#[derive(Debug, clap::Args)]
pub struct AgentArgs {
    /// The server, e.g. http://sluice.example:8470.
    #[arg(long, value_name = "URL", env = "SLUICE_SERVER")]
    server: String,
    /// One-time enrollment token (`sluice agents token create`); needed only the first time.
    #[arg(long, env = "SLUICE_ENROLL_TOKEN", hide_env_values = true)]
    enroll_token: Option<String>,
    /// Where the agent keeps its key (mode 0600), identity and job journal.
    #[arg(long, default_value = "/var/lib/sluice-agent")]
    state_dir: PathBuf,
    /// Manage the packages of this private root instead of the machine's own.
    #[arg(long)]
    root: Option<PathBuf>,
    /// Labels, `k=v,k=v`, sent at enrollment.
    #[arg(long, value_delimiter = ',')]
    labels: Vec<String>,
    /// The host's name (default: the kernel's host name).
    #[arg(long)]
    hostname: Option<String>,
    /// Files whose SHA-256 the inventory reports.
    #[arg(long = "watch")]
    watched: Vec<PathBuf>,
    /// Longest a job poll waits, in seconds (the server caps it at 30).
    #[arg(long, default_value_t = 25)]
    poll_wait: u64,
    /// Do one round (recover, inventory, one poll, run what came) and exit.
    #[arg(long)]
    once: bool,
    /// Skip refreshing the package lists (`apt-get update`, `dnf makecache`) before dry runs
    /// (for repositories known to be current).
    #[arg(long)]
    no_refresh: bool,
}

/// What the agent remembers about its enrollment.
#[derive(Debug, Serialize, Deserialize)]
struct Identity {
    server: String,
    agent_id: String,
    hostname: String,
}

/// Runs the agent until killed (or one round with `--once`).
pub fn run(args: AgentArgs) -> Result<ExitCode> {
    std::fs::create_dir_all(&args.state_dir)
        .with_context(|| format!("creating {}", args.state_dir.display()))?;
    let root = match &args.root {
        None => PackageRoot::Host,
        Some(dir) => {
            let dir =
                std::path::absolute(dir).with_context(|| format!("--root {}", dir.display()))?;
            PackageRoot::private(dir)?
        }
    };
    let executor = Executor::new(
        root.clone(),
        args.state_dir.join("jobs"),
        ExecutorConfig {
            refresh_lists: !args.no_refresh,
            ..ExecutorConfig::default()
        },
    )?;
    let key = load_or_create_key(&args.state_dir.join("agent.key"))?;
    let identity = enroll_if_needed(&args, &key)?;
    eprintln!(
        "sluice agent {} for {} on {}",
        identity.agent_id, identity.hostname, identity.server
    );
    let mut session = Session {
        server: identity.server.clone(),
        agent_id: identity.agent_id.clone(),
        key,
        client: None,
        renew_at: Instant::now(),
    };
    let mut sent_inventory: Option<Sent> = None;
    loop {
        let round = one_round(&args, &executor, &root, &mut session, &mut sent_inventory);
        if args.once {
            round?;
            return Ok(ExitCode::SUCCESS);
        }
        if let Err(error) = round {
            // The server may be restarting: wait and go on; nothing is lost (see module docs).
            eprintln!("sluice agent: {error:#}; retrying in 5 s");
            session.client = None;
            std::thread::sleep(Duration::from_secs(5));
        }
    }
}

fn one_round(
    args: &AgentArgs,
    executor: &Executor,
    root: &PackageRoot,
    session: &mut Session,
    sent_inventory: &mut Option<Sent>,
) -> Result<()> {
    // Interrupted jobs first: their reports say where they stopped and what is installed now.
    for report in executor.recover_all().context("reading the job journal")? {
        session.report(&report)?;
    }
    send_inventory(args, root, session, sent_inventory)?;
    let job: Option<Job> = session
        .client()?
        .get_as(&format!("/api/v1/agent/jobs/next?wait={}", args.poll_wait))
        .context("the server sent a job this agent cannot read")?;
    let Some(job) = job else {
        return Ok(());
    };
    eprintln!("sluice agent: running job {}", job.id);
    let report = executor.run(&job);
    eprintln!("sluice agent: job {}: {}", job.id, report.outcome.as_str());
    session.report(&report)?;
    // Packages changed (or not): the server sees the inventory as it is now.
    send_inventory(args, root, session, sent_inventory)
}

/// What the server holds of this host's inventory, as the agent last sent it.
struct Sent {
    /// Fingerprint of everything but the collection time.
    fingerprint: String,
    /// The packages sent.
    packages: Vec<InstalledPackage>,
    /// The server's hash of them: the base of the next diff.
    base: String,
}

fn send_inventory(
    args: &AgentArgs,
    root: &PackageRoot,
    session: &mut Session,
    sent: &mut Option<Sent>,
) -> Result<()> {
    let mut inventory = sluice_agent::inventory::collect(root, &args.watched)?;
    inventory.hostname = Some(session_hostname(args)?);
    // Only what changed is worth sending: compare everything but the collection time.
    let mut fingerprint = serde_json::to_value(&inventory)?;
    if let Some(object) = fingerprint.as_object_mut() {
        object.remove("taken_at");
    }
    let fingerprint = agent_auth::to_hex(&Sha256::digest(fingerprint.to_string().as_bytes()));
    let InventoryRequest { requested } = session
        .client()?
        .get_as("/api/v1/agent/inventory-request")?;
    if !requested && sent.as_ref().is_some_and(|s| s.fingerprint == fingerprint) {
        return Ok(());
    }
    // A diff against what the server holds, unless asked for the whole inventory; a diff the
    // server cannot apply (its copy is not the base) is followed by the whole inventory.
    let mut answer = None;
    if let (false, Some(previous)) = (requested, sent.as_ref()) {
        let (added, removed) = package_diff(&previous.packages, &inventory.packages);
        let body = InventoryDiff {
            base: previous.base.clone(),
            os_release: inventory.os_release.clone(),
            added,
            removed,
            reboot_required: inventory.reboot_required,
        };
        match session.client()?.call::<_, PushReport>(
            reqwest::Method::PATCH,
            "/api/v1/agent/inventory",
            Some(&body),
        ) {
            Ok(report) => answer = Some(report),
            Err(error) if format!("{error:#}").contains("409 Conflict") => {}
            Err(error) => return Err(error),
        }
    }
    let report = match answer {
        Some(report) => report,
        None => session.client()?.call(
            reqwest::Method::PUT,
            "/api/v1/agent/inventory",
            Some(&inventory),
        )?,
    };
    *sent = Some(Sent {
        fingerprint,
        packages: inventory.packages,
        base: report.package_hash,
    });
    Ok(())
}

/// Packages added or changed, and those removed (by name and architecture), from `before` to
/// `after`.
fn package_diff(
    before: &[InstalledPackage],
    after: &[InstalledPackage],
) -> (Vec<InstalledPackage>, Vec<RemovedPackage>) {
    let key = |p: &InstalledPackage| (p.name.clone(), p.arch.clone());
    let old: BTreeMap<_, &InstalledPackage> = before.iter().map(|p| (key(p), p)).collect();
    let new: BTreeMap<_, &InstalledPackage> = after.iter().map(|p| (key(p), p)).collect();
    let added = after
        .iter()
        .filter(|p| old.get(&key(p)) != Some(p))
        .cloned()
        .collect();
    let removed = before
        .iter()
        .filter(|p| !new.contains_key(&key(p)))
        .map(|p| RemovedPackage {
            name: p.name.clone(),
            arch: p.arch.clone(),
        })
        .collect();
    (added, removed)
}

fn session_hostname(args: &AgentArgs) -> Result<String> {
    let found = match &args.hostname {
        Some(name) => name.clone(),
        None => std::fs::read_to_string("/proc/sys/kernel/hostname")
            .context("reading the host name (or pass --hostname)")?,
    };
    // The CMDB's rule, the one the server applies: a name it refuses is refused here first.
    Ok(sluice_core::cmdb::parse_hostname(&found)?)
}

/// The agent's key: made once, kept with mode 0600, never sent anywhere.
fn load_or_create_key(path: &Path) -> Result<SigningKey> {
    match std::fs::read(path) {
        Ok(bytes) => {
            let seed: [u8; 32] = bytes
                .as_slice()
                .try_into()
                .map_err(|_| anyhow::anyhow!("{} is not a 32-byte key", path.display()))?;
            Ok(SigningKey::from_bytes(&seed))
        }
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            let mut seed = [0u8; 32];
            getrandom::fill(&mut seed).context("no randomness for the agent key")?;
            let mut file = std::fs::OpenOptions::new()
                .write(true)
                .create_new(true)
                .mode(0o600)
                .open(path)
                .with_context(|| format!("creating {}", path.display()))?;
            std::io::Write::write_all(&mut file, &seed)?;
            file.sync_all()?;
            Ok(SigningKey::from_bytes(&seed))
        }
        Err(e) => Err(e).with_context(|| format!("reading {}", path.display())),
    }
}

fn enroll_if_needed(args: &AgentArgs, key: &SigningKey) -> Result<Identity> {
    let path = args.state_dir.join("agent.json");
    if let Ok(text) = std::fs::read_to_string(&path) {
        let identity: Identity = serde_json::from_str(&text)
            .with_context(|| format!("{} is damaged", path.display()))?;
        return Ok(identity);
    }
    let Some(token) = &args.enroll_token else {
        bail!(
            "this agent is not enrolled yet: pass --enroll-token (from `sluice agents token create`)"
        );
    };
    let hostname = session_hostname(args)?;
    let mut labels = BTreeMap::new();
    for label in &args.labels {
        let (k, v) = label
            .split_once('=')
            .with_context(|| format!("--labels {label:?}: expected key=value"))?;
        labels.insert(k.trim().to_owned(), v.trim().to_owned());
    }
    let client = Client::with(args.server.trim_end_matches('/').to_owned(), None)?;
    let enrolled: Enrolled = client.post_as(
        "/api/v1/agent/enroll",
        &Enroll {
            enrollment_token: token.clone(),
            hostname: hostname.clone(),
            public_key: agent_auth::to_hex(key.verifying_key().as_bytes()),
            labels,
        },
    )?;
    let identity = Identity {
        server: client.base().to_owned(),
        agent_id: enrolled.agent_id,
        hostname,
    };
    let mut file = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(&path)
        .with_context(|| format!("creating {}", path.display()))?;
    std::io::Write::write_all(
        &mut file,
        serde_json::to_string_pretty(&identity)?.as_bytes(),
    )?;
    file.sync_all()?;
    Ok(identity)
}

/// A signed-in connection to the server, renewed before its token expires.
struct Session {
    server: String,
    agent_id: String,
    key: SigningKey,
    client: Option<Client>,
    renew_at: Instant,
}

impl Session {
    fn client(&mut self) -> Result<&Client> {
        if self.client.is_none() || Instant::now() >= self.renew_at {
            let anonymous = Client::with(self.server.clone(), None)?;
            let challenge: Challenge = anonymous.post_as(
                "/api/v1/agent/challenge",
                &ChallengeRequest {
                    agent_id: self.agent_id.clone(),
                },
            )?;
            let signature = self.key.sign(&agent_auth::challenge_message(
                &self.agent_id,
                &challenge.nonce,
            ));
            let token: AgentToken = anonymous.post_as(
                "/api/v1/agent/token",
                &TokenRequest {
                    agent_id: self.agent_id.clone(),
                    nonce: challenge.nonce,
                    signature: agent_auth::to_hex(&signature.to_bytes()),
                },
            )?;
            let secret = token.token;
            // Renew two minutes early (tokens live at most 15 minutes).
            self.renew_at = Instant::now() + Duration::from_secs(13 * 60);
            self.client = Some(Client::with(self.server.clone(), Some(secret))?);
        }
        self.client.as_ref().context("no connection to the server")
    }

    fn report(&mut self, report: &JobReport) -> Result<()> {
        let path = format!("/api/v1/agent/jobs/{}/report", report.job_id);
        match self.client()?.post_as::<_, IgnoredAny>(&path, report) {
            Ok(_) => Ok(()),
            // A job the server does not know (queued through another server, or deleted) or
            // already reported differently: the journal keeps the truth; nothing to resend.
            Err(error) if is_final(&error) => {
                eprintln!(
                    "sluice agent: report of job {} not taken: {error:#}",
                    report.job_id
                );
                Ok(())
            }
            Err(error) => Err(error),
        }
    }
}

fn is_final(error: &anyhow::Error) -> bool {
    let text = format!("{error:#}");
    text.contains("404 Not Found") || text.contains("409 Conflict")
}
