//! Server settings, in layers: a TOML file, then `SLUICE_*` environment variables, then
//! command-line flags (each overrides the one before), validated into one [`Settings`].
//!
//! Secrets (the database URL's password, the first admin's password) are held in [`Secret`],
//! whose `Debug` and `Display` never show the value, so a settings dump in a log is safe.

use std::fmt;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::Deserialize;

/// A value that must not appear in logs or debug output.
#[derive(Clone, Default, PartialEq, Eq, Deserialize)]
#[serde(transparent)]
pub struct Secret(String);

impl Secret {
    /// Wraps a secret.
    pub fn new(value: impl Into<String>) -> Self {
        Self(value.into())
    }

    /// The secret itself; call only where it is used.
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Secret(***)")
    }
}

/// One layer of settings, every field optional: what a file, the environment or flags say.
#[derive(Clone, Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SettingsLayer {
    /// Address to listen on.
    pub listen: Option<String>,
    /// Data directory (SQLite database, state).
    pub data_dir: Option<PathBuf>,
    /// `postgres://…` to use PostgreSQL instead of SQLite.
    pub database_url: Option<Secret>,
    /// Password for the first `admin` (otherwise a random one is printed once).
    pub admin_password: Option<Secret>,
    /// Whether `/metrics` is served without authentication.
    pub metrics_public: Option<bool>,
    /// Lifetime of tokens issued by login, e.g. `12h`.
    pub session_ttl: Option<String>,
    /// Largest accepted request body, in bytes.
    pub max_body_bytes: Option<usize>,
    /// Failed logins allowed in the window for one account from one client address (four times
    /// as many for one account from anywhere, and for one address on any account).
    pub login_max_failures: Option<u32>,
    /// The login failure window, e.g. `15m`.
    pub login_window: Option<String>,
    /// For tests and demos only: the governance clock starts at this time (RFC 3339) and runs at
    /// real speed. Logged as a warning and audited (`clock.fake`) at start.
    pub fake_now: Option<String>,
    /// Extra trusted CA certificates (PEM) for HTTPS feeds: a private CA, a mirror, a proxy.
    pub ca_file: Option<PathBuf>,
    /// Reverse proxies (addresses or CIDR ranges) whose `X-Forwarded-For` names the client.
    pub trusted_proxies: Option<Vec<String>>,
}

impl SettingsLayer {
    /// Reads a TOML file.
    pub fn from_file(path: &Path) -> Result<Self, SettingsError> {
        let text = std::fs::read_to_string(path)
            .map_err(|e| SettingsError(format!("cannot read {}: {e}", path.display())))?;
        toml::from_str(&text).map_err(|e| SettingsError(format!("{}: {e}", path.display())))
    }

    /// Reads `SLUICE_*` variables from the given environment.
    pub fn from_env<I>(vars: I) -> Result<Self, SettingsError>
    where
        I: IntoIterator<Item = (String, String)>,
    {
        let mut layer = Self::default();
        for (key, value) in vars {
            let Some(name) = key.strip_prefix("SLUICE_") else {
                continue;
            };
            let bad = |what: &str| SettingsError(format!("{key}: {what}"));
            match name {
                "LISTEN" => layer.listen = Some(value),
                "DATA_DIR" => layer.data_dir = Some(PathBuf::from(value)),
                "DATABASE_URL" => layer.database_url = Some(Secret(value)),
                "ADMIN_PASSWORD" => layer.admin_password = Some(Secret(value)),
                "METRICS_PUBLIC" => {
                    layer.metrics_public =
                        Some(parse_bool(&value).ok_or_else(|| bad("expected true or false"))?);
                }
                "SESSION_TTL" => layer.session_ttl = Some(value),
                "MAX_BODY_BYTES" => {
                    layer.max_body_bytes = Some(
                        value
                            .parse()
                            .map_err(|_| bad("expected a number of bytes"))?,
                    );
                }
                "LOGIN_MAX_FAILURES" => {
                    layer.login_max_failures =
                        Some(value.parse().map_err(|_| bad("expected a whole number"))?);
                }
                "LOGIN_WINDOW" => layer.login_window = Some(value),
                "FAKE_NOW" => layer.fake_now = Some(value),
                "CA_FILE" => layer.ca_file = Some(PathBuf::from(value)),
                "TRUSTED_PROXIES" => {
                    layer.trusted_proxies = Some(
                        value
                            .split(',')
                            .map(str::trim)
                            .filter(|v| !v.is_empty())
                            .map(str::to_owned)
                            .collect(),
                    );
                }
                // Client-side variables (the CLI's server URL and token) share the prefix, and
                // the log filter is read by the binary before settings are.
                "SERVER" | "TOKEN" | "CONFIG" | "LOG" => {}
                _ => return Err(bad("unknown setting")),
            }
        }
        Ok(layer)
    }

