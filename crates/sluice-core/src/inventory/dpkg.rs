//! dpkg's status database (`/var/lib/dpkg/status`): deb822 paragraphs, one per package.
//!
//! Only installed packages count: the third word of `Status` is `installed` (`install ok
//! installed`, and `hold ok installed` for held packages, which are installed too). Packages
//! left as `config-files`, `half-installed` and the like are not. Each binary package is mapped to
//! its source through `Source:` (`Source: openssl` or `Source: openssl (3.0.11-1~deb12u2)` when
//! the versions differ), because Debian advisories name source packages.

use super::{InstalledPackage, InventoryError};
use crate::version::{Scheme, Version};

struct Paragraph<'a> {
    line: usize,
    fields: Vec<(&'a str, &'a str, usize)>,
}

impl<'a> Paragraph<'a> {
    fn get(&self, name: &str) -> Option<(&'a str, usize)> {
        self.fields
            .iter()
            .find(|(field, _, _)| field.eq_ignore_ascii_case(name))
            .map(|&(_, value, line)| (value, line))
    }
}

/// Parses a dpkg status file into its installed packages.
pub fn parse_status(
    source_name: &str,
    text: &str,
) -> Result<Vec<InstalledPackage>, InventoryError> {
    let mut packages = Vec::new();
    let mut lines = std::collections::HashMap::new();
    for paragraph in paragraphs(source_name, text)? {
        if let Some(package) = installed_package(source_name, &paragraph)? {
            let key = (package.name.clone(), package.arch.clone());
            if let Some(first) = lines.insert(key, paragraph.line) {
                return Err(InventoryError::new(
                    source_name,
                    paragraph.line,
                    format!(
                        "package {} ({}) is listed twice (first at line {first})",
                        package.name,
                        package.arch.as_deref().unwrap_or("no architecture")
                    ),
                ));
            }
            packages.push(package);
        }
    }
    Ok(packages)
}

fn paragraphs<'a>(source_name: &str, text: &'a str) -> Result<Vec<Paragraph<'a>>, InventoryError> {
    let mut result = Vec::new();
    let mut current: Option<Paragraph<'a>> = None;
    for (index, line) in text.lines().enumerate() {
        let number = index + 1;
        if line.trim().is_empty() {
            if let Some(done) = current.take() {
                result.push(done);
            }
            continue;
        }
        if line.starts_with([' ', '\t']) {
            // A continuation line of a multi-line field (Description, Conffiles): not needed.
            if current.is_none() {
                return Err(InventoryError::new(
                    source_name,
                    number,
                    "continuation line outside a paragraph",
                ));
            }
            continue;
        }
        let Some((name, value)) = line.split_once(':') else {
            return Err(InventoryError::new(
                source_name,
                number,
                format!("expected \"Field: value\", got {:?}", truncate(line)),
            ));
        };
        if name.is_empty() || name.contains(char::is_whitespace) {
            return Err(InventoryError::new(
                source_name,
                number,
                format!("invalid field name {name:?}"),
            ));
        }
        current
            .get_or_insert_with(|| Paragraph {
                line: number,
                fields: Vec::new(),
            })
            .fields
            .push((name, value.trim(), number));
    }
    if let Some(done) = current.take() {
        result.push(done);
    }
    Ok(result)
}

