//! Login, users and API tokens, and containing an account: disabling it, resetting its
//! password, listing and revoking its tokens, lifting login locks (admin).
//!
//! Answers holding a secret (a token, a generated password) carry `Cache-Control: no-store`.

use std::net::{IpAddr, SocketAddr};

use axum::extract::{ConnectInfo, Path, Query, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::{Extension, Json};
use serde::Deserialize;
use sluice_core::access::{Role, Roles};
use sluice_core::audit::NewAuditEvent;
use sluice_protocol::accounts::{
    ClearedLock, CreateToken, CreateUser, IssuedToken, LoginRequest, PasswordReset, ResetPassword,
    TokenView, UserChange, UserView, WhoAmI,
};
use sluice_store::{Actor, NewToken, NewUser, Token, User};
use utoipa::IntoParams;

use crate::auth::{self, CurrentLock, LockScope, LoginAttempt, Principal};
use crate::error::{ApiError, ApiJson, Problem};
use crate::settings::parse_duration;
use crate::state::AppState;

/// Longest lifetime of a token made with `POST /api/v1/tokens`.
const MAX_TOKEN_DAYS: u64 = 366;

/// The API's view of a stored token (never its hash).
fn token_view(token: Token) -> TokenView {
    {
        TokenView {
            id: token.id,
            username: token.username,
            name: token.name,
            roles: token.roles,
            created_at: token.created_at,
            expires_at: token.expires_at,
            revoked_at: token.revoked_at,
            parent_id: token.parent_id,
        }
    }
}

/// The API's view of a stored user (never the password hash).
fn user_view(user: User) -> UserView {
    {
        UserView {
            id: user.id,
            username: user.username,
            roles: user.roles,
            groups: user.groups,
            created_at: user.created_at,
            disabled: user.disabled,
        }
    }
}

fn expiry_after(duration: std::time::Duration) -> Result<String, ApiError> {
    let span = jiff::SignedDuration::try_from(duration).map_err(ApiError::internal)?;
    let at = jiff::Timestamp::now()
        .checked_add(span)
        .map_err(ApiError::internal)?;
    Ok(at.strftime("%Y-%m-%dT%H:%M:%S%.6fZ").to_string())
}

/// `body` with `Cache-Control: no-store`: it holds a secret no cache may keep.
fn no_store(status: StatusCode, body: impl IntoResponse) -> Response {
    let mut response = (status, body).into_response();
    response
        .headers_mut()
        .insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    response
}

/// The request id the request-id layer gave this request.
fn request_id(headers: &HeaderMap) -> Option<String> {
    headers
        .get("x-request-id")
        .and_then(|v| v.to_str().ok())
        .map(str::to_owned)
}

/// A name from the request as it may be shown: whole when short, cut otherwise.
fn shown(name: &str) -> String {
    const LONGEST: usize = 64;
    if name.chars().count() <= LONGEST {
        name.to_owned()
    } else {
        format!("{}…", name.chars().take(LONGEST).collect::<String>())
    }
}

/// A requested token lifetime, checked.
fn token_lifetime(expires_in: &str) -> Result<std::time::Duration, ApiError> {
    let lifetime = parse_duration("expires_in", expires_in)
        .map_err(|e| ApiError::invalid_field("expires_in", e.0))?;
    if lifetime.as_secs() > MAX_TOKEN_DAYS * 86_400 {
        return Err(ApiError::invalid_field("expires_in", "at most 366 days"));
    }
    Ok(lifetime)
}

/// The roles a new token carries: those requested, which `holder` must all hold, or all of
/// the holder's.
fn token_roles(
    requested: Option<Vec<Role>>,
    holder: &Roles,
    holder_name: &str,
) -> Result<Roles, ApiError> {
    let roles: Roles = match requested {
        None => holder.clone(),
        Some(roles) => roles.into_iter().collect(),
    };
    if roles.is_empty() {
        return Err(ApiError::invalid_field("roles", "at least one role"));
    }
    if let Some(extra) = roles.iter().find(|r| !holder.contains(r)) {
        return Err(ApiError::invalid_field(
            "roles",
            format!("a token cannot carry the role {extra}, which {holder_name} does not hold"),
        ));
    }
    Ok(roles)
}

/// Exchanges a user name and password for a session token. Failed attempts are limited per
/// account and client address (see docs/security.md) and audited with the client's address.
#[utoipa::path(post, path = "/api/v1/login", tag = "accounts", request_body = LoginRequest, responses(
    (status = 200, body = IssuedToken, headers(("Cache-Control" = String, description = "no-store"))),
    (status = 401, body = Problem, description = "wrong user name or password"),
    (status = 409, body = Problem, description = "the password was reset during the login"),
    (status = 422, body = Problem),
    (status = 429, body = Problem, description = "too many failures; see Retry-After")
))]
pub async fn login(
    State(state): State<AppState>,
    connect: Option<Extension<ConnectInfo<SocketAddr>>>,
    headers: HeaderMap,
    ApiJson(request): ApiJson<LoginRequest>,
) -> Result<Response, ApiError> {
    let lifetime = match &request.expires_in {
        Some(text) => token_lifetime(text)?,
        None => state.settings.session_ttl,
    };
    let client = auth::client_address(
        connect.map(|c| c.0.0.ip()),
        &headers,
        &state.settings.trusted_proxies,
    );
    let attempt = LoginAttempt::new(&request.username, client);
    let request_id = request_id(&headers);
    let now = jiff::Timestamp::now();
    let failure = |reason: &str, limit: Option<LockScope>| {
        let mut after = serde_json::json!({
            "reason": reason,
            "client": client.map(|ip| ip.to_string()),
        });
        if let Some(limit) = limit {
            after["limit"] = limit.as_str().into();
        }
        NewAuditEvent {
            actor: "anonymous".to_owned(),
            action: "login.failure".to_owned(),
            object: format!("user:{}", shown(&request.username)),
            before: None,
            after: Some(after),
            request_id: request_id.clone(),
        }
    };
    if let Err(lock) = state.limiter.admit(&state.store, &attempt, now).await? {
        state
            .store
            .record(failure("rate limited", Some(lock.scope)))
            .await?;
        metrics::counter!("sluice_login_failures_total", "reason" => "rate_limited").increment(1);
        return Err(ApiError::too_many(
            "too many failed logins; try again later",
            lock.retry_after,
        ));
    }
    let found = state.store.user_with_hash(&request.username).await?;
    let verified = match &found {
        // The hash is checked for a disabled user too, so timing does not tell disabled users.
        Some((_, hash)) => auth::verify_password(&request.password, hash),
        None => {
            // Spend the same time as a real check, so timing does not reveal user names.
            let _ = auth::verify_password(&request.password, &DUMMY_HASH);
            false
        }
    };
    let (user, hash) = match found {
        Some((user, hash)) if verified && !user.disabled => (user, hash),
        _ => {
            let reason = if verified {
                "user disabled"
            } else {
                "bad credentials"
            };
            // The attempt was counted when admitted; it stays counted.
            state.store.record(failure(reason, None)).await?;
            metrics::counter!("sluice_login_failures_total", "reason" => "bad_credentials")
                .increment(1);
            return Err(ApiError::unauthenticated("wrong user name or password"));
        }
    };
    state.limiter.succeed(&state.store, &attempt, now).await?;
    let roles = token_roles(request.roles, &user.roles, "the user")?;
    let (secret, token_hash) = auth::new_token()?;
    let token = state
        .store
        .create_login_token(
            NewToken {
                user_id: user.id.clone(),
                name: request.token_name.unwrap_or_else(|| "login".to_owned()),
                token_hash,
                roles,
                expires_at: expiry_after(lifetime)?,
            },
            &hash,
            &Actor::named(&user.username, request_id.as_deref()),
        )
        .await?;
    Ok(no_store(
        StatusCode::OK,
        Json(IssuedToken {
            token: secret,
            record: token_view(token),
        }),
    ))
}

