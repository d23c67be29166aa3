//! Host inventories: what is installed, parsed from the package managers' own records.
//!
//! Parsers take file contents and reject malformed input whole, naming the line: an inventory
//! that is half-read would make a host look cleaner than it is.

pub mod dpkg;
pub mod host;
pub mod os_release;
pub mod rpm;

use serde::{Deserialize, Serialize};

pub use os_release::OsRelease;

/// One installed binary package.
#[derive(Clone, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct InstalledPackage {
    /// Binary package name.
    pub name: String,
    /// Installed version (for RPM: `EPOCH:VERSION-RELEASE`).
    pub version: String,
    /// Architecture, when known.
    pub arch: Option<String>,
    /// Source package it was built from (the package's own name when the record names none).
    pub source_name: String,
    /// Source package version (the binary version when the record names none).
    pub source_version: String,
}

/// Why an inventory could not be read.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{source_name}: line {line}: {reason}")]
pub struct InventoryError {
    /// The input's name.
    pub source_name: String,
    /// 1-based line number.
    pub line: usize,
    /// What is wrong.
    pub reason: String,
}

impl InventoryError {
    pub(crate) fn new(source_name: &str, line: usize, reason: impl Into<String>) -> Self {
        Self {
            source_name: source_name.to_owned(),
            line,
            reason: reason.into(),
        }
    }
}
