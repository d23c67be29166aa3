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

use crate::version::{Scheme, Version};

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

/// A package record, received as data (an agent's JSON report) rather than parsed from a package
/// manager's file, that is not one a package manager could have written.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("packages[{index}]: {reason}")]
pub struct PackageRecordError {
    /// Position in the list, from 0.
    pub index: usize,
    /// What is wrong, naming the field; the bad value is not repeated whole.
    pub reason: String,
}

/// Checks packages received as data: names and architectures are package-manager names, and
/// versions parse in the host's version scheme. The file parsers above check the same as they
/// read; a JSON report skips them, so without this a report could store `::::` as a version or
/// a NUL in a name.
pub fn check_packages(
    scheme: Scheme,
    packages: &[InstalledPackage],
) -> Result<(), PackageRecordError> {
    for (index, package) in packages.iter().enumerate() {
        let fail = |reason: String| PackageRecordError { index, reason };
        for (field, value) in [
            ("name", Some(package.name.as_str())),
            ("source_name", Some(package.source_name.as_str())),
            ("arch", package.arch.as_deref()),
        ] {
            if let Some(value) = value
                && !is_package_name(value)
            {
                return Err(fail(format!(
                    "{field} is not a package name (letters, digits and + . _ - ~, at most 256)"
                )));
            }
        }
        for (field, value) in [
            ("version", &package.version),
            ("source_version", &package.source_version),
        ] {
            Version::parse(scheme, value)
                .map_err(|e| fail(format!("{field} of {}: {e}", package.name)))?;
        }
    }
    Ok(())
}

/// Debian's package-name rule, widened to what RPM names use (capitals, `_`, `~`).
fn is_package_name(name: &str) -> bool {
    let mut bytes = name.bytes();
    name.len() <= 256
        && bytes
            .next()
            .is_some_and(|b| b.is_ascii_alphanumeric() || b == b'_')
        && bytes.all(|b| b.is_ascii_alphanumeric() || matches!(b, b'+' | b'.' | b'_' | b'-' | b'~'))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn package(name: &str, version: &str) -> InstalledPackage {
        InstalledPackage {
            name: name.to_owned(),
            version: version.to_owned(),
            arch: Some("amd64".to_owned()),
            source_name: name.to_owned(),
            source_version: version.to_owned(),
        }
    }

    #[test]
    fn reported_packages_must_be_ones_a_package_manager_writes() {
        let good = [
            package("libssl3", "3.0.11-1~deb12u2"),
            package("g++-12", "1:12.2.0-14"),
        ];
        assert_eq!(check_packages(Scheme::Deb, &good), Ok(()));
        let rpm = [
            package("NetworkManager", "1:1.42.2-1.el9"),
            package("python3_x", "3.9.18-1.el9"),
        ];
        assert_eq!(check_packages(Scheme::Rpm, &rpm), Ok(()));
        let err =
            check_packages(Scheme::Deb, &[good[0].clone(), package("x", "::::")]).unwrap_err();
        assert_eq!(err.index, 1);
        assert!(
            err.to_string().starts_with("packages[1]: version of x"),
            "{err}"
        );
        let err = check_packages(Scheme::Deb, &[package("lib\0ssl", "1.0")]).unwrap_err();
        assert!(
            err.reason.starts_with("name is not a package name"),
            "{err}"
        );
        for bad in ["", "-x", "a b", "a/b", &"a".repeat(257)] {
            assert!(
                check_packages(Scheme::Deb, &[package(bad, "1.0")]).is_err(),
                "{bad:?}"
            );
        }
        let mut odd_arch = package("x", "1.0");
        odd_arch.arch = Some("amd64\n".to_owned());
        assert!(check_packages(Scheme::Deb, &[odd_arch]).is_err());
    }
}
