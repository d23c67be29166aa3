//! Users, API tokens and failed-login bookkeeping. Passwords and tokens arrive here already
//! hashed: the store never sees a secret, and neither does the audit chain.
//!
//! Containment lives here because it must hold under concurrency: a token is never issued to a
//! disabled user, under a revoked parent, or from a login whose password was reset meanwhile;
//! revoking a token revokes every token minted below it, in the same transaction.

use std::collections::BTreeSet;

use serde::{Deserialize, Serialize};
use sluice_core::access::{Role, Roles, format_roles, parse_roles};
use sqlx::Row;

use crate::audit::append_audit;
use crate::record::{audit_value, lock_writes};
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
    /// The token this one was minted with, if any; revoking that one revokes this one.
    #[serde(default)]
    pub parent_id: Option<String>,
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
            parent_id: row.try_get("parent_id")?,
        }
    }};
}

/// The columns `token_from_row!` reads, from `tokens t JOIN users u`.
const TOKEN_COLUMNS: &str = "t.id, t.user_id, u.username, t.name, t.roles, t.created_at, t.expires_at, \
                             t.revoked_at, u.disabled, t.parent_id";

/// Revokes the token rows given (read with [`TOKEN_COLUMNS`]), each audited as `token.revoke`;
/// evaluates to the revoked tokens.
macro_rules! revoke_rows {
    ($tx:expr, $pg:expr, $rows:expr, $at:expr, $actor:expr) => {{
        let mut revoked = Vec::new();
        for row in &$rows {
            let before = token_from_row!(row);
            let mut after = before.clone();
            after.revoked_at = Some($at.clone());
            sqlx::query("UPDATE tokens SET revoked_at = $1 WHERE id = $2 AND revoked_at IS NULL")
                .bind(&$at)
                .bind(&before.id)
                .execute(&mut *$tx)
                .await?;
            append_audit!(
                $tx,
                $pg,
                $actor.event(
                    "token.revoke",
                    format!("token:{}", before.id),
                    Some(audit_value("account", &before)?),
                    Some(audit_value("account", &after)?)
                )
            );
            revoked.push(after);
        }
        revoked
    }};
}