/// An argon2id hash of a random password, verified against when the user does not exist.
static DUMMY_HASH: std::sync::LazyLock<String> = std::sync::LazyLock::new(|| {
    auth::new_password()
        .and_then(|p| auth::hash_password(&p))
        .unwrap_or_default()
});

/// The caller's identity and roles.
#[utoipa::path(get, path = "/api/v1/whoami", tag = "accounts", security(("token" = [])), responses((status = 200, body = WhoAmI)))]
pub async fn whoami(Extension(principal): Extension<Principal>) -> Json<WhoAmI> {
    Json(WhoAmI {
        username: principal.username,
        roles: principal.roles,
        token_id: principal.token_id,
    })
}

/// All users.
#[utoipa::path(get, path = "/api/v1/users", tag = "accounts", security(("token" = ["admin"])), responses((status = 200, body = Vec<UserView>)))]
pub async fn list_users(State(state): State<AppState>) -> Result<Json<Vec<UserView>>, ApiError> {
    let users = state.store.list_users().await?;
    Ok(Json(users.into_iter().map(user_view).collect()))
}

fn valid_name(text: &str) -> bool {
    !text.is_empty()
        && text.len() <= 64
        && text.bytes().all(|b| {
            b.is_ascii_lowercase() || b.is_ascii_digit() || matches!(b, b'.' | b'_' | b'-')
        })
}

