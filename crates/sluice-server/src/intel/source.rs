//! Feed sources: where a feed's content may come from, and reading it within bounds.
//!
//! A source is named by a `security` user and read with the server's own rights, so it is
//! fenced. A local source is an absolute path inside one of the allowed directories
//! (`feed_dirs`), checked again after symlinks are resolved, never on `/proc`, `/sys` or `/dev`,
//! and a regular file or a directory whose `.json` files are regular files inside it. An HTTP
//! source must not resolve to a link-local or cloud metadata address (the addresses checked are
//! the ones connected to, and every redirect is checked the same way). No read goes past
//! `feed_max_bytes`. Errors name the source and a [`FaultKind`]; they never quote what was read.

use std::collections::BTreeSet;
use std::fmt;
use std::io::Read;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::path::{Component, Path, PathBuf};
use std::time::Duration;

use crate::settings::FeedPolicy;

/// The longest source accepted: a path or URL, not a document.
pub const MAX_SOURCE_CHARS: usize = 2048;

/// Redirects followed before giving up.
const MAX_REDIRECTS: usize = 5;

/// Pseudo-file systems whose "regular files" are process state or devices, never feeds.
const PSEUDO_ROOTS: [&str; 3] = ["/proc", "/sys", "/dev"];

/// Why a source could not be used: the kind recorded in `last_error` and in the `feed.sync`
/// audit event (where a stable word is safer than a message).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum FaultKind {
    /// Outside what the settings allow: a path outside `feed_dirs`, a special file, a
    /// link-local address, a scheme other than http(s).
    NotAllowed,
    /// More than `feed_max_bytes`.
    TooLarge,
    /// Not the format the feed's kind says.
    NotAFeed,
    /// Missing, refused, timed out, or an HTTP error status.
    Unreachable,
}

impl FaultKind {
    /// The stable name.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::NotAllowed => "not-allowed",
            Self::TooLarge => "too-large",
            Self::NotAFeed => "not-a-feed",
            Self::Unreachable => "unreachable",
        }
    }
}

impl fmt::Display for FaultKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A source that could not be used. The message names the source and the reason; it is built
/// here, never from the content.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("{kind}: {message}")]
pub struct SourceError {
    /// The kind.
    pub kind: FaultKind,
    /// What and where.
    pub message: String,
}

impl SourceError {
    pub(crate) fn new(kind: FaultKind, message: impl Into<String>) -> Self {
        Self {
            kind,
            message: message.into(),
        }
    }
}

fn not_allowed(message: impl Into<String>) -> SourceError {
    SourceError::new(FaultKind::NotAllowed, message)
}

fn unreachable(message: impl Into<String>) -> SourceError {
    SourceError::new(FaultKind::Unreachable, message)
}

fn too_large(source: &str, max: u64) -> SourceError {
    SourceError::new(
        FaultKind::TooLarge,
        format!("{source} holds more than feed_max_bytes ({max} bytes); reading stopped there"),
    )
}

/// A source, parsed.
enum Source {
    Path(PathBuf),
    Http(reqwest::Url),
}

fn parse(source: &str) -> Result<Source, SourceError> {
    if source.chars().count() > MAX_SOURCE_CHARS {
        return Err(not_allowed(format!(
            "a source is at most {MAX_SOURCE_CHARS} characters"
        )));
    }
    if source.chars().any(char::is_control) {
        return Err(not_allowed("a source holds no control characters"));
    }
    let scheme = source
        .split_once(':')
        .map(|(scheme, _)| scheme.to_ascii_lowercase());
    match scheme.as_deref() {
        Some("http" | "https") => {
            let url = reqwest::Url::parse(source)
                .map_err(|e| not_allowed(format!("{source} is not a valid URL: {e}")))?;
            if url.host_str().is_none_or(str::is_empty) {
                return Err(not_allowed(format!("{source} names no host")));
            }
            return Ok(Source::Http(url));
        }
        Some("file") => {
            return Err(not_allowed(format!(
                "{source}: file: URLs are not feed sources; give the absolute path inside a feed directory"
            )));
        }
        _ if source.contains("://") => {
            return Err(not_allowed(format!(
                "{source}: only absolute paths and http(s) URLs are feed sources"
            )));
        }
        _ => {}
    }
    let path = PathBuf::from(source);
    if !path.is_absolute() {
        return Err(not_allowed(format!(
            "{source}: a local source is an absolute path on the server"
        )));
    }
    if path.components().any(|c| c == Component::ParentDir) {
        return Err(not_allowed(format!(
            "{source}: '..' is not allowed in a source path"
        )));
    }
    Ok(Source::Path(path))
}

