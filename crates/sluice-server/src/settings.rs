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
    /// Open connections served at once; more are closed as they arrive.
    pub max_connections: Option<usize>,
    /// Open connections from one client address at once (0: no per-address limit, for a
    /// server that only a proxy talks to).
    pub max_connections_per_client: Option<usize>,
    /// Time a client has to send a request's headers, and to start its next request on a
    /// kept-alive connection, e.g. `30s` (keep it above clients' idle-connection reuse time:
    /// Sluice's own clients reuse for 20 s).
    pub header_read_timeout: Option<String>,
    /// Host names (with or without port) the server answers to; others get 421. Empty: any
    /// name, except that a server listening on loopback answers only to loopback names.
    pub allowed_hosts: Option<Vec<String>>,
    /// Directories local feed sources may be read from (default: the data directory's
    /// `feeds/` on SQLite, none on PostgreSQL).
    pub feed_dirs: Option<Vec<PathBuf>>,
    /// Largest feed content read from one source, in bytes.
    pub feed_max_bytes: Option<u64>,
    /// Whether HTTP feed sources may be link-local or cloud metadata addresses.
    pub feed_allow_link_local: Option<bool>,
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
                "MAX_CONNECTIONS" => {
                    layer.max_connections =
                        Some(value.parse().map_err(|_| bad("expected a whole number"))?);
                }
                "MAX_CONNECTIONS_PER_CLIENT" => {
                    layer.max_connections_per_client =
                        Some(value.parse().map_err(|_| bad("expected a whole number"))?);
                }
                "HEADER_READ_TIMEOUT" => layer.header_read_timeout = Some(value),
                "ALLOWED_HOSTS" => {
                    layer.allowed_hosts = Some(comma_list(&value));
                }
                "TRUSTED_PROXIES" => {
                    layer.trusted_proxies = Some(comma_list(&value));
                }
                // A list like PATH: directories separated by ':'; empty means none.
                "FEED_DIRS" => {
                    layer.feed_dirs = Some(
                        std::env::split_paths(&value)
                            .filter(|p| !p.as_os_str().is_empty())
                            .collect(),
                    );
                }
                "FEED_MAX_BYTES" => {
                    layer.feed_max_bytes = Some(
                        value
                            .parse()
                            .map_err(|_| bad("expected a number of bytes"))?,
                    );
                }
                "FEED_ALLOW_LINK_LOCAL" => {
                    layer.feed_allow_link_local =
                        Some(parse_bool(&value).ok_or_else(|| bad("expected true or false"))?);
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
            max_connections: over.max_connections.or(self.max_connections),
            max_connections_per_client: over
                .max_connections_per_client
                .or(self.max_connections_per_client),
            header_read_timeout: over.header_read_timeout.or(self.header_read_timeout),
            allowed_hosts: over.allowed_hosts.or(self.allowed_hosts),
            feed_dirs: over.feed_dirs.or(self.feed_dirs),
            feed_max_bytes: over.feed_max_bytes.or(self.feed_max_bytes),
            feed_allow_link_local: over.feed_allow_link_local.or(self.feed_allow_link_local),
            trusted_proxies: over.trusted_proxies.or(self.trusted_proxies),
        }
    }
}

/// `a, b,,c` → `["a", "b", "c"]`: a list in one environment variable.
fn comma_list(text: &str) -> Vec<String> {
    text.split(',')
        .map(str::trim)
        .filter(|item| !item.is_empty())
        .map(str::to_owned)
        .collect()
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
    /// How many connections are served, and how long a client may dawdle.
    pub connections: ConnectionLimits,
    /// Host names the server answers to (lower case, without port); empty: see
    /// [`Settings::host_allowed`].
    pub allowed_hosts: Vec<String>,
    /// Where feeds may come from and how much of them is read.
    pub feeds: FeedPolicy,
    /// Peers whose `X-Forwarded-For` is believed (default none: the socket's peer is the client).
    pub trusted_proxies: Vec<crate::auth::Cidr>,
}

