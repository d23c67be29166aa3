//! Authentication and authorisation.
//!
//! - Passwords are hashed with argon2id; API tokens are 256 random bits shown once and stored as
//!   SHA-256 hashes, with an expiry, revocable.
//! - Every route's access rule is declared once, in the OpenAPI document (`security` with the
//!   roles as scopes); the [`authorize`] middleware enforces exactly what the document says.
//!   Routes without a declaration are anonymous only if they are in [`PUBLIC_ROUTES`]; any other
//!   undeclared route is refused (fail closed).
//! - Failed logins are rate-limited per user name and per client address, and audited.

use std::collections::{BTreeSet, HashMap};
use std::net::IpAddr;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use argon2::Argon2;
use argon2::password_hash::{PasswordHash, PasswordHasher, PasswordVerifier, SaltString};
use axum::extract::{MatchedPath, Request, State};
use axum::http::{Method, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use sha2::{Digest, Sha256};
use sluice_core::access::{Role, Roles};

use crate::error::ApiError;
use crate::state::AppState;

/// The prefix of Sluice API tokens, so leaked ones are recognisable by secret scanners.
pub const TOKEN_PREFIX: &str = "slc_";

/// The prefix of agent access tokens: a different prefix, so an agent token is never mistaken
/// for a user's and is accepted only on agent routes.
pub const AGENT_TOKEN_PREFIX: &str = "slca_";

/// Routes served without authentication.
pub const PUBLIC_ROUTES: &[(&str, &str)] = &[
    ("GET", "/healthz"),
    ("GET", "/readyz"),
    ("GET", "/metrics"),
    ("GET", "/api/v1/openapi.json"),
    ("POST", "/api/v1/login"),
    // The agent's way in: each needs a one-time enrollment token or a signature by an enrolled
    // key in its body.
    ("POST", "/api/v1/agent/enroll"),
    ("POST", "/api/v1/agent/challenge"),
    ("POST", "/api/v1/agent/token"),
];

/// Hashes a password with argon2id and a random salt.
pub fn hash_password(password: &str) -> Result<String, ApiError> {
    let mut salt = [0u8; 16];
    getrandom::fill(&mut salt).map_err(ApiError::internal)?;
    let salt = SaltString::encode_b64(&salt).map_err(ApiError::internal)?;
    Argon2::default()
        .hash_password(password.as_bytes(), &salt)
        .map(|h| h.to_string())
        .map_err(ApiError::internal)
}

/// Whether `password` matches a stored argon2 hash.
pub fn verify_password(password: &str, stored: &str) -> bool {
    PasswordHash::new(stored)
        .map(|parsed| {
            Argon2::default()
                .verify_password(password.as_bytes(), &parsed)
                .is_ok()
        })
        .unwrap_or(false)
}

/// A new token secret and the hash that is stored for it.
pub fn new_token() -> Result<(String, String), ApiError> {
    new_secret(TOKEN_PREFIX)
}

/// A new secret with `prefix` (256 random bits) and the hash that is stored for it.
pub fn new_secret(prefix: &str) -> Result<(String, String), ApiError> {
    let mut bytes = [0u8; 32];
    getrandom::fill(&mut bytes).map_err(ApiError::internal)?;
    let secret = format!("{prefix}{}", hex(&bytes));
    let hash = token_hash(&secret);
    Ok((secret, hash))
}

/// A random password for the first admin: 24 characters from an unambiguous alphabet.
pub fn new_password() -> Result<String, ApiError> {
    const ALPHABET: &[u8] = b"abcdefghijkmnpqrstuvwxyzABCDEFGHJKLMNPQRSTUVWXYZ23456789";
    let mut bytes = [0u8; 24];
    getrandom::fill(&mut bytes).map_err(ApiError::internal)?;
    Ok(bytes
        .iter()
        .map(|b| ALPHABET[usize::from(*b) % ALPHABET.len()] as char)
        .collect())
}

/// SHA-256 of a token secret, hex.
pub fn token_hash(secret: &str) -> String {
    hex(&Sha256::digest(secret.as_bytes()))
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// Who is calling, once authenticated.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Principal {
    /// User id.
    pub user_id: String,
    /// User name.
    pub username: String,
    /// Roles of the token (at most the user's).
    pub roles: Roles,
    /// The token's id.
    pub token_id: String,
    /// The request id.
    pub request_id: String,
}

impl Principal {
    /// The actor for the audit chain.
    pub fn actor(&self) -> sluice_store::Actor {
        sluice_store::Actor::named(&self.username, Some(&self.request_id))
    }

    /// Whether the principal holds a role.
    pub fn has(&self, role: Role) -> bool {
        self.roles.contains(&role)
    }
}

/// An enrolled agent, authenticated by its short-lived access token.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct AgentPrincipal {
    /// The agent.
    pub agent: sluice_store::Agent,
    /// The request id.
    pub request_id: String,
}

