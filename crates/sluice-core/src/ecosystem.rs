//! Ecosystems: which distribution release a host runs and which advisories apply to it.
//!
//! OSV names ecosystems as strings (`Debian:12`, `Ubuntu:22.04:LTS`, `AlmaLinux:8`,
//! `Rocky Linux:9`, `Red Hat:enterprise_linux:8::appstream`). Hosts and advisories rarely spell
//! them the same way (an AlmaLinux 8.9 host, an advisory for `AlmaLinux:8`; an Ubuntu host and a
//! `:LTS` suffix), so both sides are reduced to an [`EcosystemKey`]: distribution + release line.
//! This module owns that reduction and which version order each distribution uses.

use std::fmt;

use serde::{Deserialize, Serialize};

use crate::version::Scheme;

/// A Linux distribution family Sluice knows how to match.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub enum Distro {
    /// Debian GNU/Linux; advisories name source packages.
    Debian,
    /// Ubuntu; advisories name source packages.
    Ubuntu,
    /// AlmaLinux; advisories name binary RPM packages.
    AlmaLinux,
    /// Rocky Linux; advisories name binary RPM packages.
    RockyLinux,
    /// Red Hat Enterprise Linux; advisories name binary RPM packages.
    RedHat,
}

impl Distro {
    /// The version order of the distribution's package manager.
    pub fn scheme(self) -> Scheme {
        match self {
            Self::Debian | Self::Ubuntu => Scheme::Deb,
            Self::AlmaLinux | Self::RockyLinux | Self::RedHat => Scheme::Rpm,
        }
    }

    /// Whether advisories for this distribution name source packages (Debian's way) rather than
    /// binary packages (the RPM distributions' way).
    pub fn advisories_name_source_packages(self) -> bool {
        matches!(self, Self::Debian | Self::Ubuntu)
    }

    /// OSV's spelling of the distribution.
    pub fn osv_name(self) -> &'static str {
        match self {
            Self::Debian => "Debian",
            Self::Ubuntu => "Ubuntu",
            Self::AlmaLinux => "AlmaLinux",
            Self::RockyLinux => "Rocky Linux",
            Self::RedHat => "Red Hat",
        }
    }
}

/// A distribution release line: what a host runs and what an advisory is for.
///
/// The release is normalised: the major version for RPM distributions (`8`, not `8.9`), the
/// release number for Debian (`12`, or `3.1` for sarge) and `YY.MM` for Ubuntu.
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub struct EcosystemKey {
    /// The distribution family.
    pub distro: Distro,
    /// The normalised release.
    pub release: String,
}

impl EcosystemKey {
    /// Builds a key, normalising the release for the distribution.
    pub fn new(distro: Distro, release: &str) -> Result<Self, EcosystemError> {
        let release = release.trim();
        let bad = || EcosystemError::BadRelease {
            distro: distro.osv_name(),
            release: release.to_owned(),
        };
        let normalised = match distro {
            Distro::AlmaLinux | Distro::RockyLinux | Distro::RedHat => {
                let major = release.split('.').next().unwrap_or_default();
                if major.is_empty() || !major.bytes().all(|b| b.is_ascii_digit()) {
                    return Err(bad());
                }
                major.to_owned()
            }
            Distro::Debian => {
                if release.is_empty() || !release.bytes().all(|b| b.is_ascii_digit() || b == b'.') {
                    return Err(bad());
                }
                // Debian 7 and later are named by their major number alone ("12.5" is 12); the
                // releases before 4 are named with the point ("3.1" is sarge, not "3").
                match release.split_once('.') {
                    Some((major, _)) if major.parse::<u32>().is_ok_and(|m| m >= 4) => {
                        major.to_owned()
                    }
                    _ => release.to_owned(),
                }
            }
            Distro::Ubuntu => {
                let mut parts = release.split('.');
                let ok = matches!(
                    (parts.next(), parts.next()),
                    (Some(y), Some(m)) if y.len() == 2 && m.len() == 2
                        && y.bytes().chain(m.bytes()).all(|b| b.is_ascii_digit())
                );
                if !ok {
                    return Err(bad());
                }
                release.split('.').take(2).collect::<Vec<_>>().join(".")
            }
        };
        Ok(Self {
            distro,
            release: normalised,
        })
    }

