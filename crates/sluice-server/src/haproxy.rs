//! A client for HAProxy's runtime API (the stats socket at `level admin`), so a rollout can
//! send only a small share of traffic to a canary host: while the canary soaks after its update
//! the rollout shifts its weight down (`set weight web/web2 10%`), and back to 100% once it has
//! proven itself; a host about to be updated can be drained first and made ready afterwards.
//!
//! One command per connection, HAProxy's non-interactive mode: write `command\n`, read the
//! answer until HAProxy closes, all within a timeout. HAProxy answers a successful `set`
//! with an empty line and a refusal with plain text (`No such backend.`, `No such server.`,
//! `Require 'backend/server'.`, `Permission denied`), so any text is a refusal. Backend and
//! server names are checked against HAProxy's own name characters before anything is sent: no
//! space, newline or `;` can smuggle in a second command.

use std::fmt;
use std::io;
use std::path::PathBuf;
use std::str::FromStr;
use std::time::Duration;

use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::net::{TcpStream, UnixStream};

/// Answers longer than this are cut: the commands used here answer in one line.
const MAX_ANSWER: u64 = 64 * 1024;

/// Where HAProxy's runtime API listens.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum RuntimeAddress {
    /// A Unix socket (`stats socket /run/haproxy/admin.sock level admin`).
    Unix(PathBuf),
    /// A TCP `host:port` (`stats socket ipv4@127.0.0.1:9999 level admin`).
    Tcp(String),
}

impl FromStr for RuntimeAddress {
    type Err = HaproxyError;

    /// `unix:/path`, a path starting with `/`, or `host:port` (`[::1]:9999` for IPv6).
    fn from_str(text: &str) -> Result<Self, Self::Err> {
        let invalid = |reason: &'static str| HaproxyError::Address {
            address: text.to_owned(),
            reason,
        };
        if let Some(path) = text.strip_prefix("unix:") {
            if !path.starts_with('/') {
                return Err(invalid("a unix: socket path must be absolute"));
            }
            return Ok(Self::Unix(PathBuf::from(path)));
        }
        if text.starts_with('/') {
            return Ok(Self::Unix(PathBuf::from(text)));
        }
        let (host, port) = text
            .rsplit_once(':')
            .ok_or_else(|| invalid("expected unix:/path, /path or host:port"))?;
        if host.is_empty() || host.chars().any(char::is_whitespace) {
            return Err(invalid("the host is empty or contains whitespace"));
        }
        if host.contains(':') && !(host.starts_with('[') && host.ends_with(']')) {
            return Err(invalid("an IPv6 address goes in brackets: [::1]:9999"));
        }
        match port.parse::<u16>() {
            Ok(p) if p > 0 => Ok(Self::Tcp(text.to_owned())),
            _ => Err(invalid("the port must be a number from 1 to 65535")),
        }
    }
}

impl fmt::Display for RuntimeAddress {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Unix(path) => write!(f, "unix:{}", path.display()),
            Self::Tcp(address) => f.write_str(address),
        }
    }
}

/// A server's administrative state, as `set server <b>/<s> state` sets it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ServerState {
    /// Takes traffic.
    Ready,
    /// Keeps its current connections and persistent sessions but gets no new traffic.
    Drain,
    /// Maintenance: no traffic at all, health checks stop.
    Maint,
}

impl ServerState {
    /// The word HAProxy expects.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Ready => "ready",
            Self::Drain => "drain",
            Self::Maint => "maint",
        }
    }
}

/// A server's weights, as `get weight` reports them.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Weights {
    /// The weight in effect.
    pub current: u32,
    /// The weight from the configuration, which percentages are relative to.
    pub initial: u32,
}

