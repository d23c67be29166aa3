//! TLS for outgoing HTTPS (feeds, and the CLI and agent through the same functions): rustls with
//! the ring provider, no OpenSSL. Certificates are verified against the system's roots, plus the
//! PEM bundle in `SLUICE_CA_FILE` for a private CA (a mirror or a TLS-terminating proxy).

use std::path::PathBuf;
use std::sync::{Once, OnceLock};

/// Makes ring the process's rustls provider; reqwest is built without one. Idempotent.
pub fn install_crypto_provider() {
    static ONCE: Once = Once::new();
    ONCE.call_once(|| {
        // `Err` means a provider is installed already, which is the goal.
        let _ = rustls::crypto::ring::default_provider().install_default();
    });
}

/// The environment variable naming extra trusted CA certificates (PEM).
pub const CA_FILE_ENV: &str = "SLUICE_CA_FILE";

static CA_FILE: OnceLock<PathBuf> = OnceLock::new();

/// Trusts the certificates in `path` for this process's outgoing HTTPS (the server's `ca_file`
/// setting), checking now that the file holds certificates, so a bad setting fails at start.
pub fn trust_ca_file(path: PathBuf) -> Result<(), String> {
    certificates(&path)?;
    let _ = CA_FILE.set(path);
    Ok(())
}

fn certificates(path: &std::path::Path) -> Result<Vec<reqwest::Certificate>, String> {
    let pem =
        std::fs::read(path).map_err(|e| format!("ca_file {}: cannot read: {e}", path.display()))?;
    let certs = reqwest::Certificate::from_pem_bundle(&pem)
        .map_err(|e| format!("ca_file {}: not PEM certificates: {e}", path.display()))?;
    if certs.is_empty() {
        return Err(format!("ca_file {}: no certificate in it", path.display()));
    }
    Ok(certs)
}

/// How long a client keeps an idle connection for reuse: less than the server's
/// `header_read_timeout` default (30 s), after which the server closes idle connections, so a
/// pooled connection is not reused just as the server closes it ("connection closed before
/// message completed").
pub const CLIENT_POOL_IDLE: std::time::Duration = std::time::Duration::from_secs(20);

/// A client builder with the provider installed, idle connections dropped before the server
/// would drop them ([`CLIENT_POOL_IDLE`]), and the extra CA certificates (the server's `ca_file`
/// setting, else `SLUICE_CA_FILE`) trusted besides the system's.
pub fn client_builder() -> Result<reqwest::ClientBuilder, String> {
    install_crypto_provider();
    let mut builder = reqwest::Client::builder().pool_idle_timeout(CLIENT_POOL_IDLE);
    if let Some(path) = std::env::var_os(CA_FILE_ENV) {
        let pem = std::fs::read(&path)
            .map_err(|e| format!("{CA_FILE_ENV}={}: cannot read: {e}", path.to_string_lossy()))?;
        let certs = reqwest::Certificate::from_pem_bundle(&pem).map_err(|e| {
            format!(
                "{CA_FILE_ENV}={}: not PEM certificates: {e}",
                path.to_string_lossy()
            )
        })?;
        if certs.is_empty() {
            return Err(format!(
                "{CA_FILE_ENV}={}: no certificate in it",
                path.to_string_lossy()
            ));
        }
        builder = builder.tls_certs_merge(certs);
    }
    Ok(builder)
}
