//! Login, users and API tokens, and containing an account: disabling it, resetting its
//! password, listing and revoking its tokens, lifting login locks (admin), over HTTP. The work
//! is `crate::accounts`'s; a handler reads the request and shapes the answer.
//!
//! Answers holding a secret (a token, a generated password) carry `Cache-Control: no-store`.

use std::net::SocketAddr;

use axum::extract::{ConnectInfo, Path, Query, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::{Extension, Json};
use jiff::Timestamp;
use serde::Deserialize;
use sluice_protocol::accounts::{
    ClearedLock, CreateToken, CreateUser, IssuedToken, LoginRequest, PasswordReset, ResetPassword,
    TokenView, UserChange, UserView, WhoAmI,
};
use sluice_store::{Token, User};
use utoipa::IntoParams;

use crate::accounts::{self, Contained, Containment, Issued};
use crate::auth::{self, CurrentLock, Principal};
use crate::error::{ApiError, ApiJson, Problem};
use crate::state::AppState;

/// The API's view of a stored token (never its hash).
fn token_view(token: Token) -> TokenView {
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

/// The API's view of a stored user (never the password hash).
fn user_view(user: User) -> UserView {
    UserView {
        id: user.id,
        username: user.username,
        roles: user.roles,
        groups: user.groups,
        created_at: user.created_at,
        disabled: user.disabled,
    }
}

/// A new token's answer: `Cache-Control: no-store`, as it holds the secret.
fn issued(status: StatusCode, issued: Issued) -> Response {
    no_store(
        status,
        Json(IssuedToken {
            token: issued.secret,
            record: token_view(issued.token),
        }),
    )
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
    let client = auth::client_address(
        connect.map(|c| c.0.0.ip()),
        &headers,
        &state.settings.trusted_proxies,
    );
    let request_id = request_id(&headers);
    // The system clock: token expiry and login windows are physical time.
    let token = accounts::login(
        &state,
        request,
        client,
        request_id.as_deref(),
        Timestamp::now(),
    )
    .await?;
    Ok(issued(StatusCode::OK, token))
}

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
    let users = accounts::users(&state).await?;
    Ok(Json(users.into_iter().map(user_view).collect()))
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
    let user = accounts::create_user(&state, &principal, request).await?;
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
    let tokens = accounts::tokens(&state, &principal, query.all).await?;
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
    let token = accounts::create_token(&state, &principal, request, Timestamp::now()).await?;
    Ok(issued(StatusCode::CREATED, token))
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
    let token = accounts::revoke_token(&state, &principal, &id).await?;
    Ok(Json(token_view(token)))
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
    let tokens = accounts::user_tokens(&state, &name).await?;
    Ok(Json(tokens.into_iter().map(token_view).collect()))
}

/// The ids of the tokens a containment step revoked.
fn revoked_ids(revoked: Vec<Token>) -> Vec<String> {
    revoked.into_iter().map(|t| t.id).collect()
}

/// Disabling and enabling answer alike: the user and the tokens revoked.
async fn user_change(
    state: &AppState,
    principal: &Principal,
    name: &str,
    step: Containment,
) -> Result<Json<UserChange>, ApiError> {
    let Contained { user, revoked, .. } = accounts::contain(state, principal, name, step).await?;
    Ok(Json(UserChange {
        user: user_view(user),
        revoked_tokens: revoked_ids(revoked),
    }))
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
    user_change(&state, &principal, &name, Containment::Disable).await
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
    user_change(&state, &principal, &name, Containment::Enable).await
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
    let step = Containment::ResetPassword(request.password);
    let contained = accounts::contain(&state, &principal, &name, step).await?;
    Ok(no_store(
        StatusCode::OK,
        Json(PasswordReset {
            user: user_view(contained.user),
            revoked_tokens: revoked_ids(contained.revoked),
            password: contained.generated_password,
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
    Ok(Json(accounts::login_locks(&state, Timestamp::now()).await?))
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
    let (account, address) = (query.account.as_deref(), query.address.as_deref());
    let cleared = accounts::clear_login_lock(&state, &principal, account, address).await?;
    Ok(Json(cleared))
}
