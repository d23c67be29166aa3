//! The on-disk journal: one append-only JSON-lines file per job, each record fsynced before
//! the agent moves on.
//!
//! A job's directory is `STATE/jobs/KEY` (KEY: the first 32 hex digits of the SHA-256 of its
//! idempotency key) and holds `journal.jsonl` and the configuration files saved before the
//! change (`config/…`). The first record is the job itself; then `step-before` and
//! `step-after` around every step, `recorded` for facts a rollback or a recovery needs, and
//! finally `job-finished` with the report. A journal without `job-finished` belongs to a job
//! the agent did not finish: recovery reports it as interrupted. A torn last line (the agent
//! died mid-write) is ignored; any other malformed line is an error naming it.

use std::fs::{self, File, OpenOptions};
use std::io::Write;
use std::path::{Path, PathBuf};

use jiff::Timestamp;
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use sluice_core::job::{Job, JobReport, StepName, StepResult, Versions};

use crate::AgentError;
use crate::failpoint::{self, Phase};

/// One line of a job's journal.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(tag = "record", rename_all = "kebab-case")]
pub enum Record {
    /// The job as received.
    JobStarted {
        /// The job.
        job: Job,
        /// When the agent started it.
        at: Timestamp,
    },
    /// A step is about to run.
    StepBefore {
        /// The step.
        step: StepName,
        /// When.
        at: Timestamp,
    },
    /// A step ran.
    StepAfter {
        /// Its result.
        result: StepResult,
    },
    /// Facts recorded before the change, for a rollback or a recovery.
    Recorded {
        /// Versions before the change of every package the change touches.
        versions_before: Versions,
    },
    /// Quiesce is about to stop this hook (its index in the job): from here on it must be
    /// started again, even after a crash.
    Stopping {
        /// Index into the job's quiesce hooks.
        hook: usize,
    },
    /// The job is over; its report.
    JobFinished {
        /// The final report.
        report: JobReport,
    },
}

/// An open journal of one job.
#[derive(Debug)]
pub struct Journal {
    dir: PathBuf,
    path: PathBuf,
    file: File,
}

/// Directory name of a job's journal.
pub fn job_dir_name(idempotency_key: &str) -> String {
    let digest = Sha256::digest(idempotency_key.as_bytes());
    digest.iter().take(16).map(|b| format!("{b:02x}")).collect()
}

/// The directory holding every job's journal.
pub fn jobs_dir(state_dir: &Path) -> PathBuf {
    state_dir.join("jobs")
}

impl Journal {
    /// Creates the journal of a new job and writes its first record. Fails when the job's
    /// directory already has a journal (the caller checks for a finished one first).
    pub fn create(state_dir: &Path, job: &Job, at: Timestamp) -> Result<Journal, AgentError> {
        let jobs = jobs_dir(state_dir);
        fs::create_dir_all(&jobs).map_err(|e| AgentError::io("creating", &jobs, e))?;
        let dir = jobs.join(job_dir_name(&job.idempotency_key));
        fs::create_dir(&dir).map_err(|e| AgentError::io("creating", &dir, e))?;
        let path = dir.join("journal.jsonl");
        let file = OpenOptions::new()
            .create_new(true)
            .append(true)
            .open(&path)
            .map_err(|e| AgentError::io("creating", &path, e))?;
        sync_dir(&dir)?;
        sync_dir(&jobs)?;
        let mut journal = Journal { dir, path, file };
        journal.append(&Record::JobStarted {
            job: job.clone(),
            at,
        })?;
        Ok(journal)
    }

    /// Reopens an existing journal for appending (recovery finishes interrupted jobs).
    pub fn reopen(dir: &Path) -> Result<Journal, AgentError> {
        let path = dir.join("journal.jsonl");
        let file = OpenOptions::new()
            .append(true)
            .open(&path)
            .map_err(|e| AgentError::io("opening", &path, e))?;
        Ok(Journal {
            dir: dir.to_path_buf(),
            path,
            file,
        })
    }

