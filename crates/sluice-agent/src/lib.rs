//! Sluice's host side: it carries out jobs on the machine it runs on and reports what it saw.
//!
//! Decisions (what a job changes, whether a host is compliant) are `sluice-core`'s; this crate
//! does the I/O around them: the package root and its commands ([`root`]), apt with dpkg or dnf
//! with rpm ([`apt`], [`dpkg`], [`dnf`], [`rpmdb`]; which one by the root's os-release, and the
//! steps' common interface, in [`backend`]), pre-flight ([`preflight`]), post-update checks ([`checks`]), measurements
//! ([`measure`]), the on-disk journal ([`journal`]), the job runner ([`executor`]) and the
//! inventory ([`inventory`]).
//!
//! Architecture invariants:
//! - Every package command goes through [`root::PackageRoot::run`], which refuses a command for
//!   a private root that lacks the options confining it to that root.
//! - Every step is journaled (fsync) before and after it runs; a report never claims a success
//!   the agent did not verify by reading the package manager's state again.

pub mod apt;
pub mod backend;
pub mod checks;
pub mod dnf;
pub mod dpkg;
mod error;
pub mod executor;
pub mod failpoint;
pub mod inventory;
pub mod journal;
pub mod measure;
pub mod preflight;
pub mod process;
pub mod root;
pub mod rpmdb;

pub use error::AgentError;
pub use executor::{Executor, ExecutorConfig};
pub use root::PackageRoot;
