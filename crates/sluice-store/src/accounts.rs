//! Users and API tokens. Passwords and tokens arrive here already hashed: the store never sees a
//! secret, and neither does the audit chain.

use std::collections::BTreeSet;

use serde::{Deserialize, Serialize};
use sluice_core::access::{Roles, format_roles, parse_roles};
use sqlx::Row;

use crate::audit::append_audit;
use crate::{Actor, Result, Store, StoreError, begin_write, now, on_pool};

/// A user account, without its password hash.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct User {
    /// Stable id.
    pub id: String,
    /// Login name.
    pub username: String,
    /// Roles held.
    pub roles: Roles,
    /// Groups (CAB policies name groups).
    pub groups: BTreeSet<String>,
    /// When it was created.
    pub created_at: String,
    /// Disabled accounts cannot log in and their tokens stop working.
    pub disabled: bool,
}

/// A user to create.
#[derive(Clone, Debug)]
pub struct NewUser {
    /// Login name.
    pub username: String,
    /// argon2id PHC string.
    pub password_hash: String,
    /// Roles.
    pub roles: Roles,
    /// Groups.
    pub groups: BTreeSet<String>,
}

/// An API token, without its hash.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Token {
    /// Stable id (shown in listings, used to revoke).
    pub id: String,
    /// Owner's id.
    pub user_id: String,
    /// Owner's name.
    pub username: String,
    /// What it is for (`cli login`, `ci pipeline`).
    pub name: String,
    /// Roles the token carries (never more than the owner's).
    pub roles: Roles,
    /// When it was created.
    pub created_at: String,
    /// When it stops working.
    pub expires_at: String,
    /// When it was revoked, if it was.
    pub revoked_at: Option<String>,
    /// Whether the owner is disabled.
    pub owner_disabled: bool,
}

/// A token to create.
#[derive(Clone, Debug)]
pub struct NewToken {
    /// Owner's id.
    pub user_id: String,
    /// What it is for.
    pub name: String,
    /// SHA-256 of the token secret, hex.
    pub token_hash: String,
    /// Roles.
    pub roles: Roles,
    /// Expiry, RFC 3339 UTC.
    pub expires_at: String,
}

fn groups_text(groups: &BTreeSet<String>) -> String {
    groups.iter().cloned().collect::<Vec<_>>().join(",")
}

fn groups_from(text: &str) -> BTreeSet<String> {
    text.split(',')
        .filter(|g| !g.is_empty())
        .map(str::to_owned)
        .collect()
}

fn roles_from(text: &str) -> Result<Roles> {
    parse_roles(text).map_err(|e| StoreError::Corrupt(e.to_string()))
}

macro_rules! user_from_row {
    ($row:expr) => {{
        let row = $row;
        let roles: String = row.try_get("roles")?;
        let groups: String = row.try_get("groups")?;
        User {
            id: row.try_get("id")?,
            username: row.try_get("username")?,
            roles: roles_from(&roles)?,
            groups: groups_from(&groups),
            created_at: row.try_get("created_at")?,
            disabled: row.try_get("disabled")?,
        }
    }};
}

macro_rules! token_from_row {
    ($row:expr) => {{
        let row = $row;
        let roles: String = row.try_get("roles")?;
        Token {
            id: row.try_get("id")?,
            user_id: row.try_get("user_id")?,
            username: row.try_get("username")?,
            name: row.try_get("name")?,
            roles: roles_from(&roles)?,
            created_at: row.try_get("created_at")?,
            expires_at: row.try_get("expires_at")?,
            revoked_at: row.try_get("revoked_at")?,
            owner_disabled: row.try_get("disabled")?,
        }
    }};
}

