//! The demo's packages and their apt repository: real `.deb` files built with `dpkg-deb`, and
//! a flat repository indexed by `dpkg-scanpackages --multiversion`, which the private roots read
//! through `deb [trusted=yes] file:… ./`.
//!
//! `acme-web` 1.0 is what the fleet runs (and what the advisory names as vulnerable), 1.1 is the
//! fix, and 1.2 is the bad release: its health script fails. Every version ships the health
//! script `/usr/lib/acme-web/health` and the conffile `/etc/acme-web/acme-web.conf`.

use std::fs;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use anyhow::{Context, Result, bail};

/// The demo's package.
pub const PACKAGE: &str = "acme-web";
/// The version every host starts on: vulnerable.
pub const OLD: &str = "1.0";
/// The version that fixes the advisory.
pub const FIXED: &str = "1.1";
/// The bad release: its health check fails.
pub const BAD: &str = "1.2";

/// The health script inside a root, relative to it.
pub const HEALTH: &str = "usr/lib/acme-web/health";

/// Builds every version into `dir/repo` and indexes it; returns the repository's directory.
pub fn build_repository(dir: &Path) -> Result<PathBuf> {
    let repo = dir.join("repo");
    let build = dir.join("build");
    fs::create_dir_all(&repo).with_context(|| format!("creating {}", repo.display()))?;
    for version in [OLD, FIXED, BAD] {
        build_deb(&build, &repo, version)?;
    }
    let index = run(Command::new("dpkg-scanpackages")
        .args(["--multiversion", "."])
        .current_dir(&repo))?;
    fs::write(repo.join("Packages"), index)
        .with_context(|| format!("writing {}", repo.join("Packages").display()))?;
    Ok(repo)
}

fn build_deb(build: &Path, out: &Path, version: &str) -> Result<()> {
    let dir = build.join(format!("{PACKAGE}_{version}"));
    let debian = dir.join("DEBIAN");
    fs::create_dir_all(&debian)?;
    let description = match version {
        OLD => "the release the fleet runs",
        FIXED => "fixes ACME-2026-0001 (CVE-2024-38475)",
        _ => "a bug-fix release whose health check fails",
    };
    fs::write(
        debian.join("control"),
        format!(
            "Package: {PACKAGE}\nVersion: {version}\nArchitecture: all\nMaintainer: Sluice demo <demo@example.invalid>\nSection: web\nPriority: optional\nDescription: ACME web front end (Sluice demo package)\n {description}\n"
        ),
    )?;
    let etc = dir.join("etc/acme-web");
    fs::create_dir_all(&etc)?;
    fs::write(
        etc.join("acme-web.conf"),
        format!(
            "# acme-web configuration\nlisten = 127.0.0.1:8080\nworkers = 4\n# shipped with {version}\n"
        ),
    )?;
    fs::write(debian.join("conffiles"), "/etc/acme-web/acme-web.conf\n")?;
    let lib = dir.join("usr/lib/acme-web");
    fs::create_dir_all(&lib)?;
    let health = if version == BAD {
        format!(
            "#!/bin/sh\necho 'acme-web {version}: /healthz answers 503 (worker pool did not start)' >&2\nexit 1\n"
        )
    } else {
        format!("#!/bin/sh\necho 'acme-web {version}: healthy'\nexit 0\n")
    };
    write_executable(&lib.join("health"), &health)?;
    let file = out.join(format!("{PACKAGE}_{version}_all.deb"));
    run(Command::new("dpkg-deb")
        .args(["--root-owner-group", "-Zgzip", "--build"])
        .arg(&dir)
        .arg(&file))?;
    Ok(())
}

fn write_executable(path: &Path, text: &str) -> Result<()> {
    fs::write(path, text).with_context(|| format!("writing {}", path.display()))?;
    fs::set_permissions(path, fs::Permissions::from_mode(0o755))?;
    Ok(())
}

/// Runs a command and returns its standard output; a failure names the command and its words.
pub fn run(command: &mut Command) -> Result<String> {
    let program = command.get_program().to_string_lossy().into_owned();
    let out = command
        .stdin(Stdio::null())
        .output()
        .with_context(|| format!("cannot run {program} (is it installed?)"))?;
    if !out.status.success() {
        bail!(
            "{program} failed ({}): {}",
            out.status,
            String::from_utf8_lossy(&out.stderr).trim()
        );
    }
    Ok(String::from_utf8_lossy(&out.stdout).into_owned())
}

/// The OSV advisory feed naming the demo package: affected from 0, fixed in 1.1, an alias of a
/// CVE that is in CISA's KEV catalog, so the finding is known exploited.
pub fn advisory_feed() -> serde_json::Value {
    serde_json::json!([{
        "schema_version": "1.6.0",
        "id": "ACME-2026-0001",
        "aliases": ["CVE-2024-38475"],
        "summary": "acme-web: path rewriting maps URLs to file system locations it should not serve",
        "details": "acme-web before 1.1 embeds a rewrite engine with improper escaping of output (CVE-2024-38475), letting an attacker map URLs to file system locations that the server is permitted to serve but that are not intentionally reachable. Known to be exploited.",
        "published": "2026-11-20T00:00:00Z",
        "modified": "2026-11-20T00:00:00Z",
        "severity": [{"type": "CVSS_V3", "score": "CVSS:3.1/AV:N/AC:L/PR:N/UI:N/S:U/C:H/I:H/A:N"}],
        "affected": [{
            "package": {"ecosystem": "Debian:12", "name": PACKAGE},
            "ranges": [{"type": "ECOSYSTEM", "events": [{"introduced": "0"}, {"fixed": FIXED}]}]
        }],
        "database_specific": {"update_type": "security"}
    }])
}
