//! os-release files (`/etc/os-release`): which distribution and release a host runs.

use std::collections::BTreeMap;

use super::InventoryError;
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