    /// This layer with `over`'s values taking precedence.
    pub fn overridden_by(self, over: SettingsLayer) -> Self {
        Self {
            listen: over.listen.or(self.listen),
            data_dir: over.data_dir.or(self.data_dir),
            database_url: over.database_url.or(self.database_url),
            admin_password: over.admin_password.or(self.admin_password),
            metrics_public: over.metrics_public.or(self.metrics_public),
            session_ttl: over.session_ttl.or(self.session_ttl),
            max_body_bytes: over.max_body_bytes.or(self.max_body_bytes),
            login_max_failures: over.login_max_failures.or(self.login_max_failures),
            login_window: over.login_window.or(self.login_window),
            fake_now: over.fake_now.or(self.fake_now),
            ca_file: over.ca_file.or(self.ca_file),
            trusted_proxies: over.trusted_proxies.or(self.trusted_proxies),
        }
    }
}

fn parse_bool(text: &str) -> Option<bool> {
    match text.trim().to_ascii_lowercase().as_str() {
        "true" | "1" | "yes" | "on" => Some(true),
        "false" | "0" | "no" | "off" => Some(false),
        _ => None,
    }
}

/// Where the server keeps its records.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Database {
    /// `DATA_DIR/sluice.db`.
    Sqlite(PathBuf),
    /// A PostgreSQL URL.
    Postgres(Secret),
}

/// Validated settings.
#[derive(Clone, Debug)]
pub struct Settings {
    /// Address to listen on.
    pub listen: SocketAddr,
    /// Data directory.
    pub data_dir: PathBuf,
    /// The database.
    pub database: Database,
    /// Password for the first admin, if given.
    pub admin_password: Option<Secret>,
    /// Whether `/metrics` is anonymous.
    pub metrics_public: bool,
    /// Lifetime of login tokens.
    pub session_ttl: Duration,
    /// Largest request body.
    pub max_body_bytes: usize,
    /// Failed logins allowed per window.
    pub login_max_failures: u32,
    /// Login failure window.
    pub login_window: Duration,
    /// The fake start of the governance clock (tests and demos only; see `clock`).
    pub fake_now: Option<jiff::Timestamp>,
    /// Extra trusted CA certificates (PEM) for outgoing HTTPS.
    pub ca_file: Option<PathBuf>,
    /// Peers whose `X-Forwarded-For` is believed (default none: the socket's peer is the client).
    pub trusted_proxies: Vec<crate::auth::Cidr>,
}