fn installed_package(
    source_name: &str,
    paragraph: &Paragraph<'_>,
) -> Result<Option<InstalledPackage>, InventoryError> {
    let Some((name, _)) = paragraph.get("Package") else {
        return Err(InventoryError::new(
            source_name,
            paragraph.line,
            "paragraph without a Package field",
        ));
    };
    let Some((status, status_line)) = paragraph.get("Status") else {
        return Err(InventoryError::new(
            source_name,
            paragraph.line,
            format!("package {name} has no Status field"),
        ));
    };
    let words: Vec<&str> = status.split_whitespace().collect();
    if words.len() != 3 {
        return Err(InventoryError::new(
            source_name,
            status_line,
            format!(
                "package {name}: Status must have three words (want flag status), got {status:?}"
            ),
        ));
    }
    if words[2] != "installed" {
        return Ok(None);
    }
    let Some((version, version_line)) = paragraph.get("Version") else {
        return Err(InventoryError::new(
            source_name,
            paragraph.line,
            format!("installed package {name} has no Version field"),
        ));
    };
    Version::parse(Scheme::Deb, version).map_err(|e| {
        InventoryError::new(source_name, version_line, format!("package {name}: {e}"))
    })?;
    let (source_name_field, source_version) = match paragraph.get("Source") {
        None => (name, version),
        Some((source, line)) => match source.split_once('(') {
            None => (source.trim(), version),
            Some((source, rest)) => {
                let source_version = rest.strip_suffix(')').map(str::trim).ok_or_else(|| {
                    InventoryError::new(
                        source_name,
                        line,
                        format!("package {name}: Source {source:?} has an unclosed version"),
                    )
                })?;
                Version::parse(Scheme::Deb, source_version).map_err(|e| {
                    InventoryError::new(source_name, line, format!("package {name} Source: {e}"))
                })?;
                (source.trim(), source_version)
            }
        },
    };
    Ok(Some(InstalledPackage {
        name: name.to_owned(),
        version: version.to_owned(),
        arch: paragraph.get("Architecture").map(|(a, _)| a.to_owned()),
        source_name: source_name_field.to_owned(),
        source_version: source_version.to_owned(),
    }))
}

fn truncate(line: &str) -> String {
    line.chars().take(60).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    const STATUS: &str = "\
Package: libssl3
Status: install ok installed
Priority: optional
Architecture: amd64
Source: openssl
Version: 3.0.11-1~deb12u2
Description: Secure Sockets Layer toolkit
 This package is part of the OpenSSL project.

Package: old-thing
Status: deinstall ok config-files
Version: 1.0-1

Package: libfoo1
Status: hold ok installed
Source: foo (1.2-3)
Version: 1.2-3+b1
Architecture: amd64
";

    #[test]
    fn installed_packages_with_their_sources() {
        let packages = parse_status("status", STATUS).unwrap();
        assert_eq!(packages.len(), 2);
        assert_eq!(packages[0].name, "libssl3");
        assert_eq!(packages[0].source_name, "openssl");
        assert_eq!(packages[0].source_version, "3.0.11-1~deb12u2");
        assert_eq!(packages[1].source_name, "foo");
        assert_eq!(packages[1].source_version, "1.2-3");
        assert_eq!(packages[1].version, "1.2-3+b1");
    }

    #[test]
    fn malformed_input_names_the_line() {
        let bad_version = STATUS.replace("1.2-3+b1", "one.two");
        let err = parse_status("status", &bad_version).unwrap_err();
        assert_eq!(err.line, 17);
        assert!(err.to_string().contains("libfoo1"), "{err}");
        let garbage = "Package: x\nthis is not a field\n";
        let err = parse_status("status", garbage).unwrap_err();
        assert_eq!(err.line, 2);
        let twice = "Package: x\nStatus: install ok installed\nVersion: 1.0\nArchitecture: amd64\n\nPackage: x\nStatus: install ok installed\nVersion: 1.1\nArchitecture: amd64\n";
        let err = parse_status("status", twice).unwrap_err();
        assert_eq!(err.line, 6);
        assert!(err.reason.contains("first at line 1"), "{err}");
        let multiarch = twice.replacen("Architecture: amd64\n\n", "Architecture: i386\n\n", 1);
        assert_eq!(
            parse_status("status", &multiarch).unwrap().len(),
            2,
            "multi-arch is fine"
        );
        let no_status = "Package: x\nVersion: 1.0\n";
        assert!(
            parse_status("status", no_status)
                .unwrap_err()
                .reason
                .contains("Status")
        );
    }
}
