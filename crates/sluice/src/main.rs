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
}

fn main() -> ExitCode {
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
    };
    match result {
        Ok(code) => code,
        Err(err) => {
            eprintln!("sluice: error: {err:#}");
            ExitCode::from(2)
        }
    }
}
