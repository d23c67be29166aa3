//! `rpm -qa --queryformat '%{NAME} %{EPOCHNUM}:%{VERSION}-%{RELEASE} %{ARCH}\n'` output.
//!
//! RPM advisories name binary packages, so each package is its own source here.

use super::{InstalledPackage, InventoryError};
use crate::version::{Scheme, Version};

/// Parses the query output, one package per line.
pub fn parse_qa(source_name: &str, text: &str) -> Result<Vec<InstalledPackage>, InventoryError> {
    let mut packages = Vec::new();
    for (index, line) in text.lines().enumerate() {
        let number = index + 1;
        if line.trim().is_empty() {
            continue;
        }
        let mut words = line.split_whitespace();
        let (Some(name), Some(evr), Some(arch), None) =
            (words.next(), words.next(), words.next(), words.next())
        else {
            return Err(InventoryError::new(
                source_name,
                number,
                format!(
                    "expected \"NAME EPOCH:VERSION-RELEASE ARCH\" (rpm -qa --queryformat '%{{NAME}} %{{EPOCHNUM}}:%{{VERSION}}-%{{RELEASE}} %{{ARCH}}\\n'), got {:?}",
                    line.chars().take(80).collect::<String>()
                ),
            ));
        };
        if !evr.contains(':') || !evr.contains('-') {
            return Err(InventoryError::new(
                source_name,
                number,
                format!("package {name}: {evr:?} is not EPOCH:VERSION-RELEASE"),
            ));
        }
        Version::parse(Scheme::Rpm, evr).map_err(|e| {
            InventoryError::new(source_name, number, format!("package {name}: {e}"))
        })?;
        packages.push(InstalledPackage {
            name: name.to_owned(),
            version: evr.to_owned(),
            arch: (arch != "(none)").then(|| arch.to_owned()),
            source_name: name.to_owned(),
            source_version: evr.to_owned(),
        });
    }
    Ok(packages)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_query_output() {
        let text = "gupnp 0:1.0.3-2.el8 x86_64\nopenssl-libs 1:1.1.1k-9.el8_7 x86_64\ngpg-pubkey 0:6d745a60-60287f36 (none)\n";
        let packages = parse_qa("rpm-qa", text).unwrap();
        assert_eq!(packages.len(), 3);
        assert_eq!(packages[1].version, "1:1.1.1k-9.el8_7");
        assert_eq!(packages[2].arch, None);
    }

    #[test]
    fn rejects_other_formats_naming_the_line() {
        let err = parse_qa(
            "rpm-qa",
            "gupnp 0:1.0.3-2.el8 x86_64\ngupnp-1.0.3-2.el8.x86_64\n",
        )
        .unwrap_err();
        assert_eq!(err.line, 2);
        let err = parse_qa("rpm-qa", "gupnp 1.0.3 x86_64\n").unwrap_err();
        assert!(err.reason.contains("EPOCH:VERSION-RELEASE"), "{err}");
    }
}
