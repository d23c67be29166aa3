//! `sluice demo`: the whole product on one machine, narrated. A server on SQLite, a local apt
//! repository of generated packages, agents on private package roots over three environments
//! and three time zones, the real KEV catalog and an advisory naming the demo package, a change
//! through peer review and the CAB rolled out canary first, and a bad release stopped by the
//! circuit breaker and rolled back. The machine's own packages are never touched: every apt and
//! dpkg command acts on a private root.
//!
//! Interactive, it leaves the server running with its URL and credentials printed until Ctrl-C;
//! `--headless` stops at the end, and `--output json` prints one JSON object on standard output
//! (the narration goes to standard error).

mod fleet;
mod narrate;
mod packages;
mod report;
mod rollout;
mod story;

use std::path::{Path, PathBuf};
use std::process::{Command, ExitCode, Stdio};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};

use narrate::Narrator;

/// Arguments of `sluice demo`.
#[derive(Debug, clap::Args)]
pub struct DemoArgs {
    /// How many agents (hosts) to start, spread over dev, test and prod and three time zones.
    #[arg(long, default_value_t = 12, value_name = "N",
          value_parser = clap::value_parser!(u16).range(3..=48))]
    agents: u16,
    /// Work in this directory (new or empty; kept afterwards) instead of a temporary one.
    #[arg(long, value_name = "DIR")]
    dir: Option<PathBuf>,
    /// Run the story and stop: no progress bars, no waiting for Ctrl-C.
    #[arg(long)]
    headless: bool,
    /// `text` narrates on standard output; `json` prints one JSON object there at the end.
    #[arg(long, value_enum, default_value = "text")]
    output: DemoOutput,
    /// For benchmarks (bench/ansible/run.sh): bring up the server, the users, the repository
    /// and the hosts (all in `prod`, on the old version, agents enrolled), print one JSON line
    /// saying where everything is, and wait for SIGTERM or Ctrl-C; no story.
    #[arg(long, hide = true, conflicts_with_all = ["headless", "output"])]
    fleet_only: bool,
    /// With --fleet-only: agents do not run `apt-get update` before a job's dry run
    /// (`sluice agent --no-refresh`), so they do what the Ansible playbook does.
    #[arg(long, hide = true, requires = "fleet_only")]
    no_refresh: bool,
}

/// Output formats of `sluice demo`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum DemoOutput {
    /// Narration and a summary.
    Text,
    /// One JSON object (narration on standard error).
    Json,
}

/// Runs `sluice demo`.
pub fn run(args: DemoArgs) -> Result<ExitCode> {
    let started = Instant::now();
    let json = args.output == DemoOutput::Json;
    check_tools()?;
    let (dir, temporary) = workspace(args.dir.as_deref())?;
    narrate::watch_ctrl_c();
    if args.fleet_only {
        return fleet_only(&dir, temporary, usize::from(args.agents), !args.no_refresh);
    }
    let narrator = Narrator::new(args.headless, json);
    narrator.say(format!(
        "sluice demo: {} hosts, working in {}",
        args.agents,
        dir.display()
    ));
    let story = match story::run(&dir, usize::from(args.agents), &narrator) {
        Ok(story) => story,
        Err(_) if narrate::interrupted() => {
            // The story's processes were stopped as it unwound; nothing is worth keeping.
            if temporary {
                let _ = std::fs::remove_dir_all(&dir);
            }
            eprintln!("sluice demo: interrupted; the agents and the server are stopped");
            return Ok(ExitCode::from(130));
        }
        Err(error) => {
            return Err(error.context(format!(
                "the demo stopped; its logs and data are in {}",
                dir.display()
            )));
        }
    };
    let audit = report::verify_audit(&story.server.data_dir)?;
    if json {
        narrator.section("Audit");
        narrator.say(format!("  {}", audit.message));
    }
    let surprises = report::surprises(&story, &audit);
    for surprise in &surprises {
        narrator.say(format!("  unexpected: {surprise}"));
    }
    let duration_s = started.elapsed().as_secs_f64();
    let kept = !temporary;
    if json {
        println!(
            "{}",
            serde_json::to_string_pretty(&report::json(&story, &audit, duration_s, &dir, kept))?
        );
    } else {
        report::print_summary(&story, &audit, duration_s);
    }
    if !args.headless {
        wait_for_ctrl_c(&story, &narrator);
    }
    narrator.say("stopping the agents and the server");
    drop(story);
    if temporary {
        std::fs::remove_dir_all(&dir)
            .with_context(|| format!("cannot remove {}", dir.display()))?;
    }
    // The demo checks its own story: anything unexpected is exit status 1.
    Ok(if surprises.is_empty() {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(1)
    })
}

