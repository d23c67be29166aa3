//! Authentication and authorisation.
//!
//! - Passwords are hashed with argon2id; API tokens are 256 random bits shown once and stored as
//!   SHA-256 hashes, with an expiry, revocable.
//! - Every route's access rule is declared once, in the OpenAPI document (`security` with the
//!   roles as scopes); the [`authorize`] middleware enforces exactly what the document says.
//!   Routes without a declaration are anonymous only if they are in [`PUBLIC_ROUTES`]; any other
//!   undeclared route is refused (fail closed).
//! - Failed logins are limited per account and address together, per account and per address,
//!   in the database so replicas share the counts; the decision is [`LoginLimiter::verdict`], a
//!   pure function (docs/security.md, "Login limits and account containment").
//! - The client address is the socket's peer, or what `X-Forwarded-For` says only when the peer
//!   is a configured trusted proxy ([`client_address`]).

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::fmt;
use std::net::{IpAddr, SocketAddr};
use std::str::FromStr;
use std::time::Duration;

use argon2::Argon2;
use argon2::password_hash::{PasswordHash, PasswordHasher, PasswordVerifier, SaltString};
use axum::extract::{MatchedPath, Request, State};
use axum::http::{HeaderMap, Method, header};
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

/// The shortest password accepted, in characters, for every account including the first admin.
pub const MIN_PASSWORD_CHARS: usize = 12;

/// The one password rule, applied to user creation, password resets and the first admin's
/// configured password: why `password` is refused, if it is.
pub fn check_password(password: &str) -> Result<(), String> {
    if password.chars().count() < MIN_PASSWORD_CHARS {
        return Err(format!("at least {MIN_PASSWORD_CHARS} characters"));
    }
    Ok(())
}

/// Making a secret or a password hash failed. Not an HTTP error: the services that make
/// credentials (accounts, agents) say what it means for their caller.
#[derive(Debug, thiserror::Error)]
pub enum CredentialError {
    /// The system's random source failed.
    #[error("random source: {0}")]
    Random(getrandom::Error),
    /// The password hasher failed.
    #[error("password hash: {0}")]
    Hash(argon2::password_hash::Error),
}