impl AgentPrincipal {
    /// The actor for the audit chain: `agent:HOST`.
    pub fn actor(&self) -> sluice_store::Actor {
        sluice_store::Actor::named(
            &format!("agent:{}", self.agent.hostname),
            Some(&self.request_id),
        )
    }
}

/// What a route requires, as read from the OpenAPI document.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Access {
    /// No authentication.
    Public,
    /// An agent access token (security scheme `agent`); user tokens are refused.
    Agent,
    /// Any valid token.
    Authenticated,
    /// A token holding one of these roles.
    AnyOf(BTreeSet<Role>),
}

/// Access rules per (method, route template).
#[derive(Clone, Debug, Default)]
pub struct AccessTable(HashMap<(Method, String), Access>);

impl AccessTable {
    /// Builds the table from the OpenAPI document's security requirements.
    pub fn from_openapi(api: &utoipa::openapi::OpenApi) -> Result<Self, String> {
        let mut table = HashMap::new();
        for (path, item) in &api.paths.paths {
            let operations = [
                (Method::GET, &item.get),
                (Method::POST, &item.post),
                (Method::PUT, &item.put),
                (Method::PATCH, &item.patch),
                (Method::DELETE, &item.delete),
            ];
            for (method, operation) in operations {
                let Some(operation) = operation else { continue };
                let access = match &operation.security {
                    None => {
                        if PUBLIC_ROUTES.contains(&(method.as_str(), path.as_str())) {
                            Access::Public
                        } else {
                            return Err(format!(
                                "{method} {path} declares no security and is not a public route"
                            ));
                        }
                    }
                    Some(requirements) => {
                        let value =
                            serde_json::to_value(requirements).map_err(|e| e.to_string())?;
                        let agent_only = value
                            .as_array()
                            .into_iter()
                            .flatten()
                            .any(|req| req.get("agent").is_some());
                        if agent_only {
                            table.insert((method, path.clone()), Access::Agent);
                            continue;
                        }
                        let scopes: Vec<String> = value
                            .as_array()
                            .into_iter()
                            .flatten()
                            .filter_map(|req| req.get("token"))
                            .filter_map(|scopes| scopes.as_array())
                            .flatten()
                            .filter_map(|s| s.as_str().map(str::to_owned))
                            .collect();
                        if scopes.is_empty() {
                            Access::Authenticated
                        } else {
                            let roles = scopes
                                .iter()
                                .map(|s| {
                                    s.parse::<Role>()
                                        .map_err(|e| format!("{method} {path}: {e}"))
                                })
                                .collect::<Result<BTreeSet<_>, _>>()?;
                            Access::AnyOf(roles)
                        }
                    }
                };
                table.insert((method, path.clone()), access);
            }
        }
        Ok(Self(table))
    }

    /// The rule for a route.
    pub fn get(&self, method: &Method, path: &str) -> Option<&Access> {
        self.0.get(&(method.clone(), path.to_owned()))
    }
}

