//! Running a program with a deadline: output captured, the whole process group killed when the
//! time runs out, so a hanging check or hook can never stall a job.
//!
//! Owns process spawning for the crate; it never decides whether an exit status is a success for
//! the caller's purpose.

use std::io::Read;
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::mpsc;
use std::thread;
use std::time::{Duration, Instant};

use std::os::unix::process::CommandExt;

use crate::AgentError;

/// Bytes of each output stream kept (the end of it, where the errors are).
const KEEP_BYTES: usize = 256 * 1024;

/// How long to wait for output pipes after the program exited: a daemon it started may hold
/// them open forever.
const PIPE_GRACE: Duration = Duration::from_secs(2);

/// A finished (or killed) program.
#[derive(Clone, Debug)]
pub struct Finished {
    /// The program and its arguments, for messages.
    pub command: String,
    /// The exit status; none when it was killed for running out of time.
    pub status: Option<ExitStatus>,
    /// Standard output (its last 256 KiB), lossily decoded.
    pub stdout: String,
    /// Standard error (its last 256 KiB), lossily decoded.
    pub stderr: String,
    /// True when the deadline passed and the process group was killed.
    pub timed_out: bool,
    /// Wall time from spawn to exit.
    pub elapsed: Duration,
}

impl Finished {
    /// True when the program exited 0 in time.
    pub fn success(&self) -> bool {
        !self.timed_out && self.status.is_some_and(|s| s.success())
    }

    /// `exit status 100`, `killed by signal 9`, or `timed out after 2s`.
    pub fn status_text(&self) -> String {
        if self.timed_out {
            return format!("timed out after {:.1}s", self.elapsed.as_secs_f64());
        }
        match self.status {
            None => "no exit status".to_owned(),
            Some(status) => match (
                status.code(),
                std::os::unix::process::ExitStatusExt::signal(&status),
            ) {
                (Some(code), _) => format!("exit status {code}"),
                (None, Some(signal)) => format!("killed by signal {signal}"),
                (None, None) => status.to_string(),
            },
        }
    }

    /// The status and the program's own words: its `E:`/`W:`/`dpkg:` lines when it printed
    /// some (apt and dpkg do), else the last lines of standard error, else of standard output.
    pub fn describe(&self) -> String {
        let mut text = self.status_text();
        let words = self.diagnostics();
        if !words.is_empty() {
            text.push_str(": ");
            text.push_str(&words);
        }
        text
    }

    /// The lines of output that explain a failure (see [`Finished::describe`]).
    pub fn diagnostics(&self) -> String {
        let mut marked: Vec<String> = Vec::new();
        let mut continuing = false;
        for line in self.stderr.lines().chain(self.stdout.lines()) {
            let trimmed = line.trim();
            if trimmed.starts_with("E:")
                || trimmed.starts_with("W:")
                || trimmed.starts_with("dpkg:")
                || trimmed.starts_with("dpkg-query:")
            {
                marked.push(trimmed.to_owned());
                continuing = trimmed.starts_with("dpkg:");
            } else if continuing && line.starts_with(' ') && !trimmed.is_empty() {
                // dpkg's indented explanation of the line before.
                if let Some(last) = marked.last_mut() {
                    last.push(' ');
                    last.push_str(trimmed);
                }
            } else {
                continuing = false;
            }
        }
        if !marked.is_empty() {
            let mut seen = std::collections::HashSet::new();
            marked.retain(|l| seen.insert(l.clone()));
            return marked.join("\n");
        }
        let err = self.tail_of_stderr(5);
        if err.is_empty() {
            self.tail_of_stdout(5)
        } else {
            err
        }
    }

    /// The last `lines` non-empty lines of standard output.
    pub fn tail_of_stdout(&self, lines: usize) -> String {
        tail(&self.stdout, lines)
    }

    /// The last `lines` non-empty lines of standard error.
    pub fn tail_of_stderr(&self, lines: usize) -> String {
        tail(&self.stderr, lines)
    }
}

fn tail(text: &str, count: usize) -> String {
    let lines: Vec<&str> = text.lines().filter(|l| !l.trim().is_empty()).collect();
    lines[lines.len().saturating_sub(count)..].join("\n")
}

