//! Login, users and API tokens.

use std::collections::BTreeSet;
use std::net::SocketAddr;
use std::time::Instant;

use axum::extract::{ConnectInfo, Path, Query, State};
use axum::http::StatusCode;
use axum::{Extension, Json};
use serde::{Deserialize, Serialize};
use sluice_core::access::{Role, Roles};
use sluice_core::audit::NewAuditEvent;
use sluice_store::{Actor, NewToken, NewUser, Token, User};
use utoipa::{IntoParams, ToSchema};

use crate::auth::{self, Principal, login_keys};
use crate::error::{ApiError, ApiJson, Problem};
use crate::settings::parse_duration;
use crate::state::AppState;

/// Longest lifetime of a token made with `POST /api/v1/tokens`.
const MAX_TOKEN_DAYS: u64 = 366;

/// Credentials for a session token.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct LoginRequest {
    /// User name.
    pub username: String,
    /// Password.
    pub password: String,
    /// What the token is for (default `login`).
    #[serde(default)]
    pub token_name: Option<String>,
}

/// A newly issued token: the secret is shown this once.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct IssuedToken {
    /// The secret, `slc_…`; store it, it cannot be shown again.
    pub token: String,
    /// The token's record.
    pub record: TokenView,
}

/// A token as listed (never its secret).
#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct TokenView {
    /// Id, for revoking.
    pub id: String,
    /// Owner.
    pub username: String,
    /// Purpose.
    pub name: String,
    /// Roles it carries.
    #[schema(value_type = Vec<String>)]
    pub roles: Roles,
    /// Created.
    pub created_at: String,
    /// Expires.
    pub expires_at: String,
    /// Revoked, if it was.
    pub revoked_at: Option<String>,
}

impl From<Token> for TokenView {
    fn from(token: Token) -> Self {
        Self {
            id: token.id,
            username: token.username,
            name: token.name,
            roles: token.roles,
            created_at: token.created_at,
            expires_at: token.expires_at,
            revoked_at: token.revoked_at,
        }
    }
}

/// A user as listed (never the password hash).
#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct UserView {
    /// Id.
    pub id: String,
    /// User name.
    pub username: String,
    /// Roles.
    #[schema(value_type = Vec<String>)]
    pub roles: Roles,
    /// Groups.
    pub groups: BTreeSet<String>,
    /// Created.
    pub created_at: String,
    /// Disabled.
    pub disabled: bool,
}

impl From<User> for UserView {
    fn from(user: User) -> Self {
        Self {
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

/// Exchanges a user name and password for a session token.
#[utoipa::path(post, path = "/api/v1/login", tag = "accounts", request_body = LoginRequest, responses(
    (status = 200, body = IssuedToken),
    (status = 401, body = Problem, description = "wrong user name or password"),
    (status = 429, body = Problem, description = "too many failures; see Retry-After")
))]
pub async fn login(
    State(state): State<AppState>,
    connect: Option<Extension<ConnectInfo<SocketAddr>>>,
    ApiJson(request): ApiJson<LoginRequest>,
) -> Result<Json<IssuedToken>, ApiError> {
    let keys = login_keys(&request.username, connect.map(|c| c.0.0.ip()));
    let now = Instant::now();
    let failure = |reason: &str| NewAuditEvent {
        actor: "anonymous".to_owned(),
        action: "login.failure".to_owned(),
        object: format!("user:{}", request.username),
        before: None,
        after: Some(serde_json::json!({ "reason": reason })),
        request_id: None,
    };
    if let Some(wait) = state.limiter.blocked(&keys, now) {
        state.store.record(failure("rate limited")).await?;
        metrics::counter!("sluice_login_failures_total", "reason" => "rate_limited").increment(1);
        return Err(ApiError::too_many(
            "too many failed logins; try again later",
            wait,
        ));
    }
    let found = state.store.user_with_hash(&request.username).await?;
    let verified = match &found {
        Some((user, hash)) => !user.disabled && auth::verify_password(&request.password, hash),
        None => {
            // Spend the same time as a real check, so timing does not reveal user names.
            let _ = auth::verify_password(&request.password, &DUMMY_HASH);
            false
        }
    };
    let Some((user, _)) = found.filter(|_| verified) else {
        state.limiter.fail(&keys, now);
        state.store.record(failure("bad credentials")).await?;
        metrics::counter!("sluice_login_failures_total", "reason" => "bad_credentials")
            .increment(1);
        return Err(ApiError::unauthenticated("wrong user name or password"));
    };
    state.limiter.succeed(&keys[0]);
    let (secret, hash) = auth::new_token()?;
    let token = state
        .store
        .create_token(
            NewToken {
                user_id: user.id.clone(),
                name: request.token_name.unwrap_or_else(|| "login".to_owned()),
                token_hash: hash,
                roles: user.roles.clone(),
                expires_at: expiry_after(state.settings.session_ttl)?,
            },
            &Actor::named(&user.username, None),
        )
        .await?;
    Ok(Json(IssuedToken {
        token: secret,
        record: token.into(),
    }))
}

