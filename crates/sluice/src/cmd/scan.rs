//! `sluice scan` (placeholder until the scan work lands).

use std::process::ExitCode;

/// Arguments of `sluice scan`.
#[derive(Debug, clap::Args)]
pub struct ScanArgs {}

/// Runs `sluice scan`.
pub fn run(_args: ScanArgs) -> anyhow::Result<ExitCode> {
    anyhow::bail!("not built yet")
}