/// Creates a user (admin).
#[utoipa::path(post, path = "/api/v1/users", tag = "accounts", security(("token" = ["admin"])), request_body = CreateUser, responses(
    (status = 201, body = UserView),
    (status = 409, body = Problem, description = "the user name is taken"),
    (status = 422, body = Problem)
))]
pub async fn create_user(
    State(state): State<AppState>,
    Extension(principal): Extension<Principal>,
    ApiJson(request): ApiJson<CreateUser>,
) -> Result<(StatusCode, Json<UserView>), ApiError> {
    if !valid_name(&request.username) {
        return Err(ApiError::invalid_field(
            "username",
            "use 1 to 64 lower-case letters, digits, '.', '_' or '-'",
        ));
    }
    auth::check_password(&request.password)
        .map_err(|why| ApiError::invalid_field("password", why))?;
    if request.roles.is_empty() {
        return Err(ApiError::invalid_field("roles", "at least one role"));
    }
    if let Some(bad) = request.groups.iter().find(|g| !valid_name(g)) {
        return Err(ApiError::invalid_field(
            "groups",
            format!("group {bad:?}: use lower-case letters, digits, '.', '_' or '-'"),
        ));
    }
    let user = state
        .store
        .create_user(
            NewUser {
                username: request.username,
                password_hash: auth::hash_password(&request.password)?,
                roles: request.roles.into_iter().collect(),
                groups: request.groups,
            },
            &principal.actor(),
        )
        .await?;
    Ok((StatusCode::CREATED, Json(user_view(user))))
}

/// Token listing options.
#[derive(Debug, Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
pub struct TokenQuery {
    /// Every user's tokens (admin only); otherwise the caller's own.
    #[serde(default)]
    pub all: bool,
}

/// Tokens: the caller's own, or everyone's for an admin with `all=true`.
#[utoipa::path(get, path = "/api/v1/tokens", tag = "accounts", security(("token" = [])), params(TokenQuery), responses((status = 200, body = Vec<TokenView>)))]
pub async fn list_tokens(
    State(state): State<AppState>,
    Extension(principal): Extension<Principal>,
    Query(query): Query<TokenQuery>,
) -> Result<Json<Vec<TokenView>>, ApiError> {
    if query.all && !principal.has(Role::Admin) {
        return Err(ApiError::forbidden(
            "listing every user's tokens needs the admin role",
        ));
    }
    let owner = (!query.all).then_some(principal.user_id.as_str());
    let tokens = state.store.list_tokens(owner).await?;
    Ok(Json(tokens.into_iter().map(token_view).collect()))
}

/// Creates a token for the caller with the caller's token, e.g. for automation. The new token
/// carries at most that token's roles, expires no later than it, and is revoked with it.
#[utoipa::path(post, path = "/api/v1/tokens", tag = "accounts", security(("token" = [])), request_body = CreateToken, responses(
    (status = 201, body = IssuedToken, headers(("Cache-Control" = String, description = "no-store"))),
    (status = 422, body = Problem)
))]
pub async fn create_token(
    State(state): State<AppState>,
    Extension(principal): Extension<Principal>,
    ApiJson(request): ApiJson<CreateToken>,
) -> Result<Response, ApiError> {
    if request.name.trim().is_empty() || request.name.len() > 100 {
        return Err(ApiError::invalid_field("name", "1 to 100 characters"));
    }
    let lifetime = token_lifetime(&request.expires_in)?;
    let roles = token_roles(request.roles, &principal.roles, "the token creating it")?;
    let (secret, hash) = auth::new_token()?;
    let token = state
        .store
        .mint_token(
            NewToken {
                user_id: principal.user_id.clone(),
                name: request.name,
                token_hash: hash,
                roles,
                expires_at: expiry_after(lifetime)?,
            },
            &principal.token_id,
            &principal.actor(),
        )
        .await?;
    Ok(no_store(
        StatusCode::CREATED,
        Json(IssuedToken {
            token: secret,
            record: token_view(token),
        }),
    ))
}