impl Settings {
    /// Validates a merged layer, applying defaults.
    pub fn from_layer(layer: SettingsLayer) -> Result<Self, SettingsError> {
        let listen_text = layer.listen.unwrap_or_else(|| "127.0.0.1:8470".to_owned());
        let listen = listen_text.parse().map_err(|_| {
            SettingsError(format!(
                "listen: {listen_text:?} is not an address such as 127.0.0.1:8470"
            ))
        })?;
        let data_dir = layer
            .data_dir
            .unwrap_or_else(|| PathBuf::from("./sluice-data"));
        let database = match layer.database_url {
            None => Database::Sqlite(data_dir.join("sluice.db")),
            Some(url) if url.0.starts_with("postgres://") || url.0.starts_with("postgresql://") => {
                Database::Postgres(url)
            }
            Some(url) => {
                return Err(SettingsError(format!(
                    "database_url: {} is not a postgres:// URL (leave it out for the embedded SQLite database)",
                    sluice_store::redact_url(url.expose())
                )));
            }
        };
        let session_ttl =
            parse_duration("session_ttl", layer.session_ttl.as_deref().unwrap_or("12h"))?;
        let login_window = parse_duration(
            "login_window",
            layer.login_window.as_deref().unwrap_or("15m"),
        )?;
        // Checked here, before anything is created: a refused password leaves no database behind.
        if let Some(password) = &layer.admin_password
            && let Err(why) = crate::auth::check_password(password.expose())
        {
            return Err(SettingsError(format!(
                "admin_password (SLUICE_ADMIN_PASSWORD): {why}, like every password; leave it unset to have a random one printed once"
            )));
        }
        let trusted_proxies = layer
            .trusted_proxies
            .iter()
            .flatten()
            .map(|entry| {
                entry
                    .parse::<crate::auth::Cidr>()
                    .map_err(|e| SettingsError(format!("trusted_proxies: {e}")))
            })
            .collect::<Result<Vec<_>, _>>()?;
        let max_body_bytes = layer.max_body_bytes.unwrap_or(8 * 1024 * 1024);
        if max_body_bytes < 1024 {
            return Err(SettingsError("max_body_bytes: at least 1024".to_owned()));
        }
        let fake_now = layer
            .fake_now
            .as_deref()
            .map(|text| {
                text.trim().parse::<jiff::Timestamp>().map_err(|e| {
                    SettingsError(format!(
                        "fake_now: {text:?} is not a time such as 2026-11-02T09:00:00Z: {e}"
                    ))
                })
            })
            .transpose()?;
        Ok(Self {
            listen,
            data_dir,
            database,
            admin_password: layer.admin_password,
            metrics_public: layer.metrics_public.unwrap_or(true),
            session_ttl,
            max_body_bytes,
            login_max_failures: layer.login_max_failures.unwrap_or(5),
            login_window,
            fake_now,
            ca_file: layer.ca_file,
            trusted_proxies,
        })
    }
}

/// Parses `90s`, `15m`, `12h`, `30d` (and combinations such as `1h30m`).
pub fn parse_duration(field: &str, text: &str) -> Result<Duration, SettingsError> {
    let span: jiff::Span = text.trim().parse().map_err(|e| {
        SettingsError(format!(
            "{field}: {text:?} is not a duration such as 15m, 12h or 30d: {e}"
        ))
    })?;
    let seconds = span
        .total((jiff::Unit::Second, jiff::civil::date(2000, 1, 1)))
        .map_err(|e| SettingsError(format!("{field}: {e}")))?;
    if seconds <= 0.0 {
        return Err(SettingsError(format!("{field}: must be positive")));
    }
    Ok(Duration::from_secs_f64(seconds))
}