/// Checks a source when a feed is registered: its form, and for a path that it exists inside
/// the allowed directories and is a regular file or a directory; for a URL that its host does
/// not resolve to a forbidden address (a host that does not resolve yet is accepted: every sync
/// checks again).
pub async fn check(source: &str, policy: &FeedPolicy) -> Result<(), SourceError> {
    match parse(source)? {
        Source::Path(path) => {
            let (policy, shown) = (policy.clone(), source.to_owned());
            tokio::task::spawn_blocking(move || resolve_local(&shown, &path, &policy).map(drop))
                .await
                .map_err(|e| unreachable(format!("{source}: {e}")))?
        }
        Source::Http(url) => match resolve(source, &url, policy).await {
            Err(error) if error.kind == FaultKind::Unreachable => Ok(()),
            other => other.map(drop),
        },
    }
}

/// Reads a source: a file, a directory of OSV JSON files (joined into one JSON array), or an
/// http(s) URL, checked against the policy now (the file system and DNS may have changed since
/// the feed was registered) and read up to `max_bytes`.
pub async fn fetch(source: &str, policy: &FeedPolicy) -> Result<Vec<u8>, SourceError> {
    match parse(source)? {
        Source::Http(url) => fetch_http(source, url, policy).await,
        Source::Path(path) => {
            let (policy, shown) = (policy.clone(), source.to_owned());
            tokio::task::spawn_blocking(move || match resolve_local(&shown, &path, &policy)? {
                Local::File(file) => read_file(&shown, &file, policy.max_bytes, policy.max_bytes),
                Local::Dir(dir) => read_dir(&shown, &dir, policy.max_bytes),
            })
            .await
            .map_err(|e| unreachable(format!("{source}: {e}")))?
        }
    }
}

/// A local source after its checks: the canonical path.
enum Local {
    File(PathBuf),
    Dir(PathBuf),
}

/// The allowed directories as written (made absolute) and as resolved, for the lexical check
/// and the check after symlinks.
fn allowed_roots(policy: &FeedPolicy) -> (Vec<PathBuf>, Vec<PathBuf>) {
    let written = policy
        .dirs
        .iter()
        .filter_map(|d| std::path::absolute(d).ok())
        .collect();
    let resolved = policy
        .dirs
        .iter()
        .filter_map(|d| d.canonicalize().ok())
        .filter(|d| d.is_dir())
        .collect();
    (written, resolved)
}

fn dirs_shown(policy: &FeedPolicy) -> String {
    policy
        .dirs
        .iter()
        .map(|d| d.display().to_string())
        .collect::<Vec<_>>()
        .join(", ")
}

fn resolve_local(source: &str, path: &Path, policy: &FeedPolicy) -> Result<Local, SourceError> {
    if policy.dirs.is_empty() {
        return Err(not_allowed(format!(
            "{source}: local feed sources are off: no feed directory is configured (setting feed_dirs)"
        )));
    }
    let on_pseudo = |path: &Path| PSEUDO_ROOTS.iter().any(|p| path.starts_with(p));
    let pseudo = || not_allowed(format!("{source} is on /proc, /sys or /dev: not a feed"));
    let (written, resolved) = allowed_roots(policy);
    let outside = || {
        not_allowed(format!(
            "{source} is outside the feed directories ({}); only files inside them may be feed sources",
            dirs_shown(policy)
        ))
    };
    // Refused before touching the file system, so a probe learns nothing of what exists.
    if !written
        .iter()
        .chain(&resolved)
        .any(|root| path.starts_with(root))
    {
        return Err(outside());
    }
    if on_pseudo(path) {
        return Err(pseudo());
    }
    let canonical = path
        .canonicalize()
        .map_err(|e| unreachable(format!("cannot read {source}: {}", io_reason(&e))))?;
    if !resolved.iter().any(|root| canonical.starts_with(root)) {
        return Err(not_allowed(format!(
            "{source} leads outside the feed directories ({}) through a symbolic link",
            dirs_shown(policy)
        )));
    }
    if on_pseudo(&canonical) {
        return Err(pseudo());
    }
    let metadata = std::fs::metadata(&canonical)
        .map_err(|e| unreachable(format!("cannot read {source}: {}", io_reason(&e))))?;
    if metadata.is_file() {
        Ok(Local::File(canonical))
    } else if metadata.is_dir() {
        Ok(Local::Dir(canonical))
    } else {
        Err(not_allowed(format!(
            "{source} is not a regular file or a directory"
        )))
    }
}