/// Hashes a password with argon2id and a random salt.
pub fn hash_password(password: &str) -> Result<String, CredentialError> {
    let mut salt = [0u8; 16];
    getrandom::fill(&mut salt).map_err(CredentialError::Random)?;
    let salt = SaltString::encode_b64(&salt).map_err(CredentialError::Hash)?;
    Argon2::default()
        .hash_password(password.as_bytes(), &salt)
        .map(|h| h.to_string())
        .map_err(CredentialError::Hash)
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
pub fn new_token() -> Result<(String, String), CredentialError> {
    new_secret(TOKEN_PREFIX)
}

/// A new secret with `prefix` (256 random bits) and the hash that is stored for it.
pub fn new_secret(prefix: &str) -> Result<(String, String), CredentialError> {
    let mut bytes = [0u8; 32];
    getrandom::fill(&mut bytes).map_err(CredentialError::Random)?;
    let secret = format!("{prefix}{}", hex(&bytes));
    let hash = token_hash(&secret);
    Ok((secret, hash))
}

/// A random password for the first admin: 24 characters from an unambiguous alphabet.
pub fn new_password() -> Result<String, CredentialError> {
    const ALPHABET: &[u8] = b"abcdefghijkmnpqrstuvwxyzABCDEFGHJKLMNPQRSTUVWXYZ23456789";
    let mut bytes = [0u8; 24];
    getrandom::fill(&mut bytes).map_err(CredentialError::Random)?;
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

    /// The rule for a route (`HEAD` follows `GET`).
    pub fn get(&self, method: &Method, path: &str) -> Option<&Access> {
        let method = if method == Method::HEAD {
            &Method::GET
        } else {
            method
        };
        self.0.get(&(method.clone(), path.to_owned()))
    }

    /// The methods a route declares, for the `Allow` header of a 405.
    pub fn methods(&self, path: &str) -> Vec<&Method> {
        let mut methods: Vec<&Method> = self
            .0
            .keys()
            .filter(|(_, p)| p == path)
            .map(|(m, _)| m)
            .collect();
        methods.sort_by_key(|m| m.as_str());
        methods
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
        // A route that exists with other methods: the method is wrong, not the caller.
        let allowed = route
            .as_deref()
            .map(|route| state.access.methods(route))
            .unwrap_or_default();
        if !allowed.is_empty() {
            let allow: Vec<&str> = allowed.iter().map(|m| m.as_str()).collect();
            let mut response = ApiError::with_status(
                axum::http::StatusCode::METHOD_NOT_ALLOWED,
                format!(
                    "{} is not allowed here; allowed: {}",
                    request.method(),
                    allow.join(", ")
                ),
            )
            .into_response();
            if let Ok(value) = axum::http::HeaderValue::from_str(&allow.join(", ")) {
                response.headers_mut().insert(header::ALLOW, value);
            }
            return response;
        }
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
        .and_then(bearer)
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

/// The credentials of an `Authorization: Bearer …` header. The scheme is case-insensitive
/// (RFC 9110, section 11.1), so `bearer` and `BEARER` work too.
pub fn bearer(header: &str) -> Option<&str> {
    let (scheme, credentials) = header.trim().split_once([' ', '\t'])?;
    scheme
        .eq_ignore_ascii_case("bearer")
        .then(|| credentials.trim())
        .filter(|c| !c.is_empty())
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
    let secret = bearer(header)
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

/// An address range in CIDR notation (`10.0.0.0/8`, `2001:db8::/32`, or one address).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Cidr {
    network: IpAddr,
    prefix: u8,
}

impl Cidr {
    /// Whether `ip` is in the range (an IPv4-mapped IPv6 address counts as its IPv4 address).
    pub fn contains(&self, ip: IpAddr) -> bool {
        match (self.network, ip.to_canonical()) {
            (IpAddr::V4(net), IpAddr::V4(ip)) => {
                let mask = u32::MAX
                    .checked_shl(32 - u32::from(self.prefix))
                    .unwrap_or(0);
                u32::from(net) & mask == u32::from(ip) & mask
            }
            (IpAddr::V6(net), IpAddr::V6(ip)) => {
                let mask = u128::MAX
                    .checked_shl(128 - u32::from(self.prefix))
                    .unwrap_or(0);
                u128::from(net) & mask == u128::from(ip) & mask
            }
            _ => false,
        }
    }
}

impl FromStr for Cidr {
    type Err = String;

    fn from_str(text: &str) -> Result<Self, String> {
        let bad = || format!("{text:?} is not an address or a range such as 10.0.0.0/8");
        let (address, prefix) = match text.trim().split_once('/') {
            Some((address, prefix)) => (address, Some(prefix)),
            None => (text.trim(), None),
        };
        let network = address.parse::<IpAddr>().map_err(|_| bad())?.to_canonical();
        let bits = if network.is_ipv4() { 32 } else { 128 };
        let prefix = match prefix {
            None => bits,
            Some(prefix) => prefix
                .parse::<u8>()
                .ok()
                .filter(|p| *p <= bits)
                .ok_or_else(bad)?,
        };
        Ok(Self { network, prefix })
    }
}

impl fmt::Display for Cidr {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.network, self.prefix)
    }
}

/// The client's address: the socket's peer, unless the peer is a trusted proxy, in which case
/// `X-Forwarded-For` is read from the right (the hop nearest to us) and the first address that
/// is not a trusted proxy is the client. A header from an untrusted peer is ignored, so a client
/// cannot choose its own address; an unreadable entry stops the walk at the last trusted hop.
pub fn client_address(
    peer: Option<IpAddr>,
    headers: &HeaderMap,
    trusted: &[Cidr],
) -> Option<IpAddr> {
    let mut client = peer?.to_canonical();
    let is_trusted = |ip: IpAddr| trusted.iter().any(|range| range.contains(ip));
    if !is_trusted(client) {
        return Some(client);
    }
    let hops: Vec<&str> = headers
        .get_all("x-forwarded-for")
        .iter()
        .filter_map(|value| value.to_str().ok())
        .flat_map(|value| value.split(','))
        .map(str::trim)
        .collect();
    for hop in hops.iter().rev() {
        if !is_trusted(client) {
            break;
        }
        let Some(ip) = parse_hop(hop) else { break };
        client = ip;
    }
    Some(client)
}

/// One `X-Forwarded-For` entry: an address, possibly with a port (`[::1]:80`, `1.2.3.4:80`).
fn parse_hop(hop: &str) -> Option<IpAddr> {
    hop.parse::<IpAddr>()
        .or_else(|_| hop.parse::<SocketAddr>().map(|s| s.ip()))
        .ok()
        .map(|ip| ip.to_canonical())
}

/// The key an address is counted under: an IPv4 address, or the /64 of an IPv6 address (one
/// IPv6 host usually holds a whole /64, so counting single addresses would let it rotate).
pub fn address_key(ip: IpAddr) -> String {
    match ip.to_canonical() {
        IpAddr::V4(ip) => ip.to_string(),
        IpAddr::V6(ip) => {
            let network = u128::from(ip) & (u128::MAX << 64);
            format!("{}/64", std::net::Ipv6Addr::from(network))
        }
    }
}

/// The key an account is counted under: the lower-cased name, or a digest of a name too long
/// to be one (no account has it; storing it whole would let one request store megabytes).
pub fn account_key(username: &str) -> String {
    let lower = username.to_lowercase();
    if lower.len() <= 64 {
        lower
    } else {
        format!("#{}", &token_hash(&lower)[..32])
    }
}

/// One login attempt, as the limiter counts it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct LoginAttempt {
    /// [`account_key`] of the name tried.
    pub account: String,
    /// [`address_key`] of the client, when known.
    pub address: Option<String>,
}