/// Revokes a token and every token made with it: the caller's own, or anyone's for an admin.
#[utoipa::path(delete, path = "/api/v1/tokens/{id}", tag = "accounts", security(("token" = [])),
    params(("id" = String, Path, description = "token id")),
    responses((status = 200, body = TokenView), (status = 404, body = Problem), (status = 409, body = Problem))
)]
pub async fn revoke_token(
    State(state): State<AppState>,
    Extension(principal): Extension<Principal>,
    Path(id): Path<String>,
) -> Result<Json<TokenView>, ApiError> {
    let owner = (!principal.has(Role::Admin)).then_some(principal.user_id.as_str());
    let visible = state.store.list_tokens(owner).await?;
    if !visible.iter().any(|t| t.id == id) {
        return Err(ApiError::not_found(format!(
            "token {} not found",
            shown(&id)
        )));
    }
    let token = state.store.revoke_token(&id, &principal.actor()).await?;
    Ok(Json(token_view(token)))
}

/// A user by name, or 404.
async fn named_user(state: &AppState, name: &str) -> Result<User, ApiError> {
    state
        .store
        .user(name)
        .await?
        .ok_or_else(|| ApiError::not_found(format!("user {} not found", shown(name))))
}

/// A user's tokens (admin), live, expired and revoked, newest first.
#[utoipa::path(get, path = "/api/v1/users/{name}/tokens", tag = "accounts", security(("token" = ["admin"])),
    params(("name" = String, Path, description = "user name")),
    responses((status = 200, body = Vec<TokenView>), (status = 404, body = Problem))
)]
pub async fn list_user_tokens(
    State(state): State<AppState>,
    Path(name): Path<String>,
) -> Result<Json<Vec<TokenView>>, ApiError> {
    let user = named_user(&state, &name).await?;
    let tokens = state.store.list_tokens(Some(&user.id)).await?;
    Ok(Json(tokens.into_iter().map(token_view).collect()))
}

fn user_change(user: User, revoked: Vec<Token>) -> Json<UserChange> {
    Json(UserChange {
        user: user_view(user),
        revoked_tokens: revoked.into_iter().map(|t| t.id).collect(),
    })
}

/// Disables a user (admin): they cannot log in, and every token of theirs is revoked at once.
/// Refused for the last enabled admin.
#[utoipa::path(post, path = "/api/v1/users/{name}/disable", tag = "accounts", security(("token" = ["admin"])),
    params(("name" = String, Path, description = "user name")),
    responses(
        (status = 200, body = UserChange),
        (status = 404, body = Problem),
        (status = 409, body = Problem, description = "already disabled, or the last enabled admin")
    )
)]
pub async fn disable_user(
    State(state): State<AppState>,
    Extension(principal): Extension<Principal>,
    Path(name): Path<String>,
) -> Result<Json<UserChange>, ApiError> {
    named_user(&state, &name).await?;
    let (user, revoked) = state
        .store
        .set_user_disabled(&name, true, &principal.actor())
        .await?;
    Ok(user_change(user, revoked))
}

/// Enables a disabled user (admin). Their old tokens stay revoked.
#[utoipa::path(post, path = "/api/v1/users/{name}/enable", tag = "accounts", security(("token" = ["admin"])),
    params(("name" = String, Path, description = "user name")),
    responses(
        (status = 200, body = UserChange),
        (status = 404, body = Problem),
        (status = 409, body = Problem, description = "already enabled")
    )
)]
pub async fn enable_user(
    State(state): State<AppState>,
    Extension(principal): Extension<Principal>,
    Path(name): Path<String>,
) -> Result<Json<UserChange>, ApiError> {
    named_user(&state, &name).await?;
    let (user, revoked) = state
        .store
        .set_user_disabled(&name, false, &principal.actor())
        .await?;
    Ok(user_change(user, revoked))
}