/// What vouches for a new token, which decides what is checked before it is issued.
enum Issuer<'a> {
    /// Nothing beyond the owner being enabled (first start, tests).
    Direct,
    /// A login that verified this password hash: refused if the password changed meanwhile.
    Login(&'a str),
    /// A token: the new one is minted from it, never outlives it and carries none of the roles
    /// it lacks.
    Parent(&'a str),
}

/// A failed-login count's scope (see docs/security.md, "Login limits and account containment").
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum LoginScope<'a> {
    /// One account from one client address (`""`: address unknown).
    Pair {
        /// Account key (lower-cased user name).
        account: &'a str,
        /// Client address key.
        address: &'a str,
    },
    /// One account from any address.
    Account(&'a str),
    /// One client address, any account.
    Address(&'a str),
}

/// Failed logins recorded for one account from one address since some time.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct LoginFailureGroup {
    /// Account key (lower-cased user name).
    pub account: String,
    /// Client address key, `""` when unknown.
    pub address: String,
    /// How many.
    pub failures: u64,
    /// The latest, RFC 3339 UTC.
    pub last_at: String,
}

/// A timestamp as the store writes them: fixed width, so text order is time order.
fn stamp(at: jiff::Timestamp) -> String {
    at.strftime("%Y-%m-%dT%H:%M:%S%.6fZ").to_string()
}

/// The earlier of two stored expiries (unparseable text counts as already expired).
fn earlier(a: &str, b: &str) -> String {
    match (a.parse::<jiff::Timestamp>(), b.parse::<jiff::Timestamp>()) {
        (Ok(x), Ok(y)) => stamp(x.min(y)),
        (Ok(_), Err(_)) => b.to_owned(),
        _ => a.to_owned(),
    }
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
                    Some(audit_value("account", &created)?)
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

    /// Creates a token; audited as `token.create` (without the hash). Refused for a disabled
    /// user.
    pub async fn create_token(&self, token: NewToken, actor: &Actor) -> Result<Token> {
        self.issue_token(token, Issuer::Direct, actor).await
    }

    /// Creates a token for a login that verified `password_hash`; refused if the user was
    /// disabled or the password reset since (the reset revoked every token, and this one must
    /// not slip past it).
    pub async fn create_login_token(
        &self,
        token: NewToken,
        password_hash: &str,
        actor: &Actor,
    ) -> Result<Token> {
        self.issue_token(token, Issuer::Login(password_hash), actor)
            .await
    }

    /// Mints a token with the token `parent_id`: its expiry is capped at the parent's, its roles
    /// must be the parent's or fewer, and revoking the parent revokes it.
    pub async fn mint_token(
        &self,
        token: NewToken,
        parent_id: &str,
        actor: &Actor,
    ) -> Result<Token> {
        self.issue_token(token, Issuer::Parent(parent_id), actor)
            .await
    }

    async fn issue_token(
        &self,
        token: NewToken,
        issuer: Issuer<'_>,
        actor: &Actor,
    ) -> Result<Token> {
        on_pool!(self, |pool, pg| {
            let mut tx = begin_write!(pool, pg);
            // Serialises with disable, password reset and revocation on PostgreSQL.
            lock_writes!(tx, pg);
            let owner =
                sqlx::query("SELECT username, disabled, password_hash FROM users WHERE id = $1")
                    .bind(&token.user_id)
                    .fetch_optional(&mut *tx)
                    .await?
                    .ok_or_else(|| StoreError::NotFound(format!("user {}", token.user_id)))?;
            let username: String = owner.try_get("username")?;
            if owner.try_get::<bool, _>("disabled")? {
                return Err(StoreError::Conflict(format!("user {username} is disabled")));
            }
            let mut expires_at = token.expires_at.clone();
            let mut parent_id = None;
            match issuer {
                Issuer::Direct => {}
                Issuer::Login(seen) => {
                    let current: String = owner.try_get("password_hash")?;
                    if current != seen {
                        return Err(StoreError::Conflict(format!(
                            "the password of {username} changed while logging in: log in again"
                        )));
                    }
                }
                Issuer::Parent(id) => {
                    let parent = sqlx::query(
                        "SELECT user_id, roles, expires_at, revoked_at FROM tokens WHERE id = $1",
                    )
                    .bind(id)
                    .fetch_optional(&mut *tx)
                    .await?
                    .ok_or_else(|| StoreError::NotFound(format!("token {id}")))?;
                    if parent.try_get::<Option<String>, _>("revoked_at")?.is_some() {
                        return Err(StoreError::Conflict(format!("token {id} was revoked")));
                    }
                    if parent.try_get::<String, _>("user_id")? != token.user_id {
                        return Err(StoreError::Invalid(format!(
                            "token {id} belongs to another user"
                        )));
                    }
                    let parent_roles = roles_from(&parent.try_get::<String, _>("roles")?)?;
                    if let Some(extra) = token.roles.iter().find(|r| !parent_roles.contains(r)) {
                        return Err(StoreError::Invalid(format!(
                            "a token cannot carry the role {extra}, which the token creating it does not hold"
                        )));
                    }
                    expires_at = earlier(&expires_at, &parent.try_get::<String, _>("expires_at")?);
                    parent_id = Some(id.to_owned());
                }
            }
            let created = Token {
                id: new_id(),
                user_id: token.user_id.clone(),
                username,
                name: token.name.clone(),
                roles: token.roles.clone(),
                created_at: now(),
                expires_at,
                revoked_at: None,
                owner_disabled: false,
                parent_id,
            };
            sqlx::query(
                "INSERT INTO tokens (id, user_id, name, token_hash, roles, created_at, expires_at, parent_id) \
                 VALUES ($1, $2, $3, $4, $5, $6, $7, $8)",
            )
            .bind(&created.id)
            .bind(&created.user_id)
            .bind(&created.name)
            .bind(&token.token_hash)
            .bind(format_roles(&created.roles))
            .bind(&created.created_at)
            .bind(&created.expires_at)
            .bind(&created.parent_id)
            .execute(&mut *tx)
            .await?;
            append_audit!(
                tx,
                pg,
                actor.event(
                    "token.create",
                    format!("token:{}", created.id),
                    None,
                    Some(audit_value("account", &created)?)
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
            let sql = format!(
                "SELECT {TOKEN_COLUMNS} FROM tokens t JOIN users u ON u.id = t.user_id WHERE t.token_hash = $1"
            );
            let row = sqlx::query(sqlx::AssertSqlSafe(sql))
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
                    sqlx::query(sqlx::AssertSqlSafe(format!(
                        "SELECT {TOKEN_COLUMNS} FROM tokens t JOIN users u ON u.id = t.user_id \
                         WHERE t.user_id = $1 ORDER BY t.created_at DESC, t.id"
                    )))
                    .bind(user_id)
                    .fetch_all(pool)
                    .await?
                }
                None => {
                    sqlx::query(sqlx::AssertSqlSafe(format!(
                        "SELECT {TOKEN_COLUMNS} FROM tokens t JOIN users u ON u.id = t.user_id \
                         ORDER BY t.created_at DESC, t.id"
                    )))
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

    /// Revokes a token and every token minted below it, each audited as `token.revoke`, in one
    /// transaction. Revoking twice is a conflict. Answers the token named.
    pub async fn revoke_token(&self, token_id: &str, actor: &Actor) -> Result<Token> {
        let at = now();
        on_pool!(self, |pool, pg| {
            let mut tx = begin_write!(pool, pg);
            lock_writes!(tx, pg);
            let row = sqlx::query(sqlx::AssertSqlSafe(format!(
                "SELECT {TOKEN_COLUMNS} FROM tokens t JOIN users u ON u.id = t.user_id WHERE t.id = $1"
            )))
            .bind(token_id)
            .fetch_optional(&mut *tx)
            .await?
            .ok_or_else(|| StoreError::NotFound(format!("token {token_id}")))?;
            let before = token_from_row!(&row);
            if before.revoked_at.is_some() {
                return Err(StoreError::Conflict(format!(
                    "token {token_id} is already revoked"
                )));
            }
            let revoked = revoke_rows!(tx, pg, [row], at, actor);
            let below = sqlx::query(sqlx::AssertSqlSafe(format!(
                "WITH RECURSIVE below(id) AS ( \
                     SELECT id FROM tokens WHERE parent_id = $1 \
                     UNION SELECT c.id FROM tokens c JOIN below b ON c.parent_id = b.id) \
                 SELECT {TOKEN_COLUMNS} FROM tokens t JOIN users u ON u.id = t.user_id \
                 WHERE t.id IN (SELECT id FROM below) AND t.revoked_at IS NULL \
                 ORDER BY t.created_at, t.id"
            )))
            .bind(token_id)
            .fetch_all(&mut *tx)
            .await?;
            revoke_rows!(tx, pg, below, at, actor);
            tx.commit().await?;
            revoked
                .into_iter()
                .next()
                .ok_or_else(|| StoreError::NotFound(format!("token {token_id}")))
        })
    }

    /// Disables or enables a user; audited as `user.disable` / `user.enable`. Disabling also
    /// revokes every live token of the user (so enabling again revives none of them), and is
    /// refused when it would leave no enabled admin. Answers the user and the tokens revoked.
    pub async fn set_user_disabled(
        &self,
        username: &str,
        disabled: bool,
        actor: &Actor,
    ) -> Result<(User, Vec<Token>)> {
        let at = now();
        on_pool!(self, |pool, pg| {
            let mut tx = begin_write!(pool, pg);
            lock_writes!(tx, pg);
            let row = sqlx::query(
                "SELECT id, username, roles, groups, created_at, disabled FROM users WHERE username = $1",
            )
            .bind(username)
            .fetch_optional(&mut *tx)
            .await?
            .ok_or_else(|| StoreError::NotFound(format!("user {username}")))?;
            let before = user_from_row!(&row);
            if before.disabled == disabled {
                let state = if disabled { "disabled" } else { "enabled" };
                return Err(StoreError::Conflict(format!(
                    "user {username} is already {state}"
                )));
            }
            if disabled && before.roles.contains(&Role::Admin) {
                let others =
                    sqlx::query("SELECT roles FROM users WHERE disabled = $1 AND id <> $2")
                        .bind(false)
                        .bind(&before.id)
                        .fetch_all(&mut *tx)
                        .await?;
                let mut another_admin = false;
                for other in &others {
                    another_admin |=
                        roles_from(&other.try_get::<String, _>("roles")?)?.contains(&Role::Admin);
                }
                if !another_admin {
                    return Err(StoreError::Conflict(format!(
                        "{username} is the last enabled admin: enable or create another admin first"
                    )));
                }
            }
            sqlx::query("UPDATE users SET disabled = $1 WHERE id = $2")
                .bind(disabled)
                .bind(&before.id)
                .execute(&mut *tx)
                .await?;
            let mut after = before.clone();
            after.disabled = disabled;
            append_audit!(
                tx,
                pg,
                actor.event(
                    if disabled {
                        "user.disable"
                    } else {
                        "user.enable"
                    },
                    format!("user:{username}"),
                    Some(audit_value("account", &before)?),
                    Some(audit_value("account", &after)?)
                )
            );
            let revoked = if disabled {
                let live = sqlx::query(sqlx::AssertSqlSafe(format!(
                    "SELECT {TOKEN_COLUMNS} FROM tokens t JOIN users u ON u.id = t.user_id \
                     WHERE t.user_id = $1 AND t.revoked_at IS NULL ORDER BY t.created_at, t.id"
                )))
                .bind(&before.id)
                .fetch_all(&mut *tx)
                .await?;
                revoke_rows!(tx, pg, live, at, actor)
            } else {
                Vec::new()
            };
            tx.commit().await?;
            Ok((after, revoked))
        })
    }

    /// Sets a user's password hash and revokes every live token of theirs; audited as
    /// `user.password_reset` (never the hash) and one `token.revoke` per token.
    pub async fn reset_password(
        &self,
        username: &str,
        password_hash: &str,
        actor: &Actor,
    ) -> Result<(User, Vec<Token>)> {
        let at = now();
        on_pool!(self, |pool, pg| {
            let mut tx = begin_write!(pool, pg);
            lock_writes!(tx, pg);
            let row = sqlx::query(
                "SELECT id, username, roles, groups, created_at, disabled FROM users WHERE username = $1",
            )
            .bind(username)
            .fetch_optional(&mut *tx)
            .await?
            .ok_or_else(|| StoreError::NotFound(format!("user {username}")))?;
            let user = user_from_row!(&row);
            sqlx::query("UPDATE users SET password_hash = $1 WHERE id = $2")
                .bind(password_hash)
                .bind(&user.id)
                .execute(&mut *tx)
                .await?;
            let live = sqlx::query(sqlx::AssertSqlSafe(format!(
                "SELECT {TOKEN_COLUMNS} FROM tokens t JOIN users u ON u.id = t.user_id \
                 WHERE t.user_id = $1 AND t.revoked_at IS NULL ORDER BY t.created_at, t.id"
            )))
            .bind(&user.id)
            .fetch_all(&mut *tx)
            .await?;
            let ids: Vec<String> = live
                .iter()
                .map(|row| row.try_get::<String, _>("id"))
                .collect::<std::result::Result<_, _>>()?;
            append_audit!(
                tx,
                pg,
                actor.event(
                    "user.password_reset",
                    format!("user:{username}"),
                    Some(audit_value("account", &user)?),
                    Some(serde_json::json!({
                        "user": &user,
                        "password": "reset",
                        "tokens_revoked": ids,
                    }))
                )
            );
            let revoked = revoke_rows!(tx, pg, live, at, actor);
            tx.commit().await?;
            Ok((user, revoked))
        })
    }

    /// The `n`-th most recent failed login in `scope` after `since`, if there are that many:
    /// a limit of `n` is reached until that failure leaves the window.
    pub async fn nth_recent_login_failure(
        &self,
        scope: LoginScope<'_>,
        since: jiff::Timestamp,
        n: u32,
    ) -> Result<Option<jiff::Timestamp>> {
        let offset = i64::from(n.max(1) - 1);
        let since = stamp(since);
        on_pool!(self, |pool, pg| {
            let row = match scope {
                LoginScope::Pair { account, address } => sqlx::query(
                    "SELECT at FROM login_failures WHERE account = $1 AND address = $2 AND at > $3 \
                         ORDER BY at DESC LIMIT 1 OFFSET $4",
                )
                .bind(account)
                .bind(address)
                .bind(&since)
                .bind(offset)
                .fetch_optional(pool)
                .await?,
                LoginScope::Account(account) => {
                    sqlx::query(
                        "SELECT at FROM login_failures WHERE account = $1 AND at > $2 \
                         ORDER BY at DESC LIMIT 1 OFFSET $3",
                    )
                    .bind(account)
                    .bind(&since)
                    .bind(offset)
                    .fetch_optional(pool)
                    .await?
                }
                LoginScope::Address(address) => {
                    sqlx::query(
                        "SELECT at FROM login_failures WHERE address = $1 AND at > $2 \
                         ORDER BY at DESC LIMIT 1 OFFSET $3",
                    )
                    .bind(address)
                    .bind(&since)
                    .bind(offset)
                    .fetch_optional(pool)
                    .await?
                }
            };
            match row {
                None => Ok(None),
                Some(row) => {
                    let at: String = row.try_get("at")?;
                    at.parse()
                        .map(Some)
                        .map_err(|e| StoreError::Corrupt(format!("login failure time {at:?}: {e}")))
                }
            }
        })
    }

    /// Whether `account` logged in successfully from `address` after `since`.
    pub async fn login_address_known(
        &self,
        account: &str,
        address: &str,
        since: jiff::Timestamp,
    ) -> Result<bool> {
        on_pool!(self, |pool, pg| {
            let row = sqlx::query(
                "SELECT 1 FROM login_known_addresses WHERE account = $1 AND address = $2 AND last_success_at > $3",
            )
            .bind(account)
            .bind(address)
            .bind(stamp(since))
            .fetch_optional(pool)
            .await?;
            Ok(row.is_some())
        })
    }

    /// Counts a login attempt as a failure before its password is checked, pruning failures
    /// from before `prune_before`; answers the row's id, to forget it if the attempt is refused.
    /// Counting first means concurrent guesses each see the others: no more than the limit get
    /// through, however many arrive at once.
    pub async fn begin_login_attempt(
        &self,
        account: &str,
        address: &str,
        at: jiff::Timestamp,
        prune_before: jiff::Timestamp,
    ) -> Result<String> {
        let id = new_id();
        on_pool!(self, |pool, pg| {
            let mut tx = begin_write!(pool, pg);
            sqlx::query("DELETE FROM login_failures WHERE at < $1")
                .bind(stamp(prune_before))
                .execute(&mut *tx)
                .await?;
            sqlx::query(
                "INSERT INTO login_failures (id, account, address, at) VALUES ($1, $2, $3, $4)",
            )
            .bind(&id)
            .bind(account)
            .bind(address)
            .bind(stamp(at))
            .execute(&mut *tx)
            .await?;
            tx.commit().await?;
            Ok(id)
        })
    }

    /// Forgets one counted attempt (it was refused before its password was checked).
    pub async fn forget_login_attempt(&self, id: &str) -> Result<()> {
        on_pool!(self, |pool, pg| {
            sqlx::query("DELETE FROM login_failures WHERE id = $1")
                .bind(id)
                .execute(pool)
                .await?;
            Ok(())
        })
    }

    /// After a successful login: forgets the failures of this account from this address (the
    /// attempt's own row with them) and remembers the address as the account's (unless unknown,
    /// `""`).
    pub async fn record_login_success(
        &self,
        account: &str,
        address: &str,
        at: jiff::Timestamp,
    ) -> Result<()> {
        on_pool!(self, |pool, pg| {
            let mut tx = begin_write!(pool, pg);
            sqlx::query("DELETE FROM login_failures WHERE account = $1 AND address = $2")
                .bind(account)
                .bind(address)
                .execute(&mut *tx)
                .await?;
            if !address.is_empty() {
                sqlx::query(
                    "INSERT INTO login_known_addresses (account, address, last_success_at) VALUES ($1, $2, $3) \
                     ON CONFLICT (account, address) DO UPDATE SET last_success_at = excluded.last_success_at",
                )
                .bind(account)
                .bind(address)
                .bind(stamp(at))
                .execute(&mut *tx)
                .await?;
            }
            tx.commit().await?;
            Ok(())
        })
    }

    /// Failed logins after `since`, counted per account and address.
    pub async fn login_failure_groups(
        &self,
        since: jiff::Timestamp,
    ) -> Result<Vec<LoginFailureGroup>> {
        on_pool!(self, |pool, pg| {
            let rows = sqlx::query(
                "SELECT account, address, COUNT(*) AS n, MAX(at) AS last_at FROM login_failures \
                 WHERE at > $1 GROUP BY account, address ORDER BY account, address",
            )
            .bind(stamp(since))
            .fetch_all(pool)
            .await?;
            let mut groups = Vec::with_capacity(rows.len());
            for row in &rows {
                groups.push(LoginFailureGroup {
                    account: row.try_get("account")?,
                    address: row.try_get("address")?,
                    failures: u64::try_from(row.try_get::<i64, _>("n")?).unwrap_or_default(),
                    last_at: row.try_get("last_at")?,
                });
            }
            Ok(groups)
        })
    }

    /// Forgets every recorded failed login of an account, of an address, or of both together
    /// (an admin lifting a lock); audited as `login.unlock` with the number forgotten. Not
    /// found when there is nothing to forget. Answers how many were forgotten.
    pub async fn clear_login_failures(
        &self,
        account: Option<&str>,
        address: Option<&str>,
        actor: &Actor,
    ) -> Result<u64> {
        let (filter, object) = match (account, address) {
            (Some(account), Some(address)) => (
                "account = $1 AND address = $2",
                format!("login:account={account},address={address}"),
            ),
            (Some(account), None) => ("account = $1", format!("login:account={account}")),
            (None, Some(address)) => ("address = $1", format!("login:address={address}")),
            (None, None) => {
                return Err(StoreError::Invalid(
                    "name an account, an address or both".to_owned(),
                ));
            }
        };
        let binds: Vec<&str> = account.into_iter().chain(address).collect();
        on_pool!(self, |pool, pg| {
            let mut tx = begin_write!(pool, pg);
            let mut count = sqlx::query(sqlx::AssertSqlSafe(format!(
                "SELECT COUNT(*) AS n FROM login_failures WHERE {filter}"
            )));
            for bind in &binds {
                count = count.bind(*bind);
            }
            let n: i64 = count.fetch_one(&mut *tx).await?.try_get("n")?;
            if n == 0 {
                return Err(StoreError::NotFound(format!(
                    "failed logins for {}",
                    object.trim_start_matches("login:")
                )));
            }
            let mut delete = sqlx::query(sqlx::AssertSqlSafe(format!(
                "DELETE FROM login_failures WHERE {filter}"
            )));
            for bind in &binds {
                delete = delete.bind(*bind);
            }
            delete.execute(&mut *tx).await?;
            append_audit!(
                tx,
                pg,
                actor.event(
                    "login.unlock",
                    object,
                    Some(serde_json::json!({"failures": n})),
                    Some(serde_json::json!({"failures": 0}))
                )
            );
            tx.commit().await?;
            Ok(u64::try_from(n).unwrap_or_default())
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