/// An I/O error's reason without the OS error number.
fn io_reason(error: &std::io::Error) -> String {
    let text = error.to_string();
    match text.find(" (os error") {
        Some(at) => text[..at].to_owned(),
        None => text,
    }
}

/// Reads one regular file, refusing anything else even if the path changed since it was checked
/// (no symlink is followed at the last step, a FIFO does not block, the type is checked on the
/// open file), and at most `budget` bytes (`max` is what the message names).
fn read_file(shown: &str, path: &Path, budget: u64, max: u64) -> Result<Vec<u8>, SourceError> {
    use rustix::fs::{Mode, OFlags};
    let cannot = |e: std::io::Error| unreachable(format!("cannot read {shown}: {}", io_reason(&e)));
    let fd = rustix::fs::open(
        path,
        OFlags::RDONLY | OFlags::NOFOLLOW | OFlags::NONBLOCK | OFlags::CLOEXEC,
        Mode::empty(),
    )
    .map_err(|e| cannot(e.into()))?;
    let file = std::fs::File::from(fd);
    let metadata = file.metadata().map_err(cannot)?;
    if !metadata.is_file() {
        return Err(not_allowed(format!("{shown} is not a regular file")));
    }
    if metadata.len() > budget {
        return Err(too_large(shown, max));
    }
    let mut bytes = Vec::new();
    file.take(budget.saturating_add(1))
        .read_to_end(&mut bytes)
        .map_err(cannot)?;
    if bytes.len() as u64 > budget {
        return Err(too_large(shown, max));
    }
    Ok(bytes)
}

/// Reads a directory source: its `.json` files (in subdirectories too), each a regular file
/// inside it, joined into one JSON array, all of them together at most `max` bytes.
fn read_dir(source: &str, dir: &Path, max: u64) -> Result<Vec<u8>, SourceError> {
    let mut files = Vec::new();
    collect_json(source, dir, dir, &mut files, &mut BTreeSet::new())?;
    files.sort();
    if files.is_empty() {
        return Err(SourceError::new(
            FaultKind::NotAFeed,
            format!("{source}: the directory holds no .json files"),
        ));
    }
    let mut remaining = max;
    let mut records = Vec::with_capacity(files.len());
    for (shown, file) in files {
        let text = read_file(&shown, &file, remaining, max)?;
        remaining -= text.len() as u64;
        match serde_json::from_slice::<serde_json::Value>(&text) {
            Ok(serde_json::Value::Array(items)) => records.extend(items),
            Ok(value) => records.push(value),
            // A broken file is one malformed record; keep a marker (its name and where the
            // syntax broke, never its text) so it is counted as skipped.
            Err(e) => records.push(serde_json::json!({
                "id": null,
                "_unreadable": shown,
                "_error": format!("not JSON at line {} column {}", e.line(), e.column()),
            })),
        }
    }
    serde_json::to_vec(&records).map_err(|e| unreachable(format!("{source}: {e}")))
}

/// (name shown, canonical path) of every `.json` file under `dir`.
type JsonFiles = Vec<(String, PathBuf)>;