/// What went wrong talking to HAProxy.
#[derive(Debug, thiserror::Error)]
pub enum HaproxyError {
    /// The configured address cannot be used.
    #[error("HAProxy runtime API address {address:?}: {reason}")]
    Address {
        /// The address as written.
        address: String,
        /// Why it is refused.
        reason: &'static str,
    },
    /// A backend or server name HAProxy would not accept, refused before sending.
    #[error("HAProxy {what} name {name:?}: {reason}")]
    Name {
        /// `backend` or `server`.
        what: &'static str,
        /// The name as given.
        name: String,
        /// Why it is refused.
        reason: &'static str,
    },
    /// No connection to the runtime API.
    #[error("HAProxy runtime API at {address}: cannot connect: {source}")]
    Connect {
        /// Where.
        address: String,
        /// The connection error.
        source: io::Error,
    },
    /// Connected, but sending the command or reading the answer failed.
    #[error("HAProxy runtime API at {address}: {command:?}: {source}")]
    Io {
        /// Where.
        address: String,
        /// The command.
        command: String,
        /// The I/O error.
        source: io::Error,
    },
    /// HAProxy did not answer in time.
    #[error("HAProxy runtime API at {address}: no answer to {command:?} within {timeout:?}")]
    Timeout {
        /// Where.
        address: String,
        /// The command.
        command: String,
        /// The limit.
        timeout: Duration,
    },
    /// HAProxy refused the command; `answer` is its own text.
    #[error("HAProxy refused {command:?}: {answer}")]
    Refused {
        /// The command.
        command: String,
        /// HAProxy's answer.
        answer: String,
    },
    /// An answer in a shape this client does not know.
    #[error("HAProxy answered {command:?} with {answer:?}, expected {expected}")]
    Unexpected {
        /// The command.
        command: String,
        /// HAProxy's answer.
        answer: String,
        /// What was expected.
        expected: &'static str,
    },
}

/// A connection recipe for one HAProxy's runtime API.
#[derive(Clone, Debug)]
pub struct HaproxyRuntime {
    address: RuntimeAddress,
    timeout: Duration,
}

impl HaproxyRuntime {
    /// A client for `address`; each command (connect, send, answer) must finish within `timeout`.
    pub fn new(address: RuntimeAddress, timeout: Duration) -> Self {
        Self { address, timeout }
    }

    /// Where it connects.
    pub fn address(&self) -> &RuntimeAddress {
        &self.address
    }

    /// Sets `backend/server`'s weight to `percent` of its initial weight (HAProxy rounds down:
    /// 10% of an initial weight of 1 is 0, so give canary servers a weight like 100).
    pub async fn set_weight(
        &self,
        backend: &str,
        server: &str,
        percent: u8,
    ) -> Result<(), HaproxyError> {
        let target = target(backend, server)?;
        self.set(format!("set weight {target} {percent}%")).await
    }

    /// `backend/server`'s current and initial weights.
    pub async fn weight(&self, backend: &str, server: &str) -> Result<Weights, HaproxyError> {
        let command = format!("get weight {}", target(backend, server)?);
        let answer = self.send(&command).await?;
        parse_weights(&answer).ok_or_else(|| {
            // A known refusal ("No such server.") has no digits where the weight would be.
            if answer.starts_with(|c: char| c.is_ascii_digit()) {
                HaproxyError::Unexpected {
                    command: command.clone(),
                    answer: answer.clone(),
                    expected: "`<current> (initial <initial>)`",
                }
            } else {
                HaproxyError::Refused {
                    command: command.clone(),
                    answer: answer.clone(),
                }
            }
        })
    }

    /// Sets `backend/server`'s administrative state.
    pub async fn set_state(
        &self,
        backend: &str,
        server: &str,
        state: ServerState,
    ) -> Result<(), HaproxyError> {
        let target = target(backend, server)?;
        self.set(format!("set server {target} state {}", state.as_str()))
            .await
    }

    /// Runs a command whose success is an empty answer.
    async fn set(&self, command: String) -> Result<(), HaproxyError> {
        let answer = self.send(&command).await?;
        if !answer.is_empty() {
            return Err(HaproxyError::Refused { command, answer });
        }
        tracing::info!(address = %self.address, %command, "HAProxy runtime API command applied");
        Ok(())
    }

    /// Sends one command on a fresh connection; returns the answer without surrounding
    /// whitespace (HAProxy ends every answer with an empty line).
    async fn send(&self, command: &str) -> Result<String, HaproxyError> {
        let address = self.address.to_string();
        let exchange = async {
            match &self.address {
                RuntimeAddress::Unix(path) => {
                    let stream = UnixStream::connect(path).await.map_err(|source| {
                        HaproxyError::Connect {
                            address: address.clone(),
                            source,
                        }
                    })?;
                    exchange(stream, command, &address).await
                }
                RuntimeAddress::Tcp(host_port) => {
                    let stream =
                        TcpStream::connect(host_port.as_str())
                            .await
                            .map_err(|source| HaproxyError::Connect {
                                address: address.clone(),
                                source,
                            })?;
                    exchange(stream, command, &address).await
                }
            }
        };
        tokio::time::timeout(self.timeout, exchange)
            .await
            .map_err(|_| HaproxyError::Timeout {
                address: address.clone(),
                command: command.to_owned(),
                timeout: self.timeout,
            })?
    }
}