    /// The version order of this ecosystem.
    pub fn scheme(&self) -> Scheme {
        self.distro.scheme()
    }

    /// Parses an OSV ecosystem name.
    ///
    /// Returns `Ok(None)` for ecosystems that are well-formed but not an operating system
    /// Sluice matches (`PyPI`, `npm`, …): such records load, but no host matches them.
    pub fn from_osv(name: &str) -> Result<Option<Self>, EcosystemError> {
        let (family, rest) = name.split_once(':').unwrap_or((name, ""));
        let distro = match family {
            "Debian" => Distro::Debian,
            "Ubuntu" => Distro::Ubuntu,
            "AlmaLinux" => Distro::AlmaLinux,
            "Rocky Linux" => Distro::RockyLinux,
            "Red Hat" => Distro::RedHat,
            _ => return Ok(None),
        };
        if rest.is_empty() {
            return Err(EcosystemError::MissingRelease {
                name: name.to_owned(),
            });
        }
        let release = match distro {
            // "Ubuntu:22.04:LTS", "Ubuntu:Pro:18.04:LTS", "Ubuntu:Pro:FIPS:20.04:LTS".
            Distro::Ubuntu => rest
                .split(':')
                .find(|part| part.contains('.'))
                .ok_or_else(|| EcosystemError::MissingRelease {
                    name: name.to_owned(),
                })?,
            // "Red Hat:enterprise_linux:8::appstream", "Red Hat:rhel_eus:8.6::baseos".
            Distro::RedHat => rest
                .split(':')
                .find(|part| part.starts_with(|c: char| c.is_ascii_digit()))
                .ok_or_else(|| EcosystemError::MissingRelease {
                    name: name.to_owned(),
                })?,
            _ => rest,
        };
        Self::new(distro, release).map(Some)
    }

    /// Chooses the ecosystem from an os-release file's `ID`, `ID_LIKE`, `VERSION_ID` and
    /// `VERSION_CODENAME`.
    pub fn from_os_release(
        id: &str,
        id_like: Option<&str>,
        version_id: Option<&str>,
        codename: Option<&str>,
    ) -> Result<Self, EcosystemError> {
        let candidates = std::iter::once(id).chain(id_like.unwrap_or_default().split_whitespace());
        for candidate in candidates {
            let distro = match candidate {
                "debian" => Distro::Debian,
                "ubuntu" => Distro::Ubuntu,
                "almalinux" => Distro::AlmaLinux,
                "rocky" => Distro::RockyLinux,
                "rhel" => Distro::RedHat,
                _ => continue,
            };
            // A derivative (ID_LIKE) shares packages but not release numbers: only trust the
            // release when the distribution is the host's own ID.
            if candidate != id {
                return Err(EcosystemError::Derivative {
                    id: id.to_owned(),
                    like: candidate.to_owned(),
                });
            }
            if let Some(version) = version_id.filter(|v| !v.trim().is_empty()) {
                return Self::new(distro, version);
            }
            if distro == Distro::Debian {
                // Debian testing and unstable have no VERSION_ID; the codename still names a
                // release the tracker knows.
                if let Some(release) = codename.and_then(debian_release_of_codename) {
                    return Self::new(distro, release);
                }
            }
            return Err(EcosystemError::MissingRelease {
                name: format!("os-release ID={id}"),
            });
        }
        Err(EcosystemError::Unsupported {
            name: format!("os-release ID={id}"),
        })
    }

    /// OSV's name for this ecosystem.
    pub fn osv_name(&self) -> String {
        format!("{}:{}", self.distro.osv_name(), self.release)
    }
}

impl fmt::Display for EcosystemKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}:{}", self.distro.osv_name(), self.release)
    }
}

impl std::str::FromStr for EcosystemKey {
    type Err = EcosystemError;

    /// Parses a name given by a person (`Debian:12`, `AlmaLinux:8`, `Ubuntu:22.04`); unlike
    /// [`EcosystemKey::from_osv`] an unknown family is an error.
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Self::from_osv(s)?.ok_or_else(|| EcosystemError::Unsupported { name: s.to_owned() })
    }
}