/// Limits on connections, so idle or half-sent requests cannot exhaust file descriptors.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ConnectionLimits {
    /// Open connections at once.
    pub max_total: usize,
    /// Open connections from one client address (0: no limit).
    pub max_per_client: usize,
    /// Time to send a request's headers, and to start the next request on an idle connection.
    pub header_read_timeout: Duration,
}

impl Settings {
    /// Whether a request's `Host` (name or address, port ignored) may be answered. With no
    /// `allowed_hosts`, a server listening on a loopback address answers only to loopback names,
    /// so a web page cannot reach it through a rebound DNS name; any other server answers to
    /// every name. A request without a host (HTTP/1.0) is answered: browsers always send one.
    pub fn host_allowed(&self, host: Option<&str>) -> bool {
        let Some(host) = host.map(host_without_port) else {
            return true;
        };
        let host = host.to_ascii_lowercase();
        if !self.allowed_hosts.is_empty() {
            return self.allowed_hosts.contains(&host);
        }
        if !self.listen.ip().is_loopback() {
            return true;
        }
        host == "localhost"
            || host.ends_with(".localhost")
            || host
                .trim_start_matches('[')
                .trim_end_matches(']')
                .parse::<std::net::IpAddr>()
                .is_ok_and(|ip| ip.is_loopback())
    }
}

/// `example.org:8470` → `example.org`; `[::1]:8470` → `[::1]`; `::1` stays.
fn host_without_port(host: &str) -> &str {
    let host = host.trim();
    if let Some(end) = host.find(']') {
        return &host[..=end];
    }
    match host.rsplit_once(':') {
        Some((name, port)) if !name.contains(':') && port.bytes().all(|b| b.is_ascii_digit()) => {
            name
        }
        _ => host,
    }
}

/// Where feed content may come from: a feed source names a file the server reads or a URL it
/// fetches on behalf of `security` users, so both are fenced (see `intel::source`).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct FeedPolicy {
    /// Local sources must lie inside one of these directories (after resolving symlinks).
    pub dirs: Vec<PathBuf>,
    /// No source is read beyond this many bytes.
    pub max_bytes: u64,
    /// Whether HTTP sources may resolve to link-local or cloud metadata addresses.
    pub allow_link_local: bool,
}

