//! The API client side of the CLI: stored credentials and authenticated requests.
//!
//! `sluice login` keeps the server URL and token in `$XDG_CONFIG_HOME/sluice/credentials.json`
//! (usually `~/.config/sluice/`), created with mode 0600. `SLUICE_SERVER` and `SLUICE_TOKEN`
//! override it, for automation.

use std::path::PathBuf;

use anyhow::{Context, Result, bail};
use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};
use serde_json::Value;
use sluice_protocol::problem::Problem;

/// What `sluice login` stores.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Credentials {
    /// Server base URL.
    pub server: String,
    /// User name.
    pub username: String,
    /// The token secret.
    pub token: String,
    /// When it expires.
    pub expires_at: String,
}

/// Where credentials live.
pub fn credentials_path() -> Result<PathBuf> {
    let base = dirs::config_dir()
        .context("cannot find the user's config directory (set HOME or XDG_CONFIG_HOME)")?;
    Ok(base.join("sluice").join("credentials.json"))
}

/// Reads stored credentials, if any.
pub fn load_credentials() -> Result<Option<Credentials>> {
    let path = credentials_path()?;
    match std::fs::read_to_string(&path) {
        Ok(text) => {
            Ok(Some(serde_json::from_str(&text).with_context(|| {
                format!("{} is not valid", path.display())
            })?))
        }
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(e).with_context(|| format!("cannot read {}", path.display())),
    }
}

/// Stores credentials readable by the user only.
pub fn save_credentials(credentials: &Credentials) -> Result<PathBuf> {
    let path = credentials_path()?;
    let dir = path.parent().context("credentials path has no directory")?;
    std::fs::create_dir_all(dir).with_context(|| format!("cannot create {}", dir.display()))?;
    let temporary = path.with_extension("json.tmp");
    {
        let mut options = std::fs::OpenOptions::new();
        options.write(true).create(true).truncate(true);
        #[cfg(unix)]
        {
            use std::os::unix::fs::OpenOptionsExt;
            options.mode(0o600);
        }
        let mut file = options
            .open(&temporary)
            .with_context(|| format!("cannot write {}", temporary.display()))?;
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            file.set_permissions(std::fs::Permissions::from_mode(0o600))?;
        }
        use std::io::Write;
        file.write_all(serde_json::to_string_pretty(credentials)?.as_bytes())?;
        file.sync_all()?;
    }
    std::fs::rename(&temporary, &path)?;
    Ok(path)
}

/// Server selection shared by client commands.
#[derive(Debug, Clone, clap::Args)]
pub struct ServerArgs {
    /// Server URL (default: the one `sluice login` stored, or SLUICE_SERVER).
    #[arg(long, value_name = "URL", env = "SLUICE_SERVER")]
    pub server: Option<String>,
}

/// An authenticated API client.
pub struct Client {
    base: String,
    token: Option<String>,
    http: reqwest::Client,
    runtime: tokio::runtime::Runtime,
}

impl Client {
    /// A client for the chosen server, with the stored or given token.
    pub fn new(args: &ServerArgs) -> Result<Self> {
        let stored = load_credentials()?;
        let base = args
            .server
            .clone()
            .or_else(|| stored.as_ref().map(|c| c.server.clone()))
            .context("no server: log in with `sluice login --server URL` or pass --server")?;
        let base = normalise(&base)?;
        let token = std::env::var("SLUICE_TOKEN").ok().or_else(|| {
            stored
                .filter(|c| normalise(&c.server).ok().as_deref() == Some(base.as_str()))
                .map(|c| c.token)
        });
        Self::with(base, token)
    }

    /// A client for a base URL and optional token.
    pub fn with(base: String, token: Option<String>) -> Result<Self> {
        Ok(Self {
            base,
            token,
            http: sluice_server::tls::client_builder()
                .map_err(anyhow::Error::msg)?
                .timeout(std::time::Duration::from_secs(60))
                .build()?,
            runtime: tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()?,
        })
    }

    /// The server's base URL.
    pub fn base(&self) -> &str {
        &self.base
    }

    /// Sends a request and returns the JSON answer, or the server's problem as an error.
    pub fn send(&self, method: reqwest::Method, path: &str, body: Option<&Value>) -> Result<Value> {
        let text = self.exchange(method, path, body, None)?;
        Ok(serde_json::from_str(&text).unwrap_or(Value::String(text)))
    }