/// An argon2id hash of a random password, verified against when the user does not exist.
static DUMMY_HASH: std::sync::LazyLock<String> = std::sync::LazyLock::new(|| {
    auth::new_password()
        .and_then(|p| auth::hash_password(&p))
        .unwrap_or_default()
});

/// Who the caller is.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct WhoAmI {
    /// User name.
    pub username: String,
    /// Roles of the token in use.
    #[schema(value_type = Vec<String>)]
    pub roles: Roles,
    /// The token in use.
    pub token_id: String,
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
    let users = state.store.list_users().await?;
    Ok(Json(users.into_iter().map(UserView::from).collect()))
}

/// A user to create.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CreateUser {
    /// User name: lower-case letters, digits, `.`, `_`, `-`; 1 to 64 characters.
    pub username: String,
    /// At least 12 characters.
    pub password: String,
    /// Roles: viewer, operator, approver, security, admin.
    #[schema(value_type = Vec<String>)]
    pub roles: Vec<Role>,
    /// Groups (CAB policies name groups).
    #[serde(default)]
    pub groups: BTreeSet<String>,
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
    if request.password.chars().count() < 12 {
        return Err(ApiError::invalid_field(
            "password",
            "at least 12 characters",
        ));
    }
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
    Ok((StatusCode::CREATED, Json(user.into())))
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
    Ok(Json(tokens.into_iter().map(TokenView::from).collect()))
}

/// A token for automation.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CreateToken {
    /// What it is for.
    pub name: String,
    /// Roles, at most the caller's own (default: all of them).
    #[serde(default)]
    #[schema(value_type = Option<Vec<String>>)]
    pub roles: Option<Vec<Role>>,
    /// Lifetime such as `30d` or `12h` (at most 366 days).
    pub expires_in: String,
}

/// Creates a token for the caller, e.g. for automation.
#[utoipa::path(post, path = "/api/v1/tokens", tag = "accounts", security(("token" = [])), request_body = CreateToken, responses(
    (status = 201, body = IssuedToken),
    (status = 422, body = Problem)
))]
pub async fn create_token(
    State(state): State<AppState>,
    Extension(principal): Extension<Principal>,
    ApiJson(request): ApiJson<CreateToken>,
) -> Result<(StatusCode, Json<IssuedToken>), ApiError> {
    if request.name.trim().is_empty() || request.name.len() > 100 {
        return Err(ApiError::invalid_field("name", "1 to 100 characters"));
    }
    let lifetime = parse_duration("expires_in", &request.expires_in)
        .map_err(|e| ApiError::invalid_field("expires_in", e.0))?;
    if lifetime.as_secs() > MAX_TOKEN_DAYS * 86_400 {
        return Err(ApiError::invalid_field("expires_in", "at most 366 days"));
    }
    let roles: Roles = match request.roles {
        None => principal.roles.clone(),
        Some(roles) => roles.into_iter().collect(),
    };
    if roles.is_empty() {
        return Err(ApiError::invalid_field("roles", "at least one role"));
    }
    if let Some(extra) = roles.iter().find(|r| !principal.has(**r)) {
        return Err(ApiError::invalid_field(
            "roles",
            format!("a token cannot carry the role {extra}, which its owner does not hold"),
        ));
    }
    let (secret, hash) = auth::new_token()?;
    let token = state
        .store
        .create_token(
            NewToken {
                user_id: principal.user_id.clone(),
                name: request.name,
                token_hash: hash,
                roles,
                expires_at: expiry_after(lifetime)?,
            },
            &principal.actor(),
        )
        .await?;
    Ok((
        StatusCode::CREATED,
        Json(IssuedToken {
            token: secret,
            record: token.into(),
        }),
    ))
}

/// Revokes a token: the caller's own, or anyone's for an admin.
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
        return Err(ApiError::not_found(format!("token {id} not found")));
    }
    let token = state.store.revoke_token(&id, &principal.actor()).await?;
    Ok(Json(token.into()))
}