impl FeedPolicy {
    /// The default cap on one feed's content: the largest real feeds (an osv.dev ecosystem
    /// zip) are tens of MiB.
    pub const DEFAULT_MAX_BYTES: u64 = 256 * 1024 * 1024;
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
        let max_connections = layer.max_connections.unwrap_or(4096);
        if max_connections < 16 {
            return Err(SettingsError("max_connections: at least 16".to_owned()));
        }
        let header_read_timeout = parse_duration(
            "header_read_timeout",
            layer.header_read_timeout.as_deref().unwrap_or("30s"),
        )?;
        let allowed_hosts = layer
            .allowed_hosts
            .unwrap_or_default()
            .iter()
            .map(|host| host_without_port(host).to_ascii_lowercase())
            .collect();
        let feed_dirs = match layer.feed_dirs {
            Some(dirs) => dirs,
            // Replicas on PostgreSQL share no data directory (nor a file system): local feed
            // sources are off unless directories are named.
            None => match database {
                Database::Sqlite(_) => vec![data_dir.join("feeds")],
                Database::Postgres(_) => Vec::new(),
            },
        };
        let feed_max_bytes = layer
            .feed_max_bytes
            .unwrap_or(FeedPolicy::DEFAULT_MAX_BYTES);
        if feed_max_bytes < 1024 {
            return Err(SettingsError("feed_max_bytes: at least 1024".to_owned()));
        }
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
            connections: ConnectionLimits {
                max_total: max_connections,
                max_per_client: layer.max_connections_per_client.unwrap_or(256),
                header_read_timeout,
            },
            allowed_hosts,
            feeds: FeedPolicy {
                dirs: feed_dirs,
                max_bytes: feed_max_bytes,
                allow_link_local: layer.feed_allow_link_local.unwrap_or(false),
            },
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
    fn feed_sources_default_to_the_data_directory_or_nowhere() {
        let sqlite = Settings::from_layer(SettingsLayer {
            data_dir: Some(PathBuf::from("/var/lib/sluice")),
            ..SettingsLayer::default()
        })
        .unwrap();
        assert_eq!(
            sqlite.feeds,
            FeedPolicy {
                dirs: vec![PathBuf::from("/var/lib/sluice/feeds")],
                max_bytes: 256 * 1024 * 1024,
                allow_link_local: false,
            }
        );
        // PostgreSQL replicas have no data directory of their own: no local sources.
        let postgres = Settings::from_layer(SettingsLayer {
            data_dir: Some(PathBuf::from("/var/lib/sluice")),
            database_url: Some(Secret::new("postgres://db/sluice")),
            ..SettingsLayer::default()
        })
        .unwrap();
        assert!(postgres.feeds.dirs.is_empty());
        let env = SettingsLayer::from_env([
            (
                "SLUICE_FEED_DIRS".to_owned(),
                "/srv/feeds:/mnt/osv".to_owned(),
            ),
            ("SLUICE_FEED_MAX_BYTES".to_owned(), "1048576".to_owned()),
            ("SLUICE_FEED_ALLOW_LINK_LOCAL".to_owned(), "yes".to_owned()),
        ])
        .unwrap();
        let file: SettingsLayer =
            toml::from_str("feed_dirs = []\nfeed_max_bytes = 2048\n").unwrap();
        let merged = Settings::from_layer(file.overridden_by(env)).unwrap();
        assert_eq!(
            merged.feeds,
            FeedPolicy {
                dirs: vec![PathBuf::from("/srv/feeds"), PathBuf::from("/mnt/osv")],
                max_bytes: 1024 * 1024,
                allow_link_local: true,
            }
        );
        let none: SettingsLayer = toml::from_str("feed_dirs = []").unwrap();
        assert!(Settings::from_layer(none).unwrap().feeds.dirs.is_empty());
        let err = Settings::from_layer(SettingsLayer {
            feed_max_bytes: Some(10),
            ..SettingsLayer::default()
        })
        .unwrap_err();
        assert!(err.0.starts_with("feed_max_bytes"), "{err}");
        assert!(
            SettingsLayer::from_env([("SLUICE_FEED_MAX_BYTES".to_owned(), "lots".to_owned())])
                .is_err()
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
    fn loopback_servers_answer_only_to_loopback_names() {
        let on = |listen: &str, allowed: Option<Vec<String>>| {
            Settings::from_layer(SettingsLayer {
                listen: Some(listen.to_owned()),
                allowed_hosts: allowed,
                ..SettingsLayer::default()
            })
            .unwrap()
        };
        let local = on("127.0.0.1:8470", None);
        for host in [
            "127.0.0.1:8470",
            "localhost",
            "LOCALHOST:1",
            "[::1]:8470",
            "::1",
            "127.9.9.9",
        ] {
            assert!(local.host_allowed(Some(host)), "{host}");
        }
        for host in ["evil.example:8470", "10.0.0.1", "[2001:db8::1]:80"] {
            assert!(!local.host_allowed(Some(host)), "{host}");
        }
        assert!(local.host_allowed(None));
        let public = on("0.0.0.0:8470", None);
        assert!(public.host_allowed(Some("sluice.corp:8470")));
        let named = on("0.0.0.0:8470", Some(vec!["Sluice.Corp:8470".to_owned()]));
        assert!(named.host_allowed(Some("sluice.corp")));
        assert!(!named.host_allowed(Some("localhost:8470")));
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