impl LoginAttempt {
    /// The attempt of `username` from `client`.
    pub fn new(username: &str, client: Option<IpAddr>) -> Self {
        Self {
            account: account_key(username),
            address: client.map(address_key),
        }
    }

    fn address_text(&self) -> &str {
        self.address.as_deref().unwrap_or("")
    }
}

/// Which limit a login hit.
#[derive(
    Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, serde::Serialize, serde::Deserialize,
)]
#[serde(rename_all = "snake_case")]
pub enum LockScope {
    /// This account from this address.
    AccountAddress,
    /// This account from addresses it has not logged in from.
    Account,
    /// This address for accounts that have not logged in from it.
    Address,
}

impl LockScope {
    /// The name used in audit events and listings.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::AccountAddress => "account_address",
            Self::Account => "account",
            Self::Address => "address",
        }
    }
}

/// A refused attempt: which limit, and how long until it lifts.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Lock {
    /// The limit reached.
    pub scope: LockScope,
    /// Seconds until the attempt would be counted again.
    pub retry_after: u64,
}

/// What the store says about recent failures relevant to one attempt: for each limit, the
/// failure whose leaving the window lifts it, if there are more than the limit.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct FailureRecord {
    /// This account from this address.
    pub account_address: Option<jiff::Timestamp>,
    /// This account from anywhere.
    pub account: Option<jiff::Timestamp>,
    /// This address, any account.
    pub address: Option<jiff::Timestamp>,
    /// Whether the account logged in from this address recently.
    pub known_address: bool,
}

/// How long an address counts as the account's own after a successful login from it.
pub const KNOWN_ADDRESS_FOR: Duration = Duration::from_secs(30 * 86_400);

/// How many times the per-account-and-address limit the account-wide and address-wide limits are.
pub const WIDE_LIMIT_FACTOR: u32 = 4;

/// Failed-login limits. The state is in the database (shared by replicas); this holds the
/// policy: `max_failures` per window for one account from one address, and
/// [`WIDE_LIMIT_FACTOR`] times that for one account from anywhere and for one address on any
/// account. The wide limits spare an account's known addresses (a successful login in the last
/// [`KNOWN_ADDRESS_FOR`]): failures from elsewhere, or by others behind the same address, cannot
/// lock out a user where they usually log in.
#[derive(Clone, Debug)]
pub struct LoginLimiter {
    per_account_address: u32,
    per_account: u32,
    per_address: u32,
    window: Duration,
}

impl LoginLimiter {
    /// A limiter allowing `max_failures` per `window` per account and address.
    pub fn new(max_failures: u32, window: Duration) -> Self {
        let max_failures = max_failures.max(1);
        Self {
            per_account_address: max_failures,
            per_account: max_failures.saturating_mul(WIDE_LIMIT_FACTOR),
            per_address: max_failures.saturating_mul(WIDE_LIMIT_FACTOR),
            window,
        }
    }