/// `sluice demo --fleet-only`: the fleet up, one JSON line on standard output (narration on
/// standard error), then running until SIGTERM, SIGHUP or Ctrl-C.
fn fleet_only(dir: &Path, temporary: bool, agents: usize, refresh: bool) -> Result<ExitCode> {
    let narrator = Narrator::new(true, true);
    narrator.say(format!(
        "sluice demo --fleet-only: {agents} hosts in prod, working in {}",
        dir.display()
    ));
    let brought = story::bring_up(dir, agents, &["prod"], refresh, &narrator);
    let (story, _cast, repo) = match brought {
        Ok(up) => up,
        Err(error) => {
            if temporary && narrate::interrupted() {
                let _ = std::fs::remove_dir_all(dir);
            }
            return Err(error.context(format!(
                "the fleet did not come up; its logs and data are in {}",
                dir.display()
            )));
        }
    };
    let hosts: Vec<serde_json::Value> = story
        .hosts
        .iter()
        .map(|h| {
            serde_json::json!({
                "name": h.name,
                "env": h.env,
                "tz": h.site.tz,
                "root": h.root,
                "state": h.state,
                "log": dir.join("logs").join(format!("agent-{}.log", h.name)),
            })
        })
        .collect();
    let line = serde_json::json!({
        "server": story.server.url,
        "data_dir": story.server.data_dir,
        "server_log": story.server.log,
        "admin_password": story.admin_password,
        "user_password": story.user_password,
        "users": story::PEOPLE.iter().map(|p| serde_json::json!({"name": p.0, "roles": p.1, "groups": p.2})).collect::<Vec<_>>(),
        "repo": repo,
        "package": packages::PACKAGE,
        "versions": {"old": packages::OLD, "fixed": packages::FIXED, "bad": packages::BAD},
        "health": packages::HEALTH,
        "dir": dir,
        "hosts": hosts,
        "setup_s": story.setup.as_secs_f64(),
        "pids": {
            "server": story.server.process.id(),
            "agents": story.agents.iter().map(fleet::Process::id).collect::<Vec<_>>(),
        },
    });
    {
        use std::io::Write;
        let mut out = std::io::stdout().lock();
        writeln!(out, "{line}")?;
        out.flush()?;
    }
    while narrate::pause(Duration::from_millis(200)).is_ok() {}
    narrator.say("stopping the agents and the server");
    drop(story);
    if temporary {
        std::fs::remove_dir_all(dir).with_context(|| format!("cannot remove {}", dir.display()))?;
    }
    Ok(ExitCode::SUCCESS)
}

fn wait_for_ctrl_c(story: &story::Story, narrator: &Narrator) {
    narrator.say("");
    narrator.say(format!(
        "The server keeps running at {} — open {}/api/docs/ or use the CLI:",
        story.server.url, story.server.url
    ));
    narrator.say(format!(
        "  sluice login --server {} --username admin      (password {})",
        story.server.url, story.admin_password
    ));
    narrator.say(format!(
        "  users alice, olga, bob, carol, sam, chair share the password {}",
        story.user_password
    ));
    narrator.say("  sluice change list; sluice findings list; sluice agents list");
    narrator.say("Press Ctrl-C to stop the agents and the server.");
    while narrate::pause(Duration::from_millis(200)).is_ok() {}
}

/// The tools the demo runs (dpkg's and apt's), and the privilege dpkg needs.
fn check_tools() -> Result<()> {
    // dpkg installs nothing without root, even into a private root; the demo touches nothing
    // outside its directory, but it needs root for that.
    let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    let euid = status
        .lines()
        .find_map(|l| l.strip_prefix("Uid:"))
        .and_then(|ids| ids.split_whitespace().nth(1))
        .and_then(|id| id.parse::<u32>().ok());
    if euid.is_some_and(|id| id != 0) {
        bail!(
            "the demo needs root: dpkg installs nothing without it, even into the demo's private package roots (the machine's own packages are never touched); run it with sudo"
        );
    }
    for tool in ["dpkg-deb", "dpkg-scanpackages", "dpkg-query", "apt-get"] {
        let found = Command::new("sh")
            .args(["-c", &format!("command -v {tool}")])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status()
            .is_ok_and(|s| s.success());
        if !found {
            bail!("the demo needs {tool} (install dpkg-dev and apt, e.g. with .ci/setup)");
        }
    }
    Ok(())
}

/// The working directory: the one given (new or empty), or a fresh temporary one. Made
/// absolute, since roots and feed paths are named to other processes.
fn workspace(given: Option<&Path>) -> Result<(PathBuf, bool)> {
    match given {
        Some(dir) => {
            if dir.exists() {
                let mut entries =
                    std::fs::read_dir(dir).with_context(|| format!("--dir {}", dir.display()))?;
                if entries.next().is_some() {
                    bail!(
                        "--dir {}: not empty; give a new or empty directory",
                        dir.display()
                    );
                }
            }
            std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
            Ok((dir.canonicalize()?, false))
        }
        None => {
            let mut bytes = [0u8; 6];
            getrandom::fill(&mut bytes).context("no randomness for a directory name")?;
            let name: String = bytes.iter().map(|b| format!("{b:02x}")).collect();
            let dir = std::env::temp_dir().join(format!("sluice-demo-{name}"));
            std::fs::create_dir_all(&dir).with_context(|| format!("creating {}", dir.display()))?;
            Ok((dir.canonicalize()?, true))
        }
    }
}