fn collect_json(
    source: &str,
    root: &Path,
    dir: &Path,
    files: &mut JsonFiles,
    seen: &mut BTreeSet<PathBuf>,
) -> Result<(), SourceError> {
    // A symlink back up the tree is walked once.
    if !seen.insert(dir.to_owned()) {
        return Ok(());
    }
    let cannot =
        |e: std::io::Error| unreachable(format!("cannot read {source}: {}", io_reason(&e)));
    for entry in std::fs::read_dir(dir).map_err(cannot)? {
        let entry = entry.map_err(cannot)?;
        let path = entry.path();
        let shown = format!(
            "{}/{}",
            source.trim_end_matches('/'),
            path.strip_prefix(root).unwrap_or(&path).display()
        );
        let is_json = path.extension().is_some_and(|e| e == "json");
        let file_type = entry.file_type().map_err(cannot)?;
        let target = if file_type.is_symlink() {
            match path.canonicalize() {
                Ok(target) if target.starts_with(root) => target,
                Ok(_) => {
                    return Err(not_allowed(format!(
                        "{shown} leads outside {source} through a symbolic link"
                    )));
                }
                Err(e) if is_json => {
                    return Err(unreachable(format!(
                        "cannot read {shown}: {}",
                        io_reason(&e)
                    )));
                }
                Err(_) => continue,
            }
        } else {
            path
        };
        let metadata = std::fs::metadata(&target).map_err(cannot)?;
        if metadata.is_dir() {
            collect_json(source, root, &target, files, seen)?;
        } else if is_json {
            if !metadata.is_file() {
                return Err(not_allowed(format!("{shown} is not a regular file")));
            }
            files.push((shown, target));
        }
    }
    Ok(())
}

/// Why an address may not be fetched from, if it may not.
fn forbidden(ip: IpAddr) -> Option<&'static str> {
    const METADATA_V4: [Ipv4Addr; 2] = [
        Ipv4Addr::new(169, 254, 169, 254), // AWS, GCP, Azure, OpenStack
        Ipv4Addr::new(100, 100, 100, 200), // Alibaba Cloud
    ];
    const METADATA_V6: Ipv6Addr = Ipv6Addr::new(0xfd00, 0xec2, 0, 0, 0, 0, 0, 0x254); // AWS
    let v4 = match ip {
        IpAddr::V4(v4) => Some(v4),
        // IPv4-mapped and -compatible forms reach the same IPv4 host.
        IpAddr::V6(v6) => v6.to_ipv4(),
    };
    if let Some(v4) = v4 {
        if METADATA_V4.contains(&v4) {
            return Some("a cloud metadata address");
        }
        if v4.is_link_local() {
            return Some("a link-local address");
        }
    }
    if let IpAddr::V6(v6) = ip {
        if v6 == METADATA_V6 {
            return Some("a cloud metadata address");
        }
        if v6.segments()[0] & 0xffc0 == 0xfe80 {
            return Some("a link-local address");
        }
    }
    None
}

/// The addresses `url`'s host resolves to, all of them allowed; these are the ones connected
/// to, so a name that resolves differently a moment later changes nothing.
async fn resolve(
    source: &str,
    url: &reqwest::Url,
    policy: &FeedPolicy,
) -> Result<Vec<SocketAddr>, SourceError> {
    let host = url
        .host_str()
        .ok_or_else(|| not_allowed(format!("{source} names no host")))?;
    let port = url
        .port_or_known_default()
        .ok_or_else(|| not_allowed(format!("{source} names no port")))?;
    let bare = host.trim_start_matches('[').trim_end_matches(']');
    let addresses: Vec<SocketAddr> = tokio::net::lookup_host((bare, port))
        .await
        .map_err(|e| {
            unreachable(format!(
                "cannot fetch {source}: {host} does not resolve: {e}"
            ))
        })?
        .collect();
    if addresses.is_empty() {
        return Err(unreachable(format!(
            "cannot fetch {source}: {host} has no address"
        )));
    }
    if !policy.allow_link_local
        && let Some((ip, what)) = addresses
            .iter()
            .find_map(|a| forbidden(a.ip()).map(|what| (a.ip(), what)))
    {
        let resolved = if bare.parse::<IpAddr>().is_ok() {
            String::new()
        } else {
            format!(" resolves to {ip} and")
        };
        return Err(not_allowed(format!(
            "{source}: {host}{resolved} is {what}; feeds are not fetched from there unless feed_allow_link_local is set"
        )));
    }
    Ok(addresses)
}