async fn exchange<S: AsyncRead + AsyncWrite + Unpin>(
    mut stream: S,
    command: &str,
    address: &str,
) -> Result<String, HaproxyError> {
    let io_error = |source| HaproxyError::Io {
        address: address.to_owned(),
        command: command.to_owned(),
        source,
    };
    stream
        .write_all(format!("{command}\n").as_bytes())
        .await
        .map_err(io_error)?;
    let mut answer = Vec::new();
    (&mut stream)
        .take(MAX_ANSWER)
        .read_to_end(&mut answer)
        .await
        .map_err(io_error)?;
    Ok(String::from_utf8_lossy(&answer).trim().to_owned())
}

/// `backend/server`, once both names are ones HAProxy accepts.
fn target(backend: &str, server: &str) -> Result<String, HaproxyError> {
    check_name("backend", backend)?;
    check_name("server", server)?;
    Ok(format!("{backend}/{server}"))
}

/// HAProxy's rule for proxy and server names: letters, digits, `-`, `_`, `.` and `:`. That
/// leaves out whitespace, `/` and `;` (the runtime API's command separator).
fn check_name(what: &'static str, name: &str) -> Result<(), HaproxyError> {
    let reason = if name.is_empty() {
        "empty"
    } else if !name
        .chars()
        .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.' | ':'))
    {
        "only letters, digits, '-', '_', '.' and ':' are allowed"
    } else {
        return Ok(());
    };
    Err(HaproxyError::Name {
        what,
        name: name.to_owned(),
        reason,
    })
}

/// `10 (initial 100)` → 10 and 100.
fn parse_weights(answer: &str) -> Option<Weights> {
    let (current, rest) = answer.split_once(" (initial ")?;
    let initial = rest.strip_suffix(')')?;
    Some(Weights {
        current: current.parse().ok()?,
        initial: initial.parse().ok()?,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn addresses() {
        let cases = [
            (
                "unix:/run/haproxy/admin.sock",
                Some(RuntimeAddress::Unix("/run/haproxy/admin.sock".into())),
            ),
            (
                "/run/haproxy/admin.sock",
                Some(RuntimeAddress::Unix("/run/haproxy/admin.sock".into())),
            ),
            (
                "127.0.0.1:9999",
                Some(RuntimeAddress::Tcp("127.0.0.1:9999".to_owned())),
            ),
            (
                "lb-1.example.com:9999",
                Some(RuntimeAddress::Tcp("lb-1.example.com:9999".to_owned())),
            ),
            (
                "[::1]:9999",
                Some(RuntimeAddress::Tcp("[::1]:9999".to_owned())),
            ),
            ("unix:admin.sock", None),
            ("admin.sock", None),
            ("lb-1:", None),
            (":9999", None),
            ("lb-1:0", None),
            ("lb-1:http", None),
            ("::1:9999", None),
        ];
        for (text, expected) in cases {
            match (text.parse::<RuntimeAddress>(), expected) {
                (Ok(address), Some(expected)) => assert_eq!(address, expected, "{text}"),
                (Err(e), None) => assert!(e.to_string().contains(&format!("{text:?}")), "{e}"),
                (got, expected) => panic!("{text}: got {got:?}, expected {expected:?}"),
            }
        }
        assert_eq!(
            RuntimeAddress::Unix("/run/a.sock".into()).to_string(),
            "unix:/run/a.sock"
        );
    }

    #[test]
    fn names_that_could_inject_a_command_are_refused() {
        assert_eq!(target("web", "web-2.a_b:1").unwrap(), "web/web-2.a_b:1");
        for (backend, server) in [
            ("web", "web2\nset weight web/web1 0%"),
            ("web", "web2;shutdown sessions server web/web1"),
            ("web", "a/b"),
            ("web", "web 2"),
            ("web/x", "web2"),
            ("", "web2"),
            ("web", ""),
        ] {
            let e = target(backend, server).unwrap_err();
            assert!(
                matches!(e, HaproxyError::Name { .. }),
                "{backend}/{server}: {e}"
            );
        }
    }

    #[test]
    fn weights_answers() {
        assert_eq!(
            parse_weights("10 (initial 100)"),
            Some(Weights {
                current: 10,
                initial: 100
            })
        );
        assert_eq!(parse_weights("No such server."), None);
        assert_eq!(parse_weights("10 (initial x)"), None);
        assert_eq!(parse_weights("10"), None);
    }
}