    /// The job's directory (saved configuration lives under it).
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// Appends one record and waits until it is on disk.
    pub fn append(&mut self, record: &Record) -> Result<(), AgentError> {
        let mut line = serde_json::to_vec(record).map_err(|e| AgentError::Journal {
            path: self.path.clone(),
            reason: format!("encoding a record: {e}"),
        })?;
        line.push(b'\n');
        self.file
            .write_all(&line)
            .and_then(|()| self.file.sync_data())
            .map_err(|e| AgentError::io("writing", &self.path, e))
    }

    /// Journals that a step is about to run (then honours a `STEP:before` failpoint).
    pub fn before(&mut self, step: StepName, at: Timestamp) -> Result<(), AgentError> {
        self.append(&Record::StepBefore { step, at })?;
        failpoint::hit(step, Phase::Before);
        Ok(())
    }

    /// Journals a step's result (then honours a `STEP:after` failpoint).
    pub fn after(&mut self, result: &StepResult) -> Result<(), AgentError> {
        self.append(&Record::StepAfter {
            result: result.clone(),
        })?;
        failpoint::hit(result.step, Phase::After);
        Ok(())
    }
}

fn sync_dir(dir: &Path) -> Result<(), AgentError> {
    File::open(dir)
        .and_then(|d| d.sync_all())
        .map_err(|e| AgentError::io("syncing", dir, e))
}

/// A job's journal as read back.
#[derive(Clone, Debug)]
pub struct Replay {
    /// The job's directory.
    pub dir: PathBuf,
    /// The job.
    pub job: Job,
    /// When it started.
    pub started_at: Timestamp,
    /// Every record after the first, in order.
    pub records: Vec<Record>,
}

impl Replay {
    /// The final report, when the job finished.
    pub fn finished(&self) -> Option<&JobReport> {
        self.records.iter().rev().find_map(|r| match r {
            Record::JobFinished { report } => Some(report),
            _ => None,
        })
    }

    /// Steps that completed, in order.
    pub fn completed_steps(&self) -> Vec<StepResult> {
        self.records
            .iter()
            .filter_map(|r| match r {
                Record::StepAfter { result } => Some(result.clone()),
                _ => None,
            })
            .collect()
    }

    /// The last step that started and did not finish, with its start time.
    pub fn open_step(&self) -> Option<(StepName, Timestamp)> {
        let mut open = None;
        for record in &self.records {
            match record {
                Record::StepBefore { step, at } => open = Some((*step, *at)),
                Record::StepAfter { result } if open.map(|(s, _)| s) == Some(result.step) => {
                    open = None;
                }
                _ => {}
            }
        }
        open
    }

    /// True when a step started (its `before` record exists).
    pub fn started(&self, step: StepName) -> bool {
        self.records
            .iter()
            .any(|r| matches!(r, Record::StepBefore { step: s, .. } if *s == step))
    }

    /// True when a step completed (its `after` record exists).
    pub fn completed(&self, step: StepName) -> bool {
        self.records
            .iter()
            .any(|r| matches!(r, Record::StepAfter { result } if result.step == step))
    }

    /// The quiesce hooks that were (or were being) stopped.
    pub fn stopping(&self) -> Vec<usize> {
        self.records
            .iter()
            .filter_map(|r| match r {
                Record::Stopping { hook } => Some(*hook),
                _ => None,
            })
            .collect()
    }

    /// The versions recorded before the change, if it got that far.
    pub fn versions_before(&self) -> Option<&Versions> {
        self.records.iter().rev().find_map(|r| match r {
            Record::Recorded { versions_before } => Some(versions_before),
            _ => None,
        })
    }
}

/// Reads one job's journal.
pub fn read(dir: &Path) -> Result<Replay, AgentError> {
    let path = dir.join("journal.jsonl");
    let text = fs::read_to_string(&path).map_err(|e| AgentError::io("reading", &path, e))?;
    let bad = |line: usize, reason: String| AgentError::Journal {
        path: path.clone(),
        reason: format!("line {line}: {reason}"),
    };
    let complete = text.ends_with('\n');
    let lines: Vec<&str> = text.lines().collect();
    let mut records = Vec::new();
    for (index, line) in lines.iter().enumerate() {
        let last = index + 1 == lines.len();
        match serde_json::from_str::<Record>(line) {
            Ok(record) => records.push(record),
            // Torn by a crash mid-write: that record never happened.
            Err(_) if last && !complete => break,
            Err(e) => return Err(bad(index + 1, e.to_string())),
        }
    }
    let mut records = records.into_iter();
    let Some(Record::JobStarted { job, at }) = records.next() else {
        return Err(bad(1, "the first record is not job-started".to_owned()));
    };
    Ok(Replay {
        dir: dir.to_path_buf(),
        job,
        started_at: at,
        records: records.collect(),
    })
}