/// Runs `command` with standard input closed, capturing its output, in a process group of its
/// own; when `timeout` passes, the whole group is killed (SIGKILL) and the result says so.
pub fn run(mut command: Command, timeout: Duration) -> Result<Finished, AgentError> {
    let shown = show(&command);
    command
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .process_group(0);
    let started = Instant::now();
    let mut child = command.spawn().map_err(|source| AgentError::Spawn {
        program: command.get_program().to_string_lossy().into_owned(),
        source,
    })?;
    let (tx, rx) = mpsc::channel();
    let readers = [
        child
            .stdout
            .take()
            .map(|pipe| read_pipe(pipe, 0, tx.clone())),
        child.stderr.take().map(|pipe| read_pipe(pipe, 1, tx)),
    ];
    let (status, timed_out) = wait_for(child, timeout)?;
    let elapsed = started.elapsed();
    let mut outputs = [Vec::new(), Vec::new()];
    let expected = readers.iter().filter(|r| r.is_some()).count();
    let grace_end = Instant::now() + PIPE_GRACE;
    for _ in 0..expected {
        let left = grace_end.saturating_duration_since(Instant::now());
        match rx.recv_timeout(left) {
            Ok((index, bytes)) => outputs[index] = bytes,
            // A grandchild holds the pipe open: keep what the program itself said.
            Err(_) => break,
        }
    }
    let [stdout, stderr] = outputs;
    Ok(Finished {
        command: shown,
        status,
        stdout: String::from_utf8_lossy(&stdout).into_owned(),
        stderr: String::from_utf8_lossy(&stderr).into_owned(),
        timed_out,
        elapsed,
    })
}

/// Waits in a thread of its own, so the exit is seen the moment it happens; when the time
/// runs out, kills the child's whole process group.
fn wait_for(mut child: Child, timeout: Duration) -> Result<(Option<ExitStatus>, bool), AgentError> {
    let pid = rustix::process::Pid::from_child(&child);
    let (tx, rx) = mpsc::channel();
    thread::spawn(move || {
        let _ = tx.send(child.wait());
    });
    let waited = match rx.recv_timeout(timeout) {
        Ok(waited) => waited,
        Err(_) => {
            // The group id is the child's pid (process_group(0)); never signal group 1.
            if pid.as_raw_nonzero().get() > 1 {
                let _ = rustix::process::kill_process_group(pid, rustix::process::Signal::KILL);
            }
            let _ = rx.recv();
            return Ok((None, true));
        }
    };
    match waited {
        Ok(status) => Ok((Some(status), false)),
        Err(source) => Err(AgentError::Spawn {
            program: format!("waiting for process {}", pid.as_raw_nonzero()),
            source,
        }),
    }
}

fn read_pipe(
    mut pipe: impl Read + Send + 'static,
    index: usize,
    tx: mpsc::Sender<(usize, Vec<u8>)>,
) -> thread::JoinHandle<()> {
    thread::spawn(move || {
        let mut kept = Vec::new();
        let mut buf = [0u8; 8192];
        loop {
            match pipe.read(&mut buf) {
                Ok(0) | Err(_) => break,
                Ok(n) => {
                    kept.extend_from_slice(&buf[..n]);
                    if kept.len() > 2 * KEEP_BYTES {
                        kept.drain(..kept.len() - KEEP_BYTES);
                    }
                }
            }
        }
        if kept.len() > KEEP_BYTES {
            kept.drain(..kept.len() - KEEP_BYTES);
        }
        let _ = tx.send((index, kept));
    })
}

/// The command line as people would type it (arguments with spaces quoted), with the
/// environment variables that matter for package commands in front.
pub fn show(command: &Command) -> String {
    let mut parts = Vec::new();
    for (key, value) in command.get_envs() {
        if key == "APT_CONFIG"
            && let Some(value) = value
        {
            parts.push(format!("APT_CONFIG={}", value.to_string_lossy()));
        }
    }
    parts.push(command.get_program().to_string_lossy().into_owned());
    for arg in command.get_args() {
        let arg = arg.to_string_lossy();
        if arg.contains(char::is_whitespace) || arg.is_empty() {
            parts.push(format!("'{arg}'"));
        } else {
            parts.push(arg.into_owned());
        }
    }
    parts.join(" ")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sh(script: &str) -> Command {
        let mut command = Command::new("/bin/sh");
        command.args(["-c", script]);
        command
    }

    #[test]
    fn output_and_status() {
        let done = run(
            sh("echo out; echo 'E: broken' >&2; exit 3"),
            Duration::from_secs(10),
        )
        .unwrap();
        assert!(!done.success());
        assert_eq!(done.stdout, "out\n");
        assert_eq!(done.describe(), "exit status 3: E: broken");
        let ok = run(sh("true"), Duration::from_secs(10)).unwrap();
        assert!(ok.success());
    }

    #[test]
    fn a_hanging_group_is_killed() {
        // The grandchild (sleep) holds stdout: killing only the shell would leave the pipe open.
        let started = Instant::now();
        let done = run(
            sh("sleep 30 & sleep 30; echo never"),
            Duration::from_millis(300),
        )
        .unwrap();
        assert!(done.timed_out);
        assert!(!done.success());
        assert!(
            done.describe().starts_with("timed out after"),
            "{}",
            done.describe()
        );
        assert!(
            started.elapsed() < Duration::from_secs(5),
            "{:?}",
            started.elapsed()
        );
    }

    #[test]
    fn a_missing_program_is_named() {
        let err = run(Command::new("/nonexistent/prog"), Duration::from_secs(1)).unwrap_err();
        assert!(err.to_string().contains("/nonexistent/prog"), "{err}");
    }
}
