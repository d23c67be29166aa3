//! The crate's one error type: each variant names what failed and where.

use std::path::PathBuf;

/// Why the agent could not do something.
#[derive(Debug, thiserror::Error)]
pub enum AgentError {
    /// A file or directory operation failed.
    #[error("{action} {path}: {source}")]
    Io {
        /// What was being done ("reading", "creating", …).
        action: &'static str,
        /// The file or directory.
        path: PathBuf,
        /// The OS error.
        source: std::io::Error,
    },
    /// A program could not be started.
    #[error("starting {program}: {source}")]
    Spawn {
        /// The program.
        program: String,
        /// The OS error.
        source: std::io::Error,
    },
    /// A package command for a private root lacks what confines it to that root.
    #[error("refusing to run {program} for private root {root}: {missing}")]
    Refused {
        /// The program (`apt-get`, `dpkg`, `dpkg-query`).
        program: String,
        /// The private root.
        root: PathBuf,
        /// What is missing or not allowed.
        missing: String,
    },
    /// A package-manager command ran and failed.
    #[error("{command}: {message}")]
    Command {
        /// The command, for people.
        command: String,
        /// Its exit status and the package manager's own words.
        message: String,
    },
    /// Output or a file that could not be understood.
    #[error("{what}: {reason}")]
    Parse {
        /// What was parsed (a file, a command's output).
        what: String,
        /// What is wrong.
        reason: String,
    },
    /// The package root is unusable.
    #[error("package root {root}: {reason}")]
    Root {
        /// The root directory.
        root: PathBuf,
        /// What is wrong.
        reason: String,
    },
    /// The journal could not be written or read.
    #[error("journal {path}: {reason}")]
    Journal {
        /// The journal file.
        path: PathBuf,
        /// What is wrong.
        reason: String,
    },
    /// The job itself is invalid.
    #[error(transparent)]
    Job(#[from] sluice_core::job::JobError),
}

impl AgentError {
    pub(crate) fn io(
        action: &'static str,
        path: impl Into<PathBuf>,
        source: std::io::Error,
    ) -> Self {
        AgentError::Io {
            action,
            path: path.into(),
            source,
        }
    }
}