/// Every job journal in the state directory, oldest first.
pub fn all(state_dir: &Path) -> Result<Vec<Replay>, AgentError> {
    let jobs = jobs_dir(state_dir);
    let entries = match fs::read_dir(&jobs) {
        Ok(entries) => entries,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(e) => return Err(AgentError::io("reading", &jobs, e)),
    };
    let mut replays = Vec::new();
    for entry in entries {
        let entry = entry.map_err(|e| AgentError::io("reading", &jobs, e))?;
        let dir = entry.path();
        if !dir.join("journal.jsonl").exists() {
            // Created, then the agent died before the first record: nothing ran.
            continue;
        }
        replays.push(read(&dir)?);
    }
    replays.sort_by_key(|r| r.started_at);
    Ok(replays)
}

/// The journal of the job with this idempotency key, if there is one.
pub fn find_by_key(state_dir: &Path, idempotency_key: &str) -> Result<Option<Replay>, AgentError> {
    let dir = jobs_dir(state_dir).join(job_dir_name(idempotency_key));
    if !dir.join("journal.jsonl").exists() {
        return Ok(None);
    }
    read(&dir).map(Some)
}

#[cfg(test)]
mod tests {
    use super::*;
    use sluice_core::job::{Preflight, RollbackPolicy, StepStatus, Target};

    fn job() -> Job {
        Job {
            id: "j1".into(),
            idempotency_key: "key-1".into(),
            kind: Default::default(),
            targets: vec![Target {
                package: "demo".into(),
                version: "1.1".into(),
            }],
            preflight: Preflight::default(),
            checks: Vec::new(),
            rollback: RollbackPolicy::default(),
            package_manager: None,
        }
    }

    #[test]
    fn records_round_trip_and_a_torn_line_is_dropped() {
        let state = tempfile::tempdir().unwrap();
        let at = Timestamp::from_second(1_800_000_000).unwrap();
        let mut journal = Journal::create(state.path(), &job(), at).unwrap();
        journal.before(StepName::Inspect, at).unwrap();
        journal
            .after(&StepResult {
                step: StepName::Inspect,
                status: StepStatus::Ok,
                started_at: at,
                finished_at: Some(at),
                message: "1 change".into(),
                detail: serde_json::Value::Null,
            })
            .unwrap();
        journal.before(StepName::Apply, at).unwrap();
        let dir = journal.dir().to_path_buf();
        drop(journal);
        // A crash in the middle of writing the next record.
        let mut file = OpenOptions::new()
            .append(true)
            .open(dir.join("journal.jsonl"))
            .unwrap();
        file.write_all(b"{\"record\":\"step-af").unwrap();

        let replay = read(&dir).unwrap();
        assert_eq!(replay.job, job());
        assert!(replay.finished().is_none());
        assert_eq!(replay.open_step(), Some((StepName::Apply, at)));
        assert!(replay.completed(StepName::Inspect));
        assert!(!replay.completed(StepName::Apply));
        assert_eq!(all(state.path()).unwrap().len(), 1);
        assert!(find_by_key(state.path(), "key-1").unwrap().is_some());
        assert!(find_by_key(state.path(), "key-2").unwrap().is_none());
        // The same key cannot start twice.
        assert!(Journal::create(state.path(), &job(), at).is_err());
    }

    #[test]
    fn a_corrupt_middle_line_is_an_error() {
        let state = tempfile::tempdir().unwrap();
        let at = Timestamp::from_second(1_800_000_000).unwrap();
        let journal = Journal::create(state.path(), &job(), at).unwrap();
        let path = journal.dir().join("journal.jsonl");
        let mut text = fs::read_to_string(&path).unwrap();
        text.push_str("garbage\n");
        fs::write(&path, text).unwrap();
        let err = read(journal.dir()).unwrap_err();
        assert!(err.to_string().contains("line 2"), "{err}");
    }
}