impl Store {
    /// Creates a user; audited as `user.create` (the audit record never holds the hash).
    pub async fn create_user(&self, user: NewUser, actor: &Actor) -> Result<User> {
        let created = User {
            id: new_id(),
            username: user.username.clone(),
            roles: user.roles.clone(),
            groups: user.groups.clone(),
            created_at: now(),
            disabled: false,
        };
        on_pool!(self, |pool, pg| {
            let mut tx = begin_write!(pool, pg);
            let taken = sqlx::query("SELECT 1 FROM users WHERE username = $1")
                .bind(&user.username)
                .fetch_optional(&mut *tx)
                .await?;
            if taken.is_some() {
                return Err(StoreError::Conflict(format!(
                    "user {:?} already exists",
                    user.username
                )));
            }
            sqlx::query(
                "INSERT INTO users (id, username, password_hash, roles, groups, created_at, disabled) \
                 VALUES ($1, $2, $3, $4, $5, $6, $7)",
            )
            .bind(&created.id)
            .bind(&created.username)
            .bind(&user.password_hash)
            .bind(format_roles(&created.roles))
            .bind(groups_text(&created.groups))
            .bind(&created.created_at)
            .bind(false)
            .execute(&mut *tx)
            .await?;
            append_audit!(
                tx,
                pg,
                actor.event(
                    "user.create",
                    format!("user:{}", created.username),
                    None,
                    serde_json::to_value(&created).ok()
                )
            );
            tx.commit().await?;
            Ok(created)
        })
    }

    /// A user and its password hash, by login name.
    pub async fn user_with_hash(&self, username: &str) -> Result<Option<(User, String)>> {
        on_pool!(self, |pool, pg| {
            let row = sqlx::query(
                "SELECT id, username, password_hash, roles, groups, created_at, disabled FROM users WHERE username = $1",
            )
            .bind(username)
            .fetch_optional(pool)
            .await?;
            match row {
                None => Ok(None),
                Some(row) => {
                    let hash: String = row.try_get("password_hash")?;
                    Ok(Some((user_from_row!(&row), hash)))
                }
            }
        })
    }

    /// A user by login name, without the password hash (the server reads a caller's groups).
    pub async fn user(&self, username: &str) -> Result<Option<User>> {
        on_pool!(self, |pool, pg| {
            let row = sqlx::query(
                "SELECT id, username, roles, groups, created_at, disabled FROM users WHERE username = $1",
            )
            .bind(username)
            .fetch_optional(pool)
            .await?;
            match row {
                None => Ok(None),
                Some(row) => Ok(Some(user_from_row!(&row))),
            }
        })
    }

    /// All users, by name.
    pub async fn list_users(&self) -> Result<Vec<User>> {
        on_pool!(self, |pool, pg| {
            let rows = sqlx::query(
                "SELECT id, username, roles, groups, created_at, disabled FROM users ORDER BY username",
            )
            .fetch_all(pool)
            .await?;
            let mut users = Vec::with_capacity(rows.len());
            for row in &rows {
                users.push(user_from_row!(row));
            }
            Ok(users)
        })
    }

    /// How many users exist (the first start creates `admin` when there are none).
    pub async fn count_users(&self) -> Result<i64> {
        on_pool!(self, |pool, pg| {
            let row = sqlx::query("SELECT COUNT(*) AS n FROM users")
                .fetch_one(pool)
                .await?;
            Ok(row.try_get::<i64, _>("n")?)
        })
    }

    /// Creates a token; audited as `token.create` (without the hash).
    pub async fn create_token(&self, token: NewToken, actor: &Actor) -> Result<Token> {
        on_pool!(self, |pool, pg| {
            let mut tx = begin_write!(pool, pg);
            let owner = sqlx::query("SELECT username, disabled FROM users WHERE id = $1")
                .bind(&token.user_id)
                .fetch_optional(&mut *tx)
                .await?
                .ok_or_else(|| StoreError::NotFound(format!("user {}", token.user_id)))?;
            let created = Token {
                id: new_id(),
                user_id: token.user_id.clone(),
                username: owner.try_get("username")?,
                name: token.name.clone(),
                roles: token.roles.clone(),
                created_at: now(),
                expires_at: token.expires_at.clone(),
                revoked_at: None,
                owner_disabled: owner.try_get("disabled")?,
            };
            sqlx::query(
                "INSERT INTO tokens (id, user_id, name, token_hash, roles, created_at, expires_at) \
                 VALUES ($1, $2, $3, $4, $5, $6, $7)",
            )
            .bind(&created.id)
            .bind(&created.user_id)
            .bind(&created.name)
            .bind(&token.token_hash)
            .bind(format_roles(&created.roles))
            .bind(&created.created_at)
            .bind(&created.expires_at)
            .execute(&mut *tx)
            .await?;
            append_audit!(
                tx,
                pg,
                actor.event(
                    "token.create",
                    format!("token:{}", created.id),
                    None,
                    serde_json::to_value(&created).ok()
                )
            );
            tx.commit().await?;
            Ok(created)
        })
    }