/// Sets a user's password (admin), given or chosen by the server, and revokes every token of
/// theirs.
#[utoipa::path(post, path = "/api/v1/users/{name}/password", tag = "accounts", security(("token" = ["admin"])),
    params(("name" = String, Path, description = "user name")),
    request_body = ResetPassword,
    responses(
        (status = 200, body = PasswordReset, headers(("Cache-Control" = String, description = "no-store"))),
        (status = 404, body = Problem),
        (status = 422, body = Problem)
    )
)]
pub async fn reset_password(
    State(state): State<AppState>,
    Extension(principal): Extension<Principal>,
    Path(name): Path<String>,
    ApiJson(request): ApiJson<ResetPassword>,
) -> Result<Response, ApiError> {
    let (password, generated) = match request.password {
        Some(password) => {
            auth::check_password(&password)
                .map_err(|why| ApiError::invalid_field("password", why))?;
            (password, false)
        }
        None => (auth::new_password()?, true),
    };
    named_user(&state, &name).await?;
    let (user, revoked) = state
        .store
        .reset_password(&name, &auth::hash_password(&password)?, &principal.actor())
        .await?;
    Ok(no_store(
        StatusCode::OK,
        Json(PasswordReset {
            user: user_view(user),
            revoked_tokens: revoked.into_iter().map(|t| t.id).collect(),
            password: generated.then_some(password),
        }),
    ))
}

/// The login limits reached now (admin): which accounts, addresses, or accounts from an address
/// are refused, with their failures in the window.
#[utoipa::path(get, path = "/api/v1/login-locks", tag = "accounts", security(("token" = ["admin"])),
    responses((status = 200, body = Vec<CurrentLock>))
)]
pub async fn list_login_locks(
    State(state): State<AppState>,
) -> Result<Json<Vec<CurrentLock>>, ApiError> {
    let since = state.limiter.since(jiff::Timestamp::now());
    let groups = state.store.login_failure_groups(since).await?;
    Ok(Json(state.limiter.locks(&groups)))
}

/// Which failed logins to forget.
#[derive(Debug, Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
pub struct LockQuery {
    /// An account: its failures from every address.
    pub account: Option<String>,
    /// A client address (`203.0.113.9`, or an IPv6 /64 as listed): its failures on every
    /// account; with `account`, only that account's from there.
    pub address: Option<String>,
}

/// The key of an address as given: an address, or an IPv6 /64 as listings show it.
fn address_param(text: &str) -> Result<String, ApiError> {
    let text = text.trim();
    let ip = text
        .strip_suffix("/64")
        .filter(|network| network.contains(':'))
        .unwrap_or(text);
    ip.parse::<IpAddr>().map(auth::address_key).map_err(|_| {
        ApiError::invalid_field(
            "address",
            format!(
                "{:?} is not an address such as 203.0.113.9 or 2001:db8:1:2::/64",
                shown(text)
            ),
        )
    })
}

/// Lifts a login lock (admin) by forgetting the failures of an account, an address, or an
/// account from an address; audited as `login.unlock`.
#[utoipa::path(delete, path = "/api/v1/login-locks", tag = "accounts", security(("token" = ["admin"])),
    params(LockQuery),
    responses(
        (status = 200, body = ClearedLock),
        (status = 404, body = Problem, description = "no failures recorded for it"),
        (status = 422, body = Problem)
    )
)]
pub async fn clear_login_lock(
    State(state): State<AppState>,
    Extension(principal): Extension<Principal>,
    Query(query): Query<LockQuery>,
) -> Result<Json<ClearedLock>, ApiError> {
    let account = query.account.as_deref().map(auth::account_key);
    let address = query.address.as_deref().map(address_param).transpose()?;
    if account.is_none() && address.is_none() {
        return Err(ApiError::unprocessable(
            "name an account, an address or both (?account=NAME&address=ADDR)",
        ));
    }
    let failures_cleared = state
        .store
        .clear_login_failures(account.as_deref(), address.as_deref(), &principal.actor())
        .await?;
    Ok(Json(ClearedLock {
        account,
        address,
        failures_cleared,
    }))
}
