//! `sluice`: the one binary. Thin by design: it parses arguments, does the I/O and hands the
//! decisions to `sluice-core`.

mod cmd;

use std::process::ExitCode;

use clap::{Parser, Subcommand};

/// Patch governance and progressive rollout for Linux fleets.
#[derive(Debug, Parser)]
#[command(name = "sluice", version, about, propagate_version = true)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Score CVSS 3.0, 3.1 and 4.0 vectors.
    Cvss(cmd::cvss::CvssArgs),
    /// Match one host's packages against advisory feeds and prioritise the findings (offline).
    Scan(Box<cmd::scan::ScanArgs>),
    /// Run the server: HTTP API on SQLite (default) or PostgreSQL.
    Server(Box<cmd::server::ServerArgs>),
    /// Database maintenance.
    #[command(subcommand)]
    Db(cmd::server::DbCommand),
    /// Verify or export the tamper-evident audit chain (reads the database directly).
    #[command(subcommand)]
    Audit(cmd::audit::AuditCommand),
    /// Log in to a server and store the token (mode 0600) for the other commands.
    Login(cmd::accounts::LoginArgs),
    /// Show who the stored token belongs to.
    Whoami(cmd::client::ServerArgs),
    /// API tokens: create for automation, list, revoke.
    #[command(subcommand)]
    Token(cmd::accounts::TokenCommand),
    /// User accounts (admin).
    #[command(subcommand)]
    Users(cmd::accounts::UsersCommand),
    /// Advisory feeds on the server: add, list, sync.
    #[command(subcommand)]
    Feeds(cmd::findings::FeedsCommand),
    /// Send host inventories to the server.
    #[command(subcommand)]
    Inventory(cmd::findings::InventoryCommand),
    /// Prioritised findings on the server.
    #[command(subcommand)]
    Findings(cmd::findings::FindingsCommand),
    /// The CMDB on the server: import, list, show, set, export assets.
    #[command(subcommand)]
    Assets(cmd::assets::AssetsCommand),
    /// Run the host agent: enroll once, then report inventory and run approved jobs.
    Agent(Box<cmd::agent::AgentArgs>),
    /// Agents on the server: enrollment tokens, list, revoke.
    #[command(subcommand)]
    Agents(cmd::agents::AgentsCommand),
    /// Jobs on the server for agents: queue, list, show.
    #[command(subcommand)]
    Jobs(cmd::agents::JobsCommand),
    /// Run a job file on this machine without a server; report an interrupted one.
    #[command(subcommand)]
    Job(cmd::job::JobCommand),
    /// Change requests: create, submit, review, vote, schedule, implement, export.
    #[command(subcommand)]
    Change(cmd::change::ChangeCommand),
    /// Deferrals, risk acceptances and legacy pins of findings.
    #[command(subcommand)]
    Defer(cmd::defer::DeferCommand),
    /// The CAB and deferral policies: show, set a new version.
    #[command(subcommand)]
    Policy(cmd::change::PolicyCommand),
    /// Maintenance windows: preview a rule's occurrences (offline); add, list, delete.
    #[command(subcommand)]
    Window(cmd::window::WindowCommand),
    /// Freezes and their exceptions: add, list, delete; request, approve, reject.
    #[command(subcommand)]
    Freeze(cmd::freeze::FreezeCommand),
    /// Rollouts: start a scheduled change's, watch it live, pause, resume, abort, roll back.
    #[command(subcommand)]
    Rollout(cmd::rollout::RolloutCommand),
    /// The whole story on this machine: server, agents on private roots, findings, a change
    /// through the CAB, a canary-first rollout and a bad release rolled back.
    Demo(cmd::demo::DemoArgs),
}

fn main() -> ExitCode {
    quiet_on_closed_pipe();
    let cli = match Cli::try_parse() {
        Ok(cli) => cli,
        Err(err) => {
            // clap prints help/version to stdout (exit 0) and usage errors to stderr (exit 2).
            let _ = err.print();
            return if err.use_stderr() {
                ExitCode::from(2)
            } else {
                ExitCode::SUCCESS
            };
        }
    };
    let result = match cli.command {
        Command::Cvss(args) => cmd::cvss::run(args),
        Command::Scan(args) => cmd::scan::run(*args),
        Command::Server(args) => cmd::server::run(*args),
        Command::Db(command) => cmd::server::run_db(command),
        Command::Audit(command) => cmd::audit::run(command),
        Command::Login(args) => cmd::accounts::login(args),
        Command::Whoami(server) => cmd::accounts::whoami(server),
        Command::Token(command) => cmd::accounts::token(command),
        Command::Users(command) => cmd::accounts::users(command),
        Command::Feeds(command) => cmd::findings::feeds(command),
        Command::Inventory(command) => cmd::findings::inventory(command),
        Command::Findings(command) => cmd::findings::findings(command),
        Command::Assets(command) => cmd::assets::run(command),
        Command::Agent(args) => cmd::agent::run(*args),
        Command::Agents(command) => cmd::agents::run(command),
        Command::Jobs(command) => cmd::agents::jobs(command),
        Command::Job(command) => cmd::job::run(command),
        Command::Change(command) => cmd::change::run(command),
        Command::Defer(command) => cmd::defer::run(command),
        Command::Policy(command) => cmd::change::policy(command),
        Command::Window(command) => cmd::window::run(command),
        Command::Freeze(command) => cmd::freeze::run(command),
        Command::Rollout(command) => cmd::rollout::run(command),
        Command::Demo(args) => cmd::demo::run(args),
    };
    match result {
        Ok(code) => code,
        Err(err) if closed_pipe(&err) => ExitCode::SUCCESS,
        Err(err) => {
            eprintln!("sluice: error: {err:#}");
            ExitCode::from(2)
        }
    }
}

/// `sluice … | head` closes the pipe early; `println!` then panics with "failed printing to
/// stdout: Broken pipe". That is the reader's choice, not an error: exit quietly with 0, as
/// `sluice cvss` and `sluice window` already do (the crates forbid `unsafe`, so SIGPIPE's
/// default cannot be restored). Any other panic is reported as usual.
fn quiet_on_closed_pipe() {
    let default = std::panic::take_hook();
    std::panic::set_hook(Box::new(move |info| {
        let message = info
            .payload()
            .downcast_ref::<String>()
            .map(String::as_str)
            .or_else(|| info.payload().downcast_ref::<&str>().copied())
            .unwrap_or("");
        if message.contains("failed printing to stdout") && message.contains("Broken pipe") {
            std::process::exit(0);
        }
        default(info);
    }));
}

/// Whether the error is the reader closing standard output (see [`quiet_on_closed_pipe`]).
fn closed_pipe(err: &anyhow::Error) -> bool {
    err.chain().any(|cause| {
        cause
            .downcast_ref::<std::io::Error>()
            .is_some_and(|e| e.kind() == std::io::ErrorKind::BrokenPipe)
    })
}
