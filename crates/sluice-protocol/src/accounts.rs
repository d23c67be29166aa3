//! Accounts: logins, users, tokens and login locks.

use std::collections::BTreeSet;

use serde::{Deserialize, Serialize};
use sluice_core::access::{Role, Roles};

/// Credentials for a session token.
#[derive(Debug, Deserialize, Serialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(deny_unknown_fields)]
pub struct LoginRequest {
    /// User name.
    pub username: String,
    /// Password.
    pub password: String,
    /// What the token is for (default `login`).
    #[serde(default)]
    pub token_name: Option<String>,
    /// Lifetime such as `30d` (at most 366 days; default the server's `session_ttl`). A token
    /// made with a token never outlives it, so long-lived automation tokens are made here, with
    /// the password.
    #[serde(default)]
    pub expires_in: Option<String>,
    /// Roles, at most the user's (default all of them).
    #[serde(default)]
    #[cfg_attr(feature = "openapi", schema(value_type = Option<Vec<String>>))]
    pub roles: Option<Vec<Role>>,
}

/// A newly issued token: the secret is shown this once.
#[derive(Debug, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct IssuedToken {
    /// The secret, `slc_…`; store it, it cannot be shown again.
    pub token: String,
    /// The token's record.
    pub record: TokenView,
}

/// A token as listed (never its secret).
#[derive(Debug, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct TokenView {
    /// Id, for revoking.
    pub id: String,
    /// Owner.
    pub username: String,
    /// Purpose.
    pub name: String,
    /// Roles it carries.
    #[cfg_attr(feature = "openapi", schema(value_type = Vec<String>))]
    pub roles: Roles,
    /// Created.
    pub created_at: String,
    /// Expires.
    pub expires_at: String,
    /// Revoked, if it was.
    pub revoked_at: Option<String>,
    /// The token it was made with, if any: revoking that one revokes this one.
    #[serde(default)]
    pub parent_id: Option<String>,
}

/// A user as listed (never the password hash).
#[derive(Debug, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct UserView {
    /// Id.
    pub id: String,
    /// User name.
    pub username: String,
    /// Roles.
    #[cfg_attr(feature = "openapi", schema(value_type = Vec<String>))]
    pub roles: Roles,
    /// Groups.
    pub groups: BTreeSet<String>,
    /// Created.
    pub created_at: String,
    /// Disabled.
    pub disabled: bool,
}

/// Who the caller is.
#[derive(Debug, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct WhoAmI {
    /// User name.
    pub username: String,
    /// Roles of the token in use.
    #[cfg_attr(feature = "openapi", schema(value_type = Vec<String>))]
    pub roles: Roles,
    /// The token in use.
    pub token_id: String,
}

/// A user to create.
#[derive(Debug, Deserialize, Serialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(deny_unknown_fields)]
pub struct CreateUser {
    /// User name: lower-case letters, digits, `.`, `_`, `-`; 1 to 64 characters.
    pub username: String,
    /// At least 12 characters.
    pub password: String,
    /// Roles: viewer, operator, approver, security, admin.
    #[cfg_attr(feature = "openapi", schema(value_type = Vec<String>))]
    pub roles: Vec<Role>,
    /// Groups (CAB policies name groups).
    #[serde(default)]
    pub groups: BTreeSet<String>,
}

/// A token for automation.
#[derive(Debug, Deserialize, Serialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(deny_unknown_fields)]
pub struct CreateToken {
    /// What it is for.
    pub name: String,
    /// Roles, at most the caller's own (default: all of them).
    #[serde(default)]
    #[cfg_attr(feature = "openapi", schema(value_type = Option<Vec<String>>))]
    pub roles: Option<Vec<Role>>,
    /// Lifetime such as `30d` or `12h` (at most 366 days).
    pub expires_in: String,
}

/// What a change to a user did.
#[derive(Debug, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct UserChange {
    /// The user after the change.
    pub user: UserView,
    /// Ids of the tokens the change revoked.
    pub revoked_tokens: Vec<String>,
}

/// A password reset.
#[derive(Debug, Deserialize, Serialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(deny_unknown_fields)]
pub struct ResetPassword {
    /// The new password (at least 12 characters); leave it out to have the server choose one.
    #[serde(default)]
    pub password: Option<String>,
}

/// What a password reset did.
#[derive(Debug, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct PasswordReset {
    /// The user.
    pub user: UserView,
    /// Ids of the tokens revoked: every token the user had.
    pub revoked_tokens: Vec<String>,
    /// The password the server chose, shown this once; absent when one was given.
    pub password: Option<String>,
}

/// Failed logins forgotten.
#[derive(Debug, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct ClearedLock {
    /// The account, if one was named.
    pub account: Option<String>,
    /// The address key, if one was named.
    pub address: Option<String>,
    /// How many failures were forgotten.
    pub failures_cleared: u64,
}

/// A login limit reached now, as `GET /api/v1/login-locks` lists it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct LoginLock {
    /// Which limit: `account_address`, `account` or `address`.
    pub scope: String,
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