/// Authenticates the caller and enforces the route's declared access.
pub async fn authorize(
    State(state): State<AppState>,
    mut request: Request,
    next: Next,
) -> Response {
    let request_id = request
        .headers()
        .get("x-request-id")
        .and_then(|v| v.to_str().ok())
        .map(str::to_owned)
        .unwrap_or_default();
    let route = request
        .extensions()
        .get::<MatchedPath>()
        .map(|p| p.as_str().to_owned());
    let access = match &route {
        // Unmatched paths fall through to the 404 handler; nothing is served there.
        None => return next.run(request).await,
        Some(route) => {
            if route == "/metrics" && !state.settings.metrics_public {
                Some(Access::Authenticated)
            } else if PUBLIC_ROUTES.contains(&(request.method().as_str(), route.as_str()))
                || route.starts_with("/api/docs")
            {
                Some(Access::Public)
            } else {
                state.access.get(request.method(), route).cloned()
            }
        }
    };
    let Some(access) = access else {
        return ApiError::forbidden("this route declares no access rule").into_response();
    };
    if access == Access::Public {
        return next.run(request).await;
    }
    let authorization = request
        .headers()
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .map(str::to_owned);
    let agent_token = authorization
        .as_deref()
        .and_then(|h| h.strip_prefix("Bearer "))
        .map(str::trim)
        .filter(|t| t.starts_with(AGENT_TOKEN_PREFIX));
    if access == Access::Agent {
        let Some(secret) = agent_token else {
            return match authorization {
                None => {
                    ApiError::unauthenticated("an agent access token is required").into_response()
                }
                Some(_) => ApiError::forbidden("this route is for agents: user tokens are refused")
                    .into_response(),
            };
        };
        return match authenticate_agent(&state, secret, request_id).await {
            Ok(principal) => {
                request.extensions_mut().insert(principal);
                next.run(request).await
            }
            Err(error) => error.into_response(),
        };
    }
    if agent_token.is_some() {
        return ApiError::forbidden("agent tokens are accepted on agent routes only")
            .into_response();
    }
    let principal = match authenticate(&state, authorization.as_deref(), request_id).await {
        Ok(principal) => principal,
        Err(error) => return error.into_response(),
    };
    if let Access::AnyOf(roles) = &access
        && !roles.iter().any(|r| principal.has(*r))
    {
        let needed: Vec<&str> = roles.iter().map(|r| r.as_str()).collect();
        return ApiError::forbidden(format!(
            "this needs one of the roles: {}",
            needed.join(", ")
        ))
        .into_response();
    }
    request.extensions_mut().insert(principal);
    next.run(request).await
}

async fn authenticate_agent(
    state: &AppState,
    secret: &str,
    request_id: String,
) -> Result<AgentPrincipal, ApiError> {
    let (agent, expires) = state
        .store
        .agent_by_token(&token_hash(secret))
        .await?
        .ok_or_else(|| ApiError::unauthenticated("unknown or revoked agent token"))?;
    if agent.revoked_at.is_some() {
        return Err(ApiError::unauthenticated("the agent was revoked"));
    }
    let expires: jiff::Timestamp = expires
        .parse()
        .map_err(|e| ApiError::internal(format!("stored expiry of an agent token: {e}")))?;
    if expires <= jiff::Timestamp::now() {
        return Err(ApiError::unauthenticated(
            "the agent token has expired: sign a new challenge",
        ));
    }
    Ok(AgentPrincipal { agent, request_id })
}

async fn authenticate(
    state: &AppState,
    authorization: Option<&str>,
    request_id: String,
) -> Result<Principal, ApiError> {
    let header = authorization
        .ok_or_else(|| ApiError::unauthenticated("a bearer token is required (sluice login)"))?;
    let secret = header
        .strip_prefix("Bearer ")
        .map(str::trim)
        .filter(|s| s.starts_with(TOKEN_PREFIX))
        .ok_or_else(|| ApiError::unauthenticated("expected \"Authorization: Bearer slc_…\""))?;
    let token = state
        .store
        .token_by_hash(&token_hash(secret))
        .await?
        .ok_or_else(|| ApiError::unauthenticated("unknown token"))?;
    if token.revoked_at.is_some() {
        return Err(ApiError::unauthenticated("the token was revoked"));
    }
    if token.owner_disabled {
        return Err(ApiError::unauthenticated("the token's user is disabled"));
    }
    let expires: jiff::Timestamp = token
        .expires_at
        .parse()
        .map_err(|e| ApiError::internal(format!("stored expiry of token {}: {e}", token.id)))?;
    if expires <= jiff::Timestamp::now() {
        return Err(ApiError::unauthenticated("the token has expired"));
    }
    Ok(Principal {
        user_id: token.user_id,
        username: token.username,
        roles: token.roles,
        token_id: token.id,
        request_id,
    })
}