    /// The token whose secret hashes to `token_hash`, whatever its state (the caller checks
    /// expiry, revocation and the owner).
    pub async fn token_by_hash(&self, token_hash: &str) -> Result<Option<Token>> {
        on_pool!(self, |pool, pg| {
            let sql = "SELECT t.id, t.user_id, u.username, t.name, t.roles, t.created_at, t.expires_at, t.revoked_at, u.disabled \
                       FROM tokens t JOIN users u ON u.id = t.user_id WHERE t.token_hash = $1";
            let row = sqlx::query(sql)
                .bind(token_hash)
                .fetch_optional(pool)
                .await?;
            match row {
                None => Ok(None),
                Some(row) => Ok(Some(token_from_row!(&row))),
            }
        })
    }

    /// Tokens, all or one user's, newest first.
    pub async fn list_tokens(&self, user_id: Option<&str>) -> Result<Vec<Token>> {
        on_pool!(self, |pool, pg| {
            let rows = match user_id {
                Some(user_id) => {
                    sqlx::query(
                        "SELECT t.id, t.user_id, u.username, t.name, t.roles, t.created_at, t.expires_at, t.revoked_at, u.disabled \
                         FROM tokens t JOIN users u ON u.id = t.user_id WHERE t.user_id = $1 ORDER BY t.created_at DESC, t.id",
                    )
                    .bind(user_id)
                    .fetch_all(pool)
                    .await?
                }
                None => {
                    sqlx::query(
                        "SELECT t.id, t.user_id, u.username, t.name, t.roles, t.created_at, t.expires_at, t.revoked_at, u.disabled \
                         FROM tokens t JOIN users u ON u.id = t.user_id ORDER BY t.created_at DESC, t.id",
                    )
                    .fetch_all(pool)
                    .await?
                }
            };
            let mut tokens = Vec::with_capacity(rows.len());
            for row in &rows {
                tokens.push(token_from_row!(row));
            }
            Ok(tokens)
        })
    }

    /// Revokes a token; audited as `token.revoke`. Revoking twice is a conflict.
    pub async fn revoke_token(&self, token_id: &str, actor: &Actor) -> Result<Token> {
        let tokens = self.list_tokens(None).await?;
        let before = tokens
            .into_iter()
            .find(|t| t.id == token_id)
            .ok_or_else(|| StoreError::NotFound(format!("token {token_id}")))?;
        if before.revoked_at.is_some() {
            return Err(StoreError::Conflict(format!(
                "token {token_id} is already revoked"
            )));
        }
        let mut after = before.clone();
        after.revoked_at = Some(now());
        on_pool!(self, |pool, pg| {
            let mut tx = begin_write!(pool, pg);
            let updated = sqlx::query(
                "UPDATE tokens SET revoked_at = $1 WHERE id = $2 AND revoked_at IS NULL",
            )
            .bind(&after.revoked_at)
            .bind(token_id)
            .execute(&mut *tx)
            .await?;
            if updated.rows_affected() != 1 {
                return Err(StoreError::Conflict(format!(
                    "token {token_id} is already revoked"
                )));
            }
            append_audit!(
                tx,
                pg,
                actor.event(
                    "token.revoke",
                    format!("token:{token_id}"),
                    serde_json::to_value(&before).ok(),
                    serde_json::to_value(&after).ok()
                )
            );
            tx.commit().await?;
            Ok(after)
        })
    }
}

/// A new random id: 128 random bits, hex.
pub(crate) fn new_id() -> String {
    let mut bytes = [0u8; 16];
    // getrandom only fails when the OS has no randomness source at all.
    if getrandom::fill(&mut bytes).is_err() {
        bytes = jiff::Timestamp::now().as_nanosecond().to_le_bytes();
    }
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}