    /// The limit of a scope.
    pub fn limit(&self, scope: LockScope) -> u32 {
        match scope {
            LockScope::AccountAddress => self.per_account_address,
            LockScope::Account => self.per_account,
            LockScope::Address => self.per_address,
        }
    }

    /// The failure window.
    pub fn window(&self) -> Duration {
        self.window
    }

    fn window_start(&self, now: jiff::Timestamp) -> jiff::Timestamp {
        jiff::SignedDuration::try_from(self.window)
            .ok()
            .and_then(|span| now.checked_sub(span).ok())
            .unwrap_or(jiff::Timestamp::MIN)
    }

    /// Whether an attempt is refused now, and by which limit (the one lifting last). Pure: the
    /// record and the time are given.
    pub fn verdict(&self, record: &FailureRecord, now: jiff::Timestamp) -> Option<Lock> {
        let wait = |nth: Option<jiff::Timestamp>| {
            let nth = nth?;
            let lifts = nth
                .checked_add(jiff::SignedDuration::try_from(self.window).ok()?)
                .ok()?;
            let seconds = now.duration_until(lifts).as_secs();
            (seconds >= 0).then(|| u64::try_from(seconds).unwrap_or(0).max(1))
        };
        let mut locks = vec![(LockScope::AccountAddress, wait(record.account_address))];
        if !record.known_address {
            locks.push((LockScope::Account, wait(record.account)));
            locks.push((LockScope::Address, wait(record.address)));
        }
        locks
            .into_iter()
            .filter_map(|(scope, wait)| {
                Some(Lock {
                    scope,
                    retry_after: wait?,
                })
            })
            .max_by_key(|lock| lock.retry_after)
    }

    /// Counts `attempt` as a failure, then decides with it counted: admitted (the answer is the
    /// id of its row, which a success forgets and a failure keeps) or refused (its row is
    /// forgotten: a refused attempt does not extend the lock). Counting before deciding means
    /// concurrent guesses cannot all slip under a limit.
    pub async fn admit(
        &self,
        store: &sluice_store::Store,
        attempt: &LoginAttempt,
        now: jiff::Timestamp,
    ) -> Result<Result<String, Lock>, sluice_store::StoreError> {
        use sluice_store::LoginScope;
        let since = self.window_start(now);
        let address = attempt.address_text();
        let id = store
            .begin_login_attempt(&attempt.account, address, now, since)
            .await?;
        // With this attempt counted, a limit of N is exceeded when an (N+1)-th failure exists;
        // it lifts when that one (the N-th before this attempt) leaves the window.
        let mut record = FailureRecord {
            account_address: store
                .nth_recent_login_failure(
                    LoginScope::Pair {
                        account: &attempt.account,
                        address,
                    },
                    since,
                    self.per_account_address.saturating_add(1),
                )
                .await?,
            ..FailureRecord::default()
        };
        if let Some(address) = &attempt.address {
            let known_since = jiff::SignedDuration::try_from(KNOWN_ADDRESS_FOR)
                .ok()
                .and_then(|span| now.checked_sub(span).ok())
                .unwrap_or(jiff::Timestamp::MIN);
            record.known_address = store
                .login_address_known(&attempt.account, address, known_since)
                .await?;
            if !record.known_address {
                record.address = store
                    .nth_recent_login_failure(
                        LoginScope::Address(address),
                        since,
                        self.per_address.saturating_add(1),
                    )
                    .await?;
            }
        }
        if !record.known_address {
            record.account = store
                .nth_recent_login_failure(
                    LoginScope::Account(&attempt.account),
                    since,
                    self.per_account.saturating_add(1),
                )
                .await?;
        }
        match self.verdict(&record, now) {
            None => Ok(Ok(id)),
            Some(lock) => {
                store.forget_login_attempt(&id).await?;
                Ok(Err(lock))
            }
        }
    }

    /// After a success: this account's failures from this address are forgotten, and the
    /// address becomes one of the account's known addresses.
    pub async fn succeed(
        &self,
        store: &sluice_store::Store,
        attempt: &LoginAttempt,
        now: jiff::Timestamp,
    ) -> Result<(), sluice_store::StoreError> {
        store
            .record_login_success(&attempt.account, attempt.address_text(), now)
            .await
    }