/// Debian release number for a codename, as the security tracker names releases.
pub fn debian_release_of_codename(codename: &str) -> Option<&'static str> {
    Some(match codename {
        "woody" => "3.0",
        "sarge" => "3.1",
        "etch" => "4",
        "lenny" => "5",
        "squeeze" => "6",
        "wheezy" => "7",
        "jessie" => "8",
        "stretch" => "9",
        "buster" => "10",
        "bullseye" => "11",
        "bookworm" => "12",
        "trixie" => "13",
        "forky" => "14",
        _ => return None,
    })
}

/// Why an ecosystem name could not be understood.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum EcosystemError {
    /// A release that does not fit the distribution's numbering.
    #[error("invalid {distro} release {release:?}")]
    BadRelease {
        /// The distribution.
        distro: &'static str,
        /// The release as given.
        release: String,
    },
    /// A known distribution without a release.
    #[error("ecosystem {name:?} names no release (expected e.g. Debian:12, AlmaLinux:8)")]
    MissingRelease {
        /// The name as given.
        name: String,
    },
    /// A distribution Sluice cannot match.
    #[error(
        "unsupported ecosystem {name:?}: supported are Debian, Ubuntu, AlmaLinux, Rocky Linux and Red Hat"
    )]
    Unsupported {
        /// The name as given.
        name: String,
    },
    /// A derivative distribution whose release numbers are its own.
    #[error(
        "os-release ID={id} is a derivative of {like}; its releases do not map to {like}'s, name the ecosystem with --ecosystem"
    )]
    Derivative {
        /// The host's own ID.
        id: String,
        /// The distribution it is like.
        like: String,
    },
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key(name: &str) -> EcosystemKey {
        EcosystemKey::from_osv(name).unwrap().unwrap()
    }

    #[test]
    fn osv_names_reduce_to_release_lines() {
        assert_eq!(key("Debian:12").osv_name(), "Debian:12");
        assert_eq!(key("Debian:3.1").osv_name(), "Debian:3.1");
        assert_eq!(key("Ubuntu:22.04:LTS").osv_name(), "Ubuntu:22.04");
        assert_eq!(key("Ubuntu:Pro:18.04:LTS").osv_name(), "Ubuntu:18.04");
        assert_eq!(key("AlmaLinux:8").osv_name(), "AlmaLinux:8");
        assert_eq!(key("Rocky Linux:9").osv_name(), "Rocky Linux:9");
        assert_eq!(
            key("Red Hat:enterprise_linux:8::appstream").osv_name(),
            "Red Hat:8"
        );
        assert_eq!(key("Red Hat:rhel_eus:8.6::baseos").osv_name(), "Red Hat:8");
    }

    #[test]
    fn non_os_ecosystems_are_not_errors() {
        assert_eq!(EcosystemKey::from_osv("PyPI").unwrap(), None);
        assert_eq!(EcosystemKey::from_osv("npm").unwrap(), None);
    }

    #[test]
    fn malformed_names_are_errors() {
        assert!(EcosystemKey::from_osv("Debian").is_err());
        assert!(EcosystemKey::from_osv("Debian:bookworm").is_err());
        assert!(EcosystemKey::from_osv("AlmaLinux:eight").is_err());
        assert!(EcosystemKey::from_osv("Ubuntu:22").is_err());
        assert!("PyPI".parse::<EcosystemKey>().is_err());
    }

    #[test]
    fn os_release_chooses_the_release_line() {
        let alma = EcosystemKey::from_os_release(
            "almalinux",
            Some("rhel centos fedora"),
            Some("8.9"),
            None,
        );
        assert_eq!(alma.unwrap().osv_name(), "AlmaLinux:8");
        let deb = EcosystemKey::from_os_release("debian", None, Some("12"), Some("bookworm"));
        assert_eq!(deb.unwrap().osv_name(), "Debian:12");
        let testing = EcosystemKey::from_os_release("debian", None, None, Some("trixie"));
        assert_eq!(testing.unwrap().osv_name(), "Debian:13");
        let mint =
            EcosystemKey::from_os_release("linuxmint", Some("ubuntu debian"), Some("21.3"), None);
        assert!(matches!(mint, Err(EcosystemError::Derivative { .. })));
        let arch = EcosystemKey::from_os_release("arch", None, None, None);
        assert!(matches!(arch, Err(EcosystemError::Unsupported { .. })));
    }
}