async fn fetch_http(
    source: &str,
    mut url: reqwest::Url,
    policy: &FeedPolicy,
) -> Result<Vec<u8>, SourceError> {
    for _ in 0..=MAX_REDIRECTS {
        let addresses = resolve(source, &url, policy).await?;
        let mut builder = crate::tls::client_builder()
            .map_err(unreachable)?
            .redirect(reqwest::redirect::Policy::none())
            .connect_timeout(Duration::from_secs(30))
            .timeout(Duration::from_secs(300));
        if let Some(domain) = url.domain() {
            builder = builder.resolve_to_addrs(domain, &addresses);
        }
        let client = builder
            .build()
            .map_err(|e| unreachable(format!("cannot fetch {source}: {e}")))?;
        let mut response = client.get(url.clone()).send().await.map_err(|e| {
            unreachable(format!("cannot fetch {source}: {}", super::error_chain(&e)))
        })?;
        let status = response.status();
        if status.is_redirection() {
            let next = response
                .headers()
                .get(reqwest::header::LOCATION)
                .and_then(|v| v.to_str().ok())
                .and_then(|location| url.join(location).ok())
                .ok_or_else(|| {
                    unreachable(format!(
                        "{source} answered {status} with no usable Location"
                    ))
                })?;
            if !matches!(next.scheme(), "http" | "https") {
                return Err(not_allowed(format!(
                    "{source} redirects to a URL that is not http(s)"
                )));
            }
            url = next;
            continue;
        }
        if !status.is_success() {
            return Err(unreachable(format!("{source} answered {status}")));
        }
        if response
            .content_length()
            .is_some_and(|length| length > policy.max_bytes)
        {
            return Err(too_large(source, policy.max_bytes));
        }
        let mut body = Vec::new();
        while let Some(chunk) = response
            .chunk()
            .await
            .map_err(|e| unreachable(format!("cannot read {source}: {}", super::error_chain(&e))))?
        {
            if (body.len() + chunk.len()) as u64 > policy.max_bytes {
                return Err(too_large(source, policy.max_bytes));
            }
            body.extend_from_slice(&chunk);
        }
        return Ok(body);
    }
    Err(unreachable(format!(
        "cannot fetch {source}: more than {MAX_REDIRECTS} redirects"
    )))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn link_local_and_metadata_addresses_are_forbidden() {
        for text in [
            "169.254.169.254",
            "169.254.1.2",
            "100.100.100.200",
            "fe80::1",
            "febf::1",
            "fd00:ec2::254",
            "::ffff:169.254.169.254",
        ] {
            let ip: IpAddr = text.parse().unwrap();
            assert!(forbidden(ip).is_some(), "{text}");
        }
        for text in [
            "127.0.0.1",
            "10.0.0.1",
            "::1",
            "fec0::1",
            "8.8.8.8",
            "fd00::1",
        ] {
            let ip: IpAddr = text.parse().unwrap();
            assert_eq!(forbidden(ip), None, "{text}");
        }
    }

    #[test]
    fn sources_are_paths_or_http_urls() {
        assert!(matches!(parse("/srv/feeds/x.json"), Ok(Source::Path(_))));
        assert!(matches!(
            parse("https://example.org/x"),
            Ok(Source::Http(_))
        ));
        assert!(matches!(parse("HTTP://example.org/x"), Ok(Source::Http(_))));
        for bad in [
            "file:///etc/passwd",
            "FILE:/etc/passwd",
            "ftp://example.org/x",
            "relative/x.json",
            "/srv/feeds/../../etc/passwd",
            "/srv/feeds/x\u{0}.json",
            "http://",
        ] {
            let Err(error) = parse(bad) else {
                panic!("{bad:?} accepted");
            };
            assert_eq!(error.kind, FaultKind::NotAllowed, "{bad:?}");
        }
        assert!(parse(&format!("/{}", "a".repeat(MAX_SOURCE_CHARS))).is_err());
    }
}
