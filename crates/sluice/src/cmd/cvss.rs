//! `sluice cvss` (owned by the cvss work; placeholder).

use std::process::ExitCode;

/// Arguments of `sluice cvss`.
#[derive(Debug, clap::Args)]
pub struct CvssArgs {
    /// Vectors to score; `-` reads one vector per line from standard input.
    pub vectors: Vec<String>,
}

/// Runs `sluice cvss`.
pub fn run(_args: CvssArgs) -> anyhow::Result<ExitCode> {
    anyhow::bail!("not built yet")
}