/// Failed-login bookkeeping per key (user name, client address), in memory per replica.
#[derive(Clone, Debug)]
pub struct LoginLimiter {
    failures: Arc<Mutex<HashMap<String, Vec<Instant>>>>,
    max_failures: u32,
    window: Duration,
}

impl LoginLimiter {
    /// A limiter allowing `max_failures` per `window` per key.
    pub fn new(max_failures: u32, window: Duration) -> Self {
        Self {
            failures: Arc::default(),
            max_failures,
            window,
        }
    }

    /// Seconds until the key may try again, if it is blocked now.
    pub fn blocked(&self, keys: &[String], now: Instant) -> Option<u64> {
        let mut failures = self.failures.lock().unwrap_or_else(|e| e.into_inner());
        keys.iter()
            .filter_map(|key| {
                let list = failures.get_mut(key)?;
                list.retain(|t| now.duration_since(*t) < self.window);
                if list.len() >= self.max_failures as usize {
                    let oldest = list.first()?;
                    Some((self.window - now.duration_since(*oldest)).as_secs().max(1))
                } else {
                    None
                }
            })
            .max()
    }

    /// Records a failure for each key.
    pub fn fail(&self, keys: &[String], now: Instant) {
        let mut failures = self.failures.lock().unwrap_or_else(|e| e.into_inner());
        for key in keys {
            failures.entry(key.clone()).or_default().push(now);
        }
    }

    /// Clears a user name's failures after a success.
    pub fn succeed(&self, key: &str) {
        let mut failures = self.failures.lock().unwrap_or_else(|e| e.into_inner());
        failures.remove(key);
    }
}

/// The rate-limit keys for a login attempt.
pub fn login_keys(username: &str, client: Option<IpAddr>) -> Vec<String> {
    let mut keys = vec![format!("user:{}", username.to_ascii_lowercase())];
    if let Some(ip) = client {
        keys.push(format!("ip:{ip}"));
    }
    keys
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn passwords_hash_and_verify() {
        let hash = hash_password("correct horse").unwrap();
        assert!(hash.starts_with("$argon2id$"));
        assert!(verify_password("correct horse", &hash));
        assert!(!verify_password("wrong", &hash));
        assert!(!verify_password("x", "not a hash"));
    }

    #[test]
    fn tokens_are_random_and_stored_hashed() {
        let (a, hash_a) = new_token().unwrap();
        let (b, _) = new_token().unwrap();
        assert_ne!(a, b);
        assert!(a.starts_with(TOKEN_PREFIX) && a.len() == TOKEN_PREFIX.len() + 64);
        assert_eq!(token_hash(&a), hash_a);
        assert!(!hash_a.contains(&a[4..]));
    }

    #[test]
    fn the_limiter_blocks_after_the_allowed_failures() {
        let limiter = LoginLimiter::new(3, Duration::from_secs(60));
        let keys = login_keys("Alice", None);
        let start = Instant::now();
        for _ in 0..3 {
            assert_eq!(limiter.blocked(&keys, start), None);
            limiter.fail(&keys, start);
        }
        assert!(limiter.blocked(&keys, start).is_some());
        assert_eq!(
            limiter.blocked(&keys, start + Duration::from_secs(61)),
            None
        );
        limiter.fail(&keys, start);
        limiter.succeed("user:alice");
        assert_eq!(limiter.blocked(&keys, start), None);
    }
}