/// A setting that could not be used; the message names it.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("settings: {0}")]
pub struct SettingsError(pub String);

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn flags_override_env_override_file() {
        let file: SettingsLayer = toml::from_str(
            "listen = \"127.0.0.1:9000\"\nmetrics_public = false\nsession_ttl = \"1h\"\n",
        )
        .unwrap();
        let env = SettingsLayer::from_env([
            ("SLUICE_LISTEN".to_owned(), "127.0.0.1:9001".to_owned()),
            ("SLUICE_SESSION_TTL".to_owned(), "2h".to_owned()),
            ("HOME".to_owned(), "/root".to_owned()),
        ])
        .unwrap();
        let flags = SettingsLayer {
            listen: Some("127.0.0.1:9002".to_owned()),
            ..SettingsLayer::default()
        };
        let settings = Settings::from_layer(file.overridden_by(env).overridden_by(flags)).unwrap();
        assert_eq!(settings.listen.port(), 9002);
        assert_eq!(settings.session_ttl, Duration::from_secs(7200));
        assert!(!settings.metrics_public);
        assert_eq!(
            settings.database,
            Database::Sqlite(PathBuf::from("./sluice-data/sluice.db"))
        );
    }

    #[test]
    fn secrets_never_show_in_debug() {
        let layer = SettingsLayer {
            database_url: Some(Secret::new("postgres://sluice:hunter2@db/sluice")),
            admin_password: Some(Secret::new("correct horse")),
            ..SettingsLayer::default()
        };
        let settings = Settings::from_layer(layer).unwrap();
        let shown = format!("{settings:?}");
        assert!(
            !shown.contains("hunter2") && !shown.contains("correct horse"),
            "{shown}"
        );
        assert!(shown.contains("Secret(***)"));
    }

    #[test]
    fn bad_settings_name_the_field() {
        let err = Settings::from_layer(SettingsLayer {
            listen: Some("localhost".to_owned()),
            ..SettingsLayer::default()
        })
        .unwrap_err();
        assert!(err.0.starts_with("listen"), "{err}");
        let err =
            SettingsLayer::from_env([("SLUICE_COLOUR".to_owned(), "x".to_owned())]).unwrap_err();
        assert!(err.0.contains("SLUICE_COLOUR"));
        let err = Settings::from_layer(SettingsLayer {
            database_url: Some(Secret::new("mysql://root:pw@x/db")),
            ..SettingsLayer::default()
        })
        .unwrap_err();
        assert!(
            err.0.contains("database_url") && !err.0.contains("pw@"),
            "{err}"
        );
        assert!(toml::from_str::<SettingsLayer>("lisen = \"x\"").is_err());
        assert!(parse_duration("session_ttl", "soon").is_err());
        assert_eq!(
            parse_duration("x", "1h30m").unwrap(),
            Duration::from_secs(5400)
        );
    }

    #[test]
    fn a_short_admin_password_is_refused_before_anything_starts() {
        for bad in ["", "short", "elevenchars"] {
            let err = Settings::from_layer(SettingsLayer {
                admin_password: Some(Secret::new(bad)),
                ..SettingsLayer::default()
            })
            .unwrap_err();
            assert!(
                err.0.contains("admin_password") && err.0.contains("12 characters"),
                "{err}"
            );
        }
        let env =
            SettingsLayer::from_env([("SLUICE_ADMIN_PASSWORD".to_owned(), String::new())]).unwrap();
        assert!(Settings::from_layer(env).is_err());
        assert!(
            Settings::from_layer(SettingsLayer {
                admin_password: Some(Secret::new("twelve chars")),
                ..SettingsLayer::default()
            })
            .is_ok()
        );
    }

    #[test]
    fn trusted_proxies_are_ranges() {
        let settings = Settings::from_layer(SettingsLayer::default()).unwrap();
        assert!(
            settings.trusted_proxies.is_empty(),
            "no proxy is trusted by default"
        );
        let env = SettingsLayer::from_env([(
            "SLUICE_TRUSTED_PROXIES".to_owned(),
            "10.0.0.0/8, ::1".to_owned(),
        )])
        .unwrap();
        let settings = Settings::from_layer(env).unwrap();
        assert_eq!(settings.trusted_proxies.len(), 2);
        assert!(settings.trusted_proxies[0].contains("10.9.8.7".parse().unwrap()));
        let file: SettingsLayer = toml::from_str("trusted_proxies = [\"10.0.0.0/99\"]").unwrap();
        let err = Settings::from_layer(file).unwrap_err();
        assert!(err.0.starts_with("trusted_proxies"), "{err}");
    }
}
