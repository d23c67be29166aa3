//! `sluice audit verify|export`: reads the audit chain straight from the database, so it works
//! with the server stopped and trusts nothing the server says.

use std::io::Write;
use std::process::ExitCode;

use anyhow::Result;

use super::server::{DatabaseArgs, with_store};

/// Subcommands of `sluice audit`.
#[derive(Debug, clap::Subcommand)]
pub enum AuditCommand {
    /// Recompute the chain; exit 1 naming the first altered, inserted or missing event.
    Verify(DatabaseArgs),
    /// Print events as JSON lines.
    Export(ExportArgs),
}

/// Arguments of `sluice audit export`.
#[derive(Debug, clap::Args)]
pub struct ExportArgs {
    #[command(flatten)]
    database: DatabaseArgs,
    /// Only events at or after this date (YYYY-MM-DD) or time (RFC 3339).
    #[arg(long, value_name = "DATE")]
    since: Option<String>,
    /// Output format (only jsonl).
    #[arg(long, value_enum, default_value = "jsonl")]
    output: ExportFormat,
}

/// Export formats.
#[derive(Debug, Clone, Copy, clap::ValueEnum)]
pub enum ExportFormat {
    /// One JSON object per line.
    Jsonl,
}

/// Runs `sluice audit …`.
pub fn run(command: AuditCommand) -> Result<ExitCode> {
    match command {
        AuditCommand::Verify(database) => {
            let outcome = with_store(&database, async |store| Ok(store.verify_audit().await?))?;
            match outcome {
                Ok(head) => {
                    println!(
                        "audit chain intact: {} events; head hash {}",
                        head.seq, head.hash
                    );
                    Ok(ExitCode::SUCCESS)
                }
                Err(broken) => {
                    eprintln!("audit chain BROKEN: {broken}");
                    Ok(ExitCode::from(1))
                }
            }
        }
        AuditCommand::Export(args) => {
            let since = args
                .since
                .as_deref()
                .map(sluice_server::api::audit::since_bound)
                .transpose()
                .map_err(|e| anyhow::anyhow!("--since: {e}"))?;
            let ExportFormat::Jsonl = args.output;
            let events = with_store(&args.database, async |store| {
                Ok(store.audit_events(since.as_deref()).await?)
            })?;
            let stdout = std::io::stdout();
            let mut out = std::io::BufWriter::new(stdout.lock());
            for event in events {
                serde_json::to_writer(&mut out, &event)?;
                writeln!(out)?;
            }
            out.flush()?;
            Ok(ExitCode::SUCCESS)
        }
    }
}
