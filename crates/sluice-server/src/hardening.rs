//! Protections every answer gets, whatever route made it: error answers as problem documents,
//! headers that stop browsers from sniffing, framing or leaking, the `Host` check against DNS
//! rebinding, and a database file only the server's user can read.
//!
//! Nothing here decides what a request may do (that is `auth`); these are the edges a probe of
//! the server found open.

use std::path::Path;
use std::sync::Arc;

use axum::extract::{Request, State};
use axum::http::{HeaderValue, StatusCode, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};

use crate::error::{ApiError, MAX_DETAIL_CHARS, truncated};
use crate::settings::Settings;

/// The most of a non-problem error body read to become a problem's detail.
const PLAIN_ERROR_BYTES: usize = 4096;

/// Turns every error answer that is not already a problem document into one. axum's extractors
/// answer a bad query string or path with `text/plain`, and the router answers a wrong method
/// with an empty 405; clients of this API read `application/problem+json` only.
pub async fn problem_for_every_error(request: Request, next: Next) -> Response {
    let response = next.run(request).await;
    let status = response.status();
    if !(status.is_client_error() || status.is_server_error()) {
        return response;
    }
    let is_problem = response
        .headers()
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.starts_with("application/problem+json"));
    if is_problem {
        return response;
    }
    let (parts, body) = response.into_parts();
    let text = match axum::body::to_bytes(body, PLAIN_ERROR_BYTES).await {
        Ok(bytes) => String::from_utf8_lossy(&bytes).trim().to_owned(),
        Err(_) => String::new(),
    };
    let detail = if text.is_empty() {
        status.canonical_reason().unwrap_or("error").to_owned()
    } else {
        truncated(&text, MAX_DETAIL_CHARS).into_owned()
    };
    let mut problem = if status.is_server_error() {
        ApiError::internal(detail)
    } else {
        ApiError::with_status(status, detail)
    }
    .into_response();
    // Keep what the original answer said beyond its body (`Allow` on a 405, `Retry-After`).
    for name in [header::ALLOW, header::RETRY_AFTER, header::WWW_AUTHENTICATE] {
        if let Some(value) = parts.headers.get(&name) {
            problem.headers_mut().insert(name, value.clone());
        }
    }
    problem
}

/// The Content-Security-Policy of the vendored Swagger UI: its own scripts and styles only (it
/// sets inline styles), nothing from elsewhere, never framed.
const DOCS_POLICY: &str = "default-src 'self'; script-src 'self'; style-src 'self' 'unsafe-inline'; img-src 'self' data:; connect-src 'self'; base-uri 'none'; form-action 'self'; frame-ancestors 'none'";

/// Everything else is JSON or text: nothing in it may run or load, and it is never framed.
const API_POLICY: &str = "default-src 'none'; frame-ancestors 'none'; base-uri 'none'";

/// Headers on every answer: no MIME sniffing, no framing (clickjacking), no referrer, and a
/// Content-Security-Policy.
pub async fn security_headers(request: Request, next: Next) -> Response {
    let docs = request.uri().path().starts_with("/api/docs");
    let mut response = next.run(request).await;
    let headers = response.headers_mut();
    headers.insert(
        header::X_CONTENT_TYPE_OPTIONS,
        HeaderValue::from_static("nosniff"),
    );
    headers.insert(header::X_FRAME_OPTIONS, HeaderValue::from_static("DENY"));
    headers.insert(
        header::REFERRER_POLICY,
        HeaderValue::from_static("no-referrer"),
    );
    headers.insert(
        header::CONTENT_SECURITY_POLICY,
        HeaderValue::from_static(if docs { DOCS_POLICY } else { API_POLICY }),
    );
    response
}

/// Answers 421 to a request for a host name the server does not serve
/// ([`Settings::host_allowed`]): a page on `evil.example` whose name was rebound to 127.0.0.1
/// cannot talk to a server on loopback.
pub async fn check_host(
    State(settings): State<Arc<Settings>>,
    request: Request,
    next: Next,
) -> Response {
    let host = request
        .headers()
        .get(header::HOST)
        .and_then(|v| v.to_str().ok())
        .or_else(|| request.uri().authority().map(|a| a.as_str()));
    if settings.host_allowed(host) {
        return next.run(request).await;
    }
    ApiError::with_status(
        StatusCode::MISDIRECTED_REQUEST,
        "this server does not answer to that host name (see allowed_hosts in docs/deploying.md)",
    )
    .into_response()
}

/// Makes sure the SQLite database lives in a directory only the server's user can enter and is
/// a file only it can read (the audit chain and token hashes are in it), whatever the umask.
/// An existing directory or file keeps its mode, with a warning when others can read it.
pub fn private_database_file(path: &Path) -> std::io::Result<()> {
    use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt, PermissionsExt};
    if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
        if !dir.exists() {
            std::fs::DirBuilder::new()
                .recursive(true)
                .mode(0o700)
                .create(dir)?;
        } else if std::fs::metadata(dir)?.permissions().mode() & 0o077 != 0 {
            tracing::warn!(dir = %dir.display(), "the data directory is open to other users (chmod 700 it)");
        }
    }
    match std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(path)
    {
        // SQLite takes an empty file as a new database, and gives its -wal and -shm files the
        // database file's mode.
        Ok(_) => Ok(()),
        Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {
            if std::fs::metadata(path)?.permissions().mode() & 0o077 != 0 {
                tracing::warn!(file = %path.display(), "the database file is readable by other users (chmod 600 it)");
            }
            Ok(())
        }
        Err(e) => Err(e),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::PermissionsExt;

    #[test]
    fn the_database_is_private_whatever_the_umask() {
        let temp = tempfile::tempdir().unwrap();
        let path = temp.path().join("a/b/sluice.db");
        private_database_file(&path).unwrap();
        let mode = |p: &Path| std::fs::metadata(p).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode(&path), 0o600);
        assert_eq!(mode(path.parent().unwrap()), 0o700);
        assert_eq!(mode(&temp.path().join("a")), 0o700);
        // A second start leaves an existing database alone.
        std::fs::write(&path, b"kept").unwrap();
        private_database_file(&path).unwrap();
        assert_eq!(std::fs::read(&path).unwrap(), b"kept");
    }
}
