//! `sluice cvss`: scores CVSS 3.0, 3.1 and 4.0 vectors given as arguments or, with `-`, one per
//! line on standard input.
//!
//! Owns the I/O and the two output formats; parsing and scoring are `sluice_core::cvss`'s. A bad
//! vector never stops the others: it is reported on standard error and turns the exit status
//! into 1. Standard input is streamed, so a feed-sized batch needs no more memory than a few rows.

use std::io::{self, BufRead, BufWriter, Write};
use std::process::ExitCode;

use anyhow::Context;
use serde::Serialize;
use sluice_core::cvss::{Cvss, CvssVersion, Severity};

/// Arguments of `sluice cvss`.
#[derive(Debug, clap::Args)]
pub struct CvssArgs {
    /// Vectors to score; `-` reads one vector per line from standard input.
    #[arg(required = true, value_name = "VECTOR")]
    pub vectors: Vec<String>,

    /// Output format: aligned columns for people, or a JSON array for programs.
    #[arg(short, long, value_enum, default_value_t = OutputFormat::Table)]
    pub output: OutputFormat,
}

/// How `sluice cvss` prints its results.
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum OutputFormat {
    /// One line per vector: vector, version, score, severity.
    Table,
    /// A JSON array of `{"vector", "version", "score", "severity"}` objects.
    Json,
}

/// Runs `sluice cvss`: exit 0 when every vector scored, 1 when some did not.
pub fn run(args: CvssArgs) -> anyhow::Result<ExitCode> {
    match score_all(&args) {
        Ok(code) => Ok(code),
        // `sluice cvss - | head` is normal use, not an error.
        Err(err) if is_broken_pipe(&err) => Ok(ExitCode::SUCCESS),
        Err(err) => Err(err),
    }
}

fn is_broken_pipe(err: &anyhow::Error) -> bool {
    err.chain().any(|cause| {
        cause
            .downcast_ref::<io::Error>()
            .is_some_and(|io| io.kind() == io::ErrorKind::BrokenPipe)
    })
}

fn score_all(args: &CvssArgs) -> anyhow::Result<ExitCode> {
    let stdout = io::stdout();
    let mut run = Run {
        output: Output::new(args.output, BufWriter::new(stdout.lock())),
        inputs: 0,
        failures: 0,
    };
    for arg in &args.vectors {
        if arg == "-" {
            run.score_lines(io::stdin().lock())?;
        } else {
            run.score(arg, None)?;
        }
    }
    if run.inputs == 0 {
        anyhow::bail!("no vectors to score: standard input held only blank lines");
    }
    run.output.finish().context("writing to standard output")?;
    Ok(if run.failures == 0 {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(1)
    })
}

/// The state of one `sluice cvss` invocation.
struct Run<W: Write> {
    output: Output<W>,
    inputs: usize,
    failures: usize,
}

impl<W: Write> Run<W> {
    /// Scores one vector; `line` is its line number on standard input, if it came from there.
    fn score(&mut self, vector: &str, line: Option<usize>) -> anyhow::Result<()> {
        self.inputs += 1;
        match Cvss::parse(vector) {
            Ok(cvss) => self.output.push(cvss)?,
            Err(err) => {
                self.failures += 1;
                match line {
                    Some(line) => eprintln!("sluice: standard input, line {line}: {err}"),
                    None => eprintln!("sluice: {err}"),
                }
            }
        }
        Ok(())
    }

    /// Scores every non-blank line of `input`.
    fn score_lines(&mut self, mut input: impl BufRead) -> anyhow::Result<()> {
        let mut line = Vec::new();
        let mut number = 0;
        loop {
            line.clear();
            let read = input
                .read_until(b'\n', &mut line)
                .context("reading standard input")?;
            if read == 0 {
                return Ok(());
            }
            number += 1;
            // Invalid UTF-8 turns into U+FFFD, which no metric allows: such a line is reported
            // like any other bad vector, with its number.
            let text = String::from_utf8_lossy(&line);
            if !text.trim().is_empty() {
                self.score(&text, Some(number))?;
            }
        }
    }
}

/// One result as JSON; the score serialises with its one decimal (9.8, 10.0, 0.0).
#[derive(Serialize)]
struct JsonRow<'a> {
    vector: &'a str,
    version: CvssVersion,
    score: f64,
    severity: Severity,
}

/// Table rows wait until this many are known, to align the vector column without holding a
/// whole batch in memory; a longer vector after that simply sticks out.
const ALIGN_LOOKAHEAD: usize = 1024;

/// The results writer for either format.
enum Output<W: Write> {
    Table {
        out: W,
        pending: Vec<Cvss>,
        width: Option<usize>,
    },
    Json {
        out: W,
        rows: usize,
    },
}

impl<W: Write> Output<W> {
    fn new(format: OutputFormat, out: W) -> Self {
        match format {
            OutputFormat::Table => Self::Table {
                out,
                pending: Vec::new(),
                width: None,
            },
            OutputFormat::Json => Self::Json { out, rows: 0 },
        }
    }

    fn push(&mut self, cvss: Cvss) -> anyhow::Result<()> {
        match self {
            Self::Table {
                out,
                pending,
                width: Some(width),
            } => {
                debug_assert!(pending.is_empty());
                write_table_row(out, &cvss, *width)?;
            }
            Self::Table {
                out,
                pending,
                width,
            } => {
                pending.push(cvss);
                if pending.len() >= ALIGN_LOOKAHEAD {
                    *width = Some(flush_pending(out, pending)?);
                }
            }
            Self::Json { out, rows } => {
                out.write_all(if *rows == 0 { b"[\n  " } else { b",\n  " })?;
                serde_json::to_writer(
                    &mut *out,
                    &JsonRow {
                        vector: cvss.vector(),
                        version: cvss.version(),
                        score: cvss.score(),
                        severity: cvss.severity(),
                    },
                )?;
                *rows += 1;
            }
        }
        Ok(())
    }

    fn finish(self) -> io::Result<()> {
        match self {
            Self::Table {
                mut out,
                mut pending,
                ..
            } => {
                flush_pending(&mut out, &mut pending)?;
                out.flush()
            }
            Self::Json { mut out, rows } => {
                out.write_all(if rows == 0 { b"[]\n" } else { b"\n]\n" })?;
                out.flush()
            }
        }
    }
}

/// Writes the rows held back for alignment and returns the vector column's width.
fn flush_pending(out: &mut impl Write, pending: &mut Vec<Cvss>) -> io::Result<usize> {
    let width = pending.iter().map(|c| c.vector().len()).max().unwrap_or(0);
    for cvss in pending.drain(..) {
        write_table_row(out, &cvss, width)?;
    }
    Ok(width)
}

fn write_table_row(out: &mut impl Write, cvss: &Cvss, width: usize) -> io::Result<()> {
    writeln!(
        out,
        "{:<width$}  {}  {:>4.1}  {}",
        cvss.vector(),
        cvss.version(),
        cvss.score(),
        cvss.severity(),
    )
}