    /// The limits reached now, from the failures per account and address in the window.
    pub fn locks(&self, groups: &[sluice_store::LoginFailureGroup]) -> Vec<CurrentLock> {
        let mut locks = Vec::new();
        let mut per_account: BTreeMap<&str, (u64, &str)> = BTreeMap::new();
        let mut per_address: BTreeMap<&str, (u64, &str)> = BTreeMap::new();
        for group in groups {
            if group.failures >= u64::from(self.per_account_address) {
                locks.push(CurrentLock {
                    scope: LockScope::AccountAddress,
                    account: Some(group.account.clone()),
                    address: (!group.address.is_empty()).then(|| group.address.clone()),
                    failures: group.failures,
                    limit: self.per_account_address,
                    last_failure_at: group.last_at.clone(),
                });
            }
            let entry = per_account.entry(&group.account).or_insert((0, ""));
            entry.0 += group.failures;
            entry.1 = if *group.last_at > *entry.1 {
                &group.last_at
            } else {
                entry.1
            };
            if !group.address.is_empty() {
                let entry = per_address.entry(&group.address).or_insert((0, ""));
                entry.0 += group.failures;
                entry.1 = if *group.last_at > *entry.1 {
                    &group.last_at
                } else {
                    entry.1
                };
            }
        }
        for (account, (failures, last)) in per_account {
            if failures >= u64::from(self.per_account) {
                locks.push(CurrentLock {
                    scope: LockScope::Account,
                    account: Some(account.to_owned()),
                    address: None,
                    failures,
                    limit: self.per_account,
                    last_failure_at: last.to_owned(),
                });
            }
        }
        for (address, (failures, last)) in per_address {
            if failures >= u64::from(self.per_address) {
                locks.push(CurrentLock {
                    scope: LockScope::Address,
                    account: None,
                    address: Some(address.to_owned()),
                    failures,
                    limit: self.per_address,
                    last_failure_at: last.to_owned(),
                });
            }
        }
        locks
    }

    /// The start of the window at `now`, for listing.
    pub fn since(&self, now: jiff::Timestamp) -> jiff::Timestamp {
        self.window_start(now)
    }
}

/// A limit reached now, as listed for admins.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize, utoipa::ToSchema)]
pub struct CurrentLock {
    /// Which limit.
    #[schema(value_type = String)]
    pub scope: LockScope,
    /// The account, for account and account-and-address locks.
    pub account: Option<String>,
    /// The address key, for address and account-and-address locks (absent: unknown address).
    pub address: Option<String>,
    /// Failures in the window.
    pub failures: u64,
    /// The limit reached.
    pub limit: u32,
    /// The latest failure.
    pub last_failure_at: String,
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

    fn at(seconds: i64) -> jiff::Timestamp {
        jiff::Timestamp::from_second(1_800_000_000 + seconds).unwrap()
    }

    #[test]
    fn the_limiter_blocks_after_the_allowed_failures() {
        let limiter = LoginLimiter::new(3, Duration::from_secs(60));
        // The third most recent failure of this account from this address was at 0 s: blocked
        // until it leaves the window, even for the right password.
        let record = FailureRecord {
            account_address: Some(at(0)),
            ..FailureRecord::default()
        };
        assert_eq!(
            limiter.verdict(&record, at(10)),
            Some(Lock {
                scope: LockScope::AccountAddress,
                retry_after: 50
            })
        );
        assert_eq!(limiter.verdict(&record, at(61)), None);
        assert_eq!(limiter.verdict(&FailureRecord::default(), at(10)), None);
    }

    #[test]
    fn wide_limits_spare_known_addresses_and_the_longest_wait_wins() {
        let limiter = LoginLimiter::new(5, Duration::from_secs(900));
        assert_eq!(limiter.limit(LockScope::Account), 20);
        assert_eq!(limiter.limit(LockScope::Address), 20);
        let mut record = FailureRecord {
            account: Some(at(100)),
            address: Some(at(0)),
            ..FailureRecord::default()
        };
        assert_eq!(
            limiter.verdict(&record, at(200)),
            Some(Lock {
                scope: LockScope::Account,
                retry_after: 800
            })
        );
        record.known_address = true;
        assert_eq!(limiter.verdict(&record, at(200)), None);
        record.account_address = Some(at(150));
        assert_eq!(
            limiter.verdict(&record, at(200)).map(|l| l.scope),
            Some(LockScope::AccountAddress),
            "the account-and-address limit holds even where the user is known"
        );
    }