    /// Sends a change with a fresh `Idempotency-Key` and retries it once when the connection
    /// fails: the server answers a retry with the first answer, so the change is never made
    /// twice even if the first attempt did arrive.
    pub fn send_idempotent(
        &self,
        method: reqwest::Method,
        path: &str,
        body: Option<&Value>,
    ) -> Result<Value> {
        let text = self.exchange_idempotent(method, path, body)?;
        Ok(serde_json::from_str(&text).unwrap_or(Value::String(text)))
    }

    fn exchange_idempotent<B: Serialize + ?Sized>(
        &self,
        method: reqwest::Method,
        path: &str,
        body: Option<&B>,
    ) -> Result<String> {
        let mut bytes = [0u8; 16];
        getrandom::fill(&mut bytes).context("no randomness for an Idempotency-Key")?;
        let key: String = bytes.iter().map(|b| format!("{b:02x}")).collect();
        match self.exchange(method.clone(), path, body, Some(&key)) {
            Err(error) if error.downcast_ref::<Retryable>().is_some() => {
                std::thread::sleep(std::time::Duration::from_secs(1));
                self.exchange(method, path, body, Some(&key))
            }
            other => other,
        }
    }

    /// GET, returning the answer's text as it came (CSV, for instance).
    pub fn get_text(&self, path: &str) -> Result<String> {
        self.exchange(reqwest::Method::GET, path, None::<&()>, None)
    }

    /// Sends a typed request body (or none) and reads the answer as a protocol type.
    pub fn call<B: Serialize + ?Sized, T: DeserializeOwned>(
        &self,
        method: reqwest::Method,
        path: &str,
        body: Option<&B>,
    ) -> Result<T> {
        let text = self.exchange(method.clone(), path, body, None)?;
        parse(&method, path, &text)
    }

    /// [`Client::call`] with a fresh `Idempotency-Key` and one retry when the connection fails
    /// (see [`Client::send_idempotent`]).
    pub fn call_idempotent<B: Serialize + ?Sized, T: DeserializeOwned>(
        &self,
        method: reqwest::Method,
        path: &str,
        body: Option<&B>,
    ) -> Result<T> {
        let text = self.exchange_idempotent(method.clone(), path, body)?;
        parse(&method, path, &text)
    }

    /// GET, read as a protocol type.
    pub fn get_as<T: DeserializeOwned>(&self, path: &str) -> Result<T> {
        self.call(reqwest::Method::GET, path, None::<&()>)
    }

    /// POST a typed body, read the answer as a protocol type.
    pub fn post_as<B: Serialize + ?Sized, T: DeserializeOwned>(
        &self,
        path: &str,
        body: &B,
    ) -> Result<T> {
        self.call(reqwest::Method::POST, path, Some(body))
    }

    fn exchange<B: Serialize + ?Sized>(
        &self,
        method: reqwest::Method,
        path: &str,
        body: Option<&B>,
        idempotency_key: Option<&str>,
    ) -> Result<String> {
        let url = format!("{}{path}", self.base);
        let mut request = self.http.request(method.clone(), &url);
        if let Some(token) = &self.token {
            request = request.bearer_auth(token);
        }
        if let Some(key) = idempotency_key {
            request = request.header("Idempotency-Key", key);
        }
        if let Some(body) = body {
            request = request.json(body);
        }
        self.runtime.block_on(async {
            let response = match request.send().await {
                Ok(response) => response,
                Err(error) => {
                    return Err(anyhow::Error::new(Retryable(error)))
                        .with_context(|| format!("cannot reach {url}"));
                }
            };
            let status = response.status();
            let text = response.text().await.unwrap_or_default();
            if status.is_success() {
                return Ok(text);
            }
            let problem = serde_json::from_str::<Problem>(&text).ok();
            let detail = problem.as_ref().map_or(text.trim(), |p| p.detail.as_str());
            if status == reqwest::StatusCode::UNAUTHORIZED {
                bail!("{method} {path}: not logged in or the token is no longer valid ({detail}); run `sluice login`");
            }
            bail!("{method} {path}: {status}: {detail}")
        })
    }

