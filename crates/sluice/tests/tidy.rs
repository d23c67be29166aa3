//! The workspace's shape, checked like rust-analyzer's "tidy" tests: rules that a reviewer
//! would otherwise have to remember. Each failure names the file and line that broke the rule.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::path::{Path, PathBuf};

fn workspace() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../..")
}

/// Every `.rs` file under `dir`, sorted.
fn sources(dir: &Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(dir) = stack.pop() {
        for entry in std::fs::read_dir(&dir).expect("source directory") {
            let path = entry.expect("directory entry").path();
            if path.is_dir() {
                stack.push(path);
            } else if path.extension().is_some_and(|e| e == "rs") {
                out.push(path);
            }
        }
    }
    out.sort();
    assert!(!out.is_empty(), "no sources under {}", dir.display());
    out
}

/// The code lines of a file (line number, text), comments dropped.
fn code_lines(path: &Path) -> Vec<(usize, String)> {
    let text = std::fs::read_to_string(path).expect("readable source");
    text.lines()
        .enumerate()
        .filter_map(|(i, line)| {
            let code = match line.find("//") {
                Some(at) => &line[..at],
                None => line,
            };
            (!code.trim().is_empty()).then(|| (i + 1, code.to_owned()))
        })
        .collect()
}

fn relative(path: &Path) -> String {
    path.strip_prefix(workspace())
        .unwrap_or(path)
        .display()
        .to_string()
}

/// `sluice-core` decides; it does no I/O and reads no clock (ARCHITECTURE.md's first
/// invariant), so every decision can be tested with fixtures and a fake date.
#[test]
fn the_core_does_no_io_and_reads_no_clock() {
    const FORBIDDEN: &[(&str, &str)] = &[
        ("std::fs", "files"),
        ("std::net", "the network"),
        ("std::process", "processes"),
        ("std::env", "the environment"),
        ("std::time::SystemTime", "the system clock"),
        ("SystemTime::", "the system clock"),
        ("Instant::now", "the system clock"),
        ("Timestamp::now", "the system clock"),
        ("Zoned::now", "the system clock"),
        ("Date::today", "the system clock"),
        ("tokio", "an async runtime"),
        ("sqlx", "a database"),
        ("reqwest", "HTTP"),
    ];
    let root = workspace().join("crates/sluice-core");
    let mut found = Vec::new();
    for path in sources(&root.join("src")) {
        for (number, line) in code_lines(&path) {
            for (pattern, what) in FORBIDDEN {
                if line.contains(pattern) {
                    found.push(format!(
                        "{}:{number}: uses {what} (`{pattern}`)",
                        relative(&path)
                    ));
                }
            }
        }
    }
    let manifest =
        std::fs::read_to_string(root.join("Cargo.toml")).expect("sluice-core's Cargo.toml");
    for dependency in ["tokio", "sqlx", "reqwest", "hyper", "axum"] {
        if manifest
            .lines()
            .any(|l| l.trim_start().starts_with(dependency))
        {
            found.push(format!(
                "crates/sluice-core/Cargo.toml: depends on {dependency}"
            ));
        }
    }
    assert!(
        found.is_empty(),
        "sluice-core must stay pure:\n{}",
        found.join("\n")
    );
}

/// The server's HTTP layer (`api/`) calls services; nothing else in the server reaches back
/// into it, so services can be read, tested and reused without HTTP. `lib.rs` mounts the router
/// and is the one exception.
#[test]
fn nothing_outside_api_imports_api() {
    let src = workspace().join("crates/sluice-server/src");
    let mut found = Vec::new();
    for path in sources(&src) {
        let inside = path.strip_prefix(&src).expect("under src");
        if inside.starts_with("api") || inside == Path::new("lib.rs") {
            continue;
        }
        for (number, line) in code_lines(&path) {
            if line.contains("crate::api") || line.contains("super::api") {
                found.push(format!("{}:{number}: {}", relative(&path), line.trim()));
            }
        }
    }
    assert!(
        found.is_empty(),
        "modules outside api/ import api:\n{}",
        found.join("\n")
    );
}

/// A reader must be able to tell where a name comes from: no top-level glob imports in the
/// server (an indented `use super::*;` inside `mod tests` is fine).
#[test]
fn server_imports_are_explicit() {
    let src = workspace().join("crates/sluice-server/src");
    let mut found = Vec::new();
    for path in sources(&src) {
        for (number, line) in code_lines(&path) {
            let statement = line.trim_end();
            let top_level = statement.starts_with("use ") || statement.starts_with("pub use ");
            if top_level && statement.ends_with("::*;") {
                found.push(format!("{}:{number}: {statement}", relative(&path)));
            }
        }
    }
    assert!(
        found.is_empty(),
        "glob imports in the server:\n{}",
        found.join("\n")
    );
}