    #[test]
    fn bearer_is_case_insensitive() {
        assert_eq!(bearer("Bearer slc_x"), Some("slc_x"));
        assert_eq!(bearer("bearer slc_x"), Some("slc_x"));
        assert_eq!(bearer("BEARER   slc_x "), Some("slc_x"));
        assert_eq!(bearer("Basic slc_x"), None);
        assert_eq!(bearer("Bearer"), None);
        assert_eq!(bearer("Bearerslc_x"), None);
    }

    #[test]
    fn forwarded_addresses_are_believed_only_from_trusted_proxies() {
        let trusted: Vec<Cidr> = vec!["10.0.0.0/8".parse().unwrap(), "::1".parse().unwrap()];
        let mut headers = HeaderMap::new();
        headers.insert(
            "x-forwarded-for",
            "198.51.100.1, 203.0.113.7, 10.1.1.1".parse().unwrap(),
        );
        let ip = |s: &str| Some(s.parse::<IpAddr>().unwrap());
        // An untrusted peer's header is ignored.
        assert_eq!(
            client_address(ip("192.0.2.9"), &headers, &trusted),
            ip("192.0.2.9")
        );
        // From a trusted proxy: the first untrusted hop from the right, not the left-most entry
        // the client wrote itself.
        assert_eq!(
            client_address(ip("10.0.0.1"), &headers, &trusted),
            ip("203.0.113.7")
        );
        assert_eq!(
            client_address(ip("::1"), &headers, &trusted),
            ip("203.0.113.7")
        );
        assert_eq!(
            client_address(ip("10.0.0.1"), &headers, &[]),
            ip("10.0.0.1")
        );
        headers.insert("x-forwarded-for", "garbage, 10.2.2.2".parse().unwrap());
        assert_eq!(
            client_address(ip("10.0.0.1"), &headers, &trusted),
            ip("10.2.2.2")
        );
        assert_eq!(client_address(None, &headers, &trusted), None);
    }

    #[test]
    fn ranges_and_keys() {
        let range: Cidr = "192.168.0.0/16".parse().unwrap();
        assert!(range.contains("192.168.4.5".parse().unwrap()));
        assert!(range.contains("::ffff:192.168.4.5".parse().unwrap()));
        assert!(!range.contains("192.169.0.1".parse().unwrap()));
        assert!(
            "0.0.0.0/0"
                .parse::<Cidr>()
                .unwrap()
                .contains("8.8.8.8".parse().unwrap())
        );
        assert!("10.0.0.0/33".parse::<Cidr>().is_err());
        assert!("localhost".parse::<Cidr>().is_err());
        assert_eq!(
            address_key("2001:db8:1:2:3:4:5:6".parse().unwrap()),
            "2001:db8:1:2::/64"
        );
        assert_eq!(address_key("::ffff:1.2.3.4".parse().unwrap()), "1.2.3.4");
        assert_eq!(account_key("Alice"), "alice");
        assert_eq!(account_key(&"x".repeat(5000)).len(), 33);
    }

    #[test]
    fn the_password_rule() {
        assert!(check_password("").is_err());
        assert!(check_password("elevenchars").is_err());
        assert!(check_password("twelve chars").is_ok());
    }

    #[test]
    fn the_listing_shows_each_limit_reached() {
        let limiter = LoginLimiter::new(2, Duration::from_secs(60));
        let group = |account: &str, address: &str, failures| sluice_store::LoginFailureGroup {
            account: account.to_owned(),
            address: address.to_owned(),
            failures,
            last_at: "2026-01-01T00:00:00.000000Z".to_owned(),
        };
        let locks = limiter.locks(&[
            group("alice", "192.0.2.1", 2),
            group("alice", "192.0.2.2", 1),
            group("bob", "192.0.2.1", 1),
            group("carol", "198.51.100.1", 8),
        ]);
        let shown: Vec<_> = locks
            .iter()
            .map(|l| (l.scope, l.account.as_deref(), l.address.as_deref()))
            .collect();
        assert_eq!(
            shown,
            [
                (LockScope::AccountAddress, Some("alice"), Some("192.0.2.1")),
                (
                    LockScope::AccountAddress,
                    Some("carol"),
                    Some("198.51.100.1")
                ),
                (LockScope::Account, Some("carol"), None),
                (LockScope::Address, None, Some("198.51.100.1")),
            ]
        );
    }
}