    /// Follows a server-sent events stream from `after` (sent as `Last-Event-ID`), calling
    /// `on_event(event, id, data)` for each event until it returns true (true is returned) or
    /// the server ends the stream (false).
    pub fn events(
        &self,
        path: &str,
        after: Option<i64>,
        mut on_event: impl FnMut(&str, Option<&str>, &str) -> bool,
    ) -> Result<bool> {
        let url = format!("{}{path}", self.base);
        // No overall timeout: a stream lasts as long as the rollout.
        let http = sluice_server::tls::client_builder()
            .map_err(anyhow::Error::msg)?
            .connect_timeout(std::time::Duration::from_secs(10))
            .build()?;
        let mut request = http.get(&url).header("Accept", "text/event-stream");
        if let Some(token) = &self.token {
            request = request.bearer_auth(token);
        }
        if let Some(after) = after {
            request = request.header("Last-Event-ID", after.to_string());
        }
        self.runtime.block_on(async {
            let mut response = request
                .send()
                .await
                .with_context(|| format!("cannot reach {url}"))?;
            let status = response.status();
            if !status.is_success() {
                let text = response.text().await.unwrap_or_default();
                let problem = serde_json::from_str::<Problem>(&text).ok();
                bail!(
                    "GET {path}: {status}: {}",
                    problem.as_ref().map_or(text.trim(), |p| p.detail.as_str())
                );
            }
            let mut buffer = String::new();
            let (mut event, mut id, mut data) = (String::new(), None::<String>, String::new());
            while let Some(chunk) = response.chunk().await? {
                buffer.push_str(&String::from_utf8_lossy(&chunk));
                while let Some(end) = buffer.find('\n') {
                    let line: String = buffer.drain(..=end).collect();
                    let line = line.trim_end_matches(['\n', '\r']);
                    if line.is_empty() {
                        if !data.is_empty() || !event.is_empty() {
                            let kind = if event.is_empty() {
                                "message"
                            } else {
                                event.as_str()
                            };
                            if on_event(kind, id.as_deref(), &data) {
                                return Ok(true);
                            }
                        }
                        event.clear();
                        data.clear();
                        id = None;
                    } else if let Some(value) = line.strip_prefix("event:") {
                        event = value.trim_start().to_owned();
                    } else if let Some(value) = line.strip_prefix("data:") {
                        if !data.is_empty() {
                            data.push('\n');
                        }
                        data.push_str(value.strip_prefix(' ').unwrap_or(value));
                    } else if let Some(value) = line.strip_prefix("id:") {
                        id = Some(value.trim().to_owned());
                    }
                }
            }
            Ok(false)
        })
    }

    /// GET.
    pub fn get(&self, path: &str) -> Result<Value> {
        self.send(reqwest::Method::GET, path, None)
    }
}

/// Reads an answer as a protocol type; a mismatch names the route, so a renamed field is
/// reported as what it is.
fn parse<T: DeserializeOwned>(method: &reqwest::Method, path: &str, text: &str) -> Result<T> {
    // An empty answer (204) reads as JSON null: `()` and `Option`s accept it.
    let text = if text.trim().is_empty() { "null" } else { text };
    serde_json::from_str(text).with_context(|| format!("{method} {path}: unexpected answer"))
}

/// A failure worth one retry: the request or its answer was lost on the way.
#[derive(Debug)]
struct Retryable(reqwest::Error);

impl std::fmt::Display for Retryable {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        self.0.fmt(f)
    }
}

impl std::error::Error for Retryable {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        std::error::Error::source(&self.0)
    }
}

fn normalise(url: &str) -> Result<String> {
    let url = url.trim().trim_end_matches('/');
    if url.starts_with("https://") {
        return Ok(url.to_owned());
    }
    if !url.starts_with("http://") {
        return Ok(format!("http://{url}"));
    }
    Ok(url.to_owned())
}

/// Prints rows as aligned columns.
pub fn print_table(header: &[&str], rows: &[Vec<String>]) {
    let mut widths: Vec<usize> = header.iter().map(|h| h.len()).collect();
    for row in rows {
        for (width, cell) in widths.iter_mut().zip(row) {
            *width = (*width).max(cell.chars().count());
        }
    }
    let line = |cells: Vec<String>| {
        cells
            .iter()
            .zip(&widths)
            .map(|(c, w)| format!("{c:<w$}"))
            .collect::<Vec<_>>()
            .join("  ")
            .trim_end()
            .to_owned()
    };
    println!("{}", line(header.iter().map(|h| (*h).to_owned()).collect()));
    for row in rows {
        println!("{}", line(row.clone()));
    }
}
