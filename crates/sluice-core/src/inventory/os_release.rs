//! os-release files (`/etc/os-release`): which distribution and release a host runs.

use std::collections::BTreeMap;

use super::InventoryError;
use super::host::PackageManager;
use crate::ecosystem::{EcosystemError, EcosystemKey};

/// The fields of an os-release file that choose the ecosystem.
#[derive(Clone, Debug, PartialEq, Eq, Default, serde::Serialize, serde::Deserialize)]
pub struct OsRelease {
    /// `ID`, e.g. `debian`, `almalinux`.
    pub id: String,
    /// `ID_LIKE`.
    pub id_like: Option<String>,
    /// `VERSION_ID`, e.g. `12`, `8.9`.
    pub version_id: Option<String>,
    /// `VERSION_CODENAME`, e.g. `bookworm`.
    pub version_codename: Option<String>,
    /// `PRETTY_NAME`, for people.
    pub pretty_name: Option<String>,
}

impl OsRelease {
    /// Parses the shell-like `KEY=value` lines; values may be quoted.
    pub fn parse(source_name: &str, text: &str) -> Result<Self, InventoryError> {
        let mut fields = BTreeMap::new();
        for (index, line) in text.lines().enumerate() {
            let line = line.trim();
            if line.is_empty() || line.starts_with('#') {
                continue;
            }
            let Some((key, value)) = line.split_once('=') else {
                return Err(InventoryError::new(
                    source_name,
                    index + 1,
                    format!("expected KEY=value, got {line:?}"),
                ));
            };
            if key.is_empty()
                || !key
                    .bytes()
                    .all(|b| b.is_ascii_uppercase() || b.is_ascii_digit() || b == b'_')
            {
                return Err(InventoryError::new(
                    source_name,
                    index + 1,
                    format!("invalid key {key:?}"),
                ));
            }
            let value = unquote(value).ok_or_else(|| {
                InventoryError::new(source_name, index + 1, format!("{key}: unbalanced quotes"))
            })?;
            fields.insert(key.to_owned(), value);
        }
        let Some(id) = fields.remove("ID") else {
            return Err(InventoryError::new(
                source_name,
                1,
                "no ID field: not an os-release file",
            ));
        };
        Ok(Self {
            id,
            id_like: fields.remove("ID_LIKE"),
            version_id: fields.remove("VERSION_ID"),
            version_codename: fields.remove("VERSION_CODENAME"),
            pretty_name: fields.remove("PRETTY_NAME"),
        })
    }

    /// The package family of this release, from `ID` then each `ID_LIKE` word: Debian and
    /// Ubuntu use dpkg; RHEL, Fedora, CentOS, AlmaLinux and Rocky use rpm. `None` for a
    /// distribution of neither family (the agent then refuses to change packages).
    pub fn package_manager(&self) -> Option<PackageManager> {
        let like = self.id_like.as_deref().unwrap_or_default();
        std::iter::once(self.id.as_str())
            .chain(like.split_whitespace())
            .find_map(|id| match id {
                "debian" | "ubuntu" => Some(PackageManager::Dpkg),
                "rhel" | "fedora" | "centos" | "almalinux" | "rocky" => Some(PackageManager::Rpm),
                _ => None,
            })
    }

    /// The ecosystem this release belongs to.
    pub fn ecosystem(&self) -> Result<EcosystemKey, EcosystemError> {
        EcosystemKey::from_os_release(
            &self.id,
            self.id_like.as_deref(),
            self.version_id.as_deref(),
            self.version_codename.as_deref(),
        )
    }
}

fn unquote(value: &str) -> Option<String> {
    let value = value.trim();
    for quote in ['"', '\''] {
        if let Some(rest) = value.strip_prefix(quote) {
            let inner = rest.strip_suffix(quote)?;
            return Some(inner.replace("\\\"", "\"").replace("\\\\", "\\"));
        }
    }
    Some(value.to_owned())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn package_family_from_id_and_id_like() {
        let family = |text: &str| {
            OsRelease::parse("os-release", text)
                .unwrap()
                .package_manager()
        };
        assert_eq!(family("ID=debian\n"), Some(PackageManager::Dpkg));
        assert_eq!(
            family("ID=linuxmint\nID_LIKE=\"ubuntu debian\"\n"),
            Some(PackageManager::Dpkg)
        );
        assert_eq!(
            family("ID=\"almalinux\"\nID_LIKE=\"rhel centos fedora\"\n"),
            Some(PackageManager::Rpm)
        );
        assert_eq!(
            family("ID=ol\nID_LIKE=\"fedora\"\n"),
            Some(PackageManager::Rpm)
        );
        assert_eq!(family("ID=rocky\n"), Some(PackageManager::Rpm));
        assert_eq!(family("ID=arch\n"), None);
        assert_eq!(
            family("ID=opensuse-leap\nID_LIKE=\"suse opensuse\"\n"),
            None
        );
    }

    #[test]
    fn debian_and_alma() {
        let debian = "PRETTY_NAME=\"Debian GNU/Linux 12 (bookworm)\"\nNAME=\"Debian GNU/Linux\"\nVERSION_ID=\"12\"\nVERSION_CODENAME=bookworm\nID=debian\n";
        let parsed = OsRelease::parse("os-release", debian).unwrap();
        assert_eq!(parsed.ecosystem().unwrap().osv_name(), "Debian:12");
        let alma = "NAME=\"AlmaLinux\"\nVERSION=\"8.9 (Midnight Oncilla)\"\nID=\"almalinux\"\nID_LIKE=\"rhel centos fedora\"\nVERSION_ID=\"8.9\"\n";
        let parsed = OsRelease::parse("os-release", alma).unwrap();
        assert_eq!(parsed.ecosystem().unwrap().osv_name(), "AlmaLinux:8");
    }

    #[test]
    fn malformed_lines_are_named() {
        let err = OsRelease::parse("os-release", "ID=debian\nVERSION_ID=\"12\nwhat\n").unwrap_err();
        assert_eq!(err.line, 2);
        let err = OsRelease::parse("os-release", "NAME=x\n").unwrap_err();
        assert!(err.reason.contains("no ID"));
    }
}
